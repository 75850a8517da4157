"""What ``train`` and ``eval`` print: each fact once, with its uncertainty."""

import pytest

from seqmarl.cli import main

TINY = [
    "model=embedded:tiny-llama",
    "env=arithmetic-v0",
    "batch_size=3",
    "agents.generation.max_new_tokens=5",
    "algo.params.epochs=1",
    "train.progress=false",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished two-iteration run."""
    out = tmp_path_factory.mktemp("run") / "r"
    assert main(["train", *TINY, "iterations=2", "--out", str(out)]) == 0
    return out


def test_standard_error_of_the_mean():
    from seqmarl.eval.evaluate import standard_error

    # std(ddof=1) of 1, 2, 3, 4 is sqrt(5/3); over sqrt(4)
    assert standard_error([1.0, 2.0, 3.0, 4.0]) == pytest.approx((5 / 3) ** 0.5 / 2)
    assert standard_error([0.5]) is None and standard_error([]) is None


def test_plain_eval_prints_and_writes_standard_errors(run, tmp_path, capsys, monkeypatch):
    import json

    import seqmarl.eval.evaluate as evaluate

    seen = []

    def recording(values):
        seen.append(list(values))
        return standard_error(values)

    standard_error = evaluate.standard_error
    monkeypatch.setattr(evaluate, "standard_error", recording)
    capsys.readouterr()
    assert main(["eval", str(run), "--prompts", "6", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "eval.json").read_text())
    # per agent: task_reward, reward over the 6 prompts; kl over its turns
    assert [len(v) for v in seen] == [6, 6, 6] * 2
    for i, agent in enumerate(("llm_0", "llm_1")):
        row = result["agents"][agent]
        task, reward, kl = seen[3 * i : 3 * i + 3]
        assert row["task_reward_se"] == standard_error(task)
        assert row["reward_se"] == standard_error(reward)
        assert row["kl_se"] == pytest.approx(standard_error(kl)) and row["kl_se"] > 0
        line = next(ln for ln in out.splitlines() if ln.startswith(f"{agent} (seat"))
        assert f"task_reward {row['task_reward']:+.4f}±{row['task_reward_se']:.4f}" in line
        assert f"reward {row['reward']:+.4f}±{row['reward_se']:.4f}" in line
        assert f"kl {row['kl']:.4f}±{row['kl_se']:.4f}" in line


def test_round_robin_never_overwrites_its_ratings_or_their_plot(run, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["eval", str(run), "--round-robin", "--prompts", "2", "--out", str(out)]
    assert main(args) == 0
    first = (out / "ratings.png").read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and (out / "ratings.json").is_file()
    capsys.readouterr()
    assert main(args) == 0
    said = capsys.readouterr().out
    assert f"wrote {out / 'ratings-2.json'} and {out / 'ratings-2.png'}" in said
    assert (out / "ratings.png").read_bytes() == first  # the first plot is kept as it was
    assert (out / "ratings-2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_resume_message_is_printed_once(run):
    """As a user runs it: the command's whole output, stdout and stderr."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "seqmarl", "train", "--resume", str(run), "iterations=3"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    said = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "resum" in ln]
    assert said == [f"resuming from {run / 'checkpoints' / 'iter_000002'} (iteration 2)"]
