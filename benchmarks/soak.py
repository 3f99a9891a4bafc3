"""Soak: many seeds of the bundled scenarios for hundreds of tasks, counting crashes (issue 13).

Each (scenario, seed) runs in its own process from a pool, with nothing written to disk, and the table says per
scenario how many runs finished, how many crashed (with the first line of each error), the tasks done and the
wall time. Exit status 1 if any run crashed.

    python benchmarks/soak.py                       # 50 seeds x 400 tasks of quickstart, shorter soaks of the others
    python benchmarks/soak.py --seeds 5 --scale 0.1 # a quick look
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

# (scenario, seeds, tasks) at --scale 1: the quick-start in full, shorter soaks of the others.
PLAN: tuple[tuple[str, int, int], ...] = (
    ("quickstart", 50, 400),
    ("free-riders", 10, 200),
    ("evolution", 10, 300),
    ("mmzd-fig3", 10, 200),
    ("bgfl-table3", 10, 100),
)


@dataclass(frozen=True)
class SoakResult:
    scenario: str
    seed: int
    tasks: int
    tasks_finished: int
    wall_s: float
    error: str


def soak_one(scenario_name: str, seed: int, tasks: int) -> SoakResult:
    """Run one scenario in memory (no event files) and report how it ended."""
    from flmarket.sim.config import load_scenario
    from flmarket.sim.model import MarketModel

    started = time.perf_counter()
    model = None
    try:
        scenario = load_scenario(scenario_name, {"run.seed": seed, "run.tasks": tasks})
        model = MarketModel(scenario)
        model.run()
        error = ""
    except Exception as exception:  # a soak counts every crash, whatever it is
        last = traceback.extract_tb(exception.__traceback__)[-1]
        error = f"{type(exception).__name__}: {exception} ({last.filename.rsplit('/', 1)[-1]}:{last.lineno})"
    finished = model.tasks_finished if model is not None else 0
    return SoakResult(scenario_name, seed, tasks, finished, time.perf_counter() - started, error)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=None, help="seeds per scenario (default: the plan's)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every plan's task count (default 1)")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--only", action="append", help="soak only this scenario (repeatable)")
    args = parser.parse_args(argv)

    jobs = [
        (name, seed, max(1, round(tasks * args.scale)))
        for name, seeds, tasks in PLAN
        if not args.only or name in args.only
        for seed in range(1, (args.seeds or seeds) + 1)
    ]
    results: list[SoakResult] = []
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [pool.submit(soak_one, *job) for job in jobs]
        for done, future in enumerate(as_completed(futures), 1):
            result = future.result()
            results.append(result)
            status = "ok" if not result.error else f"CRASH {result.error}"
            print(
                f"[{done}/{len(jobs)}] {result.scenario} seed {result.seed}: {result.tasks_finished}/{result.tasks} "
                f"tasks in {result.wall_s:.1f} s {status}",
                file=sys.stderr,
                flush=True,
            )
    print("\n| scenario | runs | tasks per run | crashed | tasks finished | wall s (sum) |\n|---|---|---|---|---|---|")
    for name in dict.fromkeys(result.scenario for result in results):
        mine = [result for result in results if result.scenario == name]
        crashed = [result for result in mine if result.error]
        print(
            f"| {name} | {len(mine)} | {mine[0].tasks} | {len(crashed)} | "
            f"{sum(result.tasks_finished for result in mine):,} | {sum(result.wall_s for result in mine):,.0f} |"
        )
    for result in sorted(results, key=lambda item: (item.scenario, item.seed)):
        if result.error:
            print(f"crash: {result.scenario} seed {result.seed} at task {result.tasks_finished + 1}: {result.error}")
    print(f"\nwall time {time.perf_counter() - started:,.0f} s with {args.workers} workers")
    return 1 if any(result.error for result in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
