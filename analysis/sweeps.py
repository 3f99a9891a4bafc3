"""Cross-run queries over a sweep directory: every cell's events in one frame, and one summary row per cell.

A sweep directory (written by `flmarket sweep`) holds `sweep.json` - the index: name, swept `parameters`, and per
run id its label, seed, overrides, parameters and status - and `cells/<run_id>/` run directories. This module reads
that layout only (it does not import the simulator). Events are read through one pyarrow dataset over the
finished cells' Parquet parts (with a unified schema; each fragment is scanned with the kind filter pushed down,
so only the wanted rows reach pandas).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from flmarket.analysis.load import COMMON_COLUMNS, events_frame, load_events
from flmarket.analysis.metrics import run_summary
from flmarket.analysis.stability import DEFAULT_ALPHA, DEFAULT_WINDOW, stability_summary

INDEX_FILE = "sweep.json"
CELL_COLUMNS = ("run_id", "label", "seed", "status")


def _sweep_path(sweep_dir: str | Path) -> Path:
    path = Path(sweep_dir)
    if not (path / INDEX_FILE).is_file():
        raise FileNotFoundError(f"sweep_dir: no {INDEX_FILE} in {path} (is it a sweep directory?)")
    return path


def load_index(sweep_dir: str | Path) -> dict[str, Any]:
    """The sweep's index (`sweep.json`)."""
    return json.loads((_sweep_path(sweep_dir) / INDEX_FILE).read_text())


def is_sweep_dir(path: str | Path) -> bool:
    """Whether `path` is a sweep directory (holds a sweep index)."""
    return (Path(path) / INDEX_FILE).is_file()


def parameter_value(value: Any) -> Any:
    """A swept value as a frame cell: numbers and strings as they are, a table as `KEY=value,...` (groupable)."""
    if isinstance(value, dict):
        return ",".join(
            f"{key}={item:g}" if isinstance(item, float) else f"{key}={item}" for key, item in value.items()
        )
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return value


