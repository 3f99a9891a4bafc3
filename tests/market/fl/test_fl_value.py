"""Quality Q of SPEC A.4 and the cached coalition value of SPEC A.5."""

from __future__ import annotations

import pytest

from flmarket.market.errors import MarketError
from flmarket.market.fl.value import CoalitionValue, model_quality


def test_quality_by_hand_with_table_3_numbers() -> None:
    # mu0 = 2 hidden layers, mu1 = 10 outputs, H = 0.1616 (Setting 1 loss), F = 1
    assert model_quality(0.1616, 2, 10) == pytest.approx(2 / 10.1616)
    assert model_quality(0.1616, 2, 10, freshness=1.5) == pytest.approx(3 / 10.1616)
    assert model_quality(0.5, 2, 10) < model_quality(0.1, 2, 10)  # lower loss, higher quality
    with pytest.raises(MarketError, match="loss: must be >= 0, got -0.1"):
        model_quality(-0.1, 2, 10)


def test_coalition_value_is_cached_and_empty_is_zero() -> None:
    calls: list[frozenset[int]] = []

    def value_of(coalition: frozenset[int]) -> float:
        calls.append(coalition)
        return float(sum(coalition))

    value = CoalitionValue([1, 2, 3], value_of, max_entries=2)
    assert value(frozenset()) == 0.0
    assert value(frozenset({1, 2})) == 3.0
    assert value(frozenset({2, 1})) == 3.0
    assert calls == [frozenset({1, 2})] and value.evaluations == 1
    value(frozenset({3}))
    value(frozenset({1}))  # evicts {1, 2}, the least recently used
    value(frozenset({1, 2}))
    assert value.evaluations == 4
    with pytest.raises(MarketError, match=r"coalition: providers \[9\] did not upload"):
        value(frozenset({1, 9}))
