"""number-guess-v0: the referee, illegal moves, seeded numbers, per-turn credit, a full game."""

import numpy as np
import pytest

from seqmarl import envs
from seqmarl.cli import main
from seqmarl.envs.episode import Episode, Turn
from seqmarl.envs.tasks.guess import INTRO, NumberGuessTask, feedback, first_integer, judge
from seqmarl.errors import ConfigError
from seqmarl.train.rollout import play
from tests.test_rounds import Scripted

ILLEGAL = ["", " ", "abc", "🙂🚀", "0", "-3", "21", "9" * 5000, "-" + "9" * 5000, "٣"]


def game(number=9, high=20):
    return envs.Prompt(INTRO.format(high=high), reference=str(number), meta={"number": number})


@pytest.mark.parametrize(
    ("text", "read"),
    [
        ("7", (7, "7")),
        ("  I say 12 or 13", (12, "12")),
        ("7.5", (7, "7")),
        ("007!", (7, "007")),
        ("-3", (-3, "-3")),
        ("x-4", (-4, "-4")),
        ("1-2", (1, "1")),
        ("9" * 5000, (10**30, "9" * 5000)),
        ("abc", None),
        ("", None),
        ("🙂", None),
        ("٣", None),  # an Arabic-Indic three: not an ASCII digit
    ],
)
def test_the_referee_reads_the_first_integer(text, read):
    assert first_integer(text) == read


def test_feedback_lines_by_hand():
    assert feedback("llm_0", "7", 9, 20) == "llm_0 guessed 7: too low"
    assert feedback("llm_1", "12 maybe", 9, 20) == "llm_1 guessed 12: too high"
    assert feedback("llm_0", "it is 9", 9, 20) == "llm_0 guessed 9: correct"
    assert feedback("llm_1", "abc", 9, 20) == "llm_1 guessed 'abc': not a number, penalty"
    assert feedback("llm_0", "25", 9, 20) == "llm_0 guessed 25: out of range 1..20, penalty"
    assert feedback("llm_0", "0", 9, 20) == "llm_0 guessed 0: out of range 1..20, penalty"
    assert feedback("llm_1", "no\nidea at all, sorry", 9, 20) == (
        "llm_1 guessed 'no\\nidea at all, s...': not a number, penalty"  # one line, 20 chars
    )
    assert feedback("llm_0", "9" * 50, 9, 20) == (
        "llm_0 guessed 99999999999999999...: out of range 1..20, penalty"
    )


def test_the_observation_is_the_prompt_the_log_and_an_invitation():
    env = envs.make("number-guess-v0", num_agents=2, rounds=2)
    env.reset(options={"prompt": game(9), "seat_order": ["llm_1", "llm_0"]})
    assert env.observe("llm_1")["text"] == INTRO.format(high=20) + "\nllm_1, your guess:"
    env.step("5")
    env.step("abc")
    env.step("14")
    assert env.observe("llm_0")["text"].splitlines()[1:] == [
        "llm_1 guessed 5: too low",
        "llm_0 guessed 'abc': not a number, penalty",
        "llm_1 guessed 14: too high",
        "llm_0, your guess:",
    ]


def test_illegal_moves_cost_the_penalty_and_never_raise():
    task = NumberGuessTask(penalty=-0.25)
    for text in ILLEGAL:
        ep = Episode(game(9), ("llm_0",), ("llm_0",), rounds=1)
        ep.turns.append(Turn(0, 0, "llm_0", "", text))
        assert task.turn_reward(ep, ep.turns[0]) == -0.25, text
        assert judge(text, 9, 20)[0] in ("nan", "range")
    env = envs.make("number-guess-v0", num_agents=1, rounds=len(ILLEGAL), reward_matrix=[[1]])
    env.reset(options={"prompt": game(9)})
    got = []
    for text in ILLEGAL:
        env.observe("llm_0")
        env.step(text)
        got.append(env.rewards["llm_0"])
    assert got == [-0.5] * len(ILLEGAL)
    assert env.terminations["llm_0"] and env.task_rewards == {"llm_0": 0.0}