def cells_frame(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per run: run_id, label, seed, status, error, run_dir and one column per swept parameter."""
    path = _sweep_path(sweep_dir)
    index = load_index(path)
    parameters = list(index.get("parameters", []))
    rows = []
    for run_id, cell in index["cells"].items():
        row = {
            "run_id": run_id,
            "label": cell["label"],
            "seed": int(cell["seed"]),
            "status": cell["status"],
            "error": cell.get("error", ""),
            "run_dir": str(path / index.get("cells_dir", "cells") / run_id),
        }
        for name in parameters:
            if name != "label":
                row[name] = parameter_value(cell["parameters"].get(name))
        rows.append(row)
    columns = [*CELL_COLUMNS, "error", "run_dir", *[name for name in parameters if name != "label"]]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({"run_id": "string", "label": "string", "status": "string", "seed": "int64"})


def load_sweep(sweep_dir: str | Path, kinds: list[str] | None = None) -> pd.DataFrame:
    """Events of every finished run of a sweep in one frame, with run_id, label, seed and the swept parameters.

    Rows are ordered by run (as in the index) then seq. `kinds` restricts the kinds (pushed down to the Parquet
    scan); columns that are null throughout are dropped, as `analysis.load_events` does.
    """
    cells = cells_frame(sweep_dir)
    finished = cells[cells["status"] == "finished"]
    files: list[str] = []
    for run_dir in finished["run_dir"]:
        files += [str(part) for part in sorted((Path(run_dir) / "events").glob("part-*.parquet"))]
    meta_columns = [name for name in cells.columns if name not in ("status", "error", "run_dir")]
    if not files:
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
        return empty
    schema = pa.unify_schemas([pq.read_schema(name) for name in files], promote_options="default")
    dataset = ds.dataset(files, schema=schema, format="parquet")
    expression = ds.field("kind").isin(kinds) if kinds is not None else None
    tables = []
    for fragment in dataset.get_fragments():
        table = fragment.to_table(schema=schema, filter=expression)
        run_id = Path(fragment.path).parent.parent.name
        tables.append(table.append_column("run_id", pa.array([run_id] * len(table), pa.string())))
    table = pa.concat_tables(tables)
    keep = [
        name
        for name in table.column_names
        if name in COMMON_COLUMNS or name == "run_id" or table[name].null_count < len(table)
    ]
    frame = events_frame(table.select(keep))
    # event fields named like a cell column (run_started.seed) keep their values under an `event_` prefix
    frame = frame.rename(
        columns={name: f"event_{name}" for name in meta_columns if name in frame.columns and name != "run_id"}
    )
    frame["run_id"] = frame["run_id"].astype("string")
    frame = frame.merge(cells[meta_columns], on="run_id", how="left")
    order = {run_id: position for position, run_id in enumerate(cells["run_id"])}
    frame["_order"] = frame["run_id"].map(order)
    frame = frame.sort_values(["_order", "seq"], kind="stable").drop(columns="_order").reset_index(drop=True)
    return frame[[*meta_columns, *[name for name in frame.columns if name not in meta_columns]]]


def sweep_summary(
    sweep_dir: str | Path,
    window: int = DEFAULT_WINDOW,
    alpha: float = DEFAULT_ALPHA,
) -> pd.DataFrame:
    """One row per run: its cell columns (`cells_frame`), `analysis.metrics.run_summary` and the stability summary.

    Runs that did not finish keep their row with NaN metrics, so a failed cell stays visible.
    """
    cells = cells_frame(sweep_dir)
    rows = []
    for _, cell in cells.iterrows():
        metrics: dict[str, Any] = {}
        if cell["status"] == "finished":
            events = load_events(cell["run_dir"])
            metrics = run_summary(events) | stability_summary(events, window, alpha)
        rows.append(metrics)
    no_events = pd.DataFrame({"kind": pd.Series(dtype="string"), "seq": pd.Series(dtype="int64")})
    columns = list(run_summary(no_events) | stability_summary(no_events, window, alpha))
    summaries = pd.DataFrame(rows, index=cells.index).reindex(columns=columns)
    return pd.concat([cells, summaries], axis=1)


def confidence_interval(values: pd.Series, level: float = 0.95) -> tuple[float, float, int]:
    """Mean and half-width of the Student-t confidence interval of the mean: t_{(1+level)/2, n-1} * s / sqrt(n).

    Returns (mean, half_width, n); the half-width is NaN for fewer than two finite values.
    """
    from scipy import stats

    if not 0 < level < 1:
        raise ValueError(f"level: must be in (0, 1), got {level}")
    finite = pd.to_numeric(values, errors="coerce").astype(float)
    finite = finite[finite.notna() & finite.abs().lt(math.inf)]
    count = len(finite)
    if count == 0:
        return math.nan, math.nan, 0
    mean = float(finite.mean())
    if count < 2:
        return mean, math.nan, count
    half_width = float(stats.t.ppf((1 + level) / 2, count - 1) * finite.std(ddof=1) / math.sqrt(count))
    return mean, half_width, count


def by_parameter(summary: pd.DataFrame, parameter: str, metric: str, level: float = 0.95) -> pd.DataFrame:
    """Mean of `metric` per value of `parameter` over seeds (and over the other parameters), with its CI.

    Columns: the parameter, mean, half_width, low, high, runs.
    """
    if parameter not in summary.columns:
        raise ValueError(
            f"parameter: not a column of the summary, got {parameter!r} "
            f"(columns: {', '.join(map(str, summary.columns))})"
        )
    if metric not in summary.columns:
        raise ValueError(f"metric: not a column of the summary, got {metric!r}")
    rows = []
    for value, group in summary.groupby(parameter, sort=True, dropna=False):
        mean, half_width, count = confidence_interval(group[metric], level)
        rows.append(
            {
                parameter: value,
                "mean": mean,
                "half_width": half_width,
                "low": mean - half_width,
                "high": mean + half_width,
                "runs": count,
            }
        )
    return pd.DataFrame(rows, columns=[parameter, "mean", "half_width", "low", "high", "runs"])
