"""allShortestPaths / shortestPath over ConnectsTo answered from the neuron graph in RAM.

The engine's path search (paths.py over flatprint.store.graph.ConnectionGraph) runs one SQL query
per breadth-first level over every body. When a shortest path can only pass through :Neuron bodies,
the same search runs over the store's neuron graph (flatprint.store.neurongraph) with no SQL per
level. That is exact when

* the relationship is ``ConnectsTo``, directed, without a property map, and every
  ``ALL(x IN relationships(p) WHERE ...)`` the search filters with is a weight threshold
  (``x.weight >= 5``, ``x.weight > 4``);
* an ``ALL(n IN nodes(p) WHERE ...)`` filter admits :Neuron bodies only: each of its disjuncts
  lists bodies by id that are all neurons (``n.bodyId IN [ends]``), or asks for a status that makes
  a body a :Neuron (NEURON_STATUSES) or the label, or is a conjunction with such a term (neuPrint's shape:
  ``n.status = 'Traced' OR n.bodyId IN [ends]``); without such a filter a path may pass through
  any Segment, and the SQL search runs;
* both ends are neurons of the graph (checked per pair; other pairs take the SQL search).

Which neurons a filter admits is read once per filter (SQL over ``neurons``, its bodyId lists
left out and applied in NumPy, so one verdict serves every pair of ends) and kept. Only a graph
already built is used (kept_neuron_graph): a query never waits for a build.

The paths come in the order of the SQL search (flatprint.store.graph.shortest_paths): by the body
where its two sides met, then the bodies back towards the source, then those on to the target;
past MAX_PATHS the first MAX_PATHS in that order, as there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flatprint.cypher import ast
from flatprint.cypher.kinds import SEGMENT
from flatprint.cypher.paths import with_rels
from flatprint.cypher.sqlgen import admitted_neurons_sql, path_filter_sql, variables_in
from flatprint.cypher.values import NodeRef
from flatprint.store import graph as search
from flatprint.store.cache import BuildOnceCache, store_key
from flatprint.store.graph import neuron_path_layers
from flatprint.store.neurongraph import NeuronGraph, kept_neuron_graph

#: Answer shortest paths among neurons from the neuron graph when it is built; False: always the
#: SQL search (tests compare the two).
USE_NEURON_GRAPH = True

#: A body with one of these statuses is a :Neuron (docs/decisions.md: neither Unimportant nor Glia,
#: and Traced or Anchor is one of the neuron-label criteria; ingest stores the outcome as is_neuron).
NEURON_STATUSES = frozenset({"Traced", "Anchor"})

__all__ = ["NEURON_STATUSES", "USE_NEURON_GRAPH", "NeuronPathSearch", "neuron_endpoint_rows", "neuron_path_search"]

KEEP_VERDICTS = 16  # the filter verdicts kept, most recently used last
_verdicts: BuildOnceCache[np.ndarray] = BuildOnceCache(max_entries=lambda: KEEP_VERDICTS)

_LOWEST_WEIGHT = -(2**31)  # no weight threshold
_FEW_NODES = 32  # a path's nodes up to this many read their properties one by one

#: Property names of ConnectsTo that no Segment has: a query reading them reads no node property.
_RELATIONSHIP_ONLY = frozenset({"weight", "weightHP"})
#: DuckDB types whose values come out of Arrow as they come out of DuckDB's rows.
_PLAIN_TYPES = frozenset({"VARCHAR", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "DOUBLE", "FLOAT", "BOOLEAN"})


@dataclass(frozen=True)
class NodeFilter:
    """One ``ALL(n IN nodes(p) WHERE ...)``: the bodies its disjuncts list by id, the SQL of its other
    disjuncts (alias ``n``; None: there are none) and whether those admit :Neuron bodies only."""

    listed: tuple[int, ...]
    criteria: str | None
    neurons_only: bool


class NeuronPathSearch:
    """The shortest-path search of one pattern over the neuron graph (module docstring)."""

    def __init__(
        self, store, graph: NeuronGraph, min_weight: int, filters: list[NodeFilter], run_arrow, check, searched=()
    ):
        self.store, self.graph, self.min_weight, self.filters = store, graph, min_weight, filters
        self.run_arrow, self.check = run_arrow, check
        #: the WHERE terms the search applies exactly (ids): met by every path found between ends
        #: the node filters admit (the search itself admits any ends), so not evaluated again there
        self.searched = frozenset(map(id, searched))
        self.ends_admitted: set[tuple[int, int]] = set()  # the pairs of ends every node filter admits

    def all_shortest_paths(self, source: int, target: int, max_hops: int | None, view):
        """paths.all_shortest_paths' answer for these ends, or None when the neuron graph cannot
        give it exactly (an end, or a body a filter lists, is not a neuron)."""
        graph = self.graph
        ends, inside = graph.positions([source, target])
        if not inside.all() or not any(f.neurons_only and self._all_neurons(f.listed) for f in self.filters):
            return None
        admitted = np.ones(len(graph.body_ids), dtype=bool)
        for node_filter in self.filters:
            admitted &= self._admitted(node_filter)
        if admitted[ends].all():
            self.ends_admitted.add((source, target))
        layers = neuron_path_layers(graph, int(ends[0]), int(ends[1]), self.min_weight, admitted, self.check)
        if layers is None or (max_hops is not None and len(layers[1]) > max_hops):
            return []
        return with_rels(_ordered_paths(graph, int(ends[0]), *layers, self.check), view)

    def fill_nodes(self, nodes: dict, needed: set[str], model, cursor) -> bool:
        """Give the path's nodes (bodyId -> NodeRef) the properties the query reads from the graph's
        neuron columns (kept per graph): True when every one is a neuron and every property name the
        query reads is a plain column of ``neurons`` or one of ConnectsTo's own (else nothing is
        filled and the caller loads whole property maps, as for any path)."""
        names = [name for name in sorted(needed) if name not in _RELATIONSHIP_ONLY]
        if not nodes or any(name not in model.segment_properties for name in names):
            return False
        found, inside = self.graph.positions(list(nodes))
        if not inside.all():
            return False
        values = {}
        for name in names:
            if name == "bodyId":  # the graph's own ids (BIGINT in ``neurons``)
                values[name] = self.graph.body_ids[found].tolist()
                continue
            column = self.graph.column(cursor, name)
            if column is None or column[1] not in _PLAIN_TYPES:
                return False
            if len(found) <= _FEW_NODES:  # Arrow's take costs ~40 us a call, a scalar ~1 us
                values[name] = [column[0][i].as_py() for i in found.tolist()]
            else:
                values[name] = column[0].take(found).to_pylist()
        for index, node in enumerate(nodes.values()):
            node.props = {name: model.segment_value(name, values[name][index]) for name in names}
            node.props["__is_neuron"] = True  # every one is (n:Neuron reads it)
        return True

    def _all_neurons(self, bodies) -> bool:
        return bool(self.graph.positions(list(bodies))[1].all()) if bodies else True

    def _admitted(self, node_filter: NodeFilter) -> np.ndarray:
        graph = self.graph
        if node_filter.criteria is None:
            admitted = np.zeros(len(graph.body_ids), dtype=bool)
        else:
            key = (*store_key(self.store), len(graph.body_ids), node_filter.criteria)
            admitted = _verdicts.get(key, lambda: self._evaluate(node_filter.criteria)).copy()
        found, inside = graph.positions(list(node_filter.listed))
        admitted[found[inside]] = True
        return admitted

    def _evaluate(self, criteria: str) -> np.ndarray:
        ids = self.run_arrow(admitted_neurons_sql(criteria)).column(0).to_numpy()
        found, inside = self.graph.positions(ids)
        admitted = np.zeros(len(self.graph.body_ids), dtype=bool)
        admitted[found[inside]] = True
        admitted.flags.writeable = False
        return admitted


def neuron_path_search(execution, pattern: ast.PathPattern, path_terms) -> NeuronPathSearch | None:
    """The search over the neuron graph for a shortest-path pattern (``execution``: the engine's
    Execution; ``path_terms``: the WHERE conjuncts about the path), or None when it would not be
    exact for every pair of ends or the graph is not built."""
    if not USE_NEURON_GRAPH or not pattern.shortest:
        return None
    rel = pattern.elements[1]
    if (
        rel.types != ("ConnectsTo",)
        or rel.properties is not None
        or rel.direction not in (ast.Direction.OUTGOING, ast.Direction.INCOMING)
    ):
        return None
    graph = kept_neuron_graph(execution.store)
    if graph is None:
        return None
    min_weight, filters, searched = _LOWEST_WEIGHT, [], []
    for term, variable, over, where in _searched_filters(execution, pattern.variable, path_terms):
        searched.append(term)
        if over == "relationships":
            floor = _weight_floor(where, variable, execution.params)
            if floor is None:
                return None
            min_weight = max(min_weight, floor)
        else:
            node_filter = _node_filter(execution, variable, where)
            if node_filter is None:
                return None
            filters.append(node_filter)
    if not any(f.neurons_only for f in filters):
        return None
    return NeuronPathSearch(
        execution.store, graph, min_weight, filters, execution.run_arrow, execution.deadline.check, searched
    )


def neuron_endpoint_rows(execution, patterns, where, rows: list[dict]) -> list[dict] | None:
    """The rows of a path search's end points (``execution``: the engine's Execution) when every end
    pattern is one neuron by id, ``(src:Neuron {bodyId: 10001})``, as neuPrint's shortest-path
    queries write them: read from the neuron graph's bodies in RAM instead of one SQL statement
    (~4 ms at scale 0.1). At most one row (each pattern names one body); nodes hold their bodyId and
    load other properties when read. None: SQL finds them (a WHERE, bound variables, another
    pattern, a :Segment that is no neuron, or the graph not built)."""
    if not USE_NEURON_GRAPH or where is not None or rows != [{}]:
        return None
    ends, bare = [], set()
    for pattern in patterns:
        node = pattern.elements[0] if len(pattern.elements) == 1 else None
        if not isinstance(node, ast.NodePattern) or node.variable is None:
            return None
        if not node.labels and node.properties is None:
            bare.add(node.variable)  # the path's end, named again: (src)-[...]->(dest)
            continue
        if (
            not node.labels
            or not set(node.labels) <= {"Neuron", "Segment"}
            or not isinstance(node.properties, ast.MapLiteral)
            or [key for key, _ in node.properties.entries] != ["bodyId"]
        ):
            return None
        body = _value(node.properties.entries[0][1], execution.params)
        if not isinstance(body, int) or isinstance(body, bool):
            return None  # 1.0 = 1 and other comparisons: SQL's
        ends.append((node.variable, "Neuron" in node.labels, body))
    named = [variable for variable, _, _ in ends]
    if len(set(named)) != len(named) or not bare <= set(named):
        return None
    graph = kept_neuron_graph(execution.store)
    if graph is None:
        return None
    _, inside = graph.positions([body for _, _, body in ends])
    row = {}
    for (variable, neuron_label, body), is_neuron in zip(ends, inside.tolist()):
        if not is_neuron:
            if not neuron_label:
                return None  # a Segment that may be no neuron
            return []  # no such :Neuron: the cross product is empty
        row[variable] = NodeRef(SEGMENT, body, {"bodyId": body}, view=execution.view)
    return [row]


def path_quantifier(term, path_name: str) -> str | None:
    """'relationships' or 'nodes' for ``ALL(x IN relationships(p) WHERE ...)`` / ``ALL(n IN nodes(p)
    WHERE ...)`` over the path ``path_name`` (``rels(p)`` too), else None."""
    if not (
        isinstance(term, ast.Quantifier)
        and term.kind == "ALL"
        and isinstance(term.source, ast.FunctionCall)
        and len(term.source.arguments) == 1
        and isinstance(term.source.arguments[0], ast.Variable)
        and term.source.arguments[0].name == path_name
    ):
        return None
    function = term.source.lower_name
    over = "relationships" if function in ("relationships", "rels") else function
    return over if over in ("relationships", "nodes") else None


def _searched_filters(execution, path_name, terms):
    """(term, variable, 'relationships' or 'nodes', condition) of the terms the SQL search filters with
    (MatchExecution._path_filters' choice); the others only filter the paths found, as there."""
    for term in terms:
        over = path_quantifier(term, path_name)
        if over is None or not variables_in(term.where) <= {term.variable}:
            continue
        if path_filter_sql(execution.model, execution.params, term.variable, over, term.where):
            yield term, term.variable, over, term.where


def _value(expression, params):
    if isinstance(expression, ast.Literal):
        return expression.value
    if isinstance(expression, ast.Parameter):
        return params.get(expression.name)
    if isinstance(expression, ast.ListLiteral):
        values = expression.literal_values()
        return list(values) if values is not None else [_value(item, params) for item in expression.items]
    return None


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_property(expression, variable: str, name: str) -> bool:
    return (
        isinstance(expression, ast.Property)
        and expression.name == name
        and isinstance(expression.subject, ast.Variable)
        and expression.subject.name == variable
    )


_FLIPPED = {">=": "<=", ">": "<", "<=": ">=", "<": ">"}


def _weight_floor(where, variable: str, params) -> int | None:
    """The least weight ``where`` admits when it is a weight threshold (or a conjunction of them),
    else None."""
    if isinstance(where, ast.BinaryOp) and where.operator == "AND":
        left, right = _weight_floor(where.left, variable, params), _weight_floor(where.right, variable, params)
        return None if left is None or right is None else max(left, right)
    if not isinstance(where, ast.Comparison):
        return None
    floor = _LOWEST_WEIGHT
    for left, operator, right in where.pairs():
        if _is_property(right, variable, "weight"):
            left, operator, right = right, _FLIPPED.get(operator), left
        bound = _value(right, params)
        if not _is_property(left, variable, "weight") or operator not in (">=", ">") or not _is_number(bound):
            return None
        floor = max(floor, math.ceil(bound) if operator == ">=" else math.floor(bound) + 1)
    return floor


def _disjuncts(where) -> list:
    if isinstance(where, ast.BinaryOp) and where.operator == "OR":
        return _disjuncts(where.left) + _disjuncts(where.right)
    return [where]


def _listed_bodies(where, variable: str, params) -> list[int] | None:
    """The bodies ``n.bodyId IN [...]`` / ``n.bodyId = ...`` lists (ints), else None."""
    if isinstance(where, ast.In) and _is_property(where.element, variable, "bodyId"):
        values = _value(where.collection, params)
    elif isinstance(where, ast.Comparison) and where.operators == ("=",):
        left, right = where.operands
        if _is_property(right, variable, "bodyId"):
            left, right = right, left
        if not _is_property(left, variable, "bodyId"):
            return None
        values = [_value(right, params)]
    else:
        return None
    if isinstance(values, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return values
    return None


def _neuron_statuses_only(where, variable: str, params) -> bool:
    """True when ``where`` can only hold for :Neuron bodies: it asks for the label or a status in
    NEURON_STATUSES (alone, in every disjunct, or in a conjunct)."""
    if isinstance(where, ast.BinaryOp) and where.operator == "AND":
        return _neuron_statuses_only(where.left, variable, params) or _neuron_statuses_only(
            where.right, variable, params
        )
    if isinstance(where, ast.BinaryOp) and where.operator == "OR":
        return _neuron_statuses_only(where.left, variable, params) and _neuron_statuses_only(
            where.right, variable, params
        )
    if isinstance(where, ast.LabelPredicate):
        subject = where.subject
        return isinstance(subject, ast.Variable) and subject.name == variable and "Neuron" in where.labels
    if isinstance(where, ast.In) and _is_property(where.element, variable, "status"):
        values = _value(where.collection, params)
        return isinstance(values, list) and all(isinstance(v, str) and v in NEURON_STATUSES for v in values)
    if isinstance(where, ast.Comparison) and where.operators == ("=",):
        left, right = where.operands
        if _is_property(right, variable, "status"):
            left, right = right, left
        value = _value(right, params)
        return _is_property(left, variable, "status") and isinstance(value, str) and value in NEURON_STATUSES
    return False


def _node_filter(execution, variable: str, where) -> NodeFilter | None:
    listed: list[int] = []
    others = []
    for disjunct in _disjuncts(where):
        bodies = _listed_bodies(disjunct, variable, execution.params)
        if bodies is None:
            others.append(disjunct)
        else:
            listed.extend(bodies)
    criteria = None
    if others:
        rest = others[0]
        for disjunct in others[1:]:
            rest = ast.BinaryOp("OR", rest, disjunct)
        criteria = path_filter_sql(execution.model, execution.params, variable, "nodes", rest)
        if criteria is None:
            return None
    neurons_only = all(_neuron_statuses_only(d, variable, execution.params) for d in others)
    return NodeFilter(tuple(sorted(set(listed))), criteria, neurons_only)


def _extend(nodes, used, near_of_rows, step, step_near, step_far, check):
    """Each row (a path prefix; rows in order) once per pair of ``step`` (sorted by near, then far)
    whose near end is the row's ``near_of_rows``: the far end and the pair appended. The first
    MAX_PATHS rows only (every prefix extends to a whole path, so they are the first paths' prefixes)."""
    check()
    first = np.searchsorted(step_near, near_of_rows, side="left")
    counts = np.searchsorted(step_near, near_of_rows, side="right") - first
    ends = np.cumsum(counts)
    if ends[-1] > search.MAX_PATHS:
        keep = int(np.searchsorted(ends, search.MAX_PATHS)) + 1
        nodes, used, first, counts, ends = nodes[:keep], used[:keep], first[:keep], counts[:keep], ends[:keep]
        counts[-1] -= ends[-1] - search.MAX_PATHS
        ends[-1] = search.MAX_PATHS
    rows = np.repeat(np.arange(len(counts)), counts)
    chosen = first[rows] + np.arange(int(ends[-1])) - (ends - counts)[rows]
    return np.column_stack([nodes[rows], step_far[chosen]]), np.column_stack([used[rows], step[chosen]])


def _ordered_paths(graph: NeuronGraph, source: int, middle: int, steps: list[np.ndarray], check):
    """The paths of the layered graph (neuron_path_layers) as (bodies, edges), in the SQL search's
    order: by the body at layer ``middle``, then the bodies back to the source, then on to the target."""
    length = len(steps)
    meeting = np.unique(graph.post[steps[middle - 1]]) if middle else np.array([source], dtype=np.int64)
    nodes = meeting.astype(np.int64)[:, None]
    used = np.empty((len(meeting), 0), dtype=np.int64)
    for hop in range(middle, 0, -1):  # towards the source: each newest body's predecessors
        step = steps[hop - 1]
        step = step[np.lexsort((graph.pre[step], graph.post[step]))]
        nodes, used = _extend(nodes, used, nodes[:, -1], step, graph.post[step], graph.pre[step], check)
    for hop in range(middle, length):  # on to the target from the meeting body, then the newest
        step = steps[hop]  # pair order: (pre, post)
        near = nodes[:, 0] if hop == middle else nodes[:, -1]
        nodes, used = _extend(nodes, used, near, step, graph.pre[step], graph.post[step], check)
    node_order = [*range(middle, 0, -1), 0, *range(middle + 1, length + 1)]
    pair_order = [*range(middle - 1, -1, -1), *range(middle, length)]
    bodies = graph.body_ids[nodes[:, node_order]].tolist()
    pairs = used[:, pair_order]
    pre, post = graph.body_ids[graph.pre[pairs]].tolist(), graph.body_ids[graph.post[pairs]].tolist()
    weight, weight_hp = _python_values(graph.weight[pairs]), _python_values(graph.weight_hp[pairs])
    return [(path, list(zip(*columns))) for path, *columns in zip(bodies, pre, post, weight, weight_hp)]


def _python_values(values: np.ndarray) -> list:
    """Ints as ints; a float column (NULLs as NaN) as ints and None."""
    if values.dtype.kind == "f":
        return [[None if math.isnan(v) else int(v) for v in row] for row in values.tolist()]
    return values.astype(np.int64).tolist()
