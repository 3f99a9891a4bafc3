"""Publication figures: every plot flmarket draws, as functions of pandas frames onto matplotlib Figures.

One module for the run and sweep reports (`analysis.report`), the paper reproductions (`analysis.reproduce`,
`analysis.reproduce_bgfl`), the fixation check (`analysis.fixation`) and users. Each public figure function takes
tidy frames (as `analysis.metrics`, `analysis.sweeps` or the reproductions' CSVs give them) and returns a
`matplotlib.figure.Figure` drawn on the Agg canvas: no pyplot, no global state, safe in threads and notebooks.
The helpers (`smoothed_line`, `integer_ticks`, `legend_outside`) draw on a matplotlib Axes a user passes.

Conventions every figure keeps (issue 16, "publication figures"):
- short titles; what a reader needs to judge the figure (settings, verdicts, what each bar or band is) goes into
  a caption, which `save_figure` writes beside the image as NAME.caption.txt and the report shows as figcaption;
- axes that count (tasks, game or aggregation rounds, players, messages) have integer ticks (`integer_ticks`);
- series longer than SMOOTHING_THRESHOLD points are drawn as a centred rolling mean with the raw values faint;
- legends sit outside the axes (below or to the right of the panels), never on the data;
- nothing non-finite is drawn: NaN points are dropped, and quantities that are zero up to float noise (a Gini of
  equal rewards, 1e-16) are drawn as 0;
- output is PNG at `dpi` (default DEFAULT_DPI, MIN_DPI..MAX_DPI) plus a vector copy, PDF or SVG (`save_figure`).

Intervals are computed by the callers (they know the samples) and passed in as low/high columns; the figure
functions only draw them.
"""

from __future__ import annotations

import argparse
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from scipy import stats

from flmarket.arguments import integer_in

DEFAULT_DPI = 200
MIN_DPI = 8  # below 6 FreeType refuses the smallest text ("x-small", 5.8 pt: "invalid ppem value"); below 8
# constrained layout collapses (mmzd-fig7: "axes sizes collapsed to zero") and the figure is drawn unlaid-out
MAX_DPI = 1200  # print resolution; at 1200 dpi mmzd-fig8 is 12,240 x 3,840 pixels (peak memory 0.4 GB)
DPI_NOTE = f" (below {MIN_DPI} a figure's text and layout cannot be drawn)"
VECTOR_FORMATS = ("pdf", "svg")
DEFAULT_FORMAT = "pdf"
CAPTION_SUFFIX = ".caption.txt"
PANEL_SIZE = (3.6, 2.8)  # inches per panel: a two-panel figure is 7.2 in wide, a journal's full text width
SMOOTHING_THRESHOLD = 60
RAW_ALPHA = 0.25
NOISE_FLOOR = 1e-9
LEVEL = 0.95
# Okabe & Ito (2008): distinguishable with the common colour-vision deficiencies; yellow last (faint on white).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def colour(index: int) -> str:
    """The index-th colour of PALETTE (cycling)."""
    return PALETTE[index % len(PALETTE)]


# ------------------------------------------------------------------------------------------------ figures and files


