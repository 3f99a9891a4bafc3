"""The committee: DPoS candidates as Mesa agents, and the PPBG-AC replicas they run over the overlay.

`CommitteeNode` is a candidate with stake whose overlay messages go to the committee as they arrive. `Committee`
holds the DPoS election (SPEC D.3), the elected members' sans-IO PPBG-AC/PBFT state machines (market/consensus), and
drives them in simulated time: every PBFT message travels the overlay with latency, timers are SimPy timeouts,
and a decision wakes the task that asked for it. Byzantine members run the policies of SPEC D.2.

With modelled signatures (`committee.verification` "modelled", market/consensus/signatures.py) every replica
verifies, each verification costs `committee.signature_verify_s` of simulated time, and a replica's messages
leave only once the verifications that produced them are done (its CPU is busy until then, in order). Which
signatures are checked by real Ed25519 is decided by a key drawn from the "signature_sample" stream.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import simpy

from flmarket.agents.base import MarketAgent
from flmarket.agents.messages import NO_AGENT, Message
from flmarket.market.consensus.dpos import Committee as ElectedCommittee
from flmarket.market.consensus.dpos import DposElection
from flmarket.market.consensus.pbft import (
    QUORUM_RULES,
    Broadcast,
    ByzantineReplica,
    CancelTimer,
    Decided,
    EquivocatingPrimary,
    Send,
    SetTimer,
    SilentPrimary,
    SilentReplica,
    WrongDigestVoter,
)
from flmarket.market.consensus.poet import PoetSettings, select_winner
from flmarket.market.consensus.ppbg import PpbgCommitteeMember, PpbgProposal, ProposalCheck, RoundInput
from flmarket.market.consensus.signatures import SignatureSample
from flmarket.market.errors import MarketError
from flmarket.market.ledger import Block, Chain

if TYPE_CHECKING:
    from flmarket.sim.model import MarketModel

BYZANTINE_BEHAVIOURS: dict[str, Callable[[], Any]] = {
    "silent": SilentReplica,
    "silent_primary": SilentPrimary,
    "equivocating": EquivocatingPrimary,
    "wrong_digest": WrongDigestVoter,
}
REQUEST_BYTES_PER_CLAIM = 400
PBFT_PHASES = frozenset({"PRE-PREPARE", "PREPARE", "COMMIT", "CHECKPOINT", "VIEW-CHANGE", "NEW-VIEW"})


class CommitteeNode(MarketAgent):
    """A DPoS candidate (SPEC A.8): stake, a name on the ledger, and a handler for its overlay messages."""

    def __init__(self, model: MarketModel, ordinal: int, stake: float) -> None:
        super().__init__(model)
        self.ordinal = ordinal
        self.name = f"c{ordinal}"
        self.stake = stake
        self.earned = 0.0

    def start_listening(self) -> None:
        """Receive overlay messages as they arrive: each is handed to the committee (PBFT traffic or an update);
        the node's timers are SimPy timeouts, so it needs no process of its own."""
        self.model.overlay.subscribe(self.unique_id, self._receive)

    def _receive(self, message: Message) -> None:
        self.model.committee.deliver(self, message)

    def remove(self) -> None:
        """Leave: go offline (messages to the node are dropped from now on), deregister."""
        self.model.overlay.leave(self.unique_id)
        super().remove()


@dataclass
class RoundTraffic:
    """PBFT messages and bytes the committee sent during one round."""

    messages: int = 0
    bytes: int = 0


@dataclass
class _Member:
    node: CommitteeNode
    state: PpbgCommitteeMember
    replica: Any  # the PbftReplica, or a ByzantineReplica wrapping it
    honest: bool
    timers: dict[str, int] = field(default_factory=dict)
    busy_until: float = 0.0  # modelled signatures: when the member's verifications so far are done


