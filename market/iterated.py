"""Finite iterated games with memory-one strategies: Markov chain, stationary welfare, Monte Carlo (SPEC B.3).

A finite game is N players with finite action sets and a vectorised payoff function over outcomes.
Outcomes are indexed lexicographically with player 0 most significant (SPEC B.3). A memory-one strategy maps
the index of the previous outcome to a distribution over the player's own actions (an array of shape
(outcomes, actions) or a callable). Players may be grouped: a group plays one shared action drawn once
(an MMZD alliance, SPEC B.5).

Two ways to evaluate strategies:
- exactly, for small games: the Markov matrix M_kl = prod_j p_j(y_j^l | k) and its stationary distribution;
- by Monte-Carlo play of vectorised `Policy` objects for T rounds x repetitions (any N).

The baseline rules of SPEC B.3 (ALLC, ALLD, Rand, TFT, Mixed) live here as pure functions and policies, so the
agents' strategy classes and the paper reproductions share one definition.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

from flmarket.market.errors import MarketError
from flmarket.market.public_goods import PublicGoodsGame

PayoffFunction = Callable[[np.ndarray], np.ndarray]
MemoryOneStrategy = np.ndarray | Callable[[int], Sequence[float]]

PROBABILITY_TOLERANCE = 1e-9
SMALL_DISTRIBUTION = 64  # up to this many actions a single distribution is checked in plain Python


@dataclass(frozen=True)
class FiniteGame:
    """An N-player finite game: `payoff(outcomes)` maps (m, N) actions to (m, N) utilities (SPEC B.3)."""

    action_counts: tuple[int, ...]
    payoff: PayoffFunction = field(repr=False)
    name: str = "game"

    def __post_init__(self) -> None:
        if not self.action_counts:
            raise MarketError("action_counts: must name at least one player, got ()")
        for player, count in enumerate(self.action_counts):
            if count < 1:
                raise MarketError(f"action_counts[{player}]: must be >= 1, got {count}")

    @property
    def players(self) -> int:
        """N, the number of players."""
        return len(self.action_counts)

    @property
    def outcome_count(self) -> int:
        """|Omega| = prod_j |A_j| ((R+1)^N for the public-goods game)."""
        return int(np.prod(self.action_counts, dtype=np.int64))

    @cached_property
    def strides(self) -> np.ndarray:
        """Place value of each player's action in the outcome index (player 0 most significant)."""
        counts = np.asarray(self.action_counts, dtype=np.int64)
        return np.concatenate([np.cumprod(counts[::-1])[::-1][1:], [1]]).astype(np.int64)

    @cached_property
    def outcomes(self) -> np.ndarray:
        """Every outcome as an (|Omega|, N) array in SPEC B.3 order (only for small games)."""
        grid = itertools.product(*(range(count) for count in self.action_counts))
        return np.array(list(grid), dtype=np.int64).reshape(-1, self.players)

    @cached_property
    def payoff_table(self) -> np.ndarray:
        """Utilities of every player at every outcome, shape (|Omega|, N)."""
        return self.utilities(self.outcomes)

    @cached_property
    def welfare_table(self) -> np.ndarray:
        """Social welfare s_k = sum_j u_j(k) of every outcome, shape (|Omega|,)."""
        return self.payoff_table.sum(axis=1)

    def outcome_index(self, actions: np.ndarray) -> np.ndarray:
        """Lexicographic index of each row of an (m, N) action array (SPEC B.3)."""
        return np.asarray(actions, dtype=np.int64) @ self.strides

    def utilities(self, outcomes: np.ndarray) -> np.ndarray:
        """Payoffs of every player for each row of an (m, N) action array."""
        values = np.asarray(self.payoff(np.asarray(outcomes, dtype=np.int64)), dtype=float)
        expected = (len(outcomes), self.players)
        if values.shape != expected:
            raise MarketError(f"payoff: must return shape {expected}, got {values.shape}")
        return values

    def welfare(self, outcomes: np.ndarray) -> np.ndarray:
        """Social welfare sum_j u_j for each row of an (m, N) action array."""
        return self.utilities(outcomes).sum(axis=1)


