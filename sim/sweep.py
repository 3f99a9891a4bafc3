"""Parameter sweeps: a grid file expands to cells x seeds, each one seeded run, executed on dask.distributed.

A grid file (TOML) looks like this (see `sim/grids/`):

    [sweep]
    name = "population_mix"           # the sweep's directory under --out
    scenario = "quickstart"           # a bundled name, or a path relative to the grid file
    seeds = [1, 2, 3]                 # or a count: seeds = 3 means 0, 1, 2
    overrides = { "run.tasks" = 10 }  # optional: dotted-path overrides applied to every cell

    [grid]                            # either: a cartesian product, dotted path -> list of values
    "providers.count" = [10, 20]

    [[cells]]                         # or: a list of labelled cells
    label = "cooperators"
    overrides = { "providers.strategy_mix" = { ALLC = 0.8, ALLD = 0.2 } }

Keys are dotted paths into the scenario (quote them); their values replace the scenario's value whole (a table
value such as a strategy mix is not merged). The grid and every cell's scenario are validated before anything
runs; errors name the field path, the value and the rule (`GridError`, a `ScenarioError`).

Each cell x seed is one `run_scenario` call with a deterministic run id (`<label>-s<seed>-<digest>`, the digest a
SHA-256 of the overrides and the seed) writing `<out>/<name>/cells/<run_id>/`. Runs are independent and seeded
before dispatch, so the event parts are byte-identical whatever the number of workers. The sweep index
`<out>/<name>/sweep.json` (written atomically after every cell) records each cell's parameters, status and error;
a failed cell does not stop the sweep; re-running skips the cells whose manifest says finished for the same
scenario (resume). The index format is read by `analysis.sweeps` (which does not import this module).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import hashlib
import itertools
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import textwrap
import threading
import time
import tomllib
import types
import typing
import warnings
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from tqdm import tqdm

from flmarket.arguments import folder, integer_in
from flmarket.market.errors import DatasetNotFoundError
from flmarket.market.fl.data import check_dataset_files
from flmarket.sim.config import (
    MAX_SEED,
    Distribution,
    Scenario,
    ScenarioError,
    bundled_scenarios,
    in_scenario_terms,
    load_scenario,
    resolve_scenario_path,
)

INDEX_FILE = "sweep.json"
CELLS_DIRECTORY = "cells"
INDEX_FORMAT = 1
DEFAULT_OUTPUT_DIR = "sweeps"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=+-]+")
_SWEEP_KEYS = {"name", "scenario", "seeds", "overrides", "description"}
_CELL_KEYS = {"label", "overrides"}
_RESERVED_PATHS = {"run.seed": "set the seeds in [sweep].seeds", "run.output_dir": "use --out"}
_LABEL_LENGTH = 48


class GridError(ScenarioError):
    """A grid file that cannot be swept: one line per problem naming the field path, the value and the rule."""


@dataclass(frozen=True)
class Cell:
    """One point of the grid: a label and its dotted-path overrides (applied after the sweep's base overrides)."""

    label: str
    overrides: Mapping[str, Any]


@dataclass(frozen=True)
class Grid:
    """A validated grid: the base scenario, the seeds and the cells."""

    name: str
    scenario: str
    seeds: tuple[int, ...]
    cells: tuple[Cell, ...]
    base_overrides: Mapping[str, Any] = field(default_factory=dict)
    parameters: tuple[str, ...] = ()
    source: Path | None = None
    description: str = ""


@dataclass(frozen=True)
class CellRun:
    """One cell x seed: the scenario to run and where."""

    run_id: str
    label: str
    seed: int
    overrides: Mapping[str, Any]
    parameters: Mapping[str, Any]
    scenario: Scenario


@dataclass(frozen=True)
class CellOutcome:
    """What happened to one cell x seed in this invocation."""

    run_id: str
    status: str
    executed: bool
    error: str = ""
    wall_time_s: float = 0.0
    warnings: tuple[str, ...] = ()
    """What the run warned about (a dask worker's own stderr would show them raw, with a source line)."""


@dataclass(frozen=True)
class SweepResult:
    """A sweep's directory and the outcome of each of its runs."""

    sweep_dir: Path
    name: str
    outcomes: tuple[CellOutcome, ...]

    @property
    def executed(self) -> tuple[str, ...]:
        """Run ids simulated in this invocation."""
        return tuple(outcome.run_id for outcome in self.outcomes if outcome.executed)

    @property
    def skipped(self) -> tuple[str, ...]:
        """Run ids already finished before this invocation (resume)."""
        return tuple(outcome.run_id for outcome in self.outcomes if not outcome.executed)

    @property
    def failed(self) -> tuple[str, ...]:
        """Run ids whose run failed."""
        return tuple(outcome.run_id for outcome in self.outcomes if outcome.status != "finished")

    @property
    def ok(self) -> bool:
        """Whether every run finished."""
        return not self.failed


# ------------------------------------------------------------------------------------------ grid parsing


def _describe(value: Any) -> str:
    return "a table" if isinstance(value, dict) else repr(value)


def _overrides_table(value: Any, where: str, errors: list[str]) -> dict[str, Any]:
    """A table of dotted path -> value; nested tables are rejected (the keys must be quoted dotted paths)."""
    if not isinstance(value, dict):
        errors.append(f"{where}: must be a table of dotted paths -> values, got {_describe(value)}")
        return {}
    for path in value:
        if not isinstance(path, str):
            errors.append(f'{where}: keys must be dotted paths such as "providers.count", got {path!r}')
        elif path in _RESERVED_PATHS:
            errors.append(f"{where}.{path}: cannot be swept here ({_RESERVED_PATHS[path]})")
        elif "." not in path:
            errors.append(f'{where}.{path}: must be a dotted path such as "providers.count" (quote it), got a bare key')
    return {path: item for path, item in value.items() if isinstance(path, str) and path not in _RESERVED_PATHS}


MAX_SEEDS = 10_000
"""The most seeds a sweep takes (each cell x seed is validated before anything runs)."""


def _seeds(value: Any, errors: list[str]) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_SEEDS:
            errors.append(f"sweep.seeds: a count must be in 1..{MAX_SEEDS:,}, got {value}")
            return ()
        return tuple(range(value))
    if not isinstance(value, list) or not value:
        errors.append(f"sweep.seeds: must be a non-empty list of integers >= 0 or a count, got {_describe(value)}")
        return ()
    bad = [item for item in value if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= MAX_SEED]
    if bad:
        errors.append(f"sweep.seeds: every seed must be an integer in 0..2**63 - 1, got {bad[0]!r}")
        return ()
    if len(value) > MAX_SEEDS:
        errors.append(f"sweep.seeds: at most {MAX_SEEDS:,} seeds, got {len(value):,}")
        return ()
    if len(set(value)) != len(value):
        duplicate = next(item for item in value if value.count(item) > 1)
        errors.append(f"sweep.seeds: seeds must be distinct, got {duplicate} twice")
        return ()
    return tuple(value)


def _value_label(value: Any) -> str:
    if isinstance(value, dict):
        return "-".join(f"{key}{_value_label(item)}" for key, item in value.items())
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value)


