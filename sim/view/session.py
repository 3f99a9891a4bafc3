"""The model-driving object behind `flmarket view`: one `MarketModel`, stepped one FL task at a time, and the data
of every panel of the page, read from the model and its event log after each step. No web framework here.

A step ends exactly where `flmarket run --tasks N` would stop after its Nth task (the model's `done` event fires
right after the task runner wakes the step waiters, and the run stops when that event is processed): the view
registers its own step waiter whose processing stops the clock, so stepping N tasks here and running N tasks from
the CLI with the same seed give the same event log (less the `run_finished` record a finished `flmarket run`
writes). Settings that fail the scenario's validation raise `ScenarioError` with the CLI's one-line message and
leave the running model untouched. A `MarketError` in the middle of a task (where `flmarket run` stops with exit
status 2) stops the session too: `failure` holds the message, and it steps no further until a reset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import networkx as nx
import pyarrow as pa
import pyarrow.compute as pc

from flmarket.market.errors import MarketError
from flmarket.market.public_goods import PublicGoodsGame
from flmarket.sim.config import Scenario, ScenarioError, load_scenario
from flmarket.sim.model import MarketModel

FREE_RIDER = "ALLD"
"""The strategy the free-rider slider sets: a free rider never trains but receives the public good (SPEC C)."""
COOPERATOR = "ALLC"
"""The strategy that takes the rest of a mix that had only free riders when the slider lowers their share."""


def parse_mix(text: str) -> dict[str, float]:
    """'ALLC=0.5, ALLD=0.5' (or TOML 'ALLC = 0.5, ...') as a mix; the scenario's validation judges the values."""
    mix: dict[str, float] = {}
    for item in text.replace(";", ",").split(","):
        if not item.strip():
            continue
        name, separator, raw = (part.strip() for part in item.partition("="))
        if not separator or not name:
            raise ScenarioError(
                f"providers.strategy_mix: expected NAME=SHARE pairs (e.g. ALLC=0.5), got {item.strip()!r}"
            )
        if name in mix:
            raise ScenarioError(f"providers.strategy_mix.{name}: given twice; give each strategy once")
        try:
            if "_" in raw:  # float() reads 1_0 as 10
                raise ValueError(raw)
            mix[name] = float(raw)
        except ValueError:
            raise ScenarioError(f"providers.strategy_mix.{name}: share must be a number, got {raw!r}") from None
    return mix


def with_free_riders(mix: Mapping[str, float], share: float) -> dict[str, float]:
    """The mix with `share` free riders (ALLD) and the other strategies scaled to fill 1 - share in their
    proportions (evenly if they were all zero; cooperators, ALLC, if there were none)."""
    others = {name: value for name, value in mix.items() if name != FREE_RIDER}
    if not others and share < 1.0:
        others = {COOPERATOR: 1.0}
    total = sum(others.values())
    rest = 1.0 - share
    if others:
        scaled = {name: (rest * value / total if total > 0 else rest / len(others)) for name, value in others.items()}
    else:
        scaled = {}
    return {**scaled, FREE_RIDER: share} if share > 0 or FREE_RIDER in mix else scaled


@dataclass(frozen=True)
class ViewSettings:
    """What the page can change: the scenario reference and its overrides (dotted paths, as `--set`)."""

    scenario: str
    overrides: tuple[tuple[str, Any], ...] = ()

    def with_mix(self, mix: Mapping[str, float]) -> ViewSettings:
        """These settings with `providers.strategy_mix` replaced and no exact strategy counts: counts given in the
        scenario file (e.g. mmzd-fig3's) are cleared too, or they would decide the population over the mix."""
        kept = tuple(
            (key, value)
            for key, value in self.overrides
            if key not in ("providers.strategy_mix", "providers.strategy_counts")
        )
        return ViewSettings(
            self.scenario, (*kept, ("providers.strategy_mix", dict(mix)), ("providers.strategy_counts", None))
        )

    def load(self) -> Scenario:
        """The validated scenario (raises ScenarioError with the CLI's one-line message)."""
        return load_scenario(self.scenario, dict(self.overrides))


