"""Cross-run queries over a sweep directory: every cell's events in one frame, and one summary row per cell.

A sweep directory (written by `flmarket sweep`) holds `sweep.json` - the index: name, swept `parameters`, and per
run id its label, seed, overrides, parameters and status - and `cells/<run_id>/` run directories. This module reads
that layout only (it does not import the simulator). The finished runs' events are read with
`analysis.load.load_runs_events` (each verified against its manifest, the kind filter pushed down to the scans)
into one frame with the union of their columns. Table-valued parameters (a strategy mix) become one numeric
column per key (`providers.strategy_mix.ALLD`).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from flmarket.analysis.load import events_frame, load_runs_events
from flmarket.analysis.metrics import RunEvents, run_summary
from flmarket.analysis.stability import DEFAULT_ALPHA, DEFAULT_WINDOW, stability_summary

INDEX_FILE = "sweep.json"
CELL_COLUMNS = ("run_id", "label", "seed", "status")


def _sweep_path(sweep_dir: str | Path) -> Path:
    path = Path(sweep_dir)
    if not (path / INDEX_FILE).is_file():
        raise FileNotFoundError(f"sweep_dir: no {INDEX_FILE} in {path} (is it a sweep directory?)")
    return path


def load_index(sweep_dir: str | Path) -> dict[str, Any]:
    """The sweep's index (`sweep.json`), with `parameters` naming the frame columns of the swept parameters
    (`parameter_columns`) and `swept` the dotted paths as the grid gave them."""
    path = _sweep_path(sweep_dir) / INDEX_FILE
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error}); re-run the sweep to rebuild it from its cells") from None
    cells = index.get("cells") if isinstance(index, dict) else None
    if not isinstance(cells, dict) or not all(
        isinstance(cell, dict) and isinstance(cell.get("parameters", {}), dict) for cell in cells.values()
    ):
        raise ValueError(
            f"{path}: not a sweep index (a JSON object whose 'cells' maps each run id to its cell); re-run the "
            "sweep to rebuild it from its cells"
        )
    index["swept"] = list(index.get("parameters", []))
    index["parameters"] = parameter_columns(index)
    return index


def is_sweep_dir(path: str | Path) -> bool:
    """Whether `path` is a sweep directory (holds a sweep index)."""
    return (Path(path) / INDEX_FILE).is_file()


ZERO_WHEN_ABSENT = ("strategy_mix", "strategy_counts")
"""Tables whose absent keys mean 0 (a strategy not in the mix has share 0): their columns are filled with 0."""


def flatten_parameter(path: str, value: Any) -> dict[str, Any]:
    """A swept value as numeric frame columns: a table becomes one column per key (`providers.strategy_mix.ALLD`),
    nested tables recursively, keys sorted; a list becomes a comma-separated string; anything else one column."""
    if isinstance(value, dict):
        columns: dict[str, Any] = {}
        for key in sorted(value):
            columns.update(flatten_parameter(f"{path}.{key}", value[key]))
        return columns
    if isinstance(value, list):
        return {path: ",".join(str(item) for item in value)}
    return {path: value}


def _flat_parameters(index: dict[str, Any]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The parameter columns in order of first appearance, and each run's values (absent keys filled)."""
    swept = [name for name in index.get("swept", index.get("parameters", [])) if name != "label"]
    rows: dict[str, dict[str, Any]] = {}
    columns: dict[str, None] = {}
    for run_id, cell in index["cells"].items():
        row: dict[str, Any] = {}
        for name in swept:
            row.update(flatten_parameter(name, cell["parameters"].get(name)))
        rows[run_id] = row
        columns.update(dict.fromkeys(row))
    columns = {  # each swept path's columns together, a table's keys sorted
        column: None
        for name in swept
        for column in sorted(column for column in columns if column == name or column.startswith(f"{name}."))
    }
    for row in rows.values():
        for column in columns:
            if column not in row:
                table = column.rsplit(".", 1)[0]
                row[column] = 0 if table.endswith(ZERO_WHEN_ABSENT) else None
    return list(columns), rows


def parameter_columns(index: dict[str, Any]) -> list[str]:
    """The frame columns of the swept parameters: `label` for a grid of [[cells]], then one column per swept
    dotted path, or per key of a table-valued one (`providers.strategy_mix.ALLC`, `...ALLD`)."""
    swept = index.get("swept", index.get("parameters", []))
    return (["label"] if "label" in swept else []) + _flat_parameters(index)[0]


