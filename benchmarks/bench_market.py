"""Market benchmark: the integrated simulator (quick-start scenario, surrogate backend) at 100 - 10,000 providers.

Four tables, measured in one run:
- throughput: providers x tasks per wall second at 100, 1,000 and 10,000 providers, no churn, with committee
  verification "every_replica" (100 and 1,000) and "unsigned" (all three), so the table shows what the
  Ed25519 signatures cost. Target of the issue: 10,000 providers x 100 tasks in under 5 minutes on one core;
  at 10,000 a few tasks are run and the 100-task time is extrapolated linearly (`--full` runs all 100).
  Tasks run back to back: a feeder process posts the next requester the moment the previous task is done (the
  Poisson requester process is set to a negligible rate). Rows marked "Poisson" use the scenario's own
  Poisson requester arrivals instead, at twice the task service rate (a queue builds, so tasks also run back
  to back); the difference between the two shows what requesters joining the overlay mid-round cost.
  Each row also gives the simulator's SimPy events per second against a bare SimPy loop with the same number
  of events (1,000 processes, exponential timeouts), measured in the same run; target >= 0.5x. "own us/event"
  is the simulator's wall time per event beyond what the bare loop spends on one ("bare us/event"): the
  target allows the first to be at most the second.
- memory over a long horizon: RSS (psutil) after a warm-up of N tasks and after 10N tasks at 100 providers,
  events written to Parquet parts in a temporary directory (small flush_every) so the log is not counted;
  target growth < 10%.
- Shapley estimator error on small rounds (n = 13..20) of the surrogate's coalition game: the stratified
  estimator (the market's path for large rounds) and permutation sampling (its path for games without a
  total-based value) against the exact values, as max_i |xi^_i - xi_i| / xi_i.
- with --profile: cProfile of a 1,000-provider, 5-task run (every_replica, Poisson requesters), top 15 by
  cumulative and by internal time.

Run: `python benchmarks/bench_market.py` (or `--quick`, `--full`, `--profile`).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import math
import os
import pstats
import tempfile
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target says
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import simpy  # noqa: E402
from bench_kernel import bare_loop, best_of  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from flmarket.agents.requester import DataRequester  # noqa: E402
from flmarket.market.fl.backend import BackendConfig  # noqa: E402
from flmarket.market.fl.surrogate import SurrogateBackend, SurrogateCoalitionValue  # noqa: E402
from flmarket.market.mechanism import settle_round  # noqa: E402
from flmarket.market.shapley import (  # noqa: E402
    exact_integer_sum_game_shapley,
    shapley_values,
    stratified_sum_game_shapley,
)
from flmarket.sim.config import Scenario, load_scenario  # noqa: E402
from flmarket.sim.events import EventLog  # noqa: E402
from flmarket.sim.model import MarketModel  # noqa: E402

BARE_PROCESSES = 1000
NEGLIGIBLE_RATE_PER_S = 1e-9  # the scenario's Poisson requester process never fires within a run
TARGET_PROVIDERS, TARGET_TASKS, TARGET_SECONDS = 10_000, 100, 300.0
SHAPLEY_SEED = 20240607


@dataclass(frozen=True)
class MarketCase:
    """One throughput measurement: population, tasks, committee verification and how requesters arrive."""

    providers: int
    tasks: int
    verification: str
    poisson: bool = False


@dataclass(frozen=True)
class MarketMeasurement:
    """Wall seconds to build and to run a model, and the SimPy events the run processed."""

    case: MarketCase
    build_s: float
    run_s: float
    events: int
    simulated_s: float
    tasks_finished: int
    bare_events_per_s: float

    @property
    def provider_tasks_per_s(self) -> float:
        """providers x tasks per wall second of the run (building the model excluded)."""
        return self.case.providers * self.tasks_finished / self.run_s

    @property
    def events_per_s(self) -> float:
        """SimPy events per wall second of the run."""
        return self.events / self.run_s


def degree_for(providers: int) -> int:
    """An overlay degree that grows with log10 of the population (4, 6, 8 for 100, 1,000, 10,000); even, so
    a random regular graph exists for any count."""
    return 2 * max(2, math.ceil(math.log10(providers)))


def task_service_s(scenario: Scenario) -> float:
    """Simulated seconds one task's rounds last (collection windows only; consensus adds a little)."""
    return scenario.learning.rounds_per_task * scenario.learning.round_duration_s


