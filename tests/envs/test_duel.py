"""Joint scoring: the zero-sum duel judges (a ranking over the base task's score)."""

import numpy as np
import pytest

from seqmarl import envs
from seqmarl.envs.tasks.duel import rank_rewards


def test_rank_rewards_by_hand():
    got = rank_rewards(np.array([[1.0, 2.0], [3.0, 3.0], [0.5, 0.1]]))
    assert got.tolist() == [[-1.0, 1.0], [0.0, 0.0], [1.0, -1.0]]
    got = rank_rewards(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 1.0]]))
    assert got.tolist() == [[-1.0, 0.0, 1.0], [0.5, 0.5, -1.0]]
    assert rank_rewards(np.array([[0.30, 0.31]]), tie=0.05).tolist() == [[0.0, 0.0]]
    assert rank_rewards(np.array([[7.0]])).tolist() == [[0.0]]  # nobody to beat


@pytest.mark.parametrize("seats", [["llm_0", "llm_1", "llm_2"], ["llm_2", "llm_0", "llm_1"]])
def test_joint_scores_reach_the_right_agent_whatever_the_seat_order(seats):
    env = envs.make("sentiment-duel-v0", num_agents=3, reward_matrix="independent")
    env.reset(seed=3, options={"seat_order": seats})
    answers = {
        "llm_0": " it was wonderful, great and lovely",
        "llm_1": " it was terrible and awful",
        "llm_2": " it was a film",
    }
    for agent in env.agent_iter():
        _, _, term, trunc, _ = env.last()
        env.step(None if term or trunc else answers[agent])
        if all(env.terminations.values()):
            break
    got = {a: env.infos[a]["task_reward"] for a in env.possible_agents}
    assert got == {"llm_0": 1.0, "llm_1": -1.0, "llm_2": 0.0}
    assert sum(got.values()) == 0.0


def test_every_episode_of_a_rollout_sums_to_zero(make_pool):
    from seqmarl.method.settings import make_setting
    from seqmarl.train.rollout import play

    setting = make_setting("cory", num_agents=3, reward_matrix="cooperative")
    env = envs.make("sentiment-duel-v0", setting=setting)
    pool = make_pool(agent_ids=setting.agent_ids, max_new_tokens=6)
    prompts = env.task.sample_prompts(6, np.random.default_rng(0))
    import torch

    roll = play(env.as_game(), pool.agents, prompts, setting.seat_agents(0), copies=2,
                generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert roll.task_rewards.shape == (12, 3)
    assert np.allclose(roll.task_rewards.sum(axis=1), 0.0)  # zero-sum in every episode
    assert set(np.unique(roll.task_rewards)) <= {-1.0, -0.5, 0.0, 0.5, 1.0}
    # cooperative C on a zero-sum game: every trained reward is the (zero) sum
    assert np.allclose(roll.trained_rewards, 0.0)


def test_the_duel_envs_are_listed():
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "seqmarl", "list", "--json"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert {"imdb-duel-v0", "sentiment-duel-v0"} <= set(json.loads(out)["envs"])


def test_imdb_duel_episodes_sum_to_zero():
    from tests.conftest import env_test_kwargs

    env = envs.make("imdb-duel-v0", num_agents=3, **env_test_kwargs("imdb-duel-v0"))
    for seed in range(5):
        env.reset(seed=seed)
        answers = iter([" a wonderful, moving film", " dull and awful", " it was a film"])
        for _agent in env.agent_iter():
            _, _, term, trunc, _ = env.last()
            env.step(None if term or trunc else next(answers))
        total = sum(env.task_rewards.values())
        assert total == 0.0 and len(set(env.task_rewards.values())) > 1
