"""Plain PettingZoo AEC envs (no seqmarl class inside) played through ``AECGame``.

* the rollout reaches such an env only through PettingZoo's public API (counted);
* a game where one side forfeits before it ever acts trains, checkpoints and resumes exactly;
* ten misbehaving envs: each trains, or stops with one line naming the env and the agent and
  exit status 2, leaving the checkpoints written before intact.
"""

from collections import Counter

import pytest
import torch

from seqmarl.cli import main
from seqmarl.config import load_config
from seqmarl.envs.registration import ENVS, register_pettingzoo
from seqmarl.run.checkpoint import latest_checkpoint, load_checkpoint
from seqmarl.run.sinks import read_jsonl
from seqmarl.train.trainer import Trainer
from tests.fake_games import Moves  # white and black alternate 4 moves; a digit scores 1

RUN = [
    "model=embedded:tiny-llama",
    "setting.reward_matrix=independent",
    "setting.exchange_every=1",
    "batch_size=2",
    "agents.generation.max_new_tokens=3",
    "train.checkpoint_every=1",
    "train.progress=false",
    "train.tensorboard=false",
    "train.sample_every=1",
]


class Recorded:
    """What the rollout touches on an env: every attribute it reads, counted."""

    def __init__(self, env):
        object.__setattr__(self, "_env", env)
        object.__setattr__(self, "touched", Counter())

    def __getattr__(self, name):
        self.touched[name] += 1
        return getattr(self._env, name)


@pytest.fixture
def register():
    ids = []

    def add(env_id, fn):
        register_pettingzoo(env_id, fn, overwrite=True)
        ids.append(env_id)

    yield add
    for env_id in ids:
        ENVS._items.pop(env_id, None)


def test_the_rollout_uses_only_pettingzoos_public_api(tmp_path, register):
    made = []

    def recorded():
        made.append(Recorded(Moves()))
        return made[-1]

    register("moves-v0", recorded)
    cfg = load_config(None, [*RUN, "env=moves-v0", "iterations=2"])
    Trainer(cfg, tmp_path).fit()
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["iteration"] for r in records] == [0, 1]
    for r in records:  # two moves each per game, both trained
        assert r["agent/llm_0/turns"] == r["agent/llm_1/turns"] == 2.0
        assert "agent/llm_0/kl" in r and "agent/llm_1/kl" in r
    touched = Counter()
    for env in made:
        touched.update(env.touched)
    public = {"possible_agents", "metadata", "reset", "agent_iter", "last", "step", "rewards"}
    public |= {"agents", "agent_selection", "observe"}  # what agent_iter itself reads
    assert set(touched) <= public, sorted(set(touched) - public)
    # per game: 1 reset, 1 agent_iter, 4 moves and 2 dead steps (a last() and a step each),
    # the rewards read after the reset and after every step; 2 iterations x 2 prompts
    assert touched["reset"] == 4 and touched["agent_iter"] == 4
    assert touched["step"] == touched["last"] == 4 * (4 + 2)
    assert touched["rewards"] == 4 * (1 + 4 + 2)
    assert "observe" not in touched  # last() hands the observation over


class Forfeit(Moves):
    """The second role forfeits before it ever acts: the first move ends the game."""

    moves = 1

    def hand_out(self, agent, action):
        self.rewards = {"white": 0.5, "black": -0.5}  # a win by forfeit


def _strip(records):
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "tokens_"))} for r in records]


def test_a_game_where_one_side_never_acts_trains_checkpoints_and_resumes(
    tmp_path, register, capsys
):
    register("forfeit-v0", Forfeit)
    full, part = tmp_path / "full", tmp_path / "part"
    Trainer(load_config(None, [*RUN, "env=forfeit-v0", "iterations=3"]), full).fit()
    Trainer(load_config(None, [*RUN, "env=forfeit-v0", "iterations=2"]), part).fit()
    cfg3 = load_config(None, [*RUN, "env=forfeit-v0", "iterations=3"])
    resumed = Trainer(cfg3, part, resume=True)
    assert resumed.iteration == 2
    resumed.fit()
    records = read_jsonl(full / "metrics.jsonl")
    assert _strip(read_jsonl(part / "metrics.jsonl")) == _strip(records)
    for r in records:  # seats swap every iteration: the agent in the second role never acts
        second = "llm_1" if r["iteration"] % 2 == 0 else "llm_0"
        first = "llm_0" if second == "llm_1" else "llm_1"
        p, q = f"agent/{second}/", f"agent/{first}/"
        assert r[p + "turns"] == 0.0 and p + "kl" not in r and p + "loss/policy" not in r
        assert r[p + "task_reward"] == -0.5 and r[p + "reward"] == -0.5
        assert r[p + "uncredited"] == -0.5 and r[p + "episode_return"] == 0.0
        assert r[q + "turns"] == 1.0 and r[q + "episode_return"] == 0.5 and q + "kl" in r
    a = load_checkpoint(latest_checkpoint(full / "checkpoints"))["learners"]
    b = load_checkpoint(latest_checkpoint(part / "checkpoints"))["learners"]
    for agent in a:
        for k, v in a[agent]["agent"].items():
            assert torch.equal(v, b[agent]["agent"][k]), (agent, k)
    capsys.readouterr()
    assert main(["check-env", "forfeit-v0"]) == 0
    out = capsys.readouterr().out
    assert "3/3: all checks passed" in out and "api_test (the env)" in out


