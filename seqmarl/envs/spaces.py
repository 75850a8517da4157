"""Text spaces that accept any model output.

``gymnasium.spaces.Text`` only contains strings made of its charset (alphanumerics by default),
so a response with a space, a comma or an accent would be "out of bounds". :class:`AnyText`
contains every ``str`` up to ``max_length`` characters, and samples short strings that include
whitespace, punctuation, non-ASCII letters, emoji and the empty string, so PettingZoo's
random-action tests exercise what a language model really emits.
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np
from gymnasium import spaces

__all__ = ["DEFAULT_MAX_TEXT_LENGTH", "AnyText"]

DEFAULT_MAX_TEXT_LENGTH = 1_000_000
_SAMPLE_CHARSET = string.printable + "éèüßçñ中文字日本語한국어Ωπ∑√→“”‘’—…🙂🚀\u00a0"


class AnyText(spaces.Text):
    """A space of arbitrary Python strings.

    Args:
        max_length: Longest string contained, in characters.
        sample_max_length: Longest string :meth:`sample` produces.
        seed: Seed for sampling.
    """

    def __init__(
        self,
        max_length: int = DEFAULT_MAX_TEXT_LENGTH,
        *,
        sample_max_length: int = 24,
        seed: int | np.random.Generator | None = None,
    ):
        super().__init__(max_length, min_length=0, charset=_SAMPLE_CHARSET, seed=seed)
        self.sample_max_length = min(sample_max_length, max_length)

    def contains(self, x: Any) -> bool:
        """Any ``str`` no longer than ``max_length``."""
        return isinstance(x, str) and len(x) <= self.max_length

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """A random string of 0..``sample_max_length`` characters (masks are not supported)."""
        if mask is not None or probability is not None:
            raise NotImplementedError("AnyText.sample does not take a mask or probability")
        length = int(self.np_random.integers(0, self.sample_max_length + 1))
        chars = self.character_list
        idx = self.np_random.integers(0, len(chars), size=length)
        return "".join(chars[i] for i in idx)

    def __repr__(self) -> str:
        return f"AnyText(max_length={self.max_length})"
