"""The env registry: versioned ids (``name-vN``) mapped to task or PettingZoo env factories.

:func:`make` builds a registered env's PettingZoo face for N agents (a
:class:`~seqmarl.envs.sequential.SequentialTextEnv` around a task, or a
:class:`~seqmarl.envs.wrappers.TextAECWrapper` around a plain PettingZoo env), and
:func:`build_game` the :class:`~seqmarl.envs.game.TextGame` a run plays: the one builder the
trainer, ``seqmarl eval`` and pass@k use. Register your own with :func:`register_env` or
:func:`register_pettingzoo`.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pettingzoo import AECEnv

from seqmarl.envs.game import DEFAULT_MAX_TURNS, TextGame
from seqmarl.envs.sequential import SequentialTextEnv
from seqmarl.envs.task import TextTask
from seqmarl.envs.wrappers import TextAECWrapper
from seqmarl.errors import ConfigError
from seqmarl.method.settings import Setting, make_setting
from seqmarl.run.registry import Registry

__all__ = ["ENVS", "EnvSpec", "build_game", "make", "register_env", "register_pettingzoo"]

_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*-v\d+$")
_ENV_KWARGS = (
    "reward_matrix",
    "knowledge_transfer",
    "credit",
    "max_text_length",
    "render_mode",
    "rounds",
    "max_observation_chars",
    "max_turns",
    "observation_template",
    "action_prefix",
)


@dataclass(frozen=True)
class EnvSpec:
    """A registered env: its id, how to build its task, and a one-line description."""

    id: str
    task_factory: Callable[..., TextTask] | None
    description: str = ""
    #: Builds a plain PettingZoo AEC text env instead (see :func:`register_pettingzoo`).
    aec_factory: Callable[[], Any] | None = None
    #: The AEC env's ``metadata`` where it is known without building one (a suite's game);
    #: ``None``: a config check that needs it (``zero_sum``) builds the env.
    metadata: Mapping[str, Any] | None = None


ENVS: Registry[EnvSpec] = Registry("env", entry_point_group="seqmarl.envs")


def register_env(
    env_id: str, task_factory: Callable[..., TextTask], *, description: str = "", **kw: Any
) -> EnvSpec:
    """Register a task under a versioned env id such as ``"my-task-v0"``.

    Args:
        env_id: Lower-case name ending in ``-v<N>``.
        task_factory: Called with the task keyword arguments given to :func:`make`.
        description: One line for ``seqmarl list``.
        **kw: Passed to :meth:`Registry.register` (``overwrite=True``).

    Raises:
        ValueError: The id is not versioned or already taken.
    """
    description = _describe(env_id, task_factory, description, "")
    return ENVS.register(env_id, EnvSpec(env_id, task_factory, description), **kw)


def register_pettingzoo(
    env_id: str, env_fn: Callable[[], Any], *, description: str = "", **kw: Any
) -> EnvSpec:
    """Register a plain PettingZoo AEC env (string observations and actions) for training.

    ``make`` then returns a :class:`~seqmarl.envs.wrappers.TextAECWrapper` over ``env_fn()``,
    and a run plays it through :class:`~seqmarl.envs.game.AECGame`.

    Raises:
        ValueError: The id is not versioned or already taken.
    """
    description = _describe(env_id, env_fn, description, "a PettingZoo AEC text env")
    spec = EnvSpec(env_id, None, description, aec_factory=env_fn)
    return ENVS.register(env_id, spec, **kw)


def make(
    env_id: str,
    *,
    num_agents: int | None = None,
    setting: Setting | str | None = None,
    context: dict[str, Any] | None = None,
    **kwargs: Any,
) -> AECEnv:
    """Build a registered env's PettingZoo face for ``num_agents`` agents.

    Args:
        env_id: A registered id (``seqmarl list``) or ``"pkg.module:factory"``.
        num_agents: N (default 2, or the setting's N).
        setting: Take N, the reward matrix and knowledge transfer from a Setting; a name
            builds the registered setting with ``num_agents``, ``reward_matrix``,
            ``knowledge_transfer`` and ``credit`` from here (``make_setting``).
        context: Values the task factory receives only if it has a parameter of that name and
            the caller did not set it (the trainer offers ``policy_tokenizer``).
        **kwargs: Env options (``reward_matrix``, ``knowledge_transfer``, ``credit``,
            ``max_text_length``, ``render_mode``, ``rounds``, ``max_observation_chars``,
            ``max_turns``); everything else goes to the task factory.

    Returns:
        A :class:`~seqmarl.envs.sequential.SequentialTextEnv` for a task, a
        :class:`~seqmarl.envs.wrappers.TextAECWrapper` for a PettingZoo env (both ``AECEnv``).

    Raises:
        UnknownNameError: ``env_id`` is not registered; the message lists the registered ids.
        ConfigError: A task argument is not accepted, or ``setting`` conflicts with an argument.
    """
    if isinstance(setting, str):  # overrides given here shape the named setting
        overrides = {
            k: kwargs.pop(k)
            for k in ("reward_matrix", "knowledge_transfer", "credit")
            if k in kwargs
        }
        setting = make_setting(setting, num_agents=num_agents, **overrides)
    spec = ENVS.get(env_id)
    if not isinstance(spec, EnvSpec):  # "pkg.mod:factory" returns the factory itself
        spec = EnvSpec(env_id, spec)
    env_kwargs = {k: kwargs.pop(k) for k in _ENV_KWARGS if k in kwargs}
    if setting is not None:
        if num_agents is not None and num_agents != setting.num_agents:
            raise ConfigError(
                f"num_agents={num_agents} conflicts with setting {setting.name!r} "
                f"({setting.num_agents} agents)"
            )
        for key in ("reward_matrix", "knowledge_transfer", "credit"):
            if key in env_kwargs:
                raise ConfigError(f"{key}: given both directly and through the setting; pick one")
        num_agents = setting.num_agents
        env_kwargs["reward_matrix"] = setting.mixer  # the setting's own mixer, shared
        env_kwargs["knowledge_transfer"] = setting.knowledge_transfer
        env_kwargs["credit"] = setting.credit
    if spec.aec_factory is not None:
        return _make_wrapped(spec, num_agents, env_kwargs, kwargs)
    accepted = _parameters(spec.task_factory)
    for key, value in (context or {}).items():
        if key in accepted and key not in kwargs:
            kwargs[key] = value
    try:
        task = spec.task_factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(_bad_arguments(env_id, spec.task_factory, kwargs, exc)) from exc
    env_kwargs.pop("max_turns", None)  # a task's episodes end by themselves
    prefix = env_kwargs.pop("action_prefix", "")
    if env_kwargs.pop("observation_template", None) is not None or prefix:
        raise ConfigError(
            f"env {spec.id!r}: task.observation_template and task.action_prefix frame a "
            "PettingZoo game's turns; a task writes its own (its prompt and observer templates)"
        )
    return SequentialTextEnv(
        task, num_agents=2 if num_agents is None else num_agents, env_id=spec.id, **env_kwargs
    )


def _make_wrapped(spec: EnvSpec, num_agents, env_kwargs: dict, kwargs: dict):
    factory = spec.aec_factory
    if kwargs:  # task.kwargs go to the env's factory, when it takes them
        params = _parameters(factory)
        unknown = [k for k in kwargs if k not in params]
        if unknown:
            takes = f"it takes: {', '.join(params)}" if params else "it takes none"
            raise ConfigError(
                f"env {spec.id!r} is a PettingZoo env built by its factory; unknown argument(s) "
                f"{sorted(unknown)} ({takes})"
            )
        factory = functools.partial(factory, **kwargs)
    wrapped = TextAECWrapper(
        factory,
        reward_matrix=env_kwargs.get("reward_matrix", "independent"),
        env_id=spec.id,
        max_turns=env_kwargs.get("max_turns", DEFAULT_MAX_TURNS),
        max_observation_chars=env_kwargs.get("max_observation_chars"),
        observation_template=env_kwargs.get("observation_template"),
        action_prefix=env_kwargs.get("action_prefix", ""),
    )
    n = len(wrapped.possible_agents)
    if num_agents is not None and num_agents != n:
        raise ConfigError(f"env {spec.id!r} has {n} agents; set num_agents={n}")
    if env_kwargs.get("credit", "full") != "full":
        raise ConfigError(
            f"env {spec.id!r}: setting.credit=causal needs seqmarl's seat-ordered env; this "
            "PettingZoo env decides its own turn order, so use credit=full"
        )
    if env_kwargs.get("rounds", 1) != 1:
        raise ConfigError(
            f"env {spec.id!r}: task.rounds does not apply; the env's own rules decide the turns"
        )
    return wrapped


def build_game(
    task: Any, setting: Setting | str | None = None, *, tokenizer: Any = None
) -> TextGame:
    """The game a run plays, from its task config: the trainer, eval and pass@k use this.

    Args:
        task: A run config's ``task`` section (``env``, ``kwargs``, ``rounds``,
            ``max_observation_chars``, ``max_turns``).
        setting: N, the reward matrix, knowledge transfer and credit.
        tokenizer: The policy tokenizer, offered to a task factory that takes one.
    """
    face = make(
        task.env,
        setting=setting,
        context={"policy_tokenizer": tokenizer},
        rounds=task.rounds,
        max_observation_chars=task.max_observation_chars,
        max_turns=getattr(task, "max_turns", DEFAULT_MAX_TURNS),
        **_template(task),
        **task.kwargs,
    )
    return face.as_game()


def _template(task: Any) -> dict[str, str]:
    """``observation_template`` / ``action_prefix`` where the task config sets them."""
    out = {}
    if getattr(task, "observation_template", None) is not None:
        out["observation_template"] = task.observation_template
    if getattr(task, "action_prefix", ""):
        out["action_prefix"] = task.action_prefix
    return out


def _describe(env_id: str, factory: Callable[..., Any], description: str, default: str) -> str:
    """Check a new id's form; the description given, else the factory's first doc line."""
    if not _ID.match(env_id):
        raise ValueError(f"env id {env_id!r} must be lower-case and end in -v<N>, e.g. 'qa-v0'")
    if description:
        return description
    doc = inspect.getdoc(factory) or ""
    return doc.splitlines()[0] if doc else default


def _bad_arguments(env_id: str, factory: Callable[..., Any], kwargs: dict, exc: TypeError) -> str:
    """One line for a task factory's TypeError: the keys it does not take, and what it takes."""
    params = _parameters(factory)
    accepts = f"it accepts: {', '.join(params) or '(none)'}; env options: {', '.join(_ENV_KWARGS)}"
    try:
        open_ended = any(
            p.kind is p.VAR_KEYWORD for p in inspect.signature(factory).parameters.values()
        )
    except (TypeError, ValueError):
        open_ended = True
    unknown = [] if open_ended else [k for k in kwargs if k not in params]
    task = getattr(factory, "__name__", None) or type(factory).__name__
    if not unknown:  # a known argument the task refused (a wrong type, say)
        return (
            f"env {env_id!r} (task {task}): bad task arguments {sorted(kwargs)} ({exc}); {accepts}"
        )
    hints = [difflib.get_close_matches(k, params, n=1) for k in unknown]
    named = ", ".join(
        f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "")
        for k, h in zip(unknown, hints, strict=True)
    )
    s = "s" if len(unknown) > 1 else ""
    return f"env {env_id!r} (task {task}): unknown task argument{s} {named}; {accepts}"


def _parameters(fn: Callable[..., Any]) -> Sequence[str]:
    try:
        return [
            p.name
            for p in inspect.signature(fn).parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return []
