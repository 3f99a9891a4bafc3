"""Scenarios: one validated schema, loaded from TOML, with errors that name the field, the value and the rule.

A scenario is a TOML file with the sections `run`, `network`, `providers`, `requesters`, `committee`,
`learning`, `mechanism`, `evolution` and `faults`. Unknown keys are errors, so typos are caught. Bundled scenarios
ship inside the package (`sim/scenarios/*.toml`) and are referred to by name.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

STRATEGY_NAMES = ("ALLC", "ALLD", "Rand", "TFT", "Mixed", "MMZD", "MMZDA", "BNE")


class ScenarioError(ValueError):
    """A scenario that cannot be loaded: the message is one line naming the field, the value and the rule."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Distribution(_Section):
    """A prior distribution of one private-type field; a bare number in TOML means a constant."""

    dist: Literal["constant", "uniform", "normal", "lognormal", "exponential"] = "constant"
    value: float | None = None
    low: float | None = None
    high: float | None = None
    mean: float | None = None
    std: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_number(cls, data: Any) -> Any:
        if isinstance(data, int | float) and not isinstance(data, bool):
            return {"dist": "constant", "value": float(data)}
        return data

    @model_validator(mode="after")
    def _parameters(self) -> Distribution:
        required = {
            "constant": ("value",),
            "uniform": ("low", "high"),
            "normal": ("mean", "std"),
            "lognormal": ("mean", "std"),
            "exponential": ("mean",),
        }[self.dist]
        given = {name for name in ("value", "low", "high", "mean", "std") if getattr(self, name) is not None}
        for name in required:
            if name not in given:
                raise ValueError(f"{name}: required for dist = '{self.dist}'")
        for name in sorted(given - set(required)):
            raise ValueError(f"{name}: not a parameter of dist = '{self.dist}' (allowed: {', '.join(required)})")
        for name in given:
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name}: must be finite, got {getattr(self, name)}")
        if self.dist == "uniform" and self.high < self.low:  # type: ignore[operator]
            raise ValueError(f"high: must be >= low ({self.low}), got {self.high}")
        if self.dist in ("normal", "lognormal") and self.std < 0:  # type: ignore[operator]
            raise ValueError(f"std: must be >= 0, got {self.std}")
        if self.dist == "exponential" and self.mean <= 0:  # type: ignore[operator]
            raise ValueError(f"mean: must be > 0, got {self.mean}")
        return self

    def lower_bound(self) -> tuple[str, float]:
        """The smallest value the distribution can produce, and the parameter that sets it."""
        if self.dist == "constant":
            return "value", float(self.value)  # type: ignore[arg-type]
        if self.dist == "uniform":
            return "low", float(self.low)  # type: ignore[arg-type]
        if self.dist in ("lognormal", "exponential"):
            return "mean", 0.0
        return "mean", -math.inf

    def upper_bound(self) -> tuple[str, float]:
        """The largest value the distribution can produce, and the parameter that sets it."""
        if self.dist == "constant":
            return "value", float(self.value)  # type: ignore[arg-type]
        if self.dist == "uniform":
            return "high", float(self.high)  # type: ignore[arg-type]
        return "mean", math.inf

    def sample(self, rng: np.random.Generator, size: int | None = None) -> Any:
        """Draw from the distribution with the given generator."""
        if self.dist == "constant":
            return np.full(size, self.value) if size is not None else float(self.value)  # type: ignore[arg-type]
        if self.dist == "uniform":
            return rng.uniform(self.low, self.high, size)
        if self.dist == "normal":
            return rng.normal(self.mean, self.std, size)
        if self.dist == "lognormal":
            return rng.lognormal(self.mean, self.std, size)
        return rng.exponential(self.mean, size)

    def expected(self) -> float:
        """The distribution's mean."""
        if self.dist == "constant":
            return float(self.value)  # type: ignore[arg-type]
        if self.dist == "uniform":
            return (float(self.low) + float(self.high)) / 2  # type: ignore[arg-type]
        if self.dist == "lognormal":
            return math.exp(float(self.mean) + float(self.std) ** 2 / 2)  # type: ignore[arg-type]
        return float(self.mean)  # type: ignore[arg-type]


