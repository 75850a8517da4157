"""TextArena games as PettingZoo AEC text envs: ``textarena/<TextArena id>``.

Any TextArena game for two or more players is a registered seqmarl env under its own id
behind the ``textarena/`` prefix: ``textarena/TicTacToe-v0``, ``textarena/KuhnPoker-v0-short``,
``textarena/SimpleNegotiation-v0``, and their ``-train`` / ``-raw`` observation variants. It is
built with ``textarena.make`` (the game's default wrappers: its own observation format and
action brackets) and played through :class:`TextArenaEnv`, a PettingZoo ``AECEnv``:

* **agents by seat**: TextArena's player ``k`` is agent ``player_k``; seqmarl maps its models
  onto them by the seat order, so role exchange swaps who plays ``player_0``;
* **observations**: the text TextArena gives the player whose turn it is (``{"text": ...}``);
  another player's observation is the last text it was given;
* **moves**: the model's text goes to ``env.step`` unchanged, so the game's own parsing,
  invalid-move rules and penalties apply (in most games one invalid move is let off with a
  warning and a retry, the next loses the game: reward -1, the opponent +1);
* **rewards**: the game's final rewards (``close()``), handed out when it ends; the reward
  matrix and role exchange apply on top, as for any env;
* **infos** per agent: ``invalid_moves`` (this episode), ``forfeit`` (lost by invalid moves)
  and ``turns``;
* **seeds**: each env keeps its own ``random`` stream (TextArena draws from Python's global
  one), so two envs reset with one seed play the same game however they interleave.

The number of players is the game's smallest of 2, 3, ...; single-player games are refused,
and so are games that need the network or an API key (an LLM judge, a downloaded word list),
found in the game's folder or in any textarena module it imports: each in one line at ``make``.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import importlib.util
import inspect
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gymnasium import spaces
from pettingzoo import AECEnv

from seqmarl.envs.registration import EnvSpec
from seqmarl.envs.spaces import DEFAULT_MAX_TEXT_LENGTH, AnyText
from seqmarl.envs.suites import require
from seqmarl.errors import ConfigError

__all__ = ["PREFIX", "TextArenaEnv", "resolve"]

PREFIX = "textarena/"
#: What in a game's source marks it as needing the network or an API key.
_ONLINE = re.compile(
    r"OpenRouter|openai|anthropic|API_KEY|requests\.|urlopen|nltk\.download|load_dataset|"
    r"GeminiAgent|jury",
    re.IGNORECASE,
)
#: Player counts tried, smallest first.
_PLAYERS = range(2, 16)


def _textarena() -> Any:
    return require("textarena", "textarena")


@contextlib.contextmanager
def _own_random(holder: TextArenaEnv) -> Iterator[None]:
    """Run a TextArena call on ``holder``'s own ``random`` stream, the global one kept aside."""
    outside = random.getstate()
    random.setstate(holder._random)
    try:
        yield
    finally:
        holder._random = random.getstate()
        random.setstate(outside)


