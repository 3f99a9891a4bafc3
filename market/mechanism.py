"""Settling one BGFL aggregation round and configuring one task: the mechanism functions composed.

`configure_task` fixes a task's round cap (B 11), reward pool (B 13) and rounds; `equilibrium_iterations`
gives the gamma_NE the committee broadcasts (B 24 with the (B 12) cap); `settle_round` computes the Shapley
values of the round's accepted updates (B 10, exact or estimated), the normalised rewards (B 13), the
leave-one-out utilities (B 8) and the individual-rationality report (B 14). Pure: the committee agents call it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from flmarket.market.bayesian import welfare_saddle_point
from flmarket.market.budget import (
    RationalityReport,
    check_individual_rationality,
    max_aggregation_rounds,
    round_reward_pool,
    shapley_rewards,
)
from flmarket.market.shapley import (
    ShapleyResult,
    exact_integer_sum_game_shapley,
    shapley_values,
    stratified_sum_game_shapley,
    symmetric_sum_game_shapley,
)

EXACT_SUM_GAME_WORK = 1e7  # distinct weights * n^2 * total weight (~0.03 s): above it, the stratified estimate


@dataclass(frozen=True)
class TaskTerms:
    """What the committee fixes when a task starts (Algorithm 1, line 1-2)."""

    budget: float
    fee_ratio: float
    committee_costs: tuple[float, ...]
    round_cap: int
    rounds: int
    pool_per_round: float

    @property
    def committee_cost_per_round(self) -> float:
        """sum_k C_com(n_k)."""
        return float(sum(self.committee_costs))


def configure_task(budget: float, fee_ratio: float, committee_costs: Sequence[float], rounds_wanted: int) -> TaskTerms:
    """r_max (B 11), the task's rounds min(rounds_wanted, r_max) and the pool Pi_r = B(1-sigma)/r_max (B 13).

    Raises InfeasibleBudgetError (with the numbers) when the budget cannot pay one committee round.
    """
    round_cap = max_aggregation_rounds(budget, fee_ratio, committee_costs)
    return TaskTerms(
        budget=float(budget),
        fee_ratio=float(fee_ratio),
        committee_costs=tuple(float(cost) for cost in committee_costs),
        round_cap=round_cap,
        rounds=min(rounds_wanted, round_cap),
        pool_per_round=round_reward_pool(budget, fee_ratio, round_cap),
    )


def equilibrium_iterations(terms: TaskTerms, unit_costs: Sequence[float]) -> int:
    """gamma_NE of (B 24), floored to an integer >= 0 and capped by (B 12) for every claimant (SPEC A.7).

    Resolution: r in (B 12) and (B 24) is the number of aggregation rounds the task runs (not r_max), so that
    raising B raises the cap, as SPEC A.5 intends; with r = r_max the cap would not depend on B at all. One
    gamma is broadcast, so it is the smallest per-provider value: every claimant stays within its cap.
    """
    if not len(unit_costs):
        return 0
    saddle = welfare_saddle_point(
        terms.budget,
        terms.fee_ratio,
        np.asarray(unit_costs, dtype=float),
        np.asarray(terms.committee_costs, dtype=float),
        aggregation_rounds=terms.rounds,
        max_rounds=terms.rounds,
    )
    return int(np.min(saddle.local_iterations))


@dataclass(frozen=True)
class RoundSettlement:
    """The outcome of one round's mechanism: Shapley values, rewards, utilities, IR (B 8, B 10, B 13, B 14).

    `marginal_values` are v(S) - v(S minus i), each update's leave-one-out quality gain (its true contribution).
    """

    players: tuple[Hashable, ...]
    shapley: ShapleyResult
    rewards: tuple[float, ...]
    utilities: tuple[float, ...]
    marginal_values: tuple[float, ...]
    coalition_value: float
    rationality: RationalityReport
    paid: float

    def reward_of(self) -> dict[Hashable, float]:
        """Rewards by player."""
        return dict(zip(self.players, self.rewards, strict=True))


def _shapley(
    players: tuple[Hashable, ...],
    value: Callable[[frozenset], float],
    rng: np.random.Generator,
    *,
    exact_max: int,
    target_relative_error: float,
    max_evaluations: int,
) -> ShapleyResult:
    """Shapley values (B 10) of a round. When v depends only on the members' total (the surrogate, which
    exposes `contributions` and the vectorised `values_of_totals`): exact by symmetry when every contribution
    is zero or one common value, at any size; above `exact_max` players, exact by the integer-weight recursion
    while that is cheap, else stratified over coalition sizes. Otherwise the subset formula up to `exact_max`
    players and `shapley_values`' stratified sampling (with Student-t intervals) above."""
    contributions = getattr(value, "contributions", None)
    values_of_totals = getattr(value, "values_of_totals", None)
    sum_game = bool(players) and contributions is not None and values_of_totals is not None
    if sum_game:  # any size: O(n) instead of 2^n value calls when every contribution is 0 or one common value
        features = np.array([contributions[player] for player in players], dtype=float)
        symmetric = symmetric_sum_game_shapley(features, values_of_totals)
        if symmetric is not None:
            return ShapleyResult(
                tuple(players), symmetric, np.zeros(len(players)), 2, True, 0, True, "symmetric-sum-game"
            )
    if sum_game and len(players) > exact_max:
        whole = np.round(features)
        if np.all(whole == features) and np.all(whole >= 0):
            work = len(np.unique(whole)) * len(players) ** 2 * max(1.0, float(whole.sum()))
            if work <= EXACT_SUM_GAME_WORK:
                values = exact_integer_sum_game_shapley(whole.astype(np.int64), values_of_totals)
                return ShapleyResult(
                    tuple(players),
                    np.asarray(values, float),
                    np.zeros(len(players)),
                    0,
                    True,
                    0,
                    True,
                    "exact-integer-sum-game",
                )
        return stratified_sum_game_shapley(features, values_of_totals, rng, target_relative_error=target_relative_error)
    return shapley_values(
        players,
        value,
        rng=rng,
        exact_max=exact_max,
        target_relative_error=target_relative_error,
        max_evaluations=max_evaluations,
    )


