"""Zero-determinant strategies that control expected welfare: MMZD (SPEC B.4) and MMZD alliances (SPEC B.5).

A controller (one organisation, or an alliance acting as one player) chooses a controlled action a* and the
sign of phi. Its strategy p(a* | k) = 1[y^k = a*] + phi * (s_k - P*) (Z 10) makes the column p_hat of the
Markov determinant proportional to s - P*, which forces the stationary expected welfare to P* whatever
the others do, provided every probability lies in [0, 1] (Proposition 1). All the feasibility rules need
are the lowest and highest welfare over the outcomes in which the controller plays each action ("welfare
extremes"), computed by enumeration (small games, any FiniteGame) or by the reduction of SPEC B.4 (public
goods, O(N log N + N R^2)).

Also here: the general linear-relation ZD builder for any finite game (Press & Dyson's equalizer and extortion
strategies in the prisoner's dilemma are instances) and a Monte-Carlo policy playing a design.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from flmarket.market.errors import InfeasibleTargetError, MarketError
from flmarket.market.iterated import FiniteGame, MemorylessStart, check_distributions, uniform
from flmarket.market.public_goods import PublicGoodsGame, all_outcomes

Mode = Literal["exact", "paper"]
Form = Literal["single", "pair"]
DEFAULT_PHI_SCALE = 0.9
MODES = ("exact", "paper")


@dataclass(frozen=True)
class WelfareExtremes:
    """lowest[a] = min and highest[a] = max of s_k over outcomes k where the controller plays a (B.4)."""

    lowest: np.ndarray
    highest: np.ndarray

    @property
    def action_count(self) -> int:
        """Number of actions of the controller."""
        return len(self.lowest)

    def largest_deviation(self, target: float) -> float:
        """max_k |s_k - P*| over all outcomes."""
        return float(max(self.highest.max() - target, target - self.lowest.min(), 0.0))


def welfare_extremes(controller_actions: np.ndarray, welfare: np.ndarray, action_count: int) -> WelfareExtremes:
    """Welfare extremes by enumeration: group s_k by the controller's action in outcome k (SPEC B.4)."""
    actions = np.asarray(controller_actions, dtype=np.int64)
    values = np.asarray(welfare, dtype=float)
    lowest = np.full(action_count, np.inf)
    highest = np.full(action_count, -np.inf)
    np.minimum.at(lowest, actions, values)
    np.maximum.at(highest, actions, values)
    if not np.all(np.isfinite(lowest)):
        missing = np.flatnonzero(~np.isfinite(lowest)).tolist()
        raise MarketError(f"controller_actions: every action must occur in some outcome, missing {missing}")
    return WelfareExtremes(lowest, highest)


def finite_game_extremes(game: FiniteGame, player: int) -> WelfareExtremes:
    """Welfare extremes of `player` in a small FiniteGame, by enumerating its outcomes (SPEC B.4)."""
    return welfare_extremes(game.outcomes[:, player], game.welfare_table, game.action_counts[player])


# ----------------------------------------------------------------------------------------------------
# The public-goods game seen by a controller (one organisation or an alliance).


