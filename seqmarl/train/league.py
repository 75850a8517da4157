"""A league of opponents: frozen snapshots of a learner, the base model and scripted players.

With ``league.opponents: [llm_1]`` the agent ``llm_1`` never learns: each iteration the league
draws who plays it, and the learner (``league.learner``, default the first other agent) trains
against that opponent. The candidates are

* ``snapshot:<i>``: the learner's weights at the start of iteration ``i``, taken every
  ``snapshot_every`` iterations (iteration 0, the initial model, included). On a shared base
  a snapshot is one LoRA adapter's tensors (kept on the CPU) that are copied into the
  opponent's own adapter slot when drawn: no base model is copied, and nothing of the
  snapshot is ever trained (the slot's parameters have ``requires_grad=False`` and no
  optimizer);
* ``base``: the opponent slot's initial weights (on a shared base a zero LoRA update, that
  is the base model itself);
* a scripted player (``random``, or ``module:factory``; :mod:`seqmarl.agents.scripted`),
  built once per run and slot with ``factory(seed)``, ``seed`` one int derived from the run's
  seed, the process's rank and the slot; its stream goes on from draw to draw, and its
  ``state_dict()`` is checkpointed per rank (:meth:`League.scripted_state`).

Sampling (``league.sampling``): ``latest`` (the newest snapshot), ``uniform``, or
``prioritized``: candidate ``c`` with weight ``(1 - w_c)^power``, where ``w_c`` is the learner's
win rate against it so far with one virtual draw, ``(wins + draws/2 + 0.5) / (games + 1)``
(PFSP, Vinyals et al. 2019). A game counts as a win when the learner's task reward is the
larger.

Every draw comes from a generator seeded by ``(seed, iteration)``, so it is the same on every
process and after a resume; the snapshots and the win counts are part of the checkpoint.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from seqmarl.agents.base import Player, Policy
from seqmarl.agents.scripted import derive_seed, make_scripted

__all__ = ["League", "game_outcomes", "slot_state", "snapshot_iteration"]


def snapshot_iteration(key: Any) -> int:
    """A snapshot's key in a checkpoint's league state: the iteration it was taken at.

    Raises:
        ValueError: Anything but an iteration (a checkpoint that seqmarl's league did not
            write, such as a key ``"../../../outside"``).
    """
    if isinstance(key, int) and not isinstance(key, bool) and key >= 0:
        return key
    if isinstance(key, str) and key.isascii() and key.isdigit():
        return int(key)
    raise ValueError(
        f"league snapshot key {str(key)[:80]!r} is not an iteration (seqmarl's league keys "
        "its snapshots by the iteration they were taken at)"
    )


def slot_state(state: Mapping[str, torch.Tensor], src: str, dst: str) -> dict[str, torch.Tensor]:
    """Agent ``src``'s model weights (``policy.*``) named for agent ``dst``'s slot.

    On a shared base the adapter's name is the agent id inside each key
    (``...lora_A.llm_0.weight``); copies have the same names in every agent. The value head
    is left out: an opponent does not learn.
    """
    return {
        k.replace(f".{src}.", f".{dst}."): v.detach().to("cpu", copy=True)
        for k, v in state.items()
        if k.startswith("policy.")
    }


def game_outcomes(task_rewards: np.ndarray, i: int, j: int) -> np.ndarray:
    """``(R,)`` agent ``i``'s result against ``j`` per row: 1 win, 0.5 draw, 0 loss."""
    mine, theirs = task_rewards[:, i], task_rewards[:, j]
    return np.where(mine > theirs, 1.0, np.where(mine == theirs, 0.5, 0.0))


