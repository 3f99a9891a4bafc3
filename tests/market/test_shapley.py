"""Tests of market/shapley.py: exact (B 10) against brute force, the axioms, sampling, large markets."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from flmarket.market.errors import MarketError
from flmarket.market.shapley import (
    QuadraticMeanGame,
    exact_integer_sum_game_shapley,
    round_coalition_value,
    shapley_values,
    size_band_edges,
    stratified_sum_game_shapley,
    student_t_quantile,
    symmetric_sum_game_shapley,
)

Game = Callable[[frozenset], float]


def table_game(table: list[float]) -> Game:
    """A game on players 0..n-1 given by its value for every coalition bitmask."""

    def value(coalition: frozenset) -> float:
        return table[sum(1 << player for player in coalition)]

    return value


def brute_force_shapley(players: int, value: Game) -> np.ndarray:
    """Average marginal contribution over all n! orders (the definition, no shortcuts)."""
    totals = np.zeros(players)
    orders = list(itertools.permutations(range(players)))
    for order in orders:
        prefix: set[int] = set()
        for player in order:
            before = value(frozenset(prefix))
            prefix.add(player)
            totals[player] += value(frozenset(prefix)) - before
    return totals / len(orders)


@st.composite
def random_games(draw: st.DrawFn, max_players: int = 6) -> tuple[int, list[float]]:
    players = draw(st.integers(1, max_players))
    table = draw(st.lists(st.floats(-10, 10), min_size=1 << players, max_size=1 << players))
    return players, table


@given(random_games())
def test_exact_equals_brute_force_permutation_average(game: tuple[int, list[float]]) -> None:
    players, table = game
    result = shapley_values(range(players), table_game(table))
    assert result.exact and result.converged and result.samples == 0
    np.testing.assert_allclose(result.values, brute_force_shapley(players, table_game(table)), atol=1e-9)
    assert np.all(result.standard_errors == 0.0)


@given(random_games())
def test_efficiency(game: tuple[int, list[float]]) -> None:
    players, table = game
    values = shapley_values(range(players), table_game(table)).values
    assert values.sum() == pytest.approx(table[-1] - table[0], abs=1e-9)


@given(random_games(), st.data())
def test_symmetry(game: tuple[int, list[float]], data: st.DataObject) -> None:
    players, table = game
    if players < 2:
        return
    first, second = data.draw(st.lists(st.integers(0, players - 1), min_size=2, max_size=2, unique=True))

    def swapped(mask: int) -> int:
        bit_first, bit_second = (mask >> first) & 1, (mask >> second) & 1
        mask &= ~((1 << first) | (1 << second))
        return mask | (bit_first << second) | (bit_second << first)

    # v(S) + v(swap(S)) does not care which of the two players is in S: they are symmetric.
    symmetric = [table[mask] + table[swapped(mask)] for mask in range(1 << players)]
    values = shapley_values(range(players), table_game(symmetric)).values
    assert values[first] == pytest.approx(values[second], abs=1e-9)


@given(random_games(), st.data())
def test_null_player_gets_zero(game: tuple[int, list[float]], data: st.DataObject) -> None:
    players, table = game
    null = data.draw(st.integers(0, players - 1))
    # v'(S) = v(S minus null): the null player never changes the value.
    ignoring = [table[mask & ~(1 << null)] for mask in range(1 << players)]
    values = shapley_values(range(players), table_game(ignoring)).values
    assert values[null] == pytest.approx(0.0, abs=1e-9)


@given(
    st.integers(1, 6).flatmap(
        lambda n: st.tuples(*[st.lists(st.floats(-10, 10), min_size=1 << n, max_size=1 << n)] * 2)
    )
)
def test_additivity(tables: tuple[list[float], list[float]]) -> None:
    first, second = tables
    players = int(math.log2(len(first)))
    combined = [a + b for a, b in zip(first, second, strict=True)]
    total = shapley_values(range(players), table_game(combined)).values
    parts = (
        shapley_values(range(players), table_game(first)).values
        + shapley_values(range(players), table_game(second)).values
    )
    np.testing.assert_allclose(total, parts, atol=1e-9)


@given(st.lists(st.floats(-100, 100), min_size=1, max_size=10))
def test_additive_game_pays_each_player_its_own_value(weights: list[float]) -> None:
    def additive(coalition: frozenset) -> float:
        return sum(weights[player] for player in coalition)

    values = shapley_values(range(len(weights)), additive).values
    np.testing.assert_allclose(values, [additive(frozenset({i})) for i in range(len(weights))], atol=1e-9)


def test_exact_calls_each_coalition_once_and_keeps_player_labels() -> None:
    calls: list[frozenset] = []

    def glove(coalition: frozenset) -> float:
        # Glove game: "L" holds a left glove, "R1"/"R2" right gloves; a pair is worth 1.
        calls.append(coalition)
        return float(min(("L" in coalition), len(coalition & {"R1", "R2"})))

    result = shapley_values(["L", "R1", "R2"], glove)
    assert result.evaluations == 8 and len(set(calls)) == len(calls) == 8
    # Known values: L gets 2/3, each right glove 1/6.
    assert result.as_dict() == pytest.approx({"L": 2 / 3, "R1": 1 / 6, "R2": 1 / 6})
    assert result.value_of("R2") == pytest.approx(1 / 6)


def test_round_coalition_value_follows_spec_a5() -> None:
    seen: list[frozenset] = []

    def aggregate_quality(coalition: frozenset) -> float:
        seen.append(coalition)
        return 0.3 + 0.1 * len(coalition)

    value = round_coalition_value(aggregate_quality, previous_global_quality=0.35)
    # v(empty) = 0 without aggregating nothing; v({a, b}) = 0.5 - 0.35 = 0.15.
    assert value(frozenset()) == 0.0 and seen == []
    assert value(frozenset({"a", "b"})) == pytest.approx(0.15)
    result = shapley_values(["a", "b"], value)
    # Symmetric players share v(N) - v(empty) = 0.15.
    np.testing.assert_allclose(result.values, [0.075, 0.075])


def random_table_game(rng: np.random.Generator, players: int) -> list[float]:
    # A monotone-ish game with interactions: data size, a diminishing return and random synergies.
    sizes = rng.uniform(1.0, 10.0, players)
    noise = rng.normal(0.0, 0.3, 1 << players)
    noise[0] = 0.0
    table = []
    for mask in range(1 << players):
        total = sum(sizes[i] for i in range(players) if mask >> i & 1)
        table.append(math.sqrt(total) + noise[mask])
    return table


@pytest.mark.parametrize("players", range(8, 13))
def test_sampling_agrees_with_exact_within_three_standard_errors(players: int) -> None:
    rng = np.random.default_rng(1000 + players)
    game = table_game(random_table_game(rng, players))
    exact = shapley_values(range(players), game)
    sampled = shapley_values(
        range(players), game, rng=rng, exact_max=4, target_relative_error=0.02, exact_when_spent=False
    )
    assert not sampled.exact and sampled.samples > 0 and np.all(sampled.standard_errors > 0)
    z_scores = np.abs(sampled.values - exact.values) / sampled.standard_errors
    # Each z is (nearly) standard normal: all within 3 SE bar rare events, none beyond 5.
    assert np.mean(z_scores <= 3.0) >= 0.9
    assert np.max(z_scores) < 5.0
    # Every sampled permutation pays out v(N) - v(empty) exactly, so efficiency holds for the estimate too.
    assert sampled.values.sum() == pytest.approx(exact.values.sum(), abs=1e-9)


def test_sampling_is_reproducible_and_needs_a_generator() -> None:
    game = table_game(random_table_game(np.random.default_rng(5), 9))
    first = shapley_values(range(9), game, rng=np.random.default_rng(42), exact_max=4)
    second = shapley_values(range(9), game, rng=np.random.default_rng(42), exact_max=4)
    np.testing.assert_array_equal(first.values, second.values)
    with pytest.raises(MarketError, match="rng: a numpy Generator is required"):
        shapley_values(range(9), game, exact_max=4)


def test_sampling_stops_at_the_evaluation_budget_and_says_so() -> None:
    weights = np.random.default_rng(0).uniform(1, 10, 40)

    def noisy(coalition: frozenset) -> float:
        return math.sqrt(sum(weights[i] for i in coalition)) + (0.5 if len(coalition) % 2 else 0.0)

    result = shapley_values(
        range(40),
        noisy,
        rng=np.random.default_rng(1),
        target_relative_error=0.0,
        max_evaluations=10_000,
        min_groups=2,
        method="rotations",
    )
    assert not result.converged
    # A group is 2 * 40 permutations (40 rotations of an order and of its reverse), at most 80 * 39 new
    # calls; groups run while another one surely fits in the budget.
    assert result.evaluations <= 10_000 < result.evaluations + 80 * 39
    assert result.samples % 80 == 0 and result.samples >= 2 * 80


def test_truncation_saves_calls_in_a_saturating_game() -> None:
    weights = np.random.default_rng(2).uniform(1, 2, 30)

    def saturating(coalition: frozenset) -> float:
        return min(sum(weights[i] for i in coalition), 10.0)

    plain = shapley_values(
        range(30), saturating, rng=np.random.default_rng(3), target_relative_error=0.05, method="rotations"
    )
    truncated = shapley_values(
        range(30),
        saturating,
        rng=np.random.default_rng(3),
        target_relative_error=0.05,
        truncation_tolerance=1e-12,
        method="rotations",
    )
    assert truncated.evaluations < plain.evaluations / 2
    # Monotone game: remaining marginals after saturation are exactly zero, so nothing is lost.
    assert truncated.values.sum() == pytest.approx(10.0)
    assert np.max(np.abs(truncated.values - plain.values)) < 5 * np.max(
        plain.standard_errors + truncated.standard_errors
    )


def test_input_errors_name_the_field() -> None:
    with pytest.raises(MarketError, match="players: must be distinct"):
        shapley_values(["a", "a"], lambda coalition: 0.0)
    with pytest.raises(MarketError, match="value: must be finite"):
        shapley_values(["a"], lambda coalition: math.nan)
    with pytest.raises(MarketError, match="exact_max: must be <= 25"):
        shapley_values(["a"], lambda coalition: 0.0, exact_max=30)
    assert shapley_values([], lambda coalition: 0.0).values.size == 0


def sqrt_of_total(totals: np.ndarray) -> np.ndarray:
    return np.sqrt(np.asarray(totals, dtype=float))


@pytest.mark.parametrize("players", [1, 2, 5, 9])
def test_integer_sum_game_reference_matches_enumeration(players: int) -> None:
    weights = np.random.default_rng(players).integers(0, 7, players)
    enumerated = shapley_values(range(players), lambda coalition: float(np.sqrt(weights[list(coalition)].sum())))
    np.testing.assert_allclose(exact_integer_sum_game_shapley(weights, sqrt_of_total), enumerated.values, atol=1e-12)


def saturating(totals: np.ndarray) -> np.ndarray:
    """A learning curve that saturates within the first few players' data: the value sits at small sizes."""
    totals = np.asarray(totals, dtype=float)
    return totals / (totals + 4.0)


