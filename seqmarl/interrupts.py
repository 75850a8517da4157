"""Stop signals (Ctrl-C, SIGTERM from a scheduler) turned into clean iteration boundaries.

A training iteration changes state in two phases. While the agents *play* (sampling and
scoring), only random-number streams move: a signal then abandons the iteration at once and
the trainer rewinds those streams, so the state is that of the iteration's start. Once the
*updates* begin, optimizer steps change weights agent by agent: a signal is then only noted,
the iteration finishes, and the trainer stops after it. Either way the checkpoint written on
the way out is of a whole iteration, and ``--resume`` continues exactly.

A second signal while the first is handled aborts at once without saving: a checkpoint being
written is discarded (the previous complete one stays the newest).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
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
        signum: The first stop signal received, or ``None``.

    Handlers are installed only in the main thread (Python delivers signals there alone);
    elsewhere the block runs with the process's handlers as they are. The previous handlers
    are restored on exit.
    """

    def __init__(self, announce=None):
        self.signum: int | None = None
        self._rewindable = False
        self._previous: dict[int, object] = {}
        self._announce = announce or (lambda msg: print(msg, file=sys.stderr, flush=True))

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        """Whether a stop signal has arrived."""
        return self.signum is not None

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
        if self.signum is not None:
            raise Abort(signum)
        self.signum = signum
        if self._rewindable:
            self._rewindable = False
            raise Rewind
        self._announce(
            f"seqmarl: {signal_name(signum)}: finishing this iteration, then writing a "
            "checkpoint (send it again to stop at once without saving)"
        )