def market_scenario(case: MarketCase) -> Scenario:
    """Quick-start with the case's population and tasks, no churn, the case's verification and requesters."""
    base = load_scenario("quickstart")
    requester_rate = 2.0 / task_service_s(base) if case.poisson else NEGLIGIBLE_RATE_PER_S
    return load_scenario(
        "quickstart",
        {
            "providers.count": case.providers,
            "providers.arrival_rate_per_s": 0.0,
            "providers.mean_lifetime_s": float("inf"),
            "network.degree": degree_for(case.providers),
            "requesters.arrival_rate_per_s": requester_rate,
            "committee.verification": case.verification,
            "run.tasks": case.tasks,
            # tasks run back to back (feed_requesters), each well under 1,000 simulated seconds; a horizon keeps
            # the expected run length (and so the samples, limits.samples) finite despite the negligible rate
            "run.horizon_s": 1000.0 * case.tasks,
        },
    )


def feed_requesters(model: MarketModel, count: int) -> Generator[simpy.Event, Any, None]:
    """Post one requester at a time, the next the moment the previous task is done (tasks back to back)."""
    budget = model.scenario.requesters.budget
    for ordinal in range(count):
        rng = model.streams.generator("requester", ordinal)  # the stream the k-th Poisson requester would use
        requester = DataRequester(model, ordinal, float(budget.sample(rng)), rng)
        yield requester.task_done


def build_model(case: MarketCase, log: EventLog | None = None) -> MarketModel:
    """The case's model, with the back-to-back requester feeder unless the case uses Poisson arrivals."""
    model = MarketModel(market_scenario(case), log)
    if not case.poisson:
        model.env.process(feed_requesters(model, case.tasks))
    return model


def count_events(model: MarketModel) -> list[int]:
    """Wrap `env.step` to count processed SimPy events (as bench_kernel.py does); returns the counter cell."""
    processed = [0]
    original_step = model.env.step

    def counting_step() -> None:
        processed[0] += 1
        original_step()

    model.env.step = counting_step  # type: ignore[method-assign]
    return processed


