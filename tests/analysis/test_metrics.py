"""analysis/metrics.py: hand-made event frames with answers worked out by hand, invariants on a real run."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flmarket.analysis import metrics
from flmarket.analysis.load import load_events
from flmarket.sim.config import load_scenario
from flmarket.sim.runner import run_scenario


def events(*rows: dict) -> pd.DataFrame:
    """An events frame from (kind, fields...) dictionaries, in the given order."""
    records = [{"time": float(index), "seq": index, "agent": -1} | row for index, row in enumerate(rows)]
    return pd.DataFrame(records)


# ------------------------------------------------------------------------------------------- Gini, Pearson


def test_gini_of_hand_computed_samples() -> None:
    # [1, 2, 3, 4]: sum over ordered pairs of |x_i - x_j| = 2 * (1 + 2 + 3 + 1 + 2 + 1) = 20; 2 n^2 mean = 80.
    assert metrics.gini([4, 1, 3, 2]) == pytest.approx(0.25)
    # one of four holds everything: (n - 1) / n
    assert metrics.gini([0, 0, 5, 0]) == pytest.approx(0.75)
    assert metrics.gini([2.5, 2.5, 2.5]) == pytest.approx(0.0)
    assert math.isnan(metrics.gini([]))
    assert math.isnan(metrics.gini([1.0, -1.0]))  # mean <= 0: no share of a total


@given(
    st.lists(st.floats(min_value=0.01, max_value=1e3), min_size=1, max_size=30), st.floats(min_value=0.1, max_value=100)
)
def test_gini_matches_the_double_sum_and_is_scale_free(values: list[float], scale: float) -> None:
    array = np.asarray(values)
    brute = sum(abs(a - b) for a, b in itertools.product(array, array)) / (2 * len(array) ** 2 * array.mean())
    assert metrics.gini(values) == pytest.approx(brute, abs=1e-9)
    assert metrics.gini(array * scale) == pytest.approx(brute, abs=1e-9)
    assert -1e-12 <= metrics.gini(values) <= (len(values) - 1) / len(values) + 1e-12


def test_pearson_by_hand() -> None:
    # dx = dy-ish: sum dx dy = 4, sum dx^2 = sum dy^2 = 5 -> 0.8
    assert metrics.pearson([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert metrics.pearson([1, 2, 3], [6, 4, 2]) == pytest.approx(-1.0)
    assert math.isnan(metrics.pearson([1, 1, 1], [1, 2, 3]))
    assert math.isnan(metrics.pearson([1], [2]))
    with pytest.raises(ValueError, match="second: must have as many values as first"):
        metrics.pearson([1, 2], [1, 2, 3])


# ------------------------------------------------------------------------------------------------ per task


def test_free_riding_share_and_payoff_gap() -> None:
    frame = events(
        {"kind": "provider_payoff", "task": 0, "agent": 1, "strategy": "ALLC", "utility": 1.0},
        {"kind": "provider_payoff", "task": 0, "agent": 2, "strategy": "ALLD", "utility": 3.0},
        {"kind": "provider_payoff", "task": 0, "agent": 3, "strategy": "TFT", "utility": 2.0},
        {"kind": "update_sent", "task": 0, "round": 0, "agent": 3, "behaviour": "stale"},
        {"kind": "update_sent", "task": 0, "round": 0, "agent": 1, "behaviour": "honest"},
        {"kind": "provider_payoff", "task": 1, "agent": 1, "strategy": "ALLC", "utility": 1.0},
        {"kind": "provider_payoff", "task": 1, "agent": 2, "strategy": "ALLD", "utility": 0.5},
        {"kind": "provider_payoff", "task": 1, "agent": 3, "strategy": "TFT", "utility": 2.0},
        {"kind": "update_sent", "task": 1, "round": 0, "agent": 3, "behaviour": "honest"},
    )
    table = metrics.free_riding(frame).set_index("task")
    # task 0: riders = ALLD agent 2 and stale agent 3 -> mean 2.5; contributor agent 1 -> 1.0
    assert table.loc[0, "free_riders"] == 2 and table.loc[0, "free_rider_share"] == pytest.approx(2 / 3)
    assert table.loc[0, "payoff_gap"] == pytest.approx(1.5)
    # task 1: rider = ALLD agent 2 (0.5); contributors agents 1 and 3 -> mean 1.5
    assert table.loc[1, "free_riders"] == 1 and table.loc[1, "payoff_gap"] == pytest.approx(-1.0)
    assert table.loc[1, "contributor_payoff"] == pytest.approx(1.5)


def test_free_riding_from_rewards_when_no_payoff_events() -> None:
    frame = events(
        {"kind": "action_chosen", "task": 0, "agent": 1, "strategy": "ALLC", "action": 2},
        {"kind": "action_chosen", "task": 0, "agent": 2, "strategy": "ALLC", "action": 2},
        {"kind": "update_sent", "task": 0, "round": 0, "agent": 2, "behaviour": "disguised"},
        # payoff = sum over rounds of reward - local_iterations * unit_cost
        {
            "kind": "reward_paid",
            "task": 0,
            "round": 0,
            "agent": 1,
            "reward": 10.0,
            "contribution": 1.0,
            "unit_cost": 2.0,
            "local_iterations": 1,
            "shapley_value": 1.0,
        },
        {
            "kind": "reward_paid",
            "task": 0,
            "round": 1,
            "agent": 1,
            "reward": 6.0,
            "contribution": 1.0,
            "unit_cost": 2.0,
            "local_iterations": 1,
            "shapley_value": 1.0,
        },
        {
            "kind": "reward_paid",
            "task": 0,
            "round": 0,
            "agent": 2,
            "reward": 1.0,
            "contribution": 0.0,
            "unit_cost": 2.0,
            "local_iterations": 0,
            "shapley_value": 0.0,
        },
    )
    row = metrics.free_riding(frame).iloc[0]
    assert row["free_riders"] == 1
    assert row["free_rider_payoff"] == pytest.approx(1.0)
    assert row["contributor_payoff"] == pytest.approx(12.0)  # (10 - 2) + (6 - 2)
    assert row["payoff_gap"] == pytest.approx(-11.0)


def test_participation_by_strategy() -> None:
    frame = events(
        {"kind": "task_posted", "task": 0, "rounds": 3, "budget": 100.0},
        *[
            {"kind": "action_chosen", "task": 0, "agent": agent, "strategy": strategy, "action": action}
            for agent, (strategy, action) in enumerate(
                [("ALLC", 3), ("ALLC", 3), ("ALLD", 0), ("ALLD", 0), ("ALLD", 0), ("TFT", 1), ("TFT", 2)]
            )
        ],
    )
    table = metrics.participation_by_strategy(frame).set_index("strategy")
    assert table.loc["ALLC", ["providers", "participants"]].tolist() == [2, 2]
    assert table.loc["ALLC", "participation_rate"] == pytest.approx(1.0)
    assert table.loc["ALLD", ["providers", "participants"]].tolist() == [3, 0]
    assert table.loc["TFT", "mean_action"] == pytest.approx(1.5)
    assert table.loc["TFT", "participation_rate"] == pytest.approx(0.5)
    assert (table["paid_providers"] == 0).all() and table["realised_rate"].isna().all()  # no payoffs logged


def test_realised_participation_counts_the_providers_paid_and_their_accepted_rounds() -> None:
    """One TFT provider chose 2 rounds and got 1 accepted; the other chose 1 and left before the task settled."""
    frame = events(
        {"kind": "task_posted", "task": 0, "rounds": 4, "budget": 100.0},
        {"kind": "action_chosen", "task": 0, "agent": 1, "strategy": "TFT", "action": 2},
        {"kind": "action_chosen", "task": 0, "agent": 2, "strategy": "TFT", "action": 1},
        {"kind": "provider_payoff", "task": 0, "agent": 1, "strategy": "TFT", "action": 2, "realised_rounds": 1},
    )
    row = metrics.participation_by_strategy(frame).set_index("strategy").loc["TFT"]
    assert row["participation_rate"] == pytest.approx(1.5 / 4)  # chosen, over both
    assert row["paid_providers"] == 1 and row["realised_rate"] == pytest.approx(1 / 4)  # realised, over the paid


def test_r_is_the_rounds_the_task_ran_when_the_budget_caps_them(tmp_path) -> None:
    """The evolution scenario asks for 3 rounds; a budget of 100 pays for 2 (round_cap), so ALLC plays y = 2 =
    R and its rate is 1. Dividing by the rounds asked for (task_posted.rounds) gave 2/3 of every rate."""
    capped = {"run.tasks": 6, "requesters.budget": 100.0}
    result = run_scenario(load_scenario("evolution", capped), output_dir=tmp_path, show_progress=False)
    frame = load_events(result.run_dir, kinds=["task_posted", "task_configured", "round_started"])
    assert set(frame[frame.kind == "task_posted"]["rounds"]) == {3}
    assert set(frame[frame.kind == "task_configured"]["rounds"]) == {2}
    assert set(frame[frame.kind == "round_started"].groupby("task").size()) == {2}
    table = metrics.participation_by_strategy(result.run_dir).set_index(["task", "strategy"])
    assert (table.xs("ALLC", level="strategy")["participation_rate"] == 1.0).all()
    table["weighted"] = table["realised_rate"].fillna(0.0) * table["paid_providers"]
    totals = table.groupby("strategy")[["weighted", "paid_providers"]].sum()
    assert (totals["weighted"] / totals["paid_providers"]).to_dict() == pytest.approx(
        result.participation_by_strategy, abs=1e-12
    )
    old_log = load_events(result.run_dir).query("kind != 'task_configured'")  # before task_configured.rounds
    assert metrics.participation_by_strategy(old_log)["participation_rate"].max() == pytest.approx(2 / 3)


def test_the_realised_rate_is_what_flmarket_run_reports_under_churn(tmp_path) -> None:
    """Joins and departures mid-task make chosen and realised differ; the log reproduces the run's tally, and
    each task's realised rounds add up to its total participation."""
    churn = {"run.tasks": 12, "providers.arrival_rate_per_s": 0.3, "providers.mean_lifetime_s": 15.0}
    result = run_scenario(load_scenario("quickstart", churn), output_dir=tmp_path, show_progress=False)
    table = metrics.participation_by_strategy(result.run_dir)
    table["weighted"] = table["realised_rate"].fillna(0.0) * table["paid_providers"]
    totals = table.groupby("strategy")[["weighted", "paid_providers"]].sum()
    from_log = (totals["weighted"] / totals["paid_providers"]).to_dict()
    assert from_log == pytest.approx(result.participation_by_strategy, abs=1e-12)
    assert not np.allclose(table["participation_rate"], table["realised_rate"].fillna(-1))  # they do differ here
    frame = load_events(result.run_dir, kinds=["provider_payoff", "task_finished"])
    realised = frame[frame.kind == "provider_payoff"].groupby("task")["realised_rounds"].sum()
    finished = frame[frame.kind == "task_finished"].set_index("task")["total_participation"]
    assert realised.to_dict() == finished[finished.index.isin(realised.index)].to_dict()


