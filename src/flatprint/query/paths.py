"""Path search for the library (fetch_shortest_paths, fetch_paths) over the store's connection graph
(flatprint.store.graph), with neuPrint's timeout: a search past it answers no paths.

Both ends of a library path are :Neuron bodies (neuPrint matches them with the label), so when the
intermediate criteria admit only :Neuron bodies the whole search stays among neurons: shortest paths
over the store's neuron graph in RAM (flatprint.store.neurongraph, built on first use), bounded paths
(and stores without that graph's tables) in the neuron-only tables."""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict

import numpy as np

from flatprint.errors import QueryError
from flatprint.store.graph import ConnectionGraph, bounded_paths, neuron_shortest_paths, shortest_paths
from flatprint.store.neurongraph import NeuronGraph, has_neuron_graph, neuron_graph
from flatprint.store.sql import registered_tables


class _SearchTimeout(Exception):
    pass


#: A body with one of these statuses is a :Neuron (docs/decisions.md: neither Unimportant nor Glia,
#: and Traced or Anchor is one of the neuron-label criteria; ingest stores the outcome as is_neuron).
NEURON_STATUSES = frozenset({"Traced", "Anchor"})


#: Shortest paths among neurons search the neuron graph in RAM; False: always through SQL, one
#: query per BFS level (as for Segment intermediates).
USE_NEURON_GRAPH = True


def admits_only_neurons(criteria) -> bool:
    """True when NeuronCriteria can only match :Neuron bodies whatever their label says: they ask
    for statuses that make a body a :Neuron."""
    return bool(criteria.status) and all(isinstance(s, str) and s in NEURON_STATUSES for s in criteria.status)


def _library_graph(client, min_weight: int, node_filter: str, timeout: float, neurons_only: bool) -> ConnectionGraph:
    cur = client.cursor()
    check_deadline = _deadline_check(timeout)

    def run_sql(sql, tables=None):
        with registered_tables(cur, tables or {}):  # the graph named them uniquely
            return cur.execute(sql).fetchall()

    def fetch_columns(sql, tables):
        with registered_tables(cur, tables):
            return cur.execute(sql).fetchnumpy()

    # The ends are :Neuron (_are_neurons), so nothing but neurons is ever reached.
    neuron_tables = neurons_only and client.store.has_table("neuron_connections")
    return ConnectionGraph(
        run_sql,
        f"c.weight >= {int(min_weight)}",
        node_filter,
        check_deadline,
        fetch_columns=fetch_columns,
        neurons_besides=() if neuron_tables else None,
    )


def _are_neurons(client, *bodies: int) -> bool:
    """True when every body is a :Neuron; QueryError naming a body the dataset does not have at all
    (an empty result would read as "no path", e.g. through non-Traced intermediates). The small
    ``neurons`` table answers the usual case (ends that are neurons)."""
    ids = ", ".join(map(str, bodies))
    cur = client.cursor()
    if client.store.has_table("neurons"):
        if len(cur.execute(f"SELECT bodyId FROM neurons WHERE bodyId IN ({ids})").fetchall()) == len(set(bodies)):
            return True
    rows = cur.execute(f"SELECT bodyId, is_neuron FROM segments WHERE bodyId IN ({ids})").fetchall()
    neuron = {int(b): bool(n) for b, n in rows}
    for body in bodies:
        if body not in neuron:
            raise QueryError(f"body {body} is not in this dataset")
    return all(neuron[b] for b in bodies)


#: A node filter is "((criteria) OR n.bodyId IN (the ends))" (flatprint.query.connectivity); the search
#: admits its ends anyway, so the criteria's verdict over the neurons serves every pair of ends.
_ENDS_CLAUSE = re.compile(r"\((?P<criteria>.*) OR n\.bodyId IN \((?P<ids>[0-9, ]+)\)\)", re.DOTALL)
KEEP_VERDICTS = 16  # the criteria verdicts kept, most recently used last
_verdicts: OrderedDict[tuple, np.ndarray] = OrderedDict()
_verdicts_lock = threading.Lock()