def measure(case: MarketCase, bare_repeats: int) -> MarketMeasurement:
    """Build and run one case; then a bare SimPy loop with the same number of events."""
    gc.collect()
    started = time.perf_counter()
    model = build_model(case)
    built = time.perf_counter()
    processed = count_events(model)
    model.run()
    finished = time.perf_counter()
    events = processed[0]
    per_process = max(1, events // BARE_PROCESSES)
    bare_s = best_of(bare_repeats, lambda: bare_loop(BARE_PROCESSES, per_process))
    return MarketMeasurement(
        case,
        built - started,
        finished - built,
        events,
        model.time,
        model.tasks_finished,
        BARE_PROCESSES * per_process / bare_s,
    )


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns, two spaces apart."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    print("  ".join(header.ljust(width) for header, width in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def throughput_table(cases: Sequence[MarketCase], bare_repeats: int) -> None:
    """Measure and print the throughput rows, and the extrapolation to the issue's target."""
    rows = []
    notes = []
    for case in cases:
        result = measure(case, bare_repeats)
        ratio = result.events_per_s / result.bare_events_per_s
        rows.append(
            (
                f"{case.providers:,}",
                f"{result.tasks_finished}",
                case.verification,
                "Poisson" if case.poisson else "back to back",
                f"{result.build_s:.2f}",
                f"{result.run_s:.2f}",
                f"{result.simulated_s:,.0f}",
                f"{result.provider_tasks_per_s:,.0f}",
                f"{result.events:,}",
                f"{result.events_per_s:,.0f}",
                f"{ratio:.2f}x",
                f"{1e6 * (1 / result.events_per_s - 1 / result.bare_events_per_s):.1f}",
                f"{1e6 / result.bare_events_per_s:.2f}",
            )
        )
        if case.providers == TARGET_PROVIDERS and not case.poisson:
            per_task = result.run_s / result.tasks_finished
            total = result.build_s + per_task * TARGET_TASKS
            how = (
                "measured"
                if result.tasks_finished >= TARGET_TASKS
                else f"extrapolated linearly from {result.tasks_finished} tasks"
            )
            verdict = "meets" if total < TARGET_SECONDS else "misses"
            notes.append(
                f"{TARGET_PROVIDERS:,} providers x {TARGET_TASKS} tasks ({case.verification}): "
                f"{total:.0f} s = {result.build_s:.1f} s build + {TARGET_TASKS} x {per_task:.2f} s per task, "
                f"{how}; {verdict} the target of < {TARGET_SECONDS:.0f} s"
            )
    print("Throughput (surrogate backend, no churn; rate = providers x tasks per wall second of the run)")
    print_table(
        (
            "providers",
            "tasks",
            "verification",
            "requesters",
            "build s",
            "run s",
            "sim s",
            "prov x tasks/s",
            "SimPy events",
            "events/s",
            "vs bare (>=0.5x)",
            "own us/event",
            "bare us/event",
        ),
        rows,
    )
    for note in notes:
        print(note)


def rss_bytes() -> int:
    """Resident set size of this process after a full collection."""
    gc.collect()
    return psutil.Process().memory_info().rss


def run_until_finished(model: MarketModel, tasks: int) -> None:
    """Step the SimPy clock until `tasks` tasks are finished."""
    while model.tasks_finished < tasks:
        model.env.step()


@dataclass(frozen=True)
class MemoryMeasurement:
    """RSS after the warm-up and after 10x as many tasks at a fixed population."""

    providers: int
    verification: str
    warmup_tasks: int
    total_tasks: int
    warm_rss: int
    final_rss: int
    parquet_parts: int
    wall_s: float

    @property
    def growth(self) -> float:
        """(final - warm) / warm."""
        return (self.final_rss - self.warm_rss) / self.warm_rss


def measure_memory(providers: int, warmup_tasks: int, verification: str) -> MemoryMeasurement:
    """RSS after `warmup_tasks` and after 10x as many, events flushed to Parquet in a temporary directory.

    Run first in the process: memory freed by earlier, larger models would otherwise be reused and hide growth.
    """
    total_tasks = 10 * warmup_tasks
    case = MarketCase(providers, total_tasks, verification)
    with tempfile.TemporaryDirectory(prefix="bench-market-") as directory:
        log = EventLog(Path(directory) / "events", flush_every=2_000)
        model = build_model(case, log)
        started = time.perf_counter()
        run_until_finished(model, warmup_tasks)
        warm = rss_bytes()
        run_until_finished(model, total_tasks)
        final = rss_bytes()
        wall_s = time.perf_counter() - started
        log.close()
        return MemoryMeasurement(
            providers, verification, warmup_tasks, total_tasks, warm, final, len(log.parts), wall_s
        )


def memory_table(result: MemoryMeasurement) -> None:
    """Print the memory measurement."""
    print(
        f"\nMemory over a long horizon ({result.providers:,} providers, {result.verification}, events flushed to "
        f"{result.parquet_parts} Parquet parts; measured first in the process; RSS includes the interpreter and "
        "its libraries)"
    )
    print_table(
        ("tasks", "RSS MiB", "growth", "target"),
        [
            (f"{result.warmup_tasks}", f"{result.warm_rss / 2**20:.1f}", "", ""),
            (
                f"{result.total_tasks}",
                f"{result.final_rss / 2**20:.1f}",
                f"{(result.final_rss - result.warm_rss) / 2**20:+.1f} MiB ({100 * result.growth:+.1f}%)",
                f"< 10% ({'met' if result.growth < 0.10 else 'missed'}; {result.wall_s:.0f} s wall)",
            ),
        ],
    )


def surrogate_round(players: int, rng: np.random.Generator) -> SurrogateCoalitionValue:
    """One surrogate round's coalition value: `players` honest updates of 1..10 local iterations each."""
    backend = SurrogateBackend(BackendConfig(name="surrogate"))
    for provider in range(players):
        backend.register_provider(provider, rng)
    backend.start_task(0)
    iterations = rng.integers(1, 11, players)
    updates = [
        backend.local_update(provider, int(iterations[provider]), 4.0, "honest", rng) for provider in range(players)
    ]
    return backend.coalition_value(updates)


def max_relative_error(estimate: np.ndarray, exact: np.ndarray) -> float:
    """max_i |estimate_i - exact_i| / |exact_i| (every exact value is > 0 in these games)."""
    return float(np.max(np.abs(np.asarray(estimate) - exact) / np.abs(exact)))


def shapley_table(sizes: Sequence[int], subset_check_max: int) -> None:
    """Stratified and permutation estimates against the exact Shapley values of surrogate rounds (B 10)."""
    rng = np.random.default_rng(SHAPLEY_SEED)
    rows = []
    worst = {"stratified": 0.0, "permutation": 0.0}
    for players in sizes:
        value = surrogate_round(players, rng)
        ordered = tuple(range(players))
        weights = np.array([value.contributions[player] for player in ordered]).astype(np.int64)
        exact = exact_integer_sum_game_shapley(weights, value.values_of_totals)
        if players <= subset_check_max:
            subset = shapley_values(ordered, value, exact_max=players).values
            check = f"{float(np.max(np.abs(subset - exact) / exact)):.1e}"
        else:
            check = "skipped"
        settlement = settle_round(
            ordered,
            value,
            100.0,
            [int(weight) for weight in weights],
            [0.01] * players,
            np.random.default_rng(rng.integers(2**32)),
        )
        started = time.perf_counter()
        stratified = stratified_sum_game_shapley(
            weights.astype(float), value.values_of_totals, np.random.default_rng(rng.integers(2**32))
        )
        stratified_s = time.perf_counter() - started
        started = time.perf_counter()
        permutation = shapley_values(ordered, value, rng=np.random.default_rng(rng.integers(2**32)), exact_max=12)
        permutation_s = time.perf_counter() - started
        errors = (max_relative_error(stratified.values, exact), max_relative_error(permutation.values, exact))
        worst["stratified"] = max(worst["stratified"], errors[0])
        worst["permutation"] = max(worst["permutation"], errors[1])
        rows.append(
            (
                f"{players}",
                check,
                f"{settlement.shapley.method} ({max_relative_error(settlement.shapley.values, exact):.1e})",
                f"{stratified.samples}",
                f"{stratified.relative_standard_error:.1e}",
                f"{errors[0]:.2e}",
                f"{stratified_s:.3f}",
                f"{permutation.evaluations:,}",
                f"{errors[1]:.2e}",
                f"{permutation_s:.3f}",
            )
        )
    print("\nShapley values of surrogate rounds (B 10): estimates against exact (integer sum-game recursion)")
    print_table(
        (
            "n",
            "subset formula vs exact",
            "settle_round method (error)",
            "strat replicates",
            "strat rel SE",
            "strat max rel err",
            "strat s",
            "perm value calls",
            "perm max rel err",
            "perm s",
        ),
        rows,
    )
    print(
        f"max relative error over n = {sizes[0]}..{sizes[-1]}: stratified {worst['stratified']:.2e}, "
        f"permutation sampling {worst['permutation']:.2e} (estimators at target relative SE 0.01)"
    )


def profile_run(providers: int, tasks: int, lines: int = 15) -> None:
    """cProfile of one run, top `lines` by cumulative and by internal time."""
    case = MarketCase(providers, tasks, "every_replica", poisson=True)
    model = build_model(case)
    profiler = cProfile.Profile()
    profiler.enable()
    model.run()
    profiler.disable()
    for order in ("cumulative", "tottime"):
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).strip_dirs().sort_stats(order).print_stats(lines)
        body = stream.getvalue()
        print(
            f"\nProfile of {providers:,} providers x {tasks} tasks ({case.verification}, Poisson requesters), "
            f"by {order}"
        )
        print(body[body.index("   ncalls") :].rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="few tasks per size: a smoke run (~1 minute)")
    mode.add_argument("--full", action="store_true", help="run the real 100 tasks at 10,000 providers")
    parser.add_argument("--profile", action="store_true", help="also profile a 1,000-provider, 5-task run")
    args = parser.parse_args()
    if args.quick:
        cases = [
            MarketCase(100, 5, "every_replica"),
            MarketCase(100, 5, "unsigned"),
            MarketCase(100, 5, "unsigned", poisson=True),
            MarketCase(1_000, 1, "every_replica"),
            MarketCase(1_000, 2, "unsigned"),
            MarketCase(10_000, 1, "unsigned"),
        ]
    else:
        large_tasks = TARGET_TASKS if args.full else 5
        cases = [
            MarketCase(100, 20, "every_replica"),
            MarketCase(100, 20, "unsigned"),
            MarketCase(100, 20, "unsigned", poisson=True),
            MarketCase(1_000, 5, "every_replica"),
            MarketCase(1_000, 5, "unsigned"),
            MarketCase(1_000, 5, "unsigned", poisson=True),
            MarketCase(10_000, large_tasks, "unsigned"),
        ]
    bare_repeats = 1 if args.quick else 3
    memory = measure_memory(100, 5 if args.quick else 20, "every_replica")
    bare_loop(BARE_PROCESSES, 20)  # warm up the interpreter and allocator
    throughput_table(cases, bare_repeats)
    memory_table(memory)
    shapley_table(range(13, 21), subset_check_max=14 if args.quick else 16)
    if args.profile:
        profile_run(1_000, 5)


if __name__ == "__main__":
    main()
