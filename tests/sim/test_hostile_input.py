"""A corpus of hostile scenario files and command-line misuses (issue 13 items 5-8): each is refused with one
line naming the cause, exit status 2, and nothing written (no run directory, no --out folder)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from flmarket.sim.cli import main

RUN = "[run]\ntasks = 3\n"

HOSTILE_FILES: dict[str, tuple[bytes, str]] = {
    # encodings and structure
    "binary": (b"\x00\xff\xfe\x80garbage", "not UTF-8 text"),
    "utf-16": (RUN.encode("utf-16"), "not UTF-8 text"),
    "latin-1": ('[run]\nname = "caf\xe9"\ntasks = 3\n'.encode("latin-1"), "not UTF-8 text (byte 17"),
    "deep nesting": (("[run]\ntasks = 3\nname = " + "[" * 5000 + "]" * 5000 + "\n").encode(), "nested too deeply"),
    "malformed": (b"[run\ntasks = 3\n", "malformed TOML"),
    # names that would write outside --out
    "absolute name": (b'[run]\ntasks = 3\nname = "/elsewhere/x"\n', "run.name: must be a plain name"),
    "dot-dot name": (b'[run]\ntasks = 3\nname = "../../x"\n', "run.name: must not start with '.'"),
    "empty name": (b'[run]\ntasks = 3\nname = ""\n', "run.name: must be a non-empty directory name"),
    "NUL in name": (b'[run]\ntasks = 3\nname = "a\\u0000b"\n', "run.name: must not contain control"),
    "bidi override in name": (b'[run]\ntasks = 3\nname = "a\\u202Eb"\n', "bidirectional-override"),
    "300-byte name": (f'[run]\ntasks = 3\nname = "{"x" * 300}"\n'.encode(), "run.name: must be at most 200 bytes"),
    # types
    "tasks = true": (b"[run]\ntasks = true\n", "run.tasks: must be an integer, got true"),
    "seed as a string": (b'[run]\ntasks = 3\nseed = "7"\n', "run.seed: must be an integer, got '7'"),
    "enabled = yes": (RUN.encode() + b'[evolution]\nenabled = "yes"\n', "evolution.enabled: must be true or false"),
    "count as a float": (RUN.encode() + b"[providers]\ncount = 1e9\n", "providers.count: must be an integer"),
    "seed 2**63": (b"[run]\ntasks = 3\nseed = 9223372036854775808\n", "run.seed: input should be less than"),
    # hangs that validate used to call valid
    "horizon inf, no tasks": (b"[run]\nhorizon_s = inf\n", "run.horizon_s: must be a finite number"),
    "sample interval 1e-9": (b"[run]\ntasks = 3\nsample_interval_s = 1e-9\n", "limits.samples"),
    "arrival rate inf": (RUN.encode() + b"[requesters]\narrival_rate_per_s = inf\n", "must be a finite number"),
    "ten million providers": (RUN.encode() + b"[providers]\ncount = 10000000\n", "raise it with limits.providers"),
    "round duration inf": (RUN.encode() + b"[learning]\nround_duration_s = inf\n", "learning.round_duration_s"),
    # accepted nonsense
    "negative count": (
        RUN.encode() + b"[providers]\ncount = 30\nstrategy_counts = {ALLC = 40, ALLD = -10}\n",
        "providers.strategy_counts.ALLD: count must be >= 0, got -10",
    ),
    "unknown strategy count": (
        RUN.encode() + b"[providers]\ncount = 30\nstrategy_counts = {ALLC = 20, XYZ = 10}\n",
        "providers.strategy_counts.XYZ: unknown strategy",
    ),
    "unit revenue 1e308": (RUN.encode() + b"[providers]\nunit_revenue = 1e308\n", "must be within +-1e+09"),
    "budget 1e308": (RUN.encode() + b"[requesters]\nbudget = 1e308\n", "requesters.budget.value: must be within"),
    "shares sum to 0.5": (
        RUN.encode() + b"[providers]\nstrategy_mix = {ALLC = 0.25, ALLD = 0.25}\n",
        "providers.strategy_mix: shares must sum to 1 (within 1e-09), sums to 0.5",
    ),
    "shares sum to 1.1": (RUN.encode() + b"[providers]\nstrategy_mix = {ALLC = 0.5, ALLD = 0.6}\n", "sums to 1.1"),
    "hidden width 0": (RUN.encode() + b"[learning]\nhidden_sizes = [0]\n", "learning.hidden_sizes: every layer"),
    "section as a number": (b"run = 5\n", "run: must be a table, got 5"),
    "thousands of unknown keys": (
        (RUN + "".join(f"k{index} = {index}\n" for index in range(5000))).encode(),
        "run.k0: unknown key",
    ),
}


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the command line; assert exit status 2 and one line on stderr; return that line."""
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse's usage errors
        code = exit_info.code
    assert code == 2
    error = capsys.readouterr().err.strip()
    lines = error.splitlines()
    assert len(lines) == 1 or (len(lines) == 11 and lines[-1].startswith("flmarket: error: ... and ")), error
    assert "error: " in lines[0] and "Traceback" not in error
    return lines[0]


