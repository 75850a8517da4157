"""agents.update=mixed: every adapter on a base in one forward and backward, same gradients."""

import dataclasses
import logging

import pytest
import torch

import seqmarl.agents.sampling as sampling
from seqmarl.agents.lora_rows import blocks, supported
from seqmarl.agents.shared import evaluate_together
from seqmarl.algos import ALGORITHMS
from seqmarl.run.sinks import read_jsonl
from seqmarl.train.learner import Learner
from seqmarl.train.mixed import group_learners, update_together
from seqmarl.train.trainer import Trainer
from tests.agents.test_learning import ragged_completions
from tests.test_trainer import cfg_for, strip_timing

IDS = ("llm_0", "llm_1", "llm_2")
#: agent -> (algorithm, its settings): three algorithms, three learning rates, one schedule
AGENTS = {
    "llm_0": ("ppo", {"lr": 3e-2, "adaptive_kl": False}),
    "llm_1": ("grpo", {"lr": 1e-2, "group_size": 3, "entropy_coef": 0.01}),
    "llm_2": ("rloo", {"lr": 5e-3, "group_size": 3, "grad_accum_steps": 2, "max_grad_norm": 0.5}),
}


def build(make_pool):
    """Three agents on one base: PPO (value head), GRPO and RLOO, each its own rows."""
    pool = make_pool("shared", agent_ids=IDS, value_heads=("llm_0",), stop_at_eos=False)
    with torch.no_grad():  # adapters that differ (B starts at zero: every agent the same)
        gen = torch.Generator().manual_seed(1)
        for name, p in pool.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    learners = {}
    for k, (a, (name, params)) in enumerate(AGENTS.items()):
        cfg = ALGORITHMS.get(name).make_config(epochs=2, minibatch_size=6, **params)
        learners[a] = Learner(pool[a], name, cfg, seed=k)
    # the same four prompts for llm_1 and llm_2, three answers each: the prompt pass is shared
    # within an agent's rows, never across agents (their adapters differ)
    prompts = [p for p in ("ab", "cdefg", "h", "ijklmnop") for _ in range(3)]
    rows = {}
    for k, a in enumerate(IDS):
        own = prompts if k else [f"q{i}" * (1 + i % 4) for i in range(12)]
        c = ragged_completions(pool, a, prompts=own, seed=k)
        rewards = torch.linspace(-1, 1, 12).roll(k)
        rows[a] = (c, learners[a].make_batch(c, rewards, torch.arange(12) // 3))
    return pool, learners, rows


def recorded_steps(learners):
    """Record each optimizer step's (clipped) gradients, then take the step."""
    grads = {a: [] for a in learners}
    for a, lr in learners.items():
        real = lr.optimizer.step

        def step(real=real, lr=lr, seen=grads[a]):
            seen.append([p.grad.clone() for p in lr.agent.parameters() if p.grad is not None])
            real()

        lr.optimizer.step = step
    return grads


@pytest.mark.parametrize("engine", ["blocks", "peft"])
def test_mixed_step_gives_each_adapter_its_own_gradient(make_pool, engine, monkeypatch):
    """PPO, GRPO and RLOO agents on one base, different learning rates, two epochs of two
    minibatches: the mixed update gives every adapter the gradients (and so the weights and
    the metrics) of its agent-by-agent update, to float rounding; with seqmarl's per-block
    LoRA branches and with peft's mixed-adapter batch."""
    monkeypatch.setattr(sampling, "MIXED_ENGINE", engine)
    _, alone, rows = build(make_pool)
    grads_alone = recorded_steps(alone)
    metrics_alone = {a: alone[a].update(*rows[a]) for a in IDS}

    _, together, rows = build(make_pool)
    assert group_learners(together, {a: 12 for a in IDS}) == ([list(IDS)], {})
    grads_together = recorded_steps(together)
    metrics_together = dict(
        zip(
            IDS,
            update_together(
                [together[a] for a in IDS], [rows[a][0] for a in IDS], [rows[a][1] for a in IDS]
            ),
            strict=True,
        )
    )
    for a in IDS:
        assert len(grads_alone[a]) == len(grads_together[a]) == 4  # 2 epochs x 2 minibatches
        for step_a, step_b in zip(grads_alone[a], grads_together[a], strict=True):
            assert len(step_a) == len(step_b) > 0
            for x, y in zip(step_a, step_b, strict=True):
                assert x.abs().max() > 0
                torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-4)
        # Adam divides by the gradient's running scale: a rounding-sized gradient difference
        # on a near-zero gradient moves a weight by up to ~1e-5 over the four steps
        for x, y in zip(alone[a].agent.parameters(), together[a].agent.parameters(), strict=True):
            torch.testing.assert_close(x, y, atol=2e-5, rtol=1e-4)
        assert metrics_alone[a].keys() == metrics_together[a].keys()
        for k, v in metrics_alone[a].items():
            assert metrics_together[a][k] == pytest.approx(v, rel=1e-4, abs=1e-6), (a, k)
    assert metrics_together["llm_0"]["loss_value"] > 0  # PPO's value head trained too


def test_mixed_forward_matches_each_agents_own(make_pool):
    pool, _, rows = build(make_pool)
    parts = [rows[a][0] for a in IDS]
    outs = evaluate_together(
        [pool[a] for a in IDS], parts, with_values=[True, False, False], with_entropy=[1, 1, 0]
    )
    for a, part, out in zip(IDS, parts, outs, strict=True):
        own = pool[a].evaluate(part, with_values=a == "llm_0", with_entropy=True)
        torch.testing.assert_close(out.logprobs, own.logprobs, atol=1e-5, rtol=1e-5)
        if a == "llm_0":
            torch.testing.assert_close(out.values, own.values, atol=1e-5, rtol=1e-5)
        if a != "llm_2":
            torch.testing.assert_close(out.entropy, own.entropy, atol=1e-5, rtol=1e-5)


def test_blocks_of_rows_and_the_layers_they_serve(make_pool):
    assert blocks(["a", "a", "b", "c", "c", "a"]) == [
        ("a", 0, 2),
        ("b", 2, 3),
        ("c", 3, 5),
        ("a", 5, 6),
    ]
    assert supported(make_pool("shared", arch="gpt2").model)  # Conv1D layers too
    assert not supported(make_pool("separate").model)  # no adapter at all


def test_agents_that_cannot_mix_update_alone(make_pool):
    pool, learners, _ = build(make_pool)
    full = ALGORITHMS.get("rloo").make_config(kl_estimator="full", kl_mode="loss")
    learners["llm_2"] = Learner(pool["llm_2"], "rloo", full)
    groups, alone = group_learners(learners, {a: 12 for a in IDS})
    assert groups == [["llm_0", "llm_1"]] and "kl_mode=loss" in alone["llm_2"]
    # one minibatch fewer per epoch: a schedule of its own
    groups, alone = group_learners(learners, {"llm_0": 12, "llm_1": 6})
    assert groups == [] and set(alone) == {"llm_0", "llm_1"}
    copies = make_pool("separate", agent_ids=("llm_0", "llm_1"))
    sep = {a: Learner(copies[a], "reinforce") for a in ("llm_0", "llm_1")}
    assert "shared base" in group_learners(sep, {"llm_0": 4, "llm_1": 4})[1]["llm_0"]


MIXED = ["agents.update=mixed", "algo=rloo", "algo.params.group_size=2"]


def test_mixed_run_resumed_after_a_crash_equals_the_uninterrupted_one(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(Trainer, "_finish", lambda self: self.summary([]))  # no final plots
    import seqmarl.train.trainer as trainer_mod

    cfg = cfg_for("iterations=4", *MIXED)
    calls = []
    real = trainer_mod.learn_together

    def spy(learners, *args):
        calls.append([lr.agent.agent_id for lr in learners])
        return real(learners, *args)

    monkeypatch.setattr(trainer_mod, "learn_together", spy)
    with caplog.at_level(logging.WARNING, logger="seqmarl"):
        Trainer(cfg, tmp_path / "full").fit()
    assert "updates alone" not in caplog.text
    assert calls == [["llm_0", "llm_1"]] * 4  # both CORY agents together, every iteration
    full = strip_timing(read_jsonl(tmp_path / "full" / "metrics.jsonl"))

    crashed = Trainer(cfg, tmp_path / "crash")
    real_step = Trainer.step

    def crash_at_3(self):
        if self.iteration == 3:
            raise RuntimeError("simulated crash")
        return real_step(self)

    monkeypatch.setattr(Trainer, "step", crash_at_3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.fit()
    monkeypatch.setattr(Trainer, "step", real_step)
    resumed = Trainer(cfg, tmp_path / "crash", resume=True)
    assert resumed.iteration == 2
    resumed.fit()
    assert strip_timing(read_jsonl(tmp_path / "crash" / "metrics.jsonl")) == full


def test_a_fall_back_is_logged_once(tmp_path, caplog):
    cfg = cfg_for("iterations=2", "agents.update=mixed", "agents.mode=separate")
    with caplog.at_level(logging.WARNING, logger="seqmarl"):
        Trainer(cfg, tmp_path).fit()
    lines = [r.getMessage() for r in caplog.records if "updates alone" in r.getMessage()]
    assert len(lines) == 2 and all("shared base" in m for m in lines)  # one per agent


def test_a_bad_update_mode_is_one_line():
    from seqmarl.errors import ConfigError

    with pytest.raises(ConfigError, match=r"agents\.update.*'per_agent' or 'mixed'"):
        cfg_for("agents.update=together")


def test_a_nonfinite_loss_skips_only_its_own_agents_step(make_pool):
    _, learners, rows = build(make_pool)
    bad = learners["llm_1"]
    real = bad.algorithm.loss

    def nan_loss(*args, **kw):
        out = real(*args, **kw)
        return dataclasses.replace(out, loss=out.loss * float("nan"))

    bad.algorithm = dataclasses.replace(bad.algorithm, loss=nan_loss)
    before = {a: [p.detach().clone() for p in learners[a].agent.parameters()] for a in IDS}
    metrics = update_together(
        [learners[a] for a in IDS], [rows[a][0] for a in IDS], [rows[a][1] for a in IDS]
    )
    assert bad.skipped_steps == 4 and metrics[1]["skipped_steps"] == 4
    for a, m in zip(IDS, metrics, strict=True):
        moved = any(
            not torch.equal(x, y) for x, y in zip(before[a], learners[a].agent.parameters())
        )
        assert moved == (a != "llm_1"), a
        if a != "llm_1":
            assert "skipped_steps" not in m
