"""Benchmark the committee: PBFT decisions per simulated and per wall second, and one PPBG-AC round's cost.

Run: python benchmarks/bench_consensus.py [--quick]

PBFT replicas (sans-IO) are driven by a SimPy environment with uniform 5-50 ms link latencies; requests are
submitted at once and the primary pipelines them within its log window. The PPBG-AC round times claim
screening (Ed25519 + CheckTimer), proposal building, one replica's re-check and the block, for 100 providers.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import simpy

from flmarket.market.consensus.pbft import Broadcast, CancelTimer, Decided, PbftReplica, Send, SetTimer
from flmarket.market.consensus.poet import PoetSettings, TimerChecker, TrustedTimer
from flmarket.market.consensus.ppbg import (
    RoundInput,
    TimestampedClaim,
    block_for_decision,
    build_proposal,
    check_proposal,
    screen_claims,
)
from flmarket.market.ledger import Chain, ProviderClaim, derive_private_key, public_key_bytes, sha256_hex, sign_claim


def run_pbft(replica_count: int, requests: int, seed: int) -> tuple[float, float, int]:
    """Simulated seconds, wall seconds and point-to-point messages to decide `requests` at every replica."""
    env = simpy.Environment()
    rng = np.random.default_rng(seed)
    ids = [f"r{index}" for index in range(replica_count)]
    replicas = {rid: PbftReplica(rid, ids, checkpoint_interval=10, view_change_timeout_s=5.0) for rid in ids}
    decided = dict.fromkeys(ids, 0)
    timer_generation: dict[str, int] = dict.fromkeys(ids, 0)
    messages = 0

    def deliver(target: str, message) -> None:
        handle(target, replicas[target].receive(message))

    def fire(target: str, generation: int) -> None:
        if timer_generation[target] == generation:
            handle(target, replicas[target].on_timer("view-change"))

    def handle(source: str, outgoing) -> None:
        nonlocal messages
        for item in outgoing:
            if isinstance(item, Send | Broadcast):
                targets = [item.to] if isinstance(item, Send) else [rid for rid in ids if rid != source]
                latencies = rng.uniform(0.005, 0.05, size=len(targets))
                for target, latency in zip(targets, latencies, strict=True):
                    messages += 1
                    event = env.timeout(float(latency))
                    event.callbacks.append(lambda _, t=target, m=item.message: deliver(t, m))
            elif isinstance(item, SetTimer):
                timer_generation[source] += 1
                event = env.timeout(item.delay_s)
                event.callbacks.append(lambda _, s=source, g=timer_generation[source]: fire(s, g))
            elif isinstance(item, CancelTimer):
                timer_generation[source] += 1
            elif isinstance(item, Decided):
                decided[source] += 1

    started = time.perf_counter()
    for index in range(requests):
        for rid in ids:
            handle(rid, replicas[rid].submit(f"request-{index}", {"round": index}))
    while min(decided.values()) < requests:
        env.step()
    return env.now, time.perf_counter() - started, messages


def ppbg_round(providers: int, seed: int = 0) -> dict[str, float]:
    """Wall seconds of each step of one PPBG-AC round with `providers` claims."""
    settings = PoetSettings()
    rng = np.random.default_rng(seed)
    claim_keys = [derive_private_key(seed, f"claim-{index}") for index in range(providers)]
    timers = [
        TrustedTimer(f"p{index}", derive_private_key(seed, f"timer-{index}"), rng, settings)
        for index in range(providers)
    ]
    claims = []
    for index in range(providers):
        claim = ProviderClaim(f"p{index}", 1, 1, 8.0 + float(rng.random()), sha256_hex(f"u{index}".encode()))
        wait = timers[index].create_wait_timer(0.0, 5.0)
        certificate = timers[index].create_wait_certificate(wait.expiry_time, claim.digest())
        claims.append(TimestampedClaim(sign_claim(claim, claim_keys[index]), certificate))
    provider_keys = {f"p{index}": public_key_bytes(key) for index, key in enumerate(claim_keys)}
    timer_keys = {timer.owner_id: timer.public_key for timer in timers}
    now = max(item.timestamp for item in claims) + 1.0

    def solve(signed) -> int:
        return math.floor(1000.0 / sum(item.claim.unit_cost for item in signed))

    def rewards(signed, gamma) -> dict[str, float]:
        return {item.claim.provider_id: 100.0 / len(signed) for item in signed}

    timings: dict[str, float] = {}
    started = time.perf_counter()
    screening = screen_claims(1, claims, provider_keys, TimerChecker(timer_keys, settings), now)
    timings["screen (verify + CheckTimer + sort)"] = time.perf_counter() - started
    started = time.perf_counter()
    proposal = build_proposal(RoundInput(1, tuple(claims), sha256_hex(b"model"), now), screening, solve, rewards)
    digest = proposal.digest()
    timings["build proposal + digest"] = time.perf_counter() - started
    started = time.perf_counter()
    check = check_proposal(proposal, provider_keys, TimerChecker(timer_keys, settings), solve, rewards)
    timings["replica re-check"] = time.perf_counter() - started
    started = time.perf_counter()
    block_for_decision(Chain(), proposal)
    timings["block"] = time.perf_counter() - started
    assert check.valid and len(screening.accepted) == providers and digest
    timings["total"] = sum(timings.values())
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = parser.parse_args()
    sizes = [4, 7, 16] if args.quick else [4, 7, 16, 31, 64]
    requests = 5 if args.quick else 30
    print(f"PBFT, {requests} requests, latency U[5, 50] ms")
    print(f"{'n':>4} {'messages/decision':>18} {'decisions/sim s':>16} {'decisions/wall s':>17} {'wall s':>8}")
    for replica_count in sizes:
        sim_s, wall_s, messages = run_pbft(replica_count, requests, seed=replica_count)
        print(
            f"{replica_count:>4} {messages / requests:>18.0f} {requests / sim_s:>16.1f} "
            f"{requests / wall_s:>17.1f} {wall_s:>8.3f}"
        )
    providers = 20 if args.quick else 100
    print(f"\nPPBG-AC round with {providers} providers' claims (wall seconds)")
    for step, seconds in ppbg_round(providers).items():
        print(f"  {step:<40} {seconds:.4f}")


if __name__ == "__main__":
    main()
