"""SQL over runs and sweeps: DuckDB views over the verified Parquet parts, one view per event kind.

`query(path, sql)` and `flmarket query PATH "SQL"` accept a run directory, a sweep directory (its finished runs,
as `analysis.sweeps.load_sweep` reads them) or a directory whose subdirectories are run directories (an `--out`
directory holding several runs). Every run is verified against its manifest first (`analysis.load.checked_run`:
`RunIntegrityError` on a problem, `PartialRunWarning` for a run that did not finish). The views:

- one per event kind (`reward_paid`, `task_finished`, ...): time, seq, kind, agent, the kind's fields and
  `run_id`; a kind that no run logged is an empty view with the same columns;
- `runs`: one row per run: run_id, status, scenario_name, seed, tasks_finished (rejected tasks included),
  tasks_rejected, events, and for a sweep its label and swept-parameter columns (`analysis.sweeps.cells_frame`).
  A sweep's cells that did not finish are rows too, with their status and no events.

For example `SELECT run_id, avg(welfare) FROM task_finished GROUP BY run_id`. DuckDB reads only the columns and
row groups a query needs. `query` runs one query (SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE or EXPLAIN) on a
connection that can read only the runs' parts and write nothing.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pandas as pd

from flmarket.analysis.load import COMMON_COLUMNS, EVENTS_DIR, RunIntegrityError, checked_run, load_manifest
from flmarket.arguments import integer_in

VIEWS_SQL = "SELECT view_name FROM duckdb_views() WHERE NOT internal AND view_name != '_runs_frame' ORDER BY 1"
"""The views a query can read: runs and one per event kind logged under the path."""

RUNS_COLUMNS = ["run_id", "status", "scenario_name", "seed", "tasks_finished", "tasks_rejected", "events"]
"""The `runs` view's own columns (a sweep adds its cells' label and swept parameters)."""

QUERY_STATEMENTS = frozenset({"SELECT", "EXPLAIN"})
"""The statement types `query` runs (DESCRIBE, SHOW and SUMMARIZE parse as SELECT): nothing that writes."""

_SQL_TYPES = {"int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN", "str": "VARCHAR"}
_COMMON_SQL_TYPES = {"time": "DOUBLE", "seq": "BIGINT", "kind": "VARCHAR", "agent": "BIGINT"}


def _literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _identifier(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def find_runs(path: str | Path) -> tuple[list[tuple[str, Path]], pd.DataFrame | None]:
    """The (run_id, run directory) pairs under `path`, and a sweep's cells frame (None for other paths)."""
    source = Path(path)
    if (source / "manifest.json").is_file():
        return [(source.name, source)], None
    if (source / "sweep.json").is_file():
        from flmarket.analysis.sweeps import cells_frame

        cells = cells_frame(source)
        finished = cells[cells["status"] == "finished"]
        pairs = zip(finished["run_id"], finished["run_dir"], strict=True)
        return [(str(run_id), Path(run_dir)) for run_id, run_dir in pairs], cells
    if source.is_dir():
        runs = [(child.name, child) for child in sorted(source.iterdir()) if (child / "manifest.json").is_file()]
        if runs:
            return runs, None
    raise FileNotFoundError(
        f"path: not a run directory, a sweep directory or a directory of run directories, got {str(source)!r}"
    )


def connect(path: str | Path, read_only: bool = True):  # type: ignore[no-untyped-def] - duckdb is imported lazily
    """A DuckDB connection (in memory) with a view per event kind and a `runs` view over the runs under `path`.
    Read-only by default: it can read no file but the runs' parts, write none, and not change that setting;
    `read_only=False` gives a connection that can (e.g. to COPY a result to a file of your own)."""
    import duckdb

    runs, cells = find_runs(path)
    readable: list[str] = []  # the Parquet parts the views read: the only files a query may touch
    schemas: dict[str, dict[str, str]] = {}
    selects: dict[str, list[str]] = {}
    rows = []
    for run_id, run_dir in runs:
        check = checked_run(run_dir)
        manifest = load_manifest(run_dir)
        rows.append(
            {
                "run_id": run_id,
                "status": check.status,
                "scenario_name": manifest.get("scenario_name"),
                "seed": manifest.get("seed"),
                "tasks_finished": manifest.get("tasks_finished"),
                "tasks_rejected": manifest.get("tasks_rejected"),
                "events": check.events,
            }
        )
        for kind, fields in check.schema.items():
            known = schemas.setdefault(kind, {})
            for name, type_name in fields.items():
                known.setdefault(name, type_name)
        files_by_kind: dict[str, list[Path]] = {}
        for name in check.parts:
            files_by_kind.setdefault(name.split("/", 1)[0].removeprefix("kind="), []).append(
                run_dir / EVENTS_DIR / name
            )
        for kind, files in files_by_kind.items():
            if files:
                readable += [str(file) for file in files]
                listing = ", ".join(_literal(str(file)) for file in files)
                prefix = ""
                if check.partial and check.complete_through != check.last_seq:  # the events before the hole
                    prefix = f" WHERE seq <= {-1 if check.complete_through is None else check.complete_through}"
                selects.setdefault(kind, []).append(
                    f"SELECT *, {_literal(run_id)} AS run_id FROM read_parquet([{listing}], hive_partitioning = true)"
                    + prefix
                )
    connection = duckdb.connect(":memory:")
    for kind, fields in sorted(schemas.items()):
        columns = {**_COMMON_SQL_TYPES, **{name: _SQL_TYPES[type_name] for name, type_name in fields.items()}}
        projection = ", ".join(
            f"CAST({_identifier(name)} AS {sql_type}) AS {_identifier(name)}" for name, sql_type in columns.items()
        )
        if kind in selects:
            source = " UNION ALL BY NAME ".join(f"({select})" for select in selects[kind])
            body = f"SELECT {projection}, run_id FROM ({source})"
        else:
            empty = ", ".join(f"CAST(NULL AS {sql_type}) AS {_identifier(name)}" for name, sql_type in columns.items())
            body = f"SELECT {empty}, CAST(NULL AS VARCHAR) AS run_id LIMIT 0"
        connection.execute(f"CREATE VIEW {_identifier(kind)} AS {body}")
    frame = pd.DataFrame(rows, columns=RUNS_COLUMNS)
    if cells is not None:  # the cells that did not finish (failed, interrupted, not run yet): rows without events
        others = cells[~cells["run_id"].astype(str).isin(frame["run_id"])]
        unfinished = pd.DataFrame(
            {
                "run_id": others["run_id"].astype(str),
                "status": others["status"].astype(str),
                "seed": others["seed"],
                "events": 0,
            },
            columns=RUNS_COLUMNS,
        )
        frame = pd.concat([frame, unfinished], ignore_index=True) if len(frame) else unfinished
        order = {run_id: index for index, run_id in enumerate(cells["run_id"].astype(str))}
        frame = frame.sort_values("run_id", key=lambda column: column.map(order)).reset_index(drop=True)
    if cells is not None:
        extra = [name for name in cells.columns if name not in frame.columns and name not in ("run_dir", "error")]
        frame = frame.merge(cells[["run_id", *extra]].astype({"run_id": str}), on="run_id", how="left")
    connection.register("_runs_frame", frame)
    connection.execute("CREATE VIEW runs AS SELECT * FROM _runs_frame")
    if not read_only:
        return connection
    # read-only: no file but the parts (no COPY ... TO, no read_csv('/etc/passwd')), and no way to undo that
    connection.execute(f"SET allowed_paths = [{', '.join(_literal(file) for file in readable)}]")
    connection.execute("SET enable_external_access = false")
    connection.execute("SET lock_configuration = true")
    return connection


