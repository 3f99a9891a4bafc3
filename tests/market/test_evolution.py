"""Strategy evolution (SPEC C): the Fermi rule, mutation, alliance grouping."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

from flmarket.market.errors import MarketError
from flmarket.market.evolution import (
    alliances_by_rule,
    complete_graph_models,
    fermi_probability,
    fixation_probability,
    pairwise_comparison_step,
    revise_strategy,
    simulate_fixation,
    strategy_shares,
)
from flmarket.market.public_goods import PublicGoodsGame


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


# ------------------------------------------------------------------ pairwise comparison process vs theory

# A homogeneous public-goods game (SPEC B.1) of 8 organisations: ALLC plays R = 2, ALLD plays 0.
PLAYERS = 8
HOMOGENEOUS = PublicGoodsGame(9.82, 40.0, 5, 2, (1.0,) * PLAYERS, (0.05,) * PLAYERS)
ACTION = {"ALLC": 2, "ALLD": 0}


def _utilities_by_cooperators() -> dict[int, tuple[float, float]]:
    """(pi_ALLC, pi_ALLD) with k ALLC players, from the game's utilities (k = 0..N)."""
    table = {}
    for count in range(PLAYERS + 1):
        utilities = HOMOGENEOUS.utilities([ACTION["ALLC"]] * count + [ACTION["ALLD"]] * (PLAYERS - count))
        table[count] = (float(utilities[0]), float(utilities[-1]))
    return table


UTILITIES = _utilities_by_cooperators()


def _game_payoffs(strategies):
    """Every player's public-goods utility in the profile (all N play one task)."""
    cooperators = sum(strategy == "ALLC" for strategy in strategies.values())
    allc, alld = UTILITIES[cooperators]
    return {player: allc if strategy == "ALLC" else alld for player, strategy in strategies.items()}


def _differences(mutant: str, resident: str) -> list[float]:
    """pi_mutant(j) - pi_resident(j) for j = 1..N-1 mutants, from the game itself."""
    differences = []
    for count in range(1, PLAYERS):
        actions = [ACTION[mutant]] * count + [ACTION[resident]] * (PLAYERS - count)
        utilities = HOMOGENEOUS.utilities(actions)
        differences.append(float(utilities[0] - utilities[-1]))
    return differences


def test_fixation_probability_closed_form_by_hand() -> None:
    # neutral limit: 1 / N; constant advantage r = exp(beta * d): (1 - 1/r) / (1 - 1/r^N) (Moran-like form)
    assert fixation_probability([0.0] * 9, beta=1.0) == pytest.approx(0.1)
    ratio = math.exp(0.5)
    assert fixation_probability([0.5] * 4, beta=1.0) == pytest.approx((1 - 1 / ratio) / (1 - ratio**-5))
    assert fixation_probability([-1e6] * 4, beta=1.0) == 0.0  # no overflow under strong selection
    with pytest.raises(MarketError, match="beta: must be > 0, got 0"):
        fixation_probability([1.0], beta=0)


@pytest.mark.parametrize(("mutant", "resident"), [("ALLC", "ALLD"), ("ALLD", "ALLC")])
@pytest.mark.parametrize("selection", [0.1, 0.5, 1.5])
def test_simulated_fixation_matches_the_closed_form(mutant: str, resident: str, selection: float) -> None:
    differences = _differences(mutant, resident)
    # in this game the gap is the saved cost kappa * R whatever j is (public good shared by all)
    assert differences == pytest.approx([(0.1 if mutant == "ALLD" else -0.1)] * (PLAYERS - 1))
    beta = selection / 0.1  # beta * |pi_A - pi_B| = selection
    theory = fixation_probability(differences, beta)
    rng = np.random.default_rng(int(selection * 10) + (mutant == "ALLD"))
    runs = 1500
    fixed = sum(simulate_fixation(PLAYERS, mutant, resident, _game_payoffs, rng, beta=beta) for _ in range(runs))
    low, high = proportion_confint(fixed, runs, alpha=0.01, method="wilson")
    assert low <= theory <= high, (fixed / runs, theory)
    # and the process is not neutral drift: the neutral 1/N lies outside the interval at the stronger selections
    if selection >= 0.5:
        assert not low <= 1 / PLAYERS <= high


def test_pairwise_step_picks_one_focal_and_models_its_neighbours_only() -> None:
    graph = nx.path_graph(3)  # 0-1-2: player 0's only model is 1
    strategies = {0: "ALLD", 1: "ALLC", 2: "ALLD"}
    payoffs = {0: 0.0, 1: 100.0, 2: 0.0}
    rng = np.random.default_rng(4)
    changes = [
        pairwise_comparison_step(
            strategies,
            payoffs,
            lambda node: list(graph.neighbors(node)),
            ["ALLC", "ALLD"],
            rng,
            beta=1.0,
            mutation_rate=0.0,
        )
        for _ in range(300)
    ]
    made = [change for change in changes if change is not None]
    # 0 and 2 copy 1 (gap 100: probability 1); 1 copies a defector with probability 1 / (1 + e^100) ~ 0
    assert {change.provider for change in made} == {0, 2} and all(change.neighbour == 1 for change in made)
    assert 150 < len(made) < 250  # the focal player is 0 or 2 in two thirds of the updates
    with pytest.raises(MarketError, match="beta: must be > 0, got -1"):
        pairwise_comparison_step(
            strategies, payoffs, complete_graph_models([0, 1, 2]), ["ALLC"], rng, beta=-1, mutation_rate=0.0
        )
