"""seqmarl: sequential multi-agent reinforcement learning for language models.

The LLM to be tuned is copied into N agents that answer a prompt in turn, each later agent
seeing the earlier answers (CORY, Ma et al., NeurIPS 2024, generalised to N agents, any
reward coefficient matrix and per-agent algorithms).
"""

from seqmarl.config import RunConfig, load_config
from seqmarl.envs import SequentialTextEnv, TextTask, check_env, make, register_env
from seqmarl.errors import ConfigError, SeqmarlError, UnknownNameError
from seqmarl.settings import Setting, make_setting

__version__ = "0.1.0"

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
