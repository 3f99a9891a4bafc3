"""Scenario validation: every bad input is one clear line naming the field, the value and the rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flmarket.sim.config import (
    ScenarioError,
    apply_overrides,
    bundled_scenarios,
    inert_settings,
    load_scenario,
    parse_scenario,
)

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
    assert _error({"run": {"tasks": 3, "sed": 1}}) == "run.sed: unknown key; did you mean run.seed?"
    assert _error({"run": {"tasks": 3}, "provider": {}}) == "provider: unknown key; did you mean providers?"
    assert _error({"run": {"tasks": 3}, "learning": {"thet1": 1.0}}) == (
        "learning.thet1: unknown key; did you mean learning.theta1?"
    )
    far = _error({"run": {"tasks": 3}, "committee": {"zzz": 1}})  # nothing close: the section's keys
    assert far.startswith("committee.zzz: unknown key (the keys of committee: size, ") and "verification" in far
    nested = _error({"run": {"tasks": 3}, "providers": {"participation_cost": {"mod": "window"}}})
    assert nested == "providers.participation_cost.mod: unknown key; did you mean providers.participation_cost.mode?"


def test_wrong_type_names_field_and_value() -> None:
    message = _error({"run": {"tasks": "many"}})
    assert message.startswith("run.tasks: ") and message.endswith("got 'many'")


def test_out_of_range_distribution_parameter() -> None:
    data = {"run": {"tasks": 3}, "providers": {"privacy_budget": {"dist": "uniform", "low": -1, "high": 2}}}
    assert _error(data) == "providers.privacy_budget.low: must be > 0 (every draw must be), got -1"
    assert _error({"run": {"tasks": 3}, "providers": {"privacy_budget": -1}}) == (
        "providers.privacy_budget.value: must be > 0 (every draw must be), got -1"
    )


def test_a_strictly_positive_field_takes_a_lognormal_prior_and_says_why_not_an_exponential() -> None:
    """A log-normal's draws are positive; its practical minimum, exp(mean - 10 std), is checked as the upper bound
    is checked ten standard deviations up. An exponential's draws reach down to 0: refused, saying so (the
    message used to say "got 0" of a mean the user set to 2)."""
    base = {"run": {"tasks": 3}}
    lognormal = {"dist": "lognormal", "mean": 0.5, "std": 0.5}
    scenario = parse_scenario({**base, "providers": {"privacy_budget": lognormal, "cpu_frequency": lognormal}})
    draws = scenario.providers.privacy_budget.sample(np.random.default_rng(0), 10_000)
    assert (draws > 0).all() and np.mean(np.log(draws)) == pytest.approx(0.5, abs=0.02)
    assert scenario.providers.privacy_budget.lower_bound() == ("mean", pytest.approx(math.exp(0.5 - 5.0)))
    exponential = {**base, "providers": {"privacy_budget": {"dist": "exponential", "mean": 2.0}}}
    assert _error(exponential) == (
        "providers.privacy_budget.dist: 'exponential' draws values down to 0, and every draw of this field must be "
        "> 0; use 'lognormal' (mean and std of the logarithm), 'uniform' or 'constant'"
    )
    wide = {**base, "providers": {"privacy_budget": {"dist": "lognormal", "mean": 0.5, "std": 5.0}}}
    assert _error(wide).startswith("providers.privacy_budget.std: exp(mean - 10 std) = 3.17997e-22, the smallest")
    latency = parse_scenario({**base, "network": {"latency_s": {"dist": "exponential", "mean": 0.05}}})
    assert latency.network.latency_s.dist == "exponential"  # a field >= 0 takes it


def test_a_normal_prior_is_checked_ten_standard_deviations_down_as_it_is_up() -> None:
    """The README lists `normal`, but its lower bound was -inf, so every field (all have a lower bound) refused
    it, blaming the mean ("must be > 0 (every draw must be), got -inf"), even with std = 0."""
    base = {"run": {"tasks": 3}}
    narrow = {"dist": "normal", "mean": 0.05, "std": 0.001}
    scenario = parse_scenario({**base, "network": {"latency_s": narrow}, "providers": {"unit_revenue": 1.0}})
    assert scenario.network.latency_s.lower_bound() == ("mean", pytest.approx(0.04))
    assert scenario.network.latency_s.upper_bound() == ("mean", pytest.approx(0.06))
    point = parse_scenario({**base, "providers": {"unit_revenue": {"dist": "normal", "mean": 1.0, "std": 0.0}}})
    assert point.providers.unit_revenue.sample(np.random.default_rng(0)) == 1.0
    wide = {**base, "providers": {"unit_revenue": {"dist": "normal", "mean": 1.0, "std": 0.2}}}
    assert _error(wide) == (
        "providers.unit_revenue.std: mean - 10 std = -1, the smallest practical draw, must be > 0 (every draw of "
        "this field must be); got mean = 1, std = 0.2"
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


# -- strict types, finite ranges, resource limits (issue 13 items 6 and 8) -----------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("run", "tasks", True, "run.tasks: must be an integer, got true"),
        ("run", "tasks", 3.0, "run.tasks: must be an integer, got 3.0"),
        ("run", "seed", "7", "run.seed: must be an integer, got '7'"),
        ("evolution", "enabled", "yes", "evolution.enabled: must be true or false, got 'yes'"),
        ("providers", "count", 1e9, "providers.count: must be an integer, got 1000000000.0"),
        ("committee", "fee_ratio", float("nan"), "committee.fee_ratio: must be a finite number (not inf or nan)"),
        ("requesters", "arrival_rate_per_s", float("inf"), "requesters.arrival_rate_per_s: must be a finite number"),
        ("learning", "round_duration_s", float("inf"), "learning.round_duration_s: must be a finite number"),
        ("run", "seed", 2**63, "run.seed: input should be less than or equal to 9223372036854775807"),
        ("run", "seed", -1, "run.seed: input should be greater than or equal to 0"),
        ("zero_determinant", "target", "best", 'zero_determinant.target: must be a number in [-1e+09, 1e+09] or "larg'),
        ("zero_determinant", "target", float("inf"), "zero_determinant.target: must be a finite number"),
        ("zero_determinant", "target", True, "zero_determinant.target: must be a number, got true"),
        ("zero_determinant", "mode", "clipped", "zero_determinant.mode: input should be 'auto', 'exact' or 'paper'"),
        ("zero_determinant", "phi_scale", 0, "zero_determinant.phi_scale: input should be greater than or equal to"),
        ("zero_determinant", "target", 10**400, 'zero_determinant.target: must be within [-1e+09, 1e+09] or "largest"'),
        ("zero_determinant", "target", 1e308, 'zero_determinant.target: must be within [-1e+09, 1e+09] or "largest"'),
        ("zero_determinant", "phi_scale", 1.01, "zero_determinant.phi_scale: input should be less than or equal to 1"),
    ],
)
def test_integers_are_strict_and_numbers_finite(section, key, value, expected) -> None:
    data = {"run": {"tasks": 3}}
    data.setdefault(section, {})[key] = value
    message = _error(data)
    assert message.startswith(expected) and "\n" not in message


def test_zero_determinant_targets_are_the_largest_or_a_number() -> None:
    assert parse_scenario({"run": {"tasks": 3}}).zero_determinant.welfare_target is None
    section = parse_scenario({"run": {"tasks": 3}, "zero_determinant": {"target": 2}}).zero_determinant
    assert section.target == 2.0 and isinstance(section.target, float) and section.welfare_target == 2.0


def test_the_z_test_and_compromised_timers_need_a_signed_market() -> None:
    """Both would silently do nothing in an unsigned market (no certificate is checked, no timer exists)."""
    unsigned = {"run": {"tasks": 3}, "committee": {"verification": "unsigned", "poet_z_test": True}}
    assert _error(unsigned).startswith("committee.poet_z_test: CheckTimer's z-test judges PoET certificates")
    faults = {"run": {"tasks": 3}, "committee": {"verification": "unsigned"}, "faults": {"compromised_timers": 1}}
    assert _error(faults).startswith("faults.compromised_timers: an unsigned market has no trusted timers")
    short = {"run": {"tasks": 3}, "committee": {"poet_z_window": 3}}
    assert _error(short).startswith("committee.poet_z_window: must be >= 4: the z-test rejects only an owner seen more")
    signed = parse_scenario(
        {"run": {"tasks": 3}, "committee": {"poet_z_test": True}, "faults": {"compromised_timers": 1}}
    )
    assert signed.committee.poet_z_window == 50 and signed.faults.compromised_wait_share == 0.1


def test_the_largest_seed_is_accepted() -> None:
    assert parse_scenario({"run": {"tasks": 3, "seed": 2**63 - 1}}).run.seed == 2**63 - 1


def test_magnitudes_are_bounded_so_products_stay_finite() -> None:
    assert _error({**MINIMAL, "providers": {"unit_revenue": 1e308}}) == (
        "providers.unit_revenue.value: must be within +-1e+09, got 1e+308"
    )
    assert _error({**MINIMAL, "requesters": {"budget": 1e308}}).startswith("requesters.budget.value: must be within")
    lognormal = {"dist": "lognormal", "mean": 30.0, "std": 1.0}  # exp(30 + 10) is far above 1e9
    assert _error({**MINIMAL, "requesters": {"budget": {"dist": "uniform", "low": 1, "high": 2e9}}}).startswith(
        "requesters.budget.high: must be within"
    )
    assert _error({**MINIMAL, "network": {"latency_s": lognormal}}).startswith(
        "network.latency_s.mean: must be <= 1e+06 (every draw must be)"
    )
    assert _error({**MINIMAL, "providers": {"privacy_budget": 1e-12}}).startswith(
        "providers.privacy_budget.value: must be > 0 and at least 1e-09"
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"run": {"horizon_s": 1e12}}, "run.horizon_s: with no run.tasks, about 10,000,000,000 tasks"),
        ({"run": {"tasks": 3, "sample_interval_s": 1e-9}}, "run.sample_interval_s: about 300,000,000,000 samples"),
        ({"run": {"tasks": 3}, "providers": {"count": 10**7}}, "providers.count: 10,000,000 is over limits.providers"),
        ({"run": {"tasks": 10**7}}, "run.tasks: 10,000,000 is over limits.tasks = 1,000,000"),
        (
            {"run": {"tasks": 3}, "providers": {"arrival_rate_per_s": 1e6}},
            "providers.arrival_rate_per_s: 10 providers at the start (providers.count) and about 300,000,000 joining",
        ),
        (  # at the limit, plus one joiner: it used to say "about 0 providers join"
            {"run": {"tasks": 1}, "providers": {"count": 100_000, "arrival_rate_per_s": 0.001}},
            "providers.arrival_rate_per_s: 100,000 providers at the start (providers.count) and about 1 joining",
        ),
        (
            {"run": {"tasks": 3}, "requesters": {"arrival_rate_per_s": 1e6}},
            "requesters.arrival_rate_per_s: about 90,000,000 requesters",
        ),
        (
            {"run": {"tasks": 3}, "providers": {"count": 50_000}, "network": {"topology": "complete"}},
            "network.topology: a complete overlay of 50,000 providers has about 1,249,975,000 edges",
        ),
    ],
)
def test_resource_sized_values_have_limits_that_say_how_to_raise_them(data, expected) -> None:
    message = _error(data)
    assert message.startswith(expected) and "raise" in message and "limits." in message


def test_a_limit_can_be_raised() -> None:
    data = {"run": {"tasks": 3, "sample_interval_s": 1e-4}}  # 3 tasks x 100 s (1 / 0.01 per s) / 0.1 ms
    assert "about 3,000,000 samples" in _error(data)
    assert parse_scenario({**data, "limits": {"samples": 5_000_000}}).limits.samples == 5_000_000
    assert "limits.samples = 1,000" in _error({**data, "limits": {"samples": 1_000}})


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("/elsewhere/x", "without '/'"),
        ("../../x", "must not start with '.'"),
        ("a/b", "without '/'"),
        ("a\\b", "without '/'"),
        ("", "non-empty"),
        ("a\x00b", "control"),
        ("a\x1bb", "control"),
        ("a\u202eb", "bidirectional"),
        ("x" * 201, "at most 200 bytes"),
        ("é" * 101, "at most 200 bytes"),
    ],
)
def test_run_name_must_be_a_safe_directory_name(name, rule) -> None:
    message = _error({"run": {"tasks": 3, "name": name}})
    assert message.startswith("run.name: ") and rule in message and "\n" not in message


def test_mixes_must_sum_to_one_and_counts_be_known_and_non_negative() -> None:
    assert _error({**MINIMAL, "providers": {"strategy_mix": {"ALLC": 0.25, "ALLD": 0.25}}}).startswith(
        "providers.strategy_mix: shares must sum to 1 (within 1e-09), sums to 0.5"
    )
    assert "sums to 1.1" in _error({**MINIMAL, "providers": {"strategy_mix": {"ALLC": 0.5, "ALLD": 0.6}}})
    assert parse_scenario({**MINIMAL, "providers": {"strategy_mix": {"ALLC": 0.8, "ALLD": 0.1, "TFT": 0.1}}})
    counts = {"count": 30, "strategy_counts": {"ALLC": 40, "ALLD": -10}}
    assert _error({**MINIMAL, "providers": counts}) == "providers.strategy_counts.ALLD: count must be >= 0, got -10"
    counts = {"count": 30, "strategy_counts": {"ALLC": 20, "XX": 10}}
    assert _error({**MINIMAL, "providers": counts}).startswith("providers.strategy_counts.XX: unknown strategy")


def test_errors_name_scenario_keys_not_internal_fields() -> None:
    for data in (
        {**MINIMAL, "learning": {"round_duration_s": float("inf")}},  # was PoET's stale_timeout_s
        {**MINIMAL, "learning": {"hidden_sizes": [0]}},  # was the backend's surrogate_parameter_count
        {"run": 5},  # was "RunSection"
        {**MINIMAL, "learning": {"theta1": "x"}},  # was a union member's tag
    ):
        message = _error(data)
        assert not any(word in message for word in ("stale_timeout", "parameter_count", "Section", "literal["))
        assert "\n" not in message
    assert _error({**MINIMAL, "learning": {"theta1": "x"}}) == (
        "learning.theta1: must be a number in [1e-09, 1e+09] or 'auto', got 'x'"
    )


def test_thousands_of_unknown_keys_print_ten_lines_and_a_count() -> None:
    data = {"run": {"tasks": 3, **{f"key{index}": index for index in range(20_000)}}}
    lines = _error(data).splitlines()
    assert len(lines) == 11 and lines[0].startswith("run.key0: unknown key")
    assert lines[-1] == "... and 19,990 more unknown keys"


def test_table_valued_parameters_are_replaced_whole_by_dotted_overrides() -> None:
    data = {"run": {"tasks": 3}, "providers": {"strategy_mix": {"ALLC": 0.5, "TFT": 0.5}}}
    merged = apply_overrides(data, {"providers.strategy_mix.ALLD": 0.8, "providers.strategy_mix.ALLC": 0.2})
    assert merged["providers"]["strategy_mix"] == {"ALLD": 0.8, "ALLC": 0.2}
    assert data["providers"]["strategy_mix"] == {"ALLC": 0.5, "TFT": 0.5}  # the input is not changed
    assert "sums to 0.5" in _error(apply_overrides(data, {"providers.strategy_mix.ALLD": 0.5}))
    whole = apply_overrides(data, {"providers.strategy_mix": {"ALLD": 1.0}})
    assert whole["providers"]["strategy_mix"] == {"ALLD": 1.0}
    # a distribution is a record, not a table parameter: a dotted path sets one of its fields
    record = apply_overrides({"providers": {"unit_revenue": {"dist": "uniform", "low": 1, "high": 2}}}, {})
    record = apply_overrides(record, {"providers.unit_revenue.high": 3})
    assert record["providers"]["unit_revenue"] == {"dist": "uniform", "low": 1, "high": 3}
    with pytest.raises(ScenarioError, match="not a dotted path"):
        apply_overrides(data, {"providers..count": 3})


@pytest.mark.parametrize(
    ("mix", "count", "expected"),
    [
        ({"ALLC": 0.25, "ALLD": 0.25, "Rand": 0.25, "TFT": 0.25}, 30, {"ALLC": 8, "ALLD": 8, "Rand": 7, "TFT": 7}),
        ({"ALLC": 0.1, "ALLD": 0.8, "TFT": 0.1}, 10, {"ALLC": 1, "ALLD": 8, "TFT": 1}),
        ({"ALLC": 0.2, "ALLD": 0.7, "TFT": 0.1}, 7, {"ALLC": 1, "ALLD": 5, "TFT": 1}),  # quotas 1.4, 4.9, 0.7
        ({"ALLD": 1.0}, 3, {"ALLD": 3}),
    ],
)
def test_largest_remainder_counts_by_hand(mix, count, expected) -> None:
    from flmarket.sim.config import largest_remainder_counts

    assert largest_remainder_counts(mix, count) == expected


def test_largest_remainder_counts_add_up_and_stay_within_one_of_the_quota() -> None:
    import numpy as np

    from flmarket.sim.config import largest_remainder_counts

    rng = np.random.default_rng(5)
    for _ in range(200):
        shares = rng.dirichlet(np.ones(4))
        mix = dict(zip(("ALLC", "ALLD", "Rand", "TFT"), shares.tolist(), strict=True))
        count = int(rng.integers(1, 500))
        counts = largest_remainder_counts(mix, count)
        assert sum(counts.values()) == count
        assert all(abs(counts[name] - count * share) < 1 for name, share in mix.items())


def test_exact_composition_gives_exact_counts_in_a_seeded_order() -> None:
    import numpy as np

    from flmarket.sim.config import initial_strategies

    providers = parse_scenario(
        {**MINIMAL, "providers": {"count": 10, "composition": "exact", "strategy_mix": {"ALLC": 0.2, "ALLD": 0.8}}}
    ).providers
    labels = initial_strategies(providers, np.random.default_rng(1))
    assert sorted(labels) == ["ALLC"] * 2 + ["ALLD"] * 8
    assert labels == initial_strategies(providers, np.random.default_rng(1))
    drawn = parse_scenario({**MINIMAL, "providers": {"count": 10}}).providers
    assert drawn.composition == "draw" and initial_strategies(drawn, np.random.default_rng(1)) is None


def test_the_torch_backend_needs_a_shard_per_initial_provider() -> None:
    message = _error({**MINIMAL, "providers": {"count": 10}, "learning": {"backend": "torch", "shards": 3}})
    assert message == (
        "learning.shards: must be >= providers.count (10) with the torch backend (each provider trains on a shard "
        "of its own), got 3"
    )
    assert "BackendConfig" not in message


def test_the_likely_population_peak_follows_the_m_m_infinity_queue() -> None:
    """Joiners online at time t are Poisson(lambda L (1 - e^(-t/L))) and the initial providers Binomial(N,
    e^(-t/L)): checked by hand at the run's end and by simulating arrivals and lifetimes."""
    import math

    import numpy as np

    from flmarket.sim.config import expected_end_s, likely_population_peak

    def scenario(**overrides: object):
        return load_scenario("quickstart", {"run.tasks": 20, **overrides})

    assert likely_population_peak(scenario(**{"providers.arrival_rate_per_s": 0.0})) == 30.0
    # one initial provider and lambda L = 5: mean and spread only grow, so the peak is at the end (by hand)
    growing = {"providers.count": 1, "network.topology": "complete", "providers.arrival_rate_per_s": 0.05}
    few = scenario(**growing, **{"providers.mean_lifetime_s": 100.0, "learning.require_dilemma": False})
    end = expected_end_s(few)
    staying = math.exp(-end / 100.0)
    joined = 0.05 * 100.0 * (1 - staying)
    by_hand = staying + joined + 3 * math.sqrt(staying * (1 - staying) + joined)
    assert likely_population_peak(few) == pytest.approx(by_hand, rel=1e-12)
    forever = scenario(**{"providers.mean_lifetime_s": math.inf})
    joined = 0.005 * expected_end_s(forever)
    assert likely_population_peak(forever) == pytest.approx(30 + joined + 3 * math.sqrt(joined))
    # simulated: arrivals at rate lambda over [0, t], each online for an exponential lifetime of mean L
    rng = np.random.default_rng(0)
    rate, lifetime, t, count = 0.05, 200.0, 300.0, 10
    online = []
    for _ in range(20_000):
        arrivals = rng.uniform(0.0, t, rng.poisson(rate * t))
        joiners = int(np.sum(arrivals + rng.exponential(lifetime, arrivals.size) > t))
        online.append(joiners + int(np.sum(rng.exponential(lifetime, count) > t)))
    staying = math.exp(-t / lifetime)
    assert np.mean(online) == pytest.approx(count * staying + rate * lifetime * (1 - staying), rel=0.02)
    assert np.var(online) == pytest.approx(count * staying * (1 - staying) + rate * lifetime * (1 - staying), rel=0.05)


