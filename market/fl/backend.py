"""The one learning interface that agents call, its records, its configuration and the backend factory.

Two backends implement `LearningBackend`: `surrogate` (the analytic precision function of SPEC B.1,
microseconds per call) and `torch` (real federated training, SPEC A.2, D.4, D.5). Agents never know which one
runs. This module imports no torch: the torch backend is imported only when asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from flmarket.market.errors import MarketError
from flmarket.market.fl.privacy import PER_RECORD, expected_perturbed_l1_norm, upload_sensitivity

BACKEND_NAMES = ("surrogate", "torch")
DEFAULT_SENSITIVITY = 1e-4
"""Delta_f of (B 4) per coordinate (SPEC A.2), chosen by measurement: see docs/spec.md A.2 and
sim/scenarios/bgfl-table3-torch.toml."""
BEHAVIOURS = ("honest", "plain", "disguised", "stale")
AGGREGATIONS = ("fedavg", "fedadp", "fedasync")


@dataclass(frozen=True)
class LocalUpdate:
    """One provider's upload in one aggregation round (SPEC A.2, D.5).

    `local_iterations` is the provider's claim in local epochs (a free rider claims work it did not do);
    `l1_norm` is ||u~||_1 of the uploaded, perturbed update (the norm of (B 5), SPEC A.3); `privacy_spent` is
    the epsilon of this upload (0 when no private data was used) and `privacy_spent_total` the provider's
    cumulative epsilon once it is released (basic composition over the released updates, this one included;
    `record_release` counts it); `digest` is the SHA-256 hex of the uploaded (perturbed)
    update bytes; `vector` holds the flat update for the torch backend and is None for the surrogate; it is
    not compared.
    """

    provider_id: int
    data_size: int
    local_iterations: int
    l1_norm: float
    digest: str
    privacy_spent: float
    behaviour: str
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)
    privacy_spent_total: float = 0.0


@dataclass(frozen=True)
class RoundResult:
    """The global model after an aggregation round (round 0: the initial model w0 of a task)."""

    round_index: int
    participants: tuple[int, ...]
    quality: float
    loss: float
    accuracy: float | None
    model_digest: str


@runtime_checkable
class LearningBackend(Protocol):
    """What agents call; both backends implement it (see module docstring)."""

    name: str
    config: BackendConfig

    def register_provider(self, provider_id: int, rng: np.random.Generator) -> int:
        """Give `provider_id` its local data set; returns its size."""
        ...

    def forget_provider(self, provider_id: int) -> None:
        """Drop a departed provider's per-provider state (its data set returns to the pool); uploads it already
        sent stay valid for the rounds they belong to."""
        ...

    def start_task(self, task_id: int) -> RoundResult:
        """Reset the global model to a task's w0 and return its evaluation (round 0)."""
        ...

    def local_update(
        self,
        provider_id: int,
        local_iterations: int,
        privacy_budget: float | None,
        behaviour: str,
        rng: np.random.Generator,
    ) -> LocalUpdate:
        """Train (or free-ride, per `behaviour`) from the current global model; returns the upload."""
        ...

    def record_release(self, update: LocalUpdate) -> None:
        """The provider sent `update` (privacy counts on release: an update given up before it is sent spends
        nothing)."""
        ...

    def coalition_value(self, updates: Sequence[LocalUpdate]) -> Callable[[frozenset[int]], float]:
        """v(S) over this round's provider ids: quality gain of S's aggregate, v(empty) = 0 (SPEC A.5)."""
        ...

    def commit_round(self, updates: Sequence[LocalUpdate]) -> RoundResult:
        """Aggregate the round's updates into the global model and return its evaluation."""
        ...


