"""Signatures of claims, wait timers and certificates: real Ed25519, or modelled at a simulated cost (SPEC A.8).

Real signatures (`committee.verification` "every_replica" or "primary_only") sign and verify with Ed25519 (the
`cryptography` package). A signed claim costs three signatures (the claim, the PoET wait timer, its certificate)
and every replica verifies all three: at 100 providers that was half of a signed run's CPU time (issue 15).

Modelled signatures ("modelled") keep every check of the protocol but spend no Ed25519 time on the hot path:

- **Binding tag.** A modelled signature is the tag SHA-512(domain || signer's public key || message): 64 bytes,
  the size of an Ed25519 signature, so messages and their network latencies are the same as with real ones.
  The verifier recomputes it from the key *registered* for the owner and the message *as received*. A message
  changed after signing (a tampered claim, timer or certificate), or a signature made with any other key, fails
  this hash comparison: deterministically, for about a microsecond.
- **Sampled real verifications.** The tag alone authenticates nothing: anyone who knows the public key can
  compute it. So a seeded sample of the signatures is checked for real: the verifier challenges the signer, who
  answers with the Ed25519 signature of the message it signed (`ModelledSignature.answer`: only the holder of the
  private key can, and it answers only for the message it tagged), and the answer is verified under the
  registered key. The simulation calls the signer's answer directly instead of sending a challenge message. The
  sample is a keyed hash of the tag (`SignatureSample`): its key is drawn from the committee's own named random
  stream, so a signer cannot predict which signatures will be checked, every replica checks the same ones, and
  no other component's draws move.
- **Detection.** Tampering with anything signed is caught with probability 1. A forger who does not hold the
  private key (a claim made in another provider's name; a timer or certificate not made by the owner's
  enclave) passes the tag check but fails every sampled check: each forged signature is caught independently
  with probability rho = `committee.signature_sample_rate`, and a forgery that needs k forged signatures goes
  unnoticed with probability (1 - rho)^k. A claim in another's name forges 3 signatures (claim, timer,
  certificate), so it is caught with probability 1 - (1 - rho)^3 (2.97 % at rho = 1 %); a forger who submits one
  such claim in each of the R rounds of a task is caught at least once in the task with probability
  1 - (1 - rho)^(3R): 8.6 % for R = 3 and 95.1 % for R = 100 at rho = 1 %, and always at rho = 1. A caught
  signature is rejected like a bad real one (`ClaimRejection.BAD_SIGNATURE`, `TimerVerdict.BAD_SIGNATURE`).
- **Cost.** Each sign and each verify costs simulated time (`committee.signature_sign_s` and
  `committee.signature_verify_s`, defaults measured with `cryptography` on the development machine): a
  provider waits three signatures' time per claim, and each replica's verifier counts its checks, which the
  committee turns into processing delay before the replica's next messages leave (agents/provider.py,
  agents/committee.py). A round's consensus so takes about 6 x claims x verify_s longer than with real
  signatures, whose CPU time the simulation does not count.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flmarket.market.errors import LedgerError
from flmarket.market.ledger import public_key_bytes, verify_signature

MODELLED_TAG_DOMAIN = b"flmarket-modelled-ed25519\x00"
TAG_BYTES = 64  # an Ed25519 signature's size
SAMPLE_RESOLUTION = 1 << 64


def modelled_tag(public_key: bytes, message: bytes) -> bytes:
    """SHA-512(domain || public key || message): binds the message to the signer's key id (64 bytes)."""
    return hashlib.sha512(MODELLED_TAG_DOMAIN + public_key + message).digest()


class ModelledSignature(bytes):
    """A modelled signature: the binding tag (the bytes themselves) and the signer's side of a challenge.

    It is a `bytes`, so the records that carry signatures (claims, timers, certificates) and their encodings
    are unchanged. The private key it holds is read only by `answer`, which stands for the signer answering a
    verifier's challenge; nothing else of the simulation can sign with it.
    """

    _signer: Ed25519PrivateKey | None
    _verdict: tuple[bytes, bytes, SignatureSample, bool] | None  # the last verification: key, message, sample

    def __new__(cls, tag: bytes, signer: Ed25519PrivateKey | None = None) -> ModelledSignature:
        if len(tag) != TAG_BYTES:
            raise LedgerError(f"tag: must be {TAG_BYTES} bytes, got {len(tag)}")
        signature = super().__new__(cls, tag)
        signature._signer = signer
        signature._verdict = None
        return signature

    def answer(self, message: bytes) -> bytes | None:
        """The real Ed25519 signature of `message` if this is the signer's tag of that message (an honest
        signer signs only what it tagged), else None (no signer, or a message it never signed)."""
        signer = self._signer
        if signer is None or modelled_tag(public_key_bytes(signer), message) != self:
            return None
        return signer.sign(message)


