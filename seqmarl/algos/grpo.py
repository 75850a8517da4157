"""GRPO: group-normalised advantages, clipped ratio, k3 KL loss (Shao et al. 2024, DeepSeekMath).

For ``k`` responses to the same prompt with rewards ``R_1..R_k``:

    A_i = (R_i - mean(R)) / (std(R) + eps)

for every token of response ``i``; the loss is the clipped surrogate plus
``beta * KL_k3(pi || pi_ref)`` per token (``kl_mode=loss``, ``kl_estimator=k3`` by default).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from seqmarl.algos.base import AlgoConfig, Algorithm, AlgoState, sequence_returns
from seqmarl.algos.core import group_normalize
from seqmarl.algos.reinforce import policy_gradient_loss
from seqmarl.types import Advantages, RolloutBatch

__all__ = ["GRPO", "GRPOConfig", "grpo_advantages"]


class GRPOConfig(AlgoConfig):
    """GRPO hyperparameters (DeepSeekMath defaults for beta and clip)."""

    group_size: int = Field(4, ge=2, description="Responses sampled per prompt (k >= 2).")
    clip_coef: float = Field(0.2, gt=0, description="Ratio clip epsilon.")
    kl_coef: float = Field(0.04, ge=0, description="KL loss coefficient beta.")
    kl_estimator: Literal["k1", "k2", "k3", "full"] = Field("k3", description="KL estimator.")
    kl_mode: Literal["reward", "loss"] = Field("loss", description="KL as a loss term.")
    scale_rewards: bool = Field(
        True, description="Divide by the group std (False = Dr. GRPO, mean-centred only)."
    )


def grpo_advantages(batch: RolloutBatch, cfg: GRPOConfig, state: AlgoState) -> Advantages:
    """Group-normalised sequence advantages, broadcast over tokens."""
    if batch.group_ids is None:
        raise ValueError("grpo needs group_ids in the rollout batch (k samples per prompt)")
    returns, stats = sequence_returns(batch, cfg, state)  # (B,)
    adv = group_normalize(returns, batch.group_ids, scale=cfg.scale_rewards)  # (B,)
    return Advantages((adv[:, None] * batch.mask).detach(), None, stats)


GRPO = Algorithm(
    name="grpo",
    config_cls=GRPOConfig,
    advantages=grpo_advantages,
    loss=policy_gradient_loss,
    description="GRPO: group-normalised advantages, clipped ratio, k3 KL loss",
)