def _grid_label(assignment: Mapping[str, Any]) -> str:
    """A readable label for a cartesian cell: `count=10_strategy_mix=ALLC1-ALLD0` (last path parts)."""
    parts = [f"{path.rsplit('.', 1)[-1]}={_value_label(value)}" for path, value in assignment.items()]
    return "_".join(parts) or "base"


def parse_grid(data: Mapping[str, Any], source: Path | None = None) -> Grid:
    """Validate a grid dictionary (the parsed TOML); raise GridError listing every problem."""
    errors: list[str] = []
    for key in sorted(set(data) - {"sweep", "grid", "cells"}):
        errors.append(f"{key}: unknown key (allowed: sweep, grid, cells)")
    sweep = data.get("sweep")
    if sweep is None:
        raise GridError("sweep: required table with name, scenario and seeds, missing")
    if not isinstance(sweep, dict):
        raise GridError(f"sweep: must be a table with name, scenario and seeds, got {_describe(sweep)}")
    misspelt: set[str] = set()  # required keys a typo stands for: not also reported missing
    for key in sorted(set(sweep) - _SWEEP_KEYS):
        close = difflib.get_close_matches(str(key), sorted(_SWEEP_KEYS - set(sweep)), n=1, cutoff=0.6)
        misspelt.update(close)
        hint = f"; did you mean sweep.{close[0]}?" if close else ""
        errors.append(f"sweep.{key}: unknown key (allowed: {', '.join(sorted(_SWEEP_KEYS))}){hint}")
    name = sweep.get("name")
    if name is None:
        if "name" not in misspelt:
            errors.append("sweep.name: required, missing")
    elif not isinstance(name, str) or not _NAME.match(name):
        errors.append(f"sweep.name: must be a name of letters, digits, '_', '.' or '-', got {name!r}")
    scenario = sweep.get("scenario")
    if scenario is None:
        if "scenario" not in misspelt:
            errors.append("sweep.scenario: required, missing (a bundled scenario name or a path)")
    elif not isinstance(scenario, str) or not scenario:
        errors.append(f"sweep.scenario: must be a bundled scenario name or a path, got {scenario!r}")
    seeds = _seeds(sweep.get("seeds"), errors) if "seeds" in sweep else ()
    if "seeds" not in sweep and "seeds" not in misspelt:
        errors.append("sweep.seeds: required, missing")
    base = _overrides_table(sweep.get("overrides", {}), "sweep.overrides", errors)
    description = sweep.get("description", "")

    has_grid, has_cells = "grid" in data, "cells" in data
    cells: list[Cell] = []
    parameters: tuple[str, ...] = ()
    if has_grid == has_cells:
        errors.append(
            "grid: give either a [grid] table or a list of [[cells]], not " + ("both" if has_grid else "neither")
        )
    elif has_grid:
        grid = _overrides_table(data["grid"], "grid", errors)
        if isinstance(data["grid"], dict) and not data["grid"]:
            errors.append("grid: must name at least one dotted path, got an empty table")
        for path, values in grid.items():
            if not isinstance(values, list) or not values:
                errors.append(f"grid.{path}: must be a non-empty list of values, got {_describe(values)}")
        for outer, inner in itertools.permutations(grid, 2):  # a value replaces its path whole (apply_overrides)
            if _inside(inner, outer):
                errors.append(
                    f"grid.{inner}: inside grid.{outer}, whose values replace it whole; vary one of the two (or "
                    "list whole values of the outer one)"
                )
        if not any(line.startswith("grid") for line in errors):
            parameters = tuple(grid)
            for combination in itertools.product(*grid.values()):
                assignment = dict(zip(parameters, combination, strict=True))
                cells.append(Cell(_grid_label(assignment), assignment))
    else:
        raw_cells = data["cells"]
        if not isinstance(raw_cells, list) or not raw_cells:
            errors.append(f"cells: must be a non-empty list of tables [[cells]], got {_describe(raw_cells)}")
            raw_cells = []
        seen: set[str] = set()
        for index, raw in enumerate(raw_cells):
            where = f"cells[{index}]"
            if not isinstance(raw, dict):
                errors.append(f"{where}: must be a table with label and overrides, got {_describe(raw)}")
                continue
            for key in sorted(set(raw) - _CELL_KEYS):
                errors.append(f"{where}.{key}: unknown key (allowed: label, overrides)")
            label = raw.get("label")
            if not isinstance(label, str) or not label.strip():
                errors.append(f"{where}.label: must be a non-empty string, got {label!r}")
                continue
            if label in seen:
                errors.append(f"{where}.label: labels must be unique, got {label!r} twice")
            seen.add(label)
            cells.append(Cell(label, _overrides_table(raw.get("overrides", {}), f"{where}.overrides", errors)))
        parameters = ("label", *dict.fromkeys(path for cell in cells for path in cell.overrides))
    for path in base:  # a cell's value replaces whatever [sweep].overrides set at or inside its path
        shadowing = next((v for cell in cells for v in cell.overrides if _inside(path, v)), None)
        if shadowing == path and cells and all(path in cell.overrides for cell in cells):
            errors.append(f"sweep.overrides.{path}: every cell sets this key, so this value is never used; remove it")
        elif shadowing is not None and shadowing != path:
            errors.append(
                f"sweep.overrides.{path}: a cell sets the whole of {shadowing}, which replaces this value; set it "
                f"in the cells instead"
            )
    if errors:
        raise GridError("\n".join(dict.fromkeys(errors)))
    return Grid(
        name=name,
        scenario=scenario,
        seeds=seeds,
        cells=tuple(cells),
        base_overrides=base,  # type: ignore[arg-type]
        parameters=parameters,
        source=source,
        description=str(description),
    )