# B = 1000, sigma = 0.2, r_max = 4, Pi = 200 per round, committee cost 9.8 per round.
TASK_0_CONFIGURED = {
    "kind": "task_configured",
    "task": 0,
    "budget": 1000.0,
    "fee_ratio": 0.2,
    "round_cap": 4,
    "pool_per_round": 200.0,
    "committee_cost": 9.8,
}


def test_budget_use_by_hand() -> None:
    frame = events(
        TASK_0_CONFIGURED,
        {"kind": "round_finished", "task": 0, "round": 0, "pool": 200.0, "paid": 200.0},
        {"kind": "budget_check", "task": 0, "round": 0, "balanced": True},
        {"kind": "round_finished", "task": 0, "round": 1, "pool": 200.0, "paid": 150.0},
        {"kind": "budget_check", "task": 0, "round": 1, "balanced": True},
        {"kind": "round_finished", "task": 0, "round": 2, "pool": 200.0, "paid": 200.0},
        {"kind": "budget_check", "task": 0, "round": 2, "balanced": False},
        {
            "kind": "task_configured",
            "task": 1,
            "budget": 500.0,
            "fee_ratio": 0.5,
            "round_cap": 2,
            "pool_per_round": 125.0,
            "committee_cost": 1.0,
        },
    )
    table = metrics.budget_use(frame).set_index("task")
    first = table.loc[0]
    assert first["rounds"] == 3 and first["pool"] == pytest.approx(600) and first["paid"] == pytest.approx(550)
    assert first["pool_use"] == pytest.approx(550 / 600)
    assert first["provider_budget_use"] == pytest.approx(550 / 800)  # B (1 - sigma) = 800
    assert first["committee_budget_use"] == pytest.approx(3 * 9.8 / 200)  # r C_com / (B sigma), (B 15a)
    assert first["round_cap_use"] == pytest.approx(0.75)
    assert not first["balanced"]
    second = table.loc[1]
    assert second["rounds"] == 0 and second["provider_budget_use"] == 0 and math.isnan(second["pool_use"])
    assert pd.isna(second["balanced"])


