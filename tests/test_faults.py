"""Faults of a training run: stop signals, damaged checkpoints, reused folders, bad resumes.

Signals are sent to this very process with ``os.kill`` from inside the code under test, so each
lands exactly at the named point (Python runs the handler right after ``os.kill`` returns).
"""

import os
import signal

import pytest
import torch

import seqmarl.run.checkpoint as ck
from seqmarl.config import load_config
from seqmarl.errors import ConfigError, Interrupted
from seqmarl.run.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints
from seqmarl.run.sinks import MetricSinks, read_jsonl
from seqmarl.train.trainer import Trainer

TINY = [
    "model=embedded:tiny-llama",
    "env=arithmetic-v0",
    "batch_size=3",
    "agents.generation.max_new_tokens=4",
    "algo.params.epochs=2",
    "setting.exchange_every=2",
    "iterations=5",
    "train.checkpoint_every=2",
    "train.sample_every=1",
    "train.progress=false",
    "train.tensorboard=false",
]


def cfg_for(*extra):
    return load_config(None, [*TINY, *extra])


def metrics(run):
    return [
        {k: v for k, v in r.items() if not k.startswith("time/") and k != "tokens_per_s"}
        for r in read_jsonl(run / "metrics.jsonl")
    ]


def assert_same(a, b, where="state"):
    """Bit-for-bit equality of nested state (tensors, dicts, lists, numbers)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.fixture(autouse=True)
def no_final_outputs(monkeypatch):
    """Skip agents/plots at the end of fit (covered in test_trainer): keeps these runs short."""
    monkeypatch.setattr(Trainer, "_finish", lambda self: self.summary([]))


@pytest.fixture(autouse=True)
def python_sigint():
    """Python's own SIGINT handler for the test, whatever the suite inherited.

    A suite started with ``nohup`` or as a background job inherits SIGINT ignored, and the
    trainer then leaves it ignored (test_an_ignored_sigint_stays_ignored); these tests deliver
    SIGINT, so they set the handler a terminal's Python starts with, and put back what was there.
    """
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, inherited)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: its metrics and final state."""
    out = tmp_path_factory.mktemp("reference")
    mp = pytest.MonkeyPatch()
    mp.setattr(Trainer, "_finish", lambda self: {})
    trainer = Trainer(cfg_for(), out)
    trainer.fit()
    mp.undo()
    return metrics(out), trainer.state_dict()


def kill_once(when, signum=signal.SIGINT, times=1):
    """A wrapper factory: ``fn`` that sends ``signum`` (``times`` times) when ``when()`` holds."""
    fired = {"done": False}

    def wrap(fn, before=True):
        def inner(*args, **kwargs):
            hit = not fired["done"] and when()
            if hit and before:
                fired["done"] = True
                for _ in range(times):
                    os.kill(os.getpid(), signum)
            out = fn(*args, **kwargs)
            if hit and not before:
                fired["done"] = True
                for _ in range(times):
                    os.kill(os.getpid(), signum)
            return out

        return inner

    return wrap


def inject(trainer, point, wrap, monkeypatch):
    """Make ``wrap`` fire at ``point`` of ``trainer``'s iterations."""
    if point == "generation":  # the second seat's sampling
        agent = trainer.pool.agents["llm_1"]
        monkeypatch.setattr(agent, "sample", wrap(agent.sample))
    elif point == "scoring":
        task = trainer.game.task
        monkeypatch.setattr(task, "score_batch", wrap(task.score_batch))
    elif point in ("update llm_0", "update llm_1"):  # right after that agent's optimizer step
        opt = trainer.learners[point.split()[1]].optimizer
        monkeypatch.setattr(opt, "step", wrap(opt.step, before=False))
    elif point == "logging":
        monkeypatch.setattr(MetricSinks, "write", wrap(MetricSinks.write))
    elif point == "checkpoint write":
        monkeypatch.setattr(ck.torch, "save", wrap(torch.save))
    else:
        raise AssertionError(point)


