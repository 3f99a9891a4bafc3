"""The BGFL Bayesian game (SPEC A.7): welfare (B 21), its saddle point (B 24) with the KKT check (B 25a-c),
and the participation cutoff equilibrium (B 19), a fixed point p = F(c*(p)) over a pluggable prior of C_unit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import brentq

from flmarket.market.budget import local_iteration_cap, max_aggregation_rounds
from flmarket.market.costs import CostParameters, privacy_cost, unit_cost
from flmarket.market.errors import MarketError
from flmarket.market.validation import checked_array

CumulativeDistribution = Callable[[float], float]


def welfare(
    rewards: ArrayLike, local_iterations: ArrayLike, unit_costs: ArrayLike, committee_costs: ArrayLike
) -> float:
    """Social welfare of one round (B 21a): W = sum_i (rho_i^r - gamma_i C_unit^r(P_i)) - sum_k C_com(n_k)."""
    reward = np.asarray(rewards, dtype=float)
    spend = np.asarray(local_iterations, dtype=float) * np.asarray(unit_costs, dtype=float)
    return float(np.sum(reward - spend) - np.sum(np.asarray(committee_costs, dtype=float)))


def budget_slack(
    total_budget: float,
    aggregation_rounds: int,
    local_iterations: ArrayLike,
    unit_costs: ArrayLike,
    committee_costs: ArrayLike,
) -> float:
    """Slack of the budget constraint (B 21b): B - r [sum_i gamma_i C_unit^r(P_i) + sum_k C_com(n_k)] >= 0."""
    spend = np.sum(np.asarray(local_iterations, dtype=float) * np.asarray(unit_costs, dtype=float))
    return float(total_budget - aggregation_rounds * (spend + np.sum(np.asarray(committee_costs, dtype=float))))


@dataclass(frozen=True, eq=False)  # holds numpy arrays: compare fields explicitly
class SaddlePoint:
    """The welfare saddle point (B 24) and SPEC A.7's whole-number resolution of it.

    `gamma` and `multiplier` are the continuous (gamma_NE, lambda_NE); `iteration_cap` the (B 12) bound per
    provider; `local_iterations` = min(floor(gamma_NE), floor(cap_i)), at least 0, what providers train.
    """

    gamma: float
    multiplier: float
    iteration_cap: np.ndarray
    local_iterations: np.ndarray

    def __post_init__(self) -> None:
        self.iteration_cap.setflags(write=False)
        self.local_iterations.setflags(write=False)


def welfare_saddle_point(
    total_budget: float,
    fee_ratio: float,
    unit_costs: ArrayLike,
    committee_costs: ArrayLike,
    *,
    aggregation_rounds: int | None = None,
    max_rounds: int | None = None,
) -> SaddlePoint:
    """Saddle point of the Lagrangian of (B 21) (B 22 - B 24), SPEC A.7:

    gamma_NE = B / (r * sum_i C_unit^r(P_i)) - sum_k C_com(n_k) / sum_i C_unit^r(P_i), lambda_NE = -1/r.
    r is `aggregation_rounds` and r_max (for the (B 12) cap, with |P_pi| = the providers given) is
    `max_rounds`; both default to r_max of (B 11). gamma_NE is then floored to an integer >= 0 and capped
    by floor((B 12)) per provider.
    """
    costs = checked_array("unit_costs", unit_costs, minimum=0.0, strict_minimum=True)
    if costs.ndim != 1 or costs.size == 0:
        raise MarketError(f"unit_costs: must be a non-empty 1-D array, got shape {costs.shape}")
    committee_total = float(checked_array("committee_costs", committee_costs, minimum=0.0).sum())
    round_cap = (
        max_rounds if max_rounds is not None else max_aggregation_rounds(total_budget, fee_ratio, committee_costs)
    )
    rounds = aggregation_rounds if aggregation_rounds is not None else round_cap
    if rounds < 1:
        raise MarketError(f"aggregation_rounds: must be >= 1, got {rounds}")
    cost_total = float(costs.sum())
    gamma = total_budget / (rounds * cost_total) - committee_total / cost_total
    cap = np.asarray(local_iteration_cap(total_budget, fee_ratio, round_cap, costs.size, costs), dtype=float)
    whole = max(math.floor(gamma), 0)
    iterations = np.minimum(whole, np.floor(cap)).astype(np.int64)
    return SaddlePoint(gamma, -1.0 / rounds, cap, iterations)


@dataclass(frozen=True)
class KKTResiduals:
    """Residuals of the KKT conditions (B 25a-c) at a candidate (gamma, lambda); all 0 at the saddle point."""

    stationarity: float
    complementary_slackness: float
    primal_infeasibility: float

    @property
    def largest(self) -> float:
        """The largest absolute residual."""
        return max(abs(self.stationarity), abs(self.complementary_slackness), self.primal_infeasibility)


def kkt_residuals(
    gamma: float,
    multiplier: float,
    total_budget: float,
    aggregation_rounds: int,
    unit_costs: ArrayLike,
    committee_costs: ArrayLike,
) -> KKTResiduals:
    """The KKT conditions (B 25a-c) of the welfare problem (B 21), as printed in the paper, SPEC A.7:

    (25a) sum_i C_unit + lambda * r * sum_i C_unit = 0 (stationarity of the Lagrangian (B 22) in a common
    gamma, up to its sign); (25b) lambda * (B - r [gamma sum_i C_unit + sum_k C_com]) = 0; (25c) r [...] <= B,
    reported as max(0, r [...] - B).
    """
    costs_total = float(np.sum(np.asarray(unit_costs, dtype=float)))
    slack = budget_slack(
        total_budget, aggregation_rounds, np.full(np.size(unit_costs), gamma), unit_costs, committee_costs
    )
    return KKTResiduals(
        stationarity=costs_total + multiplier * aggregation_rounds * costs_total,
        complementary_slackness=multiplier * slack,
        primal_infeasibility=max(0.0, -slack),
    )


def expected_round_reward(pool: float, participation_probability: float, providers: int) -> float:
    """A provider's expected reward under the prior, SPEC A.7 resolution of (B 19):

    E[rho] = Pi_r * E[1/(n+1)], n ~ Binomial(N-1, p) = Pi_r * (1 - (1-p)^N) / (N p), -> Pi_r as p -> 0.
    Computed as -expm1(N log1p(-p)) / (N p), accurate for small p.
    """
    if providers < 1:
        raise MarketError(f"providers: must be >= 1, got {providers}")
    probability = float(checked_array("participation_probability", participation_probability, minimum=0.0, maximum=1.0))
    if probability == 0.0:
        return pool
    if probability == 1.0:
        return pool / providers
    return pool * -math.expm1(providers * math.log1p(-probability)) / (providers * probability)


def cost_cutoff(pool: float, participation_probability: float, providers: int, local_iterations: float) -> float:
    """Participation cutoff of (B 19), SPEC A.7: take part iff C_unit <= c*(p) = (1 - p) * E[rho]^2 / gamma.

    With gamma = 0 the condition rho >= 0 always holds: c* = inf.
    """
    reward = expected_round_reward(pool, participation_probability, providers)
    if local_iterations == 0:
        return math.inf
    return (1.0 - participation_probability) * reward**2 / local_iterations


def empirical_cdf(samples: ArrayLike) -> CumulativeDistribution:
    """F(c) = share of `samples` <= c (the Monte Carlo prior CDF of C_unit used in SPEC A.7)."""
    ordered = np.sort(checked_array("unit_cost_samples", samples).ravel())
    if ordered.size == 0:
        raise MarketError("unit_cost_samples: must hold at least one sample, got none")

    def cdf(cost: float) -> float:
        return float(np.searchsorted(ordered, cost, side="right")) / ordered.size

    return cdf


class EquilibriumKind(Enum):
    """Which kind of participation equilibrium (B 19) the solver found."""

    INTERIOR = "interior"
    NOBODY = "nobody"  # p = 0: nobody's cost is below c*(0) = Pi_r^2 / gamma
    EVERYBODY = "everybody"  # p = 1: every cost is below c*(1)


@dataclass(frozen=True)
class ParticipationEquilibrium:
    """The Bayesian-Nash participation probability p = F(c*(p)) (B 19, SPEC A.7).

    `residual` = F(c*(p)) - p at the reported p; with a prior CDF that jumps (an atom of types, or a Monte
    Carlo CDF) the root can sit on a jump, where the types at the cutoff are indifferent and mix: `residual`
    then shows the jump's size. `converged` is false (with `message`) when brentq did not meet its tolerance.
    """

    probability: float
    cost_cutoff: float
    kind: EquilibriumKind
    iterations: int
    function_calls: int
    converged: bool
    residual: float
    message: str


def participation_equilibrium(
    pool: float,
    providers: int,
    local_iterations: float,
    *,
    unit_cost_samples: ArrayLike | None = None,
    unit_cost_cdf: CumulativeDistribution | None = None,
    xtol: float = 1e-9,
    maxiter: int = 100,
) -> ParticipationEquilibrium:
    """Solve the participation cutoff equilibrium (B 19) exactly as SPEC A.7's resolution says.

    p = F(c*(p)) with c*(p) = (1 - p) E[rho]^2 / gamma, E[rho] = Pi_r (1 - (1-p)^N) / (N p), and F the prior
    CDF of C_unit, given either as `unit_cost_samples` (Monte Carlo draws; their empirical CDF is used) or as
    a CDF callable. Root of h(p) = F(c*(p)) - p on [0, 1] by scipy brentq with xtol; h(0) <= 0 is the
    corner p = 0 (nobody takes part) and h(1) >= 0 the corner p = 1.
    """
    if (unit_cost_samples is None) == (unit_cost_cdf is None):
        raise MarketError(
            "unit_cost_samples / unit_cost_cdf: give exactly one prior of C_unit, got "
            f"{'both' if unit_cost_cdf is not None else 'neither'}"
        )
    checked_array("pool", pool, minimum=0.0)
    checked_array("local_iterations", local_iterations, minimum=0.0)
    if providers < 1:
        raise MarketError(f"providers: must be >= 1, got {providers}")
    cdf = empirical_cdf(unit_cost_samples) if unit_cost_cdf is None else unit_cost_cdf

    def prior(cost: float) -> float:
        share = float(cdf(cost))
        if not 0.0 <= share <= 1.0:
            raise MarketError(f"unit_cost_cdf: must return a probability in [0, 1], got {share} at {cost}")
        return share

    def gap(probability: float) -> float:
        return prior(cost_cutoff(pool, probability, providers, local_iterations)) - probability

    at_zero, at_one = gap(0.0), gap(1.0)
    if at_zero <= 0.0:
        cutoff = cost_cutoff(pool, 0.0, providers, local_iterations)
        return ParticipationEquilibrium(
            0.0,
            cutoff,
            EquilibriumKind.NOBODY,
            0,
            2,
            True,
            at_zero,
            f"nobody takes part: F(c*(0)) = F({cutoff}) = {at_zero} (no cost is low enough)",
        )
    if at_one >= 0.0:
        cutoff = cost_cutoff(pool, 1.0, providers, local_iterations)
        return ParticipationEquilibrium(
            1.0,
            cutoff,
            EquilibriumKind.EVERYBODY,
            0,
            2,
            True,
            at_one,
            f"everybody takes part: F(c*(1)) = F({cutoff}) = 1",
        )
    root, result = brentq(gap, 0.0, 1.0, xtol=xtol, maxiter=maxiter, full_output=True, disp=False)
    message = "converged" if result.converged else f"brentq did not converge: {result.flag}"
    return ParticipationEquilibrium(
        float(root),
        cost_cutoff(pool, float(root), providers, local_iterations),
        EquilibriumKind.INTERIOR,
        int(result.iterations),
        int(result.function_calls) + 2,
        bool(result.converged),
        gap(float(root)),
        message,
    )


def laplace_unit_cost_samples(
    rng: np.random.Generator,
    size: int,
    *,
    parameter_count: int,
    privacy_budgets: Sequence[float] = (1.0, 3.0, 4.0, 5.0),
    sensitivity: float = 1e-4,
    update_l1_norm: float = 0.0,
    cost_parameters: CostParameters = CostParameters(),  # noqa: B008 - frozen, immutable default
) -> np.ndarray:
    """Monte Carlo draws of C_unit (B 6) under a Table 3 style prior, for the F of (B 19), SPEC A.7.

    Types: the cost parameters given (Table 3 by default) and a privacy budget eps drawn uniformly from
    `privacy_budgets`. The upload is u~ = u + Lap(0, b)^d with b = Delta_f / eps per coordinate (B 4, SPEC A.2 as
    revised; `sensitivity` is Delta_f, the scenario's `learning.sensitivity`). ||u~||_1 (B 5, SPEC A.3) is taken
    as `update_l1_norm` + the L1 norm of the noise, a Gamma(parameter_count, Delta_f / eps) draw. That is the
    triangle-inequality upper bound of ||u + n||_1; it is exact when the update is zero (the default) and tight
    when the noise is small or large against each coordinate of u. The first resolution (clip to L1 norm 1,
    b = 2 / eps) is withdrawn and not reproduced here.
    """
    if size < 1 or parameter_count < 1:
        raise MarketError(f"size and parameter_count: must be >= 1, got {size} and {parameter_count}")
    budgets = checked_array("privacy_budgets", privacy_budgets, minimum=0.0, strict_minimum=True)
    checked_array("sensitivity", sensitivity, minimum=0.0, strict_minimum=True)
    checked_array("update_l1_norm", update_l1_norm, minimum=0.0)
    drawn = rng.choice(budgets, size=size)
    noise_l1 = rng.gamma(shape=parameter_count, scale=sensitivity / drawn)
    uploaded_l1 = update_l1_norm + noise_l1
    return np.asarray(unit_cost(cost_parameters.computation_cost(), privacy_cost(drawn, uploaded_l1)))
