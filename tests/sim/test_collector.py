"""The run's garbage-collector settings: frozen and raised inside, exactly restored outside."""

from __future__ import annotations

import contextlib
import gc

import pytest

from flmarket.sim.collector import collector_tuned
from flmarket.sim.config import load_scenario
from flmarket.sim.model import MarketModel


def test_inside_the_block_existing_objects_are_frozen_and_young_collections_are_rarer() -> None:
    before = gc.get_threshold()
    with collector_tuned(young_threshold=12_345):
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (max(12_345, before[0]), *before[1:])
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_settings_are_restored_when_the_block_raises() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError, match="boom"), collector_tuned():
        raise RuntimeError("boom")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_an_inner_block_leaves_the_outer_freeze_in_place() -> None:
    # A frozen object can still be freed by reference counting (here or on another thread), so the count may
    # fall between two reads; it can only rise if someone freezes again. Fresh tracked objects make a second
    # freeze visible, and an unfreeze would empty the permanent generation.
    with collector_tuned():
        frozen = gc.get_freeze_count()
        fresh = [[] for _ in range(10_000)]
        with collector_tuned():
            assert 0 < gc.get_freeze_count() <= frozen  # the inner block froze nothing of its own
        assert 0 < gc.get_freeze_count() <= frozen  # the inner exit did not unfreeze the outer block's objects
        assert len(fresh) == 10_000
    assert gc.get_freeze_count() == 0


def test_a_threshold_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="young_threshold: must be >= 1, got 0"), collector_tuned(0):
        pass


def test_a_run_restores_the_collector_and_gives_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = load_scenario("quickstart", {"providers.count": 12, "run.tasks": 2})
    seen: list[int] = []
    original = MarketModel.finish_task

    def finish_task(self: MarketModel, *args: object, **kwargs: object) -> object:
        seen.append(gc.get_freeze_count())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MarketModel, "finish_task", finish_task)
    before = gc.get_threshold()
    tuned = MarketModel(scenario)
    tuned.run()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    assert seen and all(count > 0 for count in seen)  # tasks ran with the model's objects frozen
    monkeypatch.setattr("flmarket.sim.model.collector_tuned", contextlib.nullcontext)
    plain = MarketModel(scenario)
    plain.run()
    assert (tuned.env.now, tuned.tasks_finished) == (plain.env.now, plain.tasks_finished)
    # the collector changes speed, never results (pandas equality counts NaN == NaN)
    assert tuned.log.to_arrow().to_pandas().equals(plain.log.to_arrow().to_pandas())