@dataclass(frozen=True)
class ControlledGame:
    """The public-goods game reduced to a controller and the outsiders (SPEC B.4, B.5).

    The controller is one organisation (MMZD) or an alliance of M organisations all playing y_A (MMZDA); the
    reduced welfare (B.5) is
    s'(y_A, y_O) = (sum_i rho_i) g(M y_A + sum_O y_o) - kappa_A y_A - sum_O kappa_o y_o.
    """

    game: PublicGoodsGame
    controllers: tuple[int, ...]

    def __post_init__(self) -> None:
        members = tuple(int(member) for member in self.controllers)
        if not members:
            raise MarketError("controllers: an alliance needs at least one organisation, got ()")
        if len(set(members)) != len(members) or min(members) < 0 or max(members) >= self.game.players:
            raise MarketError(
                f"controllers: must be distinct organisations in 0..{self.game.players - 1}, got {members}"
            )
        object.__setattr__(self, "controllers", members)

    @property
    def alliance_size(self) -> int:
        """M, the number of organisations playing the controller's action."""
        return len(self.controllers)

    @property
    def outsiders(self) -> tuple[int, ...]:
        """Organisations outside the alliance, in index order."""
        chosen = set(self.controllers)
        return tuple(j for j in range(self.game.players) if j not in chosen)

    @property
    def alliance_cost(self) -> float:
        """kappa_A = sum_{j in A} kappa_j (SPEC B.5)."""
        return float(self.game.cost_array[list(self.controllers)].sum())

    @property
    def revenue_total(self) -> float:
        """sum_i rho_i over all organisations."""
        return float(self.game.revenue_array.sum())

    def reduced_welfare(self, alliance_action: np.ndarray, outsider_actions: np.ndarray) -> np.ndarray:
        """s'(y_A, y_O) of SPEC B.5 for arrays of alliance actions (m,) and outsider actions (m, N - M)."""
        alliance = np.asarray(alliance_action, dtype=float)
        outsiders = np.asarray(outsider_actions, dtype=float).reshape(len(alliance), -1)
        outsider_costs = self.game.cost_array[list(self.outsiders)]
        total = self.alliance_size * alliance + outsiders.sum(axis=1)
        gain = np.asarray(self.game.precision_gain(total), dtype=float)
        return self.revenue_total * gain - self.alliance_cost * alliance - outsiders @ outsider_costs

    def extremes_by_enumeration(self) -> WelfareExtremes:
        """Extremes over the (R+1)^N outcomes of the full game in which all members agree (small N only)."""
        outcomes = all_outcomes(self.game.players, self.game.rounds)
        members = list(self.controllers)
        agree = np.all(outcomes[:, members] == outcomes[:, [members[0]]], axis=1)
        kept = outcomes[agree]
        gain = np.asarray(self.game.precision_gain(kept.sum(axis=1)), dtype=float)
        welfare = self.revenue_total * gain - kept @ self.game.cost_array
        return welfare_extremes(kept[:, members[0]], welfare, self.game.rounds + 1)

    def extremes_by_reduction(self) -> WelfareExtremes:
        """Extremes in O(N log N + N R^2) without enumerating outcomes (SPEC B.4 "Scale").

        For outsiders' total T the outsider cost sum_O kappa_o y_o with sum_O y_o = T, 0 <= y_o <= R is
        smallest when the cheapest outsiders are filled first and largest when the dearest are; the welfare
        then depends only on (y_A, T), so max/min over outcomes are max/min over T of those two fillings.
        """
        rounds = self.game.rounds
        costs = np.sort(self.game.cost_array[list(self.outsiders)])
        totals = np.arange(len(costs) * rounds + 1)
        cheapest_first = _filled_cost(costs, totals, rounds)
        dearest_first = _filled_cost(costs[::-1], totals, rounds)
        actions = np.arange(rounds + 1)
        participation = self.alliance_size * actions[:, None] + totals[None, :]
        benefit = self.revenue_total * np.asarray(self.game.precision_gain(participation), dtype=float)
        benefit = benefit - self.alliance_cost * actions[:, None]
        highest = (benefit - cheapest_first[None, :]).max(axis=1)
        lowest = (benefit - dearest_first[None, :]).min(axis=1)
        return WelfareExtremes(lowest, highest)

    def extremes(self, method: Literal["reduction", "enumeration"] = "reduction") -> WelfareExtremes:
        """Welfare extremes of the controller by the chosen method (they agree; see the tests)."""
        if method == "reduction":
            return self.extremes_by_reduction()
        if method == "enumeration":
            return self.extremes_by_enumeration()
        raise MarketError(f"method: must be 'reduction' or 'enumeration', got {method!r}")


def _filled_cost(ordered_costs: np.ndarray, totals: np.ndarray, rounds: int) -> np.ndarray:
    """Cost of reaching each total giving R rounds to organisations in order, the rest to the next."""
    prefix = np.concatenate([[0.0], np.cumsum(ordered_costs)])
    full = totals // rounds
    remainder = totals % rounds
    next_cost = np.concatenate([ordered_costs, [0.0]])[full]
    return rounds * prefix[full] + remainder * next_cost


# ----------------------------------------------------------------------------------------------------
# Feasibility (Proposition 1, Ueda's two-action form) and the design of the strategy.