GRID_KEYS = frozenset({"sweep", "grid", "cells"})
"""Top-level keys that make a TOML file a grid rather than a scenario (a scenario has [run], [providers], ...)."""


def is_grid_data(data: Mapping[str, Any]) -> bool:
    """Whether parsed TOML is a grid: it has a [sweep] table, a [grid] table or [[cells]]."""
    return bool(GRID_KEYS & set(data))


def bundled_grids() -> dict[str, Path]:
    """Names and paths of the grids shipped inside the package (`sim/grids/NAME.toml`)."""
    folder = resources.files("flmarket.sim") / "grids"
    found = {entry.name.removesuffix(".toml"): Path(str(entry)) for entry in folder.iterdir()}
    return {name: path for name, path in sorted(found.items()) if path.suffix == ".toml"}


def resolve_grid_path(reference: str | Path) -> Path:
    """An existing grid file, or the name of a bundled grid (`population_mix`)."""
    path = Path(reference)
    if path.is_file():
        return path
    bundled = bundled_grids()
    if str(reference) in bundled:
        return bundled[str(reference)]
    raise GridError(
        f"grid: not a file and not a bundled grid, got {str(reference)!r} (bundled: {', '.join(bundled) or 'none'})"
    )


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file as a dictionary; a one-line GridError naming the file if it cannot be read or parsed."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise GridError(f"{path}: malformed TOML: {error}") from None
    except UnicodeDecodeError:
        raise GridError(f"{path}: not a UTF-8 text file") from None
    except OSError as error:
        raise GridError(f"{path}: cannot read {what}: {error.strerror}") from None


def load_grid(reference: str | Path) -> Grid:
    """Read and validate a grid file, or a bundled grid by name."""
    path = resolve_grid_path(reference)
    return parse_grid(read_toml(path, "grid file"), source=path.resolve())


def parse_seeds_option(text: str) -> tuple[int, ...]:
    """`--seeds`: a comma-separated list of distinct seeds (`1,2,3`; one seed is `7,`) or a count (`5` = 0..4)."""
    errors: list[str] = []
    items = [item.strip() for item in text.split(",")]
    if len(items) > 1 and not all(items[:-1]):  # only a trailing comma may leave an item empty (`7,`)
        raise GridError(f"--seeds: an empty seed between commas, got {text!r} (write 1,2 or one seed as 7,)")
    try:
        if not all(item.isascii() and (item.isdigit() or item.startswith("-")) for item in items if item):
            raise ValueError(text)  # int() would also read 1_0 as 10 and " 3 " padded forms; only plain digits
        if len(items) == 1:
            value: Any = int(items[0])
        else:
            value = [int(item) for item in items if item]
    except ValueError:
        raise GridError(
            f"--seeds: must be a count (5) or a comma-separated list of seeds (1,2,3), got {text!r}"
        ) from None
    seeds = _seeds(value, errors)
    if errors:
        raise GridError(errors[0].replace("sweep.seeds", "--seeds"))
    return seeds


def with_options(
    grid: Grid,
    *,
    seeds: int | Sequence[int] | None = None,
    overrides: Mapping[str, Any] | None = None,
    names: tuple[str, str] = ("--set", "--seeds"),
) -> Grid:
    """The grid with other seeds and extra overrides for every cell (`flmarket sweep --seeds ... --set ...`).

    An override replaces the value at its path whole, as in grids and `flmarket run --set`; a path the grid
    varies cannot also be set, nor `run.seed` (use the seeds). `names` are what errors call the overrides and the
    seeds: the command line's options, or the Python API's arguments ("overrides", "seeds").
    """
    set_name, seeds_name = names
    if overrides is not None and not isinstance(overrides, Mapping):
        raise GridError(f"{set_name}: must map dotted paths to values, got {type(overrides).__name__}")
    overrides = dict(overrides or {})
    errors: list[str] = []
    for path in overrides:
        if not isinstance(path, str):
            errors.append(f'{set_name}: keys must be dotted paths such as "providers.count", got {path!r}')
        elif path == "run.seed":
            errors.append(f"{set_name} run.seed: cannot be set for a sweep (give the seeds with {seeds_name})")
        elif path in _RESERVED_PATHS:
            errors.append(f"{set_name} {path}: cannot be set for a sweep ({_RESERVED_PATHS[path]})")
        elif (varied := _overlapping(path, grid)) is not None:
            what = "this key" if varied == path else f"{varied}, which overlaps it"
            errors.append(f"{set_name} {path}: the grid varies {what}; remove it from the grid or from {set_name}")
    changes: dict[str, Any] = {"base_overrides": {**grid.base_overrides, **overrides}}
    if seeds is not None:
        changes["seeds"] = _seeds(seeds if isinstance(seeds, int) else list(seeds), errors)  # a count, or the seeds
    if errors:
        raise GridError("\n".join(error.replace("sweep.seeds", seeds_name) for error in errors))
    return dataclasses.replace(grid, **changes)


def _inside(path: str, table: str) -> bool:
    """Whether dotted `path` is `table` or a key inside it."""
    return path == table or path.startswith(f"{table}.")


