"""SQL over runs and sweeps (DuckDB views per event kind) gives the numbers of the pandas path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from flmarket.analysis import query
from flmarket.analysis.load import RunIntegrityError, load_events
from flmarket.analysis.sweeps import cells_frame, load_sweep, sweep_summary
from flmarket.sim.cli import main
from flmarket.sim.sweep import parse_grid, run_sweep


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """A 2 x 2 sweep (providers.count 6 and 8, seeds 1 and 2) of 3 tasks each."""
    out = tmp_path_factory.mktemp("sweeps")
    grid = parse_grid(
        {
            "sweep": {"name": "g", "scenario": "quickstart", "seeds": [1, 2], "overrides": {"run.tasks": 3}},
            "grid": {"providers.count": [6, 8]},
        }
    )
    run_sweep(grid, workers=0, output_dir=out, show_progress=False)
    return out / "g"


def test_a_query_over_a_sweep_gives_the_numbers_of_the_pandas_path(sweep_dir) -> None:
    sql = """
        SELECT r.run_id, r.seed, r."providers.count" AS providers, count(*) AS tasks, avg(t.welfare) AS welfare,
               sum(t.total_participation) AS participation
        FROM task_finished t JOIN runs r USING (run_id)
        GROUP BY ALL ORDER BY r.run_id
    """
    result = query(sweep_dir, sql)
    events = load_sweep(sweep_dir, kinds=["task_finished"])
    expected = (
        events.groupby("run_id", observed=True)
        .agg(
            seed=("seed", "first"),
            providers=("providers.count", "first"),
            tasks=("welfare", "size"),
            welfare=("welfare", "mean"),
            participation=("total_participation", "sum"),
        )
        .reset_index()
        .sort_values("run_id")
    )
    assert len(result) == 4 and result["tasks"].tolist() == [3] * 4
    assert result["run_id"].tolist() == expected["run_id"].astype(str).tolist()
    assert result["seed"].tolist() == expected["seed"].tolist()
    assert result["providers"].tolist() == expected["providers"].tolist()
    assert result["welfare"].tolist() == pytest.approx(expected["welfare"].astype(float).tolist(), rel=1e-12)
    assert result["participation"].tolist() == expected["participation"].astype(int).tolist()
    summary = sweep_summary(sweep_dir).set_index("run_id")
    for row in result.itertuples():
        assert row.welfare == pytest.approx(summary.loc[row.run_id, "mean_welfare"], rel=1e-12)


def test_every_kind_is_a_view_and_its_counts_are_the_manifest_counts(sweep_dir) -> None:
    run_dir = Path(cells_frame(sweep_dir)["run_dir"].iloc[0])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for kind, count in manifest["events_by_kind"].items():
        assert query(run_dir, f"SELECT count(*) AS n FROM {kind}")["n"].iloc[0] == count
    rewards = query(run_dir, "SELECT task, round, sum(reward) AS total FROM reward_paid GROUP BY ALL ORDER BY ALL")
    frame = load_events(run_dir, kinds=["reward_paid"])
    by_round = frame.groupby(["task", "round"])["reward"].sum().reset_index()
    assert rewards["total"].tolist() == pytest.approx(by_round["reward"].astype(float).tolist(), rel=1e-12)
    # a kind the run never logged is an empty view with its columns
    stalled = query(run_dir, "SELECT * FROM consensus_stalled")
    assert stalled.empty and list(stalled.columns) == [
        "time",
        "seq",
        "kind",
        "agent",
        "task",
        "round",
        "waiting_for",
        "run_id",
    ]


def test_a_directory_of_runs_is_queried_like_a_sweep(sweep_dir, tmp_path) -> None:
    cells = cells_frame(sweep_dir)
    for run_dir in cells["run_dir"]:
        shutil.copytree(run_dir, tmp_path / Path(run_dir).name)
    by_directory = query(
        tmp_path, "SELECT run_id, avg(welfare) AS welfare FROM task_finished GROUP BY run_id ORDER BY 1"
    )
    by_sweep = query(sweep_dir, "SELECT run_id, avg(welfare) AS welfare FROM task_finished GROUP BY run_id ORDER BY 1")
    pd.testing.assert_frame_equal(by_directory, by_sweep)


def test_a_damaged_run_is_refused_before_any_query(sweep_dir, tmp_path, capsys) -> None:
    run_dir = Path(shutil.copytree(cells_frame(sweep_dir)["run_dir"].iloc[0], tmp_path / "run"))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (run_dir / "events" / manifest["parts"][0]).unlink()
    with pytest.raises(RunIntegrityError, match="listed in the manifest but missing") as caught:
        query(run_dir, "SELECT count(*) FROM task_finished")
    assert str(caught.value).startswith(f"{run_dir.resolve()}/events/")  # which run, among a sweep's many
    assert main(["query", str(run_dir), "SELECT 1"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_the_command_prints_the_result_and_bad_sql_is_one_line(sweep_dir, capsys) -> None:
    assert main(["query", str(sweep_dir), "SELECT count(*) AS tasks FROM task_finished", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["tasks", "12"]
    assert main(["query", str(sweep_dir), "SELECT no_such_column FROM task_finished"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flmarket: error: sql: ") and err.count("\n") == 1


@pytest.mark.parametrize("sql", ["", "   ", "-- only a comment"])
def test_sql_without_a_query_is_a_one_line_error(sweep_dir, sql, capsys) -> None:
    """These were an AttributeError traceback ('NoneType' object has no attribute 'df')."""
    assert main(["query", str(sweep_dir), sql]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flmarket: error: sql: ") and "returns no table" in err and err.count("\n") == 1


def test_an_unknown_view_lists_the_views_there_are(sweep_dir) -> None:
    with pytest.raises(ValueError, match="the views here are: .*action_chosen, .*runs, .*task_finished"):
        query(sweep_dir, "SELECT * FROM task_finishd")


def test_runs_lists_every_cell_of_a_sweep_and_a_sweep_without_events_says_so(tmp_path, monkeypatch) -> None:
    """The runs view had only the finished runs (sweep_summary has every cell); with none finished, a kind's
    view was missing and DuckDB's error did not say why."""
    import flmarket.sim.runner as runner_module

    real = runner_module.run_scenario

    def failing_with_eight(scenario, **kwargs):
        if scenario.providers.count == 8:
            raise RuntimeError("disk full")
        return real(scenario, **kwargs)

    monkeypatch.setattr(runner_module, "run_scenario", failing_with_eight)
    grid = {"sweep": {"name": "g", "scenario": "quickstart", "seeds": [1], "overrides": {"run.tasks": 1}}}
    run_sweep(parse_grid({**grid, "grid": {"providers.count": [6, 8]}}), workers=0, output_dir=tmp_path)
    runs = query(tmp_path / "g", "SELECT run_id, status, events, tasks_rejected FROM runs")
    summary = sweep_summary(tmp_path / "g")
    assert runs["run_id"].tolist() == summary["run_id"].astype(str).tolist()
    assert runs["status"].tolist() == ["finished", "failed"] and runs["events"].iloc[1] == 0
    assert runs["tasks_rejected"].iloc[0] == 0  # the manifest counts them (none here)
    run_sweep(parse_grid({**grid, "grid": {"providers.count": [8]}}), workers=0, output_dir=tmp_path / "none")
    with pytest.raises(ValueError, match="no run here has events to query, so there is only the runs view"):
        query(tmp_path / "none" / "g", "SELECT count(*) FROM task_finished")
    assert query(tmp_path / "none" / "g", "SELECT status FROM runs")["status"].tolist() == ["failed"]


