"""Run one scenario: build the model, create the run directory, simulate, write the manifest and the summary.

A run directory `<output_dir>/<run_id>/` holds `events/kind=<kind>/part-<n>.parquet` and `manifest.json`:
scenario, seed, package versions, git commit, the process (pid, hostname, start time), the event schema and
status (running, finished, failed or interrupted). The manifest is rewritten after every flush of the log and at
the end; it lists each part with its rows and SHA-256, the events emitted and the last seq, which readers verify
(`analysis.load.verify_run`). SIGINT and SIGTERM stop the run as `interrupted` with every part readable; an error
during the run, or while writing the log, gives `failed` with the first error's message. The directory is created
only after the scenario has been validated and the model built, so bad input leaves nothing behind.
"""

from __future__ import annotations

import _thread
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from tqdm import tqdm

from flmarket.arguments import folder_problem
from flmarket.files import write_json_atomically
from flmarket.sim.config import Scenario, ScenarioError
from flmarket.sim.events import EventLog, event_schema, signals_deferred
from flmarket.sim.model import MarketModel

VERSIONED_PACKAGES = (
    "flmarket",
    "simpy",
    "mesa",
    "numpy",
    "pandas",
    "pyarrow",
    "networkx",
    "scipy",
    "torch",
    "torchvision",
    "scikit-learn",
    "cryptography",
    "pydantic",
)
"""Packages whose version a run's manifest records: everything the simulation's results can depend on."""