def _overlapping(path: str, grid: Grid) -> str | None:
    """A path some cell sets that is `path`, inside it or holds it (a cell's table replaces whatever is set inside
    it, and a setting of the whole table would be partly undone by the cell): None if there is none."""
    for cell in grid.cells:
        for varied in cell.overrides:
            if _inside(path, varied) or _inside(varied, path):
                return varied
    return None


def _type_name(annotation: Any) -> str:
    """A short name of a scenario field's type for `flmarket sweep --help`."""
    origin = typing.get_origin(annotation)
    arguments = [item for item in typing.get_args(annotation) if item is not type(None)]
    if origin is typing.Literal:
        return "|".join(map(str, arguments))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(_type_name(item) for item in arguments))
    if origin is dict:
        return "table, replaced whole"
    if origin is tuple:
        return "list"
    if annotation is Distribution:
        return "distribution"
    return getattr(annotation, "__name__", str(annotation))


def sweepable_keys() -> dict[str, str]:
    """Every dotted path a grid (or --set) may vary, with its type, from the scenario schema (`sim/config.py`)."""
    from pydantic import BaseModel

    keys: dict[str, str] = {}

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            path = f"{prefix}{name}"
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation is not Distribution:
                walk(annotation, f"{path}.")
            elif path not in _RESERVED_PATHS:
                keys[path] = _type_name(annotation)

    walk(Scenario, "")
    return keys


def is_grid_reference(reference: str | Path) -> bool:
    """Whether `reference` names a grid, not a scenario: a TOML file with grid top-level keys (`is_grid_data`), or
    the name of a bundled grid that is not also a bundled scenario. Unreadable files are left to the scenario
    loader, which reports them."""
    path = Path(reference)
    try:
        if path.is_file():
            with path.open("rb") as handle:
                return is_grid_data(tomllib.load(handle))
    except (OSError, ValueError, RecursionError):  # NUL in the path, not UTF-8, malformed or too deeply nested TOML
        return False
    return str(reference) in bundled_grids() and str(reference) not in bundled_scenarios()


def describe_grid(reference: str | Path) -> str:
    """Validate a grid and every cell's scenario (`flmarket validate GRID`); one line saying what it sweeps."""
    grid = load_grid(reference)
    runs = plan(grid)
    varied = ", ".join(path for path in grid.parameters if path != "label") or "labels only"
    return (
        f"{reference}: valid grid {grid.name!r} ({len(grid.cells)} cells x {len(grid.seeds)} seeds = {len(runs)} runs "
        f"of {grid.scenario}; varies {varied})"
    )


def _scenario_reference(grid: Grid) -> str:
    """The base scenario as a path: relative to the grid file first, then a bundled name."""
    if grid.source is not None:
        candidate = grid.source.parent / grid.scenario
        if candidate.is_file():
            return str(candidate)
    if grid.scenario in bundled_scenarios() or Path(grid.scenario).is_file():
        return str(resolve_scenario_path(grid.scenario))
    raise GridError(
        f"sweep.scenario: not a file next to the grid file and not a bundled scenario, "
        f"got {grid.scenario!r} (bundled: {', '.join(bundled_scenarios()) or 'none'})"
    )


def run_id_for(label: str, overrides: Mapping[str, Any], seed: int) -> str:
    """`<label>-s<seed>-<first 10 hex of SHA-256 of the canonical JSON of the overrides and the seed>`."""
    canonical = json.dumps(
        {"overrides": dict(overrides), "seed": seed}, sort_keys=True, separators=(",", ":"), default=str
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:10]
    slug = _UNSAFE.sub("_", label).strip("_.")[:_LABEL_LENGTH] or "cell"
    return f"{slug}-s{seed}-{digest}"


def _lookup(data: Mapping[str, Any], path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, Mapping) or part not in data:
            return None
        data = data[part]
    return data


def _parameters(grid: Grid, cell: Cell, scenario: Scenario) -> dict[str, Any]:
    """A run's swept parameters as the validated scenario has them (a table whole, as the cell's value replaced
    it), and the label of a [[cells]] grid."""
    values = scenario.to_dict()
    return {path: cell.label if path == "label" else _lookup(values, path) for path in grid.parameters}


def plan(grid: Grid) -> list[CellRun]:
    """Every cell x seed with its validated scenario; raises GridError naming each bad cell before anything runs."""
    reference = _scenario_reference(grid)
    runs: list[CellRun] = []
    problems: dict[str, list[str]] = {}  # each problem and the cells it is found in
    for index, cell in enumerate(grid.cells):
        overrides = {**grid.base_overrides, **cell.overrides}
        for seed in grid.seeds:
            try:
                scenario = load_scenario(reference, {**overrides, "run.seed": seed})
            except ScenarioError as error:
                for line in str(error).splitlines():
                    problems.setdefault(line, []).append(f"cells[{index}] ({cell.label})")
                break  # the other seeds of the cell fail alike
            learning = scenario.learning
            if learning.backend == "torch":  # a run would fail at its start: say so now, for every cell
                try:
                    check_dataset_files(learning.dataset, learning.data_root)
                except DatasetNotFoundError as error:
                    problems.setdefault(in_scenario_terms(error), []).append(f"cells[{index}] ({cell.label})")
                    break
            parameters = _parameters(grid, cell, scenario)
            runs.append(
                CellRun(run_id_for(cell.label, overrides, seed), cell.label, seed, overrides, parameters, scenario)
            )
    errors = [  # a problem of every cell (a bad --set or [sweep].overrides) is said once
        f"every cell: {line}" if len(where) == len(grid.cells) > 1 else f"{place}: {line}"
        for line, where in problems.items()
        for place in (where[:1] if len(where) == len(grid.cells) > 1 else where)
    ]
    if errors:
        raise GridError("\n".join(dict.fromkeys(errors)))
    first_with: dict[str, CellRun] = {}  # equal overrides, or equal once validated (100000 and 100000.0, or two
    # labels of one mix): one scenario would run twice (twice under one run id, for equal overrides and label)
    for run in runs:
        same = first_with.setdefault(json.dumps(run.scenario.to_dict(), sort_keys=True, default=str), run)
        if same is not run:
            raise GridError(
                f"cells: {same.label!r} and {run.label!r} are the same scenario once validated (overrides "
                f"{same.overrides} and {run.overrides}); each seed of it would count twice in every summary by "
                "parameter: drop one, or give it other values"
            )
    return runs