# ----------------------------------------------------------------------------------------------- per round


def _reward(
    task: int, round_: int, agent: int, reward: float, contribution: float, unit_cost: float = 2.0, iterations: int = 1
) -> dict:
    return {
        "kind": "reward_paid",
        "task": task,
        "round": round_,
        "agent": agent,
        "reward": reward,
        "contribution": contribution,
        "shapley_value": contribution,
        "unit_cost": unit_cost,
        "local_iterations": iterations,
    }


def test_shapley_fairness_per_round_and_overall() -> None:
    frame = events(
        _reward(0, 0, 1, 1.0, 1.0),
        _reward(0, 0, 2, 2.0, 3.0),
        _reward(0, 0, 3, 3.0, 2.0),
        _reward(0, 0, 4, 4.0, 4.0),
        _reward(0, 1, 1, 1.0, 6.0),
        _reward(0, 1, 2, 2.0, 4.0),
        _reward(0, 1, 3, 3.0, 2.0),
    )
    per_round = metrics.shapley_fairness(frame).set_index("round")["fairness"]
    assert per_round[0] == pytest.approx(0.8) and per_round[1] == pytest.approx(-1.0)
    overall = metrics.shapley_fairness(frame, by=())
    rewards = [1, 2, 3, 4, 1, 2, 3]
    contributions = [1, 3, 2, 4, 6, 4, 2]
    assert overall["fairness"].iloc[0] == pytest.approx(np.corrcoef(rewards, contributions)[0, 1])
    assert overall["providers"].iloc[0] == 7


