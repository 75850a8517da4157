"""Player ratings from two-player game results, with uncertainty, and a plot of them over training.

:class:`Ratings` keeps a Bayesian skill estimate per player name: a mean ``mu`` and a standard
deviation ``sigma``, updated after every game with the Plackett-Luce model of Weng & Lin
(2011, Algorithm 4) as openskill implements it, with openskill's defaults (prior 25 ± 25/3,
``beta`` 25/6, ``tau`` 25/300 added to every ``sigma`` before a game, ``kappa`` 1e-4). The
players are typically checkpoints of a run (``"iter_0100"``) and a fixed reference policy::

    ratings = Ratings.from_games([("iter_0100", "ref", 1.0), ("iter_0100", "ref", 0.5)])
    ratings.table()  # [Rating(name="iter_0100", mu=..., sigma=..., games=2), ...]
    plot_rating_history([(100, r.mu, r.sigma)], "rating.png", label="llm_0", reference="ref")

A win is ``ranks=[0, 1]`` (lower wins) and a draw a tie, ``ranks=[0, 0]``: each player's ``mu``
moves towards the other's and both ``sigma`` shrink. (openskill 6.2 means to give tied teams
the mean of their ``mu`` changes, but measures them after updating in place, so each keeps its
own change, as in the paper.)

openskill ships with the optional extra ``seqmarl[games]``; it is imported when a
:class:`Ratings` is made, and a missing one is one :class:`~seqmarl.errors.ConfigError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqmarl.errors import UnknownNameError

__all__ = ["Rating", "Ratings", "plot_rating_history", "rating_history_figure"]

#: ``score_a`` -> openskill's ranks of ``[a, b]`` (lower wins; equal ranks are a tie).
_RANKS = {1.0: [0, 1], 0.0: [1, 0], 0.5: [0, 0]}


def _plackett_luce() -> Any:
    """The ``PlackettLuce`` class of openskill, or a ConfigError naming the extra."""
    from seqmarl.envs.suites import require

    return require("openskill.models", "openskill").PlackettLuce


@dataclass(frozen=True)
class Rating:
    """One player's rating.

    Attributes:
        name: The player.
        mu: The mean of the skill estimate.
        sigma: Its standard deviation.
        games: The games the player has played.
    """

    name: str
    mu: float
    sigma: float
    games: int

    @property
    def ordinal(self) -> float:
        """The conservative estimate ``mu - 3 sigma``."""
        return self.mu - 3.0 * self.sigma


class Ratings:
    """Ratings of players from two-player games, updated one game at a time.

    Attributes:
        model: openskill's ``PlackettLuce`` model with its default parameters.

    Raises:
        ConfigError: openskill (the extra ``seqmarl[games]``) is not installed.
    """

    def __init__(self) -> None:
        self.model = _plackett_luce()()
        self._players: dict[str, Any] = {}  # name -> openskill PlackettLuceRating
        self._games: dict[str, int] = {}
        self._log: list[tuple[str, str, float]] = []

    def record(self, a: str, b: str, score_a: float) -> None:
        """Update both players' ratings with the result of one game between them.

        Args:
            a: One player (new names start at the model's prior).
            b: The other player.
            score_a: ``1`` if ``a`` won, ``0`` if ``b`` won, ``0.5`` for a draw.

        Raises:
            ValueError: ``a`` and ``b`` are the same player, or the score is none of 0, 0.5, 1.
        """
        if a == b:
            raise ValueError(f"a game needs two different players, got {a!r} twice")
        score = float(score_a)
        ranks = _RANKS.get(score)
        if ranks is None:
            raise ValueError(f"score_a must be 1 (a won), 0 (b won) or 0.5 (a draw): {score_a!r}")
        before = [
            [self._players[n] if n in self._players else self.model.rating(name=n)] for n in (a, b)
        ]
        [[after_a], [after_b]] = self.model.rate(before, ranks=ranks)
        self._players[a], self._players[b] = after_a, after_b
        for n in (a, b):
            self._games[n] = self._games.get(n, 0) + 1
        self._log.append((a, b, score))

    def record_many(self, games: Iterable[tuple[str, str, float]]) -> None:
        """Record ``(a, b, score_a)`` games in order (see :meth:`record`)."""
        for a, b, score_a in games:
            self.record(a, b, score_a)

    def rating(self, name: str) -> Rating:
        """The rating of a player who has played.

        Raises:
            UnknownNameError: ``name`` has played no game (a ``KeyError``).
        """
        if name not in self._players:
            raise UnknownNameError("player", name, self._players)
        r = self._players[name]
        return Rating(name=name, mu=r.mu, sigma=r.sigma, games=self._games[name])

    def table(self) -> list[Rating]:
        """Every player's rating, highest ``mu`` first (ties by name)."""
        return sorted(map(self.rating, self._players), key=lambda r: (-r.mu, r.name))

    def win_probability(self, a: str, b: str) -> float:
        """The model's probability that ``a`` beats ``b`` (openskill's ``predict_win``).

        Raises:
            UnknownNameError: A player has played no game.
        """
        for n in (a, b):
            self.rating(n)
        return float(self.model.predict_win([[self._players[a]], [self._players[b]]])[0])

    def to_dict(self) -> dict[str, Any]:
        """The model, the players (in :meth:`table` order) and the games, JSON-friendly.

        ``Ratings.from_games(d["games"])`` rebuilds the same ratings.
        """
        m = self.model
        return {
            "model": {
                "name": "PlackettLuce",
                **{k: float(getattr(m, k)) for k in ("mu", "sigma", "beta", "tau", "kappa")},
            },
            "players": {
                r.name: {"mu": r.mu, "sigma": r.sigma, "ordinal": r.ordinal, "games": r.games}
                for r in self.table()
            },
            "games": [[a, b, s] for a, b, s in self._log],
        }

    @classmethod
    def from_games(cls, games: Iterable[Sequence[Any]]) -> Ratings:
        """Ratings after ``(a, b, score_a)`` games in order (lists, as in JSON, also do)."""
        ratings = cls()
        ratings.record_many((a, b, s) for a, b, s in games)
        return ratings


def plot_rating_history(
    points: Sequence[tuple[int, float, float]],
    path: str | Path,
    *,
    label: str,
    reference: str | None = None,
    lines: Mapping[str, tuple[float, float]] | None = None,
) -> Path:
    """Plot a player's rating (``mu`` ± ``sigma``) against the training iteration.

    Args:
        points: ``(iteration, mu, sigma)`` per snapshot, in any order.
        path: The PNG to write (its folder is made).
        label: What was rated, e.g. the agent's name.
        reference: The opponent the snapshots were rated against, named in the title.
        lines: Fixed players' ratings drawn across the plot as reference lines (``mu``, with
            a band of ± ``sigma``), e.g. ``{"random": (mu, sigma), "base": (mu, sigma)}``.

    Returns:
        The written file.

    Raises:
        ValueError: ``points`` is empty.
    """
    fig = rating_history_figure(points, label=label, reference=reference, lines=lines)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    return out


def rating_history_figure(
    points: Sequence[tuple[int, float, float]],
    *,
    label: str,
    reference: str | None = None,
    lines: Mapping[str, tuple[float, float]] | None = None,
) -> Any:
    """The figure of :func:`plot_rating_history` (a matplotlib ``Figure``)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not points:
        raise ValueError("plot_rating_history needs at least one (iteration, mu, sigma) point")
    it, mu, sigma = zip(*sorted((int(i), float(m), float(s)) for i, m, s in points), strict=True)
    lower = [m - s for m, s in zip(mu, sigma, strict=True)]
    upper = [m + s for m, s in zip(mu, sigma, strict=True)]

    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    ax.fill_between(it, lower, upper, color="C0", alpha=0.2, linewidth=0, label="mu ± sigma")
    ax.errorbar(
        it, mu, yerr=sigma, fmt="-o", color="C0", markersize=4, capsize=3, label=f"{label} (mu)"
    )
    for i, (name, (ref_mu, ref_sigma)) in enumerate((lines or {}).items()):
        color = f"C{i + 1}"
        ax.axhline(ref_mu, color=color, linestyle="--", linewidth=1, label=f"{name} (mu ± sigma)")
        ax.axhspan(ref_mu - ref_sigma, ref_mu + ref_sigma, color=color, alpha=0.08, linewidth=0)
    ax.set_xlabel("training iteration of the snapshot")
    ax.set_ylabel("rating mu (Plackett-Luce; prior 25 ± 8.3)")
    against = f" against {reference}" if reference else ""
    ax.set_title(f"rating of {label}{against} over training\n(bars and band: ± sigma)", fontsize=10)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig
