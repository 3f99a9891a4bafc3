"""Strategy evolution of SPEC C: pairwise-comparison imitation (Fermi rule), mutation, and alliance rules.

Pure functions over payoffs and adjacency; the simulation decides when they run and logs what they decide.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
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