def new_figure(columns: int = 1, rows: int = 1, panel: tuple[float, float] = PANEL_SIZE) -> tuple[Figure, np.ndarray]:
    """A constrained-layout Figure of rows x columns panels and its axes as a flat array (row-major)."""
    if columns < 1 or rows < 1:
        raise ValueError(f"columns, rows: must be >= 1, got {columns}, {rows}")
    figure = Figure(figsize=(panel[0] * columns, panel[1] * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    return figure, axes.ravel()


@dataclass(frozen=True)
class SavedFigure:
    """The three files `save_figure` writes: the PNG, the vector copy (PDF or SVG) and the caption."""

    png: Path
    vector: Path
    caption: Path


def check_output_options(dpi: int, vector_format: str) -> None:
    """Reject a dpi outside MIN_DPI..MAX_DPI or a vector format other than VECTOR_FORMATS, naming the value: below
    MIN_DPI the font renderer cannot size the figures' smallest text or the layout collapses (at matplotlib's
    default 10 pt font), and a larger dpi makes the PNG renderer ask for gigabytes; both would fail after the
    work is done."""
    if isinstance(dpi, bool) or not isinstance(dpi, int | np.integer) or not MIN_DPI <= dpi <= MAX_DPI:
        raise ValueError(f"dpi: must be an integer in {MIN_DPI}..{MAX_DPI}{DPI_NOTE}, got {dpi!r}")
    if vector_format not in VECTOR_FORMATS:
        raise ValueError(f"format: must be one of {', '.join(VECTOR_FORMATS)}, got {vector_format!r}")


def png_bytes(figure: Figure, dpi: int = DEFAULT_DPI) -> bytes:
    """The figure as PNG bytes at `dpi`."""
    check_output_options(dpi, DEFAULT_FORMAT)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save_figure(
    figure: Figure,
    directory: str | Path,
    name: str,
    caption: str,
    dpi: int = DEFAULT_DPI,
    vector_format: str = DEFAULT_FORMAT,
) -> SavedFigure:
    """Write NAME.png (at `dpi`), NAME.pdf or NAME.svg, and NAME.caption.txt (the caption, one paragraph per
    line) into `directory`; return their paths. The PDF carries no creation date, so a re-run gives the same file.
    """
    check_output_options(dpi, vector_format)
    if not caption.strip():
        raise ValueError(f"caption: a figure needs a caption, got an empty one for {name!r}")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / f"{name}.png"
    vector = folder / f"{name}.{vector_format}"
    caption_path = folder / f"{name}{CAPTION_SUFFIX}"
    figure.savefig(png, dpi=dpi, metadata={"Software": "flmarket"})
    metadata = {"Creator": "flmarket", "CreationDate": None} if vector_format == "pdf" else {"Date": None}
    figure.savefig(vector, format=vector_format, metadata=metadata)
    caption_path.write_text(caption.strip() + "\n", encoding="utf-8")
    return SavedFigure(png, vector, caption_path)


def add_figure_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options of figure output, shared by `flmarket report` and `flmarket reproduce`:
    --dpi (PNG resolution) and --format (the vector copy, pdf or svg)."""
    parser.add_argument(
        "--dpi",
        type=integer_in(MIN_DPI, MAX_DPI, DPI_NOTE),
        default=DEFAULT_DPI,
        help=f"resolution of the PNG figures, {MIN_DPI}..{MAX_DPI} dots per inch (default {DEFAULT_DPI})",
    )
    parser.add_argument(
        "--format",
        choices=VECTOR_FORMATS,
        default=DEFAULT_FORMAT,
        help=f"vector copy written beside each PNG (default {DEFAULT_FORMAT})",
    )


# ------------------------------------------------------------------------------------------------ axes helpers


def integer_locator() -> MaxNLocator:
    """Integer ticks at steps of 1, 2 or 5 times a power of ten, as many as the axis length allows."""
    return MaxNLocator(nbins="auto", steps=[1, 2, 5, 10], integer=True)


def integer_ticks(axis: Axes, which: str = "x") -> None:
    """Integer-only major ticks on the x axis, the y axis or both (`which` = "x", "y" or "both")."""
    if which not in ("x", "y", "both"):
        raise ValueError(f"which: must be 'x', 'y' or 'both', got {which!r}")
    if which in ("x", "both"):
        axis.xaxis.set_major_locator(integer_locator())
    if which in ("y", "both"):
        axis.yaxis.set_major_locator(integer_locator())


def legend_outside(
    figure: Figure,
    handles: Sequence[object] | None = None,
    labels: Sequence[str] | None = None,
    where: str = "below",
    columns: int | None = None,
    title: str | None = None,
) -> None:
    """One legend for the whole figure, outside the panels (constrained layout makes room): `where` = "below"
    (centred, `columns` entries per row, default up to 5) or "right" (one column, top-aligned)."""
    if handles is None or labels is None:
        found: dict[str, object] = {}
        for axis in figure.axes:
            for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
                if not label.startswith("_"):
                    found.setdefault(label, handle)
        handles, labels = list(found.values()), list(found)
    if not labels:
        return
    if where == "below":
        figure.legend(
            handles,
            labels,
            handler_map={tuple: HandlerTuple(ndivide=None)},  # a (line, patch) pair shows both
            loc="outside lower center",
            ncols=columns or min(len(labels), 5),
            title=title,
            title_fontsize="small",
            fontsize="small",
            frameon=False,
        )
    elif where == "right":
        figure.legend(handles, labels, loc="outside right upper", ncols=1, title=title, fontsize="small")
    else:
        raise ValueError(f"where: must be 'below' or 'right', got {where!r}")


def smoothing_window(points: int) -> int:
    """Rolling-mean window for a series of `points` values: about 4% of its length, at least 5."""
    return max(5, int(round(points / 25)))


def _finite_pairs(x: Iterable[float], y: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    xs = pd.to_numeric(pd.Series(list(x)), errors="coerce").to_numpy(dtype=float)
    ys = pd.to_numeric(pd.Series(list(y)), errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(xs) & np.isfinite(ys)
    return xs[keep], ys[keep]


def smoothed_line(
    axis: Axes,
    x: Iterable[float],
    y: Iterable[float],
    label: str,
    color: str | None = None,
    linestyle: str = "-",
    marker: str = "o",
    window: int | None = None,
    raw: bool = True,
    threshold: int = SMOOTHING_THRESHOLD,
) -> int:
    """Draw y against x; NaN points are dropped. A series longer than `threshold` is drawn as its centred
    rolling mean over `window` points (default `smoothing_window`), with the raw values faint behind it when
    `raw`; a shorter one is drawn point by point with markers. Returns the window used (1: not smoothed)."""
    xs, ys = _finite_pairs(x, y)
    if xs.size == 0:
        return 1
    if xs.size <= threshold:
        axis.plot(xs, ys, linestyle=linestyle, marker=marker, markersize=3, color=color, label=label)
        return 1
    used = window or smoothing_window(xs.size)
    if raw:
        axis.plot(xs, ys, linestyle="-", linewidth=0.6, color=color, alpha=RAW_ALPHA, label="_raw")
    smooth = pd.Series(ys).rolling(used, center=True, min_periods=1).mean().to_numpy()
    axis.plot(xs, smooth, linestyle=linestyle, linewidth=1.6, color=color, label=label)
    return used


def denoise(values: Iterable[float], floor: float = NOISE_FLOOR) -> np.ndarray:
    """Values with |v| < floor set to exactly 0 (float noise of a quantity that is 0, e.g. a Gini of 1e-16)."""
    array = pd.to_numeric(pd.Series(list(values)), errors="coerce").to_numpy(dtype=float)
    return np.where(np.abs(array) < floor, 0.0, array)


def t_half_width(standard_error: Iterable[float], samples: Iterable[float], level: float = LEVEL) -> np.ndarray:
    """Half-width t_{(1+level)/2, n-1} * SE of a Student-t interval from standard errors and sample counts."""
    errors = np.asarray(list(standard_error), dtype=float)
    counts = np.asarray(list(samples), dtype=float)
    with np.errstate(invalid="ignore"):
        return stats.t.ppf(0.5 + level / 2, np.maximum(counts - 1, 1)) * errors


def _error_pair(frame: pd.DataFrame, mean: str, low: str, high: str) -> np.ndarray:
    """Asymmetric error bars [mean - low, high - mean] (2 x n), 0 where the interval is NaN."""
    centre = frame[mean].to_numpy(dtype=float)
    below = np.nan_to_num(centre - frame[low].to_numpy(dtype=float), nan=0.0)
    above = np.nan_to_num(frame[high].to_numpy(dtype=float) - centre, nan=0.0)
    return np.vstack([np.maximum(below, 0.0), np.maximum(above, 0.0)])


def _empty_panel(axis: Axes, message: str) -> None:
    axis.text(0.5, 0.5, message, ha="center", va="center", transform=axis.transAxes, fontsize="small")
    axis.set_xticks([])
    axis.set_yticks([])


# ------------------------------------------------------------------------------------------------ run report


def welfare_figure(
    tasks: pd.DataFrame,
    rounds: pd.DataFrame | None = None,
    references: pd.DataFrame | None = None,
    warmup_tasks: int | None = None,
) -> Figure:
    """Task welfare P(y) (SPEC B.1) over tasks, with the per-task social optimum and all-defect Nash welfare of
    `references` (`metrics.welfare_against_references`) and the MSER-5 warm-up shaded; and, if `rounds` has rows,
    the mechanism's welfare W (B 21) per aggregation round. Columns: tasks[task, welfare], rounds[welfare]."""
    has_rounds = rounds is not None and not rounds.empty
    figure, axes = new_figure(2 if has_rounds else 1, panel=(4.2, 3.0))
    left = axes[0]
    if tasks.empty:
        _empty_panel(left, "no task_finished events")
    else:
        smoothed_line(left, tasks["task"], tasks["welfare"], "task welfare P(y)", colour(0))
        if references is not None and not references.empty:
            smoothed_line(
                left,
                references["task"],
                references["optimum_welfare"],
                "social optimum",
                colour(2),
                linestyle="--",
                marker="",
                raw=False,
            )
            smoothed_line(
                left,
                references["task"],
                references["nash_welfare"],
                "all-defect Nash",
                colour(6),
                linestyle=":",
                marker="",
                raw=False,
            )
        if warmup_tasks:
            first = float(tasks["task"].iloc[0])
            end = float(tasks["task"].iloc[min(int(warmup_tasks), len(tasks) - 1)])
            left.axvspan(first, end, color="grey", alpha=0.15, linewidth=0, label="warm-up (MSER-5)")
        left.set_xlabel("task")
        left.set_ylabel("social welfare P(y)")
        integer_ticks(left)
    if has_rounds:
        right = axes[1]
        smoothed_line(right, np.arange(1, len(rounds) + 1), rounds["welfare"], "round welfare W (B 21)", colour(1))
        right.set_xlabel("aggregation round (all tasks)")
        right.set_ylabel("mechanism welfare W")
        integer_ticks(right)
    legend_outside(figure)
    return figure


def shares_figure(shares: pd.DataFrame) -> Figure:
    """Strategy shares over simulated time as a stacked area (`metrics.strategy_shares`: time, strategy, share)."""
    wide = shares.pivot_table(index="time", columns="strategy", values="share", aggfunc="sum", fill_value=0.0)
    figure, (axis,) = new_figure(1, panel=(6.0, 3.0))
    columns = [str(name) for name in wide.columns]
    axis.stackplot(
        wide.index.to_numpy(dtype=float),
        np.clip(wide.to_numpy(dtype=float).T, 0.0, 1.0),
        labels=columns,
        colors=[colour(index) for index in range(len(columns))],
    )
    axis.set_xlabel("simulated time (s)")
    axis.set_ylabel("share of providers")
    axis.set_ylim(0, 1)
    axis.set_xlim(float(wide.index.min()), float(wide.index.max()) if len(wide) > 1 else float(wide.index.min()) + 1)
    legend_outside(figure, where="right", title="strategy")
    return figure


def participation_figure(
    participation: pd.DataFrame, references: pd.DataFrame | None = None, riding: pd.DataFrame | None = None
) -> Figure:
    """Participation per task: all providers (sum_j y_j / (N R), with the welfare-maximising share of
    `references`), by strategy (`metrics.participation_by_strategy`), and the free riders' payoff gap
    (`metrics.free_riding`). Long series are smoothed with the raw values faint."""
    figure, (overall, by_strategy, gap) = new_figure(3, panel=(3.3, 2.8))
    if references is not None and not references.empty:
        full = references["full_cooperation_total"].astype(float).where(references["full_cooperation_total"] > 0)
        smoothed_line(
            overall, references["task"], references["total_participation"].astype(float) / full, "realised", colour(0)
        )
        smoothed_line(
            overall,
            references["task"],
            references["optimum_total"].astype(float) / full,
            "social optimum",
            colour(2),
            linestyle="--",
            marker="",
            raw=False,
        )
        overall.set_ylim(-0.02, 1.02)
        overall.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), fontsize="small", frameon=False, ncols=2)
        integer_ticks(overall)
    else:
        _empty_panel(overall, "no welfare_reference events")
    overall.set_title("all providers", fontsize="medium")
    overall.set_xlabel("task")
    overall.set_ylabel("participation sum y / (N R)")
    column = "participation_rate" if participation["participation_rate"].notna().any() else "mean_action"
    for index, (strategy, group) in enumerate(participation.groupby("strategy", sort=True)):
        smoothed_line(
            by_strategy, group["task"], group[column], str(strategy), colour(index), marker=MARKERS[index % 8]
        )
    by_strategy.set_title("by strategy", fontsize="medium")
    by_strategy.set_xlabel("task")
    by_strategy.set_ylabel("participation y/R" if column == "participation_rate" else "mean action y")
    if column == "participation_rate":
        by_strategy.set_ylim(-0.02, 1.02)
    integer_ticks(by_strategy)
    by_strategy.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), fontsize="small", frameon=False, ncols=3)
    if riding is not None and riding["payoff_gap"].notna().any():
        smoothed_line(gap, riding["task"], riding["payoff_gap"], "payoff gap", colour(1))
        gap.axhline(0, color="black", linewidth=0.8)
        gap.set_xlabel("task")
        gap.set_ylabel("free riders' payoff - others'")
        integer_ticks(gap)
    else:
        _empty_panel(gap, "no free riders beside contributors")
        gap.set_xlabel("task")
        gap.set_ylabel("free riders' payoff - others'")
    gap.set_title("free riding", fontsize="medium")
    return figure


