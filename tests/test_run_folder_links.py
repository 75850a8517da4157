"""A run writes only inside its folder: outputs that are symbolic links are refused in one line."""

import os
import shutil

import pytest

from seqmarl.cli import main
from seqmarl.train.trainer import Trainer
from tests.test_faults import cfg_for


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A 2-iteration run with its checkpoints (copied per test)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    mp = pytest.MonkeyPatch()
    mp.setattr(Trainer, "_finish", lambda self: {})
    Trainer(cfg_for("iterations=2", "train.checkpoint_every=1"), out).fit()
    mp.undo()
    return out


@pytest.fixture
def outside(tmp_path):
    """Files outside the run that links point at, and a snapshot of their bytes."""
    victim = tmp_path / "outside"
    (victim / "plots").mkdir(parents=True)
    (victim / "summary.json").write_bytes(b"someone else's file\n")
    (victim / "plots" / "reward.png").write_bytes(b"someone else's picture")

    def snapshot():
        return {p.relative_to(victim): p.read_bytes() for p in victim.rglob("*") if p.is_file()}

    return victim, snapshot


def test_resume_refuses_a_linked_summary_and_plots_and_writes_nothing_outside(
    tmp_path, finished_run, outside, capsys
):
    run = shutil.copytree(finished_run, tmp_path / "run")
    victim, snapshot = outside
    os.symlink(victim / "summary.json", run / "summary.json")
    os.symlink(victim / "plots", run / "plots", target_is_directory=True)
    before = snapshot()
    assert main(["train", "--resume", str(run), "iterations=3", "train.progress=false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("seqmarl: error: "), err
    assert "are symbolic links" in err[0]
    assert f"{run / 'plots'} (to {victim / 'plots'})" in err[0]
    assert f"{run / 'summary.json'} (to {victim / 'summary.json'})" in err[0]
    assert snapshot() == before
    assert (run / "plots").is_symlink() and (run / "summary.json").is_symlink()  # left alone
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "iter_000001",
        "iter_000002",
    ]


@pytest.mark.parametrize(
    "link", ["summary.json", "metrics.jsonl", "config.yaml", "checkpoints/iter_000002/meta.json"]
)
def test_any_linked_output_is_named(tmp_path, finished_run, outside, link, capsys):
    run = shutil.copytree(finished_run, tmp_path / "run")
    victim, snapshot = outside
    (run / link).unlink(missing_ok=True)
    os.symlink(victim / "summary.json", run / link)
    before = snapshot()
    assert main(["train", "--resume", str(run), "iterations=3", "train.progress=false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and f"{run / link} (to {victim / 'summary.json'}) is a symbolic link" in err[0]
    ), err
    assert snapshot() == before


def test_eval_refuses_a_linked_eval_folder(tmp_path, finished_run, outside, capsys):
    run = shutil.copytree(finished_run, tmp_path / "run")
    victim, snapshot = outside
    os.symlink(victim, run / "eval", target_is_directory=True)
    before = snapshot()
    assert main(["eval", str(run), "--prompts", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{run / 'eval'} (to {victim}) is a symbolic link" in err[0], err
    assert snapshot() == before
    assert main(["eval", str(run), "--prompts", "2", "--out", str(tmp_path / "mine")]) == 0
    assert (tmp_path / "mine" / "eval.json").is_file()  # a folder the user names is theirs
