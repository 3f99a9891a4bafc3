"""PBFT agreement inside the committee (SPEC D.2, after Castro and Liskov) as a sans-IO state machine.

A `PbftReplica` takes messages in (`receive`), timer expiries (`on_timer`) and client requests (`submit`) and
returns what to do as frozen records: `Send`, `Broadcast` (to every other replica), `SetTimer`, `CancelTimer`,
`Decided` and `StateTransfer`. It has no clock and no network: the simulation (or a test) delivers messages
and fires timers. Normal case PRE-PREPARE / PREPARE / COMMIT; VIEW-CHANGE / NEW-VIEW with a timer that doubles
on consecutive view changes; checkpoints every `checkpoint_interval` executions make the log stable and
discard everything at or below it, so memory stays bounded on long runs.

Messages are assumed authenticated (by the overlay, as MACs or signatures do in PBFT): a replica trusts the
`sender` field and the messages quoted inside VIEW-CHANGE certificates. Byzantine behaviours are pluggable
`ByzantineBehaviour` policies that rewrite a replica's output (`ByzantineReplica`).
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from flmarket.market.errors import PbftError
from flmarket.market.ledger import canonical_encoding, digest_of, sha256_hex

VIEW_CHANGE_TIMER = "view-change"
NULL_DIGEST = sha256_hex(b"pbft-null-request")
GENESIS_STATE_DIGEST = "0" * 64
HEADER_BYTES = 48  # message type, view, sequence number, sender
DIGEST_BYTES = 32
AUTHENTICATOR_BYTES = 64  # one Ed25519 signature (or a MAC vector of similar size)


# -------------------- quorums
class QuorumRule(enum.Enum):
    """How many matching votes a certificate needs (SPEC D.2)."""

    BYZANTINE = "byzantine"  # ceil((n + f + 1) / 2): 2f + 1 when n = 3f + 1, safe for every n
    TWO_F_PLUS_ONE = "2f+1"  # literally 2f + 1, safe only when n = 3f + 1
    PAPER_MAJORITY = "paper"  # the BGFL paper's "votes > |C|/2 + 1" (Algorithm 2, line 10)


QUORUM_RULES = {
    "byzantine": QuorumRule.BYZANTINE,
    "two_f_plus_one": QuorumRule.TWO_F_PLUS_ONE,
    "paper": QuorumRule.PAPER_MAJORITY,
}
"""The scenario's names of the quorum rules (`committee.quorum_rule`)."""


def quorum_problem(replica_count: int, rule: QuorumRule) -> str | None:
    """Why `rule`'s quorum cannot serve a committee of `replica_count`, or None: a quorum larger than the
    committee is never gathered, and two quorums that need not share a replica (2q - n < 1) can decide two
    values for one sequence number even with no fault (SPEC D.2)."""
    quorum = quorum_size(replica_count, rule)
    if quorum > replica_count:
        return f"gives a quorum of {quorum} votes, which a committee of {replica_count} can never gather"
    if 2 * quorum - replica_count < 1:
        return (
            f"gives a quorum of {quorum} of {replica_count}: two quorums need not share a member (2q - n = "
            f"{2 * quorum - replica_count} < 1), so two values could be decided even without a fault"
        )
    return None


def fault_bound(replica_count: int) -> int:
    """f = floor((n - 1) / 3) (SPEC D.2)."""
    return (replica_count - 1) // 3


def quorum_size(replica_count: int, rule: QuorumRule = QuorumRule.BYZANTINE) -> int:
    """The quorum q of `rule` for n replicas (SPEC D.2); for n = 7 every rule gives 5."""
    if replica_count < 1:
        raise PbftError(f"replica_count: must be >= 1, got {replica_count}")
    faults = fault_bound(replica_count)
    if rule is QuorumRule.BYZANTINE:
        return math.ceil((replica_count + faults + 1) / 2)
    if rule is QuorumRule.TWO_F_PLUS_ONE:
        return 2 * faults + 1
    return replica_count // 2 + 2  # the smallest integer > n/2 + 1


def tolerated_byzantine(replica_count: int, quorum: int) -> int:
    """The most Byzantine replicas a quorum q keeps both safe and live (SPEC D.2).

    Safety: two quorums must share an honest replica, 2q - n >= b + 1. Liveness: the honest replicas alone
    must form a quorum, n - b >= q. So b = min(2q - n - 1, n - q), floored at 0.
    """
    return max(0, min(2 * quorum - replica_count - 1, replica_count - quorum))


# -------------------- messages
@dataclass(frozen=True)
class PrePrepare:
    """PRE-PREPARE(view, sequence, digest) from the primary, carrying the proposed value."""

    view: int
    sequence: int
    digest: str
    request_id: str
    value: Any
    sender: str
    value_size_bytes: int = 0
    phase = "PRE-PREPARE"

    @property
    def size_bytes(self) -> int:
        return HEADER_BYTES + DIGEST_BYTES + AUTHENTICATOR_BYTES + self.value_size_bytes


@dataclass(frozen=True)
class Prepare:
    """PREPARE(view, sequence, digest) from a backup."""

    view: int
    sequence: int
    digest: str
    sender: str
    phase = "PREPARE"

    @property
    def size_bytes(self) -> int:
        return HEADER_BYTES + DIGEST_BYTES + AUTHENTICATOR_BYTES


@dataclass(frozen=True)
class Commit:
    """COMMIT(view, sequence, digest) from any replica."""

    view: int
    sequence: int
    digest: str
    sender: str
    phase = "COMMIT"

    @property
    def size_bytes(self) -> int:
        return HEADER_BYTES + DIGEST_BYTES + AUTHENTICATOR_BYTES


