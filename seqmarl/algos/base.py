"""What every algorithm shares: the config fields, per-agent state and the registry entry.

An algorithm is two pure functions over tensors:

* ``advantages(batch, cfg, state) -> Advantages``: once per rollout, before the update epochs
  (it may fold new rewards into ``state``: running moments, a baseline, ...);
* ``loss(policy_output, batch, advantages, cfg, kl_coef) -> LossOutput``: once per minibatch.

The optimizer step, epochs and minibatching are the trainer's business; ``state`` (KL
controller, reward moments, baseline) belongs to the agent and moves with it across seats.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from seqmarl.algos.core import (
    AdaptiveKLController,
    FixedKLController,
    RunningMoments,
    kl_estimate,
    masked_mean,
    masked_sum,
)
from seqmarl.run.registry import Registry
from seqmarl.types import Advantages, LossOutput, PolicyOutput, RolloutBatch

__all__ = [
    "ALGORITHMS",
    "AlgoConfig",
    "AlgoState",
    "Algorithm",
    "entropy_term",
    "kl_loss_term",
    "kl_tokens",
    "loss_parts",
    "normalize_rewards",
    "rollout_kl",
    "sequence_returns",
    "with_response_limit",
]


class AlgoConfig(BaseModel):
    """Fields every algorithm has. Subclasses change defaults and add their own."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    lr: float = Field(1e-5, gt=0, description="Adam learning rate.")
    epochs: int = Field(1, ge=1, description="Passes over each rollout batch.")
    minibatch_size: int | None = Field(
        None, ge=1, description="Responses per optimizer step; None = the whole batch."
    )
    grad_accum_steps: int = Field(
        1,
        ge=1,
        description="Run each minibatch in chunks of at most 1/this of its rows (bounds "
        "activation memory) and sum their grads.",
    )
    chunk_overhead: float = Field(
        0.05,
        ge=0,
        description="Cut each minibatch into length-sorted chunks where that saves more padded "
        "tokens than this fraction of the minibatch's cost per extra pass (exact: same "
        "gradient); raise it on GPUs, where small chunks are inefficient; >= 1 turns it off.",
    )
    max_grad_norm: float | None = Field(1.0, gt=0, description="Grad-norm clip; None = off.")
    group_size: int = Field(1, ge=1, description="Responses sampled per prompt (k).")
    kl_coef: float = Field(0.05, ge=0, description="Initial KL coefficient (eta / beta).")
    kl_estimator: Literal["k1", "k2", "k3", "full"] = Field(
        "k1", description="Per-token KL estimator; full = exact KL over the vocabulary."
    )
    kl_mode: Literal["reward", "loss"] = Field(
        "reward",
        description="reward: r_t -= kl_coef * KL_t (the paper's Eq. 2); loss: add kl_coef * KL.",
    )
    adaptive_kl: bool = Field(False, description="Adapt kl_coef towards kl_target (Ziegler 2019).")
    kl_target: float = Field(6.0, gt=0, description="Target summed KL per response (adaptive).")
    kl_horizon: int = Field(10000, ge=1, description="Adaptive KL horizon in samples.")
    reward_norm: Literal["none", "scale", "whiten"] = Field(
        "none",
        description="Running-moment reward normalisation: scale = divide by std; "
        "whiten = subtract mean and divide by std.",
    )
    reward_clip: float | None = Field(None, gt=0, description="Clip rewards to +-this after norm.")
    entropy_coef: float = Field(0.0, ge=0, description="Entropy bonus coefficient.")


