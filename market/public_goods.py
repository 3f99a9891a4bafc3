"""The cross-silo FL public-goods stage game of SPEC B.1 and its equilibrium checks of SPEC B.2.

N organisations each choose y_i in {0..R}, the number of global rounds they take part in. The shared model's
precision improves with the total participation; every organisation enjoys the improvement (the public good)
but pays only for its own rounds. Everything here is pure numpy.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from flmarket.market.errors import SocialDilemmaError

DEFAULT_THETA0 = 9.82
DEFAULT_LOCAL_ITERATIONS = 5


def participation_unit_cost(
    local_iterations: int, computation_cost: float, communication_power: float, upload_time_s: float
) -> float:
    """kappa_i = K * c_i + e_i * tau_i: the cost of one round of participation (SPEC B.1, Z 3)."""
    return local_iterations * computation_cost + communication_power * upload_time_s


@dataclass(frozen=True)
class PublicGoodsGame:
    """Parameters of the stage game (SPEC B.1): precision theta0/(theta1 + K * total participation)."""

    theta0: float
    theta1: float
    local_iterations: int
    rounds: int
    unit_revenue: tuple[float, ...]
    unit_cost: tuple[float, ...]
    _revenue: np.ndarray = field(init=False, repr=False, compare=False)
    _cost: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.theta0 <= 0:
            raise SocialDilemmaError(f"theta0: must be > 0, got {self.theta0}")
        if self.theta1 <= 0:
            raise SocialDilemmaError(f"theta1: must be > 0, got {self.theta1}")
        if self.local_iterations < 1:
            raise SocialDilemmaError(f"local_iterations: must be >= 1, got {self.local_iterations}")
        if self.rounds < 1:
            raise SocialDilemmaError(f"rounds: must be >= 1, got {self.rounds}")
        if len(self.unit_revenue) != len(self.unit_cost) or not self.unit_revenue:
            raise SocialDilemmaError(
                f"unit_revenue and unit_cost: must be non-empty and of equal length, got "
                f"{len(self.unit_revenue)} and {len(self.unit_cost)}"
            )
        object.__setattr__(self, "_revenue", np.asarray(self.unit_revenue, dtype=float))
        object.__setattr__(self, "_cost", np.asarray(self.unit_cost, dtype=float))

    def __eq__(self, other: object) -> bool:
        """Equal parameters; the same object short-circuits (strategies compare games every task)."""
        if self is other:
            return True
        if not isinstance(other, PublicGoodsGame):
            return NotImplemented
        return (self.theta0, self.theta1, self.local_iterations, self.rounds, self.unit_revenue, self.unit_cost) == (
            other.theta0,
            other.theta1,
            other.local_iterations,
            other.rounds,
            other.unit_revenue,
            other.unit_cost,
        )

    def __hash__(self) -> int:
        return hash((self.theta0, self.theta1, self.local_iterations, self.rounds, self.unit_revenue, self.unit_cost))

    @property
    def players(self) -> int:
        """N, the number of organisations."""
        return len(self.unit_revenue)

    @property
    def revenue_array(self) -> np.ndarray:
        """rho as a read-only numpy array."""
        return self._revenue

    @property
    def cost_array(self) -> np.ndarray:
        """kappa as a read-only numpy array."""
        return self._cost

    @property
    def base_precision(self) -> float:
        """eps0 = eps(0) = theta0 / theta1."""
        return self.theta0 / self.theta1

    def precision(self, total_participation: float | np.ndarray) -> float | np.ndarray:
        """eps(y) = theta0 / (theta1 + K * sum_j y_j) (SPEC B.1, Z 1)."""
        return self.theta0 / (self.theta1 + self.local_iterations * np.asarray(total_participation, float))

    def precision_gain(self, total_participation: float | np.ndarray) -> float | np.ndarray:
        """g(T) = eps0 - eps(T): the public good produced by total participation T (SPEC B.1, B.5)."""
        return self.base_precision - self.precision(total_participation)

    def revenues(self, actions: Sequence[int] | np.ndarray) -> np.ndarray:
        """Phi_i(y) = rho_i * (eps0 - eps(y)) for every organisation (SPEC B.1, Z 2)."""
        total = float(np.sum(actions))
        return self._revenue * float(self.precision_gain(total))

    def costs(self, actions: Sequence[int] | np.ndarray) -> np.ndarray:
        """Psi_i(y_i) = kappa_i * y_i (SPEC B.1, Z 3)."""
        return self._cost * np.asarray(actions, dtype=float)

    def utilities(self, actions: Sequence[int] | np.ndarray) -> np.ndarray:
        """U_i(y) = Phi_i(y) - Psi_i(y_i) (SPEC B.1, Z 4)."""
        self._check_actions(actions)
        return self.revenues(actions) - self.costs(actions)

    def welfare(self, actions: Sequence[int] | np.ndarray) -> float:
        """P(y) = sum_i U_i(y), the social welfare (SPEC B.1)."""
        return float(np.sum(self.utilities(actions)))

    def _check_actions(self, actions: Sequence[int] | np.ndarray) -> None:
        values = np.asarray(actions)
        if values.shape != (self.players,):
            raise ValueError(f"actions: must have one entry per organisation ({self.players}), got {values.shape}")
        if values.size and (values.min() < 0 or values.max() > self.rounds):
            raise ValueError(f"actions: each y_i must be in 0..{self.rounds}, got {values.tolist()}")


@dataclass(frozen=True)
class DilemmaReport:
    """Which conditions of SPEC B.2 hold, with the numbers that decide them."""

    assumption_1: bool
    assumption_1_violators: tuple[int, ...]
    full_participation_welfare: float
    dilemma: bool
    theta1_bound: float
    theta1_bound_holds: bool

    @property
    def is_social_dilemma(self) -> bool:
        """Assumption 1 and the dilemma hold together."""
        return self.assumption_1 and self.dilemma

    def problems(self, game: PublicGoodsGame) -> list[str]:
        """One sentence per broken condition, naming the numbers."""
        messages = []
        if not self.assumption_1:
            gain_one = float(game.precision_gain(1))
            for index in self.assumption_1_violators:
                messages.append(
                    f"Assumption 1 fails for organisation {index}: rho*(eps0-eps(1)) = "
                    f"{game.unit_revenue[index] * gain_one:.6g} >= kappa = {game.unit_cost[index]:.6g} "
                    "(training alone must not pay)"
                )
        if not self.dilemma:
            messages.append(f"dilemma condition fails: P(R,...,R) = {self.full_participation_welfare:.6g} must be > 0")
        if not self.theta1_bound_holds:
            messages.append(
                f"theta1 = {game.theta1:.6g} must be > K*N*(R-1)/(N-1) = {self.theta1_bound:.6g} "
                "for Assumption 1 and the dilemma to hold together"
            )
        return messages


def theta1_lower_bound(players: int, rounds: int, local_iterations: int) -> float:
    """K * N * (R - 1) / (N - 1): theta1 must exceed it for a social dilemma to exist (SPEC B.2)."""
    if players < 2:
        return float("inf")
    return local_iterations * players * (rounds - 1) / (players - 1)


def check_social_dilemma(game: PublicGoodsGame) -> DilemmaReport:
    """Evaluate Assumption 1, the dilemma condition P(R..R) > 0 and the theta1 bound (SPEC B.2)."""
    alone_gain = game.revenue_array * float(game.precision_gain(1))
    violators = tuple(int(i) for i in np.flatnonzero(alone_gain >= game.cost_array))
    full = game.welfare(np.full(game.players, game.rounds))
    bound = theta1_lower_bound(game.players, game.rounds, game.local_iterations)
    return DilemmaReport(
        assumption_1=not violators,
        assumption_1_violators=violators,
        full_participation_welfare=full,
        dilemma=full > 0,
        theta1_bound=bound,
        theta1_bound_holds=game.theta1 > bound,
    )


def require_social_dilemma(game: PublicGoodsGame, *, strict: bool = True) -> DilemmaReport:
    """Raise SocialDilemmaError (strict) or warn when SPEC B.2's conditions fail; return the report."""
    report = check_social_dilemma(game)
    problems = report.problems(game)
    if problems:
        message = "; ".join(problems)
        if strict:
            raise SocialDilemmaError(message)
        warnings.warn(f"not a social dilemma: {message}", stacklevel=2)
    return report


