"""Checkpoints that survive a crash and say when they are damaged.

Layout: ``checkpoints/iter_000010/{state.pt, meta.json}``. A checkpoint is written into a
temporary folder: ``state.pt`` first (flushed and fsynced), then ``meta.json`` with the
SHA-256 and size of every file, then the folder is renamed into place and the parent folder
fsynced. So a checkpoint counts only once it is whole: an interrupted write never shadows the
previous one, and a file changed after the write (truncated, zero-filled, bytes overwritten
inside a still-valid zip) fails its checksum on load instead of training on garbage.

:func:`load_latest` walks the checkpoints newest first, moves a damaged one aside
(``iter_000010`` -> ``damaged_iter_000010``, so later saves and pruning never trip on it) and
uses the previous complete one. Folders whose names are not ``iter_<digits>`` (a user's
``iter_000004.bak``) are not checkpoints and are left alone.

``state.pt`` is read with ``torch.load(weights_only=True)``: tensors, numbers, strings and
the containers that hold them, nothing that runs code while it loads. Everything seqmarl saves
is of that kind (weights, optimizer and algorithm state, the random streams as tensors and
plain ints), so no extra types are allowed. A checkpoint holding anything else (a pickle
written to run code, or objects of another program) is reported as "does not load here" and
left in place; the checksum says nothing about who wrote the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from seqmarl.errors import SeqmarlError
from seqmarl.run.diskfull import disk_full_error

__all__ = [
    "CheckpointError",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_latest",
    "read_meta",
    "save_checkpoint",
    "verify_checkpoint",
]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^iter_(\d+)$")
FORMAT = 2  # meta.json with per-file checksums


class CheckpointError(SeqmarlError):
    """A checkpoint is damaged or missing, or does not fit the run that loads it.

    Attributes:
        damaged: Its bytes are not what was written (a size or checksum mismatch, a torn file
            without checksums): safe to set aside. ``False`` for an intact file that does
            not load here (e.g. written by another version) and for one that cannot be read.
    """

    damaged = True


def _iteration(path: Path) -> int | None:
    m = _NAME.match(path.name)
    return int(m.group(1)) if m else None


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root`` (``meta.json`` present), oldest first.

    Anything else in ``root`` (temporary folders, damaged ones moved aside, a user's backups
    such as ``iter_000004.bak``) is ignored. Completeness is not integrity: see
    :func:`verify_checkpoint`.
    """
    if not root.is_dir():
        return []
    done = [
        p
        for p in root.iterdir()
        if p.is_dir() and _iteration(p) is not None and (p / "meta.json").is_file()
    ]
    return sorted(done, key=_iteration)


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint, or ``None`` (not verified; see :func:`load_latest`)."""
    found = list_checkpoints(root)
    return found[-1] if found else None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_synced(path: Path, write) -> None:
    try:
        with open(path, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
    except RuntimeError as exc:  # torch.save reports a failed write as a RuntimeError
        full = disk_full_error(exc)
        if full is None:
            raise
        raise OSError(full.errno, full.strerror, str(path)) from None
    except OSError as exc:
        if exc.filename or exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(
    root: Path,
    iteration: int,
    state: dict[str, Any],
    *,
    keep: int = 2,
    info: dict[str, Any] | None = None,
) -> Path:
    """Write ``state`` as checkpoint ``iteration`` atomically; prune to the newest ``keep``.

    Args:
        root: The ``checkpoints`` folder.
        iteration: Iterations completed; names the folder.
        state: What :func:`load_checkpoint` returns.
        keep: How many checkpoints to keep.
        info: Extra JSON-able facts stored in ``meta.json`` (e.g. what a resume must match).

    Any exception (including ``KeyboardInterrupt``) during the write removes the temporary
    folder and leaves the previous checkpoints as they were.
    """
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"iter_{iteration:06d}"
    tmp = root / f".tmp_iter_{iteration:06d}_{os.getpid()}"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        _write_synced(tmp / "state.pt", lambda fh: torch.save(state, fh))
        files = {
            name: {"sha256": _digest(tmp / name), "bytes": (tmp / name).stat().st_size}
            for name in ("state.pt",)
        }
        meta = {
            "format": FORMAT,
            "iteration": iteration,
            "time": time.time(),
            "files": files,
            **(info or {}),
        }
        _write_synced(tmp / "meta.json", lambda fh: fh.write(json.dumps(meta).encode()))
        _fsync_dir(tmp)
        if final.exists():  # re-saving an iteration: move the old one out of the way first
            old = root / f".old_iter_{iteration:06d}_{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        full = disk_full_error(exc)
        if full is not None:  # name the checkpoint, not the temporary folder that is gone
            raise OSError(full.errno, full.strerror, str(final)) from None
        raise
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in (*root.glob(".tmp_iter_*"), *root.glob(".old_iter_*")):
        if _stale(stale):
            shutil.rmtree(stale, ignore_errors=True)
    return final


def _stale(tmp: Path) -> bool:
    """Whether a ``.tmp_iter_N_PID``/``.old_iter_N_PID`` folder is left over (its writer gone).

    The run folder's lock (:mod:`seqmarl.run.lock`) keeps other writers out; this keeps the
    clean-up from touching a folder that a live process may still be writing all the same.
    """
    pid = tmp.name.rsplit("_", 1)[-1]
    if not pid.isdigit() or int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: someone else's live process
        return False
    return False


def read_meta(path: Path) -> dict[str, Any]:
    """A checkpoint's ``meta.json``.

    Raises:
        CheckpointError: It is missing or not a JSON object.
    """
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"meta.json unreadable ({type(exc).__name__})") from None
    if not isinstance(meta, dict):
        raise CheckpointError("meta.json is not an object")
    return meta


def verify_checkpoint(path: Path) -> dict[str, Any]:
    """Check every file of a checkpoint against the sizes and SHA-256 in its ``meta.json``.

    Checkpoints written before checksums existed (no ``files`` entry) pass unchecked.

    Returns:
        The meta data.

    Raises:
        CheckpointError: What is wrong, in a few words.
    """
    meta = read_meta(path)
    files = meta.get("files")
    if files is None:
        if not (path / "state.pt").is_file():
            raise CheckpointError("state.pt is missing")
        return meta
    for name, want in files.items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"{name} is missing")
        size = f.stat().st_size
        if size != want.get("bytes"):
            raise CheckpointError(f"{name} has {size} bytes, {want.get('bytes')} were written")
        if _digest(f) != want.get("sha256"):
            raise CheckpointError(f"{name} fails its SHA-256 checksum (changed after the write)")
    return meta


def load_checkpoint(path: Path, *, verify: bool = True) -> dict[str, Any]:
    """The state saved by :func:`save_checkpoint` (checksums verified first).

    Raises:
        CheckpointError: The checkpoint is damaged, does not load, or cannot be read; the
            message names it and what is wrong (see :attr:`CheckpointError.damaged`).
    """
    try:
        meta = verify_checkpoint(path) if verify else {}
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {path} is damaged: {exc}") from None
    except OSError as exc:  # the file system, not the file: touch nothing
        err = CheckpointError(f"cannot read checkpoint {path} ({type(exc).__name__}: {exc})")
        err.damaged = False
        raise err from None
    except pickle.UnpicklingError as exc:
        if not str(exc).startswith("Weights only load failed"):
            raise _unloadable(path, exc, meta) from None
        # whole and readable, but it holds more than data: refused, whoever wrote it
        err = CheckpointError(
            f"checkpoint {path} does not load here: state.pt holds objects other than tensors "
            f"and plain data ({_refusal(exc)}); seqmarl loads checkpoints with "
            "weights_only=True and runs no code from them"
        )
        err.damaged = False
        raise err from None
    except Exception as exc:  # a torn or foreign file: unpickling can fail in many ways
        raise _unloadable(path, exc, meta) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} is damaged: state.pt holds no state dict")
    return state


def _refusal(exc: BaseException) -> str:
    """The part of torch's weights-only refusal that names what was refused."""
    text = str(exc)
    m = re.search(r"(Unsupported global: GLOBAL \S+|unsupported GLOBAL \S+)", text)
    if m:
        return m.group(1)
    m = re.search(r"WeightsUnpickler error: ([^\n]*)", text)
    return (m.group(1) if m else "an object that is not data")[:120].rstrip(".")


