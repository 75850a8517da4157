"""The options a replay of the released CORY code needs, and causal credit (issue 14).

* ``setting.credit=causal`` / ``cory-causal``: agent i keeps C[i][j] r_j only for agents j
  seated at or after it, checked against the seat order over a role exchange and for N = 3;
* ``train.reset_on_exchange``: optimizer / KL controller / score statistics start afresh at a
  seat change and only there;
* ``agents.generation.shared_length``: one length draw per iteration for every seat;
* ``algo.params.reward_norm``: scale / whiten by running moments, as TRL's
  ``use_score_scaling`` / ``use_score_norm``.
"""

import numpy as np
import pytest
import torch

from seqmarl import envs
from seqmarl.algos import ALGORITHMS, AlgoState
from seqmarl.config import load_config
from seqmarl.errors import ConfigError
from seqmarl.method.settings import SETTINGS, credit_matrix, make_setting
from seqmarl.train.trainer import Trainer

from .test_trainer import cfg_for


def play(env, answers):
    """Play one episode; returns each agent's reward as PettingZoo's ``last()`` hands it out."""
    final = {}
    for agent in env.agent_iter():
        _, reward, term, trunc, _ = env.last()
        if term or trunc:
            final[agent] = reward
        env.step(None if term or trunc else answers[agent])
    return final


# ----------------------------------------------------------------------------- causal credit
def test_credit_matrix_drops_the_seats_before_each_agent():
    coef = np.arange(1.0, 10.0).reshape(3, 3)
    # agent 2 acts first, then agent 0, then agent 1: seat_of = [1, 2, 0]
    got = credit_matrix(coef, [1, 2, 0], "causal")
    expected = np.array(
        [
            [1.0, 2.0, 0.0],  # agent 0 (seat 1): keeps itself and agent 1 (seat 2)
            [0.0, 5.0, 0.0],  # agent 1 (last seat): only itself
            [7.0, 8.0, 9.0],  # agent 2 (first seat): everyone
        ]
    )
    assert np.array_equal(got, expected)
    assert np.array_equal(credit_matrix(coef, [1, 2, 0], "full"), coef)
    with pytest.raises(ConfigError, match="credit: unknown rule 'blame'; use one of full, causal"):
        credit_matrix(coef, [0, 1, 2], "blame")


def test_cory_causal_is_registered_and_masks_by_seat_over_a_role_exchange():
    assert "cory-causal" in SETTINGS.names()
    s = make_setting("cory-causal")
    assert (s.credit, s.num_agents, s.schedule.period) == ("causal", 2, 5)
    assert make_setting("cory").credit == "full"
    r = np.array([[1.0, 10.0]])  # llm_0's and llm_1's task rewards
    # iterations 0-4: llm_0 is the pioneer (keeps r0 + r1), llm_1 the observer (keeps r1)
    assert np.array_equal(s.mix(r, iteration=0), [[11.0, 10.0]])
    assert np.array_equal(s.mix(r, iteration=4), [[11.0, 10.0]])
    # after the exchange llm_1 leads: it keeps both, llm_0 only its own
    assert np.array_equal(s.mix(r, iteration=5), [[1.0, 11.0]])
    # full credit is CORY's r0 + r1 for both, whatever the seats
    assert np.array_equal(make_setting("cory").mix(r, iteration=5), [[11.0, 11.0]])
    # and this is the mixer the rollout credits with: the game a run builds shares it
    from seqmarl.config import TaskConfig
    from seqmarl.envs import build_game

    game = build_game(TaskConfig(env="arithmetic-v0"), s)
    assert game.mixer is s.mixer
    assert np.array_equal(game.mixer.mix(r, s.seat_agents(5)), [[1.0, 11.0]])


@pytest.mark.parametrize(
    "order", [["llm_0", "llm_1", "llm_2"], ["llm_2", "llm_0", "llm_1"], ["llm_1", "llm_2", "llm_0"]]
)
def test_causal_env_rewards_follow_the_seat_order_for_three_agents(order):
    env = envs.make("arithmetic-v0", setting=make_setting("cory-causal", num_agents=3))
    env.reset(seed=3, options={"seat_order": order})
    answers = {a: str(i) for i, a in enumerate(env.possible_agents)}
    answers[order[1]] = env.prompt.reference  # only the middle seat is right
    final = play(env, answers)
    task = dict(env.task_rewards)
    assert sorted(task.values()) == [0.0, 0.0, 1.0]
    for k, a in enumerate(order):  # seat k keeps the task rewards of seats k, k+1, ...
        assert env.trained_rewards[a] == pytest.approx(sum(task[b] for b in order[k:]))
        assert final[a] == pytest.approx(env.trained_rewards[a])


