"""The array conventions shared by the `market/` math: checked float inputs in, a scalar or an array out.

`checked_array` turns an input into a float array or raises a MarketError naming the field, the bad value and
what is allowed; `checked_values` does the same but keeps a plain Python number a float (no numpy overhead on
per-call hot paths); `scalar_if_0d` hands a scalar back to a caller who passed scalars.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from flmarket.market.errors import MarketError

FloatOrArray = float | np.ndarray


def checked_array(
    name: str,
    value: ArrayLike,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_minimum: bool = False,
) -> np.ndarray:
    """`value` as a float array, or a MarketError naming `name`, the first bad value and the allowed range.

    NaN is always rejected. `strict_minimum` makes the lower bound exclusive (e.g. a privacy budget > 0).
    """
    array = np.asarray(value, dtype=float)
    bad = np.isnan(array)
    allowed = "a number"
    if minimum is not None:
        bad |= (array <= minimum) if strict_minimum else (array < minimum)
        allowed = f"> {minimum}" if strict_minimum else f">= {minimum}"
    if maximum is not None:
        bad |= array > maximum
        allowed = f"in [{minimum}, {maximum}]" if minimum is not None else f"<= {maximum}"
    if np.any(bad):
        first = array[bad].flat[0] if array.ndim else float(array)
        where = f" (at index {tuple(int(i) for i in np.argwhere(bad)[0])})" if array.ndim else ""
        raise MarketError(f"{name}: must be {allowed}, got {first}{where}")
    return array


def checked_values(
    name: str,
    value: ArrayLike,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_minimum: bool = False,
) -> FloatOrArray:
    """`checked_array`, except that a valid plain Python number comes back as a float, checked without numpy.

    For functions evaluated once per call in a hot loop (e.g. Q once per coalition); the error is the same.
    """
    if isinstance(value, int | float):
        number = float(value)
        too_low = minimum is not None and (number <= minimum if strict_minimum else number < minimum)
        too_high = maximum is not None and number > maximum
        if not (too_low or too_high or math.isnan(number)):
            return number
    return checked_array(name, value, minimum=minimum, maximum=maximum, strict_minimum=strict_minimum)


def scalar_if_0d(value: FloatOrArray) -> FloatOrArray:
    """A number or 0-d array as a Python float; any other array unchanged (scalar in, scalar out)."""
    if isinstance(value, np.ndarray) and value.ndim > 0:
        return value
    return float(value)
