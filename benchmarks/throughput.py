"""Training throughput: seqmarl vs TRL (RLOO, GRPO), and CORY (2 agents) vs single-agent PPO.

Part 1 trains one agent with full-parameter updates in both frameworks (seqmarl
``setting=single``, ``agents.mode=separate``; TRL ``RLOOTrainer`` / ``GRPOTrainer`` without
peft) on the same model, prompts, batch (B prompts x K samples), generation length, KL
coefficient and learning rate, with one optimizer step per generation batch. It reports
samples/s (completions generated *and* trained on per second, steady state: model loading
and the first ``--warmup`` steps excluded) and peak memory. Part 2 times seqmarl's CORY with
2 agents against single-agent PPO (B x K prompts per iteration, one sample each). Part 3
(``--generators hf vllm``) trains CORY with 2 agents on one shared base (LoRA, PPO) with
each generator: seqmarl's HF sampler against one vLLM engine serving both adapters; it adds
the seconds per iteration spent generating and pushing adapters into the engine. vLLM has no
LoRA for GPT-2, so part 3's tiny model is a llama of the same size.

Every (model, framework, algorithm) runs in its own process, so peak memory is its own: the
peak resident set above a baseline taken after imports and a warm-up of the same code path
on a micro model (model, reference, optimizer state, activations; not the interpreter).

    python benchmarks/throughput.py                       # tiny model and SmolLM2-135M
    python benchmarks/throughput.py --models tiny --steps 2
    python benchmarks/throughput.py --models smollm2 --json throughput.json
    python benchmarks/throughput.py --models smollm2 --cory-modes   # TRL comparison only
    python benchmarks/throughput.py --models tiny --algos --preamble-words 60  # long prompts
    python benchmarks/throughput.py --algos --cory-modes --generators hf vllm vllm-merged
    python benchmarks/throughput.py --algos --cory-modes --generators hf vllm --device cuda
    python benchmarks/throughput.py --models tiny --baseline 88deda3  # before/after a change
    python benchmarks/throughput.py --cory-modes --algos grpo-seq dr_grpo dapo gspo cispo

``--baseline REV`` also runs every seqmarl measurement on the code of git revision REV (its
own copy of this script and of seqmarl, exported to a temporary folder), right after the
current code's, and adds a table of current/baseline ratios: a change's speed cost measured
back to back in one invocation.

Targets: seqmarl samples/s >= 1.5x TRL's (each algorithm); CORY with 2 agents <= 2.1x the
time per iteration of single-agent PPO. Keep ``--threads`` at or below the idle cores: with
another process on them, oversubscribed threads make every run about 10x slower.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

PROMPTS = [
    "The weather this morning was",
    "My favourite way to spend a weekend is",
    "The best advice I ever got was",
    "When I opened the door, I saw",
    "The old library on the corner",
    "A good cup of coffee needs",
    "The train was late again, so",
    "Before the meeting started, she",
    "The garden looks different in autumn because",
    "If I could learn one new skill, it would be",
    "The recipe calls for",
    "Last summer we drove to the coast and",
    "The museum's new exhibit shows",
    "Every evening the neighbours",
    "The hardest part of moving house is",
    "On the first day of school, the children",
    # 16 more, so that the CORY-vs-PPO part's 32 prompts per iteration are all distinct, as
    # in training on a data set (repeats would let PPO and the pioneer share prompt passes
    # that the observer, whose rows all differ, cannot)
    "The bakery down the street sells",
    "Our team lost the match because",
    "The letter had been sitting on the table for",
    "At the top of the hill we found",
    "The new phone arrived with",
    "My grandmother always said that",
    "The river flooded last spring and",
    "He forgot his umbrella, and the rain",
    "The concert started an hour late, but",
    "Nobody expected the quiet student to",
    "The bridge across the bay was built",
    "In the back of the drawer I found",
    "The cat refused to come inside until",
    "Our holiday plans changed when",
    "The first thing you notice about the city is",
    "After the storm, the streets were",
]
# An instruction with worked examples, written for this benchmark, for --preamble-words: long
# prompts (few-shot math, system prompts) make the observer's extra tokens (the pioneer's
# answer) a small share of what it reads.
PREAMBLE = (
    "You are a careful writer. Continue each opening with one short, vivid sentence that "
    "stays on topic, uses plain words and ends with a full stop. Here are some examples. "
    "Opening: The lighthouse keeper climbed the stairs and. Continuation: found the lamp "
    "already burning, though nobody else had a key. Opening: Our neighbour's dog barks "
    "whenever. Continuation: the postman leaves the gate open, which is every single day. "
    "Opening: The first snow of the year. Continuation: covered the cars by breakfast and "
    "closed the village school by noon. Opening: She opened the old recipe book and. "
    "Continuation: a pressed flower slipped out from between the pages about bread. Opening: "
    "The bus driver waited for. Continuation: the running boy, then waved him on with a grin. "
    "Now continue the next opening in the same way, keeping the same tone and length."
)


def prompts(ns) -> list[str]:
    """The benchmark's prompts, after the first ``--preamble-words`` words of the preamble."""
    words = PREAMBLE.split()
    if ns.preamble_words > len(words):
        raise SystemExit(f"--preamble-words: at most {len(words)}")
    head = " ".join(words[: ns.preamble_words])
    return [f"{head}\n\nOpening: {p}" if head else p for p in PROMPTS]


