"""Plots from ``metrics.jsonl``: training curves per agent, and reward against KL.

``plot_runs([dir, ...], out)`` overlays several runs (PPO against CORY, ablations) in the same
figures; ``seqmarl plot DIR [DIR ...]`` calls it. The training curves show each agent's own
task reward, its trained reward (after the coefficient matrix C, so a competitive or custom
matrix can be checked), its KL to the reference and the combined reward; thin vertical lines
mark the iterations where the seats changed. Runs of 20 iterations or more are smoothed with a
trailing moving average over a tenth of the run (at most 50 iterations).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seqmarl.run.sinks import read_jsonl

__all__ = [
    "game_curves_figure",
    "has_game_metrics",
    "league_slots",
    "learners",
    "opponent_series",
    "plot_runs",
    "reward_vs_kl_figure",
    "seat_exchanges",
    "smooth",
    "smoothing_window",
    "training_curves_figure",
]

PANELS = (
    ("task_reward", "task reward (each agent's own)"),
    ("reward", "trained reward (after the coefficient matrix C)"),
    ("kl", "KL to reference (summed over tokens; k1 estimate, can dip below 0)"),
    ("combined_reward", "combined reward (task - eta * KL)"),
)

#: gid of the seat-exchange lines (tests and callers find them by it).
EXCHANGE_GID = "seat_exchange"

Run = tuple[str, list[dict]]


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far)."""
    x = np.asarray(values, dtype=float)
    if window <= 1 or len(x) == 0:
        return x
    c = np.cumsum(np.insert(x, 0, 0.0))
    out = np.empty_like(x)
    for i in range(len(x)):
        lo = max(0, i + 1 - window)
        out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
    return out