# ------------------------------------------------------------------ ten faults
class IntObservation(Moves):
    def observe(self, agent):
        return 7


class StepRaises(Moves):
    def reward(self, agent, action):
        if len(self.log) == 2:
            raise RuntimeError("board exploded")
        return 0.0


class NeverEnds(Moves):
    moves = 10**9


class StuckOnDone(Moves):
    """After the game ends, a dead step neither removes the agent nor moves on."""

    moves = 2

    def step(self, action):
        if self.terminations[self.agent_selection]:
            return
        super().step(action)


class SelectsRemoved(Moves):
    """Removes an agent when it is done but keeps selecting it."""

    moves = 2

    def step(self, action):
        agent = self.agent_selection
        if self.terminations[agent]:
            self.agents.remove(agent)
            return
        super().step(action)


class StringReward(Moves):
    def step(self, action):
        agent = self.agent_selection
        super().step(action)
        self.rewards[agent] = "1"  # after PettingZoo's own bookkeeping, which would choke


class NanReward(Moves):
    def reward(self, agent, action):
        return float("nan") if len(self.log) == 3 else 0.0


class GrowingObservation(Moves):
    moves = 6

    def observe(self, agent):
        return f"Topic {self.topic}. " + "history " * 100 * (len(self.log) + 1) + f"{agent}:"


class OnlyWhite(Moves):
    """After the first move, only white gets turns."""

    def step(self, action):
        super().step(action)
        if not all(self.terminations.values()):
            self.agent_selection = "white"


FAULTS = {
    "good": (Moves, None, []),
    "int-observation": (IntObservation, "an observation must be a string", []),
    "step-raises": (StepRaises, "step() raised RuntimeError: board exploded", []),
    "never-ends": (NeverEnds, None, ["task.max_turns=6"]),
    "stuck-on-done": (StuckOnDone, "done but still selected after its dead step", []),
    "selects-removed": (SelectsRemoved, "which is not among the env's live agents", []),
    "string-reward": (StringReward, "is '1'; a reward must be a finite number", []),
    "nan-reward": (NanReward, "is nan; a reward must be a finite number", []),
    "growing-observation": (GrowingObservation, None, ["task.max_observation_chars=600"]),
    "growing-observation-unbounded": (
        GrowingObservation,
        "exceeds the model's 512 positions; set task.max_observation_chars",
        ["model=embedded:tiny-gpt2"],
    ),
    "only-white": (OnlyWhite, None, []),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_a_misbehaving_env_trains_or_stops_with_one_line(name, tmp_path, register, capsys):
    cls, error, extra = FAULTS[name]
    env_id = f"fault-{name}-v0"
    register(env_id, cls)
    out = tmp_path / "run"
    code = main(["train", *RUN, f"env={env_id}", "iterations=2", *extra, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    if error is None:
        assert code == 0, err
        records = read_jsonl(out / "metrics.jsonl")
        assert [r["iteration"] for r in records] == [0, 1]
        if name == "never-ends":  # cut at the bound: 6 steps, 3 moves each
            assert all(r["episodes/truncated"] == 1.0 for r in records)
            assert all(r["agent/llm_0/turns"] == 3.0 for r in records)
        if name == "only-white":  # black moved once, white the rest of the game
            turns = [r["agent/llm_0/turns"] + r["agent/llm_1/turns"] for r in records]
            assert turns == [4.0, 4.0]
        return
    assert code == 2, err
    assert len(err) == 1, err
    assert err[0].startswith("seqmarl: error: ") and error in err[0], err[0]
    assert repr(env_id) in err[0] and "agent llm_" in err[0], err[0]


class LateFault(Moves):
    """Fine for two iterations (4 games), then a step raises."""

    games = 0

    def reset(self, seed=None, options=None):
        type(self).games += 1
        super().reset(seed, options)

    def reward(self, agent, action):
        if type(self).games > 4:
            raise ValueError("late")
        return 0.0


def test_a_fault_after_checkpoints_leaves_them_intact(tmp_path, register, capsys):
    LateFault.games = 0
    register("late-fault-v0", LateFault)
    out = tmp_path / "run"
    code = main(["train", *RUN, "env=late-fault-v0", "iterations=4", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "step() raised ValueError: late" in err[0], err
    last = latest_checkpoint(out / "checkpoints")
    assert last is not None and load_checkpoint(last)["iteration"] == 2
    assert [r["iteration"] for r in read_jsonl(out / "metrics.jsonl")] == [0, 1]


def test_an_env_observation_space_that_is_not_text_is_still_read_as_text():
    # a Dict observation with a "text" string is read too (the form seqmarl's own envs use)
    class DictObs(Moves):
        dict_observations = True

    from seqmarl.envs.game import AECGame

    game = AECGame(DictObs)
    game.reset(game.sample_prompts(1, 0), game.possible_agents)
    assert game.observe("llm_0", [0])[0].startswith("Topic ")
