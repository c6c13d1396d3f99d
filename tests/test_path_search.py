"""Shortest-path search (flatprint.store.graph) against networkx on the raw feathers: the library's
fetch_shortest_paths over many end pairs and filters, and the search over the neuron-only tables
with end points that are not :Neuron bodies."""

from __future__ import annotations

import networkx as nx
import pytest
from oracle import load
from test_query_neurons import oracle_neurons

import flatprint
from flatprint import Client, NeuronCriteria as NC
from flatprint.store import graph as graph_module
from flatprint.store.graph import IN_LIST_MOST, ConnectionGraph, shortest_paths
from flatprint.store.sql import registered_tables


@pytest.fixture(scope="module")
def client(store_path):
    c = Client(store_path)
    yield c
    c.close()


@pytest.fixture(scope="module")
def bodies(release_dir):
    return oracle_neurons(release_dir).set_index("bodyId")


@pytest.fixture(scope="module")
def weights(release_dir):
    return load(release_dir, "weights")


_GRAPHS: dict = {}


def oracle_paths(weights, min_weight, allowed, src, dst) -> list[list[int]]:
    """Every shortest src -> dst path whose intermediates are in ``allowed`` (networkx)."""
    key = (id(weights), min_weight)
    if key not in _GRAPHS:
        w = weights[weights.weight >= min_weight]
        _GRAPHS[key] = nx.DiGraph(list(zip(w.body_pre.tolist(), w.body_post.tolist())))
    g = _GRAPHS[key].subgraph(allowed | {src, dst})
    try:
        return sorted(list(p) for p in nx.all_shortest_paths(g, src, dst))
    except (nx.NetworkXNoPath, nx.NodeNotFound):
        return []


def got_paths(df) -> list[list[int]]:
    return sorted(grp.bodyId.tolist() for _, grp in df.groupby("path"))


def check_weights(df, weights):
    strength = dict(zip(zip(weights.body_pre, weights.body_post), weights.weight))
    for _, grp in df.groupby("path"):
        ids = grp.bodyId.tolist()
        assert grp.weight.tolist() == [0] + [strength[(a, b)] for a, b in zip(ids, ids[1:])]


