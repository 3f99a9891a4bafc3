"""Run one scenario: build the model, create the run directory, simulate, write the manifest and the summary.

A run directory `<output_dir>/<run_id>/` holds `events/part-*.parquet` and `manifest.json` (scenario, seed,
package versions, status: running, finished, failed or interrupted). The directory is created only after the
scenario has been validated and the model built, so bad input leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from tqdm import tqdm

from flmarket.sim.config import Scenario
from flmarket.sim.events import EventLog
from flmarket.sim.model import MarketModel

VERSIONED_PACKAGES = ("flmarket", "simpy", "mesa", "numpy", "pandas", "pyarrow", "networkx", "scipy", "torch")


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


def write_json_atomically(path: Path, content: dict[str, Any]) -> None:
    """Write JSON to a temporary file beside `path`, then rename it into place."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, path)


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
    """Simulate `scenario` and write its run directory; returns the summary."""
    output_dir = Path(output_dir if output_dir is not None else scenario.run.output_dir)
    run_id = run_id or new_run_id(scenario, output_dir)
    run_dir = output_dir / run_id
    log = EventLog(run_dir / "events", scenario.run.flush_every)
    model = MarketModel(scenario, log=log)  # validates the population before anything is written
    run_dir.mkdir(parents=True, exist_ok=False)
    manifest: dict[str, Any] = {
        "run_id": run_id,
        "scenario": scenario.to_dict(),
        "scenario_name": scenario.run.name,
        "seed": scenario.run.seed,
        "versions": package_versions(),
        "status": "running",
        "started_at": datetime.now(UTC).isoformat(),
    }
    write_json_atomically(run_dir / "manifest.json", manifest)
    started = time.perf_counter()
    status = "failed"
    try:
        with _ProgressBar(scenario, show_progress) as update:
            model.run(progress=update)
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except BaseException as error:
        manifest["error"] = f"{type(error).__name__}: {error}"
        raise
    finally:
        log.emit(model.env.now, "run_finished", status=status, tasks_finished=model.tasks_finished)
        log.close()
        wall = time.perf_counter() - started
        manifest.update(
            {
                "status": status,
                "finished_at": datetime.now(UTC).isoformat(),
                "wall_time_s": wall,
                "final_time_s": float(model.env.now),
                "tasks_finished": model.tasks_finished,
                "events": log.count,
                "events_by_kind": dict(sorted(log.counts_by_kind.items())),
                "parts": list(log.parts),
                "traffic": {
                    "messages_sent": dict(model.overlay.counters.sent),
                    "bytes_sent": dict(model.overlay.counters.bytes_sent),
                    "delivered": dict(model.overlay.counters.delivered),
                    "dropped": dict(model.overlay.counters.dropped),
                },
            }
        )
        write_json_atomically(run_dir / "manifest.json", manifest)
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


class _ProgressBar:
    """A tqdm bar over tasks (when the run is limited by tasks) or simulated seconds."""

    def __init__(self, scenario: Scenario, enabled: bool) -> None:
        self.by_tasks = scenario.run.tasks is not None
        total = scenario.run.tasks if self.by_tasks else scenario.run.horizon_s
        unit = "task" if self.by_tasks else "sim s"
        self.bar = tqdm(total=total, unit=unit, disable=not enabled, desc=scenario.run.name, leave=False)
        self.last = 0.0

    def __enter__(self):  # type: ignore[no-untyped-def]
        def update(now: float, tasks: int) -> None:
            value = float(tasks) if self.by_tasks else now
            self.bar.update(value - self.last)
            self.last = value

        return update

    def __exit__(self, *exc: object) -> None:
        self.bar.close()
