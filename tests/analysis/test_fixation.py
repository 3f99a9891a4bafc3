"""analysis/fixation.py: the evolution scenario's game at its prior means, and the table of simulated against
closed-form fixation probabilities (Traulsen, Pacheco & Nowak 2006), checked by hand and against the simulator."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pandas as pd
import pandas.testing as pdt
import pytest
from scipy import stats

from flmarket.analysis.fixation import (
    COLUMNS,
    EVOLUTION_GAME,
    betas_for_selection,
    fixation_table,
    payoff_differences,
)
from flmarket.market.public_goods import PublicGoodsGame
from flmarket.sim.config import load_scenario
from flmarket.sim.model import MarketModel


def test_the_evolution_game_is_the_bundled_scenarios_at_its_prior_means() -> None:
    scenario = load_scenario("evolution")
    assert EVOLUTION_GAME.theta0 == scenario.learning.theta0
    assert EVOLUTION_GAME.theta1 == scenario.learning.theta1
    assert EVOLUTION_GAME.local_iterations == scenario.learning.local_iterations
    assert EVOLUTION_GAME.rounds == scenario.learning.rounds_per_task
    assert EVOLUTION_GAME.providers == scenario.providers.count
    assert EVOLUTION_GAME.unit_revenue == scenario.providers.unit_revenue.expected()
    assert EVOLUTION_GAME.window_position == pytest.approx(
        scenario.providers.participation_cost.window_position.expected()
    )
    assert EVOLUTION_GAME.selection_intensity == scenario.evolution.selection_intensity
    # the simulator draws the same kappa for a provider with the mean revenue and the mean window position
    model = MarketModel(
        load_scenario(
            "evolution",
            {
                "providers.unit_revenue": EVOLUTION_GAME.unit_revenue,
                "providers.participation_cost": {"window_position": EVOLUTION_GAME.window_position},
            },
        )
    )
    simulated = model.game_of(list(model.online_providers.values()))
    assert list(simulated.unit_cost) == pytest.approx([EVOLUTION_GAME.unit_cost()] * 40, rel=1e-12)
    assert simulated.unit_revenue == EVOLUTION_GAME.game().unit_revenue


def test_unit_cost_and_payoff_gap_by_hand() -> None:
    # g(T) = theta0/theta1 - theta0/(theta1 + K T); kappa = g(1) + 0.15 (g(40 * 3)/3 - g(1)) with rho = 1
    gain = lambda total: 9.82 / 400 - 9.82 / (400 + 5 * total)  # noqa: E731
    kappa = gain(1) + 0.15 * (gain(120) / 3 - gain(1))
    assert EVOLUTION_GAME.unit_cost() == pytest.approx(kappa, rel=1e-12)
    assert kappa * 3 == pytest.approx(0.0029824, abs=1e-7)  # the "about 0.003" of the scenario's comment
    # the revenue is shared: a defector saves kappa R whatever the number of defectors
    game = EVOLUTION_GAME.game(5)
    assert payoff_differences(game, "ALLD", "ALLC") == pytest.approx([kappa * 3] * 4, rel=1e-9)
    assert payoff_differences(game, "ALLC", "ALLD") == pytest.approx([-kappa * 3] * 4, rel=1e-9)
    betas = betas_for_selection([0.5, 2.0])
    assert [beta * kappa * 3 for beta in betas] == pytest.approx([0.5, 2.0])


@pytest.fixture(scope="module")
def small_table() -> pd.DataFrame:
    return fixation_table(betas_for_selection([0.2, 1.0, 2.0]), population=6, trials=600, seed=3)


def test_table_schema_and_closed_form_by_hand(small_table: pd.DataFrame) -> None:
    table = small_table
    assert tuple(table.columns) == COLUMNS
    assert list(table.columns) == [
        "beta",
        "payoff_gap",
        "population",
        "simulated",
        "wilson_low",
        "wilson_high",
        "theory",
        "trials",
    ]
    assert (table["population"] == 6).all() and (table["trials"] == 600).all()
    assert table.attrs["invader"] == "ALLD" and table.attrs["resident"] == "ALLC"
    # constant advantage s = beta * kappa R: rho = (1 - e^-s) / (1 - e^-sN)
    selection = table["beta"] * table["payoff_gap"]
    assert selection.tolist() == pytest.approx([0.2, 1.0, 2.0])
    by_hand = [(1 - math.exp(-s)) / (1 - math.exp(-6 * s)) for s in selection]
    assert table["theory"].tolist() == pytest.approx(by_hand, rel=1e-12)


def test_wilson_interval_by_hand_and_theory_inside_it(small_table: pd.DataFrame) -> None:
    z = stats.norm.ppf(0.975)
    for row in small_table.itertuples():
        n, p = row.trials, row.simulated
        centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
        half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
        assert (row.wilson_low, row.wilson_high) == pytest.approx((centre - half, centre + half), abs=1e-12)
        assert row.wilson_low <= row.simulated <= row.wilson_high
        assert row.wilson_low <= row.theory <= row.wilson_high, row
    # selection is not neutral: 1/N lies below the interval at s = 1 and 2
    assert (small_table["wilson_low"].iloc[1:] > 1 / 6).all()


def test_cooperators_invading_and_a_given_game() -> None:
    game = PublicGoodsGame(9.82, 40.0, 5, 2, (1.0,) * 4, (0.05,) * 4)
    table = fixation_table([1.0, 5.0], game, trials=400, seed=1, invader="ALLC", resident="ALLD")
    assert table["payoff_gap"].tolist() == pytest.approx([-0.1, -0.1])  # kappa R = 0.05 * 2
    assert (table["population"] == 4).all() and table.attrs["game"] == "the given game"
    assert (table["theory"] < 1 / 4).all() and table["theory"].is_monotonic_decreasing
    assert ((table["wilson_low"] <= table["theory"]) & (table["theory"] <= table["wilson_high"])).all()


def test_same_seed_same_table_other_seed_other_table() -> None:
    betas = betas_for_selection([0.5, 1.5])
    first = fixation_table(betas, population=5, trials=200, seed=9)
    pdt.assert_frame_equal(first, fixation_table(betas, population=5, trials=200, seed=9))
    assert not first["simulated"].equals(fixation_table(betas, population=5, trials=200, seed=10)["simulated"])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"betas": [0.0]}, "betas: every beta must be > 0, got 0.0"),
        ({"betas": [1.0], "trials": 0}, "trials: must be >= 1, got 0"),
        ({"betas": [1.0], "population": 1}, "population: must be >= 2, got 1"),
        ({"betas": [1.0], "invader": "TFT"}, "invader: must be one of ALLC, ALLD, got 'TFT'"),
        ({"betas": [1.0], "resident": "ALLD"}, "invader and resident: must differ, got 'ALLD' for both"),
        ({"betas": [1.0], "confidence": 1.0}, r"confidence: must be in \(0, 1\), got 1.0"),
        (
            {"betas": [1.0], "game": PublicGoodsGame(9.82, 40.0, 5, 2, (1.0, 2.0), (0.05, 0.05))},
            "game.unit_revenue: must be the same for every player",
        ),
        (
            {"betas": [1.0], "game": EVOLUTION_GAME.game(4), "population": 5},
            "population: must equal the game's 4 players, got 5",
        ),
    ],
)
def test_bad_arguments_name_the_field_and_the_value(arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fixation_table(**{"trials": 10, **arguments})


def test_the_readme_figure_script_writes_its_figure_table_and_caption(tmp_path) -> None:
    path = Path(__file__).resolve().parents[2] / "examples" / "fixation_figure.py"
    spec = importlib.util.spec_from_file_location("fixation_figure", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--out", str(tmp_path), "--trials", "20", "--seed", "3", "--dpi", "60"]) == 0
    table = pd.read_csv(tmp_path / "fixation.csv")
    assert sorted(table["population"].unique()) == [10, 40] and (table["trials"] == 20).all()
    assert ((table["wilson_low"] <= table["simulated"]) & (table["simulated"] <= table["wilson_high"])).all()
    inside = ((table["wilson_low"] <= table["theory"]) & (table["theory"] <= table["wilson_high"])).sum()
    caption = (tmp_path / "fixation.caption.txt").read_text()
    assert f"inside {inside} of {len(table)} intervals" in caption
    assert (tmp_path / "fixation.png").stat().st_size > 0 and (tmp_path / "fixation.pdf").stat().st_size > 0
