"""Shortest-path search (flatprint.store.graph) against networkx on the raw feathers: the library's
fetch_shortest_paths over many end pairs and filters (over the neuron graph in RAM when the
intermediates are neurons, and through SQL), and the search over the neuron-only tables with end
points that are not :Neuron bodies."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from oracle import load
from test_query_neurons import oracle_neurons

import flatprint
from flatprint import NeuronCriteria as NC
from flatprint.errors import QueryError
from flatprint.query import paths as paths_module
from flatprint.query.paths import _are_neurons as are_neurons
from flatprint.store import graph as graph_module
from flatprint.store.cache import BuildOnceCache
from flatprint.store.graph import IN_LIST_MOST, ConnectionGraph, shortest_paths
from flatprint.store.sql import registered_tables


@pytest.fixture(scope="module")
def bodies(release_dir):
    return oracle_neurons(release_dir).set_index("bodyId")


@pytest.fixture(scope="module")
def weights(release_dir):
    return load(release_dir, "weights")


_ORACLE: dict = {}


def _connections(weights, min_weight):
    """(pre, post) of the connections of weight >= min_weight, and each sorted by pre and by post."""
    key = ("connections", id(weights), min_weight)
    if key not in _ORACLE:
        w = weights[weights.weight >= min_weight]
        pre, post = w.body_pre.to_numpy(), w.body_post.to_numpy()
        by_pre, by_post = np.argsort(pre, kind="stable"), np.argsort(post, kind="stable")
        _ORACLE[key] = (pre, post, (pre[by_pre], post[by_pre]), (post[by_post], pre[by_post]))
    return _ORACLE[key]


def _neighbours(index, body) -> list[int]:
    keys, others = index
    first, last = np.searchsorted(keys, [body, body + 1])
    return others[first:last].tolist()


def oracle_paths(weights, min_weight, allowed, src, dst) -> list[list[int]]:
    """Every shortest src -> dst path whose intermediates are in ``allowed`` (networkx): over the
    connections between allowed bodies (a graph kept per allowed set) plus, for this search, src's
    connections out and dst's in (a shortest path never enters src or leaves dst)."""
    pre, post, outgoing, incoming = _connections(weights, min_weight)
    key = ("graph", id(weights), min_weight, frozenset(allowed))
    if key not in _ORACLE:
        ids = np.fromiter(allowed, dtype=np.int64)
        inside = np.isin(pre, ids) & np.isin(post, ids)
        _ORACLE[key] = nx.DiGraph(list(zip(pre[inside].tolist(), post[inside].tolist())))
    g = _ORACLE[key]
    ends = {
        *((src, b) for b in _neighbours(outgoing, src) if b in allowed or b == dst),
        *((a, dst) for a in _neighbours(incoming, dst) if a in allowed or a == src),
    }
    added_nodes = [b for b in (src, dst) if b not in g]
    added_edges = [e for e in ends if not g.has_edge(*e)]
    g.add_edges_from(added_edges)
    try:
        return sorted(list(p) for p in nx.all_shortest_paths(g, src, dst))
    except (nx.NetworkXNoPath, nx.NodeNotFound):
        return []
    finally:
        g.remove_edges_from(added_edges)
        g.remove_nodes_from(b for b in added_nodes if b in g)


def got_paths(df) -> list[list[int]]:
    return sorted(grp.bodyId.tolist() for _, grp in df.groupby("path"))


def check_weights(df, weights):
    key = ("strength", id(weights))
    if key not in _ORACLE:
        _ORACLE[key] = dict(zip(zip(weights.body_pre.tolist(), weights.body_post.tolist()), weights.weight.tolist()))
    strength = _ORACLE[key]
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
    monkeypatch.setattr(paths_module, "USE_NEURON_GRAPH", False)  # SQL (the graph in RAM: below)
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
@pytest.mark.parametrize("use_graph", [True, False])
def test_shortest_paths_status_criteria(client, bodies, weights, criteria, admitted, use_graph, monkeypatch):
    monkeypatch.setattr(paths_module, "USE_NEURON_GRAPH", use_graph)
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


