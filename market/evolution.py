"""Strategy evolution of SPEC C: pairwise-comparison imitation (Fermi rule), mutation, and alliance rules.

Two update processes:
- `revise_strategy` (the "synchronous" process): after each task every provider compares itself with one random
  overlay neighbour and may copy it or mutate; all changes apply together;
- `pairwise_comparison_step` (the "pairwise" process; Traulsen, Pacheco & Nowak 2006, J. Theor. Biol. 246:522):
  one focal provider per update compares itself with one random model (an overlay neighbour, or anyone on a
  complete graph) and copies it with the Fermi probability 1 / (1 + exp(-beta (pi_model - pi_focal))); with
  probability mu it mutates instead. Without mutation, two strategies on a complete graph form a birth-death
  chain whose fixation probability has the closed form `fixation_probability` (Nowak 2006, Evolutionary
  Dynamics, eq. 6.13), which `simulate_fixation` checks by simulation with the same step function.

Pure functions over payoffs and adjacency; the simulation decides when they run and logs what they decide.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np

from flmarket.market.errors import MarketError


def fermi_probability(own_payoff: float, neighbour_payoff: float, selection_intensity: float) -> float:
    """1 / (1 + exp(-(pi_j - pi_i) / kappa_select)): the chance to copy the neighbour (SPEC C, Fermi rule)."""
    if not selection_intensity > 0:
        raise MarketError(f"selection_intensity: must be > 0, got {selection_intensity}")
    exponent = -(neighbour_payoff - own_payoff) / selection_intensity
    if exponent > 700:  # exp would overflow: the probability is 0 to double precision
        return 0.0
    return 1.0 / (1.0 + math.exp(exponent))


@dataclass(frozen=True)
class StrategyChange:
    """One provider's decision after a task: keep, imitate a neighbour, or mutate."""

    provider: Hashable
    from_strategy: str
    to_strategy: str
    reason: str  # "imitation" or "mutation"
    neighbour: Hashable | None
    payoff_gap: float


def revise_strategy(
    provider: Hashable,
    strategy: str,
    payoff: float,
    neighbours: Sequence[tuple[Hashable, str, float]],
    strategy_set: Sequence[str],
    rng: np.random.Generator,
    *,
    selection_intensity: float,
    mutation_rate: float,
) -> StrategyChange | None:
    """SPEC C: with probability mu mutate to a uniformly drawn strategy of the set; otherwise pick one neighbour
    uniformly and copy its strategy with the Fermi probability. Returns the change, or None when nothing changes.

    Draws with probability 0 or 1 consume no randomness (as Axelrod does), so a run without mutation or without
    neighbours keeps its random stream untouched.
    """
    if not 0 <= mutation_rate <= 1:
        raise MarketError(f"mutation_rate: must be in [0, 1], got {mutation_rate}")
    if mutation_rate > 0 and (mutation_rate == 1 or rng.random() < mutation_rate):
        choice = strategy_set[int(rng.integers(len(strategy_set)))]
        if choice == strategy:
            return None
        return StrategyChange(provider, strategy, choice, "mutation", None, 0.0)
    if not neighbours:
        return None
    neighbour, neighbour_strategy, neighbour_payoff = neighbours[int(rng.integers(len(neighbours)))]
    if neighbour_strategy == strategy:
        return None
    probability = fermi_probability(payoff, neighbour_payoff, selection_intensity)
    if probability <= 0 or (probability < 1 and rng.random() >= probability):
        return None
    return StrategyChange(provider, strategy, neighbour_strategy, "imitation", neighbour, neighbour_payoff - payoff)


def alliances_by_rule(members: Iterable[Hashable], overlay: nx.Graph, rule: str) -> list[tuple[Hashable, ...]]:
    """Group alliance-strategy players: `all` forms one alliance; `neighbourhood` one per connected component of
    the overlay restricted to them (players who can reach each other through allied neighbours). Each group is
    sorted; the leader is its first member. Groups are returned in order of their leaders."""
    ordered = sorted(members)  # type: ignore[type-var]
    if not ordered:
        return []
    if rule == "all":
        return [tuple(ordered)]
    if rule == "neighbourhood":
        induced = overlay.subgraph(node for node in ordered if node in overlay)
        groups = [tuple(sorted(component)) for component in nx.connected_components(induced)]
        missing = [node for node in ordered if node not in overlay]
        groups.extend((node,) for node in missing)
        return sorted(groups)
    raise MarketError(f"alliance_rule: must be 'all' or 'neighbourhood', got {rule!r}")


