"""Exceptions that reach the user.

Every error a user can cause by what they type or write in a config derives from
:class:`SeqmarlError`; the CLI prints those as one line and exits with the error's
``exit_code`` (2; 128 + the signal number for :class:`Interrupted`), without a traceback.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ConfigError",
    "ContextLengthError",
    "EnvCheckError",
    "EnvError",
    "Interrupted",
    "SeqmarlError",
    "TaskError",
    "UnknownNameError",
]


class SeqmarlError(Exception):
    """Base class for errors caused by user input (configs, names, arguments)."""

    #: The command line's exit status for this error.
    exit_code: int = 2


class Interrupted(SeqmarlError):
    """A stop signal (Ctrl-C, SIGTERM) ended a run; the message says what was saved.

    Args:
        message: One line: where the run stopped and how to continue.
        signum: The signal; the exit status is ``128 + signum`` as for a shell (130, 143).
    """

    def __init__(self, message: str, signum: int | None = None):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum if signum else 130


class ConfigError(SeqmarlError, ValueError):
    """A configuration value is wrong; the message names the field and what is allowed."""


class ContextLengthError(ConfigError):
    """A prompt plus its answer would not fit the model's positions (one line, exit 2)."""


class UnknownNameError(SeqmarlError, KeyError):
    """A name (env id, setting, algorithm, ...) is not registered.

    Args:
        kind: What was looked up, e.g. ``"env"``.
        name: The name that was asked for.
        available: The registered names.
        hint: A sentence appended to the message (how to add a name of one's own).
    """

    def __init__(self, kind: str, name: str, available: Iterable[str], hint: str = ""):
        self.kind = kind
        self.name = name
        self.available = sorted(available)
        close = difflib.get_close_matches(name, self.available, n=1)
        close_hint = f" Did you mean {close[0]!r}?" if close else ""
        listed = ", ".join(self.available) if self.available else "(none)"
        tail = f". {hint}" if hint else ""
        super().__init__(f"unknown {kind} {name!r}.{close_hint} Registered {kind}s: {listed}{tail}")

    def __str__(self) -> str:  # KeyError would quote the whole message otherwise
        return self.args[0]


class EnvCheckError(SeqmarlError, AssertionError):
    """An environment failed :func:`seqmarl.envs.check_env`."""


class TaskError(SeqmarlError, ValueError):
    """A task broke its contract: a bad or missing reward, an empty prompt, an exception.

    Raised by :mod:`seqmarl.envs.guard` (the checked calls into a task) with a one-line message
    naming the env id and task class, the row, the prompt and response, and the bad value; an
    exception raised by the task itself is kept as ``__cause__``.
    """


class EnvError(SeqmarlError, ValueError):
    """A game broke its contract: an env raised, selected a done agent, or gave a bad reward.

    Raised by :mod:`seqmarl.envs.game` with one line naming the env, the agent, the row and the
    turn; the env's own exception is kept as ``__cause__``.
    """
