"""``HFPolicy``: a :class:`~seqmarl.agents.base.Policy` over a Hugging Face causal LM.

Sampling, the teacher-forced forward, the reference pass, the value head and checkpoints live
here once; where an agent's LM weights are kept is left to a subclass through six small hooks:
:class:`~seqmarl.agents.shared.SharedLoraPolicy` (a LoRA adapter on a shared frozen base) and
:class:`~seqmarl.agents.separate.SeparateCopyPolicy` (a full copy per agent).
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from seqmarl.agents.base import SamplingPlayer
from seqmarl.agents.config import GenerationConfig
from seqmarl.agents.sampling import response_forward, sample
from seqmarl.ops import entropy_from_logits, full_kl
from seqmarl.types import Completions, PolicyOutput

__all__ = ["HFPolicy", "LMAgent", "ValueHead"]


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


class HFPolicy(SamplingPlayer, abc.ABC):
    """A policy that answers prompts and scores token log-probs; optionally a value head.

    Subclasses say where the LM weights live by implementing the ``_policy_module``,
    ``_reference_module``, ``_lm_parameters``, ``_lm_state_dict``, ``_load_lm_state_dict`` and
    ``_save_lm`` hooks.

    Args:
        agent_id: ``llm_i``.
        tokenizer: The tokenizer (left padding, pad token set).
        value_head: A :class:`ValueHead` for critic-based algorithms, else ``None``.
        generation: Sampling settings.
    """

    def __init__(
        self,
        agent_id: str,
        *,
        tokenizer,
        value_head: ValueHead | None,
        generation: GenerationConfig,
    ):
        self.agent_id = agent_id
        self.tokenizer = tokenizer
        self.value_head = value_head
        self.generation = generation

    # -- where the weights live (subclasses) ------------------------------------------------

    @abc.abstractmethod
    def _policy_module(self) -> contextlib.AbstractContextManager[nn.Module]:
        """Context manager: the module that computes this agent's policy."""

    @abc.abstractmethod
    def _reference_module(self) -> contextlib.AbstractContextManager[nn.Module]:
        """Context manager: the frozen initial model."""

    @abc.abstractmethod
    def _lm_parameters(self) -> list[nn.Parameter]:
        """The LM parameters this agent trains."""

    @abc.abstractmethod
    def _lm_state_dict(self) -> dict[str, torch.Tensor]:
        """This agent's trainable LM weights by name."""

    @abc.abstractmethod
    def _load_lm_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`_lm_state_dict`."""

    @abc.abstractmethod
    def _save_lm(self, path: Path) -> None:
        """Write the LM weights into the existing folder ``path`` in a loadable form."""

    #: Decides when decoding ends given whether this batch is done (``None``: when it is).
    _all_done = None
    #: Whether teacher-forced passes may run a repeated prompt once (two model calls).
    _share_prompts = True

    def _agree_length(self, max_new_tokens: int) -> int:
        """The decoding length every process uses (one process: this one's)."""
        return max_new_tokens

    #: Whether every process must make the same model calls (weights sharded over them).
    lockstep = False

    #: What this agent's rows can share one forward with: agents whose ``mixed_group`` is the
    #: same object (one base with an adapter each) can be evaluated together
    #: (:func:`seqmarl.agents.shared.evaluate_together`); ``None``: alone.
    mixed_group = None

    def response_length(self, max_new_tokens: int | None, generator=None) -> int:
        """The length limit of one batch: ``max_new_tokens``, else the configured one.

        With ``generation.min_new_tokens`` set it is drawn uniformly from ``min..max`` (the
        paper's length sampler) using ``generator``; every process agrees on it.
        """
        return self._agree_length(self.generation.batch_length(max_new_tokens, generator))

    def clip_grad_norm(self, max_norm: float) -> float:
        """Clip the gradients' global norm to ``max_norm``; the norm before clipping."""
        return float(torch.nn.utils.clip_grad_norm_(self.parameters(), max_norm))

    def optimizer_state_dict(self, optimizer: torch.optim.Optimizer) -> dict:
        """The optimizer's state for a checkpoint (sharded policies gather it whole)."""
        return optimizer.state_dict()

    def load_optimizer_state_dict(self, optimizer: torch.optim.Optimizer, state: dict) -> None:
        """Restore :meth:`optimizer_state_dict`."""
        optimizer.load_state_dict(state)

    # -- the Policy protocol ----------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return self._lm_parameters()[0].device

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
        max_new_tokens = self.response_length(max_new_tokens, generator)
        with self._policy_module() as model:
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
                stop_strings=g.stops(stop_strings),
                generator=generator,
                value_head=self.value_head,
                all_done=self._all_done,
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
        with self._policy_module() as model:
            logprobs, values, logits = response_forward(
                model,
                completions,
                temperature=self.generation.temperature,
                value_head=self.value_head if with_values else None,
                return_logits=need_logits,
                share_prompts=self._share_prompts,
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
        with self._reference_module() as model:
            logprobs, _, logits = response_forward(
                model,
                completions,
                temperature=self.generation.temperature,
                return_logits=return_logits,
                share_prompts=self._share_prompts,
            )
        return logprobs, logits

    def sync(self) -> None:
        """Called once after an update that stepped; the HF policy samples from its weights."""

    def parameters(self) -> list[nn.Parameter]:
        """Everything this agent trains: its LM weights (adapter or copy) and value head."""
        params = self._lm_parameters()
        if self.value_head is not None:
            params += list(self.value_head.parameters())
        return params

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Trainable state for checkpoints (``policy.*`` and ``value_head.*``)."""
        state = {f"policy.{k}": v for k, v in self._lm_state_dict().items()}
        if self.value_head is not None:
            state.update({f"value_head.{k}": v for k, v in self.value_head.state_dict().items()})
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict`."""
        policy = {k.removeprefix("policy."): v for k, v in state.items() if k.startswith("policy.")}
        self._load_lm_state_dict(policy)
        if self.value_head is not None:
            head = {
                k.removeprefix("value_head."): v
                for k, v in state.items()
                if k.startswith("value_head.")
            }
            self.value_head.load_state_dict(head)

    def save_pretrained(self, path: str | Path) -> None:
        """Save so transformers (copies) or peft (adapters) loads it alone, with the tokenizer.

        A value head, if any, goes to ``value_head.safetensors`` beside the weights.
        """
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self._save_lm(path)
        self.tokenizer.save_pretrained(path)
        if self.value_head is not None:
            state = {k: v.contiguous() for k, v in self.value_head.state_dict().items()}
            save_file(state, str(path / "value_head.safetensors"))


#: The former name of :class:`HFPolicy` (kept for code written against it).
LMAgent = HFPolicy
