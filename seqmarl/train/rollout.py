"""Where training and evaluation games are played: B x K rows in lockstep, via :class:`TextGame`.

pass@k samples one agent alone, outside any game (:mod:`seqmarl.eval.passk`).

Each iteration samples B prompts; every prompt is played in K rows (K responses per prompt
for group algorithms such as RLOO and GRPO). Whenever rows wait on an agent, it observes all
of them and samples one batched response (:mod:`seqmarl.envs.game`). When every row is over,
the game reports its raw task rewards (:class:`~seqmarl.envs.game.GameResult`) and the one
mixer (:class:`~seqmarl.method.mixing.RewardMixer`) credits them, through the coefficient matrix and
the seat order, to each agent's turns. A game's fault raises one line naming the env, the
agent, the row and the turn (:class:`~seqmarl.errors.TaskError`,
:class:`~seqmarl.errors.EnvError`).

Rewards, as :class:`Rollout` reports them (and the trainer logs them, per agent):

* ``task_rewards``: the game's outcome for the agent, before the matrix (a task's final
  score; a PettingZoo env's summed rewards);
* ``trained_rewards``: the outcome through the matrix, ``M @ outcome``;
* ``episode_returns``: every mixed reward credited to the agent's turns (what its returns are
  made of, before the discount ``gamma``), turn rewards included;
* ``uncredited``: mixed rewards that reached the agent before its first turn (a win by the
  other side's forfeit, say): in ``trained_rewards`` but in no return, since no action of
  the agent led to it;
* ``turns``: the agent's turns per row (0: it never acted and learns nothing from the row).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from seqmarl.agents.base import Player
from seqmarl.envs.game import TextGame
from seqmarl.envs.task import Prompt
from seqmarl.errors import ContextLengthError
from seqmarl.types import Completions

__all__ = ["MAX_TURNS", "Rollout", "informative_groups", "play", "summed_timings"]

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
        uncredited: ``(B * K, N)`` mixed rewards that reached an agent before its first turn.
        turns: ``(B * K, N)`` each agent's turns in each row.
        truncated: ``(B * K,)`` rows cut at the game's turn bound.
        infos: Per row, each agent's last info from the game (a PettingZoo env's
            ``infos``: e.g. ``invalid_moves`` and ``forfeit`` of the game suites); empty
            dicts for a task.
        timings: Seconds spent generating and scoring.
        collector: What the collector did beyond playing (dynamic sampling's draws and
            dropped groups), logged as they are.
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
    uncredited: np.ndarray | None = None
    turns: np.ndarray | None = None
    truncated: np.ndarray | None = None
    infos: list[dict[str, dict[str, Any]]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    collector: dict[str, float] = field(default_factory=dict)

    def sample(
        self, j: int, ids: Sequence[str], names: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Row ``j`` as ``samples.jsonl`` and ``eval.json`` hold it.

        Per agent of ``ids`` (reported as ``names[id]``): its seat, first observation, last
        answer and rewards; with several turns, the whole transcript.
        """
        names = names or {a: a for a in ids}
        played = self.transcripts[j]
        mine = {a: [t for t in played if t["agent"] == a] for a in ids}
        row: dict[str, Any] = {
            "prompt": self.prompts[j].text,
            "agents": {
                names[a]: {
                    "seat": self.seats.index(a),
                    "observation": mine[a][0]["observation"] if mine[a] else None,
                    "response": mine[a][-1]["response"] if mine[a] else None,
                    "task_reward": float(self.task_rewards[j, i]),
                    "reward": float(self.trained_rewards[j, i]),
                }
                for i, a in enumerate(ids)
            },
        }
        if any(len(t) > 1 for t in mine.values()):  # a game: the whole transcript
            row["turns"] = [{**t, "agent": names[t["agent"]]} for t in played]
        return row

    def take(self, groups: Sequence[int]) -> Rollout:
        """The rows of prompt groups ``groups`` (ids of ``group_ids``), in their played order."""
        wanted = torch.as_tensor(sorted(set(groups)), dtype=self.group_ids.dtype)
        keep = torch.isin(self.group_ids, wanted)
        rows = keep.nonzero().squeeze(1)
        idx = rows.tolist()
        completions, returns, turn_groups = {}, {}, {}
        for a, comp in self.completions.items():
            mine = torch.isin(self.turn_groups[a] // MAX_TURNS, wanted).nonzero().squeeze(1)
            completions[a] = comp.select(mine)
            returns[a] = self.returns[a][mine]
            turn_groups[a] = self.turn_groups[a][mine]
        n = len(self.group_ids)

        def pick(x):
            return None if x is None else x[keep.numpy()]

        return Rollout(
            prompts=[self.prompts[i] for i in idx],
            group_ids=self.group_ids[rows],
            seats=self.seats,
            completions=completions,
            observations={  # a batch of all rows (a task) follows them; a game's first batch stays
                a: [o[i] for i in idx] if len(o) == n else o for a, o in self.observations.items()
            },
            task_rewards=pick(self.task_rewards),
            trained_rewards=pick(self.trained_rewards),
            returns=returns,
            turn_groups=turn_groups,
            transcripts=[self.transcripts[i] for i in idx],
            episode_returns=pick(self.episode_returns),
            uncredited=pick(self.uncredited),
            turns=pick(self.turns),
            truncated=pick(self.truncated),
            infos=[self.infos[i] for i in idx],
            timings=dict(self.timings),
        )

    @staticmethod
    def concat(parts: Sequence[Rollout], pad_ids: Mapping[str, int]) -> Rollout:
        """The rows of ``parts`` in order, as one rollout (timings summed).

        ``pad_ids``: each agent's pad token id, for its completions' padding.
        """
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        agents = [a for a in first.completions]

        def cat(xs):
            return None if any(x is None for x in xs) else np.concatenate(xs)

        return Rollout(
            prompts=[x for p in parts for x in p.prompts],
            group_ids=torch.cat([p.group_ids for p in parts]),
            seats=first.seats,
            completions={
                a: Completions.concat([p.completions[a] for p in parts], pad_id=pad_ids[a])
                for a in agents
            },
            observations={
                a: [o for p in parts for o in p.observations.get(a, [])] for a in first.observations
            },
            task_rewards=np.concatenate([p.task_rewards for p in parts]),
            trained_rewards=np.concatenate([p.trained_rewards for p in parts]),
            returns={a: torch.cat([p.returns[a] for p in parts]) for a in agents},
            turn_groups={a: torch.cat([p.turn_groups[a] for p in parts]) for a in agents},
            transcripts=[t for p in parts for t in p.transcripts],
            episode_returns=cat([p.episode_returns for p in parts]),
            uncredited=cat([p.uncredited for p in parts]),
            turns=cat([p.turns for p in parts]),
            truncated=cat([p.truncated for p in parts]),
            infos=[i for p in parts for i in p.infos],
            timings=summed_timings(parts),
        )


def summed_timings(rolls: Sequence[Rollout]) -> dict[str, float]:
    """Each timing summed over ``rolls``."""
    out: dict[str, float] = {}
    for roll in rolls:
        for k, v in roll.timings.items():
            out[k] = out.get(k, 0.0) + v
    return out


def informative_groups(roll: Rollout, agents: Sequence[str], atol: float = 1e-9) -> list[int]:
    """The prompt groups (ids of ``roll.group_ids``, in order) whose returns vary for some agent.

    DAPO's dynamic sampling (Yu et al., 2025, arXiv 2503.14476, section 3.2) drops a group
    whose K responses all got the same reward: group-relative advantages are zero there, and
    the group adds rows but no gradient. With several agents, a group is kept when any of
    ``agents`` (the learners) sees its returns differ within one of its turn groups (the same
    prompt, the same turn of that agent).
    """
    good: set[int] = set()
    for a in agents:
        if a not in roll.returns:
            continue
        keys, inverse = torch.unique(roll.turn_groups[a], return_inverse=True)
        r = roll.returns[a]
        hi = torch.full((len(keys),), -torch.inf, dtype=r.dtype).scatter_reduce(
            0, inverse, r, "amax"
        )
        lo = torch.full((len(keys),), torch.inf, dtype=r.dtype).scatter_reduce(
            0, inverse, r, "amin"
        )
        good.update(int(k) // MAX_TURNS for k in keys[(hi - lo) > atol])
    order = dict.fromkeys(int(g) for g in roll.group_ids)  # played order, each once
    return [g for g in order if g in good]


def play(
    game: TextGame,
    agents: Mapping[str, Player],
    prompts: Sequence[Prompt],
    seats: Sequence[str],
    *,
    copies: int = 1,
    generator: torch.Generator | None = None,
    gamma: float = 1.0,
    max_new_tokens: int | None = None,
    first_prompt: int = 0,
) -> Rollout:
    """Play ``prompts`` (each in ``copies`` rows) with the agents in ``seats`` order.

    Args:
        game: The game (:func:`seqmarl.envs.build_game`; a PettingZoo face's is
            ``face.as_game()``).
        agents: Agent id -> its :class:`~seqmarl.agents.base.Player`: a model (every
            :class:`~seqmarl.agents.base.Policy`) or a scripted rule
            (:func:`~seqmarl.agents.scripted.make_scripted`), whose turns are played but carry
            no tokens (it is in no ``completions`` and has no ``returns``).
        prompts: The B prompts.
        seats: Agent id in each seat (a permutation of the game's agents).
        copies: K, rows per prompt.
        generator: Sampling generator.
        gamma: Discount over an agent's turns for its reward-to-go.
        max_new_tokens: Every turn's length limit; None: each agent's own generation config
            (which may draw a length per batch).
        first_prompt: Index of ``prompts[0]`` in the whole iteration's batch (a rank's
            offset), so group ids are unique over ranks.
    """
    n_rows = len(prompts) * copies
    game.reset(prompts, seats, copies)
    ids = game.possible_agents
    parts: dict[str, list[Completions]] = {a: [] for a in ids}
    rows_of: dict[str, list[tuple[int, int]]] = {a: [] for a in ids}  # (row, its turn t)
    observations: dict[str, list[str]] = {}
    actors: list[list[str]] = [[] for _ in range(n_rows)]
    turns = np.zeros((n_rows, len(ids)), dtype=np.int64)
    transcripts: list[list[dict[str, str]]] = [[] for _ in range(n_rows)]
    t_gen = 0.0
    while waiting := game.waiting():
        # the rows waiting on the same agent act together: one batched generation each
        # (a task's rows move in lockstep; a game may let them drift apart)
        for agent_id, rows in waiting.items():
            j = ids.index(agent_id)
            obs = game.observe(agent_id, rows)
            t0 = time.perf_counter()
            try:
                texts, comp = agents[agent_id].respond(
                    obs,
                    generator=generator,
                    max_new_tokens=max_new_tokens,
                    stop_strings=game.stop_strings,
                )
            except ContextLengthError as exc:
                turn = int(turns[rows, j].max())
                raise ContextLengthError(
                    f"env {game.env_id!r}, agent {agent_id} (its turn {turn}): {exc}"
                ) from None
            if comp is not None:  # a model's tokens (a rule's moves have none to learn from)
                t_gen += time.perf_counter() - t0
                parts[agent_id].append(comp)
            observations.setdefault(agent_id, obs)
            for r, o, text in zip(rows, obs, texts, strict=True):
                rows_of[agent_id].append((r, int(turns[r, j])))
                turns[r, j] += 1
                actors[r].append(agent_id)
                transcripts[r].append({"agent": agent_id, "observation": o, "response": text})
            game.act(agent_id, rows, texts)
    t0 = time.perf_counter()
    result = game.result()  # a task scores every row in one batched call
    t_score = time.perf_counter() - t0
    mixer = game.mixer
    credited = mixer.credit_turns(
        actors, result.turn_rewards, seats, early=result.early, final=result.final
    )
    trained = mixer.mix(np.reshape(result.outcome, (n_rows, len(ids))), seats)
    acted = [a for a in ids if parts[a]]
    # each agent's rows padded with its own pad id (a team's tokenizers differ)
    completions = {
        a: Completions.concat(parts[a], pad_id=agents[a].tokenizer.pad_token_id) for a in acted
    }
    group_ids = torch.arange(len(prompts)).repeat_interleave(copies) + first_prompt
    returns, turn_groups = {}, {}
    for a in acted:
        togo = [_reward_to_go(credit[a], gamma) for credit in credited.turns]
        # rows in the order sampled: with one round, rows in order
        returns[a] = torch.tensor([togo[r][t] for r, t in rows_of[a]], dtype=torch.float64)
        turn_groups[a] = torch.tensor([int(group_ids[r]) * MAX_TURNS + t for r, t in rows_of[a]])
    return Rollout(
        prompts=[p for p in prompts for _ in range(copies)],
        group_ids=group_ids,
        seats=tuple(seats),
        completions=completions,
        observations=observations,
        task_rewards=np.asarray(result.outcome, dtype=np.float64),
        trained_rewards=trained,
        returns=returns,
        turn_groups=turn_groups,
        transcripts=transcripts,
        episode_returns=np.array([[sum(c[a]) for a in ids] for c in credited.turns]),
        uncredited=credited.uncredited,
        turns=turns,
        truncated=np.asarray(result.truncated, dtype=bool),
        infos=list(result.infos) if result.infos is not None else [{} for _ in range(n_rows)],
        timings={"generate": t_gen, "score": t_score},
    )


def _reward_to_go(rewards: list[float], gamma: float) -> list[float]:
    """``G_t = r_t + gamma * G_{t+1}`` over one agent's turns."""
    out, g = [0.0] * len(rewards), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        g = rewards[t] + gamma * g
        out[t] = g
    return out
