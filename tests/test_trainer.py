"""End-to-end training on tiny in-process models."""

import json
import math

import pytest
import torch

from seqmarl.config import load_config
from seqmarl.run.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from seqmarl.run.sinks import read_jsonl
from seqmarl.train.trainer import Trainer, TrainingError

TINY = [
    "model=embedded:tiny-llama",
    "env=arithmetic-v0",
    "batch_size=3",
    "agents.generation.max_new_tokens=4",
    "algo.params.epochs=1",
    "train.checkpoint_every=2",
    "train.sample_every=2",
    "train.progress=false",
]


def cfg_for(*extra):
    return load_config(None, [*TINY, *extra])


def strip_timing(records):
    return [
        {k: v for k, v in r.items() if not k.startswith("time/") and k != "tokens_per_s"}
        for r in records
    ]


@pytest.mark.parametrize(
    ("setting", "n", "algo"), [("single", 1, "ppo"), ("cory", 2, "ppo"), ("cory", 3, "reinforce")]
)
def test_end_to_end_training_writes_every_output(tmp_path, setting, n, algo):
    cfg = cfg_for(f"setting={setting}", f"num_agents={n}", f"algo={algo}", "iterations=4")
    trainer = Trainer(cfg, tmp_path)
    summary = trainer.fit()
    ids = [f"llm_{i}" for i in range(n)]
    assert (tmp_path / "config.yaml").exists()
    # the resolved config round-trips; it names the run's folder
    assert load_config(tmp_path / "config.yaml") == trainer.cfg
    assert trainer.cfg == cfg.model_copy(
        update={"train": cfg.train.model_copy(update={"out_dir": str(tmp_path)})}
    )
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["iteration"] for r in records] == [0, 1, 2, 3]
    for r in records:
        for a in ids:
            for key in (
                "task_reward",
                "reward",
                "kl",
                "combined_reward",
                "seat",
                "response_length",
                "entropy",
                "loss_policy",
                "clip_fraction",
                "kl_coef",
            ):
                assert f"agent/{a}/{key}" in r, key
                assert r[f"agent/{a}/{key}"] is not None
        assert {"time/generate", "time/score", "time/update", "tokens_per_s"} <= set(r)
        assert all(math.isfinite(v) for v in r.values() if isinstance(v, float))
    samples = read_jsonl(tmp_path / "samples.jsonl")
    assert [s["iteration"] for s in samples] == [0, 2]
    assert set(samples[0]["samples"][0]["agents"]) == set(ids)
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == [
        "iter_000002",
        "iter_000004",
    ]
    for a in ids:
        assert (tmp_path / "agents" / a / "adapter_model.safetensors").exists()
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {
        "training_curves.png",
        "reward_vs_kl.png",
    }
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert set(summary["agents"]) == set(ids)


def test_seats_follow_the_schedule(tmp_path):
    cfg = cfg_for("setting.exchange_every=2", "iterations=6", "num_agents=3")
    Trainer(cfg, tmp_path).fit()
    records = read_jsonl(tmp_path / "metrics.jsonl")
    setting = cfg.setting.build()
    for r in records:
        order = setting.seat_order(r["iteration"])
        for seat, agent_index in enumerate(order):
            assert r[f"agent/llm_{agent_index}/seat"] == seat
    seats_of_0 = [r["agent/llm_0/seat"] for r in records]
    assert seats_of_0 == [0, 0, 2, 2, 1, 1]


def test_optimizer_state_survives_a_seat_swap(tmp_path):
    trainer = Trainer(cfg_for("setting.exchange_every=1", "iterations=2"), tmp_path)
    optimizers = {a: lr.optimizer for a, lr in trainer.learners.items()}
    trainer.step()
    trainer.iteration += 1
    before = {
        a: {k: v["exp_avg"].clone() for k, v in o.state_dict()["state"].items()}
        for a, o in optimizers.items()
    }
    steps = {
        a: [int(v["step"]) for v in o.state_dict()["state"].values()] for a, o in optimizers.items()
    }
    assert trainer.setting.seat_agents(1) == ("llm_1", "llm_0")  # roles exchanged
    # the swap itself moves nothing: same optimizer objects, same moments, same KL state
    kl_state = {a: lr.state.state_dict() for a, lr in trainer.learners.items()}
    for a, lr in trainer.learners.items():
        assert lr.optimizer is optimizers[a]
        after = {k: v["exp_avg"] for k, v in lr.optimizer.state_dict()["state"].items()}
        assert all(torch.equal(before[a][k], after[k]) for k in before[a])
    trainer.step()  # the swapped iteration continues each agent's own Adam state
    for a, o in optimizers.items():
        assert [int(v["step"]) for v in o.state_dict()["state"].values()] == [
            s + 1 for s in steps[a]
        ]
        old, new = kl_state[a]["kl"]["value"], trainer.learners[a].state.kl.value
        assert old != 0.3 and abs(new - old) / old < 0.01  # the adaptive KL coefficient carried on