def test_causal_credit_keeps_the_matrix_weights_and_signs():
    env = envs.make(
        "arithmetic-v0",
        setting=make_setting("cory", num_agents=2, reward_matrix="competitive", credit="causal"),
    )
    env.reset(seed=0, options={"seat_order": ["llm_1", "llm_0"]})
    play(env, {"llm_1": env.prompt.reference, "llm_0": "no"})  # the pioneer llm_1 is right
    # llm_1 leads: 1 * r1 - 1 * r0 = 1; llm_0 follows: drops r1, keeps its own 0
    assert env.trained_rewards == {"llm_1": 1.0, "llm_0": 0.0}


def test_causal_envs_pass_the_env_checks():
    from seqmarl.envs.testing import check_env

    for n in (2, 3):
        setting = make_setting("cory-causal", num_agents=n)
        report = check_env(lambda s=setting: envs.make("arithmetic-v0", setting=s))
        assert report.passed, str(report)


def test_causal_credit_from_the_config_and_refused_for_plain_pettingzoo_envs():
    cfg = load_config(None, ["setting=cory", "setting.credit=causal"])
    assert cfg.setting.build().credit == "causal"
    assert load_config(None, ["setting=cory-causal"]).setting.build().credit == "causal"
    with pytest.raises(ConfigError, match="setting.credit"):
        load_config(None, ["setting=cory", "setting.credit=blame"])
    with pytest.raises(ConfigError, match="setting.credit: causal credit .* one round only"):
        load_config(None, ["setting=cory-causal", "task.rounds=2"])
    with pytest.raises(ValueError, match="one round only"):
        envs.make("arithmetic-v0", setting=make_setting("cory-causal"), rounds=2)
    from seqmarl.envs.registration import ENVS, register_pettingzoo
    from tests.fake_games import DigitGame  # a plain PettingZoo text env

    register_pettingzoo("digit-causal-v0", DigitGame, overwrite=True)
    try:
        with pytest.raises(ConfigError, match="credit=causal needs seqmarl's seat-ordered env"):
            envs.make("digit-causal-v0", setting=make_setting("cory-causal"))
    finally:
        ENVS._items.pop("digit-causal-v0", None)


def test_a_causal_run_trains_the_observer_on_its_own_reward(tmp_path):
    trainer = Trainer(cfg_for("setting=cory-causal", "iterations=1", "batch_size=4"), tmp_path)
    _, roll = trainer.step()
    task, trained = roll.task_rewards, roll.trained_rewards  # (B, N), agent-id order
    assert np.allclose(trained[:, 0], task[:, 0] + task[:, 1])  # llm_0 leads at iteration 0
    assert np.allclose(trained[:, 1], task[:, 1])
    assert torch.allclose(roll.returns["llm_1"], torch.tensor(task[:, 1], dtype=torch.float64))


# ------------------------------------------------------------------- resets at a seat change
def _adam_steps(learner):
    return sorted({int(v["step"]) for v in learner.optimizer.state_dict()["state"].values()})


def test_reset_on_exchange_starts_each_part_afresh_at_a_seat_change_only(tmp_path):
    cfg = cfg_for(
        "setting.exchange_every=2",
        "iterations=3",
        "batch_size=4",
        "algo.params.adaptive_kl=true",
        "algo.params.kl_coef=0.4",
        "algo.params.kl_horizon=10",
        "algo.params.reward_norm=whiten",
        "train.reset_on_exchange=[optimizer,kl,score_stats]",
    )
    trainer = Trainer(cfg, tmp_path)
    rows = 4  # one row per prompt and agent in a one-round game
    for it in range(3):
        trainer.step()
        trainer.iteration += 1
        for lr in trainer.learners.values():
            if it == 1:  # no seat change: everything carries on
                assert _adam_steps(lr) == [2]
                assert lr.state.reward_moments.count == 2 * rows
                assert lr.state.kl.value != 0.4
            if it == 2:  # seats changed before this update: one step on fresh state
                assert _adam_steps(lr) == [1]
                assert lr.state.reward_moments.count == rows
                # one update from 0.4 moves it by at most 0.2 * rows / horizon
                assert abs(lr.state.kl.value / 0.4 - 1) <= 0.2 * rows / 10 + 1e-12
    # the default keeps every agent's state through the exchange
    keep = Trainer(
        cfg_for("setting.exchange_every=2", "iterations=3", "batch_size=4"), tmp_path / "k"
    )
    for _ in range(3):
        keep.step()
        keep.iteration += 1
    assert all(_adam_steps(lr) == [3] for lr in keep.learners.values())


