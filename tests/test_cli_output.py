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


def test_the_resume_message_is_printed_once(run, capsys):
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "iterations=3"]) == 0
    out, err = capsys.readouterr()
    said = [ln for ln in (out + err).splitlines() if "resum" in ln]
    assert said == [f"resuming from {run / 'checkpoints' / 'iter_000002'} (iteration 2)"]
