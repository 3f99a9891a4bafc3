"""The event log: typed records in column-wise buffers, written per kind as atomic Parquet parts.

Every state change of a run is one record with the common columns (time, seq, kind, agent) and the fields of its
kind. Kinds are declared once with their field types (`EventKind`); `EventLog.emit` appends each field to a
per-kind `array.array` (strings to a list), so a long run holds no per-record Python objects.

Layout on disk (Hive-style, one schema per kind, no padding): `<run>/events/kind=<kind>/part-<n>.parquet`, with
columns time, seq, agent and the kind's fields (`kind` is the directory). Part `n` of every kind holds the records
of the n-th flush; a flush happens every `flush_every` records and at `close()`, so part boundaries depend only on
the records (the same seed gives byte-identical parts). Every file is written to a temporary name and renamed, so
a run killed at any moment leaves only complete files.

Durability bound: besides the flushes by count, every `flush_interval_s` seconds of wall time (default
`FLUSH_INTERVAL_S` = 2 s) the records buffered since the last write are checkpointed to
`kind=<kind>/checkpoint-<n>-<m>.parquet`; the next flush by count writes part `n` and deletes them. A timer
thread (started by `start_timer()`, as the runner does once the run directory exists) only raises a flag that
the next emitted record acts on, so the hot path pays nothing for it. A process killed with SIGKILL therefore
loses at most the records emitted during the last `flush_interval_s` seconds of wall time in which it emitted
(readers of a crashed run read the parts and the checkpoints not yet superseded).

Each record is appended whole or not at all: a field that does not fit its column (a float that overflows int64,
a wrong type) undoes the record's appends and raises `EventFieldError` naming the kind, the field and the value;
the log stays consistent, so what was buffered before can still be written. After a write error the log refuses
further records and `close()` does not raise a second error that would hide the first.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import signal
import threading
from array import array
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flmarket.agents.messages import NO_AGENT

COMMON_COLUMNS = ("time", "seq", "kind", "agent")
FLUSH_INTERVAL_S = 2.0
TYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "str"}

_ARRAY_CODES = {int: "q", float: "d", bool: "b"}
_ARROW_TYPES = {int: pa.int64(), float: pa.float64(), bool: pa.bool_(), str: pa.string()}


class EventFieldError(ValueError, TypeError):
    """A field value that does not fit its declared column; the record was not appended."""


@dataclass(frozen=True)
class EventKind:
    """A kind of event and the types of its fields (int, float, bool or str)."""

    name: str
    fields: tuple[tuple[str, type], ...]
    description: str = ""

    @cached_property
    def field_names(self) -> tuple[str, ...]:
        """The names of the kind's own fields, in declaration order (computed once per kind)."""
        return tuple(name for name, _ in self.fields)


@dataclass(frozen=True)
class PartRecord:
    """One written part: its path relative to the events directory, its rows and the SHA-256 of its bytes."""

    path: str
    rows: int
    sha256: str


EVENT_KINDS: dict[str, EventKind] = {}


def register_kind(name: str, description: str = "", **fields: type) -> EventKind:
    """Declare an event kind; re-declaring the same kind with the same fields is a no-op."""
    if not name.isidentifier():
        raise ValueError(f"event kind {name!r}: names must be identifiers (they name directories and SQL views)")
    for field_name, field_type in fields.items():
        if field_type not in _ARROW_TYPES:
            raise TypeError(f"{name}.{field_name}: type must be int, float, bool or str, got {field_type!r}")
        if not field_name.isidentifier() or field_name.startswith("_"):
            raise ValueError(f"{name}.{field_name}: field names must be identifiers not starting with '_'")
        if field_name in COMMON_COLUMNS:
            raise ValueError(f"{name}.{field_name}: the name is a common column ({', '.join(COMMON_COLUMNS)})")
    kind = EventKind(name, tuple(fields.items()), description)
    existing = EVENT_KINDS.get(name)
    if existing is not None and existing.fields != kind.fields:
        raise ValueError(f"event kind {name!r}: already declared with other fields {existing.field_names}")
    EVENT_KINDS[name] = kind
    return kind


def field_types() -> dict[str, type]:
    """The type of every field name over all registered kinds (one name has one type everywhere)."""
    types: dict[str, type] = {}
    for kind in EVENT_KINDS.values():
        for field_name, field_type in kind.fields:
            previous = types.setdefault(field_name, field_type)
            if previous is not field_type:
                raise TypeError(
                    f"field {field_name!r}: {previous.__name__} in one kind, {field_type.__name__} in {kind.name}"
                )
    return types


