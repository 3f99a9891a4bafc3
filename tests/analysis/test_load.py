"""Reading runs back: per-kind loading with projection and filters, verification against the manifest, partial
runs (interrupted, failed, crashed) and provenance."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas.testing as pdt
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import flmarket.agents.platform as platform_module
from flmarket.analysis import metrics
from flmarket.analysis.load import (
    PartialRunWarning,
    RunIntegrityError,
    events_frame,
    load_events,
    load_events_table,
    load_manifest,
    verify_run,
)
from flmarket.sim import events as events_module
from flmarket.sim.cli import main
from flmarket.sim.config import load_scenario
from flmarket.sim.events import EventFieldError, EventLog
from flmarket.sim.runner import git_commit, run_scenario

SMALL = {"run.tasks": 4, "providers.count": 8, "run.flush_every": 400}


def _run(directory: Path, run_id: str, seed: int = 3, **overrides: object) -> Path:
    scenario = load_scenario("quickstart", {**SMALL, "run.seed": seed, **overrides})
    return run_scenario(scenario, output_dir=directory, run_id=run_id, show_progress=False).run_dir


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, Path]:
    """Two finished runs (seeds 3 and 4), written once; tests copy them before changing anything."""
    directory = tmp_path_factory.mktemp("runs")
    return _run(directory, "a", seed=3), _run(directory, "b", seed=4)


@pytest.fixture
def run(pristine, tmp_path) -> Path:
    return Path(shutil.copytree(pristine[0], tmp_path / "a"))


def _part_names(run_dir: Path) -> list[str]:
    return json.loads((run_dir / "manifest.json").read_text())["parts"]


def _first_part(run_dir: Path, kind: str) -> str:
    """The manifest's first part of a kind (`kind=<kind>/part-<n>.parquet`)."""
    return sorted(name for name in _part_names(run_dir) if name.startswith(f"kind={kind}/"))[0]


# ------------------------------------------------------------------------------------------------- reading


def test_a_finished_run_verifies_and_loads_every_event(run) -> None:
    manifest = load_manifest(run)
    check = verify_run(run)
    assert check.ok and check.status == "finished" and not check.partial
    assert check.events == manifest["events"] == manifest["events_written"] == manifest["last_seq"] + 1
    assert sorted(check.parts) == sorted(manifest["parts"])
    assert len(manifest["parts"]) > len(manifest["events_by_kind"])  # flush_every=400: several parts per kind
    frame = load_events(run)
    assert frame["seq"].tolist() == list(range(manifest["events"]))
    counts = frame["kind"].astype(str).value_counts().to_dict()
    assert counts == manifest["events_by_kind"]
    # the parts hold each kind's own fields only
    part = pq.read_table(run / "events" / _first_part(run, "task_finished"))
    assert part.column_names == [
        "time",
        "seq",
        "agent",
        "task",
        "players",
        "total_participation",
        "welfare",
        "precision",
    ]


def test_kinds_columns_and_filters_give_the_rows_pandas_gives(run) -> None:
    full = load_events(run)
    wanted = full[full["kind"].isin(["reward_paid", "round_finished"]) & (full["task"] < 2)]
    narrow = load_events(
        run, kinds=["reward_paid", "round_finished"], columns=["reward", "paid"], filters=[("task", "<", 2)]
    )
    assert list(narrow.columns) == ["time", "seq", "kind", "agent", "reward", "paid"]
    assert len(narrow) == len(wanted) > 0
    for name in ("seq", "time", "kind", "agent", "reward", "paid"):
        pdt.assert_series_equal(
            narrow[name], wanted[name].reset_index(drop=True), check_dtype=False, check_categorical=False
        )


