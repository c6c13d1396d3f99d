"""Runtime values of the Cypher engine: graph entities, paths, points, ordering and output.

Rows flowing between clauses are dicts ``variable -> value``. Plain values are Python ``None``,
``bool``, ``int``, ``float``, ``str``, ``list`` and ``dict``; graph entities are :class:`NodeRef`,
:class:`RelRef` and :class:`Path`. A node carries the properties that the match already fetched
(``props``); a property missing from ``props`` is loaded through the :class:`GraphView` that
produced it, so nothing depends on which properties the planner guessed would be needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: Neo4j's HTTP shape of a cartesian-3d point (srid 9157), as neuPrintHTTP returns it.
POINT_CRS = {
    "srid": 9157,
    "name": "cartesian-3d",
    "type": "link",
    "properties": {"href": "http://spatialreference.org/ref/sr-org/9157/ogcwkt/", "type": "ogcwkt"},
}


class Point(tuple):
    """A 3-D point (x, y, z); ``.x``/``.y``/``.z`` work in Cypher, output is Neo4j's point map."""

    __slots__ = ()

    def __new__(cls, coords):
        return super().__new__(cls, tuple(coords))

    def component(self, name: str):
        index = {"x": 0, "y": 1, "z": 2}.get(name.lower())
        return None if index is None or index >= len(self) else self[index]

    def to_output(self) -> dict:
        return {"type": "Point", "coordinates": [_plain(c) for c in self], "crs": dict(POINT_CRS)}


@dataclass(eq=False)
class NodeRef:
    """A node: ``kind`` is one of schema.NODE_KINDS, ``id`` its key (bodyId, synapse id, ...)."""

    kind: str
    id: Any
    props: dict = field(default_factory=dict)
    view: Any = field(default=None, repr=False)
    complete: bool = False  # props holds every property (not just the fetched ones)

    def __eq__(self, other):
        return isinstance(other, NodeRef) and other.kind == self.kind and other.id == self.id

    def __hash__(self):
        return hash((self.kind, self.id))

    def get(self, name: str):
        if name in self.props:
            return self.props[name]
        if self.complete or self.view is None:
            return None
        value = self.view.load_property(self, name)
        self.props[name] = value
        return value

    def all_properties(self) -> dict:
        if not self.complete and self.view is not None:
            self.view.complete_nodes([self])
        return {k: v for k, v in self.props.items() if v is not None}


@dataclass(eq=False)
class RelRef:
    """A relationship ``start -[kind]-> end`` (ConnectsTo between bodies, SynapsesTo, Contains, ...)."""

    kind: str
    start: Any
    end: Any
    props: dict = field(default_factory=dict)
    view: Any = field(default=None, repr=False)
    complete: bool = False

    def __eq__(self, other):
        return (
            isinstance(other, RelRef)
            and other.kind == self.kind
            and other.start == self.start
            and other.end == self.end
        )

    def __hash__(self):
        return hash((self.kind, self.start, self.end))

    def get(self, name: str):
        if name in self.props:
            return self.props[name]
        if self.complete or self.view is None:
            return None
        value = self.view.load_rel_property(self, name)
        self.props[name] = value
        return value

    def all_properties(self) -> dict:
        if not self.complete and self.view is not None:
            self.view.complete_rels([self])
        return {k: v for k, v in self.props.items() if v is not None}


@dataclass(eq=False)
class Path:
    """An alternating sequence of nodes and relationships (``len(nodes) == len(rels) + 1``)."""

    nodes: list
    rels: list

    def __eq__(self, other):
        return isinstance(other, Path) and self.nodes == other.nodes and self.rels == other.rels

    def __hash__(self):
        return hash((tuple(self.nodes), tuple(self.rels)))


def _plain(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict, str)):  # numpy scalar
        return _plain(value.item())
    return value


