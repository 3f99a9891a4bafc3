"""DataProvider: a Mesa agent with a private type and a strategy, whose life is SimPy processes.

A provider's type (SPEC A.1, B.1) is private: it is held in a frozen record that only the provider itself and
the market's accounting (nature, which pays utilities) read; other agents see only what the provider sends.
Its lifetime is a SimPy process (it leaves when it ends; a provider that never leaves has none); the overlay
hands it each message as it arrives (`on_message`), and a round announcement it planned to answer starts a
contribution process: train, stamp (PoET), sign and send an update (Algorithm 1). With modelled signatures
(`committee.verification` "modelled", market/consensus/signatures.py) the claim, the wait timer and the
certificate carry binding tags instead of Ed25519 signatures, and the provider waits `committee.signature_sign_s`
for each of the three. `remove()` interrupts the
lifetime process and takes the provider off the overlay, so a contribution under way finds it offline and
stops; nothing of a departed provider runs on.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from flmarket.agents.base import MarketAgent
from flmarket.agents.messages import Message
from flmarket.agents.strategies.base import PreviousOutcome, Strategy
from flmarket.market.consensus.poet import CompromisedTimer, TrustedTimer, WaitCertificate, WaitTimer
from flmarket.market.consensus.ppbg import TimestampedClaim
from flmarket.market.consensus.signatures import Signer, make_signer
from flmarket.market.costs import computation_cost, privacy_cost, unit_cost
from flmarket.market.errors import MarketError
from flmarket.market.fl.backend import LocalUpdate
from flmarket.market.ledger import ProviderClaim, SignedClaim, derive_private_key, public_key_bytes

if TYPE_CHECKING:
    from flmarket.sim.model import MarketModel

UPDATE_HEADER_BYTES = 512
BYTES_PER_PARAMETER = 4


@dataclass(frozen=True, slots=True)
class ProviderType:
    """The private type of a data provider, drawn from the scenario's prior (SPEC A.1, B.1)."""

    unit_revenue: float
    participation_cost: float
    cpu_frequency: float
    cycles_per_batch: float
    batch_size: float
    memory: float
    memory_use_ratio: float
    privacy_budget: float
    initial_stake: float


@dataclass(frozen=True)
class RoundAnnouncement:
    """What the committee broadcasts at the start of an aggregation round (Algorithm 1, lines 3 and 12)."""

    task: int
    round: int
    request_round: int
    local_iterations: int
    deadline: float
    collector: int


@dataclass(frozen=True)
class UpdateUpload:
    """A provider's upload: the timestamped, signed claim M(gamma_i, C_unit), the perturbed update and the privacy
    cost C_pr(u~) = eps_i ln(1 + ||u~||_1) inside the claimed C_unit (B 5), which the committee recomputes."""

    claim: TimestampedClaim
    update: LocalUpdate
    task: int
    round: int
    sent_at: float
    privacy_cost: float = 0.0


