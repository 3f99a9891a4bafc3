"""Shapley values of cooperative games (B 10, SPEC A.5): exact, sampled, and stratified for large markets.

- `shapley_values`: any coalition value function v(frozenset) -> float, with a coalition cache. Exact by the
  subset-weight formula (B 10) up to `exact_max` players (2^n value calls); above it, by default sampling
  stratified over coalition sizes (exact end sizes, Neyman allocation, replicates with the efficiency total
  as control variate, Student-t intervals: `ShapleyResult.interval_half_widths`), or permutation sampling in
  groups of cyclic rotations (each player takes every position once per group), antithetic reversed orders,
  optional truncation; both stop on the standard error and report `converged`.
- `QuadraticMeanGame`: G(S) = c + mean_S a + (1/2|S|^2) sum_SxS B, exact Shapley values in O(n^2); a value
  function that offers one (`control_game()`, the torch backend's second-order Taylor model of its coalition
  values) gets it used as a control variate by the stratified estimator: xi(G) + sampled xi(v - G).
- `round_coalition_value`: the per-round game of SPEC A.5, v(S) = Q(w_G^r(S)) - Q(w_G^{r-1}), v(empty) = 0.
- `stratified_sum_game_shapley`: games where v(S) = g(sum of the members' features) (e.g. total data), for
  1,000-10,000 players: stratified over coalition sizes with Neyman allocation of the draws, vectorised,
  O(n) value calls per draw.
- `exact_integer_sum_game_shapley`: the exact reference for such games with integer features (a size/sum
  distribution recursion), used to check the stratified estimator; `symmetric_sum_game_shapley`: exact in
  O(n) when every feature is zero or one common value.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike

from flmarket.market.errors import MarketError

CoalitionValue = Callable[[frozenset], float]

DEFAULT_EXACT_MAX = 12
DEFAULT_STRATA = 16
CONTROLLED_STRATA = 2  # size bands of the first stage when a control game takes out most of the spread
REFINED_STRATA = 8  # size bands of the second stage (measured on torch rounds: 6 and 16 bands need more calls)
SAMPLING_CACHED_SIZES = 2  # sampling caches coalitions of at most 2 players or all but at most 2


@dataclass(frozen=True, eq=False)  # holds numpy arrays: compare fields explicitly
class ShapleyResult:
    """Shapley values xi_i of the players, in the order given, with their Monte Carlo standard errors.

    `evaluations` counts calls of the underlying value function (cache hits excluded), `samples` the sampled
    permutations (0 when exact), `converged` whether the stopping rule was met (always true when exact).
    """

    players: tuple[Hashable, ...]
    values: np.ndarray
    standard_errors: np.ndarray
    evaluations: int
    exact: bool
    samples: int
    converged: bool
    method: str
    degrees_of_freedom: float = math.inf

    def __post_init__(self) -> None:
        for array in (self.values, self.standard_errors):
            array.setflags(write=False)
        if not self.degrees_of_freedom > 0:
            raise MarketError(f"degrees_of_freedom: must be > 0, got {self.degrees_of_freedom}")

    def interval_half_widths(self, level: float = 0.95) -> np.ndarray:
        """Half widths of the two-sided `level` confidence intervals xi_i +/- t * SE_i, t the Student-t quantile
        with `degrees_of_freedom` (the normal quantile when that is infinite, e.g. exact values: width 0)."""
        return student_t_quantile(level, self.degrees_of_freedom) * self.standard_errors

    def value_of(self, player: Hashable) -> float:
        """xi of one player."""
        return float(self.values[self.players.index(player)])

    def as_dict(self) -> dict[Hashable, float]:
        """{player: xi}."""
        return {player: float(value) for player, value in zip(self.players, self.values, strict=True)}

    @property
    def relative_standard_error(self) -> float:
        """max_i SE_i / mean_i |xi_i| (0 when exact; inf when every xi is 0 but some SE is not)."""
        return _relative_standard_error(self.values, self.standard_errors)


def student_t_quantile(level: float, degrees_of_freedom: float) -> float:
    """t_{(1 + level) / 2, dof}: the multiplier of SE for a two-sided `level` interval (1.96 at 95 % and
    infinite dof, 12.71 with one dof, 2.26 with nine)."""
    if not 0.0 < level < 1.0:
        raise MarketError(f"level: must lie in (0, 1), got {level}")
    if not degrees_of_freedom > 0:
        raise MarketError(f"degrees_of_freedom: must be > 0, got {degrees_of_freedom}")
    return float(scipy.stats.t.ppf(0.5 + level / 2.0, degrees_of_freedom))


def _relative_standard_error(values: np.ndarray, standard_errors: np.ndarray) -> float:
    largest = float(np.max(standard_errors)) if standard_errors.size else 0.0
    if largest == 0.0:
        return 0.0
    scale = float(np.mean(np.abs(values)))
    return largest / scale if scale > 0.0 else math.inf


def _replicate_estimate(replicates: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean of i.i.d. replicates of xi and its standard error, std (ddof = 1) / sqrt(number of replicates)."""
    estimates = np.asarray(replicates)
    return estimates.mean(axis=0), estimates.std(axis=0, ddof=1) / math.sqrt(len(estimates))


class CoalitionCache:
    """Memoises a coalition value function and counts its real evaluations.

    At most `max_entries` coalitions are stored (later ones are evaluated but not stored), and only those
    whose size passes `store_size` (sampling stores the smallest and largest coalitions, the only ones that
    repeat across random permutations), so long sampling runs cannot exhaust memory.
    """

    def __init__(
        self,
        value: CoalitionValue,
        max_entries: int = 1_000_000,
        store_size: Callable[[int], bool] | None = None,
    ) -> None:
        if max_entries < 0:
            raise MarketError(f"max_entries: must be >= 0, got {max_entries}")
        self._value = value
        self._max_entries = max_entries
        self._store_size = store_size
        self._store: dict[frozenset, float] = {}
        self.evaluations = 0

    def prefetch(self, coalitions: Iterable[frozenset]) -> None:
        """Let a value function that evaluates many coalitions at once (a `values_of` method, e.g. the torch
        backend's one batched forward pass) compute these before they are asked for one by one; a no-op for
        plain functions. Calls are still counted when asked for."""
        values_of = getattr(self._value, "values_of", None)
        if values_of is not None:
            values_of([coalition for coalition in coalitions if coalition and coalition not in self._store])

    def __call__(self, coalition: frozenset) -> float:
        storable = self._store_size is None or self._store_size(len(coalition))
        if storable:
            cached = self._store.get(coalition)
            if cached is not None:
                return cached
        result = float(self._value(coalition))
        self.evaluations += 1
        if not math.isfinite(result):
            raise MarketError(f"value: must be finite for every coalition, got {result} for {set(coalition)}")
        if storable and len(self._store) < self._max_entries:
            self._store[coalition] = result
        return result