def payoff_figure(payoffs: pd.DataFrame) -> Figure:
    """Box plots of the provider utility U_i per task (SPEC B.1), one box per strategy (columns strategy,
    utility); whiskers at 1.5 IQR, outliers as small dots."""
    groups = {
        str(name): group["utility"].astype(float).dropna().to_numpy()
        for name, group in payoffs.groupby("strategy", sort=True)
    }
    figure, (axis,) = new_figure(1, panel=(max(3.6, 0.9 * len(groups) + 1.5), 2.8))
    axis.boxplot(
        list(groups.values()),
        tick_labels=list(groups),
        flierprops={"marker": ".", "markersize": 2, "alpha": 0.4},
        medianprops={"color": colour(1)},
    )
    axis.axhline(0, color="grey", linewidth=0.6, linestyle=":")
    axis.set_xlabel("strategy")
    axis.set_ylabel("utility U_i per task")
    return figure


def histogram_bins(values: np.ndarray, wanted: int = 30) -> int:
    """`wanted` bins, or one when the values differ by too few float steps to cut into that many finite bins (equal
    rewards computed in different orders differ in the last bits: numpy refuses 30 bins over a range of 1 ulp)."""
    if values.size == 0:
        return wanted
    spread = float(np.max(values) - np.min(values))
    if 0.0 < spread < 4 * wanted * float(np.spacing(np.max(np.abs(values)))):
        return 1
    return wanted


