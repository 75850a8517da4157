"""A two-player word game as a plain PettingZoo AEC env: a template for your own.

In turn, each player names a word starting with the episode's letter: a new one scores a
point. After three moves each, more points win (+1, the other -1; a tie 0).

    cd examples && seqmarl check-env --import word_duel_env word-duel-v0
    seqmarl train --import word_duel_env env=word-duel-v0 setting.reward_matrix=competitive
"""

import string

import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv
from pettingzoo.utils import AgentSelector

from seqmarl.envs import AnyText, register_pettingzoo


class WordDuelEnv(AECEnv):
    metadata = {"name": "word_duel_v0", "is_parallelizable": False, "zero_sum": True}  # noqa: RUF012
    MOVES = 3  # per player

    def __init__(self):
        super().__init__()
        self.possible_agents = ["player_0", "player_1"]
        text = AnyText(2000)  # any string up to 2000 characters
        self.observation_spaces = {a: spaces.Dict({"text": text}) for a in self.possible_agents}
        self.action_spaces = {a: text for a in self.possible_agents}

    def observation_space(self, agent):
        return self.observation_spaces[agent]

    def action_space(self, agent):
        return self.action_spaces[agent]

    def reset(self, seed=None, options=None):
        self.letter = string.ascii_lowercase[np.random.default_rng(seed).integers(26)]
        self.agents = list(self.possible_agents)
        self.words, self.points = [], dict.fromkeys(self.agents, 0)
        self.rewards = dict.fromkeys(self.agents, 0.0)  # this step's
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)  # since each one's last move
        self.terminations = dict.fromkeys(self.agents, False)
        self.truncations = dict.fromkeys(self.agents, False)
        self.infos = {a: {} for a in self.agents}
        self._selector = AgentSelector(self.agents)
        self.agent_selection = self._selector.reset()

    def observe(self, agent):
        said = ", ".join(self.words) or "none yet"
        return {"text": f"Name a new word starting with '{self.letter}' (said: {said}). {agent}:"}

    def step(self, action):
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)  # a done agent steps None; the next one is selected
            return
        self._cumulative_rewards[agent] = 0.0  # it has seen its rewards: last() returned them
        self._clear_rewards()  # this step's rewards start at 0 for everyone
        word = (str(action or "").lower().split() or ["-"])[0].strip(".,!?'\"")
        if word.startswith(self.letter) and word not in self.words:
            self.points[agent] += 1
        self.words.append(word or "-")
        if len(self.words) == self.MOVES * len(self.agents):  # the duel is over
            first, second = self.agents
            won = float(np.sign(self.points[first] - self.points[second]))
            self.rewards = {first: won, second: -won}
            self.terminations = dict.fromkeys(self.agents, True)
        self.agent_selection = self._selector.next()
        self._accumulate_rewards()  # add this step's rewards to every agent's cumulative ones


register_pettingzoo("word-duel-v0", WordDuelEnv)
