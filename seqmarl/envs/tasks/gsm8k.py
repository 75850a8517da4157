"""``gsm8k-v0``: grade-school math word problems (Cobbe et al. 2021), exact-answer reward.

Prompts follow the CORY paper's one-shot format (the Shawn/toys example, then the question)::

    Question: Shawn has five toys. ...
    Answer: Shawn started with 5 toys. ... The answer is 9.

    Question: <question>
    Answer:

A later seat sees the earlier answers as ``Reference: <answer>`` lines between the question and
``Answer:``. The reward is 1.0 when the last number of the response equals the number on the
reference solution's ``#### N`` line (commas, ``$``, decimals and signs handled), else 0.0.

Data: the hub (``openai/gsm8k``, config ``main``) or a local copy: a folder holding
``train.jsonl``/``test.jsonl`` or one ``.jsonl`` file with ``question`` and ``answer`` fields.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from seqmarl.envs.dataset import DatasetTask, load_records
from seqmarl.envs.task import Prompt
from seqmarl.envs.textutil import last_number, numbers_equal

__all__ = ["ONE_SHOT", "GSM8KTask", "gsm8k_reward", "reference_answer"]

ONE_SHOT = (
    "Question: Shawn has five toys. For Christmas, he got two toys each from his mom and dad. "
    "How many toys does he have now?\n"
    "Answer: Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that "
    "is 4 more toys. 5 + 4 = 9. The answer is 9.\n\n"
)
_FINAL = re.compile(r"####\s*(.+?)\s*$", re.M)


def reference_answer(solution: str) -> float:
    """The number on a GSM8K solution's ``#### N`` line.

    Raises:
        ValueError: The solution has no ``####`` line with a number.
    """
    match = _FINAL.search(solution)
    value = last_number(match.group(1)) if match else None
    if value is None:
        raise ValueError(f"no '#### <number>' line in solution: {solution[-80:]!r}")
    return value


def gsm8k_reward(prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
    """1.0 when the response's last number equals the reference answer, else 0.0."""
    return [
        float(numbers_equal(last_number(r), float(p.reference)))
        for p, r in zip(prompts, responses, strict=True)
    ]


class GSM8KTask(DatasetTask):
    """GSM8K with the paper's one-shot prompt and exact-answer reward.

    Args:
        source: Hub id (``openai/gsm8k``) or a local folder/``.jsonl`` file.
        split: ``train`` or ``test``.
        limit: Use only the first ``limit`` questions.
        one_shot: Prepend the Shawn/toys example (the paper's prompt).
    """

    name = "gsm8k"
    # A few-shot prompt invites the model to write the next "Question:" after its answer; the
    # answer's last number must come from before it.
    stop_strings = ("Question:",)

    def __init__(
        self,
        *,
        source: str = "openai/gsm8k",
        split: str = "train",
        limit: int | None = None,
        one_shot: bool = True,
    ):
        self.one_shot = one_shot
        records = load_records(source, split=split, name="main", limit=limit)
        super().__init__(records, to_prompt=self._to_prompt, reward=gsm8k_reward)

    def _to_prompt(self, record) -> Prompt:
        shot = ONE_SHOT if self.one_shot else ""
        return Prompt(
            f"{shot}Question: {record['question'].strip()}\nAnswer:",
            reference=repr(reference_answer(record["answer"])),
            meta={"solution": record["answer"]},
        )

    def observe(self, prompt: Prompt, earlier: Sequence[str]) -> str:
        """The question, ``Reference: <answer>`` per earlier seat, then ``Answer:``."""
        if not earlier:
            return prompt.text
        head = prompt.text.removesuffix("Answer:")
        refs = "".join(f"Reference: {r.strip()}\n" for r in earlier)
        return f"{head}{refs}Answer:"
