"""Tests of market/budget.py: caps (B 11, B 12), rewards (B 13) and the per-round checks (B 14, B 15)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from flmarket.market.budget import (
    check_budget_balance,
    check_individual_rationality,
    local_iteration_cap,
    max_aggregation_rounds,
    paid_within_budget,
    round_reward_pool,
    shapley_rewards,
)
from flmarket.market.errors import InfeasibleBudgetError, MarketError

TABLE3_COMMITTEE = [1.4] * 7  # SPEC A.5 default: C_com(n_k) = 1.4 per node and round, T = 7


def test_round_cap_table3() -> None:
    # (B 11): B * sigma = 5000 * 0.2 = 1000; 7 * 1.4 = 9.8; floor(1000 / 9.8) = floor(102.04) = 102.
    assert max_aggregation_rounds(5000.0, 0.2, TABLE3_COMMITTEE) == 102


def test_round_cap_infeasible_budget_names_the_numbers() -> None:
    # B * sigma = 40 * 0.2 = 8 < 9.8: not even one round.
    with pytest.raises(InfeasibleBudgetError, match=r"B\*sigma = 40.0\*0.2 = 8.0.*9.8.*= 0"):
        max_aggregation_rounds(40.0, 0.2, TABLE3_COMMITTEE)
    with pytest.raises(InfeasibleBudgetError, match="committee_costs"):
        max_aggregation_rounds(5000.0, 0.2, [0.0, 0.0])
    with pytest.raises(MarketError, match="fee_ratio: must be in"):
        max_aggregation_rounds(5000.0, 1.2, TABLE3_COMMITTEE)
    with pytest.raises(MarketError, match="total_budget: must be > 0.0, got -1.0"):
        max_aggregation_rounds(-1.0, 0.2, TABLE3_COMMITTEE)


def test_round_pool_and_iteration_cap_by_hand() -> None:
    # Pi_r = B (1 - sigma) / r_max = 5000 * 0.8 / 102 = 39.2157.
    assert round_reward_pool(5000.0, 0.2, 102) == pytest.approx(4000.0 / 102)
    # (B 12): B = 1200, sigma = 0.5, r_max = 10, 3 providers, C_unit = 4: 600 / (10 * 3 * 4) = 5.
    assert local_iteration_cap(1200.0, 0.5, 10, 3, 4.0) == pytest.approx(5.0)
    # Table 3: 4000 / (102 * 3 * 10.966379) = 1.19 -> about one local iteration (SPEC A.5 note).
    cap = local_iteration_cap(5000.0, 0.2, 102, 3, np.array([10.966379, 20.0]))
    np.testing.assert_allclose(cap, [4000.0 / (102 * 3 * 10.966379), 4000.0 / (102 * 3 * 20.0)])
    assert math.floor(cap[0]) == 1
    with pytest.raises(InfeasibleBudgetError, match="max_rounds: must be >= 1, got 0"):
        round_reward_pool(5000.0, 0.2, 0)


def test_rewards_by_hand() -> None:
    # (B 13): pool 60, xi = (1, 2, 3), sum 6 -> 60 * xi / 6 = (10, 20, 30).
    paid = shapley_rewards([1.0, 2.0, 3.0], 60.0)
    np.testing.assert_allclose(paid.rewards, [10.0, 20.0, 30.0])
    assert paid.paid and paid.charged == ()
    # xi = (3, -1, 2), sum 4 -> (45, -15, 30): the harmful provider 1 pays 15.
    harmful = shapley_rewards([3.0, -1.0, 2.0], 60.0)
    np.testing.assert_allclose(harmful.rewards, [45.0, -15.0, 30.0])
    assert harmful.charged == (1,)
    # xi = (-1, 1), sum 0 -> nobody is paid.
    none = shapley_rewards([-1.0, 1.0], 60.0)
    assert not none.paid and np.all(none.rewards == 0.0)


finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@given(st.lists(finite, min_size=1, max_size=30), st.floats(0.0, 1e4))
@example([5e-324], 1.5)  # found by hypothesis in CI: Pi * xi / sum(xi) paid 2.0 of a pool of 1.5
def test_reward_budget_balance_property(values: list[float], pool: float) -> None:
    xi = np.array(values)
    total = xi.sum()
    result = shapley_rewards(xi, pool)
    if total <= 0.0:
        assert not result.paid
        assert np.all(result.rewards == 0.0)
        return
    assume(total > 1e-6 * np.abs(xi).sum())  # avoid catastrophic cancellation in the normaliser
    assert result.paid
    assert result.rewards.sum() == pytest.approx(pool, rel=1e-9, abs=1e-9)
    # Charged exactly where xi < 0, and rewards keep the order of the Shapley values.
    assert result.charged == tuple(np.flatnonzero(xi < 0))
    assert np.all(result.rewards[xi < 0] <= 0.0)
    assert np.all(np.diff(result.rewards[np.argsort(xi, kind="stable")]) >= -1e-9 * max(pool, 1.0))


def test_individual_rationality_reports_who_and_by_how_much() -> None:
    # Provider 0: U = 1, rho - k C = 10 - 2 * 3 = 4: fine. Provider 1: U = -0.5 and 5 - 2 * 4 = -3.
    report = check_individual_rationality([1.0, -0.5], [10.0, 5.0], [2, 2], [3.0, 4.0])
    assert not report.satisfied
    assert [(v.provider, v.condition) for v in report.violations] == [(1, "reward"), (1, "utility")]
    shortfalls = {v.condition: v.shortfall for v in report.violations}
    assert shortfalls == pytest.approx({"utility": 0.5, "reward": 3.0})
    assert check_individual_rationality([0.0], [6.0], [2], [3.0]).satisfied


def test_budget_balance_by_hand() -> None:
    # 102 rounds: committee 102 * 9.8 = 999.6 <= 1000; providers 102 * (1*10 + 1*12 + 2*5) = 3264 <= 4000.
    report = check_budget_balance(102, TABLE3_COMMITTEE, [1, 1, 2], [10.0, 12.0, 5.0], 5000.0, 0.2)
    assert report.satisfied
    assert report.committee_excess == pytest.approx(999.6 - 1000.0)
    assert report.provider_excess == pytest.approx(3264.0 - 4000.0)
    # 103 rounds break (B 15a) by 103 * 9.8 - 1000 = 9.4.
    over = check_budget_balance(103, TABLE3_COMMITTEE, [1, 1, 2], [10.0, 12.0, 5.0], 5000.0, 0.2)
    assert not over.satisfied and over.committee_excess == pytest.approx(9.4)


@given(
    budget=st.floats(100.0, 1e5),
    fee_ratio=st.floats(0.05, 0.95),
    committee=st.lists(st.floats(0.1, 5.0), min_size=1, max_size=9),
    costs=st.lists(st.floats(0.1, 100.0), min_size=1, max_size=20),
)
def test_caps_keep_the_budget_balanced(
    budget: float, fee_ratio: float, committee: list[float], costs: list[float]
) -> None:
    # Any plan within (B 11) and floor((B 12)) satisfies both halves of (B 15) after r_max rounds.
    assume(budget * fee_ratio >= sum(committee))
    rounds = max_aggregation_rounds(budget, fee_ratio, committee)
    caps = np.floor(local_iteration_cap(budget, fee_ratio, rounds, len(costs), np.array(costs)))
    report = check_budget_balance(rounds, committee, caps, costs, budget, fee_ratio)
    assert report.committee_excess <= 1e-9 * budget
    assert report.provider_excess <= 1e-9 * budget


def test_paid_within_budget_by_hand() -> None:
    # B = 1000, sigma = 0.2: fees up to 200, rewards up to 800 (a pool paid out exactly may round past it).
    assert paid_within_budget(200.0, 800.0, 1000.0, 0.2)
    assert paid_within_budget(200.0, 800.0 * (1 + 1e-12), 1000.0, 0.2)
    assert not paid_within_budget(200.0, 800.1, 1000.0, 0.2)
    assert not paid_within_budget(200.1, 0.0, 1000.0, 0.2)


@pytest.mark.parametrize(
    ("budget", "fee_ratio", "rounds"),
    [(14.0, 0.7, 1), (58.8, 0.5, 3), (735.0, 0.2, 15), (29.4, 1 / 3, 1)],
)
def test_an_exact_multiple_of_the_round_cost_is_not_lost_to_rounding(budget, fee_ratio, rounds) -> None:
    """14 x 0.7 = 9.799999999999999 in floating point: r_max = floor(B sigma / 9.8) was 0, and the task rejected."""
    assert max_aggregation_rounds(budget, fee_ratio, [1.4] * 7) == rounds
    if rounds > 1:  # a real shortfall still loses the round
        assert max_aggregation_rounds(budget * 0.999, fee_ratio, [1.4] * 7) == rounds - 1
    else:
        with pytest.raises(InfeasibleBudgetError, match="r_max = floor"):
            max_aggregation_rounds(budget * 0.999, fee_ratio, [1.4] * 7)
