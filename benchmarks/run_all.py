"""Run every benchmark script (benchmarks/bench_*.py) in turn and print each one's table under a heading.

Each script runs in its own process with this interpreter, with `--quick` unless `--full` is given (then with
no flag: each script's own default, full measurement). Exits non-zero if any script fails.

Run: `python benchmarks/run_all.py` (the same as `--quick`; or `--full`, or `--only market kernel`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class BenchmarkOutcome:
    """How one script ended."""

    name: str
    returncode: int
    wall_s: float


def benchmark_scripts(only: list[str] | None = None) -> list[Path]:
    """The bench_*.py scripts in name order, restricted to `only` (names without `bench_` and `.py`); an unknown
    name is a ValueError that lists the known ones."""
    scripts = sorted(BENCHMARKS.glob("bench_*.py"))
    if only:
        wanted = set(only)
        unknown = wanted - {script.stem.removeprefix("bench_") for script in scripts}
        if unknown:
            known = ", ".join(script.stem.removeprefix("bench_") for script in scripts)
            raise ValueError(f"--only: unknown benchmark(s) {', '.join(sorted(unknown))} (known: {known})")
        scripts = [script for script in scripts if script.stem.removeprefix("bench_") in wanted]
    return scripts


def run_script(script: Path, quick: bool) -> BenchmarkOutcome:
    """Run one script with this interpreter from the repository root, its output streamed to ours."""
    command = [sys.executable, str(script), *(["--quick"] if quick else [])]
    heading = f"== {script.name}{' --quick' if quick else ''} "
    print(f"\n{heading}{'=' * max(0, 78 - len(heading))}", flush=True)
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=BENCHMARKS.parent, check=False)
    outcome = BenchmarkOutcome(script.name, completed.returncode, time.perf_counter() - started)
    if completed.returncode != 0:
        print(f"!! {script.name} failed with exit code {completed.returncode}", flush=True)
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="every script with --quick (the default)")
    size.add_argument("--full", action="store_true", help="full measurements (no --quick); takes much longer")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these, e.g. market kernel")
    args = parser.parse_args()
    try:
        scripts = benchmark_scripts(args.only)
    except ValueError as error:
        parser.error(str(error))
    outcomes = [run_script(script, quick=not args.full) for script in scripts]
    print(f"\n== summary {'=' * 67}")
    for outcome in outcomes:
        status = "ok" if outcome.returncode == 0 else f"FAILED (exit {outcome.returncode})"
        print(f"{outcome.name:<28} {outcome.wall_s:>8.1f} s  {status}")
    failed = [outcome for outcome in outcomes if outcome.returncode != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