class DataProvider(MarketAgent):
    """A strategic data provider: chooses its participation per task, trains, claims, earns, may leave."""

    # Slots keep a population of idle providers small (Mesa's own attributes stay in the instance dict).
    __slots__ = (
        "ordinal",
        "name",
        "_private_type",
        "strategy",
        "strategy_label",
        "_random_bits",
        "approvals",
        "balance",
        "previous",
        "tasks_played",
        "total_utility",
        "last_payoff",
        "online",
        "planned_rounds",
        "behaviour",
        "_computation_cost",
        "_claim_signer",
        "_timer",
        "process",
        "data_size",
        "_contributing",
    )

    def __init__(
        self,
        model: MarketModel,
        ordinal: int,
        private_type: ProviderType,
        strategy: Strategy,
        strategy_label: str,
        rng: np.random.Generator,
        lifetime_s: float,
        approvals: tuple[str, ...],
    ) -> None:
        super().__init__(model)
        self.ordinal = ordinal
        self.name = f"p{self.unique_id}"
        self._private_type = private_type
        self.strategy = strategy
        self.strategy_label = strategy_label
        self._random_bits = rng.bit_generator  # its stream; see `generator`
        self.approvals = approvals
        self.balance = private_type.initial_stake
        self.previous: PreviousOutcome | None = None
        self.tasks_played = 0
        self.data_size = 0  # |D_i|: the learning backend sets it when the provider registers
        self._contributing: RoundAnnouncement | None = None  # the round of the contribution in progress
        self.total_utility = 0.0
        self.last_payoff = 0.0
        self.online = True
        self.planned_rounds = 0
        self.behaviour = "honest"
        scenario = model.scenario
        self._computation_cost = float(
            computation_cost(
                private_type.cpu_frequency,
                private_type.cycles_per_batch,
                private_type.batch_size,
                private_type.memory_use_ratio,
                private_type.memory,
                cost_weight=scenario.mechanism.cost_weight,
                energy_coefficient=scenario.mechanism.energy_coefficient,
            )
        )
        if not self._computation_cost >= 1.0:  # docs/spec.md A.3: ln C_com, (B 6)'s computation part, is >= 0
            raise MarketError(
                f"providers: a drawn type has C_com = {self._computation_cost:.6g} < 1 (B 3; cpu_frequency = "
                f"{private_type.cpu_frequency:.6g}, cycles_per_batch = {private_type.cycles_per_batch:.6g}, "
                f"batch_size = {private_type.batch_size:.6g}, memory_use_ratio = {private_type.memory_use_ratio:.6g}"
                f", memory = {private_type.memory:.6g}), so ln C_com in the unit cost (B 6) would be a negative "
                "cost; raise these priors (Table 3's types have C_com = 2882.4)"
            )
        self._claim_signer: Signer | None = None
        self._timer: TrustedTimer | None = None
        if scenario.committee.verification != "unsigned":
            modelled = scenario.committee.verification == "modelled"
            claim_key = derive_private_key(scenario.run.seed, f"provider-claim-{ordinal}")
            claim_public_key = public_key_bytes(claim_key)
            self._claim_signer = make_signer(claim_key, modelled, claim_public_key)
            timer_key = derive_private_key(scenario.run.seed, f"provider-timer-{ordinal}")
            faults = scenario.faults
            if ordinal < faults.compromised_timers:  # a fault: short waits, genuinely signed (CompromisedTimer)
                self._timer = CompromisedTimer(
                    self.name,
                    timer_key,
                    rng,
                    model.committee.poet_settings,
                    modelled_signatures=modelled,
                    wait_share=faults.compromised_wait_share,
                )
            else:
                self._timer = TrustedTimer(
                    self.name, timer_key, rng, model.committee.poet_settings, modelled_signatures=modelled
                )
            model.committee.register_provider(self.name, claim_public_key, self._timer.public_key)
        else:  # an unsigned market still screens claims against its known providers; there are no keys to check
            model.committee.register_provider(self.name, b"", b"")
        # A provider that never leaves needs no lifetime process: it lives by the messages it is handed.
        self.process = None if math.isinf(lifetime_s) else model.env.process(self._life(lifetime_s))

    @property
    def generator(self) -> np.random.Generator:
        """The provider's own random stream. Only the bit generator, which holds the stream's state, is kept: a
        Generator around it is made on each use (well under a microsecond), which saves 224 bytes a provider."""
        return np.random.Generator(self._random_bits)

    @property
    def strategy_name(self) -> str:
        """The scenario's name of the strategy the provider plays now (e.g. MMZDA for an alliance member)."""
        return self.strategy_label

    @property
    def computation_cost(self) -> float:
        """C_com(P_i) of this provider (B 3): its own knowledge."""
        return self._computation_cost

    def private_type_for(self, reader: Any) -> ProviderType:
        """The private type, to the provider itself or the market's accounting only (incomplete information)."""
        if reader is not self and reader is not self.model:
            raise PermissionError(f"provider {self.unique_id}: private type is not readable by {reader!r}")
        return self._private_type

    def expected_unit_cost(self, update_l1_norm: float) -> float:
        """C_unit = ln C_com(P_i) + eps_i ln(1 + ||g~||_1) (B 6 with B 3, B 5) for an update of that L1 norm."""
        return float(unit_cost(self._computation_cost, privacy_cost(self._private_type.privacy_budget, update_l1_norm)))

    def choose_action(self, game: Any, player_index: int) -> int:
        """Pick y_i for the coming task from the previous outcome with the provider's strategy (SPEC C)."""
        self.strategy.prepare(game, player_index)
        return int(self.strategy.choose(self.previous, self.generator))

    def observe(self, outcome: PreviousOutcome, payoff: float) -> None:
        """Remember the task's outcome and payoff (memory one)."""
        self.previous = outcome
        self.tasks_played += 1
        self.last_payoff = payoff
        self.total_utility += payoff

    def set_strategy(self, label: str, strategy: Strategy) -> None:
        """Switch strategy (imitation or mutation, SPEC C); memory of the last outcome is kept."""
        self.strategy_label = label
        self.strategy = strategy

    # -- processes ------------------------------------------------------------------------------------------
    def _life(self, lifetime_s: float) -> Generator[simpy.Event, Any, None]:
        try:
            yield self.model.env.timeout(lifetime_s)
            self.remove("lifetime")
        except simpy.Interrupt:
            return

    def on_message(self, message: Message) -> None:
        """A round announcement starts this round's contribution if the provider planned to take part."""
        if message.kind == "round_start" and self.online:
            announcement: RoundAnnouncement = message.payload
            if announcement.round < self.planned_rounds and announcement.task == self.model.current_task:
                self.model.env.process(self._contribute(announcement))

    def _contribute(self, announcement: RoundAnnouncement) -> Generator[simpy.Event, Any, None]:
        """Train gamma local iterations, perturb (B 4), stamp with a PoET certificate, sign and send.

        With modelled signatures the claim's and the timer's signatures add `signature_sign_s` each before the
        timer is requested, and the certificate's one after the timer elapsed (its issue time is when it is
        signed), in the timeouts the provider waits anyway (no extra event).

        One contribution at a time: one still training or waiting for its timer when the provider starts the next
        round's is given up (`update_abandoned`). Its round has closed, so its update would be late, and the
        provider's trusted timer holds one timer at a time (SPEC D.1): the newer request replaces the older."""
        self._contributing = announcement
        env = self.model.env
        private = self._private_type
        honest = self.behaviour == "honest"
        committee = self.model.scenario.committee
        sign_s = committee.signature_sign_s if committee.verification == "modelled" else 0.0
        # Resolution: with Table 3's costs gamma_NE often floors to 0 (B 24); a provider that chose to take part
        # trains at least `minimum_local_iterations` (default 1) and the IR shortfall is logged. Set it to 0 to
        # follow the floor literally: then a gamma of 0 means the provider sends nothing.
        iterations = max(self.model.scenario.mechanism.minimum_local_iterations, announcement.local_iterations)
        if iterations == 0:
            return
        update = self.model.backend.local_update(
            self.unique_id, iterations, private.privacy_budget, self.behaviour, self.generator
        )
        if honest:
            training_s = (
                iterations
                * private.cycles_per_batch
                * private.batch_size
                / private.cpu_frequency
                * self.model.scenario.learning.seconds_per_cycle
            )
            yield env.timeout(training_s + 2 * sign_s)
        elif sign_s > 0:
            yield env.timeout(2 * sign_s)
        if not self.online or self._overtaken(announcement):
            return
        # (B 5) on what is uploaded: eps of this release (0 for a free rider, who uses no data) and ||u~||_1
        privacy = float(privacy_cost(update.privacy_spent, update.l1_norm)) if update.privacy_spent > 0 else 0.0
        claim = ProviderClaim(
            self.name,
            announcement.request_round,
            iterations,
            float(unit_cost(self._computation_cost, privacy)),
            update.digest,
        )
        if self._timer is None or self._claim_signer is None:
            signed = SignedClaim(claim, b"")
            timer = _unsigned_timer(self.name, claim, env.now, committee.poet_mean_wait_s)
            yield env.timeout(timer.duration)
            if self._overtaken(announcement):
                return
            stamp = WaitCertificate(timer, claim.digest(), env.now, b"")
        else:
            signed = SignedClaim(claim, self._claim_signer.sign(claim.encode()))
            timer = self._timer.create_wait_timer(env.now, committee.poet_mean_wait_s)
            yield env.timeout(timer.duration + sign_s)
            if self._overtaken(announcement):
                return
            stamp = self._timer.create_wait_certificate(env.now, claim.digest())
        if not self.online:
            return
        upload = UpdateUpload(
            TimestampedClaim(signed, stamp), update, announcement.task, announcement.round, env.now, privacy
        )
        size = UPDATE_HEADER_BYTES + BYTES_PER_PARAMETER * self.model.parameter_count
        self.model.overlay.send(announcement.collector, Message("update", self.unique_id, upload, size))
        self.model.backend.record_release(update)  # its eps counts once it is out (an abandoned one spends none)
        self.model.log_update_sent(self, announcement, update)

    def _overtaken(self, announcement: RoundAnnouncement) -> bool:
        """Whether a later round's contribution began while this one was in progress (then log and give it up)."""
        if self._contributing is announcement:
            return False
        if self.online:
            self.model.log_update_abandoned(self, announcement)
        return True

    def remove(self, reason: str = "removed") -> None:  # type: ignore[override]
        """Leave the market: end the SimPy processes, go offline on the overlay, log, deregister from Mesa."""
        if not self.online:
            return
        self.online = False
        if self.process is not None and self.process.is_alive and self.model.env.active_process is not self.process:
            self.process.interrupt(reason)
        self.model.provider_left(self, reason)
        super().remove()


def _unsigned_timer(owner: str, claim: ProviderClaim, now: float, mean_wait_s: float) -> WaitTimer:
    """A PoET-shaped timer without signatures (verification = "unsigned"): a fixed mean wait, no enclave."""
    return WaitTimer(owner, claim.digest(), now, mean_wait_s, 0.0, mean_wait_s, b"")
