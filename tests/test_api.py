"""`import flmarket as fm`: the library API is lazy, complete, and gives the same numbers as the layers below."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import flmarket as fm

SMALL = {"run.tasks": 3, "providers.count": 10}


def test_importing_flmarket_imports_nothing_heavy() -> None:
    code = (
        "import sys, flmarket\n"
        "heavy = ('pandas', 'numpy', 'pyarrow', 'scipy', 'mesa', 'simpy', 'dask', 'torch', 'pydantic', 'flmarket.')\n"
        "print(sorted(name for name in sys.modules if name.startswith(heavy)))\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert completed.stdout.strip() == "[]"


def test_every_public_name_resolves_and_unknown_names_fail() -> None:
    for name in fm.__all__:
        assert getattr(fm, name) is not None, name
        assert name in dir(fm)
    from flmarket.analysis.load import load_events
    from flmarket.sim.model import MarketModel

    assert fm.load_events is load_events and fm.MarketModel is MarketModel
    assert fm.run.__doc__ and fm.sweep.__doc__ and fm.Run.__doc__ and fm.Sweep.__doc__
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        fm.nothing  # noqa: B018
    assert "quickstart" in fm.scenarios() and "population_mix" in fm.grids()


def test_run_returns_its_directory_summary_and_events(tmp_path) -> None:
    run = fm.run("quickstart", seed=7, overrides=SMALL, out=tmp_path)
    assert isinstance(run, fm.Run) and run.directory.parent == tmp_path and run.status == "finished"
    manifest = json.loads((run.directory / "manifest.json").read_text())
    assert manifest["seed"] == 7 and manifest["scenario"]["providers"]["count"] == 10
    tasks = run.events(kinds=["task_finished"])
    assert set(tasks["kind"].astype(str)) == {"task_finished"} and len(tasks) == 3
    assert run.summary["tasks"] == 3
    assert run.summary["mean_welfare"] == pytest.approx(tasks["welfare"].astype(float).mean(), rel=1e-12)
    assert run.summary == fm.run_summary(run.directory)
    assert run.tasks()["welfare"].tolist() == tasks["welfare"].astype(float).tolist()
    assert len(run.events()) == manifest["events"]
    # the same seed gives the same events; the Mesa model stepped three times gives the same welfare
    again = fm.run("quickstart", seed=7, overrides=SMALL, out=tmp_path / "again")
    pd.testing.assert_frame_equal(again.events(), run.events())
    model = fm.MarketModel(seed=7, **SMALL)
    for _ in range(3):
        model.step()
    assert model.welfare_history == tasks["welfare"].astype(float).tolist()
    assert fm.open_run(run.directory).summary == run.summary


def test_bad_input_raises_one_line_and_writes_nothing(tmp_path) -> None:
    with pytest.raises(fm.ScenarioError, match="providers.count") as caught:
        fm.run("quickstart", overrides={"providers.count": 0}, out=tmp_path / "out")
    assert len(str(caught.value).splitlines()) == 1
    assert not (tmp_path / "out").exists()
    with pytest.raises(fm.GridError, match="seeds: a count must be in 1..10,000, got 0"):
        fm.sweep("population_mix", seeds=0, out=tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        fm.open_run(tmp_path)


def test_a_scenario_object_is_validated_again_and_takes_overrides_as_its_file_would(tmp_path) -> None:
    """A Scenario changed with pydantic's model_copy(update=...) skipped every check: fm.run wrote a 'finished' run
    of run.tasks = -5 and MarketModel built it. And an override of a prior's dist failed on a Scenario (its dump
    carried the default's `value`) where it worked on the scenario's name."""
    valid = fm.Scenario(run={"tasks": 5, "seed": 1})
    broken = valid.model_copy(update={"run": valid.run.model_copy(update={"tasks": -5})})
    said = r"^run\.tasks: input should be greater than or equal to 1, got -5$"
    with pytest.raises(fm.ScenarioError, match=said):
        fm.run(broken, out=tmp_path)
    with pytest.raises(fm.ScenarioError, match=said):
        fm.MarketModel(broken)
    assert list(tmp_path.iterdir()) == []
    uniform = {"providers.privacy_budget.dist": "uniform", "providers.privacy_budget.low": 1.0}
    uniform["providers.privacy_budget.high"] = 2.0
    assert fm.load(fm.load("quickstart"), uniform) == fm.load("quickstart", uniform)
    for name in fm.scenarios():  # validating again changes nothing
        assert fm.load(fm.load(name)) == fm.load(name)


def test_a_run_s_manifest_scenario_loads_back_to_the_scenario_it_ran(tmp_path) -> None:
    """The manifest writes providers.mean_lifetime_s = inf (no churn, the default) as "inf", which the schema
    refused ("must be a number, got 'inf'"); pydantic's own JSON round trip wrote it as null."""
    from flmarket.sim.config import parse_scenario

    run = fm.run("mmzd-fig3", seed=1, overrides={"run.tasks": 1}, out=tmp_path)
    assert run.manifest["scenario"]["providers"]["mean_lifetime_s"] == "inf"
    assert parse_scenario(run.manifest["scenario"]) == fm.load("mmzd-fig3", {"run.tasks": 1, "run.seed": 1})
    for name in fm.scenarios():
        scenario = fm.load(name)
        assert parse_scenario(scenario.to_dict()) == scenario
        assert fm.Scenario.model_validate_json(scenario.model_dump_json()) == scenario


