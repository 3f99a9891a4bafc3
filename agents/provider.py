"""DataProvider: a Mesa agent with a private type and a strategy, whose life is a SimPy process.

A provider's type (SPEC A.1, B.1) is private: it is held in a frozen record that only the provider itself and
the market's accounting (nature, which pays utilities) read; other agents see only what the provider sends.
`remove()` also interrupts the provider's SimPy process, so nothing of a departed provider runs on.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import mesa
import numpy as np
import simpy

from agents.strategies.base import PreviousOutcome, Strategy

if TYPE_CHECKING:
    from sim.model import MarketModel


@dataclass(frozen=True)
class ProviderType:
    """The private type of a data provider, drawn from the scenario's prior (SPEC A.1, B.1)."""

    unit_revenue: float
    participation_cost: float
    cpu_frequency: float
    cycles_per_batch: float
    batch_size: float
    memory: float
    memory_use_ratio: float
    privacy_budget: float
    data_size: float


class DataProvider(mesa.Agent):
    """A strategic data provider: chooses its participation per task, earns utility, may leave."""

    def __init__(
        self,
        model: MarketModel,
        ordinal: int,
        private_type: ProviderType,
        strategy: Strategy,
        rng: np.random.Generator,
        lifetime_s: float,
    ) -> None:
        super().__init__(model)
        self.ordinal = ordinal
        self._private_type = private_type
        self.strategy = strategy
        self.generator = rng
        self.previous: PreviousOutcome | None = None
        self.tasks_played = 0
        self.total_utility = 0.0
        self.last_utility = 0.0
        self.online = True
        self.process = model.env.process(self._life(lifetime_s))

    @property
    def strategy_name(self) -> str:
        """The name of the strategy the provider plays now."""
        return self.strategy.name

    def private_type_for(self, reader: Any) -> ProviderType:
        """The private type, to the provider itself or the market's accounting only (incomplete information)."""
        if reader is not self and reader is not self.model:
            raise PermissionError(f"provider {self.unique_id}: private type is not readable by {reader!r}")
        return self._private_type

    def choose_action(self, game: Any, player_index: int) -> int:
        """Pick y_i for the coming task from the previous outcome with the provider's strategy (SPEC C)."""
        self.strategy.prepare(game, player_index)
        return int(self.strategy.choose(self.previous, self.generator))

    def observe(self, outcome: PreviousOutcome, utility: float) -> None:
        """Remember the task's outcome and payoff (memory one)."""
        self.previous = outcome
        self.tasks_played += 1
        self.last_utility = utility
        self.total_utility += utility

    def _life(self, lifetime_s: float) -> Generator[simpy.Event, Any, None]:
        try:
            if math.isinf(lifetime_s):
                yield self.model.env.event()  # idle until removed
            else:
                yield self.model.env.timeout(lifetime_s)
                self.remove("lifetime")
        except simpy.Interrupt:
            return

    def remove(self, reason: str = "removed") -> None:  # type: ignore[override]
        """Leave the market: end the SimPy process, go offline on the overlay, log, deregister from Mesa."""
        if not self.online:
            return
        self.online = False
        if self.process.is_alive and self.model.env.active_process is not self.process:
            self.process.interrupt(reason)
        self.model.provider_left(self, reason)
        super().remove()