@dataclass
class AlgoState:
    """Per-agent mutable state an algorithm keeps across iterations (checkpointed)."""

    kl: FixedKLController | AdaptiveKLController
    reward_moments: RunningMoments = field(default_factory=RunningMoments)
    baseline: float | None = None
    #: role (seat) -> its running baseline (REINFORCE with ``baseline=role``)
    role_baselines: dict[int, float] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: AlgoConfig) -> AlgoState:
        """Fresh state: the KL controller the config asks for."""
        kl = (
            AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)
            if cfg.adaptive_kl
            else FixedKLController(cfg.kl_coef)
        )
        return cls(kl=kl)

    def state_dict(self) -> dict:
        """Serializable state."""
        return {
            "kl": self.kl.state_dict(),
            "reward_moments": self.reward_moments.state_dict(),
            "baseline": self.baseline,
            "role_baselines": dict(self.role_baselines),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""
        self.kl.load_state_dict(state["kl"])
        self.reward_moments.load_state_dict(state["reward_moments"])
        self.baseline = state["baseline"]
        self.role_baselines = {int(k): v for k, v in state.get("role_baselines", {}).items()}


@dataclass(frozen=True)
class Algorithm:
    """A registered algorithm: its config type and its two functions."""

    name: str
    config_cls: type[AlgoConfig]
    advantages: Callable[[RolloutBatch, AlgoConfig, AlgoState], Advantages]
    loss: Callable[[PolicyOutput, RolloutBatch, Advantages, AlgoConfig, float], LossOutput]
    uses_value_head: bool = False
    description: str = ""
    #: How ``loss`` averages over a minibatch: ``"token"`` (mean over response tokens, every
    #: built-in algorithm) or ``"sequence"`` (mean over responses). The learner splits a
    #: minibatch into chunks and weights each chunk's loss by its share of tokens or rows, so
    #: the summed gradient equals the whole minibatch's.
    #: A callable takes the algorithm's config (an aggregation chosen per run).
    loss_reduction: (
        Literal["token", "sequence"] | Callable[[AlgoConfig], Literal["token", "sequence"]]
    ) = "token"

    def reduction(self, cfg: AlgoConfig) -> Literal["token", "sequence"]:
        """How ``loss`` averages a minibatch under ``cfg`` (see ``loss_reduction``)."""
        r = self.loss_reduction
        return r if isinstance(r, str) else r(cfg)

    def make_config(self, **params) -> AlgoConfig:
        """Validate ``params`` into this algorithm's config."""
        return self.config_cls(**params)


def with_response_limit(cfg: AlgoConfig, limit: int) -> AlgoConfig:
    """``cfg`` with an unset ``response_limit`` field set to ``limit`` (the generation's)."""
    if getattr(cfg, "response_limit", 0) is None:
        return cfg.model_copy(update={"response_limit": limit})
    return cfg


ALGORITHMS: Registry[Algorithm] = Registry("algorithm")


def rollout_kl(batch: RolloutBatch, cfg: AlgoConfig) -> torch.Tensor:
    """``(B, T)`` per-token KL measured at sampling time (padding zeroed)."""
    if batch.kl is not None:
        kl = batch.kl
    elif cfg.kl_estimator == "full":
        raise ValueError("kl_estimator=full needs the rollout to carry batch.kl (exact KL)")
    else:
        kl = kl_estimate(batch.logprobs, batch.ref_logprobs, cfg.kl_estimator)
    return kl * batch.mask


def normalize_rewards(rewards: torch.Tensor, cfg: AlgoConfig, state: AlgoState) -> torch.Tensor:
    """Apply the configured running-moment normalisation and clipping to ``(B,)`` rewards."""
    if cfg.reward_norm != "none":
        state.reward_moments.update(rewards)
        std = max(state.reward_moments.std, 1e-8)
        if cfg.reward_norm == "whiten":
            rewards = (rewards - state.reward_moments.mean) / std
        else:
            rewards = rewards / std
    if cfg.reward_clip is not None:
        rewards = rewards.clamp(-cfg.reward_clip, cfg.reward_clip)
    return rewards


def sequence_returns(
    batch: RolloutBatch, cfg: AlgoConfig, state: AlgoState
) -> tuple[torch.Tensor, dict[str, float]]:
    """``(B,)`` sequence return: normalised reward minus ``kl_coef * sum_t KL_t`` (reward mode)."""
    rewards = normalize_rewards(batch.rewards.to(batch.logprobs.dtype), cfg, state)
    kl_sum = masked_sum(rollout_kl(batch, cfg), batch.mask, dim=1)  # (B,)
    penalty = state.kl.value * kl_sum if cfg.kl_mode == "reward" else torch.zeros_like(kl_sum)
    stats = {"kl_penalty": float(penalty.mean()), "score": float(rewards.mean())}
    return rewards - penalty, stats


def kl_tokens(out: PolicyOutput, batch: RolloutBatch, cfg: AlgoConfig) -> torch.Tensor:
    """``(B, T)`` per-token KL of the current policy to the reference.

    The configured estimator on the sampled tokens, or the exact KL when ``out.kl`` is given.
    """
    if out.kl is not None:
        return out.kl
    if cfg.kl_estimator == "full" and cfg.kl_mode == "loss":
        raise ValueError("kl_estimator=full with kl_mode=loss needs PolicyOutput.kl (exact KL)")
    # In reward mode the value is only logged; k3 stands in for the exact KL.
    estimator = "k3" if cfg.kl_estimator == "full" else cfg.kl_estimator
    return kl_estimate(out.logprobs, batch.ref_logprobs, estimator)


def kl_loss_term(
    out: PolicyOutput, batch: RolloutBatch, cfg: AlgoConfig, kl_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss_term, kl_to_ref)``: the KL-as-loss term (0 in reward mode) and the current KL.

    ``kl_to_ref`` is the token-mean KL of the current policy to the reference, with the
    configured estimator (exact KL when ``out.kl`` is given).
    """
    kl_mean = masked_mean(kl_tokens(out, batch, cfg), batch.mask)
    term = kl_coef * kl_mean if cfg.kl_mode == "loss" else torch.zeros_like(kl_mean)
    return term, kl_mean.detach()


def entropy_term(
    out: PolicyOutput, batch: RolloutBatch, cfg: AlgoConfig
) -> tuple[torch.Tensor | float, dict[str, torch.Tensor]]:
    """``(bonus, terms)``: the entropy bonus to subtract from the loss and its logged value."""
    if out.entropy is None:
        return 0.0, {}
    ent = masked_mean(out.entropy, batch.mask)
    return cfg.entropy_coef * ent, {"entropy": ent.detach()}


def loss_parts(
    cfg: AlgoConfig,
    policy: torch.Tensor,
    kl: torch.Tensor | float,
    bonus: torch.Tensor | float,
    **more: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(loss, terms)``: the loss as the sum of its weighted parts, each logged as ``loss_<part>``.

    ``policy`` and each of ``more`` (``value=vf_coef * vf``) enter as given; ``kl`` (already
    times its coefficient) only with ``kl_mode=loss``; ``bonus`` (entropy times its
    coefficient) is subtracted, and logged as the negative ``loss_entropy``, only with
    ``entropy_coef > 0``. The logged ``loss_*`` terms add up to the loss.
    """
    parts = {"policy": policy, **more}
    if cfg.kl_mode == "loss":
        parts["kl"] = kl
    if cfg.entropy_coef > 0 and isinstance(bonus, torch.Tensor):
        parts["entropy"] = -bonus
    total = sum(parts.values())
    terms = {f"loss_{k}": torch.as_tensor(v).detach() for k, v in parts.items()}
    return total, terms
