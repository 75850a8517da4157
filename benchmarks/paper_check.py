"""The CORY paper check at CPU scale: PPO vs CORY on IMDB sentiment, a KL-coefficient sweep,
and ablations. Every run is a normal seqmarl run folder; finished runs are skipped and
interrupted ones resume from their last checkpoint, so the script can be stopped and restarted.

    # PPO (single) vs CORY (2 agents) over eta, 3 seeds (imdb-gpt2-tiny, bert-tiny reward)
    python benchmarks/paper_check.py sweep --etas 0.01 0.03 0.1 0.3 1.0 --seeds 0 1 2
    # CORY without knowledge transfer / without role exchange / with competitive rewards
    python benchmarks/paper_check.py ablations --eta 0.1 --seeds 0 1 2
    # RLOO (per-prompt baseline, k = 4) single / CORY / competitive CORY: tests the hypothesis
    python benchmarks/paper_check.py baselines --eta 0.1 --seeds 0 1 2 --batch 32
    # causal credit: cory-causal over eta (eta 0.1 first), and its partner at eta 0.1
    python benchmarks/paper_check.py causal --etas 0.1 0.01 0.3 1.0 --seeds 0 1 2
    # the released code's two arms (asymmetric), then PPO with CORY's normalisation and KL
    python benchmarks/paper_check.py replay --seeds 0 1 2 --batch 32
    # the noise regime: PPO vs CORY at a bigger batch (same 4 optimizer steps per iteration)
    python benchmarks/paper_check.py noise --eta 0.1 --seeds 0 1 2 --batch 128
    # the shorter confirmation on SmolLM2-135M-Instruct (shared base, one LoRA adapter per agent)
    python benchmarks/paper_check.py confirm --eta 0.1 --seeds 0 1 --iterations 60 --batch 16
    python benchmarks/paper_check.py confirm --arms cory-causal --seeds 0 1 --iterations 60 \
        --batch 16
    # tables (markdown) and figures from whatever has finished
    python benchmarks/paper_check.py report

Models and data come from ../shared (SEQMARL_SHARED): imdb-gpt2-tiny (5.3M parameters,
pretrained on IMDB train reviews), imdb-sentiment-bert-tiny-scratch (the reward), and the IMDB
train split. Both arms use the same hyperparameters (below); only the setting differs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqmarl.config import load_config
from seqmarl.run.checkpoint import latest_checkpoint
from seqmarl.run.paths import shared_path
from seqmarl.run.sinks import read_jsonl

OUT = Path("results/paper_check")


def base_overrides(iterations: int, batch: int) -> list[str]:
    """The shared hyperparameters of every arm."""
    model = shared_path("models", "imdb-gpt2-tiny")
    reward = shared_path("models", "imdb-sentiment-bert-tiny-scratch")
    data = shared_path("data", "imdb")
    if None in (model, reward, data):
        sys.exit(
            "needs ../shared/models/imdb-gpt2-tiny, imdb-sentiment-bert-tiny-scratch, data/imdb"
        )
    return [
        "env=imdb-sentiment-v0",
        f"task.kwargs.source={data}",
        "task.kwargs.split=train",
        f"task.kwargs.reward_model={reward}",
        "task.kwargs.limit=5000",
        f"model={model}",
        "agents.mode=separate",
        "agents.generation.min_new_tokens=4",
        "agents.generation.max_new_tokens=16",
        "agents.generation.top_k=0",
        "agents.generation.top_p=1.0",
        "algo=ppo",
        "algo.params.lr=1e-4",
        "algo.params.adaptive_kl=false",
        "algo.params.epochs=4",
        f"iterations={iterations}",
        f"batch_size={batch}",
        "train.checkpoint_every=10",
        "train.sample_every=10",
        "train.progress=false",
        "train.tensorboard=false",
    ]


def run(name: str, overrides: list[str], out: Path) -> Path:
    """Train one arm unless it already finished; resume it if it was interrupted."""
    from seqmarl.train.trainer import Trainer

    folder = out / name
    if (folder / "summary.json").exists():
        print(f"[skip] {name}: finished")
        return folder
    lock = folder / "running.pid"  # another worker on the same queue has this run
    if lock.exists() and _alive(int(lock.read_text() or 0)):
        print(f"[busy] {name}: pid {lock.read_text()}")
        return folder
    cfg = load_config(None, overrides)
    resume = latest_checkpoint(folder / "checkpoints") is not None
    print(f"[run ] {name}{' (resuming)' if resume else ''}", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    lock.write_text(str(os.getpid()))
    try:  # a run killed before its first checkpoint starts again
        Trainer(cfg, folder, resume=resume, overwrite=not resume).fit()
    finally:
        lock.unlink(missing_ok=True)
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return pid > 0


# The two arms of the comparison: same config, only the setting differs.
ARMS = {"ppo": ["setting=single"], "cory": ["setting=cory", "num_agents=2"]}


def run_arms(arms: dict, base: list[str], eta: float, seed: int, out: Path, prefix: str = ""):
    """One run per arm at this eta and seed, named ``{prefix}{arm}_eta{eta}_s{seed}``."""
    for arm, setting in arms.items():
        run(
            f"{prefix}{arm}_eta{eta:g}_s{seed}",
            [*base, *setting, f"algo.params.kl_coef={eta}", f"seed={seed}"],
            out,
        )


def cmd_sweep(args) -> None:
    base = base_overrides(args.iterations, args.batch)
    for seed in args.seeds:
        for eta in args.etas:
            run_arms(ARMS, base, eta, seed, args.out)


# CORY and PPO themselves come from the sweep's runs at the same eta and seed (same config).
ABLATIONS = {
    "cory-no-transfer": ["setting=cory-no-transfer"],
    "cory-no-exchange": ["setting=cory-no-exchange"],
    "cory-competitive": ["setting=cory", "setting.reward_matrix=competitive"],
}


def cmd_ablations(args) -> None:
    base = base_overrides(args.iterations, args.batch)
    for seed in args.seeds:
        run_arms(ABLATIONS, base, args.eta, seed, args.out, prefix="abl_")


# Test of the hypothesis in docs/results.md: the cooperative sum doubles the prompt-driven
# part of both agents' rewards (which the difference cancels). With a per-prompt baseline
# (RLOO over k answers to the same prompt) that part is gone from every advantage, so if the
# hypothesis holds, cooperative CORY should learn about as fast as competitive here.
GROUP = 4
BASELINE_ARMS = {
    "rloo-single": ["setting=single"],
    "rloo-cory": ["setting=cory", "num_agents=2"],
    "rloo-cory-competitive": ["setting=cory", "setting.reward_matrix=competitive"],
}


def cmd_baselines(args) -> None:
    """The sweep's config with RLOO (k answers per prompt) instead of PPO; same rows per batch."""
    if args.batch % GROUP:
        sys.exit(f"--batch must be a multiple of {GROUP} (rows = prompts x {GROUP})")
    base = base_overrides(args.iterations, args.batch // GROUP)
    base += ["algo=rloo", f"algo.params.group_size={GROUP}"]
    for seed in args.seeds:
        run_arms(BASELINE_ARMS, base, args.eta, seed, args.out, prefix="base_")


# The noise regime: if CORY's deficit is the cooperative sum's noise in every advantage, a
# bigger batch (less noise per step) should shrink it. Same 4 optimizer steps per iteration
# (4 epochs over one whole-batch minibatch) at every batch; batch 32 is the sweep's runs.
def cmd_noise(args) -> None:
    base = base_overrides(args.iterations, args.batch)
    for seed in args.seeds:
        run_arms(ARMS, base, args.eta, seed, args.out, prefix=f"b{args.batch}_")


# Replay of the released code (github.com/Harry67Hu/CORY, imdb_train/ppo.py and cory.py, its
# vendored trl 0.7.10): the settings in which its two arms differ from each other and from the
# sweep, on the sweep's model, data and lr, so only the settings differ between the arms. The
# released batch is 256 with an adaptive-KL horizon of 10000 samples; here the horizon is
# scaled with the batch so that the controller moves as far per iteration.
def released(batch: int) -> list[str]:
    """What both released arms share (beyond the sweep's settings)."""
    return [
        "algo.params.adaptive_kl=true",
        "algo.params.kl_target=6",
        f"algo.params.kl_horizon={round(10000 * batch / 256)}",
        "algo.params.kl_estimator=full",  # kl_penalty="full"
        "algo.params.max_grad_norm=null",  # no gradient clipping
        "agents.generation.repetition_penalty=1.1",
        "agents.generation.min_new_tokens=4",  # LengthSampler(4, 16): 4..15 tokens
        "agents.generation.max_new_tokens=15",
    ]


# the CORY script's own settings: score scaling and normalisation, init KL 0.4, fresh
# trainers at every role exchange (Adam, KL controller, score statistics), and one length for
# both agents per iteration. Its trainers' set_seed(0) at every exchange restarts numpy, so
# the "random" lengths repeat the same five draws, [9, 7, 8, 9, 4] (cory.py:354-371 with
# trl's LengthSampler(4, 16)): CORY's responses are at most 9 tokens against PPO's 4..15.
CORY_RELEASED = [
    "algo.params.reward_norm=whiten",  # use_score_scaling + use_score_norm
    "algo.params.kl_coef=0.4",
    "train.reset_on_exchange=[optimizer,kl,score_stats]",
    "agents.generation.shared_length=true",
]
REPLAY_ARMS = {
    # as released: asymmetric
    "replay-ppo": ["setting=single", "algo.params.reward_norm=none", "algo.params.kl_coef=0.3"],
    "replay-cory": [
        "setting=cory",
        "num_agents=2",
        *CORY_RELEASED,
        "agents.generation.length_cycle=[9,7,8,9,4]",
    ],
    # the CORY arm with fresh length draws (4..15, shared by both seats): the cycle's effect
    "replay-cory-drawn": ["setting=cory", "num_agents=2", *CORY_RELEASED],
    # symmetric: the PPO arm with CORY's normalisation and initial KL
    "replay-ppo-sym": [
        "setting=single",
        "algo.params.reward_norm=whiten",
        "algo.params.kl_coef=0.4",
    ],
}


def cmd_replay(args) -> None:
    base = [*base_overrides(args.iterations, args.batch), *released(args.batch)]
    for seed in args.seeds:
        for arm, extra in REPLAY_ARMS.items():
            eta = next(o for o in extra if o.startswith("algo.params.kl_coef=")).split("=")[1]
            run(f"{arm}_eta{eta}_s{seed}", [*base, *extra, f"seed={seed}"], args.out)


# Causal credit: the observer drops the pioneer's reward (fixed before it acts), the pioneer
# keeps both. Its partner: each agent on its own reward only (independent), which also drops
# the observer's reward from the pioneer's.
CAUSAL_ARMS = {"cory-causal": ["setting=cory-causal", "num_agents=2"]}
CAUSAL_PARTNERS = {"cory-independent": ["setting=cory", "setting.reward_matrix=independent"]}


def cmd_causal(args) -> None:
    base = base_overrides(args.iterations, args.batch)
    for eta in args.etas:
        for seed in args.seeds:
            run_arms(CAUSAL_ARMS, base, eta, seed, args.out)
            if eta == args.partner_eta:
                run_arms(CAUSAL_PARTNERS, base, eta, seed, args.out, prefix="abl_")


def confirm_overrides(iterations: int, batch: int) -> list[str]:
    """The sweep's task and reward on SmolLM2-135M-Instruct with LoRA (the main job's agents).

    The policy changes; the task, reward, generation lengths and fixed eta stay the sweep's.
    PPO steps are the main job's LoRA-sized ones (lr 1e-3, one epoch), since a full 4-epoch
    pass per batch would triple the CPU time of an arm.
    """
    base = base_overrides(iterations, batch)
    keep = [o for o in base if not o.startswith(("model=", "agents.mode=", "algo.params."))]
    return [
        *keep,
        "model=embedded:smollm2-135m-instruct",
        "agents.mode=shared",
        "agents.lora.r=16",
        "agents.lora.alpha=32",
        "algo.params.lr=1e-3",
        "algo.params.epochs=1",
        "algo.params.adaptive_kl=false",
        "train.checkpoint_every=5",
        "train.sample_every=5",
    ]


def cmd_confirm(args) -> None:
    base = confirm_overrides(args.iterations, args.batch)
    every = {**ARMS, **CAUSAL_ARMS, **CAUSAL_PARTNERS}
    arms = {a: every[a] for a in args.arms}
    for seed in args.seeds:
        run_arms(arms, base, args.eta, seed, args.out, prefix="smol-")


def final_stats(folder: Path, last: int = 10) -> dict[str, float]:
    """Means over the last ``last`` iterations (and over agents) of task reward, KL, combined.

    Also each agent's own task reward, the median seconds per iteration and the length.
    """
    import numpy as np

    every = read_jsonl(folder / "metrics.jsonl")
    recs = every[-last:]
    agents = sorted({k.split("/")[1] for k in recs[0] if k.startswith("agent/")})
    out = {}
    for name in ("task_reward", "kl", "combined_reward"):
        out[name] = float(np.mean([r[f"agent/{a}/{name}"] for r in recs for a in agents]))
    out["kl_coef"] = float(np.mean([r[f"agent/{a}/kl_coef"] for r in recs for a in agents]))
    out["response_length"] = float(
        np.mean([r[f"agent/{a}/response_length"] for r in every for a in agents])
    )
    for a in agents:
        out[f"{a}/task_reward"] = float(np.mean([r[f"agent/{a}/task_reward"] for r in recs]))
    for seat in range(len(agents)):  # by seat: the pioneer (0) and the observer (1)
        for name in ("task_reward", "kl"):
            vals = [
                r[f"agent/{a}/{name}"] for r in recs for a in agents if r[f"agent/{a}/seat"] == seat
            ]
            out[f"seat{seat}/{name}"] = float(np.mean(vals))
    if "agent/llm_0/query_length" in every[0]:  # (runs from before the metric existed lack it)
        for seat in range(len(agents)):
            out[f"seat{seat}/tokens"] = float(
                np.mean(
                    [
                        r[f"agent/{a}/query_length"] + r[f"agent/{a}/response_length"]
                        for r in every
                        for a in agents
                        if r[f"agent/{a}/seat"] == seat
                    ]
                )
            )
    corr = [r[k] for r in every for k in r if k.endswith("/others_reward_corr")]
    if corr:  # runs that log it: per batch, own task reward vs the other agents'
        out["others_reward_corr"] = float(np.nanmean(corr))
    out["first_task_reward"] = float(np.mean([every[0][f"agent/{a}/task_reward"] for a in agents]))
    out["s_per_it"] = float(np.median([r["time/iteration"] for r in every]))
    out["iterations"] = len(every)
    return out


def split_name(name: str) -> tuple[str, str, int]:
    """``cory_eta0.1_s2`` -> ``("cory", "0.1", 2)``."""
    head, seed = name.rsplit("_s", 1)
    arm, eta = head.rsplit("_eta", 1)
    return arm, eta, int(seed)


def _cell(sts: list[dict], key: str, digits: int) -> str:
    import numpy as np

    vals = [s[key] for s in sts]
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{np.mean(vals):.{digits}f} ± {np.std(vals):.{digits}f}"


def _table(groups, keys) -> None:
    print(
        "| arm | eta | seeds | task reward (start -> final) | KL | combined (task - eta KL) "
        "| s/iteration |"
    )
    print("|---|---|---|---|---|---|---|")
    for arm, eta in keys:
        sts = groups[(arm, eta)]
        seeds = ",".join(str(s["seed"]) for s in sts)
        print(
            f"| {arm} | {eta} | {seeds} | {_cell(sts, 'first_task_reward', 3)} -> "
            f"{_cell(sts, 'task_reward', 3)} | {_cell(sts, 'kl', 2)} "
            f"| {_cell(sts, 'combined_reward', 3)} | {_cell(sts, 's_per_it', 1)} |"
        )


def cmd_report(args) -> None:
    from seqmarl.run.plots import plot_runs

    done = sorted(p.parent for p in args.out.glob("*/summary.json"))
    if not done:
        sys.exit(f"no finished runs under {args.out}")
    rows = {p.name: {**final_stats(p), "seed": split_name(p.name)[2]} for p in done}
    (args.out / "final_stats.json").write_text(json.dumps(rows, indent=2))
    groups: dict[tuple[str, str], list[dict]] = {}
    for name, st in rows.items():
        arm, eta, _ = split_name(name)
        groups.setdefault((arm, eta), []).append(st)
    print(f"finished runs: {len(done)} (final = mean of the last 10 iterations)\n")
    print("### PPO vs CORY (and CORY with causal credit) over eta\n")
    order = {"ppo": 0, "cory": 1, "cory-causal": 2}
    sweep = [k for k in groups if k[0] in order]
    _table(groups, sorted(sweep, key=lambda k: (float(k[1]), order[k[0]])))
    # the sweep's frontiers, with the ablations (one eta each) as single points
    other = ("smol-", "replay-", "b128_", "b64_", "b256_")
    imdb = {k: v for k, v in groups.items() if not k[0].startswith(other)}
    frontier(imdb, args.out / "frontier.png")
    print("\n### CORY by seat (pioneer = seat 0, observer = seat 1; last 10 iterations)\n")
    seat_table(groups, sorted((k for k in sweep if k[0] != "ppo"), key=lambda k: float(k[1])))
    cost_table(groups, sweep)
    abl = sorted(k for k in groups if k[0].startswith("abl_"))
    if abl:
        eta = abl[0][1]
        seeds = {s["seed"] for k in abl for s in groups[k]}
        print(f"\n### Ablations at eta = {eta} (CORY and PPO rows: the sweep's runs, same seeds)\n")
        base = [k for k in (("ppo", eta), ("cory", eta), ("cory-causal", eta)) if k in groups]
        for k in base:  # only the seeds the ablations have, so the rows compare like with like
            groups[k] = [s for s in groups[k] if s["seed"] in seeds]
        _table(groups, base + abl)
        # per-agent rewards show whether one agent carries the pair (e.g. competitive)
        print(
            "\n| arm | llm_0 task reward | llm_1 task reward | reward correlation (samples) |"
            "\n|---|---|---|---|"
        )
        for k in base[1:] + abl:
            sts = groups[k]
            cells = [_cell(sts, f"llm_{i}/task_reward", 3) for i in (0, 1)]
            folders = [args.out / f"{k[0]}_eta{k[1]}_s{seed}" for seed in sorted(seeds)]
            corr, n = sample_correlation(folders)
            print(f"| {k[0]} | {cells[0]} | {cells[1]} | {corr:.2f} ({n} pairs) |")
        runs = [args.out / f"{k[0]}_eta{k[1]}_s{min(seeds)}" for k in base + abl]
        plot_runs(runs, args.out / "ablation_curves", labels=[r.name for r in runs])
    rloo = sorted(k for k in groups if k[0].startswith("base_"))
    if rloo:
        print(
            f"\n### Per-prompt baselines: RLOO (k = {GROUP}) instead of PPO, eta = {rloo[0][1]}\n"
        )
        _table(groups, sorted(rloo, key=lambda k: ("cory" in k[0], "competitive" in k[0])))
        print(
            "\n| arm | llm_0 task reward | llm_1 task reward | others_reward_corr "
            "(per batch, mean over iterations) |\n|---|---|---|---|"
        )
        for k in rloo:
            if "single" in k[0]:
                continue
            sts = groups[k]
            cells = [_cell(sts, f"llm_{i}/task_reward", 3) for i in (0, 1)]
            print(f"| {k[0]} | {cells[0]} | {cells[1]} | {_cell(sts, 'others_reward_corr', 2)} |")
        seeds = sorted({s["seed"] for k in rloo for s in groups[k]})
        runs = [args.out / f"{k[0]}_eta{k[1]}_s{seeds[0]}" for k in rloo]
        plot_runs(runs, args.out / "baseline_curves", labels=[r.name for r in runs])
    noise_report(groups)
    replay_report(groups, args.out)
    smol = sorted(k for k in groups if k[0].startswith("smol-"))
    if smol:
        print("\n### Confirmation on SmolLM2-135M-Instruct (LoRA, shared base)\n")
        rank = {"smol-ppo": 0, "smol-cory": 1}
        _table(groups, sorted(smol, key=lambda k: (float(k[1]), rank.get(k[0], 2), k[0])))
        seeds = sorted({s["seed"] for k in smol for s in groups[k]})
        runs = [args.out / f"{k[0]}_eta{k[1]}_s{seeds[0]}" for k in smol]
        plot_runs(runs, args.out / "smollm2_curves", labels=[r.name for r in runs])
    seed0 = [args.out / f"{arm}_eta{eta}_s0" for arm, eta in sorted(sweep)]
    seed0 = [p for p in seed0 if (p / "summary.json").exists()]
    if seed0:
        plot_runs(seed0, args.out / "sweep_curves_seed0", labels=[p.name for p in seed0])


def seat_table(groups, keys) -> None:
    """Each seat's task reward and KL (the agents swap seats, so each fills both)."""
    print("| arm | eta | pioneer task reward | pioneer KL | observer task reward | observer KL |")
    print("|---|---|---|---|---|---|")
    for arm, eta in keys:
        sts = groups[(arm, eta)]
        cells = [
            _cell(sts, f"seat{i}/{n}", d)
            for i in (0, 1)
            for n, d in (("task_reward", 3), ("kl", 2))
        ]
        print(f"| {arm} | {eta} | " + " | ".join(cells) + " |")


def noise_report(groups) -> None:
    """PPO's lead over CORY at the sweep's batch and at bigger ones, on the seeds both have."""
    batches = sorted({int(m[1]) for a, _ in groups if (m := re.match(r"b(\d+)_", a))})
    if not batches:
        return
    eta = next(e for a, e in groups if a.startswith(f"b{batches[0]}_"))
    print(
        f"\n### The noise regime: PPO vs CORY by batch (eta {eta}, 4 optimizer steps/iteration)\n"
    )
    print(
        "| batch | seeds | PPO task reward | CORY task reward | PPO - CORY task reward "
        "| PPO KL | CORY KL | PPO - CORY combined |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for batch in [32, *batches]:
        prefix = "" if batch == 32 else f"b{batch}_"
        ppo, cory = groups.get((f"{prefix}ppo", eta), []), groups.get((f"{prefix}cory", eta), [])
        seeds = sorted({s["seed"] for s in ppo} & {s["seed"] for s in cory})
        if not seeds:
            continue
        ppo = sorted((s for s in ppo if s["seed"] in seeds), key=lambda s: s["seed"])
        cory = sorted((s for s in cory if s["seed"] in seeds), key=lambda s: s["seed"])
        gap = [
            {k: p[k] - c[k] for k in ("task_reward", "combined_reward")}
            for p, c in zip(ppo, cory, strict=True)
        ]
        print(
            f"| {batch} | {','.join(map(str, seeds))} | {_cell(ppo, 'task_reward', 3)} "
            f"| {_cell(cory, 'task_reward', 3)} | {_cell(gap, 'task_reward', 3)} "
            f"| {_cell(ppo, 'kl', 2)} | {_cell(cory, 'kl', 2)} "
            f"| {_cell(gap, 'combined_reward', 3)} |"
        )


def replay_report(groups, out: Path) -> None:
    """The released code's arms: final figures, each seat, and the curves of the first seed."""
    from seqmarl.run.plots import plot_runs

    keys = sorted((k for k in groups if k[0].startswith("replay-")), key=lambda k: k[0])
    if not keys:
        return
    print("\n### Replay of the released code (adaptive KL; eta = the initial KL coefficient)\n")
    print(
        "| arm | init KL | seeds | task reward (start -> final) | KL | final KL coefficient "
        "| task - 0.3 KL | response tokens |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for arm, eta in keys:
        sts = groups[(arm, eta)]
        fixed = [{"v": s["task_reward"] - 0.3 * s["kl"]} for s in sts]
        print(
            f"| {arm} | {eta} | {','.join(str(s['seed']) for s in sts)} "
            f"| {_cell(sts, 'first_task_reward', 3)} -> {_cell(sts, 'task_reward', 3)} "
            f"| {_cell(sts, 'kl', 2)} | {_cell(sts, 'kl_coef', 3)} | {_cell(fixed, 'v', 3)} "
            f"| {_cell(sts, 'response_length', 1)} |"
        )
    print(
        "\nThe trained score's spread (what reward_norm divides by), from the logged samples: "
        "standard deviation within an iteration of llm_0's trained reward (r1 + r2 for CORY)\n"
    )
    print("| arm | std of the trained score | samples |\n|---|---|---|")
    for arm, eta in keys:
        seeds = [s["seed"] for s in groups[(arm, eta)]]
        std, n = score_spread([out / f"{arm}_eta{eta}_s{seed}" for seed in seeds])
        print(f"| {arm} | {std:.2f} | {n} |")
    cory = [k for k in keys if "cory" in k[0]]
    if cory:
        print()
        seat_table(groups, cory)
    seeds = sorted({s["seed"] for k in keys for s in groups[k]})
    runs = [out / f"{a}_eta{e}_s{seeds[0]}" for a, e in keys]
    runs = [r for r in runs if (r / "summary.json").exists()]
    plot_runs(runs, out / "replay_curves", labels=[r.name for r in runs])


def score_spread(folders: list[Path]) -> tuple[float, int]:
    """Pooled within-iteration std of llm_0's trained reward in samples.jsonl, and the count."""
    import numpy as np

    devs = []
    for folder in folders:
        for rec in read_jsonl(folder / "samples.jsonl"):
            v = np.array([s["agents"]["llm_0"]["reward"] for s in rec["samples"]])
            devs += list(v - v.mean())
    return float(np.sqrt(np.sum(np.square(devs)) / max(len(devs) - 1, 1))), len(devs)


def sample_correlation(folders: list[Path]) -> tuple[float, int]:
    """Correlation of llm_0's and llm_1's task rewards on the same prompt, from samples.jsonl.

    Each logged iteration's pairs are centred on that iteration's means first, so rewards that
    both rise over training do not count as correlation. Returns ``(r, number of pairs)``.
    """
    import numpy as np

    xs, ys = [], []
    for folder in folders:
        for rec in read_jsonl(folder / "samples.jsonl"):
            pairs = [(s["agents"]["llm_0"], s["agents"]["llm_1"]) for s in rec["samples"]]
            x = np.array([a["task_reward"] for a, _ in pairs])
            y = np.array([b["task_reward"] for _, b in pairs])
            xs += list(x - x.mean())
            ys += list(y - y.mean())
    return float(np.corrcoef(xs, ys)[0, 1]), len(xs)


def cost_table(groups, sweep) -> None:
    """CORY's time per iteration against PPO's, and the tokens each seat's passes read."""
    import numpy as np

    print("\n### Cost: CORY vs PPO time per iteration (median s/it, mean over seeds)\n")
    print("| eta | PPO s/it | CORY s/it | ratio | tokens/sequence: PPO, pioneer, observer |")
    print("|---|---|---|---|---|")
    for eta in sorted({e for _, e in sweep}, key=float):
        ppo, cory = groups.get(("ppo", eta)), groups.get(("cory", eta))
        if not ppo or not cory:
            continue
        t_ppo = np.mean([s["s_per_it"] for s in ppo])
        t_cory = np.mean([s["s_per_it"] for s in cory])
        with_tokens = [s for s in ppo + cory if "seat0/tokens" in s]
        tokens = "-"
        if any("seat1/tokens" in s for s in with_tokens) and any(
            "seat1/tokens" not in s for s in with_tokens
        ):
            p_tok = np.mean([s["seat0/tokens"] for s in with_tokens if "seat1/tokens" not in s])
            c0 = np.mean([s["seat0/tokens"] for s in with_tokens if "seat1/tokens" in s])
            c1 = np.mean([s["seat1/tokens"] for s in with_tokens if "seat1/tokens" in s])
            tokens = f"{p_tok:.1f}, {c0:.1f}, {c1:.1f}"
        print(f"| {eta} | {t_ppo:.2f} | {t_cory:.2f} | {t_cory / t_ppo:.2f}x | {tokens} |")


def frontier(groups, path: Path) -> None:
    """Final task reward against final KL, one point per (arm, eta) with seed error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(9, 5))
    arms = sorted({arm for arm, _ in groups}, key=lambda a: (a.startswith(("abl_", "base_")), a))
    for i, arm in enumerate(arms):
        single_eta = arm.startswith(("abl_", "base_"))  # one eta per arm: a point, no line
        pts = sorted(((float(eta), sts) for (a, eta), sts in groups.items() if a == arm))
        kl = [np.mean([s["kl"] for s in sts]) for _, sts in pts]
        rw = [np.mean([s["task_reward"] for s in sts]) for _, sts in pts]
        kle = [np.std([s["kl"] for s in sts]) for _, sts in pts]
        rwe = [np.std([s["task_reward"] for s in sts]) for _, sts in pts]
        fmt = ("D" if arm.startswith("base_") else "s") if single_eta else "o-"
        label = arm.removeprefix("abl_").replace("base_rloo-", "RLOO ")
        ax.errorbar(kl, rw, xerr=kle, yerr=rwe, fmt=fmt, capsize=3, label=label, color=f"C{i}")
        for (eta, _), x, y in zip(pts, kl, rw, strict=True):
            if single_eta:
                continue
            ax.annotate(f"η={eta:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("KL to the initial model (final, summed per response)")
    ax.set_ylabel("task reward (final, positive logit)")
    ax.set_title(
        "reward vs KL (mean ± std over seeds; squares: ablations, diamonds: RLOO; one eta)",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    names = ("sweep", "ablations", "baselines", "noise", "causal", "replay", "confirm", "report")
    for name in names:
        s = sub.add_parser(name)
        s.add_argument("--out", type=Path, default=OUT)
        s.add_argument("--iterations", type=int, default=100)
        s.add_argument("--batch", type=int, default=64)
        s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    sub.choices["sweep"].add_argument(
        "--etas", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3, 1.0]
    )
    sub.choices["ablations"].add_argument("--eta", type=float, default=0.1)
    sub.choices["baselines"].add_argument("--eta", type=float, default=0.1)
    sub.choices["confirm"].add_argument("--eta", type=float, default=0.1)
    sub.choices["confirm"].add_argument(
        "--arms",
        nargs="+",
        default=["ppo", "cory"],
        choices=["ppo", "cory", "cory-causal", "cory-independent"],
    )
    sub.choices["noise"].add_argument("--eta", type=float, default=0.1)
    sub.choices["causal"].add_argument(
        "--etas", type=float, nargs="+", default=[0.1, 0.01, 0.3, 1.0]
    )
    sub.choices["causal"].add_argument("--partner-eta", type=float, default=0.1)
    args = p.parse_args()
    cmds = {"sweep": cmd_sweep, "ablations": cmd_ablations, "confirm": cmd_confirm}
    cmds["baselines"] = cmd_baselines
    cmds["noise"] = cmd_noise
    cmds["causal"] = cmd_causal
    cmds["replay"] = cmd_replay
    cmds["report"] = cmd_report
    cmds[args.cmd](args)


if __name__ == "__main__":
    from seqmarl.errors import SeqmarlError

    try:
        main()
    except SeqmarlError as exc:  # a stop signal, a bad config: one line, the run's exit code
        print(f"paper_check: {exc}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))