def event_schema() -> dict[str, list[list[str]]]:
    """Every registered kind's `[field, type name]` pairs in declaration order, for a run's manifest (so readers
    know every kind's columns, even of kinds the run never logged, without importing the simulator)."""
    return {
        name: [[field, TYPE_NAMES[field_type]] for field, field_type in kind.fields]
        for name, kind in sorted(EVENT_KINDS.items())
    }


def _copy(column: array, dtype: type, start: int = 0) -> np.ndarray:
    """A numpy copy of an array.array from `start` (no view is kept, so the array can be cleared afterwards)."""
    if len(column) <= start:
        return np.empty(0, dtype=dtype)
    return np.frombuffer(column, dtype=dtype)[start:].copy()


class _KindBuffer:
    """Column buffers for the records of one kind since the last flush (cleared in place at each flush)."""

    __slots__ = ("kind", "time", "seq", "agent", "columns")

    def __init__(self, kind: EventKind) -> None:
        self.kind = kind
        self.time = array("d")
        self.seq = array("q")
        self.agent = array("q")
        self.columns: dict[str, Any] = {
            name: ([] if field_type is str else array(_ARRAY_CODES[field_type])) for name, field_type in kind.fields
        }

    def __len__(self) -> int:
        return len(self.seq)

    def to_arrow(self, start: int = 0, with_kind: bool = True) -> pa.Table:
        """Records `start:` as a table: time, seq, (kind,) agent and the fields."""
        count = len(self.seq) - start
        columns: dict[str, pa.Array] = {
            "time": pa.array(_copy(self.time, np.float64, start), pa.float64()),
            "seq": pa.array(_copy(self.seq, np.int64, start), pa.int64()),
        }
        if with_kind:
            columns["kind"] = pa.array([self.kind.name] * count, pa.string())
        columns["agent"] = pa.array(_copy(self.agent, np.int64, start), pa.int64())
        for name, field_type in self.kind.fields:
            values = self.columns[name]
            if field_type is bool:
                values = _copy(values, np.int8, start).astype(bool)
            elif field_type is str:
                values = values[start:]
            else:
                values = _copy(values, np.float64 if field_type is float else np.int64, start)
            columns[name] = pa.array(values, _ARROW_TYPES[field_type])
        return pa.table(columns)

    def undo(self, error: BaseException, values: tuple[Any, ...]) -> None:
        """Drop a partly appended record (every column back to the length of `seq`) and raise a one-line error.

        `values` are the record's (time, agent, *fields); the first column that did not grow is the one that failed.
        """
        complete = len(self.seq)
        columns = (("time", float, self.time), ("agent", int, self.agent)) + tuple(
            (name, field_type, self.columns[name]) for name, field_type in self.kind.fields
        )
        failed = None
        for position, (name, field_type, column) in enumerate(columns):
            if len(column) > complete:
                del column[complete:]
            elif failed is None:
                failed = (name, field_type, values[position])
        if not isinstance(error, Exception) or failed is None:
            raise error
        name, field_type, value = failed
        raise EventFieldError(
            f"event {self.kind.name}.{name}: {type(value).__name__} {value!r:.80} does not fit its column "
            f"(declared {field_type.__name__}: {error}); the record was not logged"
        ) from error

    def clear(self) -> None:
        """Empty every column without replacing it (bound appends stay valid)."""
        for column in (self.time, self.seq, self.agent, *self.columns.values()):
            del column[:]


def _text(value: Any) -> str:
    """A str field's value: str (or a subclass, converted); anything else is refused."""
    if isinstance(value, str):
        return str(value)
    raise TypeError(f"expected a string, got {type(value).__name__} {value!r:.60}")


