"""Ratings from game results: Plackett-Luce updates checked by hand, ordering, plots, the extra."""

import ast
import itertools
import json
import math
import sys
from pathlib import Path

import pytest

import seqmarl.eval.ratings
from seqmarl.errors import ConfigError
from seqmarl.eval.ratings import Rating, Ratings, plot_rating_history


def runs_without_openskill(test):
    """Mark a test that needs no openskill (the autouse fixture skips the others without it)."""
    test.runs_without_openskill = True
    return test


@pytest.fixture(autouse=True)
def _games_extra(request):
    if not getattr(request.function, "runs_without_openskill", False):
        pytest.importorskip("openskill", reason="the games extra (seqmarl[games]) is not installed")


# openskill 6.2's PlackettLuce defaults
MU, SIGMA, BETA, TAU, KAPPA = 25.0, 25.0 / 3.0, 25.0 / 6.0, 25.0 / 300.0, 0.0001


def with_tau(sigma):
    """openskill adds tau to every sigma before the update: sqrt(sigma^2 + tau^2)."""
    return math.sqrt(sigma**2 + TAU**2)


def hand_win(mu_w, sigma_w, mu_l, sigma_l):
    """Weng & Lin (2011) Algorithm 4 for one game, winner w beats loser l; new (mu, sigma) each.

    c^2 = sum over teams of (sigma^2 + beta^2); p_i = exp(mu_i/c) / sum over the teams ranked
    no better than q of exp(mu/c). The winner's q is both teams, the loser's q is itself alone
    (its own term there is exp/exp = 1 and adds nothing), so with p_w + p_l = 1:
      omega_w = sigma_w^2/c (1 - p_w),  omega_l = -sigma_l^2/c p_l,
      delta_i = gamma_i sigma_i^2/c^2 p_w p_l with gamma_i = sigma_i/c (openskill's default),
      mu' = mu + omega,  sigma' = sigma sqrt(max(1 - delta, kappa)).
    """
    sw, sl = with_tau(sigma_w), with_tau(sigma_l)
    c = math.sqrt(sw**2 + sl**2 + 2 * BETA**2)
    ew, el = math.exp(mu_w / c), math.exp(mu_l / c)
    pw, pl = ew / (ew + el), el / (ew + el)
    mu_w2 = mu_w + sw**2 / c * (1 - pw)
    mu_l2 = mu_l - sl**2 / c * pl
    delta_w = (sw / c) * sw**2 / c**2 * pw * (1 - pw)
    delta_l = (sl / c) * sl**2 / c**2 * pl * (1 - pl)
    sigma_w2 = sw * math.sqrt(max(1 - delta_w, KAPPA))
    sigma_l2 = sl * math.sqrt(max(1 - delta_l, KAPPA))
    return (mu_w2, sigma_w2), (mu_l2, sigma_l2)


def hand_draw(mu_a, sigma_a, mu_b, sigma_b):
    """A tie (ranks [0, 0]): each team's q is both teams, each term counted 1/A_q = 1/2.

      omega_i = sigma_i^2/c ((1 - p_i)/2 - p_j/2) = sigma_i^2/c (1 - 2 p_i)/2,
      delta_i = gamma_i sigma_i^2/c^2 (p_i (1 - p_i)/2 + p_i (1 - p_i)/2).
    (openskill 6.2 then sets each tied team's mu change to the group's mean, but it measures
    the change on the already updated objects, so the mean is 0 and mu' = mu + omega as above.)
    """
    sa, sb = with_tau(sigma_a), with_tau(sigma_b)
    c = math.sqrt(sa**2 + sb**2 + 2 * BETA**2)
    ea, eb = math.exp(mu_a / c), math.exp(mu_b / c)
    pa, pb = ea / (ea + eb), eb / (ea + eb)
    omega_a = sa**2 / c * (1 - 2 * pa) / 2
    omega_b = sb**2 / c * (1 - 2 * pb) / 2
    delta_a = (sa / c) * sa**2 / c**2 * pa * (1 - pa)
    delta_b = (sb / c) * sb**2 / c**2 * pb * (1 - pb)
    return (
        (mu_a + omega_a, sa * math.sqrt(max(1 - delta_a, KAPPA))),
        (mu_b + omega_b, sb * math.sqrt(max(1 - delta_b, KAPPA))),
    )


