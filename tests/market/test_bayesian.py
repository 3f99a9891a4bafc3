"""Tests of market/bayesian.py: welfare (B 21), saddle point (B 24), KKT (B 25a-c), cutoff (B 19)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy import stats

from flmarket.market.bayesian import (
    EquilibriumKind,
    budget_slack,
    cost_cutoff,
    empirical_cdf,
    expected_round_reward,
    kkt_residuals,
    laplace_unit_cost_samples,
    participation_equilibrium,
    welfare,
    welfare_saddle_point,
)
from flmarket.market.budget import max_aggregation_rounds, round_reward_pool
from flmarket.market.errors import MarketError


def test_welfare_by_hand() -> None:
    # (B 21a): (20 - 2*3) + (30 - 1*4) - (1 + 2) = 14 + 26 - 3 = 37.
    assert welfare([20.0, 30.0], [2, 1], [3.0, 4.0], [1.0, 2.0]) == pytest.approx(37.0)
    # (B 21b): B = 100, r = 2: 100 - 2 * (2*3 + 1*4 + 3) = 74.
    assert budget_slack(100.0, 2, [2, 1], [3.0, 4.0], [1.0, 2.0]) == pytest.approx(74.0)


def test_saddle_point_by_hand() -> None:
    # (B 24): B = 1000, r = 10, sum C_unit = 2 + 3 + 5 = 10, sum C_com = 5 + 5 = 10:
    # gamma = 1000 / (10 * 10) - 10 / 10 = 9, lambda = -1/10.
    # (B 11) with sigma = 0.1: floor(100 / 10) = 10 = r. (B 12): 900 / (10 * 3 * C_i) = 30 / C_i = 15, 10, 6.
    point = welfare_saddle_point(1000.0, 0.1, [2.0, 3.0, 5.0], [5.0, 5.0])
    assert point.gamma == pytest.approx(9.0)
    assert point.multiplier == pytest.approx(-0.1)
    np.testing.assert_allclose(point.iteration_cap, [15.0, 10.0, 6.0])
    assert point.local_iterations.tolist() == [9, 9, 6]


def test_saddle_point_floors_to_zero_when_the_committee_eats_the_budget() -> None:
    # r = 20 rounds of a committee costing 60: 1000/(20*10) - 60/10 = 5 - 6 = -1 -> 0 iterations.
    point = welfare_saddle_point(1000.0, 0.9, [2.0, 3.0, 5.0], [60.0], aggregation_rounds=20)
    assert point.gamma == pytest.approx(-1.0)
    assert point.local_iterations.tolist() == [0, 0, 0]


def test_kkt_residuals_vanish_at_the_saddle_point_only() -> None:
    costs, committee = [2.0, 3.0, 5.0], [5.0, 5.0]
    point = welfare_saddle_point(1000.0, 0.1, costs, committee)
    residuals = kkt_residuals(point.gamma, point.multiplier, 1000.0, 10, costs, committee)
    assert residuals.largest < 1e-9
    # One more iteration each overspends: r * (10 * 10 + 10) - 1000 = 100.
    over = kkt_residuals(point.gamma + 1, point.multiplier, 1000.0, 10, costs, committee)
    assert over.primal_infeasibility == pytest.approx(100.0)
    # A wrong multiplier breaks stationarity (25a): 10 + 0.5 * 10 * 10 = 60.
    assert kkt_residuals(point.gamma, 0.5, 1000.0, 10, costs, committee).stationarity == pytest.approx(60.0)


@given(
    budget=st.floats(100.0, 1e5),
    rounds=st.integers(1, 500),
    costs=st.lists(st.floats(0.1, 100.0), min_size=1, max_size=30),
    committee=st.lists(st.floats(0.0, 10.0), min_size=1, max_size=9),
)
def test_kkt_residuals_below_1e_9_for_random_markets(
    budget: float, rounds: int, costs: list[float], committee: list[float]
) -> None:
    assume(budget * 0.5 >= sum(committee) or sum(committee) == 0.0)
    point = welfare_saddle_point(budget, 0.5, costs, committee, aggregation_rounds=rounds, max_rounds=rounds)
    residuals = kkt_residuals(point.gamma, point.multiplier, budget, rounds, costs, committee)
    assert residuals.largest < 1e-9
    # The whole-number plan never overspends (B 21b) whenever gamma_NE >= 0.
    if point.gamma >= 0:
        assert budget_slack(budget, rounds, point.local_iterations, costs, committee) >= -1e-9 * budget


def test_expected_reward_matches_the_binomial_expectation() -> None:
    # E[Pi/(n+1)], n ~ Binomial(N-1, p), summed term by term.
    pool, providers = 39.2, 10
    for probability in (1e-9, 0.1, 0.5, 0.99):
        others = np.arange(providers)
        brute = pool * np.sum(stats.binom.pmf(others, providers - 1, probability) / (others + 1))
        assert expected_round_reward(pool, probability, providers) == pytest.approx(brute, rel=1e-9)
    assert expected_round_reward(pool, 0.0, providers) == pool
    assert expected_round_reward(pool, 1.0, providers) == pytest.approx(pool / providers)


def test_cutoff_by_hand() -> None:
    # Pi = 10, N = 2, p = 0.5: E[rho] = 10 * (1 - 0.25) / 1 = 7.5; gamma = 2: c* = 0.5 * 56.25 / 2 = 14.0625.
    assert cost_cutoff(10.0, 0.5, 2, 2) == pytest.approx(14.0625)
    assert cost_cutoff(10.0, 0.5, 2, 0) == math.inf


def test_equilibrium_matches_the_cubic_for_a_uniform_prior() -> None:
    # Pi = 10, N = 2, gamma = 1, C_unit ~ U[0, 100]: E[rho] = 10 (1 - p/2), c* = 100 (1-p)(1-p/2)^2,
    # p = c*/100 -> 1 - 3p + 1.25p^2 - 0.25p^3 = 0; its root in (0, 1) solved independently by np.roots.
    roots = np.roots([-0.25, 1.25, -3.0, 1.0])
    expected = next(r.real for r in roots if abs(r.imag) < 1e-12 and 0 < r.real < 1)
    result = participation_equilibrium(10.0, 2, 1, unit_cost_cdf=stats.uniform(0, 100).cdf)
    assert result.kind is EquilibriumKind.INTERIOR and result.converged
    assert result.probability == pytest.approx(expected, abs=1e-8)
    assert abs(result.residual) < 1e-8
    assert result.iterations > 0


def table3_market() -> tuple[float, int]:
    rounds = max_aggregation_rounds(5000.0, 0.2, [1.4] * 7)
    return round_reward_pool(5000.0, 0.2, rounds), 10


def table3_unit_cost_samples(rng: np.random.Generator) -> np.ndarray:
    # The digits MLP of Table 3 (55,210 parameters), Delta_f = 1e-4 (the scenario default) and an update of
    # L1 norm 13.6 per epoch (the surrogate's calibration against torch).
    return laplace_unit_cost_samples(rng, 20_000, parameter_count=55_210, update_l1_norm=13.6)


def test_unit_cost_samples_follow_the_revised_noise_rule() -> None:
    # One budget eps = 2: C_unit - ln C_com = eps ln(1 + ||u~||_1) (B 5, B 6), so exp(./eps) - 1 recovers
    # ||u~||_1 = ||u||_1 + Gamma(P, Delta_f / eps), whose mean is ||u||_1 + P Delta_f / eps and variance
    # P (Delta_f / eps)^2 (SPEC A.2 as revised).
    parameters, sensitivity, norm, eps = 50_000, 1e-3, 3.0, 2.0
    samples = laplace_unit_cost_samples(
        np.random.default_rng(11),
        40_000,
        parameter_count=parameters,
        privacy_budgets=[eps],
        sensitivity=sensitivity,
        update_l1_norm=norm,
    )
    uploaded = np.expm1((samples - math.log(2882.4)) / eps)
    scale = sensitivity / eps
    assert abs(uploaded.mean() - (norm + parameters * scale)) < 5 * math.sqrt(parameters) * scale / math.sqrt(40_000)
    assert uploaded.std() == pytest.approx(math.sqrt(parameters) * scale, rel=0.03)
    with pytest.raises(MarketError, match="sensitivity"):
        laplace_unit_cost_samples(np.random.default_rng(1), 10, parameter_count=5, sensitivity=0.0)


def test_equilibrium_on_the_table3_prior() -> None:
    pool, providers = table3_market()
    samples = table3_unit_cost_samples(np.random.default_rng(7))
    result = participation_equilibrium(pool, providers, 1, unit_cost_samples=samples)
    assert result.converged and result.kind is EquilibriumKind.INTERIOR
    assert 0.0 < result.probability < 1.0
    # A fixed point of the Monte Carlo CDF: the share of types below c*(p) is p, up to one sample's jump.
    share = np.mean(samples <= result.cost_cutoff)
    assert abs(share - result.probability) <= 1.0 / samples.size + 1e-8
    # Same seed, same answer.
    again = table3_unit_cost_samples(np.random.default_rng(7))
    assert participation_equilibrium(pool, providers, 1, unit_cost_samples=again) == result


def test_point_mass_prior_lands_on_the_indifferent_cost() -> None:
    # All types cost 30: F jumps from 0 to 1 at 30, so the equilibrium is the p at which c*(p) = 30 and
    # the (indifferent) types mix; the residual reports the jump.
    pool, providers = table3_market()
    result = participation_equilibrium(pool, providers, 1, unit_cost_samples=[30.0])
    assert result.converged and result.kind is EquilibriumKind.INTERIOR
    assert result.cost_cutoff == pytest.approx(30.0, abs=1e-6)
    assert result.residual > 0.4


def test_very_wide_prior_converges() -> None:
    pool, providers = table3_market()
    wide = stats.lognorm(s=6.0, scale=math.exp(3.0))
    result = participation_equilibrium(pool, providers, 1, unit_cost_cdf=wide.cdf)
    assert result.converged and result.kind is EquilibriumKind.INTERIOR
    assert abs(result.probability - wide.cdf(result.cost_cutoff)) < 1e-8
    samples = wide.rvs(size=5000, random_state=np.random.default_rng(3))
    sampled = participation_equilibrium(pool, providers, 1, unit_cost_samples=samples)
    assert sampled.converged and abs(sampled.residual) <= 1.0 / 5000 + 1e-8


def test_corner_cases_are_reported_as_such() -> None:
    pool, providers = table3_market()
    # Everyone costs more than c*(0) = Pi^2 / gamma = 1537.87: nobody takes part.
    nobody = participation_equilibrium(pool, providers, 1, unit_cost_samples=[2000.0, 3000.0])
    assert nobody.kind is EquilibriumKind.NOBODY and nobody.probability == 0.0
    assert nobody.cost_cutoff == pytest.approx(pool**2)
    assert "nobody" in nobody.message
    # With gamma = 0 the condition rho >= 0 always holds: everybody takes part.
    everybody = participation_equilibrium(pool, providers, 0, unit_cost_samples=[2000.0, 3000.0])
    assert everybody.kind is EquilibriumKind.EVERYBODY and everybody.probability == 1.0
    # Non-positive unit costs (C_com < 1) pass even c*(1) = 0.
    free = participation_equilibrium(pool, providers, 1, unit_cost_samples=[-0.5, 0.0])
    assert free.kind is EquilibriumKind.EVERYBODY


def test_solver_says_when_it_cannot_converge() -> None:
    pool, providers = table3_market()
    result = participation_equilibrium(pool, providers, 1, unit_cost_cdf=stats.uniform(0, 100).cdf, maxiter=2)
    assert not result.converged
    assert "did not converge" in result.message


def test_bad_priors_are_rejected() -> None:
    with pytest.raises(MarketError, match="unit_cost_cdf: must return a probability in"):
        participation_equilibrium(10.0, 2, 1, unit_cost_cdf=lambda cost: 1.5)
    with pytest.raises(MarketError, match="exactly one prior"):
        participation_equilibrium(10.0, 2, 1)
    with pytest.raises(MarketError, match="unit_cost_samples: must hold at least one sample"):
        empirical_cdf([])


def test_empirical_cdf_counts_ties() -> None:
    cdf = empirical_cdf([1.0, 2.0, 2.0, 3.0])
    assert [cdf(0.5), cdf(1.0), cdf(2.0), cdf(10.0)] == [0.0, 0.25, 0.75, 1.0]
