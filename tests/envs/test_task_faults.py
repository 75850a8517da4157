"""A task's faults end in one TaskError naming the env, the task class, the row and the value."""

import numpy as np
import pytest
import torch

from seqmarl import envs
from seqmarl.agents import AgentPool, tiny_model_and_tokenizer
from seqmarl.config import GenerationConfig
from seqmarl.envs import DatasetTask, FormatTemplate, Prompt, TextTask
from seqmarl.errors import SeqmarlError, TaskError
from seqmarl.train.rollout import play

BAD_ROW = 2  # the prompt (and so the rollout row, with one copy) whose reward is broken


class FaultyTask(TextTask):
    """Prompts ``Question: q<i>``; the reward of prompt ``q2`` is ``bad`` (or raises it)."""

    def __init__(self, bad=0.0, *, template=None, prompts=None):
        super().__init__(template=template)
        self.bad = bad
        self.prompts = prompts

    def sample_prompts(self, n, rng=None):
        if self.prompts is not None:
            return self.prompts
        return [Prompt(f"Question: q{i}", meta={"i": i}) for i in range(n)]

    def score(self, prompt, response):
        if prompt.meta.get("i") != BAD_ROW:
            return 1.0
        if isinstance(self.bad, Exception):
            raise self.bad
        return self.bad


class WrongCountTask(FaultyTask):
    def score_batch(self, prompts, responses):
        return [1.0] * (len(prompts) - 1)


class BatchOnlyFailure(FaultyTask):
    """``score_batch`` fails on any batch, ``score`` works on every pair (e.g. an OOM)."""

    def score_batch(self, prompts, responses):
        raise MemoryError("the reward model ran out of memory")


@pytest.fixture(autouse=True)
def clean_registry():
    """Take this module's (deliberately broken) envs out of the registry afterwards."""
    before = set(envs.ENVS.names())
    yield
    for name in set(envs.ENVS.names()) - before:
        envs.ENVS._items.pop(name)


def make_env(task, num_agents=2):
    envs.register_env("faulty-v0", lambda: task, overwrite=True)
    return envs.make("faulty-v0", num_agents=num_agents)


@pytest.fixture(scope="module")
def pool():
    model, tok = tiny_model_and_tokenizer("llama", seed=0)
    gen = GenerationConfig(max_new_tokens=3)
    return AgentPool(model, tok, ("llm_0", "llm_1"), mode="shared", generation=gen)


def play_batch(task, pool, n=4):
    env = make_env(task)
    prompts = env.sample_prompts(n, 0)
    gen = torch.Generator().manual_seed(0)
    return play(env.as_game(), pool.agents, prompts, ["llm_0", "llm_1"], generator=gen)


BAD_REWARDS = [
    (float("nan"), "returned nan", "finite"),
    (float("inf"), "returned inf", "finite"),
    (-np.inf, "returned -inf", "finite"),
    ("good", "returned 'good' (str)", "not a number"),
    (None, "returned None (NoneType)", "not a number"),
]


@pytest.mark.parametrize(("bad", "value", "why"), BAD_REWARDS)
def test_bad_reward_in_a_rollout_names_env_task_row_and_value(pool, bad, value, why):
    with pytest.raises(TaskError) as info:
        play_batch(FaultyTask(bad), pool)
    msg = str(info.value)
    assert msg.startswith("env 'faulty-v0' (task FaultyTask): score_batch() ")
    assert value in msg and why in msg
    assert f"row {BAD_ROW} (agent llm_0)" in msg  # the first broken pair
    assert "prompt 'Question: q2'" in msg and "response " in msg
    assert "\n" not in msg
    assert isinstance(info.value, SeqmarlError)  # the CLI prints it as one line, exit 2


def test_an_exception_in_the_reward_names_the_row_and_keeps_the_cause(pool):
    with pytest.raises(TaskError) as info:
        play_batch(FaultyTask(ZeroDivisionError("division by zero")), pool)
    msg = str(info.value)
    assert msg.startswith("env 'faulty-v0' (task FaultyTask): scoring raised ZeroDivisionError")
    assert f"division by zero on row {BAD_ROW} (agent llm_0)" in msg
    assert "prompt 'Question: q2'" in msg
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_a_batch_only_failure_says_no_single_row_fails(pool):
    with pytest.raises(
        TaskError,
        match=r"score_batch\(\) raised MemoryError: the reward model "
        r"ran out of memory on a batch of 8 pairs \(each pair scores",
    ) as info:
        play_batch(BatchOnlyFailure(), pool)
    assert isinstance(info.value.__cause__, MemoryError)


