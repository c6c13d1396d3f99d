"""Path search for the library (fetch_shortest_paths, fetch_paths) over the store's connection graph
(flatprint.store.graph), with neuPrint's timeout: a search past it answers no paths.

Both ends of a library path are :Neuron bodies (neuPrint matches them with the label), so when the
intermediate criteria admit only :Neuron bodies the whole search stays among neurons: shortest paths
over the store's neuron graph in RAM (flatprint.store.neurongraph, built on first use), bounded paths
(and stores without that graph's tables) in the neuron-only tables."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from flatprint.errors import QueryError
from flatprint.store.cache import BuildOnceCache, store_key
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


@dataclass(frozen=True)
class PathNodes:
    """Which bodies a path may pass through: those the intermediate criteria admit (``criteria``: SQL
    over the alias ``n``), and its two ends whatever the criteria say. ``neurons_only``: the criteria
    admit only :Neuron bodies (admits_only_neurons)."""

    criteria: str
    ends: tuple[int, ...]
    neurons_only: bool = False

    @property
    def sql(self) -> str:
        ids = ", ".join(str(int(b)) for b in self.ends)
        return f"(({self.criteria}) OR n.bodyId IN ({ids}))"


def admits_only_neurons(criteria) -> bool:
    """True when NeuronCriteria can only match :Neuron bodies whatever their label says: they ask
    for statuses that make a body a :Neuron."""
    return bool(criteria.status) and all(isinstance(s, str) and s in NEURON_STATUSES for s in criteria.status)


def _library_graph(client, min_weight: int, nodes: PathNodes, timeout: float) -> ConnectionGraph:
    cur = client.cursor()
    check_deadline = _deadline_check(timeout)

    def run_sql(sql, tables=None):
        with registered_tables(cur, tables or {}):  # the graph named them uniquely
            return cur.execute(sql).fetchall()

    def fetch_columns(sql, tables):
        with registered_tables(cur, tables):
            return cur.execute(sql).fetchnumpy()

    # The ends are :Neuron (_are_neurons), so nothing but neurons is ever reached.
    neuron_tables = nodes.neurons_only and client.store.has_table("neuron_connections")
    return ConnectionGraph(
        run_sql,
        f"c.weight >= {int(min_weight)}",
        nodes.sql,
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


KEEP_VERDICTS = 16  # the criteria verdicts kept, most recently used last
_verdicts: BuildOnceCache[np.ndarray] = BuildOnceCache(max_entries=lambda: KEEP_VERDICTS)


def _evaluate(client, graph: NeuronGraph, criteria: str) -> np.ndarray:
    sql = f"SELECT n.bodyId FROM neurons n WHERE ({criteria}) IS NOT TRUE"
    refused, found = graph.positions(client.cursor().execute(sql).fetchnumpy()["bodyId"])
    admitted = np.ones(len(graph.body_ids), dtype=bool)
    admitted[refused[found]] = False
    admitted.flags.writeable = False
    return admitted


def _admitted(client, graph: NeuronGraph, criteria: str) -> np.ndarray:
    """Whether the criteria (SQL over ``neurons``, alias ``n``) admit each neuron of the graph; read once
    per store and criteria and kept (the search admits its ends anyway, so one verdict serves every
    pair of ends)."""
    key = (*store_key(client.store), len(graph.body_ids), criteria)
    return _verdicts.get(key, lambda: _evaluate(client, graph, criteria))


def _deadline_check(timeout: float):
    deadline = time.monotonic() + (timeout if timeout else float("inf"))

    def check_deadline():
        if time.monotonic() > deadline:
            raise _SearchTimeout

    return check_deadline


def all_shortest_paths(client, src: int, dst: int, min_weight: int, nodes: PathNodes, timeout: float):
    """Every shortest path src -> dst as (bodies, weights), sorted; [] when none or past the timeout.
    When ``nodes`` admit only :Neuron bodies besides the ends and both ends are neurons, the search
    runs over the neuron graph in RAM (its build, once, is not timed)."""
    if nodes.neurons_only and USE_NEURON_GRAPH and has_neuron_graph(client.store):
        graph = neuron_graph(client.store)
        ends, inside = graph.positions([src, dst])
        if inside.all():  # both ends are neurons (else the answer below: none, or an unknown body)
            check_deadline = _deadline_check(timeout)
            try:
                admitted = _admitted(client, graph, nodes.criteria)
                return neuron_shortest_paths(graph, int(ends[0]), int(ends[1]), min_weight, admitted, check_deadline)
            except _SearchTimeout:
                return []
    if not _are_neurons(client, src, dst):
        return []
    try:
        found = shortest_paths(_library_graph(client, min_weight, nodes, timeout), src, dst)
    except _SearchTimeout:
        return []
    return sorted((nodes, [edge[2] for edge in edges]) for nodes, edges in found)


def paths_up_to(
    client,
    src: int,
    dst: int,
    min_weight: int,
    nodes: PathNodes,
    length: int,
    exact: bool,
    timeout: float,
):
    """Paths src -> dst with exactly ``length`` (or 1..length) connections, no connection used twice;
    shortest first. [] past the timeout, like neuPrint."""
    if not _are_neurons(client, src, dst):
        return []
    try:
        found = bounded_paths(
            _library_graph(client, min_weight, nodes, timeout),
            {src},
            {dst},
            length if exact else 1,
            length,
        )
    except _SearchTimeout:
        return []
    paths = [(nodes, [edge[2] for edge in edges]) for nodes, edges in found]
    return sorted(paths, key=lambda p: (len(p[0]), p))
