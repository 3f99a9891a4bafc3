"""Fixation of one invader under the pairwise comparison process: simulation against the closed form.

`fixation_table` runs `market.evolution.simulate_fixation` (the step function the simulator's `process =
"pairwise"` calls, on a complete graph, without mutation) from one invader among N - 1 residents, and sets the
simulated fixation probability with its Wilson interval beside the closed form `fixation_probability`
(Traulsen, Pacheco & Nowak 2006, J. Theor. Biol. 246:522; Nowak 2006, Evolutionary Dynamics, eq. 6.13).

The payoffs are the public-goods utilities (SPEC B.1) of the bundled `evolution` scenario's game, made
homogeneous at the means of its priors so that two strategies form the birth-death chain the closed form is
about: theta0 = 9.82, theta1 = 400, K = 5, R = 3, rho = E[rho_i] = 1 and kappa = rho (g(1) + u (g(NR)/R -
g(1))) with u = E[window position] = 0.15 and N = 40 (the window of SPEC B.2 as `MarketModel` draws kappa_i).
ALLC plays R, ALLD plays 0; the revenue is shared, so pi_ALLD - pi_ALLC = kappa R (about 0.00298) whatever
the number of defectors, and the scenario's kappa_select = 0.001 is beta = 1000, beta kappa R of about 3.

Pure analysis: no simulation clock, no plotting (`analysis.plots.fixation_figure` draws the table).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from flmarket.market.evolution import fixation_probability, simulate_fixation
from flmarket.market.public_goods import PublicGoodsGame

COLUMNS = ("beta", "payoff_gap", "population", "simulated", "wilson_low", "wilson_high", "theory", "trials")
STRATEGIES = ("ALLC", "ALLD")


@dataclass(frozen=True)
class ScenarioGame:
    """The stage-game parameters of a scenario (SPEC B.1, B.2), with its priors replaced by their means."""

    name: str
    theta0: float
    theta1: float
    local_iterations: int
    rounds: int
    providers: int
    unit_revenue: float
    window_position: float
    selection_intensity: float

    def unit_cost(self) -> float:
        """kappa = rho (g(1) + u (g(N R) / R - g(1))): the SPEC B.2 window at position u, as the simulator draws
        kappa_i (`MarketModel._draw_type`) for a provider with the mean revenue and the mean position."""
        probe = PublicGoodsGame(self.theta0, self.theta1, self.local_iterations, self.rounds, (1.0,), (1.0,))
        low = float(probe.precision_gain(1))
        high = float(probe.precision_gain(self.providers * self.rounds)) / self.rounds
        return self.unit_revenue * (low + self.window_position * (high - low))

    def game(self, population: int | None = None) -> PublicGoodsGame:
        """The homogeneous public-goods game of `population` players (default: the scenario's provider count)."""
        players = self.providers if population is None else population
        if players < 2:
            raise ValueError(f"population: must be >= 2, got {players}")
        return PublicGoodsGame(
            self.theta0,
            self.theta1,
            self.local_iterations,
            self.rounds,
            (self.unit_revenue,) * players,
            (self.unit_cost(),) * players,
        )


# sim/scenarios/evolution.toml: [learning] theta0 (default), theta1, local_iterations (default), rounds_per_task;
# [providers] count, unit_revenue (default U[0.5, 1.5]), participation_cost.window_position U[0.05, 0.25];
# [evolution] selection_intensity. tests/analysis/test_fixation.py checks these against the loaded scenario.
EVOLUTION_GAME = ScenarioGame(
    name="evolution",
    theta0=9.82,
    theta1=400.0,
    local_iterations=5,
    rounds=3,
    providers=40,
    unit_revenue=1.0,
    window_position=0.15,
    selection_intensity=0.001,
)


def payoff_differences(game: PublicGoodsGame, invader: str, resident: str) -> list[float]:
    """pi_invader(j) - pi_resident(j) for j = 1..N-1 invaders, from the game's utilities (ALLC plays R, ALLD 0)."""
    for name, strategy in (("invader", invader), ("resident", resident)):
        if strategy not in STRATEGIES:
            raise ValueError(f"{name}: must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if invader == resident:
        raise ValueError(f"invader and resident: must differ, got {invader!r} for both")
    _require_homogeneous(game)
    action = {"ALLC": game.rounds, "ALLD": 0}
    players = game.players
    differences = []
    for count in range(1, players):
        utilities = game.utilities([action[invader]] * count + [action[resident]] * (players - count))
        differences.append(float(utilities[0] - utilities[-1]))
    return differences


def _require_homogeneous(game: PublicGoodsGame) -> None:
    """The closed form is for a two-type chain: every player must have the same rho and kappa."""
    for name, values in (("unit_revenue", game.unit_revenue), ("unit_cost", game.unit_cost)):
        if min(values) != max(values):
            raise ValueError(
                f"game.{name}: must be the same for every player (the closed form is for two types), got "
                f"values from {min(values):.6g} to {max(values):.6g}"
            )


def _utility_lookup(game: PublicGoodsGame, invader: str, resident: str):
    """payoff_of for simulate_fixation: every player's utility, read from a table by the number of invaders."""
    action = {"ALLC": game.rounds, "ALLD": 0}
    players = game.players
    by_count: list[tuple[float, float]] = []
    for count in range(players + 1):
        utilities = game.utilities([action[invader]] * count + [action[resident]] * (players - count))
        by_count.append((float(utilities[0]), float(utilities[-1])))

    def payoff_of(strategies):
        count = sum(strategy == invader for strategy in strategies.values())
        invader_payoff, resident_payoff = by_count[count]
        return {
            player: invader_payoff if strategy == invader else resident_payoff
            for player, strategy in strategies.items()
        }

    return payoff_of


def betas_for_selection(
    strengths: Sequence[float], game: PublicGoodsGame | None = None, *, invader: str = "ALLD", resident: str = "ALLC"
) -> list[float]:
    """beta = s / |pi_invader - pi_resident| for each selection strength s = beta |payoff gap| (the closed form
    depends on beta only through this product when the gap is constant, as in the public-goods game)."""
    differences = payoff_differences(game if game is not None else EVOLUTION_GAME.game(), invader, resident)
    gap = abs(float(np.mean(differences)))
    if not gap > 0:
        raise ValueError("game: the invader and the resident earn the same; no beta gives a selection strength")
    return [float(strength) / gap for strength in strengths]


def fixation_table(
    betas: Sequence[float],
    game: PublicGoodsGame | None = None,
    *,
    population: int | None = None,
    trials: int = 1000,
    seed: int = 0,
    invader: str = "ALLD",
    resident: str = "ALLC",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Simulated and closed-form fixation probability of one `invader` among `resident`s, one row per beta.

    `game` defaults to `EVOLUTION_GAME.game(population)` (population defaults to its 40 providers); a given game
    must be homogeneous, and its player count is the population. Each beta runs `trials` independent runs of
    `simulate_fixation` (complete graph, no mutation) from its own seed (SeedSequence(seed, spawn_key=(i,)) for
    the i-th beta). Columns: beta; payoff_gap = pi_invader - pi_resident (constant in this game: +-kappa R);
    population; simulated = fixations / trials; wilson_low and wilson_high, the Wilson score interval at
    `confidence` (statsmodels `proportion_confint(method="wilson")`; Wilson 1927); theory, the closed form
    (Traulsen, Pacheco & Nowak 2006); trials. payoff_gap is the mean of pi_invader(j) - pi_resident(j) over
    j = 1..N-1, which is exact for the homogeneous public-goods game. `table.attrs` records invader, resident,
    confidence, seed and where the game came from.
    """
    if game is None:
        game = EVOLUTION_GAME.game(population)
        source = f"{EVOLUTION_GAME.name} scenario's game at its prior means (analysis.fixation.EVOLUTION_GAME)"
    else:
        if population is not None and population != game.players:
            raise ValueError(f"population: must equal the game's {game.players} players, got {population}")
        source = "the given game"
    if trials < 1:
        raise ValueError(f"trials: must be >= 1, got {trials}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: must be in (0, 1), got {confidence}")
    betas = [float(beta) for beta in betas]
    for beta in betas:
        if not beta > 0:
            raise ValueError(f"betas: every beta must be > 0, got {beta}")
    differences = payoff_differences(game, invader, resident)
    payoff_of = _utility_lookup(game, invader, resident)
    rows = []
    for index, beta in enumerate(betas):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
        fixed = sum(
            simulate_fixation(game.players, invader, resident, payoff_of, rng, beta=beta) for _ in range(trials)
        )
        low, high = proportion_confint(fixed, trials, alpha=1 - confidence, method="wilson")
        rows.append(
            {
                "beta": beta,
                "payoff_gap": float(np.mean(differences)),
                "population": game.players,
                "simulated": fixed / trials,
                "wilson_low": float(low),
                "wilson_high": float(high),
                "theory": fixation_probability(differences, beta),
                "trials": trials,
            }
        )
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table = table.astype({"population": "int64", "trials": "int64"})
    table.attrs.update(
        invader=invader,
        resident=resident,
        confidence=confidence,
        seed=seed,
        game=source,
    )
    return table