class Committee:
    """The elected committee of an epoch and the machinery that runs its replicas in simulated time."""

    def __init__(
        self,
        model: MarketModel,
        nodes: Sequence[CommitteeNode],
        solve_equilibrium: Callable[[Sequence[Any]], int],
        reward_rule: Callable[[Sequence[Any], int], Mapping[str, float]],
    ) -> None:
        self.model = model
        self.config = model.scenario.committee
        self.nodes = list(nodes)
        self.by_name = {node.name: node for node in self.nodes}
        self.election = DposElection(self.config.size)
        self.elected: ElectedCommittee | None = None
        self.members: dict[str, _Member] = {}
        self.solve_equilibrium = solve_equilibrium
        self.reward_rule = reward_rule
        self.ledger = Chain(0.0)
        self.provider_keys: dict[str, bytes] = {}
        self.timer_keys: dict[str, bytes] = {}
        self.poet_settings = PoetSettings(
            target_wait_s=self.config.poet_mean_wait_s,
            minimum_wait_s=self.config.poet_minimum_wait_s,
            stale_timeout_s=max(30.0, 3 * model.scenario.learning.round_duration_s),
            max_certificate_age_s=max(60.0, 6 * model.scenario.learning.round_duration_s),
            z_window=self.config.poet_z_window,
        )
        # The PoET winners of the canonical blocks, newest last, for CheckTimer's z-test (SPEC D.1): its window of
        # `poet_z_window` winners counts the claim under test, so the `poet_z_window` - 1 blocks before it are kept.
        self.poet_winners: deque[str] | None = (
            deque(maxlen=self.config.poet_z_window - 1) if self.config.poet_z_test else None
        )
        self.modelled_signatures = self.config.verification == "modelled"
        # The committee's secret sampling key (no signer sees it), from its own stream: no other draws move.
        self.signature_sample = SignatureSample(
            model.streams.component("signature_sample").bytes(32), self.config.signature_sample_rate
        )
        self.traffic = RoundTraffic()
        self.generation = 0  # bumped whenever the members are rebuilt; older PBFT traffic is discarded
        self._decisions: dict[str, simpy.Event] = {}
        self._verdicts: dict[tuple[str, str, str], ProposalCheck] = {}
        self._timer_tokens = 0
        self._emit_elected = model.log.emitter("committee_elected")

    # -- keys -----------------------------------------------------------------------------------------------
    def register_provider(self, name: str, claim_key: bytes, timer_key: bytes) -> None:
        """Make a provider's claim and timer public keys known to every current and future member."""
        self.provider_keys[name] = claim_key
        self.timer_keys[name] = timer_key
        for member in self.members.values():
            member.state.provider_keys[name] = claim_key
            member.state.timer_checker.register(name, timer_key)

    def forget_provider(self, name: str) -> None:
        """Drop a departed provider's keys from the registry and every member (when none of its claims is open)."""
        self.provider_keys.pop(name, None)
        self.timer_keys.pop(name, None)
        for member in self.members.values():
            member.state.provider_keys.pop(name, None)
            member.state.timer_checker.forget(name)

    # -- election (SPEC D.3) --------------------------------------------------------------------------------
    def elect(self, epoch: int, approvals: Mapping[str, Sequence[str]], stakes: Mapping[str, float]) -> bool:
        """Re-elect for `epoch`; rebuild the replicas only when the top-T ranking changed. Returns changed."""
        elected = self.election.run_epoch(epoch, approvals, stakes)
        if elected.size < self.config.size:  # every candidate has its own stake's vote (committee.candidate_stake)
            raise MarketError(
                f"committee: only {elected.size} candidates have stake-weighted votes for epoch {epoch}, fewer than "
                f"committee.size = {self.config.size} (SPEC D.3)"
            )
        changed = elected is not self.elected
        self.elected = elected
        if changed:
            self._build_members(tuple(elected.members))
        self._emit_elected(self.model.env.now, NO_AGENT, epoch, ",".join(elected.members), changed)
        return changed

    def _build_members(self, names: tuple[str, ...]) -> None:
        for member in self.members.values():
            member.timers.clear()
        self.members = {}
        self.generation += 1
        # The first members are the Byzantine ones, so the primary of view 0 is faulty: the hardest case.
        byzantine = set(names[: self.model.scenario.faults.byzantine_committee])
        behaviour = BYZANTINE_BEHAVIOURS[self.model.scenario.faults.byzantine_behaviour]
        self._verdicts = {}  # one check per proposal and ledger head, shared by the honest members
        for name in names:
            state = PpbgCommitteeMember(
                name,
                names,
                self.provider_keys,
                self.timer_keys,
                self.solve_equilibrium,
                self.reward_rule,
                poet_settings=self.poet_settings,
                quorum_rule=QUORUM_RULES[self.config.quorum_rule],
                view_change_timeout_s=self.config.view_change_timeout_s,
                verification=self.config.verification,
                shared_verdicts=self._verdicts if name not in byzantine else None,
                audit_claim=self.model.mechanism.audit_claim,
                signature_sample=self.signature_sample,
                poet_winners=self.poet_winners,
            )
            state.chain = Chain.from_head(self.ledger.head)
            honest = name not in byzantine
            replica = state.replica if honest else ByzantineReplica(state.replica, behaviour())
            self.members[name] = _Member(self.by_name[name], state, replica, honest)

    @property
    def primary(self) -> CommitteeNode:
        """The node that collects updates: the PBFT primary of the first honest member's current view."""
        reference = next((member for member in self.members.values() if member.honest), None)
        if reference is None:
            reference = next(iter(self.members.values()))
        view = reference.state.replica.view
        return self.by_name[reference.state.replica.primary_of(view)]

    # -- PBFT over the overlay ------------------------------------------------------------------------------
    def submit(self, request_id: str, round_input: RoundInput) -> simpy.Event:
        """A client request to every member (multicast over the overlay from the primary's node)."""
        decided = self._decisions[request_id] = self.model.env.event()
        sender = self.primary
        size = 256 + REQUEST_BYTES_PER_CLAIM * len(round_input.claims)
        for member in self.members.values():
            message = Message(
                "pbft-request", sender.unique_id, payload=(self.generation, request_id, round_input), size_bytes=size
            )
            if member.node is sender:
                self._execute(member, member.replica.submit(request_id, round_input))
            else:
                self.model.overlay.send(member.node.unique_id, message)
                self.traffic.messages += 1
                self.traffic.bytes += size
        return decided

    def close_request(self, round_index: int) -> None:
        """The platform closed the round (decided or stalled): every member forgets its request, and nobody
        waits for its decision any more (SPEC A.8: a round's proposal is judged only by that round's inputs)."""
        self._decisions.pop(PpbgCommitteeMember.request_id(round_index), None)
        self._verdicts.clear()
        for member in self.members.values():
            self._execute(member, member.replica.withdraw(PpbgCommitteeMember.request_id(round_index)))

    def deliver(self, node: CommitteeNode, message: Message) -> None:
        """A message reached a committee node's inbox: PBFT traffic or a provider's update."""
        if message.kind == "update":
            self.model.receive_update(message.payload, node)
            return
        member = self.members.get(node.name)
        if member is None:  # not (or no longer) a member: a stale message from an earlier epoch
            return
        if message.kind == "pbft-request":
            generation, request_id, round_input = message.payload
            if generation == self.generation:
                self._execute(member, member.replica.submit(request_id, round_input))
        elif message.kind in PBFT_PHASES:
            generation, payload = message.payload
            if generation == self.generation:
                self._execute(member, member.replica.receive(payload))
        # other traffic (task announcements, round starts) is not for the replica

    def _execute(self, member: _Member, outgoing: list[Any]) -> None:
        """Carry out a replica's outputs; with modelled signatures, once the member has done the verifications
        they needed (and any queued before them): each costs `signature_verify_s` of simulated time."""
        checks = member.state.take_signature_checks()
        if self.modelled_signatures:
            env = self.model.env
            ready = max(env.now, member.busy_until) + checks * self.config.signature_verify_s
            if ready > env.now:
                member.busy_until = ready
                done = env.timeout(ready - env.now)

                def release(_event: simpy.Event) -> None:
                    if self.members.get(member.node.name) is member:  # not replaced by a re-election meanwhile
                        self._carry_out(member, outgoing)

                done.callbacks.append(release)
                return
        self._carry_out(member, outgoing)

    def _carry_out(self, member: _Member, outgoing: list[Any]) -> None:
        for item in outgoing:
            if isinstance(item, Send):
                self._send(member, item.to, item.message)
            elif isinstance(item, Broadcast):
                for name in self.members:
                    if name != member.node.name:
                        self._send(member, name, item.message)
            elif isinstance(item, SetTimer):
                self._set_timer(member, item.name, item.delay_s)
            elif isinstance(item, CancelTimer):
                member.timers.pop(item.name, None)
            elif isinstance(item, Decided):
                self._decided(member, item)

    def _send(self, member: _Member, to: str, payload: Any) -> None:
        receiver = self.by_name[to]
        size = int(payload.size_bytes)
        self.traffic.messages += 1
        self.traffic.bytes += size
        message = Message(payload.phase, member.node.unique_id, (self.generation, payload), size)
        self.model.overlay.send(receiver.unique_id, message)

    def _set_timer(self, member: _Member, name: str, delay_s: float) -> None:
        self._timer_tokens += 1
        token = member.timers[name] = self._timer_tokens
        timeout = self.model.env.timeout(delay_s)

        def fire(_event: simpy.Event) -> None:
            if member.timers.get(name) == token and self.members.get(member.node.name) is member:
                del member.timers[name]
                self._execute(member, member.replica.on_timer(name))

        timeout.callbacks.append(fire)

    def _decided(self, member: _Member, decided: Decided) -> None:
        """An honest member executed a decision: its ledger catches up with the canonical one, then appends the
        round's block; the first such member wakes the task. (A replica that adopted a checkpoint skipped
        decisions, so its own chain is first brought up to date: state transfer.)"""
        if not member.honest:
            return
        proposal: PpbgProposal = decided.value
        _catch_up(member.state.chain, self.ledger)
        event = self._decisions.get(decided.request_id)
        if event is None or event.triggered:  # the round's block is canonical already: the catch-up brought it
            if member.state.verification != "unsigned":
                member.state.timer_checker.record_all(item.certificate for item in proposal.claims)
            return
        block = member.state.on_decided(proposal)
        member.state.chain.keep_recent(1)
        self.ledger.append_block(block)
        if self.poet_winners is not None and proposal.claims:
            self.poet_winners.append(select_winner(item.certificate for item in proposal.claims).owner_id)
        self.ledger.keep_recent(self._blocks_to_keep())
        del self._decisions[decided.request_id]
        event.succeed((proposal, decided.view, block))

    def _blocks_to_keep(self) -> int:
        """The canonical ledger's window in memory (the full ledger is in the event log, block_committed.encoded):
        the recent blocks within `ledger_blocks_in_memory` and, beyond the head, `ledger_transactions_in_memory`
        transactions, but never fewer than the honest member furthest behind still needs (`_catch_up`)."""
        blocks = self.ledger.blocks
        keep, transactions = 1, 0
        for block in reversed(blocks[:-1]):
            transactions += len(block.txs)
            if keep >= self.config.ledger_blocks_in_memory or transactions > self.config.ledger_transactions_in_memory:
                break
            keep += 1
        behind = min(item.state.chain.head.height for item in self.members.values() if item.honest)
        return max(keep, blocks[-1].height - behind)

    def rejection_reasons(self, round_index: int, decided_claims: Sequence[Any]) -> dict[str, str]:
        """Why the screening of the round's proposal left claims out, by provider name: from a member whose
        screening gave the decided claims, an honest one if any did, else a Byzantine one (a faulty member that
        votes wrongly may still propose what it screened, and its proposal be decided); empty if none did."""
        decided = tuple(decided_claims)
        for member in sorted(self.members.values(), key=lambda member: not member.honest):  # honest first
            screened = member.state.last_screening
            if screened is not None and screened[0] == round_index and screened[1].accepted == decided:
                return {
                    item.provider_id: item.reason.value
                    + (f" ({item.timer_verdict.value})" if item.timer_verdict is not None else "")
                    for item in screened[1].rejected
                }
        return {}

    def waiting_for(self) -> str:
        """Why the committee has not decided (from the first honest member's status)."""
        for member in self.members.values():
            if member.honest:
                return member.state.replica.status().waiting_for
        return "no honest member"


def _catch_up(chain: Chain, canonical: Chain) -> None:
    """Append to `chain` the canonical blocks it lacks (state transfer), then keep only its head."""
    for block in canonical.blocks_after(chain.head.height):
        chain.append_block(block)
    chain.keep_recent(1)


def aggregate_digest(update_digests: Sequence[str]) -> str:
    """SHA-256 over the accepted updates' digests in claim order: the aggregate the proposal commits to."""
    return hashlib.sha256("".join(update_digests).encode()).hexdigest()


__all__ = ["Block", "Committee", "CommitteeNode", "RoundTraffic", "aggregate_digest"]
