"""Data-parallel scaling: samples/s of one seqmarl training run at world size 1, 2, ...

Every run trains the same global batch (``--batch-size`` prompts x group size K per iteration,
split over the ranks), from the same seed, with the same config, in its own process tree and
temporary folder:

* ``single``: one process, ``python -m seqmarl train`` (``distributed.strategy=single``);
* ``dp x N``: ``python -m torch.distributed.run --standalone --nproc_per_node N -m seqmarl
  train ... distributed.strategy=data_parallel`` for each N of ``--world-sizes`` (N = 1 too:
  the row against ``single`` is the data-parallel machinery's own cost).

Samples/s = completions trained on per second, steady state: batch_size x K x num_agents
completions per iteration over the mean ``time/iteration`` in rank 0's ``metrics.jsonl``
(rollout + update, collectives included; model loading, logging and checkpoints excluded)
after the first ``--warmup`` iterations. Speed-up is against ``dp x 1`` of the same
invocation, efficiency = speed-up / world size; ``vs single`` is against the one-process run.
Generation runs ``--max-new-tokens`` tokens without stopping at EOS, so every run generates
the same tokens whatever it samples.

Each rank runs ``--threads`` threads (``OMP_NUM_THREADS``, default 1). On CPU, keep
world size x threads at or below the idle cores: oversubscribed ranks measure the contention,
not the scaling. With CUDA each rank takes ``cuda:LOCAL_RANK`` (``agents.device=auto``), so
the largest world size must not exceed the visible GPUs.

    python benchmarks/scaling.py                                  # tiny model, world 1 and 2
    python benchmarks/scaling.py --models tiny --iterations 12 --warmup 2
    python benchmarks/scaling.py --models smollm2 --iterations 6 --warmup 1 --batch-size 8
    python benchmarks/scaling.py --model HuggingFaceTB/SmolLM2-360M-Instruct --world-sizes 1 2 4
    python benchmarks/scaling.py --models tiny --mode separate --algo rloo --group-size 4 \\
        --json scaling.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

MODELS = {"tiny": "embedded:tiny-llama", "smollm2": "embedded:smollm2-135m-instruct"}
DEFAULT_ENV = {"tiny": "arithmetic-v0"}  # anything else: sentiment-v0


def overrides(ns, model: str, source: str) -> list[str]:
    """The ``key=value`` overrides every run of ``model`` shares (the strategy is added later)."""
    out = [
        f"model={source}",
        f"env={ns.env or DEFAULT_ENV.get(model, 'sentiment-v0')}",
        f"setting={ns.setting}",
        f"algo={ns.algo}",
        f"agents.mode={ns.mode}",
        f"batch_size={ns.batch_size}",
        f"iterations={ns.iterations}",
        f"agents.generation.max_new_tokens={ns.max_new_tokens}",
        "agents.generation.stop_at_eos=false",
        "train.seed=0",
        "train.progress=false",
        "train.tensorboard=false",
        f"train.sample_every={ns.iterations + 1}",
        f"train.checkpoint_every={ns.iterations + 1}",
    ]
    if ns.num_agents is not None:
        out.append(f"num_agents={ns.num_agents}")
    if ns.group_size is not None:
        out.append(f"algo.params.group_size={ns.group_size}")
    return out


def completions_per_iteration(ns, shared: list[str]) -> tuple[int, int, int]:
    """(group size K, number of agents, batch x K x agents) as the run's config resolves them."""
    from seqmarl.config import load_config

    cfg = load_config(None, shared)
    ids = cfg.setting.build().agent_ids
    k = cfg.algo_for(ids[0]).build().group_size
    return k, len(ids), ns.batch_size * k * len(ids)


