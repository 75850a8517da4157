import json
import re
import subprocess
import sys

import pytest

from seqmarl.cli import main
from seqmarl.envs import ArithmeticTask
from tests.conftest import require_shared


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "seqmarl.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_list_json(capsys):
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"envs", "env_suites", "settings", "algorithms"}
    assert data["env_suites"] == {
        "textarena": "textarena/<TextArena id>",
        "openspiel": "openspiel/<game>-v0",
    }
    assert "arithmetic-v0" in data["envs"]
    assert {"single", "cory", "cory-no-transfer", "cory-no-exchange", "cory-causal"} <= set(
        data["settings"]
    )
    assert {"ppo", "reinforce", "rloo", "grpo"} <= set(data["algorithms"])


def test_list_human(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "arithmetic-v0" in out and "cory-no-transfer" in out and "ppo" in out


@pytest.mark.parametrize("n", [1, 3])
def test_check_env_exit_zero(capsys, n):
    assert main(["check-env", "arithmetic-v0", "--num-agents", str(n)]) == 0
    out = capsys.readouterr().out
    assert "7/7: all checks passed" in out


class RecordingTask(ArithmeticTask):
    """arithmetic-v0 that keeps the arguments it was built with (``check-env tests.test_cli:...``)."""

    built: list[dict] = []  # noqa: RUF012 (appended to by every instance, read by the test)

    def __init__(self, *, limit=10, split="train", one_shot=True, tag=None):
        super().__init__()
        RecordingTask.built.append(
            {"limit": limit, "split": split, "one_shot": one_shot, "tag": tag}
        )


def test_check_env_passes_typed_task_arguments_to_the_task(capsys):
    RecordingTask.built.clear()
    args = ["limit=50", "split=test", "one_shot=false", "tag=[1, 2]", "rounds=2"]
    assert main(["check-env", "tests.test_cli:RecordingTask", *args, "--num-agents", "3"]) == 0
    assert "7/7: all checks passed" in capsys.readouterr().out
    # every env the checks built got the values as YAML reads them (task.kwargs' rule)
    want = {"limit": 50, "split": "test", "one_shot": False, "tag": [1, 2]}
    assert RecordingTask.built and all(b == want for b in RecordingTask.built)
    assert all(type(b["limit"]) is int and b["one_shot"] is False for b in RecordingTask.built)


def test_check_env_with_an_unknown_task_argument_is_one_line_and_exit_2():
    proc = run_cli("check-env", "arithmetic-v0", "max_operands=3", "ops=*")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "seqmarl: error: env 'arithmetic-v0' (task ArithmeticTask): unknown task argument "
        "'max_operands' (did you mean 'max_operand'?); it accepts: max_operand, ops; env options: "
        "reward_matrix, knowledge_transfer, credit, max_text_length, render_mode, rounds, "
        "max_observation_chars, max_turns, observation_template, action_prefix"
    ]
    proc = run_cli("check-env", "arithmetic-v0", "num_agents=3")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "seqmarl: error: num_agents=...: not a task argument; use --num-agents N"
    ]


def test_check_env_reads_gsm8k_from_a_local_copy(capsys):
    """gsm8k-debate-v0's default source is the hub; source= makes check-env work offline."""
    src = require_shared("data", "gsm8k")
    args = [f"source={src}", "split=test", "limit=50", "rounds=2", "--num-agents", "3"]
    assert main(["check-env", "gsm8k-debate-v0", *args]) == 0
    assert "7/7: all checks passed" in capsys.readouterr().out


def test_env_demo_takes_task_arguments_with_or_without_an_env_id(capsys):
    for head in ([], ["arithmetic-v0"]):
        argv = ["env-demo", *head, "ops=*", "max_operand=3", "--episodes", "4"]
        assert main(argv) == 0
        questions = re.findall(r"What is (\d+) (.) (\d+)\?", capsys.readouterr().out)
        assert len(questions) == 4  # the default (ops +-, up to 20) would show + and -
        assert all(op == "*" and int(a) <= 3 and int(b) <= 3 for a, op, b in questions)


def test_env_demo_prints_transcripts_and_rotates_seats(capsys):
    assert main(["env-demo", "arithmetic-v0", "--episodes", "2", "--num-agents", "2"]) == 0
    out = capsys.readouterr().out
    assert "episode 0: seats ['llm_0', 'llm_1']" in out
    assert "episode 1: seats ['llm_1', 'llm_0']" in out
    assert out.count("task_reward=") == 4