# ------------------------------------------------------------------------------------------------ running


def finished_before(run_dir: Path, scenario: Scenario) -> bool:
    """Whether `run_dir` holds a finished, intact run of exactly this scenario (so resuming can skip it).

    A cell whose manifest says finished but whose parts fail verification (a part deleted, truncated, duplicated
    or from another run) is not finished: resume runs it again.
    """
    return _verification_problem(run_dir, scenario) == ""


def _verification_problem(run_dir: Path, scenario: Scenario) -> str | None:
    """None unless the manifest says finished for this scenario; then the first problem `verify_run` finds in the
    run's parts, or "" when it is intact."""
    from flmarket.analysis.load import verify_run

    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    if manifest.get("status") != "finished" or manifest.get("scenario") != scenario.to_dict():
        return None
    check = verify_run(run_dir)
    if check.ok and check.status == "finished":
        return ""
    return check.problems[0] if check.problems else f"it loads as {check.status}"


def _manifest_wall_time(run_dir: Path) -> float | None:
    """The wall time a finished run's manifest records (the run alone, without the cell's set-up), for cells the
    index has no time for: they finished while a sweep was being stopped, or the index was lost."""
    try:
        wall = json.loads((run_dir / "manifest.json").read_text()).get("wall_time_s")
    except (OSError, ValueError, AttributeError):
        return None
    return float(wall) if isinstance(wall, int | float) and not isinstance(wall, bool) else None


def _earlier_cells(sweep_dir: Path, grid: Grid) -> dict[str, dict[str, Any]]:
    """The cells of the index already in `sweep_dir` (none if there is none).

    An index of another grid with the same name (another scenario, or other swept keys) is refused: running this
    grid there would drop its runs from the index, and with them from every summary, report and query. The same
    grid edited (other values, seeds or base overrides) takes the folder over, as a resumed sweep does."""
    path = sweep_dir / INDEX_FILE
    if not path.is_file():
        return {}
    try:
        content = json.loads(path.read_text())
        cells = content.get("cells", {})
    except (OSError, ValueError, AttributeError):
        return {}  # an unreadable index is rebuilt from the cells' own manifests
    if not isinstance(cells, dict):
        return {}
    if cells and (content.get("scenario"), content.get("parameters")) != (grid.scenario, list(grid.parameters)):
        raise GridError(
            f"sweep.name: {sweep_dir} holds another grid named {grid.name!r} (scenario {content.get('scenario')!r}, "
            f"varying {', '.join(map(str, content.get('parameters') or [])) or 'nothing'}; this one: scenario "
            f"{grid.scenario!r}, varying {', '.join(grid.parameters)}). Running it there would hide that sweep's "
            f"{len(cells)} runs: give this grid another [sweep].name, or another output folder"
        )
    return {run_id: cell for run_id, cell in cells.items() if isinstance(cell, dict)}


def _record_stopped(index: _Index, cells_dir: Path, unfinished: Sequence[CellRun], workers_gone: bool) -> None:
    """On Ctrl-C or SIGTERM: record the status each unfinished cell's own manifest gives (`interrupted` for the one
    that was running in this process), so the index agrees with the cells; cells that never started stay pending.

    With `workers_gone` (a LocalCluster, closed by now: its worker processes were shut down mid-run), a manifest
    still saying `running` is set to `interrupted`, since no process will finish it. A remote cluster's workers
    may still be running their cell, so their manifests are left as they are."""
    from flmarket.files import write_json_atomically

    for run in unfinished:
        path = cells_dir / run.run_id / "manifest.json"
        try:
            manifest = json.loads(path.read_text())
            status = manifest.get("status")
        except (OSError, ValueError, AttributeError):
            continue
        if status == "running" and workers_gone:
            manifest["status"] = status = "interrupted"
            manifest["error"] = "the sweep was stopped while this cell ran, and its dask worker was shut down"
            # the worker never closed the log: what it wrote is in parts and checkpoints the manifest may not list
            # yet, which a reader takes as it does a crashed run's (not as strays left by a closed log)
            manifest["log_closed"] = False
            write_json_atomically(path, manifest)
        if isinstance(status, str) and status != "running":
            index.content["cells"][run.run_id]["status"] = status
            if isinstance(manifest.get("error"), str):
                index.content["cells"][run.run_id]["error"] = manifest["error"]
    index.write()


def execute_cell(run: CellRun, cells_dir: str) -> CellOutcome:
    """Run one cell x seed into `cells_dir/<run_id>/` (a dask task; any leftover of an unfinished run is removed).

    Failures are returned, not raised, so one bad cell never stops the sweep.
    """
    run_dir = Path(cells_dir) / run.run_id
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            if run_dir.exists():
                shutil.rmtree(run_dir)
            from flmarket.sim import runner  # imported here: `flmarket sweep --help` and `validate` need no model

            result = runner.run_scenario(
                run.scenario, output_dir=Path(cells_dir), run_id=run.run_id, show_progress=False
            )
            status, error_text = result.status, ""
        except Exception as error:  # noqa: BLE001 - recorded in the index; the sweep goes on
            status, error_text = "failed", f"{type(error).__name__}: {error}"
    said = tuple(dict.fromkeys(str(warning.message) for warning in caught))
    return CellOutcome(run.run_id, status, True, error_text, time.perf_counter() - started, said)


def execute_cell_in_worker(run: CellRun, cells_dir: str) -> CellOutcome:
    """`execute_cell` in a dask worker. tqdm's default lock is a multiprocessing semaphore, made by the first bar
    (even a hidden one), and a worker stopped mid-cell (an interrupted sweep closes its LocalCluster) never
    releases it: the resource tracker then printed "There appear to be 2 leaked semaphore objects" after every
    Ctrl-C or SIGTERM. A worker's bars are never shown, so a thread lock is all they need."""
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
    return execute_cell(run, cells_dir)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    return value


