"""The run's collector policy (sim/collector.py: existing objects frozen, young collections every 20,000 net
allocations) is safe: unreachable objects do not pile up as tasks go by.

Why they cannot: CPython collects the young generation whenever the tracked objects allocated and not yet
freed since the last collection exceed its threshold, so cyclic garbage waits for at most that many net
allocations; older generations are collected every 10 young collections, as by default. Freezing only moves
the objects alive at the start to the permanent generation, which no collection scans. The control run with
the collector off shows that the measurement sees growth when there is some.
"""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Iterator

import pytest

from flmarket.sim.collector import YOUNG_GENERATION_THRESHOLD
from flmarket.sim.config import load_scenario
from flmarket.sim.model import MarketModel

TASKS = 40  # at 60 providers about 1,000 tracked objects a task: two young collections' worth under the policy


def garbage_over_a_run() -> tuple[list[int], int, int]:
    """Objects the collector tracks (live or garbage) as each task ends, what a full collection finds
    unreachable at the end of the run (still under the run's collector settings), and the young collections
    that ran."""
    scenario = load_scenario(
        "quickstart",
        {
            "providers.count": 60,
            "run.tasks": TASKS,
            "providers.arrival_rate_per_s": 0.0,
            "providers.mean_lifetime_s": math.inf,
        },
    )
    model = MarketModel(scenario)
    tracked: list[int] = []
    unreachable: list[int] = []
    young_before = gc.get_stats()[0]["collections"]

    def at_task_end(_now: float, tasks: int) -> None:
        if tasks <= len(tracked):
            return
        tracked.append(len(gc.get_objects()))  # the permanent (frozen) generation is not listed
        if tasks == TASKS:
            unreachable.append(gc.collect())

    model.run(at_task_end)
    assert len(tracked) == TASKS
    return tracked, unreachable[0], gc.get_stats()[0]["collections"] - young_before - 1


@pytest.mark.slow
def test_unreachable_objects_stay_within_one_young_threshold_over_a_tuned_run() -> None:
    tracked, unreachable, young_collections = garbage_over_a_run()
    assert young_collections >= 1  # the run went through at least one collection cycle
    # What the collector tracks beyond the first tasks' level never exceeds one young threshold: garbage is
    # reclaimed as the run goes, though the tasks' garbage together is about twice that.
    assert max(tracked) - min(tracked[:5]) <= YOUNG_GENERATION_THRESHOLD, tracked
    # After 40 tasks a full collection finds less than one young threshold unreachable; nothing is uncollectable.
    assert unreachable <= YOUNG_GENERATION_THRESHOLD
    assert gc.garbage == []


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.slow
def test_with_the_collector_off_the_same_measurement_sees_garbage_grow(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: the measurement above does see growth when garbage is never collected."""
    monkeypatch.setattr("flmarket.sim.model.collector_tuned", collector_off)
    tracked, unreachable, _ = garbage_over_a_run()
    assert tracked[-1] - tracked[0] > YOUNG_GENERATION_THRESHOLD
    assert unreachable > YOUNG_GENERATION_THRESHOLD