def single_action_interval(extremes: WelfareExtremes, controlled_action: int, sign: int) -> tuple[float, float]:
    """Enforceable targets [lower, upper] of p(a*|k) = 1[y^k=a*] + phi (s_k - P*) (Proposition 1, SPEC B.4).

    phi > 0: max_{k: y^k=a*} s_k <= P* <= min_{k: y^k!=a*} s_k; phi < 0: the two sets swap. The interval is
    empty (lower > upper) when no such P* exists; `upper` is the paper's P_max of (Z 12) / (Z 13).
    """
    _check_action(extremes, controlled_action, "controlled_action")
    if sign not in (1, -1):
        raise MarketError(f"sign: must be +1 or -1 (the sign of phi), got {sign}")
    others = np.arange(extremes.action_count) != controlled_action
    if not others.any():
        return float(extremes.highest[controlled_action]), float(extremes.lowest[controlled_action])
    if sign > 0:
        return float(extremes.highest[controlled_action]), float(extremes.lowest[others].min())
    return float(extremes.highest[others].max()), float(extremes.lowest[controlled_action])


def pair_interval(extremes: WelfareExtremes, low_action: int, high_action: int) -> tuple[float, float]:
    """Ueda's two-action form: max_{k: y^k = a_hi} s_k <= P* <= min_{k: y^k = a_lo} s_k (SPEC B.4)."""
    _check_action(extremes, low_action, "low_action")
    _check_action(extremes, high_action, "high_action")
    if low_action == high_action:
        raise MarketError(f"low_action and high_action: must differ, got {low_action} twice")
    return float(extremes.highest[high_action]), float(extremes.lowest[low_action])


def _check_action(extremes: WelfareExtremes, action: int, label: str) -> None:
    if not 0 <= action < extremes.action_count:
        raise MarketError(f"{label}: must be in 0..{extremes.action_count - 1}, got {action}")


@dataclass(frozen=True)
class EnforceableWelfare:
    """The largest P* any ZD strategy of the controller enforces (general two-action form), or None."""

    value: float | None
    low_action: int | None
    high_action: int | None

    @property
    def feasible(self) -> bool:
        """True iff some target is enforceable."""
        return self.value is not None


def largest_enforceable_welfare(extremes: WelfareExtremes) -> EnforceableWelfare:
    """max over pairs a_lo != a_hi with max_{a_hi} s <= min_{a_lo} s of min_{a_lo} s (Ueda; SPEC B.4).

    Every single-action interval of Proposition 1 lies inside a pair interval, so this is the largest
    enforceable welfare of the controller.
    """
    best = EnforceableWelfare(None, None, None)
    for low_action in range(extremes.action_count):
        for high_action in range(extremes.action_count):
            if low_action == high_action:
                continue
            lower, upper = pair_interval(extremes, low_action, high_action)
            if lower <= upper and (best.value is None or upper > best.value):
                best = EnforceableWelfare(upper, low_action, high_action)
    return best


def paper_maximum(extremes: WelfareExtremes) -> tuple[float, int, int]:
    """The paper's P_max: the largest (Z 12) / (Z 13) bound over a* and the sign of phi, ignoring feasibility.

    Returns (P_max, a*, sign). Ties prefer a feasible interval, then the larger action, then phi > 0.
    """
    candidates = []
    for action in range(extremes.action_count):
        for sign in (1, -1):
            lower, upper = single_action_interval(extremes, action, sign)
            candidates.append((upper, lower <= upper, action, sign))
    upper, _, action, sign = max(candidates)
    return upper, action, sign


