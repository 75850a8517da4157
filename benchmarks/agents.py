"""Agent benchmark: generation speed, PPO update time and peak memory for N = 1, 2, 4 agents
in both modes (shared base with LoRA adapters, separate full copies), on a tiny model and on
SmolLM2-135M-Instruct (from ../shared; skipped if absent).

Each configuration runs in its own process so that peak memory is its own. Memory is the
peak resident set (CPU) or peak allocated (CUDA) *above the baseline taken after imports*:
model, reference, adapters/copies, optimizer state and activations, without the interpreter.

    python benchmarks/agents.py                      # both models, N = 1, 2, 4, both modes
    python benchmarks/agents.py --models tiny --agents 1 2

Targets: shared N=2 peak memory <= 1.3x N=1; separate N=2 <= 2.3x N=1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

PROMPTS = [
    "This movie was",
    "I watched this film last night and",
    "The acting in this one",
    "Honestly, the plot",
    "My friends told me",
    "From the first scene",
    "The director of this picture",
    "It is hard to say",
]


def warm_up(device) -> None:
    """Run the whole path once on a throwaway micro model, then free it."""
    import gc

    import torch

    from seqmarl.agents import AgentPool, tiny_model_and_tokenizer
    from seqmarl.config import GenerationConfig
    from seqmarl.train.learner import Learner

    for mode in ("shared", "separate"):
        model, tok = tiny_model_and_tokenizer("gpt2", hidden=32, layers=1)
        pool = AgentPool(
            model.to(device),
            tok,
            ["llm_0"],
            mode=mode,
            value_heads=["llm_0"],
            generation=GenerationConfig(max_new_tokens=2),
        )
        learner = Learner(pool["llm_0"], "ppo")
        c = pool["llm_0"].sample(["warm up"])
        learner.update(c, learner.make_batch(c, torch.zeros(1)))
        del pool, learner, model, c
    gc.collect()


def child(args: argparse.Namespace) -> dict:
    import torch

    from benchmarks._mem import peak_since_reset, reset_peak
    from seqmarl.agents import AgentPool, load_model_and_tokenizer, tiny_model_and_tokenizer
    from seqmarl.algos import ALGORITHMS
    from seqmarl.config import GenerationConfig
    from seqmarl.method.settings import agent_ids
    from seqmarl.train.learner import Learner

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    warm_up(device)  # lazy imports and one-time allocations are not the agents' memory
    baseline = reset_peak(device)
    if args.model == "tiny":
        model, tok = tiny_model_and_tokenizer("gpt2", hidden=256, layers=4, seed=0)
        model = model.to(device)
    else:
        model, tok = load_model_and_tokenizer(args.model_path, device=device)
    n_params = sum(p.numel() for p in model.parameters())
    ids = agent_ids(args.n)
    gen = GenerationConfig(max_new_tokens=args.new_tokens, stop_at_eos=False)
    pool = AgentPool(model, tok, ids, mode=args.mode, value_heads=ids, generation=gen)
    ppo = ALGORITHMS.get("ppo")
    learners = [Learner(pool[a], ppo, ppo.make_config(lr=1e-5), seed=i) for i, a in enumerate(ids)]
    prompts = (PROMPTS * ((args.batch + len(PROMPTS) - 1) // len(PROMPTS)))[: args.batch]
    g = torch.Generator(device=device).manual_seed(0)
    gen_times, upd_times, tokens = [], [], 0
    for rep in range(args.reps):
        for learner in learners:
            t0 = time.perf_counter()
            c = learner.agent.sample(prompts, generator=g)
            t1 = time.perf_counter()
            batch = learner.make_batch(c, torch.randn(len(prompts), generator=g, device=device))
            learner.update(c, batch)
            t2 = time.perf_counter()
            if rep > 0 or args.reps == 1:  # first round warms up
                gen_times.append(t1 - t0)
                upd_times.append(t2 - t1)
                tokens += int(c.response_mask.sum())
    peak = peak_since_reset(device)
    return {
        "model": args.model,
        "mode": args.mode,
        "n": args.n,
        "params_m": n_params / 1e6,
        "gen_tokens_per_s": tokens / sum(gen_times),
        "ppo_update_s": sum(upd_times) / len(upd_times),
        "peak_mib": peak - baseline,
        "device": str(device),
    }


def run_child(model: str, model_path: str | None, mode: str, n: int, ns) -> dict:
    cmd = [sys.executable, __file__, "--child", "--model", model, "--mode", mode, "--n", str(n)]
    cmd += ["--batch", str(ns.batch), "--new-tokens", str(ns.new_tokens), "--reps", str(ns.reps)]
    cmd += ["--threads", str(ns.threads), "--device", ns.device]
    if model_path:
        cmd += ["--model-path", model_path]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{model}/{mode}/N={n} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def smollm2_folder() -> str | None:
    """SmolLM2 from ../shared, converted once to a plain HF folder in the cache."""
    from seqmarl.agents import load_model_and_tokenizer
    from seqmarl.run.paths import cache_dir, shared_path

    gguf_dir = shared_path("models", "SmolLM2-135M-Instruct-Q4_1-gguf")
    if gguf_dir is None:
        return None
    target = cache_dir("bench") / "smollm2-135m-instruct"
    if not (target / "model.safetensors").exists():
        model, tok = load_model_and_tokenizer(
            str(gguf_dir), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"
        )
        model.save_pretrained(target)
        tok.save_pretrained(target)
    return str(target)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=["tiny", "smollm2"])
    p.add_argument("--agents", nargs="+", type=int, default=[1, 2, 4])
    p.add_argument("--modes", nargs="+", default=["shared", "separate"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--reps", type=int, default=2, help="rounds per agent; the first warms up")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--model-path", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ns = p.parse_args()
    if ns.child:
        print(json.dumps(child(ns)))
        return

    rows = []
    for model in ns.models:
        path = None
        if model == "smollm2":
            path = smollm2_folder()
            if path is None:
                print("smollm2: ../shared/models/SmolLM2-135M-Instruct-Q4_1-gguf absent, skipped")
                continue
        for mode in ns.modes:
            for n in ns.agents:
                row = run_child(model, path, mode, n, ns)
                rows.append(row)
                print(
                    f"  {model:8s} {mode:9s} N={n}: {row['gen_tokens_per_s']:8.1f} tok/s  "
                    f"update {row['ppo_update_s']:6.3f} s  peak {row['peak_mib']:8.1f} MiB",
                    flush=True,
                )
    print()
    print(
        f"batch {ns.batch} x {ns.new_tokens} new tokens, PPO (4 epochs, value head), "
        f"{ns.threads} threads, device {ns.device}"
    )
    print("| model | mode | N | gen tok/s | PPO update (s) | peak MiB | peak vs N=1 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        base = next(
            x
            for x in rows
            if x["model"] == r["model"] and x["mode"] == r["mode"] and x["n"] == min(ns.agents)
        )
        ratio = r["peak_mib"] / base["peak_mib"]
        print(
            f"| {r['model']} ({r['params_m']:.1f}M) | {r['mode']} | {r['n']} | "
            f"{r['gen_tokens_per_s']:.0f} | {r['ppo_update_s']:.3f} | {r['peak_mib']:.0f} | "
            f"{ratio:.2f}x |"
        )
    targets = {"shared": 1.3, "separate": 2.3}
    print()
    for r in rows:
        if r["n"] == 2:
            base = next(
                x
                for x in rows
                if x["model"] == r["model"] and x["mode"] == r["mode"] and x["n"] == 1
            )
            ratio = r["peak_mib"] / base["peak_mib"]
            ok = "PASS" if ratio <= targets[r["mode"]] else "FAIL"
            print(
                f"target {r['model']} {r['mode']} N=2 peak <= {targets[r['mode']]}x N=1: "
                f"{ratio:.2f}x {ok}"
            )
    if ns.json:
        ns.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
