"""Plots from ``metrics.jsonl``: training curves per agent, and reward against KL.

``plot_runs([dir, ...], out)`` overlays several runs (PPO against CORY, ablations) in the same
figures; ``seqmarl plot DIR [DIR ...]`` calls it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seqmarl.sinks import read_jsonl

__all__ = ["plot_runs", "smooth"]

PANELS = (
    ("task_reward", "task reward"),
    ("kl", "KL to reference (summed over tokens)"),
    ("combined_reward", "combined reward (task - eta * KL)"),
)


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


def _agents(records: list[dict]) -> list[str]:
    ids = sorted({k.split("/")[1] for r in records for k in r if k.startswith("agent/")})
    return ids


def _series(records: list[dict], agent: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    key = f"agent/{agent}/{name}"
    pts = [(r["iteration"], r[key]) for r in records if r.get(key) is not None]
    if not pts:
        return np.array([]), np.array([])
    it, val = zip(*pts, strict=True)
    return np.asarray(it), np.asarray(val, dtype=float)


def plot_runs(
    run_dirs: Sequence[str | Path], out_dir: str | Path, labels: Sequence[str] | None = None
) -> list[Path]:
    """Write ``training_curves.png`` and ``reward_vs_kl.png`` for the given runs.

    Returns:
        The written files.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for i, d in enumerate(run_dirs):
        d = Path(d)
        records = read_jsonl(d / "metrics.jsonl")
        if not records:
            raise FileNotFoundError(f"{d / 'metrics.jsonl'} is missing or empty")
        runs.append((labels[i] if labels else d.name, records))

    colors = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for r_i, (label, records) in enumerate(runs):
        window = max(1, len(records) // 15)
        for a_i, agent in enumerate(_agents(records)):
            # one run: a colour per agent; several runs: a colour per run, a dash per agent
            color = colors((a_i if len(runs) == 1 else r_i) % 10)
            style = "-" if len(runs) == 1 else ["-", "--", ":", "-."][a_i % 4]
            for ax, (name, title) in zip(axes, PANELS, strict=True):
                it, val = _series(records, agent, name)
                if len(it):
                    ax.plot(it, val, style, color=color, alpha=0.2, linewidth=0.8)
                    ax.plot(it, smooth(val, window), style, color=color, label=f"{label} {agent}")
                    ax.set_title(title)
    for ax in axes:
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    window = max(1, max(len(r) for _, r in runs) // 15)
    fig.suptitle(f"training curves (faint: per iteration; bold: moving average over {window})")
    fig.tight_layout()
    curves = out / "training_curves.png"
    fig.savefig(curves, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 5))
    for r_i, (label, records) in enumerate(runs):
        agents = _agents(records)
        kl = np.mean([_series(records, a, "kl")[1] for a in agents], axis=0)
        rew = np.mean([_series(records, a, "task_reward")[1] for a in agents], axis=0)
        window = max(1, len(records) // 15)
        skl, srew = smooth(kl, window), smooth(rew, window)
        color = colors(r_i % 10)
        ax.plot(skl, srew, "-", alpha=0.6, color=color)
        ax.scatter(skl[:1], srew[:1], s=40, marker="s", facecolors="none", edgecolors=color)
        ax.scatter(skl[-1:], srew[-1:], s=60, color=color, label=f"{label} (end)", zorder=3)
    ax.set_xlabel("KL to reference (mean over agents)")
    ax.set_ylabel("task reward (mean over agents)")
    ax.set_title("task reward against KL over training (square: start)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    frontier = out / "reward_vs_kl.png"
    fig.savefig(frontier, dpi=110)
    plt.close(fig)
    return [curves, frontier]
