"""Variable-length ConnectsTo patterns for the Cypher engine.

``(a)-[:ConnectsTo*min..max]->(b)`` and ``allShortestPaths((a)-[:ConnectsTo*]->(b))`` are not
joins but searches: flatprint.store.graph runs them (BFS with one SQL query per level, filters from
``ALL(x IN relationships(p) WHERE ...)`` and ``ALL(n IN nodes(p) WHERE ...)`` applied in SQL); this
module turns the edges it finds into ConnectsTo relationships.
"""

from __future__ import annotations

from flatprint.cypher.kinds import CONNECTS
from flatprint.cypher.values import RelRef
from flatprint.store import graph as search
from flatprint.store.graph import ConnectionGraph

__all__ = ["ConnectionGraph", "all_shortest_paths", "bounded_paths", "with_rels"]


def _rel(edge, view) -> RelRef:
    pre, post, weight, weight_hp = edge
    return RelRef(CONNECTS, pre, post, {"weight": weight, "weightHP": weight_hp}, view=view)


def with_rels(paths, view):
    """(bodies, edges) paths as (bodies, relationships)."""
    return [(nodes, [_rel(edge, view) for edge in edges]) for nodes, edges in paths]


def all_shortest_paths(
    graph: ConnectionGraph, source: int, target: int, max_hops: int | None, view
) -> list[tuple[list[int], list[RelRef]]]:
    """Every shortest path source -> target (as node ids and relationships)."""
    return with_rels(search.shortest_paths(graph, source, target, max_hops), view)


def bounded_paths(
    graph: ConnectionGraph, sources: set[int], targets: set[int] | None, min_hops: int, max_hops: int, view
) -> list[tuple[list[int], list[RelRef]]]:
    """Every path of min_hops..max_hops relationships from a source to a target (no relationship
    twice). ``targets`` None = any end node."""
    return with_rels(search.bounded_paths(graph, sources, targets, min_hops, max_hops), view)
