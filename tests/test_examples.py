"""Every example runs at tiny size (tiny in-process model, 2 iterations)."""

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from seqmarl import envs
from seqmarl.config import load_config
from seqmarl.run.sinks import read_jsonl
from seqmarl.train.trainer import Trainer
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
    cfg = load_config(path)
    env = cfg.task.env
    for agent in cfg.agents.per_agent:  # a team keeps two bases: a tiny GPT-2 beside the llama
        out.append(f"agents.per_agent.{agent}.model=embedded:tiny-gpt2")
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


WORD_DUEL = EXAMPLES / "word_duel_env.py"


@pytest.fixture
def word_duel():
    """examples/word_duel_env.py run as a script: it registers word-duel-v0."""
    namespace = runpy.run_path(str(WORD_DUEL))
    yield namespace["WordDuelEnv"]
    envs.ENVS._items.pop("word-duel-v0", None)


def test_the_word_duel_template_passes_check_env_from_the_command_line():
    """As its docstring says: from examples/, with --import."""
    proc = subprocess.run(
        [sys.executable, "-m", "seqmarl", "check-env", "--import", "word_duel_env", "word-duel-v0"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=EXAMPLES,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "3/3: all checks passed" in proc.stdout


def test_the_word_duel_templates_rules_and_bookkeeping_by_hand(word_duel):
    from pettingzoo.test import api_test, seed_test

    api_test(word_duel(), num_cycles=50)
    seed_test(word_duel, num_cycles=50)
    env = word_duel()
    env.reset(seed=3)
    letter = env.letter
    # player_0: two new words and a number (2 points); player_1: a new word, a repeat, nothing
    moves = [f"{letter}aa", f"{letter}bb.", "42", f"{letter}aa", f"{letter}cc", ""]
    for agent, move in zip(["player_0", "player_1"] * 3, moves, strict=True):
        _, reward, term, trunc, _ = env.last()
        assert env.agent_selection == agent and not (term or trunc) and reward == 0.0
        env.step(move)
    assert env.points == {"player_0": 2, "player_1": 1}
    results = {}
    for agent in env.agent_iter():  # each player sees the result at its dead step
        _, reward, term, _, _ = env.last()
        assert term
        results[agent] = reward
        env.step(None)
    assert results == {"player_0": 1.0, "player_1": -1.0}
    assert env.agents == []


def test_the_docs_show_the_whole_word_duel_template():
    page = (ROOT / "docs" / "environments.md").read_text()
    assert "```python\n" + WORD_DUEL.read_text() + "```\n" in page
    code = [ln for ln in WORD_DUEL.read_text().split('"""')[2].splitlines() if ln.strip()]
    assert len(code) <= 55  # about 50 lines of code after the docstring, imports included


def test_the_word_duel_template_trains_as_a_zero_sum_game(word_duel, tmp_path):
    from seqmarl.errors import ConfigError

    with pytest.raises(ConfigError, match="zero-sum"):  # the cooperative default is refused
        load_config(None, ["env=word-duel-v0", *TINY])
    cfg = load_config(None, ["env=word-duel-v0", "setting.reward_matrix=competitive", *TINY])
    Trainer(cfg, tmp_path).fit()
    assert len(read_jsonl(tmp_path / "metrics.jsonl")) == 2
