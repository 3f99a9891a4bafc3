"""Scenarios: one validated schema, loaded from TOML, with errors that name the field, the value and the rule.

A scenario is a TOML file with the sections `run`, `network`, `providers`, `requesters`, `committee`,
`learning`, `mechanism`, `evolution`, `zero_determinant`, `faults` and `limits`. Unknown keys are errors, so typos
are caught. Bundled scenarios ship inside the package (`sim/scenarios/*.toml`) and are referred to by name.

Hostile input is refused here, before anything runs: integers are strict (no floats, booleans or strings), every
number is finite and has a finite range (magnitudes within [1e-9, 1e9] unless the field says otherwise, so that
the model's products stay finite), `run.name` is a safe directory name, and the resources a run would use
(providers, tasks, samples, overlay edges) are checked against `[limits]`, whose messages say how to raise them.
"""

from __future__ import annotations

import datetime
import difflib
import math
import re
import tomllib
import unicodedata
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from flmarket.agents.strategies import strategy_names
from flmarket.arguments import SEED_LIMIT
from flmarket.market.consensus.pbft import QUORUM_RULES, quorum_problem
from flmarket.market.consensus.poet import PoetSettings
from flmarket.market.costs import computation_cost
from flmarket.market.zero_determinant import DEFAULT_PHI_SCALE

STRATEGY_NAMES = strategy_names()
"""The built-in strategies; `agents.strategies.register_strategy` adds others, which `strategy_names()` lists."""

MAX_MAGNITUDE = 1e9
"""The largest value of a rate, a duration, a price or a private type. With at most 1e7 providers and 1e3 rounds
a welfare sum is below 1e9 (unit revenue) x 1e12 (precision gain theta0 / theta1) x 1e7 x 1e3 = 1e31, and a
computation cost (SPEC A.2: energy x frequency^2 x cycles x batch x memory terms) below 1e9^5 = 1e45: every product
the model forms stays far below the float maximum of 1.8e308 (`unit_revenue = 1e308` made welfare inf)."""
MIN_POSITIVE = 1e-9
"""The smallest strictly positive value of a field that is divided by (privacy budget, frequency, rates)."""
CNN_HIDDEN_LAYERS = 3  # the torch CNN's hidden layers (market/fl/models.py records the same; a test checks)
TORCH_CLASSES = 10  # digits, MNIST and CIFAR-10
MAX_SEED = SEED_LIMIT - 1
"""Seeds are signed 64-bit integers in the event log and the manifest."""
MAX_NAME_BYTES = 200
"""`run.name` in UTF-8; the run directory `<name>-s<seed>-<timestamp>[-<n>]` must stay within 255 bytes."""
MAX_ERROR_LINES = 10
"""At most this many problems are printed, then `... and N more`."""
SHARE_TOLERANCE = 1e-9
"""How far from 1 the shares of `providers.strategy_mix` may sum."""
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class ScenarioError(ValueError):
    """A scenario that cannot be loaded: the message is one line naming the field, the value and the rule."""


class _Section(BaseModel):
    """Strict sections: integers refuse floats, booleans and strings; floats refuse NaN and infinities."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        validate_default=True,
        strict=True,
        allow_inf_nan=False,
        ser_json_inf_nan="strings",  # inf (providers.mean_lifetime_s) as "Infinity" in JSON, not null
    )


def _positive(default: float, **limits: float) -> Any:
    """A strictly positive, finite float field within [MIN_POSITIVE, MAX_MAGNITUDE] unless `limits` say otherwise."""
    return Field(default=default, **{"ge": MIN_POSITIVE, "le": MAX_MAGNITUDE, **limits})


def _count(default: int, low: int = 1, high: int = 1_000_000) -> Any:
    """A strict integer field within [low, high]."""
    return Field(default=default, ge=low, le=high)


def shown(value: Any, width: int = 60) -> str:
    """`repr(value)`, cut to about `width` characters (error messages stay one short line)."""
    text = repr(value)
    return text if len(text) <= width else f"{text[: width - 5]}...{text[-2:]}"


def safe_directory_name(value: str) -> str:
    """Refuse a name that is not one plain directory name: empty, `.`/`..`, path separators, NUL, control or
    bidirectional-override characters, a leading dot, or more than MAX_NAME_BYTES bytes of UTF-8. The message
    (a ValueError) states the rule and the value."""
    if not value.strip():
        raise ValueError(f"must be a non-empty directory name, got {value!r}")
    if value.startswith("."):
        raise ValueError(f"must not start with '.' (it names a directory inside --out), got {shown(value)}")
    if "/" in value or "\\" in value:
        raise ValueError(f"must be a plain name without '/' or '\\' (it names a directory), got {shown(value)}")
    for position, character in enumerate(value):
        if unicodedata.category(character) in ("Cc", "Cs") or character in _BIDI_CONTROLS:
            raise ValueError(
                f"must not contain control or bidirectional-override characters, got {character!r} at position "
                f"{position}"
            )
    size = len(value.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise ValueError(f"must be at most {MAX_NAME_BYTES} bytes of UTF-8, got {size} bytes")
    return value


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
            if abs(getattr(self, name)) > MAX_MAGNITUDE:
                raise ValueError(f"{name}: must be within +-{MAX_MAGNITUDE:g}, got {getattr(self, name):g}")
        if self.dist == "uniform" and self.high < self.low:  # type: ignore[operator]
            raise ValueError(f"high: must be >= low ({self.low}), got {self.high}")
        if self.dist in ("normal", "lognormal") and self.std < 0:  # type: ignore[operator]
            raise ValueError(f"std: must be >= 0, got {self.std}")
        if self.dist == "exponential" and self.mean <= 0:  # type: ignore[operator]
            raise ValueError(f"mean: must be > 0, got {self.mean}")
        return self

    def lower_bound(self) -> tuple[str, float]:
        """The smallest value the distribution can produce (for the unbounded ones, the practical minimum: ten
        standard deviations below the mean, of its logarithm for a log-normal, as `upper_bound` goes above it), and
        the parameter that sets it. An exponential's is 0: its density is highest there."""
        if self.dist == "constant":
            return "value", float(self.value)  # type: ignore[arg-type]
        if self.dist == "uniform":
            return "low", float(self.low)  # type: ignore[arg-type]
        if self.dist == "lognormal":
            return "mean", math.exp(float(self.mean) - 10 * float(self.std))  # type: ignore[arg-type]
        if self.dist == "exponential":
            return "mean", 0.0
        return "mean", float(self.mean) - 10 * float(self.std)  # type: ignore[arg-type]

    def upper_bound(self) -> tuple[str, float]:
        """The largest value the distribution can produce (for the unbounded ones, the practical maximum: ten
        standard deviations above the mean, or fifty means of an exponential), and the parameter that sets it."""
        if self.dist == "constant":
            return "value", float(self.value)  # type: ignore[arg-type]
        if self.dist == "uniform":
            return "high", float(self.high)  # type: ignore[arg-type]
        if self.dist == "normal":
            return "mean", float(self.mean) + 10 * float(self.std)  # type: ignore[arg-type]
        if self.dist == "lognormal":
            exponent = float(self.mean) + 10 * float(self.std)  # type: ignore[arg-type]
            return "mean", math.exp(exponent) if exponent < 700 else math.inf
        return "mean", 50 * float(self.mean)  # type: ignore[arg-type]

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
    at_most: float | None = MAX_MAGNITUDE,
) -> Distribution:
    """Check that every value the distribution can draw satisfies the field's range (at most MAX_MAGNITUDE unless
    `at_most` says otherwise; a strictly positive field's draws are at least MIN_POSITIVE)."""
    name, low = distribution.lower_bound()
    too_low = (above is not None and not low > above) or (at_least is not None and not low >= at_least)
    if distribution.dist == "exponential" and too_low:
        bound = f"> {above:g}" if above is not None else f">= {at_least:g}"
        raise ValueError(
            f"dist: 'exponential' draws values down to 0, and every draw of this field must be {bound}; use "
            "'lognormal' (mean and std of the logarithm), 'uniform' or 'constant'"
        )
    if above == 0.0 and distribution.dist == "lognormal" and not low >= MIN_POSITIVE:
        raise ValueError(
            f"std: exp(mean - 10 std) = {low:g}, the smallest practical draw, must be at least {MIN_POSITIVE:g} "
            f"(every draw of this field must be > 0); got mean = {distribution.mean:g}, std = {distribution.std:g}"
        )
    if distribution.dist == "normal" and too_low:
        bound = f"> {above:g}" if above is not None else f">= {at_least:g}"
        raise ValueError(
            f"std: mean - 10 std = {low:g}, the smallest practical draw, must be {bound} (every draw of this field "
            f"must be); got mean = {distribution.mean:g}, std = {distribution.std:g}"
        )
    if above is not None and not low > above:
        raise ValueError(f"{name}: must be > {above:g} (every draw must be), got {low:g}")
    if above == 0.0 and not low >= MIN_POSITIVE:
        raise ValueError(f"{name}: must be > 0 and at least {MIN_POSITIVE:g} (every draw must be), got {low:g}")
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
    description: str = Field(default="", max_length=10_000)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    horizon_s: float | None = _positive(None, le=1e12)
    tasks: int | None = _count(None, high=10**9)
    output_dir: str = "runs"
    flush_every: int = _count(100_000, high=10_000_000)
    sample_interval_s: float = _positive(60.0)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return safe_directory_name(value)

    @field_validator("output_dir")
    @classmethod
    def _output_dir(cls, value: str) -> str:
        if not value or any(unicodedata.category(character) in ("Cc", "Cs") for character in value):
            raise ValueError(f"must be a non-empty path without control characters, got {shown(value)}")
        return value

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
    degree: int = _count(4, high=100_000)
    edge_probability: float = Field(default=0.1, gt=0, le=1)
    rewiring_probability: float = Field(default=0.1, ge=0, le=1)
    attachments: int = _count(2, high=100_000)
    latency_s: Distribution = Distribution(dist="uniform", low=0.01, high=0.1)
    bandwidth_bytes_per_s: float = _positive(12.5e6, ge=1.0, le=1e12)
    log_messages: bool = True

    @field_validator("latency_s")
    @classmethod
    def _latency(cls, value: Distribution) -> Distribution:
        return _require_range(value, at_least=0.0, at_most=1e6)


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
            try:
                _require_range(self.window_position, above=0.0)
                _require_range(self.window_position, at_most=1.0)
            except ValueError as error:
                raise ValueError(f"window_position.{error}") from None
        if self.distribution is not None:
            try:
                _require_range(self.distribution, at_least=0.0)
            except ValueError as error:
                raise ValueError(f"distribution.{error}") from None
        return self