def assert_rating(rating, mu, sigma, games):
    assert rating.mu == pytest.approx(mu, abs=1e-9, rel=0)
    assert rating.sigma == pytest.approx(sigma, abs=1e-9, rel=0)
    assert rating.games == games


def test_one_win_between_fresh_players_matches_the_hand_computed_update():
    # fresh: s = sqrt((25/3)^2 + (25/300)^2), c = sqrt(2 s^2 + 2 (25/6)^2), p_a = p_b = 1/2
    s = math.sqrt((25 / 3) ** 2 + (25 / 300) ** 2)
    c = math.sqrt(2 * s**2 + 2 * (25 / 6) ** 2)
    mu_a = 25 + s**2 / c * 0.5
    mu_b = 25 - s**2 / c * 0.5
    sigma = s * math.sqrt(1 - (s / c) * s**2 / c**2 * 0.25)
    # the same numbers written out, so a change in either formula or openskill shows here
    assert (mu_a, mu_b, sigma) == pytest.approx(
        (27.635389493140497, 22.364610506859503, 8.06590141354368), abs=1e-12
    )
    (hw_mu, hw_sigma), (hl_mu, hl_sigma) = hand_win(MU, SIGMA, MU, SIGMA)
    assert (hw_mu, hw_sigma, hl_mu, hl_sigma) == pytest.approx((mu_a, sigma, mu_b, sigma))

    ratings = Ratings()
    ratings.record("a", "b", 1)
    assert_rating(ratings.rating("a"), mu_a, sigma, 1)
    assert_rating(ratings.rating("b"), mu_b, sigma, 1)
    assert ratings.rating("a").ordinal == pytest.approx(mu_a - 3 * sigma, abs=1e-12)

    mirrored = Ratings()
    mirrored.record("a", "b", 0)  # b won
    assert_rating(mirrored.rating("b"), mu_a, sigma, 1)
    assert_rating(mirrored.rating("a"), mu_b, sigma, 1)


def test_a_second_game_matches_the_hand_computed_update():
    (wa, sa), (wb, sb) = hand_win(MU, SIGMA, MU, SIGMA)
    (b2, sb2), (a2, sa2) = hand_win(wb, sb, wa, sa)  # the first loser wins the rematch
    ratings = Ratings.from_games([("a", "b", 1.0), ("a", "b", 0.0)])
    assert_rating(ratings.rating("a"), a2, sa2, 2)
    assert_rating(ratings.rating("b"), b2, sb2, 2)


def test_draws_match_the_hand_computed_update():
    # two fresh players: mu stays, sigma shrinks as much as a win's (p (1 - p) is 1/4 either way)
    (_, win_sigma), _ = hand_win(MU, SIGMA, MU, SIGMA)
    ratings = Ratings()
    ratings.record("a", "b", 0.5)
    assert_rating(ratings.rating("a"), MU, win_sigma, 1)
    assert_rating(ratings.rating("b"), MU, win_sigma, 1)

    # unequal players: a beat c, then draws fresh b; the draw pulls them together
    (ma, sa), _ = hand_win(MU, SIGMA, MU, SIGMA)
    (ma2, sa2), (mb2, sb2) = hand_draw(ma, sa, MU, SIGMA)
    assert ma2 < ma and mb2 > MU
    assert (ma2, sa2, mb2, sb2) == pytest.approx(
        (27.382951894143737, 7.824804991067356, 25.2694528629999, 8.05812813545915), abs=1e-12
    )
    ratings = Ratings.from_games([("a", "c", 1), ("a", "b", 0.5)])
    assert_rating(ratings.rating("a"), ma2, sa2, 2)
    assert_rating(ratings.rating("b"), mb2, sb2, 1)


