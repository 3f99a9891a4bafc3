"""The benchmark scripts: every one takes the --quick that run_all passes it (bench_view refused it, so the
README's one benchmark command exited 1); bench_market's table and summary lines say what was measured (the
reference's rate, the extrapolation without the warm-up task, the exponent over issue 15's range); bad options
are refused with argparse's one line before anything is measured."""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import each other as top-level modules
import bench_kernel  # noqa: E402
import bench_market  # noqa: E402


def _options(script: Path) -> set[str]:
    """The option strings of every `add_argument` call in the script (read from its source, nothing run)."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    return {
        argument.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"
        for argument in node.args
        if isinstance(argument, ast.Constant) and isinstance(argument.value, str)
    }


def test_every_benchmark_that_run_all_runs_takes_quick() -> None:
    scripts = sorted(BENCHMARKS.glob("bench_*.py"))
    assert len(scripts) >= 8
    refusing = [script.name for script in scripts if "--quick" not in _options(script)]
    assert refusing == []


# -- bench_market.py: what the throughput table and its summary lines claim -------------------------------------


def _measurement(
    providers: int, tasks: int, run_cpu_s: float, first_task_cpu_s: float
) -> bench_market.MarketMeasurement:
    return bench_market.MarketMeasurement(
        bench_market.MarketCase(providers, tasks, "unsigned"),
        build_cpu_s=2.0,
        run_cpu_s=run_cpu_s,
        provider_rounds=providers * tasks * 3,
        tasks_finished=tasks,
        reference_cpu_s=1.0,
        rss_bytes=0,
        first_task_cpu_s=first_task_cpu_s,
    )


@pytest.mark.parametrize(
    ("text", "providers", "tasks", "verification", "churn"),
    [
        ("100000x10", 100_000, 10, "unsigned", False),
        ("1,000x5:modelled", 1_000, 5, "modelled", False),
        ("10_000X5:churn", 10_000, 5, "unsigned", True),
        ("300x2:every_replica:churn", 300, 2, "every_replica", True),
        ("5x1", 5, 1, "unsigned", False),
    ],
)
def test_parse_case_reads_every_documented_form(text, providers, tasks, verification, churn) -> None:
    assert bench_market.parse_case(text) == bench_market.MarketCase(providers, tasks, verification, churn=churn)


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("4x1", "got 4 providers and 1 task"),  # the overlay's degree is 4: a 4-provider case failed in the scenario
        ("5x0", "got 5 providers and 0 tasks"),
        ("300x2:modelledchurn", "verification 'modelledchurn'"),  # was read as modelled without churn
        ("300x2:", "'300x2:'"),
        ("300x2::churn", "'300x2::churn'"),
        ("\u00b2x5", "'\u00b2x5'"),  # str.isdigit() accepted a superscript two
        ("abc", "'abc'"),
    ],
)
def test_parse_case_refuses_with_the_rule(text, quoted) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        bench_market.parse_case(text)
    message = str(refused.value)
    assert quoted in message
    assert "at least 5 providers and 1 task" in message and "every_replica, primary_only, unsigned, modelled" in message


def test_parse_case_refuses_a_population_that_cannot_fit_in_memory(monkeypatch) -> None:
    class Memory:
        available = 10 * 2**30

    monkeypatch.setattr(bench_market.psutil, "virtual_memory", lambda: Memory())
    bench_market.parse_case(f"{10 * 2**30 // bench_market.PEAK_BYTES_PER_PROVIDER}x1")
    with pytest.raises(argparse.ArgumentTypeError, match=r"would need about .* GiB .* 10\.0 GiB available"):
        bench_market.parse_case(f"{10 * 2**30 // bench_market.PEAK_BYTES_PER_PROVIDER + 1}x1")


def test_the_reference_rate_does_not_depend_on_how_many_provider_rounds_the_market_did(monkeypatch) -> None:
    """With churn the count is not a whole number of rounds of the starting population: the reference loop ran
    providers x (count // providers) and its rate was divided by the whole count, 19 % too high at 300 x 2."""
    monkeypatch.setattr(bench_market, "reference_loop", lambda providers, rounds, seed=0: 1e-6 * providers * rounds)
    monkeypatch.setattr(bench_market, "provider_rounds_of", lambda model: 179)  # 10 providers, not whole rounds
    item = bench_market.measure(bench_market.MarketCase(10, 1, "unsigned"))
    assert item.provider_rounds == 179
    assert item.reference_per_cpu_s == pytest.approx(1e6, rel=1e-12)


def test_measure_notes_the_first_task_and_the_steady_cost_per_task() -> None:
    item = bench_market.measure(bench_market.MarketCase(20, 3, "unsigned"))
    assert item.tasks_finished == 3
    assert 0 < item.first_task_cpu_s < item.run_cpu_s
    assert item.steady_cpu_per_task == pytest.approx((item.run_cpu_s - item.first_task_cpu_s) / 2)


def test_the_extrapolation_leaves_out_the_first_task_and_needs_a_later_one() -> None:
    # build 2 s, first task 1.5 s, then two tasks of 1.0 s: 2 + 1.5 + 99 x 1.0 = 102.5, where the old estimate
    # (every task alike) said 2 + 100 x 3.5 / 3 = 118.7
    line = bench_market.extrapolation_line(_measurement(10_000, 3, run_cpu_s=3.5, first_task_cpu_s=1.5))
    assert "102 CPU s" in line and "99 x 1.00 s per later task" in line and "from 2 measured later tasks" in line
    alone = bench_market.extrapolation_line(_measurement(10_000, 1, run_cpu_s=1.5, first_task_cpu_s=1.5))
    assert "not extrapolated" in alone and "EXTRAPOLATED" not in alone


def test_the_scaling_exponent_is_fitted_on_steady_tasks_from_1000_providers() -> None:
    # steady cost per task proportional to providers ** 1.2; first tasks twice as dear; a 100-provider row whose
    # cost would pull the slope down is left out of issue 15's range
    rows = [
        _measurement(providers, 3, run_cpu_s=4 * 1e-5 * providers**1.2, first_task_cpu_s=2 * 1e-5 * providers**1.2)
        for providers in (1_000, 10_000, 100_000)
    ]
    rows.append(_measurement(100, 3, run_cpu_s=10.0, first_task_cpu_s=5.0))
    exponent = bench_market.scaling_exponent(rows)
    assert exponent is not None and exponent.steady and exponent.covers_target_range
    assert exponent.value == pytest.approx(1.2, abs=1e-9)
    assert "target <= 1.05: missed" in bench_market.exponent_line(exponent)
    short = bench_market.scaling_exponent(rows[:2])
    assert short is not None and not short.covers_target_range
    line = bench_market.exponent_line(short)
    assert "is for 1,000 to 100,000 providers" in line and "missed" not in line and "met" not in line


def test_an_even_number_of_repeats_reports_the_lower_middle_ratio() -> None:
    rows = [_measurement(1_000, 2, run_cpu_s=cpu, first_task_cpu_s=cpu / 2) for cpu in (1.0, 2.0, 3.0, 4.0)]
    assert bench_market.median_measurement(rows).run_cpu_s == 3.0  # ratios fall with CPU: 4.0, 3.0 | 2.0, 1.0


def test_kernel_pairs_are_interleaved_and_the_lower_middle_ratio_is_kept() -> None:
    calls: list[str] = []
    first_times = iter([1.0, 1.0, 1.0, 1.0])
    second_times = iter([1.1, 1.4, 1.2, 1.3])

    def first() -> float:
        calls.append("bare")
        return next(first_times)

    def second() -> float:
        calls.append("logged")
        return next(second_times)

    assert bench_kernel.interleaved_pairs(4, first, second) == (1.0, 1.2)
    assert calls == ["bare", "logged"] * 4


@pytest.mark.parametrize(
    ("script", "arguments", "message"),
    [
        ("bench_market.py", ["--repeats", "0"], "--repeats: must be an integer >= 1, got 0"),
        ("bench_market.py", ["--tracemalloc", "3"], "--tracemalloc: only with --memory"),
        ("bench_market.py", ["--case", "300x1", "--profile"], "--profile: not with --case"),
        ("bench_shapley.py", ["--seeds", "0"], "--seeds: must be an integer >= 1, got 0"),
        ("bench_shapley.py", ["--target", "-1"], "--target: must be a number in (0, 1), got -1"),
        ("bench_analysis.py", ["--tasks", "0"], "--tasks: must be an integer >= 1, got 0"),
        ("bench_view.py", ["--steps", "0"], "--steps: must be an integer >= 1, got 0"),
        ("bench_view.py", ["--quick", "--steps", "7"], "--steps: not with --quick, which runs 3 steps"),
        ("bench_view.py", ["--scenario", "nosuch", "--quick"], "--scenario: scenario: not a file"),
        ("run_all.py", ["--only", "nosuch"], "unknown benchmark(s) nosuch (known: analysis"),
        ("run_all.py", ["--quick", "--full"], "argument --full: not allowed with argument --quick"),
    ],
)
def test_bad_options_are_refused_before_any_measurement(script, arguments, message) -> None:
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *arguments], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 2
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr
    assert completed.stdout == ""  # refused before anything is measured or printed


def test_the_upload_cost_split_adds_up_and_names_the_cost_the_target_needs() -> None:
    # fixed 5 us per provider-round, 80 us per upload, 0.45 uploads per provider-round: 41 us, 24,390 per CPU s;
    # 4 x 13,600 = 54,400 per CPU s is 18.38 us, so an upload may cost (18.38 - 5) / 0.45 = 29.74 us
    cost = bench_market.UploadCost(declining_us=5.0, upload_us=80.0, mix_us=41.0, mix_upload_share=0.45)
    assert cost.upload_us_for(54_400) == pytest.approx((1e6 / 54_400 - 5.0) / 0.45, rel=1e-12)
    assert cost.upload_us_for(54_400) == pytest.approx(29.74, abs=0.01)


def test_a_measurement_in_a_fresh_process_returns_its_result() -> None:
    cpu, rounds, uploads = bench_market.in_fresh_process(
        bench_market.population_run, bench_market.MarketCase(10, 1, "unsigned", strategy_mix=(("ALLC", 1.0),))
    )
    assert cpu > 0 and rounds == 10 * 3 and uploads == rounds  # ALLC uploads in every round of the task
