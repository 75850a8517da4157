"""Metric sinks: chosen by ``train.sinks``, built-in or a user's ``module:factory``."""

import sys
import textwrap
import types
import typing
import uuid

import pytest
import yaml

from seqmarl.cli import main
from seqmarl.config import load_config
from seqmarl.errors import ConfigError
from seqmarl.run.sinks import SINKS, MetricSinks, planned_sinks, read_jsonl
from seqmarl.train.trainer import Trainer

TINY = [
    "model=embedded:tiny-llama",
    "env=arithmetic-v0",
    "batch_size=2",
    "agents.generation.max_new_tokens=4",
    "algo.params.epochs=1",
    "train.progress=false",
]

SINK_MODULE = """
received = []
calls = []


class ListSink:
    def write(self, record):
        received.append(dict(record))

    def close(self):
        calls.append("close")


def make_sink(out_dir, config):
    calls.append(("made", str(out_dir), config["train"]["sinks"]))
    return ListSink()


def make_nothing(out_dir, config):
    calls.append("made nothing")
"""


@pytest.fixture
def sink_module(tmp_path, monkeypatch):
    """A fresh importable module ``name`` defining ``make_sink`` (a list-backed sink)."""
    name = f"user_sink_{uuid.uuid4().hex[:8]}"
    src = tmp_path / "src"
    src.mkdir()
    (src / f"{name}.py").write_text(textwrap.dedent(SINK_MODULE))
    monkeypatch.syspath_prepend(str(src))
    yield name
    sys.modules.pop(name, None)


