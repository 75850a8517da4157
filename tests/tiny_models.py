"""Tiny model folders for tests of teams of different bases: another architecture, width and pad.

The embedded tiny llama pads with its eos (id 256, vocabulary 257). A folder made here has a
byte tokenizer with a ``<pad>`` token of its own (id 257, vocabulary 258), so a test can tell
each agent's padding apart.
"""

from pathlib import Path

import torch


def save_padded_model(folder: Path, arch: str = "gpt2", *, seed: int = 7) -> str:
    """Save a randomly initialised ``gpt2`` (width 32) or ``llama`` (width 64) to ``folder``."""
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    from seqmarl.agents.tiny import byte_tokenizer

    tok = byte_tokenizer()
    tok.add_special_tokens({"pad_token": "<pad>"})
    ids = {
        "vocab_size": len(tok),
        "pad_token_id": tok.pad_token_id,
        "eos_token_id": tok.eos_token_id,
        "bos_token_id": tok.eos_token_id,
        "initializer_range": 0.1,
    }
    if arch == "gpt2":
        config = GPT2Config(n_embd=32, n_layer=1, n_head=1, n_positions=256, **ids)
    elif arch == "llama":
        config = LlamaConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=512,
            tie_word_embeddings=True,
            **ids,
        )
    else:
        raise ValueError(f"arch: gpt2 or llama, not {arch!r}")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)