class _Index:
    """The sweep index `sweep.json`, rewritten atomically whenever a cell changes."""

    def __init__(self, sweep_dir: Path, grid: Grid, runs: Sequence[CellRun]) -> None:
        self.path = sweep_dir / INDEX_FILE
        self.content: dict[str, Any] = {
            "format": INDEX_FORMAT,
            "name": grid.name,
            "description": grid.description,
            "grid_file": str(grid.source) if grid.source else None,
            "scenario": grid.scenario,
            "seeds": list(grid.seeds),
            "base_overrides": _json_value(dict(grid.base_overrides)),
            "parameters": list(grid.parameters),
            "cells_dir": CELLS_DIRECTORY,
            "updated_at": None,
            "cells": {
                run.run_id: {
                    "label": run.label,
                    "seed": run.seed,
                    "overrides": _json_value(dict(run.overrides)),
                    "parameters": _json_value(dict(run.parameters)),
                    "status": "pending",
                    "error": "",
                    "wall_time_s": None,
                }
                for run in runs
            },
        }

    def update(self, outcome: CellOutcome) -> None:
        self.content["cells"][outcome.run_id].update(
            {
                "status": outcome.status,
                "error": outcome.error,
                **({"wall_time_s": outcome.wall_time_s} if outcome.executed else {}),
            }
        )
        self.write()

    def write(self) -> None:
        self.content["updated_at"] = datetime.now(UTC).isoformat()
        from flmarket.files import write_json_atomically

        write_json_atomically(self.path, self.content)


WORKER_START_TIMEOUT_S = 120
SCHEDULER_CONNECT_TIMEOUT_S = 5.0
WATCHDOG_INTERVAL_S = 10.0


def watch_futures(
    pending: set[Any],
    wait_some: Callable[[set[Any], float], tuple[set[Any], set[Any]]],
    has_workers: Callable[[], bool],
    *,
    interval_s: float = WATCHDOG_INTERVAL_S,
    grace_s: float = WORKER_START_TIMEOUT_S,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Any]:
    """Yield futures as they complete, however long each run takes; raise GridError only when workers are lost.

    `wait_some(pending, interval_s)` returns (done, still pending) and must not raise when nothing finished in
    time. Every `interval_s` without a finished future the watchdog asks `has_workers()`: a slow run never ends
    the sweep, but a cluster that has had no worker at all for more than `grace_s` does (the nanny restarts
    crashed workers, so a short gap is forgiven).
    """
    without_workers_since: float | None = None
    while pending:
        done, pending = wait_some(pending, interval_s)
        yield from done
        if done or not pending:
            without_workers_since = None
            continue
        if has_workers():
            without_workers_since = None
        elif without_workers_since is None:
            without_workers_since = clock()
        elif clock() - without_workers_since > grace_s:
            raise GridError(
                f"workers: every dask worker was lost and none came back within {grace_s:g} s; "
                f"{len(pending)} runs unfinished (re-run the sweep to resume, or use --workers 0)"
            )


def _wait_some(pending: set[Any], timeout_s: float) -> tuple[set[Any], set[Any]]:
    """dask's `wait(FIRST_COMPLETED)` bounded by `timeout_s`, which returns (done, pending) instead of raising
    `TimeoutError` when no run finished in time (a run may take hours) or `FuturesCancelledError`."""
    from dask.distributed import wait
    from distributed.client import FuturesCancelledError

    try:
        wait(list(pending), timeout=timeout_s, return_when="FIRST_COMPLETED")
    except (TimeoutError, FuturesCancelledError):
        pass
    done = {future for future in pending if future.status != "pending"}
    return done, pending - done


@contextlib.contextmanager
def _sigint_ignored_by_children() -> Iterator[None]:
    """Start processes that ignore SIGINT (CPython keeps an ignored SIGINT at start-up instead of installing its
    KeyboardInterrupt handler). Ctrl-C reaches the whole process group: each worker and nanny used to print its
    own KeyboardInterrupt traceback; now only this process stops, and it closes the cluster. The main thread
    only (signal.signal's rule); elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _dask_outcomes(
    runs: Sequence[CellRun],
    cells_dir: Path,
    workers: int,
    scheduler: str | None,
    watchdog_interval_s: float = WATCHDOG_INTERVAL_S,
) -> Iterator[CellOutcome]:
    """Submit the runs to dask.distributed and yield their outcomes as they complete."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        cluster = None
        try:
            client = Client(scheduler, timeout=SCHEDULER_CONNECT_TIMEOUT_S)
        except ValueError as error:  # dask's own parse of the address
            raise GridError(
                f"--scheduler: not a dask scheduler address such as tcp://HOST:8786, got {scheduler!r} "
                f"({' '.join(str(error).split())})"
            ) from None
        except (OSError, TimeoutError, TypeError) as error:  # TypeError: a protocol dask cannot open here
            raise GridError(
                f"--scheduler: cannot reach a dask scheduler at {scheduler!r} within {SCHEDULER_CONNECT_TIMEOUT_S:g} s "
                f"({' '.join(str(error).split())})"
            ) from None
    else:
        with _sigint_ignored_by_children():
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                # With no dashboard the scheduler still serves HTTP (health, metrics), on 8787 by default: a
                # second sweep then warned "Port 8787 is already in use", and a user's own dashboard lost the port.
                scheduler_kwargs={"dashboard_address": ":0"},
                silence_logs=logging.ERROR,  # not the nannies' 'still alive after 4 s, killing' at every close
            )
        client = Client(cluster)
    try:
        try:
            client.wait_for_workers(1 if scheduler else workers, timeout=WORKER_START_TIMEOUT_S)
        except TimeoutError:
            raise GridError(
                f"workers: no dask worker came up within {WORKER_START_TIMEOUT_S} s "
                f"({'scheduler ' + scheduler if scheduler else f'LocalCluster of {workers}'}); "
                "try --workers 0 to run in this process"
            ) from None
        futures = {
            client.submit(execute_cell_in_worker, run, str(cells_dir), key=f"flmarket-cell-{run.run_id}", pure=False)
            for run in runs
        }
        for future in watch_futures(
            futures,
            _wait_some,
            lambda: bool(client.scheduler_info().get("workers")),
            interval_s=watchdog_interval_s,
        ):
            run_id = str(future.key).removeprefix("flmarket-cell-")
            try:
                yield future.result()
            except Exception as error:  # noqa: BLE001 - a worker lost mid-run, a cancelled run: recorded, go on
                yield CellOutcome(run_id, "failed", True, f"{type(error).__name__}: {error}")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_sweep(
    grid: str | Path | Grid,
    *,
    workers: int = 2,
    scheduler: str | None = None,
    output_dir: str | Path = DEFAULT_OUTPUT_DIR,
    show_progress: bool = True,
    watchdog_interval_s: float = WATCHDOG_INTERVAL_S,
) -> SweepResult:
    """Validate the grid and every cell, then run the missing cells on dask and record them in `sweep.json`.

    `workers` sizes the LocalCluster (processes, one thread each); `scheduler` connects to an existing cluster
    instead (its workers must see `output_dir`); `workers=0` runs the cells one after another in this process,
    without dask (for debugging). Cells already finished for the same scenario are skipped.
    Waiting never gives up on a slow run: every `watchdog_interval_s` without a finished run the watchdog only
    checks that the cluster still has workers (`watch_futures`).
    """
    from flmarket.sim.runner import terminate_as_interrupt

    with terminate_as_interrupt():  # SIGTERM stops the sweep as Ctrl-C does: the cluster closes, the index is right
        return _run_sweep(grid, workers, scheduler, output_dir, show_progress, watchdog_interval_s)


