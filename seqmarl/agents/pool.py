"""N agents made from one initial model: a shared frozen base with LoRA adapters, or copies.

* ``shared``: one frozen base model wrapped by peft with one LoRA adapter per agent
  (``llm_0``, ``llm_1``, ...). An agent's forward activates its adapter; the reference model
  for the KL penalty is the same base with adapters disabled, so it costs no memory. LoRA's
  B matrices start at zero, so every agent starts exactly at the initial model.
* ``separate``: N full trainable copies plus one frozen reference (the paper's set-up).

Either way an agent owns its weights, its value head and (in the trainer) its optimizer; seat
changes move nothing.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator, Sequence

import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers.pytorch_utils import Conv1D

from seqmarl.agents.hf import LMAgent, ValueHead
from seqmarl.config import AgentConfig, GenerationConfig, LoraSettings

__all__ = ["AgentPool"]


class AgentPool:
    """Holds N agents over one initial model and the frozen reference.

    Args:
        model: The initial causal LM (eval mode); the pool takes ownership.
        tokenizer: Its tokenizer (left padding, pad token set).
        agent_ids: ``("llm_0", ...)``.
        mode: ``shared`` or ``separate``.
        value_heads: Agent ids that need a value head (PPO agents).
        lora: Adapter shape for ``shared``.
        generation: Sampling settings shared by the agents.
        seed: Seeds adapter and value-head initialisation.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        agent_ids: Sequence[str],
        *,
        mode: str = "shared",
        value_heads: Sequence[str] = (),
        lora: LoraSettings | None = None,
        generation: GenerationConfig | None = None,
        seed: int = 0,
    ):
        if mode not in ("shared", "separate"):
            raise ValueError(f"mode must be 'shared' or 'separate', got {mode!r}")
        self.mode = mode
        self.tokenizer = tokenizer
        self.agent_ids = tuple(agent_ids)
        generation = generation or GenerationConfig()
        lora = lora or LoraSettings()
        device = next(model.parameters()).device
        dtype = next(model.parameters()).dtype
        hidden = model.config.get_text_config().hidden_size
        for p in model.parameters():
            p.requires_grad_(False)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            if mode == "shared":
                peft_cfg = LoraConfig(
                    r=lora.r,
                    lora_alpha=lora.alpha,
                    lora_dropout=lora.dropout,
                    target_modules=lora.target_modules,
                    bias="none",
                    task_type="CAUSAL_LM",
                    # GPT-2's Conv1D stores its weight as (in, out): the adapter's update is
                    # transposed when merged (peft would otherwise warn and switch it itself)
                    fan_in_fan_out=any(isinstance(m, Conv1D) for m in model.modules()),
                )
                with warnings.catch_warnings():
                    # peft reads transformers' deprecated alias (transformers 5, peft 0.21)
                    warnings.filterwarnings(
                        "ignore",
                        message="`is_gradient_checkpointing` is deprecated",
                        category=FutureWarning,
                    )
                    self.model = get_peft_model(model, peft_cfg, adapter_name=self.agent_ids[0])
                for agent_id in self.agent_ids[1:]:
                    self.model.add_adapter(agent_id, peft_cfg)
                self.model.eval()
                self._copies: dict[str, nn.Module] = {}
            else:
                self.model = model  # the frozen reference
                self._copies = {}
                for agent_id in self.agent_ids:
                    twin = copy.deepcopy(model)
                    for p in twin.parameters():
                        p.requires_grad_(True)
                    self._copies[agent_id] = twin
            self.agents = {
                agent_id: LMAgent(
                    agent_id,
                    pool=self,
                    value_head=(
                        ValueHead(hidden).to(device=device, dtype=dtype)
                        if agent_id in value_heads
                        else None
                    ),
                    generation=generation,
                )
                for agent_id in self.agent_ids
            }

    @classmethod
    def from_config(
        cls, cfg: AgentConfig, agent_ids: Sequence[str], *, value_heads=(), seed: int = 0
    ) -> AgentPool:
        """Load the model named in ``cfg`` and build the pool."""
        from seqmarl.agents.loading import load_model_and_tokenizer, resolve_device, resolve_dtype

        device = resolve_device(cfg.device)
        model, tok = load_model_and_tokenizer(
            cfg.model,
            gguf_file=cfg.gguf_file,
            tokenizer=cfg.tokenizer,
            dtype=resolve_dtype(cfg.dtype, device),
            device=device,
            trust_remote_code=cfg.trust_remote_code,
            seed=seed,
        )
        return cls(
            model,
            tok,
            agent_ids,
            mode=cfg.mode,
            value_heads=value_heads,
            lora=cfg.lora,
            generation=cfg.generation,
            seed=seed,
        )

    def __getitem__(self, agent_id: str) -> LMAgent:
        return self.agents[agent_id]

    def __iter__(self) -> Iterator[LMAgent]:
        return iter(self.agents.values())

    @property
    def device(self) -> torch.device:
        """Where the models live."""
        return next(self.model.parameters()).device

    @contextlib.contextmanager
    def policy(self, agent_id: str) -> Iterator[nn.Module]:
        """The module that computes ``agent_id``'s policy (its adapter active, or its copy)."""
        if self.mode == "separate":
            yield self._copies[agent_id]
            return
        self.model.set_adapter(agent_id)
        yield self.model

    @contextlib.contextmanager
    def reference(self) -> Iterator[nn.Module]:
        """The frozen initial model (the base with adapters disabled, or the kept copy)."""
        if self.mode == "separate":
            yield self.model
            return
        with self.model.disable_adapter():
            yield self.model

    def policy_parameters(self, agent_id: str) -> list[nn.Parameter]:
        """The LM parameters ``agent_id`` trains (its adapter, or its whole copy)."""
        if self.mode == "separate":
            return list(self._copies[agent_id].parameters())
        tag = f".{agent_id}."
        return [p for n, p in self.model.named_parameters() if tag in n]

    def policy_state_dict(self, agent_id: str) -> dict[str, torch.Tensor]:
        """``agent_id``'s trainable LM weights by name."""
        if self.mode == "separate":
            return self._copies[agent_id].state_dict()
        tag = f".{agent_id}."
        return {n: p.detach() for n, p in self.model.named_parameters() if tag in n}

    def load_policy_state_dict(self, agent_id: str, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`policy_state_dict`."""
        if self.mode == "separate":
            self._copies[agent_id].load_state_dict(state)
            return
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)

    def save_policy(self, agent_id: str, path) -> None:
        """Save ``agent_id``'s LM so transformers (separate) or peft (shared) loads it alone."""
        from pathlib import Path

        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        from seqmarl.agents.loading import quiet_progress_bars

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.mode == "separate":
            with quiet_progress_bars():  # "Writing model shards"
                self._copies[agent_id].save_pretrained(path)
        else:
            cfg = copy.deepcopy(self.model.peft_config[agent_id])
            cfg.inference_mode = True
            cfg.save_pretrained(str(path))
            state = get_peft_model_state_dict(self.model, adapter_name=agent_id)
            save_file(
                {k: v.contiguous() for k, v in state.items()},
                str(path / "adapter_model.safetensors"),
            )
        self.tokenizer.save_pretrained(path)