# sqrt: a gentle curve. saturating: uniform size bands needed thousands of permutations there and never
# converged, as the first few sizes hold most of the value and nearly all of the variance; geometric bands
# with Neyman allocation converge in a few dozen replicates.
@pytest.mark.parametrize(
    ("curve", "players", "target", "seed"), [(sqrt_of_total, 120, 0.005, 11), (saturating, 150, 0.01, 21)]
)
def test_stratified_estimator_agrees_with_the_exact_reference(
    curve: Callable[[np.ndarray], np.ndarray], players: int, target: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    weights = rng.integers(1, 11, players)
    exact = exact_integer_sum_game_shapley(weights, curve)
    result = stratified_sum_game_shapley(weights, curve, rng, target_relative_error=target)
    assert result.converged and result.relative_standard_error <= target and result.samples <= 200
    z_scores = np.abs(result.values - exact) / result.standard_errors
    assert np.mean(z_scores <= 3.0) >= 0.95 and np.max(z_scores) < 5.5
    assert np.max(np.abs(result.values - exact) / exact) < 0.05


@pytest.mark.parametrize("zeros", [0, 1, 7])
def test_symmetric_sum_games_match_the_exact_recursion(zeros: int) -> None:
    weights = np.array([4] * 9 + [0] * zeros)
    values = symmetric_sum_game_shapley(weights, saturating)
    assert values is not None
    np.testing.assert_allclose(values, exact_integer_sum_game_shapley(weights, saturating), rtol=1e-12, atol=1e-15)


def test_symmetric_sum_games_are_recognised_only_when_symmetric() -> None:
    assert symmetric_sum_game_shapley(np.array([1.0, 2.0, 2.0]), saturating) is None
    np.testing.assert_array_equal(symmetric_sum_game_shapley(np.zeros(3), saturating), np.zeros(3))
    vectors = np.array([[1.0, 2.0], [0.0, 0.0], [1.0, 2.0]])
    squares = lambda totals: np.sum(np.asarray(totals) ** 2, axis=-1)  # noqa: E731 - xi_i = x_i . X here
    np.testing.assert_allclose(symmetric_sum_game_shapley(vectors, squares), vectors @ vectors.sum(axis=0))
    assert symmetric_sum_game_shapley(np.array([[1.0, 2.0], [2.0, 1.0]]), squares) is None


@pytest.mark.parametrize(("players", "strata"), [(1, 64), (7, 64), (7, 4), (500, 64), (10_000, 64), (10_000, 2)])
def test_size_bands_cover_every_size_once_and_are_narrow_at_small_sizes(players: int, strata: int) -> None:
    edges = size_band_edges(players, strata)
    assert edges[0] == 0 and edges[-1] == players and np.all(np.diff(edges) > 0)
    if strata >= players:
        np.testing.assert_array_equal(edges, np.arange(players + 1))
    else:
        assert len(edges) - 1 <= strata + 1
        assert edges[1] == 1  # the empty coalition (k = 0) is a band of its own
        widths = np.diff(edges)
        assert widths[0] <= widths[-1]


def test_stratified_estimator_on_a_closed_form_game_with_vector_features() -> None:
    # v(S) = (sum_S a)^2 + (sum_S b)^2 with features (a, b): xi_i = a_i A + b_i B exactly (A, B the totals).
    rng = np.random.default_rng(12)
    features = rng.uniform(0.0, 1.0, (2000, 2))

    def squares(totals: np.ndarray) -> np.ndarray:
        return np.sum(totals**2, axis=-1)

    expected = features @ features.sum(axis=0)
    result = stratified_sum_game_shapley(features, squares, rng, strata=32, target_relative_error=0.01)
    assert result.converged and result.samples >= 8
    assert np.max(np.abs(result.values - expected)) / np.mean(expected) < 0.05
    assert result.values.sum() == pytest.approx(expected.sum(), rel=0.01)


def test_stratified_estimator_is_exact_for_additive_games_and_reproducible() -> None:
    features = np.arange(1.0, 51.0)
    result = stratified_sum_game_shapley(features, lambda totals: 3.0 * totals, np.random.default_rng(0))
    np.testing.assert_allclose(result.values, 3.0 * features)
    again = stratified_sum_game_shapley(features, sqrt_of_total, np.random.default_rng(9))
    np.testing.assert_array_equal(
        again.values, stratified_sum_game_shapley(features, sqrt_of_total, np.random.default_rng(9)).values
    )
    with pytest.raises(MarketError, match="features: must be a non-empty"):
        stratified_sum_game_shapley(np.zeros((0,)), sqrt_of_total, np.random.default_rng(0))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=8), st.integers(0, 2**32 - 1))
