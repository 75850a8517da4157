"""An episode as a transcript: who said what, in which seat and round.

One episode plays one prompt. In each of its ``rounds`` the seats act in order; every action
is a :class:`Turn`. A task scores a finished :class:`Episode` as a whole
(:meth:`~seqmarl.envs.task.TextTask.score_episodes`: one task reward per agent, e.g. a judge
that compares the answers, or a zero-sum game), or, by default, each agent's last response on
its own (:meth:`~seqmarl.envs.task.TextTask.score_batch`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from seqmarl.envs.task import Prompt

__all__ = ["Episode", "Turn"]


@dataclass(frozen=True)
class Turn:
    """One action: ``agent`` in ``seat`` answered ``response`` after seeing ``observation``."""

    round: int
    seat: int
    agent: str
    observation: str
    response: str


@dataclass
class Episode:
    """A prompt played by the agents in ``seats`` order for ``rounds`` rounds.

    Attributes:
        prompt: The prompt.
        seats: Agent id in each seat.
        agents: Every agent id of the env, in agent-id order (the order of a score row).
        rounds: How many times the seats act in order.
        turns: What has been said so far, in order.
    """

    prompt: Prompt
    seats: tuple[str, ...]
    agents: tuple[str, ...]
    rounds: int = 1
    turns: list[Turn] = field(default_factory=list)

    @property
    def done(self) -> bool:
        """Whether every seat has acted in every round."""
        return len(self.turns) == self.rounds * len(self.seats)

    def last_response(self, agent: str) -> str | None:
        """``agent``'s latest response (its final answer once the episode is done)."""
        for turn in reversed(self.turns):
            if turn.agent == agent:
                return turn.response
        return None

    def turns_of(self, agent: str) -> list[Turn]:
        """``agent``'s turns, in order."""
        return [t for t in self.turns if t.agent == agent]
