"""One writer per folder: an exclusive OS lock held for the life of a writing command.

``seqmarl train`` (new or ``--resume``) holds ``RUN/.lock`` from before it looks at the folder
until it ends; ``seqmarl eval`` holds a lock in the folder it writes into (``RUN/eval/.lock``
by default), so an eval can run beside the training of the same run, and two evals writing
into one folder cannot. A second writer is refused at once, in one line naming the holder's
pid and host (:class:`RunLocked`, exit status 2).

The lock is ``fcntl.flock`` on the lock file, so the kernel releases it when its process
ends, however it ends (``kill -9`` included). The file holds the holder's pid and host as
text, for the refusal's message; a clean release deletes it. A lock file left by a process
that died (its ``flock`` is free) is taken over, with one warning line saying whose it was.

The file is deleted while still locked and a taker checks that the file it locked is the one
at the path, so a deleted lock file is never held by two processes.

With several processes (torchrun), only the rank that writes (rank 0) takes the lock; the
trainer broadcasts the outcome so every rank stops together when it is refused.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import time
from pathlib import Path

from seqmarl.errors import ConfigError

__all__ = ["LOCK_NAME", "RunLock", "RunLocked", "read_holder"]

log = logging.getLogger(__name__)

#: The lock file's name inside the folder it guards.
LOCK_NAME = ".lock"


class RunLocked(ConfigError):
    """Another process is writing the folder (its pid and host are in the message).

    A :class:`~seqmarl.errors.ConfigError` as ``check_out_dir``'s refusals are: the folder
    (``--out``, ``--resume``, eval's ``--out``) is the value to change.
    """


def read_holder(path: Path) -> dict[str, str]:
    """``{"pid": ..., "host": ..., "command": ...}`` from a lock file (empty if unreadable)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class RunLock:
    """The exclusive lock on ``folder`` (``folder/.lock``); a context manager.

    Args:
        folder: The folder to guard (created if missing; removed again on release when it
            was created here and is still empty).
        command: What holds it, for the refusal's message (``"seqmarl train"``).
        hint: The way out appended to the refusal (default: wait, or choose another folder).
    """

    def __init__(self, folder: str | Path, command: str = "seqmarl", hint: str | None = None):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command
        self.hint = hint or "wait for it to end, or choose another folder"
        self._fd: int | None = None
        self._created = False

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock, or raise :class:`RunLocked` naming the holder.

        Raises:
            RunLocked: Another process holds it.
            ConfigError: The lock file is a symbolic link (never followed).
            OSError: The folder cannot be created or the lock file opened (e.g. read-only).
        """
        if self._fd is not None:
            return self
        if not self.folder.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            self._created = True
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        for _ in range(50):  # a holder deleting its file at that moment: open the new one
            try:
                fd = os.open(self.path, flags, 0o644)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise ConfigError(
                        f"{self.path} is a symbolic link (to {os.readlink(self.path)}); seqmarl "
                        "writes only inside the folder: remove the link and run again"
                    ) from None
                raise
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunLocked(self._refusal()) from None
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path, follow_symlinks=False).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # locked a file its holder had just deleted: try the new one
                os.close(fd)
                continue
            self._fd = fd
            break
        else:  # pragma: no cover - a folder where lock files keep vanishing
            raise RunLocked(f"{self.path}: could not take the lock (the file keeps changing)")
        self._take_over_and_record()
        return self

    def _take_over_and_record(self) -> None:
        assert self._fd is not None
        fd = self._fd
        left = os.read(fd, 4096).decode("utf-8", "replace")
        if left.strip():  # a holder that ended without releasing (killed, power loss)
            old = dict(line.partition("=")[::2] for line in left.splitlines() if "=" in line)
            pid, host = old.get("pid", "?"), old.get("host", "?")
            if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
                state = "which is not running"
            else:
                state = "which no longer holds it"
            log.warning(
                "took over the lock %s left by pid %s on %s, %s", self.path, pid, host, state
            )
        text = f"pid={os.getpid()}\nhost={socket.gethostname()}\ncommand={self.command}\n"
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, text.encode())
        except OSError:
            # a full disk: the lock is held all the same; a refused writer then names no pid
            pass

    def _refusal(self) -> str:
        holder: dict[str, str] = {}
        for _ in range(20):  # the holder writes its pid just after taking the lock
            holder = read_holder(self.path)
            if holder.get("pid"):
                break
            time.sleep(0.05)
        who = holder.get("command") or "another seqmarl command"
        pid = holder.get("pid", "unknown")
        host = holder.get("host", "unknown host")
        return f"{self.folder} is in use: {who} (pid {pid} on {host}) is writing it; {self.hint}"

    def release(self) -> None:
        """Delete the lock file and let go of the lock (does nothing if not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # while still locked: see the module docstring
        finally:
            os.close(fd)
        if self._created:
            with contextlib.suppress(OSError):
                self.folder.rmdir()  # only if nothing was written into it

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # a holder dropped without release (tests, errors)
        with contextlib.suppress(Exception):
            self.release()