@dataclass(frozen=True)
class ZeroDeterminantDesign:
    """A welfare-controlling ZD strategy and its feasibility report (SPEC B.4).

    form "single": p(a*|k) = 1[y^k = a*] + phi (s_k - P*), leftover uniform over the other actions (Z 10).
    form "pair": Ueda's form with a_hi = controlled_action, a_lo = partner_action: the strategy plays a_hi
    with probability c(y^k) + phi (s_k - P*) and a_lo otherwise; c = 1 on a_hi, 0 on a_lo, 1/2 elsewhere.
    `feasible` says whether every probability lies in [0, 1] so the stationary welfare equals `target` against
    any opponents; in `paper` mode an infeasible design is still playable with clipped probabilities and then
    loses that invariance. In `exact` mode an infeasible design has target nan and cannot be played.
    """

    mode: str
    form: str
    controlled_action: int
    partner_action: int | None
    sign: int
    target: float
    phi: float
    feasible: bool
    lower_bound: float
    upper_bound: float
    largest_feasible: float | None
    paper_maximum: float
    action_count: int
    phi_scale: float

    @property
    def playable(self) -> bool:
        """False only for an infeasible `exact` design."""
        return not math.isnan(self.target)

    @property
    def opponent_invariant(self) -> bool:
        """True iff the stationary welfare equals the target whatever the others play."""
        return self.feasible

    def action_weights(self) -> np.ndarray:
        """c(a): the coefficients of the column combination sum_a c(a) p_hat^a (1 on a*, SPEC B.4)."""
        if self.form == "single":
            weights = np.zeros(self.action_count)
            weights[self.controlled_action] = 1.0
            return weights
        weights = np.full(self.action_count, 0.5)
        weights[self.controlled_action] = 1.0
        weights[self.partner_action] = 0.0
        return weights

    def probabilities(self, previous_welfare: np.ndarray | float, own_action: np.ndarray | int) -> np.ndarray:
        """Rows of p(. | k) from the previous outcome's welfare s_k and the controller's action in it (Z 10).

        O(R) per outcome: the strategy needs nothing else of the previous outcome (SPEC B.4, run time).
        """
        if not self.playable:
            raise InfeasibleTargetError(
                f"target: no enforceable welfare for this controller in exact mode (Proposition 1 interval "
                f"[{self.lower_bound:.6g}, {self.upper_bound:.6g}] is empty); use mode='paper' or an alliance"
            )
        welfare = np.atleast_1d(np.asarray(previous_welfare, dtype=float))
        actions = np.atleast_1d(np.asarray(own_action, dtype=np.int64))
        weights = self.action_weights()
        controlled = np.clip(weights[actions] + self.phi * (welfare - self.target), 0.0, 1.0)
        rows = np.zeros((len(welfare), self.action_count))
        if self.form == "single":
            others = self.action_count - 1
            if others:
                rows[:] = ((1.0 - controlled) / others)[:, None]
            rows[:, self.controlled_action] = controlled
        else:
            rows[:, self.controlled_action] = controlled
            rows[:, self.partner_action] = 1.0 - controlled
        return rows

    def initial_probabilities(self) -> np.ndarray:
        """First-round distribution: uniform (random initial actions, SPEC B.6)."""
        return uniform(self.action_count)


def choose_phi(
    extremes: WelfareExtremes,
    target: float,
    sign: int,
    phi_scale: float = DEFAULT_PHI_SCALE,
    form: Form = "single",
    controlled_action: int | None = None,
    partner_action: int | None = None,
) -> float:
    """phi = sign * c / max_k |s_k - P*| with c in (0, 1] (SPEC B.4), so |phi (s_k - P*)| <= c never binds.

    In the pair form outcomes where the controller played neither a_lo nor a_hi start from c = 1/2, so their
    deviations count double.
    """
    if not 0 < phi_scale <= 1:
        raise MarketError(f"phi_scale: must be in (0, 1], got {phi_scale}")
    deviation = np.maximum(extremes.highest - target, target - extremes.lowest)
    deviation = np.maximum(deviation, 0.0)
    if form == "pair":
        doubled = np.full(extremes.action_count, 2.0)
        doubled[[controlled_action, partner_action]] = 1.0
        deviation = deviation * doubled
    largest = float(deviation.max())
    if largest == 0.0:
        return sign * phi_scale
    return sign * phi_scale / largest