def test_values_in_errors_are_spelled_as_toml_not_python() -> None:
    """`--set run.tasks=1979-05-27` said `got datetime.date(1979, 5, 27)`; a table said `got {'x': 1}`."""
    import datetime

    assert _error({"run": {"tasks": datetime.date(1979, 5, 27)}}) == "run.tasks: must be an integer, got 1979-05-27"
    assert _error({"run": {"tasks": {"x": 1, "y": [True, 2.5]}}}) == (
        "run.tasks: must be an integer, got {x = 1, y = [true, 2.5]}"
    )
    with pytest.raises(ScenarioError, match="scenario: not a regular file .* got '/dev/null'"):
        load_scenario("/dev/null")


def test_the_torch_backend_refuses_a_quality_it_would_ignore() -> None:
    """On torch, mu0 and mu1 of the quality (SPEC A.4) come from the model and the data set: a different
    mechanism.hidden_layers or output_units used to be ignored silently (quality 2/(10+H) instead of 5/(3+H))."""
    import torch

    from flmarket.market.fl.models import build_model
    from flmarket.sim.config import CNN_HIDDEN_LAYERS, TORCH_CLASSES

    cnn = build_model("cnn", (1, 8, 8), TORCH_CLASSES, torch.Generator().manual_seed(0))
    assert cnn.hidden_layers == CNN_HIDDEN_LAYERS and cnn.num_classes == TORCH_CLASSES
    with pytest.raises(
        ScenarioError, match=r"^mechanism\.hidden_layers: the torch backend .* has 2 hidden layers; got 5"
    ):
        load_scenario("bgfl-table3-torch", {"mechanism.hidden_layers": 5})
    with pytest.raises(ScenarioError, match=r"^mechanism\.output_units: .* 'digits' has 10 classes; got 3"):
        load_scenario("bgfl-table3-torch", {"mechanism.output_units": 3})
    with pytest.raises(ScenarioError, match=r"learning\.model = 'cnn' has 3 hidden layers; got 2"):
        load_scenario("bgfl-table3-torch", {"learning.model": "cnn", "mechanism.hidden_layers": 2})
    assert load_scenario("bgfl-table3-torch", {"learning.hidden_sizes": [64], "mechanism.hidden_layers": 1})
    assert load_scenario("bgfl-table3", {"mechanism.hidden_layers": 5}).mechanism.hidden_layers == 5  # surrogate


