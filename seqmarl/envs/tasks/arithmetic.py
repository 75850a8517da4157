"""``arithmetic-v0``: small arithmetic questions, exact-answer reward. Needs no model or data.

Prompts are ``Question: What is 17 + 25?`` and a line ``Answer:``; operands and operators
are drawn from the seed, so a seed fixes the prompts. The reward is 1.0 when the last number in the
response equals the true result, else 0.0 (the same extraction the GSM8K task uses). A later
seat sees the earlier answers as references, in the GSM8K observer format::

    Question: What is 17 + 25?
    Reference: 42
    Answer:

It is the task for tests, demos and the "write your own task" example; tiny models can learn
it, so it also serves as a toy RL problem.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seqmarl.envs.task import Prompt, TextTask, as_generator
from seqmarl.envs.textutil import last_number, numbers_equal

__all__ = ["ArithmeticTask"]

_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


class ArithmeticTask(TextTask):
    """Integer arithmetic questions with an exact-answer reward.

    Args:
        max_operand: Operands are drawn from ``0..max_operand``.
        ops: Operators to use, a subset of ``"+-*"``.
    """

    name = "arithmetic"

    def __init__(self, *, max_operand: int = 20, ops: str = "+-"):
        super().__init__()
        if max_operand < 1:
            raise ValueError(f"max_operand must be >= 1, got {max_operand}")
        bad = set(ops) - set(_OPS)
        if not ops or bad:
            raise ValueError(f"ops must be a non-empty subset of '+-*', got {ops!r}")
        self.max_operand = max_operand
        self.ops = ops

    def sample_prompts(self, n: int, rng: int | np.random.Generator | None = None) -> list[Prompt]:
        """``n`` questions drawn from ``rng``."""
        gen = as_generator(rng)
        out = []
        for _ in range(n):
            a, b = (int(x) for x in gen.integers(0, self.max_operand + 1, size=2))
            op = self.ops[int(gen.integers(len(self.ops)))]
            out.append(
                Prompt(f"Question: What is {a} {op} {b}?\nAnswer:", reference=str(_OPS[op](a, b)))
            )
        return out

    def observe(self, prompt: Prompt, earlier: Sequence[str]) -> str:
        """The question, then ``Reference: <answer>`` per earlier seat, then ``Answer:``."""
        if not earlier:
            return prompt.text
        question = prompt.text.removesuffix("Answer:").rstrip("\n")
        refs = "\n".join(f"Reference: {r.strip()}" for r in earlier)
        return f"{question}\n{refs}\nAnswer:"

    def score(self, prompt: Prompt, response: str) -> float:
        """1.0 if the last number in ``response`` is the right result, else 0.0."""
        return float(numbers_equal(last_number(response), float(prompt.reference)))
