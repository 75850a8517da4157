"""A plain PettingZoo text env in which the second player acts on even reset seeds only.

Registered as ``even-seed-game-v0`` by ``worker.py`` (in the worker processes alone): with
data-parallel training, a rank whose prompts (seeds) are all odd has no turns of that player.
"""

import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv
from pettingzoo.utils import AgentSelector

from seqmarl.envs.spaces import AnyText

ENV_ID = "even-seed-game-v0"


def second_player_acts(seed: int) -> bool:
    """Whether ``bob`` has a turn in the episode of reset seed ``seed``."""
    return seed % 2 == 0


class EvenSeedGame(AECEnv):
    """``alice`` answers; on an even seed ``bob`` answers too. A move with a digit earns 1."""

    metadata = {"name": "even_seed_game_v0", "is_parallelizable": False}  # noqa: RUF012

    def __init__(self):
        super().__init__()
        self.possible_agents = ["alice", "bob"]
        self.observation_spaces = {
            a: spaces.Dict({"text": AnyText(10_000)}) for a in self.possible_agents
        }
        self.action_spaces = {a: AnyText(10_000) for a in self.possible_agents}

    def observation_space(self, agent):
        return self.observation_spaces[agent]

    def action_space(self, agent):
        return self.action_spaces[agent]

    def reset(self, seed=None, options=None):
        self.moves_left = 2 if second_player_acts(int(seed or 0)) else 1
        self.topic = int(np.random.default_rng(seed).integers(100))
        self.agents = list(self.possible_agents)
        self.log = []
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)
        self.terminations = dict.fromkeys(self.agents, False)
        self.truncations = dict.fromkeys(self.agents, False)
        self.infos = {a: {} for a in self.agents}
        self._selector = AgentSelector(self.agents)
        self.agent_selection = self._selector.reset()

    def observe(self, agent):
        return {"text": f"Topic {self.topic}. " + " | ".join(self.log) + f" | {agent}:"}

    def step(self, action):
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        self._cumulative_rewards[agent] = 0.0
        self._clear_rewards()
        self.log.append(f"{agent}: {action}")
        self.rewards[agent] = 1.0 if any(c.isdigit() for c in action) else 0.0
        self.moves_left -= 1
        if self.moves_left == 0:
            self.terminations = dict.fromkeys(self.agents, True)
        self.agent_selection = self._selector.next()
        self._accumulate_rewards()
