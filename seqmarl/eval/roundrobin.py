"""``seqmarl eval RUN --round-robin``: every pair of contenders plays; ratings from all games.

Every pair of the run's contenders (:class:`~seqmarl.eval.matches.Contenders`) plays ``games``
games (:func:`~seqmarl.eval.matches.play_pairs`, the first of the pair in each seat in turn), and
openskill's Plackett-Luce model rates everyone from all of them, pair by pair in a fixed order
(:mod:`seqmarl.eval.ratings`).

**Batched.** The pairs are cut into groups, in order, played together: a group holds as many
pairs as fit in ``rows`` games at once and whose model contenders each have an agent slot of
their own (on a shared base one adapter each, so a pool with one slot per model contender
batches every pair; with full copies, one pair at a time). In a group each model contender
answers all the rows waiting on it in one generation per turn.

**Kept as it goes.** After each group its pairs' games go into ``<stem>.partial.json`` (whole
or not at all), beside the ratings. A stop signal (Ctrl-C, SIGTERM) abandons the group being
played at once and ends with one line saying how many pairs are kept
(:class:`~seqmarl.errors.Interrupted`, exit status 128 + the signal). Run the same command
again and it continues with the next group. A group's random streams come from ``(seed, its
first pair)``, and the groups from the pairs, the slots and ``rows`` alone, so a resumed round
robin plays the same games and ends with the same ratings as one never stopped. A partial file
of other settings (contenders, games, seed, checkpoint, groups) is refused in one line.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from seqmarl.errors import ConfigError, Interrupted
from seqmarl.eval.matches import Contenders, play_pairs, summarize
from seqmarl.run.diskfull import write_atomic
from seqmarl.run.interrupts import Abort, Rewind, StopSignals, signal_name

__all__ = ["pairs_of", "plan_groups", "round_robin"]

#: Games played at once by default (rows of one group).
DEFAULT_ROWS = 64


def pairs_of(contenders: Contenders, names: Sequence[str]) -> list[tuple[str, str]]:
    """Every pair of ``names`` in order, but two scripted players (nothing about the run)."""
    return [
        (a, b)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if not (contenders.scripted(a) and contenders.scripted(b))
    ]


def plan_groups(
    pairs: Sequence[tuple[str, str]],
    is_scripted: Callable[[str], bool],
    *,
    slots: int,
    games: int,
    rows: int,
) -> list[list[int]]:
    """Pair indices cut into groups in order: at most ``rows`` games and ``slots`` models each."""
    groups: list[list[int]] = []
    current: list[int] = []
    models: set[str] = set()
    for i, pair in enumerate(pairs):
        mine = {n for n in pair if not is_scripted(n)}
        if current and (len(models | mine) > slots or (len(current) + 1) * games > rows):
            groups.append(current)
            current, models = [], set()
        current.append(i)
        models |= mine
    if current:
        groups.append(current)
    return groups


def _label(pair: tuple[str, str]) -> str:
    return f"{pair[0]} vs {pair[1]}"


def round_robin(
    contenders: Contenders,
    names: Sequence[str],
    *,
    games: int,
    seed: int = 1234,
    rows: int = DEFAULT_ROWS,
    out_dir: Path | None = None,
    stem: str = "ratings",
    progress: bool = True,
    stop: StopSignals | None = None,
) -> dict[str, Any]:
    """Every pair of ``names`` plays ``games`` games; ratings (openskill) from all of them.

    Args:
        contenders: The run's contenders (its pool's slots decide the groups).
        names: The contenders to rate.
        games: Games per pair.
        seed: The reset seeds and every random stream derive from it.
        rows: Games played at once (a group's pairs times ``games``; a pair is never split).
        out_dir: Where ``<stem>.partial.json`` and the plot ``<stem>.png`` go; None: nowhere
            (no partial file, nothing to continue).
        stem: The outputs' name.
        progress: Show a bar of pairs with an ETA (on a terminal).
        stop: Stop signals to honour (a stop abandons the group being played).

    Returns:
        ``{"contenders", "games_per_pair", "pairs": {"a vs b": summary}, "ratings", "plot"}``;
        the plot (``out_dir/<stem>.png``, never over an existing file) is the learner's
        snapshots' and final agent's rating over training, with ``random`` and ``base`` as
        reference lines.

    Raises:
        ConfigError: ``out_dir/<stem>.png`` exists already, or the partial file holds a round
            robin of other settings.
        Interrupted: A stop signal; the finished pairs are kept in the partial file.
    """
    from tqdm.auto import tqdm

    from seqmarl.eval.ratings import Ratings, plot_rating_history

    for n in names:
        contenders.check(n)
    plot = Path(out_dir) / f"{stem}.png" if out_dir is not None else None
    if plot is not None and plot.exists():  # before any game: eval never overwrites
        raise ConfigError(f"{plot} exists; eval never overwrites its outputs")
    pairs = pairs_of(contenders, names)
    groups = plan_groups(
        pairs, contenders.scripted, slots=len(contenders.slots), games=games, rows=rows
    )
    key = {
        "env": contenders.cfg.task.env,
        "iteration": contenders.iteration,
        "contenders": list(names),
        "games_per_pair": games,
        "seed": seed,
        "groups": groups,
    }
    partial = Path(out_dir) / f"{stem}.partial.json" if out_dir is not None else None
    kept = _load_partial(partial, key)
    bar = tqdm(
        total=len(pairs),
        initial=sum(_label(p) in kept for p in pairs),
        desc="round robin",
        unit="pair",
        dynamic_ncols=True,
        disable=None if progress else True,  # None: shown on a terminal only
    )
    if kept:
        said = f"continuing a stopped round robin: {len(kept)} of {len(pairs)} pairs kept"
        bar.write(f"seqmarl: {said} ({partial})", file=sys.stderr)
    try:
        for group in groups:
            if all(_label(pairs[i]) in kept for i in group):
                continue
            mine = [pairs[i] for i in group]
            with stop.rewindable() if stop is not None else contextlib.nullcontext():
                played = play_pairs(contenders, mine, games=games, seed=seed, stream=group[0])
            grown = {**kept, **{_label(p): got for p, got in zip(mine, played, strict=True)}}
            if partial is not None:  # whole or not at all, also when a signal comes meanwhile
                write_atomic(partial, json.dumps({"key": key, "pairs": grown}))
            kept = grown  # (counted as kept once written)
            bar.update(len(group))
            if stop is not None and stop.requested:
                raise _stopped(stop.signum, kept, pairs, partial)
    except Rewind:  # stopped while a group played: its games are dropped, the kept stay
        raise _stopped(stop.signum if stop is not None else None, kept, pairs, partial) from None
    except Abort as exc:  # a second signal: at once; the partial file is as last written
        raise _stopped(exc.signum, kept, pairs, partial) from None
    finally:
        bar.close()
    ratings = Ratings()
    for pair in pairs:  # in order, whatever was played when: a resumed run rates alike
        ratings.record_many((pair[0], pair[1], r["score"]) for r in kept[_label(pair)])
    result: dict[str, Any] = {
        "contenders": list(names),
        "games_per_pair": games,
        "seed": seed,
        "pairs": {_label(p): summarize(kept[_label(p)])["both"] for p in pairs},
        "ratings": ratings.to_dict(),
    }
    points, refs = [], {}
    for r in ratings.table():
        if r.name.startswith("snapshot:"):
            points.append((int(r.name.partition(":")[2]), r.mu, r.sigma))
        elif r.name == contenders.learner:
            points.append((contenders.iteration, r.mu, r.sigma))
        elif r.name in ("random", "base"):  # reference lines across the plot
            refs[r.name] = (r.mu, r.sigma)
    if plot is not None and points:
        path = plot_rating_history(sorted(points), plot, label=contenders.learner, lines=refs)
        result["plot"] = str(path)
    result["partial"] = str(partial) if partial is not None else None
    return result


def _load_partial(path: Path | None, key: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The kept pairs' games of a stopped round robin with the same settings, else none."""
    if path is None or not path.exists():
        return {}
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        old, kept = saved["key"], dict(saved["pairs"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(
            f"{path}: not a round robin's partial file seqmarl can read; move it away to start "
            "afresh"
        ) from None
    if old != key:
        differ = ", ".join(k for k in key if old.get(k) != key[k]) or "format"
        raise ConfigError(
            f"{path} holds a stopped round robin with other settings ({differ}); run it again "
            "as it was to finish it, or delete the file to start afresh"
        )
    return kept


def _stopped(
    signum: int | None,
    kept: dict[str, Any],
    pairs: Sequence[tuple[str, str]],
    partial: Path | None,
) -> Interrupted:
    where = f" in {partial}" if partial is not None else " (no --out folder: none written)"
    return Interrupted(
        f"round robin stopped by {signal_name(signum or 2)}: {len(kept)} of {len(pairs)} pairs "
        f"kept{where}; run the same command again to continue",
        signum=signum,
    )
