"""analysis/stability.py: windowed statistics, time to stationarity, extinction and fixation, by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from flmarket.analysis.stability import (
    extinction_and_fixation,
    stability_summary,
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
        "fixated",
        "fixation_time",
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
    summary = stability_summary(frame, window=4)
    assert summary["welfare_stationary"] and summary["stationary_from_task"] == 4
    assert summary["stationary_from_time"] == 40.0
    assert summary["final_window_mean"] == pytest.approx(1.5)
    assert summary["final_window_variance"] == pytest.approx(1 / 3)  # (4 * 0.25) / 3
    assert summary["extinct_strategies"] == "ALLD" and summary["fixated_strategy"] == "ALLC"