def _compile_emitter(log: EventLog, buffer: _KindBuffer) -> Callable[..., int]:
    """A function `emit(time, agent, *fields)` specialised to one kind: a handful of array appends.

    Generated once per kind and log (as `collections.namedtuple` does), so the hot path has no loops, no
    dictionaries and no per-record objects. The appends run inside one `try` (free when nothing fails): a value
    that does not fit undoes the record's appends; the seq is taken only once every field is in.
    """
    names = buffer.kind.field_names
    namespace: dict[str, Any] = {
        "_log": log,
        "_next": log._sequence.__next__,
        "_t": buffer.time.append,
        "_s": buffer.seq.append,
        "_a": buffer.agent.append,
        "_undo": buffer.undo,
        "_text": _text,
    }
    lines = [
        f"def emit(time, agent{''.join(f', {name}' for name in names)}):",
        "    try:",
        "        _t(time)",
        "        _a(agent)",
    ]
    for index, (name, field_type) in enumerate(buffer.kind.fields):
        namespace[f"_c{index}"] = buffer.columns[name].append
        value = f"{name} if {name}.__class__ is str else _text({name})" if field_type is str else name
        lines.append(f"        _c{index}({value})")
    lines += [
        "    except BaseException as error:",
        f"        _undo(error, (time, agent{''.join(f', {name}' for name in names)}))",
        "    seq = _next()",
        "    _s(seq)",
        "    if seq >= _log._flush_at:",
        "        _log._threshold()",
        "    return seq",
    ]
    exec("\n".join(lines), namespace)  # noqa: S102 - code built from validated identifiers only
    return namespace["emit"]


