"""Benchmark of market/shapley.py: value calls, wall time and error against the exact Shapley values (B 10).

Game: v(S) = sqrt(sum of the members' integer data sizes), a cheap, saturating data-size game whose exact
values are known at any n from `exact_integer_sum_game_shapley`. Error columns: max_i |xi^ - xi| / mean_i |xi|
and ||xi^ - xi||_2 / ||xi||_2. Run `python benchmarks/bench_shapley.py` (or `--quick` for a smoke run).
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target says
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from flmarket.market.shapley import (  # noqa: E402
    ShapleyResult,
    exact_integer_sum_game_shapley,
    shapley_values,
    stratified_sum_game_shapley,
)


def sqrt_of_total(totals: np.ndarray) -> np.ndarray:
    """g(T) = sqrt(T), vectorised."""
    return np.sqrt(np.asarray(totals, dtype=float))


def row(label: str, players: int, result: ShapleyResult, seconds: float, exact: np.ndarray | None) -> str:
    """One line of the table."""
    if exact is None:
        max_error = l2_error = "n/a"
    else:
        max_error = f"{np.max(np.abs(result.values - exact)) / np.mean(np.abs(exact)):.2e}"
        l2_error = f"{np.linalg.norm(result.values - exact) / np.linalg.norm(exact):.2e}"
    return (
        f"{label:<24}{players:>7}{result.evaluations:>12}{result.samples:>9}{seconds:>10.3f}"
        f"{result.relative_standard_error:>10.2e}{max_error:>10}{l2_error:>10}  {result.converged!s:<5}"
    )


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes only, for a smoke run")
    parser.add_argument("--target", type=float, default=0.01, help="target relative standard error")
    arguments = parser.parse_args()
    generic_sizes = [8, 12, 16] if arguments.quick else [8, 12, 16, 50, 100]
    stratified_sizes = [1_000] if arguments.quick else [1_000, 10_000]
    rng = np.random.default_rng(20240601)
    print(
        f"{'method':<24}{'n':>7}{'value calls':>12}{'samples':>9}{'wall s':>10}{'rel SE':>10}"
        f"{'max err':>10}{'L2 err':>10}  conv"
    )
    for players in generic_sizes:
        weights = rng.integers(1, 10, players)
        size_list = weights.tolist()

        def value(coalition: frozenset, sizes: list[int] = size_list) -> float:
            return math.sqrt(sum([sizes[member] for member in coalition]))

        exact = exact_integer_sum_game_shapley(weights, sqrt_of_total)
        start = time.perf_counter()
        result = shapley_values(range(players), value, rng=rng, target_relative_error=arguments.target)
        print(row("shapley_values", players, result, time.perf_counter() - start, exact))
        if players == 16:
            start = time.perf_counter()
            enumerated = shapley_values(range(players), value, exact_max=16)
            print(row("  exact enumeration", players, enumerated, time.perf_counter() - start, exact))
    for players in stratified_sizes:
        weights = rng.integers(1, 10, players)
        start = time.perf_counter()
        result = stratified_sum_game_shapley(weights, sqrt_of_total, rng, target_relative_error=arguments.target)
        print(row("stratified_sum_game", players, result, time.perf_counter() - start, None))
        # Closed form: v(S) = (sum_S w)^2 gives xi_i = w_i * W.
        start = time.perf_counter()
        result = stratified_sum_game_shapley(weights, np.square, rng, target_relative_error=arguments.target, strata=64)
        print(
            row(
                "  quadratic (closed form)",
                players,
                result,
                time.perf_counter() - start,
                weights * weights.sum(),
            )
        )


if __name__ == "__main__":
    main()
