"""seqmarl's GRPO variants compute TRL's own loss and gradient on one fixed batch.

TRL's ``GRPOTrainer._compute_loss`` (trl 1.16, the lock's) runs unchanged on a prepared inputs
dict, on a stand-in for the trainer that holds only the attributes the method reads; its
``_get_per_token_logps_and_entropies`` hands back the batch's current log-probs, a leaf
tensor. seqmarl's ``grpo_loss`` gets the same tensor. Both gradients are taken with respect to
it, so the comparison is of the losses' arithmetic, nothing else.

The batch is off-policy (old log-probs 0.3 nats of noise away, so both clip regions are hit),
with responses of different lengths and a KL to a reference. Bounds: relative loss difference
<= 1e-5, gradient cosine >= 0.99999 (the issue's), and the gradients' norms within 1e-5.
"""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from seqmarl.algos import ALGORITHMS, AlgoState
from seqmarl.types import PolicyOutput, RolloutBatch

trl_grpo = pytest.importorskip(
    "trl.trainer.grpo_trainer", reason="TRL is not installed (pip install -e '.[dev]')"
)
trl_utils = pytest.importorskip("trl.trainer.utils")

B, T, G, LIMIT = 8, 7, 4, 10  # rows, response width, group size, max_completion_length


def fixed_batch(seed: int = 16):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, T)
    for row, length in enumerate([7, 3, 5, 7, 1, 6, 4, 7]):
        mask[row, length:] = 0
    current = (-torch.rand(B, T, generator=g) * 3 - 0.05) * mask
    old = (current + 0.3 * torch.randn(B, T, generator=g)) * mask
    ref = (current + 0.2 * torch.randn(B, T, generator=g)) * mask
    rewards = torch.rand(B, generator=g)
    return current, old, ref, mask, rewards


def trl_advantages(rewards: torch.Tensor, scale: str) -> torch.Tensor:
    """TRL's ``sum_then_normalize`` advantages (grpo_trainer.py), with TRL's own ``nanstd``."""
    grouped = rewards.view(-1, G)
    mean = torch.nanmean(grouped, dim=1).repeat_interleave(G)
    if scale == "batch":
        std = trl_utils.nanstd(rewards).expand_as(rewards)
    else:
        std = trl_utils.nanstd(grouped, dim=1).repeat_interleave(G)
    adv = rewards - mean
    return adv / (std + 1e-4) if scale != "none" else adv


def trl_loss(
    current, old, ref, mask, advantages, *, loss_type, beta, eps_low, eps_high, level, bias_kl=False
):
    """TRL's ``_compute_loss`` on a stand-in trainer: (loss, grad wrt current log-probs)."""
    logps = current.clone().requires_grad_(True)
    accelerator = SimpleNamespace(
        num_processes=1,
        sync_gradients=True,
        gather=lambda x: x,
        gather_for_metrics=lambda x: x,
        reduce=lambda x, reduction="sum": x,
    )
    trainer = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logps, torch.zeros_like(logps), None),
        aux_loss_enabled=False,
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level=level,
        beta=beta,
        loss_type=loss_type,
        epsilon_low=eps_low,
        epsilon_high=eps_high,
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1,
        max_completion_length=LIMIT,
        accelerator=accelerator,
        _entropy_bonus_enabled=False,
        _metrics={"train": defaultdict(list)},
        args=SimpleNamespace(
            use_bias_correction_kl=bias_kl,
            delta=None,
            steps_per_generation=1,
            sapo_temperature_pos=1.0,
            sapo_temperature_neg=1.05,
        ),
    )
    inputs = {
        "prompt_ids": torch.zeros(B, 2, dtype=torch.long),
        "prompt_mask": torch.ones(B, 2, dtype=torch.long),
        "completion_ids": torch.zeros(B, T, dtype=torch.long),
        "completion_mask": mask.long(),
        "advantages": advantages,
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
        "num_items_in_batch": mask.sum(),
    }
    loss = trl_grpo.GRPOTrainer._compute_loss(trainer, None, inputs)
    loss.backward()
    return loss.detach(), logps.grad


def seqmarl_loss(current, old, ref, mask, rewards, params):
    algo = ALGORITHMS.get("grpo")
    cfg = algo.make_config(group_size=G, response_limit=LIMIT, **params)
    batch = RolloutBatch(
        logprobs=old,
        ref_logprobs=ref,
        mask=mask,
        rewards=rewards,
        group_ids=torch.arange(B) // G,
    )
    adv = algo.advantages(batch, cfg, AlgoState.from_config(cfg))
    logps = current.clone().requires_grad_(True)
    loss = algo.loss(PolicyOutput(logprobs=logps), batch, adv, cfg, cfg.kl_coef)
    loss.loss.backward()
    return loss, logps.grad, adv.advantages[:, 0]


