"""pass@k (k = 1..8) of SmolLM2-135M-Instruct on GSM8K test questions, the paper's one-shot prompt.

    python benchmarks/gsm8k_passk.py                    # 100 questions, n = 8, seed 1234
    python benchmarks/gsm8k_passk.py --questions 20 --n 4 --out /tmp/passk

The same as the documented CLI call

    seqmarl eval --model embedded:smollm2-135m-instruct env=gsm8k-v0 \\
        task.kwargs.source=../shared/data/gsm8k task.kwargs.split=test \\
        agents.generation.max_new_tokens=256 --pass-k 8 --prompts 100 --out results/gsm8k_passk

which writes ``<out>/llm_0/passk.{json,md,png}``: the table, the per-question correct counts
and the curve. Questions are a seeded sample of the test split; sampling is temperature 1,
no top-k/top-p (the config defaults); a response ends at EOS or at "Question:".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqmarl.cli import main as seqmarl_main
from seqmarl.run.paths import shared_path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--questions", type=int, default=100)
    p.add_argument("--n", type=int, default=8, help="samples per question (pass@1..n)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--seed", type=int, default=1234, help="(seqmarl eval's default)")
    p.add_argument("--out", type=Path, default=Path("results/gsm8k_passk"))
    ns = p.parse_args()
    data = shared_path("data", "gsm8k")
    if data is None:
        sys.exit("needs ../shared/data/gsm8k (set SEQMARL_SHARED)")
    sys.exit(
        seqmarl_main(
            [
                "eval",
                "--model",
                "embedded:smollm2-135m-instruct",
                "env=gsm8k-v0",
                f"task.kwargs.source={data}",
                "task.kwargs.split=test",
                f"agents.generation.max_new_tokens={ns.max_new_tokens}",
                "--pass-k",
                str(ns.n),
                "--prompts",
                str(ns.questions),
                "--seed",
                str(ns.seed),
                "--out",
                str(ns.out),
            ]
        )
    )


if __name__ == "__main__":
    main()
