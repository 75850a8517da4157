"""A full disk (ENOSPC) is one line and exit status 2, leaves nothing half-written, and a run
resumed after space is freed equals the uninterrupted one.

:class:`FullDisk` makes every write into one folder fail with ENOSPC while it is "full", as a
real full disk does (creating an empty file still works, writing into it does not): through
``open``/``io.open`` file objects and through ``os.write`` on descriptors of files there. It
needs no privileges. The last test does the same on a real tmpfs, as root only.
"""

import builtins
import contextlib
import errno
import io
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import seqmarl.train.trainer
from seqmarl.cli import main
from seqmarl.run.checkpoint import list_checkpoints, verify_checkpoint
from seqmarl.run.sinks import read_jsonl
from seqmarl.train.trainer import Trainer
from tests.test_faults import TINY, metrics

ROOT = Path(__file__).resolve().parents[1]
ENOSPC = os.strerror(errno.ENOSPC)
#: the tiny run of test_faults, 3 iterations with a checkpoint after each
RUN = [*TINY, "iterations=3", "train.checkpoint_every=1"]

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")


class _FullFile:
    """A file opened for writing on the full disk: it exists, and every write fails."""

    def __init__(self, fh):
        self._fh = fh

    def write(self, data):
        raise OSError(errno.ENOSPC, ENOSPC)

    def writelines(self, lines):
        raise OSError(errno.ENOSPC, ENOSPC)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()

    def __iter__(self):
        return iter(self._fh)


class FullDisk:
    """Writes under ``root`` fail with ENOSPC while ``full`` is true."""

    def __init__(self, root, monkeypatch):
        self.root = os.path.realpath(root)
        self.full = False
        real_open, real_write = builtins.open, os.write
        disk = self

        def under(path):
            return os.path.realpath(os.fspath(path)).startswith(disk.root + os.sep)

        def fake_open(file, mode="r", *args, **kwargs):
            fh = real_open(file, mode, *args, **kwargs)
            writing = any(c in mode for c in "wax+")
            if disk.full and writing and not isinstance(file, int) and under(file):
                return _FullFile(fh)
            return fh

        def fake_write(fd, data):
            if disk.full:
                try:
                    target = os.readlink(f"/proc/self/fd/{fd}")
                except OSError:
                    target = ""
                if target.startswith(disk.root + os.sep):
                    raise OSError(errno.ENOSPC, ENOSPC)
            return real_write(fd, data)

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(io, "open", fake_open)
        monkeypatch.setattr(os, "write", fake_write)


def one_error_line(capsys):
    """The command's one line (a resume's progress line "resumed from ..." may come first)."""
    err = capsys.readouterr().err.strip().splitlines()
    err = [e for e in err if not e.startswith("seqmarl: resumed from ")]
    assert len(err) == 1, err
    assert err[0].startswith("seqmarl: error: the disk is full (No space left on device) writing")
    return err[0]


def leftovers(folder):
    """Temporary or partial files and folders anywhere in ``folder``."""
    return [
        p
        for p in Path(folder).rglob("*")
        if ".tmp" in p.name or p.name.startswith((".partial", ".old", ".lock"))
    ]


