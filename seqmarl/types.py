"""Data passed between agents, algorithms and the trainer.

All per-token tensors are ``(B, T)`` over *response* tokens only (the prompt is not part of
them), right-padded, with ``mask`` marking real tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["Advantages", "LossOutput", "PolicyOutput", "RolloutBatch"]


@dataclass
class RolloutBatch:
    """One agent's experience from one iteration.

    Attributes:
        logprobs: ``(B, T)`` log-prob of each sampled token under the policy that sampled it.
        ref_logprobs: ``(B, T)`` log-prob of the same tokens under the frozen reference.
        mask: ``(B, T)`` 1.0 for response tokens, 0.0 for padding.
        rewards: ``(B,)`` trained reward of each response (after the coefficient matrix).
        values: ``(B, T)`` value estimates at sampling time (PPO), else ``None``.
        kl: ``(B, T)`` per-token KL to the reference measured at sampling time; ``None`` means
            "estimate it from ``logprobs - ref_logprobs``" with the configured estimator.
        group_ids: ``(B,)`` integer id of the prompt each response answers (RLOO/GRPO groups).
        roles: ``(B,)`` the seat the agent played in each response's game (the role of a
            role-conditioned baseline); ``None`` where not known.
    """

    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    mask: torch.Tensor
    rewards: torch.Tensor
    values: torch.Tensor | None = None
    kl: torch.Tensor | None = None
    group_ids: torch.Tensor | None = None
    roles: torch.Tensor | None = None

    def __post_init__(self):
        b, t = self.logprobs.shape
        for name in ("ref_logprobs", "mask", "values", "kl"):
            x = getattr(self, name)
            if x is not None and x.shape != (b, t):
                raise ValueError(f"RolloutBatch.{name}: expected shape {(b, t)}, got {x.shape}")
        if self.rewards.shape != (b,):
            raise ValueError(
                f"RolloutBatch.rewards: expected shape {(b,)}, got {self.rewards.shape}"
            )
        if self.group_ids is not None and self.group_ids.shape != (b,):
            raise ValueError(f"RolloutBatch.group_ids: expected {(b,)}, got {self.group_ids.shape}")

    def __len__(self) -> int:
        return self.logprobs.shape[0]

    def select(self, idx: torch.Tensor) -> RolloutBatch:
        """The rows ``idx`` (a minibatch)."""
        pick = lambda x: None if x is None else x[idx]  # noqa: E731
        return RolloutBatch(
            logprobs=self.logprobs[idx],
            ref_logprobs=self.ref_logprobs[idx],
            mask=self.mask[idx],
            rewards=self.rewards[idx],
            values=pick(self.values),
            kl=pick(self.kl),
            group_ids=pick(self.group_ids),
            roles=pick(self.roles),
        )


@dataclass
class Advantages:
    """What an algorithm computes once per rollout, before its update epochs.

    Attributes:
        advantages: ``(B, T)`` per-token advantage (zero on padding).
        returns: ``(B, T)`` value targets, or ``None`` without a critic.
        stats: Scalars to log (e.g. GRPO's ``overlong_penalty``).
    """

    advantages: torch.Tensor
    returns: torch.Tensor | None = None
    stats: dict[str, float] = field(default_factory=dict)

    def select(self, idx: torch.Tensor) -> Advantages:
        """The rows ``idx``."""
        ret = None if self.returns is None else self.returns[idx]
        return Advantages(self.advantages[idx], ret, self.stats)


@dataclass
class PolicyOutput:
    """The current policy's view of a minibatch, recomputed during the update.

    Attributes:
        logprobs: ``(B, T)`` log-prob of the sampled tokens under the current policy.
        values: ``(B, T)`` current value estimates, or ``None``.
        entropy: ``(B, T)`` entropy of the current next-token distribution, or ``None``.
        kl: ``(B, T)`` exact KL to the reference over the vocabulary (``kl_estimator=full``
            with ``kl_mode=loss``), or ``None``.
    """

    logprobs: torch.Tensor
    values: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    kl: torch.Tensor | None = None


@dataclass
class LossOutput:
    """A loss and its named terms.

    Attributes:
        loss: Scalar to minimise.
        terms: Detached scalars for logging: the loss's parts as they enter it
            (``loss_policy``, ``loss_value``, ``loss_kl``, ``loss_entropy``; they add up to
            ``loss``) and diagnostics (``kl_to_ref``, ``clip_fraction``, ``entropy``,
            ``approx_kl``), as applicable.
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
