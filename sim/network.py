"""The overlay network: a networkx graph of agents whose edges carry latencies, delivering messages in SimPy time.

`send` puts a message into the receiver's inbox (a SimPy `Store`) after the latency of the lowest-latency path
plus size/bandwidth. `broadcast` floods: every node forwards a message once to all its neighbours but the one it
came from, so each online node receives it once, at the time of its lowest-latency path (plus size/bandwidth);
the transmissions a flood costs are counted exactly. Offline nodes drop messages (logged). Counters keep
messages and bytes per kind. Path latencies from a node are computed once per topology version (Dijkstra) and
cached, so hubs such as the committee pay for a shortest-path tree only when the overlay changes.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import simpy

from agents.messages import NO_AGENT, Message
from sim.config import NetworkSection
from sim.events import EventLog


@dataclass
class TrafficCounters:
    """Messages and bytes per message kind: sent (transmissions), delivered and dropped."""

    sent: Counter = field(default_factory=Counter)
    bytes_sent: Counter = field(default_factory=Counter)
    delivered: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)


def build_topology(config: NetworkSection, nodes: list[int], rng: np.random.Generator) -> nx.Graph:
    """The initial overlay over `nodes` for the configured topology, seeded from `rng`; made connected."""
    count = len(nodes)
    seed = int(rng.integers(2**31 - 1))
    if count == 1:
        graph = nx.empty_graph(1)
    elif config.topology == "random_regular":
        graph = nx.random_regular_graph(min(config.degree, count - 1), count, seed=seed)
    elif config.topology == "erdos_renyi":
        graph = nx.gnp_random_graph(count, config.edge_probability, seed=seed)
    elif config.topology == "barabasi_albert":
        graph = nx.barabasi_albert_graph(count, min(config.attachments, count - 1), seed=seed)
    elif config.topology == "watts_strogatz":
        graph = nx.connected_watts_strogatz_graph(
            count, min(config.degree, count - 1), config.rewiring_probability, seed=seed
        )
    else:
        graph = nx.complete_graph(count)
    graph = nx.relabel_nodes(graph, dict(enumerate(nodes)))
    _connect_components(graph)
    for left, right in sorted(graph.edges()):
        graph.edges[left, right]["latency_s"] = float(config.latency_s.sample(rng))
    return graph


def _connect_components(graph: nx.Graph) -> None:
    """Join components by an edge between their smallest nodes, in a fixed order."""
    components = sorted(min(component) for component in nx.connected_components(graph))
    for left, right in itertools.pairwise(components):
        graph.add_edge(left, right)


class Overlay:
    """The agents' network in simulated time."""

    def __init__(
        self,
        env: simpy.Environment,
        config: NetworkSection,
        log: EventLog,
        rng: np.random.Generator,
    ) -> None:
        self.env = env
        self.config = config
        self.log = log
        self.rng = rng
        self.graph = nx.Graph()
        self.inboxes: dict[int, simpy.Store] = {}
        self.handlers: dict[int, Callable[[Message], None]] = {}
        self.counters = TrafficCounters()
        self._message_ids = itertools.count()
        self._version = 0
        self._latency_cache: dict[int, tuple[int, dict[int, float]]] = {}
        self.leaves: dict[int, dict[int, float]] = {}

    # -- membership -------------------------------------------------------------------------------------------
    def adopt(self, graph: nx.Graph) -> None:
        """Take `graph` (built by `build_topology`) as the overlay; its nodes come online."""
        self.graph = graph
        for node in graph.nodes:
            self.inboxes.setdefault(node, simpy.Store(self.env))
        self._version += 1

    def join(self, node: int, neighbours: int | None = None, relay: bool = True) -> None:
        """Bring `node` online, linked to `neighbours` distinct online nodes chosen at random.

        A node that does not relay (`relay=False`, e.g. a requester, a client of the market) is a leaf: it sends
        and receives through its links but no path of other nodes runs through it, so its joining and leaving
        leave every cached shortest-path tree valid."""
        wanted = neighbours if neighbours is not None else max(1, self.config.degree)
        existing = sorted(self.graph.nodes)
        self.inboxes.setdefault(node, simpy.Store(self.env))
        chosen = (
            sorted(int(i) for i in self.rng.choice(len(existing), size=min(wanted, len(existing)), replace=False))
            if existing
            else []
        )
        links = {existing[index]: float(self.config.latency_s.sample(self.rng)) for index in chosen}
        if not relay:
            self.leaves[node] = links
            return
        self.graph.add_node(node)
        for other, latency in links.items():
            self.graph.add_edge(node, other, latency_s=latency)
        self._version += 1

    def leave(self, node: int) -> None:
        """Take `node` offline: its edges go, messages to it are dropped from now on."""
        self.inboxes.pop(node, None)
        self.handlers.pop(node, None)
        if self.leaves.pop(node, None) is not None:
            return
        if node in self.graph:
            self.graph.remove_node(node)
        self._version += 1
        self._latency_cache.pop(node, None)

    def is_online(self, node: int) -> bool:
        """Whether `node` is on the overlay now."""
        return node in self.graph or node in self.leaves

    def inbox(self, node: int) -> simpy.Store:
        """The SimPy store a node reads its messages from."""
        return self.inboxes[node]

    def subscribe(self, node: int, handler: Callable[[Message], None]) -> None:
        """Deliver `node`'s messages by calling `handler` at arrival time instead of through its inbox: one
        event per delivery instead of a put, a get and a process resume (a sans-IO agent: message in)."""
        if node not in self.inboxes:
            raise KeyError(f"node {node} is not on the overlay")
        self.handlers[node] = handler

    def neighbours(self, node: int) -> list[int]:
        """The node's overlay neighbours, sorted (a leaf's: its links that are online)."""
        if node in self.leaves:
            return sorted(other for other in self.leaves[node] if other in self.graph)
        return sorted(self.graph.neighbors(node)) if node in self.graph else []

    def _entry_points(self, node: int) -> dict[int, float]:
        """Where a node meets the relaying graph, with the latency to get there (itself at 0, or a leaf's links)."""
        if node in self.leaves:
            return {other: latency for other, latency in self.leaves[node].items() if other in self.graph}
        return {node: 0.0} if node in self.graph else {}

    # -- delivery ---------------------------------------------------------------------------------------------
    def latencies_from(self, source: int) -> dict[int, float]:
        """Latency of the lowest-latency path from `source` to every reachable node (cached per topology)."""
        cached = self._latency_cache.get(source)
        if cached is not None and cached[0] == self._version:
            return cached[1]
        latencies = nx.single_source_dijkstra_path_length(self.graph, source, weight="latency_s")
        self._latency_cache[source] = (self._version, latencies)
        return latencies

    def path_delay(self, sender: int, receiver: int, size_bytes: int) -> float | None:
        """Latency of the lowest-latency path plus size/bandwidth; None when unreachable or offline."""
        if not self.is_online(sender) or not self.is_online(receiver):
            return None
        transfer = size_bytes / self.config.bandwidth_bytes_per_s
        if sender == receiver:
            return 0.0
        best = math.inf
        for start, to_start in self._entry_points(sender).items():
            for end, from_end in self._entry_points(receiver).items():
                latency = self._graph_latency(start, end)
                if latency is not None:
                    best = min(best, to_start + latency + from_end)
        return None if math.isinf(best) else best + transfer

    def _graph_latency(self, start: int, end: int) -> float | None:
        """Lowest latency between two relaying nodes. The graph is undirected: a tree from either end gives the
        same answer; use the start's if cached, else build (and cache) the end's, since messages converge on
        few receivers (the committee)."""
        if start == end:
            return 0.0
        cached = self._latency_cache.get(start)
        fresh = cached is not None and cached[0] == self._version
        source, target = (start, end) if fresh else (end, start)
        return self.latencies_from(source).get(target)

    def send(self, receiver: int, message: Message) -> float | None:
        """Deliver `message` to `receiver`'s inbox after the path delay; returns the delay or None if dropped."""
        message = self._stamp(message)
        delay = self.path_delay(message.sender, receiver, message.size_bytes)
        self.counters.sent[message.kind] += 1
        self.counters.bytes_sent[message.kind] += message.size_bytes
        if delay is None:
            self._drop(message, receiver, "unreachable" if self.is_online(receiver) else "offline")
            return None
        if self.config.log_messages:
            self.log.emit(
                self.env.now,
                "message_sent",
                message.sender,
                message_kind=message.kind,
                receiver=receiver,
                size_bytes=message.size_bytes,
                delivery_time=self.env.now + delay,
            )
        self._deliver_later(receiver, message, delay)
        return delay

    def broadcast(self, message: Message) -> dict[int, float]:
        """Flood `message` from its sender; every reachable online node receives it once. Returns delays."""
        message = self._stamp(message)
        sender = message.sender
        if not self.is_online(sender):
            self._drop(message, NO_AGENT, "sender offline")
            return {}
        transfer = message.size_bytes / self.config.bandwidth_bytes_per_s
        delays = {node: latency + transfer for node, latency in self._flood_latencies(sender).items()}
        # Flooding with duplicate suppression: the source sends to all neighbours, every other reached node
        # forwards to all neighbours but the one it first heard from; leaves receive from each of their links
        # and forward nothing.
        transmissions = len(self.neighbours(sender)) + sum(
            self.graph.degree(node) - 1 for node in delays if node != sender and node in self.graph
        )
        for leaf, links in self.leaves.items():
            if leaf == sender:
                continue
            reached = [other for other in links if other in delays or other == sender]
            if reached:
                transmissions += len(reached)
                delays[leaf] = min(links[other] + delays.get(other, transfer) for other in reached)
        self.counters.sent[message.kind] += transmissions
        self.counters.bytes_sent[message.kind] += transmissions * message.size_bytes
        self.log.emit(
            self.env.now,
            "broadcast_sent",
            sender,
            message_kind=message.kind,
            size_bytes=message.size_bytes,
            reached=len(delays) - 1,
            transmissions=transmissions,
        )
        for node, delay in delays.items():
            if node != sender:
                self._deliver_later(node, message, float(delay))
        return {node: float(delay) for node, delay in delays.items() if node != sender}

    def _flood_latencies(self, sender: int) -> dict[int, float]:
        """Latency from `sender` to every relaying node it reaches (a leaf's flood enters through its links:
        Dijkstra from the leaf put in place for the search only, so no cached tree goes stale)."""
        if sender in self.graph:
            return dict(self.latencies_from(sender))
        links = self._entry_points(sender)
        self.graph.add_node(sender)
        try:
            for other, latency in links.items():
                self.graph.add_edge(sender, other, latency_s=latency)
            return dict(nx.single_source_dijkstra_path_length(self.graph, sender, weight="latency_s"))
        finally:
            self.graph.remove_node(sender)

    def _stamp(self, message: Message) -> Message:
        if message.message_id >= 0:
            return message
        return Message(message.kind, message.sender, message.payload, message.size_bytes, next(self._message_ids))

    def _deliver_later(self, receiver: int, message: Message, delay: float) -> None:
        timeout = self.env.timeout(delay)
        timeout.callbacks.append(lambda _event: self._arrive(receiver, message))

    def _arrive(self, receiver: int, message: Message) -> None:
        inbox = self.inboxes.get(receiver)
        if inbox is None:
            self._drop(message, receiver, "offline")
            return
        self.counters.delivered[message.kind] += 1
        handler = self.handlers.get(receiver)
        if handler is not None:
            handler(message)
        else:
            inbox.put(message)

    def _drop(self, message: Message, receiver: int, reason: str) -> None:
        self.counters.dropped[message.kind] += 1
        self.log.emit(
            self.env.now, "message_dropped", message.sender, message_kind=message.kind, receiver=receiver, reason=reason
        )
