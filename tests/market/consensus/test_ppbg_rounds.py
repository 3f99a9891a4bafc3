"""PPBG-AC across rounds under random view changes (SPEC A.8, D.2): old proposals are never judged by a new
round's inputs, honest replicas never decide two values for one sequence, and every round is decided once the
network behaves.

This is the property behind the crash of issue 13: a view change in round r made a new primary propose, or a
backup re-validate, the request of round r - 1 against round r's uploads (`KeyError` in the platform).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pbft_harness import Network
from test_pbft import BEHAVIOURS
from test_ppbg import Providers, reward_rule, solve_equilibrium

from flmarket.market.consensus.pbft import ByzantineReplica, fault_bound
from flmarket.market.consensus.ppbg import PpbgCommitteeMember, PpbgProposal, RoundInput
from flmarket.market.errors import ProposalError
from flmarket.market.ledger import sha256_hex

VIEW_CHANGE_TIMEOUT_S = 1.0
PATIENCE_S = 40 * VIEW_CHANGE_TIMEOUT_S  # as the platform's CONSENSUS_PATIENCE_TIMEOUTS


class OpenRound:
    """The committee's mechanism as the platform runs it: it holds only the open round's inputs and refuses
    (ProposalError) to judge claims of any other round, counting every judgement it made."""

    def __init__(self) -> None:
        self.round_index: int | None = None
        self.judged: list[int] = []
        self.refused = 0

    def _require_open(self, claims) -> None:
        for claim in claims:
            if claim.claim.round_index != self.round_index:
                self.refused += 1
                raise ProposalError(f"claims: round {claim.claim.round_index} is not the open round")

    def solve_equilibrium(self, claims) -> int:
        self._require_open(claims)
        self.judged.append(self.round_index)
        return solve_equilibrium(claims)

    def reward_rule(self, claims, gamma: int) -> dict[str, float]:
        self._require_open(claims)
        return reward_rule(claims, gamma)


def _committee(n: int, faulty: dict[int, str], mechanism: OpenRound, providers: Providers):
    ids = [f"c{index}" for index in range(n)]
    members = {
        cid: PpbgCommitteeMember(
            cid,
            ids,
            providers.claim_public_keys,
            providers.timer_public_keys,
            mechanism.solve_equilibrium,
            mechanism.reward_rule,
            view_change_timeout_s=VIEW_CHANGE_TIMEOUT_S,
        )
        for cid in ids
    }
    replicas = {
        cid: (member.replica if index not in faulty else ByzantineReplica(member.replica, BEHAVIOURS[faulty[index]]()))
        for index, (cid, member) in enumerate(members.items())
    }
    return members, replicas


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.sampled_from([4, 7]),
    rounds=st.integers(2, 5),
    drop_probability=st.sampled_from([0.0, 0.3, 0.6]),
    chaos_s=st.sampled_from([0.5, 3.0, 8.0]),
    data=st.data(),
)
def test_rounds_with_view_changes_never_judge_old_proposals_and_stay_safe_and_live(
    seed: int, n: int, rounds: int, drop_probability: float, chaos_s: float, data: st.DataObject
) -> None:
    faults = fault_bound(n)
    count = data.draw(st.integers(0, faults), label="byzantine")
    positions = data.draw(st.lists(st.integers(0, n - 1), min_size=count, max_size=count, unique=True))
    kinds = data.draw(st.lists(st.sampled_from(sorted(BEHAVIOURS)), min_size=count, max_size=count))
    faulty = dict(zip(positions, kinds, strict=True))
    providers = Providers(4, seed=seed % 1000)
    mechanism = OpenRound()
    members, replicas = _committee(n, faulty, mechanism, providers)
    honest = [cid for index, cid in enumerate(members) if index not in faulty]
    rng = np.random.default_rng(seed)
    network = Network(replicas, rng, max_latency_s=0.05)
    decided_rounds: set[int] = set()

    for round_index in range(1, rounds + 1):
        start = network.now
        claims = tuple(providers.claim(pid, round_index, start=start) for pid in providers.ids)
        now = max(item.timestamp for item in claims) + 0.5
        network.run(until_s=now)
        # Each round's consensus starts with a window of lost messages (view changes that straddle rounds, and
        # replicas left behind), then the network is synchronous again, as SPEC A.8's liveness assumes.
        network.drop = lambda source, target, message, until=now + chaos_s: (
            network.now < until and rng.random() < drop_probability
        )
        mechanism.round_index = round_index
        request_id = PpbgCommitteeMember.request_id(round_index)
        network.submit(request_id, RoundInput(round_index, claims, sha256_hex(f"model-{round_index}".encode()), now))

        def round_decided(request_id: str = request_id) -> bool:
            return any(item.request_id == request_id for cid in honest for item in network.decisions[cid].values())

        network.run(until_s=now + PATIENCE_S, stop=round_decided)
        if round_decided():
            decided_rounds.add(round_index)
        for cid, replica in replicas.items():  # the platform closes the round, decided or not
            network.handle(cid, replica.withdraw(request_id))

    network.drop = None
    network.run(until_s=network.now + 5 * PATIENCE_S)

    # Old proposals are never judged by a new round's inputs: no replica asked the mechanism about claims of a
    # round other than the open one (re-issued values carry their prepared certificates; closed rounds are
    # withdrawn), and every judgement it made was of an open round.
    assert mechanism.refused == 0
    assert set(mechanism.judged) <= set(range(1, rounds + 1))
    # Safety (SPEC A.8 / D.2): honest replicas agree on the value of every sequence they decided.
    by_sequence: dict[int, set[str]] = {}
    for cid in honest:
        for sequence, decided in network.decisions[cid].items():
            by_sequence.setdefault(sequence, set()).add(decided.digest)
            proposal = decided.value
            assert isinstance(proposal, PpbgProposal)
            assert decided.request_id == PpbgCommitteeMember.request_id(proposal.round_index)
            assert all(item.signed_claim.claim.round_index == proposal.round_index for item in proposal.claims)
    assert all(len(digests) == 1 for digests in by_sequence.values())
    # Liveness: with at most f faults and messages flowing, every round is decided within the platform's patience.
    # (After a long lossy window with Byzantine primaries next in line, doubled view-change timers may outlast the
    # patience; such rounds stall, as they would in the market, and are withdrawn.)
    if drop_probability == 0.0 or (count == 0 and chaos_s <= 3.0):
        assert decided_rounds == set(range(1, rounds + 1))


def test_a_backup_refuses_a_fresh_proposal_of_a_closed_round_but_accepts_it_reissued_with_its_certificate() -> None:
    """The two halves of the fix, one at a time: the application refuses another round's claims when a primary
    proposes them afresh; a NEW-VIEW's re-issued value, prepared by a quorum in its own view, is not re-judged."""
    providers = Providers(4)
    mechanism = OpenRound()
    members, replicas = _committee(4, {}, mechanism, providers)
    network = Network(replicas, np.random.default_rng(5))
    claims = tuple(providers.claim(pid, 1) for pid in providers.ids)
    now = max(item.timestamp for item in claims) + 0.5
    mechanism.round_index = 1
    network.submit("round-1", RoundInput(1, claims, sha256_hex(b"model-1"), now))
    network.run(until_s=now + 10.0)
    proposal = next(iter(network.decisions["c1"].values())).value
    mechanism.round_index = 2  # the platform moved on
    check = members["c2"]._validate("round-1", proposal)
    assert check is False and "not the open round" in members["c2"].last_check.reason
    with pytest.raises(ProposalError):
        members["c0"].replica._make_proposal("round-1", RoundInput(1, claims, sha256_hex(b"model-1"), now))
    # A withdrawn request is not proposed again, and a late submit of it is ignored.
    for cid, replica in replicas.items():
        network.handle(cid, replica.withdraw("round-1"))
    assert replicas["c0"].submit("round-1", RoundInput(1, claims, sha256_hex(b"model-1"), now)) == []
    assert replicas["c0"].status().pending_requests == 0


