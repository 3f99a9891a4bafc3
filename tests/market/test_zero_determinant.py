"""Tests for market/zero_determinant.py: feasibility, welfare control, reduction, alliances, Press-Dyson."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flmarket.market.errors import MarketError
from flmarket.market.iterated import (
    ConstantPolicy,
    FiniteGame,
    MatrixPolicy,
    TitForTatPolicy,
    TitForTatRule,
    point_mass,
    prisoners_dilemma,
    public_goods_finite_game,
    simulate,
    stationary_payoffs,
    stationary_welfare,
    uniform,
)
from flmarket.market.public_goods import PublicGoodsGame, sample_dilemma_game
from flmarket.market.zero_determinant import (
    ControlledGame,
    InfeasibleTargetError,
    WelfareExtremes,
    ZeroDeterminantPolicy,
    alliance_maxima,
    design_matrix,
    design_mmzd,
    design_mmzda,
    design_zero_determinant,
    finite_game_extremes,
    largest_enforceable_welfare,
    linear_zero_determinant_strategy,
    paper_maximum,
    single_action_interval,
)


def first_game(players: int, rounds: int, alliance: tuple[int, ...], seed: int = 0) -> PublicGoodsGame:
    """The first sampled dilemma game (seeds seed, seed+1, ...) whose controller has an enforceable target."""
    for offset in range(200):
        game = sample_dilemma_game(np.random.default_rng(seed + offset), players, rounds)
        if largest_enforceable_welfare(ControlledGame(game, alliance).extremes()).feasible:
            return game
    raise AssertionError("no feasible instance found")


def opponent_matrices(game: FiniteGame, player: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """ALLC, ALLD, Rand, TFT and two random memory-one strategies for `player` as matrices."""
    count = game.action_counts[player]
    outcomes = game.outcomes
    tit_for_tat = TitForTatPolicy(TitForTatRule.default(game.players, count - 1))
    return {
        "ALLC": np.tile(point_mass(count, count - 1), (game.outcome_count, 1)),
        "ALLD": np.tile(point_mass(count, 0), (game.outcome_count, 1)),
        "Rand": np.tile(uniform(count), (game.outcome_count, 1)),
        "TFT": tit_for_tat.distribution(outcomes, game.outcome_count),
        "random-1": rng.dirichlet(np.ones(count), size=game.outcome_count),
        "random-2": rng.dirichlet(np.full(count, 0.3), size=game.outcome_count),
    }


# ----------------------------------------------------------------------------------------------------------
# Hand-computed cases.


def test_hand_computed_extremes_and_intervals_in_a_two_organisation_game() -> None:
    # theta0 = theta1 = 10, K = 5, R = 1: g(0) = 0, g(1) = 1/3, g(2) = 1/2; rho = (2, 2) so sum rho = 4.
    game = PublicGoodsGame(10.0, 10.0, 5, 1, (2.0, 2.0), (1.0, 1.2))
    # s(0,0) = 0, s(0,1) = 4/3 - 1.2 = 2/15, s(1,0) = 4/3 - 1 = 1/3, s(1,1) = 2 - 2.2 = -1/5.
    for method in ("reduction", "enumeration"):
        extremes = ControlledGame(game, (0,)).extremes(method)
        np.testing.assert_allclose(extremes.lowest, [0.0, -0.2])
        np.testing.assert_allclose(extremes.highest, [2 / 15, 1 / 3])
    extremes = ControlledGame(game, (0,)).extremes()
    assert single_action_interval(extremes, 0, 1) == pytest.approx((2 / 15, -0.2))
    assert single_action_interval(extremes, 0, -1) == pytest.approx((1 / 3, 0.0))
    assert not largest_enforceable_welfare(extremes).feasible
    assert paper_maximum(extremes)[0] == pytest.approx(0.0)
    # The alliance of both: y_A in {0, 1} with s' = 0 and -1/5; a_lo = 0, a_hi = 1 enforces P* in [-1/5, 0].
    both = ControlledGame(game, (0, 1)).extremes()
    np.testing.assert_allclose(both.lowest, [0.0, -0.2])
    assert largest_enforceable_welfare(both).value == pytest.approx(0.0)


def test_prisoners_dilemma_welfare_control_hand_computed() -> None:
    # Player 0's outcomes: C -> {CC: 6, CD: 5}, D -> {DC: 5, DD: 2}. Only P* = 5 is enforceable: by a* = C
    # with phi < 0 (phi = -0.9 / max|s - 5| = -0.3 gives p(C|.) = (1 - 0.3, 1 - 0, 0 - 0, 0 + 0.9)), or
    # equivalently by a* = D with phi = +0.3 (p(D|.) = (0.3, 0, 1, 0.1)); the default picks the larger action.
    game = prisoners_dilemma()
    extremes = finite_game_extremes(game, 0)
    assert largest_enforceable_welfare(extremes).value == 5.0
    cooperate = design_zero_determinant(extremes, mode="exact", controlled_action=0, sign=-1)
    assert (cooperate.target, cooperate.phi, cooperate.form) == (5.0, pytest.approx(-0.3), "single")
    default = design_zero_determinant(extremes, mode="exact")
    assert (default.target, default.controlled_action, default.sign) == (5.0, 1, 1)
    assert default.phi == pytest.approx(0.3)
    matrix = design_matrix(game, 0, cooperate)
    np.testing.assert_allclose(matrix[:, 0], [0.7, 1.0, 0.0, 0.9])
    np.testing.assert_allclose(design_matrix(game, 0, default), matrix)
    for opponent in opponent_matrices(game, 1, np.random.default_rng(0)).values():
        assert stationary_welfare(game, [matrix, opponent]) == pytest.approx(5.0, abs=1e-9)


def test_press_dyson_extortion_strategy_and_its_relation() -> None:
    # s_X - P = chi (s_Y - P) with chi = 3: relation s_X - 3 s_Y + 2 = (-4, -13, 7, 0); phi = 1/26 gives
    # Press & Dyson's p = (11/13, 1/2, 7/26, 0).
    game = prisoners_dilemma()
    extortion = linear_zero_determinant_strategy(game, 0, 0, [1.0, -3.0], 2.0, phi=1 / 26)
    np.testing.assert_allclose(extortion.matrix[:, 0], [11 / 13, 1 / 2, 7 / 26, 0.0])
    default_phi = linear_zero_determinant_strategy(game, 0, 0, [1.0, -3.0], 2.0)
    assert default_phi.phi == pytest.approx(1 / 13)
    rng = np.random.default_rng(1)
    for strategy in (extortion, default_phi):
        for opponent in opponent_matrices(game, 1, rng).values():
            score_x, score_y = stationary_payoffs(game, [strategy.matrix, opponent])
            assert score_x - 1.0 == pytest.approx(3.0 * (score_y - 1.0), abs=1e-9)


def test_press_dyson_equalizer_sets_the_opponent_score() -> None:
    # s_Y = 2: relation s_Y - 2 = (1, 3, -2, -1); phi = -1/3 gives p = (2/3, 0, 2/3, 1/3).
    game = prisoners_dilemma()
    equalizer = linear_zero_determinant_strategy(game, 0, 0, [0.0, 1.0], -2.0, phi=-1 / 3)
    np.testing.assert_allclose(equalizer.matrix[:, 0], [2 / 3, 0.0, 2 / 3, 1 / 3])
    for opponent in opponent_matrices(game, 1, np.random.default_rng(2)).values():
        assert stationary_payoffs(game, [equalizer.matrix, opponent])[1] == pytest.approx(2.0, abs=1e-9)


def test_linear_relation_that_cannot_be_enforced_is_rejected() -> None:
    game = prisoners_dilemma()
    with pytest.raises(InfeasibleTargetError, match="changes sign"):
        linear_zero_determinant_strategy(game, 0, 0, [0.0, 1.0], -4.0)  # s_Y = 4 > R is out of reach
    with pytest.raises(InfeasibleTargetError, match="outside"):
        linear_zero_determinant_strategy(game, 0, 0, [0.0, 1.0], -2.0, phi=-1.0)


# ----------------------------------------------------------------------------------------------------------
# Welfare control against every opponent.


def test_feasible_single_mmzd_enforces_its_target_against_every_opponent() -> None:
    game = first_game(2, 3, (1,))
    finite = public_goods_finite_game(game)
    design = design_mmzd(game, 1)
    assert design.feasible and design.target == design.largest_feasible
    zd = design_matrix(finite, 1, design)
    for name, opponent in opponent_matrices(finite, 0, np.random.default_rng(3)).items():
        welfare = stationary_welfare(finite, [opponent, zd])
        assert welfare == pytest.approx(design.target, abs=1e-9), name


@pytest.mark.parametrize(("players", "rounds", "alliance"), [(3, 2, (0, 2)), (4, 2, (1, 2, 3))])
def test_feasible_alliance_enforces_its_target_against_every_opponent(
    players: int, rounds: int, alliance: tuple[int, ...]
) -> None:
    game = first_game(players, rounds, alliance)
    finite = public_goods_finite_game(game)
    design = design_mmzda(game, alliance)
    assert design.feasible
    zd = design_matrix(finite, alliance[0], design)
    outsiders = [j for j in range(players) if j not in alliance]
    groups = [alliance] + [(j,) for j in outsiders]
    rng = np.random.default_rng(4)
    for name in ("ALLC", "ALLD", "Rand", "TFT", "random-1", "random-2"):
        strategies = [zd] + [opponent_matrices(finite, j, rng)[name] for j in outsiders]
        welfare = stationary_welfare(finite, strategies, groups)
        assert welfare == pytest.approx(design.target, abs=1e-9), name


def test_monte_carlo_average_welfare_approaches_the_target_within_the_zd_bound() -> None:
    # Summing the ZD identity over rounds: |mean_t E[s_t] - P*| <= 1 / (|phi| T); plus sampling error.
    game = first_game(3, 2, (0, 1))
    finite = public_goods_finite_game(game)
    design = design_mmzda(game, (0, 1))
    rounds, repetitions = 200, 400
    for opponent in (ConstantPolicy(point_mass(3, 0)), TitForTatPolicy(TitForTatRule.default(3, 2))):
        policy = ZeroDeterminantPolicy(design, finite.welfare, 0)
        result = simulate(finite, [policy, opponent], rounds, repetitions, np.random.default_rng(5), [(0, 1), (2,)])
        sampling = 5 * result.welfare_standard_error.mean() / np.sqrt(rounds)
        bound = 1 / (abs(design.phi) * rounds) + sampling
        assert abs(result.mean_welfare.mean() - design.target) <= bound


def test_paper_mode_reports_infeasibility_and_welfare_depends_on_opponents() -> None:
    game = sample_dilemma_game(np.random.default_rng(7), 3, 2)
    finite = public_goods_finite_game(game)
    design = design_mmzd(game, 0, mode="paper")
    assert not design.feasible and not design.opponent_invariant
    assert design.lower_bound > design.upper_bound == design.target
    zd = design_matrix(finite, 0, design)
    opponents = opponent_matrices(finite, 1, np.random.default_rng(8))
    welfare = {
        name: stationary_welfare(finite, [zd, opponents[name], opponents[name]]) for name in ("ALLC", "ALLD", "Rand")
    }
    assert max(welfare.values()) - min(welfare.values()) > 1e-3


def test_exact_mode_without_enforceable_target_is_flagged_and_unplayable() -> None:
    game = sample_dilemma_game(np.random.default_rng(7), 3, 2)
    design = design_mmzd(game, 0, mode="exact")
    assert not design.feasible and not design.playable
    with pytest.raises(InfeasibleTargetError, match="use mode='paper'"):
        design.probabilities(0.0, 0)
    with pytest.raises(InfeasibleTargetError, match="not enforceable"):
        design_mmzd(game, 0, mode="exact", target=0.1)


def test_explicit_target_inside_the_feasible_interval_is_enforced() -> None:
    game = first_game(3, 2, (0, 1))
    best = design_mmzda(game, (0, 1))
    target = best.lower_bound + 0.5 * (best.upper_bound - best.lower_bound)
    design = design_mmzda(game, (0, 1), target=target)
    finite = public_goods_finite_game(game)
    zd = design_matrix(finite, 0, design)
    opponent = np.random.default_rng(9).dirichlet(np.ones(3), size=finite.outcome_count)
    assert stationary_welfare(finite, [zd, opponent], [(0, 1), (2,)]) == pytest.approx(target, abs=1e-9)


def test_phi_rule_uses_the_scale_c() -> None:
    game = first_game(3, 2, (0, 1))
    extremes = ControlledGame(game, (0, 1)).extremes()
    for scale in (0.5, 0.9, 1.0):
        design = design_zero_determinant(extremes, mode="paper", phi_scale=scale)
        assert abs(design.phi) * extremes.largest_deviation(design.target) == pytest.approx(scale)
        assert np.sign(design.phi) == design.sign
    with pytest.raises(MarketError, match="phi_scale"):
        design_zero_determinant(extremes, mode="paper", phi_scale=1.5)


def test_design_probabilities_are_distributions_and_unclipped_when_feasible() -> None:
    game = first_game(3, 2, (0, 1))
    design = design_mmzda(game, (0, 1))
    welfare = np.linspace(-2.0, 2.0, 7)
    for action in range(3):
        rows = design.probabilities(welfare, np.full(7, action))
        np.testing.assert_allclose(rows.sum(axis=1), 1.0)
        assert rows.min() >= 0
    finite = public_goods_finite_game(game)
    agree = finite.outcomes[:, 0] == finite.outcomes[:, 1]
    raw = design.action_weights()[finite.outcomes[agree, 0]] + design.phi * (
        finite.welfare_table[agree] - design.target
    )
    assert raw.min() >= -1e-12 and raw.max() <= 1 + 1e-12


def test_invalid_inputs_name_the_field() -> None:
    game = sample_dilemma_game(np.random.default_rng(0), 3, 2)
    with pytest.raises(MarketError, match="controllers: must be distinct"):
        ControlledGame(game, (0, 0))
    with pytest.raises(MarketError, match="mode: must be one of"):
        design_mmzd(game, 0, mode="fast")  # type: ignore[arg-type]
    with pytest.raises(MarketError, match="sign: must be"):
        single_action_interval(ControlledGame(game, (0,)).extremes(), 0, 2)
    with pytest.raises(MarketError, match="method"):
        ControlledGame(game, (0,)).extremes("guess")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------------
# Reduction against enumeration, and Theorem 2.


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    players=st.integers(2, 7),
    rounds=st.integers(1, 3),
    data=st.data(),
)
def test_reduction_equals_enumeration(seed: int, players: int, rounds: int, data: st.DataObject) -> None:
    if players == 7 and rounds == 3:
        rounds = 2  # keep (R+1)^N small enough for a fast test
    game = sample_dilemma_game(np.random.default_rng(seed), players, rounds)
    size = data.draw(st.integers(1, players))
    alliance = tuple(data.draw(st.permutations(range(players)))[:size])
    controlled = ControlledGame(game, alliance)
    fast, slow = controlled.extremes_by_reduction(), controlled.extremes_by_enumeration()
    np.testing.assert_allclose(fast.lowest, slow.lowest, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast.highest, slow.highest, rtol=0, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 100_000), players=st.integers(2, 12), rounds=st.integers(1, 4))
def test_theorem_2_alliance_maximum_never_decreases(seed: int, players: int, rounds: int) -> None:
    rng = np.random.default_rng(seed)
    game = sample_dilemma_game(rng, players, rounds)
    curve = alliance_maxima(game, rng.permutation(players))
    for smaller, larger in zip(curve, curve[1:], strict=False):
        assert larger.paper_maximum >= smaller.paper_maximum - 1e-12
        if smaller.largest_feasible is not None:
            assert larger.largest_feasible is not None
            assert larger.largest_feasible >= smaller.largest_feasible - 1e-12
    # M = N: s'(y) = (sum rho) g(N y) - (sum kappa) y = P(y, ..., y); the largest enforceable is its max.
    everyone = max(game.welfare(np.full(players, y)) for y in range(rounds + 1))
    assert curve[-1].largest_feasible == pytest.approx(everyone, abs=1e-12)
    full = game.welfare(np.full(players, rounds))
    assert curve[-1].relative_largest_feasible == pytest.approx(everyone / full)


def test_reduction_scales_to_a_thousand_organisations() -> None:
    game = sample_dilemma_game(np.random.default_rng(0), 1000, 3)
    extremes = ControlledGame(game, (0,)).extremes_by_reduction()
    assert isinstance(extremes, WelfareExtremes)
    assert np.all(extremes.lowest <= extremes.highest)


def test_zero_determinant_policy_matches_design_matrix() -> None:
    game = first_game(2, 2, (0,))
    finite = public_goods_finite_game(game)
    design = design_mmzd(game, 0)
    policy = ZeroDeterminantPolicy(design, finite.welfare, 0)
    np.testing.assert_allclose(
        policy.distribution(finite.outcomes, finite.outcome_count), design_matrix(finite, 0, design)
    )
    np.testing.assert_allclose(policy.distribution(None, 2), np.full((2, 3), 1 / 3))
    matrix_policy = MatrixPolicy(finite, 0, design_matrix(finite, 0, design))
    np.testing.assert_allclose(matrix_policy.matrix, design_matrix(finite, 0, design))
