"""A short soak in the suite (the long one is `python benchmarks/soak.py`): the seed that crashed the default
scenario at task 101 (issue 13), Byzantine committees beyond f that must stall rather than crash, and a few seeds
of every bundled scenario."""

from __future__ import annotations

import pytest

from flmarket.analysis.load import events_frame
from flmarket.sim.config import bundled_scenarios, load_scenario
from flmarket.sim.model import MarketModel


def _run(name: str, overrides: dict[str, object]) -> MarketModel:
    model = MarketModel(load_scenario(name, overrides))
    model.run()
    return model


@pytest.mark.slow
def test_the_default_scenario_survives_the_view_change_that_crashed_seed_6_at_task_101() -> None:
    model = _run("quickstart", {"run.seed": 6, "run.tasks": 110})
    assert model.tasks_finished == 110


@pytest.mark.slow
@pytest.mark.parametrize(("members", "behaviour"), [(3, "wrong_digest"), (6, "silent_primary"), (6, "equivocating")])
def test_byzantine_members_beyond_f_stall_consensus_instead_of_crashing(members: int, behaviour: str) -> None:
    model = _run(
        "quickstart",
        {"run.tasks": 3, "faults.byzantine_committee": members, "faults.byzantine_behaviour": behaviour},
    )
    frame = events_frame(model.log.to_arrow())
    stalled = frame[frame.kind == "consensus_stalled"]
    assert model.tasks_finished == 3
    assert len(stalled) >= 1
    assert stalled.waiting_for.str.len().min() > 0  # it says what the committee was waiting for


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(bundled_scenarios()))
@pytest.mark.parametrize("seed", [2])
def test_bundled_scenarios_run_short_soaks_without_a_crash(name: str, seed: int) -> None:
    overrides: dict[str, object] = {"run.seed": seed, "run.tasks": 10}
    if load_scenario(name).learning.backend == "torch":  # real training: fewer rounds keep the suite short
        overrides |= {"run.tasks": 2, "learning.rounds_per_task": 10}
    model = _run(name, overrides)
    assert model.tasks_finished == overrides["run.tasks"]
