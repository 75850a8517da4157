"""IMDB and GSM8K tasks on the shared offline data (skipped when ../shared is absent)."""

import json

import numpy as np
import pytest

from seqmarl import envs
from seqmarl.envs.task import Prompt
from seqmarl.envs.tasks.gsm8k import ONE_SHOT, GSM8KTask, gsm8k_reward, reference_answer
from seqmarl.envs.textutil import last_number
from tests.conftest import require_shared


@pytest.fixture(scope="module")
def gsm8k_test():
    return GSM8KTask(source=str(require_shared("data", "gsm8k")), split="test")


def test_every_gsm8k_reference_solution_scores_one(gsm8k_test):
    task = gsm8k_test
    assert len(task.prompts) == 1319
    solutions = [p.meta["solution"] for p in task.prompts]
    assert task.score_batch(task.prompts, solutions) == [1.0] * 1319


def test_perturbed_gsm8k_answers_score_zero(gsm8k_test):
    task = gsm8k_test
    perturbed = []
    for p in task.prompts:
        truth = float(p.reference)
        perturbed.append(p.meta["solution"].rsplit("####", 1)[0] + f"#### {truth + 1:g}")
    assert task.score_batch(task.prompts, perturbed) == [0.0] * 1319
    assert task.score_batch(task.prompts, [""] * 1319) == [0.0] * 1319


@pytest.mark.parametrize(
    ("solution", "value"),
    [
        ("so 3+4=7\n#### 7", 7.0),
        ("#### 1,234", 1234.0),
        ("#### -5", -5.0),
        ("#### $18", 18.0),
        ("#### 0.5", 0.5),
    ],
)
def test_reference_answer(solution, value):
    assert reference_answer(solution) == value


def test_reference_answer_without_a_final_line_is_an_error():
    with pytest.raises(ValueError, match="####"):
        reference_answer("The answer is 7.")


@pytest.mark.parametrize(
    ("response", "reward"),
    [
        ("She pays 3 * $6 = $18. The answer is $1,018.", 1.0),
        ("The answer is 1018.00", 1.0),
        ("1,018", 1.0),
        ("The answer is 1018.5", 0.0),
        ("The answer is -1018", 0.0),
        ("I do not know", 0.0),
        ("", 0.0),
    ],
)
def test_gsm8k_reward_tricky_answers(response, reward):
    assert gsm8k_reward([Prompt("q", reference="1018.0")], [response]) == [reward]
    neg = gsm8k_reward([Prompt("q", reference="-4.0")], ["It falls by 4, so the change is -4."])
    assert neg == [1.0]


def test_gsm8k_prompt_and_observer_format(gsm8k_test):
    p = gsm8k_test.prompts[0]
    assert p.text.startswith(ONE_SHOT + "Question: ") and p.text.endswith("\nAnswer:")
    obs = gsm8k_test.observe(p, ["It is 18.", "18"])
    assert obs.endswith("\nReference: It is 18.\nReference: 18\nAnswer:")
    assert obs.startswith(p.text.removesuffix("Answer:"))


def test_gsm8k_from_a_single_jsonl_file(tmp_path):
    path = tmp_path / "mini.jsonl"
    path.write_text(json.dumps({"question": "What is 2+2?", "answer": "2+2=4\n#### 4"}) + "\n")
    task = GSM8KTask(source=str(path), split="train", one_shot=False)
    assert task.prompts[0].text == "Question: What is 2+2?\nAnswer:"
    assert task.score(task.prompts[0], "so 4") == 1.0


@pytest.fixture(scope="module")
def imdb_task():
    return envs.IMDBTask(
        source=str(require_shared("data", "imdb")),
        split="test",
        reward_model=str(require_shared("models", "imdb-sentiment-bert-tiny-scratch")),
        limit=400,
        policy_tokenizer=str(require_shared("models", "imdb-gpt2-tiny")),
    )


def test_imdb_prompts_are_2_to_8_policy_tokens(imdb_task):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(require_shared("models", "imdb-gpt2-tiny")))
    lengths = [len(tok(p.text, add_special_tokens=False)["input_ids"]) for p in imdb_task.prompts]
    assert min(lengths) >= 1 and max(lengths) <= 9  # decode/re-encode may merge a token
    assert 2 <= np.median(lengths) <= 8
    assert not any("<br" in p.text for p in imdb_task.prompts)
    assert imdb_task.sample_prompts(5, 0) == imdb_task.sample_prompts(5, 0)


def test_imdb_reward_separates_positive_from_negative_reviews(imdb_task):
    """AUC of the positive logit on full test reviews (prompt = '', response = review)."""
    from seqmarl.run.paths import shared_path

    with open(shared_path("data", "imdb", "test.jsonl"), encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]  # not splitlines(): reviews hold U+2028
    rng = np.random.default_rng(0)
    picked = [rows[i] for i in rng.choice(len(rows), 400, replace=False)]
    texts = [r["text"].replace("<br />", " ") for r in picked]
    scores = np.array(imdb_task.score_batch([Prompt("")] * len(texts), texts))
    labels = np.array([r["label"] for r in picked])
    pos, neg = scores[labels == 1], scores[labels == 0]
    auc = float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())
    assert auc > 0.85, auc


def test_imdb_observer_template(imdb_task):
    p = Prompt("This film")
    assert imdb_task.observe(p, [" was dull"]) == (
        'I can make this sentence "This film was dull" more positive: This film'
    )


def test_imdb_vader_reward_and_bad_classifier(tmp_path):
    task = envs.IMDBTask(
        source=str(require_shared("data", "imdb")), split="test", reward_model="vader", limit=50
    )
    good, bad = task.score_batch([Prompt("It")] * 2, [" was wonderful and moving", " was awful"])
    assert good > 0 > bad
    from seqmarl.errors import ConfigError

    with pytest.raises(ConfigError, match="reward_model"):
        envs.IMDBTask(
            source=str(require_shared("data", "imdb")),
            split="test",
            reward_model=str(tmp_path / "nothing"),
            limit=5,
        )


def test_last_number_is_the_extraction(gsm8k_test):
    assert last_number("#### 72") == 72.0