def public_goods_finite_game(game: PublicGoodsGame) -> FiniteGame:
    """The stage game of SPEC B.1 as a FiniteGame: U_i(y) = rho_i * g(sum_j y_j) - kappa_i * y_i (Z 4)."""
    revenue = game.revenue_array
    cost = game.cost_array

    def payoff(outcomes: np.ndarray) -> np.ndarray:
        gain = np.asarray(game.precision_gain(outcomes.sum(axis=1)), dtype=float)
        return gain[:, None] * revenue[None, :] - outcomes * cost[None, :]

    return FiniteGame((game.rounds + 1,) * game.players, payoff, name="public-goods")


def prisoners_dilemma(
    reward: float = 3.0, sucker: float = 0.0, temptation: float = 5.0, punishment: float = 1.0
) -> FiniteGame:
    """The two-player prisoner's dilemma (R, S, T, P); action 0 = cooperate, 1 = defect (Press & Dyson order).

    Outcome order is CC, CD, DC, DD from player 0's view, as in Press & Dyson's four-vectors.
    """
    if not (temptation > reward > punishment > sucker):
        raise MarketError(
            f"payoffs: must satisfy T > R > P > S, got T={temptation}, R={reward}, P={punishment}, S={sucker}"
        )
    table = np.array([[[reward, reward], [sucker, temptation]], [[temptation, sucker], [punishment, punishment]]])

    def payoff(outcomes: np.ndarray) -> np.ndarray:
        return table[outcomes[:, 0], outcomes[:, 1]]

    return FiniteGame((2, 2), payoff, name="prisoners-dilemma")


# ----------------------------------------------------------------------------------------------------
# Exact evaluation: Markov matrix and stationary distribution (small games).


def _default_groups(game: FiniteGame, groups: Sequence[Sequence[int]] | None) -> tuple[tuple[int, ...], ...]:
    if groups is None:
        return tuple((player,) for player in range(game.players))
    normalised = tuple(tuple(int(player) for player in group) for group in groups)
    members = sorted(player for group in normalised for player in group)
    if members != list(range(game.players)) or any(not group for group in normalised):
        raise MarketError(
            f"groups: must partition the players 0..{game.players - 1} into non-empty groups, got {normalised}"
        )
    for group in normalised:
        counts = {game.action_counts[player] for player in group}
        if len(counts) != 1:
            raise MarketError(f"groups: players of group {group} must share one action set, got sizes {counts}")
    return normalised


def check_distributions(matrix: np.ndarray, label: str) -> np.ndarray:
    """Validate rows of probabilities (non-negative, summing to 1 within 1e-9) and return them as floats."""
    values = np.asarray(matrix, dtype=float)
    if values.ndim == 1 and 0 < values.size <= SMALL_DISTRIBUTION:  # one strategy's draw: checked without numpy
        probabilities = values.tolist()
        low, high = min(probabilities), max(probabilities)
        if low < -PROBABILITY_TOLERANCE or high > 1 + PROBABILITY_TOLERANCE:
            raise MarketError(f"{label}: probabilities must lie in [0, 1], got range [{low}, {high}]")
        total = math.fsum(probabilities)
        if abs(total - 1.0) > PROBABILITY_TOLERANCE:
            raise MarketError(f"{label}: each distribution must sum to 1, got sums in [{total}, {total}]")
        return values
    if values.size and (values.min() < -PROBABILITY_TOLERANCE or values.max() > 1 + PROBABILITY_TOLERANCE):
        raise MarketError(f"{label}: probabilities must lie in [0, 1], got range [{values.min()}, {values.max()}]")
    sums = values.sum(axis=-1)
    if values.size and np.max(np.abs(sums - 1.0)) > PROBABILITY_TOLERANCE:
        raise MarketError(f"{label}: each distribution must sum to 1, got sums in [{sums.min()}, {sums.max()}]")
    return values


def strategy_matrix(game: FiniteGame, player: int, strategy: MemoryOneStrategy) -> np.ndarray:
    """A memory-one strategy as an (|Omega|, |A_player|) matrix: row k = p_player(. | k) (SPEC B.3)."""
    shape = (game.outcome_count, game.action_counts[player])
    if callable(strategy):
        matrix = np.array([np.asarray(strategy(k), dtype=float) for k in range(game.outcome_count)])
    else:
        matrix = np.asarray(strategy, dtype=float)
    if matrix.shape != shape:
        raise MarketError(f"strategy of player {player}: must have shape {shape}, got {matrix.shape}")
    return check_distributions(matrix, f"strategy of player {player}")


