"""Text tasks: what is asked, what a later seat sees, and how an answer is scored.

A :class:`TextTask` is pure Python and knows nothing of RL. It provides

* :meth:`TextTask.sample_prompts`: ``n`` prompts, deterministic for a given seed or generator;
* :meth:`TextTask.observe`: the text the agent in a later seat sees, written from the prompt and
  the earlier seats' responses (CORY's observer prompt is one such template);
* :meth:`TextTask.score` / :meth:`TextTask.score_batch`: the task reward of one response,
  always scored on the prompt and that agent's own response.

Data-backed tasks subclass :class:`DatasetTask`, which loads records from a local ``.jsonl``
file or a Hugging Face dataset (:func:`load_records`) and takes the reward from a callable.
"""

from __future__ import annotations

import functools
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqmarl.errors import ConfigError

__all__ = [
    "DatasetTask",
    "FormatTemplate",
    "Prompt",
    "TextTask",
    "as_generator",
    "load_records",
]


@dataclass(frozen=True)
class Prompt:
    """One query of a task.

    Attributes:
        text: What the first seat sees.
        reference: Ground truth for scoring when the task has one (e.g. a GSM8K answer).
        meta: Anything else the task wants to keep with the prompt (ids, labels).
    """

    text: str
    reference: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


def as_generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A numpy generator from a seed, a generator (returned as is) or ``None`` (fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


@dataclass(frozen=True)
class FormatTemplate:
    """An observation template built from format strings.

    The first seat (no earlier responses) sees ``first``; a later seat sees ``later``, where
    ``{responses}`` is the earlier responses, each formatted with ``item`` and joined by
    ``joiner``. Available fields: ``{prompt}`` (the prompt text), ``{previous}`` (the response
    of the seat just before), ``{responses}``, and in ``item`` ``{i}`` (1-based),
    ``{response}`` and ``{prompt}``.
    """

    first: str = "{prompt}"
    later: str = "{prompt}\n{responses}"
    item: str = "Reference: {response}"
    joiner: str = "\n"

    def __call__(self, prompt: Prompt, earlier: Sequence[str]) -> str:
        """The observation text for a seat that has seen ``earlier`` responses."""
        if not earlier:
            return self.first.format(prompt=prompt.text)
        responses = self.joiner.join(
            self.item.format(i=i + 1, response=r, prompt=prompt.text) for i, r in enumerate(earlier)
        )
        return self.later.format(prompt=prompt.text, previous=earlier[-1], responses=responses)


class TextTask(ABC):
    """Base class of text tasks.

    Subclasses implement :meth:`sample_prompts` and :meth:`score`; they may override
    :meth:`score_batch` (e.g. to run a classifier once over a batch) and :meth:`observe` or
    pass a ``template``.

    Args:
        template: Writes a later seat's observation from the prompt and earlier responses.
    """

    #: Short human-readable name, used in transcripts and docs.
    name: str = "task"
    #: Sampling ends a response once its text contains one of these; the response's text
    #: (what is scored and what later seats see) stops before it. For few-shot prompts whose
    #: model would otherwise go on to write the next "Question:".
    stop_strings: tuple[str, ...] = ()

    def __init__(self, *, template: Callable[[Prompt, Sequence[str]], str] | None = None):
        self.template = template if template is not None else FormatTemplate()

    @abstractmethod
    def sample_prompts(self, n: int, rng: int | np.random.Generator | None = None) -> list[Prompt]:
        """Draw ``n`` prompts; the same seed (or generator state) gives the same prompts."""

    @abstractmethod
    def score(self, prompt: Prompt, response: str) -> float:
        """Task reward of ``response`` to ``prompt`` (a finite float)."""

    def score_batch(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        """Task rewards of many (prompt, response) pairs; override to batch a model call.

        The values are returned as :meth:`score` gives them; the rollout and the env check them
        (:func:`seqmarl.envs.guard.score_rewards`: one finite number per pair).
        """
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        return [self.score(p, r) for p, r in zip(prompts, responses, strict=True)]

    def observe(self, prompt: Prompt, earlier: Sequence[str]) -> str:
        """What a seat sees, given the earlier seats' responses (empty for the first seat)."""
        return self.template(prompt, earlier)

    def observe_turn(self, prompt: Prompt, visible: Sequence[Any], agent: str, round: int) -> str:
        """What ``agent`` sees in ``round``, given the turns it may see so far (oldest first).

        ``visible`` holds :class:`~seqmarl.envs.episode.Turn` objects. The default writes
        their responses with :meth:`observe`, so round 0 reads as a single-round episode.
        """
        return self.observe(prompt, [t.response for t in visible])

    def turn_reward(self, episode: Any, turn: Any) -> float:
        """A reward for one turn as it is played (0: rewards only at the end, the default).

        Mixed by the coefficient matrix like the final task rewards and handed out at once;
        an agent's return for a turn is the (mixed) reward-to-go from it.
        """
        return 0.0

    def score_episodes(self, episodes: Sequence[Any]) -> Any:
        """Task rewards of finished :class:`~seqmarl.envs.episode.Episode` s, ``(E, N)``.

        Row ``e`` holds one reward per agent of ``episodes[e].agents`` (agent-id order). The
        default scores each agent's last response on its own in one :meth:`score_batch` call;
        override it for a joint score (a judge comparing the answers, a zero-sum game).
        """
        pairs = [(ep.prompt, ep.last_response(a)) for ep in episodes for a in ep.agents]
        flat = self.score_batch([p for p, _ in pairs], [r for _, r in pairs])
        n = len(episodes[0].agents) if episodes else 0
        return [list(flat[i * n : (i + 1) * n]) for i in range(len(episodes))]


def load_records(
    source: str,
    *,
    split: str = "train",
    name: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Load a dataset as a list of dicts, from a local file/folder or the Hugging Face hub.

    Args:
        source: A ``.jsonl``/``.json`` file, a folder holding ``{split}.jsonl``, or a hub id
            such as ``"openai/gsm8k"`` (loaded with :func:`datasets.load_dataset`).
        split: Split to load (for a folder: the file name without ``.jsonl``).
        name: Hub dataset configuration (e.g. ``"main"`` for GSM8K).
        limit: Keep only the first ``limit`` records.

    Raises:
        ConfigError: A local path that does not exist, or a hub dataset that cannot be loaded
            (e.g. no network); the message says how to point at a local copy.
    """
    rows = _load_rows(source, split, name)
    return [dict(r) for r in (rows if limit is None else rows[:limit])]


@functools.lru_cache(maxsize=8)
def _load_rows(source: str, split: str, name: str | None) -> tuple[dict[str, Any], ...]:
    """Rows of a dataset, cached per process (callers get copies)."""
    import datasets  # heavy import, only when data is needed

    path = os.path.expanduser(source)
    if os.path.isdir(path):
        path = os.path.join(path, f"{split}.jsonl")
        if not os.path.exists(path):
            raise ConfigError(f"data source: folder {source!r} has no {split}.jsonl")
    if os.path.exists(path):
        ds = datasets.load_dataset("json", data_files={split: path}, split=split)
    elif source.endswith((".jsonl", ".json")) or source.startswith((".", "/", "~")):
        raise ConfigError(f"data source: file {source!r} does not exist")
    else:
        try:
            ds = datasets.load_dataset(source, name, split=split)
        except Exception as exc:
            raise ConfigError(
                f"data source: could not load hub dataset {source!r} (split {split!r}): "
                f"{type(exc).__name__}: {exc}. Offline? Point the task at a local .jsonl copy."
            ) from exc
    return tuple(dict(r) for r in ds)


class DatasetTask(TextTask):
    """A task whose prompts come from records and whose reward comes from a callable.

    Args:
        records: The dataset rows (see :func:`load_records`).
        to_prompt: Turns a record into a :class:`Prompt`, or ``None`` to drop it.
        reward: ``reward(prompts, responses) -> rewards`` over a batch.
        template: Observation template for later seats.

    Raises:
        ConfigError: No record survives ``to_prompt``.
    """

    name = "dataset"

    def __init__(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        to_prompt: Callable[[Mapping[str, Any]], Prompt | None],
        reward: Callable[[Sequence[Prompt], Sequence[str]], Sequence[float]],
        template: Callable[[Prompt, Sequence[str]], str] | None = None,
    ):
        super().__init__(template=template)
        self.prompts = [p for p in (to_prompt(r) for r in records) if p is not None]
        if not self.prompts:
            raise ConfigError(f"{self.name}: no usable prompts in {len(records)} records")
        self._reward = reward

    def sample_prompts(self, n: int, rng: int | np.random.Generator | None = None) -> list[Prompt]:
        """``n`` prompts drawn without replacement (with replacement if ``n`` > pool size)."""
        gen = as_generator(rng)
        idx = gen.choice(len(self.prompts), size=n, replace=n > len(self.prompts))
        return [self.prompts[i] for i in idx]

    def score(self, prompt: Prompt, response: str) -> float:
        """Reward of one response (the batched reward on one pair, checked to be finite).

        Raises:
            TaskError: The reward callable returned something other than one finite number.
        """
        from seqmarl.envs.guard import check_rewards  # guard imports this module

        values = self.score_batch([prompt], [response])
        return float(check_rewards(values, [prompt], [response], task=self, method="reward")[0])

    def score_batch(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        """Rewards of a batch from the reward callable, as it returned them.

        The rollout and the env check them (:func:`seqmarl.envs.guard.score_rewards`: one finite
        number per pair), naming the row at fault.
        """
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        return list(self._reward(prompts, responses))
