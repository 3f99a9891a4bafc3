"""Every figure flmarket draws, rendered and inspected: `reproduce` (MMZD Figs. 3, 6-10 and BGFL Figs. 2-4 at tiny
sizes), `report` (a run and a sweep) and the fixation figure.

Each figure is checked as a reader would look at it: every panel with data has lines, markers, bars or areas and
both axis labels; nothing drawn is NaN or infinite; axes that count (tasks, rounds, players, alliance sizes,
messages) show only integer ticks, and no two tick labels of an axis overlap; legends lie outside the panels;
where there are error bars or bands the caption says what they are; and the PNG, the vector copy and the caption
file exist and are not empty.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import Collection, LineCollection, PolyCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox

from flmarket.analysis import plots
from flmarket.analysis.report import run_sections, save_figures, sweep_sections
from flmarket.analysis.reproduce import EXPERIMENTS as MMZD_EXPERIMENTS
from flmarket.analysis.reproduce import ReproductionSettings
from flmarket.analysis.reproduce import run_experiment as run_mmzd
from flmarket.analysis.reproduce_bgfl import EXPERIMENTS as BGFL_EXPERIMENTS
from flmarket.analysis.reproduce_bgfl import BGFLReproductionSettings, MarketTerms
from flmarket.analysis.reproduce_bgfl import run_experiment as run_bgfl
from flmarket.sim.config import load_scenario
from flmarket.sim.runner import run_scenario
from flmarket.sim.sweep import parse_grid, run_sweep

INTEGER_LABEL = re.compile(
    r"^(task|game round|aggregation round( \(all tasks\))?|decided round|alliance size M|number of organisations N"
    r"|PBFT messages|payments)$"
)
"""Axis labels of quantities that count: their ticks must be integers."""
INTERVAL_WORDS = ("interval", "standard error", "quartiles")


# ------------------------------------------------------------------------------------------------ the checks


def _renderer(figure: Figure):
    FigureCanvasAgg(figure)  # the Agg canvas, attached to this figure only (no pyplot)
    figure.canvas.draw()
    return figure.canvas.get_renderer()


def _has_data(axis: Axes) -> bool:
    return bool(axis.lines or axis.collections or axis.patches or axis.images)


def _finite_artists(axis: Axes) -> None:
    """Every line, marker set, band, bar and error bar holds finite numbers only."""
    for line in axis.lines:
        data = np.asarray(line.get_xydata(), dtype=float)
        assert np.all(np.isfinite(data)), f"{line.get_label()!r} in {axis.get_ylabel()!r} has NaN"
    for collection in axis.collections:
        assert isinstance(collection, Collection)
        if isinstance(collection, LineCollection):
            points = [np.asarray(segment, dtype=float) for segment in collection.get_segments()]
        elif isinstance(collection, PolyCollection):
            points = [np.asarray(path.vertices, dtype=float) for path in collection.get_paths()]
        else:
            points = [np.asarray(collection.get_offsets(), dtype=float)]
        for array in points:
            assert np.all(np.isfinite(array)), f"a collection of {axis.get_ylabel()!r} has NaN"
    for patch in axis.patches:
        if isinstance(patch, Rectangle):
            box = np.array([patch.get_x(), patch.get_y(), patch.get_width(), patch.get_height()], dtype=float)
            assert np.all(np.isfinite(box)), f"a bar of {axis.get_ylabel()!r} has NaN"


def _integer_ticks(axis: Axes) -> None:
    for which, label, ticks, limits, locator in (
        ("x", axis.get_xlabel(), axis.get_xticks(), axis.get_xlim(), axis.xaxis.get_major_locator()),
        ("y", axis.get_ylabel(), axis.get_yticks(), axis.get_ylim(), axis.yaxis.get_major_locator()),
    ):
        if not INTEGER_LABEL.match(label):
            continue
        assert isinstance(locator, MaxNLocator) and locator._integer, f"{which} axis {label!r}: no integer locator"
        low, high = sorted(limits)
        shown = ticks[(ticks >= low - 1e-9) & (ticks <= high + 1e-9)]
        assert len(shown) and np.allclose(shown, np.round(shown)), f"{which} axis {label!r} ticks {shown}"


def _overlap(first: Bbox, second: Bbox) -> float:
    width = min(first.x1, second.x1) - max(first.x0, second.x0)
    height = min(first.y1, second.y1) - max(first.y0, second.y0)
    return max(width, 0.0) * max(height, 0.0)


def _tick_labels_apart(axis: Axes, renderer) -> None:
    for ticks in (axis.xaxis.get_ticklabels(), axis.yaxis.get_ticklabels()):
        boxes = [label.get_window_extent(renderer) for label in ticks if label.get_visible() and label.get_text()]
        for left, right in zip(boxes, boxes[1:], strict=False):
            assert _overlap(left, right) < 1.0, f"tick labels of {axis.get_xlabel()!r} overlap"


def _legends_off_the_data(figure: Figure, renderer) -> None:
    panels = [axis.get_window_extent(renderer) for axis in figure.axes]
    for legend in figure.legends:
        box = legend.get_window_extent(renderer)
        assert all(_overlap(box, panel) < 1.0 for panel in panels), "a figure legend covers a panel"
    for axis, panel in zip(figure.axes, panels, strict=True):
        legend = axis.get_legend()
        if legend is not None:
            assert _overlap(legend.get_window_extent(renderer), panel) < 1.0, "a legend sits on its axes"


def _has_intervals(figure: Figure) -> bool:
    for axis in figure.axes:
        if any(isinstance(container, ErrorbarContainer) for container in axis.containers):
            return True
        if any(container.errorbar is not None for container in axis.containers if hasattr(container, "errorbar")):
            return True
        if any(isinstance(collection, PolyCollection) and collection.get_alpha() for collection in axis.collections):
            return True  # fill_between bands (stack plots have no alpha)
    return False


def check_figure(figure: Figure, caption: str) -> None:
    """The checks of the module docstring, on one rendered figure and its caption."""
    assert caption.strip(), "empty caption"
    renderer = _renderer(figure)
    panels = [axis for axis in figure.axes if _has_data(axis)]
    assert panels, "no panel has data"
    for axis in panels:
        assert axis.get_xlabel() and axis.get_ylabel(), f"unlabelled panel {axis.get_title()!r}"
        _finite_artists(axis)
        _integer_ticks(axis)
        _tick_labels_apart(axis, renderer)
    for axis in figure.axes:
        if not _has_data(axis):  # a panel without data explains itself
            assert any(text.get_text() for text in axis.texts), "an empty panel without a note"
    _legends_off_the_data(figure, renderer)
    if _has_intervals(figure):
        assert any(word in caption for word in INTERVAL_WORDS), f"intervals not defined in: {caption[:120]}"


def check_files(png: Path, vector: Path, caption: Path) -> None:
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert vector.suffix in (".pdf", ".svg") and vector.stat().st_size > 1000
    assert caption.name.endswith(".caption.txt") and caption.read_text().strip()


# ------------------------------------------------------------------------------------------------ reproduce


@pytest.fixture(scope="module")
def mmzd_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    settings = ReproductionSettings(
        out=tmp_path_factory.mktemp("mmzd"), repetitions=4, rounds=3, draws=2, progress=False, dpi=40
    )
    return {name: run_mmzd(name, settings) for name in MMZD_EXPERIMENTS}


@pytest.mark.parametrize("name", sorted(MMZD_EXPERIMENTS))
def test_mmzd_figures(mmzd_outputs, name: str) -> None:
    output = mmzd_outputs[name]
    check_files(output.png_path, output.vector_path, output.caption_path)
    check_figure(output.figure, output.caption_path.read_text())


@pytest.mark.parametrize("name", ["mmzd-fig8", "mmzd-fig9", "mmzd-fig10"])
def test_alliance_figures_show_the_enforceable_share_with_its_interval(mmzd_outputs, name: str) -> None:
    output = mmzd_outputs[name]
    caption = output.caption_path.read_text()
    assert "Wilson" in caption and "bootstrap" in caption and "Enforceable draws:" in caption
    (share,) = [axis for axis in output.figure.axes if axis.get_ylabel() == "enforceable share of draws"]
    assert any(isinstance(container, ErrorbarContainer) for container in share.containers)
    counts = [text.get_text() for text in share.texts]
    assert counts and all(re.fullmatch(r"\d+/\d+", text) for text in counts)  # k/n at every point


def test_mmzd_figure_7_pairs_the_single_and_the_alliance_by_colour(mmzd_outputs) -> None:
    bars, lines = mmzd_outputs["mmzd-fig7"].figure.axes
    assert bars.get_xlabel() == "strategy of the other organisations"  # the left panel is labelled
    by_colour: dict[str, set[str]] = {}
    for line in lines.lines:
        by_colour.setdefault(str(line.get_color()), set()).add(str(line.get_linestyle()))
    assert len(by_colour) == 5 and all(styles == {"-", "--"} for styles in by_colour.values())


@pytest.fixture(scope="module")
def bgfl_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    settings = BGFLReproductionSettings(
        out=tmp_path_factory.mktemp("bgfl"),
        repeats=2,
        rounds=2,
        seed=5,
        progress=False,
        terms=MarketTerms(budget=300.0, initial_local_epochs=1),  # r_max = 6: a couple of epochs per round
        dpi=40,
        figure_format="svg",
    )
    return {name: run_bgfl(name, settings) for name in BGFL_EXPERIMENTS}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BGFL_EXPERIMENTS))
def test_bgfl_figures(bgfl_outputs, name: str) -> None:
    output = bgfl_outputs[name]
    check_files(output.png_path, output.vector_path, output.caption_path)
    check_figure(output.figure, output.caption_path.read_text())


# ------------------------------------------------------------------------------------------------ reports


@pytest.fixture(scope="module")
def run_report(tmp_path_factory: pytest.TempPathFactory):
    # 25 tasks x 3 rounds: the per-round series (75 points) are smoothed, the per-task ones (25) are not
    result = run_scenario(
        load_scenario("quickstart", {"run.tasks": 25}),
        output_dir=tmp_path_factory.mktemp("runs"),
        run_id="quickstart",
        show_progress=False,
    )
    title, sections = run_sections(result.run_dir)
    folder = tmp_path_factory.mktemp("run-figures")
    return sections, save_figures(sections, folder, dpi=40), folder


@pytest.fixture(scope="module")
def sweep_report(tmp_path_factory: pytest.TempPathFactory):
    grid = parse_grid(
        {
            "sweep": {
                "name": "mix",
                "scenario": "quickstart",
                "seeds": [1, 2],
                "overrides": {"run.tasks": 4, "providers.count": 8},
            },
            "cells": [
                {"label": "defectors", "overrides": {"providers.strategy_mix": {"ALLC": 0.2, "ALLD": 0.8}}},
                {"label": "cooperators", "overrides": {"providers.strategy_mix": {"ALLC": 0.8, "ALLD": 0.2}}},
            ],
        }
    )
    output = tmp_path_factory.mktemp("sweeps")
    run_sweep(grid, workers=0, output_dir=output, show_progress=False)
    title, sections = sweep_sections(output / "mix")
    folder = tmp_path_factory.mktemp("sweep-figures")
    return sections, save_figures(sections, folder, dpi=40), folder


def test_run_report_figures(run_report) -> None:
    sections, saved, _ = run_report
    drawn = [section for section in sections if section.figure is not None]
    assert {section.name for section in drawn} == {
        "welfare",
        "strategy-shares",
        "participation",
        "payoffs",
        "rewards",
        "budget",
        "consensus",
    }
    assert len(saved) == len(drawn)
    for section, files in zip(drawn, saved, strict=True):
        check_files(files.png, files.vector, files.caption)
        assert files.caption.read_text().strip() == section.caption.strip()
        check_figure(section.figure, section.caption)


def test_run_report_gini_is_drawn_without_float_noise(run_report) -> None:
    (rewards,) = [section for section in run_report[0] if section.name == "rewards"]
    gini = [axis for axis in rewards.figure.axes if axis.get_ylabel() == "Gini of rewards"][0]
    values = np.concatenate([line.get_ydata() for line in gini.lines])
    low, high = gini.get_ylim()
    assert np.all(values >= 0) and low > -0.1 and high >= 1.0  # never a 1e-16 axis with negative values
    assert np.all((values == 0) | (np.abs(values) > plots.NOISE_FLOOR))


def test_run_report_budget_lines_are_told_apart(run_report) -> None:
    (budget,) = [section for section in run_report[0] if section.name == "budget"]
    looks = {(line.get_linestyle(), line.get_marker(), str(line.get_color())) for line in budget.figure.axes[0].lines}
    assert len(looks) == 3


def test_sweep_report_figures(sweep_report) -> None:
    sections, saved, _ = sweep_report
    drawn = [section for section in sections if section.figure is not None]
    assert [section.name for section in drawn] == [
        "against-label",
        "against-providers-strategy_mix-ALLC",
        "against-providers-strategy_mix-ALLD",
        "participation-over-tasks",
    ]
    for section, files in zip(drawn, saved, strict=True):
        check_files(files.png, files.vector, files.caption)
        check_figure(section.figure, section.caption)


def test_sweep_report_orders_labels_by_their_mix_and_keeps_bounded_intervals_in_bounds(sweep_report) -> None:
    sections = sweep_report[0]
    (labels,) = [section for section in sections if section.name == "against-label"]
    ticks = [label.get_text() for label in labels.figure.axes[0].get_xticklabels()]
    # by the share of ALLD, not alphabetically (cooperators < defectors either way: check the numbers shown)
    assert ticks == ["cooperators\n(ALLD 0.2)", "defectors\n(ALLD 0.8)"]
    for section in sections:
        for label, table in section.tables:
            if "variance" in label or "participation" in label:
                lows = pd.to_numeric(table["low"], errors="coerce").dropna()
                highs = pd.to_numeric(table["high"], errors="coerce").dropna()
                assert (lows >= 0).all() and (highs <= (1.0 if "participation" in label else np.inf)).all()


# ------------------------------------------------------------------------------------------------ fixation


def test_fixation_figure_from_a_hand_made_table(tmp_path) -> None:
    # closed form for the neutral limit is 1/N; two betas and two population sizes, 200 trials each
    table = pd.DataFrame(
        {
            "beta": [100.0, 400.0, 100.0, 400.0],
            "payoff_gap": [0.003] * 4,
            "population": [10, 10, 20, 20],
            "simulated": [0.27, 0.70, 0.25, 0.68],
            "wilson_low": [0.21, 0.63, 0.19, 0.61],
            "wilson_high": [0.33, 0.76, 0.31, 0.74],
            "theory": [0.26, 0.70, 0.26, 0.70],
            "trials": [200] * 4,
        }
    )
    figure = plots.fixation_figure(table, x="selection")
    caption = "Simulated fixation probability (95% Wilson interval over 200 trials) against the closed form."
    saved = plots.save_figure(figure, tmp_path, "fixation", caption, dpi=40, vector_format="svg")
    check_files(saved.png, saved.vector, saved.caption)
    check_figure(figure, caption)
    (axis,) = figure.axes
    assert axis.get_xlabel() == "beta x payoff gap"
    offsets = np.concatenate([line.get_xdata() for line in axis.lines if line.get_linestyle() == "-"])
    assert sorted(set(np.round(offsets, 9))) == [0.3, 1.2]  # beta x gap
    with pytest.raises(ValueError, match="missing columns \\['theory'\\]"):
        plots.fixation_figure(table.drop(columns="theory"))


def test_save_figure_refuses_bad_options(tmp_path) -> None:
    figure, _ = plots.new_figure()
    with pytest.raises(ValueError, match="format: must be one of pdf, svg, got 'eps'"):
        plots.save_figure(figure, tmp_path, "x", "a caption", vector_format="eps")
    with pytest.raises(ValueError, match=f"dpi: must be an integer in {plots.MIN_DPI}..{plots.MAX_DPI} .*, got 0"):
        plots.save_figure(figure, tmp_path, "x", "a caption", dpi=0)
    with pytest.raises(ValueError, match="caption: a figure needs a caption"):
        plots.save_figure(figure, tmp_path, "x", "  ")
    assert not list(tmp_path.iterdir())


def test_rewards_that_differ_only_in_their_last_bits_draw_as_one_bar() -> None:
    """Equal Shapley rewards of a huge pool, computed in different orders, differ by an ulp; numpy refuses 30
    bins over such a range ('Too many bins for data range'), which stopped a report. They draw as one bar."""
    pool_share = 1e6 / 30
    rewards = np.array([pool_share, np.nextafter(pool_share, 0.0), pool_share, np.nextafter(pool_share, 1e9)])
    with pytest.raises(ValueError, match="Too many bins"):
        np.histogram(rewards, bins=30)
    assert plots.histogram_bins(rewards) == 1
    per_round = pd.DataFrame({"reward_gini": [0.0, 0.0]})
    fairness = pd.DataFrame({"fairness": [np.nan, np.nan]})
    figure = plots.rewards_figure(rewards, per_round, fairness)
    bars = [patch for patch in figure.axes[0].patches if isinstance(patch, Rectangle)]
    assert len(bars) == 1 and bars[0].get_height() == 4
    spread = np.array([1.0, 2.0, 3.0])
    assert plots.histogram_bins(spread) == 30 and plots.histogram_bins(np.full(3, 5.0)) == 30


# ------------------------------------------------------------------------------------------------ smallest dpi


def _problem_at(figure: Figure, dpi: int) -> str:
    """What goes wrong drawing the figure as PNG at `dpi`: FreeType's refusal of text under a pixel ('invalid
    ppem value'), constrained layout's warning that the axes collapsed, or '' when nothing does."""
    import io
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            figure.savefig(io.BytesIO(), format="png", dpi=dpi)
        except RuntimeError as error:
            return str(error)
    return "; ".join(str(warning.message) for warning in caught)


def test_every_figure_draws_at_the_smallest_dpi_and_the_limit_is_needed(mmzd_outputs, run_report, sweep_report) -> None:
    """--dpi 1..4 crashed in FreeType after the work was done; plots.MIN_DPI is the smallest at which every figure
    draws and keeps its layout: at 5, mmzd-fig8's x-small k/n labels make FreeType fail, and at 7 mmzd-fig7's
    axes collapse. The BGFL figures use the same text sizes (test_bgfl_figures_draw_at_the_smallest_dpi)."""
    figures = {name: output.figure for name, output in mmzd_outputs.items()}
    for label, (sections, _, _) in (("run", run_report), ("sweep", sweep_report)):
        figures.update({f"{label}-{section.name}": section.figure for section in sections if section.figure})
    for name, figure in figures.items():
        assert _problem_at(figure, plots.MIN_DPI) == "", name
    assert "invalid ppem value" in _problem_at(figures["mmzd-fig8"], 5)
    assert "axes sizes collapsed to zero" in _problem_at(figures["mmzd-fig7"], plots.MIN_DPI - 1)
    with pytest.raises(ValueError, match=f"^dpi: must be an integer in {plots.MIN_DPI}..{plots.MAX_DPI} "):
        plots.png_bytes(figures["mmzd-fig8"], plots.MIN_DPI - 1)


@pytest.mark.slow
def test_bgfl_figures_draw_at_the_smallest_dpi(bgfl_outputs) -> None:
    for name, output in bgfl_outputs.items():
        assert _problem_at(output.figure, plots.MIN_DPI) == "", name
