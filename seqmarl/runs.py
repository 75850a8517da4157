"""Run folders: what a run writes, when a folder may be (re)used, and what a resume must keep.

A run folder holds the files of :data:`RUN_OUTPUTS`. Training into a folder that already
holds any of them is refused unless the run is resumed (``--resume``: it has a complete
checkpoint) or started again (``--overwrite``: those files go, nothing else in the folder is
touched). A resumed run keeps what its checkpoint was made of (:func:`run_signature`): the
model, how the agents hold it, the agent ids and each agent's algorithm; overrides may change
everything else (iterations, learning rates, logging, ...).

A run writes only inside its folder. A resume (and ``eval`` writing its default ``eval/``)
refuses a folder whose outputs are or contain a symbolic link (:func:`check_no_links`): a
``summary.json`` or ``plots`` linked elsewhere would otherwise be written through, over files
outside the folder. The link is named and left alone; nothing is replaced.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from seqmarl.checkpoint import latest_checkpoint, list_checkpoints
from seqmarl.config import RunConfig
from seqmarl.errors import ConfigError

__all__ = [
    "RUN_OUTPUTS",
    "check_no_links",
    "check_out_dir",
    "check_resume",
    "clear_run",
    "how_to_continue",
    "run_signature",
]

#: Everything ``seqmarl train`` (and ``eval``/``plot`` defaults) write into a run folder.
RUN_OUTPUTS = (
    "config.yaml",
    "metrics.jsonl",
    "samples.jsonl",
    "summary.json",
    "warnings.log",
    "checkpoints",
    "agents",
    "plots",
    "tensorboard",
    "mlruns",  # the mlflow sink's default store
    "wandb",  # the wandb sink's local files
    "eval",
)


def existing_outputs(out: Path) -> list[str]:
    """The run outputs present in ``out``."""
    return [name for name in RUN_OUTPUTS if (out / name).exists()]


def check_no_links(out: Path, names: tuple[str, ...] = RUN_OUTPUTS) -> None:
    """Refuse a run folder where a run output (or anything inside one) is a symbolic link.

    Args:
        out: The run folder.
        names: The outputs to check (default: all of :data:`RUN_OUTPUTS`).

    Raises:
        ConfigError: Every link found (where each points), and what to do.
    """
    found: list[Path] = []
    for name in names:
        top = out / name
        if top.is_symlink():
            found.append(top)
        elif top.is_dir():
            for root, dirs, files in os.walk(top):  # linked folders are listed, not entered
                found += [Path(root) / n for n in sorted(dirs + files)]
    links = [p for p in found if p.is_symlink()]
    if links:
        named = ", ".join(f"{p} (to {os.readlink(p)})" for p in links[:5])
        more = f" and {len(links) - 5} more" if len(links) > 5 else ""
        what = "is a symbolic link" if len(links) == 1 else "are symbolic links"
        raise ConfigError(
            f"{named}{more} {what}; a run writes only inside its own folder and would write "
            "through them: remove the links (or put copies of what they point to in their "
            "place) and run again"
        )


def check_out_dir(out: Path, *, overwrite: bool = False) -> None:
    """Refuse to start a new run in a folder that holds one, unless ``overwrite``.

    Raises:
        ConfigError: ``out`` holds a run; the message names the folder and the choices.
    """
    found = existing_outputs(out)
    if not found or overwrite:
        return
    ckpts = list_checkpoints(out / "checkpoints")
    if ckpts:
        raise ConfigError(
            f"{out} already holds a run (newest checkpoint {ckpts[-1].name}); continue it with "
            f"--resume {out}, start it again with --overwrite, or choose another folder with --out"
        )
    raise ConfigError(
        f"{out} holds the files of a run with no complete checkpoint ({', '.join(found)}): "
        "start it again with --overwrite (replaces those files), or choose another folder "
        "with --out"
    )


def clear_run(out: Path) -> list[str]:
    """Delete the run outputs in ``out`` (and nothing else); returns what was removed."""
    found = existing_outputs(out)
    for name in found:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return found


def run_signature(cfg: RunConfig) -> dict[str, Any]:
    """What a checkpoint of ``cfg`` is made of, by config field.

    Keys are dotted config fields, so a mismatch names the field to fix. The agents' algorithm
    decides whether they carry a value head and what algorithm state they have.
    """
    a = cfg.agents
    sig: dict[str, Any] = {
        "agents.model": a.model,
        "agents.gguf_file": a.gguf_file,
        "agents.tokenizer": a.tokenizer,
        "agents.mode": a.mode,
        "agents.dtype": a.dtype,
        "setting.num_agents": cfg.setting.build().num_agents,
        # sharded copies keep their optimizer state by parameter name, unsharded by position
        "distributed.strategy": (
            "fsdp" if cfg.distributed.strategy == "fsdp" else "single or data_parallel"
        ),
    }
    if a.mode == "shared":
        for k, v in a.lora.model_dump(mode="json").items():
            sig[f"agents.lora.{k}"] = v
    for agent_id, own in a.per_agent.items():  # a team of different models: each its own
        sig[f"agents.per_agent.{agent_id}"] = own.model_dump(mode="json", exclude_none=True)
    for agent_id in cfg.setting.build().agent_ids:
        field = f"algos.{agent_id}.name" if agent_id in cfg.algos else "algo.name"
        sig[f"{field} ({agent_id})"] = cfg.algo_for(agent_id).name
    return sig


def check_resume(saved: dict[str, Any] | None, cfg: RunConfig, checkpoint: Path) -> None:
    """Refuse a resume whose config contradicts what the checkpoint was made of.

    Args:
        saved: The checkpoint's :func:`run_signature` (``None`` for old checkpoints: no check).
        cfg: The config of the resumed run (the run's config.yaml plus overrides).
        checkpoint: The checkpoint, for the message.

    Raises:
        ConfigError: The first field that differs, both values, and the way out.
    """
    if not saved:
        return
    now = run_signature(cfg)
    # an agent's algorithm may be named through algo.name or algos.<id>.name: compare per agent
    by_agent = {k.rsplit(" (", 1)[-1]: (k, v) for k, v in saved.items() if k.endswith(")")}
    for key, value in now.items():
        if key.endswith(")"):
            agent = key.rsplit(" (", 1)[-1]
            if agent not in by_agent:
                continue  # a new agent id shows up as a num_agents mismatch
            old = by_agent[agent][1]
            field = key.split(" (")[0]
        else:
            if key not in saved:
                continue
            old, field = saved[key], key
        if old != value:
            raise ConfigError(
                f"--resume: {field}={value!r} does not match the checkpoint {checkpoint.name} "
                f"(trained with {old!r}); a resumed run keeps its model, adapters, agents and "
                "algorithms. Drop that override, or start a new run with --out"
            )


def how_to_continue(out: Path, launcher: str) -> str:
    """The newest checkpoint in ``out`` and the command that continues from it.

    ``launcher`` starts the processes, e.g. ``torchrun --standalone --nproc_per_node 2``.
    """
    last = latest_checkpoint(out / "checkpoints")
    if last is None:
        config = out / "config.yaml" if (out / "config.yaml").exists() else "CONFIG"
        return (
            f"no checkpoint yet; start again with: {launcher} -m seqmarl train {config} "
            f"--out {out} --overwrite"
        )
    return f"newest checkpoint {last}; continue with: {launcher} -m seqmarl train --resume {out}"