def _run_sweep(
    grid: str | Path | Grid,
    workers: int,
    scheduler: str | None,
    output_dir: str | Path,
    show_progress: bool,
    watchdog_interval_s: float,
) -> SweepResult:
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise GridError(f"workers: must be an integer >= 0 (0 = in this process), got {workers!r}")
    if not watchdog_interval_s > 0 or not math.isfinite(watchdog_interval_s):
        raise GridError(f"watchdog_interval_s: must be a finite number of seconds > 0, got {watchdog_interval_s!r}")
    grid = grid if isinstance(grid, Grid) else load_grid(grid)
    runs = plan(grid)
    sweep_dir = Path(output_dir) / grid.name
    cells_dir = (sweep_dir / CELLS_DIRECTORY).resolve()  # absolute: workers may run elsewhere
    from flmarket.sim.runner import first_missing_directory

    for path, is_folder in ((sweep_dir, True), (sweep_dir / INDEX_FILE, False), (sweep_dir / CELLS_DIRECTORY, True)):
        if path.exists() and path.is_dir() != is_folder:  # found before anything is created, not by a failed write
            wanted = "a folder" if is_folder else "a file (the sweep's index)"
            raise GridError(f"out: {path} must be {wanted}; it is {'a file' if is_folder else 'a folder'}")
    earlier = _earlier_cells(sweep_dir, grid)
    planned = {run.run_id for run in runs}
    left_out = [
        run_id for run_id, cell in earlier.items() if run_id not in planned and cell.get("status") == "finished"
    ]
    if left_out:  # e.g. other --seeds: the sweep is what this command plans, not what the folder held before
        warnings.warn(
            f"{sweep_dir}: {len(left_out)} finished run(s) of an earlier plan of this grid (other seeds, values or "
            f"overrides) are not in this one: they stay in {CELLS_DIRECTORY}/ but leave the index, so summaries, "
            "reports and queries of the sweep no longer see them (running the earlier command again brings them "
            "back, without running them again)",
            UserWarning,
            stacklevel=3,
        )
    created = first_missing_directory(sweep_dir)  # removed again if the sweep fails before any run ends
    cells_dir.mkdir(parents=True, exist_ok=True)
    index = _Index(sweep_dir, grid, runs)
    outcomes: dict[str, CellOutcome] = {}
    pending: list[CellRun] = []
    for run in runs:
        problem = _verification_problem(cells_dir / run.run_id, run.scenario)
        if problem == "":
            outcomes[run.run_id] = CellOutcome(run.run_id, "finished", False)
            cell = index.content["cells"][run.run_id]
            cell["status"] = "finished"
            earlier_wall = earlier.get(run.run_id, {}).get("wall_time_s")  # the cell's, measured when it ran
            cell["wall_time_s"] = (
                earlier_wall if earlier_wall is not None else _manifest_wall_time(cells_dir / run.run_id)
            )
        else:
            if problem:  # said, so that a resume that runs a 'finished' cell again is not a surprise
                warnings.warn(
                    f"{run.run_id}: its manifest says finished, but {problem}; running it again",
                    UserWarning,
                    stacklevel=3,
                )
            pending.append(run)
    index.write()
    if pending:
        stream = (
            _dask_outcomes(pending, cells_dir, workers, scheduler, watchdog_interval_s)
            if workers or scheduler
            else (execute_cell(run, str(cells_dir)) for run in pending)
        )
        with tqdm(
            total=len(runs),
            initial=len(runs) - len(pending),
            unit="cell",
            desc=grid.name,
            disable=not show_progress or not sys.stderr.isatty(),  # a bar only on a terminal
            leave=False,
        ) as bar:
            try:
                for outcome in stream:
                    outcomes[outcome.run_id] = outcome
                    index.update(outcome)
                    bar.update(1)
                    for message in outcome.warnings:
                        warnings.warn(f"{outcome.run_id}: {message}", UserWarning, stacklevel=1)
            except KeyboardInterrupt:
                if isinstance(stream, Generator):
                    stream.close()  # a LocalCluster's workers are shut down here, if they were not already
                unfinished = [run for run in pending if run.run_id not in outcomes]
                _record_stopped(index, cells_dir, unfinished, workers_gone=bool(workers) and not scheduler)
                raise
            except Exception:
                if created is not None and len(outcomes) == len(runs) - len(pending):
                    shutil.rmtree(created, ignore_errors=True)  # nothing ran (e.g. no scheduler): leave nothing
                raise
    return SweepResult(sweep_dir, grid.name, tuple(outcomes[run.run_id] for run in runs))


