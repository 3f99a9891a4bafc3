"""Market benchmark: the integrated simulator (quick-start scenario, surrogate backend) at 100 - 100,000 providers.

Measured in one run (issue 15's rules: CPU time, ratios against a reference measured in the same process,
interleaved, caches reset between repeats):
- throughput in provider-rounds per CPU second (one provider taking part, or declining, in one aggregation
  round, with everything the market does for it), with verification "every_replica" (real Ed25519) and
  "unsigned", against the reference loop: a SimPy process per provider with its own timeout for each
  provider-round and one event-log append. Each repeat runs the reference, the market, and the reference again;
  the row is the repeat with the median ratio. Tasks run back to back (a feeder posts the next requester when
  the previous task is done); the "Poisson" row uses the scenario's own requester arrivals instead. The
  scaling exponent is the slope of log(CPU per task) on log(providers) over the unsigned rows. The 10,000 x 100
  estimate says whether it was measured or extrapolated (from measured tasks only, never a warm-up).
- memory over a long horizon: RSS (psutil) after a warm-up of N tasks and after 10N tasks at 100 providers,
  events flushed to Parquet in a temporary directory; target growth < 10%. Memory per idle provider
  (tracemalloc); target <= 2.5 KB.
- Shapley estimator error on small rounds (n = 13..20) of the surrogate's coalition game against exact values.
- with --profile: cProfile of a 1,000-provider, 5-task run.

Run: `python benchmarks/bench_market.py` (or `--quick`, `--full` for 10,000 x 100 and 100,000 x 10, `--profile`).
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target says
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import simpy  # noqa: E402
from bench_kernel import idle_agents_memory  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

import flmarket.market.ledger as ledger_module  # noqa: E402
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
    """CPU seconds to build and to run one case, the provider-rounds it did, and the reference loop's CPU seconds
    for as many provider-rounds, measured right before and after it (interleaved)."""

    case: MarketCase
    build_cpu_s: float
    run_cpu_s: float
    provider_rounds: int
    tasks_finished: int
    reference_cpu_s: float
    rss_bytes: int  # the process's RSS right after the case

    @property
    def provider_rounds_per_cpu_s(self) -> float:
        """Provider-rounds per CPU second of the run (building the model excluded)."""
        return self.provider_rounds / self.run_cpu_s

    @property
    def reference_per_cpu_s(self) -> float:
        """The reference loop's provider-rounds per CPU second."""
        return self.provider_rounds / self.reference_cpu_s


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


def reference_loop(providers: int, rounds: int, seed: int = 0) -> float:
    """CPU seconds of issue 15's reference: one SimPy process per provider, its own timeout for each
    provider-round and one event-log append per provider-round (in memory)."""
    env = simpy.Environment()
    log = EventLog(None, flush_every=10**9)
    emit = log.emitter("bench_tick")
    delays = np.random.default_rng(seed).exponential(1.0, (providers, rounds))

    def provider(index: int, waits: np.ndarray) -> Generator[simpy.Event, Any, None]:
        for wait in waits.tolist():
            yield env.timeout(wait)
            emit(env.now, index, index, wait)

    for index in range(providers):
        env.process(provider(index, delays[index]))
    started = time.process_time()
    env.run()
    return time.process_time() - started


def reset_caches() -> None:
    """Caches shared across runs in one process (the Ed25519 verification memo), emptied between repeats so
    that no repeat profits from another's work."""
    ledger_module._VERIFIED.clear()
    gc.collect()


def provider_rounds_of(model: MarketModel) -> int:
    """Provider-rounds the run did: online providers at each aggregation round's start, summed (no churn in
    these cases, so the population times the rounds started)."""
    return len(model.online_providers) * model.log.counts_by_kind.get("round_started", 0)


