"""Run configuration: pydantic models, YAML loading and ``key.sub=value`` overrides.

Everything is validated before any model is loaded: env ids, setting names and algorithm
names against their registries, algorithm parameters against the algorithm's own config, the
setting (agent count, coefficient matrix, schedule) by building it, and the agents' group sizes
against each other. A per-agent ``algos`` entry starts from the shared ``algo.params`` (the
keys its algorithm accepts) under its own; the merged values are stored in the config. Errors
name the field and say what is allowed, in one line (:class:`~seqmarl.errors.ConfigError`).

Besides dotted paths, a few common choices work as top-level overrides (:data:`SHORTCUTS`):
``env=``, ``setting=``, ``num_agents=``, ``algo=``, ``model=``, ``iterations=``,
``batch_size=``, ``seed=``.
"""

from __future__ import annotations

import difflib
import logging
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from seqmarl.agents.config import (
    AgentConfig,
    GenerationConfig,
    LoraSettings,
    VllmSettings,
)
from seqmarl.algos import ALGORITHMS, AlgoConfig
from seqmarl.envs import ENVS
from seqmarl.errors import ConfigError, SeqmarlError
from seqmarl.method.settings import SETTINGS, Setting, make_setting
from seqmarl.run import plugins
from seqmarl.run.sinks import SINKS, sink_spec
from seqmarl.schema import Strict as _Strict

__all__ = [
    "SHORTCUTS",
    "AgentConfig",
    "AlgoSelection",
    "DistributedConfig",
    "GenerationConfig",
    "LeagueConfig",
    "LoraSettings",
    "RunConfig",
    "SettingConfig",
    "TaskConfig",
    "TrainConfig",
    "VllmSettings",
    "apply_overrides",
    "load_config",
    "parse_kwargs",
    "parse_overrides",
    "parse_value",
]

log = logging.getLogger(__name__)

#: Top-level override names and the dotted paths they stand for.
SHORTCUTS = {
    "env": "task.env",
    "setting": "setting.name",
    "num_agents": "setting.num_agents",
    "algo": "algo.name",
    "model": "agents.model",
    "iterations": "train.iterations",
    "batch_size": "train.batch_size",
    "seed": "train.seed",
}


def _registered(registry, name: str) -> str:
    """Validate a name against a registry (``pkg.mod:attr`` names are imported)."""
    try:
        registry.get(name)
    except SeqmarlError as exc:
        raise ValueError(str(exc)) from None
    return name


class TaskConfig(_Strict):
    """Which environment (task) to play."""

    env: str = Field("arithmetic-v0", description="Registered env id (`seqmarl list`).")
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Task constructor arguments (data paths, sizes, ...)."
    )
    rounds: int = Field(
        1, ge=1, description="Times the seats act in order in one episode (1: answer once)."
    )
    max_observation_chars: int | None = Field(
        None,
        ge=1,
        description="Longest observation (characters). A task first leaves out the oldest "
        "visible turns (the prompt stays); then any text still longer keeps its first quarter "
        "and its end, joined by '[...]' (every game path). None: no limit.",
    )
    observation_template: str | None = Field(
        None,
        description="A PettingZoo game's observation as the model reads it: this text with the "
        "env's observation at {observation} (an instruction, or a chat format such as "
        "'<|im_start|>user\\n{observation}<|im_end|>\\n<|im_start|>assistant\\n'). None: "
        "the observation alone.",
    )
    action_prefix: str = Field(
        "",
        description="Put before every response when a PettingZoo game reads it: the start of "
        "the answer that observation_template ends with (e.g. '[' for a bracketed move).",
    )
    max_turns: int = Field(
        256,
        ge=1,
        le=1024,
        description="Env steps per episode of a PettingZoo env (dead steps included) before "
        "the episode is truncated; a task's episodes end by themselves.",
    )

    @field_validator("env")
    @classmethod
    def _env_known(cls, v: str) -> str:
        return _registered(ENVS, v)

    @field_validator("observation_template")
    @classmethod
    def _has_slot(cls, v: str | None) -> str | None:
        if v is not None and "{observation}" not in v:
            raise ValueError("must contain {observation}, where the env's text goes")
        return v


