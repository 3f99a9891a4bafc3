"""Long-horizon stability of a run: when a series settles, its time average with an honest interval, which
strategies die out or take over and for how long, and absorption probabilities over seeds.

Measures with a pedigree (each function cites its method):
- warm-up: MSER-5 (White, Cobb & Spratt 2000; Hoad, Robinson & Davies 2010) on batch means of five values;
- time averages: non-overlapping batch means with a Student-t interval (Schmeiser 1982; Law, Simulation Modeling
  and Analysis, 5th ed., 2015, sec. 9.5.3), which stays valid under autocorrelation when batches are long;
- stationarity: KPSS (Kwiatkowski et al. 1992, H0 level-stationary) together with ADF (Said & Dickey 1984, H0
  unit root, Schwert's long lag) from statsmodels on the post-warm-up series; the KPSS long-run variance uses a
  Bartlett window whose bandwidth is the "window" here, and the verdict is given for three standard bandwidths
  (Hobijn, Franses & Ooms 1998 automatic; Schwert 1989 short and long) and is robust only when all three agree;
- time-averaged strategy shares (left-step integral of the sampled shares over time);
- extinction and fixation that must hold for a minimum dwell time, with the dwell reported;
- across seeds, fixation/absorption probabilities with Wilson score intervals (Wilson 1927; statsmodels
  `proportion_confint`).

The older windowed Welch test (`time_to_stationarity`) is kept for comparison: it ignores autocorrelation, so its
verdict moves with the window; the summary uses the KPSS/ADF verdict.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.proportion import proportion_confint
from statsmodels.tools.sm_exceptions import InterpolationWarning
from statsmodels.tsa.stattools import adfuller, kpss
from threadpoolctl import threadpool_limits

from flmarket.analysis.metrics import EventSource, events_of, strategy_shares, task_outcomes

DEFAULT_ALPHA = 0.05
DEFAULT_WINDOW = 10
SHARE_TOLERANCE = 1e-12
MSER_BATCH_SIZE = 5
DEFAULT_BATCHES = 20
DEFAULT_LEVEL = 0.95
MIN_STATIONARITY_VALUES = 20
DEFAULT_MIN_DWELL_FRACTION = 0.1


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


# ------------------------------------------------------------------------------------------------ warm-up (MSER-5)


@dataclass(frozen=True)
class WarmUp:
    """MSER-5 truncation point: `index` values are warm-up; `reliable` is False when the minimum lies in the
    second half of the series (Hoad, Robinson & Davies 2010: the run is then too short to trust the point)."""

    index: int
    batch_size: int
    batches: int
    reliable: bool


def _finite(series: Sequence[float] | np.ndarray, name: str = "series") -> np.ndarray:
    values = np.asarray(series, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"{name}: must be one-dimensional, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name}: must be finite, got NaN or infinite values")
    return values


def mser_warmup(series: Sequence[float] | np.ndarray, batch_size: int = MSER_BATCH_SIZE) -> WarmUp:
    """MSER-5 warm-up (White 1997; White, Cobb & Spratt 2000; Hoad, Robinson & Davies 2010).

    The series is cut into b batches of `batch_size` values (a trailing partial batch is left out) with means Z_j.
    For every truncation d = 0..min(floor(b/2), b - 2) batches, MSER(d) = sum_{j>d} (Z_j - mean_{j>d} Z)^2 /
    (b - d)^2; the warm-up is batch_size * argmin_d MSER(d) values (the first minimum on ties, within 1e-9 of the
    largest score, so the answer does not depend on the series' scale). At least two batches are kept: one batch
    has no spread, so its score of 0 would always win (every series of 10 - 14 values lost its first 5). The
    warm-up is reliable when the minimum lies before the last truncation tried (White 1997: a minimum in the
    second half means the run is too short). Series of fewer than two batches have no warm-up (index 0, not
    reliable).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"batch_size: must be an integer >= 1, got {batch_size!r}")
    values = _finite(series)
    batches = values.size // batch_size
    if batches < 2:
        return WarmUp(0, batch_size, batches, False)
    means = values[: batches * batch_size].reshape(batches, batch_size).mean(axis=1)
    limit = min(batches // 2, batches - 2)
    scores = np.empty(limit + 1)
    for truncation in range(limit + 1):
        kept = means[truncation:]
        scores[truncation] = np.sum((kept - kept.mean()) ** 2) / kept.size**2
    # Ties within float noise go to the shortest warm-up; the tolerance scales with the scores (an absolute one
    # made every truncation a tie once the values were below about 1e-5, and gave 0).
    best = int(np.flatnonzero(scores <= scores.min() + 1e-9 * scores.max())[0])
    return WarmUp(best * batch_size, batch_size, batches, best < limit)


# ------------------------------------------------------------------------------------ time averages (batch means)


@dataclass(frozen=True)
class TimeAverage:
    """A time average with its batch-means interval (`level`, Student-t on `batches` - 1 degrees of freedom);
    `batch_lag1` is the lag-1 autocorrelation of the batch means (near 0 when the batches are long enough)."""

    mean: float
    low: float
    high: float
    half_width: float
    batches: int
    batch_size: int
    batch_lag1: float
    level: float

    @property
    def batches_correlated(self) -> bool:
        """Whether the batch means' lag-1 autocorrelation exceeds 1.96 / sqrt(batches), its 95% bound for
        independent batch means (Law 2015, sec. 9.5.3): the batches are then too short and the interval too
        narrow; a longer run helps. False when it cannot be computed."""
        return self.batches >= 2 and self.batch_lag1 > 1.96 / math.sqrt(self.batches)


def batch_means_interval(
    series: Sequence[float] | np.ndarray,
    level: float = DEFAULT_LEVEL,
    batches: int = DEFAULT_BATCHES,
    bounds: tuple[float, float] | None = None,
) -> TimeAverage:
    """Mean of the series with the non-overlapping batch-means confidence interval (Schmeiser 1982; Law 2015,
    sec. 9.5.3): the n values are cut into k = min(batches, n // 2) equal batches (the first n mod k values are left
    out, so the interval describes the end of the run), and the interval is Zbar +- t_{(1+level)/2, k-1} * s_Z / sqrt(k)
    over the batch means Z. Batch means of an autocorrelated series are nearly independent once the batches are
    much longer than its correlation time, which a naive s / sqrt(n) interval ignores. `bounds` clips the interval
    to a quantity's range (e.g. (0, 1) for a share). Fewer than four values: NaN interval.
    """
    if not 0 < level < 1:
        raise ValueError(f"level: must be in (0, 1), got {level}")
    if not isinstance(batches, int | np.integer) or batches < 2:
        raise ValueError(f"batches: must be an integer >= 2, got {batches!r}")
    values = _finite(series)
    if values.size == 0:
        return TimeAverage(math.nan, math.nan, math.nan, math.nan, 0, 0, math.nan, level)
    count = min(batches, values.size // 2)
    if count < 2:
        mean = float(values.mean())
        return TimeAverage(mean, math.nan, math.nan, math.nan, count, 0, math.nan, level)
    size = values.size // count
    means = values[values.size - count * size :].reshape(count, size).mean(axis=1)
    centre = float(means.mean())
    spread = float(means.std(ddof=1))
    half_width = float(stats.t.ppf((1 + level) / 2, count - 1) * spread / math.sqrt(count))
    deviations = means - centre
    denominator = float(np.sum(deviations**2))
    lag1 = float(np.sum(deviations[1:] * deviations[:-1]) / denominator) if denominator > 0 else math.nan
    low, high = centre - half_width, centre + half_width
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return TimeAverage(centre, low, high, half_width, count, size, lag1, level)


# --------------------------------------------------------------------------------- stationarity (KPSS and ADF)


@dataclass(frozen=True)
class StationarityVerdict:
    """KPSS + ADF verdict on the post-warm-up series, at each KPSS bandwidth ("window") tried.

    verdict, the joint reading of the two tests at every window: "stationary" (KPSS keeps level stationarity and
    ADF rejects a unit root), "not stationary" (KPSS rejects stationarity and ADF keeps the unit root),
    "inconclusive" (at some window neither test rejects, which is too little evidence either way, or both do, as
    a break or a trend makes them; or the windows disagree; or the tests say stationary after a warm-up MSER-5
    could not place, `WarmUp.reliable`), or "too short". `stationary` is True only for
    "stationary"; `why` says what made a verdict inconclusive.
    """

    verdict: str
    warmup: WarmUp
    values: int
    alpha: float
    windows: tuple[str, ...]
    kpss_lags: tuple[int, ...]
    kpss_p_values: tuple[float, ...]
    adf_p_value: float
    adf_rank_deficient: bool = False

    @property
    def stationary(self) -> bool:
        """True iff every window's verdict is stationary."""
        return self.verdict == "stationary"

    @property
    def robust(self) -> bool:
        """True iff the windows agree (the verdict does not depend on the bandwidth)."""
        return self.verdict in ("stationary", "not stationary")

    @property
    def why(self) -> str:
        """For an inconclusive verdict, what the tests said; empty otherwise."""
        if self.verdict != "inconclusive":
            return ""
        if self.adf_rank_deficient:
            return "ADF's regression was rank-deficient (a mostly constant series), so its p-value means nothing"
        readings = {_joint_reading(p_value, self.adf_p_value, self.alpha) for p_value in self.kpss_p_values}
        if readings == {"stationary"} and not self.warmup.reliable:
            return (
                "both tests read the tail as stationary, but MSER-5 found no end of the warm-up (its minimum is at "
                "the last cut tried), so the tail may be a level stretch of a drifting series: run longer"
            )
        if len(readings) > 1:
            return "the KPSS windows disagree"
        if self.adf_p_value >= self.alpha:
            return "neither KPSS nor ADF rejects: too little evidence either way"
        return "both KPSS and ADF reject (as a break or a trend in the series makes them)"


def _joint_reading(kpss_p_value: float, adf_p_value: float, alpha: float) -> str:
    """One window's joint reading of KPSS (H0 stationary) and ADF (H0 unit root)."""
    kpss_keeps, adf_rejects = kpss_p_value >= alpha, adf_p_value < alpha
    if kpss_keeps and adf_rejects:
        return "stationary"
    if not kpss_keeps and not adf_rejects:
        return "not stationary"
    return "inconclusive"


def kpss_windows(values: int) -> dict[str, int | str]:
    """The KPSS Bartlett bandwidths tried: "auto" (Hobijn, Franses & Ooms 1998, data-dependent) and Schwert's
    (1989) short and long rules floor(4 (n/100)^(1/4)) and floor(12 (n/100)^(1/4)), the two conventional fixed
    choices; a verdict that holds for all three does not hinge on the window."""
    quarter = (values / 100.0) ** 0.25
    return {
        "auto": "auto",
        "schwert4": max(1, min(values - 1, math.floor(4 * quarter))),
        "schwert12": max(1, min(values - 1, math.floor(12 * quarter))),
    }


def stationarity_verdict(
    series: Sequence[float] | np.ndarray,
    alpha: float = DEFAULT_ALPHA,
    warmup: WarmUp | None = None,
) -> StationarityVerdict:
    """Is the series stationary after its warm-up? KPSS (Kwiatkowski, Phillips, Schmidt & Shin 1992; H0 level
    stationarity) and ADF (Said & Dickey 1984; H0 unit root) with its lag chosen by AIC up to Schwert's (1989)
    floor(12 (n/100)^(1/4)) (Ng & Perron 1995; statsmodels' own default), both from statsmodels.

    The warm-up (MSER-5 unless given) is cut off first. At each KPSS window of `kpss_windows` the two tests are
    read jointly (`StationarityVerdict`): stationary iff KPSS does not reject at `alpha` and ADF rejects; not
    stationary iff KPSS rejects and ADF does not; otherwise inconclusive. (ADF at the fixed long lag had little
    power on short series, and "neither rejects" was read as not stationary: white noise of 50 values was called
    not stationary 181 times in 200.) KPSS p-values are interpolated in
    [0.01, 0.1] by statsmodels (a p-value printed as 0.1 means ">= 0.1"). A constant post-warm-up series is
    stationary; fewer than MIN_STATIONARITY_VALUES values after the warm-up give "too short".
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: must be in (0, 1), got {alpha}")
    values = _finite(series)
    cut = warmup if warmup is not None else mser_warmup(values)
    tail = values[cut.index :]
    windows = kpss_windows(max(tail.size, 2))
    names = tuple(windows)
    if tail.size < MIN_STATIONARITY_VALUES:
        return StationarityVerdict("too short", cut, int(tail.size), alpha, names, (), (), math.nan)
    if np.ptp(tail) == 0:
        return StationarityVerdict(
            "stationary", cut, int(tail.size), alpha, names, (0,) * len(names), (1.0,) * len(names), 0.0
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InterpolationWarning)
        # One regression per test: BLAS threads only add contention at this size.
        with threadpool_limits(limits=1):
            with warnings.catch_warnings(record=True) as adf_warnings:
                warnings.simplefilter("always")
                adf_p = float(adfuller(tail, maxlag=int(windows["schwert12"]), autolag="AIC", result_object=False)[1])
        degenerate = False
        for warning in adf_warnings:  # a mostly constant tail: the lag regression has collinear columns
            if "rank-deficient" in str(warning.message):
                degenerate = True
            else:
                warnings.warn(warning.message, warning.category, stacklevel=2)
        lags, p_values = [], []
        for bandwidth in windows.values():
            _, p_value, used, _ = kpss(tail, regression="c", nlags=bandwidth, result_object=False)
            lags.append(int(used))
            p_values.append(float(p_value))
    readings = {_joint_reading(p_value, adf_p, alpha) for p_value in p_values}
    verdict = readings.pop() if len(readings) == 1 else "inconclusive"
    if (verdict == "stationary" and not cut.reliable) or degenerate:  # MSER cut a level stretch, as of a drift
        verdict = "inconclusive"
    return StationarityVerdict(
        verdict, cut, int(tail.size), alpha, names, tuple(lags), tuple(p_values), adf_p, adf_rank_deficient=degenerate
    )


# ------------------------------------------------------------------------------------------ strategy shares


def _wide_shares(shares: pd.DataFrame) -> pd.DataFrame:
    """time x strategy table of shares, 0 where a strategy is missing from a sample."""
    wide = shares.pivot_table(index="time", columns="strategy", values="share", aggfunc="sum", fill_value=0.0)
    return wide.sort_index()


def time_averaged_shares(
    shares: pd.DataFrame | EventSource, start_time: float | None = None, level: float = DEFAULT_LEVEL
) -> pd.DataFrame:
    """Per strategy, the time average of its share from `start_time` (default: the first sample) to the last
    sample: each sample's share holds until the next sample, the one before `start_time` from `start_time`
    (left-step integral / elapsed time), and around it the half-width of the batch-means interval of the
    sampled shares (`batch_means_interval`), clipped to [0, 1]. (The
    batch-means interval's own centre is an unweighted mean of the last samples, which can differ from the time
    average: a share that was non-zero only in a sample the batches leave out had [0, 0] around 0.0125.)

    `shares` is a frame as `analysis.metrics.strategy_shares` returns, or what it reads: a run directory or an
    events frame, as its neighbours `stability_summary` and `task_outcomes` take.

    Columns: strategy, time_average, low, high, samples.
    """
    columns = ["strategy", "time_average", "low", "high", "samples"]
    if not (isinstance(shares, pd.DataFrame) and {"time", "strategy", "share"} <= set(shares.columns)):
        shares = strategy_shares(shares)
    if shares.empty:
        return pd.DataFrame({name: pd.Series(dtype="float64") for name in columns}).astype({"strategy": "string"})
    wide = _wide_shares(shares)
    stepped = wide  # the left-step function from start_time: the share in force there, then every sample after
    if start_time is not None:
        before = wide[wide.index < start_time]
        wide = stepped = wide[wide.index >= start_time]
        if len(before) and (wide.empty or wide.index[0] > start_time):
            in_force = before.iloc[[-1]].set_axis([float(start_time)])
            stepped = pd.concat([in_force, wide])
    times = stepped.index.to_numpy(dtype=float)
    durations = np.diff(times)
    rows = []
    for strategy in wide.columns:
        series = wide[strategy].to_numpy(dtype=float)  # the samples, for the interval and the count
        steps = stepped[strategy].to_numpy(dtype=float)
        if durations.size and durations.sum() > 0:
            average = float(np.sum(steps[:-1] * durations) / durations.sum())
        else:
            average = float(steps.mean()) if steps.size else math.nan
        half_width = batch_means_interval(series, level).half_width if series.size else math.nan
        rows.append(
            {
                "strategy": strategy,
                "time_average": average,
                "low": max(average - half_width, 0.0) if math.isfinite(half_width) else math.nan,
                "high": min(average + half_width, 1.0) if math.isfinite(half_width) else math.nan,
                "samples": int(series.size),
            }
        )
    return pd.DataFrame(rows, columns=columns).astype({"strategy": "string"})


FATE_COLUMNS = {
    "strategy": "string",
    "final_share": "float64",
    "extinct": "bool",
    "extinction_time": "float64",
    "extinction_dwell": "float64",
    "fixated": "bool",
    "fixation_time": "float64",
    "fixation_dwell": "float64",
    "samples_at_zero": "float64",
    "samples_at_one": "float64",
    "min_dwell": "float64",
}


def extinction_and_fixation(shares: pd.DataFrame, min_dwell: float = 0.0) -> pd.DataFrame:
    """Per strategy: final share, extinction (share 0 to the end) and fixation (share 1 to the end), each only if
    the state has held for at least `min_dwell` time units by the last sample.

    The dwell is the time from the first sample of the final run at the level to the last sample (0 when only the
    last sample is at it). A state that held for less than min_dwell is not absorbing yet: with mutation a share of
    1 seen in the last two samples is not fixation. samples_at_zero / samples_at_one are the fractions of samples
    at each level over the whole series (how often the state was visited). `shares` has columns time, strategy,
    share (as `analysis.metrics.strategy_shares` returns); a strategy missing from a sample time has share 0.
    Times and dwells are NaN when the state did not happen.
    """
    if not min_dwell >= 0:
        raise ValueError(f"min_dwell: must be >= 0, got {min_dwell}")
    if shares.empty:
        return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in FATE_COLUMNS.items()})
    wide = _wide_shares(shares)
    times = wide.index.to_numpy(dtype=float)
    rows = []
    for strategy in wide.columns:
        series = wide[strategy].to_numpy(dtype=float)
        extinct, extinction_time, extinction_dwell = _absorbed(series, times, 0.0, min_dwell)
        fixated, fixation_time, fixation_dwell = _absorbed(series, times, 1.0, min_dwell)
        rows.append(
            {
                "strategy": strategy,
                "final_share": float(series[-1]),
                "extinct": extinct,
                "extinction_time": extinction_time,
                "extinction_dwell": extinction_dwell,
                "fixated": fixated,
                "fixation_time": fixation_time,
                "fixation_dwell": fixation_dwell,
                "samples_at_zero": float(np.mean(np.abs(series) <= SHARE_TOLERANCE)),
                "samples_at_one": float(np.mean(np.abs(series - 1.0) <= SHARE_TOLERANCE)),
                "min_dwell": float(min_dwell),
            }
        )
    return pd.DataFrame(rows, columns=list(FATE_COLUMNS)).astype(FATE_COLUMNS)


def _absorbed(series: np.ndarray, times: np.ndarray, level: float, min_dwell: float) -> tuple[bool, float, float]:
    """(held, since, dwell): whether the series ends at `level` for at least min_dwell, from when, for how long.

    since and dwell are reported whenever the series ends at the level (even if too briefly), NaN otherwise."""
    at_level = np.abs(series - level) <= SHARE_TOLERANCE
    if not at_level[-1]:
        return False, math.nan, math.nan
    leaving = np.flatnonzero(~at_level)
    first = int(leaving[-1]) + 1 if leaving.size else 0
    dwell = float(times[-1] - times[first])
    return dwell >= min_dwell, float(times[first]), dwell


# ------------------------------------------------------------------------------------------ across seeds


def absorption_probabilities(
    outcomes: Iterable[str], categories: Iterable[str] = (), level: float = DEFAULT_LEVEL
) -> pd.DataFrame:
    """Across runs (seeds), the probability of each end state with its Wilson score interval (Wilson 1927, via
    statsmodels `proportion_confint(method="wilson")`), which stays inside [0, 1] and behaves at 0 and n.

    `outcomes` holds one end state per run: the fixated strategy, or "" for a run that ended in coexistence
    (reported as "none"). `categories` adds states that never happened (probability 0 with a non-trivial upper
    bound). Columns: outcome, runs_with, runs, probability, low, high.
    """
    if not 0 < level < 1:
        raise ValueError(f"level: must be in (0, 1), got {level}")
    labels = [outcome if outcome else "none" for outcome in outcomes]
    runs = len(labels)
    if runs == 0:
        raise ValueError("outcomes: need at least one run, got none")
    names = list(dict.fromkeys([*sorted(set(labels)), *categories]))
    rows = []
    for name in sorted(names):
        count = labels.count(name)
        low, high = proportion_confint(count, runs, alpha=1 - level, method="wilson")
        rows.append(
            {"outcome": name, "runs_with": count, "runs": runs, "probability": count / runs, "low": low, "high": high}
        )
    return pd.DataFrame(rows, columns=["outcome", "runs_with", "runs", "probability", "low", "high"])


# ------------------------------------------------------------------------------------------ run summary


def stability_summary(
    source: EventSource,
    window: int = DEFAULT_WINDOW,
    alpha: float = DEFAULT_ALPHA,
    min_dwell_fraction: float = DEFAULT_MIN_DWELL_FRACTION,
) -> dict[str, object]:
    """Stability headline of a run from its task welfare series and strategy shares.

    Welfare: MSER-5 warm-up (welfare_warmup_tasks, and welfare_warmup_reliable: False when the run is too short
    to tell; stationary_from_task / _time = the first task after it when the verdict is stationary), the KPSS +
    ADF verdict over three windows (welfare_stationarity, kpss_p_min, adf_p), the time average after the warm-up
    with its 95% batch-means interval (welfare_time_average is the batch means' mean: of n tasks after the
    warm-up in k batches, the first n mod k are left out, as `batch_means_interval` says), and the final `window`
    tasks' mean and variance. Strategies: extinction and fixation must have held for min_dwell_fraction of the
    sampled span (reported as min_dwell_s); the fixated strategy's dwell is fixation_dwell_s. Shares sampled at
    one time only have no span to dwell in: no strategy is then called extinct or fixated (min_dwell_s NaN).
    """
    if not 0 <= min_dwell_fraction <= 1:
        raise ValueError(f"min_dwell_fraction: must be in [0, 1], got {min_dwell_fraction}")
    frame = events_of(source, ["task_finished", "strategy_share", "action_chosen"])
    tasks = task_outcomes(frame)
    welfare = tasks["welfare"].to_numpy(dtype=float)
    verdict = stationarity_verdict(welfare, alpha) if welfare.size else None
    start = verdict.warmup.index if verdict is not None else 0
    average = batch_means_interval(welfare[start:]) if welfare.size else None
    windows = window_statistics(welfare, window)
    shares = strategy_shares(frame)
    span = float(shares["time"].max() - shares["time"].min()) if len(shares) else 0.0
    min_dwell = min_dwell_fraction * span if span > 0 else math.inf  # one sampling time: nothing has dwelt
    fates = extinction_and_fixation(shares, min_dwell)
    fixated = fates[fates["fixated"]]
    stationary = verdict is not None and verdict.stationary
    return {
        "welfare_warmup_tasks": float(start) if verdict is not None else math.nan,
        "welfare_warmup_reliable": bool(verdict.warmup.reliable) if verdict is not None else False,
        "welfare_stationarity": verdict.verdict if verdict is not None else "too short",
        "welfare_stationary": stationary,
        "kpss_p_min": min(verdict.kpss_p_values) if verdict is not None and verdict.kpss_p_values else math.nan,
        "adf_p": verdict.adf_p_value if verdict is not None else math.nan,
        "stationary_from_task": float(tasks["task"].iloc[start]) if stationary else math.nan,  # NaN: a float
        "stationary_from_time": float(tasks["time"].iloc[start]) if stationary else math.nan,
        "welfare_time_average": average.mean if average is not None else math.nan,
        "welfare_ci_low": average.low if average is not None else math.nan,
        "welfare_ci_high": average.high if average is not None else math.nan,
        "final_window_mean": float(windows["mean"].iloc[-1]) if len(windows) else math.nan,
        "final_window_variance": float(windows["variance"].iloc[-1]) if len(windows) else math.nan,
        "extinct_strategies": ",".join(sorted(fates[fates["extinct"]]["strategy"].tolist())),
        "fixated_strategy": str(fixated["strategy"].iloc[0]) if len(fixated) else "",
        "fixation_dwell_s": float(fixated["fixation_dwell"].iloc[0]) if len(fixated) else math.nan,
        "min_dwell_s": min_dwell if math.isfinite(min_dwell) else math.nan,
    }
