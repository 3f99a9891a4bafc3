"""The event log: typed records in column-wise buffers, flushed atomically as Parquet parts.

Every state change of a run is one record with the common columns (time, seq, kind, agent) and the fields of its
kind. Kinds are declared once with their field types (`EventKind`); `EventLog.emit` appends each field to a
per-kind `array.array` (strings to a list), so a long run holds no per-record Python objects. Every
`flush_every` records, and at the end, the buffers are written (grouped by kind; readers sort by seq) as one
Parquet part under `<run>/events/`, first to a temporary name and then renamed, so a run killed at any moment
leaves only complete parts.
"""

from __future__ import annotations

import itertools
import os
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flmarket.agents.messages import NO_AGENT

COMMON_COLUMNS = ("time", "seq", "kind", "agent")

_ARRAY_CODES = {int: "q", float: "d", bool: "b"}
_ARROW_TYPES = {int: pa.int64(), float: pa.float64(), bool: pa.bool_(), str: pa.string()}


@dataclass(frozen=True)
class EventKind:
    """A kind of event and the types of its fields (int, float, bool or str)."""

    name: str
    fields: tuple[tuple[str, type], ...]
    description: str = ""

    @property
    def field_names(self) -> tuple[str, ...]:
        """The names of the kind's own fields, in declaration order."""
        return tuple(name for name, _ in self.fields)


EVENT_KINDS: dict[str, EventKind] = {}


def register_kind(name: str, description: str = "", **fields: type) -> EventKind:
    """Declare an event kind; re-declaring the same kind with the same fields is a no-op."""
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


def _copy(column: array, dtype: type) -> np.ndarray:
    """A numpy copy of an array.array (no view is kept, so the array can be cleared afterwards)."""
    return np.frombuffer(column, dtype=dtype).copy() if len(column) else np.empty(0, dtype=dtype)


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

    def to_arrow(self) -> pa.Table:
        columns: dict[str, pa.Array] = {
            "time": pa.array(_copy(self.time, np.float64), pa.float64()),
            "seq": pa.array(_copy(self.seq, np.int64), pa.int64()),
            "kind": pa.array([self.kind.name] * len(self.seq), pa.string()),
            "agent": pa.array(_copy(self.agent, np.int64), pa.int64()),
        }
        for name, field_type in self.kind.fields:
            values = self.columns[name]
            if field_type is bool:
                values = _copy(values, np.int8).astype(bool)
            elif field_type is not str:
                values = _copy(values, np.float64 if field_type is float else np.int64)
            columns[name] = pa.array(values, _ARROW_TYPES[field_type])
        return pa.table(columns)

    def clear(self) -> None:
        """Empty every column without replacing it (bound appends stay valid)."""
        for column in (self.time, self.seq, self.agent, *self.columns.values()):
            del column[:]


def _compile_emitter(log: EventLog, buffer: _KindBuffer) -> Callable[..., int]:
    """A function `emit(time, agent, *fields)` specialised to one kind: a handful of array appends.

    Generated once per kind and log (as `collections.namedtuple` does), so the hot path has no loops, no
    dictionaries and no per-record objects.
    """
    names = buffer.kind.field_names
    namespace: dict[str, Any] = {
        "_log": log,
        "_next": log._sequence.__next__,
        "_t": buffer.time.append,
        "_s": buffer.seq.append,
        "_a": buffer.agent.append,
    }
    lines = [
        f"def emit(time, agent{''.join(f', {name}' for name in names)}):",
        "    seq = _next()",
        "    _t(time)",
        "    _s(seq)",
        "    _a(agent)",
    ]
    for index, name in enumerate(names):
        namespace[f"_c{index}"] = buffer.columns[name].append
        lines.append(f"    _c{index}({name})")
    lines += ["    if seq >= _log._flush_at:", "        _log.flush()", "    return seq"]
    exec("\n".join(lines), namespace)  # noqa: S102 - code built from validated identifiers only
    return namespace["emit"]


