"""Model quality, freshness and leave-one-out utility of BGFL (SPEC A.4: B 7, B 8).

Freshness follows SPEC A.4's resolution: the trusted timer stamps an update with the seconds left before the
round's deadline, T = 10 + seconds left, F = lg T >= 1; an update stamped after the deadline is rejected
(`LateUpdateError`), never scored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from flmarket.market.errors import LateUpdateError, MarketError
from flmarket.market.validation import FloatOrArray, checked_values, scalar_if_0d

FRESHNESS_OFFSET_S = 10.0


@dataclass(frozen=True)
class QualityParameters:
    """Constants of the quality index (B 7): mu0 = hidden layers, mu1 = output units (Table 3: 2 and 10)."""

    hidden_layers: int = 2
    output_units: int = 10

    def __post_init__(self) -> None:
        if self.hidden_layers < 1:
            raise MarketError(f"hidden_layers: must be >= 1, got {self.hidden_layers}")
        if self.output_units < 1:
            raise MarketError(f"output_units: must be >= 1, got {self.output_units}")


def seconds_before_deadline(stamp_time_s: ArrayLike, deadline_s: ArrayLike) -> FloatOrArray:
    """Seconds left before the deadline at the trusted timer's stamp (negative when late), SPEC A.4."""
    left = np.asarray(deadline_s, dtype=float) - np.asarray(stamp_time_s, dtype=float)
    return scalar_if_0d(left)


def is_on_time(seconds_left: ArrayLike) -> bool | np.ndarray:
    """Whether an update is accepted (stamped at or before the deadline), SPEC A.4."""
    accepted = np.asarray(seconds_left, dtype=float) >= 0.0
    return bool(accepted) if accepted.ndim == 0 else accepted


def freshness(seconds_left: ArrayLike) -> FloatOrArray:
    """Freshness F = lg T with T = 10 + seconds left before the deadline (SPEC A.4 resolution of B 7's F).

    An update stamped exactly at the deadline has F = 1; a late one (seconds_left < 0) raises LateUpdateError.
    """
    left = np.asarray(seconds_left, dtype=float)
    if np.any(np.isnan(left)):
        raise MarketError("seconds_left: must be a number, got NaN")
    if np.any(left < 0.0):
        late = left[left < 0.0].flat[0] if left.ndim else float(left)
        raise LateUpdateError(
            f"seconds_left: must be >= 0 (stamped at or before the deadline), got {late}; update rejected"
        )
    value = np.log10(FRESHNESS_OFFSET_S + left)
    return scalar_if_0d(value)


def model_quality(
    freshness_value: ArrayLike,
    mean_cross_entropy: ArrayLike,
    parameters: QualityParameters = QualityParameters(),  # noqa: B008 - frozen, immutable default
) -> FloatOrArray:
    """Quality index (B 7): Q(w) = mu0 * F(w) / (mu1 + H(w)), SPEC A.4.

    H is the mean cross-entropy of the model on the evaluation set (>= 0), F its freshness (>= 1).
    """
    fresh = checked_values("freshness_value", freshness_value, minimum=1.0)
    loss = checked_values("mean_cross_entropy", mean_cross_entropy, minimum=0.0)
    value = parameters.hidden_layers * fresh / (parameters.output_units + loss)
    return scalar_if_0d(value)


def leave_one_out_utility(
    reward: ArrayLike, quality_with_provider: ArrayLike, quality_without_provider: ArrayLike
) -> FloatOrArray:
    """Utility of P_i in round r (B 8), SPEC A.4: U_i(r) = rho_i^r * [Q(w_G^r(S_r)) - Q(w_G^r(S_r - P_i))]."""
    value = np.asarray(reward, dtype=float) * (
        np.asarray(quality_with_provider, dtype=float) - np.asarray(quality_without_provider, dtype=float)
    )
    return scalar_if_0d(value)
