"""Tensor math that both the agents and the algorithms use (the lowest layer: torch only).

:mod:`seqmarl.algos.core` re-exports these; the agents import them from here, so an agent's
file does not import the algorithms' layer above it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["draw_length", "entropy_from_logits", "full_kl"]


def full_kl(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """Exact ``KL(softmax(logits) || softmax(ref_logits))`` per position: ``(..., V) -> (...)``."""
    logp = F.log_softmax(logits.float(), dim=-1)
    logq = F.log_softmax(ref_logits.float(), dim=-1)
    return (logp.exp() * (logp - logq)).sum(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of ``softmax(logits)`` per position: ``(..., V) -> (...)``."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def draw_length(low: int, high: int, generator: torch.Generator | None = None) -> int:
    """A response length drawn uniformly from ``low..high`` (the paper's length sampler)."""
    device = generator.device if generator is not None else None
    return low + int(torch.randint(high - low + 1, (1,), generator=generator, device=device))