def design_zero_determinant(
    extremes: WelfareExtremes,
    *,
    mode: Mode = "exact",
    controlled_action: int | None = None,
    sign: int | None = None,
    target: float | None = None,
    phi_scale: float = DEFAULT_PHI_SCALE,
) -> ZeroDeterminantDesign:
    """Choose a*, the sign of phi, P* and phi for a controller with the given welfare extremes (SPEC B.4).

    exact: P* defaults to the largest enforceable welfare (Proposition 1 for a given a*/sign; otherwise the
    general two-action form, preferring a single-action strategy reaching the same value). An explicit target
    that cannot be enforced raises InfeasibleTargetError; no enforceable target at all gives an unplayable,
    infeasible design. paper: P* defaults to the (Z 12)/(Z 13) bound P_max (maximised over a* and sign when
    not given); the probabilities are clipped and `feasible` reports whether the bound is really enforceable.
    """
    if mode not in MODES:
        raise MarketError(f"mode: must be one of {MODES}, got {mode!r}")
    if (controlled_action is None) != (sign is None) and mode == "paper":
        raise MarketError(
            f"controlled_action and sign: give both or neither in paper mode, got {controlled_action}, {sign}"
        )
    general = largest_enforceable_welfare(extremes)
    if mode == "paper":
        return _design_paper(extremes, general, controlled_action, sign, target, phi_scale)
    return _design_exact(extremes, general, controlled_action, sign, target, phi_scale)


def _design_paper(
    extremes: WelfareExtremes,
    general: EnforceableWelfare,
    controlled_action: int | None,
    sign: int | None,
    target: float | None,
    phi_scale: float,
) -> ZeroDeterminantDesign:
    """Paper mode: P* = the (Z 12)/(Z 13) bound, feasibility reported, probabilities clipped."""
    _, best_action, best_sign = paper_maximum(extremes)
    if controlled_action is None:
        controlled_action, sign = best_action, best_sign
    lower, upper = single_action_interval(extremes, controlled_action, sign)
    chosen = upper if target is None else float(target)
    return ZeroDeterminantDesign(
        mode="paper",
        form="single",
        controlled_action=controlled_action,
        partner_action=None,
        sign=sign,
        target=chosen,
        phi=choose_phi(extremes, chosen, sign, phi_scale),
        feasible=lower <= chosen <= upper,
        lower_bound=lower,
        upper_bound=upper,
        largest_feasible=general.value,
        paper_maximum=upper,
        action_count=extremes.action_count,
        phi_scale=phi_scale,
    )


def _design_exact(
    extremes: WelfareExtremes,
    general: EnforceableWelfare,
    controlled_action: int | None,
    sign: int | None,
    target: float | None,
    phi_scale: float,
) -> ZeroDeterminantDesign:
    """Exact mode: only enforceable targets; single-action form preferred, else Ueda's pair form."""
    singles = []
    actions = range(extremes.action_count) if controlled_action is None else [controlled_action]
    signs = (1, -1) if sign is None else (sign,)
    for action in actions:
        for candidate_sign in signs:
            lower, upper = single_action_interval(extremes, action, candidate_sign)
            singles.append((lower, upper, action, candidate_sign))
    feasible_singles = [s for s in singles if s[0] <= s[1] and (target is None or s[0] <= target <= s[1])]
    explicit = controlled_action is not None
    if target is None and not explicit and general.value is not None:
        feasible_singles = [s for s in feasible_singles if s[1] >= general.value]
    if feasible_singles:
        lower, upper, action, chosen_sign = max(feasible_singles, key=lambda s: (s[1], s[2], s[3]))
        chosen = upper if target is None else float(target)
        return _exact_design("single", action, None, chosen_sign, chosen, lower, upper, extremes, general, phi_scale)
    if not explicit:
        pairs = []
        for low_action in range(extremes.action_count):
            for high_action in range(extremes.action_count):
                if low_action == high_action:
                    continue
                lower, upper = pair_interval(extremes, low_action, high_action)
                if lower <= upper and (target is None or lower <= target <= upper):
                    pairs.append((upper, high_action, low_action, lower))
        if pairs:
            upper, high_action, low_action, lower = max(pairs)
            chosen = upper if target is None else float(target)
            return _exact_design("pair", high_action, low_action, 1, chosen, lower, upper, extremes, general, phi_scale)
    if target is not None:
        raise InfeasibleTargetError(
            f"target: {target:.6g} is not enforceable by a zero-determinant strategy of this controller "
            f"(largest enforceable welfare: {general.value}); use mode='paper' or a larger alliance"
        )
    lower, upper, action, chosen_sign = max(singles, key=lambda s: (s[1], s[2], s[3]))
    return ZeroDeterminantDesign(
        mode="exact",
        form="single",
        controlled_action=action,
        partner_action=None,
        sign=chosen_sign,
        target=math.nan,
        phi=math.nan,
        feasible=False,
        lower_bound=lower,
        upper_bound=upper,
        largest_feasible=None,
        paper_maximum=paper_maximum(extremes)[0],
        action_count=extremes.action_count,
        phi_scale=phi_scale,
    )


