"""Built-in text tasks, one per module; each module docstring is the task's documentation."""

from seqmarl.envs.tasks.arithmetic import ArithmeticTask

__all__ = ["ArithmeticTask"]
