"""TextArena games as registered envs (``textarena/<id>``): conformance and outcomes.

Skipped, with the reason, when the games extra (textarena) is not installed.
"""

import warnings

import numpy as np
import pytest

pytest.importorskip("textarena", reason="the games extra (seqmarl[games]) is not installed")

from pettingzoo.test import api_test, seed_test

from seqmarl import envs
from seqmarl.agents.scripted import RandomMovePlayer, listed_moves
from seqmarl.envs.game import AECGame
from seqmarl.envs.suites.textarena import TextArenaEnv
from seqmarl.envs.task import Prompt
from seqmarl.errors import ConfigError
from seqmarl.method.mixing import RewardMixer
from seqmarl.method.settings import coefficient_matrix

OFFLINE = ["TicTacToe-v0", "KuhnPoker-v0-short", "SimpleNegotiation-v0"]


@pytest.mark.parametrize("game", OFFLINE)
def test_pettingzoos_own_tests_and_check_env_pass(game):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        api_test(TextArenaEnv(game), num_cycles=100)
        seed_test(lambda: TextArenaEnv(game), num_cycles=100)
    report = envs.check_env(lambda: envs.make(f"textarena/{game}"), raise_on_failure=False)
    assert report.passed, str(report)


def test_check_env_from_the_command_line_passes(capsys):
    from seqmarl.cli import main

    assert main(["check-env", "textarena/TicTacToe-v0", "--cycles", "20"]) == 0
    assert "3/3: all checks passed" in capsys.readouterr().out


def _play(game, seats, moves):
    """Play ``moves`` (texts, in turn order) with ``seats``; the game's result."""
    coef = coefficient_matrix("independent", 2)
    g = AECGame(lambda: TextArenaEnv("TicTacToe-v0"), mixer=RewardMixer(coef, ("llm_0", "llm_1")))
    g.reset([Prompt("seed 3", meta={"seed": 3})], seats)
    it = iter(moves)
    while waiting := g.waiting():
        (agent, rows), *_ = waiting.items()
        g.act(agent, rows, [next(it)])
    return g.result()


@pytest.mark.parametrize("seats", [("llm_0", "llm_1"), ("llm_1", "llm_0")])
def test_a_scripted_episodes_rewards_equal_the_games_own_outcome(seats):
    # player_0 (O) takes the top row: 0, 1, 2; player_1 answers 3, 4
    moves = ["[0]", "[3]", "[1]", "[4]", "[2]"]
    res = _play("TicTacToe-v0", seats, moves)
    # the same moves on TextArena's own env, no seqmarl between
    import textarena as ta

    env = ta.make("TicTacToe-v0")
    env.reset(num_players=2, seed=3)
    for m in moves:
        done, _ = env.step(m)
    rewards, _ = env.close()
    assert done and rewards == {0: 1, 1: -1}
    # seats[k] plays player_k: the game's rewards land on whoever held the seat
    by_agent = {seats[0]: rewards[0], seats[1]: rewards[1]}
    assert res.outcome[0].tolist() == [by_agent["llm_0"], by_agent["llm_1"]]
    assert res.infos[0][seats[0]]["invalid_moves"] == 0


@pytest.mark.parametrize("seats", [("llm_0", "llm_1"), ("llm_1", "llm_0")])
def test_a_forfeit_by_invalid_moves_is_the_games_loss_and_counted(seats):
    # the second player refuses twice: TextArena lets one go, the second loses the game
    res = _play("TicTacToe-v0", seats, ["[4]", "hello", "[4]"])
    loser, winner = seats[1], seats[0]
    outcome = dict(zip(("llm_0", "llm_1"), res.outcome[0].tolist()))
    assert outcome == {winner: 1.0, loser: -1.0}
    assert res.infos[0][loser]["invalid_moves"] == 2
    assert res.infos[0][loser]["forfeit"] is True
    assert res.infos[0][winner]["forfeit"] is False