class SettingConfig(_Strict):
    """The multi-agent game; unset fields take the registered setting's defaults."""

    name: str = Field("cory", description="Registered setting (`seqmarl list`).")
    num_agents: int | None = Field(None, ge=1, description="N; None = the setting's default.")
    reward_matrix: (
        Literal["cooperative", "independent", "competitive"] | list[list[float]] | None
    ) = Field(None, description="Coefficient preset or explicit N x N matrix.")
    schedule: Literal["fixed", "rotate", "permutations"] | None = Field(
        None, description="Seat schedule kind."
    )
    exchange_every: int | None = Field(None, ge=1, description="Iterations between seat changes.")
    permutations: list[list[int]] | None = Field(None, description="Seat orders to cycle through.")
    knowledge_transfer: bool | None = Field(None, description="Later seats see earlier answers.")
    credit: Literal["full", "causal"] | None = Field(
        None,
        description="full: mix rewards with C; causal: agent i keeps only C[i][j] r_j of the "
        "agents j seated at or after it (the observer drops the pioneer's reward).",
    )

    _built: tuple[str, Setting] | None = PrivateAttr(None)

    @field_validator("name")
    @classmethod
    def _setting_known(cls, v: str) -> str:
        return _registered(SETTINGS, v)

    @model_validator(mode="after")
    def _buildable(self) -> SettingConfig:
        try:
            self.build()
        except SeqmarlError as exc:
            raise ValueError(str(exc)) from None
        return self

    def build(self) -> Setting:
        """The :class:`~seqmarl.method.settings.Setting` this config describes.

        Built once per distinct value of these fields (a setting is frozen, so every caller
        may hold the same one); a changed field builds it again.
        """
        key = self.model_dump_json()
        if self._built is None or self._built[0] != key:
            setting = make_setting(
                self.name,
                num_agents=self.num_agents,
                reward_matrix=self.reward_matrix,
                schedule=self.schedule,
                exchange_every=self.exchange_every,
                permutations=self.permutations,
                knowledge_transfer=self.knowledge_transfer,
                credit=self.credit,
            )
            self._built = (key, setting)
        return self._built[1]


class AlgoSelection(_Strict):
    """An algorithm and its parameters (validated against the algorithm's config)."""

    name: str = Field("ppo", description="Registered algorithm (`seqmarl list`).")
    params: dict[str, Any] = Field(default_factory=dict, description="Algorithm parameters.")

    @field_validator("name")
    @classmethod
    def _algo_known(cls, v: str) -> str:
        return _registered(ALGORITHMS, v)

    @model_validator(mode="after")
    def _params_valid(self) -> AlgoSelection:
        self.build()
        return self

    def build(self) -> AlgoConfig:
        """The algorithm's validated config object."""
        algo = ALGORITHMS.get(self.name)
        try:
            return algo.make_config(**self.params)
        except ValidationError as exc:
            raise ValueError(_format_errors(exc, algo.config_cls, prefix="params.")) from None


