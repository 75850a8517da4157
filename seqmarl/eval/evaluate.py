"""``seqmarl eval``: task reward, trained reward, KL to the reference and samples.

What is evaluated:

- a run folder: its own config (task, kwargs, setting, generation settings) and the weights of
  its newest checkpoint, all agents together in the seat order of iteration 0;
- a run folder with ``--model SOURCE``: SOURCE untrained in every agent's place, with the run's
  own config, so base and trained numbers come from the same game and the same sampling;
- ``--agent ID``: chosen agents each alone (setting ``single``, that agent's weights), every
  one on the same prompts;
- a bare ``--model SOURCE`` (optionally with a config): one untrained agent, setting ``single``.

An untrained agent's KL to its reference is zero by construction. Results are written to a
new file each time (``eval.json``, then ``eval-2.json``, ``eval-3.json``, ...; pass@k files
likewise ``passk.json``, ``passk-2.json``, ...), never over an earlier one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqmarl import envs
from seqmarl.agents.pool import AgentPool
from seqmarl.config import RunConfig
from seqmarl.errors import ConfigError
from seqmarl.method.settings import Setting, make_setting
from seqmarl.run.checkpoint import CheckpointError, load_latest
from seqmarl.run.diskfull import write_atomic
from seqmarl.train.rollout import play

__all__ = [
    "evaluate",
    "evaluate_pass_at_k_for_pool",
    "free_stem",
    "load_trained_pool",
    "select_agents",
    "untrained_pool",
    "write_eval",
    "write_new",
    "write_pass_at_k_results",
]

#: Samples kept per evaluation (from the first batch).
NUM_SAMPLES = 4


def _value_heads(cfg: RunConfig, ids: Sequence[str]) -> list[str]:
    from seqmarl.algos import ALGORITHMS

    return [a for a in ids if ALGORITHMS.get(cfg.algo_for(a).name).uses_value_head]


def load_trained_pool(run_dir: Path, cfg: RunConfig) -> AgentPool:
    """The run's agents with the weights of its newest usable checkpoint.

    A league opponent (``league.opponents``) has no weights of its own: it plays as the initial
    model here (``seqmarl eval RUN --opponent`` picks its opponents).

    A damaged checkpoint is reported in one line and the previous one is used (left in place).
    """
    try:
        _, state = load_latest(run_dir / "checkpoints", move_damaged=False)
    except CheckpointError as exc:
        raise CheckpointError(f"eval: {exc}") from None
    ids = cfg.setting.build().agent_ids
    pool = AgentPool.from_config(
        cfg.agents, ids, value_heads=_value_heads(cfg, ids), seed=cfg.train.seed
    )
    for a in ids:
        if a in state["learners"]:  # a league opponent never learned: it keeps the initial model
            pool[a].load_state_dict(state["learners"][a]["agent"])
    return pool


def untrained_pool(cfg: RunConfig) -> AgentPool:
    """The config's agents as loaded from ``cfg.agents.model`` (no training)."""
    ids = cfg.setting.build().agent_ids
    return AgentPool.from_config(
        cfg.agents, ids, value_heads=_value_heads(cfg, ids), seed=cfg.train.seed
    )


def select_agents(cfg: RunConfig, requested: Iterable[str]) -> list[str]:
    """Agent ids from ``--agent`` values (each an id or a comma list), checked against the run.

    Raises:
        ConfigError: An id the run does not have (the message lists the run's agents).
    """
    ids = cfg.setting.build().agent_ids
    chosen: list[str] = []
    for item in requested:
        for a in (s.strip() for s in item.split(",")):
            if not a:
                continue
            if a not in ids:
                raise ConfigError(
                    f"--agent {a!r}: no such agent in this run; its agents are {', '.join(ids)}"
                )
            if a not in chosen:
                chosen.append(a)
    if not chosen:
        raise ConfigError(f"--agent: no agent id given; this run's agents are {', '.join(ids)}")
    return chosen