def _exact_design(
    form: Form,
    action: int,
    partner: int | None,
    sign: int,
    target: float,
    lower: float,
    upper: float,
    extremes: WelfareExtremes,
    general: EnforceableWelfare,
    phi_scale: float,
) -> ZeroDeterminantDesign:
    """A feasible exact design with phi from the c rule (SPEC B.4)."""
    return ZeroDeterminantDesign(
        mode="exact",
        form=form,
        controlled_action=action,
        partner_action=partner,
        sign=sign,
        target=target,
        phi=choose_phi(extremes, target, sign, phi_scale, form, action, partner),
        feasible=True,
        lower_bound=lower,
        upper_bound=upper,
        largest_feasible=general.value,
        paper_maximum=paper_maximum(extremes)[0],
        action_count=extremes.action_count,
        phi_scale=phi_scale,
    )


def design_mmzd(
    game: PublicGoodsGame,
    organisation: int,
    *,
    mode: Mode = "exact",
    controlled_action: int | None = None,
    sign: int | None = None,
    target: float | None = None,
    phi_scale: float = DEFAULT_PHI_SCALE,
    method: Literal["reduction", "enumeration"] = "reduction",
) -> ZeroDeterminantDesign:
    """MMZD of one organisation in the public-goods game (SPEC B.4, Proposition 1): an alliance of one."""
    return design_mmzda(
        game,
        (organisation,),
        mode=mode,
        controlled_action=controlled_action,
        sign=sign,
        target=target,
        phi_scale=phi_scale,
        method=method,
    )


def design_mmzda(
    game: PublicGoodsGame,
    alliance: Sequence[int],
    *,
    mode: Mode = "exact",
    controlled_action: int | None = None,
    sign: int | None = None,
    target: float | None = None,
    phi_scale: float = DEFAULT_PHI_SCALE,
    method: Literal["reduction", "enumeration"] = "reduction",
) -> ZeroDeterminantDesign:
    """MMZDA: the alliance as one player on the reduced game of SPEC B.5 (Proposition 2, Z 19 - Z 20)."""
    extremes = ControlledGame(game, tuple(alliance)).extremes(method)
    return design_zero_determinant(
        extremes,
        mode=mode,
        controlled_action=controlled_action,
        sign=sign,
        target=target,
        phi_scale=phi_scale,
    )


def full_participation_welfare(game: PublicGoodsGame) -> float:
    """P(R, ..., R), the welfare when every organisation takes part in every round."""
    return game.welfare(np.full(game.players, game.rounds))


def relative_maximum(game: PublicGoodsGame, controlled_welfare: float) -> float:
    """P'_max / P(R, ..., R) (SPEC B.5)."""
    return controlled_welfare / full_participation_welfare(game)


@dataclass(frozen=True)
class AllianceMaximum:
    """Largest controllable welfare of the alliance of the first M organisations of an order (B.5)."""

    alliance_size: int
    alliance: tuple[int, ...]
    largest_feasible: float | None
    paper_maximum: float
    relative_largest_feasible: float | None
    relative_paper_maximum: float


def alliance_maxima(
    game: PublicGoodsGame, order: Sequence[int], method: Literal["reduction", "enumeration"] = "reduction"
) -> list[AllianceMaximum]:
    """P'_max(M) for nested alliances order[:M], M = 1..len(order) (Theorem 2: both maxima non-decreasing)."""
    results = []
    for size in range(1, len(order) + 1):
        alliance = tuple(int(member) for member in order[:size])
        extremes = ControlledGame(game, alliance).extremes(method)
        general = largest_enforceable_welfare(extremes)
        paper = paper_maximum(extremes)[0]
        results.append(
            AllianceMaximum(
                alliance_size=size,
                alliance=alliance,
                largest_feasible=general.value,
                paper_maximum=paper,
                relative_largest_feasible=None if general.value is None else relative_maximum(game, general.value),
                relative_paper_maximum=relative_maximum(game, paper),
            )
        )
    return results


