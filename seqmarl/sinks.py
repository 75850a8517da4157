"""Where metrics go: ``metrics.jsonl`` always; TensorBoard when installed; wandb when asked.

``metrics.jsonl`` holds one JSON object per iteration and is the source of truth for plots,
resume and comparisons. On resume it is truncated back to the checkpoint's iteration, so a
resumed run's file equals an uninterrupted run's.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["JsonlSink", "MetricSinks", "read_jsonl", "truncate_jsonl"]

log = logging.getLogger(__name__)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


class JsonlSink:
    """Append one JSON object per line and flush, so a crash loses at most one line."""

    def __init__(self, path: Path):
        self.path = path
        self._fh = path.open("a", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        """Append ``record``."""
        self._fh.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        self._fh.flush()

    def close(self) -> None:
        """Close the file."""
        self._fh.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All complete records of a jsonl file (a torn last line is ignored)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out


def truncate_jsonl(path: Path, last_iteration: int) -> None:
    """Keep the records with ``iteration < last_iteration`` (resume from a checkpoint)."""
    records = [r for r in read_jsonl(path) if r.get("iteration", -1) < last_iteration]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    tmp.replace(path)


class MetricSinks:
    """metrics.jsonl plus the optional TensorBoard and wandb sinks.

    Args:
        out_dir: Run folder.
        tensorboard: Write TensorBoard logs if the package is installed.
        wandb_project: Log to this wandb project (``None`` = off).
        config: The resolved config, for wandb.
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        tensorboard: bool = True,
        wandb_project: str | None = None,
        config: Mapping[str, Any] | None = None,
    ):
        self.jsonl = JsonlSink(out_dir / "metrics.jsonl")
        self._tb = None
        self._wandb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(out_dir / "tensorboard"))
            except ImportError:
                log.debug("tensorboard not installed; metrics go to metrics.jsonl only")
        if wandb_project:
            import wandb  # asked for explicitly: an ImportError here is the right message

            self._wandb = wandb.init(project=wandb_project, config=dict(config or {}), dir=out_dir)

    def write(self, record: Mapping[str, Any]) -> None:
        """Send one iteration's metrics everywhere."""
        self.jsonl.write(record)
        step = int(record["iteration"])
        scalars = {
            k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "iteration"
        }
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)

    def close(self) -> None:
        """Flush and close every sink."""
        self.jsonl.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
