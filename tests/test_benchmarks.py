"""Smoke tests of benchmark scripts that reach into seqmarl internals (they must not rot)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ragged_update_benchmark_prints_its_table():
    out = subprocess.run(
        [sys.executable, "benchmarks/ragged_update.py", "--rows", "6", "--repeats", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [line for line in out.splitlines() if line.startswith("| tiny |")]
    assert len(rows) == 3, out
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        padded, packed, chunked = (int(x) for x in cells[2].split(" / "))
        assert padded >= packed >= chunked > 0  # each layout reads no more than the last
        assert all(re.fullmatch(r"\d+\.\d+x", c) for c in cells[-2:])


def test_scaling_benchmark_compares_world_sizes(tmp_path):
    """World size 1 (single and through torchrun) and 2 train; ratios are against dp x 1."""
    cmd = [sys.executable, "benchmarks/scaling.py", "--models", "tiny", "--iterations", "3"]
    cmd += ["--warmup", "1", "--batch-size", "2", "--world-sizes", "1", "2"]
    cmd += ["--max-new-tokens", "4", "--timeout", "120", "--json", str(tmp_path / "r.json")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {}
    for line in proc.stdout.splitlines():
        if line.startswith("| tiny |"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[1]] = cells
    assert list(rows) == ["single", "dp x 1", "dp x 2"], proc.stdout
    for cells in rows.values():
        assert re.fullmatch(r"\d+\.\d+ ± \d+\.\d+", cells[3]), cells
        assert re.fullmatch(r"\d+\.\d+x", cells[7]) and re.fullmatch(r"\d+%", cells[8]), cells
    assert rows["dp x 1"][7] == "1.00x" and rows["dp x 1"][8] == "100%"
    assert rows["single"][9] == "1.00x"
    data = {r["run"]: r for r in json.loads((tmp_path / "r.json").read_text())}
    assert {r["strategy"] for r in data.values()} == {"single", "data_parallel"}
    for r in data.values():  # 2 prompts x 1 sample x 2 agents per iteration
        assert r["completions_per_iteration"] == 4
        assert abs(r["samples_per_s"] * r["s_per_it"] - 4) < 1e-9
    two = data["dp x 2"]
    assert two["world_size"] == 2
    assert abs(two["speed_up"] - data["dp x 1"]["s_per_it"] / two["s_per_it"]) < 1e-9
    assert abs(two["efficiency"] - two["speed_up"] / 2) < 1e-9


def test_debate_check_writes_one_step_gsm8k_problems_the_debate_env_loads(tmp_path):
    """benchmarks/debate_check.py: GSM8K-format records whose single `<<a op b=c>>` step is
    right, which gsm8k-debate-v0 loads as a local folder and scores 1 on their own solution;
    its overrides are a valid config."""
    from benchmarks.debate_check import TRAIN_OVERRIDES, write_dataset
    from seqmarl.config import load_config
    from seqmarl.envs.tasks.debate import GSM8KDebateTask
    from seqmarl.envs.tasks.gsm8k import reference_answer

    folder = write_dataset(tmp_path / "data", train=60, test=10, seed=3)
    rows = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 60 and len((folder / "test.jsonl").read_text().splitlines()) == 10
    ops = set()
    for row in rows:
        steps = re.findall(r"<<(\d+)([-+*])(\d+)=(\d+)>>", row["answer"])
        assert len(steps) == 1 and row["answer"].count("<<") == 1, row
        a, op, b, c = steps[0]
        ops.add(op)
        want = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
        assert int(c) == want == reference_answer(row["answer"]) > 0, row
        assert a in row["question"] and b in row["question"]
    assert ops == {"+", "-", "*"}
    # seeded: the same seed writes the same file, another seed another
    again = write_dataset(tmp_path / "again", train=60, test=10, seed=3)
    assert (again / "train.jsonl").read_text() == (folder / "train.jsonl").read_text()
    other = write_dataset(tmp_path / "other", train=60, test=10, seed=4)
    assert (other / "train.jsonl").read_text() != (folder / "train.jsonl").read_text()

    task = GSM8KDebateTask(source=str(folder), split="train")
    assert len(task.prompts) == 60
    p = task.prompts[0]
    assert p.text.endswith(f"Question: {rows[0]['question']}\nAnswer:")
    assert task.score(p, p.meta["solution"].split("####")[0]) == 1.0
    assert task.score(p, "The answer is 1000.") == 0.0

    cfg = load_config(None, [*TRAIN_OVERRIDES, f"task.kwargs.source={folder}"])
    assert cfg.task.env == "gsm8k-debate-v0" and cfg.task.rounds == 2


def test_throughput_measures_a_baseline_revision_in_the_same_run():
    """--baseline REV runs each seqmarl row on REV's exported code too, and tabulates the ratio."""
    cmd = [sys.executable, "benchmarks/throughput.py", "--models", "tiny", "--algos"]
    cmd += ["--cory-modes", "shared", "--steps", "1", "--warmup", "1", "--batch", "2"]
    cmd += ["--group", "2", "--new-tokens", "4", "--pairs", "1", "--baseline", "HEAD"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("  ... on HEAD:") == 2  # both rows ran on the exported revision
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| tiny | ppo |")]
    paired = [r for r in rows if r.count("|") == 10]  # the now/before table's rows
    assert [r.split("|")[3].strip() for r in paired] == ["single", "cory"], proc.stdout
    for row in paired:
        cells = [c.strip() for c in row.strip("|").split("|")]
        now, before, ratio = float(cells[5]), float(cells[6]), float(cells[7].rstrip("x"))
        # the ratio of the unrounded figures: within what the printed one-decimal values allow
        # (on a slow machine the figures are small and the rounding is a large share of them)
        low, high = (now - 0.05) / (before + 0.05), (now + 0.05) / max(before - 0.05, 1e-9)
        assert low - 0.005 <= ratio <= high + 0.005, row


def test_a_trl_row_runs_on_the_lock():
    """benchmarks/throughput.py's TRL rows run on the locked TRL (a GRPO row, one step)."""
    pytest.importorskip("trl", reason="TRL is not installed (pip install -e '.[dev]')")
    cmd = [sys.executable, "benchmarks/throughput.py", "--models", "tiny", "--algos", "grpo"]
    cmd += ["--cory-modes", "--steps", "1", "--warmup", "1", "--batch", "2", "--group", "2"]
    cmd += ["--new-tokens", "4"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| tiny | grpo |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[2]) > 0 and float(cells[3]) > 0, row  # seqmarl's and TRL's samples/s


def test_mixed_update_benchmark_times_every_mode_in_process():
    """The child of benchmarks/mixed_update.py, in this process (no model files, seconds)."""
    import argparse

    import torch

    import seqmarl.agents.sampling as sampling
    from benchmarks.mixed_update import MODES, child

    ns = argparse.Namespace(
        model="tiny", model_path=None, n=2, first="mixed", rows=2, answer=2, repeats=1,
        threads=1, device="cpu", modes=list(MODES),
    )  # fmt: skip
    threads = torch.get_num_threads()
    try:
        out = child(ns)
    finally:
        torch.set_num_threads(threads)
    assert sampling.MIXED_ENGINE == "blocks"  # put back
    assert out["first"] == "mixed" and out["peak_mib"] >= 0
    assert set(out["times"]) == set(MODES)
    assert all(len(t) == 1 and t[0] > 0 for t in out["times"].values())
