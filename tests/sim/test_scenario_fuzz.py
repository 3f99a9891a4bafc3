"""Fuzzing the scenario schema (issue 13 item 9): hostile values for any key of a small valid scenario.

Hypothesis puts wrong types, extremes, NaN, infinities, huge sizes and bad strings at one to three keys drawn
from the schema (`sim/config.py`), writes the scenario as TOML and runs `flmarket run` on it. Each scenario
ends in one of two ways: a one-line error per problem with exit status 2 and nothing written, or a run that
finishes within bounded work. The base scenario's own `[limits]` keep a valid run small (at most 20 providers,
3 tasks, 2,000 samples); a valid scenario over the fuzz's budget for the keys that have no limit (committee size,
rounds) is validated, not run. `flmarket validate` must agree with `run`.
"""

from __future__ import annotations

import json
import math
import signal
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from flmarket.sim.cli import main
from flmarket.sim.config import STRATEGY_NAMES, Distribution, Scenario, ScenarioError, expected_end_s, parse_scenario

BASE: dict[str, Any] = {
    "run": {"name": "fuzz", "tasks": 2, "seed": 3},
    "providers": {"count": 8},
    "network": {"degree": 2},
    "committee": {"size": 4, "candidates": 5},
    "learning": {"rounds_per_task": 2},
    "limits": {"providers": 20, "tasks": 3, "samples": 2000, "overlay_edges": 200},
}
HANG_GUARD_S = 180  # a run of the fuzz's size takes a few seconds; this long means it does not end
MAX_EVENTS = 200_000


def _literal_choices(model: type[BaseModel] = Scenario) -> set[str]:
    """Every string a Literal field of the schema allows (topologies, backends, modes, ...)."""
    choices: set[str] = set()
    for info in model.model_fields.values():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            choices |= _literal_choices(annotation)
            continue
        for part in (annotation, *typing.get_args(annotation)):
            if typing.get_origin(part) is typing.Literal:
                choices |= {choice for choice in typing.get_args(part) if isinstance(choice, str)}
    return choices


