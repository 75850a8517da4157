"""A run folder someone else made runs no code: every module its config names waits for --import.

Each "evil" module writes a marker file next to itself when it is imported, so a test sees
whether any of its code ran. Commands run in process (``seqmarl.cli.main``) from a chosen
folder; each test uses its own module names, and ``sys.path`` and ``sys.modules`` are restored
after it.
"""

import hashlib
import sys
import textwrap

import pytest
import yaml

from seqmarl.cli import main
from seqmarl.config import load_config
from seqmarl.errors import SeqmarlError
from seqmarl.run.checkpoint import latest_checkpoint, load_checkpoint, read_meta, save_checkpoint
from seqmarl.train.trainer import Trainer

#: A module whose import leaves ``RAN_<name>`` beside it; it offers every kind of factory.
EVIL = """
    import pathlib
    pathlib.Path(__file__).with_name("RAN_" + __name__).write_text("code ran")

    def make(*args, **kwargs):
        pathlib.Path(__file__).with_name("CALLED_" + __name__).write_text("called")
        raise SystemExit("evil factory called")

    Algo = Task = make
"""

#: A config.yaml's fields as the run wrote them (a default run of the tiny model).
BASE = {"agents": {"model": "embedded:tiny-llama"}, "train": {"progress": False}}

#: Config field -> (how it names module MOD, what the error line says the field is).
FIELDS = {
    "imports": ({"imports": ["MOD"]}, "config imports"),
    "task.env": ({"task": {"env": "MOD:Task"}}, "env 'MOD:Task'"),
    "train.sinks": ({"train": {"sinks": ["MOD:make"]}}, "train.sinks"),
    "league.fixed": (
        {"league": {"opponents": ["llm_1"], "fixed": ["random", "MOD:make"]}},
        "league.fixed",
    ),
    "algo.name": ({"algo": {"name": "MOD:Algo"}}, "algo.name"),
    "algos.llm_0.name": ({"algos": {"llm_0": {"name": "MOD:Algo"}}}, "algos.llm_0.name"),
    "setting.name": ({"setting": {"name": "MOD:make"}}, "setting.name"),
}


@pytest.fixture(autouse=True)
def clean_imports(monkeypatch):
    """Each test's sys.path and imported modules go away with it."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith(("evil_", "snapshot")):
            del sys.modules[name]


def merge(base, extra):
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def write_module(folder, name, code=EVIL):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(code))
    return path


def make_run(folder, extra):
    """A run folder holding only a config.yaml (BASE with ``extra``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(merge(BASE, extra), sort_keys=False))
    return folder


def one_line(code, capsys):
    """The command's only stderr line (exit status 2, no traceback)."""
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def fill(obj, mod):
    return yaml.safe_load(yaml.safe_dump(obj).replace("MOD", mod))


@pytest.mark.parametrize("command", ["eval", "resume"])
@pytest.mark.parametrize("field", list(FIELDS))
def test_no_field_of_a_run_folder_config_imports_a_module_beside_it(
    field, command, tmp_path, monkeypatch, capsys
):
    """The folder a download unpacks into (the current folder) holds the module: not run."""
    mod = f"evil_{field.replace('.', '_')}_{command}"
    extra, what = (fill(x, mod) for x in FIELDS[field])
    download = tmp_path / "download"
    write_module(download, mod)
    make_run(download / "run", extra)
    monkeypatch.chdir(download)
    argv = ["eval", "run", "--prompts", "1"] if command == "eval" else ["train", "--resume", "run"]
    line = one_line(main(argv), capsys)
    assert not (download / f"RAN_{mod}").exists(), "the module's code ran"
    assert line.startswith("seqmarl: error: ")
    assert what in line and f"names module {mod!r}" in line, line
    assert f"pass --import {mod}" in line and "run/config.yaml names" in line


@pytest.mark.parametrize("field", ["league.fixed", "algo.name", "setting.name"])
def test_cd_run_and_eval_dot_imports_nothing_from_the_folder(field, tmp_path, monkeypatch, capsys):
    """``cd RUN && seqmarl eval .`` with the module shipped inside the run folder."""
    mod = f"evil_inside_{field.replace('.', '_')}"
    extra, what = (fill(x, mod) for x in FIELDS[field])
    run = make_run(tmp_path / "run", extra)
    write_module(run, mod)
    monkeypatch.chdir(run)
    line = one_line(main(["eval", ".", "--prompts", "1"]), capsys)
    assert not (run / f"RAN_{mod}").exists(), "the module shipped in the run folder ran"
    assert what in line and f"pass --import {mod}" in line, line
    assert "run from the folder that holds it" not in line


def test_league_fixed_from_elsewhere_does_not_advise_running_from_the_run_folder(
    tmp_path, monkeypatch, capsys
):
    mod = "evil_fixed_elsewhere"
    run = make_run(tmp_path / "run", fill(FIELDS["league.fixed"][0], mod))
    write_module(run, mod)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    line = one_line(main(["eval", str(run), "--prompts", "1"]), capsys)
    assert not (run / f"RAN_{mod}").exists()
    assert "league.fixed" in line and f"pass --import {mod}" in line
    assert "run from the folder that holds it" not in line, line


