"""Where metrics go: ``metrics.jsonl`` always, and the sinks ``train.sinks`` names.

``metrics.jsonl`` holds one JSON object per iteration and is the source of truth for plots,
resume and comparisons. On resume it is truncated back to the checkpoint's iteration, so a
resumed run's file equals an uninterrupted run's.

Other sinks come from :data:`SINKS`, a registry of factories like the envs' (built in:
``jsonl``, ``tensorboard``, ``wandb``, ``mlflow``). A factory is called once per run with the
run folder and the resolved config (a plain dict) and returns a :class:`MetricSink`. A sink of
one's own is named ``"pkg.module:factory"`` in ``train.sinks`` (the module is imported, and
recorded in the run's ``imports``), registered with :func:`register_sink` by a module the
config imports, or registered by an installed distribution's entry point in the
``seqmarl.run.sinks`` group. A sink whose Python package is missing is refused with one line
naming the package (:func:`check_sinks`) when the Trainer is built, before any model loads.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from seqmarl.errors import ConfigError
from seqmarl.run.registry import Registry

__all__ = [
    "SINKS",
    "JsonlSink",
    "MetricSink",
    "MetricSinks",
    "SinkSpec",
    "check_sinks",
    "planned_sinks",
    "read_jsonl",
    "register_sink",
    "sink_spec",
    "truncate_jsonl",
]

log = logging.getLogger(__name__)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


class JsonlSink:
    """Append one JSON object per line, each line whole or not at all.

    Each line goes to the file in one write; a write that fails part-way (a full disk) is cut
    off again, so the file ends with the last complete line and the error (an ``OSError``
    naming the file) goes on to the caller.
    """

    def __init__(self, path: Path):
        self.path = path
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        self._fd: int | None = os.open(path, flags, 0o644)

    def write(self, record: Mapping[str, Any]) -> None:
        """Append ``record``."""
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        data = (json.dumps({k: _clean(v) for k, v in record.items()}) + "\n").encode("utf-8")
        start = os.fstat(self._fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)  # needs no space: drop the torn line
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None

    def close(self) -> None:
        """Close the file."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All complete records of a jsonl file (a torn last line is ignored)."""
    return [r for _, r in _records(path)]


def _records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(end offset, record)`` of each complete line, up to the first torn one."""
    if not path.exists():
        return []
    out = []
    end = 0
    data = path.read_bytes()
    for line in data.split(b"\n"):
        end = min(end + len(line) + 1, len(data))
        if not line.strip():
            continue
        try:
            out.append((end, json.loads(line)))
        except (json.JSONDecodeError, UnicodeDecodeError):
            break
    return out


def truncate_jsonl(path: Path, last_iteration: int) -> None:
    """Keep one record per iteration below ``last_iteration`` (resume from a checkpoint).

    Of an iteration logged more than once (two runs wrote the file), the last complete record
    is kept; records come out in iteration order. When the kept records are the file's first
    lines (one writer, the usual case) the file is cut after them, which needs no disk space;
    otherwise it is rewritten atomically (a temporary file, fsynced, renamed; removed again
    if that fails).
    """
    from seqmarl.run.diskfull import write_atomic

    found = _records(path)
    last: dict[int, dict[str, Any]] = {}
    for _, r in found:
        it = r.get("iteration", -1)
        if isinstance(it, int) and it < last_iteration:
            last[it] = r
    keep = [last[i] for i in sorted(last)]
    head = [r for _, r in found[: len(keep)]]
    end = found[len(keep) - 1][0] if keep else 0
    in_place = len(head) == len(keep) and all(r is k for r, k in zip(head, keep, strict=True))
    if in_place and _at_line_end(path, end):
        if end != path.stat().st_size:
            os.truncate(path, end)
        return
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in keep))


def _at_line_end(path: Path, end: int) -> bool:
    if end == 0:
        return True
    with path.open("rb") as fh:
        fh.seek(end - 1)
        return fh.read(1) == b"\n"


@runtime_checkable
class MetricSink(Protocol):
    """Something that takes one iteration's metrics at a time.

    ``write`` gets every iteration's record (``iteration`` plus the metrics, as in
    ``metrics.jsonl``; floats may be NaN or infinite) on rank 0, in order; ``close`` is called
    once when the run ends, however it ends.
    """

    def write(self, record: Mapping[str, Any]) -> None:
        """Take one iteration's record."""

    def close(self) -> None:
        """Flush and release what the sink holds."""


#: What a sink factory is called with: the run folder and the resolved config (a plain dict,
#: as in ``config.yaml``); it returns the sink.
SinkFactory = Callable[[Path, Mapping[str, Any]], MetricSink]


