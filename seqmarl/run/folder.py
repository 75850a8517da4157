"""Run folders: what a run writes, and when a folder may be (re)used.

A run folder holds the files of :data:`RUN_OUTPUTS`. Training into a folder that already
holds any of them is refused unless the run is resumed (``--resume``: it has a complete
checkpoint) or started again (``--overwrite``: those files go, nothing else in the folder is
touched). What a resumed run must keep is checked in :mod:`seqmarl.train.resume`.

A run writes only inside its folder. A resume (and ``eval`` writing its default ``eval/``)
refuses a folder whose outputs are or contain a symbolic link (:func:`check_no_links`): a
``summary.json`` or ``plots`` linked elsewhere would otherwise be written through, over files
outside the folder. The link is named and left alone; nothing is replaced.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from seqmarl.errors import ConfigError
from seqmarl.run.checkpoint import latest_checkpoint, list_checkpoints

__all__ = [
    "RUN_OUTPUTS",
    "check_no_links",
    "check_out_dir",
    "clear_run",
    "how_to_continue",
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