def rewards_figure(rewards: pd.Series | np.ndarray, per_round: pd.DataFrame, fairness: pd.DataFrame) -> Figure:
    """Every Shapley reward paid (B 13) as a histogram; per aggregation round the Gini coefficient of the rewards
    (`metrics.reward_distribution`, float noise below NOISE_FLOOR drawn as 0, axis from 0) and the correlation of
    reward and contribution (`metrics.shapley_fairness`, axis [-1, 1])."""
    figure, (histogram, gini_axis, fairness_axis) = new_figure(3, panel=(3.3, 2.8))
    values = pd.to_numeric(pd.Series(np.asarray(rewards)), errors="coerce").dropna().to_numpy(dtype=float)
    histogram.hist(values, bins=histogram_bins(values), color=colour(2))
    histogram.set_xlabel("reward rho_i per round")
    histogram.set_ylabel("payments")
    integer_ticks(histogram, "y")
    gini = denoise(per_round["reward_gini"])
    smoothed_line(gini_axis, np.arange(1, len(gini) + 1), gini, "Gini", colour(0))
    top = float(np.nanmax(gini)) if np.isfinite(gini).any() else 1.0
    gini_axis.set_ylim(-0.03, max(1.0, top * 1.05))  # a line at exactly 0 stays visible above the spine
    gini_axis.set_xlabel("aggregation round")
    gini_axis.set_ylabel("Gini of rewards")
    integer_ticks(gini_axis)
    correlation = pd.to_numeric(fairness["fairness"], errors="coerce").to_numpy(dtype=float)
    fairness_axis.set_xlabel("aggregation round")
    fairness_axis.set_ylabel("corr(reward, contribution)")
    if np.isfinite(correlation).any():
        smoothed_line(fairness_axis, np.arange(1, len(correlation) + 1), correlation, "fairness", colour(3))
        fairness_axis.axhline(0, color="grey", linewidth=0.6, linestyle=":")
        fairness_axis.set_ylim(-1.05, 1.05)
        integer_ticks(fairness_axis)
    else:
        _empty_panel(fairness_axis, "constant rewards or contributions:\nno correlation")
    return figure


BUDGET_LINES = (
    ("provider_budget_use", "rewards paid / B(1 - sigma)", "-", "o"),
    ("committee_budget_use", "committee cost / (B sigma) (B 15a)", "--", "s"),
    ("round_cap_use", "rounds run / r_max (B 11)", ":", "^"),
)


def budget_figure(budget: pd.DataFrame) -> Figure:
    """Per task, the fractions of the budget used (`metrics.budget_use`); each line has its own colour, dash and
    marker, so lines that coincide (committee use and round-cap use move together by B 11) stay visible."""
    figure, (axis,) = new_figure(1, panel=(6.0, 3.0))
    for index, (column, label, style, marker) in enumerate(BUDGET_LINES):
        x, y = _finite_pairs(budget["task"], budget[column])
        if len(x) <= SMOOTHING_THRESHOLD:
            axis.plot(
                x,
                y,
                linestyle=style,
                marker=marker,
                markersize=4 + 2 * (len(BUDGET_LINES) - index - 1),
                markerfacecolor="none",
                color=colour(index),
                label=label,
            )
        else:
            smoothed_line(axis, x, y, label, colour(index), linestyle=style)
    axis.set_xlabel("task")
    axis.set_ylabel("fraction used")
    axis.set_ylim(bottom=0.0)
    integer_ticks(axis)
    legend_outside(figure, where="right")
    return figure


def consensus_figure(consensus: pd.DataFrame) -> Figure:
    """PBFT messages and decision latency per decided round (`metrics.consensus_costs`, SPEC D.2)."""
    figure, (messages, latency) = new_figure(2)
    positions = np.arange(1, len(consensus) + 1)
    smoothed_line(messages, positions, consensus["messages"], "messages", colour(0))
    messages.set_xlabel("decided round")
    messages.set_ylabel("PBFT messages")
    integer_ticks(messages, "both")
    smoothed_line(latency, positions, consensus["latency_s"], "latency", colour(3))
    latency.set_xlabel("decided round")
    latency.set_ylabel("consensus latency (s)")
    integer_ticks(latency)
    return figure


# ------------------------------------------------------------------------------------------------ sweep report


