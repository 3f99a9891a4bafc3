"""The `flmarket calibrate` subcommand: fit the surrogate's precision function to real training on digits.

Trains the torch backend (MLP on scikit-learn's digits, IID shards, FedAvg, Table 3 settings), records the
loss after every aggregation round, fits theta0 / (theta1 + K * y) (SPEC B.1) and writes a TOML scenario
fragment `[learning.surrogate]` that the surrogate backend reads (stdout carries the fragment alone; status
goes to stderr).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from flmarket.arguments import integer_in
from flmarket.arguments import seed as seed_argument
from flmarket.files import write_text_atomically
from flmarket.market.errors import MarketError, PartitionError
from flmarket.market.fl.backend import BackendConfig, make_backend
from flmarket.market.fl.calibrate import (
    MINIMUM_FIT_POINTS,
    LossCurve,
    PrecisionFit,
    TrainingDivergedError,
    fit_precision_function,
    measure_loss_curve,
)

MINIMUM_ROUNDS = MINIMUM_FIT_POINTS - 1
"""The fit needs the untrained model's loss and at least this many rounds after it."""

DEFAULT_LEARNING_RATE = 0.05
LARGEST_LEARNING_RATE = float(np.finfo(np.float32).max)
"""The model's weights are float32: torch cannot step them by a larger learning rate (3.4028234663852886e+38)."""


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


_rounds = integer_in(
    MINIMUM_ROUNDS, note=f" (the fit needs {MINIMUM_FIT_POINTS} points: the untrained model and rounds)"
)
"""--rounds: the fit needs MINIMUM_FIT_POINTS points, round 0 included."""

_count = integer_in(1)
"""--providers and --local-iterations: an integer >= 1."""


def _learning_rate(raw: str) -> float:
    """--learning-rate: a number in (0, LARGEST_LEARNING_RATE], the float32 weights' limit."""
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {raw!r}") from None
    if not (math.isfinite(value) and 0 < value <= LARGEST_LEARNING_RATE):
        raise argparse.ArgumentTypeError(
            f"must be a finite number > 0 and at most {LARGEST_LEARNING_RATE!r} (float32's largest, the weights' "
            f"type), got {raw!r}"
        )
    return value


def _output_file(raw: str) -> Path:
    """--out: a path to a regular file (new or to replace) in a folder that exists."""
    path = Path(raw)
    if not raw or raw.endswith(("/", os.sep)) or path.is_dir():
        raise argparse.ArgumentTypeError(f"must be a file path, not a folder, got {raw!r}")
    if path.exists() and not path.is_file():
        raise argparse.ArgumentTypeError(f"must be a regular file to replace or a new file, got {raw!r}")
    folder = path.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"folder {str(folder)!r} does not exist or is not a folder, got {raw!r}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"folder {str(folder)!r} is not writable, got {raw!r}")
    return path


def handle(args: argparse.Namespace) -> int:
    """Run the calibration and write the fragment to --out (or stdout, alone); status goes to stderr; returns 0."""
    try:
        calibration = run_calibration(
            args.rounds,
            args.providers,
            args.local_iterations,
            args.seed,
            progress=True,
            learning_rate=args.learning_rate,
        )
    except TrainingDivergedError:
        raise MarketError(
            f"--learning-rate: training diverged at {args.learning_rate!r} (an update or the loss stopped being "
            f"finite); try a smaller learning rate (default {DEFAULT_LEARNING_RATE})"
        ) from None
    except PartitionError as error:
        raise MarketError(f"--providers: {str(error).removeprefix('providers: ')}") from None
    fragment = surrogate_fragment(calibration)
    fit = calibration.fit
    if args.out is None:
        print(fragment, end="", flush=True)
    else:
        write_text_atomically(Path(args.out), fragment)
        print(
            f"wrote {args.out}: theta0={fit.theta0:.6g} theta1={fit.theta1:.6g} residual_rms={fit.residual_rms:.3g}",
            file=sys.stderr,
        )
    print(f"fit residual RMS = {fit.residual_rms:.4g} (loss units)", file=sys.stderr)
    return 0


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless it is None (the help then says what leaving the option out does)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `calibrate` subcommand to the flmarket command line."""
    parser = subparsers.add_parser(
        "calibrate",
        help="fit the surrogate's precision function to real federated training on digits",
        description=(
            "Train an MLP with FedAvg on scikit-learn's digits (IID shards, momentum 0.5, batch 64, "
            "local epochs as SPEC A.2), "
            "record the test loss after every round, fit loss = theta0 / (theta1 + K * y) with y the "
            "provider-rounds so far (SPEC B.1), and write a TOML [learning.surrogate] fragment. "
            "Standard output carries the fragment alone (redirect it to a .toml file); progress and the fit's "
            "residual go to standard error."
        ),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--rounds",
        type=_rounds,
        default=100,
        help=f"aggregation rounds to train, >= {MINIMUM_ROUNDS} (the fit needs {MINIMUM_FIT_POINTS} points)",
    )
    parser.add_argument("--providers", type=_count, default=10, help="IID providers, all take part")
    parser.add_argument(
        "--local-iterations", type=_count, default=1, help="local epochs per round (K; SPEC A.2: one epoch each)"
    )
    parser.add_argument(
        "--learning-rate",
        type=_learning_rate,
        default=DEFAULT_LEARNING_RATE,
        help=f"SGD learning rate, a number > 0 and at most {LARGEST_LEARNING_RATE:.8g} (float32's largest; "
        "Table 3: 0.01)",
    )
    parser.add_argument(
        "--seed",
        type=seed_argument,
        default=0,
        help="seed of the data split, partition and training, 0 <= SEED < 2**63",
    )
    parser.add_argument(
        "--out",
        type=_output_file,
        default=None,
        metavar="FILE",
        help="TOML file to write (replaced atomically; its folder must exist); without it, the fragment goes to "
        "standard output",
    )
    parser.set_defaults(func=handle)
