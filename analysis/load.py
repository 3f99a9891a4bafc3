"""Load a run directory: its manifest, a check of its event parts against the manifest, and its events.

A run writes `events/kind=<kind>/part-<n>.parquet` (one schema per kind; see `flmarket.sim.events`) and a
manifest listing every part with its rows and SHA-256, the events emitted and the last seq. `verify_run` compares
the directory with the manifest: a missing, extra, duplicated, modified or foreign part, a missing `events/`
folder and gaps or repeats in `seq` are problems. Readers (`load_events` and everything built on it) raise
`RunIntegrityError` naming the first problem. Runs that are explicitly partial (interrupted, failed, crashed, or
still running) load what is there with a `PartialRunWarning` that gives the seq range covered; a crashed run also
reads the checkpoints its log wrote after the last part. A manifest that says `running` whose process is gone (same
host, pid not alive or reused) is reported as `crashed`.

Events are read through pyarrow datasets with column projection and filters pushed down to the Parquet scan.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

COMMON_COLUMNS = ("time", "seq", "kind", "agent")
COMPLETE_STATUSES = ("finished",)
PARTIAL_STATUSES = ("interrupted", "failed", "crashed", "running")
EVENTS_DIR = "events"

_TYPES = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "str": pa.string()}
_COMMON_TYPES = {"time": pa.float64(), "seq": pa.int64(), "kind": pa.string(), "agent": pa.int64()}
# Reads allocate from the system allocator, not Arrow's default (mimalloc), which keeps the pages a scan frees:
# with it a 1,500-task run's report peaked at 344 MB, with the system allocator at 293 MB (bench_analysis.py).
_POOL = pa.system_memory_pool()
_PANDAS_TYPES = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype(), pa.string(): pd.StringDtype()}
_PART = re.compile(r"part-(\d{6})\.parquet")
_CHECKPOINT = re.compile(r"checkpoint-(\d{6})-\d{4}\.parquet")
_KIND_DIR = re.compile(r"kind=([A-Za-z_][A-Za-z0-9_]*)")


class RunIntegrityError(ValueError):
    """The files of a run directory do not match its manifest (one line naming the problem)."""


class PartialRunWarning(UserWarning):
    """A run that did not finish was loaded: the events cover only part of it."""


@dataclass(frozen=True)
class RunCheck:
    """What `verify_run` found: the run's status (crashed when its process is gone), the events found on disk,
    the files that hold them (relative to `events/`), and the problems (empty when the run is sound)."""

    status: str
    events: int
    parts: tuple[str, ...]
    problems: tuple[str, ...]
    expected_events: int | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    missing_seqs: int = 0
    complete_through: int | None = None
    schema: dict[str, dict[str, str]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        """No problems (a partial run can be ok: it is what it says it is)."""
        return not self.problems

    @property
    def partial(self) -> bool:
        """The run did not finish."""
        return self.status != "finished"

    def coverage(self) -> str:
        """What a reader loads, e.g. `seq 0..8123 (8,124 events of 9,000 emitted)`; for a partial run with a hole
        (a SIGKILL during a checkpoint, a failed write), only the events before the first missing seq."""
        if self.complete_through is None:
            return "no events (the first events were never written)"
        loaded = self.complete_through + 1
        covered = f"seq 0..{self.complete_through} ({loaded:,} events"
        if self.expected_events is not None and self.expected_events > loaded:
            covered += f" of {self.expected_events:,} emitted"
        elif self.expected_events is not None and self.expected_events < loaded:  # a live run's later checkpoints
            covered += f"; the manifest counted {self.expected_events:,} when it was last written"
        if self.events > loaded:
            covered += f"; {self.events - loaded:,} written after the first missing seq are left out"
        covered += ")"
        return covered


# ------------------------------------------------------------------------------------------------- manifest


def _run_path(run_dir: str | Path) -> Path:
    path = Path(run_dir)
    if not (path / "manifest.json").is_file():
        raise FileNotFoundError(f"run_dir: no manifest.json in {path} (is it a run directory?)")
    return path


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunIntegrityError(f"{path / 'manifest.json'}: not valid JSON ({error})") from None
    if not isinstance(manifest, dict):
        raise RunIntegrityError(
            f"{path / 'manifest.json'}: must be a JSON object, got a JSON {type(manifest).__name__}"
        )
    return manifest


def run_status(manifest: dict[str, Any]) -> str:
    """The manifest's status, except that `running` becomes `crashed` when the run's process is gone.

    The process is identified by pid, hostname and start time (a reused pid has another start time); a run on
    another host cannot be checked and stays `running`; a `running` manifest without a process is `crashed`.
    """
    status = str(manifest.get("status", "unknown"))
    if status != "running":
        return status
    process = manifest.get("process")
    if not isinstance(process, dict) or "pid" not in process:
        return "crashed"
    if process.get("hostname") != socket.gethostname():
        return "running"
    import psutil

    try:
        found = psutil.Process(int(process["pid"]))
        alive = found.status() != psutil.STATUS_ZOMBIE and abs(found.create_time() - float(process["started"])) < 1
    except (psutil.Error, KeyError, TypeError, ValueError):
        alive = False
    return "running" if alive else "crashed"


def load_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The run's manifest (scenario, seed, versions, parts, counters) with its status as `run_status` gives it."""
    manifest = _read_manifest(_run_path(run_dir))
    manifest["status"] = run_status(manifest)
    return manifest


