"""Tiny training runs reproduce stored metrics on any CPU that has the locked package versions.

``tests/data/single_round_reference.json`` holds the metrics of two tiny 3-iteration runs
(three agents with RLOO and seat rotation; two competitive agents with PPO). Regenerate it when
the lock changes, or when a change is meant to change the numbers::

    python -m tests.test_single_round_reference --write

Two kinds of sameness are checked.

* Within one environment a run is deterministic: the same run twice gives bit-equal metrics.
* Against the stored file, on any machine whose package versions match the file's (elsewhere
  the comparison is skipped, naming both): another CPU make runs other vector kernels and
  reduction orders, so float32 results differ in their last bits. So

  - what follows from the config and the sampled text alone is compared exactly: integers and
    names (seat, algo, turns), the learning rate, rewards, returns and lengths. A sampled
    token flipped by a last-bit change of a probability would show here; at about 1e-7 per
    draw over the ~300 draws of these runs it is not expected;
  - every other float went through float32 arithmetic and must agree within
    ``TOL * scale``: ``TOL`` is 2**10 float32 epsilons (1.2e-4), and ``scale`` is the larger of
    the stored value and the scale of what the metric is made of: 1 for the rewards,
    advantages and losses (rewards lie in [0, 1]), ``response_length * entropy`` (the summed
    |log p| of a response) for the log-prob differences (KL and its estimates), so that a
    quantity that is zero by construction (a first-epoch ``approx_kl`` of 1e-13, a whitened
    ``advantage_mean`` of 1e-8) is compared absolutely, on the scale of its inputs.

  The largest deviation seen from two stand-ins for another CPU make, on an AMD EPYC with
  AVX512 kernels (2026-12-07): two threads instead of one (another reduction order) and
  ``ATEN_CPU_CAPABILITY=avx2`` (other vector kernels) was 57 epsilons of scale, in a PPO
  ``grad_norm`` (a norm over every gradient element, the longest sum in these runs); every
  other metric stayed within 19. 2**10 leaves a factor of 18. Both stand-ins run below,
  against the file (``default``, the scalar kernels, in the test).

The runs use a dense reward (every response earns a share of bytes), so every update follows a
real advantage. On a reward that a random tiny model never earns, the advantages are rounding
noise and Adam divides a 1e-8 gradient by its own size: the runs then amplify the last bit and
no tolerance holds across machines.

A real change still fails: a one-ulp change of the learning rate (it moves the weights by 1e-16
of an update, below float32's resolution, so it is caught by the recorded ``lr``), another KL
estimator, or another seat order. Those three are tested too.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seqmarl.config import load_config
from seqmarl.envs import ArithmeticTask
from seqmarl.run.sinks import read_jsonl
from seqmarl.train.trainer import Trainer

#: float32 epsilon times the allowed growth of rounding over three training iterations
TOL = 2.0**10 * 2.0**-23
PATH = Path(__file__).parent / "data" / "single_round_reference.json"
REFERENCE = json.loads(PATH.read_text())
#: the packages whose version decides the numbers (the CPU does not, within TOL)
PACKAGES = ("torch", "transformers", "peft", "numpy")
#: floats that follow from the config and the sampled text alone: compared exactly
EXACT = {
    "lr",
    "task_reward",
    "reward",
    "episode_return",
    "uncredited",
    "others_reward_corr",
    "turns",
    "truncated",
    "response_length",
    "query_length",
}
#: log-prob differences: their scale is a response's summed |log p|
LOGPROB = {"kl", "kl_to_ref", "approx_kl", "rollout_kl", "adv_kl_penalty"}


class DenseArithmetic(ArithmeticTask):
    """Arithmetic prompts with a reward that every response earns a different share of.

    The mean of ``(byte % 5) / 4`` over the response's UTF-8 bytes: a random tiny model's
    answers score between 0 and 1, so every update follows a real advantage.
    """

    def score(self, prompt, response):
        data = response.encode()
        return sum(b % 5 for b in data) / (4 * len(data)) if data else 0.0


def versions() -> dict[str, str]:
    """The versions that decide the numbers."""
    from importlib.metadata import version

    return {name: version(name) for name in PACKAGES}


BASE = [
    "model=embedded:tiny-llama",
    "env=tests.test_single_round_reference:DenseArithmetic",  # not registered: no other test sees it
    "batch_size=3",
    "agents.generation.max_new_tokens=5",
    "algo.params.epochs=1",
    "algo.params.lr=1e-3",
    "iterations=3",
    "train.progress=false",
    "train.tensorboard=false",
    "train.checkpoint_every=100",
]
CASES = {
    "cory3_rloo": [
        "setting=cory",
        "num_agents=3",
        "algo=rloo",
        "algo.params.group_size=2",
        "setting.exchange_every=1",
    ],
    "cory2_ppo_competitive": [
        "setting=cory",
        "num_agents=2",
        "algo=ppo",
        "setting.reward_matrix=competitive",
    ],
}


def run_metrics(out, name, monkeypatch, extra=(), threads=1):
    """The case's metrics (no timings) from a run on ``threads`` threads."""
    import torch

    monkeypatch.setattr(Trainer, "_finish", lambda self: {})
    monkeypatch.setattr(Trainer, "_save_agents", lambda self: None)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # one reduction order, whatever earlier tests set
    try:
        Trainer(load_config(None, [*BASE, *CASES[name], *extra]), out).fit()
    finally:
        torch.set_num_threads(before)
    return [
        {k: v for k, v in r.items() if not k.startswith(("time/", "tokens_"))}
        for r in read_jsonl(out / "metrics.jsonl")
    ]