def test_stratified_estimator_is_unbiased_in_expectation_small_games(weights: list[int], seed: int) -> None:
    # With one stratum per size and many replicates the estimate is close to the exact reference.
    weight_array = np.array(weights)
    exact = exact_integer_sum_game_shapley(weight_array, sqrt_of_total)
    result = stratified_sum_game_shapley(
        weight_array,
        sqrt_of_total,
        np.random.default_rng(seed),
        strata=len(weights),
        min_replicates=400,
        max_replicates=400,
    )
    assert np.all(np.abs(result.values - exact) <= 6 * result.standard_errors + 1e-12)


def averaged_model_game(rng: np.random.Generator, players: int, dimension: int = 6) -> Game:
    """A non-sum game like the torch backend's: v(S) is the quality gain of the data-weighted average of S's
    updates, Q = 2 / (10 + ||w - w*||^2) (B 7's shape), with a fifth of the providers much noisier."""
    sizes = rng.integers(50, 500, players).astype(float)
    noise = np.where(rng.random(players) < 0.2, 3.0, 0.5)
    updates = rng.normal(0.0, 1.0, (players, dimension)) * noise[:, None]
    start = rng.normal(0.0, 2.0, dimension)

    def quality(weights: np.ndarray) -> float:
        return 2.0 / (10.0 + float(weights @ weights))

    base = quality(start)

    def value(coalition: frozenset) -> float:
        if not coalition:
            return 0.0
        members = sorted(coalition)
        return quality(sizes[members] @ updates[members] / sizes[members].sum()) - base

    return value


