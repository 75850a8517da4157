"""Matches: a run's agents against opponents, in both seat orders, and round-robin ratings.

``seqmarl eval RUN --opponent NAME`` plays a trained agent of a two-player game against one
opponent; ``seqmarl eval RUN --round-robin`` plays every pair of the run's contenders and rates
them. A contender is

* an agent id of the run (``llm_0``): its weights in the newest checkpoint;
* ``snapshot:<i>``: the league's snapshot of the learner taken at iteration ``i``;
* ``base``: the initial model (what every agent started from);
* a scripted player: ``random`` or ``module:factory`` (:mod:`seqmarl.agents.scripted`).

Two models play from one pool: contender A's weights go into agent ``llm_0``'s slot and B's
into ``llm_1``'s (on a shared base: two adapters). Half the games are played with A in seat 0
and half with A in seat 1, on the same reset seeds, so a first-mover advantage and the deal
of a card game cancel out. Per seat and over both: win, draw and loss rates, the rate of
refused (illegal) moves and of games lost by them (forfeits), and game length, each with its
standard error (``sqrt(p (1 - p) / n)`` for a rate, ``std / sqrt(n)`` for a mean).
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
from seqmarl.checkpoint import CheckpointError, load_latest
from seqmarl.config import RunConfig
from seqmarl.errors import ConfigError
from seqmarl.league import game_outcomes, slot_state, snapshot_iteration
from seqmarl.rollout import play

__all__ = ["Contenders", "play_match", "round_robin", "summarize"]

_SLOTS = ("llm_0", "llm_1")


class Contenders:
    """Where each contender's weights come from: the run's checkpoint and the initial model.

    Args:
        run_dir: The run folder (its newest usable checkpoint is read).
        cfg: The run's config.
        pool: A pool of the run's two agents, untrained and without value heads (its
            initial weights are ``base``).
    """

    def __init__(self, run_dir: Path, cfg: RunConfig, pool: AgentPool):
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
        ids = cfg.setting.build().agent_ids
        self.learner = cfg.league.learner or next(a for a in ids if a in self.learners)
        self.initial = {s: slot_state(pool[s].state_dict(), s, s) for s in _SLOTS}

    def names(self) -> list[str]:
        """Every contender of the run: its agents, snapshots and fixed opponents."""
        fixed = [n for n in ["base", "random", *self.cfg.league.fixed] if n]
        out = [*self.learners, *(f"snapshot:{i}" for i in sorted(self.snapshots))]
        return list(dict.fromkeys([*out, *fixed]))

    def check(self, name: str) -> None:
        """Raise one line for a name that is no contender of this run."""
        if name in self.learners or name == "base" or name in SCRIPTED:
            return
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
            f"{', '.join(self.names())} or a scripted player's module:factory"
        )

    def seat(self, name: str, slot: str, seed: int) -> Any:
        """Put ``name`` in agent ``slot``: its weights loaded there, or a scripted player."""
        self.check(name)
        if name in SCRIPTED or (":" in name and not name.startswith("snapshot:")):
            return make_scripted(name, seed)
        if name == "base":
            state = self.initial[slot]
        elif name.startswith("snapshot:"):
            snap = self.snapshots[int(name.partition(":")[2])]
            state = slot_state(snap, self.learner, slot)
        else:
            state = slot_state(self.learners[name], name, slot)
        agent = self.pool[slot]
        agent.load_state_dict(state)
        agent.sync()
        return agent


def _snapshot_key(key: Any, checkpoint: Path) -> int:
    """:func:`~seqmarl.league.snapshot_iteration`, a bad key as one line naming the checkpoint."""
    try:
        return snapshot_iteration(key)
    except ValueError as exc:
        raise CheckpointError(
            f"eval: checkpoint {checkpoint}: {exc}; it does not load here"
        ) from None


def play_match(
    contenders: Contenders,
    a: str,
    b: str,
    *,
    games: int,
    batch_size: int = 16,
    seed: int = 1234,
) -> list[dict[str, Any]]:
    """``games`` games of ``a`` against ``b``, half with ``a`` in each seat, same seeds.

    Returns:
        One row per game: ``seat`` (a's), ``score`` (a's: 1 win, 0.5 draw, 0 loss), a's
        ``moves``, ``invalid`` moves and ``forfeit``, and the game's ``length`` (turns).
    """
    cfg = contenders.cfg
    setting = cfg.setting.build()
    if setting.agent_ids != _SLOTS:
        raise ConfigError(
            f"eval --opponent plays two-player games; this run has agents "
            f"{', '.join(setting.agent_ids)}"
        )
    game = envs.build_game(cfg.task, setting, tokenizer=contenders.pool.tokenizer)
    players = {
        _SLOTS[0]: contenders.seat(a, _SLOTS[0], derive_seed(seed, 0)),
        _SLOTS[1]: contenders.seat(b, _SLOTS[1], derive_seed(seed, 1)),
    }
    rng = np.random.default_rng(seed)
    prompts = game.sample_prompts(games - games // 2, rng)
    gen = torch.Generator(device=contenders.pool.device).manual_seed(seed)
    rows: list[dict[str, Any]] = []
    for k, seats in enumerate((_SLOTS, _SLOTS[::-1])):
        todo = prompts[: games - games // 2] if k == 0 else prompts[: games // 2]
        for start in range(0, len(todo), batch_size):
            roll = play(game, players, todo[start : start + batch_size], seats, generator=gen)
            scores = game_outcomes(roll.task_rewards, 0, 1)
            for r in range(len(scores)):
                info = roll.infos[r].get(_SLOTS[0], {}) if roll.infos else {}
                rows.append(
                    {
                        "seat": seats.index(_SLOTS[0]),
                        "score": float(scores[r]),
                        "moves": int(roll.turns[r, 0]),
                        "invalid": float(info.get("invalid_moves", math.nan)),
                        "forfeit": float(info["forfeit"]) if "forfeit" in info else math.nan,
                        "length": int(roll.turns[r].sum()),
                    }
                )
    return rows


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
    """Per seat (``seat_0``, ``seat_1``) and over ``both``: rates and means with their SEs."""
    out = {}
    for key, pick in (("seat_0", 0), ("seat_1", 1), ("both", None)):
        sel = [r for r in rows if pick is None or r["seat"] == pick]
        score = np.array([r["score"] for r in sel])
        invalid = np.array([r["invalid"] for r in sel], dtype=float)
        moves = np.array([r["moves"] for r in sel], dtype=float)
        known = ~np.isnan(invalid)
        attempts = float(moves[known].sum())
        illegal = float(invalid[known].sum()) / attempts if attempts else math.nan
        out[key] = {
            "games": len(sel),
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


def round_robin(
    contenders: Contenders,
    names: Sequence[str],
    *,
    games: int,
    batch_size: int = 16,
    seed: int = 1234,
    out_dir: Path | None = None,
    stem: str = "ratings",
) -> dict[str, Any]:
    """Every pair of ``names`` plays ``games`` games; ratings (openskill) from all of them.

    Returns:
        ``{"contenders", "games_per_pair", "pairs": {"a vs b": summary}, "ratings", "plot"}``;
        the plot (``out_dir/<stem>.png``, never over an existing file) is the learner's
        snapshots' and final agent's rating over training.

    Raises:
        ConfigError: ``out_dir/<stem>.png`` exists already (pick a free stem:
            :func:`seqmarl.evaluate.free_stem`).
    """
    from tqdm.auto import tqdm

    from seqmarl.ratings import Ratings, plot_rating_history

    for n in names:
        contenders.check(n)
    plot = Path(out_dir) / f"{stem}.png" if out_dir is not None else None
    if plot is not None and plot.exists():  # before any game: eval never overwrites
        raise ConfigError(f"{plot} exists; eval never overwrites its outputs")
    ratings = Ratings()
    pairs = {}
    todo = [
        (a, b)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if not (a in SCRIPTED and b in SCRIPTED)  # two rules: nothing about the run
    ]
    for a, b in tqdm(todo, desc="round robin", unit="pair", dynamic_ncols=True):
        rows = play_match(contenders, a, b, games=games, batch_size=batch_size, seed=seed)
        ratings.record_many((a, b, r["score"]) for r in rows)
        pairs[f"{a} vs {b}"] = summarize(rows)["both"]
    result: dict[str, Any] = {
        "contenders": list(names),
        "games_per_pair": games,
        "pairs": pairs,
        "ratings": ratings.to_dict(),
    }
    points = []
    for r in ratings.table():
        if r.name.startswith("snapshot:"):
            points.append((int(r.name.partition(":")[2]), r.mu, r.sigma))
        elif r.name == contenders.learner:
            points.append((contenders.iteration, r.mu, r.sigma))
    if plot is not None and points:
        path = plot_rating_history(sorted(points), plot, label=contenders.learner)
        result["plot"] = str(path)
    return result