def test_repeated_wins_order_the_players_and_shrink_the_uncertainty():
    ratings = Ratings()
    sigmas = [(SIGMA, SIGMA)]
    for _ in range(10):
        ratings.record("a", "b", 1)
        sigmas.append((ratings.rating("a").sigma, ratings.rating("b").sigma))
    a, b = ratings.table()
    assert (a.name, b.name) == ("a", "b") and a.mu > b.mu and (a.games, b.games) == (10, 10)
    assert all(x1 < x0 and y1 < y0 for (x0, y0), (x1, y1) in itertools.pairwise(sigmas))
    p = ratings.win_probability("a", "b")
    assert 0.5 < p < 1
    assert ratings.win_probability("b", "a") == pytest.approx(1 - p)


def test_table_is_sorted_by_mu():
    ratings = Ratings.from_games([("a", "b", 1), ("b", "c", 1), ("a", "c", 1), ("d", "a", 1)])
    table = ratings.table()
    assert [r.mu for r in table] == sorted((r.mu for r in table), reverse=True)
    assert {r.name for r in table} == {"a", "b", "c", "d"}
    assert all(isinstance(r, Rating) for r in table)
    with pytest.raises(AttributeError):
        table[0].mu = 0.0  # frozen


def test_bad_games_and_unknown_players_are_refused():
    ratings = Ratings()
    for a, b, score in [("a", "b", 0.7), ("a", "b", -1), ("a", "b", float("nan")), ("a", "a", 1)]:
        with pytest.raises(ValueError):
            ratings.record(a, b, score)
    assert ratings.table() == [] and ratings.to_dict()["games"] == []
    ratings.record("a", "b", True)  # a bool is 1
    with pytest.raises(KeyError, match="'x'"):
        ratings.rating("x")
    with pytest.raises(KeyError):
        ratings.win_probability("a", "x")


def test_to_dict_is_json_and_from_games_rebuilds_it():
    games = [("a", "b", 1), ("b", "c", 0.5), ("c", "a", 0), ("a", "c", 1.0)]
    ratings = Ratings.from_games(games)
    d = ratings.to_dict()
    loaded = json.loads(json.dumps(d))
    assert loaded == d
    assert Ratings.from_games(loaded["games"]).to_dict() == d
    assert list(d["players"]) == [r.name for r in ratings.table()]
    assert d["players"]["a"]["games"] == 3
    assert d["model"] == {
        "name": "PlackettLuce",
        "mu": MU,
        "sigma": SIGMA,
        "beta": BETA,
        "tau": TAU,
        "kappa": KAPPA,
    }


def test_plot_rating_history_writes_a_png(tmp_path):
    ratings = Ratings()
    points = []
    for it in (30, 0, 10, 20):  # any order
        ratings.record(f"iter_{it}", "ref", 1 if it else 0.5)
        r = ratings.rating(f"iter_{it}")
        points.append((it, r.mu, r.sigma))
    out = plot_rating_history(
        points, tmp_path / "sub" / "rating.png", label="llm_0", reference="ref"
    )
    assert out == tmp_path / "sub" / "rating.png"
    data = Path(out).read_bytes()
    assert len(data) > 0 and data[:8] == b"\x89PNG\r\n\x1a\n"

    one = plot_rating_history([(5, 25.0, 8.0)], tmp_path / "one.png", label="llm_1")
    assert one.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        plot_rating_history([], tmp_path / "empty.png", label="x")


@runs_without_openskill
def test_without_openskill_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "openskill", None)
    monkeypatch.setitem(sys.modules, "openskill.models", None)
    with pytest.raises(ConfigError, match=r"seqmarl\[games\]") as err:
        Ratings()
    assert "openskill" in str(err.value)
    with pytest.raises(ConfigError, match=r"seqmarl\[games\]"):
        Ratings.from_games([("a", "b", 1)])


@runs_without_openskill
def test_openskill_and_envs_are_imported_inside_functions_only():
    tree = ast.parse(Path(seqmarl.eval.ratings.__file__).read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            top.add(node.module)
    assert not {m for m in top if m.split(".")[0] in ("openskill", "matplotlib")}
    assert not {m for m in top if m.startswith("seqmarl.envs")}