def test_a_module_factory_sink_gets_every_iterations_record(tmp_path, sink_module):
    ref = f"{sink_module}:make_sink"
    out = tmp_path / "run"
    cfg = load_config(None, [*TINY, "iterations=2", f"train.sinks=[{ref}]"])
    assert sink_module in cfg.imports  # recorded like an env's module
    Trainer(cfg, out).fit()
    mod = sys.modules[sink_module]
    jsonl = read_jsonl(out / "metrics.jsonl")  # still written, and the same records
    assert [r["iteration"] for r in jsonl] == [0, 1]
    assert [r["iteration"] for r in mod.received] == [0, 1]
    assert mod.received[1]["agent/llm_0/task_reward"] == jsonl[1]["agent/llm_0/task_reward"]
    assert mod.calls == [("made", str(out), [ref]), "close"]
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["sinks"] == [ref] and sink_module in saved["imports"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_factory_that_returns_no_sink_is_one_line_before_anything_is_written(
    tmp_path, sink_module, capsys, overwrite
):
    out = tmp_path / "run"
    if overwrite:  # the folder of an earlier run, started again
        out.mkdir()
        (out / "metrics.jsonl").write_text("")
    ref = f"{sink_module}:make_nothing"
    args = ["train", *TINY, "iterations=1", f"train.sinks=[{ref}]", "--out", str(out)]
    code = main([*args, *(["--overwrite"] if overwrite else [])])
    err = capsys.readouterr().err.strip()
    assert code == 2
    lines = err.splitlines()
    assert lines[-1] == (
        f"seqmarl: error: train.sinks: the factory of sink {ref!r} returned None, not a metric "
        "sink; it must return an object with write(record) and close()"
    )
    assert sys.modules[sink_module].calls == ["made nothing"]
    if overwrite:  # the old run's files were removed first, as --overwrite says
        assert lines[:-1] == [f"seqmarl: --overwrite: removed metrics.jsonl from {out}"]
        assert list(out.iterdir()) == []  # no config.yaml, no metrics.jsonl
    else:
        assert len(lines) == 1
        assert not out.exists()  # the folder the run made is taken back


def test_an_unknown_sink_lists_the_registered_ones():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.sinks=[jsonl, mlfow]"])
    msg = str(info.value)
    assert "train.sinks: unknown sink 'mlfow'. Did you mean 'mlflow'?" in msg
    assert "Registered sinks: jsonl, mlflow, tensorboard, wandb" in msg


def test_old_configs_keep_their_sinks():
    """train.tensorboard / train.wandb_project alone mean what they meant before train.sinks."""
    assert planned_sinks(None) == [
        ("jsonl", True, "train.sinks"),
        ("tensorboard", False, "train.tensorboard"),
    ]
    assert [n for n, *_ in planned_sinks(None, tensorboard=False, wandb_project="p")] == [
        "jsonl",
        "wandb",
    ]
    assert [n for n, *_ in planned_sinks(["mlflow"], wandb_project="p")] == [
        "jsonl",
        "mlflow",
        "wandb",
    ]
    with pytest.raises(ConfigError, match="train.tensorboard: false, but train.sinks names"):
        load_config(None, ["train.sinks=[tensorboard]", "train.tensorboard=false"])


@pytest.mark.parametrize(
    ("override", "package", "field"),
    [
        ("train.sinks=[mlflow]", "mlflow-skinny", "train.sinks"),
        ("train.wandb_project=demo", "wandb", "train.wandb_project"),
    ],
)
def test_a_sinks_missing_package_is_one_line_before_any_model_loads(
    tmp_path, monkeypatch, capsys, override, package, field
):
    for module in ("mlflow", "wandb"):
        monkeypatch.setitem(sys.modules, module, None)  # not installed, as far as import goes
    out = tmp_path / "run"
    code = main(["train", *TINY, "iterations=1", override, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"seqmarl: error: {field}: the ")
    assert f"needs the Python package {package!r}" in err and f"pip install {package}" in err
    assert not out.exists()  # refused before the run wrote anything
    # the Trainer refuses it too, before it builds the agents (no pool is passed)
    with pytest.raises(ConfigError, match=f"pip install {package}"):
        Trainer(load_config(None, [*TINY, override]), out)


class _FakeMlflowClient:
    """The part of ``mlflow.tracking.MlflowClient`` the sink uses, kept in memory."""

    stores: typing.ClassVar[dict] = {}

    def __init__(self, tracking_uri):
        self.store = self.stores.setdefault(tracking_uri, {"experiments": {}, "runs": {}})

    def get_experiment_by_name(self, name):
        exp_id = self.store["experiments"].get(name)
        return None if exp_id is None else types.SimpleNamespace(experiment_id=exp_id)

    def create_experiment(self, name):
        return self.store["experiments"].setdefault(name, str(len(self.store["experiments"])))

    def create_run(self, experiment_id, tags=None):
        run_id = f"run{len(self.store['runs'])}"
        self.store["runs"][run_id] = types.SimpleNamespace(
            info=types.SimpleNamespace(run_id=run_id, status="RUNNING"),
            data=types.SimpleNamespace(params={}, tags=dict(tags or {})),
            history=[],
        )
        return self.store["runs"][run_id]

    def log_batch(self, run_id, metrics=(), params=()):
        run = self.store["runs"][run_id]
        assert len(params) <= 100 and len(metrics) <= 1000  # MLflow's batch limits
        for p in params:
            assert p.key not in run.data.params, "params are logged once"
            run.data.params[p.key] = p.value
        run.history += list(metrics)

    def get_metric_history(self, run_id, key):
        return [m for m in self.store["runs"][run_id].history if m.key == key]

    def set_terminated(self, run_id):
        self.store["runs"][run_id].info.status = "FINISHED"

    def get_run(self, run_id):
        return self.store["runs"][run_id]


@pytest.fixture(params=["fake_mlflow", "mlflow"])
def mlflow_client(request, monkeypatch):
    """The MLflow client class: a fake module put in sys.modules, or the real mlflow.

    mlflow-skinny cannot be installed next to this project's pins (protobuf 7, cachetools 8),
    so the fake (``fake_mlflow``) always runs and the real one only where it imports.
    """
    if request.param == "mlflow":
        mlflow = pytest.importorskip("mlflow.tracking")
        return mlflow.MlflowClient
    fake = types.ModuleType("fake_mlflow")
    entities = types.ModuleType("fake_mlflow.entities")
    entities.Param = lambda key, value: types.SimpleNamespace(key=key, value=value)
    entities.Metric = lambda key, value, timestamp, step: types.SimpleNamespace(
        key=key, value=value, timestamp=timestamp, step=step
    )
    tracking = types.ModuleType("fake_mlflow.tracking")
    tracking.MlflowClient = _FakeMlflowClient
    fake.entities, fake.tracking = entities, tracking
    for name, module in (("", fake), (".entities", entities), (".tracking", tracking)):
        monkeypatch.setitem(sys.modules, "mlflow" + name, module)
    monkeypatch.setattr(_FakeMlflowClient, "stores", {})
    return _FakeMlflowClient


def test_the_mlflow_sink_logs_params_once_and_metrics_by_iteration(
    tmp_path, monkeypatch, mlflow_client
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    config = load_config(None, ["train.sinks=[mlflow]"]).model_dump(mode="json")
    sinks = MetricSinks(tmp_path, sinks=["mlflow"], config=config)
    for it in (0, 1, 2):
        sinks.write({"iteration": it, "reward": 0.5 * it, "done": True, "s": "x"})
    sinks.close()
    ((name, sink),) = sinks.others
    assert name == "mlflow"
    # the default store is inside the run folder
    client = mlflow_client(tracking_uri=(tmp_path / "mlruns").resolve().as_uri())
    run = client.get_run(sink.run_id)
    history = client.get_metric_history(sink.run_id, "reward")
    assert sorted((m.step, m.value) for m in history) == [(0, 0.0), (1, 0.5), (2, 1.0)]
    assert client.get_metric_history(sink.run_id, "s") == []
    assert client.get_metric_history(sink.run_id, "iteration") == []
    assert run.data.params["train.sinks"] == '["mlflow"]'
    assert run.data.params["train.seed"] == "0"
    assert run.info.status == "FINISHED"
    assert [r["iteration"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [0, 1, 2]


def test_mlflow_tracking_uri_comes_from_the_environment(tmp_path, monkeypatch, mlflow_client):
    uri = (tmp_path / "elsewhere").resolve().as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    (tmp_path / "run").mkdir()
    sinks = MetricSinks(tmp_path / "run", sinks=["mlflow"], config={"train": {"seed": 1}})
    sinks.write({"iteration": 4, "reward": 1.0})
    sinks.close()
    ((_, sink),) = sinks.others
    assert [
        m.step for m in mlflow_client(tracking_uri=uri).get_metric_history(sink.run_id, "reward")
    ] == [4]
    assert not (tmp_path / "run" / "mlruns").exists()


def test_builtin_sinks_are_registered_with_their_packages():
    assert {n: SINKS.get(n).package for n in SINKS.names()} == {
        "jsonl": None,
        "mlflow": "mlflow-skinny",
        "tensorboard": "tensorboard",
        "wandb": "wandb",
    }
