"""The whole market in simulated time (SPEC C): Algorithm 1 and 2 in the log, budget balance, free riding,
churn, Byzantine committees, evolution and the torch backend end to end."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from flmarket.analysis.load import events_frame
from flmarket.market.errors import MarketError
from flmarket.sim.config import ScenarioError, bundled_scenarios, load_scenario
from flmarket.sim.model import MarketModel

SMALL = {"run.tasks": 4, "providers.arrival_rate_per_s": 0.0, "providers.mean_lifetime_s": math.inf}


def run(name: str, overrides: dict | None = None) -> tuple[MarketModel, pd.DataFrame]:
    model = MarketModel(load_scenario(name, overrides or {}))
    model.run()
    return model, events_frame(model.log.to_arrow())


@pytest.fixture(scope="module")
def quick_market() -> tuple[MarketModel, pd.DataFrame]:
    return run("quickstart", {"run.tasks": 6})


def test_one_round_walks_algorithm_1_and_2_in_order(quick_market) -> None:
    model, frame = quick_market
    task, round_index = 2, 1
    in_round = frame[(frame["task"] == task) & (frame["round"] == round_index)]
    first = {kind: int(in_round[in_round["kind"] == kind]["seq"].min()) for kind in in_round["kind"].unique()}
    last = {kind: int(in_round[in_round["kind"] == kind]["seq"].max()) for kind in in_round["kind"].unique()}
    # broadcast gamma -> providers train, stamp, sign, send -> PBFT decides -> block -> rewards -> round closes
    assert first["round_started"] < first["update_sent"]
    assert last["update_sent"] < first["consensus_decided"] < first["block_committed"] < first["reward_paid"]
    assert last["reward_paid"] < first["round_finished"] < first["budget_check"]
    started = in_round[in_round["kind"] == "round_started"].iloc[0]
    decided = in_round[in_round["kind"] == "consensus_decided"].iloc[0]
    deadline = started["time"] + model.scenario.learning.round_duration_s
    updates = in_round[in_round["kind"] == "update_sent"]
    assert (updates["time"] > started["time"]).all() and (updates["time"] <= deadline).all()
    assert decided["time"] > deadline  # the committee decides after the collection deadline
    assert decided["messages"] >= 2 * 7 * 6  # PBFT's 2n(n-1) for n = 7, plus the request multicast
    rewarded = set(in_round[in_round["kind"] == "reward_paid"]["agent"])
    assert rewarded <= set(updates["agent"])
    # The task as a whole: posted, elected, configured, started, chosen, rounds, settled, paid, finished.
    in_task = frame[frame["task"] == task]
    order = in_task.drop_duplicates("kind").sort_values("seq")["kind"].tolist()
    expected = [
        "task_posted",
        "committee_elected",
        "task_configured",
        "task_started",
        "action_chosen",
        "round_started",
        "task_settled",
        "provider_payoff",
        "task_finished",
    ]
    positions = [order.index(kind) for kind in expected if kind != "committee_elected"]
    assert positions == sorted(positions)
    elected = frame[(frame["kind"] == "committee_elected")]
    assert len(elected) == model.tasks_finished and elected["members"].str.count(",").eq(6).all()


def _check_budget_balance(frame: pd.DataFrame, tolerance: float = 1e-7) -> None:
    rounds = frame[frame["kind"] == "round_finished"]
    assert len(rounds) > 0
    rewards = frame[frame["kind"].isin(["reward_paid", "reward_forfeited"])]
    per_round = rewards.groupby(["task", "round"])["reward"].sum()  # what the mechanism allotted
    declared = rounds.set_index(["task", "round"])["paid"]
    assert (declared.to_numpy() <= rounds["pool"].to_numpy() * (1 + tolerance)).all()  # what was paid: <= the pool
    allotted = per_round.reindex(declared.index, fill_value=0.0)
    for (_, pool), share in zip(rounds[["task", "pool"]].itertuples(index=False), allotted, strict=True):
        assert share <= pool * (1 + tolerance)
        assert share == pytest.approx(pool, rel=1e-9) or share == 0.0  # the whole pool, or no one accepted
    reached = frame[frame["kind"] == "reward_paid"].groupby(["task", "round"])["reward"].sum()
    pdt.assert_series_equal(  # round_finished.paid: what reached providers (a leaver's reward is forfeited)
        reached.reindex(declared.index, fill_value=0.0), declared, check_names=False, rtol=1e-9, atol=1e-9
    )
    configured = frame[frame["kind"] == "task_configured"].set_index("task")
    settled = frame[frame["kind"] == "task_settled"].set_index("task")
    for task, row in settled.iterrows():
        budget = configured.loc[task, "budget"]
        fee_ratio = configured.loc[task, "fee_ratio"]
        assert row["committee_fees"] <= budget * fee_ratio + tolerance  # (B 15a)
        assert row["paid"] <= budget * (1 - fee_ratio) + tolerance  # the pool never overdraws the escrow
        assert row["refunded"] >= -tolerance
    violations = frame[frame["kind"] == "ir_violation"]
    assert (violations["agent"] >= 0).all() and (violations["amount"] > 0).all()
    # The log's own check of the money, round by round: fees and rewards so far within their shares.
    checks = frame[frame["kind"] == "budget_check"]
    assert len(checks) == len(rounds) and checks["within_budget"].astype(bool).all()
    cumulative = per_round.reindex(declared.index, fill_value=0.0).groupby(level="task").cumsum()
    paid_so_far = checks.set_index(["task", "round"])["rewards_paid"]
    forfeited = frame[frame["kind"] == "reward_forfeited"].groupby(["task", "round"])["reward"].sum()
    forfeited_so_far = forfeited.reindex(declared.index, fill_value=0.0).groupby(level="task").cumsum()
    pdt.assert_series_equal(
        paid_so_far, cumulative - forfeited_so_far, check_names=False, check_index_type=False, rtol=1e-9, atol=1e-9
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(bundled_scenarios()))
def test_budget_balance_holds_in_every_round_of_every_bundled_scenario(name: str) -> None:
    overrides = {"run.tasks": 3}
    if name.startswith("bgfl-table3"):  # 100 aggregation rounds per task: 12 keep the check, and the torch one fast
        overrides["learning.rounds_per_task"] = 12
    _, frame = run(name, overrides)
    _check_budget_balance(frame)


def test_budget_balance_in_the_quick_market(quick_market) -> None:
    _check_budget_balance(quick_market[1])


def test_the_committee_pays_exactly_the_pool_to_claims_it_accepted(quick_market) -> None:
    model, frame = quick_market
    paid = frame[frame["kind"] == "reward_paid"]
    # Shapley efficiency: within a round, rewards are proportional to the Shapley values.
    for _, group in paid.groupby(["task", "round"]):
        if group["shapley_value"].sum() > 0:
            ratio = group["reward"] / group["shapley_value"]
            assert np.allclose(ratio, ratio.iloc[0], rtol=1e-9)
    assert len(model.committee.ledger) - 1 == len(frame[frame["kind"] == "block_committed"])
    assert model.committee.ledger.verify().valid


def _free_rider_run(share: float) -> pd.DataFrame:
    mix = {"ALLC": 1.0 - share, "ALLD": share} if share > 0 else {"ALLC": 1.0}
    overrides = {
        "run.tasks": 4,
        "providers.count": 12,
        "providers.strategy_mix": mix,
        "committee.verification": "primary_only",
    }
    return run("free-riders", overrides)[1]


@pytest.mark.slow
def test_free_riders_earn_almost_nothing_and_honest_welfare_falls_with_their_share() -> None:
    honest_utility = []
    for share in (0.0, 0.25, 0.5):
        frame = _free_rider_run(share)
        payoffs = frame[frame["kind"] == "provider_payoff"]
        honest = payoffs[payoffs["strategy"] != "ALLD"]
        honest_utility.append(honest["utility"].mean())
        if share > 0:
            riders = payoffs[payoffs["strategy"] == "ALLD"]
            assert (riders["action"] == 0).all() and len(riders) > 0
            sent = frame[(frame["kind"] == "update_sent") & (frame["behaviour"] == "disguised")]
            assert len(sent) > 0  # they do send disguised updates, hoping to be paid
            total_rewards = payoffs["reward"].sum()
            assert riders["reward"].sum() <= 1e-6 * total_rewards  # Shapley gives noise no value
            # ... yet they enjoy the public good: their utility is not below the honest providers'.
            assert riders["utility"].mean() > honest["utility"].mean()
    assert honest_utility[0] > honest_utility[1] > honest_utility[2]


@pytest.mark.slow
def test_evolution_changes_shares_and_is_identical_for_a_seed() -> None:
    overrides = {
        "run.tasks": 25,
        "providers.count": 16,
        "network.degree": 4,
        "committee.verification": "unsigned",
        "evolution.selection_intensity": 0.05,
    }
    _, first = run("evolution", overrides)
    _, second = run("evolution", overrides)
    pdt.assert_frame_equal(first, second)
    switched = first[first["kind"] == "strategy_switched"]
    assert len(switched) > 0 and set(switched["reason"]) <= {"imitation", "mutation"}
    shares = first[first["kind"] == "strategy_share"].pivot_table(index="time", columns="strategy", values="share")
    assert (shares.iloc[-1] - shares.iloc[0]).abs().max() > 0.05


@pytest.mark.parametrize("counts", [None, {"MMZD": 1, "TFT": 2, "ALLC": 3}])
def test_strategies_play_inside_each_task_s_rounds_when_budgets_cap_them(counts: dict | None) -> None:
    """R = min(rounds_per_task, r_max) follows each requester's budget. After a task of R = 4 and one of R = 1,
    MMZD and the bundled MMZDA alliance died with IndexError, and TFT played 5 in tasks of R = 1."""
    overrides = {
        "run.tasks": 25,
        "learning.rounds_per_task": 4,
        "requesters.budget": {"dist": "uniform", "low": 50.0, "high": 400.0},
    }
    if counts is not None:
        overrides["providers.strategy_counts"] = counts
    model, frame = run("mmzd-fig3", overrides)
    assert model.tasks_finished == 25
    rounds = frame[frame["kind"] == "task_configured"].set_index("task")["rounds"]
    assert rounds.nunique() > 2 and (rounds.diff() < 0).any()  # R shrinks from one task to the next
    chosen = frame[frame["kind"] == "action_chosen"]
    assert (chosen["action"].to_numpy() <= chosen["task"].map(rounds).to_numpy()).all()


def test_the_market_reports_whether_an_alliance_can_enforce_its_target() -> None:
    """SPEC B.4: flmarket reports feasibility. The bundled mmzd-fig3 alliance (3 of 6) has no enforceable
    target, so it plays the clipped paper design; the log says so, as an independent check of the game does."""
    from flmarket.market.zero_determinant import ControlledGame, largest_enforceable_welfare

    model, frame = run("mmzd-fig3", {"run.tasks": 3})
    designs = frame[frame["kind"] == "zd_design"]
    assert len(designs) == 1  # the game does not change between tasks: one design, logged once
    row = designs.iloc[0]
    players = list(model.online_providers.values())
    members = tuple(index for index, provider in enumerate(players) if provider.strategy_label == "MMZDA")
    game = model.game_of(players, model.scenario.learning.rounds_per_task)
    enforceable = largest_enforceable_welfare(ControlledGame(game, members).extremes())
    assert row["strategy"] == "MMZDA" and row["alliance_size"] == len(members) == 3
    assert bool(row["feasible"]) is enforceable.feasible is False and math.isnan(row["largest_feasible"])
    assert row["agent"] == players[members[0]].unique_id


def _zero_determinant_run(counts: dict[str, int], settings: dict) -> tuple[MarketModel, pd.DataFrame, tuple, object]:
    """mmzd-fig3 with its population replaced and `[zero_determinant]` set; the ZD players' indices and the game."""
    overrides = {"run.tasks": 2, "providers.strategy_counts": counts}
    overrides.update({f"zero_determinant.{key}": value for key, value in settings.items()})
    model, frame = run("mmzd-fig3", overrides)
    players = list(model.online_providers.values())
    members = tuple(index for index, provider in enumerate(players) if provider.strategy_label.startswith("MMZD"))
    return model, frame, members, model.game_of(players, model.scenario.learning.rounds_per_task)