def _require_range(
    distribution: Distribution,
    *,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
) -> Distribution:
    """Check that every value the distribution can draw satisfies the field's range."""
    name, low = distribution.lower_bound()
    if above is not None and not low > above:
        raise ValueError(f"{name}: must be > {above:g} (every draw must be), got {low:g}")
    if at_least is not None and not low >= at_least:
        raise ValueError(f"{name}: must be >= {at_least:g} (every draw must be), got {low:g}")
    if at_most is not None:
        name, high = distribution.upper_bound()
        if not high <= at_most:
            raise ValueError(f"{name}: must be <= {at_most:g} (every draw must be), got {high:g}")
    return distribution


class RunSection(_Section):
    """How long to simulate, with which seed, and where the run directory goes."""

    name: str = "scenario"
    description: str = ""
    seed: int = Field(default=0, ge=0)
    horizon_s: float | None = Field(default=None, gt=0)
    tasks: int | None = Field(default=None, ge=1)
    output_dir: str = "runs"
    flush_every: int = Field(default=100_000, ge=1)
    sample_interval_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _horizon(self) -> RunSection:
        if self.horizon_s is None and self.tasks is None:
            raise ValueError("horizon_s: give horizon_s (simulated seconds) or tasks (number of FL tasks), or both")
        return self


class NetworkSection(_Section):
    """The overlay: topology, per-edge latency and bandwidth (sim/network.py)."""

    topology: Literal["random_regular", "erdos_renyi", "barabasi_albert", "watts_strogatz", "complete"] = (
        "random_regular"
    )
    degree: int = Field(default=4, ge=1)
    edge_probability: float = Field(default=0.1, gt=0, le=1)
    rewiring_probability: float = Field(default=0.1, ge=0, le=1)
    attachments: int = Field(default=2, ge=1)
    latency_s: Distribution = Distribution(dist="uniform", low=0.01, high=0.1)
    bandwidth_bytes_per_s: float = Field(default=12.5e6, gt=0)
    log_messages: bool = True

    @field_validator("latency_s")
    @classmethod
    def _latency(cls, value: Distribution) -> Distribution:
        return _require_range(value, at_least=0.0)


class ParticipationCost(_Section):
    """kappa_i of SPEC B.1: inside the B.2 window (`mode = "window"`) or drawn directly."""

    mode: Literal["window", "distribution"] = "window"
    window_position: Distribution = Distribution(dist="uniform", low=0.05, high=0.95)
    distribution: Distribution | None = None

    @model_validator(mode="after")
    def _mode(self) -> ParticipationCost:
        if self.mode == "distribution" and self.distribution is None:
            raise ValueError("distribution: required when mode = 'distribution'")
        if self.mode == "window":
            _require_range(self.window_position, above=0.0)
            _require_range(self.window_position, at_most=1.0)
        return self


