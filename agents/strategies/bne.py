"""The BNE follower of SPEC A.7: takes part in every round of a task iff its unit cost is below the cutoff.

The cutoff c*(p) comes from the Bayesian-Nash participation equilibrium (B 19), which needs only the common
prior; the provider compares it with its own (private) expected unit cost. Memory depth 0: the previous outcome
does not matter. The market calls `inform` before each task; until then the follower stays out.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from flmarket.agents.strategies.base import PreviousOutcome, Strategy
from flmarket.market.iterated import point_mass


class BNEFollower(Strategy):
    """y_i = R if C_unit(P_i) <= c*(p) else 0 (B 19, SPEC A.7)."""

    name: ClassVar[str] = "BNE"
    classifier: ClassVar[dict[str, Any]] = {"memory_depth": 0, "stochastic": False, "needs_prior": True}

    def __init__(self, *, initial: int | None = None) -> None:
        super().__init__(initial=initial)
        self.own_unit_cost: float | None = None
        self.cost_cutoff: float | None = None

    def inform(self, own_unit_cost: float, cost_cutoff: float) -> None:
        """The provider's own expected C_unit and the equilibrium cutoff c*(p) for the coming task."""
        self.own_unit_cost = own_unit_cost
        self.cost_cutoff = cost_cutoff

    @property
    def takes_part(self) -> bool:
        """Whether the last information puts the provider at or below the cutoff."""
        return (
            self.own_unit_cost is not None and self.cost_cutoff is not None and self.own_unit_cost <= self.cost_cutoff
        )

    def next_distribution(self, previous: PreviousOutcome | None) -> np.ndarray:
        """A point mass on R (take part in every round) or on 0."""
        return point_mass(self.rounds + 1, self.rounds if self.takes_part else 0)

    def reset(self) -> None:
        """Forget the last information."""
        self.own_unit_cost = None
        self.cost_cutoff = None