def test_zero_determinant_settings_reach_the_alliance_design() -> None:
    """`[zero_determinant]` sets the alliance's mode, target and phi scale (SPEC B.4, B.5): the logged design and
    the one played are the design computed directly for the same game. An alliance of 4 in 6 can enforce
    welfare in about [1.104, 1.198], so 1.15 is enforceable in exact mode."""
    from flmarket.market.zero_determinant import design_mmzda

    model, frame, members, game = _zero_determinant_run(
        {"MMZDA": 4, "Mixed": 2}, {"mode": "exact", "target": 1.15, "phi_scale": 0.5}
    )
    expected = design_mmzda(game, members, mode="exact", target=1.15, phi_scale=0.5)
    assert expected.lower_bound < 1.15 < expected.upper_bound and expected.feasible
    (alliance,) = model.alliances.values()
    assert alliance.design.phi == expected.phi and alliance.design.target == 1.15
    default = design_mmzda(game, members, mode="exact", target=1.15)
    assert alliance.design.phi == pytest.approx(default.phi * 0.5 / 0.9)  # phi is proportional to the scale
    (row,) = frame[frame["kind"] == "zd_design"].itertuples()
    assert (row.mode, row.target, bool(row.feasible)) == ("exact", 1.15, True)


def test_a_target_the_game_cannot_enforce_falls_back_to_the_paper_design_in_auto_mode_only() -> None:
    """Above the largest enforceable welfare (about 1.198 here), "auto" plays the paper's clipped design for the
    target given and logs it as infeasible; "exact" stops the run with an error naming the setting."""
    from flmarket.market.zero_determinant import design_mmzda

    model, frame, members, game = _zero_determinant_run({"MMZDA": 4, "Mixed": 2}, {"target": 1.5})
    expected = design_mmzda(game, members, mode="paper", target=1.5)
    (alliance,) = model.alliances.values()
    assert alliance.design.phi == expected.phi and not expected.feasible
    (row,) = frame[frame["kind"] == "zd_design"].itertuples()
    assert (row.mode, row.target, bool(row.feasible)) == ("paper", 1.5, False)
    assert row.largest_feasible == pytest.approx(1.1981332684962802, rel=1e-9)
    with pytest.raises(MarketError, match=r'zero_determinant\.mode: "exact" .* in task 0 \(6 players, R = 2\)'):
        _zero_determinant_run({"MMZDA": 4, "Mixed": 2}, {"mode": "exact", "target": 1.5})