def leave_one_out_values(
    players: tuple[Hashable, ...], value: Callable[[frozenset], float], full: float | None = None
) -> np.ndarray:
    """v(S) - v(S minus i) for every i: the quality each update adds to the round's aggregate (B 8).

    `full` is v(S) when the caller already has it."""
    whole = frozenset(players)
    full = value(whole) if full is None else full
    contributions = getattr(value, "contributions", None)
    value_of_total = getattr(value, "value_of_total", None)
    if contributions is not None and value_of_total is not None:
        total = sum(contributions[player] for player in players)
        return np.array([full - value_of_total(total - contributions[player]) for player in players])
    return np.array([full - value(whole - {player}) for player in players])


def settle_round(
    players: Sequence[Hashable],
    value: Callable[[frozenset], float],
    pool: float,
    local_iterations: Sequence[int],
    unit_costs: Sequence[float],
    rng: np.random.Generator,
    *,
    exact_max: int = 12,
    target_relative_error: float = 0.01,
    max_evaluations: int = 20_000,
) -> RoundSettlement:
    """Shapley values of the round (B 10), rewards (B 13), utilities U_i = rho_i [v(S) - v(S minus i)] (B 8)
    and the IR report (B 14) for the accepted updates of one round."""
    ordered = tuple(players)
    if not ordered:
        empty = ShapleyResult((), np.zeros(0), np.zeros(0), 0, True, 0, True, "empty")
        return RoundSettlement((), empty, (), (), (), 0.0, RationalityReport(()), 0.0)
    result = _shapley(
        ordered,
        value,
        rng,
        exact_max=exact_max,
        target_relative_error=target_relative_error,
        max_evaluations=max_evaluations,
    )
    rewards = shapley_rewards(result.values, pool)
    coalition_value = float(value(frozenset(ordered)))
    marginal = leave_one_out_values(ordered, value, coalition_value)
    utilities = rewards.rewards * marginal
    rationality = check_individual_rationality(utilities, rewards.rewards, local_iterations, unit_costs)
    return RoundSettlement(
        players=ordered,
        shapley=result,
        rewards=tuple(float(reward) for reward in rewards.rewards),
        utilities=tuple(float(utility) for utility in utilities),
        marginal_values=tuple(float(value) for value in marginal),
        coalition_value=coalition_value,
        rationality=rationality,
        paid=float(rewards.rewards.sum()) if rewards.paid else 0.0,
    )
