"""Games: the one seam between the rollout and what it plays.

The rollout (:func:`seqmarl.train.rollout.play`) plays ``R = B x K`` rows at once (B prompts, K
copies each) and talks to them only through the :class:`TextGame` protocol:

* ``reset(prompts, seats, copies)``: start the rows; ``seats[k]`` is the agent in seat ``k``;
* ``waiting()``: which agent each live row waits on (``{agent: rows}``; empty when all are over);
* ``observe(agent, rows)``: the text ``agent`` reads in each of those rows;
* ``act(agent, rows, texts)``: its answers, one per row;
* ``result()``: the raw task rewards of every row, per agent and turn (:class:`GameResult`).

Rewards leave a game raw; the one mixer (:class:`~seqmarl.method.mixing.RewardMixer`, the game's
``mixer``) turns them into trained rewards in the rollout.

Two implementations:

* :class:`TaskGame` plays a seqmarl :class:`~seqmarl.envs.task.TextTask` natively: the seats
  act in order for ``rounds`` rounds and every finished episode of the batch is scored in one
  call to the task (``score_episodes``); :class:`~seqmarl.envs.sequential.SequentialTextEnv`,
  the public PettingZoo face of a task, plays one row of it.
* :class:`AECGame` plays any PettingZoo ``AECEnv`` with text observations and actions, one env
  per row, through PettingZoo's public API only: ``reset``, ``agent_iter``, ``last``,
  ``observe``, ``step``, ``rewards`` and ``agents`` (what ``agent_iter`` itself reads).

What both guarantee:

* **Observation limit** (``max_observation_chars``, the config's ``task.max_observation_chars``):
  a task drops the oldest visible turns first (the prompt stays); then, on every path, a text
  still over the limit keeps its first quarter and its end, joined by :data:`CUT`.
* **Turn bound** (``max_turns``, ``task.max_turns``): a PettingZoo env is stepped at most that
  many times per episode (``agent_iter(max_iter)``, dead steps included); a row cut there is
  reported in ``GameResult.truncated``, never a hang. A task's episodes end by themselves.
* **Faults**: an env that raises, selects an agent that is done or gone, keeps selecting a done
  agent, or hands out a reward that is not a finite number raises :class:`~seqmarl.errors.EnvError`
  naming the env, the agent, the row and the turn.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from seqmarl.envs.episode import Episode, Turn
from seqmarl.envs.guard import (
    check_prompts,
    observation,
    sample_prompts,
    score_episode_rewards,
    turn_reward,
)
from seqmarl.envs.task import Prompt, TextTask, as_generator
from seqmarl.errors import EnvError
from seqmarl.method.mixing import RewardMixer
from seqmarl.method.settings import agent_ids, coefficient_matrix

__all__ = [
    "CUT",
    "DEFAULT_MAX_TURNS",
    "AECGame",
    "GameResult",
    "TaskGame",
    "TextGame",
    "fit_observation",
    "observation_text",
    "seed_prompts",
]

#: What replaces the middle of an observation cut to ``max_observation_chars``.
CUT = "\n[...]\n"
#: Env steps per episode of a PettingZoo env before the row is truncated (``task.max_turns``).
DEFAULT_MAX_TURNS = 256


def fit_observation(text: str, limit: int | None) -> str:
    """``text``, or its first quarter + :data:`CUT` + its end when longer than ``limit``."""
    if limit is None or len(text) <= limit:
        return text
    head = limit // 4
    tail = max(limit - head - len(CUT), 0)
    return text[:head] + CUT + (text[-tail:] if tail else "")


@dataclass
class GameResult:
    """What the rows of one play handed out, before the reward matrix (agent-id order).

    Attributes:
        outcome: ``(R, N)`` each agent's task reward: a task's final score (its turn rewards
            are shaping and not part of it); in a PettingZoo env, everything the env handed
            that agent during the episode.
        turn_rewards: Per row, one raw ``(N,)`` vector per turn in play order: what was handed
            out after that turn and before the next (a task's turn rewards, an env's step
            rewards, dead steps included).
        final: ``(R, N)`` raw rewards handed out after the last turn (a task's final score).
        early: ``(R, N)`` raw rewards handed out before a row's first turn.
        truncated: ``(R,)`` whether the row was cut at the turn bound.
        infos: Per row, each agent's last ``info`` from a PettingZoo env (what ``last()``
            returned on its final turn or dead step); ``None`` for a task.
    """

    outcome: np.ndarray
    turn_rewards: list[list[np.ndarray]]
    final: np.ndarray
    early: np.ndarray
    truncated: np.ndarray
    infos: list[dict[str, dict[str, Any]]] | None = None


@runtime_checkable
class TextGame(Protocol):
    """What the rollout plays: R rows of a text game, agents acting in turn."""

    env_id: str
    possible_agents: tuple[str, ...]
    stop_strings: tuple[str, ...]
    mixer: RewardMixer

    def sample_prompts(self, n: int, rng: Any = None) -> list[Prompt]:
        """``n`` prompts (the same for the same seed or generator state)."""

    def reset(self, prompts: Sequence[Prompt], seats: Sequence[str], copies: int = 1) -> None:
        """Start ``len(prompts) * copies`` rows (copies of a prompt adjacent)."""

    def waiting(self) -> dict[str, list[int]]:
        """The live rows, grouped by the agent each waits on; empty when every row is over."""

    def observe(self, agent: str, rows: Sequence[int]) -> list[str]:
        """What ``agent`` reads in each of ``rows``."""

    def act(self, agent: str, rows: Sequence[int], texts: Sequence[str]) -> None:
        """``agent`` answers ``texts[i]`` in ``rows[i]`` (rows that wait on it)."""

    def result(self) -> GameResult:
        """The rows' raw rewards, once every row is over."""