def test_an_enforceable_target_is_the_market_s_long_run_welfare() -> None:
    """SPEC B.4 in the market, end to end: an alliance of 4 in 6 with an enforceable target below its largest
    (1.12 against about 1.198) against two Mixed opponents; over 200 tasks (game rounds) the mean welfare's 95%
    batch-means interval holds P*, and the run's summary says the target was enforceable."""
    from flmarket.analysis.metrics import zero_determinant_welfare

    overrides = {"run.tasks": 200, "providers.strategy_counts": {"MMZDA": 4, "Mixed": 2}}
    overrides.update({"zero_determinant.mode": "exact", "zero_determinant.target": 1.12})
    _, frame = run("mmzd-fig3", overrides)
    aim = zero_determinant_welfare(frame)
    assert (aim["zd_target"], aim["zd_designs"], aim["zd_feasible_designs"], aim["zd_tasks"]) == (1.12, 1, 1, 200)
    assert aim["zd_welfare_low"] <= 1.12 <= aim["zd_welfare_high"]
    assert aim["zd_welfare_high"] - aim["zd_welfare_low"] < 0.25  # an interval narrow enough to say something


def test_a_single_mmzd_player_takes_the_paper_mode_and_phi_scale() -> None:
    from flmarket.market.zero_determinant import design_mmzda

    model, frame, members, game = _zero_determinant_run({"MMZD": 1, "Mixed": 5}, {"mode": "paper", "phi_scale": 0.25})
    (player,) = (provider for provider in model.online_providers.values() if provider.strategy_label == "MMZD")
    expected = design_mmzda(game, members, mode="paper", phi_scale=0.25)
    assert player.strategy.design.phi == expected.phi != design_mmzda(game, members, mode="paper").phi
    (row,) = frame[frame["kind"] == "zd_design"].itertuples()
    assert (row.mode, row.target) == ("paper", expected.target)


