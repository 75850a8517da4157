"""OpenSpiel games through Shimmy as text envs: seqmarl.envs.suites.openspiel."""

import importlib.util
import sys

import numpy as np
import pytest
from pettingzoo.test import api_test, seed_test

from seqmarl import envs
from seqmarl.envs import ENVS, check_env
from seqmarl.envs.suites import openspiel
from seqmarl.envs.suites.openspiel import OpenSpielTextEnv, parse_move, resolve
from seqmarl.errors import ConfigError

# the module itself imports without them (the last test); the games need both
pytest.importorskip("shimmy", reason="the OpenSpiel suite needs the extra seqmarl[games] (shimmy)")
pyspiel = pytest.importorskip(
    "pyspiel", reason="the OpenSpiel suite needs the extra seqmarl[games] (open-spiel)"
)

pytestmark = pytest.mark.filterwarnings("ignore:Observation is not a NumPy array:UserWarning")

GAMES = ["tic_tac_toe", "kuhn_poker", "connect_four"]


@pytest.fixture
def openspiel_namespace(monkeypatch):
    """The ``openspiel/`` namespace, wired for this test if the package does not wire it yet."""
    if "openspiel" not in ENVS.namespaces:
        monkeypatch.setattr(ENVS, "_namespaces", dict(ENVS._namespaces))
        monkeypatch.setattr(ENVS, "_items", dict(ENVS._items))
        ENVS.add_namespace("openspiel", resolve, pattern="openspiel/<game>-v0")


def board(env):
    return env.state.observation_string(0)


def play(env, texts):
    """Play texts in turn order (dead steps taken); return each agent's summed step rewards."""
    texts = iter(texts)
    got = dict.fromkeys(env.possible_agents, 0.0)
    for _agent in env.agent_iter():
        _, _, term, trunc, _ = env.last()
        env.step(None if term or trunc else next(texts))
        for a, r in env.rewards.items():
            got[a] += r
    return got


# ---------------------------------------------------------------- PettingZoo conformance
@pytest.mark.parametrize("game", GAMES)
def test_pettingzoo_api_and_seed_tests_pass(game):
    api_test(OpenSpielTextEnv(game), num_cycles=30)
    seed_test(lambda: OpenSpielTextEnv(game), num_cycles=30)


@pytest.mark.parametrize("game", ["tic_tac_toe", "kuhn_poker"])
def test_check_env_passes_on_the_registered_env(game, openspiel_namespace):
    report = check_env(lambda: envs.make(f"openspiel/{game}-v0"), num_cycles=10)
    assert report.passed, str(report)


def test_resolve_gives_a_described_spec(openspiel_namespace):
    spec = ENVS.get("openspiel/kuhn_poker-v0")
    assert spec.id == "openspiel/kuhn_poker-v0"
    assert spec.description == "Kuhn Poker (OpenSpiel via Shimmy)"
    assert isinstance(spec.aec_factory(), OpenSpielTextEnv)
    face = envs.make("openspiel/tic_tac_toe-v0")
    assert face.possible_agents == ["llm_0", "llm_1"]


# ---------------------------------------------------------------- observations
def test_observation_at_reset_names_game_player_and_moves():
    env = OpenSpielTextEnv("tic_tac_toe")
    env.reset(seed=0)
    assert env.possible_agents == ["player_0", "player_1"]
    assert env.metadata == {
        "name": "openspiel_tic_tac_toe",
        "is_parallelizable": False,
        "zero_sum": True,
    }
    text = env.observe("player_0")["text"]
    lines = text.splitlines()
    assert lines[0] == "You are player 0 of 2 in Tic Tac Toe."
    assert lines[1:4] == ["...", "...", "..."]
    assert lines[-2] == "Answer with the bracketed number of one move, e.g. '[0]'."
    assert lines[-1].startswith("Available Moves: '[0]' x(0,0), '[1]' x(0,1), ")
    assert lines[-1].endswith("'[8]' x(2,2)")
    other = env.observe("player_1")["text"]
    assert "Available Moves" not in other
    assert other.splitlines()[-1] == "Waiting for player 0 to move."
    assert env.infos["player_0"]["legal_actions"] == list(range(9))
    assert env.infos["player_1"] == {"legal_actions": [], "invalid_moves": 0}  # no forfeits


