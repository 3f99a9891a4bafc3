"""The overlay network: a networkx graph of agents whose edges carry latencies, delivering messages in SimPy time.

`send` delivers a message after the latency of the lowest-latency path plus size/bandwidth: to the receiver's
handler (agents subscribe one) or else its inbox (a SimPy `Store`, made on first use). `broadcast` floods: every
node forwards a message once to all its neighbours but the one it came from, so each online node receives it
once, at the time of its lowest-latency path (plus size/bandwidth); the transmissions a flood costs are counted
exactly, and only the nodes that act on a message get a delivery event. Offline nodes drop messages (logged).
Counters keep messages and bytes per kind. Path latencies from a node are computed once per topology version
(Dijkstra) and cached, so hubs such as the committee pay for a shortest-path tree only when the overlay changes.
Dijkstra runs in scipy's csgraph on a CSR matrix of the edge latencies, itself built once per topology version
when first needed; a tree lists the nodes it reaches by latency (ties by node id), with the source first. The
matrix comes from an edge store (`_EdgeStore`) that joins and leaves update in place, so under churn a new
topology version costs a few vectorised passes over arrays, not a walk over networkx's dicts; and a cached tree
is repaired over the joins and leaves since its version (`_repair`: only the nodes below a leaver and around a
joiner are searched again) instead of being computed afresh, with the same latencies to the last bit.
"""

from __future__ import annotations

import heapq
import itertools
import math
from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from operator import attrgetter, itemgetter
from typing import Protocol

import networkx as nx
import numpy as np
import simpy
from scipy.sparse import csr_array
from scipy.sparse.csgraph import dijkstra

from flmarket.agents.messages import NO_AGENT, Message
from flmarket.sim.config import NetworkSection
from flmarket.sim.events import EventLog
from flmarket.sim.overlay_graph import OverlayGraph


class Receiver(Protocol):
    """An agent that takes its messages as they arrive (a sans-IO agent: message in)."""

    def on_message(self, message: Message) -> None: ...


@dataclass
class TrafficCounters:
    """Messages and bytes per message kind: sent (transmissions), delivered and dropped."""

    sent: Counter = field(default_factory=Counter)
    bytes_sent: Counter = field(default_factory=Counter)
    delivered: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)


def build_topology(config: NetworkSection, nodes: list[int], rng: np.random.Generator) -> OverlayGraph:
    """The initial overlay over `nodes` for the configured topology, seeded from `rng`; made connected."""
    count = len(nodes)
    seed = int(rng.integers(2**31 - 1))
    if count == 1:
        graph = nx.empty_graph(1, create_using=OverlayGraph)
    elif config.topology == "random_regular":
        graph = nx.random_regular_graph(min(config.degree, count - 1), count, seed=seed, create_using=OverlayGraph)
    elif config.topology == "erdos_renyi":
        graph = nx.gnp_random_graph(count, config.edge_probability, seed=seed, create_using=OverlayGraph)
    elif config.topology == "barabasi_albert":
        graph = nx.barabasi_albert_graph(
            count, min(config.attachments, count - 1), seed=seed, create_using=OverlayGraph
        )
    elif config.topology == "watts_strogatz":
        graph = nx.connected_watts_strogatz_graph(
            count, min(config.degree, count - 1), config.rewiring_probability, seed=seed, create_using=OverlayGraph
        )
    else:
        graph = nx.complete_graph(count, create_using=OverlayGraph)
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


@dataclass(frozen=True, eq=False)
class _Arrays:
    """The relaying graph at one topology version as arrays: its nodes by increasing id (row i is `nodes[i]`;
    rows of nodes that left stay, edgeless), `rows` ({online node: row}: the edge store's live map, so right only
    at the current version, the one `Overlay._arrays` returns), the CSR matrix of edge latencies (an undirected
    edge is stored in both rows) and the nodes' degrees."""

    version: int
    nodes: np.ndarray
    rows: dict[int, int]
    latencies: csr_array
    degrees: np.ndarray


_LATENCY = attrgetter("latency_s")  # an EdgeAttributes slot: read in C, no Python call per edge
_FIRST = itemgetter(0)