def _unloadable(path: Path, exc: BaseException, meta: dict[str, Any]) -> CheckpointError:
    """The error for a ``state.pt`` that fails to unpickle: intact but foreign, or damaged."""
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    if meta.get("files"):  # its bytes are the ones written: intact, but not loadable here
        err = CheckpointError(
            f"checkpoint {path} does not load here ({type(exc).__name__}: {first}); its "
            "checksum is intact (written by another version of seqmarl or torch?)"
        )
        err.damaged = False
        return err
    return CheckpointError(
        f"checkpoint {path} is damaged: state.pt does not load ({type(exc).__name__})"
    )


def load_latest(root: Path, *, move_damaged: bool = True) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint under ``root`` that verifies and loads, and its state.

    A damaged checkpoint is reported in one warning line naming it and (``move_damaged``)
    moved aside as ``damaged_<name>``; the previous complete one is tried next. An intact
    checkpoint that does not load here is reported and left in place; one that cannot be
    read (an I/O error) stops the search.

    Raises:
        CheckpointError: There is no usable checkpoint (the message lists what was found), or
            one cannot be read.
    """
    found = list_checkpoints(root)
    if not found:
        raise CheckpointError(f"no complete checkpoint under {root}")
    damaged = []
    for path in reversed(found):
        try:
            state = load_checkpoint(path)
        except CheckpointError as exc:
            if exc.args[0].startswith("cannot read"):
                raise
            if not exc.damaged:
                damaged.append(f"{path.name} (does not load here)")
                log.warning("%s; trying the previous one", exc)
                continue
            reason = str(exc).split(" is damaged: ", 1)[-1]
            aside, moved = path.with_name(f"damaged_{path.name}"), ""
            if move_damaged:
                try:
                    os.replace(path, aside)
                    moved = f"; moved to {aside.name}"
                except OSError:
                    pass
            damaged.append(f"{path.name} ({reason})")
            log.warning(
                "checkpoint %s is damaged: %s%s; trying the previous one", path, reason, moved
            )
            continue
        return path, state
    raise CheckpointError(f"no usable checkpoint under {root}: {', '.join(damaged)}")
