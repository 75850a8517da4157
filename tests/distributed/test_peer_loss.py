"""A rank that dies (SIGKILL) or stops answering (SIGSTOP) under torchrun.

The other rank must leave with one ``seqmarl`` line naming the lost rank and the command that
resumes, no traceback and a non-zero status, in bounded time; the command it prints must then
continue the run exactly. Each rank's stderr is its own file (torchrun ``--redirects 3``).
"""

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_data_parallel import ROOT, TIMEOUT, TRAIN, equal, torchrun

from seqmarl.run.distributed import lost_peer
from seqmarl.run.folder import how_to_continue
from seqmarl.run.sinks import read_jsonl

ITERATIONS = 8
TIMEOUT_S = 15  # distributed.timeout_s of the runs here
SHUTDOWN_S = 30  # torchrun's default --shutdown-timeout: how long it waits for a stopped rank
#: How long after the signal the surviving rank may take to leave: SIGKILL closes its
#: connection (measured: under 2 s); SIGSTOP leaves it waiting distributed.timeout_s (measured:
#: timeout_s + 0.2 s). Both bounds leave room for a loaded machine.
SURVIVOR_BOUND = {signal.SIGKILL: 30, signal.SIGSTOP: TIMEOUT_S + 30}
RUN = [*TRAIN, f"iterations={ITERATIONS}", f"distributed.timeout_s={TIMEOUT_S}"]


def strip(records):
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "tokens_"))} for r in records]


def final_learners(run):
    path = Path(run) / "checkpoints" / f"iter_{ITERATIONS:06d}" / "state.pt"
    return torch.load(path, weights_only=False)["learners"]


def test_only_communication_failures_are_a_lost_rank(tmp_path):
    closed = RuntimeError(
        "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer "
        "[127.0.0.1]:6792. This is typically caused by a remote worker crashing."
    )
    timed_out = RuntimeError(
        "[/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:129] Timed out "
        "waiting 15000ms for send operation to complete"
    )
    assert lost_peer(closed, 0, 2) == "lost rank 1: its connection closed (it exited or was killed)"
    assert lost_peer(timed_out, 1, 2, 15).startswith(
        "lost rank 0: no answer within distributed.timeout_s=15 s"
    )
    assert lost_peer(closed, 0, 4).startswith("lost a peer rank: ")
    nccl = torch.distributed.DistBackendError("NCCL error: remote process exited")
    assert lost_peer(nccl, 0, 2) == (
        "lost rank 1: communication failed (NCCL error: remote process exited)"
    )
    # a bug, even one with a connection's words in it, keeps its traceback
    for bug in (RuntimeError("shape mismatch"), RuntimeError("Connection reset by peer")):
        assert lost_peer(bug, 0, 2) is None
    assert lost_peer(ValueError(str(closed)), 0, 2) is None
    launch = "torchrun --standalone --nproc_per_node 2"
    (tmp_path / "config.yaml").write_text("{}")
    assert how_to_continue(tmp_path, launch) == (
        f"no checkpoint yet; start again with: {launch} -m seqmarl train "
        f"{tmp_path / 'config.yaml'} --out {tmp_path} --overwrite"
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("reference") / "run"
    torchrun("-m", "seqmarl", "train", *RUN, "--out", run)
    return run


def _rank_pids(pid, deadline):
    """``{rank: pid}`` of torchrun ``pid``'s two workers."""
    while time.monotonic() < deadline:
        found = {}
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for child in children:
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            rank = [e[5:] for e in environ if e.startswith(b"RANK=")]
            if rank:
                found[int(rank[0])] = int(child)
        if len(found) == 2:
            return found
        time.sleep(0.1)
    raise AssertionError("torchrun's workers did not show up")


def _gone(pid):
    """Whether ``pid`` has exited (no process, or a zombie its parent has not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.mark.parametrize(
    ("signum", "victim"), [(signal.SIGKILL, 1), (signal.SIGSTOP, 0)], ids=["kill", "stop"]
)
def test_a_lost_rank_is_one_line_and_the_run_resumes_exactly(tmp_path, reference, signum, victim):
    run, logs = tmp_path / "run", tmp_path / "logs"
    survivor = 1 - victim
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "--log-dir", str(logs), "--redirects", "3", "-m", "seqmarl", "train", *RUN,
        "--out", str(run),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pids = {}
    try:
        deadline = time.monotonic() + TIMEOUT
        pids = _rank_pids(proc.pid, deadline)
        while not (run / "checkpoints" / "iter_000004").exists():  # mid-run, after a checkpoint
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run did not reach iteration 4 in time"
            time.sleep(0.05)
        os.kill(pids[victim], signum)
        t0 = time.monotonic()
        while not _gone(pids[survivor]):
            assert time.monotonic() - t0 < SURVIVOR_BOUND[signum], "the survivor did not leave"
            time.sleep(0.05)
        survivor_s = time.monotonic() - t0
        proc.communicate(timeout=SHUTDOWN_S + 60)
        launcher_s = time.monotonic() - t0
    finally:
        if victim in pids and not _gone(pids[victim]):
            os.kill(pids[victim], signal.SIGKILL)  # a SIGKILL ends a stopped process too
        proc.kill()
        proc.wait()
    print(
        f"{signum.name}: survivor left after {survivor_s:.1f} s, torchrun after {launcher_s:.1f} s"
    )
    assert proc.returncode != 0
    (log,) = logs.glob(f"*/attempt_0/{survivor}/stderr.log")
    err = log.read_text()
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("seqmarl:") and "lost" in ln]
    assert len(lines) == 1, err[-3000:]
    (line,) = lines
    tag = f"[rank {survivor}] " if survivor else ""
    how = "its connection closed" if signum == signal.SIGKILL else "no answer within"
    assert line.startswith(f"seqmarl: {tag}lost rank {victim}: {how}"), line
    resume = f"torchrun --standalone --nproc_per_node 2 -m seqmarl train --resume {run}"
    assert line.endswith(f"continue with: {resume}"), line
    if signum == signal.SIGSTOP:  # the survivor waited distributed.timeout_s, not much more
        assert TIMEOUT_S - 1 <= survivor_s <= SURVIVOR_BOUND[signum], survivor_s
        # torchrun cannot SIGTERM a stopped rank: it SIGKILLs it after its shutdown timeout
        assert launcher_s <= TIMEOUT_S + SHUTDOWN_S + 30, launcher_s

    # the printed command continues the run as if nothing had happened
    launch = [sys.executable, "-m", "torch.distributed.run", *shlex.split(resume)[1:]]
    done = subprocess.run(
        launch, env=env, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert strip(read_jsonl(run / "metrics.jsonl")) == strip(
        read_jsonl(reference / "metrics.jsonl")
    )
    equal(final_learners(run), final_learners(reference))
