"""A learning check of GRPO's loss variants on IMDB sentiment (imdb-gpt2-tiny), 3 seeds each.

Token-mean GRPO (the default), the per-response mean (DeepSeekMath), Dr. GRPO (a constant
normaliser, no std scaling), DAPO's loss parts (clip-higher and the soft overlong penalty) and
all of DAPO (its loss parts with dynamic sampling), all else equal: one agent
(``setting=single``), 4 answers per prompt, 2 epochs per batch (so the ratio moves and the clip
acts), k3 KL in the loss at beta 0.04 for every arm. Every run is a normal run folder: finished
runs are skipped, interrupted ones resume.

    python benchmarks/grpo_variants.py run --seeds 0 1 2 --iterations 40 --batch 8
    python benchmarks/grpo_variants.py report   # the markdown table and curves.png

Models and data come from ../shared (SEQMARL_SHARED), as for benchmarks/paper_check.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.paper_check import base_overrides, run
from seqmarl.run.sinks import read_jsonl

OUT = Path("results/grpo_variants")
VARIANTS = {
    "token_mean": [],
    "sequence_mean": ["algo.params.loss_aggregation=sequence"],
    "dr_grpo": ["algo.params.loss_aggregation=constant", "algo.params.scale_rewards=none"],
    "dapo": ["algo.params.clip_high=0.28", "algo.params.overlong_buffer=4"],
    "dapo_dynamic": [
        "algo.params.clip_high=0.28",
        "algo.params.overlong_buffer=4",
        "train.dynamic_sampling=true",
    ],
}
FIRST, LAST = 3, 5  # iterations averaged at the start and at the end


def overrides(iterations: int, batch: int, seed: int) -> list[str]:
    """The shared set-up, with GRPO in place of the paper check's PPO."""
    base = [o for o in base_overrides(iterations, batch) if not o.startswith("algo")]
    return [
        *base,
        "setting=single",
        "algo=grpo",
        "algo.params.group_size=4",
        "algo.params.lr=1e-4",
        "algo.params.epochs=2",
        "algo.params.kl_coef=0.04",
        f"seed={seed}",
    ]


def cmd_run(args) -> None:
    for seed in args.seeds:
        for name, extra in VARIANTS.items():
            run(
                f"{name}_s{seed}", [*overrides(args.iterations, args.batch, seed), *extra], args.out
            )


def _curves(folder: Path) -> tuple[list[float], list[float]]:
    recs = read_jsonl(folder / "metrics.jsonl")
    return [r["agent/llm_0/task_reward"] for r in recs], [r["agent/llm_0/kl"] for r in recs]


def _mean_se(xs: list[float]) -> tuple[float, float]:
    n = len(xs)
    mean = sum(xs) / n
    var = sum((x - mean) ** 2 for x in xs) / (n - 1) if n > 1 else float("nan")
    return mean, (var / n) ** 0.5


def cmd_report(args) -> None:
    rows, curves = [], {}
    finals = {}
    for name in VARIANTS:
        runs = sorted(p for p in args.out.glob(f"{name}_s*") if (p / "summary.json").exists())
        if not runs:
            continue
        per_seed = [_curves(p) for p in runs]
        curves[name] = per_seed
        start = [sum(r[:FIRST]) / FIRST for r, _ in per_seed]
        final = [sum(r[-LAST:]) / LAST for r, _ in per_seed]
        kl = [sum(k[-LAST:]) / LAST for _, k in per_seed]
        gains = [f - s for f, s in zip(final, start, strict=True)]
        finals[name] = final
        rows.append(
            (name, len(runs), _mean_se(start), _mean_se(final), _mean_se(gains), _mean_se(kl))
        )
    head = "| variant | seeds | task reward, first 3 | last 5 | gain | KL, last 5 |"
    print(head + " last 5 - token mean's |")
    print("|---|---|---|---|---|---|---|")
    base = finals.get("token_mean")
    for name, n, start, final, gain, kl in rows:
        diff = "–"
        if base is not None and name != "token_mean" and len(base) == len(finals[name]):
            d = _mean_se([a - b for a, b in zip(finals[name], base, strict=True)])  # paired by seed
            diff = f"{d[0]:+.3f} ± {d[1]:.3f}"
        print(
            f"| {name} | {n} | {start[0]:.3f} ± {start[1]:.3f} | {final[0]:.3f} ± {final[1]:.3f} "
            f"| {gain[0]:+.3f} ± {gain[1]:.3f} | {kl[0]:.2f} ± {kl[1]:.2f} | {diff} |"
        )
    print(f"\n(mean ± standard error over seeds; first {FIRST} and last {LAST} iterations)")
    for name in VARIANTS:  # what dynamic sampling did, where it ran
        recs = [r for p in args.out.glob(f"{name}_s*") for r in read_jsonl(p / "metrics.jsonl")]
        recs = [r for r in recs if "episodes/draws" in r]
        if recs:
            dropped = sum(r["episodes/dropped_groups"] for r in recs)
            draws = sum(r["episodes/draws"] for r in recs) / len(recs)
            short = sum(r["episodes/informative_groups"] < 1 for r in recs)
            print(
                f"{name}: {len(recs)} iterations, {dropped} groups dropped, {draws:.2f} draws "
                f"per iteration, {short} iterations filled with dropped groups"
            )
    if curves:
        _plot(curves, args.out / "curves.png")
        (args.out / "report.json").write_text(json.dumps({"rows": rows}, indent=1))


def _plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, per_seed in curves.items():
        for j, label in enumerate(("task reward", "KL to the initial model (k1, summed)")):
            series = [run[j] for run in per_seed]
            n = min(len(s) for s in series)
            mean = [sum(s[i] for s in series) / len(series) for i in range(n)]
            axes[j].plot(range(n), mean, label=name)
            axes[j].set_title(label)
            axes[j].set_xlabel("iteration")
    axes[0].legend()
    fig.suptitle("GRPO variants on IMDB sentiment (imdb-gpt2-tiny), mean over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--iterations", type=int, default=40)
    r.add_argument("--batch", type=int, default=8)
    sub.add_parser("report")
    for s in sub.choices.values():
        s.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    {"run": cmd_run, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
