"""The ``seqmarl`` command line.

Commands:
    train       fine-tune N agents (no config: the main job, CORY on SmolLM2 + sentiment)
    eval        task reward, KL to the reference and samples for a run or a model
    plot        overlay the curves of one or more runs
    list        registered envs, settings and algorithms (``--json`` for machines)
    check-env   run every conformance check on a registered env for N agents
    env-demo    play a few episodes with scripted agents and print the transcripts

``check-env`` and ``env-demo`` take task arguments and env options as ``key=value`` after the
env id (``seqmarl check-env gsm8k-debate-v0 source=DIR split=test limit=50 rounds=2``), each
value read as the same ``task.kwargs.key=value`` override of ``train`` would be.

Errors caused by input (unknown names, bad configs) print one line and exit with status 2.

User envs: the current folder is on the import path (as with ``python -m``), ``--import
MODULE`` (train, eval, list, check-env, env-demo) imports a module that registers envs before
the command runs, and ``module:TaskClass`` works wherever an env id does; see
``docs/environments.md``. ``train --resume RUN`` and ``eval RUN`` import only the modules of
the run's config that ``--import`` names, never from RUN itself (``docs/training.md``, "Loading
someone else's run folder").
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from seqmarl.errors import ConfigError, SeqmarlError
from seqmarl.run import plugins

if TYPE_CHECKING:
    import numpy as np

    from seqmarl.config import RunConfig

__all__ = ["main"]

#: What a Ctrl-C while the command starts (before it has done anything) prints.
STOPPED_STARTING = "seqmarl: SIGINT: stopped while starting; nothing was run"


def _cmd_list(args: argparse.Namespace) -> int:
    from seqmarl.algos import ALGORITHMS
    from seqmarl.envs import ENVS
    from seqmarl.method.settings import SETTINGS

    if args.json:
        print(
            json.dumps(
                {
                    "envs": ENVS.names(),
                    "env_suites": ENVS.namespaces,
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
        if reg is ENVS:  # whole suites, resolved by name on first use (the games extra)
            for pattern in ENVS.namespaces.values():
                print(f"  {pattern:<20} any such game (suite; pip install 'seqmarl[games]')")
    return 0


def _env_arguments(items: Sequence[str], flags: dict[str, str | None]) -> dict:
    """``key=value`` items -> keyword arguments of ``envs.make`` (task arguments, env options).

    Values are read as ``task.kwargs`` overrides are (:func:`seqmarl.config.parse_kwargs`).

    Raises:
        ConfigError: An item is not ``key=value``, or sets a key of ``flags`` (what that flag
            sets; ``None``: what the command sets itself).
    """
    from seqmarl.config import parse_kwargs

    kwargs = parse_kwargs(items)
    for key, flag in {"context": None, **flags}.items():
        if key in kwargs:
            fix = f"use {flag}" if flag else "the command sets it"
            raise ConfigError(f"{key}=...: not a task argument; {fix}")
    return kwargs


def _cmd_check_env(args: argparse.Namespace) -> int:
    from seqmarl import envs

    kwargs = _env_arguments(args.kwargs, {"num_agents": "--num-agents N"})
    if args.no_transfer:
        if kwargs.get("knowledge_transfer", False) is not False:
            raise ConfigError("check-env: knowledge_transfer=true and --no-transfer: pick one")
        kwargs["knowledge_transfer"] = False
    envs.make(args.env_id, num_agents=args.num_agents, **kwargs)  # fail fast on bad names

    def factory():
        return envs.make(args.env_id, num_agents=args.num_agents, **kwargs)

    report = envs.check_env(factory, num_cycles=args.cycles, raise_on_failure=False)
    print(report)
    return 0 if report.passed else 1


def _cmd_env_demo(args: argparse.Namespace) -> int:
    import numpy as np

    from seqmarl import envs
    from seqmarl.method.settings import make_setting

    env_id, items = _split_config(args.items)
    env_id = env_id or "arithmetic-v0"
    flags = {"num_agents": "--num-agents N", "setting": "--setting NAME", "render_mode": None}
    kwargs = _env_arguments(items, flags)
    mix = {
        k: kwargs.pop(k) for k in ("reward_matrix", "knowledge_transfer", "credit") if k in kwargs
    }
    num_agents = args.num_agents
    spec = envs.ENVS.get(env_id)
    if num_agents is None and getattr(spec, "aec_factory", None) is not None:
        num_agents = len(envs.make(env_id, **kwargs).possible_agents)  # the game's own count
    setting = make_setting(args.setting, num_agents=num_agents, exchange_every=1, **mix)
    env = envs.make(env_id, setting=setting, render_mode="ansi", **kwargs)
    rng = np.random.default_rng(args.seed)
    from seqmarl.agents.scripted import RandomMovePlayer

    player = RandomMovePlayer(args.seed)  # one scripted player for the whole demo
    print(f"{setting.name}: {setting.description}")
    print(f"reward matrix C = {setting.reward_matrix}")
    print("(the demo exchanges seats every episode so the rotation shows)\n")
    for episode in range(args.episodes):
        seats = setting.seat_agents(episode)
        env.reset(seed=args.seed + episode, options={"seat_order": list(seats)})
        if isinstance(env, envs.SequentialTextEnv):
            _demo_task_episode(env, rng, verbose=args.verbose)
            print(f"episode {episode}: seats {list(seats)}")
            print(env.render())
        else:
            print(f"episode {episode}: seats {list(seats)}")
            _demo_game_episode(env, player, verbose=args.verbose)
        print()
    return 0


def _demo_task_episode(env, rng: np.random.Generator, *, verbose: bool) -> None:
    """One episode of a seqmarl task (its transcript is ``env.render()``).

    Scripted agents: a seat that sees an earlier answer repeats it; otherwise it knows the
    reference half of the time and guesses the rest.
    """
    for agent in env.agent_iter():
        obs, _, term, trunc, _ = env.last()
        if term or trunc:
            env.step(None)
            continue
        earlier = env.earlier_responses(agent)
        if earlier:
            answer = earlier[-1]
        elif env.prompt.reference is not None and rng.random() < 0.5:
            answer = f"The answer is {env.prompt.reference}."
        else:
            answer = f"The answer is {int(rng.integers(0, 41))}."
        if verbose:
            print(f"  <{agent} sees> {obs['text']!r}")
        env.step(answer)


def _demo_game_episode(env, player, *, verbose: bool) -> None:
    """One episode of a PettingZoo game, through its public AEC calls, printed turn by turn.

    Each agent plays a random move among those its observation lists (``player``, the
    ``random`` scripted player built once for the demo); the episode stops at the env's turn
    bound.
    """
    final: dict[str, tuple[float, float]] = {}
    turns = 0
    for agent in env.agent_iter(max_iter=getattr(env, "max_turns", 256)):
        obs, _, term, trunc, info = env.last()
        if term or trunc:
            final[agent] = (float(info.get("task_reward", 0.0)), env.trained_rewards[agent])
            env.step(None)
            continue
        if verbose:
            print(f"  <{agent} sees> {obs['text']!r}")
        (move,) = player.act([obs["text"]])
        print(f"  {agent}: {move!r}")
        env.step(move)
        turns += 1
    cut = "" if not env.agents else f" (cut at {turns} moves)"
    for agent in env.possible_agents:
        live = env.infos.get(agent, {}).get("task_reward", 0.0)
        task_reward, reward = final.get(agent, (live, env.trained_rewards[agent]))
        print(f"  {agent}: task_reward={task_reward:+.3f} reward={reward:+.3f}{cut}")


MAIN_CONFIG = Path(__file__).resolve().parent / "configs" / "main.yaml"


def _split_config(items: Sequence[str]) -> tuple[str | None, list[str]]:
    """``[CONFIG] [key=value ...]`` -> (config path or None, overrides); also ``[ENV_ID] ...``."""
    if items and "=" not in items[0]:
        return items[0], list(items[1:])
    return None, list(items)


def _cmd_train(args: argparse.Namespace) -> int:
    from seqmarl.config import load_config
    from seqmarl.train.trainer import Trainer

    config, overrides = _split_config(args.items)
    if args.resume:
        if config is not None:
            raise ConfigError("--resume takes the run's own config.yaml; give overrides only")
        if args.overwrite:
            raise ConfigError("--resume continues a run and --overwrite replaces it: pick one")
        run = Path(args.resume)
        if not (run / "config.yaml").exists():
            raise ConfigError(f"--resume: {run} has no config.yaml (not a seqmarl run folder)")
        from seqmarl.run.folder import check_no_links

        check_no_links(run)  # before anything is read: the run rewrites these files
        cfg = load_config(run / "config.yaml", overrides, run_dir=run, allow=args.imports)
        _check_run_trust(cfg, overrides, run)
        out = run
    else:
        cfg = load_config(config or MAIN_CONFIG, overrides)
        out = Path(args.out or cfg.train.out_dir)
    cfg = _record_imports(cfg, args.imports)
    main = _rank() == 0  # with several processes, rank 0 speaks for the run
    if main:
        print(
            f"seqmarl train: {cfg.setting.name} x{cfg.setting.build().num_agents} on "
            f"{cfg.task.env}, model {cfg.agents.model} ({cfg.agents.mode})"
            + "".join(f", {a}: {m.model}" for a, m in cfg.agents.per_agent.items() if m.model)
            + f", out {out}"
            + (f", {cfg.distributed.strategy}" if cfg.distributed.strategy != "single" else "")
        )
    trainer = None
    try:
        trainer = Trainer(cfg, out, resume=bool(args.resume), overwrite=args.overwrite)
        args.deps.attach(out)  # the run folder exists and is this run's: its warnings.log
        if trainer.resumed_from is not None and main:
            print(f"resuming from {trainer.resumed_from} (iteration {trainer.iteration})")
        summary = trainer.fit()
    except RuntimeError as exc:  # a lost rank is one line; any other error keeps its traceback
        from seqmarl.run.distributed import PeerLost, env_world_size, lost_peer, torchrun_command
        from seqmarl.run.folder import how_to_continue

        lost = lost_peer(exc, _rank(), env_world_size(), cfg.distributed.timeout_s)
        if lost is None:
            raise
        at = f" during iteration {trainer.iteration}" if trainer is not None else ""
        raise PeerLost(f"{lost}{at}; {how_to_continue(out, torchrun_command())}") from None
    if main:
        _print_summary(summary)
    return 0


def _check_run_trust(cfg: RunConfig, overrides: Sequence[str], run: Path) -> None:
    """A run folder's own config.yaml cannot turn on running a model's code.

    Raises:
        ConfigError: The run's config sets ``agents.trust_remote_code`` and the command line
            does not.
    """
    asked = any(o.replace(" ", "").startswith("agents.trust_remote_code=") for o in overrides)
    if cfg.agents.trust_remote_code and not asked:
        raise ConfigError(
            f"agents.trust_remote_code: {run / 'config.yaml'} sets it to true, and a run folder "
            "cannot turn on running a model's own code by itself; review the model's code, then "
            "give agents.trust_remote_code=true on the command line"
        )


def _run_folder(args: argparse.Namespace) -> Path | None:
    """The run folder a command loads again (``train --resume RUN``, ``eval RUN``), else None."""
    if getattr(args, "resume", None):
        return Path(args.resume)
    if getattr(args, "fn", None) is _cmd_eval:
        first = _split_config(args.items)[0]
        if first is not None and Path(first).is_dir():
            return Path(first)
    return None


def _rank() -> int:
    import os

    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _record_imports(cfg: RunConfig, modules: Sequence[str]) -> RunConfig:
    """``cfg`` with the ``--import`` modules first in its ``imports`` list.

    config.yaml then records them (and in ``import_files`` the file and SHA-256 of each), so
    ``--resume`` and ``eval`` of the run find them from any folder once ``--import`` names them.
    """
    merged = list(dict.fromkeys([*modules, *cfg.imports]))
    if merged == cfg.imports:
        return cfg
    files = {**cfg.import_files, **plugins.import_records(modules)}
    return cfg.model_copy(update={"imports": merged, "import_files": files})


def _print_summary(summary: dict) -> None:
    print(f"\ndone: {summary['iterations']} iterations in {summary['out_dir']}")
    for agent, row in summary["agents"].items():
        cells = [f"{name} {v['first']:+.3f} -> {v['last']:+.3f}" for name, v in row.items()]
        print(f"  {agent}: " + ", ".join(cells))
    for p in summary["plots"]:
        print(f"  plot: {p}")


def _cmd_eval(args: argparse.Namespace) -> int:
    """``eval``, holding the lock of the folder it writes into; a full disk is one line."""
    from seqmarl.run.diskfull import DiskFull, disk_full_error, full_path, message

    args.locks = []
    try:
        return _eval(args)
    except OSError as exc:
        full = disk_full_error(exc)
        if full is None:
            raise
        intact = "nothing partial is left there and the run is unchanged; free space and run "
        raise DiskFull(message(full, full_path(full, "?"), intact + "the eval again")) from None
    finally:
        for lock in args.locks:
            lock.release()


def _hold(args: argparse.Namespace, out: Path) -> None:
    """Take the lock of the folder an eval writes into (refused in one line while held)."""
    from seqmarl.run.lock import RunLock

    hint = "wait for it to end, or write elsewhere with --out"
    args.locks.append(RunLock(out, "seqmarl eval", hint=hint).acquire())


def _eval(args: argparse.Namespace) -> int:
    from seqmarl.config import load_config
    from seqmarl.eval.evaluate import (
        evaluate,
        load_trained_pool,
        select_agents,
        untrained_pool,
        write_eval,
    )

    config, overrides = _split_config(args.items)
    model = [f"agents.model={args.model}"] if args.model else []
    if config is not None and Path(config).is_dir():
        run = Path(config)
        if not (run / "config.yaml").is_file():
            raise ConfigError(f"eval: {run} has no config.yaml (not a seqmarl run folder)")
        if not args.out:  # eval.json goes into the run folder: never through a link
            from seqmarl.run.folder import check_no_links

            check_no_links(run, ("eval",))
        # --model: that model untrained, in the run's own task, setting and generation settings
        cfg = load_config(
            run / "config.yaml", [*model, *overrides], run_dir=run, allow=args.imports
        )
        _check_run_trust(cfg, overrides, run)
        if args.exploitability:
            return _eval_exploitability(args, cfg, run)
        if args.opponent or args.round_robin:
            return _eval_matches(args, cfg, run)
        alone = select_agents(cfg, args.agent) if args.agent else None
        pool = untrained_pool(cfg) if args.model else load_trained_pool(run, cfg)
        out = Path(args.out) if args.out else run / "eval"
        what = f"{args.model} untrained in {run}'s config" if args.model else f"run {run}"
    else:
        if args.exploitability:
            raise ConfigError(
                "--exploitability reads a run's models: give the run folder first, "
                "e.g. seqmarl eval runs/x --exploitability"
            )
        if args.opponent or args.round_robin:
            raise ConfigError(
                "--opponent and --round-robin play a run's agents: give the run folder first, "
                "e.g. seqmarl eval runs/x --opponent random"
            )
        if args.agent:
            raise ConfigError(
                "--agent picks agents of a run: give the run folder first, "
                "e.g. seqmarl eval runs/x --agent llm_1"
            )
        cfg = load_config(config, ["setting=single", *model, *overrides])
        alone = None
        pool = untrained_pool(cfg)
        out = Path(args.out) if args.out else None
        what = f"{cfg.agents.model} untrained"
    if out is not None:
        _hold(args, out)
    if args.pass_k:
        from seqmarl.eval.evaluate import evaluate_pass_at_k_for_pool, write_pass_at_k_results

        res = evaluate_pass_at_k_for_pool(
            cfg, pool, num_questions=args.prompts, n=args.pass_k, seed=args.seed, agent_ids=alone
        )
        for agent, r in res.items():
            print(f"{agent}: pass@k over {r['num_questions']} questions, n={r['n']} ({what})")
            print("  " + "  ".join(f"k={k}: {v:.3f}" for k, v in r["pass_at_k"].items()))
        for path in write_pass_at_k_results(res, out) if out is not None else []:
            print(f"wrote {path}")
        return 0
    result = evaluate(cfg, pool, num_prompts=args.prompts, seed=args.seed, alone=alone)
    mode = "each alone (setting single)" if alone else f"setting {result['setting']}"
    print(f"eval: {what}, {mode}, {cfg.task.env}, {args.prompts} prompts")
    for agent, row in result["agents"].items():  # each mean ± its standard error
        print(
            f"{agent} (seat {row['seat']}): "
            f"task_reward {_with_se(row['task_reward'], row['task_reward_se'], '+.4f')}  "
            f"reward {_with_se(row['reward'], row['reward_se'], '+.4f')}  "
            + ("kl - (no turn)" if row["kl"] is None else f"kl {_with_se(row['kl'], row['kl_se'])}")
        )
    for s in result["samples"][:2]:
        print(json.dumps(s, ensure_ascii=False))
    if out is not None:
        print(f"wrote {write_eval(result, out)}")
        args.deps.attach(out)
    return 0


def _eval_matches(args: argparse.Namespace, cfg: RunConfig, run: Path) -> int:
    """``eval RUN --opponent NAME`` or ``--round-robin``: games, returns and rates with SEs."""
    from seqmarl.agents.pool import AgentPool
    from seqmarl.eval.evaluate import free_stem, write_new
    from seqmarl.eval.matches import Contenders, play_match, summarize

    if args.pass_k or args.model:
        raise ConfigError("--opponent/--round-robin: not with --pass-k or --model; use base")
    ids = cfg.setting.build().agent_ids
    contenders = Contenders(run, cfg)  # the checkpoint is read; no model loaded yet
    if args.round_robin and args.batch_games < 1:
        raise ConfigError(f"--batch-games {args.batch_games}: play at least 1 game at once")
    models = [n for n in contenders.names() if not contenders.scripted(n)]
    if args.round_robin and cfg.agents.mode == "shared" and cfg.agents.generator == "hf":
        from seqmarl.method.settings import agent_ids

        # one adapter per model contender on the one base: every pair can be batched
        ids = agent_ids(max(len(ids), len(models)))
    contenders.attach(AgentPool.from_config(cfg.agents, ids, seed=cfg.train.seed))
    out = Path(args.out) if args.out else run / "eval"
    out.mkdir(parents=True, exist_ok=True)
    _hold(args, out)
    games = args.prompts
    if args.round_robin:
        from seqmarl.eval.roundrobin import round_robin
        from seqmarl.run.interrupts import StopSignals

        names = contenders.names()
        stem = free_stem(out, "ratings", [".json", ".png"])  # a new pair: ratings-N.json/.png
        with StopSignals(announce=lambda _: None) as stop:
            result = round_robin(
                contenders,
                names,
                games=games,
                seed=args.seed,
                rows=args.batch_games,
                out_dir=out,
                stem=stem,
                stop=stop,
            )
        print(f"round robin of {len(names)} contenders, {games} games a pair ({cfg.task.env})")
        for name, row in result["ratings"]["players"].items():
            print(f"  {name:<16} mu {row['mu']:6.2f} ± {row['sigma']:.2f}  ({row['games']} games)")
        partial = result.pop("partial")
    else:
        # --agent: any contender (an agent id, base, snapshot:<i>, ...); default the learner
        agents = [x.strip() for a in args.agent or [] for x in a.split(",") if x.strip()]
        agents = agents or [contenders.learner]
        for name in [*agents, args.opponent]:
            contenders.check(name)
        result = {"env": cfg.task.env, "opponent": args.opponent, "games": games, "agents": {}}
        for a in agents:
            rows = play_match(contenders, a, args.opponent, games=games, seed=args.seed)
            result["agents"][a] = summarize(rows)
            print(f"{a} vs {args.opponent}: {games} games on {cfg.task.env}, every seat in turn")
            for seat, row in result["agents"][a].items():
                print(
                    f"  {seat:<7} return {_pm(row['return'])} (opponent "
                    f"{_pm(row['opponent_return'])})  win {_pm(row['win'])}  draw "
                    f"{_pm(row['draw'])}  loss {_pm(row['loss'])}  illegal/move "
                    f"{_pm(row['illegal_move_rate'])}  forfeit {_pm(row['forfeit'])}  "
                    f"length {_pm(row['length'], 1)}"
                )
        stem = free_stem(out, "match", [".json"])
        partial = None
    path = write_new(out, stem, json.dumps(result, indent=2))
    if partial is not None:  # the ratings are written: the kept games are in them
        Path(partial).unlink(missing_ok=True)
    print(f"wrote {path}" + (f" and {result['plot']}" if result.get("plot") else ""))
    return 0


def _eval_exploitability(args: argparse.Namespace, cfg: RunConfig, run: Path) -> int:
    """``eval RUN --exploitability``: OpenSpiel's exploitability of the run's models, a table."""
    from seqmarl.eval.evaluate import free_stem, write_new
    from seqmarl.eval.exploitability import evaluate_run, plot_exploitability, tree_of

    clash = [
        f
        for f, on in (
            ("--opponent", args.opponent),
            ("--round-robin", args.round_robin),
            ("--pass-k", args.pass_k),
            ("--model", args.model),
            ("--agent", args.agent),
        )
        if on
    ]
    if clash:
        raise ConfigError(f"--exploitability reads every model of the run; not with {clash[0]}")
    if args.exploitability_samples is not None and args.exploitability_samples < 2:
        raise ConfigError("--exploitability-samples: at least 2 responses per information state")
    if args.cfr_iterations < 1:
        raise ConfigError("--cfr-iterations: at least 1")
    tree_of(cfg)  # a game that cannot be walked is refused before any folder or model
    out = Path(args.out) if args.out else run / "eval"
    out.mkdir(parents=True, exist_ok=True)
    _hold(args, out)
    result = evaluate_run(
        run,
        cfg,
        samples=args.exploitability_samples,
        cfr_iterations=args.cfr_iterations,
        seed=args.seed,
    )
    stem = free_stem(out, "exploitability", [".json", ".png"])
    result["plot"] = str(plot_exploitability(result, out / f"{stem}.png"))
    print(
        f"exploitability on {cfg.task.env} ({result['game']}, {result['information_states']} "
        f"information states; OpenSpiel's exploitability = NashConv / players)"
    )
    print(
        f"  {'policy':<14} {'iteration':>9} {'exploitability':>14} {'nash_conv':>9} "
        f"{'value p0':>9}  read"
    )
    for r in result["rows"]:
        it = "-" if r.get("iteration") is None else str(r["iteration"])
        e = r["exploitability"]
        e = (
            "-"
            if e is None
            else f"{e:.4f}"
            + (f"±{r['exploitability_sd']:.4f}" if r.get("exploitability_sd") is not None else "")
        )
        print(
            f"  {r['name']:<14} {it:>9} {e:>14} {r['nash_conv']:>9.4f} {r['value'][0]:>+9.4f}  "
            f"{_how_read(r)}"
        )
    print(
        f"  game value for player 0 (CFR after {result['cfr_iterations']} iterations): "
        f"{result['game_value'][0]:+.4f}; {result['seconds']:.1f} s in all"
    )
    path = write_new(out, stem, json.dumps(result, indent=2))
    print(f"wrote {path} and {result['plot']}")
    return 0


def _how_read(row: dict) -> str:
    """How a table row's policy was read, in a few words."""
    if row.get("method") == "exact":
        return (
            f"exact (mass off the canonical answers: mean {row['leftover_mean']:.3f}, "
            f"max {row['leftover_max']:.3f})"
        )
    if row.get("method") == "sampled":
        why = f"; {row['why_sampled']}" if row.get("why_sampled") else ""
        return f"sampled, {row['samples']} per state (largest SE {row['se_max']:.3f}{why})"
    return row.get("kind", "")


