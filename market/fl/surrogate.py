"""The surrogate learning backend: no model, the loss follows the precision function of SPEC B.1.

After total effective participation T (local iterations of honest updates, summed over providers and rounds),
the loss is H(T) = theta0 / (theta1 + T) (SPEC B.1 with T = K * sum_j y_j) and the quality is Q of SPEC A.4.
A coalition's value depends only on its members' total effective contribution, so a stratified Shapley
estimator can be used at scale; every call is O(1) or O(|S|) in pure Python.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np

from flmarket.market.errors import MarketError
from flmarket.market.fl.backend import (
    BackendConfig,
    LocalUpdate,
    RoundResult,
    check_upload_request,
    disguised_sigma,
    expected_upload_l1_norm,
)
from flmarket.market.quality import QualityParameters, model_quality

_EXPECTED_ABS_GAUSSIAN = math.sqrt(2.0 / math.pi)


def surrogate_loss(theta0: float, theta1: float, effective_participation: float) -> float:
    """SPEC B.1 precision eps = theta0 / (theta1 + T), T = K * sum_j y_j the effective local iterations."""
    if effective_participation < 0:
        raise MarketError(f"effective_participation: must be >= 0, got {effective_participation}")
    return theta0 / (theta1 + effective_participation)


class SurrogateCoalitionValue:
    """v(S) = Q(H(T + sum_{i in S} c_i)) - Q(H(T)) (SPEC A.5 on the surrogate), v(empty) = 0.

    Additive in the contributions c_i inside the loss, so `value_of_total` gives v for any total and a
    stratified estimator needs only `contributions`. Not cached: a value costs one O(|S|) sum, the same as
    hashing the frozenset would.
    """

    def __init__(self, backend: SurrogateBackend, contributions: Mapping[int, float]) -> None:
        self.contributions = MappingProxyType(dict(contributions))
        self._backend = backend
        self._base_participation = backend.effective_participation
        self._base_quality = backend.quality_at(self._base_participation)

    def value_of_total(self, contribution: float) -> float:
        """v of any coalition whose contributions sum to `contribution`."""
        return self._backend.quality_at(self._base_participation + contribution) - self._base_quality

    def values_of_totals(self, contributions: np.ndarray) -> np.ndarray:
        """`value_of_total` for an array of coalition totals at once (for the stratified Shapley estimator)."""
        config = self._backend.config
        totals = self._base_participation + np.asarray(contributions, dtype=float)
        if np.any(totals < 0):
            raise MarketError(f"effective_participation: must be >= 0, got {float(np.min(totals))}")
        loss = config.theta0 / (config.theta1 + totals)
        quality = model_quality(config.freshness, loss, self._backend.quality_parameters)
        return np.asarray(quality, dtype=float) - self._base_quality

    def __call__(self, coalition: frozenset[int]) -> float:
        if not coalition:
            return 0.0
        try:
            total = math.fsum(self.contributions[member] for member in coalition)
        except KeyError as missing:
            raise MarketError(f"coalition: provider {missing.args[0]} did not upload this round") from None
        return self.value_of_total(total)


class SurrogateBackend:
    """LearningBackend on the precision function of SPEC B.1 (see module docstring)."""

    name = "surrogate"

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.quality_parameters = QualityParameters(config.hidden_layers, config.output_units)
        self._data_sizes: dict[int, int] = {}
        self._last_honest: dict[int, LocalUpdate] = {}
        self._privacy_totals: dict[int, float] = {}
        self.task_id: int | None = None
        self.round_index = 0
        self.effective_participation = 0.0

    def quality_at(self, effective_participation: float) -> float:
        """(B 7) Q = mu0 * F / (mu1 + H(T)) at effective participation T."""
        loss = surrogate_loss(self.config.theta0, self.config.theta1, effective_participation)
        return float(model_quality(self.config.freshness, loss, self.quality_parameters))

    def register_provider(self, provider_id: int, rng: np.random.Generator) -> int:
        """Every provider holds `surrogate_data_size` samples (no draw: `rng` is left untouched)."""
        if provider_id in self._data_sizes:
            raise MarketError(f"provider_id: {provider_id} is already registered")
        self._data_sizes[provider_id] = self.config.surrogate_data_size
        return self.config.surrogate_data_size

    def forget_provider(self, provider_id: int) -> None:
        """Drop a departed provider's size, last honest update and privacy total (a long run with churn would
        otherwise keep every provider that ever joined)."""
        if self._data_sizes.pop(provider_id, None) is None:
            raise MarketError(f"provider_id: {provider_id} is not registered")
        self._last_honest.pop(provider_id, None)
        self._privacy_totals.pop(provider_id, None)

    def _result(self, participants: tuple[int, ...]) -> RoundResult:
        loss = surrogate_loss(self.config.theta0, self.config.theta1, self.effective_participation)
        state = f"surrogate|{self.task_id}|{self.round_index}|{self.effective_participation!r}"
        return RoundResult(
            round_index=self.round_index,
            participants=participants,
            quality=self.quality_at(self.effective_participation),
            loss=loss,
            accuracy=None,
            model_digest=hashlib.sha256(state.encode()).hexdigest(),
        )

    def start_task(self, task_id: int) -> RoundResult:
        """Reset T to 0 (the untrained model) for task `task_id`."""
        self.task_id = task_id
        self.round_index = 0
        self.effective_participation = 0.0
        self._last_honest.clear()
        return self._result(())

    def contribution(self, update: LocalUpdate) -> float:
        """Effective local iterations an update adds to T: honest only (weighted by data share if set)."""
        if update.behaviour != "honest":
            return 0.0
        if not self.config.weight_by_data:
            return float(update.local_iterations)
        # every provider holds `surrogate_data_size` samples, so that is the mean size, with or without departures
        return update.local_iterations * update.data_size / self.config.surrogate_data_size

    def local_update(
        self,
        provider_id: int,
        local_iterations: int,
        privacy_budget: float | None,
        behaviour: str,
        rng: np.random.Generator,
    ) -> LocalUpdate:
        """An update record; its L1 norm is the real backend's expected ||u~||_1 (SPEC A.2, A.3).

        An honest update of k local epochs has ||u||_1 = k * `surrogate_update_l1_norm` and, with a privacy
        budget, Laplace noise of scale Delta_f / eps per coordinate: E||u~||_1 from
        `privacy.expected_perturbed_l1_norm`. `rng` is not drawn from: the surrogate is deterministic.
        """
        check_upload_request(self.task_id, local_iterations, privacy_budget, behaviour)
        data_size = self._data_sizes.get(provider_id)
        if data_size is None:
            raise MarketError(f"provider_id: {provider_id} is not registered")
        config = self.config
        if behaviour == "stale" and provider_id in self._last_honest:
            old = self._last_honest[provider_id]
            return LocalUpdate(
                provider_id,
                data_size,
                local_iterations,
                old.l1_norm,
                old.digest,
                0.0,
                "stale",
                privacy_spent_total=self.privacy_spent_total(provider_id),
            )
        privacy_spent = 0.0
        if behaviour == "honest":
            l1_norm = local_iterations * config.surrogate_update_l1_norm
            if privacy_budget is not None:
                l1_norm = float(expected_upload_l1_norm(config, local_iterations, privacy_budget, data_size))
                privacy_spent = privacy_budget
        elif behaviour == "disguised":
            sigma = disguised_sigma(config, self.round_index)
            l1_norm = config.surrogate_parameter_count * sigma * _EXPECTED_ABS_GAUSSIAN
        else:
            l1_norm = 0.0
        content = f"{self.task_id}|{self.round_index}|{provider_id}|{local_iterations}|{behaviour}|{privacy_budget}"
        digest = hashlib.sha256(content.encode()).hexdigest()
        update = LocalUpdate(
            provider_id,
            data_size,
            local_iterations,
            l1_norm,
            digest,
            privacy_spent,
            behaviour,
            privacy_spent_total=self.privacy_spent_total(provider_id) + privacy_spent,
        )
        if behaviour == "honest":
            self._last_honest[provider_id] = update
        return update

    def record_release(self, update: LocalUpdate) -> None:
        """The provider sent `update`: its epsilon counts from now on (basic composition over releases, SPEC D.5)."""
        if update.provider_id not in self._data_sizes:
            raise MarketError(f"provider_id: {update.provider_id} is not registered")
        if update.privacy_spent > 0:
            total = self._privacy_totals.get(update.provider_id, 0.0)
            self._privacy_totals[update.provider_id] = total + update.privacy_spent

    def privacy_spent_total(self, provider_id: int) -> float:
        """Cumulative epsilon of `provider_id`'s released updates under basic composition (SPEC D.5)."""
        return self._privacy_totals.get(provider_id, 0.0)

    def _contributions(self, updates: Sequence[LocalUpdate]) -> dict[int, float]:
        contributions: dict[int, float] = {}
        for update in updates:
            if update.provider_id in contributions:
                raise MarketError(f"updates: provider {update.provider_id} uploaded twice in one round")
            contributions[update.provider_id] = self.contribution(update)
        return contributions

    def coalition_value(self, updates: Sequence[LocalUpdate]) -> SurrogateCoalitionValue:
        """v(S) for the round's updates (see SurrogateCoalitionValue)."""
        return SurrogateCoalitionValue(self, self._contributions(updates))

    def commit_round(self, updates: Sequence[LocalUpdate]) -> RoundResult:
        """T += the round's honest contributions; returns the new loss and quality."""
        if self.task_id is None:
            raise MarketError("task: call start_task before commit_round")
        contributions = self._contributions(updates)
        self.effective_participation += math.fsum(contributions.values())
        self.round_index += 1
        return self._result(tuple(update.provider_id for update in updates))
