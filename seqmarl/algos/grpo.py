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
    sequence_returns,
)
from seqmarl.algos.core import group_normalize, masked_mean
from seqmarl.algos.objectives import AGGREGATIONS, RATIOS, SURROGATES, reduction
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
    surrogate: Literal["clip", "cispo"] = Field(
        "clip",
        description="clip: PPO's clipped ratio; cispo: the clipped importance weight, without "
        "gradient, times log pi (CISPO).",
    )
    cispo_max: float = Field(5.0, gt=0, description="CISPO's cap on the importance weight.")
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
    if cfg.scale_rewards == "batch":  # centred by group, scaled by the whole batch's std
        centred = group_normalize(returns, batch.group_ids, scale=False)
        adv = centred / (returns.std() + 1e-4)
    else:
        adv = group_normalize(returns, batch.group_ids, scale=cfg.scale_rewards == "group")
    return Advantages((adv[:, None] * batch.mask).detach(), None, stats)


def grpo_loss(
    out: PolicyOutput, batch: RolloutBatch, adv: Advantages, cfg: GRPOConfig, kl_coef: float
) -> LossOutput:
    """``AGG(surrogate) + kl_coef * AGG(KL) - entropy_coef * H`` (the module docstring)."""
    mask = batch.mask
    aggregate = AGGREGATIONS[cfg.loss_aggregation]
    log_ratio = out.logprobs - batch.logprobs
    weight = torch.exp(RATIOS[cfg.importance_sampling](log_ratio, mask))
    eps_high = cfg.clip_coef if cfg.clip_high is None else cfg.clip_high
    per_token, clipped = SURROGATES[cfg.surrogate](
        weight, adv.advantages, out.logprobs, cfg.clip_coef, eps_high, cfg.cispo_max
    )
    pg = aggregate(per_token, mask, cfg.response_limit)
    kl = kl_tokens(out, batch, cfg)
    kl_term = kl_coef * aggregate(kl, mask, cfg.response_limit) if cfg.kl_mode == "loss" else 0.0
    bonus, ent_terms = entropy_term(out, batch, cfg)
    with torch.no_grad():
        terms = {
            "loss_policy": pg.detach(),
            "kl_to_ref": masked_mean(kl, mask).detach(),
            "clip_fraction": masked_mean(clipped.to(log_ratio.dtype), mask),
            "approx_kl": masked_mean(torch.expm1(log_ratio) - log_ratio, mask),
            **ent_terms,
        }
    return LossOutput(pg + kl_term - bonus, terms)


GRPO = Algorithm(
    name="grpo",
    config_cls=GRPOConfig,
    advantages=grpo_advantages,
    loss=grpo_loss,
    description="GRPO: group-normalised advantages, clipped ratio, k3 KL loss",
    loss_reduction=lambda cfg: reduction(cfg.loss_aggregation),
)
