"""Pure tensor helpers shared by the algorithms.

Shapes: ``B`` responses, ``T`` response tokens, ``V`` vocabulary. Masks are float or bool
``(B, T)`` with 1 on real tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from seqmarl.ops import entropy_from_logits, full_kl

__all__ = [
    "AdaptiveKLController",
    "FixedKLController",
    "RunningMoments",
    "clipped_surrogate",
    "clipped_value_loss",
    "entropy_from_logits",
    "full_kl",
    "gae",
    "group_normalize",
    "kl_estimate",
    "last_token_index",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "rloo_baseline",
]


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of ``x`` where ``mask`` is set."""
    return (x * mask).sum() if dim is None else (x * mask).sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is set (0 where the mask is empty)."""
    mask = mask.to(x.dtype)
    return masked_sum(x, mask, dim) / mask.sum(dim).clamp_min(1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of the masked entries of ``x`` (Bessel-corrected by default)."""
    mask = mask.to(x.dtype)
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    n = mask.sum()
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def masked_whiten(
    x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """``(x - mean) / std`` over masked entries; padding is set to 0."""
    mask = mask.to(x.dtype)
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """``(B,)`` index of the last real token of each row (0 for an empty row)."""
    t = mask.shape[1]
    positions = torch.arange(t, device=mask.device).expand_as(mask)  # (B, T)
    return torch.where(mask.bool(), positions, torch.zeros_like(positions)).amax(dim=1)


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens (Schulman et al. 2016).

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = delta_t + gamma * lam * A_{t+1}``,
    with ``V`` and ``A`` zero past the last real token of each row.

    Args:
        rewards: ``(B, T)`` per-token rewards.
        values: ``(B, T)`` value estimates.
        mask: ``(B, T)`` real-token mask (right padding).
        gamma: Discount.
        lam: GAE lambda.

    Returns:
        ``(advantages, returns)``, each ``(B, T)`` and zero on padding; ``returns = A + V``.
    """
    mask = mask.to(values.dtype)
    values = values * mask
    rewards = rewards * mask
    b, t = rewards.shape
    adv = torch.zeros_like(rewards)
    last = torch.zeros(b, dtype=rewards.dtype, device=rewards.device)  # A_{t+1}, (B,)
    for i in reversed(range(t)):
        next_v = values[:, i + 1] if i + 1 < t else torch.zeros_like(last)  # (B,)
        delta = rewards[:, i] + gamma * next_v - values[:, i]
        last = (delta + gamma * lam * last) * mask[:, i]
        adv[:, i] = last
    return adv, (adv + values) * mask


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from the sampled token's log-probs.

    With ``log_ratio = log pi(a) - log pi_ref(a)`` and ``a ~ pi`` (Schulman 2020,
    "Approximating KL divergence"):

    * ``k1 = log_ratio`` (unbiased, can be negative);
    * ``k2 = log_ratio**2 / 2`` (biased, low variance, >= 0);
    * ``k3 = exp(-log_ratio) - 1 + log_ratio`` (unbiased, >= 0).

    ``full`` (exact KL over the vocabulary) needs logits: use :func:`full_kl`.
    """
    log_ratio = logprobs - ref_logprobs
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio**2
    if kind == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"kl estimator must be k1, k2 or k3 here (full needs logits), got {kind!r}")


