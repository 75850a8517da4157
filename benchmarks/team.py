"""A team of different models against its members: time per iteration and peak memory.

Six runs on ``sentiment-v0`` (VADER reward, no data), each in its own process so that its
peak memory is its own, all with LoRA adapters (``agents.mode=shared``) and PPO:

* ``team``: CORY with two agents of different bases: ``llm_0`` the 5M GPT-2 of ../shared
  (``imdb-gpt2-tiny``) and ``llm_1`` SmolLM2-135M-Instruct;
* ``team, no transfer``: the same with ``setting.knowledge_transfer=false``: the observer
  reads only the prompt, so each member does the work it does alone, and what is left over
  is the team's own cost;
* ``smollm2 x2`` (and ``, no transfer``): CORY with two SmolLM2 agents on one base (what a
  team replaces);
* ``gpt2 alone`` and ``smollm2 alone``: one agent each (``setting=single``), the members'
  single-agent costs.

Goal: the team's time per iteration and peak memory are each at most the sum of its members'
single-agent costs plus 10 %; it is judged on ``team, no transfer``, the run whose members do
their single-agent work. Each row also gives the trainer's split of a step (``time/*``). Memory
is the peak resident set above a baseline taken after imports (as in benchmarks/agents.py);
time is the mean of the timed iterations after ``--warmup``.

    python benchmarks/team.py                 # 3 timed iterations after 1, batch 8, 16 tokens
    python benchmarks/team.py --steps 5 --json team.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

TARGET = 1.10  # team <= this x the sum of its members alone

TEAM = ["setting=cory", "agents.per_agent.llm_0.model={gpt2}", "model={smollm2}"]
APART = ["setting.knowledge_transfer=false"]  # the observer reads only the prompt, as alone
RUNS = {
    "team": TEAM,
    "team, no transfer": [*TEAM, *APART],
    "smollm2 x2": ["setting=cory", "model={smollm2}"],
    "smollm2 x2, no transfer": ["setting=cory", "model={smollm2}", *APART],
    "gpt2 alone": ["setting=single", "model={gpt2}"],
    "smollm2 alone": ["setting=single", "model={smollm2}"],
}


def child(ns) -> dict:
    import torch

    from benchmarks._mem import peak_since_reset, reset_peak
    from seqmarl.config import load_config
    from seqmarl.train.trainer import Trainer

    torch.set_num_threads(ns.threads)
    paths = {"gpt2": ns.gpt2, "smollm2": ns.smollm2}
    overrides = [o.format(**paths) for o in RUNS[ns.child]] + [
        "env=sentiment-v0",
        "agents.mode=shared",
        "algo=ppo",
        "algo.params.epochs=1",
        f"batch_size={ns.batch}",
        f"agents.generation.max_new_tokens={ns.new_tokens}",
        "agents.generation.stop_at_eos=false",
        "agents.device=cpu",
        "train.progress=false",
        "train.tensorboard=false",
    ]
    device = torch.device("cpu")
    baseline = reset_peak(device)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(load_config(None, overrides), out)
        parts: dict[str, float] = {}
        for i in range(ns.warmup + ns.steps):
            if i == ns.warmup:
                t0 = time.perf_counter()
            record, _ = trainer.step()
            trainer.iteration += 1
            if i >= ns.warmup:  # the trainer's own split of the step (time/generate, ...)
                for k, v in record.items():
                    if k.startswith("time/") and isinstance(v, float):
                        parts[k[5:]] = parts.get(k[5:], 0.0) + v / ns.steps
        elapsed = time.perf_counter() - t0
    return {
        "run": ns.child,
        "s_per_iteration": elapsed / ns.steps,
        "peak_mib": peak_since_reset(device) - baseline,
        "parts": parts,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=3, help="timed iterations per run")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batch", type=int, default=8, help="prompts per iteration")
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--child", choices=list(RUNS), help=argparse.SUPPRESS)
    p.add_argument("--gpt2", help=argparse.SUPPRESS)
    p.add_argument("--smollm2", help=argparse.SUPPRESS)
    ns = p.parse_args()
    if ns.child:
        print(json.dumps(child(ns)))
        return

    from benchmarks.agents import smollm2_folder
    from seqmarl.run.paths import shared_path

    smollm2, gpt2 = smollm2_folder(), shared_path("models", "imdb-gpt2-tiny")
    if smollm2 is None or gpt2 is None:
        sys.exit("team: needs ../shared/models/imdb-gpt2-tiny and SmolLM2-135M-Instruct-Q4_1-gguf")
    rows = {}
    for name in RUNS:
        cmd = [sys.executable, __file__, "--child", name, "--gpt2", str(gpt2)]
        cmd += ["--smollm2", str(smollm2)]
        for flag in ("steps", "warmup", "batch", "new_tokens", "threads"):
            cmd += ["--" + flag.replace("_", "-"), str(getattr(ns, flag))]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        print(f"running {name} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
        rows[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"\nsentiment-v0, PPO, LoRA (shared), {ns.batch} prompts x {ns.new_tokens} tokens, "
        f"{ns.steps} timed iterations after {ns.warmup}, {ns.threads} threads\n"
    )
    names = sorted({k for r in rows.values() for k in r["parts"]})
    print("| run | s/iteration | peak MiB | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for name, r in rows.items():
        split = " | ".join(f"{r['parts'].get(k, 0.0):.2f}" for k in names)
        print(f"| {name} | {r['s_per_iteration']:.2f} | {r['peak_mib']:.0f} | {split} |")
    keys = ("s_per_iteration", "peak_mib")
    members = {k: rows["gpt2 alone"][k] + rows["smollm2 alone"][k] for k in keys}
    for run in ("team", "team, no transfer"):
        for key, what in (("s_per_iteration", "time"), ("peak_mib", "peak memory")):
            ratio = rows[run][key] / members[key]
            ok = "PASS" if ratio <= TARGET else "FAIL"
            print(f"\n{run}: {what} / sum of members alone {ratio:.2f} (target <= {TARGET}) {ok}")
    # the same comparison on one base: what CORY's reading costs, with no team involved
    one = rows["smollm2 x2, no transfer"]["s_per_iteration"]
    alone = 2 * rows["smollm2 alone"]["s_per_iteration"]
    print(f"\nsmollm2 x2, no transfer / twice smollm2 alone: time {one / alone:.2f}")
    if ns.json:
        ns.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
