"""Benchmark of market/shapley.py: value calls, wall time and error against the exact Shapley values (B 10).

Game: v(S) = sqrt(sum of the members' integer data sizes), a cheap, saturating data-size game whose exact
values are known at any n from `exact_integer_sum_game_shapley`. Error columns: max_i |xi^ - xi| / mean_i |xi|
and ||xi^ - xi||_2 / ||xi||_2. Run `python benchmarks/bench_shapley.py` (or `--quick` for a smoke run).

Second table (issue 12): coverage of the nominal 95 % interval (Student-t, `interval_half_widths`) over many
seeds, against exact values, for games that are not sum games to the estimator (black-box v): a threshold
(weighted majority) game, a saturating accuracy curve 1 - exp(-T / c), sqrt(T) plus pairwise interactions
(exact: the recursion plus half of each pair's term), and an averaged-model game like the torch backend's
(quality of the data-weighted mean of the members' update vectors; exact by enumeration, so n <= 16). Each row
is one method at the round budget (`--budget`, default 20,000 calls, the scenario default); time per round.
Third table: rounds of the averaged-model game at n = 20, 40, 60 with a large budget: the value calls and
seconds the stratified estimator needs to reach the 1 % relative SE target. `--torch` adds real torch-backend
rounds (digits MLP): at n = 8, 10, 12 the coverage and maximum relative error of sampled estimates against the
exact values over 20 seeds; at n = 20, 40, 60 (1 and 5 local epochs) the value calls and CPU seconds to the 1 %
target at the round budget, next to the CPU seconds the round's training took and the value calls that time
would pay for at the row's cost per call; each with the Taylor control game (the default on torch) and without
it. `--dataset mnist --data-root DIR` runs them on a local MNIST; `--mnist-sized` on a synthetic set of MNIST's
sizes (see `write_mnist_sized`), where the round's training is one pass over 60,000 records instead of digits'
1,437.
"""

from __future__ import annotations

import argparse
import math
import os
import struct
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target says
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from flmarket.arguments import integer_in  # noqa: E402
from flmarket.market.shapley import (  # noqa: E402
    ShapleyResult,
    exact_integer_sum_game_shapley,
    shapley_values,
    stratified_sum_game_shapley,
)

Game = Callable[[frozenset], float]


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


def threshold_game(rng: np.random.Generator, players: int) -> tuple[Game, np.ndarray]:
    """Weighted majority: v(S) = 1 iff the members' weights (1..9) reach half the total plus one."""
    weights = rng.integers(1, 10, players)
    quota = int(weights.sum()) // 2 + 1
    listed = weights.tolist()

    def value(coalition: frozenset) -> float:
        return 1.0 if sum([listed[member] for member in coalition]) >= quota else 0.0

    return value, exact_integer_sum_game_shapley(weights, lambda totals: (np.asarray(totals) >= quota).astype(float))


def saturating_game(rng: np.random.Generator, players: int) -> tuple[Game, np.ndarray]:
    """A saturating accuracy curve: v(S) = 1 - exp(-T / c), T the members' data, c = 0.3 * the total."""
    weights = rng.integers(1, 10, players)
    scale = 0.3 * float(weights.sum())
    listed = weights.tolist()

    def value(coalition: frozenset) -> float:
        return 1.0 - math.exp(-sum([listed[member] for member in coalition]) / scale)

    exact = exact_integer_sum_game_shapley(weights, lambda totals: 1.0 - np.exp(-np.asarray(totals, float) / scale))
    return value, exact


def interaction_game(rng: np.random.Generator, players: int) -> tuple[Game, np.ndarray]:
    """v(S) = sqrt(T) + sum of b_ij over pairs in S (b ~ N(0, 0.05^2)): xi = the recursion + sum_j b_ij / 2."""
    weights = rng.integers(1, 10, players)
    pairs = np.triu(rng.normal(0.0, 0.05, (players, players)), 1)
    pairs = pairs + pairs.T
    listed, table = weights.tolist(), pairs.tolist()

    def value(coalition: frozenset) -> float:
        members = sorted(coalition)
        interactions = sum([table[a][b] for index, a in enumerate(members) for b in members[index + 1 :]])
        return math.sqrt(sum([listed[member] for member in members])) + interactions

    return value, exact_integer_sum_game_shapley(weights, sqrt_of_total) + 0.5 * pairs.sum(axis=1)