# ------------------------------------------------------------------------------------------------- checking


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _on_disk(events: Path) -> tuple[dict[str, Path], dict[str, Path], list[str]]:
    """Parts and checkpoints under `events/` (keyed by path relative to it) and the unexpected entries."""
    parts: dict[str, Path] = {}
    checkpoints: dict[str, Path] = {}
    unexpected: list[str] = []
    for entry in sorted(events.iterdir()):
        if entry.name.startswith("."):
            continue  # a temporary file of an interrupted write: never read
        if not entry.is_dir() or not _KIND_DIR.fullmatch(entry.name):
            unexpected.append(entry.name)
            continue
        for file in sorted(entry.iterdir()):
            relative = f"{entry.name}/{file.name}"
            if file.name.startswith("."):
                continue
            if _PART.fullmatch(file.name):
                parts[relative] = file
            elif _CHECKPOINT.fullmatch(file.name):
                checkpoints[relative] = file
            else:
                unexpected.append(relative)
    return parts, checkpoints, unexpected


def _scanned_seqs(files: dict[str, Path]) -> list[np.ndarray] | None:
    """The seq column of every file in one dataset scan (a long run writes thousands of parts: one dataset per
    part took 3x as long); None when a file is unreadable or has no int64 seq, for `_seq_problems` to name it."""
    paths = [str(path) for path in files.values()]
    position = {path: index for index, path in enumerate(paths)}
    pieces: list[list[np.ndarray]] = [[] for _ in paths]
    try:
        dataset = ds.dataset(paths, format="parquet", schema=pa.schema([("seq", pa.int64())]))
        for tagged in dataset.scanner(columns=["seq"], use_threads=False, memory_pool=_POOL).scan_batches():
            # a file without a seq column reads as nulls here, and to_numpy refuses nulls (ArrowInvalid)
            pieces[position[tagged.fragment.path]].append(tagged.record_batch.column(0).to_numpy())
    except (pa.ArrowException, OSError, KeyError):
        return None
    return [np.concatenate(chunks) if chunks else np.empty(0, np.int64) for chunks in pieces]


def _seq_problems(files: dict[str, Path]) -> tuple[np.ndarray, list[str]]:
    """All seqs in the files (sorted) and the repeats (a seq in two places means a duplicated part)."""
    arrays = _scanned_seqs(files) if files else []
    if arrays is None:  # read part by part, to name the one that fails
        arrays = []
        for relative, path in files.items():
            try:
                scan = ds.dataset(str(path), format="parquet")
                seqs = scan.to_table(columns=["seq"], use_threads=False, memory_pool=_POOL).column(0).to_numpy()
            except (pa.ArrowException, OSError) as error:
                return np.empty(0, np.int64), [f"{relative}: not a readable Parquet part ({error})"]
            arrays.append(seqs)
    owners = [np.full(len(seqs), index) for index, seqs in enumerate(arrays)]
    if not arrays:
        return np.empty(0, np.int64), []
    seqs = np.concatenate(arrays)
    owner = np.concatenate(owners)
    order = np.argsort(seqs, kind="stable")
    seqs, owner = seqs[order], owner[order]
    repeated = np.flatnonzero(np.diff(seqs) == 0)
    if repeated.size:
        names = list(files)
        first = repeated[0]
        return seqs, [
            f"seq {seqs[first]} appears in {names[owner[first]]} and in {names[owner[first + 1]]} "
            f"({repeated.size:,} repeated seqs: a duplicated part)"
        ]
    return seqs, []


