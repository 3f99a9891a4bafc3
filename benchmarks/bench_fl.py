"""Benchmark of the learning backends: round time, FedAdp vs FedAvg under label skew, calibration fit.

Run `python benchmarks/bench_fl.py` (a few minutes on 2 cores) or `--quick` for a smoke run. Prints:
seconds per aggregation round for 10 providers (MLP and CNN on digits, 5 local epochs each), CPU seconds per market
round and per market task of 3 rounds (one local epoch each, eps = 2, Shapley rewards over the torch coalition
values, SPEC A.5) at 10, 30 and 100 providers, split into training, settlement (coalition values and Shapley)
and commit, rounds to a target test accuracy for FedAdp and FedAvg on Dirichlet(0.5) digits, the surrogate's
per-call cost, and the precision function theta0 / (theta1 + K y) fitted to a real loss curve with its residual.
Times are CPU seconds of this process (time.process_time), so a loaded machine does not inflate them.
"""

from __future__ import annotations

import argparse
import time
from itertools import combinations

import numpy as np

from flmarket.market.fl.backend import BackendConfig, make_backend
from flmarket.sim.calibrate import run_calibration

PROVIDERS = 10
LOCAL_ITERATIONS = 5


def _backend(**overrides):
    backend = make_backend(BackendConfig(name="torch", seed=0, providers=PROVIDERS, **overrides))
    rng = np.random.default_rng(0)
    for provider in range(PROVIDERS):
        backend.register_provider(provider, rng)
    return backend


def seconds_per_round(model: str, rounds: int) -> float:
    """Mean CPU seconds of one round: 10 local updates, coalition-free FedAvg commit and evaluation."""
    backend = _backend(model=model)
    backend.start_task(0)
    rng = np.random.default_rng(1)
    backend.commit_round([backend.local_update(p, LOCAL_ITERATIONS, None, "honest", rng) for p in range(PROVIDERS)])
    started = time.process_time()
    for _ in range(rounds):
        updates = [backend.local_update(p, LOCAL_ITERATIONS, None, "honest", rng) for p in range(PROVIDERS)]
        backend.commit_round(updates)
    return (time.process_time() - started) / rounds


def market_task_seconds(providers: int, rounds: int) -> dict[str, float | int | str | bool]:
    """CPU seconds of one market task on the torch backend: start_task, then `rounds` rounds in which every
    provider trains one epoch (eps = 2), the coalition values of SPEC A.5 give the Shapley rewards (B 10, B 13)
    with the mechanism's defaults, and the round is committed. Returns the task's total and, per round, the
    training, the settlement (coalition values, the Taylor control game and Shapley) and the commit; also the
    value evaluations, the Shapley method and convergence of the last round."""
    from flmarket.market.mechanism import settle_round

    backend = make_backend(BackendConfig(name="torch", seed=0, providers=providers, learning_rate=0.05))
    rng = np.random.default_rng(0)
    for provider in range(providers):
        backend.register_provider(provider, rng)
    clock = time.process_time
    task_started = clock()
    backend.start_task(0)
    training = settling = committing = 0.0
    settlement = None
    for _ in range(rounds):
        started = clock()
        updates = [backend.local_update(p, 1, 2.0, "honest", rng) for p in range(providers)]
        trained = clock()
        value = backend.coalition_value(updates)
        if providers <= 12:  # the exact path: all 2^n coalitions, batched (as the platform does)
            value.values_of(
                frozenset(c) for size in range(1, providers + 1) for c in combinations(range(providers), size)
            )
        settlement = settle_round(
            list(range(providers)), value, 39.2, [1] * providers, [10.0] * providers, np.random.default_rng(1)
        )
        settled = clock()
        backend.commit_round(updates)
        training += trained - started
        settling += settled - trained
        committing += clock() - settled
    assert settlement is not None
    return {
        "task": clock() - task_started,
        "round": (training + settling + committing) / rounds,
        "training": training / rounds,
        "settlement": settling / rounds,
        "commit": committing / rounds,
        "evaluations": settlement.shapley.evaluations,
        "method": settlement.shapley.method,
        "converged": settlement.shapley.converged,
        "relative_se": settlement.shapley.relative_standard_error,
    }


