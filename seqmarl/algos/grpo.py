"""GRPO and its variants: group-normalised advantages and a clipped policy-gradient loss.

For ``k`` responses to the same prompt with rewards ``R_1..R_k`` (Shao et al. 2024,
DeepSeekMath, arXiv 2402.03300):

    A_i = (R_i - mean(R)) / (std + eps)

for every token of response ``i``, with ``std`` the group's (``scale_rewards=group``), the
whole batch's (``batch``) or 1 (``none``: Dr. GRPO). The loss is
``AGG(surrogate + beta * KL_k3)`` per token, with the importance weight, surrogate and
aggregation chosen in the config (:mod:`seqmarl.algos.objectives` gives each one's equation
and paper). The defaults are a token-mean, per-token clipped ratio (TRL's ``bnpo``); DeepSeekMath's
own per-response mean is ``loss_aggregation=sequence``.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, field_validator

from seqmarl.algos.base import (
    AlgoConfig,
    Algorithm,
    AlgoState,
    entropy_term,
    kl_tokens,
    loss_parts,
    sequence_returns,
)
from seqmarl.algos.core import group_normalize, masked_mean
from seqmarl.algos.objectives import (
    AGGREGATIONS,
    RATIOS,
    SURROGATES,
    overlong_penalty,
    reduction,
)
from seqmarl.types import Advantages, LossOutput, PolicyOutput, RolloutBatch

__all__ = ["GRPO", "GRPOConfig", "grpo_advantages", "grpo_loss"]


class GRPOConfig(AlgoConfig):
    """GRPO hyperparameters (DeepSeekMath defaults for beta and clip)."""

    group_size: int = Field(4, ge=2, description="Responses sampled per prompt (k >= 2).")
    clip_coef: float = Field(0.2, gt=0, description="Ratio clip epsilon (the lower one).")
    clip_high: float | None = Field(
        None, gt=0, description="Upper ratio clip epsilon (DAPO clip-higher); None = clip_coef."
    )
    kl_coef: float = Field(0.04, ge=0, description="KL loss coefficient beta.")
    kl_estimator: Literal["k1", "k2", "k3", "full"] = Field("k3", description="KL estimator.")
    kl_mode: Literal["reward", "loss"] = Field("loss", description="KL as a loss term.")
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group",
        description="Divide centred rewards by the group's std, the batch's std, or nothing "
        "(none = Dr. GRPO); true/false mean group/none.",
    )
    loss_aggregation: Literal["token", "sequence", "constant"] = Field(
        "token",
        description="token: mean over all response tokens (DAPO; TRL bnpo/dapo); sequence: mean "
        "over responses of each one's token mean (DeepSeekMath; TRL grpo); constant: token sum "
        "over rows x response_limit (Dr. GRPO; TRL dr_grpo).",
    )
    importance_sampling: Literal["token", "sequence"] = Field(
        "token", description="Importance weight per token, or per response (GSPO)."
    )
    surrogate: Literal["clip", "cispo", "sapo"] = Field(
        "clip",
        description="clip: PPO's clipped ratio; cispo: the clipped importance weight, without "
        "gradient, times log pi (CISPO); sapo: a soft sigmoid gate instead of the clip (SAPO).",
    )
    cispo_max: float = Field(5.0, gt=0, description="CISPO's cap on the importance weight.")
    sapo_tau_pos: float = Field(1.0, gt=0, description="SAPO's gate temperature for A > 0.")
    sapo_tau_neg: float = Field(1.05, gt=0, description="SAPO's gate temperature for A <= 0.")
    kl_importance_weight: bool = Field(
        False,
        description="Weight the KL loss per token by the importance weight w (TRL's "
        "use_bias_correction_kl, its default): unbiased when the batch is off-policy.",
    )
    overlong_buffer: int | None = Field(
        None,
        ge=1,
        description="DAPO's soft overlong punishment: from response_limit - this tokens on, "
        "the reward falls linearly to -1 at response_limit; None = off.",
    )
    response_limit: int | None = Field(
        None,
        ge=1,
        description="The constant aggregation's response length; None = the run's "
        "agents.generation.max_new_tokens.",
    )

    @field_validator("scale_rewards", mode="before")
    @classmethod
    def _bool_scale(cls, v):
        return {True: "group", False: "none"}.get(v, v) if isinstance(v, bool) else v


def grpo_advantages(batch: RolloutBatch, cfg: GRPOConfig, state: AlgoState) -> Advantages:
    """Group-centred sequence advantages, scaled as configured, broadcast over tokens."""
    if batch.group_ids is None:
        raise ValueError("grpo needs group_ids in the rollout batch (k samples per prompt)")
    returns, stats = sequence_returns(batch, cfg, state)  # (B,)
    if cfg.overlong_buffer is not None:
        penalty = overlong_penalty(batch.mask.sum(1), _limit(cfg), cfg.overlong_buffer)
        returns = returns + penalty.to(returns.dtype)
        stats["overlong_penalty"] = float(penalty.mean())
    if cfg.scale_rewards == "batch":  # centred by group, scaled by the whole batch's std
        centred = group_normalize(returns, batch.group_ids, scale=False)
        adv = centred / (returns.std() + 1e-4)
    else:
        adv = group_normalize(returns, batch.group_ids, scale=cfg.scale_rewards == "group")
    return Advantages((adv[:, None] * batch.mask).detach(), None, stats)


def _limit(cfg: GRPOConfig) -> int:
    if cfg.response_limit is None:
        raise ValueError("grpo: overlong_buffer needs the response length limit (response_limit)")
    return cfg.response_limit


def grpo_loss(
    out: PolicyOutput, batch: RolloutBatch, adv: Advantages, cfg: GRPOConfig, kl_coef: float
) -> LossOutput:
    """``AGG(surrogate) + kl_coef * AGG(KL) - entropy_coef * H`` (the module docstring)."""
    mask = batch.mask
    aggregate = AGGREGATIONS[cfg.loss_aggregation]
    log_ratio = out.logprobs - batch.logprobs
    weight = torch.exp(RATIOS[cfg.importance_sampling](log_ratio, mask))
    per_token, clipped = SURROGATES[cfg.surrogate](weight, adv.advantages, out.logprobs, cfg)
    pg = aggregate(per_token, mask, cfg.response_limit)
    kl = kl_tokens(out, batch, cfg)
    weighted = kl * weight if cfg.kl_importance_weight else kl
    kl_term = (
        kl_coef * aggregate(weighted, mask, cfg.response_limit) if cfg.kl_mode == "loss" else 0.0
    )
    bonus, ent_terms = entropy_term(out, batch, cfg)
    loss, parts = loss_parts(cfg, pg, kl_term, bonus)
    with torch.no_grad():
        terms = {
            **parts,
            "kl_to_ref": masked_mean(kl, mask).detach(),
            "clip_fraction": masked_mean(clipped.to(log_ratio.dtype), mask),
            "approx_kl": masked_mean(torch.expm1(log_ratio) - log_ratio, mask),
            **ent_terms,
        }
    return LossOutput(loss, terms)


GRPO = Algorithm(
    name="grpo",
    config_cls=GRPOConfig,
    advantages=grpo_advantages,
    loss=grpo_loss,
    description="GRPO: group-normalised advantages, clipped ratio, k3 KL loss",
    loss_reduction=lambda cfg: reduction(cfg.loss_aggregation),
)
