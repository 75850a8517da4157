import numpy as np
import pytest

from seqmarl import envs
from seqmarl.errors import ConfigError, UnknownNameError
from seqmarl.method.settings import make_setting


def play(env, answers):
    """Play one episode; answers maps agent -> response. Returns {agent: observation text}."""
    seen = {}
    for agent in env.agent_iter():
        obs, _, term, trunc, _ = env.last()
        if term or trunc:
            env.step(None)
            continue
        seen[agent] = obs["text"]
        env.step(answers[agent])
    return seen


def test_seat_k_observes_prompt_and_earlier_responses():
    env = envs.make("arithmetic-v0", num_agents=3)
    env.reset(seed=0, options={"seat_order": ["llm_2", "llm_0", "llm_1"]})
    question = env.prompt.text.removesuffix("Answer:").rstrip()
    seen = play(env, {"llm_2": "A2", "llm_0": "A0", "llm_1": "A1"})
    assert seen["llm_2"] == env.prompt.text
    assert seen["llm_0"] == f"{question}\nReference: A2\nAnswer:"
    assert seen["llm_1"] == f"{question}\nReference: A2\nReference: A0\nAnswer:"


def test_knowledge_transfer_off_every_seat_sees_only_the_prompt():
    env = envs.make("arithmetic-v0", num_agents=3, knowledge_transfer=False)
    env.reset(seed=0)
    seen = play(env, {"llm_0": "first 1", "llm_1": "second 2", "llm_2": "third"})
    assert set(seen.values()) == {env.prompt.text}


def test_seat_is_part_of_the_observation():
    env = envs.make("arithmetic-v0", num_agents=2)
    env.reset(seed=0, options={"seat_order": [1, 0]})
    assert env.agent_selection == "llm_1"
    assert env.observe("llm_1")["seat"] == 0
    assert env.observe("llm_0")["seat"] == 1


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("cooperative", [1.0, 1.0]),  # r = (1, 0): both get 1 + 0
        ("independent", [1.0, 0.0]),
        ("competitive", [1.0, -1.0]),
    ],
)
def test_reward_matrix_presets(preset, expected):
    env = envs.make("arithmetic-v0", num_agents=2, reward_matrix=preset)
    env.reset(seed=3)
    right = env.prompt.reference
    play(env, {"llm_0": f"It is {right}", "llm_1": "no idea"})
    assert env.task_rewards == {"llm_0": 1.0, "llm_1": 0.0}
    assert [env.trained_rewards[a] for a in env.possible_agents] == expected


def test_explicit_matrix_and_last_returns_accumulated_reward():
    coef = [[0.5, 2.0, 0.0], [0.0, 1.0, -1.0], [1.0, 1.0, 1.0]]
    env = envs.make("arithmetic-v0", num_agents=3, reward_matrix=coef)
    env.reset(seed=5)
    right = env.prompt.reference
    answers = {"llm_0": right, "llm_1": right, "llm_2": "wrong"}
    play_rewards = {}
    for agent in env.agent_iter():
        _, reward, term, _, _ = env.last()
        if term:
            play_rewards[agent] = reward
            env.step(None)
        else:
            env.step(answers[agent])
    r = np.array([1.0, 1.0, 0.0])
    assert play_rewards == dict(zip(env.possible_agents, (np.array(coef) @ r).tolist()))


def test_rewards_are_zero_until_the_last_seat_acts():
    env = envs.make("arithmetic-v0", num_agents=3)
    env.reset(seed=0)
    env.step(env.prompt.reference)
    env.step("x")
    assert all(v == 0.0 for v in env.rewards.values())
    assert not any(env.terminations.values())
    env.step("y")
    assert all(env.terminations.values())
    assert env.infos["llm_0"]["task_reward"] == 1.0
    assert env.infos["llm_2"] == {"seat": 2, "task_reward": 0.0, "response": "y"}