def averaged_model_game(rng: np.random.Generator, players: int, dimension: int = 8) -> tuple[Game, np.ndarray | None]:
    """Like the torch backend: v(S) = Q(data-weighted mean of S's updates) - Q(start), Q = 2 / (10 + loss),
    loss = ||w - w*||^2, a fifth of the providers noisy. Exact by enumeration for n <= 16, else None."""
    sizes = rng.integers(50, 500, players).astype(float)
    noise = np.where(rng.random(players) < 0.2, 3.0, 0.5)
    updates = rng.normal(0.0, 1.0, (players, dimension)) * noise[:, None]
    start = rng.normal(0.0, 2.0, dimension)
    base = 2.0 / (10.0 + float(start @ start))

    def value(coalition: frozenset) -> float:
        if not coalition:
            return 0.0
        members = list(coalition)
        mean = sizes[members] @ updates[members] / sizes[members].sum()
        return 2.0 / (10.0 + float(mean @ mean)) - base

    exact = shapley_values(range(players), value, exact_max=players).values if players <= 16 else None
    return value, exact


COVERAGE_GAMES = {
    "threshold": threshold_game,
    "saturating": saturating_game,
    "interaction": interaction_game,
    "averaged-model": averaged_model_game,
}


def coverage_rows(sizes: list[int], seeds: int, budget: int) -> None:
    """Coverage of the 95 % t interval and the error against exact values, per game, size and method."""
    print(
        f"{'game':<16}{'n':>4} {'method':<12}{'cover95':>8}{'max err':>9}{'med err':>9}{'med rSE':>9}"
        f"{'dof':>6}{'conv':>6}{'calls':>8}{'s/round':>9}"
    )
    for name, make in COVERAGE_GAMES.items():
        for players in sizes if name != "averaged-model" else [14, 16]:
            for method in ("rotations", "stratified"):
                covered, errors, relative, freedom, converged, calls, seconds = [], [], [], [], 0, 0, 0.0
                for seed in range(seeds):
                    rng = np.random.default_rng(seed)
                    value, exact = make(rng, players)
                    assert exact is not None
                    start = time.perf_counter()
                    result = shapley_values(
                        range(players),
                        value,
                        rng=rng,
                        exact_max=12,
                        max_evaluations=budget,
                        method=method,
                        exact_when_spent=False,  # the sampler's own coverage, even where 2^n calls were spent
                    )
                    seconds += time.perf_counter() - start
                    error = np.abs(result.values - exact)
                    covered.append(np.mean(error <= result.interval_half_widths(0.95) + 1e-12))
                    errors.append(float(np.max(error) / np.mean(np.abs(exact))))
                    relative.append(result.relative_standard_error)
                    freedom.append(result.degrees_of_freedom)
                    converged += result.converged
                    calls += result.evaluations
                print(
                    f"{name:<16}{players:>4} {method:<12}{np.mean(covered):>8.3f}{max(errors):>9.3f}"
                    f"{np.median(errors):>9.3f}{np.median(relative):>9.3f}{np.median(freedom):>6.0f}"
                    f"{converged:>3}/{seeds:<2}{calls / seeds:>8.0f}{seconds / seeds:>9.3f}"
                )


def target_rows(sizes: list[int], seeds: int, target: float) -> None:
    """Value calls and seconds the stratified estimator needs for `target` on averaged-model rounds."""
    print(f"{'game':<16}{'n':>4}{'calls to target':>17}{'s/round':>9}{'rel SE':>9}  converged")
    for players in sizes:
        calls, seconds, relative, converged = [], [], [], 0
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            value, _ = averaged_model_game(rng, players)
            start = time.perf_counter()
            result = shapley_values(
                range(players), value, rng=rng, target_relative_error=target, max_evaluations=2_000_000
            )
            seconds.append(time.perf_counter() - start)
            calls.append(result.evaluations)
            relative.append(result.relative_standard_error)
            converged += result.converged
        print(
            f"{'averaged-model':<16}{players:>4}{np.median(calls):>17.0f}{np.median(seconds):>9.2f}"
            f"{np.median(relative):>9.4f}  {converged}/{seeds}"
        )


TORCH_DATA: dict[str, str | None] = {"dataset": "digits", "root": None}  # set by --dataset, --data-root