def test_round_welfare_rewards_gini_and_consensus() -> None:
    frame = events(
        TASK_0_CONFIGURED,
        {"kind": "update_sent", "task": 0, "round": 0, "agent": 1, "behaviour": "honest"},
        {"kind": "update_sent", "task": 0, "round": 0, "agent": 2, "behaviour": "plain"},
        _reward(0, 0, 1, 10.0, 1.0, unit_cost=2.0, iterations=1),
        _reward(0, 0, 2, 30.0, 3.0, unit_cost=2.0, iterations=3),
        {
            "kind": "consensus_decided",
            "task": 0,
            "round": 0,
            "view": 1,
            "messages": 84,
            "bytes": 8400,
            "latency_s": 0.5,
        },
        {
            "kind": "round_finished",
            "task": 0,
            "round": 0,
            "participants": 2,
            "quality": 0.9,
            "loss": 0.3,
            "accuracy": 0.9,
            "pool": 200.0,
            "paid": 40.0,
        },
    )
    row = metrics.round_outcomes(frame).iloc[0]
    assert row["total_reward"] == pytest.approx(40.0)
    assert row["provider_cost"] == pytest.approx(8.0)  # 1 * 2 + 3 * 2
    assert row["welfare"] == pytest.approx(40.0 - 8.0 - 9.8)  # (B 21)
    assert row["reward_gini"] == pytest.approx(0.25)  # |10 - 30| * 2 / (2 * 4 * 20)
    assert row["budget_use"] == pytest.approx(0.2)
    assert row["free_rider_updates"] == 1
    assert row["consensus_messages"] == 84 and row["consensus_latency_s"] == pytest.approx(0.5)
    assert metrics.consensus_costs(frame)["view"].tolist() == [1]


# ----------------------------------------------------------------------------------------------- over time


def test_strategy_shares_fall_back_to_actions_with_zero_filled_extinctions() -> None:
    frame = events(
        {"kind": "action_chosen", "task": 0, "agent": 1, "strategy": "ALLC", "action": 1},
        {"kind": "action_chosen", "task": 0, "agent": 2, "strategy": "ALLC", "action": 1},
        {"kind": "action_chosen", "task": 0, "agent": 3, "strategy": "ALLD", "action": 0},
        {"kind": "action_chosen", "task": 1, "agent": 1, "strategy": "ALLC", "action": 1},
    )
    shares = metrics.strategy_shares(frame)
    assert set(shares["origin"]) == {"action_chosen"}
    by_key = shares.set_index(["task", "strategy"])["share"]
    assert by_key[(0, "ALLC")] == pytest.approx(2 / 3) and by_key[(0, "ALLD")] == pytest.approx(1 / 3)
    assert by_key[(1, "ALLC")] == 1.0 and by_key[(1, "ALLD")] == 0.0
    assert shares.set_index(["task", "strategy"])["time"][(1, "ALLC")] == 3.0


def test_strategy_shares_prefer_share_samples() -> None:
    frame = events(
        {"kind": "action_chosen", "task": 0, "agent": 1, "strategy": "ALLC", "action": 1},
        {"kind": "strategy_share", "strategy": "ALLC", "count": 3, "share": 0.75},
        {"kind": "strategy_share", "strategy": "TFT", "count": 1, "share": 0.25},
    )
    shares = metrics.strategy_shares(frame)
    assert shares["strategy"].tolist() == ["ALLC", "TFT"] and shares["share"].tolist() == [0.75, 0.25]
    assert set(shares["origin"]) == {"strategy_share"}