@pytest.mark.slow  # 240 estimates, about 15 s
def test_stratified_intervals_cover_about_95_percent_on_a_small_non_sum_game() -> None:
    # 240 independent runs on one 10-player game, a fixed budget (no early stop), one player checked per run
    # (players in turn) so the trials are independent: coverage of the 95 % t-interval is binomial(240, 0.95).
    players, runs = 10, 240
    model = averaged_model_game(np.random.default_rng(7), players)
    game = table_game([model(frozenset(i for i in range(players) if mask >> i & 1)) for mask in range(1 << players)])
    exact = shapley_values(range(players), game).values
    covered = 0
    for run in range(runs):
        result = shapley_values(
            range(players),
            game,
            rng=np.random.default_rng(run),
            exact_max=4,
            target_relative_error=0.0,
            max_evaluations=1_500,
            exact_when_spent=False,
        )
        player = run % players
        covered += abs(result.values[player] - exact[player]) <= result.interval_half_widths(0.95)[player]
    assert scipy.stats.binomtest(covered, runs, 0.95).pvalue > 0.001
    assert covered / runs >= 0.9


def test_stratified_estimate_is_efficient_and_close_to_exact_at_n_14() -> None:
    model = averaged_model_game(np.random.default_rng(3), 14)
    game = table_game([model(frozenset(i for i in range(14) if mask >> i & 1)) for mask in range(1 << 14)])
    exact = shapley_values(range(14), game, exact_max=14).values
    result = shapley_values(
        range(14), game, rng=np.random.default_rng(0), exact_max=4, max_evaluations=20_000, exact_when_spent=False
    )
    assert result.method == "stratified-by-size" and not result.exact
    assert result.values.sum() == pytest.approx(exact.sum(), abs=1e-12)  # the total is the control variate
    assert np.all(np.abs(result.values - exact) <= 4 * result.standard_errors)


