"""Metrics of one run: from its event frame to tidy pandas frames, per task and per aggregation round.

Every public function takes a run directory or an events DataFrame (as `analysis.load_events` returns, or a
hand-made frame with the columns of `sim/events.py`), reads only the kinds it needs, never re-runs anything, and
returns a frame with fixed columns: empty, with the same columns, when the run has none of those events.

Per task (one game round of SPEC B, one FL task of SPEC A): welfare (`task_finished`), participation by strategy
(`action_chosen`), free riding (`provider_payoff`, `update_sent`), budget use (`task_configured`,
`round_finished`, `budget_check`). Per aggregation round: rewards and their Gini coefficient, Shapley fairness
(`reward_paid`), the mechanism's welfare (A.7), consensus costs (`consensus_decided`). Over time: strategy shares
(`strategy_share`, or `action_chosen` per task when the run has no share samples). Yardsticks: each task's
social optimum, full cooperation and all-defect Nash welfare (`welfare_reference`, SPEC B.1, B.2) beside what the
run achieved.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from flmarket.analysis.load import checked_run, load_events
from flmarket.market.consensus.poet import TimerVerdict
from flmarket.market.public_goods import welfare_position


class RunEvents:
    """A run's events read one kind at a time, on first use, and kept: for readers (a report, a sweep's summary)
    that call many metrics on one run. Each kind is its own narrow frame (its fields only), so nothing is padded
    with the other kinds' columns and no scan holds every kind at once; `events_of` joins the kinds it is asked
    for. A kind the run never declared (an older run) reads as no events."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._frames: dict[str, pd.DataFrame] = {}
        self._declared: set[str] | None = None

    def frame(self, kinds: Sequence[str]) -> pd.DataFrame:
        """The events of `kinds`, kind after kind (`events_of` puts them in seq order)."""
        if self._declared is None:
            self._declared = set(checked_run(self.run_dir).schema)
        wanted = [kind for kind in dict.fromkeys(kinds) if kind in self._declared]
        for kind in wanted:
            if kind not in self._frames:
                self._frames[kind] = load_events(self.run_dir, kinds=[kind])
        parts = [self._frames[kind] for kind in wanted if not self._frames[kind].empty]
        if not parts:
            return pd.DataFrame(columns=["time", "seq", "kind", "agent"])
        return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)  # events_of orders by seq


EventSource = str | Path | pd.DataFrame | RunEvents

FREE_RIDER_STRATEGY = "ALLD"
HONEST_BEHAVIOUR = "honest"

TASK_COLUMNS = {
    "task": "int64",
    "time": "float64",
    "players": "int64",
    "total_participation": "int64",
    "welfare": "float64",
    "welfare_per_player": "float64",
    "precision": "float64",
}
PARTICIPATION_COLUMNS = {
    "task": "int64",
    "strategy": "string",
    "providers": "int64",
    "participants": "int64",
    "mean_action": "float64",
    "participation_rate": "float64",
    "paid_providers": "int64",
    "realised_rate": "float64",
}
FREE_RIDING_COLUMNS = {
    "task": "int64",
    "providers": "int64",
    "free_riders": "int64",
    "free_rider_share": "float64",
    "free_rider_payoff": "float64",
    "contributor_payoff": "float64",
    "payoff_gap": "float64",
}
REWARD_COLUMNS = {
    "task": "int64",
    "round": "int64",
    "rewarded": "int64",
    "total_reward": "float64",
    "mean_reward": "float64",
    "min_reward": "float64",
    "max_reward": "float64",
    "reward_gini": "float64",
    "provider_cost": "float64",
    "provider_welfare": "float64",
}
FAIRNESS_COLUMNS = {"providers": "int64", "fairness": "float64"}
BUDGET_COLUMNS = {
    "task": "int64",
    "budget": "float64",
    "fee_ratio": "float64",
    "round_cap": "int64",
    "rounds": "int64",
    "pool": "float64",
    "paid": "float64",
    "provider_budget": "float64",
    "committee_budget": "float64",
    "committee_spent": "float64",
    "pool_use": "float64",
    "provider_budget_use": "float64",
    "committee_budget_use": "float64",
    "round_cap_use": "float64",
    "balanced": "boolean",
    "within_budget": "boolean",
}
CONSENSUS_COLUMNS = {
    "task": "int64",
    "round": "int64",
    "view": "int64",
    "messages": "int64",
    "bytes": "int64",
    "latency_s": "float64",
}
ROUND_COLUMNS = {
    "task": "int64",
    "round": "int64",
    "participants": "int64",
    "quality": "float64",
    "loss": "float64",
    "accuracy": "float64",
    "pool": "float64",
    "paid": "float64",
    "budget_use": "float64",
    **{name: dtype for name, dtype in REWARD_COLUMNS.items() if name not in ("task", "round")},
    "fairness": "float64",
    "committee_cost": "float64",
    "welfare": "float64",
    "free_rider_updates": "int64",
    "consensus_messages": "int64",
    "consensus_latency_s": "float64",
}
REFERENCE_COLUMNS = {
    "task": "int64",
    "total_participation": "int64",
    "welfare": "float64",
    "optimum_total": "int64",
    "optimum_welfare": "float64",
    "full_cooperation_total": "int64",
    "full_cooperation_welfare": "float64",
    "nash_welfare": "float64",
}
SHARE_COLUMNS = {
    "time": "float64",
    "task": "Int64",
    "strategy": "string",
    "count": "int64",
    "share": "float64",
    "origin": "string",
}