@dataclass(frozen=True)
class Checkpoint:
    """CHECKPOINT(sequence, state digest): the replica executed everything up to `sequence`. It lists the
    requests executed in the last stretch of the log, so a replica that adopts it by state transfer drops them
    from its pending set (the part of the replicated state PBFT keeps as the client reply table)."""

    sequence: int
    state_digest: str
    sender: str
    recent_requests: tuple[str, ...] = ()
    phase = "CHECKPOINT"

    @property
    def size_bytes(self) -> int:
        return HEADER_BYTES + DIGEST_BYTES + AUTHENTICATOR_BYTES + DIGEST_BYTES * len(self.recent_requests)


@dataclass(frozen=True)
class PreparedProof:
    """A prepared certificate: the PRE-PREPARE and the q - 1 matching PREPAREs of distinct backups."""

    pre_prepare: PrePrepare
    prepares: tuple[Prepare, ...]

    @property
    def size_bytes(self) -> int:
        return self.pre_prepare.size_bytes + sum(prepare.size_bytes for prepare in self.prepares)


@dataclass(frozen=True)
class ViewChange:
    """VIEW-CHANGE(new view, stable checkpoint and its proof, prepared certificates above it)."""

    new_view: int
    stable_sequence: int
    checkpoint_proof: tuple[Checkpoint, ...]
    prepared: tuple[PreparedProof, ...]
    sender: str
    phase = "VIEW-CHANGE"

    @property
    def size_bytes(self) -> int:
        quoted = sum(item.size_bytes for item in self.checkpoint_proof) + sum(p.size_bytes for p in self.prepared)
        return HEADER_BYTES + AUTHENTICATOR_BYTES + quoted


@dataclass(frozen=True)
class NewView:
    """NEW-VIEW(view, the VIEW-CHANGE messages it rests on, the PRE-PREPAREs it re-issues)."""

    view: int
    view_changes: tuple[ViewChange, ...]
    pre_prepares: tuple[PrePrepare, ...]
    sender: str
    phase = "NEW-VIEW"

    @property
    def size_bytes(self) -> int:
        quoted = sum(item.size_bytes for item in self.view_changes) + sum(p.size_bytes for p in self.pre_prepares)
        return HEADER_BYTES + AUTHENTICATOR_BYTES + quoted


Message = PrePrepare | Prepare | Commit | Checkpoint | ViewChange | NewView


# -------------------- outgoing actions
@dataclass(frozen=True)
class Send:
    """Deliver `message` to replica `to`."""

    to: str
    message: Message


@dataclass(frozen=True)
class Broadcast:
    """Deliver `message` to every other replica (n - 1 point-to-point messages)."""

    message: Message


@dataclass(frozen=True)
class SetTimer:
    """Start (or restart) the timer `name` to fire after `delay_s` simulated seconds."""

    name: str
    delay_s: float


@dataclass(frozen=True)
class CancelTimer:
    """Stop the timer `name` if it runs."""

    name: str


@dataclass(frozen=True)
class Decided:
    """The replica executed `value` (request `request_id`) at `sequence`, committed in `view`."""

    sequence: int
    view: int
    request_id: str
    digest: str
    value: Any


@dataclass(frozen=True)
class StateTransfer:
    """The replica adopted a stable checkpoint it had not executed to; the driver may copy the state."""

    sequence: int
    state_digest: str


Outgoing = Send | Broadcast | SetTimer | CancelTimer | Decided | StateTransfer


@dataclass(frozen=True)
class ReplicaStatus:
    """What a replica is doing and, if it is not progressing, what it waits for."""

    replica_id: str
    view: int
    view_active: bool
    last_executed: int
    stable_sequence: int
    pending_requests: int
    waiting_for: str


# -------------------- the replica
@dataclass
class _Slot:
    """Everything a replica knows about one sequence number."""

    pre_prepares: dict[int, PrePrepare] = field(default_factory=dict)
    prepares: dict[tuple[int, str], dict[str, Prepare]] = field(default_factory=dict)
    commits: dict[tuple[int, str], set[str]] = field(default_factory=dict)
    prepared: PreparedProof | None = None
    commit_sent_views: set[int] = field(default_factory=set)
    committed: PrePrepare | None = None


def default_value_digest(value: Any) -> str:
    """A value's digest: its own `digest()` if it has one, else SHA-256 of its canonical encoding."""
    digest_method = getattr(value, "digest", None)
    if callable(digest_method):
        return str(digest_method())
    return digest_of(value)


def default_value_size(value: Any) -> int:
    """Estimated wire size of a value: its own `size_bytes` if it has one, else its canonical encoding."""
    size = getattr(value, "size_bytes", None)
    if isinstance(size, int):
        return size
    try:
        return len(canonical_encoding(value))
    except ValueError:
        return len(repr(value))


