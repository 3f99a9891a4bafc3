"""analysis/stability.py: windowed statistics, time to stationarity, extinction and fixation, by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from flmarket.analysis.stability import (
    absorption_probabilities,
    batch_means_interval,
    extinction_and_fixation,
    kpss_windows,
    mser_warmup,
    stability_summary,
    stationarity_verdict,
    time_averaged_shares,
    time_to_stationarity,
    window_statistics,
)


def test_window_statistics_by_hand_aligned_to_the_end() -> None:
    table = window_statistics([9, 1, 2, 3, 4, 5, 6], window=3)  # the leading 9 is a partial window
    assert table["start"].tolist() == [1, 4] and table["stop"].tolist() == [4, 7]
    assert table["mean"].tolist() == [2.0, 5.0]
    assert table["variance"].tolist() == [1.0, 1.0]  # ((1-2)^2 + 0 + (3-2)^2) / 2
    assert window_statistics([1.0, 2.0], window=3).empty


def test_a_step_then_noise_is_stationary_from_the_step() -> None:
    series = [5, 5, 5, 5] + [0, 1, 0, 1] * 3
    result = time_to_stationarity(series, window=4, alpha=0.05)
    assert result.stationary and result.start_index == 4 and result.windows == 4
    # Welch: t = (5 - 0.5) / sqrt(0 / 4 + (1/3) / 4) with (n2 - 1) = 3 degrees of freedom (one variance is 0)
    t_statistic = 4.5 / math.sqrt((1 / 3) / 4)
    assert result.p_values[0] == pytest.approx(2 * stats.t.sf(t_statistic, 3), rel=1e-6)
    assert result.p_values[1:] == (1.0, 1.0)


def test_times_map_the_start_and_constant_series_are_stationary_at_once() -> None:
    series = [3.0] * 12
    result = time_to_stationarity(series, window=4, times=[10.0 * index for index in range(12)])
    assert result.stationary and result.start_index == 0 and result.start_time == 0.0
    stepped = [1.0] * 4 + [2.0] * 8
    assert time_to_stationarity(stepped, window=4, times=list(range(100, 112))).start_time == 104.0


def test_a_trend_never_settles_and_short_series_are_not_stationary() -> None:
    trend = time_to_stationarity(np.arange(40.0), window=5)
    assert not trend.stationary and trend.start_index is None
    # the second-to-last window differs from the last one: no two windows agree
    assert not time_to_stationarity([0, 0, 0, 1, 1, 1], window=3).stationary
    short = time_to_stationarity([1.0, 2.0, 3.0], window=3)
    assert not short.stationary and short.windows == 1


def test_bonferroni_level_decides_a_borderline_window() -> None:
    # windows 0 and 1 each differ from window 2 at p ~ 0.03: below alpha = 0.05 but above 0.05 / 2.
    rng = np.random.default_rng(0)
    base = rng.normal(0.0, 1.0, 8)
    last = base - base.mean()
    shift = None
    for candidate in np.linspace(0.5, 3.0, 500):
        if 0.025 < stats.ttest_ind(last + candidate, last, equal_var=False).pvalue < 0.05:
            shift = candidate
            break
    assert shift is not None
    series = np.concatenate([last + shift, last + shift, last])
    result = time_to_stationarity(series, window=8, alpha=0.05)
    assert all(0.025 < p_value < 0.05 for p_value in result.p_values)
    assert result.stationary and result.start_index == 0  # not rejected at 0.05 / 2


@settings(
    deadline=None, max_examples=40
)  # the first call imports and warms scipy: a cold call can exceed the 200 ms default
@given(
    st.lists(st.integers(min_value=-800, max_value=800), min_size=8, max_size=60),
    st.sampled_from([0.125, 0.5, 2.0, 8.0]),
    st.integers(min_value=-50, max_value=50),
)
def test_the_start_is_invariant_to_shifting_and_scaling(values: list[int], scale: float, shift: int) -> None:
    # Eighths, power-of-two scales and integer shifts keep the arithmetic exact: the property is about the
    # statistics, not about rounding (a 1e-195 step vanishes when shifted by 1).
    series = np.asarray(values, dtype=float) / 8
    first = time_to_stationarity(series, window=4)
    second = time_to_stationarity(series * scale + shift, window=4)
    assert first.stationary == second.stationary and first.start_index == second.start_index


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="window: must be an integer >= 2, got 1"):
        time_to_stationarity([1.0] * 10, window=1)
    with pytest.raises(ValueError, match=r"alpha: must be in \(0, 1\), got 0"):
        time_to_stationarity([1.0] * 10, window=2, alpha=0)
    with pytest.raises(ValueError, match="series: must be finite"):
        time_to_stationarity([1.0, math.nan] * 5, window=2)
    with pytest.raises(ValueError, match="times: must have as many values as series"):
        time_to_stationarity([1.0] * 4, window=2, times=[0.0])


def test_extinction_and_fixation_by_hand() -> None:
    shares = pd.DataFrame(
        {
            "time": [0, 0, 0, 1, 1, 1, 2, 3],
            "strategy": ["A", "B", "C", "A", "B", "C", "A", "A"],
            "share": [0.5, 0.5, 0.0, 0.6, 0.2, 0.2, 1.0, 1.0],
        }
    )  # B and C are missing at times 2 and 3: share 0 there
    fates = extinction_and_fixation(shares).set_index("strategy")
    assert fates.loc["A", "fixated"] and fates.loc["A", "fixation_time"] == 2
    assert not fates.loc["A", "extinct"] and fates.loc["A", "final_share"] == 1.0
    assert fates.loc["B", "extinct"] and fates.loc["B", "extinction_time"] == 2
    assert fates.loc["C", "extinct"] and fates.loc["C", "extinction_time"] == 2  # came back at 1, died at 2
    assert not fates.loc["B", "fixated"] and math.isnan(fates.loc["B", "fixation_time"])


def test_coexistence_has_no_fixation_and_empty_input_has_columns() -> None:
    shares = pd.DataFrame({"time": [0, 0, 1, 1], "strategy": ["A", "B", "A", "B"], "share": [0.5, 0.5, 0.4, 0.6]})
    fates = extinction_and_fixation(shares)
    assert not fates["extinct"].any() and not fates["fixated"].any()
    empty = extinction_and_fixation(pd.DataFrame(columns=["time", "strategy", "share"]))
    assert empty.empty and list(empty.columns) == [
        "strategy",
        "final_share",
        "extinct",
        "extinction_time",
        "extinction_dwell",
        "fixated",
        "fixation_time",
        "fixation_dwell",
        "samples_at_zero",
        "samples_at_one",
        "min_dwell",
    ]


def test_stability_summary_of_a_hand_made_run() -> None:
    welfare = [5.0] * 4 + [1.0, 2.0] * 4
    rows = [
        {
            "kind": "task_finished",
            "task": task,
            "time": 10.0 * task,
            "players": 2,
            "total_participation": 1,
            "welfare": value,
            "precision": 0.1,
        }
        for task, value in enumerate(welfare)
    ]
    for task in range(12):
        rows.append(
            {
                "kind": "action_chosen",
                "task": task,
                "time": 10.0 * task - 1,
                "agent": 1,
                "strategy": "ALLC",
                "action": 1,
            }
        )
        if task < 6:
            rows.append(
                {
                    "kind": "action_chosen",
                    "task": task,
                    "time": 10.0 * task - 1,
                    "agent": 2,
                    "strategy": "ALLD",
                    "action": 0,
                }
            )
    frame = pd.DataFrame(rows)
    frame["seq"] = range(len(frame))
    summary = stability_summary(frame, window=4, min_dwell_fraction=0.0)
    # 12 tasks: MSER-5 has two batches and keeps both (no warm-up, not reliable); 12 values are too few to test.
    assert summary["welfare_stationarity"] == "too short" and not summary["welfare_stationary"]
    assert summary["welfare_warmup_tasks"] == 0 and summary["welfare_warmup_reliable"] is False
    assert math.isnan(summary["stationary_from_task"])
    assert summary["final_window_mean"] == pytest.approx(1.5)
    assert summary["final_window_variance"] == pytest.approx(1 / 3)  # (4 * 0.25) / 3
    assert summary["extinct_strategies"] == "ALLD" and summary["fixated_strategy"] == "ALLC"
    # ALLC holds share 1 from task 6 (time 59) to task 11 (time 109): a dwell of 50 s
    assert summary["fixation_dwell_s"] == pytest.approx(50.0)
    # requiring half the sampled span (0.5 * 110 s = 55 s) rejects that fixation
    strict = stability_summary(frame, window=4, min_dwell_fraction=0.5)
    assert strict["fixated_strategy"] == "" and strict["min_dwell_s"] == pytest.approx(55.0)


# ---------------------------------------------------------------------------- measures with known answers


def _ar1(rng: np.random.Generator, size: int, mean: float, phi: float, burn: int = 0) -> np.ndarray:
    """x_t = mean + phi (x_{t-1} - mean) + e_t, e ~ N(0, 1), started from the stationary law."""
    noise = rng.normal(0.0, 1.0, size + burn)
    values = np.empty(size + burn)
    values[0] = noise[0] / math.sqrt(1 - phi**2)
    for index in range(1, size + burn):
        values[index] = phi * values[index - 1] + noise[index]
    return mean + values[burn:]


def test_batch_means_interval_covers_the_ar1_mean_at_its_level() -> None:
    # AR(1) with phi = 0.8: correlation time (1 + phi) / (1 - phi) = 9 steps; 2,000 values in 20 batches of 100.
    rng = np.random.default_rng(11)
    runs, size, phi, mean = 300, 2000, 0.8, 3.0
    covered = naive = 0
    for _ in range(runs):
        series = _ar1(rng, size, mean, phi)
        interval = batch_means_interval(series, level=0.95)
        covered += interval.low <= mean <= interval.high
        half = 1.96 * series.std(ddof=1) / math.sqrt(size)  # ignores autocorrelation
        naive += abs(series.mean() - mean) <= half
    # Wilson 99.9% band around 0.95 for 300 runs is about [0.90, 0.98]; the naive interval is ~ 3x too narrow.
    assert 0.90 <= covered / runs <= 0.985
    assert naive / runs < 0.6
    one = batch_means_interval(_ar1(rng, size, mean, phi))
    assert one.batches == 20 and one.batch_size == 100 and abs(one.batch_lag1) < 0.5


def test_batch_means_by_hand_and_bounds() -> None:
    interval = batch_means_interval([9.0, 1.0, 3.0, 5.0, 7.0], batches=2)  # batches (1, 3), (5, 7): the 9 is cut
    assert interval.mean == 4.0 and interval.batch_size == 2
    # means 2 and 6: s = 2 * sqrt(2), half width = t_{0.975, 1} * s / sqrt(2) = 12.706 * 2
    assert interval.half_width == pytest.approx(stats.t.ppf(0.975, 1) * 2.0)
    clipped = batch_means_interval([0.0, 0.1, 0.9, 1.0], batches=2, bounds=(0.0, 1.0))
    assert clipped.low == 0.0 and clipped.high == 1.0
    with pytest.raises(ValueError, match="batches: must be an integer >= 2, got 1"):
        batch_means_interval([1.0] * 4, batches=1)


def test_mser5_finds_a_step_change_at_a_known_time() -> None:
    rng = np.random.default_rng(5)
    for step in (50, 300, 640):
        series = np.concatenate([rng.normal(8.0, 1.0, step), rng.normal(0.0, 1.0, 1500 - step)])
        warmup = mser_warmup(series)
        # MSER cuts at the step or a few batches after it (it may drop noisy batches too), never before it
        assert warmup.reliable and step <= warmup.index <= step + 25
    stationary = mser_warmup(rng.normal(0.0, 1.0, 1000))
    assert stationary.index <= 50  # nothing to cut but noise


def test_mser5_by_hand() -> None:
    # batch means 10, 0, 0, 0: truncating one batch leaves no spread (MSER = 0); none leaves 75 / 16
    series = [10.0] * 5 + [0.0] * 15
    warmup = mser_warmup(series)
    assert warmup.index == 5 and warmup.batches == 4 and warmup.reliable
    assert mser_warmup([1.0, 2.0, 3.0]).index == 0


@pytest.mark.parametrize("scale", [1.0, 1e-4, 1e-6, 1e-9, 1e6])
def test_mser5_does_not_depend_on_the_series_scale(scale: float) -> None:
    """Every score scales with the square of the data, so the argmin cannot move; an absolute tie tolerance of
    1e-12 gave warm-ups of 15, 15, 10 and 0 at scales 1, 1e-4, 1e-5 and 1e-6."""
    rng = np.random.default_rng(0)
    series = np.r_[np.linspace(5.0, 0.0, 20), rng.normal(0.0, 1.0, 100)]
    assert mser_warmup(series * scale).index == mser_warmup(series).index == 15


def test_mser5_keeps_two_batches_so_a_short_run_is_not_cut_by_default() -> None:
    """With two batches, truncating one left a single batch mean, whose score of 0 always won: every series of
    10 - 14 values lost its first 5 (200 of 200 white-noise series of length 12)."""
    rng = np.random.default_rng(1)
    cuts = [mser_warmup(rng.normal(0.0, 1.0, 12)) for _ in range(200)]
    assert all(cut.index == 0 and cut.batches == 2 and not cut.reliable for cut in cuts)
    three = mser_warmup([9.0] * 5 + [0.0, 1.0] * 5)  # 3 batches: cutting the first still keeps 2
    assert three.index == 5 and three.batches == 3
    with pytest.raises(ValueError, match="batch_size: must be an integer >= 1, got True"):
        mser_warmup([1.0] * 20, batch_size=True)


def test_shares_sampled_at_one_time_call_nothing_extinct_or_fixated() -> None:
    """A span of 0 made the minimum dwell 0, so the one sample {A: 0, B: 1} reported A extinct and B fixated."""
    frame = pd.DataFrame(
        [
            {"kind": "strategy_share", "time": 0.0, "strategy": name, "count": count, "share": float(count)}
            for name, count in (("A", 0), ("B", 1))
        ]
    )
    frame["seq"] = range(len(frame))
    frame["agent"] = -1
    summary = stability_summary(frame)
    assert summary["extinct_strategies"] == "" and summary["fixated_strategy"] == ""
    assert math.isnan(summary["min_dwell_s"]) and summary["welfare_warmup_reliable"] is False


def test_stationarity_verdict_with_known_answers() -> None:
    rng = np.random.default_rng(3)
    walk = np.cumsum(rng.normal(0.0, 1.0, 1500))
    assert stationarity_verdict(walk).verdict == "not stationary"
    ar1 = _ar1(rng, 1500, 2.0, 0.5)
    verdict = stationarity_verdict(ar1)
    assert verdict.verdict == "stationary" and verdict.robust and verdict.adf_p_value < 0.01
    assert min(verdict.kpss_p_values) >= 0.05
    stepped = np.concatenate([np.full(200, 10.0) + rng.normal(0, 1, 200), ar1])
    after = stationarity_verdict(stepped)
    assert abs(after.warmup.index - 200) <= 5 and after.stationary  # the step is the warm-up, not non-stationarity
    assert stationarity_verdict(np.full(100, 4.0)).stationary
    assert stationarity_verdict(rng.normal(size=10)).verdict == "too short"


def test_short_white_noise_is_stationary_and_short_random_walks_rarely_are() -> None:
    """The verdict called white noise of 50 values 'not stationary' 182 times in 200: it read "neither KPSS nor
    ADF rejects" as not stationary, and ADF at Schwert's fixed long lag had almost no power on short series.
    Counts over 100 seeded series of 50 values (docs/architecture.md gives the 300-series table)."""
    rng = np.random.default_rng(12)
    noise = [stationarity_verdict(rng.normal(size=50)).verdict for _ in range(100)]
    assert noise.count("stationary") >= 70 and noise.count("not stationary") <= 2
    walks = [stationarity_verdict(np.cumsum(rng.normal(size=50))).verdict for _ in range(100)]
    assert walks.count("stationary") <= 12  # a false 'stationary' stays rare; most short walks are inconclusive
    assert walks.count("inconclusive") >= 50


def test_an_inconclusive_verdict_says_why() -> None:
    rng = np.random.default_rng(5)
    spike = np.zeros(60)
    spike[-2:] = 0.5  # a mostly constant series: ADF's lag regression has collinear columns
    verdict = stationarity_verdict(spike)
    assert verdict.verdict == "inconclusive" and verdict.adf_rank_deficient
    assert verdict.why.startswith("ADF's regression was rank-deficient")
    readings = {}
    for _ in range(200):
        verdict = stationarity_verdict(np.cumsum(rng.normal(size=50)))
        if verdict.verdict == "inconclusive":
            readings.setdefault(verdict.why.split(":")[0].split(",")[0], verdict)
    assert "neither KPSS nor ADF rejects" in readings  # the common case for a short walk: too little evidence
    assert all(verdict.why for verdict in readings.values())
    assert stationarity_verdict(rng.normal(size=200)).why == ""  # only an inconclusive verdict has a why


def test_the_verdict_does_not_change_with_the_window_on_clear_cases() -> None:
    # the three KPSS bandwidths are increasing and the verdict is the same for each on a stationary and a unit-root
    # series over many draws: the decision does not hinge on the window.
    windows = kpss_windows(1500)
    assert windows["auto"] == "auto" and 0 < windows["schwert4"] < windows["schwert12"]
    assert (windows["schwert4"], windows["schwert12"]) == (7, 23)  # floor(4 * 15^0.25), floor(12 * 15^0.25)
    rng = np.random.default_rng(8)
    verdicts = [stationarity_verdict(_ar1(rng, 1000, 0.0, 0.6)).verdict for _ in range(12)]
    assert verdicts.count("stationary") >= 10  # alpha = 0.05 per test; a few honest rejections are allowed
    walks = [stationarity_verdict(np.cumsum(rng.normal(size=1000))).verdict for _ in range(12)]
    assert walks.count("not stationary") >= 10


def test_time_averaged_shares_weight_by_time() -> None:
    shares = pd.DataFrame(
        {"time": [0.0, 0.0, 10.0, 10.0, 40.0, 40.0], "strategy": ["A", "B"] * 3, "share": [1, 0, 0.5, 0.5, 0, 1]}
    )
    table = time_averaged_shares(shares).set_index("strategy")
    # A: 1 for 10 s, 0.5 for 30 s over 40 s = 25 / 40
    assert table.loc["A", "time_average"] == pytest.approx(25 / 40)
    assert table.loc["B", "time_average"] == pytest.approx(15 / 40)
    later = time_averaged_shares(shares, start_time=10.0).set_index("strategy")
    assert later.loc["A", "time_average"] == pytest.approx(0.5) and later.loc["A", "samples"] == 2
    # between samples: from 5 s the share of 1 holds for 5 s, then 0.5 for 30 s; 2 samples after 5 s
    between = time_averaged_shares(shares, start_time=5.0).set_index("strategy")
    assert between.loc["A", "time_average"] == pytest.approx((1 * 5 + 0.5 * 30) / 35)
    assert between.loc["B", "time_average"] == pytest.approx((0 * 5 + 0.5 * 30) / 35)
    assert between.loc["A", "samples"] == 2


def test_a_time_average_lies_inside_its_own_interval() -> None:
    """The interval was centred on an unweighted mean of the last samples: a share non-zero only in the first
    sample, which the batches leave out, had the interval [0, 0] around its time average 1/80."""
    times = [float(step) for step in range(11)]
    shares = pd.DataFrame({"time": times, "strategy": ["ALLC"] * 11, "share": [0.125] + [0.0] * 10})
    row = time_averaged_shares(shares).iloc[0]
    assert row["time_average"] == pytest.approx(0.0125)
    assert row["low"] <= row["time_average"] <= row["high"]


def test_fixation_needs_its_dwell_and_reports_it() -> None:
    times = np.arange(10) * 100.0
    share = [0.5, 1, 1, 0.9, 0.8, 1, 0.7, 0.9, 1, 1]  # reaches 1 four times; the last run is 2 samples (100 s)
    frame = pd.DataFrame({"time": times, "strategy": "ALLD", "share": share})
    loose = extinction_and_fixation(frame).iloc[0]
    assert loose["fixated"] and loose["fixation_time"] == 800.0 and loose["fixation_dwell"] == 100.0
    assert loose["samples_at_one"] == pytest.approx(0.5)
    strict = extinction_and_fixation(frame, min_dwell=300.0).iloc[0]
    assert not strict["fixated"] and strict["fixation_dwell"] == 100.0 and strict["min_dwell"] == 300.0
    with pytest.raises(ValueError, match="min_dwell: must be >= 0, got -1"):
        extinction_and_fixation(frame, min_dwell=-1)


def test_absorption_probabilities_with_wilson_intervals() -> None:
    table = absorption_probabilities(["ALLD"] * 7 + ["ALLC"] * 2 + [""], categories=["TFT"]).set_index("outcome")
    assert table.loc["ALLD", "probability"] == 0.7 and table.loc["ALLD", "runs"] == 10
    # Wilson by hand: (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), z = 1.959964
    z, n, p = stats.norm.ppf(0.975), 10, 0.7
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    spread = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    assert table.loc["ALLD", "low"] == pytest.approx(centre - spread)
    assert table.loc["ALLD", "high"] == pytest.approx(centre + spread)
    assert table.loc["TFT", "probability"] == 0 and table.loc["TFT", "low"] == pytest.approx(0, abs=1e-12)
    assert table.loc["TFT", "high"] == pytest.approx(z**2 / (n + z**2))  # Wilson upper bound at 0 successes
    assert table.loc["none", "runs_with"] == 1
    with pytest.raises(ValueError, match="outcomes: need at least one run"):
        absorption_probabilities([])


def test_a_stationary_run_gives_its_first_stationary_task_as_a_float() -> None:
    """The summary's numbers are floats (NaN when absent): stationary_from_task was an int or NaN, so a sweep's
    column changed dtype with the cells that happened to be stationary."""
    welfare = np.random.default_rng(4).normal(10.0, 1.0, 300)
    rows = [
        {
            "kind": "task_finished",
            "task": task,
            "time": 10.0 * task,
            "players": 1,
            "total_participation": 1,
            "welfare": value,
            "precision": 0.1,
        }
        for task, value in enumerate(welfare)
    ]
    rows += [
        {"kind": "action_chosen", "task": task, "time": 10.0 * task - 1, "agent": 1, "strategy": "ALLC", "action": 1}
        for task in range(300)
    ]
    frame = pd.DataFrame(rows)
    frame["seq"] = range(len(frame))
    summary = stability_summary(frame, window=20, min_dwell_fraction=0.0)
    assert summary["welfare_stationary"]
    start = summary["stationary_from_task"]
    assert type(start) is float and start == summary["welfare_warmup_tasks"]
    assert summary["stationary_from_time"] == 10.0 * start


def test_time_averaged_shares_takes_a_run_directory_like_its_neighbours(tmp_path) -> None:
    """`fm.time_averaged_shares(run_dir)` raised AttributeError ('str' object has no attribute 'empty')."""
    import flmarket as fm
    from flmarket.analysis.metrics import strategy_shares

    run = fm.run("quickstart", overrides={"run.tasks": 3}, out=tmp_path)
    from_directory = fm.time_averaged_shares(run.directory)
    assert not from_directory.empty
    pd.testing.assert_frame_equal(from_directory, fm.time_averaged_shares(strategy_shares(run.directory)))


def test_correlated_batch_means_are_flagged() -> None:
    """The lag-1 autocorrelation of the batch means was computed and never reported: 15 batches of 2 tasks of an
    evolving market gave r = 0.57 and a plain '95%' interval."""
    rng = np.random.default_rng(2)
    persistent = np.sin(np.linspace(0.0, 3.0, 40)) + rng.normal(0.0, 0.05, 40)  # 20 batches of 2 of a slow swing
    independent = rng.normal(size=4000)  # 20 batches of 200 independent values
    assert batch_means_interval(persistent).batches_correlated
    assert batch_means_interval(persistent).batch_lag1 > 1.96 / math.sqrt(20)
    assert not batch_means_interval(independent).batches_correlated
    assert not batch_means_interval([1.0, 2.0, 3.0]).batches_correlated  # too few values for an interval
