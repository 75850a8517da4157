"""``seqmarl eval``: task reward, KL to the reference and samples for trained agents or a model.

A run folder is evaluated with its own config and its newest checkpoint; a bare model source
(``--model``) is evaluated as one untrained agent (its KL to itself is zero by construction).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqmarl import envs
from seqmarl.agents.pool import AgentPool
from seqmarl.checkpoint import latest_checkpoint, load_checkpoint
from seqmarl.config import RunConfig
from seqmarl.errors import ConfigError
from seqmarl.rollout import play

__all__ = ["evaluate", "evaluate_pass_at_k_for_pool", "load_trained_pool"]


def load_trained_pool(run_dir: Path, cfg: RunConfig) -> AgentPool:
    """The run's agents with the weights of its newest checkpoint."""
    from seqmarl.algos import ALGORITHMS

    ckpt = latest_checkpoint(run_dir / "checkpoints")
    if ckpt is None:
        raise ConfigError(f"eval: no checkpoint under {run_dir / 'checkpoints'}")
    ids = cfg.setting.build().agent_ids
    heads = [a for a in ids if ALGORITHMS.get(cfg.algo_for(a).name).uses_value_head]
    pool = AgentPool.from_config(cfg.agents, ids, value_heads=heads, seed=cfg.train.seed)
    state = load_checkpoint(ckpt)
    for a in ids:
        pool[a].load_state_dict(state["learners"][a]["agent"])
    return pool


@torch.no_grad()
def evaluate(
    cfg: RunConfig,
    pool: AgentPool,
    *,
    num_prompts: int = 64,
    batch_size: int = 16,
    seed: int = 1234,
    iteration: int = 0,
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Play ``num_prompts`` prompts in the seat order of ``iteration`` and report per agent.

    Per agent: the mean task reward and the mean summed KL to the reference; plus samples.
    """
    setting = cfg.setting.build()
    env = envs.make(
        cfg.task.env,
        setting=setting,
        context={"policy_tokenizer": pool.tokenizer},
        **cfg.task.kwargs,
    )
    pool_envs = [env] + [env.clone() for _ in range(batch_size - 1)]
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=pool.device).manual_seed(seed)
    seats = setting.seat_agents(iteration)
    ids = setting.agent_ids
    task_r: dict[str, list[float]] = {a: [] for a in ids}
    kls: dict[str, list[float]] = {a: [] for a in ids}
    samples = []
    done = 0
    while done < num_prompts:
        n = min(batch_size, num_prompts - done)
        prompts = env.task.sample_prompts(n, rng)
        roll = play(pool_envs, pool.agents, prompts, seats, generator=gen)
        for i, a in enumerate(ids):
            comp = roll.completions[a]
            ref, _ = pool[a].reference(comp)
            kls[a] += ((comp.logprobs - ref) * comp.response_mask).sum(1).tolist()
            task_r[a] += roll.task_rewards[:, i].tolist()
        first_batch = done == 0
        for j in range(min(4, n) if first_batch else 0):
            samples.append(
                {
                    "prompt": roll.prompts[j].text,
                    **{a: roll.completions[a].texts[j] for a in ids},
                    **{
                        f"{a}/task_reward": float(roll.task_rewards[j, i])
                        for i, a in enumerate(ids)
                    },
                }
            )
        done += n
    result = {
        "env": cfg.task.env,
        "num_prompts": num_prompts,
        "seats": list(seats),
        "agents": {
            a: {"task_reward": float(np.mean(task_r[a])), "kl": float(np.mean(kls[a]))} for a in ids
        },
        "samples": samples,
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "eval.json").write_text(json.dumps(result, indent=2))
    return result


def evaluate_pass_at_k_for_pool(
    cfg: RunConfig,
    pool: AgentPool,
    *,
    num_questions: int,
    n: int,
    seed: int = 0,
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """pass@k (k = 1..n) of every agent answering alone, on the config's task."""
    from seqmarl.passk import evaluate_pass_at_k, write_pass_at_k

    task = envs.make(
        cfg.task.env,
        setting=cfg.setting.build(),
        context={"policy_tokenizer": pool.tokenizer},
        **cfg.task.kwargs,
    ).task
    results = {}
    for agent_id, agent in pool.agents.items():
        res = evaluate_pass_at_k(task, agent, num_questions=num_questions, n=n, seed=seed)
        results[agent_id] = res
        if out_dir is not None:
            write_pass_at_k(res, out_dir / agent_id, label=agent_id)
    return results