class ProvidersSection(_Section):
    """Data providers: population, churn, strategy mix and the priors of their private types (SPEC A.1, B.1).

    `composition` sets how the initial population's strategies follow `strategy_mix`: "draw" (each provider
    draws its strategy from the mix; realised shares vary by seed) or "exact" (counts by largest-remainder
    rounding of count x share, assigned in a seeded random order). `strategy_counts` fixes the counts directly.
    Providers who join later always draw from the mix."""

    count: int = _count(10, high=10_000_000)
    arrival_rate_per_s: float = Field(default=0.0, ge=0, le=1e6)
    mean_lifetime_s: float = Field(default=math.inf, ge=MIN_POSITIVE, allow_inf_nan=True)
    strategy_mix: dict[str, float] = Field(
        default_factory=lambda: {"ALLC": 0.25, "ALLD": 0.25, "Rand": 0.25, "TFT": 0.25}
    )
    strategy_counts: dict[str, int] | None = None
    composition: Literal["draw", "exact"] = "draw"
    unit_revenue: Distribution = Distribution(dist="uniform", low=0.5, high=1.5)
    participation_cost: ParticipationCost = ParticipationCost()
    cpu_frequency: Distribution = Distribution(value=3.0)
    cycles_per_batch: Distribution = Distribution(value=5.0)
    batch_size: Distribution = Distribution(value=64.0)
    memory: Distribution = Distribution(value=16.0)
    memory_use_ratio: Distribution = Distribution(value=0.3)
    privacy_budget: Distribution = Distribution(value=4.0)
    initial_stake: Distribution = Distribution(value=10.0)

    @field_validator("mean_lifetime_s", mode="before")
    @classmethod
    def _lifetime_in_text(cls, value: Any) -> Any:
        """inf as a manifest writes it ("inf", `Scenario.to_dict`) or pydantic's JSON ("Infinity"), so a run's
        scenario loads back; TOML's own inf is a float already."""
        return math.inf if isinstance(value, str) and value in ("inf", "Infinity") else value

    @field_validator("mean_lifetime_s")
    @classmethod
    def _lifetime(cls, value: float) -> float:
        if math.isnan(value) or (math.isfinite(value) and value > 1e12):
            raise ValueError(f"must be a number of seconds <= 1e12, or inf (no churn), got {value}")
        return value

    @field_validator("strategy_mix")
    @classmethod
    def _mix(cls, mix: dict[str, float]) -> dict[str, float]:
        if not mix:
            raise ValueError("must name at least one strategy")
        for name, share in mix.items():
            if name not in strategy_names():
                raise ValueError(f"{name}: unknown strategy (allowed: {', '.join(strategy_names())})")
            if not 0 <= share <= 1:
                raise ValueError(f"{name}: share must be within [0, 1], got {share}")
        total = math.fsum(mix.values())
        if abs(total - 1.0) > SHARE_TOLERANCE:
            raise ValueError(
                f"shares must sum to 1 (within {SHARE_TOLERANCE:g}), sums to {total:.12g}: give the whole mix "
                f"(a mix is replaced whole, never merged)"
            )
        return mix

    @field_validator("strategy_counts")
    @classmethod
    def _counts(cls, counts: dict[str, int] | None) -> dict[str, int] | None:
        if counts is None:
            return None
        if not counts:
            raise ValueError("must name at least one strategy")
        for name, count in counts.items():
            if name not in strategy_names():
                raise ValueError(f"{name}: unknown strategy (allowed: {', '.join(strategy_names())})")
            if count < 0:
                raise ValueError(f"{name}: count must be >= 0, got {count}")
        return counts

    @field_validator("unit_revenue", "cpu_frequency", "cycles_per_batch", "batch_size", "memory")
    @classmethod
    def _positive(cls, value: Distribution) -> Distribution:
        return _require_range(value, above=0.0)

    @field_validator("privacy_budget")
    @classmethod
    def _epsilon(cls, value: Distribution) -> Distribution:
        return _require_range(value, above=0.0, at_most=1e6)

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

    arrival_rate_per_s: float = Field(default=0.01, ge=1e-12, le=1e6)
    budget: Distribution = Distribution(value=1000.0)

    @field_validator("budget")
    @classmethod
    def _budget(cls, value: Distribution) -> Distribution:
        return _require_range(value, above=0.0)


