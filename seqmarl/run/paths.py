"""Where seqmarl finds shared assets and keeps its cache.

* ``SEQMARL_SHARED`` (default: ``../shared`` next to the repository) holds offline data and
  model weights for tests and benchmarks; code that needs it skips or errors clearly when
  it is absent. Nothing in it is ever copied into the repository.
* ``SEQMARL_CACHE`` (default: ``~/.cache/seqmarl``) holds downloaded wheels and converted
  models (the embedded default model).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "shared_dir", "shared_path"]

_REPO_ROOT = Path(__file__).resolve().parents[2]  # seqmarl/run/paths.py -> the checkout


def shared_dir() -> Path:
    """The shared-assets folder (may not exist)."""
    env = os.environ.get("SEQMARL_SHARED")
    return Path(env).expanduser() if env else _REPO_ROOT.parent / "shared"


def shared_path(*parts: str) -> Path | None:
    """A path inside the shared folder, or ``None`` if it does not exist."""
    p = shared_dir().joinpath(*parts)
    return p if p.exists() else None


def cache_dir(*parts: str) -> Path:
    """A folder inside the seqmarl cache, created if needed."""
    root = Path(os.environ.get("SEQMARL_CACHE", "~/.cache/seqmarl")).expanduser()
    p = root.joinpath(*parts)
    p.mkdir(parents=True, exist_ok=True)
    return p
