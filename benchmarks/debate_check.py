"""Does ``gsm8k-debate-v0`` reward rise under training? A CPU-sized check on one-step problems.

SmolLM2-135M-Instruct solves about 0.75 % of GSM8K test questions (``docs/results.md``), and
none of 32 sampled GSM8K train questions whose solution has a single ``<<...>>`` step, so a
short run on real GSM8K sees reward 0 and has nothing to learn from. This script writes
generated one-step word problems (add, take away or multiply two small numbers) in GSM8K's
jsonl format, ``{"question": ..., "answer": "... <<a+b=c>>c ...\\n#### c"}``, as a folder with
``train.jsonl`` and ``test.jsonl``, and trains ``gsm8k-debate-v0`` on it through
``task.kwargs.source``: the same env, prompt, stop string and 1/0 exact-answer reward, on
questions whose final answers the model gets right about a quarter of the time at first
(temperature 0.3). Results and the run's numbers: ``docs/environments.md``, section
``gsm8k-debate-v0``.

    OMP_NUM_THREADS=1 python benchmarks/debate_check.py --out results/debate/one_step

writes the data to ``--data`` (default ``runs/one_step_arith``) and runs::

    python -m seqmarl train env=gsm8k-debate-v0 task.rounds=2 task.kwargs.source=<data> ...

with the settings below (every ``key=value`` after the options is passed on as an override).
The task reward per iteration is ``agent/<id>/task_reward`` in ``<out>/metrics.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqmarl.cli import main as seqmarl_main

NAMES = ("Ann", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun")
ITEMS = ("apples", "pencils", "stickers", "marbles", "cookies", "books", "shells", "cards")

# The run documented in docs/environments.md (section gsm8k-debate-v0).
TRAIN_OVERRIDES = (
    "env=gsm8k-debate-v0",
    "task.rounds=2",
    "task.kwargs.split=train",
    "setting.num_agents=2",
    "setting.reward_matrix=independent",
    "agents.model=embedded:smollm2-135m-instruct",
    "agents.mode=shared",
    "agents.generation.max_new_tokens=32",
    "agents.generation.temperature=0.3",
    "algo.name=reinforce",
    "algo.params={lr: 3.0e-4, kl_coef: 0.05}",
    "train.batch_size=8",
    "train.iterations=12",
    "train.seed=0",
    "train.sample_every=3",
    "train.checkpoint_every=1000",
)


def one_step_problem(rng: random.Random) -> dict[str, str]:
    """One word problem that takes a single operation, as a GSM8K record."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    kind = rng.randrange(3)
    if kind == 0:
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        question = f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?"
        calc, result = f"{a}+{b}", a + b
    elif kind == 1:
        b = rng.randint(1, 9)
        a = b + rng.randint(1, 9)
        question = f"{name} has {a} {item} and gives away {b}. How many {item} are left?"
        calc, result = f"{a}-{b}", a - b
    else:
        a, b = rng.randint(2, 5), rng.randint(2, 5)
        question = (
            f"{name} buys {a} bags with {b} {item} in each bag. How many {item} does {name} buy?"
        )
        calc, result = f"{a}*{b}", a * b
    answer = f"{name} ends up with {calc} = <<{calc}={result}>>{result} {item}.\n#### {result}"
    return {"question": question, "answer": answer}


def write_dataset(folder: Path, *, train: int = 2000, test: int = 200, seed: int = 0) -> Path:
    """Write ``train.jsonl`` and ``test.jsonl`` of one-step problems; returns ``folder``."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("test", test)):
        rows = [one_step_problem(rng) for _ in range(n)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("runs/one_step_arith"))
    p.add_argument("--out", type=Path, default=Path("runs/debate_check"))
    p.add_argument("--seed", type=int, default=0, help="data seed")
    p.add_argument("--overwrite", action="store_true", help="replace a run in --out")
    ns, extra = p.parse_known_args()
    data = write_dataset(ns.data, seed=ns.seed)
    argv = ["train", *TRAIN_OVERRIDES, f"task.kwargs.source={data}", *extra, "--out", str(ns.out)]
    sys.exit(seqmarl_main([*argv, "--overwrite"] if ns.overwrite else argv))


if __name__ == "__main__":
    main()