class CommitteeSection(_Section):
    """The consensus committee: size T, DPoS candidates, fee ratio sigma and per-node round cost (SPEC A.8).

    `verification` says who checks the claims' signatures and PoET certificates: "every_replica" (SPEC A.8, real
    Ed25519), "primary_only" (backups trust the primary's check and re-check order, gamma_NE and rewards),
    "unsigned" (no signatures: population-scale experiments), or "modelled": every replica checks, but no
    Ed25519 runs on the hot path. A modelled signature is a SHA-512 tag binding the message to the signer's key
    id, so tampering is caught always; a seeded share `signature_sample_rate` of signatures is checked by real
    Ed25519 (challenge and answer), which catches a forger without the key with that probability per signature;
    each sign costs `signature_sign_s` and each verify `signature_verify_s` of simulated time (defaults measured
    with `cryptography` by `benchmarks/bench_market.py --signature-costs`). Detection probabilities are in
    market/consensus/signatures.py. A modelled round's consensus takes at least 6 x claims x
    `signature_verify_s` (the primary's 3 checks per claim, then each backup's): keep `view_change_timeout_s`
    above that, or large rounds change view again and again.
    """

    size: int = _count(7, high=1000)
    candidates: int = _count(10, high=10_000)
    fee_ratio: float = Field(default=0.2, ge=0, le=1)
    node_cost: float = _positive(1.4)
    candidate_stake: Distribution = Distribution(dist="uniform", low=5.0, high=15.0)
    approvals_per_voter: int = _count(3, high=10_000)
    quorum_rule: Literal["byzantine", "two_f_plus_one", "paper"] = "byzantine"
    view_change_timeout_s: float = _positive(2.0, le=1e6)
    verification: Literal["every_replica", "primary_only", "unsigned", "modelled"] = "every_replica"
    signature_sign_s: float = Field(default=33e-6, ge=0, le=1.0)  # one Ed25519 signature (modelled)
    signature_verify_s: float = Field(default=115e-6, ge=0, le=1.0)  # one Ed25519 verification (modelled)
    signature_sample_rate: float = Field(default=0.01, ge=0, le=1)  # share checked by real Ed25519 (modelled)
    poet_mean_wait_s: float = _positive(0.5, le=1e6)
    poet_minimum_wait_s: float = Field(default=0.05, ge=0, le=1e6)
    # CheckTimer's z-test (SPEC D.1): each round's PoET winner (the smallest wait) is rejected when its owner has
    # won implausibly often among the round's claimants, judged at every depth up to `poet_z_window` winners, its
    # own claim included (so against the winners of the `poet_z_window` - 1 blocks before it). Off by default:
    # honest winners are rejected too (docs/spec.md D.1), each an honest provider's lost reward (in the market,
    # 71 of 1,200 rounds with 13 ALLC providers; 12 of the quick-start's first 300 rounds).
    poet_z_test: bool = False
    poet_z_window: int = _count(50, high=100_000)
    # The canonical ledger keeps its most recent blocks in memory (the whole chain is in the event log,
    # block_committed): at most `ledger_blocks_in_memory` blocks and, beyond the head, at most
    # `ledger_transactions_in_memory` transactions in all (a block of 6,000 transactions, at 10,000 providers,
    # holds about 2.5 MB: 256 such blocks were 640 MB), never fewer than the honest member furthest behind
    # still has to catch up on.
    ledger_blocks_in_memory: int = _count(256, high=10_000_000)
    ledger_transactions_in_memory: int = _count(100_000, high=1_000_000_000)

    @field_validator("poet_z_window")
    @classmethod
    def _z_window(cls, value: int) -> int:
        least = PoetSettings().z_min_observed + 1
        if value < least:
            raise ValueError(
                f"must be >= {least}: the z-test rejects only an owner seen more than {least - 1} times in the window "
                f"(SPEC D.1), so a smaller window never rejects; got {value}"
            )
        return value

    @model_validator(mode="after")
    def _enough_candidates(self) -> CommitteeSection:
        if self.candidates < self.size:
            raise ValueError(f"candidates: must be >= size ({self.size}), got {self.candidates}")
        if self.approvals_per_voter > self.candidates:
            raise ValueError(
                f"approvals_per_voter: must be <= candidates ({self.candidates}), got {self.approvals_per_voter}"
            )
        try:
            _require_range(self.candidate_stake, above=0.0)
        except ValueError as error:  # a candidate approves itself with its stake, so every one has votes (D.3)
            raise ValueError(
                f"candidate_stake.{error}: a candidate stands for election with a stake, and DPoS elects only "
                "candidates with votes, so with none it could leave the committee short of committee.size"
            ) from None
        if self.poet_z_test and self.verification == "unsigned":
            raise ValueError(
                "poet_z_test: CheckTimer's z-test judges PoET certificates, which an unsigned market does not check; "
                "use verification 'every_replica', 'primary_only' or 'modelled', or poet_z_test = false; got "
                "verification 'unsigned'"
            )
        problem = quorum_problem(self.size, QUORUM_RULES[self.quorum_rule])
        if problem is not None:
            raise ValueError(
                f"quorum_rule: {self.quorum_rule!r} with size = {self.size} {problem}; use 'byzantine' "
                "(ceil((n + f + 1) / 2), safe for every size)"
            )
        return self


class SurrogateSection(_Section):
    """The surrogate backend's learning curve H(T) = theta0 / (theta1 + T), T the honest local iterations so far
    (SPEC B.1); `flmarket calibrate` writes this section from real training."""

    theta0: float = _positive(9.82)
    theta1: float = _positive(9.82 / math.log(10.0))
    local_iterations: int = _count(5, high=100_000)
    # ||u||_1 of one unperturbed local epoch (SPEC A.2)
    update_l1_norm: float = Field(default=13.6, ge=0, le=MAX_MAGNITUDE)  # measured by flmarket calibrate


