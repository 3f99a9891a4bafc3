"""Read event logs into pandas; metrics, sweeps' results, reports and paper reproductions."""

from flmarket.analysis.load import load_events, load_manifest
from flmarket.analysis.metrics import gini, round_outcomes, run_summary, strategy_shares, task_outcomes
from flmarket.analysis.report import write_report
from flmarket.analysis.stability import stability_summary
from flmarket.analysis.sweeps import load_sweep, sweep_summary

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