@dataclass(frozen=True)
class SinkSpec:
    """A registered sink: its factory and the package it needs (checked before a run starts).

    Attributes:
        name: The name in ``train.sinks``.
        factory: ``factory(out_dir, config) -> MetricSink``.
        module: A module the sink imports (``"wandb"``); ``None``: it needs nothing.
        package: The pip package that provides ``module`` (``"mlflow-skinny"``).
        description: One line for the docs and error messages.
    """

    name: str
    factory: SinkFactory
    module: str | None = None
    package: str | None = None
    description: str = ""

    def missing(self) -> str | None:
        """Why the sink's module does not import here (``None``: it does, or needs none)."""
        if self.module is None:
            return None
        try:
            importlib.import_module(self.module)
        except ImportError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None


SINKS: Registry[SinkSpec] = Registry("sink", entry_point_group="seqmarl.sinks")


def register_sink(
    name: str,
    factory: SinkFactory,
    *,
    module: str | None = None,
    package: str | None = None,
    description: str = "",
    **kw: Any,
) -> SinkSpec:
    """Register a metric sink factory under ``name`` (for ``train.sinks``).

    Args:
        name: The name used in ``train.sinks``.
        factory: Called once per run as ``factory(out_dir, config)``; returns a
            :class:`MetricSink`.
        module: A module the sink needs; a run naming the sink is refused before it starts
            when that module does not import.
        package: The pip package providing ``module``, named in that refusal (default:
            ``module``).
        description: One line.
        **kw: Passed to :meth:`Registry.register` (``overwrite=True``).

    Raises:
        ValueError: ``name`` is already registered.
    """
    spec = SinkSpec(name, factory, module, package or module, description)
    return SINKS.register(name, spec, **kw)


def sink_spec(name: str) -> SinkSpec:
    """The :class:`SinkSpec` for a name of ``train.sinks`` (``"pkg.mod:factory"`` included).

    Raises:
        UnknownNameError: Not registered; the message lists the registered sinks.
        PluginError: A ``"pkg.mod:factory"`` that does not import.
        ConfigError: The name resolves to something that is not callable.
    """
    spec = SINKS.get(name)
    if isinstance(spec, SinkSpec):
        return spec
    if not callable(spec):
        raise ConfigError(
            f"sink {name!r} is a {type(spec).__name__}, not a factory: it must be callable as "
            "factory(out_dir, config) and return an object with write(record) and close()"
        )
    return SinkSpec(name, spec)


def planned_sinks(
    sinks: Iterable[str] | None,
    *,
    tensorboard: bool = True,
    wandb_project: str | None = None,
) -> list[tuple[str, bool, str]]:
    """The sinks a run writes to: ``(name, required, why)`` in order, ``jsonl`` first.

    ``sinks`` is ``train.sinks``; ``None`` keeps the behaviour from before it existed:
    TensorBoard when installed (unless ``tensorboard`` is false) and wandb when
    ``wandb_project`` is set. ``required`` is false only for that implicit TensorBoard, which
    is skipped when its package is missing; ``why`` is the config field that asked for it.
    """
    plan = [("jsonl", True, "train.sinks")]
    if sinks is None:
        if tensorboard:
            plan.append(("tensorboard", False, "train.tensorboard"))
    else:
        plan += [(n, True, "train.sinks") for n in sinks if n != "jsonl"]
    if wandb_project and all(n != "wandb" for n, _, _ in plan):
        plan.append(("wandb", True, "train.wandb_project"))
    return plan


def check_sinks(train: Any) -> None:
    """Refuse a run whose sinks cannot start here: called before any model loads.

    Args:
        train: The run's :class:`~seqmarl.config.TrainConfig`.

    Raises:
        ConfigError: A sink's package is not installed; one line naming the sink, the field
            that asked for it and the ``pip install`` that fixes it.
    """
    for name, required, why in _plan(train):
        spec = sink_spec(name)
        problem = spec.missing() if required else None
        if problem:
            drop = "unset it" if why == "train.wandb_project" else f"take {name!r} out of it"
            raise ConfigError(
                f"{why}: the {name!r} metric sink needs the Python package {spec.package!r}, "
                f"which does not import here ({problem}); install it (pip install "
                f"{spec.package}) or {drop}"
            )


def _plan(train: Any) -> list[tuple[str, bool, str]]:
    return planned_sinks(
        getattr(train, "sinks", None),
        tensorboard=getattr(train, "tensorboard", True),
        wandb_project=getattr(train, "wandb_project", None),
    )


def _scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """A record's numbers other than ``iteration`` (what the dashboards plot)."""
    return {
        k: v
        for k, v in record.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "iteration"
    }


class _TensorBoardSink:
    def __init__(self, out_dir: Path, config: Mapping[str, Any]):
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(out_dir / "tensorboard"))

    def write(self, record: Mapping[str, Any]) -> None:
        step = int(record["iteration"])
        for k, v in _scalars(record).items():
            self._writer.add_scalar(k, v, step)

    def close(self) -> None:
        self._writer.close()