def end_pairs(bodies, count):
    """Pairs of :Neuron bodies spread over the id range (both directions of some)."""
    neurons = sorted(bodies.index[bodies.is_neuron])
    step = max(1, len(neurons) // count)
    picked = neurons[::step][:count]
    return [(a, b) for a, b in zip(picked, picked[::-1]) if a != b]


def test_traced_bodies_are_neurons(bodies):
    # The search reads the neuron-only tables for status criteria because of this rule.
    assert bodies.is_neuron[bodies.status.isin(["Traced", "Anchor"])].all()


@pytest.mark.parametrize("min_weight", [1, 5, 12])
@pytest.mark.parametrize("in_list_most", [graph_module.IN_LIST_MOST, 2])
def test_shortest_paths_traced_intermediates(client, bodies, weights, min_weight, in_list_most, monkeypatch):
    monkeypatch.setattr(graph_module, "IN_LIST_MOST", in_list_most)  # 2: frontiers as registered tables
    traced = set(bodies.index[bodies.status == "Traced"])
    lengths = []
    for src, dst in end_pairs(bodies, 16):
        want = oracle_paths(weights, min_weight, traced, src, dst)
        got = flatprint.fetch_shortest_paths(src, dst, min_weight=min_weight, client=client)
        assert got_paths(got) == want, (src, dst)
        check_weights(got, weights)
        lengths.append(len(want[0]) - 1 if want else 0)
    # the pairs exercise long paths and missing ones
    assert max(lengths) >= 3 and 0 in lengths, lengths


@pytest.mark.parametrize(
    "criteria, admitted",
    [
        (NC(status=["Traced", "Anchor"]), lambda b: b.status.isin(["Traced", "Anchor"])),
        (NC(status="Traced", somaSide="L"), lambda b: (b.status == "Traced") & (b.somaSide == "L")),
    ],
)
def test_shortest_paths_status_criteria(client, bodies, weights, criteria, admitted):
    allowed = set(bodies.index[admitted(bodies)])
    found = 0
    for src, dst in end_pairs(bodies, 12):
        want = oracle_paths(weights, 3, allowed, src, dst)
        got = flatprint.fetch_shortest_paths(src, dst, min_weight=3, intermediate_criteria=criteria, client=client)
        assert got_paths(got) == want, (src, dst)
        found += bool(want)
    assert found


def test_shortest_paths_through_non_neurons(client, bodies, weights):
    # criteria that admit every body: intermediates that are not :Neuron bodies count. Pairs of
    # neurons joined through a non-neuron (segments' connections are mostly of weight 1) and no edge.
    neurons = set(bodies.index[bodies.is_neuron])
    into = weights[weights.body_pre.isin(neurons) & ~weights.body_post.isin(neurons)]
    out = weights[~weights.body_pre.isin(neurons) & weights.body_post.isin(neurons)]
    two = into.merge(out, left_on="body_post", right_on="body_pre", suffixes=("", "_next"))
    direct = set(zip(weights.body_pre, weights.body_post))
    ends = sorted({(a, b) for a, b in zip(two.body_pre, two.body_post_next) if a != b and (a, b) not in direct})
    assert ends
    everyone = set(bodies.index)
    through_segments = 0
    for src, dst in ends[:: max(1, len(ends) // 6)][:6] + end_pairs(bodies, 6):
        want = oracle_paths(weights, 1, everyone, src, dst)
        got = flatprint.fetch_shortest_paths(src, dst, min_weight=1, intermediate_criteria=NC(), client=client)
        assert got_paths(got) == want, (src, dst)
        through_segments += any(not bodies.is_neuron[b] for p in want for b in p)
    assert through_segments


def test_non_neuron_ends_answer_nothing(client, bodies, weights):
    # neuPrint's query labels both ends :Neuron: a segment end has no path even when the graph has one
    neurons = set(bodies.index[bodies.is_neuron])
    w = weights[weights.weight >= 1]
    edge = w[~w.body_pre.isin(neurons) & w.body_post.isin(neurons)].iloc[0]
    src, dst = int(edge.body_pre), int(edge.body_post)
    assert oracle_paths(weights, 1, set(), src, dst) == [[src, dst]]
    assert len(flatprint.fetch_shortest_paths(src, dst, intermediate_criteria=NC(), client=client)) == 0


def _runners(cur):
    def rows(sql, tables):
        with registered_tables(cur, tables):
            return cur.execute(sql).fetchall()

    def columns(sql, tables):
        with registered_tables(cur, tables):
            return cur.execute(sql).fetchnumpy()

    return rows, columns


def _strongest_non_neurons(bodies, weights, min_weight):
    """A non-neuron with a strong output to a Traced body and one with a strong input from one."""
    traced = set(bodies.index[bodies.status == "Traced"])
    neurons = set(bodies.index[bodies.is_neuron])
    w = weights[weights.weight >= min_weight]
    out = w[~w.body_pre.isin(neurons) & w.body_post.isin(traced)]
    inp = w[w.body_pre.isin(traced) & ~w.body_post.isin(neurons)]
    return out.groupby("body_pre").size().sort_values().index[-6:], inp.groupby("body_post").size().sort_values().index[
        -6:
    ]


@pytest.mark.parametrize("in_list_most", [graph_module.IN_LIST_MOST, 1])
def test_neuron_tables_with_non_neuron_ends(client, bodies, weights, in_list_most, monkeypatch):
    """ConnectionGraph over the neuron-only tables, ends that are not :Neuron bodies (the full tables
    give their first and last hops), against networkx; also a direct edge between two of them."""
    monkeypatch.setattr(graph_module, "IN_LIST_MOST", in_list_most)  # 1: every id list a registered table
    traced = set(bodies.index[bodies.status == "Traced"])
    starts, stops = _strongest_non_neurons(bodies, weights, 1)
    run_rows, run_columns = _runners(client.store.cursor())
    pairs = [(int(a), int(b)) for a in starts for b in stops if a != b]
    non_neurons = set(bodies.index[~bodies.is_neuron])
    w = weights[weights.body_pre.isin(non_neurons) & weights.body_post.isin(non_neurons)]
    direct = w[w.body_pre != w.body_post].sort_values(["body_pre", "body_post"]).iloc[0]
    pairs.append((int(direct.body_pre), int(direct.body_post)))
    lengths = []
    for src, dst in pairs:
        graph = ConnectionGraph(
            run_rows,
            "c.weight >= 1",
            f"(n.status = 'Traced' OR n.bodyId IN ({src}, {dst}))",
            fetch_columns=run_columns,
            neurons_besides=[src, dst],
        )
        want = oracle_paths(weights, 1, traced, src, dst)
        got = sorted(nodes for nodes, _ in shortest_paths(graph, src, dst))
        assert got == want, (src, dst)
        lengths.append(len(want[0]) - 1 if want else 0)
    assert max(lengths) >= 2 and 1 in lengths, lengths


def test_edges_of_neuron_tables_match_full_tables(client, bodies):
    """``expand`` (rows, as the Cypher engine and bounded searches use it) gives the same edges from
    the neuron-only tables as from the full ones when the filter admits only neurons."""
    run, _ = _runners(client.store.cursor())
    traced = sorted(int(b) for b in bodies.index[bodies.status == "Traced"])
    node_filter = "n.status = 'Traced'"
    full = ConnectionGraph(run, "c.weight >= 2", node_filter)
    small = ConnectionGraph(run, "c.weight >= 2", node_filter, neurons_besides=())
    # a few bodies (a constant list) and many (a registered table)
    assert len(traced) > IN_LIST_MOST
    for frontier in (traced[:40], traced):
        for forward in (True, False):
            want = sorted(full.expand(set(frontier), forward))
            assert want and sorted(small.expand(set(frontier), forward)) == want
