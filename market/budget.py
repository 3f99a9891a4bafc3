"""Budgets and rewards of BGFL (SPEC A.5, A.6): round cap (B 11), iteration cap (B 12), Shapley rewards
(B 13), and the per-round individual-rationality (B 14) and budget-balance (B 15) checks as reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from flmarket.market.errors import InfeasibleBudgetError, MarketError
from flmarket.market.validation import FloatOrArray, checked_array, scalar_if_0d


def _checked_fee_ratio(fee_ratio: float) -> float:
    return float(checked_array("fee_ratio", fee_ratio, minimum=0.0, maximum=1.0))


def _checked_budget(total_budget: float) -> float:
    return float(checked_array("total_budget", total_budget, minimum=0.0, strict_minimum=True))


def _checked_committee_costs(committee_costs: ArrayLike) -> np.ndarray:
    costs = checked_array("committee_costs", committee_costs, minimum=0.0)
    if costs.ndim != 1 or costs.size == 0:
        raise MarketError(f"committee_costs: must be a non-empty 1-D array, got shape {costs.shape}")
    return costs


def max_aggregation_rounds(total_budget: float, fee_ratio: float, committee_costs: ArrayLike) -> int:
    """Aggregation-round cap (B 11): r_max = floor(B * sigma / sum_k C_com(n_k)), SPEC A.5, of the quotient as
    real arithmetic gives it: a quotient within 1e-12 (relative) below an integer is that integer.

    Raises InfeasibleBudgetError, with the numbers, when the committee's fee cannot pay one round (r_max = 0)
    or the committee is free (r_max unbounded).
    """
    budget = _checked_budget(total_budget)
    sigma = _checked_fee_ratio(fee_ratio)
    round_cost = float(_checked_committee_costs(committee_costs).sum())
    fee = budget * sigma
    if round_cost == 0.0:
        raise InfeasibleBudgetError(
            f"committee_costs: sum must be > 0 for r_max = floor(B*sigma / sum C_com) to be finite, got 0 "
            f"(B*sigma = {fee})"
        )
    ratio = fee / round_cost
    rounds = math.floor(ratio)
    if math.isclose(ratio, rounds + 1, rel_tol=1e-12):  # an exact multiple, short by rounding: 14 x 0.7 / 9.8
        rounds += 1  # is 0.9999999999999999 in floating point, and B = 14 would pay no round at all
    if rounds < 1:
        raise InfeasibleBudgetError(
            f"total_budget: B*sigma = {budget}*{sigma} = {fee} is below the committee's cost of one round "
            f"sum C_com = {round_cost}, so r_max = floor({fee}/{round_cost}) = 0 (B 11)"
        )
    return rounds


def round_reward_pool(total_budget: float, fee_ratio: float, max_rounds: int) -> float:
    """The round's reward pool of (B 13): Pi_r = B * (1 - sigma) / r_max, SPEC A.5."""
    budget = _checked_budget(total_budget)
    sigma = _checked_fee_ratio(fee_ratio)
    if max_rounds < 1:
        raise InfeasibleBudgetError(f"max_rounds: must be >= 1, got {max_rounds}")
    return budget * (1.0 - sigma) / max_rounds


def local_iteration_cap(
    total_budget: float, fee_ratio: float, max_rounds: int, participants: int, unit_costs: ArrayLike
) -> FloatOrArray:
    """Local-iteration cap (B 12): k_i <= B * (1 - sigma) / (r_max * |P_pi| * C_unit^r(P_i)), SPEC A.5.

    Returns the real-valued bound per provider (floor it for a whole number of iterations).
    """
    if participants < 1:
        raise MarketError(f"participants: must be >= 1, got {participants}")
    costs = checked_array("unit_costs", unit_costs, minimum=0.0, strict_minimum=True)
    cap = round_reward_pool(total_budget, fee_ratio, max_rounds) / (participants * costs)
    return scalar_if_0d(cap)


@dataclass(frozen=True, eq=False)  # holds numpy arrays: compare fields explicitly
class RoundRewards:
    """Rewards rho_i^r of one round (B 13): `paid` is false (and every reward 0) when sum xi <= 0."""

    rewards: np.ndarray
    pool: float
    shapley_total: float
    paid: bool
    charged: tuple[int, ...]

    def __post_init__(self) -> None:
        self.rewards.setflags(write=False)


def shapley_rewards(shapley_values: ArrayLike, pool: float) -> RoundRewards:
    """Normalised Shapley rewards (B 13) with SPEC A.5's resolution: rho_i^r = Pi_r * xi_i / sum_j xi_j.

    The pool is paid out exactly (budget balance by construction); a provider with xi_i < 0 (a harmful update)
    is charged (negative reward, listed in `charged`); if sum_j xi_j <= 0 nobody is paid that round.
    """
    values = np.asarray(shapley_values, dtype=float)
    if values.ndim != 1 or not np.all(np.isfinite(values)):
        raise MarketError(f"shapley_values: must be a finite 1-D array, got shape {values.shape}")
    pool_value = float(checked_array("pool", pool, minimum=0.0))
    total = float(values.sum())
    if total <= 0.0:
        return RoundRewards(np.zeros_like(values), pool_value, total, False, ())
    rewards = pool_value * (values / total)  # shares first: Pi * xi underflows for subnormal xi (1.5 * 5e-324 = 1e-323)
    charged = tuple(int(index) for index in np.flatnonzero(values < 0.0))
    return RoundRewards(rewards, pool_value, total, True, charged)