#: variant -> (seqmarl's grpo params, TRL's settings)
VARIANTS = {
    "token_mean (bnpo)": (
        {},
        dict(loss_type="bnpo", eps_low=0.2, eps_high=0.2, level="token"),
    ),
    "sequence_mean (grpo, DeepSeekMath)": (
        {"loss_aggregation": "sequence"},
        dict(loss_type="grpo", eps_low=0.2, eps_high=0.2, level="token"),
    ),
    "dr_grpo": (
        {"loss_aggregation": "constant", "scale_rewards": "none"},
        dict(loss_type="dr_grpo", eps_low=0.2, eps_high=0.2, level="token", scale="none"),
    ),
    "dapo (clip-higher, token sum over the batch's tokens)": (
        {"clip_high": 0.28},
        dict(loss_type="dapo", eps_low=0.2, eps_high=0.28, level="token"),
    ),
    "gspo (sequence-level ratio)": (
        {
            "importance_sampling": "sequence",
            "loss_aggregation": "sequence",
            "clip_coef": 3e-4,
            "clip_high": 4e-4,
        },
        dict(loss_type="grpo", eps_low=3e-4, eps_high=4e-4, level="sequence"),
    ),
    "cispo": (
        {"surrogate": "cispo", "cispo_max": 1.2},
        dict(loss_type="cispo", eps_low=0.2, eps_high=1.2, level="token"),
    ),
    "sapo": (
        {"surrogate": "sapo", "loss_aggregation": "sequence"},
        dict(loss_type="sapo", eps_low=0.2, eps_high=0.2, level="token"),
    ),
    "bias-corrected KL (TRL's default)": (
        {"kl_importance_weight": True},
        dict(loss_type="bnpo", eps_low=0.2, eps_high=0.2, level="token", bias_kl=True),
    ),
    "batch-std scaling": (
        {"scale_rewards": "batch"},
        dict(loss_type="bnpo", eps_low=0.2, eps_high=0.2, level="token", scale="batch"),
    ),
}


@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_loss_and_gradient_equal_trls(variant, beta):
    params, trl = VARIANTS[variant]
    trl = dict(trl)
    scale = trl.pop("scale", "group")
    current, old, ref, mask, rewards = fixed_batch()
    ours, our_grad, our_adv = seqmarl_loss(
        current, old, ref, mask, rewards, {**params, "kl_coef": beta}
    )
    advantages = trl_advantages(rewards, scale)
    torch.testing.assert_close(our_adv, advantages, rtol=1e-6, atol=1e-7)
    theirs, their_grad = trl_loss(current, old, ref, mask, advantages, beta=beta, **trl)
    if params.get("surrogate") != "sapo":  # SAPO's gate is soft: nothing is clipped
        assert float(ours.terms["clip_fraction"]) > 0  # the batch exercises the clip
    assert math.isclose(float(ours.loss.detach()), float(theirs), rel_tol=1e-5, abs_tol=1e-8), (
        float(ours.loss.detach()),
        float(theirs),
    )
    cosine = torch.nn.functional.cosine_similarity(our_grad.flatten(), their_grad.flatten(), dim=0)
    assert float(cosine) >= 0.99999, float(cosine)
    assert math.isclose(float(our_grad.norm()), float(their_grad.norm()), rel_tol=1e-5)


def test_the_variants_really_differ():
    """Each variant's gradient differs from token-mean GRPO's on the batch: none is a no-op."""
    current, old, ref, mask, rewards = fixed_batch()
    _, base, _ = seqmarl_loss(current, old, ref, mask, rewards, {})
    for variant, (params, _) in VARIANTS.items():
        if not params or "kl_importance_weight" in params:  # that one acts on the KL alone
            continue
        _, grad, _ = seqmarl_loss(current, old, ref, mask, rewards, params)
        assert not torch.allclose(grad, base, rtol=1e-3, atol=1e-6), variant


def test_overlong_penalty_equals_trls_reward():
    """DAPO's soft overlong punishment: TRL's own reward function, token counts 0..limit+3."""
    from trl.rewards import get_soft_overlong_punishment

    from seqmarl.algos.objectives import overlong_penalty

    limit, buffer = 20, 6
    lengths = torch.arange(limit + 4)
    theirs = get_soft_overlong_punishment(limit, buffer)([[1] * int(n) for n in lengths])
    ours = overlong_penalty(lengths, limit, buffer)
    assert ours.tolist() == pytest.approx(theirs, abs=1e-7)
    assert min(theirs) == -1.0 and max(theirs) == 0.0  # the range covers every branch