def _write_atomically(table: pa.Table, path: Path) -> PartRecord:
    """Write `table` as Parquet to a temporary name beside `path`, rename it into place; return its record."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    data = sink.getvalue()
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(memoryview(data))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    relative = f"{path.parent.name}/{path.name}"
    return PartRecord(relative, table.num_rows, hashlib.sha256(memoryview(data)).hexdigest())


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while files are written (main thread only), then deliver them: an interrupt never
    lands between writing a file and recording it, so the log's bookkeeping stays exact."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        previous[number] = signal.signal(number, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)  # None: set outside Python
        for number in dict.fromkeys(received):
            signal.raise_signal(number)


class EventLog:
    """Append-only log of typed events, buffered by column and written per kind as Parquet parts.

    `directory=None` keeps everything in memory (for tests and benchmarks); `to_arrow()` returns all records
    whatever was flushed. The directory is created at the first write, so a run that fails while it is being
    set up leaves nothing behind. Hot paths take `emitter(kind)` once and call it with the fields positionally.
    `flush_every` records bound the memory; `flush_interval_s` (None: never) bounds what a SIGKILL loses once
    `start_timer()` has been called (see the module docstring). `on_flush(log)` is called after every flush
    that wrote parts (the runner records the parts written so far in the manifest).
    """

    def __init__(
        self,
        directory: Path | None = None,
        flush_every: int = 100_000,
        flush_interval_s: float | None = FLUSH_INTERVAL_S,
        on_flush: Callable[[EventLog], None] | None = None,
    ) -> None:
        if flush_every < 1:
            raise ValueError(f"flush_every: must be >= 1, got {flush_every}")
        if flush_interval_s is not None and not flush_interval_s > 0:
            raise ValueError(f"flush_interval_s: must be > 0 seconds or None, got {flush_interval_s}")
        self.directory = directory
        self.flush_every = flush_every
        self.flush_interval_s = flush_interval_s if directory is not None else None
        self.on_flush = on_flush
        self.part_records: list[PartRecord] = []
        self.error: BaseException | None = None
        self._flushed_counts: dict[str, int] = {}
        self._buffers: dict[str, _KindBuffer] = {}
        self._emitters: dict[str, Callable[..., int]] = {}
        self._sequence = itertools.count()
        self._flushed = 0
        self._generation = 0
        self._checkpointed: dict[str, int] = {}
        self._checkpoints: list[Path] = []
        self._checkpoint_numbers: dict[str, int] = {}
        self._count_at = flush_every - 1
        self._flush_at = self._count_at
        self._kept: list[pa.Table] = []
        self._closed = False
        self._checkpoint_due = False
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None

    @property
    def parts(self) -> list[str]:
        """Paths of the written parts, relative to the events directory (`kind=<kind>/part-<n>.parquet`)."""
        return [record.path for record in self.part_records]

    @property
    def count(self) -> int:
        """Records emitted so far."""
        return self._flushed + sum(len(buffer) for buffer in self._buffers.values())

    @property
    def written(self) -> int:
        """Records in the written parts."""
        return sum(record.rows for record in self.part_records)

    @property
    def counts_by_kind(self) -> dict[str, int]:
        """Records emitted so far, per kind."""
        counts = dict(self._flushed_counts)
        for kind, buffer in self._buffers.items():
            counts[kind] = counts.get(kind, 0) + len(buffer)
        return {kind: count for kind, count in counts.items() if count}

    def emitter(self, kind: str) -> Callable[..., int]:
        """The fast append function of a registered kind: `emit(time, agent, *fields in declaration order)`."""
        emit = self._emitters.get(kind)
        if emit is None:
            declared = EVENT_KINDS.get(kind)
            if declared is None:
                raise KeyError(f"event kind {kind!r} is not registered (see sim.events.register_kind)")
            buffer = self._buffers[kind] = _KindBuffer(declared)
            emit = self._emitters[kind] = _compile_emitter(self, buffer)
        return emit

    def emit(self, time: float, kind: str, agent: int = NO_AGENT, **fields: Any) -> int:
        """Append one record of a registered kind; every field of the kind must be given. Returns its seq."""
        emit = self.emitter(kind)
        names = EVENT_KINDS[kind].field_names
        if len(fields) != len(names) or any(name not in fields for name in names):
            missing = set(names) - set(fields)
            extra = set(fields) - set(names)
            raise TypeError(f"event {kind!r}: missing fields {sorted(missing)}, unknown fields {sorted(extra)}")
        return emit(time, agent, *[fields[name] for name in names])

    # ------------------------------------------------------------------------------------- writing

    def start_timer(self) -> None:
        """Start checkpointing every `flush_interval_s` (the runner does so once the run directory exists)."""
        if self.flush_interval_s is not None and self._timer is None and not self._closed:
            self._timer = threading.Thread(target=self._tick, name="flmarket-event-log-timer", daemon=True)
            self._timer.start()

    def _tick(self) -> None:
        """Timer thread: every flush interval, ask the next emitted record to checkpoint the buffers."""
        assert self.flush_interval_s is not None
        while not self._stop.wait(self.flush_interval_s):
            self._checkpoint_due = True
            self._flush_at = -1

    def _threshold(self) -> None:
        """Called by an emitter when a flush by count is due or the timer asked for a checkpoint."""
        if self.error is not None:
            raise RuntimeError(f"event log: a write failed earlier ({self.error}); no more records are accepted")
        self._checkpoint_due = False
        self._flush_at = self._count_at
        if self.count > self._count_at:
            self.flush()
        else:
            self.checkpoint()
        if self._checkpoint_due:
            self._flush_at = -1

    def _kind_directory(self, kind: str) -> Path:
        assert self.directory is not None
        path = self.directory / f"kind={kind}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def checkpoint(self) -> None:
        """Write the records buffered since the last write to checkpoint files (superseded by the next part)."""
        if self.directory is None or self.error is not None:
            return
        with signals_deferred():  # an interrupt arrives after the bookkeeping, never inside it
            try:
                self._write_checkpoints()
            except Exception as error:
                self.error = error
                raise

    def _write_checkpoints(self) -> None:
        for kind, buffer in self._buffers.items():
            start = self._checkpointed.get(kind, 0)
            if len(buffer) > start:
                number = self._checkpoint_numbers.get(kind, 0)
                self._checkpoint_numbers[kind] = number + 1
                path = self._kind_directory(kind) / f"checkpoint-{self._generation:06d}-{number:04d}.parquet"
                _write_atomically(buffer.to_arrow(start, with_kind=False), path)
                self._checkpoints.append(path)
                self._checkpointed[kind] = len(buffer)

    def flush(self) -> list[str]:
        """Write the buffered records, one part per kind (temporary name, then rename); return the new paths."""
        if self.error is not None:
            return []
        with signals_deferred():  # an interrupt arrives after the bookkeeping, never inside it
            try:
                written = self._write_parts()
            except Exception as error:
                self.error = error
                raise
        if written and self.on_flush is not None:
            self.on_flush(self)
        return written

    def _write_parts(self) -> list[str]:
        written: list[str] = []
        for kind, buffer in self._buffers.items():
            if not len(buffer):
                continue
            if self.directory is None:
                self._kept.append(buffer.to_arrow())
            else:
                path = self._kind_directory(kind) / f"part-{self._generation:06d}.parquet"
                record = _write_atomically(buffer.to_arrow(with_kind=False), path)
                self.part_records.append(record)
                written.append(record.path)
            self._flushed_counts[kind] = self._flushed_counts.get(kind, 0) + len(buffer)
            self._flushed += len(buffer)
            buffer.clear()
        for path in self._checkpoints:
            path.unlink(missing_ok=True)
        self._checkpoints.clear()
        self._checkpointed.clear()
        self._checkpoint_numbers.clear()
        if written or self.directory is None:
            self._generation += 1
        self._count_at = self._flushed + self.flush_every - 1
        self._flush_at = -1 if self._checkpoint_due else self._count_at
        return written

    def close(self) -> None:
        """Flush what is left and stop the timer. Idempotent; after a failed write it only stops the timer."""
        self._stop.set()
        if self._closed:
            return
        self._closed = True
        if self.error is None:
            self.flush()

    def to_arrow(self) -> pa.Table:
        """All records so far, in seq order, with a `kind` column (flushes first, then reads back the parts)."""
        self.flush()
        if self.directory is not None:
            tables = []
            for path in self.parts:
                table = pq.read_table(self.directory / path)
                kind = path.split("/", 1)[0].removeprefix("kind=")
                tables.append(table.add_column(2, "kind", pa.array([kind] * table.num_rows, pa.string())))
        else:
            tables = list(self._kept)
        if not tables:
            return pa.table(
                {
                    "time": pa.array([], pa.float64()),
                    "seq": pa.array([], pa.int64()),
                    "kind": pa.array([], pa.string()),
                    "agent": pa.array([], pa.int64()),
                }
            )
        return pa.concat_tables(tables, promote_options="default").sort_by("seq")


def describe_kinds() -> Mapping[str, EventKind]:
    """Every registered kind, for documentation and `flmarket events`."""
    return dict(sorted(EVENT_KINDS.items()))


# The core kinds. Other layers declare theirs next to the code that emits them.
register_kind("run_started", "the run began", scenario=str, seed=int)
register_kind("run_finished", "the run ended", status=str, tasks_finished=int)
register_kind(
    "provider_joined",
    "a data provider came online",
    strategy=str,
    unit_revenue=float,
    participation_cost=float,
    data_size=float,
    privacy_budget=float,
)
register_kind("provider_left", "a data provider went offline", reason=str, tasks_played=int)
register_kind("requester_arrived", "a data requester arrived with a demand", budget=float)
register_kind("task_posted", "a requester posted an FL task", task=int, budget=float, rounds=int)
register_kind(
    "task_started",
    "the market began a task with its online providers",
    task=int,
    players=int,
    theta1=float,
    is_dilemma=bool,
)
register_kind(
    "welfare_reference",
    "the yardsticks of a task's game at its start (SPEC B.1, B.2): the welfare-maximising total participation "
    "(cheapest providers first) and its welfare, full cooperation (all play R), and the all-defect Nash welfare",
    task=int,
    players=int,
    optimum_total=int,
    optimum_welfare=float,
    full_cooperation_total=int,
    full_cooperation_welfare=float,
    nash_welfare=float,
)
register_kind("action_chosen", "a provider chose its participation y_i for a task", task=int, strategy=str, action=int)
register_kind(
    "provider_payoff",
    "a provider's task payoff: U_i (SPEC B.1) + reward_weight * (Shapley rewards - claimed costs); action is the y_i "
    "it chose, realised_rounds the rounds whose honest (trained) update entered the aggregate: the y_i U_i is paid on "
    "(a free rider's untrained update is not participation)",
    task=int,
    strategy=str,
    action=int,
    realised_rounds=int,
    utility=float,
    revenue=float,
    cost=float,
    reward=float,
    mechanism_cost=float,
    payoff=float,
)
register_kind(
    "task_finished",
    "a task's outcome (SPEC B.1)",
    task=int,
    players=int,
    total_participation=int,
    welfare=float,
    precision=float,
)
register_kind("dilemma_check", "SPEC B.2 conditions failed for a task's game", task=int, message=str)
register_kind(
    "zd_design",
    "an MMZD player's or MMZDA alliance's design for a task's game, logged when (re)computed: can it enforce its "
    "welfare target against any opponents (SPEC B.4)? The agent is the player, or the alliance's leader",
    task=int,
    strategy=str,
    alliance_size=int,
    mode=str,
    target=float,
    feasible=bool,
    largest_feasible=float,
)
register_kind(
    "message_sent", "a message entered the overlay", message_kind=str, receiver=int, size_bytes=int, delivery_time=float
)
register_kind("message_dropped", "a message was not delivered", message_kind=str, receiver=int, reason=str)
register_kind(
    "broadcast_sent", "a message flooded the overlay", message_kind=str, size_bytes=int, reached=int, transmissions=int
)
register_kind("sample", "a periodic sample of the population", online_providers=int, tasks_finished=int)
register_kind(
    "strategy_share",
    "a periodic sample of one strategy's share of the online providers",
    strategy=str,
    count=int,
    share=float,
)
register_kind(
    "strategy_switched",
    "a provider changed strategy (SPEC C: imitation or mutation)",
    from_strategy=str,
    to_strategy=str,
    reason=str,
    neighbour=int,
    payoff_gap=float,
)

# BGFL (Algorithm 1 and 2) kinds: one FL task is R aggregation rounds run by the committee.
register_kind(
    "task_configured",
    "the committee fixed a task's mechanism (B 11, B 12)",
    task=int,
    budget=float,
    fee_ratio=float,
    round_cap=int,
    rounds=int,
    pool_per_round=float,
    committee_cost=float,
)
register_kind(
    "committee_elected", "DPoS elected the committee for an epoch (SPEC D.3)", epoch=int, members=str, changed=bool
)
register_kind("round_started", "an aggregation round began", task=int, round=int, gamma=int)
register_kind(
    "update_sent",
    "a provider sent its signed, perturbed update and claim; local_iterations in epochs, l1_norm = ||u~||_1 (B 5), "
    "privacy_spent this upload's eps, privacy_spent_total the provider's eps so far (basic composition, SPEC A.2)",
    task=int,
    round=int,
    local_iterations=int,
    l1_norm=float,
    privacy_spent=float,
    behaviour=str,
    privacy_spent_total=float,
)
register_kind(
    "claim_rejected", "the committee rejected a claim (signature, timer or deadline)", task=int, round=int, reason=str
)
register_kind(
    "update_abandoned",
    "a provider gave up an update still in training or waiting for its PoET timer when the next round began (that "
    "round had closed, so it would have been late; its trusted timer holds one timer at a time, SPEC D.1)",
    task=int,
    round=int,
)
register_kind(
    "consensus_decided",
    "PBFT decided a round's proposal",
    task=int,
    round=int,
    view=int,
    messages=int,
    bytes=int,
    latency_s=float,
)
register_kind(
    "block_committed",
    "a block was appended to the ledger; `encoded` is its canonical encoding (Block.decode reads it back)",
    task=int,
    round=int,
    height=int,
    block_hash=str,
    transactions=int,
    encoded=str,
)
register_kind(
    "shapley_estimated",
    "how a round's Shapley values were computed (B 10, SPEC A.5): `method`, whether exact, value calls, samples, "
    "Student-t degrees of freedom (inf when exact), max_i SE_i / mean_i |xi_i|, and whether that met the target",
    task=int,
    round=int,
    method=str,
    players=int,
    exact=bool,
    converged=bool,
    evaluations=int,
    samples=int,
    degrees_of_freedom=float,
    relative_standard_error=float,
)
register_kind(
    "reward_paid",
    "a provider's Shapley reward for a round (B 10, B 13); shapley_standard_error is the Monte Carlo SE of "
    "shapley_value and shapley_interval the half width of its 95 % Student-t interval (both 0 when exact)",
    task=int,
    round=int,
    shapley_value=float,
    reward=float,
    contribution=float,
    unit_cost=float,
    local_iterations=int,
    shapley_standard_error=float,
    shapley_interval=float,
)
register_kind(
    "round_finished",
    "an aggregation round's outcome; paid is what reached providers (a leaver's reward is forfeited, not paid)",
    task=int,
    round=int,
    participants=int,
    quality=float,
    loss=float,
    accuracy=float,
    pool=float,
    paid=float,
)
register_kind("ir_violation", "individual rationality failed for a provider (B 14)", task=int, round=int, amount=float)
register_kind(
    "budget_check",
    "budget balance at a task's round r: SPEC A.6's B 15a/B 15b as the paper writes them, r times this round's "
    "committee cost and r times this round's claimed provider cost sum k C_unit (committee_spent, provider_spent: "
    "this round's costs over r rounds, not the sum of the rounds so far) against their shares (balanced), and the "
    "money actually paid so far against the same shares (fees_paid, rewards_paid, within_budget)",
    task=int,
    round=int,
    committee_spent=float,
    committee_budget=float,
    provider_spent=float,
    provider_budget=float,
    balanced=bool,
    fees_paid=float,
    rewards_paid=float,
    within_budget=bool,
)
register_kind("task_rejected", "the committee refused a task (e.g. an infeasible budget, B 11)", task=int, reason=str)
register_kind(
    "task_settled",
    "a task's money: rewards paid, committee fees, refund to the requester",
    task=int,
    paid=float,
    committee_fees=float,
    refunded=float,
)
register_kind(
    "consensus_stalled", "PBFT did not decide a round in time; the task stops", task=int, round=int, waiting_for=str
)
register_kind(
    "reward_forfeited", "a provider left before its round's reward was paid", task=int, round=int, reward=float
)
