"""The code in docs/ runs as written."""

import re
from pathlib import Path

import pytest

from seqmarl import envs

DOCS = Path(__file__).resolve().parents[1] / "docs"


def python_block_after(path: Path, heading: str) -> str:
    text = path.read_text()
    section = text.split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def clean_registry():
    before = set(envs.ENVS.names())
    yield
    for name in set(envs.ENVS.names()) - before:
        envs.ENVS._items.pop(name)


def test_write_your_own_task_example_runs(clean_registry, capsys):
    code = python_block_after(DOCS / "environments.md", "## Write your own task")
    assert len(code.strip().splitlines()) <= 25
    exec(compile(code, "docs/environments.md", "exec"), {})
    assert "7/7: all checks passed" in capsys.readouterr().out


def test_settings_example_runs():
    exec(compile(python_block_after(DOCS / "environments.md", "## Settings"), "docs", "exec"), {})