class ViewSession:
    """One market run driven from the page: step, reset, change settings; panel data after every change."""

    def __init__(self, settings: ViewSettings, model: MarketModel | None = None) -> None:
        """A session of `settings`, starting from `model` if given (a fresh model of these settings, e.g. the one
        `flmarket view` built to check them before serving), else from a model it builds."""
        self.settings = settings
        if model is None:
            self.scenario = settings.load()
            model = MarketModel(self.scenario)
        else:
            self.scenario = model.scenario
        self._start(model)

    # -- driving ------------------------------------------------------------------------------------------
    def _start(self, model: MarketModel) -> None:
        self.model = model
        self.failure: str | None = None  # why the run stopped in the middle of a task (a MarketError), if it did
        self._last_seq = -1
        self._tables_read = 0
        self.time_points: list[float] = []
        self.share_series: dict[str, list[float]] = {name: [] for name in self.model.strategies_played}
        self.welfare_tasks: list[int] = []
        self.welfare: list[float] = []
        self.optimum: list[float] = []
        self.nash: list[float] = []
        self.rewards: list[dict[str, Any]] = []
        self.consensus: dict[str, Any] = {}
        self._types: dict[int, tuple[float, float]] = {}
        self._labels: dict[int, str] = {}
        self._positions: dict[int, tuple[float, float]] = {}
        self._references: dict[int, tuple[float, float]] = {}
        self._read_new_events()

    @property
    def tasks_finished(self) -> int:
        """FL tasks finished so far."""
        return self.model.tasks_finished

    @property
    def finished(self) -> bool:
        """Whether the run reached its task limit or horizon, or stopped on an error (stepping does nothing)."""
        horizon = self.scenario.run.horizon_s
        ended = self.model.done.triggered or (horizon is not None and self.model.env.now >= horizon)
        return ended or self.failure is not None

    def step(self) -> bool:
        """Advance the market by one FL task, stopping where `MarketModel.run()` stops at a task limit; returns
        whether a task finished. A MarketError in the task (e.g. a joiner finds every data shard held) is raised
        once, kept in `failure`, and ends the session's run: the model is left mid-task, as `flmarket run` leaves
        it, and later steps raise the same error until a reset."""
        if self.failure is not None:
            raise MarketError(self.failure)
        if self.finished:
            return False
        model = self.model
        before = model.tasks_finished
        try:
            model.step()  # stops where run() stops at a task limit
        except MarketError as error:
            self.failure = f"{error}; the run stopped in task {model.tasks_finished + 1}: reset to start over"
            self._read_new_events()
            raise MarketError(self.failure) from error
        self._read_new_events()
        return model.tasks_finished > before

    def reset(self, settings: ViewSettings | None = None) -> None:
        """Start over with `settings` (default: the current ones). Bad input (ScenarioError, MarketError) raises
        before anything changes."""
        self.start_over(self.prepare(settings))

    def prepare(self, settings: ViewSettings | None = None) -> tuple[ViewSettings, MarketModel]:
        """The settings (default: the current ones) and a fresh model of them, for `start_over`; the session is
        untouched. Raises ScenarioError or MarketError (e.g. not a social dilemma) on bad input."""
        settings = settings if settings is not None else self.settings
        return settings, MarketModel(settings.load())

    def start_over(self, prepared: tuple[ViewSettings, MarketModel]) -> None:
        """Replace the run with the one `prepare` built."""
        settings, model = prepared
        self.settings, self.scenario = settings, model.scenario
        self._start(model)

    # -- panel data -----------------------------------------------------------------------------------------
    def _new_records(self) -> pa.Table | None:
        """The records logged since the last call, in seq order. The in-memory log keeps one Arrow table per
        flush, so after a flush only the tables not read yet are taken: reading the whole log each step grew to
        2 s of CPU per step by the quick-start's 100th task."""
        log = self.model.log
        kept = getattr(log, "_kept", None)
        if log.directory is not None or not isinstance(kept, list):  # a log on disk: read it all, keep the new
            table = log.to_arrow()
            return table.filter(pc.greater(table["seq"], self._last_seq))
        log.flush()
        tables, self._tables_read = kept[self._tables_read :], len(kept)
        return pa.concat_tables(tables, promote_options="default").sort_by("seq") if tables else None

    def _read_new_events(self) -> None:
        table = self._new_records()
        if table is None or table.num_rows == 0:
            return
        self._last_seq = int(pc.max(table["seq"]).as_py())
        for row in _rows(table, "provider_joined", "agent", "unit_revenue", "participation_cost", "strategy"):
            self._types[row["agent"]] = (row["unit_revenue"], row["participation_cost"])
            self._labels[row["agent"]] = row["strategy"]
        for row in _rows(table, "strategy_switched", "agent", "to_strategy"):
            self._labels[row["agent"]] = row["to_strategy"]
        shares = _rows(table, "strategy_share", "time", "strategy", "share")
        for time in sorted({row["time"] for row in shares}):
            self.time_points.append(time)
            at = {row["strategy"]: row["share"] for row in shares if row["time"] == time}
            for name in self.share_series:
                self.share_series[name].append(at.get(name, 0.0))
        for row in _rows(table, "welfare_reference", "task", "optimum_welfare", "nash_welfare"):
            self._references[row["task"]] = (row["optimum_welfare"], row["nash_welfare"])
        for row in _rows(table, "task_finished", "task", "welfare"):
            optimum, nash = self._references.get(row["task"], (0.0, 0.0))  # a task without players has neither
            self.welfare_tasks.append(row["task"])
            self.welfare.append(row["welfare"])
            self.optimum.append(optimum)
            self.nash.append(nash)
        rewards = _rows(table, "reward_paid", "task", "round", "agent", "shapley_value", "reward", "contribution")
        if rewards:
            last_task = rewards[-1]["task"]
            self.rewards = _rewards_by_provider([row for row in rewards if row["task"] == last_task])
            for entry in self.rewards:
                entry["strategy"] = self.strategy_of(entry["agent"])
        decided = _rows(table, "consensus_decided", "task", "round", "view", "messages", "bytes", "latency_s")
        blocks = _rows(table, "block_committed", "task", "round", "height", "block_hash", "transactions")
        if decided:
            self.consensus = {**decided[-1], "view_changes": decided[-1]["view"]}
        if blocks:
            self.consensus["block"] = {key: blocks[-1][key] for key in ("height", "block_hash", "transactions")}

    def strategy_of(self, agent: int) -> str:
        """The strategy a provider plays now, or played last if it has left."""
        provider = self.model.online_providers.get(agent)
        return provider.strategy_label if provider is not None else self._labels.get(agent, "")

    def game_of(self, players: list[int], rounds: int) -> PublicGoodsGame:
        """A public-goods stage game (SPEC B.1) of these providers, from their logged types (rho_i, kappa_i)."""
        learning = self.scenario.learning
        return PublicGoodsGame(
            learning.theta0,
            self.model.theta1,
            learning.local_iterations,
            rounds,
            tuple(self._types[player][0] for player in players),
            tuple(self._types[player][1] for player in players),
        )

    def participation(self) -> dict[str, float]:
        """Mean realised y_i/R per strategy over all tasks so far (the model's running tally, as `flmarket run`
        prints it): over the providers paid at each task's end, the rounds whose honest update entered the aggregate.
        `analysis.participation_by_strategy` gives it per task as realised_rate."""
        return {
            name: (tally[0] / tally[1] if tally[1] else 0.0)
            for name, tally in sorted(self.model.participation_by_strategy.items())
        }

    def committee(self) -> dict[str, Any]:
        """The elected committee now: members with their DPoS votes, and the PBFT primary."""
        committee = self.model.committee
        elected = committee.elected
        if elected is None or not committee.members:
            return {"members": [], "votes": [], "primary": None, "epoch": None}
        return {
            "members": list(elected.members),
            "votes": [float(vote) for vote in elected.votes],
            "primary": committee.primary.name,
            "epoch": int(elected.epoch),
        }

    def overlay(self) -> dict[str, Any]:
        """Every node seen so far with its position, strategy (or 'committee'), online and committee flags, and
        the online overlay's edges. Offline nodes keep their place, so the picture does not jump."""
        model = self.model
        graph = model.overlay.graph
        new = [node for node in sorted(graph) if node not in self._positions]
        if new:
            if not self._positions:
                layout = nx.spring_layout(graph, seed=self.scenario.run.seed, iterations=80)
            else:
                fixed = [node for node in graph if node in self._positions]
                start = {node: self._positions[node] for node in fixed}
                layout = nx.spring_layout(
                    graph,
                    pos=start or None,
                    fixed=fixed or None,
                    seed=self.scenario.run.seed + len(self._positions),
                    iterations=40,
                )
            for node in new:
                self._positions[node] = (float(layout[node][0]), float(layout[node][1]))
        committee_ids = {node.unique_id: node.name for node in model.committee.nodes}
        members = set(model.committee.members)
        primary = self.committee()["primary"]
        nodes = []
        for node, (x, y) in sorted(self._positions.items()):
            strategy = "committee" if node in committee_ids else self.strategy_of(node)
            name = committee_ids.get(node, "")
            nodes.append(
                {
                    "id": int(node),
                    "x": x,
                    "y": y,
                    "strategy": strategy,
                    "online": node in graph,
                    "member": name in members,
                    "primary": bool(name) and name == primary,
                }
            )
        edges = [[int(a), int(b)] for a, b in sorted(tuple(sorted(edge)) for edge in graph.edges)]
        return {"nodes": nodes, "edges": edges}

    def state(self) -> dict[str, Any]:
        """Everything the page shows, as JSON-ready data (also written into the page for tests)."""
        model = self.model
        return {
            "scenario": self.scenario.run.name,
            "seed": self.scenario.run.seed,
            "tasks": model.tasks_finished,
            "time_s": model.time,
            "online_providers": len(model.online_providers),
            "finished": self.finished,
            "failure": self.failure,
            "mix": dict(self.scenario.providers.strategy_mix),
            "strategies": list(model.strategies_played),  # every strategy a provider can play
            "shares": {"time_s": list(self.time_points), "series": {k: list(v) for k, v in self.share_series.items()}},
            "welfare": {
                "task": list(self.welfare_tasks),
                "welfare": list(self.welfare),
                "optimum": list(self.optimum),
                "nash": list(self.nash),
            },
            "participation": self.participation(),
            "consensus": {**self.consensus, **self.committee()},
            "rewards": list(self.rewards),
            "overlay": self.overlay(),
        }


def _rows(table: pa.Table, kind: str, *columns: str) -> list[dict[str, Any]]:
    """The records of one kind with the given columns, in seq order (the table is sorted by seq)."""
    if kind not in set(table["kind"].unique().to_pylist()):
        return []
    selected = table.filter(pc.equal(table["kind"], kind))
    return selected.select(list(columns)).to_pylist()


def _rewards_by_provider(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One task's Shapley values, contributions and rewards summed over its rounds, per provider."""
    totals: dict[int, dict[str, Any]] = {}
    for row in rows:
        entry = totals.setdefault(
            row["agent"], {"agent": row["agent"], "task": row["task"], "shapley_value": 0.0, "reward": 0.0}
        )
        entry["shapley_value"] += row["shapley_value"]
        entry["reward"] += row["reward"]
    return [totals[agent] for agent in sorted(totals)]