def markov_matrix(
    game: FiniteGame, strategies: Sequence[MemoryOneStrategy], groups: Sequence[Sequence[int]] | None = None
) -> np.ndarray:
    """M_kl = prod_j p_j(y_j^l | k) (SPEC B.3); with groups: one factor per group, 0 if members disagree.

    `strategies[g]` is the strategy of group g (by default every player is its own group). A group's strategy
    is written for its first member; every member plays the drawn action (shared randomness, SPEC B.5).
    """
    normalised = _default_groups(game, groups)
    if len(strategies) != len(normalised):
        raise MarketError(f"strategies: need one per group ({len(normalised)}), got {len(strategies)}")
    outcomes = game.outcomes
    transition = np.ones((game.outcome_count, game.outcome_count))
    for group, strategy in zip(normalised, strategies, strict=True):
        leader = group[0]
        matrix = strategy_matrix(game, leader, strategy)
        transition *= matrix[:, outcomes[:, leader]]
        agree = np.all(outcomes[:, group] == outcomes[:, [leader]], axis=1)
        transition *= agree[None, :]
    return transition


def _irreducible_stationary(transition: np.ndarray) -> np.ndarray:
    """The stationary distribution of an irreducible Markov matrix by the GTH algorithm (Grassmann, Taksar and
    Heyman 1985; state reduction).

    States are eliminated from the last: when state k goes, every path i -> k -> j becomes i -> j with
    probability P_ik P_kj / s_k, s_k = sum_{j < k} P_kj (the off-diagonal mass of k in the reduced chain); then
    pi_k = sum_{i < k} pi_i P_ik / s_k back up. Only additions of non-negative numbers, products and divisions:
    no 1 - P_kk is ever formed, so each component keeps a small relative error even when some transitions are
    1e-12 and others 1 - 1e-12 (where an eigenvector or null-space solve loses every digit). The diagonal is
    never read. O(n^3).
    """
    size = transition.shape[0]
    reduced = np.array(transition, dtype=float)
    for state in range(size - 1, 0, -1):
        leaving = math.fsum(reduced[state, :state])
        if not leaving > 0.0:
            raise MarketError(
                f"transition: state {state} of an irreducible class has no probability left to leave it after "
                f"state reduction ({leaving!r}); entries too small for float64 underflowed"
            )
        reduced[:state, state] /= leaving
        reduced[:state, :state] += np.outer(reduced[:state, state], reduced[state, :state])
    weights = np.zeros(size)
    weights[0] = 1.0
    for state in range(1, size):
        weights[state] = weights[:state] @ reduced[:state, state]
    return weights / weights.sum()


def closed_classes(transition: np.ndarray) -> tuple[np.ndarray, ...]:
    """The closed communicating classes of a Markov matrix (the strongly connected components of its graph of
    positive entries that no positive entry leaves), each as sorted state indices; every other state is
    transient. Decided on the exact zero pattern, so a transition of 1e-300 still connects. Ordered by their
    smallest state."""
    positive = scipy.sparse.csr_matrix(np.asarray(transition) > 0.0)
    count, labels = scipy.sparse.csgraph.connected_components(positive, directed=True, connection="strong")
    sources, targets = positive.nonzero()
    open_classes = np.unique(labels[sources[labels[sources] != labels[targets]]])
    closed = np.setdiff1d(np.arange(count), open_classes)
    return tuple(sorted((np.flatnonzero(labels == label) for label in closed), key=lambda members: members[0]))


def _absorption_masses(transition: np.ndarray, start: np.ndarray, classes: Sequence[np.ndarray]) -> np.ndarray:
    """Probability that the chain started from `start` ends in each closed class, by eliminating the transient
    states one at a time (the GTH step again: mass on a transient state k moves to j with P_kj / s_k, s_k its
    off-diagonal mass among the states left, and paths i -> k -> j are rerouted). No subtraction, so exact
    to rounding for near-deterministic chains too."""
    size = transition.shape[0]
    recurrent = np.zeros(size, dtype=bool)
    for members in classes:
        recurrent[members] = True
    reduced = np.array(transition, dtype=float)
    np.fill_diagonal(reduced, 0.0)
    mass = np.array(start, dtype=float)
    alive = np.ones(size, dtype=bool)
    for state in np.flatnonzero(~recurrent):
        alive[state] = False
        row = np.where(alive, reduced[state], 0.0)
        leaving = math.fsum(row)
        if not leaving > 0.0:
            raise MarketError(
                f"transition: transient state {state} has no probability left to leave it after state reduction "
                f"({leaving!r}); entries too small for float64 underflowed"
            )
        exit_distribution = row / leaving
        mass += mass[state] * exit_distribution
        mass[state] = 0.0
        feeding = np.flatnonzero(alive & ~recurrent & (reduced[:, state] > 0.0))
        reduced[feeding] += reduced[feeding, state][:, None] * exit_distribution[None, :]
        reduced[feeding, feeding] = 0.0  # self-loops do not change where a state's mass goes next
        reduced[:, state] = 0.0
    return np.array([mass[members].sum() for members in classes])


