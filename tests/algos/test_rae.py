"""SPIRAL's role-conditioned advantage estimation (REINFORCE ``baseline=role``), by hand."""

import pytest
import torch

from seqmarl.algos.base import AlgoState
from seqmarl.algos.reinforce import ReinforceConfig, reinforce_advantages
from seqmarl.types import RolloutBatch


def batch(rewards, roles, t=2):
    z = torch.zeros(len(rewards), t, dtype=torch.float64)
    return RolloutBatch(
        logprobs=z,
        ref_logprobs=z,
        mask=torch.ones_like(z),
        rewards=torch.tensor(rewards, dtype=torch.float64),
        roles=None if roles is None else torch.tensor(roles),
    )


def test_role_baselines_by_hand_over_two_batches():
    cfg = ReinforceConfig(baseline="role", baseline_decay=0.5, kl_coef=0.0)
    state = AlgoState.from_config(cfg)
    # batch 1: role 0 returns 1, 0 (mean 0.5); role 1 returns -1, -1 (mean -1)
    # b0 = 0.5 * 0 + 0.5 * 0.5 = 0.25; b1 = 0.5 * 0 + 0.5 * (-1) = -0.5
    adv = reinforce_advantages(batch([1.0, 0.0, -1.0, -1.0], [0, 0, 1, 1]), cfg, state)
    assert adv.advantages[:, 0].tolist() == [0.75, -0.25, -0.5, -0.5]
    assert adv.advantages[:, 1].tolist() == adv.advantages[:, 0].tolist()  # every token
    assert state.role_baselines == {0: 0.25, 1: -0.5}
    # batch 2, only role 1 (the agent played the other seat): b1 = 0.5 * -0.5 + 0.5 * 1 = 0.25
    adv = reinforce_advantages(batch([1.0, 1.0], [1, 1]), cfg, state)
    assert adv.advantages[:, 0].tolist() == [0.75, 0.75]
    assert state.role_baselines == {0: 0.25, 1: 0.25}  # role 0 untouched
    assert adv.stats["baseline_role1"] == 0.25


def test_one_shared_baseline_would_credit_the_seat_to_the_actions():
    # the first mover wins every game whatever it does: RAE gives both seats zero advantage
    # once the baselines have learned it, a shared baseline keeps crediting the seat
    rae = ReinforceConfig(baseline="role", baseline_decay=0.0, kl_coef=0.0)
    shared = ReinforceConfig(baseline="running", baseline_decay=0.0, kl_coef=0.0)
    s_rae, s_shared = AlgoState.from_config(rae), AlgoState.from_config(shared)
    b = batch([1.0, 1.0, -1.0, -1.0], [0, 0, 1, 1])
    for _ in range(2):
        a_rae = reinforce_advantages(b, rae, s_rae)
        a_shared = reinforce_advantages(b, shared, s_shared)
    assert a_rae.advantages.abs().max() == 0
    assert a_shared.advantages[:, 0].tolist() == [1.0, 1.0, -1.0, -1.0]


def test_role_baselines_are_checkpointed():
    cfg = ReinforceConfig(baseline="role", baseline_decay=0.5, kl_coef=0.0)
    state = AlgoState.from_config(cfg)
    reinforce_advantages(batch([1.0, -1.0], [0, 1]), cfg, state)
    again = AlgoState.from_config(cfg)
    again.load_state_dict(state.state_dict())
    assert again.role_baselines == state.role_baselines == {0: 0.5, 1: -0.5}


def test_role_baseline_without_roles_is_an_error():
    cfg = ReinforceConfig(baseline="role")
    with pytest.raises(ValueError, match="roles"):
        reinforce_advantages(batch([1.0], None), cfg, AlgoState.from_config(cfg))
