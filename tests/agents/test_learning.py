"""Every algorithm, on a tiny random LM: parameters change, numbers are finite, reward rises."""

import math

import pytest
import torch

from seqmarl.algos import ALGORITHMS
from seqmarl.train.learner import Learner

LOWER = range(97, 123)  # byte tokens 'a'..'z'


def lowercase_reward(c):
    """Toy reward: fraction of response tokens that are lower-case letters (~10% at start)."""
    hit = (c.response_ids >= LOWER.start) & (c.response_ids < LOWER.stop)
    return (hit.float() * c.response_mask).sum(1) / c.response_mask.sum(1).clamp_min(1)


@pytest.mark.parametrize("name", ["ppo", "reinforce", "rloo", "grpo"])
@pytest.mark.parametrize(("mode", "lr"), [("shared", 3e-2), ("separate", 3e-3)])
def test_algorithm_learns_a_toy_reward(make_pool, name, mode, lr):
    algo = ALGORITHMS.get(name)
    pool = make_pool(
        mode,
        agent_ids=("llm_0",),
        value_heads=("llm_0",) if algo.uses_value_head else (),
        stop_at_eos=False,
    )
    params = {"lr": lr, "kl_coef": 0.0}
    if name == "ppo":
        params["adaptive_kl"] = False
    cfg = algo.make_config(**params)
    learner = Learner(pool["llm_0"], algo, cfg, seed=0)
    before = [p.detach().clone() for p in pool["llm_0"].parameters()]
    g = torch.Generator().manual_seed(0)
    group = torch.arange(16) // cfg.group_size
    rewards = []
    for _ in range(30):
        c = pool["llm_0"].sample(["q"] * 16, generator=g)
        r = lowercase_reward(c)
        metrics = learner.update(c, learner.make_batch(c, r, group))
        rewards.append(float(r.mean()))
        assert all(math.isfinite(v) for v in metrics.values()), metrics
    after = list(pool["llm_0"].parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    assert {"loss_policy", "kl_to_ref", "clip_fraction", "entropy"} <= set(metrics)
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last > first + 0.1, f"{name}/{mode}: reward {first:.3f} -> {last:.3f}"


def test_mixed_algorithms_on_two_agents(make_pool):
    pool = make_pool("shared", value_heads=("llm_0",), stop_at_eos=False)
    ppo = Learner(pool["llm_0"], "ppo", ALGORITHMS.get("ppo").make_config(lr=1e-2))
    reinforce = Learner(
        pool["llm_1"], "reinforce", ALGORITHMS.get("reinforce").make_config(lr=1e-2)
    )
    g = torch.Generator().manual_seed(0)
    for learner in (ppo, reinforce):
        c = learner.agent.sample(["x", "y"], generator=g)
        m = learner.update(c, learner.make_batch(c, torch.tensor([1.0, 0.0])))
        assert math.isfinite(m["loss_policy"])
    c = ppo.agent.sample(["z"], generator=g)
    assert "loss_value" in ppo.update(c, ppo.make_batch(c, torch.ones(1)))


def test_full_kl_in_reward_and_loss_modes(make_pool):
    pool = make_pool("shared", agent_ids=("llm_0",), stop_at_eos=False)
    for mode in ("reward", "loss"):
        cfg = ALGORITHMS.get("reinforce").make_config(kl_estimator="full", kl_mode=mode, lr=1e-2)
        learner = Learner(pool["llm_0"], "reinforce", cfg)
        g = torch.Generator().manual_seed(0)
        for _ in range(2):
            c = pool["llm_0"].sample(["x", "y"], generator=g)
            batch = learner.make_batch(c, torch.tensor([1.0, 0.0]))
            assert batch.kl is not None and float(batch.kl.min()) >= -1e-6  # exact KL >= 0
            m = learner.update(c, batch)
        assert m["kl_to_ref"] > 0


def test_nonfinite_loss_skips_the_step(make_pool):
    pool = make_pool("shared", agent_ids=("llm_0",))
    learner = Learner(pool["llm_0"], "reinforce")
    before = [p.detach().clone() for p in pool["llm_0"].parameters()]
    c = pool["llm_0"].sample(["x", "y"], generator=torch.Generator().manual_seed(0))
    m = learner.update(c, learner.make_batch(c, torch.tensor([float("nan"), 1.0])))
    assert m["skipped_steps"] == 1 and learner.skipped_steps == 1
    assert all(torch.equal(a, b) for a, b in zip(before, pool["llm_0"].parameters()))


def test_learner_requires_a_value_head_for_ppo(make_pool):
    pool = make_pool("shared", agent_ids=("llm_0",))
    with pytest.raises(ValueError, match="value head"):
        Learner(pool["llm_0"], "ppo")


def ragged_completions(pool, agent="llm_0", n=12, *, prompts=None, seed=0):
    """Completions with prompts and responses of many lengths (as EOS and datasets give)."""
    prompts = prompts or ["q" * (1 + 3 * (i % 4)) for i in range(n)]
    c = pool[agent].sample(prompts, generator=torch.Generator().manual_seed(seed))
    keep = torch.tensor([2 + (5 * i + seed) % 7 for i in range(len(prompts))])  # 2..8 of 8
    cut = torch.arange(c.response_ids.shape[1])[None, :] >= keep[:, None]
    c.response_mask[cut] = 0
    c.response_ids[cut] = pool[agent].tokenizer.pad_token_id
    c.logprobs[cut] = 0
    if c.values is not None:
        c.values[cut] = 0
    return c


@pytest.mark.parametrize(
    "name, params",
    [
        ("ppo", {}),
        ("grpo", {}),
        ("grpo", {"loss_aggregation": "sequence"}),
        ("grpo", {"loss_aggregation": "constant", "response_limit": 8}),
        ("grpo", {"importance_sampling": "sequence", "loss_aggregation": "sequence"}),
        ("grpo", {"surrogate": "cispo", "clip_high": 0.28}),
        ("rloo", {"ratio_level": "sequence"}),
    ],
)
def test_length_chunks_leave_the_minibatch_gradient_unchanged(make_pool, name, params, monkeypatch):
    """Splitting a minibatch into length-sorted chunks (and grad accumulation) sums to the
    whole minibatch's gradient: each chunk's loss is weighted by its share of the tokens (a
    token mean) or of the rows (a mean over responses, Dr. GRPO's constant)."""
    import seqmarl.train.learner as learner_mod

    algo = ALGORITHMS.get(name)
    pool = make_pool("separate", agent_ids=("llm_0",), value_heads=("llm_0",) * (name == "ppo"))
    c = ragged_completions(pool)
    rewards = torch.linspace(-1, 1, len(c))
    group = torch.arange(len(c)) // 3
    real = learner_mod.length_chunks

    def gradient(accum: int, chunked: bool):
        cfg = algo.make_config(
            lr=1e-3, epochs=1, max_grad_norm=None, grad_accum_steps=accum, **params
        )
        if name == "grpo":
            cfg.group_size = 3
        learner = Learner(pool["llm_0"], algo, cfg, seed=0)
        seen, grads = [], []

        def spy(completions, rows, max_rows, **kw):
            out = real(completions, rows, max_rows, **kw) if chunked else [rows]
            seen.append(len(out))
            return out

        monkeypatch.setattr(learner_mod, "length_chunks", spy)
        learner.optimizer.step = lambda: grads.extend(
            p.grad.clone() for p in learner.agent.parameters() if p.grad is not None
        )
        learner.update(c, learner.make_batch(c, rewards, group))
        return seen, grads

    (one,), whole = gradient(1, chunked=False)
    (many,), split = gradient(3, chunked=True)
    assert one == 1 and many >= 3
    assert len(whole) == len(split) > 0
    for a, b in zip(whole, split, strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_length_chunks_sort_by_length_and_keep_prompt_groups_together(make_pool, monkeypatch):
    import seqmarl.train.learner as learner_mod
    from seqmarl.train.learner import length_chunks

    monkeypatch.setattr(learner_mod, "PASS_TOKENS", 0)  # toy batches: splitting must pay
    pool = make_pool("separate", agent_ids=("llm_0",))
    c = ragged_completions(pool)
    rows = torch.randperm(len(c), generator=torch.Generator().manual_seed(0))
    for max_rows in (12, 5, 1):
        chunks = length_chunks(c, rows, max_rows)
        flat = torch.cat(chunks)
        assert sorted(flat.tolist()) == sorted(rows.tolist())  # a partition of the rows
        assert all(len(ch) <= max_rows for ch in chunks)
    # two length classes far apart: cut between them; one length: no cut
    lengths = c.query_mask.sum(1) + c.response_mask.sum(1)
    chunks = length_chunks(c, rows, 12, overhead=0.0)
    widths = [int(lengths[ch].max()) for ch in chunks]
    assert len(chunks) > 1 and widths == sorted(widths)
    same = pool["llm_0"].sample(["qq"] * 8, generator=torch.Generator().manual_seed(0))
    assert len(length_chunks(same, torch.arange(8), 8)) == 1
    # rows with one prompt (k answers) stay in one chunk so the prompt runs once for them
    group = pool["llm_0"].sample(["a", "bbbbbbbbbbbb"] * 4, generator=torch.Generator())
    for ch in length_chunks(group, torch.arange(8), 8, overhead=0.0):
        assert len({int(group.query_mask[i].sum()) for i in ch}) == 1
    # a pass has a fixed cost: a small batch is not worth cutting
    monkeypatch.setattr(learner_mod, "PASS_TOKENS", 256)
    assert len(length_chunks(c, rows, 12)) == 1