# point -> (signal, the checkpoint the stop leaves)
POINTS = {
    "generation": (signal.SIGINT, "iter_000003"),  # play is abandoned: back to its start
    "scoring": (signal.SIGTERM, "iter_000003"),
    "update llm_0": (signal.SIGINT, "iter_000004"),  # updates finish the iteration first
    "update llm_1": (signal.SIGTERM, "iter_000004"),
    "logging": (signal.SIGINT, "iter_000004"),
    "checkpoint write": (signal.SIGTERM, "iter_000004"),
}


@pytest.mark.parametrize("point", list(POINTS))
def test_a_stop_signal_anywhere_resumes_bit_for_bit(tmp_path, monkeypatch, reference, point):
    signum, expected = POINTS[point]
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    trainer = Trainer(cfg_for(), tmp_path)
    # iteration 3's play/update/log, or the checkpoint written after it (iteration 4)
    at = 4 if point == "checkpoint write" else 3
    inject(trainer, point, kill_once(lambda: trainer.iteration == at, signum), monkeypatch)
    with pytest.raises(Interrupted, match=f"stopped by {signum.name}.*--resume") as info:
        trainer.fit()
    assert info.value.exit_code == 128 + signum
    assert latest_checkpoint(tmp_path / "checkpoints").name == expected
    assert {s: signal.getsignal(s) for s in before} == before  # handlers restored
    assert not list((tmp_path / "checkpoints").glob(".tmp*"))
    monkeypatch.undo()
    monkeypatch.setattr(Trainer, "_finish", lambda self: {})
    resumed = Trainer(cfg_for(), tmp_path, resume=True)
    assert resumed.iteration == int(expected[-6:])
    resumed.fit()
    ref_metrics, ref_state = reference
    assert metrics(tmp_path) == ref_metrics
    assert_same(resumed.state_dict()["learners"], ref_state["learners"])  # weights, Adam, KL
    assert_same(resumed.state_dict()["prompt_rng"], ref_state["prompt_rng"])


@pytest.mark.parametrize("point", ["update llm_1", "checkpoint write"])
def test_a_second_signal_aborts_quietly_keeping_the_previous_checkpoint(
    tmp_path, monkeypatch, reference, point
):
    from seqmarl.run.interrupts import StopSignals

    monkeypatch.setattr(StopSignals, "repeat_window", 0.0)  # a human's second Ctrl-C
    trainer = Trainer(cfg_for(), tmp_path)
    at = 4 if point == "checkpoint write" else 3
    inject(trainer, point, kill_once(lambda: trainer.iteration == at, times=2), monkeypatch)
    with pytest.raises(Interrupted, match="aborted by a second SIGINT.*iter_000002") as info:
        trainer.fit()
    assert info.value.exit_code == 130
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["iter_000002"]
    assert not list((tmp_path / "checkpoints").glob(".*"))  # no temporary folder left
    monkeypatch.undo()
    monkeypatch.setattr(Trainer, "_finish", lambda self: {})
    resumed = Trainer(cfg_for(), tmp_path, resume=True)
    assert resumed.iteration == 2
    resumed.fit()
    assert metrics(tmp_path) == reference[0]
    assert_same(resumed.state_dict()["learners"], reference[1]["learners"])


def test_a_stop_delivered_twice_at_once_is_one_stop(tmp_path, monkeypatch, reference):
    # SLURM signals every process of the job step and torchrun forwards the same signal
    trainer = Trainer(cfg_for(), tmp_path)
    wrap = kill_once(lambda: trainer.iteration == 3, signal.SIGTERM, times=2)
    inject(trainer, "update llm_0", wrap, monkeypatch)
    with pytest.raises(Interrupted, match="stopped by SIGTERM after iteration 4"):
        trainer.fit()
    assert latest_checkpoint(tmp_path / "checkpoints").name == "iter_000004"


