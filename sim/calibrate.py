"""The `flmarket calibrate` subcommand: fit the surrogate's precision function to real training on digits.

Trains the torch backend (MLP on scikit-learn's digits, IID shards, FedAvg, Table 3 settings), records the
loss after every aggregation round, fits theta0 / (theta1 + K * y) (SPEC B.1) and writes a TOML scenario
fragment `[learning.surrogate]` that the surrogate backend reads.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from flmarket.market.fl.backend import BackendConfig, make_backend
from flmarket.market.fl.calibrate import LossCurve, PrecisionFit, fit_precision_function, measure_loss_curve


@dataclass(frozen=True)
class Calibration:
    """A measured loss curve and the precision function fitted to it."""

    curve: LossCurve
    fit: PrecisionFit
    rounds: int
    providers: int
    local_iterations: int
    seed: int


def run_calibration(
    rounds: int,
    providers: int,
    local_iterations: int,
    seed: int,
    progress: bool = False,
    learning_rate: float = 0.01,
) -> Calibration:
    """Train `providers` IID digits providers for `rounds` FedAvg rounds of `local_iterations` local epochs each
    (SPEC A.2) and fit SPEC B.1's precision; also measures ||u||_1 of one epoch's update."""
    backend = make_backend(BackendConfig(name="torch", seed=seed, providers=providers, learning_rate=learning_rate))
    rng = np.random.default_rng(seed)
    for provider in range(providers):
        backend.register_provider(provider, rng)
    with tqdm(total=rounds, desc="calibrate", unit="round", disable=not progress) as bar:

        def advance(result: object) -> None:
            bar.set_postfix(loss=f"{getattr(result, 'loss', float('nan')):.4f}")
            bar.update()

        curve = measure_loss_curve(backend, range(providers), rounds, local_iterations, rng, on_round=advance)
    fit = fit_precision_function(curve.total_participation, curve.losses, local_iterations=local_iterations)
    return Calibration(curve, fit, rounds, providers, local_iterations, seed)


def surrogate_fragment(calibration: Calibration) -> str:
    """The TOML `[learning.surrogate]` fragment for a calibration, with its provenance in comments."""
    fit = calibration.fit
    final_accuracy = calibration.curve.accuracies[-1]
    return (
        f"# flmarket calibrate: digits, MLP, FedAvg, {calibration.providers} IID providers x "
        f"{calibration.rounds} rounds, seed {calibration.seed}\n"
        f"# loss H(y) = theta0 / (theta1 + local_iterations * y), y = provider-rounds (SPEC B.1)\n"
        f"# fit residual (RMS) = {fit.residual_rms:.6g}; final loss = {calibration.curve.losses[-1]:.6g}; "
        f"final accuracy = {final_accuracy:.4f}\n"
        "[learning.surrogate]\n"
        f"theta0 = {fit.theta0!r}\n"
        f"theta1 = {fit.theta1!r}\n"
        f"local_iterations = {calibration.local_iterations}\n"
        f"update_l1_norm = {calibration.curve.mean_update_l1_norm!r}\n"
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def handle(args: argparse.Namespace) -> int:
    """Run the calibration, print the fit and write the fragment to --out (or stdout); returns 0."""
    calibration = run_calibration(
        args.rounds, args.providers, args.local_iterations, args.seed, progress=True, learning_rate=args.learning_rate
    )
    fragment = surrogate_fragment(calibration)
    if args.out is None:
        print(fragment, end="")
    else:
        path = Path(args.out)
        temporary = path.with_name(path.name + ".part")
        temporary.write_text(fragment, encoding="utf-8")
        temporary.replace(path)
        fit = calibration.fit
        print(f"wrote {path}: theta0={fit.theta0:.6g} theta1={fit.theta1:.6g} residual_rms={fit.residual_rms:.3g}")
    print(f"fit residual RMS = {calibration.fit.residual_rms:.4g} (loss units)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `calibrate` subcommand to the flmarket command line."""
    parser = subparsers.add_parser(
        "calibrate",
        help="fit the surrogate's precision function to real federated training on digits",
        description=(
            "Train an MLP with FedAvg on scikit-learn's digits (IID shards, momentum 0.5, batch 64, "
            "local epochs as SPEC A.2), "
            "record the test loss after every round, fit loss = theta0 / (theta1 + K * y) with y the "
            "provider-rounds so far (SPEC B.1), and write a TOML [learning.surrogate] fragment."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rounds", type=_positive_int, default=100, help="aggregation rounds to train")
    parser.add_argument("--providers", type=_positive_int, default=10, help="IID providers, all take part")
    parser.add_argument(
        "--local-iterations", type=_positive_int, default=1, help="local epochs per round (K; SPEC A.2: one epoch each)"
    )
    parser.add_argument("--learning-rate", type=float, default=0.05, help="SGD learning rate (Table 3: 0.01)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data split, partition and training")
    parser.add_argument("--out", default=None, help="TOML file to write (default: print to stdout)")
    parser.set_defaults(func=handle)
