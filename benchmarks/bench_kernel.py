"""Kernel benchmark: the simulator's event cost next to a bare SimPy loop, and the memory of idle agents.

Measured in one run, as ratios (the machines are noisy):
- bare: 1,000 SimPy processes with exponential timeouts;
- logged: the same loop, each wake-up appending one typed record to flmarket's EventLog (target <= 1.5x bare
  per event);
- memory: 10,000 idle providers that never leave (Mesa agent, private type, strategy, own random stream,
  signing and timer keys; no process scheduled), target <= 25 MB.

The whole simulator's rate against a bare loop is measured by bench_market.py.

Run: `python benchmarks/bench_kernel.py` (or `--quick`).
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import simpy

from flmarket.sim.config import load_scenario
from flmarket.sim.events import EventLog, register_kind
from flmarket.sim.model import MarketModel

register_kind("bench_tick", "a benchmark wake-up", process=int, delay=float)


def bare_loop(processes: int, events_per_process: int, seed: int = 0) -> float:
    """Seconds for `processes` SimPy processes each waking `events_per_process` times."""
    env = simpy.Environment()
    rng = np.random.default_rng(seed)

    def ticker(delays: np.ndarray):
        for delay in delays:
            yield env.timeout(delay)

    for _ in range(processes):
        env.process(ticker(rng.exponential(1.0, events_per_process)))
    started = time.perf_counter()
    env.run()
    return time.perf_counter() - started


def logged_loop(processes: int, events_per_process: int, seed: int = 0) -> float:
    """The bare loop with one EventLog record per wake-up (in-memory buffers, flushed at the end)."""
    env = simpy.Environment()
    rng = np.random.default_rng(seed)
    log = EventLog(None, flush_every=100_000)
    emit = log.emitter("bench_tick")

    def ticker(process: int, delays: np.ndarray):
        for delay in delays:
            yield env.timeout(delay)
            emit(env.now, process, process, delay)

    for process in range(processes):
        env.process(ticker(process, rng.exponential(1.0, events_per_process)))
    started = time.perf_counter()
    env.run()
    log.close()
    return time.perf_counter() - started


def idle_agents_memory(count: int, join_overlay: bool = False) -> float:
    """MiB allocated by `count` idle providers joining a running model (tracemalloc); with `join_overlay`, each
    also joins the overlay (degree 2) and takes its messages, as a provider arriving in a market does."""
    scenario = load_scenario(
        "quickstart", {"providers.count": 10, "network.degree": 2, "providers.mean_lifetime_s": float("inf")}
    )
    model = MarketModel(scenario)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    providers = [model._new_provider(join_overlay=join_overlay) for _ in range(count)]
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    allocated = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert len(providers) == count
    return allocated / 2**20


def best_of(repeats: int, function: Callable[[], float]) -> float:
    """The fastest of `repeats` runs (the least disturbed by the machine's noise)."""
    return min(function() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer events, one repeat")
    args = parser.parse_args()
    processes, per_process = (1000, 20) if args.quick else (1000, 100)
    repeats = 1 if args.quick else 5
    bare_loop(processes, per_process)  # warm up the interpreter and allocator for both loops
    logged_loop(processes, per_process)
    events = processes * per_process
    bare = best_of(repeats, lambda: bare_loop(processes, per_process))
    logged = best_of(repeats, lambda: logged_loop(processes, per_process))
    memory = idle_agents_memory(2000 if args.quick else 10_000)
    agents = 2000 if args.quick else 10_000

    rows = [
        ("bare SimPy loop", f"{events:,} events", f"{events / bare:,.0f} ev/s", "1.00x"),
        (
            "kernel + event log",
            f"{events:,} events",
            f"{events / logged:,.0f} ev/s",
            f"{logged / bare:.2f}x cost per event (target <= 1.5x)",
        ),
        (
            f"{agents:,} idle providers",
            "memory",
            f"{memory:.1f} MiB",
            f"{memory * 10_000 / agents:.1f} MiB per 10,000 (target <= 25 MB)",
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    print(
        "  ".join(
            header.ljust(width) for header, width in zip(("measurement", "size", "rate", "ratio"), widths, strict=True)
        )
    )
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