_COMPROMISED = {
    "run.tasks": 40,
    "providers.count": 10,
    "providers.strategy_mix": {"ALLC": 1.0},
    "providers.arrival_rate_per_s": 0.0,
    "providers.mean_lifetime_s": math.inf,
    "faults.compromised_timers": 1,
}


def test_the_poet_z_test_catches_a_compromised_timer_in_every_signed_verification_mode() -> None:
    """SPEC D.1 / A.8 in the market: ten ALLC providers, the first with a timer whose waits are a tenth of the
    others' (so it wins about half the rounds, where 1 in 10 is fair). With CheckTimer's z-test its winning claims
    are rejected once its streak is implausible, each costing it that round's reward; the honest winners the test
    also rejects are few. The z-test runs at the primary, so every signed mode rejects the same claims."""
    from flmarket.analysis.metrics import poet_z_test

    outcomes = {}
    for verification in ("every_replica", "primary_only", "modelled"):
        overrides = {**_COMPROMISED, "committee.poet_z_test": True, "committee.verification": verification}
        model, frame = run("quickstart", overrides)
        rejected = frame[frame["kind"] == "claim_rejected"]
        assert set(rejected["reason"]) == {"screening: CheckTimer failed (wins too often (z-test))"}
        outcomes[verification] = sorted(zip(rejected["task"], rejected["round"], rejected["agent"], strict=True))
        judged = poet_z_test(frame, compromised_timers=1)
        assert judged["z_test_rounds"] == 120 and judged["z_test_detections"] > 10 * judged["z_test_false_rejects"]
        assert judged["z_test_detections"] >= 20
        cheater = int(frame[frame["kind"] == "provider_joined"].sort_values("seq")["agent"].iloc[0])
        paid = frame[(frame["kind"] == "reward_paid") & (frame["agent"] == cheater)]
        assert len(paid) == 120 - judged["z_test_detections"]  # ALLC: it claims every round; a detection costs one
        assert len(model.committee.poet_winners) == model.scenario.committee.poet_z_window - 1  # the claim is the last
    assert outcomes["every_replica"] == outcomes["primary_only"] == outcomes["modelled"]