def rounds_to_target(aggregation: str, target: float, max_rounds: int, seed: int) -> tuple[int | None, float]:
    """Rounds until the global model's test accuracy first reaches `target` (None if never)."""
    backend = make_backend(
        BackendConfig(
            name="torch", seed=seed, providers=PROVIDERS, partition="dirichlet", alpha=0.5, aggregation=aggregation
        )
    )
    rng = np.random.default_rng(seed)
    for provider in range(PROVIDERS):
        backend.register_provider(provider, rng)
    backend.start_task(0)
    accuracy = 0.0
    for round_index in range(1, max_rounds + 1):
        updates = [backend.local_update(p, LOCAL_ITERATIONS, None, "honest", rng) for p in range(PROVIDERS)]
        accuracy = backend.commit_round(updates).accuracy or 0.0
        if accuracy >= target:
            return round_index, accuracy
    return None, accuracy


def surrogate_microseconds(providers: int) -> float:
    """CPU microseconds per provider for local_update + commit on the surrogate."""
    backend = make_backend(BackendConfig(name="surrogate"))
    rng = np.random.default_rng(0)
    for provider in range(providers):
        backend.register_provider(provider, rng)
    backend.start_task(0)
    started = time.process_time()
    updates = [backend.local_update(p, LOCAL_ITERATIONS, 3.0, "honest", rng) for p in range(providers)]
    backend.commit_round(updates)
    return (time.process_time() - started) / providers * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke run, not a measurement")
    args = parser.parse_args()
    timing_rounds = 3 if args.quick else 20
    target, max_rounds, seeds = (0.7, 40, (0,)) if args.quick else (0.9, 300, (0, 1, 2))
    calibration_rounds = 10 if args.quick else 100

    print("| measurement | value |")
    print("|---|---|")
    for model in ("mlp", "cnn"):
        print(f"| s/round, {PROVIDERS} providers, {model} on digits | {seconds_per_round(model, timing_rounds):.4f} |")
    for providers in (10, 30, 100):
        task = market_task_seconds(providers, 3)
        print(
            f"| CPU s/market round, {providers} providers (train {task['training']:.2f} + settle "
            f"{task['settlement']:.2f} + commit {task['commit']:.2f}; {task['method']}, {task['evaluations']} values, "
            f"converged {task['converged']}, rel SE {task['relative_se']:.4f}) | {task['round']:.2f} |"
        )
        print(f"| CPU s/market task of 3 rounds, {providers} providers (start_task included) | {task['task']:.2f} |")
    print(f"| surrogate us/provider (10,000 providers) | {surrogate_microseconds(10_000):.2f} |")
    for aggregation in ("fedavg", "fedadp"):
        results = [rounds_to_target(aggregation, target, max_rounds, seed) for seed in seeds]
        text = ", ".join("never" if rounds is None else str(rounds) for rounds, _ in results)
        print(f"| rounds to {target:.0%} accuracy, Dirichlet(0.5), {aggregation} (seeds {seeds}) | {text} |")
    calibration = run_calibration(calibration_rounds, PROVIDERS, LOCAL_ITERATIONS, seed=0)
    fit = calibration.fit
    print(f"| calibration ({calibration_rounds} rounds x {PROVIDERS} providers) theta0 | {fit.theta0:.4g} |")
    print(f"| calibration theta1 | {fit.theta1:.4g} |")
    print(f"| calibration residual RMS (loss, nats) | {fit.residual_rms:.4g} |")
    print(
        f"| calibration final loss / accuracy | {calibration.curve.losses[-1]:.4f} / "
        f"{calibration.curve.accuracies[-1]:.4f} |"
    )


if __name__ == "__main__":
    main()
