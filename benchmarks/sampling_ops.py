"""Micro-benchmarks of the per-token operations seqmarl replaced, against what they replaced.

    python benchmarks/sampling_ops.py

* drawing one token per row: ``torch.multinomial`` vs seqmarl's inverse-CDF draw
  (``seqmarl.agents.sampling.sample_categorical``), at the tiny GPT-2's vocabulary (8,192) and
  SmolLM2's (49,152), 32 and 64 rows;
* GPT-2's activation: transformers' ``gelu_new`` (Python composition of elementwise ops) vs
  torch's fused tanh GELU, forward + backward on a (64 x 24, 1024) MLP activation (the
  imdb-gpt2-tiny update).

Each figure is the median of ``--repeats`` timings; ratios are measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from transformers.activations import GELUTanh, NewGELUActivation

from seqmarl.agents.sampling import sample_categorical


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=50)
    ns = p.parse_args()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("Draw one token per row:\n")
    print("| rows | vocab | multinomial ms | inverse CDF ms | speed-up |")
    print("|---|---|---|---|---|")
    for vocab in (8192, 49152):
        for rows in (32, 64):
            probs = (torch.randn(rows, vocab) * 3).softmax(-1)
            slow = timed(lambda p=probs: torch.multinomial(p, 1, generator=g), ns.repeats)
            fast = timed(lambda p=probs: sample_categorical(p, g), ns.repeats)
            ms = f"{slow * 1e3:.2f} | {fast * 1e3:.2f}"
            print(f"| {rows} | {vocab} | {ms} | {slow / fast:.1f}x |")
    print()
    print("GPT-2 activation, forward + backward:\n")
    print("| shape | gelu_new ms | fused tanh GELU ms | speed-up |")
    print("|---|---|---|---|")
    x = torch.randn(64 * 24, 1024, requires_grad=True)
    for_slow, for_fast = NewGELUActivation(), GELUTanh()
    assert torch.allclose(for_slow(x), for_fast(x), atol=1e-6)

    def step(act):
        act(x).sum().backward()

    slow = timed(lambda: step(for_slow), ns.repeats)
    fast = timed(lambda: step(for_fast), ns.repeats)
    print(f"| {tuple(x.shape)} | {slow * 1e3:.2f} | {fast * 1e3:.2f} | {slow / fast:.1f}x |")


if __name__ == "__main__":
    main()
