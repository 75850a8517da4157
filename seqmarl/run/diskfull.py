"""A full disk: told in one line, with nothing half-written left behind.

Every file seqmarl writes into a run folder is either written whole or not at all:

* checkpoints go to a temporary folder that is renamed into place (:mod:`seqmarl.run.checkpoint`);
* single files (``config.yaml``, ``summary.json``, ``eval.json``, ...) go through
  :func:`write_atomic`: a temporary file in the same folder, fsynced, renamed (or linked, so
  that an existing file is never replaced); the temporary file is removed on any failure;
* ``metrics.jsonl`` and ``samples.jsonl`` take whole lines: a line that cannot be written
  whole is cut off again (:class:`seqmarl.run.sinks.JsonlSink`).

A command that meets ``ENOSPC`` or ``EDQUOT`` ends with :class:`DiskFull`: one line saying the
disk is full, naming the path and saying what is intact, exit status 2.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

from seqmarl.errors import SeqmarlError

__all__ = ["DISK_FULL", "DiskFull", "disk_full_error", "full_path", "message", "write_atomic"]

#: The errors of a disk (or a quota) with no room left.
DISK_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


class DiskFull(SeqmarlError):
    """The disk (or the quota) is full; the message names the path and what is intact."""


def disk_full_error(exc: BaseException | None) -> OSError | None:
    """The ``ENOSPC``/``EDQUOT`` error behind ``exc`` (its causes and contexts), or ``None``.

    torch reports a failed write of ``torch.save`` as a ``RuntimeError`` whose context is the
    file's ``OSError``, hence the walk.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def full_path(exc: OSError, default: Path | str) -> str:
    """The path a disk-full error names, or ``default``."""
    return str(exc.filename) if exc.filename else str(default)


def message(exc: OSError, path: Path | str, intact: str) -> str:
    """``the disk is full (No space left on device) writing PATH; INTACT``."""
    reason = exc.strerror or os.strerror(exc.errno or errno.ENOSPC)
    return f"the disk is full ({reason}) writing {path}; {intact}"


def write_atomic(
    path: Path, write: bytes | str | Callable[[IO[bytes]], object], *, replace: bool = True
) -> Path:
    """Write ``path`` whole or not at all.

    Args:
        path: The file to write.
        write: Its bytes or text (UTF-8), or a function that writes into a binary file.
        replace: Replace an existing ``path``; ``False``: raise ``FileExistsError`` instead
            (the temporary file is linked into place, never over another file).

    Raises:
        OSError: The write failed (a full disk); the temporary file is gone and ``path`` is
            as it was (``filename`` names ``path``).
    """
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "xb") as fh:
            if callable(write):
                write(fh)
            else:
                fh.write(write.encode("utf-8") if isinstance(write, str) else write)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if path exists: an earlier file is never overwritten
            tmp.unlink()
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        full = disk_full_error(exc)
        if full is not None and not full.filename:
            raise OSError(full.errno, full.strerror, str(path)) from None
        raise
    return path
