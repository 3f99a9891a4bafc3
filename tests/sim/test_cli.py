"""The `flmarket` command line: the default run, and bad input that exits non-zero writing nothing."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from flmarket.analysis import load_events, load_manifest
from flmarket.analysis.metrics import mechanism_targets
from flmarket.sim.cli import COMMANDS, build_parser, main


@pytest.mark.slow
def test_run_without_arguments_writes_a_readable_run(tmp_path, capsys) -> None:
    assert main(["run", "--out", str(tmp_path), "--quiet"]) == 0
    run_dir = tmp_path / capsys.readouterr().out.strip().split("/")[-1]
    manifest = load_manifest(run_dir)
    assert manifest["status"] == "finished" and manifest["scenario_name"] == "quickstart"
    assert manifest["seed"] == 7 and manifest["versions"]["simpy"]
    assert manifest["parts"] and all((run_dir / "events" / part).is_file() for part in manifest["parts"])
    frame = load_events(run_dir)
    assert len(frame) == manifest["events"]
    assert frame["seq"].is_monotonic_increasing
    assert (frame["kind"] == "task_finished").sum() == manifest["tasks_finished"] == 100
    assert not list((run_dir / "events").glob(".*.tmp"))


def test_summary_table_and_overrides(tmp_path, capsys) -> None:
    assert (
        main(
            ["run", "quickstart", "--out", str(tmp_path), "--seed", "3", "--tasks", "5", "--set", "providers.count=12"]
        )
        == 0
    )
    output = capsys.readouterr().out
    assert "tasks finished" in output and "events per second" in output
    (run_dir,) = tmp_path.iterdir()
    manifest = load_manifest(run_dir)
    assert manifest["seed"] == 3 and manifest["tasks_finished"] == 5
    assert manifest["scenario"]["providers"]["count"] == 12
    assert "abandoned" not in output  # the row appears only when the next round overtook contributions


def test_the_summary_counts_contributions_the_next_round_overtook(tmp_path, capsys) -> None:
    """4 s PoET waits after round 0's 2.7 s of training outlast its 6 s round: the table says how many."""
    short = ["--set", "learning.round_duration_s=6.0", "--set", "committee.poet_mean_wait_s=4.0"]
    unsigned = ["--set", 'committee.verification="unsigned"']
    assert main(["run", "quickstart", "--out", str(tmp_path), "--tasks", "3", *short, *unsigned]) == 0
    output = capsys.readouterr().out
    (run_dir,) = tmp_path.iterdir()
    counts = load_manifest(run_dir)["events_by_kind"]
    abandoned, sent = counts["update_abandoned"], counts["update_sent"]
    row = next(line for line in output.splitlines() if "updates abandoned (next round began first)" in line)
    assert abandoned > 0 and f"{abandoned:,} of {abandoned + sent:,}" in row


def test_rejected_tasks_are_counted_apart_and_no_yardstick_is_printed_without_a_task(tmp_path, capsys) -> None:
    """A budget below the committee's cost rejects every task: the table said "tasks finished 2" and nan rows."""
    assert main(["run", "--out", str(tmp_path), "--tasks", "2", "--set", "requesters.budget=1e-9"]) == 0
    output = capsys.readouterr().out
    (run_dir,) = tmp_path.iterdir()
    manifest = load_manifest(run_dir)
    assert manifest["tasks_finished"] == 2 and manifest["tasks_rejected"] == manifest["events_by_kind"]["task_rejected"]
    assert "of which rejected (budget too small)" in output and "n/a (no task ran)" in output
    assert "nan" not in output and "social optimum" not in output


def test_a_bgfl_run_reports_its_economic_targets(tmp_path, capsys) -> None:
    # Table 3's pool is 39.2 per round (SPEC A.9 in docs/spec.md); a short task shows the rows with their numbers.
    arguments = ["run", "bgfl-table3", "--out", str(tmp_path), "--tasks", "1", "--set", "learning.rounds_per_task=10"]
    assert main(arguments) == 0
    output = capsys.readouterr().out
    (run_dir,) = tmp_path.iterdir()
    targets = mechanism_targets(run_dir)
    assert targets["rounds"] == 10 and targets["paid_updates"] > 0
    ir_row = next(line for line in output.splitlines() if "individually rational" in line)
    assert f"{targets['individually_rational_share']:.0%} of {targets['paid_updates']:,.0f}" in ir_row
    assert "gamma_NE >= 1 epoch" in output and "budget balanced (B 15a/b)" in output


