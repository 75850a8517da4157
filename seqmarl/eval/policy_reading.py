"""Reading an LLM's policy as a table: each legal move's probability at an information state.

What :mod:`seqmarl.eval.exploitability` hands to OpenSpiel. For each information state the player
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
  ``sqrt(var / N)``; :func:`seqmarl.eval.exploitability.model_row` adds the exploitability's
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
    "answer_mass",
    "canonical_answer",
    "exact_blocker",
    "read_policy",
    "sequence_logprobs",
    "shares",
    "spellings",
    "trie_mass",
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
        policy: The agent (its ``generation`` settings).
        answers: Per information state, legal move -> its canonical answer.
        prefix: ``task.action_prefix``.
        stops: Every stop string of a response.
    """
    from seqmarl.envs.suites.openspiel import parse_move

    g = policy.generation
    if g.top_k or g.top_p < 1.0 or g.repetition_penalty != 1.0:
        return "top_k, top_p or repetition_penalty reshape the sampling distribution"
    for moves in answers.values():
        legal = dict.fromkeys(moves, "")  # ids alone: a name must not decide the canonical text
        for move, text in moves.items():
            if parse_move(prefix + text, legal) != move:
                return f"the answer {text!r} is not read as move {move} after {prefix!r}"
            for stop in stops:  # a stop string that starts inside the answer cuts it
                if any(stop.startswith(text[i:]) or stop in text for i in range(len(text))):
                    return f"the answer {text!r} can be cut by the stop string {stop!r}"
    return None


#: id(tokenizer) -> (the tokenizer, each token's text); holding the tokenizer keeps its id
#: from being reused by a later object while the entry lives
_VOCAB: dict[int, tuple[Any, list[str]]] = {}


def _vocab(tokenizer: Any) -> list[str]:
    """Each token id's text (empty for special tokens), cached per tokenizer."""
    held = _VOCAB.get(id(tokenizer))
    if held is None or held[0] is not tokenizer:
        special = set(tokenizer.all_special_ids)
        texts = ["" if i in special else tokenizer.decode([i]) for i in range(len(tokenizer))]
        held = _VOCAB[id(tokenizer)] = (tokenizer, texts)
    return held[1]


def spellings(tokenizer: Any, text: str, room: int) -> list[list[int]]:
    """Every token sequence (at most ``room`` tokens) whose text begins with ``text``.

    Each sequence ends at the token that completes ``text`` (``[1]`` may be ``[``, ``1``,
    ``]`` or ``[``, ``1``, ``],``, ...), so no sequence begins another: a response begins with
    ``text`` exactly when its tokens begin with one of them. Sequences are checked by decoding
    them whole; a tokenizer whose tokens do not spell text one by one loses spellings (a lower
    bound, then).
    """
    vocab = _vocab(tokenizer)
    found: list[list[int]] = []

    def walk(rest: str, seq: list[int]) -> None:
        if len(seq) >= room:
            return
        for i, piece in enumerate(vocab):
            if not piece:
                continue
            if piece.startswith(rest):
                found.append([*seq, i])
            elif rest.startswith(piece):
                walk(rest[len(piece) :], [*seq, i])

    walk(text, [])
    return [s for s in found if tokenizer.decode(s, skip_special_tokens=True).startswith(text)]


@torch.no_grad()
def sequence_logprobs(
    policy: Any, prompts: Sequence[str], responses: Sequence[Sequence[int]]
) -> np.ndarray:
    """``(len(prompts),)``: log-probability that response ``i`` begins with token sequence ``i``.

    Under the sampling temperature, in one batched :meth:`~seqmarl.agents.base.Policy.evaluate`;
    prompts are tokenized as sampling tokenizes them.
    """
    from seqmarl.agents.sampling import Completions

    tok, device = policy.tokenizer, policy.device
    enc = tok(list(prompts), padding=True, return_tensors="pt")
    width = max(len(x) for x in responses)
    response = torch.full((len(responses), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(responses), width))
    for j, x in enumerate(responses):
        response[j, : len(x)] = torch.tensor(list(x), dtype=torch.long)
        mask[j, : len(x)] = 1.0
    comp = Completions(
        query_ids=enc["input_ids"].to(device),
        query_mask=enc["attention_mask"].to(device),
        response_ids=response.to(device),
        response_mask=mask.to(device),
        logprobs=torch.zeros((len(responses), width), device=device),
        values=None,
        texts=[tok.decode(x) for x in responses],
    )
    logprobs = policy.evaluate(comp).logprobs  # (B, T), 0 on padding
    return (logprobs.double() * comp.response_mask.double()).sum(1).cpu().numpy()


