"""REINFORCE with a running-mean baseline (Williams 1992), no critic.

The sequence return is ``G = R - eta * sum_t KL_t`` (KL-penalised trained reward). The
advantage of every token of a response is ``G - b``, where ``b`` is an exponential moving
average of past mean returns (``baseline_decay``), updated after use so the baseline never
sees the batch it scores. Loss: ``-mean_t A * rho_t`` with the PPO clip guarding extra epochs
(with one epoch ``rho = 1`` and this is plain REINFORCE).

``baseline: role`` is SPIRAL's role-conditioned advantage estimation (RAE; Liu et al. 2025,
"SPIRAL: Self-Play on Zero-Sum Games Incentivizes Reasoning via Multi-Agent Multi-Turn
Reinforcement Learning", arXiv 2506.24119, Sec. 3.3). In self-play on a zero-sum game the
same policy plays every role, and one role (the first mover, say) may win more often than the
other whatever the policy does; one shared baseline then credits that to the actions. RAE
keeps a baseline per role ``p`` (the agent's seat) and folds each batch in before use::

    b_p <- alpha * b_p + (1 - alpha) * mean_{responses in role p} G      (alpha = baseline_decay)
    A   =  G - b_p

(SPIRAL updates ``b`` per trajectory; here once per batch with the batch mean of the role, so
the result does not depend on the order of the rows. A role seen for the first time starts
from ``b_p = 0``.)
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
from seqmarl.algos.core import clipped_surrogate
from seqmarl.types import Advantages, LossOutput, PolicyOutput, RolloutBatch

__all__ = ["REINFORCE", "ReinforceConfig", "policy_gradient_loss", "reinforce_advantages"]


class ReinforceConfig(AlgoConfig):
    """REINFORCE hyperparameters."""

    baseline_decay: float = Field(
        0.9, ge=0, lt=1, description="EMA decay of the running-mean baseline (0 = last batch)."
    )
    clip_coef: float = Field(0.2, gt=0, description="Ratio clip, only active after epoch 1.")
    baseline: Literal["running", "role"] = Field(
        "running",
        description="running: one running mean of returns, used before it is updated; role: "
        "one per seat, updated with the batch and then used (SPIRAL's RAE, for self-play).",
    )


def reinforce_advantages(batch: RolloutBatch, cfg: ReinforceConfig, state: AlgoState) -> Advantages:
    """``A_t = G - b`` for every token of a response, ``b`` a running mean of returns."""
    returns, stats = sequence_returns(batch, cfg, state)  # (B,)
    if cfg.baseline == "role":
        return role_advantages(batch, returns, cfg.baseline_decay, state, stats)
    baseline = state.baseline if state.baseline is not None else 0.0
    adv = (returns - baseline)[:, None] * batch.mask  # (B, 1) * (B, T)
    mean_return = float(returns.mean())
    state.baseline = (
        mean_return
        if state.baseline is None
        else cfg.baseline_decay * state.baseline + (1 - cfg.baseline_decay) * mean_return
    )
    stats["baseline"] = baseline
    return Advantages(adv.detach(), None, stats)


def role_advantages(
    batch: RolloutBatch, returns: torch.Tensor, decay: float, state: AlgoState, stats: dict
) -> Advantages:
    """RAE: ``A = G - b_role`` after ``b_role <- decay * b_role + (1 - decay) * mean G``."""
    if batch.roles is None:
        raise ValueError("baseline=role needs each response's role (RolloutBatch.roles)")
    baseline = torch.zeros_like(returns)  # (B,)
    for role in sorted({int(r) for r in batch.roles.tolist()}):
        rows = batch.roles == role
        old = state.role_baselines.get(role, 0.0)
        new = decay * old + (1 - decay) * float(returns[rows].mean())
        state.role_baselines[role] = new
        baseline[rows] = new
        stats[f"baseline_role{role}"] = new
    adv = (returns - baseline)[:, None] * batch.mask  # (B, 1) * (B, T)
    return Advantages(adv.detach(), None, stats)


def policy_gradient_loss(
    out: PolicyOutput, batch: RolloutBatch, adv: Advantages, cfg: AlgoConfig, kl_coef: float
) -> LossOutput:
    """Critic-free policy-gradient loss shared by REINFORCE, RLOO and GRPO.

    ``L = clipped_surrogate(rho, A) + [kl_coef * KL in loss mode] - entropy_coef * H``; at
    ``rho = 1`` (first epoch) its gradient equals REINFORCE's ``-A * grad log pi``.
    """
    pg, clip_frac, approx_kl = clipped_surrogate(
        out.logprobs, batch.logprobs, adv.advantages, batch.mask, cfg.clip_coef
    )
    kl_term, kl_now = kl_loss_term(out, batch, cfg, kl_coef)
    bonus, ent_terms = entropy_term(out, batch, cfg)
    loss, parts = loss_parts(cfg, pg, kl_term, bonus)
    terms = {
        **parts,
        "kl_to_ref": kl_now,
        "clip_fraction": clip_frac,
        "approx_kl": approx_kl,
        **ent_terms,
    }
    return LossOutput(loss, terms)


REINFORCE = Algorithm(
    name="reinforce",
    config_cls=ReinforceConfig,
    advantages=reinforce_advantages,
    loss=policy_gradient_loss,
    description="REINFORCE: KL-penalised sequence return minus a running-mean baseline",
)