class TrainConfig(_Strict):
    """The training loop."""

    iterations: int = Field(100, ge=1, description="Training iterations.")
    gamma: float = Field(
        1.0, ge=0, le=1, description="Discount over an agent's turns in its reward-to-go."
    )
    batch_size: int = Field(8, ge=1, description="Prompts per iteration.")
    seed: int = Field(0, description="Seed for prompts, sampling and initialisation.")
    out_dir: str = Field("runs/latest", description="Output folder.")
    sample_every: int = Field(5, ge=1, description="Write samples.jsonl every N iterations.")
    samples_logged: int = Field(4, ge=1, description="Prompts written per samples.jsonl entry.")
    checkpoint_every: int = Field(10, ge=1, description="Checkpoint every N iterations.")
    keep_checkpoints: int = Field(2, ge=1, description="How many checkpoints to keep.")
    max_bad_iterations: int = Field(
        3, ge=1, description="Stop after this many consecutive iterations with a non-finite loss."
    )
    mixed_precision: Literal["no", "bf16"] = Field(
        "no",
        description="bf16: the policies' forward passes under torch.autocast in bfloat16 "
        "(where the device supports it); weights and optimizer stay in agents.dtype.",
    )
    sinks: list[str] | None = Field(
        None,
        description="Where metrics go besides metrics.jsonl (always written): registered sinks "
        "(jsonl, tensorboard, wandb, mlflow; `pkg.module:factory` for one's own). None: "
        "TensorBoard when installed (train.tensorboard), wandb when train.wandb_project is set.",
    )
    tensorboard: bool = Field(
        True, description="With train.sinks unset: also log to TensorBoard when it is installed."
    )
    wandb_project: str | None = Field(
        None, description="Log to this wandb project (None: wandb only if train.sinks names it)."
    )
    progress: bool = Field(True, description="Show a progress bar.")
    reset_on_exchange: list[Literal["optimizer", "kl", "score_stats"]] = Field(
        default_factory=list,
        description="State each agent starts afresh at every seat change: optimizer (Adam "
        "moments), kl (the KL controller, back to kl_coef), score_stats (reward_norm's running "
        "moments). Empty keeps everything (seqmarl's default); the released CORY code resets "
        "all three.",
    )

    dynamic_sampling: bool = Field(
        False,
        description="DAPO's dynamic sampling: drop the prompt groups whose K responses all "
        "got the same return for every learning agent (their group-relative advantages are "
        "zero) and play more prompts until the batch holds train.batch_size informative "
        "groups, at most train.max_draws plays an iteration. Needs group_size > 1.",
    )
    max_draws: int = Field(
        4,
        ge=1,
        description="With train.dynamic_sampling: the most plays of train.batch_size prompts "
        "in one iteration; still short after them, the batch is filled with dropped groups "
        "(logged as episodes/informative_groups below 1).",
    )

    @field_validator("sinks")
    @classmethod
    def _sinks_known(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        for name in v:
            _registered(SINKS, name)
            try:
                sink_spec(name)
            except SeqmarlError as exc:
                raise ValueError(str(exc)) from None
        twice = sorted({n for n in v if v.count(n) > 1})
        if twice:
            raise ValueError(f"named more than once: {', '.join(twice)}")
        return v

    @model_validator(mode="after")
    def _tensorboard_agrees(self) -> TrainConfig:
        if self.sinks is not None and not self.tensorboard and "tensorboard" in self.sinks:
            raise ValueError(
                "tensorboard: false, but train.sinks names 'tensorboard': drop one of the two"
            )
        return self


class LeagueConfig(_Strict):
    """Opponents from a league: frozen snapshots, the base model and scripted players.

    The agents in ``opponents`` never learn: each iteration the league draws who plays them
    (one draw per iteration, the same on every process) from the snapshots of ``learner`` and
    the ``fixed`` opponents (docs/games.md).
    """

    opponents: list[str] = Field(
        default_factory=list,
        description="Agent ids played by league opponents (they generate, never learn); "
        "empty: no league.",
    )
    learner: str | None = Field(
        None,
        description="The agent whose frozen snapshots join the league; None: the first agent "
        "not in opponents.",
    )
    snapshot_every: int = Field(
        0,
        ge=0,
        description="Take a frozen snapshot of the learner every K iterations, iteration 0 "
        "(the initial model) included; 0: no snapshots.",
    )
    max_snapshots: int = Field(
        32, ge=1, description="Snapshots kept; beyond this the oldest is dropped."
    )
    fixed: list[str] = Field(
        default_factory=list,
        description="Fixed opponents: base (the initial model), random (a random listed move), "
        "or a scripted player's name or module:factory (snapshots join through "
        "snapshot_every).",
    )
    sampling: Literal["latest", "uniform", "prioritized"] = Field(
        "latest",
        description="latest: the newest snapshot (the last fixed opponent while there is none); "
        "uniform: any opponent alike; prioritized: weight (1 - the learner's win rate)^power "
        "(AlphaStar's PFSP), so the opponents it beats least come most.",
    )
    power: float = Field(1.0, gt=0, description="Exponent of prioritized sampling.")

    @field_validator("fixed")
    @classmethod
    def _fixed_known(cls, v: list[str]) -> list[str]:
        from seqmarl.agents.scripted import SCRIPTED

        for name in v:
            if name.startswith("snapshot:"):
                raise ValueError(
                    f"{name!r} is a snapshot of the learner: snapshots join the league through "
                    "league.snapshot_every; league.fixed takes base, random or a scripted "
                    "player's module:factory"
                )
            if name != "base":
                _registered(SCRIPTED, name)
        return v

    @property
    def enabled(self) -> bool:
        """Whether the run has a league."""
        return bool(self.opponents)


class DistributedConfig(_Strict):
    """How many processes train one run (launched by torchrun: see docs/distributed.md)."""

    strategy: Literal["single", "data_parallel", "fsdp"] = Field(
        "single",
        description="single: one process; data_parallel: every rank holds all agents and plays "
        "its share of the prompts, gradients summed over ranks; fsdp: data_parallel with each "
        "full copy (agents.mode=separate) and the reference sharded over the ranks (FSDP2).",
    )
    timeout_s: int = Field(
        3600,
        ge=10,
        description="How long a rank waits in a collective (e.g. for rank 0 writing a large "
        "checkpoint) before the process group gives up: also how long a rank that stopped "
        "answering holds the others before they exit with one line (docs/distributed.md).",
    )


class RunConfig(_Strict):
    """A whole run: task, setting, agents, algorithm(s) and training loop."""

    imports: list[str] = Field(
        default_factory=list,
        description="Modules imported before the rest is validated (user envs); "
        "`--import` and a `module:attr` env id are added to it.",
    )
    import_files: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Written by seqmarl: the file (`path`) and `sha256` of each module of "
        "`imports` as imported. Loading the run again (`--resume`, `eval`) imports a module "
        "that the command line names (`--import`) from this path when it is found nowhere "
        "else, and warns when the module found differs.",
    )
    task: TaskConfig = Field(default_factory=TaskConfig)
    setting: SettingConfig = Field(default_factory=SettingConfig)
    agents: AgentConfig = Field(default_factory=AgentConfig)
    algo: AlgoSelection = Field(default_factory=AlgoSelection)
    algos: dict[str, AlgoSelection] = Field(
        default_factory=dict,
        description="Per-agent algorithm overrides, keyed by agent id (llm_0, llm_1, ...).",
    )
    train: TrainConfig = Field(default_factory=TrainConfig)
    league: LeagueConfig = Field(default_factory=LeagueConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)

    @model_validator(mode="before")
    @classmethod
    def _import_user_modules(cls, data: Any, info: ValidationInfo) -> Any:
        """Import ``imports`` (and a ``module:attr`` env's module) before ids are checked.

        The validation context's ``run_dir`` (a run folder being loaded again) is not searched
        for modules; ``import_files`` then says where each was found when the run started.
        """
        if isinstance(data, dict):
            task = data.get("task")
            env = task.get("env") if isinstance(task, dict) else None
            run_dir = (info.context or {}).get("run_dir")
            imports = _with_sink_modules(data.get("imports"), data.get("train"))
            own = data.get("imports") if isinstance(data.get("imports"), list) else []
            added = imports[len(own) :] if isinstance(imports, list) else []
            imports = plugins.config_imports(
                imports,
                env,
                recorded=data.get("import_files"),
                run_dir=run_dir,
                resolve_env=ENVS.get,
                origins=dict.fromkeys(added, "train.sinks"),
            )
            data = {**data, "imports": imports}
            if isinstance(imports, list):
                data["import_files"] = plugins.import_records(imports)
        return data

    @model_validator(mode="after")
    def _per_agent(self) -> RunConfig:
        """Check the ``algos`` keys, resolve each entry's params, check the group sizes."""
        ids = self.setting.build().agent_ids
        unknown = sorted(set(self.algos) - set(ids))
        if unknown:
            raise ValueError(
                f"algos: unknown agent id(s) {unknown}; this setting has {', '.join(ids)}"
            )
        own = {a: set(sel.params) for a, sel in self.algos.items()}
        for a, sel in self.algos.items():  # a fresh dict: in place, no re-validation
            self.algos[a] = _inherit(self.algo, sel, a)
        _check_group_sizes({a: self.algo_for(a) for a in ids}, own, self.algo)
        return self

    @model_validator(mode="after")
    def _team(self) -> RunConfig:
        """``agents.per_agent`` names agents of the setting; several bases, where they run."""
        ids = self.setting.build().agent_ids
        per_agent = self.agents.per_agent
        unknown = sorted(set(per_agent) - set(ids))
        if unknown:
            raise ValueError(
                f"agents.per_agent: unknown agent id(s) {unknown}; this setting has "
                f"{', '.join(ids)}"
            )
        bases = {self.agents.for_agent(a).base_key() for a in ids}
        if len(bases) > 1:
            if self.distributed.strategy == "fsdp":
                raise ValueError(
                    f"agents.per_agent: a team of {len(bases)} different base models does not "
                    "run with distributed.strategy=fsdp yet; use data_parallel, or give every "
                    "agent one base"
                )
            league = self.league
            if league.enabled and league.snapshot_every:
                learner = league.learner or next(a for a in ids if a not in league.opponents)
                mine = self.agents.for_agent(learner).base_key()
                for slot in league.opponents:
                    if self.agents.for_agent(slot).base_key() != mine:
                        raise ValueError(
                            f"league.snapshot_every: a snapshot of {learner} plays only on its "
                            f"own base, and {slot} is on another (agents.per_agent); give "
                            f"{slot} {learner}'s model, or set league.snapshot_every=0 to draw "
                            f"from league.fixed ({slot}'s own model is `base`)"
                        )
        return self

    @model_validator(mode="after")
    def _dynamic_sampling_groups(self) -> RunConfig:
        """Dynamic sampling compares the K responses of a prompt: it needs groups."""
        if self.train.dynamic_sampling:
            sizes = {self.algo_for(a).build().group_size for a in self.setting.build().agent_ids}
            if sizes == {1}:
                raise ValueError(
                    "train.dynamic_sampling: drops prompts whose K responses all scored the "
                    "same, so it needs K > 1: set algo.params.group_size (grpo, rloo), or "
                    "train.dynamic_sampling=false"
                )
        return self

    @model_validator(mode="after")
    def _causal_one_round(self) -> RunConfig:
        """Causal credit by seat holds for one round only."""
        if self.setting.build().credit == "causal" and self.task.rounds > 1:
            raise ValueError(
                f"setting.credit: causal credit drops the rewards of earlier seats, which is "
                f"unbiased for one round only (with task.rounds={self.task.rounds} an earlier "
                f"seat's later turns see this agent's answers); use credit=full or task.rounds=1"
            )
        return self

    @model_validator(mode="after")
    def _distributed(self) -> RunConfig:
        """Strategy against the agents' mode and the launcher's world size (``WORLD_SIZE``)."""
        from seqmarl.run.distributed import env_world_size

        strategy, world = self.distributed.strategy, env_world_size()
        ids = self.setting.build().agent_ids
        on_vllm = any(self.agents.for_agent(a).generator == "vllm" for a in ids)
        if strategy == "fsdp" and on_vllm:
            raise ValueError(
                "agents.generator: vllm serves whole weights, and fsdp shards them over the "
                "processes (every push would gather them); use distributed.strategy=data_parallel "
                "or agents.generator=hf"
            )
        if strategy == "fsdp" and self.agents.mode != "separate":
            raise ValueError(
                "distributed.strategy: fsdp shards full copies; it needs agents.mode=separate "
                "(with agents.mode=shared use distributed.strategy=data_parallel)"
            )
        spec = ENVS.get(self.task.env)
        if strategy == "fsdp" and getattr(spec, "aec_factory", None) is not None:
            raise ValueError(
                f"distributed.strategy: fsdp needs every process to generate with every agent "
                f"in lockstep, and the rows of a PettingZoo env ({self.task.env}) drift apart "
                "by rank (an agent may act on one rank and not on another); use "
                "distributed.strategy=data_parallel"
            )
        if strategy == "fsdp" and world == 1:
            raise ValueError(
                "distributed.strategy: fsdp shards over several processes, and this is one: "
                "launch with torchrun --standalone --nproc_per_node N -m seqmarl train ..."
            )
        if strategy == "single" and world > 1:
            raise ValueError(
                f"distributed.strategy: single, but this is one of {world} processes (WORLD_SIZE "
                "from the launcher): set distributed.strategy=data_parallel, or launch one process"
            )
        if strategy != "single" and self.train.batch_size % world:
            raise ValueError(
                f"train.batch_size: {self.train.batch_size} prompts do not split over {world} "
                f"processes; use a multiple of {world}"
            )
        return self

    @model_validator(mode="after")
    def _league_agents(self) -> RunConfig:
        """League opponents and learner are agents of the setting; someone still learns."""
        if not self.league.enabled:
            return self
        ids = self.setting.build().agent_ids
        bad = [a for a in self.league.opponents if a not in ids]
        if bad:
            raise ValueError(
                f"league.opponents: unknown agent id(s) {bad}; this setting has {', '.join(ids)}"
            )
        learners = [a for a in ids if a not in self.league.opponents]
        if not learners:
            raise ValueError(
                "league.opponents: every agent is an opponent and none would learn; leave at "
                f"least one of {', '.join(ids)} out"
            )
        if self.league.learner is not None and self.league.learner not in learners:
            raise ValueError(
                f"league.learner: {self.league.learner!r} must be a learning agent: one of "
                f"{', '.join(learners)}"
            )
        if not self.league.fixed and not self.league.snapshot_every:
            raise ValueError(
                "league: no opponent to draw; set league.snapshot_every=K (snapshots of the "
                "learner) and/or league.fixed=[base] / [random]"
            )
        if self.distributed.strategy == "fsdp":
            raise ValueError(
                "league: a snapshot swaps an agent's weights, which fsdp shards; use "
                "distributed.strategy=data_parallel"
            )
        if self.agents.mode != "shared" and self.league.snapshot_every:
            log.info("league: each snapshot of a separate copy holds a whole model (CPU memory)")
        return self

    @model_validator(mode="after")
    def _zero_sum_reward(self) -> RunConfig:
        """Refuse a matrix that makes a learner's reward identically zero on a zero-sum game."""
        spec = ENVS.get(self.task.env)
        factory = getattr(spec, "aec_factory", None)
        if factory is None:
            return self
        meta = getattr(spec, "metadata", None)
        try:  # a suite's game says it without being built; a user's env is built to ask
            meta = meta if meta is not None else getattr(factory(), "metadata", {})
        except Exception:  # the game's own fault is reported, in one line, when it is played
            return self
        zero_sum = bool(meta.get("zero_sum", False))
        if not zero_sum:
            return self
        setting = self.setting.build()
        coef = setting.mixer.coef
        for i, a in enumerate(setting.agent_ids):
            row = coef[i]
            if a not in self.league.opponents and all(abs(c - row[0]) < 1e-12 for c in row):
                raise ValueError(
                    f"setting.reward_matrix: {self.task.env} is zero-sum (every game's rewards "
                    f"sum to 0), and agent {a}'s row {[float(c) for c in row]} weighs everyone "
                    "alike, so its trained reward is always 0 and it would learn nothing; use "
                    "setting.reward_matrix=independent (each its own) or competitive"
                )
        return self

    def algo_for(self, agent_id: str) -> AlgoSelection:
        """The algorithm selection of one agent (its override, else ``algo``)."""
        return self.algos.get(agent_id, self.algo)