def _inclusion_game_shapley(scale: Callable[[np.ndarray], np.ndarray], players: int, fixed: int) -> tuple[float, float]:
    """Shapley values (B 10) of w(S) = h(|S|) * [T subset of S], |T| = `fixed` >= 1, n = `players`, h = `scale`:
    (xi of a member of T, xi of a player outside T).

    A player o outside T adds h(k + 1) - h(k) to a coalition of size k that holds T, which a uniform k-subset
    of the other n - 1 players does with probability k!/(k-t)! / ((n-1)!/(n-1-t)!); so xi_out = (1/n) sum_k of
    that. The members of T are symmetric and, by efficiency, share h(n) - (n - t) xi_out.
    """
    if players < fixed:
        return 0.0, 0.0
    if players == fixed:
        return float(scale(np.array([players]))[0]) / fixed, 0.0
    sizes = np.arange(fixed, players)  # k = |S| before o joins, S holding T
    held = np.ones(sizes.size)
    for step in range(fixed):
        held *= (sizes - step) / (players - 1 - step)
    gains = scale(sizes + 1.0) - scale(sizes.astype(float))
    outside = float(held @ gains) / players
    inside = (float(scale(np.array([float(players)]))[0]) - (players - fixed) * outside) / fixed
    return inside, outside


@dataclass(frozen=True, eq=False)  # holds numpy arrays
class QuadraticMeanGame:
    """G(S) = c + (1/|S|) sum_{i in S} a_i + (1/(2 |S|^2)) sum_{i, j in S} B_ij for non-empty S, G(empty) = 0.

    The second-order Taylor model of a value that depends on the mean of the members' vectors d_i, v(S) =
    F(m + mean_{i in S} d_i), about m: c = F(m), a_i = <grad F(m), d_i>, B_ij = d_i^T Hess F(m) d_j. Its
    Shapley values are exact in O(n^2) (`shapley_values`), which makes it a control variate for a sampled
    estimate of v's (see `shapley_values(..., control=...)`).
    """

    players: tuple[Hashable, ...]
    constant: float
    linear: np.ndarray
    quadratic: np.ndarray

    def __post_init__(self) -> None:
        count = len(self.players)
        linear = np.asarray(self.linear, dtype=float)
        quadratic = np.asarray(self.quadratic, dtype=float)
        if linear.shape != (count,) or quadratic.shape != (count, count):
            raise MarketError(
                f"linear, quadratic: must be ({count},) and ({count}, {count}) for {count} players, got "
                f"{linear.shape} and {quadratic.shape}"
            )
        if not (math.isfinite(self.constant) and np.all(np.isfinite(linear)) and np.all(np.isfinite(quadratic))):
            raise MarketError("constant, linear, quadratic: must be finite")
        symmetric = (quadratic + quadratic.T) / 2.0
        for name, array in (("linear", linear), ("quadratic", symmetric)):
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        object.__setattr__(self, "_index", {player: index for index, player in enumerate(self.players)})

    def __call__(self, coalition: frozenset) -> float:
        """G(S) (0 for the empty coalition)."""
        if not coalition:
            return 0.0
        members = [self._index[player] for player in coalition]  # type: ignore[attr-defined]
        size = len(members)
        inner = self.quadratic[np.ix_(members, members)].sum()
        return float(self.constant + self.linear[members].sum() / size + inner / (2.0 * size * size))

    def shapley_values(self) -> np.ndarray:
        """Exact Shapley values (B 10) of G, in `players` order: G is c [S non-empty] + sum_i a_i [i in S] / |S|
        + sum_i (B_ii / 2) [i in S] / |S|^2 + sum_{i<j} B_ij [i, j in S] / |S|^2, a sum of games each symmetric
        but for one or two players (`_inclusion_game_shapley`), and Shapley values add over games."""
        count = len(self.players)
        if count == 0:
            return np.zeros(0)
        linear_in, linear_out = _inclusion_game_shapley(np.reciprocal, count, 1)
        square_in, square_out = _inclusion_game_shapley(lambda sizes: 1.0 / (sizes * sizes), count, 1)
        pair_in, pair_out = _inclusion_game_shapley(lambda sizes: 1.0 / (sizes * sizes), count, 2)
        diagonal = np.diag(self.quadratic)
        row_sums = self.quadratic.sum(axis=1) - diagonal  # sum_{j != i} B_ij
        pair_total = (self.quadratic.sum() - diagonal.sum()) / 2.0  # sum_{i < j} B_ij
        return (
            self.constant / count
            + self.linear * linear_in
            + (self.linear.sum() - self.linear) * linear_out
            + 0.5 * (diagonal * square_in + (diagonal.sum() - diagonal) * square_out)
            + row_sums * pair_in
            + (pair_total - row_sums) * pair_out
        )

    def size_marginals(self) -> np.ndarray:
        """m_i(k) = E[G(T u {i}) - G(T)], T a uniform k-subset of the other players, for k = 0..n-1: an (n, n)
        array (row k, column i), with xi_i = (1/n) sum_k m_i(k). The same decomposition as `shapley_values`: a
        player j != i lies in T with probability k / (n-1), a pair of others with k (k-1) / ((n-1)(n-2)), and
        joining moves 1/|S| from 1/k to 1/(k+1) (1/|S|^2 likewise)."""
        count = len(self.players)
        if count == 0:
            return np.zeros((0, 0))
        sizes = np.arange(count, dtype=float)
        after = sizes + 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            one_in = np.where(sizes >= 1, sizes / max(count - 1, 1), 0.0)
            two_in = np.where(sizes >= 2, sizes * (sizes - 1) / max((count - 1) * (count - 2), 1), 0.0)
            linear_step = np.where(sizes >= 1, 1.0 / after - 1.0 / sizes, 0.0)
            square_step = np.where(sizes >= 1, 1.0 / after**2 - 1.0 / sizes**2, 0.0)
        diagonal = np.diag(self.quadratic)
        row_sums = self.quadratic.sum(axis=1) - diagonal
        pair_total = (self.quadratic.sum() - diagonal.sum()) / 2.0
        constant = np.where(sizes == 0, self.constant, 0.0)
        return (
            constant[:, None]
            + np.outer(1.0 / after, self.linear)
            + np.outer(one_in * linear_step, self.linear.sum() - self.linear)
            + 0.5 * np.outer(1.0 / after**2, diagonal)
            + 0.5 * np.outer(one_in * square_step, diagonal.sum() - diagonal)
            + np.outer(one_in / after**2, row_sums)
            + np.outer(two_in * square_step, pair_total - row_sums)
        )