def test_overlong_penalty_enters_the_advantages():
    """A full-length response is pushed below its equal-reward, shorter group mates."""
    algo = ALGORITHMS.get("grpo")
    cfg = algo.make_config(group_size=4, response_limit=T, overlong_buffer=3, kl_coef=0.0)
    mask = torch.ones(4, T)
    for row, length in enumerate([2, 3, 5, 7]):
        mask[row, length:] = 0
    batch = RolloutBatch(
        logprobs=-mask,
        ref_logprobs=-mask,
        mask=mask,
        rewards=torch.ones(4),
        group_ids=torch.zeros(4, dtype=torch.long),
    )
    adv = algo.advantages(batch, cfg, AlgoState.from_config(cfg)).advantages[:, 0]
    assert adv[0] == adv[1] > adv[2] > adv[3]  # 2 and 3 tokens are within T - 3 = 4


# ---- RLOO: TRL's RLOOTrainer._compute_loss and its advantages -----------------------------


def trl_rloo_advantages(rewards, old, ref, mask, beta, normalize):
    """TRL's RLOO advantages (rloo_trainer.py): k1 KL summed into the reward, leave-one-out."""
    kl = ((old - ref) * mask).sum(-1)
    rewards = rewards - beta * kl
    grouped = rewards.view(-1, G)
    baselines = ((grouped.sum(dim=1, keepdim=True) - grouped) / (G - 1)).view(-1)
    adv = rewards - baselines
    if normalize:
        adv = (adv - torch.nanmean(adv)) / (trl_utils.nanstd(adv) + 1e-4)
    return adv


def trl_rloo_loss(current, old, mask, advantages, eps=0.2):
    from trl.trainer.rloo_trainer import RLOOTrainer

    logps = current.clone().requires_grad_(True)
    trainer = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logps, torch.zeros_like(logps), None),
        aux_loss_enabled=False,
        epsilon_low=eps,
        epsilon_high=eps,
        model=SimpleNamespace(training=True),
        accelerator=SimpleNamespace(
            reduce=lambda x, reduction="sum": x, gather=lambda x: x, gather_for_metrics=lambda x: x
        ),
        _metrics={"train": defaultdict(list)},
    )
    inputs = {
        "prompt_ids": torch.zeros(B, 2, dtype=torch.long),
        "prompt_mask": torch.ones(B, 2, dtype=torch.long),
        "completion_ids": torch.zeros(B, T, dtype=torch.long),
        "completion_mask": mask,
        "old_logps": (old * mask).sum(1),
        "advantages": advantages,
    }
    loss = RLOOTrainer._compute_loss(trainer, None, inputs)
    loss.backward()
    return loss.detach(), logps.grad


def seqmarl_rloo(current, old, ref, mask, rewards, params):
    algo = ALGORITHMS.get("rloo")
    cfg = algo.make_config(group_size=G, entropy_coef=0.0, **params)
    batch = RolloutBatch(
        logprobs=old, ref_logprobs=ref, mask=mask, rewards=rewards, group_ids=torch.arange(B) // G
    )
    adv = algo.advantages(batch, cfg, AlgoState.from_config(cfg))
    logps = current.clone().requires_grad_(True)
    loss = algo.loss(PolicyOutput(logprobs=logps), batch, adv, cfg, cfg.kl_coef)
    loss.loss.backward()
    return loss, logps.grad, adv.advantages[:, 0]


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("beta", [0.0, 0.05])
def test_rloo_sequence_level_equals_trls(beta, normalize):
    """``ratio_level=sequence`` is TRL's RLOO loss; the advantages are TRL's, KL and whitening too."""
    current, old, ref, mask, rewards = fixed_batch()
    params = {"ratio_level": "sequence", "kl_coef": beta, "normalize_advantages": normalize}
    ours, our_grad, our_adv = seqmarl_rloo(current, old, ref, mask, rewards, params)
    advantages = trl_rloo_advantages(rewards, old, ref, mask, beta, normalize)
    torch.testing.assert_close(our_adv, advantages, rtol=1e-6, atol=1e-6)
    theirs, their_grad = trl_rloo_loss(current, old, mask, advantages)
    assert float(ours.terms["clip_fraction"]) > 0  # sequence ratios of a 0.3-nat noise do clip
    assert math.isclose(float(ours.loss.detach()), float(theirs), rel_tol=1e-5, abs_tol=1e-8)
    cosine = torch.nn.functional.cosine_similarity(our_grad.flatten(), their_grad.flatten(), dim=0)
    assert float(cosine) >= 0.99999, float(cosine)


def test_rloo_token_level_is_trls_gradient_times_responses_over_tokens():
    """seqmarl's default RLOO (a token mean) differs from TRL's by a pinned factor on-policy."""
    current, _, ref, mask, rewards = fixed_batch()
    _, our_grad, our_adv = seqmarl_rloo(current, current, ref, mask, rewards, {"kl_coef": 0.0})
    _, their_grad = trl_rloo_loss(current, current, mask, our_adv)
    factor = B / float(mask.sum())  # responses / tokens: 8 / 40 on this batch
    torch.testing.assert_close(our_grad, their_grad * factor, rtol=1e-6, atol=1e-8)
