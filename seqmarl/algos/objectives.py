"""The parts of a clipped policy-gradient loss, each a pure function and a registered choice.

GRPO's family of losses (``grpo`` and its variants) is one formula with three choices::

    L = AGG( s_t(w, A, log pi) + beta * KL_t )  -  entropy_coef * H

* ``w``, the importance weight of the current policy against the one that sampled
  (:data:`RATIOS`, the config's ``importance_sampling``):

  - ``token``: ``w_t = pi(a_t) / pi_old(a_t)`` (PPO, Schulman et al. 2017);
  - ``sequence``: ``w = exp(mean_t log w_t)``, one weight per response, the length-normalised
    sequence likelihood ratio (GSPO, Zheng et al. 2025, arXiv 2507.18071).

* ``s``, the surrogate (:data:`SURROGATES`, ``surrogate``):

  - ``clip``: ``-min(w A, clip(w, 1 - eps_low, 1 + eps_high) A)``; ``eps_high > eps_low`` is
    DAPO's clip-higher (Yu et al. 2025, arXiv 2503.14476);
  - ``cispo``: ``-sg(min(w, w_max)) A log pi``: the importance weight is clipped and carries no
    gradient, so no token's gradient is dropped (CISPO, MiniMax-M1, arXiv 2506.13585);
  - ``sapo``: ``-(4 / tau) sigmoid(tau (w - 1)) A``, a soft gate in place of the clip, with
    its own temperature for positive and negative advantages (SAPO, arXiv 2511.20347).

* ``AGG``, over the response tokens ``m`` of ``B`` responses (:data:`AGGREGATIONS`,
  ``loss_aggregation``):

  - ``token``: ``sum_it x m / sum_it m``: every token counts the same (DAPO; TRL's ``bnpo``
    and ``dapo``);
  - ``sequence``: ``mean_i (sum_t x m / sum_t m)``: every response counts the same, so a long
    response's tokens count less (Shao et al. 2024, DeepSeekMath's Eq. 3; TRL's ``grpo``);
  - ``constant``: ``sum_it x m / (B * L)``, ``L`` the response length limit: Dr. GRPO's
    length-unbiased normaliser (Liu et al. 2025, arXiv 2503.20783; TRL's ``dr_grpo``).

Each aggregation is linear, so ``AGG(s + beta KL) = AGG(s) + beta AGG(KL)``: the two terms are
logged apart and add up to the loss. The learner splits a minibatch into chunks and weights each
chunk by its share of tokens (``token``) or of rows (the other two), which keeps the summed
gradient the whole minibatch's (:func:`reduction`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from seqmarl.algos.core import masked_mean, masked_sum

__all__ = ["AGGREGATIONS", "RATIOS", "SURROGATES", "overlong_penalty", "reduction"]


def token_log_weights(log_ratio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, T)``: one importance weight per token, in log space."""
    return log_ratio


def sequence_log_weights(log_ratio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, 1)``: GSPO's ``mean_t log w_t`` per response (its padding does not count)."""
    return masked_mean(log_ratio, mask, dim=1)[:, None]


def clipped_surrogate(
    weight: torch.Tensor, advantages: torch.Tensor, logprobs: torch.Tensor, cfg
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(per-token loss, clipped)``: ``-min(w A, clip(w, 1-eps_low, 1+eps_high) A)``."""
    eps_high = cfg.clip_coef if cfg.clip_high is None else cfg.clip_high
    unclipped = -advantages * weight
    clipped = -advantages * torch.clamp(weight, 1.0 - cfg.clip_coef, 1.0 + eps_high)
    return torch.maximum(unclipped, clipped), (clipped > unclipped)


def cispo_surrogate(
    weight: torch.Tensor, advantages: torch.Tensor, logprobs: torch.Tensor, cfg
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(per-token loss, clipped)``: ``-sg(min(w, w_max)) A log pi`` (CISPO)."""
    capped = torch.clamp(weight, max=cfg.cispo_max).detach()
    return -capped * advantages * logprobs, (weight > cfg.cispo_max).expand_as(logprobs)


def sapo_surrogate(
    weight: torch.Tensor, advantages: torch.Tensor, logprobs: torch.Tensor, cfg
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(per-token loss, clipped)``: SAPO's soft gate ``-(4 / tau) sigmoid(tau (w - 1)) A``.

    ``tau`` is ``sapo_tau_pos`` where ``A > 0`` and ``sapo_tau_neg`` elsewhere; the gate's
    slope is 1 at ``w = 1`` and fades smoothly away from it instead of a hard clip (Gao et al.
    2025, arXiv 2511.20347). Nothing is clipped, so the second value is all false.
    """
    tau = torch.where(advantages > 0, cfg.sapo_tau_pos, cfg.sapo_tau_neg)
    gate = torch.sigmoid(tau * (weight - 1.0)) * 4.0 / tau
    loss = -gate * advantages
    return loss, torch.zeros_like(loss, dtype=torch.bool)


def token_mean(x: torch.Tensor, mask: torch.Tensor, limit: int | None) -> torch.Tensor:
    """Every response token weighs the same."""
    return masked_mean(x, mask)


def sequence_mean(x: torch.Tensor, mask: torch.Tensor, limit: int | None) -> torch.Tensor:
    """Every response weighs the same: the mean over responses of each one's token mean."""
    return masked_mean(x, mask, dim=1).mean()


def constant_norm(x: torch.Tensor, mask: torch.Tensor, limit: int | None) -> torch.Tensor:
    """Dr. GRPO: the token sum over ``rows * limit``, a constant of the batch's shape."""
    if limit is None:
        raise ValueError("loss_aggregation=constant needs the response length limit")
    return masked_sum(x, mask.to(x.dtype)) / (x.shape[0] * limit)


LogWeights = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Surrogate = Callable[..., tuple[torch.Tensor, torch.Tensor]]  # (w, A, log pi, cfg)
Aggregation = Callable[[torch.Tensor, torch.Tensor, "int | None"], torch.Tensor]

RATIOS: dict[str, LogWeights] = {"token": token_log_weights, "sequence": sequence_log_weights}
SURROGATES: dict[str, Surrogate] = {
    "clip": clipped_surrogate,
    "cispo": cispo_surrogate,
    "sapo": sapo_surrogate,
}
AGGREGATIONS: dict[str, Aggregation] = {
    "token": token_mean,
    "sequence": sequence_mean,
    "constant": constant_norm,
}


def reduction(aggregation: str) -> Literal["token", "sequence"]:
    """How the learner weights a chunk of a minibatch: by its tokens or by its rows."""
    return "token" if aggregation == "token" else "sequence"


def overlong_penalty(lengths: torch.Tensor, limit: int, buffer: int) -> torch.Tensor:
    """DAPO's soft overlong punishment (Yu et al. 2025, Eq. 13), added to the reward.

    0 up to ``limit - buffer`` tokens, then falling linearly to -1 at ``limit``, and -1 beyond
    it: ``clamp(((limit - buffer) - |y|) / buffer, -1, 0)``.
    """
    if buffer <= 0:
        return torch.zeros_like(lengths, dtype=torch.float32)
    return (((limit - buffer) - lengths.float()) / buffer).clamp(-1.0, 0.0)