class TextArenaEnv(AECEnv):
    """One TextArena game as a PettingZoo AEC env with text observations and actions.

    Args:
        game_id: TextArena's id (``"TicTacToe-v0"``).
        num_players: Players; default the smallest count the game takes (2, 3, ...).
        invalid_move_penalty: Added to a player's reward for every move the game refuses
            (shaping, off by default: then the game's own rules alone decide; ``task.kwargs``).
    """

    def __init__(
        self, game_id: str, *, num_players: int | None = None, invalid_move_penalty: float = 0.0
    ):
        super().__init__()
        self.game_id = game_id
        self.invalid_move_penalty = float(invalid_move_penalty)
        self._random = random.Random(0).getstate()
        self.num_players = num_players or players_of(game_id)
        self.possible_agents = [f"player_{k}" for k in range(self.num_players)]
        self.metadata = {  # as the registry's spec says (resolve), without building one
            "name": f"textarena_{game_id}",
            "is_parallelizable": False,
            "zero_sum": self.num_players == 2,
        }
        text = AnyText(DEFAULT_MAX_TEXT_LENGTH)
        self.observation_spaces = {a: spaces.Dict({"text": text}) for a in self.possible_agents}
        self.action_spaces = {a: text for a in self.possible_agents}
        self.game: Any = None

    def observation_space(self, agent: str) -> Any:
        """Text: what a model reads."""
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> Any:
        """Text: what a model writes."""
        return self.action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None) -> None:
        """A new game (TextArena's ``reset(num_players, seed)``) on a fresh instance."""
        if seed is not None:
            self._random = random.Random(seed).getstate()
        with _own_random(self):
            self.game = _textarena().make(self.game_id)
            self.game.reset(num_players=self.num_players, seed=seed)
        self.agents = list(self.possible_agents)
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)
        self.terminations = dict.fromkeys(self.agents, False)
        self.truncations = dict.fromkeys(self.agents, False)
        self._invalid = dict.fromkeys(self.agents, 0)
        self._text = dict.fromkeys(self.agents, "")
        self.infos = {a: self._info(a) for a in self.agents}
        self._next_player()

    def observe(self, agent: str) -> dict[str, str]:
        """``{"text": ...}``: what TextArena last gave ``agent``."""
        return {"text": self._text[agent]}

    def step(self, action: str | None) -> None:
        """Play ``action`` for the selected agent (a dead step for one that is done)."""
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        state = self.game.state
        pid = int(agent.rpartition("_")[2])
        turns_before = state.game_info[pid]["turn_count"]
        with _own_random(self):
            done, _ = self.game.step("" if action is None else str(action))
        info = state.game_info[pid]
        refused = info["turn_count"] == turns_before or bool(info.get("invalid_move"))
        self._invalid[agent] += refused
        self._cumulative_rewards[agent] = 0.0
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self.rewards[agent] = self.invalid_move_penalty if refused else 0.0
        if done:
            with _own_random(self):
                rewards, _ = _closed(self.game.close())
            for a in self.agents:
                self.rewards[a] += float(rewards.get(int(a.rpartition("_")[2]), 0.0))
                self.terminations[a] = True
        self.infos = {a: self._info(a) for a in self.agents}
        self._accumulate_rewards()
        if done:
            self.agent_selection = self.agents[0]
        else:
            self._next_player()

    def close(self) -> None:
        """Nothing held."""

    # ------------------------------------------------------------------ internals
    def _next_player(self) -> None:
        with _own_random(self):
            pid, text = self.game.get_observation()
        agent = f"player_{pid}"
        self._text[agent] = text if isinstance(text, str) else str(text)
        self.agent_selection = agent

    def _info(self, agent: str) -> dict[str, Any]:
        game_info = getattr(self.game.state, "game_info", {}).get(int(agent.rpartition("_")[2]))
        game_info = game_info or {}
        return {
            "invalid_moves": self._invalid[agent],
            "forfeit": bool(game_info.get("invalid_move", False)),
            "turns": int(game_info.get("turn_count", 0)),
            "role": str(game_info.get("role", agent)),
        }


def _closed(out: Any) -> tuple[dict, dict]:
    """``close()``'s ``(rewards, game_info)`` (some versions return only the rewards)."""
    if isinstance(out, tuple):
        return out[0] or {}, out[1] if len(out) > 1 else {}
    return out or {}, {}


def players_of(game_id: str) -> int:
    """The smallest number of players (>= 2) ``game_id`` takes.

    Raises:
        ConfigError: A single-player game, or one that cannot start here (the reason).
    """
    ta = _textarena()
    last = None
    for n in _PLAYERS:
        env = ta.make(game_id)
        saved = random.getstate()
        try:
            env.reset(num_players=n, seed=0)
        except Exception as exc:  # the game's own check of the count (assert, ValueError)
            last = last or exc
            continue
        finally:
            random.setstate(saved)
        if type(env.state).__name__ == "SinglePlayerState":
            break
        return n
    reason = f" ({type(last).__name__}: {last})" if last else ""
    raise ConfigError(
        f"env 'textarena/{game_id}': not a game for two or more players{reason}; seqmarl plays "
        "TextArena's multi-player games"
    )