@pytest.mark.parametrize(
    "selection",
    [
        {},
        {"kinds": ["reward_paid", "round_finished", "action_chosen"]},
        {"kinds": ["round_finished", "reward_paid"], "columns": ["task", "paid"], "filters": [("round", ">=", 1)]},
        {"filters": [("task", "<", 2)]},
        {"kinds": ["provider_payoff"]},
    ],
)
def test_the_merged_frame_is_what_pandas_makes_of_the_padded_arrow_table(run, selection) -> None:
    """load_events builds the frame column by column from each kind's own fields, never making the padded table;
    Arrow's padded table, sorted by seq and converted by pandas, is the independent answer (values, order, and
    the pandas array type of every column: float64, Int64, boolean, Arrow-backed string, categorical kind)."""
    merged = load_events(run, **selection)
    padded = events_frame(load_events_table(run, **selection))
    assert len(merged) > 0
    pdt.assert_frame_equal(merged, padded, check_exact=True)
    for name in merged.columns:
        assert type(merged[name].array) is type(padded[name].array), name
        assert merged[name].dtype == padded[name].dtype, name
    if "kind" in merged.columns:
        assert list(merged["kind"].cat.categories) == list(padded["kind"].cat.categories)
        assert merged["kind"].cat.categories.dtype == padded["kind"].cat.categories.dtype


def test_a_kind_the_run_never_logged_is_an_empty_frame_with_its_columns(run) -> None:
    frame = load_events(run, kinds=["consensus_stalled"])
    assert frame.empty and list(frame.columns) == ["time", "seq", "kind", "agent", "task", "round", "waiting_for"]


@pytest.mark.parametrize(
    ("kinds", "message"),
    [
        (["task_finishd"], r"^kinds: unknown kind 'task_finishd' \(known kinds: .*task_finished.*\)$"),
        ("task_finished", r"^kinds: must be a list of kind names, got the string 'task_finished' .*known kinds: "),
    ],
)
def test_an_unknown_kind_or_a_string_is_a_one_line_error_naming_the_known_kinds(run, kinds, message) -> None:
    with pytest.raises(ValueError, match=message) as error:
        load_events(run, kinds=kinds)
    assert "\n" not in str(error.value)


def test_an_unknown_column_is_an_error_naming_the_columns(run) -> None:
    with pytest.raises(ValueError, match=r"columns: 'welfare' is not a column of the kinds reward_paid"):
        load_events(run, kinds=["reward_paid"], columns=["welfare"])


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        ({"columns": 5}, r"^columns: must be a list of column names, got 5$"),
        ({"columns": (name for name in ["reward"])}, r"^columns: must be a list of column names, got <generator"),
        ({"filters": ("task", "<", 3)}, r"^filters: must be a list of \(column, op, value\) tuples"),
        ({"filters": {"task": 3}}, r"^filters: must be a list of"),
        ({"filters": []}, r"^filters: must be a list of"),
        ({"filters": "task < 3"}, r"^filters: must be a list of"),
        ({"filters": [("task", "<")]}, r"^filters: \('task', '<'\) is not a \(column, op, value\) tuple"),
        ({"filters": [("task", "~", 3)]}, r'^filters: "~" is not a valid operator.* filters must be a list of'),
        (
            {"filters": [("welfare", ">", 0)]},
            r"^filters: 'welfare' is not a column of the kinds reward_paid \(columns: ",
        ),
        ({"filters": [("task", "<", "3")]}, r"^filters: cannot be applied to the kinds reward_paid \(.*int64, string"),
    ],
)
def test_bad_columns_or_filters_are_one_line_errors_naming_the_argument(run, selection, message) -> None:
    """These were tracebacks from pyarrow (ArrowNotImplementedError, KeyError: 0, TypeError) or, for a generator of
    columns, a frame silently without the columns asked for."""
    with pytest.raises(ValueError, match=message) as error:
        load_events(run, kinds=["reward_paid"], **selection)
    assert "\n" not in str(error.value)


def test_filters_in_either_list_form_select_the_rows_pandas_selects(run) -> None:
    full = load_events(run, kinds=["reward_paid"])
    either = load_events(run, kinds=["reward_paid"], filters=[[("task", "<", 1)], [("round", "=", 0)]])
    assert either["seq"].tolist() == full[(full["task"] < 1) | (full["round"] == 0)]["seq"].tolist()
    both = load_events(run, kinds=["reward_paid"], filters=[["task", "<", 1], ["round", "=", 0]])
    assert both["seq"].tolist() == full[(full["task"] < 1) & (full["round"] == 0)]["seq"].tolist()
    assert 0 < len(both) < len(either) < len(full)