def test_an_invalid_move_penalty_is_paid_per_refused_move():
    env = TextArenaEnv("TicTacToe-v0", invalid_move_penalty=-0.25)
    env.reset(seed=0)
    env.step("no move here")
    assert env.rewards["player_0"] == -0.25 and env.agent_selection == "player_0"
    env.step("[4]")
    assert env.rewards["player_0"] == 0.0


def test_the_same_seed_plays_the_same_deal_however_envs_interleave():
    a, b = TextArenaEnv("KuhnPoker-v0-short"), TextArenaEnv("KuhnPoker-v0-short")
    a.reset(seed=11)
    b.reset(seed=11)
    import random

    random.seed(999)  # the global stream is not theirs
    for move in ["[check]", "[check]", "[bet]", "[call]"]:
        if a.terminations[a.agent_selection]:
            break
        a.step(move)
        random.random()
        b.step(move)
        assert a.observe(a.agent_selection) == b.observe(b.agent_selection)


def test_random_player_picks_listed_moves():
    obs = "Board\nAvailable Moves: '[0]', '[4]', '[8]'"
    assert listed_moves(obs) == ["[0]", "[4]", "[8]"]
    kuhn = "[GAME] Your available actions are: '[check]', '[bet]'"
    assert listed_moves(kuhn) == ["[check]", "[bet]"]
    player = RandomMovePlayer(seed=0)
    picks = player.act([obs] * 300)
    assert set(picks) == {"[0]", "[4]", "[8]"}
    assert abs(picks.count("[4]") / 300 - 1 / 3) < 0.1
    again = RandomMovePlayer(seed=0)
    assert again.act([obs] * 300) == picks
    assert player.act(["no moves at all"]) == [""]


@pytest.mark.parametrize(
    ("env_id", "says"),
    [
        ("textarena/Debate-v0", "needs the network or an API key"),
        ("textarena/Sudoku-v0", "not a game for two or more players"),
        ("textarena/TicTacToe-v9", "did you mean textarena/TicTacToe-v0"),
    ],
)
def test_games_that_cannot_run_here_are_one_line(env_id, says):
    with pytest.raises(ConfigError) as info:
        envs.ENVS.get(env_id)
    assert says in str(info.value) and "\n" not in str(info.value)


def test_a_game_that_imports_a_downloading_word_list_is_refused_before_it_downloads(
    monkeypatch,
):
    """SpellingBee's own folder is clean; the word list it imports calls nltk.download."""
    nltk = pytest.importorskip("nltk")
    from seqmarl.config import load_config

    def download(*args, **kwargs):
        raise AssertionError("nltk.download was called")

    monkeypatch.setattr(nltk, "download", download)
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["env=textarena/SpellingBee-v0", "model=embedded:tiny-llama"])
    text = str(info.value)
    assert "\n" not in text
    assert "needs the network or an API key" in text
    assert "envs/utils/word_lists.py, which the game imports: nltk.download(" in text


def test_the_cooperative_default_on_a_zero_sum_game_is_refused_before_training():
    from seqmarl.config import load_config

    with pytest.raises(ConfigError) as info:
        load_config(overrides=["env=textarena/TicTacToe-v0", "model=embedded:tiny-llama"])
    text = str(info.value)
    assert "zero-sum" in text and "reward_matrix=independent" in text
    ok = load_config(
        overrides=[
            "env=textarena/TicTacToe-v0",
            "model=embedded:tiny-llama",
            "setting.reward_matrix=competitive",
        ]
    )
    assert ok.task.env == "textarena/TicTacToe-v0"
    # the opponent's row may be anything: it does not learn
    ok = load_config(
        overrides=[
            "env=textarena/TicTacToe-v0",
            "setting.reward_matrix=[[1,0],[1,1]]",
            "league.opponents=[llm_1]",
            "league.fixed=[random]",
        ]
    )
    assert np.asarray(ok.setting.build().mixer.coef)[1].tolist() == [1.0, 1.0]


