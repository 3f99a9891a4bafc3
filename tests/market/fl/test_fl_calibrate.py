"""Fitting SPEC B.1's precision function to loss curves, and the `flmarket calibrate` subcommand."""

from __future__ import annotations

import argparse
import math
import tomllib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from flmarket.market.errors import MarketError
from flmarket.market.fl.calibrate import TrainingDivergedError, fit_precision_function, measure_loss_curve
from flmarket.sim.calibrate import register


def test_fit_recovers_known_parameters_from_a_noisy_curve() -> None:
    participation = np.arange(0, 500, 10, dtype=float)
    truth = 40.0 / (20.0 + 5.0 * participation)
    noisy = truth * (1 + np.random.default_rng(0).normal(0, 0.01, participation.size))
    fit = fit_precision_function(participation, noisy, local_iterations=5)
    assert fit.theta0 == pytest.approx(40.0, rel=0.05)
    assert fit.theta1 == pytest.approx(20.0, rel=0.05)
    assert fit.local_iterations == 5
    assert fit.residual_rms < 0.01 * truth.max()


def test_fit_with_theta0_fixed_finds_k() -> None:
    participation = np.linspace(0, 100, 30)
    losses = 9.82 / (4.0 + 2.5 * participation)
    fit = fit_precision_function(participation, losses, local_iterations=1.0, theta0=9.82)
    assert fit.theta1 == pytest.approx(4.0, rel=1e-4)
    assert fit.local_iterations == pytest.approx(2.5, rel=1e-4)
    assert fit.residual_rms < 1e-6


def test_fit_rejects_bad_curves() -> None:
    with pytest.raises(MarketError, match="need >= 3 points"):
        fit_precision_function([0, 1], [2.0, 1.0])
    with pytest.raises(MarketError, match="losses: must all be finite and > 0"):
        fit_precision_function([0, 1, 2], [2.0, 0.0, 1.0])


class _ScriptedBackend:
    """A learning backend whose updates' norms and round losses are given in advance."""

    def __init__(self, norms: list[float], losses: list[float]) -> None:
        self.norms = iter(norms)
        self.losses = iter(losses)

    def start_task(self, task_id: int) -> SimpleNamespace:
        return SimpleNamespace(loss=2.3, accuracy=0.1)

    def local_update(self, provider: int, *args: object) -> SimpleNamespace:
        return SimpleNamespace(provider_id=provider, l1_norm=next(self.norms))

    def commit_round(self, updates: object) -> SimpleNamespace:
        return SimpleNamespace(loss=next(self.losses), accuracy=0.5)


@pytest.mark.parametrize(
    ("norms", "losses", "reason"),
    [
        ([1.0, math.nan], [1.0], "the update of provider 1 in round 1 is not finite"),
        ([1.0, 1.0, 1.0, math.inf], [1.0, 0.5], "the update of provider 1 in round 2 is not finite"),
        ([1.0, 1.0], [math.inf], "the loss after round 1 is inf"),
    ],
)
def test_a_non_finite_update_or_loss_stops_the_curve_as_diverged(norms, losses, reason) -> None:
    backend = _ScriptedBackend(norms, losses)
    with pytest.raises(TrainingDivergedError, match=f"^training diverged: {reason}"):
        measure_loss_curve(backend, [0, 1], 3, 1, np.random.default_rng(0))


@pytest.mark.slow
def test_calibrate_subcommand_writes_a_surrogate_fragment(tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser(prog="flmarket")
    register(parser.add_subparsers())
    out = tmp_path / "surrogate.toml"
    args = parser.parse_args(["calibrate", "--rounds", "30", "--providers", "3", "--seed", "2", "--out", str(out)])
    assert args.func(args) == 0
    fragment = tomllib.loads(out.read_text())["learning"]["surrogate"]
    assert fragment["local_iterations"] == 1  # one local epoch per round (SPEC A.2)
    assert 1.0 < fragment["update_l1_norm"] < 100.0  # ||u||_1 of one epoch of the digits MLP (about 13 at lr 0.05)
    assert fragment["theta0"] > 0 and fragment["theta1"] > 0
    # The untrained loss of a 10-class model is near ln 10, and the fit must start near it. With one epoch per
    # round the loss falls steeply in round 0, which the hyperbola H = theta0 / (theta1 + T) can only follow by
    # starting higher: on 30 rounds of seed 2 it starts at 2.68 (ln 10 = 2.30), hence the 25% band.
    assert fragment["theta0"] / fragment["theta1"] == pytest.approx(np.log(10), rel=0.25)
    captured = capsys.readouterr()
    assert captured.out == ""  # with --out, stdout stays empty; status goes to stderr
    assert "wrote" in captured.err
    with pytest.raises(SystemExit):
        parser.parse_args(["calibrate", "--rounds", "0"])