@dataclass(frozen=True)
class BackendConfig:
    """Everything a backend needs; defaults are Table 3 of the BGFL paper and SPEC B.1.

    Torch fields: dataset (digits, mnist, cifar10), root (a local torchvision root for MNIST/CIFAR-10),
    model (mlp, cnn), partition (iid, dirichlet, quantity) over `providers` shards, aggregation (fedavg,
    fedadp, fedasync). Privacy (SPEC A.2): `sensitivity` is Delta_f of (B 4), a small number, or "per_record"
    for formal DP (per-record gradients clipped to L1 norm `clip`, Delta_f from `train.per_record_sensitivity`).
    `validation_size` is the fixed held-out subset that coalition values (SPEC A.5) are evaluated on (None:
    the whole held-out set); the global model is always evaluated on the whole set.
    Surrogate fields: theta0, theta1 of the precision H(T) = theta0 / (theta1 + T), T the
    total effective local iterations (SPEC B.1 with T = K * sum_j y_j); theta1 defaults to theta0 / ln 10 so
    that the untrained loss is ln 10, that of a uniform 10-class guess; `surrogate_update_l1_norm` is ||u||_1
    of one unperturbed local epoch's update (measured on the torch backend), which the surrogate's expected
    ||u~||_1 starts from.
    """

    name: str = "surrogate"
    seed: int = 0
    # data and model (torch)
    dataset: str = "digits"
    root: str | None = None
    verify_checksums: bool = True
    model: str = "mlp"
    hidden_sizes: tuple[int, ...] = (200, 200)
    providers: int = 10
    partition: str = "iid"
    alpha: float = 0.5
    min_partition_size: int = 10
    # training and privacy (SPEC A.2)
    aggregation: str = "fedavg"
    learning_rate: float = 0.01
    momentum: float = 0.5
    batch_size: int = 64
    sensitivity: float | str = DEFAULT_SENSITIVITY
    clip: float = 1.0
    noise_location: float = 0.0
    validation_size: int | None = 256
    freshness: float = 1.0
    # free riders (SPEC D.5): disguised noise sigma_t = disguised_sigma * (t + 1)^(-disguised_decay)
    disguised_sigma: float = 1e-3
    disguised_decay: float = 1.0
    # asynchronous baseline (SPEC D.4)
    fedasync_mixing: float = 0.6
    fedasync_staleness_exponent: float = 0.5
    torch_threads: int | None = 1
    # surrogate (SPEC B.1)
    theta0: float = 9.82
    theta1: float = 9.82 / float(np.log(10.0))
    hidden_layers: int = 2
    output_units: int = 10
    surrogate_data_size: int = 143
    surrogate_parameter_count: int = 55_210
    surrogate_update_l1_norm: float = 13.6  # measured: flmarket calibrate (digits MLP, lr 0.05, one epoch)
    weight_by_data: bool = False

    def __post_init__(self) -> None:
        choices = {
            "name": (self.name, BACKEND_NAMES),
            "aggregation": (self.aggregation, AGGREGATIONS),
        }
        for field_name, (value, allowed) in choices.items():
            if value not in allowed:
                raise MarketError(f"{field_name}: must be one of {', '.join(allowed)}, got {value!r}")
        positives = {
            "clip": self.clip,
            "theta0": self.theta0,
            "theta1": self.theta1,
            "providers": self.providers,
            "surrogate_data_size": self.surrogate_data_size,
            "surrogate_parameter_count": self.surrogate_parameter_count,
        }
        for field_name, value in positives.items():
            if value <= 0:
                raise MarketError(f"{field_name}: must be > 0, got {value}")
        if isinstance(self.sensitivity, str):
            if self.sensitivity != PER_RECORD:
                raise MarketError(f"sensitivity: must be > 0 or {PER_RECORD!r}, got {self.sensitivity!r}")
        elif not self.sensitivity > 0:
            raise MarketError(f"sensitivity: must be > 0 or {PER_RECORD!r}, got {self.sensitivity}")
        if self.validation_size is not None and self.validation_size < 1:
            raise MarketError(f"validation_size: must be >= 1 or None, got {self.validation_size}")
        if self.surrogate_update_l1_norm < 0:
            raise MarketError(f"surrogate_update_l1_norm: must be >= 0, got {self.surrogate_update_l1_norm}")
        if self.disguised_sigma < 0:
            raise MarketError(f"disguised_sigma: must be >= 0, got {self.disguised_sigma}")
        if not self.freshness >= 1:
            raise MarketError(f"freshness: must be >= 1 (F = lg T with T >= 10, SPEC A.4), got {self.freshness}")


def check_behaviour(behaviour: str) -> None:
    """Reject a behaviour outside honest / plain / disguised / stale (SPEC D.5)."""
    if behaviour not in BEHAVIOURS:
        raise MarketError(f"behaviour: must be one of {', '.join(BEHAVIOURS)}, got {behaviour!r}")


def check_privacy_budget(privacy_budget: float | None) -> None:
    """A privacy budget is None (no differential privacy) or > 0."""
    if privacy_budget is not None and not privacy_budget > 0:
        raise MarketError(f"privacy_budget: must be > 0 or None, got {privacy_budget}")


def check_upload_request(
    task_id: int | None, local_iterations: int, privacy_budget: float | None, behaviour: str
) -> None:
    """The checks both backends make before `local_update`: a task started, and valid iterations, budget, behaviour."""
    if task_id is None:
        raise MarketError("task: call start_task before local_update")
    check_behaviour(behaviour)
    check_privacy_budget(privacy_budget)
    if local_iterations < 0:
        raise MarketError(f"local_iterations: must be >= 0, got {local_iterations}")


def disguised_sigma(config: BackendConfig, round_index: int) -> float:
    """SPEC D.5 disguised free rider's decaying noise: sigma_t = sigma * (t + 1)^(-decay)."""
    return config.disguised_sigma * (round_index + 1.0) ** (-config.disguised_decay)


def expected_upload_l1_norm(
    config: BackendConfig, epochs: int, privacy_budget: float | np.ndarray, data_size: int
) -> float | np.ndarray:
    """E||u~||_1 of an honest upload of `epochs` local epochs on `data_size` records (SPEC A.2, A.3), elementwise
    over privacy budgets: ||u||_1 = epochs * `surrogate_update_l1_norm` plus Laplace noise of scale Delta_f / eps
    on `surrogate_parameter_count` coordinates (`privacy.expected_perturbed_l1_norm`)."""
    if isinstance(privacy_budget, float | int):
        if not privacy_budget > 0:
            raise MarketError(f"privacy_budget: must be > 0, got {privacy_budget}")
        budgets: float | np.ndarray = float(privacy_budget)
    else:
        budgets = np.asarray(privacy_budget, dtype=np.float64)
        if np.any(~(budgets > 0)):
            raise MarketError(f"privacy_budget: must be > 0, got {privacy_budget}")
    sensitivity = upload_sensitivity(
        config.sensitivity,
        config.learning_rate,
        config.clip,
        epochs,
        data_size,
        config.batch_size,
        config.momentum,
    )
    norms = expected_perturbed_l1_norm(
        epochs * config.surrogate_update_l1_norm, config.surrogate_parameter_count, sensitivity / budgets
    )
    return norms


def make_backend(config: BackendConfig) -> LearningBackend:
    """The backend named by `config.name` (surrogate or torch)."""
    if config.name == "surrogate":
        from flmarket.market.fl.surrogate import SurrogateBackend

        return SurrogateBackend(config)
    from flmarket.market.fl.torch_backend import TorchBackend

    return TorchBackend(config)