def test_max_rows_takes_zero_for_every_row_and_refuses_negatives(sweep_dir, capsys) -> None:
    sql = "SELECT * FROM task_finished"
    with pytest.raises(SystemExit):
        main(["query", str(sweep_dir), sql, "--max-rows", "-1"])
    assert "--max-rows: must be an integer >= 0 (0: every row), got -1" in capsys.readouterr().err
    assert main(["query", str(sweep_dir), sql, "--max-rows", "0"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1 + 12  # the header and all 4 x 3 tasks


def test_the_sweep_summary_shows_a_bar_over_the_runs_on_a_terminal_only(sweep_dir, monkeypatch) -> None:
    """A sweep's report spent 7 - 16 s summarising its runs with nothing on the screen."""
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    quiet = sweep_summary(sweep_dir)
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    shown = sweep_summary(sweep_dir, show_progress=True)
    assert "summarising" in screen.getvalue() and "4/4" in screen.getvalue()
    pd.testing.assert_frame_equal(shown, quiet)
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    sweep_summary(sweep_dir, show_progress=True)
    assert piped.getvalue() == ""


@pytest.mark.parametrize(
    ("content", "said"),
    [("{not json", "not valid JSON"), ('{"name": "x"}', "not a sweep index"), ("[]", "not a sweep")],
)
def test_a_damaged_sweep_index_is_one_line_naming_the_file(sweep_dir, tmp_path, content, said, capsys) -> None:
    """An index without cells was a KeyError: 'cells' traceback; bad JSON said 'Expecting property name' only."""
    copy = tmp_path / "sweep"
    shutil.copytree(sweep_dir, copy)
    (copy / "sweep.json").write_text(content)
    for command in (
        ["query", str(copy), "SELECT * FROM runs"],
        ["report", str(copy), "--out", str(tmp_path / "r.html")],
    ):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"flmarket: error: {copy / 'sweep.json'}: {said}") and err.count("\n") == 1
    assert not (tmp_path / "r.html").exists()


def test_a_query_reads_only_the_runs_parts_and_runs_one_select(sweep_dir, tmp_path) -> None:
    """`COPY (...) TO` wrote files, read_csv_auto read any file, DROP VIEW printed pandas' empty frame with exit 0,
    and of several statements only the last one's rows came back."""
    target = tmp_path / "copied.csv"
    with pytest.raises(ValueError, match="sql: only queries are run .*got a COPY statement"):
        query(sweep_dir, f"COPY (SELECT 1) TO '{target}'")
    with pytest.raises(ValueError, match="sql: only queries are run .*got a DROP statement"):
        query(sweep_dir, "DROP VIEW task_finished")
    with pytest.raises(ValueError, match="sql: one query at a time, got 2 statements"):
        query(sweep_dir, "SELECT 1; SELECT 2")
    outside = tmp_path / "outside.csv"
    outside.write_text("a\n1\n")
    for sql in (f"SELECT * FROM read_csv_auto('{outside}')", "SELECT * FROM read_text('/etc/hostname')"):
        with pytest.raises(ValueError, match="sql: Permission Error"):
            query(sweep_dir, sql)
    with pytest.raises(ValueError, match="sql: only queries are run .*got a SET statement"):
        query(sweep_dir, "SET enable_external_access = true")
    assert not target.exists()
    assert query(sweep_dir, "DESCRIBE task_finished")["column_name"].tolist()[:4] == ["time", "seq", "kind", "agent"]


def test_an_empty_result_prints_its_columns_and_a_cut_table_says_how_many_rows(sweep_dir, capsys) -> None:
    assert main(["query", str(sweep_dir), "SELECT task, welfare FROM task_finished WHERE task < 0"]) == 0
    assert capsys.readouterr().out.splitlines() == ["task  welfare", "(0 rows)"]
    assert main(["query", str(sweep_dir), "SELECT task FROM task_finished", "--max-rows", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "(12 rows; 4 shown, from the start and the end; --max-rows 0 shows every row)"
    assert len(lines) == 1 + 4 + 1 + 1  # header, 2 + 2 rows, pandas' "..." line, the count


def test_a_connection_asked_for_writes_can_copy_a_result(sweep_dir, tmp_path) -> None:
    from flmarket.analysis.query import connect

    target = tmp_path / "welfare.csv"
    connection = connect(sweep_dir, read_only=False)
    connection.execute(f"COPY (SELECT count(*) AS tasks FROM task_finished) TO '{target}' (HEADER)")
    connection.close()
    assert target.read_text().splitlines() == ["tasks", "12"]
