"""The round robin's wall time: pair by pair and seat order by seat order, then batched.

Trains a small league run (a learner against its snapshots and ``random``, one snapshot per
iteration), then times three ways of playing its round robin on the same machine, in one
process, one after the other:

* ``before``: the loop seqmarl had until 2026-12-07 (commit 6fb35c4): each pair alone, the
  weights of both contenders loaded into the run's two agent slots, one rollout per seat order
  in chunks of 16 games;
* ``pairs alone``: :func:`seqmarl.eval.roundrobin.round_robin` with ``rows = games`` (one pair per
  group: both seat orders in one loop);
* ``batched``: the same with every pair in one group (``--batch-games`` large), each model
  contender in its own adapter answering the rows of every pair in one generation per turn.

::

    python benchmarks/round_robin.py                       # imdb-gpt2-tiny on OpenSpiel tic-tac-toe
    python benchmarks/round_robin.py --model embedded:tiny-gpt2 --games 4 --iterations 2

Prints one table: seconds (the fastest of ``--repeats`` interleaved runs), generation calls,
the ratio to ``before``, and the learner's mu.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SHARED_MODEL = Path("/work/shared/models/imdb-gpt2-tiny")


def train_league(out: Path, model: str, env: str, iterations: int) -> None:
    from seqmarl.cli import main

    args = [
        "train",
        f"model={model}",
        f"env={env}",
        "setting.reward_matrix=independent",
        "setting.exchange_every=1",
        "algo=reinforce",
        "batch_size=4",
        f"iterations={iterations}",
        "agents.generation.max_new_tokens=4",
        "task.max_observation_chars=300",
        "task.observation_template={observation}\n[",
        "task.action_prefix=[",
        "league.opponents=[llm_1]",
        "league.fixed=[random]",
        "league.snapshot_every=1",
        "train.progress=false",
        "train.tensorboard=false",
        "--out",
        str(out),
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 0


def before(contenders, names, games: int, seed: int) -> dict[str, float]:
    """The round robin as it was: pair by pair, seat order by seat order, chunks of 16."""
    from seqmarl import envs
    from seqmarl.agents.scripted import derive_seed
    from seqmarl.eval.ratings import Ratings
    from seqmarl.train.league import game_outcomes
    from seqmarl.train.rollout import play

    slots = ("llm_0", "llm_1")
    cfg = contenders.cfg
    setting = cfg.setting.build()
    ratings = Ratings()
    pairs = [
        (a, b)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if not (contenders.scripted(a) and contenders.scripted(b))
    ]
    for a, b in pairs:
        game = envs.build_game(cfg.task, setting, tokenizer=contenders.pool.tokenizer)
        players = {
            slots[0]: contenders.seat(a, slots[0], derive_seed(seed, 0)),
            slots[1]: contenders.seat(b, slots[1], derive_seed(seed, 1)),
        }
        prompts = game.sample_prompts(games - games // 2, np.random.default_rng(seed))
        gen = torch.Generator(device=contenders.pool.device).manual_seed(seed)
        for k, seats in enumerate((slots, slots[::-1])):
            todo = prompts[: games - games // 2] if k == 0 else prompts[: games // 2]
            for start in range(0, len(todo), 16):
                roll = play(game, players, todo[start : start + 16], seats, generator=gen)
                scores = game_outcomes(roll.task_rewards, 0, 1)
                ratings.record_many((a, b, float(s)) for s in scores)
    return {r.name: r.mu for r in ratings.table()}


def count_calls(pool) -> list[int]:
    """Count every policy's ``sample`` calls (a generation each)."""
    calls = [0]
    for agent in pool.agents.values():
        real = agent.sample

        def counted(*args, _real=real, **kwargs):
            calls[0] += 1
            return _real(*args, **kwargs)

        agent.sample = counted
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = str(SHARED_MODEL) if SHARED_MODEL.is_dir() else "embedded:tiny-gpt2"
    parser.add_argument("--model", default=default)
    parser.add_argument("--env", default="openspiel/tic_tac_toe-v0")
    parser.add_argument("--iterations", type=int, default=4, help="training iterations (snapshots)")
    parser.add_argument("--games", type=int, default=8, help="games per pair")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--repeats", type=int, default=2, help="each way is timed this often")
    args = parser.parse_args()

    from seqmarl.agents.pool import AgentPool
    from seqmarl.config import load_config
    from seqmarl.eval.matches import Contenders
    from seqmarl.eval.roundrobin import pairs_of, round_robin
    from seqmarl.method.settings import agent_ids

    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        train_league(run, args.model, args.env, args.iterations)
        cfg = load_config(run / "config.yaml", [], run_dir=run)
        ids = cfg.setting.build().agent_ids
        two = Contenders(run, cfg, AgentPool.from_config(cfg.agents, ids, seed=cfg.train.seed))
        names = two.names()
        models = [n for n in names if not two.scripted(n)]
        npairs = len(pairs_of(two, names))
        many_pool = AgentPool.from_config(cfg.agents, agent_ids(len(models)), seed=cfg.train.seed)
        many = Contenders(run, cfg, many_pool)
        learner = two.learner
        rows = []
        ways = (
            ("before", lambda: before(two, names, args.games, args.seed), two.pool),
            (
                "pairs alone",
                lambda: round_robin(two, names, games=args.games, seed=args.seed, rows=args.games),
                two.pool,
            ),
            (
                "batched",
                lambda: round_robin(
                    many, names, games=args.games, seed=args.seed, rows=args.games * npairs
                ),
                many_pool,
            ),
        )
        counters = {id(pool): count_calls(pool) for _, _, pool in ways}
        times: dict[str, list[float]] = {label: [] for label, _, _ in ways}
        for _ in range(args.repeats):  # interleaved, so a busy spell hits every way alike
            for label, fn, pool in ways:
                calls = counters[id(pool)]
                calls[0] = 0
                t0 = time.perf_counter()
                got = fn()
                times[label].append(time.perf_counter() - t0)
                if "ratings" in got:
                    got = {n: p["mu"] for n, p in got["ratings"]["players"].items()}
                mu, made = got[learner], calls[0]
                if len(times[label]) == args.repeats:
                    rows.append((label, times[label], made, mu))
    print(
        f"round robin: {len(names)} contenders, {npairs} pairs, {args.games} games a pair, "
        f"{args.env}, {args.model}, torch threads {torch.get_num_threads()}"
    )
    print(f"seconds: the fastest of {args.repeats} runs (all runs in brackets)")
    print("| play | seconds | generation calls | vs before | learner mu |")
    print("|---|---|---|---|---|")
    base = min(rows[0][1])
    for label, seconds, calls, mu in rows:
        each = ", ".join(f"{t:.1f}" for t in seconds)
        best = min(seconds)
        print(f"| {label} | {best:.2f} ({each}) | {calls} | {base / best:.2f}x | {mu:.2f} |")


if __name__ == "__main__":
    main()
