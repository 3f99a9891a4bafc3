"""Task terms and round settlement: the BGFL mechanism functions composed (B 8, B 10 - B 14, B 24)."""

from __future__ import annotations

import math
from types import MappingProxyType

import numpy as np
import pytest

from flmarket.market.errors import InfeasibleBudgetError
from flmarket.market.mechanism import configure_task, equilibrium_iterations, leave_one_out_values, settle_round
from flmarket.market.shapley import exact_integer_sum_game_shapley


def test_task_terms_by_hand() -> None:
    terms = configure_task(5000.0, 0.2, [1.4] * 7, rounds_wanted=3)  # Table 3: B = 5000, sigma = 0.2, T = 7
    assert terms.round_cap == 102  # floor(1000 / 9.8), SPEC A.5
    assert terms.rounds == 3
    assert terms.pool_per_round == pytest.approx(4000 / 102)
    assert configure_task(5000.0, 0.2, [1.4] * 7, rounds_wanted=500).rounds == 102
    with pytest.raises(InfeasibleBudgetError, match=r"r_max = floor\(2.0/9.8"):
        configure_task(10.0, 0.2, [1.4] * 7, rounds_wanted=3)


def test_equilibrium_iterations_by_hand() -> None:
    terms = configure_task(1000.0, 0.2, [1.4] * 7, rounds_wanted=3)
    # gamma = 1000 / (3 * 20) - 9.8 / 20 = 16.18 -> 16; (B 12) with r = 3: (800/3) / (2 * 10) = 13.3 -> 13.
    assert equilibrium_iterations(terms, [10.0, 10.0]) == 13
    # Dear claims: gamma = 1000 / (3 * 2000) - 9.8 / 2000 = 0.16 -> 0.
    assert equilibrium_iterations(terms, [1000.0, 1000.0]) == 0
    assert equilibrium_iterations(terms, []) == 0


class _SumGame:
    """v(S) = g(sum of contributions), like the surrogate backend's coalition value."""

    def __init__(self, contributions: dict[int, float], g) -> None:
        self.contributions = MappingProxyType(contributions)
        self.g = g

    def value_of_total(self, total: float) -> float:
        return self.g(total)

    def values_of_totals(self, totals: np.ndarray) -> np.ndarray:
        return self.g(np.asarray(totals, dtype=float))

    def __call__(self, coalition: frozenset) -> float:
        return self.g(sum(self.contributions[member] for member in coalition)) if coalition else 0.0


def test_settlement_of_an_additive_round_by_hand() -> None:
    game = _SumGame({1: 1.0, 2: 2.0, 3: 3.0}, lambda total: 0.5 * total)
    settlement = settle_round(
        [1, 2, 3], game, pool=12.0, local_iterations=[1, 1, 1], unit_costs=[1.0, 1.0, 1.0], rng=np.random.default_rng(0)
    )
    assert settlement.shapley.exact
    assert settlement.shapley.values.tolist() == pytest.approx([0.5, 1.0, 1.5])
    assert settlement.rewards == pytest.approx((2.0, 4.0, 6.0))  # 12 * xi / 3
    assert settlement.paid == pytest.approx(12.0)
    # U_i = rho_i * (v(S) - v(S - i)) = (2 * 0.5, 4 * 1, 6 * 1.5)
    assert settlement.utilities == pytest.approx((1.0, 4.0, 9.0))
    assert settlement.rationality.satisfied
    assert settlement.coalition_value == pytest.approx(3.0)


def test_settlement_reports_individual_rationality_violations() -> None:
    game = _SumGame({1: 1.0, 2: 1.0}, lambda total: total)
    settlement = settle_round(
        [1, 2], game, pool=2.0, local_iterations=[1, 3], unit_costs=[0.5, 0.5], rng=np.random.default_rng(0)
    )
    # rewards 1 and 1; provider index 1 spends 3 * 0.5 = 1.5 > 1: short by 0.5.
    (violation,) = settlement.rationality.violations
    assert violation.provider == 1 and violation.condition == "reward" and violation.shortfall == pytest.approx(0.5)


