"""Tests for market/consensus/signatures.py: modelled signatures catch tampering always and forgery on a seeded
sample, at the rate the module states, and the committee's members count the verifications they owe."""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from flmarket.market.consensus.poet import PoetSettings, TimerChecker, TimerVerdict, TrustedTimer, WaitCertificate
from flmarket.market.consensus.ppbg import (
    ClaimRejection,
    PpbgCommitteeMember,
    RoundInput,
    TimestampedClaim,
    screen_claims,
)
from flmarket.market.consensus.signatures import (
    ModelledSignature,
    ModelledSigner,
    ModelledVerifier,
    SignatureSample,
    modelled_tag,
)
from flmarket.market.errors import LedgerError, ProposalError
from flmarket.market.ledger import ProviderClaim, SignedClaim, derive_private_key, public_key_bytes, sha256_hex

SETTINGS = PoetSettings()
KEY = bytes(range(32))
NEVER = SignatureSample(KEY, 0.0)  # the binding tag only
ALWAYS = SignatureSample(KEY, 1.0)  # every signature checked by real Ed25519


def claim_of(provider: str, unit_cost: float = 8.5, round_index: int = 1) -> ProviderClaim:
    return ProviderClaim(provider, round_index, 3, unit_cost, sha256_hex(f"update-{provider}".encode()))


def test_the_tag_is_sha512_of_domain_key_and_message_and_as_long_as_an_ed25519_signature() -> None:
    signer = ModelledSigner(derive_private_key(1, "p0"))
    message = claim_of("p0").encode()
    signature = signer.sign(message)
    expected = hashlib.sha512(b"flmarket-modelled-ed25519\x00" + signer.public_key + message).digest()
    assert signature == expected and len(signature) == 64  # same wire size as Ed25519: same message latencies
    assert signature.hex() == expected.hex()


def test_an_honest_modelled_signature_verifies_by_tag_and_by_its_real_answer() -> None:
    private_key = derive_private_key(1, "p0")
    signer = ModelledSigner(private_key)
    message = claim_of("p0").encode()
    signature = signer.sign(message)
    assert ModelledVerifier(NEVER).verify(signer.public_key, signature, message)
    verifier = ModelledVerifier(ALWAYS)
    assert verifier.verify(signer.public_key, signature, message)
    assert (verifier.checks, verifier.real_checks) == (1, 1)
    # The answer to the challenge is a genuine Ed25519 signature, checked here with `cryptography` directly.
    answer = signature.answer(message)
    assert answer is not None and len(answer) == 64
    Ed25519PublicKey.from_public_bytes(signer.public_key).verify(answer, message)  # raises if invalid
    # An honest signer answers only for the message it tagged.
    assert signature.answer(claim_of("p0", unit_cost=1.0).encode()) is None


def test_a_signature_remembers_its_verdict_for_the_same_key_message_and_sample_only() -> None:
    private_key = derive_private_key(1, "p0")
    signer = ModelledSigner(private_key)
    message = claim_of("p0").encode()
    signature = signer.sign(message)
    verifier = ModelledVerifier(ALWAYS)
    assert verifier.verify(signer.public_key, signature, message)
    assert verifier.verify(signer.public_key, signature, message)  # the primary's screening, then the check
    assert (verifier.checks, verifier.real_checks) == (2, 1)  # each counts (and costs); Ed25519 ran once
    other_key = ModelledSigner(derive_private_key(1, "p1")).public_key
    assert not verifier.verify(other_key, signature, message)  # another key: judged afresh
    tampered = claim_of("p0", unit_cost=0.5).encode()
    assert not verifier.verify(signer.public_key, signature, tampered)  # another message: judged afresh
    assert verifier.verify(signer.public_key, signature, bytes(message))  # equal bytes, new object: recomputed
    assert verifier.real_checks == 2


def test_a_tampered_message_or_another_keys_signature_fails_the_tag_whatever_the_sample() -> None:
    signer = ModelledSigner(derive_private_key(1, "p0"))
    other = ModelledSigner(derive_private_key(1, "p1"))
    message = claim_of("p0", unit_cost=8.5).encode()
    signature = signer.sign(message)
    tampered = claim_of("p0", unit_cost=0.5).encode()  # a cheaper claimed cost, to earn a larger reward
    for sample in (NEVER, ALWAYS):
        verifier = ModelledVerifier(sample)
        assert not verifier.verify(signer.public_key, signature, tampered)
        assert not verifier.verify(signer.public_key, other.sign(message), message)
        assert not verifier.verify(signer.public_key, bytes(64), message)
        assert verifier.real_checks == 0  # the hash decided: no Ed25519 ran