@dataclass(frozen=True)
class RunResult:
    """What a finished run reports."""

    run_dir: Path
    status: str
    tasks_finished: int
    final_time_s: float
    events: int
    wall_time_s: float
    mean_welfare: float
    participation_by_strategy: dict[str, float] = field(default_factory=dict)

    @property
    def events_per_second(self) -> float:
        """Events written per wall-clock second."""
        return self.events / self.wall_time_s if self.wall_time_s > 0 else float("inf")


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages a run depends on (from metadata; nothing is imported)."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(directory: Path | None = None) -> dict[str, Any] | None:
    """The git commit of the checkout holding the package (`git rev-parse HEAD`) and whether tracked files differ
    from it; None outside a git checkout or without git."""
    directory = directory or Path(__file__).resolve().parent

    def git(*arguments: str) -> str:
        return subprocess.run(
            ["git", *arguments], cwd=directory, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def process_identity() -> dict[str, Any]:
    """pid, hostname and start time of this process: readers report a `running` run whose process is gone as
    crashed (the start time tells a reused pid apart)."""
    import psutil

    return {"pid": os.getpid(), "hostname": socket.gethostname(), "started": psutil.Process().create_time()}


TERMINATED = f"signal {signal.SIGTERM.name}"
"""The message of the KeyboardInterrupt that SIGTERM raises while a run lasts (a Ctrl-C's has none)."""


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While the run lasts, SIGTERM raises KeyboardInterrupt("signal SIGTERM") as SIGINT does (main thread
    only), and an interrupt that Python had to drop is delivered again (`interrupts_redelivered`)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(TERMINATED)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        with interrupts_redelivered():
            yield
    finally:
        signal.signal(signal.SIGTERM, previous)


REDELIVERY_DELAY_S = 0.001
"""How long after a dropped interrupt it is delivered again (a dropped one is delivered again in turn)."""


@contextmanager
def interrupts_redelivered() -> Iterator[None]:
    """Deliver again a KeyboardInterrupt that Python could only drop. A signal handler runs wherever the main
    thread is, and when that is a finalizer or a weakref callback (a full collection freeing the previous run, in
    a sweep's next cell), the KeyboardInterrupt it raises is "ignored" (printed, then lost): the sweep ran on to
    its end and exited 0. `sys.unraisablehook` sees such an interrupt; this hook has another thread signal the
    main thread again, with the same signal, so the handler runs once more at a point where it can raise.

    If the block ends before that thread has run (a loaded machine, a short run), the interrupt is raised as the
    block ends, as a signal held until a run's last files are written is: it is never lost."""
    previous = sys.unraisablehook
    dropped: list[str] = []  # the messages of the interrupts Python dropped (TERMINATED or "")
    timers: list[threading.Timer] = []

    def redeliver(unraisable: Any) -> None:
        if unraisable.exc_type is None or not issubclass(unraisable.exc_type, KeyboardInterrupt):
            previous(unraisable)
            return
        raised = unraisable.exc_value.args[0] if unraisable.exc_value is not None and unraisable.exc_value.args else ""
        dropped.append(str(raised))
        number = signal.SIGTERM if raised == TERMINATED else signal.SIGINT
        # from another thread: raised here, in the hook, it would be dropped again
        timer = threading.Timer(REDELIVERY_DELAY_S, _thread.interrupt_main, args=(number,))
        timer.daemon = True  # a pending redelivery never keeps the process alive
        timers.append(timer)
        timer.start()

    sys.unraisablehook = redeliver
    ended = False
    try:
        yield
        ended = True
    finally:
        sys.unraisablehook = previous
        for timer in timers:
            timer.cancel()
        if ended and dropped:  # the block ended normally, so no redelivered interrupt reached it
            raise KeyboardInterrupt(*([TERMINATED] if dropped[-1] == TERMINATED else []))


def _log_state(log: EventLog) -> dict[str, Any]:
    """The manifest fields that describe what the log wrote."""
    records = log.part_records
    return {
        "events": log.count,
        "events_written": log.written,
        "last_seq": log.count - 1,
        "events_by_kind": dict(sorted(log.counts_by_kind.items())),
        "parts": [record.path for record in records],
        "part_rows": {record.path: record.rows for record in records},
        "part_sha256": {record.path: record.sha256 for record in records},
    }


def new_run_id(scenario: Scenario, output_dir: Path) -> str:
    """`<name>-s<seed>-<UTC timestamp>`, with a counter if that directory exists."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    base = f"{scenario.run.name}-s{scenario.run.seed}-{stamp}"
    candidate, counter = base, 1
    while (output_dir / candidate).exists():
        counter += 1
        candidate = f"{base}-{counter}"
    return candidate


def run_scenario(
    scenario: Scenario,
    *,
    output_dir: Path | None = None,
    run_id: str | None = None,
    show_progress: bool = True,
) -> RunResult:
    """Simulate `scenario` and write its run directory; returns the summary.

    From the first folder it creates to the last manifest write, SIGTERM acts as Ctrl-C: before the run starts,
    the run directory is removed; once it has started, the manifest says `interrupted` (a SIGTERM during the
    model's build used to kill the process and leave an empty run directory)."""
    with terminate_as_interrupt():
        return _run(scenario, output_dir, run_id, show_progress)


def check_output_dir(scenario: Scenario) -> None:
    """Refuse a `run.output_dir` that cannot take a run (a file, or under one, or not writable), naming the field;
    `flmarket validate` makes the same check."""
    problem = folder_problem(scenario.run.output_dir)
    if problem is not None:
        raise ScenarioError(f"run.output_dir: {problem}")


def _run(scenario: Scenario, output_dir: Path | None, run_id: str | None, show_progress: bool) -> RunResult:
    output_given = output_dir
    if output_dir is None:
        check_output_dir(scenario)
    output_dir = Path(output_dir if output_dir is not None else scenario.run.output_dir)
    run_id = run_id or new_run_id(scenario, output_dir)
    run_dir = output_dir / run_id
    manifest: dict[str, Any] = {}

    def record_flush(log: EventLog) -> None:
        manifest.update(_log_state(log))
        write_json_atomically(run_dir / "manifest.json", manifest)

    log = EventLog(run_dir / "events", scenario.run.flush_every, on_flush=record_flush)
    created = first_missing_directory(output_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
    except BaseException as error:
        _discard(log, None, output_dir, created)  # an existing run_dir is not ours to remove
        if isinstance(error, OSError) and not isinstance(error, FileExistsError):  # e.g. under /proc, as root
            field = "run.output_dir" if output_given is None else "out"
            raise ScenarioError(
                f"{field}: must be a folder that can be created, got {str(output_dir)!r}"
                f" ({str(run_dir)!r}: {error.strerror or error})"
            ) from error
        raise
    try:
        # the directory exists before the model is built (a small flush_every writes while it is built); if the
        # build (which checks the population) or the first manifest fails, everything created here is removed
        model = MarketModel(scenario, log=log)
        _write_first_manifest(manifest, run_id, scenario, run_dir)
    except BaseException:
        _discard(log, run_dir, output_dir, created)
        raise
    log.start_timer()
    started = time.perf_counter()
    status = "failed"
    first_error: BaseException | None = None
    try:
        with _ProgressBar(scenario, show_progress) as update:
            model.run(progress=update)
        status = "finished"
    except KeyboardInterrupt as error:
        status, first_error = "interrupted", error
    except BaseException as error:
        first_error = error
    # From here to the last manifest write, SIGINT and SIGTERM are held and delivered after it: a signal that
    # landed in the final flush left a finished run's manifest saying `running` (a second Ctrl-C did the same to
    # an interrupted one). A finished run stays finished; the process still stops (exit status 130 or 143).
    with signals_deferred():
        status, first_error = _close_log(log, model, manifest, status, first_error)
        wall = time.perf_counter() - started
        _write_last_manifest(manifest, status, first_error, wall, model, log, run_dir)
    if first_error is not None:
        raise first_error
    history = model.welfare_history
    return RunResult(
        run_dir=run_dir,
        status=status,
        tasks_finished=model.tasks_finished,
        final_time_s=float(model.env.now),
        events=log.count,
        wall_time_s=wall,
        mean_welfare=sum(history) / len(history) if history else float("nan"),
        participation_by_strategy={
            name: total / count for name, (total, count) in sorted(model.participation_by_strategy.items()) if count
        },
    )


def _close_log(
    log: EventLog, model: MarketModel, manifest: dict[str, Any], status: str, first_error: BaseException | None
) -> tuple[str, BaseException | None]:
    """Log `run_finished` and write the rest of the log; a write error fails the run unless something failed
    first (then it is kept in the manifest as `close_error`)."""
    try:
        if log.error is None:
            log.emit(model.env.now, "run_finished", status=status, tasks_finished=model.tasks_finished)
        log.close()
    except Exception as error:  # the log could not be written: the run failed, unless something failed first
        if first_error is None or isinstance(first_error, KeyboardInterrupt):
            status, first_error = "failed", error
        else:
            manifest["close_error"] = _one_line(error)
        log.close()  # only stops the timer after a failed write
    return status, first_error


def _write_last_manifest(
    manifest: dict[str, Any],
    status: str,
    first_error: BaseException | None,
    wall: float,
    model: MarketModel,
    log: EventLog,
    run_dir: Path,
) -> None:
    """The manifest of a run that has ended: its status, error, times, counts, parts and traffic."""
    if first_error is not None and not isinstance(first_error, KeyboardInterrupt):
        manifest["error"] = _one_line(first_error)
    manifest.update(
        {
            "status": status,
            "finished_at": datetime.now(UTC).isoformat(),
            "wall_time_s": wall,
            "final_time_s": float(model.env.now),
            "tasks_finished": model.tasks_finished,  # tasks ended, the rejected ones included (run.tasks counts them)
            "tasks_rejected": log.counts_by_kind.get("task_rejected", 0),
            "event_schema": event_schema(),
            **_log_state(log),
            "traffic": {
                "messages_sent": dict(model.overlay.counters.sent),
                "bytes_sent": dict(model.overlay.counters.bytes_sent),
                "delivered": dict(model.overlay.counters.delivered),
                "dropped": dict(model.overlay.counters.dropped),
            },
        }
    )
    write_json_atomically(run_dir / "manifest.json", manifest)


def _write_first_manifest(manifest: dict[str, Any], run_id: str, scenario: Scenario, run_dir: Path) -> None:
    """The manifest of a run that has started: what it is, where it runs, status running."""
    manifest.update(
        {
            "run_id": run_id,
            "scenario": scenario.to_dict(),
            "scenario_name": scenario.run.name,
            "seed": scenario.run.seed,
            "versions": package_versions(),
            "git": git_commit(),
            "process": process_identity(),
            "event_schema": event_schema(),
            "status": "running",
            "started_at": datetime.now(UTC).isoformat(),
        }
    )
    write_json_atomically(run_dir / "manifest.json", manifest)


def first_missing_directory(directory: Path) -> Path | None:
    """The outermost of `directory` and its ancestors that does not exist yet (what creating it would create):
    a command that fails before it has done anything removes it again."""
    missing = None
    for candidate in (directory, *directory.parents):
        try:
            if candidate.exists():
                break
        except OSError:
            break
        missing = candidate
    return missing


def _discard(log: EventLog, run_dir: Path | None, output_dir: Path, created: Path | None) -> None:
    """A run that failed before it started leaves nothing: close the log (errors ignored, the first one is being
    raised), remove the run directory (when this run created it) and the empty folders from `output_dir` up to
    `created` that this run created."""
    import shutil

    try:
        log.close()
    except Exception:  # the build or manifest error is the one reported
        pass
    if run_dir is not None:
        shutil.rmtree(run_dir, ignore_errors=True)
    if created is None:
        return
    for folder in (output_dir, *output_dir.parents):
        try:
            if not folder.is_dir() or any(folder.iterdir()):
                return
            folder.rmdir()
        except OSError:
            return
        if folder == created:
            return


def _one_line(error: BaseException) -> str:
    """`Type: message` on one line."""
    return " ".join(f"{type(error).__name__}: {error}".split())


class _ProgressBar:
    """A tqdm bar of whole tasks (out of run.tasks, when the run is limited by tasks), with the simulated clock
    beside it (out of run.horizon_s, if set); drawn only when stderr is a terminal, and updated as each task
    finishes (the model reports every finished task)."""

    def __init__(self, scenario: Scenario, enabled: bool, stream: Any = None) -> None:
        stream = stream if stream is not None else sys.stderr
        self.horizon = scenario.run.horizon_s
        self.bar = tqdm(
            total=scenario.run.tasks,
            unit="task",
            desc=scenario.run.name,
            leave=False,
            file=stream,
            disable=not (enabled and stream.isatty()),
        )
        self.tasks = 0

    def update(self, now: float, tasks: int) -> None:
        """The run's state: `tasks` finished at simulated time `now`."""
        if tasks > self.tasks:
            self.bar.update(tasks - self.tasks)
            self.tasks = tasks
        clock = f"t={now:,.0f}" + (f"/{self.horizon:,.0f}" if self.horizon is not None else "") + " s"
        self.bar.set_postfix_str(clock, refresh=False)

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.update

    def __exit__(self, *exc: object) -> None:
        self.bar.close()
