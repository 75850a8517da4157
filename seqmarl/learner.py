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

from seqmarl.agents.base import Policy
from seqmarl.agents.sampling import Completions
from seqmarl.algos import ALGORITHMS, AlgoConfig, Algorithm, AlgoState
from seqmarl.algos.core import masked_mean, masked_sum
from seqmarl.types import RolloutBatch

__all__ = ["Learner", "length_chunks"]


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
        agent: Policy,
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
                terms: dict[str, float] = defaultdict(float)
                max_rows = math.ceil(len(idx) / cfg.grad_accum_steps)
                chunks = length_chunks(completions, idx, max_rows, overhead=cfg.chunk_overhead)
                for chunk, weight in self._chunk_weights(completions, idx, chunks):
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
                    # chunk loss x its share = its part of the whole minibatch's mean loss
                    self._backward(loss.loss * weight)
                    for k, v in loss.terms.items():
                        terms[k] += float(v) * weight
                if not finite:
                    self.optimizer.zero_grad(set_to_none=True)
                    self.skipped_steps += 1
                    sums["skipped_steps"] += 1
                    counts["skipped_steps"] = 1
                    continue
                for k, v in terms.items():
                    sums[k] += v
                    counts[k] += 1
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
                self.agent.sync()
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

    def _chunk_weights(self, completions: Completions, idx: torch.Tensor, chunks):
        """``(chunk, weight)`` pairs, the weights summing to 1.

        A chunk's weight is its share of the minibatch's response tokens (or of its rows, for
        an algorithm whose loss is a mean over responses).
        """
        if self.algorithm.loss_reduction == "token":
            mask = completions.response_mask
            total = float(mask[idx].sum())
            if total > 0:
                return [(c, float(mask[c].sum()) / total) for c in chunks]
        return [(c, len(c) / len(idx)) for c in chunks]

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


#: Fixed cost of one extra forward + backward pass, in tokens of work, in ``length_chunks``.
#: On SmolLM2-135M with LoRA on CPU three chunks of a 16-row batch (437 tokens) took longer
#: than one packed pass (608 tokens), i.e. over 100 tokens per extra pass.
PASS_TOKENS = 256


def length_chunks(
    completions: Completions, rows: torch.Tensor, max_rows: int, overhead: float = 0.05
) -> list[torch.Tensor]:
    """Split a minibatch's ``rows`` into chunks of similar length, each at most ``max_rows``.

    A padded pass costs (rows) x (longest prompt + response) tokens of work whatever the real
    lengths; rows sorted by length and cut where it pays cost less, because each chunk is only
    as wide as its own longest row (``response_forward`` packs rows and trims padding). Rows
    that share a prompt stay in one unit, so the prompt still runs once for them (that pass is
    longest prompt + longest response wide). The cut points minimise the estimated
    padded tokens plus, per extra chunk, ``overhead`` x the unsplit cost + ``PASS_TOKENS`` (one
    more forward and backward is not free). The gradient is the same whatever the cut: the
    learner weights each chunk's loss by its share of the minibatch.
    """
    qlen = completions.query_mask[rows].sum(1).tolist()
    rlen = completions.response_mask[rows].sum(1).tolist()
    keys = torch.cat([completions.query_ids[rows], completions.query_mask[rows].long()], 1)
    _, group = torch.unique(keys, dim=0, return_inverse=True)
    by_group: dict[int, list[int]] = defaultdict(list)
    for pos, g in enumerate(group.tolist()):
        by_group[g].append(pos)
    units = []  # (prompt length, longest response, positions), no unit over max_rows
    for members in by_group.values():
        members.sort(key=lambda p: rlen[p])
        for s in range(0, len(members), max_rows):
            part = members[s : s + max_rows]
            units.append((qlen[part[0]], max(rlen[p] for p in part), part))
    units.sort(key=lambda u: (u[0] + u[1], u[0]))

    # dynamic programme over cut points (every unit, or every g-th when there are many)
    g = max(1, math.ceil(len(units) / 64))
    points = [*range(0, len(units), g), len(units)]
    blocks = [units[points[k] : points[k + 1]] for k in range(len(points) - 1)]
    b_rows = [sum(len(u[2]) for u in blk) for blk in blocks]
    b_q = [max(u[0] for u in blk) for blk in blocks]
    b_r = [max(u[1] for u in blk) for blk in blocks]
    b_qr = [max(u[0] + u[1] for u in blk) for blk in blocks]

    def cost(n_rows: int, distinct: int, q: int, r: int, qr: int) -> float:
        if n_rows >= 2 and 2 * distinct <= n_rows:  # response_forward shares the prompt pass
            return distinct * q + n_rows * r
        return n_rows * qr  # one packed pass

    # one more forward + backward pass: a share of the work plus a fixed cost (op launches,
    # small-matrix inefficiency), which dominates when the minibatch is small
    penalty = overhead * cost(len(rows), len(units), max(b_q), max(b_r), max(b_qr)) + PASS_TOKENS
    best = [0.0] + [math.inf] * len(blocks)
    prev = [0] * (len(blocks) + 1)
    for b in range(1, len(blocks) + 1):
        n_rows = q = r = qr = 0
        for a in range(b - 1, -1, -1):  # chunk = blocks a..b-1
            n_rows, q, r = n_rows + b_rows[a], max(q, b_q[a]), max(r, b_r[a])
            qr = max(qr, b_qr[a])
            if n_rows > max_rows:
                break
            c = best[a] + cost(n_rows, points[b] - points[a], q, r, qr) + penalty
            if c < best[b]:
                best[b], prev[b] = c, a
    if math.isinf(best[-1]):  # a block of g units is over max_rows: equal sorted pieces
        flat = [p for u in units for p in u[2]]
        return [rows[flat[s : s + max_rows]] for s in range(0, len(flat), max_rows)]
    chunks, b = [], len(points) - 1
    while b > 0:
        a = prev[b]
        chunks.append(rows[[p for u in units[points[a] : points[b]] for p in u[2]]])
        b = a
    return chunks[::-1]
