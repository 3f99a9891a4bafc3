"""Tests for market/iterated.py: outcome order, Markov matrix, stationary distribution, Monte-Carlo play."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flmarket.market.errors import MarketError
from flmarket.market.iterated import (
    ConstantPolicy,
    FiniteGame,
    MatrixPolicy,
    MixturePolicy,
    TitForTatPolicy,
    TitForTatRule,
    check_distributions,
    closed_classes,
    markov_matrix,
    point_mass,
    prisoners_dilemma,
    public_goods_finite_game,
    simulate,
    stationary_distribution,
    stationary_payoffs,
    stationary_welfare,
    strategy_matrix,
    uniform,
)
from flmarket.market.public_goods import all_outcomes, sample_dilemma_game


def random_strategy(rng: np.random.Generator, game: FiniteGame, player: int) -> np.ndarray:
    return rng.dirichlet(np.ones(game.action_counts[player]), size=game.outcome_count)


def test_prisoners_dilemma_outcomes_follow_press_dyson_order() -> None:
    game = prisoners_dilemma()
    assert game.outcomes.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert game.payoff_table.tolist() == [[3, 3], [0, 5], [5, 0], [1, 1]]
    assert game.welfare_table.tolist() == [6, 5, 5, 2]


def test_prisoners_dilemma_rejects_non_dilemma_payoffs() -> None:
    with pytest.raises(MarketError, match="T > R > P > S"):
        prisoners_dilemma(reward=6.0)


def test_public_goods_outcomes_and_payoffs_match_stage_game() -> None:
    game = sample_dilemma_game(np.random.default_rng(3), 3, 2)
    finite = public_goods_finite_game(game)
    np.testing.assert_array_equal(finite.outcomes, all_outcomes(3, 2))
    for outcome, utilities in zip(finite.outcomes, finite.payoff_table, strict=True):
        np.testing.assert_allclose(utilities, game.utilities(outcome), rtol=0, atol=1e-12)


def test_outcome_index_inverts_lexicographic_order_for_mixed_action_counts() -> None:
    game = FiniteGame((2, 3, 4), lambda outcomes: np.zeros(outcomes.shape, dtype=float))
    assert game.outcome_count == 24
    np.testing.assert_array_equal(game.outcome_index(game.outcomes), np.arange(24))
    assert game.outcomes[7].tolist() == [0, 1, 3]  # 7 = 0*12 + 1*4 + 3


def test_markov_matrix_matches_product_formula_by_brute_force() -> None:
    rng = np.random.default_rng(0)
    game = FiniteGame((2, 3, 2), lambda outcomes: outcomes.astype(float))
    strategies = [random_strategy(rng, game, player) for player in range(3)]
    matrix = markov_matrix(game, strategies)
    for k, l in itertools.product(range(game.outcome_count), repeat=2):
        expected = np.prod([strategies[j][k, game.outcomes[l, j]] for j in range(3)])
        assert matrix[k, l] == pytest.approx(expected, abs=1e-15)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)


def test_callable_and_array_strategies_give_the_same_matrix() -> None:
    game = prisoners_dilemma()
    tit_for_tat = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=float)  # copy opponent's last move

    def as_callable(k: int) -> list[float]:
        return [1.0, 0.0] if game.outcomes[k, 1] == 0 else [0.0, 1.0]

    np.testing.assert_array_equal(strategy_matrix(game, 0, as_callable), tit_for_tat)


def test_group_members_always_agree() -> None:
    rng = np.random.default_rng(1)
    game = public_goods_finite_game(sample_dilemma_game(rng, 3, 1))
    matrix = markov_matrix(game, [random_strategy(rng, game, 0), random_strategy(rng, game, 2)], [(0, 1), (2,)])
    disagree = game.outcomes[:, 0] != game.outcomes[:, 1]
    assert np.all(matrix[:, disagree] == 0)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)


def test_groups_must_partition_players() -> None:
    game = prisoners_dilemma()
    with pytest.raises(MarketError, match="groups: must partition"):
        markov_matrix(game, [np.full((4, 2), 0.5)], [(0,)])


def test_strategy_rows_must_be_distributions() -> None:
    game = prisoners_dilemma()
    with pytest.raises(MarketError, match="must sum to 1"):
        strategy_matrix(game, 0, np.full((4, 2), 0.6))
    with pytest.raises(MarketError, match="must have shape"):
        strategy_matrix(game, 0, np.full((3, 2), 0.5))


@pytest.mark.parametrize("size", [3, 200])  # the plain-Python path for one short distribution, and numpy's
def test_a_single_distribution_is_checked_like_a_matrix_row(size: int) -> None:
    valid = np.full(size, 1.0 / size)
    assert check_distributions(valid, "d") is not None
    with pytest.raises(MarketError, match=r"d: each distribution must sum to 1, got sums in \[1.5"):
        check_distributions(valid * 1.5, "d")
    negative = valid.copy()
    negative[0], negative[1] = -0.5, negative[1] + 0.5
    with pytest.raises(MarketError, match=r"d: probabilities must lie in \[0, 1\], got range \[-0.5"):
        check_distributions(negative, "d")


def test_stationary_payoffs_hand_computed_in_prisoners_dilemma() -> None:
    # Player 0 always cooperates; player 1 cooperates with probability q: v = (q, 1-q, 0, 0).
    game = prisoners_dilemma()
    q = 0.3
    payoffs = stationary_payoffs(game, [np.tile([1.0, 0.0], (4, 1)), np.tile([q, 1 - q], (4, 1))])
    np.testing.assert_allclose(payoffs, [3 * q, 3 * q + 5 * (1 - q)], atol=1e-12)
    uniform_play = np.full((4, 2), 0.5)
    assert stationary_welfare(game, [uniform_play, uniform_play]) == pytest.approx((6 + 5 + 5 + 2) / 4, abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.integers(2, 12))
def test_stationary_distribution_is_a_fixed_point(seed: int, size: int) -> None:
    rng = np.random.default_rng(seed)
    transition = rng.dirichlet(np.ones(size), size=size)
    vector = stationary_distribution(transition)
    assert vector.min() >= 0
    assert vector.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(vector @ transition, vector, atol=1e-12)


def test_stationary_distribution_with_two_absorbing_states_follows_the_initial_state() -> None:
    transition = np.array([[1.0, 0.0, 0.0], [0.25, 0.5, 0.25], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(stationary_distribution(transition, np.array([0, 1.0, 0])), [0.5, 0, 0.5], atol=1e-12)
    np.testing.assert_allclose(stationary_distribution(transition, np.array([0.2, 0, 0.8])), [0.2, 0, 0.8])
    np.testing.assert_allclose(stationary_distribution(np.eye(2), np.array([0.3, 0.7])), [0.3, 0.7])


# Classic memory-one strategies of the prisoner's dilemma: P(cooperate | CC, CD, DC, DD) from the player's view.
CLASSIC_STRATEGIES = {
    "ALLC": (1, 1, 1, 1),
    "ALLD": (0, 0, 0, 0),
    "TFT": (1, 0, 1, 0),
    "WSLS": (1, 0, 0, 1),
    "GRIM": (1, 0, 0, 0),
    "GTFT": (1, Fraction(1, 3), 1, Fraction(1, 3)),
}
OWN_VIEW = (0, 2, 1, 3)  # player 1 sees outcome CD (player 0 cooperated, it defected) as its DC


def noisy_strategy_matrix(cooperation: tuple, player: int, noise: float) -> np.ndarray:
    """Each intended action is flipped with probability `noise`; both columns are formed directly, so no
    1 - (1 - 1e-12) cancellation enters the matrix under test."""
    cooperate = [(1 - noise) * float(p) + noise * (1 - float(p)) for p in cooperation]
    defect = [(1 - noise) * (1 - float(p)) + noise * float(p) for p in cooperation]
    order = range(4) if player == 0 else OWN_VIEW
    return np.array([[cooperate[k], defect[k]] for k in order])


def solve_exactly(matrix: list[list[Fraction]], right: list[Fraction]) -> list[Fraction]:
    """x with matrix @ x = right, by Gauss-Jordan elimination in rationals."""
    size = len(right)
    rows = [list(row) + [value] for row, value in zip(matrix, right, strict=True)]
    for column in range(size):
        pivot = next(row for row in range(column, size) if rows[row][column] != 0)
        rows[column], rows[pivot] = rows[pivot], rows[column]
        for row in range(size):
            if row != column and rows[row][column] != 0:
                factor = rows[row][column] / rows[column][column]
                rows[row] = [a - factor * b for a, b in zip(rows[row], rows[column], strict=True)]
    return [rows[index][size] / rows[index][index] for index in range(size)]


def exact_long_run_distribution(transition: list[list[Fraction]], start: list[Fraction]) -> list[Fraction]:
    """The Abel mean (1 - a) start (I - a M)^{-1} at a = 1 - 10^-40, in rationals: equal to the Cesaro limit
    within about 10^-40 times the chain's mixing time (10^12 steps at noise 10^-12), whatever its classes."""
    size = len(start)
    discount = 1 - Fraction(1, 10**40)
    system = [[Fraction(int(i == j)) - discount * transition[j][i] for j in range(size)] for i in range(size)]
    return solve_exactly(system, [(1 - discount) * value for value in start])


