"""Checkpoints that survive a crash: written to a temporary folder, then renamed.

Layout: ``checkpoints/iter_000010/{state.pt, meta.json}``. A checkpoint counts only when its
``meta.json`` exists (written last, inside the temporary folder, before the atomic rename),
so an interrupted write never shadows the previous checkpoint. The last ``keep`` are kept.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

__all__ = ["latest_checkpoint", "list_checkpoints", "load_checkpoint", "save_checkpoint"]


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    if not root.exists():
        return []
    done = [
        p for p in root.glob("iter_*") if (p / "meta.json").exists() and (p / "state.pt").exists()
    ]
    return sorted(done, key=lambda p: int(p.name.removeprefix("iter_")))


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint, or ``None``."""
    found = list_checkpoints(root)
    return found[-1] if found else None


def save_checkpoint(root: Path, iteration: int, state: dict[str, Any], *, keep: int = 2) -> Path:
    """Write ``state`` as checkpoint ``iteration`` atomically; prune to the newest ``keep``."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"iter_{iteration:06d}"
    tmp = root / f".tmp_iter_{iteration:06d}_{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    torch.save(state, tmp / "state.pt")
    meta = {"iteration": iteration, "time": time.time()}
    (tmp / "meta.json").write_text(json.dumps(meta))
    if final.exists():  # re-saving the same iteration (e.g. Ctrl-C right after a save)
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp_iter_*"):
        shutil.rmtree(stale, ignore_errors=True)
    return final


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The state saved by :func:`save_checkpoint`."""
    return torch.load(path / "state.pt", map_location="cpu", weights_only=False)
