"""Multi-round episodes: observations over the transcript, per-turn credit, training rows."""

import numpy as np
import pytest
import torch

from seqmarl import envs
from seqmarl.agents.base import Turn
from seqmarl.envs.task import Prompt, TextTask
from seqmarl.train.rollout import play


class YesWin(TextTask):
    """Turn reward 1 for a "yes"; final task reward 1 for a last answer "win"."""

    def sample_prompts(self, n, rng=None):
        return [Prompt(f"Game {i}:") for i in range(n)]

    def score(self, prompt, response):
        return 1.0 if response == "win" else 0.0

    def turn_reward(self, episode, turn):
        return 1.0 if "yes" in turn.response else 0.0


class Scripted:
    """A real tiny policy's completions with scripted texts (what the env sees)."""

    def __init__(self, agent, lines):
        self.agent, self.lines, self.calls = agent, lines, 0
        self.tokenizer = agent.tokenizer

    def respond(self, prompts, **kw):
        comp = self.agent.sample(prompts, **kw)
        comp.texts = [self.lines[self.calls]] * len(prompts)
        self.calls += 1
        return Turn(comp.texts, comp)


# llm_0 says yes, then win; llm_1 says no, then yes (turn rewards 1, 0, 0, 1; finals 1, 0)
EXPECTED = {  # returns per agent, rows round-major, gamma 0.5
    "independent": {"llm_0": [1.5, 1.0], "llm_1": [0.5, 1.0]},
    # shared: a turn reward reaches every agent's latest turn; llm_0's first "yes" comes
    # before llm_1 has acted, so it is not credited to llm_1
    "cooperative": {"llm_0": [2.0, 2.0], "llm_1": [1.0, 2.0]},
}


@pytest.mark.parametrize("matrix", list(EXPECTED))
def test_reward_to_go_per_turn_by_hand(make_pool, matrix):
    pool = make_pool(max_new_tokens=3)
    env = envs.SequentialTextEnv(YesWin(), num_agents=2, rounds=2, reward_matrix=matrix)
    agents = {
        "llm_0": Scripted(pool["llm_0"], ["yes", "win"]),
        "llm_1": Scripted(pool["llm_1"], ["no", "yes"]),
    }
    roll = play(env.as_game(), agents, [Prompt("Game:")], ["llm_0", "llm_1"], gamma=0.5)
    for agent, want in EXPECTED[matrix].items():
        assert roll.returns[agent].tolist() == want
        assert len(roll.completions[agent]) == 2  # one training row per turn
    assert roll.task_rewards.tolist() == [[1.0, 0.0]]
    assert [t.round for t in env.episode.turns] == [0, 0, 1, 1]
    assert roll.turn_groups["llm_0"].tolist() == [0, 1]  # prompt 0, its turns 0 and 1


def test_later_rounds_see_the_transcript_and_long_ones_drop_the_oldest_turns():
    task = envs.make("arithmetic-v0").task
    env = envs.SequentialTextEnv(task, num_agents=2, rounds=3, max_observation_chars=120)
    env.reset(seed=0)
    seen = []
    for i, _ in enumerate(env.agent_iter()):
        obs, _, term, trunc, _ = env.last()
        if term or trunc:
            env.step(None)
            continue
        seen.append(obs["text"])
        env.step(f"answer number {i}")
    assert "answer number 0" in seen[2]  # round 1 sees round 0
    assert all(len(s) <= 120 for s in seen)
    assert "answer number 0" not in seen[5] and "answer number 4" in seen[5]  # oldest dropped
    question = env.prompt.text.split("\n")[0]
    assert seen[5].startswith(question)  # the prompt always stays


def test_multi_round_training_runs_with_group_algorithms(tmp_path):
    from seqmarl.config import load_config
    from seqmarl.run.sinks import read_jsonl
    from seqmarl.train.trainer import Trainer

    cfg = load_config(
        None,
        [
            "model=embedded:tiny-llama",
            "env=arithmetic-v0",
            "task.rounds=2",
            "batch_size=2",
            "algo=rloo",
            "algo.params.group_size=2",
            "agents.generation.max_new_tokens=4",
            "iterations=2",
            "train.progress=false",
            "train.tensorboard=false",
        ],
    )
    Trainer(cfg, tmp_path).fit()
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["iteration"] for r in records] == [0, 1]
    assert all(np.isfinite(r["agent/llm_0/loss_policy"]) for r in records)


def test_returns_equal_trained_rewards_with_one_round(make_pool):
    pool = make_pool(max_new_tokens=3)
    env = envs.make("arithmetic-v0", num_agents=2)
    prompts = env.task.sample_prompts(2, np.random.default_rng(0))
    roll = play(env.as_game(), pool.agents, prompts, ["llm_1", "llm_0"], copies=2,
                generator=torch.Generator().manual_seed(0))  # fmt: skip
    for i, a in enumerate(["llm_0", "llm_1"]):
        assert torch.equal(roll.returns[a], torch.as_tensor(roll.trained_rewards[:, i]))
        assert torch.equal(roll.turn_groups[a], roll.group_ids * 1024)  # prompt * MAX_TURNS
