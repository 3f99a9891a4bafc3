"""Tests for market/consensus/ppbg.py: claim screening, proposals, replica checks, PBFT round to ledger."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from pbft_harness import Network

from flmarket.market.consensus.pbft import Decided
from flmarket.market.consensus.poet import PoetSettings, TimerChecker, TimerVerdict, TrustedTimer, WaitCertificate
from flmarket.market.consensus.ppbg import (
    ClaimRejection,
    PpbgCommitteeMember,
    RoundInput,
    TimestampedClaim,
    build_proposal,
    check_proposal,
    screen_claims,
)
from flmarket.market.ledger import (
    ProviderClaim,
    canonical_encoding,
    derive_private_key,
    public_key_bytes,
    sha256_hex,
    sign_claim,
)

SETTINGS = PoetSettings()
BUDGET = 1000.0


def solve_equilibrium(claims) -> int:
    """Stand-in for (B 24) with r = 1 and no committee cost: floor(B / sum C_unit)."""
    return math.floor(BUDGET / sum(claim.claim.unit_cost for claim in claims)) if claims else 0


def reward_rule(claims, gamma: int) -> dict[str, float]:
    """Stand-in for (B 13): a pool of 100 split in proportion to 1 / C_unit."""
    weights = {claim.claim.provider_id: 1.0 / claim.claim.unit_cost for claim in claims}
    total = sum(weights.values())
    return {provider: 100.0 * weight / total for provider, weight in weights.items()}


class Providers:
    """Providers with claim keys and trusted timers derived from one seed."""

    def __init__(self, count: int, seed: int = 3) -> None:
        rng = np.random.default_rng(seed)
        self.ids = [f"p{index:03d}" for index in range(count)]
        self.claim_keys = {pid: derive_private_key(seed, f"claim-{pid}") for pid in self.ids}
        self.timer_keys = {pid: derive_private_key(seed, f"timer-{pid}") for pid in self.ids}
        self.timers = {pid: TrustedTimer(pid, self.timer_keys[pid], rng, SETTINGS) for pid in self.ids}
        self.unit_costs = {pid: 8.0 + float(rng.random()) for pid in self.ids}

    @property
    def claim_public_keys(self) -> dict[str, bytes]:
        return {pid: public_key_bytes(key) for pid, key in self.claim_keys.items()}

    @property
    def timer_public_keys(self) -> dict[str, bytes]:
        return {pid: timer.public_key for pid, timer in self.timers.items()}

    def claim(self, pid: str, round_index: int, start: float = 0.0) -> TimestampedClaim:
        claim = ProviderClaim(pid, round_index, 1, self.unit_costs[pid], sha256_hex(f"update-{pid}".encode()))
        wait = self.timers[pid].create_wait_timer(start, local_mean=5.0)
        certificate = self.timers[pid].create_wait_certificate(wait.expiry_time, claim.digest())
        return TimestampedClaim(sign_claim(claim, self.claim_keys[pid]), certificate)


def test_screening_rejects_bad_claims_and_sorts_the_rest_by_timestamp() -> None:
    providers = Providers(8)
    claims = [providers.claim(pid, round_index=1) for pid in providers.ids]
    now = max(item.timestamp for item in claims) + 1.0
    # p000: signed by another provider's key.
    claims[0] = dataclasses.replace(
        claims[0], signed_claim=sign_claim(claims[0].signed_claim.claim, providers.claim_keys["p001"])
    )
    # p001: forged timer, its certificate re-signed by a key that is not its trusted timer's.
    forger = derive_private_key(42, "forger")
    unsigned = dataclasses.replace(claims[1].certificate, signature=b"")
    claims[1] = dataclasses.replace(
        claims[1], certificate=dataclasses.replace(unsigned, signature=forger.sign(unsigned.signed_bytes()))
    )
    # p002: a claim for another round; p003: a certificate that stamps something else.
    claims[2] = providers.claim("p002", round_index=0)
    other = providers.timers["p003"].create_wait_timer(0.0, 5.0)
    claims[3] = dataclasses.replace(
        claims[3], certificate=providers.timers["p003"].create_wait_certificate(other.expiry_time, "0" * 64)
    )
    # p004: an early certificate, correctly signed by its timer but issued before the timer expired.
    timer_key = providers.timer_keys["p004"]
    early_timer = claims[4].certificate.timer
    early = WaitCertificate(early_timer, claims[4].certificate.payload_digest, early_timer.request_time, b"")
    claims[4] = dataclasses.replace(
        claims[4], certificate=dataclasses.replace(early, signature=timer_key.sign(early.signed_bytes()))
    )
    checker = TimerChecker(providers.timer_public_keys, SETTINGS)
    screening = screen_claims(1, claims, providers.claim_public_keys, checker, now)
    reasons = {item.provider_id: (item.reason, item.timer_verdict) for item in screening.rejected}
    assert reasons == {
        "p000": (ClaimRejection.BAD_SIGNATURE, None),
        "p001": (ClaimRejection.TIMER, TimerVerdict.BAD_SIGNATURE),
        "p002": (ClaimRejection.WRONG_ROUND, None),
        "p003": (ClaimRejection.UNBOUND_CERTIFICATE, None),
        "p004": (ClaimRejection.TIMER, TimerVerdict.NOT_ELAPSED),
    }
    accepted = [item.provider_id for item in screening.accepted]
    assert accepted == sorted(["p005", "p006", "p007"], key=lambda pid: claims[int(pid[1:])].timestamp)
    # Replaying the accepted claims is refused: one certificate per timer.
    again = screen_claims(1, claims[5:], providers.claim_public_keys, checker, now)
    assert {item.timer_verdict for item in again.rejected} == {TimerVerdict.DUPLICATE}


def make_proposal(providers: Providers, count: int):
    claims = tuple(providers.claim(pid, 2) for pid in providers.ids[:count])
    now = max(item.timestamp for item in claims) + 0.5
    round_input = RoundInput(2, claims, sha256_hex(b"global-model"), now)
    checker = TimerChecker(providers.timer_public_keys, SETTINGS)
    screening = screen_claims(2, claims, providers.claim_public_keys, checker, now)
    return build_proposal(round_input, screening, solve_equilibrium, reward_rule), checker


def test_proposal_holds_gamma_and_rewards_and_replicas_recheck_it() -> None:
    providers = Providers(6)
    proposal, _ = make_proposal(providers, 6)
    total_cost = sum(providers.unit_costs.values())
    assert proposal.gamma_ne == math.floor(BUDGET / total_cost)
    assert sum(reward for _, reward in proposal.rewards) == pytest.approx(100.0)
    checker = TimerChecker(providers.timer_public_keys, SETTINGS)  # a replica's own checker
    keys = providers.claim_public_keys
    assert check_proposal(proposal, keys, checker, solve_equilibrium, reward_rule).valid
    greedy = dataclasses.replace(proposal, rewards=((proposal.rewards[0][0], 100.0), *proposal.rewards[1:]))
    assert "rewards" in check_proposal(greedy, keys, checker, solve_equilibrium, reward_rule).reason
    lazy = dataclasses.replace(proposal, gamma_ne=proposal.gamma_ne + 1)
    assert "gamma_ne" in check_proposal(lazy, keys, checker, solve_equilibrium, reward_rule).reason
    swapped = dataclasses.replace(proposal, claims=proposal.claims[::-1])
    assert "sorted" in check_proposal(swapped, keys, checker, solve_equilibrium, reward_rule).reason


def test_a_proposal_is_encoded_once_and_a_changed_copy_is_encoded_afresh() -> None:
    proposal, _ = make_proposal(Providers(4), 4)
    assert proposal.encode() is proposal.encode()  # every replica digests and sizes the same object
    assert proposal.digest() == sha256_hex(canonical_encoding(proposal.to_plain()))
    assert proposal.size_bytes == len(canonical_encoding(proposal.to_plain())) + 300 * len(proposal.claims)
    changed = dataclasses.replace(proposal, gamma_ne=proposal.gamma_ne + 1)
    assert changed.digest() == sha256_hex(canonical_encoding(changed.to_plain())) != proposal.digest()


def test_round_through_pbft_commits_the_same_block_everywhere_even_with_a_cheating_primary() -> None:
    providers = Providers(10)
    committee = ["c0", "c1", "c2", "c3"]
    members = {
        cid: PpbgCommitteeMember(
            cid,
            committee,
            providers.claim_public_keys,
            providers.timer_public_keys,
            solve_equilibrium,
            reward_rule,
        )
        for cid in committee
    }
    honest_propose = members["c0"].replica._make_proposal

    def cheating_propose(request_id, round_input):  # pays the whole pool to the first provider
        proposal = honest_propose(request_id, round_input)
        rewards = tuple((pid, 100.0 if index == 0 else 0.0) for index, (pid, _) in enumerate(proposal.rewards))
        return dataclasses.replace(proposal, rewards=rewards)

    members["c0"].replica._make_proposal = cheating_propose
    network = Network({cid: member.replica for cid, member in members.items()}, np.random.default_rng(8))
    claims = tuple(providers.claim(pid, 1) for pid in providers.ids)
    now = max(item.timestamp for item in claims) + 0.5
    network.submit(PpbgCommitteeMember.request_id(1), RoundInput(1, claims, sha256_hex(b"model-1"), now))
    network.run(until_s=30.0)
    honest = ["c1", "c2", "c3"]
    assert all(members[cid].replica.rejected_pre_prepares == 1 for cid in honest)  # c0's greedy proposal
    for cid in honest:
        decided: list[Decided] = list(network.decisions[cid].values())
        assert len(decided) == 1 and decided[0].view == 1  # c0's proposal was refused; c1 proposed
        members[cid].on_decided(decided[0].value)
    assert members["c2"].last_check.valid  # its last check was of c1's honest proposal
    heads = {members[cid].chain.head.hash for cid in honest}
    assert len(heads) == 1
    block = members["c2"].chain.head
    assert block.height == 1
    assert [tx.provider_id for tx in block.txs] == sorted(providers.ids, key=lambda p: claims[int(p[1:])].timestamp)
    assert math.isclose(sum(tx.reward for tx in block.txs), 100.0)
    assert all(tx.local_iterations == solve_equilibrium([c.signed_claim for c in claims]) for tx in block.txs)
    assert members["c3"].chain.verify().valid


def test_verification_modes_decide_who_checks_signatures() -> None:
    providers = Providers(4)
    proposal, _ = make_proposal(providers, 4)
    keys = providers.claim_public_keys
    forged_claim = dataclasses.replace(proposal.claims[0].signed_claim, signature=bytes(64))
    forged = dataclasses.replace(
        proposal, claims=(dataclasses.replace(proposal.claims[0], signed_claim=forged_claim), *proposal.claims[1:])
    )
    checker = TimerChecker(providers.timer_public_keys, SETTINGS)
    # every replica verifies (SPEC A.8): the forged signature is caught
    assert "bad claim signature" in check_proposal(forged, keys, checker, solve_equilibrium, reward_rule).reason
    # primary_only / unsigned replicas trust the screening and re-check order, gamma and rewards only
    assert check_proposal(forged, keys, checker, solve_equilibrium, reward_rule, verify_signatures=False).valid
    greedy = dataclasses.replace(forged, rewards=((forged.rewards[0][0], 100.0), *forged.rewards[1:]))
    unchecked = check_proposal(greedy, keys, checker, solve_equilibrium, reward_rule, verify_signatures=False)
    assert not unchecked.valid and "rewards" in unchecked.reason
    screening = screen_claims(2, forged.claims, keys, checker, forged.timestamp, verify_signatures=False)
    assert len(screening.accepted) == 4 and not screening.rejected
    with pytest.raises(ValueError, match="verification: must be one of every_replica, primary_only, unsigned"):
        PpbgCommitteeMember(
            "c0", ["c0"], keys, providers.timer_public_keys, solve_equilibrium, reward_rule, verification="nobody"
        )


def test_screening_recomputes_each_claimed_privacy_cost_from_the_received_update() -> None:
    """SPEC A.3: C_pr = eps * ln(1 + ||u~||_1) of the uploaded, perturbed update; a claim whose privacy cost does
    not match what the committee recomputes is rejected, at screening and when a replica re-checks a proposal."""
    providers = Providers(4)
    rng = np.random.default_rng(0)
    received = {pid: rng.laplace(0.0, 1e-4, 1000) for pid in providers.ids}  # the uploads, as received
    budgets = dict(zip(providers.ids, (1.0, 2.0, 3.0, 5.0), strict=True))
    claimed = {pid: budgets[pid] * math.log1p(np.abs(received[pid]).sum()) for pid in providers.ids}
    claimed["p002"] *= 1.5  # inflates its privacy cost

    def audit(signed) -> bool:
        pid = signed.claim.provider_id
        return math.isclose(claimed[pid], budgets[pid] * math.log1p(np.abs(received[pid]).sum()), rel_tol=1e-9)

    claims = [providers.claim(pid, round_index=1) for pid in providers.ids]
    now = max(item.timestamp for item in claims) + 1.0
    checker = TimerChecker(providers.timer_public_keys, SETTINGS)
    screening = screen_claims(1, claims, providers.claim_public_keys, checker, now, record_timers=False, audit=audit)
    assert [(item.provider_id, item.reason) for item in screening.rejected] == [("p002", ClaimRejection.PRIVACY_COST)]
    assert sorted(item.provider_id for item in screening.accepted) == ["p000", "p001", "p003"]
    unscreened = screen_claims(1, claims, providers.claim_public_keys, checker, now, record_timers=False)
    proposal = build_proposal(RoundInput(1, tuple(claims), "0" * 64, now), unscreened, solve_equilibrium, reward_rule)
    check = check_proposal(proposal, providers.claim_public_keys, checker, solve_equilibrium, reward_rule, audit=audit)
    assert not check.valid and "p002" in check.reason and "privacy cost" in check.reason


# -- CheckTimer's z-test on each round's PoET winner (SPEC D.1) ----------------------------------------------------


def _winner_order(claims) -> list[str]:
    """Owners by wait, smallest first (SPEC D.1: the smallest duration wins; ties to the smaller id)."""
    return [item.provider_id for item in sorted(claims, key=lambda c: (c.certificate.duration, c.provider_id))]


def test_the_z_test_judges_only_the_round_s_winner_and_the_next_smallest_wait_steps_in() -> None:
    """Five claimants (p = 1/5). A winner whose owner won the last 4 blocks (observed 5 of 5 at depth 5: z = 8 >
    3.075, observed > 3) is rejected, and so is the runner-up when it did the same; the third passes. Owners who
    did not win before never fail, whatever their wait. Without a history nothing is judged. The z values are
    (observed - depth p) / sqrt(depth p (1 - p)), the winner's own claim counted."""
    providers = Providers(5)
    claims = [providers.claim(pid, 1) for pid in providers.ids]
    now = max(item.timestamp for item in claims) + 1.0
    order = _winner_order(claims)
    keys = providers.claim_public_keys

    def screened(history):
        checker = TimerChecker(providers.timer_public_keys, SETTINGS)
        return screen_claims(1, claims, keys, checker, now, winner_history=history)

    plain = screened(None)
    assert not plain.rejected and len(plain.accepted) == 5
    assert not screened(order[1:] * 4).rejected  # the others' streaks do not matter: only the winner is judged
    one = screened([order[0]] * 4)
    assert [(item.provider_id, item.timer_verdict) for item in one.rejected] == [
        (order[0], TimerVerdict.WINS_TOO_OFTEN)
    ]
    assert sorted(item.provider_id for item in one.accepted) == sorted(order[1:])
    two = screened([order[0], order[1]] * 4)  # each won 4 of the last 8 at p = 1/5: z = (5 - 1.8) / 1.2 = 2.67 at
    assert not two.rejected  # depth 9 - not enough; at depth 1 observed 1 <= 3: no depth rejects
    # each won 10 of the last 20: z = (11 - 4.2) / 1.83 = 3.71 at depth 21 for the winner, then (12 - 4.4) / 1.88
    # = 4.05 at depth 22 for the runner-up, judged in its place; the third has no win
    both = screened([order[0], order[1]] * 10)
    assert [item.provider_id for item in both.rejected] == [order[0], order[1]]
    assert sorted(item.provider_id for item in both.accepted) == sorted(order[2:])