# ------------------------------------------------------------------ shortest paths over the neuron graph in RAM
def random_pairs(bodies, count, seed):
    """``count`` random (start, end) pairs of :Neuron bodies, a few with start == end."""
    rng = np.random.default_rng(seed)
    neurons = np.sort(bodies.index[bodies.is_neuron].to_numpy())
    picked = rng.choice(neurons, size=(count, 2))
    picked[:3, 1] = picked[:3, 0]
    return [(int(a), int(b)) for a, b in picked]


@pytest.fixture
def graph_only(monkeypatch):
    """The searches must answer from the neuron graph: the SQL search fails the test if it runs."""

    def no_sql(*args, **kwargs):
        raise AssertionError("the shortest-path search ran through SQL")

    monkeypatch.setattr(paths_module, "USE_NEURON_GRAPH", True)
    monkeypatch.setattr(paths_module, "shortest_paths", no_sql)
    monkeypatch.setattr(paths_module, "_are_neurons", no_sql)


def check_against_networkx(got, want, weights):
    """got (a fetch_shortest_paths frame) holds exactly networkx's paths (``want``), numbered 0.. in
    sorted order, each body's weight the connection into it (0 for the first)."""
    assert got_paths(got) == want
    assert got.path.tolist() == [i for i, p in enumerate(want) for _ in p]
    assert got.bodyId.tolist() == [b for p in want for b in p]
    check_weights(got, weights)


@pytest.mark.parametrize("min_weight", [1, 2, 3, 5, 8])
def test_graph_search_random_pairs(client, bodies, weights, min_weight, graph_only):
    """The neuron-graph search against networkx for many random pairs (no path, same start and end,
    ties) with the default intermediates (status Traced)."""
    traced = set(bodies.index[bodies.status == "Traced"])
    lengths, ties = [], 0
    for src, dst in random_pairs(bodies, 40, seed=min_weight):
        got = flatprint.fetch_shortest_paths(src, dst, min_weight=min_weight, client=client)
        if src == dst:  # a path needs at least one connection
            assert len(got) == 0 and list(got.columns) == ["path", "bodyId", "type", "weight"]
            continue
        want = oracle_paths(weights, min_weight, traced, src, dst)
        check_against_networkx(got, want, weights)
        types = bodies.type.where(bodies.type.notna(), None)
        assert got.type.tolist() == [types[b] for b in got.bodyId]
        lengths.append(len(want[0]) - 1 if want else 0)
        ties += len(want) > 1
    assert 0 in lengths and max(lengths) >= 3 and ties, (lengths, ties)


@pytest.mark.parametrize(
    "criteria, admitted",
    [
        (NC(status=["Traced", "Anchor"]), lambda b: b.status.isin(["Traced", "Anchor"])),
        (NC(status="Traced", somaSide="L"), lambda b: (b.status == "Traced") & (b.somaSide == "L")),
        (NC(status="Traced", type="no such type"), lambda b: b.status != b.status),
    ],
)
def test_graph_search_intermediate_criteria(client, bodies, weights, criteria, admitted, graph_only):
    allowed = set(bodies.index[admitted(bodies)])
    found = 0
    for src, dst in random_pairs(bodies, 30, seed=7)[3:]:
        want = oracle_paths(weights, 2, allowed, src, dst)
        got = flatprint.fetch_shortest_paths(src, dst, min_weight=2, intermediate_criteria=criteria, client=client)
        check_against_networkx(got, want, weights)
        found += bool(want)
    assert found


def test_graph_and_sql_searches_agree(client, bodies, monkeypatch):
    """The same frames (paths, order, columns, dtypes) from the neuron graph and from SQL."""
    answers = {}
    for use_graph in (True, False):
        monkeypatch.setattr(paths_module, "USE_NEURON_GRAPH", use_graph)
        answers[use_graph] = [
            flatprint.fetch_shortest_paths(src, dst, min_weight=w, client=client)
            for w in (1, 4)
            for src, dst in random_pairs(bodies, 25, seed=100 + w)
        ]
    assert sum(len(df) > 0 for df in answers[True]) > 10
    for by_graph, by_sql in zip(answers[True], answers[False]):
        pd.testing.assert_frame_equal(by_graph, by_sql)


