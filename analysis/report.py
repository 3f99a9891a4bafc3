"""Reports: one self-contained HTML page for a run or a sweep, with figures embedded as PNG data URIs.

A run's page shows welfare over time against its references (social optimum, all-defect Nash) with the MSER-5
warm-up and the KPSS + ADF stationarity verdict of `analysis.stability`, strategy shares, participation and free
riding, payoffs and rewards, budget use and consensus costs, and a metrics table that gives each measure a readable
name, its unit and a one-line definition (METRICS); a figure whose events the run does not have is replaced by a
visible note. A sweep's page shows, for each swept parameter, mean welfare (95% Student-t interval over runs),
participation and the final-window welfare variance (bounded: 95% percentile bootstrap intervals when every point
has BOOTSTRAP_MIN_RUNS runs, else Student t; clipped to their bounds), participation per task for each value of
the first parameter, and a compact per-run table.

Figures come from `analysis.plots` (matplotlib Figures on the Agg canvas, no pyplot state); each has a caption
that says what its lines, bands and bars are. The PNGs are embedded at `dpi`; with `figures_dir` every figure is
also written there as NAME.png, NAME.pdf (or .svg) and NAME.caption.txt, for a paper.
"""

from __future__ import annotations

import argparse
import base64
import html
import math
import re
import sys
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from flmarket.analysis import metrics, plots
from flmarket.analysis.load import load_manifest
from flmarket.analysis.stability import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_DWELL_FRACTION,
    DEFAULT_WINDOW,
    batch_means_interval,
    extinction_and_fixation,
    stability_summary,
    stationarity_verdict,
)
from flmarket.analysis.sweeps import by_parameter, is_sweep_dir, load_index, sweep_summary
from flmarket.arguments import integer_in
from flmarket.files import write_text_atomically