SEQMARL_TARGET = 1.5  # seqmarl samples/s >= this x TRL's
CORY_TARGET = 2.1  # CORY (2 agents) time per iteration <= this x single-agent PPO's


def lowercase_fraction(text: str) -> float:
    """The reward: fraction of characters that are lowercase ASCII letters."""
    return sum("a" <= c <= "z" for c in text) / max(len(text), 1)


def lowercase_reward(completions: list[str], **kwargs) -> list[float]:
    """The same reward as a TRL reward function."""
    return [lowercase_fraction(c) for c in completions]


def bench_task(texts: list[str] = PROMPTS):
    """Benchmark prompts; reward = fraction of lowercase ASCII letters in the response."""
    from seqmarl.envs import DatasetTask, Prompt

    return DatasetTask(
        [{"text": p} for p in texts],
        to_prompt=lambda r: Prompt(r["text"]),
        reward=lambda prompts, responses: [lowercase_fraction(r) for r in responses],
    )


# ------------------------------------------------------------------ children
#: Part 1's rows: name -> (seqmarl algo, its ``algo.params``, TRL trainer, TRL settings that
#: equal it; tests/algos/test_trl_parity.py holds each pair to one loss and gradient).
TRL_GRPO = {"scale_rewards": "group", "use_bias_correction_kl": False}
ROWS = {
    "rloo": ("rloo", [], "rloo", {"normalize_advantages": False}),
    # seqmarl's GRPO: token-mean loss over the batch, plain k3 KL in the loss
    "grpo": ("grpo", [], "grpo", {**TRL_GRPO, "loss_type": "bnpo"}),
    "grpo-seq": ("grpo", ["loss_aggregation=sequence"], "grpo", {**TRL_GRPO, "loss_type": "grpo"}),
    "dr_grpo": (
        "grpo",
        ["loss_aggregation=constant", "scale_rewards=none"],
        "grpo",
        {**TRL_GRPO, "loss_type": "dr_grpo", "scale_rewards": "none"},
    ),
    "dapo": (
        "grpo",
        ["clip_high=0.28"],
        "grpo",
        {**TRL_GRPO, "loss_type": "bnpo", "epsilon_high": 0.28},
    ),
    "gspo": (
        "grpo",
        ["importance_sampling=sequence", "loss_aggregation=sequence"],
        "grpo",
        {**TRL_GRPO, "loss_type": "grpo", "importance_sampling_level": "sequence"},
    ),
    "cispo": (
        "grpo",
        ["surrogate=cispo", "cispo_max=5"],
        "grpo",
        {**TRL_GRPO, "loss_type": "cispo", "epsilon_high": 5.0},
    ),
}


