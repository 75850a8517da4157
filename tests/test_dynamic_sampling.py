"""DAPO's dynamic sampling: the collector drops prompt groups with equal returns and refills.

The task below gives every prompt of even length a flat reward (0 for any answer) and the
others a reward that differs between answers, so each draw holds both kinds.
"""

import numpy as np
import pytest
import torch

from seqmarl.config import load_config
from seqmarl.envs.tasks.arithmetic import ArithmeticTask
from seqmarl.errors import ConfigError
from seqmarl.run.sinks import read_jsonl
from seqmarl.train.rollout import MAX_TURNS, informative_groups
from seqmarl.train.trainer import Trainer

from .test_trainer import strip_timing


class HalfFlat(ArithmeticTask):
    """Flat on prompts of even length; elsewhere the mean of ``(byte % 5) / 4`` of the answer."""

    def score(self, prompt, response):
        if len(prompt.text) % 2 == 0:
            return 0.0
        data = response.encode()
        return sum(b % 5 for b in data) / (4 * len(data)) if data else 0.0


def is_flat(prompt) -> bool:
    return len(prompt.text) % 2 == 0


RUN = [
    "model=embedded:tiny-llama",
    "env=tests.test_dynamic_sampling:HalfFlat",
    "setting=cory",
    "algo=grpo",
    "algo.params.group_size=2",
    "algo.params.epochs=1",
    "batch_size=4",
    "agents.generation.max_new_tokens=4",
    "train.dynamic_sampling=true",
    "train.progress=false",
    "train.tensorboard=false",
    "train.checkpoint_every=2",
]


def test_the_batch_holds_informative_groups_only_and_says_what_was_dropped(tmp_path):
    trainer = Trainer(load_config(None, [*RUN, "iterations=3"]), tmp_path)
    for _ in range(3):
        record, roll = trainer.step()
        groups = list(dict.fromkeys(int(g) for g in roll.group_ids))
        assert len(groups) == 4 and len(roll.prompts) == 8  # the batch keeps its size
        # each group's rows sit together: a prompt's copies, then the next prompt's
        assert all(roll.prompts[2 * i] == roll.prompts[2 * i + 1] for i in range(4))
        flat = sum(is_flat(roll.prompts[2 * i]) for i in range(4))
        assert record["episodes/informative_groups"] == (4 - flat) / 4
        if flat:  # filled from dropped groups only when every draw was spent
            assert record["episodes/draws"] == trainer.cfg.train.max_draws
        assert informative_groups(roll, trainer.learners) == groups[: 4 - flat]
        assert record["episodes/dropped_groups"] >= flat
        for a, comp in roll.completions.items():  # every agent's rows follow the kept groups
            assert len(comp) == 8 and len(roll.returns[a]) == 8
            assert torch.equal(roll.turn_groups[a] // MAX_TURNS, roll.group_ids)
            assert comp.texts == [
                t[[x["agent"] for x in t].index(a)]["response"] for t in roll.transcripts
            ]
        trainer.iteration += 1


def test_a_short_draw_is_filled_from_dropped_groups_within_the_bound(tmp_path):
    cfg = load_config(None, [*RUN, "iterations=1", "train.max_draws=1", "train.seed=3"])
    trainer = Trainer(cfg, tmp_path)
    record, roll = trainer.step()
    flat = [is_flat(roll.prompts[2 * i]) for i in range(4)]
    assert 0 < sum(flat) < 4  # the prompts decide it: the same on every machine
    assert record["episodes/draws"] == 1  # the bound: one draw, whatever it held
    assert record["episodes/dropped_groups"] == sum(flat)
    assert record["episodes/informative_groups"] == 1 - sum(flat) / 4
    # informative groups first, then the dropped ones in the order played
    assert flat == sorted(flat)


def test_without_it_the_flat_groups_stay_and_its_first_draw_is_that_batch(tmp_path):
    plain = Trainer(
        load_config(None, [*RUN, "iterations=1", "train.dynamic_sampling=false"]), tmp_path
    )
    record, roll = plain.step()
    assert "episodes/draws" not in record
    ds = Trainer(load_config(None, [*RUN, "iterations=1"]), tmp_path / "ds")
    _, ds_roll = ds.step()
    # the same first draw, of which dynamic sampling keeps the informative groups, in order
    good = informative_groups(roll, plain.learners)
    kept = [roll.prompts[2 * list(roll.group_ids[::2]).index(g)] for g in good]
    assert len(good) < 4  # the draw held a flat group, which stays in the plain batch
    assert ds_roll.prompts[::2][: len(kept)] == kept


def test_resume_equals_uninterrupted(tmp_path):
    cfg = load_config(None, [*RUN, "iterations=4"])
    Trainer(cfg, tmp_path / "full").fit()
    Trainer(load_config(None, [*RUN, "iterations=2"]), tmp_path / "half").fit()
    Trainer(cfg, tmp_path / "half", resume=True).fit()
    full = strip_timing(read_jsonl(tmp_path / "full" / "metrics.jsonl"))
    assert strip_timing(read_jsonl(tmp_path / "half" / "metrics.jsonl")) == full
    assert any(r["episodes/draws"] > 1 for r in full)  # the refill ran, and resumed alike


def test_it_needs_groups():
    with pytest.raises((ConfigError, ValueError), match=r"train\.dynamic_sampling.*group_size"):
        load_config(None, [*RUN, "algo=ppo", "algo.params.group_size=1"])


def test_informative_groups_follow_each_learner_and_turn():
    from seqmarl.train.rollout import Rollout

    group_ids = torch.tensor([0, 0, 1, 1, 2, 2])
    # llm_0 varies in group 1 only; llm_1 in group 2's second turn only
    returns = {
        "llm_0": torch.tensor([1.0, 1.0, 0.0, 1.0, 2.0, 2.0], dtype=torch.float64),
        "llm_1": torch.tensor([0.5, 0.5, 0.5, 0.5, 1.0, 1.0, 3.0, 4.0], dtype=torch.float64),
    }
    turn_groups = {
        "llm_0": group_ids * MAX_TURNS,
        "llm_1": torch.cat([group_ids * MAX_TURNS, torch.tensor([2, 2]) * MAX_TURNS + 1]),
    }
    empty = np.zeros((6, 2))
    roll = Rollout(
        prompts=[],
        group_ids=group_ids,
        seats=("llm_0", "llm_1"),
        completions={},
        observations={},
        task_rewards=empty,
        trained_rewards=empty,
        returns=returns,
        turn_groups=turn_groups,
    )
    assert informative_groups(roll, ["llm_0", "llm_1"]) == [1, 2]
    assert informative_groups(roll, ["llm_0"]) == [1]
    assert informative_groups(roll, ["llm_1"]) == [2]
