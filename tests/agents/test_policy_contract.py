"""The :class:`~seqmarl.agents.base.Policy` contract, run over every kind in ``POLICY_KINDS``
and every generator in ``GENERATORS``.

A new backend registered there runs these tests too (and must say how its saved folder loads,
in ``LOADERS``). The vLLM cases run on a real engine (one per kind: the tests are grouped by
case) and skip, saying why, where vLLM is not installed.
"""

import os

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from seqmarl.agents import (
    GENERATORS,
    POLICY_KINDS,
    AgentPool,
    Policy,
    ValueHead,
    response_forward,
    tiny_model_and_tokenizer,
)
from seqmarl.algos import ALGORITHMS
from seqmarl.config import AgentConfig, GenerationConfig, VllmSettings
from seqmarl.run.distributed import setup
from seqmarl.train.learner import Learner
from tests.conftest import VLLM_TEST_SETTINGS, require_vllm

IDS = ("llm_0", "llm_1")
RAGGED = ["a", "hello there", "x y z 1 2 3 and more", "bb"]


#: Hidden size of the tiny models: vLLM's CPU attention needs a head size of 32 or more.
HIDDEN = {"hf": 64, "vllm": 128}


def fresh_base(arch, hidden=64):
    return tiny_model_and_tokenizer(arch, hidden=hidden, seed=0)[0]


def peft_loader(path, arch, hidden):
    return PeftModel.from_pretrained(fresh_base(arch, hidden), path).eval()


def hf_loader(path, arch, hidden):
    return AutoModelForCausalLM.from_pretrained(path).eval()


#: kind -> how the folder written by ``save_pretrained`` loads without seqmarl
LOADERS = {"shared": peft_loader, "separate": hf_loader, "fsdp": hf_loader}

#: kinds that need a process group: their contract runs under torchrun in tests/distributed
MULTI_PROCESS = {"fsdp"}
#: case family -> (agents.generator, agents.vllm settings, kinds, architectures); vLLM has no
#: LoRA for GPT-2, so a GPT-2 shared base is served merged
VARIANTS = {
    "hf": ("hf", {}, ("shared", "separate"), ("llama", "gpt2")),
    "vllm": ("vllm", {}, ("shared", "separate"), ("llama",)),
    "vllm-merged": ("vllm", {"adapters": "merged"}, ("shared",), ("llama", "gpt2")),
}
CASES = [
    (variant, kind, arch)
    for variant, (_, _, kinds, archs) in VARIANTS.items()
    for kind in POLICY_KINDS
    if kind not in MULTI_PROCESS and kind in kinds
    for arch in archs
]
#: under torchrun (tests/distributed/test_data_parallel.py), the multi-process kinds instead
RANKS = int(os.environ.get("SEQMARL_CONTRACT_RANKS", "0"))
if RANKS:
    CASES = [("hf", kind, arch) for kind in sorted(MULTI_PROCESS) for arch in ("llama", "gpt2")]


def test_every_kind_and_generator_has_cases():
    assert {g for g, *_ in VARIANTS.values()} == set(GENERATORS)
    assert {k for _, k, _ in CASES} | MULTI_PROCESS == set(POLICY_KINDS)


@pytest.fixture(scope="module", params=CASES, ids=["-".join(c).replace("hf-", "") for c in CASES])
def build(request):
    """``build(seed=0, **generation)`` -> a fresh pool of this kind; llm_0 has a value head.

    Module-scoped so that pytest runs the tests case by case: a vLLM case starts its engine once.
    """
    variant, kind, arch = request.param
    generator, vllm, _, _ = VARIANTS[variant]
    if kind in MULTI_PROCESS:
        setup(kind, 120)  # the launcher's process group
    if generator == "vllm":
        require_vllm()
    vllm = VllmSettings(**VLLM_TEST_SETTINGS, **vllm)
    settings = AgentConfig(generator=generator, vllm=vllm)
    hidden = HIDDEN[generator]

    def make(seed=0, **gen):
        model, tok = tiny_model_and_tokenizer(arch, hidden=hidden, seed=0)
        generation = GenerationConfig(**{"max_new_tokens": 12, **gen})
        pool = AgentPool(
            model,
            tok,
            IDS,
            mode=kind,
            value_heads=["llm_0"],
            generation=generation,
            seed=seed,
            settings=settings,
        )
        pool.arch, pool.hidden = arch, hidden
        return pool

    return make


def gen(seed):
    return torch.Generator().manual_seed(seed)


def whole(agent, state):
    """A state dict on every rank: a sharded policy's is gathered whole on rank 0 alone."""
    if not agent.lockstep:
        return state
    box = [state]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def train_one_step(agent, algo="reinforce", seed=0):
    learner = Learner(agent, algo, ALGORITHMS.get(algo).make_config(lr=1e-2))
    c = agent.sample(RAGGED, generator=gen(seed))
    learner.update(c, learner.make_batch(c, torch.tensor([1.0, -1.0, 0.5, 2.0])))