def test_student_t_quantiles_widen_intervals_from_few_groups() -> None:
    assert student_t_quantile(0.95, math.inf) == pytest.approx(1.959964, abs=1e-6)
    assert student_t_quantile(0.95, 1) == pytest.approx(12.7062, abs=1e-4)  # tables: t_{0.975, 1}
    assert student_t_quantile(0.95, 9) == pytest.approx(2.2622, abs=1e-4)
    weights = np.random.default_rng(0).uniform(1, 10, 30)

    def saturating(coalition: frozenset) -> float:
        return 1.0 - math.exp(-sum(weights[i] for i in coalition) / 40.0)

    # 2 rotation groups of 2 * 30 * 29 calls fit 4,000 calls: one degree of freedom.
    result = shapley_values(
        range(30), saturating, rng=np.random.default_rng(1), max_evaluations=4_000, min_groups=2, method="rotations"
    )
    assert result.samples == 2 * 60 and result.degrees_of_freedom == 1
    np.testing.assert_allclose(result.interval_half_widths(0.95), 12.7062 * result.standard_errors, rtol=1e-4)
    exact = shapley_values(range(4), lambda coalition: float(len(coalition)))
    assert exact.degrees_of_freedom == math.inf and np.all(exact.interval_half_widths() == 0.0)
    with pytest.raises(MarketError, match=r"level: must lie in \(0, 1\), got 1.5"):
        result.interval_half_widths(1.5)


@pytest.mark.parametrize("method", ["stratified", "rotations"])
def test_converged_is_false_when_the_budget_is_too_small(method: str) -> None:
    game = averaged_model_game(np.random.default_rng(5), 40)
    result = shapley_values(
        range(40), game, rng=np.random.default_rng(2), max_evaluations=6_000, min_groups=2, method=method
    )
    assert not result.converged and result.relative_standard_error > 0.01
    assert result.evaluations <= 6_000


def test_a_stratified_run_that_misses_every_pivot_is_not_converged() -> None:
    # Majority game: v(S) = 1 iff |S| >= 20 of 40; the only pivot size is 19, one of 37 sizes of the wide band
    # that strata=2 makes. Runs whose draws never hit it estimate all zeros with SE 0; efficiency (total 1)
    # flags them.
    def majority(coalition: frozenset) -> float:
        return float(len(coalition) >= 20)

    missed = 0
    for seed in range(20):
        result = shapley_values(
            range(40),
            majority,
            rng=np.random.default_rng(seed),
            min_groups=2,
            target_relative_error=0.5,
            strata=2,
            max_evaluations=1_000,  # the ends (82 calls) and about 11 replicates of 2 draws (41 calls each)
        )
        assert not result.converged  # about 11 draws of the wide band cannot resolve a 1-in-37 pivot
        if np.all(result.values == 0.0):  # every draw missed: SE 0, but the total is 0, not 1
            missed += 1
        else:  # a hit or two: too few distinct totals for the control variate, so plain means and wide intervals
            assert np.all(np.abs(result.values - 1 / 40) <= result.interval_half_widths(0.95))
    assert 0 < missed < 20


def test_unanimity_is_exact_from_the_end_sizes() -> None:
    # v(S) = 1 only for the grand coalition: every marginal is 0 except at size n - 1, which is computed exactly.
    result = shapley_values(
        range(30), lambda coalition: float(len(coalition) == 30), rng=np.random.default_rng(0), min_groups=2
    )
    np.testing.assert_allclose(result.values, 1 / 30, atol=1e-15)
    assert result.converged and np.all(result.standard_errors == 0.0)