@pytest.mark.parametrize("case", sorted(HOSTILE_FILES))
def test_hostile_scenario_files_are_refused_by_run_and_validate_alike(case, tmp_path, capsys) -> None:
    content, expected = HOSTILE_FILES[case]
    scenario = tmp_path / "hostile.toml"
    scenario.write_bytes(content)
    out = tmp_path / "runs"
    assert expected in _refused(["run", str(scenario), "--out", str(out)], capsys)
    assert not out.exists()
    assert expected in _refused(["validate", str(scenario)], capsys)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["hostile.toml"]  # nothing written anywhere


HOSTILE_OPTIONS: dict[str, tuple[list[str], str]] = {
    "--seed -1": (["--seed", "-1"], "argument --seed: must be in [0, 2**63), got -1"),
    "--seed 2**63": (["--seed", str(2**63)], f"argument --seed: must be in [0, 2**63), got {2**63}"),
    "--tasks 0": (["--tasks", "0"], "run.tasks: input should be greater than or equal to 1"),
    "--horizon inf": (["--horizon", "inf"], "run.horizon_s: must be a finite number"),
    "--seed x": (["--seed", "x"], "argument --seed: must be an integer, got 'x'"),
    "--set without =": (["--set", "providers.count"], "--set: expected KEY=VALUE"),
    "--set empty part": (["--set", "providers..count=3"], "not a dotted path"),
    "--set name outside": (["--set", 'run.name="../../x"'], "run.name: must not start with '.'"),
    "--set absolute name": (["--set", 'run.name="/tmp/x"'], "run.name: must be a plain name"),
    "--set deep value": (["--set", "run.name=" + "[" * 3000 + "]" * 3000], "--set: value nested too deeply"),
    "--set one share": (["--set", "providers.strategy_mix.ALLD=0.5"], "sums to 0.5"),
    "--set float count": (["--set", "providers.count=30.0"], "providers.count: must be an integer, got 30.0"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_OPTIONS))
def test_hostile_options_are_refused_writing_nothing(case, tmp_path, capsys) -> None:
    options, expected = HOSTILE_OPTIONS[case]
    out = tmp_path / "runs"
    assert expected in _refused(["run", "--out", str(out), *options], capsys)
    assert not out.exists()


def test_out_pointing_at_a_file_is_one_line_and_the_file_is_untouched(tmp_path, capsys) -> None:
    target = tmp_path / "a-file"
    target.write_text("keep")
    assert "--out: must be a folder, got" in _refused(["run", "--tasks", "1", "--out", str(target)], capsys)
    assert "--out: must be a folder path, got ''" in _refused(["run", "--tasks", "1", "--out", ""], capsys)
    assert target.read_text() == "keep" and sorted(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS, errno.ENOSPC])
def test_a_failure_while_setting_up_the_run_leaves_no_directory(code, tmp_path, capsys, monkeypatch) -> None:
    """A read-only or full disk when the first manifest is written (simulated: the suite may run as root)."""
    import os

    from flmarket.sim import runner

    def refuse(path: Path, content: dict) -> None:
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(runner, "write_json_atomically", refuse)
    out = tmp_path / "new" / "runs"
    assert os.strerror(code) in _refused(["run", "--tasks", "1", "--out", str(out)], capsys)
    assert list(tmp_path.iterdir()) == []  # neither the run directory nor the --out folders it created