def test_priors_whose_cheapest_type_has_c_com_below_one_are_refused_before_a_run() -> None:
    """C_com (B 3) grows with each field, so its least value is at the priors' lower bounds: 0.5 * 2 * 5 * 64 *
    0.05^2 + 0.5 * 0.3 * 16 = 3.2, fine; at 0.01 GHz and memory_use_ratio 0 it is 0.032 < 1, refused here rather
    than when a joiner of a long run draws it (ln C_com would be a negative cost, docs/spec.md A.3)."""
    low = {"dist": "uniform", "low": 0.05, "high": 3.0}
    assert load_scenario("quickstart", {"providers.cpu_frequency": low})
    cheap = {"providers.cpu_frequency": {**low, "low": 0.01}, "providers.memory_use_ratio": 0.0}
    with pytest.raises(
        ScenarioError, match=r"^providers: the cheapest type these priors can draw has C_com = 0\.032 < 1"
    ):
        load_scenario("quickstart", cheap)
    wide = {"providers.cpu_frequency": {"dist": "lognormal", "mean": 1.0, "std": 0.8}, "providers.memory_use_ratio": 0}
    with pytest.raises(ScenarioError, match=r"providers\.cpu_frequency 0\.000911882"):  # exp(1 - 8): practical minimum
        load_scenario("quickstart", wide)


