"""Training-curve and reward-vs-KL figures, built from synthetic ``metrics.jsonl`` files."""

import json

import numpy as np
import pytest

from seqmarl.run.plots import (
    EXCHANGE_GID,
    load_runs,
    plot_runs,
    reward_vs_kl_figure,
    seat_exchanges,
    smoothing_window,
    training_curves_figure,
)


def write_run(folder, iterations, exchange_every, seed=0):
    """A 2-agent competitive run whose seats swap every ``exchange_every`` iterations."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    with (folder / "metrics.jsonl").open("w") as f:
        for it in range(iterations):
            seats = (0, 1) if (it // exchange_every) % 2 == 0 else (1, 0)
            r = rng.normal(0.5, 0.3, size=2)
            rec = {"iteration": it}
            for a in range(2):
                p = f"agent/llm_{a}/"
                rec |= {
                    p + "task_reward": r[a],
                    p + "reward": r[a] - r[1 - a],
                    p + "kl": 0.01 * it,
                    p + "combined_reward": r[a] - 0.001 * it,
                    p + "seat": seats[a],
                }
            f.write(json.dumps(rec) + "\n")
    return folder


@pytest.fixture
def runs(tmp_path):
    return {
        "long": write_run(tmp_path / "long", 200, 5),
        "short": write_run(tmp_path / "short", 3, 1),
        "other": write_run(tmp_path / "other", 60, 10, seed=1),
    }


def titles(fig):
    return [fig._suptitle.get_text() if fig._suptitle else ""] + [ax.get_title() for ax in fig.axes]


def test_seat_exchanges_are_the_iterations_where_seats_change(runs):
    ((_, records),) = load_runs([runs["long"]])
    assert seat_exchanges(records) == list(range(5, 200, 5))
    ((_, records),) = load_runs([runs["short"]])
    assert seat_exchanges(records) == [1, 2]
    assert seat_exchanges([{"iteration": 0}, {"iteration": 1}]) == []


def test_training_curves_have_a_trained_reward_panel_and_exchange_lines(runs):
    loaded = load_runs([runs["long"]])
    fig = training_curves_figure(loaded)
    assert len(fig.axes) == 4
    reward_ax = next(ax for ax in fig.axes if ax.get_title().startswith("trained reward"))
    expected = [r["agent/llm_1/reward"] for r in loaded[0][1]]
    assert any(np.allclose(line.get_ydata(), expected) for line in reward_ax.lines)
    for ax in fig.axes:
        xs = sorted(line.get_xdata()[0] for line in ax.lines if line.get_gid() == EXCHANGE_GID)
        assert xs == list(range(5, 200, 5))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels.count("seat exchange") == 1 and {"llm_0", "llm_1"} <= set(labels)


def test_several_runs_with_other_schedules_get_one_exchange_entry_each(runs):
    fig = training_curves_figure(load_runs([runs["long"], runs["other"]], ["a", "b"]))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels.count("seat exchange (a)") == 1 and labels.count("seat exchange (b)") == 1
    xs = {line.get_xdata()[0] for line in fig.axes[0].lines if line.get_gid() == EXCHANGE_GID}
    assert xs == set(range(5, 200, 5)) | set(range(10, 60, 10))


@pytest.mark.parametrize("names", [["short"], ["long"], ["long", "short"]])
def test_titles_mention_smoothing_only_when_there_is_some(runs, names):
    loaded = load_runs([runs[n] for n in names])
    for fig in (training_curves_figure(loaded), reward_vs_kl_figure(loaded)):
        text = " ".join(titles(fig))
        assert "moving average over 1 " not in text and "over 1)" not in text
        assert ("moving average" in text) == ("long" in names)
        if "long" in names:
            assert f"moving average over {smoothing_window(200)}" in text


def test_smoothing_window_is_none_for_short_runs_and_bounded():
    assert [smoothing_window(n) for n in (1, 3, 19, 20, 200, 10_000)] == [1, 1, 1, 2, 20, 50]


@pytest.mark.parametrize("build", [training_curves_figure, reward_vs_kl_figure])
def test_legends_lie_outside_every_axes(runs, build):
    fig = build(load_runs([runs["long"], runs["short"]]))
    fig.canvas.draw()
    legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert legends
    for legend in legends:
        box = legend.get_window_extent()
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent()), ax.get_title()


def test_plot_runs_writes_both_pngs_with_the_outside_legend(runs, tmp_path):
    files = plot_runs([runs["long"]], tmp_path / "p")
    assert [f.name for f in files] == ["training_curves.png", "reward_vs_kl.png"]
    assert all(f.stat().st_size > 10_000 for f in files)


def write_league_run(folder, iterations=12):
    """llm_0 learns; the league fills llm_1 with random, base or a snapshot (no forfeits)."""
    folder.mkdir(parents=True)
    drawn = ["random", "base", "snapshot"]
    with (folder / "metrics.jsonl").open("w") as f:
        for it in range(iterations):
            kind = drawn[it % 3]
            win = {"random": 0.9, "base": 0.5, "snapshot": 0.3}[kind]
            rec = {"iteration": it, "league/candidates": 3.0}
            for slot_key, value in (("win_rate", win), ("draw_rate", 0.0), ("return", 2 * win - 1)):
                rec[f"league/llm_1/{slot_key}"] = value
                rec[f"league/llm_1/vs/{kind}/{slot_key}"] = value
            if kind == "snapshot":
                rec["league/llm_1/snapshot_age"] = float(it % 2)
            rec |= {
                "agent/llm_0/task_reward": 2 * win - 1,
                "agent/llm_0/kl": 0.01 * it,
                "agent/llm_0/legal_move_rate": 0.8,
                "agent/llm_1/task_reward": 1 - 2 * win,
                "agent/llm_1/legal_move_rate": 0.7,
            }
            f.write(json.dumps(rec) + "\n")
    return folder


def test_game_curves_show_each_opponent_kind_and_leave_out_empty_panels(tmp_path):
    from seqmarl.run.plots import game_curves_figure

    fig = game_curves_figure(load_runs([write_league_run(tmp_path / "run")]))
    names = [ax.get_title() for ax in fig.axes]
    assert len(names) == 3 and not any("forfeit" in t for t in names)  # no forfeits logged
    win = next(ax for ax in fig.axes if "win rate against each opponent kind" in ax.get_title())
    lines = {line.get_label(): line for line in win.lines}
    assert set(lines) == {"vs random", "vs base", "vs snapshot age 0", "vs snapshot age 1"}
    assert list(lines["vs random"].get_xdata()) == [0, 3, 6, 9]
    assert set(lines["vs random"].get_ydata()) == {0.9}
    assert list(lines["vs snapshot age 0"].get_xdata()) == [2, 8]  # (2 % 2, 8 % 2: age 0)
    ret = next(ax for ax in fig.axes if "return against" in ax.get_title())
    assert {line.get_label() for line in ret.lines} == set(lines)


def test_the_league_seat_is_marked_and_left_out_of_reward_vs_kl(tmp_path):
    loaded = load_runs([write_league_run(tmp_path / "run")])
    fig = training_curves_figure(loaded)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "llm_1 (league: drawn opponents)" in labels and "llm_0" in labels
    assert len(fig.axes) == 2  # task reward and KL: no trained or combined reward logged
    fig = reward_vs_kl_figure(loaded)
    (path,) = [line for line in fig.axes[0].lines if len(line.get_xdata()) > 1]
    learner = [r["agent/llm_0/task_reward"] for r in loaded[0][1]]
    assert np.allclose(path.get_ydata(), learner)  # the learner's, not a mean with llm_1


def test_the_ratings_plot_draws_random_and_base_as_reference_lines():
    from seqmarl.eval.ratings import rating_history_figure

    refs = {"random": (18.0, 1.5), "base": (24.0, 2.0)}
    fig = rating_history_figure([(0, 25.0, 2.0), (4, 28.0, 1.0)], label="llm_0", lines=refs)
    (ax,) = fig.axes
    flat = {line.get_label(): set(line.get_ydata()) for line in ax.lines}
    assert flat["random (mu ± sigma)"] == {18.0} and flat["base (mu ± sigma)"] == {24.0}
    assert "random (mu ± sigma)" in [t.get_text() for t in ax.get_legend().get_texts()]
