"""Variable-length ConnectsTo patterns: breadth-first search with one SQL query per level.

``(a)-[:ConnectsTo*min..max]->(b)`` and ``allShortestPaths((a)-[:ConnectsTo*]->(b))`` are not
joins but searches. :class:`ConnectionGraph` expands a set of bodies by one hop (forward through
``connections``, sorted by body_pre; backward through ``connections_by_post``) applying the
weight filter (from ``ALL(x IN relationships(p) WHERE ...)``) and the node filter (from
``ALL(n IN nodes(p) WHERE ...)``) in SQL. Shortest paths meet in the middle (bidirectional BFS,
always expanding the smaller frontier); bounded patterns search backwards from the targets, so the
forward walk only follows edges that can still reach a target in the remaining hops.
"""

from __future__ import annotations

import pyarrow as pa

from flatprint.cypher.schema import CONNECTS
from flatprint.cypher.values import RelRef


class ConnectionGraph:
    """One-hop expansion of body sets through the connection tables."""

    def __init__(self, run_sql, edge_filter_sql: str | None, node_filter_sql: str | None, check_deadline):
        self.run_sql = run_sql
        self.edge_filter = edge_filter_sql
        self.node_filter = node_filter_sql
        self.check_deadline = check_deadline

    def expand(self, frontier, forward: bool) -> list[tuple[int, int, int, int]]:
        """Edges (pre, post, weight, weightHP) leaving (forward) or entering the frontier."""
        self.check_deadline()
        if not frontier:
            return []
        table, near, far = ("connections", "body_pre", "body_post") if forward else \
            ("connections_by_post", "body_post", "body_pre")
        sql = (f"SELECT c.body_pre, c.body_post, c.weight, c.weight_hp FROM {table} c "
               f"SEMI JOIN frontier f ON c.{near} = f.id")
        where = []
        if self.edge_filter:
            where.append(self.edge_filter)
        if self.node_filter:
            where.append(f"c.{far} IN (SELECT n.bodyId FROM segments n WHERE {self.node_filter})")
        if where:
            sql += " WHERE " + " AND ".join(where)
        frontier_table = pa.table({"id": pa.array(sorted(frontier), type=pa.int64())})
        return self.run_sql(sql, {"frontier": frontier_table})


def _rel(edge, view) -> RelRef:
    pre, post, weight, weight_hp = edge
    return RelRef(CONNECTS, pre, post, {"weight": weight, "weightHP": weight_hp}, view=view)


def all_shortest_paths(graph: ConnectionGraph, source: int, target: int, max_hops: int | None,
                       view) -> list[tuple[list[int], list[RelRef]]]:
    """Every shortest path source -> target (as node ids and relationships)."""
    if source == target:
        return []
    forward_parents: dict[int, list] = {source: []}
    backward_parents: dict[int, list] = {target: []}
    forward_frontier, backward_frontier = {source}, {target}
    hops = 0
    meeting: set[int] = set()
    while forward_frontier and backward_frontier and not meeting:
        if max_hops is not None and hops >= max_hops:
            break
        hops += 1
        if len(forward_frontier) <= len(backward_frontier):
            level: dict[int, list] = {}
            for edge in graph.expand(forward_frontier, True):
                post = edge[1]
                if post not in forward_parents:
                    level.setdefault(post, []).append(edge)
            forward_parents.update(level)
            forward_frontier = set(level)
            meeting = forward_frontier & set(backward_parents)
        else:
            level = {}
            for edge in graph.expand(backward_frontier, False):
                pre = edge[0]
                if pre not in backward_parents:
                    level.setdefault(pre, []).append(edge)
            backward_parents.update(level)
            backward_frontier = set(level)
            meeting = backward_frontier & set(forward_parents)

    def forward_halves(node):
        if node == source:
            return [([source], [])]
        out = []
        for edge in forward_parents[node]:
            for nodes, rels in forward_halves(edge[0]):
                out.append((nodes + [node], rels + [edge]))
        return out

    def backward_halves(node):
        if node == target:
            return [([target], [])]
        out = []
        for edge in backward_parents[node]:
            for nodes, rels in backward_halves(edge[1]):
                out.append(([node] + nodes, [edge] + rels))
        return out

    paths = []
    for middle in sorted(meeting):
        for f_nodes, f_rels in forward_halves(middle):
            for b_nodes, b_rels in backward_halves(middle):
                paths.append((f_nodes + b_nodes[1:], [_rel(e, view) for e in f_rels + b_rels]))
    return paths


def bounded_paths(graph: ConnectionGraph, sources: set[int], targets: set[int] | None, min_hops: int,
                  max_hops: int, view) -> list[tuple[list[int], list[RelRef]]]:
    """Every path of min_hops..max_hops relationships from a source to a target (no relationship
    twice, as Cypher's relationship isomorphism requires). ``targets`` None = any end node."""
    if max_hops < min_hops:
        return []
    if targets is None:
        return _forward_paths(graph, sources, min_hops, max_hops, view)
    # backward levels: reach[j] = nodes that reach a target in exactly j hops; into[j][u] = edges
    # u -> v with v in reach[j-1]
    reach = [set(targets)]
    out_edges: list[dict[int, list]] = [{}]
    for _ in range(1, max_hops + 1):
        level: dict[int, list] = {}
        for edge in graph.expand(reach[-1], False):
            level.setdefault(edge[0], []).append(edge)
        out_edges.append(level)
        reach.append(set(level))
    paths = []

    def walk(node, remaining, nodes, edges):
        graph.check_deadline()
        if remaining == 0:
            paths.append((list(nodes), [_rel(e, view) for e in edges]))
            return
        for edge in out_edges[remaining].get(node, ()):
            if edge in edges:
                continue
            nodes.append(edge[1])
            edges.append(edge)
            walk(edge[1], remaining - 1, nodes, edges)
            nodes.pop()
            edges.pop()

    for length in range(max(min_hops, 0), max_hops + 1):
        for source in sorted(sources):
            if length == 0:
                if source in targets:
                    paths.append(([source], []))
                continue
            if source in reach[length]:
                walk(source, length, [source], [])
    return paths


def _forward_paths(graph, sources, min_hops, max_hops, view):
    adjacency: dict[int, list] = {}
    frontier = set(sources)
    seen: set[int] = set()
    for _ in range(max_hops):
        todo = frontier - seen
        seen |= todo
        if not todo:
            break
        frontier = set()
        for edge in graph.expand(todo, True):
            adjacency.setdefault(edge[0], []).append(edge)
            frontier.add(edge[1])
    paths = []

    def walk(node, nodes, edges):
        graph.check_deadline()
        if len(edges) >= min_hops:
            paths.append((list(nodes), [_rel(e, view) for e in edges]))
        if len(edges) == max_hops:
            return
        for edge in adjacency.get(node, ()):
            if edge in edges:
                continue
            nodes.append(edge[1])
            edges.append(edge)
            walk(edge[1], nodes, edges)
            nodes.pop()
            edges.pop()

    for source in sorted(sources):
        walk(source, [source], [])
    return paths
