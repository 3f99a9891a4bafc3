"""Modelled signatures in the whole market (`committee.verification = "modelled"`): the same outcomes as real
Ed25519 for the same seed, the modelled cost as simulated delay, and a tampered claim still refused."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pandas.testing as pdt

from flmarket.analysis.load import events_frame
from flmarket.market.ledger import SignedClaim
from flmarket.sim.config import load_scenario
from flmarket.sim.model import MarketModel

SMALL = {
    "run.tasks": 3,
    "providers.count": 12,
    "providers.arrival_rate_per_s": 0.0,
    "providers.mean_lifetime_s": math.inf,
}
FREE = {"committee.signature_sign_s": 0.0, "committee.signature_verify_s": 0.0}


def run(overrides: dict, tamper: bool = False) -> tuple[MarketModel, pd.DataFrame]:
    model = MarketModel(load_scenario("quickstart", {**SMALL, **overrides}))
    if tamper:
        _tamper_first_update_of_each_round(model)
    model.run()
    return model, events_frame(model.log.to_arrow())


def _tamper_first_update_of_each_round(model: MarketModel) -> None:
    """A man in the middle lowers the claimed unit cost of the first update the collector gets in each round,
    keeping the provider's signature (a lower C_unit would earn a larger reward, B 13)."""
    receive = model.receive_update
    tampered_rounds: set[tuple[int, int]] = set()

    def tampering_receive(upload, node) -> None:
        if (upload.task, upload.round) not in tampered_rounds:
            tampered_rounds.add((upload.task, upload.round))
            signed = upload.claim.signed_claim
            cheaper = dataclasses.replace(signed.claim, unit_cost=signed.claim.unit_cost / 2)
            claim = dataclasses.replace(upload.claim, signed_claim=SignedClaim(cheaper, signed.signature))
            upload = dataclasses.replace(upload, claim=claim)
        receive(upload, node)

    model.receive_update = tampering_receive


def kind(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    return frame[frame["kind"] == name].dropna(axis=1, how="all").reset_index(drop=True)


def relative_send_times(frame: pd.DataFrame) -> pd.Series:
    """Each update_sent time minus its round's start, by (task, round, agent)."""
    started = kind(frame, "round_started").set_index(["task", "round"])["time"]
    sent = kind(frame, "update_sent").set_index(["task", "round", "agent"])["time"]
    return sent - started.reindex(sent.index.droplevel("agent")).to_numpy()


def test_at_zero_cost_a_modelled_run_logs_exactly_what_the_real_signature_run_logs() -> None:
    """Same seed, no modelled delay: every event, time and value is the same (the tags are as long as Ed25519
    signatures, so even message sizes and latencies agree); the signature sample draws from its own stream."""
    _, real = run({"committee.verification": "every_replica"})
    _, modelled = run({"committee.verification": "modelled", **FREE})
    pdt.assert_frame_equal(real, modelled)


def test_with_the_measured_costs_welfare_participation_and_rewards_equal_the_real_run() -> None:
    real_model, real = run({"committee.verification": "every_replica"})
    modelled_model, modelled = run({"committee.verification": "modelled"})
    assert real_model.tasks_finished == modelled_model.tasks_finished == 3
    outcome = ["task", "players", "total_participation", "welfare", "precision"]
    pdt.assert_frame_equal(kind(real, "task_finished")[outcome], kind(modelled, "task_finished")[outcome])
    payoff = ["agent", "task", "strategy", "action", "utility", "reward", "payoff"]
    pdt.assert_frame_equal(kind(real, "provider_payoff")[payoff], kind(modelled, "provider_payoff")[payoff])
    paid = ["agent", "task", "round", "reward"]
    pdt.assert_frame_equal(kind(real, "reward_paid")[paid], kind(modelled, "reward_paid")[paid])


def test_modelled_signing_and_verifying_appear_as_delay_in_the_timings() -> None:
    """A provider waits 3 signatures (claim, timer, certificate) before its update leaves; consensus waits for
    the primary to verify 3 signatures per claim before PRE-PREPARE and for the backups to do the same before
    PREPARE: 6 x claims x verify_s more latency than at zero cost."""
    sign_s, verify_s = 1e-3, 2e-3
    _, free = run({"committee.verification": "modelled", **FREE})
    _, costly = run(
        {
            "committee.verification": "modelled",
            "committee.signature_sign_s": sign_s,
            "committee.signature_verify_s": verify_s,
        }
    )
    shift = relative_send_times(costly) - relative_send_times(free)
    assert len(shift) > 0 and shift.notna().all()
    assert (shift - 3 * sign_s).abs().max() < 1e-9
    decided_free, decided_costly = kind(free, "consensus_decided"), kind(costly, "consensus_decided")
    claims = kind(costly, "block_committed")["transactions"]
    assert (kind(free, "block_committed")["transactions"] == claims).all()
    extra = decided_costly["latency_s"] - decided_free["latency_s"]
    assert ((extra - 6 * claims * verify_s).abs() < 1e-6).all()  # (network latencies move by < 0.1 us)
    assert (decided_costly["view"] == 0).all()


def test_a_tampered_claim_is_refused_in_a_modelled_market_by_the_hash_alone() -> None:
    """No real verification at all (sample rate 0): the tag bound to the claim catches the changed cost."""
    model, frame = run({"committee.verification": "modelled", "committee.signature_sample_rate": 0.0}, tamper=True)
    rejected = kind(frame, "claim_rejected")
    rounds = kind(frame, "round_started")
    assert len(rejected) == len(rounds) == 3 * model.scenario.learning.rounds_per_task
    assert set(rejected["reason"]) == {"screening: bad claim signature"}
    paid = kind(frame, "reward_paid").set_index(["task", "round", "agent"]).index
    assert not set(rejected.set_index(["task", "round", "agent"]).index) & set(paid)
    # The same tampering against real Ed25519 is refused the same way.
    _, real = run({"committee.verification": "every_replica"}, tamper=True)
    pdt.assert_frame_equal(
        kind(real, "claim_rejected")[["task", "round", "agent", "reason"]],
        rejected[["task", "round", "agent", "reason"]],
    )
