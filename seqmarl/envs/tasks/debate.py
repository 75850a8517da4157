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
its own previous answer. Each agent is rewarded on its own final answer alone, 1/0 exactly as in
``gsm8k-v0`` (the default :meth:`~seqmarl.envs.task.TextTask.score_episodes`); the coefficient
matrix mixes these as usual. With R = 1 the env is ``gsm8k-v0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from seqmarl.envs.task import Prompt
from seqmarl.envs.tasks.gsm8k import GSM8KTask

__all__ = ["GSM8KDebateTask"]


class GSM8KDebateTask(GSM8KTask):
    """GSM8K debate: each agent revises after reading the others' latest answers.

    Takes :class:`~seqmarl.envs.tasks.gsm8k.GSM8KTask`'s arguments; the number of rounds is the
    env's ``rounds`` (``task.rounds``).
    """

    name = "gsm8k debate"

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
