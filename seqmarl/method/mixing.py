"""The one reward mixer: task rewards -> trained rewards through the coefficient matrix C.

Every path that hands out trained rewards goes through :class:`RewardMixer`: the rollout
(per turn, with causal credit and the seat order of the iteration), seqmarl's own PettingZoo
env (:class:`~seqmarl.envs.sequential.SequentialTextEnv`), the PettingZoo face of a wrapped env
(:class:`~seqmarl.envs.wrappers.TextAECWrapper`) and :meth:`seqmarl.method.settings.Setting.mix`.
Inside the library the matrix has one form, a float64 ``(N, N)`` array, validated where a
setting is built (:func:`seqmarl.method.settings.coefficient_matrix`).

The rules, with ``r`` a vector of task rewards in agent-id order:

* ``trained_i = sum_j M[i, j] * r_j`` where ``M`` is ``C`` (credit ``full``) or ``C`` with
  ``C[i][j]`` set to 0 wherever agent ``j`` sits before agent ``i`` (credit ``causal``);
* a reward handed out during play (a turn reward, a PettingZoo step reward, the final score)
  is credited, mixed, to each agent's latest turn at that moment; a reward that reaches an
  agent before its first turn has no action to credit and is counted as *uncredited*.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from seqmarl.errors import ConfigError

__all__ = ["CREDIT_RULES", "Credited", "RewardMixer", "credit_matrix"]

CREDIT_RULES = ("full", "causal")


def credit_matrix(coef: np.ndarray, seat_of: Sequence[int], credit: str = "full") -> np.ndarray:
    """The coefficient matrix an episode is mixed with, given each agent's seat.

    ``full`` returns ``coef`` unchanged. ``causal`` zeroes ``C[i][j]`` wherever agent ``j``
    sits before agent ``i`` (``seat_of[j] < seat_of[i]``): an earlier seat's answer is fixed
    by the time agent ``i`` answers (it is part of what ``i`` observes), so its reward carries
    no information about ``i``'s action. Dropping it leaves the expected policy gradient of
    the mixed objective unchanged and removes that term's variance. Agents at or after ``i``
    keep their weights: ``i``'s answer changes what they see.

    Args:
        coef: ``(N, N)`` coefficient matrix, rows and columns in agent-id order.
        seat_of: ``seat_of[j]`` is the seat (0 = first to act) of agent ``j``.
        credit: ``full`` or ``causal``.

    Returns:
        A new ``(N, N)`` float64 array.
    """
    if credit not in CREDIT_RULES:
        raise ConfigError(f"credit: unknown rule {credit!r}; use one of {', '.join(CREDIT_RULES)}")
    m = np.array(coef, dtype=np.float64)
    if credit == "causal":
        seat = np.asarray(seat_of)
        if sorted(seat.tolist()) != list(range(m.shape[0])):
            raise ValueError(f"seat_of must be a permutation of 0..{m.shape[0] - 1}, got {seat_of}")
        m[seat[None, :] < seat[:, None]] = 0.0  # [i, j]: j sits before i
    return m


@dataclass(frozen=True)
class Credited:
    """Mixed rewards of a batch of rows, per agent and turn.

    Attributes:
        turns: Per row, per agent: the mixed reward credited to each of its turns.
        uncredited: ``(R, N)`` mixed reward that reached an agent before its first turn.
    """

    turns: list[dict[str, list[float]]]
    uncredited: np.ndarray


class RewardMixer:
    """The coefficient matrix and the credit rule of a game, applied in one place.

    Args:
        coef: ``(N, N)`` matrix, rows and columns in agent-id order (validated by
            :func:`seqmarl.method.settings.coefficient_matrix`).
        agents: The agent ids, in agent-id order.
        credit: ``full`` or ``causal`` (:func:`credit_matrix`).
    """

    def __init__(self, coef: np.ndarray, agents: Sequence[str], credit: str = "full"):
        self.coef = np.array(coef, dtype=np.float64)
        self.coef.setflags(write=False)
        self.agents = tuple(agents)
        if credit not in CREDIT_RULES:
            raise ConfigError(
                f"credit: unknown rule {credit!r}; use one of {', '.join(CREDIT_RULES)}"
            )
        self.credit = credit
        self._cache: dict[tuple[str, ...], np.ndarray] = {}

    def matrix(self, seats: Sequence[str]) -> np.ndarray:
        """``M`` for this seat order (``seats[k]`` acts in seat ``k``); read-only."""
        key = tuple(seats)
        if key not in self._cache:
            seat_of = [key.index(a) for a in self.agents]
            m = credit_matrix(self.coef, seat_of, self.credit)
            m.setflags(write=False)
            self._cache[key] = m
        return self._cache[key]

    def mix(self, raw: np.ndarray, seats: Sequence[str]) -> np.ndarray:
        """``(..., N)`` trained rewards from ``(..., N)`` task rewards: ``M @ r`` per row.

        Row by row, the same product :meth:`credit_turns` takes, so a one-round return and its
        trained reward are equal to the bit.
        """
        r = np.asarray(raw, dtype=np.float64)
        n = len(self.agents)
        if r.shape[-1] != n:
            raise ValueError(f"expected last dim {n}, got shape {r.shape}")
        m = self.matrix(seats)
        rows = [m @ row for row in r.reshape(-1, n)]  # (N, N) @ (N,) each
        return np.array(rows, dtype=np.float64).reshape(r.shape)

    def credit_turns(
        self,
        actors: Sequence[Sequence[str]],
        turn_rewards: Sequence[Sequence[np.ndarray]],
        seats: Sequence[str],
        *,
        early: np.ndarray | None = None,
        final: np.ndarray | None = None,
    ) -> Credited:
        """Credit each row's handed-out rewards, mixed, to the agents' latest turns.

        Args:
            actors: Per row, the agent of each turn, in play order.
            turn_rewards: Per row, one raw ``(N,)`` vector per turn: what was handed out
                after that turn and before the next.
            seats: The seat order the rows were played in.
            early: ``(R, N)`` raw rewards handed out before a row's first turn.
            final: ``(R, N)`` raw rewards handed out after a row's last turn.
        """
        m = self.matrix(seats)
        n = len(self.agents)
        uncredited = np.zeros((len(actors), n))
        out: list[dict[str, list[float]]] = []
        for r, (who, rewards) in enumerate(zip(actors, turn_rewards, strict=True)):
            if len(who) != len(rewards):
                raise ValueError(f"row {r}: {len(who)} turns but {len(rewards)} reward vectors")
            credit: dict[str, list[float]] = {a: [] for a in self.agents}

            def hand_out(raw: np.ndarray, credit=credit, r=r) -> None:
                mixed = m @ np.asarray(raw, dtype=np.float64)  # (N, N) @ (N,)
                for i, a in enumerate(self.agents):
                    if credit[a]:
                        credit[a][-1] += float(mixed[i])
                    else:
                        uncredited[r, i] += float(mixed[i])

            if early is not None:
                hand_out(early[r])
            for agent, raw in zip(who, rewards, strict=True):
                credit[agent].append(0.0)
                hand_out(raw)
            if final is not None:
                hand_out(final[r])
            out.append(credit)
        return Credited(out, uncredited)