# ------------------------------------------------------------------------------------------------- helpers


def events_of(source: EventSource, kinds: Sequence[str]) -> pd.DataFrame:
    """The events of the given kinds from a run directory or a frame, in seq (else time) order."""
    if isinstance(source, pd.DataFrame):
        if "kind" not in source.columns:
            raise ValueError(f"source: an events frame needs a 'kind' column, got columns {list(source.columns)}")
        frame = source[source["kind"].astype(str).isin(list(kinds))]
    elif isinstance(source, RunEvents):
        frame = source.frame(kinds)
    elif isinstance(source, str | Path):
        frame = load_events(source, kinds=list(kinds))
    else:
        raise ValueError(
            f"source: must be a run directory, a RunEvents or an events DataFrame, got {type(source).__name__}"
        )
    order = "seq" if "seq" in frame.columns else ("time" if "time" in frame.columns else None)
    if order is not None:
        frame = frame.sort_values(order, kind="stable")
    return frame.reset_index(drop=True)


def _of_kind(frame: pd.DataFrame, kind: str, columns: Iterable[str], optional: Iterable[str] = ()) -> pd.DataFrame:
    """The rows of one kind with the given columns; empty when the kind is absent.

    A frame that has rows of the kind but not one of `columns` was loaded without them (`load_events(...,
    columns=...)`): that is a ValueError naming them, not an empty answer. Only `optional` columns (fields that
    older logs lack, for which the caller has a fallback) may be missing, and then the answer is empty."""
    columns = list(columns)
    if frame.empty or "kind" not in frame.columns:
        return pd.DataFrame(columns=columns)
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        present = bool((frame["kind"].astype(str) == kind).any())
        required = [name for name in missing if name not in set(optional)]
        if present and required:
            raise ValueError(
                f"events: the {kind} rows lack the columns {', '.join(required)}, which this measure reads "
                "(load the run with every column of its kinds, or pass the run directory)"
            )
        return pd.DataFrame(columns=columns)
    rows = frame[frame["kind"].astype(str) == kind]
    return rows[columns].reset_index(drop=True)


def empty_frame(columns: dict[str, str]) -> pd.DataFrame:
    """A frame with no rows and the given column dtypes."""
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})