def test_a_population_that_fails_at_build_time_leaves_no_folder(tmp_path, capsys) -> None:
    out = tmp_path / "deep" / "runs"
    cost = "providers.participation_cost={mode='distribution', distribution=1e-9}"
    line = _refused(["run", "--out", str(out), "--set", cost, "--set", "run.flush_every=1"], capsys)
    assert "Assumption 1 fails" in line and line.endswith("more")  # 30 reasons cut to three and a count
    assert list(tmp_path.iterdir()) == []


def test_validate_refuses_what_run_refuses_at_build_time(tmp_path, capsys) -> None:
    scenario = tmp_path / "cheap.toml"
    scenario.write_text(
        "[run]\ntasks = 3\n[providers]\nparticipation_cost = {mode = 'distribution', distribution = 1e-9}\n"
    )
    assert "Assumption 1 fails" in _refused(["validate", str(scenario)], capsys)


def test_a_tiny_flush_interval_runs(tmp_path, capsys) -> None:
    assert main(["run", "--tasks", "1", "--set", "providers.count=10", "--set", "run.flush_every=1", "--quiet",
                 "--out", str(tmp_path)]) == 0  # fmt: skip
    (run_dir,) = tmp_path.iterdir()
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "finished"


def test_reproduce_refuses_a_negative_seed_and_an_out_that_is_a_file(tmp_path, capsys) -> None:
    assert "--seed: must be in [0, 2**63), got -1" in _refused(["reproduce", "mmzd-fig3", "--seed", "-1"], capsys)
    target = tmp_path / "a-file"
    target.write_text("keep")
    argv = ["reproduce", "mmzd-fig3", "--out", str(target), "--repetitions", "2", "--rounds", "2"]
    refusal = _refused(argv, capsys)
    assert "--out: must be a folder, got" in refusal and "which is a file" in refusal and target.read_text() == "keep"


def test_report_of_a_manifest_that_is_a_json_list_is_one_line(tmp_path, capsys) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text("[1, 2]")
    assert "must be a JSON object" in _refused(["report", str(run_dir)], capsys)
    assert sorted(path.name for path in run_dir.iterdir()) == ["manifest.json"]


def test_sweep_out_pointing_at_a_file_is_one_line(tmp_path, capsys) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(
        '[sweep]\nname = "g"\nscenario = "quickstart"\nseeds = [1]\n'
        '[grid]\n"providers.count" = [10]\n"run.tasks" = [1]\n'
    )
    target = tmp_path / "a-file"
    target.write_text("keep")
    refusal = _refused(["sweep", str(grid), "--out", str(target / "sub"), "--workers", "0"], capsys)
    assert "--out: must be a folder, got" in refusal and "a-file' is a file" in refusal
    assert target.read_text() == "keep"


@pytest.mark.slow
def test_an_unreachable_scheduler_is_one_line_and_leaves_nothing(tmp_path, capsys) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text('[sweep]\nname = "g"\nscenario = "quickstart"\nseeds = [1]\n[grid]\n"run.tasks" = [1]\n')
    out = tmp_path / "sweeps"
    argv = ["sweep", str(grid), "--out", str(out), "--scheduler", "tcp://127.0.0.1:9"]
    assert "cannot reach a dask scheduler at 'tcp://127.0.0.1:9' within 5 s" in _refused(argv, capsys)
    assert not out.exists()


MISUSES: dict[str, tuple[list[str], str]] = {
    "validate a NUL path": (["validate", "a\x00b.toml"], "scenario: a path cannot contain NUL"),
    "validate a 5,000-byte path": (["validate", "x" * 5000 + ".toml"], "scenario: "),
    "unknown command": (["frobnicate"], "invalid choice: 'frobnicate'"),
    "events --width -5": (["events", "--width", "-5"], "--width: must be an integer in 20..1000, got -5"),
    "run --tasks x": (["run", "--tasks", "x"], "argument --tasks: must be an integer, got 'x'"),
}


@pytest.mark.parametrize("case", sorted(MISUSES))
def test_command_line_misuses_are_one_line(case, capsys) -> None:
    argv, expected = MISUSES[case]
    assert expected in _refused(argv, capsys)


def test_validate_of_a_directory_is_one_line(tmp_path, capsys) -> None:
    assert "scenario: a directory, not a scenario file" in _refused(["validate", str(tmp_path)], capsys)