def mismatches(got: list[dict], want: list[dict]) -> list[str]:
    """What in ``got`` does not match the stored ``want`` under the rules above; [] if all do."""
    if len(got) != len(want):
        return [f"{len(got)} records, the reference has {len(want)}"]
    bad = []
    for i, (g, w) in enumerate(zip(got, want)):
        for key, v in w.items():  # new metrics may be added; stored ones must stay
            if key not in g:
                bad.append(f"iteration {i}: {key} is missing")
                continue
            metric = key.rsplit("/", 1)[-1]
            if not isinstance(v, float) or metric in EXACT:
                if g[key] != v:
                    bad.append(f"iteration {i}: {key} = {g[key]!r}, stored {v!r} (exact)")
                continue
            scale = max(abs(v), 1.0)
            if metric in LOGPROB:
                agent = key.rsplit("/", 1)[0]
                summed = w.get(f"{agent}/response_length", 1.0) * w.get(f"{agent}/entropy", 1.0)
                scale = max(scale, summed)
            if not abs(g[key] - v) <= TOL * scale:
                bad.append(
                    f"iteration {i}: {key} = {g[key]!r}, stored {v!r} (tol {TOL * scale:.1e})"
                )
    return bad


def stored(name: str) -> list[dict]:
    """The stored records of a case; skips where the versions differ from the file's."""
    if REFERENCE.get("versions") != versions():
        pytest.skip(
            f"the stored metrics were made with {REFERENCE.get('versions')}, this is {versions()}: "
            "regenerate with python -m tests.test_single_round_reference --write"
        )
    return REFERENCE["runs"][name]


@pytest.mark.parametrize("name", list(CASES))
def test_single_round_runs_reproduce_the_reference(tmp_path, name, monkeypatch):
    got = run_metrics(tmp_path / "a", name, monkeypatch)
    assert run_metrics(tmp_path / "b", name, monkeypatch) == got  # bit-equal in one environment
    for g in got:  # one round, no per-turn rewards: an episode's return is its trained reward
        for k in [k for k in g if k.endswith("/episode_return")]:
            assert math.isclose(g[k], g[k.replace("episode_return", "reward")], abs_tol=1e-12)
    assert mismatches(got, stored(name)) == []


@pytest.mark.parametrize("name", list(CASES))
def test_another_reduction_order_still_matches(tmp_path, name, monkeypatch):
    """Two threads reduce in another order (a stand-in for another CPU make).

    Whether the bits move depends on the machine (here they did, by up to 45 epsilons of
    scale); the kernels' stand-in below asserts that they move.
    """
    want = stored(name)
    assert mismatches(run_metrics(tmp_path, name, monkeypatch, threads=2), want) == []


def test_other_vector_kernels_still_match():
    """ATen's scalar kernels (``ATEN_CPU_CAPABILITY=default``) in a fresh process, as another
    CPU make would run other ones: both cases agree with the file."""
    import torch

    stored("cory3_rloo")
    if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        pytest.skip("this CPU runs the default kernels already")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.test_single_round_reference", "--check"],
        cwd=Path(__file__).parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["cpu"] == "DEFAULT"
    assert report["bit_equal"] is False  # other kernels did change the bits
    assert report["mismatches"] == {name: [] for name in CASES}


CHANGES = {
    # (case, overrides, a metric that must be reported)
    "lr_one_ulp": ("cory3_rloo", [f"algo.params.lr={math.nextafter(1e-3, 1.0)!r}"], "/lr"),
    "kl_estimator": ("cory2_ppo_competitive", ["algo.params.kl_estimator=k3"], "/adv_kl_penalty"),
    "seat_order": ("cory3_rloo", ["setting.permutations=[[0,2,1],[2,1,0],[1,0,2]]"], "/seat"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_real_change_fails_the_comparison(tmp_path, change, monkeypatch):
    name, extra, metric = CHANGES[change]
    bad = mismatches(run_metrics(tmp_path, name, monkeypatch, extra), stored(name))
    assert any(metric in line for line in bad), bad


def _runs() -> dict[str, list[dict]]:
    import tempfile

    mp = pytest.MonkeyPatch()
    runs = {}
    for name in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            runs[name] = run_metrics(Path(tmp), name, mp)
    mp.undo()
    return runs


def write_reference() -> None:
    """Regenerate the stored file on the installed versions (after a lock refresh)."""
    PATH.write_text(json.dumps({"versions": versions(), "runs": _runs()}, indent=1) + "\n")
    print(f"wrote {PATH} for {versions()}")


def check_reference() -> None:
    """Print, as one JSON line, this process's mismatches against the file (for the test above)."""
    import torch

    runs = _runs()
    ref = REFERENCE["runs"]
    report = {
        "cpu": torch.backends.cpu.get_cpu_capability(),
        "bit_equal": runs == {n: ref[n] for n in runs},
        "mismatches": {n: mismatches(runs[n], ref[n]) for n in runs},
    }
    print(json.dumps(report))


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write_reference()
    elif sys.argv[1:] == ["--check"]:
        check_reference()
    else:
        sys.exit("usage: python -m tests.test_single_round_reference --write | --check")