class _EdgeStore:
    """The relaying graph as growable arrays, kept in step with the networkx graph by `Overlay.join` and
    `Overlay.leave`, from which each topology version's `_Arrays` is built with vectorised passes.

    A node has a slot; slots are in increasing node id, so a tree's ties still break by id (a node that joins
    with an id below the last slot's makes the overlay rebuild the store, sorted, from the graph). An undirected
    edge is stored in both directions. A node that leaves keeps its slot, marked dead, and its edges are masked
    out; when half the slots are dead the overlay rebuilds the store from the graph, which compacts it."""

    def __init__(self, graph: nx.Graph) -> None:
        nodes = sorted(graph)
        self.slot_of = {node: slot for slot, node in enumerate(nodes)}
        self.node_ids = array("q", nodes)
        self.alive = bytearray(b"\x01" * len(nodes))
        self.dead = 0
        self.loops: dict[int, int] = {}  # slot: self-loops (networkx counts each in the degree)
        adjacency = graph._adj  # the plain dicts: the public views cost a Python call per item, 80,000 items at 10k
        links = [adjacency[node] for node in nodes]
        rows = (itertools.repeat(slot, len(link)) for slot, link in enumerate(links))
        self.sources = array("i", itertools.chain.from_iterable(rows))
        self.targets = array("i", map(self.slot_of.__getitem__, itertools.chain.from_iterable(links)))
        try:
            self.latencies = array("d", map(_LATENCY, itertools.chain.from_iterable(link.values() for link in links)))
        except AttributeError:
            raise ValueError("every overlay edge needs a latency_s") from None
        for node in nx.nodes_with_selfloops(graph):
            self.loops[self.slot_of[node]] = 1

    def accepts(self, node: int) -> bool:
        """Whether `node` can take a new slot without breaking the slots' order by id."""
        return not self.node_ids or node > self.node_ids[-1]

    def add(self, node: int, links: dict[int, float]) -> None:
        """A relaying node joins with edges to `links` ({online node: latency}); `accepts(node)` must hold."""
        slot = self.slot_of[node] = len(self.node_ids)
        self.node_ids.append(node)
        self.alive.append(1)
        for other, latency in links.items():
            other_slot = self.slot_of[other]
            self.sources.extend((slot, other_slot))
            self.targets.extend((other_slot, slot))
            self.latencies.extend((latency, latency))

    def remove(self, node: int) -> None:
        """A relaying node leaves: its slot goes dead, its edges are masked out from the next version on."""
        self.alive[self.slot_of.pop(node)] = 0
        self.dead += 1

    @property
    def mostly_dead(self) -> bool:
        """Whether half the slots belong to nodes that left (time to rebuild, compacted)."""
        return 2 * self.dead > len(self.node_ids)

    def online_nodes(self) -> np.ndarray:
        """The relaying nodes online, by increasing id (as `sorted(graph)`)."""
        return np.frombuffer(self.node_ids, np.int64)[np.frombuffer(self.alive, np.bool_)]

    def arrays(self, version: int) -> _Arrays:
        """The store as `_Arrays` of `version`: rows are slots (dead ones edgeless, so no tree reaches them).
        Zero latencies stay explicit entries of the matrix, which csgraph takes as edges."""
        count = len(self.node_ids)
        # Copies, not np.frombuffer views: a view held in a local pins the growable array, and a profiler that
        # holds this frame (a dask worker samples its threads' frames) keeps the locals past the return, so the
        # next join's append failed with "BufferError: Existing exports of data" (one cell of a sweep, once).
        sources = np.array(self.sources, dtype=np.int32)
        targets = np.array(self.targets, dtype=np.int32)
        latencies = np.array(self.latencies, dtype=np.float64)
        if self.dead:
            alive = np.array(self.alive, dtype=np.bool_)
            keep = alive[sources] & alive[targets]
            sources, targets, latencies = sources[keep], targets[keep], latencies[keep]
        if not np.all(np.isfinite(latencies) & (latencies >= 0.0)):
            raise ValueError("overlay edge latencies must be finite and non-negative")
        order = np.argsort(sources, kind="stable")  # by row, each row's edges in the order they were added
        degrees = np.bincount(sources, minlength=count).astype(np.int32)
        indptr = np.zeros(count + 1, dtype=np.int32)
        np.cumsum(degrees, out=indptr[1:])
        for slot, loops in self.loops.items():
            degrees[slot] += loops
        matrix = csr_array((latencies[order], targets[order], indptr), shape=(count, count))
        return _Arrays(version, np.array(self.node_ids, dtype=np.int64), self.slot_of, matrix, degrees)