def test_a_stalled_round_is_withdrawn_and_the_next_round_is_decided_alone() -> None:
    """Round 1 loses every message until the platform's patience runs out (consensus stalled); the platform
    closes it. Round 2 is then decided on its own: no primary proposes round 1 against round 2's inputs."""
    providers = Providers(4)
    mechanism = OpenRound()
    members, replicas = _committee(4, {}, mechanism, providers)
    network = Network(replicas, np.random.default_rng(11))
    for round_index, lossy in ((1, True), (2, False)):
        claims = tuple(providers.claim(pid, round_index, start=network.now) for pid in providers.ids)
        now = max(item.timestamp for item in claims) + 0.5
        network.run(until_s=now)
        network.drop = (lambda source, target, message: True) if lossy else None
        mechanism.round_index = round_index
        request_id = PpbgCommitteeMember.request_id(round_index)
        network.submit(request_id, RoundInput(round_index, claims, sha256_hex(b"model"), now))
        network.run(until_s=now + PATIENCE_S)
        for cid, replica in replicas.items():
            network.handle(cid, replica.withdraw(request_id))
    network.run(until_s=network.now + PATIENCE_S)
    decided = {cid: [item.request_id for item in network.decisions[cid].values()] for cid in replicas}
    assert decided == dict.fromkeys(replicas, ["round-2"])
    assert mechanism.refused == 0
