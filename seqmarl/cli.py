"""The ``seqmarl`` command line.

Commands:
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

import numpy as np

from seqmarl.errors import SeqmarlError

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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="seqmarl", description="Sequential multi-agent RL fine-tuning of language models."
    )
    sub = parser.add_subparsers(dest="command", required=True)

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