class ProvidersSection(_Section):
    """Data providers: population, churn, strategy mix and the priors of their private types (SPEC A.1, B.1)."""

    count: int = Field(default=10, ge=1)
    arrival_rate_per_s: float = Field(default=0.0, ge=0)
    mean_lifetime_s: float = Field(default=math.inf, gt=0)
    strategy_mix: dict[str, float] = Field(
        default_factory=lambda: {"ALLC": 0.25, "ALLD": 0.25, "Rand": 0.25, "TFT": 0.25}
    )
    strategy_counts: dict[str, int] | None = None
    unit_revenue: Distribution = Distribution(dist="uniform", low=0.5, high=1.5)
    participation_cost: ParticipationCost = ParticipationCost()
    cpu_frequency: Distribution = Distribution(value=3.0)
    cycles_per_batch: Distribution = Distribution(value=5.0)
    batch_size: Distribution = Distribution(value=64.0)
    memory: Distribution = Distribution(value=16.0)
    memory_use_ratio: Distribution = Distribution(value=0.3)
    privacy_budget: Distribution = Distribution(value=4.0)
    data_size: Distribution = Distribution(value=180.0)
    initial_stake: Distribution = Distribution(value=10.0)

    @field_validator("strategy_mix")
    @classmethod
    def _mix(cls, mix: dict[str, float]) -> dict[str, float]:
        if not mix:
            raise ValueError("must name at least one strategy")
        for name, share in mix.items():
            if name not in STRATEGY_NAMES:
                raise ValueError(f"{name}: unknown strategy (allowed: {', '.join(STRATEGY_NAMES)})")
            if not share >= 0 or not math.isfinite(share):
                raise ValueError(f"{name}: share must be >= 0, got {share}")
        if sum(mix.values()) <= 0:
            raise ValueError(f"shares must sum to > 0, got {sum(mix.values())}")
        return mix

    @field_validator(
        "unit_revenue", "cpu_frequency", "cycles_per_batch", "batch_size", "memory", "privacy_budget", "data_size"
    )
    @classmethod
    def _positive(cls, value: Distribution) -> Distribution:
        return _require_range(value, above=0.0)

    @field_validator("initial_stake")
    @classmethod
    def _stake(cls, value: Distribution) -> Distribution:
        return _require_range(value, at_least=0.0)

    @field_validator("memory_use_ratio")
    @classmethod
    def _ratio(cls, value: Distribution) -> Distribution:
        _require_range(value, at_least=0.0)
        return _require_range(value, at_most=1.0)


class RequestersSection(_Section):
    """Data requesters: Poisson arrivals, each posting one FL task with an escrowed budget (SPEC A.1)."""

    arrival_rate_per_s: float = Field(default=0.01, gt=0)
    budget: Distribution = Distribution(value=1000.0)

    @field_validator("budget")
    @classmethod
    def _budget(cls, value: Distribution) -> Distribution:
        return _require_range(value, above=0.0)


class CommitteeSection(_Section):
    """The consensus committee: size T, DPoS candidates, fee ratio sigma and per-node round cost (SPEC A.8)."""

    size: int = Field(default=7, ge=1)
    candidates: int = Field(default=10, ge=1)
    fee_ratio: float = Field(default=0.2, ge=0, le=1)
    node_cost: float = Field(default=1.4, gt=0)
    candidate_stake: Distribution = Distribution(dist="uniform", low=5.0, high=15.0)
    approvals_per_voter: int = Field(default=3, ge=1)
    quorum_rule: Literal["byzantine", "two_f_plus_one", "paper"] = "byzantine"
    view_change_timeout_s: float = Field(default=2.0, gt=0)
    verification: Literal["every_replica", "primary_only", "unsigned"] = "every_replica"
    poet_mean_wait_s: float = Field(default=0.5, gt=0)
    poet_minimum_wait_s: float = Field(default=0.05, ge=0)
    ledger_blocks_in_memory: int = Field(default=256, ge=1)

    @model_validator(mode="after")
    def _enough_candidates(self) -> CommitteeSection:
        if self.candidates < self.size:
            raise ValueError(f"candidates: must be >= size ({self.size}), got {self.candidates}")
        if self.approvals_per_voter > self.candidates:
            raise ValueError(
                f"approvals_per_voter: must be <= candidates ({self.candidates}), got {self.approvals_per_voter}"
            )
        _require_range(self.candidate_stake, at_least=0.0)
        return self


class SurrogateSection(_Section):
    """The surrogate backend's learning curve H(T) = theta0 / (theta1 + T), T the honest local iterations so far
    (SPEC B.1); `flmarket calibrate` writes this section from real training."""

    theta0: float = Field(default=9.82, gt=0)
    theta1: float = Field(default=9.82 / math.log(10.0), gt=0)
    local_iterations: int = Field(default=5, ge=1)