def test_train_against_a_league_then_eval_and_rate_from_the_command_line(tmp_path, capsys):
    import json

    from seqmarl.cli import main
    from seqmarl.run.sinks import read_jsonl

    run = tmp_path / "ttt"
    args = [
        "train",
        "model=embedded:tiny-llama",
        "env=textarena/TicTacToe-v0-train",
        "setting.reward_matrix=independent",
        "setting.exchange_every=1",
        "algo=reinforce",
        "algo.params.baseline=role",
        "batch_size=4",
        "iterations=3",
        "agents.generation.max_new_tokens=3",
        "task.observation_template=Move? {observation}\n[",
        "task.action_prefix=[",
        "task.kwargs.invalid_move_penalty=-0.5",
        "league.opponents=[llm_1]",
        "league.fixed=[random]",
        "league.snapshot_every=2",
        "league.sampling=uniform",
        "train.progress=false",
        "train.tensorboard=false",
        "--out",
        str(run),
    ]
    assert main(args) == 0
    rows = read_jsonl(run / "metrics.jsonl")
    assert len(rows) == 3
    for r in rows:
        assert "agent/llm_1/kl" not in r  # the opponent never learns
        assert r["agent/llm_0/seat"] == r["iteration"] % 2  # seats swap every iteration
        if r["agent/llm_0/turns"]:  # (a model opponent moving first may forfeit at once)
            assert 0.0 <= r["agent/llm_0/legal_move_rate"] <= 1.0
            assert 0.0 <= r["agent/llm_0/forfeit_rate"] <= 1.0  # TextArena forfeits a game
            assert f"agent/llm_0/adv_baseline_role{r['iteration'] % 2}" in r
    assert any(r["agent/llm_0/turns"] for r in rows)
    assert (run / "plots" / "game_curves.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    # the plain eval plays the league opponent's slot as the initial model
    assert main(["eval", str(run), "--prompts", "2"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--opponent", "random", "--prompts", "4"]) == 0
    out = capsys.readouterr().out
    assert "llm_0 vs random: 4 games" in out and "seat_0" in out and "seat_1" in out
    match = json.loads((run / "eval" / "match.json").read_text())
    both = match["agents"]["llm_0"]["both"]
    assert both["games"] == 4
    assert match["agents"]["llm_0"]["seat_0"]["games"] == 2
    assert math_close(both["win"]["mean"] + both["draw"]["mean"] + both["loss"]["mean"], 1.0)
    assert main(["eval", str(run), "--round-robin", "--prompts", "2"]) == 0
    out = capsys.readouterr().out
    ratings = json.loads((run / "eval" / "ratings.json").read_text())
    names = set(ratings["ratings"]["players"])
    assert names == {"llm_0", "snapshot:0", "snapshot:2", "base", "random"}
    assert (run / "eval" / "ratings.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "round robin of 5 contenders" in out
    # base against random: --agent takes any contender
    assert (
        main(["eval", str(run), "--agent", "base", "--opponent", "random", "--prompts", "2"]) == 0
    )
    assert "base vs random: 2 games" in capsys.readouterr().out
    # an opponent the run does not have: one line, exit 2
    assert main(["eval", str(run), "--opponent", "snapshot:7"]) == 2
    assert "no such snapshot" in capsys.readouterr().err


def math_close(a, b):
    return abs(a - b) < 1e-9


def test_a_config_check_builds_no_game(monkeypatch):
    """The zero-sum check reads the registry's metadata; the game is built when it is played."""
    from seqmarl.config import load_config

    built = []
    real_init = TextArenaEnv.__init__

    def counting(self, *a, **kw):
        built.append(a)
        real_init(self, *a, **kw)

    monkeypatch.setattr(TextArenaEnv, "__init__", counting)
    env = "env=textarena/TicTacToe-v0"
    load_config(None, [env, "setting=cory", "setting.reward_matrix=competitive"])
    with pytest.raises(ConfigError, match="is zero-sum"):
        load_config(None, [env, "setting=cory", "setting.reward_matrix=cooperative"])
    assert built == []
    spec = envs.ENVS.get("textarena/TicTacToe-v0")
    assert spec.metadata == TextArenaEnv("TicTacToe-v0").metadata  # the same answer
