"""Strategy evolution (SPEC C): the Fermi rule, mutation, alliance grouping."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest

from flmarket.market.errors import MarketError
from flmarket.market.evolution import alliances_by_rule, fermi_probability, revise_strategy, strategy_shares


def test_fermi_probability_by_hand() -> None:
    assert fermi_probability(1.0, 1.0, 0.5) == 0.5
    # pi_j - pi_i = 1, kappa = 0.5: 1 / (1 + e^-2) = 0.880797
    assert fermi_probability(0.0, 1.0, 0.5) == pytest.approx(1 / (1 + math.exp(-2)))
    assert fermi_probability(1.0, 0.0, 0.5) == pytest.approx(1 / (1 + math.exp(2)))
    assert fermi_probability(0.0, -1e6, 1e-3) == 0.0
    with pytest.raises(MarketError, match="selection_intensity: must be > 0, got 0"):
        fermi_probability(0, 1, 0)


def test_imitation_frequency_matches_the_fermi_probability() -> None:
    rng = np.random.default_rng(1)
    trials = 20_000
    switched = sum(
        revise_strategy(
            1, "ALLD", 0.0, [(2, "ALLC", 0.5)], ["ALLC", "ALLD"], rng, selection_intensity=1.0, mutation_rate=0.0
        )
        is not None
        for _ in range(trials)
    )
    expected = 1 / (1 + math.exp(-0.5))
    assert abs(switched / trials - expected) < 4 * math.sqrt(expected * (1 - expected) / trials)


def test_same_strategy_or_no_neighbours_never_switch_and_draw_nothing_extra() -> None:
    rng = np.random.default_rng(2)
    state = rng.bit_generator.state
    assert revise_strategy(1, "TFT", 0.0, [], ["TFT"], rng, selection_intensity=1.0, mutation_rate=0.0) is None
    assert rng.bit_generator.state == state  # nothing to draw: no randomness consumed


def test_mutation_always_when_rate_is_one() -> None:
    rng = np.random.default_rng(3)
    changes = [
        revise_strategy(1, "ALLC", 0.0, [], ["ALLC", "ALLD", "TFT"], rng, selection_intensity=1.0, mutation_rate=1.0)
        for _ in range(300)
    ]
    made = [change for change in changes if change is not None]
    assert {change.reason for change in made} == {"mutation"}
    assert {change.to_strategy for change in made} == {"ALLD", "TFT"}
    assert 150 < len(made) < 250  # two of three draws differ from ALLC


def test_alliance_rules() -> None:
    graph = nx.path_graph(6)  # 0-1-2-3-4-5
    assert alliances_by_rule([4, 0, 1], graph, "all") == [(0, 1, 4)]
    assert alliances_by_rule([4, 0, 1, 5], graph, "neighbourhood") == [(0, 1), (4, 5)]
    assert alliances_by_rule([], graph, "all") == []
    with pytest.raises(MarketError, match="alliance_rule"):
        alliances_by_rule([1], graph, "cliques")


def test_strategy_shares() -> None:
    assert strategy_shares({1: "ALLC", 2: "ALLD", 3: "ALLC", 4: "TFT"}, ["ALLC", "ALLD", "MMZD"]) == {
        "ALLC": 0.5,
        "ALLD": 0.25,
        "MMZD": 0.0,
        "TFT": 0.25,
    }
