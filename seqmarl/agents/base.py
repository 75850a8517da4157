"""``Policy``: what the training loop needs from an agent, and nothing more.

The rollout (:func:`seqmarl.train.rollout.play`), the :class:`~seqmarl.train.learner.Learner`,
evaluation and pass@k use an agent through this protocol only; the trainer also calls the
hooks of what holds the agents (an :class:`~seqmarl.agents.pool.AgentPool`, or an
:class:`~seqmarl.agents.team.AgentTeam` of pools over different bases): ``play_begins``,
``play_ends``, ``sampled_elsewhere`` and ``saves_on_every_rank``, never an engine or a mode.
Today's implementations are Hugging Face causal LMs (:mod:`seqmarl.agents.hf`), held three
ways by an :class:`~seqmarl.agents.pool.AgentPool`: :class:`~seqmarl.agents.shared.SharedLoraPolicy`
(one LoRA adapter per agent on a shared frozen base),
:class:`~seqmarl.agents.separate.SeparateCopyPolicy` (a full copy per agent) and
:class:`~seqmarl.agents.sharded.ShardedCopyPolicy` (a copy sharded over processes by FSDP2).
With ``agents.generator=vllm`` each is wrapped by :class:`~seqmarl.agents.vllm.VllmPolicy`,
which samples on a vLLM engine and leaves everything else to the HF policy.

All per-token tensors are over *response* tokens only, ``(B, T)``: ``B`` responses,
right-padded to the longest ``T``, with :attr:`Completions.response_mask` marking real tokens.

Adding a backend
----------------
A way of *holding* agents is one class that satisfies :class:`Policy` plus one
:class:`~seqmarl.agents.pool.PolicyKind` in :data:`seqmarl.agents.pool.POLICY_KINDS` (its
builder gets the initial model and the ``agents`` config). A way of *generating* is one
:class:`~seqmarl.agents.pool.Generator` in :data:`seqmarl.agents.pool.GENERATORS`: it takes
the built pool and hands its sampling to an engine, as :func:`seqmarl.agents.vllm.attach`
does. Two rules keep learning exact there:

* :meth:`Policy.sync` is called once per update that stepped, not per optimizer step; a
  backend that samples from another copy of the weights marks them stale there and pushes
  them before its next generation (an update of ``epochs x minibatches`` steps costs one push).
* :attr:`Completions.engine_logprobs` carries the log-probs of the distribution that really
  sampled (the engine's), and :attr:`Completions.logprobs` the trained model's (or the
  engine's, with ``logprobs_from_engine``): the learner logs their gap as
  ``sampler/mismatch_*`` and can correct for it (truncated importance sampling).

``tests/agents/test_policy_contract.py`` runs the contract over every kind in ``POLICY_KINDS``
and every generator in ``GENERATORS`` (``fsdp``: under torchrun, in ``tests/distributed``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from torch import nn

from seqmarl.agents.config import GenerationConfig
from seqmarl.types import Completions, PolicyOutput

__all__ = ["Player", "Policy", "SamplingPlayer", "Turn"]


class Turn(NamedTuple):
    """What a player answered to the rows waiting on it.

    Attributes:
        texts: One answer per observation.
        completions: The sampled tokens and log-probs (a model), or ``None`` (a rule played:
            there is nothing to learn from).
    """

    texts: list[str]
    completions: Completions | None


@runtime_checkable
class Player(Protocol):
    """What plays a seat: a model (every :class:`Policy`) or a scripted rule.

    The rollout, evaluation, matches and league seats play through :meth:`respond` only.
    """

    def respond(
        self,
        observations: Sequence[str],
        *,
        generator: torch.Generator | None = None,
        max_new_tokens: int | None = None,
        stop_strings: Sequence[str] = (),
    ) -> Turn:
        """One answer per observation (a model: one batched generation)."""
        ...


class SamplingPlayer:
    """The :class:`Player` face of a model: :meth:`respond` is its ``sample``'s texts and tokens."""

    def respond(
        self,
        observations: Sequence[str],
        *,
        generator: torch.Generator | None = None,
        max_new_tokens: int | None = None,
        stop_strings: Sequence[str] = (),
    ) -> Turn:
        """One batched generation: the texts and the :class:`Completions` they came from."""
        comp = self.sample(  # type: ignore[attr-defined]
            list(observations),
            generator=generator,
            max_new_tokens=max_new_tokens,
            stop_strings=stop_strings,
        )
        return Turn(comp.texts, comp)