class PbftReplica:
    """One PBFT replica (SPEC D.2). `replica_ids` (the committee, in order) fixes primary = view mod n.

    `make_proposal(request_id, payload)` turns a submitted request into the value the primary proposes
    (default: the payload); `validate(request_id, value)` is the backups' application check (default: accept).
    """

    def __init__(
        self,
        replica_id: str,
        replica_ids: Sequence[str],
        *,
        quorum_rule: QuorumRule = QuorumRule.BYZANTINE,
        view_change_timeout_s: float = 1.0,
        checkpoint_interval: int = 10,
        log_window: int | None = None,
        make_proposal: Callable[[str, Any], Any] | None = None,
        validate: Callable[[str, Any], bool] | None = None,
        value_digest: Callable[[Any], str] = default_value_digest,
        value_size: Callable[[Any], int] = default_value_size,
        executed_memory: int = 4096,
    ) -> None:
        ids = tuple(replica_ids)
        if len(set(ids)) != len(ids) or not ids:
            raise PbftError(f"replica_ids: must be non-empty and distinct, got {ids}")
        if replica_id not in ids:
            raise PbftError(f"replica_id: must be one of replica_ids {ids}, got {replica_id!r}")
        if not view_change_timeout_s > 0:
            raise PbftError(f"view_change_timeout_s: must be > 0, got {view_change_timeout_s}")
        if checkpoint_interval < 1:
            raise PbftError(f"checkpoint_interval: must be >= 1, got {checkpoint_interval}")
        window = 2 * checkpoint_interval if log_window is None else log_window
        if window < checkpoint_interval:
            raise PbftError(f"log_window: must be >= checkpoint_interval {checkpoint_interval}, got {window}")
        self.replica_id = replica_id
        self.replica_ids = ids
        self.quorum = quorum_size(len(ids), quorum_rule)
        self.faults = fault_bound(len(ids))
        self.view_change_timeout_s = view_change_timeout_s
        self.checkpoint_interval = checkpoint_interval
        self.log_window = window
        self._make_proposal = make_proposal or (lambda request_id, payload: payload)
        self._validate = validate or (lambda request_id, value: True)
        self._value_digest = value_digest
        self._value_size = value_size

        self.view = 0
        self.view_active = True
        self.last_executed = 0
        self.state_digest = GENESIS_STATE_DIGEST
        self.stable_sequence = 0
        self.stable_proof: tuple[Checkpoint, ...] = ()
        self.consecutive_view_changes = 0
        self.rejected_pre_prepares = 0
        self._next_sequence = 0
        self._slots: dict[int, _Slot] = {}
        self._checkpoints: dict[int, dict[str, Checkpoint]] = {}
        self._own_checkpoints: dict[int, str] = {}
        self._pending: OrderedDict[str, Any] = OrderedDict()
        self._in_flight: set[str] = set()
        self._proposed: set[str] = set()
        self._executed_order: deque[str] = deque(maxlen=executed_memory)
        self._recent_requests: deque[tuple[int, str]] = deque()
        self._executed: set[str] = set()
        self._withdrawn_order: deque[str] = deque(maxlen=executed_memory)
        self._withdrawn: set[str] = set()
        self._view_changes: dict[int, dict[str, ViewChange]] = {}
        self._new_view_sent: set[int] = set()
        self._future: dict[int, list[PrePrepare | Prepare | Commit]] = {}
        self._timer_running = False

    # ---- helpers
    @property
    def replica_count(self) -> int:
        return len(self.replica_ids)

    def primary_of(self, view: int) -> str:
        """Primary of `view` = replica_ids[view mod n] (SPEC D.2)."""
        return self.replica_ids[view % self.replica_count]

    @property
    def is_primary(self) -> bool:
        return self.primary_of(self.view) == self.replica_id

    def request_digest(self, request_id: str, value: Any) -> str:
        """The digest agreed on: SHA-256 over the request id and the value's digest (null requests fixed)."""
        if request_id == "" and value is None:
            return NULL_DIGEST
        payload = f"{request_id}\x00{self._value_digest(value)}".encode()
        return hashlib.sha256(payload).hexdigest()

    def _timeout(self) -> float:
        """The view-change timer, doubled for each consecutive view change without progress (SPEC D.2)."""
        return self.view_change_timeout_s * 2.0**self.consecutive_view_changes

    def _in_window(self, sequence: int) -> bool:
        """Sequence numbers a replica stores: up to twice the primary's proposal window above its stable
        checkpoint, so a backup whose checkpoint lags a little behind the primary's drops nothing."""
        return self.stable_sequence < sequence <= self.stable_sequence + 2 * self.log_window

    def _slot(self, sequence: int) -> _Slot:
        slot = self._slots.get(sequence)
        if slot is None:
            slot = self._slots[sequence] = _Slot()
        return slot

    def _waiting(self) -> bool:
        return bool(self._pending) or bool(self._in_flight)

    def _restart_timer(self) -> list[Outgoing]:
        if self._waiting():
            self._timer_running = True
            return [SetTimer(VIEW_CHANGE_TIMER, self._timeout())]
        if self._timer_running:
            self._timer_running = False
            return [CancelTimer(VIEW_CHANGE_TIMER)]
        return []

    def _ensure_timer(self) -> list[Outgoing]:
        if self._timer_running or not self._waiting():
            return []
        self._timer_running = True
        return [SetTimer(VIEW_CHANGE_TIMER, self._timeout())]

    # ---- requests and proposals
    def submit(self, request_id: str, payload: Any) -> list[Outgoing]:
        """A client request reaches this replica: the primary proposes it, every replica starts its timer."""
        if not request_id:
            raise PbftError("request_id: must be a non-empty string, got ''")
        if request_id in self._executed or request_id in self._pending or request_id in self._withdrawn:
            return []
        self._pending[request_id] = payload
        out = self._propose_pending() if self.is_primary and self.view_active else []
        return out + self._ensure_timer()

    def withdraw(self, request_id: str) -> list[Outgoing]:
        """The client gave the request up (its deadline passed, or it was decided and the client moved on):
        a primary no longer proposes it, and a later `submit` of the same id is ignored. A value already
        pre-prepared keeps its sequence number, so the log stays gapless; executing it is the client's no-op."""
        self._pending.pop(request_id, None)
        self._in_flight.discard(request_id)  # later requests, if any, keep the view-change timer running
        self._remember_withdrawn(request_id)
        return self._restart_timer()

    def _propose_pending(self) -> list[Outgoing]:
        out: list[Outgoing] = []
        for request_id, payload in list(self._pending.items()):
            if request_id in self._proposed:
                continue
            if self._next_sequence + 1 > self.stable_sequence + self.log_window:
                break  # the log is full until the next stable checkpoint
            value = self._make_proposal(request_id, payload)
            self._next_sequence += 1
            pre_prepare = PrePrepare(
                view=self.view,
                sequence=self._next_sequence,
                digest=self.request_digest(request_id, value),
                request_id=request_id,
                value=value,
                sender=self.replica_id,
                value_size_bytes=self._value_size(value),
            )
            self._proposed.add(request_id)
            self._slot(pre_prepare.sequence).pre_prepares[self.view] = pre_prepare
            out.append(Broadcast(pre_prepare))
            out += self._check_prepared(pre_prepare.sequence)  # a committee of one needs no PREPARE: it commits
        return out

    # ---- message dispatch
    def receive(self, message: Message) -> list[Outgoing]:
        """Handle one delivered message; messages from unknown senders or from itself are ignored."""
        if message.sender not in self.replica_ids or message.sender == self.replica_id:
            return []
        if isinstance(message, PrePrepare | Prepare | Commit):
            if message.view < self.view:
                return self._on_old_view_message(message)
            if message.view > self.view or not self.view_active:
                self._buffer_future(message)
                return []
            if isinstance(message, PrePrepare):
                return self._on_pre_prepare(message)
            if isinstance(message, Prepare):
                return self._on_prepare(message)
            return self._on_commit(message)
        if isinstance(message, Checkpoint):
            return self._on_checkpoint(message)
        if isinstance(message, ViewChange):
            return self._on_view_change(message)
        if isinstance(message, NewView):
            return self._on_new_view(message)
        raise PbftError(f"message: unknown type {type(message).__name__}")

    def _on_old_view_message(self, message: PrePrepare | Prepare | Commit) -> list[Outgoing]:
        """Messages of an earlier view still prove a decision: q COMMITs for (view, sequence, digest) and
        that view's PRE-PREPARE let a replica that moved on too early execute the value; it votes nothing."""
        if isinstance(message, Prepare) or not self._in_window(message.sequence):
            return []
        slot = self._slot(message.sequence)
        if isinstance(message, PrePrepare):
            digest_ok = self.request_digest(message.request_id, message.value) == message.digest
            if message.sender != self.primary_of(message.view) or not digest_ok:
                return []
            slot.pre_prepares.setdefault(message.view, message)
        else:
            slot.commits.setdefault((message.view, message.digest), set()).add(message.sender)
        return self._check_commit_certificate(message.sequence)

    def _check_commit_certificate(self, sequence: int) -> list[Outgoing]:
        slot = self._slots.get(sequence)
        if slot is None or slot.committed is not None:
            return []
        for (view, digest), voters in slot.commits.items():
            pre_prepare = slot.pre_prepares.get(view)
            if len(voters) >= self.quorum and pre_prepare is not None and pre_prepare.digest == digest:
                slot.committed = pre_prepare
                return self._execute_ready()
        return []

    def _buffer_future(self, message: PrePrepare | Prepare | Commit) -> None:
        if message.view > self.view + self.replica_count:
            return  # too far ahead: a correct replica catches up through NEW-VIEW and checkpoints
        buffered = self._future.setdefault(message.view, [])
        if len(buffered) < 4 * self.replica_count * self.log_window:
            buffered.append(message)

    def _on_pre_prepare(self, pre_prepare: PrePrepare) -> list[Outgoing]:
        if pre_prepare.sender != self.primary_of(self.view) or not self._in_window(pre_prepare.sequence):
            return []
        return self._accept_pre_prepare(pre_prepare)

    def _accept_pre_prepare(self, pre_prepare: PrePrepare, reissued: bool = False) -> list[Outgoing]:
        """Store a PRE-PREPARE and vote PREPARE for it. A fresh value must pass the application's `validate`;
        a value re-issued by a NEW-VIEW is not validated again: it carries a prepared certificate (a quorum,
        with at least f + 1 honest replicas, validated it in its own view), and validating it now, against
        the application's current state, would judge an old request by a new round's rules (SPEC D.2)."""
        slot = self._slot(pre_prepare.sequence)
        if pre_prepare.view in slot.pre_prepares:
            return []  # one pre-prepare per (view, sequence): a second, conflicting one is equivocation
        is_null = pre_prepare.digest == NULL_DIGEST and pre_prepare.request_id == ""
        if not is_null:
            digest_ok = self.request_digest(pre_prepare.request_id, pre_prepare.value) == pre_prepare.digest
            if not digest_ok or not (reissued or self._validate(pre_prepare.request_id, pre_prepare.value)):
                self.rejected_pre_prepares += 1
                return []
        slot.pre_prepares[pre_prepare.view] = pre_prepare
        out: list[Outgoing] = []
        request_id = pre_prepare.request_id
        if not is_null and request_id not in self._executed and request_id not in self._withdrawn:
            self._in_flight.add(request_id)
            out += self._ensure_timer()
        if pre_prepare.sender != self.replica_id:
            prepare = Prepare(pre_prepare.view, pre_prepare.sequence, pre_prepare.digest, self.replica_id)
            slot.prepares.setdefault((prepare.view, prepare.digest), {})[self.replica_id] = prepare
            out.append(Broadcast(prepare))
        return out + self._check_prepared(pre_prepare.sequence)

    def _on_prepare(self, prepare: Prepare) -> list[Outgoing]:
        if prepare.sender == self.primary_of(prepare.view) or not self._in_window(prepare.sequence):
            return []
        slot = self._slot(prepare.sequence)
        slot.prepares.setdefault((prepare.view, prepare.digest), {})[prepare.sender] = prepare
        return self._check_prepared(prepare.sequence)

    def _check_prepared(self, sequence: int) -> list[Outgoing]:
        slot = self._slots.get(sequence)
        if slot is None or self.view in slot.commit_sent_views:
            return []
        pre_prepare = slot.pre_prepares.get(self.view)
        if pre_prepare is None:
            return []
        votes = slot.prepares.get((self.view, pre_prepare.digest), {})
        if len(votes) < self.quorum - 1:
            return []
        chosen = tuple(votes[sender] for sender in sorted(votes)[: self.quorum - 1])
        slot.prepared = PreparedProof(pre_prepare, chosen)
        slot.commit_sent_views.add(self.view)
        commit = Commit(self.view, sequence, pre_prepare.digest, self.replica_id)
        slot.commits.setdefault((self.view, pre_prepare.digest), set()).add(self.replica_id)
        return [Broadcast(commit), *self._check_committed(sequence)]

    def _on_commit(self, commit: Commit) -> list[Outgoing]:
        if not self._in_window(commit.sequence):
            return []
        self._slot(commit.sequence).commits.setdefault((commit.view, commit.digest), set()).add(commit.sender)
        return self._check_committed(commit.sequence)

    def _check_committed(self, sequence: int) -> list[Outgoing]:
        slot = self._slots.get(sequence)
        if slot is None or slot.committed is not None or slot.prepared is None:
            return []
        pre_prepare = slot.prepared.pre_prepare
        if pre_prepare.view != self.view or self.view not in slot.commit_sent_views:
            return []
        if len(slot.commits.get((self.view, pre_prepare.digest), ())) < self.quorum:
            return []
        slot.committed = pre_prepare
        return self._execute_ready()

    # ---- execution and checkpoints
    def _execute_ready(self) -> list[Outgoing]:
        out: list[Outgoing] = []
        progressed = False
        while True:
            slot = self._slots.get(self.last_executed + 1)
            if slot is None or slot.committed is None:
                break
            pre_prepare = slot.committed
            self.last_executed += 1
            progressed = True
            self.state_digest = sha256_hex(f"{self.state_digest}{pre_prepare.digest}".encode())
            if pre_prepare.digest != NULL_DIGEST and pre_prepare.request_id not in self._executed:
                request_id = pre_prepare.request_id
                self._pending.pop(request_id, None)
                self._in_flight.discard(request_id)
                self._proposed.discard(request_id)
                self._remember_executed(request_id)
                self._recent_requests.append((self.last_executed, request_id))
                out.append(
                    Decided(
                        self.last_executed,
                        pre_prepare.view,
                        request_id,
                        pre_prepare.digest,
                        pre_prepare.value,
                    )
                )
            if self.last_executed % self.checkpoint_interval == 0:
                out += self._emit_checkpoint()
        if progressed and self.view_active:
            self.consecutive_view_changes = 0
            out += self._restart_timer()
            if self.is_primary:
                out += self._propose_pending()
        # A replica between views that executes an old view's decision stays in its view change, with its
        # backoff and timer: resetting them put it a view ahead of the others, whose timers then doubled in step
        # with its own, so with f silent replicas the honest ones could never meet in one view again.
        return out

    def _remember_executed(self, request_id: str) -> None:
        _remember_bounded(self._executed, self._executed_order, request_id)

    def _remember_withdrawn(self, request_id: str) -> None:
        _remember_bounded(self._withdrawn, self._withdrawn_order, request_id)

    def _emit_checkpoint(self) -> list[Outgoing]:
        sequence = self.last_executed
        horizon = sequence - 2 * self.log_window - self.checkpoint_interval
        while self._recent_requests and self._recent_requests[0][0] <= horizon:
            self._recent_requests.popleft()
        recent = tuple(request_id for _, request_id in self._recent_requests)
        checkpoint = Checkpoint(sequence, self.state_digest, self.replica_id, recent)
        self._own_checkpoints[sequence] = self.state_digest
        self._checkpoints.setdefault(sequence, {})[self.replica_id] = checkpoint
        return [Broadcast(checkpoint), *self._check_stable(sequence)]

    def _on_checkpoint(self, checkpoint: Checkpoint) -> list[Outgoing]:
        if checkpoint.sequence <= self.stable_sequence:
            return []
        if checkpoint.sequence > self.stable_sequence + 2 * self.log_window + self.checkpoint_interval:
            return []  # beyond anything this replica could hold; it will catch up through later checkpoints
        self._checkpoints.setdefault(checkpoint.sequence, {})[checkpoint.sender] = checkpoint
        return self._check_stable(checkpoint.sequence)

    def _check_stable(self, sequence: int) -> list[Outgoing]:
        received = self._checkpoints.get(sequence, {})
        by_digest: dict[str, list[Checkpoint]] = {}
        for checkpoint in received.values():
            by_digest.setdefault(checkpoint.state_digest, []).append(checkpoint)
        for state_digest, matching in by_digest.items():
            if len(matching) < self.quorum:
                continue
            proof = tuple(sorted(matching, key=lambda item: item.sender)[: self.quorum])
            own = self._own_checkpoints.get(sequence)
            if own == state_digest:
                self._make_stable(sequence, proof)
                return self._propose_pending() if self.is_primary and self.view_active else []
            beyond_window = sequence > self.stable_sequence + 2 * self.log_window
            if own is None and sequence > self.last_executed and (beyond_window or not self.view_active):
                # It cannot take part in those sequence numbers itself (beyond its window, or it left the
                # view the others still work in): adopt the quorum's state.
                return self._transfer_state(sequence, state_digest, proof)
        return []

    def _transfer_state(self, sequence: int, state_digest: str, proof: tuple[Checkpoint, ...]) -> list[Outgoing]:
        """Adopt a stable checkpoint this replica lags behind (its quorum holds an honest replica)."""
        self._adopt_state(sequence, state_digest, proof)
        self._make_stable(sequence, proof)
        return [StateTransfer(sequence, state_digest), *self._execute_ready(), *self._restart_timer()]

    def _adopt_state(self, sequence: int, state_digest: str, proof: tuple[Checkpoint, ...]) -> None:
        """Jump to a checkpoint's state; forget the requests that f + 1 of its signers executed."""
        self.last_executed = sequence
        self.state_digest = state_digest
        counts: dict[str, int] = {}
        for checkpoint in proof:
            for request_id in dict.fromkeys(checkpoint.recent_requests):  # de-duplicated, in a fixed order
                counts[request_id] = counts.get(request_id, 0) + 1
        for request_id, count in counts.items():
            if count >= self.faults + 1:
                self._pending.pop(request_id, None)
                self._in_flight.discard(request_id)
                self._remember_executed(request_id)

    def _make_stable(self, sequence: int, proof: tuple[Checkpoint, ...]) -> None:
        """Garbage-collect the log at and below a stable checkpoint (SPEC D.2)."""
        if sequence <= self.stable_sequence:
            return
        self.stable_sequence = sequence
        self.stable_proof = proof
        self._next_sequence = max(self._next_sequence, sequence)
        for table in (self._slots, self._checkpoints, self._own_checkpoints):
            for old in [key for key in table if key <= sequence]:
                del table[old]

    # ---- view change
    def on_timer(self, name: str) -> list[Outgoing]:
        """The view-change timer expired: move to the next view (SPEC D.2)."""
        if name != VIEW_CHANGE_TIMER or not self._timer_running:
            return []
        self._timer_running = False
        return self._start_view_change(self.view + 1)

    def _start_view_change(self, new_view: int) -> list[Outgoing]:
        self.view = new_view
        self.view_active = False
        self.consecutive_view_changes += 1
        prepared = tuple(
            slot.prepared
            for sequence, slot in sorted(self._slots.items())
            if slot.prepared is not None and sequence > self.stable_sequence
        )
        view_change = ViewChange(new_view, self.stable_sequence, self.stable_proof, prepared, self.replica_id)
        self._view_changes.setdefault(new_view, {})[self.replica_id] = view_change
        for old_view in [view for view in self._view_changes if view < new_view]:
            del self._view_changes[old_view]
        for old_view in [view for view in self._future if view < new_view]:
            del self._future[old_view]
        self._timer_running = True
        out: list[Outgoing] = [Broadcast(view_change), SetTimer(VIEW_CHANGE_TIMER, self._timeout())]
        return out + self._try_new_view()

    def _valid_view_change(self, view_change: ViewChange) -> bool:
        if view_change.stable_sequence > 0:
            proof = view_change.checkpoint_proof
            senders = {item.sender for item in proof}
            digests = {item.state_digest for item in proof}
            sequences = {item.sequence for item in proof}
            if len(senders) < self.quorum or len(digests) != 1 or sequences != {view_change.stable_sequence}:
                return False
            if not senders <= set(self.replica_ids):
                return False
        for certificate in view_change.prepared:
            pre_prepare = certificate.pre_prepare
            if pre_prepare.view >= view_change.new_view or pre_prepare.sequence <= view_change.stable_sequence:
                return False
            if pre_prepare.sender != self.primary_of(pre_prepare.view):
                return False
            if self.request_digest(pre_prepare.request_id, pre_prepare.value) != pre_prepare.digest:
                return False
            voters = {prepare.sender for prepare in certificate.prepares}
            matching = all(
                (prepare.view, prepare.sequence, prepare.digest)
                == (pre_prepare.view, pre_prepare.sequence, pre_prepare.digest)
                for prepare in certificate.prepares
            )
            if not matching or len(voters) < self.quorum - 1 or pre_prepare.sender in voters:
                return False
            if not voters <= set(self.replica_ids):
                return False
        return True

    def _on_view_change(self, view_change: ViewChange) -> list[Outgoing]:
        if view_change.new_view < self.view or (view_change.new_view == self.view and self.view_active):
            return []
        if not self._valid_view_change(view_change):
            return []
        self._view_changes.setdefault(view_change.new_view, {})[view_change.sender] = view_change
        # Join a view change that f + 1 replicas already asked for (at least one of them is honest).
        higher = {
            sender: view for view, messages in self._view_changes.items() if view > self.view for sender in messages
        }
        if len(higher) >= self.faults + 1:
            return self._start_view_change(min(higher.values()))
        return self._try_new_view()

    def new_view_pre_prepares(
        self, view: int, view_changes: Iterable[ViewChange]
    ) -> tuple[int, tuple[PrePrepare, ...]]:
        """The PRE-PREPAREs a NEW-VIEW re-issues (SPEC D.2): for each sequence above the highest stable
        checkpoint, the value of the highest-view prepared certificate, or a null request if there is none."""
        view_changes = list(view_changes)
        low = max(item.stable_sequence for item in view_changes)
        best: dict[int, PrePrepare] = {}
        for item in view_changes:
            for certificate in item.prepared:
                pre_prepare = certificate.pre_prepare
                if pre_prepare.sequence <= low:
                    continue
                current = best.get(pre_prepare.sequence)
                if current is None or pre_prepare.view > current.view:
                    best[pre_prepare.sequence] = pre_prepare
        high = max(best, default=low)
        primary = self.primary_of(view)
        reissued = []
        for sequence in range(low + 1, high + 1):
            chosen = best.get(sequence)
            if chosen is None:
                reissued.append(PrePrepare(view, sequence, NULL_DIGEST, "", None, primary, 0))
            else:
                reissued.append(replace(chosen, view=view, sender=primary))
        return low, tuple(reissued)

    def _try_new_view(self) -> list[Outgoing]:
        if self.view_active or self.primary_of(self.view) != self.replica_id or self.view in self._new_view_sent:
            return []
        received = self._view_changes.get(self.view, {})
        if len(received) < self.quorum:
            return []
        view_changes = tuple(received[sender] for sender in sorted(received))
        _, reissued = self.new_view_pre_prepares(self.view, view_changes)
        new_view = NewView(self.view, view_changes, reissued, self.replica_id)
        self._new_view_sent.add(self.view)
        return [Broadcast(new_view), *self._enter_view(new_view)]

    def _on_new_view(self, new_view: NewView) -> list[Outgoing]:
        if new_view.view == self.view and self.view_active:
            return []
        if new_view.sender != self.primary_of(new_view.view):
            return []
        senders = {item.sender for item in new_view.view_changes}
        if len(senders) < self.quorum or len(senders) != len(new_view.view_changes):
            return []
        if not senders <= set(self.replica_ids):
            return []
        for item in new_view.view_changes:
            if item.new_view != new_view.view or not self._valid_view_change(item):
                return []
        _, expected = self.new_view_pre_prepares(new_view.view, new_view.view_changes)
        if expected != new_view.pre_prepares:
            return []
        if new_view.view < self.view:
            # This replica moved past that view; its re-issued values may still complete commit certificates.
            out: list[Outgoing] = []
            for pre_prepare in new_view.pre_prepares:
                out += self._on_old_view_message(pre_prepare)
            return out
        return self._enter_view(new_view)

    def _enter_view(self, new_view: NewView) -> list[Outgoing]:
        out: list[Outgoing] = []
        self.view = new_view.view
        self.view_active = True
        self._proposed = set()
        self._in_flight = {
            item.request_id
            for item in new_view.pre_prepares
            if item.request_id and item.request_id not in self._executed and item.request_id not in self._withdrawn
        }
        for old_view in [view for view in self._view_changes if view <= new_view.view]:
            del self._view_changes[old_view]
        best_checkpoint = max(new_view.view_changes, key=lambda item: item.stable_sequence)
        if best_checkpoint.stable_sequence > self.stable_sequence:
            sequence = best_checkpoint.stable_sequence
            if sequence > self.last_executed:
                state_digest = best_checkpoint.checkpoint_proof[0].state_digest
                self._adopt_state(sequence, state_digest, best_checkpoint.checkpoint_proof)
                out.append(StateTransfer(sequence, state_digest))
            self._make_stable(sequence, best_checkpoint.checkpoint_proof)
        self._next_sequence = max(
            [self.stable_sequence, *(pre_prepare.sequence for pre_prepare in new_view.pre_prepares)]
        )
        for pre_prepare in new_view.pre_prepares:
            if pre_prepare.request_id:
                self._proposed.add(pre_prepare.request_id)
            if self._in_window(pre_prepare.sequence):
                out += self._accept_pre_prepare(pre_prepare, reissued=True)
        for message in self._future.pop(self.view, []):
            out += self.receive(message)
        for old_view in [view for view in self._future if view < self.view]:
            del self._future[old_view]
        out += self._restart_timer()
        if self.is_primary:
            out += self._propose_pending()
        out += self._execute_ready()
        return out

    # ---- introspection
    def status(self) -> ReplicaStatus:
        """The replica's progress and, when stuck, the certificate it is short of."""
        next_sequence = self.last_executed + 1
        if not self.view_active:
            received = len(self._view_changes.get(self.view, {}))
            waiting = (
                f"NEW-VIEW for view {self.view} from {self.primary_of(self.view)}: "
                f"{received} of {self.quorum} VIEW-CHANGE messages received"
                if received < self.quorum
                else f"NEW-VIEW for view {self.view} from {self.primary_of(self.view)}, which has not sent it: "
                f"this replica holds {received} VIEW-CHANGE messages, a quorum of {self.quorum}"
            )
        elif not self._waiting():
            waiting = "nothing: no pending request"
        else:
            slot = self._slots.get(next_sequence)
            pre_prepare = slot.pre_prepares.get(self.view) if slot else None
            if slot is None or pre_prepare is None:
                waiting = f"PRE-PREPARE for sequence {next_sequence} from primary {self.primary_of(self.view)}"
            elif self.view not in slot.commit_sent_views:
                votes = len(slot.prepares.get((self.view, pre_prepare.digest), {}))
                waiting = f"PREPARE quorum for sequence {next_sequence}: {votes} of {self.quorum - 1} votes"
            else:
                votes = len(slot.commits.get((self.view, pre_prepare.digest), ()))
                waiting = f"COMMIT quorum for sequence {next_sequence}: {votes} of {self.quorum} votes"
        return ReplicaStatus(
            self.replica_id,
            self.view,
            self.view_active,
            self.last_executed,
            self.stable_sequence,
            len(self._pending),
            waiting,
        )

    def log_size(self) -> int:
        """Number of stored messages and slots: stays bounded by the log window on long runs."""
        stored_votes = sum(
            len(votes) for slot in self._slots.values() for votes in [*slot.prepares.values(), *slot.commits.values()]
        )
        checkpoints = sum(len(item) for item in self._checkpoints.values())
        buffered = sum(len(item) for item in self._future.values())
        return len(self._slots) + stored_votes + checkpoints + buffered + len(self._executed)