def _evaluate(client, graph: NeuronGraph, node_filter: str) -> np.ndarray:
    sql = f"SELECT n.bodyId FROM neurons n WHERE ({node_filter}) IS NOT TRUE"
    refused, found = graph.positions(client.cursor().execute(sql).fetchnumpy()["bodyId"])
    admitted = np.ones(len(graph.body_ids), dtype=bool)
    admitted[refused[found]] = False
    admitted.flags.writeable = False
    return admitted


def _admitted(client, graph: NeuronGraph, node_filter: str, ends) -> np.ndarray:
    """Whether the node filter (over ``neurons``, alias ``n``) admits each neuron of the graph, the
    ends aside. The verdict of its criteria is read once per store and kept; a filter of another
    form is evaluated each time."""
    match = _ENDS_CLAUSE.fullmatch(node_filter)
    if not match or {int(b) for b in match["ids"].split(",")} != {int(b) for b in ends}:
        return _evaluate(client, graph, node_filter)
    key = (str(client.store.path), client.store.meta.get("uuid"), len(graph.body_ids), match["criteria"])
    with _verdicts_lock:
        if key in _verdicts:
            _verdicts.move_to_end(key)
            return _verdicts[key]
    admitted = _evaluate(client, graph, match["criteria"])
    with _verdicts_lock:
        _verdicts[key] = admitted
        while len(_verdicts) > KEEP_VERDICTS:
            _verdicts.popitem(last=False)
    return admitted


def _deadline_check(timeout: float):
    deadline = time.monotonic() + (timeout if timeout else float("inf"))

    def check_deadline():
        if time.monotonic() > deadline:
            raise _SearchTimeout

    return check_deadline


def all_shortest_paths(
    client, src: int, dst: int, min_weight: int, node_filter: str, timeout: float, neurons_only: bool = False
):
    """Every shortest path src -> dst as (bodies, weights), sorted; [] when none or past the timeout.
    ``neurons_only``: the node filter admits only :Neuron bodies besides the ends; then, with two
    neuron ends, the search runs over the neuron graph in RAM (its build, once, is not timed)."""
    if neurons_only and USE_NEURON_GRAPH and has_neuron_graph(client.store):
        graph = neuron_graph(client.store)
        ends, inside = graph.positions([src, dst])
        if inside.all():  # both ends are neurons (else the answer below: none, or an unknown body)
            check_deadline = _deadline_check(timeout)
            try:
                admitted = _admitted(client, graph, node_filter, (src, dst))
                return neuron_shortest_paths(graph, int(ends[0]), int(ends[1]), min_weight, admitted, check_deadline)
            except _SearchTimeout:
                return []
    if not _are_neurons(client, src, dst):
        return []
    try:
        found = shortest_paths(_library_graph(client, min_weight, node_filter, timeout, neurons_only), src, dst)
    except _SearchTimeout:
        return []
    return sorted((nodes, [edge[2] for edge in edges]) for nodes, edges in found)


def paths_up_to(
    client,
    src: int,
    dst: int,
    min_weight: int,
    node_filter: str,
    length: int,
    exact: bool,
    timeout: float,
    neurons_only: bool = False,
):
    """Paths src -> dst with exactly ``length`` (or 1..length) connections, no connection used twice;
    shortest first. [] past the timeout, like neuPrint."""
    if not _are_neurons(client, src, dst):
        return []
    try:
        found = bounded_paths(
            _library_graph(client, min_weight, node_filter, timeout, neurons_only),
            {src},
            {dst},
            length if exact else 1,
            length,
        )
    except _SearchTimeout:
        return []
    paths = [(nodes, [edge[2] for edge in edges]) for nodes, edges in found]
    return sorted(paths, key=lambda p: (len(p[0]), p))