def parameter_figure(
    tables: Sequence[tuple[str, pd.DataFrame]],
    parameter: str,
    label: str | None = None,
    tick_labels: Sequence[str] | None = None,
) -> Figure:
    """One panel per measure against a swept parameter: means with asymmetric error bars (columns of each table:
    `parameter`, mean, low, high). Numeric parameters are placed at their values; categorical ones in the table's
    order at 0..k-1, labelled `tick_labels` (default the values), rotated and thinned so they do not overlap."""
    figure, axes = new_figure(len(tables), panel=(3.3, 2.9))
    for axis, (measure, table) in zip(axes, tables, strict=True):
        values = table[parameter]
        numeric = pd.api.types.is_numeric_dtype(values) and tick_labels is None
        frame = table.copy()
        frame["position"] = values.to_numpy(dtype=float) if numeric else np.arange(len(values), dtype=float)
        shown = frame[np.isfinite(frame["mean"].to_numpy(dtype=float))]
        axis.errorbar(
            shown["position"],
            shown["mean"],
            yerr=_error_pair(shown, "mean", "low", "high"),
            fmt="o-" if numeric else "o",
            capsize=3,
            color=colour(0),
            markersize=4,
        )
        if numeric:
            if np.allclose(frame["position"], np.round(frame["position"])):
                integer_ticks(axis)
        else:
            names = list(tick_labels) if tick_labels is not None else [str(value) for value in values]
            positions = frame["position"].to_numpy()
            if len(names) <= 4:  # few categories: upright, the mix on a second line
                axis.set_xticks(positions, [name.replace(" (", "\n(") for name in names])
            else:  # many: rotated, and every k-th only beyond 8
                step = max(1, math.ceil(len(names) / 8))
                axis.set_xticks(positions[::step], names[::step], rotation=30, ha="right", rotation_mode="anchor")
            axis.set_xlim(-0.5, len(names) - 0.5)
        axis.set_xlabel(label or parameter)
        axis.set_ylabel(measure)
    return figure


def grouped_series_figure(
    series: pd.DataFrame,
    group: str,
    measure: str,
    group_label: str | None = None,
    measure_label: str | None = None,
) -> Figure:
    """One line per value of `group` of `measure` against task (columns task, group, measure, e.g. the mean
    participation of a sweep's runs per task), smoothed when long, the raw values faint."""
    figure, (axis,) = new_figure(1, panel=(6.0, 3.0))
    groups = list(series.groupby(group, sort=True))
    for index, (value, rows) in enumerate(groups):
        text = f"{value:g}" if isinstance(value, float | np.floating) else str(value)
        smoothed_line(axis, rows["task"], rows[measure], text, colour(index), marker=MARKERS[index % len(MARKERS)])
    axis.set_xlabel("task")
    axis.set_ylabel(measure_label or measure)
    integer_ticks(axis)
    legend_outside(figure, where="right", title=group_label or group)
    return figure


# ------------------------------------------------------------------------------------------------ MMZD (SPEC B.6)

OPPONENT_ORDER = ("ALLD", "ALLC", "Rand", "TFT", "Mixed")


def _opponents(frame: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(frame["others_strategy"].astype(str)))
    return [name for name in OPPONENT_ORDER if name in present] + [n for n in present if n not in OPPONENT_ORDER]


def _final_round(frame: pd.DataFrame) -> pd.DataFrame:
    last = frame["round"].astype(int).max()
    return frame[frame["round"].astype(int) == last]


def _target_line(axis: Axes, frame: pd.DataFrame, strategy: str, label: str) -> None:
    """The ZD target P* as a dashed line when the design was enforceable (`feasible` True)."""
    rows = frame[(frame["controller_strategy"] == strategy) & (frame["feasible"].astype(str) == "True")]
    targets = pd.to_numeric(rows["target"], errors="coerce").dropna()
    if len(targets):
        axis.axhline(float(targets.iloc[0]), color="black", linestyle="--", linewidth=1, label=label)


def mmzd_final_welfare_figure(rows: pd.DataFrame, title: str) -> Figure:
    """Fig. 3: mean welfare in the final game round for each focal strategy (bars) against each strategy of the
    others (groups), with 95% Student-t intervals from the rows' standard_error and repetitions."""
    final = _final_round(rows)
    opponents = _opponents(final)
    focal = list(dict.fromkeys(final["controller_strategy"].astype(str)))
    figure, (axis,) = new_figure(1, panel=(6.4, 3.2))
    width = 0.8 / len(focal)
    positions = np.arange(len(opponents))
    for offset, name in enumerate(focal):
        chosen = final[final["controller_strategy"] == name].set_index("others_strategy").loc[opponents]
        half = t_half_width(chosen["standard_error"], chosen["repetitions"])
        axis.bar(
            positions + (offset - (len(focal) - 1) / 2) * width,
            chosen["mean_welfare"].to_numpy(dtype=float),
            width,
            yerr=half,
            capsize=2,
            color=colour(offset),
            label=name,
            error_kw={"linewidth": 0.8},
        )
    _target_line(axis, final, "MMZD", "MMZD target P* (enforceable)")
    axis.set_xticks(positions, opponents)
    axis.set_xlabel("strategy of the other organisations")
    axis.set_ylabel(f"mean welfare, game round {int(final['round'].iloc[0])}")
    axis.set_title(title)
    legend_outside(figure, where="right", title="organisation 0")
    return figure


def mmzd_welfare_by_round_figure(rows: pd.DataFrame, title: str) -> Figure:
    """Fig. 6: expected welfare per game round under a ZD controller, one line per strategy of the others, with
    95% Student-t bands from standard_error and repetitions."""
    figure, (axis,) = new_figure(1, panel=(6.0, 3.2))
    for index, others in enumerate(_opponents(rows)):
        chosen = rows[rows["others_strategy"] == others].sort_values("round")
        x = chosen["round"].to_numpy(dtype=float)
        mean = chosen["mean_welfare"].to_numpy(dtype=float)
        half = t_half_width(chosen["standard_error"], chosen["repetitions"])
        axis.plot(x, mean, marker=MARKERS[index], markersize=3, color=colour(index), label=others)
        axis.fill_between(x, mean - half, mean + half, color=colour(index), alpha=0.15, linewidth=0)
    _target_line(axis, rows, "MMZD", "target P* (enforceable)")
    axis.set_xlabel("game round")
    axis.set_ylabel("expected social welfare")
    axis.set_title(title)
    integer_ticks(axis)
    legend_outside(figure, where="right", title="others play")
    return figure


