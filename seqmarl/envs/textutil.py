"""Small text helpers shared by tasks (answer extraction)."""

from __future__ import annotations

import re

__all__ = ["last_number", "numbers_equal"]

# A number as people write it in answers: optional sign, optional currency, digits with
# thousands separators, optional decimals. "-$1,234.50" -> -1234.5
_NUMBER = re.compile(r"(?<![\w.])([-+−]?)\s?\$?\s?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)")


def last_number(text: str) -> float | None:
    """The last number written in ``text``, or ``None`` if there is none.

    Handles thousands separators (``1,234``), currency (``$5``, ``-$5``), decimals (``2.50``,
    ``.5``), signs (``-3``, ``+3``, the unicode minus) and a trailing full stop (``is 7.``).
    """
    matches = _NUMBER.findall(text)
    if not matches:
        return None
    sign, digits = matches[-1]
    value = float(digits.replace(",", ""))
    return -value if sign in ("-", "−") else value


def numbers_equal(a: float | None, b: float | None, *, tol: float = 1e-6) -> bool:
    """Whether two extracted numbers are the same answer (``None`` never matches)."""
    return a is not None and b is not None and abs(a - b) <= tol * max(1.0, abs(b))