def test_run_summary_reads_only_its_kinds_and_gets_the_numbers_of_the_full_frame(run) -> None:
    from_directory = metrics.run_summary(run)
    from_full_frame = metrics.run_summary(load_events(run))
    assert from_directory.keys() == from_full_frame.keys()
    for name, value in from_full_frame.items():
        assert from_directory[name] == pytest.approx(value, nan_ok=True), name


# ------------------------------------------------------------------------------------------------- damage


def _delete_middle_part(run_dir: Path, other: Path) -> None:
    parts = sorted(name for name in _part_names(run_dir) if "message_sent" in name)
    (run_dir / "events" / parts[1]).unlink()


def _duplicate_part(run_dir: Path, other: Path) -> None:
    source = run_dir / "events" / _first_part(run_dir, "message_sent")
    shutil.copy(source, source.with_name("part-000099.parquet"))


def _part_from_another_run_same_name(run_dir: Path, other: Path) -> None:
    name = sorted(set(_part_names(run_dir)) & set(_part_names(other)))[-1]
    shutil.copy(other / "events" / name, run_dir / "events" / name)


def _part_from_another_run_new_name(run_dir: Path, other: Path) -> None:
    shutil.copy(
        other / "events" / _first_part(other, "task_finished"),
        run_dir / "events" / "kind=task_finished" / "part-000042.parquet",
    )


def _bit_flip(run_dir: Path, other: Path) -> None:
    path = run_dir / "events" / _first_part(run_dir, "reward_paid")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _missing_events_folder(run_dir: Path, other: Path) -> None:
    shutil.rmtree(run_dir / "events")


