"""A dependency's warnings never break the CLI's one-line errors nor interleave with training.

The warnings are forced from inside a run: a user task whose scoring makes transformers log a
warning and raises a Python FutureWarning, as a library deprecation would mid-run.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from seqmarl.run.depwarnings import DependencyWarnings

ROOT = Path(__file__).resolve().parents[1]

NOISY_MODULE = '''
import warnings

from transformers.utils import logging as tf_logging

from seqmarl import envs


class NoisyTask(envs.ArithmeticTask):
    """Arithmetic, whose scoring warns through transformers and Python (and can fail)."""

    def __init__(self, fail=False, **kw):
        super().__init__(**kw)
        self.fail = fail

    def score(self, prompt, response):
        tf_logging.get_logger("transformers.fake_module").warning(
            "`old_kwarg` is deprecated and will be removed in version 9.0"
        )
        warnings.warn("noisy_dependency_call is deprecated", FutureWarning, stacklevel=1)
        return "high" if self.fail else super().score(prompt, response)


envs.register_env("noisy-v0", NoisyTask, description="warns while scoring")
'''


def run_cli(tmp_path, *args, timeout=300):
    (tmp_path / "noisy_task.py").write_text(NOISY_MODULE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run(
        [sys.executable, "-m", "seqmarl", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
    )


TRAIN = [
    "train",
    "--import",
    "noisy_task",
    "env=noisy-v0",
    "model=embedded:tiny-llama",
    "batch_size=2",
    "iterations=2",
    "agents.generation.max_new_tokens=3",
]


def test_a_user_error_stays_one_line_when_a_dependency_warns(tmp_path):
    proc = run_cli(tmp_path, *TRAIN, "task.kwargs.fail=true", "train.progress=false")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("seqmarl: error: env 'noisy-v0'"), lines[0]
    assert "returned 'high'" in lines[0]


def test_a_run_logs_dependency_warnings_to_its_folder_and_says_so_once(tmp_path):
    proc = run_cli(tmp_path, *TRAIN, "train.progress=true", "--out", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr
    everything = proc.stdout + proc.stderr
    assert "deprecated" not in everything  # neither in the bar nor anywhere else
    log = (tmp_path / "run" / "warnings.log").read_text().splitlines()
    assert (
        "transformers.fake_module: `old_kwarg` is deprecated and will be removed in version 9.0"
        in log
    )
    assert "FutureWarning: noisy_dependency_call is deprecated" in log
    said = [ln for ln in proc.stderr.splitlines() if "warning" in ln and "dependencies" in ln]
    assert len(said) == 1 and said[0].endswith(str(tmp_path / "run" / "warnings.log")), said


def test_without_a_run_folder_each_distinct_warning_appears_once_at_the_end(capsys):
    import logging
    import warnings

    from transformers.utils import logging as tf_logging

    with DependencyWarnings() as deps:
        for _ in range(3):
            tf_logging.get_logger("transformers.x").warning("a library warning")
            warnings.warn_explicit("old api", FutureWarning, "lib.py", 1)
            logging.getLogger("peft.tuners").warning("a root-propagating warning")
        print("the command's own output")
        assert capsys.readouterr().err == ""  # nothing printed while it runs
    deps.report()
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "seqmarl: from a dependency: transformers.x: a library warning",
        "seqmarl: from a dependency: FutureWarning: old api",
        "seqmarl: from a dependency: peft.tuners: a root-propagating warning",
    ]
    assert len(deps.lines) == 9


def test_warnings_are_still_raised_and_handlers_come_back(tmp_path):
    import logging
    import warnings

    from transformers.utils import logging as tf_logging

    before = (logging.lastResort, warnings.showwarning, list(logging.getLogger().handlers))
    with DependencyWarnings(), warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FutureWarning):  # -W error / filterwarnings still see them
            warnings.warn("x", FutureWarning, stacklevel=1)
    after = (logging.lastResort, warnings.showwarning, list(logging.getLogger().handlers))
    assert after == before
    assert tf_logging.get_logger().propagate is False  # transformers prints for itself again


def test_the_log_file_is_never_written_through_a_link(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "warnings.log").symlink_to(outside)
    import warnings

    with DependencyWarnings() as deps:
        warnings.warn_explicit("old api", FutureWarning, "lib.py", 1)
        deps.attach(run)
    assert outside.read_text() == "keep\n"
    assert deps.path is None  # so the end of the command prints them instead