def stationary_distribution(transition: np.ndarray, initial: np.ndarray | None = None) -> np.ndarray:
    """The long-run distribution v = v M of a Markov matrix reached from `initial` (SPEC B.3).

    The chain's closed communicating classes are found on its zero pattern (`closed_classes`). Each class's own
    stationary distribution comes from the GTH algorithm (`_irreducible_stationary`), which stays accurate
    for near-deterministic memory-one strategies (noise 1e-12), where the null space of M^T - I does not.
    With one closed class the stationary distribution is unique and `initial` is irrelevant. With several, the
    result is the long-run (Cesaro) average reached from `initial` (default uniform): each class's
    distribution weighted by the probability of ending in it (`_absorption_masses`). A periodic class gets
    its Cesaro average too (e.g. 1/2, 1/2 on a two-cycle).

    Raises MarketError for a matrix that is not square, has NaN or infinite entries, or rows that are not
    distributions, and if float64 underflow leaves a state of the reduction with no way out.
    """
    values = np.asarray(transition, dtype=float)
    if values.ndim != 2 or values.shape[0] != values.shape[1] or values.shape[0] == 0:
        raise MarketError(f"transition: must be a non-empty square matrix, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise MarketError(f"transition: entries must be finite, got {int(np.sum(~np.isfinite(values)))} NaN or inf")
    matrix = check_distributions(values, "transition")
    size = matrix.shape[0]
    classes = closed_classes(matrix)
    if len(classes) == 1:
        masses = np.ones(1)
    else:
        if initial is None:
            start = np.full(size, 1.0 / size)
        else:
            start = check_distributions(np.asarray(initial, dtype=float), "initial")
            if start.shape != (size,):
                raise MarketError(f"initial: must have shape ({size},), got {start.shape}")
        masses = _absorption_masses(matrix, start, classes)
    vector = np.zeros(size)
    for mass, members in zip(masses, classes, strict=True):
        if mass > 0.0:
            vector[members] = mass * _irreducible_stationary(matrix[np.ix_(members, members)])
    return vector / vector.sum()


def stationary_payoffs(
    game: FiniteGame,
    strategies: Sequence[MemoryOneStrategy],
    groups: Sequence[Sequence[int]] | None = None,
    initial: np.ndarray | None = None,
) -> np.ndarray:
    """Expected utility of every player in the stationary state: v^T u_j (SPEC B.4, Z 8)."""
    distribution = stationary_distribution(markov_matrix(game, strategies, groups), initial)
    return distribution @ game.payoff_table


def stationary_welfare(
    game: FiniteGame,
    strategies: Sequence[MemoryOneStrategy],
    groups: Sequence[Sequence[int]] | None = None,
    initial: np.ndarray | None = None,
) -> float:
    """Expected social welfare sum_j E[U_j] in the stationary state (SPEC B.4)."""
    return float(np.sum(stationary_payoffs(game, strategies, groups, initial)))


# ----------------------------------------------------------------------------------------------------
# Baseline rules of SPEC B.3 as pure functions.


def point_mass(action_count: int, action: int) -> np.ndarray:
    """The distribution that plays `action` surely."""
    if not 0 <= action < action_count:
        raise MarketError(f"action: must be in 0..{action_count - 1}, got {action}")
    distribution = np.zeros(action_count)
    distribution[action] = 1.0
    return distribution


def uniform(action_count: int, actions: Sequence[int] | None = None) -> np.ndarray:
    """Uniform distribution over `actions` (default all of 0..action_count-1)."""
    distribution = np.zeros(action_count)
    chosen = range(action_count) if actions is None else actions
    distribution[list(chosen)] = 1.0
    return distribution / distribution.sum()


@dataclass(frozen=True)
class TitForTatRule:
    """TFT of SPEC B.3: below `threshold` total participation play `low_actions`, else `high_actions`."""

    rounds: int
    threshold: float
    low_actions: tuple[int, ...]
    high_actions: tuple[int, ...]

    @classmethod
    def default(cls, players: int, rounds: int, threshold: float | None = None) -> TitForTatRule:
        """Threshold N*R/2, low range {0..floor(R/2)}, high range {ceil(R/2)..R} (SPEC B.3)."""
        return cls(
            rounds=rounds,
            threshold=players * rounds / 2 if threshold is None else float(threshold),
            low_actions=tuple(range(0, rounds // 2 + 1)),
            high_actions=tuple(range(-(-rounds // 2), rounds + 1)),
        )

    def __post_init__(self) -> None:
        for label, actions in (("low_actions", self.low_actions), ("high_actions", self.high_actions)):
            if not actions or min(actions) < 0 or max(actions) > self.rounds:
                raise MarketError(f"{label}: must be a non-empty subset of 0..{self.rounds}, got {actions}")

    def distribution(self, total_participation: np.ndarray | float) -> np.ndarray:
        """Rows of probabilities over 0..R per previous total participation (uniform on the range)."""
        totals = np.atleast_1d(np.asarray(total_participation, dtype=float))
        low = uniform(self.rounds + 1, self.low_actions)
        high = uniform(self.rounds + 1, self.high_actions)
        return np.where((totals < self.threshold)[:, None], low[None, :], high[None, :])


# ----------------------------------------------------------------------------------------------------
# Monte-Carlo play.


@runtime_checkable
class Policy(Protocol):
    """A vectorised strategy for Monte-Carlo play: rows of action probabilities for each repetition."""

    action_count: int

    def start(self, repetitions: int, rng: np.random.Generator) -> None:
        """Called once before a run (e.g. Mixed draws its component per repetition here)."""

    def distribution(self, previous: np.ndarray | None, repetitions: int) -> np.ndarray:
        """(repetitions, action_count) probabilities; `previous`: (repetitions, N) last outcome or None."""


class MemorylessStart:
    """Shared behaviour: no per-run state and a configurable first-round distribution (default uniform)."""

    action_count: int
    initial: np.ndarray | None

    def start(self, repetitions: int, rng: np.random.Generator) -> None:
        """No per-run state."""

    def first_round(self, repetitions: int) -> np.ndarray:
        """The initial distribution (uniform unless configured) for every repetition."""
        initial = uniform(self.action_count) if self.initial is None else self.initial
        return np.broadcast_to(initial, (repetitions, self.action_count))


class ConstantPolicy(MemorylessStart):
    """The same distribution after every outcome: ALLC (point mass R), ALLD (point mass 0), Rand (uniform)."""

    def __init__(self, distribution: np.ndarray, initial: np.ndarray | None = None) -> None:
        self.fixed = check_distributions(distribution, "distribution")
        self.action_count = len(self.fixed)
        self.initial = None if initial is None else check_distributions(initial, "initial")

    def distribution(self, previous: np.ndarray | None, repetitions: int) -> np.ndarray:
        """The fixed distribution (or the initial one in the first round)."""
        if previous is None:
            return self.first_round(repetitions)
        return np.broadcast_to(self.fixed, (repetitions, self.action_count))


class TitForTatPolicy(MemorylessStart):
    """TFT of SPEC B.3 on the previous total participation sum_j w_j y_j (weights default 1)."""

    def __init__(
        self, rule: TitForTatRule, weights: np.ndarray | None = None, initial: np.ndarray | None = None
    ) -> None:
        self.rule = rule
        self.weights = weights
        self.action_count = rule.rounds + 1
        self.initial = None if initial is None else check_distributions(initial, "initial")

    def distribution(self, previous: np.ndarray | None, repetitions: int) -> np.ndarray:
        """Low range after a low-participation round, high range otherwise."""
        if previous is None:
            return self.first_round(repetitions)
        totals = previous.sum(axis=1) if self.weights is None else previous @ self.weights
        return self.rule.distribution(totals)


class MatrixPolicy(MemorylessStart):
    """A memory-one strategy given as an (|Omega|, |A|) matrix over a small FiniteGame's outcomes."""

    def __init__(
        self, game: FiniteGame, player: int, strategy: MemoryOneStrategy, initial: np.ndarray | None = None
    ) -> None:
        self.game = game
        self.matrix = strategy_matrix(game, player, strategy)
        self.action_count = self.matrix.shape[1]
        self.initial = None if initial is None else check_distributions(initial, "initial")

    def distribution(self, previous: np.ndarray | None, repetitions: int) -> np.ndarray:
        """Row p(. | k) for the index k of each previous outcome."""
        if previous is None:
            return self.first_round(repetitions)
        return self.matrix[self.game.outcome_index(previous)]


class MixturePolicy:
    """Mixed of SPEC B.3: each repetition draws a component uniformly at start and keeps it."""

    def __init__(self, components: Sequence[Policy]) -> None:
        if not components:
            raise MarketError("components: Mixed needs at least one component strategy, got none")
        counts = {component.action_count for component in components}
        if len(counts) != 1:
            raise MarketError(f"components: must share one action set, got sizes {sorted(counts)}")
        self.components = tuple(components)
        self.action_count = counts.pop()
        self.choice: np.ndarray | None = None

    def start(self, repetitions: int, rng: np.random.Generator) -> None:
        """Draw the component of every repetition (one integer draw per repetition)."""
        self.choice = rng.integers(len(self.components), size=repetitions)
        for component in self.components:
            component.start(repetitions, rng)

    def distribution(self, previous: np.ndarray | None, repetitions: int) -> np.ndarray:
        """The chosen component's distribution in each repetition."""
        if self.choice is None or len(self.choice) != repetitions:
            raise MarketError("MixturePolicy: start(repetitions, rng) must be called before distribution()")
        stacked = np.stack([c.distribution(previous, repetitions) for c in self.components])
        return stacked[self.choice, np.arange(repetitions)]


@dataclass(frozen=True)
class SimulationResult:
    """Per-round statistics over repetitions of a Monte-Carlo run (round t = row t)."""

    mean_welfare: np.ndarray
    welfare_standard_error: np.ndarray
    mean_utilities: np.ndarray
    mean_actions: np.ndarray
    repetitions: int

    @property
    def rounds(self) -> int:
        """T, the number of game rounds played."""
        return len(self.mean_welfare)


def sample_actions(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One action per row by inverse-CDF sampling (one uniform draw per row)."""
    cumulative = np.cumsum(probabilities, axis=1)
    draws = rng.random(len(probabilities))
    actions = (draws[:, None] >= cumulative).sum(axis=1)
    return np.minimum(actions, probabilities.shape[1] - 1)


def simulate(
    game: FiniteGame,
    policies: Sequence[Policy],
    rounds: int,
    repetitions: int,
    rng: np.random.Generator,
    groups: Sequence[Sequence[int]] | None = None,
) -> SimulationResult:
    """Play `rounds` game rounds in `repetitions` independent runs at once (SPEC B.6 protocol).

    Each round every group draws one action per repetition from its policy given the previous outcome (None in
    the first round); members of a group play the same action. Randomness: `start` of each policy in group
    order, then per round one uniform per repetition per group in group order, so a seed fixes the result.
    """
    if rounds < 1:
        raise MarketError(f"rounds: must be >= 1, got {rounds}")
    if repetitions < 1:
        raise MarketError(f"repetitions: must be >= 1, got {repetitions}")
    normalised = _default_groups(game, groups)
    if len(policies) != len(normalised):
        raise MarketError(f"policies: need one per group ({len(normalised)}), got {len(policies)}")
    for group, policy in zip(normalised, policies, strict=True):
        if policy.action_count != game.action_counts[group[0]]:
            raise MarketError(
                f"policy of group {group}: has {policy.action_count} actions, the game gives "
                f"{game.action_counts[group[0]]}"
            )
        policy.start(repetitions, rng)
    mean_welfare = np.empty(rounds)
    standard_error = np.empty(rounds)
    mean_utilities = np.empty((rounds, game.players))
    mean_actions = np.empty((rounds, game.players))
    previous: np.ndarray | None = None
    for round_index in range(rounds):
        current = np.empty((repetitions, game.players), dtype=np.int64)
        for group, policy in zip(normalised, policies, strict=True):
            probabilities = check_distributions(policy.distribution(previous, repetitions), "policy")
            current[:, group] = sample_actions(probabilities, rng)[:, None]
        utilities = game.utilities(current)
        welfare = utilities.sum(axis=1)
        mean_welfare[round_index] = welfare.mean()
        standard_error[round_index] = welfare.std(ddof=1) / np.sqrt(repetitions) if repetitions > 1 else 0.0
        mean_utilities[round_index] = utilities.mean(axis=0)
        mean_actions[round_index] = current.mean(axis=0)
        previous = current
    return SimulationResult(mean_welfare, standard_error, mean_utilities, mean_actions, repetitions)