@pytest.mark.parametrize(
    ("size", "rule", "problem"),
    [
        (1, "paper", "gives a quorum of 2 votes, which a committee of 1 can never gather"),
        (2, "paper", "gives a quorum of 3 votes, which a committee of 2 can never gather"),
        (3, "two_f_plus_one", r"gives a quorum of 1 of 3: two quorums need not share a member \(2q - n = -1 < 1\)"),
        (6, "two_f_plus_one", r"gives a quorum of 3 of 6: two quorums need not share a member \(2q - n = 0 < 1\)"),
    ],
)
def test_a_quorum_rule_that_cannot_serve_the_committee_is_refused(size: int, rule: str, problem: str) -> None:
    """Every round stalled ('NEW-VIEW ... 1 of 2'), or two honest replicas could execute different values at one
    sequence number with no fault (31 of 300 runs at n = 3 under 2f+1, which gives q = 1)."""
    overrides = {"committee.size": size, "committee.quorum_rule": rule}
    with pytest.raises(ScenarioError, match=f"^committee.quorum_rule: '{rule}' with size = {size} {problem}"):
        load_scenario("quickstart", overrides)
    for fine in ({"committee.size": size}, {"committee.size": 7, "committee.quorum_rule": rule}):
        assert load_scenario("quickstart", fine)


