"""Strategies of the iterated participation game (ALLC, ALLD, Rand, TFT, Mixed, MMZD, MMZDA); registry.

`register_strategy` adds a strategy of your own (a `Strategy` subclass): scenarios, grids, evolution and the
analysis then name it like a built-in, in the process that registered it (and in dask workers that import the
registering module). The built-ins cannot be replaced.
"""

from __future__ import annotations

import re
from typing import Any

from flmarket.agents.strategies.base import PreviousOutcome, Strategy
from flmarket.agents.strategies.bne import BNEFollower
from flmarket.agents.strategies.memoryone import AllCooperate, AllDefect, Mixed, Random, TitForTat
from flmarket.agents.strategies.zero_determinant import MMZD, Alliance, MMZDAMember
from flmarket.market.errors import MarketError

REGISTRY: dict[str, type[Strategy]] = {
    kind.name: kind for kind in (AllCooperate, AllDefect, Random, TitForTat, Mixed, MMZD, MMZDAMember, BNEFollower)
}
BUILT_IN = frozenset(REGISTRY)
SCENARIO_NAMES = {MMZDAMember.name: "MMZDA"}
"""A scenario names an alliance member by its alliance ("MMZDA"); every other strategy by its own `name`."""
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")


def register_strategy(strategy: type[Strategy]) -> type[Strategy]:
    """Make `strategy` (a `Strategy` subclass with its own `name`) available by that name to scenarios,
    `make_strategy` and evolution; returns the class, so it works as a decorator. It must build with no arguments
    (`strategy()`), as the market builds each provider's strategy. Registering the same class again is allowed;
    another class under a taken name, or a built-in's name, is an error."""
    if not (isinstance(strategy, type) and issubclass(strategy, Strategy)) or strategy is Strategy:
        raise MarketError(f"strategy: must be a subclass of flmarket.agents.strategies.Strategy, got {strategy!r}")
    name = strategy.__dict__.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise MarketError(
            f"{strategy.__name__}.name: must be the class's own name for scenarios, a letter then up to 39 letters, "
            f"digits, '_' or '-', got {name!r}"
        )
    taken = REGISTRY.get(name)
    if name in BUILT_IN or name in SCENARIO_NAMES.values() or (taken is not None and taken is not strategy):
        raise MarketError(f"{strategy.__name__}.name: {name!r} is taken by {(taken or MMZDAMember).__name__}")
    REGISTRY[name] = strategy
    return strategy


def strategy_names() -> tuple[str, ...]:
    """The names a scenario may give a strategy: the built-ins', then those registered, in registration order."""
    return tuple(SCENARIO_NAMES.get(name, name) for name in REGISTRY)


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
    "register_strategy",
    "strategy_names",
]
