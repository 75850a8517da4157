"""Train a plain PettingZoo AEC env whose observations and actions are strings.

An env written without seqmarl's :class:`~seqmarl.envs.task.TextTask` (its own prompts, turn
order, rules and rewards) is trained through :class:`~seqmarl.envs.game.AECGame`, which walks
one env per row with PettingZoo's public calls only (``reset``, ``agent_iter``, ``last``,
``observe``, ``step``, ``rewards``). :class:`TextAECWrapper` is its PettingZoo face: the env
in seqmarl's agent names, with the matrix applied to each step's rewards (what ``check-env``
and ``envs.make`` give). Register one with :func:`register_pettingzoo`, or build one with
:func:`wrap`::

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
  (``reward_i = sum_j C[i][j] r_j``, the one mixer :class:`~seqmarl.method.mixing.RewardMixer`);
  ``infos[agent]["task_reward"]`` holds an agent's summed raw rewards of the episode,
  ``trained_rewards`` the summed mixed ones.
* **Bounds.** The game applies the observation limit and the turn bound
  (:mod:`seqmarl.envs.game`); a fault of the env is one :class:`~seqmarl.errors.EnvError` line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv

from seqmarl.envs.game import DEFAULT_MAX_TURNS, AECGame, observation_text, seed_prompts
from seqmarl.envs.spaces import DEFAULT_MAX_TEXT_LENGTH, AnyText
from seqmarl.envs.task import Prompt
from seqmarl.errors import ConfigError
from seqmarl.method.mixing import RewardMixer
from seqmarl.method.settings import agent_ids, coefficient_matrix

__all__ = ["TextAECWrapper", "wrap"]


class TextAECWrapper(AECEnv):
    """A plain PettingZoo AEC text env as seqmarl's loop plays it.

    Args:
        env_fn: Builds the env (called once per copy).
        reward_matrix: Coefficient matrix C over the env's agents (default: independent),
            or a ready :class:`~seqmarl.method.mixing.RewardMixer`.
        env_id: Registered id, for messages.
        max_turns: The game's turn bound (:mod:`seqmarl.envs.game`).
        max_observation_chars: The game's observation limit.
        observation_template: The game's frame around each observation (``{observation}``).
        action_prefix: What the game puts before each response (the answer's start).
    """

    metadata = {"name": "pettingzoo_text_v0", "is_parallelizable": False}  # noqa: RUF012

    def __init__(
        self,
        env_fn: Callable[[], Any],
        *,
        reward_matrix: str | Sequence[Sequence[float]] | RewardMixer = "independent",
        env_id: str | None = None,
        max_turns: int = DEFAULT_MAX_TURNS,
        max_observation_chars: int | None = None,
        observation_template: str | None = None,
        action_prefix: str = "",
    ):
        super().__init__()
        self.observation_template = observation_template
        self.action_prefix = action_prefix
        self._fn = env_fn
        self.env = env_fn()
        self._roles = list(self.env.possible_agents)
        n = len(self._roles)
        self.possible_agents = list(agent_ids(n))
        if isinstance(reward_matrix, RewardMixer):
            self.mixer = reward_matrix
        else:
            coef = coefficient_matrix(reward_matrix, n)
            self.mixer = RewardMixer(coef, self.possible_agents)
        self.coef = self.mixer.coef
        self.env_id = env_id or getattr(self.env, "metadata", {}).get("name", "pettingzoo")
        self.metadata = {**getattr(self.env, "metadata", {}), "name": self.env_id}
        self.max_turns = max_turns
        self.max_observation_chars = max_observation_chars
        self._game: AECGame | None = None
        self.rewards: dict[str, float] = {}
        self.trained_rewards: dict[str, float] = {}
        text = AnyText(DEFAULT_MAX_TEXT_LENGTH)
        self.observation_spaces = {a: spaces.Dict({"text": text}) for a in self.possible_agents}
        self.action_spaces = {a: text for a in self.possible_agents}

    def observation_space(self, agent: str) -> Any:
        """Text: what a model reads."""
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> Any:
        """Text: what a model writes."""
        return self.action_spaces[agent]

    def clone(self) -> TextAECWrapper:
        """Another copy over a fresh env."""
        return TextAECWrapper(
            self._fn,
            reward_matrix=self.mixer,
            env_id=self.env_id,
            max_turns=self.max_turns,
            max_observation_chars=self.max_observation_chars,
            observation_template=self.observation_template,
            action_prefix=self.action_prefix,
        )

    def as_game(self) -> AECGame:
        """The game the rollout plays: rows of fresh envs through PettingZoo's public API."""
        if self._game is None:
            self._game = AECGame(
                self._fn,
                mixer=self.mixer,
                env_id=self.env_id,
                max_turns=self.max_turns,
                max_observation_chars=self.max_observation_chars,
                observation_template=self.observation_template,
                action_prefix=self.action_prefix,
            )
        return self._game

    def sample_prompts(self, n: int, rng: Any = None) -> list[Prompt]:
        """Reset seeds as prompts."""
        return seed_prompts(n, rng)

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
        self._order = order
        self._to_env = dict(zip(order, self._roles, strict=True))
        self._to_llm = {role: a for a, role in self._to_env.items()}
        self.env.reset(seed=seed)
        self._raw = dict.fromkeys(self.possible_agents, 0.0)
        self.trained_rewards = dict.fromkeys(self.possible_agents, 0.0)
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)

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

    @property
    def infos(self) -> dict[str, dict[str, Any]]:
        """The env's infos, with each agent's summed raw ``task_reward`` and its ``seat``."""
        return {
            self._to_llm[role]: {
                **dict(info),
                "task_reward": self._raw[self._to_llm[role]],
                "seat": self._roles.index(role),
            }
            for role, info in self.env.infos.items()
        }

    def observe(self, agent: str) -> dict[str, Any]:
        """``{"text": ...}``: the env's observation as text."""
        obs = self.env.observe(self._to_env[agent])
        return {"text": observation_text(obs, f"env {self.env_id!r} (agent {agent})")}

    def step(self, action: str | None) -> None:
        """Step the env; this step's rewards, mixed by C, land in :attr:`rewards`."""
        acting = self.agent_selection
        self.env.step(action)
        # the step's raw rewards by seqmarl agent (whichever role it plays), then C over agents
        raw = np.array(
            [float(self.env.rewards.get(self._to_env[a], 0.0)) for a in self.possible_agents]
        )
        mixed = self.mixer.mix(raw, self._order)
        live = set(self.agents)
        self.rewards = {}
        cumulative = {a: v for a, v in self._cumulative_rewards.items() if a in live}
        if acting in cumulative:
            cumulative[acting] = 0.0
        for i, a in enumerate(self.possible_agents):
            self._raw[a] += float(raw[i])
            self.trained_rewards[a] += float(mixed[i])
            if a in live:
                self.rewards[a] = float(mixed[i])
                cumulative[a] = cumulative.get(a, 0.0) + float(mixed[i])
        self._cumulative_rewards = cumulative


def wrap(env_fn: Callable[[], Any], **kwargs: Any) -> TextAECWrapper:
    """A :class:`TextAECWrapper` over ``env_fn()`` (keyword arguments: the wrapper's)."""
    return TextAECWrapper(env_fn, **kwargs)
