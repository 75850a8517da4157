"""One update for every learning agent on a base: their rows in one forward and one backward.

With ``agents.update=mixed`` the agents that are LoRA adapters on one shared base update
together: each minibatch's rows of every agent go through one forward, each row through its
own agent's adapter (:func:`~seqmarl.agents.shared.evaluate_together`: each adapter's LoRA
branch over its own block of rows, :mod:`seqmarl.agents.lora_rows`, or peft's mixed-adapter
batch where those branches do not apply), and the agents' losses, each weighted as in
its own update, are summed for one backward. The adapters share no trainable parameter, so
each adapter's gradient is that of its own loss, the one its agent-by-agent update computes
(to float rounding). Everything else stays each agent's own: algorithm, advantages, loss,
value head, optimizer and learning rate, gradient clipping, KL controller, minibatch shuffling
(its own generator, drawn as in its own update) and the skip of a step with a non-finite
loss. The reference log-probs of every agent's rows come from one pass of the base with
adapters off (:func:`~seqmarl.agents.shared.reference_together`).

An agent updates alone (:func:`why_alone` says why; the trainer logs it once) when it is not
an adapter on a shared base, its loss needs reference logits in every pass
(``kl_estimator=full`` with ``kl_mode=loss``), the run has several processes, or no other
agent on its base has the same schedule this iteration (epochs, minibatches per epoch, and
autocast dtype): the steps of the agents updated together are taken side by side.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence

import torch

from seqmarl.agents.shared import evaluate_together, reference_together
from seqmarl.train.learner import Learner
from seqmarl.types import Completions, RolloutBatch

__all__ = ["UPDATE_MODES", "group_learners", "learn_together", "update_together", "why_alone"]

#: ``agents.update``: agent by agent (``per_agent``), or the agents of a base together.
UPDATE_MODES = ("per_agent", "mixed")


def why_alone(learner: Learner) -> str | None:
    """Why ``learner`` cannot update together with others on its base, or ``None``."""
    if getattr(learner.agent, "mixed_group", None) is None:
        return "it is not a LoRA adapter on a shared base (agents.mode=shared)"
    if learner.wants_full_kl and learner.config.kl_mode == "loss":
        return "kl_estimator=full with kl_mode=loss needs reference logits in every pass"
    if learner.dist.enabled or learner.agent.lockstep:
        return "the run has several processes"
    return None


def group_learners(
    learners: dict[str, Learner], rows: dict[str, int]
) -> tuple[list[list[str]], dict[str, str]]:
    """Which agents update together this iteration, and why each of the others does not.

    Args:
        learners: Agent id -> its learner.
        rows: The agents that learn this iteration -> their rows.

    Returns:
        ``(groups, alone)``: groups of two or more agent ids (in ``rows`` order) that share a
        base and a schedule, and agent id -> the reason it updates alone.
    """
    alone: dict[str, str] = {}
    by_key: dict[tuple, list[str]] = defaultdict(list)
    for a, n in rows.items():
        lr = learners[a]
        reason = why_alone(lr)
        if reason is not None:
            alone[a] = reason
            continue
        key = (
            id(lr.agent.mixed_group),
            lr.config.epochs,
            lr.minibatch_count(n),
            lr.autocast_dtype,
        )
        by_key[key].append(a)
    groups = []
    for members in by_key.values():
        if len(members) > 1:
            groups.append(members)
        else:
            alone[members[0]] = "no other agent on its base has its epochs and minibatch count"
    return groups, alone


def learn_together(
    learners: Sequence[Learner],
    completions: Sequence[Completions],
    returns: Sequence[torch.Tensor],
    group_ids: Sequence[torch.Tensor | None],
    roles: Sequence[torch.Tensor | None],
) -> list[dict[str, float]]:
    """:meth:`Learner.learn` of agents on one base together (one process): their metrics.

    The reference log-probs of every agent's rows come from one pass of the base; an agent
    whose KL is the exact one over the vocabulary builds its batch alone.
    """
    batches: list[RolloutBatch | None] = [None] * len(learners)
    joint = [i for i, lr in enumerate(learners) if not lr.wants_full_kl]
    if len(joint) > 1:
        refs = reference_together(
            [learners[i].agent for i in joint], [completions[i] for i in joint]
        )
        for i, ref in zip(joint, refs, strict=True):
            batches[i] = learners[i].make_batch(
                completions[i], returns[i], group_ids[i], roles[i], ref_logprobs=ref
            )
    for i, lr in enumerate(learners):
        if batches[i] is None:
            batches[i] = lr.make_batch(completions[i], returns[i], group_ids[i], roles[i])
    return update_together(learners, completions, batches)


def update_together(
    learners: Sequence[Learner],
    completions: Sequence[Completions],
    batches: Sequence[RolloutBatch],
) -> list[dict[str, float]]:
    """:meth:`Learner.update` of agents on one base together: one forward and backward per pass.

    Each minibatch step draws every learner's own minibatch (its own shuffle) and cuts it into
    its own length chunks (:meth:`Learner.chunks`, weighted as in its own update); the k-th
    chunks of all learners make one pass. The summed loss's backward leaves each adapter the
    gradient of its own loss; then each learner steps alone (:meth:`Learner.step`).

    Args:
        learners: Learners whose agents share one base and whose schedules agree
            (:func:`group_learners`).
        completions: Each learner's rows.
        batches: Each learner's :class:`RolloutBatch` of those rows.

    Returns:
        Each learner's metrics, as :meth:`Learner.update` returns them.
    """
    k = len(learners)
    plans = [lr.plan(c, b) for lr, c, b in zip(learners, completions, batches, strict=True)]
    sums = [defaultdict(float) for _ in range(k)]
    counts = [defaultdict(int) for _ in range(k)]
    stepped = [False] * k
    measure = [c.logprobs_from_engine for c in completions]  # on the first minibatch's rows
    entropy = [lr.config.entropy_coef > 0 for lr in learners]
    streams = [lr.minibatches(p.n) for lr, p in zip(learners, plans, strict=True)]
    for idxs in zip(*streams, strict=True):  # one minibatch of every learner
        for lr in learners:
            lr.optimizer.zero_grad(set_to_none=True)
        shares = [
            lr.chunks(c, p.whole, idx, idx)
            for lr, c, p, idx in zip(learners, completions, plans, idxs, strict=True)
        ]
        finite = [True] * k
        terms = [defaultdict(float) for _ in range(k)]
        for passes in itertools.zip_longest(*shares):  # the k-th chunk of each learner
            live = [i for i in range(k) if passes[i] is not None and finite[i]]
            if not live:
                continue
            subs = [completions[i].select(passes[i][0]) for i in live]
            with learners[0]._autocast():
                outs = evaluate_together(
                    [learners[i].agent for i in live],
                    subs,
                    with_values=[learners[i].algorithm.uses_value_head for i in live],
                    with_entropy=[entropy[i] for i in live],
                )
            total = None
            for i, sub, out in zip(live, subs, outs, strict=True):
                lr, (chunk, weight), plan = learners[i], passes[i], plans[i]
                if measure[i]:  # the weights are still the sampling ones here
                    plan.sampler.add(out.logprobs.detach() - sub.logprobs, sub.response_mask)
                loss = lr.algorithm.loss(
                    out, batches[i].select(chunk), plan.adv.select(chunk), lr.config, plan.kl_coef
                )
                if not torch.isfinite(loss.loss):  # this learner skips the step, alone
                    finite[i] = False
                    continue
                # chunk loss x its share = its part of the learner's minibatch mean loss
                part = loss.loss * weight
                total = part if total is None else total + part
                for name, v in loss.terms.items():
                    terms[i][name] += float(v) * weight
            if total is not None:
                total.backward()
        measure = [False] * k
        for i, lr in enumerate(learners):
            stepped[i] |= lr.step(finite[i], terms[i], sums[i], counts[i])
    return [
        lr.finish(plan, c, b, s, n, st)
        for lr, plan, c, b, s, n, st in zip(
            learners, plans, completions, batches, sums, counts, stepped, strict=True
        )
    ]
