"""N agents made from one initial model: a shared base with LoRA adapters, copies, or shards.

* ``shared``: one frozen base model wrapped by peft with one LoRA adapter per agent
  (``llm_0``, ``llm_1``, ...), held by :class:`~seqmarl.agents.shared.SharedLoraPolicy`.
* ``separate``: N full trainable copies plus one frozen reference (the paper's set-up), held by
  :class:`~seqmarl.agents.separate.SeparateCopyPolicy`.
* ``fsdp``: separate copies sharded over the processes (``distributed.strategy=fsdp``), held by
  :class:`~seqmarl.agents.sharded.ShardedCopyPolicy`.

In each kind an agent owns its weights, its value head and (in the trainer) its optimizer; seat
changes move nothing. :data:`POLICY_KINDS` maps a kind to the policy factory and the function
that builds its modules from the initial model and ``agents`` (:class:`AgentConfig`); a new way
of holding agents is one entry there. :data:`GENERATORS` maps ``agents.generator`` to what
turns a built pool's sampling over to another engine (``vllm``: :mod:`seqmarl.agents.vllm`);
a new generator is one entry there (see :mod:`seqmarl.agents.base`).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers.pytorch_utils import Conv1D

from seqmarl.agents.base import Policy
from seqmarl.agents.config import AgentConfig, GenerationConfig, LoraSettings
from seqmarl.agents.hf import ValueHead
from seqmarl.agents.separate import SeparateCopyPolicy
from seqmarl.agents.sharded import ShardedCopyPolicy, build_sharded
from seqmarl.agents.shared import SharedLoraPolicy

if TYPE_CHECKING:
    from seqmarl.agents.team import AgentTeam

__all__ = ["GENERATORS", "POLICY_KINDS", "AgentPool", "Generator", "PolicyKind"]

#: What a builder returns: the pool's main module, and per agent the policy's module kwargs.
Built = tuple[nn.Module, dict[str, dict[str, Any]]]


def build_shared(model: nn.Module, agent_ids: Sequence[str], settings: AgentConfig) -> Built:
    """Wrap ``model`` (frozen) with peft, one LoRA adapter per agent, named after it."""
    lora = settings.lora
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
        peft_model = get_peft_model(model, peft_cfg, adapter_name=agent_ids[0])
    for agent_id in agent_ids[1:]:
        peft_model.add_adapter(agent_id, peft_cfg)
    peft_model.eval()
    return peft_model, {a: {"model": peft_model} for a in agent_ids}


def build_separate(model: nn.Module, agent_ids: Sequence[str], settings: AgentConfig) -> Built:
    """A trainable deep copy of ``model`` per agent; ``model`` itself is the frozen reference."""
    copies = {}
    for agent_id in agent_ids:
        twin = copy.deepcopy(model)
        for p in twin.parameters():
            p.requires_grad_(True)
        copies[agent_id] = twin
    return model, {a: {"model": copies[a], "reference": model} for a in agent_ids}


class PolicyKind(NamedTuple):
    """One way of holding N agents.

    Attributes:
        policy: ``policy(agent_id, **modules, tokenizer=, value_head=, generation=)`` -> a
            :class:`~seqmarl.agents.base.Policy`.
        build: ``build(frozen initial model, agent ids, agents config)`` -> the pool's main
            module and, per agent, the modules its policy gets.
    """

    policy: Callable[..., Policy]
    build: Callable[[nn.Module, Sequence[str], AgentConfig], Built]


#: Kind (``agents.mode``, or ``fsdp`` for ``distributed.strategy=fsdp``) -> how it is held.
POLICY_KINDS: dict[str, PolicyKind] = {
    "shared": PolicyKind(SharedLoraPolicy, build_shared),
    "separate": PolicyKind(SeparateCopyPolicy, build_separate),
    # separate copies sharded over processes (distributed.strategy=fsdp)
    "fsdp": PolicyKind(ShardedCopyPolicy, build_sharded),
}


class Generator(NamedTuple):
    """One value of ``agents.generator``.

    Attributes:
        serve: ``serve(pool, agents config)`` hands the built pool's sampling to the engine
            (sets ``pool.engine``).
        check: Raises :class:`~seqmarl.errors.ConfigError` in one line when the engine cannot
            run here (not installed, an unsupported CPU); called before any model loads.
        together: A context inside which the pools of a team (one per base) are served side
            by side (``vllm``: an engine per base; ``hf``: nothing to do).
    """

    serve: Callable[[AgentPool, AgentConfig], None]
    check: Callable[[], None] = lambda: None
    together: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext


def _serve_on_vllm(pool: AgentPool, settings: AgentConfig) -> None:
    from seqmarl.agents.vllm import attach  # vLLM is an optional extra

    pool.engine = attach(pool, settings.vllm)


@contextlib.contextmanager
def _vllm_engines_together():
    from seqmarl.agents.vllm import engines_together

    with engines_together():
        yield


def _check_vllm() -> None:
    from seqmarl.agents.vllm import import_vllm

    import_vllm()


#: ``agents.generator`` -> its :class:`Generator` (``hf``: the policies sample from their own
#: weights).
GENERATORS: dict[str, Generator] = {
    "hf": Generator(lambda pool, settings: None),
    "vllm": Generator(_serve_on_vllm, _check_vllm, _vllm_engines_together),
}


class AgentPool:
    """Holds N agents over one initial model and the frozen reference.

    Args:
        model: The initial causal LM (eval mode); the pool takes ownership.
        tokenizer: Its tokenizer (left padding, pad token set).
        agent_ids: ``("llm_0", ...)``.
        mode: ``shared`` or ``separate``.
        value_heads: Agent ids that need a value head (PPO agents).
        lora: Adapter shape for ``shared`` (overrides ``settings.lora``).
        generation: Sampling settings shared by the agents (overrides ``settings.generation``).
        generations: Agent id -> its own sampling settings (``agents.per_agent.<id>.generation``
            merged over the run's); agents not named use ``generation``.
        seed: Seeds adapter and value-head initialisation.
        settings: The rest of ``agents``: the generator and its settings (default: HF).

    Attributes:
        agents: Agent id -> its :class:`~seqmarl.agents.base.Policy`.
        model: The peft model holding the adapters (``shared``) or the frozen reference
            (``separate``).
        engine: The inference engine that samples for the agents (``agents.generator=vllm``:
            a :class:`~seqmarl.agents.vllm.VllmEngine`), else ``None``.
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
        generations: Mapping[str, GenerationConfig] | None = None,
        seed: int = 0,
        settings: AgentConfig | None = None,
    ):
        if mode not in POLICY_KINDS:
            kinds = " or ".join(repr(k) for k in POLICY_KINDS)
            raise ValueError(f"mode must be {kinds}, got {mode!r}")
        self.mode = mode
        self.tokenizer = tokenizer
        self.agent_ids = tuple(agent_ids)
        settings = (settings or AgentConfig()).model_copy(
            update={k: v for k, v in (("lora", lora), ("generation", generation)) if v is not None}
        )
        generation = settings.generation
        self.engine: Any = None
        device = next(model.parameters()).device
        dtype = next(model.parameters()).dtype
        hidden = model.config.get_text_config().hidden_size
        for p in model.parameters():
            p.requires_grad_(False)
        kind, build = POLICY_KINDS[mode]
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            self.model, modules = build(model, self.agent_ids, settings)
            self.agents: dict[str, Policy] = {
                agent_id: kind(
                    agent_id,
                    **modules[agent_id],
                    tokenizer=tokenizer,
                    value_head=(
                        ValueHead(hidden).to(device=device, dtype=dtype)
                        if agent_id in value_heads
                        else None
                    ),
                    generation=(generations or {}).get(agent_id, generation),
                )
                for agent_id in self.agent_ids
            }
        GENERATORS[settings.generator].serve(self, settings)

    @classmethod
    def from_config(
        cls,
        cfg: AgentConfig,
        agent_ids: Sequence[str],
        *,
        value_heads=(),
        seed: int = 0,
        kind: str | None = None,
    ) -> AgentPool | AgentTeam:
        """Load the model named in ``cfg`` and build the pool (``kind``: default ``cfg.mode``).

        With ``cfg.per_agent`` giving agents different bases, one pool per base, held by an
        :class:`~seqmarl.agents.team.AgentTeam` (each base loaded once, its agents' adapters
        or copies on it).
        """
        from seqmarl.agents.team import AgentTeam

        groups: dict[tuple, list[str]] = {}
        for a in agent_ids:
            groups.setdefault(cfg.for_agent(a).base_key(), []).append(a)
        generations = {
            a: cfg.for_agent(a).generation
            for a in agent_ids
            if a in cfg.per_agent and cfg.per_agent[a].generation is not None
        }

        def base(agent_id: str) -> AgentConfig:  # the group's base; sampling is per agent
            return cfg.for_agent(agent_id).model_copy(update={"generation": cfg.generation})

        if len(groups) == 1:
            return cls._load(base(agent_ids[0]), agent_ids, value_heads, seed, kind, generations)
        with contextlib.ExitStack() as stack:  # vllm: an engine per base, side by side
            for name in sorted({cfg.for_agent(a).generator for a in agent_ids}):
                stack.enter_context(GENERATORS[name].together())
            pools = [
                cls._load(
                    base(ids[0]),
                    ids,
                    [a for a in value_heads if a in ids],
                    seed,
                    kind,
                    generations,
                )
                for ids in groups.values()
            ]
        return AgentTeam(pools, agent_ids)

    @classmethod
    def _load(
        cls,
        cfg: AgentConfig,
        agent_ids: Sequence[str],
        value_heads,
        seed: int,
        kind: str | None,
        generations: Mapping[str, GenerationConfig] | None = None,
    ) -> AgentPool:
        from seqmarl.agents.loading import load_model_and_tokenizer, resolve_device, resolve_dtype

        GENERATORS[cfg.generator].check()  # one line before a model loads, not after
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
            mode=kind or cfg.mode,
            value_heads=value_heads,
            generations={a: g for a, g in (generations or {}).items() if a in agent_ids},
            seed=seed,
            settings=cfg,
        )

    # ------------------------------------------------------------ what the trainer asks
    # (the trainer reads no backend internals: these hooks are the pool's whole face to it)

    def sampled_elsewhere(self, agent_id: str) -> bool:
        """Whether an engine, not the trained weights, samples ``agent_id``.

        Its log-probs then differ from the trainer's by the engine's rounding.
        """
        return self.engine is not None

    def play_begins(self) -> None:
        """Before an iteration's play."""
        self._pushed = self.engine.push_seconds if self.engine is not None else 0.0

    def play_ends(self) -> dict[str, float]:
        """After it: the seconds spent pushing weights to the engine (``sync``).

        The pushes are part of generating; the engine then sleeps for the update
        (``agents.vllm.sleep``, GPU).
        """
        if self.engine is None:
            return {}
        sync = self.engine.push_seconds - getattr(self, "_pushed", 0.0)
        self.engine.sleep()
        return {"sync": sync}

    @property
    def saves_on_every_rank(self) -> bool:
        """Sharded copies gather on every rank to save an agent (``fsdp``)."""
        return self.mode == "fsdp"

    def __getitem__(self, agent_id: str) -> Policy:
        return self.agents[agent_id]

    def __iter__(self) -> Iterator[Policy]:
        return iter(self.agents.values())

    @property
    def device(self) -> torch.device:
        """Where the models live."""
        return next(self.model.parameters()).device