# ----------------------------------------------------------------------------------------------------
# General linear-relation ZD strategies (Press & Dyson) for any small finite game.


@dataclass(frozen=True)
class LinearZeroDeterminant:
    """A memory-one strategy enforcing sum_j alpha_j E[u_j] + gamma = 0 (Press & Dyson; He et al.)."""

    matrix: np.ndarray
    phi: float
    relation: np.ndarray


def linear_zero_determinant_strategy(
    game: FiniteGame,
    player: int,
    controlled_action: int,
    coefficients: Sequence[float],
    offset: float,
    *,
    phi: float | None = None,
    phi_scale: float = 1.0,
) -> LinearZeroDeterminant:
    """p(a*|k) = 1[y_player^k = a*] + phi * (sum_j alpha_j u_j(k) + gamma), leftover uniform (SPEC B.4, Z 10).

    Without `phi` the sign is the one that keeps probabilities in [0, 1] and |phi| = c / max_k |relation_k|.
    Raises InfeasibleTargetError if no phi keeps every probability in [0, 1].
    """
    alpha = np.asarray(coefficients, dtype=float)
    if alpha.shape != (game.players,):
        raise MarketError(f"coefficients: need one per player ({game.players}), got shape {alpha.shape}")
    action_count = game.action_counts[player]
    if not 0 <= controlled_action < action_count:
        raise MarketError(f"controlled_action: must be in 0..{action_count - 1}, got {controlled_action}")
    relation = game.payoff_table @ alpha + offset
    plays = game.outcomes[:, player] == controlled_action
    if phi is None:
        largest = float(np.abs(relation).max())
        candidates = [s for s in (1, -1) if np.all(s * relation[plays] <= 0) and np.all(s * relation[~plays] >= 0)]
        if not candidates:
            raise InfeasibleTargetError(
                f"coefficients/offset: relation {alpha.tolist()}, {offset} changes sign within the outcomes "
                f"where "
                f"player {player} plays {controlled_action} or within the others; no phi keeps p in [0, 1]"
            )
        phi = candidates[0] * phi_scale / largest if largest > 0 else phi_scale
    controlled = plays.astype(float) + phi * relation
    if controlled.min() < -1e-12 or controlled.max() > 1 + 1e-12:
        raise InfeasibleTargetError(
            f"phi: {phi:.6g} puts p(a*|k) outside [0, 1] (range [{controlled.min():.6g}, {controlled.max():.6g}])"
        )
    controlled = np.clip(controlled, 0.0, 1.0)
    matrix = np.zeros((game.outcome_count, action_count))
    if action_count > 1:
        matrix[:] = ((1.0 - controlled) / (action_count - 1))[:, None]
    matrix[:, controlled_action] = controlled
    return LinearZeroDeterminant(check_distributions(matrix, "strategy"), float(phi), relation)


def design_matrix(game: FiniteGame, player: int, design: ZeroDeterminantDesign) -> np.ndarray:
    """A welfare-control design as an (|Omega|, |A|) memory-one matrix for `player` of a small game."""
    return design.probabilities(game.welfare_table, game.outcomes[:, player])


class ZeroDeterminantPolicy(MemorylessStart):
    """Monte-Carlo play of a design: needs only the previous welfare and own action (O(N))."""

    def __init__(
        self,
        design: ZeroDeterminantDesign,
        welfare: Callable[[np.ndarray], np.ndarray],
        controller: int,
        initial: np.ndarray | None = None,
    ) -> None:
        self.design = design
        self.welfare = welfare
        self.controller = controller
        self.action_count = design.action_count
        self.initial = None if initial is None else check_distributions(initial, "initial")

    def distribution(self, previous: np.ndarray | None, repetitions: int) -> np.ndarray:
        """p(. | previous outcome) from s(previous) and the controller's previous action."""
        if previous is None:
            return self.first_round(repetitions)
        return self.design.probabilities(self.welfare(previous), previous[:, self.controller])