def _torch_round(players: int, epochs: int, seed: int = 0):
    """A real torch-backend round (MLP, lr 0.05, eps 2, after 2 committed rounds, on TORCH_DATA's data set): the
    coalition value and the CPU seconds the providers' training of this round took."""
    from flmarket.market.fl.backend import BackendConfig, make_backend

    backend = make_backend(
        BackendConfig(name="torch", seed=seed, providers=players, learning_rate=0.05, **TORCH_DATA)  # type: ignore[arg-type]
    )
    rng = np.random.default_rng(seed)
    for provider in range(players):
        backend.register_provider(provider, rng)
    backend.start_task(0)
    for _ in range(2):
        backend.commit_round([backend.local_update(p, epochs, 2.0, "honest", rng) for p in range(players)])
    start = time.process_time()
    updates = [backend.local_update(p, epochs, 2.0, "honest", rng) for p in range(players)]
    return backend.coalition_value(updates), time.process_time() - start


def write_mnist_sized(root: Path, seed: int = 0) -> None:
    """A synthetic MNIST in the real idx format under `root`/MNIST/raw, for timing on MNIST-sized shards where
    MNIST is absent: scikit-learn's digits (8x8) scaled 3x to 24x24, padded to 28x28, with Gaussian noise
    (sd 30 of 255), drawn with replacement to 60,000 training and 10,000 test images. Learnable like digits;
    not MNIST, so only its sizes (and so the training time) are MNIST's."""
    from sklearn.datasets import load_digits

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    rng = np.random.default_rng(seed)
    for prefix, count in (("train", 60_000), ("t10k", 10_000)):
        index = rng.integers(0, len(digits.images), count)
        images = np.zeros((count, 28, 28))
        images[:, 2:26, 2:26] = np.kron(digits.images[index], np.ones((3, 3))) * 16.0
        images = np.clip(images + rng.normal(0.0, 30.0, images.shape), 0, 255)
        for name, array in (
            (f"{prefix}-images-idx3-ubyte", images),
            (f"{prefix}-labels-idx1-ubyte", digits.target[index]),
        ):
            header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
            (raw / name).write_bytes(header + array.astype(np.uint8).tobytes())


def _torch_label() -> str:
    return f"{TORCH_DATA['dataset']} MLP"


def torch_accuracy_rows(sizes: list[int], seeds: int, budget: int, target: float) -> None:
    """Sampled Shapley (exact_max = 3 forces sampling) on real torch rounds against the exact values (B 10)
    from all 2^n coalitions: coverage of the 95 % t-interval over seeds x players, max relative error
    max_i |xi^ - xi| / mean_i |xi| (worst seed) and median value calls, with the Taylor control game (the
    default) and without it. No seconds: the exact values leave every coalition cached."""
    print(f"{'torch round':<16}{'n':>4} {'estimator':<22}{'cover95':>8}{'max err':>9}{'calls':>8}  converged")
    for players in sizes:
        value, _ = _torch_round(players, 1)
        exact = shapley_values(range(players), value).values  # the platform's path: all 2^n, batched
        scale = float(np.mean(np.abs(exact)))
        for label, use_control in (("stratified+control", True), ("stratified", False)):
            covered = trials = converged = 0
            errors, calls = [], []
            for seed in range(seeds):
                result = shapley_values(
                    range(players),
                    value,
                    rng=np.random.default_rng(seed),
                    exact_max=3,
                    target_relative_error=target,
                    max_evaluations=budget,
                    use_control=use_control,
                    exact_when_spent=False,  # the sampler's own coverage on small rounds
                )
                inside = np.abs(result.values - exact) <= result.interval_half_widths(0.95)
                covered += int(inside.sum())
                trials += players
                errors.append(float(np.max(np.abs(result.values - exact))) / scale)
                calls.append(result.evaluations)
                converged += result.converged
            print(
                f"{_torch_label():<16}{players:>4} {label:<22}{covered / trials:>8.3f}{max(errors):>9.4f}"
                f"{np.median(calls):>8.0f}  {converged}/{seeds}"
            )