@pytest.mark.parametrize("text", ["1", "8", "10", "20", "20 or 19"])
def test_legal_misses_score_zero(text):
    ep = Episode(game(9), ("llm_0",), ("llm_0",))
    ep.turns.append(Turn(0, 0, "llm_0", "", text))
    assert NumberGuessTask().turn_reward(ep, ep.turns[0]) == 0.0


def test_the_hidden_number_is_deterministic_under_a_seed():
    task = NumberGuessTask(high=50)
    a, b = task.sample_prompts(20, 7), task.sample_prompts(20, np.random.default_rng(7))
    assert a == b
    assert a != task.sample_prompts(20, 8)
    numbers = [p.meta["number"] for p in a]
    assert all(1 <= k <= 50 for k in numbers) and len(set(numbers)) > 5
    assert all(p.reference == str(p.meta["number"]) for p in a)
    assert all("1 to 50" in p.text and str(p.meta["number"]) != p.text for p in a)
    e1, e2 = envs.make("number-guess-v0"), envs.make("number-guess-v0")
    e1.reset(seed=3)
    e2.reset(seed=3)
    assert e1.prompt == e2.prompt


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="high must be an integer >= 1"):
        NumberGuessTask(high=0)
    with pytest.raises(ConfigError, match="penalty must be a finite number"):
        NumberGuessTask(penalty=float("nan"))


@pytest.mark.parametrize("order", [["llm_0", "llm_1"], ["llm_1", "llm_0"]])
def test_turn_rewards_reach_the_right_agent_in_any_seat_order(order):
    """The hitter gets +1 at once; with the competitive matrix the other gets -1."""
    for matrix, other in (("independent", 0.0), ("competitive", -1.0)):
        env = envs.make("number-guess-v0", num_agents=2, rounds=2, reward_matrix=matrix)
        env.reset(options={"prompt": game(9), "seat_order": order})
        first, second = order
        moves = {first: ["3", "9"], second: ["bad", "9"]}
        seen = []
        for agent in env.agent_iter():
            if env.terminations[agent]:
                env.step(None)
                continue
            env.observe(agent)
            env.step(moves[agent].pop(0))
            seen.append(dict(env.rewards))
        # turns: first "3" (0), second "bad" (-0.5), first "9" (hit), second "9" (after the hit)
        assert seen[1][second] == -0.5 and seen[1][first] == (0.5 if other else 0.0)
        assert seen[2] == {first: 1.0, second: other}
        assert seen[3] == {first: 0.0, second: 0.0}


EXPECTED = {  # returns per agent, its turns in order (rounds 0, 1, 2), gamma 1
    # llm_1 (seat 0): "15" high 0, "25" illegal -0.5, "9" hit +1
    # llm_0 (seat 1): "abc" illegal -0.5, "5" low 0, "9" after the hit 0
    "independent": {"llm_1": [0.5, 0.5, 1.0], "llm_0": [-0.5, 0.0, 0.0]},
    # each agent also gets minus the other's turn rewards, credited to its latest turn:
    # llm_1 [0 + 0.5, -0.5, 1] ; llm_0 [-0.5 + 0.5, 0 - 1, 0]
    "competitive": {"llm_1": [1.0, 0.5, 1.0], "llm_0": [-1.0, -1.0, 0.0]},
}


@pytest.mark.parametrize("matrix", list(EXPECTED))
def test_a_full_game_returns_by_hand(make_pool, matrix):
    pool = make_pool(max_new_tokens=3)
    env = envs.make("number-guess-v0", num_agents=2, rounds=3, reward_matrix=matrix)
    agents = {
        "llm_0": Scripted(pool["llm_0"], ["abc", "5", "9"]),
        "llm_1": Scripted(pool["llm_1"], ["15", "25", "9"]),
    }
    roll = play(env.as_game(), agents, [game(9)], ["llm_1", "llm_0"])
    for agent, want in EXPECTED[matrix].items():
        assert roll.returns[agent].tolist() == want
    assert roll.task_rewards.tolist() == [[0.0, 0.0]]  # every reward is a turn reward
    assert [t.agent for t in env.episode.turns] == ["llm_1", "llm_0"] * 3


def test_check_env_command_passes(capsys):
    assert main(["check-env", "number-guess-v0", "--num-agents", "2"]) == 0
    assert "7/7: all checks passed" in capsys.readouterr().out
