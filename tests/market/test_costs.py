"""Tests of market/costs.py: provider costs (B 3, B 5, B 6) against SPEC A.3's Table 3 numbers and by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flmarket.market.costs import (
    CostParameters,
    computation_cost,
    privacy_cost,
    privacy_cost_of_update,
    unit_cost,
)
from flmarket.market.errors import MarketError
from flmarket.market.validation import checked_array


def test_table3_computation_cost_is_2882_point_4() -> None:
    # (B 3): 0.5 * 2 * 5 * 64 * 3^2 = 2880 (energy) + (1 - 0.5) * 0.3 * 16 = 2.4 (memory).
    assert CostParameters().computation_cost() == pytest.approx(2882.4, abs=1e-9)
    assert math.log(CostParameters().computation_cost()) == pytest.approx(7.966379, abs=5e-7)


def test_computation_cost_by_hand_with_other_weights() -> None:
    # alpha_c = 0.25, zeta = 1, c = 2, s = 10, f = 2: 0.25 * 1 * 2 * 10 * 4 = 20; 0.75 * 0.5 * 8 = 3.
    value = computation_cost(2.0, 2.0, 10.0, 0.5, 8.0, cost_weight=0.25, energy_coefficient=1.0)
    assert value == pytest.approx(23.0)


def test_computation_cost_is_vectorised_over_providers() -> None:
    frequency = np.array([1.0, 2.0, 3.0])
    vector = computation_cost(frequency, 5.0, 64.0, 0.3, 16.0)
    assert isinstance(vector, np.ndarray)
    # Energy term scales with f^2: 320 * f^2 + 2.4.
    np.testing.assert_allclose(vector, 320.0 * frequency**2 + 2.4)
    assert isinstance(computation_cost(3.0, 5.0, 64.0, 0.3, 16.0), float)


def test_privacy_cost_by_hand() -> None:
    # (B 5): eps * ln(1 + ||g||_1); ||g||_1 = e - 1 gives ln(e) = 1, so C_pr = eps.
    assert privacy_cost(3.0, math.e - 1.0) == pytest.approx(3.0)
    # ||g||_1 = e^2 - 1 with eps = 2: 2 * 2 = 4.
    assert privacy_cost(2.0, math.e**2 - 1.0) == pytest.approx(4.0)
    # A zero update costs nothing.
    assert privacy_cost(5.0, 0.0) == 0.0


def test_privacy_cost_of_update_uses_the_l1_norm() -> None:
    # |0.5| + |-1.5| + |0| = 2 -> ln 3.
    assert privacy_cost_of_update(1.0, np.array([[0.5, -1.5], [0.0, 0.0]])) == pytest.approx(math.log(3.0))


def test_unit_cost_by_hand() -> None:
    # (B 6): ln(2882.4) + C_pr; with C_pr = 3: 7.966379 + 3 = 10.966379.
    assert unit_cost(2882.4, 3.0) == pytest.approx(10.966379, abs=5e-7)
    np.testing.assert_allclose(unit_cost(np.array([1.0, math.e]), np.array([0.0, 1.0])), [0.0, 2.0])


@given(
    budget=st.floats(0.01, 100.0),
    norm_small=st.floats(0.0, 1e6),
    extra=st.floats(0.0, 1e6),
)
def test_privacy_cost_grows_with_budget_and_norm(budget: float, norm_small: float, extra: float) -> None:
    assert privacy_cost(budget, norm_small + extra) >= privacy_cost(budget, norm_small)
    assert privacy_cost(2 * budget, norm_small) == pytest.approx(2 * privacy_cost(budget, norm_small))


@pytest.mark.parametrize(
    ("field", "kwargs", "fragment"),
    [
        ("cost_weight", {"cost_weight": 1.5}, "cost_weight: must be in [0.0, 1.0], got 1.5"),
        ("cpu_frequency", {"cpu_frequency": 0.0}, "cpu_frequency: must be > 0.0, got 0.0"),
        ("memory_use_ratio", {"memory_use_ratio": -0.1}, "memory_use_ratio: must be in [0.0, 1.0], got -0.1"),
        ("batch_size", {"batch_size": 0.0}, "batch_size: must be >= 1.0, got 0.0"),
    ],
)
def test_cost_parameters_name_the_bad_field(field: str, kwargs: dict[str, float], fragment: str) -> None:
    with pytest.raises(MarketError, match=field) as error:
        CostParameters(**kwargs)
    assert fragment in str(error.value)


def test_bad_array_entries_are_reported_with_their_index() -> None:
    with pytest.raises(MarketError, match=r"privacy_budget: must be > 0.0, got -1.0 \(at index \(1,\)\)"):
        privacy_cost(np.array([1.0, -1.0]), np.array([1.0, 1.0]))
    with pytest.raises(MarketError, match="computation_cost: must be > 0.0"):
        unit_cost(0.0, 1.0)
    with pytest.raises(MarketError, match="NaN|nan"):
        checked_array("x", float("nan"))
    with pytest.raises(ValueError, match="perturbed_update"):
        privacy_cost_of_update(1.0, np.array([np.inf]))
