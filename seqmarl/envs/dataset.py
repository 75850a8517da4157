"""Data-backed tasks: records from a local file or the Hugging Face hub, a reward callable.

:func:`load_records` loads a ``.jsonl`` file, a folder with ``{split}.jsonl`` or a hub data set
(offline, a clear line says to point at a local copy); :class:`DatasetTask` turns records into
prompts and scores responses with a batched reward callable, checked by
:mod:`seqmarl.envs.guard`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from seqmarl.envs.guard import check_rewards
from seqmarl.envs.task import Prompt, TextTask, as_generator
from seqmarl.errors import ConfigError

__all__ = ["DatasetTask", "load_records"]


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