REPORT_FILE = "report.html"
_NUMBER = re.compile(r"-?[\d,]*\.?\d+(e[-+]\d+)?")
CONFIDENCE = 0.95

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; color: #444; line-height: 1.4; }
.table-wrap { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.5em; text-align: right; } th { background: #f3f3f3; }
td.text, th.text { text-align: left; }
.note { background: #fff6d5; border-left: 4px solid #e0b000; padding: 0.5em 1em; }
"""


@dataclass(frozen=True, eq=False)  # holds a matplotlib Figure
class Section:
    """One part of the page: a title, then a figure (saved as `name`) or a note, a caption and tables."""

    title: str
    figure: Figure | None = None
    name: str = ""
    note: str = ""
    caption: str = ""
    tables: tuple[tuple[str, pd.DataFrame], ...] = ()


# ---------------------------------------------------------------------------------------------- the measures


@dataclass(frozen=True)
class Measure:
    """How a summary measure is shown: a readable name, its unit ("" for a count or a label) and a definition."""

    name: str
    unit: str
    definition: str


_WELFARE = "payoff units"
METRICS: dict[str, Measure] = {
    "tasks": Measure("tasks", "", "FL tasks finished (game rounds of SPEC B)."),
    "mean_welfare": Measure("mean welfare per task", _WELFARE, "Mean over tasks of P(y) = sum_i U_i (SPEC B.1)."),
    "mean_total_participation": Measure(
        "mean total participation", "rounds", "Mean over tasks of sum_j y_j, the rounds the providers took part in."
    ),
    "optimum_total_participation": Measure(
        "welfare-maximising participation", "rounds", "Mean of the total that maximises P (cheapest first, SPEC B)."
    ),
    "full_cooperation_total": Measure("full participation", "rounds", "Mean of N R: every provider plays y_i = R."),
    "optimum_welfare": Measure("social-optimum welfare", _WELFARE, "Mean over tasks of max_y P(y)."),
    "full_cooperation_welfare": Measure("full-cooperation welfare", _WELFARE, "Mean over tasks of P(R, ..., R)."),
    "nash_welfare": Measure("all-defect Nash welfare", _WELFARE, "Mean over tasks of P(0, ..., 0)."),
    "welfare_position": Measure(
        "welfare position", "fraction", "(mean P - Nash) / (optimum - Nash): 0 at all-defect, 1 at the optimum."
    ),
    "participation_position": Measure(
        "participation position", "fraction", "Mean total participation / welfare-maximising total."
    ),
    "welfare_std": Measure("welfare standard deviation", _WELFARE, "Standard deviation of P(y) over tasks."),
    "mean_welfare_per_player": Measure("mean welfare per provider", _WELFARE, "Mean over tasks of P(y) / N."),
    "participating_share": Measure(
        "participating share", "fraction", "Decisions with y_i > 0 over all decisions, pooled over tasks."
    ),
    "participation_rate": Measure(
        "participation rate", "fraction", "Mean of y_i / R over all decisions (providers x tasks), pooled."
    ),
    "mean_participation_rate": Measure(
        "mean participation rate by strategy",
        "fraction",
        "Mean over tasks and strategies of mean(y_i) / R (each strategy weighs the same, whatever its size).",
    ),
    "free_rider_share": Measure(
        "free-rider share", "fraction", "Mean share of providers playing ALLD or sending non-honest updates."
    ),
    "payoff_gap": Measure(
        "free riders' payoff gap", _WELFARE, "Mean over tasks of mean U (free riders) - mean U (others)."
    ),
    "rounds": Measure("aggregation rounds", "", "FL aggregation rounds over all tasks."),
    "mean_round_welfare": Measure(
        "mean round welfare W", "budget units", "Rewards minus provider and committee costs per round (B 21)."
    ),
    "mean_reward_gini": Measure(
        "mean reward Gini", "0 to 1", "Mean over rounds of the Gini coefficient of the rewards (0 = equal)."
    ),
    "fairness": Measure("Shapley fairness", "-1 to 1", "Correlation of reward and contribution over all payments."),
    "mean_budget_use": Measure("mean budget use", "fraction", "Mean over tasks of rewards paid / B (1 - sigma)."),
    "mean_consensus_messages": Measure("mean PBFT messages", "messages", "Mean messages per decided round."),
    "mean_consensus_latency_s": Measure("mean consensus latency", "s", "Mean time from proposal to decision."),
    "zd_designs": Measure("ZD designs", "", "MMZD and MMZDA designs logged (zd_design), one per game they met."),
    "zd_feasible_designs": Measure("ZD designs that enforce their target", "", "Feasible designs (SPEC B.4)."),
    "zd_target": Measure("ZD welfare target P*", _WELFARE, "The designs' P*, when they share one (SPEC B.4)."),
    "zd_tasks": Measure("tasks ZD players played", "", "Tasks with an MMZD or MMZDA decision, from the first design."),
    "zd_mean_welfare": Measure(
        "mean welfare of ZD players' tasks", _WELFARE, "Tends to P* when the design enforces it (SPEC B.4)."
    ),
    "zd_welfare_low": Measure("its 95% interval, low", _WELFARE, "Mean minus the batch-means half-width."),
    "zd_welfare_high": Measure("its 95% interval, high", _WELFARE, "Mean plus the batch-means half-width."),
    "welfare_warmup_tasks": Measure(
        "warm-up", "tasks", "MSER-5 truncation point of the task welfare series (White 1997)."
    ),
    "welfare_stationarity": Measure(
        "stationarity verdict",
        "",
        "KPSS and ADF read jointly after the warm-up, at three KPSS bandwidths (all must agree): stationary if KPSS "
        "keeps stationarity and ADF rejects a unit root, not stationary if the reverse, else inconclusive.",
    ),
    "welfare_stationary": Measure("stationary", "", "Whether the verdict is 'stationary'."),
    "kpss_p_min": Measure("KPSS p (smallest)", "p-value", "Smallest KPSS p over the bandwidths (H0: stationary)."),
    "adf_p": Measure("ADF p", "p-value", "Augmented Dickey-Fuller p-value (H0: unit root)."),
    "stationary_from_task": Measure("stationary from task", "task", "First task after the warm-up, if stationary."),
    "stationary_from_time": Measure("stationary from time", "s", "Its simulated time."),
    "welfare_time_average": Measure(
        "welfare time average",
        _WELFARE,
        "Mean of P(y) over the batches after the warm-up: its first n mod k tasks, which fill no batch, are left out.",
    ),
    "welfare_warmup_reliable": Measure(
        "warm-up reliable",
        "",
        "Whether MSER-5's minimum lies before its last cut (White 1997); if not, the run is too short to place the "
        "warm-up, and a stationary verdict is reported as inconclusive.",
    ),
    "welfare_ci_low": Measure(
        "time average, 95% low", _WELFARE, "Batch-means interval (up to 20 batches, Student t; Schmeiser 1982)."
    ),
    "welfare_ci_high": Measure("time average, 95% high", _WELFARE, "Upper end of the same interval."),
    "final_window_mean": Measure("final-window mean welfare", _WELFARE, "Mean of P(y) over the last window of tasks."),
    "final_window_variance": Measure(
        "final-window welfare variance", "payoff units squared", "Variance of P(y) over the last window of tasks."
    ),
    "extinct_strategies": Measure(
        "extinct strategies",
        "",
        "Share 0 to the end, held for the minimum dwell. Absorbing only without mutation and without joiners "
        "drawing it: otherwise it is extinct at the end of this run, and may come back.",
    ),
    "fixated_strategy": Measure("fixated strategy", "", "Share 1 to the end, held for the minimum dwell."),
    "fixation_dwell_s": Measure("fixation held for", "s", "Time the fixated strategy has held share 1."),
    "min_dwell_s": Measure("minimum dwell", "s", "Time a state must hold to count as absorbing (10% of the span)."),
}

FATE_NAMES = {
    "strategy": "strategy",
    "final_share": "final share",
    "extinct": "extinct",
    "extinction_time": "extinct since (s)",
    "extinction_dwell": "extinction held for (s)",
    "fixated": "fixated",
    "fixation_time": "fixated since (s)",
    "fixation_dwell": "fixation held for (s)",
    "samples_at_zero": "samples at 0",
    "samples_at_one": "samples at 1",
}


def readable(column: str) -> str:
    """A readable column name: the METRICS name when there is one, a strategy-mix column as 'share of X in
    the mix', a scenario path as it is, otherwise the name with spaces for underscores."""
    if column in METRICS:
        return METRICS[column].name
    if ".strategy_mix." in column:
        return f"share of {column.rsplit('.', 1)[-1]} in the mix"
    if "." in column:  # a scenario path (providers.count): the name a user sets in a grid
        return column
    return column.replace("_", " ")


def _format(value: object, digits: int = 4) -> str:
    """A value for a table: integers and large numbers with thousands separators, `digits` significant digits
    otherwise, float noise (|v| < 1e-12) as 0, NaN as n/a."""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            return "n/a"
        if abs(number) < 1e-12:
            return "0"
        if number.is_integer() and abs(number) < 1e15:
            return f"{int(number):,}"
        if abs(number) >= 1e4:
            return f"{number:,.0f}"
        return f"{number:.{digits}g}"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if value is None or value is pd.NA:
        return "n/a"
    return str(value)


def metrics_table(values: dict[str, object]) -> pd.DataFrame:
    """The run's headline numbers as rows of measure, value, unit and definition (METRICS)."""
    rows = []
    for key, value in values.items():
        measure = METRICS.get(key, Measure(readable(key), "", ""))
        rows.append(
            {"measure": measure.name, "value": _format(value), "unit": measure.unit, "definition": measure.definition}
        )
    return pd.DataFrame(rows, columns=["measure", "value", "unit", "definition"])


def _info_table(values: dict[str, object]) -> pd.DataFrame:
    return pd.DataFrame({"measure": list(values), "value": [_format(value) for value in values.values()]})


def _readable_frame(frame: pd.DataFrame, names: dict[str, str] | None = None, digits: int = 4) -> pd.DataFrame:
    """Values formatted by `_format` (`digits` significant digits) and columns renamed (`names`, else
    `readable`)."""
    out = frame.copy()
    for column in out.columns:
        out[column] = out[column].map(lambda value: _format(value, digits))
    return out.rename(columns={column: (names or {}).get(column, readable(column)) for column in out.columns})


# ---------------------------------------------------------------------------------------------- run sections


def _smoothing_note(points: int) -> str:
    if points <= plots.SMOOTHING_THRESHOLD:
        return ""
    return (
        f" Series of more than {plots.SMOOTHING_THRESHOLD} points are drawn as a centred rolling mean over "
        f"{plots.smoothing_window(points)} points, the raw values faint."
    )


def _welfare_section(events: pd.DataFrame, alpha: float) -> Section:
    tasks = metrics.task_outcomes(events)
    rounds = metrics.round_outcomes(events)
    references = metrics.welfare_against_references(events)
    if tasks.empty and rounds.empty:
        return Section("Welfare over time", note="No task_finished or round_finished events: nothing to plot.")
    welfare = tasks["welfare"].to_numpy(dtype=float)
    welfare = welfare[np.isfinite(welfare)]
    verdict = stationarity_verdict(welfare, alpha) if welfare.size else None
    warmup = verdict.warmup.index if verdict is not None else None
    figure = plots.welfare_figure(tasks, rounds, references, warmup)
    parts = [
        "Left: social welfare P(y) = sum_i U_i of each task (SPEC B.1)"
        + (
            ", with the task's social optimum max_y P(y) (dashed) and the all-defect Nash welfare (dotted)"
            if not references.empty
            else ""
        )
        + "."
    ]
    if not rounds.empty:
        parts.append("Right: the mechanism's welfare W per aggregation round (B 21), over all tasks in order.")
    if verdict is not None:
        average = batch_means_interval(welfare[verdict.warmup.index :])
        p_values = ", ".join(_kpss_p(p) for p in verdict.kpss_p_values) or "n/a"
        adf = f"{verdict.adf_p_value:.3g}" if math.isfinite(verdict.adf_p_value) else "n/a"
        batches = "1 batch" if average.batches == 1 else f"{average.batches} batches"
        why = f" ({verdict.why})" if verdict.why else ""
        parts.append(
            f"Shaded: the MSER-5 warm-up ({verdict.warmup.index} tasks; White 1997). After it, KPSS (p = {p_values} "
            f"at bandwidths {', '.join(verdict.windows)}) and ADF (p = {adf}) at alpha {alpha} "
            f"give the verdict '{verdict.verdict}'{why}. Time average after the warm-up: {_format(average.mean)}, 95% "
            f"batch-means interval [{_format(average.low)}, {_format(average.high)}] ({batches}, Student t)."
            + (
                f" The batch means are correlated (lag-1 r = {average.batch_lag1:.2f} > 1.96 / sqrt"
                f"({average.batches})): the batches are too short, so the interval is too narrow; run longer."
                if average.batches_correlated
                else ""
            )
        )
    parts.append(_smoothing_note(max(len(tasks), len(rounds))).strip())
    return Section("Welfare over time", figure, "welfare", caption=" ".join(part for part in parts if part))


def _kpss_p(p_value: float) -> str:
    """statsmodels interpolates KPSS p-values in its table's [0.01, 0.1]: an end of it is a bound, not a value."""
    if p_value >= 0.1:
        return ">= 0.1"
    return "<= 0.01" if p_value <= 0.01 else f"{p_value:.3g}"


def _shares_section(events: pd.DataFrame) -> Section:
    shares = metrics.strategy_shares(events)
    if shares.empty:
        return Section("Strategy shares", note="No strategy_share or action_chosen events: nothing to plot.")
    origin = shares["origin"].iloc[0]
    span = float(shares["time"].max() - shares["time"].min())
    min_dwell = DEFAULT_MIN_DWELL_FRACTION * span
    fates = extinction_and_fixation(shares, min_dwell)
    source = (
        "the periodic strategy_share samples"
        if origin == "strategy_share"
        else "the providers deciding in each task (action_chosen; the run has no strategy_share samples)"
    )
    caption = (
        f"Share of providers playing each strategy over simulated time, from {source}. In the table a strategy "
        f"is extinct (fixated) only if its share has been 0 (1) to the end for at least {_format(min_dwell)} s, "
        f"{DEFAULT_MIN_DWELL_FRACTION:.0%} of the sampled span; 'samples at 0/1' is the fraction of samples at "
        "that level over the whole run."
    )
    table = fates.drop(columns=["min_dwell"], errors="ignore")
    return Section(
        "Strategy shares",
        plots.shares_figure(shares),
        "strategy-shares",
        caption=caption,
        tables=(("Extinction and fixation", _readable_frame(table, FATE_NAMES)),),
    )


def _participation_section(events: pd.DataFrame) -> Section:
    participation = metrics.participation_by_strategy(events)
    if participation.empty:
        return Section("Participation and free riding", note="No action_chosen events: nothing to plot.")
    riding = metrics.free_riding(events)
    references = metrics.welfare_against_references(events)
    figure = plots.participation_figure(participation, references, riding)
    overall = (
        participation.groupby("strategy")
        .agg(
            providers=("providers", "sum"),
            participants=("participants", "sum"),
            mean_action=("mean_action", "mean"),
            participation_rate=("participation_rate", "mean"),
        )
        .reset_index()
    )
    names = {
        "strategy": "strategy",
        "providers": "decisions",
        "participants": "decisions with y > 0",
        "mean_action": "mean y (rounds)",
        "participation_rate": "mean y / R",
    }
    caption = (
        "Left: total participation sum_j y_j of each task as a share of full participation N R, with the "
        "welfare-maximising share (dashed; SPEC B: the cheapest providers first). Middle: mean y_i / R per "
        "strategy. Right: mean payoff U of the free riders (ALLD or non-honest updates) minus that of the other "
        "providers; above 0 free riding pays." + _smoothing_note(int(participation["task"].nunique()))
    )
    return Section(
        "Participation and free riding",
        figure,
        "participation",
        caption=caption,
        tables=(("Participation by strategy (over all tasks)", _readable_frame(overall, names)),),
    )


def _payoff_section(events: pd.DataFrame) -> Section:
    payoffs = metrics.events_of(events, ["provider_payoff"])
    if payoffs.empty or "utility" not in payoffs.columns:
        return Section("Provider payoffs", note="No provider_payoff events: nothing to plot.")
    return Section(
        "Provider payoffs",
        plots.payoff_figure(payoffs),
        "payoffs",
        caption="Distribution of the utility U_i of each provider in each task (SPEC B.1), per strategy: box = "
        "quartiles, line = median, whiskers = 1.5 interquartile ranges, dots = the values beyond.",
    )


def _rewards_section(events: pd.DataFrame) -> Section:
    rewards = metrics.events_of(events, ["reward_paid"])
    if rewards.empty or "reward" not in rewards.columns:
        return Section(
            "Reward distribution",
            note="No reward_paid events in this run (the BGFL mechanism did "
            "not pay rewards): no reward histogram, Gini or fairness.",
        )
    per_round = metrics.reward_distribution(events)
    fairness = metrics.shapley_fairness(events)
    gini = per_round["reward_gini"].to_numpy(dtype=float)
    equal = int(np.sum(np.abs(gini[np.isfinite(gini)]) < plots.NOISE_FLOOR))
    caption = (
        "Left: every Shapley reward paid (B 13). Middle: per aggregation round, the Gini coefficient of the "
        f"rewards (0 = all equal; {equal} of {len(gini)} rounds paid equal rewards and are drawn at exactly 0, "
        "not at float noise). Right: the correlation of reward and contribution per round (1 = paid by "
        "contribution; rounds with constant rewards have none and are left out)." + _smoothing_note(len(per_round))
    )
    return Section(
        "Reward distribution",
        plots.rewards_figure(rewards["reward"], per_round, fairness),
        "rewards",
        caption=caption,
    )


def _budget_section(events: pd.DataFrame) -> Section:
    budget = metrics.budget_use(events)
    if budget.empty:
        return Section("Budget use", note="No task_configured events: budget use cannot be computed.")
    return Section(
        "Budget use",
        plots.budget_figure(budget),
        "budget",
        caption="Per task: rewards paid / B(1 - sigma) (solid, circles), committee cost / (B sigma) (B 15a; dashed, "
        "squares) and rounds run / r_max (B 11; dotted, triangles). The last two nearly coincide: r_max is "
        "B sigma over the committee's cost per round, rounded down." + _smoothing_note(len(budget)),
    )


def _consensus_section(events: pd.DataFrame) -> Section:
    consensus = metrics.consensus_costs(events)
    if consensus.empty:
        return Section("Consensus costs", note="No consensus_decided events in this run: no PBFT costs to plot.")
    summary = consensus[["view", "messages", "bytes", "latency_s"]].astype(float).describe().T
    summary = summary.rename(columns={"count": "rounds", "50%": "median", "25%": "25th pct", "75%": "75th pct"})
    summary = summary.reset_index(names="measure").replace(
        {"measure": {"view": "view (view changes)", "latency_s": "latency (s)"}}
    )
    return Section(
        "Consensus costs",
        plots.consensus_figure(consensus),
        "consensus",
        caption="PBFT messages and latency from proposal to decision, per decided round (SPEC D.2)."
        + _smoothing_note(len(consensus)),
        tables=(("Per decided round: distribution", _readable_frame(summary, {"measure": "measure"})),),
    )


def _commit_line(git: object) -> str:
    """The manifest's git record as one line: the commit, marked when the checkout had local changes."""
    if not isinstance(git, dict) or not git.get("commit"):
        return "not recorded (not run from a git checkout)"
    return f"{git['commit']}{' (with uncommitted changes)' if git.get('dirty') else ''}"


def run_sections(
    run_dir: str | Path,
    window: int = DEFAULT_WINDOW,
    alpha: float = DEFAULT_ALPHA,
) -> tuple[str, list[Section]]:
    """The title and the sections of a run's report."""
    manifest = load_manifest(run_dir)
    events = metrics.RunEvents(run_dir)  # each kind read once, on first use, in its own narrow frame
    info = {
        "run id": manifest.get("run_id", ""),
        "scenario": manifest.get("scenario_name", ""),
        "seed": manifest.get("seed", ""),
        "status": manifest.get("status", ""),
        "tasks finished": manifest.get("tasks_finished", ""),
        "events": manifest.get("events", ""),
        "simulated time (s)": manifest.get("final_time_s", math.nan),
        "versions": ", ".join(
            f"{name} {version}" for name, version in sorted((manifest.get("versions") or {}).items())
        ),
        "git commit": _commit_line(manifest.get("git")),
    }
    headline = metrics.run_summary(events) | stability_summary(events, window, alpha)
    finished = float(headline.get("tasks", math.nan))
    if not math.isnan(finished) and window > finished:
        warnings.warn(
            f"window: the final window of {window} tasks is longer than the run's {finished:,.0f} finished tasks, so "
            "its measures are n/a; give --window at most that",
            UserWarning,
            stacklevel=2,
        )
    if not headline.get("zd_designs"):  # no zero-determinant player: its rows would all be empty
        headline = {key: value for key, value in headline.items() if not key.startswith("zd_")}
    sections = [
        Section(
            "Summary",
            tables=(
                ("Run", _info_table(info)),
                (f"Metrics and stability (final window: {window} tasks)", metrics_table(headline)),
            ),
        ),
        _welfare_section(events, alpha),
        _shares_section(events),
        _participation_section(events),
        _payoff_section(events),
        _rewards_section(events),
        _budget_section(events),
        _consensus_section(events),
    ]
    return f"flmarket run report: {info['run id']}", sections


# ---------------------------------------------------------------------------------------------- sweep sections

SWEEP_MEASURES = (
    # (summary column, axis label, bounds for a bootstrap interval or None for Student t)
    ("mean_welfare", "mean welfare per task", None),
    ("participation_rate", "participation y / R", (0.0, 1.0)),
    ("final_window_variance", "welfare variance, final window", (0.0, math.inf)),
)
BOOTSTRAP_MIN_RUNS = 30
"""Bounded measures get a percentile bootstrap interval only when every point has this many runs; with fewer its
coverage falls below the Student t's, clipped (95% intervals of the mean of exponential data, 300 samples each:
3 runs 0.68 against 0.88, 5 runs 0.79 against 0.90, 10 runs 0.88 against 0.91)."""
RUN_COLUMNS = (
    "mean_welfare",
    "welfare_position",
    "participation_rate",
    "free_rider_share",
    "final_window_variance",
    "welfare_stationarity",
    "fixated_strategy",
)
ZERO_DETERMINANT_RUN_COLUMNS = ("zd_target", "zd_mean_welfare", "zd_welfare_low", "zd_welfare_high")
"""Added to the sweep's table of runs when some run has zero-determinant players: each target beside the welfare."""
MIX_MARKER = ".strategy_mix."


def _label_order(finished: pd.DataFrame, parameter: str) -> tuple[list[object], list[str]]:
    """Categorical values of `parameter` in a meaningful order with tick labels: when the sweep varies a
    strategy mix, by the share of ALLD (else of the first mix key), labelled with it; otherwise in grid order."""
    values = list(dict.fromkeys(finished[parameter].tolist()))
    mix = [column for column in finished.columns if MIX_MARKER in column and column != parameter]
    key = next(
        (column for column in mix if column.endswith(f".{metrics.FREE_RIDER_STRATEGY}")), mix[0] if mix else None
    )
    if key is None or not pd.api.types.is_numeric_dtype(finished[key]):
        return values, [str(value) for value in values]
    share = finished.groupby(parameter, sort=False)[key].mean()
    ordered = sorted(values, key=lambda value: (float(share[value]), str(value)))
    strategy = key.rsplit(".", 1)[-1]
    return ordered, [f"{value} ({strategy} {float(share[value]):.2g})" for value in ordered]


def _parameter_section(summary: pd.DataFrame, parameter: str) -> Section:
    """Welfare (Student t), participation and welfare variance (bootstrap, bounded) against one parameter."""
    finished = summary[summary["status"] == "finished"]
    if finished.empty:
        return Section(f"Against {readable(parameter)}", note="No finished runs: nothing to plot.")
    tables = []
    fewest = int(finished.groupby(parameter, dropna=False).size().min())
    bounded = "bootstrap" if fewest >= BOOTSTRAP_MIN_RUNS else "t"
    for column, label, bounds in SWEEP_MEASURES:
        if bounds is None:
            table = by_parameter(finished, parameter, column, CONFIDENCE)
        else:
            table = by_parameter(finished, parameter, column, CONFIDENCE, interval=bounded, bounds=bounds)
        tables.append((label, table))
    numeric = pd.api.types.is_numeric_dtype(finished[parameter])
    tick_labels = None
    if not numeric:
        order, tick_labels = _label_order(finished, parameter)
        tables = [(label, table.set_index(parameter).loc[order].reset_index()) for label, table in tables]
    figure = plots.parameter_figure(tables, parameter, readable(parameter), tick_labels)
    runs = sorted({int(count) for _, table in tables for count in table["runs"]})
    caption = (
        f"Means over the finished runs at each value of {readable(parameter)} (over seeds and any other swept "
        f"parameter; {', '.join(map(str, runs))} runs per point). Error bars: welfare, the {CONFIDENCE:.0%} "
        f"Student-t confidence interval; participation (in [0, 1]) and the variance (>= 0), the {CONFIDENCE:.0%} "
        + (
            "percentile bootstrap interval (scipy.stats.bootstrap, 9,999 resamples) clipped to those bounds."
            if bounded == "bootstrap"
            else f"Student-t interval clipped to those bounds (a point has fewer than {BOOTSTRAP_MIN_RUNS} runs, "
            "too few for a percentile bootstrap: with 3 runs it covers about 70%, not 95%)."
        )
        + " Points with one run have no bar."
    )
    shown = [
        (f"{label} by {readable(parameter)}", _readable_frame(table[[parameter, "mean", "low", "high", "runs"]]))
        for label, table in tables
    ]
    return Section(
        f"Against {readable(parameter)}",
        figure,
        f"against-{parameter.replace('.', '-')}",
        caption=caption,
        tables=tuple(shown),
    )


def _participation_over_tasks(summary: pd.DataFrame, parameter: str) -> Section:
    """Mean participation share per task over the runs at each value of `parameter` (smoothed when long)."""
    finished = summary[summary["status"] == "finished"]
    frames = []
    for _, cell in finished.iterrows():
        references = metrics.welfare_against_references(cell["run_dir"])
        if references.empty:
            continue
        full = references["full_cooperation_total"].astype(float)
        frames.append(
            pd.DataFrame(
                {
                    "task": references["task"].astype(int),
                    parameter: cell[parameter],
                    "participation": references["total_participation"].astype(float) / full.where(full > 0),
                }
            )
        )
    if not frames:
        return Section("Participation over tasks", note="No welfare_reference events in the runs: nothing to plot.")
    series = pd.concat(frames).groupby(["task", parameter], as_index=False)["participation"].mean()
    figure = plots.grouped_series_figure(
        series, parameter, "participation", readable(parameter), "participation sum y / (N R)"
    )
    figure.axes[0].set_ylim(-0.02, 1.02)
    tasks = int(series["task"].nunique())
    caption = (
        "Total participation sum_j y_j of each task as a share of full participation N R, averaged per task over "
        f"the runs at each value of {readable(parameter)}." + _smoothing_note(tasks)
    )
    return Section("Participation over tasks", figure, "participation-over-tasks", caption=caption)


def _series_parameter(parameters: list[str]) -> str:
    """The parameter whose values the participation lines are drawn for: the share of ALLD when a strategy mix
    is swept (the free riders), else the grid's labels, else the first parameter."""
    for name in parameters:
        if MIX_MARKER in name and name.endswith(f".{metrics.FREE_RIDER_STRATEGY}"):
            return name
    return "label" if "label" in parameters else parameters[0]


def sweep_sections(
    sweep_dir: str | Path,
    window: int = DEFAULT_WINDOW,
    alpha: float = DEFAULT_ALPHA,
    show_progress: bool = False,
) -> tuple[str, list[Section]]:
    """The title and the sections of a sweep's report."""
    index = load_index(sweep_dir)
    summary = sweep_summary(sweep_dir, window, alpha, show_progress=show_progress)
    statuses = summary["status"].value_counts().to_dict()
    info = {
        "sweep": index["name"],
        "scenario": index["scenario"],
        "seeds": ", ".join(map(str, index["seeds"])),
        "parameters": ", ".join(index["parameters"]),
        "runs": len(summary),
        **{f"runs {status}": count for status, count in sorted(statuses.items())},
    }
    sections = [Section("Summary", tables=(("Sweep", _info_table(info)),))]
    varying = [name for name in index["parameters"] if summary[name].nunique(dropna=False) > 1]
    sections += [_parameter_section(summary, parameter) for parameter in varying or index["parameters"]]
    if index["parameters"]:
        sections.append(_participation_over_tasks(summary, _series_parameter(varying or index["parameters"])))
    measures = list(RUN_COLUMNS)
    if "zd_designs" in summary.columns and summary["zd_designs"].fillna(0).gt(0).any():
        measures += ZERO_DETERMINANT_RUN_COLUMNS
    columns = ["run_id", "seed", "status", *index["parameters"], *[c for c in measures if c in summary.columns]]
    sections.append(
        Section(
            "Runs",
            caption="One row per run, the headline measures only (definitions in a run's report); every column: "
            "flmarket.analysis.sweep_summary(sweep_dir).",
            tables=(("One row per run", _readable_frame(summary[columns], digits=3)),),
        )
    )
    return f"flmarket sweep report: {index['name']}", sections


# ---------------------------------------------------------------------------------------------- the page


def _table_html(table: pd.DataFrame) -> str:
    """A table in a horizontally scrolling wrapper; text columns left-aligned."""
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in table.columns)
    body = []
    for row in table.itertuples(index=False):
        cells = []
        for value in row:
            text = value if isinstance(value, str) else _format(value)
            numeric = bool(_NUMBER.fullmatch(text)) or text == "n/a"
            cells.append(f"<td{'' if numeric else ' class=text'}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def render(title: str, sections: list[Section], dpi: int = plots.DEFAULT_DPI) -> str:
    """The HTML page: inline CSS, figures as base64 PNG data URIs at `dpi`, captions, notes and tables."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by flmarket.</p>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.figure is not None:
            encoded = base64.b64encode(plots.png_bytes(section.figure, dpi)).decode("ascii")
            parts.append(
                f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(section.title)}">'
                f"<figcaption>{html.escape(section.caption)}</figcaption></figure>"
            )
        elif section.caption:
            parts.append(f"<p>{html.escape(section.caption)}</p>")
        if section.note:
            parts.append(f'<p class="note">{html.escape(section.note)}</p>')
        for label, table in section.tables:
            parts.append(f"<h3>{html.escape(label)}</h3>")
            parts.append(_table_html(table))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def save_figures(
    sections: list[Section], directory: str | Path, dpi: int = plots.DEFAULT_DPI, vector_format: str = "pdf"
) -> list[plots.SavedFigure]:
    """Write each section's figure as NAME.png, NAME.<vector_format> and NAME.caption.txt into `directory`."""
    return [
        plots.save_figure(section.figure, directory, section.name, section.caption, dpi, vector_format)
        for section in sections
        if section.figure is not None
    ]


def write_report(
    path: str | Path,
    out: str | Path | None = None,
    window: int = DEFAULT_WINDOW,
    alpha: float = DEFAULT_ALPHA,
    dpi: int = plots.DEFAULT_DPI,
    figures_dir: str | Path | None = None,
    vector_format: str = plots.DEFAULT_FORMAT,
    show_progress: bool = False,
) -> Path:
    """Write the report of a run or sweep directory to `out` (default `<path>/report.html`) with its PNGs at
    `dpi`, and, if `figures_dir` is given, each figure there as PNG, PDF or SVG and caption; return the page."""
    plots.check_output_options(dpi, vector_format)
    source = Path(path)
    target = Path(out) if out is not None else source / REPORT_FILE
    sweep = is_sweep_dir(source)
    if not sweep and not (source / "manifest.json").is_file():  # before the destinations, which derive from it
        raise FileNotFoundError(
            f"path: not a run directory (manifest.json) or a sweep directory (sweep.json), got {str(source)!r}"
        )
    _check_destinations(target, None if figures_dir is None else Path(figures_dir))
    if sweep:
        title, sections = sweep_sections(source, window, alpha, show_progress)
    else:
        title, sections = run_sections(source, window, alpha)
    page = render(title, sections, dpi)
    if figures_dir is not None:  # the figures first, all or none, then the page: a failure leaves neither half
        from flmarket.analysis.reproduce import write_together

        write_together(
            Path(figures_dir),
            "report-figures",
            lambda staging: save_figures(sections, staging, dpi, vector_format),
            option="figures",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(target, page)
    return target


def _check_destinations(target: Path, figures_dir: Path | None) -> None:
    """Refuse, before any work, a page path that is a folder and folders (or their parents) that are files."""
    if target.is_dir():
        raise ValueError(f"out: must be the HTML file to write, got {str(target)!r}, which is a folder")
    if figures_dir is not None and target.resolve() in (figures_dir.resolve(), *figures_dir.resolve().parents):
        raise ValueError(
            "out and figures: the figures' folder cannot be the page or inside it, got the page "
            f"{str(target)!r} and the figures {str(figures_dir)!r}"
        )
    for name, folder in (("out", target.parent), ("figures", figures_dir)):
        if folder is None:
            continue
        for candidate in (folder, *folder.parents):
            if candidate.exists() and not candidate.is_dir():
                raise ValueError(f"{name}: {str(candidate)!r} is a file, where a folder is needed")


OPTION_OF_PARAMETER = {"out": "--out", "figures": "--figures", "out and figures": "--out and --figures"}
"""`write_report`'s parameters that the command line spells as options: its errors name the option typed."""


def _named_as_options(message: str) -> str:
    """An error of `write_report` with its leading parameter name (`out: ...`) spelled as the option (`--out: ...`)."""
    name, separator, rest = message.partition(": ")
    return f"{OPTION_OF_PARAMETER[name]}: {rest}" if separator and name in OPTION_OF_PARAMETER else message


def _handler(args: argparse.Namespace) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            target = write_report(
                args.path,
                args.out,
                window=args.window,
                dpi=args.dpi,
                figures_dir=args.figures,
                vector_format=args.format,
                show_progress=True,  # a bar over a sweep's runs, on a terminal only
            )
        except (FileNotFoundError, ValueError) as error:
            print(f"flmarket: error: {_named_as_options(str(error))}", file=sys.stderr)
            return 2
        except OSError as error:  # a file that cannot be written (permissions, a full disk)
            print(f"flmarket: error: {error.filename}: {error.strerror}", file=sys.stderr)
            return 2
    for message in dict.fromkeys(str(warning.message) for warning in caught):  # each summary reads the run again
        print(f"flmarket: warning: {message}", file=sys.stderr)
    print(target)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `flmarket report RUN_OR_SWEEP_DIR [--out FILE.html] [--window N] [--dpi N] [--figures DIR] [--format]`."""
    parser = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of a run or a sweep",
        description="Write one HTML page (figures embedded, no server needed) for a run directory or a sweep "
        "directory: welfare against its references, strategy shares, participation, rewards, budget and consensus "
        "costs; for sweeps, welfare, participation and stability against each swept parameter with 95% intervals. "
        "With --figures DIR, every figure is also written there as PNG, PDF (or SVG) and a caption file.",
    )
    parser.add_argument("path", metavar="RUN_OR_SWEEP_DIR", help="a run directory or a sweep directory")
    parser.add_argument("--out", metavar="FILE.html", help=f"output file (default: <dir>/{REPORT_FILE})")
    parser.add_argument(
        "--window",
        type=integer_in(2),
        default=DEFAULT_WINDOW,
        help=f"final window, in tasks, of the welfare mean and variance (at least 2; default: {DEFAULT_WINDOW})",
    )
    parser.add_argument(
        "--figures", metavar="DIR", default=None, help="also write each figure (PNG, vector, caption) to DIR"
    )
    plots.add_figure_arguments(parser)
    parser.set_defaults(func=_handler)