# -------------------- Byzantine behaviours
class ByzantineBehaviour(Protocol):
    """A fault policy: rewrites what a replica would send (SPEC D.2 Byzantine behaviours)."""

    name: str

    def rewrite(self, replica: PbftReplica, outgoing: list[Outgoing]) -> list[Outgoing]: ...


def _is_message(item: Outgoing) -> bool:
    return isinstance(item, Send | Broadcast)


def _message_of(item: Send | Broadcast) -> Message:
    return item.message


@dataclass(frozen=True)
class SilentReplica:
    """A crashed or mute replica: sends nothing at all."""

    name: str = "silent replica"

    def rewrite(self, replica: PbftReplica, outgoing: list[Outgoing]) -> list[Outgoing]:
        return [item for item in outgoing if not _is_message(item)]


@dataclass(frozen=True)
class SilentPrimary:
    """A primary that never proposes: drops its PRE-PREPAREs and NEW-VIEWs, otherwise follows the protocol."""

    name: str = "silent primary"

    def rewrite(self, replica: PbftReplica, outgoing: list[Outgoing]) -> list[Outgoing]:
        return [
            item
            for item in outgoing
            if not (_is_message(item) and isinstance(_message_of(item), PrePrepare | NewView))  # type: ignore[arg-type]
        ]


