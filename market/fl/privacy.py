"""The arithmetic of the Laplace mechanism on an upload (SPEC A.2, B 4, B 5), without torch.

Both backends and the market model use it: the noise scale b = Delta_f / eps, Delta_f either the scenario's
`learning.sensitivity` or, in formal DP mode ("per_record"), the per-record sensitivity of local SGD, and the
expected L1 norm of the perturbed update that (B 5) prices.
"""

from __future__ import annotations

import math

import numpy as np

from flmarket.market.errors import MarketError

PER_RECORD = "per_record"
"""`learning.sensitivity` value that selects formal DP (per-record clipped gradients, SPEC A.2)."""


def steps_per_epoch(sample_count: int, batch_size: int) -> int:
    """SGD steps in one local epoch: ceil(|D_i| / batch_size) (SPEC A.2)."""
    if sample_count < 1:
        raise MarketError(f"sample_count: must be >= 1, got {sample_count}")
    if batch_size < 1:
        raise MarketError(f"batch_size: must be >= 1, got {batch_size}")
    return -(-sample_count // batch_size)


def per_record_sensitivity(
    learning_rate: float, clip: float, steps: int, sample_count: int, momentum: float = 0.0
) -> float:
    """Delta_f = 2 * lr * clip * steps / (|D_i| (1 - m)), the per-record L1 sensitivity of the update (SPEC A.2).

    Replacing one record changes each step it takes part in by at most 2 * lr * clip / min(b, |D_i|) <=
    2 * lr * clip * steps / |D_i| per epoch (it takes part once per epoch); momentum m carries each step into
    the later ones with total weight at most 1 / (1 - m) (m = 0 gives SPEC A.2's printed formula). Like the
    SPEC, the bound counts each record's direct contributions, not their effect on later iterates.
    """
    if learning_rate <= 0 or clip <= 0:
        raise MarketError(f"learning_rate and clip: must be > 0, got {learning_rate} and {clip}")
    if steps < 0 or sample_count < 1:
        raise MarketError(f"steps and sample_count: must be >= 0 and >= 1, got {steps} and {sample_count}")
    if not 0.0 <= momentum < 1.0:
        raise MarketError(f"momentum: must be in [0, 1), got {momentum}")
    return 2.0 * learning_rate * clip * steps / (sample_count * (1.0 - momentum))


def laplace_scale(sensitivity: float, privacy_budget: float) -> float:
    """(B 4) b = Delta_f / eps_i, Delta_f the scenario's `learning.sensitivity` (SPEC A.2)."""
    if not sensitivity > 0:
        raise MarketError(f"sensitivity: must be > 0, got {sensitivity}")
    if not privacy_budget > 0:
        raise MarketError(f"privacy_budget: must be > 0, got {privacy_budget}")
    return sensitivity / privacy_budget


def privatise(
    update: np.ndarray,
    sensitivity: float,
    privacy_budget: float,
    rng: np.random.Generator,
    noise_location: float = 0.0,
) -> np.ndarray:
    """(B 4) u~ = u + Lap(mu, Delta_f / eps)^d, i.i.d. per coordinate, once per upload; float32 like the model.

    The update is not clipped (SPEC A.2 revised): the sensitivity is the scenario's Delta_f.
    """
    scale = laplace_scale(sensitivity, privacy_budget)
    values = np.asarray(update, dtype=np.float64)
    return (values + rng.laplace(noise_location, scale, size=values.shape)).astype(np.float32)


def expected_perturbed_l1_norm(
    update_l1_norm: float, parameter_count: int, scale: float | np.ndarray
) -> float | np.ndarray:
    """E||u + Lap(0, b)^d||_1 when u spreads its L1 norm evenly over d coordinates (SPEC A.2, A.3):

    E|a + X| = a + b exp(-a / b) for X ~ Laplace(0, b) and a >= 0, so E||u~||_1 = d (a + b exp(-a / b)) with
    a = ||u||_1 / d. It lies between max(||u||_1, d b) and ||u||_1 + d b. Elementwise over an array of scales.
    """
    if isinstance(scale, float | int):  # one provider's upload: no numpy on the hot path
        if update_l1_norm < 0 or parameter_count < 1 or scale < 0:
            raise MarketError(
                f"update_l1_norm, parameter_count, scale: must be >= 0, >= 1, >= 0, got "
                f"{update_l1_norm}, {parameter_count}, {scale}"
            )
        per_coordinate = update_l1_norm / parameter_count
        noise = scale * math.exp(-per_coordinate / scale) if scale > 0 else 0.0
        return parameter_count * (per_coordinate + noise)
    scales = np.asarray(scale, dtype=np.float64)
    if update_l1_norm < 0 or parameter_count < 1 or np.any(scales < 0):
        raise MarketError(
            f"update_l1_norm, parameter_count, scale: must be >= 0, >= 1, >= 0, got "
            f"{update_l1_norm}, {parameter_count}, {scale}"
        )
    per_coordinate = update_l1_norm / parameter_count
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        noise = np.where(scales > 0, scales * np.exp(-per_coordinate / np.where(scales > 0, scales, 1.0)), 0.0)
    norms = parameter_count * (per_coordinate + noise)
    return float(norms) if norms.ndim == 0 else norms


def upload_sensitivity(
    sensitivity: float | str,
    learning_rate: float,
    clip: float,
    epochs: int,
    sample_count: int,
    batch_size: int,
    momentum: float,
) -> float:
    """Delta_f of one upload (SPEC A.2): the scenario's number, or the per-record bound in formal DP mode."""
    if sensitivity == PER_RECORD:
        steps = epochs * steps_per_epoch(sample_count, batch_size)
        return per_record_sensitivity(learning_rate, clip, steps, sample_count, momentum)
    if isinstance(sensitivity, str) or not sensitivity > 0:
        raise MarketError(f"sensitivity: must be > 0 or {PER_RECORD!r}, got {sensitivity!r}")
    return float(sensitivity)