def round_coalition_value(
    aggregate_quality: Callable[[frozenset], float], previous_global_quality: float
) -> CoalitionValue:
    """The per-round coalition game of SPEC A.5 for (B 10).

    v(S) = Q(w_G^r(S)) - Q(w_G^{r-1}) where `aggregate_quality(S)` is the quality of the aggregate of S's
    updates only; v(empty) = 0 by convention (aggregate_quality is never called with the empty set).
    """

    def value(coalition: frozenset) -> float:
        if not coalition:
            return 0.0
        return float(aggregate_quality(coalition)) - previous_global_quality

    return value


def shapley_values(
    players: Sequence[Hashable],
    value: CoalitionValue,
    *,
    rng: np.random.Generator | None = None,
    exact_max: int = DEFAULT_EXACT_MAX,
    target_relative_error: float = 0.01,
    max_evaluations: int = 2_000_000,
    min_groups: int = 8,
    truncation_tolerance: float = 0.0,
    antithetic: bool = True,
    cache_max_entries: int = 1_000_000,
    method: str = "stratified",
    strata: int | None = None,
    control: QuadraticMeanGame | None = None,
    use_control: bool = True,
    exact_when_spent: bool = True,
) -> ShapleyResult:
    """Shapley values (B 10) of `players` in the game `value`, SPEC A.5.

    Exact for n <= exact_max. Above it, sampling (needs `rng`), by `method`. A sampler that has made at least
    2^n value calls is followed by the exact values (at most as many calls again; the coalitions it stored are
    free), which are returned instead (`exact_when_spent`; False keeps the estimate, to study the sampler):

    - "stratified" (the default, `_stratified_shapley`): stratified over coalition sizes with exact end sizes
      and Neyman allocation over `strata` size bands (default 16), in independent replicates (the first
      `min_groups` the pilot); every draw gives each player one sample in n + 1 calls, the replicates' totals
      are a control variate (the estimate adds up to v(N) - v(empty)), and intervals use Student-t quantiles.
      Stops after at least `min_groups` replicates once max_i SE_i <= target_relative_error * mean_i |xi_i| and
      the raw total agrees with v(N) - v(empty) within 3 SE (converged), or when another replicate could
      exceed `max_evaluations`. A value function with `values_of` gets each replicate's coalitions in one
      batch. With a control game and `strata` None: first a pilot over CONTROLLED_STRATA = 2 bands, continued
      with more replicates when its relative SE projects the target within the second design's minimum cost
      (calls x (SE / target)^2); only if that has not converged, a fresh estimate with the sizes 1 (and 2)
      exact when all pairs (and triples) cost at most a quarter of the budget and REFINED_STRATA = 8 bands over
      the rest.
    - "rotations": the permutation groups below. A group costs 2n(n-1) calls, so a budget of 20,000 calls
      allows 2 groups at n = 60, and an SE from 2 groups has one degree of freedom (issue 12 measured 68-91 %
      coverage of +/-1.96 SE). Kept for truncation and comparison.

    Control variate (stratified only): a game G whose per-size marginals are exact (`QuadraticMeanGame`, e.g.
    the second-order Taylor model of the torch backend's coalition values) is subtracted from each draw's
    marginals and its exact mean added back, with a coefficient per size band fitted on the pilot: unbiased
    whatever G, and far tighter when G is close to v. `control` is taken from `value.control_game()` when not
    given and `use_control`.

    Rotations: each group draws a uniform random order and
    walks its n cyclic rotations, so every rotation is a uniform random permutation and every player meets
    every position once per group (stratified by position); with `antithetic` the group also walks the n
    rotations of the reversed order, pairing each coalition before a player with its complement. A group's
    average marginal contribution is an unbiased estimate of xi, and the standard error comes from the spread
    between independent groups.

    Sampling stops after at least `min_groups` groups once max_i SE_i <= target_relative_error * mean_i |xi_i|
    (then `converged`), or when another group would exceed `max_evaluations` value calls (the first two
    groups always run: a standard error needs two). With `truncation_tolerance` > 0 a permutation stops early
    once |v(N) - v(prefix)| <= tolerance * |v(N)| and the rest score 0: fewer calls, but biased (by at most
    that tolerance per player in monotone games); 0 (the default) keeps the estimate unbiased.
    """
    ordered = tuple(players)
    if len(set(ordered)) != len(ordered):
        raise MarketError(f"players: must be distinct, got {len(ordered)} entries for {len(set(ordered))} players")
    if exact_max < 0:
        raise MarketError(f"exact_max: must be >= 0, got {exact_max}")
    if exact_max > 25:
        raise MarketError(f"exact_max: must be <= 25 (2^n coalitions are enumerated), got {exact_max}")
    player_count = len(ordered)
    if player_count <= exact_max:
        return _exact_shapley(ordered, CoalitionCache(value, max_entries=cache_max_entries))
    if rng is None:
        raise MarketError(
            f"rng: a numpy Generator is required to sample Shapley values for {len(ordered)} players "
            f"(> exact_max = {exact_max})"
        )
    if method not in ("stratified", "rotations"):
        raise MarketError(f"method: must be 'stratified' or 'rotations', got {method!r}")
    if truncation_tolerance > 0 and method != "rotations":
        raise MarketError(f"truncation_tolerance: only the 'rotations' method truncates, got method {method!r}")
    if strata is not None and strata < 1:
        raise MarketError(f"strata: must be >= 1 or None, got {strata}")
    if target_relative_error < 0:
        raise MarketError(f"target_relative_error: must be >= 0, got {target_relative_error}")
    if min_groups < 2:
        raise MarketError(f"min_groups: must be >= 2 (a standard error needs two groups), got {min_groups}")
    if truncation_tolerance < 0:
        raise MarketError(f"truncation_tolerance: must be >= 0, got {truncation_tolerance}")
    repeated_sizes = SAMPLING_CACHED_SIZES
    cache = CoalitionCache(
        value,
        max_entries=cache_max_entries,
        store_size=lambda size: size <= repeated_sizes or size >= player_count - repeated_sizes,
    )

    def sample() -> ShapleyResult:
        if method == "stratified":
            game = _control_game(ordered, value, control) if use_control else None
            stratified = functools.partial(_stratified_shapley, ordered, cache, rng, target_relative_error)
            if game is None:
                return stratified(max_evaluations, DEFAULT_STRATA if strata is None else strata, min_groups)
            if strata is not None:
                return stratified(max_evaluations, strata, min_groups, control=game)
            # Two designs: a coarse one (CONTROLLED_STRATA bands) is enough when G fits v well: its pilot, then, if the
            # pilot projects reaching the target within the refined design's minimum cost, more replicates of it with
            # the pilot's coefficients and Neyman allocation. Otherwise a fresh estimate spends the rest of the budget
            # with the sizes 1 (and 2) exact where all pairs (and triples) cost at most a quarter of it (the Taylor
            # model fits worst there) and REFINED_STRATA bands over the other sizes, reusing the cached end sizes.
            exact_sizes = 0  # pairs (and triples) exactly when they cost at most a quarter of the budget
            while exact_sizes < 2 and sum(math.comb(player_count, k) for k in range(2, exact_sizes + 3)) <= (
                max_evaluations / 4
            ):
                exact_sizes += 1
            refined_cost = (
                2 * player_count
                + 2
                + sum(math.comb(player_count, k) for k in range(2, exact_sizes + 2))
                + min_groups * REFINED_STRATA * (player_count + 1)
            )
            coarse = stratified(
                min(max_evaluations, refined_cost),
                CONTROLLED_STRATA,
                min_groups,
                control=game,
                continue_within=refined_cost,
            )
            if coarse.converged:
                return coarse
            return stratified(max_evaluations, REFINED_STRATA, min_groups, control=game, exact_sizes=exact_sizes)
        return _sampled_shapley(
            ordered,
            cache,
            rng,
            target_relative_error,
            max_evaluations,
            min_groups,
            truncation_tolerance,
            antithetic,
        )

    estimate = sample()
    if not exact_when_spent or estimate.evaluations < 1 << player_count:
        return estimate
    # The sampler has already spent as many value calls as there are coalitions: the exact values cost at most as
    # many again (the coalitions it stored are free), and are exact (a helper saw 5 players sampled over all 32
    # coalitions and an estimate 3.1 SE from the exact value).
    cache.prefetch(  # one batch for a value function with `values_of` (the torch backend), as the platform does
        frozenset(coalition)
        for size in range(1, player_count + 1)
        for coalition in itertools.combinations(ordered, size)
    )
    exact = _exact_shapley(ordered, CoalitionCache(cache, max_entries=0))
    return dataclasses.replace(exact, evaluations=cache.evaluations)