def test_reset_parts_one_at_a_time(tmp_path):
    cfg = cfg_for("algo.params.adaptive_kl=true", "algo.params.reward_norm=scale", "batch_size=4")
    trainer = Trainer(cfg, tmp_path)
    trainer.step()
    lr = trainer.learners["llm_0"]
    opt, kl_value, count = lr.optimizer, lr.state.kl.value, lr.state.reward_moments.count
    assert kl_value != lr.config.kl_coef and count == 4
    lr.reset(["score_stats"])
    assert lr.optimizer is opt and lr.state.kl.value == kl_value
    assert lr.state.reward_moments.count == 0
    lr.reset(["kl"])
    assert lr.state.kl.value == lr.config.kl_coef and lr.optimizer is opt
    lr.reset(["optimizer"])
    assert lr.optimizer is not opt and not lr.optimizer.state_dict()["state"]
    with pytest.raises(ConfigError, match="reset_on_exchange"):
        load_config(None, ["train.reset_on_exchange=[adam]"])


# ----------------------------------------------------------------------- one shared length
def _record_lengths(trainer, monkeypatch):
    seen = []
    for agent in trainer.pool.agents.values():
        original = agent.sample

        def spy(prompts, *, _orig=original, **kw):
            out = _orig(prompts, **kw)
            seen.append((kw.get("max_new_tokens"), int(out.response_mask.sum(1).max())))
            return out

        monkeypatch.setattr(agent, "sample", spy)
    return seen


@pytest.mark.parametrize("shared", [True, False])
def test_shared_length_gives_every_seat_the_same_draw(tmp_path, monkeypatch, shared):
    cfg = cfg_for(
        "agents.generation.min_new_tokens=1",
        "agents.generation.max_new_tokens=12",
        "agents.generation.stop_at_eos=false",
        f"agents.generation.shared_length={str(shared).lower()}",
        "batch_size=2",
    )
    trainer = Trainer(cfg, tmp_path)
    seen = _record_lengths(trainer, monkeypatch)
    limits = []
    for _ in range(6):
        seen.clear()
        trainer.step()
        trainer.iteration += 1
        given = [g for g, _ in seen]
        if shared:
            assert len(set(given)) == 1 and 1 <= given[0] <= 12
            assert all(n <= given[0] for _, n in seen)  # no response runs past the draw
            limits.append(given[0])
        else:
            assert given == [None, None]  # each seat's batch draws its own
    if shared:
        assert len(set(limits)) > 1  # a fresh draw each iteration


# ------------------------------------------------------------- score scaling and norm (TRL)
@pytest.mark.parametrize("norm", ["scale", "whiten"])
def test_reward_norm_matches_trls_running_score_scaling(norm):
    """TRL's use_score_scaling (/ std) and use_score_norm ((x - mean) / std) with the running
    moments of every score seen so far, updated with the batch first (unbiased std)."""
    from seqmarl.algos.base import normalize_rewards

    cfg = ALGORITHMS.get("ppo").make_config(reward_norm=norm)  # what PPO's advantages call
    state = AlgoState.from_config(cfg)
    seen = []
    for x in ([0.0, 10.0, 20.0, 30.0], [5.0, -5.0, 1.0, 2.0]):
        seen += x
        got = normalize_rewards(torch.tensor(x, dtype=torch.float64), cfg, state)
        mean, std = np.mean(seen), np.std(seen, ddof=1)
        expected = (np.array(x) - mean) / std if norm == "whiten" else np.array(x) / std
        assert np.allclose(got.numpy(), expected, atol=1e-5)


def test_length_cycle_replays_a_fixed_schedule(tmp_path, monkeypatch):
    cfg = cfg_for(
        "agents.generation.max_new_tokens=9",
        "agents.generation.min_new_tokens=4",
        "agents.generation.length_cycle=[9,7,4]",
        "batch_size=2",
    )
    trainer = Trainer(cfg, tmp_path)
    seen = _record_lengths(trainer, monkeypatch)
    for _ in range(4):
        trainer.step()
        trainer.iteration += 1
    assert [g for g, _ in seen] == [9, 9, 7, 7, 4, 4, 9, 9]  # two seats per iteration
    with pytest.raises(ConfigError, match=r"length_cycle: needs lengths in 1..max_new_tokens"):
        load_config(
            None, ["agents.generation.max_new_tokens=8", "agents.generation.length_cycle=[9]"]
        )
