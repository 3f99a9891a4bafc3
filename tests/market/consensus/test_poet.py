"""Tests for market/consensus/poet.py: wait timers, CheckTimer, local mean, z-test, fair winner selection."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from flmarket.market.consensus.poet import (
    PoetSettings,
    TimerChecker,
    TimerError,
    TimerVerdict,
    TrustedTimer,
    WaitCertificate,
    expected_winning_wait,
    local_mean,
    select_winner,
    wait_duration,
    z_test_rejects,
)
from flmarket.market.ledger import derive_private_key, sha256_hex

SETTINGS = PoetSettings()
PAYLOAD = sha256_hex(b"block")


def make_timers(count: int, seed: int = 0, settings: PoetSettings = SETTINGS) -> list[TrustedTimer]:
    rng = np.random.default_rng(seed)
    return [
        TrustedTimer(f"n{index}", derive_private_key(seed, f"timer-n{index}"), rng, settings) for index in range(count)
    ]


def test_wait_duration_is_minimum_plus_exponential() -> None:
    # u = e^-1: 1 - 20 * ln(e^-1) = 21 (SPEC D.1).
    assert wait_duration(1.0, 20.0, math.exp(-1.0)) == pytest.approx(21.0)
    assert wait_duration(1.0, 20.0, 1.0) == 1.0
    with pytest.raises(TimerError, match="uniform: must be in"):
        wait_duration(1.0, 20.0, 0.0)


def test_trusted_timer_refuses_missing_early_and_stale_requests() -> None:
    timer = make_timers(1)[0]
    with pytest.raises(TimerError, match="no active timer"):
        timer.create_wait_certificate(0.0, PAYLOAD)
    wait = timer.create_wait_timer(now=100.0, local_mean=20.0)
    with pytest.raises(TimerError, match="has not elapsed"):
        timer.create_wait_certificate(wait.expiry_time - 0.01, PAYLOAD)
    with pytest.raises(TimerError, match="stale"):
        timer.create_wait_certificate(wait.expiry_time + SETTINGS.stale_timeout_s + 0.01, PAYLOAD)
    certificate = timer.create_wait_certificate(wait.expiry_time, PAYLOAD)
    assert certificate.issue_time == wait.expiry_time
    with pytest.raises(TimerError, match="no active timer"):  # one certificate per timer
        timer.create_wait_certificate(wait.expiry_time + 1.0, PAYLOAD)


def test_check_timer_accepts_honest_and_rejects_forged_early_stale_and_replayed() -> None:
    honest, other = make_timers(2)
    checker = TimerChecker({"n0": honest.public_key, "n1": other.public_key}, SETTINGS)
    wait = honest.create_wait_timer(now=0.0, local_mean=20.0)
    certificate = honest.create_wait_certificate(wait.expiry_time + 0.5, PAYLOAD)
    now = certificate.issue_time + 1.0
    assert checker.inspect(certificate, now) is TimerVerdict.ACCEPTED

    # Forged: a shorter duration re-signed with a key that is not n0's timer key.
    forger = derive_private_key(99, "forger")
    short = dataclasses.replace(wait, duration=1.0)
    short = dataclasses.replace(short, signature=forger.sign(short.signed_bytes()))
    unsigned = WaitCertificate(short, PAYLOAD, short.expiry_time, b"")
    forged = dataclasses.replace(unsigned, signature=forger.sign(unsigned.signed_bytes()))
    assert checker.inspect(forged, now) is TimerVerdict.BAD_SIGNATURE
    # Tampered: the honest signature no longer covers an edited duration.
    tampered = dataclasses.replace(certificate, timer=dataclasses.replace(wait, duration=1.0))
    assert checker.inspect(tampered, now) is TimerVerdict.BAD_SIGNATURE
    # Early: a correctly signed certificate presented before the timer expired.
    key = derive_private_key(0, "timer-n0")
    early_unsigned = WaitCertificate(wait, PAYLOAD, wait.request_time + 0.5, b"")
    early = dataclasses.replace(early_unsigned, signature=key.sign(early_unsigned.signed_bytes()))
    assert checker.inspect(early, now) is TimerVerdict.NOT_ELAPSED
    assert checker.inspect(certificate, wait.expiry_time - 0.1) is TimerVerdict.NOT_ELAPSED
    # Stale: checked after the maximum certificate age.
    assert checker.inspect(certificate, certificate.issue_time + 61.0) is TimerVerdict.STALE
    # Unknown owner: no registered (hence no active) timer.
    assert TimerChecker({}, SETTINGS).inspect(certificate, now) is TimerVerdict.NO_ACTIVE_TIMER
    # One certificate per timer: the second presentation is refused.
    assert checker.check(certificate, now) is TimerVerdict.ACCEPTED
    assert checker.check(certificate, now + 1.0) is TimerVerdict.DUPLICATE
    # Memory stays bounded: the record is dropped once a replay would be stale anyway.
    later = other.create_wait_timer(now=1000.0, local_mean=20.0)
    assert checker.check(other.create_wait_certificate(later.expiry_time, PAYLOAD), later.expiry_time)
    assert checker.remembered_timers == 1


def run_rounds(timers: list[TrustedTimer], rounds: int, mean_for) -> list[WaitCertificate]:
    winners: list[WaitCertificate] = []
    now = 0.0
    for _ in range(rounds):
        mean = mean_for(winners)
        certificates = []
        for timer in timers:
            wait = timer.create_wait_timer(now, mean)
            certificates.append(timer.create_wait_certificate(wait.expiry_time, PAYLOAD))
        winner = select_winner(certificates)
        winners.append(winner)
        now = winner.issue_time
    return winners


def test_equal_nodes_win_equal_shares_chi_square() -> None:
    nodes = 5
    winners = run_rounds(make_timers(nodes, seed=11), 1000, lambda history: 100.0)
    counts = np.bincount([int(w.owner_id[1:]) for w in winners], minlength=nodes)
    assert stats.chisquare(counts).pvalue > 0.05


def test_mean_winning_wait_is_minimum_plus_expected_minimum_of_exponentials() -> None:
    nodes, mean, rounds = 5, 100.0, 1500
    winners = run_rounds(make_timers(nodes, seed=12), rounds, lambda history: mean)
    waits = np.array([w.duration for w in winners])
    theory = expected_winning_wait(1.0, [mean] * nodes)
    assert theory == pytest.approx(1.0 + mean / nodes)  # min of 5 Exp(mean 100) has mean 20
    standard_error = (mean / nodes) / math.sqrt(rounds)
    assert abs(waits.mean() - theory) < 4 * standard_error


def test_population_estimate_makes_the_winning_wait_minimum_plus_target() -> None:
    nodes = 8
    winners = run_rounds(make_timers(nodes, seed=13), 1200, lambda h: local_mean(h, SETTINGS).local_mean)
    estimate = local_mean(winners, SETTINGS)
    assert estimate.population_estimate == pytest.approx(nodes, rel=0.35)
    steady = np.array([w.duration for w in winners[300:]])
    # "minimum + target" (SPEC D.1) is the mean *winning* wait once local_mean = target * N.
    assert steady.mean() == pytest.approx(SETTINGS.minimum_wait_s + SETTINGS.target_wait_s, rel=0.15)


def test_bootstrap_local_mean_follows_spec_formula() -> None:
    assert local_mean([], SETTINGS).local_mean == 20.0  # r = 0: target
    history = run_rounds(make_timers(2, seed=1), 25, lambda h: 50.0)
    # r = 25/50: 20 * (1 - 0.25) + 3000 * 0.25 = 765
    assert local_mean(history, SETTINGS).local_mean == pytest.approx(765.0)


def union_and_max_reject_probability(nodes: int, depths: int, settings: PoetSettings) -> tuple[float, float]:
    """Exact per-depth false-reject probabilities from the binomial law (independent of the code)."""
    p = 1.0 / nodes
    per_depth = []
    for depth in range(1, depths + 1):
        threshold = max(settings.z_min_observed, depth * p + settings.z_max * math.sqrt(depth * p * (1 - p)))
        # observed = 1 (the claim) + Binomial(depth - 1, p); reject iff observed > threshold.
        per_depth.append(stats.binom.sf(math.floor(threshold) - 1, depth - 1, p))
    return float(sum(per_depth)), float(max(per_depth))


@pytest.mark.parametrize("window", [20, 50, None])
def test_z_test_false_reject_rate_on_honest_nodes_is_measured_and_bounded(window: int | None) -> None:
    nodes, blocks, history_depth = 10, 4000, 200
    settings = PoetSettings(z_window=window)
    rng = np.random.default_rng(21)
    winners = [f"n{index}" for index in rng.integers(0, nodes, size=blocks + history_depth)]
    rejected = sum(
        z_test_rejects(winners[t], winners[t - history_depth + 1 : t + 1], nodes, settings)
        for t in range(history_depth, history_depth + blocks)
    )
    rate = rejected / blocks
    union, single = union_and_max_reject_probability(nodes, window or history_depth, settings)
    slack = 4 * math.sqrt(max(union, 1e-4) / blocks)
    assert single - slack <= rate <= min(union, 1.0) + slack
    print(f"z-test false-reject rate, {nodes} honest nodes, window {window}: {rate:.4f}")


def test_recording_alone_keeps_the_used_timers_bounded() -> None:
    """PPBG-AC replicas only inspect and record (no check): the record must still forget old timers."""
    (timer,) = make_timers(1)
    checker = TimerChecker({timer.owner_id: timer.public_key}, SETTINGS)
    now = 0.0
    for _ in range(200):
        wait = timer.create_wait_timer(now, local_mean=5.0)
        now = wait.expiry_time
        checker.record(timer.create_wait_certificate(now, PAYLOAD))
        now += 10.0
    # Only certificates issued within max_certificate_age (60 s) of the newest are remembered.
    assert checker.remembered_timers <= 60.0 / 10.0 + 1


def test_recording_a_blocks_certificates_at_once_remembers_what_recording_each_does() -> None:
    timers = make_timers(30, seed=2)
    one_by_one = TimerChecker({timer.owner_id: timer.public_key for timer in timers}, SETTINGS)
    at_once = TimerChecker({timer.owner_id: timer.public_key for timer in timers}, SETTINGS)
    now = 0.0
    for _ in range(12):  # rounds 25 s apart: timers older than 60 s are forgotten on the way
        certificates = []
        for timer in timers:
            wait = timer.create_wait_timer(now, local_mean=5.0)
            certificates.append(timer.create_wait_certificate(wait.expiry_time, PAYLOAD))
        certificates.sort(key=lambda certificate: certificate.issue_time)  # a block's claims, by timestamp
        for certificate in certificates:
            one_by_one.record(certificate)
        at_once.record_all(certificates)
        assert at_once._seen == one_by_one._seen
        assert at_once.inspect(certificates[0], certificates[-1].issue_time) is TimerVerdict.DUPLICATE
        now = max(certificate.issue_time for certificate in certificates) + 25.0
    assert 0 < at_once.remembered_timers <= 3 * len(timers)


def test_timers_and_certificates_are_encoded_field_by_field_exactly_as_the_canonical_encoder_would() -> None:
    from flmarket.market.ledger import canonical_encoding

    rng = np.random.default_rng(4)
    timer_node = make_timers(1, seed=4)[0]
    for now in (0, 0.0, 3, 12.5, float(rng.exponential(1e6)), 1e-300, 123456789.123456789):
        timer = timer_node.create_wait_timer(now, local_mean=float(rng.exponential(30.0)))
        certificate = timer_node.create_wait_certificate(timer.expiry_time, PAYLOAD)
        for record in (timer, certificate, dataclasses.replace(timer), dataclasses.replace(certificate)):
            assert record.signed_bytes() == canonical_encoding(record._plain())  # incl. ints such as now = 0
    # a signed copy keeps the bytes its enclave signed (the signature is not among them)
    unsigned = dataclasses.replace(timer, signature=b"")
    assert timer.signed_bytes() == unsigned.signed_bytes()
    # a name that JSON must escape, and values only the general encoder judges (NaN, a bool)
    odd = dataclasses.replace(timer, owner_id='n"\u00e9\n')
    assert odd.signed_bytes() == canonical_encoding(odd._plain())
    assert dataclasses.replace(timer, minimum_wait=True).signed_bytes() == canonical_encoding(
        dataclasses.replace(timer, minimum_wait=True)._plain()
    )
    with pytest.raises(ValueError, match="must be plain JSON data"):
        dataclasses.replace(certificate, issue_time=math.nan).signed_bytes()
