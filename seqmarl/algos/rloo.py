"""RLOO: REINFORCE with a leave-one-out baseline over k samples per prompt.

Kool et al. 2019 ("Buy 4 REINFORCE samples, get a baseline for free!"), as used for RLHF by
Ahmadian et al. 2024. For ``k`` responses to the same prompt with returns ``G_1..G_k``
(``G = R - eta * sum_t KL_t``), the advantage of response ``i`` is

    A_i = G_i - 1/(k-1) * sum_{j != i} G_j

applied to every token of response ``i``. The loss is the critic-free policy-gradient loss with a
per-token ratio, a mean over tokens (``ratio_level=token``); ``ratio_level=sequence`` is TRL's
``RLOOTrainer`` loss: one ratio per response, ``w_i = exp(sum_t log pi - log pi_old)``, clipped,
``L = mean_i -min(w_i A_i, clip(w_i) A_i)``. On-policy the two gradients differ by a constant:
the token mean's is the sequence loss's times responses / tokens.
``normalize_advantages`` whitens the advantages over the batch, ``(A - mean) / (std + 1e-4)``
(TRL's option of that name).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from seqmarl.algos.base import (
    AlgoConfig,
    Algorithm,
    AlgoState,
    entropy_term,
    kl_loss_term,
    loss_parts,
    sequence_returns,
)
from seqmarl.algos.core import masked_mean, masked_sum, rloo_baseline
from seqmarl.algos.reinforce import policy_gradient_loss
from seqmarl.types import Advantages, LossOutput, PolicyOutput, RolloutBatch

__all__ = ["RLOO", "RLOOConfig", "rloo_advantages", "rloo_loss", "sequence_ratio_loss"]


class RLOOConfig(AlgoConfig):
    """RLOO hyperparameters."""

    group_size: int = Field(4, ge=2, description="Responses sampled per prompt (k >= 2).")
    clip_coef: float = Field(0.2, gt=0, description="Ratio clip, only active after epoch 1.")
    ratio_level: Literal["token", "sequence"] = Field(
        "token",
        description="token: per-token ratio, mean over tokens; sequence: one ratio per response, "
        "mean over responses (TRL's RLOOTrainer).",
    )
    normalize_advantages: bool = Field(
        False, description="Whiten the advantages over the batch (TRL's normalize_advantages)."
    )


def rloo_advantages(batch: RolloutBatch, cfg: RLOOConfig, state: AlgoState) -> Advantages:
    """Leave-one-out advantages within each prompt group, broadcast over tokens."""
    if batch.group_ids is None:
        raise ValueError("rloo needs group_ids in the rollout batch (k samples per prompt)")
    returns, stats = sequence_returns(batch, cfg, state)  # (B,)
    adv = returns - rloo_baseline(returns, batch.group_ids)  # (B,)
    if cfg.normalize_advantages:
        adv = (adv - adv.mean()) / (adv.std() + 1e-4)
    return Advantages((adv[:, None] * batch.mask).detach(), None, stats)


def sequence_ratio_loss(
    out: PolicyOutput, batch: RolloutBatch, adv: Advantages, cfg: RLOOConfig, kl_coef: float
) -> LossOutput:
    """TRL's RLOO loss: ``mean_i -min(w_i A_i, clip(w_i, 1 +- eps) A_i)``, a ratio per response."""
    mask = batch.mask
    log_ratio = masked_sum(out.logprobs - batch.logprobs, mask, dim=1)  # (B,)
    weight = torch.exp(log_ratio)
    a = adv.advantages[:, 0]  # one advantage per response, broadcast over its tokens
    unclipped = -a * weight
    clipped = -a * torch.clamp(weight, 1.0 - cfg.clip_coef, 1.0 + cfg.clip_coef)
    pg = torch.maximum(unclipped, clipped).mean()
    kl_term, kl_now = kl_loss_term(out, batch, cfg, kl_coef)
    bonus, ent_terms = entropy_term(out, batch, cfg)
    loss, parts = loss_parts(cfg, pg, kl_term, bonus)
    with torch.no_grad():
        token_log_ratio = out.logprobs - batch.logprobs
        terms = {
            **parts,
            "kl_to_ref": kl_now,
            "clip_fraction": (clipped > unclipped).to(pg.dtype).mean(),
            "approx_kl": masked_mean(torch.expm1(token_log_ratio) - token_log_ratio, mask),
            **ent_terms,
        }
    return LossOutput(loss, terms)


_LOSSES = {"token": policy_gradient_loss, "sequence": sequence_ratio_loss}


def rloo_loss(
    out: PolicyOutput, batch: RolloutBatch, adv: Advantages, cfg: RLOOConfig, kl_coef: float
) -> LossOutput:
    """The configured ``ratio_level``'s loss."""
    return _LOSSES[cfg.ratio_level](out, batch, adv, cfg, kl_coef)


RLOO = Algorithm(
    name="rloo",
    config_cls=RLOOConfig,
    advantages=rloo_advantages,
    loss=rloo_loss,
    description="RLOO: k samples per prompt, leave-one-out baseline, no critic",
    loss_reduction=lambda cfg: cfg.ratio_level,
)
