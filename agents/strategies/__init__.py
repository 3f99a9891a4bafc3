"""Strategies of the iterated participation game (ALLC, ALLD, Rand, TFT, Mixed, MMZD, MMZDA); registry."""

from __future__ import annotations

from typing import Any

from flmarket.agents.strategies.base import PreviousOutcome, Strategy
from flmarket.agents.strategies.bne import BNEFollower
from flmarket.agents.strategies.memoryone import AllCooperate, AllDefect, Mixed, Random, TitForTat
from flmarket.agents.strategies.zero_determinant import MMZD, Alliance, MMZDAMember
from flmarket.market.errors import MarketError

REGISTRY: dict[str, type[Strategy]] = {
    kind.name: kind for kind in (AllCooperate, AllDefect, Random, TitForTat, Mixed, MMZD, MMZDAMember, BNEFollower)
}


def make_strategy(name: str, **params: Any) -> Strategy:
    """A new strategy of the registered `name` with the given constructor parameters."""
    if name not in REGISTRY:
        raise MarketError(f"name: unknown strategy {name!r}; allowed: {sorted(REGISTRY)}")
    return REGISTRY[name](**params)


__all__ = [
    "REGISTRY",
    "Alliance",
    "AllCooperate",
    "AllDefect",
    "BNEFollower",
    "MMZD",
    "MMZDAMember",
    "Mixed",
    "PreviousOutcome",
    "Random",
    "Strategy",
    "TitForTat",
    "make_strategy",
]
