"""Two gloo ranks resume past a poisoned checkpoint: no rank runs its payload.

Launched like ``test_data_parallel.py``: ``torchrun --standalone --nproc_per_node 2`` with a
timeout; the resume goes through the command line (``-m seqmarl train --resume``).
"""

from seqmarl.run.sinks import read_jsonl
from tests.distributed.test_data_parallel import HERE, TRAIN, torchrun
from tests.test_untrusted_checkpoints import poison


def test_a_two_rank_resume_skips_a_poisoned_checkpoint_and_runs_nothing(tmp_path):
    run, marker = tmp_path / "run", tmp_path / "ran"
    steps = [*TRAIN, "train.checkpoint_every=1"]
    torchrun(HERE / "worker.py", "train", tmp_path / "a", run, "-", *steps, "iterations=2")
    poison(run / "checkpoints" / "iter_000002", marker)
    proc = torchrun("-m", "seqmarl", "train", "--resume", run, "iterations=3")
    assert not marker.exists()
    warnings = [ln for ln in proc.stderr.splitlines() if "does not load here" in ln]
    assert len(warnings) == 1 and "iter_000002" in warnings[0], proc.stderr  # rank 0 says it
    assert "resuming from" in proc.stdout and "iter_000001" in proc.stdout
    assert [r["iteration"] for r in read_jsonl(run / "metrics.jsonl")] == [0, 1, 2]