class League:
    """Draws the opponents of each iteration and keeps the snapshots and win counts.

    Args:
        cfg: The run's ``league`` section.
        agents: Agent id -> policy (the pool's agents).
        agent_ids: The setting's agent ids (columns of the task rewards).
        seed: The run's seed.
        rank: This process's rank (seeds a scripted player's moves per process).
    """

    def __init__(
        self,
        cfg: Any,
        agents: Mapping[str, Policy],
        agent_ids: Sequence[str],
        *,
        seed: int = 0,
        rank: int = 0,
    ):
        self.cfg = cfg
        self.ids = tuple(agent_ids)
        self.opponents = tuple(cfg.opponents)
        self.learner = cfg.learner or next(a for a in self.ids if a not in self.opponents)
        self.seed = seed
        self.rank = rank
        self.agents = agents
        for slot in self.opponents:  # generate, never learn
            for p in agents[slot].parameters():
                p.requires_grad_(False)
        self.initial = {
            slot: slot_state(agents[slot].state_dict(), slot, slot) for slot in self.opponents
        }
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        #: candidate -> [games, wins, draws] of the learner against it
        self.stats: dict[str, list[float]] = {}
        self.current: dict[str, str] = {}
        self.iteration = 0  # the iteration of the last draw
        #: slot -> the scripted player drawn for it this iteration (None: a model plays)
        self._scripted: dict[str, Player] = {}
        #: "slot/name" -> the scripted player built for that slot, once per run
        self._built: dict[str, Player] = {}
        #: "slot/name" -> a checkpointed state for a player not built yet
        self._pending: dict[str, Any] = {}

    # ------------------------------------------------------------------ candidates
    @property
    def candidates(self) -> list[str]:
        """Who may be drawn: the fixed opponents, then the snapshots, oldest first."""
        return [*self.cfg.fixed, *(f"snapshot:{i}" for i in sorted(self.snapshots))]

    def win_rate(self, name: str) -> float:
        """The learner's win rate against ``name`` with one virtual draw (0.5 unplayed)."""
        games, wins, draws = self.stats.get(name, (0.0, 0.0, 0.0))
        return (wins + draws / 2 + 0.5) / (games + 1)

    def weights(self) -> np.ndarray:
        """The probability of drawing each candidate."""
        names = self.candidates
        if self.cfg.sampling == "latest":
            w = np.zeros(len(names))
            w[-1] = 1.0
        elif self.cfg.sampling == "uniform":
            w = np.ones(len(names))
        else:
            w = np.array([(1.0 - self.win_rate(n)) ** self.cfg.power for n in names])
            w = w if w.sum() > 0 else np.ones(len(names))
        return w / w.sum()

    # ------------------------------------------------------------------ each iteration
    def prepare(self, iteration: int) -> dict[str, str]:
        """Snapshot the learner if due, draw this iteration's opponents and load them."""
        every = self.cfg.snapshot_every
        if every and iteration % every == 0 and iteration not in self.snapshots:
            learner = self.agents[self.learner].state_dict()
            self.snapshots[iteration] = slot_state(learner, self.learner, self.learner)
            while len(self.snapshots) > self.cfg.max_snapshots:
                del self.snapshots[min(self.snapshots)]
        rng = np.random.default_rng([self.seed, iteration, 7919])
        names, p = self.candidates, self.weights()
        drawn = {}
        for slot in self.opponents:
            drawn[slot] = names[int(rng.choice(len(names), p=p))]
            self._load(slot, drawn[slot], iteration)
        self.current = drawn
        self.iteration = iteration
        return drawn

    def players(self) -> dict[str, Player]:
        """Agent id -> who plays it this iteration (a policy, or a scripted player)."""
        return {a: self._scripted.get(a) or self.agents[a] for a in self.ids}

    def record(self, task_rewards: np.ndarray) -> dict[str, float]:
        """Count this iteration's games (all processes' rows) against the drawn opponents.

        Returns:
            Metrics: ``league/<slot>/win_rate``, ``.../draw_rate`` and ``.../return`` (the
            learner's mean task reward) this iteration, the same three under
            ``league/<slot>/vs/<kind>/`` for the kind drawn (``random``, ``base``, a scripted
            player's name, or ``snapshot`` with ``league/<slot>/snapshot_age``, the iterations
            since it was taken), and the league's size.
        """
        i = self.ids.index(self.learner)
        out: dict[str, float] = {"league/candidates": float(len(self.candidates))}
        for slot, name in self.current.items():
            results = game_outcomes(task_rewards, i, self.ids.index(slot))
            games, wins, draws = self.stats.setdefault(name, [0.0, 0.0, 0.0])
            self.stats[name] = [
                games + len(results),
                wins + float((results == 1).sum()),
                draws + float((results == 0.5).sum()),
            ]
            snapshot = name.startswith("snapshot:")
            kind = "snapshot" if snapshot else name
            now = {
                "win_rate": float((results == 1).mean()),
                "draw_rate": float((results == 0.5).mean()),
                "return": float(np.mean(task_rewards[:, i])),
            }
            for what, value in now.items():
                out[f"league/{slot}/{what}"] = value
                out[f"league/{slot}/vs/{kind}/{what}"] = value
            out[f"league/{slot}/snapshot"] = float(name.partition(":")[2]) if snapshot else -1.0
            if snapshot:
                out[f"league/{slot}/snapshot_age"] = float(
                    self.iteration - int(name.partition(":")[2])
                )
        return out

    def _load(self, slot: str, name: str, iteration: int) -> None:
        self._scripted.pop(slot, None)
        if name.startswith("snapshot:"):
            state = slot_state(self.snapshots[int(name.partition(":")[2])], self.learner, slot)
        elif name == "base":
            state = self.initial[slot]
        else:  # a scripted player: built once per run, slot and process
            self._scripted[slot] = self._scripted_player(slot, name)
            return
        agent = self.agents[slot]
        agent.load_state_dict(state)
        agent.sync()  # an engine serving the slot pushes the new weights before generating

    def _scripted_player(self, slot: str, name: str) -> Player:
        key = f"{slot}/{name}"
        if key not in self._built:
            seed = derive_seed(self.seed, self.rank, self.ids.index(slot))
            player = make_scripted(name, seed)
            if key in self._pending and hasattr(player, "load_state_dict"):
                player.load_state_dict(self._pending.pop(key))
            self._built[key] = player
        return self._built[key]

    # ------------------------------------------------------------------ checkpoints
    def scripted_state(self) -> dict[str, Any]:
        """This process's scripted players' states (``"slot/name"`` -> ``state_dict()``).

        Per rank (each process seeds its own), so the trainer keeps it with the rank's random
        streams, and restores it when a stop abandons an iteration's play. A player without
        ``state_dict()`` starts again from its seed after a resume.
        """
        out = {k: v for k, v in self._pending.items()}
        for key, player in self._built.items():
            if hasattr(player, "state_dict"):
                out[key] = copy.deepcopy(player.state_dict())
        return out

    def load_scripted_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`scripted_state` (players not built yet take it when built)."""
        self._pending = {}
        for key, value in state.items():
            player = self._built.get(key)
            if player is not None and hasattr(player, "load_state_dict"):
                player.load_state_dict(copy.deepcopy(value))
            else:
                self._pending[key] = copy.deepcopy(value)

    def state_dict(self) -> dict[str, Any]:
        """Snapshots and win counts (the draws are derived from the seed and iteration)."""
        return {
            "snapshots": {int(k): dict(v) for k, v in self.snapshots.items()},
            "stats": {k: list(v) for k, v in self.stats.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.snapshots = {snapshot_iteration(k): dict(v) for k, v in state["snapshots"].items()}
        self.stats = {k: list(v) for k, v in state["stats"].items()}
