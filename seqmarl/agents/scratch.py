"""Scratch folders of the vLLM engine (its model folder, adapter versions), owned by a process.

A folder lives in memory where there is ``/dev/shm`` (else in the temp folder), so a folder left
behind is RAM lost until reboot. Each is named
``seqmarl-vllm-<pid>.<process start>.<pid namespace>-<kind>-...`` and removed at exit
(:func:`remove_scratch`, an ``atexit`` hook and a launched rank's exit path). A process killed
outright runs neither; the next engine start removes the folders whose owner is gone
(:func:`remove_stale_scratch`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["SCRATCH_PREFIX", "remove_scratch", "remove_stale_scratch", "scratch"]

log = logging.getLogger(__name__)


#: Every scratch folder's name starts so, then ``<pid>.<process start>.<pid namespace>-``: the
#: process that owns it, so a later run can tell a folder whose owner died (SIGKILL, OOM).
SCRATCH_PREFIX = "seqmarl-vllm-"


def _scratch_base() -> str | None:
    """Where scratch folders go: ``/dev/shm`` (memory) where writable, else the temp folder."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def _process_start(pid: int) -> str:
    """When ``pid`` started (clock ticks since boot, from ``/proc``); ``"0"`` where unknown.

    With the pid it names a process uniquely: a pid reused by a later process has a later
    start.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "0"
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22, counted after the command name


def _pid_namespace() -> str:
    """This process's pid namespace (an inode number); ``"0"`` where unknown.

    Containers sharing one ``/dev/shm`` can have pid namespaces of their own, where a pid
    names another process or none: only folders made in this one are judged.
    """
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return "0"
    digits = "".join(ch for ch in link if ch.isdigit())
    return digits or "0"


def _owner(pid: int) -> str:
    return f"{pid}.{_process_start(pid)}.{_pid_namespace()}"


def _owner_alive(name: str) -> bool:
    """Whether the process named in a scratch folder's name still runs (unsure: yes)."""
    parts = name[len(SCRATCH_PREFIX) :].split("-", 1)[0].split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return True  # not named by this scheme (an older seqmarl's): cannot tell, keep it
    pid_text, start, namespace = parts
    if namespace != _pid_namespace():
        return True  # another container's process: its pid means nothing here
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's live process
    now = _process_start(pid)
    return start == "0" or now == "0" or now == start


def remove_stale_scratch() -> list[str]:
    """Delete the scratch folders of dead seqmarl processes (a killed run's); their paths.

    Called before an engine starts. A folder whose owner still runs is kept, as is one not
    named with an owner (made by an older seqmarl).
    """
    removed = []
    for base in {_scratch_base() or tempfile.gettempdir(), tempfile.gettempdir()}:
        try:
            entries = list(os.scandir(base))
        except OSError:
            continue
        for entry in entries:
            if not entry.name.startswith(SCRATCH_PREFIX) or _owner_alive(entry.name):
                continue
            with contextlib.suppress(OSError):
                if (
                    entry.is_dir(follow_symlinks=False)
                    and Path(entry.path).stat().st_uid == os.getuid()
                ):
                    shutil.rmtree(entry.path, ignore_errors=True)
                    removed.append(entry.path)
    if removed:
        log.info("removed %d scratch folder(s) left by killed vLLM runs", len(removed))
    return removed


_SCRATCH: list[tuple[int, str]] = []  # (owner pid, folder): removed at exit


def scratch(kind: str) -> str:
    """A temporary folder in memory where there is one (``/dev/shm``), else on disk.

    Named ``seqmarl-vllm-<pid>.<start>.<pid namespace>-<kind>-<random>``; removed at exit (and
    by the next run when this process dies without its exit handlers:
    :func:`remove_stale_scratch`).
    """
    pid = os.getpid()
    prefix = f"{SCRATCH_PREFIX}{_owner(pid)}-{kind}-"
    path = tempfile.mkdtemp(prefix=prefix, dir=_scratch_base())
    _SCRATCH.append((pid, path))
    return path


def remove_scratch() -> None:
    """Delete this process's scratch folders (at exit, and before a launched rank's ``_exit``).

    A forked child inherits the list and the exit hook, but not the folders: it leaves them.
    """
    pid = os.getpid()
    while _SCRATCH:
        owner, path = _SCRATCH.pop()
        if owner == pid:
            shutil.rmtree(path, ignore_errors=True)


atexit.register(remove_scratch)  # (imported before the engine's shutdown hook: runs after it)
