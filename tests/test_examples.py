"""Every example runs at tiny size (tiny in-process model, 2 iterations)."""

import subprocess
import sys
from pathlib import Path

import pytest

from seqmarl.config import load_config
from seqmarl.sinks import read_jsonl
from seqmarl.trainer import Trainer
from tests.conftest import require_shared

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TINY = [
    "model=embedded:tiny-llama",
    "iterations=2",
    "batch_size=2",
    "agents.generation.max_new_tokens=4",
    "train.progress=false",
]


def tiny_overrides(path):
    """Shrink an example; hub data sources are swapped for the offline copies in ../shared."""
    out = [*TINY, "agents.mode=shared", "agents.device=cpu", "algo.params.minibatch_size=2"]
    env = load_config(path).task.env
    if env == "imdb-sentiment-v0":
        out += [
            f"task.kwargs.source={require_shared('data', 'imdb')}",
            f"task.kwargs.reward_model={require_shared('models', 'imdb-sentiment-bert-tiny-scratch')}",
            "task.kwargs.limit=200",
        ]
    if env == "gsm8k-v0":
        out += [f"task.kwargs.source={require_shared('data', 'gsm8k')}", "task.kwargs.limit=50"]
    return out


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_yaml_example_trains_at_tiny_size(path, tmp_path):
    cfg = load_config(path, tiny_overrides(path))
    Trainer(cfg, tmp_path).fit()
    assert len(read_jsonl(tmp_path / "metrics.jsonl")) == 2


def test_custom_task_example(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "custom_task.py"), *TINY, f"train.out_dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "llm_0" in proc.stdout and (tmp_path / "metrics.jsonl").exists()
    code = (EXAMPLES / "custom_task.py").read_text().split('if __name__ == "__main__":')[0]
    assert len(code.strip().splitlines()) < 50
