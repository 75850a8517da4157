"""Train a plain PettingZoo AEC env whose observations and actions are strings.

An env written without seqmarl's :class:`~seqmarl.envs.task.TextTask` (its own prompts, turn
order, rules and rewards) is trained through :class:`TextAECWrapper`: the trainer walks it with
PettingZoo's own calls (``reset``, ``agent_selection``, ``last``, ``observe``, ``step``,
``rewards``). Register one with :func:`register_pettingzoo`, or build one with :func:`wrap`::

    register_pettingzoo("word-duel-v0", lambda: WordDuelEnv())   # any AECEnv factory
    seqmarl train env=word-duel-v0 ...

What the wrapper adds:

* **Agents.** The env's agents become ``llm_0 ... llm_{N-1}`` by position; the seat order of
  a reset says which model plays which of the env's roles (``seat_order[k]`` plays the env's
  ``possible_agents[k]``), so the setting's role exchange works on any env.
* **Episodes.** The wrapped env samples its own episode from its reset seed; the trainer's
  "prompts" are seeds (K copies of a prompt are K resets with one seed, what RLOO/GRPO need).
* **Observations** may be a string or a mapping with a ``"text"`` string.
* **Rewards.** Each step's rewards are mixed by the coefficient matrix C on the way out
  (``reward_i = sum_j C[i][j] r_j``); ``infos[agent]["task_reward"]`` holds an agent's summed
  raw rewards of the episode, ``trained_rewards`` the summed mixed ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from seqmarl.envs.task import Prompt, TextTask, as_generator
from seqmarl.errors import ConfigError
from seqmarl.settings import agent_ids, coefficient_matrix

__all__ = ["SeedTask", "TextAECWrapper", "wrap"]


class SeedTask(TextTask):
    """A wrapped env's prompts: reset seeds (the env draws its own episode from one)."""

    name = "pettingzoo env"

    def sample_prompts(self, n: int, rng: Any = None) -> list[Prompt]:
        """``n`` seeds as prompts (``meta["seed"]``)."""
        seeds = as_generator(rng).integers(0, 2**31 - 1, size=n)
        return [Prompt(f"seed {int(s)}", meta={"seed": int(s)}) for s in seeds]

    def score(self, prompt: Prompt, response: str) -> float:
        """Unused: the wrapped env hands out its own rewards."""
        return 0.0


