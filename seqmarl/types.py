"""Data passed between agents, algorithms and the trainer.

All per-token tensors are ``(B, T)`` over *response* tokens only (the prompt is not part of
them), right-padded, with ``mask`` marking real tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

__all__ = ["Advantages", "Completions", "LossOutput", "PolicyOutput", "RolloutBatch"]


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


@dataclass
class Completions:
    """A batch of sampled responses.

    Attributes:
        query_ids: ``(B, Tq)`` prompt tokens, left-padded.
        query_mask: ``(B, Tq)`` 1 on real prompt tokens.
        response_ids: ``(B, T)`` sampled tokens, right-padded with the pad id (EOS included).
        response_mask: ``(B, T)`` float, 1 on response tokens.
        logprobs: ``(B, T)`` log-prob of each sampled token under the policy (0 on padding).
        values: ``(B, T)`` value estimates ``V(s_t)`` before each token, or ``None``.
        texts: Decoded responses (special tokens removed).
        entropy: ``(B, T)`` entropy of the sampling policy at each step (0 on padding); it
            comes free with the log-softmax computed for sampling.
        engine_logprobs: ``(B, T)`` the sampled tokens' log-probs under the distribution that
            really sampled them, where that is not the trained model (an inference engine such
            as vLLM: its kernels round differently), else ``None``. ``logprobs - engine_logprobs``
            is the inference/training mismatch the learner logs and can correct for.
        logprobs_from_engine: ``logprobs`` are the engine's (``agents.vllm.logprobs=engine``),
            not a pass of the trained model.
    """

    query_ids: torch.Tensor
    query_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor | None
    texts: list[str]
    entropy: torch.Tensor | None = None
    engine_logprobs: torch.Tensor | None = None
    logprobs_from_engine: bool = False

    def __len__(self) -> int:
        return self.response_ids.shape[0]

    @property
    def lengths(self) -> torch.Tensor:
        """``(B,)`` response lengths in tokens."""
        return self.response_mask.sum(1)

    @staticmethod
    def concat(parts: Sequence[Completions], pad_id: int) -> Completions:
        """Rows of several batches in order (one part: itself).

        Prompts are left-padded and responses right-padded to the widest, with ``pad_id``
        ids and zero masks, log-probs, values and entropies.
        """
        if len(parts) == 1:
            return parts[0]
        tq = max(p.query_ids.shape[1] for p in parts)
        t = max(p.response_ids.shape[1] for p in parts)

        def left(x, width, value):
            return F.pad(x, (width - x.shape[1], 0), value=value)

        def right(x, width, value=0):
            return None if x is None else F.pad(x, (0, width - x.shape[1]), value=value)

        def cat(xs):
            return None if any(x is None for x in xs) else torch.cat(xs)

        return Completions(
            query_ids=torch.cat([left(p.query_ids, tq, pad_id) for p in parts]),
            query_mask=torch.cat([left(p.query_mask, tq, 0) for p in parts]),
            response_ids=torch.cat([right(p.response_ids, t, pad_id) for p in parts]),
            response_mask=torch.cat([right(p.response_mask, t) for p in parts]),
            logprobs=torch.cat([right(p.logprobs, t) for p in parts]),
            values=cat([right(p.values, t) for p in parts]),
            texts=[text for p in parts for text in p.texts],
            entropy=cat([right(p.entropy, t) for p in parts]),
            engine_logprobs=cat([right(p.engine_logprobs, t) for p in parts]),
            logprobs_from_engine=any(p.logprobs_from_engine for p in parts),
        )

    def select(self, idx: torch.Tensor) -> Completions:
        """The rows ``idx``."""
        rows = idx.tolist()
        return Completions(
            self.query_ids[idx],
            self.query_mask[idx],
            self.response_ids[idx],
            self.response_mask[idx],
            self.logprobs[idx],
            None if self.values is None else self.values[idx],
            [self.texts[i] for i in rows],
            None if self.entropy is None else self.entropy[idx],
            None if self.engine_logprobs is None else self.engine_logprobs[idx],
            self.logprobs_from_engine,
        )