def verify_run(run_dir: str | Path) -> RunCheck:
    """Compare a run directory's event files with its manifest (see the module docstring); never raises for a
    damaged run, returns its problems instead (a missing or unreadable manifest is a problem too)."""
    path = Path(run_dir)
    try:
        manifest = _read_manifest(_run_path(path))
    except (FileNotFoundError, RunIntegrityError) as error:
        return RunCheck("missing", 0, (), (str(error),))
    status = run_status(manifest)
    schema = manifest.get("event_schema")
    listed = manifest.get("parts", [])  # a run killed before its first flush has no parts yet
    expected = manifest.get("events")
    if not isinstance(schema, dict) or not isinstance(listed, list) or (listed and "part_sha256" not in manifest):
        events = path / EVENTS_DIR
        old = events.is_dir() and any(events.glob("part-*.parquet"))
        reason = (
            "events/ holds the old flat layout (part-*.parquet padded with nulls, no checksums) of flmarket "
            "before the log was stored by kind; re-run the scenario to read it with this version"
            if old
            else "the manifest has no event_schema, parts or part_sha256 (not written by this version of flmarket)"
        )
        return RunCheck(status, 0, (), (f"{path}: {reason}",))
    try:
        schema = {kind: {str(name): str(type_name) for name, type_name in fields} for kind, fields in schema.items()}
        if any(type_name not in _TYPES for fields in schema.values() for type_name in fields.values()):
            raise ValueError("unknown type")
    except (TypeError, ValueError) as error:
        return RunCheck(status, 0, (), (f"{path}: the manifest's event_schema is malformed ({error})",))
    sha256: dict[str, str] = manifest.get("part_sha256") or {}
    problems: list[str] = []
    events = path / EVENTS_DIR
    if not events.is_dir():
        if listed:
            problems.append(f"{path}: the events/ folder is missing (the manifest lists {len(listed)} parts)")
        return RunCheck(status, 0, (), tuple(problems), expected, schema=schema)
    parts, checkpoints, unexpected = _on_disk(events)
    problems += [f"events/{name}: not a part of the event log (unexpected file)" for name in unexpected]
    for name in listed:
        if name not in parts:
            problems.append(f"events/{name}: listed in the manifest but missing")
        elif _sha256(parts[name]) != sha256.get(name):
            problems.append(
                f"events/{name}: SHA-256 differs from the manifest (the file was changed, or comes from another run)"
            )
    unlisted = sorted(set(parts) - set(listed))
    # a crashed or running run (or one whose final write failed, or a sweep cell whose worker was shut down before
    # it closed its log: `log_closed` false) wrote parts and checkpoints after the manifest was last updated: they
    # are read; a run that closed cleanly has only the parts its manifest lists
    incomplete_write = status == "failed" and manifest.get("events_written", expected) != expected
    open_ended = status in ("crashed", "running") or incomplete_write or manifest.get("log_closed") is False
    if not open_ended:
        problems += [
            f"events/{name}: not in the manifest (a duplicated part, or one from another run)" for name in unlisted
        ]
        problems += [f"events/{name}: a checkpoint left in a run that closed its log" for name in checkpoints]
        readable = {name: parts[name] for name in listed if name in parts}
    else:
        readable = {name: parts[name] for name in [*listed, *unlisted] if name in parts}
        for name, file in checkpoints.items():
            generation = _CHECKPOINT.fullmatch(file.name).group(1)  # type: ignore[union-attr]
            if f"{file.parent.name}/part-{generation}.parquet" not in parts:
                readable[name] = file
    for name in readable:
        kind = name.split("/", 1)[0].removeprefix("kind=")
        if kind not in schema:
            problems.append(f"events/{name}: kind {kind!r} is not in the manifest's event_schema")
    seqs, repeats = _seq_problems(readable)
    problems += repeats
    found = int(seqs.size)
    first = int(seqs[0]) if found else None
    last = int(seqs[-1]) if found else None
    missing = (last - first + 1 - found) if found and not repeats else 0
    complete_through = None
    if found and first == 0 and not repeats:
        holes = np.flatnonzero(np.diff(seqs) != 1)
        complete_through = int(seqs[holes[0]]) if holes.size else last
    if status in COMPLETE_STATUSES and not repeats:
        if isinstance(expected, int) and found != expected:
            problems.append(f"{path}: {found:,} events in the parts, the manifest says {expected:,}")
        if found and (first != 0 or missing or last != manifest.get("last_seq", last)):
            problems.append(
                f"{path}: seq is not contiguous from 0 to the manifest's last_seq {manifest.get('last_seq')} "
                f"(found {first}..{last} with {missing:,} gaps)"
            )
    return RunCheck(
        status,
        found,
        tuple(readable),
        tuple(problems),
        expected if isinstance(expected, int) else None,
        first,
        last,
        max(missing, 0),
        complete_through,
        schema,
    )