class LearningSection(_Section):
    """The learning backend and the public-goods precision model (SPEC B.1)."""

    backend: Literal["surrogate", "torch"] = "surrogate"
    rounds_per_task: int = _count(3, high=10_000)
    local_iterations: int = _count(5, high=100_000)
    round_duration_s: float = _positive(10.0, le=1e6)
    theta0: float = _positive(9.82)
    theta1: float | Literal["auto"] = "auto"
    require_dilemma: bool = True
    seconds_per_cycle: float = _positive(0.005)
    dataset: Literal["digits", "mnist", "cifar10"] = "digits"
    data_root: str | None = None
    model: Literal["mlp", "cnn"] = "mlp"
    hidden_sizes: tuple[int, ...] = Field(default=(200, 200), strict=False)
    partition: Literal["iid", "dirichlet", "quantity"] = "iid"
    dirichlet_alpha: float = _positive(0.5)
    shards: int = _count(10, high=100_000)
    aggregation: Literal["fedavg", "fedadp", "fedasync"] = "fedavg"
    learning_rate: float = _positive(0.01)
    momentum: float = Field(default=0.5, ge=0, lt=1)
    batch_size: int = _count(64, high=1_000_000)
    clip: float = _positive(1.0)
    # SPEC A.2: Delta_f of (B 4), Laplace scale Delta_f / eps per coordinate, or "per_record" (formal DP: per-record
    # gradients clipped to L1 norm `clip`); default chosen by measurement (docs/spec.md A.2).
    sensitivity: float | Literal["per_record"] = 1e-4
    surrogate: SurrogateSection = SurrogateSection()

    @field_validator("sensitivity", "theta1", mode="before")
    @classmethod
    def _number_or_word(cls, value: Any, info: ValidationInfo) -> Any:
        word = "per_record" if info.field_name == "sensitivity" else "auto"
        if isinstance(value, str) and value != word:
            raise ValueError(f"must be a number in [{MIN_POSITIVE:g}, {MAX_MAGNITUDE:g}] or {word!r}, got {value!r}")
        return value

    @field_validator("sensitivity")
    @classmethod
    def _sensitivity(cls, value: float | str) -> float | str:
        if value != "per_record" and not MIN_POSITIVE <= value <= MAX_MAGNITUDE:  # type: ignore[operator]
            raise ValueError(f"must be within [{MIN_POSITIVE:g}, {MAX_MAGNITUDE:g}] or 'per_record', got {value}")
        return value

    @field_validator("theta1")
    @classmethod
    def _theta1(cls, value: float | str) -> float | str:
        if value != "auto" and not MIN_POSITIVE <= value <= MAX_MAGNITUDE:  # type: ignore[operator]
            raise ValueError(f"must be within [{MIN_POSITIVE:g}, {MAX_MAGNITUDE:g}] or 'auto', got {value}")
        return value

    @field_validator("hidden_sizes", mode="before")
    @classmethod
    def _hidden_sizes(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple) or not 1 <= len(value) <= 8:
            raise ValueError(f"must be a list of 1 to 8 layer widths, got {shown(value)}")
        for width in value:
            if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= 10_000:
                raise ValueError(f"every layer width must be an integer in [1, 10000], got {shown(width)}")
        return tuple(value)


class MechanismSection(_Section):
    """BGFL mechanism parameters (SPEC A.3 - A.7); Table 3 defaults."""

    shapley_exact_max: int = Field(default=12, ge=1, le=20)
    shapley_target_relative_error: float = Field(default=0.01, ge=MIN_POSITIVE, le=1)
    shapley_max_evaluations: int = _count(20_000, low=100, high=100_000_000)
    initial_local_iterations: int = _count(5, low=0, high=100_000)
    minimum_local_iterations: int = _count(1, low=0, high=100_000)
    cost_weight: float = Field(default=0.5, ge=0, le=1)
    energy_coefficient: float = _positive(2.0)
    hidden_layers: int = _count(2, high=100)
    output_units: int = _count(10, high=100_000)
    reward_weight: float = Field(default=1.0, ge=0, le=MAX_MAGNITUDE)


class EvolutionSection(_Section):
    """Strategy evolution by pairwise comparison (Fermi rule) and mutation (SPEC C).

    `process`: "synchronous" lets every provider of a task revise together; "pairwise" is the standard pairwise
    comparison process (Traulsen, Pacheco & Nowak 2006): one focal provider per task. `graph`: the model a
    provider compares itself with is one of its overlay neighbours ("overlay") or any other player ("complete").
    `selection_intensity` is kappa_select, the Fermi rule's temperature (beta = 1 / kappa_select).
    `strategy_set` is what a mutation draws from (default: the strategies of `providers.strategy_mix`); an
    imitation copies whatever its model plays, inside the set or not, and the Mesa `share_<s>` reporters cover
    the set's strategies.
    """

    enabled: bool = False
    process: Literal["synchronous", "pairwise"] = "synchronous"
    graph: Literal["overlay", "complete"] = "overlay"
    selection_intensity: float = _positive(1.0)
    mutation_rate: float = Field(default=0.0, ge=0, le=1)
    alliance_rule: Literal["all", "neighbourhood"] = "all"
    strategy_set: tuple[str, ...] | None = Field(default=None, strict=False)

    @field_validator("strategy_set", mode="before")
    @classmethod
    def _strategies(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list | tuple) or not value:
            raise ValueError(f"must be a non-empty list of strategy names, got {shown(value)}")
        for name in value:
            if name not in strategy_names():
                raise ValueError(f"{shown(name)}: unknown strategy (allowed: {', '.join(strategy_names())})")
        return tuple(value)