def cells_frame(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per run: run_id, label, seed, status, error, run_dir and one column per swept parameter (a
    table-valued parameter gives one numeric column per key, e.g. `providers.strategy_mix.ALLD`; a strategy
    absent from a cell's mix has share 0 there)."""
    path = _sweep_path(sweep_dir)
    index = load_index(path)
    columns, values = _flat_parameters(index)
    rows = []
    for run_id, cell in index["cells"].items():
        rows.append(
            {
                "run_id": run_id,
                "label": cell["label"],
                "seed": int(cell["seed"]),
                "status": cell["status"],
                "error": cell.get("error", ""),
                "run_dir": str(path / index.get("cells_dir", "cells") / run_id),
                **values[run_id],
            }
        )
    frame = pd.DataFrame(rows, columns=[*CELL_COLUMNS, "error", "run_dir", *columns])
    for column in columns:
        if frame[column].map(lambda item: isinstance(item, int | float) and not isinstance(item, bool)).all():
            frame[column] = pd.to_numeric(frame[column])
    return frame.astype({"run_id": "string", "label": "string", "status": "string", "seed": "int64"})


def load_sweep(sweep_dir: str | Path, kinds: list[str] | None = None) -> pd.DataFrame:
    """Events of every finished run of a sweep in one frame, with run_id, label, seed and the swept parameters.

    Rows are ordered by run (as in the index) then seq. The runs are read with `analysis.load.load_runs_events`
    (each verified against its manifest; `kinds` pushed down to the scans; one frame built column by column, no
    padded table); fields that are null throughout are dropped, and an event field named like a cell column
    (`run_started.seed`) becomes `event_<name>`.
    """
    cells = cells_frame(sweep_dir)
    finished = cells[cells["status"] == "finished"].reset_index(drop=True)
    meta_columns = [name for name in cells.columns if name not in ("status", "error", "run_dir")]
    events, counts = load_runs_events(list(finished["run_dir"]), kinds=kinds, drop_null_columns=True)
    if events.empty:
        empty = events_frame(
            pa.table(
                {
                    "time": pa.array([], pa.float64()),
                    "seq": pa.array([], pa.int64()),
                    "kind": pa.array([], pa.string()),
                    "agent": pa.array([], pa.int64()),
                }
            )
        )
        for name in meta_columns:
            empty[name] = pd.Series(dtype=cells[name].dtype)
        return empty[[*meta_columns, "time", "seq", "kind", "agent"]]
    events = events.rename(
        columns={name: f"event_{name}" for name in meta_columns if name in events.columns and name != "run_id"}
    )
    run_of_row = np.repeat(np.arange(len(finished)), counts)
    meta = finished[meta_columns].iloc[run_of_row].reset_index(drop=True)  # cells_frame types them (run_id: string)
    return pd.concat([meta, events], axis=1)


def sweep_summary(
    sweep_dir: str | Path,
    window: int = DEFAULT_WINDOW,
    alpha: float = DEFAULT_ALPHA,
    show_progress: bool = False,
) -> pd.DataFrame:
    """One row per run: its cell columns (`cells_frame`), `analysis.metrics.run_summary` and the stability summary.

    Runs that did not finish keep their row with NaN metrics, so a failed cell stays visible. `show_progress`
    draws a bar over the runs on a terminal (about 0.4 s each for a short quick-start run).
    """
    cells = cells_frame(sweep_dir)
    rows = []
    bar = tqdm(
        cells.iterrows(),
        total=len(cells),
        unit="run",
        desc="summarising",
        disable=not show_progress or not sys.stderr.isatty(),
        leave=False,
    )
    for _, cell in bar:
        metrics: dict[str, Any] = {}
        if cell["status"] == "finished":
            events = RunEvents(cell["run_dir"])  # each kind the summaries read, once, in its own narrow frame
            metrics = run_summary(events) | stability_summary(events, window, alpha)
        rows.append(metrics)
    no_events = pd.DataFrame({"kind": pd.Series(dtype="string"), "seq": pd.Series(dtype="int64")})
    columns = list(run_summary(no_events) | stability_summary(no_events, window, alpha))
    summaries = pd.DataFrame(rows, index=cells.index).reindex(columns=columns)
    return pd.concat([cells, summaries], axis=1)


def confidence_interval(values: pd.Series | Sequence[float], level: float = 0.95) -> tuple[float, float, int]:
    """Mean and half-width of the Student-t confidence interval of the mean: t_{(1+level)/2, n-1} * s / sqrt(n).

    `values`: a Series, list or array of numbers; missing and infinite values (failed runs) are left out, text
    that is not a number is an error. Returns (mean, half_width, n); the half-width is NaN for fewer than two
    finite values.
    """
    from scipy import stats

    if not 0 < level < 1:
        raise ValueError(f"level: must be in (0, 1), got {level}")
    if isinstance(values, str | bytes) or not hasattr(values, "__len__"):
        raise TypeError(f"values: must be a Series, list or array of numbers, got {type(values).__name__}")
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values, dtype=object).ravel())
    try:
        finite = pd.to_numeric(series, errors="raise").astype(float)
    except (ValueError, TypeError) as error:
        raise ValueError(f"values: must be numbers ({' '.join(str(error).split())})") from None
    finite = finite[finite.notna() & finite.abs().lt(math.inf)]
    count = len(finite)
    if count == 0:
        return math.nan, math.nan, 0
    mean = float(finite.mean())
    if count < 2:
        return mean, math.nan, count
    half_width = float(stats.t.ppf((1 + level) / 2, count - 1) * finite.std(ddof=1) / math.sqrt(count))
    return mean, half_width, count


