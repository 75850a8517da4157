"""The agents' settings: generation, LoRA, the vLLM engine and the agent pool.

Kept apart from :mod:`seqmarl.config` (which re-exports them) so that the agents import their
settings without the env, setting and algorithm registries a run config validates against.
The length rules live here, next to their fields: :meth:`GenerationConfig.iteration_length`
(the trainer, once per iteration) and :meth:`GenerationConfig.batch_length` (a policy, per
batch) are the one channel of a response's length, and :meth:`GenerationConfig.stops` the
one merge of the configured and the task's stop strings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from seqmarl.ops import draw_length
from seqmarl.schema import Strict as _Strict

__all__ = ["AgentConfig", "AgentModel", "GenerationConfig", "LoraSettings", "VllmSettings"]


class GenerationConfig(_Strict):
    """How agents sample responses."""

    max_new_tokens: int = Field(16, ge=1, description="Longest response in tokens.")
    min_new_tokens: int | None = Field(
        None,
        ge=1,
        description="If set, each batch's length is drawn from min..max (the paper's sampler).",
    )
    shared_length: bool = Field(
        False,
        description="With min_new_tokens: draw the length once per iteration and give it to "
        "every seat (the released CORY code); False: one draw per seat's batch.",
    )
    length_cycle: list[int] | None = Field(
        None,
        description="Every seat's length at iteration t is length_cycle[t % len]; replays a "
        "run whose length draws repeat (the released CORY code's seed resets); overrides "
        "min_new_tokens.",
    )
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_k: int = Field(0, ge=0, description="Top-k filtering; 0 = off.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus filtering; 1 = off.")
    repetition_penalty: float = Field(1.0, gt=0, description="1 = off.")
    stop_at_eos: bool = Field(True, description="End a response at the EOS token.")
    stop_strings: list[str] = Field(
        default_factory=list,
        description="End a response once its text contains one of these (added to the task's).",
    )

    def iteration_length(self, iteration: int, generator: Any = None) -> int | None:
        """Every seat's length limit at ``iteration``, or None: each batch draws its own.

        ``length_cycle`` replays a schedule; ``shared_length`` draws once per iteration (from
        ``generator``, before any batch). With neither, :meth:`batch_length` decides per batch.
        """
        if self.length_cycle:
            return self.length_cycle[iteration % len(self.length_cycle)]
        if self.shared_length and self.min_new_tokens is not None:
            return draw_length(self.min_new_tokens, self.max_new_tokens, generator)
        return None

    def batch_length(self, max_new_tokens: int | None, generator: Any = None) -> int:
        """One batch's length limit: ``max_new_tokens`` (the iteration's), else drawn or fixed.

        With ``min_new_tokens`` set it is drawn uniformly from ``min..max`` using ``generator``.
        """
        if max_new_tokens is not None:
            return max_new_tokens
        if self.min_new_tokens is not None:
            return draw_length(self.min_new_tokens, self.max_new_tokens, generator)
        return self.max_new_tokens

    def stops(self, task_strings: Sequence[str] = ()) -> tuple[str, ...]:
        """Where a response ends: these ``stop_strings``, then the task's (empty ones dropped).

        The one merge of the two sources; every policy (HF and vLLM) samples with it.
        """
        return tuple(s for s in (*self.stop_strings, *task_strings) if s)

    @model_validator(mode="after")
    def _lengths(self) -> GenerationConfig:
        if self.length_cycle is not None:
            bad = [n for n in self.length_cycle if not 1 <= n <= self.max_new_tokens]
            if not self.length_cycle or bad:
                raise ValueError(
                    f"length_cycle: needs lengths in 1..max_new_tokens ({self.max_new_tokens}), "
                    f"got {self.length_cycle}"
                )
        if self.min_new_tokens is not None and self.min_new_tokens > self.max_new_tokens:
            raise ValueError(
                f"min_new_tokens ({self.min_new_tokens}) must be <= max_new_tokens "
                f"({self.max_new_tokens})"
            )
        return self


class LoraSettings(_Strict):
    """LoRA adapter shape for shared-base agents."""

    r: int = Field(16, ge=1, description="Adapter rank.")
    alpha: float = Field(32.0, gt=0, description="LoRA alpha (scale = alpha / r).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: str | list[str] = Field(
        "all-linear", description="Modules to adapt (peft's target_modules)."
    )


class VllmSettings(_Strict):
    """The vLLM engine of ``agents.generator=vllm`` (one per process, serving every agent)."""

    logprobs: Literal["recompute", "engine"] = Field(
        "recompute",
        description="recompute: old log-probs from one pass of the trained model (exact); "
        "engine: the engine's (skips that pass; needs top_k=0, top_p=1, repetition_penalty=1).",
    )
    adapters: Literal["lora", "merged"] = Field(
        "lora",
        description="agents.mode=shared: lora (one adapter slot per agent, all agents in one "
        "engine call) or merged (the engine holds no adapters; before an agent generates, its "
        "base + adapter weights are pushed in place: no LoRA kernels, one push per switch).",
    )
    tis_cap: float | None = Field(
        None,
        ge=1,
        description="Truncated importance sampling: weight each token's advantage by "
        "min(p_trained / p_engine, tis_cap); None = off (needs logprobs=recompute).",
    )
    max_model_len: int | None = Field(
        None, ge=8, description="Longest prompt + response the engine holds; None = the model's."
    )
    max_loras: int | None = Field(
        None, ge=1, description="Adapter slots (shared mode); None = one per agent."
    )
    gpu_memory_utilization: float = Field(
        0.3,
        gt=0,
        le=0.95,
        description="GPU: the share of device memory the engine may take (training needs "
        "the rest).",
    )
    cpu_kv_cache_gb: int = Field(
        1, ge=1, description="CPU: the engine's KV cache in whole GiB (VLLM_CPU_KVCACHE_SPACE)."
    )
    enforce_eager: bool = Field(False, description="Skip CUDA graphs / compilation (faster start).")
    sleep: bool = Field(
        False,
        description="GPU: free the engine's weights and KV cache while training runs "
        "(vLLM sleep mode); ignored on CPU, where vLLM has no sleep mode.",
    )


class AgentModel(_Strict):
    """One agent's own model: what ``agents.per_agent.<id>`` may set (unset: the run's).

    Agents that end up with the same base (model, files, dtype, device, mode and LoRA shape)
    share it, one adapter or copy each; each distinct base is loaded once.
    """

    model: str | None = Field(
        None,
        description="Hub id, local folder or `embedded:<name>`; naming one drops the run's "
        "gguf_file and tokenizer for this agent (set them here if it needs them).",
    )
    gguf_file: str | None = Field(None, description="GGUF file inside this agent's model folder.")
    tokenizer: str | None = Field(None, description="Tokenizer source; None = its model's.")
    mode: Literal["shared", "separate"] | None = Field(None, description="As agents.mode.")
    lora: LoraSettings | None = Field(None, description="As agents.lora (the whole shape).")
    dtype: Literal["float32", "bfloat16", "float16", "auto"] | None = Field(
        None, description="As agents.dtype."
    )
    trust_remote_code: bool | None = Field(None, description="As agents.trust_remote_code.")
    generator: Literal["hf", "vllm"] | None = Field(
        None,
        description="As agents.generator, for this agent's base (vllm: an engine of its own "
        "with agents.vllm's settings).",
    )
    generation: GenerationConfig | None = Field(
        None,
        description="This agent's sampling settings: the fields named here replace the run's "
        "agents.generation fields (e.g. agents.per_agent.llm_1.generation.temperature=0.7); "
        "the iteration's shared length (shared_length, length_cycle) stays the run's.",
    )


class AgentConfig(_Strict):
    """The language model the agents are made from, and how N of them are held."""

    model: str = Field(
        "embedded:smollm2-135m-instruct",
        description="Hub id, local folder, or an embedded default (`embedded:<name>`).",
    )
    gguf_file: str | None = Field(None, description="GGUF file inside the model folder.")
    tokenizer: str | None = Field(None, description="Tokenizer source; None = the model's.")
    mode: Literal["shared", "separate"] = Field(
        "shared",
        description="shared: one frozen base + a LoRA adapter per agent; "
        "separate: N full copies + one frozen reference.",
    )
    lora: LoraSettings = Field(default_factory=LoraSettings)
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field(
        "float32", description="Weights dtype (bf16/fp16 only where the device supports it)."
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, ...")
    trust_remote_code: bool = Field(False, description="Allow a model's own code to run.")
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    generator: Literal["hf", "vllm"] = Field(
        "hf",
        description="What samples responses: hf (seqmarl's KV-cache sampler on the trained "
        "model) or vllm (one vLLM engine serving every agent; agents.vllm).",
    )
    vllm: VllmSettings = Field(default_factory=VllmSettings)
    update: Literal["per_agent", "mixed"] = Field(
        "per_agent",
        description="per_agent: each learning agent's update runs alone, one after another; "
        "mixed: the LoRA agents on one base update together, every agent's rows in one "
        "forward and backward, each row through its own adapter (each agent keeps its own "
        "algorithm, loss, optimizer and schedule; the same gradients to float rounding).",
    )
    per_agent: dict[str, AgentModel] = Field(
        default_factory=dict,
        description="Agent id -> its own model settings (a team of different models), e.g. "
        "agents.per_agent.llm_1.model=<folder or hub id>; fields: "
        + ", ".join(AgentModel.model_fields)
        + ". Agents not named use the fields above.",
    )

    def for_agent(self, agent_id: str) -> AgentConfig:
        """The settings ``agent_id`` is built from: the run's, with its own on top."""
        own = self.per_agent.get(agent_id)
        if own is None:
            return self.model_copy(update={"per_agent": {}})
        update = own.model_dump(exclude_unset=True, exclude_none=True)
        if "lora" in update:
            update["lora"] = own.lora
        if own.generation is not None:  # its own fields over the run's
            update["generation"] = GenerationConfig.model_validate(
                {
                    **self.generation.model_dump(),
                    **own.generation.model_dump(exclude_unset=True),
                }
            )
        if own.model is not None:  # another model brings its own files
            update.setdefault("gguf_file", None)
            update.setdefault("tokenizer", None)
        return self.model_copy(update={**update, "per_agent": {}})

    def base_key(self) -> tuple:
        """What decides whether two agents share one base: same key, one loaded model.

        The generator is part of it: an engine serves all the agents of its base.
        """
        return (
            self.model,
            self.gguf_file,
            self.tokenizer,
            self.dtype,
            self.device,
            self.trust_remote_code,
            self.mode,
            self.generator,
            json.dumps(self.lora.model_dump(mode="json"), sort_keys=True)
            if self.mode == "shared"
            else None,
        )

    @model_validator(mode="after")
    def _engine_logprobs(self) -> AgentConfig:
        g, v = self.generation, self.vllm
        if v.logprobs == "engine":
            shaped = g.top_k != 0 or g.top_p != 1.0 or g.repetition_penalty != 1.0
            if shaped:
                raise ValueError(
                    "vllm.logprobs=engine: the engine's log-probs are of the shaped distribution "
                    "(top_k, top_p or repetition_penalty set), not the policy's; use "
                    "vllm.logprobs=recompute"
                )
            if v.tis_cap is not None:
                raise ValueError(
                    "vllm.tis_cap corrects engine samples against recomputed log-probs; set "
                    "vllm.logprobs=recompute or drop tis_cap"
                )
        return self