class ZeroDeterminantSection(_Section):
    """How MMZD players and MMZDA alliances design their strategies (SPEC B.4, B.5), in every task's game.

    `mode`: "auto" (default) plays the exact design when the target is enforceable in the task's game and the
    paper's clipped design otherwise; "exact" only ever plays an enforceable target and stops the run with an error
    when a task's game has none; "paper" always plays the (Z 12)/(Z 13) design, clipped. Each design's
    feasibility is logged (`zd_design`). `target`: the welfare P* to enforce, "largest" (default: the largest
    enforceable welfare, or the paper's P_max) or a number within [-1e9, 1e9] in the game's welfare units; a
    fixed number suits a fixed population, since the game changes with the players and R. `phi_scale`: c in
    phi = sign c / max_k |s_k - P*| (SPEC B.4), in [1e-9, 1]: smaller is a gentler controller, which reaches its
    target more slowly.
    """

    mode: Literal["auto", "exact", "paper"] = "auto"
    target: float | Literal["largest"] = "largest"
    phi_scale: float = Field(default=DEFAULT_PHI_SCALE, ge=MIN_POSITIVE, le=1)

    @field_validator("target", mode="before")
    @classmethod
    def _target_word(cls, value: Any) -> Any:
        if isinstance(value, str) and value != "largest":
            raise ValueError(f'must be a number in [{-MAX_MAGNITUDE:g}, {MAX_MAGNITUDE:g}] or "largest", got {value!r}')
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_MAGNITUDE:  # also past floats
            raise ValueError(f'must be within [{-MAX_MAGNITUDE:g}, {MAX_MAGNITUDE:g}] or "largest", got {shown(value)}')
        return value

    @field_validator("target")
    @classmethod
    def _target_range(cls, value: float | str) -> float | str:
        if value != "largest" and not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:  # type: ignore[operator]
            raise ValueError(f'must be within [{-MAX_MAGNITUDE:g}, {MAX_MAGNITUDE:g}] or "largest", got {value}')
        return value

    @property
    def welfare_target(self) -> float | None:
        """The target as the strategies take it: None for the largest enforceable welfare."""
        return None if self.target == "largest" else float(self.target)


class FaultsSection(_Section):
    """Injected faults: Byzantine committee members, free-rider behaviours and compromised PoET timers.

    `compromised_timers`: the first that many providers (by arrival) have a compromised trusted timer, whose waits
    above the PoET minimum have a mean of `compromised_wait_share` times the honest one, signed with its genuine
    key (market/consensus/poet.py `CompromisedTimer`). Their claims come first and win PoET's rounds; only
    CheckTimer's z-test (`committee.poet_z_test`) can catch them, and it needs a signed verification.
    """

    byzantine_committee: int = _count(0, low=0, high=1000)
    byzantine_behaviour: Literal["silent", "silent_primary", "equivocating", "wrong_digest"] = "silent"
    free_rider_kind: Literal["none", "plain", "disguised", "stale"] = "none"
    compromised_timers: int = _count(0, low=0, high=10_000_000)
    compromised_wait_share: float = Field(default=0.1, ge=MIN_POSITIVE, le=1)


