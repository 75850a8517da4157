"""Matches: a run's agents against opponents, in every seat, and the games of many pairs at once.

``seqmarl eval RUN --opponent NAME`` plays a trained agent against one opponent;
``seqmarl eval RUN --round-robin`` plays every pair of the run's contenders and rates them
(:mod:`seqmarl.eval.roundrobin`). A contender is

* an agent id of the run (``llm_0``): its weights in the newest checkpoint;
* ``snapshot:<i>``: the league's snapshot of the learner taken at iteration ``i``;
* ``base``: the initial model (what every agent started from);
* a scripted player: ``random`` or ``module:factory`` (:mod:`seqmarl.agents.scripted`);
* another model: a folder, a hub id (``org/name``) or ``embedded:<name>``, untrained, loaded
  as the run's agents are (mode, dtype, device, generation settings) on its own base and
  tokenizer (:meth:`Contenders.is_model_source`).

In a match of A against B, A plays agent ``llm_0`` and B every other agent of the game (in a
game of N players, B fills N - 1 seats). The seats rotate: ``games // N`` games (one more for
the first ``games % N`` seats) with A in each seat, on the same reset seeds, so a first-mover
advantage and the deal of a card game cancel out. Per seat and over ``both`` (every seat):
A's mean **return** (its task reward) and the opponents' (``opponent_return``, their mean),
win, draw and loss rates (a win: A's return above every opponent's; a draw: tied with the
best), the rate of refused (illegal) moves and of games lost by them (forfeits), and game
length, each with its standard error (``sqrt(p (1 - p) / n)`` for a rate, ``std / sqrt(n)``
for a mean). Returns are what a general-sum game is judged by; wins are the zero-sum view.

:func:`play_pairs` plays the games of several pairs at once: each contender with a model sits
in its own agent slot (on a shared base, its own adapter), and whenever rows of any pair wait
on it, it answers all of them in one batched generation. A group's random streams (sampling,
scripted players) are derived from ``(seed, index of its first pair)``, so a group replays the
same games whenever it is played again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqmarl import envs
from seqmarl.agents.pool import AgentPool
from seqmarl.agents.scripted import SCRIPTED, derive_seed, make_scripted
from seqmarl.config import RunConfig
from seqmarl.errors import ConfigError, ContextLengthError
from seqmarl.run.checkpoint import CheckpointError, load_latest
from seqmarl.train.league import slot_state, snapshot_iteration

__all__ = ["Contenders", "play_match", "play_pairs", "rotations", "summarize"]


class Contenders:
    """Where each contender's weights come from, and the agent slots that hold them.

    Args:
        run_dir: The run folder (its newest usable checkpoint is read).
        cfg: The run's config.
        pool: A pool of the run's agents, untrained and without value heads (its initial
            weights are ``base``). A pool with more slots than the game has agents (on a shared
            base: more adapters) holds more model contenders at once (:meth:`players`). None:
            give it later with :meth:`attach` (the contenders' names need none).
    """

    def __init__(self, run_dir: Path, cfg: RunConfig, pool: AgentPool | None = None):
        try:
            path, state = load_latest(Path(run_dir) / "checkpoints", move_damaged=False)
        except CheckpointError as exc:
            raise CheckpointError(f"eval: {exc}") from None
        self.cfg = cfg
        self.pool = pool
        self.iteration = int(state["iteration"])
        self.learners = {a: s["agent"] for a, s in state["learners"].items()}
        league = state.get("league") or {}
        self.snapshots = {_snapshot_key(k, path): v for k, v in league.get("snapshots", {}).items()}
        self.agent_ids = cfg.setting.build().agent_ids
        self.learner = cfg.league.learner or next(a for a in self.agent_ids if a in self.learners)
        self._sources: dict[str, Any] = {}  # model source -> its policy (loaded once)
        if pool is not None:
            self.attach(pool)

    def attach(self, pool: AgentPool) -> None:
        """Play with ``pool``'s slots from now on (untrained: its initial weights are ``base``)."""
        self.pool = pool
        self.slots = tuple(pool.agents)
        self.initial = {s: slot_state(pool[s].state_dict(), s, s) for s in self.slots}
        self._held: dict[str, str] = {}  # slot -> the contender whose weights it holds
        self._games: list[Any] = []

    def names(self) -> list[str]:
        """Every contender of the run: its agents, snapshots and fixed opponents."""
        fixed = [n for n in ["base", "random", *self.cfg.league.fixed] if n]
        out = [*self.learners, *(f"snapshot:{i}" for i in sorted(self.snapshots))]
        return list(dict.fromkeys([*out, *fixed]))

    @staticmethod
    def is_model_source(name: str) -> bool:
        """Whether ``name`` names a model to load: a folder, ``org/name`` or ``embedded:<x>``."""
        return name.startswith("embedded:") or "/" in name or Path(name).is_dir()

    def check(self, name: str) -> None:
        """Raise one line for a name that is no contender of this run."""
        if name in self.learners or name == "base" or name in SCRIPTED:
            return
        if self.is_model_source(name):
            return  # loaded when it plays; a source that does not load is one line then
        if name.startswith("snapshot:"):
            it = name.partition(":")[2]
            if it.isdigit() and int(it) in self.snapshots:
                return
            have = ", ".join(f"snapshot:{i}" for i in sorted(self.snapshots)) or "none"
            raise ConfigError(f"{name!r}: the run has no such snapshot ({have})")
        if ":" in name:
            SCRIPTED.get(name)  # module:factory, imported (a bad one is one line)
            return
        raise ConfigError(
            f"{name!r}: not a contender of this run; use one of "
            f"{', '.join(self.names())}, a scripted player's module:factory, or a model "
            "(a folder, org/name on the hub, embedded:<name>)"
        )

    @classmethod
    def scripted(cls, name: str) -> bool:
        """Whether ``name`` is a scripted player (no model)."""
        return name in SCRIPTED or (
            ":" in name and not name.startswith("snapshot:") and not cls.is_model_source(name)
        )

    def _source(self, name: str) -> Any:
        """The untrained policy of the model ``name``, on its own base (loaded once)."""
        if name not in self._sources:
            own = self.cfg.agents.model_copy(
                update={"model": name, "gguf_file": None, "tokenizer": None, "per_agent": {}}
            )
            pool = AgentPool.from_config(own, self.agent_ids[:1], seed=self.cfg.train.seed)
            self._sources[name] = pool[self.agent_ids[0]]
        return self._sources[name]

    def seat(self, name: str, slot: str, seed: int) -> Any:
        """Put ``name`` in agent ``slot``: its weights loaded there, or a scripted player."""
        self.check(name)
        if self.scripted(name):
            return make_scripted(name, seed)
        if self.is_model_source(name):
            return self._source(name)
        if self._held.get(slot) != name:
            agent = self.pool[slot]
            agent.load_state_dict(self._state(name, slot))
            agent.sync()
            self._held[slot] = name
        return self.pool[slot]

    def players(self, names: Sequence[str]) -> dict[str, Any]:
        """The policies of the model contenders ``names``, each in its own slot.

        A contender already in a slot stays there (its weights are not loaded again).

        Raises:
            ValueError: More model contenders than the pool has slots.
        """
        sources = {n: self._source(n) for n in names if self.is_model_source(n)}
        wanted = [n for n in dict.fromkeys(names) if not self.scripted(n) and n not in sources]
        if len(wanted) > len(self.slots):
            raise ValueError(f"{len(wanted)} model contenders need as many slots; the pool has "
                             f"{len(self.slots)}")  # fmt: skip
        where = {n: s for s, n in self._held.items() if n in wanted}
        free = [s for s in self.slots if s not in where.values()]
        for n in wanted:
            if n not in where:
                where[n] = free.pop(0)
        return {**{n: self.seat(n, where[n], 0) for n in wanted}, **sources}

    def games(self, n: int) -> list[Any]:
        """``n`` games of the run (one per seat order), built once and reused: their envs too."""
        setting = self.cfg.setting.build()
        while len(self._games) < n:
            game = envs.build_game(self.cfg.task, setting, tokenizer=self.pool.tokenizer)
            self._games.append(game)
        return self._games[:n]

    def _state(self, name: str, slot: str) -> dict[str, torch.Tensor]:
        if name == "base":
            return self.initial[slot]
        if name.startswith("snapshot:"):
            snap = self.snapshots[int(name.partition(":")[2])]
            return slot_state(snap, self.learner, slot)
        return slot_state(self.learners[name], name, slot)


def _snapshot_key(key: Any, checkpoint: Path) -> int:
    """:func:`~seqmarl.train.league.snapshot_iteration`: a bad key is one line naming the file."""
    try:
        return snapshot_iteration(key)
    except ValueError as exc:
        raise CheckpointError(
            f"eval: checkpoint {checkpoint}: {exc}; it does not load here"
        ) from None


def rotations(agent_ids: Sequence[str]) -> list[tuple[str, ...]]:
    """The seat orders of a match: ``agent_ids[0]`` (A) in seat 0, 1, ..., the rest in order."""
    first, rest = agent_ids[0], list(agent_ids[1:])
    return [(*rest[:k], first, *rest[k:]) for k in range(len(agent_ids))]


def _outcome(returns: np.ndarray) -> float:
    """A's result from one row's returns (A first): 1 above all, 0.5 tied for best, else 0."""
    mine, best = returns[0], returns[1:].max()
    return 1.0 if mine > best else 0.5 if mine == best else 0.0


def play_pairs(
    contenders: Contenders,
    pairs: Sequence[tuple[str, str]],
    *,
    games: int,
    seed: int = 1234,
    stream: int = 0,
) -> list[list[dict[str, Any]]]:
    """The games of every pair of ``pairs``, played together; one row list per pair.

    Each pair plays ``games`` games, its first contender (A) in each seat in turn (see the
    module docstring), on the same reset seeds (from ``seed``) as every other pair. Whenever
    rows of any pair wait on a model contender, it answers them all in one generation.

    Args:
        contenders: The run's contenders (enough slots for the pairs' model contenders).
        pairs: ``(a, b)`` pairs.
        games: Games per pair.
        seed: Seeds the reset seeds (shared by every pair) and, with ``stream``, the rest.
        stream: Which random streams play (the index of the first pair in a round robin):
            the sampling generator and the scripted players are seeded from ``(seed,
            stream)``.

    Returns:
        Per pair, one row per game: A's ``seat``, ``score`` (1 win, 0.5 draw, 0 loss),
        ``return`` and the opponents' mean ``opponent_return``, A's ``moves``, ``invalid``
        moves and ``forfeit``, and the game's ``length`` (turns).
    """
    ids = contenders.agent_ids
    orders = rotations(ids)
    counts = [games // len(ids) + (k < games % len(ids)) for k in range(len(ids))]
    built = contenders.games(len(orders))
    proto = built[0]
    prompts = proto.sample_prompts(max(counts), np.random.default_rng(seed))
    models = contenders.players([n for p in pairs for n in p])
    scripted = {  # one per pair and contender, seeded per (seed, stream, pair, side)
        (i, side): make_scripted(name, derive_seed(seed, stream, i, side))
        for i, pair in enumerate(pairs)
        for side, name in enumerate(pair)
        if contenders.scripted(name)
    }
    gen = torch.Generator(device=contenders.pool.device)
    gen.manual_seed(derive_seed(seed, stream))
    # one game per seat order, its rows: every pair's games in that order, pair-major
    tables = []
    for k, (game, seats) in enumerate(zip(built, orders, strict=True)):
        pair_of = [i for i in range(len(pairs)) for _ in range(counts[k])]
        game.reset([p for _ in pairs for p in prompts[: counts[k]]], seats)
        tables.append((game, seats, pair_of, np.zeros((len(pair_of), len(ids)), dtype=np.int64)))

    def who(i: int, agent: str) -> tuple[int, str]:  # (side, contender) playing agent in pair i
        side = 0 if agent == ids[0] else 1
        return side, pairs[i][side]

    while True:
        todo: dict[Any, list[tuple[int, str, list[int]]]] = {}  # player -> (table, agent, rows)
        for t, (game, _, pair_of, _) in enumerate(tables):
            for agent, rows in game.waiting().items():
                for r in rows:
                    side, name = who(pair_of[r], agent)
                    key = name if name in models else (pair_of[r], side)
                    runs = todo.setdefault(key, [])
                    if runs and runs[-1][:2] == (t, agent):
                        runs[-1][2].append(r)
                    else:
                        runs.append((t, agent, [r]))
        if not todo:
            break
        for key, runs in todo.items():
            obs = [o for t, a, rows in runs for o in tables[t][0].observe(a, rows)]
            player = models[key] if isinstance(key, str) else scripted[key]
            texts = _answer(player, obs, gen, proto, key)
            for t, agent, rows in runs:
                game, _, _, turns = tables[t]
                mine, texts = texts[: len(rows)], texts[len(rows) :]
                turns[rows, ids.index(agent)] += 1
                game.act(agent, rows, mine)
    out: list[list[dict[str, Any]]] = [[] for _ in pairs]
    for game, seats, pair_of, turns in tables:
        res = game.result()
        infos = res.infos or [{} for _ in pair_of]
        for r, i in enumerate(pair_of):
            rets = np.asarray(res.outcome[r], dtype=float)
            info = infos[r].get(ids[0], {})
            out[i].append(
                {
                    "seat": seats.index(ids[0]),
                    "score": _outcome(rets),
                    "return": float(rets[0]),
                    "opponent_return": float(rets[1:].mean()),
                    "moves": int(turns[r, 0]),
                    "invalid": float(info.get("invalid_moves", math.nan)),
                    "forfeit": float(info["forfeit"]) if "forfeit" in info else math.nan,
                    "length": int(turns[r].sum()),
                }
            )
    return out


def _answer(player: Any, obs: list[str], gen: torch.Generator, game: Any, key: Any) -> list[str]:
    """One text per observation from a model (one batched generation) or a scripted player."""
    try:
        return player.respond(obs, generator=gen, stop_strings=game.stop_strings).texts
    except ContextLengthError as exc:
        raise ContextLengthError(f"env {game.env_id!r}, contender {key}: {exc}") from None


def play_match(
    contenders: Contenders,
    a: str,
    b: str,
    *,
    games: int,
    seed: int = 1234,
) -> list[dict[str, Any]]:
    """``games`` games of ``a`` against ``b``, ``a`` in each seat in turn (:func:`play_pairs`)."""
    for n in (a, b):
        contenders.check(n)
    return play_pairs(contenders, [(a, b)], games=games, seed=seed)[0]


def _rate(x: np.ndarray) -> dict[str, float]:
    p = float(x.mean()) if len(x) else math.nan
    return {"mean": p, "se": math.sqrt(p * (1 - p) / len(x)) if len(x) else math.nan}


def _mean(x: np.ndarray) -> dict[str, float]:
    x = x[~np.isnan(x)]
    if not len(x):
        return {"mean": math.nan, "se": math.nan}
    se = float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan
    return {"mean": float(x.mean()), "se": se}


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per seat (``seat_0``, ``seat_1``, ...) and over ``both`` (every seat): means with SEs."""
    seats = sorted({int(r["seat"]) for r in rows}) or [0, 1]
    out = {}
    for key, pick in [*((f"seat_{k}", k) for k in seats), ("both", None)]:
        sel = [r for r in rows if pick is None or r["seat"] == pick]
        score = np.array([r["score"] for r in sel])
        invalid = np.array([r["invalid"] for r in sel], dtype=float)
        moves = np.array([r["moves"] for r in sel], dtype=float)
        known = ~np.isnan(invalid)
        attempts = float(moves[known].sum())
        illegal = float(invalid[known].sum()) / attempts if attempts else math.nan
        out[key] = {
            "games": len(sel),
            "return": _mean(np.array([r.get("return", math.nan) for r in sel], dtype=float)),
            "opponent_return": _mean(
                np.array([r.get("opponent_return", math.nan) for r in sel], dtype=float)
            ),
            "win": _rate(score == 1.0),
            "draw": _rate(score == 0.5),
            "loss": _rate(score == 0.0),
            "score": _mean(score),
            # per move: the share of the agent's turns the game refused
            "illegal_move_rate": {
                "mean": illegal,
                "se": math.sqrt(illegal * (1 - illegal) / attempts) if attempts else math.nan,
            },
            "forfeit": _mean(np.array([r["forfeit"] for r in sel], dtype=float)),
            "length": _mean(np.array([r["length"] for r in sel], dtype=float)),
        }
    return out
