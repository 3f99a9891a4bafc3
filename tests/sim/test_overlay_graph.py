"""The lean overlay graph: the same graphs and latencies as plain networkx, shared empty node attributes that
refuse writes, edge attributes that behave as a mapping; the overlay's delivery to a live population."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import simpy

from flmarket.sim.config import NetworkSection
from flmarket.sim.events import EventLog
from flmarket.sim.network import Message, Overlay, build_topology
from flmarket.sim.overlay_graph import NO_NODE_ATTRIBUTES, EdgeAttributes, OverlayGraph


@pytest.mark.parametrize("topology", ["random_regular", "erdos_renyi", "barabasi_albert", "watts_strogatz", "complete"])
def test_topologies_are_plain_networkx_graphs_with_the_same_edges_and_adjacency_order(topology: str) -> None:
    """build_topology's OverlayGraph equals what the plain generator gives for the same seed: the same edges and
    the same neighbour order per node (tie-breaking in shortest paths reads that order)."""
    config = NetworkSection(topology=topology, degree=4, edge_probability=0.1, attachments=2)
    nodes = list(range(100, 160))
    graph = build_topology(config, nodes, np.random.default_rng(9))
    assert isinstance(graph, OverlayGraph)
    seed = int(np.random.default_rng(9).integers(2**31 - 1))
    plain = {
        "random_regular": lambda: nx.random_regular_graph(4, 60, seed=seed),
        "erdos_renyi": lambda: nx.gnp_random_graph(60, 0.1, seed=seed),
        "barabasi_albert": lambda: nx.barabasi_albert_graph(60, 2, seed=seed),
        "watts_strogatz": lambda: nx.connected_watts_strogatz_graph(60, 4, config.rewiring_probability, seed=seed),
        "complete": lambda: nx.complete_graph(60),
    }[topology]()
    plain = nx.relabel_nodes(plain, {index: node for index, node in enumerate(nodes)})
    for node in plain:  # build_topology may add edges joining components; every plain edge is there, in order
        ours = [other for other in graph.adj[node] if other in plain.adj[node]]
        assert ours == list(plain.adj[node])
    assert all(isinstance(data, EdgeAttributes) for _, _, data in graph.edges(data=True))
    assert all(0.01 <= latency <= 0.1 for _, _, latency in graph.edges(data="latency_s"))
    assert nx.is_connected(graph)


def test_nodes_share_one_empty_attribute_dict_that_refuses_writes() -> None:
    graph = OverlayGraph()
    graph.add_nodes_from([1, 2])
    graph.add_edge(2, 3, latency_s=0.5)
    assert graph.nodes[1] is graph.nodes[3] is NO_NODE_ATTRIBUTES
    assert dict(graph.nodes[1]) == {}
    with pytest.raises(TypeError, match="overlay nodes carry no attributes"):
        graph.nodes[1]["colour"] = "red"
    with pytest.raises(TypeError, match="overlay nodes carry no attributes"):
        graph.add_node(4, colour="red")
    with pytest.raises(TypeError, match="overlay nodes carry no attributes"):
        NO_NODE_ATTRIBUTES.setdefault("colour", "red")
    assert dict(NO_NODE_ATTRIBUTES) == {}
    relabelled = nx.relabel_nodes(graph, {1: 10})
    assert type(relabelled) is OverlayGraph and relabelled.nodes[10] is NO_NODE_ATTRIBUTES
    assert relabelled.edges[2, 3] == {"latency_s": 0.5}


def test_edge_attributes_behave_as_a_mapping() -> None:
    graph = OverlayGraph()
    graph.add_edge(1, 2)
    data = graph.edges[1, 2]
    assert len(data) == 0 and dict(data) == {} and "latency_s" not in data
    with pytest.raises(KeyError):
        data["latency_s"]
    graph.add_edge(1, 2, latency_s=0.25, weight=3)
    assert graph.adj[1][2] is graph.adj[2][1] is data  # one object per undirected edge, as networkx's dicts
    assert data == {"latency_s": 0.25, "weight": 3} and len(data) == 2 and data.latency_s == 0.25
    assert sorted(data) == ["latency_s", "weight"] and data.get("missing", 7) == 7
    copied = data.copy()
    assert type(copied) is dict and copied == {"latency_s": 0.25, "weight": 3}
    del data["latency_s"]
    assert dict(data) == {"weight": 3}
    with pytest.raises(KeyError):
        del data["latency_s"]
    with pytest.raises(KeyError):
        del data["colour"]
    assert nx.shortest_path_length(graph, 1, 2, weight="weight") == 3
    assert nx.utils.graphs_equal(graph.copy(), graph)


def test_adopting_a_plain_graph_copies_it_into_an_overlay_graph() -> None:
    overlay = Overlay(simpy.Environment(), NetworkSection(), EventLog(None), np.random.default_rng(0))
    plain = nx.Graph()
    plain.add_edge(1, 2, latency_s=0.5)
    plain.add_edge(2, 3, latency_s=0.25)
    overlay.adopt(plain)
    assert isinstance(overlay.graph, OverlayGraph)
    assert sorted(overlay.graph.edges(data="latency_s")) == [(1, 2, 0.5), (2, 3, 0.25)]
    assert overlay.latencies_from(1) == {1: 0.0, 2: 0.5, 3: 0.75}
    overlay.join(4, neighbours=1)
    (neighbour,) = overlay.neighbours(4)
    assert isinstance(overlay.graph.edges[4, neighbour], EdgeAttributes)
    assert 0.01 <= overlay.graph.edges[4, neighbour]["latency_s"] <= 0.1


class _Member:
    def __init__(self) -> None:
        self.received: list[tuple[float, str]] = []
        self.env: simpy.Environment | None = None

    def on_message(self, message: Message) -> None:
        assert self.env is not None
        self.received.append((self.env.now, message.kind))


def test_members_take_messages_by_on_message_and_a_handler_takes_precedence() -> None:
    env = simpy.Environment()
    overlay = Overlay(env, NetworkSection(bandwidth_bytes_per_s=1000.0), EventLog(None), np.random.default_rng(0))
    plain = nx.Graph()
    plain.add_edge(1, 2, latency_s=0.5)
    plain.add_edge(2, 3, latency_s=0.25)
    overlay.adopt(plain)
    members: dict[int, _Member] = {}
    overlay.subscribe_members(members)
    for node in (2, 3):
        members[node] = _Member()
        members[node].env = env
    handled: list[str] = []
    overlay.subscribe(3, lambda message: handled.append(message.kind))
    overlay.send(2, Message("hello", 1, None, 500))  # 0.5 s of latency + 0.5 s of transfer
    overlay.send(3, Message("hello", 1, None, 0))
    members[4] = _Member()  # not on the overlay: the member mapping alone does not bring a node online
    assert overlay.send(4, Message("hello", 1, None, 0)) is None
    env.run()
    assert members[2].received == [(1.0, "hello")]
    assert members[3].received == [] and handled == ["hello"]
    overlay.leave(2)
    overlay.send(2, Message("late", 1, None, 0))
    env.run()
    assert members[2].received == [(1.0, "hello")]