def best_unilateral_gain(game: PublicGoodsGame, actions: Sequence[int]) -> tuple[float, int, int]:
    """Largest utility gain any organisation gets by deviating alone from `actions`.

    Returns (gain, organisation, action); a Nash equilibrium has gain <= 0 (used to check Lemma 1).
    """
    base = np.asarray(actions, dtype=int)
    base_utilities = game.utilities(base)
    best = (-np.inf, -1, -1)
    for organisation in range(game.players):
        for action in range(game.rounds + 1):
            if action == base[organisation]:
                continue
            deviated = base.copy()
            deviated[organisation] = action
            gain = float(game.utilities(deviated)[organisation] - base_utilities[organisation])
            if gain > best[0]:
                best = (gain, organisation, action)
    return best


def is_nash_equilibrium(game: PublicGoodsGame, actions: Sequence[int], tolerance: float = 1e-12) -> bool:
    """True iff no organisation gains more than `tolerance` by a unilateral deviation (Lemma 1)."""
    return best_unilateral_gain(game, actions)[0] <= tolerance


def all_outcomes(players: int, rounds: int) -> np.ndarray:
    """Every outcome of {0..R}^N in the lexicographic order of SPEC B.3 (organisation 0 most significant)."""
    return np.array(list(itertools.product(range(rounds + 1), repeat=players)), dtype=int).reshape(-1, players)


