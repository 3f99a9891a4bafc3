"""The overlay's networkx graph, made lean for large populations: nodes share one empty attribute dict and an
edge keeps its latency in a slot instead of a dict.

A plain `networkx.Graph` gives every node an attribute dict (64-93 bytes) and every edge one (about 120 bytes
with its one key, `latency_s`); with 100,000 providers at degree 2 that is about 40 MB of empty or one-key dicts.
`OverlayGraph` is a `networkx.Graph` with two of networkx's documented factories replaced
(`node_attr_dict_factory`, `edge_attr_dict_factory`); every networkx algorithm reads it as before.

What changes for a caller: overlay nodes carry no attributes (setting one raises `TypeError`; keep node data on
the agents), and an edge's attribute mapping is an `EdgeAttributes`, a mutable mapping whose `copy()` is a dict.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any, NoReturn

import networkx as nx

LATENCY = "latency_s"


class _NoNodeAttributes(dict):
    """The one attribute dict all overlay nodes share: always empty, refuses every write but an empty update."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("overlay nodes carry no attributes: keep a node's data on its agent")

    __setitem__ = __delitem__ = __ior__ = setdefault = pop = popitem = clear = _refuse

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Accept networkx's `update({})` when a node is added; refuse anything to write."""
        if kwargs or any(args):
            self._refuse()

    def copy(self) -> _NoNodeAttributes:
        """Itself: a copy of the empty shared dict is the shared dict (networkx copies node dicts on relabelling)."""
        return self


NO_NODE_ATTRIBUTES = _NoNodeAttributes()


def _no_node_attributes() -> _NoNodeAttributes:
    return NO_NODE_ATTRIBUTES


class EdgeAttributes(MutableMapping[str, Any]):
    """An overlay edge's attributes: `latency_s` in a slot (also readable as the attribute `latency_s`, which the
    overlay's array builds use), any other attribute in a dict made on first use."""

    __slots__ = ("latency_s", "_others")

    def __init__(self) -> None:
        self._others: dict[str, Any] | None = None  # the latency slot stays unset until networkx writes it

    def __getitem__(self, key: str) -> Any:
        if key == LATENCY:
            try:
                return self.latency_s
            except AttributeError:
                raise KeyError(key) from None
        if self._others is None:
            raise KeyError(key)
        return self._others[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key == LATENCY:
            self.latency_s = value
        else:
            if self._others is None:
                self._others = {}
            self._others[key] = value

    def __delitem__(self, key: str) -> None:
        if key == LATENCY:
            try:
                del self.latency_s
            except AttributeError:
                raise KeyError(key) from None
        elif self._others is not None and key in self._others:
            del self._others[key]
        else:
            raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        if hasattr(self, LATENCY):
            yield LATENCY
        if self._others is not None:
            yield from self._others

    def __len__(self) -> int:
        return hasattr(self, LATENCY) + (len(self._others) if self._others is not None else 0)

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """Set the given attributes (networkx calls this with an empty dict for most edges it adds)."""
        if other:
            for key, value in other.items() if hasattr(other, "items") else other:
                self[key] = value
        for key, value in kwargs.items():
            self[key] = value

    def copy(self) -> dict[str, Any]:
        """A plain dict of the attributes (what networkx's `Graph.copy` and `relabel_nodes` ask for)."""
        return dict(self)

    def __repr__(self) -> str:
        return repr(dict(self))


class OverlayGraph(nx.Graph):
    """A `networkx.Graph` whose nodes share one empty attribute dict and whose edges keep `latency_s` in a slot."""

    node_attr_dict_factory = staticmethod(_no_node_attributes)
    edge_attr_dict_factory = EdgeAttributes
