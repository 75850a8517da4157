"""seqmarl: sequential multi-agent reinforcement learning for language models.

The LLM to be tuned is copied into N agents that answer a prompt in turn, each later agent
seeing the earlier answers (CORY, Ma et al., NeurIPS 2024, generalised to N agents, any
reward coefficient matrix and per-agent algorithms).

The names below are imported on first use (PEP 562), so ``import seqmarl.cli`` does not load
torch and transformers: the ``seqmarl`` command starts inside its own ``try`` block, where a
Ctrl-C while the libraries load is one line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seqmarl.config import RunConfig, load_config
    from seqmarl.envs import SequentialTextEnv, TextTask, check_env, make, register_env
    from seqmarl.errors import ConfigError, SeqmarlError, UnknownNameError
    from seqmarl.method.settings import Setting, make_setting

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "ConfigError": "seqmarl.errors",
    "RunConfig": "seqmarl.config",
    "SeqmarlError": "seqmarl.errors",
    "SequentialTextEnv": "seqmarl.envs",
    "Setting": "seqmarl.method.settings",
    "TextTask": "seqmarl.envs",
    "UnknownNameError": "seqmarl.errors",
    "check_env": "seqmarl.envs",
    "load_config": "seqmarl.config",
    "make": "seqmarl.envs",
    "make_setting": "seqmarl.method.settings",
    "register_env": "seqmarl.envs",
}

__all__ = [
    "ConfigError",
    "RunConfig",
    "SeqmarlError",
    "SequentialTextEnv",
    "Setting",
    "TextTask",
    "UnknownNameError",
    "__version__",
    "check_env",
    "load_config",
    "make",
    "make_setting",
    "register_env",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'seqmarl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
