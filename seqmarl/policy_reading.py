"""Reading an LLM's policy as a table: each legal move's probability at an information state.

What :mod:`seqmarl.exploitability` hands to OpenSpiel. For each information state the player
to move reads the text the env gives it there
(:meth:`~seqmarl.envs.suites.openspiel.OpenSpielTextEnv.observation_at`, then the run's
observation limit and ``task.observation_template``:
:meth:`~seqmarl.envs.game.AECGame.frame`); its answer goes to the env after
``task.action_prefix`` and the env's parse rule picks the move (the first ``[N]`` with a legal
``N``, else a legal move's name), an answer naming no legal move becoming a uniformly random
legal move. Two ways to get the probability of each legal move ``a``:

* ``exact`` (the default): ``p_a``, the probability that the response starts with the tokens
  of move ``a``'s canonical answer ``[a]`` (less the part ``action_prefix`` already wrote:
  ``a]`` after a prefix ``[``), computed from the model's log-probs under the sampling
  temperature. Any response that starts so is read as ``a``, so ``p_a`` is exact mass on
  ``a``. The rest, ``L = 1 - sum_a p_a`` (other texts, other tokenisations of the same text),
  is counted as illegal answers, that is spread uniformly: ``pi(a) = p_a + L / |A|``. This is
  the policy exactly when that rest names no legal move; in any case the true ``pi(a)`` lies
  in ``[p_a, p_a + L]``, and the report gives ``L``'s mean and largest value over the
  information states. Exact reading needs a sampling distribution that the log-probs describe
  (no ``top_k``, ``top_p`` or ``repetition_penalty``), room for the answer's tokens within
  the response length, and answers that stop strings leave readable; otherwise the policy is
  sampled and the report says why.
* ``sampled`` (``--exploitability-samples N``, or :data:`FALLBACK_SAMPLES` when exact
  reading is not possible): ``N`` responses per information state, parsed as the env parses
  them; ``pi(a)`` is the share that played ``a`` (an illegal answer counting ``1/|A|``
  towards each move). The reading gives the largest per-move standard error,
  ``sqrt(var / N)``; :func:`seqmarl.exploitability.model_row` adds the exploitability's
  standard deviation over resamples of the answers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "FALLBACK_SAMPLES",
    "answer_logprobs",
    "canonical_answer",
    "exact_blocker",
    "read_policy",
    "shares",
]

#: Responses per information state where a policy cannot be read exactly and none were asked.
FALLBACK_SAMPLES = 64


def canonical_answer(move: int, action_prefix: str = "") -> str:
    """The response that names ``move`` after ``action_prefix``: ``[move]`` less the prefix."""
    full = f"[{move}]"
    return full[len(action_prefix) :] if action_prefix and full.startswith(action_prefix) else full


def exact_blocker(
    policy: Any, answers: Mapping[str, Mapping[int, str]], prefix: str, stops: Sequence[str]
) -> str | None:
    """Why ``policy``'s move probabilities cannot be read exactly, or None when they can.

    Args:
        policy: The agent (its ``generation`` settings and tokenizer).
        answers: Per information state, legal move -> its canonical answer.
        prefix: ``task.action_prefix``.
        stops: Every stop string of a response.
    """
    from seqmarl.agents.sampling import cut_at_stop
    from seqmarl.envs.suites.openspiel import parse_move

    g = policy.generation
    if g.top_k or g.top_p < 1.0 or g.repetition_penalty != 1.0:
        return "top_k, top_p or repetition_penalty reshape the sampling distribution"
    room = min(g.length_cycle) if g.length_cycle else (g.min_new_tokens or g.max_new_tokens)
    cache: dict[str, list[int]] = {}

    def tokens(text: str) -> list[int]:
        if text not in cache:
            cache[text] = list(policy.tokenizer(text, add_special_tokens=False)["input_ids"])
        return cache[text]

    for moves in answers.values():
        legal = dict.fromkeys(moves, "")  # ids alone: a name must not decide the canonical text
        seqs = {a: tokens(t) for a, t in moves.items()}
        for a, x in seqs.items():
            for b, y in seqs.items():
                if a != b and y[: len(x)] == x:  # the events must be disjoint
                    return f"the answer {moves[a]!r}'s tokens begin {moves[b]!r}'s"
        for move, text in moves.items():
            ids = seqs[move]
            if len(ids) > room:
                return f"the answer {text!r} takes {len(ids)} tokens; responses may end at {room}"
            # what a response beginning with these tokens reads as (a tokenizer may add a space)
            said = policy.tokenizer.decode(ids, skip_special_tokens=True)
            if parse_move(prefix + cut_at_stop(said, stops), legal) != move:
                return f"the answer {text!r} is not read as move {move} (a stop string cuts it)"
    return None


@torch.no_grad()
def answer_logprobs(
    policy: Any, prompts: Sequence[str], answers: Sequence[str], *, batch_size: int = 32
) -> np.ndarray:
    """``(len(prompts),)``: log-probability that ``policy``'s response to prompt ``i`` starts so.

    Row ``i``'s event is that the response's first tokens are answer ``i``'s tokens.

    Prompts are tokenized as sampling tokenizes them; an answer's tokens are the tokenizer's
    encoding of it alone; log-probs are taken under the sampling temperature
    (:meth:`~seqmarl.agents.base.Policy.evaluate`).
    """
    from seqmarl.agents.sampling import Completions

    tok, device = policy.tokenizer, policy.device
    out: list[float] = []
    for i in range(0, len(prompts), batch_size):
        ps, ans = list(prompts[i : i + batch_size]), list(answers[i : i + batch_size])
        enc = tok(ps, padding=True, return_tensors="pt")
        ids = [tok(a, add_special_tokens=False)["input_ids"] for a in ans]
        width = max(len(x) for x in ids)
        response = torch.full((len(ids), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width))
        for j, x in enumerate(ids):
            response[j, : len(x)] = torch.tensor(x, dtype=torch.long)
            mask[j, : len(x)] = 1.0
        comp = Completions(
            query_ids=enc["input_ids"].to(device),
            query_mask=enc["attention_mask"].to(device),
            response_ids=response.to(device),
            response_mask=mask.to(device),
            logprobs=torch.zeros((len(ids), width), device=device),
            values=None,
            texts=ans,
        )
        logprobs = policy.evaluate(comp).logprobs  # (B, T), 0 on padding
        out += (logprobs.float() * comp.response_mask).sum(1).tolist()
    return np.array(out, dtype=np.float64)


def read_policy(
    policy: Any,
    states: Sequence[tuple[str, str, Mapping[int, str]]],
    *,
    action_prefix: str = "",
    stop_strings: Sequence[str] = (),
    samples: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
) -> dict[str, Any]:
    """The move probabilities of ``policy`` at every information state.

    Args:
        policy: The agent (:class:`~seqmarl.agents.base.Policy`: ``generation``,
            ``tokenizer``, ``evaluate``, ``sample``).
        states: ``(information state, prompt text, legal moves: id -> name)`` per information
            state.
        action_prefix: ``task.action_prefix``.
        stop_strings: The game's stop strings (the agent adds its own).
        samples: Sample this many responses per state; None: exact where possible.
        seed: Seeds the sampling.
        batch_size: Rows per model call.

    Returns:
        ``{"probs": {state: {move: p}}, "method": "exact" | "sampled", "why_sampled",
        "leftover_mean", "leftover_max"`` (exact), ``"samples", "se_max", "counts"``
        (sampled: per state the answers' move, ``-1`` illegal)``}``.
    """
    from seqmarl.envs.suites.openspiel import parse_move

    stops = policy.generation.stops(stop_strings)
    answers = {k: {a: canonical_answer(a, action_prefix) for a in moves} for k, _, moves in states}
    why = None
    if samples is None:
        why = exact_blocker(policy, answers, action_prefix, stops)
        if why is None:
            rows = [(k, p, a) for k, p, moves in states for a in moves]
            lp = answer_logprobs(
                policy,
                [p for _, p, _ in rows],
                [answers[k][a] for k, _, a in rows],
                batch_size=batch_size,
            )
            mass: dict[str, dict[int, float]] = {}
            for (k, _, a), x in zip(rows, lp, strict=True):
                mass.setdefault(k, {})[a] = math.exp(x)
            probs, left = {}, []
            for k, _, moves in states:
                total = sum(mass[k].values())
                if total > 1.0:  # rounding only: the events are disjoint
                    mass[k] = {a: p / total for a, p in mass[k].items()}
                rest = max(0.0, 1.0 - total)
                left.append(rest)
                probs[k] = {a: mass[k][a] + rest / len(moves) for a in moves}
            return {
                "probs": probs,
                "method": "exact",
                "leftover_mean": float(np.mean(left)),
                "leftover_max": float(np.max(left)),
            }
        samples = FALLBACK_SAMPLES
    gen = torch.Generator(device=policy.device).manual_seed(seed)
    counts: dict[str, list[int]] = {}
    per_batch = max(1, batch_size // samples)
    for i in range(0, len(states), per_batch):
        chunk = states[i : i + per_batch]
        prompts = [p for _, p, _ in chunk for _ in range(samples)]
        texts = policy.sample(prompts, generator=gen, stop_strings=stop_strings).texts
        for j, (k, _, moves) in enumerate(chunk):
            got = texts[j * samples : (j + 1) * samples]
            counts[k] = [_or_illegal(parse_move(action_prefix + t, moves)) for t in got]
    probs, se = {}, 0.0
    for k, _, moves in states:
        probs[k], s = shares(counts[k], moves)
        se = max(se, s)
    return {
        "probs": probs,
        "method": "sampled",
        "why_sampled": why,
        "samples": samples,
        "se_max": se,
        "counts": counts,
    }


def _or_illegal(move: int | None) -> int:
    return -1 if move is None else move


def shares(counts: Sequence[int], moves: Sequence[int]) -> tuple[dict[int, float], float]:
    """Each move's share of ``counts`` (``-1``: illegal, ``1/|A|`` to each); the largest SE."""
    n, k = len(counts), len(moves)
    x = np.array([[(c == a) + (c == -1) / k for a in moves] for c in counts])  # (n, |A|)
    se = float((x.std(0, ddof=1) / math.sqrt(n)).max()) if n > 1 else math.nan
    return {a: float(x[:, i].mean()) for i, a in enumerate(moves)}, se