def _with_sink_modules(imports: Any, train: Any) -> Any:
    """``imports`` plus the module of each ``module:factory`` sink of ``train.sinks``.

    Those modules are then imported (and recorded) as the config's other imports are, so a
    run folder loaded again never imports a sink's module from inside itself.
    """
    sinks = train.get("sinks") if isinstance(train, dict) else None
    if imports is None:
        imports = []
    if not isinstance(sinks, list) or not isinstance(imports, list):
        return imports
    names = list(imports)
    for ref in sinks:
        if isinstance(ref, str) and ":" in ref:
            module = ref.partition(":")[0]
            if module and module not in names:
                names.append(module)
    return names


def _inherit(shared: AlgoSelection, entry: AlgoSelection, agent_id: str) -> AlgoSelection:
    """``entry`` with the shared ``algo.params`` its algorithm accepts underneath its own.

    Only the values set in ``algo.params`` are inherited, not the shared algorithm's defaults.
    Idempotent: an entry that already holds the shared values resolves to itself, so a run's
    ``config.yaml`` reloads to an equal config.
    """
    algo = ALGORITHMS.get(entry.name)
    accepted = algo.config_cls.model_fields
    inherited = {k: v for k, v in shared.params.items() if k in accepted}
    dropped = sorted(set(shared.params) - set(accepted))
    if dropped:
        log.info(
            "algos.%s (%s): shared algo.params %s not used (%s has no such parameters)",
            agent_id,
            entry.name,
            ", ".join(dropped),
            entry.name,
        )
    params = {**inherited, **entry.params}
    if params == entry.params:
        return entry
    try:
        algo.make_config(**params)
    except ValidationError as exc:
        taken = sorted(set(inherited) - set(entry.params))
        own = " ".join(f"algos.{agent_id}.params.{k}=..." for k in taken)
        raise ValueError(
            _format_errors(exc, algo.config_cls, prefix=f"algos.{agent_id}.params.")
            + f"; {', '.join(taken)} inherited from algo.params: give this agent its own "
            + f"value with {own}"
        ) from None
    return AlgoSelection(name=entry.name, params=params)