def test_candidates_stand_with_a_stake() -> None:
    """DPoS elects only candidates with votes, and each candidate's first vote is its own stake: with stakes of
    0 (and providers' too) nobody was elected and the run died on StopIteration; with some, a committee smaller
    than committee.size ran silently, its fees and fault bound those of the configured size."""
    with pytest.raises(ScenarioError, match=r"^committee\.candidate_stake\.value: must be > 0 .* committee\.size$"):
        load_scenario("quickstart", {"committee.candidate_stake": 0.0})
    with pytest.raises(ScenarioError, match=r"^committee\.candidate_stake\.low: must be > 0"):
        load_scenario("quickstart", {"committee.candidate_stake": {"dist": "uniform", "low": 0.0, "high": 5.0}})
    assert load_scenario("quickstart", {"committee.candidate_stake": 0.5, "providers.initial_stake": 0.0})


def test_a_scenario_file_with_a_byte_order_mark_reads_as_without(tmp_path) -> None:
    """'malformed TOML: Invalid statement (at line 1, column 1)' for a file some Windows editors save."""
    plain = tmp_path / "plain.toml"
    plain.write_text('[run]\nname = "bom"\ntasks = 3\n', encoding="utf-8")
    marked = tmp_path / "marked.toml"
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    assert load_scenario(marked) == load_scenario(plain)


