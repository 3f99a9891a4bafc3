"""Analysis benchmark: CPU time and peak memory of reading a long run (issue 15's "done when" for analysis).

A 1,500-task run of the bundled `evolution` scenario (150 tasks with `--quick`) is written once to a temporary
directory. Each operation then runs in a fresh Python process, so nothing is cached between repeats (the
operating system's file cache is shared, as it is for a user), and reports its own CPU time (user + system)
and peak RSS (VmHWM: Linux only) in MB (10^6 bytes), and the part of each that its imports take:
- load one kind: `load_events(run, kinds=["provider_payoff"])`;
- load all kinds: `load_events(run)`, every event in one frame (the widest frame a user can ask for);
- run summary: `run_summary(run)`;
- report: `flmarket report run` (the command line, in-process), the HTML report with its figures.
Operations are interleaved over the repeats and the medians are printed. Issue 15 measured, on its 1,500-task
run: load 17.5 s and 375 MB, `run_summary` 7 s, report 34 s and 1.3 GB. Its targets: one kind in about a
second; the report in less than a quarter of that time and memory (8.5 s, 325 MB).

Run: `python benchmarks/bench_analysis.py` (or `--quick`, `--tasks N`, `--repeats N`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flmarket.arguments import integer_in
from flmarket.sim.config import load_scenario
from flmarket.sim.runner import run_scenario

ISSUE_REPORT_SECONDS = 34.0
ISSUE_REPORT_MEGABYTES = 1300.0

_MEASURE = """
import json, resource, sys
run = sys.argv[1]
def usage():
    own = resource.getrusage(resource.RUSAGE_SELF)
    # VmHWM, not ru_maxrss: Linux carries the parent's peak into a spawned child's ru_maxrss
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return own.ru_utime + own.ru_stime, peak * 1024 / 1e6  # kB (KiB) to MB, 10^6 bytes as issue 15's MB
{imports}
imported_cpu, imported_peak = usage()
{operation}
cpu, peak = usage()
print(json.dumps({{"cpu_s": cpu, "peak_mb": peak, "imports_cpu_s": imported_cpu, "imports_peak_mb": imported_peak}}))
"""

_LOAD = "from flmarket.analysis import load_events"
OPERATIONS: dict[str, tuple[str, str]] = {  # name: (its imports, its work)
    "load one kind": (_LOAD, "frame = load_events(run, kinds=['provider_payoff'])"),
    "load all kinds": (_LOAD, "frame = load_events(run)"),
    "run summary": ("from flmarket.analysis import run_summary", "summary = run_summary(run)"),
    "report (flmarket report)": (
        "from flmarket.sim.cli import main",
        "main(['report', run, '--out', run + '/bench-report.html'])",
    ),
}

TARGETS: dict[str, str] = {
    "load one kind": "about 1 s",
    "report (flmarket report)": f"< {ISSUE_REPORT_SECONDS / 4:.1f} s and < {ISSUE_REPORT_MEGABYTES / 4:.0f} MB",
}


def write_run(tasks: int, directory: Path) -> tuple[Path, float, int]:
    """The evolution scenario run for `tasks` tasks into `directory`: its path, CPU seconds and events logged."""
    scenario = load_scenario("evolution", {"run.tasks": tasks})
    started = time.process_time()
    handle = run_scenario(scenario, output_dir=directory, run_id="bench", show_progress=False)
    seconds = time.process_time() - started
    manifest = json.loads((handle.run_dir / "manifest.json").read_text(encoding="utf-8"))
    return handle.run_dir, seconds, int(manifest["events"])


def measure(operation: str, run_dir: Path) -> dict[str, float]:
    """CPU seconds and peak RSS (MB) of one operation in a fresh interpreter."""
    imports, work = OPERATIONS[operation]
    code = _MEASURE.format(imports=imports, operation=work)
    completed = subprocess.run([sys.executable, "-c", code, str(run_dir)], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{operation} failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="150 tasks and one repeat (a smoke run)")
    parser.add_argument(
        "--tasks", type=integer_in(1), help="tasks of the evolution run (default 1,500; 150 with --quick)"
    )
    parser.add_argument(
        "--repeats", type=integer_in(1), help="fresh processes per operation (default 3; 1 with --quick)"
    )
    args = parser.parse_args()
    tasks = args.tasks if args.tasks is not None else (150 if args.quick else 1500)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    with tempfile.TemporaryDirectory(prefix="flmarket-bench-analysis-") as directory:
        run_dir, run_seconds, events = write_run(tasks, Path(directory))
        size = sum(path.stat().st_size for path in (run_dir / "events").rglob("*.parquet")) / 2**20
        print(f"evolution, {tasks} tasks: {events:,} events, {size:.1f} MiB of Parquet, run in {run_seconds:.1f} CPU s")
        samples: dict[str, list[dict[str, float]]] = {operation: [] for operation in OPERATIONS}
        for _ in range(repeats):
            for operation in OPERATIONS:  # interleaved: one of each per repeat
                samples[operation].append(measure(operation, run_dir))
    print(
        f"\n| operation (fresh process, median of {repeats}) | CPU s | of which imports | peak RSS MB "
        "| RSS after imports MB | target |"
    )
    print("|---|---|---|---|---|---|")
    for operation, measured in samples.items():
        cpu, imports_cpu, peak, imports_peak = (
            statistics.median(sample[key] for sample in measured)
            for key in ("cpu_s", "imports_cpu_s", "peak_mb", "imports_peak_mb")
        )
        target = TARGETS.get(operation, "-")
        print(f"| {operation} | {cpu:.2f} | {imports_cpu:.2f} | {peak:.0f} | {imports_peak:.0f} | {target} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
