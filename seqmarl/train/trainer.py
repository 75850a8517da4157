"""The training loop: rollout -> reward mixing -> per-agent update -> role exchange -> log.

:class:`Trainer` is the only holder of mutable training state. Each iteration:

1. sample B prompts; play B x K rows of the game (:func:`seqmarl.envs.build_game`) in
   lockstep, each agent's generation batched across the rows waiting on it
   (:func:`seqmarl.train.rollout.play`);
2. the one mixer credits the task rewards, through the setting's coefficient matrix C, to the
   agents' turns;
3. each agent updates with its own algorithm on its own responses (:class:`Learner`); an agent
   that had no turn anywhere learns nothing that iteration (its ``turns`` metric is 0);
4. the seat order for the next iteration comes from the setting's schedule: nothing is saved,
   reloaded or moved (weights, optimizer, KL controller and normaliser stay with the agent);
5. metrics go to ``metrics.jsonl`` (and TensorBoard/wandb), samples to ``samples.jsonl``, and
   every ``checkpoint_every`` iterations a checkpoint is written atomically.

Ctrl-C and SIGTERM stop the run at an iteration boundary with a checkpoint
(:mod:`seqmarl.run.interrupts`); ``--resume`` then continues exactly as if nothing had happened.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from seqmarl import envs
from seqmarl.agents.pool import AgentPool
from seqmarl.algos import ALGORITHMS
from seqmarl.algos.base import with_response_limit
from seqmarl.config import RunConfig
from seqmarl.errors import ConfigError, Interrupted, SeqmarlError
from seqmarl.run import diskfull
from seqmarl.run.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    load_latest,
    read_meta,
    save_checkpoint,
)
from seqmarl.run.diskfull import DiskFull, disk_full_error, full_path, write_atomic
from seqmarl.run.distributed import setup
from seqmarl.run.folder import check_no_links, check_out_dir, clear_run
from seqmarl.run.interrupts import Abort, Rewind, StopSignals, signal_name
from seqmarl.run.lock import RunLock, RunLocked
from seqmarl.run.sinks import JsonlSink, MetricSinks, check_sinks, read_jsonl, truncate_jsonl
from seqmarl.train.league import League
from seqmarl.train.learner import Learner
from seqmarl.train.mixed import group_learners, learn_together
from seqmarl.train.resume import check_resume, run_signature
from seqmarl.train.rollout import Rollout, informative_groups, play, summed_timings

__all__ = ["Trainer", "TrainingError"]

log = logging.getLogger(__name__)


class TrainingError(SeqmarlError):
    """Training cannot go on (e.g. repeated non-finite losses); the last checkpoint is intact."""


class Trainer:
    """Fine-tunes the N agents of a run config.

    Args:
        cfg: The validated run config.
        out_dir: Output folder (default ``cfg.train.out_dir``).
        resume: Continue from the newest complete, undamaged checkpoint in ``out_dir``.
        overwrite: Start afresh in a folder that holds a run: its outputs are deleted when
            :meth:`fit` starts (without it such a folder is refused with a
            :class:`~seqmarl.errors.ConfigError`).
        pool: A ready agent pool (tests, custom models); default: built from ``cfg.agents``.

    Raises:
        ConfigError: ``out_dir`` holds a run and neither ``resume`` nor ``overwrite`` is set, or
            the config contradicts the checkpoint being resumed (the field is named).
        CheckpointError: ``resume`` and no usable checkpoint.
    """

    def __init__(
        self,
        cfg: RunConfig,
        out_dir: str | Path | None = None,
        *,
        resume: bool = False,
        overwrite: bool = False,
        pool: AgentPool | None = None,
    ):
        self.out = Path(out_dir or cfg.train.out_dir)
        # config.yaml names the folder the run is really in
        self.cfg = cfg.model_copy(
            update={"train": cfg.train.model_copy(update={"out_dir": str(self.out)})}
        )
        if resume and overwrite:
            raise ConfigError("--resume continues a run and --overwrite replaces it: pick one")
        self.dist = setup(cfg.distributed.strategy, cfg.distributed.timeout_s)
        if resume:
            check_no_links(self.out)
        # one writer per run folder: rank 0 (the one that writes) holds the lock until fit
        # ends; every rank learns whether it was refused, so all stop together
        self._lock: RunLock | None = None
        refused = None
        if self.dist.is_main:
            self._lock = RunLock(
                self.out,
                "seqmarl train --resume" if resume else "seqmarl train",
                hint=f"wait for it to end (then continue it with seqmarl train --resume "
                f"{self.out}), or train into another folder with --out",
            )
            try:
                self._lock.acquire()
            except SeqmarlError as exc:
                refused = ("locked", str(exc))
            except OSError as exc:  # a full disk, a read-only folder: one line, every rank
                full = disk_full_error(exc)
                refused = (
                    ("full", str(self._disk_full(full)))
                    if full is not None
                    else ("locked", f"cannot write into {self.out} ({exc.strerror or exc})")
                )
        refused = self.dist.broadcast_object(refused)
        if refused is not None:
            raise (DiskFull if refused[0] == "full" else RunLocked)(refused[1])
        try:
            self._build(cfg, resume, overwrite, pool)
        except BaseException as exc:
            self._release()
            full = disk_full_error(exc)
            if full is not None:
                raise self._disk_full(full) from None
            raise

    def _build(self, cfg: RunConfig, resume: bool, overwrite: bool, pool: AgentPool | None) -> None:
        """The rest of ``__init__``, under the run folder's lock."""
        # the folder and the checkpoint are checked before any model loads
        resumed: tuple[Path, dict[str, Any]] | None = None
        if resume:
            resumed = self._find_checkpoint()
        else:
            check_out_dir(self.out, overwrite=overwrite)
        check_sinks(cfg.train)  # a sink's missing package, before any model loads
        self._overwrite = overwrite and not resume
        self.setting = cfg.setting.build()
        self.ids = self.setting.agent_ids
        #: the agents that learn (league opponents generate only)
        self.learning = tuple(a for a in self.ids if a not in cfg.league.opponents)
        self.algos = {a: ALGORITHMS.get(cfg.algo_for(a).name) for a in self.ids}
        limit = cfg.agents.generation.max_new_tokens  # Dr. GRPO's constant, typed once
        self.algo_cfgs = {a: with_response_limit(cfg.algo_for(a).build(), limit) for a in self.ids}
        sizes = {c.group_size for c in self.algo_cfgs.values()} - {1}  # one, or none (config)
        self.copies = sizes.pop() if sizes else 1
        seed = cfg.train.seed
        if pool is None:
            needs_value = [a for a in self.learning if self.algos[a].uses_value_head]
            agents = cfg.agents
            if self.dist.enabled and agents.device == "auto" and torch.cuda.is_available():
                agents = agents.model_copy(update={"device": f"cuda:{self.dist.local_rank}"})
            kind = "fsdp" if cfg.distributed.strategy == "fsdp" else None
            pool = AgentPool.from_config(
                agents, self.ids, value_heads=needs_value, seed=seed, kind=kind
            )
        self.pool = pool
        # this rank's share of the iteration's prompts (all of them with one process)
        self.local_batch = cfg.train.batch_size // self.dist.world_size
        self.game = envs.build_game(cfg.task, self.setting, tokenizer=pool.tokenizer)
        self.learners = {
            a: Learner(
                pool[a],
                self.algos[a],
                self.algo_cfgs[a],
                seed=seed + i,
                dist=self.dist,
                autocast_dtype=torch.bfloat16 if cfg.train.mixed_precision == "bf16" else None,
                tis_cap=cfg.agents.vllm.tis_cap if pool.sampled_elsewhere(a) else None,
            )
            for i, a in enumerate(self.ids)
            if a in self.learning
        }
        self.league = (
            League(cfg.league, pool.agents, self.ids, seed=seed, rank=self.dist.rank)
            if cfg.league.enabled
            else None
        )
        self.prompt_rng = np.random.default_rng(seed)  # the same on every rank
        # sampling differs per rank (rank 0's stream is the one-process stream)
        self.generator = torch.Generator(device=pool.device).manual_seed(seed + self.dist.rank)
        self.iteration = 0
        self.bad_iterations = 0
        self._logged_alone: set[tuple[str, str]] = set()  # agents.update=mixed's fall-backs
        self.resumed_from: Path | None = None
        self._last_saved: int | None = None
        self._stop: StopSignals | None = None
        if resumed is not None:
            self._resume(*resumed)

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where the run is.

        Replicated state (weights, optimizers, algorithm state, the prompt stream) once; the
        random streams that differ per rank (sampling, torch) as a list in rank order. With
        several processes this is a collective: every rank must call it.
        """
        mine = {"generator": self.generator.get_state(), "torch_rng": torch.get_rng_state()}
        if self.league is not None:  # each rank's scripted players have their own streams
            mine["scripted"] = self.league.scripted_state()
        return {
            "iteration": self.iteration,
            "bad_iterations": self.bad_iterations,
            "learners": {a: lr.state_dict() for a, lr in self.learners.items()},
            "prompt_rng": self.prompt_rng.bit_generator.state,
            "league": self.league.state_dict() if self.league is not None else None,
            "world_size": self.dist.world_size,
            "ranks": self.dist.gather_objects(mine),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (with as many processes as wrote it)."""
        ranks = state.get("ranks") or [state]  # checkpoints before ranks were kept
        self._check_world(ranks)
        self.iteration = state["iteration"]
        self.bad_iterations = state["bad_iterations"]
        for a, lr in self.learners.items():
            lr.load_state_dict(state["learners"][a])
        self.prompt_rng.bit_generator.state = state["prompt_rng"]
        if self.league is not None:
            if state.get("league") is None:
                raise KeyError("league: the checkpoint was written by a run without a league")
            self.league.load_state_dict(state["league"])
        mine = ranks[self.dist.rank]
        self.generator.set_state(mine["generator"])
        torch.set_rng_state(mine["torch_rng"])
        if self.league is not None:
            self.league.load_scripted_state(mine.get("scripted", {}))

    def _find_checkpoint(self) -> tuple[Path, dict[str, Any]]:
        """The newest usable checkpoint and its state, checked against the config.

        With several processes rank 0 picks it (and moves damaged ones aside); the others
        load the one it names.
        """
        root = self.out / "checkpoints"
        found: Path | str | None = None
        state = None
        if self.dist.is_main:
            try:
                found, state = load_latest(root)
            except CheckpointError as exc:
                found = str(exc)
        found = self.dist.broadcast_object(found)
        if isinstance(found, str):
            if found.startswith("cannot read"):  # the file system, not the run: no advice
                raise CheckpointError(f"--resume: {found}")
            raise CheckpointError(
                f"--resume: {found}. Start the run again with: seqmarl train "
                f"{self.out / 'config.yaml'} --out {self.out} --overwrite (this replaces its "
                "logs and checkpoints)"
            )
        if state is None:
            state = load_checkpoint(found)
        check_resume(read_meta(found).get("run"), self.cfg, found)
        self._check_world(state.get("ranks") or [state])
        return found, state

    def _check_world(self, ranks: list) -> None:
        if len(ranks) != self.dist.world_size:
            raise CheckpointError(
                f"--resume: the checkpoint was written by {len(ranks)} process(es), this run has "
                f"{self.dist.world_size}; resume with the same number (torchrun "
                f"--nproc_per_node {len(ranks)}) to continue exactly"
            )

    def _resume(self, ckpt: Path, state: dict[str, Any]) -> None:
        try:
            self.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"--resume: checkpoint {ckpt} does not fit this config ({first[:200]}); "
                "resume with the run's own config, or start a new run with --out"
            ) from None
        for name in ("metrics.jsonl", "samples.jsonl"):
            if self.dist.is_main and (self.out / name).exists():
                truncate_jsonl(self.out / name, self.iteration)
        self.resumed_from = ckpt
        self._last_saved = self.iteration
        # the command line says it once (rank 0, before training); a library caller reads it
        # from resumed_from and iteration
        log.debug("resumed from %s (iteration %d)", ckpt, self.iteration)

    def save_checkpoint(self) -> Path:
        """Write a checkpoint of the current state (atomic, checksummed; keeps the newest few).

        A collective with several processes: rank 0 writes, the others wait for it.
        """
        state = self.state_dict()
        path = self.out / "checkpoints" / f"iter_{self.iteration:06d}"
        if self.dist.is_main:
            info = {"run": run_signature(self.cfg), "world_size": self.dist.world_size}
            path = save_checkpoint(
                self.out / "checkpoints",
                self.iteration,
                state,
                keep=self.cfg.train.keep_checkpoints,
                info=info,
            )
        self.dist.barrier()
        self._last_saved = self.iteration
        return path

    # ------------------------------------------------------------- loop
    def step(self) -> tuple[dict[str, Any], Rollout]:
        """One iteration: play, mix, update every agent. Returns (metrics, rollout).

        Inside :meth:`fit`, a stop signal during play raises
        :class:`~seqmarl.run.interrupts.Rewind` with every random stream put back as it was at the
        start of the iteration (nothing else has changed by then).
        """
        if self._stop is None or self.dist.enabled:  # ranks must not drop an iteration alone
            return self._learn(self._play())
        streams = self._streams()
        try:
            with self._stop.rewindable():
                roll = self._play()
        except Rewind:
            self._set_streams(streams)
            raise
        return self._learn(roll)

    def _streams(self) -> tuple[Any, ...]:
        return (
            self.prompt_rng.bit_generator.state,
            self.generator.get_state(),
            torch.get_rng_state(),
            self.league.scripted_state() if self.league is not None else None,
        )

    def _set_streams(self, streams: tuple[Any, ...]) -> None:
        self.prompt_rng.bit_generator.state = streams[0]
        self.generator.set_state(streams[1])
        torch.set_rng_state(streams[2])
        if self.league is not None:
            self.league.load_scripted_state(streams[3])

    def _play(self) -> Rollout:
        t0 = time.perf_counter()
        seats = self.setting.seat_agents(self.iteration)
        batch = self.cfg.train.batch_size
        first = self.dist.rank * self.local_batch  # this rank's prompts, with their K copies
        # every seat's length this iteration, or None: each batch draws its own
        length = self.cfg.agents.generation.iteration_length(self.iteration, self.generator)
        self.pool.play_begins()
        agents: dict[str, Any] = dict(self.pool.agents)
        if self.league is not None:  # this iteration's opponents, loaded into their slots
            self.league.prepare(self.iteration)
            agents = self.league.players()

        def draw(k: int) -> Rollout:
            """Play the ``k``-th draw of this iteration's prompts."""
            prompts = self.game.sample_prompts(batch, self.prompt_rng)
            prompts = prompts[first : first + self.local_batch]
            return play(
                self.game,
                agents,
                prompts,
                seats,
                copies=self.copies,
                generator=self.generator,
                gamma=self.cfg.train.gamma,
                max_new_tokens=length,
                first_prompt=k * batch + first,  # group ids unique over ranks and draws
            )

        roll = self._dynamic_sampling(draw) if self.cfg.train.dynamic_sampling else draw(0)
        # an engine's weight pushes happen lazily, inside generation (time/sync is part of it)
        roll.timings.update(self.pool.play_ends())
        roll.timings["play"] = time.perf_counter() - t0
        return roll

    def _dynamic_sampling(self, draw: Any) -> Rollout:
        """DAPO's dynamic sampling: draw until the batch holds informative groups only.

        Each draw plays ``train.batch_size`` fresh prompts; the groups whose returns vary for
        some learner are kept (:func:`~seqmarl.train.rollout.informative_groups`), first come first
        kept, until this rank has its share. Every rank draws as long as any rank is short,
        at most ``train.max_draws`` times (a full rank plays along and keeps nothing: a
        sharded model generates on every rank together); still short, the batch is filled
        with dropped groups in the order they were played. The metrics say how it went.
        """
        short = self.local_batch
        kept: list[Rollout] = []
        spare: list[tuple[Rollout, list[int]]] = []
        dropped = draws = 0
        learners = list(self.learners)
        while True:
            roll = draw(draws)
            draws += 1
            good = informative_groups(roll, learners)
            groups = list(dict.fromkeys(int(g) for g in roll.group_ids))
            dropped += len(groups) - len(good)
            take = good[:short]
            if take:
                kept.append(roll.take(take))
                short -= len(take)
            spare.append((roll, [g for g in groups if g not in good]))
            need = int(self.dist.all_reduce(torch.tensor([short]), op="max").item())
            if need == 0 or draws >= self.cfg.train.max_draws:
                break
        informative = self.local_batch - short
        for roll, bad in spare:  # bound reached: the batch is filled with dropped groups
            if short == 0:
                break
            kept.append(roll.take(bad[:short]))
            short -= len(bad[:short])
        pads = {a: self.pool[a].tokenizer.pad_token_id for a in self.ids}
        out = Rollout.concat(kept, pads)
        out.timings = summed_timings([roll for roll, _ in spare])  # every draw's, kept or not
        counts = self.dist.all_reduce(torch.tensor([informative, dropped, self.local_batch]))
        out.collector = {
            "episodes/draws": draws,
            "episodes/dropped_groups": int(counts[1]),
            "episodes/informative_groups": float(counts[0]) / float(counts[2]),
        }
        return out

    def _learn(self, roll: Rollout) -> tuple[dict[str, Any], Rollout]:
        seats = roll.seats
        record: dict[str, Any] = {"iteration": self.iteration}
        reset = self.cfg.train.reset_on_exchange
        it = self.iteration
        if reset and it > 0 and self.setting.seat_order(it) != self.setting.seat_order(it - 1):
            for learner in self.learners.values():  # the released CORY code's fresh trainers
                learner.reset(reset)
        t_update = time.perf_counter()
        t_start = t_update - roll.timings.get("play", 0.0)
        tokens = 0
        bad = False
        # one gather: every rank's rewards, for the logged means (rank order = global row
        # order), and its turns (which agents had one there)
        mine = (
            roll.task_rewards,
            roll.trained_rewards,
            roll.episode_returns,
            roll.uncredited,
            roll.turns,
            roll.truncated,
            *_game_infos(roll, self.ids),
        )
        ranks = self.dist.gather_objects(mine)
        (
            task_rewards,
            trained_rewards,
            episode_returns,
            uncredited,
            turns,
            truncated,
            invalid,
            forfeit,
        ) = (np.concatenate([r[k] for r in ranks]) for k in range(8))
        record["episodes/truncated"] = float(truncated.mean())
        record.update(roll.collector)
        record["episodes/turns"] = float(turns.sum(1).mean())
        if self.league is not None:
            record.update(self.league.record(task_rewards))
        together = self._learn_together(roll) if self.cfg.agents.update == "mixed" else {}
        for i, a in enumerate(self.ids):
            task_reward = float(task_rewards[:, i].mean())
            p = f"agent/{a}/"
            record.update(
                {
                    p + "task_reward": task_reward,
                    p + "reward": float(trained_rewards[:, i].mean()),
                    p + "episode_return": float(episode_returns[:, i].mean()),
                    p + "uncredited": float(uncredited[:, i].mean()),
                    p + "turns": float(turns[:, i].mean()),
                    p + "seat": seats.index(a),
                    p + "algo": self.algos[a].name,
                }
            )
            if not np.isnan(invalid[:, i]).all():  # the game reports moves it refused
                record[p + "invalid_moves"] = float(np.nanmean(invalid[:, i]))
                moves = float(turns[:, i].sum())
                if moves:  # a refused move is a turn of its own (the game lets it retry)
                    record[p + "legal_move_rate"] = 1.0 - float(np.nansum(invalid[:, i])) / moves
                if not np.isnan(forfeit[:, i]).all():  # a game that can be lost by them
                    record[p + "forfeit_rate"] = float(np.nanmean(forfeit[:, i]))
            corr = _others_correlation(task_rewards, i)
            if corr is not None:
                record[p + "others_reward_corr"] = corr
            acted = [bool(r[4][:, i].any()) for r in ranks]  # a turn on each rank
            if a not in self.learners:  # a league opponent: it played, it does not learn
                continue
            if not any(acted):  # no turn anywhere: nothing to learn from, no KL to log
                continue
            # each turn's (mixed) reward-to-go; one round: the episode's trained reward. A
            # rank where the agent had no turn takes part with no rows (src sends their form)
            comp = roll.completions.get(a)
            roles = None if comp is None else torch.full((len(comp.texts),), seats.index(a))
            metrics = together.get(a)
            if metrics is None:
                metrics = self.learners[a].learn(
                    comp,
                    roll.returns.get(a),
                    roll.turn_groups.get(a),
                    roles=roles,
                    src=None if all(acted) else acted.index(True),
                )
            kl = metrics.pop("rollout_kl")
            bad |= metrics.get("skipped_steps", 0) > 0
            record[p + "kl"] = kl
            # a fixed eta (the configured kl_coef), so runs and algorithms compare; an adaptive
            # controller's current value is logged as kl_coef
            record[p + "combined_reward"] = task_reward - self.algo_cfgs[a].kl_coef * kl
            record.update({p + k.replace("adv/", "adv_"): v for k, v in metrics.items()})
            tokens += int(comp.response_mask.sum()) if comp is not None else 0
        tokens = int(self.dist.all_reduce(torch.tensor([tokens])).item())
        t_end = time.perf_counter()
        record["time/generate"] = roll.timings["generate"]
        record["time/score"] = roll.timings["score"]
        if "sync" in roll.timings:  # part of time/generate
            record["time/sync"] = roll.timings["sync"]
        record["time/update"] = t_end - t_update
        record["time/iteration"] = t_end - t_start
        record["tokens_per_s"] = tokens / max(t_end - t_start, 1e-9)
        self.bad_iterations = self.bad_iterations + 1 if bad else 0
        return record, roll

    def _learn_together(self, roll: Rollout) -> dict[str, dict[str, float]]:
        """``agents.update=mixed``: the updates of agents that share a base, run together.

        Returns the metrics of the agents updated together; the others (and the reason each
        updates alone, logged once) are left to their own :meth:`Learner.learn`.
        """
        rows = {  # the agents that learn this iteration (a turn here; one process)
            a: len(roll.completions[a])
            for a in self.ids
            if a in self.learners and a in roll.completions and len(roll.completions[a])
        }
        groups, alone = group_learners(self.learners, rows)  # (several processes: all alone)
        for a, reason in alone.items():
            if (a, reason) not in self._logged_alone:
                self._logged_alone.add((a, reason))
                log.warning("agents.update=mixed: %s updates alone: %s", a, reason)
        out: dict[str, dict[str, float]] = {}
        seats = roll.seats
        for group in groups:
            comps = [roll.completions[a] for a in group]
            metrics = learn_together(
                [self.learners[a] for a in group],
                comps,
                [roll.returns[a] for a in group],
                [roll.turn_groups.get(a) for a in group],
                [torch.full((len(c),), seats.index(a)) for a, c in zip(group, comps, strict=True)],
            )
            out.update(zip(group, metrics, strict=True))
        return out

    def fit(self) -> dict[str, Any]:
        """Train to ``cfg.train.iterations``; returns the summary (also printed by the CLI).

        Raises:
            Interrupted: SIGINT/SIGTERM stopped the run (checkpoint written at an iteration
                boundary), or a second signal aborted it (nothing saved for that iteration).
            TrainingError: Non-finite losses repeated; the last checkpoint is intact.
        """
        try:
            return self._fit()
        except BaseException as exc:
            full = disk_full_error(exc)
            if full is not None:
                raise self._disk_full(full) from None
            raise
        finally:
            self._release()

    def _release(self) -> None:
        """Let go of the run folder (rank 0's lock); the run writes nothing more."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _disk_full(self, exc: OSError) -> DiskFull:
        """The one line for a full disk: the path, what is intact, how to go on."""
        path = full_path(exc, self.out)
        last = latest_checkpoint(self.out / "checkpoints")
        done = getattr(self, "iteration", 0) >= self.cfg.train.iterations
        if last is not None:
            what = " (training is done; the resume writes the final agents, plots and summary)"
            intact = (
                f"the last complete checkpoint {last.name} is intact{what if done else ''}; "
                f"free space and resume with: seqmarl train --resume {self.out}"
            )
        elif (self.out / "config.yaml").is_file():
            intact = (
                f"no checkpoint was written yet; free space and start again with: seqmarl "
                f"train {self.out / 'config.yaml'} --out {self.out} --overwrite"
            )
        else:
            intact = "nothing of the run was written; free space and run the command again"
        return DiskFull(diskfull.message(exc, path, intact))

    def _fit(self) -> dict[str, Any]:
        tc = self.cfg.train
        sinks: MetricSinks | _NoSink = _NoSink()
        if self.dist.is_main:
            if self._overwrite:
                removed = clear_run(self.out)
                if removed:
                    log.info("--overwrite: removed %s from %s", ", ".join(removed), self.out)
            made = not self.out.exists()
            self.out.mkdir(parents=True, exist_ok=True)
            # the sinks first: a factory that fails or returns no sink stops the run in one
            # line before config.yaml or metrics.jsonl is written
            try:
                sinks = MetricSinks(
                    self.out,
                    sinks=tc.sinks,
                    tensorboard=tc.tensorboard,
                    wandb_project=tc.wandb_project,
                    config=self.cfg.model_dump(mode="json"),
                )
            except BaseException:
                if made and not any(self.out.iterdir()):
                    self.out.rmdir()  # the folder this run made, still empty
                raise
        try:
            if self.dist.is_main:
                write_atomic(
                    self.out / "config.yaml",
                    yaml.safe_dump(self.cfg.model_dump(mode="json"), sort_keys=False),
                )
            self._overwrite = False
            self.dist.barrier()
        except BaseException:
            sinks.close()
            raise
        quiet = (lambda msg: None) if not self.dist.is_main else None  # rank 0 speaks
        with StopSignals(announce=quiet) as stop:
            self._stop = stop
            try:
                self._loop(stop, sinks)
                if stop.stopping and self.iteration < tc.iterations:
                    raise self._stopped(stop.reason)
                self._save_agents()
                summary = self._finish() if self.dist.is_main else None
                return self.dist.broadcast_object(summary)
            except Abort as abort:
                raise self._aborted(abort.signum) from None
            finally:
                self._stop = None

    def _loop(self, stop: StopSignals, sinks: MetricSinks | _NoSink) -> None:
        """Iterate until done or a stop signal; checkpoint on the way out of a stop.

        ``sinks`` (opened by :meth:`fit`) are closed here, however the loop ends.
        """
        from tqdm.auto import tqdm

        tc = self.cfg.train
        main = self.dist.is_main  # one writer: rank 0
        samples = JsonlSink(self.out / "samples.jsonl") if main else _NoSink()
        bar = tqdm(
            total=tc.iterations,
            initial=self.iteration,
            disable=not (tc.progress and main),
            desc="train",
            dynamic_ncols=True,
        )
        try:
            while self.iteration < tc.iterations and not self._stopping(stop):
                try:
                    record, roll = self.step()
                except Rewind:  # stopped while playing: state is back at this iteration's start
                    break
                if self.bad_iterations >= tc.max_bad_iterations:
                    last = latest_checkpoint(self.out / "checkpoints")
                    raise TrainingError(
                        f"non-finite loss in {self.bad_iterations} consecutive iterations "
                        f"(up to iteration {self.iteration}); stopped. Last good checkpoint: "
                        f"{last or 'none yet'}. Lower the learning rate or check the reward."
                    )
                sinks.write(record)
                if self.iteration % tc.sample_every == 0:
                    samples.write(self._samples(roll))
                self.iteration += 1
                bar.update(1)
                bar.set_postfix_str(self._postfix(record))
                if self.iteration % tc.checkpoint_every == 0 or self.iteration == tc.iterations:
                    self.save_checkpoint()
            if stop.stopping and self._last_saved != self.iteration:
                self.save_checkpoint()
        finally:  # every exit (done, signal, NaN stop, crash) flushes and closes the logs
            bar.close()
            sinks.close()
            samples.close()

    def _save_agents(self) -> None:
        """The final agents, loadable alone (sharded copies gather on every rank)."""
        sharded = self.pool.saves_on_every_rank
        if not (self.dist.is_main or sharded):
            return
        for a in self.learning:
            final = self.out / "agents" / a
            partial = final.with_name(f".partial_{a}")  # the same name on every rank (fsdp)
            try:
                if self.dist.is_main and partial.exists():
                    shutil.rmtree(partial)
                self.pool[a].save_pretrained(partial)  # rank 0 writes, sharded copies gather
                if self.dist.is_main:  # whole or not at all, as a checkpoint
                    old = final.with_name(f".old_{a}")
                    if final.exists():
                        shutil.rmtree(old, ignore_errors=True)
                        os.replace(final, old)
                    os.replace(partial, final)
                    shutil.rmtree(old, ignore_errors=True)
            except BaseException:
                if self.dist.is_main:
                    shutil.rmtree(partial, ignore_errors=True)
                raise

    def _stopping(self, stop: StopSignals) -> bool:
        """Whether a stop signal reached any rank (all ranks stop at the same boundary)."""
        if not self.dist.enabled:
            return stop.requested
        signals = [s for s in self.dist.gather_objects(stop.signum) if s is not None]
        if signals and stop.peer_signum is None:
            stop.peer_signum = signals[0]  # a stop of its own may still arrive: not an abort
        return bool(signals)

    def _finish(self) -> dict[str, Any]:
        """The final plots and summary (rank 0)."""
        from seqmarl.run.plots import plot_runs

        plots = plot_runs([self.out], self.out / "plots")
        summary = self.summary(plots)
        write_atomic(self.out / "summary.json", json.dumps(summary, indent=2))
        return summary

    def _stopped(self, signum: int | None) -> Interrupted:
        path = self.out / "checkpoints" / f"iter_{self.iteration:06d}"
        how = f"seqmarl train --resume {self.out}"
        if self.dist.enabled:
            how += f" under the same launcher with {self.dist.world_size} processes"
        return Interrupted(
            f"stopped by {signal_name(signum or 2)} after iteration {self.iteration} of "
            f"{self.cfg.train.iterations}; checkpoint {path}. Continue with: {how}",
            signum=signum,
        )

    def _aborted(self, signum: int) -> Interrupted:
        last = latest_checkpoint(self.out / "checkpoints")
        if last is None:
            after = f"no checkpoint yet; start again with --out {self.out} --overwrite"
        else:
            after = (
                f"newest complete checkpoint {last}; continue with: "
                f"seqmarl train --resume {self.out}"
            )
        return Interrupted(
            f"aborted by a second {signal_name(signum)} during iteration {self.iteration}, "
            f"nothing saved for it; {after}",
            signum=signum,
        )

    # ----------------------------------------------------------- helpers
    def _postfix(self, record: dict[str, Any]) -> str:
        parts = []
        for a in self.ids:
            p = f"agent/{a}/"
            kl = record.get(p + "kl")
            kl_text = "no turn" if kl is None else f"kl={kl:.2f}"
            if a not in self.learners and self.league is not None:
                kl_text = self.league.current.get(a, "opponent")
            parts.append(f"{a} r={record[p + 'task_reward']:+.2f} {kl_text}")
        return " | ".join(parts)

    def _samples(self, roll: Rollout) -> dict[str, Any]:
        n = min(self.cfg.train.samples_logged, len(roll.prompts) // self.copies)
        rows = [roll.sample(j, self.ids) for j in range(0, n * self.copies, self.copies)]
        return {"iteration": self.iteration, "samples": rows}

    def summary(self, plots: list[Path] | None = None) -> dict[str, Any]:
        """First vs last task reward, KL and combined reward per agent (means of up to 3 its)."""
        records = read_jsonl(self.out / "metrics.jsonl")
        k = min(3, max(1, len(records) // 2))
        out: dict[str, Any] = {"out_dir": str(self.out), "iterations": len(records), "agents": {}}
        for a in self.ids:
            row = {}
            for name in ("task_reward", "kl", "combined_reward"):
                key = f"agent/{a}/{name}"
                vals = [r[key] for r in records if r.get(key) is not None]
                if vals:
                    row[name] = {
                        "first": float(np.mean(vals[:k])),
                        "last": float(np.mean(vals[-k:])),
                    }
            out["agents"][a] = row
        out["plots"] = [str(p) for p in plots or []]
        return out


class _NoSink:
    """What a rank other than 0 logs to: nothing."""

    def write(self, record: Any) -> None:
        """Drop ``record``."""

    def close(self) -> None:
        """Nothing to close."""


def _game_infos(roll: Rollout, ids: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(R, N)`` invalid moves and forfeits per row and agent, from the game's infos.

    NaN where the game does not report them (the game suites do; OpenSpiel's games, where an
    illegal answer becomes a random legal move, report no forfeits).
    """
    invalid = np.full((len(roll.infos), len(ids)), np.nan)
    forfeit = np.full((len(roll.infos), len(ids)), np.nan)
    for r, infos in enumerate(roll.infos):
        for i, a in enumerate(ids):
            info = infos.get(a, {})
            if "invalid_moves" in info:
                invalid[r, i] = float(info["invalid_moves"])
            if "forfeit" in info:
                forfeit[r, i] = float(bool(info["forfeit"]))
    return invalid, forfeit


def _others_correlation(task_rewards: np.ndarray, i: int) -> float | None:
    """Pearson correlation over the batch of agent ``i``'s task reward with the others' mean.

    How much of an agent's reward moves with the other agents' (e.g. through the prompt) tells
    how a coefficient matrix mixes signal and noise: a cooperative sum adds the shared part, a
    competitive difference cancels it. ``None`` for one agent or a constant column.
    """
    if task_rewards.shape[1] < 2:
        return None
    own = task_rewards[:, i]
    others = np.delete(task_rewards, i, axis=1).mean(1)
    if own.std() == 0 or others.std() == 0:
        return None
    return float(np.corrcoef(own, others)[0, 1])
