"""One round of PPBG-AC (SPEC A.8, BGFL Algorithm 2), pure and sans-IO, agreed through PBFT.

Steps: verify each provider's signed claim M(gamma_i, C_unit) and its PoET certificate (CheckTimer) -> sort
the verified claims by timestamp -> compute gamma_NE and the rewards (callables supplied by the caller: the
mechanism math lives elsewhere) -> propose {sorted claims, gamma_NE, aggregate digest, rewards} -> replicas
re-check the proposal -> on the PBFT decision, build the ledger block {update digest, global-model digest,
reward, gamma} per provider.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from flmarket.market.consensus.pbft import PbftReplica, QuorumRule
from flmarket.market.consensus.poet import (
    PoetSettings,
    TimerChecker,
    TimerVerdict,
    WaitCertificate,
    select_winner,
    z_test_rejects,
)
from flmarket.market.consensus.signatures import (
    Ed25519Verifier,
    ModelledVerifier,
    SignatureSample,
    SignatureVerifier,
)
from flmarket.market.errors import ProposalError
from flmarket.market.ledger import Block, Chain, SignedClaim, Transaction, canonical_encoding, sha256_hex
from flmarket.market.records import computed_once

VERIFICATION_MODES = ("every_replica", "primary_only", "unsigned", "modelled")
"""Who verifies claim signatures and timers: every replica (SPEC A.8), only the primary (replicas re-check the
order, gamma_NE and rewards), nobody (an unsigned market, for population-scale experiments), or every replica
with modelled signatures (a binding hash always, real Ed25519 on a seeded sample, the cost as simulated delay:
market/consensus/signatures.py)."""

EquilibriumSolver = Callable[[Sequence[SignedClaim]], int]
ClaimAudit = Callable[[SignedClaim], bool]
"""Recomputes a claim's privacy cost (B 5) from the update the committee received: True if it matches (SPEC A.3)."""
RewardRule = Callable[[Sequence[SignedClaim], int], Mapping[str, float]]
"""The mechanism's two callables. Either may raise `ProposalError` when it cannot judge the claims (for example
claims of a round whose inputs it no longer holds): the proposal is then refused, never judged by another
round's inputs."""


class ClaimRejection(enum.Enum):
    """Why a claim did not enter the round (Algorithm 2, line 3)."""

    UNKNOWN_PROVIDER = "unknown provider"
    BAD_SIGNATURE = "bad claim signature"
    WRONG_ROUND = "claim for another round"
    UNBOUND_CERTIFICATE = "certificate does not certify this claim"
    DUPLICATE_PROVIDER = "second claim from one provider"
    TIMER = "CheckTimer failed"
    PRIVACY_COST = "claimed privacy cost does not match the received update (B 5)"


@dataclass(frozen=True)
class TimestampedClaim:
    """A signed claim with the PoET wait certificate that stamps it (its payload is the claim's digest)."""

    signed_claim: SignedClaim
    certificate: WaitCertificate

    @property
    def provider_id(self) -> str:
        return self.signed_claim.claim.provider_id

    @property
    def timestamp(self) -> float:
        """The trusted time at which the claim was stamped (the certificate's issue time)."""
        return self.certificate.issue_time


@dataclass(frozen=True)
class Rejected:
    """A claim left out of the round, with the reason and (for CheckTimer) the timer verdict."""

    provider_id: str
    reason: ClaimRejection
    timer_verdict: TimerVerdict | None = None


@dataclass(frozen=True)
class ClaimScreening:
    """Verified claims sorted by timestamp (ties by provider id), and the rejected ones."""

    accepted: tuple[TimestampedClaim, ...]
    rejected: tuple[Rejected, ...]


