"""Batched sampling with a KV cache, and the matching teacher-forced forward pass.

The policy being trained is ``softmax(logits / temperature)``; top-k, top-p and the
repetition penalty only shape what is *sampled*, so the log-probs returned by :func:`sample`
are exactly those a fresh forward pass (:func:`response_forward`) computes for the same
tokens. Queries are left-padded, responses right-padded; position ids follow the attention
mask, so padding never shifts a position.

**Shared prompts are computed once.** Group algorithms (RLOO, GRPO) answer every prompt k
times; when at least half the rows repeat another row's prompt, both functions run the
prompt through the model once per distinct prompt, copy its KV cache to the rows that share
it, and run only the responses per row. The result is the same computation (to float
rounding) with up to k times fewer prompt-token FLOPs in sampling, the reference pass and the
training pass (gradients flow back through the copied cache into the one prompt pass).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.modeling_outputs import CausalLMOutputWithPast

from seqmarl.agents import lora_rows
from seqmarl.errors import ContextLengthError
from seqmarl.ops import draw_length
from seqmarl.types import Completions  # re-exported: its home is seqmarl.types

__all__ = [
    "Completions",
    "ContextLengthError",
    "draw_length",
    "response_forward",
    "sample",
    "selective_log_softmax",
    "shared_rows",
]


#: The name under which this transformers passes a KV cache into a model's forward and back
#: out of it: ``cache`` in the releases that renamed it (and warn on the old name, to be
#: removed in 5.40), ``past_key_values`` before them. Read off the output class, not a
#: version number, so a backport either way is followed.
CACHE = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def _with_cache(past) -> dict:
    """The forward keyword that hands ``past`` (a transformers ``Cache``) to the model."""
    return {CACHE: past}


def _cache_of(out):
    """The KV cache a forward with ``use_cache=True`` returned."""
    return getattr(out, CACHE)


def selective_log_softmax(logits: torch.Tensor, ids: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """``log_softmax(logits)[..., ids]`` without materialising the full ``(B, T, V)`` log-softmax.

    Args:
        logits: ``(B, T, V)``.
        ids: ``(B, T)``.
        chunk: Rows processed at a time (bounds the temporary ``logsumexp`` memory).

    Returns:
        ``(B, T)`` float32 log-probs.
    """
    out = []
    for lg, ix in zip(logits.split(chunk), ids.split(chunk), strict=True):
        lg = lg.float()
        picked = lg.gather(-1, ix.unsqueeze(-1)).squeeze(-1)  # (b, T)
        out.append(picked - torch.logsumexp(lg, dim=-1))
    return torch.cat(out)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding: ``(B, S) -> (B, S)``."""
    return (mask.long().cumsum(-1) - 1).clamp_min(0)


