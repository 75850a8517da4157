"""The ``seqmarl`` command line.

Commands:
    train       fine-tune N agents (no config: the main job, CORY on SmolLM2 + sentiment)
    eval        task reward, KL to the reference and samples for a run or a model
    plot        overlay the curves of one or more runs
    list        registered envs, settings and algorithms (``--json`` for machines)
    check-env   run every conformance check on a registered env for N agents
    env-demo    play a few episodes with scripted agents and print the transcripts

Errors caused by input (unknown names, bad configs) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seqmarl.errors import ConfigError, SeqmarlError

__all__ = ["main"]


def _cmd_list(args: argparse.Namespace) -> int:
    from seqmarl.algos import ALGORITHMS
    from seqmarl.envs import ENVS
    from seqmarl.settings import SETTINGS

    if args.json:
        print(
            json.dumps(
                {
                    "envs": ENVS.names(),
                    "settings": SETTINGS.names(),
                    "algorithms": ALGORITHMS.names(),
                }
            )
        )
        return 0
    for title, reg in (("envs", ENVS), ("settings", SETTINGS), ("algorithms", ALGORITHMS)):
        print(f"{title}:")
        for name in reg.names():
            print(f"  {name:<20} {reg.get(name).description}")
    return 0


def _cmd_check_env(args: argparse.Namespace) -> int:
    from seqmarl import envs

    kwargs = {"knowledge_transfer": False} if args.no_transfer else {}
    envs.make(args.env_id, num_agents=args.num_agents, **kwargs)  # fail fast on bad names

    def factory():
        return envs.make(args.env_id, num_agents=args.num_agents, **kwargs)

    report = envs.check_env(factory, num_cycles=args.cycles, raise_on_failure=False)
    print(report)
    return 0 if report.passed else 1


def _cmd_env_demo(args: argparse.Namespace) -> int:
    from seqmarl import envs
    from seqmarl.settings import make_setting

    setting = make_setting(args.setting, num_agents=args.num_agents, exchange_every=1)
    env = envs.make(args.env_id, setting=setting, render_mode="ansi")
    rng = np.random.default_rng(args.seed)
    print(f"{setting.name}: {setting.description}")
    print(f"coefficient matrix C = {setting.coefficients}")
    print("(the demo exchanges seats every episode so the rotation shows)\n")
    for episode in range(args.episodes):
        seats = setting.seat_agents(episode)
        env.reset(seed=args.seed + episode, options={"seat_order": list(seats)})
        for agent in env.agent_iter():
            obs, _, term, trunc, _ = env.last()
            if term or trunc:
                env.step(None)
                continue
            earlier = env.earlier_responses(agent)
            # Scripted agents: a seat that sees an earlier answer repeats it; otherwise it
            # knows the reference half of the time and guesses the rest.
            if earlier:
                answer = earlier[-1]
            elif env.prompt.reference is not None and rng.random() < 0.5:
                answer = f"The answer is {env.prompt.reference}."
            else:
                answer = f"The answer is {int(rng.integers(0, 41))}."
            if args.verbose:
                print(f"  <{agent} sees> {obs['text']!r}")
            env.step(answer)
        print(f"episode {episode}: seats {list(seats)}")
        print(env.render())
        print()
    return 0


MAIN_CONFIG = Path(__file__).resolve().parent / "configs" / "main.yaml"


def _split_config(items: Sequence[str]) -> tuple[str | None, list[str]]:
    """``[CONFIG] [key=value ...]`` -> (config path or None, overrides)."""
    if items and "=" not in items[0]:
        return items[0], list(items[1:])
    return None, list(items)


def _cmd_train(args: argparse.Namespace) -> int:
    from seqmarl.config import load_config
    from seqmarl.trainer import Trainer

    config, overrides = _split_config(args.items)
    if args.resume:
        if config is not None:
            raise ConfigError("--resume takes the run's own config.yaml; give overrides only")
        run = Path(args.resume)
        if not (run / "config.yaml").exists():
            raise ConfigError(f"--resume: {run} has no config.yaml (not a seqmarl run folder)")
        cfg = load_config(run / "config.yaml", overrides)
        out = run
    else:
        cfg = load_config(config or MAIN_CONFIG, overrides)
        out = Path(args.out or cfg.train.out_dir)
        if (out / "checkpoints").exists() and any((out / "checkpoints").iterdir()):
            raise ConfigError(
                f"{out} already holds a run; continue it with --resume {out}, "
                "or choose another folder with --out"
            )
    print(
        f"seqmarl train: {cfg.setting.name} x{cfg.setting.build().num_agents} on "
        f"{cfg.task.env}, model {cfg.agents.model} ({cfg.agents.mode}), out {out}"
    )
    trainer = Trainer(cfg, out, resume=bool(args.resume))
    summary = trainer.fit()
    _print_summary(summary)
    return 0


def _print_summary(summary: dict) -> None:
    print(f"\ndone: {summary['iterations']} iterations in {summary['out_dir']}")
    for agent, row in summary["agents"].items():
        cells = [f"{name} {v['first']:+.3f} -> {v['last']:+.3f}" for name, v in row.items()]
        print(f"  {agent}: " + ", ".join(cells))
    for p in summary["plots"]:
        print(f"  plot: {p}")


def _cmd_eval(args: argparse.Namespace) -> int:
    from seqmarl.agents.pool import AgentPool
    from seqmarl.config import load_config
    from seqmarl.evaluate import evaluate, load_trained_pool

    config, overrides = _split_config(args.items)
    if config is not None and Path(config).is_dir():
        run = Path(config)
        cfg = load_config(run / "config.yaml", overrides)
        pool = load_trained_pool(run, cfg)
        out = Path(args.out) if args.out else run / "eval"
    else:
        base = [f"model={args.model}"] if args.model else []
        cfg = load_config(config, ["setting=single", *base, *overrides])
        pool = AgentPool.from_config(cfg.agents, cfg.setting.build().agent_ids)
        out = Path(args.out) if args.out else None
    if args.pass_k:
        from seqmarl.evaluate import evaluate_pass_at_k_for_pool

        res = evaluate_pass_at_k_for_pool(
            cfg, pool, num_questions=args.prompts, n=args.pass_k, seed=args.seed, out_dir=out
        )
        for agent, r in res.items():
            print(f"{agent}: pass@k over {r['num_questions']} questions, n={r['n']}")
            print("  " + "  ".join(f"k={k}: {v:.3f}" for k, v in r["pass_at_k"].items()))
        if out is not None:
            print(f"wrote {out}/<agent>/passk.{{json,md,png}}")
        return 0
    result = evaluate(cfg, pool, num_prompts=args.prompts, seed=args.seed, out_dir=out)
    for agent, row in result["agents"].items():
        print(f"{agent}: task_reward {row['task_reward']:+.4f}  kl {row['kl']:.4f}")
    for s in result["samples"][:2]:
        print(json.dumps(s, ensure_ascii=False))
    if out is not None:
        print(f"wrote {out / 'eval.json'}")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from seqmarl.plots import plot_runs

    for d in args.runs:
        if not (Path(d) / "metrics.jsonl").exists():
            raise ConfigError(f"plot: {d} has no metrics.jsonl (not a seqmarl run folder)")
    files = plot_runs(args.runs, args.out, labels=args.labels)
    for f in files:
        print(f"wrote {f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="seqmarl", description="Sequential multi-agent RL fine-tuning of language models."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="fine-tune N agents (no config: the main job)")
    p.add_argument("items", nargs="*", metavar="[CONFIG] [key=value]", help="config and overrides")
    p.add_argument("--out", help="output folder (default: train.out_dir)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR")
    p.set_defaults(fn=_cmd_train)

    p = sub.add_parser("eval", help="evaluate a run folder or a model")
    p.add_argument("items", nargs="*", metavar="[RUN_DIR|CONFIG] [key=value]")
    p.add_argument("--model", help="evaluate this model source as one untrained agent")
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument(
        "--pass-k", type=int, metavar="N", help="sample N answers per question; pass@1..N"
    )
    p.add_argument("--out", help="folder for eval.json (or passk files)")
    p.set_defaults(fn=_cmd_eval)

    p = sub.add_parser("plot", help="overlay runs in the same plots")
    p.add_argument("runs", nargs="+", metavar="DIR")
    p.add_argument("--out", default="plots", help="folder for the PNG files")
    p.add_argument("--labels", nargs="+", help="one label per run (default: folder names)")
    p.set_defaults(fn=_cmd_plot)

    p = sub.add_parser("list", help="registered envs, settings and algorithms")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(fn=_cmd_list)

    p = sub.add_parser("check-env", help="run the conformance checks on an env")
    p.add_argument("env_id")
    p.add_argument("--num-agents", type=int, default=2)
    p.add_argument("--cycles", type=int, default=20, help="cycles of PettingZoo's tests")
    p.add_argument("--no-transfer", action="store_true", help="check with transfer off")
    p.set_defaults(fn=_cmd_check_env)

    p = sub.add_parser("env-demo", help="play episodes with scripted agents")
    p.add_argument("env_id", nargs="?", default="arithmetic-v0")
    p.add_argument("--setting", default="cory")
    p.add_argument("--num-agents", type=int, default=None)
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-v", "--verbose", action="store_true", help="show what each seat observes")
    p.set_defaults(fn=_cmd_env_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``seqmarl`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except SeqmarlError as exc:
        print(f"seqmarl: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
