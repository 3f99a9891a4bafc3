"""The public-goods stage game (SPEC B.1) and its equilibrium checks (SPEC B.2)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flmarket.market.errors import SocialDilemmaError
from flmarket.market.public_goods import (
    PublicGoodsGame,
    all_outcomes,
    best_unilateral_gain,
    cheapest_fill,
    check_social_dilemma,
    is_nash_equilibrium,
    participation_unit_cost,
    require_social_dilemma,
    sample_dilemma_game,
    theta1_lower_bound,
    welfare_by_total,
    welfare_position,
    welfare_references,
)

# A hand-worked three-organisation game: theta0 = 9.82, theta1 = 20, K = 5, R = 2.
HAND = PublicGoodsGame(9.82, 20.0, 5, 2, (1.0, 0.8, 1.2), (0.12, 0.10, 0.15))


def test_hand_worked_three_organisation_example() -> None:
    assert HAND.base_precision == pytest.approx(0.491)  # 9.82 / 20
    # y = (2, 1, 0): T = 3, eps = 9.82 / (20 + 5 * 3) = 0.280571..., gain = 0.491 - 0.280571 = 0.210429
    assert HAND.precision(3) == pytest.approx(0.28057142857)
    gain = 0.21042857143
    assert HAND.revenues([2, 1, 0]) == pytest.approx([gain, 0.8 * gain, 1.2 * gain])
    assert HAND.costs([2, 1, 0]) == pytest.approx([0.24, 0.10, 0.0])
    assert HAND.utilities([2, 1, 0]) == pytest.approx([-0.02957142857, 0.06834285714, 0.25251428571])
    assert HAND.welfare([2, 1, 0]) == pytest.approx(0.29128571428)


def test_hand_worked_example_is_a_social_dilemma() -> None:
    report = check_social_dilemma(HAND)
    # g(1) = 0.491 - 9.82/25 = 0.0982 < kappa_i / rho_i for all i (0.12, 0.125, 0.125).
    assert report.assumption_1 and report.assumption_1_violators == ()
    # P(2,2,2): eps = 9.82/50 = 0.1964, gain 0.2946, revenue 3.0 * 0.2946, cost 2 * 0.37.
    assert report.full_participation_welfare == pytest.approx(3.0 * 0.2946 - 0.74)
    assert report.dilemma and report.is_social_dilemma
    assert report.theta1_bound == pytest.approx(7.5)  # K N (R-1) / (N-1) = 5 * 3 * 1 / 2


def test_participation_unit_cost() -> None:
    assert participation_unit_cost(5, 0.02, 0.5, 0.1) == pytest.approx(5 * 0.02 + 0.05)


def test_broken_conditions_name_the_numbers() -> None:
    cheap = PublicGoodsGame(9.82, 20.0, 5, 2, (1.0, 1.0), (0.05, 0.2))
    with pytest.raises(
        SocialDilemmaError, match=r"Assumption 1 fails for organisation 0: .*0\.0982.* >= kappa = 0\.05"
    ):
        require_social_dilemma(cheap)
    dear = PublicGoodsGame(9.82, 20.0, 5, 2, (1.0, 1.0), (1.0, 1.0))
    with pytest.raises(SocialDilemmaError, match=r"dilemma condition fails: P\(R,...,R\) = -"):
        require_social_dilemma(dear)
    with pytest.warns(UserWarning, match="not a social dilemma"):
        require_social_dilemma(dear, strict=False)
    low_theta = PublicGoodsGame(9.82, 1.0, 5, 3, (1.0, 1.0), (1.0, 1.0))
    assert "theta1 = 1 must be > K*N*(R-1)/(N-1) = 20" in "; ".join(check_social_dilemma(low_theta).problems(low_theta))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), players=st.integers(2, 4), rounds=st.integers(1, 3))
def test_lemma_1_no_participation_is_a_nash_equilibrium(seed: int, players: int, rounds: int) -> None:
    game = sample_dilemma_game(np.random.default_rng(seed), players, rounds)
    assert check_social_dilemma(game).is_social_dilemma
    assert is_nash_equilibrium(game, [0] * players)
    # Exhaustively: from y = 0, every unilateral deviation loses.
    for organisation, action in itertools.product(range(players), range(1, rounds + 1)):
        deviated = [0] * players
        deviated[organisation] = action
        assert game.utilities(deviated)[organisation] < 0
    # Theorem 1: full participation beats the equilibrium's welfare of 0.
    assert game.welfare([rounds] * players) > 0 == game.welfare([0] * players)


def test_full_participation_is_not_an_equilibrium_in_a_dilemma() -> None:
    gain, organisation, action = best_unilateral_gain(HAND, [2, 2, 2])
    assert gain > 0 and action < 2 and organisation in (0, 1, 2)


def test_theta1_bound_is_where_the_cost_window_closes() -> None:
    bound = theta1_lower_bound(4, 3, 5)
    assert bound == pytest.approx(5 * 4 * 2 / 3)
    with pytest.raises(SocialDilemmaError, match="no cost window"):
        sample_dilemma_game(np.random.default_rng(0), 4, 3, theta1=bound * 0.99)
    sample_dilemma_game(np.random.default_rng(0), 4, 3, theta1=bound * 1.01)


def test_outcomes_are_lexicographic_with_organisation_zero_most_significant() -> None:
    outcomes = all_outcomes(2, 2)
    assert outcomes.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2], [2, 0], [2, 1], [2, 2]]


def test_invalid_inputs_are_rejected() -> None:
    with pytest.raises(SocialDilemmaError, match="theta1: must be > 0, got -1"):
        PublicGoodsGame(9.82, -1, 5, 2, (1.0,), (1.0,))
    with pytest.raises(ValueError, match="each y_i must be in 0..2"):
        HAND.utilities([3, 0, 0])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), players=st.integers(1, 4), rounds=st.integers(1, 3), theta1=st.floats(0.5, 300))
def test_social_optimum_matches_brute_force(seed: int, players: int, rounds: int, theta1: float) -> None:
    rng = np.random.default_rng(seed)
    game = PublicGoodsGame(
        9.82, theta1, 5, rounds, tuple(rng.uniform(0.5, 1.5, players)), tuple(rng.uniform(0.0, 0.3, players))
    )
    outcomes = all_outcomes(players, rounds)
    welfare = np.array([game.welfare(outcome) for outcome in outcomes])
    references = welfare_references(game)
    assert references.optimum_welfare == pytest.approx(welfare.max(), rel=1e-12, abs=1e-12)
    assert game.welfare(references.optimum_actions) == pytest.approx(welfare.max(), rel=1e-12, abs=1e-12)
    assert sum(references.optimum_actions) == references.optimum_total
    # best welfare of each total, by brute force, against the cheapest-first fill
    totals = outcomes.sum(axis=1)
    by_total = welfare_by_total(game)
    for total in range(players * rounds + 1):
        assert by_total[total] == pytest.approx(welfare[totals == total].max(), rel=1e-12, abs=1e-12)
        assert game.welfare(cheapest_fill(game, total)) == pytest.approx(by_total[total], rel=1e-12, abs=1e-12)
    assert references.nash_welfare == 0.0
    assert references.full_cooperation_welfare == pytest.approx(welfare[-1])  # (R, ..., R) is the last outcome


def test_hand_worked_references_and_position() -> None:
    # HAND: S = 3.0; kappa sorted 0.10 (org 1), 0.12 (org 0), 0.15 (org 2); P(T) = 3 g(T) - cheapest-first cost.
    references = welfare_references(HAND)
    gains = [0.491 - 9.82 / (20 + 5 * total) for total in range(7)]
    costs = [0.0, 0.10, 0.20, 0.32, 0.44, 0.59, 0.74]
    expected = [3.0 * gain - cost for gain, cost in zip(gains, costs, strict=True)]
    assert welfare_by_total(HAND) == pytest.approx(expected)
    best = int(np.argmax(expected))
    assert references.optimum_total == best and references.optimum_welfare == pytest.approx(expected[best])
    assert references.full_cooperation_total == 6
    assert references.full_cooperation_is_optimal == (best == 6)
    assert cheapest_fill(HAND, 3).tolist() == [1, 2, 0]
    assert welfare_position(0.5, 0.0, 2.0) == 0.25 and welfare_position(2.0, 0.0, 2.0) == 1.0
    assert math.isnan(welfare_position(1.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="total: must be in 0..6, got 7"):
        cheapest_fill(HAND, 7)
