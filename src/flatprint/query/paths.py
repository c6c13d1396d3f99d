"""Path search for the library (fetch_shortest_paths, fetch_paths) over the store's connection graph
(flatprint.store.graph), with neuPrint's timeout: a search past it answers no paths."""

from __future__ import annotations

import time

from flatprint.errors import QueryError
from flatprint.store.graph import ConnectionGraph, bounded_paths, shortest_paths
from flatprint.store.sql import registered_tables


class _SearchTimeout(Exception):
    pass


def _library_graph(client, min_weight: int, node_filter: str, timeout: float) -> ConnectionGraph:
    cur = client.cursor()
    deadline = time.monotonic() + (timeout if timeout else float("inf"))

    def run_sql(sql, tables=None):
        with registered_tables(cur, tables or {}):  # the graph named them uniquely
            return cur.execute(sql).fetchall()

    def check_deadline():
        if time.monotonic() > deadline:
            raise _SearchTimeout

    return ConnectionGraph(run_sql, f"c.weight >= {int(min_weight)}", node_filter, check_deadline)


def _are_neurons(client, *bodies: int) -> bool:
    """True when every body is a :Neuron; QueryError naming a body the dataset does not have at all
    (an empty result would read as "no path", e.g. through non-Traced intermediates)."""
    rows = (
        client.cursor()
        .execute(f"SELECT bodyId, is_neuron FROM segments WHERE bodyId IN ({', '.join(map(str, bodies))})")
        .fetchall()
    )
    neuron = {int(b): bool(n) for b, n in rows}
    for body in bodies:
        if body not in neuron:
            raise QueryError(f"body {body} is not in this dataset")
    return all(neuron[b] for b in bodies)


def all_shortest_paths(client, src: int, dst: int, min_weight: int, node_filter: str, timeout: float):
    """Every shortest path src -> dst as (bodies, weights), sorted; [] when none or past the timeout."""
    if not _are_neurons(client, src, dst):
        return []
    try:
        found = shortest_paths(_library_graph(client, min_weight, node_filter, timeout), src, dst)
    except _SearchTimeout:
        return []
    return sorted((nodes, [edge[2] for edge in edges]) for nodes, edges in found)


def paths_up_to(
    client, src: int, dst: int, min_weight: int, node_filter: str, length: int, exact: bool, timeout: float
):
    """Paths src -> dst with exactly ``length`` (or 1..length) connections, no connection used twice;
    shortest first. [] past the timeout, like neuPrint."""
    if not _are_neurons(client, src, dst):
        return []
    try:
        found = bounded_paths(
            _library_graph(client, min_weight, node_filter, timeout), {src}, {dst}, length if exact else 1, length
        )
    except _SearchTimeout:
        return []
    paths = [(nodes, [edge[2] for edge in edges]) for nodes, edges in found]
    return sorted(paths, key=lambda p: (len(p[0]), p))
