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

__all__ = ["MAX_TURNS", "Rollout", "play"]

#: Turns of one agent in one episode that group ids keep apart (``prompt * MAX_TURNS + t``).
MAX_TURNS = 1024


@dataclass
class Rollout:
    """What one iteration's play produced.

    Attributes:
        prompts: The ``B * K`` prompts, copy-major (copies of a prompt are adjacent).
        group_ids: ``(B * K,)`` index of the prompt each copy plays.
        seats: Agent id in each seat.
        completions: Per agent, its turns over all copies: round 0's ``B * K`` rows, then
            round 1's, ... (one row per copy with one round).
        observations: Per agent, the text it saw in each copy in round 0.
        task_rewards: ``(B * K, N)`` each agent's final task reward (agent-id order).
        trained_rewards: ``(B * K, N)`` after the coefficient matrix.
        returns: Per agent, ``(rows,)`` its (mixed) reward-to-go from each of its turns, in
            the rows of ``completions`` (with one round, its column of ``trained_rewards``).
        turn_groups: Per agent, ``(rows,)`` the group of each turn: its prompt and which of
            the agent's turns it is, so RLOO/GRPO compare like with like.
        transcripts: Per env copy, its turns in order (agent, observation, response).
        episode_returns: ``(B * K, N)`` every (mixed) reward each agent got after its turns,
            summed over the episode (per-turn rewards included; with one round and no
            per-turn rewards, ``trained_rewards``).
        timings: Seconds spent generating and scoring.
    """

    prompts: list[Prompt]
    group_ids: torch.Tensor
    seats: tuple[str, ...]
    completions: dict[str, Completions]
    observations: dict[str, list[str]]
    task_rewards: np.ndarray
    trained_rewards: np.ndarray
    returns: dict[str, torch.Tensor] = field(default_factory=dict)
    turn_groups: dict[str, torch.Tensor] = field(default_factory=dict)
    transcripts: list[list[dict[str, str]]] = field(default_factory=list)
    episode_returns: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)


def play(
    envs: Sequence[SequentialTextEnv],
    agents: Mapping[str, Policy],
    prompts: Sequence[Prompt],
    seats: Sequence[str],
    *,
    copies: int = 1,
    generator: torch.Generator | None = None,
    gamma: float = 1.0,
    max_new_tokens: int | None = None,
) -> Rollout:
    """Play ``prompts`` (each in ``copies`` env copies) with the agents in ``seats`` order.

    Args:
        envs: At least ``len(prompts) * copies`` envs; the first that many are used.
        agents: Agent id -> agent.
        prompts: The B prompts.
        seats: Agent id in each seat (a permutation of the env's agents).
        copies: K, copies per prompt.
        generator: Sampling generator.
        gamma: Discount over an agent's turns for its reward-to-go.
        max_new_tokens: Every turn's length limit; None: each agent's own generation config
            (which may draw a length per batch).
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
        env.defer_scoring = True  # the last step waits; score_pending scores the batch
        env.reset(options={"prompt": prompt, "seat_order": list(seats)})
    ids = envs[0].possible_agents
    parts: dict[str, list[Completions]] = {a: [] for a in ids}
    rows: dict[str, list[tuple[int, int]]] = {a: [] for a in ids}  # (env copy, its turn t)
    observations: dict[str, list[str]] = {}
    # per env copy and agent: the rewards that reached the agent after each of its turns
    turn_rewards = [{a: [] for a in ids} for _ in envs]
    transcripts: list[list[dict[str, str]]] = [[] for _ in envs]
    t_gen = 0.0
    while True:
        live = [i for i, env in enumerate(envs) if env.agents and not env.awaiting_score]
        if not live:
            break
        # the copies waiting on the same agent act together: one batched generation each
        # (copies of one env usually move in lockstep; a game may let them drift apart)
        waiting: dict[str, list[int]] = {}
        for i in live:
            waiting.setdefault(envs[i].agent_selection, []).append(i)
        for agent_id, idx in waiting.items():
            acting = []
            for i in idx:
                env = envs[i]
                if env.terminations[agent_id] or env.truncations[agent_id]:  # a dead step
                    env.step(None)
                    _credit(env, turn_rewards[i])
                else:
                    acting.append(i)
            if not acting:
                continue
            obs = [envs[i].observe(agent_id)["text"] for i in acting]
            t0 = time.perf_counter()
            comp = agents[agent_id].sample(
                obs,
                generator=generator,
                max_new_tokens=max_new_tokens,
                stop_strings=task.stop_strings,
            )
            t_gen += time.perf_counter() - t0
            parts[agent_id].append(comp)
            observations.setdefault(agent_id, obs)
            for i, o, text in zip(acting, obs, comp.texts, strict=True):
                rows[agent_id].append((i, len(turn_rewards[i][agent_id])))
                transcripts[i].append({"agent": agent_id, "observation": o, "response": text})
                envs[i].step(text)
                turn_rewards[i][agent_id].append(0.0)
                _credit(envs[i], turn_rewards[i])
    t0 = time.perf_counter()
    score_pending(envs)  # every episode scored by its task in one batched call
    t_score = time.perf_counter() - t0
    for env, credit in zip(envs, turn_rewards, strict=True):
        _credit(env, credit)
    # what every agent got at the end, through PettingZoo's own channels
    task_r = np.array([[env.infos[a]["task_reward"] for a in ids] for env in envs])
    trained = np.array([[env.trained_rewards[a] for a in ids] for env in envs])
    pad = next(iter(agents.values())).tokenizer.pad_token_id
    acted = [a for a in ids if parts[a]]
    completions = {a: Completions.concat(parts[a], pad_id=pad) for a in acted}
    group_ids = torch.arange(len(prompts)).repeat_interleave(copies)  # (B*K,) prompt of a copy
    returns, turn_groups = {}, {}
    for a in acted:
        togo = [_reward_to_go(credit[a], gamma) for credit in turn_rewards]
        # rows in the order sampled: with one round, env copies in order
        returns[a] = torch.tensor([togo[i][t] for i, t in rows[a]], dtype=torch.float64)
        turn_groups[a] = torch.tensor([int(group_ids[i]) * MAX_TURNS + t for i, t in rows[a]])
    return Rollout(
        prompts=played,
        group_ids=group_ids,
        seats=tuple(seats),
        completions=completions,
        observations=observations,
        task_rewards=task_r,
        trained_rewards=trained,
        returns=returns,
        turn_groups=turn_groups,
        transcripts=transcripts,
        episode_returns=np.array([[sum(c[a]) for a in ids] for c in turn_rewards]),
        timings={"generate": t_gen, "score": t_score},
    )


def _credit(env: SequentialTextEnv, credit: dict[str, list[float]]) -> None:
    """Add the rewards the env just handed out to each agent's latest turn.

    A reward that reaches an agent before its first turn has no action to credit and is
    left out of its returns.
    """
    for a, r in env.rewards.items():
        if r and credit[a]:
            credit[a][-1] += float(r)


def _reward_to_go(rewards: list[float], gamma: float) -> list[float]:
    """``G_t = r_t + gamma * G_{t+1}`` over one agent's turns."""
    out, g = [0.0] * len(rewards), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        g = rewards[t] + gamma * g
        out[t] = g
    return out
