"""The library API behind `import flmarket as fm`: run a scenario or a sweep from Python and read the results.

    import flmarket as fm

    run = fm.run("quickstart", seed=7, overrides={"run.tasks": 20}, out="runs")
    run.directory, run.summary["mean_welfare"]             # the run directory and its one-row summary
    run.events(kinds=["task_finished"])                     # the event log as a pandas frame

    sweep = fm.sweep("population_mix", seeds=[1, 2], workers=0, out="sweeps")
    sweep.cells()                                           # one row per run: seed, status, swept parameters
    sweep.summary()                                         # ... with welfare and stability metrics
    fm.by_parameter(sweep.summary(), "providers.strategy_mix.ALLD", "mean_welfare")   # means with 95% CIs

A scenario is a bundled name (`fm.scenarios()`), a TOML path or a validated `Scenario`; overrides are dotted
paths, as `flmarket run --set` takes them, and replace the value at their path whole. A grid is a bundled name
(`fm.grids()`), a TOML path or a dictionary of the same shape (`[sweep]` and `[grid]` or `[[cells]]`, see
`flmarket.sim.sweep`). Everything here is also in the command line; this module only joins the pieces.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from flmarket.sim.config import Scenario
    from flmarket.sim.sweep import Grid

DEFAULT_RUN_DIR = "runs"
DEFAULT_SWEEP_DIR = "sweeps"


@dataclass(frozen=True)
class Run:
    """A run directory on disk (`runs/<run_id>/`): its manifest, one-row summary and events.

    `fm.run(...)` returns one; `fm.open_run(directory)` opens an existing one. Nothing is re-simulated.
    """

    directory: Path

    @property
    def manifest(self) -> dict[str, Any]:
        """The run's manifest: scenario, seed, versions, status and counters."""
        from flmarket.analysis.load import load_manifest

        return load_manifest(self.directory)

    @property
    def status(self) -> str:
        """`finished`, `failed`, `interrupted` (or `running` while it runs)."""
        return str(self.manifest.get("status"))

    @cached_property
    def summary(self) -> dict[str, float]:
        """`analysis.metrics.run_summary` of the run: tasks, mean welfare, participation, rewards, ...

        `pandas.DataFrame([run.summary])` makes it a one-row frame."""
        from flmarket.analysis.metrics import run_summary

        return run_summary(self.directory)

    def events(self, kinds: Sequence[str] | None = None) -> pd.DataFrame:
        """The event log as one frame ordered by `seq` (`analysis.load_events`), optionally only some kinds."""
        from flmarket.analysis.load import load_events

        return load_events(self.directory, kinds=kinds)  # type: ignore[arg-type]  (load_events checks the type)

    def tasks(self) -> pd.DataFrame:
        """One row per FL task: time, players, participation, welfare (`analysis.metrics.task_outcomes`)."""
        from flmarket.analysis.metrics import task_outcomes

        return task_outcomes(self.directory)


@dataclass(frozen=True)
class Sweep:
    """A sweep directory (`sweeps/<name>/`): one run per cell x seed, read as tidy frames.

    `fm.sweep(...)` returns one; `fm.open_sweep(directory)` opens an existing one. `executed` and `failed` are the
    run ids simulated in this call and those whose run failed (empty for an opened sweep).
    """

    directory: Path
    executed: tuple[str, ...] = ()
    failed: tuple[str, ...] = field(default=())

    def cells(self) -> pd.DataFrame:
        """One row per run: run_id, label, seed, status, error, run_dir and one numeric column per swept
        parameter (a strategy mix as `providers.strategy_mix.ALLD`, ...)."""
        from flmarket.analysis.sweeps import cells_frame

        return cells_frame(self.directory)

    def summary(self) -> pd.DataFrame:
        """`cells()` joined with each finished run's summary and stability metrics (`analysis.sweep_summary`)."""
        from flmarket.analysis.sweeps import sweep_summary

        return sweep_summary(self.directory)

    def events(self, kinds: Sequence[str] | None = None) -> pd.DataFrame:
        """Every finished run's events in one frame, with the cell columns (`analysis.load_sweep`)."""
        from flmarket.analysis.sweeps import load_sweep

        return load_sweep(self.directory, kinds=kinds)  # type: ignore[arg-type]  (load_sweep checks the type)

    def runs(self) -> list[Run]:
        """The finished runs, in the index's order."""
        cells = self.cells()
        return [Run(Path(directory)) for directory in cells.loc[cells["status"] == "finished", "run_dir"]]


def load(scenario: str | Path | Scenario = "quickstart", overrides: Mapping[str, Any] | None = None) -> Scenario:
    """A validated scenario: a bundled name, a TOML path or a `Scenario`, with dotted-path overrides applied."""
    from flmarket.sim.config import Scenario, load_scenario, revalidated

    _check_overrides(overrides)
    if isinstance(scenario, Scenario):
        return revalidated(scenario, overrides)
    if not isinstance(scenario, str | os.PathLike):
        raise TypeError(
            f"scenario: must be a bundled name, a TOML file's path or a Scenario, got {type(scenario).__name__} "
            f"{scenario!r}"
        )
    return load_scenario(scenario, overrides or {})