def clipped_surrogate(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_coef: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped policy loss (Schulman et al. 2017), token-mean over the mask.

    ``L = mean_t max(-A_t * rho_t, -A_t * clip(rho_t, 1 - eps, 1 + eps))`` with
    ``rho_t = exp(logprobs - old_logprobs)``.

    Returns:
        ``(loss, clip_fraction, approx_kl)``; approx_kl is the k3 estimate of
        KL(pi_old || pi) over the batch.
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_coef, 1.0 + clip_coef)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped > unclipped).to(logprobs.dtype), mask)
        approx_kl = masked_mean(torch.expm1(log_ratio) - log_ratio, mask)
    return loss, clip_fraction, approx_kl


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_coef: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped value loss: ``0.5 * mean max((V - R)^2, (clip(V, V_old +- eps) - R)^2)``.

    Returns:
        ``(loss, value_clip_fraction)``.
    """
    clipped = old_values + torch.clamp(values - old_values, -clip_coef, clip_coef)
    err, err_clipped = (values - returns) ** 2, (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(err, err_clipped), mask)
    with torch.no_grad():
        frac = masked_mean((err_clipped > err).to(values.dtype), mask)
    return loss, frac


def _groups(rewards: torch.Tensor, group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row group sum and group size: ``(B,), (B,) -> (B,), (B,)``."""
    _, inverse = torch.unique(group_ids, return_inverse=True)
    g = int(inverse.max()) + 1 if inverse.numel() else 0
    sums = torch.zeros(g, dtype=rewards.dtype, device=rewards.device).index_add_(
        0, inverse, rewards
    )
    counts = torch.zeros(g, dtype=rewards.dtype, device=rewards.device).index_add_(
        0, inverse, torch.ones_like(rewards)
    )
    return sums[inverse], counts[inverse]


def rloo_baseline(rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Leave-one-out baseline (Kool et al. 2019; Ahmadian et al. 2024).

    For response ``i`` in a group of size ``k``: ``b_i = (sum_{j in group} R_j - R_i) / (k - 1)``.

    Raises:
        ValueError: A group has a single member (no other sample to leave in).
    """
    sums, counts = _groups(rewards, group_ids)
    if torch.any(counts < 2):
        raise ValueError("rloo needs at least 2 samples per prompt (group_size >= 2)")
    return (sums - rewards) / (counts - 1)


def group_normalize(
    rewards: torch.Tensor, group_ids: torch.Tensor, scale: bool = True, eps: float = 1e-4
) -> torch.Tensor:
    """GRPO advantages (Shao et al. 2024): ``(R_i - mean_g) / (std_g + eps)`` within each group.

    ``std_g`` is the unbiased sample standard deviation of the group (0 for a single member).
    With ``scale=False`` only the mean is subtracted (Dr. GRPO, Liu et al. 2025).
    """
    sums, counts = _groups(rewards, group_ids)
    mean = sums / counts
    sq, _ = _groups((rewards - mean) ** 2, group_ids)
    std = torch.sqrt(sq / (counts - 1).clamp_min(1.0))
    centred = rewards - mean
    return centred / (std + eps) if scale else centred


@dataclass
class FixedKLController:
    """A constant KL coefficient."""

    value: float

    def update(self, current_kl: float, n_steps: int) -> None:
        """No-op."""

    def state_dict(self) -> dict:
        """Serializable state."""
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""
        self.value = float(state["value"])


@dataclass
class AdaptiveKLController:
    """Adaptive KL coefficient of Ziegler et al. 2019 ("Fine-tuning LMs from human preferences").

    ``e = clip(KL / target - 1, -0.2, 0.2)``; ``beta <- beta * (1 + e * n_steps / horizon)``.
    """

    value: float
    target: float
    horizon: int

    def update(self, current_kl: float, n_steps: int) -> None:
        """Move the coefficient towards the target KL after ``n_steps`` samples."""
        if not math.isfinite(current_kl):
            return
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> dict:
        """Serializable state."""
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""
        self.value = float(state["value"])


class RunningMoments:
    """Running mean and variance (Chan et al. parallel Welford), for reward normalisation."""

    def __init__(self):
        self.count = 0.0
        self.mean = 0.0
        self.m2 = 0.0

    @property
    def std(self) -> float:
        """Unbiased standard deviation seen so far (1.0 before two samples)."""
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 1.0

    def update(self, x: torch.Tensor) -> None:
        """Fold a batch of values into the moments."""
        x = x.detach().double().flatten()
        n = x.numel()
        if n == 0:
            return
        batch_mean = float(x.mean())
        batch_m2 = float(((x - batch_mean) ** 2).sum())
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.m2 += batch_m2 + delta**2 * self.count * n / total
        self.count = total

    def state_dict(self) -> dict:
        """Serializable state."""
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""
        self.count, self.mean, self.m2 = state["count"], state["mean"], state["m2"]
