"""One FL task from the committee's side: BGFL Algorithm 1 with PPBG-AC (Algorithm 2) in every round.

A `TaskRun` is the SimPy process of one task (one game round of SPEC B.3, SPEC C): the committee is elected
(DPoS), fixes r_max and the pool (B 11, B 13), each online provider chooses its participation with its
strategy; then for every aggregation round the committee broadcasts gamma over the overlay, collects the
timestamped signed updates until the deadline, agrees on {claims, gamma_NE, aggregate, Shapley rewards} by
PBFT, commits the block, aggregates, pays, and logs IR and budget balance. At the end the public-goods payoffs
(SPEC B.1) are paid on the realised participation and strategies evolve (SPEC C).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Generator, Sequence
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from flmarket.agents.committee import RoundTraffic, aggregate_digest
from flmarket.agents.messages import NO_AGENT, Message
from flmarket.agents.provider import DataProvider, RoundAnnouncement, UpdateUpload
from flmarket.agents.strategies.base import PreviousOutcome
from flmarket.agents.strategies.zero_determinant import MMZD, MMZDAMember
from flmarket.market.budget import check_budget_balance, paid_within_budget
from flmarket.market.consensus.pbft import fault_bound
from flmarket.market.consensus.ppbg import RoundInput
from flmarket.market.errors import InfeasibleBudgetError, InfeasibleTargetError, ProposalError
from flmarket.market.ledger import SignedClaim
from flmarket.market.mechanism import RoundSettlement, TaskTerms, configure_task, equilibrium_iterations, settle_round
from flmarket.market.public_goods import check_social_dilemma, welfare_references
from flmarket.market.zero_determinant import ZeroDeterminantDesign

if TYPE_CHECKING:
    from flmarket.sim.model import MarketModel

ROUND_START_BYTES = 1024
CONSENSUS_PATIENCE_TIMEOUTS = 40  # how many view-change timeouts a round may wait for a decision, at least


def consensus_patience_timeouts(committee_size: int) -> float:
    """How many base view-change timeouts a round waits for a decision: 40, or enough for f + 2 view changes
    whose timeouts double (T (2^(f+2) - 1) in all), so that f faulty primaries in a row, the case the committee
    is built to survive (its first members are the faulty ones), cannot stall a round (SPEC D.2). A committee
    of 19 or more with f silent members used to give up after 40 T while its sixth view change was due."""
    return max(float(CONSENSUS_PATIENCE_TIMEOUTS), 2.0 ** (fault_bound(committee_size) + 2))


class RoundMechanism:
    """The committee's deterministic mechanism for the current round, shared by every replica's checks.

    Replicas call `solve_equilibrium(claims)` and `reward_rule(claims, gamma)` on the same claims; the first
    call computes (Shapley values need the round's updates) and the others reuse it, as each honest replica
    would compute the same numbers.
    """

    def __init__(self, model: MarketModel) -> None:
        self.model = model
        self.terms: TaskTerms | None = None
        self.updates: dict[str, UpdateUpload] = {}
        self.request_round = 0
        self._settlements: dict[tuple, RoundSettlement] = {}

    def open_round(self, terms: TaskTerms, request_round: int, uploads: Sequence[UpdateUpload]) -> None:
        """Forget the previous round; remember this round's uploads by provider name."""
        self.terms = terms
        self.request_round = request_round
        self.updates = {}
        for upload in uploads:
            self.updates.setdefault(upload.claim.signed_claim.claim.provider_id, upload)
        self._settlements = {}

    @staticmethod
    def _key(claims: Sequence[SignedClaim]) -> tuple:
        return tuple((claim.claim.provider_id, claim.claim.round_index, claim.claim.update_digest) for claim in claims)

    def _require_open_round(self, claims: Sequence[SignedClaim]) -> TaskTerms:
        """The terms of the open round, if every claim belongs to it; `ProposalError` otherwise, so a replica
        refuses a proposal of another round instead of judging it by this round's uploads."""
        if self.terms is None:
            raise ProposalError("claims: no round is open")
        for claim in claims:
            provider_id, round_index = claim.claim.provider_id, claim.claim.round_index
            if round_index != self.request_round or provider_id not in self.updates:
                raise ProposalError(
                    f"claims: {provider_id}'s claim for round {round_index} is not an upload of the open round "
                    f"{self.request_round}"
                )
        return self.terms

    def audit_claim(self, claim: SignedClaim) -> bool:
        """The claimed privacy cost (B 5) equals eps_i * ln(1 + ||u~||_1) recomputed from the received update (its
        vector's L1 norm on the torch backend, the record's on the surrogate; SPEC A.3 resolution). The claimed
        C_unit = ln C_com + C_pr (B 6) is not checked against it: ln C_com is private, and it is 0 for a device with
        C_com = 1 (the claim record itself refuses C_unit <= 0, and types with C_com < 1 are refused, docs/spec.md
        A.3)."""
        upload = self.updates.get(claim.claim.provider_id)
        if upload is None:
            return False
        update = upload.update
        norm = float(np.abs(update.vector, dtype=np.float64).sum()) if update.vector is not None else update.l1_norm
        recomputed = update.privacy_spent * math.log1p(norm)
        claimed = upload.privacy_cost
        return math.isclose(claimed, recomputed, rel_tol=1e-9, abs_tol=1e-9)

    def solve_equilibrium(self, claims: Sequence[SignedClaim]) -> int:
        """gamma_NE for the next round from the claimed unit costs (B 24, (B 12) cap)."""
        terms = self._require_open_round(claims)
        return equilibrium_iterations(terms, [claim.claim.unit_cost for claim in claims])

    def settlement(self, claims: Sequence[SignedClaim]) -> RoundSettlement:
        """Shapley values and rewards of the round for exactly these claims (B 10, B 13)."""
        key = self._key(claims)
        cached = self._settlements.get(key)
        if cached is not None:
            return cached
        self._require_open_round(claims)
        assert self.terms is not None
        scenario = self.model.scenario
        uploads = [self.updates[claim.claim.provider_id] for claim in claims]
        value = self.model.backend.coalition_value([upload.update for upload in uploads])
        if len(uploads) <= scenario.mechanism.shapley_exact_max and hasattr(value, "values_of"):
            # the exact path (B 10) asks for every coalition: evaluate them in batches first (torch backend)
            ids = [upload.update.provider_id for upload in uploads]
            value.values_of(frozenset(c) for size in range(1, len(ids) + 1) for c in combinations(ids, size))
        settlement = settle_round(
            [upload.update.provider_id for upload in uploads],
            value,
            self.terms.pool_per_round,
            [claim.claim.local_iterations for claim in claims],
            [claim.claim.unit_cost for claim in claims],
            self.model.streams.component(f"shapley-{self.request_round}"),
            exact_max=scenario.mechanism.shapley_exact_max,
            target_relative_error=scenario.mechanism.shapley_target_relative_error,
            max_evaluations=scenario.mechanism.shapley_max_evaluations,
        )
        self._settlements[key] = settlement
        return settlement

    def reward_rule(self, claims: Sequence[SignedClaim], gamma: int) -> dict[str, float]:
        """{provider name: reward} for the round (B 13)."""
        settlement = self.settlement(claims)
        return {claim.claim.provider_id: reward for claim, reward in zip(claims, settlement.rewards, strict=True)}


class TaskRun:
    """The process of one FL task (see module docstring)."""

    def __init__(self, model: MarketModel, task: int, budget: float) -> None:
        self.model = model
        self.task = task
        self.budget = budget
        self.paid = 0.0
        self.committee_fees = 0.0
        log = model.log
        self._round_started = log.emitter("round_started")
        self._claim_rejected = log.emitter("claim_rejected")
        self._consensus = log.emitter("consensus_decided")
        self._block = log.emitter("block_committed")
        self._shapley = log.emitter("shapley_estimated")
        self._reward = log.emitter("reward_paid")
        self._forfeit = log.emitter("reward_forfeited")
        self._round_finished = log.emitter("round_finished")
        self._ir = log.emitter("ir_violation")
        self._budget = log.emitter("budget_check")
        self._action = log.emitter("action_chosen")

    def run(self) -> Generator[simpy.Event, Any, None]:
        """Algorithm 1 for this task, then the public-goods payoffs and strategy evolution."""
        model = self.model
        env = model.env
        scenario = model.scenario
        committee_size = scenario.committee.size
        try:
            terms = configure_task(
                self.budget,
                scenario.committee.fee_ratio,
                [scenario.committee.node_cost] * committee_size,
                scenario.learning.rounds_per_task,
            )
        except InfeasibleBudgetError as error:
            model.log.emit(env.now, "task_rejected", NO_AGENT, task=self.task, reason=str(error))
            return
        model.elect_committee(self.task)
        model.log.emit(
            env.now,
            "task_configured",
            NO_AGENT,
            task=self.task,
            budget=self.budget,
            fee_ratio=terms.fee_ratio,
            round_cap=terms.round_cap,
            rounds=terms.rounds,  # R = min(learning.rounds_per_task, round_cap): the task's y_i in {0..R}
            pool_per_round=terms.pool_per_round,
            committee_cost=terms.committee_cost_per_round,
        )
        players = list(model.online_providers.values())
        actions = self._choose_actions(players, terms)
        model.backend.start_task(self.task)
        model.current_task = self.task
        accepted_rounds: Counter[str] = Counter()
        claimed_costs: defaultdict[str, float] = defaultdict(float)
        rewards: defaultdict[str, float] = defaultdict(float)
        gamma = scenario.mechanism.initial_local_iterations
        for round_index in range(terms.rounds):
            outcome = yield from self._round(terms, round_index, gamma, accepted_rounds, claimed_costs, rewards)
            if outcome is None:
                break
            gamma = outcome
        model.current_task = None
        self._settle_task(terms, players, actions, accepted_rounds, claimed_costs, rewards)

    # -- the task's start -----------------------------------------------------------------------------------
    def _choose_actions(self, players: list[DataProvider], terms: TaskTerms) -> list[int]:
        """Every online provider picks y_i with its strategy (SPEC C); free riders plan to send every round."""
        model = self.model
        if not players:
            model.log.emit(
                model.env.now,
                "task_started",
                NO_AGENT,
                task=self.task,
                players=0,
                theta1=model.theta1,
                is_dilemma=False,
            )
            return []
        game = model.game_of(players, terms.rounds)
        report = check_social_dilemma(game)
        model.log.emit(
            model.env.now,
            "task_started",
            NO_AGENT,
            task=self.task,
            players=len(players),
            theta1=model.theta1,
            is_dilemma=report.is_social_dilemma,
        )
        if not report.is_social_dilemma:
            model.log.emit(
                model.env.now, "dilemma_check", NO_AGENT, task=self.task, message="; ".join(report.problems(game))
            )
        references = welfare_references(game)
        model.log.emit(
            model.env.now,
            "welfare_reference",
            NO_AGENT,
            task=self.task,
            players=len(players),
            optimum_total=references.optimum_total,
            optimum_welfare=references.optimum_welfare,
            full_cooperation_total=references.full_cooperation_total,
            full_cooperation_welfare=references.full_cooperation_welfare,
            nash_welfare=references.nash_welfare,
        )
        model.prepare_strategies(players, terms)
        free_rider_kind = model.scenario.faults.free_rider_kind
        actions = []
        for index, provider in enumerate(players):
            try:
                action = provider.choose_action(game, index)
            except InfeasibleTargetError as error:
                why = str(error).split("; use ")[0].removeprefix("mode: 'exact' but ").removeprefix("target: ")
                raise InfeasibleTargetError(
                    f'zero_determinant.mode: "exact" plays only enforceable targets, but in task {self.task} '
                    f"({len(players)} players, R = {terms.rounds}) the {provider.strategy_label} player "
                    f'{provider.unique_id} cannot: {why}; set it to "auto" (the paper\'s clipped design where that '
                    'happens) or "paper"'
                ) from error
            actions.append(action)
            if provider.strategy_label == "ALLD" and free_rider_kind != "none":
                provider.behaviour, provider.planned_rounds = free_rider_kind, terms.rounds
            else:
                provider.behaviour, provider.planned_rounds = "honest", action
            self._action(model.env.now, provider.unique_id, self.task, provider.strategy_label, action)
        self._report_designs(players)
        return actions

    def _report_designs(self, players: list[DataProvider]) -> None:
        """Log each MMZD or MMZDA design in use that was not in use last task (SPEC B.4: feasibility is reported;
        a clipped infeasible design loses the welfare guarantee). Designs are recomputed when the game changes."""
        model = self.model
        in_use: dict[int, ZeroDeterminantDesign] = {}
        for provider in players:
            strategy = provider.strategy
            if isinstance(strategy, MMZDAMember):
                design, label, members = strategy.alliance.design, "MMZDA", strategy.alliance.members
                leader = players[members[0]].unique_id
            elif isinstance(strategy, MMZD):
                design, label, members, leader = strategy.design, "MMZD", (0,), provider.unique_id
            else:
                continue
            if design is None or id(design) in in_use:
                continue
            in_use[id(design)] = design
            if id(design) not in model.reported_designs:
                largest = design.largest_feasible
                model.log.emit(
                    model.env.now,
                    "zd_design",
                    leader,
                    task=self.task,
                    strategy=label,
                    alliance_size=len(members),
                    mode=design.mode,
                    target=design.target,
                    feasible=design.feasible,
                    largest_feasible=math.nan if largest is None else largest,
                )
        model.reported_designs = in_use  # holding them keeps their ids from being reused

    # -- one aggregation round ------------------------------------------------------------------------------
    def _round(
        self,
        terms: TaskTerms,
        round_index: int,
        gamma: int,
        accepted_rounds: Counter[str],
        claimed_costs: defaultdict[str, float],
        rewards: defaultdict[str, float],
    ) -> Generator[simpy.Event, Any, int | None]:
        model = self.model
        env = model.env
        committee = model.committee
        request_round = model.next_request_round()
        collector = committee.primary
        deadline = env.now + model.scenario.learning.round_duration_s
        model.open_collection(self.task, round_index, deadline)
        announcement = RoundAnnouncement(self.task, round_index, request_round, gamma, deadline, collector.unique_id)
        online = model.online_providers
        model.overlay.broadcast(
            Message("round_start", collector.unique_id, announcement, ROUND_START_BYTES),
            # Only providers that planned this round act on the announcement (DataProvider.on_message).
            interested=lambda node: (
                (provider := online.get(node)) is not None and round_index < provider.planned_rounds
            ),
        )
        self._round_started(env.now, NO_AGENT, self.task, round_index, gamma)
        yield env.timeout(model.scenario.learning.round_duration_s)
        uploads = model.close_collection()
        model.mechanism.open_round(terms, request_round, uploads)
        claims = tuple(upload.claim for upload in model.mechanism.updates.values())
        round_input_digest = aggregate_digest([claim.signed_claim.claim.update_digest for claim in claims])
        committee.traffic = RoundTraffic()
        started = env.now
        decided = committee.submit(
            f"round-{request_round}", RoundInput(request_round, claims, round_input_digest, env.now)
        )
        committee_settings = model.scenario.committee
        patience = env.timeout(
            consensus_patience_timeouts(committee_settings.size) * committee_settings.view_change_timeout_s
        )
        yield decided | patience
        if not decided.triggered:
            waiting_for = committee.waiting_for()
            committee.close_request(request_round)
            model.log.emit(
                env.now, "consensus_stalled", NO_AGENT, task=self.task, round=round_index, waiting_for=waiting_for
            )
            return None
        committee.close_request(request_round)
        proposal, view, block = decided.value
        accepted_names = [item.provider_id for item in proposal.claims]
        left_out = sorted(set(model.mechanism.updates) - set(accepted_names))  # sorted: no hash order
        reasons = committee.rejection_reasons(request_round, proposal.claims) if left_out else {}
        for name in left_out:
            reason = f"screening: {reasons[name]}" if name in reasons else "screening"
            # the update's own provider id: a provider that left after uploading is still named (it was -1)
            provider_id = model.mechanism.updates[name].update.provider_id
            self._claim_rejected(env.now, provider_id, self.task, round_index, reason)
        accepted = [model.mechanism.updates[name] for name in accepted_names]
        result = model.backend.commit_round([upload.update for upload in accepted])
        settlement = model.mechanism.settlement([item.signed_claim for item in proposal.claims])
        self._consensus(
            env.now,
            NO_AGENT,
            self.task,
            round_index,
            view,
            committee.traffic.messages,
            committee.traffic.bytes,
            env.now - started,
        )
        self._block(
            env.now,
            NO_AGENT,
            self.task,
            round_index,
            block.height,
            block.hash,
            len(block.txs),
            block.encode().decode("ascii"),
        )
        marginal = settlement.marginal_values
        shapley = settlement.shapley
        intervals = shapley.interval_half_widths(0.95)
        self._shapley(
            env.now,
            NO_AGENT,
            self.task,
            round_index,
            shapley.method,
            len(shapley.players),
            shapley.exact,
            shapley.converged,
            shapley.evaluations,
            shapley.samples,
            float(shapley.degrees_of_freedom),
            shapley.relative_standard_error,
        )
        round_paid = 0.0  # the rewards that reached a provider: a leaver's is forfeited and goes back in the refund
        for index, upload in enumerate(accepted):
            claim = upload.claim.signed_claim.claim
            reward = settlement.rewards[index]
            provider = model.provider_by_name.get(claim.provider_id)
            gone = provider is None or not provider.online
            if gone and reward >= 0.0:
                self._forfeit(env.now, upload.update.provider_id, self.task, round_index, reward)
                continue
            # A charge (a negative reward, SPEC A.5) is collected from a provider that left all the same: waiving
            # it would pay the others more than the round's pool (docs/spec.md, SPEC C's leavers).
            if provider is not None:
                provider.balance += reward
            self.paid += reward
            round_paid += reward
            if not gone:
                rewards[claim.provider_id] += reward
                cost = claim.local_iterations * claim.unit_cost if upload.update.behaviour == "honest" else 0.0
                claimed_costs[claim.provider_id] += cost
                if upload.update.behaviour == "honest":
                    accepted_rounds[claim.provider_id] += 1
            self._reward(
                env.now,
                upload.update.provider_id,
                self.task,
                round_index,
                float(settlement.shapley.values[index]),
                reward,
                marginal[index],
                claim.unit_cost,
                claim.local_iterations,
                float(shapley.standard_errors[index]),
                float(intervals[index]),
            )
        for violation in settlement.rationality.violations:
            self._ir(
                env.now, accepted[violation.provider].update.provider_id, self.task, round_index, violation.shortfall
            )
        fees = model.pay_committee(terms)
        self.committee_fees += fees
        self._round_finished(
            env.now,
            NO_AGENT,
            self.task,
            round_index,
            len(accepted),
            result.quality,
            result.loss,
            math.nan if result.accuracy is None else result.accuracy,
            terms.pool_per_round,
            round_paid,
        )
        balance = check_budget_balance(
            round_index + 1,
            terms.committee_costs,
            [upload.claim.signed_claim.claim.local_iterations for upload in accepted] or [0],
            [upload.claim.signed_claim.claim.unit_cost for upload in accepted] or [0.0],
            terms.budget,
            terms.fee_ratio,
        )
        self._budget(
            env.now,
            NO_AGENT,
            self.task,
            round_index,
            balance.committee_spend,
            balance.committee_allowance,
            balance.provider_spend,
            balance.provider_allowance,
            balance.satisfied,
            self.committee_fees,
            self.paid,
            paid_within_budget(self.committee_fees, self.paid, terms.budget, terms.fee_ratio),
        )
        return proposal.gamma_ne

    # -- the task's end -------------------------------------------------------------------------------------
    def _settle_task(
        self,
        terms: TaskTerms,
        players: list[DataProvider],
        actions: list[int],
        accepted_rounds: Counter[str],
        claimed_costs: defaultdict[str, float],
        rewards: defaultdict[str, float],
    ) -> None:
        """Public-goods payoffs on the realised participation (SPEC B.1, C), the task's money, evolution."""
        model = self.model
        env = model.env
        model.log.emit(
            env.now,
            "task_settled",
            NO_AGENT,
            task=self.task,
            paid=self.paid,
            committee_fees=self.committee_fees,
            refunded=self.budget - self.paid - self.committee_fees,
        )
        staying = [(provider, action) for provider, action in zip(players, actions, strict=True) if provider.online]
        if not staying:
            model.finish_task(self.task, [], [], [], terms.rounds)
            return
        realised = [accepted_rounds[provider.name] for provider, _ in staying]
        weight = model.scenario.mechanism.reward_weight
        payoffs = []
        for provider, _ in staying:
            payoffs.append((rewards[provider.name], claimed_costs[provider.name], weight))
        model.finish_task(self.task, [p for p, _ in staying], [a for _, a in staying], realised, terms.rounds, payoffs)


__all__ = ["PreviousOutcome", "RoundMechanism", "TaskRun"]
