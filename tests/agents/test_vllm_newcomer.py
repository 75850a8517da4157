"""vLLM for a newcomer: refusals before the engine starts, a quiet terminal, no stale folders.

Every test but the last runs before (or instead of) an engine start: the engine constructor is
replaced by one that fails the test if it is reached. The last one is a short real run on the
embedded tiny model, as a user would type it. Skipped, with the reason, where vLLM is not
installed.
"""

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from seqmarl.agents import byte_tokenizer, tiny_model_and_tokenizer
from seqmarl.run.depwarnings import DependencyWarnings
from tests.conftest import require_vllm, shared_path

ROOT = Path(__file__).resolve().parents[2]
RUN = [
    "train",
    "agents.generator=vllm",
    "env=arithmetic-v0",
    "batch_size=2",
    "iterations=1",
    "agents.generation.max_new_tokens=4",
    "agents.vllm.max_model_len=128",
    "train.progress=false",
]


def cpu_head_sizes():
    require_vllm()
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    return CPUAttentionBackend.get_supported_head_sizes()


@pytest.fixture
def no_engine(monkeypatch):
    """``vllm.LLM`` fails the test: whatever is refused must be refused before it."""
    require_vllm()
    import vllm

    def started(*args, **kwargs):
        raise AssertionError("the vLLM engine started")

    monkeypatch.setattr(vllm, "LLM", started)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def one_line_refusal(capsys, tmp_path, *args):
    from seqmarl.cli import main

    capsys.readouterr()  # (what the test's own setup printed)
    code = main([*RUN, *args, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_the_embedded_tiny_models_have_heads_vllm_cpu_serves(arch):
    model, _ = tiny_model_and_tokenizer(arch)
    c = model.config
    assert c.hidden_size // c.num_attention_heads in cpu_head_sizes()


def test_a_head_size_vllm_cpu_cannot_serve_is_one_line_before_the_engine(
    no_engine, capsys, tmp_path
):
    tok = byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,  # heads of 16, as the embedded model had
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=tok.eos_token_id,
    )
    folder = tmp_path / "narrow"
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    line = one_line_refusal(capsys, tmp_path, f"model={folder}")
    assert line.startswith("seqmarl: error: agents.generator=vllm:"), line
    assert "head sizes" in line and "heads are 16 wide" in line, line


def test_on_a_gpu_the_cpu_head_sizes_are_not_applied(monkeypatch):
    require_vllm()
    from seqmarl.agents import vllm as backend

    narrow = LlamaForCausalLM(LlamaConfig(hidden_size=64, num_attention_heads=4, vocab_size=8))
    with pytest.raises(ValueError, match="heads are 16 wide"):
        backend.check_servable(narrow, "merged")
    monkeypatch.setattr(backend.torch.cuda, "is_available", lambda: True)
    backend.check_servable(narrow, "merged")  # other attention backends: vLLM decides


GPT2S = ["embedded:tiny-gpt2", "imdb-gpt2-tiny"]


@pytest.mark.parametrize("model", GPT2S)
def test_lora_on_gpt2_is_refused_before_the_engine(no_engine, capsys, tmp_path, model):
    if model == "imdb-gpt2-tiny":
        path = shared_path("models", "imdb-gpt2-tiny")
        if path is None:
            pytest.skip("needs ../shared/models/imdb-gpt2-tiny (set SEQMARL_SHARED)")
        model = str(path)
    line = one_line_refusal(capsys, tmp_path, f"model={model}", "agents.mode=shared")
    assert "cannot serve LoRA adapters on GPT2LMHeadModel" in line, line
    assert "agents.vllm.adapters=merged" in line, line


def test_vllm_records_go_to_the_run_folder_not_the_terminal(tmp_path, capsys, monkeypatch):
    require_vllm()
    from seqmarl.agents.vllm import import_vllm

    monkeypatch.delenv("VLLM_CONFIGURE_LOGGING", raising=False)
    import_vllm()
    from vllm.config.logging import LoggingConfig
    from vllm.logger import _configure_vllm_root_logger

    vllm_log = logging.getLogger("vllm")
    saved = vllm_log.handlers[:], vllm_log.propagate, vllm_log.level
    try:
        # as an engine started earlier with vLLM's own logging would leave it: to stdout
        _configure_vllm_root_logger(LoggingConfig(configure_logging=True, log_level="WARNING"))
        with DependencyWarnings() as deps:
            deps.attach(tmp_path / "run")  # the run folder is made later, when training starts
            logging.getLogger("vllm.model_executor.x").warning("LayerNorm: Failed to load weights")
            (tmp_path / "run").mkdir()
            logging.getLogger("vllm.worker").warning("CPU backend doesn't allow it")
        deps.report()
    finally:
        vllm_log.handlers[:], vllm_log.propagate, _ = saved
        vllm_log.setLevel(saved[2])
    out = capsys.readouterr()
    assert "Failed to load" not in out.out + out.err
    log = (tmp_path / "run" / "warnings.log").read_text().splitlines()
    assert log == [
        "vllm.model_executor.x: LayerNorm: Failed to load weights",
        "vllm.worker: CPU backend doesn't allow it",
    ]
    assert out.err.strip().endswith(str(tmp_path / "run" / "warnings.log")), out.err
    # and an engine started in a command configures no handler of its own: told not to
    assert os.environ.get("VLLM_CONFIGURE_LOGGING") == "0"


def scratch_dir():
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def own_start(pid):
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[19]


def pid_namespace():
    return "".join(ch for ch in os.readlink("/proc/self/ns/pid") if ch.isdigit())


@pytest.fixture
def scratch_folders():
    """Scratch folders as killed and live runs leave them: ``{what: path}``."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    me = os.getpid()
    base = scratch_dir()
    ns = pid_namespace()
    tag = f"test{me}"
    made = {
        "dead": base / f"seqmarl-vllm-{dead.pid}.12345.{ns}-engine-{tag}",
        "live": base / f"seqmarl-vllm-{me}.{own_start(me)}.{ns}-engine-{tag}",
        "reused pid": base / f"seqmarl-vllm-{me}.1.{ns}-models-{tag}",
        "other container": base / f"seqmarl-vllm-{dead.pid}.12345.1{ns}-engine-{tag}",
        "older seqmarl": base / f"seqmarl-vllm-models-oldstyle{tag}",
    }
    try:
        for path in made.values():
            path.mkdir()
            (path / "model.safetensors").write_bytes(b"x" * 1000)
        yield made
    finally:
        for path in made.values():
            shutil.rmtree(path, ignore_errors=True)


def test_a_killed_runs_scratch_folders_are_removed_at_the_next_start(scratch_folders):
    require_vllm()
    from seqmarl.agents.vllm import remove_stale_scratch

    removed = remove_stale_scratch()
    assert str(scratch_folders["dead"]) in removed
    assert str(scratch_folders["reused pid"]) in removed  # its pid runs, but another process
    assert not scratch_folders["dead"].exists() and not scratch_folders["reused pid"].exists()
    assert scratch_folders["live"].exists()
    assert scratch_folders["other container"].exists()  # another pid namespace: cannot tell
    assert scratch_folders["older seqmarl"].exists()  # no owner in its name: cannot tell


def test_a_vllm_run_on_the_embedded_model_keeps_the_terminal_to_seqmarl(tmp_path, scratch_folders):
    """The one engine start here: a user's first run, its terminal, its warnings.log."""
    require_vllm()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("PYTHONWARNINGS", "VLLM_CONFIGURE_LOGGING", "VLLM_LOGGING_LEVEL"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "seqmarl", *RUN, "model=embedded:tiny-llama", "--out", "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    lines = out.splitlines() + err.splitlines()
    assert lines[0].startswith("seqmarl train:"), lines
    # every line is seqmarl's own: the run summary, or one line naming warnings.log
    foreign = [ln for ln in lines if ln.strip() and not ln.startswith(("seqmarl", "done:", "  "))]
    assert not foreign, foreign
    log = (tmp_path / "run" / "warnings.log").read_text().splitlines()
    assert any(ln.startswith("vllm.") for ln in log), log
    assert any("warnings.log" in ln for ln in err.splitlines()), err
    # the dead run's folder went at this start, the live one's stayed; this run left none
    assert not scratch_folders["dead"].exists()
    assert scratch_folders["live"].exists()
    left = [p.name for p in scratch_dir().glob(f"seqmarl-vllm-{proc.pid}.*")]
    assert not left, left