RUN_CHECKS_KEPT = 512
"""Runs whose verification `checked_run` remembers, the least recently read forgotten first: unbounded, the memo
kept about 47 KiB per run ever read in the process (an in-process sweep of 1,000 runs: 46 MiB)."""
_CHECKS: OrderedDict[Path, tuple[bytes, RunCheck]] = OrderedDict()


def _fingerprint(path: Path) -> bytes:
    """A digest of the sizes and modification times of the manifest and every event file (a changed file
    changes it)."""
    files = [path / "manifest.json"]
    events = path / EVENTS_DIR
    if events.is_dir():
        files += sorted(events.glob("*")) + sorted(events.glob("*/*"))
    stats = []
    for file in files:
        try:
            info = file.stat()
            stats.append((str(file), info.st_size, info.st_mtime_ns))
        except FileNotFoundError:
            stats.append((str(file), -1, -1))
    return hashlib.sha256(repr(stats).encode()).digest()


def checked_run(run_dir: str | Path, warn: bool = True) -> RunCheck:
    """`verify_run`, remembered while the files are unchanged; raises `RunIntegrityError` on a problem and warns
    (`PartialRunWarning`) when the run did not finish."""
    path = _run_path(run_dir).resolve()
    fingerprint = _fingerprint(path)
    cached = _CHECKS.get(path)
    if cached is not None and cached[0] == fingerprint and cached[1].status != "running":
        check = cached[1]
        _CHECKS.move_to_end(path)
    else:
        check = verify_run(path)
        _CHECKS[path] = (fingerprint, check)
        _CHECKS.move_to_end(path)
        while len(_CHECKS) > RUN_CHECKS_KEPT:
            _CHECKS.popitem(last=False)
    if check.problems:
        more = f" (and {len(check.problems) - 1} more problems)" if len(check.problems) > 1 else ""
        first = check.problems[0]
        where = f"{path}/" if first.startswith(f"{EVENTS_DIR}/") else ""  # which run, among a sweep's many
        raise RunIntegrityError(f"{where}{first}{more}")
    if warn and check.partial:
        warnings.warn(f"run {path.name} is {check.status}: loading {check.coverage()}", PartialRunWarning, stacklevel=3)
    return check


# ------------------------------------------------------------------------------------------------- reading


def known_kinds(check: RunCheck) -> list[str]:
    """The kinds a run declared (its manifest's event schema)."""
    return sorted(check.schema)


def _select_kinds(check: RunCheck, kinds: list[str] | tuple[str, ...] | None) -> list[str]:
    known = known_kinds(check)
    if kinds is None:
        present = {name.split("/", 1)[0].removeprefix("kind=") for name in check.parts}
        return [kind for kind in known if kind in present]
    if isinstance(kinds, str):
        raise ValueError(
            f"kinds: must be a list of kind names, got the string {kinds!r} (write kinds=[{kinds!r}]; known kinds: "
            f"{', '.join(known)})"
        )
    if not isinstance(kinds, (list, tuple)) or not all(isinstance(kind, str) for kind in kinds):
        raise ValueError(f"kinds: must be a list of kind names, got {kinds!r} (known kinds: {', '.join(known)})")
    unknown = [kind for kind in kinds if kind not in check.schema]
    if unknown:
        raise ValueError(f"kinds: unknown kind {unknown[0]!r} (known kinds: {', '.join(known)})")
    return list(dict.fromkeys(kinds))


def kinds_schema(schema: dict[str, dict[str, str]], kinds: list[str]) -> pa.Schema:
    """The common columns and every field of the given kinds (one type per field name)."""
    fields = dict(_COMMON_TYPES)
    for kind in kinds:
        for name, type_name in schema[kind].items():
            fields.setdefault(name, _TYPES[type_name])
    return pa.schema(list(fields.items()))


