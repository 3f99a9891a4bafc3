"""Fit the precision function of SPEC B.1 to a measured loss curve (calibration of the surrogate backend).

Model: H(y) = theta0 / (theta1 + K * y), y the total participation (provider-rounds). Only two of theta0,
theta1, K are identifiable (dividing all three by c leaves H unchanged), so either K is fixed and theta0,
theta1 are fitted (the default), or theta0 is fixed and theta1, K are fitted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import curve_fit

from flmarket.market.errors import MarketError, TrainingDivergedError
from flmarket.market.fl.backend import LearningBackend, RoundResult

MINIMUM_FIT_POINTS = 3
"""Points a loss curve needs for `fit_precision_function` to fit its two parameters."""


@dataclass(frozen=True)
class PrecisionFit:
    """Fitted precision function theta0 / (theta1 + K * y) and the fit's root-mean-square residual."""

    theta0: float
    theta1: float
    local_iterations: float
    residual_rms: float
    points: int

    def loss(self, total_participation: float | np.ndarray) -> float | np.ndarray:
        """SPEC B.1 eps(y) = theta0 / (theta1 + K * y) at the fitted parameters."""
        return self.theta0 / (self.theta1 + self.local_iterations * np.asarray(total_participation, float))


def fit_precision_function(
    total_participation: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    local_iterations: float = 5.0,
    theta0: float | None = None,
) -> PrecisionFit:
    """Least-squares fit (scipy curve_fit, positive bounds) of SPEC B.1's eps(y) = theta0 / (theta1 + K y).

    With `theta0=None`, theta0 and theta1 are fitted with K = `local_iterations` fixed; with theta0 given,
    theta1 and K are fitted instead (`local_iterations` is then the starting guess).
    """
    participation = np.asarray(total_participation, dtype=np.float64)
    loss = np.asarray(losses, dtype=np.float64)
    if participation.shape != loss.shape or participation.ndim != 1:
        raise MarketError(
            f"losses: must be a 1-d curve of the same length as total_participation, got shapes "
            f"{loss.shape} and {participation.shape}"
        )
    if participation.size < MINIMUM_FIT_POINTS:
        raise MarketError(
            f"losses: need >= {MINIMUM_FIT_POINTS} points to fit two parameters, got {participation.size}"
        )
    if np.any(participation < 0):
        raise MarketError("total_participation: must all be >= 0")
    if np.any(loss <= 0) or not np.all(np.isfinite(loss)):
        raise MarketError(f"losses: must all be finite and > 0, got min {loss.min()}")
    if local_iterations <= 0:
        raise MarketError(f"local_iterations: must be > 0, got {local_iterations}")
    if theta0 is not None and theta0 <= 0:
        raise MarketError(f"theta0: must be > 0 or None, got {theta0}")
    initial_loss = float(loss[np.argmin(participation)])
    if theta0 is None:

        def model(y: np.ndarray, scale: float, offset: float) -> np.ndarray:
            return scale / (offset + local_iterations * y)

        # Initial guess: the curve's start fixes theta0/theta1; its half-life fixes theta1/K.
        half = participation[np.argmin(np.abs(loss - initial_loss / 2.0))]
        offset_guess = max(local_iterations * max(float(half), 1.0), 1e-3)
        (fitted_theta0, fitted_theta1), _ = curve_fit(
            model, participation, loss, p0=(initial_loss * offset_guess, offset_guess), bounds=(0.0, np.inf)
        )
        fitted_iterations = float(local_iterations)
    else:
        fixed_theta0 = float(theta0)

        def model(y: np.ndarray, offset: float, iterations: float) -> np.ndarray:
            return fixed_theta0 / (offset + iterations * y)

        (fitted_theta1, fitted_iterations), _ = curve_fit(
            model,
            participation,
            loss,
            p0=(fixed_theta0 / initial_loss, local_iterations),
            bounds=(0.0, np.inf),
        )
        fitted_theta0 = fixed_theta0
    residual = loss - fitted_theta0 / (fitted_theta1 + fitted_iterations * participation)
    return PrecisionFit(
        theta0=float(fitted_theta0),
        theta1=float(fitted_theta1),
        local_iterations=float(fitted_iterations),
        residual_rms=math.sqrt(float(np.mean(residual**2))),
        points=int(participation.size),
    )


@dataclass(frozen=True)
class LossCurve:
    """Loss after each round against the total participation y (provider-rounds) reached, from y = 0."""

    total_participation: np.ndarray
    losses: np.ndarray
    accuracies: tuple[float | None, ...]
    mean_update_l1_norm: float = 0.0
    """Mean ||u||_1 of the unperturbed uploads per local iteration (epoch), SPEC A.2."""


def measure_loss_curve(
    backend: LearningBackend,
    provider_ids: Sequence[int],
    rounds: int,
    local_iterations: int,
    rng: np.random.Generator,
    task_id: int = 0,
    on_round: Callable[[RoundResult], None] | None = None,
) -> LossCurve:
    """Every provider trains honestly (no privacy noise) in each of `rounds` rounds; record the loss curve.

    Raises TrainingDivergedError as soon as an update or the loss after a round is not finite."""
    if rounds < 1:
        raise MarketError(f"rounds: must be >= 1, got {rounds}")
    if not provider_ids:
        raise MarketError("provider_ids: need at least one provider, got none")
    results = [backend.start_task(task_id)]
    norms: list[float] = []
    for round_number in range(1, rounds + 1):
        updates = [backend.local_update(provider, local_iterations, None, "honest", rng) for provider in provider_ids]
        for update in updates:
            if not math.isfinite(update.l1_norm):
                raise TrainingDivergedError(
                    f"training diverged: the update of provider {update.provider_id} in round {round_number} is "
                    f"not finite (||u||_1 = {update.l1_norm})"
                )
        norms.extend(update.l1_norm / max(local_iterations, 1) for update in updates)
        results.append(backend.commit_round(updates))
        if not math.isfinite(results[-1].loss):
            raise TrainingDivergedError(f"training diverged: the loss after round {round_number} is {results[-1].loss}")
        if on_round is not None:
            on_round(results[-1])
    participation = np.arange(rounds + 1, dtype=np.float64) * len(provider_ids)
    losses = np.array([result.loss for result in results])
    return LossCurve(participation, losses, tuple(result.accuracy for result in results), float(np.mean(norms)))
