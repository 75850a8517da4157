"""GPT-2-style models load without library noise, and LoRA on their Conv1D layers is right."""

import copy
import warnings

import pytest
import torch
from transformers.pytorch_utils import Conv1D
from transformers.utils import logging as hf_logging

from seqmarl.agents import AgentPool, response_forward, tiny_model_and_tokenizer
from seqmarl.config import AgentConfig

IDS = ("llm_0", "llm_1")


@pytest.fixture
def gpt2_folder(tmp_path):
    model, tok = tiny_model_and_tokenizer("gpt2", seed=0)
    model.save_pretrained(tmp_path / "gpt2")
    tok.save_pretrained(tmp_path / "gpt2")
    return tmp_path / "gpt2"


@pytest.mark.parametrize("mode", ["shared", "separate"])
def test_gpt2_pool_loads_and_saves_without_warnings_or_bars(gpt2_folder, tmp_path, capfd, mode):
    capfd.readouterr()  # the fixture's own save bar
    cfg = AgentConfig(model=str(gpt2_folder), mode=mode, device="cpu")
    assert hf_logging.is_progress_bar_enabled()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pool = AgentPool.from_config(cfg, IDS)
        pool["llm_0"].save_pretrained(tmp_path / "saved")
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "Writing model shards" not in err, err
    assert hf_logging.is_progress_bar_enabled()  # hidden only while loading/saving


def test_lora_on_gpt2_conv1d_is_the_transposed_update():
    model, tok = tiny_model_and_tokenizer("gpt2", seed=0)
    pool = AgentPool(model, tok, IDS)
    assert pool.model.peft_config["llm_0"].fan_in_fan_out
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # an adapter after some training: B no longer zero
        for name, p in pool.model.named_parameters():
            if ".llm_0." in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    # one layer by hand: Conv1D computes x @ W + b with W (in, out); the update is (B A)^T
    layer = pool.model.base_model.model.transformer.h[0].attn.c_attn
    assert isinstance(layer.base_layer, Conv1D)
    pool.model.set_adapter("llm_0")
    x = torch.randn(2, 5, layer.base_layer.weight.shape[0], generator=g)
    a, b = layer.lora_A["llm_0"].weight, layer.lora_B["llm_0"].weight
    w = layer.base_layer.weight + layer.scaling["llm_0"] * (b @ a).T
    with torch.no_grad():
        assert torch.allclose(layer(x), x @ w + layer.base_layer.bias, atol=1e-5)
        assert not torch.allclose(layer(x), layer.base_layer(x), atol=1e-3)
    # the whole model: the adapter's outputs equal the merged weights' outputs
    c = pool["llm_0"].sample(["a", "bb"], generator=torch.Generator().manual_seed(1))
    merged = copy.deepcopy(pool.model)
    merged.set_adapter("llm_0")
    merged = merged.merge_and_unload(adapter_names=["llm_0"]).eval()
    lp_merged, _, _ = response_forward(merged, c)
    assert torch.allclose(pool["llm_0"].evaluate(c).logprobs, lp_merged, atol=1e-5)


def test_a_real_problem_with_the_weights_is_still_reported(gpt2_folder, caplog):
    import logging

    from safetensors.torch import load_file, save_file

    from seqmarl.agents.loading import load_model_and_tokenizer

    weights = load_file(gpt2_folder / "model.safetensors")
    del weights["transformer.h.0.mlp.c_fc.weight"]
    save_file(weights, gpt2_folder / "model.safetensors", metadata={"format": "pt"})
    hf_logger = logging.getLogger("transformers")  # does not propagate to the root logger
    hf_logger.addHandler(caplog.handler)
    try:
        load_model_and_tokenizer(str(gpt2_folder))
    finally:
        hf_logger.removeHandler(caplog.handler)
    assert "transformer.h.0.mlp.c_fc.weight" in caplog.text and "MISSING" in caplog.text
