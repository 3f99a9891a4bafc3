"""Scenario validation: every bad input is one clear line naming the field, the value and the rule."""

from __future__ import annotations

import pytest

from flmarket.sim.config import ScenarioError, apply_overrides, bundled_scenarios, load_scenario, parse_scenario

MINIMAL = {"run": {"tasks": 3}}


def _error(data: dict) -> str:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(data)
    return str(caught.value)


def test_every_bundled_scenario_is_valid() -> None:
    names = bundled_scenarios()
    assert "quickstart" in names
    for name in names:
        assert load_scenario(name).run.name


def test_unknown_key_names_its_path() -> None:
    assert _error({"run": {"tasks": 3, "sed": 1}}) == (
        "run.sed: unknown key (check the spelling; see `flmarket validate --help`)"
    )
    assert _error({"run": {"tasks": 3}, "provider": {}}).startswith("provider: unknown key")


def test_wrong_type_names_field_and_value() -> None:
    message = _error({"run": {"tasks": "many"}})
    assert message.startswith("run.tasks: ") and message.endswith("got 'many'")


def test_out_of_range_distribution_parameter() -> None:
    data = {"run": {"tasks": 3}, "providers": {"privacy_budget": {"dist": "uniform", "low": -1, "high": 2}}}
    assert _error(data) == "providers.privacy_budget.low: must be > 0 (every draw must be), got -1"
    assert _error({"run": {"tasks": 3}, "providers": {"privacy_budget": -1}}) == (
        "providers.privacy_budget.value: must be > 0 (every draw must be), got -1"
    )


def test_out_of_range_scalar() -> None:
    message = _error({"run": {"tasks": 3}, "committee": {"fee_ratio": 1.5}})
    assert message.startswith("committee.fee_ratio: ") and "1.5" in message


def test_cross_field_rules() -> None:
    assert _error({"run": {}}).startswith("run.horizon_s: give horizon_s")
    assert _error({"run": {"tasks": 3}, "providers": {"count": 5}, "network": {"degree": 3}}) == (
        "network.degree: degree * providers.count must be even for a random regular graph, got 3 * 5"
    )
    assert _error({"run": {"tasks": 3}, "providers": {"strategy_mix": {"ALC": 1}}}).startswith(
        "providers.strategy_mix.ALC: unknown strategy"
    )
    assert _error({"run": {"tasks": 3}, "providers": {"count": 6, "strategy_counts": {"ALLC": 3}}}) == (
        "providers.strategy_counts: must add up to providers.count (6), got 3"
    )
    assert _error({"run": {"tasks": 3}, "committee": {"size": 7, "candidates": 3}}) == (
        "committee.candidates: must be >= size (7), got 3"
    )


def test_missing_and_malformed_files(tmp_path) -> None:
    with pytest.raises(ScenarioError, match="file not found"):
        load_scenario(str(tmp_path / "absent.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nseed = 1\n")
    with pytest.raises(ScenarioError, match="malformed TOML"):
        load_scenario(str(bad))
    with pytest.raises(ScenarioError, match="not a bundled scenario"):
        load_scenario("no-such-scenario")


def test_overrides_apply_by_dotted_path() -> None:
    merged = apply_overrides({"run": {"tasks": 3}}, {"run.seed": 9, "providers.count": 12})
    scenario = parse_scenario(merged)
    assert scenario.run.seed == 9 and scenario.providers.count == 12
    with pytest.raises(ScenarioError, match="not a table"):
        apply_overrides({"run": {"tasks": 3}}, {"run.tasks.x": 1})


def test_distributions_sample_their_support() -> None:
    import numpy as np

    scenario = parse_scenario({**MINIMAL, "providers": {"unit_revenue": {"dist": "uniform", "low": 2, "high": 3}}})
    draws = scenario.providers.unit_revenue.sample(np.random.default_rng(0), 1000)
    assert draws.min() >= 2 and draws.max() <= 3
    assert scenario.providers.unit_revenue.expected() == 2.5
