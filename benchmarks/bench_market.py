"""Market benchmark: the integrated simulator (quick-start scenario, surrogate backend) at 100 - 100,000 providers.

Measured in one run (issue 15's rules: CPU time, ratios against a reference measured in the same process,
interleaved, caches reset between repeats):
- throughput in provider-rounds per CPU second (one provider taking part, or declining, in one aggregation round, with
  everything the market does for it), with verification "every_replica" (real Ed25519), "modelled" (modelled
  signatures: a binding hash, real Ed25519 on a 1 % sample, the cost as simulated delay) and "unsigned", against the
  reference loop: a SimPy process per provider with its own timeout for each provider-round and one event-log append.
  Each repeat runs the reference, the market, and the reference again, in a fresh process (earlier runs in one process
  slow later ones); the row is the repeat with the median ratio. Tasks run back to back (a feeder posts the next
  requester when the previous task is done); the "Poisson" row uses the scenario's own requester arrivals instead, and
  a "churn" row has providers arrive and leave at the population's steady state (mean lifetime 100 tasks, so about 1 %
  of them turn over per task; each change of the overlay is a new topology version for the latency trees). The scaling
  exponent is the slope of log(CPU per task after the first) on log(providers) over the unsigned rows of 1,000
  providers and more. The 10,000 x 100 estimate says whether it was measured or extrapolated (from the tasks after
  the first, the warm-up). Signed rows are also given as a
  ratio to the unsigned row of the same population (target: modelled >= 0.5x).
- memory over a long horizon: RSS (psutil) after a warm-up of N tasks and after 10N tasks at 100 providers,
  events flushed to Parquet in a temporary directory; target growth < 10% (`--memory PxN:churn` with churn).
  Memory per idle provider (tracemalloc); target <= 2.5 KB.
- the cost of one Ed25519 signature and verification with `cryptography` (the defaults of
  `committee.signature_sign_s` and `committee.signature_verify_s`).
- Shapley estimator error on small rounds (n = 13..20) of the surrogate's coalition game against exact values.
- with --profile: cProfile of a 1,000-provider, 5-task run.

Run: `python benchmarks/bench_market.py` (or `--quick`, `--full` for 10,000 x 100 and 100,000 x 10, `--profile`).
One part alone:
- `--case 100000x10` (or `PxT:verification`, repeatable): only those throughput cases, one repeat (`--repeats N`
  for more), each task's progress as it finishes (CPU s, wall s, RSS), then the row and the measuring process's
  peak RSS;
- `--memory 10000x3` (or `PxN:verification`): only the long-horizon memory measurement, N warm-up tasks and 10N
  in all (default verification "unsigned"); `--tracemalloc` adds the allocations that grew, by line;
- `--signature-costs`: only the Ed25519 costs;
- `--upload-cost 10000x3`: only the split of a provider-round's CPU into a fixed part (every provider declining)
  and a part per upload (every provider uploading), with the CPU per upload that issue 15's 4x would need.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import cProfile
import gc
import io
import math
import multiprocessing
import os
import pstats
import re
import resource
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Generator, Sequence
from dataclasses import dataclass
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
from flmarket.arguments import integer_in  # noqa: E402
from flmarket.market.fl.backend import BackendConfig  # noqa: E402
from flmarket.market.fl.surrogate import SurrogateBackend, SurrogateCoalitionValue  # noqa: E402
from flmarket.market.ledger import ProviderClaim, derive_private_key, public_key_bytes, sha256_hex  # noqa: E402
from flmarket.market.mechanism import settle_round  # noqa: E402
from flmarket.market.shapley import (  # noqa: E402
    exact_integer_sum_game_shapley,
    shapley_values,
    stratified_sum_game_shapley,
)
from flmarket.sim.collector import collector_tuned  # noqa: E402
from flmarket.sim.config import Scenario, load_scenario  # noqa: E402
from flmarket.sim.events import EventLog  # noqa: E402
from flmarket.sim.model import MarketModel  # noqa: E402

NEGLIGIBLE_RATE_PER_S = 1e-9  # the scenario's Poisson requester process never fires within a run
TARGET_PROVIDERS, TARGET_TASKS, TARGET_SECONDS = 10_000, 100, 300.0
SHAPLEY_SEED = 20240607
CHURN_LIFETIME_TASKS = 100  # with churn, a provider's mean lifetime in tasks: about 1 % of them turn over per task
VERIFICATIONS = ("every_replica", "primary_only", "unsigned", "modelled")
EXPONENT_RANGE = (1_000, 100_000)  # issue 15's scaling target is the exponent from 1k to 100k providers
PEAK_BYTES_PER_PROVIDER = 40_000  # measured peak RSS per provider (3.5 GiB at 100,000 x 10), rounded up


@dataclass(frozen=True)
class MarketCase:
    """One throughput measurement: population, tasks, committee verification and how requesters arrive."""

    providers: int
    tasks: int
    verification: str
    poisson: bool = False
    churn: bool = False  # providers arrive and leave at the population's steady state (CHURN_LIFETIME_TASKS)
    strategy_mix: tuple[tuple[str, float], ...] | None = None  # instead of the quick-start's mix

    @property
    def plain(self) -> bool:
        """Tasks back to back and a fixed population: the cases the targets, the exponent and ratios use."""
        return not self.poisson and not self.churn


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
    first_task_cpu_s: float = math.nan  # CPU seconds from the run's start to its first task's end
    peak_rss_bytes: int = 0  # the peak RSS of the process that measured it (a fresh one per measurement)

    @property
    def steady_cpu_per_task(self) -> float | None:
        """CPU seconds per task after the first (the first is a warm-up: caches, the overlay's trees, the
        allocator's arenas; it costs up to twice a later task), or None with fewer than two tasks."""
        if self.tasks_finished < 2 or math.isnan(self.first_task_cpu_s):
            return None
        return (self.run_cpu_s - self.first_task_cpu_s) / (self.tasks_finished - 1)

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


def view_change_timeout_for(providers: int, base: Scenario) -> float:
    """A PBFT view-change timeout that outlasts a round's signature checks when they take simulated time
    (verification "modelled"): the primary's checks and then each backup's, 3 per claim, as if every provider
    claimed, with a margin of 2. Below that a large round changes view again and again (at 10,000 providers and
    the quick-start's 2 s: views 1, 3 and 6 in one task, 2.7x the CPU). Used for every case, so all modes run
    the same scenario; without modelled delays no view-change timer fires either way."""
    committee = base.committee
    return max(committee.view_change_timeout_s, 2 * 2 * 3 * providers * committee.signature_verify_s)


def market_scenario(case: MarketCase) -> Scenario:
    """Quick-start with the case's population and tasks, churn or not, the case's verification and requesters."""
    base = load_scenario("quickstart")
    requester_rate = 2.0 / task_service_s(base) if case.poisson else NEGLIGIBLE_RATE_PER_S
    lifetime_s = CHURN_LIFETIME_TASKS * task_service_s(base) if case.churn else float("inf")
    horizon_s = 1000.0 * case.tasks
    arrival_rate = case.providers / lifetime_s  # with churn, arrivals balance departures
    return load_scenario(
        "quickstart",
        {
            "providers.count": case.providers,
            "providers.arrival_rate_per_s": arrival_rate,
            "providers.mean_lifetime_s": lifetime_s,
            # the guard counts the joiners expected over the whole horizon (the run stops after its tasks first)
            "limits.providers": max(100_000, case.providers + math.ceil(arrival_rate * horizon_s) + 1),
            "network.degree": degree_for(case.providers),
            "requesters.arrival_rate_per_s": requester_rate,
            "committee.verification": case.verification,
            "committee.view_change_timeout_s": view_change_timeout_for(case.providers, base),
            "run.tasks": case.tasks,
            # tasks run back to back (feed_requesters), each well under 1,000 simulated seconds; a horizon keeps
            # the expected run length (and so the samples, limits.samples) finite despite the negligible rate
            "run.horizon_s": horizon_s,
            **({"providers.strategy_mix": dict(case.strategy_mix)} if case.strategy_mix else {}),
        },
    )


def feed_requesters(model: MarketModel, count: int) -> Generator[simpy.Event, Any, None]:
    """Post one requester at a time, the next the moment the previous task is done (tasks back to back)."""
    budget = model.scenario.requesters.budget
    for ordinal in range(count):
        rng = model.streams.generator("requester", ordinal)  # the stream the k-th Poisson requester would use
        requester = DataRequester(model, ordinal, float(budget.sample(rng)), rng)
        yield requester.task_done


class RoundCountingLog(EventLog):
    """An in-memory event log that counts the provider-rounds of a run exactly: the providers online at each
    aggregation round's start (with churn the population moves, so population x rounds would be an estimate)."""

    def __init__(self, flush_every: int) -> None:
        super().__init__(None, flush_every)
        self.model: MarketModel | None = None
        self.provider_rounds = 0

    def emitter(self, kind: str) -> Any:
        emit = super().emitter(kind)
        if kind != "round_started":
            return emit

        def counted(*record: Any) -> int:
            assert self.model is not None
            self.provider_rounds += len(self.model.online_providers)
            return emit(*record)

        return counted


def build_model(case: MarketCase, log: EventLog | None = None) -> MarketModel:
    """The case's model, with the back-to-back requester feeder unless the case uses Poisson arrivals."""
    scenario = market_scenario(case)
    if log is None:
        log = RoundCountingLog(scenario.run.flush_every)
    model = MarketModel(scenario, log)
    if isinstance(log, RoundCountingLog):
        log.model = model
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
    """Provider-rounds the run did: online providers at each aggregation round's start, summed (counted as the
    run goes by `RoundCountingLog`; otherwise the population now times the rounds started, exact without churn)."""
    if isinstance(model.log, RoundCountingLog):
        return model.log.provider_rounds
    return len(model.online_providers) * model.log.counts_by_kind.get("round_started", 0)


def expected_provider_rounds(case: MarketCase) -> tuple[int, int]:
    """(providers, rounds each) of the reference run before a case: the population times the case's aggregation
    rounds (tasks x `learning.rounds_per_task`), what the market does without churn."""
    rounds = case.tasks * load_scenario("quickstart").learning.rounds_per_task
    return case.providers, max(1, rounds)


def measure(case: MarketCase, progress: bool = False) -> MarketMeasurement:
    """Build and run one case on CPU time, with the reference loop run right before and right after it, scaled to
    the market's provider-rounds (the mean of the two: the machine's state is sampled on both sides of the
    market). With `progress`, each finished task prints the CPU and wall seconds since the build and the RSS (a
    long case can be stopped and still report what it did)."""
    providers, rounds_each = expected_provider_rounds(case)
    reset_caches()
    before = reference_loop(providers, rounds_each)
    reset_caches()
    started = time.process_time()
    model = build_model(case)
    built = time.process_time()
    if progress:
        print(
            f"built {case.providers:,} providers ({case.verification}): {built - started:.1f} CPU s, "
            f"RSS {psutil.Process().memory_info().rss / 2**20:,.0f} MiB",
            flush=True,
        )
    tracker = _TaskClock(case, built, time.perf_counter(), progress)
    model.run(tracker)
    finished = time.process_time()
    provider_rounds = provider_rounds_of(model)
    reset_caches()
    after = reference_loop(providers, rounds_each)
    # Both reference runs did providers x rounds_each provider-rounds; the market's count differs with churn (not
    # a whole number of rounds of its starting population), and the ratio needs the reference's rate: scale.
    reference_cpu_s = 0.5 * (before + after) * provider_rounds / (providers * rounds_each)
    return MarketMeasurement(
        case,
        built - started,
        finished - built,
        provider_rounds,
        model.tasks_finished,
        reference_cpu_s,
        psutil.Process().memory_info().rss,
        tracker.first_task_cpu_s,
        peak_rss_bytes(),
    )


class _TaskClock:
    """A `MarketModel.run` progress callback: notes the CPU time at the first task's end (the warm-up that
    extrapolations leave out) and, with `verbose`, prints a line as each task finishes."""

    def __init__(self, case: MarketCase, cpu_start: float, wall_start: float, verbose: bool) -> None:
        self.case, self.cpu_start, self.wall_start, self.verbose = case, cpu_start, wall_start, verbose
        self.done = 0
        self.first_task_cpu_s = math.nan

    def __call__(self, _now: float, tasks: int) -> None:
        if tasks <= self.done:
            return
        cpu = time.process_time() - self.cpu_start
        if self.done == 0:
            self.first_task_cpu_s = cpu  # MarketModel.run calls back at each task's end: this is the first's
        self.done = tasks
        if self.verbose:
            print(
                f"  task {tasks}/{self.case.tasks}: {cpu:.1f} CPU s ({cpu / tasks:.1f} per task), "
                f"{time.perf_counter() - self.wall_start:.1f} s wall, RSS "
                f"{psutil.Process().memory_info().rss / 2**20:,.0f} MiB, {uptime()}",
                flush=True,
            )


def uptime() -> str:
    """The machine's load averages (1, 5, 15 minutes), to print beside numbers measured on a shared machine."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far (getrusage: KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def in_fresh_process(function: Any, *arguments: Any) -> Any:
    """`function(*arguments)` in a new interpreter (spawned), its result returned: nothing of earlier runs in this
    process reaches the measurement. Runs one after another in one process got slower, the memory of freed models
    scattered (the quick-start's mix at 10,000 x 3: 46.4, 55.5, 55.2 CPU us per provider-round in one process
    against 47.7 and 48.1 in two fresh ones)."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *arguments).result()


def measure_interleaved(case: MarketCase, repeats: int, progress: bool = False) -> MarketMeasurement:
    """`repeats` measurements of (reference, market, reference), each in a fresh process; the median ratio's
    measurement is returned (medians resist the shared machine's noise better than means; with an even count, the
    lower of the two middle ones, so the row never flatters the market)."""
    results = [in_fresh_process(measure, case, progress) for _ in range(repeats)]
    return median_measurement(results)


def median_measurement(results: Sequence[MarketMeasurement]) -> MarketMeasurement:
    """The measurement with the median ratio to the reference (the lower middle one for an even count)."""
    ordered = sorted(results, key=lambda item: item.provider_rounds_per_cpu_s / item.reference_per_cpu_s)
    return ordered[(len(ordered) - 1) // 2]


@dataclass(frozen=True)
class ScalingExponent:
    """The slope of log(CPU per task) on log(providers) and the populations it was fitted over."""

    value: float
    smallest: int
    largest: int
    steady: bool  # CPU per task after the first (True) or over all tasks, when some case ran only one

    @property
    def covers_target_range(self) -> bool:
        """Whether the fit spans issue 15's range, 1,000 to 100,000 providers."""
        return self.smallest <= EXPONENT_RANGE[0] and self.largest >= EXPONENT_RANGE[1]


def scaling_exponent(measurements: Sequence[MarketMeasurement]) -> ScalingExponent | None:
    """Least-squares slope of log(CPU per task) against log(providers) over the unsigned, back-to-back cases of
    at least 1,000 providers (issue 15's range; smaller populations are dominated by the committee's fixed
    work): 1.0 is linear in the population. CPU per task leaves out each case's first task when every case ran
    two or more; None with fewer than two populations."""
    items = [
        item
        for item in measurements
        if item.case.verification == "unsigned"
        and item.case.plain
        and item.tasks_finished
        and item.case.providers >= EXPONENT_RANGE[0]
    ]
    steady = bool(items) and all(item.steady_cpu_per_task is not None for item in items)
    points = [
        (
            math.log(item.case.providers),
            math.log(item.steady_cpu_per_task if steady else item.run_cpu_s / item.tasks_finished),
        )
        for item in items
    ]
    if len({x for x, _ in points}) < 2:
        return None
    xs, ys = np.array([x for x, _ in points]), np.array([y for _, y in points])
    sizes = [item.case.providers for item in items]
    return ScalingExponent(float(np.polyfit(xs, ys, 1)[0]), min(sizes), max(sizes), steady)


def exponent_line(exponent: ScalingExponent) -> str:
    """The exponent, what it was fitted on, and the target only where the fit covers the target's range."""
    basis = "CPU per task after the first" if exponent.steady else "CPU per task, first task included"
    if exponent.covers_target_range:
        verdict = f"target <= 1.05: {'met' if exponent.value <= 1.05 else 'missed'}"
    else:
        verdict = (
            f"issue 15's target, <= 1.05, is for {EXPONENT_RANGE[0]:,} to {EXPONENT_RANGE[1]:,} providers: "
            "run --full or --case for that range"
        )
    return (
        f"scaling exponent of {basis} in the population (unsigned, {exponent.smallest:,} to {exponent.largest:,} "
        f"providers): {exponent.value:.2f} ({verdict})"
    )


def extrapolation_line(item: MarketMeasurement) -> str:
    """The 10,000 x 100 unsigned estimate: measured, extrapolated from the tasks after the first, or refused."""
    if item.tasks_finished >= TARGET_TASKS:
        total = item.build_cpu_s + item.run_cpu_s * TARGET_TASKS / item.tasks_finished
        return (
            f"{TARGET_PROVIDERS:,} providers x {TARGET_TASKS} tasks unsigned: {total:.0f} CPU s, measured "
            f"({item.build_cpu_s:.1f} s build + {item.run_cpu_s:.1f} s run)"
        )
    steady = item.steady_cpu_per_task
    if steady is None:
        return (
            f"{TARGET_PROVIDERS:,} providers x {TARGET_TASKS} tasks unsigned: not extrapolated (it needs at least 2 "
            f"measured tasks, and the run finished {item.tasks_finished}; the first task is a warm-up)"
        )
    later = item.tasks_finished - 1
    total = item.build_cpu_s + item.first_task_cpu_s + steady * (TARGET_TASKS - 1)
    return (
        f"{TARGET_PROVIDERS:,} providers x {TARGET_TASKS} tasks unsigned: {total:.0f} CPU s = "
        f"{item.build_cpu_s:.1f} s build + {item.first_task_cpu_s:.2f} s first task + {TARGET_TASKS - 1} x "
        f"{steady:.2f} s per later task, EXTRAPOLATED linearly from {later} measured later task"
        f"{'s' if later != 1 else ''}"
    )


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns, two spaces apart."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    print("  ".join(header.ljust(width) for header, width in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def throughput_row(item: MarketMeasurement) -> tuple[str, ...]:
    """One row of the throughput table."""
    case = item.case
    return (
        f"{case.providers:,}",
        f"{item.tasks_finished}",
        case.verification,
        ("Poisson" if case.poisson else "back to back") + (", churn" if case.churn else ""),
        f"{item.build_cpu_s:.2f}",
        f"{item.run_cpu_s:.2f}",
        f"{item.provider_rounds:,}",
        f"{item.provider_rounds_per_cpu_s:,.0f}",
        f"{item.reference_per_cpu_s:,.0f}",
        f"{item.provider_rounds_per_cpu_s / item.reference_per_cpu_s:.3f}x",
        f"{1e6 * item.run_cpu_s / item.provider_rounds:.1f}",
        f"{item.rss_bytes / 2**20:,.0f}",
    )


THROUGHPUT_HEADERS = (
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
)


def signed_to_unsigned(measurements: Sequence[MarketMeasurement]) -> None:
    """Each signed row's throughput as a share of the unsigned row of the same population: the ratio of their
    ratios to the reference, so a machine that slowed down between the two rows does not move it."""
    unsigned = {
        item.case.providers: item for item in measurements if item.case.verification == "unsigned" and item.case.plain
    }
    for item in measurements:
        base = unsigned.get(item.case.providers)
        if item.case.verification == "unsigned" or not item.case.plain or base is None:
            continue
        share = (item.provider_rounds_per_cpu_s / item.reference_per_cpu_s) / (
            base.provider_rounds_per_cpu_s / base.reference_per_cpu_s
        )
        raw = item.provider_rounds_per_cpu_s / base.provider_rounds_per_cpu_s
        target = (
            f" (target >= 0.5: {'met' if share >= 0.5 else 'missed'})" if item.case.verification == "modelled" else ""
        )
        print(
            f"{item.case.providers:,} providers, {item.case.verification} / unsigned: {share:.2f}x against the "
            f"reference (raw per CPU s {raw:.2f}x){target}"
        )


def throughput_table(cases: Sequence[MarketCase], repeats: int) -> list[MarketMeasurement]:
    """Measure and print the throughput rows (issue 15's unit: provider-rounds per CPU second, against the
    reference loop in the same run), the scaling exponent and the 10,000 x 100 estimate."""
    measurements = [measure_interleaved(case, repeats) for case in cases]
    print(
        "Throughput (surrogate backend; churn only where the requesters column says so; CPU time; a provider-round "
        "is one provider taking part or "
        f"declining in one aggregation round; median of {repeats} interleaved repeats, caches reset between them; "
        f"{uptime()} at the end)"
    )
    print_table(THROUGHPUT_HEADERS, [throughput_row(item) for item in measurements])
    signed_to_unsigned(measurements)
    exponent = scaling_exponent(measurements)
    if exponent is not None:
        print(exponent_line(exponent))
    for item in measurements:
        if item.case.providers == TARGET_PROVIDERS and item.case.verification == "unsigned" and item.case.plain:
            print(extrapolation_line(item))
    return measurements


def rss_bytes() -> int:
    """Resident set size of this process after a full collection."""
    gc.collect()
    return psutil.Process().memory_info().rss


def run_until_finished(model: MarketModel, tasks: int, progress: Any = None) -> None:
    """Step the SimPy clock until `tasks` tasks are finished (`progress(now, tasks_finished)` after each)."""
    while model.tasks_finished < tasks:
        finished = model.tasks_finished
        model.env.step()
        if progress is not None and model.tasks_finished > finished:
            progress(model.env.now, model.tasks_finished)


@dataclass(frozen=True)
class MemoryMeasurement:
    """RSS after the warm-up and after 10x as many tasks, at a fixed population or with churn."""

    providers: int
    verification: str
    warmup_tasks: int
    total_tasks: int
    warm_rss: int
    final_rss: int
    parquet_parts: int
    wall_s: float
    churn: bool = False

    @property
    def growth(self) -> float:
        """(final - warm) / warm."""
        return (self.final_rss - self.warm_rss) / self.warm_rss


def measure_memory(
    providers: int,
    warmup_tasks: int,
    verification: str,
    trace_lines: int = 0,
    progress: bool = False,
    churn: bool = False,
) -> MemoryMeasurement:
    """RSS after `warmup_tasks` and after 10x as many, events flushed to Parquet in a temporary directory, under
    the collector settings of `MarketModel.run` (`collector_tuned`); with `churn`, providers arrive and leave at
    the population's steady state (the population, and so the state a flat RSS needs, stays about the same).

    Run first in the process: memory freed by earlier, larger models would otherwise be reused and hide growth.
    With `trace_lines`, tracemalloc traces the whole run (from before the model is built: a snapshot taken
    later would count every object allocated since, steady-state replacements included) and the lines whose
    live allocations grew from the warm-up's end to the last task are printed; the RSS then includes
    tracemalloc's own memory.
    """
    total_tasks = 10 * warmup_tasks
    case = MarketCase(providers, total_tasks, verification, churn=churn)
    with tempfile.TemporaryDirectory(prefix="bench-market-") as directory, collector_tuned():
        if trace_lines:
            tracemalloc.start(1)
        log = EventLog(Path(directory) / "events", flush_every=2_000)
        model = build_model(case, log)
        started = time.perf_counter()
        report = _TaskClock(case, time.process_time(), started, verbose=True) if progress else None
        run_until_finished(model, warmup_tasks, report)
        warm = rss_bytes()
        if progress:
            print(f"  warm-up done: RSS {warm / 2**20:,.1f} MiB after a full collection", flush=True)
        if trace_lines:
            before = tracemalloc.take_snapshot()
            traced_warm = tracemalloc.get_traced_memory()[0]
        run_until_finished(model, total_tasks, report)
        final = rss_bytes()
        wall_s = time.perf_counter() - started
        if trace_lines:
            after = tracemalloc.take_snapshot()
            traced_final = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            growth = after.compare_to(before, "lineno")
            print(
                f"\nLive Python allocations (tracemalloc): {traced_warm / 2**20:,.1f} MiB after task {warmup_tasks}, "
                f"{traced_final / 2**20:,.1f} MiB after task {total_tasks}; the lines that grew most:"
            )
            for stat in growth[:trace_lines]:
                print(f"  {stat.size_diff / 2**20:+8.2f} MiB {stat.count_diff:+9,d} blocks  {stat.traceback}")
        log.close()
        return MemoryMeasurement(
            providers, verification, warmup_tasks, total_tasks, warm, final, len(log.parts), wall_s, churn
        )


def memory_table(result: MemoryMeasurement) -> None:
    """Print the memory measurement."""
    print(
        f"\nMemory over a long horizon ({result.providers:,} providers, {result.verification}"
        f"{', churn' if result.churn else ''}, events flushed to "
        f"{result.parquet_parts} Parquet parts; measured first in the process; RSS includes the interpreter and "
        f"its libraries; {uptime()})"
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
    """Memory per idle provider (tracemalloc over `count` providers joining a running model), off the overlay
    and joined to it (degree 2, as a provider arriving in a market)."""
    off, joined = (idle_agents_memory(count, join_overlay) * 2**20 / count / 1000 for join_overlay in (False, True))
    print(
        f"\nMemory per idle provider ({count:,} providers that never leave, tracemalloc): {off:.2f} KB off the "
        f"overlay, {joined:.2f} KB joined to it (target <= 2.5 KB)"
    )


def ed25519_costs(batches: int = 15, per_batch: int = 500) -> tuple[float, float, float, float]:
    """CPU seconds of one Ed25519 signature and one verification of a provider claim with `cryptography`
    (the verification from the raw public key, as `ledger.verify_signature` does it, without its memo): the
    medians and the minima over `batches` batches."""
    key = derive_private_key(0, "bench-signature-costs")
    public_key = public_key_bytes(key)
    message = ProviderClaim("p12345", 7, 5, 9.87654321, sha256_hex(b"update")).encode()
    signature = key.sign(message)
    signs, verifies = [], []
    for _ in range(batches):
        started = time.process_time()
        for _ in range(per_batch):
            key.sign(message)
        signs.append((time.process_time() - started) / per_batch)
        started = time.process_time()
        for _ in range(per_batch):
            ledger_module._verify_signature(public_key, signature, message)
        verifies.append((time.process_time() - started) / per_batch)
    return statistics.median(signs), statistics.median(verifies), min(signs), min(verifies)


def signature_costs_row() -> None:
    """Print the Ed25519 costs beside the scenario defaults they back."""
    sign, verify, sign_min, verify_min = ed25519_costs()
    committee = load_scenario("quickstart").committee
    print(
        f"\nEd25519 with cryptography (CPU time per operation, median / minimum of 15 x 500; {uptime()}): "
        f"sign {1e6 * sign:.1f} / {1e6 * sign_min:.1f} us, verify {1e6 * verify:.1f} / {1e6 * verify_min:.1f} us; "
        f"scenario defaults signature_sign_s {1e6 * committee.signature_sign_s:.0f} us, "
        f"signature_verify_s {1e6 * committee.signature_verify_s:.0f} us"
    )


CASE_FORM = re.compile(
    r"(?P<providers>[0-9][0-9,_]*)x(?P<tasks>[0-9][0-9,_]*)(?::(?P<verification>[a-z_]+?))??(?P<churn>:churn)?"
)


def smallest_population() -> int:
    """The fewest providers a case can have: more than the overlay degree `degree_for` gives them."""
    return next(providers for providers in range(2, 1_000) if providers > degree_for(providers))


def parse_case(text: str, default_verification: str = "unsigned") -> MarketCase:
    """`PxT`, `PxT:verification` or either with `:churn` (e.g. `100000x10`, `1000x5:modelled`, `10000x5:churn`,
    `1000x5:modelled:churn`) as a back-to-back case. Refused with the rule: at least `smallest_population()`
    providers and 1 task, a known verification, and a population whose expected peak memory fits in the memory
    this machine has available now."""
    rule = (
        "expected PROVIDERSxTASKS[:VERIFICATION][:churn] with at least "
        f"{smallest_population()} providers and 1 task, VERIFICATION one of {', '.join(VERIFICATIONS)} "
        f"(default {default_verification}), e.g. 100000x10, 1000x5:modelled or 10000x5:churn"
    )
    match = CASE_FORM.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"{rule}; got {text!r}")
    verification = match["verification"] or default_verification
    if verification not in VERIFICATIONS:
        raise argparse.ArgumentTypeError(f"{rule}; got verification {match['verification']!r} in {text!r}")
    providers, tasks = (int(match[name].replace(",", "").replace("_", "")) for name in ("providers", "tasks"))
    if providers < smallest_population() or tasks < 1:
        tasks_text = f"{tasks:,} task{'s' if tasks != 1 else ''}"
        raise argparse.ArgumentTypeError(f"{rule}; got {providers:,} providers and {tasks_text}")
    needed = providers * PEAK_BYTES_PER_PROVIDER
    available = psutil.virtual_memory().available
    if needed > available:
        raise argparse.ArgumentTypeError(
            f"{providers:,} providers would need about {needed / 2**30:,.1f} GiB at their peak "
            f"({PEAK_BYTES_PER_PROVIDER / 1000:.0f} KB each, measured at 100,000), and this machine has "
            f"{available / 2**30:,.1f} GiB available; got {text!r}"
        )
    return MarketCase(providers, tasks, verification, churn=match["churn"] is not None)


ISSUE_BASELINE_PER_CPU_S = 13_600  # issue 15: unsigned provider-rounds per CPU s at 10,000 providers before it
ISSUE_SPEEDUP = 4


@dataclass(frozen=True)
class UploadCost:
    """CPU per provider-round of a population that never uploads, and the extra CPU of one upload."""

    declining_us: float  # every provider declines every round (ALLD): the fixed cost of a provider-round
    upload_us: float  # (all uploading - all declining) / uploads: what one upload adds, end to end
    mix_us: float  # the quick-start's mix, measured
    mix_upload_share: float  # its uploads per provider-round

    def upload_us_for(self, per_cpu_s: float) -> float:
        """The CPU per upload at which the quick-start's mix would run `per_cpu_s` provider-rounds per CPU s."""
        return (1e6 / per_cpu_s - self.declining_us) / self.mix_upload_share


def population_run(case: MarketCase) -> tuple[float, int, int]:
    """CPU seconds of one run of the case, its provider-rounds and its uploads (`update_sent` records)."""
    reset_caches()
    model = build_model(case)
    started = time.process_time()
    model.run()
    cpu = time.process_time() - started
    return cpu, provider_rounds_of(model), model.log.counts_by_kind.get("update_sent", 0)


def measure_upload_cost(providers: int, tasks: int, repeats: int) -> UploadCost:
    """Split a provider-round's CPU into a fixed part and a part per upload: every provider declining (ALLD),
    every provider uploading in every round (ALLC) and the quick-start's mix, run interleaved `repeats` times,
    each run in a fresh process; medians of CPU per provider-round."""
    mixes = {"declining": (("ALLD", 1.0),), "uploading": (("ALLC", 1.0),), "mix": None}
    per_round: dict[str, list[float]] = {name: [] for name in mixes}
    uploads: dict[str, int] = {}
    for _ in range(repeats):
        for name, mix in mixes.items():
            cpu, rounds, sent = in_fresh_process(
                population_run, MarketCase(providers, tasks, "unsigned", strategy_mix=mix)
            )
            per_round[name].append(1e6 * cpu / rounds)
            uploads[name] = sent
            uploads[f"{name} rounds"] = rounds
    declining, uploading, mix = (statistics.median(per_round[name]) for name in mixes)
    upload_share = uploads["uploading"] / uploads["uploading rounds"]
    return UploadCost(
        declining,
        (uploading - declining) / upload_share,
        mix,
        uploads["mix"] / uploads["mix rounds"],
    )


def upload_cost_table(providers: int, tasks: int, repeats: int) -> None:
    """Print the split and the CPU per upload that issue 15's 4x target would need."""
    cost = measure_upload_cost(providers, tasks, repeats)
    predicted = cost.declining_us + cost.mix_upload_share * cost.upload_us
    target = ISSUE_SPEEDUP * ISSUE_BASELINE_PER_CPU_S
    print(
        f"\nCPU per provider-round at {providers:,} providers x {tasks} tasks, unsigned (median of {repeats} "
        f"interleaved runs of each population, each in a fresh process; {uptime()}):"
    )
    print_table(
        ("population", "CPU us per provider-round", "uploads per provider-round"),
        [
            ("every provider declines (ALLD)", f"{cost.declining_us:.1f}", "0"),
            ("every provider uploads (ALLC)", f"{cost.declining_us + cost.upload_us:.1f}", "1"),
            (
                "quick-start mix",
                f"{cost.mix_us:.1f} (fixed + share x upload: {predicted:.1f})",
                f"{cost.mix_upload_share:.3f}",
            ),
        ],
    )
    needed = cost.upload_us_for(target)
    print(
        f"one upload adds {cost.upload_us:.1f} us end to end (training, claim, stamp, send, delivery, screening, "
        f"block, settlement, records); issue 15's {ISSUE_SPEEDUP}x of {ISSUE_BASELINE_PER_CPU_S:,} = {target:,} "
        f"provider-rounds per CPU s is {1e6 / target:.1f} us per provider-round, which at the mix's "
        f"{cost.mix_upload_share:.3f} uploads per provider-round needs "
        + (
            f"{needed:.1f} us per upload ({cost.upload_us / needed:.1f}x less than now)"
            if needed > 0
            else "a fixed part below its present size, whatever an upload costs"
        )
    )


def single_cases(cases: Sequence[MarketCase], repeats: int) -> None:
    """Each case alone, `repeats` times (reference, market, reference each time; the median ratio's row), with
    its progress per task, then its row and the process's peak RSS."""
    reference_loop(1_000, 20)  # warm up the interpreter and allocator
    measured = []
    for case in cases:
        churn = ", churn" if case.churn else ""
        print(
            f"\nCase {case.providers:,} providers x {case.tasks} tasks ({case.verification}{churn}), {uptime()}",
            flush=True,
        )
        wall_started = time.perf_counter()
        item = measure_interleaved(case, repeats, progress=True)
        wall_s = time.perf_counter() - wall_started
        print_table(THROUGHPUT_HEADERS, [throughput_row(item)])
        times = f"median ratio of {repeats} repeats, " if repeats > 1 else ""
        print(
            f"{times}build + run {item.build_cpu_s + item.run_cpu_s:,.1f} CPU s, {wall_s:,.1f} s wall (every repeat "
            f"and the reference loops before and after the market included); peak RSS of the measuring process "
            f"{item.peak_rss_bytes / 2**20:,.0f} MiB; {uptime()}",
            flush=True,
        )
        if case.providers == TARGET_PROVIDERS and case.verification == "unsigned" and case.plain:
            print(extrapolation_line(item))
        measured.append(item)
    exponent = scaling_exponent(measured)
    if exponent is not None:
        print(exponent_line(exponent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="few tasks per size: a smoke run (one to two minutes)")
    mode.add_argument(
        "--full", action="store_true", help="also 10,000 providers x 100 tasks and 100,000 providers x 10 tasks"
    )
    parser.add_argument("--profile", action="store_true", help="also profile a 1,000-provider, 5-task run")
    parser.add_argument(
        "--repeats",
        type=integer_in(1),
        default=None,
        help="(reference, market, reference) repeats per throughput case; the row is the median ratio's (default "
        "3, 1 with --quick or --case)",
    )
    only = parser.add_mutually_exclusive_group()
    only.add_argument(
        "--case",
        type=parse_case,
        action="append",
        metavar="PxT[:verification][:churn]",
        help="run only this throughput case (repeatable), e.g. 100000x10, 1000x5:modelled or 10000x5:churn "
        "(providers arrive and leave at the population's steady state); verification is one of "
        f"{', '.join(VERIFICATIONS)} (default unsigned); at least {smallest_population()} providers and 1 task",
    )
    only.add_argument(
        "--memory",
        type=parse_case,
        metavar="PxN[:verification][:churn]",
        help="run only the long-horizon memory measurement: P providers, N warm-up tasks, 10N in all (with "
        "':churn', providers arrive and leave at the population's steady state; default verification unsigned)",
    )
    only.add_argument("--signature-costs", action="store_true", help="measure only Ed25519's sign and verify costs")
    only.add_argument(
        "--upload-cost",
        type=parse_case,
        metavar="PxT",
        help="only split CPU per provider-round into a fixed part and a part per upload (populations that all "
        "decline, all upload, and the quick-start's mix, interleaved; unsigned), e.g. 10000x3",
    )
    parser.add_argument(
        "--tracemalloc",
        type=integer_in(1),
        default=0,
        metavar="LINES",
        help="with --memory: trace allocations and print the LINES lines that grew most",
    )
    args = parser.parse_args()
    alone = "--case" if args.case else "--memory" if args.memory is not None else None
    alone = alone or ("--signature-costs" if args.signature_costs else None)
    alone = alone or ("--upload-cost" if args.upload_cost is not None else None)
    if args.tracemalloc and args.memory is None:
        parser.error("--tracemalloc: only with --memory")
    if alone is not None:
        ignored = [
            option
            for option, given in (
                ("--quick", args.quick),
                ("--full", args.full),
                ("--profile", args.profile),
                ("--repeats", args.repeats is not None and alone not in ("--case", "--upload-cost")),
            )
            if given
        ]
        if ignored:
            parser.error(f"{', '.join(ignored)}: not with {alone}, which runs only its own measurement")
    if args.signature_costs:
        signature_costs_row()
        return
    if args.memory is not None:
        memory_table(
            measure_memory(
                args.memory.providers,
                args.memory.tasks,
                args.memory.verification,
                trace_lines=args.tracemalloc,
                progress=True,
                churn=args.memory.churn,
            )
        )
        return
    if args.case:
        single_cases(args.case, args.repeats or 1)
        return
    if args.upload_cost is not None:
        if args.upload_cost.verification != "unsigned" or args.upload_cost.churn:
            parser.error("--upload-cost: a PxT case, unsigned and without churn")
        upload_cost_table(args.upload_cost.providers, args.upload_cost.tasks, args.repeats or 3)
        return
    if args.quick:
        cases = [
            MarketCase(100, 5, "every_replica"),
            MarketCase(100, 5, "modelled"),
            MarketCase(100, 5, "unsigned"),
            MarketCase(1_000, 2, "every_replica"),
            MarketCase(1_000, 2, "modelled"),
            MarketCase(1_000, 2, "unsigned"),
            MarketCase(10_000, 1, "modelled"),
            MarketCase(10_000, 2, "unsigned"),  # two tasks: the 10,000 x 100 estimate leaves the first one out
            MarketCase(10_000, 1, "unsigned", churn=True),
        ]
    else:
        cases = [
            MarketCase(100, 20, "every_replica"),
            MarketCase(100, 20, "modelled"),
            MarketCase(100, 20, "unsigned"),
            MarketCase(1_000, 5, "every_replica"),
            MarketCase(1_000, 5, "modelled"),
            MarketCase(1_000, 5, "unsigned"),
            MarketCase(1_000, 5, "unsigned", poisson=True),
            MarketCase(10_000, 3, "every_replica"),
            MarketCase(10_000, 3, "modelled"),
            MarketCase(10_000, 5, "unsigned"),
            MarketCase(10_000, 5, "unsigned", churn=True),
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
    signature_costs_row()
    if args.profile:
        profile_run(1_000, 5)


if __name__ == "__main__":
    main()
