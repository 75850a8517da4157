"""``SeparateCopyPolicy``: a full trainable copy of the initial model per agent.

The paper's set-up: N copies, each trained by its own agent, plus one frozen copy of the
initial model that all agents share as the reference for the KL penalty.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import nn

from seqmarl.agents.config import GenerationConfig
from seqmarl.agents.hf import HFPolicy, ValueHead

__all__ = ["SeparateCopyPolicy"]


class SeparateCopyPolicy(HFPolicy):
    """An agent that owns a whole copy of the model.

    Args:
        agent_id: ``llm_i``.
        model: This agent's trainable copy.
        reference: The frozen initial model (shared by the pool's agents).
        tokenizer: The tokenizer.
        value_head: A :class:`ValueHead`, or ``None``.
        generation: Sampling settings.
    """

    def __init__(
        self,
        agent_id: str,
        *,
        model: nn.Module,
        reference: nn.Module,
        tokenizer,
        value_head: ValueHead | None,
        generation: GenerationConfig,
    ):
        super().__init__(
            agent_id, tokenizer=tokenizer, value_head=value_head, generation=generation
        )
        self.model = model
        self.reference_model = reference

    def _policy_module(self) -> contextlib.AbstractContextManager[nn.Module]:
        return contextlib.nullcontext(self.model)

    def _reference_module(self) -> contextlib.AbstractContextManager[nn.Module]:
        return contextlib.nullcontext(self.reference_model)

    def _lm_parameters(self) -> list[nn.Parameter]:
        return list(self.model.parameters())

    def _lm_state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def _load_lm_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)

    def _save_lm(self, path: Path) -> None:
        """A transformers folder (``config.json`` + weights): ``from_pretrained`` loads it."""
        from seqmarl.agents.loading import quiet_progress_bars

        with quiet_progress_bars():  # "Writing model shards"
            self.model.save_pretrained(path)