def event_files(run_dir: str | Path, kinds: list[str] | None = None) -> dict[str, list[Path]]:
    """The verified files of each selected kind (all kinds present when None): what a query should read."""
    path = _run_path(run_dir)
    check = checked_run(path)
    selected = _select_kinds(check, kinds)
    files: dict[str, list[Path]] = {kind: [] for kind in selected}
    for name in check.parts:
        kind = name.split("/", 1)[0].removeprefix("kind=")
        if kind in files:
            files[kind].append(path / EVENTS_DIR / name)
    return files


@dataclass(frozen=True)
class _Scan:
    """What a read selected: the run, its check, the kinds, the wanted columns (schema order) and the filter."""

    path: Path
    check: RunCheck
    kinds: list[str]
    schema: pa.Schema
    wanted: list[str]
    filters: Any


def _plan_scan(run_dir: str | Path, kinds: Any, columns: Any, filters: Any) -> _Scan:
    """Verify the run and resolve `kinds`, `columns` and `filters` (errors name the field and what is allowed)."""
    path = _run_path(run_dir)
    check = checked_run(path)
    selected = _select_kinds(check, kinds)
    schema = kinds_schema(check.schema, selected)
    if columns is not None:
        if isinstance(columns, str):
            raise ValueError(f"columns: must be a list of column names, got the string {columns!r}")
        if not isinstance(columns, (list, tuple)) or not all(isinstance(name, str) for name in columns):
            raise ValueError(f"columns: must be a list of column names, got {columns!r}")
        unknown = [name for name in columns if name not in schema.names]
        if unknown:
            raise ValueError(
                f"columns: {unknown[0]!r} is not a column of the kinds {', '.join(selected) or '(none)'} "
                f"(columns: {', '.join(schema.names)})"
            )
        wanted = [name for name in schema.names if name in COMMON_COLUMNS or name in columns]
    else:
        wanted = schema.names
    if filters is not None and not isinstance(filters, ds.Expression):
        filters = _filter_expression(filters, schema, selected)
    if check.partial and check.complete_through != check.last_seq:  # a partial run: the events before the hole
        prefix = ds.field("seq") <= (-1 if check.complete_through is None else check.complete_through)
        filters = prefix if filters is None else filters & prefix
    return _Scan(path, check, selected, schema, wanted, filters)


FILTERS_FORM = (
    "a list of (column, op, value) tuples that must all hold, e.g. [('task', '<', 3)], or a list of such lists "
    "of which one must hold, or a pyarrow.dataset expression; op is one of =, ==, !=, <, >, <=, >=, in, not in"
)


def _filter_expression(filters: Any, schema: pa.Schema, kinds: list[str]) -> ds.Expression:
    """pyarrow's DNF filters as an expression, with errors that name `filters`, the column and the form."""
    if not isinstance(filters, list) or not filters:
        raise ValueError(f"filters: must be {FILTERS_FORM}; got {filters!r}")
    flat = isinstance(filters[0], tuple | list) and bool(filters[0]) and isinstance(filters[0][0], str)
    groups = [filters] if flat else filters  # pyarrow's own test: a first item (column, ...) is one conjunction
    for group in groups:
        if not isinstance(group, list) or not group:
            raise ValueError(
                f"filters: {group!r} is not a list of (column, op, value) tuples; filters must be {FILTERS_FORM}"
            )
        for item in group:
            if not (isinstance(item, tuple | list) and len(item) == 3 and isinstance(item[0], str)):
                raise ValueError(
                    f"filters: {item!r} is not a (column, op, value) tuple; filters must be {FILTERS_FORM}"
                )
            if item[0] not in schema.names:
                raise ValueError(
                    f"filters: {item[0]!r} is not a column of the kinds {', '.join(kinds) or '(none)'} "
                    f"(columns: {', '.join(schema.names)})"
                )
    try:
        return pq.filters_to_expression([[tuple(item) for item in group] for group in groups])
    except (ValueError, TypeError, pa.ArrowException) as error:
        raise ValueError(f"filters: {error}; filters must be {FILTERS_FORM}") from None


