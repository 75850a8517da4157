"""Readable observations of OpenSpiel's Kuhn and Leduc poker: seqmarl.envs.suites.openspiel_views."""

import re

import pytest

from seqmarl import envs
from seqmarl.envs import ENVS, check_env
from seqmarl.envs.suites.openspiel import OpenSpielTextEnv, resolve

pytest.importorskip("shimmy", reason="the OpenSpiel suite needs the extra seqmarl[games] (shimmy)")
pyspiel = pytest.importorskip(
    "pyspiel", reason="the OpenSpiel suite needs the extra seqmarl[games] (open-spiel)"
)

pytestmark = pytest.mark.filterwarnings("ignore:Observation is not a NumPy array:UserWarning")


def decision_states(game):
    """Every decision state of ``game`` (depth first), chance nodes expanded."""
    stack = [game.new_initial_state()]
    while stack:
        state = stack.pop()
        if state.is_terminal():
            continue
        if not state.is_chance_node():
            yield state
        outcomes = (
            [a for a, _ in state.chance_outcomes()]
            if state.is_chance_node()
            else state.legal_actions()
        )
        stack.extend(state.child(a) for a in outcomes)


@pytest.mark.parametrize(("game", "infosets"), [("kuhn_poker", 12), ("leduc_poker", 936)])
def test_every_information_state_reads_as_one_text_of_its_own(game, infosets):
    env = OpenSpielTextEnv(game)
    texts: dict[str, str] = {}
    for state in decision_states(pyspiel.load_game(env.game)):
        key = state.information_state_string()
        text = env.observation_at(state)
        assert texts.setdefault(key, text) == text  # a function of what the player knows
    assert len(texts) == infosets
    assert len(set(texts.values())) == infosets  # and different knowledge reads differently


def test_kuhn_says_the_card_the_betting_and_the_pot_in_words():
    game = pyspiel.load_game("kuhn_poker")
    state = game.new_initial_state()
    for a in (2, 0, 0, 1):  # deal King to player 0, Jack to player 1; pass, bet
        state.apply_action(a)
    text = OpenSpielTextEnv("kuhn_poker").observation_at(state)
    assert text.splitlines() == [
        "You are player 0 of 2 in Kuhn Poker.",
        "You hold the King.",
        "The deck has 3 cards, Jack < Queen < King; each player holds one, and each put 1 chip "
        "in the pot. The highest card still in at the end wins the pot.",
        "Betting so far: you checked, player 1 bet 1 chip.",
        "Pot: 3 chips (you put in 1, player 1 put in 2).",
        "Answer with the bracketed number of one move, e.g. '[0]'.",
        "Available Moves: '[0]' Pass, '[1]' Bet",
    ]
    assert "Jack" not in text.split("The deck")[0]  # the other player's card stays hidden


def test_kuhn_pot_equals_openspiel_chips_at_every_state():
    env = OpenSpielTextEnv("kuhn_poker")
    for state in decision_states(pyspiel.load_game(env.game)):
        pid = state.current_player()
        card, *put = map(int, state.observation_string(pid))  # "211": card, then each one's chips
        text = env.observation_at(state)
        assert f"Pot: {sum(put)} chips" in text
        assert f"You hold the {['Jack', 'Queen', 'King'][card]}." in text


def test_leduc_pot_and_chips_left_equal_openspiel_at_every_state():
    env = OpenSpielTextEnv("leduc_poker")
    for state in decision_states(pyspiel.load_game(env.game)):
        pid = state.current_player()
        info = state.information_state_string(pid)
        pot = int(re.search(r"\[Pot: (\d+)\]", info).group(1))
        money = [int(m) for m in re.search(r"\[Money: ([\d ]+)\]", info).group(1).split()]
        text = env.observation_at(state)
        assert f"Pot: {pot} chips" in text
        assert f"you have {money[pid]} chips left." in text
        assert ("[Public: " in info) == ("The public card is the" in text)


def test_leduc_reads_both_rounds_and_the_public_card():
    state = pyspiel.load_game("leduc_poker").new_initial_state()
    for a in (2, 5, 2, 1, 3, 1, 2, 2):  # Q, K; raise, call; public Q; check, raise, re-raise
        state.apply_action(a)
    lines = OpenSpielTextEnv("leduc_poker").observation_at(state).splitlines()
    assert lines[0] == "You are player 1 of 2 in Leduc Poker."
    assert lines[1] == "You hold the King of Hearts."
    assert lines[3] == "The public card is the Queen of Hearts."
    assert lines[4] == "Round 1 betting: player 0 raised by 2 chips, you called."
    assert lines[5] == (
        "Round 2 betting: player 0 checked, you raised by 4 chips, player 0 raised by 4 chips."
    )
    assert lines[6] == "Pot: 18 chips (player 0 put in 11, you put in 7); you have 93 chips left."
    assert lines[-1] == "Available Moves: '[0]' Fold, '[1]' Call"  # ids and names as before


def test_the_env_observes_what_observation_at_reads():
    env = OpenSpielTextEnv("leduc_poker")
    env.reset(seed=2)
    for move in ["[2]", "[1]", "[1]", "[2]"]:
        agent = env.agent_selection
        assert env.observe(agent)["text"] == env.observation_at(env.state)
        env.step(move)


def test_other_variants_and_games_keep_openspiel_text():
    env = OpenSpielTextEnv("leduc_poker", params={"action_mapping": True})
    env.reset(seed=0)
    assert "[Observer: 0]" in env.observe(env.agent_selection)["text"]


@pytest.mark.parametrize("game", ["leduc_poker"])
def test_check_env_passes(game, monkeypatch):
    if "openspiel" not in ENVS.namespaces:
        monkeypatch.setattr(ENVS, "_namespaces", dict(ENVS._namespaces))
        monkeypatch.setattr(ENVS, "_items", dict(ENVS._items))
        ENVS.add_namespace("openspiel", resolve, pattern="openspiel/<game>-v0")
    report = check_env(lambda: envs.make(f"openspiel/{game}-v0"), num_cycles=10)
    assert report.passed, str(report)
