"""The simulator's evolution processes (SPEC C; `evolution.process`, `evolution.graph`): the pairwise comparison
process of Traulsen, Pacheco & Nowak (2006) run by MarketModel._evolve against its closed-form fixation
probability, one focal provider per task in a real run, the complete graph against the overlay, determinism and
the scenario's validation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
from statsmodels.stats.proportion import proportion_confint

from flmarket.agents.provider import DataProvider
from flmarket.analysis.load import events_frame
from flmarket.market.evolution import fixation_probability
from flmarket.sim.config import ScenarioError, load_scenario
from flmarket.sim.events import NO_AGENT
from flmarket.sim.model import MarketModel

# A homogeneous two-strategy market: every provider has rho = 1 and kappa at 0.15 of the SPEC B.2 window, so the
# public-goods payoffs depend only on how many play ALLC (R rounds) and how many ALLD (none).
HOMOGENEOUS = {
    "providers.arrival_rate_per_s": 0.0,
    "providers.mean_lifetime_s": math.inf,
    "providers.unit_revenue": 1.0,
    "providers.participation_cost": {"window_position": 0.15},
    "providers.strategy_mix": {"ALLC": 0.5, "ALLD": 0.5},
    "providers.composition": "exact",
    "evolution.strategy_set": ["ALLC", "ALLD"],
    "evolution.mutation_rate": 0.0,
    "mechanism.reward_weight": 0.0,
    "committee.verification": "unsigned",
}
PLAYERS = 8


def _model(overrides: dict) -> MarketModel:
    return MarketModel(load_scenario("evolution", {**HOMOGENEOUS, **overrides}))


def _events(overrides: dict) -> tuple[MarketModel, pd.DataFrame]:
    model = _model(overrides)
    model.run()
    return model, events_frame(model.log.to_arrow())


def _actions(model: MarketModel, labels: list[str]) -> list[int]:
    return [model.rounds_per_task if label == "ALLC" else 0 for label in labels]


def _payoff_gap(model: MarketModel) -> float:
    """pi_ALLD - pi_ALLC in the model's own game (constant in the number of defectors: kappa * R)."""
    players = list(model.online_providers.values())
    return float(model.game_of(players).unit_cost[0] * model.rounds_per_task)


def _fixates(model: MarketModel, players: list[DataProvider], invader: str, resident: str, position: int) -> bool:
    """One invader at `position` among residents; the model's _evolve runs on the game's utilities of the current
    strategies (what finish_task pays when everyone realises its action) until one strategy is left."""
    for index, provider in enumerate(players):
        label = invader if index == position else resident
        provider.set_strategy(label, model._make_strategy(label))
    game = model.game_of(players)
    while True:
        labels = [provider.strategy_label for provider in players]
        invaders = labels.count(invader)
        if invaders in (0, len(players)):
            return invaders == len(players)
        utilities = game.utilities(_actions(model, labels))
        model._evolve(players, [float(utility) for utility in utilities])


@pytest.mark.parametrize(("invader", "resident"), [("ALLD", "ALLC"), ("ALLC", "ALLD")])
@pytest.mark.parametrize("selection", [0.1, 0.5, 1.5])
def test_the_models_pairwise_process_fixates_as_the_closed_form_says(
    invader: str, resident: str, selection: float
) -> None:
    probe = _model({"providers.count": PLAYERS})
    gap = _payoff_gap(probe)
    beta = selection / gap  # beta * |pi_ALLD - pi_ALLC| = selection; the scenario's kappa_select is 1 / beta
    model = _model(
        {
            "providers.count": PLAYERS,
            "evolution.process": "pairwise",
            "evolution.graph": "complete",
            "evolution.selection_intensity": 1.0 / beta,
        }
    )
    players = list(model.online_providers.values())
    game = model.game_of(players)
    # the theory's input, from the game itself: pi_invader(j) - pi_resident(j) with j invaders
    differences = []
    for count in range(1, PLAYERS):
        utilities = game.utilities(_actions(model, [invader] * count + [resident] * (PLAYERS - count)))
        differences.append(float(utilities[0] - utilities[-1]))
    assert differences == pytest.approx([gap if invader == "ALLD" else -gap] * (PLAYERS - 1))
    theory = fixation_probability(differences, beta)
    rng = np.random.default_rng(int(selection * 10) + 100 * (invader == "ALLD"))
    trials = 1500
    fixed = sum(_fixates(model, players, invader, resident, int(rng.integers(PLAYERS))) for _ in range(trials))
    low, high = proportion_confint(fixed, trials, alpha=0.01, method="wilson")
    assert low <= theory <= high, (fixed / trials, theory)
    if selection >= 0.5:  # not neutral drift: 1 / N lies outside the interval
        assert not low <= 1 / PLAYERS <= high
    # every change went through the log: one strategy_switched per imitation, none by mutation
    frame = events_frame(model.log.to_arrow())
    switched = frame[frame["kind"] == "strategy_switched"]
    assert len(switched) > 0 and set(switched["reason"]) == {"imitation"}