BAD_SCENARIOS = {
    "unknown key": ("[run]\ntasks = 3\nsed = 1\n", "run.sed: unknown key"),
    "wrong type": ("[run]\ntasks = 'three'\n", "run.tasks: must be an integer, got 'three'"),
    "out of range": (
        "[run]\ntasks = 3\n[providers]\nprivacy_budget = {dist='uniform', low=-1, high=2}\n",
        "providers.privacy_budget.low: must be > 0 (every draw must be), got -1",
    ),
    "malformed": ("[run\ntasks = 3\n", "malformed TOML"),
}


@pytest.mark.parametrize("case", sorted(BAD_SCENARIOS))
def test_bad_scenarios_exit_non_zero_with_one_line_and_write_nothing(case, tmp_path, capsys) -> None:
    text, expected = BAD_SCENARIOS[case]
    scenario = tmp_path / "bad.toml"
    scenario.write_text(text)
    out = tmp_path / "runs"
    assert main(["run", str(scenario), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and expected in error and error.startswith("flmarket: error: ")
    assert not out.exists()
    assert main(["validate", str(scenario)]) == 2


def test_missing_file_exits_non_zero(tmp_path, capsys) -> None:
    assert main(["run", str(tmp_path / "absent.toml"), "--out", str(tmp_path / "runs")]) == 2
    assert "file not found" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_population_that_is_not_a_dilemma_is_refused_before_writing(tmp_path, capsys) -> None:
    code = main(
        [
            "run",
            "--out",
            str(tmp_path / "runs"),
            "--set",
            "providers.participation_cost={mode='distribution', distribution=1e-9}",
        ]
    )
    assert code == 2
    error = capsys.readouterr().err
    assert "Assumption 1 fails for organisation" in error and "... and 28 more" in error  # 30 reasons, 2 kept
    assert "set learning.require_dilemma = false to run it anyway" in error  # the hint is not cut with them
    assert len(error.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_a_stray_argument_points_to_its_command_s_help(capsys) -> None:
    """It said 'flmarket: error: unrecognized arguments: extra (see `flmarket --help`)', the top-level help."""
    for command in ("scenarios", "run", "validate"):
        argv = [command, "quickstart", "extra"] if command != "scenarios" else [command, "extra"]
        assert main(argv) == 2
        error = capsys.readouterr().err
        assert error == f"flmarket {command}: error: unrecognized arguments: extra (see `flmarket {command} --help`)\n"


def test_validate_and_scenarios(capsys) -> None:
    assert main(["validate", "quickstart"]) == 0
    assert "valid" in capsys.readouterr().out
    assert main(["scenarios"]) == 0
    assert "quickstart" in capsys.readouterr().out


def test_validate_takes_the_overrides_run_takes(capsys) -> None:
    """`flmarket validate` checks the scenario a `flmarket run` command line would run, overrides included."""
    assert main(["validate", "quickstart", "--set", "providers.count=3", "--set", 'network.topology="complete"']) == 0
    assert "quickstart: 3 providers" in capsys.readouterr().out
    assert main(["validate", "quickstart", "--set", "providers.count=2"]) == 2
    assert "network.degree: must be < providers.count (2), got 4" in capsys.readouterr().err
    assert main(["validate", "quickstart", "--tasks", "0", "--seed", "3"]) == 2
    assert "run.tasks: input should be greater than or equal to 1, got 0" in capsys.readouterr().err
    assert main(["validate", "market_size", "--seed", "3"]) == 2  # a bundled grid: validated as written
    assert "a grid is validated as written" in capsys.readouterr().err


def test_console_script_help_explains() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flmarket.sim.cli", "run", "--help"], capture_output=True, text=True, check=True
    )
    assert "--seed" in result.stdout and "bundled" in result.stdout


def test_manifest_is_valid_json_even_for_failed_runs(tmp_path, monkeypatch) -> None:
    from flmarket.sim import model as model_module

    def explode(self, progress=None):
        raise RuntimeError("boom")

    monkeypatch.setattr(model_module.MarketModel, "run", explode)
    with pytest.raises(RuntimeError, match="boom"):
        main(["run", "--out", str(tmp_path), "--quiet"])
    (run_dir,) = tmp_path.iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["error"] == "RuntimeError: boom"


HEAVY_MODULES = ("scipy", "matplotlib", "dask", "distributed", "pandas", "torch", "pydantic", "numpy")


def _modules_loaded_by(argv: list[str]) -> set[str]:
    """The modules imported by `main(argv)` in a fresh interpreter (run to completion or SystemExit)."""
    script = (
        "import sys\n"
        "from flmarket.sim.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stdout.flush()\n"
        "print('\\nMODULES', ' '.join(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(result.stdout.rsplit("MODULES ", 1)[1].split())


def test_help_lists_every_command_without_importing_any_of_them() -> None:
    loaded = _modules_loaded_by(["--help"])
    assert not {name for name in loaded if name.split(".")[0] in HEAVY_MODULES}
    assert not ({target.partition(":")[0] for target, _ in COMMANDS.values()} - {"flmarket.sim.cli"}) & loaded
    result = subprocess.run(
        [sys.executable, "-m", "flmarket.sim.cli", "--help"], capture_output=True, text=True, check=True
    )
    for name, (_, help_line) in COMMANDS.items():
        assert name in result.stdout and help_line.split()[0] in result.stdout


def test_a_command_imports_its_own_module_only() -> None:
    loaded = _modules_loaded_by(["validate", "quickstart"])
    assert "flmarket.sim.config" in loaded
    assert not {"flmarket.analysis.report", "flmarket.analysis.reproduce", "flmarket.sim.calibrate"} & loaded
    assert not {name for name in loaded if name.split(".")[0] in ("matplotlib", "dask", "distributed", "torch")}


@pytest.mark.parametrize(("user_setting", "expected"), [(None, "system"), ("mimalloc", "mimalloc")])
def test_the_command_line_reads_with_the_system_allocator_unless_the_user_chose_one(user_setting, expected) -> None:
    """`flmarket` sets Arrow's allocator to the system one before pyarrow loads (it returns freed pages, so a
    report's peak RSS falls; bench_analysis.py), and leaves a user's ARROW_DEFAULT_MEMORY_POOL alone."""
    script = (
        "from flmarket.sim.cli import main\n"
        "main(['validate', 'quickstart'])\n"
        "import pyarrow\n"
        "print('POOL', pyarrow.default_memory_pool().backend_name)\n"
    )
    environment = {key: value for key, value in os.environ.items() if key != "ARROW_DEFAULT_MEMORY_POOL"}
    if user_setting is not None:
        environment["ARROW_DEFAULT_MEMORY_POOL"] = user_setting
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=environment)
    assert result.stdout.rsplit("POOL ", 1)[1].strip() == expected


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (subparsers,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return dict(subparsers.choices)


def test_every_row_of_the_table_registers_the_command_it_names() -> None:
    assert list(_subcommands(build_parser())) == list(COMMANDS)
    for name in COMMANDS:
        built = _subcommands(build_parser(name))
        assert built[name].get_default("func") is not None
        assert all(built[other].get_default("func") is None for other in COMMANDS if other != name)


def test_version_prints_the_package_version(capsys) -> None:
    import flmarket

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"flmarket {flmarket.__version__}"


class _Terminal:
    """A stand-in for a terminal's stderr: tqdm draws into it."""

    def __init__(self) -> None:
        self.text: list[str] = []

    def write(self, text: str) -> None:
        self.text.append(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


def test_progress_counts_whole_tasks_once_per_task_and_only_on_a_terminal() -> None:
    import io

    from flmarket.sim.config import load_scenario
    from flmarket.sim.model import MarketModel
    from flmarket.sim.runner import _ProgressBar

    scenario = load_scenario("quickstart", {"run.tasks": 4, "providers.count": 10})
    reported: list[int] = []
    with _ProgressBar(scenario, True, _Terminal()) as update:

        def progress(now: float, tasks: int) -> None:
            reported.append(tasks)
            update(now, tasks)

        MarketModel(scenario).run(progress=progress)
        bar = update.__self__.bar
        assert bar.n == 4 and bar.total == 4 and isinstance(bar.n, int)
    assert [1, 2, 3, 4] == sorted(set(reported)) and reported[:4] == [1, 2, 3, 4]  # each task as it finishes
    pipe = io.StringIO()
    with _ProgressBar(scenario, True, pipe) as update:
        update(10.0, 1)
    assert pipe.getvalue() == ""


def test_sigterm_while_the_model_is_built_leaves_no_run_directory(tmp_path, monkeypatch, capsys) -> None:
    """SIGTERM used to kill the process during the model's build (it took the default action until the run
    started), leaving an empty run directory without a manifest."""
    import signal

    import flmarket.sim.runner as runner_module

    real = runner_module.MarketModel

    def terminated_while_building(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # the handler raises at once, in this frame
        return real(*args, **kwargs)

    monkeypatch.setattr(runner_module, "MarketModel", terminated_while_building)
    assert main(["run", "--tasks", "1", "--out", str(tmp_path / "runs")]) == 143
    assert capsys.readouterr().err.strip() == "flmarket: terminated"
    assert not (tmp_path / "runs").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is the run's only


def test_flmarket_s_warnings_are_one_line_like_its_errors(tmp_path, capsys) -> None:
    """A warning about the input was Python's two lines (file:line: UserWarning: ..., then the source line)."""
    alone = ["--set", "providers.count=1", "--set", 'network.topology="complete"']
    argv = ["run", "--out", str(tmp_path), "--tasks", "1", "--quiet", *alone, "--set", "learning.require_dilemma=false"]
    assert main(argv) == 0
    error = capsys.readouterr().err
    assert error.startswith("flmarket: warning: not a social dilemma: Assumption 1 fails")
    assert "UserWarning" not in error and ".py:" not in error


@pytest.mark.usefixtures("python_sigint_handler")
@pytest.mark.parametrize(("number", "code", "said"), [("SIGTERM", 143, "terminated"), ("SIGINT", 130, "interrupted")])
def test_a_signal_while_the_finished_run_writes_its_log_leaves_it_finished(
    tmp_path, monkeypatch, capsys, number, code, said
) -> None:
    """A signal that landed in the final flush skipped the last manifest write: a finished run said `running` and
    loaded as crashed. The signal is now held until the manifest is written, then delivered."""
    import signal

    from flmarket.sim.events import EventLog

    real_close = EventLog.close

    def signalled_close(self: EventLog) -> None:
        if self.directory is not None:
            os.kill(os.getpid(), getattr(signal, number))  # held: the runner defers signals from here on
        real_close(self)

    monkeypatch.setattr(EventLog, "close", signalled_close)
    assert main(["run", "--tasks", "2", "--quiet", "--out", str(tmp_path), "--set", "providers.count=8"]) == code
    assert capsys.readouterr().err.strip() == f"flmarket: {said}"
    (run_dir,) = tmp_path.iterdir()
    manifest = load_manifest(run_dir)
    assert manifest["status"] == "finished" and manifest["tasks_finished"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a PartialRunWarning would say the log was cut short
        frame = load_events(run_dir, kinds=["run_finished"])
    assert frame["status"].tolist() == ["finished"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_set_options_apply_in_order_and_the_shorthands_win(tmp_path, capsys) -> None:
    """A repeated --set kept its first place, so a table set in between won over the later value; --seed went
    first, so a later --set 'run={...}' dropped it silently."""
    assert main(["validate", "quickstart", "--set", "providers.count=8", "--set", "providers={count=12}"]) == 0
    assert "12 providers" in capsys.readouterr().out
    argv = ["validate", "quickstart", "--set", "providers.count=8", "--set", "providers={count=12}"]
    assert main([*argv, "--set", "providers.count=8"]) == 0
    assert "8 providers" in capsys.readouterr().out
    runs = tmp_path / "runs"
    argv = ["run", "--quiet", "--out", str(runs), "--seed", "3", "--set", 'run={name="x", tasks=1}']
    assert main([*argv, "--set", "providers.count=8"]) == 0
    (run_dir,) = runs.iterdir()
    assert run_dir.name.startswith("x-s3-") and load_manifest(run_dir)["seed"] == 3


@pytest.mark.parametrize(("option", "value"), [("--seed", "1_0"), ("--tasks", "1_0"), ("--seed", "-1")])
def test_seed_and_tasks_are_read_as_plain_integers(option, value, capsys) -> None:
    """int() read 1_0 as 10; flmarket's other commands refuse it."""
    with pytest.raises(SystemExit) as stopped:
        main(["validate", "quickstart", option, value])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    said = "must be in [0, 2**63), got -1" if value == "-1" else "must be an integer, got '1_0'"
    assert f"argument {option}: {said}" in err


@pytest.mark.parametrize("command", ["validate", "run"])
def test_an_output_dir_that_is_a_file_is_refused_naming_the_field(tmp_path, monkeypatch, command, capsys) -> None:
    """validate said 'valid'; run said only "'afile/quickstart-s7-...': Not a directory"."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    assert main([command, "quickstart", "--tasks", "1", "--set", 'run.output_dir="afile"']) == 2
    err = capsys.readouterr().err
    assert err == "flmarket: error: run.output_dir: must be a folder, got 'afile', which is a file\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["afile"]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux's /proc")
def test_an_out_folder_that_cannot_be_created_names_the_option(capsys) -> None:
    """As root, /proc passes the write check, and creating the run folder failed with a bare
    "'/proc/x': No such file or directory" that named no option."""
    assert main(["run", "--out", "/proc/flmarket-no-such-folder", "--tasks", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flmarket: error: "), err
    assert "out: must be a folder" in err and "/proc/flmarket-no-such-folder" in err, err
    assert not Path("/proc/flmarket-no-such-folder").exists()


class _SignalledWhenFreed:
    """Raises `number` from its finalizer: the handler runs there, where Python can only drop what it raises."""

    def __init__(self, number: int) -> None:
        self.number = number

    def __del__(self) -> None:
        import signal

        signal.raise_signal(self.number)


@pytest.mark.usefixtures("python_sigint_handler")
@pytest.mark.parametrize(("name", "code", "said"), [("SIGTERM", 143, "terminated"), ("SIGINT", 130, "interrupted")])
def test_a_signal_whose_handler_runs_in_a_finalizer_still_stops_the_run(
    tmp_path, monkeypatch, capsys, name, code, said
) -> None:
    """A sweep's in-process cell starts with a full collection that frees the previous cell, and a signal landing
    in one of its weakref callbacks raised a KeyboardInterrupt Python printed as "Exception ignored" and lost:
    the sweep ran to its end and exited 0 (7 SIGTERMs in 12 at random times). The interrupt is delivered again."""
    import signal

    import flmarket.sim.runner as runner_module

    real = runner_module.MarketModel

    def signalled_while_building(*args, **kwargs):
        _SignalledWhenFreed(getattr(signal, name))  # freed at once
        return real(*args, **kwargs)

    monkeypatch.setattr(runner_module, "MarketModel", signalled_while_building)
    hook = sys.unraisablehook
    assert main(["run", "--tasks", "3", "--quiet", "--out", str(tmp_path / "runs")]) == code
    assert capsys.readouterr().err.strip() == f"flmarket: {said}"
    runs = list((tmp_path / "runs").iterdir()) if (tmp_path / "runs").exists() else []
    # stopped before the run started; on a loaded machine the run may end before the redelivery thread runs,
    # and then the interrupt is raised as it ends (the next test forces that path)
    assert runs == [] or json.loads((runs[0] / "manifest.json").read_text())["status"] == "finished"
    assert sys.unraisablehook is hook


@pytest.mark.usefixtures("python_sigint_handler")
def test_a_dropped_interrupt_not_yet_delivered_again_when_the_run_ends_is_raised_then(
    tmp_path, monkeypatch, capsys
) -> None:
    """The redelivery is a timer thread 1 ms after the drop; on a loaded machine a 3-task run ended first (CI of
    this stop, the suite on two workers: exit 0). The interrupt is now raised as the run ends, as a held signal is."""
    import signal

    import flmarket.sim.runner as runner_module

    real = runner_module.MarketModel

    def signalled_while_building(*args, **kwargs):
        _SignalledWhenFreed(signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner_module, "MarketModel", signalled_while_building)
    monkeypatch.setattr(runner_module, "REDELIVERY_DELAY_S", 30.0)  # the thread does not get there in time
    assert main(["run", "--tasks", "3", "--quiet", "--out", str(tmp_path / "runs")]) == 143
    assert capsys.readouterr().err.strip() == "flmarket: terminated"
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "finished"  # held until written


def test_other_unraisable_errors_still_reach_the_previous_hook(monkeypatch) -> None:
    from flmarket.sim.runner import interrupts_redelivered

    seen: list[type] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: seen.append(unraisable.exc_type))

    class Failing:
        def __del__(self) -> None:
            raise ValueError("in a finalizer")

    with interrupts_redelivered():
        Failing()
    assert seen == [ValueError]


@pytest.mark.parametrize(("round_duration_s", "paid_as_chosen"), [(10.0, "58 of 60"), (40.0, "60 of 60")])
def test_the_run_table_says_when_zd_players_were_not_paid_on_their_chosen_rounds(
    tmp_path, capsys, round_duration_s, paid_as_chosen
) -> None:
    """One MMZD against one ALLC: gamma_NE reaches tens of epochs when few take part, which a 10 s round cannot
    fit, so chosen rounds were lost and the enforced welfare (SPEC B.4) missed without a word."""
    two = ["--set", "providers.count=2", "--set", "providers.strategy_counts={MMZD=1, ALLC=1}"]
    two += ["--set", "providers.strategy_mix={MMZD=0.5, ALLC=0.5}", "--set", "requesters.arrival_rate_per_s=0.01"]
    argv = ["run", "mmzd-fig3", "--seed", "1", "--tasks", "60", "--out", str(tmp_path), *two]
    assert main([*argv, "--set", f"learning.round_duration_s={round_duration_s}"]) == 0
    out, err = capsys.readouterr()
    assert re.search(rf"ZD players' y_i paid as chosen \(B\.4\)\s*│\s*{paid_as_chosen}", out), out
    lost = paid_as_chosen != "60 of 60"
    assert ("the zero-determinant players' chosen y_i was not what they were paid on in 2 of 60" in err) == lost, err


def test_the_run_table_sets_the_zd_target_beside_the_welfare_reached(tmp_path, capsys) -> None:
    """The bundled mmzd-fig3 alliance (3 of 6) can enforce no target, so it plays the paper's clipped design for
    P* = 0.8651 (SPEC B.4); the table says its design does not enforce it, next to the welfare of the tasks it
    played, and a run without ZD
    players has neither row."""
    from flmarket.market.zero_determinant import design_mmzda
    from flmarket.sim.config import load_scenario
    from flmarket.sim.model import MarketModel

    assert main(["run", "mmzd-fig3", "--tasks", "6", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    model = MarketModel(load_scenario("mmzd-fig3"))
    players = list(model.online_providers.values())
    members = tuple(index for index, provider in enumerate(players) if provider.strategy_label == "MMZDA")
    design = design_mmzda(model.game_of(players, model.scenario.learning.rounds_per_task), members, mode="paper")
    assert re.search(rf"ZD welfare target P\* \(B\.4\)\s*│\s*{design.target:.4g}, not enforced\s*│", out), out
    assert re.search(r"welfare in ZD players' tasks\s*│\s*[0-9.]+ \(6 tasks, 95% CI", out), out
    assert main(["run", "--tasks", "2", "--out", str(tmp_path)]) == 0
    assert "ZD welfare target" not in capsys.readouterr().out


def test_rounds_the_budget_capped_are_reported_and_an_automatic_theta1_is_warned_about(tmp_path, capsys) -> None:
    """rounds_per_task = 100 on mmzd-fig3 played R = 40 (the budget's r_max, B 11) while 'auto' theta1 was computed
    for R = 100 (SPEC B.2), and validate and run said nothing."""
    argv = ["run", "mmzd-fig3", "--tasks", "2", "--out", str(tmp_path), "--set", "learning.rounds_per_task=100"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert re.search(r"tasks whose rounds the budget capped \(B 11\)\s*│\s*2 of 2 \(R = 40, asked 100\)", out), out
    assert "learning.rounds_per_task = 100 was capped by the budget (B 11) to R = 40 in 2 tasks" in err


def test_gamma_share_with_one_round_per_task_is_not_a_percentage_of_nothing(tmp_path, capsys) -> None:
    """With R = 1 there is no round after a task's first, and the row read 'nan%'."""
    assert main(["run", "--tasks", "1", "--out", str(tmp_path), "--set", "learning.rounds_per_task=1"]) == 0
    out = capsys.readouterr().out
    assert "n/a (no round after a task's first)" in out and "nan%" not in out
