"""gsm8k-debate-v0: who sees what in each round, R = 1 is gsm8k-v0, final or every-round rewards."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pettingzoo.test import api_test, seed_test

from seqmarl import envs
from seqmarl.envs.task import Prompt
from seqmarl.envs.tasks.gsm8k import ONE_SHOT
from seqmarl.errors import ConfigError
from seqmarl.train.rollout import play
from tests.conftest import env_test_kwargs
from tests.test_rounds import Scripted

QUESTION = Prompt(
    f"{ONE_SHOT}Question: Ann has 3 apples and buys 4 more. How many apples?\nAnswer:",
    reference="7.0",
)
ROOT = str(Path(__file__).resolve().parents[2])
HEAD = f"{ONE_SHOT}Question: Ann has 3 apples and buys 4 more. How many apples?\n"


def _play(env, answers, seed=0, options=None):
    """Play one episode; ``answers[agent]`` is a list, one per round. Returns the observations
    (agent, round, text) in play order and, per agent, the reward and info that ``last()``
    hands it at the end (through PettingZoo's API)."""
    env.reset(seed=seed, options=options)
    seen, count, infos = [], {a: 0 for a in env.possible_agents}, {}
    for agent in env.agent_iter():
        obs, reward, term, trunc, info = env.last()
        if term or trunc:
            infos[agent] = {**info, "reward": reward}
            env.step(None)
            continue
        seen.append((agent, env.round, obs["text"]))
        env.step(answers[agent][count[agent]])
        count[agent] += 1
    return seen, infos


def _env(num_agents, rounds, **kw):
    return envs.make(
        "gsm8k-debate-v0", num_agents=num_agents, rounds=rounds, reward_matrix="independent",
        **env_test_kwargs("gsm8k-debate-v0"), **kw,
    )  # fmt: skip


ANSWERS = {
    "llm_0": ["3 + 4 = 6. The answer is 6.", "I was wrong: 3 + 4 = 7. The answer is 7."],
    "llm_1": ["3 + 4 = 7. The answer is 7.", "The answer is 7."],
    "llm_2": ["The answer is 12.", "Still 12."],
}


def test_observations_per_round_by_hand():
    env = _env(3, 2)
    seen, infos = _play(env, ANSWERS, options={"prompt": QUESTION})
    a0, a1, a2 = ANSWERS["llm_0"], ANSWERS["llm_1"], ANSWERS["llm_2"]
    want = [
        # round 0: gsm8k-v0 (the first seat the question, later seats the earlier answers)
        ("llm_0", 0, f"{HEAD}Answer:"),
        ("llm_1", 0, f"{HEAD}Reference: {a0[0]}\nAnswer:"),
        ("llm_2", 0, f"{HEAD}Reference: {a0[0]}\nReference: {a1[0]}\nAnswer:"),
        # round 1: the others' latest answers in seat order, then the agent's own
        ("llm_0", 1, f"{HEAD}Reference: {a1[0]}\nReference: {a2[0]}\n"
                     f"Your previous answer: {a0[0]}\nAnswer:"),
        # llm_0 has revised already: llm_1 sees the revision, not the first answer
        ("llm_1", 1, f"{HEAD}Reference: {a0[1]}\nReference: {a2[0]}\n"
                     f"Your previous answer: {a1[0]}\nAnswer:"),
        ("llm_2", 1, f"{HEAD}Reference: {a0[1]}\nReference: {a1[1]}\n"
                     f"Your previous answer: {a2[0]}\nAnswer:"),
    ]  # fmt: skip
    assert seen == want
    # rewarded on the final answer alone: llm_0 fixed its 6, llm_2 kept 12
    assert {a: infos[a]["task_reward"] for a in env.possible_agents} == {
        "llm_0": 1.0,
        "llm_1": 1.0,
        "llm_2": 0.0,
    }


def test_three_rounds_and_seat_order():
    env = _env(2, 3)
    answers = {"llm_0": ["A0", "A1", "A2"], "llm_1": ["B0", "B1", "B2"]}
    seen, _ = _play(env, answers, options={"prompt": QUESTION, "seat_order": ["llm_1", "llm_0"]})
    assert [(a, r) for a, r, _ in seen] == [
        ("llm_1", 0), ("llm_0", 0), ("llm_1", 1), ("llm_0", 1), ("llm_1", 2), ("llm_0", 2),
    ]  # fmt: skip
    texts = [t for _, _, t in seen]
    assert texts[0] == f"{HEAD}Answer:"
    assert texts[1] == f"{HEAD}Reference: B0\nAnswer:"
    assert texts[2] == f"{HEAD}Reference: A0\nYour previous answer: B0\nAnswer:"
    assert texts[3] == f"{HEAD}Reference: B1\nYour previous answer: A0\nAnswer:"
    assert texts[4] == f"{HEAD}Reference: A1\nYour previous answer: B1\nAnswer:"
    assert texts[5] == f"{HEAD}Reference: B2\nYour previous answer: A1\nAnswer:"


def test_without_transfer_an_agent_sees_only_its_own_answer():
    env = _env(2, 2, knowledge_transfer=False)
    seen, _ = _play(env, {"llm_0": ["A0", "A1"], "llm_1": ["B0", "B1"]},
                    options={"prompt": QUESTION})  # fmt: skip
    assert [t for _, _, t in seen] == [
        f"{HEAD}Answer:",
        f"{HEAD}Answer:",
        f"{HEAD}Your previous answer: A0\nAnswer:",
        f"{HEAD}Your previous answer: B0\nAnswer:",
    ]


def test_one_agent_debates_itself():
    env = _env(1, 2)
    seen, infos = _play(env, {"llm_0": ["The answer is 5.", "The answer is 7."]},
                        options={"prompt": QUESTION})  # fmt: skip
    assert seen[1][2] == f"{HEAD}Your previous answer: The answer is 5.\nAnswer:"
    assert infos["llm_0"]["task_reward"] == 1.0


def test_past_the_observation_limit_the_prompt_stays():
    limit = len(f"{HEAD}Your previous answer: A0\nAnswer:")
    env = _env(2, 2, max_observation_chars=limit)
    seen, _ = _play(env, {"llm_0": ["A0", "A1"], "llm_1": ["B0" * 50, "B1"]},
                    options={"prompt": QUESTION})  # fmt: skip
    # llm_0 in round 1: llm_1's long answer does not fit; dropping oldest turns first leaves
    # nothing (its own A0 is older), so it sees the prompt alone
    assert seen[2] == ("llm_0", 1, QUESTION.text)
    assert all(len(t) <= max(limit, len(QUESTION.text)) for _, _, t in seen)


@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize("num_agents", [2, 3, 4])
def test_one_round_is_gsm8k_v0_under_cory_transfer(seed, num_agents):
    """Same seed, same scripted answers: same prompts, observations, rewards and infos."""
    kwargs = env_test_kwargs("gsm8k-v0")
    debate = envs.make("gsm8k-debate-v0", setting="cory", num_agents=num_agents, rounds=1, **kwargs)
    plain = envs.make("gsm8k-v0", setting="cory", num_agents=num_agents, **kwargs)
    agents = plain.possible_agents
    for episode in range(3):
        plain.reset(seed=seed + episode)
        truth = float(plain.prompt.reference)
        # one agent right, the others wrong (which one rotates with the episode)
        answers = {
            a: [f"So it is {truth if i == episode % len(agents) else truth + 1:g}."]
            for i, a in enumerate(agents)
        }
        order = {"seat_order": agents[episode % len(agents) :] + agents[: episode % len(agents)]}
        got_d = _play(debate, answers, seed=seed + episode, options=order)
        got_p = _play(plain, answers, seed=seed + episode, options=order)
        assert debate.prompt == plain.prompt
        assert got_d == got_p
        assert debate.rewards == plain.rewards
        assert debate.task_rewards == plain.task_rewards
        right = agents[episode % len(agents)]
        assert debate.task_rewards == {a: float(a == right) for a in agents}
        assert debate.trained_rewards == {a: 1.0 for a in agents}  # cory: cooperative sum


@pytest.mark.parametrize(
    "seats", [["llm_0", "llm_1", "llm_2"], ["llm_2", "llm_0", "llm_1"], ["llm_1", "llm_2", "llm_0"]]
)
def test_final_answer_rewards_reach_the_right_agent_whatever_the_seat_order(seats):
    env = _env(3, 2)
    _, infos = _play(env, ANSWERS, options={"prompt": QUESTION, "seat_order": seats})
    got = {a: infos[a]["task_reward"] for a in env.possible_agents}
    assert got == {"llm_0": 1.0, "llm_1": 1.0, "llm_2": 0.0}
    # independent matrix: each agent is handed its own reward, through last()
    assert {a: infos[a]["reward"] for a in env.possible_agents} == got
    # the first-round answers alone would score differently: only the final one counts
    assert env.task.score(QUESTION, ANSWERS["llm_0"][0]) == 0.0


def test_check_env_cli_passes_with_every_round_scored(tmp_path):
    """`seqmarl check-env gsm8k-debate-v0 source=... score_rounds=every`, as a process: the
    task arguments make it run on the local copy of GSM8K (the default source is the hub)."""
    kwargs = env_test_kwargs("gsm8k-debate-v0")
    cmd = [sys.executable, "-m", "seqmarl", "check-env", "gsm8k-debate-v0", "--num-agents", "3"]
    cmd += [f"{k}={v}" for k, v in kwargs.items()] + ["score_rounds=every", "rounds=2"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "7/7: all checks passed" in proc.stdout


def test_listed():
    assert "gsm8k-debate-v0" in envs.ENVS.names()
    assert envs.ENVS.get("gsm8k-debate-v0").description.startswith("GSM8K debate")


# llm_0 leaves its round-0 answer empty and is right at the end; llm_1 is right in both rounds
FREE_RIDE = {"llm_0": ["", "The answer is 7."], "llm_1": ["The answer is 7.", "3 + 4 = 7."]}


def _credited(env, answers, options):
    """Per agent, the rewards credited to each of its turns: what ``last()`` hands it between
    that turn and its next (or the end), as PettingZoo's AEC API accumulates them."""
    env.reset(seed=0, options=options)
    credit, count = {a: [] for a in env.possible_agents}, dict.fromkeys(env.possible_agents, 0)
    for agent in env.agent_iter():
        _, reward, term, trunc, _ = env.last()
        if credit[agent]:
            credit[agent][-1] += reward
        if term or trunc:
            env.step(None)
            continue
        credit[agent].append(0.0)
        env.step(answers[agent][count[agent]])
        count[agent] += 1
    return credit


@pytest.mark.parametrize(
    ("score_rounds", "want"),
    [
        # the default: round 0 is not scored; the empty answer and the right one both get 0
        ("final", {"llm_0": [0.0, 1.0], "llm_1": [0.0, 1.0]}),
        # every round: the empty round-0 answer gets 0, the right one 1
        ("every", {"llm_0": [0.0, 1.0], "llm_1": [1.0, 1.0]}),
    ],
)
@pytest.mark.parametrize("seats", [["llm_0", "llm_1"], ["llm_1", "llm_0"]])
def test_an_empty_round_0_answer_is_free_only_when_the_final_round_alone_is_scored(
    score_rounds, want, seats
):
    env = _env(2, 2, score_rounds=score_rounds)
    got = _credited(env, FREE_RIDE, {"prompt": QUESTION, "seat_order": seats})
    assert got == want
    # the episode's task reward is the final answer's either way
    assert env.task_rewards == {"llm_0": 1.0, "llm_1": 1.0}


def test_every_round_scored_with_three_rounds_and_the_shared_reward():
    env = envs.make("gsm8k-debate-v0", setting="cory", num_agents=2, rounds=3,
                    score_rounds="every", **env_test_kwargs("gsm8k-debate-v0"))  # fmt: skip
    answers = {"llm_0": ["", "The answer is 7.", "7"], "llm_1": ["7", "8", "The answer is 7."]}
    got = _credited(env, answers, {"prompt": QUESTION})
    # cory sums both agents' rewards, each credited to every agent's latest turn: llm_1's
    # right round-0 answer (1) to both round-0 turns; llm_0's right round-1 answer (1) to its
    # own round-1 turn and, played before llm_1's, to llm_1's round-0 turn; llm_1's round-1 "8"
    # earns nothing; the finals (1 + 1, paid once, not also as turn rewards) to both
    assert got == {"llm_0": [1.0, 1.0, 2.0], "llm_1": [2.0, 0.0, 2.0]}


@pytest.mark.parametrize(("score_rounds", "gap"), [("final", 0.0), ("every", 1.0)])
def test_training_returns_of_a_right_round_0_answer_beat_an_empty_one(make_pool, score_rounds, gap):
    """Through the rollout (scripted texts on a tiny model): each turn's return is its
    reward-to-go (gamma 0.5); llm_1's right round-0 answer out-earns llm_0's empty one by
    the round-0 reward alone, which only ``every`` pays."""
    pool = make_pool(max_new_tokens=3)
    env = _env(2, 2, score_rounds=score_rounds)
    agents = {a: Scripted(pool[a], FREE_RIDE[a]) for a in FREE_RIDE}
    roll = play(env.as_game(), agents, [QUESTION], ["llm_0", "llm_1"], gamma=0.5)
    empty, right = roll.returns["llm_0"].tolist(), roll.returns["llm_1"].tolist()
    assert empty == [0.5, 1.0]  # 0 + 0.5 * 1 (the final answer), then 1
    assert right == [gap + 0.5, 1.0]
    assert roll.task_rewards.tolist() == [[1.0, 1.0]]


@pytest.mark.filterwarnings("ignore:Observation is not a NumPy array")
@pytest.mark.parametrize("num_agents", [1, 2, 3])
@pytest.mark.parametrize("rounds", [1, 2, 3])
def test_pettingzoo_api_and_seed_tests_with_every_round_scored(num_agents, rounds):
    def make():
        return _env(num_agents, rounds, score_rounds="every")

    api_test(make(), num_cycles=50)
    seed_test(make, num_cycles=50)
    assert envs.check_env(make).passed


def test_score_rounds_takes_final_or_every():
    with pytest.raises(ConfigError, match=r"score_rounds must be one of final, every, got 'all'"):
        _env(2, 2, score_rounds="all")
