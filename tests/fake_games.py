"""One fake PettingZoo AEC text game for the tests, and the variants they register.

:class:`FakeGame` is a plain PettingZoo env (nothing of seqmarl but its text space): its roles
move in turn for a fixed number of moves, observe a line of text and are scored by one of a few
rules. A test picks its knobs in a subclass (class attributes: a subclass is also the no-argument
factory ``register_pettingzoo`` takes) and overrides a hook where it needs a rule of its own
(``reward``, ``hand_out``, ``observe``, ``length``).

This module imports no test code, so the torchrun workers of ``tests/distributed`` import it
too (``from tests.fake_games import EvenSeedGame``; the launch puts the repository root on
``PYTHONPATH``).
"""

import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv
from pettingzoo.utils import AgentSelector

from seqmarl.envs.spaces import AnyText

__all__ = [
    "DigitDuel",
    "DigitGame",
    "EvenSeedGame",
    "FakeGame",
    "Moves",
    "ThreeRoles",
    "second_player_acts",
]


class FakeGame(AECEnv):
    """Roles move in turn; a move earns its mover 1 if it holds a digit.

    Knobs (class attributes):

    * ``roles``: the env's agents, in turn order;
    * ``moves``: moves in a game (all roles together; :meth:`length` may make it depend on the
      reset seed);
    * ``scoring``: ``"digit"``, each move earns its mover 1 if it holds a digit (the rewards
      :meth:`hand_out` gives, by :meth:`reward`); ``"more_digits"``, at the end the role whose
      moves held more digits wins +1 and the other loses 1, a draw is 0 (zero-sum, and said so
      in ``metadata``); ``"by_seat"``, at the end role k earns k + 1 (general-sum);
    * ``prompt``: the observation, formatted with ``topic`` (an integer drawn from the reset
      seed), ``log`` (the moves so far, ``"role: text"`` joined by ``" | "``), ``agent`` (the
      observer) and ``digits`` (a dict, each role that moved to the digits of its moves);
    * ``legal_moves``: listed on a last line ``Available Moves: '[1]', '[22]'`` (the form the
      ``random`` scripted player reads), or nothing when empty;
    * ``log_chars``: a move's text is cut to this many characters in ``log`` (``None``: whole);
    * ``dict_observations``: observations as ``{"text": str}`` in a ``Dict`` space (the form
      seqmarl's own envs use) instead of a bare string;
    * ``name``: ``metadata["name"]``.
    """

    roles: tuple[str, ...] = ("alice", "bob")
    moves = 4
    scoring = "digit"
    prompt = "Topic {topic}. {log} | {agent}:"
    legal_moves: tuple[str, ...] = ()
    log_chars: int | None = None
    dict_observations = False
    name = "fake_game_v0"

    def __init__(self):
        super().__init__()
        if self.scoring not in ("digit", "more_digits", "by_seat"):
            raise ValueError(f"unknown scoring {self.scoring!r}")
        self.metadata = {"name": self.name, "is_parallelizable": False}
        if self.scoring == "more_digits":
            self.metadata["zero_sum"] = True
        self.possible_agents = list(self.roles)

        def observation_space():
            text = AnyText(100_000)
            return spaces.Dict({"text": text}) if self.dict_observations else text

        self.observation_spaces = {a: observation_space() for a in self.possible_agents}
        self.action_spaces = {a: AnyText(100_000) for a in self.possible_agents}

    def observation_space(self, agent):
        return self.observation_spaces[agent]

    def action_space(self, agent):
        return self.action_spaces[agent]

    def length(self, seed):
        """Moves in the game of reset seed ``seed``."""
        return self.moves

    def reset(self, seed=None, options=None):
        self.topic = int(np.random.default_rng(seed).integers(100))
        self.game_length = self.length(seed)
        self.agents = list(self.possible_agents)
        self.log = []  # (role, text) per move
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)
        self.terminations = dict.fromkeys(self.agents, False)
        self.truncations = dict.fromkeys(self.agents, False)
        self.infos = {a: {} for a in self.agents}
        self._selector = AgentSelector(self.agents)
        self.agent_selection = self._selector.reset()

    def digits(self):
        """Each role that moved, to the digits its moves held."""
        out = {}
        for role, text in self.log:
            out[role] = out.get(role, 0) + sum(c.isdigit() for c in text)
        return out

    def observe(self, agent):
        log = " | ".join(f"{role}: {text[: self.log_chars]}" for role, text in self.log)
        text = self.prompt.format(topic=self.topic, log=log, agent=agent, digits=self.digits())
        if self.legal_moves:
            text += "\nAvailable Moves: " + ", ".join(f"'{m}'" for m in self.legal_moves)
        return {"text": text} if self.dict_observations else text

    def over(self):
        """Whether the game has ended (its moves all made)."""
        return len(self.log) >= self.game_length

    def reward(self, agent, action):
        """What one move earns its mover (``scoring="digit"``)."""
        return 1.0 if any(c.isdigit() for c in action) else 0.0

    def hand_out(self, agent, action):
        """This move's rewards, by the scoring rule (the move is already in ``log``)."""
        if self.scoring == "digit":
            self.rewards[agent] = self.reward(agent, action)
        elif self.over() and self.scoring == "more_digits":
            a, b = (self.digits().get(r, 0) for r in self.possible_agents)
            win = float(np.sign(a - b))
            self.rewards = dict(zip(self.possible_agents, (win, -win)))
        elif self.over() and self.scoring == "by_seat":
            self.rewards = {a: float(k + 1) for k, a in enumerate(self.possible_agents)}

    def step(self, action):
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        self._cumulative_rewards[agent] = 0.0
        self._clear_rewards()
        self.log.append((agent, action))
        self.hand_out(agent, action)
        if self.over():
            self.terminations = dict.fromkeys(self.agents, True)
        self.agent_selection = self._selector.next()
        self._accumulate_rewards()


class DigitGame(FakeGame):
    """Two players alternate twice; a move earns 1 if it contains a digit. No seqmarl inside."""

    dict_observations = True
    name = "digit_game_v0"


def second_player_acts(seed: int) -> bool:
    """Whether ``bob`` has a turn in :class:`EvenSeedGame`'s episode of reset seed ``seed``."""
    return seed % 2 == 0


class EvenSeedGame(DigitGame):
    """``alice`` answers; on an even seed ``bob`` answers too. A move with a digit earns 1.

    With data-parallel training, a rank whose prompts (seeds) are all odd has no turns of
    ``bob`` (``tests/distributed``: registered as ``even-seed-game-v0`` in the workers).
    """

    name = "even_seed_game_v0"

    def length(self, seed):
        return 2 if second_player_acts(int(seed or 0)) else 1


class Moves(FakeGame):
    """Two roles alternate for ``moves`` moves; a move scores 1 if it holds a digit."""

    roles = ("white", "black")
    log_chars = 20
    name = "moves_v0"


class DigitDuel(FakeGame):
    """Two roles answer once each; more digits wins (+1/-1), equal is a draw. Zero-sum."""

    roles = ("player_0", "player_1")
    moves = 2
    scoring = "more_digits"
    prompt = "Say digits. {digits}"
    legal_moves = ("[1]", "[22]", "[333]")
    name = "digit_duel_v0"


class ThreeRoles(FakeGame):
    """Three roles move once each; role k earns k + 1 (general-sum, outcome fixed by seat)."""

    roles = ("p0", "p1", "p2")
    moves = 3
    scoring = "by_seat"
    prompt = "Move."
    legal_moves = ("[a]", "[b]")
    name = "three_roles_v0"
