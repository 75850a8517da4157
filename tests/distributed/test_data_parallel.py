"""Two gloo processes on CPU against one process: gradients, updates, replicas, files, resume.

Each test launches ``worker.py`` under ``torchrun --standalone --nproc_per_node 2`` with a
timeout, so a hang fails instead of blocking the suite; the gradient and update cases share one
launch (the ``learned`` fixture).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from seqmarl.run.distributed import DistContext
from seqmarl.run.sinks import read_jsonl

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
import worker  # noqa: E402

TIMEOUT = 300


def torchrun(*args, nproc=2, check=True):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={nproc}", *map(str, args),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def ranks(out, n=2):
    return [torch.load(Path(out) / f"rank{r}.pt", weights_only=False) for r in range(n)]


def close(a, b, atol=1e-6):
    if isinstance(a, torch.Tensor):
        assert torch.allclose(a.double(), b.double(), atol=atol, rtol=0), (a - b).abs().max()
    elif isinstance(a, dict):
        assert set(a) == set(b)
        for k in a:
            close(a[k], b[k], atol)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            close(x, y, atol)
    elif isinstance(a, float):
        assert abs(a - b) <= atol * max(1.0, abs(a)), (a, b)
    else:
        assert a == b


def equal(a, b):
    close(a, b, atol=0.0)


GRAD_CASES = [
    (algo, mode) for algo in ("ppo", "reinforce", "rloo", "grpo") for mode in ("shared", "separate")
]
UPDATE_CASES = [("ppo", "shared"), ("rloo", "separate")]


def grad_params(algo):
    params = {"epochs": 1, "grad_accum_steps": 2, "max_grad_norm": None, "lr": 1e-8}
    if algo in ("rloo", "grpo"):
        params["group_size"] = 2
    return params


def update_params(algo):
    # float64: in float32 Adam turns rounding (which the chunking alone changes) into ~3e-6
    params = {"epochs": 2, "minibatch_size": 4, "lr": 1e-2}
    if algo == "rloo":
        params["group_size"] = 2
    return params


#: Every ``worker.learn`` case of the two tests below, played in one torchrun launch
#: (start-up and imports on both ranks cost more than a case): name -> worker.learn's arguments.
LEARN_CASES = {
    **{f"grads-{a}-{m}": [m, a, grad_params(a), "float32"] for a, m in GRAD_CASES},
    **{f"update-{a}-{m}": [m, a, update_params(a), "float64"] for a, m in UPDATE_CASES},
}


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """The launch of all LEARN_CASES; ``learned(name)`` is that case's two ranks' results.

    A case that failed, or was not reached, fails its own test with the case's traceback (or
    the launch's stderr); a launch that hangs fails every test here after TIMEOUT seconds.
    """
    out = tmp_path_factory.mktemp("learn")
    proc = torchrun(HERE / "worker.py", "learn", out, json.dumps(LEARN_CASES), check=False)

    def result(name):
        folder = out / name
        if all((folder / f"rank{r}.pt").exists() for r in range(2)):
            return ranks(folder)
        errors = "\n".join(p.read_text() for p in sorted(folder.glob("error-rank*.txt")))
        reached = "failed" if folder.exists() else "was not reached"
        pytest.fail(
            f"case {name} {reached} (launch exit {proc.returncode}):\n"
            + (errors or proc.stderr[-3000:])
        )

    return result


@pytest.mark.parametrize(("algo", "mode"), GRAD_CASES)
def test_synced_gradients_equal_one_process(learned, algo, mode):
    r0, r1 = learned(f"grads-{algo}-{mode}")
    one = worker.learn(DistContext(), mode, algo, grad_params(algo))
    for agent in worker.AGENTS:
        assert (r0[agent]["width"], r1[agent]["width"]) == (5, 12)  # ragged across ranks
        equal(r0[agent]["grads"], r1[agent]["grads"])  # synchronised: the same on both
        close(r0[agent]["grads"], one[agent]["grads"])  # and equal to one process
        assert any(g.abs().sum() > 0 for g in one[agent]["grads"])


@pytest.mark.parametrize(("algo", "mode"), UPDATE_CASES)
def test_an_update_equals_one_process(learned, algo, mode):
    r0, r1 = learned(f"update-{algo}-{mode}")
    one = worker.learn(DistContext(), mode, algo, update_params(algo), "float64")
    fresh = worker.make_pool(mode, algo, torch.float64)
    for agent in worker.AGENTS:
        before = [p.detach() for p in fresh[agent].parameters()]
        assert any(not torch.equal(a, b) for a, b in zip(before, one[agent]["weights"]))
        equal(r0[agent]["weights"], r1[agent]["weights"])
        close(r0[agent]["weights"], one[agent]["weights"])  # weights after 2 epochs x 2 steps
        close(r0[agent]["algo_state"], one[agent]["algo_state"])  # KL coef, moments, baselines


TRAIN = [
    "model=embedded:tiny-llama",
    "env=arithmetic-v0",
    "batch_size=4",
    "agents.generation.max_new_tokens=6",
    "algo.params.epochs=1",
    "train.checkpoint_every=2",
    "train.progress=false",
    "train.tensorboard=false",
    "distributed.strategy=data_parallel",
]


def test_training_keeps_replicas_equal_and_one_writer(tmp_path):
    run = tmp_path / "run"
    torchrun(HERE / "worker.py", "train", tmp_path, run, "-", *TRAIN, "iterations=3")
    r0, r1 = ranks(tmp_path)
    equal(r0["learners"], r1["learners"])  # weights, Adam moments and steps, algorithm state
    records = read_jsonl(run / "metrics.jsonl")
    assert [r["iteration"] for r in records] == [0, 1, 2]  # one line per iteration
    names = sorted(p.name for p in run.iterdir())
    assert names == [
        "agents", "checkpoints", "config.yaml", "metrics.jsonl", "plots", "samples.jsonl",
        "summary.json",
    ]  # fmt: skip
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "iter_000002",
        "iter_000003",
    ]
    state = torch.load(run / "checkpoints" / "iter_000003" / "state.pt", weights_only=False)
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
    assert not torch.equal(state["ranks"][0]["generator"], state["ranks"][1]["generator"])
    # resuming with another number of processes is refused in one line, naming the number
    from seqmarl.agents.pool import AgentPool
    from seqmarl.config import load_config
    from seqmarl.run.checkpoint import CheckpointError
    from seqmarl.train.trainer import Trainer

    def no_load(*a, **kw):
        raise AssertionError("the model was loaded before the check")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(AgentPool, "from_config", no_load)
        with pytest.raises(CheckpointError, match=r"written by 2 process\(es\), this run has 1"):
            Trainer(load_config(None, [*TRAIN, "iterations=4"]), run, resume=True)


def test_a_resumed_two_process_run_equals_the_uninterrupted_one(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    torchrun(HERE / "worker.py", "train", tmp_path / "a", full, "-", *TRAIN, "iterations=4")
    torchrun(HERE / "worker.py", "train", tmp_path / "b", part, "-", *TRAIN, "iterations=2")
    torchrun(HERE / "worker.py", "train", tmp_path / "c", part, "-", *TRAIN, "iterations=4")

    def strip(records):
        return [
            {k: v for k, v in r.items() if not k.startswith(("time/", "tokens_"))} for r in records
        ]

    assert strip(read_jsonl(part / "metrics.jsonl")) == strip(read_jsonl(full / "metrics.jsonl"))
    equal(ranks(tmp_path / "c")[0]["learners"], ranks(tmp_path / "a")[0]["learners"])


def test_an_agent_without_turns_on_one_rank_learns_on_both(tmp_path):
    # bob (the env's second role) acts on even seeds only; pick a seed whose first iteration
    # gives one rank an even seed and the other none
    from seqmarl.envs.game import seed_prompts
    from tests.fake_games import second_player_acts

    def bob_per_rank(seed):
        prompts = seed_prompts(4, np.random.default_rng(seed))
        seeds = [p.meta["seed"] for p in prompts]
        return [any(second_player_acts(s) for s in seeds[r * 2 : r * 2 + 2]) for r in range(2)]

    seed = next(s for s in range(100) if sorted(bob_per_rank(s)) == [False, True])
    run = tmp_path / "run"
    env = f"env={worker.EVEN_SEED_ENV}"
    overrides = [*TRAIN[:2], env, *TRAIN[2:], "iterations=2", f"train.seed={seed}"]
    overrides.remove("env=arithmetic-v0")
    torchrun(HERE / "worker.py", "train", tmp_path, run, "-", *overrides)
    r0, r1 = ranks(tmp_path)
    equal(r0["learners"], r1["learners"])  # the same update on both, no hang
    first = read_jsonl(run / "metrics.jsonl")[0]
    for agent in worker.AGENTS:  # both agents updated at iteration 0 (metrics of the update)
        assert f"agent/{agent}/kl" in first and f"agent/{agent}/loss_policy" in first, first


def test_a_nan_on_one_rank_skips_the_step_on_both(tmp_path):
    run = tmp_path / "run"
    torchrun(
        HERE / "worker.py", "train", tmp_path, run, "1", *TRAIN, "iterations=3", "algo=reinforce"
    )
    r0, r1 = ranks(tmp_path)
    assert r0["skipped"]["llm_0"] == r1["skipped"]["llm_0"] == 1
    equal(r0["learners"], r1["learners"])
    records = read_jsonl(run / "metrics.jsonl")
    assert records[1]["agent/llm_0/skipped_steps"] == 1


def test_an_fsdp_sharded_update_equals_the_unsharded_one(tmp_path):
    params = {"epochs": 2, "minibatch_size": 4, "lr": 1e-2, "grad_accum_steps": 2}
    case = {"fsdp": ["fsdp", "ppo", params, "float64"]}
    torchrun(HERE / "worker.py", "learn", tmp_path, json.dumps(case))
    r0, r1 = ranks(tmp_path / "fsdp")
    one = worker.learn(DistContext(), "separate", "ppo", params, "float64")
    for agent in worker.AGENTS:
        equal(r0[agent]["weights"], r1[agent]["weights"])
        close(r0[agent]["weights"], one[agent]["weights"])
        close(r0[agent]["algo_state"], one[agent]["algo_state"])


def test_fsdp_training_checkpoints_and_resumes_exactly(tmp_path):
    fsdp = [*TRAIN[:-1], "distributed.strategy=fsdp", "agents.mode=separate"]
    full, part = tmp_path / "full", tmp_path / "part"
    torchrun(HERE / "worker.py", "train", tmp_path / "a", full, "-", *fsdp, "iterations=3")
    torchrun(HERE / "worker.py", "train", tmp_path / "b", part, "-", *fsdp, "iterations=2")
    torchrun(HERE / "worker.py", "train", tmp_path / "c", part, "-", *fsdp, "iterations=3")
    strip = [
        {k: v for k, v in r.items() if not k.startswith(("time/", "tokens_"))}
        for r in read_jsonl(part / "metrics.jsonl")
    ]
    assert strip == [
        {k: v for k, v in r.items() if not k.startswith(("time/", "tokens_"))}
        for r in read_jsonl(full / "metrics.jsonl")
    ]
    saved = torch.load(full / "checkpoints" / "iter_000003" / "state.pt", weights_only=False)
    weights = saved["learners"]["llm_0"]["agent"]
    assert any(k.endswith("embed_tokens.weight") for k in weights)  # whole, not one shard
    # the final agent folder is whole too: transformers loads it alone, with the trained weights
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    agent_dir = full / "agents" / "llm_0"
    assert json.loads((agent_dir / "config.json").read_text())["model_type"] == "llama"
    loaded = AutoModelForCausalLM.from_pretrained(agent_dir).state_dict()
    policy = {k.removeprefix("policy."): v for k, v in weights.items() if k.startswith("policy.")}
    assert loaded.keys() == policy.keys()
    equal(loaded, policy)
    head = {k.removeprefix("value_head."): v for k, v in weights.items() if "value_head." in k}
    assert head  # ppo: the value head is saved beside the model
    equal(load_file(str(agent_dir / "value_head.safetensors")), head)


def test_the_policy_contract_holds_for_fsdp_sharded_copies(monkeypatch):
    """tests/agents/test_policy_contract.py on two ranks, over the kinds that need them."""
    monkeypatch.setenv("SEQMARL_CONTRACT_RANKS", "2")
    contract = "tests/agents/test_policy_contract.py"
    proc = torchrun("-m", "pytest", "-q", "-p", "no:cacheprovider", contract, "-k", "fsdp")
    counts = re.findall(r"^(\d+) passed", proc.stdout, re.M)
    assert len(counts) == 2 and all(int(n) >= 20 for n in counts), proc.stdout[-2000:]
    assert "skipped" not in proc.stdout and "failed" not in proc.stdout


def test_fsdp_refuses_a_pettingzoo_game_whose_rows_drift_by_rank(monkeypatch):
    """An agent that acts on one rank only would leave fsdp's collectives waiting: refused."""
    from seqmarl.config import load_config
    from seqmarl.envs import ENVS, register_pettingzoo
    from seqmarl.errors import ConfigError
    from tests.fake_games import EvenSeedGame

    env_id = worker.EVEN_SEED_ENV
    monkeypatch.setenv("WORLD_SIZE", "2")
    register_pettingzoo(env_id, EvenSeedGame, overwrite=True)
    try:
        tr = [x for x in TRAIN if x not in ("env=arithmetic-v0",)]
        over = [*tr, f"env={env_id}", "distributed.strategy=fsdp", "agents.mode=separate"]
        with pytest.raises(ConfigError, match="fsdp needs every process to generate") as info:
            load_config(None, over)
        assert "use distributed.strategy=data_parallel" in str(info.value)
        load_config(None, [*tr, f"env={env_id}"])  # data_parallel takes it
    finally:
        ENVS._items.pop(env_id, None)


