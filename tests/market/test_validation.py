"""The shared input checks of market/validation.py and the error classes re-exported by their old modules."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import flmarket.market.errors
from flmarket.market.errors import MarketError
from flmarket.market.validation import checked_array, checked_values, scalar_if_0d


def test_checked_array_names_the_field_the_value_and_the_range() -> None:
    with pytest.raises(MarketError, match=r"memory_use_ratio: must be in \[0.0, 1.0\], got 1.5"):
        checked_array("memory_use_ratio", 1.5, minimum=0.0, maximum=1.0)
    with pytest.raises(MarketError, match=r"clip: must be <= 2.0, got 3.0 \(at index \(0, 1\)\)"):
        checked_array("clip", [[1.0, 3.0]], maximum=2.0)
    with pytest.raises(MarketError, match="budget: must be > 0.0, got 0.0"):
        checked_array("budget", 0.0, minimum=0.0, strict_minimum=True)
    assert checked_array("budget", 0.0, minimum=0.0).shape == ()


def test_checked_values_keeps_plain_numbers_as_floats() -> None:
    value = checked_values("loss", 3, minimum=0.0)
    assert type(value) is float and value == 3.0
    array = checked_values("loss", [0.5, 2.0], minimum=0.0)
    assert isinstance(array, np.ndarray) and array.tolist() == [0.5, 2.0]


@given(
    value=st.floats(allow_nan=True, allow_infinity=True),
    minimum=st.none() | st.floats(-10.0, 10.0),
    maximum=st.none() | st.floats(10.0, 20.0),
    strict=st.booleans(),
)
def test_checked_values_accepts_and_rejects_exactly_what_checked_array_does(
    value: float, minimum: float | None, maximum: float | None, strict: bool
) -> None:
    bounds = {"minimum": minimum, "maximum": maximum, "strict_minimum": strict}
    try:
        expected = float(checked_array("x", value, **bounds))
    except MarketError as array_error:
        with pytest.raises(MarketError) as error:
            checked_values("x", value, **bounds)
        assert str(error.value) == str(array_error)
    else:
        assert checked_values("x", value, **bounds) == expected


def test_scalar_if_0d_returns_scalars_for_scalars_only() -> None:
    assert type(scalar_if_0d(np.asarray(2.5))) is float
    assert type(scalar_if_0d(2.5)) is float
    vector = np.array([1.0, math.inf])
    assert scalar_if_0d(vector) is vector


@pytest.mark.parametrize(
    ("module_name", "error_name"),
    [
        ("flmarket.market.quality", "LateUpdateError"),
        ("flmarket.market.zero_determinant", "InfeasibleTargetError"),
        ("flmarket.market.ledger", "LedgerError"),
        ("flmarket.market.consensus.poet", "TimerError"),
        ("flmarket.market.consensus.dpos", "ElectionError"),
        ("flmarket.market.consensus.pbft", "PbftError"),
        ("flmarket.market.consensus.ppbg", "ProposalError"),
        ("flmarket.market.fl.data", "DatasetNotFoundError"),
        ("flmarket.market.fl.data", "PartitionError"),
    ],
)
def test_errors_live_in_market_errors_and_stay_importable_from_their_modules(module_name: str, error_name: str) -> None:
    error = getattr(flmarket.market.errors, error_name)
    assert issubclass(error, MarketError) and issubclass(error, ValueError)
    assert getattr(importlib.import_module(module_name), error_name) is error


def test_checked_array_stays_importable_from_costs() -> None:
    from flmarket.market.costs import checked_array as from_costs

    assert from_costs is checked_array