def _play_and_score(
    cfg: RunConfig,
    setting: Setting,
    agents: Mapping[str, Any],
    tokenizer: Any,
    *,
    names: Mapping[str, str],
    num_prompts: int,
    batch_size: int,
    seed: int,
    iteration: int,
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Play ``num_prompts`` prompts with ``agents`` in ``setting``'s seats of ``iteration``.

    Args:
        cfg: The run config (task and kwargs).
        setting: The game played (its agent ids are the env's).
        agents: Env agent id -> agent.
        tokenizer: The policy tokenizer (context for the env).
        names: Env agent id -> the id to report it under.
        num_prompts: Prompts played in all.
        batch_size: Prompts played at once.
        seed: Seeds the prompt sampling and the generation.
        iteration: Its seat order is played.

    Returns:
        (per reported id: seat, task_reward, reward, kl; sample rows of the first batch)
    """
    game = envs.build_game(cfg.task, setting, tokenizer=tokenizer)  # the run's own game
    batch_size = max(1, min(batch_size, num_prompts))
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=next(iter(agents.values())).device).manual_seed(seed)
    seats = setting.seat_agents(iteration)
    ids = setting.agent_ids
    task_r: dict[str, list[float]] = {a: [] for a in ids}
    trained_r: dict[str, list[float]] = {a: [] for a in ids}
    kls: dict[str, list[float]] = {a: [] for a in ids}
    turns: dict[str, list[int]] = {a: [] for a in ids}
    samples: list[dict[str, Any]] = []
    done = 0
    while done < num_prompts:
        n = min(batch_size, num_prompts - done)
        prompts = game.sample_prompts(n, rng)
        roll = play(game, agents, prompts, seats, generator=gen)
        for i, a in enumerate(ids):
            task_r[a] += roll.task_rewards[:, i].tolist()
            trained_r[a] += roll.trained_rewards[:, i].tolist()
            turns[a] += roll.turns[:, i].tolist()
            if a in roll.completions:  # every turn it took, in every round
                comp = roll.completions[a]
                ref, _ = agents[a].reference(comp)
                kls[a] += ((comp.logprobs - ref) * comp.response_mask).sum(1).tolist()
        for j in range(min(NUM_SAMPLES, n) if done == 0 else 0):
            samples.append(roll.sample(j, ids, names))
        done += n
    stats = {
        names[a]: {
            "seat": seats.index(a),
            "task_reward": float(np.mean(task_r[a])),
            "task_reward_se": standard_error(task_r[a]),
            "reward": float(np.mean(trained_r[a])),
            "reward_se": standard_error(trained_r[a]),
            "kl": float(np.mean(kls[a])) if kls[a] else None,
            "kl_se": standard_error(kls[a]),
            "turns": int(np.sum(turns[a])),
        }
        for a in ids
    }
    return stats, samples


def standard_error(values: Sequence[float]) -> float | None:
    """The standard error of the mean of ``values``: ``std(ddof=1) / sqrt(n)``; None if n < 2."""
    if len(values) < 2:
        return None
    return float(np.std(values, ddof=1) / np.sqrt(len(values)))


@torch.no_grad()
def evaluate(
    cfg: RunConfig,
    pool: AgentPool,
    *,
    num_prompts: int = 64,
    batch_size: int = 16,
    seed: int = 1234,
    iteration: int = 0,
    alone: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Evaluate the pool's agents together, or each of ``alone`` by itself.

    Together: ``num_prompts`` prompts in ``cfg.setting``'s seat order of ``iteration``. Alone:
    each chosen agent plays the same prompts (same seed) in setting ``single``, so its
    numbers do not depend on the others.

    Returns:
        ``{"env", "model", "setting", "alone", "num_prompts", "seed", "seats", "agents",
        "samples", "config"}`` (``config``: the resolved config that was played); per agent
        ``seat``, ``task_reward`` (its own task reward), ``reward`` (after the coefficient
        matrix C: what it was trained on), ``kl`` (mean over its turns, every round, of the
        KL to the reference summed over tokens; None if it never acted), ``turns`` (its turns
        in all), and ``task_reward_se``, ``reward_se``, ``kl_se``: the standard errors of those
        means (:func:`standard_error` over the per-prompt rewards and the per-turn KLs; None
        below two values). Samples hold, per prompt, each agent's seat, first observation, last
        response and rewards, and with several turns the whole transcript.
    """
    common = dict(num_prompts=num_prompts, batch_size=batch_size, seed=seed, iteration=iteration)
    if alone is None:
        setting = cfg.setting.build()
        names = {a: a for a in setting.agent_ids}
        agents = {a: pool[a] for a in setting.agent_ids}
        stats, samples = _play_and_score(
            cfg, setting, agents, pool.tokenizer, names=names, **common
        )
        setting_name, seats = cfg.setting.name, list(setting.seat_agents(iteration))
    else:
        single = make_setting("single")
        (slot,) = single.agent_ids
        stats, samples = {}, []
        for a in alone:
            s, rows = _play_and_score(
                cfg, single, {slot: pool[a]}, pool.tokenizer, names={slot: a}, **common
            )
            stats.update(s)
            if not samples:
                samples = rows
            else:  # same seed, same prompts: merge the agents' answers per prompt
                for merged, row in zip(samples, rows, strict=True):
                    merged["agents"].update(row["agents"])
        setting_name, seats = "single", None
    return {
        "env": cfg.task.env,
        "model": cfg.agents.model,
        "setting": setting_name,
        "alone": alone is not None,
        "num_prompts": num_prompts,
        "seed": seed,
        "seats": seats,
        "agents": stats,
        "samples": samples,
        "config": cfg.model_dump(mode="json"),
    }


def free_stem(folder: Path, stem: str, suffixes: Sequence[str]) -> str:
    """``stem``, else ``stem-2``, ``stem-3``, ...: the first name with no file of any suffix."""
    n = 1
    while True:
        name = stem if n == 1 else f"{stem}-{n}"
        if not any((folder / f"{name}{s}").exists() for s in suffixes):
            return name
        n += 1


def write_eval(result: Mapping[str, Any], out_dir: Path) -> Path:
    """Write ``result`` to a new ``eval[-N].json`` in ``out_dir`` (never over an earlier one).

    The file appears whole or not at all (:func:`seqmarl.run.diskfull.write_atomic`): a full disk
    leaves no empty or torn ``eval.json`` behind.
    """
    return write_new(out_dir, "eval", json.dumps(result, indent=2))


def write_new(out_dir: Path, stem: str, text: str, suffix: str = ".json") -> Path:
    """``text`` as a new ``<stem>[-N]<suffix>`` in ``out_dir``: never over an existing file.

    Written whole to a temporary file and linked into place, so two writers that pick the same
    name cannot overwrite each other (the second takes the next free name).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    while True:
        path = out_dir / (free_stem(out_dir, stem, [suffix]) + suffix)
        try:
            return write_atomic(path, text, replace=False)
        except FileExistsError:
            continue


@torch.no_grad()
def evaluate_pass_at_k_for_pool(
    cfg: RunConfig,
    pool: AgentPool,
    *,
    num_questions: int,
    n: int,
    seed: int = 0,
    agent_ids: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """pass@k (k = 1..n) of each agent (all, or ``agent_ids``) answering alone."""
    from seqmarl.eval.passk import evaluate_pass_at_k

    game = envs.build_game(cfg.task, cfg.setting.build(), tokenizer=pool.tokenizer)
    task = getattr(game, "task", None)
    if task is None:
        raise ConfigError(
            f"pass@k: env {cfg.task.env!r} is a PettingZoo game with no task to score one "
            "answer alone; pass@k needs a task env (seqmarl list)"
        )
    ids = list(agent_ids) if agent_ids is not None else list(pool.agents)
    return {
        a: evaluate_pass_at_k(
            task,
            pool[a],
            num_questions=num_questions,
            n=n,
            seed=seed,
            max_observation_chars=cfg.task.max_observation_chars,
            env_id=cfg.task.env,
        )
        for a in ids
    }


def write_pass_at_k_results(results: Mapping[str, Mapping[str, Any]], out_dir: Path) -> list[Path]:
    """``<out_dir>/<agent>/passk[-N].{json,md,png}`` for each agent (never over earlier ones)."""
    from seqmarl.eval.passk import write_pass_at_k

    written = []
    for agent_id, res in results.items():
        folder = out_dir / agent_id
        stem = free_stem(folder, "passk", [".json", ".md", ".png"])
        written += write_pass_at_k(res, folder, label=agent_id, stem=stem)
    return written
