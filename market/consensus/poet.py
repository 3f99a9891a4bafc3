"""Proof of elapsed time (SPEC D.1, after Hyperledger Sawtooth PoET 1.0): trusted timers and CheckTimer.

A node's trusted timer (the enclave) draws a wait of minimum_wait - local_mean * ln(u), signs it and later
signs one wait certificate for it once it has elapsed and before it goes stale. The committee's CheckTimer
contract re-checks a certificate from its contents: registered timer key, signatures, elapsed, not stale, one
certificate per timer, and a bounded-window z-test against owners that win implausibly often. The local mean
follows the population estimate (with its bootstrap). Among valid certificates the smallest duration wins.

On "minimum + target": with N equal nodes each waiting minimum + Exp(mean m), the winning wait is the minimum
of N exponentials, minimum + Exp(mean m / N); its mean is minimum + 1 / sum_i (1 / m_i). The population
estimate makes m = target * N, so the *winning* wait averages minimum + target once the estimate has
converged; each node's own wait averages minimum + target * N. `expected_winning_wait` gives the exact
quantity.
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, TypeVar

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flmarket.market.consensus.signatures import Ed25519Verifier, SignatureVerifier, Signer, make_signer
from flmarket.market.errors import TimerError
from flmarket.market.ledger import canonical_encoding, public_key_bytes
from flmarket.market.records import computed_once


@dataclass(frozen=True)
class PoetSettings:
    """PoET parameters (SPEC D.1 defaults). `z_window` bounds the z-test's history depth (None: unbounded)."""

    target_wait_s: float = 20.0
    initial_wait_s: float = 3000.0
    minimum_wait_s: float = 1.0
    sample_size: int = 50
    stale_timeout_s: float = 30.0
    max_certificate_age_s: float = 60.0
    z_max: float = 3.075
    z_min_observed: int = 3
    z_window: int | None = 50

    def __post_init__(self) -> None:
        for name in ("target_wait_s", "initial_wait_s", "stale_timeout_s", "max_certificate_age_s", "z_max"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise TimerError(f"{name}: must be finite and > 0, got {value}")
        if not math.isfinite(self.minimum_wait_s) or self.minimum_wait_s < 0:
            raise TimerError(f"minimum_wait_s: must be finite and >= 0, got {self.minimum_wait_s}")
        if self.sample_size < 1:
            raise TimerError(f"sample_size: must be >= 1, got {self.sample_size}")
        if self.z_window is not None and self.z_window < 1:
            raise TimerError(f"z_window: must be >= 1 or None, got {self.z_window}")


# -------------------- timers and certificates
Record = TypeVar("Record")


@dataclass(frozen=True)
class WaitTimer:
    """A signed wait timer (SPEC D.1): duration = minimum_wait - local_mean * ln(u), with its request time."""

    owner_id: str
    timer_id: str
    request_time: float
    duration: float
    minimum_wait: float
    local_mean: float
    signature: bytes

    @property
    def expiry_time(self) -> float:
        """request_time + duration: the earliest time a certificate may be issued."""
        return self.request_time + self.duration

    def signed_bytes(self) -> bytes:
        """The canonical encoding the enclave signs; computed once (every replica checks the same timer)."""
        return computed_once(self, "_signed_bytes", self._encode)

    def _encode(self) -> bytes:
        numbers = [
            _json_number(value) for value in (self.duration, self.local_mean, self.minimum_wait, self.request_time)
        ]
        texts = (self.owner_id, self.timer_id)
        if None in numbers or not all(isinstance(text, str) for text in texts):
            return canonical_encoding(self._plain())  # not the usual types: let the general encoder decide
        duration, local_mean, minimum_wait, request_time = numbers
        owner_id, timer_id = (encode_basestring_ascii(text) for text in texts)
        return (
            f'{{"duration":{duration},"local_mean":{local_mean},"minimum_wait":{minimum_wait},'
            f'"owner_id":{owner_id},"request_time":{request_time},"timer_id":{timer_id}}}'
        ).encode("ascii")

    def _plain(self) -> dict[str, object]:
        """The signed fields as a plain dict: their canonical encoding is `signed_bytes()` (tested)."""
        return {
            "duration": self.duration,
            "local_mean": self.local_mean,
            "minimum_wait": self.minimum_wait,
            "owner_id": self.owner_id,
            "request_time": self.request_time,
            "timer_id": self.timer_id,
        }


@dataclass(frozen=True)
class WaitCertificate:
    """A certificate that `timer` elapsed, binding `payload_digest` (a block or claim) at `issue_time`."""

    timer: WaitTimer
    payload_digest: str
    issue_time: float
    signature: bytes

    @property
    def owner_id(self) -> str:
        return self.timer.owner_id

    @property
    def duration(self) -> float:
        return self.timer.duration

    def signed_bytes(self) -> bytes:
        """The canonical encoding the enclave signs; computed once (every replica checks the same certificate)."""
        return computed_once(self, "_signed_bytes", self._encode)

    def _encode(self) -> bytes:
        issue_time = _json_number(self.issue_time)
        if issue_time is None or not isinstance(self.payload_digest, str):
            return canonical_encoding(self._plain())  # not the usual types: let the general encoder decide
        return (
            f'{{"issue_time":{issue_time},"payload_digest":{encode_basestring_ascii(self.payload_digest)},'
            f'"timer":{encode_basestring_ascii(self.timer.signed_bytes().decode("ascii"))},'
            f'"timer_signature":"{self.timer.signature.hex()}"}}'
        ).encode("ascii")

    def _plain(self) -> dict[str, object]:
        """The signed fields as a plain dict: their canonical encoding is `signed_bytes()` (tested)."""
        return {
            "issue_time": self.issue_time,
            "payload_digest": self.payload_digest,
            "timer": self.timer.signed_bytes().decode("ascii"),
            "timer_signature": self.timer.signature.hex(),
        }


def _json_number(value: object) -> str | None:
    """A finite float or an int written as `json.dumps` writes it (`float.__repr__`, `int.__repr__`), or None
    for anything else (bools, NaN, other types), which the general canonical encoder then judges.

    Timers and certificates are encoded field by field, like `ProviderClaim.encode`, because every provider
    makes one of each per round and JSON's sorted-key dump was a tenth of a signed round's CPU time."""
    if isinstance(value, float):
        return float.__repr__(value) if math.isfinite(value) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return int.__repr__(value)
    return None


def _keeping_signed_bytes(signed: Record, signed_bytes: bytes) -> Record:
    """`signed` with the signed bytes of its unsigned twin already in place (the signature is not in them)."""
    object.__setattr__(signed, "_signed_bytes", signed_bytes)
    return signed


def wait_duration(minimum_wait: float, local_mean: float, uniform: float) -> float:
    """duration = minimum_wait - local_mean * ln(u) (SPEC D.1): minimum plus an Exp(mean local_mean) wait."""
    if not 0.0 < uniform <= 1.0:
        raise TimerError(f"uniform: must be in (0, 1], got {uniform}")
    if local_mean <= 0:
        raise TimerError(f"local_mean: must be > 0, got {local_mean}")
    return minimum_wait - local_mean * math.log(uniform)


class TrustedTimer:
    """A node's trusted timer (the enclave of PoET): draws, signs and certifies wait timers (SPEC D.1).

    It holds at most one active timer and issues at most one certificate per timer; it refuses (TimerError)
    when there is no active timer, the timer has not elapsed, or it is stale. With `modelled_signatures` its
    timers and certificates carry modelled signatures (market/consensus/signatures.py) instead of Ed25519 ones.
    """

    def __init__(
        self,
        owner_id: str,
        private_key: Ed25519PrivateKey,
        rng: np.random.Generator,
        settings: PoetSettings,
        modelled_signatures: bool = False,
    ) -> None:
        self.owner_id = owner_id
        self.public_key = public_key_bytes(private_key)
        self._signer: Signer = make_signer(private_key, modelled_signatures, self.public_key)
        self._random_bits = rng.bit_generator  # the stream's state; a Generator per draw saves 224 bytes
        self.settings = settings
        self._active: WaitTimer | None = None
        self._timers_issued = 0

    @property
    def active_timer(self) -> WaitTimer | None:
        return self._active

    def create_wait_timer(self, now: float, local_mean: float) -> WaitTimer:
        """Draw and sign a new timer (replacing any active one): u uniform in (0, 1] from the node's rng."""
        duration = self._draw_duration(local_mean)
        self._timers_issued += 1
        timer_id = hashlib.sha256(f"{self.owner_id}:{self._timers_issued}:{now!r}".encode()).hexdigest()
        minimum_wait = self.settings.minimum_wait_s
        encoding = WaitTimer(self.owner_id, timer_id, now, duration, minimum_wait, local_mean, b"").signed_bytes()
        timer = _keeping_signed_bytes(
            WaitTimer(self.owner_id, timer_id, now, duration, minimum_wait, local_mean, self._signer.sign(encoding)),
            encoding,
        )
        self._active = timer
        return timer

    def _draw_duration(self, local_mean: float) -> float:
        """minimum_wait - local_mean * ln u with u uniform in (0, 1] from the node's rng (SPEC D.1)."""
        uniform = 1.0 - np.random.Generator(self._random_bits).random()
        return wait_duration(self.settings.minimum_wait_s, local_mean, uniform)

    def create_wait_certificate(self, now: float, payload_digest: str) -> WaitCertificate:
        """Certify the active timer for `payload_digest` (SPEC D.1 createWaitCertificate checks)."""
        timer = self._active
        if timer is None:
            raise TimerError(f"timer of {self.owner_id}: no active timer")
        if now < timer.expiry_time:
            raise TimerError(f"now: timer has not elapsed, {now} < expiry {timer.expiry_time}")
        if now > timer.expiry_time + self.settings.stale_timeout_s:
            raise TimerError(
                f"now: timer is stale, {now} > expiry {timer.expiry_time} + {self.settings.stale_timeout_s}"
            )
        self._active = None
        encoding = WaitCertificate(timer, payload_digest, now, b"").signed_bytes()
        return _keeping_signed_bytes(WaitCertificate(timer, payload_digest, now, self._signer.sign(encoding)), encoding)


class CompromisedTimer(TrustedTimer):
    """A trusted timer whose enclave is compromised (a fault, not SPEC behaviour): it draws its waits with a mean of
    `wait_share` times the local mean it is given, while its timers record the local mean as an honest timer's
    would, and it signs them with its genuine key. Its certificates pass every check of CheckTimer but one: its
    owner wins implausibly often, which the z-test of SPEC D.1 is there to catch."""

    def __init__(self, *args: Any, wait_share: float, **kwargs: Any) -> None:
        """TrustedTimer's arguments, and the share of the local mean its waits have, in (0, 1]."""
        if not 0 < wait_share <= 1:
            raise TimerError(f"wait_share: must be in (0, 1], got {wait_share}")
        super().__init__(*args, **kwargs)
        self.wait_share = wait_share

    def _draw_duration(self, local_mean: float) -> float:
        return super()._draw_duration(local_mean * self.wait_share)


# -------------------- CheckTimer
class TimerVerdict(enum.Enum):
    """The outcome of CheckTimer for one certificate (SPEC D.1)."""

    ACCEPTED = "accepted"
    NO_ACTIVE_TIMER = "no active timer"
    BAD_SIGNATURE = "bad signature"
    NOT_ELAPSED = "not elapsed"
    STALE = "stale"
    DUPLICATE = "second certificate for one timer"
    WINS_TOO_OFTEN = "wins too often (z-test)"


def z_test_rejects(owner_id: str, recent_winners: Sequence[str], population: float, settings: PoetSettings) -> bool:
    """The z-test of SPEC D.1 at every history depth up to `settings.z_window`.

    `recent_winners` lists the winners of past blocks, newest last, and must already include the claim under
    test. At depth d: expected = d / population, p = expected / d, sigma = sqrt(d p (1-p)),
    z = (observed - expected) / sigma; reject if z > z_max once observed > z_min_observed.
    """
    if population <= 1:
        return False
    probability = 1.0 / population
    depth_limit = len(recent_winners) if settings.z_window is None else min(settings.z_window, len(recent_winners))
    observed = 0
    for depth in range(1, depth_limit + 1):
        if recent_winners[-depth] == owner_id:
            observed += 1
        if observed <= settings.z_min_observed:
            continue
        expected = depth * probability
        sigma = math.sqrt(depth * probability * (1.0 - probability))
        if (observed - expected) / sigma > settings.z_max:
            return True
    return False


class TimerChecker:
    """The committee's CheckTimer contract (SPEC D.1, A.8): verifies wait certificates from their contents.

    `timer_keys` maps each owner to its trusted timer's public key (an owner without one has no active
    timer). Seen timer ids are kept only while a replay could still pass the age check: bounded memory.
    `verifier` checks the signatures: real Ed25519 by default, or modelled (market/consensus/signatures.py).
    """

    def __init__(
        self, timer_keys: Mapping[str, bytes], settings: PoetSettings, verifier: SignatureVerifier | None = None
    ) -> None:
        self._timer_keys = dict(timer_keys)
        self.settings = settings
        self.verifier: SignatureVerifier = verifier if verifier is not None else Ed25519Verifier()
        self._seen: OrderedDict[str, float] = OrderedDict()

    def register(self, owner_id: str, timer_public_key: bytes) -> None:
        self._timer_keys[owner_id] = timer_public_key

    def forget(self, owner_id: str) -> None:
        """Drop an owner's timer key: its certificates fail from now on, as those of an owner never registered."""
        self._timer_keys.pop(owner_id, None)

    def inspect(self, certificate: WaitCertificate, now: float) -> TimerVerdict:
        """Every check except the one-certificate-per-timer record and the z-test; changes nothing."""
        timer = certificate.timer
        key = self._timer_keys.get(timer.owner_id)
        if key is None:
            return TimerVerdict.NO_ACTIVE_TIMER
        if not self.verifier.verify(key, timer.signature, timer.signed_bytes()):
            return TimerVerdict.BAD_SIGNATURE
        if not self.verifier.verify(key, certificate.signature, certificate.signed_bytes()):
            return TimerVerdict.BAD_SIGNATURE
        if certificate.issue_time < timer.expiry_time or now < timer.expiry_time:
            return TimerVerdict.NOT_ELAPSED
        too_late = certificate.issue_time > timer.expiry_time + self.settings.stale_timeout_s
        if too_late or now > certificate.issue_time + self.settings.max_certificate_age_s:
            return TimerVerdict.STALE
        if timer.timer_id in self._seen:
            return TimerVerdict.DUPLICATE
        return TimerVerdict.ACCEPTED

    def check(
        self,
        certificate: WaitCertificate,
        now: float,
        recent_winners: Sequence[str] = (),
        population: float = 0.0,
    ) -> TimerVerdict:
        """CheckTimer (SPEC D.1): inspect, z-test against `recent_winners`, then record the timer as used."""
        self._forget_expired(now)
        verdict = self.inspect(certificate, now)
        if verdict is not TimerVerdict.ACCEPTED:
            return verdict
        history = [*recent_winners, certificate.owner_id]
        if z_test_rejects(certificate.owner_id, history, population, self.settings):
            return TimerVerdict.WINS_TOO_OFTEN
        self.record(certificate)
        return verdict

    def record(self, certificate: WaitCertificate) -> None:
        """Mark a certificate's timer as used (one certificate per timer), e.g. once its block is decided.

        Timers too old to pass the age check are forgotten, so the record stays bounded on long runs."""
        self._forget_expired(certificate.issue_time)
        self._seen[certificate.timer.timer_id] = certificate.issue_time

    def record_all(self, certificates: Iterable[WaitCertificate]) -> None:
        """`record` for each of a decided block's certificates, forgetting expired timers once, at the latest
        issue time (each committee member records every claim of every round: one pass instead of one each)."""
        seen = self._seen
        latest = -math.inf
        for certificate in certificates:
            seen[certificate.timer.timer_id] = certificate.issue_time
            latest = max(latest, certificate.issue_time)
        if seen:
            self._forget_expired(latest)

    @property
    def remembered_timers(self) -> int:
        return len(self._seen)

    def _forget_expired(self, now: float) -> None:
        """Drop timers issued before now - max_certificate_age (a later certificate of theirs is stale anyway).

        Records arrive in about issue order, so the oldest are at the front: O(dropped) per call."""
        horizon = now - self.settings.max_certificate_age_s
        while self._seen:
            timer_id, issue_time = next(iter(self._seen.items()))
            if issue_time >= horizon:
                break
            del self._seen[timer_id]


# -------------------- local mean and winner
@dataclass(frozen=True)
class LocalMeanEstimate:
    """The local mean for a node's next timer and the population estimate behind it (None: bootstrap)."""

    local_mean: float
    population_estimate: float | None


def local_mean(history: Sequence[WaitCertificate], settings: PoetSettings) -> LocalMeanEstimate:
    """Local mean from recent winning certificates, oldest first (SPEC D.1).

    Bootstrap while b = len(history) < sample_size:
    local_mean = target*(1-r^2) + initial*r^2, r = b/sample_size.
    Afterwards population = sum(local_mean) / sum(duration - minimum_wait) over the last sample_size
    certificates, and local_mean = target * population.
    """
    blocks = len(history)
    if blocks < settings.sample_size:
        ratio = blocks / settings.sample_size
        mean = settings.target_wait_s * (1 - ratio**2) + settings.initial_wait_s * ratio**2
        return LocalMeanEstimate(mean, None)
    recent = history[-settings.sample_size :]
    sum_means = sum(certificate.timer.local_mean for certificate in recent)
    sum_waits = sum(certificate.duration - certificate.timer.minimum_wait for certificate in recent)
    population = sum_means / sum_waits if sum_waits > 0 else float(len(recent))
    return LocalMeanEstimate(settings.target_wait_s * population, population)


def expected_winning_wait(minimum_wait: float, local_means: Iterable[float]) -> float:
    """E[min_i (minimum + Exp(mean m_i))] = minimum + 1 / sum_i (1/m_i): the mean winning wait (SPEC D.1)."""
    rate = sum(1.0 / mean for mean in local_means)
    if rate <= 0:
        raise TimerError("local_means: must hold at least one mean > 0")
    return minimum_wait + 1.0 / rate


def select_winner(certificates: Iterable[WaitCertificate]) -> WaitCertificate:
    """The certificate with the smallest duration wins (SPEC D.1); ties go to the smaller owner id."""
    candidates = list(certificates)
    if not candidates:
        raise TimerError("certificates: need at least one valid certificate to pick a winner")
    return min(candidates, key=lambda certificate: (certificate.duration, certificate.owner_id))