def test_numpy_values_work_wherever_python_values_do(tmp_path) -> None:
    """np.int64 was refused by the strict schema in overrides, batch_run grids and sweep grids (`np.arange`)."""
    from mesa.batchrunner import batch_run

    assert fm.load("quickstart", {"providers.count": np.int64(20)}).providers.count == 20
    counts = {"ALLC": np.int64(4), "ALLD": np.int64(2)}
    assert fm.load("mmzd-fig3", {"providers.strategy_counts": counts}).providers.strategy_counts == {
        "ALLC": 4,
        "ALLD": 2,
    }
    rows = batch_run(fm.MarketModel, {"seed": np.arange(1, 3), "run.tasks": 2}, max_steps=1, display_progress=False)
    assert sorted(row["seed"] for row in rows if row["Step"] == 1) == [1, 2]
    grid = {"sweep": {"name": "np", "scenario": "quickstart", "seeds": [1], "overrides": {"run.tasks": 1}}}
    planned = fm.sweep({**grid, "grid": {"providers.count": np.array([6, 8])}}, workers=0, out=tmp_path)
    assert sorted(planned.cells()["providers.count"].tolist()) == [6, 8]


def test_misused_arguments_name_the_argument_not_a_command_line_option(tmp_path) -> None:
    """Each argument is checked up front, and the error names it as the Python call spells it."""
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(NotADirectoryError, match="out: must be a folder, got .*a_file'?, which is a file"):
        fm.run("quickstart", overrides=SMALL, out=a_file)
    with pytest.raises(TypeError, match="out: must be a folder path"):
        fm.run("quickstart", overrides=SMALL, out=3)
    for scenario in (None, 3):  # "got 'None'" used to come from the bundled-name lookup
        with pytest.raises(TypeError, match=r"^scenario: must be a bundled name, a TOML file's path or a Scenario"):
            fm.run(scenario, out=tmp_path / "out")  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()
    with pytest.raises(fm.ScenarioError, match="overrides: keys must be dotted paths .* got 1"):
        fm.run("quickstart", overrides={1: 2}, out=tmp_path / "out")
    for seeds in (2.0, True, "3"):
        with pytest.raises(fm.GridError, match="seeds: must be a count"):
            fm.sweep("population_mix", seeds=seeds, out=tmp_path / "out")
    with pytest.raises(
        fm.GridError, match=r"^overrides providers.strategy_mix: the grid varies this key; .* from overrides$"
    ):
        fm.sweep("population_mix", overrides={"providers.strategy_mix": {"ALLC": 1.0}}, out=tmp_path / "out")
    with pytest.raises(fm.GridError, match=r"seeds: every seed must be an integer in 0..2\*\*63 - 1, got -1"):
        fm.sweep("population_mix", seeds=[-1], out=tmp_path / "out")
    with pytest.raises(fm.GridError, match='grid: keys must be dotted paths such as "providers.count", got 1'):
        fm.sweep({"sweep": {"name": "g", "scenario": "quickstart", "seeds": [1]}, "grid": {1: [3]}}, out=tmp_path)
    with pytest.raises(NotADirectoryError, match="out: must be a folder"):
        fm.sweep("population_mix", out=a_file)
    with pytest.raises(NotADirectoryError, match="out: must be a folder, got .*inside', whose parent .*a_file' is a"):
        fm.run("quickstart", overrides=SMALL, out=a_file / "inside")
    assert not (tmp_path / "out").exists()
    run = fm.run("quickstart", overrides={**SMALL, "run.tasks": 1}, out=tmp_path / "runs")
    with pytest.raises(ValueError, match="kinds: must be a list of kind names, got the string 'task_finished'"):
        run.events(kinds="task_finished")  # was split into letters: "unknown kind 't'"
    with pytest.raises(ValueError, match="kinds: must be a list of kind names, got 5"):
        run.events(kinds=5)  # type: ignore[arg-type]
    summary = pd.DataFrame({"providers.count": [3, 3, 6], "label": ["a", "b", "c"], "mean_welfare": [1.0, 2.0, 3.0]})
    with pytest.raises(
        ValueError,
        match="metric: must be a numeric column, got 'label' .*numeric columns: providers.count, mean_welfare",
    ):
        fm.by_parameter(summary, "providers.count", "label")
    with pytest.raises(ValueError, match="metric: not a column of the summary, got 'mean_welfar' .*mean_welfare"):
        fm.by_parameter(summary, "providers.count", "mean_welfar")
    with pytest.raises(TypeError, match="summary: must be a pandas DataFrame .* got list"):
        fm.by_parameter([], "providers.count", "mean_welfare")  # type: ignore[arg-type]


