import math

import numpy as np
import pytest
import torch

from seqmarl.algos.core import (
    AdaptiveKLController,
    RunningMoments,
    entropy_from_logits,
    full_kl,
    gae,
    group_normalize,
    kl_estimate,
    last_token_index,
    masked_mean,
    masked_whiten,
    rloo_baseline,
)


def naive_gae(rewards, values, lengths, gamma, lam):
    """Textbook GAE, one row at a time, V = 0 past the end."""
    adv = np.zeros_like(rewards)
    for b, n in enumerate(lengths):
        running = 0.0
        for t in reversed(range(n)):
            next_v = values[b, t + 1] if t + 1 < n else 0.0
            delta = rewards[b, t] + gamma * next_v - values[b, t]
            running = delta + gamma * lam * running
            adv[b, t] = running
    return adv


@pytest.mark.parametrize(("gamma", "lam"), [(1.0, 0.95), (0.9, 1.0), (0.99, 0.0)])
def test_gae_matches_naive_loop(gamma, lam):
    rng = np.random.default_rng(0)
    rewards, values = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    lengths = [7, 3, 1, 5, 6]
    mask = np.zeros((5, 7))
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
    adv, ret = gae(torch.tensor(rewards), torch.tensor(values), torch.tensor(mask), gamma, lam)
    expected = naive_gae(rewards * mask, values * mask, lengths, gamma, lam)
    assert np.allclose(adv.numpy(), expected)
    assert np.allclose(ret.numpy(), (expected + values) * mask)


def test_gae_hand_computed():
    # two tokens, reward 1 at the end, V = (0.5, 0.25), gamma = 1, lambda = 0.5:
    # delta_1 = 1 - 0.25 = 0.75; delta_0 = 0 + 0.25 - 0.5 = -0.25; A_0 = -0.25 + 0.5 * 0.75
    adv, _ = gae(
        torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 0.25]]), torch.ones(1, 2), 1.0, 0.5
    )
    assert torch.allclose(adv, torch.tensor([[0.125, 0.75]]))


def test_kl_estimators_against_exact_kl():
    torch.manual_seed(0)
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    q = torch.tensor([0.25, 0.25, 0.25, 0.25])
    exact = float((p * (p / q).log()).sum())
    # full: exact over the vocabulary, from logits
    assert math.isclose(float(full_kl(p.log(), q.log())), exact, rel_tol=1e-6)
    # hand-computed: 0.5 ln2 + 0.3 ln1.2 + 0.15 ln0.6 + 0.05 ln0.2
    hand = 0.5 * math.log(2) + 0.3 * math.log(1.2) + 0.15 * math.log(0.6) + 0.05 * math.log(0.2)
    assert math.isclose(exact, hand, rel_tol=1e-6)
    tokens = torch.multinomial(
        p, 200_000, replacement=True, generator=torch.Generator().manual_seed(1)
    )
    lp, lq = p.log()[tokens], q.log()[tokens]
    k1, k2, k3 = (kl_estimate(lp, lq, k) for k in ("k1", "k2", "k3"))
    assert abs(float(k1.mean()) - exact) < 0.01  # unbiased
    assert abs(float(k3.mean()) - exact) < 0.01  # unbiased
    assert float(k3.min()) >= 0 and float(k2.min()) >= 0
    assert float(k1.min()) < 0  # k1 is negative for some samples
    with pytest.raises(ValueError, match="full needs logits"):
        kl_estimate(lp, lq, "full")


def test_full_kl_is_zero_for_equal_distributions_and_entropy_of_uniform():
    logits = torch.randn(3, 5, 11)
    assert torch.allclose(full_kl(logits, logits), torch.zeros(3, 5), atol=1e-6)
    assert torch.allclose(entropy_from_logits(torch.zeros(2, 8)), torch.full((2,), math.log(8)))


def test_masked_helpers():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 100.0, 100.0]])
    m = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert float(masked_mean(x, m)) == 2.0
    w = masked_whiten(x, m)
    assert float(masked_mean(w, m)) == pytest.approx(0.0, abs=1e-6)
    assert torch.all(w[m == 0] == 0)
    assert last_token_index(m).tolist() == [1, 0]


def test_rloo_baseline_on_a_known_group():
    r = torch.tensor([1.0, 2.0, 3.0, 6.0, 10.0, 20.0])
    g = torch.tensor([0, 0, 0, 0, 1, 1])
    # group 0 sum 12: b_i = (12 - r_i) / 3; group 1: the other one
    assert torch.allclose(rloo_baseline(r, g), torch.tensor([11 / 3, 10 / 3, 3.0, 2.0, 20.0, 10.0]))
    with pytest.raises(ValueError, match="at least 2 samples"):
        rloo_baseline(r, torch.tensor([0, 0, 0, 0, 1, 2]))


def test_group_normalize_on_a_known_group():
    r = torch.tensor([1.0, 2.0, 3.0, 6.0, 5.0, 5.0])
    g = torch.tensor([7, 7, 7, 7, 3, 3])  # ids need not be contiguous
    mean, std = 3.0, math.sqrt(((1 - 3) ** 2 + 1 + 0 + 9) / 3)  # unbiased std of group 7
    expected = [(x - mean) / (std + 1e-4) for x in (1, 2, 3, 6)] + [0.0, 0.0]
    assert torch.allclose(group_normalize(r, g), torch.tensor(expected), atol=1e-6)
    assert torch.allclose(group_normalize(r, g, scale=False), torch.tensor([-2.0, -1, 0, 3, 0, 0]))


def test_adaptive_kl_controller_follows_ziegler():
    c = AdaptiveKLController(0.3, target=6.0, horizon=10000)
    c.update(current_kl=12.0, n_steps=256)  # error clipped to +0.2
    assert c.value == pytest.approx(0.3 * (1 + 0.2 * 256 / 10000))
    c2 = AdaptiveKLController(0.3, target=6.0, horizon=10000)
    c2.update(current_kl=5.4, n_steps=100)  # error -0.1
    assert c2.value == pytest.approx(0.3 * (1 - 0.1 * 100 / 10000))


def test_running_moments_match_numpy():
    rm = RunningMoments()
    data = np.random.default_rng(0).normal(3.0, 2.0, size=1000)
    for chunk in np.array_split(data, 7):
        rm.update(torch.tensor(chunk))
    assert rm.mean == pytest.approx(data.mean())
    assert rm.std == pytest.approx(data.std(ddof=1))
    clone = RunningMoments()
    clone.load_state_dict(rm.state_dict())
    assert clone.std == rm.std
