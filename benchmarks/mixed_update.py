"""One update for every adapter on a base (``agents.update=mixed``) against agent by agent.

N LoRA agents on one shared base (``agents.mode=shared``), each with its own rows, optimizer and
RLOO learner (1 epoch, one minibatch, group size 2). One *update* is what the trainer does
after a rollout: every agent's reference log-probs and its optimizer step(s). It runs these
ways on the same rows:

* ``per_agent``: each agent's ``Learner.learn`` in turn (a reference pass, then a forward and
  backward per length chunk, then its step): the peer;
* ``mixed``: ``seqmarl.train.mixed.learn_together``: one reference pass over every agent's
  rows, then one forward and one backward per pass with every agent's rows, each through its
  own adapter (``seqmarl.agents.lora_rows``: each adapter's low-rank branch over its block of
  rows), then each agent's own step;
* ``mixed_peft``: the same with peft's own mixed-adapter batch (``adapter_names=``) doing the
  per-row adapters (``sampling.MIXED_ENGINE = "peft"``).

Each (model, N) runs in one process per mode, that mode measured first: its *peak MiB* is the
peak resident set (CPU) or allocated memory (CUDA) above the baseline taken after the rows are
built, over that mode's first update (optimizer state included). Every process then times all
the modes in turn (``--repeats`` rounds, the order alternating, after one warm-up of each): a
time is the median over the processes, and the ratios compare updates measured side by side.
Rows are synthetic (random tokens, prompts 24-40 tokens, answers ``--answer`` tokens), the
same in every mode.

    python benchmarks/mixed_update.py                                  # tiny, N = 1, 2, 4, 8
    python benchmarks/mixed_update.py --models tiny smollm2 --repeats 2
    python benchmarks/mixed_update.py --models smollm2 --rows 4 --repeats 1

Goal (issue 34, CPU): N = 4 mixed at most 0.6x the per-agent time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

MODES = ("per_agent", "mixed", "mixed_peft")
GOAL = 0.6  # N = 4: mixed <= this x per-agent


def child(ns) -> dict:
    import torch

    torch.set_num_threads(ns.threads)
    import seqmarl.agents.sampling as sampling
    from benchmarks._mem import peak_since_reset, reset_peak
    from benchmarks.ragged_update import ragged_completions
    from seqmarl.agents import AgentPool, tiny_model_and_tokenizer
    from seqmarl.agents.loading import load_model_and_tokenizer
    from seqmarl.algos import ALGORITHMS
    from seqmarl.train.learner import Learner
    from seqmarl.train.mixed import learn_together

    device = torch.device(ns.device)
    if ns.model == "tiny":  # loaded as a run loads it (GPT-2's GELU fused)
        model, tok = tiny_model_and_tokenizer("gpt2", hidden=256, layers=4, seed=0)
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            model, tok = load_model_and_tokenizer(tmp)
    else:
        model, tok = load_model_and_tokenizer(ns.model_path)
    model.to(device)
    ids = [f"llm_{i}" for i in range(ns.n)]
    pool = AgentPool(model, tok, ids, mode="shared")
    cfg = ALGORITHMS.get("rloo").make_config(lr=1e-6, epochs=1, group_size=2)
    learners = [Learner(pool[a], "rloo", cfg, seed=i) for i, a in enumerate(ids)]
    rows = []
    for i in range(ns.n):
        c = ragged_completions(tok, ns.rows, (24, 40), (ns.answer, ns.answer), seed=i)
        c.values = None
        c = dataclasses.replace(
            c, **{k: v.to(device) for k, v in vars(c).items() if torch.is_tensor(v)}
        )
        g = torch.Generator().manual_seed(100 + i)
        rewards = torch.rand(ns.rows, generator=g).to(device)
        rows.append((c, rewards, (torch.arange(ns.rows) // 2).to(device)))

    def per_agent():
        for lr, (c, r, g) in zip(learners, rows, strict=True):
            lr.learn(c, r, g)

    def mixed(engine: str = "blocks"):
        before, sampling.MIXED_ENGINE = sampling.MIXED_ENGINE, engine
        try:
            learn_together(
                learners,
                [c for c, _, _ in rows],
                [r for _, r, _ in rows],
                [g for _, _, g in rows],
                [None] * ns.n,
            )
        finally:
            sampling.MIXED_ENGINE = before

    run = {"per_agent": per_agent, "mixed": mixed, "mixed_peft": lambda: mixed("peft")}

    def timed(mode: str) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        run[mode]()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    modes = ns.modes
    reset_peak(device)
    base = reset_peak(device)
    timed(ns.first)  # warm-up of the first mode, and its peak memory
    peak = peak_since_reset(device) - (base if device.type != "cuda" else 0.0)
    for m in modes:
        if m != ns.first:
            timed(m)  # warm-up of the others
    times = {m: [] for m in modes}
    for k in range(ns.repeats):
        for m in modes if k % 2 == 0 else modes[::-1]:
            times[m].append(timed(m))
    params = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n) / 1e6
    return {"first": ns.first, "peak_mib": peak, "times": times, "params_m": params}


def run_child(model: str, path: str | None, n: int, first: str, ns) -> dict:
    cmd = [sys.executable, __file__, "--child", "--model", model, "--n", str(n)]
    cmd += ["--first", first, "--rows", str(ns.rows), "--answer", str(ns.answer)]
    cmd += ["--repeats", str(ns.repeats), "--threads", str(ns.threads), "--device", ns.device]
    cmd += ["--modes", *ns.modes]
    if path:
        cmd += ["--model-path", path]
    env = {**os.environ, "OMP_NUM_THREADS": str(ns.threads)}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode:
        raise SystemExit(f"child {model} N={n} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=["tiny"], choices=["tiny", "smollm2"])
    p.add_argument("--agents", nargs="+", type=int, default=[1, 2, 4, 8])
    p.add_argument("--rows", type=int, default=8, help="rows per agent")
    p.add_argument("--answer", type=int, default=16, help="answer tokens per row")
    p.add_argument("--repeats", type=int, default=3, help="timed updates per mode and process")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--model-path", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--first", choices=MODES, help=argparse.SUPPRESS)
    ns = p.parse_args()
    if "per_agent" not in ns.modes:
        p.error("--modes must include per_agent (the peer)")
    if ns.child:
        print(json.dumps(child(ns)))
        return

    table = []
    for model in ns.models:
        path = None
        if model == "smollm2":
            from benchmarks.agents import smollm2_folder

            path = smollm2_folder()
            if path is None:
                print("smollm2: ../shared/models/SmolLM2-135M-Instruct-Q4_1-gguf absent, skipped")
                continue
        for n in ns.agents:
            runs = [run_child(model, path, n, first, ns) for first in ns.modes]
            times = {m: [x for r in runs for x in r["times"][m]] for m in ns.modes}
            row = {
                "model": model,
                "params_m": runs[0]["params_m"],
                "n": n,
                "s": {m: statistics.median(times[m]) for m in ns.modes},
                "peak_mib": {r["first"]: r["peak_mib"] for r in runs},
                "times": times,
            }
            table.append(row)
            base = row["s"]["per_agent"]
            print(
                f"  {model:8s} N={n}: "
                + "  ".join(
                    f"{m} {row['s'][m]:.3f} s ({row['s'][m] / base:.2f}x, "
                    f"{row['peak_mib'][m]:.0f} MiB)"
                    for m in ns.modes
                ),
                flush=True,
            )
    print()
    print(
        f"RLOO (1 epoch, 1 minibatch), {ns.rows} rows x (24-40 prompt + {ns.answer} answer) "
        f"tokens per agent, {ns.threads} threads, device {ns.device}; time: median of "
        f"{len(ns.modes) * ns.repeats} updates per mode"
    )
    others = [m for m in ns.modes if m != "per_agent"]
    head = "| model | N | per_agent s | " + " | ".join(f"{m} s | {m} / per_agent" for m in others)
    print(head + " | peak MiB " + " / ".join(ns.modes) + " |")
    print("|---" * (3 + 2 * len(others) + 1) + "|")
    for r in table:
        t, base = r["s"], r["s"]["per_agent"]
        cells = [f"{r['model']} ({r['params_m']:.1f}M)", str(r["n"]), f"{base:.3f}"]
        for m in others:
            cells += [f"{t[m]:.3f}", f"{t[m] / base:.2f}x"]
        cells.append(" / ".join(f"{r['peak_mib'][m]:.0f}" for m in ns.modes))
        print("| " + " | ".join(cells) + " |")
    print()
    for r in table:
        if r["n"] == 4 and "mixed" in r["s"]:
            ratio = r["s"]["mixed"] / r["s"]["per_agent"]
            ok = "PASS" if ratio <= GOAL else "FAIL"
            print(f"goal {r['model']} N=4 mixed <= {GOAL}x per-agent: {ratio:.2f}x {ok}")
    if ns.json:
        ns.json.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