def answer_mass(
    policy: Any,
    states: Sequence[tuple[str, str, Mapping[int, str]]],
    answers: Mapping[str, Mapping[int, str]],
    *,
    max_rows: int = 256,
) -> dict[str, dict[int, float]]:
    """Per state and move, the probability that the response begins with the move's answer.

    Sums :func:`sequence_logprobs` over the answer's :func:`spellings` that fit the
    shortest response length; one state's rows go to the model together (its prompt is run
    once), several states per call up to ``max_rows`` rows. A Hugging Face policy takes the
    same sum faster, from whole next-token distributions (:func:`trie_mass`).
    """
    g = policy.generation
    room = min(g.length_cycle) if g.length_cycle else (g.min_new_tokens or g.max_new_tokens)
    if hasattr(policy, "_policy_module"):  # an HF policy: walk the token trie, one prompt pass
        return trie_mass(policy, states, answers, room)
    spelled: dict[str, list[list[int]]] = {}
    rows = [
        (k, prompt, a, seq)
        for k, prompt, moves in states
        for a in moves
        for seq in spelled.setdefault(
            answers[k][a], spellings(policy.tokenizer, answers[k][a], room)
        )
    ]
    mass = {k: dict.fromkeys(moves, 0.0) for k, _, moves in states}
    batch: list[tuple[str, str, int, list[int]]] = []
    by_state: dict[str, list] = {}
    for row in rows:
        by_state.setdefault(row[0], []).append(row)
    groups = list(by_state.values())
    for n, group in enumerate(groups):
        batch += group
        if len(batch) >= max_rows or n == len(groups) - 1:
            lp = sequence_logprobs(policy, [r[1] for r in batch], [r[3] for r in batch])
            for (k, _, a, _), x in zip(batch, lp, strict=True):
                mass[k][a] += math.exp(x)
            batch = []
    return mass


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
            mass = answer_mass(policy, states, answers, max_rows=max(batch_size, 256))
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


_PIECES: dict[tuple[int, str], tuple[list[str], list[int], list[tuple[int, str]]]] = {}


def _pieces(vocab: list[str], rest: str) -> tuple[list[int], list[tuple[int, str]]]:
    """Tokens whose text begins with ``rest``; tokens whose text ``rest`` continues (+ the rest)."""
    held = _PIECES.get((id(vocab), rest))
    if held is None or held[0] is not vocab:
        whole = [i for i, p in enumerate(vocab) if p and p.startswith(rest)]
        part = [(i, rest[len(p) :]) for i, p in enumerate(vocab) if p and rest.startswith(p)]
        held = _PIECES[(id(vocab), rest)] = (vocab, whole, [(i, t) for i, t in part if t])
    return held[1], held[2]


@torch.no_grad()
def trie_mass(
    policy: Any,
    states: Sequence[tuple[str, str, Mapping[int, str]]],
    answers: Mapping[str, Mapping[int, str]],
    room: int,
    *,
    chunk: int = 16,
) -> dict[str, dict[int, float]]:
    """:func:`answer_mass` for a Hugging Face policy, from whole next-token distributions.

    One pass over each prompt gives the first token's distribution (at the sampling
    temperature): the tokens whose text begins with the answer add their probability; each
    token whose text the answer continues (``1`` of ``1]``) is fed once more, from the
    prompt's KV cache, and the walk goes on with the rest of the answer, up to ``room``
    tokens. The same sum as over :func:`spellings`, at about the cost of the prompt.
    """
    from seqmarl.agents.sampling import _cache_of, _positions, _with_cache

    tok, temperature = policy.tokenizer, policy.generation.temperature
    vocab = _vocab(tok)
    mass = {k: dict.fromkeys(moves, 0.0) for k, _, moves in states}
    with policy._policy_module() as model:
        device = next(model.parameters()).device
        for i in range(0, len(states), chunk):
            part = states[i : i + chunk]
            enc = tok([p for _, p, _ in part], padding=True, return_tensors="pt").to(device)
            mask = enc["attention_mask"]
            out = model(
                input_ids=enc["input_ids"],
                attention_mask=mask,
                position_ids=_positions(mask),
                use_cache=True,
                logits_to_keep=1,
            )
            logp = (out.logits[:, -1].float() / temperature).log_softmax(-1)  # (B, V)
            past = _cache_of(out)
            # (row of logp and the cache, state, move, log-prob so far, answer still to spell)
            frontier = [
                (b, k, a, 0.0, answers[k][a]) for b, (k, _, moves) in enumerate(part) for a in moves
            ]
            for depth in range(1, room + 1):
                grow = []
                for row, k, a, acc, rest in frontier:
                    whole, partial = _pieces(vocab, rest)
                    if whole:
                        got = float(logp[row, whole].double().exp().sum())
                        mass[k][a] += math.exp(acc) * got
                    if depth < room:
                        grow += [
                            (row, t, k, a, acc + float(logp[row, t]), tail) for t, tail in partial
                        ]
                if not grow:
                    break
                rows = torch.tensor([g[0] for g in grow], device=device)
                past.batch_select_indices(rows)  # one cache row per branch (rows may repeat)
                mask = torch.cat([mask[rows], torch.ones_like(mask[rows][:, :1])], dim=1)
                out = model(
                    input_ids=torch.tensor([[g[1]] for g in grow], device=device),
                    attention_mask=mask,
                    position_ids=_positions(mask)[:, -1:],
                    **_with_cache(past),
                    use_cache=True,
                )
                logp = (out.logits[:, -1].float() / temperature).log_softmax(-1)
                past = _cache_of(out)
                frontier = [(j, k, a, acc, tail) for j, (_, _, k, a, acc, tail) in enumerate(grow)]
    return mass