def to_output(value):
    """A JSON-serializable value exactly as neuPrintHTTP returns it (nodes as property maps)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Point):
        return value.to_output()
    if isinstance(value, (NodeRef, RelRef)):
        return _map_output(value.all_properties())
    if isinstance(value, Path):
        out = []
        for i, node in enumerate(value.nodes):
            out.append(to_output(node))
            if i < len(value.rels):
                out.append(to_output(value.rels[i]))
        return out
    if isinstance(value, dict):
        return {str(k): to_output(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_output(v) for v in value]
    return to_output(_plain(value)) if hasattr(value, "item") else str(value)


_SCALARS = (str, int, bool, type(None))


def _map_output(props: dict) -> dict:
    """``to_output`` of each value of a property map; plain scalars (most of a neuron's ~100
    properties and ROI flags) without the type dispatch."""
    out = {}
    for key, value in props.items():
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None:
            out[key] = value
        elif kind is float:
            out[key] = value if math.isfinite(value) else None
        else:
            out[key] = to_output(value)
    return out


def _json_ready(mapping: dict) -> bool:
    """True when a map's keys are strings and its values plain finite scalars: it is its own output."""
    for key, value in mapping.items():
        kind = type(value)
        if kind is float:
            if value - value != 0:  # NaN or infinity
                return False
        elif kind not in _SCALARS or type(key) is not str:
            return False
    return True


def output_rows(rows, deadline=None, check_every: int = 512) -> list[list]:
    """``to_output`` of every value of every row. A map shared by many rows (a T-bar's property map
    in each of its PSDs' rows) is converted once; scalars, the bulk of most results, pass as they are."""
    memo: dict[int, dict] = {}  # id() of a map -> its output; the rows keep every map alive meanwhile

    def convert(value):
        kind = type(value)
        if kind in _SCALARS:
            return value
        if kind is float:
            return value if math.isfinite(value) else None
        if kind is dict:
            out = memo.get(id(value))
            if out is None:
                out = value if _json_ready(value) else {str(k): convert(v) for k, v in value.items()}
                memo[id(value)] = out
            return out
        return to_output(value)

    data = []
    for i, row in enumerate(rows):
        if deadline is not None and i % check_every == 0:
            deadline.check(check_every)
        data.append([convert(v) for v in row])
    return data


# ---- ordering (Cypher ORDER BY puts values of different types in a fixed order, nulls last)

_TYPE_RANK = {dict: 0, NodeRef: 1, RelRef: 2, list: 3, Path: 4, str: 5, bool: 6, int: 7, float: 7}


class SortKey:
    """Wraps a value so that Python's sort follows Cypher's ORDER BY rules (ascending)."""

    __slots__ = ("rank", "value")

    def __init__(self, value):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            self.rank, self.value = 99, 0
        elif isinstance(value, Point):
            self.rank, self.value = 8, tuple(value)
        elif isinstance(value, (list, tuple)):
            self.rank, self.value = 3, [SortKey(v) for v in value]
        elif isinstance(value, NodeRef):
            self.rank, self.value = 1, (value.kind, value.id)
        elif isinstance(value, RelRef):
            self.rank, self.value = 2, (value.kind, value.start, value.end)
        elif isinstance(value, dict):
            self.rank, self.value = 0, sorted((k, SortKey(v)) for k, v in value.items())
        else:
            self.rank, self.value = _TYPE_RANK.get(type(value), 9), value

    def __lt__(self, other):
        if self.rank != other.rank:
            return self.rank < other.rank
        try:
            return self.value < other.value
        except TypeError:
            return str(self.value) < str(other.value)

    def __eq__(self, other):
        return self.rank == other.rank and self.value == other.value


class Descending:
    """Reverses a SortKey (nulls first, as Cypher's DESC does)."""

    __slots__ = ("key",)

    def __init__(self, key: SortKey):
        self.key = key

    def __lt__(self, other):
        return other.key < self.key

    def __eq__(self, other):
        return self.key == other.key


def hashable(value):
    """A hashable stand-in for a value, for DISTINCT and grouping (1 and 1.0 group together)."""
    if isinstance(value, list):
        return ("list", tuple(hashable(v) for v in value))
    if isinstance(value, dict):
        return ("map", tuple(sorted((k, hashable(v)) for k, v in value.items())))
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
