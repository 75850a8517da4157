"""``SharedLoraPolicy``: one LoRA adapter per agent on one shared, frozen base model.

All agents of a pool hold the same peft model, each with its own adapter (named after the
agent). An agent's forward activates its adapter; the reference model for the KL penalty is
the same base with adapters disabled, so it costs no memory. LoRA's B matrices start at zero,
so every agent starts exactly at the initial model.

Agents on one base can also be run *together*: :func:`evaluate_together` sends every agent's
rows through one forward (and so one backward), each row through its own adapter (peft's
mixed-adapter batch), and :func:`reference_together` scores them all under the base in one
pass. The learners' mixed update (``agents.update=mixed``, :mod:`seqmarl.train.mixed`) uses
them.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from peft import PeftModel
from torch import nn

from seqmarl.agents.config import GenerationConfig
from seqmarl.agents.hf import HFPolicy, ValueHead
from seqmarl.agents.sampling import response_forward
from seqmarl.ops import entropy_from_logits
from seqmarl.types import Completions, PolicyOutput

__all__ = ["SharedLoraPolicy", "evaluate_together", "reference_together"]


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

    @property
    def mixed_group(self) -> PeftModel:
        """What this agent's rows can share a forward with: the agents holding the same model."""
        return self.model

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


def _together(policies: Sequence[HFPolicy], parts: Sequence[Completions]):
    """The shared model, the parts' rows in one batch, each part's rows and each row's adapter."""
    model = policies[0].mixed_group
    if any(p.mixed_group is not model for p in policies):
        raise ValueError("evaluate_together: the agents do not share one base model")
    temps = {p.generation.temperature for p in policies}
    if len(temps) > 1:
        raise ValueError(f"evaluate_together: the agents sample at different temperatures {temps}")
    whole = Completions.concat(list(parts), policies[0].tokenizer.pad_token_id)
    bounds, start = [], 0
    for part in parts:
        bounds.append((start, start + len(part), part.response_ids.shape[1]))
        start += len(part)
    names = [p.agent_id for p, part in zip(policies, parts, strict=True) for _ in range(len(part))]
    return model, whole, bounds, names, temps.pop()


def evaluate_together(
    policies: Sequence[HFPolicy],
    parts: Sequence[Completions],
    *,
    with_values: Sequence[bool] | None = None,
    with_entropy: Sequence[bool] | None = None,
    entropy_grad: bool = True,
) -> list[PolicyOutput]:
    """Each policy on its part of the rows, in one forward through the shared base.

    Each row goes through its own agent's adapter (peft's mixed-adapter batch), so a loss
    summed over the parts gives every adapter the gradient of its own part's loss: the
    adapters share no trainable parameter. The result equals each policy's own
    :meth:`~seqmarl.agents.hf.HFPolicy.evaluate` on its part, to float rounding.

    Args:
        policies: Agents on one base (the same :attr:`SharedLoraPolicy.mixed_group`).
        parts: One batch of rows per policy.
        with_values: Per part, whether to return values (its policy's value head).
        with_entropy: Per part, whether to return the per-token entropy (default: none).
        entropy_grad: Let gradients flow through the entropy (an entropy bonus).

    Returns:
        One :class:`PolicyOutput` per part, at the part's own width.
    """
    model, whole, bounds, names, temperature = _together(policies, parts)
    none = [False] * len(parts)
    wants = list(with_entropy) if with_entropy is not None else none
    heads = [
        p.value_head if v else None for p, v in zip(policies, with_values or none, strict=True)
    ]
    for policy in policies:  # peft's set_adapter leaves only the active adapter trainable
        for p in policy.parameters():
            p.requires_grad_(True)
    logprobs, values, logits = response_forward(
        model,
        whole,
        temperature=temperature,
        value_head=_RowHeads(heads, bounds) if any(h is not None for h in heads) else None,
        return_logits=any(wants),
        adapter_names=names,
    )
    outs = []
    for (a, b, t), part, want, head in zip(bounds, parts, wants, heads, strict=True):
        entropy = None
        if want:
            with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
                entropy = entropy_from_logits(logits[a:b, :t]) * part.response_mask
        value = values[a:b, :t] if head is not None else None
        outs.append(PolicyOutput(logprobs=logprobs[a:b, :t], values=value, entropy=entropy))
    return outs


class _RowHeads:
    """Each part's rows through its own value head (zeros where it has none)."""

    def __init__(self, heads: Sequence[nn.Module | None], bounds: Sequence[tuple[int, int, int]]):
        self.heads, self.bounds = heads, bounds

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(B, T, H) -> (B, T, 1)``, rows in the parts' order."""
        out = []
        for head, (a, b, _) in zip(self.heads, self.bounds, strict=True):
            rows = hidden[a:b]
            out.append(head(rows) if head is not None else rows.new_zeros(*rows.shape[:-1], 1))
        return torch.cat(out)


@torch.no_grad()
def reference_together(
    policies: Sequence[HFPolicy], parts: Sequence[Completions]
) -> list[torch.Tensor]:
    """``ref_logprobs (B_i, T_i)`` of each part under the base (adapters off), in one pass."""
    model, whole, bounds, _, temperature = _together(policies, parts)
    with model.disable_adapter():
        logprobs, _, _ = response_forward(model, whole, temperature=temperature)
    return [logprobs[a:b, :t] for a, b, t in bounds]
