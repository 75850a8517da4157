"""The one place that walks the environments: B x K env copies played in lockstep.

Each iteration samples B prompts; every prompt is played in K copies (K responses per prompt
for group algorithms such as RLOO and GRPO). Seat by seat, the agent in that seat observes
all copies, samples one batched response, and every copy steps. The envs defer the last
step's scoring; :func:`~seqmarl.envs.sequential.score_pending` then scores all B x K episodes
in one call to the task (``score_episodes``: each agent's answer alone, or a joint score), the
envs mix the task rewards with the coefficient matrix, and the rewards are read back through
PettingZoo's ``rewards`` and ``infos``. Prompts, observations and rewards are checked on the way
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
from seqmarl.envs.guard import check_prompts
from seqmarl.envs.sequential import SequentialTextEnv, score_pending
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
        env.defer_scoring = True  # the last seat's step waits; score_pending scores the batch
        env.reset(options={"prompt": prompt, "seat_order": list(seats)})
    completions: dict[str, Completions] = {}
    observations: dict[str, list[str]] = {}
    t_gen = 0.0
    ids = envs[0].possible_agents
    for agent_id in seats:
        obs = [env.observe(agent_id)["text"] for env in envs]
        t0 = time.perf_counter()
        comp = agents[agent_id].sample(obs, generator=generator, stop_strings=task.stop_strings)
        t_gen += time.perf_counter() - t0
        completions[agent_id], observations[agent_id] = comp, obs
        for env, text in zip(envs, comp.texts, strict=True):
            assert env.agent_selection == agent_id
            env.step(text)
    t0 = time.perf_counter()
    score_pending(envs)  # every episode scored by its task in one batched call
    t_score = time.perf_counter() - t0
    # what every agent got, through PettingZoo's own channels
    task_r = np.array([[env.infos[a]["task_reward"] for a in ids] for env in envs])
    trained = np.array([[env.rewards[a] for a in ids] for env in envs])
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
