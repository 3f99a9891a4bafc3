"""MarketAgent: the Mesa agent base of flmarket's agents, numbering them without keeping their model alive.

Mesa 3 (3.3.1, the newest release for Python 3.11) numbers agents from a class attribute, `Agent._ids`, a
defaultdict keyed by the model itself. Every model ever built therefore stays reachable from the `Agent` class
with all its agents, processes and log buffers: a process that runs models one after another (`flmarket sweep
--workers 0`, `flmarket.run` in a loop, the live view's page loads, the benchmarks) grows by a whole model each
time (mesa#3179, fixed upstream for Python >= 3.12 by mesa#3180). Here the counters live in a mapping with weak
references to the models, shared by every flmarket agent class, so the numbering is Mesa's own (1, 2, 3, ... per
model, across all agent classes) and a model is freed once nothing else refers to it.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any

import mesa


class AgentNumbers(weakref.WeakKeyDictionary):
    """Per model, the counter that numbers its agents from 1 (Mesa's `_ids`), without a strong reference to it."""

    def __getitem__(self, model: Any) -> itertools.count:
        try:
            return super().__getitem__(model)
        except KeyError:
            counter = itertools.count(1)
            self[model] = counter
            return counter


class MarketAgent(mesa.Agent):
    """A Mesa agent whose model can be garbage-collected once the run is over (see the module docstring)."""

    _ids = AgentNumbers()