def _check_group_sizes(
    selections: Mapping[str, AlgoSelection], own: Mapping[str, set], shared: AlgoSelection
) -> None:
    """Agents whose algorithms sample groups (group_size > 1) must agree on the group size."""
    sizes = {a: sel.build().group_size for a, sel in selections.items()}
    if len(set(sizes.values()) - {1}) <= 1:
        return

    def source(a: str) -> str:
        if "group_size" in own.get(a, ()):
            return f"algos.{a}.params.group_size"
        if "group_size" in shared.params:
            return "algo.params.group_size"
        return f"{selections[a].name}'s default"

    grouped = [a for a, k in sizes.items() if k > 1]
    listing = ", ".join(f"{a} {sizes[a]} from {source(a)}" for a in grouped)
    own_fields = list(dict.fromkeys(s for a in grouped if (s := source(a)).startswith("algos.")))
    where = own_fields[0] if own_fields else "algo.params.group_size"
    fix = f" and match or remove {', '.join(own_fields)}" if own_fields else ""
    raise ValueError(
        f"{where}: agents ask for different group sizes ({listing}); agents that sample groups "
        "must share one group size: set algo.params.group_size (every agent without its own "
        f"value inherits it){fix}"
    )


# ---------------------------------------------------------------- loading
def parse_value(raw: str) -> Any:
    """An override's value as YAML reads it: ``50`` -> 50, ``false`` -> False, ``[1, 2]``.

    An empty value is ``""``; text that is not valid YAML stays the string it is.
    """
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw


def _split_item(item: str, what: str, example: str) -> tuple[str, str]:
    """``"key=value"`` -> ``("key", "value")``.

    Raises:
        ConfigError: No ``=`` or an empty key (the message names ``what`` and shows ``example``).
    """
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"{what} {item!r}: expected key=value, e.g. {example}")
    return key, raw


def parse_kwargs(items: Iterable[str]) -> dict[str, Any]:
    """``["limit=50", "split=test"]`` -> ``{"limit": 50, "split": "test"}``: flat keyword args.

    Values are read as in :func:`parse_overrides` (:func:`parse_value`), so ``limit=50`` here
    is ``task.kwargs.limit=50`` there; keys stay as given (no dots, no shortcuts).

    Raises:
        ConfigError: An item without ``=`` or with an empty key.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, raw = _split_item(item, "task argument", "limit=50")
        out[key] = parse_value(raw)
    return out


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["a.b=1", "env=x-v0"]`` -> nested dict; values are parsed as YAML scalars/lists.

    Raises:
        ConfigError: An item without ``=`` or with an empty key.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, raw = _split_item(item, "override", "train.iterations=20")
        key = SHORTCUTS.get(key, key)
        value = parse_value(raw)
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {item!r}: {p!r} is already set to a value")
            node = nxt
        node[parts[-1]] = value
    return out


def apply_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overrides`` into a copy of ``base``."""
    out = dict(base)
    for k, v in overrides.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = apply_overrides(out[k], v)
        else:
            out[k] = v
    return out


