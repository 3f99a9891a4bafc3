"""Tests for market/iterated.py: outcome order, Markov matrix, stationary distribution, Monte-Carlo play."""

from __future__ import annotations

import itertools

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
