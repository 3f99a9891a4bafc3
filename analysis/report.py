"""Reports: one self-contained HTML page for a run or a sweep, with figures embedded as PNG data URIs.

A run's page shows welfare over time (with the stationary state found by `analysis.stability`), strategy shares,
participation and free riding, payoffs and rewards, budget use and consensus costs, and summary tables; a figure
whose events the run does not have is replaced by a visible note. A sweep's page shows, for each swept parameter,
the mean welfare and its stability (final-window variance) with 95% confidence intervals over seeds, and the
per-run summary table. Figures are drawn on `matplotlib.figure.Figure` objects (Agg canvas, no pyplot state), so
the page needs no server and nothing global is touched.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from flmarket.analysis import metrics
from flmarket.analysis.load import load_events, load_manifest
from flmarket.analysis.stability import (
    DEFAULT_ALPHA,
    DEFAULT_WINDOW,
    extinction_and_fixation,
    stability_summary,
    time_to_stationarity,
)
from flmarket.analysis.sweeps import by_parameter, is_sweep_dir, load_index, sweep_summary

REPORT_FILE = "report.html"
FIGURE_SIZE = (8.0, 3.6)
FIGURE_DPI = 100
CONFIDENCE = 0.95

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
figure { margin: 1em 0; } figure img { max-width: 100%; } figcaption { font-size: 0.9em; color: #555; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.5em; text-align: right; } th { background: #f3f3f3; }
.note { background: #fff6d5; border-left: 4px solid #e0b000; padding: 0.5em 1em; }
"""


@dataclass(frozen=True)
class Section:
    """One part of the page: a title, then a figure (PNG bytes) or a note, an optional caption and tables."""

    title: str
    png: bytes | None = None
    note: str = ""
    caption: str = ""
    tables: tuple[tuple[str, pd.DataFrame], ...] = ()


# ---------------------------------------------------------------------------------------------- drawing


