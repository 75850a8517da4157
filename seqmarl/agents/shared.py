"""``SharedLoraPolicy``: one LoRA adapter per agent on one shared, frozen base model.

All agents of a pool hold the same peft model, each with its own adapter (named after the
agent). An agent's forward activates its adapter; the reference model for the KL penalty is
the same base with adapters disabled, so it costs no memory. LoRA's B matrices start at zero,
so every agent starts exactly at the initial model.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path

import torch
from peft import PeftModel
from torch import nn

from seqmarl.agents.config import GenerationConfig
from seqmarl.agents.hf import HFPolicy, ValueHead

__all__ = ["SharedLoraPolicy"]


class SharedLoraPolicy(HFPolicy):
    """An agent that is the adapter named ``agent_id`` of a shared peft model.

    Args:
        agent_id: ``llm_i``, also the adapter's name in ``model``.
        model: The peft model holding every agent's adapter (in eval mode).
        tokenizer: The tokenizer.
        value_head: A :class:`ValueHead`, or ``None``.
        generation: Sampling settings.
    """

    def __init__(
        self,
        agent_id: str,
        *,
        model: PeftModel,
        tokenizer,
        value_head: ValueHead | None,
        generation: GenerationConfig,
    ):
        super().__init__(
            agent_id, tokenizer=tokenizer, value_head=value_head, generation=generation
        )
        self.model = model
        self._tag = f".{agent_id}."  # in the names of this adapter's parameters

    @contextlib.contextmanager
    def _policy_module(self) -> Iterator[nn.Module]:
        self.model.set_adapter(self.agent_id)
        yield self.model

    @contextlib.contextmanager
    def _reference_module(self) -> Iterator[nn.Module]:
        with self.model.disable_adapter():
            yield self.model

    def _lm_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.model.named_parameters() if self._tag in n]

    def _lm_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in self.model.named_parameters() if self._tag in n}

    def _load_lm_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)

    def _save_lm(self, path: Path) -> None:
        """``adapter_config.json`` + ``adapter_model.safetensors``: ``PeftModel`` loads it."""
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        cfg = copy.deepcopy(self.model.peft_config[self.agent_id])
        cfg.inference_mode = True
        cfg.save_pretrained(str(path))
        # the embeddings are never resized here; "auto" would ask the hub about the base's vocab
        state = get_peft_model_state_dict(
            self.model, adapter_name=self.agent_id, save_embedding_layers=False
        )
        save_file(
            {k: v.contiguous() for k, v in state.items()},
            str(path / "adapter_model.safetensors"),
        )