def test_automatic_theta1_with_one_provider_is_refused_and_a_number_is_taken() -> None:
    """theta1 = "auto" is twice K N (R - 1) / (N - 1) (SPEC B.2): with one provider the run logged theta1 = inf
    and a NaN welfare position, with only a warning."""
    alone = {"providers.count": 1, "network.topology": "complete", "learning.require_dilemma": False}
    with pytest.raises(ScenarioError, match=r"learning.theta1: 'auto' .* needs at least 2 providers, got providers"):
        load_scenario("quickstart", {**alone, "learning.theta1": "auto"})
    assert load_scenario("quickstart", alone).learning.theta1 == 400.0  # the quick-start's own number


@pytest.mark.parametrize(
    ("given", "switch", "said"),
    [
        (
            {"committee.poet_z_window": 10},
            {"committee.poet_z_test": True},
            "committee.poet_z_window = 10 has no effect: committee.poet_z_test is false",
        ),
        (
            {"committee.signature_verify_s": 0.001},
            {"committee.verification": "modelled"},
            "committee.signature_verify_s = 0.001 has no effect: committee.verification is 'every_replica'",
        ),
        (
            {"committee.signature_sample_rate": 0.5},
            {"committee.verification": "modelled"},
            "committee.signature_sample_rate = 0.5 has no effect: committee.verification is 'every_replica'",
        ),
        (
            {"learning.clip": 5.0},
            {"learning.sensitivity": "per_record"},
            "learning.clip = 5 has no effect: learning.sensitivity is a number",
        ),
        (
            {"faults.compromised_wait_share": 0.5},
            {"faults.compromised_timers": 1},
            "faults.compromised_wait_share = 0.5 has no effect: faults.compromised_timers is 0",
        ),
        (
            {"faults.byzantine_behaviour": "wrong_digest"},
            {"faults.byzantine_committee": 1},
            "faults.byzantine_behaviour = 'wrong_digest' has no effect: faults.byzantine_committee is 0",
        ),
    ],
)
def test_a_setting_another_switches_off_is_named_and_not_once_it_is_on(given, switch, said) -> None:
    """poet_z_window was accepted while the z-test was off, without a word (and so were the other four)."""
    (problem,) = inert_settings(load_scenario("quickstart", given))
    assert problem.startswith(said)
    assert inert_settings(load_scenario("quickstart", {**given, **switch})) == []
    assert inert_settings(load_scenario("quickstart", switch)) == []  # the defaults are never named


@pytest.mark.parametrize("name", sorted(bundled_scenarios()))
def test_no_bundled_scenario_gives_a_setting_it_switches_off(name: str) -> None:
    assert inert_settings(load_scenario(name)) == []


def test_validate_warns_of_a_switched_off_setting_in_one_line(capsys) -> None:
    """`validate` builds the model as `run` does before its first event; the model warns."""
    from flmarket.sim.cli import main

    assert main(["validate", "quickstart", "--set", "committee.poet_z_window=10"]) == 0
    assert capsys.readouterr().err == (
        "flmarket: warning: committee.poet_z_window = 10 has no effect: committee.poet_z_test is false (CheckTimer's "
        "z-test does not run)\n"
    )
