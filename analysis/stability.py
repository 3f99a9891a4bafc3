"""Long-horizon stability of a run: when the welfare series settles, how much it varies, which strategies die out.

Three measures, each on plain arrays or frames so they can be checked by hand:
- time to a stationary state: the welfare series is cut into consecutive windows (aligned to its end); each
  window is compared with the final window by Welch's t-test (scipy), Bonferroni-corrected over the windows
  compared; the series is stationary from the first window after which no window differs from the final one;
- the mean and variance of the series in each window;
- extinction and fixation of strategies in the share series of `analysis.metrics.strategy_shares`: a strategy is
  extinct from the first sample after which its share stays 0 to the end, and fixated from the first sample after
  which it stays 1.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from flmarket.analysis.metrics import EventSource, events_of, strategy_shares, task_outcomes

DEFAULT_ALPHA = 0.05
DEFAULT_WINDOW = 10
SHARE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class Stationarity:
    """Where a series becomes stationary by the windowed test (indexes into the series)."""

    stationary: bool
    start_index: int | None
    start_time: float | None
    window: int
    windows: int
    alpha: float
    p_values: tuple[float, ...]


def _check_window(window: int) -> None:
    if not isinstance(window, int | np.integer) or window < 2:
        raise ValueError(f"window: must be an integer >= 2, got {window!r}")


def window_statistics(series: Sequence[float], window: int = DEFAULT_WINDOW) -> pd.DataFrame:
    """Mean and sample variance (ddof = 1) of each complete, consecutive window of `window` values.

    Windows are aligned to the end of the series (the final window holds the last `window` values); a leading
    partial window is left out. Columns: window (0, 1, ...), start, stop (indexes into the series, stop
    exclusive), mean, variance, std.
    """
    _check_window(window)
    values = np.asarray(series, dtype=float)
    count = values.size // window
    offset = values.size - count * window
    blocks = values[offset:].reshape(count, window)
    variance = blocks.var(axis=1, ddof=1) if count else np.empty(0)
    starts = offset + np.arange(count, dtype=np.int64) * window
    return pd.DataFrame(
        {
            "window": np.arange(count, dtype=np.int64),
            "start": starts,
            "stop": starts + window,
            "mean": blocks.mean(axis=1) if count else np.empty(0),
            "variance": variance,
            "std": np.sqrt(variance),
        }
    )


def _differs(first: np.ndarray, second: np.ndarray) -> float:
    """Welch's two-sided t-test p-value; two constant windows differ (p = 0) iff their values differ."""
    if np.ptp(first) == 0 and np.ptp(second) == 0:
        return 1.0 if first[0] == second[0] else 0.0
    with warnings.catch_warnings():  # scipy warns about precision when one window is (nearly) constant
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(first, second, equal_var=False).pvalue)


def time_to_stationarity(
    series: Sequence[float],
    window: int = DEFAULT_WINDOW,
    alpha: float = DEFAULT_ALPHA,
    times: Sequence[float] | None = None,
) -> Stationarity:
    """The first index from which the series is stationary by the windowed test (see the module docstring).

    Each complete window w = 0..W-2 is tested against the final window W-1 at level alpha / (W - 1) (Bonferroni).
    The start is the first window after the last one that differs; the series counts as stationary only if at
    least two windows (the final one and one before it) agree, so a series of fewer than two windows, or one that
    still moves in its second-to-last window, is not stationary (start_index None). `times`, if given, maps the
    start index to a time.
    """
    _check_window(window)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: must be in (0, 1), got {alpha}")
    values = np.asarray(series, dtype=float)
    if times is not None and len(times) != values.size:
        raise ValueError(f"times: must have as many values as series ({values.size}), got {len(times)}")
    if not np.all(np.isfinite(values)):
        raise ValueError("series: must be finite, got NaN or infinite values")
    count = values.size // window
    if count < 2:
        return Stationarity(False, None, None, window, count, alpha, ())
    offset = values.size - count * window  # windows are aligned to the end: the final window is the last values
    blocks = values[offset:].reshape(count, window)
    p_values = tuple(_differs(blocks[index], blocks[-1]) for index in range(count - 1))
    level = alpha / (count - 1)
    differing = [index for index, p_value in enumerate(p_values) if p_value < level]
    first_window = differing[-1] + 1 if differing else 0
    if first_window >= count - 1:
        return Stationarity(False, None, None, window, count, alpha, p_values)
    start = offset + first_window * window
    start_time = float(times[start]) if times is not None else None
    return Stationarity(True, start, start_time, window, count, alpha, p_values)