def cut_at_stop(text: str, stop_strings: Sequence[str]) -> str:
    """``text`` up to (not including) the first occurrence of any stop string."""
    cut = min((i for i in (text.find(s) for s in stop_strings if s) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut]


def _tail_has_stop(tokenizer, tokens, done, stop_strings, tail) -> torch.Tensor:
    """(B,) bool: the last ``tail`` tokens of a still-running row contain a stop string."""
    recent = torch.stack(tokens[-tail:], 1)  # (B, <= tail)
    hit = torch.zeros_like(done)
    rows = (~done).nonzero().squeeze(1).tolist()
    if not rows:  # (decoding an empty batch is not an empty list for every tokenizer)
        return hit
    for row, text in zip(rows, tokenizer.batch_decode(recent[rows]), strict=True):
        hit[row] = any(s in text for s in stop_strings)
    return hit


def shared_rows(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(first, inverse)`` when rows of ``keys`` repeat enough to share one prompt pass.

    ``keys[first]`` are the distinct rows (each at its first occurrence) and
    ``keys[first][inverse] == keys``. ``None`` when fewer than half the rows are repeats:
    a second model call would then cost more than it saves.
    """
    b = keys.shape[0]
    if b < 2:
        return None
    _, inverse = torch.unique(keys, dim=0, return_inverse=True)
    n = int(inverse.max()) + 1
    if 2 * n > b:
        return None
    rows = torch.arange(b, device=keys.device)
    first = torch.full((n,), b, dtype=torch.long, device=keys.device)
    first = first.scatter_reduce(0, inverse, rows, reduce="amin")
    # renumber the groups by first occurrence, so ``first`` is in row order
    order = torch.argsort(first)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n, device=keys.device)
    return first[order], rank[inverse]


def _check_context(model: nn.Module, prompt_tokens: int, max_new_tokens: int) -> None:
    """A clear error where a prompt plus its answer would run past learned position embeddings.

    GPT-2-style models (``n_positions``) fail deep inside the model with an index error there;
    rotary models only degrade, so they are left alone.
    """
    limit = getattr(model.config, "n_positions", None)
    if limit is not None and prompt_tokens + max_new_tokens > limit:
        raise ContextLengthError(
            f"a prompt of {prompt_tokens} tokens plus max_new_tokens={max_new_tokens} exceeds "
            f"the model's {limit} positions; set task.max_observation_chars (a later seat's "
            "or a game's observation also carries the earlier turns), shorten the prompts or "
            "lower agents.generation.max_new_tokens"
        )


def sample_categorical(probs: torch.Tensor, generator: torch.Generator | None = None):
    """One draw per row of ``probs`` (B, V) by inverting the CDF: ``cumsum`` + ``searchsorted``.

    Exact up to float32 rounding of the cumulative sum, and on CPU 5-30x faster than
    ``torch.multinomial`` (``benchmarks/sampling_ops.py``), which draws V random numbers per
    row where this draws one. Rows need not be normalised; zero-probability tokens are never
    drawn.
    """
    cdf = probs.cumsum(-1)  # (B, V)
    u = (
        torch.rand((probs.shape[0], 1), generator=generator, device=probs.device, dtype=cdf.dtype)
        * cdf[:, -1:]
    )
    tok = torch.searchsorted(cdf, u, right=True).squeeze(1)  # first index with cdf > u
    # u can round up to the total: fall back to the most likely token (a 2^-24 event)
    return torch.where(tok >= probs.shape[1], probs.argmax(-1), tok)


@torch.no_grad()
def sample(
    model: nn.Module,
    tokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    stop_at_eos: bool = True,
    stop_strings: Sequence[str] = (),
    generator: torch.Generator | None = None,
    value_head: nn.Module | None = None,
    all_done: Callable[[bool], bool] | None = None,
) -> Completions:
    """Sample one response per prompt, batched, with the KV cache.

    A row stops at EOS (``stop_at_eos``) or at the token that completes one of
    ``stop_strings``; that token stays in ``response_ids`` (it is the last action), while
    ``texts`` end before the stop string.

    ``all_done(mine)`` decides when decoding ends from whether this batch is done: a model
    sharded over processes (FSDP) must run the same number of forward passes on every rank,
    so there it answers "done on every rank" (finished rows only add padding columns).

    Returns:
        :class:`Completions`; ``logprobs`` under ``softmax(logits / temperature)``.
    """
    device = next(model.parameters()).device
    enc = tokenizer(prompts, padding=True, return_tensors="pt").to(device)
    ids, attn = enc["input_ids"], enc["attention_mask"]
    _check_context(model, int(attn.sum(1).max()), max_new_tokens)
    b = ids.shape[0]
    shared = shared_rows(torch.cat([ids, attn], dim=1))
    processors = LogitsProcessorList()
    if repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(repetition_penalty))
    if top_k > 0:
        processors.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p))
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    want_hidden = value_head is not None
    stop_strings = tuple(s for s in stop_strings if s)
    tail = max((len(s) for s in stop_strings), default=0) + 2  # tokens that can hold one

    first = slice(None) if shared is None else shared[0]
    out = model(
        input_ids=ids[first],
        attention_mask=attn[first],
        position_ids=_positions(attn[first]),
        use_cache=True,
        output_hidden_states=want_hidden,
        logits_to_keep=1,  # the prompt's other positions need no LM head
    )
    logits, past = out.logits[:, -1], _cache_of(out)
    hidden = out.hidden_states[-1][:, -1] if want_hidden else None
    if shared is not None:  # one prefill per distinct prompt, copied to the rows sharing it
        inverse = shared[1]
        past.batch_select_indices(inverse)
        logits = logits[inverse]
        hidden = hidden[inverse] if want_hidden else None
    seen = ids  # (B, S + t) for the repetition penalty
    done = torch.zeros(b, dtype=torch.bool, device=device)
    tokens, logps, values, masks, entropies = [], [], [], [], []
    for _ in range(max_new_tokens):
        scaled = logits.float() / temperature  # (B, V)
        logp = scaled.log_softmax(-1)
        scores = processors(seen, scaled) if processors else scaled
        probs = scores.softmax(-1)
        tok = sample_categorical(probs, generator)  # (B,)
        tok = torch.where(done, torch.full_like(tok, pad), tok)
        alive = (~done).float()
        tokens.append(tok)
        masks.append(alive)
        logps.append(logp.gather(-1, tok[:, None]).squeeze(1) * alive)
        entropies.append(-(logp.exp() * logp).sum(-1) * alive)
        if want_hidden:
            values.append(value_head(hidden).squeeze(-1) * alive)
        if stop_at_eos:
            done = done | (tok == eos)
        if stop_strings:
            done = done | _tail_has_stop(tokenizer, tokens, done, stop_strings, tail)
        finished = bool(done.all())
        if all_done is not None:
            finished = all_done(finished)
        if finished:
            break
        seen = torch.cat([seen, tok[:, None]], dim=1)
        attn = torch.cat([attn, torch.ones_like(attn[:, :1])], dim=1)
        out = model(
            input_ids=tok[:, None],
            attention_mask=attn,
            position_ids=_positions(attn)[:, -1:],
            **_with_cache(past),
            use_cache=True,
            output_hidden_states=want_hidden,
        )
        logits, past = out.logits[:, -1], _cache_of(out)
        hidden = out.hidden_states[-1][:, -1] if want_hidden else None
    response_ids = torch.stack(tokens, 1)  # (B, T)
    response_mask = torch.stack(masks, 1)  # (B, T)
    texts = tokenizer.batch_decode(
        response_ids.masked_fill(response_mask == 0, pad), skip_special_tokens=True
    )
    if stop_strings:
        texts = [cut_at_stop(t, stop_strings) for t in texts]
    return Completions(
        query_ids=ids,
        query_mask=enc["attention_mask"],
        response_ids=response_ids,
        response_mask=response_mask,
        logprobs=torch.stack(logps, 1),
        values=torch.stack(values, 1) if want_hidden else None,
        texts=texts,
        entropy=torch.stack(entropies, 1),
    )


def response_forward(
    model: nn.Module,
    completions: Completions,
    *,
    temperature: float = 1.0,
    value_head: nn.Module | None = None,
    return_logits: bool = False,
    share_prompts: bool = True,
    adapter_names: Sequence[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Teacher-forced pass over prompt + response; only response positions get logits.

    Rows that repeat a prompt run it once (two model calls) unless ``share_prompts`` is off
    (one packed call whatever the rows: what a model sharded over processes needs, since
    every rank must make the same calls).

    ``adapter_names`` (one per row, each adapter's rows adjacent) runs each row through its
    own LoRA adapter of a peft ``model`` in one batch (:data:`MIXED_ENGINE`). Gradients flow
    to each adapter from its own rows only. Rows share a prompt pass only with rows of the
    same adapter.

    Returns:
        ``(logprobs (B, T), values (B, T) or None, logits (B, T, V) or None)``, all zeroed
        (logprobs, values) on padding; ``logits`` are already divided by the temperature, and
        unspecified at padding positions (mask what you compute from them).
    """
    q, r = completions.query_ids, completions.response_ids
    qmask, rmask = completions.query_mask, completions.response_mask
    full_t = r.shape[1]
    # Columns that are padding in every row change nothing but cost a full column of work:
    # a length-sorted minibatch chunk (Learner) is often much narrower than the whole batch.
    q, qmask, r, rmask = _trim_padding(q, qmask, r, rmask)
    t = r.shape[1]
    want_hidden = value_head is not None
    keys = torch.cat([q, qmask.long()], dim=1)
    names = None
    if adapter_names is not None:
        names = list(adapter_names)
        ids = {a: k for k, a in enumerate(dict.fromkeys(names))}
        owner = torch.tensor([ids[a] for a in names], device=q.device)
        keys = torch.cat([keys, owner[:, None]], dim=1)  # one prompt pass per (prompt, adapter)
    shared = shared_rows(keys) if share_prompts else None
    if shared is None:
        logits, hidden, targets, back = _packed_forward(
            model, q, qmask, r, rmask, want_hidden, names
        )
    else:
        logits, hidden = _shared_prompt_forward(
            model, q, qmask, r, rmask, shared, want_hidden, names
        )
        targets, back = r, None
    if temperature != 1.0:
        logits = logits / temperature
    logprobs = selective_log_softmax(logits, targets)
    values = None if value_head is None else value_head(hidden).squeeze(-1)
    if back is not None:  # packed rows: from window positions back to response columns
        logprobs = logprobs.gather(1, back)
        values = None if values is None else values.gather(1, back)
        if return_logits:
            logits = logits.gather(1, back[..., None].expand(-1, -1, logits.shape[-1]))
    logprobs = logprobs * rmask
    values = None if values is None else values * rmask
    if t < full_t:  # back to the caller's width; trimmed positions are padding (zeros)
        pad = (0, full_t - t)
        logprobs = F.pad(logprobs, pad)
        values = None if values is None else F.pad(values, pad)
        logits = F.pad(logits, (0, 0, *pad)) if return_logits else logits
    return logprobs, values, logits if return_logits else None


def _trim_padding(q, qmask, r, rmask):
    """Drop the query's leading and the response's trailing columns that are padding in every row.

    Keeps at least one query and one response column, so shapes stay valid for empty rows.
    """
    keep_q = qmask.bool().any(0).nonzero()
    start = int(keep_q[0]) if len(keep_q) else max(q.shape[1] - 1, 0)
    keep_r = rmask.bool().any(0).nonzero()
    end = int(keep_r[-1]) + 1 if len(keep_r) else 1
    if start == 0 and end == r.shape[1]:
        return q, qmask, r, rmask
    return q[:, start:], qmask[:, start:], r[:, :end], rmask[:, :end]


#: How a batch runs each row through its own adapter (``response_forward(adapter_names=)``):
#: ``blocks`` (:mod:`seqmarl.agents.lora_rows`: each adapter's low-rank branch over its block
#: of rows, no copies; plain LoRA on linear layers) or ``peft`` (peft's ``adapter_names=``,
#: which gathers each adapter's rows into copies: slower and larger in a training pass).
MIXED_ENGINE = "blocks"


def _call(model: nn.Module, names: list[str] | None, rows: torch.Tensor | None = None, **kw):
    """``model(**kw)``; with ``names``, row ``i`` through adapter ``names[i]`` (of ``rows``)."""
    if names is None:
        return model(**kw)
    if rows is not None:
        names = [names[i] for i in rows.tolist()]
    if MIXED_ENGINE == "blocks" and lora_rows.supported(model):
        with lora_rows.adapters_by_row(model, names):
            return model(**kw)
    return model(**kw, adapter_names=names)


def _packed_forward(model, q, qmask, r, rmask, want_hidden, names=None):
    """:func:`response_forward`'s single pass, each row's prompt + response packed to the right.

    With prompts left-padded and responses right-padded, a row's tokens sit in the middle of a
    (longest prompt + longest response) wide row. Shifting every row so that its last response
    token is in the last column makes the pass (longest prompt + response) wide instead; the
    attention mask and position ids still cover exactly the row's tokens. The last ``T + 1``
    positions then hold every row's response predictions, each ending at the same column;
    they are shifted back to the response's own columns after the pass (a no-op when every
    response has the full length ``T``).

    Returns:
        ``(logits (B, T, V), hidden (B, T, H) or None, targets (B, T), back (B, T) or None)``
        over the window: ``logits[:, k]`` predicts ``targets[:, k]``; response token ``j`` of
        row ``i`` is window position ``back[i, j]`` (``None``: the window is the response).
    """
    tq = q.shape[1]
    t = r.shape[1]
    qlen, rlen = qmask.long().sum(1), rmask.long().sum(1)
    width = int((qlen + rlen).max())
    ids = torch.cat([q, r], dim=1)
    cols = torch.arange(width, device=q.device)
    # row i's tokens end at column tq + rlen_i of [q, r]; column width - 1 takes that last one
    src = (cols[None, :] + (tq + rlen - width)[:, None]).clamp(0, tq + t - 1)
    attn = (cols[None, :] >= (width - qlen - rlen)[:, None]).long()
    # padding columns hold the pad token, as in the sampling pass: a row with an empty prompt
    # predicts its first token from one (masked, but its own input all the same)
    pads = torch.cat([q[qmask == 0], r[rmask == 0]])
    pad = pads[0] if len(pads) else torch.zeros((), dtype=ids.dtype, device=ids.device)
    ids = torch.where(attn.bool(), ids.gather(1, src), pad)
    out = _call(
        model,
        names,
        input_ids=ids,
        attention_mask=attn,
        position_ids=_positions(attn),
        use_cache=False,
        logits_to_keep=t + 1,
        output_hidden_states=want_hidden,
    )
    logits = out.logits[:, :-1]  # (B, T, V): window position k predicts column width - T + k
    hidden = out.hidden_states[-1][:, -t - 1 : -1] if want_hidden else None
    back = None
    if bool((rlen < t).any()):  # response token j of row i sits at window position T - len_i + j
        back = (t - rlen[:, None] + torch.arange(t, device=q.device)[None, :]).clamp(max=t - 1)
    return logits, hidden, ids[:, width - t :], back


def _shared_prompt_forward(model, q, qmask, r, rmask, shared, want_hidden, names=None):
    """:func:`response_forward`'s pass with one prompt pass per distinct prompt.

    Pass 1 runs the distinct prompts and keeps their KV cache and last-position output (which
    predicts response token 0); the cache is copied to every row; pass 2 runs response tokens
    ``0..T-2`` (which predict tokens ``1..T-1``) against it.

    Returns:
        ``(logits (B, T, V), hidden (B, T, H) or None)``.
    """
    first, inverse = shared
    tq, t = q.shape[1], r.shape[1]
    pmask = qmask[first]
    out = _call(
        model,
        names,
        first,
        input_ids=q[first],
        attention_mask=pmask,
        position_ids=_positions(pmask),
        use_cache=True,
        logits_to_keep=1,
        output_hidden_states=want_hidden,
    )
    logits = [out.logits[inverse]]  # (B, 1, V)
    hidden = [out.hidden_states[-1][:, -1:][inverse]] if want_hidden else None
    if t > 1:
        past = _cache_of(out)
        past.batch_select_indices(inverse)
        attn = torch.cat([qmask, rmask[:, :-1].long()], dim=1)  # (B, Tq + T - 1)
        out = _call(
            model,
            names,
            input_ids=r[:, :-1],
            attention_mask=attn,
            position_ids=_positions(attn)[:, tq:],
            **_with_cache(past),
            use_cache=True,
            output_hidden_states=want_hidden,
        )
        logits.append(out.logits)
        if want_hidden:
            hidden.append(out.hidden_states[-1])
    return torch.cat(logits, 1), torch.cat(hidden, 1) if want_hidden else None