def sample_dilemma_game(
    rng: np.random.Generator,
    players: int,
    rounds: int,
    *,
    theta0: float = DEFAULT_THETA0,
    theta1: float | None = None,
    local_iterations: int = DEFAULT_LOCAL_ITERATIONS,
    revenue_range: tuple[float, float] = (0.5, 1.5),
    cost_position: tuple[float, float] = (0.05, 0.95),
) -> PublicGoodsGame:
    """Draw a game that is a social dilemma (SPEC B.1 defaults): rho_i ~ U[revenue_range], kappa_i in the window.

    kappa_i = rho_i * (g(1) + u_i * (g(NR)/R - g(1))), u_i ~ U[cost_position], so kappa_i > rho_i * g(1)
    (Assumption 1) and sum_i kappa_i * R < sum_i rho_i * g(NR) (the dilemma). theta1 defaults to twice the
    SPEC B.2 bound (at least 1).
    """
    if theta1 is None:
        theta1 = max(1.0, 2.0 * theta1_lower_bound(players, rounds, local_iterations))
    revenue = rng.uniform(*revenue_range, size=players)
    probe = PublicGoodsGame(theta0, theta1, local_iterations, rounds, (1.0,), (1.0,))
    low = float(probe.precision_gain(1))
    high = float(probe.precision_gain(players * rounds)) / rounds
    if high <= low:
        raise SocialDilemmaError(
            f"theta1 = {theta1:.6g} must be > K*N*(R-1)/(N-1) = "
            f"{theta1_lower_bound(players, rounds, local_iterations):.6g}: no cost window exists"
        )
    position = rng.uniform(*cost_position, size=players)
    cost = revenue * (low + position * (high - low))
    return PublicGoodsGame(theta0, theta1, local_iterations, rounds, tuple(revenue), tuple(cost))


@dataclass(frozen=True)
class WelfareReferences:
    """The yardsticks of a task's game (SPEC B.1, B.2): the welfare-maximising participation, full cooperation
    (everyone plays R) and the all-defect Nash equilibrium y = 0 of Lemma 1 (welfare P(0) = 0)."""

    optimum_total: int
    optimum_welfare: float
    optimum_actions: tuple[int, ...]
    full_cooperation_total: int
    full_cooperation_welfare: float
    nash_welfare: float

    @property
    def full_cooperation_is_optimal(self) -> bool:
        """True when everyone playing R maximises welfare (the optimum total is N * R)."""
        return self.optimum_total == self.full_cooperation_total


def cheapest_fill(game: PublicGoodsGame, total: int) -> np.ndarray:
    """The profile with total participation `total` at the least cost: the cheapest organisations (smallest kappa_i,
    ties by index) play R first, the next one the remainder (SPEC B.4, "fills the cheapest organisations first")."""
    if not 0 <= total <= game.players * game.rounds:
        raise ValueError(f"total: must be in 0..{game.players * game.rounds}, got {total}")
    actions = np.zeros(game.players, dtype=int)
    remaining = total
    for index in np.argsort(game.cost_array, kind="stable"):
        take = min(game.rounds, remaining)
        actions[index] = take
        remaining -= take
        if remaining == 0:
            break
    return actions


def welfare_by_total(game: PublicGoodsGame) -> np.ndarray:
    """max_{y: sum y = T} P(y) for T = 0..N*R: (sum_i rho_i) g(T) minus the cheapest-first cost of T rounds.

    Welfare depends on y only through T (the revenue) and sum_i kappa_i y_i (the cost), so the best profile of a
    given total puts the rounds on the cheapest organisations (SPEC B.1, B.4)."""
    unit_costs = np.repeat(np.sort(game.cost_array), game.rounds)  # one entry per round, cheapest first
    cost = np.concatenate([[0.0], np.cumsum(unit_costs)])
    totals = np.arange(game.players * game.rounds + 1)
    return float(game.revenue_array.sum()) * np.asarray(game.precision_gain(totals), dtype=float) - cost


def welfare_references(game: PublicGoodsGame) -> WelfareReferences:
    """Social optimum (the smallest total with the largest welfare, filled cheapest first), full cooperation and
    the all-defect Nash welfare of the game (SPEC B.1, B.2). O(N log N + N R)."""
    by_total = welfare_by_total(game)
    best = int(np.argmax(by_total))
    full_total = game.players * game.rounds
    return WelfareReferences(
        optimum_total=best,
        optimum_welfare=float(by_total[best]),
        optimum_actions=tuple(int(action) for action in cheapest_fill(game, best)),
        full_cooperation_total=full_total,
        full_cooperation_welfare=game.welfare(np.full(game.players, game.rounds)),
        nash_welfare=game.welfare(np.zeros(game.players, dtype=int)),
    )


def welfare_position(welfare: float, nash_welfare: float, optimum_welfare: float) -> float:
    """Where a welfare sits between the all-defect Nash welfare (0) and the social optimum (1):
    (P - P_Nash) / (P_opt - P_Nash); NaN when the two references coincide (nothing to gain by cooperating)."""
    span = optimum_welfare - nash_welfare
    if not span > 0:
        return float("nan")
    return (welfare - nash_welfare) / span