@runtime_checkable
class Policy(Protocol):
    """One trainable agent: samples responses, scores them, and owns its weights."""

    @property
    def agent_id(self) -> str:
        """``llm_i``."""
        ...

    @property
    def tokenizer(self) -> Any:
        """The agent's tokenizer (left padding, pad token set), shared by the agents on a base."""
        ...

    @property
    def device(self) -> torch.device:
        """Where the agent's tensors live (sampling generators are made on it)."""
        ...

    @property
    def value_head(self) -> nn.Module | None:
        """The critic head (PPO), or ``None``."""
        ...

    @property
    def generation(self) -> GenerationConfig:
        """Sampling settings; ``generation.temperature`` also defines the trained policy."""
        ...

    def sample(
        self,
        prompts: list[str],
        *,
        generator: torch.Generator | None = None,
        max_new_tokens: int | None = None,
        stop_strings: Sequence[str] = (),
    ) -> Completions:
        """One response per prompt, batched, without gradients.

        Args:
            prompts: ``B`` texts (observations).
            generator: Sampling randomness (on :attr:`device`).
            max_new_tokens: Length limit; ``None`` = ``generation`` (or its min..max sampler).
            stop_strings: Added to ``generation.stop_strings``; a response ends right before
                the first one it contains (the stop string is not part of the text).

        Returns:
            :class:`Completions`: ``query_ids``/``query_mask`` ``(B, P)`` left-padded,
            ``response_ids``/``response_mask``/``logprobs`` ``(B, T)`` right-padded, ``values``
            ``(B, T)`` with a value head (else ``None``), ``texts``. ``logprobs`` are the
            sampled tokens' under ``softmax(logits / temperature)``: equal to a fresh
            :meth:`evaluate` to float rounding, so they serve as PPO's old log-probs (an
            engine that sampled also fills ``engine_logprobs``, its own).
        """
        ...

    def evaluate(
        self,
        completions: Completions,
        *,
        with_values: bool = False,
        with_entropy: bool = False,
        entropy_grad: bool = False,
        ref_logits: torch.Tensor | None = None,
    ) -> PolicyOutput:
        """The current policy on ``completions``, teacher-forced; gradients flow.

        Args:
            completions: ``B`` sampled responses (any policy's).
            with_values: Also return ``values`` ``(B, T)`` (needs a value head).
            with_entropy: Also return the per-token ``entropy`` ``(B, T)``.
            entropy_grad: Let gradients flow through the entropy (an entropy bonus).
            ref_logits: ``(B, T, V)`` reference logits; if given, ``kl`` ``(B, T)`` is the exact
                per-token KL over the vocabulary.

        Returns:
            :class:`PolicyOutput` with ``logprobs`` ``(B, T)``; padding is zero in ``entropy``
            and ``kl``.
        """
        ...

    def reference(
        self, completions: Completions, *, return_logits: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The frozen initial model on ``completions``, without gradients.

        Returns:
            ``(ref_logprobs (B, T), ref_logits (B, T, V) or None)``.
        """
        ...

    def parameters(self) -> list[nn.Parameter]:
        """Everything this agent trains (its LM weights and value head): the optimizer's."""
        ...

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The trainable state for checkpoints."""
        ...

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict` (into an agent built the same way)."""
        ...

    def save_pretrained(self, path: str | Path) -> None:
        """Write the agent to ``path`` in a form its library loads alone (plus the tokenizer)."""
        ...

    @property
    def lockstep(self) -> bool:
        """Whether every process must make the same model calls (weights sharded over them).

        The learner then runs as many forward passes on every rank and leaves the gradients'
        reduction to the sharding (FSDP); otherwise it all-reduces the gradients itself.
        """
        ...

    def clip_grad_norm(self, max_norm: float) -> float:
        """Clip the global norm of this agent's gradients to ``max_norm``; the norm before.

        Over every process where the weights are sharded.
        """
        ...

    def optimizer_state_dict(self, optimizer: torch.optim.Optimizer) -> dict:
        """``optimizer``'s state for a checkpoint, whole (sharded policies gather it)."""
        ...

    def load_optimizer_state_dict(self, optimizer: torch.optim.Optimizer, state: dict) -> None:
        """Restore :meth:`optimizer_state_dict` into ``optimizer``."""
        ...

    def sync(self) -> None:
        """Called by the learner once after an update that took an optimizer step.

        A no-op where sampling reads the trained weights directly (the HF policies); a backend
        that samples from another copy of the weights (a vLLM engine) marks it stale here and
        refreshes it before its next generation.
        """
        ...