def exact_classic_payoffs(first: tuple, second: tuple, noise: Fraction) -> list[float]:
    """Stationary payoffs of the prisoner's dilemma from the uniform first round, in rational arithmetic."""
    cooperate_0 = [(1 - noise) * p + noise * (1 - p) for p in first]
    cooperate_1 = [(1 - noise) * second[OWN_VIEW[k]] + noise * (1 - second[OWN_VIEW[k]]) for k in range(4)]
    transition = [
        [
            (cooperate_0[k] if target // 2 == 0 else 1 - cooperate_0[k])
            * (cooperate_1[k] if target % 2 == 0 else 1 - cooperate_1[k])
            for target in range(4)
        ]
        for k in range(4)
    ]
    distribution = exact_long_run_distribution(transition, [Fraction(1, 4)] * 4)
    payoffs = [[3, 3], [0, 5], [5, 0], [1, 1]]
    return [float(sum(distribution[k] * payoffs[k][player] for k in range(4))) for player in range(2)]


def test_tit_for_tat_against_itself_with_tiny_noise_is_uniform_over_outcomes() -> None:
    # The noisy TFT pair's matrix is doubly stochastic, so v is uniform: payoffs (3 + 0 + 5 + 1) / 4 = 2.25
    # (the null-space solve returned [nan, nan] here).
    game = prisoners_dilemma()
    strategies = [noisy_strategy_matrix(CLASSIC_STRATEGIES["TFT"], player, 1e-12) for player in (0, 1)]
    np.testing.assert_allclose(stationary_payoffs(game, strategies), [2.25, 2.25], rtol=0, atol=1e-12)


@pytest.mark.parametrize("noise", [Fraction(1, 10**12), Fraction(0), Fraction(1, 10**6)])
def test_stationary_payoffs_of_all_classic_pairs_match_rational_arithmetic(noise: Fraction) -> None:
    game = prisoners_dilemma()
    for first, second in itertools.product(CLASSIC_STRATEGIES, repeat=2):
        strategies = [
            noisy_strategy_matrix(CLASSIC_STRATEGIES[name], player, float(noise))
            for player, name in enumerate((first, second))
        ]
        with np.errstate(all="raise"):  # no overflow or invalid operation on the way either
            payoffs = stationary_payoffs(game, strategies)
        expected = exact_classic_payoffs(CLASSIC_STRATEGIES[first], CLASSIC_STRATEGIES[second], noise)
        np.testing.assert_allclose(payoffs, expected, rtol=0, atol=1e-9, err_msg=f"{first} vs {second}")


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.integers(2, 7))
def test_near_deterministic_irreducible_chains_match_rational_arithmetic(seed: int, size: int) -> None:
    # A random cycle keeps the chain irreducible; other transitions are 0, about 1e-12 or of order 1.
    rng = np.random.default_rng(seed)
    weights = rng.choice([0.0, 1e-12, 1.0], size=(size, size)) * rng.uniform(0.5, 2.0, size=(size, size))
    cycle = rng.permutation(size)
    weights[cycle, np.roll(cycle, -1)] += rng.choice([1e-12, 1.0], size=size)
    np.fill_diagonal(weights, 0.0)
    rows = weights.sum(axis=1, keepdims=True)
    transition = weights / np.maximum(rows, 1.0)  # off-diagonal mass < 1e-11 or <= 1; the diagonal holds the rest
    np.fill_diagonal(transition, 0.0)
    np.fill_diagonal(transition, 1.0 - transition.sum(axis=1))
    exact = [[Fraction(float(entry)) for entry in row] for row in transition]
    for index in range(size):  # the rational chain the floats stand for: each row sums to exactly 1
        exact[index][index] = 1 - sum(exact[index][j] for j in range(size) if j != index)
    # v (M - I) = 0 with the last equation replaced by sum v = 1
    system = [[exact[j][i] - int(i == j) for j in range(size)] for i in range(size - 1)] + [[Fraction(1)] * size]
    expected = solve_exactly(system, [Fraction(0)] * (size - 1) + [Fraction(1)])
    vector = stationary_distribution(transition)
    np.testing.assert_allclose(vector, [float(value) for value in expected], rtol=1e-9, atol=0)