class _Tree:
    """Lowest-latency paths from `source` at one topology version: csgraph's `distances` and `predecessors` by
    slot of the edge store of `generation` (inf and NO_PREDECESSOR where unreachable). The relaying nodes it
    reaches other than itself, by increasing latency, ties by id (`rows`, their ids `nodes`, their `latencies`),
    are sorted out on first use: a unicast only looks up its receiver's row."""

    def __init__(
        self,
        version: int,
        generation: int,
        source: int,
        distances: np.ndarray,
        predecessors: np.ndarray | None,
        node_ids: np.ndarray,
        skip: int,
    ) -> None:
        self.version = version
        self.generation = generation
        self.source = source
        self.distances = distances
        self.predecessors = predecessors  # None for a leaf's tree (not cached, never repaired)
        self._node_ids = node_ids
        self._skip = skip  # the source's own row, or -1 (a leaf's tree)
        self._mapping: dict[int, float] | None = None

    def latency_to(self, row: int) -> float | None:
        """The latency to the node of `row`, None if unreachable."""
        distance = float(self.distances[row])
        return None if math.isinf(distance) else distance

    @cached_property
    def rows(self) -> np.ndarray:
        order = np.argsort(self.distances, kind="stable")
        order = order[: np.count_nonzero(np.isfinite(self.distances))]  # unreachable nodes are at infinity, last
        return order[order != self._skip]

    @cached_property
    def nodes(self) -> np.ndarray:
        return self._node_ids[self.rows]

    @cached_property
    def latencies(self) -> np.ndarray:
        return self.distances[self.rows]

    def mapping(self) -> dict[int, float]:
        """{node: latency} with the source first at 0.0, as networkx's Dijkstra gives (built once)."""
        if self._mapping is None:
            self._mapping = {self.source: 0.0}
            self._mapping.update(zip(self.nodes.tolist(), self.latencies.tolist(), strict=True))
        return self._mapping


NO_PREDECESSOR = -9999  # csgraph's mark for a node without a predecessor (the source, unreachable nodes)
REPAIR_CHANGES = 256  # a cached tree is repaired over at most this many joins and leaves, else recomputed
REPAIR_SHARE = 0.02  # ... and only if at most this share of the nodes (or REPAIR_MIN_NODES) lost their path
REPAIR_MIN_NODES = 1_000


