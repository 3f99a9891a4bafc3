"""The `flmarket` command line: run, validate and list scenarios, and the analysis subcommands.

Every subcommand lives in a module that exposes `register(subparsers)`; this module only assembles them, lazily.
`COMMANDS` maps each name to its module and one line of help: `flmarket --help` prints that table without importing
any of them, and `flmarket NAME ...` imports NAME's module alone to build its parser (scipy, matplotlib and dask are
loaded only by the commands that use them). Bad input exits with status 2 and one line per problem naming the
field, the value and the rule; nothing is written.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from flmarket.arguments import folder, integer, integer_in, seed

if TYPE_CHECKING:
    from rich.console import Console

    from flmarket.sim.config import Scenario


class Command(NamedTuple):
    """One subcommand: `module:function` that registers it (default function `register`), and its help line."""

    target: str
    help: str


COMMANDS: dict[str, Command] = {
    "run": Command("flmarket.sim.cli:register_run", "simulate a scenario and write its event log"),
    "validate": Command("flmarket.sim.cli:register_validate", "check a scenario file without running it"),
    "scenarios": Command("flmarket.sim.cli:register_scenarios", "list the bundled scenarios"),
    "events": Command("flmarket.sim.cli:register_events", "list the event kinds a run logs and their fields"),
    "sweep": Command("flmarket.sim.sweep", "run a grid of scenarios x seeds on dask"),
    "report": Command("flmarket.analysis.report", "write a self-contained HTML report of a run or a sweep"),
    "query": Command("flmarket.analysis.query", "run SQL (DuckDB) over the event logs of a run, a sweep or runs"),
    "reproduce": Command(
        "flmarket.analysis.reproduce", "reproduce a figure of the MMZD or BGFL paper (CSV, PNG, PDF, caption)"
    ),
    "calibrate": Command(
        "flmarket.sim.calibrate", "fit the surrogate's precision function to real federated training on digits"
    ),
    "view": Command("flmarket.sim.view", "watch one market run live in the browser (Solara, 127.0.0.1)"),
}
"""Every subcommand, in the order `flmarket --help` lists them. Add one row to add a subcommand."""

DEFAULT_SCENARIO = "quickstart"


def add_override(overrides: dict[str, Any], key: str, value: Any) -> None:
    """Set `key` last in `overrides`: overrides apply in insertion order, so a key given again (`--set a=1 --set
    a=2`) must move to the end, not keep the place of its first appearance (a later `--set a={...}` in between
    would otherwise win over it)."""
    overrides.pop(key, None)
    overrides[key] = value


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    """The dotted-path overrides of `--set`, in command-line order, then `--seed`, `--horizon` and `--tasks`,
    which win over any `--set` of the same field (or of a table holding it, such as `--set 'run={...}'`)."""
    from flmarket.sim.config import ScenarioError

    overrides: dict[str, object] = {}
    for item in args.set or []:
        key, separator, raw = item.partition("=")
        if not separator:
            raise ScenarioError(f"--set: expected KEY=VALUE (e.g. providers.count=50), got {item!r}")
        add_override(overrides, key.strip(), _parse_value(raw.strip()))
    if args.seed is not None:
        add_override(overrides, "run.seed", args.seed)
    if args.horizon is not None:
        add_override(overrides, "run.horizon_s", args.horizon)
    if args.tasks is not None:
        add_override(overrides, "run.tasks", args.tasks)
    return overrides


def _parse_value(raw: str) -> object:
    """A TOML value for --set (numbers, booleans, strings, inline tables)."""
    import tomllib

    from flmarket.sim.config import ScenarioError, shown

    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        return raw
    except RecursionError:
        raise ScenarioError(f"--set: value nested too deeply, got {shown(raw)}") from None


def _summary(scenario: Scenario, result: object, console: Console) -> None:
    from rich.table import Table

    from flmarket.sim.runner import RunResult

    assert isinstance(result, RunResult)
    table = Table(title=f"flmarket run: {scenario.run.name} (seed {scenario.run.seed})", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    table.add_row("status", result.status)
    from flmarket.analysis.load import load_manifest

    manifest = load_manifest(result.run_dir)
    rejected = int(manifest.get("tasks_rejected", 0))
    table.add_row("tasks finished", f"{result.tasks_finished}")
    if rejected:  # a requester's budget below what the committee costs (SPEC A.5): the task never ran
        table.add_row("of which rejected (budget too small)", f"{rejected}")
    table.add_row("simulated time", f"{result.final_time_s:,.1f} s")
    welfare = result.mean_welfare
    table.add_row("mean welfare per task", f"{welfare:.4f}" if welfare == welfare else "n/a (no task ran)")
    from flmarket.analysis.metrics import (
        RunEvents,
        capped_rounds,
        mechanism_targets,
        poet_z_test,
        reference_summary,
        zero_determinant_realisation,
        zero_determinant_welfare,
    )

    events = RunEvents(result.run_dir)  # one read per kind for both summaries
    references = reference_summary(events)  # the task games' yardsticks (SPEC B.1, B.2)
    if welfare == welfare:  # the references exist only for tasks that ran
        table.add_row(
            "social optimum: rounds / welfare",
            f"{references['optimum_total_participation']:.1f} / {references['optimum_welfare']:.4f}",
        )
        table.add_row(
            "full cooperation: rounds / welfare",
            f"{references['full_cooperation_total']:.1f} / {references['full_cooperation_welfare']:.4f}",
        )
        table.add_row("all-defect Nash welfare", f"{references['nash_welfare']:.4f}")
        table.add_row("mean rounds taken part", f"{references['mean_total_participation']:.1f}")
        table.add_row("welfare position (Nash 0, optimum 1)", f"{references['welfare_position']:.3f}")
    targets = mechanism_targets(events)  # BGFL's economic targets (issue 12)
    if targets["paid_updates"] > 0:
        gamma_share = targets["gamma_at_least_one_share"]  # over the rounds after each task's first: none if R = 1
        table.add_row(
            "gamma_NE >= 1 epoch (B 24), share of rounds",
            f"{gamma_share:.0%}" if gamma_share == gamma_share else "n/a (no round after a task's first)",
        )
        table.add_row(
            "individually rational (B 14), share of settled updates",
            f"{targets['individually_rational_share']:.0%} of {targets['paid_updates']:,.0f}"
            + (
                f" ({targets['unrewarded_updates']:,.0f} paid 0: Shapley sum <= 0)"
                if targets["unrewarded_updates"]
                else ""
            ),
        )
        table.add_row("budget balanced (B 15a/b), share of rounds", f"{targets['budget_balanced_share']:.0%}")
        table.add_row("mean claimed unit cost C_unit (B 6)", f"{targets['mean_unit_cost']:.2f}")
    for name, share in result.participation_by_strategy.items():
        table.add_row(f"participation y/R ({name})", f"{share:.3f}")
    caps = capped_rounds(events)
    if caps["tasks_capped"]:
        low, high = int(caps["capped_rounds_min"]), int(caps["capped_rounds_max"])
        played = f"{low}" if low == high else f"{low} - {high}"
        table.add_row(
            "tasks whose rounds the budget capped (B 11)",
            f"{caps['tasks_capped']:,.0f} of {caps['tasks_configured']:,.0f} "
            f"(R = {played}, asked {caps['rounds_asked']:.0f})",
        )
        if scenario.learning.theta1 == "auto":
            warnings.warn(
                f"learning.rounds_per_task = {scenario.learning.rounds_per_task} was capped by the budget (B 11) to "
                f"R = {played} in {caps['tasks_capped']:,.0f} tasks, and learning.theta1 = 'auto' was computed from "
                f"the {scenario.learning.rounds_per_task} asked for (SPEC B.2); set learning.rounds_per_task to the R "
                "played, or a larger budget",
                UserWarning,
                stacklevel=1,
            )
    zero_determinant = zero_determinant_realisation(events)
    decisions, as_chosen = zero_determinant["zd_decisions"], zero_determinant["zd_realised_as_chosen"]
    if decisions and as_chosen == as_chosen:
        table.add_row("ZD players' y_i paid as chosen (B.4)", f"{as_chosen:,.0f} of {decisions:,.0f}")
        if as_chosen < decisions:
            warnings.warn(
                f"the zero-determinant players' chosen y_i was not what they were paid on in "
                f"{decisions - as_chosen:,.0f} of {decisions:,.0f} decisions (rounds lost to late or abandoned "
                "updates, or to leaving mid-task), so the welfare they enforce (SPEC B.4) is not guaranteed; give "
                "the rounds time for the training (learning.round_duration_s)",
                UserWarning,
                stacklevel=1,
            )
    _zero_determinant_rows(table, zero_determinant_welfare(events))
    compromised = scenario.faults.compromised_timers
    if scenario.committee.poet_z_test or compromised:
        judged = poet_z_test(events, compromised)
        rounds = judged["z_test_rounds"]
        if not scenario.committee.poet_z_test:
            shown = "off (committee.poet_z_test = false)"
        elif compromised:
            shown = (
                f"{judged['z_test_detections']:,.0f} of the compromised, {judged['z_test_false_rejects']:,.0f} "
                f"honest in {rounds:,.0f} rounds"
            )
        else:
            shown = f"{judged['z_test_false_rejects']:,.0f} honest winners in {rounds:,.0f} rounds"
        table.add_row("PoET z-test rejections (D.1)", shown)
    counts = manifest.get("events_by_kind", {})
    abandoned = int(counts.get("update_abandoned", 0))
    if abandoned:  # contributions the next round overtook: the rounds are short for the training and PoET waits
        attempted = abandoned + int(counts.get("update_sent", 0))
        table.add_row("updates abandoned (next round began first)", f"{abandoned:,} of {attempted:,}")
    table.add_row("events written", f"{result.events:,}")
    table.add_row("wall time", f"{result.wall_time_s:.2f} s")
    table.add_row("events per second", f"{result.events_per_second:,.0f}")
    console.print(table)
    console.print("run directory:", style="bold")
    console.print(str(result.run_dir), soft_wrap=True, highlight=False, markup=False)  # whole, never cut


def _zero_determinant_rows(table: Any, aim: dict[str, float]) -> None:
    """The ZD players' welfare target P* and the mean welfare of the tasks they played (SPEC B.4), if any."""
    designs, feasible = aim["zd_designs"], aim["zd_feasible_designs"]
    if not designs:
        return
    target = aim["zd_target"]
    if target != target:
        shown = f"differs in {designs:,.0f} designs"
    elif feasible == designs:
        shown = f"{target:.4g}, enforced"
    elif feasible == 0:
        shown = f"{target:.4g}, not enforced"
    else:
        shown = f"{target:.4g}, enforced by {feasible:,.0f} of {designs:,.0f}"
    table.add_row("ZD welfare target P* (B.4)", shown)  # enforced: the design's feasibility (zd_design)
    mean, low, high = aim["zd_mean_welfare"], aim["zd_welfare_low"], aim["zd_welfare_high"]
    if aim["zd_tasks"]:
        interval = f", 95% CI {low:.4g} - {high:.4g}" if low == low else ""
        tasks = f"{aim['zd_tasks']:,.0f} task{'' if aim['zd_tasks'] == 1 else 's'}"
        table.add_row("welfare in ZD players' tasks", f"{mean:.4g} ({tasks}{interval})")


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from flmarket.sim.config import load_scenario
    from flmarket.sim.runner import run_scenario

    scenario = load_scenario(args.scenario, _overrides(args))
    # a run that fails before it starts removes what it created (sim/runner.py); one that fails later keeps its
    # directory, whose manifest records the failure
    result = run_scenario(scenario, output_dir=Path(args.out) if args.out else None, show_progress=not args.quiet)
    if not args.quiet:
        _summary(scenario, result, Console())
    else:
        print(result.run_dir)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from flmarket.sim.config import ScenarioError, load_scenario
    from flmarket.sim.sweep import describe_grid, is_grid_reference

    overrides = _overrides(args)
    if is_grid_reference(args.scenario):  # a grid: every cell's scenario is validated
        if overrides:
            raise ScenarioError(
                f"{args.scenario}: a grid is validated as written; --seed, --horizon, --tasks and --set apply to a "
                f"scenario (put the values in the grid)"
            )
        print(describe_grid(args.scenario))
        return 0
    scenario = load_scenario(args.scenario, overrides)
    from flmarket.sim.runner import check_output_dir

    check_output_dir(scenario)
    _build(scenario)
    print(
        f"{args.scenario}: valid ({scenario.run.name}: {scenario.providers.count} providers, "
        f"{scenario.learning.backend} backend)"
    )
    return 0


