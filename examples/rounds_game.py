"""A multi-round game in under 30 lines: say a bigger number than the last one said.

python examples/rounds_game.py                    # tiny random model, 4 iterations (~1 min)
"""

import re
import sys

from seqmarl import envs, load_config
from seqmarl.run.sinks import read_jsonl
from seqmarl.train.trainer import Trainer


def number(text):  # the first number in a reply (at most 9 digits), or None
    found = re.search(r"[0-9]{1,9}", text)
    return int(found.group()) if found else None


class BiggerNumber(envs.TextTask):
    """Agents take turns saying a number: +1 if it beats every number so far, else -1."""

    def sample_prompts(self, n, rng=None):
        starts = envs.as_generator(rng).integers(0, 50, size=n)
        return [envs.Prompt(f"Say a number bigger than {s}.", reference=str(s)) for s in starts]

    def observe_turn(self, prompt, visible, agent, round):  # the prompt, the log, whose turn
        return "\n".join([prompt.text, *(f"{t.agent}: {t.response}" for t in visible), agent + ":"])

    def turn_reward(self, episode, turn):  # handed out as each turn is played
        earlier = episode.turns[: episode.turns.index(turn)]
        bar = max([int(episode.prompt.reference)] + [number(t.response) or 0 for t in earlier])
        said = number(turn.response)
        return 1.0 if said is not None and said > bar else -1.0

    def score(self, prompt, response):  # no reward at the end: every reward is a turn's
        return 0.0


envs.register_env("bigger-number-v0", BiggerNumber)

if __name__ == "__main__":
    cfg = load_config(
        None,
        [
            "env=bigger-number-v0",
            "task.rounds=3",  # every agent plays three turns per episode
            "num_agents=2",
            "setting.reward_matrix=independent",
            "model=embedded:tiny-llama",
            "algo=rloo",
            "algo.params.group_size=4",
            "algo.params.lr=1e-3",
            "batch_size=8",
            "iterations=4",
            "agents.generation.max_new_tokens=4",
            "train.out_dir=runs/bigger-number",
            *sys.argv[1:],
        ],
    )
    trainer = Trainer(cfg, overwrite=True)  # re-running the example starts afresh
    trainer.fit()
    records = read_jsonl(trainer.out / "metrics.jsonl")
    for agent in trainer.ids:  # adv_score: the mean return of the agent's turns
        scores = [r[f"agent/{agent}/adv_score"] for r in records]
        print(f"{agent}: mean return per turn {scores[0]:+.2f} -> {scores[-1]:+.2f}")