@dataclass(frozen=True)
class PpbgProposal:
    """The value the committee agrees on (SPEC A.8): sorted verified claims, gamma_NE, aggregate digest,
    rewards (provider id, reward) in claim order, and the proposer's time."""

    round_index: int
    claims: tuple[TimestampedClaim, ...]
    gamma_ne: int
    aggregate_digest: str
    rewards: tuple[tuple[str, float], ...]
    timestamp: float

    def to_plain(self) -> dict[str, Any]:
        return {
            "aggregate_digest": self.aggregate_digest,
            "claims": [
                {
                    "certificate_signature": item.certificate.signature.hex(),
                    "claim": item.signed_claim.claim.encode().decode("ascii"),
                    "claim_signature": item.signed_claim.signature.hex(),
                }
                for item in self.claims
            ],
            "gamma_ne": self.gamma_ne,
            "rewards": [[provider_id, float(reward)] for provider_id, reward in self.rewards],
            "round_index": self.round_index,
            "timestamp": self.timestamp,
        }

    def encode(self) -> bytes:
        """The canonical encoding of `to_plain()`; computed once (the proposal is immutable, and every replica
        digests it and sizes it)."""
        return computed_once(self, "_encoding", lambda: canonical_encoding(self.to_plain()))

    def digest(self) -> str:
        """SHA-256 of the canonical encoding: the digest PBFT votes on."""
        return sha256_hex(self.encode())

    @property
    def size_bytes(self) -> int:
        """Wire size estimate: the encoding plus each certificate's timer (about 300 bytes each)."""
        return len(self.encode()) + 300 * len(self.claims)


@dataclass(frozen=True)
class RoundInput:
    """What the committee receives for one round: the claims and the aggregate digest, at time `now`."""

    round_index: int
    claims: tuple[TimestampedClaim, ...]
    aggregate_digest: str
    now: float


def screen_claims(
    round_index: int,
    claims: Sequence[TimestampedClaim],
    provider_keys: Mapping[str, bytes],
    timer_checker: TimerChecker,
    now: float,
    recent_winners: Sequence[str] = (),
    population: float = 0.0,
    record_timers: bool = True,
    verify_signatures: bool = True,
    audit: ClaimAudit | None = None,
    verifier: SignatureVerifier | None = None,
    winner_history: Sequence[str] | None = None,
) -> ClaimScreening:
    """Algorithm 2 lines 2-4: Verify(Sign(P_i)) and CheckTimer, then sort by timestamp (SPEC A.8).

    With `winner_history` (the PoET winners of the blocks before this one, newest last), CheckTimer's z-test
    (SPEC D.1) judges the round's winner, the accepted claim with the smallest wait: if its owner wins implausibly
    often among this round's claimants, its claim is rejected (`TimerVerdict.WINS_TOO_OFTEN`) and the next
    smallest wait is judged in its place, until one passes (`without_implausible_winners`).

    With `audit`, a claim whose privacy cost does not match what the committee recomputes from the received
    update is rejected (SPEC A.3: ||u~||_1 is the norm of the uploaded, perturbed update).

    With `record_timers=False` the timers are only inspected (a replica re-checking a proposal must not
    consume the certificates the primary already recorded in its own checker). With `verify_signatures=False`
    the claim signatures and CheckTimer are skipped (a replica that trusts the primary's verification, or an
    unsigned market); the round, binding and duplicate checks still apply. `verifier` checks the claim
    signatures (real Ed25519 by default; the timer checker has its own).
    """
    if verifier is None:
        verifier = Ed25519Verifier()
    accepted: list[TimestampedClaim] = []
    rejected: list[Rejected] = []
    seen_providers: set[str] = set()
    for item in claims:
        claim = item.signed_claim.claim
        key = provider_keys.get(claim.provider_id)
        if key is None:
            rejected.append(Rejected(claim.provider_id, ClaimRejection.UNKNOWN_PROVIDER))
        elif verify_signatures and not verifier.verify(key, item.signed_claim.signature, claim.encode()):
            rejected.append(Rejected(claim.provider_id, ClaimRejection.BAD_SIGNATURE))
        elif claim.round_index != round_index:
            rejected.append(Rejected(claim.provider_id, ClaimRejection.WRONG_ROUND))
        elif item.certificate.payload_digest != claim.digest() or item.certificate.owner_id != claim.provider_id:
            rejected.append(Rejected(claim.provider_id, ClaimRejection.UNBOUND_CERTIFICATE))
        elif claim.provider_id in seen_providers:
            rejected.append(Rejected(claim.provider_id, ClaimRejection.DUPLICATE_PROVIDER))
        elif audit is not None and not audit(item.signed_claim):
            rejected.append(Rejected(claim.provider_id, ClaimRejection.PRIVACY_COST))
        elif not verify_signatures:
            accepted.append(item)
            seen_providers.add(claim.provider_id)
        else:
            if record_timers:
                verdict = timer_checker.check(item.certificate, now, recent_winners, population)
            else:
                verdict = timer_checker.inspect(item.certificate, now)
            if verdict is TimerVerdict.ACCEPTED:
                accepted.append(item)
                seen_providers.add(claim.provider_id)
            else:
                rejected.append(Rejected(claim.provider_id, ClaimRejection.TIMER, verdict))
    if winner_history is not None and verify_signatures and accepted:
        accepted = without_implausible_winners(accepted, winner_history, timer_checker.settings, rejected)
    accepted.sort(key=lambda item: (item.timestamp, item.provider_id))
    return ClaimScreening(tuple(accepted), tuple(rejected))