class EventLog:
    """Append-only log of typed events, buffered by column and flushed as Parquet parts.

    `directory=None` keeps everything in memory (for tests and benchmarks); `to_arrow()` returns all records
    whatever was flushed. The directory is created at the first flush, so a run that fails while it is being
    set up leaves nothing behind. Hot paths take `emitter(kind)` once and call it with the fields positionally.
    """

    def __init__(self, directory: Path | None = None, flush_every: int = 100_000) -> None:
        if flush_every < 1:
            raise ValueError(f"flush_every: must be >= 1, got {flush_every}")
        self.directory = directory
        self.flush_every = flush_every
        self.parts: list[str] = []
        self._flushed_counts: dict[str, int] = {}
        self._buffers: dict[str, _KindBuffer] = {}
        self._emitters: dict[str, Callable[..., int]] = {}
        self._sequence = itertools.count()
        self._flushed = 0
        self._flush_at = flush_every - 1
        self._kept: list[pa.Table] = []

    @property
    def count(self) -> int:
        """Records emitted so far."""
        return self._flushed + sum(len(buffer) for buffer in self._buffers.values())

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

    def _drain(self) -> pa.Table | None:
        tables = []
        for kind, buffer in self._buffers.items():
            if len(buffer):
                tables.append(buffer.to_arrow())
                self._flushed_counts[kind] = self._flushed_counts.get(kind, 0) + len(buffer)
                self._flushed += len(buffer)
                buffer.clear()
        self._flush_at = self._flushed + self.flush_every - 1
        if not tables:
            return None
        return pa.concat_tables(tables, promote_options="default")

    def flush(self) -> str | None:
        """Write the buffered records as one Parquet part (temporary name, then rename); return its name."""
        table = self._drain()
        if table is None:
            return None
        if self.directory is None:
            self._kept.append(table)
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"part-{len(self.parts):06d}.parquet"
        temporary = self.directory / f".{name}.tmp"
        pq.write_table(table, temporary, compression="zstd")
        os.replace(temporary, self.directory / name)
        self.parts.append(name)
        return name

    def close(self) -> None:
        """Flush what is left."""
        self.flush()

    def to_arrow(self) -> pa.Table:
        """All records so far, in seq order (flushes first, then reads back the written parts)."""
        self.flush()
        if self.directory is not None:
            tables = [pq.read_table(self.directory / name) for name in self.parts]
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
register_kind("action_chosen", "a provider chose its participation y_i for a task", task=int, strategy=str, action=int)
register_kind(
    "provider_payoff",
    "a provider's task payoff: U_i (SPEC B.1) + reward_weight * (Shapley rewards - claimed costs)",
    task=int,
    strategy=str,
    action=int,
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
    pool_per_round=float,
    committee_cost=float,
)
register_kind(
    "committee_elected", "DPoS elected the committee for an epoch (SPEC D.3)", epoch=int, members=str, changed=bool
)
register_kind("round_started", "an aggregation round began", task=int, round=int, gamma=int)
register_kind(
    "update_sent",
    "a provider sent its signed, perturbed update and claim",
    task=int,
    round=int,
    local_iterations=int,
    l1_norm=float,
    privacy_spent=float,
    behaviour=str,
)
register_kind(
    "claim_rejected", "the committee rejected a claim (signature, timer or deadline)", task=int, round=int, reason=str
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
    "reward_paid",
    "a provider's Shapley reward for a round (B 10, B 13)",
    task=int,
    round=int,
    shapley_value=float,
    reward=float,
    contribution=float,
    unit_cost=float,
    local_iterations=int,
)
register_kind(
    "round_finished",
    "an aggregation round's outcome",
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
    "budget balance of a task so far: SPEC A.6's B 15a/B 15b on committee costs and the providers' claimed "
    "costs (balanced), and the money paid so far against the same shares (within_budget)",
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
