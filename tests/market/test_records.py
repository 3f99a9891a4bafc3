"""market/records.py: a derived value is computed once per record and ignored by equality and replace."""

from __future__ import annotations

import dataclasses

from flmarket.market.records import computed_once


@dataclasses.dataclass(frozen=True)
class Point:
    x: float
    y: float

    def norm_squared(self, calls: list[int]) -> float:
        def compute() -> float:
            calls.append(1)
            return self.x**2 + self.y**2

        return computed_once(self, "_norm_squared", compute)


def test_a_value_is_computed_once_per_record_and_a_changed_copy_computes_its_own() -> None:
    calls: list[int] = []
    point = Point(3.0, 4.0)
    assert point.norm_squared(calls) == 25.0 and point.norm_squared(calls) == 25.0
    assert len(calls) == 1
    moved = dataclasses.replace(point, y=0.0)
    assert moved.norm_squared(calls) == 9.0 and len(calls) == 2
    assert point == Point(3.0, 4.0) and "_norm_squared" not in repr(point)  # not a field
