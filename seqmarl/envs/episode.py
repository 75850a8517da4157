"""An episode as a transcript: who said what, in which seat and round.

One episode plays one prompt of a task (:class:`~seqmarl.envs.game.TaskGame`, one per row). In
each of its ``rounds`` the seats act in order; every action is a :class:`Turn`, recorded with
the observation the agent read (after the observation limit) and its response. The task reads
the episode three times: :meth:`~seqmarl.envs.task.TextTask.observe_turn` gets the turns an
agent may see, :meth:`~seqmarl.envs.task.TextTask.turn_reward` gets the episode so far (its
last turn is the one being paid), and once every episode of the batch is :attr:`Episode.done`
:meth:`~seqmarl.envs.task.TextTask.score_episodes` scores them all in one call: one task
reward per agent of :attr:`Episode.agents`, by default each agent's last response on its own
(:meth:`~seqmarl.envs.task.TextTask.score_batch`), or jointly (a judge that compares the
answers, a zero-sum game). A plain PettingZoo env keeps its own state and has no Episode.
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