def without_implausible_winners(
    accepted: Sequence[TimestampedClaim],
    winner_history: Sequence[str],
    settings: PoetSettings,
    rejected: list[Rejected],
) -> list[TimestampedClaim]:
    """The z-test of SPEC D.1 on a round's PoET winner. The winner is the claim whose certificate has the smallest
    wait (`select_winner`); the population is the round's claimants, so p = 1 / len(accepted). A winner that wins
    too often is rejected (appended to `rejected`) and the next smallest wait judged, until one passes; the
    accepted claims that remain are returned. Honest winners are rejected too, at a rate that grows with the
    window (`PoetSettings.z_window`): the false rejects that docs/spec.md D.1 says the market reports."""
    population = len(accepted)
    remaining = list(accepted)
    while remaining:
        winner = select_winner(item.certificate for item in remaining)
        owner = winner.owner_id
        if not z_test_rejects(owner, [*winner_history, owner], population, settings):
            break
        remaining = [item for item in remaining if item.certificate is not winner]
        rejected.append(Rejected(owner, ClaimRejection.TIMER, TimerVerdict.WINS_TOO_OFTEN))
    return remaining


def build_proposal(
    round_input: RoundInput,
    screening: ClaimScreening,
    solve_equilibrium: EquilibriumSolver,
    reward_rule: RewardRule,
) -> PpbgProposal:
    """Algorithm 2 lines 5-6: gamma_NE from the verified claims (B 24) and rewards (B 13), as a proposal."""
    signed = [item.signed_claim for item in screening.accepted]
    gamma_ne = solve_equilibrium(signed)
    if isinstance(gamma_ne, bool) or not isinstance(gamma_ne, int) or gamma_ne < 0:
        raise ProposalError(f"gamma_ne: the equilibrium solver must return an int >= 0, got {gamma_ne!r}")
    reward_map = reward_rule(signed, gamma_ne)
    rewards = []
    for item in screening.accepted:
        reward = float(reward_map.get(item.provider_id, 0.0))
        if not math.isfinite(reward):
            raise ProposalError(f"rewards[{item.provider_id!r}]: must be finite, got {reward}")
        rewards.append((item.provider_id, reward))
    return PpbgProposal(
        round_index=round_input.round_index,
        claims=screening.accepted,
        gamma_ne=gamma_ne,
        aggregate_digest=round_input.aggregate_digest,
        rewards=tuple(rewards),
        timestamp=round_input.now,
    )


@dataclass(frozen=True)
class ProposalCheck:
    """A replica's verdict on a proposal, with the reason when it refuses, and how many signatures the check
    verified (a replica that reuses a shared verdict is charged the same count: it stands for its own check)."""

    valid: bool
    reason: str = ""
    signature_checks: int = field(default=0, compare=False)