def _default_conflicting_value(request_id: str, value: Any) -> Any:
    return {"conflicting": True, "original": repr(value)}


@dataclass(frozen=True)
class EquivocatingPrimary:
    """A primary that sends one value to half the backups and a conflicting one to the other half."""

    conflicting_value: Callable[[str, Any], Any] = _default_conflicting_value
    name: str = "equivocating primary"

    def rewrite(self, replica: PbftReplica, outgoing: list[Outgoing]) -> list[Outgoing]:
        result: list[Outgoing] = []
        others = [replica_id for replica_id in replica.replica_ids if replica_id != replica.replica_id]
        for item in outgoing:
            message = item.message if isinstance(item, Broadcast) else None
            if not isinstance(message, PrePrepare) or message.digest == NULL_DIGEST:
                result.append(item)
                continue
            value = self.conflicting_value(message.request_id, message.value)
            twin = replace(message, value=value, digest=replica.request_digest(message.request_id, value))
            half = len(others) // 2
            result += [Send(to, message) for to in others[:half]] + [Send(to, twin) for to in others[half:]]
        return result


@dataclass(frozen=True)
class WrongDigestVoter:
    """A replica whose PREPARE and COMMIT votes carry a digest of nothing that was proposed."""

    name: str = "wrong-digest votes"

    def rewrite(self, replica: PbftReplica, outgoing: list[Outgoing]) -> list[Outgoing]:
        result: list[Outgoing] = []
        for item in outgoing:
            message = item.message if isinstance(item, Broadcast | Send) else None
            if isinstance(message, Prepare | Commit):
                forged = sha256_hex(f"forged:{message.digest}".encode())
                message = replace(message, digest=forged)
                item = Broadcast(message) if isinstance(item, Broadcast) else Send(item.to, message)  # type: ignore[union-attr]
            result.append(item)
        return result