def _png(draw: Callable[[Figure], None], size: tuple[float, float] = FIGURE_SIZE) -> bytes:
    """Draw on a fresh figure and return it as PNG bytes."""
    figure = Figure(figsize=size, dpi=FIGURE_DPI, layout="constrained")
    draw(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _welfare_section(events: pd.DataFrame, window: int, alpha: float) -> Section:
    tasks = metrics.task_outcomes(events)
    rounds = metrics.round_outcomes(events)
    if tasks.empty and rounds.empty:
        return Section("Welfare over time", note="No task_finished or round_finished events: nothing to plot.")
    welfare = tasks["welfare"].to_numpy(dtype=float)
    stationarity = time_to_stationarity(welfare, window, alpha) if len(welfare) else None

    def draw(figure: Figure) -> None:
        axes = figure.subplots(1, 2 if not rounds.empty else 1, squeeze=False)[0]
        if len(welfare):
            axes[0].plot(tasks["task"], welfare, ".", alpha=0.5, label="task welfare P(y)")
            rolling = pd.Series(welfare).rolling(window, min_periods=1).mean()
            axes[0].plot(tasks["task"], rolling, "-", label=f"rolling mean ({window} tasks)")
            if stationarity is not None and stationarity.start_index is not None:
                axes[0].axvline(
                    tasks["task"].iloc[stationarity.start_index], color="k", linestyle="--", label="stationary from"
                )
            axes[0].set_xlabel("task")
            axes[0].set_ylabel("social welfare")
            axes[0].legend(fontsize="small")
        if not rounds.empty:
            axes[-1].plot(np.arange(len(rounds)), rounds["welfare"], ".-", label="round welfare W (B 21)")
            axes[-1].set_xlabel("aggregation round (all tasks)")
            axes[-1].set_ylabel("welfare")
            axes[-1].legend(fontsize="small")

    if stationarity is None:
        caption = "Mechanism welfare per aggregation round."
    elif stationarity.stationary:
        caption = (
            f"Stationary from task {int(tasks['task'].iloc[stationarity.start_index])} by the windowed "
            f"Welch test ({window}-task windows, alpha {alpha} Bonferroni-corrected)."
        )
    else:
        caption = f"No stationary state found by the windowed Welch test ({window}-task windows, alpha {alpha})."
    return Section("Welfare over time", _png(draw), caption=caption)


def _shares_section(events: pd.DataFrame) -> Section:
    shares = metrics.strategy_shares(events)
    if shares.empty:
        return Section("Strategy shares", note="No strategy_share or action_chosen events: nothing to plot.")
    wide = shares.pivot_table(index="time", columns="strategy", values="share", aggfunc="sum", fill_value=0.0)
    origin = shares["origin"].iloc[0]

    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        axes.stackplot(wide.index.to_numpy(dtype=float), wide.to_numpy(dtype=float).T, labels=list(wide.columns))
        axes.set_xlabel("simulated time (s)")
        axes.set_ylabel("share of providers")
        axes.set_ylim(0, 1)
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")

    fates = extinction_and_fixation(shares)
    source = (
        "periodic strategy_share samples"
        if origin == "strategy_share"
        else "the providers deciding in each task (action_chosen; the run has no strategy_share samples)"
    )
    return Section(
        "Strategy shares", _png(draw), caption=f"Shares from {source}.", tables=(("Extinction and fixation", fates),)
    )


def _participation_section(events: pd.DataFrame) -> Section:
    participation = metrics.participation_by_strategy(events)
    riding = metrics.free_riding(events)
    if participation.empty:
        return Section("Participation and free riding", note="No action_chosen events: nothing to plot.")

    def draw(figure: Figure) -> None:
        axes = figure.subplots(1, 2, squeeze=False)[0]
        column = "participation_rate" if participation["participation_rate"].notna().any() else "mean_action"
        for strategy, group in participation.groupby("strategy"):
            axes[0].plot(group["task"], group[column], ".-", label=str(strategy), alpha=0.8)
        axes[0].set_xlabel("task")
        axes[0].set_ylabel("participation y/R" if column == "participation_rate" else "mean action y")
        axes[0].legend(fontsize="small")
        if not riding.empty:
            axes[1].plot(riding["task"], riding["payoff_gap"], ".-", color="tab:red")
            axes[1].axhline(0, color="k", linewidth=0.8)
            axes[1].set_xlabel("task")
            axes[1].set_ylabel("payoff gap (free riders - others)")
        else:
            axes[1].text(0.5, 0.5, "no payoff events", ha="center", va="center", transform=axes[1].transAxes)

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
    return Section(
        "Participation and free riding",
        _png(draw),
        caption="Left: participation by strategy per task. Right: mean payoff of free riders (ALLD or "
        "non-honest updates) minus that of the other providers.",
        tables=(("Participation by strategy (over all tasks)", overall),),
    )


def _payoff_section(events: pd.DataFrame) -> Section:
    payoffs = metrics.events_of(events, ["provider_payoff"])
    if payoffs.empty or "utility" not in payoffs.columns:
        return Section("Provider payoffs", note="No provider_payoff events: nothing to plot.")
    groups = {str(name): group["utility"].to_numpy(dtype=float) for name, group in payoffs.groupby("strategy")}

    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        axes.boxplot(list(groups.values()), tick_labels=list(groups))
        axes.set_xlabel("strategy")
        axes.set_ylabel("utility U_i per task")

    return Section(
        "Provider payoffs",
        _png(draw),
        caption="Distribution of U_i (SPEC B.1) per strategy, over all providers and tasks.",
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

    def draw(figure: Figure) -> None:
        axes = figure.subplots(1, 2, squeeze=False)[0]
        axes[0].hist(rewards["reward"].to_numpy(dtype=float), bins=30, color="tab:green")
        axes[0].set_xlabel("reward rho_i^r")
        axes[0].set_ylabel("payments")
        axes[1].plot(np.arange(len(per_round)), per_round["reward_gini"], ".-", label="Gini of rewards")
        axes[1].plot(np.arange(len(fairness)), fairness["fairness"], ".-", label="corr(reward, contribution)")
        axes[1].set_xlabel("aggregation round (all tasks)")
        axes[1].legend(fontsize="small")

    return Section(
        "Reward distribution",
        _png(draw),
        caption="Left: every Shapley reward paid (B 13). Right: per round, the Gini coefficient of the "
        "rewards and their correlation with the providers' contributions.",
    )


def _budget_section(events: pd.DataFrame) -> Section:
    budget = metrics.budget_use(events)
    if budget.empty:
        return Section("Budget use", note="No task_configured events: budget use cannot be computed.")

    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        for column in ("provider_budget_use", "committee_budget_use", "round_cap_use"):
            axes.plot(budget["task"], budget[column], ".-", label=column.replace("_", " "))
        axes.set_xlabel("task")
        axes.set_ylabel("fraction used")
        axes.legend(fontsize="small")

    return Section(
        "Budget use",
        _png(draw),
        caption="Per task: rewards paid / B(1 - sigma), committee cost / "
        "(B sigma) (B 15a) and rounds run / r_max (B 11).",
    )


def _consensus_section(events: pd.DataFrame) -> Section:
    consensus = metrics.consensus_costs(events)
    if consensus.empty:
        return Section("Consensus costs", note="No consensus_decided events in this run: no PBFT costs to plot.")

    def draw(figure: Figure) -> None:
        axes = figure.subplots(1, 2, squeeze=False)[0]
        positions = np.arange(len(consensus))
        axes[0].plot(positions, consensus["messages"], ".-")
        axes[0].set_xlabel("decided round")
        axes[0].set_ylabel("PBFT messages")
        axes[1].plot(positions, consensus["latency_s"], ".-", color="tab:purple")
        axes[1].set_xlabel("decided round")
        axes[1].set_ylabel("consensus latency (s)")

    summary = consensus[["view", "messages", "bytes", "latency_s"]].astype(float).describe().T
    return Section(
        "Consensus costs",
        _png(draw),
        caption="PBFT messages and latency per decided round (SPEC D.2).",
        tables=(("Consensus costs", summary.reset_index(names="measure")),),
    )


# ------------------------------------------------------------------------------------------------ pages


def _summary_table(values: dict[str, object]) -> pd.DataFrame:
    return pd.DataFrame({"measure": list(values), "value": [_format(value) for value in values.values()]})


def _format(value: object) -> str:
    if isinstance(value, float | np.floating):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    return str(value)


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
    events = load_events(run_dir, kinds=list(metrics.ANALYSIS_KINDS))  # not the message log: a tenth of the rows
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
    sections = [
        Section("Summary", tables=(("Run", _summary_table(info)), ("Metrics and stability", _summary_table(headline)))),
        _welfare_section(events, window, alpha),
        _shares_section(events),
        _participation_section(events),
        _payoff_section(events),
        _rewards_section(events),
        _budget_section(events),
        _consensus_section(events),
    ]
    return f"flmarket run report: {info['run id']}", sections


def _parameter_section(summary: pd.DataFrame, parameter: str) -> Section:
    """Mean welfare and final-window welfare variance against one swept parameter, with 95% CIs over seeds."""
    finished = summary[summary["status"] == "finished"]
    measures = (("mean_welfare", "mean welfare per task"), ("final_window_variance", "welfare variance (final window)"))
    tables = tuple((label, by_parameter(finished, parameter, metric, CONFIDENCE)) for metric, label in measures)
    if finished.empty:
        return Section(f"Against {parameter}", note="No finished runs: nothing to plot.")
    numeric = pd.api.types.is_numeric_dtype(finished[parameter])

    def draw(figure: Figure) -> None:
        axes = figure.subplots(1, 2, squeeze=False)[0]
        for axis, (label, table) in zip(axes, tables, strict=True):
            values = table[parameter]
            positions = values.to_numpy(dtype=float) if numeric else np.arange(len(values))
            errors = table["half_width"].fillna(0.0).to_numpy(dtype=float)
            axis.errorbar(positions, table["mean"], yerr=errors, fmt="o-" if numeric else "o", capsize=4)
            if not numeric:
                axis.set_xticks(positions, [str(value) for value in values], rotation=20, fontsize="small")
            axis.set_xlabel(parameter)
            axis.set_ylabel(label)

    return Section(
        f"Against {parameter}",
        _png(draw),
        caption=f"Mean over runs with a {CONFIDENCE:.0%} Student-t confidence interval over seeds "
        "(and over the other swept parameters, if any).",
        tables=tuple((f"{label} by {parameter}", table) for label, table in tables),
    )


def sweep_sections(
    sweep_dir: str | Path,
    window: int = DEFAULT_WINDOW,
    alpha: float = DEFAULT_ALPHA,
) -> tuple[str, list[Section]]:
    """The title and the sections of a sweep's report."""
    index = load_index(sweep_dir)
    summary = sweep_summary(sweep_dir, window, alpha)
    statuses = summary["status"].value_counts().to_dict()
    info = {
        "sweep": index["name"],
        "scenario": index["scenario"],
        "seeds": ", ".join(map(str, index["seeds"])),
        "parameters": ", ".join(index["parameters"]),
        "runs": len(summary),
        **{f"runs {status}": count for status, count in sorted(statuses.items())},
    }
    columns = [name for name in summary.columns if name not in ("run_dir",)]
    sections = [Section("Summary", tables=(("Sweep", _summary_table(info)),))]
    sections += [_parameter_section(summary, parameter) for parameter in index["parameters"]]
    sections.append(Section("Runs", tables=(("One row per run", summary[columns]),)))
    return f"flmarket sweep report: {index['name']}", sections


def render(title: str, sections: list[Section]) -> str:
    """The HTML page: inline CSS, figures as base64 PNG data URIs, notes for skipped figures."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by flmarket.</p>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.png is not None:
            encoded = base64.b64encode(section.png).decode("ascii")
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
            parts.append(table.to_html(index=False, na_rep="n/a", float_format=lambda value: f"{value:.4g}", border=0))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(
    path: str | Path, out: str | Path | None = None, window: int = DEFAULT_WINDOW, alpha: float = DEFAULT_ALPHA
) -> Path:
    """Write the report of a run or sweep directory to `out` (default `<path>/report.html`); return its path."""
    source = Path(path)
    if is_sweep_dir(source):
        title, sections = sweep_sections(source, window, alpha)
    elif (source / "manifest.json").is_file():
        title, sections = run_sections(source, window, alpha)
    else:
        raise FileNotFoundError(
            f"path: not a run directory (manifest.json) or a sweep directory (sweep.json), got {str(source)!r}"
        )
    target = Path(out) if out is not None else source / REPORT_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(render(title, sections), encoding="utf-8")
    temporary.replace(target)
    return target


def _handler(args: argparse.Namespace) -> int:
    try:
        target = write_report(args.path, args.out, window=args.window)
    except (FileNotFoundError, ValueError) as error:
        print(f"flmarket: error: {error}", file=sys.stderr)
        return 2
    print(target)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `flmarket report RUN_OR_SWEEP_DIR [--out FILE.html] [--window N]`."""
    parser = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of a run or a sweep",
        description="Write one HTML page (figures embedded, no server needed) for a run directory or a sweep "
        "directory: welfare, strategy shares, participation, rewards, budget and consensus costs; "
        "for sweeps, welfare and stability against each swept parameter with 95% confidence intervals.",
    )
    parser.add_argument("path", metavar="RUN_OR_SWEEP_DIR", help="a run directory or a sweep directory")
    parser.add_argument("--out", metavar="FILE.html", help=f"output file (default: <dir>/{REPORT_FILE})")
    parser.add_argument(
        "--window",
        type=int,
        default=DEFAULT_WINDOW,
        help=f"window, in tasks, of the stationarity test (default: {DEFAULT_WINDOW})",
    )
    parser.set_defaults(func=_handler)