def _schema_keys(model: type[BaseModel] = Scenario, prefix: str = "") -> list[str]:
    """Every leaf key of the schema as a dotted path (a distribution is a leaf; so are its fields)."""
    keys = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation is not Distribution:
            keys.extend(_schema_keys(annotation, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
            if annotation is Distribution:
                keys.extend(f"{prefix}{name}.{field}" for field in Distribution.model_fields)
    return keys


KEYS = [*_schema_keys(), "run.unknown_key", "providers.strategy_mix.ALLD", "nonsense"]

BAD_STRINGS = ["", "\x00", "../../x", "/elsewhere/x", "a\u202eb", "x" * 300, "é" * 150, "auto", "exact", "inf"]
EXTREMES = [0, 1, -1, 2, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63), 10**7, 10**9, 10**12]
FLOAT_EXTREMES = [0.0, -0.0, 1e-9, 1e-300, 5e-324, 0.5, 1.0, 1e9, 1e308, -1e308, math.inf, -math.inf, math.nan]
scalars = st.one_of(
    st.sampled_from(EXTREMES),
    st.integers(),
    st.sampled_from(FLOAT_EXTREMES),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from(BAD_STRINGS),
    st.text(max_size=12),
)
tables = st.one_of(
    st.dictionaries(st.sampled_from([*STRATEGY_NAMES, "XYZ"]), st.floats(-1, 2) | st.integers(-5, 5), max_size=4),
    st.fixed_dictionaries(
        {"dist": st.sampled_from(["constant", "uniform", "normal", "lognormal", "exponential", "beta"])},
        optional={name: st.sampled_from(FLOAT_EXTREMES) | st.floats(-10, 10) for name in ("value", "low", "high")},
    ),
)
plausible = st.one_of(  # values a field may well accept, so that some mutated scenarios run
    st.sampled_from([1, 2, 3, 4, 0.05, 0.1, 0.5, 0.9, 1.0, 2.5, 10.0, 100.0, True, False]),
    st.sampled_from(sorted(_literal_choices())),
    st.sampled_from([{"ALLC": 0.5, "ALLD": 0.5}, {"TFT": 1.0}, {"dist": "uniform", "low": 0.5, "high": 1.5}]),
)
hostile = st.one_of(scalars, tables, st.lists(st.integers(-3, 5) | st.sampled_from(BAD_STRINGS), max_size=3))


def _annotation(dotted: str) -> Any:
    """The schema's annotation of a dotted key (None for keys the schema does not have)."""
    model: Any = Scenario
    annotation: Any = None
    for part in dotted.split("."):
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return None
        annotation = model = fields[part].annotation
    return annotation


def _typed(dotted: str) -> st.SearchStrategy[Any]:
    """Small values of the key's own type, so that a good share of the mutated scenarios are valid and run."""
    annotation = _annotation(dotted)
    members = [annotation, *typing.get_args(annotation)]
    literals = [
        choice for part in members if typing.get_origin(part) is typing.Literal for choice in typing.get_args(part)
    ]
    if annotation is Distribution:
        return st.sampled_from([0.5, 1.0, 3.0, {"dist": "uniform", "low": 0.5, "high": 1.5}])
    if bool in members:
        return st.booleans()
    if literals:
        return st.sampled_from(literals)
    if int in members:
        return st.integers(0, 6)
    if float in members:
        return st.sampled_from([0.0, 0.01, 0.2, 0.5, 1.0, 2.0, 10.0, 60.0])
    if annotation is str:
        return st.sampled_from(["fuzz", "a-b_c.d", "x"])
    if "strategy_mix" in dotted or "strategy_counts" in dotted:
        return st.sampled_from([{"ALLC": 0.5, "ALLD": 0.5}, {"TFT": 1.0}, {"ALLC": 4, "ALLD": 4}])
    return plausible


def _mutation(key: str) -> st.SearchStrategy[tuple[str, Any]]:
    """A value for `key`: half the time one of its own type, else a plausible or a hostile one."""
    return st.tuples(st.just(key), st.one_of(_typed(key), _typed(key), plausible, hostile))


mutations = st.lists(
    st.sampled_from(KEYS).flatmap(_mutation),
    min_size=1,
    max_size=3,
)


def _toml_value(value: Any) -> str:
    """A TOML literal for the values the fuzz draws (strings escaped, so NUL and control characters survive)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in value) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return "{" + ", ".join(f"{_toml_key(key)} = {_toml_value(item)}" for key, item in value.items()) + "}"


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").isalnum() and key.isascii() else _toml_value(key)


def _toml(data: dict[str, Any]) -> str:
    lines = [f"{_toml_key(key)} = {_toml_value(value)}" for key, value in data.items() if not isinstance(value, dict)]
    for section, table in data.items():
        if isinstance(table, dict):
            lines.append(f"[{_toml_key(section)}]")
            lines.extend(f"{_toml_key(key)} = {_toml_value(value)}" for key, value in table.items())
    return "\n".join(lines) + "\n"


def _mutated(changes: list[tuple[str, Any]]) -> dict[str, Any]:
    data = json.loads(json.dumps(BASE))
    for dotted, value in changes:
        *parents, leaf = dotted.split(".")
        target = data
        for part in parents:
            existing = target.get(part)
            if not isinstance(existing, dict):
                existing = target[part] = {}
            target = existing
        target[leaf] = value
    return data


def _within_budget(scenario: Scenario) -> bool:
    """Whether a valid scenario is small enough to run here: within the base's limits (a mutation may raise a
    limit) and small in the keys `[limits]` does not cover."""
    end = expected_end_s(scenario)
    return (
        scenario.providers.count + scenario.providers.arrival_rate_per_s * end <= BASE["limits"]["providers"]
        and (scenario.run.tasks or math.inf) <= BASE["limits"]["tasks"]
        and end / scenario.run.sample_interval_s <= BASE["limits"]["samples"]
        and scenario.committee.candidates <= 12
        and scenario.learning.rounds_per_task <= 3
        and scenario.learning.backend == "surrogate"
        and scenario.mechanism.shapley_max_evaluations <= 100_000
        and expected_end_s(scenario) <= 1e6
    )


@contextmanager
def _hang_guard(seconds: int) -> Iterator[None]:
    def hang(signum: int, frame: object) -> None:
        raise AssertionError(f"the run did not finish within {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_info:
        return int(exit_info.code or 0)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=mutations)
def test_hostile_scenarios_are_refused_in_one_line_or_run_to_a_bounded_end(changes, tmp_path_factory, capsys) -> None:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    scenario_file = folder / "scenario.toml"
    data = _mutated(changes)
    scenario_file.write_text(_toml(data), encoding="utf-8")
    out = folder / "runs"
    try:
        scenario = parse_scenario(data)
    except ScenarioError:
        scenario = None
    if scenario is not None and not _within_budget(scenario):
        assert _exit_code(["validate", str(scenario_file)]) in (0, 2)  # validated, not run
        capsys.readouterr()
        return
    with _hang_guard(HANG_GUARD_S):
        code = _exit_code(["run", str(scenario_file), "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    if code == 2:
        lines = captured.err.strip().splitlines()
        assert 1 <= len(lines) <= 11 and all(line.startswith("flmarket: error: ") for line in lines), captured.err
        assert not out.exists()
        assert _exit_code(["validate", str(scenario_file)]) == 2  # validate refuses what run refuses
    else:
        assert code == 0, captured.err
        (run_dir,) = out.iterdir()
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["status"] == "finished"
        assert manifest["tasks_finished"] <= scenario.limits.tasks and manifest["events"] <= MAX_EVENTS
        assert _exit_code(["validate", str(scenario_file)]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("value", ["a\x00b", "a\u202eb", 'quote"and\\back', "é"])
def test_the_fuzz_writes_strings_tomllib_reads_back(value) -> None:
    import tomllib

    assert tomllib.loads(_toml({"run": {"name": value}}))["run"]["name"] == value


def test_the_fuzz_reaches_every_section() -> None:
    assert {key.split(".")[0] for key in KEYS} >= {
        "run", "network", "providers", "requesters", "committee", "learning", "mechanism", "evolution",
        "zero_determinant", "faults", "limits",
    }  # fmt: skip