def mmzd_alliance_against_single_figure(rows: pd.DataFrame, title: str) -> Figure:
    """Fig. 7: a single ZD organisation (MMZD, dashed) against an alliance (MMZDA, solid). Left: final-round
    welfare per strategy of the others with 95% t-intervals; right: welfare per round, one colour per strategy of
    the others, the line style telling MMZD from MMZDA."""
    figure, (bars, lines) = new_figure(2, panel=(3.8, 3.4))
    opponents = _opponents(rows)
    kinds = ("MMZD", "MMZDA")
    final = _final_round(rows)
    positions = np.arange(len(opponents))
    for offset, kind in enumerate(kinds):
        chosen = final[final["controller_strategy"] == kind].set_index("others_strategy").loc[opponents]
        bars.bar(
            positions + (offset - 0.5) * 0.4,
            chosen["mean_welfare"].to_numpy(dtype=float),
            0.4,
            yerr=t_half_width(chosen["standard_error"], chosen["repetitions"]),
            capsize=2,
            color="white" if kind == "MMZD" else "grey",
            edgecolor="black",
            hatch="//" if kind == "MMZD" else None,
            label=kind,
            error_kw={"linewidth": 0.8},
        )
    bars.set_xticks(positions, opponents)
    bars.set_xlabel("strategy of the other organisations")
    bars.set_ylabel(f"welfare in round {int(final['round'].iloc[0])}")
    bars.set_title("final round", fontsize="medium")
    styles = {"MMZD": "--", "MMZDA": "-"}
    for index, others in enumerate(opponents):
        for kind in kinds:
            chosen = rows[(rows["others_strategy"] == others) & (rows["controller_strategy"] == kind)]
            chosen = chosen.sort_values("round")
            lines.plot(
                chosen["round"].to_numpy(dtype=float),
                chosen["mean_welfare"].to_numpy(dtype=float),
                linestyle=styles[kind],
                color=colour(index),
                linewidth=1.4,
            )
    lines.set_xlabel("game round")
    lines.set_ylabel("expected social welfare")
    lines.set_title("per round", fontsize="medium")
    integer_ticks(lines)
    handles: list[object] = [Line2D([], [], color=colour(index), linewidth=2) for index in range(len(opponents))]
    labels = list(opponents)
    bar_handles = dict(zip(*reversed(bars.get_legend_handles_labels()), strict=True))
    handles += [(Line2D([], [], color="black", linestyle=styles[kind]), bar_handles[kind]) for kind in kinds]
    labels += ["MMZD (one organisation)", "MMZDA (alliance)"]
    legend_outside(figure, handles, labels, columns=4, title="colour: what the others play; style: who plays ZD")
    figure.suptitle(title)
    return figure


def _proportion_panel(axis: Axes, frame: pd.DataFrame, x: str, successes: str, trials: str) -> None:
    """The share successes / trials against x with its Wilson interval (columns share, share_low, share_high),
    each point labelled k/n."""
    xs = frame[x].to_numpy(dtype=float)
    share = frame["enforceable_share"].to_numpy(dtype=float)
    errors = _error_pair(frame, "enforceable_share", "enforceable_share_low", "enforceable_share_high")
    axis.errorbar(xs, share, yerr=errors, fmt="o-", capsize=3, color=colour(2), markersize=4)
    tops = share + errors[1]
    for position, top, k, n in zip(xs, tops, frame[successes], frame[trials], strict=True):
        axis.annotate(  # upright text above the interval: neighbours never overlap
            f"{int(k)}/{int(n)}",
            (position, top),
            textcoords="offset points",
            xytext=(0, 3),
            ha="center",
            va="bottom",
            rotation=90,
            fontsize="x-small",
        )
    axis.set_ylim(-0.05, 1.4)
    axis.set_yticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    axis.set_ylabel("enforceable share of draws")
    axis.set_title("enforceable (k/n)", fontsize="medium")


ENFORCEABLE_STYLES = {
    "largest_enforceable_welfare": ("o-", colour(0)),  # P'_max: blue circles
    "relative_maximum": ("v-", colour(4)),  # P'_max / P(R, ..., R): orange triangles, told apart in one legend
}
"""Marker, line and colour of each enforceable-draw mean of Figs. 8-10: the figure legend gathers every panel's
entries, so the two series must not share a style."""


def _enforceable_means(axis: Axes, enforceable: pd.DataFrame, x: str, name: str, label: str) -> None:
    """Means of `name` over the enforceable draws against `x`, with their interval (NAME_low, NAME_high) as
    error bars, in ENFORCEABLE_STYLES[name]: the P'_max panels of Figs. 8-10."""
    style, colour_ = ENFORCEABLE_STYLES[name]
    axis.errorbar(
        enforceable[x],
        enforceable[name],
        yerr=_error_pair(enforceable, name, f"{name}_low", f"{name}_high"),
        fmt=style,
        capsize=3,
        color=colour_,
        markersize=4,
        label=label,
    )


