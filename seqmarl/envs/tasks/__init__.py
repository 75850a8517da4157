"""Built-in text tasks, one per module; each module docstring is the task's documentation."""

from seqmarl.envs.tasks.arithmetic import ArithmeticTask
from seqmarl.envs.tasks.sentiment import SentimentTask

__all__ = ["ArithmeticTask", "SentimentTask"]
