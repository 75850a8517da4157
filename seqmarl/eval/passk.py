"""pass@k with the unbiased estimator of Chen et al. 2021 ("Evaluating LLMs trained on code").

For a question answered ``n`` times with ``c`` correct answers,

    pass@k = 1 - C(n - c, k) / C(n, k)

is the probability that at least one of ``k`` answers drawn without replacement is correct;
averaged over questions it is unbiased. Computed as ``1 - prod_{i=n-c+1}^{n} (1 - k / i)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqmarl.envs import guard
from seqmarl.run.diskfull import write_atomic

__all__ = ["evaluate_pass_at_k", "pass_at_k", "pass_at_k_table", "plot_pass_at_k"]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one question with ``c`` of ``n`` answers correct."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_k_table(correct: Sequence[int], n: int) -> dict[int, float]:
    """Mean pass@k over questions for k = 1..n."""
    return {k: float(np.mean([pass_at_k(n, c, k) for c in correct])) for k in range(1, n + 1)}


@torch.no_grad()
def evaluate_pass_at_k(
    task,
    agent,
    *,
    num_questions: int,
    n: int,
    batch_size: int = 32,
    seed: int = 0,
    max_observation_chars: int | None = None,
    env_id: str = "task",
) -> dict[str, Any]:
    """Sample ``n`` answers per question from ``agent`` (answering alone) and score them.

    Each batch of questions is played as the training games are (:func:`seqmarl.train.rollout.play`
    on a one-seat :class:`~seqmarl.envs.game.TaskGame`, with the run's observation limit), each
    question in ``n`` rows, at most ``batch_size`` rows at a time.

    Returns:
        ``{"n", "num_questions", "pass_at_k": {k: value}, "correct": [...], "samples": [...]}``.
    """
    from tqdm.auto import tqdm

    from seqmarl.envs.game import TaskGame
    from seqmarl.method.mixing import RewardMixer
    from seqmarl.train.rollout import play

    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=agent.device).manual_seed(seed)
    pool = getattr(task, "prompts", None)
    if pool is not None and num_questions <= len(pool):
        questions = [pool[i] for i in sorted(rng.choice(len(pool), num_questions, replace=False))]
    else:
        questions = guard.sample_prompts(task, num_questions, rng)
    me = agent.agent_id
    game = TaskGame(
        task,
        mixer=RewardMixer(np.ones((1, 1)), (me,)),
        max_observation_chars=max_observation_chars,
        env_id=env_id,
    )
    per = max(1, batch_size // n)  # questions a batch
    texts: list[str] = []
    scores: list[float] = []
    starts = range(0, len(questions), per)
    for i in tqdm(starts, desc=f"pass@k: {num_questions} questions x {n}", unit="batch"):
        roll = play(game, {me: agent}, questions[i : i + per], (me,), copies=n, generator=gen)
        texts += roll.completions[me].texts
        scores += roll.task_rewards[:, 0].tolist()
    scores = np.asarray(scores).reshape(num_questions, n)
    correct = (scores > 0.5).sum(1).astype(int).tolist()
    return {
        "n": n,
        "num_questions": num_questions,
        "pass_at_k": pass_at_k_table(correct, n),
        "correct": correct,
        "samples": [
            {
                "question": q.text[-300:],
                "reference": q.reference,
                "answers": texts[j * n : j * n + 2],
            }
            for j, q in enumerate(questions[:3])
        ],
    }


def plot_pass_at_k(results: Mapping[str, Mapping[int, float]], path: str | Path) -> Path:
    """pass@k against k, one line per label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label, table in results.items():
        ks = sorted(int(k) for k in table)
        ax.plot(ks, [table[k] if k in table else table[str(k)] for k in ks], "o-", label=label)
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k")
    ax.set_title("pass@k (unbiased estimator)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    finally:
        plt.close(fig)
    return path


def write_pass_at_k(
    result: Mapping[str, Any], out_dir: Path, label: str, stem: str = "passk"
) -> list[Path]:
    """``<stem>.json``, ``<stem>.md`` (table) and ``<stem>.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / f"{stem}.json", json.dumps(result, indent=2))
    rows = ["| k | pass@k |", "|---|---|"]
    rows += [f"| {k} | {v:.4f} |" for k, v in result["pass_at_k"].items()]
    write_atomic(out_dir / f"{stem}.md", "\n".join(rows) + "\n")
    png = plot_pass_at_k({label: result["pass_at_k"]}, out_dir / f"{stem}.png")
    return [out_dir / f"{stem}.json", out_dir / f"{stem}.md", png]
