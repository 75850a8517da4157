"""``SequentialTextEnv``: one prompt played by N language-model agents in seat order.

One episode is one prompt. The agent in seat ``k`` observes the prompt plus the responses of
seats ``< k`` (only the prompt when knowledge transfer is off), answers with a string, and the
turn passes on, for ``rounds`` rounds. When the last seat has answered, the task scores the
episode (by default each agent's last response on the prompt, its *task reward* ``r_j``; a task
may score the answers jointly), every agent ``i`` receives ``sum_j C[i][j] * r_j`` (the one
mixer, :class:`~seqmarl.method.mixing.RewardMixer`) and the episode terminates.

The env is the public PettingZoo face of a task: it plays one row of the task's
:class:`~seqmarl.envs.game.TaskGame`, the same rules the rollout plays in batches.

The seat order is chosen at reset (``options={"seat_order": [...]}``), so role exchange between
iterations never rebuilds the env. Reset options:

* ``seat_order``: agent ids (``"llm_1"``) or indices, one per seat, a permutation of all agents;
* ``prompt``: a :class:`~seqmarl.envs.task.Prompt` or string to play instead of sampling one.

Other option keys are ignored (PettingZoo's ``api_test`` passes a dummy one).

Every call into the task goes through :mod:`seqmarl.envs.guard`: an empty prompt or
observation, an exception, or a reward that is not one finite number per agent raises a
:class:`~seqmarl.errors.TaskError` naming the env id, task class, agent and value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv
from pettingzoo.utils import AgentSelector

from seqmarl.envs.episode import Episode, Turn
from seqmarl.envs.game import TaskGame
from seqmarl.envs.guard import check_prompts, sample_prompts
from seqmarl.envs.spaces import DEFAULT_MAX_TEXT_LENGTH, AnyText
from seqmarl.envs.task import Prompt, TextTask
from seqmarl.method.mixing import CREDIT_RULES, RewardMixer
from seqmarl.method.settings import agent_ids, coefficient_matrix

__all__ = ["SequentialTextEnv"]


class SequentialTextEnv(AECEnv):
    """A PettingZoo AEC env in which N agents answer one text prompt in turn.

    Args:
        task: The text task (prompts, observation template, reward).
        num_agents: N >= 1; agents are ``llm_0 ... llm_{N-1}``.
        reward_matrix: Preset (``cooperative``, ``independent``, ``competitive``), N x N, or
            a :class:`~seqmarl.method.mixing.RewardMixer` (a setting's, shared).
        knowledge_transfer: Whether later seats see earlier responses.
        credit: ``full`` (mix with C) or ``causal`` (C masked by this episode's seat order:
            an agent drops the rewards of the seats before its own; see
            :func:`~seqmarl.method.settings.credit_matrix`).
        max_text_length: Longest observation/response (characters) the spaces contain.
        render_mode: ``None``, ``"human"`` (print the transcript) or ``"ansi"`` (return it).
        env_id: Registered id, shown in ``metadata["name"]`` and in transcripts.
    """

    metadata = {  # noqa: RUF012 (PettingZoo reads a plain dict)
        "name": "sequential_text_v0",
        "render_modes": ["human", "ansi"],
        "is_parallelizable": False,
    }

    def __init__(
        self,
        task: TextTask,
        *,
        num_agents: int = 2,
        reward_matrix: str | Sequence[Sequence[float]] = "cooperative",
        knowledge_transfer: bool = True,
        credit: str = "full",
        max_text_length: int = DEFAULT_MAX_TEXT_LENGTH,
        render_mode: str | None = None,
        env_id: str | None = None,
        rounds: int = 1,
        max_observation_chars: int | None = None,
    ):
        super().__init__()
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"rounds must be an integer >= 1, got {rounds!r}")
        if isinstance(num_agents, bool) or not isinstance(num_agents, int) or num_agents < 1:
            raise ValueError(f"num_agents must be an integer >= 1, got {num_agents!r}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, "
                f"got {render_mode!r}"
            )
        self.task = task
        self.rounds = rounds
        self.max_observation_chars = max_observation_chars
        self.knowledge_transfer = bool(knowledge_transfer)
        self.render_mode = render_mode
        if credit not in CREDIT_RULES:
            raise ValueError(f"credit must be one of {', '.join(CREDIT_RULES)}, got {credit!r}")
        if credit == "causal" and rounds > 1:
            raise ValueError(
                f"credit='causal' holds for one round only (got rounds={rounds}): an earlier "
                "seat's later turns see the later seats' answers"
            )
        if isinstance(reward_matrix, RewardMixer):  # a setting's or a clone's, shared
            if reward_matrix.credit != credit or len(reward_matrix.agents) != num_agents:
                raise ValueError(
                    f"the mixer is for {len(reward_matrix.agents)} agents with credit "
                    f"{reward_matrix.credit!r}; the env has {num_agents} with {credit!r}"
                )
            self.mixer = reward_matrix
        else:
            coef = coefficient_matrix(reward_matrix, num_agents)  # (N, N)
            self.mixer = RewardMixer(coef, agent_ids(num_agents), credit)
        self.coef = self.mixer.coef
        self.credit = credit
        self.metadata = {**self.metadata, "name": env_id or self.metadata["name"]}
        self._init_kwargs = {
            "num_agents": num_agents,
            "reward_matrix": self.mixer,
            "knowledge_transfer": knowledge_transfer,
            "credit": credit,
            "max_text_length": max_text_length,
            "render_mode": render_mode,
            "env_id": env_id,
            "rounds": rounds,
            "max_observation_chars": max_observation_chars,
        }
        self.possible_agents = list(agent_ids(num_agents))
        self.observation_spaces = {
            a: spaces.Dict({"text": AnyText(max_text_length), "seat": spaces.Discrete(num_agents)})
            for a in self.possible_agents
        }
        self.action_spaces = {a: AnyText(max_text_length) for a in self.possible_agents}
        self._rng = np.random.default_rng()
        #: The task's rules, which this env plays one row of (the rollout plays many).
        self.game = TaskGame(
            self.task,
            mixer=self.mixer,
            knowledge_transfer=self.knowledge_transfer,
            rounds=self.rounds,
            max_observation_chars=self.max_observation_chars,
            env_id=self.env_id,
        )
        self.prompt: Prompt | None = None

    # ----------------------------------------------------------------- spaces
    def observation_space(self, agent: str) -> spaces.Space:
        """``Dict(text=AnyText, seat=Discrete(N))``, the same object on every call."""
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        """``AnyText``: any string is a valid response."""
        return self.action_spaces[agent]

    # ------------------------------------------------------------------ reset
    def reset(self, seed: int | None = None, options: Mapping[str, Any] | None = None) -> None:
        """Start an episode on a new (or given) prompt with the given seat order."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        options = dict(options or {})
        prompt = options.get("prompt")
        if prompt is None:
            prompt = self.sample_prompts(1, self._rng)[0]
        elif isinstance(prompt, str):
            prompt = Prompt(prompt)
        elif not isinstance(prompt, Prompt):
            raise TypeError(f"options['prompt'] must be a Prompt or str, got {type(prompt)}")
        check_prompts([prompt], task=self.task, env_id=self.env_id, source="options['prompt']")
        self.prompt = prompt
        self.seats = self._parse_seat_order(options.get("seat_order"))
        self._seat_of = {a: k for k, a in enumerate(self.seats)}
        #: The matrix this episode's rewards are mixed with (``coef``, or masked by seat).
        self.mixing = self.mixer.matrix(self.seats)
        self.game.reset([prompt], self.seats)
        self.agents = list(self.seats)
        self.responses: dict[str, str] = {}
        self.task_rewards: dict[str, float] = {}
        self.trained_rewards: dict[str, float] = {}
        self.round = 0
        self.rewards = {a: 0.0 for a in self.agents}
        self._cumulative_rewards = {a: 0.0 for a in self.agents}
        self.terminations = {a: False for a in self.agents}
        self.truncations = {a: False for a in self.agents}
        self.infos = {a: {"seat": self._seat_of[a]} for a in self.agents}
        self._agent_selector = AgentSelector(self.agents)
        self.agent_selection = self._agent_selector.reset()

    def _parse_seat_order(self, order: Sequence[str | int] | None) -> list[str]:
        if order is None:
            return list(self.possible_agents)
        n = len(self.possible_agents)
        ids = [
            self.possible_agents[o] if isinstance(o, (int, np.integer)) and 0 <= o < n else o
            for o in order
        ]
        if sorted(map(str, ids)) != sorted(self.possible_agents):
            raise ValueError(
                f"seat_order must list every agent exactly once ({self.possible_agents} or "
                f"indices 0..{len(self.possible_agents) - 1}), got {list(order)}"
            )
        return ids

    # ------------------------------------------------------- the task, checked
    @property
    def env_id(self) -> str:
        """The registered id (``metadata["name"]``), named in error messages."""
        return self.metadata["name"]

    def sample_prompts(self, n: int, rng: int | np.random.Generator | None = None) -> list[Prompt]:
        """``n`` prompts from the task, checked (:func:`seqmarl.envs.guard.sample_prompts`).

        Raises:
            TaskError: The task raised, or returned the wrong number or an empty prompt.
        """
        return sample_prompts(self.task, n, rng, env_id=self.env_id)

    # ---------------------------------------------------------------- observe
    def visible_turns(self, agent: str) -> list[Turn]:
        """The turns ``agent`` may see now, oldest first.

        With knowledge transfer, every turn so far (earlier rounds, and the earlier seats of
        this one); without it, only ``agent``'s own earlier turns.
        """
        self._require_reset()
        return self.game.visible_turns(0, agent)

    def earlier_responses(self, agent: str) -> list[str]:
        """Responses ``agent`` gets to see now (see :meth:`visible_turns`)."""
        return [t.response for t in self.visible_turns(agent)]

    def observe(self, agent: str) -> dict[str, Any]:
        """``{"text": prompt (+ the visible transcript), "seat": k}`` for ``agent``.

        Past ``max_observation_chars`` the oldest visible turns are left out, one at a time,
        until the text fits (the prompt always stays; a prompt alone over the limit is cut as
        :func:`~seqmarl.envs.game.fit_observation` says): a long game never overflows the model.

        Raises:
            TaskError: The task's ``observe_turn`` raised or gave an empty text.
        """
        self._require_reset()
        return {"text": self.game.observe(agent, [0])[0], "seat": self._seat_of[agent]}

    # ------------------------------------------------------------------- step
    def step(self, action: str | None) -> None:
        """The current agent answers ``action``; the last answer ends the episode."""
        self._require_reset()
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        if not isinstance(action, str):
            raise TypeError(f"{agent}: action must be a str (the response), got {type(action)}")
        self._cumulative_rewards[agent] = 0.0
        self._clear_rewards()
        self.responses[agent] = action
        self.game.act(agent, [0], [action])
        self._hand_out(self.game.turn_rewards[0][-1])
        if self._agent_selector.is_last() and not self.episode.done:
            self.round += 1  # the seats act again, in the same order
        elif self.episode.done:
            self._finish()
        self.agent_selection = self._agent_selector.next()
        self._accumulate_rewards()
        if self.render_mode == "human" and self.terminations[agent]:
            print(self.render())

    def _hand_out(self, raw: np.ndarray) -> np.ndarray:
        """Add ``raw`` task rewards (agent-id order), mixed, to this step's ``rewards``."""
        mixed = self.mixer.mix(raw, self.seats)  # (N,), through the one mixer
        for i, a in enumerate(self.possible_agents):
            if a in self.rewards and mixed[i]:
                self.rewards[a] += float(mixed[i])
        return mixed

    def _finish(self) -> None:
        """Score the finished episode and hand out its mixed rewards."""
        r = self.game.result().outcome[0]
        mixed = self._hand_out(r)
        for i, a in enumerate(self.possible_agents):
            self.task_rewards[a] = float(r[i])
            self.trained_rewards[a] = float(mixed[i])
            self.terminations[a] = True
            self.infos[a] = {
                "seat": self._seat_of[a],
                "task_reward": float(r[i]),
                "response": self.responses[a],
            }

    def _require_reset(self) -> None:
        if self.prompt is None:
            raise RuntimeError("call reset() before observe() or step()")

    # ------------------------------------------------------------- rendering
    def transcript(self) -> str:
        """The episode so far as text: prompt, each seat's response, rewards when done."""
        self._require_reset()
        lines = [f"[{self.metadata['name']}] prompt: {self.prompt.text!r}"]
        for k, a in enumerate(self.seats):
            if a in self.responses:
                line = f"  seat {k} {a}: {self.responses[a]!r}"
                if a in self.task_rewards:
                    line += f"  task_reward={self.task_rewards[a]:+.3f}"
                    line += f" reward={self.trained_rewards[a]:+.3f}"
                lines.append(line)
        return "\n".join(lines)

    def render(self) -> str | None:
        """The transcript (``ansi``), or ``None`` when no render mode is set."""
        if self.render_mode is None:
            return None
        return self.transcript()

    def close(self) -> None:
        """Nothing to release."""

    def clone(self) -> SequentialTextEnv:
        """A new env with the same task object, mixer and settings (fresh episode state)."""
        return SequentialTextEnv(self.task, **self._init_kwargs)

    def as_game(self) -> TaskGame:
        """The env's :class:`~seqmarl.envs.game.TaskGame` (a rollout over it resets it)."""
        return self.game

    @property
    def episode(self) -> Episode:
        """The episode so far (row 0 of :attr:`game`)."""
        if not self.game.episodes:
            raise RuntimeError("call reset() before reading the episode")
        return self.game.episodes[0]