def _remember_bounded(members: set[str], order: deque[str], request_id: str) -> None:
    """Add `request_id` to a set whose oldest member is forgotten once `order` (a bounded deque) is full."""
    if len(order) == order.maxlen:
        members.discard(order[0])
    order.append(request_id)
    members.add(request_id)


class ByzantineReplica:
    """A replica whose outputs pass through a Byzantine behaviour; same interface as PbftReplica."""

    def __init__(self, replica: PbftReplica, behaviour: ByzantineBehaviour) -> None:
        self.replica = replica
        self.behaviour = behaviour

    @property
    def replica_id(self) -> str:
        return self.replica.replica_id

    def submit(self, request_id: str, payload: Any) -> list[Outgoing]:
        return self.behaviour.rewrite(self.replica, self.replica.submit(request_id, payload))

    def receive(self, message: Message) -> list[Outgoing]:
        return self.behaviour.rewrite(self.replica, self.replica.receive(message))

    def on_timer(self, name: str) -> list[Outgoing]:
        return self.behaviour.rewrite(self.replica, self.replica.on_timer(name))

    def withdraw(self, request_id: str) -> list[Outgoing]:
        return self.behaviour.rewrite(self.replica, self.replica.withdraw(request_id))

    def status(self) -> ReplicaStatus:
        return self.replica.status()