def _with_se(mean: float, se: float | None, spec: str = ".4f") -> str:
    """``mean±se`` (``mean±-`` where there is no standard error: a single value)."""
    return f"{mean:{spec}}±" + ("-" if se is None else f"{se:.4f}")


def _pm(stat: dict, digits: int = 3) -> str:
    return f"{stat['mean']:.{digits}f}±{stat['se']:.{digits}f}"


def _cmd_plot(args: argparse.Namespace) -> int:
    from seqmarl.run.plots import plot_runs

    for d in args.runs:
        if not (Path(d) / "metrics.jsonl").exists():
            raise ConfigError(f"plot: {d} has no metrics.jsonl (not a seqmarl run folder)")
    files = plot_runs(args.runs, args.out, labels=args.labels)
    for f in files:
        print(f"wrote {f}")
    return 0


class _AnyOrderParser(argparse.ArgumentParser):
    """A command's parser: options and positional items in any order.

    ``seqmarl eval runs/x --prompts 4 train.seed=1`` would otherwise stop at the first
    positional after an option. ``parse_known_intermixed_args`` calls ``parse_known_args``
    itself, hence the guard.
    """

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="seqmarl", description="Sequential multi-agent RL fine-tuning of language models."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_AnyOrderParser)
    plugin = argparse.ArgumentParser(add_help=False)
    plugin.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (it registers envs); repeatable; the current folder is searched",
    )

    p = sub.add_parser(
        "train", parents=[plugin], help="fine-tune N agents (no config: the main job)"
    )
    p.add_argument("items", nargs="*", metavar="[CONFIG] [key=value]", help="config and overrides")
    p.add_argument("--out", help="output folder (default: train.out_dir)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start again in a folder that holds a run (its run files are replaced)",
    )
    p.set_defaults(fn=_cmd_train)

    p = sub.add_parser("eval", parents=[plugin], help="evaluate a run folder or a model")
    p.add_argument("items", nargs="*", metavar="[RUN_DIR|CONFIG] [key=value]")
    p.add_argument(
        "--model",
        metavar="SOURCE",
        help="evaluate SOURCE untrained: with RUN_DIR, in the run's own task, setting and "
        "generation settings (comparable with the trained run); without, as one agent",
    )
    p.add_argument(
        "--agent",
        action="append",
        metavar="ID",
        help="evaluate this agent of the run alone (setting single, its own weights); "
        "repeat or give a comma list. With --opponent: who plays it (an agent id, base, "
        "snapshot:<i>; default the league's learner)",
    )
    p.add_argument("--prompts", type=int, default=64, help="prompts (games) to play")
    p.add_argument(
        "--opponent",
        metavar="NAME",
        help="play a run's agent (--agent, default the learner) against NAME, the agent in "
        "every seat in turn: base, random, snapshot:<i>, another agent id, module:factory, "
        "or another model, untrained (a folder, org/name on the hub, embedded:<name>)",
    )
    p.add_argument(
        "--round-robin",
        action="store_true",
        help="every pair of the run's agents, league snapshots, base and random plays "
        "--prompts games; openskill ratings and a plot of rating over training. Finished "
        "pairs are kept in ratings.partial.json: a stopped round robin continues when run again",
    )
    p.add_argument(
        "--batch-games",
        type=int,
        default=64,
        metavar="N",
        help="--round-robin: games played at once (whole pairs, as many as fit; at least one)",
    )
    p.add_argument(
        "--exploitability",
        action="store_true",
        help="OpenSpiel's exploitability of the run's base model, league snapshots and final "
        "agents, with uniform random and CFR references (small OpenSpiel games: Kuhn, Leduc)",
    )
    p.add_argument(
        "--exploitability-samples",
        type=int,
        metavar="N",
        help="read each model by sampling N responses per information state (default: exact "
        "log-probs of each move's answer where the parse allows)",
    )
    p.add_argument(
        "--cfr-iterations",
        type=int,
        default=100,
        metavar="N",
        help="iterations of OpenSpiel's CFR for the reference policy (default 100)",
    )
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument(
        "--pass-k", type=int, metavar="N", help="sample N answers per question; pass@1..N"
    )
    p.add_argument(
        "--out",
        help="folder for eval.json (default RUN_DIR/eval); an existing eval.json is kept and "
        "eval-2.json, eval-3.json, ... written instead (passk files likewise)",
    )
    p.set_defaults(fn=_cmd_eval)

    p = sub.add_parser("plot", help="overlay runs in the same plots")
    p.add_argument("runs", nargs="+", metavar="DIR")
    p.add_argument("--out", default="plots", help="folder for the PNG files")
    p.add_argument("--labels", nargs="+", help="one label per run (default: folder names)")
    p.set_defaults(fn=_cmd_plot)

    p = sub.add_parser("list", parents=[plugin], help="registered envs, settings and algorithms")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(fn=_cmd_list)

    p = sub.add_parser("check-env", parents=[plugin], help="run the conformance checks on an env")
    p.add_argument("env_id")
    p.add_argument(
        "kwargs",
        nargs="*",
        metavar="key=value",
        help="task arguments (source=DIR split=test limit=50) and env options (rounds=2), "
        "values read as task.kwargs overrides are",
    )
    p.add_argument("--num-agents", type=int, default=2)
    p.add_argument("--cycles", type=int, default=20, help="cycles of PettingZoo's tests")
    p.add_argument("--no-transfer", action="store_true", help="check with transfer off")
    p.set_defaults(fn=_cmd_check_env)

    p = sub.add_parser("env-demo", parents=[plugin], help="play episodes with scripted agents")
    p.add_argument(
        "items",
        nargs="*",
        metavar="[ENV_ID] [key=value]",
        help="env id (default arithmetic-v0), then task arguments and env options as for check-env",
    )
    p.add_argument("--setting", default="cory")
    p.add_argument("--num-agents", type=int, default=None)
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-v", "--verbose", action="store_true", help="show what each seat observes")
    p.set_defaults(fn=_cmd_env_demo)
    return parser