def test_z_test_rejections_are_named_when_a_byzantine_member_proposed_or_the_provider_left() -> None:
    """Two ways the log hid the z-test's rejections. A Byzantine primary that votes wrong digests still proposes
    what it screened, and its proposal is decided: its rejections were logged with the bare reason "screening",
    so `poet_z_test` saw 0 of 37. A provider that left after uploading was logged as agent -1, so a compromised
    leaver's rejection counted as an honest false reject (26 / 4 where the log held 27 / 3)."""
    from flmarket.analysis.metrics import poet_z_test

    byzantine = {**_COMPROMISED, "committee.poet_z_test": True, "faults.byzantine_committee": 1}
    _, frame = run("quickstart", {**byzantine, "faults.byzantine_behaviour": "wrong_digest"})
    rejected = frame[frame["kind"] == "claim_rejected"]
    assert len(rejected) > 0 and set(rejected["reason"]) == {"screening: CheckTimer failed (wins too often (z-test))"}
    judged = poet_z_test(frame, compromised_timers=1)
    assert judged["z_test_detections"] >= 20 and judged["z_test_detections"] > 10 * judged["z_test_false_rejects"]
    churn = {"committee.poet_z_test": True, "faults.compromised_timers": 6, "providers.mean_lifetime_s": 800.0}
    churn |= {"providers.strategy_mix": {"ALLC": 1.0}, "run.tasks": 60, "run.seed": 2}
    _, frame = run("quickstart", churn)
    rejected = frame[frame["kind"] == "claim_rejected"]
    left = frame[frame["kind"] == "provider_left"]
    gone_first = rejected.merge(left[["agent", "time"]], on="agent", suffixes=("", "_left"))
    assert (gone_first["time_left"] < gone_first["time"]).any()  # a leaver's claim was judged after it left
    assert (rejected["agent"] >= 0).all() and set(rejected["agent"]) <= set(
        frame[frame["kind"] == "provider_joined"]["agent"]
    )


def test_without_the_z_test_a_compromised_timer_is_never_caught() -> None:
    from flmarket.analysis.metrics import poet_z_test

    model, frame = run("quickstart", _COMPROMISED)
    assert model.scenario.committee.poet_z_test is False and model.committee.poet_winners is None  # the default
    assert (frame["kind"] == "claim_rejected").sum() == 0
    assert poet_z_test(frame, 1)["z_test_detections"] == 0
    cheater = int(frame[frame["kind"] == "provider_joined"].sort_values("seq")["agent"].iloc[0])
    assert ((frame["kind"] == "reward_paid") & (frame["agent"] == cheater)).sum() == 120


def test_churn_forfeits_rewards_of_leavers_and_keeps_the_books() -> None:
    overrides = {"run.tasks": 6, "providers.mean_lifetime_s": 150.0, "providers.arrival_rate_per_s": 0.05}
    model, frame = run("quickstart", overrides)
    left = frame[frame["kind"] == "provider_left"]
    joined = frame[frame["kind"] == "provider_joined"]
    assert len(left) > 0 and len(joined) > model.scenario.providers.count
    assert len(model.online_providers) == len(joined) - len(left)
    for agent in left["agent"]:
        later = frame[(frame["agent"] == agent) & (frame["seq"] > left[left["agent"] == agent]["seq"].iloc[0])]
        assert not later["kind"].isin(["update_sent", "action_chosen"]).any()
        assert (later[later["kind"] == "reward_paid"]["reward"] < 0).all()  # only a charge follows a leaver
    _check_budget_balance(frame)


