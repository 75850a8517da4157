import pytest
import torch

from seqmarl.algos import ALGORITHMS, AlgoState
from seqmarl.algos.core import masked_mean
from seqmarl.types import Advantages, PolicyOutput, RolloutBatch


def make_batch(b=4, t=5, seed=0, values=True, groups=None):
    g = torch.Generator().manual_seed(seed)
    logprobs = -torch.rand(b, t, generator=g) - 0.1
    mask = torch.ones(b, t)
    mask[1, 3:] = 0
    return RolloutBatch(
        logprobs=logprobs * mask,
        ref_logprobs=(logprobs - 0.05 * torch.rand(b, t, generator=g)) * mask,
        mask=mask,
        rewards=torch.rand(b, generator=g),
        values=torch.rand(b, t, generator=g) * mask if values else None,
        group_ids=groups,
    )


@pytest.mark.parametrize("name", ["ppo", "reinforce", "rloo", "grpo"])
def test_zero_advantage_gives_zero_policy_gradient(name):
    algo = ALGORITHMS.get(name)
    cfg = algo.make_config(kl_mode="reward", entropy_coef=0.0)
    batch = make_batch()
    new_lp = batch.logprobs.clone().requires_grad_(True)
    # a trainable value head, as in training: the loss has a graph even without new_lp
    values = batch.values.clone().requires_grad_(True) if algo.uses_value_head else None
    out = PolicyOutput(logprobs=new_lp, values=values)
    adv = Advantages(torch.zeros(4, 5), batch.values if algo.uses_value_head else None)
    loss = algo.loss(out, batch, adv, cfg, 0.1)
    policy = loss.terms["loss_policy"]
    assert torch.isfinite(policy), f"{name}: loss_policy={policy}"
    # zero advantages, value = return, KL in the reward, no entropy bonus: nothing to minimise
    assert float(policy) == 0.0, f"{name}: loss_policy={float(policy)} with zero advantages"
    assert loss.loss.item() == 0.0, f"{name}: loss={loss.loss.item()} with zero advantages"
    # the surrogate is -A * rho of the *current* log-probs: the graph reaches new_lp
    (grad,) = torch.autograd.grad(loss.loss, new_lp, allow_unused=True)
    assert grad is not None, f"{name}: the loss does not depend on the current log-probs"
    assert torch.all(grad == 0), f"{name}: non-zero policy gradient {grad}"


def test_ppo_at_ratio_one_equals_reinforce():
    ppo, reinforce = ALGORITHMS.get("ppo"), ALGORITHMS.get("reinforce")
    batch = make_batch()
    adv_t = torch.randn(4, 5, generator=torch.Generator().manual_seed(3)) * batch.mask
    grads = {}
    for algo in (ppo, reinforce):
        cfg = algo.make_config(vf_coef=0.0) if algo is ppo else algo.make_config()
        new_lp = batch.logprobs.clone().requires_grad_(True)  # ratio exactly 1: no clipping
        out = PolicyOutput(logprobs=new_lp, values=batch.values if algo is ppo else None)
        loss = algo.loss(out, batch, Advantages(adv_t, batch.values), cfg, 0.0)
        assert float(loss.terms["clip_fraction"]) == 0.0
        grads[algo.name] = torch.autograd.grad(loss.loss, new_lp)[0]
        # and the REINFORCE estimator itself: d/dlogp of -mean(A * logp) = -A / n_tokens
        assert torch.allclose(grads[algo.name], -adv_t * batch.mask / batch.mask.sum())
    assert torch.allclose(grads["ppo"], grads["reinforce"])


def test_ppo_clipping_hand_computed():
    ppo = ALGORITHMS.get("ppo")
    cfg = ppo.make_config(clip_coef=0.2, vf_coef=0.0)
    batch = RolloutBatch(
        logprobs=torch.zeros(1, 2),
        ref_logprobs=torch.zeros(1, 2),
        mask=torch.ones(1, 2),
        rewards=torch.zeros(1),
        values=torch.zeros(1, 2),
    )
    # token 0: ratio e^0.5 = 1.65 with A = +1 -> clipped at 1.2; token 1: ratio 1, A = -2
    out = PolicyOutput(logprobs=torch.tensor([[0.5, 0.0]]), values=torch.zeros(1, 2))
    loss = ppo.loss(
        out, batch, Advantages(torch.tensor([[1.0, -2.0]]), torch.zeros(1, 2)), cfg, 0.0
    )
    assert float(loss.terms["loss_policy"]) == pytest.approx((-1.2 + 2.0) / 2)
    assert float(loss.terms["clip_fraction"]) == pytest.approx(0.5)