def test_a_batch_of_rows_is_scored_in_one_call_and_equals_direct_scoring():
    direct = envs.make("arithmetic-v0", num_agents=2)
    direct.reset(seed=11)
    answers = {"llm_0": direct.prompt.reference, "llm_1": "7 + 1"}
    for agent in ("llm_0", "llm_1"):
        direct.step(answers[agent])
    game = envs.make("arithmetic-v0", num_agents=2).as_game()
    calls = []
    real = game.task.score_batch
    game.task.score_batch = lambda p, r: calls.append(len(p)) or real(p, r)
    game.reset([direct.prompt], ["llm_0", "llm_1"], copies=3)
    for agent in ("llm_0", "llm_1"):
        assert game.waiting() == {agent: [0, 1, 2]}
        game.act(agent, [0, 1, 2], [answers[agent]] * 3)
    assert game.waiting() == {}
    result = game.result()
    assert calls == [6]  # 3 rows x 2 agents, one call (not three of 2)
    want = [direct.task_rewards[a] for a in direct.possible_agents]
    assert result.outcome.tolist() == [want] * 3 == [[1.0, 0.0]] * 3
    assert result.final.tolist() == result.outcome.tolist()
    assert [len(t) for t in result.turn_rewards] == [2, 2, 2]
    assert not result.truncated.any() and not result.early.any()
    mixed = game.mixer.mix(result.outcome, ["llm_0", "llm_1"])
    assert mixed.tolist() == [[direct.trained_rewards[a] for a in direct.possible_agents]] * 3


def test_given_prompt_is_played():
    env = envs.make("arithmetic-v0", num_agents=1)
    env.reset(options={"prompt": envs.Prompt("Question: What is 2 + 2?\nAnswer:", reference="4")})
    env.step("4")
    assert env.task_rewards["llm_0"] == 1.0
    env.reset(options={"prompt": "free text prompt"})
    assert env.observe("llm_0")["text"] == "free text prompt"


@pytest.mark.parametrize("order", [["llm_0"], ["llm_0", "llm_0"], ["llm_0", "llm_7"], [0, 5]])
def test_bad_seat_order_is_a_clear_error(order):
    env = envs.make("arithmetic-v0", num_agents=2)
    with pytest.raises(ValueError, match="seat_order must list every agent exactly once"):
        env.reset(options={"seat_order": order})


def test_misuse_errors():
    env = envs.make("arithmetic-v0", num_agents=2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step("x")
    env.reset(seed=0)
    with pytest.raises(TypeError, match="must be a str"):
        env.step(3)
    with pytest.raises(ValueError, match="num_agents"):
        envs.make("arithmetic-v0", num_agents=0)
    with pytest.raises(ValueError, match="render_mode"):
        envs.make("arithmetic-v0", render_mode="rgb_array")


def test_unknown_env_lists_registered_ids():
    with pytest.raises(UnknownNameError, match=r"Registered envs: .*arithmetic-v0") as info:
        envs.make("arithmetc-v0")
    assert "Did you mean 'arithmetic-v0'" in str(info.value)


def test_bad_task_argument_names_what_the_task_accepts():
    with pytest.raises(ConfigError, match="max_operand, ops"):
        envs.make("arithmetic-v0", max_operands=3)


def test_make_from_setting():
    setting = make_setting("cory-no-transfer", num_agents=3, reward_matrix="competitive")
    env = envs.make("arithmetic-v0", setting=setting)
    assert env.max_num_agents == 3
    assert not env.knowledge_transfer
    assert env.coef.tolist() == [list(r) for r in setting.reward_matrix]
    with pytest.raises(ConfigError, match="conflicts"):
        envs.make("arithmetic-v0", setting=setting, num_agents=2)


def test_register_env_requires_a_versioned_id_and_user_factories_import():
    with pytest.raises(ValueError, match="-v<N>"):
        envs.register_env("NoVersion", envs.ArithmeticTask)
    env = envs.make("seqmarl.envs.tasks.arithmetic:ArithmeticTask", num_agents=2, ops="*")
    env.reset(seed=0)
    assert "*" in env.prompt.text


def test_render_and_transcript():
    env = envs.make("arithmetic-v0", num_agents=2, render_mode="ansi")
    env.reset(seed=0)
    play(env, {"llm_0": "5", "llm_1": "6"})
    text = env.render()
    assert "seat 0 llm_0: '5'" in text and "task_reward=" in text
    assert envs.make("arithmetic-v0").render() is None


def test_clone_shares_the_task_but_not_the_episode():
    env = envs.make("arithmetic-v0", num_agents=2, reward_matrix="competitive")
    twin = env.clone()
    assert twin.task is env.task and twin is not env
    assert twin.coef.tolist() == env.coef.tolist()
    env.reset(seed=0)
    assert twin.prompt is None