def test_honest_claims_are_accepted_when_the_unit_cost_is_all_privacy_cost(monkeypatch) -> None:
    """C_com = 0.5*2*1*1*0.5^2 + 0.5*0.75*2 = 1, so ln C_com = 0 and an honest C_unit equals its C_pr (B 6):
    screening used to demand C_pr < C_unit and rejected every such claim, leaving every round empty. Below 1,
    ln C_com would be a negative cost: such a type is refused with its numbers (docs/spec.md A.3)."""
    overrides = {
        **SMALL,
        "run.tasks": 1,
        "learning.rounds_per_task": 2,
        "providers.count": 6,
        "providers.strategy_mix": {"ALLC": 1.0},
        "providers.cpu_frequency": 0.5,
        "providers.cycles_per_batch": 1.0,
        "providers.batch_size": 1.0,
        "providers.memory": 2.0,
        "providers.memory_use_ratio": 0.75,
        "mechanism.cost_weight": 0.5,
        "mechanism.energy_coefficient": 2.0,
        "learning.seconds_per_cycle": 1e-7,
    }
    model, frame = run("quickstart", overrides)
    assert all(provider.computation_cost == 1.0 for provider in model.online_providers.values())
    assert frame[frame["kind"] == "round_finished"]["participants"].tolist() == [6, 6]
    assert not (frame["kind"] == "claim_rejected").any()
    paid = frame[frame["kind"] == "reward_paid"]
    assert len(paid) == 12 and (paid["unit_cost"] > 0).all()
    cheaper = {**overrides, "providers.cpu_frequency": 0.01, "providers.memory": 1.0, "providers.memory_use_ratio": 0.1}
    with pytest.raises(ScenarioError, match=r"^providers: the cheapest type .* C_com = 0\.0501 < 1 \(B 3, at"):
        load_scenario("quickstart", cheaper)  # refused before any run, not when a joiner draws it
    # a type drawn below 1 all the same (the scenario check reads a log-normal at its practical minimum) stops
    # the run with its numbers: the provider checks its own C_com too
    cheap = {"cpu_frequency": 0.01, "memory": 1.0, "memory_use_ratio": 0.1}
    drawn = MarketModel._draw_type
    with monkeypatch.context() as patched:  # as a log-normal's tail would, past the scenario's check
        patched.setattr(MarketModel, "_draw_type", lambda self, rng: dataclasses.replace(drawn(self, rng), **cheap))
        with pytest.raises(MarketError, match=r"C_com = 0\.0501 < 1 \(B 3; cpu_frequency = 0\.01,.*negative cost"):
            MarketModel(load_scenario("quickstart", overrides))


def test_a_leaver_charged_for_a_harmful_update_still_pays_the_charge() -> None:
    """SPEC A.5 charges a harmful update (xi_i < 0); a leaver forfeits a reward but not a charge (docs/spec.md),
    since the others' rewards were normalised against it. Waiving it paid 39.55 against a pool of 39.22."""
    overrides = {
        "run.seed": 11,
        "run.tasks": 2,
        "learning.rounds_per_task": 3,
        "providers.count": 6,
        "learning.shards": 30,
        "network.degree": 2,
        "providers.strategy_mix": {"ALLC": 0.5, "ALLD": 0.5},
        "faults.free_rider_kind": "disguised",
        "learning.sensitivity": "per_record",
        "learning.clip": 2.0,
        "learning.aggregation": "fedadp",
        "providers.mean_lifetime_s": 100.0,
        "providers.arrival_rate_per_s": 0.05,
        "mechanism.shapley_exact_max": 3,
    }
    _, frame = run("bgfl-table3-torch", overrides)
    left_at = frame[frame["kind"] == "provider_left"].set_index("agent")["seq"]
    paid = frame[frame["kind"] == "reward_paid"]
    charged_leavers = paid[paid["agent"].map(left_at).lt(paid["seq"]) & (paid["reward"] < 0)]
    assert len(charged_leavers) > 0  # the case this test is about happens in this run
    forfeited = frame[frame["kind"] == "reward_forfeited"]
    assert (forfeited["reward"] >= 0).all()
    _check_budget_balance(frame)


@pytest.mark.parametrize("behaviour", ["silent_primary", "silent", "wrong_digest"])
def test_up_to_f_byzantine_members_do_not_stop_the_market(behaviour: str) -> None:
    overrides = {
        **SMALL,
        "providers.count": 10,
        "faults.byzantine_committee": 2,
        "faults.byzantine_behaviour": behaviour,
        "committee.verification": "primary_only",
    }
    model, frame = run("quickstart", overrides)
    decided = frame[frame["kind"] == "consensus_decided"]
    assert model.tasks_finished == 4 and len(decided) == 4 * model.scenario.learning.rounds_per_task
    assert model.committee.ledger.verify().valid
    if behaviour in ("silent_primary", "silent"):  # the faulty members include view 0's primary
        assert decided["view"].iloc[0] >= 1


