"""Multi-agent settings: who plays, in which seats, and on which reward.

A :class:`Setting` is the game around a text environment:

* ``num_agents`` learners ``llm_0 ... llm_{N-1}``;
* a reward coefficient matrix ``C`` (N x N): agent ``i`` is trained on
  ``sum_j C[i][j] * task_reward_j``. Presets: ``cooperative`` (all ones, CORY's collective
  reward), ``independent`` (identity), ``competitive`` (1 on the diagonal, -1 off it);
* a seat schedule: which agent sits in seat ``k`` at iteration ``t``. CORY's role exchange
  (pioneer <-> observer every ``T_REx`` iterations) is the rotation schedule for N = 2; for
  N > 2 the rotation is cyclic, and any list of permutations can be given instead;
* a knowledge-transfer switch: whether later seats see the earlier seats' responses;
* a credit rule: ``full`` (``C`` as given) or ``causal`` (agent ``i`` keeps only the terms
  ``C[i][j] r_j`` of agents ``j`` seated at or after it in that episode, see
  :func:`credit_matrix`).

Registered settings (see :func:`make_setting`): ``single`` (one agent, the PPO baseline),
``cory`` (N >= 2, cooperative, rotate every 5 iterations), the paper's ablations
``cory-no-transfer`` and ``cory-no-exchange``, and ``cory-causal`` (CORY with causal credit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from seqmarl.errors import ConfigError
from seqmarl.method.mixing import CREDIT_RULES, RewardMixer, credit_matrix
from seqmarl.run.registry import Registry

__all__ = [
    "COEFFICIENT_PRESETS",
    "CREDIT_RULES",
    "SETTINGS",
    "Setting",
    "SettingSpec",
    "agent_ids",
    "coefficient_matrix",
    "credit_matrix",
    "make_setting",
    "seat_schedule",
]

COEFFICIENT_PRESETS = ("cooperative", "independent", "competitive")
ScheduleKind = Literal["fixed", "rotate", "permutations"]
Credit = Literal["full", "causal"]


def agent_ids(num_agents: int) -> tuple[str, ...]:
    """The agent ids of an N-agent game: ``("llm_0", ..., "llm_{N-1}")``."""
    return tuple(f"llm_{i}" for i in range(num_agents))


def coefficient_matrix(spec: str | Sequence[Sequence[float]], num_agents: int) -> np.ndarray:
    """Build and validate the N x N reward coefficient matrix.

    Args:
        spec: A preset name (``cooperative``, ``independent``, ``competitive``) or an explicit
            N x N matrix of finite numbers, row ``i`` being agent ``i``'s weights.
        num_agents: N.

    Returns:
        A float64 array of shape ``(N, N)``.

    Raises:
        ConfigError: Unknown preset, wrong shape or a non-finite entry.
    """
    n = num_agents
    if isinstance(spec, str):
        if spec == "cooperative":
            return np.ones((n, n))
        if spec == "independent":
            return np.eye(n)
        if spec == "competitive":
            return 2.0 * np.eye(n) - np.ones((n, n))
        raise ConfigError(
            f"reward_matrix: unknown preset {spec!r}; use one of {', '.join(COEFFICIENT_PRESETS)} "
            f"or an explicit {n}x{n} list of lists"
        )
    try:
        rows = [list(row) for row in spec]
        matrix = np.array(rows, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"reward_matrix: expected a {n}x{n} list of lists of numbers, got {spec!r}"
        ) from exc
    if matrix.shape != (n, n):
        raise ConfigError(
            f"reward_matrix: expected shape {n}x{n} for {n} agents, got "
            f"{'x'.join(map(str, matrix.shape))}"
        )
    if not np.all(np.isfinite(matrix)):
        raise ConfigError("reward_matrix: every entry must be a finite number (no nan or inf)")
    return matrix


@dataclass(frozen=True)
class SeatSchedule:
    """Which agent sits in which seat at a given training iteration.

    ``order(t)[k]`` is the index of the agent in seat ``k`` at iteration ``t``. The schedule
    moves no weights: it only tells the env the seat order at reset.

    Attributes:
        kind: ``fixed`` (always ``permutations[0]``), ``rotate`` (cyclic shift by one every
            ``period`` iterations; for N = 2 this is CORY's role exchange) or ``permutations``
            (cycle through ``permutations``, one every ``period`` iterations).
        period: Iterations between changes (the paper's ``T_REx``).
        permutations: Seat orders, each a permutation of ``range(N)``.
    """

    kind: ScheduleKind
    period: int
    permutations: tuple[tuple[int, ...], ...]

    def order(self, iteration: int) -> tuple[int, ...]:
        """Seat order at ``iteration`` (0-based)."""
        if iteration < 0:
            raise ValueError(f"iteration must be >= 0, got {iteration}")
        if self.kind == "fixed":
            return self.permutations[0]
        step = iteration // self.period
        if self.kind == "rotate":
            base = self.permutations[0]
            n = len(base)
            return tuple(base[(k + step) % n] for k in range(n))
        return self.permutations[step % len(self.permutations)]


def seat_schedule(
    kind: ScheduleKind,
    num_agents: int,
    *,
    period: int = 1,
    permutations: Sequence[Sequence[int]] | None = None,
) -> SeatSchedule:
    """Build and validate a :class:`SeatSchedule`.

    Raises:
        ConfigError: Unknown kind, period < 1, or a permutation that is not one of ``range(N)``.
    """
    if kind not in ("fixed", "rotate", "permutations"):
        raise ConfigError(
            f"schedule: unknown kind {kind!r}; use one of fixed, rotate, permutations"
        )
    if isinstance(period, bool) or not isinstance(period, int) or period < 1:
        raise ConfigError(f"exchange_every: must be an integer >= 1, got {period!r}")
    identity = tuple(range(num_agents))
    if permutations is None or len(permutations) == 0:
        if kind == "permutations":
            raise ConfigError(
                "permutations: schedule 'permutations' needs a non-empty list of seat orders, "
                f"e.g. [{list(identity)}, {list(reversed(identity))}]"
            )
        perms: tuple[tuple[int, ...], ...] = (identity,)
    else:
        perms = tuple(tuple(int(x) for x in p) for p in permutations)
        for p in perms:
            if sorted(p) != list(identity):
                raise ConfigError(
                    f"permutations: {list(p)} is not a permutation of {list(identity)} "
                    f"(one entry per agent index, each exactly once)"
                )
    return SeatSchedule(kind=kind, period=period, permutations=perms)


@dataclass(frozen=True)
class Setting:
    """A multi-agent game: agents, reward mixing, seat schedule and knowledge transfer.

    Build one with :func:`make_setting`. Immutable; derived values are properties.

    Attributes:
        name: The registered setting it was built from.
        num_agents: N.
        reward_matrix: C, N rows of N weights: agent ``i`` is trained on
            ``sum_j C[i][j] * task_reward_j`` (the config's ``setting.reward_matrix``, resolved).
        schedule: Which agent sits in which seat at each iteration.
        knowledge_transfer: Whether later seats observe earlier responses.
        credit: ``full`` (mix with C) or ``causal`` (C masked by seat order each episode:
            :func:`credit_matrix`).
        description: One line for ``seqmarl list``.
    """

    name: str
    num_agents: int
    reward_matrix: tuple[tuple[float, ...], ...]
    schedule: SeatSchedule
    knowledge_transfer: bool = True
    credit: Credit = "full"
    description: str = field(default="", compare=False)

    @property
    def agent_ids(self) -> tuple[str, ...]:
        """``("llm_0", ..., "llm_{N-1}")``."""
        return agent_ids(self.num_agents)

    @property
    def coef_matrix(self) -> np.ndarray:
        """``reward_matrix`` as a float64 ``(N, N)`` array."""
        return np.array(self.reward_matrix, dtype=np.float64)

    def seat_order(self, iteration: int) -> tuple[int, ...]:
        """Agent index in each seat at ``iteration``."""
        return self.schedule.order(iteration)

    def seat_agents(self, iteration: int) -> tuple[str, ...]:
        """Agent id in each seat at ``iteration``."""
        ids = self.agent_ids
        return tuple(ids[i] for i in self.seat_order(iteration))

    @property
    def mixer(self) -> RewardMixer:
        """The game's one reward mixer (C and the credit rule), built once per setting."""
        mixer = self.__dict__.get("_mixer")
        if mixer is None:
            mixer = RewardMixer(self.coef_matrix, self.agent_ids, self.credit)
            object.__setattr__(self, "_mixer", mixer)
        return mixer

    def mixing_matrix(self, iteration: int) -> np.ndarray:
        """The matrix rewards are mixed with at ``iteration``: C, masked by seat under causal."""
        return self.mixer.matrix(self.seat_agents(iteration))

    def mix(self, task_rewards: np.ndarray, iteration: int = 0) -> np.ndarray:
        """Trained rewards from task rewards: ``R[..., i] = sum_j M[i, j] * r[..., j]``.

        ``M`` is :meth:`mixing_matrix` at ``iteration`` (C itself unless credit is causal);
        the rollout mixes every iteration's rewards through this same :attr:`mixer`.

        Args:
            task_rewards: ``(..., N)`` task reward of each agent, in agent-id order.
            iteration: Training iteration, which decides the seats under causal credit.

        Returns:
            ``(..., N)`` trained reward of each agent.
        """
        return self.mixer.mix(task_rewards, self.seat_agents(iteration))


@dataclass(frozen=True)
class SettingSpec:
    """Defaults of a registered setting; :func:`make_setting` applies overrides to them."""

    description: str
    default_agents: int
    min_agents: int = 1
    max_agents: int | None = None
    reward_matrix: str = "cooperative"
    schedule: ScheduleKind = "rotate"
    exchange_every: int = 5
    knowledge_transfer: bool = True
    credit: Credit = "full"


SETTINGS: Registry[SettingSpec] = Registry("setting")
SETTINGS.register(
    "single",
    SettingSpec(
        description="one agent, no partner: the single-agent RL baseline (PPO in the paper)",
        default_agents=1,
        max_agents=1,
        schedule="fixed",
        knowledge_transfer=False,
    ),
)
SETTINGS.register(
    "cory",
    SettingSpec(
        description="CORY: N>=2 copies act in turn, later seats see earlier answers, "
        "collective reward, seats rotate every 5 iterations",
        default_agents=2,
        min_agents=2,
    ),
)
SETTINGS.register(
    "cory-no-transfer",
    SettingSpec(
        description="CORY ablation: later seats do not see earlier answers",
        default_agents=2,
        min_agents=2,
        knowledge_transfer=False,
    ),
)
SETTINGS.register(
    "cory-no-exchange",
    SettingSpec(
        description="CORY ablation: seats never change (no role exchange)",
        default_agents=2,
        min_agents=2,
        schedule="fixed",
    ),
)
SETTINGS.register(
    "cory-causal",
    SettingSpec(
        description="CORY with causal credit: each agent keeps only the rewards of the seats "
        "at or after its own (the observer drops the pioneer's, fixed before it acts)",
        default_agents=2,
        min_agents=2,
        credit="causal",
    ),
)


def make_setting(
    name: str = "cory",
    *,
    num_agents: int | None = None,
    reward_matrix: str | Sequence[Sequence[float]] | None = None,
    schedule: ScheduleKind | None = None,
    exchange_every: int | None = None,
    permutations: Sequence[Sequence[int]] | None = None,
    knowledge_transfer: bool | None = None,
    credit: Credit | None = None,
) -> Setting:
    """Build a registered setting, with optional overrides.

    Args:
        name: A registered setting (``seqmarl list`` shows them).
        num_agents: N; defaults to the setting's default.
        reward_matrix: Preset name or explicit N x N matrix.
        schedule: ``fixed``, ``rotate`` or ``permutations``.
        exchange_every: Iterations between seat changes (``T_REx``).
        permutations: Seat orders for ``fixed`` (first one used) or ``permutations``.
        knowledge_transfer: Whether later seats observe earlier responses.
        credit: ``full`` or ``causal`` (:func:`credit_matrix`).

    Raises:
        UnknownNameError: ``name`` is not registered.
        ConfigError: An override is invalid for this setting.
    """
    spec = SETTINGS.get(name)
    n = spec.default_agents if num_agents is None else num_agents
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"num_agents: must be an integer >= 1, got {n!r}")
    if n < spec.min_agents or (spec.max_agents is not None and n > spec.max_agents):
        allowed = (
            f"exactly {spec.min_agents}"
            if spec.max_agents == spec.min_agents
            else f">= {spec.min_agents}"
            + (f" and <= {spec.max_agents}" if spec.max_agents is not None else "")
        )
        raise ConfigError(f"num_agents: setting {name!r} needs {allowed} agent(s), got {n}")
    matrix = coefficient_matrix(spec.reward_matrix if reward_matrix is None else reward_matrix, n)
    kind = spec.schedule if schedule is None else schedule
    period = spec.exchange_every if exchange_every is None else exchange_every
    sched = seat_schedule(kind, n, period=period, permutations=permutations)
    transfer = spec.knowledge_transfer if knowledge_transfer is None else bool(knowledge_transfer)
    rule = spec.credit if credit is None else credit
    if rule not in CREDIT_RULES:
        raise ConfigError(
            f"setting.credit: unknown rule {rule!r}; use one of {', '.join(CREDIT_RULES)}"
        )
    return Setting(
        name=name,
        num_agents=n,
        reward_matrix=tuple(tuple(float(x) for x in row) for row in matrix),
        schedule=sched,
        knowledge_transfer=transfer,
        credit=rule,
        description=spec.description,
    )