def test_a_forged_tag_passes_the_hash_but_no_sampled_check() -> None:
    victim = ModelledSigner(derive_private_key(1, "victim"))
    message = claim_of("victim").encode()
    # Anyone can compute the tag from the public key; what the forger cannot do is answer the challenge.
    bare = modelled_tag(victim.public_key, message)
    with_own_key = ModelledSignature(bare, derive_private_key(1, "forger"))
    for forged in (bare, ModelledSignature(bare), with_own_key):
        assert ModelledVerifier(NEVER).verify(victim.public_key, forged, message)  # the tag alone proves nothing
        assert not ModelledVerifier(ALWAYS).verify(victim.public_key, forged, message)
    assert with_own_key.answer(message) is None  # the forger's key did not make this tag


def test_the_sample_chooses_the_stated_share_from_a_keyed_hash() -> None:
    tags = [hashlib.sha512(index.to_bytes(4, "big")).digest() for index in range(20_000)]
    for rate in (0.01, 0.1, 0.5):
        sample = SignatureSample(KEY, rate)
        chosen = sum(sample.chooses(tag) for tag in tags)
        sd = math.sqrt(len(tags) * rate * (1 - rate))
        assert abs(chosen - len(tags) * rate) < 5 * sd
        # the choice is the keyed hash's first 8 bytes below rate * 2^64, recomputed independently
        first = int.from_bytes(hashlib.sha256(KEY + tags[0]).digest()[:8], "big")
        assert sample.chooses(tags[0]) == (first < rate * 2**64)
    ten = SignatureSample(KEY, 0.1)
    other_key = SignatureSample(bytes(32), 0.1)
    assert [ten.chooses(tag) for tag in tags] == [ten.chooses(tag) for tag in tags]  # the same every time
    assert [ten.chooses(tag) for tag in tags] != [other_key.chooses(tag) for tag in tags]  # unpredictable w/o key
    assert all(ALWAYS.chooses(tag) for tag in tags[:100]) and not any(NEVER.chooses(tag) for tag in tags[:100])


def test_sample_and_tag_refuse_bad_values() -> None:
    with pytest.raises(LedgerError, match="rate: must be in"):
        SignatureSample(KEY, 1.5)
    with pytest.raises(LedgerError, match="key: must be at least 16 bytes"):
        SignatureSample(b"short", 0.1)
    with pytest.raises(LedgerError, match="tag: must be 64 bytes"):
        ModelledSignature(b"x" * 32)


class ModelledProviders:
    """Providers whose claims, timers and certificates carry modelled signatures."""

    def __init__(self, count: int, seed: int = 5) -> None:
        rng = np.random.default_rng(seed)
        self.ids = [f"p{index:03d}" for index in range(count)]
        self.signers = {pid: ModelledSigner(derive_private_key(seed, f"claim-{pid}")) for pid in self.ids}
        self.timers = {
            pid: TrustedTimer(pid, derive_private_key(seed, f"timer-{pid}"), rng, SETTINGS, modelled_signatures=True)
            for pid in self.ids
        }
        self.claim_keys = {pid: signer.public_key for pid, signer in self.signers.items()}
        self.timer_keys = {pid: timer.public_key for pid, timer in self.timers.items()}

    def claim(self, pid: str, round_index: int = 1) -> TimestampedClaim:
        claim = claim_of(pid, 8.0 + int(pid[1:]) / 100, round_index)
        wait = self.timers[pid].create_wait_timer(0.0, local_mean=5.0)
        certificate = self.timers[pid].create_wait_certificate(wait.expiry_time, claim.digest())
        return TimestampedClaim(SignedClaim(claim, self.signers[pid].sign(claim.encode())), certificate)


def forged_claim(providers: ModelledProviders, pid: str, unit_cost: float) -> TimestampedClaim:
    """A claim in `pid`'s name by someone without its keys: every tag computed from the public keys."""
    claim = claim_of(pid, unit_cost)
    timer_key = providers.timer_keys[pid]
    timer = providers.timers[pid].create_wait_timer(0.0, local_mean=5.0)  # a timer shaped like the victim's
    forged_timer = dataclasses.replace(timer, signature=modelled_tag(timer_key, timer.signed_bytes()))
    unsigned = WaitCertificate(forged_timer, claim.digest(), forged_timer.expiry_time, b"")
    certificate = dataclasses.replace(unsigned, signature=modelled_tag(timer_key, unsigned.signed_bytes()))
    signed = SignedClaim(claim, modelled_tag(providers.claim_keys[pid], claim.encode()))
    return TimestampedClaim(signed, certificate)