# ------------------------------------------------------------------ the pairwise process in a running market

RUN = {"providers.count": 16, "run.tasks": 60, "evolution.selection_intensity": 0.002}


def _switches_by_task(frame: pd.DataFrame) -> pd.DataFrame:
    """strategy_switched rows with the task whose end triggered them (the last task_finished before each)."""
    switched = frame[frame["kind"] == "strategy_switched"]
    finished = frame[frame["kind"] == "task_finished"][["seq", "task"]]
    return pd.merge_asof(switched.drop(columns="task"), finished, on="seq")


@pytest.fixture(scope="module")
def pairwise_runs() -> dict[str, tuple[MarketModel, pd.DataFrame]]:
    return {
        graph: _events({**RUN, "evolution.process": "pairwise", "evolution.graph": graph})
        for graph in ("overlay", "complete")
    }


@pytest.mark.parametrize("graph", ["overlay", "complete"])
def test_one_focal_player_per_task_imitates_a_player_of_the_task(pairwise_runs, graph: str) -> None:
    model, frame = pairwise_runs[graph]
    switches = _switches_by_task(frame)
    assert len(switches) >= 5
    assert switches["task"].value_counts().max() == 1  # one focal player per update, one update per task
    payoffs = frame[frame["kind"] == "provider_payoff"]
    for row in switches.itertuples():
        played = set(payoffs[payoffs["task"] == row.task]["agent"])
        assert row.agent in played and row.neighbour in played and row.agent != row.neighbour
        assert row.reason == "imitation"
        # the payoffs compared are the public-goods ones: ALLD saves kappa * R whatever the others do
        gap = _payoff_gap(model) if row.to_strategy == "ALLD" else -_payoff_gap(model)
        assert row.payoff_gap == pytest.approx(gap)


def test_the_overlay_graph_restricts_models_to_neighbours_and_the_complete_graph_does_not(pairwise_runs) -> None:
    def models_are_neighbours(graph: str) -> list[bool]:
        model, frame = pairwise_runs[graph]  # no churn: the overlay of the end is the overlay of every task
        switches = _switches_by_task(frame)
        return [int(row.neighbour) in model.overlay.neighbours(int(row.agent)) for row in switches.itertuples()]

    assert all(models_are_neighbours("overlay"))
    assert not all(models_are_neighbours("complete"))  # degree 4 of 15 others: most models are not neighbours


def test_the_model_calls_the_pairwise_step_once_per_task_and_the_synchronous_process_never(monkeypatch) -> None:
    import flmarket.sim.model as model_module

    calls = []
    step = model_module.pairwise_comparison_step

    def counted(strategies, payoffs, models_of, *args, **kwargs):
        calls.append((dict(strategies), models_of))
        return step(strategies, payoffs, models_of, *args, **kwargs)

    monkeypatch.setattr(model_module, "pairwise_comparison_step", counted)
    overrides = {"providers.count": 10, "run.tasks": 6, "network.degree": 4}
    model, frame = _events({**overrides, "evolution.process": "pairwise", "evolution.selection_intensity": 0.5})
    assert len(calls) == (frame["kind"] == "task_finished").sum() == 6
    online = set(model.online_providers)
    assert all(set(strategies) == online for strategies, _ in calls)  # every player of the task may be focal
    calls.clear()
    _events({**overrides, "evolution.process": "synchronous"})
    assert calls == []