def _read(scan: _Scan, kinds: list[str], columns: list[str]) -> pa.Table | None:
    """The rows of `kinds` that pass the scan's filter, projected to `columns` (None when no part holds them).

    The dataset has the union schema of the scan's kinds, so a filter on a field a kind lacks sees nulls there and
    passes none of its rows."""
    files = [
        str(scan.path / EVENTS_DIR / name)
        for name in scan.check.parts
        if name.split("/", 1)[0].removeprefix("kind=") in kinds
    ]
    if not files:
        return None
    dataset = ds.dataset(
        files,
        schema=scan.schema,
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("kind", pa.string())]), flavor="hive"),
        partition_base_dir=str(scan.path / EVENTS_DIR),
    )
    try:
        return dataset.to_table(columns=columns, filter=scan.filters, use_threads=False, memory_pool=_POOL)
    except pa.ArrowException as error:  # ArrowInvalid, ArrowTypeError, ArrowNotImplementedError (e.g. int < str)
        reason = " ".join(str(error).split("\n")[0].split())
        raise ValueError(f"filters: cannot be applied to the kinds {', '.join(scan.kinds)} ({reason})") from None


def load_events_table(
    run_dir: str | Path,
    kinds: list[str] | None = None,
    columns: list[str] | None = None,
    filters: Any = None,
) -> pa.Table:
    """Events of a run as one Arrow table in seq order, verified against the manifest (see `load_events`).

    One table has one schema, so each kind's rows carry nulls in the other kinds' fields: for many kinds at once
    `load_events`, which never builds that padded table, needs much less memory."""
    scan = _plan_scan(run_dir, kinds, columns, filters)
    table = _read(scan, scan.kinds, scan.wanted)
    if table is None:
        return scan.schema.empty_table().select(scan.wanted)
    return table.sort_by("seq")


def _kind_tables(scan: _Scan) -> dict[str, pa.Table]:
    """Each selected kind's rows, with only the common columns and that kind's own wanted fields (no padding)."""
    tables: dict[str, pa.Table] = {}
    for kind in scan.kinds:
        own = scan.check.schema[kind]
        table = _read(scan, [kind], [name for name in scan.wanted if name in COMMON_COLUMNS or name in own])
        if table is not None and table.num_rows:
            tables[kind] = table
    return tables


def _scatter(data_type: pa.DataType, total: int, pieces: list[tuple[np.ndarray, pa.ChunkedArray]]) -> Any:
    """One column of the merged frame: each piece's values at its rows, missing (NaN or NA) elsewhere; the pandas
    types are `events_frame`'s (float64, nullable Int64, boolean and string)."""
    if pa.types.is_floating(data_type):
        values = np.full(total, np.nan)
        for rows, column in pieces:
            values[rows] = column.to_numpy()
        return values
    if pa.types.is_string(data_type):  # gathered in Arrow (one null appended for the rows of other kinds)
        chunks = [chunk for _, column in pieces for chunk in column.chunks]
        gather = np.full(total, sum(len(chunk) for chunk in chunks), dtype=np.int64)
        start = 0
        for rows, column in pieces:
            gather[rows] = np.arange(start, start + len(column))
            start += len(column)
        strings = pa.concat_arrays([*chunks, pa.nulls(1, data_type)], memory_pool=_POOL).take(pa.array(gather))
        return pa.chunked_array([strings]).to_pandas(types_mapper=_PANDAS_TYPES.get, memory_pool=_POOL)
    numpy_type = np.bool_ if pa.types.is_boolean(data_type) else np.int64
    values = np.zeros(total, dtype=numpy_type)
    missing = np.ones(total, dtype=np.bool_)
    for rows, column in pieces:
        values[rows] = column.fill_null(False if numpy_type is np.bool_ else 0).to_numpy()
        missing[rows] = column.is_null().to_numpy()
    if numpy_type is np.bool_:
        return pd.arrays.BooleanArray(values, missing)
    return pd.arrays.IntegerArray(values, missing)