def extinction_and_fixation(shares: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: final share, whether and when it went extinct (share 0 to the end) or fixated (share 1).

    `shares` has columns time, strategy, share (as `analysis.metrics.strategy_shares` returns); a strategy missing
    from a sample time has share 0 there. Columns: strategy, final_share, extinct, extinction_time, fixated,
    fixation_time (times NaN when it did not happen).
    """
    columns = ["strategy", "final_share", "extinct", "extinction_time", "fixated", "fixation_time"]
    if shares.empty:
        return pd.DataFrame(
            {
                name: pd.Series(dtype=dtype)
                for name, dtype in zip(
                    columns, ["string", "float64", "bool", "float64", "bool", "float64"], strict=True
                )
            }
        )
    wide = shares.pivot_table(index="time", columns="strategy", values="share", aggfunc="sum", fill_value=0.0)
    wide = wide.sort_index()
    rows = []
    for strategy in wide.columns:
        series = wide[strategy].to_numpy(dtype=float)
        rows.append(
            {
                "strategy": strategy,
                "final_share": float(series[-1]),
                **_absorbed(series, wide.index, 0.0, "extinct", "extinction_time"),
                **_absorbed(series, wide.index, 1.0, "fixated", "fixation_time"),
            }
        )
    return pd.DataFrame(rows, columns=columns).astype({"strategy": "string", "extinct": bool, "fixated": bool})


def _absorbed(series: np.ndarray, times: pd.Index, level: float, flag: str, when: str) -> dict[str, object]:
    """Whether the series ends at `level` and the time from which it stays there."""
    at_level = np.abs(series - level) <= SHARE_TOLERANCE
    if not at_level[-1]:
        return {flag: False, when: math.nan}
    leaving = np.flatnonzero(~at_level)
    first = leaving[-1] + 1 if leaving.size else 0
    return {flag: True, when: float(times[first])}


def stability_summary(
    source: EventSource,
    window: int = DEFAULT_WINDOW,
    alpha: float = DEFAULT_ALPHA,
) -> dict[str, object]:
    """Stability headline of a run from its task welfare series and strategy shares.

    welfare_stationary, stationary_from_task (the task index where the stationary state starts),
    stationary_from_time, final_window_mean / final_window_variance of welfare, extinct_strategies,
    fixated_strategy ("" when none).
    """
    frame = events_of(source, ["task_finished", "strategy_share", "action_chosen"])
    tasks = task_outcomes(frame)
    welfare = tasks["welfare"].to_numpy(dtype=float)
    result = time_to_stationarity(welfare, window, alpha, times=tasks["time"].to_numpy(dtype=float))
    windows = window_statistics(welfare, window)
    fates = extinction_and_fixation(strategy_shares(frame))
    fixated = fates[fates["fixated"]]["strategy"].tolist()
    return {
        "welfare_stationary": result.stationary,
        "stationary_from_task": (
            int(tasks["task"].iloc[result.start_index]) if result.start_index is not None else math.nan
        ),
        "stationary_from_time": result.start_time if result.start_time is not None else math.nan,
        "final_window_mean": float(windows["mean"].iloc[-1]) if len(windows) else math.nan,
        "final_window_variance": float(windows["variance"].iloc[-1]) if len(windows) else math.nan,
        "extinct_strategies": ",".join(sorted(fates[fates["extinct"]]["strategy"].tolist())),
        "fixated_strategy": fixated[0] if fixated else "",
    }