def measure(case: MarketCase) -> MarketMeasurement:
    """Build and run one case on CPU time, with the reference loop for as many provider-rounds run before and
    after it (the mean of the two: the machine's state is sampled on both sides of the market)."""
    reset_caches()
    started = time.process_time()
    model = build_model(case)
    built = time.process_time()
    model.run()
    finished = time.process_time()
    provider_rounds = provider_rounds_of(model)
    rounds_each = max(1, provider_rounds // case.providers)
    reset_caches()
    after = reference_loop(case.providers, rounds_each)
    return MarketMeasurement(
        case,
        built - started,
        finished - built,
        provider_rounds,
        model.tasks_finished,
        after,
        psutil.Process().memory_info().rss,
    )


def measure_interleaved(case: MarketCase, repeats: int) -> MarketMeasurement:
    """`repeats` rounds of (reference, market), alternating, caches reset between them; the median ratio's
    measurement is returned (medians resist the shared machine's noise better than means)."""
    results = []
    for _ in range(repeats):
        reset_caches()
        before = reference_loop(case.providers, max(1, case.tasks * 3))
        result = measure(case)
        # The reference for this repeat: the mean of the runs just before and just after, scaled to the
        # market's provider-rounds.
        scale = result.provider_rounds / (case.providers * max(1, case.tasks * 3))
        reference = 0.5 * (before * scale + result.reference_cpu_s)
        results.append(replace(result, reference_cpu_s=reference))
    results.sort(key=lambda item: item.provider_rounds_per_cpu_s / item.reference_per_cpu_s)
    return results[len(results) // 2]


def scaling_exponent(measurements: Sequence[MarketMeasurement]) -> float | None:
    """Least-squares slope of log(CPU per task) against log(providers) over the unsigned, back-to-back cases:
    1.0 is linear in the population."""
    points = [
        (math.log(item.case.providers), math.log(item.run_cpu_s / item.tasks_finished))
        for item in measurements
        if item.case.verification == "unsigned" and not item.case.poisson and item.tasks_finished
    ]
    if len({x for x, _ in points}) < 2:
        return None
    xs, ys = np.array([x for x, _ in points]), np.array([y for _, y in points])
    return float(np.polyfit(xs, ys, 1)[0])


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns, two spaces apart."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    print("  ".join(header.ljust(width) for header, width in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def throughput_table(cases: Sequence[MarketCase], repeats: int) -> list[MarketMeasurement]:
    """Measure and print the throughput rows (issue 15's unit: provider-rounds per CPU second, against the
    reference loop in the same run), the scaling exponent and the 10,000 x 100 estimate."""
    measurements = [measure_interleaved(case, repeats) for case in cases]
    rows = []
    for item in measurements:
        case = item.case
        rows.append(
            (
                f"{case.providers:,}",
                f"{item.tasks_finished}",
                case.verification,
                "Poisson" if case.poisson else "back to back",
                f"{item.build_cpu_s:.2f}",
                f"{item.run_cpu_s:.2f}",
                f"{item.provider_rounds:,}",
                f"{item.provider_rounds_per_cpu_s:,.0f}",
                f"{item.reference_per_cpu_s:,.0f}",
                f"{item.provider_rounds_per_cpu_s / item.reference_per_cpu_s:.3f}x",
                f"{1e6 * item.run_cpu_s / item.provider_rounds:.1f}",
                f"{item.rss_bytes / 2**20:,.0f}",
            )
        )
    print(
        "Throughput (surrogate backend, no churn; CPU time; a provider-round is one provider taking part or "
        f"declining in one aggregation round; median of {repeats} interleaved repeats, caches reset between them)"
    )
    print_table(
        (
            "providers",
            "tasks",
            "verification",
            "requesters",
            "build cpu s",
            "run cpu s",
            "provider-rounds",
            "per cpu s",
            "reference per cpu s",
            "vs reference",
            "cpu us / provider-round",
            "RSS MiB",
        ),
        rows,
    )
    exponent = scaling_exponent(measurements)
    if exponent is not None:
        sizes = sorted({item.case.providers for item in measurements if item.case.verification == "unsigned"})
        print(
            f"scaling exponent of CPU per task in the population (unsigned, {sizes[0]:,} to {sizes[-1]:,} "
            f"providers): {exponent:.2f} (target <= 1.05)"
        )
    for item in measurements:
        if item.case.providers == TARGET_PROVIDERS and item.case.verification == "unsigned" and not item.case.poisson:
            per_task = item.run_cpu_s / item.tasks_finished
            how = (
                "measured"
                if item.tasks_finished >= TARGET_TASKS
                else f"EXTRAPOLATED linearly from {item.tasks_finished} measured tasks (none of them a warm-up)"
            )
            print(
                f"{TARGET_PROVIDERS:,} providers x {TARGET_TASKS} tasks unsigned: "
                f"{item.build_cpu_s + per_task * TARGET_TASKS:.0f} CPU s = {item.build_cpu_s:.1f} s build + "
                f"{TARGET_TASKS} x {per_task:.2f} s per task, {how}"
            )
    return measurements


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


def idle_memory_row(count: int) -> None:
    """Memory per idle provider (tracemalloc over `count` providers joining a running model)."""
    mib = idle_agents_memory(count)
    print(
        f"\nMemory per idle provider ({count:,} providers that never leave, tracemalloc): "
        f"{mib * 2**20 / count / 1000:.2f} KB (target <= 2.5 KB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="few tasks per size: a smoke run (a few minutes)")
    mode.add_argument(
        "--full", action="store_true", help="also 10,000 providers x 100 tasks and 100,000 providers x 10 tasks"
    )
    parser.add_argument("--profile", action="store_true", help="also profile a 1,000-provider, 5-task run")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats per case (default 3; 1 quick)")
    args = parser.parse_args()
    if args.quick:
        cases = [
            MarketCase(100, 5, "every_replica"),
            MarketCase(100, 5, "unsigned"),
            MarketCase(1_000, 2, "every_replica"),
            MarketCase(1_000, 2, "unsigned"),
            MarketCase(10_000, 1, "unsigned"),
        ]
    else:
        cases = [
            MarketCase(100, 20, "every_replica"),
            MarketCase(100, 20, "unsigned"),
            MarketCase(1_000, 5, "every_replica"),
            MarketCase(1_000, 5, "unsigned"),
            MarketCase(1_000, 5, "unsigned", poisson=True),
            MarketCase(10_000, 3, "every_replica"),
            MarketCase(10_000, 5, "unsigned"),
        ]
        if args.full:
            cases += [MarketCase(10_000, TARGET_TASKS, "unsigned"), MarketCase(100_000, 10, "unsigned")]
    repeats = args.repeats or (1 if args.quick else 3)
    memory = measure_memory(100, 5 if args.quick else 20, "every_replica")
    reference_loop(1_000, 20)  # warm up the interpreter and allocator
    throughput_table(cases, repeats)
    memory_table(memory)
    idle_memory_row(2_000 if args.quick else 10_000)
    shapley_table(range(13, 21), subset_check_max=14 if args.quick else 16)
    if args.profile:
        profile_run(1_000, 5)


if __name__ == "__main__":
    main()