def test_pairwise_mutation_changes_at_most_one_strategy_per_task() -> None:
    _, frame = _events({**RUN, "run.tasks": 30, "evolution.process": "pairwise", "evolution.mutation_rate": 1.0})
    switches = _switches_by_task(frame)
    # mu = 1: every task's focal player mutates to ALLC or ALLD with equal chance; half of them keep their own
    assert 5 <= len(switches) <= 25 and switches["task"].value_counts().max() == 1
    assert set(switches["reason"]) == {"mutation"} and (switches["neighbour"] == NO_AGENT).all()


def test_the_synchronous_process_may_change_several_strategies_in_one_task() -> None:
    _, frame = _events({**RUN, "evolution.process": "synchronous", "evolution.selection_intensity": 0.0005})
    assert _switches_by_task(frame)["task"].value_counts().max() > 1


def test_same_seed_same_switch_log_other_seed_other_log() -> None:
    overrides = {**RUN, "evolution.process": "pairwise", "evolution.graph": "complete", "evolution.mutation_rate": 0.1}
    columns = ["time", "agent", "from_strategy", "to_strategy", "reason", "neighbour", "payoff_gap"]

    def switch_log(seed: int) -> pd.DataFrame:
        _, frame = _events({**overrides, "run.seed": seed})
        return frame[frame["kind"] == "strategy_switched"][columns].reset_index(drop=True)

    first = switch_log(5)
    assert len(first) > 0
    pdt.assert_frame_equal(first, switch_log(5))
    assert not first.equals(switch_log(6))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("process", "moran", "evolution.process: input should be 'synchronous' or 'pairwise', got 'moran'"),
        ("graph", "ring", "evolution.graph: input should be 'overlay' or 'complete', got 'ring'"),
    ],
)
def test_unknown_process_or_graph_is_refused_with_the_allowed_values(field: str, value: str, message: str) -> None:
    with pytest.raises(ScenarioError) as error:
        load_scenario("evolution", {f"evolution.{field}": value})
    assert str(error.value) == message


def test_the_defaults_are_todays_synchronous_overlay_update() -> None:
    evolution = load_scenario("quickstart").evolution
    assert (evolution.process, evolution.graph) == ("synchronous", "overlay")


def test_the_synchronous_process_on_the_complete_graph_reads_the_others_without_copying(monkeypatch) -> None:
    import flmarket.sim.model as model_module

    overrides = {**RUN, "run.tasks": 20, "evolution.process": "synchronous", "evolution.graph": "complete"}
    model, viewed = _events(overrides)
    switches = _switches_by_task(viewed)
    assert switches["task"].value_counts().max() > 1  # still synchronous: several changes in one task
    models_are_neighbours = [
        int(row.neighbour) in model.overlay.neighbours(int(row.agent)) for row in switches.itertuples()
    ]
    assert not all(models_are_neighbours)
    # the index view draws exactly what the list of every other player would
    monkeypatch.setattr(
        model_module, "_EveryOtherPlayer", lambda entries, skipped: entries[:skipped] + entries[skipped + 1 :]
    )
    _, listed = _events(overrides)
    pdt.assert_frame_equal(viewed, listed)


def test_every_other_player_view_by_hand() -> None:
    from flmarket.sim.model import _EveryOtherPlayer

    entries = [(7, "ALLC", 1.0), (3, "ALLD", 2.0), (9, "TFT", 0.5)]
    view = _EveryOtherPlayer(entries, 1)
    assert len(view) == 2 and list(view) == [(7, "ALLC", 1.0), (9, "TFT", 0.5)]
    assert list(_EveryOtherPlayer(entries, 0)) == entries[1:] and list(_EveryOtherPlayer(entries, 2)) == entries[:2]
    with pytest.raises(IndexError):
        view[2]