class LearningSection(_Section):
    """The learning backend and the public-goods precision model (SPEC B.1)."""

    backend: Literal["surrogate", "torch"] = "surrogate"
    rounds_per_task: int = Field(default=3, ge=1)
    local_iterations: int = Field(default=5, ge=1)
    round_duration_s: float = Field(default=10.0, gt=0)
    theta0: float = Field(default=9.82, gt=0)
    theta1: float | Literal["auto"] = "auto"
    require_dilemma: bool = True
    seconds_per_cycle: float = Field(default=0.005, gt=0)
    dataset: Literal["digits", "mnist", "cifar10"] = "digits"
    data_root: str | None = None
    model: Literal["mlp", "cnn"] = "mlp"
    hidden_sizes: tuple[int, ...] = (200, 200)
    partition: Literal["iid", "dirichlet", "quantity"] = "iid"
    dirichlet_alpha: float = Field(default=0.5, gt=0)
    shards: int = Field(default=10, ge=1)
    aggregation: Literal["fedavg", "fedadp", "fedasync"] = "fedavg"
    learning_rate: float = Field(default=0.01, gt=0)
    momentum: float = Field(default=0.5, ge=0, lt=1)
    batch_size: int = Field(default=64, ge=1)
    clip: float = Field(default=1.0, gt=0)
    surrogate: SurrogateSection = SurrogateSection()

    @field_validator("theta1")
    @classmethod
    def _theta1(cls, value: float | str) -> float | str:
        if value != "auto" and not value > 0:  # type: ignore[operator]
            raise ValueError(f"must be > 0 or 'auto', got {value}")
        return value


class MechanismSection(_Section):
    """BGFL mechanism parameters (SPEC A.3 - A.7); Table 3 defaults."""

    shapley_exact_max: int = Field(default=12, ge=1, le=20)
    shapley_target_relative_error: float = Field(default=0.01, gt=0)
    shapley_max_evaluations: int = Field(default=20_000, ge=100)
    initial_local_iterations: int = Field(default=5, ge=0)
    minimum_local_iterations: int = Field(default=1, ge=0)
    cost_weight: float = Field(default=0.5, ge=0, le=1)
    energy_coefficient: float = Field(default=2.0, gt=0)
    hidden_layers: int = Field(default=2, ge=1)
    output_units: int = Field(default=10, ge=1)
    reward_weight: float = Field(default=1.0, ge=0)


