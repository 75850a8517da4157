"""Matches: returns per seat in games of any size, and a round robin that keeps its games."""

import json
from pathlib import Path

import numpy as np
import pytest

from seqmarl.cli import main
from seqmarl.envs.registration import ENVS, register_pettingzoo
from tests.fake_games import DigitDuel, ThreeRoles

TINY = [
    "model=embedded:tiny-llama",
    "setting.reward_matrix=independent",
    "algo=reinforce",
    "batch_size=2",
    "iterations=1",
    "agents.generation.max_new_tokens=2",
    "train.progress=false",
    "train.tensorboard=false",
]


@pytest.fixture(scope="module")
def three_run(tmp_path_factory):
    register_pettingzoo("three-roles-v0", ThreeRoles, overwrite=True)
    out = tmp_path_factory.mktemp("three") / "run"
    try:
        args = ["train", *TINY, "env=three-roles-v0", "setting.num_agents=3", "--out", str(out)]
        assert main(args) == 0
        yield out
    finally:
        ENVS._items.pop("three-roles-v0", None)


def test_eval_opponent_reports_returns_per_seat_in_a_three_player_game(three_run, capsys):
    capsys.readouterr()
    assert main(["eval", str(three_run), "--opponent", "random", "--prompts", "7"]) == 0
    out = capsys.readouterr().out
    match = json.loads((three_run / "eval" / "match.json").read_text())["agents"]["llm_0"]
    # llm_0 takes each seat in turn (7 games: 3, 2, 2); role k pays k + 1, whoever plays it
    assert [match[f"seat_{k}"]["games"] for k in range(3)] == [3, 2, 2]
    for k in range(3):
        row = match[f"seat_{k}"]
        assert row["return"] == {"mean": k + 1.0, "se": 0.0}
        others = [r + 1.0 for r in range(3) if r != k]
        assert row["opponent_return"]["mean"] == pytest.approx(np.mean(others))
        assert row["win"]["mean"] == (k == 2) and row["loss"]["mean"] == (k != 2)
    both = match["both"]
    returns = np.array([1.0] * 3 + [2.0] * 2 + [3.0] * 2)
    assert both["games"] == 7
    assert both["return"]["mean"] == pytest.approx(returns.mean())
    assert both["return"]["se"] == pytest.approx(returns.std(ddof=1) / np.sqrt(7))
    assert both["win"]["mean"] == pytest.approx(2 / 7)
    assert "seat_2  return 3.000±0.000 (opponent 1.500±0.000)  win 1.000±0.000" in out


@pytest.fixture(scope="module")
def league_run(tmp_path_factory):
    """A run with four model contenders (llm_0, snapshot:0, snapshot:1, base) and random."""
    register_pettingzoo("digit-duel-rr-v0", DigitDuel, overwrite=True)
    out = tmp_path_factory.mktemp("league") / "run"
    league = ["league.opponents=[llm_1]", "league.fixed=[random]", "league.snapshot_every=1"]
    try:
        args = ["train", *TINY, "env=digit-duel-rr-v0", *league, "iterations=2", "--out", str(out)]
        assert main(args) == 0
        yield out
    finally:
        ENVS._items.pop("digit-duel-rr-v0", None)


def test_a_round_robin_stopped_by_sigterm_continues_to_the_same_ratings(
    league_run, tmp_path, capsys, monkeypatch
):
    import os
    import signal

    import seqmarl.eval.roundrobin as rr

    base = ["eval", str(league_run), "--round-robin", "--prompts", "4", "--batch-games", "8"]
    assert main([*base, "--out", str(tmp_path / "whole")]) == 0
    whole = json.loads((tmp_path / "whole" / "ratings.json").read_text())
    assert len(whole["pairs"]) == 10  # 5 contenders, 2 pairs (8 games) a group
    assert len({p["score"]["mean"] for p in whole["pairs"].values()}) > 1  # games that differ
    real, calls, stop_at = rr.play_pairs, [], [3]

    def stop_in_the_third_group(*args, **kwargs):
        calls.append(kwargs["stream"])
        if len(calls) in stop_at:  # as a scheduler would: SIGTERM while the group plays
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(rr, "play_pairs", stop_in_the_third_group)
    split = tmp_path / "split"
    capsys.readouterr()
    assert main([*base, "--out", str(split)]) == 128 + signal.SIGTERM
    err = capsys.readouterr().err.strip().splitlines()
    partial = split / "ratings.partial.json"
    assert err == [
        f"seqmarl: round robin stopped by SIGTERM: 4 of 10 pairs kept in {partial}; run the "
        "same command again to continue"
    ]
    assert len(json.loads(partial.read_text())["pairs"]) == 4
    assert not (split / "ratings.json").exists()
    # other settings: refused in one line, the kept games untouched
    assert main([*base[:-2], "--batch-games", "4", "--out", str(split)]) == 2
    assert "holds a stopped round robin with other settings (groups)" in capsys.readouterr().err
    calls.clear()
    stop_at.clear()
    assert main([*base, "--out", str(split)]) == 0
    assert calls == [4, 6, 8]  # the groups of pairs 4.. only, with their own streams
    assert "continuing a stopped round robin: 4 of 10 pairs kept" in capsys.readouterr().err
    resumed = json.loads((split / "ratings.json").read_text())
    assert resumed["ratings"] == whole["ratings"] and resumed["pairs"] == whole["pairs"]
    assert not partial.exists()