def test_dynamic_sampling_draws_in_step_on_both_ranks(tmp_path):
    # each rank keeps its own informative groups; they draw as long as either is short
    run = tmp_path / "run"
    overrides = [o for o in TRAIN if o != "env=arithmetic-v0"]
    overrides += [
        "env=tests.test_dynamic_sampling:HalfFlat",
        "algo=grpo",
        "algo.params.group_size=2",
        "train.dynamic_sampling=true",
        "iterations=2",
    ]
    torchrun(HERE / "worker.py", "train", tmp_path, run, "-", *overrides)
    r0, r1 = ranks(tmp_path)
    equal(r0["learners"], r1["learners"])  # one update on both, no hang
    records = read_jsonl(run / "metrics.jsonl")
    assert [r["iteration"] for r in records] == [0, 1]
    assert all(1 <= r["episodes/draws"] <= 4 for r in records)
    assert any(r["episodes/dropped_groups"] > 0 for r in records)


def test_a_team_of_two_bases_trains_in_data_parallel(tmp_path):
    # llm_1 on a tiny GPT-2, llm_0 on the tiny llama: two groups, each agent's gradients
    # averaged over both ranks
    run = tmp_path / "run"
    overrides = [*TRAIN, "agents.per_agent.llm_1.model=embedded:tiny-gpt2", "iterations=2"]
    torchrun(HERE / "worker.py", "train", tmp_path, run, "-", *overrides)
    r0, r1 = ranks(tmp_path)
    equal(r0["learners"], r1["learners"])
    assert set(r0["learners"]) == {"llm_0", "llm_1"}
    records = read_jsonl(run / "metrics.jsonl")
    assert all(f"agent/{a}/loss_policy" in records[-1] for a in ("llm_0", "llm_1"))