class EvolutionSection(_Section):
    """Strategy evolution by pairwise comparison (Fermi rule) and mutation (SPEC C)."""

    enabled: bool = False
    selection_intensity: float = Field(default=1.0, gt=0)
    mutation_rate: float = Field(default=0.0, ge=0, le=1)
    alliance_rule: Literal["all", "neighbourhood"] = "all"
    strategy_set: tuple[str, ...] | None = None

    @field_validator("strategy_set")
    @classmethod
    def _strategies(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            if not value:
                raise ValueError("must name at least one strategy")
            for name in value:
                if name not in STRATEGY_NAMES:
                    raise ValueError(f"{name}: unknown strategy (allowed: {', '.join(STRATEGY_NAMES)})")
        return value


class FaultsSection(_Section):
    """Injected faults: Byzantine committee members and free-rider behaviours."""

    byzantine_committee: int = Field(default=0, ge=0)
    byzantine_behaviour: Literal["silent", "silent_primary", "equivocating", "wrong_digest"] = "silent"
    free_rider_kind: Literal["none", "plain", "disguised", "stale"] = "none"


class Scenario(_Section):
    """A whole scenario: every section validated, unknown keys rejected."""

    run: RunSection
    network: NetworkSection = NetworkSection()
    providers: ProvidersSection = ProvidersSection()
    requesters: RequestersSection = RequestersSection()
    committee: CommitteeSection = CommitteeSection()
    learning: LearningSection = LearningSection()
    mechanism: MechanismSection = MechanismSection()
    evolution: EvolutionSection = EvolutionSection()
    faults: FaultsSection = FaultsSection()

    @model_validator(mode="after")
    def _network_fits(self) -> Scenario:
        nodes = self.providers.count
        if self.network.topology == "random_regular":
            degree = self.network.degree
            if degree >= nodes:
                raise ValueError(f"network.degree: must be < providers.count ({nodes}), got {degree}")
            if (degree * nodes) % 2:
                raise ValueError(
                    f"network.degree: degree * providers.count must be even for a random regular graph, "
                    f"got {degree} * {nodes}"
                )
        if self.network.topology == "barabasi_albert" and self.network.attachments >= nodes:
            raise ValueError(
                f"network.attachments: must be < providers.count ({nodes}), got {self.network.attachments}"
            )
        counts = self.providers.strategy_counts
        if counts is not None and sum(counts.values()) != nodes:
            raise ValueError(
                f"providers.strategy_counts: must add up to providers.count ({nodes}), got {sum(counts.values())}"
            )
        if self.faults.byzantine_committee >= self.committee.size:
            raise ValueError(
                f"faults.byzantine_committee: must be < committee.size ({self.committee.size}), "
                f"got {self.faults.byzantine_committee}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready dictionary (infinities as strings) for manifests."""
        return _json_ready(self.model_dump(mode="python"))


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


_ERROR_PREFIX = re.compile(r"^(Value error|Assertion failed), ")
_NESTED_FIELD = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*): (.*)$")


def _format_error(error: Mapping[str, Any]) -> str:
    """Turn one pydantic error into `path.to.field: rule, got value`."""
    path = [str(part) for part in error["loc"] if not str(part).startswith(("function-", "constrained-"))]
    message = _ERROR_PREFIX.sub("", error["msg"])
    nested = _NESTED_FIELD.match(message)
    while nested and error["type"] == "value_error":
        path.append(nested.group(1))
        message = nested.group(2)
        nested = _NESTED_FIELD.match(message)
    if path and path[0] == "__root__":
        path = path[1:]
    field_path = ".".join(path) or "scenario"
    if error["type"] == "extra_forbidden":
        return f"{field_path}: unknown key (check the spelling; see `flmarket validate --help`)"
    if error["type"] == "missing":
        return f"{field_path}: required, missing"
    if error["type"] == "value_error":
        return f"{field_path}: {message}"
    message = message[0].lower() + message[1:] if message else message
    return f"{field_path}: {message}, got {error.get('input')!r}"


def parse_scenario(data: Mapping[str, Any]) -> Scenario:
    """Validate a scenario dictionary; raise ScenarioError with one line per problem (first line first)."""
    try:
        return Scenario.model_validate(dict(data))
    except ValidationError as error:
        lines = [_format_error(item) for item in error.errors()]
        raise ScenarioError("\n".join(dict.fromkeys(lines))) from None


def bundled_scenarios() -> dict[str, Path]:
    """Names and paths of the scenarios shipped inside the package."""
    folder = resources.files("flmarket.sim") / "scenarios"
    found = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".toml"):
            found[entry.name.removesuffix(".toml")] = Path(str(entry))
    return dict(sorted(found.items()))


def resolve_scenario_path(reference: str) -> Path:
    """A path to an existing file, or the name of a bundled scenario."""
    path = Path(reference)
    if path.is_file():
        return path
    bundled = bundled_scenarios()
    if reference in bundled:
        return bundled[reference]
    if path.suffix == ".toml" or "/" in reference:
        raise ScenarioError(f"scenario: file not found, got {reference!r}")
    raise ScenarioError(
        f"scenario: not a file and not a bundled scenario, got {reference!r} (bundled: {', '.join(bundled) or 'none'})"
    )


def load_scenario(reference: str | Path, overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Load and validate a scenario file (or bundled name), applying dotted-path overrides first."""
    path = resolve_scenario_path(str(reference))
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{path}: malformed TOML: {error}") from None
    except OSError as error:
        raise ScenarioError(f"{path}: cannot read: {error.strerror}") from None
    return parse_scenario(apply_overrides(data, overrides or {}))


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of `data` with each `section.key` (dotted path) set to its value."""
    merged = _deep_copy(data)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        target = merged
        for part in parts[:-1]:
            existing = target.get(part)
            if existing is None:
                existing = target[part] = {}
            if not isinstance(existing, dict):
                raise ScenarioError(f"{dotted}: cannot set inside {part!r}, which is not a table")
            target = existing
        target[parts[-1]] = value
    return merged


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _deep_copy(value) if isinstance(value, Mapping) else value for key, value in data.items()}
