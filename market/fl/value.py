"""Cached coalition values v(S) of SPEC A.5 for the learning backends, without torch.

A coalition's value is the quality gain of the aggregate of its members' stored updates over the previous
global model; no retraining. The quality Q itself is `market.quality.model_quality` (B 7); `model_quality`
here only adapts it to the backends' (loss, hidden layers, output units, freshness) arguments.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

from flmarket.market import quality
from flmarket.market.errors import MarketError


def model_quality(loss: float, hidden_layers: int, output_units: int, freshness: float = 1.0) -> float:
    """(B 7) SPEC A.4 Q = mu0 * F / (mu1 + H) in the learning backends' argument order, by `market.quality`.

    mu0 = hidden_layers, mu1 = output_units, H = loss, F = freshness; F defaults to 1 (lg 10: an update stamped
    at the deadline, SPEC A.4 resolution). The formula and its other checks are `market.quality.model_quality`.
    """
    if loss < 0:
        raise MarketError(f"loss: must be >= 0, got {loss}")
    return float(quality.model_quality(freshness, loss, quality.QualityParameters(hidden_layers, output_units)))


class CoalitionValue:
    """v(S) over one round's providers (SPEC A.5): v(empty) = 0, other values from `value_of`, cached.

    The cache is keyed by frozenset and keeps at most `max_entries` values (least recently used evicted).
    """

    def __init__(
        self,
        members: Iterable[int],
        value_of: Callable[[frozenset[int]], float],
        max_entries: int = 1 << 16,
    ) -> None:
        if max_entries < 1:
            raise MarketError(f"max_entries: must be >= 1, got {max_entries}")
        self.members = frozenset(int(member) for member in members)
        self._value_of = value_of
        self._cache: OrderedDict[frozenset[int], float] = OrderedDict()
        self._max_entries = max_entries
        self.evaluations = 0

    def __call__(self, coalition: frozenset[int]) -> float:
        if not coalition:
            return 0.0
        cached = self._cache.get(coalition)
        if cached is not None:
            self._cache.move_to_end(coalition)
            return cached
        if not coalition <= self.members:
            strangers = sorted(coalition - self.members)
            raise MarketError(
                f"coalition: providers {strangers} did not upload this round; allowed {sorted(self.members)}"
            )
        value = float(self._value_of(coalition))
        self._store(coalition, value)
        return value

    def _store(self, coalition: frozenset[int], value: float) -> None:
        """Cache one freshly evaluated value (counted in `evaluations`), evicting the least recently used."""
        self.evaluations += 1
        self._cache[coalition] = value
        if len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
