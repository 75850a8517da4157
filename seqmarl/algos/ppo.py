"""PPO with a per-token KL penalty, as used by CORY (and TRL's original PPOTrainer).

Per-token reward (the paper's Eq. 2): ``r_t = -eta * KL_t`` plus the trained reward ``R`` at
the last response token. Advantages by GAE(gamma, lambda) over response tokens, whitened;
clipped surrogate policy loss and clipped value loss (Schulman et al. 2017):

    L = L_clip(rho, A) + vf_coef * L_V - entropy_coef * H (+ eta * KL in ``kl_mode=loss``)

Defaults follow the paper's IMDB table: lr 1.41e-5, 4 epochs, initial KL coefficient 0.3,
gamma 1, lambda 0.95, clip 0.2, value clip 0.2, value coefficient 0.1, adaptive KL.
"""

from __future__ import annotations

import torch
from pydantic import Field

from seqmarl.algos.base import (
    AlgoConfig,
    Algorithm,
    AlgoState,
    entropy_term,
    kl_loss_term,
    loss_parts,
    normalize_rewards,
    rollout_kl,
)
from seqmarl.algos.core import (
    clipped_surrogate,
    clipped_value_loss,
    gae,
    last_token_index,
    masked_mean,
    masked_whiten,
)
from seqmarl.types import Advantages, LossOutput, PolicyOutput, RolloutBatch

__all__ = ["PPO", "PPOConfig", "ppo_advantages", "ppo_loss"]


class PPOConfig(AlgoConfig):
    """PPO hyperparameters (CleanRL names); defaults = CORY's IMDB table."""

    lr: float = Field(1.41e-5, gt=0, description="Adam learning rate.")
    epochs: int = Field(4, ge=1, description="PPO epochs over each rollout batch.")
    kl_coef: float = Field(0.3, ge=0, description="Initial KL coefficient eta.")
    adaptive_kl: bool = Field(True, description="Adapt eta towards kl_target (Ziegler 2019).")
    gamma: float = Field(1.0, ge=0, le=1, description="Discount over response tokens.")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="GAE lambda.")
    clip_coef: float = Field(0.2, gt=0, description="Policy ratio clip epsilon.")
    vf_clip_coef: float = Field(0.2, gt=0, description="Value clip around the old value.")
    vf_coef: float = Field(0.1, ge=0, description="Value loss coefficient.")
    whiten_advantages: bool = Field(True, description="Whiten advantages over the batch.")


def ppo_advantages(batch: RolloutBatch, cfg: PPOConfig, state: AlgoState) -> Advantages:
    """GAE advantages and value targets from per-token KL-penalised rewards.

    Shapes: ``batch`` is ``(B, T)``; returns ``(B, T)`` advantages and returns.
    """
    if batch.values is None:
        raise ValueError("ppo needs values in the rollout batch (agent with a value head)")
    mask = batch.mask.to(batch.logprobs.dtype)
    kl = rollout_kl(batch, cfg)  # (B, T)
    eta = state.kl.value if cfg.kl_mode == "reward" else 0.0
    token_rewards = -eta * kl  # (B, T)
    score = normalize_rewards(batch.rewards.to(mask.dtype), cfg, state)  # (B,)
    last = last_token_index(mask)  # (B,)
    rows = torch.arange(len(batch), device=mask.device)
    token_rewards[rows, last] += score * mask[rows, last]
    adv, returns = gae(token_rewards, batch.values, mask, cfg.gamma, cfg.gae_lambda)
    if cfg.whiten_advantages:
        adv = masked_whiten(adv, mask)
    stats = {
        "score": float(score.mean()),
        "kl_penalty": float((eta * (kl * mask).sum(1)).mean()),
        "returns_mean": float(masked_mean(returns, mask)),
    }
    return Advantages(adv.detach(), returns.detach(), stats)


def ppo_loss(
    out: PolicyOutput, batch: RolloutBatch, adv: Advantages, cfg: PPOConfig, kl_coef: float
) -> LossOutput:
    """Clipped surrogate + clipped value loss (+ KL loss, - entropy bonus)."""
    if out.values is None or batch.values is None or adv.returns is None:
        raise ValueError("ppo_loss needs current values, old values and returns")
    mask = batch.mask
    pg, clip_frac, approx_kl = clipped_surrogate(
        out.logprobs, batch.logprobs, adv.advantages, mask, cfg.clip_coef
    )
    vf, vf_clip_frac = clipped_value_loss(
        out.values, batch.values, adv.returns, mask, cfg.vf_clip_coef
    )
    kl_term, kl_now = kl_loss_term(out, batch, cfg, kl_coef)
    bonus, ent_terms = entropy_term(out, batch, cfg)
    loss, parts = loss_parts(cfg, pg, kl_term, bonus, value=cfg.vf_coef * vf)
    terms = {
        **parts,
        "kl_to_ref": kl_now,
        "clip_fraction": clip_frac,
        "value_clip_fraction": vf_clip_frac,
        "approx_kl": approx_kl,
        **ent_terms,
    }
    return LossOutput(loss, terms)


PPO = Algorithm(
    name="ppo",
    config_cls=PPOConfig,
    advantages=ppo_advantages,
    loss=ppo_loss,
    uses_value_head=True,
    description="PPO: per-token KL-penalised reward, GAE, clipped policy and value losses",
)