def smoothing_window(num_iterations: int) -> int:
    """A tenth of the run, at most 50; 1 (no smoothing) below 20 iterations."""
    return max(1, min(50, num_iterations // 10))


def _agents(records: list[dict]) -> list[str]:
    return sorted({k.split("/")[1] for r in records for k in r if k.startswith("agent/")})


def _series(records: list[dict], agent: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    key = f"agent/{agent}/{name}"
    pts = [(r["iteration"], r[key]) for r in records if r.get(key) is not None]
    if not pts:
        return np.array([]), np.array([])
    it, val = zip(*pts, strict=True)
    return np.asarray(it), np.asarray(val, dtype=float)


def _mean_over_agents(records: list[dict], agents: Sequence[str], name: str) -> np.ndarray:
    """Per record, the mean of ``agent/<a>/<name>`` over the agents that logged it (else nan)."""
    out = []
    for r in records:
        vals = [r[k] for a in agents if (k := f"agent/{a}/{name}") in r and r[k] is not None]
        out.append(float(np.mean(vals)) if vals else float("nan"))
    return np.asarray(out)


def league_slots(records: list[dict]) -> list[str]:
    """Agents whose seat a league fills with drawn opponents (they log ``league/<slot>/...``)."""
    return sorted({k.split("/")[1] for r in records for k in r if k.endswith("/win_rate")
                   and k.startswith("league/")})  # fmt: skip


def learners(records: list[dict]) -> list[str]:
    """The agents that learn: every agent but the league's drawn seats."""
    drawn = set(league_slots(records))
    return [a for a in _agents(records) if a not in drawn]


def seat_exchanges(records: list[dict]) -> list[int]:
    """Iterations whose seats (``agent/<id>/seat``) differ from the previous record's."""
    agents = _agents(records)
    out, prev = [], None
    for r in records:
        seats = tuple(r.get(f"agent/{a}/seat") for a in agents)
        if all(s is None for s in seats):
            continue
        if prev is not None and seats != prev:
            out.append(int(r["iteration"]))
        prev = seats
    return out


def load_runs(run_dirs: Sequence[str | Path], labels: Sequence[str] | None = None) -> list[Run]:
    """``(label, records)`` per run folder (label: the given one, else the folder name)."""
    runs = []
    for i, d in enumerate(run_dirs):
        d = Path(d)
        records = read_jsonl(d / "metrics.jsonl")
        if not records:
            raise FileNotFoundError(f"{d / 'metrics.jsonl'} is missing or empty")
        runs.append((labels[i] if labels else d.name, records))
    return runs


def _smoothing_note(runs: Sequence[Run]) -> str:
    windows = {label: smoothing_window(len(records)) for label, records in runs}
    if max(windows.values()) <= 1:
        return ""
    if len(set(windows.values())) == 1:
        (w,) = set(windows.values())
        return f"faint: per iteration; bold: moving average over {w} iterations"
    each = ", ".join(f"{w} ({label})" for label, w in windows.items() if w > 1)
    return f"faint: per iteration; bold: moving average over {each} iterations"


def training_curves_figure(runs: Sequence[Run]):
    """Up to four panels (task reward, trained reward, KL, combined reward), seat exchanges.

    One run: a colour per agent. Several runs: a colour per run, a dash style per agent. A seat
    the league fills by draws is dotted and named so (``llm_1 (league: drawn opponents)``): its
    curve is whoever was drawn, not one player. Panels no agent logged are left out. The legend
    sits below the panels, outside every axes.
    """
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    colors = matplotlib.colormaps["tab10"]
    panels = [
        (key, title)
        for key, title in PANELS
        if any(len(_series(rec, a, key)[0]) for _, rec in runs for a in _agents(rec))
    ] or list(PANELS[:1])
    cols = 2 if len(panels) > 1 else 1
    rows = (len(panels) + 1) // 2
    fig = Figure(figsize=(6.5 * cols, 4.25 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True)).ravel()
    for ax in axes[len(panels) :]:
        fig.delaxes(ax)
    axes = axes[: len(panels)]
    handles: list = []
    for r_i, (label, records) in enumerate(runs):
        window = smoothing_window(len(records))
        drawn = set(league_slots(records))
        for a_i, agent in enumerate(_agents(records)):
            color = colors((a_i if len(runs) == 1 else r_i) % 10)
            style = "-" if len(runs) == 1 else ["-", "--", ":", "-."][a_i % 4]
            if agent in drawn:
                style = ":"
            name = agent if len(runs) == 1 else f"{label} {agent}"
            if agent in drawn:
                name += " (league: drawn opponents)"
            marker = "o" if window == 1 else None
            for ax, (key, title) in zip(axes, panels, strict=True):
                ax.set_title(title, fontsize=10)
                it, val = _series(records, agent, key)
                if not len(it):
                    continue
                if window > 1:
                    ax.plot(it, val, style, color=color, alpha=0.2, linewidth=0.8)
                ax.plot(it, smooth(val, window), style, color=color, marker=marker, markersize=4)
            handles.append(Line2D([], [], color=color, linestyle=style, marker=marker, label=name))
    handles += _draw_exchanges(axes, runs, colors)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[-cols:]:
        ax.set_xlabel("iteration")
    note = _smoothing_note(runs)
    fig.suptitle("training curves" + (f" ({note})" if note else ""))
    fig.tight_layout()
    fig.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=min(len(handles), 4),
        fontsize=9,
        frameon=False,
    )
    return fig


def _draw_exchanges(axes, runs: Sequence[Run], colors) -> list:
    """Thin vertical lines at seat exchanges on every panel; returns the legend handles."""
    from matplotlib.lines import Line2D

    per_run = [(label, seat_exchanges(records)) for label, records in runs]
    distinct = {tuple(x) for _, x in per_run if x}
    if not distinct:
        return []
    if len(distinct) == 1:  # the same schedule in every run: one set of grey lines
        groups = [("seat exchange", list(next(iter(distinct))), "0.45")]
    else:
        groups = [
            (f"seat exchange ({label})", x, colors(r_i % 10))
            for r_i, (label, x) in enumerate(per_run)
            if x
        ]
    handles = []
    for name, iters, color in groups:
        kw = dict(color=color, linewidth=0.6, alpha=0.5, linestyle=(0, (4, 3)), zorder=0)
        for ax in axes:
            for x in iters:
                ax.axvline(x, gid=EXCHANGE_GID, **kw)
        handles.append(Line2D([], [], label=name, **kw))
    return handles


def reward_vs_kl_figure(runs: Sequence[Run]):
    """Task reward against KL (means over the learners) along training, legend at the right.

    A seat the league fills by draws is left out: it does not learn, and its reward is that of
    whoever was drawn.
    """
    import matplotlib
    from matplotlib.figure import Figure

    colors = matplotlib.colormaps["tab10"]
    fig = Figure(figsize=(6.5, 5))
    ax = fig.subplots()
    for r_i, (label, records) in enumerate(runs):
        agents = learners(records)
        kl = _mean_over_agents(records, agents, "kl")
        rew = _mean_over_agents(records, agents, "task_reward")
        kept = ~np.isnan(kl)  # iterations in which no agent acted have no KL
        kl, rew = kl[kept], rew[kept]
        window = smoothing_window(len(records))
        skl, srew = smooth(kl, window), smooth(rew, window)
        color = colors(r_i % 10)
        ax.plot(skl, srew, "-", alpha=0.6, color=color)
        ax.scatter(skl[:1], srew[:1], s=40, marker="s", facecolors="none", edgecolors=color)
        ax.scatter(skl[-1:], srew[-1:], s=60, color=color, label=f"{label} (end)", zorder=3)
    ax.set_xlabel(
        "KL to reference (mean over the learners that acted)\n"
        "sum over tokens of log p - log p_ref (k1: unbiased, so noise can make it < 0)",
        fontsize=9,
    )
    ax.set_ylabel("task reward (mean over the learners)")
    note = _smoothing_note(runs).replace("faint: per iteration; bold: ", "")
    ax.set_title(
        "task reward against KL over training\n(square: start" + (f"; {note})" if note else ")"),
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    return fig


GAME_PANELS = (
    ("legal_move_rate", "legal-move rate (moves the game accepted / turns)"),
    ("forfeit_rate", "forfeit rate (games lost by invalid moves)"),
)


def has_game_metrics(runs: Sequence[Run]) -> bool:
    """Whether any run logged a game suite's metrics (moves refused, league results)."""
    return any(
        k.endswith("/legal_move_rate") or k.startswith("league/")
        for _, records in runs
        for r in records
        for k in r
    )


def _age_groups(ages: Sequence[float], most: int = 4) -> list[tuple[float, float]]:
    """Snapshot ages cut into at most ``most`` ranges ``(lo, hi)`` (one per age if few)."""
    distinct = sorted(set(ages))
    if len(distinct) <= most:
        return [(a, a) for a in distinct]
    parts = np.array_split(np.asarray(distinct), most)
    return [(float(p[0]), float(p[-1])) for p in parts if len(p)]


def opponent_series(records: list[dict], slot: str, what: str) -> dict[str, tuple]:
    """``what`` (``win_rate``, ``return``) against each opponent kind: label -> (it, values).

    Fixed opponents by name (``random``, ``base``, ...); snapshots by their age when drawn
    (``snapshot age 3``, or a range of ages). Runs that logged no kinds: one series, the
    drawn opponent whoever it was.
    """
    prefix = f"league/{slot}/vs/"
    kinds = sorted({k[len(prefix) :].rpartition("/")[0] for r in records for k in r
                    if k.startswith(prefix)})  # fmt: skip
    out: dict[str, tuple] = {}
    for kind in kinds:
        key = f"{prefix}{kind}/{what}"
        pts = [(r["iteration"], r[key], r.get(f"league/{slot}/snapshot_age", -1.0))
               for r in records if key in r]  # fmt: skip
        if not pts:
            continue
        if kind != "snapshot":
            it, val, _ = zip(*pts, strict=True)
            out[kind] = (np.asarray(it, dtype=float), np.asarray(val, dtype=float))
            continue
        for lo, hi in _age_groups([p[2] for p in pts]):
            mine = [(i, v) for i, v, a in pts if lo <= a <= hi]
            name = f"snapshot age {lo:g}" if lo == hi else f"snapshot age {lo:g}-{hi:g}"
            it, val = zip(*mine, strict=True)
            out[name] = (np.asarray(it, dtype=float), np.asarray(val, dtype=float))
    if not kinds:  # an older run: only the drawn opponent's numbers
        key = f"league/{slot}/{what}"
        pts = [(r["iteration"], r[key]) for r in records if key in r]
        if pts:
            it, val = zip(*pts, strict=True)
            out["whoever was drawn"] = (np.asarray(it, dtype=float), np.asarray(val, dtype=float))
    return out


LEAGUE_PANELS = (
    ("win_rate", "league: the learner's win rate against each opponent kind"),
    ("return", "league: the learner's return against each opponent kind"),
)


def game_curves_figure(runs: Sequence[Run]):
    """A game's own curves, each panel only if some run logged it.

    Legal-move and forfeit rates per agent (OpenSpiel envs log no forfeits: no panel), and the
    league learner's win rate and return against each opponent kind (``random``, ``base``,
    snapshots by age) over training.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    drawn: list[tuple] = []  # (panel key, title, [(label, it, values, style)])
    for key, title in GAME_PANELS:
        lines = []
        for label, records in runs:
            prefix = "" if len(runs) == 1 else f"{label} "
            for agent in _agents(records):
                it, val = _series(records, agent, key)
                if len(it):
                    lines.append((f"{prefix}{agent}", it, val, smoothing_window(len(records))))
        drawn.append((key, title, lines))
    for what, title in LEAGUE_PANELS:
        lines = []
        for label, records in runs:
            prefix = "" if len(runs) == 1 else f"{label} "
            for slot in league_slots(records):
                many = len(league_slots(records)) > 1
                for kind, (it, val) in opponent_series(records, slot, what).items():
                    where = f" (seat {slot})" if many else ""
                    window = smoothing_window(len(it))
                    lines.append((f"{prefix}vs {kind}{where}", it, val, window))
        drawn.append((what, title, lines))
    panels = [p for p in drawn if p[2]]
    if not panels:
        panels = [drawn[0]]
    fig = Figure(figsize=(5 * len(panels), 4.5))
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharex=True))
    for ax, (key, title, lines) in zip(axes, panels, strict=True):
        ax.set_title(title, fontsize=10)
        for name, it, val, window in lines:
            ax.plot(
                it, smooth(val, window), marker="o" if window == 1 else None, markersize=3,
                label=name,
            )  # fmt: skip
        if key != "return":
            ax.set_ylim(-0.02, 1.02)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.set_xlabel("iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    note = _smoothing_note(runs)
    fig.suptitle("game curves" + (f" ({note})" if note else ""))
    fig.tight_layout()
    return fig


def plot_runs(
    run_dirs: Sequence[str | Path], out_dir: str | Path, labels: Sequence[str] | None = None
) -> list[Path]:
    """Write ``training_curves.png`` and ``reward_vs_kl.png`` (and ``game_curves.png``).

    Returns:
        The written files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(run_dirs, labels)
    written = []
    for name, build in (
        ("training_curves.png", training_curves_figure),
        ("reward_vs_kl.png", reward_vs_kl_figure),
    ):
        fig = build(runs)
        _save(fig, out / name)
        written.append(out / name)
    if has_game_metrics(runs):  # a game suite's run: its own curves too
        fig = game_curves_figure(runs)
        _save(fig, out / "game_curves.png")
        written.append(out / "game_curves.png")
    return written


def _save(fig, path: Path) -> None:
    """``fig`` as a PNG, whole or not at all (a full disk leaves no torn file)."""
    from seqmarl.run.diskfull import write_atomic

    # "tight" keeps outside legends
    write_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=110, bbox_inches="tight"))