def test_the_wrong_number_of_rewards_is_named(pool):
    with pytest.raises(
        TaskError,
        match=r"^env 'faulty-v0' \(task WrongCountTask\): score_batch\(\) returned 7 rewards "
        r"for 8 \(prompt, response\) pairs",
    ):
        play_batch(WrongCountTask(), pool)


@pytest.mark.parametrize(
    "values",
    [np.ones(4, dtype=np.float32), torch.ones(4), [1, True, np.float64(2.0), torch.tensor(0.5)]],
)
def test_numbers_of_any_real_kind_pass_the_check(values):
    from seqmarl.envs.guard import check_rewards

    prompts = [Prompt("q")] * 4
    out = check_rewards(values, prompts, ["r"] * 4, task=FaultyTask())
    assert out.dtype == np.float64 and out.shape == (4,) and np.isfinite(out).all()


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (float("nan"), r"score_batch\(\) returned nan for agent llm_0"),
        ("x", r"score_batch\(\) returned 'x' \(str\) for agent llm_0, not a number"),
        (KeyError("label"), r"scoring raised KeyError: 'label' on agent llm_0"),
    ],
)
def test_an_env_stepped_by_hand_raises_the_same_error(bad, match):
    env = make_env(FaultyTask(bad))
    env.reset(options={"prompt": Prompt("Question: q2", meta={"i": BAD_ROW})})
    env.step("a")
    with pytest.raises(TaskError, match=r"^env 'faulty-v0' \(task FaultyTask\): " + match):
        env.step("b")


@pytest.mark.parametrize("text", ["", "   \n"])
def test_an_empty_prompt_is_caught_before_the_model(text):
    task = FaultyTask(prompts=[Prompt("Question: a"), Prompt(text, reference="5")])
    env = make_env(task)
    with pytest.raises(
        TaskError,
        match=r"^env 'faulty-v0' \(task FaultyTask\): sample_prompts\(2\) item 1 has empty text "
        + repr(text).replace("\\", "\\\\")
        + r" \(reference '5'\)",
    ):
        env.sample_prompts(2, 0)
    with pytest.raises(TaskError, match="options\\['prompt'\\] item 0 has empty text"):
        env.reset(options={"prompt": text})


def test_an_empty_prompt_given_to_play_names_its_index(pool):
    env = make_env(FaultyTask())
    prompts = [Prompt("Question: a"), Prompt("Question: b"), Prompt("")]
    with pytest.raises(TaskError, match=r"the batch's prompts item 2 has empty text ''"):
        play(env.as_game(), pool.agents, prompts, ["llm_0", "llm_1"])


@pytest.mark.parametrize(
    ("prompts", "match"),
    [
        (
            [Prompt("Question: a")],
            r"sample_prompts\(2\) returned 1 prompts; it must return exactly 2",
        ),
        (["Question: a", "Question: b"], r"sample_prompts\(2\) item 0 is a str .*not a Prompt"),
        (None, r"sample_prompts\(2\) raised TypeError"),
    ],
)
def test_sample_prompts_must_return_n_prompt_objects(prompts, match):
    env = make_env(FaultyTask(prompts=prompts if prompts is not None else 42))
    with pytest.raises(TaskError, match=match):
        env.sample_prompts(2, 0)


def test_an_empty_observation_names_the_agent_and_the_prompt():
    template = FormatTemplate(later="{previous}")  # an empty first answer leaves nothing to read
    env = make_env(FaultyTask(template=template))
    env.reset(options={"prompt": "Question: q0"})
    env.step("")
    with pytest.raises(
        TaskError,
        match=r"^env 'faulty-v0' \(task FaultyTask\): observe\(\) for llm_1 after 1 earlier "
        r"responses gave an empty observation '' \(prompt 'Question: q0'\)",
    ):
        env.observe("llm_1")


def test_a_raising_template_is_a_task_error():
    env = make_env(FaultyTask(template=FormatTemplate(later="{prompt} {answer}")))
    env.reset(options={"prompt": "Question: q0"})
    env.step("4")
    with pytest.raises(TaskError, match=r"observe\(\) for llm_1 .* raised KeyError: 'answer'"):
        env.observe("llm_1")