def test_ppo_advantages_put_the_reward_on_the_last_token_and_penalise_kl():
    ppo = ALGORITHMS.get("ppo")
    cfg = ppo.make_config(kl_coef=0.5, adaptive_kl=False, whiten_advantages=False, gae_lambda=1.0)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    batch = RolloutBatch(
        logprobs=torch.tensor([[-1.0, -1.0, -1.0], [-1.0, -1.0, 0.0]]),
        ref_logprobs=torch.tensor([[-1.2, -1.0, -1.0], [-1.0, -1.4, 0.0]]),
        mask=mask,
        rewards=torch.tensor([2.0, 3.0]),
        values=torch.zeros(2, 3),
    )
    adv = ppo.advantages(batch, cfg, AlgoState.from_config(cfg))
    # gamma = lambda = 1 and V = 0: A_t = return-to-go of r_t = -0.5 * k1_t (+ R at the end)
    assert torch.allclose(adv.advantages, torch.tensor([[1.9, 2.0, 2.0], [2.8, 2.8, 0.0]]))
    assert torch.allclose(adv.returns, adv.advantages)


def test_kl_loss_mode_adds_the_term_and_reward_mode_does_not():
    algo = ALGORITHMS.get("reinforce")
    batch = make_batch()
    out = PolicyOutput(logprobs=batch.logprobs)
    adv = Advantages(torch.zeros(4, 5))
    in_loss = algo.loss(out, batch, adv, algo.make_config(kl_mode="loss", kl_estimator="k3"), 2.0)
    in_reward = algo.loss(out, batch, adv, algo.make_config(kl_mode="reward"), 2.0)
    assert float(in_reward.loss) == pytest.approx(0.0)
    assert float(in_loss.loss) == pytest.approx(2.0 * float(in_loss.terms["kl_to_ref"]))
    assert float(in_loss.terms["kl_to_ref"]) > 0


def test_reinforce_running_baseline():
    algo = ALGORITHMS.get("reinforce")
    cfg = algo.make_config(kl_coef=0.0, baseline_decay=0.5)
    state = AlgoState.from_config(cfg)
    batch = make_batch()
    batch.rewards = torch.tensor([1.0, 2.0, 3.0, 4.0])
    first = algo.advantages(batch, cfg, state)
    assert torch.allclose(first.advantages[:, 0], batch.rewards)  # no baseline yet
    assert state.baseline == pytest.approx(2.5)
    second = algo.advantages(batch, cfg, state)
    assert torch.allclose(second.advantages[:, 0], batch.rewards - 2.5)
    assert torch.all(second.advantages[1, 3:] == 0)  # padding stays zero


def test_rloo_and_grpo_advantages_on_a_known_group():
    groups = torch.tensor([0, 0, 1, 1])
    batch = make_batch(groups=groups, values=False)
    batch.rewards = torch.tensor([1.0, 3.0, 0.0, 4.0])
    rloo, grpo = ALGORITHMS.get("rloo"), ALGORITHMS.get("grpo")
    cfg = rloo.make_config(kl_coef=0.0)
    a = rloo.advantages(batch, cfg, AlgoState.from_config(cfg))
    assert torch.allclose(a.advantages[:, 0], torch.tensor([-2.0, 2.0, -4.0, 4.0]))
    cfg = grpo.make_config(kl_mode="loss")
    a = grpo.advantages(batch, cfg, AlgoState.from_config(cfg))
    s1, s2 = 2**0.5, 8**0.5  # unbiased std of {1, 3} and {0, 4}
    expected = torch.tensor([-1 / (s1 + 1e-4), 1 / (s1 + 1e-4), -2 / (s2 + 1e-4), 2 / (s2 + 1e-4)])
    assert torch.allclose(a.advantages[:, 0], expected)
    with pytest.raises(ValueError, match="group_ids"):
        rloo.advantages(make_batch(values=False), cfg, AlgoState.from_config(cfg))