def test_a_large_committee_survives_f_silent_primaries_in_a_row() -> None:
    """n = 19, f = 6: views 0-5 have silent primaries, so a round needs six view changes whose timeouts double,
    63 T in all. The platform gave up after 40 T and every round stalled; it now waits T 2^(f+2)."""
    overrides = {
        **SMALL,
        "run.tasks": 1,
        "learning.rounds_per_task": 1,
        "providers.count": 10,
        "committee.size": 19,
        "committee.candidates": 19,
        "committee.verification": "unsigned",
        "faults.byzantine_committee": 6,
        "faults.byzantine_behaviour": "silent",
        "network.latency_s": {"dist": "uniform", "low": 0.001, "high": 0.01},
    }
    model, frame = run("quickstart", overrides)
    decided = frame[frame["kind"] == "consensus_decided"]
    assert not (frame["kind"] == "consensus_stalled").any()
    assert decided["view"].tolist() == [6] and model.tasks_finished == 1


def test_more_than_f_silent_members_stall_consensus_and_say_why() -> None:
    overrides = {
        **SMALL,
        "run.tasks": 1,
        "providers.count": 10,
        "faults.byzantine_committee": 3,
        "faults.byzantine_behaviour": "silent",
        "committee.verification": "unsigned",
        "committee.view_change_timeout_s": 0.5,
    }
    model, frame = run("quickstart", overrides)
    stalled = frame[frame["kind"] == "consensus_stalled"]
    assert len(stalled) == 1 and len(frame[frame["kind"] == "consensus_decided"]) == 0
    # e.g. "NEW-VIEW for view 5 from c6: 4 of 5 VIEW-CHANGE messages received": short of a quorum
    assert re.search(r"NEW-VIEW for view \d+ .*: \d+ of \d+ VIEW-CHANGE", stalled["waiting_for"].iloc[0])


def test_bne_followers_take_part_by_the_cutoff() -> None:
    model, frame = run("bgfl-table3", {"run.tasks": 1, "learning.rounds_per_task": 3})
    equilibrium = frame[frame["kind"] == "bne_equilibrium"].iloc[0]
    assert 0 < equilibrium["probability"] < 1 and equilibrium["converged"]
    chosen = frame[frame["kind"] == "action_chosen"]
    assert set(chosen["action"]) <= {0, 3}
    for provider in model.online_providers.values():
        budget = provider.private_type_for(provider).privacy_budget
        own = provider.expected_unit_cost(model.expected_update_l1_norm(budget))
        action = chosen[chosen["agent"] == provider.unique_id]["action"].iloc[0]
        assert (action == 3) == (own <= equilibrium["cost_cutoff"])


def test_mmzd_alliance_members_play_one_action() -> None:
    model, frame = run("mmzd-fig3", {"run.tasks": 5})
    chosen = frame[frame["kind"] == "action_chosen"]
    allied = chosen[chosen["strategy"] == "MMZDA"]
    assert len(allied) > 0
    assert (allied.groupby("task")["action"].nunique() == 1).all()


@pytest.mark.slow
def test_torch_backend_runs_the_market_end_to_end_on_digits() -> None:
    overrides = {
        **SMALL,
        "run.tasks": 2,
        "providers.count": 4,
        "network.degree": 2,
        "learning.backend": "torch",
        "learning.shards": 4,
        "learning.rounds_per_task": 2,
        "learning.hidden_sizes": [32, 32],
        "providers.strategy_mix": {"ALLC": 1.0},
        "committee.verification": "primary_only",
        "providers.privacy_budget": 1e6,
    }
    model, frame = run("quickstart", overrides)
    rounds = frame[frame["kind"] == "round_finished"]
    assert len(rounds) == 4 and rounds["accuracy"].notna().all()
    assert (rounds["participants"] == 4).all()
    paid = frame[frame["kind"] == "reward_paid"]
    assert len(paid) == 16 and paid["shapley_value"].abs().sum() > 0


def test_the_whole_ledger_is_in_the_log_while_memory_keeps_a_window() -> None:
    from flmarket.market.ledger import Block, Chain, verify_chain

    model, frame = run("quickstart", {**SMALL, "committee.ledger_blocks_in_memory": 4})
    committed = frame[frame["kind"] == "block_committed"].sort_values("height")
    assert len(committed) == 12 and len(model.committee.ledger) == 4
    blocks = [Block.decode(text.encode("ascii")) for text in committed["encoded"]]
    genesis = Chain(0.0).head
    assert verify_chain(blocks, first_height=1, first_prev_hash=genesis.hash).valid
    assert blocks[-1].hash == model.committee.ledger.head.hash and model.committee.ledger.verify().valid
    # Tampering with one logged block is found and located.
    tampered = dataclasses.replace(blocks[5], timestamp=blocks[5].timestamp + 1.0)
    report = verify_chain([*blocks[:5], tampered, *blocks[6:]], 1, genesis.hash)
    assert not report.valid and report.first_bad_index == 5