def test_graph_search_keeps_the_first_paths(client, bodies, weights, monkeypatch, graph_only):
    """Past MAX_PATHS the graph search answers the first MAX_PATHS paths in sorted order."""
    traced = set(bodies.index[bodies.status == "Traced"])
    many = [
        (p, want) for p in random_pairs(bodies, 60, seed=3) if len(want := oracle_paths(weights, 1, traced, *p)) > 3
    ]
    assert many
    (src, dst), want = max(many, key=lambda m: len(m[1]))
    for most in (1, 2, len(want) - 1, len(want)):
        monkeypatch.setattr(graph_module, "MAX_PATHS", most)
        got = flatprint.fetch_shortest_paths(src, dst, min_weight=1, client=client)
        assert got_paths(got) == want[:most]


def test_graph_search_timeout_and_non_neuron_ends(client, bodies, weights, graph_only, monkeypatch):
    traced = set(bodies.index[bodies.status == "Traced"])
    src, dst = next(p for p in random_pairs(bodies, 40, seed=5)[3:] if oracle_paths(weights, 1, traced, *p))
    assert len(flatprint.fetch_shortest_paths(src, dst, timeout=1e-9, client=client)) == 0  # past it: no paths
    assert len(flatprint.fetch_shortest_paths(src, dst, timeout=60, client=client))
    # an end that is no neuron leaves the graph: SQL tells "no path" or names the unknown body
    monkeypatch.setattr(paths_module, "_are_neurons", are_neurons)
    segment = int(bodies.index[~bodies.is_neuron][0])
    assert len(flatprint.fetch_shortest_paths(src, segment, client=client)) == 0
    with pytest.raises(QueryError, match="body 1 is not in this dataset"):
        flatprint.fetch_shortest_paths(src, 1, client=client)


def test_comparisons_catch_mutated_answers(client, bodies, weights):
    """The checks above fail on an answer with a path dropped, a body changed or a weight changed."""
    traced = set(bodies.index[bodies.status == "Traced"])
    src, dst, want = next(
        (a, b, want)
        for a, b in random_pairs(bodies, 60, seed=3)[3:]
        if len(want := oracle_paths(weights, 1, traced, a, b)) > 1 and len(want[0]) > 2
    )
    got = flatprint.fetch_shortest_paths(src, dst, min_weight=1, client=client)
    check_against_networkx(got, want, weights)
    dropped = got[got.path != got.path.max()]
    changed_body = got.copy()
    changed_body.loc[1, "bodyId"] = dst
    changed_weight = got.copy()
    changed_weight.loc[1, "weight"] += 1
    for mutated in (dropped, changed_body, changed_weight):
        with pytest.raises(AssertionError):
            check_against_networkx(mutated, want, weights)


def test_criteria_verdicts_are_read_once(client, bodies, weights, graph_only, monkeypatch):
    """The criteria are evaluated over the neurons once per criteria, whatever the ends."""
    monkeypatch.setattr(paths_module, "_verdicts", BuildOnceCache(max_entries=paths_module.KEEP_VERDICTS))
    evaluated = []
    evaluate = paths_module._evaluate
    monkeypatch.setattr(paths_module, "_evaluate", lambda c, g, sql: evaluated.append(sql) or evaluate(c, g, sql))
    left = NC(status="Traced", somaSide="L")
    allowed = set(bodies.index[(bodies.status == "Traced") & (bodies.somaSide == "L")])
    for src, dst in random_pairs(bodies, 10, seed=11)[3:]:
        flatprint.fetch_shortest_paths(src, dst, client=client)
        got = flatprint.fetch_shortest_paths(src, dst, min_weight=2, intermediate_criteria=left, client=client)
        check_against_networkx(got, oracle_paths(weights, 2, allowed, src, dst), weights)
    assert len(evaluated) == 2 and not any("bodyId IN" in sql for sql in evaluated), evaluated