def test_a_random_player_can_read_the_moves_off_the_last_line():
    env = OpenSpielTextEnv("kuhn_poker")
    env.reset(seed=4)
    line = [x for x in env.observe(env.agent_selection)["text"].splitlines()][-1]
    assert line == "Available Moves: '[0]' Pass, '[1]' Bet"


# ---------------------------------------------------------------- moves and rewards
@pytest.mark.parametrize(
    ("moves", "winner"),
    [([0, 3, 1, 4, 2], 0), ([0, 3, 1, 4, 8, 5], 1)],
)
def test_scripted_tic_tac_toe_hands_out_openspiel_returns(moves, winner):
    state = pyspiel.load_game("tic_tac_toe").new_initial_state()
    for m in moves:
        state.apply_action(m)
    assert state.is_terminal()
    expected = state.returns()
    assert expected[winner] == 1.0 and expected[1 - winner] == -1.0

    env = OpenSpielTextEnv("tic_tac_toe")
    env.reset(seed=0)
    got = play(env, [f"I play [{m}]" for m in moves])
    assert got == {"player_0": expected[0], "player_1": expected[1]}
    assert env.agents == []  # both removed by their dead steps
    assert env.state.history() == moves


def test_last_gives_each_agent_its_return_once_at_the_end():
    env = OpenSpielTextEnv("tic_tac_toe")
    env.reset(seed=0)
    for m in [0, 3, 1, 4, 2]:
        env.step(f"[{m}]")
    seen = {}
    for agent in env.agent_iter():
        _, cumulative, term, trunc, info = env.last()
        assert term and not trunc and info["invalid_moves"] == 0
        seen[agent] = cumulative
        env.step(None)
    assert seen == {"player_0": 1.0, "player_1": -1.0}  # Shimmy's own dead step gives -2


def test_moves_are_read_by_bracket_first_then_by_name():
    env = OpenSpielTextEnv("tic_tac_toe")
    env.reset(seed=0)
    env.step("not [9], not [ 12 ], but [ 4 ] then [0]")
    env.step("o(0,0) please")
    env.step("X(2,2)")  # case-insensitive
    assert env.state.history() == [4, 0, 8]
    assert all(info["invalid_moves"] == 0 for info in env.infos.values())


def test_parse_move_prefers_a_legal_bracket_and_the_longest_name():
    moves = {0: "Pass", 1: "Bet", 7: "Bet high"}
    assert parse_move("[3] [1]", moves) == 1
    assert parse_move("I'll bet high [5]", moves) == 7
    assert parse_move("pass", moves) == 0
    assert parse_move("", moves) is None
    assert parse_move(None, moves) is None
    assert parse_move("fold", moves) is None


def test_illegal_move_is_penalised_and_a_seeded_random_move_played():
    def first_fallback(seed):
        env = OpenSpielTextEnv("tic_tac_toe", illegal_penalty=-0.5)
        env.reset(seed=seed)
        env.step("hello")
        return env

    env = first_fallback(11)
    assert env.rewards == {"player_0": -0.5, "player_1": 0.0}
    assert env.infos["player_0"]["invalid_moves"] == 1
    assert "forfeit" not in env.infos["player_0"]  # the game goes on: it cannot be forfeited
    assert board(env).count("x") == 1  # a legal move was played for player_0
    assert env.agent_selection == "player_1" and not any(env.terminations.values())
    assert env.last()[1] == 0.0  # player_1 owes nothing
    env.step("[9]")  # out of range: illegal too
    assert env.infos["player_1"]["invalid_moves"] == 1 and board(env).count("o") == 1
    assert env.rewards == {"player_0": 0.0, "player_1": -0.5}

    assert first_fallback(11).state.history() == env.state.history()[:1]  # same seed, same move
    firsts = {first_fallback(s).state.history()[0] for s in range(12)}
    assert len(firsts) > 1  # the fallback is drawn, not fixed


def test_illegal_moves_never_stop_a_game():
    env = OpenSpielTextEnv("connect_four")
    env.reset(seed=3)
    got = play(env, ["hello"] * 42)
    state = env.state
    assert state.is_terminal()
    n = len(state.history())
    assert got["player_0"] + got["player_1"] == pytest.approx(-n + sum(state.returns()))


