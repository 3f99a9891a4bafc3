"""The event log: typed records, column buffers, atomic Parquet parts, and reading them back with pandas."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from flmarket.analysis.load import events_frame
from flmarket.sim.events import EventLog, register_kind

register_kind("test_tick", "a test record", task=int, value=float, label=str, flag=bool)
register_kind("test_other", "another test record", task=int)


def test_records_keep_order_types_and_values(tmp_path) -> None:
    log = EventLog(tmp_path / "events", flush_every=3)
    for index in range(7):
        log.emit(float(index), "test_tick", index, task=index, value=index / 2, label=f"l{index}", flag=index % 2 == 0)
        if index % 3 == 0:
            log.emit(float(index), "test_other", -1, task=index)
    log.close()
    assert log.count == 10
    assert len(log.parts) == 4  # flushes at 3, 6, 9 records and the rest at close
    frame = events_frame(log.to_arrow())
    assert frame["seq"].tolist() == list(range(10))
    ticks = frame[frame["kind"] == "test_tick"]
    assert ticks["value"].tolist() == [i / 2 for i in range(7)]
    assert ticks["label"].tolist() == [f"l{i}" for i in range(7)]
    assert ticks["flag"].tolist() == [i % 2 == 0 for i in range(7)]
    assert str(frame["task"].dtype) == "Int64" and str(frame["kind"].dtype) == "category"
    others = frame[frame["kind"] == "test_other"]
    assert others["label"].isna().all() and others["task"].tolist() == [0, 3, 6]


def test_parts_are_complete_and_no_temporary_files_remain(tmp_path) -> None:
    log = EventLog(tmp_path / "events", flush_every=2)
    for index in range(5):
        log.emit(0.0, "test_other", task=index)
    log.close()
    names = sorted(path.name for path in (tmp_path / "events").iterdir())
    assert names == [f"part-{i:06d}.parquet" for i in range(3)]
    assert sum(pq.read_metadata(tmp_path / "events" / name).num_rows for name in names) == 5


def test_nothing_is_written_before_the_first_flush(tmp_path) -> None:
    log = EventLog(tmp_path / "events", flush_every=100)
    log.emit(0.0, "test_other", task=1)
    assert not (tmp_path / "events").exists()


def test_missing_or_unknown_fields_are_rejected() -> None:
    log = EventLog(None)
    with pytest.raises(TypeError, match="missing fields \\['value'\\]"):
        log.emit(0.0, "test_tick", task=1, label="x", flag=True)
    with pytest.raises(KeyError, match="not registered"):
        log.emit(0.0, "no_such_kind")


def test_redeclaring_a_kind_with_other_fields_fails() -> None:
    with pytest.raises(ValueError, match="already declared"):
        register_kind("test_other", task=float)
