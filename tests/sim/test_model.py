"""MarketModel: determinism, seeded streams per agent, agent removal, and the quick-start's exact event count."""

from __future__ import annotations

import warnings

import numpy as np
import pandas.testing as pdt
import pytest

from flmarket.agents.provider import DataProvider
from flmarket.analysis.load import events_frame
from flmarket.market.errors import PartitionError, SocialDilemmaError
from flmarket.sim.config import ScenarioError, load_scenario
from flmarket.sim.model import MarketModel
from flmarket.sim.randomness import RandomStreams


def _events(scenario):
    model = MarketModel(scenario)
    model.run()
    return model, events_frame(model.log.to_arrow())


def test_same_seed_same_events_other_seed_other_events() -> None:
    scenario = load_scenario("quickstart", {"run.tasks": 12})
    _, first = _events(scenario)
    _, second = _events(scenario)
    pdt.assert_frame_equal(first, second)
    _, other = _events(load_scenario("quickstart", {"run.tasks": 12, "run.seed": 8}))
    assert not first.equals(other)


@pytest.mark.slow
def test_quickstart_event_count_and_final_time_are_pinned() -> None:
    """Like SimPy's benchmark tests: any drift in ordering or randomness changes these numbers."""
    model, frame = _events(load_scenario("quickstart"))
    assert model.tasks_finished == 100
    assert len(frame) == QUICKSTART_EVENTS
    assert model.env.now == pytest.approx(QUICKSTART_FINAL_TIME_S, abs=1e-9)


QUICKSTART_EVENTS = 48627  # +500: a sample and 4 strategy shares at each of the 100 tasks' ends (48127 before;
# 47827 before each round logged its shapley_estimated record, 300 rounds)
QUICKSTART_FINAL_TIME_S = 4108.786417716611  # moves by microseconds when a message grows (size / bandwidth);
# 4108.786416596611 before rewards were computed as Pi * (xi / sum xi): last-digit changes in the rewards change
# the length of the messages that carry them


def test_streams_are_keyed_by_identity_not_order() -> None:
    streams = RandomStreams(5)
    late = streams.generator("provider", 7).random(3)
    streams.generator("provider", 0).random(10)
    streams.component("network").random(10)
    assert (RandomStreams(5).generator("provider", 7).random(3) == late).all()
    assert not (streams.generator("provider", 8).random(3) == late).all()


def test_streams_draw_what_default_rng_draws_from_their_seed_sequence() -> None:
    """The streams skip keeping their SeedSequence (memory), not its stream: the same draws as default_rng's,
    and streams made one after another by one factory share no state (they are refilled from one holder)."""
    streams = RandomStreams(11)
    made = [streams.generator("provider", key) for key in range(5)] + [streams.component("network")]
    expected = [np.random.default_rng(streams.sequence("provider", key)) for key in range(5)]
    expected.append(np.random.default_rng(streams.sequence("component", "network")))
    for generator, reference in zip(made, expected, strict=True):
        assert generator.integers(2**62, size=50).tolist() == reference.integers(2**62, size=50).tolist()
        assert generator.normal(size=7).tolist() == reference.normal(size=7).tolist()


def test_providers_share_equal_approval_sets_and_continue_one_stream() -> None:
    """Memory per provider: equal approval sets are one tuple, and `generator` wraps the provider's one stream,
    so draws through successive wrappers continue it (as draws through one Generator would)."""
    model = MarketModel(load_scenario("quickstart", {"providers.count": 200}))
    providers = list(model.online_providers.values())
    by_set: dict[tuple[str, ...], tuple[str, ...]] = {}
    for provider in providers:
        assert by_set.setdefault(provider.approvals, provider.approvals) is provider.approvals
    assert len(by_set) < len(providers)  # 200 providers, at most C(committee, k) sets
    provider = providers[0]
    twin = np.random.Generator(type(provider.generator.bit_generator)())
    twin.bit_generator.state = provider.generator.bit_generator.state
    assert [provider.generator.random() for _ in range(5)] == twin.random(5).tolist()
    assert provider.generator.integers(100, size=3).tolist() == twin.integers(100, size=3).tolist()