def test_a_backup_accepts_a_proposal_whose_winner_passed_and_refuses_one_that_kept_a_rejected_winner() -> None:
    providers = Providers(5)
    claims = tuple(providers.claim(pid, 2) for pid in providers.ids)
    now = max(item.timestamp for item in claims) + 0.5
    history = [_winner_order(claims)[0]] * 4
    round_input = RoundInput(2, claims, sha256_hex(b"global-model"), now)
    primary = TimerChecker(providers.timer_public_keys, SETTINGS)
    screening = screen_claims(2, claims, providers.claim_public_keys, primary, now, winner_history=history)
    proposal = build_proposal(round_input, screening, solve_equilibrium, reward_rule)
    keys = providers.claim_public_keys

    def check(value, window):
        backup = TimerChecker(providers.timer_public_keys, SETTINGS)
        return check_proposal(value, keys, backup, solve_equilibrium, reward_rule, winner_history=window)

    assert len(proposal.claims) == 4 and check(proposal, history).valid
    unjudged = screen_claims(2, claims, keys, TimerChecker(providers.timer_public_keys, SETTINGS), now)
    kept = build_proposal(round_input, unjudged, solve_equilibrium, reward_rule)  # a primary that skipped the z-test
    verdict = check(kept, history)
    assert (
        not verdict.valid
        and verdict.reason == f"claims: {history[0]} rejected (CheckTimer failed: wins too often (z-test))"
    )
    assert check(kept, None).valid