def test_league_fixed_snapshot_imports_no_module_named_snapshot(tmp_path, monkeypatch, capsys):
    run = make_run(tmp_path / "run", {"league": {"opponents": ["llm_1"], "fixed": ["snapshot:0"]}})
    write_module(run, "snapshot")
    monkeypatch.chdir(run)
    line = one_line(main(["eval", ".", "--prompts", "1"]), capsys)
    assert not (run / "RAN_snapshot").exists(), "a module named snapshot was imported"
    assert "league.fixed" in line and "league.snapshot_every" in line, line
    # the same from a config of one's own: one line, nothing imported
    with pytest.raises(SeqmarlError, match="league.fixed.*snapshot of the learner"):
        load_config(None, ["league.opponents=[llm_1]", "league.fixed=[snapshot:0]"])
    assert not (run / "RAN_snapshot").exists()


def test_a_recorded_file_outside_the_folder_with_its_true_sha256_waits_for_import(
    tmp_path, monkeypatch, capsys
):
    mod = "evil_recorded"
    path = write_module(tmp_path / "outside", mod)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    run = make_run(
        tmp_path / "run",
        {"imports": [mod], "import_files": {mod: {"path": str(path), "sha256": sha}}},
    )
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    for argv in (["eval", str(run), "--prompts", "1"], ["train", "--resume", str(run)]):
        line = one_line(main(argv), capsys)
        assert not (tmp_path / "outside" / f"RAN_{mod}").exists(), "the recorded file ran"
        assert f"names module {mod!r} (recorded at {path})" in line, line
        assert "was not imported" in line and f"pass --import {mod}" in line
    # asked for on the command line, it is imported from its recorded file
    code = main(["eval", str(run), "--prompts", "1", "--import", mod])
    err = capsys.readouterr().err
    assert (tmp_path / "outside" / f"RAN_{mod}").exists(), err
    assert code == 2 and "no complete checkpoint" in err  # the run has none: the next step


def test_a_users_own_config_still_names_module_attr(tmp_path, monkeypatch):
    """A config given on the command line (no run folder) imports what it names."""
    mod = "evil_own_config"
    write_module(tmp_path, mod)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SeqmarlError, match="has no attribute"):
        load_config(None, [f"algo.name={mod}:Nothing"])
    assert (tmp_path / f"RAN_{mod}").exists()


# ------------------------------------------------------------------ a league snapshot's key
@pytest.fixture
def league_run(tmp_path):
    """A 2-iteration league run whose checkpoint's snapshot key is a path, not an iteration."""
    from seqmarl.envs.registration import ENVS, register_pettingzoo
    from tests.fake_games import DigitDuel
    from tests.test_league import RUN

    register_pettingzoo("digit-duel-v0", DigitDuel, overwrite=True)
    cfg = load_config(None, [*RUN, "league.snapshot_every=1", "iterations=2"])
    out = tmp_path / "run"
    Trainer(cfg, out).fit()
    ckpt = latest_checkpoint(out / "checkpoints")
    state = load_checkpoint(ckpt)
    snaps = state["league"]["snapshots"]
    snaps["../../../outside"] = snaps.pop(next(iter(snaps)))
    info = {k: v for k, v in read_meta(ckpt).items() if k in ("run", "world_size")}
    save_checkpoint(out / "checkpoints", state["iteration"], state, keep=10, info=info)
    yield out
    ENVS._items.pop("digit-duel-v0", None)


@pytest.mark.parametrize("command", ["round-robin", "resume"])
def test_a_snapshot_key_that_is_no_iteration_is_one_line(league_run, command, capsys):
    capsys.readouterr()
    argv = ["eval", str(league_run), "--round-robin", "--prompts", "2"]
    if command == "resume":
        argv = ["train", "--resume", str(league_run), "iterations=3"]
    line = one_line(main(argv), capsys)
    assert "league snapshot key '../../../outside' is not an iteration" in line, line
    assert not (league_run / "eval" / "ratings.png").exists()


def test_a_run_folder_around_the_python_environment_keeps_the_environment(tmp_path, monkeypatch):
    """``--out .`` in a project that holds its venv: the venv stays importable, the rest not."""
    from seqmarl.run import plugins

    site = tmp_path / ".venv" / "lib" / "site-packages"
    monkeypatch.setattr(sys, "prefix", str(tmp_path / ".venv"))
    monkeypatch.setattr(sys, "path", [str(tmp_path), str(tmp_path / "src"), str(site), "/x"])
    with plugins.outside(tmp_path):
        assert sys.path == [str(site), "/x"]
    assert sys.path == [str(tmp_path), str(tmp_path / "src"), str(site), "/x"]