def _control_game(
    players: tuple[Hashable, ...], value: CoalitionValue, control: QuadraticMeanGame | None
) -> QuadraticMeanGame | None:
    """The control game for `players`: `control`, else `value.control_game()` if it has one; reordered to the
    players' order, or None when it is over other players."""
    if control is None:
        make = getattr(value, "control_game", None)
        control = make() if callable(make) else None
    if control is None:
        return None
    if set(control.players) != set(players) or len(control.players) != len(players):
        return None
    order = [control.players.index(player) for player in players]
    return QuadraticMeanGame(players, control.constant, control.linear[order], control.quadratic[np.ix_(order, order)])


def _exact_shapley(players: tuple[Hashable, ...], cache: CoalitionCache) -> ShapleyResult:
    """(B 10) by enumeration: xi_i = sum_{S not containing i} |S|!(n-|S|-1)!/n! [v(S u {i}) - v(S)]."""
    player_count = len(players)
    if player_count == 0:
        empty = np.zeros(0)
        return ShapleyResult((), empty, empty.copy(), 0, True, 0, True, "exact")
    coalition_count = 1 << player_count
    members: list[frozenset] = [frozenset()] * coalition_count
    for mask in range(1, coalition_count):
        lowest = (mask & -mask).bit_length() - 1
        members[mask] = members[mask & (mask - 1)] | {players[lowest]}
    coalition_values = np.fromiter((cache(coalition) for coalition in members), float, coalition_count)
    masks = np.arange(coalition_count, dtype=np.int64)
    sizes = np.bitwise_count(masks)
    weights = np.array([1.0 / (player_count * math.comb(player_count - 1, size)) for size in range(player_count)])
    values = np.empty(player_count)
    for index in range(player_count):
        bit = 1 << index
        without = masks[(masks & bit) == 0]
        values[index] = np.dot(weights[sizes[without]], coalition_values[without | bit] - coalition_values[without])
    return ShapleyResult(players, values, np.zeros(player_count), cache.evaluations, True, 0, True, "exact")


def _sampled_shapley(
    players: tuple[Hashable, ...],
    cache: CoalitionCache,
    rng: np.random.Generator,
    target_relative_error: float,
    max_evaluations: int,
    min_groups: int,
    truncation_tolerance: float,
    antithetic: bool,
) -> ShapleyResult:
    """Permutation sampling for (B 10): groups of n rotations of a random order (see shapley_values)."""
    player_count = len(players)
    empty_value = cache(frozenset())
    grand_value = cache(frozenset(players))
    truncation_gap = truncation_tolerance * abs(grand_value)
    orders_per_group = 2 if antithetic else 1
    permutations_per_group = orders_per_group * player_count
    calls_per_group = permutations_per_group * (player_count - 1)
    group_estimates: list[np.ndarray] = []
    converged = False
    while True:
        if len(group_estimates) >= 2 and cache.evaluations + calls_per_group > max_evaluations:
            break
        order = rng.permutation(player_count).tolist()
        marginal_sum = np.zeros(player_count)
        for cycle in (order, order[::-1])[:orders_per_group]:
            doubled = cycle + cycle
            doubled_players = [players[index] for index in doubled]
            for rotation in range(player_count):
                previous_value = empty_value
                for step in range(player_count):
                    if truncation_gap > 0.0 and abs(grand_value - previous_value) <= truncation_gap:
                        break
                    if step == player_count - 1:
                        current_value = grand_value
                    else:
                        current_value = cache(frozenset(doubled_players[rotation : rotation + step + 1]))
                    marginal_sum[doubled[rotation + step]] += current_value - previous_value
                    previous_value = current_value
        group_estimates.append(marginal_sum / permutations_per_group)
        if len(group_estimates) >= min_groups:
            means, standard_errors = _replicate_estimate(group_estimates)
            if _relative_standard_error(means, standard_errors) <= target_relative_error:
                converged = True
                break
    means, standard_errors = _replicate_estimate(group_estimates)
    return ShapleyResult(
        players,
        means,
        standard_errors,
        cache.evaluations,
        False,
        len(group_estimates) * permutations_per_group,
        converged,
        "permutation-rotations" + ("-truncated" if truncation_tolerance > 0 else ""),
        degrees_of_freedom=len(group_estimates) - 1,
    )


