"""MarketModel: the Mesa model that owns the SimPy clock, the overlay, the event log, the ledger and the agents.

The SimPy environment is the only clock (`model.time` is `env.now`). Processes: provider arrivals (Poisson) and
lifetimes, requester arrivals (Poisson), the task runner (one FL task at a time: `agents.platform.TaskRun`,
BGFL Algorithm 1 with PPBG-AC rounds, which is also one game round of SPEC B.3), the agents' inbox listeners,
and a periodic sampler that drives `model.sample()` and the Mesa `DataCollector`. Mesa's `model.step()` advances
the market by one FL task. All randomness comes from
`RandomStreams` keyed by agent and component.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Generator, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import mesa
import numpy as np
import simpy

from flmarket.agents.committee import Committee, CommitteeNode
from flmarket.agents.platform import RoundMechanism, TaskRun
from flmarket.agents.provider import DataProvider, ProviderType, RoundAnnouncement, UpdateUpload
from flmarket.agents.requester import DataRequester
from flmarket.agents.strategies import Alliance, BNEFollower, MMZDAMember, make_strategy
from flmarket.agents.strategies.base import PreviousOutcome, Strategy
from flmarket.market.bayesian import participation_equilibrium
from flmarket.market.costs import computation_cost, privacy_cost, unit_cost
from flmarket.market.errors import DatasetNotFoundError, PartitionError, SocialDilemmaError
from flmarket.market.evolution import (
    alliances_by_rule,
    complete_graph_models,
    pairwise_comparison_step,
    revise_strategy,
)
from flmarket.market.fl.backend import (
    BackendConfig,
    LearningBackend,
    LocalUpdate,
    expected_upload_l1_norm,
    make_backend,
)
from flmarket.market.mechanism import TaskTerms
from flmarket.market.public_goods import PublicGoodsGame, require_social_dilemma, theta1_lower_bound
from flmarket.sim.collector import collector_tuned
from flmarket.sim.config import (
    Scenario,
    in_scenario_terms,
    inert_settings,
    initial_strategies,
    likely_population_peak,
    load_scenario,
    revalidated,
)
from flmarket.sim.events import NO_AGENT, EventLog, register_kind
from flmarket.sim.network import Message, Overlay, build_topology
from flmarket.sim.randomness import RandomStreams

TASK_ANNOUNCEMENT_BYTES = 512
PRIOR_SAMPLES = 2000
DIGITS_FEATURES = 64
DIGITS_CLASSES = 10

register_kind(
    "bne_equilibrium",
    "the Bayesian-Nash participation cutoff for a task's pool and population (B 19)",
    task=int,
    probability=float,
    cost_cutoff=float,
    outcome=str,
    converged=bool,
)


def mlp_parameter_count(inputs: int, hidden: tuple[int, ...], outputs: int) -> int:
    """Weights and biases of an MLP with the given layer widths."""
    widths = (inputs, *hidden, outputs)
    return sum(widths[index] * widths[index + 1] + widths[index + 1] for index in range(len(widths) - 1))


def _nobody(node: int) -> bool:
    """No node acts on a task announcement (it is flooded and counted, but delivers nothing)."""
    return False


class _EveryOtherPlayer(Sequence[tuple[int, str, float]]):
    """(player, strategy, payoff) of every player of a task but one, in the task's order, read by index without
    building the list: the synchronous process on the complete graph costs O(N) per task, not O(N^2), and draws
    exactly what it would from the list."""

    def __init__(self, entries: list[tuple[int, str, float]], skipped: int) -> None:
        self._entries = entries
        self._skipped = skipped

    def __len__(self) -> int:
        return len(self._entries) - 1

    def __getitem__(self, index: int) -> tuple[int, str, float]:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._entries[index if index < self._skipped else index + 1]


def scenario_for(
    scenario: Scenario | str | Path, seed: int | None = None, overrides: Mapping[str, Any] | None = None
) -> Scenario:
    """A validated scenario from a `Scenario`, a bundled name or a TOML path, with `seed` (run.seed) and dotted-path
    overrides applied; each override replaces the value at its path whole, as `flmarket run --set` does."""
    changes = dict(overrides or {})
    if seed is not None:
        changes["run.seed"] = seed
    if isinstance(scenario, Scenario):
        return revalidated(scenario, changes)
    return load_scenario(scenario, changes)


class MarketModel(mesa.Model):
    """A federated-learning data market in simulated time.

    Build it from a validated `Scenario` (as the runner does), or from keywords, as `mesa.batch_run` does:
    `MarketModel(scenario="quickstart", seed=7, **{"run.tasks": 20, "providers.count": 50})`: `scenario` is a
    bundled name or a TOML path (default: the quick-start), `seed` sets run.seed, and every other keyword is a
    dotted scenario path (or pass them as `overrides={...}`). Without a `log`, events are kept in memory.

    `step()` advances the market by one FL task. The Mesa `DataCollector` (`model.datacollector`) records one
    row when the model is built and one after every `step()` (row k = the state after k steps, so `batch_run`'s
    `Step` column is the number of tasks stepped); a model driven by `run()` instead gets one row per periodic
    sample (`run.sample_interval_s`). Model reporters: `time` (simulated seconds), `online_providers`,
    `tasks_finished`, `mean_welfare` (mean welfare per finished task so far; NaN before the first task),
    `last_welfare` (the last finished task's welfare) and `share_<strategy>` for each strategy of the scenario's
    set (the share of online providers playing it). There are no agent reporters: per-agent data (choices,
    payoffs, rewards) is in the event log, which `flmarket.load_events` reads.
    """

    def __init__(
        self,
        scenario: Scenario | str | Path = "quickstart",
        log: EventLog | None = None,
        *,
        seed: int | None = None,
        overrides: Mapping[str, Any] | None = None,
        **parameters: Any,
    ) -> None:
        scenario = scenario_for(scenario, seed, {**(overrides or {}), **parameters})
        super().__init__(seed=scenario.run.seed)
        self.scenario = scenario
        self.env = simpy.Environment()
        self.streams = RandomStreams(scenario.run.seed)
        self.log = log if log is not None else EventLog(None, scenario.run.flush_every)
        self.overlay = Overlay(self.env, scenario.network, self.log, self.streams.component("network"))
        learning = scenario.learning
        self.rounds_per_task = learning.rounds_per_task
        self.theta1 = (
            max(
                1.0,
                2.0 * theta1_lower_bound(scenario.providers.count, learning.rounds_per_task, learning.local_iterations),
            )
            if learning.theta1 == "auto"
            else float(learning.theta1)
        )
        self._probe_game = PublicGoodsGame(
            learning.theta0, self.theta1, learning.local_iterations, learning.rounds_per_task, (1.0,), (1.0,)
        )
        self.parameter_count = mlp_parameter_count(DIGITS_FEATURES, learning.hidden_sizes, DIGITS_CLASSES)
        try:
            self.backend: LearningBackend = make_backend(self._backend_config())
        except DatasetNotFoundError as error:
            raise DatasetNotFoundError(in_scenario_terms(error)) from None
        except PartitionError as error:  # name the scenario keys, not the partition function's arguments
            skewed = ", or raise learning.dirichlet_alpha for less skew" if learning.partition != "iid" else ""
            raise PartitionError(
                f"learning.partition = {learning.partition!r} with learning.shards = {learning.shards}: {error}. In "
                f"a scenario, lower learning.shards{skewed}"
            ) from None
        if learning.backend == "torch":
            _warn_if_shards_may_run_out(scenario)
        for problem in inert_settings(scenario):
            warnings.warn(problem, UserWarning, stacklevel=2)
        self.online_providers: dict[int, DataProvider] = {}
        self.provider_by_name: dict[str, DataProvider] = {}
        self._approval_sets: dict[tuple[str, ...], tuple[str, ...]] = {}  # one tuple per distinct set, shared
        self._departed: list[str] = []  # providers gone since the last task began: the committee forgets them then
        self.task_queue: simpy.Store = simpy.Store(self.env)
        self.tasks_posted = 0
        self.reported_designs: dict[int, Any] = {}  # the MMZD / MMZDA designs the last task logged (zd_design)
        self.tasks_finished = 0
        self.current_task: int | None = None
        self.welfare_history: list[float] = []
        self.participation_by_strategy: dict[str, list[float]] = {}
        self.alliances: dict[int, Alliance] = {}
        self.done: simpy.Event = self.env.event()
        self.mechanism = RoundMechanism(self)
        self._provider_ordinals = 0
        self._requester_ordinals = 0
        self._request_rounds = 0
        self._task_limit = scenario.run.tasks
        self._collection: tuple[int, int, float] | None = None
        self._uploads: list[UpdateUpload] = []
        self._bne_cache: dict[tuple[float, int], float] = {}
        self._prior_unit_costs: np.ndarray | None = None
        self._emit_update = self.log.emitter("update_sent")
        self._emit_rejected = self.log.emitter("claim_rejected")
        self._emit_abandoned = self.log.emitter("update_abandoned")
        self._emit_payoff = self.log.emitter("provider_payoff")
        self._step_waiters: list[tuple[int, simpy.Event]] = []
        self._on_task_finished: Callable[[float, int], None] | None = None  # run()'s progress, once per task
        # The pairwise process's own stream (focal, model, mutation draws): no other component's draws move.
        self.evolution_generator = self.streams.component("evolution")

        committee_rng = self.streams.component("committee")
        nodes = [
            CommitteeNode(self, ordinal, float(scenario.committee.candidate_stake.sample(committee_rng)))
            for ordinal in range(scenario.committee.candidates)
        ]
        self.committee = Committee(self, nodes, self.mechanism.solve_equilibrium, self.mechanism.reward_rule)
        self._initial_strategies = initial_strategies(scenario.providers, self.streams.component("composition"))
        initial = [self._new_provider(join_overlay=False) for _ in range(scenario.providers.count)]
        self.overlay.adopt(
            build_topology(scenario.network, [p.unique_id for p in initial], self.streams.component("topology"))
        )
        for node in nodes:
            self.overlay.join(node.unique_id)
            node.start_listening()
        try:
            self.initial_dilemma = require_social_dilemma(self.game_of(initial), strict=learning.require_dilemma)
        except SocialDilemmaError as error:
            alone = " (one provider alone cannot face one)" if len(initial) == 1 else ""
            raise SocialDilemmaError(
                f"the initial population is not a social dilemma (SPEC B.2){alone}; set learning.require_dilemma = "
                f"false to run it anyway (a warning instead of this error). {error}"
            ) from None

        self.datacollector = mesa.DataCollector(model_reporters=self._reporters())
        self.env.process(self._provider_arrivals())
        self.env.process(self._requester_arrivals())
        self.env.process(self._task_runner())
        self.env.process(self._sampler())
        self.log.emit(0.0, "run_started", NO_AGENT, scenario=scenario.run.name, seed=scenario.run.seed)
        self.overlay.subscribe_members(self.online_providers)  # providers take their messages by `on_message`
        for provider in initial:
            self._log_join(provider)
        self._stepped = False  # once step() drives the model, the DataCollector records one row per step
        self._last_sample_s = -math.inf  # simulated time of the last population sample
        self.datacollector.collect(self)  # row 0: the state before any task

    def _backend_config(self) -> BackendConfig:
        learning = self.scenario.learning
        return BackendConfig(
            name=learning.backend,
            seed=self.scenario.run.seed,
            dataset=learning.dataset,
            root=learning.data_root,
            model=learning.model,
            hidden_sizes=learning.hidden_sizes,
            providers=learning.shards,
            partition=learning.partition,
            alpha=learning.dirichlet_alpha,
            aggregation=learning.aggregation,
            learning_rate=learning.learning_rate,
            momentum=learning.momentum,
            batch_size=learning.batch_size,
            clip=learning.clip,
            sensitivity=learning.sensitivity,
            surrogate_update_l1_norm=learning.surrogate.update_l1_norm,
            theta0=learning.surrogate.theta0,
            theta1=learning.surrogate.theta1,
            hidden_layers=self.scenario.mechanism.hidden_layers,
            output_units=self.scenario.mechanism.output_units,
            surrogate_parameter_count=self.parameter_count,
        )

    # -- Mesa ---------------------------------------------------------------------------------------------------
    @property
    def time(self) -> float:
        """Simulated seconds: the SimPy clock."""
        return float(self.env.now)

    def step(self) -> None:
        """Mesa's step: advance the market by one FL task (until one more task has finished), or to the end of
        the run if it ends first. `model.time` follows the SimPy clock; samples keep their own period."""
        self._stepped = True
        target = self.tasks_finished + 1
        horizon = self.scenario.run.horizon_s if self.scenario.run.horizon_s is not None else math.inf
        if self.done.triggered or self.env.now >= horizon:
            self.running = False
            self.datacollector.collect(self)
            return
        # Stop exactly where run() stops at a task limit: on the task-done event itself (woken right before
        # `done` would be), not on a condition over it, which SimPy processes later, after other events at the
        # same time. Not under collector_tuned: its full collection per step would cost more than the step.
        task_done = self.env.event()
        self._step_waiters.append((target, task_done))
        stops = [task_done, self.done]
        for event in stops:
            event.callbacks.append(simpy.core.StopSimulation.callback)
        try:
            # At the horizon, stop before the events due then, as run() does (SimPy's `until` is an urgent event):
            # a plain timeout there let the sampler log one more sample than run() logs.
            self.env.run(until=horizon if math.isfinite(horizon) else None)
        finally:
            for event in stops:  # a later run() must not stop at this step's horizon or at `done`
                if event.callbacks is not None and simpy.core.StopSimulation.callback in event.callbacks:
                    event.callbacks.remove(simpy.core.StopSimulation.callback)
        if self.done.triggered or self.env.now >= horizon:
            self.running = False
        self.datacollector.collect(self)  # row k: the state after k steps

    def _notify_step_waiters(self) -> None:
        """Wake `step()` callers whose task count has been reached (called when a task finishes)."""
        waiting = []
        for target, event in self._step_waiters:
            if self.tasks_finished >= target and not event.triggered:
                event.succeed()
            elif not event.triggered:
                waiting.append((target, event))
        self._step_waiters = waiting

    def sample(self) -> None:
        """One periodic sample of the population (driven by the sampler process, not by every event): the log's
        `sample` and `strategy_share` records (`_log_population`, also written at every task's end), and a
        DataCollector row unless `step()` drives the model (then rows are per step)."""
        if not self._stepped and self.env.now > 0:  # row 0 was collected when the model was built
            self.datacollector.collect(self)
        self._log_population()

    def _log_population(self) -> None:
        """Log the online population now: one `sample` record and a `strategy_share` record per strategy."""
        now = self.env.now
        self._last_sample_s = now
        self.log.emit(
            now, "sample", NO_AGENT, online_providers=len(self.online_providers), tasks_finished=self.tasks_finished
        )
        counts = self.strategy_counts()
        total = max(1, len(self.online_providers))
        for name, count in counts.items():
            self.log.emit(now, "strategy_share", NO_AGENT, strategy=name, count=count, share=count / total)

    def _reporters(self) -> dict[str, Callable[[MarketModel], Any]]:
        reporters: dict[str, Callable[[MarketModel], Any]] = {
            "time": lambda model: model.time,
            "online_providers": lambda model: len(model.online_providers),
            "tasks_finished": lambda model: model.tasks_finished,
            "mean_welfare": lambda model: (
                sum(model.welfare_history) / len(model.welfare_history) if model.welfare_history else math.nan
            ),
            "last_welfare": lambda model: model.welfare_history[-1] if model.welfare_history else math.nan,
        }
        for name in self.strategies_played:
            reporters[f"share_{name}"] = lambda model, name=name: model.strategy_share(name)
        return reporters

    @property
    def strategy_set(self) -> tuple[str, ...]:
        """The strategies a mutation draws from: `evolution.strategy_set`, else the providers' mix."""
        return self.scenario.evolution.strategy_set or tuple(self.scenario.providers.strategy_mix)

    @property
    def strategies_played(self) -> tuple[str, ...]:
        """Every strategy a provider of this scenario can play: the mix's (joiners), `strategy_counts`' (the
        initial population) and `evolution.strategy_set`'s (mutations), in that order."""
        providers = self.scenario.providers
        named = [*providers.strategy_mix, *(providers.strategy_counts or {}), *self.strategy_set]
        return tuple(dict.fromkeys(named))

    def strategy_counts(self) -> dict[str, int]:
        """How many online providers play each strategy of the scenario (`strategies_played`)."""
        counts = dict.fromkeys(self.strategies_played, 0)
        for provider in self.online_providers.values():
            counts[provider.strategy_label] = counts.get(provider.strategy_label, 0) + 1
        return counts

    def strategy_share(self, name: str) -> float:
        """The share of online providers playing strategy `name`."""
        if not self.online_providers:
            return 0.0
        return self.strategy_counts().get(name, 0) / len(self.online_providers)

    # -- providers ----------------------------------------------------------------------------------------------
    def _draw_type(self, rng: np.random.Generator) -> ProviderType:
        """A private type from the scenario's prior (SPEC A.1, B.1); kappa inside the B.2 window by default."""
        providers = self.scenario.providers
        unit_revenue = float(providers.unit_revenue.sample(rng))
        cost = providers.participation_cost
        if cost.mode == "window":
            low = float(self._probe_game.precision_gain(1))
            high = float(self._probe_game.precision_gain(providers.count * self.rounds_per_task)) / self.rounds_per_task
            position = float(cost.window_position.sample(rng))
            participation_cost = unit_revenue * (low + position * (high - low))
        else:
            participation_cost = float(cost.distribution.sample(rng))  # type: ignore[union-attr]
        return ProviderType(
            unit_revenue=unit_revenue,
            participation_cost=participation_cost,
            cpu_frequency=float(providers.cpu_frequency.sample(rng)),
            cycles_per_batch=float(providers.cycles_per_batch.sample(rng)),
            batch_size=float(providers.batch_size.sample(rng)),
            memory=float(providers.memory.sample(rng)),
            memory_use_ratio=float(providers.memory_use_ratio.sample(rng)),
            privacy_budget=float(providers.privacy_budget.sample(rng)),
            initial_stake=float(providers.initial_stake.sample(rng)),
        )

    def _make_strategy(self, label: str) -> Strategy:
        if label == "MMZDA":
            return MMZDAMember(alliance=Alliance([0]))  # the market assigns the real alliance before each task
        if label == "MMZD":
            return make_strategy(label, **self._zero_determinant_settings())
        return make_strategy(label)

    def _zero_determinant_settings(self) -> dict[str, Any]:
        """The scenario's `[zero_determinant]` design settings, as MMZD and `Alliance` take them (SPEC B.4, B.5)."""
        settings = self.scenario.zero_determinant
        return {"mode": settings.mode, "target": settings.welfare_target, "phi_scale": settings.phi_scale}

    def _new_provider(self, join_overlay: bool = True) -> DataProvider:
        ordinal = self._provider_ordinals
        self._provider_ordinals += 1
        rng = self.streams.generator("provider", ordinal)
        mix = self.scenario.providers.strategy_mix
        names = list(mix)
        shares = np.array([mix[name] for name in names], dtype=float)
        label = names[int(rng.choice(len(names), p=shares / shares.sum()))]
        fixed = self._initial_strategies  # strategy_counts or composition = "exact": the initial population
        if fixed is not None and ordinal < len(fixed):
            label = fixed[ordinal]
        private_type = self._draw_type(rng)
        mean_lifetime = self.scenario.providers.mean_lifetime_s
        lifetime = math.inf if math.isinf(mean_lifetime) else float(rng.exponential(mean_lifetime))
        candidates = [node.name for node in self.committee.nodes]
        chosen = rng.choice(len(candidates), size=self.scenario.committee.approvals_per_voter, replace=False)
        approvals = tuple(candidates[int(index)] for index in sorted(chosen))
        approvals = self._approval_sets.setdefault(approvals, approvals)  # at most C(nodes, k) distinct: shared
        provider = DataProvider(
            self, ordinal, private_type, self._make_strategy(label), label, rng, lifetime, approvals
        )
        self.online_providers[provider.unique_id] = provider
        self.provider_by_name[provider.name] = provider
        provider.data_size = self.backend.register_provider(provider.unique_id, rng)  # its shard, or the surrogate's
        if join_overlay:
            self.overlay.join(provider.unique_id)
            self._log_join(provider)
        return provider

    def _log_join(self, provider: DataProvider) -> None:
        private = provider.private_type_for(self)
        self.log.emit(
            self.env.now,
            "provider_joined",
            provider.unique_id,
            strategy=provider.strategy_name,
            unit_revenue=private.unit_revenue,
            participation_cost=private.participation_cost,
            data_size=float(provider.data_size),
            privacy_budget=private.privacy_budget,
        )

    def provider_left(self, provider: DataProvider, reason: str) -> None:
        """Called by `DataProvider.remove`: forget the provider, take it off the overlay, log."""
        self.online_providers.pop(provider.unique_id, None)
        self.provider_by_name.pop(provider.name, None)
        self._departed.append(provider.name)
        self.backend.forget_provider(provider.unique_id)  # its data returns to the pool; sent uploads stay valid
        self.overlay.leave(provider.unique_id)
        self.log.emit(
            self.env.now, "provider_left", provider.unique_id, reason=reason, tasks_played=provider.tasks_played
        )

    def _provider_arrivals(self) -> Generator[simpy.Event, Any, None]:
        rate = self.scenario.providers.arrival_rate_per_s
        if rate <= 0:
            return
        rng = self.streams.component("provider_arrivals")
        while True:
            yield self.env.timeout(float(rng.exponential(1.0 / rate)))
            self._new_provider()

    # -- requesters and tasks -----------------------------------------------------------------------------------
    def _requester_arrivals(self) -> Generator[simpy.Event, Any, None]:
        requesters = self.scenario.requesters
        rng = self.streams.component("requester_arrivals")
        while True:
            yield self.env.timeout(float(rng.exponential(1.0 / requesters.arrival_rate_per_s)))
            ordinal = self._requester_ordinals
            self._requester_ordinals += 1
            requester_rng = self.streams.generator("requester", ordinal)
            budget = float(requesters.budget.sample(requester_rng))
            requester = DataRequester(self, ordinal, budget, requester_rng)
            self.log.emit(self.env.now, "requester_arrived", requester.unique_id, budget=budget)

    def post_task(self, requester: DataRequester) -> None:
        """A requester joins the overlay, floods its task announcement and queues the task."""
        self.overlay.join(requester.unique_id, relay=False)  # a client: it relays nobody's traffic
        task = self.tasks_posted
        self.tasks_posted += 1
        self.overlay.broadcast(
            Message("task_announcement", requester.unique_id, payload=task, size_bytes=TASK_ANNOUNCEMENT_BYTES),
            interested=_nobody,  # providers learn the task from the round announcements; the flood is counted
        )
        self.log.emit(
            self.env.now,
            "task_posted",
            requester.unique_id,
            task=task,
            budget=requester.budget,
            rounds=self.rounds_per_task,
        )
        self.task_queue.put((task, requester))

    def _task_runner(self) -> Generator[simpy.Event, Any, None]:
        while True:
            task, requester = yield self.task_queue.get()
            # Between tasks no claim is open, so a provider that left can have none left to screen: the committee
            # forgets its keys (a long run with churn would otherwise keep every departed provider's).
            for name in self._departed:
                self.committee.forget_provider(name)
            self._departed.clear()
            yield from TaskRun(self, task, requester.budget).run()
            requester.task_done.succeed()
            self.tasks_finished += 1
            # the population after each task (its strategy switches included): the periodic samples alone could
            # stop up to an interval before the run's end, so final shares, extinction and fixation were stale.
            # Every task's end, not only the last: N steps of a longer run then log what a run of N tasks logs.
            if self._last_sample_s < self.env.now:
                self._log_population()
            self._notify_step_waiters()
            if self._on_task_finished is not None:
                self._on_task_finished(self.env.now, self.tasks_finished)
            if self._task_limit is not None and self.tasks_finished >= self._task_limit:
                self.done.succeed()
                return

    # -- services for the task process ---------------------------------------------------------------------------
    def game_of(self, providers: list[DataProvider], rounds: int | None = None) -> PublicGoodsGame:
        """The public-goods stage game (SPEC B.1) of these providers for a task of `rounds` rounds (default R)."""
        types = [provider.private_type_for(self) for provider in providers]
        learning = self.scenario.learning
        return PublicGoodsGame(
            learning.theta0,
            self.theta1,
            learning.local_iterations,
            rounds if rounds is not None else self.rounds_per_task,
            tuple(t.unit_revenue for t in types),
            tuple(t.participation_cost for t in types),
        )

    def elect_committee(self, task: int) -> bool:
        """DPoS election for the task's epoch (SPEC A.8, D.3): providers vote their balance, candidates their
        stake; returns whether the committee changed."""
        approvals: dict[str, tuple[str, ...]] = {}
        stakes: dict[str, float] = {}
        for provider in self.online_providers.values():
            approvals[provider.name] = provider.approvals
            stakes[provider.name] = max(0.0, provider.balance)
        for node in self.committee.nodes:
            approvals[node.name] = (node.name,)
            stakes[node.name] = node.stake
        return self.committee.elect(task, approvals, stakes)

    def pay_committee(self, terms: TaskTerms) -> float:
        """Each member earns its C_com(n_k) for the round from the fee share B*sigma (B 15a)."""
        paid = 0.0
        cost = terms.committee_costs[0] if terms.committee_costs else 0.0
        for name in self.committee.members:
            node = self.committee.by_name[name]
            node.earned += cost
            node.stake += cost
            paid += cost
        return paid

    def next_request_round(self) -> int:
        """A run-wide aggregation-round number (PBFT request ids and claims must be unique across tasks)."""
        self._request_rounds += 1
        return self._request_rounds

    def open_collection(self, task: int, round_index: int, deadline: float) -> None:
        """The committee starts accepting updates for (task, round) until `deadline`."""
        self._collection = (task, round_index, deadline)
        self._uploads = []

    def close_collection(self) -> list[UpdateUpload]:
        """Stop accepting; return the round's uploads in arrival order."""
        self._collection = None
        uploads, self._uploads = self._uploads, []
        return uploads

    def receive_update(self, upload: UpdateUpload, node: CommitteeNode) -> None:
        """An update reached the collecting committee node: keep it if it is for the open round and on time."""
        collection = self._collection
        if collection is not None and (upload.task, upload.round) == collection[:2] and self.env.now <= collection[2]:
            self._uploads.append(upload)
            return
        self._emit_rejected(self.env.now, upload.update.provider_id, upload.task, upload.round, "late")

    def log_update_abandoned(self, provider: DataProvider, announcement: RoundAnnouncement) -> None:
        """A provider gave up an update that the next round overtook (`DataProvider._contribute`)."""
        self._emit_abandoned(self.env.now, provider.unique_id, announcement.task, announcement.round)

    def log_update_sent(self, provider: DataProvider, announcement: RoundAnnouncement, update: LocalUpdate) -> None:
        """A provider sent an update (Algorithm 1, line 5-7)."""
        self._emit_update(
            self.env.now,
            provider.unique_id,
            announcement.task,
            announcement.round,
            update.local_iterations,
            update.l1_norm,
            update.privacy_spent,
            update.behaviour,
            update.privacy_spent_total,
        )

    # -- strategies ---------------------------------------------------------------------------------------------
    def prepare_strategies(self, players: list[DataProvider], terms: TaskTerms) -> None:
        """Re-form the MMZD alliances by the scenario's rule and inform BNE followers of the cutoff (SPEC C)."""
        index_of = {provider.unique_id: index for index, provider in enumerate(players)}
        allied = [provider.unique_id for provider in players if provider.strategy_label == "MMZDA"]
        alliances: dict[int, Alliance] = {}
        for group in alliances_by_rule(allied, self.overlay.graph, self.scenario.evolution.alliance_rule):
            leader = group[0]
            alliance = self.alliances.get(leader)
            members = [index_of[member] for member in group]
            if alliance is None:
                alliance = Alliance(members, **self._zero_determinant_settings())
            else:
                alliance.update_members(members)
            alliances[leader] = alliance
            for member in group:
                provider = self.online_providers[member]
                if getattr(provider.strategy, "alliance", None) is not alliance:
                    provider.strategy = MMZDAMember(alliance=alliance)
        self.alliances = alliances
        followers = [provider for provider in players if isinstance(provider.strategy, BNEFollower)]
        if followers:
            cutoff = self.bne_cutoff(terms, len(players))
            for provider in followers:
                budget = provider.private_type_for(provider).privacy_budget
                provider.strategy.inform(provider.expected_unit_cost(self.expected_update_l1_norm(budget)), cutoff)

    def expected_update_l1_norm(self, privacy_budget: float | np.ndarray) -> float | np.ndarray:
        """E||u~||_1 of a one-epoch update with Laplace noise Delta_f / eps per coordinate (SPEC A.2), elementwise;
        on a shard of the surrogate's data size (the backend's own expectation, `expected_upload_l1_norm`)."""
        config = self.backend.config
        return expected_upload_l1_norm(config, 1, privacy_budget, config.surrogate_data_size)

    def _prior_costs(self) -> np.ndarray:
        """C_unit of the common prior, by Monte Carlo with a fixed stream (SPEC A.7)."""
        if self._prior_unit_costs is None:
            rng = self.streams.component("bne-prior")
            providers = self.scenario.providers
            size = PRIOR_SAMPLES
            computation = computation_cost(
                providers.cpu_frequency.sample(rng, size),
                providers.cycles_per_batch.sample(rng, size),
                providers.batch_size.sample(rng, size),
                providers.memory_use_ratio.sample(rng, size),
                providers.memory.sample(rng, size),
                cost_weight=self.scenario.mechanism.cost_weight,
                energy_coefficient=self.scenario.mechanism.energy_coefficient,
            )
            budgets = np.asarray(providers.privacy_budget.sample(rng, size), dtype=float)
            norms = self.expected_update_l1_norm(budgets)  # elementwise
            self._prior_unit_costs = np.asarray(unit_cost(computation, privacy_cost(budgets, norms)), dtype=float)
        return self._prior_unit_costs

    def bne_cutoff(self, terms: TaskTerms, players: int) -> float:
        """c*(p) of the participation equilibrium (B 19) for this pool and population; logged once per input."""
        key = (terms.pool_per_round, players)
        cached = self._bne_cache.get(key)
        if cached is not None:
            return cached
        iterations = max(1, self.scenario.mechanism.initial_local_iterations)
        equilibrium = participation_equilibrium(
            terms.pool_per_round, players, iterations, unit_cost_samples=self._prior_costs()
        )
        self.log.emit(
            self.env.now,
            "bne_equilibrium",
            NO_AGENT,
            task=self.current_task if self.current_task is not None else self.tasks_posted - 1,
            probability=equilibrium.probability,
            cost_cutoff=equilibrium.cost_cutoff,
            outcome=equilibrium.kind.name,
            converged=equilibrium.converged,
        )
        self._bne_cache[key] = equilibrium.cost_cutoff
        return equilibrium.cost_cutoff

    # -- the end of a task --------------------------------------------------------------------------------------
    def finish_task(
        self,
        task: int,
        players: list[DataProvider],
        actions: list[int],
        realised: list[int],
        rounds: int,
        mechanism: list[tuple[float, float, float]] | None = None,
    ) -> None:
        """Pay the public-goods utilities on the realised participation (SPEC B.1) plus the weighted net Shapley
        rewards, log the outcome, and let strategies evolve (SPEC C)."""
        if not players:
            self.welfare_history.append(0.0)
            self.log.emit(
                self.env.now,
                "task_finished",
                NO_AGENT,
                task=task,
                players=0,
                total_participation=0,
                welfare=0.0,
                precision=self._probe_game.base_precision,
            )
            return
        game = self.game_of(players, rounds)
        realised_array = np.asarray(realised, dtype=int)
        revenues = game.revenues(realised_array)
        costs = game.costs(realised_array)
        utilities = revenues - costs
        welfare = float(utilities.sum())
        total = int(realised_array.sum())
        payoffs = []
        now = self.env.now
        for index, provider in enumerate(players):
            reward, mechanism_cost, weight = mechanism[index] if mechanism else (0.0, 0.0, 0.0)
            payoff = float(utilities[index]) + weight * (reward - mechanism_cost)
            payoffs.append(payoff)
            outcome = PreviousOutcome(
                own_action=int(realised[index]),
                total_participation=total,
                players=len(players),
                rounds=rounds,
                welfare=welfare,
                own_payoff=payoff,
            )
            provider.observe(outcome, payoff)
            tally = self.participation_by_strategy.setdefault(provider.strategy_label, [0.0, 0.0])
            tally[0] += realised[index] / rounds
            tally[1] += 1
            self._emit_payoff(
                now,
                provider.unique_id,
                task,
                provider.strategy_label,
                int(actions[index]),
                int(realised[index]),
                float(utilities[index]),
                float(revenues[index]),
                float(costs[index]),
                reward,
                mechanism_cost,
                payoff,
            )
        self.welfare_history.append(welfare)
        self.log.emit(
            now,
            "task_finished",
            NO_AGENT,
            task=task,
            players=len(players),
            total_participation=total,
            welfare=welfare,
            precision=float(game.precision(total)),
        )
        if self.scenario.evolution.enabled:
            self._evolve(players, payoffs)

    def _evolve(self, players: list[DataProvider], payoffs: list[float]) -> None:
        """Strategy evolution after a task (SPEC C) by the scenario's `evolution.process`, on the task's payoffs:

        - "synchronous": every player compares itself with one random model (an overlay neighbour, or any other
          player when `evolution.graph` is "complete") and may copy it by the Fermi rule or mutate
          (`revise_strategy`); all changes apply together;
        - "pairwise": the pairwise comparison process of Traulsen, Pacheco & Nowak (2006): one focal player, drawn
          uniformly from the model's own "evolution" stream, compares itself with one random model and copies it
          with probability 1 / (1 + exp(-(pi_model - pi_focal) / kappa_select)), or mutates with probability mu
          (`pairwise_comparison_step`, the function `simulate_fixation` checks against the closed form).

        Each change is logged as `strategy_switched` (reason "imitation" or "mutation")."""
        evolution = self.scenario.evolution
        played = {provider.unique_id: (provider, payoff) for provider, payoff in zip(players, payoffs, strict=True)}
        models_of = self._evolution_models(list(played))
        changes = []
        if evolution.process == "pairwise":
            change = pairwise_comparison_step(
                {unique_id: provider.strategy_label for unique_id, (provider, _) in played.items()},
                {unique_id: payoff for unique_id, (_, payoff) in played.items()},
                models_of,
                self.strategy_set,
                self.evolution_generator,
                beta=1.0 / evolution.selection_intensity,
                mutation_rate=evolution.mutation_rate,
            )
            if change is not None:
                changes.append((played[change.provider][0], change))
        else:
            entries = [(provider.unique_id, provider.strategy_label, payoff) for provider, payoff in played.values()]
            for index, (provider, payoff) in enumerate(zip(players, payoffs, strict=True)):
                neighbours: Sequence[tuple[int, str, float]]
                if evolution.graph == "complete":
                    neighbours = _EveryOtherPlayer(entries, index)
                else:
                    neighbours = [
                        (model, played[model][0].strategy_label, played[model][1])
                        for model in models_of(provider.unique_id)
                    ]
                change = revise_strategy(
                    provider.unique_id,
                    provider.strategy_label,
                    payoff,
                    neighbours,
                    self.strategy_set,
                    provider.generator,
                    selection_intensity=evolution.selection_intensity,
                    mutation_rate=evolution.mutation_rate,
                )
                if change is not None:
                    changes.append((provider, change))
        for provider, change in changes:
            provider.set_strategy(change.to_strategy, self._make_strategy(change.to_strategy))
            self.log.emit(
                self.env.now,
                "strategy_switched",
                provider.unique_id,
                from_strategy=change.from_strategy,
                to_strategy=change.to_strategy,
                reason=change.reason,
                neighbour=int(change.neighbour) if change.neighbour is not None else NO_AGENT,
                payoff_gap=change.payoff_gap,
            )

    def _evolution_models(self, players: list[int]) -> Callable[[Hashable], Sequence[Hashable]]:
        """Whom a player may imitate (`evolution.graph`): its overlay neighbours that played the task, in the
        overlay's sorted order ("overlay"), or every other player of the task ("complete")."""
        if self.scenario.evolution.graph == "complete":
            return complete_graph_models(players)
        played = set(players)
        return lambda player: [neighbour for neighbour in self.overlay.neighbours(player) if neighbour in played]

    # -- sampling and running -----------------------------------------------------------------------------------
    def _sampler(self) -> Generator[simpy.Event, Any, None]:
        interval = self.scenario.run.sample_interval_s
        while True:
            self.sample()
            yield self.env.timeout(interval)

    def run(self, progress: Callable[[float, int], None] | None = None) -> None:
        """Advance the clock to the horizon or until the task limit is reached, reporting progress
        `progress(now, tasks_finished)` as each task finishes and after each chunk of simulated time."""
        horizon = self.scenario.run.horizon_s if self.scenario.run.horizon_s is not None else math.inf
        self._on_task_finished = progress
        self.done.callbacks.append(simpy.core.StopSimulation.callback)
        chunk = self.scenario.run.sample_interval_s * 10
        with collector_tuned():
            while not self.done.triggered and self.env.now < horizon:
                until = min(self.env.now + chunk, horizon)
                self.env.run(until=until)
                if progress is not None:
                    progress(self.env.now, self.tasks_finished)


def _warn_if_shards_may_run_out(scenario: Scenario) -> None:
    """The torch backend gives each online provider a shard of its own; with churn, warn before the run when the
    population may outgrow `learning.shards` (a joiner who finds every shard held stops the run)."""
    peak = likely_population_peak(scenario)
    shards = scenario.learning.shards
    if peak > shards:
        providers = scenario.providers
        reach = "grow without bound" if math.isinf(peak) else f"reach about {peak:.0f}"
        raise_to = "" if math.isinf(peak) else f"; raise learning.shards to {math.ceil(peak)} or more"
        warnings.warn(
            f"learning.shards = {shards}: the online population may {reach} (providers.count {providers.count}, "
            f"arrivals {providers.arrival_rate_per_s:g}/s, mean lifetime {providers.mean_lifetime_s:g} s), and a "
            f"provider who joins when every shard is held stops the run{raise_to}",
            stacklevel=3,
        )