def torch_rows(sizes: list[int], budget: int, target: float) -> None:
    """Stratified Shapley on real torch-backend rounds (TORCH_DATA; 1 and 5 local epochs per provider, eps 2) at
    the round budget: value calls, CPU seconds (the Taylor control game included; torch.func's one-time import
    paid before) and relative SE, with and without the control game, next to the CPU seconds the providers'
    training of the round took (the data set split n ways: the round's training is one pass over the same
    records whatever n)."""
    # torch.func imports torch._dynamo on its first use (about 1.5 s, once per process): pay it before timing
    warm, _ = _torch_round(8, 1)
    shapley_values(range(8), warm, rng=np.random.default_rng(0), exact_max=3, max_evaluations=300, use_control=True)
    print(
        f"{'torch round':<16}{'n':>4}{'epochs':>7} {'estimator':<20}{'train s':>8}{'calls':>8}{'shapley s':>10}"
        f"{'rel SE':>8}  {'converged':<10}{'calls in train s':>16}"
    )
    for epochs in (1, 5):
        for players in sizes:
            for label, use_control in (("stratified+control", True), ("stratified", False)):
                value, training = _torch_round(players, epochs)
                start = time.process_time()
                result = shapley_values(
                    range(players),
                    value,
                    rng=np.random.default_rng(1),
                    target_relative_error=target,
                    max_evaluations=budget,
                    use_control=use_control,
                )
                seconds = time.process_time() - start
                # the value calls the round's training time would pay for, at this estimator's cost per call
                affordable = result.evaluations * training / seconds
                print(
                    f"{_torch_label():<16}{players:>4}{epochs:>7} {label:<20}{training:>8.2f}{result.evaluations:>8}"
                    f"{seconds:>10.2f}{result.relative_standard_error:>8.4f}  {result.converged!s:<10}"
                    f"{affordable:>16.0f}"
                )
    print(
        "calls in train s: the value calls the round's training time pays for at the row's own CPU cost per call "
        "(control game included). Where it is near or below n, no estimator that evaluates each provider's "
        "marginal at least once fits in the round's training time, whatever its variance."
    )


def generic_tables(arguments: argparse.Namespace) -> None:
    """The sum-game table, the coverage table and the averaged-model table (no torch)."""
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

    print()
    seeds = 5 if arguments.quick else arguments.seeds
    coverage_rows([20] if arguments.quick else [20, 40, 60], seeds, arguments.budget)
    print()
    target_rows([20] if arguments.quick else [20, 40, 60], 2 if arguments.quick else 5, arguments.target)


def relative_error(raw: str) -> float:
    """An argparse type: a relative standard error strictly between 0 and 1."""
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {raw!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {raw}")
    return value


def main() -> None:
    """Print the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes only, for a smoke run")
    parser.add_argument(
        "--target", type=relative_error, default=0.01, help="target relative standard error, in (0, 1) (default 0.01)"
    )
    parser.add_argument(
        "--budget", type=integer_in(1), default=20_000, help="value calls per round (coverage table; default 20,000)"
    )
    parser.add_argument(
        "--seeds", type=integer_in(1), default=50, help="rounds per row of the coverage table (default 50; 5 quick)"
    )
    parser.add_argument("--torch", action="store_true", help="also real torch rounds at n = 20, 40, 60 (minutes)")
    parser.add_argument("--torch-only", action="store_true", help="only the torch rounds (implies --torch)")
    parser.add_argument(
        "--dataset", choices=("digits", "mnist"), default="digits", help="the torch rounds' data (default digits)"
    )
    parser.add_argument(
        "--data-root", metavar="DIR", help="a local torchvision root holding MNIST (with --dataset mnist)"
    )
    parser.add_argument(
        "--mnist-sized",
        action="store_true",
        help="torch rounds on a synthetic MNIST-sized set (digits scaled to 28x28, 60,000 images) in a temporary root",
    )
    arguments = parser.parse_args()
    if arguments.dataset == "mnist" and not arguments.data_root and not arguments.mnist_sized:
        parser.error("--dataset mnist needs --data-root DIR (a torchvision root with MNIST/raw), or use --mnist-sized")
    if arguments.mnist_sized:  # removed at exit
        scratch = tempfile.TemporaryDirectory(prefix="flmarket-mnist-sized-")
        write_mnist_sized(Path(scratch.name))
        TORCH_DATA.update(dataset="mnist", root=scratch.name)
    else:
        TORCH_DATA.update(dataset=arguments.dataset, root=arguments.data_root)
    if not arguments.torch_only:
        generic_tables(arguments)
    if arguments.torch or arguments.torch_only:
        print()
        torch_accuracy_rows(
            [8] if arguments.quick else [8, 10, 12], 3 if arguments.quick else 20, arguments.budget, arguments.target
        )
        print()
        torch_rows([20] if arguments.quick else [20, 40, 60], arguments.budget, arguments.target)


if __name__ == "__main__":
    main()
