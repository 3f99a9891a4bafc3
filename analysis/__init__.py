"""Read event logs into pandas; metrics, sweeps' results, reports and paper reproductions."""

from analysis.load import load_events, load_manifest
from analysis.metrics import gini, round_outcomes, run_summary, strategy_shares, task_outcomes
from analysis.report import write_report
from analysis.stability import stability_summary
from analysis.sweeps import load_sweep, sweep_summary

__all__ = [
    "gini",
    "load_events",
    "load_manifest",
    "load_sweep",
    "round_outcomes",
    "run_summary",
    "stability_summary",
    "strategy_shares",
    "sweep_summary",
    "task_outcomes",
    "write_report",
]