def test_absent_kinds_give_empty_frames_with_columns() -> None:
    frame = events({"kind": "run_started", "scenario": "x", "seed": 1})
    expected = {
        metrics.task_outcomes: metrics.TASK_COLUMNS,
        metrics.participation_by_strategy: metrics.PARTICIPATION_COLUMNS,
        metrics.free_riding: metrics.FREE_RIDING_COLUMNS,
        metrics.budget_use: metrics.BUDGET_COLUMNS,
        metrics.reward_distribution: metrics.REWARD_COLUMNS,
        metrics.consensus_costs: metrics.CONSENSUS_COLUMNS,
        metrics.round_outcomes: metrics.ROUND_COLUMNS,
        metrics.strategy_shares: metrics.SHARE_COLUMNS,
        metrics.welfare_against_references: metrics.REFERENCE_COLUMNS,
    }
    for function, columns in expected.items():
        table = function(frame)
        assert table.empty and list(table.columns) == list(columns), function.__name__
    assert list(metrics.shapley_fairness(frame).columns) == ["task", "round", "providers", "fairness"]
    summary = metrics.run_summary(frame)
    assert summary["tasks"] == 0 and math.isnan(summary["mean_welfare"]) and math.isnan(summary["fairness"])
    assert math.isnan(summary["welfare_position"]) and math.isnan(summary["optimum_welfare"])


def test_welfare_against_references_and_the_run_position_by_hand() -> None:
    rows = [
        {"kind": "task_finished", "task": 0, "players": 2, "total_participation": 2, "welfare": 1.0, "precision": 0.1},
        {"kind": "task_finished", "task": 1, "players": 2, "total_participation": 4, "welfare": 3.0, "precision": 0.1},
        {"kind": "task_finished", "task": 2, "players": 0, "total_participation": 0, "welfare": 0.0, "precision": 0.1},
    ]
    for task, optimum in ((0, 4.0), (1, 2.0)):  # task 2 had no players: no reference
        rows.append(
            {
                "kind": "welfare_reference",
                "task": task,
                "players": 2,
                "optimum_total": 4,
                "optimum_welfare": optimum,
                "full_cooperation_total": 6,
                "full_cooperation_welfare": optimum - 1.0,
                "nash_welfare": 0.0,
            }
        )
    frame = events(*rows)
    table = metrics.welfare_against_references(frame)
    assert table["task"].tolist() == [0, 1] and table["optimum_welfare"].tolist() == [4.0, 2.0]
    summary = metrics.reference_summary(frame)
    # mean welfare 2, mean optimum 3, Nash 0: two thirds of the way from the Nash welfare to the optimum
    assert summary["welfare_position"] == pytest.approx(2 / 3)
    assert summary["participation_position"] == pytest.approx(3 / 4)  # mean T = 3 of the optimum's 4
    assert summary["full_cooperation_welfare"] == 2.0 and summary["nash_welfare"] == 0.0


def test_bad_source_is_named() -> None:
    with pytest.raises(ValueError, match="source: must be a run directory, a RunEvents or an events DataFrame"):
        metrics.task_outcomes(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="source: an events frame needs a 'kind' column"):
        metrics.task_outcomes(pd.DataFrame({"time": [0.0]}))


def test_a_real_run_directory_and_its_frame_agree_and_welfare_is_the_sum_of_utilities(tmp_path) -> None:
    scenario = load_scenario("quickstart", {"run.tasks": 10, "providers.count": 10})
    run_dir = run_scenario(scenario, output_dir=tmp_path, run_id="run", show_progress=False).run_dir
    frame = load_events(run_dir)
    tasks = metrics.task_outcomes(run_dir)
    pd.testing.assert_frame_equal(tasks, metrics.task_outcomes(frame))
    assert len(tasks) == 10
    payoffs = frame[frame["kind"] == "provider_payoff"].groupby("task")["utility"].sum()
    np.testing.assert_allclose(tasks.set_index("task")["welfare"], payoffs.loc[tasks["task"]], atol=1e-9)
    shares = metrics.strategy_shares(run_dir)
    np.testing.assert_allclose(shares.groupby("task")["share"].sum(), 1.0)
    riding = metrics.free_riding(run_dir)
    assert ((riding["free_rider_share"] >= 0) & (riding["free_rider_share"] <= 1)).all()
    # the logged references agree with the run: nobody does better than the optimum of the task's starting game
    references = metrics.welfare_against_references(run_dir)
    assert len(references) == 10 and (references["nash_welfare"] == 0).all()
    assert (references["optimum_welfare"] >= references["full_cooperation_welfare"] - 1e-12).all()
    assert (references["optimum_total"] == references["full_cooperation_total"]).all()  # quickstart: full is optimal

    # A RunEvents reads each kind once into its own narrow frame, and every metric gives what the wide frame gives.
    cached = metrics.RunEvents(run_dir)
    for function in (
        metrics.task_outcomes,
        metrics.round_outcomes,
        metrics.budget_use,
        metrics.free_riding,
        metrics.participation_by_strategy,
        metrics.strategy_shares,
    ):
        pd.testing.assert_frame_equal(function(cached), function(frame), check_dtype=False)
    assert metrics.run_summary(cached) == pytest.approx(metrics.run_summary(frame), nan_ok=True)
    narrow = cached.frame(["task_finished"])
    assert set(narrow.columns) < set(frame.columns) and len(narrow) == 10
    assert cached.frame(["not_a_kind_of_this_run"]).empty  # an undeclared kind reads as no events


