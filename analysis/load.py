"""Load a run directory: its events as one pandas DataFrame with proper dtypes, and its manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

COMMON_COLUMNS = ("time", "seq", "kind", "agent")


def _run_path(run_dir: str | Path) -> Path:
    path = Path(run_dir)
    if not (path / "manifest.json").is_file():
        raise FileNotFoundError(f"run_dir: no manifest.json in {path} (is it a run directory?)")
    return path


def load_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The run's manifest: scenario, seed, versions, status and counters."""
    return json.loads((_run_path(run_dir) / "manifest.json").read_text())


def load_events_table(run_dir: str | Path) -> pa.Table:
    """Every event of the run as one Arrow table in seq order (complete parts only)."""
    events = _run_path(run_dir) / "events"
    parts = sorted(events.glob("part-*.parquet")) if events.is_dir() else []
    if not parts:
        return pa.table(
            {
                "time": pa.array([], pa.float64()),
                "seq": pa.array([], pa.int64()),
                "kind": pa.array([], pa.string()),
                "agent": pa.array([], pa.int64()),
            }
        )
    tables = [pq.read_table(part) for part in parts]
    return pa.concat_tables(tables, promote_options="default").sort_by("seq")


def events_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow events to pandas: `kind` categorical, nullable integer/boolean/string fields, seq as index order."""
    frame = table.to_pandas(
        types_mapper={
            pa.int64(): pd.Int64Dtype(),
            pa.bool_(): pd.BooleanDtype(),
            pa.string(): pd.StringDtype(),
        }.get
    )
    frame["seq"] = frame["seq"].astype("int64")
    frame["time"] = frame["time"].astype("float64")
    frame["kind"] = frame["kind"].astype("category")
    return frame.reset_index(drop=True)


def load_events(run_dir: str | Path, kinds: list[str] | None = None) -> pd.DataFrame:
    """All events of a run (optionally only some kinds) as one DataFrame ordered by seq."""
    table = load_events_table(run_dir)
    if kinds is not None:
        import pyarrow.compute as pc

        table = table.filter(pc.is_in(table["kind"], value_set=pa.array(kinds)))
        fields = [name for name in table.column_names if name in COMMON_COLUMNS or table[name].null_count < len(table)]
        table = table.select(fields)
    return events_frame(table)
