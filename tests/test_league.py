"""The league: frozen opponents, reproducible draws, exact resume; matches and their statistics."""

import math

import numpy as np
import pytest
import torch

from seqmarl.config import LeagueConfig, load_config
from seqmarl.envs.registration import ENVS, register_pettingzoo
from seqmarl.eval.matches import summarize
from seqmarl.run.checkpoint import latest_checkpoint, load_checkpoint
from seqmarl.run.sinks import read_jsonl
from seqmarl.train.league import League, game_outcomes
from seqmarl.train.trainer import Trainer
from tests.fake_games import DigitDuel  # one answer each; more digits wins (+1/-1), zero-sum

RUN = [
    "model=embedded:tiny-llama",
    "env=digit-duel-v0",
    "setting.reward_matrix=independent",
    "setting.exchange_every=1",
    "algo=reinforce",
    "batch_size=4",
    "agents.generation.max_new_tokens=3",
    "train.checkpoint_every=1",
    "train.progress=false",
    "train.tensorboard=false",
    "league.opponents=[llm_1]",
]


@pytest.fixture(autouse=True)
def digit_duel():
    register_pettingzoo("digit-duel-v0", DigitDuel, overwrite=True)
    yield
    ENVS._items.pop("digit-duel-v0", None)


def test_snapshot_opponents_receive_no_gradients_and_stay_fixed(tmp_path):
    cfg = load_config(None, [*RUN, "league.snapshot_every=1", "iterations=3"])
    trainer = Trainer(cfg, tmp_path / "run")
    opponent, learner = trainer.pool["llm_1"], trainer.pool["llm_0"]
    assert "llm_1" not in trainer.learners
    assert all(not p.requires_grad for p in opponent.parameters())
    for it in range(3):
        before = {k: v.clone() for k, v in learner.state_dict().items()}
        trainer.step()
        trainer.iteration += 1
        # the opponent played the learner as it was at the start of this iteration
        drawn = trainer.league.current["llm_1"]
        assert drawn == f"snapshot:{it}"
        theirs = {k.replace(".llm_1.", ".llm_0."): v for k, v in opponent.state_dict().items()}
        assert set(theirs) == set(before)
        assert all(torch.equal(theirs[k], before[k]) for k in before)
        assert all(p.grad is None for p in opponent.parameters())
        # ... while the learner moved
        after = learner.state_dict()
        assert any(not torch.equal(after[k], before[k]) for k in before)
    # a snapshot in the league is a copy: the learner's steps never reach it
    snap0 = trainer.league.snapshots[0]
    first = {k: v for k, v in snap0.items()}
    assert all(torch.equal(first[k], snap0[k]) for k in first)
    assert not all(
        torch.equal(snap0[k], learner.state_dict()[k]) for k in snap0 if k in learner.state_dict()
    )


def _league_run(out, iterations, *extra, resume=False):
    cfg = load_config(
        None,
        [
            *RUN,
            "league.snapshot_every=2",
            "league.fixed=[base,random]",
            "league.sampling=uniform",
            f"iterations={iterations}",
            *extra,
        ],
    )
    trainer = Trainer(cfg, out, resume=resume)
    trainer.fit()
    return trainer


def _no_times(records):
    return [
        {k: v for k, v in r.items() if not k.startswith(("time/", "tokens_per_s"))} for r in records
    ]