@pytest.mark.parametrize("verification", ["every_replica", "primary_only", "unsigned"])
def test_every_verification_mode_accepts_and_pays_the_honest_claims(verification: str) -> None:
    """Who checks signatures changes the cost, not the outcome: every on-time honest claim is screened in and
    paid (an unsigned market once rejected them all as unknown providers)."""
    overrides = {**SMALL, "run.tasks": 2, "providers.count": 10, "committee.verification": verification}
    _, frame = run("quickstart", overrides)
    sent = frame[frame["kind"] == "update_sent"]
    rejected = frame[frame["kind"] == "claim_rejected"]
    paid = frame[frame["kind"] == "reward_paid"]
    assert len(sent) > 0 and set(sent["behaviour"]) == {"honest"}
    if len(rejected):  # only late claims may be missing
        assert set(rejected["reason"]) == {"late"}
    late = set(zip(rejected["agent"], rejected["task"], rejected["round"], strict=True)) if len(rejected) else set()
    on_time = [key for key in zip(sent["agent"], sent["task"], sent["round"], strict=True) if key not in late]
    assert sorted(zip(paid["agent"], paid["task"], paid["round"], strict=True)) == sorted(on_time)


def test_a_claim_left_out_by_screening_is_logged_with_the_reason() -> None:
    model = MarketModel(load_scenario("quickstart", {**SMALL, "run.tasks": 1, "providers.count": 10}))
    stranger = next(iter(model.online_providers.values()))
    del model.committee.provider_keys[stranger.name]  # the committee elected for the task will not know it
    model.run()
    frame = events_frame(model.log.to_arrow())
    sent = frame[(frame["kind"] == "update_sent") & (frame["agent"] == stranger.unique_id)]
    rejected = frame[(frame["kind"] == "claim_rejected") & (frame["agent"] == stranger.unique_id)]
    assert len(sent) > 0 and list(rejected["reason"]) == ["screening: unknown provider"] * len(sent)
    assert not (frame[frame["kind"] == "reward_paid"]["agent"] == stranger.unique_id).any()


@pytest.mark.slow
def test_byzantine_members_under_re_election_leave_one_agreed_ledger() -> None:
    """DPoS re-elects per task, so nodes move in and out of the committee and in and out of the Byzantine
    first places; a newly elected replica starts from the agreed head. Every round is still decided, the
    logged blocks form one valid chain, and every honest member ends on its head."""
    from flmarket.market.ledger import Block, Chain, verify_chain

    overrides = {
        **SMALL,
        "run.tasks": 10,
        "providers.count": 10,
        "faults.byzantine_committee": 2,
        "faults.byzantine_behaviour": "silent_primary",
        "committee.verification": "primary_only",
    }
    model = MarketModel(load_scenario("quickstart", overrides))

    def promote_an_outsider():  # after task 4 a candidate outside the committee stakes heavily: it is elected first
        while model.tasks_finished < 4:
            yield model.env.timeout(1.0)
        outsider = next(node for node in model.committee.nodes if node.name not in model.committee.members)
        outsider.stake = 1e6

    model.env.process(promote_an_outsider())
    model.run()
    frame = events_frame(model.log.to_arrow())
    elected = frame[frame["kind"] == "committee_elected"].sort_values("seq")
    compositions = [frozenset(members.split(",")) for members in elected["members"]]
    first_places = [tuple(members.split(",")[:2]) for members in elected["members"]]
    assert len(set(compositions)) > 1 and len(set(first_places)) > 1  # members and Byzantine nodes change
    decided = frame[frame["kind"] == "consensus_decided"]
    assert model.tasks_finished == 10 and len(decided) == 10 * model.scenario.learning.rounds_per_task
    committed = frame[frame["kind"] == "block_committed"].sort_values("height")
    blocks = [Block.decode(text.encode("ascii")) for text in committed["encoded"]]
    assert verify_chain(blocks, first_height=1, first_prev_hash=Chain(0.0).head.hash).valid
    # The run stops at the first honest decision of the last round; the others' commits are still in flight.
    model.env.run(until=model.env.now + 5 * model.scenario.committee.view_change_timeout_s)
    honest = [member for member in model.committee.members.values() if member.honest]
    assert model.committee.ledger.head.hash == blocks[-1].hash
    assert len(honest) == 5 and all(member.state.chain.head.hash == blocks[-1].hash for member in honest)
