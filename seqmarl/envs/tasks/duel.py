"""``imdb-duel-v0`` and ``sentiment-duel-v0``: a zero-sum judge over another task's score.

Every agent answers the same prompt (later seats see the earlier answers, as in the base task);
the judge scores each agent's answer with the base task's reward (the IMDB classifier, or
VADER) and ranks them: agent ``i`` gets ``sum over j != i of sign(s_i - s_j) / (N - 1)``, so
with two agents the more positive continuation gets +1 and the other -1 (a tie, within
``tie``, gives 0 to both), and the task rewards of every episode sum to zero. A single agent
has nobody to beat and always gets 0.

This is a joint score (:meth:`~seqmarl.envs.task.TextTask.score_episodes`): no agent's reward
is a function of its own answer alone. The coefficient matrix still applies on top
(``setting.reward_matrix=independent`` trains each agent on its own ranking reward).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence

import numpy as np

from seqmarl.envs.task import Prompt, TextTask
from seqmarl.envs.tasks.imdb import IMDBTask
from seqmarl.envs.tasks.sentiment import SentimentTask

__all__ = ["DuelTask", "duel_of", "rank_rewards"]


def rank_rewards(scores: np.ndarray, tie: float = 0.0) -> np.ndarray:
    """Zero-sum ranking rewards from per-agent scores: ``(E, N) -> (E, N)``.

    ``r[e, i] = sum_j sign(s[e, i] - s[e, j]) / (N - 1)``, with differences within ``tie``
    counted as ties; each row sums to zero. One agent: zeros.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[1]
    if n < 2:
        return np.zeros_like(scores)
    diff = scores[:, :, None] - scores[:, None, :]  # (E, N, N): s_i - s_j
    wins = np.sign(diff) * (np.abs(diff) > tie)
    return wins.sum(axis=2) / (n - 1)


class DuelTask(TextTask):
    """Agents compete on ``base``'s reward: prompts, observations and stops are ``base``'s.

    Args:
        base: The task whose reward judges the answers.
        tie: Score differences up to this count as a tie.
    """

    def __init__(self, base: TextTask, *, tie: float = 0.0):
        super().__init__()
        self.base = base
        self.tie = float(tie)
        self.name = f"{base.name} duel"
        self.stop_strings = base.stop_strings

    def sample_prompts(self, n: int, rng=None) -> list[Prompt]:
        """The base task's prompts."""
        return self.base.sample_prompts(n, rng)

    def observe(self, prompt: Prompt, earlier: Sequence[str]) -> str:
        """The base task's observation."""
        return self.base.observe(prompt, earlier)

    def score(self, prompt: Prompt, response: str) -> float:
        """The base task's score of one answer (what the judge compares)."""
        return self.base.score(prompt, response)

    def score_batch(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        """The base task's scores, batched."""
        return self.base.score_batch(prompts, responses)

    def score_episodes(self, episodes: Sequence) -> np.ndarray:
        """Ranking rewards of each episode's final answers (one base ``score_batch`` call)."""
        if not episodes:
            return np.zeros((0, 0))
        agents = episodes[0].agents
        pairs = [(ep.prompt, ep.last_response(a)) for ep in episodes for a in agents]
        flat = self.base.score_batch([p for p, _ in pairs], [r for _, r in pairs])
        scores = np.asarray(flat, dtype=np.float64).reshape(len(episodes), len(agents))
        return rank_rewards(scores, self.tie)


def duel_of(base_factory: Callable[..., TextTask], doc: str) -> Callable[..., DuelTask]:
    """A factory of :class:`DuelTask` over ``base_factory``'s task, with its arguments."""

    @functools.wraps(base_factory)  # the base's signature: its arguments (and context) reach it
    def factory(*args, **kwargs) -> DuelTask:
        tie = kwargs.pop("tie", 0.0)
        return DuelTask(base_factory(*args, **kwargs), tie=tie)

    factory.__doc__ = doc
    factory.__name__ = factory.__qualname__ = f"duel_of({base_factory.__name__})"
    # the base's parameters and ``tie``, so a bad argument's error lists ``tie`` as accepted
    base = inspect.signature(base_factory)
    params = [p for p in base.parameters.values() if p.kind is not p.VAR_KEYWORD]
    params.append(inspect.Parameter("tie", inspect.Parameter.KEYWORD_ONLY, default=0.0))
    params += [p for p in base.parameters.values() if p.kind is p.VAR_KEYWORD]
    factory.__signature__ = base.replace(parameters=params)  # type: ignore[attr-defined]
    return factory


make_imdb_duel = duel_of(
    IMDBTask, "Zero-sum judge: the more positive IMDB continuation (classifier) wins +1, -1."
)
make_sentiment_duel = duel_of(
    SentimentTask, "Zero-sum judge: the more positive continuation (VADER) wins +1, the other -1."
)