class LimitsSection(_Section):
    """Resource guards against runs that would not finish: the largest population (initial providers plus those
    expected to join), tasks, samples and overlay edges a scenario may ask for. Raise one to run bigger."""

    providers: int = _count(100_000, high=10_000_000)
    tasks: int = _count(1_000_000, high=10**9)
    samples: int = _count(1_000_000, high=10**9)
    overlay_edges: int = _count(10_000_000, high=10**9)


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
    zero_determinant: ZeroDeterminantSection = ZeroDeterminantSection()
    faults: FaultsSection = FaultsSection()
    limits: LimitsSection = LimitsSection()

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
        if self.network.topology == "watts_strogatz" and nodes > 1:
            if self.network.degree < 2 or nodes < 3:
                raise ValueError(
                    f"network.degree: a watts_strogatz overlay needs degree >= 2 and providers.count >= 3, "
                    f"got degree {self.network.degree} and {nodes} providers"
                )
        if self.network.topology == "barabasi_albert" and self.network.attachments >= nodes:
            raise ValueError(
                f"network.attachments: must be < providers.count ({nodes}), got {self.network.attachments}"
            )
        if self.learning.backend == "torch" and self.learning.shards < nodes:
            raise ValueError(
                f"learning.shards: must be >= providers.count ({nodes}) with the torch backend (each provider "
                f"trains on a shard of its own), got {self.learning.shards}"
            )
        counts = self.providers.strategy_counts
        if counts is not None and sum(counts.values()) != nodes:
            raise ValueError(
                f"providers.strategy_counts: must add up to providers.count ({nodes}), got {sum(counts.values())}"
            )
        if self.faults.compromised_timers and self.committee.verification == "unsigned":
            raise ValueError(
                "faults.compromised_timers: an unsigned market has no trusted timers to compromise; use a signed "
                f"committee.verification, got {self.faults.compromised_timers} with 'unsigned'"
            )
        if self.faults.byzantine_committee >= self.committee.size:
            raise ValueError(
                f"faults.byzantine_committee: must be < committee.size ({self.committee.size}), "
                f"got {self.faults.byzantine_committee}"
            )
        return self

    @model_validator(mode="after")
    def _cheapest_type_has_a_cost(self) -> Scenario:
        """C_com (B 3) grows with every one of its fields, so the cheapest type the priors can draw (each at its
        lowest, a log-normal at its practical minimum) must have C_com >= 1: ln C_com in (B 6) is a cost
        (docs/spec.md A.3). Refused here, not when a later joiner happens to draw it."""
        providers, mechanism = self.providers, self.mechanism
        lowest = {
            name: getattr(providers, name).lower_bound()[1]
            for name in ("cpu_frequency", "cycles_per_batch", "batch_size", "memory_use_ratio", "memory")
        }
        cheapest = float(
            computation_cost(
                **lowest, cost_weight=mechanism.cost_weight, energy_coefficient=mechanism.energy_coefficient
            )
        )
        if not cheapest >= 1.0:
            shown_lowest = ", ".join(f"providers.{name} {value:.6g}" for name, value in lowest.items())
            raise ValueError(
                f"providers: the cheapest type these priors can draw has C_com = {cheapest:.6g} < 1 (B 3, at "
                f"{shown_lowest}), so ln C_com in the unit cost (B 6) would be a negative cost; raise their lower "
                "bounds (Table 3's types have C_com = 2882.4)"
            )
        return self

    @model_validator(mode="after")
    def _quality_of_the_torch_model(self) -> Scenario:
        """On the torch backend mu0 and mu1 of the quality (SPEC A.4) are the model's own hidden layers and the
        data set's classes: a mechanism.hidden_layers or output_units set to anything else would be ignored."""
        if self.learning.backend != "torch":
            return self
        learning, mechanism = self.learning, self.mechanism
        layers = len(learning.hidden_sizes) if learning.model == "mlp" else CNN_HIDDEN_LAYERS
        model = (
            f"learning.model = 'mlp' with learning.hidden_sizes = {list(learning.hidden_sizes)}"
            if learning.model == "mlp"
            else f"learning.model = {learning.model!r}"
        )
        if "hidden_layers" in mechanism.model_fields_set and mechanism.hidden_layers != layers:
            raise ValueError(
                f"mechanism.hidden_layers: the torch backend takes mu0 of the quality (SPEC A.4) from its model, and "
                f"{model} has {layers} hidden layer{'s' * (layers != 1)}; got {mechanism.hidden_layers} (remove the "
                "key)"
            )
        if "output_units" in mechanism.model_fields_set and mechanism.output_units != TORCH_CLASSES:
            raise ValueError(
                f"mechanism.output_units: the torch backend takes mu1 of the quality (SPEC A.4) from its data set, "
                f"and {learning.dataset!r} has {TORCH_CLASSES} classes; got {mechanism.output_units} (remove the key)"
            )
        return self

    @model_validator(mode="after")
    def _automatic_theta1_needs_two_providers(self) -> Scenario:
        """theta1 = "auto" is twice the bound K N (R - 1) / (N - 1) of SPEC B.2, which one provider does not have
        (the run logged theta1 = inf and a NaN welfare position)."""
        if self.learning.theta1 == "auto" and self.providers.count < 2:
            raise ValueError(
                "learning.theta1: 'auto' is twice the bound K*N*(R-1)/(N-1) of SPEC B.2, which needs at least 2 "
                f"providers, got providers.count = {self.providers.count}; give learning.theta1 a number"
            )
        return self

    @model_validator(mode="after")
    def _within_limits(self) -> Scenario:
        for problem in resource_problems(self):
            raise ValueError(problem)
        return self

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready dictionary (infinities as strings) for manifests."""
        return _json_ready(self.model_dump(mode="python"))


def expected_end_s(scenario: Scenario) -> float:
    """Roughly when the run ends, in simulated seconds: the horizon, or the time `run.tasks` tasks take when tasks
    run back to back at the pace of the slower of the requesters' arrivals and a task's rounds, if sooner."""
    run = scenario.run
    horizon = run.horizon_s if run.horizon_s is not None else math.inf
    if run.tasks is None:
        return horizon
    return min(horizon, run.tasks * max(1.0 / scenario.requesters.arrival_rate_per_s, _task_seconds(scenario)))


def inert_settings(scenario: Scenario) -> list[str]:
    """The settings a scenario gives that its other settings switch off, one line each: the run would ignore
    them, so `flmarket run` and `validate` warn (a setting varied in a sweep may be on in some cells only)."""
    committee, faults, learning = scenario.committee, scenario.faults, scenario.learning
    given_committee, given_faults = committee.model_fields_set, faults.model_fields_set
    switched_off = [
        (
            "learning.clip",
            "clip" in learning.model_fields_set and learning.sensitivity != "per_record",
            "learning.sensitivity is a number (only 'per_record' clips each record's gradient, SPEC A.2)",
        ),
        (
            "committee.poet_z_window",
            "poet_z_window" in given_committee and not committee.poet_z_test,
            "committee.poet_z_test is false (CheckTimer's z-test does not run)",
        ),
        *(
            (
                f"committee.{name}",
                name in given_committee and committee.verification != "modelled",
                f"committee.verification is {committee.verification!r} (only 'modelled' signatures use it)",
            )
            for name in ("signature_sign_s", "signature_verify_s", "signature_sample_rate")
        ),
        (
            "faults.compromised_wait_share",
            "compromised_wait_share" in given_faults and faults.compromised_timers == 0,
            "faults.compromised_timers is 0 (no timer is compromised)",
        ),
        (
            "faults.byzantine_behaviour",
            "byzantine_behaviour" in given_faults and faults.byzantine_committee == 0,
            "faults.byzantine_committee is 0 (no committee member is Byzantine)",
        ),
    ]
    return [f"{key} = {_shown(scenario, key)} has no effect: {reason}" for key, inert, reason in switched_off if inert]


def _shown(scenario: Scenario, key: str) -> str:
    section, name = key.split(".")
    value = getattr(getattr(scenario, section), name)
    return repr(value) if isinstance(value, str) else f"{value:g}"


def likely_population_peak(scenario: Scenario) -> float:
    """A level the number of online providers is unlikely to pass before `expected_end_s`: the largest mean plus
    three standard deviations over the run. Of the initial providers, Binomial(count, e^(-t/L)) are still online at
    time t; joiners arrive as a Poisson process of rate lambda and stay an exponential lifetime of mean L, so
    Poisson(lambda L (1 - e^(-t/L))) of them are online (an M/M/infinity queue started empty; lambda t if L is
    infinite). The torch backend needs one shard per online provider (`learning.shards`)."""
    providers = scenario.providers
    rate, lifetime, count = providers.arrival_rate_per_s, providers.mean_lifetime_s, providers.count
    end = expected_end_s(scenario)
    if rate <= 0:
        return float(count)
    if math.isinf(end):
        return math.inf if math.isinf(lifetime) else count + rate * lifetime + 3.0 * math.sqrt(rate * lifetime)
    times = np.linspace(0.0, end, 257)
    staying = np.ones_like(times) if math.isinf(lifetime) else np.exp(-times / lifetime)
    joined = rate * times if math.isinf(lifetime) else rate * lifetime * (1.0 - staying)
    mean = count * staying + joined
    deviation = np.sqrt(count * staying * (1.0 - staying) + joined)
    return float(np.max(mean + 3.0 * deviation))


def _task_seconds(scenario: Scenario) -> float:
    """The simulated seconds of one task's collection windows (its rounds; consensus adds a little)."""
    return scenario.learning.rounds_per_task * scenario.learning.round_duration_s


def overlay_edges(scenario: Scenario) -> float:
    """The expected number of edges of the initial overlay."""
    network, nodes = scenario.network, scenario.providers.count
    pairs = nodes * (nodes - 1) / 2
    return {
        "random_regular": nodes * network.degree / 2,
        "erdos_renyi": network.edge_probability * pairs,
        "barabasi_albert": nodes * network.attachments,
        "watts_strogatz": nodes * network.degree / 2,
        "complete": pairs,
    }[network.topology]


def resource_problems(scenario: Scenario) -> list[str]:
    """The resource guards of `[limits]` this scenario exceeds, each a line naming the key and how to raise it."""
    limits, run, providers = scenario.limits, scenario.run, scenario.providers
    end = expected_end_s(scenario)
    problems = []
    if providers.count > limits.providers:
        problems.append(
            f"providers.count: {providers.count:,} is over limits.providers = {limits.providers:,} "
            f"(a resource guard: raise it with limits.providers = N)"
        )
    joining = providers.arrival_rate_per_s * end
    if providers.count <= limits.providers < providers.count + joining:
        problems.append(
            f"providers.arrival_rate_per_s: {providers.count:,} providers at the start (providers.count) and about "
            f"{math.ceil(joining):,} joining over the run's ~{end:,.0f} simulated seconds are over limits.providers "
            f"= {limits.providers:,} (lower the rate or providers.count, shorten the run, or raise limits.providers)"
        )
    if run.tasks is not None and run.tasks > limits.tasks:
        problems.append(
            f"run.tasks: {run.tasks:,} is over limits.tasks = {limits.tasks:,} "
            f"(a resource guard: raise it with limits.tasks = N)"
        )
    if run.tasks is None:
        tasks = end / max(1.0 / scenario.requesters.arrival_rate_per_s, _task_seconds(scenario))
        if tasks > limits.tasks:
            problems.append(
                f"run.horizon_s: with no run.tasks, about {tasks:,.0f} tasks fit in {end:,.0f} simulated seconds, "
                f"over limits.tasks = {limits.tasks:,} (set run.tasks, lower horizon_s, or raise limits.tasks)"
            )
    requesters = scenario.requesters.arrival_rate_per_s * end
    if requesters > limits.tasks:
        problems.append(
            f"requesters.arrival_rate_per_s: about {requesters:,.0f} requesters (one task each) arrive over the "
            f"run's ~{end:,.0f} simulated seconds, over limits.tasks = {limits.tasks:,} (lower the rate, shorten "
            f"the run, or raise limits.tasks)"
        )
    samples = end / run.sample_interval_s
    if samples > limits.samples:
        problems.append(
            f"run.sample_interval_s: about {samples:,.0f} samples of {run.sample_interval_s:g} s over the run's "
            f"~{end:,.0f} simulated seconds, over limits.samples = {limits.samples:,} (raise sample_interval_s, "
            f"shorten the run, or raise limits.samples)"
        )
    edges = overlay_edges(scenario)
    if edges > limits.overlay_edges:
        problems.append(
            f"network.topology: a {scenario.network.topology} overlay of {providers.count:,} providers has about "
            f"{edges:,.0f} edges, over limits.overlay_edges = {limits.overlay_edges:,} (use a sparser topology or "
            f"raise limits.overlay_edges)"
        )
    return problems


