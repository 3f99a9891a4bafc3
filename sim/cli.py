"""The `flmarket` command line: run, validate and list scenarios, and the analysis subcommands.

Every subcommand module exposes `register(subparsers)`; this module only assembles them. Bad input exits with
status 2 and one line per problem naming the field, the value and the rule; nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from flmarket.market.errors import MarketError
from flmarket.sim.config import Scenario, ScenarioError, bundled_scenarios, load_scenario

DEFAULT_SCENARIO = "quickstart"


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    overrides: dict[str, object] = {}
    if args.seed is not None:
        overrides["run.seed"] = args.seed
    if args.horizon is not None:
        overrides["run.horizon_s"] = args.horizon
    if args.tasks is not None:
        overrides["run.tasks"] = args.tasks
    for item in args.set or []:
        key, separator, raw = item.partition("=")
        if not separator:
            raise ScenarioError(f"--set: expected KEY=VALUE (e.g. providers.count=50), got {item!r}")
        overrides[key.strip()] = _parse_value(raw.strip())
    return overrides


def _parse_value(raw: str) -> object:
    """A TOML value for --set (numbers, booleans, strings, inline tables)."""
    import tomllib

    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        return raw


def _summary(scenario: Scenario, result: object, console: Console) -> None:
    from flmarket.sim.runner import RunResult

    assert isinstance(result, RunResult)
    table = Table(title=f"flmarket run: {scenario.run.name} (seed {scenario.run.seed})", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    table.add_row("status", result.status)
    table.add_row("tasks finished", f"{result.tasks_finished}")
    table.add_row("simulated time", f"{result.final_time_s:,.1f} s")
    table.add_row("mean welfare per task", f"{result.mean_welfare:.4f}")
    for name, share in result.participation_by_strategy.items():
        table.add_row(f"participation y/R ({name})", f"{share:.3f}")
    table.add_row("events written", f"{result.events:,}")
    table.add_row("wall time", f"{result.wall_time_s:.2f} s")
    table.add_row("events per second", f"{result.events_per_second:,.0f}")
    table.add_row("run directory", str(result.run_dir))
    console.print(table)


def _run(args: argparse.Namespace) -> int:
    from flmarket.sim.runner import run_scenario

    scenario = load_scenario(args.scenario, _overrides(args))
    result = run_scenario(scenario, output_dir=Path(args.out) if args.out else None, show_progress=not args.quiet)
    if not args.quiet:
        _summary(scenario, result, Console())
    else:
        print(result.run_dir)
    return 0


def _validate(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    print(
        f"{args.scenario}: valid ({scenario.run.name}: {scenario.providers.count} providers, "
        f"{scenario.learning.backend} backend)"
    )
    return 0


def _scenarios(args: argparse.Namespace) -> int:
    table = Table(title="bundled scenarios (flmarket run NAME)")
    table.add_column("name", style="bold")
    table.add_column("description")
    for name, path in bundled_scenarios().items():
        scenario = load_scenario(str(path))
        table.add_row(name, scenario.run.description)
    Console().print(table)
    return 0


def _events(args: argparse.Namespace) -> int:
    import flmarket.sim.model  # noqa: F401 - registers the kinds declared beside the model
    from flmarket.sim.events import describe_kinds

    table = Table(title="event kinds (columns time, seq, kind, agent + the fields below)")
    table.add_column("kind", style="bold")
    table.add_column("fields")
    table.add_column("meaning")
    for name, kind in describe_kinds().items():
        table.add_row(
            name, ", ".join(f"{field}: {kind_type.__name__}" for field, kind_type in kind.fields), kind.description
        )
    Console(width=args.width).print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="flmarket",
        description="Discrete-event, agent-based simulator of federated-learning data markets (BGFL + MMZD).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = subparsers.add_parser(
        "run",
        help="simulate a scenario and write its event log",
        description="Simulate a scenario (a TOML file or a bundled name; default: the quick-start) and write "
        "runs/<run_id>/ with manifest.json and events/part-*.parquet. Read the events back with "
        "flmarket.analysis.load_events(run_dir).",
    )
    run.add_argument(
        "scenario",
        nargs="?",
        default=DEFAULT_SCENARIO,
        help=f"scenario file or bundled name (default: {DEFAULT_SCENARIO}; see `flmarket scenarios`)",
    )
    run.add_argument("--seed", type=int, help="override run.seed")
    run.add_argument("--out", help="output directory for the run directory (default: run.output_dir, 'runs')")
    run.add_argument("--horizon", type=float, help="override run.horizon_s (simulated seconds)")
    run.add_argument("--tasks", type=int, help="override run.tasks (stop after this many FL tasks)")
    run.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override any scenario field by its dotted path, e.g. --set providers.count=100 "
        "(repeatable; values are TOML)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar or table; print the run directory")
    run.set_defaults(func=_run)

    validate = subparsers.add_parser(
        "validate",
        help="check a scenario file without running it",
        description="Validate a scenario: unknown keys, wrong types and values out "
        "of range are reported with the field's dotted path.",
    )
    validate.add_argument("scenario", help="scenario file or bundled name")
    validate.set_defaults(func=_validate)

    scenarios = subparsers.add_parser("scenarios", help="list the bundled scenarios")
    scenarios.set_defaults(func=_scenarios)

    events = subparsers.add_parser(
        "events",
        help="list the event kinds a run logs and their fields",
        description="Every event kind with its typed fields: the schema of load_events(run_dir).",
    )
    events.add_argument("--width", type=int, default=None, help="table width in characters")
    events.set_defaults(func=_events)

    for register in _extensions():
        register(subparsers)
    return parser


def _extensions() -> list:
    """The `register` functions of the subcommands that live beside their code."""
    registers = []
    for module_name in (
        "flmarket.analysis.reproduce",
        "flmarket.sim.calibrate",
        "flmarket.sim.sweep",
        "flmarket.analysis.report",
    ):
        module = __import__(module_name, fromlist=["register"])
        registers.append(module.register)
    return registers


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `flmarket` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ScenarioError, MarketError) as error:
        for line in str(error).splitlines():
            print(f"flmarket: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flmarket: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