def _online(entry_point: Any) -> str | None:
    """The first line that needs the network or a key in the game's code, if any.

    What is read: every file of the game's own folder, and every module of the textarena
    package those files import, and what those import in turn (a word list that downloads,
    a jury that calls an API). The package's root (``import textarena as ta``) is not
    followed: it imports every game. Nothing is imported to find the files.
    """
    module = entry_point.split(":")[0] if isinstance(entry_point, str) else entry_point.__module__
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    root = Path(_textarena().__file__).resolve().parent
    folder = Path(spec.origin).resolve().parent
    queue = sorted(folder.glob("*.py"))
    seen = set(queue)
    while queue:
        path = queue.pop(0)
        text = path.read_text(errors="replace")
        for line in text.splitlines():
            if _ONLINE.search(line) and not line.lstrip().startswith("#"):
                where = path.relative_to(root) if path.is_relative_to(root) else path.name
                also = "" if path.parent == folder else ", which the game imports"
                return f"{where}{also}: {line.strip()[:80]}"
        for found in _imported_files(text, path, root):
            if found not in seen:
                seen.add(found)
                queue.append(found)
    return None


def _imported_files(text: str, path: Path, root: Path) -> list[Path]:
    """The files of textarena's own modules (not its root package) that ``text`` imports."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    here = path.parent.relative_to(root).parts if path.is_relative_to(root) else None
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative to this file's package
                if here is None:
                    continue
                up = here[: len(here) - node.level + 1] if node.level > 1 else here
                base = ".".join(["textarena", *up, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            # "from pkg import sub" imports the module pkg.sub where there is one
            names += [f"{base}.{a.name}" for a in node.names] + [base]
    files = []
    for name in names:
        parts = name.split(".")
        if parts[0] != "textarena" or len(parts) < 2:
            continue
        file = root.joinpath(*parts[1:])
        for candidate in (file.with_suffix(".py"), file / "__init__.py"):
            if candidate.is_file():
                files.append(candidate.resolve())
                break
    return files


def resolve(env_id: str) -> EnvSpec:
    """The registry entry of ``textarena/<TextArena id>`` (the env namespace's resolver).

    Raises:
        ConfigError: Not installed (names the extra), an unknown game (lists close ids), a
            single-player game, or one that needs the network or an API key.
    """
    game_id = env_id[len(PREFIX) :]
    ta = _textarena()
    registry = ta.envs.registration.ENV_REGISTRY
    if game_id not in registry:
        close = difflib.get_close_matches(game_id, list(registry), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(PREFIX + c for c in close)}?" if close else ""
        raise ConfigError(
            f"unknown TextArena game {game_id!r} in env {env_id!r}{hint} (TextArena "
            f"{getattr(ta, '__version__', '')} has {len(registry)} ids: python -c 'import "
            "textarena; print(list(textarena.envs.registration.ENV_REGISTRY))')"
        )
    online = _online(registry[game_id].entry_point)
    if online is not None:
        raise ConfigError(
            f"env {env_id!r} needs the network or an API key, which seqmarl does not give a "
            f"game ({online}); pick an offline game such as textarena/TicTacToe-v0"
        )
    n = players_of(game_id)
    doc = inspect.getdoc(TextArenaEnv) or ""
    description = f"TextArena {game_id}, {n} players ({doc.splitlines()[0].rstrip('.')})"

    def factory(invalid_move_penalty: float = 0.0) -> TextArenaEnv:
        return TextArenaEnv(game_id, num_players=n, invalid_move_penalty=invalid_move_penalty)

    meta = {"name": f"textarena_{game_id}", "is_parallelizable": False, "zero_sum": n == 2}
    return EnvSpec(env_id, None, description, aec_factory=factory, metadata=meta)
