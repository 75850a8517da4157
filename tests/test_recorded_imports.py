"""A run's user modules: recorded with path and SHA-256, imported again only when the command
line names them (--import), then found from any folder, never taken from the run folder itself
unless asked for there, and a changed module is one warning line.

Like ``tests/test_cli_plugins.py``, each command runs in a fresh ``python -m seqmarl`` process
(with a timeout) from a chosen folder.
"""

import hashlib
import shutil

import pytest
import yaml

from seqmarl.run.sinks import read_jsonl
from tests.test_cli_plugins import MY_TASKS, TINY, one_error_line, seqmarl, write

#: A module a downloaded run folder ships: importing it leaves a marker, then works as MY_TASKS.
SHIPPED = (
    """
    import pathlib
    pathlib.Path(__file__).with_name("IMPORTED").write_text("ran")
"""
    + MY_TASKS
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``proj/my_tasks.py`` and a 2-iteration run ``proj/run`` trained with --import my_tasks."""
    proj = tmp_path_factory.mktemp("proj")
    write(proj, "my_tasks.py", MY_TASKS)
    proc = seqmarl(proj, "train", "--import", "my_tasks", "env=rhyme-v0", *TINY, "--out", "run")
    assert proc.returncode == 0, proc.stderr
    return proj


def saved(run):
    return yaml.safe_load((run / "config.yaml").read_text())


def test_a_run_records_each_import_with_its_path_and_sha256(trained):
    cfg = saved(trained / "run")
    assert cfg["imports"] == ["my_tasks"]
    module = trained / "my_tasks.py"
    assert cfg["import_files"] == {
        "my_tasks": {
            "path": str(module),
            "sha256": hashlib.sha256(module.read_bytes()).hexdigest(),
        }
    }


def test_resume_and_eval_with_import_work_from_another_folder(trained, tmp_path):
    run = shutil.copytree(trained / "run", tmp_path / "run")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()  # my_tasks is not importable from here: the recorded path is used
    line = one_error_line(seqmarl(elsewhere, "eval", str(run), "--prompts", "2"))
    assert "names module 'my_tasks'" in line and "pass --import my_tasks" in line
    proc = seqmarl(elsewhere, "eval", str(run), "--prompts", "2", "--import", "my_tasks")
    assert proc.returncode == 0, proc.stderr
    assert "rhymes with cat" in proc.stdout and "warning" not in proc.stderr
    proc = seqmarl(elsewhere, "train", "--resume", str(run), "iterations=3", "--import", "my_tasks")
    assert proc.returncode == 0, proc.stderr
    assert [r["iteration"] for r in read_jsonl(run / "metrics.jsonl")] == [0, 1, 2]


def test_a_changed_module_is_one_warning_line(trained, tmp_path):
    proj = shutil.copytree(trained, tmp_path / "proj")
    run = proj / "run"
    cfg = saved(run)
    cfg["import_files"]["my_tasks"]["path"] = str(proj / "my_tasks.py")
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    write(proj, "my_tasks.py", MY_TASKS.replace("rhymes with cat", "rhymes with dog"))
    proc = seqmarl(proj, "eval", "run", "--prompts", "2", "--import", "my_tasks")
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if "warning" in ln]
    assert len(warnings) == 1, proc.stderr
    assert "module 'my_tasks'" in warnings[0]
    assert "differs from the one the run recorded" in warnings[0]
    assert "rhymes with dog" in proc.stdout  # the changed module is what ran, as warned


@pytest.fixture
def downloaded(trained, tmp_path):
    """The run as someone else's download: recorded path absent here, a .py shipped inside."""
    run = shutil.copytree(trained / "run", tmp_path / "download" / "run")
    cfg = saved(run)
    cfg["import_files"]["my_tasks"]["path"] = "/home/someone/else/my_tasks.py"
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    write(run, "my_tasks.py", SHIPPED)
    return run


@pytest.mark.parametrize("command", ["eval", "resume"])
def test_a_module_shipped_in_the_run_folder_is_not_imported(downloaded, command):
    args = ["eval", ".", "--prompts", "2"] if command == "eval" else ["train", "--resume", "."]
    line = one_error_line(seqmarl(downloaded, *args))
    assert "names module 'my_tasks'" in line and "was not imported" in line
    assert "pass --import my_tasks" in line
    assert not (downloaded / "IMPORTED").exists()
    # asked for from another folder: still not taken from inside the run folder
    args = ["eval", "run", "--prompts", "2"] if command == "eval" else ["train", "--resume", "run"]
    line = one_error_line(seqmarl(downloaded.parent, *args, "--import", "my_tasks"))
    assert "could not import module 'my_tasks'" in line and "is not searched" in line
    assert "nor at its recorded path /home/someone/else/my_tasks.py" in line
    assert not (downloaded / "IMPORTED").exists()


def test_a_recorded_path_inside_the_run_folder_is_refused(downloaded):
    cfg = saved(downloaded)
    cfg["import_files"]["my_tasks"]["path"] = str(downloaded / "my_tasks.py")
    (downloaded / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    argv = ["eval", "run", "--prompts", "2", "--import", "my_tasks"]
    line = one_error_line(seqmarl(downloaded.parent, *argv))
    assert "except from the run folder itself" in line and "--import my_tasks" in line
    assert not (downloaded / "IMPORTED").exists()


def test_asking_for_the_shipped_module_imports_it(downloaded):
    proc = seqmarl(downloaded, "eval", ".", "--prompts", "2", "--import", "my_tasks")
    assert proc.returncode == 0, proc.stderr
    assert (downloaded / "IMPORTED").exists()
    warnings = [ln for ln in proc.stderr.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "differs from the one the run recorded" in warnings[0]