def _seq_gap_with_consistent_manifest(run_dir: Path, other: Path) -> None:
    """Delete a part and remove it from the manifest too: only the seq check can tell."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    name = sorted(name for name in manifest["parts"] if "message_sent" in name)[1]
    (run_dir / "events" / name).unlink()
    manifest["parts"].remove(name)
    manifest["events"] -= manifest["part_rows"].pop(name)
    del manifest["part_sha256"][name]
    (run_dir / "manifest.json").write_text(json.dumps(manifest))


def _manifest_is_a_list(run_dir: Path, other: Path) -> None:
    (run_dir / "manifest.json").write_text("[1, 2]")


def _old_flat_layout(run_dir: Path, other: Path) -> None:
    table = pa.table({"time": [0.0], "seq": [0], "kind": ["run_started"], "agent": [-1]})
    shutil.rmtree(run_dir / "events")
    (run_dir / "events").mkdir()
    pq.write_table(table, run_dir / "events" / "part-000000.parquet")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for key in ("event_schema", "part_sha256", "part_rows"):
        del manifest[key]
    manifest["parts"] = ["part-000000.parquet"]
    (run_dir / "manifest.json").write_text(json.dumps(manifest))


def test_the_seq_check_reads_every_part_in_one_scan_and_names_a_part_it_cannot_read(run, tmp_path) -> None:
    """The one-scan read of every part's seq gives what reading part by part gives; a duplicate is found with
    both places, and a Parquet file without a seq column (which the scan would read as nulls) is named."""
    from flmarket.analysis.load import _scanned_seqs, _seq_problems

    files = {name: run / "events" / name for name in _part_names(run)}
    assert len(files) > 30
    one_by_one = [pq.read_table(path, columns=["seq"]).column(0).to_numpy() for path in files.values()]
    scanned = _scanned_seqs(files)
    assert scanned is not None and all((a == b).all() for a, b in zip(scanned, one_by_one, strict=True))
    seqs, problems = _seq_problems(files)
    assert problems == [] and (seqs == np.arange(seqs.size)).all()
    first = next(iter(files))
    copy = tmp_path / "copy.parquet"
    shutil.copyfile(files[first], copy)
    _, problems = _seq_problems({**files, "copy": copy})
    assert len(problems) == 1 and f"appears in {first} and in copy" in problems[0]
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), foreign)
    assert _scanned_seqs({**files, "foreign": foreign}) is None
    _, problems = _seq_problems({**files, "foreign": foreign})
    assert len(problems) == 1 and problems[0].startswith("foreign: not a readable Parquet part")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_delete_middle_part, r"events/kind=message_sent/part-\d{6}.parquet: listed in the manifest but missing"),
        (_duplicate_part, r"part-000099.parquet: not in the manifest \(a duplicated part, or one from another run\)"),
        (_part_from_another_run_same_name, r"part-\d{6}.parquet: SHA-256 differs from the manifest"),
        (_part_from_another_run_new_name, r"task_finished/part-000042.parquet: not in the manifest"),
        (_bit_flip, r"reward_paid/part-\d{6}.parquet: SHA-256 differs from the manifest"),
        (_missing_events_folder, r"the events/ folder is missing \(the manifest lists \d+ parts\)"),
        (_seq_gap_with_consistent_manifest, r"seq is not contiguous from 0 .* gaps\)"),
        (_manifest_is_a_list, r"manifest.json: must be a JSON object, got a JSON list"),
        (_old_flat_layout, r"old flat layout"),
    ],
)
def test_damaged_runs_are_refused_with_one_line_naming_the_problem(pristine, tmp_path, capsys, damage, message) -> None:
    run_dir = Path(shutil.copytree(pristine[0], tmp_path / "a"))
    damage(run_dir, pristine[1])
    check = verify_run(run_dir)
    assert check.problems and any(re.search(message, problem) for problem in check.problems)
    with pytest.raises(RunIntegrityError, match=message) as error:
        load_events(run_dir, kinds=["task_finished"])
    assert "\n" not in str(error.value)
    with pytest.raises(RunIntegrityError):
        metrics.run_summary(run_dir)
    assert main(["report", str(run_dir), "--out", str(tmp_path / "report.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("flmarket: error: ")
    assert not (tmp_path / "report.html").exists()


# ------------------------------------------------------------------------------------------------- partial runs


def test_a_running_manifest_whose_process_is_gone_reads_as_crashed(run) -> None:
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["status"] = "running"
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert load_manifest(run)["status"] == "running"  # written by this (live) test process
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    manifest["process"]["pid"] = gone.pid
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert load_manifest(run)["status"] == "crashed"
    manifest["process"] |= {"pid": os.getpid(), "started": manifest["process"]["started"] - 100}  # a reused pid
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert load_manifest(run)["status"] == "crashed"
    with pytest.warns(PartialRunWarning, match=r"run a is crashed: loading seq 0\.\.\d+ \([\d,]+ events\)"):
        frame = load_events(run, kinds=["task_finished"])
    assert len(frame) == 4


def test_an_overflowing_field_fails_the_run_with_that_error_and_keeps_what_was_logged(tmp_path, monkeypatch) -> None:
    """requesters.budget = 1e308 (now refused by validation) made round_cap = floor(B sigma / C) overflow int64
    in the middle of an event; the same value is fed to the real mechanism here, past the validation."""
    real = platform_module.configure_task
    calls = []

    def huge_budget(budget, *rest):
        calls.append(budget)
        return real(1e308 if len(calls) == 3 else budget, *rest)  # the third task's budget

    monkeypatch.setattr(platform_module, "configure_task", huge_budget)
    with pytest.raises(EventFieldError, match=r"^event task_configured.round_cap: int \d+ does not fit its column"):
        _run(tmp_path, "overflow")
    run_dir = tmp_path / "overflow"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["error"].startswith("EventFieldError: event task_configured.round_cap")
    assert manifest["events_written"] == manifest["events"]  # nothing buffered was lost
    with pytest.warns(PartialRunWarning, match="run overflow is failed: loading seq 0.."):
        frame = load_events(run_dir)
    assert frame["seq"].tolist() == list(range(manifest["events"]))
    configured = frame[frame["kind"] == "task_configured"]
    assert configured["task"].tolist() == [0, 1]  # the refused record is not there, the earlier ones are whole
    assert frame["kind"].astype(str).iloc[-1] == "run_finished"


def test_a_full_disk_at_close_is_the_reported_error_and_earlier_parts_stay_readable(tmp_path, monkeypatch) -> None:
    real_close = EventLog.close

    def close_on_full_disk(self):
        def full(table, where, **options):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(events_module.pq, "write_table", full)
        return real_close(self)

    monkeypatch.setattr(EventLog, "close", close_on_full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        _run(tmp_path, "full")
    monkeypatch.undo()
    run_dir = tmp_path / "full"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "No space left on device" in manifest["error"]
    assert 0 < manifest["events_written"] < manifest["events"]
    check = verify_run(run_dir)
    # the parts written before close, and any checkpoint of the records whose part failed
    assert check.ok and check.events >= manifest["events_written"]
    assert manifest["events"] > check.complete_through + 1 >= manifest["events_written"]
    with pytest.warns(
        PartialRunWarning, match=r"run full is failed: loading seq 0\.\.\d+ \([\d,]+ events of [\d,]+ emitted"
    ):
        frame = load_events(run_dir)
    assert frame["seq"].tolist() == list(range(check.complete_through + 1))
    assert not [path for path in run_dir.rglob("*") if path.name.startswith(".")]  # no temporary file left


def _start_run(out: Path, tasks: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "flmarket.sim.cli", "run", "quickstart", "--tasks", str(tasks), "--quiet"]
        + ["--set", "providers.count=8", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for(condition, timeout_s: float = 240.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


@pytest.mark.slow
def test_sigterm_stops_the_run_as_interrupted_with_every_event_readable(tmp_path) -> None:
    process = _start_run(tmp_path, 100_000)
    _wait_for(lambda: any(tmp_path.glob("*/events/kind=*/*.parquet")))  # running, and the 2 s checkpoint came
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 143  # 128 + SIGTERM, as a shell reports it
    (run_dir,) = tmp_path.iterdir()
    manifest = load_manifest(run_dir)
    assert manifest["status"] == "interrupted" and manifest["events_written"] == manifest["events"] > 0
    with pytest.warns(PartialRunWarning, match="is interrupted"):
        frame = load_events(run_dir)
    assert frame["seq"].tolist() == list(range(manifest["events"]))


@pytest.mark.slow
def test_sigkill_loses_only_the_records_after_the_last_checkpoint(tmp_path) -> None:
    process = _start_run(tmp_path, 100_000)
    _wait_for(lambda: any(tmp_path.glob("*/events/kind=*/checkpoint-*-0001.parquet")))  # a second checkpoint
    process.kill()
    process.wait(timeout=60)
    (run_dir,) = tmp_path.iterdir()
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "running"
    assert load_manifest(run_dir)["status"] == "crashed"
    check = verify_run(run_dir)
    assert check.ok and check.status == "crashed" and check.first_seq == 0
    # the checkpoints hold every record up to the last complete checkpoint (the kill may cut the next one short)
    kept = check.complete_through + 1
    assert kept > 0 and check.events >= kept
    with pytest.warns(PartialRunWarning, match=rf"is crashed: loading seq 0\.\.{check.complete_through} "):
        frame = load_events(run_dir)
    assert frame["seq"].tolist() == list(range(kept))
    assert frame["kind"].astype(str).iloc[0] == "run_started"
    # A sweep whose LocalCluster was stopped marks such a cell interrupted, saying its log was never closed (sim/
    # sweep.py, _record_stopped): it loads the same rows. It used to be refused ("a checkpoint left in a run
    # that closed its log"), so the stopped cells of a dask sweep could not be read.
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (run_dir / "manifest.json").write_text(json.dumps(manifest | {"status": "interrupted"}))
    with pytest.raises(RunIntegrityError, match="a checkpoint left in a run that closed its log"):
        load_events(run_dir)
    (run_dir / "manifest.json").write_text(json.dumps(manifest | {"status": "interrupted", "log_closed": False}))
    with pytest.warns(PartialRunWarning, match=rf"is interrupted: loading seq 0\.\.{check.complete_through} "):
        assert load_events(run_dir)["seq"].tolist() == list(range(kept))


# ------------------------------------------------------------------------------------------------- provenance


def test_the_manifest_records_the_git_commit_and_the_process(run, tmp_path) -> None:
    manifest = load_manifest(run)
    package = Path(events_module.__file__).parent
    inside = subprocess.run(["git", "rev-parse", "HEAD"], cwd=package, capture_output=True, text=True)
    if inside.returncode == 0:  # the commit checked out when the run started: HEAD or one of its ancestors
        commit = manifest["git"]["commit"]
        assert re.fullmatch("[0-9a-f]{40}", commit) and isinstance(manifest["git"]["dirty"], bool)
        ancestor = ["git", "merge-base", "--is-ancestor", commit, inside.stdout.strip()]
        assert subprocess.run(ancestor, cwd=package).returncode == 0
    else:
        assert manifest["git"] is None
    assert git_commit(tmp_path) is None  # outside a checkout: no failure, no commit
    assert manifest["process"]["pid"] == os.getpid() and manifest["process"]["hostname"]
    assert manifest["versions"]["pyarrow"] == pa.__version__


def test_the_log_frame_and_the_loaded_frame_agree(run, pristine) -> None:
    """The in-memory path (`EventLog.to_arrow`) and the reader give the same frame for the same seed."""
    from flmarket.analysis.load import events_frame
    from flmarket.sim.model import MarketModel

    scenario = load_scenario("quickstart", {**SMALL, "run.seed": 3})
    model = MarketModel(scenario)
    model.run()
    model.log.emit(model.env.now, "run_finished", status="finished", tasks_finished=model.tasks_finished)
    in_memory = events_frame(model.log.to_arrow())
    loaded = load_events(pristine[0])
    assert list(in_memory["seq"]) == list(loaded["seq"])
    for name in ("time", "agent", "welfare", "reward", "strategy"):
        pdt.assert_series_equal(in_memory[name], loaded[name], check_dtype=False, check_categorical=False)


def test_the_verification_memo_keeps_the_most_recently_read_runs_only(pristine, tmp_path, monkeypatch) -> None:
    """The memo of verified runs had no bound: about 47 KiB for every run read in the process."""
    from flmarket.analysis import load as load_module

    runs = []
    for index in range(3):
        copy = tmp_path / f"copy-{index}"
        shutil.copytree(pristine[0], copy)
        runs.append(copy.resolve())
    verified: list[Path] = []
    real_verify = load_module.verify_run

    def counted_verify(path: Path) -> load_module.RunCheck:
        verified.append(path)
        return real_verify(path)

    monkeypatch.setattr(load_module, "verify_run", counted_verify)
    monkeypatch.setattr(load_module, "RUN_CHECKS_KEPT", 2)
    monkeypatch.setattr(load_module, "_CHECKS", load_module.OrderedDict())
    for run_dir in (runs[0], runs[1], runs[0], runs[2]):  # runs[0] read again, so runs[1] is the one forgotten
        load_module.checked_run(run_dir)
    assert verified == [runs[0], runs[1], runs[2]]  # the second read of runs[0] came from the memo
    assert list(load_module._CHECKS) == [runs[0], runs[2]]
    load_module.checked_run(runs[1])  # forgotten: verified again, and runs[0] is now the oldest
    assert verified[-1] == runs[1] and list(load_module._CHECKS) == [runs[2], runs[1]]


def test_coverage_of_a_live_run_whose_checkpoints_are_ahead_of_its_manifest() -> None:
    """A running run's timed checkpoints hold events its manifest (written at flushes) has not counted yet; the
    line read "145,470 events of 100,000 emitted", which looks like corruption."""
    from flmarket.analysis.load import RunCheck

    ahead = RunCheck("running", 145_470, (), (), expected_events=100_000, complete_through=145_469)
    assert ahead.coverage() == "seq 0..145469 (145,470 events; the manifest counted 100,000 when it was last written)"
    behind = RunCheck("crashed", 8_124, (), (), expected_events=9_000, complete_through=8_123)
    assert behind.coverage() == "seq 0..8123 (8,124 events of 9,000 emitted)"
    same = RunCheck("finished", 10, (), (), expected_events=10, complete_through=9)
    assert same.coverage() == "seq 0..9 (10 events)"