def child_env(ns) -> dict[str, str]:
    """The environment of every launched process: repo on the path, ``--threads`` threads."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(ns.threads)
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR"):
        env.pop(var, None)  # a launcher around this script must not leak into the runs
    env.pop("MASTER_PORT", None)
    return env


def prepare(source: str, ns) -> str | None:
    """Load the model once in a throwaway process: the embedded SmolLM2 is converted and a hub
    model downloaded here, not by N ranks at once. Returns an error text, or None."""
    if source.startswith("embedded:tiny-"):
        return None
    code = (
        "import sys\n"
        "from seqmarl.agents.loading import load_model_and_tokenizer\n"
        "from seqmarl.errors import SeqmarlError\n"
        "try:\n"
        "    load_model_and_tokenizer(sys.argv[1])\n"
        "except SeqmarlError as exc:\n"
        "    sys.exit(f'seqmarl: error: {exc}')\n"
    )
    return run([sys.executable, "-c", code, source], str(ROOT), ns)


def descendants(pid: int) -> list[int]:
    """Ids of every process below ``pid`` (from /proc; none where there is no /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def run(cmd: list[str], cwd: str, ns) -> str | None:
    """Run ``cmd``, killed with all its processes after ``--timeout`` seconds (torchrun starts
    each rank in a session of its own, so its process group is not enough). Returns the error
    text (exit status or timeout, and stderr), or None."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=child_env(ns),
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=ns.timeout)
            error = None if proc.returncode == 0 else f"exit status {proc.returncode}"
        except subprocess.TimeoutExpired:
            for pid in [proc.pid, *descendants(proc.pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()
            error = f"timed out after {ns.timeout} s (killed)"
        err.seek(0)
        return None if error is None else f"{err.read()}\n{error}"


def error_tail(error: str, n: int) -> str:
    """The last ``n`` lines of a failure, after the ranks' own ``seqmarl: error:`` lines
    (torchrun's summary at the end names only the failed rank)."""
    lines = [x for x in error.strip().splitlines() if x.strip()]
    tail = lines[-n:]
    own = [x for x in dict.fromkeys(lines) if "seqmarl: error:" in x and x not in tail]
    return "\n".join([*own, *tail])


def launch(label: str, world: int | None, shared: list[str], ns) -> dict:
    """One training run (``world`` None = the one-process ``single`` path); its timings."""
    with tempfile.TemporaryDirectory(prefix="seqmarl-scaling-") as tmp:
        out_dir = Path(tmp) / "run"
        if world is None:
            cmd = [sys.executable, "-m", "seqmarl", "train"]
            strategy = "single"
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
            cmd += ["--nproc_per_node", str(world), "-m", "seqmarl", "train"]
            strategy = "data_parallel"
        cmd += [*shared, f"distributed.strategy={strategy}", "--out", str(out_dir)]
        t0 = time.perf_counter()
        error = run(cmd, tmp, ns)
        wall = time.perf_counter() - t0
        metrics = out_dir / "metrics.jsonl"
        records = []
        if error is None:
            if metrics.is_file():
                lines = metrics.read_text().splitlines()
                records = [json.loads(x) for x in lines if x.strip()]
            if len(records) < ns.iterations:
                error = f"metrics.jsonl has {len(records)} of {ns.iterations} iterations"
    row = {"run": label, "world_size": world or 1, "strategy": strategy, "wall_s": wall}
    if error is not None:
        tail = error_tail(error, ns.tail)
        print(f"  {label}: FAILED ({' '.join(cmd)})\n{tail}", flush=True)
        return {**row, "error": tail}
    steady = records[ns.warmup :]
    times = [r["time/iteration"] for r in steady]
    row["s_per_it"] = statistics.mean(times)
    row["s_per_it_stdev"] = statistics.stdev(times) if len(times) > 1 else 0.0
    row["generate_s"] = statistics.mean(r["time/generate"] for r in steady)
    row["update_s"] = statistics.mean(r["time/update"] for r in steady)
    print(f"  {label}: {row['s_per_it']:.3f} s/it (wall {wall:.0f} s)", flush=True)
    return row


def ratio(x: float | None, fmt: str = ".2f", suffix: str = "x") -> str:
    return "n/a" if x is None else f"{x:{fmt}}{suffix}"


def report(model: str, rows: list[dict], per_it: int) -> None:
    """Add samples/s, speed-up, efficiency and vs-single to ``rows``; print them as a table."""
    ok = [r for r in rows if "error" not in r]
    base = next((r for r in ok if r["run"] == "dp x 1"), None)
    single = next((r for r in ok if r["run"] == "single"), None)
    for r in ok:
        r["samples_per_s"] = per_it / r["s_per_it"]
        r["speed_up"] = base["s_per_it"] / r["s_per_it"] if base else None
        r["efficiency"] = r["speed_up"] / r["world_size"] if base else None
        r["vs_single"] = single["s_per_it"] / r["s_per_it"] if single else None
    print()
    print(
        "| model | run | ranks | s/it | generate s | update s | samples/s | speed-up "
        "| efficiency | vs single |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {model} | {r['run']} | {r['world_size']} | failed | | | | n/a | n/a | n/a |")
            continue
        print(
            f"| {model} | {r['run']} | {r['world_size']} "
            f"| {r['s_per_it']:.3f} ± {r['s_per_it_stdev']:.3f} | {r['generate_s']:.3f} "
            f"| {r['update_s']:.3f} | {r['samples_per_s']:.1f} | {ratio(r['speed_up'])} "
            f"| {ratio(r['efficiency'], '.0%', '')} | {ratio(r['vs_single'])} |"
        )


def bench_model(model: str, source: str, ns) -> list[dict]:
    """Every run of one model; prints its table."""
    shared = overrides(ns, model, source)
    k, agents, per_it = completions_per_iteration(ns, shared)
    print(
        f"{model} ({source}): {ns.batch_size} prompts x {k} samples x {agents} agents = "
        f"{per_it} completions of {ns.max_new_tokens} tokens per iteration; {ns.algo}, "
        f"{ns.mode}; mean of iterations {ns.warmup + 1}-{ns.iterations}; "
        f"{ns.threads} thread(s) per rank",
        flush=True,
    )
    error = prepare(source, ns)
    if error is not None:
        tail = error_tail(error, ns.tail)
        print(f"  {model}: loading {source} FAILED\n{tail}", flush=True)
        return [{"model": model, "run": "load", "world_size": 0, "error": tail}]
    rows = [launch("single", None, shared, ns)]
    rows += [launch(f"dp x {n}", n, shared, ns) for n in ns.world_sizes]
    report(model, rows, per_it)
    meta = {"model": model, "source": source, "completions_per_iteration": per_it}
    return [{**meta, **r} for r in rows]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", choices=sorted(MODELS), help="default: tiny")
    p.add_argument("--model", help="any other model source (folder or hub id) to run as well")
    p.add_argument("--world-sizes", nargs="+", type=int, default=[1, 2])
    p.add_argument("--mode", choices=["shared", "separate"], default="shared")
    p.add_argument("--algo", default="ppo")
    p.add_argument("--group-size", type=int, help="algo.params.group_size (default: the algo's)")
    p.add_argument("--setting", default="cory")
    p.add_argument("--num-agents", type=int, help="default: the setting's")
    p.add_argument("--env", help="default: arithmetic-v0 for tiny, sentiment-v0 otherwise")
    p.add_argument("--iterations", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2, help="first iterations left out")
    p.add_argument("--batch-size", type=int, default=8, help="global prompts per iteration")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="threads per rank")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per run")
    p.add_argument("--tail", type=int, default=20, help="stderr lines shown for a failed run")
    p.add_argument("--json", type=Path, help="also write the rows here")
    ns = p.parse_args()
    if ns.warmup < 0 or ns.iterations <= ns.warmup:
        p.error("--iterations must exceed --warmup (>= 0)")
    if min(ns.world_sizes) < 1 or ns.threads < 1:
        p.error("--world-sizes and --threads must be >= 1")
    ns.world_sizes = sorted(set(ns.world_sizes) | {1})  # dp x 1 is the speed-up's base
    bad = [n for n in ns.world_sizes if ns.batch_size % n]
    if bad:
        p.error(f"--batch-size {ns.batch_size} does not split over world size(s) {bad}")
    import torch

    from seqmarl.errors import SeqmarlError

    if torch.cuda.is_available():
        if max(ns.world_sizes) > torch.cuda.device_count():
            p.error(
                f"--world-sizes: {max(ns.world_sizes)} ranks, but {torch.cuda.device_count()} "
                "visible GPU(s) (one rank per GPU)"
            )
    elif max(ns.world_sizes) * ns.threads > (os.cpu_count() or 1):
        print(
            f"warning: {max(ns.world_sizes)} ranks x {ns.threads} thread(s) > "
            f"{os.cpu_count()} cores: the largest runs are oversubscribed",
            flush=True,
        )
    models = [(m, MODELS[m]) for m in ns.models or ([] if ns.model else ["tiny"])]
    if ns.model:
        models.append((ns.model, ns.model))
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    print(f"device: {device}; {os.cpu_count()} cores", flush=True)
    rows = []
    for model, source in models:
        try:
            rows += bench_model(model, source, ns)
        except SeqmarlError as exc:  # the config the runs would share is invalid
            p.exit(2, f"scaling: error: {exc}\n")
    if ns.json:
        ns.json.write_text(json.dumps(rows, indent=2))
    if any("error" in r for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