def test_sum_games_with_integer_contributions_are_exact_beyond_exact_max() -> None:
    contributions = {player: float(player % 4 + 1) for player in range(30)}
    game = _SumGame(contributions, np.log1p)
    players = list(contributions)
    settlement = settle_round(
        players, game, pool=10.0, local_iterations=[1] * 30, unit_costs=[0.01] * 30, rng=np.random.default_rng(0)
    )
    assert settlement.shapley.exact and settlement.shapley.method == "exact-integer-sum-game"
    # Efficiency holds exactly, and equal contributions get equal values (symmetry).
    assert settlement.shapley.values.sum() == pytest.approx(game(frozenset(players)), rel=1e-12)
    assert settlement.shapley.value_of(0) == pytest.approx(settlement.shapley.value_of(4), rel=1e-12)


@pytest.mark.parametrize(("honest", "riders"), [(40, 10), (5, 2)])  # above and below exact_max players
def test_rounds_where_everyone_trains_the_same_gamma_are_exact_by_symmetry(honest: int, riders: int) -> None:
    # Honest providers with 3 iterations each and free riders whose updates count for nothing.
    count = honest + riders
    contributions = {player: (3.0 if player < honest else 0.0) for player in range(count)}
    game = _SumGame(contributions, np.log1p)
    players = list(contributions)
    settlement = settle_round(
        players, game, pool=10.0, local_iterations=[3] * count, unit_costs=[0.01] * count, rng=np.random.default_rng(0)
    )
    assert settlement.shapley.exact and settlement.shapley.method == "symmetric-sum-game"
    reference = exact_integer_sum_game_shapley(np.array([int(contributions[p]) for p in players]), np.log1p)
    np.testing.assert_allclose(settlement.shapley.values, reference, rtol=1e-12, atol=1e-15)
    assert settlement.shapley.values[honest:].tolist() == [0.0] * riders


def test_large_rounds_use_the_stratified_estimator_and_pay_the_pool() -> None:
    rng = np.random.default_rng(1)
    contributions = {player: float(value) for player, value in enumerate(rng.uniform(1, 5, 300))}
    game = _SumGame(contributions, np.log1p)
    players = list(contributions)
    settlement = settle_round(
        players, game, pool=100.0, local_iterations=[1] * 300, unit_costs=[0.01] * 300, rng=np.random.default_rng(2)
    )
    assert not settlement.shapley.exact and "strat" in settlement.shapley.method
    assert settlement.paid == pytest.approx(100.0)
    assert sum(settlement.rewards) == pytest.approx(100.0)
    # Efficiency of the estimate and a monotone game: bigger contributions earn more.
    assert settlement.shapley.values.sum() == pytest.approx(game(frozenset(players)), rel=0.02)
    order = np.argsort([contributions[p] for p in players])
    assert np.corrcoef(np.arange(300), np.asarray(settlement.rewards)[order])[0, 1] > 0.95


def test_leave_one_out_fast_path_equals_the_generic_one() -> None:
    game = _SumGame({1: 1.0, 2: 2.0, 3: 4.0}, np.sqrt)
    fast = leave_one_out_values((1, 2, 3), game)
    slow = leave_one_out_values((1, 2, 3), lambda coalition: game(coalition))
    assert fast == pytest.approx(slow)
    assert fast[0] == pytest.approx(math.sqrt(7) - math.sqrt(6))  # v(S) = sqrt(1 + 2 + 4), v(S - 1) = sqrt(6)


def test_empty_round_pays_nothing() -> None:
    settlement = settle_round([], lambda coalition: 0.0, 10.0, [], [], np.random.default_rng(0))
    assert settlement.paid == 0.0 and settlement.players == ()