@dataclass(frozen=True)
class SignatureSample:
    """Which signatures are checked for real: those whose keyed hash SHA-256(key || tag), read as a 64-bit
    integer, falls below rate * 2^64. The key comes from a seeded stream the signers never see."""

    key: bytes
    rate: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise LedgerError(f"rate: must be in [0, 1], got {self.rate}")
        if len(self.key) < 16:
            raise LedgerError(f"key: must be at least 16 bytes, got {len(self.key)}")

    def chooses(self, tag: bytes) -> bool:
        """True if the signature with this tag is checked for real (rate 1: all; rate 0: none)."""
        if self.rate >= 1.0:
            return True
        if self.rate <= 0.0:
            return False
        draw = int.from_bytes(hashlib.sha256(self.key + tag).digest()[:8], "big")
        return draw < self.rate * SAMPLE_RESOLUTION


class Signer(Protocol):
    """What signs a claim, timer or certificate: an `Ed25519PrivateKey` itself, or a `ModelledSigner`."""

    def sign(self, data: bytes) -> bytes: ...


class SignatureVerifier(Protocol):
    """What verifies a signature against a registered public key; `checks` counts the verifications."""

    checks: int

    def verify(self, public_key: bytes, signature: bytes, message: bytes) -> bool: ...


class ModelledSigner:
    """Modelled signatures: the binding tag now, the real signature only when a verifier's sample asks."""

    __slots__ = ("_private_key", "public_key")

    def __init__(self, private_key: Ed25519PrivateKey, public_key: bytes | None = None) -> None:
        self._private_key = private_key
        self.public_key = public_key if public_key is not None else public_key_bytes(private_key)

    def sign(self, data: bytes) -> ModelledSignature:
        return ModelledSignature(modelled_tag(self.public_key, data), self._private_key)


def make_signer(
    private_key: Ed25519PrivateKey, modelled: bool, public_key: bytes | None = None
) -> Ed25519PrivateKey | ModelledSigner:
    """The signer of a key: a `ModelledSigner`, or for real Ed25519 the key itself (no wrapper: an idle
    provider's memory stays as it was). `public_key`, if known, saves deriving it again."""
    return ModelledSigner(private_key, public_key) if modelled else private_key


class Ed25519Verifier:
    """Real verification (`ledger.verify_signature`, memoised across replicas)."""

    __slots__ = ("checks",)

    def __init__(self) -> None:
        self.checks = 0

    def verify(self, public_key: bytes, signature: bytes, message: bytes) -> bool:
        self.checks += 1
        return verify_signature(public_key, signature, message)


class ModelledVerifier:
    """Verification of modelled signatures: the binding tag always, a real Ed25519 check on the sample.

    `checks` counts verifications (each costs `committee.signature_verify_s` of simulated time); `real_checks`
    counts the sampled ones that ran Ed25519. The verdict is a pure function of the key, the signature, the
    message and the sample, so a signature remembers its last one: the primary's screening and the replicas'
    shared check of the same claim compute it once (each still counts, and costs, its own verification).
    """

    __slots__ = ("checks", "real_checks", "sample")

    def __init__(self, sample: SignatureSample) -> None:
        self.sample = sample
        self.checks = 0
        self.real_checks = 0

    def verify(self, public_key: bytes, signature: bytes, message: bytes) -> bool:
        self.checks += 1
        if not isinstance(signature, ModelledSignature):
            return self._verify(public_key, signature, message)
        known = signature._verdict
        if known is not None and known[0] is public_key and known[1] is message and known[2] is self.sample:
            return known[3]
        verdict = self._verify(public_key, signature, message)
        signature._verdict = (public_key, message, self.sample, verdict)
        return verdict

    def _verify(self, public_key: bytes, signature: bytes, message: bytes) -> bool:
        if len(signature) != TAG_BYTES or signature != modelled_tag(public_key, message):
            return False  # tampered message, or another key's signature: caught by the hash, always
        if not self.sample.chooses(signature):
            return True
        self.real_checks += 1
        answer = signature.answer(message) if isinstance(signature, ModelledSignature) else None
        return answer is not None and verify_signature(public_key, answer, message)


__all__ = [
    "Ed25519Verifier",
    "ModelledSignature",
    "ModelledSigner",
    "ModelledVerifier",
    "SignatureSample",
    "SignatureVerifier",
    "Signer",
    "make_signer",
    "modelled_tag",
]
