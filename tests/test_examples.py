"""Every example runs at tiny size (tiny in-process model, 2 iterations)."""

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from seqmarl import envs
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


def test_rounds_game_example(tmp_path):
    """examples/rounds_game.py: a multi-round game in under 30 lines of code, trained."""
    path = EXAMPLES / "rounds_game.py"
    proc = subprocess.run(
        [sys.executable, str(path), *TINY, f"train.out_dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "llm_1: mean return per turn" in proc.stdout
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert len(records) == 2 and records[0]["agent/llm_0/adv_score"] < 0  # random replies lose
    code = path.read_text().split('if __name__ == "__main__":')[0]
    assert len([line for line in code.splitlines() if line.strip()]) < 30


def test_rounds_game_rules_by_hand():
    namespace = runpy.run_path(str(EXAMPLES / "rounds_game.py"))  # registers bigger-number-v0
    try:
        env = envs.make("bigger-number-v0", num_agents=2, rounds=2, reward_matrix="independent")
    finally:
        envs.ENVS._items.pop("bigger-number-v0")
    env.reset(options={"prompt": envs.Prompt("Say a number bigger than 5.", reference="5")})
    got = []
    for reply in ["7", "6", "no", "100"]:  # beats 5; not above 7; no number; beats 7
        env.step(reply)
        got.append(sum(env.rewards.values()))
    assert got == [1.0, -1.0, -1.0, 1.0]
    assert "llm_0: 7\nllm_1: 6\nllm_0: no\nllm_1:" in env.observe("llm_1")["text"]
    assert namespace["number"]("x 12 y 3") == 12
    # PettingZoo's api/seed tests and the text checks (check_env's own checks play one round)
    assert envs.check_env(envs.SequentialTextEnv(env.task, num_agents=2)).passed