def check_proposal(
    proposal: PpbgProposal,
    provider_keys: Mapping[str, bytes],
    timer_checker: TimerChecker,
    solve_equilibrium: EquilibriumSolver,
    reward_rule: RewardRule,
    reward_tolerance: float = 1e-9,
    verify_signatures: bool = True,
    audit: ClaimAudit | None = None,
    verifier: SignatureVerifier | None = None,
    winner_history: Sequence[str] | None = None,
) -> ProposalCheck:
    """Replica side of Algorithm 2: every claim verifies at the proposal's time (with `winner_history`, the
    proposal's PoET winner passes the z-test as well), the order is by timestamp, and gamma_NE and the rewards
    are what the replica computes itself from the same claims."""
    screening = screen_claims(
        proposal.round_index,
        proposal.claims,
        provider_keys,
        timer_checker,
        proposal.timestamp,
        record_timers=False,
        verify_signatures=verify_signatures,
        audit=audit,
        verifier=verifier,
        winner_history=winner_history,
    )
    if screening.rejected:
        first = screening.rejected[0]
        why = first.reason.value + (f": {first.timer_verdict.value}" if first.timer_verdict is not None else "")
        return ProposalCheck(False, f"claims: {first.provider_id} rejected ({why})")
    if screening.accepted != proposal.claims:
        return ProposalCheck(False, "claims: not sorted by timestamp")
    signed = [item.signed_claim for item in proposal.claims]
    try:
        gamma_ne = solve_equilibrium(signed)
        if gamma_ne != proposal.gamma_ne:
            return ProposalCheck(False, f"gamma_ne: expected {gamma_ne}, got {proposal.gamma_ne}")
        expected = reward_rule(signed, gamma_ne)
    except ProposalError as error:
        return ProposalCheck(False, str(error))
    if [provider_id for provider_id, _ in proposal.rewards] != [item.provider_id for item in proposal.claims]:
        return ProposalCheck(False, "rewards: must list the claims' providers in claim order")
    for provider_id, reward in proposal.rewards:
        want = float(expected.get(provider_id, 0.0))
        if not math.isclose(reward, want, rel_tol=reward_tolerance, abs_tol=reward_tolerance):
            return ProposalCheck(False, f"rewards[{provider_id!r}]: expected {want}, got {reward}")
    return ProposalCheck(True)


def block_for_decision(chain: Chain, proposal: PpbgProposal) -> Block:
    """Algorithm 2 line 11 and SPEC A.8: append the decided round to the ledger, one transaction per claim."""
    reward_of = dict(proposal.rewards)
    txs = [
        Transaction(
            provider_id=item.provider_id,
            update_digest=item.signed_claim.claim.update_digest,
            global_model_digest=proposal.aggregate_digest,
            reward=reward_of[item.provider_id],
            local_iterations=proposal.gamma_ne,
        )
        for item in proposal.claims
    ]
    return chain.append(max(proposal.timestamp, chain.head.timestamp), txs)


