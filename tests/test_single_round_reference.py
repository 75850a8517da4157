"""One-round episodes train exactly as before joint scoring and deferred batch scoring.

``tests/data/single_round_reference.json`` holds the metrics of two tiny 3-iteration runs made
on 2026-11-23 with the code before episodes were scored through ``score_episodes`` (the
rollout then scored flat (prompt, response) pairs and pushed the scores into the envs).

Two kinds of sameness are checked. Within one environment a run is deterministic: the same
run twice gives bit-equal metrics, always. Against the stored file the metrics agree to 1e-9,
but only in the environment the file records: the library versions and the CPU's vector
kernels, with the test running on one thread. These tiny runs are ruled by rounding in their
first iterations (a KL of almost zero, a gradient of 0.005 where later ones are 4), so a
change of reduction order alone moves them: two threads against one changed iteration 0's
grad_norm from 0.0048 to 0.0040, and every later number followed. Elsewhere the comparison
is skipped, naming both environments; regenerate the file when the lock changes::

    python -m tests.test_single_round_reference --write

(The file was first made on 2026-11-23 with the code before episodes were scored through
``score_episodes``; the code after matched it to 1e-9 there, so a regenerated file carries
the same behaviour forward.)
"""

import json
import math
from pathlib import Path

import pytest

from seqmarl.config import load_config
from seqmarl.sinks import read_jsonl
from seqmarl.trainer import Trainer

#: tolerance against the stored file, on its own versions: float rounding only
REL, ABS = 1e-9, 1e-12
PATH = Path(__file__).parent / "data" / "single_round_reference.json"
REFERENCE = json.loads(PATH.read_text())
#: the packages whose version decides the numbers
PACKAGES = ("torch", "transformers", "peft", "numpy")


def versions() -> dict[str, str]:
    """What decides the numbers: the packages' versions and the CPU's vector kernels."""
    from importlib.metadata import version

    import torch

    return {
        **{name: version(name) for name in PACKAGES},
        "cpu": torch.backends.cpu.get_cpu_capability(),
    }


BASE = [
    "model=embedded:tiny-llama",
    "env=arithmetic-v0",
    "batch_size=3",
    "agents.generation.max_new_tokens=5",
    "algo.params.epochs=1",
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


def run_metrics(out, name, monkeypatch):
    import torch

    monkeypatch.setattr(Trainer, "_finish", lambda self: {})
    monkeypatch.setattr(Trainer, "_save_agents", lambda self: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one reduction order, whatever the machine or earlier tests set
    try:
        Trainer(load_config(None, [*BASE, *CASES[name]]), out).fit()
    finally:
        torch.set_num_threads(threads)
    return [
        {k: v for k, v in r.items() if not k.startswith(("time/", "tokens_"))}
        for r in read_jsonl(out / "metrics.jsonl")
    ]


@pytest.mark.parametrize("name", list(CASES))
def test_single_round_runs_reproduce_the_reference(tmp_path, name, monkeypatch):
    got = run_metrics(tmp_path / "a", name, monkeypatch)
    assert run_metrics(tmp_path / "b", name, monkeypatch) == got  # bit-equal in one environment
    if REFERENCE.get("versions") != versions():
        pytest.skip(
            f"the stored metrics were made with {REFERENCE.get('versions')}, this is {versions()}: "
            "regenerate with python -m tests.test_single_round_reference --write"
        )
    want = REFERENCE["runs"][name]
    assert all(set(w) <= set(g) for g, w in zip(got, want))  # new metrics may be added
    assert len(got) == len(want)
    for g in got:  # one round, no per-turn rewards: an episode's return is its trained reward
        for k in [k for k in g if k.endswith("/episode_return")]:
            assert math.isclose(g[k], g[k.replace("episode_return", "reward")], abs_tol=1e-12)
    for g, w in zip(got, want):
        for k, v in w.items():
            if isinstance(v, float):
                assert math.isclose(g[k], v, rel_tol=REL, abs_tol=ABS), (k, g[k], v)
            else:
                assert g[k] == v, k


def write_reference() -> None:
    """Regenerate the stored file on the installed versions (after a lock refresh)."""
    import tempfile

    mp = pytest.MonkeyPatch()
    runs = {}
    for name in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            runs[name] = run_metrics(Path(tmp), name, mp)
    mp.undo()
    PATH.write_text(json.dumps({"versions": versions(), "runs": runs}, indent=1) + "\n")
    print(f"wrote {PATH} for {versions()}")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.test_single_round_reference --write")
    write_reference()
