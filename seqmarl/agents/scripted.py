"""Scripted players: opponents that answer by a rule, with no model and nothing to learn.

A scripted player fills an agent's seat in a league (``league.fixed: [random]``) or in
``seqmarl eval --opponent random``. The rollout hands it the observations of the rows waiting
on it and steps the game with its texts; it has no tokens, so no update and no KL.

Built in:

* ``random`` (:class:`RandomMovePlayer`): a uniformly random move among those the observation
  offers. It reads the last line of the observation that lists moves in brackets, the
  convention of TextArena's games (``Available Moves: '[0]', '[4]'``, ``Your available
  actions are: '[check]', '[bet]'``) and of seqmarl's OpenSpiel envs; with no such line it
  answers with any bracketed token of the text, and with none at all, the empty string (an
  invalid move, which the game penalises by its own rules).

Your own: ``module:factory`` where ``factory(seed)`` returns an object with
``act(observations: list[str]) -> list[str]`` (and, to resume exactly, ``state_dict()`` /
``load_state_dict()``), or register it in :data:`SCRIPTED`. ``seed`` is one ``int`` in
``[0, 2**63)``: the league derives it from the run's seed and the process's rank
(:func:`derive_seed`) and builds each scripted player once per run; its ``state_dict()``, if it
has one, goes into the checkpoint, so a resumed run continues its stream.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from seqmarl.agents.base import Player, Turn
from seqmarl.run.registry import Registry

__all__ = [
    "SCRIPTED",
    "RandomMovePlayer",
    "RulePlayer",
    "ScriptedPlayer",
    "derive_seed",
    "listed_moves",
    "make_scripted",
]

#: A line that lists moves: it names them and holds bracketed options.
_MOVES_LINE = re.compile(r"(available|legal|valid)[^\n]*(moves?|actions?)", re.IGNORECASE)
_QUOTED = re.compile(r"'(\[[^\]\n]*\])'")
_BRACKETED = re.compile(r"\[[^\]\n]{1,40}\]")


@runtime_checkable
class ScriptedPlayer(Protocol):
    """What the rollout needs from a player without a model."""

    def act(self, observations: Sequence[str]) -> list[str]:
        """One move (text) per observation."""
        ...


def listed_moves(observation: str) -> list[str]:
    """The moves an observation offers: the bracketed options of its last line listing moves.

    For example ``['[0]', '[4]']`` from a last line ``Available Moves: '[0]', '[4]'``.
    """
    for line in reversed(observation.splitlines()):
        if _MOVES_LINE.search(line):
            moves = _QUOTED.findall(line) or _BRACKETED.findall(line)
            if moves:
                return moves
    return []


class RandomMovePlayer:
    """A uniformly random move among those the observation lists (see the module docstring).

    Args:
        seed: Seeds its own generator (its state is checkpointed with the league).
    """

    name = "random"

    def __init__(self, seed: int | Sequence[int] = 0):
        self.rng = np.random.default_rng(seed)

    def act(self, observations: Sequence[str]) -> list[str]:
        """One random listed move per observation ("" where none is listed)."""
        out = []
        for obs in observations:
            moves = listed_moves(obs) or _BRACKETED.findall(obs[-2000:])
            out.append(str(moves[int(self.rng.integers(len(moves)))]) if moves else "")
        return out

    def respond(self, observations: Sequence[str], **_: Any) -> Turn:
        """The :class:`~seqmarl.agents.base.Player` face: :meth:`act`, no tokens."""
        return Turn(self.act(observations), None)

    def state_dict(self) -> dict[str, Any]:
        """The generator's state."""
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.rng.bit_generator.state = state["rng"]


#: Name -> ``factory(seed)`` of a scripted player (``module:factory`` names are imported).
SCRIPTED: Registry[Callable[..., ScriptedPlayer]] = Registry("scripted player")
SCRIPTED.register("random", RandomMovePlayer)


def derive_seed(*parts: int) -> int:
    """One ``int`` in ``[0, 2**63)`` from several (``derive_seed(seed, rank)``): a factory's seed.

    numpy's ``SeedSequence`` mixes the parts, so nearby tuples give unrelated streams.
    """
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def make_scripted(name: str, seed: int = 0) -> ScriptedPlayer:
    """The scripted player ``name``: ``factory(seed)`` with ``seed`` one ``int``.

    Raises:
        UnknownNameError: ``name`` is not registered (the message lists the names).
        TypeError: ``seed`` is not an ``int`` (derive one: :func:`derive_seed`).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"scripted player {name!r}: seed must be an int, got {seed!r}")
    player = SCRIPTED.get(name)(int(seed))
    if not isinstance(player, ScriptedPlayer):
        raise TypeError(f"scripted player {name!r}: {player!r} has no act(observations)")
    return player if isinstance(player, Player) else RulePlayer(player)


class RulePlayer:
    """A scripted player with ``act`` only, given the :class:`~seqmarl.agents.base.Player` face.

    Everything else (``act``, ``state_dict``, ...) is the wrapped player's.
    """

    def __init__(self, rule: ScriptedPlayer):
        self.rule = rule

    def respond(self, observations: Sequence[str], **_: Any) -> Turn:
        """The rule's moves as text; no tokens."""
        return Turn([str(t) for t in self.rule.act(observations)], None)

    def __getattr__(self, name: str) -> Any:
        if name == "rule":  # not yet set (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.rule, name)