def mmzd_alliance_size_figure(rows: pd.DataFrame, title: str) -> Figure:
    """Fig. 8: against alliance size M, (a) the welfare: the largest enforceable welfare P'_max (mean over the
    enforceable draws, with its interval), the paper's P_max (mean over all draws), Monte-Carlo play against
    Rand and full participation P(R, ..., R); (b) P'_max relative to full participation and to the social
    optimum; (c) the enforceable share of draws with Wilson intervals, k/n at each point."""
    figure, (welfare_axis, relative_axis, share_axis) = new_figure(3, panel=(3.4, 3.2))
    frame = rows.sort_values("alliance_size")
    size = frame["alliance_size"].to_numpy(dtype=float)
    enforceable = frame[np.isfinite(frame["largest_enforceable_welfare"].to_numpy(dtype=float))]
    _enforceable_means(
        welfare_axis, enforceable, "alliance_size", "largest_enforceable_welfare", "P'_max, enforceable draws"
    )
    welfare_axis.plot(size, frame["paper_maximum"], "s--", color=colour(1), markersize=4, label="paper P_max (Z 12/13)")
    welfare_axis.plot(
        size, frame["monte_carlo_final_welfare"], "^:", color=colour(2), markersize=4, label="Monte Carlo vs Rand"
    )
    welfare_axis.axhline(
        float(frame["full_participation_welfare"].iloc[0]), color="grey", linewidth=1, label="P(R, ..., R)"
    )
    welfare_axis.set_xlabel("alliance size M")
    welfare_axis.set_ylabel("social welfare")
    welfare_axis.set_title("welfare", fontsize="medium")
    integer_ticks(welfare_axis)
    _enforceable_means(relative_axis, enforceable, "alliance_size", "relative_maximum", "P'_max / P(R, ..., R)")
    relative_axis.plot(
        enforceable["alliance_size"],
        enforceable["relative_to_optimum"],
        "D-.",
        color=colour(3),
        markersize=4,
        label="P'_max / max_y P(y)",
    )
    relative_axis.set_xlabel("alliance size M")
    relative_axis.set_ylabel("relative maximum")
    relative_axis.set_title("relative maximum", fontsize="medium")
    relative_axis.set_xlim(size.min() - 0.5, size.max() + 0.5)
    integer_ticks(relative_axis)
    _proportion_panel(share_axis, frame, "alliance_size", "feasible_draws", "draws")
    share_axis.set_xlabel("alliance size M")
    integer_ticks(share_axis)
    legend_outside(figure, columns=3)
    figure.suptitle(title)
    return figure


def mmzd_against_players_figure(rows: pd.DataFrame, title: str) -> Figure:
    """Figs. 9 and 10: against the number of organisations N, (a) the enforceable share of the game x alliance
    draws with Wilson intervals and k/n; (b) the largest enforceable welfare P'_max and (c) P'_max / P(R, ..., R),
    both means over the enforceable draws only, with their intervals, beside the paper's P_max / P(R, ..., R)
    (mean over all draws). N without an enforceable draw has no point in (b) and (c)."""
    figure, (share_axis, welfare_axis, relative_axis) = new_figure(3, panel=(3.4, 3.2))
    frame = rows.sort_values("players")
    players = frame["players"].to_numpy(dtype=float)
    _proportion_panel(share_axis, frame, "players", "feasible_samples", "samples")
    enforceable = frame[np.isfinite(frame["largest_enforceable_welfare"].to_numpy(dtype=float))]
    _enforceable_means(welfare_axis, enforceable, "players", "largest_enforceable_welfare", "P'_max, enforceable draws")
    welfare_axis.set_ylabel("P'_max (enforceable draws)")
    welfare_axis.set_title("largest enforceable welfare", fontsize="medium")
    _enforceable_means(
        relative_axis, enforceable, "players", "relative_maximum", "P'_max / P(R, ..., R), enforceable draws"
    )
    relative_axis.plot(
        players,
        frame["relative_paper_maximum"],
        "s--",
        color=colour(1),
        markersize=4,
        label="paper P_max / P(R, ..., R), all draws",
    )
    relative_axis.set_ylabel("relative maximum")
    for axis in (share_axis, welfare_axis, relative_axis):
        axis.set_xlabel("number of organisations N")
        axis.set_xlim(players.min() - 0.5, players.max() + 0.5)
        integer_ticks(axis)
    if enforceable.empty:
        _empty_panel(welfare_axis, "no enforceable draw")
        welfare_axis.set_xlabel("number of organisations N")
        welfare_axis.set_ylabel("P'_max (enforceable draws)")
    relative_axis.set_title("relative maximum", fontsize="medium")
    legend_outside(figure, columns=2)
    figure.suptitle(title)
    return figure


# ------------------------------------------------------------------------------------------------ BGFL (SPEC A.9)


def _band(axis: Axes, rows: pd.DataFrame, name: str, label: str, colour_: str, style: str, width: float) -> None:
    """The mean curve of `name` over the rounds with its interval (NAME_low, NAME_high) as a shaded band."""
    rows = rows.sort_values("round")
    rounds = rows["round"].to_numpy(dtype=float)
    axis.plot(
        rounds,
        rows[f"{name}_mean"].to_numpy(dtype=float),
        color=colour_,
        linestyle=style,
        linewidth=width,
        label=label,
        marker="o" if len(rounds) < 12 else None,
        markersize=3,
    )
    axis.fill_between(
        rounds,
        rows[f"{name}_low"].to_numpy(dtype=float),
        rows[f"{name}_high"].to_numpy(dtype=float),
        color=colour_,
        alpha=0.12,
        linewidth=0,
    )


def _round_axis(axis: Axes, label: str) -> None:
    axis.set_xlabel("aggregation round")
    axis.set_ylabel(label)
    integer_ticks(axis)


def bgfl_coalition_figure(rows: pd.DataFrame, title: str, highlight: str | None = None) -> Figure:
    """Fig. 2: test accuracy and loss of the global model per aggregation round, one curve per coalition
    (column `coalition`), bands = the rows' intervals; `highlight` (the grand coalition) drawn thicker."""
    figure, (accuracy_axis, loss_axis) = new_figure(2, panel=(3.6, 2.9))
    coalitions = list(dict.fromkeys(rows["coalition"].astype(str)))
    for index, coalition in enumerate(coalitions):
        chosen = rows[rows["coalition"] == coalition]
        width = 2.2 if coalition == highlight else 1.1
        _band(accuracy_axis, chosen, "accuracy", coalition, colour(index), "-", width)
        _band(loss_axis, chosen, "loss", coalition, colour(index), "-", width)
    _round_axis(accuracy_axis, "test accuracy")
    accuracy_axis.set_ylim(0.0, 1.0)
    _round_axis(loss_axis, "test loss (cross-entropy)")
    legend_outside(figure, columns=len(coalitions) if len(coalitions) <= 7 else 5, title="coalition")
    figure.suptitle(title)
    return figure


