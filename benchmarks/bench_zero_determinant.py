"""Benchmark of market/zero_determinant.py: welfare extremes by reduction against enumeration (SPEC B.4).

Columns: N organisations, R rounds, alliance size M, wall time of the reduction (median of repeats), of the
enumeration over (R+1)^N outcomes where feasible, their ratio, the largest difference between the two, and
the time of a full MMZD design (extremes + feasibility + phi). Target (SPEC B.4): reduction for N = 1000,
R = 3 under 1 s. Also the run-time cost of one MMZD decision (O(R) given the previous welfare) and a
Monte-Carlo round of N = 1000 organisations. Run `python benchmarks/bench_zero_determinant.py` (or `--quick`).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from flmarket.market.iterated import ConstantPolicy, public_goods_finite_game, simulate, uniform  # noqa: E402
from flmarket.market.public_goods import sample_dilemma_game  # noqa: E402
from flmarket.market.zero_determinant import ControlledGame, ZeroDeterminantPolicy, design_mmzda  # noqa: E402


def median_seconds(action: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    """Print the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes only, for a smoke run")
    arguments = parser.parse_args()
    cases = [(5, 3, 1), (7, 3, 3), (1000, 3, 1)] if arguments.quick else [
        (5, 3, 1), (7, 3, 1), (7, 3, 4), (9, 3, 1), (100, 3, 1), (1000, 3, 1), (1000, 3, 500), (10_000, 3, 1),
        (1000, 10, 1),
    ]  # fmt: skip
    repeats = 3 if arguments.quick else 7
    rng = np.random.default_rng(20260101)
    header = f"{'N':>7}{'R':>4}{'M':>6}{'reduce s':>11}{'enumerate s':>13}{'ratio':>9}{'max diff':>11}"
    print(f"{header}{'design s':>11}")
    for players, rounds, size in cases:
        game = sample_dilemma_game(rng, players, rounds)
        controlled = ControlledGame(game, tuple(range(size)))
        reduce_s = median_seconds(controlled.extremes_by_reduction, repeats)
        alliance = tuple(range(size))
        design_s = median_seconds(lambda g=game, a=alliance: design_mmzda(g, a, mode="paper"), repeats)
        if (rounds + 1) ** players <= 300_000:
            enumerate_s = median_seconds(controlled.extremes_by_enumeration, max(1, repeats // 2))
            fast, slow = controlled.extremes_by_reduction(), controlled.extremes_by_enumeration()
            difference = max(np.abs(fast.lowest - slow.lowest).max(), np.abs(fast.highest - slow.highest).max())
            extra = f"{enumerate_s:>13.4f}{enumerate_s / reduce_s:>9.0f}{difference:>11.1e}"
        else:
            extra = f"{'-':>13}{'-':>9}{'-':>11}"
        print(f"{players:>7}{rounds:>4}{size:>6}{reduce_s:>11.5f}{extra}{design_s:>11.5f}")

    players = 1000
    game = sample_dilemma_game(rng, players, 3)
    design = design_mmzda(game, (0,), mode="paper")
    welfare = np.array([0.1])
    own = np.array([2])
    decision_s = median_seconds(lambda: design.probabilities(welfare, own), 200)
    finite = public_goods_finite_game(game)
    policies = [ZeroDeterminantPolicy(design, finite.welfare, 0)] + [ConstantPolicy(uniform(4))] * (players - 1)
    repetitions, game_rounds = (20, 2) if arguments.quick else (100, 20)
    start = time.perf_counter()
    simulate(finite, policies, game_rounds, repetitions, np.random.default_rng(0))
    play_s = time.perf_counter() - start
    print()
    print(f"one MMZD decision (R = 3): {decision_s * 1e6:.1f} us")
    print(
        f"Monte Carlo, N = {players}, {game_rounds} rounds x {repetitions} repetitions: {play_s:.2f} s "
        f"({play_s / game_rounds * 1e3:.1f} ms per round)"
    )


if __name__ == "__main__":
    main()
