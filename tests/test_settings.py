from collections import Counter

import numpy as np
import pytest

from seqmarl.errors import ConfigError, UnknownNameError
from seqmarl.method.settings import SETTINGS, coefficient_matrix, make_setting, seat_schedule


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_rotation_puts_every_agent_in_every_seat_equally(n):
    setting = make_setting("cory", num_agents=n, exchange_every=3)
    period_count = 4 * n
    visits = Counter()
    for t in range(3 * period_count):
        order = setting.seat_order(t)
        assert sorted(order) == list(range(n))  # a permutation every iteration
        visits.update((agent, seat) for seat, agent in enumerate(order))
    assert set(visits) == {(a, s) for a in range(n) for s in range(n)}
    assert len(set(visits.values())) == 1  # equal time in every seat


def test_cory_two_agents_exchange_roles_every_t_iterations():
    setting = make_setting("cory", exchange_every=5)
    orders = [setting.seat_agents(t) for t in range(20)]
    assert orders[:5] == [("llm_0", "llm_1")] * 5
    assert orders[5:10] == [("llm_1", "llm_0")] * 5
    assert orders[10:15] == [("llm_0", "llm_1")] * 5
    assert make_setting("cory").schedule.period == 5  # the paper's T_REx default


def test_no_exchange_keeps_seats_and_custom_permutations_cycle():
    fixed = make_setting("cory-no-exchange", num_agents=3)
    assert {fixed.seat_order(t) for t in range(50)} == {(0, 1, 2)}
    custom = make_setting(
        "cory",
        num_agents=3,
        schedule="permutations",
        permutations=[[2, 0, 1], [1, 2, 0]],
        exchange_every=2,
    )
    assert [custom.seat_order(t) for t in range(6)] == [(2, 0, 1)] * 2 + [(1, 2, 0)] * 2 + [
        (2, 0, 1)
    ] * 2


def test_coefficient_presets():
    assert coefficient_matrix("cooperative", 3).tolist() == [[1.0] * 3] * 3
    assert coefficient_matrix("independent", 2).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    comp = coefficient_matrix("competitive", 3)
    assert np.all(np.diag(comp) == 1.0)
    assert np.all(comp[~np.eye(3, dtype=bool)] == -1.0)


def test_mix_cooperative_sum_and_competitive_signs():
    r = np.array([[1.0, 0.0], [0.25, 0.75]])  # (batch, N)
    coop = make_setting("cory")
    assert np.allclose(coop.mix(r), [[1.0, 1.0], [1.0, 1.0]])  # r1 + r2 for both
    comp = make_setting("cory", reward_matrix="competitive")
    assert np.allclose(comp.mix(r), [[1.0, -1.0], [-0.5, 0.5]])
    indep = make_setting("cory", reward_matrix="independent")
    assert np.allclose(indep.mix(r), r)
    custom = make_setting("cory", reward_matrix=[[2.0, 0.5], [0.0, -1.0]])
    assert np.allclose(custom.mix(r), [[2.0, 0.0], [0.875, -0.75]])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("friendly", "unknown preset 'friendly'"),
        ([[1.0, 2.0]], "expected shape 2x2 for 2 agents, got 1x2"),
        ([[1.0, 2.0], [3.0]], "expected a 2x2 list of lists"),
        ([[1.0, float("nan")], [0.0, 1.0]], "finite"),
        ([[1.0, float("inf")], [0.0, 1.0]], "finite"),
        ([["a", "b"], ["c", "d"]], "list of lists of numbers"),
    ],
)
def test_coefficient_validation_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        coefficient_matrix(spec, 2)


def test_schedule_validation():
    with pytest.raises(ConfigError, match="not a permutation"):
        seat_schedule("permutations", 3, permutations=[[0, 1, 1]])
    with pytest.raises(ConfigError, match="non-empty list"):
        seat_schedule("permutations", 2)
    with pytest.raises(ConfigError, match="exchange_every"):
        seat_schedule("rotate", 2, period=0)
    with pytest.raises(ConfigError, match="unknown kind"):
        seat_schedule("shuffle", 2)


def test_registered_settings_and_their_rules():
    assert {"single", "cory", "cory-no-transfer", "cory-no-exchange"} <= set(SETTINGS.names())
    single = make_setting("single")
    assert single.num_agents == 1 and single.agent_ids == ("llm_0",)
    assert not make_setting("cory-no-transfer").knowledge_transfer
    assert make_setting("cory-no-exchange").schedule.kind == "fixed"
    with pytest.raises(ConfigError, match="exactly 1 agent"):
        make_setting("single", num_agents=2)
    with pytest.raises(ConfigError, match=">= 2"):
        make_setting("cory", num_agents=1)
    with pytest.raises(
        UnknownNameError, match="Registered settings: cory, cory-causal, cory-no-exchange"
    ):
        make_setting("corry")
