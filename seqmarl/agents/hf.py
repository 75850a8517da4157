"""``LMAgent``: one learner over a Hugging Face causal LM held by an :class:`AgentPool`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from seqmarl.agents.sampling import Completions, response_forward, sample
from seqmarl.algos.core import entropy_from_logits, full_kl
from seqmarl.config import GenerationConfig
from seqmarl.types import PolicyOutput

if TYPE_CHECKING:
    from seqmarl.agents.pool import AgentPool

__all__ = ["LMAgent", "ValueHead"]


class ValueHead(nn.Module):
    """Per-token scalar value from the last hidden state; starts at exactly zero."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(..., H) -> (..., 1)``."""
        return self.linear(hidden.to(self.linear.weight.dtype))


class LMAgent:
    """A policy that answers prompts and scores token log-probs; optionally a value head.

    Args:
        agent_id: ``llm_i``.
        pool: The pool that holds the weights.
        value_head: A :class:`ValueHead` for critic-based algorithms, else ``None``.
        generation: Sampling settings.
    """

    def __init__(
        self,
        agent_id: str,
        *,
        pool: AgentPool,
        value_head: ValueHead | None,
        generation: GenerationConfig,
    ):
        self.agent_id = agent_id
        self.pool = pool
        self.value_head = value_head
        self.generation = generation

    @property
    def tokenizer(self):
        """The shared tokenizer."""
        return self.pool.tokenizer

    def sample(
        self,
        prompts: list[str],
        *,
        generator: torch.Generator | None = None,
        max_new_tokens: int | None = None,
        stop_strings: Sequence[str] = (),
    ) -> Completions:
        """One response per prompt, batched; log-probs (and values) of the sampled tokens.

        ``stop_strings`` (usually the task's) are added to ``generation.stop_strings``.

        With ``generation.min_new_tokens`` set, the batch's length limit is drawn uniformly
        from ``min..max`` (the paper's length sampler) using ``generator``.
        """
        g = self.generation
        if max_new_tokens is None:
            max_new_tokens = g.max_new_tokens
            if g.min_new_tokens is not None:
                span = g.max_new_tokens - g.min_new_tokens + 1
                max_new_tokens = g.min_new_tokens + int(
                    torch.randint(span, (1,), generator=generator)
                )
        with self.pool.policy(self.agent_id) as model:
            return sample(
                model,
                self.tokenizer,
                prompts,
                max_new_tokens=max_new_tokens,
                temperature=g.temperature,
                top_k=g.top_k,
                top_p=g.top_p,
                repetition_penalty=g.repetition_penalty,
                stop_at_eos=g.stop_at_eos,
                stop_strings=(*g.stop_strings, *stop_strings),
                generator=generator,
                value_head=self.value_head,
            )

    def evaluate(
        self,
        completions: Completions,
        *,
        with_values: bool = False,
        with_entropy: bool = False,
        entropy_grad: bool = False,
        ref_logits: torch.Tensor | None = None,
    ) -> PolicyOutput:
        """The current policy on ``completions`` (gradients flow).

        Args:
            completions: Sampled responses.
            with_values: Also compute values (needs a value head).
            with_entropy: Also compute the per-token entropy.
            entropy_grad: Let gradients flow through the entropy (an entropy bonus).
            ref_logits: ``(B, T, V)`` reference logits; if given, the exact per-token KL is
                returned in ``kl`` (``kl_estimator=full``).
        """
        need_logits = with_entropy or ref_logits is not None
        with self.pool.policy(self.agent_id) as model:
            logprobs, values, logits = response_forward(
                model,
                completions,
                temperature=self.generation.temperature,
                value_head=self.value_head if with_values else None,
                return_logits=need_logits,
            )
        mask = completions.response_mask
        entropy = None
        if with_entropy:
            with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
                entropy = entropy_from_logits(logits) * mask
        kl = full_kl(logits, ref_logits) * mask if ref_logits is not None else None
        return PolicyOutput(logprobs=logprobs, values=values, entropy=entropy, kl=kl)

    @torch.no_grad()
    def reference(
        self, completions: Completions, *, return_logits: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(ref_logprobs (B, T), ref_logits or None)`` under the frozen initial model."""
        with self.pool.reference() as model:
            logprobs, _, logits = response_forward(
                model,
                completions,
                temperature=self.generation.temperature,
                return_logits=return_logits,
            )
        return logprobs, logits

    def sync(self) -> None:
        """Called after each optimizer step; the HF policy computes from its weights directly."""

    def parameters(self) -> list[nn.Parameter]:
        """Everything this agent trains: its LM weights (adapter or copy) and value head."""
        params = self.pool.policy_parameters(self.agent_id)
        if self.value_head is not None:
            params += list(self.value_head.parameters())
        return params

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Trainable state for checkpoints (``policy.*`` and ``value_head.*``)."""
        state = {f"policy.{k}": v for k, v in self.pool.policy_state_dict(self.agent_id).items()}
        if self.value_head is not None:
            state.update({f"value_head.{k}": v for k, v in self.value_head.state_dict().items()})
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict`."""
        policy = {k.removeprefix("policy."): v for k, v in state.items() if k.startswith("policy.")}
        self.pool.load_policy_state_dict(self.agent_id, policy)
        if self.value_head is not None:
            head = {
                k.removeprefix("value_head."): v
                for k, v in state.items()
                if k.startswith("value_head.")
            }
            self.value_head.load_state_dict(head)

    def save_pretrained(self, path: str | Path) -> None:
        """Save so transformers (copies) or peft (adapters) loads it alone.

        A value head, if any, goes to ``value_head.safetensors`` beside the weights.
        """
        from safetensors.torch import save_file

        self.pool.save_policy(self.agent_id, path)
        if self.value_head is not None:
            state = {k: v.contiguous() for k, v in self.value_head.state_dict().items()}
            save_file(state, str(Path(path) / "value_head.safetensors"))