# ------------------------------------------------------------------------------------------ command line


def _handler(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    if args.scheduler is not None and args.workers is not None:
        raise GridError(
            f"--workers: sizes a local cluster, but --scheduler {args.scheduler} runs the cells on that scheduler's "
            "workers; give one of them"
        )
    workers = args.workers if args.workers is not None else default_worker_count()
    grid = load_grid(args.grid)
    if args.set or args.seeds is not None:
        grid = with_options(
            grid,
            seeds=parse_seeds_option(args.seeds) if args.seeds is not None else None,
            overrides=_set_options(args.set or []),
        )
    result = run_sweep(
        grid, workers=workers, scheduler=args.scheduler, output_dir=args.out, show_progress=not args.quiet
    )
    if args.quiet:
        print(result.sweep_dir)
    else:
        index = json.loads((result.sweep_dir / INDEX_FILE).read_text())
        table = Table(
            title=f"flmarket sweep: {result.name} ({len(result.outcomes)} runs, "
            f"{len(result.executed)} run now, {len(result.skipped)} already finished)"
        )
        for column in ("run id", "label", "seed", "status", "error"):
            table.add_column(column, overflow="fold")  # wrapped, never cut: run ids differ in their last characters
        for outcome in result.outcomes:
            cell = index["cells"][outcome.run_id]
            table.add_row(outcome.run_id, cell["label"], str(cell["seed"]), outcome.status, outcome.error)
        Console().print(table)
        print(f"sweep directory: {result.sweep_dir}")
    return 0 if result.ok else 1


def _set_options(items: Sequence[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` options as dotted-path overrides (values are TOML, as for `flmarket run --set`)."""
    from flmarket.sim.cli import _parse_value, add_override

    overrides: dict[str, Any] = {}
    for item in items:
        key, separator, raw = item.partition("=")
        if not separator or not key.strip():
            raise GridError(f"--set: expected KEY=VALUE (e.g. providers.count=50), got {item!r}")
        add_override(overrides, key.strip(), _parse_value(raw.strip()))
    return overrides


def default_worker_count() -> int:
    """`flmarket sweep`'s local workers when --workers is not given: the cores, from 1 to 4."""
    return max(1, min(os.cpu_count() or 1, 4))


def scheduler_address(raw: str) -> str:
    """An argparse type: a dask scheduler address over TCP. tls:// needs a security context and ucx:// the ucx
    package, which the command line cannot give (dask raised a TypeError traceback for both)."""
    address = raw.strip()
    scheme, separator, rest = address.partition("://")
    if not separator:
        scheme, rest = "tcp", address
    if scheme != "tcp" or not rest or rest.startswith(":"):
        raise argparse.ArgumentTypeError(
            f"must be a dask scheduler address over TCP, such as tcp://HOST:8786 or HOST:8786, got {raw!r}"
            + (" (tls:// and other protocols need settings the command line cannot give)" if separator else "")
        )
    return f"tcp://{rest}"


def _keys_epilog() -> str:
    """The keys a grid may vary, grouped by section, for `flmarket sweep --help`."""
    sections: dict[str, list[str]] = {}
    for path, kind in sweepable_keys().items():
        section, _, rest = path.partition(".")
        sections.setdefault(section, []).append(f"{rest} ({kind})")
    lines = []
    for section, keys in sections.items():  # greedy wrap that never splits a key from its type
        line = f"  {section}: "
        for position, key in enumerate(keys):
            item = key + ("," if position < len(keys) - 1 else "")
            if len(line) + len(item) > 110 and not line.endswith(": "):
                lines.append(line.rstrip())
                line = "      "
            line += item + " "
        lines.append(line.rstrip())
    return (
        f"bundled grids: {', '.join(bundled_grids()) or 'none'}\n\n"
        "keys a grid ([grid], [[cells]] overrides, [sweep].overrides) or --set may vary, by section; a value "
        "replaces\nthe scenario's value whole (a table such as providers.strategy_mix is not merged):\n"
        + "\n".join(lines)
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `flmarket sweep GRID [--set KEY=VALUE] [--seeds SEEDS] [--workers N] [--scheduler ADDRESS] [--out DIR]
    [--quiet]`."""
    default_workers = default_worker_count()
    parser = subparsers.add_parser(
        "sweep",
        help="run a grid of scenarios x seeds on dask",
        description=textwrap.fill(
            "Run every cell x seed of a grid file (or a bundled grid by name) as one seeded run under "
            "<out>/<sweep name>/cells/<run_id>/, on a local dask cluster or an existing scheduler. The index "
            "<out>/<sweep name>/sweep.json records each run's status; re-running resumes, skipping finished runs "
            "(and re-running any whose parts fail verification). Read the results with flmarket.load_sweep(dir) "
            "or flmarket.analysis.sweep_summary(dir).",
            width=100,
        ),
        epilog=_keys_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("grid", help="grid file (TOML) or the name of a bundled grid, e.g. population_mix")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a scenario key in every cell, e.g. --set run.tasks=20 (repeatable; values are TOML; "
        "not a key the grid varies)",
    )
    parser.add_argument(
        "--seeds",
        metavar="SEEDS",
        help="the seeds of every cell instead of [sweep].seeds: a comma-separated list (1,2,3; one seed: 7,) "
        "or a count (5 = seeds 0-4)",
    )
    parser.add_argument(
        "--workers",
        type=integer_in(0),
        default=None,
        help=f"local dask worker processes, one thread each (default: {default_workers}; "
        "0 = run in this process without dask; not with --scheduler)",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        type=scheduler_address,
        help="address of a running dask scheduler (tcp://HOST:PORT, or HOST:PORT) instead of a local cluster",
    )
    parser.add_argument(
        "--out", type=folder, default=DEFAULT_OUTPUT_DIR, help=f"output directory (default: {DEFAULT_OUTPUT_DIR})"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or table; print the sweep directory")
    parser.set_defaults(func=_handler)
