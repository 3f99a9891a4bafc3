"""The event log: typed records, column buffers, atomic per-kind Parquet parts, checkpoints, and reading them back."""

from __future__ import annotations

import errno
import hashlib
import time

import pyarrow.parquet as pq
import pytest

from flmarket.analysis.load import events_frame
from flmarket.sim import events as events_module
from flmarket.sim.events import EventFieldError, EventLog, register_kind

register_kind("test_tick", "a test record", task=int, value=float, label=str, flag=bool)
register_kind("test_other", "another test record", task=int)


def test_records_keep_order_types_and_values(tmp_path) -> None:
    log = EventLog(tmp_path / "events", flush_every=3)
    for index in range(7):
        log.emit(float(index), "test_tick", index, task=index, value=index / 2, label=f"l{index}", flag=index % 2 == 0)
        if index % 3 == 0:
            log.emit(float(index), "test_other", -1, task=index)
    log.close()
    assert log.count == 10 == log.written
    # flushes after 3, 6 and 9 records and at close; flush n writes part n of each kind it holds records of:
    # flush 0 = tick 0, other 1, tick 2; flush 1 = tick 3, 4, other 5; flush 2 = ticks 6, 7, 8; close = other 9
    assert log.parts == [
        "kind=test_tick/part-000000.parquet",
        "kind=test_other/part-000000.parquet",
        "kind=test_tick/part-000001.parquet",
        "kind=test_other/part-000001.parquet",
        "kind=test_tick/part-000002.parquet",
        "kind=test_other/part-000003.parquet",
    ]
    frame = events_frame(log.to_arrow())
    assert frame["seq"].tolist() == list(range(10))
    ticks = frame[frame["kind"] == "test_tick"]
    assert ticks["value"].tolist() == [i / 2 for i in range(7)]
    assert ticks["label"].tolist() == [f"l{i}" for i in range(7)]
    assert ticks["flag"].tolist() == [i % 2 == 0 for i in range(7)]
    assert str(frame["task"].dtype) == "Int64" and str(frame["kind"].dtype) == "category"
    others = frame[frame["kind"] == "test_other"]
    assert others["label"].isna().all() and others["task"].tolist() == [0, 3, 6]


