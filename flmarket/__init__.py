"""flmarket: a discrete-event, agent-based simulator of federated-learning data markets (BGFL and MMZD).

The project's folders install under this one namespace: `flmarket.sim`, `flmarket.agents`, `flmarket.market`
and `flmarket.analysis` (see `[tool.setuptools] package-dir` in pyproject.toml).

`import flmarket as fm` gives the library API (`flmarket.api`), imported lazily so that `import flmarket` stays
fast (nothing below is imported until first used):

- simulate: `fm.run(scenario, seed=, overrides=, out=)` -> `fm.Run` (`.directory`, `.summary`, `.events(kinds=)`,
  `.tasks()`); `fm.sweep(grid, seeds=, overrides=, workers=, out=)` -> `fm.Sweep` (`.cells()`, `.summary()`,
  `.events(kinds=)`); `fm.open_run(dir)`, `fm.open_sweep(dir)`; `fm.scenarios()`, `fm.grids()`; `fm.load` (a
  validated `fm.Scenario`); `fm.MarketModel` (the Mesa model, for `mesa.batch_run`).
- read: `fm.load_events`, `fm.load_manifest`, `fm.load_sweep`, `fm.sweep_summary`.
- metrics (`flmarket.analysis`): `fm.run_summary`, `fm.task_outcomes`, `fm.round_outcomes`,
  `fm.participation_by_strategy`, `fm.strategy_shares`, `fm.gini`; stability: `fm.stability_summary`,
  `fm.time_averaged_shares`, `fm.extinction_and_fixation`, `fm.mser_warmup`, `fm.stationarity_verdict`,
  `fm.batch_means_interval`;
  across seeds: `fm.by_parameter` and `fm.confidence_interval` (Student-t intervals of the mean).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("flmarket")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

_API: dict[str, str] = {
    **dict.fromkeys(
        ("run", "sweep", "Run", "Sweep", "load", "open_run", "open_sweep", "scenarios", "grids"), "flmarket.api"
    ),
    **dict.fromkeys(("Scenario", "ScenarioError"), "flmarket.sim.config"),
    "GridError": "flmarket.sim.sweep",
    "MarketModel": "flmarket.sim.model",
    **dict.fromkeys(("load_events", "load_manifest"), "flmarket.analysis.load"),
    **dict.fromkeys(("load_sweep", "sweep_summary", "by_parameter", "confidence_interval"), "flmarket.analysis.sweeps"),
    **dict.fromkeys(
        ("run_summary", "task_outcomes", "round_outcomes", "participation_by_strategy", "strategy_shares", "gini"),
        "flmarket.analysis.metrics",
    ),
    **dict.fromkeys(
        (
            "stability_summary",
            "time_averaged_shares",
            "extinction_and_fixation",
            "mser_warmup",
            "batch_means_interval",
            "stationarity_verdict",
        ),
        "flmarket.analysis.stability",
    ),
}
"""Each public name and the module it lives in."""

__all__ = [
    "__version__",
    "run",
    "sweep",
    "Run",
    "Sweep",
    "load",
    "open_run",
    "open_sweep",
    "scenarios",
    "grids",
    "Scenario",
    "ScenarioError",
    "GridError",
    "MarketModel",
    "load_events",
    "load_manifest",
    "load_sweep",
    "sweep_summary",
    "by_parameter",
    "confidence_interval",
    "run_summary",
    "task_outcomes",
    "round_outcomes",
    "participation_by_strategy",
    "strategy_shares",
    "gini",
    "stability_summary",
    "time_averaged_shares",
    "extinction_and_fixation",
    "mser_warmup",
    "batch_means_interval",
    "stationarity_verdict",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562), so `import flmarket` imports nothing heavy."""
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'flmarket' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))


if TYPE_CHECKING:
    from flmarket.analysis.load import load_events, load_manifest
    from flmarket.analysis.metrics import (
        gini,
        participation_by_strategy,
        round_outcomes,
        run_summary,
        strategy_shares,
        task_outcomes,
    )
    from flmarket.analysis.stability import (
        batch_means_interval,
        extinction_and_fixation,
        mser_warmup,
        stability_summary,
        stationarity_verdict,
        time_averaged_shares,
    )
    from flmarket.analysis.sweeps import by_parameter, confidence_interval, load_sweep, sweep_summary
    from flmarket.api import Run, Sweep, grids, load, open_run, open_sweep, run, scenarios, sweep
    from flmarket.sim.config import Scenario, ScenarioError
    from flmarket.sim.model import MarketModel
    from flmarket.sim.sweep import GridError