class TextAECWrapper:
    """A plain PettingZoo AEC text env as seqmarl's loop plays it.

    Args:
        env_fn: Builds the env (called once per copy).
        reward_matrix: Coefficient matrix C over the env's agents (default: independent).
        env_id: Registered id, for messages.
    """

    def __init__(
        self,
        env_fn: Callable[[], Any],
        *,
        reward_matrix: str | Sequence[Sequence[float]] = "independent",
        env_id: str | None = None,
    ):
        self._fn = env_fn
        self.env = env_fn()
        self._roles = list(self.env.possible_agents)
        n = len(self._roles)
        self.possible_agents = list(agent_ids(n))
        self.coef = coefficient_matrix(reward_matrix, n)
        self._matrix = reward_matrix if isinstance(reward_matrix, str) else self.coef.tolist()
        self.task = SeedTask()
        self.env_id = env_id or getattr(self.env, "metadata", {}).get("name", "pettingzoo")
        self.rounds = 1  # turns come from the env's own rules
        self.defer_scoring = False  # the env scores itself
        self.awaiting_score = False
        self.rewards: dict[str, float] = {}
        self.infos: dict[str, dict[str, Any]] = {}
        self.trained_rewards: dict[str, float] = {}

    def clone(self) -> TextAECWrapper:
        """Another copy over a fresh env."""
        return TextAECWrapper(self._fn, reward_matrix=self._matrix, env_id=self.env_id)

    def sample_prompts(self, n: int, rng: Any = None) -> list[Prompt]:
        """Reset seeds as prompts."""
        return self.task.sample_prompts(n, rng)

    # ------------------------------------------------------------------ the AEC calls
    def reset(self, seed: int | None = None, options: Mapping[str, Any] | None = None) -> None:
        """Reset the env from the prompt's seed; ``seat_order[k]`` plays the env's role k."""
        options = dict(options or {})
        prompt = options.get("prompt")
        if isinstance(prompt, Prompt) and "seed" in prompt.meta:
            seed = prompt.meta["seed"]
        order = list(options.get("seat_order") or self.possible_agents)
        if sorted(order) != sorted(self.possible_agents):
            raise ConfigError(
                f"env {self.env_id!r}: seat_order {order} must list {self.possible_agents}"
            )
        self._to_env = dict(zip(order, self._roles, strict=True))
        self._to_llm = {role: a for a, role in self._to_env.items()}
        self.env.reset(seed=seed)
        self._raw = dict.fromkeys(self.possible_agents, 0.0)
        self.trained_rewards = dict.fromkeys(self.possible_agents, 0.0)
        self.rewards = dict.fromkeys(self.possible_agents, 0.0)
        self._sync_infos()

    @property
    def agents(self) -> list[str]:
        """The agents still in the episode (seqmarl's names)."""
        return [self._to_llm[a] for a in self.env.agents]

    @property
    def agent_selection(self) -> str:
        """Whose turn it is."""
        return self._to_llm[self.env.agent_selection]

    @property
    def terminations(self) -> dict[str, bool]:
        """PettingZoo's terminations, in seqmarl's names."""
        return {self._to_llm[a]: v for a, v in self.env.terminations.items()}

    @property
    def truncations(self) -> dict[str, bool]:
        """PettingZoo's truncations, in seqmarl's names."""
        return {self._to_llm[a]: v for a, v in self.env.truncations.items()}

    def observe(self, agent: str) -> dict[str, Any]:
        """``{"text": ...}``: the env's observation as text."""
        return {"text": _text(self.env.observe(self._to_env[agent]), self.env_id)}

    def last(self) -> tuple[Any, float, bool, bool, dict]:
        """PettingZoo's ``last()`` for the current agent, in seqmarl's names."""
        obs, _, term, trunc, info = self.env.last()
        a = self.agent_selection
        return {"text": _text(obs, self.env_id)}, self.rewards.get(a, 0.0), term, trunc, info

    def step(self, action: str | None) -> None:
        """Step the env; this step's rewards, mixed by C, land in :attr:`rewards`."""
        self.env.step(action)
        # the step's raw rewards by seqmarl agent (whichever role it plays), then C over agents
        raw = np.array(
            [float(self.env.rewards.get(self._to_env[a], 0.0)) for a in self.possible_agents]
        )
        mixed = self.coef @ raw  # (N, N) @ (N,)
        for i, a in enumerate(self.possible_agents):
            self._raw[a] += float(raw[i])
            self.rewards[a] = float(mixed[i])
            self.trained_rewards[a] += float(mixed[i])
        self._sync_infos()

    def _sync_infos(self) -> None:
        self.infos = {
            a: {"task_reward": self._raw[a], "seat": self._roles.index(self._to_env[a])}
            for a in self.possible_agents
        }


def _text(obs: Any, env_id: str) -> str:
    if isinstance(obs, str):
        return obs
    if isinstance(obs, Mapping) and isinstance(obs.get("text"), str):
        return obs["text"]
    raise ConfigError(
        f"env {env_id!r}: an observation must be a string or a mapping with a 'text' string "
        f"to be read by a language model, got {type(obs).__name__}"
    )


def wrap(env_fn: Callable[[], Any], **kwargs: Any) -> TextAECWrapper:
    """A :class:`TextAECWrapper` over ``env_fn()`` (keyword arguments: the wrapper's)."""
    return TextAECWrapper(env_fn, **kwargs)