def test_adding_providers_does_not_change_the_others_types() -> None:
    small = MarketModel(load_scenario("quickstart", {"providers.count": 10}))
    large = MarketModel(load_scenario("quickstart", {"providers.count": 12}))
    types_small = [p.private_type_for(small) for p in list(small.online_providers.values())]
    types_large = [p.private_type_for(large) for p in list(large.online_providers.values())[:10]]
    # The participation-cost window depends on N (SPEC B.2), every other drawn field must be identical.
    assert [t.unit_revenue for t in types_small] == [t.unit_revenue for t in types_large]
    assert [t.privacy_budget for t in types_small] == [t.privacy_budget for t in types_large]
    assert [p.strategy_name for p in small.online_providers.values()] == [
        p.strategy_name for p in list(large.online_providers.values())[:10]
    ]


def test_removing_an_agent_interrupts_its_process_and_takes_it_offline() -> None:
    model = MarketModel(load_scenario("quickstart", {"providers.mean_lifetime_s": 50.0}))
    provider = next(iter(model.online_providers.values()))
    model.env.run(until=1.0)
    assert provider.process.is_alive
    provider.remove("test")
    model.env.run(until=2.0)
    assert not provider.process.is_alive
    assert not model.overlay.is_online(provider.unique_id)
    assert provider not in model.agents
    frame = events_frame(model.log.to_arrow())
    left = frame[(frame["kind"] == "provider_left") & (frame["agent"] == provider.unique_id)]
    assert left["reason"].tolist() == ["test"]  # the lifetime timeout that was pending never fires
    model.env.run(until=500.0)
    frame = events_frame(model.log.to_arrow())
    assert len(frame[(frame["kind"] == "provider_left") & (frame["agent"] == provider.unique_id)]) == 1


def test_private_types_are_not_readable_by_other_agents() -> None:
    model = MarketModel(load_scenario("quickstart"))
    first, second = list(model.online_providers.values())[:2]
    assert isinstance(first, DataProvider)
    first.private_type_for(first)
    with pytest.raises(PermissionError, match="not readable"):
        first.private_type_for(second)


def test_welfare_matches_the_logged_payoffs() -> None:
    model, frame = _events(load_scenario("quickstart", {"run.tasks": 8}))
    payoffs = frame[frame["kind"] == "provider_payoff"].groupby("task")["utility"].sum()
    finished = frame[frame["kind"] == "task_finished"].set_index("task")["welfare"]
    pdt.assert_series_equal(
        payoffs.sort_index(),
        finished[finished.index.isin(payoffs.index)].sort_index(),
        check_names=False,
        check_dtype=False,
    )


def test_time_and_datacollector_follow_the_simpy_clock() -> None:
    model = MarketModel(load_scenario("quickstart", {"run.tasks": 10}))
    model.run()
    assert model.time == model.env.now
    table = model.datacollector.get_model_vars_dataframe()
    frame = events_frame(model.log.to_arrow())
    samples = frame.query("kind == 'sample'")
    ends = frame.query("kind == 'task_finished'")["time"]
    periodic = samples[~samples["time"].isin(ends)]  # the log also samples the population at every task's end
    assert len(samples) == len(periodic) + len(ends) == len(periodic) + 10
    assert table["time"].tolist() == periodic["time"].tolist() and table["time"].is_monotonic_increasing
    assert table["time"].iloc[1] - table["time"].iloc[0] == model.scenario.run.sample_interval_s


def test_step_advances_one_task_and_stepping_gives_the_same_log_as_running() -> None:
    """Mesa's convention: `model.step()` advances the market by one FL task; N steps log what run() logs."""
    scenario = load_scenario("quickstart", {"run.tasks": 5})
    stepped = MarketModel(scenario)
    finished = []
    for _ in range(5):
        assert stepped.running
        stepped.step()
        finished.append(stepped.tasks_finished)
    assert finished == [1, 2, 3, 4, 5]
    assert not stepped.running and stepped.time > 0
    stepped.step()  # past the end: nothing happens
    assert stepped.tasks_finished == 5
    run, frame = _events(scenario)
    assert stepped.time == run.time
    pdt.assert_frame_equal(events_frame(stepped.log.to_arrow()), frame)
    # Mid-run too: three steps of a longer run stop where `flmarket run --tasks 3` stops.
    longer = MarketModel(load_scenario("quickstart", {"run.tasks": 6}))
    for _ in range(3):
        longer.step()
    _, three = _events(load_scenario("quickstart", {"run.tasks": 3}))
    pdt.assert_frame_equal(events_frame(longer.log.to_arrow()), three)


