"""Stop signals (Ctrl-C, SIGTERM from a scheduler) turned into clean iteration boundaries.

A training iteration changes state in two phases. While the agents *play* (sampling and
scoring), only random-number streams move: a signal then abandons the iteration at once and
the trainer rewinds those streams, so the state is that of the iteration's start. Once the
*updates* begin, optimizer steps change weights agent by agent: a signal is then only noted,
the iteration finishes, and the trainer stops after it. Either way the checkpoint written on
the way out is of a whole iteration, and ``--resume`` continues exactly.

A second signal while the first is handled aborts at once without saving: a checkpoint being
written is discarded (the previous complete one stays the newest). The same signal again
within :attr:`StopSignals.repeat_window` seconds counts as the same request: launchers deliver
one stop more than once (SLURM signals every process of a job step, and torchrun forwards the
signal to its workers as well).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator

__all__ = ["Abort", "Rewind", "StopSignals", "signal_name"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def signal_name(signum: int) -> str:
    """``SIGINT``, ``SIGTERM``, ..."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Rewind(BaseException):  # control flow, like KeyboardInterrupt
    """Raised inside the play phase: drop this iteration and rewind to its start."""


class Abort(BaseException):
    """A second stop signal: stop now, save nothing."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class StopSignals:
    """Catch SIGINT and SIGTERM for the duration of a ``with`` block.

    Attributes:
        signum: The first stop signal this process received, or ``None``.
        peer_signum: A stop another rank received (set by the trainer), or ``None``.

    Handlers are installed only in the main thread (Python delivers signals there alone);
    elsewhere the block runs with the process's handlers as they are. The previous handlers
    are restored on exit.

    A signal the process already ignores stays ignored: a run started with ``nohup``, as a
    background job of a non-interactive shell, or by a scheduler that masks Ctrl-C inherits
    SIGINT as ``SIG_IGN``, and, as Python itself does at start-up, the trainer then leaves
    SIGINT alone (SIGTERM still stops it at an iteration boundary).
    """

    #: Seconds in which a repeat of the first signal is taken as the same delivery.
    repeat_window = 1.0

    def __init__(self, announce=None):
        self.signum: int | None = None
        self.peer_signum: int | None = None
        self._first_at = 0.0
        self._rewindable = False
        self._previous: dict[int, object] = {}
        self._announce = announce or (lambda msg: print(msg, file=sys.stderr, flush=True))

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                if signal.getsignal(s) is not signal.SIG_IGN:
                    self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        """Whether a stop signal has reached this process."""
        return self.signum is not None

    @property
    def stopping(self) -> bool:
        """Whether this process or another rank was asked to stop."""
        return self.signum is not None or self.peer_signum is not None

    @property
    def reason(self) -> int | None:
        """The signal that stops the run (this process's, else a peer's)."""
        return self.signum if self.signum is not None else self.peer_signum

    @contextlib.contextmanager
    def rewindable(self) -> Iterator[None]:
        """A stretch of work a stop signal may abandon by raising :class:`Rewind` in it."""
        if self.requested:
            raise Rewind
        self._rewindable = True
        try:
            yield
        finally:
            self._rewindable = False

    def _handle(self, signum: int, frame) -> None:
        now = time.monotonic()
        if self.signum is not None:
            if signum == self.signum and now - self._first_at < self.repeat_window:
                return  # the same stop delivered twice (launcher and job step)
            raise Abort(signum)
        self.signum, self._first_at = signum, now
        if self._rewindable:
            self._rewindable = False
            raise Rewind
        self._announce(
            f"seqmarl: {signal_name(signum)}: finishing this iteration, then writing a "
            "checkpoint (send it again after a second to stop at once without saving)"
        )