def test_mechanism_targets_by_hand() -> None:
    # Task 0, three rounds: round 0 trains delta_k (not counted), gamma 2 then 0 -> 1 of 2 later rounds >= 1.
    # Paid updates: rounds 0-2 x agents 1, 2 = 6; agent 2 violates IR in round 1 twice (one update, one count)
    # and agent 1 in round 2 -> 4 of 6 individually rational. Budget checks: True, True, False -> 2 of 3.
    paid = [
        {
            "kind": "reward_paid",
            "task": 0,
            "round": r,
            "agent": a,
            "unit_cost": 8.0 + a + r,
            "reward": 0.0 if r else 3.0,
        }
        for r in range(3)
        for a in (1, 2)
    ]
    frame = events(
        {"kind": "round_started", "task": 0, "round": 0, "gamma": 5},
        {"kind": "round_started", "task": 0, "round": 1, "gamma": 2},
        {"kind": "round_started", "task": 0, "round": 2, "gamma": 0},
        *paid,
        {"kind": "ir_violation", "task": 0, "round": 1, "agent": 2, "amount": 1.0},
        {"kind": "ir_violation", "task": 0, "round": 1, "agent": 2, "amount": 1.0},
        {"kind": "ir_violation", "task": 0, "round": 2, "agent": 1, "amount": 0.5},
        {"kind": "budget_check", "task": 0, "round": 0, "balanced": True},
        {"kind": "budget_check", "task": 0, "round": 1, "balanced": True},
        {"kind": "budget_check", "task": 0, "round": 2, "balanced": False},
    )
    targets = metrics.mechanism_targets(frame)
    assert targets["rounds"] == 3 and targets["paid_updates"] == 6
    assert targets["unrewarded_updates"] == 4  # rounds 1 and 2 paid nothing (Shapley sum <= 0): still settled
    assert targets["gamma_at_least_one_share"] == pytest.approx(0.5)
    assert targets["individually_rational_share"] == pytest.approx(4 / 6)
    assert targets["budget_balanced_share"] == pytest.approx(2 / 3)
    assert targets["mean_unit_cost"] == pytest.approx(8.0 + 1.5 + 1.0)  # mean of a (1.5) and r (1.0) added to 8
    empty = metrics.mechanism_targets(events({"kind": "task_finished", "task": 0, "welfare": 1.0}))
    assert empty["paid_updates"] == 0 and math.isnan(empty["individually_rational_share"])


def test_a_round_that_paid_no_one_costs_the_committee_and_counts_zero() -> None:
    """It had NaN welfare and rewarded <NA> (an Int64 column), so run_summary's mean round welfare skipped it."""
    empty_round = {
        "kind": "round_finished",
        "task": 0,
        "round": 0,
        "participants": 0,
        "quality": 0.5,
        "loss": 1.0,
        "accuracy": 0.1,
        "pool": 200.0,
        "paid": 0.0,
    }
    table = metrics.round_outcomes(events(TASK_0_CONFIGURED, empty_round))
    row = table.iloc[0]
    assert row["rewarded"] == 0 and row["total_reward"] == 0.0 and row["welfare"] == pytest.approx(-9.8)
    assert row["free_rider_updates"] == 0  # no update_sent in the whole run
    assert table["rewarded"].dtype == "int64" and table["free_rider_updates"].dtype == "int64"


