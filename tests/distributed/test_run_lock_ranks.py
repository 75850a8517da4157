"""The run folder's lock under torchrun: rank 0 (the writer) takes it, and a refusal stops every
rank at once, in one line, instead of leaving the other ranks waiting for rank 0.

Launched with ``torchrun --standalone --nproc_per_node 2 -m seqmarl train`` with a timeout, so
a hang fails instead of blocking the suite.
"""

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from seqmarl.run.sinks import read_jsonl
from tests.distributed.test_data_parallel import TRAIN
from tests.test_run_lock import holding

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 300


def torchrun_seqmarl(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "seqmarl", *map(str, args),
    ]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT)


def test_two_ranks_refused_by_a_held_run_stop_together_in_one_line(tmp_path):
    run = tmp_path / "run"
    with holding(run, "seqmarl train", pid=31337):
        proc = torchrun_seqmarl("train", *TRAIN, "iterations=2", "--out", run)
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if line.startswith("seqmarl:")]
    assert ours == [
        f"seqmarl: error: {run} is in use: seqmarl train (pid 31337 on {socket.gethostname()}) "
        f"is writing it; wait for it to end (then continue it with seqmarl train --resume {run}), "
        "or train into another folder with --out"
    ], proc.stderr[-3000:]
    # both ranks ended with the refusal's status (rank 1 was not left waiting and killed); the
    # only traceback is torchrun's own report of a failed child, none from seqmarl
    assert proc.stderr.count("exitcode  : 2") == 2, proc.stderr[-3000:]
    assert f'File "{ROOT / "seqmarl"}' not in proc.stderr
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing written


def test_two_ranks_train_and_resume_under_the_lock_and_release_it(tmp_path):
    run = tmp_path / "run"
    first = torchrun_seqmarl("train", *TRAIN, "iterations=2", "--out", run)
    assert first.returncode == 0, first.stderr[-3000:]
    assert not (run / ".lock").exists()
    # while the resume runs, the lock names one process (rank 0's), the resume's
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "seqmarl", "train", "--resume", str(run), "iterations=3",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = set()
    deadline = time.monotonic() + TIMEOUT
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                text = (run / ".lock").read_text()
                if "command=" in text:
                    seen.add(text)
            time.sleep(0.05)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert len(seen) == 1, seen
    assert "command=seqmarl train --resume" in seen.pop()
    assert b"took over" not in err  # the first run let go of it cleanly
    assert not (run / ".lock").exists()
    assert [r["iteration"] for r in read_jsonl(run / "metrics.jsonl")] == [0, 1, 2]
