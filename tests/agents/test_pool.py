import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from seqmarl.agents import tiny_model_and_tokenizer
from seqmarl.train.learner import Learner


def snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def train_agent0(pool, steps=3):
    learner = Learner(pool["llm_0"], "reinforce", seed=0)
    learner.optimizer.param_groups[0]["lr"] = 1e-2
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        c = pool["llm_0"].sample(["a", "bb", "ccc", "d"], generator=g)
        learner.update(c, learner.make_batch(c, torch.tensor([1.0, -1.0, 0.5, 2.0])))
    return g


def test_shared_base_training_agent0_leaves_agent1_and_base_bit_identical(make_pool):
    pool = make_pool("shared", value_heads=["llm_0", "llm_1"])
    before = snapshot(pool.model)
    head1 = snapshot(pool["llm_1"].value_head)
    probe = pool["llm_1"].sample(["probe", "x"], generator=torch.Generator().manual_seed(9))
    ref_before, _ = pool["llm_0"].reference(probe)
    train_agent0(pool)
    after = snapshot(pool.model)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed, "agent 0 did not train"
    assert all(".llm_0." in n for n in changed)  # only agent 0's adapter moved
    assert all(torch.equal(before[n], after[n]) for n in before if ".llm_1." in n)
    assert all(torch.equal(before[n], after[n]) for n in before if "lora_" not in n)  # base
    assert all(torch.equal(v, snapshot(pool["llm_1"].value_head)[k]) for k, v in head1.items())
    ref_after, _ = pool["llm_0"].reference(probe)
    assert torch.equal(ref_before, ref_after)


@pytest.mark.parametrize("mode", ["shared", "separate"])
def test_reference_logprobs_equal_the_initial_model(make_pool, mode):
    pool = make_pool(mode)
    initial, _ = tiny_model_and_tokenizer("llama", seed=0)
    g = train_agent0(pool, steps=2)
    c = pool["llm_0"].sample(["hello", "x y z"], generator=g)
    from seqmarl.agents import response_forward

    expected, _, _ = response_forward(initial, c)
    ref, _ = pool["llm_1"].reference(c)
    assert torch.allclose(ref, expected, atol=1e-6)
    now = pool["llm_0"].evaluate(c).logprobs
    assert not torch.allclose(now, expected, atol=1e-4)  # the trained policy moved away


def test_untrained_agents_start_at_the_initial_model(make_pool):
    pool = make_pool("shared")
    c = pool["llm_1"].sample(["start"], generator=torch.Generator().manual_seed(0))
    ref, _ = pool["llm_1"].reference(c)
    assert torch.allclose(pool["llm_1"].evaluate(c).logprobs, ref, atol=1e-6)


def test_separate_copies_training_agent0_leaves_agent1_and_reference_identical(make_pool):
    pool = make_pool("separate")
    ref_before = snapshot(pool.model)
    copy1 = snapshot(pool["llm_1"].model)
    copy0 = snapshot(pool["llm_0"].model)
    train_agent0(pool)
    assert all(torch.equal(v, snapshot(pool.model)[k]) for k, v in ref_before.items())
    assert all(torch.equal(v, snapshot(pool["llm_1"].model)[k]) for k, v in copy1.items())
    assert any(not torch.equal(v, snapshot(pool["llm_0"].model)[k]) for k, v in copy0.items())


def test_shared_adapter_saves_in_a_form_peft_loads_alone(make_pool, tmp_path):
    pool = make_pool("shared", value_heads=["llm_0"])
    train_agent0(pool)
    pool["llm_0"].save_pretrained(tmp_path / "llm_0")
    assert (tmp_path / "llm_0" / "adapter_config.json").exists()
    assert (tmp_path / "llm_0" / "value_head.safetensors").exists()
    base, _ = tiny_model_and_tokenizer("llama", seed=0)
    loaded = PeftModel.from_pretrained(base, tmp_path / "llm_0").eval()
    c = pool["llm_0"].sample(["check"], generator=torch.Generator().manual_seed(1))
    from seqmarl.agents import response_forward

    lp, _, _ = response_forward(loaded, c)
    assert torch.allclose(lp, pool["llm_0"].evaluate(c).logprobs, atol=1e-6)


def test_separate_copy_saves_in_a_form_transformers_loads_alone(make_pool, tmp_path):
    pool = make_pool("separate")
    train_agent0(pool)
    pool["llm_0"].save_pretrained(tmp_path / "llm_0")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "llm_0").eval()
    c = pool["llm_0"].sample(["check"], generator=torch.Generator().manual_seed(1))
    from seqmarl.agents import response_forward

    lp, _, _ = response_forward(loaded, c)
    assert torch.allclose(lp, pool["llm_0"].evaluate(c).logprobs, atol=1e-6)


@pytest.mark.parametrize("mode", ["shared", "separate"])
def test_agent_state_dict_round_trip(make_pool, mode):
    pool = make_pool(mode, value_heads=["llm_0"])
    state = {k: v.clone() for k, v in pool["llm_0"].state_dict().items()}
    train_agent0(pool)
    c = pool["llm_0"].sample(["z"], generator=torch.Generator().manual_seed(2))
    trained = pool["llm_0"].evaluate(c).logprobs
    pool["llm_0"].load_state_dict(state)
    ref, _ = pool["llm_0"].reference(c)
    assert torch.allclose(pool["llm_0"].evaluate(c).logprobs, ref, atol=1e-6)
    assert not torch.allclose(trained, ref, atol=1e-4)


def test_pool_rejects_unknown_mode():
    model, tok = tiny_model_and_tokenizer("llama")
    from seqmarl.agents import AgentPool

    with pytest.raises(ValueError, match="shared' or 'separate"):
        AgentPool(model, tok, ["llm_0"], mode="lora")
