"""Update cost on ragged batches: packed rows and length-sorted chunks against one padded pass.

A batch of left-padded prompts and right-padded, EOS-terminated answers costs rows x (longest
prompt + longest answer) tokens of work whatever the real lengths. Two changes cut that, both
exact: ``response_forward`` packs each row's prompt + answer to the right (the pass is longest
(prompt + answer) wide), and ``Learner.update`` cuts each minibatch into length-sorted chunks
(``seqmarl.train.learner.length_chunks``), each only as wide as its own longest row, weighting
each chunk's loss by its token share so the gradient is the whole minibatch's. This script
times one PPO update (value head, 1 epoch, 1 minibatch) on the same synthetic batch three ways
in the same process: the previous layout in one pass (the peer), packed in one pass, and packed
in length chunks; it prints the tokens each pass reads and the speed-ups. Lengths are drawn
uniformly from the ranges given.

    python benchmarks/ragged_update.py                        # tiny GPT-2 (3.4M), 2 threads
    python benchmarks/ragged_update.py --models tiny smollm2 --repeats 3

Rows: ragged (prompts 16-64, answers 8-128 tokens: GSM8K-like), CORY-observer-like (prompts
48-96, answers 16), and uniform lengths (no padding to remove: the cost of the machinery).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

CASES = {  # name: (prompt length range, answer length range)
    "ragged answers": ((16, 64), (8, 128)),
    "observer-like": ((48, 96), (16, 16)),
    "uniform": ((40, 40), (64, 64)),
}


def ragged_completions(tok, rows: int, q_range, r_range, seed: int):
    """Random-token completions, prompts left-padded and answers right-padded."""
    from seqmarl.agents.sampling import Completions

    g = torch.Generator().manual_seed(seed)
    ql = torch.randint(q_range[0], q_range[1] + 1, (rows,), generator=g)
    rl = torch.randint(r_range[0], r_range[1] + 1, (rows,), generator=g)
    tq, tr = int(ql.max()), int(rl.max())
    vocab = min(tok.vocab_size, 5000)
    q_ids = torch.full((rows, tq), tok.pad_token_id)
    q_mask = torch.zeros(rows, tq, dtype=torch.long)
    r_ids = torch.full((rows, tr), tok.pad_token_id)
    r_mask = torch.zeros(rows, tr)
    for i in range(rows):
        q_ids[i, tq - ql[i] :] = torch.randint(10, vocab, (int(ql[i]),), generator=g)
        q_mask[i, tq - ql[i] :] = 1
        r_ids[i, : rl[i]] = torch.randint(10, vocab, (int(rl[i]),), generator=g)
        r_mask[i, : rl[i]] = 1
    logprobs = -torch.rand(rows, tr, generator=g) * r_mask
    values = torch.randn(rows, tr, generator=g) * r_mask
    return Completions(q_ids, q_mask, r_ids, r_mask, logprobs, values, [""] * rows)


def padded_forward(model, q, qmask, r, rmask, want_hidden, names=None):
    """The previous single pass: [left-padded prompt, right-padded answer], no packing."""
    from seqmarl.agents.sampling import _positions

    assert names is None, "one agent's update: no per-row adapters"

    t = r.shape[1]
    ids = torch.cat([q, r], dim=1)
    attn = torch.cat([qmask, rmask.long()], dim=1)
    out = model(
        input_ids=ids,
        attention_mask=attn,
        position_ids=_positions(attn),
        use_cache=False,
        logits_to_keep=t + 1,
        output_hidden_states=want_hidden,
    )
    hidden = out.hidden_states[-1][:, -t - 1 : -1] if want_hidden else None
    return out.logits[:, :-1], hidden, r, None


def padded_tokens(c, chunks, packed: bool = True) -> int:
    """Tokens the passes read: each chunk as wide as its longest prompt + answer (packed) or
    its longest prompt + longest answer (not packed)."""
    ql, rl = c.query_mask.sum(1), c.response_mask.sum(1)
    if packed:
        return sum(len(ch) * int((ql + rl)[ch].max()) for ch in chunks)
    return sum(len(ch) * int(ql[ch].max() + rl[ch].max()) for ch in chunks)


def time_update(pool, c, layout: str, repeats: int) -> tuple[float, int]:
    """Median seconds of one update, and the tokens its passes read; layout is ``padded``
    (previous code), ``packed`` (one pass) or ``chunked`` (packed, length chunks)."""
    import seqmarl.agents.sampling as sampling
    import seqmarl.train.learner as learner_mod
    from seqmarl.algos import ALGORITHMS

    real, real_forward = learner_mod.length_chunks, sampling._packed_forward
    chunked = layout == "chunked"
    seen = []

    def choose(completions, rows, max_rows, **kw):
        out = real(completions, rows, max_rows, **kw) if chunked else [rows]
        seen.append(out)
        return out

    learner_mod.length_chunks = choose
    if layout == "padded":
        sampling._packed_forward = padded_forward
    try:
        cfg = ALGORITHMS.get("ppo").make_config(lr=1e-6, epochs=1)
        learner = learner_mod.Learner(pool["llm_0"], "ppo", cfg, seed=0)
        batch = learner.make_batch(c, torch.linspace(-1, 1, len(c)))
        learner.update(c, batch)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            learner.update(c, batch)
            times.append(time.perf_counter() - t0)
    finally:
        learner_mod.length_chunks, sampling._packed_forward = real, real_forward
    return statistics.median(times), padded_tokens(c, seen[-1], packed=layout != "padded")


def build_pool(model: str, tmp: Path):
    from seqmarl.agents import AgentPool, tiny_model_and_tokenizer
    from seqmarl.agents.loading import load_model_and_tokenizer

    if model == "tiny":
        m, tok = tiny_model_and_tokenizer("gpt2", hidden=256, layers=4, seed=0)
        m.save_pretrained(tmp / "tiny")
        tok.save_pretrained(tmp / "tiny")
        m, tok = load_model_and_tokenizer(str(tmp / "tiny"))
        mode = "separate"
    else:
        from benchmarks.agents import smollm2_folder

        path = smollm2_folder()
        if path is None:
            return None
        m, tok = load_model_and_tokenizer(path)
        mode = "shared"  # LoRA: the CPU-sized way to train it
    return AgentPool(m, tok, ["llm_0"], mode=mode, value_heads=["llm_0"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=["tiny"], choices=["tiny", "smollm2"])
    p.add_argument("--rows", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ns = p.parse_args()
    torch.set_num_threads(ns.threads)
    torch.manual_seed(0)
    print(f"PPO update (value head, 1 epoch, 1 minibatch of {ns.rows}), {ns.threads} threads, CPU;")
    print(f"median of {ns.repeats} after a warm-up")
    print()
    print(
        "| model | batch | tokens read: padded / packed / chunked | padded s | packed s "
        "| chunked s | speed-up packed | speed-up chunked |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for model in ns.models:
            pool = build_pool(model, Path(tmp))
            if pool is None:
                print(f"| {model} | skipped: ../shared SmolLM2 absent | | | | | | |")
                continue
            for i, (case, (q_range, r_range)) in enumerate(CASES.items()):
                if case not in ns.cases:
                    continue
                c = ragged_completions(pool.tokenizer, ns.rows, q_range, r_range, seed=i)
                runs = {
                    layout: time_update(pool, c, layout, ns.repeats)
                    for layout in ("padded", "packed", "chunked")
                }
                (pad_s, pad_t), (pk_s, pk_t), (ch_s, ch_t) = runs.values()
                print(
                    f"| {model} | {case} | {pad_t} / {pk_t} / {ch_t} | {pad_s:.3f} | {pk_s:.3f} "
                    f"| {ch_s:.3f} | {pad_s / pk_s:.2f}x | {pad_s / ch_s:.2f}x |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