def _typed(frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Select and order the columns and give them their declared dtypes."""
    frame = frame.reset_index(drop=True)
    out = {}
    for name, dtype in columns.items():
        values = frame[name] if name in frame.columns else pd.Series([pd.NA] * len(frame))
        if dtype == "int64" and values.isna().any():
            dtype = "Int64"
        if dtype in ("int64", "Int64", "float64"):
            values = pd.to_numeric(values)
        out[name] = values.astype(dtype)
    return pd.DataFrame(out)


def gini(values: Iterable[float]) -> float:
    """Gini coefficient G = sum_i sum_j |x_i - x_j| / (2 n^2 mean(x)) (mean absolute difference form).

    Computed from the sorted values in O(n log n): G = 2 sum_i i x_(i) / (n sum x) - (n + 1) / n with i = 1..n.
    Zero for equal values, (n - 1) / n when one of n holds everything. NaN for no values or a mean <= 0 (a
    round whose rewards sum to zero or less has no meaningful share of the total); negative values (charges of
    SPEC A.5) are kept, so G may then exceed 1.
    """
    if isinstance(values, str | bytes):
        raise TypeError(f"values: must be numbers, got the string {values!r}")  # '123' was read as 1, 2, 3
    array = np.sort(np.asarray(list(values), dtype=float))
    if array.ndim != 1:
        raise ValueError(f"values: must be one-dimensional, got shape {array.shape}")
    count = array.size
    if count == 0 or not array.sum() > 0:
        return math.nan
    if array[0] == array[-1]:
        return 0.0  # equal values: exactly 0 (the sorted-sum form leaves +-2e-16)
    ranks = np.arange(1, count + 1)
    value = float(2.0 * np.sum(ranks * array) / (count * array.sum()) - (count + 1) / count)
    return max(value, 0.0) if array[0] >= 0 else value  # nearly equal values can give -4e-16 in floating point


def pearson(first: Iterable[float], second: Iterable[float]) -> float:
    """Pearson correlation of two equally long samples; NaN for fewer than two pairs or a constant sample."""
    x = np.asarray(list(first), dtype=float)
    y = np.asarray(list(second), dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"second: must have as many values as first ({x.size}), got {y.size}")
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


# ------------------------------------------------------------------------------------------------ per task


def task_outcomes(source: EventSource) -> pd.DataFrame:
    """Per task: players, total participation sum_j y_j, social welfare P(y) = sum_i U_i (SPEC B.1), precision."""
    frame = events_of(source, ["task_finished"])
    rows = _of_kind(frame, "task_finished", ["task", "time", "players", "total_participation", "welfare", "precision"])
    if rows.empty:
        return empty_frame(TASK_COLUMNS)
    rows = rows.sort_values("task", kind="stable")
    players = pd.to_numeric(rows["players"]).astype(float)
    rows["welfare_per_player"] = np.where(
        players > 0, rows["welfare"].astype(float) / players.where(players > 0), np.nan
    )
    return _typed(rows, TASK_COLUMNS)


def welfare_against_references(source: EventSource) -> pd.DataFrame:
    """Per task: realised total participation and welfare (`task_finished`) beside the references of the task's
    game at its start (`welfare_reference`, SPEC B.1, B.2): the welfare-maximising total (cheapest providers first)
    and its welfare, full cooperation (all play R) and the all-defect Nash welfare (0). Tasks without a reference
    (no players) are left out. The realised welfare is over the providers still online at the task's end.
    """
    frame = events_of(source, ["task_finished", "welfare_reference"])
    finished = _of_kind(frame, "task_finished", ["task", "total_participation", "welfare"])
    references = _of_kind(
        frame,
        "welfare_reference",
        [
            "task",
            "optimum_total",
            "optimum_welfare",
            "full_cooperation_total",
            "full_cooperation_welfare",
            "nash_welfare",
        ],
    )
    if finished.empty or references.empty:
        return empty_frame(REFERENCE_COLUMNS)
    table = finished.merge(references.drop_duplicates("task", keep="last"), on="task", how="inner")
    return _typed(table.sort_values("task", kind="stable"), REFERENCE_COLUMNS)


def reference_summary(source: EventSource) -> dict[str, float]:
    """Means over tasks of the realised and reference participation and welfare, and where the run sits:
    welfare_position = (mean P - mean P_Nash) / (mean P_opt - mean P_Nash), 0 at the all-defect Nash equilibrium
    and 1 at the social optimum; participation_position = mean T / mean T_opt (NaN without references)."""
    table = welfare_against_references(source)
    mean_welfare = _mean(table["welfare"])
    optimum = _mean(table["optimum_welfare"])
    nash = _mean(table["nash_welfare"])
    optimum_total = _mean(table["optimum_total"])
    mean_total = _mean(table["total_participation"])
    return {
        "mean_total_participation": mean_total,
        "optimum_total_participation": optimum_total,
        "full_cooperation_total": _mean(table["full_cooperation_total"]),
        "optimum_welfare": optimum,
        "full_cooperation_welfare": _mean(table["full_cooperation_welfare"]),
        "nash_welfare": nash,
        "welfare_position": welfare_position(mean_welfare, nash, optimum) if len(table) else math.nan,
        "participation_position": mean_total / optimum_total if optimum_total > 0 else math.nan,
    }


def participation_by_strategy(source: EventSource) -> pd.DataFrame:
    """Per task and strategy: what providers chose, and what was realised for those paid at the task's end.

    Chosen: providers (an `action_chosen` each), participants (y_i > 0), mean y_i and participation_rate
    mean(y_i) / R. Realised: paid_providers (a `provider_payoff` each: those still online when the task settled)
    and realised_rate, the mean over them of realised_rounds / R, the rounds whose honest update entered the
    aggregate (the y_i their utility is paid on, SPEC B.1; a free rider's untrained update does not count). The
    two differ when providers leave mid-task or an update is rejected, late or abandoned. `flmarket run`'s
    "participation y/R" and the live view's panel are the realised rate over all tasks:
    sum(realised_rate * paid_providers) / sum(paid_providers).

    R is the task's number of rounds (`task_configured.rounds`, the y_i in {0..R} of SPEC B.1: the rounds asked
    for, capped by what the budget pays for; a log written before that field has only `task_posted.rounds`, the
    rounds asked for, which is right unless the budget capped them); the rates are NaN when the run did not log
    it, and realised_rate is NaN for a log without `provider_payoff.realised_rounds` (written
    before it was added) or a task and strategy without paid providers.
    """
    frame = events_of(source, ["action_chosen", "task_configured", "task_posted", "provider_payoff"])
    actions = _of_kind(frame, "action_chosen", ["task", "strategy", "action"])
    if actions.empty:
        return empty_frame(PARTICIPATION_COLUMNS)
    actions = actions.astype({"action": float, "strategy": str})
    actions["participant"] = (actions["action"] > 0).astype(int)
    table = (
        actions.groupby(["task", "strategy"], sort=True)
        .agg(providers=("action", "size"), participants=("participant", "sum"), mean_action=("action", "mean"))
        .reset_index()
    )
    configured = _of_kind(frame, "task_configured", ["task", "rounds"], optional=["rounds"]).dropna(subset=["rounds"])
    if configured.empty:
        configured = _of_kind(frame, "task_posted", ["task", "rounds"])
    table = table.merge(configured.drop_duplicates("task"), on="task", how="left")
    rounds = pd.to_numeric(table["rounds"]).astype(float)
    table["participation_rate"] = table["mean_action"] / rounds.where(rounds > 0)
    paid = _of_kind(frame, "provider_payoff", ["task", "strategy", "realised_rounds"], optional=["realised_rounds"])
    if not paid.empty:
        paid = paid.astype({"task": int, "strategy": str, "realised_rounds": float})
        realised = (
            paid.groupby(["task", "strategy"], sort=True)
            .agg(paid_providers=("realised_rounds", "size"), mean_realised=("realised_rounds", "mean"))
            .reset_index()
        )
        table = table.astype({"task": int}).merge(realised, on=["task", "strategy"], how="left")
        table["realised_rate"] = table["mean_realised"] / rounds.where(rounds > 0)
        table["paid_providers"] = table["paid_providers"].fillna(0)
    else:
        table["paid_providers"] = 0
        table["realised_rate"] = float("nan")
    return _typed(table, PARTICIPATION_COLUMNS)


def _provider_payoffs(frame: pd.DataFrame) -> pd.DataFrame:
    """Per task and provider: strategy and payoff (U_i of SPEC B.1; else sum over rounds of rho_i - k_i C_unit)."""
    payoffs = _of_kind(frame, "provider_payoff", ["task", "agent", "strategy", "utility"])
    if not payoffs.empty:
        return payoffs.rename(columns={"utility": "payoff"}).astype({"payoff": float})
    rewards = _of_kind(frame, "reward_paid", ["task", "agent", "reward", "unit_cost", "local_iterations"])
    if rewards.empty:
        return pd.DataFrame(columns=["task", "agent", "strategy", "payoff"])
    rewards["payoff"] = rewards["reward"].astype(float) - rewards["local_iterations"].astype(float) * rewards[
        "unit_cost"
    ].astype(float)
    payoffs = rewards.groupby(["task", "agent"], sort=True)["payoff"].sum().reset_index()
    strategies = _of_kind(frame, "action_chosen", ["task", "agent", "strategy"]).drop_duplicates(["task", "agent"])
    return payoffs.merge(strategies, on=["task", "agent"], how="left")


def free_riding(source: EventSource) -> pd.DataFrame:
    """Per task: free riders, their share, and the payoff gap mean(U free riders) - mean(U contributors).

    A free rider (SPEC C, D.5) is a provider playing ALLD in the task, or one that sent any update whose
    `behaviour` is not "honest" (plain, disguised or stale). A positive gap means free riding pays.
    """
    frame = events_of(source, ["provider_payoff", "reward_paid", "action_chosen", "update_sent"])
    payoffs = _provider_payoffs(frame)
    if payoffs.empty:
        return empty_frame(FREE_RIDING_COLUMNS)
    updates = _of_kind(frame, "update_sent", ["task", "agent", "behaviour"])
    dishonest = updates[updates["behaviour"].astype(str) != HONEST_BEHAVIOUR][["task", "agent"]].astype(int)
    dishonest = dishonest.drop_duplicates().assign(dishonest=True)
    payoffs = payoffs.astype({"task": int, "agent": int, "payoff": float})
    payoffs = payoffs.merge(dishonest, on=["task", "agent"], how="left")
    payoffs["free_rider"] = (payoffs["strategy"].astype(str) == FREE_RIDER_STRATEGY).to_numpy() | payoffs[
        "dishonest"
    ].notna().to_numpy()
    payoffs["rider_payoff"] = payoffs["payoff"].where(payoffs["free_rider"])
    payoffs["contributor_payoff"] = payoffs["payoff"].where(~payoffs["free_rider"])
    table = (
        payoffs.groupby("task", sort=True)
        .agg(
            providers=("payoff", "size"),
            free_riders=("free_rider", "sum"),
            free_rider_payoff=("rider_payoff", "mean"),  # NaN for a task without free riders
            contributor_payoff=("contributor_payoff", "mean"),
        )
        .reset_index()
    )
    table["free_rider_share"] = table["free_riders"] / table["providers"]
    table["payoff_gap"] = table["free_rider_payoff"] - table["contributor_payoff"]
    return _typed(table, FREE_RIDING_COLUMNS)


def budget_use(source: EventSource) -> pd.DataFrame:
    """Per task: what the mechanism spent of its budget (SPEC A.5, A.6).

    From `task_configured` (B, sigma, r_max, committee cost per round) and the task's `round_finished` events:
    provider budget B (1 - sigma), committee budget B sigma, rounds r, pool = sum of the rounds' Pi_r, paid = sum of
    the rewards paid; pool_use = paid / pool, provider_budget_use = paid / (B (1 - sigma)), committee_budget_use =
    r * sum_k C_com(n_k) / (B sigma) (B 15a), round_cap_use = r / r_max. From the task's `budget_check`s (NA
    without them): `balanced` is False if SPEC A.6's B 15a or B 15b failed in any round (B 15b compares the
    providers' claimed costs with B (1 - sigma), so it fails when those costs exceed the budget, as IR does);
    `within_budget` is False if the money paid (committee fees, rewards) ever exceeded its share.
    """
    frame = events_of(source, ["task_configured", "round_finished", "budget_check"])
    configured = _of_kind(
        frame, "task_configured", ["task", "budget", "fee_ratio", "round_cap", "committee_cost"]
    ).drop_duplicates("task", keep="last")
    if configured.empty:
        return empty_frame(BUDGET_COLUMNS)
    finished = _of_kind(frame, "round_finished", ["task", "round", "pool", "paid"])
    spent = finished.groupby("task").agg(rounds=("round", "size"), pool=("pool", "sum"), paid=("paid", "sum"))
    table = configured.merge(spent.reset_index(), on="task", how="left")
    table["rounds"] = table["rounds"].fillna(0).astype(int)
    table[["pool", "paid"]] = table[["pool", "paid"]].astype(float).fillna(0.0)
    budget = table["budget"].astype(float)
    fee = table["fee_ratio"].astype(float)
    table["provider_budget"] = budget * (1 - fee)
    table["committee_budget"] = budget * fee
    table["committee_spent"] = table["rounds"] * table["committee_cost"].astype(float)
    table["pool_use"] = table["paid"] / table["pool"].where(table["pool"] > 0)
    table["provider_budget_use"] = table["paid"] / table["provider_budget"].where(table["provider_budget"] > 0)
    table["committee_budget_use"] = table["committee_spent"] / table["committee_budget"].where(
        table["committee_budget"] > 0
    )
    cap = table["round_cap"].astype(float)
    table["round_cap_use"] = table["rounds"] / cap.where(cap > 0)
    for flag in ("balanced", "within_budget"):
        checks = _of_kind(frame, "budget_check", ["task", flag], optional=[flag])
        if checks.empty:
            table[flag] = pd.NA
        else:
            table[flag] = table["task"].map(checks.astype({flag: bool}).groupby("task")[flag].all())
    return _typed(table.sort_values("task"), BUDGET_COLUMNS)


# ----------------------------------------------------------------------------------------------- per round


def reward_distribution(source: EventSource) -> pd.DataFrame:
    """Per task and round: the rewards rho_i^r paid (B 13), their Gini coefficient, and the providers' net gain.

    provider_cost = sum_i k_i C_unit^r(P_i) and provider_welfare = sum_i (rho_i^r - k_i C_unit^r(P_i)), the
    providers' part of the welfare W of (B 21).
    """
    frame = events_of(source, ["reward_paid"])
    rewards = _of_kind(frame, "reward_paid", ["task", "round", "reward", "unit_cost", "local_iterations"])
    if rewards.empty:
        return empty_frame(REWARD_COLUMNS)
    rewards = rewards.astype({"reward": float, "unit_cost": float, "local_iterations": float})
    rewards["cost"] = rewards["local_iterations"] * rewards["unit_cost"]
    grouped = rewards.groupby(["task", "round"], sort=True)
    table = grouped.agg(
        rewarded=("reward", "size"),
        total_reward=("reward", "sum"),
        mean_reward=("reward", "mean"),
        min_reward=("reward", "min"),
        max_reward=("reward", "max"),
        provider_cost=("cost", "sum"),
    ).reset_index()
    table["reward_gini"] = grouped["reward"].apply(gini).to_numpy()
    table["provider_welfare"] = table["total_reward"] - table["provider_cost"]
    return _typed(table, REWARD_COLUMNS)


def shapley_fairness(source: EventSource, by: Sequence[str] = ("task", "round")) -> pd.DataFrame:
    """Pearson correlation between each provider's reward rho_i and its `contribution` (B 10, B 13), per group.

    `by=("task", "round")` gives one row per round, `by=("task",)` per task, `by=()` one row over the whole run.
    A mechanism that pays by contribution has fairness 1; NaN where a group has under two providers or a
    constant reward or contribution.
    """
    by = list(by)
    columns = {name: "int64" for name in by} | FAIRNESS_COLUMNS
    frame = events_of(source, ["reward_paid"])
    rewards = _of_kind(frame, "reward_paid", ["task", "round", "reward", "contribution"])
    if rewards.empty:
        return empty_frame(columns)
    rewards = rewards.astype({"reward": float, "contribution": float})
    groups = rewards.groupby(by, sort=True) if by else [((), rewards)]
    rows = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        rows.append(
            dict(zip(by, key, strict=True))
            | {"providers": len(group), "fairness": pearson(group["reward"], group["contribution"])}
        )
    return _typed(pd.DataFrame(rows), columns)


def consensus_costs(source: EventSource) -> pd.DataFrame:
    """Per decided round: PBFT view (view changes before the decision), messages, bytes and latency (SPEC D.2)."""
    frame = events_of(source, ["consensus_decided"])
    rows = _of_kind(frame, "consensus_decided", ["task", "round", "view", "messages", "bytes", "latency_s"])
    if rows.empty:
        return empty_frame(CONSENSUS_COLUMNS)
    return _typed(rows.sort_values(["task", "round"], kind="stable"), CONSENSUS_COLUMNS)


def round_outcomes(source: EventSource) -> pd.DataFrame:
    """Per task and aggregation round: quality, budget use, rewards, fairness, welfare (B 21) and consensus.

    welfare = sum_i (rho_i^r - gamma_i C_unit^r(P_i)) - sum_k C_com(n_k), with the committee's round cost from
    `task_configured`; budget_use = paid / Pi_r; free_rider_updates counts updates whose behaviour is not honest.
    """
    frame = events_of(source, ["round_finished", "reward_paid", "task_configured", "update_sent", "consensus_decided"])
    finished = _of_kind(
        frame, "round_finished", ["task", "round", "participants", "quality", "loss", "accuracy", "pool", "paid"]
    )
    rewards = reward_distribution(frame)
    keys = pd.concat([finished[["task", "round"]], rewards[["task", "round"]]]).drop_duplicates()
    if keys.empty:
        return empty_frame(ROUND_COLUMNS)
    table = keys.astype(int).merge(finished.astype({"task": int, "round": int}), on=["task", "round"], how="left")
    table = table.merge(rewards.astype({"task": int, "round": int}), on=["task", "round"], how="left")
    nobody_paid = table["rewarded"].isna()  # a round that paid no one: its sums are 0 and W is -C_com, not NaN
    table.loc[nobody_paid, ["rewarded", "total_reward", "provider_cost", "provider_welfare"]] = 0
    table["budget_use"] = table["paid"].astype(float) / table["pool"].astype(float).where(table["pool"] > 0)
    fairness = shapley_fairness(frame)
    table = table.merge(
        fairness.drop(columns="providers").astype({"task": int, "round": int}), on=["task", "round"], how="left"
    )
    configured = _of_kind(frame, "task_configured", ["task", "committee_cost"]).drop_duplicates("task", keep="last")
    table = table.merge(configured.astype({"task": int}), on="task", how="left")
    table["welfare"] = table["provider_welfare"].astype(float) - table["committee_cost"].astype(float).fillna(0.0)
    updates = _of_kind(frame, "update_sent", ["task", "round", "behaviour"])
    if not updates.empty:
        dishonest = updates[updates["behaviour"].astype(str) != HONEST_BEHAVIOUR]
        counts = dishonest.astype({"task": int, "round": int}).groupby(["task", "round"]).size()
        counts = counts.rename("free_rider_updates").reset_index()
        table = table.merge(counts, on=["task", "round"], how="left")
        table["free_rider_updates"] = table["free_rider_updates"].fillna(0)
    else:
        table["free_rider_updates"] = 0  # no update was sent at all
    consensus = consensus_costs(frame)[["task", "round", "messages", "latency_s"]].rename(
        columns={"messages": "consensus_messages", "latency_s": "consensus_latency_s"}
    )
    table = table.merge(consensus.astype({"task": int, "round": int}), on=["task", "round"], how="left")
    return _typed(table.sort_values(["task", "round"]), ROUND_COLUMNS)


# ----------------------------------------------------------------------------------------------- over time


def strategy_shares(source: EventSource) -> pd.DataFrame:
    """Each strategy's share of the providers over time.

    From the periodic `strategy_share` samples when the run has them (origin "strategy_share"); otherwise per task
    from `action_chosen`: the share of the task's deciding providers that play each strategy, at the time of the
    task's first decision (origin "action_chosen"). Strategies absent from a task get a zero share, so extinction
    shows as zeros.
    """
    frame = events_of(source, ["strategy_share", "action_chosen"])
    samples = _of_kind(frame, "strategy_share", ["time", "strategy", "count", "share"])
    if not samples.empty:
        samples["task"] = pd.NA
        samples["origin"] = "strategy_share"
        return _typed(samples.sort_values(["time", "strategy"], kind="stable"), SHARE_COLUMNS)
    actions = _of_kind(frame, "action_chosen", ["time", "task", "strategy"])
    if actions.empty:
        return empty_frame(SHARE_COLUMNS)
    actions = actions.astype({"strategy": str, "time": float})
    counts = actions.groupby(["task", "strategy"]).size().unstack(fill_value=0)
    shares = counts.div(counts.sum(axis=1), axis=0)
    times = actions.groupby("task")["time"].min()
    table = counts.stack().rename("count").to_frame().join(shares.stack().rename("share")).reset_index()
    table["time"] = table["task"].map(times)
    table["origin"] = "action_chosen"
    return _typed(table.sort_values(["task", "strategy"], kind="stable"), SHARE_COLUMNS)


# ------------------------------------------------------------------------------------------------- summary


def capped_rounds(source: EventSource) -> dict[str, float]:
    """Tasks whose rounds the budget capped (SPEC B 11: R = min(rounds asked, r_max)): `tasks_configured`,
    `tasks_capped`, the rounds asked for (`rounds_asked`, the largest `task_posted.rounds`) and the fewest and most
    rounds the capped tasks played (`capped_rounds_min`, `capped_rounds_max`; NaN when none was capped)."""
    frame = events_of(source, ["task_posted", "task_configured"])
    posted = _of_kind(frame, "task_posted", ["task", "rounds"])
    configured = _of_kind(frame, "task_configured", ["task", "rounds"], optional=["rounds"]).dropna(subset=["rounds"])
    merged = configured.astype({"task": int}).merge(
        posted.astype({"task": int}), on="task", suffixes=("", "_asked"), how="inner"
    )
    played, asked = merged["rounds"].astype(float), merged["rounds_asked"].astype(float)
    capped = played[played < asked]
    return {
        "tasks_configured": float(len(merged)),
        "tasks_capped": float(len(capped)),
        "rounds_asked": float(asked.max()) if len(asked) else math.nan,
        "capped_rounds_min": float(capped.min()) if len(capped) else math.nan,
        "capped_rounds_max": float(capped.max()) if len(capped) else math.nan,
    }


ZERO_DETERMINANT_STRATEGIES = ("MMZD", "MMZDA")
"""The strategies that enforce a welfare level by their choice of y_i (SPEC B.4): MMZD alone and in alliance."""


def zero_determinant_realisation(source: EventSource) -> dict[str, float]:
    """How often the zero-determinant players' chosen y_i was what they were paid on (`provider_payoff.action`
    against `realised_rounds`): `zd_decisions` (paid decisions of MMZD and MMZDA players) and
    `zd_realised_as_chosen`. SPEC B.4's guarantee, stationary welfare P* whatever the others do, holds for the
    actions the strategy chooses; a round lost to a late or abandoned update (gamma_NE epochs that do not fit in
    `learning.round_duration_s`) or to leaving mid-task makes the realised game another one. NaN for a log
    without `realised_rounds`."""
    frame = events_of(source, ["provider_payoff"])
    paid = _of_kind(frame, "provider_payoff", ["strategy", "action", "realised_rounds"], optional=["realised_rounds"])
    if paid.empty:
        return {"zd_decisions": 0.0, "zd_realised_as_chosen": math.nan}
    zd = paid[paid["strategy"].astype(str).isin(ZERO_DETERMINANT_STRATEGIES)]
    as_chosen = zd["action"].astype(float).to_numpy() == zd["realised_rounds"].astype(float).to_numpy()
    return {"zd_decisions": float(len(zd)), "zd_realised_as_chosen": float(as_chosen.sum())}


def zero_determinant_welfare(source: EventSource) -> dict[str, float]:
    """Whether the run's welfare went where its zero-determinant players aimed it (SPEC B.4: with a feasible design
    the mean welfare per game round tends to P* whatever the other players do; in the market a game round is a
    task, so the welfare is `task_finished.welfare`).

    - `zd_designs` and `zd_feasible_designs`: the `zd_design` rows, and those whose design enforces its target;
    - `zd_target`: their P* when every row has the same one (NaN when there is none, or when they differ: the
      game changed and the largest enforceable welfare moved with it, or two controllers aim apart);
    - `zd_tasks`: the finished tasks in which ZD players chose their rounds (`action_chosen` of MMZD or MMZDA),
      from the first design's task on; over them, `zd_mean_welfare` (their plain mean) with a 95% interval
      `zd_welfare_low` - `zd_welfare_high`: the mean +- the half-width of `stability.batch_means_interval`. The
      welfare of successive tasks is a Markov chain, so a plain s / sqrt(n) interval would be too narrow; the
      batch means leave the first n mod k tasks out, so only the half-width is taken from them.
    """
    from flmarket.analysis.stability import batch_means_interval

    frame = events_of(source, ["zd_design", "action_chosen", "task_finished"])
    designs = _of_kind(frame, "zd_design", ["task", "target", "feasible"])
    chosen = _of_kind(frame, "action_chosen", ["task", "strategy"])
    finished = _of_kind(frame, "task_finished", ["task", "welfare"])
    result = {
        "zd_designs": float(len(designs)),
        "zd_feasible_designs": float(designs["feasible"].astype(bool).sum()) if len(designs) else 0.0,
        "zd_target": math.nan,
        "zd_tasks": 0.0,
        "zd_mean_welfare": math.nan,
        "zd_welfare_low": math.nan,
        "zd_welfare_high": math.nan,
    }
    if designs.empty:
        return result
    targets = designs["target"].astype(float).to_numpy()
    if np.all(targets == targets[0]):
        result["zd_target"] = float(targets[0])
    played = set(chosen[chosen["strategy"].astype(str).isin(ZERO_DETERMINANT_STRATEGIES)]["task"].astype(int))
    first = int(designs["task"].astype(int).min())
    tasks = finished["task"].astype(int)
    welfare = finished[(tasks >= first) & tasks.isin(played)]["welfare"].astype(float).to_numpy()
    if welfare.size:
        mean = float(welfare.mean())
        half_width = batch_means_interval(welfare).half_width
        result.update(
            zd_tasks=float(welfare.size),
            zd_mean_welfare=mean,
            zd_welfare_low=mean - half_width,
            zd_welfare_high=mean + half_width,
        )
    return result


Z_TEST_REJECTION = TimerVerdict.WINS_TOO_OFTEN.value
"""How a claim the z-test rejected reads inside `claim_rejected.reason`: the verdict's own text."""