def test_env_demo_plays_a_registered_pettingzoo_env(capsys):
    """A plain AEC env has no task inside: the demo plays it through the public AEC calls."""
    from seqmarl.envs import ENVS, register_pettingzoo
    from tests.fake_games import DigitGame

    register_pettingzoo("digit-demo-v0", DigitGame, overwrite=True)
    try:
        assert main(["env-demo", "digit-demo-v0", "--episodes", "2", "-v"]) == 0
    finally:
        ENVS._items.pop("digit-demo-v0", None)
    out = capsys.readouterr().out
    assert "episode 0: seats ['llm_0', 'llm_1']" in out
    assert "episode 1: seats ['llm_1', 'llm_0']" in out
    assert out.count("<llm_0 sees> 'Topic ") == 4  # two moves each per episode
    assert out.count("task_reward=") == 4


@pytest.mark.parametrize("env_id", ["openspiel/tic_tac_toe-v0", "textarena/TicTacToe-v0"])
def test_env_demo_plays_suite_games_to_the_end(capsys, env_id):
    pytest.importorskip("shimmy" if env_id.startswith("openspiel") else "textarena",
                        reason="the games extra (seqmarl[games]) is not installed")  # fmt: skip
    assert main(["env-demo", env_id, "--episodes", "2", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "episode 1: seats ['llm_1', 'llm_0']" in out
    rewards = [float(r) for r in re.findall(r"task_reward=([-+]\d\.\d+)", out)]
    assert len(rewards) == 4 and all(r in (-1.0, 0.0, 1.0) for r in rewards)
    assert re.search(r"llm_[01]: '\[\d\]'", out)  # a listed move was played
    assert "cut at" not in out  # random legal moves end a game of tic-tac-toe


def test_user_errors_are_one_line_without_traceback():
    proc = run_cli("check-env", "arithmetc-v0", "--num-agents", "2")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "seqmarl: error: unknown env 'arithmetc-v0'. Did you mean 'arithmetic-v0'? "
        "Registered envs: arithmetic-v0, "
    )
    from seqmarl.envs import ENVS

    assert ", ".join(ENVS.names()) in lines[0]  # every registered id is listed
    assert "Traceback" not in proc.stderr
    proc = run_cli("env-demo", "--setting", "single", "--num-agents", "2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "needs exactly 1 agent" in proc.stderr


def test_train_config_errors_are_one_line_before_any_model_loads(tmp_path):
    proc = run_cli(
        "train", "model=embedded:tiny-llama", "setting.num_agent=3", "--out", str(tmp_path)
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [
        "seqmarl: error: config error: setting.num_agent: unknown field (did you mean "
        "'num_agents'?); allowed: name, num_agents, reward_matrix, schedule, exchange_every, "
        "permutations, knowledge_transfer, credit"
    ]
    assert not (tmp_path / "config.yaml").exists()


def test_train_refuses_to_overwrite_a_run_and_resume_needs_one(tmp_path):
    (tmp_path / "checkpoints" / "iter_000001").mkdir(parents=True)  # incomplete: no meta.json
    proc = run_cli("train", "model=embedded:tiny-llama", "--out", str(tmp_path))
    assert proc.returncode == 2 and "no complete checkpoint" in proc.stderr
    assert "--overwrite" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("train", "--resume", str(tmp_path / "nothing"))
    assert proc.returncode == 2 and "no config.yaml" in proc.stderr


def test_eval_plot_and_pass_at_k_commands(tmp_path, capsys):
    from seqmarl.config import load_config
    from seqmarl.train.trainer import Trainer

    run = tmp_path / "run"
    cfg = load_config(
        None,
        [
            "model=embedded:tiny-llama",
            "env=arithmetic-v0",
            "iterations=2",
            "batch_size=2",
            "agents.generation.max_new_tokens=4",
            "train.progress=false",
        ],
    )
    Trainer(cfg, run).fit()
    assert main(["eval", str(run), "--prompts", "4"]) == 0
    result = json.loads((run / "eval" / "eval.json").read_text())
    assert set(result["agents"]) == {"llm_0", "llm_1"} and result["num_prompts"] == 4
    assert (
        main(["plot", str(run), str(run), "--labels", "a", "b", "--out", str(tmp_path / "p")]) == 0
    )
    assert (tmp_path / "p" / "reward_vs_kl.png").exists()
    out = tmp_path / "passk"
    assert (
        main(
            [
                "eval",
                "--model",
                "embedded:tiny-llama",
                "env=arithmetic-v0",
                "--pass-k",
                "3",
                "--prompts",
                "5",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    table = json.loads((out / "llm_0" / "passk.json").read_text())["pass_at_k"]
    assert list(table) == ["1", "2", "3"] and all(0.0 <= v <= 1.0 for v in table.values())
    assert (out / "llm_0" / "passk.png").exists() and (out / "llm_0" / "passk.md").exists()
    assert main(["plot", str(tmp_path / "nope")]) == 2
    capsys.readouterr()