def test_strategy_counts_fix_the_initial_population() -> None:
    model = MarketModel(load_scenario("mmzd-fig3"))
    labels = [provider.strategy_label for provider in model.online_providers.values()]
    assert labels == ["MMZDA"] * 3 + ["Mixed"] * 3


@pytest.mark.slow
def test_runs_are_byte_identical_across_processes_with_different_hash_seeds(tmp_path) -> None:
    """No result may depend on Python's per-process string hashing (set or dict-of-set iteration order)."""
    import hashlib
    import os
    import subprocess
    import sys

    digests = []
    for hash_seed in ("1", "2"):
        out = tmp_path / hash_seed
        subprocess.run(
            [
                sys.executable,
                "-m",
                "flmarket.sim.cli",
                "run",
                "free-riders",
                "--tasks",
                "3",
                "--quiet",
                "--out",
                str(out),
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            timeout=300,
        )
        parts = sorted(out.glob("*/events/kind=*/part-*.parquet"))
        digests.append([hashlib.sha256(part.read_bytes()).hexdigest() for part in parts])
    assert digests[0] and digests[0] == digests[1]


def test_the_committee_forgets_departed_providers_between_tasks() -> None:
    """With churn, the key registry (and every member's copy) holds the online providers and those gone since
    the current task began, not everyone who ever joined; a forgotten provider's certificates no longer check."""
    scenario = load_scenario(
        "quickstart",
        {
            "run.tasks": 8,
            "providers.arrival_rate_per_s": 0.5,
            "providers.mean_lifetime_s": 60.0,
            "committee.verification": "every_replica",
        },
    )
    model = MarketModel(scenario)
    seen: list[tuple[set[str], set[str], list[set[str]]]] = []
    backends: list[tuple[set[int], set[int]]] = []  # the learning backend forgets a provider as it leaves

    def check(_now: float, _tasks: int) -> None:
        committee = model.committee
        members = [set(member.state.provider_keys) for member in committee.members.values()]
        seen.append((set(committee.provider_keys), set(model.provider_by_name) | set(model._departed), members))
        backends.append((set(model.backend._data_sizes), set(model.online_providers)))

    model.run(check)
    ever = model._provider_ordinals  # every provider created, the initial ones included
    left = model.log.counts_by_kind["provider_left"]
    assert left > 20 and ever > scenario.providers.count + 20  # churn happened
    for registry, expected, members in seen:
        assert registry == expected  # online now, or gone during the task that just ended
        assert all(keys == registry for keys in members)
    assert len(seen[-1][0]) < ever - left / 2  # most departed providers were dropped
    assert all(registered == online for registered, online in backends)
    gone = next(name for name in seen[0][1] - seen[-1][1])  # departed during the first task, forgotten since
    member = next(iter(model.committee.members.values()))
    assert gone not in member.state.timer_checker._timer_keys


def _joined(model: MarketModel):
    frame = events_frame(model.log.to_arrow())
    return frame[frame["kind"] == "provider_joined"]


@pytest.mark.slow
def test_a_churning_torch_market_reuses_departed_providers_shards() -> None:
    """With the torch backend each online provider trains on a shard of its own; departed providers return
    theirs, so a run with more joiners than shards goes on (it used to stop at the first joiner past the count)."""
    scenario = load_scenario(
        "quickstart",
        {
            "run.tasks": 6,
            "providers.count": 4,
            "network.degree": 2,
            "providers.arrival_rate_per_s": 0.15,
            "providers.mean_lifetime_s": 25.0,
            "learning.backend": "torch",
            "learning.shards": 12,
            "learning.rounds_per_task": 1,
            "learning.hidden_sizes": [16],
            "committee.verification": "unsigned",
        },
    )
    model = MarketModel(scenario)
    held: list[list[int]] = []

    def check(_now: float, _tasks: int) -> None:
        shard_of = model.backend._shard_of
        assert set(shard_of) == set(model.online_providers)
        held.append(list(shard_of.values()))

    model.run(check)
    assert model.tasks_finished == 6
    joined = _joined(model)
    shards = model.backend.partition.shards
    assert set(joined["data_size"]) <= {float(shard.size) for shard in shards}  # |D_i| as trained on
    assert all(
        provider.data_size == shards[model.backend._shard_of[provider.unique_id]].size
        for provider in model.online_providers.values()
    )
    assert model._provider_ordinals > scenario.learning.shards  # more providers joined than there are shards
    assert all(len(shards) == len(set(shards)) for shards in held)  # never two online providers on one shard


def test_a_provider_joins_with_the_data_size_its_backend_gave_it() -> None:
    """|D_i| in the log is what the provider trains on (the surrogate's fixed size here), not a separate prior
    (`providers.data_size` was drawn, logged and never used: it is no longer a scenario key)."""
    model = MarketModel(load_scenario("quickstart", {"run.tasks": 1, "providers.arrival_rate_per_s": 0.05}))
    model.run()
    joined = _joined(model)
    assert len(joined) > model.scenario.providers.count  # joiners too
    assert (joined["data_size"] == model.backend.config.surrogate_data_size).all()
    with pytest.raises(ScenarioError, match="providers.data_size: unknown key"):
        load_scenario("quickstart", {"providers.data_size": 180.0})


def test_a_population_that_is_no_dilemma_is_refused_with_the_key_that_lets_it_run() -> None:
    """SPEC B.2 is checked on the initial population; the error says why and how to run it anyway."""
    alone = {"providers.count": 1, "network.topology": "complete", "run.tasks": 1}
    refusal = r"one provider alone cannot face one\); set learning.require_dilemma = false .* Assumption 1"
    with pytest.raises(SocialDilemmaError, match=refusal):
        MarketModel(load_scenario("quickstart", alone))
    with pytest.warns(UserWarning, match="not a social dilemma"):
        model = MarketModel(load_scenario("quickstart", {**alone, "learning.require_dilemma": False}))
    model.run()
    assert model.tasks_finished == 1


def test_a_torch_market_warns_before_the_run_when_churn_may_outgrow_its_shards() -> None:
    torch_market = {
        "run.tasks": 2,
        "providers.count": 4,
        "network.degree": 2,
        "providers.arrival_rate_per_s": 0.15,
        "providers.mean_lifetime_s": 25.0,
        "learning.backend": "torch",
        "learning.hidden_sizes": [16],
    }
    with pytest.warns(UserWarning, match=r"learning.shards = 4: the online population may reach about \d+ .* raise"):
        MarketModel(load_scenario("quickstart", {**torch_market, "learning.shards": 4}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # enough shards: no warning
        MarketModel(load_scenario("quickstart", {**torch_market, "learning.shards": 40}))


def test_a_partition_that_cannot_be_drawn_names_the_scenario_keys() -> None:
    skewed = {
        "learning.backend": "torch",
        "learning.partition": "dirichlet",
        "learning.dirichlet_alpha": 0.01,
        "learning.shards": 64,
    }
    advice = r"learning.shards = 64: .* lower learning.shards, or raise learning.dirichlet_alpha"
    with pytest.raises(PartitionError, match=advice):
        MarketModel(load_scenario("quickstart", {**skewed, "run.tasks": 1}))
    more_shards_than_records = {"learning.backend": "torch", "learning.shards": 2000, "run.tasks": 1}
    with pytest.raises(PartitionError, match=r"'iid' with learning.shards = 2000: .*\. In a scenario, lower learning"):
        MarketModel(load_scenario("quickstart", more_shards_than_records))


@pytest.mark.parametrize(
    ("verification", "mean_wait_s"),
    # unsigned timers wait exactly the mean: 4 s after round 0's 2.7 s of training (5 epochs) outlasts its 6 s round
    [("every_replica", 2.0), ("modelled", 2.0), ("unsigned", 4.0)],
)
def test_a_contribution_the_next_round_overtakes_is_abandoned_not_a_crash(
    verification: str, mean_wait_s: float
) -> None:
    """PoET waits often outlast a round: the next round's contribution starts while the last one still waits. The
    trusted timer holds one timer at a time, so the older contribution is given up and logged (it used to stop the
    run with 'timer has not elapsed' or 'no active timer'); every verification mode treats it the same way."""
    overrides = {
        "run.tasks": 3,
        "providers.count": 10,
        "providers.strategy_mix": {"ALLC": 1.0},
        "learning.round_duration_s": 6.0,
        "committee.poet_mean_wait_s": mean_wait_s,
        "committee.verification": verification,
    }
    model = MarketModel(load_scenario("quickstart", overrides))
    model.run()
    assert model.tasks_finished == 3
    frame = events_frame(model.log.to_arrow())
    keys = ["agent", "task", "round"]
    abandoned = frame[frame["kind"] == "update_abandoned"]
    sent = frame[frame["kind"] == "update_sent"]
    assert len(abandoned) >= 5 and len(sent) >= 20
    assert not set(map(tuple, abandoned[keys].to_numpy().tolist())) & set(map(tuple, sent[keys].to_numpy().tolist()))
    started = frame[frame["kind"] == "round_started"].set_index(["task", "round"])["time"]
    deadlines = started.loc[list(zip(abandoned["task"], abandoned["round"], strict=True))].to_numpy() + 6.0
    assert (abandoned["time"].to_numpy() > deadlines).all()  # its round had closed: it would have been late
    # privacy counts on release (SPEC D.5): each sent update's total is the sum of the provider's sent eps so far
    released = sent.sort_values("seq").groupby("agent")["privacy_spent"].cumsum()
    assert abandoned["agent"].isin(sent["agent"]).any()  # providers that gave one up and sent later
    assert released.to_numpy() == pytest.approx(sent.sort_values("seq")["privacy_spent_total"].to_numpy())


def test_a_round_reports_as_paid_only_what_reached_providers() -> None:
    """round_finished.paid was the settlement's total, a leaver's forfeited reward included, so the rounds of a
    task added up to more than task_settled.paid."""
    churn = {"run.tasks": 3, "run.seed": 700247, "providers.arrival_rate_per_s": 0.3}
    model = MarketModel(load_scenario("quickstart", churn))
    model.run()
    frame = events_frame(model.log.to_arrow())
    assert (frame["kind"] == "reward_forfeited").any()  # the case this is about
    paid = frame[frame["kind"] == "reward_paid"].groupby(["task", "round"])["reward"].sum()
    rounds = frame[frame["kind"] == "round_finished"].set_index(["task", "round"])["paid"]
    assert rounds.to_dict() == pytest.approx(paid.reindex(rounds.index, fill_value=0.0).to_dict(), abs=1e-9)
    settled = frame[frame["kind"] == "task_settled"].set_index("task")["paid"]
    assert rounds.groupby(level="task").sum().to_dict() == pytest.approx(settled.to_dict(), abs=1e-9)


def test_the_population_is_sampled_at_every_task_s_end() -> None:
    """The bundled evolution run's last sample was at 240 s and the run ended at 313.7 s, so the final strategy
    shares, extinction and fixation showed a population 70 s out of date (the initial one with a long interval)."""
    scenario = load_scenario("evolution", {"run.tasks": 4, "run.sample_interval_s": 1e6})
    model, frame = _events(scenario)
    samples = frame[frame["kind"] == "sample"]
    ends = frame[frame["kind"] == "task_finished"]["time"].tolist()
    assert samples["time"].tolist() == [0.0, *ends] and ends[-1] == model.env.now
    assert samples["tasks_finished"].tolist() == [0, 1, 2, 3, 4]
    final = frame[(frame["kind"] == "strategy_share") & (frame["time"] == model.env.now)]
    assert dict(zip(final["strategy"], final["count"].astype(int), strict=True)) == model.strategy_counts()
    switched = frame[frame["kind"] == "strategy_switched"]
    assert len(switched) > 0 and switched["time"].max() <= model.env.now  # the last sample counts the switches


def test_stepping_to_a_horizon_logs_what_running_to_it_logs() -> None:
    """step() stopped at the horizon with a plain timeout, after the sampler's event due then: one more sample
    and four more shares at t = 300 than run(), which stops before the events at its horizon."""
    scenario = load_scenario("quickstart", {"run.tasks": 50, "run.horizon_s": 300.0, "providers.count": 8})
    run, frame = _events(scenario)
    stepped = MarketModel(scenario)
    while stepped.running:
        stepped.step()
    assert stepped.env.now == run.env.now == 300.0 and stepped.tasks_finished == run.tasks_finished
    pdt.assert_frame_equal(events_frame(stepped.log.to_arrow()), frame)
