"""A deterministic in-test network for sans-IO PBFT replicas: a heap of (time, seq, event) and seeded
latencies."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flmarket.market.consensus.pbft import (
    Broadcast,
    CancelTimer,
    Decided,
    Message,
    Outgoing,
    Send,
    SetTimer,
    StateTransfer,
)


@dataclass
class Network:
    """Delivers replica outputs with random latencies drawn from `rng`; fires timers; records everything."""

    replicas: dict[str, Any]
    rng: np.random.Generator
    min_latency_s: float = 0.001
    max_latency_s: float = 0.05
    now: float = 0.0
    decisions: dict[str, dict[int, Decided]] = field(default_factory=dict)
    decision_times: list[float] = field(default_factory=list)
    message_counts: Counter = field(default_factory=Counter)
    message_bytes: Counter = field(default_factory=Counter)
    state_transfers: int = 0
    events: int = 0
    drop: Callable[[str, str, Message], bool] | None = None

    def __post_init__(self) -> None:
        self._queue: list[tuple[float, int, str, str, Any]] = []
        self._sequence = 0
        self._timer_generation: dict[tuple[str, str], int] = {}
        self.decisions = {replica_id: {} for replica_id in self.replicas}

    def _push(self, time: float, kind: str, target: str, payload: Any) -> None:
        self._sequence += 1
        heapq.heappush(self._queue, (time, self._sequence, kind, target, payload))

    def _latency(self) -> float:
        return float(self.rng.uniform(self.min_latency_s, self.max_latency_s))

    def handle(self, source: str, outgoing: list[Outgoing]) -> None:
        for item in outgoing:
            if isinstance(item, Send | Broadcast):
                targets = [item.to] if isinstance(item, Send) else [r for r in self.replicas if r != source]
                for target in targets:
                    self.message_counts[item.message.phase] += 1
                    self.message_bytes[item.message.phase] += item.message.size_bytes
                    if self.drop is not None and self.drop(source, target, item.message):
                        continue
                    self._push(self.now + self._latency(), "message", target, item.message)
            elif isinstance(item, SetTimer):
                key = (source, item.name)
                generation = self._timer_generation.get(key, 0) + 1
                self._timer_generation[key] = generation
                self._push(self.now + item.delay_s, "timer", source, (item.name, generation))
            elif isinstance(item, CancelTimer):
                key = (source, item.name)
                self._timer_generation[key] = self._timer_generation.get(key, 0) + 1
            elif isinstance(item, Decided):
                assert item.sequence not in self.decisions[source], "a replica decided one sequence twice"
                self.decisions[source][item.sequence] = item
                self.decision_times.append(self.now)
            elif isinstance(item, StateTransfer):
                self.state_transfers += 1

    def submit(self, request_id: str, payload: Any) -> None:
        for replica_id, replica in self.replicas.items():
            self.handle(replica_id, replica.submit(request_id, payload))

    def run(self, until_s: float, stop: Callable[[], bool] | None = None) -> None:
        while self._queue and self._queue[0][0] <= until_s:
            if stop is not None and stop():
                return
            time, _, kind, target, payload = heapq.heappop(self._queue)
            self.now = time
            self.events += 1
            replica = self.replicas[target]
            if kind == "message":
                self.handle(target, replica.receive(payload))
            else:
                name, generation = payload
                if self._timer_generation.get((target, name)) == generation:
                    self.handle(target, replica.on_timer(name))
        self.now = max(self.now, until_s) if not self._queue else self.now

    def decided_count(self, replica_ids: list[str]) -> int:
        return min(len(self.decisions[replica_id]) for replica_id in replica_ids)
