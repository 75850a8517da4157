"""One training iteration under cProfile: the seqmarl functions, files and calls it crosses.

Trains the tiny 2-agent CORY run (``arithmetic-v0``, batch 4) for one warm-up iteration, then
profiles one ``Trainer.step()`` and counts the seqmarl functions called, the distinct
caller -> callee pairs among them, the files they live in, and the pairs of files that call
each other. Point ``PYTHONPATH`` at another checkout to count an older revision::

    python benchmarks/iteration_calls.py
    git archive 88deda3 | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python benchmarks/iteration_calls.py
"""

import cProfile
import os
import pstats
import tempfile

import seqmarl
from seqmarl.config import load_config
from seqmarl.train.trainer import Trainer

RUN = [
    "model=embedded:tiny-llama",
    "env=arithmetic-v0",
    "batch_size=4",
    "agents.generation.max_new_tokens=4",
    "train.progress=false",
    "train.tensorboard=false",
]


def main() -> None:
    root = os.path.dirname(seqmarl.__file__)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(load_config(None, RUN), tmp)
        trainer.step()  # warm-up: lazy imports and first-call caches
        prof = cProfile.Profile()
        prof.enable()
        trainer.step()
        prof.disable()
    stats = pstats.Stats(prof).stats  # (file, line, name) -> (..., callers)
    ours = {key for key in stats if key[0].startswith(root)}
    calls = {
        (caller, callee)
        for callee in ours
        for caller in stats[callee][4]
        if caller[0].startswith(root)
    }
    files = sorted({os.path.relpath(key[0], root) for key in ours})
    file_calls = {
        (os.path.relpath(a[0], root), os.path.relpath(b[0], root)) for a, b in calls if a[0] != b[0]
    }
    both = sorted({tuple(sorted(p)) for p in file_calls if (p[1], p[0]) in file_calls})
    print(f"seqmarl at {root}, one Trainer.step():")
    print(f"  {len(ours)} functions, {len(calls)} caller -> callee pairs, {len(files)} files")
    print(f"  {len(file_calls)} file -> file call edges; files calling each other: {both}")
    print("  files: " + " ".join(files))


if __name__ == "__main__":
    main()
