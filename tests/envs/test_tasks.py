import json

import numpy as np
import pytest

from seqmarl.envs import ArithmeticTask, DatasetTask, FormatTemplate, Prompt, load_records
from seqmarl.envs.spaces import AnyText
from seqmarl.envs.textutil import last_number, numbers_equal
from seqmarl.errors import ConfigError


def test_prompts_are_deterministic_under_a_seed():
    task = ArithmeticTask()
    assert task.sample_prompts(20, 7) == task.sample_prompts(20, 7)
    assert task.sample_prompts(20, 7) != task.sample_prompts(20, 8)
    gen_a, gen_b = np.random.default_rng(3), np.random.default_rng(3)
    assert task.sample_prompts(5, gen_a) + task.sample_prompts(5, gen_a) == task.sample_prompts(
        10, gen_b
    )


def test_arithmetic_reference_is_right():
    for p in ArithmeticTask(ops="+-*").sample_prompts(200, 0):
        q = p.text.removeprefix("Question: What is ").removesuffix("?\nAnswer:")
        assert eval(q) == int(p.reference)


@pytest.mark.parametrize(
    ("response", "reward"),
    [
        ("12", 1.0),
        ("The answer is 12.", 1.0),
        ("12.0", 1.0),
        ("13", 0.0),
        ("", 0.0),
        ("12 or 13", 0.0),
    ],
)
def test_arithmetic_score(response, reward):
    assert ArithmeticTask().score(Prompt("q", reference="12"), response) == reward


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("The answer is 1,234.", 1234.0),
        ("costs $5.50 in total", 5.5),
        ("-$7", -7.0),
        ("it drops to -3 degrees", -3.0),
        ("temperature −4", -4.0),
        ("about .5 of it", 0.5),
        ("first 3 then 4", 4.0),
        ("a1b2 x 10", 10.0),
        ("no number here", None),
        ("", None),
    ],
)
def test_last_number(text, value):
    assert last_number(text) == value


def test_numbers_equal():
    assert numbers_equal(3.0, 3.0000000001)
    assert not numbers_equal(None, 3.0)
    assert not numbers_equal(3.0, 4.0)


def test_format_template():
    t = FormatTemplate(
        later='I can make this sentence "{prompt}{previous}" more positive: {prompt}'
    )
    p = Prompt("This movie")
    assert t(p, []) == "This movie"
    assert (
        t(p, [" was great", " rocks"])
        == 'I can make this sentence "This movie rocks" more positive: This movie'
    )
    listed = FormatTemplate(later="{prompt}\n{responses}", item="[{i}] {response}")(p, ["a", "b"])
    assert listed == "This movie\n[1] a\n[2] b"


def test_dataset_task_from_jsonl(tmp_path):
    rows = [{"q": f"question {i}", "a": str(i)} for i in range(10)] + [{"q": "", "a": "x"}]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    for source in (str(path), str(tmp_path)):
        records = load_records(source, split="train")
        assert len(records) == 11 and records[3] == {"q": "question 3", "a": "3"}
    calls = []

    def reward(prompts, responses):
        calls.append(len(prompts))
        return [float(r == p.reference) for p, r in zip(prompts, responses)]

    task = DatasetTask(
        load_records(str(path), limit=11),
        to_prompt=lambda r: Prompt(r["q"], reference=r["a"]) if r["q"] else None,
        reward=reward,
    )
    assert len(task.prompts) == 10
    assert task.sample_prompts(4, 0) == task.sample_prompts(4, 0)
    assert len(set(p.text for p in task.sample_prompts(10, 1))) == 10  # no replacement
    assert len(task.sample_prompts(25, 1)) == 25  # with replacement past the pool
    assert task.score_batch([Prompt("q", "1"), Prompt("q", "2")], ["1", "3"]) == [1.0, 0.0]
    assert calls == [2]  # one batched call


def test_dataset_task_rejects_bad_rewards_and_empty_data():
    with pytest.raises(ConfigError, match="no usable prompts"):
        DatasetTask([{"q": ""}], to_prompt=lambda r: None, reward=lambda p, r: [])
    task = DatasetTask(
        [{"q": "x"}], to_prompt=lambda r: Prompt(r["q"]), reward=lambda p, r: [float("nan")]
    )
    with pytest.raises(ValueError, match="finite"):
        task.score(Prompt("x"), "y")


def test_load_records_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_records(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ConfigError, match=r"has no test\.jsonl"):
        load_records(str(tmp_path), split="test")


def test_any_text_space_contains_any_string_and_samples_variety():
    space = AnyText(max_length=100, seed=0)
    for s in ["", " ", "ünïcødé 中文 🙂", "\x00\n\t", "x" * 100]:
        assert space.contains(s)
    assert not space.contains("x" * 101)
    assert not space.contains(b"bytes")
    assert not space.contains(None)
    samples = [space.sample() for _ in range(300)]
    assert "" in samples
    assert any(" " in s for s in samples)
    assert any(ord(c) > 127 for s in samples for c in s)
    assert all(space.contains(s) for s in samples)


def test_sentiment_task_scores_prompt_plus_own_response():
    from seqmarl.envs import SentimentTask

    task = SentimentTask()
    p = Prompt("This movie was")
    good, bad = task.score_batch([p, p], [" wonderful, I loved it!", " a boring waste of time."])
    assert good > 0.5 and bad < -0.3
    assert task.score(p, "") == 0.0
    assert task.sample_prompts(8, 0) == task.sample_prompts(8, 0)


def test_sentiment_observer_sees_the_papers_template():
    from seqmarl.envs import SentimentTask

    task = SentimentTask()
    p = Prompt("The ending")
    assert task.observe(p, []) == "The ending"
    assert task.observe(p, [" was sad"]) == (
        'I can make this sentence "The ending was sad" more positive: The ending'
    )
    assert task.observe(p, [" was sad", " was lovely"]) == (
        'I can make this sentence "The ending was sad" and "The ending was lovely" more positive: The ending'
    )
