"""One writer per run folder: an OS lock on RUN/.lock (eval: on the folder it writes into).

The tests hold the lock the way another seqmarl process would (``flock`` on ``.lock`` with its
pid and host as text, see ``seqmarl/run/lock.py``), in this process or in a child, so each
refusal is checked against the protocol, not against the implementation's own helper.
"""

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from seqmarl.cli import main
from seqmarl.run.sinks import read_jsonl
from seqmarl.train.trainer import Trainer
from tests.test_faults import TINY, metrics

ROOT = Path(__file__).resolve().parents[1]
HOST = socket.gethostname()
TIMEOUT = 180


@contextlib.contextmanager
def holding(folder, command="seqmarl train", pid=None):
    """Hold ``folder/.lock`` as a running seqmarl process does (another open file: a conflict)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid={pid or os.getpid()}\nhost={HOST}\ncommand={command}\n".encode())
        yield
    finally:
        os.close(fd)


def files(folder):
    return {
        p.relative_to(folder): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in Path(folder).rglob("*")
        if p.is_file()
    }


@pytest.fixture(autouse=True)
def _short(monkeypatch):
    """No plots or final agents in the in-process runs (covered in test_trainer)."""
    monkeypatch.setattr(Trainer, "_finish", lambda self: self.summary([]))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A 4-iteration run with checkpoints iter_2 and iter_4 (copied per test)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    mp = pytest.MonkeyPatch()
    mp.setattr(Trainer, "_finish", lambda self: self.summary([]))
    logger = logging.getLogger("seqmarl")  # the CLI's handler would keep this setup's stderr
    mp.setattr(logger, "handlers", list(logger.handlers))
    assert main(["train", *TINY, "iterations=4", "--out", str(out)]) == 0
    mp.undo()
    return out


def _command(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return subprocess.Popen(
        [sys.executable, "-m", "seqmarl", *map(str, args)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def test_two_trains_started_together_into_one_folder_one_is_refused(tmp_path):
    out = tmp_path / "run"
    args = ["train", *TINY, "iterations=3", "train.checkpoint_every=1", "--out", out]
    procs = [_command(*args), _command(*args)]
    try:
        done = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            p.kill()
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], [(p.returncode, e[-2000:]) for p, (_, e) in zip(procs, done)]
    winner = next(p for p in procs if p.returncode == 0)
    err = next(e for p, (_, e) in zip(procs, done) if p.returncode == 2)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"seqmarl: error: {out} is in use: seqmarl train ")
    assert f"(pid {winner.pid} on {HOST})" in lines[0]
    assert "Traceback" not in done[0][1] + done[1][1]
    # the folder is the one run's: each iteration once, every checkpoint whole, no lock left
    assert [r["iteration"] for r in read_jsonl(out / "metrics.jsonl")] == [0, 1, 2]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "iter_000002",
        "iter_000003",
    ]
    assert not (out / ".lock").exists()


def test_a_second_resume_of_a_run_still_training_is_refused(tmp_path, finished_run, capsys):
    run = shutil.copytree(finished_run, tmp_path / "run")
    before = files(run)
    with holding(run, "seqmarl train --resume", pid=4242):
        code = main(["train", "--resume", str(run), "iterations=6"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"seqmarl: error: {run} is in use: seqmarl train --resume (pid 4242")
    assert f"pid 4242 on {HOST}" in err[0] and f"--resume {run}" in err[0]
    assert {k: v for k, v in files(run).items() if k.name != ".lock"} == before  # untouched


def test_a_new_train_into_a_held_folder_is_refused_before_the_folder_check(tmp_path, capsys):
    out = tmp_path / "fresh"
    with holding(out):  # the holder has not written anything yet
        assert main(["train", *TINY, "iterations=1", "--out", str(out)]) == 2
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"is in use: seqmarl train (pid {os.getpid()} on {HOST})" in err[0]


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    # a process takes the lock as seqmarl does and is killed -9: the kernel frees the flock,
    # the file with its pid stays
    script = (
        "import fcntl, os, signal, socket, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, f'pid={os.getpid()}\\nhost={socket.gethostname()}\\n"
        "command=seqmarl train\\n'.encode())\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    dead = subprocess.run([sys.executable, "-c", script, str(out / ".lock")], timeout=60)
    assert dead.returncode == -signal.SIGKILL
    left = (out / ".lock").read_text()
    pid = int(left.split("pid=")[1].split()[0])
    assert main(["train", *TINY, "iterations=1", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert (
        f"took over the lock {out / '.lock'} left by pid {pid} on {HOST}, which is not running"
        in (err)
    ), err
    assert [r["iteration"] for r in read_jsonl(out / "metrics.jsonl")] == [0]
    assert not (out / ".lock").exists()  # released cleanly: the next run takes over nothing


def test_eval_runs_beside_training_and_two_evals_of_one_folder_cannot_collide(
    tmp_path, finished_run, capsys
):
    run = shutil.copytree(finished_run, tmp_path / "run")
    with holding(run, "seqmarl train --resume"):  # a training of the run is going on
        assert main(["eval", str(run), "--prompts", "2"]) == 0
        assert (run / "eval" / "eval.json").is_file()
        assert not (run / "eval" / ".lock").exists()  # released when the eval ended
        capsys.readouterr()
        with holding(run / "eval", "seqmarl eval", pid=777):  # another eval writing eval/
            assert main(["eval", str(run), "--prompts", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"seqmarl: error: {run / 'eval'} is in use: seqmarl eval (pid 777 on")
    assert sorted(p.name for p in (run / "eval").iterdir() if p.name != ".lock") == ["eval.json"]
    json.loads((run / "eval" / "eval.json").read_text())


def test_a_resume_after_a_collision_logs_each_iteration_once(tmp_path, finished_run):
    # the uninterrupted run to compare with
    ref = tmp_path / "ref"
    assert main(["train", *TINY, "iterations=5", "--out", str(ref)]) == 0
    run = shutil.copytree(finished_run, tmp_path / "run")
    # two writers had interleaved their lines (and one left a torn line): 0 0 1 1 2 2 3 3
    for name in ("metrics.jsonl", "samples.jsonl"):
        lines = (run / name).read_text().splitlines()
        twice = []
        for line in lines:
            other = json.loads(line)
            other["time/iteration"] = -1.0  # the copy written last: the one kept
            twice += [line, json.dumps(other)]
        (run / name).write_text("\n".join(twice) + "\n" + '{"iteration": 3, "tor')
    assert main(["train", "--resume", str(run), "iterations=5"]) == 0
    records = read_jsonl(run / "metrics.jsonl")
    assert [r["iteration"] for r in records] == [0, 1, 2, 3, 4]
    assert [r["time/iteration"] for r in records[:4]] == [-1.0] * 4
    assert metrics(run) == metrics(ref)
    assert [r["iteration"] for r in read_jsonl(run / "samples.jsonl")] == [0, 1, 2, 3, 4]
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]