class _WandbSink:
    def __init__(self, out_dir: Path, config: Mapping[str, Any]):
        import wandb

        project = (config.get("train") or {}).get("wandb_project")
        self._run = wandb.init(project=project, config=dict(config), dir=out_dir)

    def write(self, record: Mapping[str, Any]) -> None:
        self._run.log(_scalars(record), step=int(record["iteration"]))

    def close(self) -> None:
        self._run.finish()


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"train": {"seed": 0}}`` -> ``{"train.seed": "0"}`` (lists and None as text)."""
    out: dict[str, str] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if not isinstance(v, str) else v
    return out


class _MlflowSink:
    """One MLflow run per training (or resumed) process.

    The flattened config is logged once as params, each record's numbers as metrics at
    ``step=iteration``.

    The tracking URI is ``MLFLOW_TRACKING_URI`` when set, else a file store in
    ``<out_dir>/mlruns``; the experiment is ``MLFLOW_EXPERIMENT_NAME`` or ``seqmarl``; the run
    is named after the run folder.
    """

    #: Values longer than this are cut (MLflow's smallest param length limit).
    MAX_PARAM = 500

    def __init__(self, out_dir: Path, config: Mapping[str, Any]):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI") or (out_dir / "mlruns").resolve().as_uri()
        self.client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "seqmarl"
        exp = self.client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(name)
        run = self.client.create_run(
            exp_id, tags={"mlflow.runName": out_dir.resolve().name, "seqmarl.out_dir": str(out_dir)}
        )
        self.run_id = run.info.run_id
        params = [Param(k, v[: self.MAX_PARAM]) for k, v in flatten(config).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def write(self, record: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        step, now = int(record["iteration"]), int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in _scalars(record).items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def _jsonl_factory(out_dir: Path, config: Mapping[str, Any]) -> MetricSink:
    return JsonlSink(out_dir / "metrics.jsonl")


register_sink(
    "jsonl",
    _jsonl_factory,
    description="metrics.jsonl, one object per iteration (always on: plots and resume read it)",
)
register_sink(
    "tensorboard",
    _TensorBoardSink,
    module="torch.utils.tensorboard",
    package="tensorboard",
    description="TensorBoard event files in <out>/tensorboard",
)
register_sink(
    "wandb",
    _WandbSink,
    module="wandb",
    description="a Weights & Biases run (project: train.wandb_project)",
)
register_sink(
    "mlflow",
    _MlflowSink,
    module="mlflow",
    package="mlflow-skinny",
    description="an MLflow run: config as params, metrics per iteration "
    "(MLFLOW_TRACKING_URI, default <out>/mlruns)",
)


class MetricSinks:
    """metrics.jsonl plus the other sinks a run asks for (:func:`planned_sinks`).

    Args:
        out_dir: Run folder.
        sinks: ``train.sinks`` (``None``: TensorBoard when installed, wandb when
            ``wandb_project`` is set).
        tensorboard: With ``sinks=None``, write TensorBoard logs if the package is installed.
        wandb_project: Log to this wandb project (``None`` = off unless ``sinks`` names wandb).
        config: The resolved config, given to every sink factory.
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        sinks: Iterable[str] | None = None,
        tensorboard: bool = True,
        wandb_project: str | None = None,
        config: Mapping[str, Any] | None = None,
    ):
        config = dict(config or {})
        self.jsonl: JsonlSink | None = None
        self.others: list[tuple[str, MetricSink]] = []
        try:  # the other sinks first: one that fails leaves no metrics.jsonl behind
            for name, required, why in planned_sinks(
                sinks, tensorboard=tensorboard, wandb_project=wandb_project
            ):
                if name == "jsonl":
                    continue
                spec = sink_spec(name)
                if not required and spec.missing():
                    log.debug("%s not installed; not logging to it", spec.package)
                    continue
                sink = spec.factory(out_dir, config)
                if not isinstance(sink, MetricSink):
                    got = "None" if sink is None else f"a {type(sink).__name__}"
                    raise ConfigError(
                        f"{why}: the factory of sink {name!r} returned {got}, not a metric "
                        "sink; it must return an object with write(record) and close()"
                    )
                self.others.append((name, sink))
            self.jsonl = JsonlSink(out_dir / "metrics.jsonl")
        except BaseException:
            self.close()
            raise

    def write(self, record: Mapping[str, Any]) -> None:
        """Send one iteration's metrics everywhere (metrics.jsonl first)."""
        assert self.jsonl is not None  # set by __init__, or it raised
        self.jsonl.write(record)
        for _, sink in self.others:
            sink.write(record)

    def close(self) -> None:
        """Flush and close every sink (metrics.jsonl first)."""
        if self.jsonl is not None:
            self.jsonl.close()
        for _, sink in self.others:
            sink.close()