def outputs(agent, c):
    """Everything an agent says about ``c``: log-probs, values, entropy and the reference."""
    out = agent.evaluate(c, with_values=agent.value_head is not None, with_entropy=True)
    ref, ref_logits = agent.reference(c, return_logits=True)
    return [out.logprobs, out.values, out.entropy, ref, ref_logits]


def assert_same(a, b):
    for x, y in zip(a, b, strict=True):
        assert (x is None) == (y is None)
        if x is not None:
            assert torch.equal(x, y)


def test_agents_satisfy_the_protocol(build):
    pool = build()
    assert set(pool.agents) == set(IDS)
    for agent in pool:
        assert isinstance(agent, Policy)
        assert agent.tokenizer is pool.tokenizer
        assert agent.device == pool.device == torch.device("cpu")
        assert agent.generation.max_new_tokens == 12
    assert isinstance(pool["llm_0"].value_head, ValueHead) and pool["llm_1"].value_head is None
    assert not isinstance(object(), Policy)


def test_sample_shapes_and_masks(build):
    pool = build()
    tok = pool.tokenizer
    for agent in pool:
        c = agent.sample(RAGGED, generator=gen(1))
        b, t = c.response_ids.shape
        assert b == len(RAGGED) and 1 <= t <= 12 and len(c.texts) == b
        assert c.query_ids.shape == c.query_mask.shape and c.query_ids.shape[0] == b
        for x in (c.response_mask, c.logprobs):
            assert x.shape == (b, t)
        if agent.value_head is None:
            assert c.values is None
        else:
            assert c.values.shape == (b, t)
        # prompts left-padded, each exactly its tokens; responses right-padded
        lengths = [len(tok(p)["input_ids"]) for p in RAGGED]
        assert c.query_mask.sum(1).tolist() == lengths
        assert torch.equal(c.query_mask, c.query_mask.sort(1).values)  # 0s then 1s
        mask = c.response_mask
        assert torch.equal(mask, mask.sort(1, descending=True).values)  # 1s then 0s
        assert (mask.sum(1) >= 1).all()
        assert (c.response_ids[mask == 0] == tok.pad_token_id).all()
        assert (c.logprobs[mask == 0] == 0).all() and (c.logprobs[mask == 1] < 0).all()
        for row, text in enumerate(c.texts):
            real = c.response_ids[row][mask[row] == 1]
            assert text == tok.decode(real, skip_special_tokens=True)


def test_stop_strings_end_the_text_before_the_stop_string(build):
    pool = build(max_new_tokens=24)
    agent = pool["llm_1"]
    free = agent.sample(["once upon a time"], generator=gen(5))
    text = free.texts[0]
    # an ASCII character whose first occurrence is not at the start
    stop = next(ch for ch in text[1:] if ch.isascii() and ch.isprintable() and text.find(ch) > 0)
    cut = agent.sample(["once upon a time"], generator=gen(5), stop_strings=[stop])
    assert cut.texts[0] == text[: text.find(stop)]
    n = int(cut.response_mask.sum())
    assert n < int(free.response_mask.sum())
    # the token that completed the stop string is the last action
    assert torch.equal(cut.response_ids[0, :n], free.response_ids[0, :n])
    assert stop in pool.tokenizer.decode(cut.response_ids[0, :n])


def test_sampled_logprobs_equal_a_fresh_forward(build):
    pool = build()
    for agent in pool:
        c = agent.sample(RAGGED, generator=gen(2))
        with torch.no_grad():
            out = agent.evaluate(c, with_values=agent.value_head is not None)
        torch.testing.assert_close(out.logprobs, c.logprobs, atol=1e-5, rtol=0)
        if agent.value_head is not None:
            torch.testing.assert_close(out.values, c.values, atol=1e-5, rtol=0)


def test_evaluate_lets_gradients_flow_into_the_agents_parameters(build):
    agent = build()["llm_0"]
    c = agent.sample(RAGGED, generator=gen(3))
    out = agent.evaluate(c, with_values=True)
    (out.logprobs.sum() + out.values.sum()).backward()
    params = agent.parameters()
    assert params and all(p.requires_grad for p in params)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    assert agent.value_head.linear.weight.grad.abs().sum() > 0