def test_each_kind_has_its_own_schema_and_the_manifest_digests_match(tmp_path) -> None:
    log = EventLog(tmp_path / "events", flush_every=2)
    for index in range(5):
        log.emit(0.0, "test_other", task=index)
    log.emit(1.0, "test_tick", 4, task=9, value=0.5, label="x", flag=False)
    log.close()
    other = pq.read_table(tmp_path / "events" / "kind=test_other" / "part-000000.parquet")
    assert other.column_names == ["time", "seq", "agent", "task"]  # no padding, kind is the directory
    tick = pq.read_table(tmp_path / "events" / "kind=test_tick" / "part-000002.parquet")
    assert tick.column_names == ["time", "seq", "agent", "task", "value", "label", "flag"]
    assert tick.to_pylist() == [
        {"time": 1.0, "seq": 5, "agent": 4, "task": 9, "value": 0.5, "label": "x", "flag": False}
    ]
    for record in log.part_records:
        data = (tmp_path / "events" / record.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == record.sha256
        assert pq.read_metadata(tmp_path / "events" / record.path).num_rows == record.rows
    assert sum(record.rows for record in log.part_records) == 6
    leftovers = [path.name for path in (tmp_path / "events").rglob("*") if path.name.startswith(".")]
    assert leftovers == []


def test_same_records_give_byte_identical_parts(tmp_path) -> None:
    digests = []
    for attempt in ("a", "b"):
        log = EventLog(tmp_path / attempt, flush_every=4)
        for index in range(11):
            log.emit(index * 0.5, "test_tick", index, task=index, value=index / 3, label=f"l{index}", flag=True)
        log.close()
        digests.append([(record.path, record.sha256) for record in log.part_records])
    assert digests[0] == digests[1] and len(digests[0]) == 3


def test_nothing_is_written_before_the_first_flush(tmp_path) -> None:
    log = EventLog(tmp_path / "events", flush_every=100)
    log.emit(0.0, "test_other", task=1)
    assert not (tmp_path / "events").exists()


def test_checkpoints_by_time_hold_the_buffer_until_the_part_supersedes_them(tmp_path) -> None:
    log = EventLog(tmp_path / "events", flush_every=1_000, flush_interval_s=0.05)
    log.start_timer()
    for index in range(3):
        log.emit(0.0, "test_other", task=index)
    # The timer raises its flag and the next record writes the checkpoint. Wait for the flag, not a fixed time: a
    # loaded machine may not run the timer thread within a short sleep.
    deadline = time.monotonic() + 30.0
    while not log._checkpoint_due and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log._checkpoint_due
    log.emit(0.0, "test_other", task=3)
    kind_dir = tmp_path / "events" / "kind=test_other"
    checkpoints = sorted(kind_dir.glob("checkpoint-*.parquet"))
    assert checkpoints and not list(kind_dir.glob("part-*.parquet"))
    written = sorted(seq for path in checkpoints for seq in pq.read_table(path)["seq"].to_pylist())
    assert written == [0, 1, 2, 3]
    log.close()
    assert sorted(path.name for path in kind_dir.iterdir()) == ["part-000000.parquet"]
    assert pq.read_table(kind_dir / "part-000000.parquet")["task"].to_pylist() == [0, 1, 2, 3]


def test_missing_or_unknown_fields_are_rejected() -> None:
    log = EventLog(None)
    with pytest.raises(TypeError, match="missing fields \\['value'\\]"):
        log.emit(0.0, "test_tick", task=1, label="x", flag=True)
    with pytest.raises(KeyError, match="not registered"):
        log.emit(0.0, "no_such_kind")


@pytest.mark.parametrize(
    ("fields", "field_name"),
    [
        ({"task": 10**400, "value": 1.0, "label": "x", "flag": True}, "task"),  # the round_cap overflow of #13
        ({"task": 1, "value": "1.5", "label": "x", "flag": True}, "value"),
        ({"task": 1, "value": 10**400, "label": "x", "flag": True}, "value"),
        ({"task": 1, "value": 1.0, "label": 7, "flag": True}, "label"),
        ({"task": 1, "value": 1.0, "label": "x", "flag": "yes"}, "flag"),
    ],
)
def test_an_event_is_appended_whole_or_not_at_all(tmp_path, fields, field_name) -> None:
    log = EventLog(tmp_path / "events", flush_every=100)
    log.emit(0.0, "test_tick", 1, task=0, value=0.0, label="first", flag=False)
    with pytest.raises(EventFieldError, match=f"^event test_tick.{field_name}: .*the record was not logged$"):
        log.emit(1.0, "test_tick", 2, **fields)
    log.emit(2.0, "test_tick", 3, task=2, value=2.0, label="third", flag=True)
    log.close()
    assert log.count == 2
    frame = events_frame(log.to_arrow())
    assert frame["seq"].tolist() == [0, 1]  # the refused record took no seq
    assert frame["label"].tolist() == ["first", "third"] and frame["task"].tolist() == [0, 2]


def test_a_failed_write_is_the_error_reported_and_close_does_not_hide_it(tmp_path, monkeypatch) -> None:
    log = EventLog(tmp_path / "events", flush_every=2)
    for index in range(3):
        log.emit(0.0, "test_other", task=index)  # part 0 holds records 0 and 1

    def full_disk(table, where, **options):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(events_module.pq, "write_table", full_disk)
    with pytest.raises(OSError, match="No space left"):
        log.close()
    log.close()  # no second error
    assert isinstance(log.error, OSError) and log.count == 3 and log.written == 2
    names = sorted(path.name for path in (tmp_path / "events" / "kind=test_other").iterdir())
    assert names == ["part-000000.parquet"]  # the earlier part is whole, no temporary file is left
    monkeypatch.undo()
    assert pq.read_table(tmp_path / "events" / "kind=test_other" / "part-000000.parquet")["task"].to_pylist() == [0, 1]


def test_redeclaring_a_kind_with_other_fields_fails() -> None:
    with pytest.raises(ValueError, match="already declared"):
        register_kind("test_other", task=float)