def largest_remainder_counts(mix: Mapping[str, float], count: int) -> dict[str, int]:
    """Whole counts for `count` providers that follow `mix` exactly (Hamilton's largest-remainder method): each
    strategy gets floor(count x share), and the providers left over go one each to the largest remainders (ties
    to the strategy named first in the mix). The counts add up to `count`."""
    quotas = {name: count * share for name, share in mix.items()}
    counts = {name: math.floor(quota) for name, quota in quotas.items()}
    left = count - sum(counts.values())
    by_remainder = sorted(mix, key=lambda name: (-(quotas[name] - counts[name]), list(mix).index(name)))
    for name in by_remainder[:left]:
        counts[name] += 1
    return counts


def initial_strategies(providers: ProvidersSection, rng: np.random.Generator) -> list[str] | None:
    """The strategy of each initial provider in ordinal order when the composition is fixed: `strategy_counts` in
    the order given, or, with `composition = "exact"`, the largest-remainder counts of the mix in a random order
    drawn from `rng`. None when each provider draws its own strategy from the mix (`composition = "draw"`)."""
    if providers.strategy_counts is not None:
        return [name for name, count in providers.strategy_counts.items() for _ in range(count)]
    if providers.composition == "draw":
        return None
    counts = largest_remainder_counts(providers.strategy_mix, providers.count)
    labels = [name for name, count in counts.items() for _ in range(count)]
    return [labels[int(index)] for index in rng.permutation(len(labels))]


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
_UNION_TAG = re.compile(r"^(float|int|str|bool|none|dict\[.*\]|tuple\[.*\]|literal\[.*\]|function-.*|constrained-.*)$")
_TYPE_RULES = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number (not inf or nan)",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "dict_type": "must be a table",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
}


def shown_toml(value: Any, width: int = 60) -> str:
    """The offending value as the scenario spells it in TOML (booleans, dates and times, inline tables and
    arrays; other values as reprs), cut to about `width` characters."""

    def toml(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, datetime.date | datetime.time):  # datetime is a date
            return item.isoformat()
        if isinstance(item, Mapping):
            return "{" + ", ".join(f"{key} = {toml(inner)}" for key, inner in item.items()) + "}"
        if isinstance(item, list | tuple):
            return "[" + ", ".join(toml(inner) for inner in item) + "]"
        return repr(item)

    text = toml(value)
    return text if len(text) <= width else f"{text[: width - 5]}...{text[-2:]}"


def _format_error(error: Mapping[str, Any]) -> str:
    """Turn one pydantic error into `path.to.field: rule, got value` (scenario keys only, no internal names)."""
    path = [str(part) for part in error["loc"] if not _UNION_TAG.match(str(part))]
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
        return unknown_key_line(field_path)
    if error["type"] == "missing":
        return f"{field_path}: required, missing"
    if error["type"] == "value_error":
        return f"{field_path}: {message}"
    rule = _TYPE_RULES.get(error["type"])
    if rule is None:
        rule = message[0].lower() + message[1:] if message else error["type"]
    return f"{field_path}: {rule}, got {shown_toml(error.get('input'))}"


def unknown_key_line(field_path: str) -> str:
    """`path: unknown key`, with the closest key of its section ("did you mean ...?") or, failing that, the
    section's keys. Paths inside a value that is not a section (a distribution, a table) get neither."""
    *parents, key = field_path.split(".")
    model: type[BaseModel] = Scenario
    for part in parents:
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, _Section)):
            return f"{field_path}: unknown key (check the spelling)"
        model = annotation
    known = list(model.model_fields)
    section = ".".join(parents) or "a scenario"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"{field_path}: unknown key; did you mean {'.'.join([*parents, close[0]])}?"
    return f"{field_path}: unknown key (the keys of {section}: {', '.join(known)})"


def _problem_lines(lines: list[str]) -> str:
    """Distinct problems, one per line, the first MAX_ERROR_LINES of them and then how many more there are."""
    distinct = list(dict.fromkeys(lines))
    if len(distinct) <= MAX_ERROR_LINES:
        return "\n".join(distinct)
    rest = len(distinct) - MAX_ERROR_LINES
    return "\n".join([*distinct[:MAX_ERROR_LINES], f"... and {rest:,} more problem{'s' if rest > 1 else ''}"])


def _unknown_keys(model: type[BaseModel], data: Any, prefix: str) -> tuple[list[str], int]:
    """The first MAX_ERROR_LINES + 1 dotted paths of keys in `data` that `model` (and its nested sections) does
    not declare, and how many there are in all."""
    if not isinstance(data, Mapping):
        return [], 0
    fields = model.model_fields
    stray = [key for key in data if key not in fields]
    paths = [f"{prefix}{key}" for key in stray[: MAX_ERROR_LINES + 1]]
    total = len(stray)
    for key, info in fields.items():
        if key in data and isinstance(info.annotation, type) and issubclass(info.annotation, _Section):
            nested, count = _unknown_keys(info.annotation, data[key], f"{prefix}{key}.")
            paths.extend(nested)
            total += count
    return paths[: MAX_ERROR_LINES + 1], total