class PpbgCommitteeMember:
    """A committee node: a PBFT replica whose proposals and checks are PPBG-AC's (SPEC A.8).

    The request of round r is its `RoundInput` (request id "round-r"); the primary screens the claims and
    proposes; backups accept only proposals that `check_proposal` accepts; `on_decided` appends the block and
    only then marks the claims' timers as used, so a proposal re-issued after a view change still checks.

    With verification "modelled", `signature_sample` says which signatures are checked for real (the rest by
    their binding tag); the member counts the signatures it verified (`take_signature_checks`), a shared
    verdict counting as its own check, so the caller can charge each verification's simulated time.
    """

    def __init__(
        self,
        member_id: str,
        committee: Sequence[str],
        provider_keys: Mapping[str, bytes],
        timer_keys: Mapping[str, bytes],
        solve_equilibrium: EquilibriumSolver,
        reward_rule: RewardRule,
        poet_settings: PoetSettings | None = None,
        quorum_rule: QuorumRule = QuorumRule.BYZANTINE,
        view_change_timeout_s: float = 1.0,
        genesis_timestamp: float = 0.0,
        verification: str = "every_replica",
        shared_verdicts: dict[tuple[str, str, str], ProposalCheck] | None = None,
        audit_claim: ClaimAudit | None = None,
        signature_sample: SignatureSample | None = None,
        poet_winners: Sequence[str] | None = None,
    ) -> None:
        if verification not in VERIFICATION_MODES:
            raise ProposalError(f"verification: must be one of {', '.join(VERIFICATION_MODES)}, got {verification!r}")
        self.verification = verification
        self.provider_keys = dict(provider_keys)
        self.verifier: SignatureVerifier
        if verification == "modelled":
            if signature_sample is None:
                raise ProposalError("signature_sample: required when verification is 'modelled', got None")
            self.verifier = ModelledVerifier(signature_sample)
        else:
            self.verifier = Ed25519Verifier()
        self.timer_checker = TimerChecker(timer_keys, poet_settings or PoetSettings(), self.verifier)
        self._signature_checks = 0  # verified since the caller last took the count
        self.solve_equilibrium = solve_equilibrium
        self.reward_rule = reward_rule
        self.audit_claim = audit_claim
        self.chain = Chain(genesis_timestamp)
        self.last_check: ProposalCheck | None = None
        # Honest members with the same ledger head reach the same verdict on the same proposal (check_proposal is
        # a pure function of the proposal, the keys and the timer records, which follow the ledger): a committee
        # may let them share one table, so a proposal is checked once rather than once per replica.
        self.shared_verdicts = shared_verdicts
        self.last_screening: tuple[int, ClaimScreening] | None = None  # (round, screening) of its last proposal
        # The PoET winners of the blocks so far, newest last (a sequence the caller keeps up to date as blocks are
        # decided), for CheckTimer's z-test (SPEC D.1); None: no z-test.
        self.poet_winners = poet_winners
        self.replica = PbftReplica(
            member_id,
            committee,
            quorum_rule=quorum_rule,
            view_change_timeout_s=view_change_timeout_s,
            make_proposal=self._propose,
            validate=self._validate,
        )

    @staticmethod
    def request_id(round_index: int) -> str:
        return f"round-{round_index}"

    def _propose(self, request_id: str, round_input: RoundInput) -> PpbgProposal:
        checks_before = self.verifier.checks
        screening = screen_claims(
            round_input.round_index,
            round_input.claims,
            self.provider_keys,
            self.timer_checker,
            round_input.now,
            record_timers=False,
            verify_signatures=self.verification != "unsigned",
            audit=self.audit_claim,
            verifier=self.verifier,
            winner_history=self.poet_winners,
        )
        self._signature_checks += self.verifier.checks - checks_before
        self.last_screening = (round_input.round_index, screening)
        return build_proposal(round_input, screening, self.solve_equilibrium, self.reward_rule)

    def _validate(self, request_id: str, value: Any) -> bool:
        if not isinstance(value, PpbgProposal) or request_id != self.request_id(value.round_index):
            self.last_check = ProposalCheck(False, "value: not a PPBG-AC proposal for this request")
            return False
        key = (request_id, value.digest(), self.chain.head.hash)
        verdicts = self.shared_verdicts
        check = verdicts.get(key) if verdicts is not None else None
        if check is None:
            checks_before = self.verifier.checks
            check = check_proposal(
                value,
                self.provider_keys,
                self.timer_checker,
                self.solve_equilibrium,
                self.reward_rule,
                verify_signatures=self.verification in ("every_replica", "modelled"),
                audit=self.audit_claim,
                verifier=self.verifier,
                winner_history=self.poet_winners,
            )
            check = replace(check, signature_checks=self.verifier.checks - checks_before)
            if verdicts is not None:
                verdicts[key] = check
        self._signature_checks += check.signature_checks
        self.last_check = check
        return check.valid

    def take_signature_checks(self) -> int:
        """Signatures verified (or charged through a shared verdict) since the last call; resets the count."""
        checks, self._signature_checks = self._signature_checks, 0
        return checks

    def close_request(self, round_index: int) -> list[Any]:
        """The round is over for the client (decided, or given up at its deadline): the replica forgets the
        request, so no later primary proposes it against another round's inputs."""
        return self.replica.withdraw(self.request_id(round_index))

    def on_decided(self, proposal: PpbgProposal) -> Block:
        """Append the decided proposal's block to this member's ledger and spend the claims' timers."""
        if self.verification != "unsigned":
            self.timer_checker.record_all(item.certificate for item in proposal.claims)
        return block_for_decision(self.chain, proposal)