def _draw_coalitions(players: tuple[Hashable, ...], ordered: list[int], size: int) -> list[frozenset]:
    """The coalitions `_draw_size_marginals` asks for, given its ordered sample (for a batch prefetch)."""
    below = frozenset(players[index] for index in ordered[:size])
    at = below | {players[ordered[size]]}
    inside = set(ordered[: size + 1])
    return [below, at] + [
        at - {player} if index in inside else below | {player}
        for index, player in enumerate(players)
        if index != ordered[size]
    ]


def _draw_size_marginals(
    players: tuple[Hashable, ...], cache: CoalitionCache, ordered: list[int], size: int
) -> np.ndarray:
    """One unbiased sample of m_i(k) = E[v(T u {i}) - v(T)], T a uniform k-subset of the others, for every
    player i at once, in n + 1 value calls (the generic form of `_sampled_marginals`).

    A uniformly random ordered sample of k + 1 players gives S_k (its first k) and S_{k+1}. A player outside
    S_k scores v(S_k u {i}) - v(S_k); a player inside scores v(S_{k+1}) - v(S_{k+1} minus i), since given that
    it is inside, S_{k+1} minus i is again a uniform k-subset of the others. `ordered` is that sample
    (`rng.choice(n, k + 1, replace=False)`).
    """
    player_count = len(players)
    below_members = [players[index] for index in ordered[:size]]
    below = frozenset(below_members)
    at = below | {players[ordered[size]]}
    below_value, at_value = cache(below), cache(at)
    inside = set(ordered[:size])
    marginals = np.empty(player_count)
    for index, player in enumerate(players):
        if index in inside:
            marginals[index] = at_value - cache(at - {player})
        elif index == ordered[size]:
            marginals[index] = at_value - below_value
        else:
            marginals[index] = cache(below | {player}) - below_value
    return marginals


def _exact_size_marginals(players: tuple[Hashable, ...], cache: CoalitionCache, size: int) -> np.ndarray:
    """m_i(k) for k = `size` exactly: the mean over every k-subset T of the other players of v(T u {i}) -
    v(T), from all C(n, k+1) coalitions of k + 1 players (and the C(n, k) of k, asked for in one batch)."""
    count = len(players)
    larger = [frozenset(members) for members in itertools.combinations(players, size + 1)]
    cache.prefetch([*larger, *(frozenset(members) for members in itertools.combinations(players, size))])
    index = {player: position for position, player in enumerate(players)}
    totals = np.zeros(count)
    for coalition in larger:
        coalition_value = cache(coalition)
        for player in coalition:
            totals[index[player]] += coalition_value - cache(coalition - {player})
    return totals / math.comb(count - 1, size)