def run_seqmarl(path: str, ns, *, batch: int, group: int, new_tokens: int, steps: int) -> dict:
    """Train ``steps`` iterations; time those after the first ``ns.warmup``.

    Returns the timed seconds, completions per iteration (all agents) and mean length.
    """
    from seqmarl.config import load_config
    from seqmarl.train.trainer import Trainer

    algo, params, _, _ = ROWS.get(ns.algo, (ns.algo, [], None, None))
    overrides = [
        "env=bench-v0",
        f"setting={ns.setting}",
        f"algo={algo}",
        *(f"algo.params.{p}" for p in params),
        f"algo.params.kl_coef={ns.kl_coef}",
        f"algo.params.lr={ns.lr}",
        f"batch_size={batch}",
        f"model={path}",
        f"agents.mode={ns.mode}",
        f"agents.device={ns.device}",
        # vllm-merged: the shared base's adapters merged and pushed in place (no LoRA kernels)
        f"agents.generator={ns.generator.split('-')[0]}",
        *([f"agents.vllm.adapters={ns.generator.split('-')[1]}"] if "-" in ns.generator else []),
        f"agents.generation.max_new_tokens={new_tokens}",
        "agents.generation.stop_at_eos=false",
        "train.progress=false",
        "train.tensorboard=false",
        "train.seed=0",
    ]
    if algo in ("rloo", "grpo"):
        overrides.append(f"algo.params.group_size={group}")
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(load_config(None, overrides), out)
        lengths, tokens, generate, sync = [], [], [], []
        for i in range(steps):
            if i == ns.warmup:
                t0 = time.perf_counter()
            record, _ = trainer.step()
            if i >= ns.warmup:
                generate.append(record["time/generate"])
                sync.append(record.get("time/sync", 0.0))
            lengths += [v for k, v in record.items() if k.endswith("/response_length")]
            # tokens every pass of this iteration reads: observation + response, all agents
            ends = ("/response_length", "/query_length")
            tokens.append(batch * group * sum(v for k, v in record.items() if k.endswith(ends)))
        elapsed = time.perf_counter() - t0
    return {
        "elapsed": elapsed,
        "completions": batch * group * len(trainer.ids),
        "mean_length": sum(lengths) / len(lengths),
        "tokens_per_iteration": sum(tokens) / len(tokens),
        "generate_s": sum(generate) / len(generate),
        "sync_s": sum(sync) / len(sync),
    }


