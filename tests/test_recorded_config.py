"""A run's config.yaml records the folder the run is really in (Trainer API and CLI)."""

import os
import subprocess
import sys
from pathlib import Path

from seqmarl.config import load_config
from seqmarl.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "model=embedded:tiny-llama",
    "env=arithmetic-v0",
    "iterations=1",
    "batch_size=2",
    "agents.generation.max_new_tokens=4",
    "train.progress=false",
    "train.tensorboard=false",
]


def test_trainer_records_its_out_dir(tmp_path):
    cfg = load_config(None, [*TINY, "train.out_dir=runs/main"])
    out = tmp_path / "x"
    trainer = Trainer(cfg, out)
    assert trainer.cfg.train.out_dir == str(out)
    assert cfg.train.out_dir == "runs/main"  # the caller's config is not changed
    trainer.fit()
    assert load_config(out / "config.yaml").train.out_dir == str(out)


def test_cli_out_is_recorded_in_config_yaml(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "seqmarl", "train", *TINY, "train.out_dir=runs/main"]
    proc = subprocess.run(
        [*cmd, "--out", "x"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert load_config(tmp_path / "x" / "config.yaml").train.out_dir == "x"
    assert not (tmp_path / "runs").exists()