def _merged_frame(
    schema: pa.Schema, runs: list[dict[str, pa.Table]], drop_null_columns: bool = False
) -> tuple[pd.DataFrame, list[int]]:
    """Each run's narrow kind tables as one frame, run after run and each run in seq order, and each run's row
    count. Built column by column: each column is allocated once and filled at its kinds' rows, so no padded
    Arrow table or intermediate frame is made. `schema` names the columns in order; with `drop_null_columns`, a
    field that is null in every row is left out (the common columns stay)."""
    pieces_of: list[tuple[np.ndarray, str, pa.Table]] = []  # each run's kinds: their rows in the frame
    counts: list[int] = []
    offset = 0
    for tables in runs:
        kinds = list(tables)
        sizes = np.array([tables[kind].num_rows for kind in kinds], dtype=np.int64)
        bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        total = int(bounds[-1])
        seqs = [tables[kind]["seq"].to_numpy() for kind in kinds]
        order = np.argsort(np.concatenate(seqs), kind="stable") if kinds else np.empty(0, np.intp)
        position = np.empty(total, dtype=np.intp)
        position[order] = np.arange(offset, offset + total)
        pieces_of += [(position[bounds[i] : bounds[i + 1]], kind, tables[kind]) for i, kind in enumerate(kinds)]
        counts.append(total)
        offset += total
    if not offset:
        return events_frame(schema.empty_table()), counts
    columns: dict[str, Any] = {}
    for column_field in schema:
        name = column_field.name
        if name == "kind":
            kinds_present = sorted({kind for _, kind, _ in pieces_of})
            codes = np.empty(offset, dtype=np.int16)
            for rows, kind, _ in pieces_of:
                codes[rows] = kinds_present.index(kind)
            category_type = pd.CategoricalDtype(pd.Index(kinds_present, dtype=pd.StringDtype()))
            columns[name] = pd.Categorical.from_codes(codes, dtype=category_type)
            continue
        pieces = [(rows, table[name]) for rows, _, table in pieces_of if name in table.column_names]
        if drop_null_columns and name not in COMMON_COLUMNS and all(c.null_count == len(c) for _, c in pieces):
            continue
        column = _scatter(column_field.type, offset, pieces)
        columns[name] = np.asarray(column, dtype=np.int64) if name == "seq" else column
    return pd.DataFrame(columns, copy=False), counts


def load_runs_events(
    run_dirs: Sequence[str | Path],
    kinds: list[str] | None = None,
    columns: list[str] | None = None,
    filters: Any = None,
    drop_null_columns: bool = False,
) -> tuple[pd.DataFrame, list[int]]:
    """The events of several runs in one frame, run after run and each in seq order (see `load_events`), and
    each run's row count. The columns are the union of the runs' columns, in the order they first appear;
    `drop_null_columns` leaves out fields that are null in every row."""
    scans = [_plan_scan(run_dir, kinds, columns, filters) for run_dir in run_dirs]
    fields: dict[str, pa.Field] = {}
    for scan in scans:
        for name in scan.wanted:
            fields.setdefault(name, scan.schema.field(name))
    frame, counts = _merged_frame(
        pa.schema(list(fields.values())), [_kind_tables(scan) for scan in scans], drop_null_columns
    )
    # The scans' decoding buffers are freed by now, but the allocators may keep their pages: hand them back
    # (malloc_trim for the system allocator; Arrow's default one did the gathers) so RSS is the frame's.
    _POOL.release_unused()
    pa.default_memory_pool().release_unused()
    return frame, counts


def events_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow events to pandas: `kind` categorical, nullable integer/boolean/string fields, seq as index order."""
    frame = table.to_pandas(types_mapper=_PANDAS_TYPES.get, memory_pool=_POOL)
    if "seq" in frame.columns:
        frame["seq"] = frame["seq"].astype("int64")
    if "time" in frame.columns:
        frame["time"] = frame["time"].astype("float64")
    if "kind" in frame.columns:
        frame["kind"] = frame["kind"].astype("category")
    return frame.reset_index(drop=True)


def load_events(
    run_dir: str | Path,
    kinds: list[str] | None = None,
    columns: list[str] | None = None,
    filters: Any = None,
) -> pd.DataFrame:
    """Events of a run as one DataFrame ordered by seq: the common columns and the fields of the kinds read.

    `kinds`: a list of kind names (None: every kind the run logged); an unknown kind is an error naming the
    known ones. `columns`: the fields to read besides time, seq, kind and agent (None: all of the kinds').
    `filters`: a `pyarrow.dataset` expression or pyarrow's list-of-tuples form, e.g. `[("task", "<", 10)]`,
    pushed down to the scan (a selected kind without the field has no rows that pass; a field that none of the
    selected kinds has, or a malformed filter, is a ValueError that names it). The parts are verified against the
    manifest first: `RunIntegrityError` on a problem, `PartialRunWarning` for a run that did not finish.
    """
    return load_runs_events([run_dir], kinds, columns, filters)[0]