def test_closed_classes_and_long_run_mass_of_a_reducible_chain() -> None:
    # 0 -> {1, 2} transient; {1, 2} a periodic closed class, {3} absorbing; 4 -> 3 only.
    transition = np.array(
        [
            [0.2, 0.3, 0.0, 0.5, 0.0],
            [0.0, 0.0, 1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0, 0.0],
        ]
    )
    assert [members.tolist() for members in closed_classes(transition)] == [[1, 2], [3]]
    # From 0: leaves to 1 with 0.3 / 0.8 and to 3 with 0.5 / 0.8; the two-cycle is averaged (Cesaro). From the
    # uniform start the cycle gets 0.2 + 0.2 + 0.2 * 0.375 = 0.475 and state 3 the other 0.525.
    np.testing.assert_allclose(
        stationary_distribution(transition, np.array([1.0, 0, 0, 0, 0])), [0, 0.1875, 0.1875, 0.625, 0], atol=1e-15
    )
    np.testing.assert_allclose(stationary_distribution(transition), [0, 0.2375, 0.2375, 0.525, 0], atol=1e-15)


def test_stationary_distribution_rejects_non_finite_or_non_square_input_with_the_reason() -> None:
    with pytest.raises(MarketError, match="transition: entries must be finite, got 2 NaN or inf"):
        stationary_distribution(np.array([[np.nan, 1.0], [0.5, np.nan]]))
    with pytest.raises(MarketError, match=r"transition: must be a non-empty square matrix, got shape \(2, 3\)"):
        stationary_distribution(np.full((2, 3), 1 / 3))
    with pytest.raises(MarketError, match=r"initial: must have shape \(3,\)"):
        stationary_distribution(np.eye(3), np.array([0.5, 0.5]))


