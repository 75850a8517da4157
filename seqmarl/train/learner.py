"""``Learner``: one agent with its algorithm, config, state and optimizer.

This is where an algorithm's pure functions meet an agent: build the
:class:`~seqmarl.types.RolloutBatch` from sampled completions (reference log-probs, KL),
compute advantages once, then run the configured epochs over minibatches with gradient
accumulation and grad-norm clipping. A non-finite loss skips that optimizer step and is
counted; the trainer decides what to do when it repeats.

With several processes (:mod:`seqmarl.run.distributed`, ``data_parallel``) each rank holds some
rows of the iteration's batch. The learner gathers the rollout batch, so advantages and every
running statistic are those of the global batch on every rank; walks the same global
minibatches everywhere (a rank computes the rows it holds, each chunk's loss weighted by its
share of the *global* minibatch); sums the gradients over ranks; and skips a step on every
rank when any rank's loss is non-finite. One optimizer step is then the one-process step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from seqmarl.agents.base import Policy
from seqmarl.algos import ALGORITHMS, AlgoConfig, Algorithm, AlgoState
from seqmarl.algos.core import RunningMoments, masked_sum
from seqmarl.run.distributed import DistContext
from seqmarl.types import Advantages, Completions, RolloutBatch

__all__ = ["Learner", "UpdatePlan", "length_chunks"]


@dataclasses.dataclass
class UpdatePlan:
    """What one update reads before its first step (:meth:`Learner.plan`).

    Attributes:
        whole: Every rank's rows (this rank's with one process).
        offset: Where this rank's rows start in ``whole``.
        adv: This rank's rows' advantages (computed over ``whole``).
        sampler: The sampler-mismatch tally (an inference engine sampled).
        kl_coef: The KL coefficient the loss and advantages use, read once.
    """

    whole: RolloutBatch
    offset: int
    adv: Advantages
    sampler: SamplerMismatch
    kl_coef: float

    @property
    def n(self) -> int:
        """Rows over every rank."""
        return len(self.whole)


class Learner:
    """Trains one agent with one algorithm.

    Args:
        agent: The agent (its parameters are what the optimizer updates).
        algorithm: Registered algorithm name or :class:`Algorithm`.
        config: The algorithm's config (default: its defaults).
        seed: Seeds minibatch shuffling (the same on every rank).
        dist: The process group (default: one process).
        autocast_dtype: Run the policy's forward passes under ``torch.autocast`` in this dtype
            (``train.mixed_precision=bf16``); ``None`` = the weights' dtype.
        tis_cap: Where responses were sampled by an inference engine
            (:attr:`Completions.engine_logprobs`), weight each token's advantage by the
            truncated importance ratio ``min(exp(logprobs - engine_logprobs), tis_cap)``
            (``agents.vllm.tis_cap``); ``None``: no correction.
    """

    def __init__(
        self,
        agent: Policy,
        algorithm: str | Algorithm,
        config: AlgoConfig | None = None,
        *,
        seed: int = 0,
        dist: DistContext | None = None,
        autocast_dtype: torch.dtype | None = None,
        tis_cap: float | None = None,
    ):
        self.agent = agent
        self.tis_cap = tis_cap
        self.dist = dist or DistContext()
        self.autocast_dtype = autocast_dtype
        self.algorithm = ALGORITHMS.get(algorithm) if isinstance(algorithm, str) else algorithm
        self.config = config if config is not None else self.algorithm.config_cls()
        if self.algorithm.uses_value_head and agent.value_head is None:
            raise ValueError(f"{self.algorithm.name} needs a value head on {agent.agent_id}")
        self.state = AlgoState.from_config(self.config)
        self.optimizer = _adam(agent.parameters(), self.config.lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.skipped_steps = 0

    def reset(self, parts: Sequence[str]) -> None:
        """Start ``parts`` afresh: ``optimizer``, ``kl`` (controller) and/or ``score_stats``."""
        if "optimizer" in parts:
            self.optimizer = _adam(self.agent.parameters(), self.config.lr)
        if "kl" in parts:
            self.state.kl = AlgoState.from_config(self.config).kl
        if "score_stats" in parts:
            self.state.reward_moments = RunningMoments()

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
        roles: torch.Tensor | None = None,
        *,
        ref_logprobs: torch.Tensor | None = None,
    ) -> RolloutBatch:
        """Reference log-probs and per-token KL for ``completions``; ``rewards`` is ``(B,)``.

        ``ref_logprobs`` already computed (several agents' rows in one reference pass) are
        used as given (not with ``kl_estimator=full``, which needs the reference logits).
        """
        ref_logits = None
        if ref_logprobs is None or self.wants_full_kl:
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
            roles=None if roles is None else roles.to(device),
        )

    def learn(
        self,
        completions: Completions | None,
        returns: torch.Tensor | None,
        group_ids: torch.Tensor | None = None,
        *,
        roles: torch.Tensor | None = None,
        src: int | None = None,
    ) -> dict[str, float]:
        """One iteration's update from this rank's rows: the batch is built here, then used.

        Args:
            completions: This rank's turns of the agent; None where it had none.
            returns: ``(rows,)`` each turn's (mixed) reward-to-go.
            group_ids: ``(rows,)`` which rows RLOO/GRPO compare.
            roles: ``(rows,)`` the agent's seat in each row (a role-conditioned baseline).
            src: With several processes, a rank where the agent had turns, when some rank had
                none: the update is a chain of collectives, so every rank takes part, the ones
                without turns with no rows (``src`` sends their widths, dtypes and parts).
        """
        batch = None
        if completions is not None:
            batch = self.make_batch(completions, returns, group_ids, roles)
        if src is not None:
            completions, batch = self._rows_everywhere(completions, batch, src)
        return self.update(completions, batch)

    def _rows_everywhere(
        self, comp: Completions | None, batch: RolloutBatch | None, src: int
    ) -> tuple[Completions, RolloutBatch]:
        """This rank's rows of an agent that had no turn on some rank: none there."""
        empty = torch.zeros(0, dtype=torch.long)
        none = None
        if self.dist.rank == src:
            none = (_moved(comp.select(empty), "cpu"), _moved(batch.select(empty), "cpu"))
        none = self.dist.broadcast_object(none, src=src)
        if comp is not None:
            return comp, batch
        device = self.agent.device
        return _moved(none[0], device), _moved(none[1], device)

    def update(self, completions: Completions, batch: RolloutBatch) -> dict[str, float]:
        """Advantages, then ``epochs`` passes over minibatches; returns mean metrics.

        ``completions`` and ``batch`` are this rank's rows (all rows with one process).
        """
        cfg, algo, dist = self.config, self.algorithm, self.dist
        plan = self.plan(completions, batch)
        adv, sampler, offset, n_local = plan.adv, plan.sampler, plan.offset, len(batch)
        measure_first = completions.logprobs_from_engine  # on the first minibatch's rows
        sharded = self.agent.lockstep  # its passes are collectives; FSDP reduces its gradients
        sums: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        stepped = False
        for idx in self.minibatches(plan.n):  # global rows of each minibatch
            mine = idx[(idx >= offset) & (idx < offset + n_local)] - offset
            self.optimizer.zero_grad(set_to_none=True)
            finite = True
            terms: dict[str, float] = defaultdict(float)
            share = self.chunks(completions, plan.whole, idx, mine)
            if sharded:  # a sharded model's passes are collectives: as many on every rank
                most = max(dist.gather_objects(len(share)))
                share += [(torch.zeros(1, dtype=torch.long), 0.0)] * (most - len(share))
            for chunk, weight in share:
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
                if measure_first:  # the weights are still the sampling ones here
                    sampler.add(out.logprobs.detach() - sub.logprobs, sub.response_mask)
                loss = algo.loss(out, batch.select(chunk), adv.select(chunk), cfg, plan.kl_coef)
                if not torch.isfinite(loss.loss):
                    finite = False
                    if not sharded:
                        break
                # chunk loss x its share = its part of the whole minibatch's mean loss
                (loss.loss * weight).backward()
                for k, v in loss.terms.items():
                    terms[k] += float(v) * weight
            measure_first = False
            stepped |= self.step(finite, terms, sums, counts)
        return self.finish(plan, completions, batch, sums, counts, stepped)

    def plan(self, completions: Completions, batch: RolloutBatch) -> UpdatePlan:
        """What an update reads before its first step: the global batch and its advantages."""
        cfg, dist = self.config, self.dist
        kl_coef = self.kl_coef  # the controller's value, read once: the loss and advantages use it
        whole, offset = self._global_batch(batch)
        adv = _local_rows(self.algorithm.advantages(whole, cfg, self.state), offset, batch)
        sampler = SamplerMismatch(dist)
        if completions.engine_logprobs is not None and not completions.logprobs_from_engine:
            sampler.add(completions.logprobs - completions.engine_logprobs, batch.mask)
            if self.tis_cap is not None:
                adv, tis = _truncated_is(adv, completions, batch.mask, self.tis_cap)
                sampler.extra.update(tis)
        return UpdatePlan(whole, offset, adv, sampler, kl_coef)

    def minibatch_count(self, n: int) -> int:
        """How many minibatches (optimizer steps) an epoch over ``n`` rows has."""
        return math.ceil(n / min(self.config.minibatch_size or n, n)) if n else 0

    def minibatches(self, n: int) -> Iterator[torch.Tensor]:
        """The global rows of each minibatch, epoch after epoch (shuffled by the generator)."""
        mb = min(self.config.minibatch_size or n, n)
        for _ in range(self.config.epochs):
            order = torch.randperm(n, generator=self.generator)
            for start in range(0, n, mb):
                yield order[start : start + mb]

    def chunks(
        self, completions: Completions, whole: RolloutBatch, idx: torch.Tensor, mine: torch.Tensor
    ) -> list[tuple[torch.Tensor, float]]:
        """``(rows, weight)`` of this rank's passes over minibatch ``idx`` (``mine``: its rows)."""
        if not len(mine):
            return []
        max_rows = math.ceil(len(idx) / self.config.grad_accum_steps)
        chunks = length_chunks(completions, mine, max_rows, overhead=self.config.chunk_overhead)
        return self._chunk_weights(completions, whole.mask[idx], chunks)

    def step(
        self,
        finite: bool,
        terms: dict[str, float],
        sums: dict[str, float],
        counts: dict[str, int],
    ) -> bool:
        """The optimizer step after a minibatch's backward passes; whether it stepped.

        A non-finite loss on any rank skips it everywhere; otherwise the gradients are summed
        over ranks, the loss terms recorded, the gradient norm clipped and the step taken.
        """
        cfg, dist = self.config, self.dist
        if dist.any(not finite):  # every rank skips together
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped_steps += 1
            sums["skipped_steps"] += 1
            counts["skipped_steps"] = 1
            return False
        dist.all_reduce_grads([p for p in self.agent.parameters() if not _is_sharded(p)])
        if dist.enabled:
            terms = _sum_dicts(dist.gather_objects(dict(terms)))
        for k, v in terms.items():
            sums[k] += v
            counts[k] += 1
        if cfg.max_grad_norm is not None:
            norm = self.agent.clip_grad_norm(cfg.max_grad_norm)
            sums["grad_norm"] += norm
            counts["grad_norm"] += 1
        self.optimizer.step()
        return True

    def finish(
        self,
        plan: UpdatePlan,
        completions: Completions,
        batch: RolloutBatch,
        sums: dict[str, float],
        counts: dict[str, int],
        stepped: bool,
    ) -> dict[str, float]:
        """After the last step: push the weights, step the KL controller, the mean metrics."""
        dist, whole, adv = self.dist, plan.whole, plan.adv
        n = len(whole)
        if stepped:  # once per update: an engine holding a copy of the weights pushes lazily
            self.agent.sync()
        kl_sum = masked_sum(whole.kl if whole.kl is not None else _k1(whole), whole.mask, dim=1)
        mean_kl = float(kl_sum.mean())
        self.state.kl.update(mean_kl, n)
        metrics = {k: sums[k] / max(counts[k], 1) for k in sums}
        metrics.update({f"adv/{k}": v for k, v in adv.stats.items()})
        metrics.update(plan.sampler.metrics())
        metrics["kl_coef"] = self.kl_coef  # after the controller's step: the next update's
        metrics["lr"] = float(self.optimizer.param_groups[0]["lr"])  # the step size it used
        metrics["rollout_kl"] = mean_kl  # summed per response, mean over the batch
        metrics["response_length"] = float(whole.mask.sum(1).mean())
        # the observation's length: what every forward pass of this agent reads before the response
        q = completions.query_mask.sum(1).float()
        totals = [float(q.sum()), float(len(q))]
        if completions.entropy is not None:  # of the sampling policy, per token
            totals += [float(masked_sum(completions.entropy, batch.mask)), float(batch.mask.sum())]
        totals = dist.all_reduce(torch.tensor(totals, dtype=torch.float64)).tolist()
        metrics["query_length"] = totals[0] / max(totals[1], 1.0)
        if completions.entropy is not None:
            metrics["entropy"] = totals[2] / max(totals[3], 1.0)
        local_adv = masked_sum(adv.advantages, batch.mask)
        adv_totals = dist.all_reduce(
            torch.stack([local_adv.double(), batch.mask.sum().double()])
        ).tolist()
        metrics["advantage_mean"] = adv_totals[0] / max(adv_totals[1], 1.0)
        if not all(math.isfinite(v) for v in metrics.values()):
            metrics["nonfinite_metrics"] = 1.0
        return metrics

    def _global_batch(self, batch: RolloutBatch) -> tuple[RolloutBatch, int]:
        """Every rank's rows in rank order, and where this rank's rows start.

        Responses are right-padded to the longest on any rank. One process: ``(batch, 0)``.
        """
        dist = self.dist
        if not dist.enabled:
            return batch, 0
        # one gather of the shapes (and of which optional tensors exist) for every tensor
        has = (
            batch.values is not None,
            batch.kl is not None,
            batch.group_ids is not None,
            batch.roles is not None,
        )
        shapes = dist.gather_objects((*batch.mask.shape, has))
        rows, width = [s[0] for s in shapes], max(s[1] for s in shapes)
        if len({s[2] for s in shapes}) > 1:
            raise RuntimeError("ranks disagree on which rollout tensors exist")
        offset = sum(rows[: dist.rank])

        def gather(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else dist.all_gather_rows(x, rows, width)

        whole = RolloutBatch(
            logprobs=gather(batch.logprobs),
            ref_logprobs=gather(batch.ref_logprobs),
            mask=gather(batch.mask),
            rewards=gather(batch.rewards),
            values=gather(batch.values),
            kl=gather(batch.kl),
            group_ids=gather(batch.group_ids),
            roles=gather(batch.roles),
        )
        return whole, offset

    def _chunk_weights(self, completions: Completions, minibatch_mask: torch.Tensor, chunks):
        """``(chunk, weight)`` pairs; over all ranks the weights of a minibatch sum to 1.

        A chunk's weight is its share of the (global) minibatch's response tokens, or of its
        rows for an algorithm whose loss is a mean over responses. ``minibatch_mask`` is the
        ``(rows, T)`` response mask of the whole minibatch.
        """
        if self.algorithm.reduction(self.config) == "token":
            mask = completions.response_mask
            total = float(minibatch_mask.sum())
            if total > 0:
                return [(c, float(mask[c].sum()) / total) for c in chunks]
        return [(c, len(c) / len(minibatch_mask)) for c in chunks]

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        device = torch.device(self.agent.device)
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype)

    def state_dict(self) -> dict:
        """Agent weights, optimizer, algorithm state and shuffling RNG (for checkpoints)."""
        return {
            "agent": self.agent.state_dict(),
            "optimizer": self.agent.optimizer_state_dict(self.optimizer),
            "algo_state": self.state.state_dict(),
            "generator": self.generator.get_state(),
            "skipped_steps": self.skipped_steps,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        self.agent.load_state_dict(state["agent"])
        self.agent.load_optimizer_state_dict(self.optimizer, state["optimizer"])
        for group in self.optimizer.param_groups:  # the config's lr, not the checkpoint's
            group["lr"] = self.config.lr
        self.state.load_state_dict(state["algo_state"])
        self.generator.set_state(state["generator"])
        self.skipped_steps = state["skipped_steps"]


def _moved(obj: Any, device: Any) -> Any:
    """A copy of the dataclass ``obj`` with its tensors on ``device``."""
    tensors = {
        f.name: getattr(obj, f.name).to(device)
        for f in dataclasses.fields(obj)
        if isinstance(getattr(obj, f.name), torch.Tensor)
    }
    return dataclasses.replace(obj, **tensors)


class SamplerMismatch:
    """Per-token ``|log p_trained - log p_engine|`` over response tokens, on every rank.

    Logged as ``sampler/mismatch_max`` and ``sampler/mismatch_mean`` (nats per token) when an
    inference engine sampled the responses.
    """

    def __init__(self, dist: DistContext):
        self.dist = dist
        self.total = self.count = self.max = 0.0
        self.seen = False
        self.extra: dict[str, float] = {}

    def add(self, diff: torch.Tensor, mask: torch.Tensor) -> None:
        gap = diff.detach().abs() * mask
        self.total += float(gap.sum())
        self.count += float(mask.sum())
        self.max = max(self.max, float(gap.max()) if gap.numel() else 0.0)
        self.seen = True

    def metrics(self) -> dict[str, float]:
        if not self.dist.any(self.seen):
            return {}
        if self.dist.enabled:
            parts = self.dist.gather_objects((self.total, self.count, self.max))
            self.total = sum(p[0] for p in parts)
            self.count = sum(p[1] for p in parts)
            self.max = max(p[2] for p in parts)
        out = {
            "sampler/mismatch_max": self.max,
            "sampler/mismatch_mean": self.total / max(self.count, 1.0),
        }
        out.update(self.extra)
        return out


def _truncated_is(
    adv: Advantages, completions: Completions, mask: torch.Tensor, cap: float
) -> tuple[Advantages, dict[str, float]]:
    """Advantages times ``min(pi_trained / pi_engine, cap)`` per token (truncated IS).

    Scaling the advantage scales the policy-gradient term alone (PPO's clipped surrogate is
    ``max(-A r, -A clip(r))`` and the weight is positive), leaving value and KL terms as they are.
    """
    ratio = torch.exp(completions.logprobs - completions.engine_logprobs).detach()
    weight = ratio.clamp(max=cap) * mask
    n = float(mask.sum())
    stats = {
        "sampler/tis_weight": float(weight.sum()) / max(n, 1.0),
        "sampler/tis_clipped": float(((ratio > cap) & (mask > 0)).sum()) / max(n, 1.0),
    }
    return Advantages(adv.advantages * weight, adv.returns, adv.stats), stats


def _k1(batch: RolloutBatch) -> torch.Tensor:
    return batch.logprobs - batch.ref_logprobs


def _local_rows(adv: Advantages, offset: int, batch: RolloutBatch) -> Advantages:
    """The rows of ``batch`` (starting at ``offset`` of the global batch), at its width."""
    if offset == 0 and adv.advantages.shape == batch.mask.shape:
        return adv
    rows, width = slice(offset, offset + len(batch)), batch.mask.shape[1]
    ret = None if adv.returns is None else adv.returns[rows, :width]
    return Advantages(adv.advantages[rows, :width], ret, adv.stats)


def _is_sharded(p: torch.Tensor) -> bool:
    """Whether ``p`` is a DTensor (a parameter FSDP2 shards and reduces)."""
    return hasattr(p, "full_tensor")


def _sum_dicts(dicts: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for d in dicts:
        for k, v in d.items():
            out[k] += v
    return out


def _adam(params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Adam, fused where the device and dtypes allow it (about 5x faster on CPU), else plain.

    Sharded (DTensor) and plain parameters go in separate groups: one fused or foreach
    kernel cannot mix them.
    """
    sharded = [p for p in params if _is_sharded(p)]
    if sharded:
        params = [{"params": sharded}, {"params": [p for p in params if not _is_sharded(p)]}]
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