def parse_scenario(data: Mapping[str, Any]) -> Scenario:
    """Validate a scenario dictionary; raise ScenarioError with one line per problem (first line first, at most
    MAX_ERROR_LINES lines and a count of the rest)."""
    unknown, total = _unknown_keys(Scenario, data, "")
    if total > MAX_ERROR_LINES:  # thousands of stray keys: report them without building thousands of errors
        lines = [unknown_key_line(path) for path in unknown]
        rest = total - MAX_ERROR_LINES
        raise ScenarioError("\n".join([*lines[:MAX_ERROR_LINES], f"... and {rest:,} more unknown keys"]))
    try:
        return Scenario.model_validate(dict(data))
    except ValidationError as error:
        lines: dict[str, None] = {}
        for item in error.errors(include_url=False, include_context=False):
            line = _format_error(item)
            field_path = line.partition(":")[0]
            if any(_UNION_TAG.match(str(part)) for part in item["loc"]) and any(
                existing.startswith(f"{field_path}:") for existing in lines
            ):
                continue  # one line per field for the members of a union (a number or 'auto')
            lines[line] = None
        raise ScenarioError(_problem_lines(list(lines))) from None
    except RecursionError:
        raise ScenarioError("scenario: nested too deeply") from None


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
    if "\x00" in reference:
        raise ScenarioError(f"scenario: a path cannot contain NUL, got {shown(reference)}")
    path = Path(reference)
    try:
        is_file, is_dir = path.is_file(), path.is_dir()
    except OSError as error:
        raise ScenarioError(f"scenario: cannot read {shown(reference)}: {error.strerror}") from None
    if is_file:
        return path
    if is_dir:
        raise ScenarioError(f"scenario: a directory, not a scenario file, got {shown(reference)}")
    if path.exists():
        raise ScenarioError(f"scenario: not a regular file (a device, a pipe or a socket), got {shown(reference)}")
    bundled = bundled_scenarios()
    if reference in bundled:
        return bundled[reference]
    if path.suffix == ".toml" or "/" in reference:
        raise ScenarioError(f"scenario: file not found, got {shown(reference)}")
    if (resources.files("flmarket.sim") / "grids" / f"{reference}.toml").is_file():
        raise ScenarioError(
            f"scenario: {shown(reference)} is a bundled sweep grid, not a scenario; run it with "
            f"`flmarket sweep {reference}` (bundled scenarios: {', '.join(bundled) or 'none'})"
        )
    raise ScenarioError(
        f"scenario: not a file and not a bundled scenario, got {shown(reference)} "
        f"(bundled: {', '.join(bundled) or 'none'})"
    )


def read_toml(path: Path, what: str = "scenario") -> dict[str, Any]:
    """Parse a TOML file; every way it can fail (unreadable, not UTF-8, malformed, nested too deeply) becomes a
    ScenarioError of one line naming the file."""
    try:
        with path.open("rb") as handle:
            raw = handle.read()
    except OSError as error:
        raise ScenarioError(f"{path}: cannot read the {what} file: {error.strerror}") from None
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark (some editors write one) is not TOML
    except UnicodeDecodeError as error:
        raise ScenarioError(
            f"{path}: not UTF-8 text (byte {error.start} is {raw[error.start : error.start + 1]!r}); "
            f"TOML files must be UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{path}: malformed TOML: {error}") from None
    except RecursionError:
        raise ScenarioError(f"{path}: malformed TOML: nested too deeply") from None


def in_scenario_terms(error: Exception) -> str:
    """A data set loader's message (market/fl/data.py names its arguments, root= and dataset=) with the scenario's
    keys instead, for `flmarket run`, `validate` and sweep planning alike."""
    return str(error).replace("root: ", "learning.data_root: ", 1).replace("dataset=", "learning.dataset = ")


def load_scenario(reference: str | Path, overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Load and validate a scenario file (or bundled name), applying dotted-path overrides first."""
    path = resolve_scenario_path(str(reference))
    data = read_toml(path)
    if "sweep" in data and ("grid" in data or "cells" in data) and "run" not in data:
        raise ScenarioError(
            f"scenario: {path} is a sweep grid ([sweep] with [grid] or [[cells]]), not a scenario; run it with "
            f"`flmarket sweep {path}` (or flmarket.sweep in Python)"
        )
    try:
        merged = apply_overrides(data, overrides or {})
    except RecursionError:
        raise ScenarioError(f"{path}: nested too deeply") from None
    return parse_scenario(merged)


TABLE_PARAMETERS = ("providers.strategy_mix", "providers.strategy_counts")
"""Parameters whose value is a table keyed by strategy name: an override replaces them whole."""


def plain_values(value: Any) -> Any:
    """numpy scalars and arrays (inside tables and lists too) as plain Python values: the schema's integers are
    strict, and `np.int64(3)` from `np.arange` or a numpy-built `batch_run` grid is one."""
    if isinstance(value, np.ndarray):
        return [plain_values(item) for item in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {key: plain_values(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain_values(item) for item in value]
    return value


def revalidated(scenario: Scenario, overrides: Mapping[str, Any] | None = None) -> Scenario:
    """`scenario` validated again, with dotted-path overrides applied as to a scenario file: a `Scenario` changed
    by pydantic's `model_copy(update=...)` or built field by field skipped every check. Only the values the
    scenario was given are carried over (`exclude_unset`), so an override of a prior's `dist` does not meet the
    default's `value` (as it would not in the scenario's file)."""
    data = scenario.model_dump(mode="python", exclude_unset=True)
    return parse_scenario(apply_overrides(data, overrides or {}))


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of `data` with each `section.key` (dotted path) set to its value.

    A value replaces the key it names whole; tables are never merged. This holds for a table-valued parameter
    (TABLE_PARAMETERS, e.g. providers.strategy_mix) reached by a longer path too: the first override inside it
    starts from an empty table, so `providers.strategy_mix.ALLD=0.8` and `providers.strategy_mix.ALLC=0.2` give
    exactly {ALLD = 0.8, ALLC = 0.2}. Dotted paths reach into sections and into a distribution's fields."""
    merged = _deep_copy(data)
    replaced: set[str] = set()
    for dotted, value in overrides.items():
        if not isinstance(dotted, str):
            raise ScenarioError(f"overrides: keys must be dotted paths such as providers.count, got {dotted!r}")
        parts = dotted.split(".")
        if not all(part.strip() for part in parts):
            raise ScenarioError(f"{shown(dotted)}: not a dotted path such as providers.count")
        target = merged
        for depth, part in enumerate(parts[:-1]):
            prefix = ".".join(parts[: depth + 1])
            existing = target.get(part)
            if existing is None or (prefix in TABLE_PARAMETERS and prefix not in replaced):
                existing = target[part] = {}
                replaced.add(prefix)
            if not isinstance(existing, dict):
                raise ScenarioError(f"{dotted}: cannot set inside {part!r}, which is not a table")
            target = existing
        value = plain_values(value)
        target[parts[-1]] = _deep_copy(value) if isinstance(value, Mapping) else value  # a later, deeper path
        # writes into this table: it must be a copy, not the caller's (nor another cell's) dictionary
        if dotted in TABLE_PARAMETERS:
            replaced.add(dotted)
    return merged


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _deep_copy(value) if isinstance(value, Mapping) else value for key, value in data.items()}
