"""Ctrl-C while the command starts (Python loading torch and transformers) is one line, 130."""

import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seqmarl.cli import main

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
STOPPED_STARTING = "seqmarl: SIGINT: stopped while starting; nothing was run"


def test_importing_the_command_line_loads_no_heavy_library():
    """The libraries load inside the command's try block, where a Ctrl-C is handled."""
    code = (
        "import sys, seqmarl.cli\n"
        "print(sorted(m for m in ('torch', 'transformers', 'pydantic') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


class _Interrupting:
    """A meta-path finder: importing ``name`` is interrupted, as by a Ctrl-C."""

    def __init__(self, name):
        self.name = name

    def find_spec(self, fullname, path=None, target=None):
        if fullname == self.name:
            raise KeyboardInterrupt
        return None


def test_the_script_entry_point_catches_a_ctrl_c_while_importing(monkeypatch, capsys):
    entry = importlib.import_module("seqmarl.__main__")  # the console script's module
    monkeypatch.delitem(sys.modules, "seqmarl.cli")
    monkeypatch.setattr(sys, "meta_path", [_Interrupting("seqmarl.cli"), *sys.meta_path])
    try:
        code = entry.run()
    except KeyboardInterrupt:
        pytest.fail("the KeyboardInterrupt escaped the entry point")
    assert code == 130
    assert capsys.readouterr().err.splitlines() == [STOPPED_STARTING]


def test_a_ctrl_c_before_the_command_runs_is_one_line(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr("seqmarl.cli.build_parser", interrupted)
    try:
        code = main(["list"])
    except KeyboardInterrupt:
        pytest.fail("the KeyboardInterrupt escaped main")
    assert code == 130
    assert capsys.readouterr().err.splitlines() == [STOPPED_STARTING]


def test_sigint_while_the_libraries_load_is_one_line_and_status_130(tmp_path):
    """As the installed ``seqmarl`` script starts it: import the entry point, call it."""
    script = (
        "import sys; print('ready', file=sys.stderr, flush=True)\n"
        "from seqmarl.__main__ import run\n"
        "sys.exit(run())"
    )
    args = ["train", "model=embedded:tiny-llama", "iterations=2", "--out", str(tmp_path / "r")]
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal does
    )
    try:
        assert proc.stderr.readline() == "ready\n"
        time.sleep(1.0)  # Python is loading seqmarl, torch and transformers (several seconds)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    # 130; or death by SIGINT, which a shell reports as 130 too (Python does that when a
    # library's C code saw the interrupt on its way out)
    assert proc.returncode in (130, -signal.SIGINT), (proc.returncode, err)
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("seqmarl: SIGINT: stopped"), err
    assert not (tmp_path / "r" / "config.yaml").exists()
