"""A checkpoint is data: a ``state.pt`` built to run code runs nothing and is one line.

The poisoned ``state.pt`` holds an object whose unpickling would create a marker file
(``builtins.open(marker, "w")``), and its ``meta.json`` carries the matching SHA-256 and size,
as an attacker who hands over a run folder would write it.
"""

import hashlib
import io
import json
import shutil

import pytest
import torch

import seqmarl.run.checkpoint as ck
from seqmarl.cli import main
from seqmarl.train.trainer import Trainer
from tests.test_faults import cfg_for


class _Payload:
    """Unpickling this opens (creates) ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def poison(ckpt, marker):
    """Replace ``ckpt``'s state.pt by a payload and re-sign its meta.json."""
    buf = io.BytesIO()
    torch.save({"iteration": _Payload(marker), "learners": {}}, buf)
    data = buf.getvalue()
    (ckpt / "state.pt").write_bytes(data)
    meta = json.loads((ckpt / "meta.json").read_text())
    meta["files"]["state.pt"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (ckpt / "meta.json").write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A 3-iteration run with checkpoints 2 and 3 (copied per test)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    mp = pytest.MonkeyPatch()
    mp.setattr(Trainer, "_finish", lambda self: {})
    Trainer(cfg_for("iterations=3", "train.checkpoint_every=1"), out).fit()
    mp.undo()
    return out


@pytest.fixture
def run(tmp_path, finished_run):
    return shutil.copytree(finished_run, tmp_path / "run")


def test_the_payload_would_run_under_a_plain_unpickle(tmp_path):
    """The test's poison is real: ``weights_only=False`` creates the marker."""
    ckpt = tmp_path / "iter_000001"
    ckpt.mkdir()
    (ckpt / "meta.json").write_text(json.dumps({"files": {}}))
    marker = tmp_path / "ran"
    poison(ckpt, marker)
    torch.load(ckpt / "state.pt", weights_only=False)
    assert marker.exists()


def test_a_poisoned_checkpoint_runs_nothing_and_is_left_in_place(run, tmp_path, caplog):
    marker = tmp_path / "ran"
    poison(run / "checkpoints" / "iter_000003", marker)
    with caplog.at_level("WARNING", logger="seqmarl"):
        path, state = ck.load_latest(run / "checkpoints")
    assert not marker.exists()
    assert path.name == "iter_000002" and state["iteration"] == 2  # the usual fallback
    assert (run / "checkpoints" / "iter_000003").is_dir()  # intact bytes: not moved aside
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "iter_000003 does not load here" in line and "weights_only=True" in line
    assert "GLOBAL io.open" in line and "\n" not in line


def test_train_resume_of_a_poisoned_run_is_one_line_exit_2(run, tmp_path, capsys):
    marker = tmp_path / "ran"
    for name in ("iter_000002", "iter_000003"):
        poison(run / "checkpoints" / name, marker)
    assert main(["train", "--resume", str(run)]) == 2
    assert not marker.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("seqmarl: error: --resume: no usable checkpoint under")
    assert "iter_000003 (does not load here)" in err[-1]
    assert "Traceback" not in "\n".join(err)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "iter_000002",
        "iter_000003",
    ]


def test_train_resume_falls_back_past_a_poisoned_newest_checkpoint(run, tmp_path, capsys):
    marker = tmp_path / "ran"
    poison(run / "checkpoints" / "iter_000003", marker)
    assert main(["train", "--resume", str(run), "train.progress=false"]) == 0
    assert not marker.exists()
    out, err = capsys.readouterr()
    assert "resuming from" in out and "iter_000002" in out
    warnings = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "iter_000003 does not load here" in warnings[0]


def test_eval_of_a_poisoned_run_is_one_line_exit_2(run, tmp_path, capsys):
    marker = tmp_path / "ran"
    for name in ("iter_000002", "iter_000003"):
        poison(run / "checkpoints" / name, marker)
    assert main(["eval", str(run), "--prompts", "2"]) == 2
    assert not marker.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("seqmarl: error: eval: no usable checkpoint under")
    assert "Traceback" not in "\n".join(err)