def test_reward_normalisation_and_clipping():
    algo = ALGORITHMS.get("reinforce")
    cfg = algo.make_config(kl_coef=0.0, reward_norm="whiten", reward_clip=1.0)
    state = AlgoState.from_config(cfg)
    batch = make_batch()
    batch.rewards = torch.tensor([0.0, 10.0, 20.0, 30.0])
    returns = algo.advantages(batch, cfg, state).advantages[:, 0]
    assert returns.abs().max() <= 1.0
    assert state.reward_moments.count == 4


def test_algorithm_defaults_are_the_papers():
    ppo = ALGORITHMS.get("ppo").config_cls()
    assert (ppo.lr, ppo.epochs, ppo.kl_coef, ppo.gamma, ppo.gae_lambda) == (
        1.41e-5,
        4,
        0.3,
        1.0,
        0.95,
    )
    assert (ppo.clip_coef, ppo.vf_clip_coef, ppo.vf_coef, ppo.adaptive_kl) == (0.2, 0.2, 0.1, True)
    grpo = ALGORITHMS.get("grpo").config_cls()
    assert (grpo.kl_estimator, grpo.kl_mode) == ("k3", "loss")
    for name in ALGORITHMS.names():
        for field in ALGORITHMS.get(name).config_cls.model_fields.values():
            assert field.description, f"{name}: every config field is documented"


def test_batch_shape_validation():
    with pytest.raises(ValueError, match="ref_logprobs"):
        RolloutBatch(torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match="rewards"):
        RolloutBatch(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(3))


def test_masked_mean_is_the_token_mean():
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])  # ragged: 4 and 1 tokens
    # token mean: (1 + 2 + 3 + 4 + 10) / 5 = 4; the mean of the row means would be
    # (2.5 + 10) / 2 = 6.25, and the unmasked mean 13.75
    assert float(masked_mean(x, mask)) == pytest.approx(4.0)
    assert float(masked_mean(x, mask.bool())) == pytest.approx(4.0)
    # per row (dim=1): each row's own token mean; an empty row gives 0
    assert torch.allclose(masked_mean(x, mask, dim=1), torch.tensor([2.5, 10.0]))
    empty = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(masked_mean(x, empty, dim=1), torch.tensor([1.5, 0.0]))
    assert float(masked_mean(x, empty)) == pytest.approx(1.5)


@pytest.mark.parametrize("name", ["ppo", "reinforce", "rloo", "grpo"])
@pytest.mark.parametrize("kl_mode", ["reward", "loss"])
def test_the_logged_loss_terms_add_up_to_the_loss(name, kl_mode):
    """Every ``loss_*`` term enters the total as logged (PPO's value loss times vf_coef, the KL
    term times its coefficient, the entropy bonus negative): their sum is the loss."""
    algo = ALGORITHMS.get(name)
    cfg = algo.make_config(kl_mode=kl_mode, entropy_coef=0.01)
    if name == "ppo":
        cfg.vf_coef = 0.37  # not 1: an unweighted value loss would not add up
    batch = make_batch(groups=torch.tensor([0, 0, 1, 1]))
    new_lp = (batch.logprobs + 0.1 * batch.mask).requires_grad_(True)
    values = batch.values.clone().requires_grad_(True) if algo.uses_value_head else None
    out = PolicyOutput(logprobs=new_lp, values=values, entropy=torch.rand(4, 5) * batch.mask)
    adv = Advantages(
        torch.randn(4, 5) * batch.mask, torch.rand(4, 5) if values is not None else None
    )
    loss = algo.loss(out, batch, adv, cfg, 0.1)
    parts = {k: float(v) for k, v in loss.terms.items() if k.startswith("loss_")}
    assert "loss_entropy" in parts and ("loss_kl" in parts) == (kl_mode == "loss")
    assert ("loss_value" in parts) == algo.uses_value_head
    assert sum(parts.values()) == pytest.approx(float(loss.loss.detach()), rel=1e-6, abs=1e-7)