def load_config(
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    run_dir: str | Path | None = None,
    allow: Iterable[str] = (),
) -> RunConfig:
    """Load a YAML config (or the defaults), apply overrides, and validate.

    Args:
        path: The YAML file (``None``: the defaults).
        overrides: ``key=value`` strings.
        run_dir: The run folder whose ``config.yaml`` this is, when a run is loaded again
            (``--resume``, ``eval``): the config runs no code by itself
            (:func:`seqmarl.run.plugins.run_folder`). Only the modules of ``allow`` are imported
            (from any field: ``imports``, or a ``module:attr`` env, sink, scripted player,
            algorithm or setting), never from inside that folder, and from their recorded
            ``import_files`` paths when found nowhere else.
        allow: The modules the command line names (``--import``).

    Raises:
        ConfigError: Missing file, bad YAML, or an invalid field (named, with what is allowed).
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:  # one line "file:line:col: problem", not PyYAML's diagram
            mark = getattr(exc, "problem_mark", None)
            where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(p)
            problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
            ctx, ctx_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
            if ctx and ctx_mark is not None:
                problem += f" ({ctx} started at line {ctx_mark.line + 1})"
            raise ConfigError(f"config file {where}: not valid YAML: {problem}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(p)!r}: top level must be a mapping of sections")
        data = loaded or {}
    data = apply_overrides(data, parse_overrides(overrides))
    try:
        with plugins.run_folder(run_dir, allow):
            return RunConfig.model_validate(data, context={"run_dir": run_dir})
    except ValidationError as exc:
        raise ConfigError("config error: " + _format_errors(exc, RunConfig)) from None


def _format_errors(exc: ValidationError, root: type[BaseModel], prefix: str = "") -> str:
    """Pydantic errors as ``field: what is wrong (got X)`` joined by ``; ``."""
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err["loc"]]
        where = prefix + ".".join(loc) if loc else prefix.rstrip(".") or "config"
        if err["type"] == "extra_forbidden":
            allowed = _fields_at(root, err["loc"][:-1])
            close = difflib.get_close_matches(loc[-1], allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            extra = (
                f"; shortcuts: {', '.join(SHORTCUTS)}"
                if len(loc) == 1 and root is RunConfig
                else ""
            )
            parts.append(f"{where}: unknown field{hint}; allowed: {', '.join(allowed)}{extra}")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        # A validator's "field: message" about a sub-field joins the location.
        head, colon, rest = msg.partition(": ")
        sub = head.split(".")[0]
        if colon and (sub in _fields_at(root, err["loc"]) or sub == "params"):
            where, msg = f"{where}.{head}" if loc else head, rest
        got = err.get("input")
        shown = "" if isinstance(got, (dict, BaseModel)) else f" (got {got!r})"
        parts.append(f"{where}: {msg}{shown}")
    return "; ".join(parts)


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the (nested) model at ``loc`` (dict-valued fields skip their key)."""
    current: Any = model
    skip_key = False
    for key in loc:
        if skip_key:
            skip_key = False
            continue
        if not _is_model(current) or str(key) not in current.model_fields:
            return []
        annotation = current.model_fields[str(key)].annotation
        if typing.get_origin(annotation) is dict:
            annotation, skip_key = typing.get_args(annotation)[1], True
        current = _model_in(annotation)
    return list(current.model_fields) if _is_model(current) else []


def _is_model(x: Any) -> bool:
    return isinstance(x, type) and issubclass(x, BaseModel)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if _is_model(annotation):
        return annotation
    return next((a for a in typing.get_args(annotation) if _is_model(a)), None)