def run(
    scenario: str | Path | Scenario = "quickstart",
    *,
    seed: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    progress: bool = False,
) -> Run:
    """Simulate a scenario and write its run directory under `out` (default: the scenario's `run.output_dir`).

    `seed` sets `run.seed`; `overrides` maps dotted paths to values (`{"run.tasks": 20, "providers.count": 50}`).
    Bad input raises `ScenarioError` naming the field, before anything is written. The same scenario and seed
    give the same events.
    """
    from flmarket.sim.runner import run_scenario

    _check_overrides(overrides)
    merged = dict(overrides or {})
    if seed is not None:
        merged["run.seed"] = _plain_integer(seed)
    validated = load(scenario, merged)
    folder = _output_folder(out) if out is not None else None
    result = run_scenario(validated, output_dir=folder, show_progress=progress)
    return Run(Path(result.run_dir))


def _output_folder(out: str | Path) -> Path:
    """`out` as a folder path, refused up front when it cannot be one (a file or under one, not writable, or not
    a path at all), as the command line's --out is."""
    from flmarket.arguments import folder_problem

    if not isinstance(out, str | os.PathLike) or not str(out):
        raise TypeError(f"out: must be a folder path (str or pathlib.Path), got {out!r}")
    problem = folder_problem(out)
    if problem is not None:
        raise NotADirectoryError(f"out: {problem}")
    return Path(out)


def _check_overrides(overrides: Any) -> None:
    """Refuse overrides that are not a mapping of dotted paths to values, naming the argument."""
    if overrides is not None and not isinstance(overrides, Mapping):
        raise TypeError(
            f"overrides: must map dotted paths to values, e.g. {{'run.tasks': 20}}, got {type(overrides).__name__} "
            f"{overrides!r}"
        )


def _plain_integer(value: Any) -> Any:
    """A numpy integer as a Python int (the schema's integers are strict, and `np.int64(3)` is one); anything else
    as it is, for the schema to judge."""
    import numbers

    if isinstance(value, numbers.Integral) and not isinstance(value, bool | int):
        return int(value)
    return value


def _grid(grid: str | Path | Mapping[str, Any] | Grid) -> Grid:
    from flmarket.sim.config import plain_values
    from flmarket.sim.sweep import Grid, load_grid, parse_grid

    if isinstance(grid, Grid):
        return grid
    if isinstance(grid, Mapping):
        return parse_grid(plain_values(grid))  # a grid built with numpy: np.arange(...) values, np.int64 seeds
    if not isinstance(grid, str | os.PathLike):
        raise TypeError(
            f"grid: must be a bundled grid's name, a TOML file's path, a dictionary or a Grid, got "
            f"{type(grid).__name__} {grid!r}"
        )
    return load_grid(grid)


def _directory(directory: Any) -> Path:
    """`directory` as a Path, or a TypeError naming the argument."""
    if not isinstance(directory, str | os.PathLike):
        raise TypeError(
            f"directory: must be a path (str or pathlib.Path), got {type(directory).__name__} {directory!r}"
        )
    return Path(directory)


def sweep(
    grid: str | Path | Mapping[str, Any] | Grid,
    *,
    seeds: int | Sequence[int] | None = None,
    overrides: Mapping[str, Any] | None = None,
    workers: int = 0,
    out: str | Path = DEFAULT_SWEEP_DIR,
    scheduler: str | None = None,
    progress: bool = False,
) -> Sweep:
    """Run every cell x seed of a grid (a bundled name, a TOML path or a dictionary) under `out/<name>/`.

    `seeds` replaces the grid's seeds (a count n means 0..n-1); `overrides` applies to every cell and may not
    touch a key the grid varies. `workers=0` (the default here) runs in this process; `workers=N` starts a local
    dask cluster of N processes; `scheduler` uses an existing one. Re-running resumes: finished, intact runs are
    skipped. A failed run is recorded in `Sweep.failed` and its row, not raised.
    """
    from flmarket.sim.sweep import GridError, run_sweep, with_options

    validated = _grid(grid)
    if hasattr(seeds, "tolist") and not isinstance(seeds, str | bytes):  # a numpy array or integer
        seeds = seeds.tolist()
    if isinstance(seeds, Sequence) and not isinstance(seeds, str | bytes):
        seeds = [_plain_integer(seed) for seed in seeds]
    if seeds is not None and (isinstance(seeds, str | bytes | bool) or not isinstance(seeds, int | Sequence)):
        raise GridError(f"seeds: must be a count (an int >= 1) or a list of integers >= 0, got {seeds!r}")
    if seeds is not None or overrides:
        validated = with_options(validated, seeds=seeds, overrides=overrides, names=("overrides", "seeds"))
    folder = _output_folder(out)
    result = run_sweep(validated, workers=workers, scheduler=scheduler, output_dir=folder, show_progress=progress)
    return Sweep(result.sweep_dir, result.executed, result.failed)


def open_run(directory: str | Path) -> Run:
    """An existing run directory as a `Run` (FileNotFoundError if it has no manifest)."""
    path = _directory(directory)
    if not (path / "manifest.json").is_file():
        raise FileNotFoundError(f"directory: no manifest.json in {path} (is it a run directory?)")
    return Run(path)


def open_sweep(directory: str | Path) -> Sweep:
    """An existing sweep directory as a `Sweep` (FileNotFoundError if it has no sweep.json)."""
    path = _directory(directory)
    if not (path / "sweep.json").is_file():
        raise FileNotFoundError(f"directory: no sweep.json in {path} (is it a sweep directory?)")
    return Sweep(path)


def scenarios() -> list[str]:
    """The names of the bundled scenarios (`fm.run(NAME)`)."""
    from flmarket.sim.config import bundled_scenarios

    return list(bundled_scenarios())


def grids() -> list[str]:
    """The names of the bundled grids (`fm.sweep(NAME)`)."""
    from flmarket.sim.sweep import bundled_grids

    return list(bundled_grids())