def query(path: str | Path, sql: str) -> pd.DataFrame:
    """The result of `sql` over the runs under `path` (see the module docstring) as a pandas DataFrame."""
    import duckdb

    connection = connect(path)
    try:
        statements = duckdb.extract_statements(sql)
        if len(statements) > 1:  # DuckDB runs them all and returns the last one's rows
            raise ValueError(f"sql: one query at a time, got {len(statements)} statements")
        if statements and statements[0].type.name not in QUERY_STATEMENTS:
            raise ValueError(
                f"sql: only queries are run (SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN), got a"
                f" {statements[0].type.name} statement"
            )
        result = connection.execute(sql)
        if result is None or result.description is None:  # empty or only comments
            raise ValueError(
                f"sql: {' '.join(sql.split())[:80]!r} returns no table (it is empty, only comments, or not a "
                "query); write a query, e.g. SELECT * FROM runs"
            )
        return result.df()
    except duckdb.Error as error:
        message = " ".join(str(error).split())
        if isinstance(error, duckdb.CatalogException):
            views = [row[0] for row in connection.execute(VIEWS_SQL).fetchall()]
            if views == ["runs"]:
                message += " (no run here has events to query, so there is only the runs view: SELECT * FROM runs)"
            else:
                message += f" (the views here are: {', '.join(views)})"
        raise ValueError(f"sql: {message}") from None
    finally:
        connection.close()


def _handler(args: argparse.Namespace) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            frame = query(args.path, args.sql)
        except (FileNotFoundError, RunIntegrityError, ValueError) as error:
            print(f"flmarket: error: {error}", file=sys.stderr)
            return 2
    for warning in caught:
        print(f"flmarket: warning: {warning.message}", file=sys.stderr)
    if args.format == "csv":
        frame.to_csv(sys.stdout, index=False)
    else:
        shown = args.max_rows or None  # 0: every row
        if frame.empty:  # pandas would print "Empty DataFrame / Columns: [...] / Index: []"
            print("  ".join(str(name) for name in frame.columns))
            print("(0 rows)")
            return 0
        with pd.option_context("display.max_rows", shown, "display.width", 200):
            print(frame.to_string(index=False, max_rows=shown))
        if shown is not None and len(frame) > shown:
            print(f"({len(frame):,} rows; {shown} shown, from the start and the end; --max-rows 0 shows every row)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `flmarket query RUN_OR_SWEEP_DIR "SQL" [--format table|csv]`."""
    parser = subparsers.add_parser(
        "query",
        help="run SQL (DuckDB) over the event log of a run, a sweep or a directory of runs",
        description="Run one SQL query with DuckDB over the verified Parquet parts: one view per event kind "
        f"({', '.join(COMMON_COLUMNS)}, the kind's fields and run_id) and a `runs` view (one row per run; a "
        "sweep adds its label and swept parameters). Example: flmarket query runs/my-sweep "
        '"SELECT run_id, avg(welfare) AS welfare FROM task_finished GROUP BY run_id". See `flmarket events` for '
        "the kinds and their fields.",
    )
    parser.add_argument(
        "path", metavar="RUN_OR_SWEEP_DIR", help="a run directory, a sweep directory or a directory of runs"
    )
    parser.add_argument("sql", metavar="SQL", help="the query (views: one per event kind, and runs)")
    parser.add_argument("--format", choices=("table", "csv"), default="table", help="output format (default: table)")
    parser.add_argument(
        "--max-rows",
        type=integer_in(0, note=" (0: every row)"),
        default=200,
        help="rows shown in table format, 0 for all (default: 200; csv prints all)",
    )
    parser.set_defaults(func=_handler)
