"""``gsm8k-debate-v0``: GSM8K agents that revise their answers after reading each other's.

Round 0 is ``gsm8k-v0`` exactly: the first seat sees the one-shot prompt and the question, a
later seat also sees the earlier seats' answers as ``Reference: <answer>`` lines. In each later
round (``task.rounds`` = R in all) every agent answers again, seeing the question, the other
agents' latest answers (``Reference:`` lines, in seat order) and its own previous answer::

    Question: Shawn has five toys. ...
    Answer: Shawn started with 5 toys. ... The answer is 9.

    Question: <question>
    Reference: <the other agents' latest answers, one line each>
    Your previous answer: <this agent's answer in the round before>
    Answer:

An agent in seat ``k`` of round ``r`` sees the seats before it as revised in round ``r`` and
the seats after it as they answered in round ``r - 1``. Without knowledge transfer it sees only
its own previous answer.

Rewards depend on ``score_rounds`` (a task argument, ``task.kwargs.score_rounds``):

* ``"final"`` (the default): each agent is rewarded on its own final answer alone, 1/0 exactly
  as in ``gsm8k-v0`` (the default :meth:`~seqmarl.envs.task.TextTask.score_episodes`); the
  answers of earlier rounds are not scored, so an empty round-0 answer costs nothing.
* ``"every"``: each round's answer gets its own 1/0 correctness reward. Rounds before the last
  are paid as they are played (:meth:`GSM8KDebateTask.turn_reward`), the final round at the
  end as under ``"final"``; an agent's return for a turn is the reward-to-go over its turns
  (``train.gamma``), so a right round-0 answer earns more than an empty one. The episode's
  ``task_reward`` (``infos``, ``env.task_rewards``) stays the final answer's score.

The coefficient matrix mixes these as usual. With R = 1 both are ``gsm8k-v0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from seqmarl.envs.task import Prompt
from seqmarl.envs.tasks.gsm8k import GSM8KTask
from seqmarl.errors import ConfigError

__all__ = ["SCORE_ROUNDS", "GSM8KDebateTask"]

#: The values of ``score_rounds``: which rounds' answers are scored.
SCORE_ROUNDS = ("final", "every")


class GSM8KDebateTask(GSM8KTask):
    """GSM8K debate: each agent revises after reading the others' latest answers.

    Takes :class:`~seqmarl.envs.tasks.gsm8k.GSM8KTask`'s arguments and ``score_rounds``; the
    number of rounds is the env's ``rounds`` (``task.rounds``).

    Args:
        source: Hub id (``openai/gsm8k``) or a local folder/``.jsonl`` file.
        split: ``train`` or ``test``.
        limit: Use only the first ``limit`` questions.
        one_shot: Prepend the Shawn/toys example (the paper's prompt).
        score_rounds: ``"final"``: only each agent's final answer is scored; ``"every"``: every
            round's answer gets its own 1/0 reward (see the module docstring).

    Raises:
        ConfigError: ``score_rounds`` is not one of :data:`SCORE_ROUNDS`.
    """

    name = "gsm8k debate"

    def __init__(
        self,
        *,
        source: str = "openai/gsm8k",
        split: str = "train",
        limit: int | None = None,
        one_shot: bool = True,
        score_rounds: str = "final",
    ):
        if score_rounds not in SCORE_ROUNDS:  # before any data is loaded
            raise ConfigError(
                f"gsm8k-debate-v0: score_rounds must be one of {', '.join(SCORE_ROUNDS)}, "
                f"got {score_rounds!r} (e.g. task.kwargs.score_rounds=every)"
            )
        self.score_rounds = score_rounds
        super().__init__(source=source, split=split, limit=limit, one_shot=one_shot)

    def turn_reward(self, episode: Any, turn: Any) -> float:
        """With ``score_rounds="every"``, a turn before the last round: its answer's 1/0 score.

        The last round's answers are scored with the episode (``score_episodes``), so no answer
        is paid twice; with ``"final"`` every turn reward is 0.
        """
        if self.score_rounds == "final" or turn.round == episode.rounds - 1:
            return 0.0
        return self.score(episode.prompt, turn.response)

    def observe_turn(self, prompt: Prompt, visible: Sequence[Any], agent: str, round: int) -> str:
        """Round 0: ``gsm8k-v0``'s observation; later: others' latest and own previous answer."""
        if round == 0:
            return super().observe_turn(prompt, visible, agent, round)
        latest: dict[str, Any] = {}
        for turn in visible:  # oldest first: the last one kept is each agent's latest
            latest[turn.agent] = turn
        others = sorted((t for a, t in latest.items() if a != agent), key=lambda t: t.seat)
        lines = [f"Reference: {t.response.strip()}\n" for t in others]
        if agent in latest:
            lines.append(f"Your previous answer: {latest[agent].response.strip()}\n")
        if not lines:  # everything left out past the observation limit
            return prompt.text
        head = prompt.text.removesuffix("Answer:")
        return f"{head}{''.join(lines)}Answer:"
