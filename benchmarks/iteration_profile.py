"""Where one training step's time goes, in seqmarl and in TRL, on the throughput rows' set-up.

For a row of ``benchmarks/throughput.py`` (same model, prompts, batch, lengths, KL and
learning rate), both frameworks train ``--warmup + --steps`` steps in this process; the timed
steps are split into the parts every policy-gradient step has:

* ``generate``: sampling the completions (seqmarl: its sampler, which also returns the
  sampling log-probs; TRL: ``_generate``);
* ``forward``: the log-prob passes over prompt + completion without sampling (the reference
  model, and the policy's pass that the loss differentiates);
* ``backward`` and ``optimizer`` (``torch.autograd.backward``, the Adam/AdamW step);
* ``other``: everything else (rewards, advantages, batching, logging, the loop itself).

Each part is timed by wrapping the one function that does it (exclusive of the other parts
nested inside), so the parts add up to the step time. A part's share of the step says what
bounds a row: when the model's passes are nearly all of seqmarl's step, only fewer or shorter
passes make it faster.

    python benchmarks/iteration_profile.py --model tiny --algo grpo
    python benchmarks/iteration_profile.py --model smollm2 --algo rloo --steps 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.throughput import ROWS, bench_task, prompts, save_tiny, trl_trainer

PARTS = ("generate", "forward", "backward", "optimizer")


class Clock:
    """Exclusive time per part: a part nested in another is taken out of the outer one."""

    def __init__(self):
        self.totals: dict[str, float] = defaultdict(float)
        self.stack: list[list] = []  # [part, start, time in nested parts]
        self.on = False

    def wrap(self, owner, name: str, part: str) -> None:
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            self.stack.append([part, t0, 0.0])
            try:
                return inner(*args, **kwargs)
            finally:
                _, start, nested = self.stack.pop()
                spent = time.perf_counter() - start
                if self.on:
                    self.totals[part] += spent - nested
                if self.stack:
                    self.stack[-1][2] += spent

        setattr(owner, name, timed)

    def reset(self) -> None:
        self.totals.clear()
        self.on = True


def common(clock: Clock) -> None:
    import torch

    clock.wrap(torch.autograd, "backward", "backward")
    clock.wrap(torch.optim.Adam, "step", "optimizer")
    clock.wrap(torch.optim.AdamW, "step", "optimizer")


def profile_seqmarl(path: str, ns) -> tuple[float, dict]:
    from seqmarl import envs
    from seqmarl.agents.hf import HFPolicy
    from seqmarl.config import load_config
    from seqmarl.train.trainer import Trainer

    clock = Clock()
    common(clock)
    clock.wrap(HFPolicy, "sample", "generate")
    clock.wrap(HFPolicy, "evaluate", "forward")
    clock.wrap(HFPolicy, "reference", "forward")
    envs.register_env("bench-v0", lambda: bench_task(prompts(ns)))
    algo, params, _, _ = ROWS[ns.algo]
    overrides = [
        "env=bench-v0",
        "setting=single",
        f"algo={algo}",
        *(f"algo.params.{p}" for p in params),
        f"algo.params.kl_coef={ns.kl_coef}",
        f"algo.params.lr={ns.lr}",
        f"algo.params.group_size={ns.group}",
        f"batch_size={ns.batch}",
        f"model={path}",
        "agents.mode=separate",
        f"agents.generation.max_new_tokens={ns.new_tokens}",
        "agents.generation.stop_at_eos=false",
        "train.progress=false",
        "train.tensorboard=false",
    ]
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(load_config(None, overrides), out)
        for i in range(ns.warmup + ns.steps):
            if i == ns.warmup:
                clock.reset()
                t0 = time.perf_counter()
            trainer.step()
        elapsed = time.perf_counter() - t0
    return elapsed / ns.steps, {k: v / ns.steps for k, v in clock.totals.items()}


def profile_trl(path: str, ns) -> tuple[float, dict]:
    import trl
    from transformers import TrainerCallback

    clock = Clock()
    common(clock)
    cls = trl.GRPOTrainer if ROWS[ns.algo][2] == "grpo" else trl.RLOOTrainer
    clock.wrap(cls, "_generate", "generate")
    clock.wrap(cls, "_get_per_token_logps_and_entropies", "forward")
    ends: list[float] = []

    class Steps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            ends.append(time.perf_counter())
            if len(ends) == ns.warmup:
                clock.reset()

    with tempfile.TemporaryDirectory() as out:
        trainer = trl_trainer(
            path,
            ns,
            out,
            [Steps()],
            batch=ns.batch,
            group=ns.group,
            new_tokens=ns.new_tokens,
            steps=ns.warmup + ns.steps,
        )
        trainer.train()
    return (ends[-1] - ends[ns.warmup - 1]) / ns.steps, {
        k: v / ns.steps for k, v in clock.totals.items()
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="tiny", choices=["tiny", "smollm2"])
    p.add_argument("--algo", default="grpo", choices=list(ROWS))
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--group", type=int, default=4)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    ns = p.parse_args()
    ns = SimpleNamespace(**vars(ns), kl_coef=0.05, lr=1e-5, preamble_words=0)
    import torch

    torch.set_num_threads(ns.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if ns.model == "tiny":
            path = save_tiny(Path(tmp) / "tiny", "gpt2", 256, 4)
        else:
            from benchmarks.agents import smollm2_folder

            path = smollm2_folder()
            if path is None:
                sys.exit("smollm2: ../shared/models/SmolLM2-135M-Instruct-Q4_1-gguf is absent")
        rows = {"seqmarl": profile_seqmarl(path, ns), "TRL": profile_trl(path, ns)}
    print(
        f"\n{ns.model}, {ns.algo}: {ns.batch} prompts x {ns.group} samples x {ns.new_tokens} "
        f"tokens, {ns.steps} timed steps after {ns.warmup}, {ns.threads} threads\n"
    )
    print("| framework | s/step | " + " | ".join(PARTS) + " | other |")
    print("|---|---|" + "---|" * (len(PARTS) + 1))
    for name, (step, parts) in rows.items():
        other = step - sum(parts.get(k, 0.0) for k in PARTS)
        cells = [f"{parts.get(k, 0.0):.3f} ({parts.get(k, 0.0) / step:.0%})" for k in PARTS]
        print(
            f"| {name} | {step:.3f} | "
            + " | ".join(cells)
            + f" | {other:.3f} ({other / step:.0%}) |"
        )
    (ours, ours_parts), (theirs, theirs_parts) = rows["seqmarl"], rows["TRL"]
    print(f"\nTRL/seqmarl time per step: {theirs / ours:.2f}x")
    for k in PARTS:
        a, b = ours_parts.get(k, 0.0), theirs_parts.get(k, 0.0)
        if a > 0:
            print(f"  {k}: TRL/seqmarl {b / a:.2f}x")


if __name__ == "__main__":
    main()
