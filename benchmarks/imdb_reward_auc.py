"""How well the IMDB reward separates positive from negative reviews: ROC AUC of the
positive-class logit that ``imdb-sentiment-v0`` uses as its reward, on IMDB test reviews.

    python benchmarks/imdb_reward_auc.py                 # all 25,000 test reviews
    python benchmarks/imdb_reward_auc.py --limit 2000    # a seeded random subset

Reward model and data come from ../shared (SEQMARL_SHARED) unless given.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from seqmarl.envs.tasks.imdb import ClassifierReward
from seqmarl.run.paths import shared_path


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney AUC with ties counted half (ranks, O(n log n))."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = labels == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default=str(shared_path("data", "imdb", "test.jsonl")))
    p.add_argument(
        "--reward-model", default=str(shared_path("models", "imdb-sentiment-bert-tiny-scratch"))
    )
    p.add_argument("--limit", type=int)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    with open(args.data, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    if args.limit:
        idx = np.random.default_rng(args.seed).choice(len(rows), args.limit, replace=False)
        rows = [rows[i] for i in idx]
    texts = [r["text"].replace("<br />", " ") for r in rows]
    labels = np.array([r["label"] for r in rows])
    t0 = time.perf_counter()
    scores = np.array(ClassifierReward(args.reward_model, batch_size=64)(texts))
    elapsed = time.perf_counter() - t0
    acc = float(((scores > 0) == (labels == 1)).mean())  # logit > 0 is a tie-free stand-in
    print(f"reviews: {len(rows)} ({int(labels.sum())} positive), scored in {elapsed:.0f} s")
    print(f"ROC AUC of the positive logit: {roc_auc(scores, labels):.4f}")
    print(
        f"mean positive logit: positive reviews {scores[labels == 1].mean():+.3f}, "
        f"negative reviews {scores[labels == 0].mean():+.3f}; sign accuracy {acc:.3f}"
    )


if __name__ == "__main__":
    main()