def _repair(
    tree: _Tree, changes: list[tuple[int, bool, int]], store: _EdgeStore, adjacency: dict, version: int
) -> _Tree | None:
    """`tree` brought up to the current graph over `changes` ((version, joined, slot) since the tree's), or None
    when a full Dijkstra is cheaper (too many changes, or a leave cut off too many nodes).

    A node whose path in the tree avoids every node that left keeps its latency as an upper bound that is still a
    path's. The nodes below a leaver in the predecessor tree, and the joiners, start at infinity, seeded from
    their neighbours that kept theirs; then Dijkstra runs from them, lowering any node it reaches more cheaply
    (a joiner can shorten others' paths). Each latency ends as the least float sum over the current graph's
    paths, which is what csgraph's Dijkstra computes (rounding is monotone), so the result is the same to the
    last bit; the tree's order (by latency, ties by slot, which is id order) follows."""
    if tree.predecessors is None or len(changes) > REPAIR_CHANGES:
        return None
    count = len(store.node_ids)
    old = len(tree.distances)
    distances = np.full(count, np.inf)
    distances[:old] = tree.distances
    predecessors = np.full(count, NO_PREDECESSOR, dtype=np.int32)
    predecessors[:old] = tree.predecessors
    changed = np.zeros(count, dtype=np.bool_)
    frontier = np.array([slot for _, joined, slot in changes if not joined], dtype=np.int32)
    changed[frontier] = True
    while frontier.size:  # the leavers' subtrees, level by level
        frontier = np.flatnonzero(np.isin(predecessors, frontier) & ~changed).astype(np.int32)
        changed[frontier] = True
    if np.count_nonzero(changed) > max(REPAIR_MIN_NODES, REPAIR_SHARE * count):
        return None
    changed[[slot for _, joined, slot in changes if joined]] = True
    distances[changed] = np.inf
    predecessors[changed] = NO_PREDECESSOR
    node_ids = np.array(store.node_ids, dtype=np.int64)
    slot_of = store.slot_of
    heap: list[tuple[float, int]] = []
    for slot in np.flatnonzero(changed).tolist():
        node = int(node_ids[slot])
        if node not in slot_of:  # left
            continue
        best, via = math.inf, NO_PREDECESSOR
        for other, data in adjacency[node].items():
            other_slot = slot_of[other]
            if not changed[other_slot]:
                candidate = float(distances[other_slot]) + data.latency_s
                if candidate < best:
                    best, via = candidate, other_slot
        if via != NO_PREDECESSOR:
            distances[slot], predecessors[slot] = best, via
            heap.append((best, slot))
    heapq.heapify(heap)
    while heap:
        distance, slot = heapq.heappop(heap)
        if distance > distances[slot]:
            continue
        for other, data in adjacency[int(node_ids[slot])].items():
            other_slot = slot_of[other]
            candidate = distance + data.latency_s
            if candidate < distances[other_slot]:
                distances[other_slot], predecessors[other_slot] = candidate, slot
                heapq.heappush(heap, (candidate, other_slot))
    source_slot = slot_of[tree.source]
    return _Tree(version, tree.generation, tree.source, distances, predecessors, node_ids, source_slot)


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
        self.graph = OverlayGraph()
        self.inboxes: dict[int, simpy.Store] = {}
        self.handlers: dict[int, Callable[[Message], None]] = {}
        self.members: Mapping[int, Receiver] = {}  # a live population delivered to by `on_message`
        self.counters = TrafficCounters()
        self._message_ids = itertools.count()
        self._version = 0
        self._latency_cache: dict[int, _Tree] = {}
        self._arrays_cache: _Arrays | None = None
        self._store: _EdgeStore | None = None  # built from the graph when first needed, then kept in step
        self._generation = 0  # the store's: a rebuilt store renumbers slots, so older trees cannot be repaired
        self._changes: list[tuple[int, bool, int]] = []  # (version, joined, slot) of the store's generation
        self.leaves: dict[int, dict[int, float]] = {}
        self._emit_sent: Callable[..., int] | None = None  # the compiled message_sent emitter, made on first use

    # -- membership -------------------------------------------------------------------------------------------
    def adopt(self, graph: nx.Graph) -> None:
        """Take `graph` (built by `build_topology`, or any networkx graph, copied into an `OverlayGraph`) as the
        overlay; its nodes come online."""
        self.graph = graph if isinstance(graph, OverlayGraph) else OverlayGraph(graph)
        self._drop_store()
        self._version += 1

    def join(self, node: int, neighbours: int | None = None, relay: bool = True) -> None:
        """Bring `node` online, linked to `neighbours` distinct online nodes chosen at random.

        A node that does not relay (`relay=False`, e.g. a requester, a client of the market) is a leaf: it sends
        and receives through its links but no path of other nodes runs through it, so its joining and leaving
        leave every cached shortest-path tree valid."""
        wanted = neighbours if neighbours is not None else max(1, self.config.degree)
        store = self._store
        existing = store.online_nodes() if store is not None else np.array(sorted(self.graph.nodes), dtype=np.int64)
        count = len(existing)
        chosen = sorted(self.rng.choice(count, size=min(wanted, count), replace=False).tolist()) if count else []
        links = {int(existing[index]): float(self.config.latency_s.sample(self.rng)) for index in chosen}
        if not all(math.isfinite(latency) and latency >= 0.0 for latency in links.values()):
            raise ValueError("overlay edge latencies must be finite and non-negative")
        if not relay:
            self.leaves[node] = links
            return
        self.graph.add_node(node)
        for other, latency in links.items():
            self.graph.add_edge(node, other, latency_s=latency)
        self._version += 1
        if store is not None:
            if store.accepts(node):
                store.add(node, links)
                self._record(True, store.slot_of[node])
            else:
                self._drop_store()  # an id below the last slot's: rebuild, sorted, when next needed

    def leave(self, node: int) -> None:
        """Take `node` offline: its edges go, messages to it are dropped from now on."""
        self.inboxes.pop(node, None)
        self.handlers.pop(node, None)
        if self.leaves.pop(node, None) is not None:
            return
        if node in self.graph:
            self.graph.remove_node(node)
            self._version += 1
            store = self._store
            if store is not None:
                self._record(False, store.slot_of[node])
                store.remove(node)
                if store.mostly_dead:
                    self._drop_store()  # rebuilt from the graph, compacted, when next needed
        self._latency_cache.pop(node, None)

    def _record(self, joined: bool, slot: int) -> None:
        """Note a join or leave of the current version, for repairing cached trees (the last few hundred kept)."""
        self._changes.append((self._version, joined, slot))
        if len(self._changes) > 2 * REPAIR_CHANGES:
            del self._changes[:REPAIR_CHANGES]

    def _drop_store(self) -> None:
        """Forget the edge store (rebuilt from the graph when next needed) and every tree's chance of repair."""
        self._store = None
        self._generation += 1
        self._changes.clear()

    def _built_store(self) -> _EdgeStore:
        """The edge store, built from the graph if there is none."""
        store = self._store
        if store is None:
            store = self._store = _EdgeStore(self.graph)
        return store

    def is_online(self, node: int) -> bool:
        """Whether `node` is on the overlay now."""
        return node in self.graph or node in self.leaves

    def inbox(self, node: int) -> simpy.Store:
        """The SimPy store a node reads its messages from, made on first use: agents that subscribe a handler
        (every provider and committee node) never have one, which saves a Store per agent."""
        inbox = self.inboxes.get(node)
        if inbox is None:
            if not self.is_online(node):
                raise KeyError(f"node {node} is not on the overlay")
            inbox = self.inboxes[node] = simpy.Store(self.env)
        return inbox

    def subscribe(self, node: int, handler: Callable[[Message], None]) -> None:
        """Deliver `node`'s messages by calling `handler` at arrival time instead of through its inbox: one
        event per delivery instead of a put, a get and a process resume (a sans-IO agent: message in)."""
        if not self.is_online(node):
            raise KeyError(f"node {node} is not on the overlay")
        self.handlers[node] = handler

    def subscribe_members(self, members: Mapping[int, Receiver]) -> None:
        """Deliver to every online node of `members` (a live mapping, read at each arrival: the model's online
        providers) by calling its `on_message`, unless it subscribed a handler of its own. One mapping for a whole
        population instead of a bound method in `handlers` per agent saves about 90 bytes an agent."""
        self.members = members

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
        return self._relay_tree(source).mapping()

    def _arrays(self) -> _Arrays:
        """The relaying graph as arrays at the current topology version (rebuilt on first use after a change)."""
        arrays = self._arrays_cache
        if arrays is None or arrays.version != self._version:
            arrays = self._arrays_cache = self._built_store().arrays(self._version)
        return arrays

    def _relay_tree(self, source: int) -> _Tree:
        """The lowest-latency tree from a relaying node (cached per topology version; a cached tree of an older
        version is repaired over the joins and leaves since, when that is cheaper than a new Dijkstra)."""
        cached = self._latency_cache.get(source)
        if cached is not None and cached.version == self._version:
            return cached
        store = self._built_store()
        row = store.slot_of.get(source)
        if row is None:
            raise nx.NodeNotFound(f"Node {source} not in G")
        tree = None
        if cached is not None and cached.generation == self._generation:
            pending = self._changes[bisect_right(self._changes, cached.version, key=_FIRST) :]
            if len(pending) == self._version - cached.version:  # every change since the tree's is recorded
                tree = _repair(cached, pending, store, self.graph._adj, self._version)
        if tree is None:
            arrays = self._arrays()
            distances, predecessors = dijkstra(arrays.latencies, directed=True, indices=row, return_predecessors=True)
            tree = _Tree(self._version, self._generation, source, distances, predecessors, arrays.nodes, row)
        self._latency_cache[source] = tree
        return tree

    def _leaf_tree(self, leaf: int) -> _Tree:
        """The lowest-latency tree from a leaf (not cached: nothing invalidates it). The leaf is one more row
        with edges to its online links only, so no path runs through it and latencies add up in the same
        order as along a path from any node."""
        arrays = self._arrays()
        links = self._entry_points(leaf)
        count = len(arrays.nodes)
        matrix = arrays.latencies
        entries = np.fromiter(map(arrays.rows.__getitem__, links), np.int32, len(links))
        extended = csr_array(
            (
                np.concatenate([matrix.data, np.fromiter(links.values(), np.float64, len(links))]),
                np.concatenate([matrix.indices, entries.astype(matrix.indices.dtype)]),
                np.append(matrix.indptr, matrix.indptr[-1] + len(links)),
            ),
            shape=(count + 1, count + 1),
        )
        distances = dijkstra(extended, directed=True, indices=count)[:count]
        return _Tree(self._version, self._generation, leaf, distances, None, arrays.nodes, -1)

    def path_delay(self, sender: int, receiver: int, size_bytes: int) -> float | None:
        """Latency of the lowest-latency path plus size/bandwidth; None when unreachable or offline."""
        relaying = self.graph._node  # the plain dict: most sends are between two relaying nodes
        if sender in relaying and receiver in relaying and sender != receiver:
            latency = self._graph_latency(sender, receiver)
            return None if latency is None else latency + size_bytes / self.config.bandwidth_bytes_per_s
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
        fresh = cached is not None and cached.version == self._version
        source, target = (start, end) if fresh else (end, start)
        tree = self._relay_tree(source)
        row = self._built_store().slot_of.get(target)
        return None if row is None else tree.latency_to(row)

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
            emit_sent = self._emit_sent
            if emit_sent is None:
                emit_sent = self._emit_sent = self.log.emitter("message_sent")
            now = self.env.now
            emit_sent(now, message.sender, message.kind, receiver, message.size_bytes, now + delay)
        self._deliver_later(receiver, message, delay)
        return delay

    def broadcast(self, message: Message, interested: Callable[[int], bool] | None = None) -> dict[int, float]:
        """Flood `message` from its sender; every reachable online node receives it once. Returns delays.

        `interested(node)` (optional) names the nodes that act on the message: only they get a delivery event.
        The flood is counted whole all the same (transmissions, bytes, `reached`, and a delivery for every
        reached node, counted when it is sent); a node that would ignore the message costs no event. With churn,
        a node that is not interested and goes offline while the message is in flight is counted as delivered
        rather than dropped: that is the only difference in what is logged or counted."""
        message = self._stamp(message)
        sender = message.sender
        if not self.is_online(sender):
            self._drop(message, NO_AGENT, "sender offline")
            return {}
        transfer = message.size_bytes / self.config.bandwidth_bytes_per_s
        tree = self._relay_tree(sender) if sender in self.graph else self._leaf_tree(sender)
        delays = dict(zip(tree.nodes.tolist(), (tree.latencies + transfer).tolist(), strict=True))
        # Flooding with duplicate suppression: the source sends to all neighbours, every other reached node
        # forwards to all neighbours but the one it first heard from; leaves receive from each of their links
        # and forward nothing. (The tree is of the current version, so its rows index the current degrees.)
        degrees = self._arrays().degrees
        transmissions = len(self.neighbours(sender)) + int(degrees[tree.rows].sum()) - len(tree.rows)
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
            reached=len(delays),
            transmissions=transmissions,
        )
        if interested is None:
            for node, delay in delays.items():
                self._deliver_later(node, message, delay)
        else:
            ignored = 0
            for node, delay in delays.items():
                if interested(node):
                    self._deliver_later(node, message, delay)
                else:
                    ignored += 1
            self.counters.delivered[message.kind] += ignored
        return delays

    def _stamp(self, message: Message) -> Message:
        if message.message_id >= 0:
            return message
        return Message(message.kind, message.sender, message.payload, message.size_bytes, next(self._message_ids))

    def _deliver_later(self, receiver: int, message: Message, delay: float) -> None:
        timeout = self.env.timeout(delay)
        timeout.callbacks.append(lambda _event: self._arrive(receiver, message))

    def _arrive(self, receiver: int, message: Message) -> None:
        if not self.is_online(receiver):
            self._drop(message, receiver, "offline")
            return
        self.counters.delivered[message.kind] += 1
        handler = self.handlers.get(receiver)
        if handler is not None:
            handler(message)
            return
        member = self.members.get(receiver)
        if member is not None:
            member.on_message(message)
        else:
            self.inbox(receiver).put(message)

    def _drop(self, message: Message, receiver: int, reason: str) -> None:
        self.counters.dropped[message.kind] += 1
        self.log.emit(
            self.env.now, "message_dropped", message.sender, message_kind=message.kind, receiver=receiver, reason=reason
        )
