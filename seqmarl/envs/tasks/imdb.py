"""``imdb-sentiment-v0``: the CORY paper's IMDB task (Maas et al. 2011 reviews).

* **Prompts**: the first 2-8 tokens of a review (the *policy's* tokenizer, as in the paper),
  reviews shorter than 200 characters dropped, ``<br />`` removed. The length of each prompt is
  drawn once per review from ``prompt_seed``, so prompts are fixed for a dataset and seed.
* **Observer**: ``I can make this sentence "<prompt + earlier response>" more positive: <prompt>``.
* **Reward**: the positive-class logit of a text-classification model on the prompt followed by
  the agent's own response, batched; default ``lvwerra/distilbert-imdb``, a local folder such as
  ``../shared/models/imdb-sentiment-bert-tiny-scratch`` offline, or ``vader``.
* **Data**: the hub (``stanfordnlp/imdb``) or a local ``.jsonl``/folder with ``text``/``label``
  (``../shared/data/imdb``, which is sorted by label: prompts are drawn at random, so order
  does not matter).

The policy generates 4-16 new tokens in the paper (``agents.generation``: ``min_new_tokens: 4``,
``max_new_tokens: 16``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from seqmarl.envs.dataset import DatasetTask, load_records
from seqmarl.envs.task import Prompt
from seqmarl.envs.tasks.sentiment import POSITIVE_REWRITE, vader_scores
from seqmarl.errors import ConfigError

__all__ = ["ClassifierReward", "IMDBTask"]

log = logging.getLogger(__name__)


class ClassifierReward:
    """Positive-class logit of a sequence classifier, computed in batches.

    Args:
        model: Hub id or local folder of an ``AutoModelForSequenceClassification``.
        batch_size: Texts per forward pass.
        device: Where the classifier runs.
        positive_label: Label name of the positive class (falls back to index 1).
    """

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 64,
        device: str = "cpu",
        positive_label: str = "POSITIVE",
    ):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModelForSequenceClassification.from_pretrained(model).to(device).eval()
        except OSError as exc:
            raise ConfigError(
                f"task.kwargs.reward_model: could not load classifier {model!r} "
                f"({str(exc).splitlines()[0]}); give a local folder or reward_model=vader"
            ) from exc
        label2id = {k.upper(): v for k, v in (self.model.config.label2id or {}).items()}
        self.positive = label2id.get(positive_label.upper(), 1)
        self.batch_size = batch_size
        self.device = device

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> list[float]:
        """Positive logit of each text."""
        out: list[float] = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(
                list(texts[i : i + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=512,
                return_tensors="pt",
            ).to(self.device)
            out += self.model(**enc).logits[:, self.positive].float().tolist()
        return out


class IMDBTask(DatasetTask):
    """IMDB review openings with a classifier (or VADER) sentiment reward.

    Args:
        source: Hub id (``stanfordnlp/imdb``) or local folder/``.jsonl``.
        split: Dataset split.
        reward_model: Classifier hub id or folder, or ``vader``.
        policy_tokenizer: Tokenizer (object, hub id or folder) that defines "tokens" for the
            2-8 token prompts; the trainer passes the policy's own. ``None``: whitespace words.
        min_prompt_tokens: Shortest prompt.
        max_prompt_tokens: Longest prompt.
        min_review_chars: Drop shorter reviews.
        limit: Use only this many reviews (drawn at random with ``prompt_seed``).
        prompt_seed: Seeds the prompt lengths and the ``limit`` subset.
        reward_batch_size: Classifier batch size.
    """

    name = "imdb"

    def __init__(
        self,
        *,
        source: str = "stanfordnlp/imdb",
        split: str = "train",
        reward_model: str = "lvwerra/distilbert-imdb",
        policy_tokenizer=None,
        min_prompt_tokens: int = 2,
        max_prompt_tokens: int = 8,
        min_review_chars: int = 200,
        limit: int | None = 5000,
        prompt_seed: int = 0,
        reward_batch_size: int = 64,
    ):
        if not 1 <= min_prompt_tokens <= max_prompt_tokens:
            raise ConfigError("task.kwargs: need 1 <= min_prompt_tokens <= max_prompt_tokens")
        records = [
            {**r, "text": r["text"].replace("<br />", " ")}
            for r in load_records(source, split=split)
            if len(r["text"]) >= min_review_chars
        ]
        rng = np.random.default_rng(prompt_seed)
        if limit is not None and limit < len(records):
            records = [records[i] for i in sorted(rng.choice(len(records), limit, replace=False))]
        self._tok = _as_tokenizer(policy_tokenizer)
        lengths = rng.integers(min_prompt_tokens, max_prompt_tokens + 1, size=len(records))
        for r, n in zip(records, lengths, strict=True):
            r["_prompt_len"] = int(n)
        self._score = (
            vader_scores
            if reward_model == "vader"
            else ClassifierReward(reward_model, batch_size=reward_batch_size)
        )
        super().__init__(
            records, to_prompt=self._to_prompt, reward=self._reward, template=POSITIVE_REWRITE
        )

    def _to_prompt(self, record) -> Prompt:
        n = record["_prompt_len"]
        text = record["text"]
        if self._tok is None:
            head = " ".join(text.split()[:n])
        else:
            ids = self._tok(text[:400], add_special_tokens=False)["input_ids"][:n]
            head = self._tok.decode(ids)
        return Prompt(head, meta={"label": record.get("label")})

    def _reward(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        return self._score([p.text + r for p, r in zip(prompts, responses, strict=True)])


def _as_tokenizer(tok):
    if tok is None or not isinstance(tok, str):
        return tok
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tok)