def _stratified_shapley(
    players: tuple[Hashable, ...],
    cache: CoalitionCache,
    rng: np.random.Generator,
    target_relative_error: float,
    max_evaluations: int,
    strata: int,
    min_replicates: int,
    control: QuadraticMeanGame | None = None,
    max_replicates: int | None = None,
    exact_sizes: int = 0,
    continue_within: float | None = None,
) -> ShapleyResult:
    """(B 10) for any game by sampling stratified over coalition sizes, with exact end sizes and Neyman
    allocation, in independent replicates (the generic form of `stratified_sum_game_shapley`).

    xi_i = (1/n) sum_{k=0}^{n-1} m_i(k) (see `_draw_size_marginals`). The two end sizes are exact: m_i(0) =
    v({i}) - v(empty) and m_i(n-1) = v(N) - v(N minus i), 2n + 2 calls. The sizes 1..n-2 are split into bands
    (`size_band_edges`), band b of weight w_b = (its sizes) / n; a draw in band b takes a size uniformly in the
    band and gives every player one sample (n + 1 calls). A replicate makes r_b >= 1 draws in every band and
    estimates xi_i by the exact ends + sum_b w_b * (mean of its r_b draws): unbiased. The first
    `min_replicates` replicates make one draw per band and measure each band's spread s_b (root mean square
    over players of the per-draw standard deviation); later ones make r_b = 1 + round(B w_b s_b / sum w s)
    (Neyman, 2B draws in all, B bands; the 1 keeps every band sampled, so a rare pivot is not written off).

    The standard error is the spread of the independent replicates over sqrt(R), with R - 1 degrees of
    freedom for Student-t intervals: honest when a band's draws rarely move (a threshold game), where
    per-band variances from a few draws would be 0. Stops once max_i SE_i <= target * mean_i |xi_i| after
    at least `min_replicates` replicates (converged), or when the next replicate could exceed
    `max_evaluations` calls (at least two replicates run).

    With a `control` game G (exact per-size marginals M_i(k), `QuadraticMeanGame.size_marginals`), each draw
    also gives G's marginals y for the same coalitions (no value calls), and band b's samples become
    x - beta_b y, plus beta_b times the band's mean of M exactly: unbiased for any beta_b. The pilot uses
    beta_b = 1; later replicates the least-squares beta_b = Cov(x, y) / Var(y) of the pilot's draws in that band
    (pooled over players), so a band where G fits badly (|eps| near 1 with unequal shards) uses it less, and
    the Neyman allocation uses the spread of x - beta_b y. `max_replicates` stops after that many replicates
    (a pilot-only run). `continue_within` = C stops after an unconverged pilot unless the calls it projects to reach
    the target, calls so far x (relative SE / target)^2 (variance falls as 1 / calls), are at most C. `exact_sizes`
    = K makes the sizes 1..K exact too, from all coalitions of up to K + 1 players: m_i(k) = mean over the k-subsets
    T of the others of v(T u {i}) - v(T).
    """
    player_count = len(players)
    grand = frozenset(players)
    cache.prefetch([grand, *(frozenset([player]) for player in players), *(grand - {player} for player in players)])
    empty_value = cache(frozenset())
    grand_value = cache(grand)
    ends = (
        np.array(
            [(cache(frozenset([player])) - empty_value) + (grand_value - cache(grand - {player})) for player in players]
        )
        / player_count
    )
    exact_sizes = max(0, min(exact_sizes, player_count - 3))
    for size in range(1, exact_sizes + 1):
        ends += _exact_size_marginals(players, cache, size) / player_count
    middle = player_count - 2 - exact_sizes
    if middle <= 0:  # n <= 2: both sizes are ends, the values are exact
        return ShapleyResult(players, ends, np.zeros(player_count), cache.evaluations, True, 0, True, "exact")
    edges = 1 + exact_sizes + size_band_edges(middle, strata)
    band_low, band_high = edges[:-1], edges[1:]
    band_weight = (band_high - band_low) / player_count
    band_count = len(band_low)
    allocation = np.ones(band_count, dtype=np.int64)
    coefficients = np.zeros(band_count) if control is None else np.ones(band_count)
    band_control = np.zeros((band_count, player_count))  # the band's mean of G's exact marginals M_i(k)
    if control is not None:
        size_marginals = control.size_marginals()
        for band in range(band_count):
            band_control[band] = size_marginals[band_low[band] : band_high[band]].mean(axis=0)
    pilot = np.zeros((5, band_count, player_count))  # sums of x, y, x^2, y^2, x y per band and player
    replicates: list[np.ndarray] = []
    converged = False
    while True:
        calls_needed = int(allocation.sum()) * (player_count + 1)
        if len(replicates) >= 2 and cache.evaluations + calls_needed > max_evaluations:
            break
        if max_replicates is not None and len(replicates) >= max_replicates:
            break
        planned = []
        for band in range(band_count):
            for _ in range(int(allocation[band])):
                size = int(rng.integers(band_low[band], band_high[band]))
                planned.append((band, size, rng.choice(player_count, size=size + 1, replace=False).tolist()))
        cache.prefetch(
            coalition for _, size, ordered in planned for coalition in _draw_coalitions(players, ordered, size)
        )
        band_totals = np.zeros((band_count, player_count))
        for band, size, ordered in planned:
            marginals = _draw_size_marginals(players, cache, ordered, size)
            controls = np.zeros(player_count)
            if control is not None:
                controls = _draw_size_marginals(players, control, ordered, size)
            band_totals[band] += marginals - coefficients[band] * controls
            if len(replicates) < min_replicates:
                pilot[:, band] += (marginals, controls, marginals**2, controls**2, marginals * controls)
        estimate = ends + band_weight @ (band_totals / allocation[:, None] + coefficients[:, None] * band_control)
        replicates.append(estimate)
        if len(replicates) < min_replicates:
            continue
        means, standard_errors, _ = _efficiency_adjusted_estimate(replicates, grand_value - empty_value)
        if _relative_standard_error(means, standard_errors) <= target_relative_error and _efficient_within_error(
            replicates, grand_value - empty_value
        ):
            converged = True
            break
        if len(replicates) == min_replicates:  # the pilot is complete: coefficients and Neyman allocation
            count = len(replicates)
            sums, control_sums, squares, control_squares, products = pilot
            variance = (squares - sums**2 / count) / (count - 1)
            control_variance = (control_squares - control_sums**2 / count) / (count - 1)
            covariance = (products - sums * control_sums / count) / (count - 1)
            if control is not None:
                pooled = control_variance.sum(axis=1)
                coefficients = np.divide(covariance.sum(axis=1), pooled, out=np.zeros(band_count), where=pooled > 0.0)
            left = variance - 2.0 * coefficients[:, None] * covariance + coefficients[:, None] ** 2 * control_variance
            score = band_weight * np.sqrt(np.maximum(left, 0.0).mean(axis=1))
            if score.sum() > 0.0:
                allocation = 1 + np.round(band_count * score / score.sum()).astype(np.int64)
            if continue_within is not None:
                error = _relative_standard_error(means, standard_errors)
                ratio = error / target_relative_error if target_relative_error > 0 else math.inf
                if not cache.evaluations * ratio**2 <= continue_within:  # NaN (no spread to scale) stops too
                    break
    means, standard_errors, freedom = _efficiency_adjusted_estimate(replicates, grand_value - empty_value)
    # A player whose replicates barely moved may have missed rare pivots (a threshold game), not have none:
    # its SE is floored at the median SE of the players, so its interval is not falsely narrow.
    standard_errors = np.maximum(standard_errors, float(np.median(standard_errors)))
    return ShapleyResult(
        players,
        means,
        standard_errors,
        cache.evaluations,
        False,
        len(replicates),
        converged,
        "stratified-by-size" + ("" if control is None else "-quadratic-control"),
        degrees_of_freedom=freedom,
    )


