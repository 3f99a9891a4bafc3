"""Data providers' costs in BGFL (SPEC A.3): computation (B 3), privacy (B 5) and unit round cost (B 6).

Every function works on scalars and, elementwise with numpy broadcasting, on arrays (one entry per provider).
Inputs are checked by `market.validation.checked_array` (still importable from here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from flmarket.market.errors import MarketError
from flmarket.market.validation import FloatOrArray, checked_array, checked_values, scalar_if_0d


@dataclass(frozen=True)
class CostParameters:
    """One provider's cost type (SPEC A.1, A.3), defaulting to the BGFL paper's Table 3.

    cost_weight is alpha_c (share of energy vs. memory), energy_coefficient is zeta (effective capacitance),
    cpu_frequency is f_i, cycles_per_batch is c_i, batch_size is s_i, memory_use_ratio is beta_i in [0, 1]
    and memory is theta_i.
    """

    cost_weight: float = 0.5
    energy_coefficient: float = 2.0
    cycles_per_batch: float = 5.0
    cpu_frequency: float = 3.0
    batch_size: float = 64.0
    memory_use_ratio: float = 0.3
    memory: float = 16.0

    def __post_init__(self) -> None:
        checked_array("cost_weight", self.cost_weight, minimum=0.0, maximum=1.0)
        checked_array("energy_coefficient", self.energy_coefficient, minimum=0.0, strict_minimum=True)
        checked_array("cycles_per_batch", self.cycles_per_batch, minimum=0.0, strict_minimum=True)
        checked_array("cpu_frequency", self.cpu_frequency, minimum=0.0, strict_minimum=True)
        checked_array("batch_size", self.batch_size, minimum=1.0)
        checked_array("memory_use_ratio", self.memory_use_ratio, minimum=0.0, maximum=1.0)
        checked_array("memory", self.memory, minimum=0.0, strict_minimum=True)

    def computation_cost(self) -> float:
        """C_com(P_i) of this provider type (B 3)."""
        return float(
            computation_cost(
                self.cpu_frequency,
                self.cycles_per_batch,
                self.batch_size,
                self.memory_use_ratio,
                self.memory,
                cost_weight=self.cost_weight,
                energy_coefficient=self.energy_coefficient,
            )
        )


def computation_cost(
    cpu_frequency: ArrayLike,
    cycles_per_batch: ArrayLike,
    batch_size: ArrayLike,
    memory_use_ratio: ArrayLike,
    memory: ArrayLike,
    *,
    cost_weight: ArrayLike = 0.5,
    energy_coefficient: ArrayLike = 2.0,
) -> FloatOrArray:
    """Computation cost of one local iteration (B 3), SPEC A.3:

    C_com(P_i) = alpha_c * zeta * c_i * s_i * f_i^2 + (1 - alpha_c) * beta_i * theta_i.
    Table 3 (f=3, c=5, s=64, beta=0.3, theta=16, alpha_c=0.5, zeta=2) gives 2880 + 2.4 = 2882.4.
    """
    frequency = checked_array("cpu_frequency", cpu_frequency, minimum=0.0, strict_minimum=True)
    cycles = checked_array("cycles_per_batch", cycles_per_batch, minimum=0.0, strict_minimum=True)
    batch = checked_array("batch_size", batch_size, minimum=1.0)
    ratio = checked_array("memory_use_ratio", memory_use_ratio, minimum=0.0, maximum=1.0)
    device_memory = checked_array("memory", memory, minimum=0.0, strict_minimum=True)
    weight = checked_array("cost_weight", cost_weight, minimum=0.0, maximum=1.0)
    zeta = checked_array("energy_coefficient", energy_coefficient, minimum=0.0, strict_minimum=True)
    energy = weight * zeta * cycles * batch * frequency**2
    return scalar_if_0d(energy + (1.0 - weight) * ratio * device_memory)


def privacy_cost(privacy_budget: ArrayLike, update_l1_norm: ArrayLike) -> FloatOrArray:
    """Privacy cost of an uploaded perturbed update (B 5): C_pr(g~) = eps_i * ln(1 + ||g~||_1), SPEC A.3."""
    budget = checked_values("privacy_budget", privacy_budget, minimum=0.0, strict_minimum=True)
    norm = checked_values("update_l1_norm", update_l1_norm, minimum=0.0)
    if isinstance(budget, float) and isinstance(norm, float):  # one provider's claim: no numpy on the hot path
        return budget * math.log1p(norm)
    return scalar_if_0d(budget * np.log1p(norm))


def privacy_cost_of_update(privacy_budget: float, perturbed_update: ArrayLike) -> float:
    """(B 5) for one provider from the perturbed update itself (any shape; its L1 norm over all entries)."""
    update = np.asarray(perturbed_update, dtype=float)
    if not np.all(np.isfinite(update)):
        raise MarketError("perturbed_update: must be finite, got NaN or inf entries")
    return float(privacy_cost(privacy_budget, np.abs(update).sum()))


def unit_cost(computation_cost_value: ArrayLike, privacy_cost_value: ArrayLike) -> FloatOrArray:
    """Unit cost of taking part in one aggregation round (B 6): C_unit^r = ln C_com(P_i) + C_pr(g~), SPEC A.3.

    Table 3's C_com = 2882.4 contributes ln C_com = 7.966379.
    """
    computation = checked_values("computation_cost", computation_cost_value, minimum=0.0, strict_minimum=True)
    privacy = checked_values("privacy_cost", privacy_cost_value, minimum=0.0)
    if isinstance(computation, float) and isinstance(privacy, float):
        return math.log(computation) + privacy
    return scalar_if_0d(np.log(computation) + privacy)