def test_a_compromised_timer_draws_short_waits_that_still_verify() -> None:
    """CompromisedTimer: waits of mean local_mean x wait_share above the minimum, signed with its genuine key and
    recording the local mean it was given, so CheckTimer's other checks pass."""
    from flmarket.market.consensus.poet import CompromisedTimer

    key = derive_private_key(5, "timer")
    honest = TrustedTimer("a", key, np.random.default_rng(9), SETTINGS)
    compromised = CompromisedTimer("a", key, np.random.default_rng(9), SETTINGS, wait_share=0.1)
    for _ in range(50):
        fair, short = honest.create_wait_timer(0.0, 5.0), compromised.create_wait_timer(0.0, 5.0)
        assert short.local_mean == fair.local_mean == 5.0
        assert short.duration - SETTINGS.minimum_wait_s == pytest.approx(
            0.1 * (fair.duration - SETTINGS.minimum_wait_s)
        )
    certificate = compromised.create_wait_certificate(short.expiry_time, "0" * 64)
    checker = TimerChecker({"a": compromised.public_key}, SETTINGS)
    assert checker.check(certificate, short.expiry_time) is TimerVerdict.ACCEPTED
    with pytest.raises(Exception, match="wait_share"):
        CompromisedTimer("a", key, np.random.default_rng(9), SETTINGS, wait_share=0.0)