def _efficiency_adjusted_estimate(
    replicates: Sequence[np.ndarray], grand_gain: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Replicate means corrected with their total as a control variate: every replicate's total T_r estimates
    v(N) - v(empty) = G, known exactly, so xi_i^ = mean_i - beta_i (mean T - G), beta_i = Cov(x_i, T) / Var(T)
    (least squares over the replicates). The betas sum to 1, so the estimate adds up to G exactly
    (efficiency), and the variance drops by the share of each player's spread that the total explains. SE is
    the least-squares prediction error at T = G, s_i sqrt(1/R + (G - mean T)^2 / sum (T_r - mean T)^2), s_i
    from the residuals x_i - beta_i T, with R - 2 degrees of freedom. The plain means (R - 1 dof) when the
    totals take fewer than 3 distinct values: a line through 2 groups fits replicates that mostly saw nothing
    (rare pivots) exactly, and would report SE 0."""
    estimates = np.asarray(replicates)
    count = len(estimates)
    means, standard_errors = _replicate_estimate(estimates)
    totals = estimates.sum(axis=1)
    centred_totals = totals - totals.mean()
    spread = float(centred_totals @ centred_totals)
    distinct = len(np.unique(np.round(totals / max(1e-300, float(np.max(np.abs(totals)))), 12)))
    if count < 3 or distinct < 3 or spread <= 1e-24 * max(1.0, float(totals.mean()) ** 2) * count:
        return means, standard_errors, float(count - 1)
    slopes = centred_totals @ (estimates - means) / spread
    residuals = estimates - means - np.outer(centred_totals, slopes)
    gap = float(totals.mean()) - grand_gain
    adjusted = means - slopes * gap
    errors = np.sqrt((residuals**2).sum(axis=0) / (count - 2) * (1.0 / count + gap**2 / spread))
    return adjusted, errors, float(count - 2)


def _efficient_within_error(replicates: Sequence[np.ndarray], grand_gain: float) -> bool:
    """Whether the estimates' total is within 3 of its standard errors of v(N) - v(empty), the total every
    Shapley vector has (efficiency). A stratified estimate does not add up by construction: a run whose
    draws all missed the sizes where the value moves (a threshold game) has SE 0 and total 0, and must not
    count as converged."""
    totals = np.asarray(replicates).sum(axis=1)
    standard_error = float(np.std(totals, ddof=1)) / math.sqrt(len(totals))
    slack = 1e-9 * max(1.0, abs(grand_gain))
    return abs(float(np.mean(totals)) - grand_gain) <= 3.0 * standard_error + slack


def _checked_features(features: ArrayLike) -> np.ndarray:
    array = np.asarray(features, dtype=float)
    if array.ndim not in (1, 2) or array.shape[0] == 0:
        raise MarketError(f"features: must be a non-empty (n,) or (n, d) array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise MarketError("features: must be finite, got NaN or inf entries")
    return array


MARGINAL_CHUNK_ELEMENTS = 1 << 22  # feature entries per block of sampled coalitions (bounds the memory)


def size_band_edges(player_count: int, strata: int) -> np.ndarray:
    """Boundaries 0 = e_0 < ... < e_B = n of the coalition-size bands [e_b, e_{b+1}).

    One band per size when strata >= n. Otherwise about strata/2 boundaries spaced geometrically in k (narrow
    bands at small sizes, where a saturating g such as a learning curve changes fastest: there the value and
    the variance are) and strata/2 spaced uniformly (so no band of large sizes is very wide either).
    """
    if strata >= player_count:
        return np.arange(player_count + 1)
    half = max(1, strata // 2)
    edges = np.concatenate(
        [
            [0, player_count],
            np.round(np.geomspace(1, player_count, half)),
            np.round(np.linspace(0, player_count, half + 1)),
        ]
    )
    return np.unique(edges.astype(np.int64))


def _sampled_marginals(
    features: np.ndarray,
    coalition_value: Callable[[np.ndarray], np.ndarray],
    rng: np.random.Generator,
    sizes: np.ndarray,
) -> np.ndarray:
    """One unbiased sample of m_i(k) for every player i and every size k in `sizes`: shape (len(sizes), n).

    Per size k, a uniformly random ordered sample of k + 1 players; T_k is the total of its first k. A player
    not among them gets g(T_k + x_i) - g(T_k); a player among them gets g(T_{k+1}) - g(T_{k+1} - x_i) (its k
    others are then the first k + 1 but itself, again a uniform k-subset of the others).
    """
    player_count = features.shape[0]
    vector_shape = features.shape[1:]
    rows_per_chunk = max(1, MARGINAL_CHUNK_ELEMENTS // (player_count * max(1, int(np.prod(vector_shape)))))
    marginals = np.empty((len(sizes), player_count))
    for first in range(0, len(sizes), rows_per_chunk):
        chunk = sizes[first : first + rows_per_chunk]
        inside = np.zeros((len(chunk), player_count), dtype=bool)
        below = np.empty((len(chunk), *vector_shape))
        at = np.empty((len(chunk), *vector_shape))
        for row, size in enumerate(chunk):
            ordered = rng.choice(player_count, size=int(size) + 1, replace=False)
            inside[row, ordered[:size]] = True
            below[row] = features[ordered[:size]].sum(axis=0)
            at[row] = below[row] + features[ordered[size]]
        mask = inside.reshape(inside.shape + (1,) * len(vector_shape))
        # g(T_k) and g(T_{k+1}) are one value per draw; only the totals with or without player i vary by player
        shifted = np.where(mask, at[:, None] - features[None], below[:, None] + features[None])
        shifted_values = np.asarray(coalition_value(shifted), float)
        below_values = np.asarray(coalition_value(below), float)[:, None]
        at_values = np.asarray(coalition_value(at), float)[:, None]
        marginals[first : first + len(chunk)] = np.where(
            inside, at_values - shifted_values, shifted_values - below_values
        )
    return marginals


def stratified_sum_game_shapley(
    features: ArrayLike,
    coalition_value: Callable[[np.ndarray], np.ndarray],
    rng: np.random.Generator,
    *,
    strata: int = 64,
    target_relative_error: float = 0.01,
    draws_per_band: int = 2,
    min_replicates: int = 8,
    max_replicates: int = 2048,
    batch_replicates: int = 4,
) -> ShapleyResult:
    """Shapley values (B 10) of a game v(S) = g(sum_{j in S} x_j), stratified over coalition sizes (issue 7).

    `features` x is (n,) or (n, d) (e.g. data set sizes or label counts); `coalition_value` g is vectorised:
    it maps an array of coalition totals (shape (..., d), or (...) when x is 1-D) to values of shape (...).

    xi_i = (1/n) sum_{k=0}^{n-1} m_i(k), m_i(k) = E[g(T + x_i) - g(T)], T the total of a uniform size-k subset
    of the others. The sizes are split into about `strata` bands (`size_band_edges`: geometric at small k,
    uniform beyond), band b of weight w_b = (its sizes) / n. A draw in band b takes a size k uniformly in the
    band and a random ordered sample of k + 1 players, and gives every player an unbiased sample of m_i(k)
    (`_sampled_marginals`); O(n) value calls per draw, in numpy.

    Allocation (Neyman): the first `min_replicates` replicates make one draw per band, which also measures
    each band's spread s_b (root mean square over players of the per-player standard deviation). If they
    have not converged, every later replicate makes r_b = 1 + round((D - B) w_b s_b / sum w s) draws in band
    b, D = draws_per_band * B in all. A replicate is sum_b w_b * (mean of its r_b draws): an unbiased estimate
    of xi. A learning curve puts most of the value and nearly all of the spread in the first few sizes, which
    thus get most of the draws; an easy game stops after the first phase.

    Error: the estimate is unbiased; its standard error (reported) is the spread of the replicates (running
    mean and variance, Welford/Chan) over sqrt(replicates): replicates are independent and unbiased, so this
    holds across the change of allocation. Floating point adds a relative error of about
    1e-16 * |T| / |g'(T) x_i| from forming T_{k+1} - x_i. Stops in batches once max_i SE_i <=
    target_relative_error * mean_i |xi_i| (converged) or at max_replicates. `samples` counts replicates and
    `evaluations` the value calls.
    """
    feature_array = _checked_features(features)
    player_count = feature_array.shape[0]
    for name, number, least in (
        ("strata", strata, 1),
        ("draws_per_band", draws_per_band, 1),
        ("min_replicates", min_replicates, 2),
        ("batch_replicates", batch_replicates, 1),
    ):
        if number < least:
            raise MarketError(f"{name}: must be >= {least}, got {number}")
    if max_replicates < min_replicates:
        raise MarketError(f"max_replicates: must be >= min_replicates ({min_replicates}), got {max_replicates}")
    edges = size_band_edges(player_count, strata)
    band_low, band_high = edges[:-1], edges[1:]
    band_weight = (band_high - band_low) / player_count
    band_count = len(band_low)

    # Phase 1: one draw per band per replicate (every band's spread is seen); phase 2, if the first
    # min_replicates did not converge: Neyman allocation from those spreads. Replicates of both phases are
    # independent and unbiased, so their mean is, and their sample variance estimates the mean variance.
    band_sums = np.zeros((band_count, player_count))
    band_squares = np.zeros((band_count, player_count))
    count = draws = 0
    mean = np.zeros(player_count)
    squares = np.zeros(player_count)  # sum of squared deviations from the running mean
    converged = False
    draw_low, draw_high, draw_weight = band_low, band_high, band_weight  # one draw per band, weight w_b
    while count < max_replicates:
        in_phase_one = count < min_replicates
        batch = min(min_replicates - count if in_phase_one else batch_replicates, max_replicates - count)
        sizes = rng.integers(np.tile(draw_low, batch), np.tile(draw_high, batch))
        marginals = _sampled_marginals(feature_array, coalition_value, rng, sizes).reshape(
            batch, len(draw_weight), player_count
        )
        draws += batch * len(draw_weight)
        if in_phase_one:
            band_sums += marginals.sum(axis=0)
            band_squares += (marginals**2).sum(axis=0)
        replicates = np.einsum("d,rdn->rn", draw_weight, marginals)
        batch_mean = replicates.mean(axis=0)
        delta = batch_mean - mean
        total = count + batch
        mean = mean + delta * batch / total
        squares = squares + ((replicates - batch_mean) ** 2).sum(axis=0) + delta**2 * count * batch / total
        count = total
        if count < min_replicates:
            continue
        standard_errors = np.sqrt(squares / (count - 1) / count)
        if _relative_standard_error(mean, standard_errors) <= target_relative_error:
            converged = True
            break
        if in_phase_one:
            variance = np.maximum(band_squares / count - (band_sums / count) ** 2, 0.0) * count / (count - 1)
            score = band_weight * np.sqrt(variance.mean(axis=1))
            extra = (draws_per_band - 1) * band_count
            if extra > 0 and score.sum() > 0:
                allocation = 1 + np.round(extra * score / score.sum()).astype(np.int64)
                draw_low, draw_high = np.repeat(band_low, allocation), np.repeat(band_high, allocation)
                draw_weight = np.repeat(band_weight / allocation, allocation)  # w_b / r_b for band b's draws
    standard_errors = np.sqrt(squares / (count - 1) / count)
    evaluations = (player_count + 2) * draws  # per draw: g for each player's shifted total, g(T_k), g(T_k+1)
    return ShapleyResult(
        tuple(range(player_count)),
        mean,
        standard_errors,
        evaluations,
        False,
        count,
        converged,
        "stratified-sum-game",
        degrees_of_freedom=count - 1,
    )


def symmetric_sum_game_shapley(
    features: ArrayLike, coalition_value: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray | None:
    """Exact (B 10) for v(S) = g(sum_{j in S} x_j) when every player's feature is either zero or one common
    value; None otherwise. By the axioms: a zero-feature player adds nothing to any coalition (null player,
    xi = 0), the others are interchangeable (symmetry), and the values sum to g(X) - g(0) (efficiency), so
    each of the m others gets (g(X) - g(0)) / m. This is every round in which all contributors train the
    same gamma, with or without free riders whose updates count for nothing. O(n).
    """
    feature_array = _checked_features(features)
    active = np.any(feature_array != 0, axis=tuple(range(1, feature_array.ndim)))
    contributors = feature_array[active]
    values = np.zeros(feature_array.shape[0])
    if contributors.shape[0] == 0:
        return values
    if np.any(contributors != contributors[0]):
        return None
    ends = np.stack([np.zeros_like(contributors[0]), contributors.sum(axis=0)])
    worth = np.asarray(coalition_value(ends), float)
    values[active] = (worth[1] - worth[0]) / contributors.shape[0]
    return values


def exact_integer_sum_game_shapley(
    weights: ArrayLike, coalition_value: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Exact (B 10) for v(S) = g(sum_{j in S} w_j), integer weights w_j >= 0 (the estimator's reference).

    For each distinct weight, the distribution P_k(t) of the others' total t over uniform size-k subsets is
    built one player at a time (P'_k(t) = (m+1-k)/(m+1) P_k(t) + k/(m+1) P_{k-1}(t - w), a convex mix, so no
    overflow), then xi_i = (1/n) sum_k sum_t P_k(t) [g(t + w_i) - g(t)]. Cost O(distinct weights * n^2 * W),
    W = sum of weights: fine for n up to a few hundred.
    """
    weight_array = np.asarray(weights)
    if weight_array.ndim != 1 or weight_array.size == 0:
        raise MarketError(f"weights: must be a non-empty 1-D array, got shape {weight_array.shape}")
    if not np.issubdtype(weight_array.dtype, np.integer) or np.any(weight_array < 0):
        raise MarketError(f"weights: must be integers >= 0, got {weight_array.dtype} {weight_array.min()}")
    player_count = weight_array.size
    total = int(weight_array.sum())
    totals = np.arange(total + 1)
    values = np.empty(player_count)
    for weight in np.unique(weight_array):
        others = list(weight_array)
        others.remove(weight)
        distribution = np.zeros((player_count, total + 1))
        distribution[0, 0] = 1.0
        sizes = np.arange(player_count)[:, None]
        for processed, other in enumerate(others, start=1):
            shifted = np.zeros_like(distribution)
            shifted[1:, int(other) :] = distribution[:-1, : total + 1 - int(other)]
            distribution = ((processed - sizes) * distribution + sizes * shifted) / processed
        # t + weight <= total always holds for the others' totals that have probability > 0.
        reachable = totals[: total + 1 - int(weight)]
        gain = np.asarray(coalition_value(reachable + weight), float) - np.asarray(coalition_value(reachable), float)
        values[weight_array == weight] = distribution[:, : reachable.size].sum(axis=0) @ gain / player_count
    return values