def poet_z_test(source: EventSource, compromised_timers: int = 0) -> dict[str, float]:
    """What CheckTimer's z-test did (SPEC D.1; `committee.poet_z_test`): `z_test_rounds`, the decided rounds with
    claims (each judged one winner or more; read from `shapley_estimated.players`, not from the blocks, whose
    encodings are the log's largest column), and `z_test_rejections`, the claims it rejected. The first
    `compromised_timers` providers to join (`faults.compromised_timers`) had compromised timers, so their rejections
    are detections (`z_test_detections`) and everyone else's are false rejects (`z_test_false_rejects`, and
    `false_reject_rate` per round: the metric docs/spec.md D.1 promises)."""
    frame = events_of(source, ["shapley_estimated", "claim_rejected", "provider_joined"])
    settled = _of_kind(frame, "shapley_estimated", ["players"])
    rejected = _of_kind(frame, "claim_rejected", ["agent", "reason"])
    joined = _of_kind(frame, "provider_joined", ["agent"])
    rounds = int((settled["players"].astype(int) > 0).sum()) if len(settled) else 0
    by_z_test = rejected[rejected["reason"].astype(str).str.contains(Z_TEST_REJECTION, regex=False)]
    compromised = set(joined["agent"].astype(int).head(compromised_timers)) if compromised_timers else set()
    detections = int(by_z_test["agent"].astype(int).isin(compromised).sum()) if compromised else 0
    false_rejects = len(by_z_test) - detections
    return {
        "z_test_rounds": float(rounds),
        "z_test_rejections": float(len(by_z_test)),
        "z_test_detections": float(detections),
        "z_test_false_rejects": float(false_rejects),
        "false_reject_rate": false_rejects / rounds if rounds else math.nan,
    }