def observation_text(obs: Any, where: str) -> str:
    """A PettingZoo observation as text: a string, or a mapping's ``"text"`` string.

    Raises:
        EnvError: Anything else (``where`` names the env, and the agent and turn if known).
    """
    if isinstance(obs, str):
        return obs
    if isinstance(obs, Mapping) and isinstance(obs.get("text"), str):
        return obs["text"]
    raise EnvError(
        f"{where}: an observation must be a string or a mapping with a 'text' string to be "
        f"read by a language model, got {type(obs).__name__}"
    )


def seed_prompts(n: int, rng: Any = None) -> list[Prompt]:
    """``n`` reset seeds as prompts (``meta["seed"]``): a PettingZoo env draws its own episode."""
    seeds = as_generator(rng).integers(0, 2**31 - 1, size=n)
    return [Prompt(f"seed {int(s)}", meta={"seed": int(s)}) for s in seeds]


def _check_seats(seats: Sequence[str], agents: Sequence[str], env_id: str) -> tuple[str, ...]:
    if sorted(map(str, seats)) != sorted(agents):
        raise EnvError(
            f"env {env_id!r}: the seat order {list(seats)} must list every agent once "
            f"({', '.join(agents)})"
        )
    return tuple(seats)


class TaskGame:
    """A seqmarl task played in R rows: seats in order, ``rounds`` times, scored in one batch.

    Args:
        task: The text task.
        mixer: The game's reward mixer (its agents are the game's).
        knowledge_transfer: Whether an agent sees the other agents' turns.
        rounds: Times the seats act in order in one episode.
        max_observation_chars: The observation limit (see the module docstring).
        env_id: Named in messages.
    """

    def __init__(
        self,
        task: TextTask,
        *,
        mixer: RewardMixer,
        knowledge_transfer: bool = True,
        rounds: int = 1,
        max_observation_chars: int | None = None,
        env_id: str = "task",
    ):
        self.task = task
        self.mixer = mixer
        self.possible_agents = mixer.agents
        self.knowledge_transfer = bool(knowledge_transfer)
        self.rounds = rounds
        self.max_observation_chars = max_observation_chars
        self.env_id = env_id
        self._scores_turns = type(task).turn_reward is not TextTask.turn_reward
        self.episodes: list[Episode] = []
        self.turn_rewards: list[list[np.ndarray]] = []

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """The task's stop strings (sampling ends a response at one)."""
        return tuple(self.task.stop_strings)

    def sample_prompts(self, n: int, rng: Any = None) -> list[Prompt]:
        """``n`` prompts from the task, checked (:func:`seqmarl.envs.guard.sample_prompts`)."""
        return sample_prompts(self.task, n, rng, env_id=self.env_id)

    def reset(self, prompts: Sequence[Prompt], seats: Sequence[str], copies: int = 1) -> None:
        """One episode per row: ``prompts[r // copies]`` played in ``seats`` order."""
        check_prompts(prompts, task=self.task, env_id=self.env_id, source="the batch's prompts")
        self.seats = _check_seats(seats, self.possible_agents, self.env_id)
        self.episodes = [
            Episode(p, self.seats, self.possible_agents, rounds=self.rounds)
            for p in prompts
            for _ in range(copies)
        ]
        self.turn_rewards = [[] for _ in self.episodes]
        self._observed: list[dict[str, str]] = [{} for _ in self.episodes]

    def waiting(self) -> dict[str, list[int]]:
        """Rows by the agent in the seat whose turn it is."""
        out: dict[str, list[int]] = {}
        n = len(self.seats)
        for r, ep in enumerate(self.episodes):
            if not ep.done:
                out.setdefault(self.seats[len(ep.turns) % n], []).append(r)
        return out

    def visible_turns(self, row: int, agent: str) -> list[Turn]:
        """The turns ``agent`` may see in ``row`` now: all (knowledge transfer) or its own."""
        turns = self.episodes[row].turns
        if self.knowledge_transfer:
            return list(turns)
        return [t for t in turns if t.agent == agent]

    def observe(self, agent: str, rows: Sequence[int]) -> list[str]:
        """The task's observation of ``agent`` in each row, within the observation limit."""
        return [self._observe(r, agent) for r in rows]

    def _observe(self, row: int, agent: str) -> str:
        ep = self.episodes[row]
        visible = self.visible_turns(row, agent)
        limit = self.max_observation_chars
        rnd = min(len(ep.turns) // len(self.seats), self.rounds - 1)
        while True:
            text = observation(
                self.task, ep.prompt, visible, env_id=self.env_id, agent=agent, round=rnd
            )
            if limit is None or len(text) <= limit or not visible:
                break
            visible = visible[1:]  # the oldest visible turn goes first
        text = fit_observation(text, limit)
        self._observed[row][agent] = text
        return text

    def act(self, agent: str, rows: Sequence[int], texts: Sequence[str]) -> None:
        """Record each row's turn; a task's turn reward is handed out with it."""
        n = len(self.seats)
        j = self.possible_agents.index(agent)
        for r, text in zip(rows, texts, strict=True):
            ep = self.episodes[r]
            seat = len(ep.turns) % n
            if ep.done or self.seats[seat] != agent:
                raise EnvError(f"env {self.env_id!r}: row {r} does not wait on {agent}")
            if not isinstance(text, str):
                raise TypeError(f"{agent}: action must be a str (the response), got {type(text)}")
            obs = self._observed[r].pop(agent, "")
            turn = Turn(len(ep.turns) // n, seat, agent, obs, text)
            ep.turns.append(turn)
            vec = np.zeros(len(self.possible_agents))
            if self._scores_turns:
                vec[j] = turn_reward(self.task, ep, turn, env_id=self.env_id)
            self.turn_rewards[r].append(vec)

    def result(self) -> GameResult:
        """Every episode scored in one call to the task; the score is the outcome."""
        if any(not ep.done for ep in self.episodes):
            raise EnvError(f"env {self.env_id!r}: result() before every episode is over")
        final = score_episode_rewards(self.task, self.episodes, env_id=self.env_id)
        final = np.asarray(final, dtype=np.float64).reshape(len(self.episodes), -1)
        zeros = np.zeros_like(final)
        return GameResult(
            outcome=final,
            turn_rewards=self.turn_rewards,
            final=final,
            early=zeros,
            truncated=np.zeros(len(self.episodes), dtype=bool),
        )


class AECGame:
    """Any PettingZoo ``AECEnv`` with text observations and actions, one env per row.

    The env's agents become ``llm_0 ... llm_{N-1}`` by position, and the seat order of a reset
    says which model plays which of the env's roles (``seats[k]`` plays the env's
    ``possible_agents[k]``), so a setting's role exchange works on any env. A row's episode is
    drawn by the env from its reset seed (``prompt.meta["seed"]``): K copies of a prompt are K
    resets with one seed.

    Args:
        env_fn: Builds one env (called once per row, and kept for later iterations).
        mixer: The game's reward mixer over ``llm_0 ... llm_{N-1}``.
        env_id: Named in messages.
        max_turns: The turn bound (see the module docstring).
        max_observation_chars: The observation limit.
        observation_template: What the model reads, with the env's text (within the limit)
            at ``{observation}``: an instruction or a chat format around every observation
            (``task.observation_template``); None: the text alone.
        action_prefix: Put before every response when the env reads it: the start of the
            answer that the template already wrote for the model (``task.action_prefix``).
    """

    def __init__(
        self,
        env_fn: Callable[[], Any],
        *,
        mixer: RewardMixer | None = None,
        env_id: str | None = None,
        max_turns: int = DEFAULT_MAX_TURNS,
        max_observation_chars: int | None = None,
        observation_template: str | None = None,
        action_prefix: str = "",
    ):
        self._fn = env_fn
        self.observation_template = observation_template
        self.action_prefix = action_prefix
        first = env_fn()
        self._envs = [first]
        self.roles = tuple(first.possible_agents)
        self.possible_agents = agent_ids(len(self.roles))
        if mixer is None:
            coef = coefficient_matrix("independent", len(self.roles))
            mixer = RewardMixer(coef, self.possible_agents)
        self.mixer = mixer
        self.env_id = env_id or getattr(first, "metadata", {}).get("name", "pettingzoo")
        self.max_turns = max_turns
        self.max_observation_chars = max_observation_chars
        self.stop_strings: tuple[str, ...] = ()

    def sample_prompts(self, n: int, rng: Any = None) -> list[Prompt]:
        """Reset seeds as prompts (:func:`seed_prompts`)."""
        return seed_prompts(n, rng)

    def reset(self, prompts: Sequence[Prompt], seats: Sequence[str], copies: int = 1) -> None:
        """Reset one env per row from its prompt's seed; ``seats[k]`` plays role ``k``."""
        seats = _check_seats(seats, self.possible_agents, self.env_id)
        self._to_env = dict(zip(seats, self.roles, strict=True))
        self._to_llm = {role: a for a, role in self._to_env.items()}
        rows = [p for p in prompts for _ in range(copies)]
        while len(self._envs) < len(rows):
            self._envs.append(self._fn())
        n = len(self.possible_agents)
        self._iters, self._pending = [], {}
        self.turn_rewards: list[list[np.ndarray]] = [[] for _ in rows]
        self._early = np.zeros((len(rows), n))
        self._truncated = np.zeros(len(rows), dtype=bool)
        self._infos: list[dict[str, dict[str, Any]]] = [{} for _ in rows]
        for r, prompt in enumerate(rows):
            env = self._envs[r]
            seed = prompt.meta.get("seed") if isinstance(prompt, Prompt) else None
            self._call(r, "reset", lambda env=env, seed=seed: env.reset(seed=seed))
            self._take_rewards(r, "reset")
            self._iters.append(iter(env.agent_iter(max_iter=self.max_turns)))
        for r in range(len(rows)):
            self._advance(r)

    def waiting(self) -> dict[str, list[int]]:
        """Rows by the agent the env selected (dead steps are taken inside the game)."""
        out: dict[str, list[int]] = {}
        for r, (agent, _) in sorted(self._pending.items()):
            out.setdefault(agent, []).append(r)
        return out

    def observe(self, agent: str, rows: Sequence[int]) -> list[str]:
        """The env's observation of ``agent`` (from ``last()`` when it is its turn) as text."""
        out = []
        for r in rows:
            pending = self._pending.get(r)
            if pending is not None and pending[0] == agent:
                obs = pending[1]
            else:
                role = self._to_env[agent]
                obs = self._call(r, "observe", lambda r=r, role=role: self._envs[r].observe(role))
            out.append(self.frame(self._text(obs, r, agent)))
        return out

    def frame(self, text: str) -> str:
        """The env's observation ``text`` as the model reads it: cut, then framed (the template)."""
        text = fit_observation(text, self.max_observation_chars)
        if self.observation_template is not None:
            text = self.observation_template.replace("{observation}", text)
        return text

    def act(self, agent: str, rows: Sequence[int], texts: Sequence[str]) -> None:
        """Step each row's env with ``agent``'s answer; its rewards are kept per turn."""
        n = len(self.possible_agents)
        for r, text in zip(rows, texts, strict=True):
            pending = self._pending.pop(r, None)
            if pending is None or pending[0] != agent:
                raise EnvError(f"env {self.env_id!r}: row {r} does not wait on {agent}")
            self.turn_rewards[r].append(np.zeros(n))
            env = self._envs[r]
            move = self.action_prefix + text
            self._call(r, "step", lambda env=env, move=move: env.step(move), agent)
            self._take_rewards(r, "step", agent)
            self._advance(r)

    def result(self) -> GameResult:
        """Raw rewards per turn; an agent's outcome is everything the env handed it."""
        if self._pending:
            raise EnvError(f"env {self.env_id!r}: result() before every row is over")
        outcome = self._early.copy()
        for r, vecs in enumerate(self.turn_rewards):
            for v in vecs:
                outcome[r] += v
        return GameResult(
            outcome=outcome,
            turn_rewards=self.turn_rewards,
            final=np.zeros_like(outcome),
            early=self._early,
            truncated=self._truncated.copy(),
            infos=self._infos,
        )

    # ------------------------------------------------------------------ internals
    def _where(self, r: int, agent: str | None = None) -> str:
        who = ""
        if agent is not None:
            who = f", agent {agent} (the env's {self._to_env[agent]!r})"
        return f"env {self.env_id!r} (row {r}, turn {len(self.turn_rewards[r])}{who})"

    def _call(self, r: int, what: str, fn: Callable[[], Any], agent: str | None = None) -> Any:
        try:
            return fn()
        except EnvError:
            raise
        except Exception as exc:
            msg = " ".join(str(exc).split())[:200]
            raise EnvError(
                f"{self._where(r, agent)}: {what}() raised {type(exc).__name__}"
                + (f": {msg}" if msg else "")
            ) from exc

    def _take_rewards(self, r: int, what: str, agent: str | None = None) -> None:
        """Add the env's ``rewards`` of the call just made to the row's latest turn."""
        rewards = self._envs[r].rewards
        target = self.turn_rewards[r][-1] if self.turn_rewards[r] else self._early[r]
        for i, a in enumerate(self.possible_agents):
            value = rewards.get(self._to_env[a], 0.0)
            ok = isinstance(value, numbers.Real) and math.isfinite(float(value))
            if not ok:
                raise EnvError(
                    f"{self._where(r, agent)}: after {what}(), rewards[{self._to_env[a]!r}] "
                    f"(agent {a}) is {value!r}; a reward must be a finite number"
                )
            target[i] += float(value)

    def _advance(self, r: int) -> None:
        """Take the row's dead steps until an agent must act, or the row is over."""
        env = self._envs[r]
        while True:
            role = next(self._iters[r], None)
            if role is None:  # over, or cut at the turn bound
                self._truncated[r] = bool(env.agents)
                return
            if role not in self._to_llm or role not in env.agents:
                raise EnvError(
                    f"{self._where(r, self._to_llm.get(role))}: agent_selection is {role!r}, "
                    f"which is not among the env's live agents {list(env.agents)}"
                )
            agent = self._to_llm[role]
            obs, _, term, trunc, info = self._call(r, "last", env.last, agent)
            if isinstance(info, Mapping):
                self._infos[r][agent] = dict(info)
            if not (term or trunc):
                self._pending[r] = (agent, obs)
                return
            self._call(r, "step", lambda: env.step(None), agent)  # the dead step
            self._take_rewards(r, "a dead step", agent)
            if env.agents and env.agent_selection == role and role in env.agents:
                raise EnvError(
                    f"{self._where(r, agent)}: the agent is done but still selected after its "
                    "dead step (step(None) must remove it and select the next agent)"
                )

    def _text(self, obs: Any, r: int, agent: str) -> str:
        return observation_text(obs, self._where(r, agent))