def test_reference_is_the_untrained_policy_and_the_initial_model(build):
    pool = build()
    initial = fresh_base(pool.arch, pool.hidden)
    for agent in pool:
        c = agent.sample(RAGGED, generator=gen(4))
        ref, ref_logits = agent.reference(c, return_logits=True)
        assert ref.shape == c.logprobs.shape and ref_logits.shape[:2] == ref.shape
        assert not ref.requires_grad
        with torch.no_grad():
            now = agent.evaluate(c, ref_logits=ref_logits)
        torch.testing.assert_close(now.logprobs, ref, atol=1e-6, rtol=0)
        assert now.kl.abs().max() < 1e-6
        expected, _, _ = response_forward(initial, c)
        torch.testing.assert_close(ref, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("trained", "other", "algo"), [("llm_0", "llm_1", "ppo"), ("llm_1", "llm_0", "reinforce")]
)
def test_a_step_on_one_agent_leaves_the_other_and_the_references_unchanged(
    build, trained, other, algo
):
    pool = build()
    probe = pool[other].sample(RAGGED, generator=gen(6))
    before = {a: outputs(pool[a], probe) for a in IDS}
    train_one_step(pool[trained], algo)
    assert_same(outputs(pool[other], probe), before[other])  # values and reference included
    after = outputs(pool[trained], probe)
    assert not torch.allclose(after[0], before[trained][0], atol=1e-4)  # it trained
    if algo == "ppo":
        assert not torch.equal(after[1], before[trained][1])  # and its value head
    assert_same(after[3:], before[trained][3:])  # its reference did not move


def test_state_dict_round_trip_into_a_fresh_pool_is_exact(build):
    pool = build()
    train_one_step(pool["llm_0"])
    state = {k: v.clone() for k, v in whole(pool["llm_0"], pool["llm_0"].state_dict()).items()}
    assert any(k.startswith("value_head.") for k in state)
    fresh = build(seed=1)  # other adapter/head initialisation: the state must cover it all
    probe = pool["llm_0"].sample(RAGGED, generator=gen(7))
    assert not torch.equal(fresh["llm_0"].evaluate(probe).logprobs, probe.logprobs)
    fresh["llm_0"].load_state_dict(state)
    with torch.no_grad():
        assert_same(outputs(fresh["llm_0"], probe), outputs(pool["llm_0"], probe))
    again = fresh["llm_0"].sample(RAGGED, generator=gen(7))
    assert torch.equal(again.response_ids, probe.response_ids)
    assert torch.equal(again.logprobs, probe.logprobs) and torch.equal(again.values, probe.values)


def test_save_pretrained_writes_what_its_library_loads_alone(build, tmp_path):
    assert set(LOADERS) == set(POLICY_KINDS), "say how a new kind's saved folder loads"
    pool = build()
    agent = pool["llm_0"]
    train_one_step(agent)
    agent.save_pretrained(tmp_path / "llm_0")
    c = agent.sample(RAGGED, generator=gen(8))
    with torch.no_grad():
        out = agent.evaluate(c, with_values=True)
    if agent.lockstep and torch.distributed.get_rank() != 0:
        return  # a sharded copy is gathered and written by rank 0 alone
    loaded = LOADERS[pool.mode](tmp_path / "llm_0", pool.arch, pool.hidden)
    head = ValueHead(loaded.config.get_text_config().hidden_size)
    head.load_state_dict(load_file(tmp_path / "llm_0" / "value_head.safetensors"))
    with torch.no_grad():
        lp, values, _ = response_forward(loaded, c, value_head=head)
    torch.testing.assert_close(lp, out.logprobs, atol=1e-6, rtol=0)
    torch.testing.assert_close(values, out.values, atol=1e-6, rtol=0)
    tok = AutoTokenizer.from_pretrained(tmp_path / "llm_0")
    assert tok(RAGGED[2])["input_ids"] == pool.tokenizer(RAGGED[2])["input_ids"]


def test_learner_calls_sync_once_after_an_update_that_stepped(build, monkeypatch):
    agent = build()["llm_0"]
    cfg = ALGORITHMS.get("reinforce").make_config(lr=1e-3, epochs=2, minibatch_size=2)
    learner = Learner(agent, "reinforce", cfg)
    events = []
    step = learner.optimizer.step
    monkeypatch.setattr(learner.optimizer, "step", lambda: (events.append("step"), step())[1])
    monkeypatch.setattr(agent, "sync", lambda: events.append("sync"))
    c = agent.sample(RAGGED, generator=gen(9))
    learner.update(c, learner.make_batch(c, torch.tensor([1.0, -1.0, 0.5, 2.0])))
    # 2 epochs x 2 minibatches, then one sync: an engine pushes the weights once per update
    assert events == ["step"] * 4 + ["sync"]
    events.clear()  # a skipped (non-finite) step is no step: nothing to sync
    metrics = learner.update(c, learner.make_batch(c, torch.full((4,), float("nan"))))
    assert metrics["skipped_steps"] == 4 and events == []