@dataclass(frozen=True)
class RationalityViolation:
    """One provider breaking (B 14): `condition` is "utility" (U_i >= 0) or "reward" (rho_i >= k_i C_unit)."""

    provider: int
    condition: str
    shortfall: float


@dataclass(frozen=True)
class RationalityReport:
    """Result of the individual-rationality check (B 14) for one round."""

    violations: tuple[RationalityViolation, ...]

    @property
    def satisfied(self) -> bool:
        """True when every provider is individually rational."""
        return not self.violations


def check_individual_rationality(
    utilities: ArrayLike,
    rewards: ArrayLike,
    local_iterations: ArrayLike,
    unit_costs: ArrayLike,
    tolerance: float = 1e-12,
) -> RationalityReport:
    """Individual rationality (B 14), SPEC A.6: U_i(r) >= 0 and rho_i^r - k_i * C_unit^r(P_i) >= 0.

    Each violation names the provider's index, the condition and the shortfall (how far below 0).
    """
    utility = np.asarray(utilities, dtype=float)
    net_reward = np.asarray(rewards, dtype=float) - np.asarray(local_iterations, dtype=float) * np.asarray(
        unit_costs, dtype=float
    )
    utility, net_reward = np.broadcast_arrays(utility, net_reward)
    violations = [
        RationalityViolation(int(index), condition, float(-values[index]))
        for condition, values in (("utility", utility), ("reward", net_reward))
        for index in np.flatnonzero(values < -tolerance)
    ]
    return RationalityReport(tuple(sorted(violations, key=lambda item: (item.provider, item.condition))))


@dataclass(frozen=True)
class BudgetBalanceReport:
    """Result of the budget-balance check (B 15) after `rounds` rounds; an excess > 0 is a violation."""

    committee_spend: float
    committee_allowance: float
    provider_spend: float
    provider_allowance: float

    @property
    def committee_excess(self) -> float:
        """r * sum_k C_com(n_k) - B * sigma (B 15a), > 0 when broken."""
        return self.committee_spend - self.committee_allowance

    @property
    def provider_excess(self) -> float:
        """r * sum_i k_i C_unit^r(P_i) - B * (1 - sigma) (B 15b), > 0 when broken."""
        return self.provider_spend - self.provider_allowance

    @property
    def satisfied(self) -> bool:
        """True when both (B 15a) and (B 15b) hold."""
        return self.committee_excess <= 0.0 and self.provider_excess <= 0.0


def check_budget_balance(
    rounds: int,
    committee_costs: ArrayLike,
    local_iterations: ArrayLike,
    unit_costs: ArrayLike,
    total_budget: float,
    fee_ratio: float,
) -> BudgetBalanceReport:
    """Budget balance (B 15), SPEC A.6: r * sum_k C_com(n_k) <= B * sigma (a) and
    r * sum_i k_i C_unit^r(P_i) <= B * (1 - sigma) (b)."""
    if rounds < 0:
        raise MarketError(f"rounds: must be >= 0, got {rounds}")
    budget = _checked_budget(total_budget)
    sigma = _checked_fee_ratio(fee_ratio)
    committee = _checked_committee_costs(committee_costs)
    iterations = checked_array("local_iterations", local_iterations, minimum=0.0)
    costs = checked_array("unit_costs", unit_costs)
    return BudgetBalanceReport(
        committee_spend=rounds * float(committee.sum()),
        committee_allowance=budget * sigma,
        provider_spend=rounds * float(np.sum(iterations * costs)),
        provider_allowance=budget * (1.0 - sigma),
    )


PAID_RELATIVE_TOLERANCE = 1e-9  # the pool is paid out exactly (B 13), up to floating-point rounding


def paid_within_budget(fees_paid: float, rewards_paid: float, total_budget: float, fee_ratio: float) -> bool:
    """The money side of budget balance, SPEC A.5/A.6: committee fees paid so far <= B * sigma and rewards
    paid so far <= B * (1 - sigma), up to a relative rounding tolerance. (B 15 itself, `check_budget_balance`,
    compares the costs instead.)"""
    budget = _checked_budget(total_budget)
    sigma = _checked_fee_ratio(fee_ratio)
    slack = 1.0 + PAID_RELATIVE_TOLERANCE
    return fees_paid <= budget * sigma * slack and rewards_paid <= budget * (1.0 - sigma) * slack