def screen(providers: ModelledProviders, claims, sample: SignatureSample):
    verifier = ModelledVerifier(sample)
    checker = TimerChecker(providers.timer_keys, SETTINGS, verifier)
    now = max(item.timestamp for item in claims) + 1.0
    return screen_claims(1, claims, providers.claim_keys, checker, now, record_timers=False, verifier=verifier)


def test_screening_rejects_a_tampered_claim_or_certificate_with_no_real_verification() -> None:
    providers = ModelledProviders(4)
    claims = [providers.claim(pid) for pid in providers.ids]
    # p000 lowers its claimed cost after signing; p001's certificate is re-dated after the enclave signed it.
    original = claims[0].signed_claim
    claims[0] = dataclasses.replace(
        claims[0], signed_claim=SignedClaim(dataclasses.replace(original.claim, unit_cost=1.0), original.signature)
    )
    claims[1] = dataclasses.replace(
        claims[1], certificate=dataclasses.replace(claims[1].certificate, issue_time=claims[1].timestamp + 5.0)
    )
    screening = screen(providers, claims, NEVER)
    reasons = {item.provider_id: (item.reason, item.timer_verdict) for item in screening.rejected}
    assert reasons == {
        "p000": (ClaimRejection.BAD_SIGNATURE, None),
        "p001": (ClaimRejection.TIMER, TimerVerdict.BAD_SIGNATURE),
    }
    assert {item.provider_id for item in screening.accepted} == {"p002", "p003"}


def test_forged_claims_are_caught_at_the_stated_rate() -> None:
    """Each of a forged claim's 3 signatures is checked for real with probability rho: the claim is caught
    with probability 1 - (1 - rho)^3 (signatures.py); at rho = 1 always, at rho = 0 never."""
    providers = ModelledProviders(400)
    forged = [forged_claim(providers, pid, 1.0) for pid in providers.ids]
    assert not screen(providers, forged, NEVER).rejected
    assert len(screen(providers, forged, ALWAYS).rejected) == len(forged)
    rho = 0.1
    caught = screen(providers, forged, SignatureSample(KEY, rho)).rejected
    probability = 1 - (1 - rho) ** 3  # 0.271
    expected, sd = len(forged) * probability, math.sqrt(len(forged) * probability * (1 - probability))
    assert abs(len(caught) - expected) < 4 * sd
    assert {item.reason for item in caught} <= {ClaimRejection.BAD_SIGNATURE, ClaimRejection.TIMER}
    # Honest claims are never refused by the sample.
    honest = [providers.claim(pid) for pid in providers.ids]
    assert not screen(providers, honest, SignatureSample(KEY, rho)).rejected


def solve_equilibrium(claims) -> int:
    return 2


def reward_rule(claims, gamma: int) -> dict[str, float]:
    return {claim.claim.provider_id: 10.0 for claim in claims}


def test_members_count_the_verifications_they_owe_a_shared_verdict_included() -> None:
    providers = ModelledProviders(5)
    committee = ["c0", "c1"]
    verdicts: dict = {}
    members = {
        cid: PpbgCommitteeMember(
            cid,
            committee,
            providers.claim_keys,
            providers.timer_keys,
            solve_equilibrium,
            reward_rule,
            verification="modelled",
            shared_verdicts=verdicts,
            signature_sample=NEVER,
        )
        for cid in committee
    }
    claims = tuple(providers.claim(pid) for pid in providers.ids)
    round_input = RoundInput(1, claims, sha256_hex(b"model"), max(item.timestamp for item in claims) + 1.0)
    proposal = members["c0"]._propose("round-1", round_input)
    assert members["c0"].take_signature_checks() == 3 * 5  # claim, timer and certificate of each claim
    assert members["c0"].take_signature_checks() == 0  # taken
    assert members["c1"]._validate("round-1", proposal)
    assert members["c1"].verifier.checks == 15 and members["c1"].take_signature_checks() == 15
    assert members["c0"]._validate("round-1", proposal)  # the shared verdict: no second check, the same charge
    assert members["c0"].verifier.checks == 15 and members["c0"].take_signature_checks() == 15
    with pytest.raises(ProposalError, match="signature_sample: required"):
        PpbgCommitteeMember(
            "c0", committee, {}, {}, solve_equilibrium, reward_rule, verification="modelled", signature_sample=None
        )


def test_real_keys_still_verify_real_signatures() -> None:
    """The default verifier is real Ed25519: a modelled tag is no signature there."""
    private_key = derive_private_key(2, "p0")
    message = claim_of("p0").encode()
    tag = ModelledSigner(private_key).sign(message)
    checker = TimerChecker({}, SETTINGS)
    assert not checker.verifier.verify(public_key_bytes(private_key), tag, message)
    assert checker.verifier.verify(public_key_bytes(private_key), private_key.sign(message), message)