def test_individual_rationality_counts_paid_updates_only() -> None:
    """A violation of an update whose reward was forfeited made the share negative (-0.0046 on a real run)."""
    frame = events(
        _reward(0, 0, 1, 1.0, 1.0),
        _reward(0, 0, 2, 2.0, 3.0),
        {"kind": "ir_violation", "task": 0, "round": 0, "agent": 1},
        {"kind": "ir_violation", "task": 0, "round": 0, "agent": 7},  # forfeited: no reward_paid
        {"kind": "ir_violation", "task": 0, "round": 1, "agent": 2},  # another round: not paid
    )
    targets = metrics.mechanism_targets(frame)
    assert targets["paid_updates"] == 2 and targets["individually_rational_share"] == pytest.approx(0.5)


def test_gini_of_equal_values_is_exactly_zero() -> None:
    assert metrics.gini([1.3248954] * 30) == 0.0  # the closed form gave -4.4e-16
    assert metrics.gini([0.1] * 7) == 0.0  # and +2.2e-16, which summaries showed as a Gini of 3.7e-17
    with pytest.raises(TypeError, match="values: must be numbers, got the string '123'"):
        metrics.gini("123")
    with pytest.raises(ValueError, match=r"values: must be one-dimensional, got shape \(2, 2\)"):
        metrics.gini([[1.0, 2.0], [3.0, 4.0]])


def test_a_task_the_horizon_cut_off_is_left_out_of_every_per_task_measure(tmp_path) -> None:
    """Welfare counted the 7 finished tasks, budget use and participation also the 8th, cut after 1 of 29 rounds."""
    result = run_scenario(load_scenario("quickstart", {"run.horizon_s": 300.0, "run.tasks": None}), output_dir=tmp_path)
    summary = metrics.run_summary(result.run_dir)
    finished = set(metrics.task_outcomes(result.run_dir)["task"])
    budget = metrics.budget_use(result.run_dir)
    assert set(budget["task"]) - finished  # the cut task is there
    kept = budget[budget["task"].isin(finished)]
    assert summary["mean_budget_use"] == pytest.approx(kept["provider_budget_use"].mean(), rel=1e-12)
    participation = metrics.participation_by_strategy(result.run_dir)
    kept_rate = participation[participation["task"].isin(finished)]["participation_rate"].mean()
    assert summary["mean_participation_rate"] == pytest.approx(kept_rate, rel=1e-12)


def test_participation_rate_counts_each_decision_once_and_free_riding_counts_finished_tasks_only() -> None:
    """A sweep over strategy mixes showed a flat 0.5: the per-strategy mean gives ALLC (rate 1) and ALLD (rate 0)
    the same weight whatever their numbers. And free riding counted an unfinished task (0.0 with none finished)."""
    rows: list[dict] = [
        {"kind": "task_finished", "task": 0, "players": 5, "total_participation": 12, "welfare": 1.0, "precision": 0.1},
        *(
            {"kind": "task_configured", "task": task, "rounds": 3, "budget": 10.0, "fee_ratio": 0.2}
            | {"round_cap": 3, "committee_cost": 0.5}
            for task in (0, 1)
        ),
    ]
    for agent in range(1, 6):
        strategy, action = ("ALLC", 3) if agent <= 4 else ("ALLD", 0)
        rows.append({"kind": "action_chosen", "task": 0, "agent": agent, "strategy": strategy, "action": action})
        rows.append({"kind": "provider_payoff", "task": 0, "agent": agent, "strategy": strategy, "utility": 1.0})
    # task 1 never finished (the horizon cut it): one ALLD decided and was paid
    rows.append({"kind": "action_chosen", "task": 1, "agent": 5, "strategy": "ALLD", "action": 0})
    rows.append({"kind": "provider_payoff", "task": 1, "agent": 5, "strategy": "ALLD", "utility": 1.0})
    summary = metrics.run_summary(events(*rows))
    assert summary["participation_rate"] == pytest.approx(4 / 5)  # (4 x 3/3 + 1 x 0/3) / 5 decisions
    assert summary["mean_participation_rate"] == pytest.approx(1 / 2)  # (ALLC 1 + ALLD 0) / 2 strategies
    assert summary["participating_share"] == pytest.approx(4 / 5)
    assert summary["free_rider_share"] == pytest.approx(1 / 5)  # task 0 only; task 1's 1.0 is left out
    unfinished = metrics.run_summary(events(*rows[1:]))
    assert unfinished["tasks"] == 0
    assert math.isnan(unfinished["free_rider_share"]) and math.isnan(unfinished["participation_rate"])


