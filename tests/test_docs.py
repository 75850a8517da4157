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


def test_vllm_config_example_is_a_valid_config(tmp_path):
    from seqmarl.config import load_config

    text = (DOCS / "agents-and-algorithms.md").read_text()
    section = text.split("### Generation on vLLM", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    (tmp_path / "run.yaml").write_text(block)
    cfg = load_config(tmp_path / "run.yaml")
    assert cfg.agents.generator == "vllm" and cfg.agents.vllm.logprobs == "recompute"
    assert cfg.agents.vllm.cpu_kv_cache_gb == 1


def test_metric_sinks_example_is_a_valid_config(tmp_path):
    from seqmarl.config import load_config

    text = (DOCS / "training.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text.split("## Metric sinks", 1)[1], re.S).group(1)
    (tmp_path / "run.yaml").write_text(block)
    assert load_config(tmp_path / "run.yaml").train.sinks == ["jsonl", "mlflow"]