def bgfl_budget_figure(rows: pd.DataFrame, title: str) -> Figure:
    """Fig. 3: test accuracy and loss per aggregation round, colour = privacy budget eps, solid = BGFL and
    dashed = AsyFL (column `series`), bands = the rows' intervals."""
    figure, (accuracy_axis, loss_axis) = new_figure(2, panel=(3.6, 2.9))
    budgets = sorted(set(rows["privacy_budget"].astype(float)))
    styles = {"BGFL": "-", "AsyFL": "--"}
    for index, eps in enumerate(budgets):
        for series, style in styles.items():
            chosen = rows[(rows["privacy_budget"].astype(float) == eps) & (rows["series"] == series)]
            if chosen.empty:
                continue
            _band(accuracy_axis, chosen, "accuracy", f"_{series} {eps:g}", colour(index), style, 1.3)
            _band(loss_axis, chosen, "loss", f"_{series} {eps:g}", colour(index), style, 1.3)
    _round_axis(accuracy_axis, "test accuracy")
    accuracy_axis.set_ylim(0.0, 1.0)
    _round_axis(loss_axis, "test loss (cross-entropy)")
    handles: list[object] = [Line2D([], [], color=colour(index), linewidth=2) for index in range(len(budgets))]
    labels = [f"eps = {eps:g}" for eps in budgets]
    handles += [Line2D([], [], color="black", linestyle=style) for style in styles.values()]
    labels += ["BGFL (solid)", "AsyFL (dashed)"]
    legend_outside(figure, handles, labels, columns=len(labels))
    figure.suptitle(title)
    return figure


def bgfl_totals_figure(rows: pd.DataFrame, totals: Sequence[tuple[str, str]], title: str) -> Figure:
    """Fig. 4: per privacy budget, bars of each total in `totals` ((column prefix, axis label)), one row of panels
    per (model, dataset), error bars = the rows' NAME_low / NAME_high intervals."""
    pairs = list(dict.fromkeys(zip(rows["model"].astype(str), rows["dataset"].astype(str), strict=True)))
    figure, axes = new_figure(len(totals), rows=len(pairs), panel=(3.0, 2.6))
    for row_index, (model, dataset) in enumerate(pairs):
        chosen = rows[(rows["model"] == model) & (rows["dataset"] == dataset)].sort_values("privacy_budget")
        positions = np.arange(len(chosen))
        for column, (name, label) in enumerate(totals):
            axis = axes[row_index * len(totals) + column]
            axis.bar(
                positions,
                chosen[f"{name}_mean"].to_numpy(dtype=float),
                0.6,
                yerr=_error_pair(chosen, f"{name}_mean", f"{name}_low", f"{name}_high"),
                capsize=3,
                color=colour(column),
                error_kw={"linewidth": 0.8},
            )
            axis.axhline(0, color="black", linewidth=0.6)
            axis.set_xticks(positions, [f"{eps:g}" for eps in chosen["privacy_budget"].astype(float)])
            axis.set_xlabel("privacy budget eps")
            axis.set_ylabel(label)
            axis.set_title(f"{model.upper()} on {dataset}", fontsize="medium")
    figure.suptitle(title)
    return figure


# ------------------------------------------------------------------------------------------------ fixation


FIXATION_COLUMNS = ("beta", "payoff_gap", "population", "simulated", "wilson_low", "wilson_high", "theory", "trials")


def fixation_figure(table: pd.DataFrame, x: str = "beta") -> Figure:
    """Simulated fixation probability of one invader (points, Wilson intervals) against the closed form of the
    pairwise comparison process (Traulsen, Pacheco & Nowak 2006; line and open markers), against `x`: "beta"
    (selection intensity) or "selection" (beta x payoff gap). One colour per population size, and the neutral
    1/N as a dotted line. Columns: FIXATION_COLUMNS (`analysis.fixation`)."""
    missing = [name for name in FIXATION_COLUMNS if name not in table.columns]
    if missing:
        raise ValueError(f"table: missing columns {missing}; expected {list(FIXATION_COLUMNS)}")
    if x not in ("beta", "selection"):
        raise ValueError(f"x: must be 'beta' or 'selection', got {x!r}")
    frame = table.copy()
    frame["selection"] = frame["beta"].astype(float) * frame["payoff_gap"].astype(float)
    figure, (axis,) = new_figure(1, panel=(5.0, 3.4))
    for index, (population, rows) in enumerate(frame.groupby("population", sort=True)):
        rows = rows.sort_values(x)
        xs = rows[x].to_numpy(dtype=float)
        axis.plot(
            xs,
            rows["theory"],
            "-",
            color=colour(index),
            marker="o",
            markerfacecolor="white",
            markersize=5,
            label=f"closed form, N = {population}",
        )
        axis.errorbar(
            xs,
            rows["simulated"],
            yerr=_error_pair(rows, "simulated", "wilson_low", "wilson_high"),
            fmt="s",
            color=colour(index),
            markersize=4,
            capsize=3,
            label=f"simulated, N = {population}",
        )
        axis.axhline(
            1.0 / float(population),
            color=colour(index),
            linestyle=":",
            linewidth=0.8,
            label=f"neutral 1/N, N = {population}",
        )
    if frame[x].astype(float).gt(0).all() and frame[x].astype(float).max() / frame[x].astype(float).min() > 50:
        axis.set_xscale("log")
    axis.set_xlabel("selection intensity beta" if x == "beta" else "beta x payoff gap")
    axis.set_ylabel("fixation probability of one invader")
    axis.set_ylim(bottom=0.0)
    legend_outside(figure, where="right")
    return figure
