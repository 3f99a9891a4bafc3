"""DataRequester: a Mesa agent that arrives with a budget, posts one FL task and leaves when it is done."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from flmarket.agents.base import MarketAgent

if TYPE_CHECKING:
    from flmarket.sim.model import MarketModel


class DataRequester(MarketAgent):
    """A data requester with demand and an escrowed budget B_j (SPEC A.1)."""

    def __init__(self, model: MarketModel, ordinal: int, budget: float, rng: np.random.Generator) -> None:
        super().__init__(model)
        self.ordinal = ordinal
        self.budget = budget
        self.generator = rng
        self.task_done: simpy.Event = model.env.event()
        self.process = model.env.process(self._life())

    def _life(self) -> Generator[simpy.Event, Any, None]:
        try:
            self.model.post_task(self)
            yield self.task_done
        except simpy.Interrupt:
            return
        self.remove()

    def remove(self) -> None:
        """Leave: end the process (unless it is the caller), go offline, deregister."""
        if self.process.is_alive and self.model.env.active_process is not self.process:
            self.process.interrupt("removed")
        self.model.overlay.leave(self.unique_id)
        super().remove()
