"""A new text task in a few lines, trained by two CORY agents.

python examples/custom_task.py                                  # SmolLM2, 20 iterations
python examples/custom_task.py model=embedded:tiny-llama iterations=2

From the command line, run in examples/ (the module is found in the current folder):
seqmarl train --import custom_task env=polite-reply-v0 model=embedded:tiny-llama iterations=2
"""

import sys

from seqmarl import envs, load_config
from seqmarl.train.trainer import Trainer


class PoliteReplyTask(envs.TextTask):
    """Answer a customer message; reward = polite words used, minus rude ones."""

    MESSAGES = ("My order is late.", "The app keeps crashing.", "I was charged twice.")
    POLITE, RUDE = ("sorry", "thank", "please", "happy to help"), ("whatever", "not my problem")

    def __init__(self):
        super().__init__(
            # {responses}: every earlier answer (one per line, as `item` writes it), so with
            # three agents the last one reads both; {previous} would show only the latest
            template=envs.FormatTemplate(
                later="{prompt}\nColleagues wrote:\n{responses}\nReply:", item="- {response}"
            )
        )

    def sample_prompts(self, n, rng=None):
        picks = envs.as_generator(rng).integers(0, len(self.MESSAGES), size=n)
        return [envs.Prompt(f"Customer: {self.MESSAGES[i]}\nReply:") for i in picks]

    def score(self, prompt, response):
        text = response.lower()
        return float(sum(w in text for w in self.POLITE) - 2 * sum(w in text for w in self.RUDE))


envs.register_env("polite-reply-v0", PoliteReplyTask)

if __name__ == "__main__":
    cfg = load_config(
        None,
        [
            "env=polite-reply-v0",
            "setting=cory",
            "iterations=20",
            "train.out_dir=runs/polite",
            "algo.params.lr=2e-4",
            "agents.generation.max_new_tokens=16",
            *sys.argv[1:],
        ],
    )
    summary = Trainer(cfg, overwrite=True).fit()  # re-running the example starts afresh
    print({a: row["task_reward"] for a, row in summary["agents"].items()})