def test_league_draws_are_reproducible_and_resume_bit_for_bit(tmp_path):
    whole = _league_run(tmp_path / "whole", 5)
    again = _league_run(tmp_path / "again", 5)
    drawn = [r["league/llm_1/snapshot"] for r in read_jsonl(tmp_path / "whole" / "metrics.jsonl")]
    assert drawn == [
        r["league/llm_1/snapshot"] for r in read_jsonl(tmp_path / "again" / "metrics.jsonl")
    ]
    assert len(set(drawn)) > 1  # uniform over base, random and snapshots: not one every time
    _league_run(tmp_path / "split", 3)
    resumed = _league_run(tmp_path / "split", 5, resume=True)
    a = _no_times(read_jsonl(tmp_path / "whole" / "metrics.jsonl"))
    b = _no_times(read_jsonl(tmp_path / "split" / "metrics.jsonl"))
    assert a == b
    for t in (again, resumed):
        assert t.league.stats == whole.league.stats
        assert sorted(t.league.snapshots) == sorted(whole.league.snapshots) == [0, 2, 4]
        for it, snap in whole.league.snapshots.items():
            assert all(torch.equal(snap[k], t.league.snapshots[it][k]) for k in snap)
    w = whole.pool["llm_0"].state_dict()
    r = resumed.pool["llm_0"].state_dict()
    assert all(torch.equal(w[k], r[k]) for k in w)
    # the league's state is in the checkpoint (tensors and counts, loadable weights-only)
    state = load_checkpoint(latest_checkpoint(tmp_path / "split" / "checkpoints"))
    assert sorted(state["league"]["snapshots"]) == [0, 2, 4]
    assert state["league"]["stats"] == whole.league.stats


def test_prioritized_sampling_weights_by_hand():
    cfg = LeagueConfig(opponents=["llm_1"], fixed=["base", "random"], sampling="prioritized")

    class Agent:
        def parameters(self):
            return []

        def state_dict(self):
            return {}

    league = League(cfg, {"llm_0": Agent(), "llm_1": Agent()}, ("llm_0", "llm_1"))
    league.stats = {"base": [10.0, 8.0, 0.0]}  # 8 wins of 10; random never played
    # win rates with one virtual draw: base (8 + 0.5) / 11, random 0.5 / 1
    w_base, w_random = 1 - 8.5 / 11, 1 - 0.5
    expect = np.array([w_base, w_random]) / (w_base + w_random)
    assert np.allclose(league.weights(), expect)
    cfg2 = cfg.model_copy(update={"sampling": "latest"})
    league.cfg = cfg2
    assert league.weights().tolist() == [0.0, 1.0]


def test_outcomes_and_match_statistics_by_hand():
    rewards = np.array([[1.0, -1.0], [0.0, 0.0], [-1.0, 1.0], [1.0, -1.0]])
    assert game_outcomes(rewards, 0, 1).tolist() == [1.0, 0.5, 0.0, 1.0]
    rows = [
        {"seat": 0, "score": 1.0, "moves": 3, "invalid": 1.0, "forfeit": 0.0, "length": 5},
        {"seat": 0, "score": 0.5, "moves": 4, "invalid": 0.0, "forfeit": 0.0, "length": 9},
        {"seat": 1, "score": 0.0, "moves": 2, "invalid": 2.0, "forfeit": 1.0, "length": 3},
        {"seat": 1, "score": 1.0, "moves": 3, "invalid": 0.0, "forfeit": 0.0, "length": 6},
    ]
    s = summarize(rows)
    assert s["both"]["games"] == 4
    assert s["both"]["win"] == {"mean": 0.5, "se": math.sqrt(0.5 * 0.5 / 4)}
    assert s["both"]["draw"]["mean"] == 0.25 and s["both"]["loss"]["mean"] == 0.25
    assert s["seat_0"]["win"]["mean"] == 0.5 and s["seat_1"]["loss"]["mean"] == 0.5
    # illegal moves per move: 3 refused of 12 moves
    assert s["both"]["illegal_move_rate"]["mean"] == 3 / 12
    assert s["both"]["forfeit"]["mean"] == 0.25
    lengths = np.array([5, 9, 3, 6.0])
    assert s["both"]["length"]["mean"] == lengths.mean()
    assert math.isclose(s["both"]["length"]["se"], lengths.std(ddof=1) / 2)


def test_a_league_without_opponents_to_draw_is_one_line():
    from seqmarl.errors import ConfigError

    with pytest.raises(ConfigError, match="no opponent to draw"):
        load_config(None, RUN)
    with pytest.raises(ConfigError, match="every agent is an opponent"):
        load_config(None, [*RUN, "league.opponents=[llm_0,llm_1]", "league.fixed=[random]"])
    with pytest.raises(ConfigError, match="unknown scripted player|Registered scripted"):
        load_config(None, [*RUN, "league.fixed=[rnadom]"])