def test_overrides_grids_directories_and_interval_values_of_the_wrong_type_are_named(tmp_path) -> None:
    """These were 'dictionary update sequence element #0 has length 1', "'str' object has no attribute 'items'",
    pathlib's 'expected str, bytes or os.PathLike object, not int' and "'numpy.ndarray' object has no attribute
    'notna'"; a list of pairs as overrides ran silently, and numpy integer seeds were refused as not integers."""
    for overrides in ("run.tasks=2", [("run.tasks", 2)]):
        with pytest.raises(TypeError, match=r"^overrides: must map dotted paths to values, e\.g\. \{'run\.tasks'"):
            fm.run("quickstart", overrides=overrides, out=tmp_path / "out")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"^overrides: must map dotted paths to values"):
            fm.load("quickstart", overrides)  # type: ignore[arg-type]
    for grid in (5, None):
        with pytest.raises(TypeError, match=r"^grid: must be a bundled grid's name, a TOML file's path, a dict"):
            fm.sweep(grid, out=tmp_path / "out")  # type: ignore[arg-type]
    for opener in (fm.open_run, fm.open_sweep):
        with pytest.raises(TypeError, match=r"^directory: must be a path \(str or pathlib.Path\), got int 5"):
            opener(5)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()
    assert fm.confidence_interval([1.0, 2.0, 3.0]) == fm.confidence_interval(pd.Series([1.0, 2.0, 3.0]))
    assert fm.confidence_interval(np.array([1.0, 2.0, 3.0, np.nan]))[2] == 3  # a missing value is left out
    with pytest.raises(ValueError, match="values: must be numbers"):
        fm.confidence_interval(pd.Series(["1", "x", "3"]))  # 'x' was dropped without a word
    run = fm.run("quickstart", seed=np.int64(3), overrides={**SMALL, "run.tasks": 1}, out=tmp_path / "runs")
    assert fm.load_manifest(run.directory)["seed"] == 3