def _setup_logging() -> None:
    """Send seqmarl's own log lines to stderr as ``seqmarl: ...`` (warnings marked as such)."""
    import logging

    class _Format(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            level = "" if record.levelno < logging.WARNING else record.levelname.lower() + ": "
            return f"seqmarl: {level}{record.getMessage()}"

    logger = logging.getLogger("seqmarl")
    ours = [h for h in logger.handlers if getattr(h, "_seqmarl_cli", False)]
    for handler in ours:  # an earlier command's (in-process): write where stderr is now
        handler.stream = sys.stderr  # (setStream would flush the old one, maybe closed)
    if not ours:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Format())
        handler._seqmarl_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _exit_rank(code: int) -> None:
    """End a torchrun rank without interpreter teardown, keeping its exit status.

    After the process group is gone, tearing down the interpreter was seen to abort a gloo
    rank once (SIGABRT, "terminate called without an active exception") after its work was
    done and written; every file is closed by then, so the rank leaves at once.
    """
    import os

    if "seqmarl.agents.vllm" in sys.modules:  # os._exit skips the exit handlers that remove
        from seqmarl.agents.vllm import remove_scratch  # its engine's folders in /dev/shm

        remove_scratch()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``seqmarl`` command; returns the exit status."""
    import signal
    import threading

    from seqmarl.run.interrupts import signal_name

    try:  # a Ctrl-C before the command's own try block: one line, like one inside it
        args = build_parser().parse_args(argv)
        plugins.add_cwd_to_path()
        _setup_logging()
        from seqmarl.run.depwarnings import DependencyWarnings

        args.deps = DependencyWarnings().__enter__()  # a library's warnings: see depwarnings
    except KeyboardInterrupt:
        print(STOPPED_STARTING, file=sys.stderr)
        return 128 + int(signal.SIGINT)
    received: list[int] = []

    def _interrupt(signum, frame):  # outside a training loop: stop like Ctrl-C
        received.append(signum)
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None

    def settle() -> None:
        # The command is over. As a program (argv None) it is about to exit: a late Ctrl-C
        # (a double tap) must not turn the one-line ending into a traceback, so further stop
        # signals are ignored. Called in-process, the caller's handlers come back instead.
        if not main_thread:
            return
        if argv is None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        else:
            signal.signal(signal.SIGTERM, previous)

    code: int | None = None  # set once the command has an exit status
    try:
        run = _run_folder(args)  # its config may import from a recorded file: see plugins
        asked = getattr(args, "imports", [])
        plugins.import_modules(asked, origin="--import", skip_missing=run is not None)
        with plugins.outside(run):  # a .py shipped in a run folder is never imported
            code = args.fn(args)
        settle()
        return code
    except SeqmarlError as exc:
        settle()
        # every rank finds the same config error: rank 0 says it; anything else may be one
        # rank's alone (a task's fault, a checkpoint it cannot read), so that rank says it
        from seqmarl.errors import UnknownNameError

        rank = _rank()
        if rank == 0 or not isinstance(exc, (ConfigError, UnknownNameError)):
            prefix = "seqmarl: error: " if exc.exit_code == 2 else "seqmarl: "
            where = f"[rank {rank}] " if rank else ""
            print(prefix + where + str(exc), file=sys.stderr)
        code = exc.exit_code
        return code
    except KeyboardInterrupt:
        settle()
        signum = received[-1] if received else signal.SIGINT
        print(
            f"seqmarl: {signal_name(signum)}: stopped; no training iteration was running, "
            "nothing to save",
            file=sys.stderr,
        )
        code = 128 + int(signum)
        return code
    except BrokenPipeError:  # `seqmarl list | head`: the reader left; say nothing more
        settle()
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
        return code
    except OSError as exc:  # a full disk outside a command's own handling: still one line
        settle()
        from seqmarl.run.diskfull import disk_full_error, full_path, message

        full = disk_full_error(exc)
        if full is None:
            raise
        line = message(full, full_path(full, "?"), "free space and run the command again")
        print(f"seqmarl: error: {line}", file=sys.stderr)
        code = 2
        return code
    except BaseException:
        settle()
        raise
    finally:
        args.deps.__exit__(None, None, None)
        if _rank() == 0:
            # after a command's own one-line ending (an error, a stop) nothing more is said;
            # after a success or a crash's traceback, the dependencies' warnings are
            args.deps.report(quiet=code not in (None, 0))
        if "seqmarl.run.distributed" in sys.modules:
            from seqmarl.run import distributed

            launched = distributed.teardown()  # a rank of a launched multi-process run
            if launched and argv is None and code is not None:  # a launched rank about to exit
                _exit_rank(code)


if __name__ == "__main__":
    sys.exit(main())