def test_zero_determinant_realisation_counts_the_zd_players_paid_decisions_as_chosen() -> None:
    """A small two-player ZD game lost 31 of 300 chosen MMZD rounds to late updates (gamma_NE up to 32 epochs in
    a 10 s round), and its welfare missed the enforced P* while nothing said so."""
    frame = events(
        {"kind": "provider_payoff", "task": 0, "strategy": "MMZD", "action": 2, "realised_rounds": 2},
        {"kind": "provider_payoff", "task": 0, "strategy": "ALLC", "action": 2, "realised_rounds": 1},  # not ZD
        {"kind": "provider_payoff", "task": 1, "strategy": "MMZD", "action": 2, "realised_rounds": 1},
        {"kind": "provider_payoff", "task": 1, "strategy": "MMZDA", "action": 0, "realised_rounds": 0},
        {"kind": "provider_payoff", "task": 2, "strategy": "MMZDA", "action": 1, "realised_rounds": 0},
    )
    assert metrics.zero_determinant_realisation(frame) == {"zd_decisions": 4.0, "zd_realised_as_chosen": 2.0}
    none = events({"kind": "task_finished", "task": 0, "welfare": 1.0})
    result = metrics.zero_determinant_realisation(none)
    assert result["zd_decisions"] == 0.0 and math.isnan(result["zd_realised_as_chosen"])


def test_zero_determinant_welfare_averages_the_tasks_zd_players_played_beside_the_target() -> None:
    """Tasks before the first design, and tasks without a ZD player (it left, or evolution took its strategy
    away), are left out; the mean is the plain mean of the rest (the batch means leave the first n mod k out, and
    they gave 0.016 for 150 tasks whose mean was 0.031), with the batch-means half-width around it. A target
    shared by every design is reported, and targets that differ are not averaged into one."""
    from flmarket.analysis.stability import batch_means_interval

    welfare = [5.0, 5.0, 1.0, 2.0, 1.5, 0.5, 9.0, 1.0, 2.0, 1.0, 1.0, 3.0, 0.5]
    rows = [{"kind": "task_finished", "task": task, "welfare": value} for task, value in enumerate(welfare)]
    without_zd = {6}
    rows += [
        {"kind": "action_chosen", "task": task, "strategy": "ALLC" if task in without_zd else "MMZDA"}
        for task in range(len(welfare))
    ]
    design = {"kind": "zd_design", "task": 2, "target": 1.25, "feasible": True}
    result = metrics.zero_determinant_welfare(events(design, *rows))
    played = [value for task, value in enumerate(welfare) if task >= 2 and task not in without_zd]
    assert result["zd_tasks"] == len(played) == 10 and result["zd_mean_welfare"] == pytest.approx(np.mean(played))
    half_width = batch_means_interval(played).half_width
    assert result["zd_welfare_low"] == pytest.approx(np.mean(played) - half_width)
    assert result["zd_welfare_high"] == pytest.approx(np.mean(played) + half_width)
    assert (result["zd_target"], result["zd_designs"], result["zd_feasible_designs"]) == (1.25, 1, 1)
    moved = {"kind": "zd_design", "task": 5, "target": 1.5, "feasible": False}
    result = metrics.zero_determinant_welfare(events(design, moved, *rows))
    assert math.isnan(result["zd_target"]) and (result["zd_designs"], result["zd_feasible_designs"]) == (2, 1)
    none = metrics.zero_determinant_welfare(events(*rows[: len(welfare)]))
    assert none["zd_designs"] == 0 and none["zd_tasks"] == 0 and math.isnan(none["zd_mean_welfare"])


def test_capped_rounds_counts_the_tasks_whose_budget_cut_their_rounds() -> None:
    frame = events(
        {"kind": "task_posted", "task": 0, "rounds": 100},
        {"kind": "task_configured", "task": 0, "rounds": 40},
        {"kind": "task_posted", "task": 1, "rounds": 100},
        {"kind": "task_configured", "task": 1, "rounds": 100},
        {"kind": "task_posted", "task": 2, "rounds": 100},
        {"kind": "task_configured", "task": 2, "rounds": 25},
        {"kind": "task_posted", "task": 3, "rounds": 100},  # rejected: never configured
    )
    assert metrics.capped_rounds(frame) == {
        "tasks_configured": 3.0,
        "tasks_capped": 2.0,
        "rounds_asked": 100.0,
        "capped_rounds_min": 25.0,
        "capped_rounds_max": 40.0,
    }
    uncapped = metrics.capped_rounds(frame[frame["task"] == 1])
    assert uncapped["tasks_capped"] == 0.0 and math.isnan(uncapped["capped_rounds_min"])
