"""Text tasks: what is asked, what each seat sees, and how the answers are scored.

A :class:`TextTask` is pure Python and knows nothing of RL. It provides

* :meth:`TextTask.sample_prompts`: ``n`` prompts, deterministic for a given seed or generator;
* :meth:`TextTask.observe` / :meth:`TextTask.observe_turn`: the text an agent sees, written
  from the prompt and the responses it may see (the earlier seats', and in later rounds every
  visible turn; CORY's observer prompt is one such template, :class:`FormatTemplate`);
* :meth:`TextTask.turn_reward`: an optional reward for each turn as it is played (default 0);
* :meth:`TextTask.score_episodes`: the task rewards of finished episodes, one per agent. The
  default scores each agent's last response on its own, with the prompt, in one
  :meth:`TextTask.score_batch` call (:meth:`TextTask.score` per pair); a task may override it
  to score the answers jointly (a judge comparing them, a zero-sum game). This final score is
  an agent's task reward; turn rewards are shaping on top of it.

Data-backed tasks subclass :class:`~seqmarl.envs.dataset.DatasetTask`
(:mod:`seqmarl.envs.dataset`), which loads records from a local ``.jsonl`` file or a Hugging
Face dataset (:func:`~seqmarl.envs.dataset.load_records`) and takes the reward from a callable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["FormatTemplate", "Prompt", "TextTask", "as_generator"]


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
