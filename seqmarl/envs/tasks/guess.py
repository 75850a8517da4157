"""``number-guess-v0``: a number-guessing game between agents, refereed in code.

Each prompt hides a whole number in ``1..high`` (default 20), drawn from the seed, so a seed
fixes the hidden numbers; it is kept in ``Prompt.reference`` and ``Prompt.meta["number"]``.
The prompt states the game and the range. Play it with ``task.rounds: R``: the seats take
turns, R times each, and every answer is a guess. Designed for two agents; any N works.

**The referee** reads the *first* integer written in a response (ASCII digits, a ``-`` right
before them makes it negative; ``"7.5"`` reads 7, ``"I say 12 or 13"`` reads 12). A move is
*legal* when that integer is in ``1..high``. Anything else is an illegal move: no integer at
all (an empty answer, words, emoji), or one out of range (``0``, ``-3``, ``25``, a
5000-digit number). An illegal move costs a penalty; it is never an error.

**What an agent sees** (``observe_turn``): the prompt, the game log of the turns it may see
(every turn with knowledge transfer; only its own without), one line per guess with the
referee's feedback, and a line inviting its guess::

    Guess the number. I have picked a whole number from 1 to 20. Players take turns to
    guess it; I say if a guess is too low, too high or correct. Answer with one number.
    llm_0 guessed 7: too low
    llm_1 guessed 'abc': not a number, penalty
    llm_0 guessed 25: out of range 1..20, penalty
    llm_1, your guess:

The feedback judges each guess on its own (a hit after the number was found still reads
``correct``); a guess is quoted at most 20 characters long. Past
``task.max_observation_chars`` the env drops the oldest log lines, as for every env.

**Rewards** are per turn (``turn_reward``), handed out as each guess is made:

* an illegal move: ``penalty`` (default -0.5);
* the first guess that hits the number: +1 (``win``);
* any other legal guess: 0 (no shaping reward for narrowing the interval);
* once the number has been found, every later turn gets 0, legal or not. The episode still
  runs to the end of its rounds (the env has a fixed length: ``rounds`` x N turns).

The final score is 0 (``score`` returns 0.0), so all of an agent's reward comes from its turns;
its return for a turn is its reward-to-go over its own turns (``train.gamma``). The
coefficient matrix mixes the turn rewards as usual: ``setting.reward_matrix=independent``
trains each agent on its own moves, ``competitive`` makes the other's hit a loss. Because the
final task reward is always 0, the ``task_reward`` columns of ``metrics.jsonl`` read 0 for this
env; ``agent/<id>/adv_score`` (the mean return of the agent's turns) is the figure that moves.
Responses stop at a newline (``stop_strings``), so a guess is one line.

A short CPU run on the tiny random model, in which the rate of legal first guesses rises
from 15 % to 66 % in 30 iterations, is recorded with its command in docs/environments.md
("Games").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from seqmarl.envs.task import Prompt, TextTask, as_generator
from seqmarl.errors import ConfigError

__all__ = ["NumberGuessTask", "feedback", "first_integer", "judge"]

_INTEGER = re.compile(r"(-?)([0-9]+)")
#: Integers with more digits than this read as +-10**_MAX_DIGITS (out of range either way);
#: ``int()`` refuses strings of more than 4300 digits.
_MAX_DIGITS = 30
#: Characters of a guess quoted in the game log.
QUOTE_CHARS = 20

INTRO = (
    "Guess the number. I have picked a whole number from 1 to {high}. Players take turns to "
    "guess it; I say if a guess is too low, too high or correct. Answer with one number."
)


def first_integer(text: str) -> tuple[int, str] | None:
    """The first integer written in ``text`` and how it is written, or ``None`` if none.

    ASCII digits only; a ``-`` right before the digits makes it negative. A number of more than
    30 digits reads as ``+-10**30`` (its written form is kept).
    """
    m = _INTEGER.search(text)
    if m is None:
        return None
    sign, digits = m.groups()
    stripped = digits.lstrip("0") or "0"
    value = int(stripped) if len(stripped) <= _MAX_DIGITS else 10**_MAX_DIGITS
    return (-value if sign else value), m.group(0)


def _shorten(text: str) -> str:
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 3] + "..."


def judge(response: str, number: int, high: int) -> tuple[str, str]:
    """The referee's verdict on a guess: ``(kind, feedback)``.

    ``kind`` is ``"hit"``, ``"low"``, ``"high"`` (legal moves) or ``"nan"`` (no integer),
    ``"range"`` (an integer outside ``1..high``), the illegal ones; ``feedback`` is the log
    line's text after the agent's name, e.g. ``"guessed 7: too low"``.
    """
    read = first_integer(response)
    if read is None:
        return "nan", f"guessed {_shorten(response)!r}: not a number, penalty"
    value, written = read
    said = f"guessed {_shorten(written)}"
    if not 1 <= value <= high:
        return "range", f"{said}: out of range 1..{high}, penalty"
    if value < number:
        return "low", f"{said}: too low"
    if value > number:
        return "high", f"{said}: too high"
    return "hit", f"{said}: correct"


def feedback(agent: str, response: str, number: int, high: int) -> str:
    """One line of the game log: ``"llm_0 guessed 7: too low"``."""
    return f"{agent} {judge(response, number, high)[1]}"


class NumberGuessTask(TextTask):
    """Guess a hidden number in turns; an illegal move costs ``penalty``, the first hit wins.

    Args:
        high: The number is drawn from ``1..high``.
        penalty: Turn reward of an illegal move (no integer, or one out of range).
        win: Turn reward of the first guess that hits the number.

    Raises:
        ConfigError: ``high`` below 1, or a non-finite ``penalty``/``win``.
    """

    name = "number guess"
    stop_strings = ("\n",)

    def __init__(self, *, high: int = 20, penalty: float = -0.5, win: float = 1.0):
        super().__init__()
        if isinstance(high, bool) or not isinstance(high, int) or high < 1:
            raise ConfigError(f"number-guess: high must be an integer >= 1, got {high!r}")
        for key, value in (("penalty", penalty), ("win", win)):
            if not np.isfinite(float(value)):
                raise ConfigError(f"number-guess: {key} must be a finite number, got {value!r}")
        self.high = high
        self.penalty = float(penalty)
        self.win = float(win)

    def sample_prompts(self, n: int, rng: int | np.random.Generator | None = None) -> list[Prompt]:
        """``n`` games, each hiding a number drawn from ``rng`` in ``1..high``."""
        numbers = as_generator(rng).integers(1, self.high + 1, size=n)
        text = INTRO.format(high=self.high)
        return [
            Prompt(text, reference=str(int(k)), meta={"number": int(k), "high": self.high})
            for k in numbers
        ]

    def _secret(self, prompt: Prompt) -> tuple[int, int]:
        """``(number, high)`` of a prompt (``high`` from its meta, else the task's)."""
        if "number" in prompt.meta:
            number = int(prompt.meta["number"])
        elif prompt.reference is not None:
            number = int(prompt.reference)
        else:
            raise ValueError("the prompt hides no number (no reference); play sampled prompts")
        return number, int(prompt.meta.get("high", self.high))

    def observe_turn(self, prompt: Prompt, visible: Sequence[Any], agent: str, round: int) -> str:
        """The prompt, one feedback line per visible guess, then ``"<agent>, your guess:"``."""
        number, high = self._secret(prompt)
        lines = [prompt.text]
        lines += [feedback(t.agent, t.response, number, high) for t in visible]
        lines.append(f"{agent}, your guess:")
        return "\n".join(lines)

    def turn_reward(self, episode: Any, turn: Any) -> float:
        """``penalty`` for an illegal move, ``win`` for the first hit, else 0 (0 after a hit)."""
        number, high = self._secret(episode.prompt)
        here = (turn.round, turn.seat)
        earlier = [t for t in episode.turns if (t.round, t.seat) < here]
        if any(judge(t.response, number, high)[0] == "hit" for t in earlier):
            return 0.0  # the game is won; the remaining turns are played out for nothing
        kind = judge(turn.response, number, high)[0]
        if kind in ("nan", "range"):
            return self.penalty
        return self.win if kind == "hit" else 0.0

    def score(self, prompt: Prompt, response: str) -> float:
        """0.0: every reward of this game is a turn reward."""
        return 0.0