@pytest.fixture(autouse=True)
def _short(monkeypatch):
    """No plots or final agents in these runs (covered in test_trainer)."""
    monkeypatch.setattr(Trainer, "_finish", lambda self: self.summary([]))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 3-iteration run: its metrics and folder."""
    out = tmp_path_factory.mktemp("reference") / "run"
    mp = pytest.MonkeyPatch()
    mp.setattr(Trainer, "_finish", lambda self: self.summary([]))
    logger = logging.getLogger("seqmarl")  # the CLI's handler would keep this setup's stderr
    mp.setattr(logger, "handlers", list(logger.handlers))
    assert main(["train", *RUN, "--out", str(out)]) == 0
    mp.undo()
    return metrics(out), out


def fill_after_checkpoints(disk, monkeypatch, n, *, during=False):
    """The disk fills up after the ``n``-th checkpoint (``during``: while writing it)."""
    real = seqmarl.train.trainer.save_checkpoint
    count = {"n": 0}

    def saving(*args, **kwargs):
        count["n"] += 1
        if during and count["n"] == n:
            disk.full = True
        out = real(*args, **kwargs)
        if count["n"] == n and not during:
            disk.full = True
        return out

    monkeypatch.setattr(seqmarl.train.trainer, "save_checkpoint", saving)


@pytest.mark.parametrize("where", ["metrics line", "checkpoint write"])
def test_train_on_a_full_disk_is_one_line_and_resumes_exactly(
    tmp_path, monkeypatch, capsys, reference, where
):
    run = tmp_path / "run"
    disk = FullDisk(tmp_path, monkeypatch)
    # 3 iterations, a checkpoint after each; the disk fills after iter_1 is written (the next
    # metrics line fails), or while iter_2 is written
    during = where == "checkpoint write"
    fill_after_checkpoints(disk, monkeypatch, 2 if during else 1, during=during)
    assert main(["train", *RUN, "--out", str(run)]) == 2
    line = one_error_line(capsys)
    if during:
        assert f"writing {run / 'checkpoints' / 'iter_000002'};" in line
        done = 2
    else:
        assert f"writing {run / 'metrics.jsonl'};" in line
        done = 1
    assert (
        "the last complete checkpoint iter_000001 is intact; free space and resume with: "
        f"seqmarl train --resume {run}" in line
    )
    assert not leftovers(run)
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["iter_000001"]
    verify_checkpoint(run / "checkpoints" / "iter_000001")
    text = (run / "metrics.jsonl").read_text()
    assert text.endswith("\n") and len(read_jsonl(run / "metrics.jsonl")) == done  # whole lines
    disk.full = False  # space is freed
    monkeypatch.undo()
    monkeypatch.setattr(Trainer, "_finish", lambda self: self.summary([]))
    assert main(["train", "--resume", str(run)]) == 0
    assert metrics(run) == reference[0]


@pytest.mark.parametrize("collision", [False, True])
def test_resume_on_a_full_disk_is_one_line_and_leaves_no_tmp(
    tmp_path, monkeypatch, capsys, reference, collision
):
    run = tmp_path / "run"
    shutil.copytree(reference[1], run)
    shutil.rmtree(run / "checkpoints" / "iter_000003")  # the run was killed after iteration 2
    if collision:  # two writers had doubled the lines: the resume must rewrite the file
        lines = (run / "metrics.jsonl").read_text().splitlines()
        (run / "metrics.jsonl").write_text("".join(f"{x}\n{x}\n" for x in lines))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    disk = FullDisk(tmp_path, monkeypatch)
    disk.full = True
    assert main(["train", "--resume", str(run)]) == 2
    line = one_error_line(capsys)
    assert f"writing {run / ('metrics.jsonl' if collision else 'config.yaml')};" in line
    assert (
        f"the last complete checkpoint iter_000002 is intact; free space and resume with: "
        f"seqmarl train --resume {run}" in line
    )
    assert not leftovers(run)
    if collision:  # nothing changed
        assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    else:  # cut back to the checkpoint in place (that needs no space), config.yaml as it was
        assert [r["iteration"] for r in read_jsonl(run / "metrics.jsonl")] == [0, 1]
        assert (run / "config.yaml").read_bytes() == before[run / "config.yaml"]
    disk.full = False
    assert main(["train", "--resume", str(run)]) == 0
    assert metrics(run) == reference[0]


def test_eval_on_a_full_disk_is_one_line_and_leaves_no_empty_eval_json(
    tmp_path, monkeypatch, capsys, reference
):
    run = tmp_path / "run"
    shutil.copytree(reference[1], run)
    disk = FullDisk(tmp_path, monkeypatch)
    disk.full = True
    assert main(["eval", str(run), "--prompts", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(
        f"seqmarl: error: the disk is full (No space left on device) writing {run / 'eval'}"
    )
    assert "nothing partial is left there and the run is unchanged" in err[0]
    assert not (run / "eval").exists() or not list((run / "eval").iterdir())
    assert not leftovers(run)
    disk.full = False
    assert main(["eval", str(run), "--prompts", "2"]) == 0
    assert sorted(p.name for p in (run / "eval").iterdir()) == ["eval.json"]  # not eval-2.json
    json.loads((run / "eval" / "eval.json").read_text())


def test_a_metrics_line_that_does_not_fit_is_cut_off_again(tmp_path, monkeypatch):
    from seqmarl.run.sinks import JsonlSink

    path = tmp_path / "metrics.jsonl"
    room = {"bytes": None}  # what the disk still takes (None: enough)
    real_open, real_write = builtins.open, os.write

    def take(n):  # a full disk takes what fits, then refuses the rest
        if room["bytes"] is None:
            return n
        k = min(n, room["bytes"])
        room["bytes"] -= k
        return k

    class Small:
        def __init__(self, fh):
            self._fh = fh

        def write(self, data):
            k = take(len(data))
            self._fh.write(data[:k])
            self._fh.flush()
            if k < len(data):
                raise OSError(errno.ENOSPC, ENOSPC)
            return k

        def __getattr__(self, name):
            return getattr(self._fh, name)

    def fake_open(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        return Small(fh) if os.fspath(file) == str(path) else fh

    def fake_write(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}") != str(path):
            return real_write(fd, data)
        data = bytes(data)
        k = take(len(data))
        if k:
            real_write(fd, data[:k])
        if k < len(data):
            raise OSError(errno.ENOSPC, ENOSPC)
        return k

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "write", fake_write)
    sink = JsonlSink(path)
    sink.write({"iteration": 0})
    room["bytes"] = 20  # the disk fills in the middle of the next line
    with pytest.raises(OSError) as caught:
        sink.write({"iteration": 1, "x": "y" * 100})
    room["bytes"] = None
    with contextlib.suppress(OSError):
        sink.close()
    monkeypatch.undo()
    assert path.read_text() == '{"iteration": 0}\n'  # no torn line
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(path)


def _mount_tmpfs(where, size):
    return subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def _seqmarl(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "seqmarl", *map(str, args)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mount") is None,
    reason="a real full disk needs a tmpfs mount: root and mount(8) only",
)
def test_a_real_full_tmpfs(tmp_path):
    where = tmp_path / "small"
    where.mkdir()
    mounted = _mount_tmpfs(where, "1m")  # one checkpoint of the tiny run (~860 kB) fits
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        run = where / "run"
        train = _seqmarl("train", *RUN, "--out", run)
        assert train.returncode == 2, train.stderr[-3000:]
        err = train.stderr.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in train.stderr, train.stderr
        assert err[0].startswith("seqmarl: error: the disk is full (No space left on device)")
        assert f"free space and resume with: seqmarl train --resume {run}" in err[0]
        assert not leftovers(run)
        for ckpt in list_checkpoints(run / "checkpoints"):
            verify_checkpoint(ckpt)
        # eval with the disk full to the last byte
        with open(where / "filler", "wb") as fh, pytest.raises(OSError):
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        ev = _seqmarl("eval", run, "--prompts", "2")
        assert ev.returncode == 2, ev.stderr[-3000:]
        err = ev.stderr.strip().splitlines()
        assert len(err) == 1 and "the disk is full" in err[0], ev.stderr
        assert not (run / "eval" / "eval.json").exists() and not leftovers(run)
        # free space: resume, and the run equals the uninterrupted one
        (where / "filler").unlink()
        subprocess.run(["mount", "-o", "remount,size=16m", str(where)], check=True, timeout=30)
        resumed = _seqmarl("train", "--resume", run)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        # the same command uninterrupted (in a process like the others: same threads, same bits)
        full = _seqmarl("train", *RUN, "--out", tmp_path / "full")
        assert full.returncode == 0, full.stderr[-3000:]
        assert metrics(run) == metrics(tmp_path / "full")
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)