def test_tit_for_tat_default_ranges_and_threshold() -> None:
    rule = TitForTatRule.default(players=4, rounds=3)
    assert (rule.threshold, rule.low_actions, rule.high_actions) == (6.0, (0, 1), (2, 3))
    rows = rule.distribution(np.array([5, 6]))
    np.testing.assert_allclose(rows, [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    even = TitForTatRule.default(players=3, rounds=2)
    assert (even.low_actions, even.high_actions) == ((0, 1), (1, 2))
    with pytest.raises(MarketError, match="low_actions"):
        TitForTatRule(rounds=2, threshold=1.0, low_actions=(3,), high_actions=(1,))


def test_constant_policies_play_from_the_second_round_and_first_round_is_uniform() -> None:
    game_parameters = sample_dilemma_game(np.random.default_rng(5), 3, 2)
    game = public_goods_finite_game(game_parameters)
    full = ConstantPolicy(point_mass(3, 2))
    result = simulate(game, [full, full, full], rounds=4, repetitions=400, rng=np.random.default_rng(0))
    np.testing.assert_allclose(result.mean_welfare[1:], game_parameters.welfare([2, 2, 2]), rtol=0, atol=1e-12)
    first_round_expected = game.welfare_table.mean()
    assert abs(result.mean_welfare[0] - first_round_expected) < 5 * result.welfare_standard_error[0]


def test_simulation_is_reproducible_for_a_seed() -> None:
    game = prisoners_dilemma()
    rng = np.random.default_rng(9)
    policies = [MatrixPolicy(game, 0, random_strategy(rng, game, 0)), ConstantPolicy(uniform(2))]
    first = simulate(game, policies, 10, 50, np.random.default_rng(4))
    second = simulate(game, policies, 10, 50, np.random.default_rng(4))
    np.testing.assert_array_equal(first.mean_welfare, second.mean_welfare)
    np.testing.assert_array_equal(first.mean_actions, second.mean_actions)


def test_monte_carlo_per_round_welfare_matches_markov_chain_propagation() -> None:
    rng = np.random.default_rng(11)
    game = public_goods_finite_game(sample_dilemma_game(rng, 2, 2))
    strategies = [random_strategy(rng, game, player) for player in range(2)]
    transition = markov_matrix(game, strategies)
    distribution = np.full(game.outcome_count, 1.0 / game.outcome_count)  # uniform first round
    expected = []
    for _ in range(6):
        expected.append(distribution @ game.welfare_table)
        distribution = distribution @ transition
    policies = [MatrixPolicy(game, j, strategies[j]) for j in range(2)]
    result = simulate(game, policies, 6, 20_000, np.random.default_rng(2))
    assert np.all(np.abs(result.mean_welfare - expected) < 5 * result.welfare_standard_error)


def test_tit_for_tat_policy_matrix_follows_total_participation() -> None:
    game = public_goods_finite_game(sample_dilemma_game(np.random.default_rng(0), 2, 2))
    policy = TitForTatPolicy(TitForTatRule.default(2, 2))
    matrix = policy.distribution(game.outcomes, game.outcome_count)
    totals = game.outcomes.sum(axis=1)
    np.testing.assert_allclose(matrix[totals < 2], np.tile([0.5, 0.5, 0], ((totals < 2).sum(), 1)))
    np.testing.assert_allclose(matrix[totals >= 2], np.tile([0, 0.5, 0.5], ((totals >= 2).sum(), 1)))


def test_mixture_keeps_one_component_per_repetition() -> None:
    game = prisoners_dilemma()
    mixed = MixturePolicy([ConstantPolicy(point_mass(2, 0)), ConstantPolicy(point_mass(2, 1))])
    other = ConstantPolicy(point_mass(2, 0))
    result = simulate(game, [mixed, other], 5, 4000, np.random.default_rng(3))
    # From round 2 each repetition plays its component's fixed action, so the mean action is constant.
    assert np.all(result.mean_actions[1:, 0] == result.mean_actions[1, 0])
    assert abs(result.mean_actions[1, 0] - 0.5) < 5 * 0.5 / np.sqrt(4000)


def test_mixture_needs_start() -> None:
    mixed = MixturePolicy([ConstantPolicy(point_mass(2, 0))])
    with pytest.raises(MarketError, match="start"):
        mixed.distribution(None, 3)


def test_simulate_checks_its_arguments() -> None:
    game = prisoners_dilemma()
    policy = ConstantPolicy(uniform(2))
    with pytest.raises(MarketError, match="rounds: must be >= 1, got 0"):
        simulate(game, [policy, policy], 0, 5, np.random.default_rng(0))
    with pytest.raises(MarketError, match="has 3 actions"):
        simulate(game, [policy, ConstantPolicy(uniform(3))], 2, 5, np.random.default_rng(0))
