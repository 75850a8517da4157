"""A plain PettingZoo AEC text env (no TextTask) trained through the wrapper."""

import numpy as np
import pytest
from pettingzoo.test import api_test

from seqmarl import envs
from seqmarl.envs.registration import ENVS, register_pettingzoo
from seqmarl.errors import ConfigError
from tests.fake_games import DigitGame


@pytest.fixture(autouse=True)
def registered():
    spec = register_pettingzoo("digit-game-v0", DigitGame, overwrite=True)
    yield spec
    ENVS._items.pop("digit-game-v0", None)


def test_the_plain_env_itself_keeps_pettingzoos_contract():
    api_test(DigitGame(), num_cycles=20)


def test_roles_rewards_and_the_matrix_through_the_wrapper():
    env = envs.make("digit-game-v0", reward_matrix="cooperative")
    env.reset(options={"prompt": envs.Prompt("seed 3", meta={"seed": 3}),
                       "seat_order": ["llm_1", "llm_0"]})  # fmt: skip
    assert env.agent_selection == "llm_1"  # llm_1 plays the env's first role (alice)
    assert env.observe("llm_1")["text"].startswith("Topic ")
    env.step("7 apples")  # llm_1 earns 1; cooperative: both agents get 1
    assert env.rewards == {"llm_0": 1.0, "llm_1": 1.0}
    assert env.infos["llm_1"]["task_reward"] == 1.0 and env.infos["llm_0"]["task_reward"] == 0.0
    env.step("no digits")
    assert env.rewards == {"llm_0": 0.0, "llm_1": 0.0}
    with pytest.raises(ConfigError, match="has 2 agents; set num_agents=2"):
        envs.make("digit-game-v0", num_agents=3)


def test_a_plain_pettingzoo_env_trains_through_the_wrapper(tmp_path):
    from seqmarl.config import load_config
    from seqmarl.run.sinks import read_jsonl
    from seqmarl.train.trainer import Trainer

    cfg = load_config(
        None,
        [
            "model=embedded:tiny-llama",
            "env=digit-game-v0",
            "setting.reward_matrix=independent",
            "setting.exchange_every=1",
            "batch_size=2",
            "algo=rloo",
            "algo.params.group_size=2",
            "agents.generation.max_new_tokens=4",
            "iterations=3",
            "train.progress=false",
            "train.tensorboard=false",
            "train.sample_every=1",
        ],
    )
    trainer = Trainer(cfg, tmp_path)
    trainer.fit()
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["iteration"] for r in records] == [0, 1, 2]
    for r in records:
        for a in ("llm_0", "llm_1"):
            assert 0.0 <= r[f"agent/{a}/task_reward"] <= 2.0  # two moves, at most 1 each
            assert np.isfinite(r[f"agent/{a}/loss_policy"])
            assert r[f"agent/{a}/response_length"] > 0
    samples = read_jsonl(tmp_path / "samples.jsonl")
    turns = samples[0]["samples"][0]["turns"]
    assert [t["agent"] for t in turns] == ["llm_0", "llm_1", "llm_0", "llm_1"]
    assert [
        t["agent"] for t in read_jsonl(tmp_path / "samples.jsonl")[1]["samples"][0]["turns"]
    ] == ["llm_1", "llm_0", "llm_1", "llm_0"]  # fmt: skip  (roles exchanged every iteration)
