"""The one place that walks the environments: B x K env copies played in lockstep.

Each iteration samples B prompts; every prompt is played in K copies (K responses per prompt
for group algorithms such as RLOO and GRPO). Seat by seat, the agent in that seat observes
all copies, samples one batched response, and every copy steps. After the last seat, all
B x K x N responses are scored in one batched call to the task and handed to the envs, which
mix them with the coefficient matrix. Prompts, observations and rewards are checked on the way
(:mod:`seqmarl.envs.guard`): a task's fault raises :class:`~seqmarl.errors.TaskError` naming
the row (env copy ``r``, which plays batch prompt ``r // copies``) and the agent.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from seqmarl.agents.base import Policy
from seqmarl.agents.sampling import Completions
from seqmarl.envs.guard import check_prompts, score_rewards
from seqmarl.envs.sequential import SequentialTextEnv
from seqmarl.envs.task import Prompt

__all__ = ["Rollout", "play"]


@dataclass
class Rollout:
    """What one iteration's play produced.

    Attributes:
        prompts: The ``B * K`` prompts, copy-major (copies of a prompt are adjacent).
        group_ids: ``(B * K,)`` index of the prompt each copy plays.
        seats: Agent id in each seat.
        completions: Per agent, its sampled responses over all copies.
        observations: Per agent, the text it saw in each copy.
        task_rewards: ``(B * K, N)`` each agent's own task reward (agent-id order).
        trained_rewards: ``(B * K, N)`` after the coefficient matrix.
        timings: Seconds spent generating and scoring.
    """

    prompts: list[Prompt]
    group_ids: torch.Tensor
    seats: tuple[str, ...]
    completions: dict[str, Completions]
    observations: dict[str, list[str]]
    task_rewards: np.ndarray
    trained_rewards: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)


def play(
    envs: Sequence[SequentialTextEnv],
    agents: Mapping[str, Policy],
    prompts: Sequence[Prompt],
    seats: Sequence[str],
    *,
    copies: int = 1,
    generator: torch.Generator | None = None,
) -> Rollout:
    """Play ``prompts`` (each in ``copies`` env copies) with the agents in ``seats`` order.

    Args:
        envs: At least ``len(prompts) * copies`` envs; the first that many are used.
        agents: Agent id -> agent.
        prompts: The B prompts.
        seats: Agent id in each seat (a permutation of the env's agents).
        copies: K, copies per prompt.
        generator: Sampling generator.
    """
    n_envs = len(prompts) * copies
    if len(envs) < n_envs:
        raise ValueError(
            f"need {n_envs} envs for {len(prompts)} prompts x {copies}, got {len(envs)}"
        )
    envs = list(envs[:n_envs])
    task = envs[0].task
    env_id = envs[0].env_id
    check_prompts(prompts, task=task, env_id=env_id, source="the batch's prompts")
    played = [p for p in prompts for _ in range(copies)]
    for env, prompt in zip(envs, played, strict=True):
        env.reset(options={"prompt": prompt, "seat_order": list(seats)})
    completions: dict[str, Completions] = {}
    observations: dict[str, list[str]] = {}
    t_gen = t_score = 0.0
    ids = envs[0].possible_agents
    n_ids = len(ids)
    for seat, agent_id in enumerate(seats):
        obs = [env.observe(agent_id)["text"] for env in envs]
        t0 = time.perf_counter()
        comp = agents[agent_id].sample(obs, generator=generator, stop_strings=task.stop_strings)
        t_gen += time.perf_counter() - t0
        completions[agent_id], observations[agent_id] = comp, obs
        if seat == len(seats) - 1:
            t0 = time.perf_counter()
            scores = score_rewards(
                task,
                [p for p in played for _ in ids],
                [completions[a].texts[i] for i in range(n_envs) for a in ids],
                env_id=env_id,
                row=lambda f: f"row {f // n_ids} (agent {ids[f % n_ids]})",
            ).reshape(n_envs, n_ids)  # (B*K, N)
            for env, row in zip(envs, scores, strict=True):
                env.provide_task_rewards(dict(zip(ids, row.tolist(), strict=True)))
            t_score += time.perf_counter() - t0
        for env, text in zip(envs, comp.texts, strict=True):
            assert env.agent_selection == agent_id
            env.step(text)
    task_r = np.array([[env.task_rewards[a] for a in ids] for env in envs])
    trained = np.array([[env.trained_rewards[a] for a in ids] for env in envs])
    group_ids = torch.arange(len(prompts)).repeat_interleave(copies)
    return Rollout(
        prompts=played,
        group_ids=group_ids,
        seats=tuple(seats),
        completions=completions,
        observations=observations,
        task_rewards=task_r,
        trained_rewards=trained,
        timings={"generate": t_gen, "score": t_score},
    )
