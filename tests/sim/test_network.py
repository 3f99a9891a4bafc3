"""The overlay: delivery after path latency plus size/bandwidth, flooding without duplicates, counters."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import simpy

from flmarket.sim import network
from flmarket.sim.config import NetworkSection
from flmarket.sim.events import EventLog
from flmarket.sim.network import Message, Overlay, build_topology


def _line_overlay(bandwidth: float = 1000.0) -> tuple[simpy.Environment, Overlay, EventLog]:
    env = simpy.Environment()
    log = EventLog(None)
    config = NetworkSection(bandwidth_bytes_per_s=bandwidth)
    overlay = Overlay(env, config, log, np.random.default_rng(0))
    graph = nx.Graph()
    graph.add_edge(1, 2, latency_s=0.5)
    graph.add_edge(2, 3, latency_s=0.25)
    graph.add_edge(1, 3, latency_s=2.0)
    graph.add_edge(3, 4, latency_s=1.0)
    overlay.adopt(graph)
    return env, overlay, log


def _collect(env: simpy.Environment, overlay: Overlay, node: int, arrivals: list) -> None:
    def reader():
        while True:
            message = yield overlay.inbox(node).get()
            arrivals.append((node, env.now, message.kind))

    env.process(reader())


def test_send_arrives_after_fastest_path_latency_plus_size_over_bandwidth() -> None:
    env, overlay, _ = _line_overlay(bandwidth=1000.0)
    arrivals: list = []
    _collect(env, overlay, 3, arrivals)
    delay = overlay.send(3, Message("ping", 1, size_bytes=100))
    env.run()
    # Path 1-2-3: latency 0.5 + 0.25 (the direct edge costs 2.0), plus 100 B / 1000 B/s = 0.1.
    assert delay == pytest.approx(0.85)
    assert arrivals == [(3, pytest.approx(0.85), "ping")]


def test_cached_latencies_follow_topology_changes() -> None:
    env, overlay, _ = _line_overlay(bandwidth=1e12)
    assert overlay.path_delay(1, 3, 0) == pytest.approx(0.75)
    overlay.leave(2)  # the fast path goes: only the direct edge is left
    assert overlay.path_delay(1, 3, 0) == pytest.approx(2.0)
    assert overlay.path_delay(3, 1, 0) == pytest.approx(2.0)


def test_broadcast_reaches_every_online_node_once_and_counts_flooding() -> None:
    env, overlay, log = _line_overlay(bandwidth=1e12)
    arrivals: list = []
    for node in (2, 3, 4):
        _collect(env, overlay, node, arrivals)
    overlay.broadcast(Message("news", 1, size_bytes=10))
    env.run()
    assert sorted(node for node, _, _ in arrivals) == [2, 3, 4]
    times = {node: time for node, time, _ in arrivals}
    assert times[2] == pytest.approx(0.5) and times[3] == pytest.approx(0.75) and times[4] == pytest.approx(1.75)
    # Source sends on its 2 edges; nodes 2, 3, 4 forward on degree - 1 edges: 1 + 2 + 0.
    assert overlay.counters.sent["news"] == 2 + 1 + 2 + 0
    assert overlay.counters.bytes_sent["news"] == 5 * 10
    assert overlay.counters.delivered["news"] == 3
    broadcast = log.to_arrow().to_pylist()[-1]
    assert broadcast["kind"] == "broadcast_sent" and broadcast["reached"] == 3


def test_offline_receivers_drop_and_log() -> None:
    env, overlay, log = _line_overlay()
    overlay.send(4, Message("late", 1))
    overlay.leave(4)  # goes offline while the message is in flight
    assert overlay.send(4, Message("early", 1)) is None
    env.run()
    assert overlay.counters.dropped["late"] == 1 and overlay.counters.dropped["early"] == 1
    reasons = [row["reason"] for row in log.to_arrow().to_pylist() if row["kind"] == "message_dropped"]
    assert reasons == ["offline", "offline"]
    assert sum(overlay.counters.sent.values()) == sum(overlay.counters.delivered.values()) + 2


@pytest.mark.parametrize("topology", ["random_regular", "erdos_renyi", "barabasi_albert", "watts_strogatz", "complete"])
def test_topologies_are_connected_seeded_and_carry_latencies(topology: str) -> None:
    config = NetworkSection(topology=topology, degree=4, edge_probability=0.05)
    nodes = list(range(10, 60))
    first = build_topology(config, nodes, np.random.default_rng(3))
    second = build_topology(config, nodes, np.random.default_rng(3))
    assert nx.is_connected(first) and sorted(first.nodes) == nodes
    assert sorted(first.edges(data="latency_s")) == sorted(second.edges(data="latency_s"))
    assert all(0.01 <= latency <= 0.1 for _, _, latency in first.edges(data="latency_s"))


def test_join_links_a_new_node() -> None:
    env, overlay, _ = _line_overlay()
    overlay.join(9, neighbours=2)
    assert len(overlay.neighbours(9)) == 2 and overlay.is_online(9)
    arrivals: list = []
    _collect(env, overlay, 9, arrivals)
    overlay.broadcast(Message("hello", 1))
    env.run()
    assert [node for node, _, _ in arrivals] == [9]


def test_subscribed_nodes_get_messages_by_callback_at_arrival_time() -> None:
    env, overlay, _ = _line_overlay(bandwidth=1e12)
    received: list = []
    overlay.subscribe(3, lambda message: received.append((env.now, message.kind)))
    overlay.send(3, Message("ping", 1))
    overlay.broadcast(Message("news", 1))
    env.run()
    assert received == [(pytest.approx(0.75), "ping"), (pytest.approx(0.75), "news")]
    assert len(overlay.inbox(3).items) == 0  # nothing queued in the inbox
    overlay.leave(3)
    overlay.send(3, Message("late", 1))
    env.run()
    assert len(received) == 2 and overlay.counters.dropped["late"] == 1
    with pytest.raises(KeyError, match="not on the overlay"):
        overlay.subscribe(3, received.append)


def test_a_leaf_sends_and_receives_but_relays_nobody() -> None:
    env, overlay, _ = _line_overlay(bandwidth=1e12)
    before = overlay.path_delay(1, 4, 0)
    overlay.join(9, neighbours=2, relay=False)
    links = overlay.leaves[9]
    assert overlay.is_online(9) and overlay.neighbours(9) == sorted(links) and 9 not in overlay.graph
    assert overlay.path_delay(1, 4, 0) == before  # no path runs through the leaf
    # Leaf to node 4: the best of its links, each followed by the graph's shortest path.
    expected = min(latency + overlay.path_delay(other, 4, 0) for other, latency in links.items())
    assert overlay.path_delay(9, 4, 0) == pytest.approx(expected)
    assert overlay.path_delay(4, 9, 0) == pytest.approx(expected)
    arrivals: list = []
    for node in (1, 2, 3, 4, 9):
        _collect(env, overlay, node, arrivals)
    overlay.broadcast(Message("from-leaf", 9))
    overlay.broadcast(Message("to-leaf", 1))
    env.run()
    assert sorted(node for node, _, kind in arrivals if kind == "from-leaf") == [1, 2, 3, 4]
    assert [node for node, _, kind in arrivals if kind == "to-leaf"].count(9) == 1
    leaf_time = next(time for node, time, kind in arrivals if kind == "to-leaf" and node == 9)
    assert leaf_time == pytest.approx(
        min(latency + overlay.path_delay(1, other, 0) for other, latency in links.items())
    )
    overlay.leave(9)
    assert not overlay.is_online(9) and overlay.send(9, Message("late", 1)) is None


def _overlay_of(graph: nx.Graph, seed: int = 0) -> Overlay:
    overlay = Overlay(simpy.Environment(), NetworkSection(degree=3), EventLog(None), np.random.default_rng(seed))
    overlay.adopt(graph)
    return overlay


def _random_weighted_graph(rng: np.random.Generator, count: int = 200) -> nx.Graph:
    """Sparse, with a few components (unreachable nodes) and some zero latencies."""
    graph = nx.gnp_random_graph(count, 3.0 / count, seed=int(rng.integers(2**31 - 1)))
    for left, right in sorted(graph.edges()):
        graph.edges[left, right]["latency_s"] = 0.0 if rng.random() < 0.05 else float(rng.uniform(0.001, 1.0))
    return graph


def _assert_same_tree(latencies: dict[int, float], expected: dict[int, float], source: int) -> None:
    assert latencies.keys() == expected.keys()
    # Same sums in the same order along the same paths: equal to the last bit, not only close.
    assert all(latencies[node] == expected[node] for node in expected)
    assert all(math.isclose(latencies[node], expected[node], rel_tol=1e-12) for node in expected)
    values = list(latencies.values())
    assert next(iter(latencies)) == source and values[0] == 0.0 and values == sorted(values)


def test_latencies_from_match_networkx_dijkstra_on_a_random_weighted_graph() -> None:
    rng = np.random.default_rng(11)
    graph = _random_weighted_graph(rng)
    assert not nx.is_connected(graph) and any(d == 0.0 for _, _, d in graph.edges(data="latency_s"))
    overlay = _overlay_of(graph)
    for source in [0, 17, 99, 150, 199, *(int(node) for node in rng.choice(200, size=5, replace=False))]:
        expected = nx.single_source_dijkstra_path_length(graph, source, weight="latency_s")
        _assert_same_tree(overlay.latencies_from(source), expected, source)
        assert overlay.latencies_from(source) is overlay.latencies_from(source)  # cached
    with pytest.raises(nx.NodeNotFound):
        overlay.latencies_from(1000)


def test_zero_latency_edges_are_edges_and_negative_latencies_are_refused() -> None:
    graph = nx.Graph()
    graph.add_edge(1, 2, latency_s=0.0)
    graph.add_edge(2, 3, latency_s=0.0)
    graph.add_edge(1, 3, latency_s=1.0)
    graph.add_edge(3, 4, latency_s=0.5)
    graph.add_node(5)
    assert _overlay_of(graph).latencies_from(1) == {1: 0.0, 2: 0.0, 3: 0.0, 4: 0.5}
    graph.edges[3, 4]["latency_s"] = -0.5
    with pytest.raises(ValueError, match="non-negative"):
        _overlay_of(graph).latencies_from(1)


def test_latency_trees_follow_joins_and_leaves_but_not_leaves_of_clients() -> None:
    config = NetworkSection(degree=4)
    overlay = _overlay_of(build_topology(config, list(range(100)), np.random.default_rng(5)), seed=6)
    hub = overlay.latencies_from(0)
    changes = [
        lambda: overlay.join(200),
        lambda: overlay.join(201, neighbours=1),
        lambda: overlay.leave(17),
        lambda: overlay.leave(201),
        lambda: [overlay.leave(node) for node in sorted(overlay.graph.neighbors(42))],  # 42 is cut off
        lambda: overlay.join(7, neighbours=2),  # an id below the others' comes back
    ]
    for change in changes:
        overlay.join(300, relay=False)  # a client joining or leaving keeps every tree
        assert overlay.latencies_from(0) is hub
        overlay.leave(300)
        assert overlay.latencies_from(0) is hub
        change()
        for source in (0, 7, 42, 99, 200):
            if source in overlay.graph:
                expected = nx.single_source_dijkstra_path_length(overlay.graph, source, weight="latency_s")
                _assert_same_tree(overlay.latencies_from(source), expected, source)
        assert overlay.latencies_from(0) is not hub
        hub = overlay.latencies_from(0)
    assert 42 not in hub and overlay.latencies_from(42) == {42: 0.0}


def test_the_overlay_kept_through_churn_answers_as_one_rebuilt_from_its_graph(monkeypatch) -> None:
    """Joins and leaves update the edge store in place (a rebuild, sorted and compacted, only when an id below the
    last one joins or half the slots have left), and cached trees are repaired over them; after every change,
    trees, unicast delays, floods and the nodes a join picks from equal those of an overlay built afresh from a
    copy of the graph (a new Dijkstra), to the last bit."""
    repaired = []
    repair = network._repair

    def counted(*arguments):
        tree = repair(*arguments)
        repaired.append(tree is not None)
        return tree

    monkeypatch.setattr("flmarket.sim.network._repair", counted)
    monkeypatch.setattr("flmarket.sim.network.REPAIR_MIN_NODES", 4)  # so that some leaves cut off too many
    rng = np.random.default_rng(21)
    overlay = _overlay_of(build_topology(NetworkSection(degree=3), list(range(60)), np.random.default_rng(22)), seed=23)
    hubs = (0, 1)  # sources that never leave: their trees are repaired after every change
    overlay.latencies_from(0)  # the store exists from here on
    next_id, kept, gone = 100, 0, []
    rebuilt: list[str] = []
    for _ in range(300):
        store = overlay._store
        online = sorted(overlay.graph)
        if len(online) < 10 or rng.random() < 0.45:
            if gone and rng.random() < 0.05:
                change = "smaller id joins"
                overlay.join(gone.pop(int(rng.integers(len(gone)))))
            else:
                change = "join"
                overlay.join(next_id)
                next_id += 1
        else:
            change = "leave"
            gone.append(int(rng.choice([node for node in online if node not in hubs])))
            overlay.leave(gone[-1])
        sender = int(rng.choice(sorted(overlay.graph)))
        fresh = _overlay_of(overlay.graph.copy())
        if rng.random() < 0.8:  # now and then a hub's tree waits for a few changes
            for hub in hubs:
                assert list(overlay.latencies_from(hub).items()) == list(fresh.latencies_from(hub).items())
                expected = nx.single_source_dijkstra_path_length(overlay.graph, hub, weight="latency_s")
                _assert_same_tree(overlay.latencies_from(hub), expected, hub)  # and networkx's, independently
        sent_before = overlay.counters.sent["flood"]
        delays = overlay.broadcast(Message("flood", sender, size_bytes=0))
        assert list(delays.items()) == list(fresh.broadcast(Message("flood", sender, size_bytes=0)).items())
        assert overlay.counters.sent["flood"] - sent_before == fresh.counters.sent["flood"]  # same degrees
        for source in (sender, int(rng.choice(sorted(overlay.graph)))):
            assert list(overlay.latencies_from(source).items()) == list(fresh.latencies_from(source).items())
            for target in rng.choice(sorted(overlay.graph), size=3).tolist():
                assert overlay.path_delay(source, target, 100) == fresh.path_delay(source, target, 100)
        assert overlay._store is not None and overlay._store.online_nodes().tolist() == sorted(overlay.graph)
        if overlay._store is store:
            kept += 1
        else:
            rebuilt.append(change)
    # mostly in place; rebuilt after each smaller id's join and for compaction after leaves
    assert kept > 250 and {"smaller id joins", "leave"} <= set(rebuilt) and "join" not in rebuilt
    assert sum(repaired) > 300 and not all(repaired)  # trees repaired, and recomputed when a leave cut off many


def test_a_leaf_floods_as_if_it_were_put_in_the_graph_for_the_search() -> None:
    rng = np.random.default_rng(12)
    overlay = _overlay_of(_random_weighted_graph(rng, 150), seed=13)
    for leaf in range(1000, 1006):
        overlay.join(leaf, neighbours=3, relay=False)
    overlay.leave(next(iter(overlay.leaves[1000])))  # one of the sender's links goes offline
    for sender in (1000, 1003, 0):
        graph = overlay.graph.copy()  # the old way: the leaf put in place, then networkx's Dijkstra
        if sender in overlay.leaves:
            for other, latency in overlay.leaves[sender].items():
                if other in graph:
                    graph.add_edge(sender, other, latency_s=latency)
        expected = nx.single_source_dijkstra_path_length(graph, sender, weight="latency_s")
        for leaf, links in overlay.leaves.items():
            reached = [latency + expected[other] for other, latency in links.items() if other in expected]
            if leaf != sender and reached:
                expected[leaf] = min(reached)
        degrees = sum(overlay.graph.degree(node) - 1 for node in expected if node != sender and node in overlay.graph)
        links = sum(other in expected for leaf, ls in overlay.leaves.items() if leaf != sender for other in ls)
        del expected[sender]
        delays = overlay.broadcast(Message("flood", sender, size_bytes=0))
        assert delays == expected  # to the last bit
        # Relaying nodes by latency (ties, from zero latencies, in another order than networkx's), then leaves.
        assert list(delays.values()) == list(expected.values())
        leaves = [leaf for leaf in overlay.leaves if leaf in expected]
        assert leaves and list(delays)[len(delays) - len(leaves) :] == leaves
        sent = overlay.log.to_arrow().to_pylist()[-1]
        assert sent["reached"] == len(expected)
        assert sent["transmissions"] == len(overlay.neighbours(sender)) + degrees + links


def test_a_profiler_holding_the_array_build_s_frame_does_not_pin_the_edge_store() -> None:
    """A dask worker's profiler holds its threads' frame objects, and a frame object keeps its locals after the
    function returns: np.frombuffer views in `_EdgeStore.arrays` then pinned the growable arrays, and the next
    join failed with "BufferError: Existing exports of data" (one sweep cell of nine, now and then)."""
    import sys

    overlay = _overlay_of(build_topology(NetworkSection(degree=3), list(range(40)), np.random.default_rng(2)), seed=3)
    overlay.leave(5)  # a dead slot, so the build also reads the alive flags
    held = []

    def hold_frames(frame, event, _argument) -> None:
        if event == "return" and frame.f_code.co_name == "arrays":
            held.append(frame)  # as a sampling profiler holds a thread's frames

    sys.setprofile(hold_frames)
    try:
        overlay.latencies_from(0)  # builds the arrays of this topology version
    finally:
        sys.setprofile(None)
    assert held
    for node in range(100, 110):  # joins append to the store's arrays
        overlay.join(node)
    assert overlay.is_online(109) and 109 in overlay.latencies_from(0)
