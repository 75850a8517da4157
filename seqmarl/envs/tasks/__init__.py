"""Built-in text tasks, one per module; each module docstring is the task's documentation."""

from seqmarl.envs.tasks.arithmetic import ArithmeticTask
from seqmarl.envs.tasks.gsm8k import GSM8KTask
from seqmarl.envs.tasks.imdb import IMDBTask
from seqmarl.envs.tasks.sentiment import SentimentTask

__all__ = ["ArithmeticTask", "GSM8KTask", "IMDBTask", "SentimentTask"]
