"""MarketModel: the Mesa model that owns the SimPy clock, the overlay, the event log and the agents.

The SimPy environment is the only clock (`model.time` is `env.now`). Processes: provider arrivals (Poisson),
requester arrivals (Poisson), the task runner (one FL task at a time, each a game round of SPEC B.3 whose outcome
comes from the public-goods model of SPEC B.1) and a periodic sampler that drives `model.step()` and the Mesa
`DataCollector`. All randomness comes from `RandomStreams` keyed by agent and component.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import Any

import mesa
import numpy as np
import simpy

from agents.provider import DataProvider, ProviderType
from agents.requester import DataRequester
from agents.strategies import make_strategy
from agents.strategies.base import PreviousOutcome
from market.public_goods import (
    PublicGoodsGame,
    check_social_dilemma,
    require_social_dilemma,
    theta1_lower_bound,
)
from sim.config import Scenario
from sim.events import NO_AGENT, EventLog
from sim.network import Message, Overlay, build_topology
from sim.randomness import RandomStreams

TASK_ANNOUNCEMENT_BYTES = 512


class MarketModel(mesa.Model):
    """A federated-learning data market in simulated time."""

    def __init__(self, scenario: Scenario, log: EventLog | None = None) -> None:
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
        self.online_providers: dict[int, DataProvider] = {}
        self.task_queue: simpy.Store = simpy.Store(self.env)
        self.tasks_posted = 0
        self.tasks_finished = 0
        self.welfare_history: list[float] = []
        self.participation_by_strategy: dict[str, list[float]] = {}
        self.done: simpy.Event = self.env.event()
        self._provider_ordinals = 0
        self._requester_ordinals = 0
        self._task_limit = scenario.run.tasks

        initial = [self._new_provider(join_overlay=False) for _ in range(scenario.providers.count)]
        self.overlay.adopt(
            build_topology(scenario.network, [p.unique_id for p in initial], self.streams.component("topology"))
        )
        self.initial_dilemma = require_social_dilemma(self._game_of(initial), strict=learning.require_dilemma)

        self.datacollector = mesa.DataCollector(model_reporters=self._reporters())
        self.env.process(self._provider_arrivals())
        self.env.process(self._requester_arrivals())
        self.env.process(self._task_runner())
        self.env.process(self._sampler())
        self.log.emit(0.0, "run_started", NO_AGENT, scenario=scenario.run.name, seed=scenario.run.seed)
        for provider in initial:
            self._log_join(provider)

    # -- Mesa ---------------------------------------------------------------------------------------------------
    @property
    def time(self) -> float:
        """Simulated seconds: the SimPy clock."""
        return float(self.env.now)

    def step(self) -> None:
        """One sample of the population (driven by the periodic sampler process, not by every event)."""
        self.datacollector.collect(self)
        self.log.emit(
            self.env.now,
            "sample",
            NO_AGENT,
            online_providers=len(self.online_providers),
            tasks_finished=self.tasks_finished,
        )

    def _reporters(self) -> dict[str, Callable[[MarketModel], Any]]:
        reporters: dict[str, Callable[[MarketModel], Any]] = {
            "time": lambda model: model.time,
            "online_providers": lambda model: len(model.online_providers),
            "tasks_finished": lambda model: model.tasks_finished,
        }
        for name in self.scenario.providers.strategy_mix:
            reporters[f"share_{name}"] = lambda model, name=name: model.strategy_share(name)
        return reporters

    def strategy_share(self, name: str) -> float:
        """The share of online providers playing strategy `name`."""
        if not self.online_providers:
            return 0.0
        playing = sum(1 for provider in self.online_providers.values() if provider.strategy_name == name)
        return playing / len(self.online_providers)

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
            data_size=float(providers.data_size.sample(rng)),
        )

    def _new_provider(self, join_overlay: bool = True) -> DataProvider:
        ordinal = self._provider_ordinals
        self._provider_ordinals += 1
        rng = self.streams.generator("provider", ordinal)
        mix = self.scenario.providers.strategy_mix
        names = list(mix)
        shares = np.array([mix[name] for name in names], dtype=float)
        strategy = make_strategy(names[int(rng.choice(len(names), p=shares / shares.sum()))])
        private_type = self._draw_type(rng)
        mean_lifetime = self.scenario.providers.mean_lifetime_s
        lifetime = math.inf if math.isinf(mean_lifetime) else float(rng.exponential(mean_lifetime))
        provider = DataProvider(self, ordinal, private_type, strategy, rng, lifetime)
        self.online_providers[provider.unique_id] = provider
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
            data_size=private.data_size,
            privacy_budget=private.privacy_budget,
        )

    def provider_left(self, provider: DataProvider, reason: str) -> None:
        """Called by `DataProvider.remove`: forget the provider, take it off the overlay, log."""
        self.online_providers.pop(provider.unique_id, None)
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
        self.overlay.join(requester.unique_id)
        task = self.tasks_posted
        self.tasks_posted += 1
        self.overlay.broadcast(
            Message("task_announcement", requester.unique_id, payload=task, size_bytes=TASK_ANNOUNCEMENT_BYTES)
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

    def _game_of(self, providers: list[DataProvider]) -> PublicGoodsGame:
        types = [provider.private_type_for(self) for provider in providers]
        learning = self.scenario.learning
        return PublicGoodsGame(
            learning.theta0,
            self.theta1,
            learning.local_iterations,
            self.rounds_per_task,
            tuple(t.unit_revenue for t in types),
            tuple(t.participation_cost for t in types),
        )

    def _task_runner(self) -> Generator[simpy.Event, Any, None]:
        while True:
            task, requester = yield self.task_queue.get()
            yield from self._run_task(task)
            requester.task_done.succeed()
            self.tasks_finished += 1
            if self._task_limit is not None and self.tasks_finished >= self._task_limit:
                self.done.succeed()
                return

    def _run_task(self, task: int) -> Generator[simpy.Event, Any, None]:
        """One game round (SPEC B.3): online providers choose y_i, play R rounds, get U_i (SPEC B.1)."""
        duration = self.rounds_per_task * self.scenario.learning.round_duration_s
        players = list(self.online_providers.values())
        if not players:
            self.log.emit(
                self.env.now, "task_started", NO_AGENT, task=task, players=0, theta1=self.theta1, is_dilemma=False
            )
            yield self.env.timeout(duration)
            self._finish_task(task, [], [])
            return
        game = self._game_of(players)
        report = check_social_dilemma(game)
        self.log.emit(
            self.env.now,
            "task_started",
            NO_AGENT,
            task=task,
            players=len(players),
            theta1=self.theta1,
            is_dilemma=report.is_social_dilemma,
        )
        if not report.is_social_dilemma:
            self.log.emit(self.env.now, "dilemma_check", NO_AGENT, task=task, message="; ".join(report.problems(game)))
        actions = []
        for index, provider in enumerate(players):
            action = provider.choose_action(game, index)
            actions.append(action)
            self.log.emit(
                self.env.now,
                "action_chosen",
                provider.unique_id,
                task=task,
                strategy=provider.strategy_name,
                action=action,
            )
        yield self.env.timeout(duration)
        staying = [(provider, action) for provider, action in zip(players, actions, strict=True) if provider.online]
        self._finish_task(task, [p for p, _ in staying], [a for _, a in staying])

    def _finish_task(self, task: int, players: list[DataProvider], actions: list[int]) -> None:
        """Pay utilities to the providers still online (leavers forfeit) and log the outcome."""
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
        game = self._game_of(players)
        action_array = np.asarray(actions, dtype=int)
        revenues = game.revenues(action_array)
        costs = game.costs(action_array)
        utilities = revenues - costs
        welfare = float(utilities.sum())
        total = int(action_array.sum())
        for index, provider in enumerate(players):
            outcome = PreviousOutcome(
                own_action=int(actions[index]),
                total_participation=total,
                players=len(players),
                rounds=self.rounds_per_task,
                welfare=welfare,
            )
            provider.observe(outcome, float(utilities[index]))
            tally = self.participation_by_strategy.setdefault(provider.strategy_name, [0.0, 0.0])
            tally[0] += actions[index] / self.rounds_per_task
            tally[1] += 1
            self.log.emit(
                self.env.now,
                "provider_payoff",
                provider.unique_id,
                task=task,
                strategy=provider.strategy_name,
                action=int(actions[index]),
                utility=float(utilities[index]),
                revenue=float(revenues[index]),
                cost=float(costs[index]),
            )
        self.welfare_history.append(welfare)
        self.log.emit(
            self.env.now,
            "task_finished",
            NO_AGENT,
            task=task,
            players=len(players),
            total_participation=total,
            welfare=welfare,
            precision=float(game.precision(total)),
        )

    # -- sampling and running -----------------------------------------------------------------------------------
    def _sampler(self) -> Generator[simpy.Event, Any, None]:
        interval = self.scenario.run.sample_interval_s
        while True:
            self.step()
            yield self.env.timeout(interval)

    def run(self, progress: Callable[[float, int], None] | None = None) -> None:
        """Advance the clock to the horizon or until the task limit is reached, reporting progress per chunk."""
        horizon = self.scenario.run.horizon_s if self.scenario.run.horizon_s is not None else math.inf
        self.done.callbacks.append(simpy.core.StopSimulation.callback)
        chunk = self.scenario.run.sample_interval_s * 10
        while not self.done.triggered and self.env.now < horizon:
            until = min(self.env.now + chunk, horizon)
            self.env.run(until=until)
            if progress is not None:
                progress(self.env.now, self.tasks_finished)
