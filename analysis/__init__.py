"""Read event logs into pandas; metrics, sweeps' results, reports, figures (`plots`), SQL queries and paper
reproductions.

The readers (`analysis.load`) and `query` are imported with the package; the other names on first use (PEP 562),
so `from flmarket.analysis import load_events` does not load matplotlib, scipy or DuckDB. (`query` is bound here
eagerly: the function shares its name with its module, which a lazy import would leave in its place.)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flmarket.analysis.load import (
    PartialRunWarning,
    RunCheck,
    RunIntegrityError,
    load_events,
    load_manifest,
    verify_run,
)
from flmarket.analysis.query import query

_EXPORTS = {
    "PartialRunWarning": "flmarket.analysis.load",
    "RunCheck": "flmarket.analysis.load",
    "RunIntegrityError": "flmarket.analysis.load",
    "fixation_table": "flmarket.analysis.fixation",
    "gini": "flmarket.analysis.metrics",
    "load_events": "flmarket.analysis.load",
    "load_manifest": "flmarket.analysis.load",
    "load_sweep": "flmarket.analysis.sweeps",
    "mechanism_targets": "flmarket.analysis.metrics",
    "query": "flmarket.analysis.query",
    "round_outcomes": "flmarket.analysis.metrics",
    "run_summary": "flmarket.analysis.metrics",
    "stability_summary": "flmarket.analysis.stability",
    "strategy_shares": "flmarket.analysis.metrics",
    "sweep_summary": "flmarket.analysis.sweeps",
    "task_outcomes": "flmarket.analysis.metrics",
    "verify_run": "flmarket.analysis.load",
    "write_report": "flmarket.analysis.report",
}

__all__ = [
    "PartialRunWarning",
    "RunCheck",
    "RunIntegrityError",
    "fixation_table",
    "gini",
    "load_events",
    "load_manifest",
    "load_sweep",
    "mechanism_targets",
    "plots",
    "query",
    "round_outcomes",
    "run_summary",
    "stability_summary",
    "strategy_shares",
    "sweep_summary",
    "task_outcomes",
    "verify_run",
    "write_report",
]

if TYPE_CHECKING:
    from flmarket.analysis import plots
    from flmarket.analysis.fixation import fixation_table
    from flmarket.analysis.metrics import (
        gini,
        mechanism_targets,
        round_outcomes,
        run_summary,
        strategy_shares,
        task_outcomes,
    )
    from flmarket.analysis.report import write_report
    from flmarket.analysis.stability import stability_summary
    from flmarket.analysis.sweeps import load_sweep, sweep_summary


_SUBMODULES = ("plots",)  # modules exposed whole: `flmarket.analysis.plots.welfare_figure(...)`


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        value = importlib.import_module(f"flmarket.analysis.{name}")
        globals()[name] = value
        return value
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flmarket.analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