@pytest.mark.slow  # one quick-start task end to end, about 10 s
def test_rounds_log_the_shapley_method_standard_errors_and_convergence() -> None:
    from flmarket.analysis.load import events_frame
    from flmarket.sim.config import load_scenario
    from flmarket.sim.model import MarketModel

    model = MarketModel(load_scenario("quickstart", {"run.tasks": 1}))
    model.run()
    frame = events_frame(model.log.to_arrow())
    estimated = frame[frame["kind"] == "shapley_estimated"]
    finished = frame[frame["kind"] == "round_finished"]
    assert len(estimated) == len(finished) > 0
    assert set(estimated["method"]) <= {
        "exact",
        "symmetric-sum-game",
        "exact-integer-sum-game",
        "stratified-sum-game",
        "stratified-by-size",
        "permutation-rotations",
    }
    assert estimated["converged"].astype(bool).all() == (estimated["relative_standard_error"] <= 0.01).all()
    paid = frame[frame["kind"] == "reward_paid"]
    assert {"shapley_standard_error", "shapley_interval"} <= set(paid.columns)
    assert (paid["shapley_standard_error"] >= 0).all()
    assert (paid["shapley_interval"] >= 1.959 * paid["shapley_standard_error"]).all()
    exact_rounds = estimated[estimated["exact"].astype(bool)][["task", "round"]]
    exact_paid = paid.merge(exact_rounds, on=["task", "round"])
    assert (exact_paid["shapley_standard_error"] == 0).all()


def test_a_batched_value_function_is_asked_once_per_replicate_and_gives_the_same_estimate() -> None:
    weights = np.random.default_rng(4).uniform(1, 10, 25)

    def saturating(coalition: frozenset) -> float:
        return 1.0 - math.exp(-sum(weights[i] for i in coalition) / 50.0)

    class Batched:
        """Like the torch backend's coalition value: `values_of` evaluates many coalitions at once."""

        def __init__(self) -> None:
            self.batches: list[int] = []
            self.known: dict[frozenset, float] = {}

        def values_of(self, coalitions: list[frozenset]) -> np.ndarray:
            self.batches.append(len(coalitions))
            for coalition in coalitions:
                self.known[coalition] = saturating(coalition)
            return np.array([self.known[coalition] for coalition in coalitions])

        def __call__(self, coalition: frozenset) -> float:
            return self.known[coalition] if coalition in self.known else saturating(coalition)

    batched = Batched()
    result = shapley_values(range(25), batched, rng=np.random.default_rng(6), max_evaluations=8_000)
    plain = shapley_values(range(25), saturating, rng=np.random.default_rng(6), max_evaluations=8_000)
    np.testing.assert_array_equal(result.values, plain.values)
    assert result.evaluations == plain.evaluations
    assert len(batched.batches) == 1 + result.samples  # one prefetch of the end sizes, then one per replicate
    assert batched.batches[0] == 2 * 25 + 1  # N, the 25 singletons and the 25 coalitions of all but one
    assert sum(batched.batches) >= 0.9 * (result.evaluations - 2 * 25 - 2)  # the draws' calls were batched