def test_pairs_played_together_make_one_generation_per_contender_per_turn(league_run):
    """Three pairs with llm_0: its rows of every pair and seat answered in one call a turn."""
    from seqmarl.agents.pool import AgentPool
    from seqmarl.config import load_config
    from seqmarl.eval.matches import Contenders, play_pairs
    from seqmarl.method.settings import agent_ids

    cfg = load_config(league_run / "config.yaml", [], run_dir=league_run)
    pool = AgentPool.from_config(cfg.agents, agent_ids(4), seed=cfg.train.seed)
    contenders = Contenders(league_run, cfg, pool)
    pairs = [("llm_0", "snapshot:0"), ("llm_0", "base"), ("llm_0", "random")]
    calls = {}
    players = contenders.players(["llm_0", "snapshot:0", "base"])
    for name, policy in players.items():
        real = policy.sample

        def counted(obs, *a, _real=real, _name=name, **kw):
            calls.setdefault(_name, []).append(len(obs))
            return _real(obs, *a, **kw)

        policy.sample = counted
    rows = play_pairs(contenders, pairs, games=6, seed=5)  # (the fixture keeps the env)
    # one move each: turn 1 is seat 0 of every game, turn 2 seat 1; llm_0 is in both seats
    # (3 games each) of all three pairs, so 9 rows a turn, two calls in all
    assert calls["llm_0"] == [9, 9]
    assert calls["snapshot:0"] == calls["base"] == [3, 3]
    assert [len(r) for r in rows] == [6, 6, 6]
    assert [sum(g["seat"] == 0 for g in r) for r in rows] == [3, 3, 3]


def test_a_second_signal_while_saving_ends_at_once_with_the_pairs_on_disk(
    league_run, tmp_path, capsys, monkeypatch
):
    import os
    import signal

    import seqmarl.eval.roundrobin as rr

    real, writes = rr.write_atomic, []

    def interrupted_write(path, text):
        writes.append(path)
        if len(writes) == 2:  # the first stop is noted while saving; a second one aborts
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
        return real(path, text)

    monkeypatch.setattr(rr, "write_atomic", interrupted_write)
    out = tmp_path / "eval"
    args = ["eval", str(league_run), "--round-robin", "--prompts", "4", "--batch-games", "8"]
    capsys.readouterr()
    # a terminal's SIGINT handler, whatever the suite inherited (nohup leaves it ignored)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert main([*args, "--out", str(out)]) == 128 + signal.SIGINT
    finally:
        signal.signal(signal.SIGINT, inherited)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("seqmarl: round robin stopped by SIGINT: 2 of 10 pairs kept in ")
    assert len(json.loads((out / "ratings.partial.json").read_text())["pairs"]) == 2


def test_eval_opponent_may_be_another_model(three_run, tmp_path, capsys):
    """``--opponent <folder>``: an untrained model on its own base and tokenizer plays."""
    from seqmarl.config import load_config
    from seqmarl.eval.matches import Contenders
    from tests.tiny_models import save_padded_model

    folder = save_padded_model(tmp_path / "gpt2", "gpt2")  # pads with 257, the run's llama 256
    capsys.readouterr()
    assert main(["eval", str(three_run), "--opponent", str(folder), "--prompts", "4"]) == 0
    out = capsys.readouterr().out
    assert f"llm_0 vs {folder}: 4 games" in out
    match = json.loads(Path(out.split("wrote ")[-1].strip()).read_text())
    assert match["opponent"] == str(folder)
    rows = match["agents"]["llm_0"]
    assert [rows[f"seat_{k}"]["return"]["mean"] for k in range(3)] == [1.0, 2.0, 3.0]
    # it sat on its own base: the GPT-2's tokenizer, not the run's
    cfg = load_config(three_run / "config.yaml")
    contenders = Contenders(three_run, cfg)
    assert contenders.is_model_source(str(folder)) and not contenders.scripted(str(folder))
    assert contenders._source(str(folder)).tokenizer.pad_token_id == 257
    # a model that does not load is one line, exit 2
    capsys.readouterr()
    assert main(["eval", str(three_run), "--opponent", "nobody/no-such-model"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nobody/no-such-model" in err[0]