def test_resume_equals_uninterrupted(tmp_path, monkeypatch):
    cfg = cfg_for("iterations=6", "algo=rloo", "algo.params.group_size=2")
    Trainer(cfg, tmp_path / "full").fit()
    full = strip_timing(read_jsonl(tmp_path / "full" / "metrics.jsonl"))

    crashed = Trainer(cfg, tmp_path / "crash")
    real_step = Trainer.step

    def crash_at_5(self):
        if self.iteration == 5:
            raise RuntimeError("simulated crash")
        return real_step(self)

    monkeypatch.setattr(Trainer, "step", crash_at_5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.fit()
    assert len(read_jsonl(tmp_path / "crash" / "metrics.jsonl")) == 5  # one past the checkpoint
    monkeypatch.setattr(Trainer, "step", real_step)
    resumed = Trainer(cfg, tmp_path / "crash", resume=True)
    assert resumed.iteration == 4
    resumed.fit()
    assert strip_timing(read_jsonl(tmp_path / "crash" / "metrics.jsonl")) == full
    a = load_checkpoint(latest_checkpoint(tmp_path / "full" / "checkpoints"))
    b = load_checkpoint(latest_checkpoint(tmp_path / "crash" / "checkpoints"))
    for agent in a["learners"]:
        for k, v in a["learners"][agent]["agent"].items():
            assert torch.equal(v, b["learners"][agent]["agent"][k])


def test_interrupted_checkpoint_write_leaves_the_previous_one_loadable(tmp_path, monkeypatch):
    trainer = Trainer(cfg_for("iterations=4"), tmp_path)
    import seqmarl.run.checkpoint as ck

    real_save = torch.save
    calls = {"n": 0}

    def flaky_save(obj, fh, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint dies half-way through the write
            fh.write(b"partial")
            raise OSError("disk full")
        return real_save(obj, fh, *a, **kw)

    monkeypatch.setattr(ck.torch, "save", flaky_save)
    with pytest.raises(OSError, match="disk full"):
        trainer.fit()
    last = latest_checkpoint(tmp_path / "checkpoints")
    assert last.name == "iter_000002"
    state = load_checkpoint(last)
    assert state["iteration"] == 2
    monkeypatch.setattr(ck.torch, "save", real_save)
    resumed = Trainer(cfg_for("iterations=4"), tmp_path, resume=True)
    assert resumed.iteration == 2
    resumed.fit()
    assert latest_checkpoint(tmp_path / "checkpoints").name == "iter_000004"
    assert not list((tmp_path / "checkpoints").glob(".tmp*"))


def test_nan_guard_skips_then_stops_with_the_checkpoint_intact(tmp_path, monkeypatch):
    cfg = cfg_for("iterations=10", "train.max_bad_iterations=2", "algo=reinforce")
    trainer = Trainer(cfg, tmp_path)
    real_update = trainer.learners["llm_0"].update
    calls = {"n": 0}

    def poisoned(completions, batch):
        calls["n"] += 1
        if calls["n"] > 2:  # iterations 0 and 1 are fine, then every loss is NaN
            batch.rewards = torch.full_like(batch.rewards, float("nan"))
        return real_update(completions, batch)

    monkeypatch.setattr(trainer.learners["llm_0"], "update", poisoned)
    before = {k: v.clone() for k, v in trainer.pool["llm_0"].state_dict().items()}
    with pytest.raises(TrainingError, match="non-finite loss in 2 consecutive iterations") as info:
        trainer.fit()
    assert "iter_000002" in str(info.value)
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert records[-1]["agent/llm_0/skipped_steps"] == 1  # the first bad iteration is logged
    saved = load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))
    assert saved["iteration"] == 2
    after = trainer.pool["llm_0"].state_dict()
    assert all(torch.isfinite(v).all() for v in after.values()), "a non-finite weight got in"
    # iterations 0 and 1 trained the weights ...
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    assert changed, "the two good iterations left every weight as it was"
    # ... and the NaN iterations changed nothing: the weights are the iteration-2 checkpoint's
    saved_agent = saved["learners"]["llm_0"]["agent"]
    assert saved_agent.keys() == after.keys()
    moved = [k for k, v in after.items() if not torch.equal(v, saved_agent[k])]
    assert not moved, f"weights changed after the last good checkpoint: {moved[:3]}"


def test_mixed_algorithms_and_competitive_rewards(tmp_path):
    cfg = cfg_for("iterations=2", "algos.llm_1.name=reinforce", "setting.reward_matrix=competitive")
    Trainer(cfg, tmp_path).fit()
    r = read_jsonl(tmp_path / "metrics.jsonl")[-1]
    assert (r["agent/llm_0/algo"], r["agent/llm_1/algo"]) == ("ppo", "reinforce")
    assert "agent/llm_0/loss_value" in r and "agent/llm_1/loss_value" not in r
    assert r["agent/llm_0/reward"] == pytest.approx(
        r["agent/llm_0/task_reward"] - r["agent/llm_1/task_reward"]
    )


def test_group_sizes_must_agree_before_a_model_loads():
    from seqmarl.errors import ConfigError

    with pytest.raises(ConfigError, match="algos.llm_1.params.group_size: agents ask for"):
        cfg_for("algo=grpo", "algos.llm_1.name=rloo", "algos.llm_1.params.group_size=3")


def test_others_reward_correlation():
    import numpy as np

    from seqmarl.train.trainer import _others_correlation

    rng = np.random.default_rng(0)
    shared = rng.normal(size=200)  # e.g. the prompt's part of every agent's reward
    rewards = np.stack([shared + 0.1 * rng.normal(size=200), shared, -shared], axis=1)
    # three agents: agent 0 against the mean of a copy of its shared part and fresh noise
    mixed = np.stack([rewards[:, 0], shared, rng.normal(size=200)], axis=1)
    assert 0.5 < _others_correlation(mixed, 0) < 0.9  # ~ 1/sqrt(2)
    assert _others_correlation(rewards, 0) is None  # agents 1 and 2 cancel: constant mean
    assert _others_correlation(rewards[:, :2], 0) > 0.99
    assert _others_correlation(rewards[:, [0, 2]], 1) < -0.99
    assert _others_correlation(rewards[:, :1], 0) is None  # one agent
    assert _others_correlation(np.ones((5, 2)), 0) is None  # constant: undefined
