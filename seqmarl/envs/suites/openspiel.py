"""OpenSpiel games as PettingZoo AEC text envs: ``openspiel/<game>-v0``.

Any sequential (turn-taking) OpenSpiel game for two or more players is a registered seqmarl
env behind the ``openspiel/`` prefix: ``openspiel/tic_tac_toe-v0``, ``openspiel/kuhn_poker-v0``,
``openspiel/connect_four-v0``. The game runs in Shimmy's ``OpenSpielCompatibilityV0`` (a
PettingZoo ``AECEnv`` over ``pyspiel``) and :class:`OpenSpielTextEnv` puts text on it:

* **agents**: Shimmy's ``player_0 ... player_{N-1}`` (OpenSpiel's player ids); turn order,
  termination and truncation are the game's;
* **observations** (``{"text": ...}``): a line naming the game and the player, the state as
  that player sees it (for Kuhn and Leduc poker in words: the cards it may see, the betting so
  far, the pot; :mod:`~seqmarl.envs.suites.openspiel_views`; for any other game OpenSpiel's
  observation string, else its information-state string, else the state itself), and on the
  player's turn a line on how to answer and the moves,
  ``Available Moves: '[4]' x(1,1), '[5]' x(1,2)`` (action id in brackets, then OpenSpiel's
  name of the action);
* **moves**: the first ``[N]`` in the text whose ``N`` is a legal action id, else the legal
  action whose name occurs in the text (case-insensitive, longest name first);
* **illegal moves**: a text naming no legal move costs the agent ``illegal_penalty`` (added to
  its reward for that step) and a legal move drawn uniformly at random is played in its place
  (from the env's own generator, seeded by ``reset(seed)``), so the game always goes on;
  ``infos[agent]["invalid_moves"]`` counts them (OpenSpiel never forfeits: ``forfeit`` is
  always False);
* **rewards**: OpenSpiel's per-step rewards (``state.rewards()``; for most games the returns,
  at the end), plus the penalties; a dead step hands out nothing;
* **chance** (deals, dice) is sampled by Shimmy from its generator seeded by ``reset(seed)``,
  so one seed plays one game.

Two Shimmy slips are corrected here: it counts chance nodes against the game's move bound
(Kuhn poker was truncated after its first bet) and marks a game that ends on its last possible
move as truncated too; and its dead step hands the remaining agents their final reward again.

Unknown games (with close names), simultaneous-move games and single-player games are refused
in one line, at ``make``.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv

from seqmarl.envs.registration import EnvSpec
from seqmarl.envs.spaces import DEFAULT_MAX_TEXT_LENGTH, AnyText
from seqmarl.envs.suites import require
from seqmarl.envs.suites.openspiel_views import readable_view
from seqmarl.errors import ConfigError

__all__ = ["PREFIX", "OpenSpielTextEnv", "load_game", "parse_move", "resolve"]

PREFIX = "openspiel/"
_ENV_ID = re.compile(r"^openspiel/([a-z0-9_]+)-v0$")
_BRACKETED = re.compile(r"\[\s*(\d+)\s*\]")


def _pyspiel() -> Any:
    return require("pyspiel", "open-spiel")


@functools.cache
def _compat_class() -> type:
    """Shimmy's OpenSpiel env with its move bound counted over the players' moves only."""
    shimmy = require("shimmy", "shimmy/open-spiel")

    class _Compat(shimmy.OpenSpielCompatibilityV0):
        def _update_termination_truncation(self) -> None:
            super()._update_termination_truncation()
            state = self.game_state
            moves = sum(1 for h in state.full_history() if h.player >= 0)
            cut = not state.is_terminal() and moves >= self._env.max_game_length()
            self.truncations = dict.fromkeys(self.agents, cut)

    return _Compat


def parse_move(text: Any, moves: Mapping[int, str]) -> int | None:
    """The move a text names among the legal ``moves`` (action id -> action name), or None.

    The first ``[N]`` whose ``N`` is a legal id wins; else the legal move whose name occurs in
    the text (case-insensitive, longest name first).
    """
    text = "" if text is None else str(text)
    for match in _BRACKETED.finditer(text):
        if int(match.group(1)) in moves:
            return int(match.group(1))
    lowered = text.lower()
    for action, name in sorted(moves.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        if name and name.lower() in lowered:
            return action
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def load_game(game: str, params: Mapping[str, Any] | None = None) -> Any:
    """OpenSpiel's game ``game``, checked to be a sequential game for two or more players.

    Raises:
        ConfigError: Not installed, an unknown game (lists close names), bad parameters, a
            simultaneous-move game or a single-player one.
    """
    pyspiel = _pyspiel()
    names = list(pyspiel.registered_names())
    if game not in names:
        close = difflib.get_close_matches(game, names, n=4, cutoff=0.5)
        hint = f"; close names: {', '.join(close)}" if close else ""
        raise ConfigError(
            f"unknown OpenSpiel game {game!r}{hint} (pyspiel.registered_names() lists all "
            f"{len(names)})"
        )
    try:
        loaded = pyspiel.load_game(game, dict(params or {}))
    except Exception as exc:  # SpielError, or a C++ exception in Python's clothes
        raise ConfigError(f"OpenSpiel game {game!r} does not load: {_one_line(exc)}") from None
    kind = loaded.get_type()
    dynamics = pyspiel.GameType.Dynamics
    if kind.dynamics != dynamics.SEQUENTIAL:
        label = "simultaneous-move" if kind.dynamics == dynamics.SIMULTANEOUS else "mean-field"
        raise ConfigError(
            f"OpenSpiel game {game!r} is {label}, not turn-taking; only sequential games are "
            "served as text envs (e.g. openspiel/tic_tac_toe-v0)"
        )
    if loaded.num_players() < 2:
        raise ConfigError(
            f"OpenSpiel game {game!r} has {loaded.num_players()} player; a text env needs two "
            "or more (e.g. openspiel/kuhn_poker-v0)"
        )
    return loaded


class OpenSpielTextEnv(AECEnv):
    """One OpenSpiel game as a PettingZoo AEC env with text observations and actions.

    Args:
        game: OpenSpiel's short name (``"tic_tac_toe"``).
        illegal_penalty: Added to an agent's step reward when its text names no legal move
            (a random legal move is played instead).
        params: The game's parameters (``{"players": 3}``), as for ``pyspiel.load_game``.

    Raises:
        ConfigError: The game is unknown, not turn-taking, single-player, or not servable.
    """

    def __init__(
        self,
        game: str,
        *,
        illegal_penalty: float = -1.0,
        params: dict | None = None,
    ):
        super().__init__()
        loaded = load_game(game, params)
        kind = loaded.get_type()
        try:  # Shimmy reloads the game on every reset: it keeps the name and the parameters
            self._inner = _compat_class()(game_name=game, config=dict(params) if params else None)
        except (NotImplementedError, _pyspiel().SpielError) as exc:
            raise ConfigError(
                f"OpenSpiel game {game!r}: Shimmy cannot serve it ({_one_line(exc)})"
            ) from None
        self.game = game
        self.params = dict(params or {})
        self.long_name = kind.long_name
        self.illegal_penalty = float(illegal_penalty)
        self.possible_agents = list(self._inner.possible_agents)
        self._ids = {a: k for k, a in enumerate(self.possible_agents)}
        self._observation_string = kind.provides_observation_string
        self._information_string = kind.provides_information_state_string
        self._readable = readable_view(game, params)
        self.metadata = {
            "name": f"openspiel_{game}",
            "is_parallelizable": False,
            "zero_sum": kind.utility == _pyspiel().GameType.Utility.ZERO_SUM,
        }
        text = AnyText(DEFAULT_MAX_TEXT_LENGTH)
        self.observation_spaces = {a: spaces.Dict({"text": text}) for a in self.possible_agents}
        self.action_spaces = {a: text for a in self.possible_agents}
        self._rng = np.random.default_rng()
        self._invalid = dict.fromkeys(self.possible_agents, 0)

    def observation_space(self, agent: str) -> Any:
        """Text: what a model reads."""
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> Any:
        """Text: what a model writes."""
        return self.action_spaces[agent]

    @property
    def state(self) -> Any:
        """OpenSpiel's state of the current game (``pyspiel.State``)."""
        return self._inner.game_state

    def reset(self, seed: int | None = None, options: dict | None = None) -> None:
        """A new game; ``seed`` fixes both its chance outcomes and the illegal-move fallbacks."""
        self._inner.reset(seed=seed)
        if seed is None:
            self._rng = np.random.default_rng()
        else:  # a stream apart from Shimmy's chance stream, which is seeded with ``seed``
            self._rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
        self._invalid = dict.fromkeys(self.possible_agents, 0)
        self._sync()
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)

    def observe(self, agent: str) -> dict[str, str]:
        """``{"text": ...}``: the game as ``agent`` sees it, and its moves on its turn."""
        return {"text": self._text(agent)}

    def step(self, action: str | None) -> None:
        """Play the move ``action`` names (a random legal one if none); a dead step for one done.

        Raises:
            ValueError: A done agent was given an action other than None (PettingZoo's rule).
        """
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._dead_step(action)
            return
        move = parse_move(action, self._moves(agent))
        penalty = 0.0
        if move is None:
            move = int(self._rng.choice(self.state.legal_actions(self._ids[agent])))
            penalty = self.illegal_penalty
            self._invalid[agent] += 1
        self._inner.step(move)
        self._sync()
        self.rewards = {a: float(self._inner.rewards.get(a, 0.0)) for a in self.agents}
        if agent in self.rewards:
            self.rewards[agent] += penalty
        cumulative = {a: self._cumulative_rewards.get(a, 0.0) for a in self.agents}
        cumulative[agent] = 0.0
        self._cumulative_rewards = cumulative
        self._accumulate_rewards()

    def render(self) -> str:
        """The full state as OpenSpiel prints it."""
        return str(self.state)

    def close(self) -> None:
        """Nothing held."""

    # ------------------------------------------------------------------ internals
    def _dead_step(self, action: Any) -> None:
        if action is not None:
            raise ValueError("when an agent is dead, the only valid action is None")
        self._inner.step(None)
        self._sync()
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = {a: self._cumulative_rewards[a] for a in self.agents}

    def _sync(self) -> None:
        """Mirror Shimmy's agents, selection, terminations and truncations; rebuild infos."""
        inner = self._inner
        self.agents = list(inner.agents)
        self.agent_selection = inner.agent_selection
        self.terminations = {a: bool(inner.terminations[a]) for a in self.agents}
        self.truncations = {a: bool(inner.truncations[a]) for a in self.agents}
        self.infos = {a: self._info(a) for a in self.agents}

    def _info(self, agent: str) -> dict[str, Any]:
        # Shimmy's numpy ``action_mask`` becomes a list of ids: JSON-friendly, and PettingZoo's
        # seed_test would hand a mask to the text space's sample(), which takes none
        # no "forfeit": an illegal answer becomes a random legal move, never a lost game
        return {"legal_actions": sorted(self._moves(agent)), "invalid_moves": self._invalid[agent]}

    def _moves(self, agent: str) -> dict[int, str]:
        """The agent's legal moves (id -> name); empty when it is not its turn."""
        state, pid = self.state, self._ids[agent]
        if state.is_terminal() or state.current_player() != pid:
            return {}
        return {int(a): state.action_to_string(pid, a) for a in state.legal_actions(pid)}

    def _view(self, state: Any, pid: int) -> str:
        if self._readable is not None:
            return self._readable(state, pid)
        try:
            if self._observation_string:
                return state.observation_string(pid)
            if self._information_string:
                return state.information_state_string(pid)
        except _pyspiel().SpielError:
            pass
        return str(state)

    def _text(self, agent: str) -> str:
        live = not (self.terminations.get(agent) or self.truncations.get(agent))
        moves = self._moves(agent) if agent in self.agents else {}
        return self._render(self.state, self._ids[agent], moves, live=live)

    def observation_at(self, state: Any) -> str:
        """The text the player to move in ``state`` reads on its turn (any reachable state).

        The same text :meth:`observe` gives that player when this env reaches ``state``;
        exploitability reads a policy at every information state through it.

        Raises:
            ValueError: ``state`` is a chance node or terminal (no player to move).
        """
        pid = state.current_player()
        if state.is_terminal() or pid < 0:
            raise ValueError("observation_at needs a state where a player is to move")
        moves = {int(a): state.action_to_string(pid, a) for a in state.legal_actions(pid)}
        return self._render(state, pid, moves, live=True)

    def _render(self, state: Any, pid: int, moves: Mapping[int, str], *, live: bool) -> str:
        n = len(self.possible_agents)
        lines = [
            f"You are player {pid} of {n} in {self.long_name}.",
            self._view(state, pid).rstrip(),
        ]
        if state.is_terminal():
            lines.append(f"The game is over; your return is {state.returns()[pid]:+g}.")
        elif moves and live:
            listed = ", ".join(f"'[{a}]' {name}" for a, name in moves.items())
            lines.append(
                f"Answer with the bracketed number of one move, e.g. '[{next(iter(moves))}]'."
            )
            lines.append(f"Available Moves: {listed}")
        elif not live:
            lines.append("The game was cut at its move limit.")
        else:
            lines.append(f"Waiting for player {state.current_player()} to move.")
        return "\n".join(line for line in lines if line)


def resolve(env_id: str) -> EnvSpec:
    """The registry entry of ``openspiel/<game>-v0`` (the env namespace's resolver).

    Raises:
        ConfigError: Not of that form, not installed (names the extra), or a game that is
            unknown (lists close names), simultaneous-move or single-player.
    """
    match = _ENV_ID.match(env_id)
    if match is None:
        raise ConfigError(
            f"env {env_id!r}: OpenSpiel envs are named openspiel/<game>-v0, e.g. "
            "openspiel/tic_tac_toe-v0"
        )
    game = match.group(1)
    probe = OpenSpielTextEnv(game)
    description = f"{probe.long_name} (OpenSpiel via Shimmy)"

    def factory(illegal_penalty: float = -1.0) -> OpenSpielTextEnv:
        return OpenSpielTextEnv(game, illegal_penalty=illegal_penalty)

    return EnvSpec(env_id, None, description, aec_factory=factory, metadata=dict(probe.metadata))
