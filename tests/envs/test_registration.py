"""envs.make with a setting name, and the one public name of the matrix: reward_matrix."""

import pytest

from seqmarl import envs
from seqmarl.config import load_config
from seqmarl.errors import ConfigError, UnknownNameError
from seqmarl.method.settings import make_setting


def test_make_accepts_a_registered_setting_name():
    env = envs.make("arithmetic-v0", setting="cory", num_agents=3)
    assert env.max_num_agents == 3 and env.knowledge_transfer
    assert env.coef.tolist() == [[1.0] * 3] * 3
    env = envs.make(
        "arithmetic-v0", setting="cory-no-transfer", num_agents=2, reward_matrix="competitive"
    )
    assert not env.knowledge_transfer
    assert env.coef.tolist() == [[1.0, -1.0], [-1.0, 1.0]]
    assert envs.make("arithmetic-v0", setting="single").max_num_agents == 1
    with pytest.raises(ConfigError, match="needs exactly 1 agent"):
        envs.make("arithmetic-v0", setting="single", num_agents=2)
    with pytest.raises(UnknownNameError, match="Registered settings"):
        envs.make("arithmetic-v0", setting="coryy")


def test_setting_calls_its_matrix_reward_matrix_like_the_config():
    setting = make_setting("cory", num_agents=2, reward_matrix="competitive")
    assert setting.reward_matrix == ((1.0, -1.0), (-1.0, 1.0))
    assert not hasattr(setting, "coefficients")
    cfg = load_config(None, ["setting.reward_matrix=competitive"])
    assert cfg.setting.build().reward_matrix == setting.reward_matrix