def test_an_ignored_sigint_stays_ignored_and_sigterm_still_stops(tmp_path, monkeypatch):
    # the trainer run under nohup: SIGINT arrives ignored, and a Ctrl-C sent to it changes
    # nothing; SIGTERM (a scheduler's stop) still ends it at an iteration boundary
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    trainer = Trainer(cfg_for(), tmp_path)
    inject(trainer, "update llm_0", kill_once(lambda: trainer.iteration == 1), monkeypatch)
    wrap = kill_once(lambda: trainer.iteration == 3, signal.SIGTERM)
    monkeypatch.setattr(MetricSinks, "write", wrap(MetricSinks.write))
    with pytest.raises(Interrupted, match="stopped by SIGTERM after iteration 4"):
        trainer.fit()
    assert len(metrics(tmp_path)) == 4  # the SIGINT during iteration 2 did not stop it
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


# ------------------------------------------------------------------ damaged checkpoints
def _truncate(p):
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _zero_fill(p):
    p.write_bytes(bytes(p.stat().st_size))


def _flip_tensor_bytes(p):
    """Overwrite bytes inside a stored tensor: the zip stays valid and torch.load succeeds."""
    import zipfile

    with zipfile.ZipFile(p) as z:
        storages = [i for i in z.infolist() if "/data/" in i.filename]  # tensor bytes
        info = max(storages, key=lambda i: i.file_size)
    data = bytearray(p.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    start += info.file_size // 2  # somewhere in the middle of its (uncompressed) bytes
    data[start : start + 16] = b"\x7f" * 16
    p.write_bytes(bytes(data))
    torch.load(p, weights_only=False)  # still loads: only the checksum can tell


DAMAGE = {
    "truncated": _truncate,
    "empty": lambda p: p.write_bytes(b""),
    "zero-filled": _zero_fill,
    "bad pickle": lambda p: p.write_bytes(b"\x80\x04not a pickle at all" * 100),
    "tensor bytes overwritten": _flip_tensor_bytes,
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A 4-iteration run with checkpoints 2, 3 and 4 (copied per test)."""
    out = tmp_path_factory.mktemp("finished")
    mp = pytest.MonkeyPatch()
    mp.setattr(Trainer, "_finish", lambda self: {})
    Trainer(
        cfg_for("iterations=4", "train.checkpoint_every=1", "train.keep_checkpoints=3"), out
    ).fit()
    mp.undo()
    return out


def copy_run(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(
    tmp_path, finished_run, damage, caplog
):
    run = copy_run(finished_run, tmp_path / "run")
    DAMAGE[damage](run / "checkpoints" / "iter_000004" / "state.pt")
    with caplog.at_level("WARNING", logger="seqmarl"):
        trainer = Trainer(cfg_for("iterations=4"), run, resume=True)
    assert trainer.iteration == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "iter_000004" in warnings[0] and "damaged" in warnings[0]
    # moved aside, so later saves and pruning never meet it again
    assert (run / "checkpoints" / "damaged_iter_000004").is_dir()
    trainer.fit()
    assert latest_checkpoint(run / "checkpoints").name == "iter_000004"
    assert [r["iteration"] for r in read_jsonl(run / "metrics.jsonl")] == [0, 1, 2, 3]


def test_damaged_meta_and_no_usable_checkpoint_is_one_line_exit_2(tmp_path, finished_run, capsys):
    from seqmarl.cli import main

    run = copy_run(finished_run, tmp_path / "run")
    (run / "checkpoints" / "iter_000004" / "meta.json").write_text("{not json")
    _zero_fill(run / "checkpoints" / "iter_000003" / "state.pt")
    _truncate(run / "checkpoints" / "iter_000002" / "state.pt")
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("seqmarl: error: --resume: no usable checkpoint under")
    assert "iter_000004 (meta.json unreadable" in err[-1] and "--overwrite" in err[-1]
    assert "replaces its logs and checkpoints" in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_an_intact_checkpoint_that_does_not_load_is_left_in_place(
    tmp_path, finished_run, monkeypatch, caplog
):
    run = copy_run(finished_run, tmp_path / "run")
    real_load = torch.load

    def picky(path, *a, **kw):  # e.g. written by another version: the bytes are intact
        if "iter_000004" in str(path):
            raise ModuleNotFoundError("No module named 'seqmarl.old'")
        return real_load(path, *a, **kw)

    monkeypatch.setattr(ck.torch, "load", picky)
    with caplog.at_level("WARNING", logger="seqmarl"):
        path, state = ck.load_latest(run / "checkpoints")
    assert path.name == "iter_000003" and state["iteration"] == 3
    assert (run / "checkpoints" / "iter_000004").is_dir()  # not moved: nothing is wrong with it
    assert "does not load here" in caplog.text and "checksum is intact" in caplog.text

    def unreadable(path, *a, **kw):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(ck.torch, "load", unreadable)
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*iter_000004.*Permission"):
        ck.load_latest(run / "checkpoints")
    assert [p.name for p in ck.list_checkpoints(run / "checkpoints")][-1] == "iter_000004"


def test_checksums_are_recorded_and_checked(tmp_path, finished_run):
    meta = ck.verify_checkpoint(finished_run / "checkpoints" / "iter_000004")
    assert len(meta["files"]["state.pt"]["sha256"]) == 64
    run = copy_run(finished_run, tmp_path / "run")
    _flip_tensor_bytes(run / "checkpoints" / "iter_000004" / "state.pt")
    with pytest.raises(CheckpointError, match="iter_000004 is damaged: state.pt fails its SHA-256"):
        ck.load_checkpoint(run / "checkpoints" / "iter_000004")


def test_folders_that_are_not_checkpoints_are_ignored(tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path / "run")
    import shutil

    shutil.copytree(run / "checkpoints" / "iter_000004", run / "checkpoints" / "iter_000004.bak")
    (run / "checkpoints" / "iter_latest").mkdir()
    (run / "checkpoints" / "notes.txt").write_text("mine")
    trainer = Trainer(cfg_for("iterations=6", "train.keep_checkpoints=2"), run, resume=True)
    assert trainer.iteration == 4
    trainer.fit()  # saves at 6 and prunes
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["iter_000004", "iter_000004.bak", "iter_000006", "iter_latest", "notes.txt"]


# ------------------------------------------------------------------ run folders
def test_killed_before_the_first_checkpoint_has_a_way_forward(tmp_path, monkeypatch):
    from seqmarl.cli import main

    real_save = torch.save

    def killed(obj, fh, *a, **kw):  # the first checkpoint write dies half-way
        fh.write(b"partial")
        raise OSError("killed")

    monkeypatch.setattr(ck.torch, "save", killed)
    with pytest.raises(OSError, match="killed"):
        Trainer(cfg_for(), tmp_path).fit()
    monkeypatch.setattr(ck.torch, "save", real_save)
    assert [r["iteration"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [0, 1]
    # --resume: no checkpoint; names --overwrite and the command
    with pytest.raises(CheckpointError, match="no complete checkpoint.*--overwrite"):
        Trainer(cfg_for(), tmp_path, resume=True)
    # a fresh run into the same folder: refused, naming --overwrite
    with pytest.raises(ConfigError, match="no complete checkpoint.*--overwrite"):
        Trainer(cfg_for(), tmp_path)
    (tmp_path / "mine.txt").write_text("not a run file")
    args = ["train", str(tmp_path / "config.yaml"), "--out", str(tmp_path), "--overwrite"]
    assert main(args) == 0
    assert [r["iteration"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [0, 1, 2, 3, 4]
    assert (tmp_path / "mine.txt").read_text() == "not a run file"  # only run files replaced


def test_a_folder_with_logs_but_no_checkpoint_is_refused_untouched(tmp_path, capsys):
    from seqmarl.cli import main

    (tmp_path / "metrics.jsonl").write_text('{"iteration": 0}\n')
    (tmp_path / "config.yaml").write_text("old: config\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert main(["train", *TINY, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path) in err[0]
    assert "--overwrite" in err[0] and "--out" in err[0]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("agents.lora.r=8", "agents.lora.r"),
        ("num_agents=3", "setting.num_agents"),
        ("model=embedded:tiny-gpt2", "agents.model"),
        ("agents.mode=separate", "agents.mode"),
        ("algos.llm_1.name=reinforce", "algos.llm_1.name"),
    ],
)
def test_resume_with_a_contradicting_override_names_the_field(
    tmp_path, finished_run, monkeypatch, capsys, override, field
):
    from seqmarl.agents.pool import AgentPool
    from seqmarl.cli import main

    run = copy_run(finished_run, tmp_path / "run")

    def no_load(*a, **kw):
        raise AssertionError("the model was loaded before the check")

    monkeypatch.setattr(AgentPool, "from_config", no_load)
    assert main(["train", "--resume", str(run), override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"seqmarl: error: --resume: {field}=")
    assert "iter_000004" in err[0]


def test_resume_may_change_what_does_not_shape_the_checkpoint(tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path / "run")
    saved = ck.load_checkpoint(latest_checkpoint(run / "checkpoints"))
    for agent, state in saved["learners"].items():  # the first run trained at another lr
        assert {g["lr"] for g in state["optimizer"]["param_groups"]} != {1e-4}, agent
    trainer = Trainer(cfg_for("iterations=5", "algo.params.lr=1e-4"), run, resume=True)
    assert trainer.iteration == 4
    for agent, learner in trainer.learners.items():
        assert learner.config.lr == 1e-4, f"{agent}: the override did not reach the learner"
        lrs = [g["lr"] for g in learner.optimizer.param_groups]  # not the checkpoint's
        assert lrs == [1e-4] * len(lrs), f"{agent}: the optimizer steps at {lrs}, not 1e-4"
        assert learner.optimizer.state, f"{agent}: the Adam moments were not restored"
    trainer.fit()  # and it trains on: one more iteration, checkpointed
    assert [r["iteration"] for r in read_jsonl(run / "metrics.jsonl")] == [0, 1, 2, 3, 4]
    assert ck.load_checkpoint(latest_checkpoint(run / "checkpoints"))["iteration"] == 5


# ------------------------------------------------------------------ the real command
def _spawn_train(out, *extra):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "seqmarl", "train", *TINY, "iterations=500", "--out", str(out)]
    return subprocess.Popen(
        [*args, *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        # a suite run under nohup passes SIGINT on ignored, and the run would keep ignoring it:
        # the command is tested as a terminal starts it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for_iterations(proc, out, n, timeout=240):
    import time

    deadline = time.monotonic() + timeout
    while len(read_jsonl(out / "metrics.jsonl")) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run did not start in time"
        time.sleep(0.2)


@pytest.mark.parametrize(("signum", "times"), [(signal.SIGTERM, 1), (signal.SIGINT, 2)])
def test_the_command_stops_on_signals_with_one_line(tmp_path, signum, times):
    import time

    out = tmp_path / "run"
    proc = _spawn_train(out)
    try:
        _wait_for_iterations(proc, out, 2)
        for _ in range(times):
            proc.send_signal(signum)
            time.sleep(0.05)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signum
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    done = len(read_jsonl(out / "metrics.jsonl"))
    ckpts = list_checkpoints(out / "checkpoints")
    assert not list((out / "checkpoints").glob(".*"))
    # a double tap may land while the first signal is handled (abort, nothing saved) or after
    # the stop is complete (ignored): either way one line and every checkpoint intact
    for c in ckpts:
        ck.verify_checkpoint(c)
    if times == 2 and last.startswith("seqmarl: aborted"):
        assert last.startswith(f"seqmarl: aborted by a second {signum.name}")
        return
    assert last.startswith(f"seqmarl: stopped by {signum.name} after iteration {done}")
    assert f"--resume {out}" in last
    assert ckpts[-1].name == f"iter_{done:06d}"