def test_dataset_task_rewards_are_checked_per_row():
    rows = [{"q": f"q{i}"} for i in range(3)]

    def reward(prompts, responses):
        return [float("nan") if p.text == "q1" else 0.0 for p in prompts]

    task = DatasetTask(rows, to_prompt=lambda r: Prompt(r["q"]), reward=reward)
    env = envs.SequentialTextEnv(task, num_agents=1, env_id="data-v0")
    env.reset(options={"prompt": "q1"})
    with pytest.raises(TaskError, match=r"^env 'data-v0' \(task DatasetTask\): .*returned nan"):
        env.step("x")
    with pytest.raises(TaskError, match=r"^task DatasetTask: reward returned nan for pair 0"):
        task.score(Prompt("q1"), "x")


# ---------------------------------------------------------------- a run that meets a bad reward
class NanFromIteration(envs.ArithmeticTask):
    """Arithmetic whose rewards turn NaN at iteration ``at`` (one score_batch call each)."""

    def __init__(self, at=3):
        super().__init__()
        self.at, self.calls = at, 0

    def score_batch(self, prompts, responses):
        out = super().score_batch(prompts, responses)
        self.calls += 1
        if self.calls > self.at:
            out[1] = float("nan")
        return out


def test_a_nan_reward_at_iteration_3_stops_the_run_with_earlier_outputs_intact(tmp_path):
    from seqmarl.config import load_config
    from seqmarl.run.checkpoint import list_checkpoints, load_checkpoint
    from seqmarl.run.sinks import read_jsonl
    from seqmarl.train.trainer import Trainer

    envs.register_env("nan-at-three-v0", NanFromIteration, overwrite=True)
    cfg = load_config(
        None,
        [
            "model=embedded:tiny-llama",
            "env=nan-at-three-v0",
            "batch_size=2",
            "iterations=6",
            "agents.generation.max_new_tokens=3",
            "algo.params.epochs=1",
            "train.checkpoint_every=2",
            "train.progress=false",
        ],
    )
    trainer = Trainer(cfg, tmp_path)
    with pytest.raises(TaskError) as info:
        trainer.fit()
    msg = str(info.value)
    assert msg.startswith(
        "env 'nan-at-three-v0' (task NanFromIteration): score_batch() returned nan"
    )
    assert "row 0 (agent llm_1)" in msg  # pair 1 = row 0, second agent
    assert [r["iteration"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [0, 1, 2]
    # nothing written for the half-done iteration 3
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["iter_000002"]
    (ckpt,) = list_checkpoints(tmp_path / "checkpoints")
    assert load_checkpoint(ckpt)["iteration"] == 2


TASK_MODULE = """
from seqmarl import envs


class BadRewardTask(envs.ArithmeticTask):
    def score(self, prompt, response):
        return "high"


def factory():
    return BadRewardTask()
"""


def test_the_cli_prints_one_line_naming_the_task_and_exits_2(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "badtask.py").write_text(TASK_MODULE)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)])}
    args = [
        "train",
        "env=badtask:factory",
        "model=embedded:tiny-llama",
        "batch_size=2",
        "iterations=2",
        "agents.generation.max_new_tokens=3",
        "train.progress=false",
        "--out",
        str(tmp_path / "run"),
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "seqmarl", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(
        "seqmarl: error: env 'badtask:factory' (task BadRewardTask): score_batch() returned 'high' "
        "(str) for row 0 (agent llm_0), not a number (prompt 'Question: What is"
    )


class ConvertingTask(FaultyTask):
    """A ``score_batch`` that converts with ``float()``: a bad value makes it raise."""

    def score_batch(self, prompts, responses):
        return [float(self.score(p, r)) for p, r in zip(prompts, responses, strict=True)]


def test_a_batch_that_fails_on_a_bad_value_names_the_value():
    env = make_env(ConvertingTask("good"))
    env.reset(options={"prompt": Prompt("Question: q2", meta={"i": BAD_ROW})})
    env.step("a")
    with pytest.raises(
        TaskError, match=r"score\(\) returned 'good' \(str\) for agent llm_0, not a number"
    ) as info:
        env.step("b")
    assert isinstance(info.value.__cause__, ValueError)  # float('good') in score_batch