def bootstrap_interval(
    values: pd.Series,
    level: float = 0.95,
    bounds: tuple[float, float] = (-math.inf, math.inf),
    resamples: int = 9_999,
    seed: int = 0,
) -> tuple[float, float, float, int]:
    """Mean and its percentile bootstrap interval (Efron & Tibshirani 1993, ch. 13; `scipy.stats.bootstrap`,
    method "percentile", seeded), clipped to `bounds`: for bounded quantities (a variance >= 0, a share in [0, 1])
    whose Student-t interval can leave the range. The percentile method, not BCa: BCa needs a jackknife that is
    degenerate for the two to five seeds a sweep has per value.

    Returns (mean, low, high, n); the interval is NaN for fewer than two finite values and [mean, mean] for
    identical values.
    """
    from scipy import stats

    if not 0 < level < 1:
        raise ValueError(f"level: must be in (0, 1), got {level}")
    if not bounds[0] <= bounds[1]:
        raise ValueError(f"bounds: must be (low, high) with low <= high, got {bounds}")
    finite = pd.to_numeric(values, errors="coerce").astype(float)
    array = finite[finite.notna() & finite.abs().lt(math.inf)].to_numpy()
    count = array.size
    if count == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(array.mean())
    if count < 2:
        return mean, math.nan, math.nan, count
    if np.ptp(array) == 0:
        low = high = mean
    else:
        result = stats.bootstrap(
            (array,),
            np.mean,
            confidence_level=level,
            n_resamples=resamples,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return mean, float(np.clip(low, *bounds)), float(np.clip(high, *bounds)), count


INTERVALS = ("t", "bootstrap")


def by_parameter(
    summary: pd.DataFrame,
    parameter: str,
    metric: str,
    level: float = 0.95,
    interval: str = "t",
    bounds: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """Mean of `metric` per value of `parameter` over seeds (and over the other parameters), with its interval.

    `interval` "t": the Student-t interval (`confidence_interval`); "bootstrap": the percentile bootstrap
    interval (`bootstrap_interval`) clipped to `bounds` (default unbounded), for bounded metrics such as a
    variance or a share. Columns: the parameter, mean, half_width ((high - low) / 2 for a bootstrap interval,
    which need not be symmetric), low, high, runs.
    """
    if not isinstance(summary, pd.DataFrame):
        raise TypeError(
            f"summary: must be a pandas DataFrame (Sweep.summary() or analysis.sweep_summary(dir)), got "
            f"{type(summary).__name__}"
        )
    if parameter not in summary.columns:
        raise ValueError(
            f"parameter: not a column of the summary, got {parameter!r} "
            f"(columns: {', '.join(map(str, summary.columns))})"
        )
    numeric = [str(column) for column in summary.columns if pd.api.types.is_numeric_dtype(summary[column])]
    if metric not in summary.columns:
        raise ValueError(f"metric: not a column of the summary, got {metric!r} (numeric columns: {', '.join(numeric)})")
    if metric not in numeric:
        raise ValueError(
            f"metric: must be a numeric column, got {metric!r} of type {summary[metric].dtype} "
            f"(numeric columns: {', '.join(numeric)})"
        )
    if interval not in INTERVALS:
        raise ValueError(f"interval: must be one of {', '.join(INTERVALS)}, got {interval!r}")
    rows = []
    for value, group in summary.groupby(parameter, sort=True, dropna=False):
        if interval == "t":
            mean, half_width, count = confidence_interval(group[metric], level)
            low, high = mean - half_width, mean + half_width
            if bounds is not None:
                low, high = max(low, bounds[0]), min(high, bounds[1])
        else:
            mean, low, high, count = bootstrap_interval(group[metric], level, bounds or (-math.inf, math.inf))
            half_width = (high - low) / 2
        rows.append({parameter: value, "mean": mean, "half_width": half_width, "low": low, "high": high, "runs": count})
    return pd.DataFrame(rows, columns=[parameter, "mean", "half_width", "low", "high", "runs"])