def test_a_league_on_vllm_serves_each_drawn_snapshot_as_an_adapter(vllm_tiny_dir, tmp_path):
    from tests.conftest import VLLM_TEST_SETTINGS, require_vllm

    require_vllm()
    cfg = load_config(
        None,
        [
            *(o for o in RUN if not o.startswith("model=")),
            f"model={vllm_tiny_dir}",
            "agents.generator=vllm",
            *(f"agents.vllm.{k}={v}" for k, v in VLLM_TEST_SETTINGS.items()),
            "league.snapshot_every=1",
            "iterations=2",
        ],
    )
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.fit()
    opponent = trainer.pool["llm_1"]
    # each iteration's snapshot was loaded into the slot and pushed (adapter only) before it
    # generated: the engine serves the version the slot holds
    assert opponent.version >= 2 and opponent._served == opponent.version
    theirs = {k.replace(".llm_1.", ".llm_0."): v for k, v in opponent.state_dict().items()}
    snap = trainer.league.snapshots[1]
    assert all(torch.equal(theirs[k], snap[k]) for k in snap)
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["league/llm_1/snapshot"] for r in rows] == [0.0, 1.0]
    assert all(r["agent/llm_0/sampler/mismatch_max"] < 1e-2 for r in rows)


def test_a_scripted_player_is_built_once_per_run_from_an_int_seed(tmp_path):
    """``factory(seed)``: one int, as documented; the player lives across draws and resumes."""
    from seqmarl.agents.scripted import SCRIPTED, RandomMovePlayer

    seeds = []

    def counting(seed):
        seeds.append(seed)
        return RandomMovePlayer(seed)

    SCRIPTED.register("counting-test", counting)
    try:
        extra = ["league.fixed=[counting-test]", "league.snapshot_every=0"]
        whole = _league_run(tmp_path / "whole", 4, *extra)
        assert len(seeds) == 1 and type(seeds[0]) is int  # an int, not numpy
        _league_run(tmp_path / "split", 2, *extra)
        resumed = _league_run(tmp_path / "split", 4, *extra, resume=True)
    finally:
        SCRIPTED._items.pop("counting-test", None)
    assert seeds == [seeds[0]] * 3  # once per run (and per process), from the same seed
    a = _no_times(read_jsonl(tmp_path / "whole" / "metrics.jsonl"))
    assert a == _no_times(read_jsonl(tmp_path / "split" / "metrics.jsonl"))
    key = "llm_1/counting-test"
    assert whole.league.scripted_state()[key] == resumed.league.scripted_state()[key]


def test_a_stop_while_a_scripted_player_plays_rewinds_its_stream(tmp_path, monkeypatch):
    """The abandoned iteration's moves are taken back from the player's stream too."""
    import os
    import signal

    from seqmarl.agents.scripted import RandomMovePlayer
    from seqmarl.errors import Interrupted

    # random every iteration; the checkpoint is the one written on the way out of the stop
    extra = ["league.fixed=[random]", "league.snapshot_every=0", "train.checkpoint_every=10"]
    _league_run(tmp_path / "whole", 4, *extra)
    real, calls = RandomMovePlayer.act, []

    def act(self, observations):
        out = real(self, observations)  # its stream has moved
        calls.append(len(observations))
        if len(calls) == 3:  # during iteration 2's play
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(RandomMovePlayer, "act", act)
    with pytest.raises(Interrupted, match="after iteration 2 of 4"):
        _league_run(tmp_path / "split", 4, *extra)
    monkeypatch.setattr(RandomMovePlayer, "act", real)
    _league_run(tmp_path / "split", 4, *extra, resume=True)
    a = _no_times(read_jsonl(tmp_path / "whole" / "metrics.jsonl"))
    assert a == _no_times(read_jsonl(tmp_path / "split" / "metrics.jsonl"))