def mechanism_targets(source: EventSource) -> dict[str, float]:
    """How often the BGFL mechanism's economic targets held (issue 12; NaN when the run has no BGFL rounds).

    - `gamma_at_least_one_share`: share of aggregation rounds after each task's first (which trains delta_k) whose
      broadcast gamma_NE (B 24, floored, capped by B 12) is at least one local epoch (`round_started`);
    - `individually_rational_share`: share of settled updates (`reward_paid`, one per accepted update, reward 0
      included: a round whose Shapley values sum to <= 0 pays nothing, SPEC A.5, and its providers bore their
      costs) with no `ir_violation` (B 14); `unrewarded_updates` counts those settled with a reward of exactly 0
      (`flmarket reproduce bgfl-*` counts only rewarded updates as paid);
    - `budget_balanced_share`: share of rounds whose `budget_check` found (B 15a) and (B 15b) holding so far;
    - `mean_unit_cost`: the mean claimed C_unit^r (B 6) of settled updates; `paid_updates` counts them and `rounds`
      the rounds started (`round_started`; `run_summary`'s `rounds` counts the rounds that finished).
    """
    frame = events_of(source, ["round_started", "reward_paid", "ir_violation", "budget_check"])
    started = _of_kind(frame, "round_started", ["task", "round", "gamma"])
    paid = _of_kind(frame, "reward_paid", ["task", "round", "agent", "unit_cost", "reward"])
    violations = _of_kind(frame, "ir_violation", ["task", "round", "agent"]).drop_duplicates()
    checks = _of_kind(frame, "budget_check", ["task", "round", "balanced"])
    later = started[started["round"] > 0]
    keys = ["task", "round", "agent"]
    # only paid updates count: an update whose reward was forfeited (its provider left) may also have violated IR
    violated = paid[keys].astype(int).merge(violations[keys].astype(int), on=keys, how="inner") if len(paid) else paid
    return {
        "rounds": float(len(started)),
        "gamma_at_least_one_share": _mean((later["gamma"] >= 1).astype(float)),
        "paid_updates": float(len(paid)),
        "unrewarded_updates": float((pd.to_numeric(paid["reward"], errors="coerce") == 0).sum()),
        "individually_rational_share": 1.0 - len(violated) / len(paid) if len(paid) else math.nan,
        "budget_balanced_share": _mean(checks["balanced"].astype(bool).astype(float)),
        "mean_unit_cost": _mean(paid["unit_cost"]),
    }


