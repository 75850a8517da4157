"""Exceptions that reach the user.

Every error a user can cause by what they type or write in a config derives from
:class:`SeqmarlError`; the CLI prints those as one line and exits with status 2, without a
traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["ConfigError", "EnvCheckError", "SeqmarlError", "UnknownNameError"]


class SeqmarlError(Exception):
    """Base class for errors caused by user input (configs, names, arguments)."""


class ConfigError(SeqmarlError, ValueError):
    """A configuration value is wrong; the message names the field and what is allowed."""


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
