"""``Learner``: one agent with its algorithm, config, state and optimizer.

This is where an algorithm's pure functions meet an agent: build the
:class:`~seqmarl.types.RolloutBatch` from sampled completions (reference log-probs, KL),
compute advantages once, then run the configured epochs over minibatches with gradient
accumulation and grad-norm clipping. A non-finite loss skips that optimizer step and is
counted; the trainer decides what to do when it repeats.
"""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict

import torch

from seqmarl.agents.hf import LMAgent
from seqmarl.agents.sampling import Completions
from seqmarl.algos import ALGORITHMS, AlgoConfig, Algorithm, AlgoState
from seqmarl.algos.core import masked_mean, masked_sum
from seqmarl.types import RolloutBatch

__all__ = ["Learner"]


class Learner:
    """Trains one agent with one algorithm.

    Args:
        agent: The agent (its parameters are what the optimizer updates).
        algorithm: Registered algorithm name or :class:`Algorithm`.
        config: The algorithm's config (default: its defaults).
        seed: Seeds minibatch shuffling.
        accelerator: An ``accelerate.Accelerator`` for backward, autocast and grad clipping
            (multi-process gradient sync, mixed precision); ``None`` = plain PyTorch.
    """

    def __init__(
        self,
        agent: LMAgent,
        algorithm: str | Algorithm,
        config: AlgoConfig | None = None,
        *,
        seed: int = 0,
        accelerator=None,
    ):
        self.agent = agent
        self.accelerator = accelerator
        self.algorithm = ALGORITHMS.get(algorithm) if isinstance(algorithm, str) else algorithm
        self.config = config if config is not None else self.algorithm.config_cls()
        if self.algorithm.uses_value_head and agent.value_head is None:
            raise ValueError(f"{self.algorithm.name} needs a value head on {agent.agent_id}")
        self.state = AlgoState.from_config(self.config)
        self.optimizer = _adam(agent.parameters(), self.config.lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.skipped_steps = 0

    @property
    def kl_coef(self) -> float:
        """The current KL coefficient."""
        return self.state.kl.value

    @property
    def wants_full_kl(self) -> bool:
        """Whether the exact KL over the vocabulary is needed."""
        return self.config.kl_estimator == "full"

    def make_batch(
        self,
        completions: Completions,
        rewards: torch.Tensor,
        group_ids: torch.Tensor | None = None,
    ) -> RolloutBatch:
        """Reference log-probs and per-token KL for ``completions``; ``rewards`` is ``(B,)``."""
        ref_logprobs, ref_logits = self.agent.reference(
            completions, return_logits=self.wants_full_kl
        )
        kl = None
        if self.wants_full_kl:
            with torch.no_grad():
                kl = self.agent.evaluate(completions, ref_logits=ref_logits).kl
        device = completions.logprobs.device
        return RolloutBatch(
            logprobs=completions.logprobs,
            ref_logprobs=ref_logprobs,
            mask=completions.response_mask,
            rewards=rewards.to(device=device, dtype=completions.logprobs.dtype),
            values=completions.values,
            kl=kl,
            group_ids=None if group_ids is None else group_ids.to(device),
        )

    def update(self, completions: Completions, batch: RolloutBatch) -> dict[str, float]:
        """Advantages, then ``epochs`` passes over minibatches; returns mean metrics."""
        cfg, algo = self.config, self.algorithm
        adv = algo.advantages(batch, cfg, self.state)
        n = len(batch)
        mb = min(cfg.minibatch_size or n, n)
        sums: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        for _ in range(cfg.epochs):
            order = torch.randperm(n, generator=self.generator)
            for start in range(0, n, mb):
                idx = order[start : start + mb]
                self.optimizer.zero_grad(set_to_none=True)
                finite = True
                for chunk in idx.chunk(min(cfg.grad_accum_steps, len(idx))):
                    sub = completions.select(chunk)
                    ref_logits = None
                    if self.wants_full_kl and cfg.kl_mode == "loss":
                        ref_logits = self.agent.reference(sub, return_logits=True)[1]
                    with self._autocast():
                        out = self.agent.evaluate(
                            sub,
                            with_values=algo.uses_value_head,
                            with_entropy=cfg.entropy_coef > 0,
                            entropy_grad=True,
                            ref_logits=ref_logits,
                        )
                    loss = algo.loss(out, batch.select(chunk), adv.select(chunk), cfg, self.kl_coef)
                    if not torch.isfinite(loss.loss):
                        finite = False
                        break
                    self._backward(loss.loss * len(chunk) / len(idx))
                    for k, v in loss.terms.items():
                        sums[k] += float(v)
                        counts[k] += 1
                if not finite:
                    self.optimizer.zero_grad(set_to_none=True)
                    self.skipped_steps += 1
                    sums["skipped_steps"] += 1
                    counts["skipped_steps"] = 1
                    continue
                if cfg.max_grad_norm is not None:
                    clip = (
                        self.accelerator.clip_grad_norm_
                        if self.accelerator is not None
                        else torch.nn.utils.clip_grad_norm_
                    )
                    norm = clip(self.agent.parameters(), cfg.max_grad_norm)
                    sums["grad_norm"] += float(norm)
                    counts["grad_norm"] += 1
                self.optimizer.step()
        kl_sum = masked_sum(batch.kl if batch.kl is not None else _k1(batch), batch.mask, dim=1)
        mean_kl = float(kl_sum.mean())
        self.state.kl.update(mean_kl, n)
        metrics = {k: sums[k] / max(counts[k], 1) for k in sums}
        metrics.update({f"adv/{k}": v for k, v in adv.stats.items()})
        metrics["kl_coef"] = self.kl_coef
        metrics["rollout_kl"] = mean_kl  # summed per response, mean over the batch
        metrics["response_length"] = float(batch.mask.sum(1).mean())
        # the observation's length: what every forward pass of this agent reads before the response
        metrics["query_length"] = float(completions.query_mask.sum(1).float().mean())
        if completions.entropy is not None:  # of the sampling policy, per token
            metrics["entropy"] = float(masked_mean(completions.entropy, batch.mask))
        metrics["advantage_mean"] = float(masked_mean(adv.advantages, batch.mask))
        if not all(math.isfinite(v) for v in metrics.values()):
            metrics["nonfinite_metrics"] = 1.0
        return metrics

    def _autocast(self):
        if self.accelerator is None:
            return contextlib.nullcontext()
        return self.accelerator.autocast()

    def _backward(self, loss: torch.Tensor) -> None:
        if self.accelerator is None:
            loss.backward()
        else:
            self.accelerator.backward(loss)

    def state_dict(self) -> dict:
        """Agent weights, optimizer, algorithm state and shuffling RNG (for checkpoints)."""
        return {
            "agent": self.agent.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "algo_state": self.state.state_dict(),
            "generator": self.generator.get_state(),
            "skipped_steps": self.skipped_steps,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        self.agent.load_state_dict(state["agent"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.state.load_state_dict(state["algo_state"])
        self.generator.set_state(state["generator"])
        self.skipped_steps = state["skipped_steps"]


def _k1(batch: RolloutBatch) -> torch.Tensor:
    return batch.logprobs - batch.ref_logprobs


def _adam(params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Adam, fused where the device and dtypes allow it (about 5x faster on CPU), else plain."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)
