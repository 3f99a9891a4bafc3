"""Tests of market/quality.py: freshness (SPEC A.4), quality (B 7) and leave-one-out utility (B 8)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flmarket.market.errors import MarketError
from flmarket.market.quality import (
    LateUpdateError,
    QualityParameters,
    freshness,
    is_on_time,
    leave_one_out_utility,
    model_quality,
    seconds_before_deadline,
)


def test_freshness_by_hand() -> None:
    # T = 10 + 90 = 100 -> lg 100 = 2; at the deadline T = 10 -> 1.
    assert freshness(90.0) == pytest.approx(2.0)
    assert freshness(0.0) == pytest.approx(1.0)
    np.testing.assert_allclose(freshness(np.array([0.0, 90.0, 990.0])), [1.0, 2.0, 3.0])


def test_late_update_is_rejected_not_scored() -> None:
    with pytest.raises(LateUpdateError, match="seconds_left: must be >= 0.*got -0.5"):
        freshness(-0.5)
    with pytest.raises(LateUpdateError):
        freshness(np.array([3.0, -1.0]))
    assert issubclass(LateUpdateError, ValueError)
    assert is_on_time(0.0) and not is_on_time(-1e-9)


def test_timer_reading_gives_seconds_left() -> None:
    # Stamped at t = 12 s for a deadline at 30 s: 18 s left; stamped at 31 s: 1 s late.
    assert seconds_before_deadline(12.0, 30.0) == pytest.approx(18.0)
    assert seconds_before_deadline(31.0, 30.0) == pytest.approx(-1.0)


@given(st.floats(0.0, 1e6), st.floats(0.0, 1e6))
def test_earlier_updates_are_fresher(left_a: float, left_b: float) -> None:
    if left_a <= left_b:
        assert freshness(left_a) <= freshness(left_b)
    assert freshness(left_a) >= 1.0


def test_quality_by_hand_with_table3_constants() -> None:
    # (B 7): mu0 = 2 hidden layers, mu1 = 10 outputs; F = 2, H = 0.5 -> 2 * 2 / (10 + 0.5) = 0.380952...
    assert model_quality(2.0, 0.5) == pytest.approx(4.0 / 10.5)
    # A 3-hidden-layer, 100-class model with F = 1, H = 0: 3 / 100.
    assert model_quality(1.0, 0.0, QualityParameters(hidden_layers=3, output_units=100)) == pytest.approx(0.03)


def test_quality_falls_with_loss() -> None:
    losses = np.array([0.1, 0.5, 2.0])
    assert np.all(np.diff(model_quality(1.5, losses)) < 0)


def test_quality_rejects_bad_inputs() -> None:
    with pytest.raises(MarketError, match="mean_cross_entropy: must be >= 0.0, got -0.1"):
        model_quality(1.0, -0.1)
    with pytest.raises(MarketError, match="freshness_value: must be >= 1.0"):
        model_quality(0.5, 0.1)
    with pytest.raises(MarketError, match="hidden_layers: must be >= 1, got 0"):
        QualityParameters(hidden_layers=0)


def test_leave_one_out_utility_by_hand() -> None:
    # (B 8): rho = 40, Q(S_r) = 0.40, Q(S_r - i) = 0.35 -> 40 * 0.05 = 2.0; a harmful provider gets U < 0.
    assert leave_one_out_utility(40.0, 0.40, 0.35) == pytest.approx(2.0)
    assert leave_one_out_utility(40.0, 0.35, 0.40) == pytest.approx(-2.0)
    np.testing.assert_allclose(leave_one_out_utility(np.array([1.0, 2.0]), 0.5, np.array([0.25, 0.5])), [0.25, 0.0])