def run_trl(path: str, ns, *, batch: int, group: int, new_tokens: int, steps: int) -> dict:
    """Train ``steps`` optimizer steps; time those after the first ``ns.warmup``."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        trainer = trl_trainer(
            path, ns, out, [timer], batch=batch, group=group, new_tokens=new_tokens, steps=steps
        )
        trainer.train()
    lengths = [
        h["completions/mean_length"]
        for h in trainer.state.log_history
        if "completions/mean_length" in h
    ]
    return {
        "elapsed": timer.ends[-1] - timer.ends[ns.warmup - 1],
        "completions": batch * group,
        "mean_length": sum(lengths) / len(lengths),
    }


def trl_trainer(
    path: str, ns, out: str, callbacks: list, *, batch: int, group: int, new_tokens: int, steps: int
):
    """TRL's trainer for row ``ns.algo``, set up as seqmarl's run is, writing to ``out``."""
    import trl
    from datasets import Dataset
    from transformers import PrinterCallback

    _, _, trl_algo, extra = ROWS[ns.algo]
    config_cls, trainer_cls = {
        "rloo": (trl.RLOOConfig, trl.RLOOTrainer),
        "grpo": (trl.GRPOConfig, trl.GRPOTrainer),
    }[trl_algo]
    args = config_cls(
        output_dir=out,
        use_cpu=True,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,  # TRL defaults to True; seqmarl does not checkpoint
        disable_dropout=True,  # seqmarl trains in eval mode (no dropout)
        model_init_kwargs={"dtype": "float32"},
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
        max_steps=steps,
        per_device_train_batch_size=batch * group,  # completions per optimizer step
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        num_generations=group,
        num_iterations=1,
        max_completion_length=new_tokens,
        # exactly new_tokens per completion, like seqmarl's stop_at_eos=false
        generation_kwargs={"min_new_tokens": new_tokens},
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        learning_rate=ns.lr,
        lr_scheduler_type="constant",
        max_grad_norm=1.0,
        beta=ns.kl_coef,
        epsilon=0.2,
        **extra,
    )
    trainer = trainer_cls(
        model=path,
        reward_funcs=lowercase_reward,
        args=args,
        train_dataset=Dataset.from_dict({"prompt": prompts(ns)}),
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def child(ns) -> dict:
    import torch

    from benchmarks._mem import peak_since_reset, reset_peak

    torch.set_num_threads(ns.threads)
    if ns.child == "seqmarl":
        from seqmarl import envs

        envs.register_env("bench-v0", lambda: bench_task(prompts(ns)))
    run = run_seqmarl if ns.child == "seqmarl" else run_trl
    # PPO samples once per prompt: B x K prompts, so every run trains on B x K completions.
    batch, group = (ns.batch * ns.group, 1) if ns.algo == "ppo" else (ns.batch, ns.group)
    # The same path on a micro model first: lazy imports and one-time allocations are not
    # the run's memory.
    run(ns.warmup_path, ns, batch=2, group=min(group, 2), new_tokens=2, steps=ns.warmup + 1)
    gc.collect()
    device = torch.device(ns.device)
    baseline = reset_peak(device)
    result = run(
        ns.model_path,
        ns,
        batch=batch,
        group=group,
        new_tokens=ns.new_tokens,
        steps=ns.warmup + ns.steps,
    )
    return {
        "model": ns.model,
        "framework": ns.child,
        "algo": ns.algo,
        "setting": ns.setting,
        "mode": ns.mode,
        "generator": ns.generator,
        "samples_per_s": result["completions"] * ns.steps / result["elapsed"],
        "s_per_iteration": result["elapsed"] / ns.steps,
        "mean_length": result["mean_length"],
        "tokens_per_iteration": result.get("tokens_per_iteration"),
        "generate_s": result.get("generate_s"),
        "sync_s": result.get("sync_s"),
        "peak_mib": peak_since_reset(device) - baseline,
    }


# ------------------------------------------------------------------ parent
def run_child(
    framework: str,
    model: str,
    paths: dict,
    algo: str,
    setting: str,
    mode: str,
    ns,
    generator: str = "hf",
):
    cmd = [sys.executable, __file__, "--child", framework, "--model", model]
    cmd += ["--model-path", paths["model"], "--warmup-path", paths["micro"]]
    cmd += ["--algo", algo, "--setting", setting, "--mode", mode, "--generator", generator]
    flags = ("steps", "warmup", "batch", "group", "new_tokens", "threads", "kl_coef", "lr")
    flags += ("device",)
    for flag in (*flags, "preamble_words"):
        cmd += ["--" + flag.replace("_", "-"), str(getattr(ns, flag))]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    label = f"{model} {framework} {algo} ({setting}, {mode}, {generator})"
    if not (getattr(ns, "baseline_dir", None) and framework == "seqmarl"):
        return _run(cmd, env, label)
    old = Path(ns.baseline_dir)
    old_cmd = [cmd[0], str(old / "benchmarks" / "throughput.py"), *cmd[2:]]
    old_env = {**env, "PYTHONPATH": str(old)}  # its own seqmarl comes first on its path
    now, before = [], []
    for i in range(ns.pairs):  # ABBA...: neither side always runs first
        order = [(now, cmd, env, label), (before, old_cmd, old_env, f"  ... on {ns.baseline}")]
        for runs, c, e, lab in order if i % 2 == 0 else order[::-1]:
            runs.append(_run(c, e, lab))
    if any("error" in r for r in now + before):
        return next(r for r in now + before if "error" in r)
    row = _median(now)
    row["baseline"] = _median(before)
    row["pair_ratios"] = [
        a["samples_per_s"] / b["samples_per_s"] for a, b in zip(now, before, strict=True)
    ]
    return row


def _median(runs: list[dict]) -> dict:
    """The run with the median samples/s (the middle one, or the lower middle)."""
    ranked = sorted(runs, key=lambda r: r["samples_per_s"])
    return dict(ranked[(len(ranked) - 1) // 2])


def _run(cmd: list[str], env: dict, label: str) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    framework, model, algo, setting, mode, generator = (
        cmd[cmd.index(f"--{k}") + 1]
        for k in ("child", "model", "algo", "setting", "mode", "generator")
    )
    if out.returncode != 0:
        tail = [x for x in out.stderr.strip().splitlines() if x.strip()][-1:] or ["no output"]
        print(f"  {label}: FAILED: {tail[0]}", flush=True)
        return {
            "model": model,
            "framework": framework,
            "algo": algo,
            "setting": setting,
            "mode": mode,
            "generator": generator,
            "error": out.stderr[-3000:],
        }
    row = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"  {label}: {row['samples_per_s']:7.1f} samples/s  {row['s_per_iteration']:6.2f} s/it  "
        f"length {row['mean_length']:.1f}  peak {row['peak_mib']:7.1f} MiB",
        flush=True,
    )
    return row


def export_revision(rev: str, folder: Path) -> str:
    """The tracked files of git revision ``rev`` of this repository, in ``folder``."""
    root = HERE.parent
    folder.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", "--format=tar", rev],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        raise SystemExit(f"--baseline {rev}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return str(folder)


def save_tiny(folder: Path, arch: str, hidden: int, layers: int) -> str:
    from transformers.utils.logging import disable_progress_bar

    from seqmarl.agents import tiny_model_and_tokenizer

    disable_progress_bar()
    model, tok = tiny_model_and_tokenizer(arch, hidden=hidden, layers=layers, seed=0)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def report(rows: list[dict], ns) -> None:
    def find(**kw):
        return next((r for r in rows if all(r.get(k) == v for k, v in kw.items())), None)

    def num(row, key, fmt):
        if row is None:
            return "-"
        return "failed" if "error" in row else format(row[key], fmt)

    print()
    print(
        f"{ns.batch} prompts x {ns.group} samples = {ns.batch * ns.group} completions of "
        f"{ns.new_tokens} tokens per step; {ns.steps} timed step(s) after {ns.warmup} warm-up; "
        f"kl_coef {ns.kl_coef}, lr {ns.lr}, {ns.threads} threads, {ns.device}"
        + (f"; prompts after a {ns.preamble_words}-word preamble" if ns.preamble_words else "")
    )
    print()
    print(
        "| model | algo | seqmarl samples/s | TRL samples/s | ratio "
        "| seqmarl peak MiB | TRL peak MiB |"
    )
    print("|---|---|---|---|---|---|---|")
    checks = []
    for model in dict.fromkeys(r["model"] for r in rows):
        for algo in ns.algos:
            ours, theirs = (
                find(model=model, framework="seqmarl", algo=algo, generator="hf"),
                find(model=model, framework="trl", algo=algo),
            )
            ok = not any(r is None or "error" in r for r in (ours, theirs))
            ratio = ours["samples_per_s"] / theirs["samples_per_s"] if ok else None
            print(
                f"| {model} | {algo} | {num(ours, 'samples_per_s', '.1f')} | "
                f"{num(theirs, 'samples_per_s', '.1f')} | "
                f"{f'{ratio:.2f}x' if ok else 'n/a'} | {num(ours, 'peak_mib', '.0f')} | "
                f"{num(theirs, 'peak_mib', '.0f')} |"
            )
            label = f"{model} {algo}: seqmarl samples/s >= {SEQMARL_TARGET}x TRL"
            checks.append((label, ratio, SEQMARL_TARGET, ">="))
    print()
    print(
        "| model | mode | PPO single s/it | CORY 2 agents s/it | ratio "
        "| tokens read CORY/PPO | time per token CORY/PPO |"
    )
    print("|---|---|---|---|---|---|---|")
    for model in dict.fromkeys(r["model"] for r in rows):
        for mode in ns.cory_modes:
            ppo, cory = (
                find(model=model, setting="single", algo="ppo", mode=mode, generator="hf"),
                find(model=model, setting="cory", mode=mode, generator="hf"),
            )
            ok = not any(r is None or "error" in r for r in (ppo, cory))
            ratio = cory["s_per_iteration"] / ppo["s_per_iteration"] if ok else None
            # CORY's observer reads the pioneer's answer too: how much of the ratio is tokens
            tok = cory["tokens_per_iteration"] / ppo["tokens_per_iteration"] if ok else None
            print(
                f"| {model} | {mode} | {num(ppo, 's_per_iteration', '.2f')} | "
                f"{num(cory, 's_per_iteration', '.2f')} | {f'{ratio:.2f}x' if ok else 'n/a'} | "
                f"{f'{tok:.2f}x' if ok else 'n/a'} | {f'{ratio / tok:.2f}x' if ok else 'n/a'} |"
            )
            label = f"{model} {mode}: CORY 2 agents s/it <= {CORY_TARGET}x PPO"
            checks.append((label, ratio, CORY_TARGET, "<="))
    if ns.generators:
        print()
        print(
            "| model | generator | samples/s | ratio to hf | s/it | generate s/it "
            "| sync s/it | peak MiB |"
        )
        print("|---|---|---|---|---|---|---|---|")
    for model in dict.fromkeys(r["model"] for r in rows):
        hf = find(model=model, setting="cory", mode="shared", generator="hf", part=3)
        for generator in ns.generators:
            row = find(model=model, setting="cory", mode="shared", generator=generator, part=3)
            ok = not any(r is None or "error" in r for r in (hf, row))
            ratio = row["samples_per_s"] / hf["samples_per_s"] if ok else None
            print(
                f"| {model} | {generator} | {num(row, 'samples_per_s', '.1f')} | "
                f"{f'{ratio:.2f}x' if ok else 'n/a'} | {num(row, 's_per_iteration', '.2f')} | "
                f"{num(row, 'generate_s', '.2f')} | {num(row, 'sync_s', '.3f')} | "
                f"{num(row, 'peak_mib', '.0f')} |"
            )
    paired = [r for r in rows if "baseline" in r and "error" not in r["baseline"]]
    if paired:
        print()
        print(
            f"current code against {ns.baseline}: {ns.pairs} pair(s) each, back to back in "
            "alternating order; medians, and every pair's ratio"
        )
        print()
        print(
            "| model | algo | setting | mode | generator | samples/s now | samples/s before "
            "| median now/before | pair ratios |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for r in paired:
            b = r["baseline"]
            pairs = " ".join(f"{x:.2f}" for x in r["pair_ratios"])
            print(
                f"| {r['model']} | {r['algo']} | {r['setting']} | {r['mode']} | "
                f"{r['generator']} | {r['samples_per_s']:.1f} | {b['samples_per_s']:.1f} | "
                f"{r['samples_per_s'] / b['samples_per_s']:.2f}x | {pairs} |"
            )
    print()
    for label, ratio, target, op in checks:
        if ratio is None:
            print(f"target {label}: n/a (a run failed)")
            continue
        passed = ratio >= target if op == ">=" else ratio <= target
        print(f"target {label}: {ratio:.2f}x {'PASS' if passed else 'FAIL'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=["tiny", "smollm2"], choices=["tiny", "smollm2"])
    p.add_argument("--steps", type=int, default=5, help="timed steps (iterations) per run")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before them")
    p.add_argument("--batch", type=int, default=8, help="prompts per step")
    p.add_argument("--group", type=int, default=4, help="samples per prompt (RLOO/GRPO)")
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--kl-coef", type=float, default=0.05)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument(
        "--cory-modes",
        nargs="*",
        default=["shared", "separate"],
        choices=["shared", "separate"],
        help="agent modes of the CORY-vs-PPO part; none skips it",
    )
    p.add_argument(
        "--algos",
        nargs="*",
        default=["rloo", "grpo"],
        choices=list(ROWS),
        help="part 1's rows: an algorithm or one of GRPO's variants, each against its TRL twin",
    )
    p.add_argument(
        "--generators",
        nargs="*",
        default=[],
        choices=["hf", "vllm", "vllm-merged"],
        help="part 3: CORY with 2 agents on a shared base, sampled by each (vllm: one LoRA "
        "slot per agent; vllm-merged: agents.vllm.adapters=merged; both need the extra)",
    )
    p.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU machine")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--preamble-words",
        type=int,
        default=0,
        help="prefix every prompt with this many words of a fixed instruction (long prompts)",
    )
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument(
        "--baseline",
        metavar="REV",
        help="also run every seqmarl measurement on git revision REV, back to back",
    )
    p.add_argument(
        "--pairs", type=int, default=3, help="with --baseline: measured pairs per row (median)"
    )
    p.add_argument("--child", choices=["seqmarl", "trl"], help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--model-path", help=argparse.SUPPRESS)
    p.add_argument("--warmup-path", help=argparse.SUPPRESS)
    p.add_argument("--algo", help=argparse.SUPPRESS)
    p.add_argument("--setting", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--generator", default="hf", help=argparse.SUPPRESS)
    ns = p.parse_args()
    if ns.warmup < 1 or ns.steps < 1:
        p.error("--warmup and --steps must be >= 1")
    if ns.child:
        print(json.dumps(child(ns)))
        return

    from benchmarks.agents import smollm2_folder

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if ns.baseline:
            ns.baseline_dir = export_revision(ns.baseline, Path(tmp) / "baseline")
        micro = {
            arch: save_tiny(Path(tmp) / f"micro-{arch}", arch, hidden=32, layers=1)
            for arch in ("gpt2", "llama")
        }
        # vLLM's CPU attention needs a head size of 32 or more (4 heads)
        micro["vllm"] = save_tiny(Path(tmp) / "micro-vllm", "llama", hidden=128, layers=1)
        for model in ns.models:
            if model == "tiny":
                paths = {
                    "model": save_tiny(Path(tmp) / "tiny", "gpt2", 256, 4),
                    "micro": micro["gpt2"],
                }
            else:
                path = smollm2_folder()
                if path is None:
                    print(
                        "smollm2: ../shared/models/SmolLM2-135M-Instruct-Q4_1-gguf absent, skipped"
                    )
                    continue
                paths = {"model": path, "micro": micro["llama"]}
            for algo in ns.algos:
                for framework in ("seqmarl", "trl"):
                    rows.append(run_child(framework, model, paths, algo, "single", "separate", ns))
            for mode in ns.cory_modes:
                for setting in ("single", "cory"):
                    rows.append(run_child("seqmarl", model, paths, "ppo", setting, mode, ns))
            if ns.generators:
                part3 = {"model": paths["model"], "micro": micro["vllm"]}
                if model == "tiny":  # the same size as a llama (vLLM has no GPT-2 LoRA)
                    part3["model"] = save_tiny(Path(tmp) / "tiny-llama", "llama", 256, 4)
                for generator in ns.generators:
                    row = run_child("seqmarl", model, part3, "ppo", "cory", "shared", ns, generator)
                    rows.append({**row, "part": 3})
    report(rows, ns)
    if ns.json:
        ns.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
