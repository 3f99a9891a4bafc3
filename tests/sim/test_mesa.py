"""MarketModel as a Mesa citizen: keyword construction, one DataCollector row per step, and `mesa.batch_run`
rows that agree with `flmarket run` for the same seed and number of tasks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from mesa.batchrunner import batch_run

from flmarket.analysis.load import load_events
from flmarket.sim.cli import main
from flmarket.sim.config import ScenarioError, load_scenario
from flmarket.sim.model import MarketModel

SMALL = {"providers.count": 10, "run.tasks": 10}


def flmarket_run(tmp_path: Path, seed: int, tasks: int) -> tuple[int, float]:
    """`flmarket run --seed S --tasks N --set providers.count=10`: tasks finished and mean welfare per task."""
    out = tmp_path / f"run-{seed}-{tasks}"
    assert (
        main(
            [
                "run",
                "--seed",
                str(seed),
                "--tasks",
                str(tasks),
                "--set",
                "providers.count=10",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    (run_dir,) = [path for path in out.iterdir() if path.is_dir()]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    welfare = load_events(run_dir, kinds=["task_finished"])["welfare"].astype(float)
    return manifest["tasks_finished"], float(welfare.mean())


def test_keyword_construction_is_the_scenario_with_overrides() -> None:
    model = MarketModel(scenario="quickstart", seed=3, **{"providers.count": 12, "run.tasks": 4})
    expected = load_scenario("quickstart", {"run.seed": 3, "providers.count": 12, "run.tasks": 4})
    assert model.scenario == expected and model.scenario.run.seed == 3
    assert MarketModel(expected).scenario == expected  # validated again (a model_copy skipped the checks)
    assert MarketModel(expected, overrides={"run.tasks": 2}).scenario.run.tasks == 2
    assert MarketModel().scenario.run.name == "quickstart"
    with pytest.raises(ScenarioError, match="providers.count"):
        MarketModel(**{"providers.count": 0})


def test_the_datacollector_has_one_row_per_step_after_the_initial_one() -> None:
    model = MarketModel(seed=7, **SMALL)
    for _ in range(3):
        model.step()
    table = model.datacollector.get_model_vars_dataframe()
    assert len(table) == 4 and table["tasks_finished"].tolist() == [0, 1, 2, 3]
    assert table["time"].iloc[0] == 0.0 and table["time"].is_monotonic_increasing
    assert math.isnan(table["mean_welfare"].iloc[0])
    welfare = model.welfare_history
    assert table["last_welfare"].iloc[1:].tolist() == welfare
    assert table["mean_welfare"].iloc[3] == pytest.approx(sum(welfare) / 3, rel=1e-12)
    shares = table[[name for name in table.columns if name.startswith("share_")]]
    assert (shares.sum(axis=1) - 1.0).abs().max() < 1e-12  # the shares of the scenario's strategies add up to 1


def test_share_reporters_cover_every_strategy_played_not_only_the_mutation_set() -> None:
    """A helper's `evolution` model with evolution.strategy_set = [ALLC, ALLD] had share_ALLC and share_ALLD only,
    summing to 0.35, while Rand, TFT and MMZDA providers played (and strategy_share events named them all)."""
    model = MarketModel("evolution", seed=1, **{"run.tasks": 3, "evolution.strategy_set": ["ALLC", "ALLD"]})
    model.step()
    table = model.datacollector.get_model_vars_dataframe()
    shares = table[[name for name in table.columns if name.startswith("share_")]]
    played = {provider.strategy_label for provider in model.online_providers.values()}
    assert {f"share_{name}" for name in played} <= set(shares.columns)
    assert set(shares.columns) == {f"share_{name}" for name in model.strategies_played}
    assert (shares.sum(axis=1) - 1.0).abs().max() < 1e-12
    assert model.strategy_set == ("ALLC", "ALLD")  # mutations still draw from the set given


def test_the_view_legend_names_a_registered_strategy(monkeypatch) -> None:
    """The live view's overlay legend listed only the built-in strategies' colours."""
    from flmarket.sim.view.charts import overlay_chart
    from flmarket.sim.view.session import ViewSession, ViewSettings

    state = ViewSession(ViewSettings("quickstart")).state()
    node = next(node for node in state["overlay"]["nodes"] if node["strategy"] != "committee")
    node["strategy"], node["online"] = "WSLS", True
    assert ">WSLS<" in overlay_chart(state)
    assert ">WSLS<" not in overlay_chart(ViewSession(ViewSettings("quickstart")).state())


@pytest.mark.slow
def test_batch_run_rows_match_flmarket_run_for_the_same_seed(tmp_path) -> None:
    rows = batch_run(
        MarketModel,
        parameters={"scenario": "quickstart", "seed": [7, 8], **SMALL},
        iterations=1,
        max_steps=2,  # batch_run steps while steps <= max_steps: 3 steps, rows for Step 0, 1, 2
        number_processes=1,
        data_collection_period=1,
        display_progress=False,
    )
    assert len(rows) == 2 * 3
    for row in rows:
        assert row["tasks_finished"] == row["Step"]  # one task per step
        assert row["providers.count"] == 10 and row["scenario"] == "quickstart"
        if row["Step"] == 0:
            assert row["time"] == 0.0 and math.isnan(row["mean_welfare"])
            continue
        tasks, mean_welfare = flmarket_run(tmp_path, row["seed"], row["Step"])
        assert tasks == row["tasks_finished"]
        assert row["mean_welfare"] == pytest.approx(mean_welfare, rel=1e-12)
    by_seed = {(row["seed"], row["Step"]): row["mean_welfare"] for row in rows}
    assert by_seed[(7, 2)] != by_seed[(8, 2)]  # the seed reaches the model


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="mesa#2514 (Mesa 3.3): batch_run reports Steps 0..model.steps - 1, so the last task's row is missing "
    "when the model ends by itself; fixed in a later Mesa: then drop this mark and the README's note",
)
def test_batch_run_reports_the_last_task_when_the_model_ends_by_itself() -> None:
    rows = batch_run(
        MarketModel,
        parameters={"scenario": "quickstart", "seed": 7, **SMALL, "run.tasks": 3},
        iterations=1,
        max_steps=10,
        number_processes=1,
        data_collection_period=1,
        display_progress=False,
    )
    assert [row["tasks_finished"] for row in rows] == [0, 1, 2, 3]


def test_a_finished_model_is_freed_and_agents_keep_mesas_numbering() -> None:
    """Mesa 3.3.1 numbers agents from `Agent._ids`, a defaultdict keyed by the model, so every model built in a
    process stayed alive with all its agents (mesa#3179): 132,000 objects and 38 MiB more per 10,000-provider model
    in a loop. flmarket's agents number themselves from a weakly keyed map: the same numbers, and the model goes."""
    import gc
    import weakref

    import mesa

    from flmarket.agents.base import MarketAgent

    def run_one() -> tuple[weakref.ref, list[int]]:
        model = MarketModel(load_scenario("quickstart", {"providers.count": 12, "run.tasks": 2}))
        model.run()
        ids = sorted(agent.unique_id for agent in model.agents)
        return weakref.ref(model), ids

    gc.collect()
    alive_before = len(MarketAgent._ids)  # models other tests in this process keep (the suite runs on workers)
    first, first_ids = run_one()
    second, second_ids = run_one()
    gc.collect()
    assert first() is None and second() is None
    assert len(MarketAgent._ids) == alive_before  # neither model left its numbering behind
    # Mesa's own numbering: 1, 2, 3, ... per model across every agent class, restarting for a new model
    assert first_ids == second_ids and first_ids[0] == 1 and len(set(first_ids)) == len(first_ids)
    assert MarketAgent._ids is not mesa.Agent._ids
