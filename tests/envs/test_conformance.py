"""PettingZoo's own api_test and seed_test, called directly on every registered env."""

import warnings

import pytest
from pettingzoo.test import api_test, seed_test

from seqmarl import envs
from tests.conftest import env_test_kwargs

ENV_IDS = envs.ENVS.names()


@pytest.fixture(autouse=True)
def _quiet_pettingzoo_advice():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Observation is not a NumPy array")
        yield


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("num_agents", [1, 2, 3, 4])
@pytest.mark.parametrize("rounds", [1, 2, 3])
def test_pettingzoo_api_test(env_id, num_agents, rounds):
    kwargs = env_test_kwargs(env_id)
    api_test(envs.make(env_id, num_agents=num_agents, rounds=rounds, **kwargs), num_cycles=50)


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("num_agents", [1, 2, 3, 4])
@pytest.mark.parametrize("rounds", [1, 2, 3])
def test_pettingzoo_seed_test(env_id, num_agents, rounds):
    kwargs = env_test_kwargs(env_id)
    seed_test(
        lambda: envs.make(env_id, num_agents=num_agents, rounds=rounds, **kwargs), num_cycles=50
    )


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("num_agents", [1, 2, 3, 4])
@pytest.mark.parametrize("transfer", [True, False])
@pytest.mark.parametrize("rounds", [1, 3])
def test_check_env_passes(env_id, num_agents, transfer, rounds):
    kwargs = {**env_test_kwargs(env_id), "rounds": rounds}
    report = envs.check_env(
        lambda: envs.make(env_id, num_agents=num_agents, knowledge_transfer=transfer, **kwargs)
    )
    assert report.passed, str(report)
    assert len(report.results) == 7


def test_check_env_reports_a_broken_env():
    class Broken(envs.ArithmeticTask):
        def score(self, prompt, response):
            return float("nan")

    env = envs.SequentialTextEnv(Broken(), num_agents=2)
    report = envs.check_env(env, raise_on_failure=False)
    assert not report.passed
    failed = {r.name for r in report.results if not r.passed}
    assert "any text is a valid action" in failed
    with pytest.raises(envs.testing.EnvCheckError, match="SOME CHECKS FAILED"):
        envs.check_env(env)
