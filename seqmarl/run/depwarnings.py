"""Warnings from dependencies, kept off the terminal while a command runs.

A library's warning printed in the middle of a command splits the progress bar, and after a
user error it turns the promised one line into several. While a ``seqmarl`` command runs,
Python warnings (``warnings.warn``, through :func:`logging.captureWarnings`) and the log
records of other libraries (the root logger; transformers' own handler is switched to it) are
collected instead of printed (vLLM's loggers included: :mod:`seqmarl.agents.vllm` starts its
engine with vLLM's own logging unconfigured, and what its native code prints while the engine
starts is logged as ``vllm.output``). Then:

* a command with a run folder writes them to ``<run>/warnings.log`` (:meth:`attach`) and ends
  with one line saying how many there were and where;
* a command without one prints each distinct warning once, after its own output;
* a command that ends in its own one line (a user error, a stop signal, a lost rank) prints
  nothing after it (a run folder's ``warnings.log`` still has them).

seqmarl's own log lines (the ``seqmarl`` logger) are untouched. Nothing is filtered out:
every warning is still raised, so ``-W error`` and pytest's ``filterwarnings`` still see them.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

__all__ = ["DependencyWarnings"]

#: The file a run folder gets (inside the run folder, never through a link).
FILENAME = "warnings.log"


def _first_line(record: logging.LogRecord) -> str:
    """A warning as one line: ``Category: message`` for Python warnings."""
    text = record.getMessage().strip()
    if record.name == "py.warnings":  # "file:line: Category: message\n  source line"
        head = text.splitlines()[0] if text else text
        parts = head.split(": ", 1)
        return parts[1] if len(parts) == 2 else head
    return f"{record.name}: {text.splitlines()[0] if text else text}"


class _Collector(logging.Handler):
    def __init__(self, owner: DependencyWarnings):
        super().__init__(logging.WARNING)
        self.owner = owner

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "seqmarl" or record.name.startswith("seqmarl."):
            return  # (seqmarl's logger does not propagate; a user's root config might)
        self.owner._add(record)


class DependencyWarnings:
    """Collect dependencies' warnings for the duration of a ``with`` block.

    Attributes:
        lines: Every collected warning as one line, in order (repeats included).
        path: The file they go to once :meth:`attach` has been called, else ``None``.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.path: Path | None = None
        self._handler = _Collector(self)
        self._last_resort: logging.Handler | None = None
        self._vllm: tuple[list[logging.Handler], bool] | None = None
        self._written = 0  # how many of ``lines`` are in the file

    def __enter__(self) -> DependencyWarnings:
        self._last_resort = logging.lastResort
        logging.captureWarnings(True)
        logging.lastResort = None  # the collector takes them; nothing else prints them
        logging.getLogger().addHandler(self._handler)
        self._library_handlers(off=True)
        return self

    def __exit__(self, *exc) -> None:
        logging.getLogger().removeHandler(self._handler)
        self._library_handlers(off=False)
        logging.lastResort = self._last_resort
        logging.captureWarnings(False)

    def _library_handlers(self, *, off: bool) -> None:
        """Send transformers' and vLLM's records to the root (each has a handler of its own)."""
        # vLLM (seqmarl.agents.vllm) starts its engines with its logging unconfigured, so its
        # records reach the root; one configured before this command is taken over here
        vllm_log = logging.getLogger("vllm")
        if off:
            self._vllm = (vllm_log.handlers[:], vllm_log.propagate)
            vllm_log.handlers.clear()
            vllm_log.propagate = True
        elif self._vllm is not None:
            vllm_log.handlers[:], vllm_log.propagate = self._vllm
            self._vllm = None
        try:
            from transformers.utils import logging as tf_logging
        except ImportError:  # (a dependency of seqmarl; absent only in odd installs)
            return
        if off:
            tf_logging.disable_default_handler()
            tf_logging.enable_propagation()
        else:
            tf_logging.disable_propagation()
            tf_logging.enable_default_handler()

    def _add(self, record: logging.LogRecord) -> None:
        self.lines.append(_first_line(record))
        if self.path is not None:
            self._write()

    def attach(self, folder: Path) -> None:
        """From now on (and for what came before) write the warnings to ``folder/warnings.log``.

        The folder may not exist yet (a run makes it when training starts): the warnings wait
        until it does.
        """
        self.path = Path(folder) / FILENAME
        self._write()

    def _write(self) -> None:
        """Append the lines not yet in the file."""
        if self._written >= len(self.lines) or self.path is None:
            return
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except FileNotFoundError:  # no folder yet: the next warning (or the report) tries again
            return
        except OSError:  # a link in its place: keep them for the end instead
            self.path = None
            return
        try:
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.writelines(line + "\n" for line in self.lines[self._written :])
        except OSError:  # a full disk: keep them for the end instead (no torn line matters)
            self.path = None
            return
        self._written = len(self.lines)

    def report(self, *, quiet: bool = False) -> None:
        """The command is over: the one line (run folder) or the distinct warnings, on stderr.

        ``quiet``: the command ended in a one-line message of its own, which stays the last.
        """
        self._write()  # (the run folder may have appeared since the last warning)
        if self.path is not None and self._written < len(self.lines):
            self.path = None  # it never did: they are printed instead
        if not self.lines or quiet:
            return
        if self.path is not None:
            n = len(self.lines)
            print(
                f"seqmarl: {n} warning{'s' if n > 1 else ''} from dependencies in {self.path}",
                file=sys.stderr,
            )
            return
        for line in dict.fromkeys(self.lines):
            print(f"seqmarl: from a dependency: {line}", file=sys.stderr)
