"""RLOO: REINFORCE with a leave-one-out baseline over k samples per prompt.

Kool et al. 2019 ("Buy 4 REINFORCE samples, get a baseline for free!"), as used for RLHF by
Ahmadian et al. 2024. For ``k`` responses to the same prompt with returns ``G_1..G_k``
(``G = R - eta * sum_t KL_t``), the advantage of response ``i`` is

    A_i = G_i - 1/(k-1) * sum_{j != i} G_j

applied to every token of response ``i``; the loss is the critic-free policy-gradient loss.
"""

from __future__ import annotations

from pydantic import Field

from seqmarl.algos.base import AlgoConfig, Algorithm, AlgoState, sequence_returns
from seqmarl.algos.core import rloo_baseline
from seqmarl.algos.reinforce import policy_gradient_loss
from seqmarl.types import Advantages, RolloutBatch

__all__ = ["RLOO", "RLOOConfig", "rloo_advantages"]


class RLOOConfig(AlgoConfig):
    """RLOO hyperparameters."""

    group_size: int = Field(4, ge=2, description="Responses sampled per prompt (k >= 2).")
    clip_coef: float = Field(0.2, gt=0, description="Ratio clip, only active after epoch 1.")


def rloo_advantages(batch: RolloutBatch, cfg: RLOOConfig, state: AlgoState) -> Advantages:
    """Leave-one-out advantages within each prompt group, broadcast over tokens."""
    if batch.group_ids is None:
        raise ValueError("rloo needs group_ids in the rollout batch (k samples per prompt)")
    returns, stats = sequence_returns(batch, cfg, state)  # (B,)
    adv = returns - rloo_baseline(returns, batch.group_ids)  # (B,)
    return Advantages((adv[:, None] * batch.mask).detach(), None, stats)


RLOO = Algorithm(
    name="rloo",
    config_cls=RLOOConfig,
    advantages=rloo_advantages,
    loss=policy_gradient_loss,
    description="RLOO: k samples per prompt, leave-one-out baseline, no critic",
)