def _mean(values: pd.Series) -> float:
    values = pd.to_numeric(values, errors="coerce").astype(float).dropna()
    return float(values.mean()) if len(values) else math.nan


SUMMARY_KINDS = (
    "task_finished",
    "action_chosen",
    "task_posted",
    "provider_payoff",
    "reward_paid",
    "update_sent",
    "round_finished",
    "task_configured",
    "budget_check",
    "consensus_decided",
    "welfare_reference",
)
"""The kinds `run_summary` reads (those of the functions it calls): a run directory is loaded with these only."""
ANALYSIS_KINDS = (*SUMMARY_KINDS, "strategy_share")
"""Every kind the functions of this module read: what a report or a sweep summary needs to load."""


def run_summary(source: EventSource) -> dict[str, float]:
    """Headline numbers of a run (NaN where its events are absent): the columns of a sweep's per-cell summary.

    Per-task measures (welfare, participation, free riding, budget use) are over the tasks that finished: a task
    the run's horizon cut off is left out of all of them alike. Per-round measures are over the rounds that
    finished."""
    frame = source if isinstance(source, pd.DataFrame | RunEvents) else RunEvents(source)
    tasks = task_outcomes(frame)
    finished = set(tasks["task"].astype(int))
    participation = participation_by_strategy(frame)
    participation = participation[participation["task"].astype(int).isin(finished)]
    riding = free_riding(frame)
    riding = riding[riding["task"].astype(int).isin(finished)]
    rounds = round_outcomes(frame)
    budget = budget_use(frame)
    budget = budget[budget["task"].astype(int).isin(finished)]
    overall_fairness = shapley_fairness(frame, by=())
    participants = participation["participants"].astype(float).sum()
    providers = participation["providers"].astype(float).sum()
    rated = participation[participation["participation_rate"].notna()]
    decisions = rated["providers"].astype(float)  # every decision counts once (see participation_rate below)
    references = reference_summary(frame)
    return {
        "tasks": float(len(tasks)),
        "mean_welfare": _mean(tasks["welfare"]),
        **references,
        "welfare_std": float(tasks["welfare"].std()) if len(tasks) > 1 else math.nan,
        "mean_welfare_per_player": _mean(tasks["welfare_per_player"]),
        "participating_share": participants / providers if providers else math.nan,
        # mean_participation_rate, a mean over strategies, gives a strategy of 1 provider the weight of one of 1,000
        "participation_rate": float(np.average(rated["participation_rate"].astype(float), weights=decisions))
        if decisions.sum() > 0
        else math.nan,
        "mean_participation_rate": _mean(participation["participation_rate"]),
        "free_rider_share": _mean(riding["free_rider_share"]),
        "payoff_gap": _mean(riding["payoff_gap"]),
        "rounds": float(len(rounds)),
        "mean_round_welfare": _mean(rounds["welfare"]),
        "mean_reward_gini": _mean(rounds["reward_gini"]),
        "fairness": float(overall_fairness["fairness"].iloc[0]) if len(overall_fairness) else math.nan,
        "mean_budget_use": _mean(budget["provider_budget_use"]),
        "mean_consensus_messages": _mean(rounds["consensus_messages"]),
        "mean_consensus_latency_s": _mean(rounds["consensus_latency_s"]),
        **zero_determinant_welfare(frame),  # the ZD target beside the welfare reached (a sweep over targets)
    }