def _build(scenario: Scenario) -> None:
    """Build the model in memory, as `run` does before it writes anything: every check `run` makes before the
    first event (the population's social dilemma, the overlay, the learning backend) is made by `validate` too."""
    from flmarket.sim.events import EventLog
    from flmarket.sim.model import MarketModel

    MarketModel(scenario, log=EventLog(None, scenario.run.flush_every))


def _scenarios(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from flmarket.sim.config import bundled_scenarios, load_scenario

    table = Table(title="bundled scenarios (flmarket run NAME)")
    table.add_column("name", style="bold")
    table.add_column("description")
    for name, path in bundled_scenarios().items():
        scenario = load_scenario(str(path))
        table.add_row(name, scenario.run.description)
    Console().print(table)
    return 0


def _events(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

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


def register_run(subparsers: argparse._SubParsersAction) -> None:
    """Add `flmarket run [SCENARIO] [--seed N] [--tasks N] [--horizon S] [--set KEY=VALUE] [--out DIR]`."""
    run = subparsers.add_parser(
        "run",
        help=COMMANDS["run"].help,
        description="Simulate a scenario (a TOML file or a bundled name; default: the quick-start) and write "
        "runs/<run_id>/ with manifest.json and events/kind=<kind>/part-*.parquet. Read the events back with "
        "flmarket.analysis.load_events(run_dir).",
    )
    run.add_argument(
        "scenario",
        nargs="?",
        default=DEFAULT_SCENARIO,
        help=f"scenario file or bundled name (default: {DEFAULT_SCENARIO}; see `flmarket scenarios`)",
    )
    run.add_argument(
        "--out", type=folder, help="output directory for the run directory (default: run.output_dir, 'runs')"
    )
    _add_override_arguments(run)
    run.add_argument("--quiet", action="store_true", help="no progress bar or table; print the run directory")
    run.set_defaults(func=_run)


def _add_override_arguments(parser: argparse.ArgumentParser) -> None:
    """--seed, --horizon, --tasks and --set, read by `_overrides` (run and validate take the same ones)."""
    parser.add_argument("--seed", type=seed, help="override run.seed (wins over --set)")
    parser.add_argument("--horizon", type=float, help="override run.horizon_s (simulated seconds; wins over --set)")
    parser.add_argument(
        "--tasks",
        type=integer,
        help="override run.tasks (stop after this many FL tasks; wins over --set)",
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override any scenario field by its dotted path, e.g. --set providers.count=100 "
        "(repeatable, applied in order: the last one given wins; values are TOML). A value replaces the key "
        "whole, as in sweep grids: tables are never merged, and a table parameter set key by key "
        "(providers.strategy_mix.ALLD=0.8 --set providers.strategy_mix.ALLC=0.2) starts from an empty table",
    )


def register_validate(subparsers: argparse._SubParsersAction) -> None:
    """Add `flmarket validate SCENARIO`."""
    validate = subparsers.add_parser(
        "validate",
        help=COMMANDS["validate"].help,
        description="Validate a scenario: unknown keys, wrong types and values out "
        "of range are reported with the field's dotted path. A grid file (top-level [sweep], [grid] or "
        "[[cells]]) or a bundled grid's name is validated as a grid, every cell's scenario included. A scenario "
        "takes the overrides `flmarket run` takes, so a command line can be checked before a long run.",
    )
    validate.add_argument("scenario", help="scenario or grid file, or a bundled name")
    _add_override_arguments(validate)
    validate.set_defaults(func=_validate)


def register_scenarios(subparsers: argparse._SubParsersAction) -> None:
    """Add `flmarket scenarios`."""
    scenarios = subparsers.add_parser("scenarios", help=COMMANDS["scenarios"].help)
    scenarios.set_defaults(func=_scenarios)


def register_events(subparsers: argparse._SubParsersAction) -> None:
    """Add `flmarket events [--width N]`."""
    events = subparsers.add_parser(
        "events",
        help=COMMANDS["events"].help,
        description="Every event kind with its typed fields: the schema of load_events(run_dir).",
    )
    events.add_argument(
        "--width", type=integer_in(20, 1000), default=None, help="table width in characters (20 to 1000)"
    )
    events.set_defaults(func=_events)


def _version() -> str:
    import flmarket

    return f"flmarket {flmarket.__version__}"


def _registrar(name: str) -> Callable[[argparse._SubParsersAction], None]:
    """Import the module of subcommand `name` (only that one) and return its register function."""
    module_name, _, function = COMMANDS[name].target.partition(":")
    return getattr(importlib.import_module(module_name), function or "register")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (the subcommands' parsers are of this class too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see `{self.prog} --help`)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; `command` alone gets its full parser (its module is imported), the others a stub
    carrying their help line. Without `command`, every subcommand is built in full."""
    parser = _Parser(
        prog="flmarket",
        description="Discrete-event, agent-based simulator of federated-learning data markets (BGFL + MMZD). "
        "Run `flmarket COMMAND --help` for a command's options.",
        formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=24),
    )
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, entry in COMMANDS.items():
        if command is None or name == command:
            _registrar(name)(subparsers)
        else:
            subparsers.add_parser(name, help=entry.help, add_help=False)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named in `argv` (the first word that is not an option), if it is a known one."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `flmarket` console script."""
    # Arrow's default allocator (mimalloc) keeps the pages it frees; the system allocator costs the same CPU and
    # lowers peak RSS (a 1,500-task report: 344 -> 299 MB; a 400-task run: 283 -> 246 MB). Only a process that
    # has not imported pyarrow yet takes it, and a user's own ARROW_DEFAULT_MEMORY_POOL wins.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_in(argv)
    parser = build_parser(command if command is not None else "")
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse blames the top-level parser; say which command's help lists the options
        where = f"flmarket {command}" if command is not None else "flmarket"
        print(f"{where}: error: unrecognized arguments: {' '.join(unknown)} (see `{where} --help`)", file=sys.stderr)
        return 2
    shown, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        return int(args.func(args))
    except KeyboardInterrupt as interrupt:
        from flmarket.sim.runner import TERMINATED

        if interrupt.args == (TERMINATED,):  # the run's handler (sim.runner): the shell's code for SIGTERM
            print("flmarket: terminated", file=sys.stderr)
            return 128 + 15
        print("flmarket: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        message = _one_line(error)
        if message is None:
            raise
        for line in message.splitlines():
            print(f"flmarket: error: {line}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = shown


_FLMARKET_FOLDERS = tuple(
    str(Path(folder).resolve())
    for layer in ("sim", "agents", "market", "analysis")
    for folder in (importlib.util.find_spec(f"flmarket.{layer}").submodule_search_locations or [])  # type: ignore[union-attr]
)


def _show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    """A warning flmarket raises about the user's input is one line, `flmarket: warning: ...`, like its errors
    (not Python's two lines with the source line that warned); other libraries' warnings keep Python's format."""
    if str(Path(filename).resolve()).startswith(_FLMARKET_FOLDERS):
        print(f"flmarket: warning: {message}", file=sys.stderr if file is None else file)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _shortened(line: str, parts: int = 3) -> str:
    """A long line of `; `-separated reasons cut to its first `parts` and a count of the rest."""
    reasons = line.split("; ")
    if len(line) <= 400 or len(reasons) <= parts:
        return line
    return "; ".join(reasons[:parts]) + f"; ... and {len(reasons) - parts} more"


def _one_line(error: Exception) -> str | None:
    """The message of an error caused by the input or the machine, not by a bug: ScenarioError and MarketError
    (bad input), and OSError (a file or folder that cannot be read or written, a full disk), one line each."""
    from flmarket.market.errors import MarketError
    from flmarket.sim.config import ScenarioError, shown

    if isinstance(error, ScenarioError | MarketError):
        return "\n".join(_shortened(line) for line in str(error).splitlines())
    if isinstance(error, OSError):
        where = f"{shown(str(error.filename), 200)}: " if error.filename is not None else ""
        return f"{where}{error.strerror or error}"
    return None


if __name__ == "__main__":
    raise SystemExit(main())