def strategy_shares(strategies: Mapping[Hashable, str], names: Iterable[str]) -> dict[str, float]:
    """Share of each named strategy among the given players (0 for absent names)."""
    counts = dict.fromkeys(names, 0)
    for name in strategies.values():
        counts[name] = counts.get(name, 0) + 1
    total = max(1, len(strategies))
    return {name: count / total for name, count in counts.items()}


def pairwise_comparison_step(
    strategies: Mapping[Hashable, str],
    payoffs: Mapping[Hashable, float],
    models_of: Callable[[Hashable], Sequence[Hashable]],
    strategy_set: Sequence[str],
    rng: np.random.Generator,
    *,
    beta: float,
    mutation_rate: float,
) -> StrategyChange | None:
    """One update of the pairwise comparison process (Traulsen, Pacheco & Nowak 2006; SPEC C).

    A focal player is drawn uniformly from `strategies` (in insertion order); with probability mu it mutates to
    a uniformly drawn strategy of the set; otherwise a model is drawn uniformly from `models_of(focal)` (its
    overlay neighbours, or every other player on a complete graph) and the focal player copies the model's
    strategy with probability 1 / (1 + exp(-beta (pi_model - pi_focal))). Returns the change or None.
    """
    if not beta > 0:
        raise MarketError(f"beta: must be > 0, got {beta}")
    if not strategies:
        return None
    players = list(strategies)
    focal = players[int(rng.integers(len(players)))]
    models = [model for model in models_of(focal) if model in strategies and model != focal]
    neighbours = [(model, strategies[model], payoffs[model]) for model in models]
    return revise_strategy(
        focal,
        strategies[focal],
        payoffs[focal],
        neighbours,
        strategy_set,
        rng,
        selection_intensity=1.0 / beta,
        mutation_rate=mutation_rate,
    )


def complete_graph_models(players: Sequence[Hashable]) -> Callable[[Hashable], Sequence[Hashable]]:
    """models_of for a complete graph: every other player."""
    everyone = tuple(players)
    return lambda focal: [player for player in everyone if player != focal]


def fixation_probability(payoff_differences: Sequence[float], beta: float) -> float:
    """Fixation probability of one mutant A among N - 1 residents B under the pairwise comparison process on a
    complete graph without mutation (Traulsen, Pacheco & Nowak 2006; Nowak 2006, eq. 6.13):

        rho_A = 1 / (1 + sum_{k=1}^{N-1} prod_{j=1}^{k} T-(j) / T+(j)),  T-(j) / T+(j) = exp(-beta (pi_A(j) - pi_B(j)))

    `payoff_differences` holds pi_A(j) - pi_B(j) for j = 1..N-1 A players. Summed in log space, so strong
    selection neither overflows nor underflows.
    """
    if not beta > 0:
        raise MarketError(f"beta: must be > 0, got {beta}")
    differences = np.asarray(payoff_differences, dtype=float)
    if differences.ndim != 1 or differences.size == 0:
        raise MarketError(f"payoff_differences: need pi_A(j) - pi_B(j) for j = 1..N-1, got {differences.size} values")
    log_terms = np.cumsum(-beta * differences)  # log prod_{j<=k} T-/T+
    log_sum = np.logaddexp.reduce(np.concatenate([[0.0], log_terms]))  # log(1 + sum_k prod)
    return float(np.exp(-log_sum))


def simulate_fixation(
    population: int,
    mutant: str,
    resident: str,
    payoff_of: Callable[[Mapping[Hashable, str]], Mapping[Hashable, float]],
    rng: np.random.Generator,
    *,
    beta: float,
    models_of: Callable[[Hashable], Sequence[Hashable]] | None = None,
    max_updates: int = 1_000_000,
) -> bool:
    """Run the pairwise comparison process (`pairwise_comparison_step`, no mutation) from one `mutant` among
    population - 1 `resident`s until one strategy is left; True iff the mutant fixates. `payoff_of` gives every
    player's payoff for a strategy profile (e.g. the public-goods utilities of the profile's actions); players
    are 0..population-1 with the mutant at a uniformly drawn position; models_of defaults to the complete graph.
    """
    if population < 2:
        raise MarketError(f"population: must be >= 2, got {population}")
    players = list(range(population))
    strategies: dict[Hashable, str] = dict.fromkeys(players, resident)
    strategies[int(rng.integers(population))] = mutant
    models = models_of if models_of is not None else complete_graph_models(players)
    mutants = 1
    for _ in range(max_updates):
        change = pairwise_comparison_step(
            strategies, payoff_of(strategies), models, (mutant, resident), rng, beta=beta, mutation_rate=0.0
        )
        if change is not None:
            strategies[change.provider] = change.to_strategy
            mutants += 1 if change.to_strategy == mutant else -1
            if mutants in (0, population):
                return mutants == population
    raise MarketError(f"max_updates: no fixation within {max_updates} updates")