# ---------------------------------------------------------------- chance and truncation
def test_kuhn_poker_plays_to_its_end_and_one_seed_deals_one_hand():
    def hand(seed):
        env = OpenSpielTextEnv("kuhn_poker")
        env.reset(seed=seed)
        got = play(env, ["Bet", "[1]"])  # bet, call: the showdown
        return env, got

    env, got = hand(5)
    state = env.state
    assert state.is_terminal() and len(state.history()) == 4  # two cards dealt, two moves
    assert got == {"player_0": state.returns()[0], "player_1": state.returns()[1]}
    assert abs(got["player_0"]) == 2.0
    assert hand(5)[0].state.history() == state.history()
    assert len({tuple(hand(s)[0].state.history()[:2]) for s in range(10)}) > 1


def test_a_full_board_draw_is_terminated_not_truncated():
    env = OpenSpielTextEnv("tic_tac_toe")
    env.reset(seed=0)
    for m in [0, 1, 2, 4, 3, 5, 7, 6, 8]:
        env.step(f"[{m}]")
    assert env.state.is_terminal() and env.state.returns() == [0.0, 0.0]
    assert all(env.terminations.values()) and not any(env.truncations.values())
    assert env.observe("player_0")["text"].endswith("The game is over; your return is +0.")


# ---------------------------------------------------------------- refusals
def test_unknown_game_is_one_line_with_close_names():
    with pytest.raises(ConfigError) as err:
        OpenSpielTextEnv("tic_tac_to")
    msg = str(err.value)
    assert "\n" not in msg and "'tic_tac_to'" in msg and "tic_tac_toe" in msg
    with pytest.raises(ConfigError, match="openspiel/<game>-v0"):
        resolve("openspiel/TicTacToe")
    with pytest.raises(ConfigError, match="'chesss'"):
        resolve("openspiel/chesss-v0")


@pytest.mark.parametrize(
    ("game", "why"),
    [("matrix_rps", "simultaneous"), ("goofspiel", "simultaneous"), ("catch", "1 player")],
)
def test_simultaneous_and_single_player_games_are_refused(game, why):
    with pytest.raises(ConfigError) as err:
        OpenSpielTextEnv(game)
    msg = str(err.value)
    assert "\n" not in msg and repr(game) in msg and why in msg


def test_bad_parameters_are_one_line_and_good_ones_are_kept_across_resets():
    with pytest.raises(ConfigError) as err:
        OpenSpielTextEnv("kuhn_poker", params={"colour": 3})
    assert "\n" not in str(err.value) and "colour" in str(err.value)
    env = OpenSpielTextEnv("kuhn_poker", params={"players": 3})
    for seed in (0, 1):
        env.reset(seed=seed)
        assert env.agents == ["player_0", "player_1", "player_2"]
        assert env.observe("player_0")["text"].startswith("You are player 0 of 3 in Kuhn Poker.")


def test_module_imports_without_the_extra_and_says_which_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "shimmy", None)
    monkeypatch.setitem(sys.modules, "pyspiel", None)
    spec = importlib.util.spec_from_file_location("_openspiel_no_extra", openspiel.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # no import of the optional packages at the top
    with pytest.raises(ConfigError, match=r"seqmarl\[games\]") as err:
        module.resolve("openspiel/tic_tac_toe-v0")
    assert "\n" not in str(err.value)


def test_a_game_that_cannot_be_forfeited_logs_no_forfeit_rate():
    """OpenSpiel reports refused moves and no forfeits; TextArena both (the trainer's view)."""
    from types import SimpleNamespace

    from seqmarl.train.trainer import _game_infos

    openspiel = {"a": {"invalid_moves": 2}, "b": {"invalid_moves": 0}}
    textarena = {"a": {"invalid_moves": 3, "forfeit": True}, "b": {"invalid_moves": 0}}
    invalid, forfeit = _game_infos(SimpleNamespace(infos=[openspiel, textarena]), ("a", "b"))
    assert invalid.tolist() == [[2.0, 0.0], [3.0, 0.0]]
    assert np.isnan(forfeit[0]).all() and forfeit[1, 0] == 1.0 and np.isnan(forfeit[1, 1])