@pytest.mark.parametrize("players", [1, 2, 3, 5, 8])
def test_quadratic_mean_game_closed_form_matches_the_permutation_average(players: int) -> None:
    """G(S) = c + mean_S a + (1/(2|S|^2)) sum_{S x S} B: the O(n^2) closed form against the n! order average."""
    rng = np.random.default_rng(players)
    matrix = rng.normal(size=(players, players))
    game = QuadraticMeanGame(tuple(range(players)), float(rng.normal()), rng.normal(size=players), matrix)
    np.testing.assert_allclose(game.quadratic, (matrix + matrix.T) / 2)  # the symmetric part is what counts
    members = [1, 0] if players > 1 else [0]  # by hand: c + (a_0 + a_1)/2 + (B_00 + 2 B_01 + B_11)/8
    expected = game.constant + game.linear[members].mean() + game.quadratic[np.ix_(members, members)].sum() / 8
    assert game(frozenset(members)) == pytest.approx(
        expected if players > 1 else game.constant + game.linear[0] + game.quadratic[0, 0] / 2
    )
    assert game(frozenset()) == 0.0
    reference = brute_force_shapley(players, game) if players <= 5 else shapley_values(range(players), game).values
    np.testing.assert_allclose(game.shapley_values(), reference, rtol=1e-10, atol=1e-12)
    # per size k: the mean of G(T u {i}) - G(T) over every k-subset T of the others, enumerated
    by_size = game.size_marginals()
    for player in range(players):
        others = [other for other in range(players) if other != player]
        for size in range(players):
            subsets = [frozenset(subset) for subset in itertools.combinations(others, size)]
            expected = np.mean([game(subset | {player}) - game(subset) for subset in subsets])
            assert by_size[size, player] == pytest.approx(expected, rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(by_size.mean(axis=0), game.shapley_values(), rtol=1e-10, atol=1e-12)


def test_quadratic_mean_game_rejects_mismatched_shapes() -> None:
    with pytest.raises(MarketError, match=r"linear, quadratic: must be \(3,\) and \(3, 3\)"):
        QuadraticMeanGame((0, 1, 2), 0.0, np.zeros(2), np.zeros((3, 3)))
    with pytest.raises(MarketError, match="must be finite"):
        QuadraticMeanGame((0,), math.nan, np.zeros(1), np.zeros((1, 1)))


def mean_update_game(rng: np.random.Generator, players: int, dimension: int = 6):
    """v(S) = F(mean of S's updates) - F(0), F(x) = 2 / (10 + ||p + x||^2) (B 7's shape), and its second-order
    Taylor model about the mean of all updates from F's gradient and Hessian worked out by hand. The updates
    are small against the distance to F's optimum (|p| about 5), as local training's steps are."""
    updates = rng.normal(0.0, 0.2, (players, dimension)) * np.where(rng.random(players) < 0.2, 3.0, 0.5)[:, None]
    position = rng.normal(0.0, 2.0, dimension)

    def quality(offset: np.ndarray) -> float:
        return 2.0 / (10.0 + float((position + offset) @ (position + offset)))

    def value(coalition: frozenset) -> float:
        return quality(updates[sorted(coalition)].mean(axis=0)) - quality(np.zeros(dimension)) if coalition else 0.0

    mean = updates.mean(axis=0)
    point = position + mean
    denominator = 10.0 + float(point @ point)
    gradient = -4.0 * point / denominator**2
    hessian = -4.0 * np.eye(dimension) / denominator**2 + 16.0 * np.outer(point, point) / denominator**3
    deviations = updates - mean
    control = QuadraticMeanGame(
        tuple(range(players)),
        quality(mean) - quality(np.zeros(dimension)),
        deviations @ gradient,
        deviations @ hessian @ deviations.T,
    )
    return value, control


def test_a_control_game_keeps_the_estimate_unbiased_and_shrinks_its_error() -> None:
    """xi = xi(G) + sampled xi(v - G): within 4 SE of the exact values at n = 14, with a far smaller SE than
    the plain estimate at the same budget; a value that offers `control_game()` gets it used by default."""
    players = 14
    value, control = mean_update_game(np.random.default_rng(11), players)
    game = table_game([value(frozenset(i for i in range(players) if mask >> i & 1)) for mask in range(1 << players)])
    exact = shapley_values(range(players), game, exact_max=players).values

    class Offering:
        def __call__(self, coalition: frozenset) -> float:
            return game(coalition)

        def control_game(self) -> QuadraticMeanGame:
            return control

    settings = {"exact_max": 4, "target_relative_error": 0.0, "max_evaluations": 3_000}
    controlled = shapley_values(range(players), Offering(), rng=np.random.default_rng(0), **settings)
    plain = shapley_values(range(players), game, rng=np.random.default_rng(0), strata=4, **settings)
    assert controlled.method == "stratified-by-size-quadratic-control" and plain.method == "stratified-by-size"
    assert np.all(np.abs(controlled.values - exact) <= 4 * controlled.standard_errors)
    assert np.all(np.abs(plain.values - exact) <= 4 * plain.standard_errors)
    assert controlled.standard_errors.max() < 0.1 * plain.standard_errors.max()
    assert controlled.values.sum() == pytest.approx(exact.sum(), abs=1e-12)
    reordered = shapley_values(range(players)[::-1], Offering(), rng=np.random.default_rng(0), **settings)
    assert np.all(np.abs(reordered.values[::-1] - exact) <= 4 * reordered.standard_errors[::-1])
    unused = shapley_values(range(players), Offering(), rng=np.random.default_rng(0), use_control=False, **settings)
    assert unused.method == "stratified-by-size"


def test_exact_small_sizes_match_the_closed_form_per_size_marginals() -> None:
    """`_exact_size_marginals` (enumerating all coalitions of k + 1 players) against the quadratic game's
    closed-form m_i(k) at k = 1, 2."""
    from flmarket.market.shapley import CoalitionCache, _exact_size_marginals

    rng = np.random.default_rng(5)
    game = QuadraticMeanGame(tuple(range(7)), 0.3, rng.normal(size=7), rng.normal(size=(7, 7)))
    closed = game.size_marginals()
    for size in (1, 2):
        np.testing.assert_allclose(_exact_size_marginals(game.players, CoalitionCache(game), size), closed[size])


def test_a_poor_control_game_costs_calls_not_correctness() -> None:
    """A control game unrelated to v (random a and B): the coarse pilot does not converge, the second stage
    (sizes 1 and 2 exact, coefficients fitted per band) still lands within 4 SE of the exact values."""
    players = 14
    value, _ = mean_update_game(np.random.default_rng(11), players)
    game = table_game([value(frozenset(i for i in range(players) if mask >> i & 1)) for mask in range(1 << players)])
    exact = shapley_values(range(players), game, exact_max=players).values
    rng = np.random.default_rng(2)
    scale = float(np.abs(exact).mean())
    unrelated = QuadraticMeanGame(
        tuple(range(players)), 0.0, scale * rng.normal(size=players), scale * rng.normal(size=(players, players))
    )
    result = shapley_values(
        range(players), game, rng=np.random.default_rng(0), exact_max=4, control=unrelated, max_evaluations=8_000
    )
    assert result.method == "stratified-by-size-quadratic-control"
    assert result.evaluations > 8 * 2 * (players + 1)  # more than the coarse pilot alone
    assert np.all(np.abs(result.values - exact) <= 4 * result.standard_errors)


def test_a_pilot_that_projects_the_target_within_the_second_design_goes_on_with_more_replicates() -> None:
    """The coarse pilot misses the target by 1.5x in relative SE: calls x 1.5^2 is far below the refined design's
    minimum (ends, all pairs and triples, 8 replicates of 8 bands), so the coarse design continues with its fitted
    coefficients and Neyman allocation, converges in fewer calls than the refined design's minimum, and stays
    within 4 SE of the exact values."""
    from flmarket.market.shapley import REFINED_STRATA, CoalitionCache, _stratified_shapley

    players = 14
    value, control = mean_update_game(np.random.default_rng(11), players)
    game = table_game([value(frozenset(i for i in range(players) if mask >> i & 1)) for mask in range(1 << players)])
    exact = shapley_values(range(players), game, exact_max=players).values
    pilot = _stratified_shapley(
        tuple(range(players)), CoalitionCache(game), np.random.default_rng(0), 0.0, 10**6, 2, 8, control, 8
    )
    target = pilot.relative_standard_error / 1.5
    refined_minimum = (
        2 * players + 2 + math.comb(players, 2) + math.comb(players, 3) + 8 * REFINED_STRATA * (players + 1)
    )
    assert pilot.evaluations * 1.5**2 < refined_minimum
    result = shapley_values(
        range(players), game, rng=np.random.default_rng(0), exact_max=4, control=control, target_relative_error=target
    )
    assert result.converged and result.relative_standard_error <= target
    assert result.samples > 8 and pilot.evaluations < result.evaluations < refined_minimum
    assert np.all(np.abs(result.values - exact) <= 4 * result.standard_errors)


def test_a_sampler_that_spent_a_call_per_coalition_returns_the_exact_values() -> None:
    """5 players above `exact_max` = 3: the sampler evaluated all 32 coalitions and still returned an estimate,
    one value 3.1 SE from the exact one. Once the calls reach 2^n, the exact values cost at most as many again."""

    def value(coalition: frozenset) -> float:  # not a sum game: a threshold and a product term
        total = sum(coalition)
        return float(total >= 6) + 0.1 * math.prod(coalition) ** 0.5

    players = (1, 2, 3, 4, 5)
    exact = shapley_values(players, value, exact_max=5)
    for method in ("stratified", "rotations"):
        result = shapley_values(players, value, rng=np.random.default_rng(0), exact_max=3, method=method)
        assert result.exact and result.method == "exact" and result.converged, method
        np.testing.assert_allclose(result.values, exact.values, rtol=0, atol=1e-12)
        assert result.evaluations >= 2 ** len(players) - 1  # what sampling had spent, and what exact adds
    many = tuple(range(1, 21))  # 2^20 coalitions: sampling stops long before, and stays an estimate
    sampled = shapley_values(many, lambda c: float(sum(c) ** 0.5), rng=np.random.default_rng(0), exact_max=3)
    assert not sampled.exact and sampled.evaluations < 2 ** len(many)
