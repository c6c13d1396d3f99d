"""The connection graph and path search over it: breadth-first search with one SQL query per level.

docs/performance-anchors.md: a bidirectional BFS issuing one SQL query per level answers shortest paths at
full scale in ~35 ms, where a one-directional search takes seconds. Neighbours come from the two
sorted copies of the connections table (``connections`` by body_pre, ``connections_by_post`` by
body_post), so each level is a zone-map range scan. When the node filter admits only :Neuron bodies
(e.g. status Traced, which makes a body a :Neuron), a level reads the neuron-only copies
(``neuron_connections`` / ``_by_post``, flatprint.ingest.summaries) and evaluates the filter on
``neurons``: both a small fraction of the full tables.

One implementation serves the library (flatprint.query.paths: fetch_shortest_paths, fetch_paths) and
the Cypher engine (flatprint.cypher.paths: ``allShortestPaths``, ``[:ConnectsTo*min..max]``), which
wraps the edges in relationships. Shortest paths whose bodies can only be neurons need no SQL at all:
:func:`neuron_shortest_paths` runs the same search over the neuron graph in RAM
(flatprint.store.neurongraph), a level one gather of CSR ranges.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa

from flatprint.store.columns import EDGE_COLUMNS
from flatprint.store.neurongraph import NeuronGraph
from flatprint.store.sql import unique_name

MAX_PATHS = 100_000  # neuPrint answers with every path; past this many we stop enumerating

#: An edge of the connection graph: its EDGE_COLUMNS (body_pre, body_post, weight, weight_hp).
Edge = tuple

#: Edges as columns: EDGE_COLUMNS' arrays (int64), one entry per edge.
EdgeColumns = tuple

_SELECT = ", ".join("c." + column for column in EDGE_COLUMNS)


def _ids(values) -> np.ndarray:
    return np.unique(np.fromiter((int(v) for v in values), dtype=np.int64))


#: Past this many ids a key filter reads them from a registered Arrow table: DuckDB plans a long
#: constant list slowly (20,000 ids: 0.24 s of CPU, against 6 ms for a semi join with a table).
IN_LIST_MOST = 256


def _in_sql(column: str, ids: np.ndarray, tables: dict) -> str:
    """``column`` in the sorted ids. A few ids as a constant list, which DuckDB pushes into the scan of
    a table sorted by ``column`` (it skips the row groups between them); more as a registered table
    (added to ``tables``), bounded by their range for the zone maps."""
    if len(ids) == 1:
        return f"{column} = {int(ids[0])}"
    if len(ids) <= IN_LIST_MOST:
        return f"{column} IN ({', '.join(map(str, ids.tolist()))})"
    name = unique_name("frontier")
    tables[name] = pa.table({"id": ids})
    return f"{column} BETWEEN {int(ids[0])} AND {int(ids[-1])} AND {column} IN (SELECT id FROM {name})"


class ConnectionGraph:
    """One-hop expansion of body sets through the connection tables.

    ``edge_filter_sql`` is a condition on the connection (alias ``c``), ``node_filter_sql`` one on
    the body reached (alias ``n`` over ``segments``); ``run_sql(sql, tables)`` runs a query with
    Arrow tables registered under the given names (and unregisters them) and returns its rows;
    ``check_deadline()`` raises to stop a search.

    ``fetch_columns(sql, tables)``, when given, runs a query as ``run_sql`` does and returns its
    columns as NumPy arrays (as DuckDB's ``fetchnumpy``): the shortest-path search then handles a
    level's edges as arrays, not one Python tuple each.

    ``neurons_besides``, when given, says that the node filter admits :Neuron bodies and, of the
    other bodies, at most these (a path's end points that are not :Neuron, say): a level then
    reads the neuron-only tables and evaluates the filter on ``neurons``, and reads the full tables
    only for the edges leaving or entering those bodies. A search whose start is neither a
    :Neuron nor one of them finds nothing beyond it.
    """

    def __init__(
        self,
        run_sql,
        edge_filter_sql: str | None = None,
        node_filter_sql: str | None = None,
        check_deadline=None,
        *,
        fetch_columns=None,
        neurons_besides: Iterable[int] | None = None,
    ):
        self.run_sql = run_sql
        self.edge_filter = edge_filter_sql
        self.node_filter = node_filter_sql
        self.check_deadline = check_deadline or (lambda: None)
        self.fetch_columns = fetch_columns
        self.besides = None if neurons_besides is None else _ids(neurons_besides)
        self._refused = None

    def _select(self, table: str, far: str, bodies: str | None, *conditions: str) -> str:
        where = list(conditions)
        if self.edge_filter:
            where.append(f"({self.edge_filter})")
        if self.node_filter and bodies:
            where.append(f"{far} IN (SELECT n.bodyId FROM {bodies} n WHERE {self.node_filter})")
        return f"SELECT {_SELECT} FROM {table} c WHERE " + " AND ".join(where)

    def level_sql(self, frontier: np.ndarray, forward: bool, filter_neurons: bool = True) -> tuple[str, dict]:
        """One query for the edges leaving (forward) or entering the frontier (sorted unique ids)
        that pass both filters, and the Arrow tables it reads (``filter_neurons`` False: the node
        filter is left out for edges between two neurons, whose other end the caller checks)."""
        near, far = ("c.body_pre", "c.body_post") if forward else ("c.body_post", "c.body_pre")
        full, by_far = ("connections", "connections_by_post") if forward else ("connections_by_post", "connections")
        tables: dict = {}
        if self.besides is None:
            return self._select(full, far, "segments", _in_sql(near, frontier, tables)), tables
        neuron_table = "neuron_connections" if forward else "neuron_connections_by_post"
        neurons = "neurons" if filter_neurons else None
        parts = [self._select(neuron_table, far, neurons, _in_sql(near, frontier, tables))]
        if not len(self.besides):
            return parts[0], tables
        outside = np.intersect1d(frontier, self.besides, assume_unique=True)
        if len(outside):  # their edges are in the full tables only
            parts.append(self._select(full, far, "segments", _in_sql(near, outside, tables)))
        inside = np.setdiff1d(frontier, self.besides, assume_unique=True)
        if len(inside):  # edges into them: ranges of the copy sorted by their side
            ends = (_in_sql(far, self.besides, tables), _in_sql(near, inside, tables))
            parts.append(self._select(by_far, far, "segments", *ends))
        return " UNION ALL ".join(parts), tables

    def expand(self, frontier, forward: bool) -> list[Edge]:
        """Edges leaving (forward) or entering the frontier that pass both filters."""
        self.check_deadline()
        if not frontier:
            return []
        return self.run_sql(*self.level_sql(_ids(frontier), forward))

    def _refused_neurons(self) -> np.ndarray:
        """The neurons the node filter refuses (sorted), read once: a level then filters its edges
        with them instead of evaluating the filter over ``neurons`` again."""
        if self._refused is None:
            found = self.fetch_columns(f"SELECT n.bodyId FROM neurons n WHERE ({self.node_filter}) IS NOT TRUE", {})
            self._refused = np.sort(np.asarray(found["bodyId"], dtype=np.int64))
        return self._refused

    def expand_columns(self, frontier: np.ndarray, forward: bool) -> EdgeColumns:
        """``expand`` as EdgeColumns, sorted by the frontier's side then the other (the tables' order)."""
        self.check_deadline()
        if not len(frontier):
            return tuple(np.empty(0, dtype=np.int64) for _ in EDGE_COLUMNS)
        if self.fetch_columns is None:
            rows = self.run_sql(*self.level_sql(frontier, forward))
            columns = tuple(np.array([row[i] for row in rows], dtype=np.int64) for i in range(len(EDGE_COLUMNS)))
        else:
            in_numpy = self.besides is not None and bool(self.node_filter)
            found = self.fetch_columns(*self.level_sql(frontier, forward, filter_neurons=not in_numpy))
            columns = tuple(np.asarray(found[name], dtype=np.int64) for name in EDGE_COLUMNS)
            if in_numpy:  # the other parts' far ends passed the filter in SQL, so none is refused
                refused = self._refused_neurons()
                if len(refused):
                    keep = ~np.isin(columns[1] if forward else columns[0], refused)
                    columns = tuple(column[keep] for column in columns)
        pre, post = columns[0], columns[1]
        order = np.lexsort((post, pre) if forward else (pre, post))
        return tuple(column[order] for column in columns)


class _Side:
    """One end of a bidirectional search: the bodies it reached and, per level, the edges that
    first reached each body of that level (EdgeColumns, ``far`` the body reached)."""

    def __init__(self, end: int, forward: bool):
        self.end, self.forward = end, forward
        self.seen = np.array([end], dtype=np.int64)  # sorted
        self.frontier = self.seen
        self.levels: list[EdgeColumns] = []

    def grow(self, graph: ConnectionGraph) -> None:
        edges = graph.expand_columns(self.frontier, self.forward)
        far = edges[1] if self.forward else edges[0]
        new = ~np.isin(far, self.seen)
        edges = tuple(column[new] for column in edges)
        self.levels.append(edges)
        self.frontier = np.unique(edges[1] if self.forward else edges[0])
        self.seen = np.union1d(self.seen, self.frontier)

    def parents(self, meeting: np.ndarray) -> dict[int, list[Edge]]:
        """body -> the edges that reached it, for the bodies on a shortest path from ``end`` to ``meeting``."""
        parents: dict[int, list[Edge]] = {self.end: []}
        wanted = meeting
        for edges in reversed(self.levels):
            near, far = (edges[0], edges[1]) if self.forward else (edges[1], edges[0])
            used = np.isin(far, wanted)
            for edge in zip(*(column[used].tolist() for column in edges)):
                parents.setdefault(edge[1] if self.forward else edge[0], []).append(edge)
            wanted = np.union1d(np.setdiff1d(wanted, far[used]), near[used])
        return parents


def shortest_paths(
    graph: ConnectionGraph, source: int, target: int, max_hops: int | None = None
) -> list[tuple[list[int], list[Edge]]]:
    """Every shortest path source -> target as (bodies, edges); [] when there is none (or source is
    target: a path needs at least one relationship). Meets in the middle, always expanding the
    smaller frontier; a level's edges are NumPy columns."""
    if source == target:
        return []
    ahead, behind = _Side(source, True), _Side(target, False)
    hops = 0
    meeting = np.empty(0, dtype=np.int64)
    while len(ahead.frontier) and len(behind.frontier) and not len(meeting):
        if max_hops is not None and hops >= max_hops:
            break
        hops += 1
        side, other = (ahead, behind) if len(ahead.frontier) <= len(behind.frontier) else (behind, ahead)
        side.grow(graph)
        meeting = np.intersect1d(side.frontier, other.seen, assume_unique=True)
    if not len(meeting):
        return []
    forward_parents, backward_parents = ahead.parents(meeting), behind.parents(meeting)

    def halves(node, parents, end, forward):
        if node == end:
            return [([end], [])]
        out = []
        for edge in parents[node]:
            for nodes, edges in halves(edge[0] if forward else edge[1], parents, end, forward):
                out.append((nodes + [node], edges + [edge]) if forward else ([node] + nodes, [edge] + edges))
                if len(out) >= MAX_PATHS:
                    return out
        return out

    paths = []
    for middle in meeting.tolist():
        for f_nodes, f_edges in halves(middle, forward_parents, source, True):
            for b_nodes, b_edges in halves(middle, backward_parents, target, False):
                paths.append((f_nodes + b_nodes[1:], f_edges + b_edges))
                if len(paths) >= MAX_PATHS:
                    return paths
    return paths


def bounded_paths(
    graph: ConnectionGraph, sources: set[int], targets: set[int] | None, min_hops: int, max_hops: int
) -> list[tuple[list[int], list[Edge]]]:
    """Every path of min_hops..max_hops edges from a source to a target, no edge twice (Cypher's
    relationship isomorphism). ``targets`` None = any end node. With targets, backward levels bound
    the search: the forward walk only follows edges that can still reach a target in the hops left."""
    if max_hops < min_hops:
        return []
    if targets is None:
        return _forward_paths(graph, sources, min_hops, max_hops)
    # reach[j]: bodies that reach a target in exactly j hops; out_edges[j][u]: edges u -> v, v in reach[j-1]
    reach = [set(targets)]
    out_edges: list[dict[int, list]] = [{}]
    for _ in range(1, max_hops + 1):
        level: dict[int, list] = {}
        for edge in graph.expand(reach[-1], False):
            level.setdefault(edge[0], []).append(edge)
        out_edges.append(level)
        reach.append(set(level))
    paths: list = []

    def walk(node, remaining, nodes, edges):
        graph.check_deadline()
        if remaining == 0:
            paths.append((list(nodes), list(edges)))
            return
        for edge in out_edges[remaining].get(node, ()):
            if edge in edges or len(paths) >= MAX_PATHS:
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


def _forward_paths(graph, sources, min_hops, max_hops):
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
    paths: list = []

    def walk(node, nodes, edges):
        graph.check_deadline()
        if len(edges) >= min_hops:
            paths.append((list(nodes), list(edges)))
        if len(edges) == max_hops:
            return
        for edge in adjacency.get(node, ()):
            if edge in edges or len(paths) >= MAX_PATHS:
                continue
            nodes.append(edge[1])
            edges.append(edge)
            walk(edge[1], nodes, edges)
            nodes.pop()
            edges.pop()

    for source in sorted(sources):
        walk(source, [source], [])
    return paths


def neuron_shortest_paths(
    graph: NeuronGraph,
    source: int,
    target: int,
    min_weight: int,
    admitted: np.ndarray | None = None,
    check_deadline=None,
) -> list[tuple[list[int], list[int]]]:
    """:func:`shortest_paths` over the neuron graph in RAM (flatprint.store.neurongraph), no SQL:
    every shortest path between the neurons at positions ``source`` and ``target`` of
    ``graph.body_ids`` along pairs of weight >= ``min_weight`` whose intermediates are ``admitted``
    (a bool per neuron; None: all), as (body ids, weights). [] when there is none or source is target.

    The same bidirectional BFS (expanding the smaller frontier; a level is one CSR gather), then the
    layered graph of the shortest paths, walked back from where the two sides met. Paths come sorted
    by their body ids; past MAX_PATHS only the first MAX_PATHS in that order (every prefix of the
    layered graph extends to a path, so keeping the first MAX_PATHS prefixes per layer is exact)."""
    check = check_deadline or (lambda: None)
    layers = neuron_path_layers(graph, source, target, min_weight, admitted, check)
    if layers is None:
        return []
    _, steps = layers
    nodes = np.array([[source]], dtype=np.int64)  # one row per path prefix, rows sorted
    used = np.empty((1, 0), dtype=np.int64)  # their pairs
    for step in steps:
        check()
        near = graph.pre[step]
        first = np.searchsorted(near, nodes[:, -1], side="left")
        counts = np.searchsorted(near, nodes[:, -1], side="right") - first
        ends = np.cumsum(counts)
        if ends[-1] > MAX_PATHS:
            keep = int(np.searchsorted(ends, MAX_PATHS)) + 1
            nodes, used, first, counts, ends = nodes[:keep], used[:keep], first[:keep], counts[:keep], ends[:keep]
            counts[-1] -= ends[-1] - MAX_PATHS
            ends[-1] = MAX_PATHS
        rows = np.repeat(np.arange(len(counts)), counts)
        chosen = step[first[rows] + np.arange(int(ends[-1])) - (ends - counts)[rows]]
        nodes = np.column_stack([nodes[rows], graph.post[chosen]])
        used = np.column_stack([used[rows], chosen])
    bodies = graph.body_ids[nodes].tolist()
    weights = graph.weight[used].astype(np.int64).tolist()
    return list(zip(bodies, weights))


def neuron_path_layers(
    graph: NeuronGraph,
    source: int,
    target: int,
    min_weight: int,
    admitted: np.ndarray | None = None,
    check_deadline=None,
) -> tuple[int, list[np.ndarray]] | None:
    """The layered graph of :func:`neuron_shortest_paths`' paths: (the hops from the source to the
    layer where the search's two sides met, the pairs from each layer to the next, sorted), or None
    when there is no path (or source is target). Callers enumerate the paths in their own order."""
    check = check_deadline or (lambda: None)
    if source == target:
        return None
    n = len(graph.body_ids)
    allowed = np.ones(n, dtype=bool) if admitted is None else np.array(admitted, dtype=bool)
    allowed[[source, target]] = True
    # hops from the source (forward) and to the target (backward); -1: not reached
    hops = (np.full(n, -1, dtype=np.int32), np.full(n, -1, dtype=np.int32))
    hops[0][source], hops[1][target] = 0, 0
    frontiers = [np.array([source], dtype=np.int64), np.array([target], dtype=np.int64)]
    depth = [0, 0]
    meeting = np.empty(0, dtype=np.int64)
    while len(frontiers[0]) and len(frontiers[1]) and not len(meeting):
        check()
        side = 0 if len(frontiers[0]) <= len(frontiers[1]) else 1
        pairs = graph.outgoing(frontiers[side]) if side == 0 else graph.incoming(frontiers[side])
        far = (graph.post if side == 0 else graph.pre)[pairs[graph.weight[pairs] >= min_weight]]
        far = far[allowed[far] & (hops[side][far] < 0)]
        depth[side] += 1
        hops[side][far] = depth[side]
        # one pass over the neurons instead of sorting a large level's (repeated) far ends
        frontiers[side] = np.flatnonzero(hops[side] == depth[side]) if len(far) else far.astype(np.int64)
        meeting = frontiers[side][hops[1 - side][frontiers[side]] >= 0]
    if not len(meeting):
        return None
    # Every meeting body is depth[0] hops from the source and depth[1] from the target (the sides'
    # reached sets were disjoint before this level). steps[i]: the pairs from layer i to i + 1 of
    # the shortest paths, in (pre, post) order (the pairs' own).
    length = depth[0] + depth[1]
    steps: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * length
    wanted = meeting
    for hop in range(depth[0], 0, -1):
        pairs = graph.incoming(wanted)
        pairs = pairs[(graph.weight[pairs] >= min_weight) & (hops[0][graph.pre[pairs]] == hop - 1)]
        steps[hop - 1] = np.sort(pairs)
        wanted = np.unique(graph.pre[pairs])
    wanted = meeting
    for hop in range(depth[1], 0, -1):
        pairs = graph.outgoing(wanted)
        pairs = pairs[(graph.weight[pairs] >= min_weight) & (hops[1][graph.post[pairs]] == hop - 1)]
        steps[length - hop] = np.sort(pairs)
        wanted = np.unique(graph.post[pairs])
    return depth[0], steps
