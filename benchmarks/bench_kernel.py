"""Kernel benchmark: the simulator's event cost next to a bare SimPy loop, and the memory of idle agents.

Measured in one run, as ratios on CPU time (the machines are noisy), the two loops interleaved (bare, logged,
bare, logged, ...) and the median ratio of the pairs reported:
- bare: 1,000 SimPy processes with exponential timeouts;
- logged: the same loop, each wake-up appending one typed record to flmarket's EventLog (target <= 1.5x bare
  per event);
- memory: 10,000 idle providers that never leave (Mesa agent, private type, strategy, own random stream,
  signing and timer keys; no process scheduled), target <= 25 MB (1 MB = 10^6 bytes); `--quick` measures 2,000
  and scales the figure to 10,000 (and says so).

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
    """CPU seconds for `processes` SimPy processes each waking `events_per_process` times."""
    env = simpy.Environment()
    rng = np.random.default_rng(seed)

    def ticker(delays: np.ndarray):
        for delay in delays:
            yield env.timeout(delay)

    for _ in range(processes):
        env.process(ticker(rng.exponential(1.0, events_per_process)))
    started = time.process_time()
    env.run()
    return time.process_time() - started


def logged_loop(processes: int, events_per_process: int, seed: int = 0) -> float:
    """CPU seconds of the bare loop with one EventLog record per wake-up (in-memory buffers, flushed at the
    end)."""
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
    started = time.process_time()
    env.run()
    log.close()
    return time.process_time() - started


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


def interleaved_pairs(repeats: int, first: Callable[[], float], second: Callable[[], float]) -> tuple[float, float]:
    """`repeats` pairs (first, second) run alternately, the collector emptied before each run: the pair with the
    median ratio second / first (the lower middle one for an even count)."""
    pairs = []
    for _ in range(repeats):
        gc.collect()
        a = first()
        gc.collect()
        pairs.append((a, second()))
    pairs.sort(key=lambda pair: pair[1] / pair[0])
    return pairs[(len(pairs) - 1) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer events, one repeat")
    args = parser.parse_args()
    processes, per_process = (1000, 20) if args.quick else (1000, 100)
    repeats = 3 if args.quick else 7
    bare_loop(processes, per_process)  # warm up the interpreter and allocator for both loops
    logged_loop(processes, per_process)
    events = processes * per_process
    bare, logged = interleaved_pairs(
        repeats, lambda: bare_loop(processes, per_process), lambda: logged_loop(processes, per_process)
    )
    agents = 2000 if args.quick else 10_000
    memory = idle_agents_memory(agents)
    per_10k_mb = memory * 2**20 / agents * 10_000 / 1e6
    scaled = f", scaled from {agents:,}" if agents != 10_000 else ""

    rows = [
        ("bare SimPy loop", f"{events:,} events", f"{events / bare:,.0f} ev per CPU s", "1.00x"),
        (
            "kernel + event log",
            f"{events:,} events",
            f"{events / logged:,.0f} ev per CPU s",
            f"{logged / bare:.2f}x CPU per event (median of {repeats} interleaved pairs; target <= 1.5x)",
        ),
        (
            f"{agents:,} idle providers",
            "memory",
            f"{memory * 2**20 / 1e6:.1f} MB",
            f"{per_10k_mb:.1f} MB per 10,000{scaled} (target <= 25 MB)",
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