@pytest.mark.slow
def test_sweep_returns_tidy_cells_and_summary_and_resumes(tmp_path) -> None:
    grid = {
        "sweep": {"name": "mix", "scenario": "quickstart", "seeds": [1], "overrides": SMALL},
        "cells": [
            {"label": "cooperators", "overrides": {"providers.strategy_mix": {"ALLC": 0.8, "ALLD": 0.2}}},
            {"label": "defectors", "overrides": {"providers.strategy_mix": {"ALLC": 0.2, "ALLD": 0.8}}},
        ],
    }
    sweep = fm.sweep(grid, seeds=[1, 2], workers=0, out=tmp_path)
    assert isinstance(sweep, fm.Sweep) and sweep.directory == tmp_path / "mix" and len(sweep.executed) == 4
    cells = sweep.cells()
    assert len(cells) == 4 and sorted(cells["seed"]) == [1, 1, 2, 2]
    assert sorted(cells["providers.strategy_mix.ALLD"]) == [0.2, 0.2, 0.8, 0.8]
    summary = sweep.summary()
    assert len(summary) == 4 and summary["tasks"].tolist() == [3.0] * 4
    for _, row in summary.iterrows():  # each row's welfare is that run's
        assert row["mean_welfare"] == pytest.approx(fm.run_summary(row["run_dir"])["mean_welfare"], rel=1e-12)
    table = fm.by_parameter(summary, "providers.strategy_mix.ALLD", "mean_welfare")
    assert table["runs"].tolist() == [2, 2]
    events = sweep.events(kinds=["task_finished"])
    assert len(events) == 4 * 3 and set(events["label"]) == {"cooperators", "defectors"}
    assert [run.summary["tasks"] for run in sweep.runs()] == [3] * 4
    assert not fm.sweep(grid, seeds=[1, 2], workers=0, out=tmp_path).executed  # resumed: nothing to run
    counted = fm.sweep(grid, seeds=1, overrides={"run.tasks": 2}, workers=0, out=tmp_path / "counted")
    assert sorted(counted.cells()["seed"]) == [0, 0]
    assert fm.open_sweep(counted.directory).summary()["tasks"].tolist() == [2.0, 2.0]


# ------------------------------------------------------------------------------------------ the example notebook


def _builder():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "build_notebook.py"
    spec = importlib.util.spec_from_file_location("build_notebook", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_example_notebook_does_its_three_jobs_through_import_flmarket(tmp_path) -> None:
    """examples/market_study.ipynb, executed with nbclient in a fresh kernel (or, if no kernel can start here,
    its code cells as one script in a fresh interpreter)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    builder = _builder()
    committed = nbformat.read(builder.NOTEBOOK, as_version=4)
    built = builder.build()
    assert [cell.source for cell in committed.cells] == [cell.source for cell in built.cells]  # rebuilt, not edited
    code = "\n".join(cell.source for cell in committed.cells if cell.cell_type == "code")
    assert "import flmarket as fm" in code and "from flmarket." not in code and "import flmarket." not in code

    client = NotebookClient(
        committed, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    try:
        client.execute()
        text = "\n".join(
            output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
            for cell in committed.cells
            if cell.cell_type == "code"
            for output in cell.outputs
        )
        assert not any(output.output_type == "error" for cell in committed.cells for output in cell.get("outputs", []))
    except CellExecutionError:
        raise
    except Exception as error:  # noqa: BLE001 - no kernel here: run the same code as a script
        import warnings

        warnings.warn(f"no Jupyter kernel ({type(error).__name__}: {error}); ran the cells as a script", stacklevel=1)
        completed = subprocess.run(
            [sys.executable, "-c", builder.script()],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            env={**__import__("os").environ, "MPLBACKEND": "Agg"},
            check=False,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        text = completed.stdout
    # job 1: three mixes x two seeds, finished, with a confidence interval per mix
    index = json.loads((tmp_path / "example-output" / "sweeps" / "population_mix" / "sweep.json").read_text())
    assert len(index["cells"]) == 6 and {cell["status"] for cell in index["cells"].values()} == {"finished"}
    assert "half_width" in text and "runs" in text
    # job 2: one long evolution run, its warm-up and verdict
    (run_dir,) = (tmp_path / "example-output" / "runs").iterdir()
    assert fm.open_run(run_dir).summary["tasks"] == 200
    assert "warm-up: the first" in text and "(95%, batch means)" in text
    # job 3: the event log with pandas
    assert "events of" in text and "correlation of mean participation and welfare" in text
