"""The Cypher engine's allShortestPaths / shortestPath among neurons answered from the neuron graph in
RAM (flatprint.cypher.neuronpaths): the same rows, in the same order, as the SQL search (the switch
off), and both the paths networkx finds on the raw feathers, over many random pairs of neurons and
weight thresholds (ties, no path, the same start and end); filters that admit a body that is not a
:Neuron take the SQL search, as do ends that are not neurons."""

from __future__ import annotations

import time

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from oracle import load
from test_path_search import oracle_paths
from test_query_neurons import oracle_neurons

from flatprint.cypher import matching, neuronpaths
from flatprint.cypher.engine import execute
from flatprint.store import graph as graph_module
from flatprint.store.graph import ConnectionGraph, neuron_path_layers, shortest_paths
from flatprint.store.neurongraph import NeuronGraph, neuron_graph
from flatprint.store.sql import registered_tables

NEUPRINT_NODES = "n.status = 'Traced' OR n.bodyId in [{src}, {dst}]"


def cypher(
    src, dst, min_weight, *, nodes=NEUPRINT_NODES, shortest="allShortestPaths", arrow="-[:ConnectsTo*]->", box=5000
):
    """neuprint-python's fetch_shortest_paths query (its shape, with the filters given)."""
    where = [f"ALL (x in relationships(p) WHERE x.weight >= {min_weight})"] if min_weight is not None else []
    if nodes:
        where.append(f"ALL (n in nodes(p) WHERE {nodes.format(src=src, dst=dst)})")
    where_text = f"WHERE {' AND '.join(where)}" if where else ""
    inner = f"""
        MATCH (src :Neuron {{ bodyId: {src} }}),
               (dest:Neuron {{ bodyId: {dst} }}),
               p = {shortest}((src){arrow}(dest))
        {where_text}
        RETURN [n in nodes(p) | [n.bodyId, n.type]] AS path,
               [x in relationships(p) | x.weight] AS weights
    """
    return (
        f'CALL apoc.cypher.runTimeboxed("{inner}", {{}}, {box}) YIELD value '
        "RETURN value.path as path, value.weights AS weights"
    )


@pytest.fixture(scope="module")
def bodies(release_dir):
    return oracle_neurons(release_dir).set_index("bodyId")


@pytest.fixture(scope="module")
def weights(release_dir):
    return load(release_dir, "weights")


@pytest.fixture(scope="module")
def graph(store):
    return neuron_graph(store)


class Searches:
    """Counts of the searches that ran: over the neuron graph, and through SQL."""

    def __init__(self, monkeypatch):
        self.graph = self.sql = 0
        original_sql, original_graph = matching.all_shortest_paths, neuronpaths.NeuronPathSearch.all_shortest_paths

        def sql(*args, **kwargs):
            self.sql += 1
            return original_sql(*args, **kwargs)

        def in_ram(*args, **kwargs):
            found = original_graph(*args, **kwargs)
            self.graph += found is not None
            return found

        monkeypatch.setattr(matching, "all_shortest_paths", sql)
        monkeypatch.setattr(neuronpaths.NeuronPathSearch, "all_shortest_paths", in_ram)


@pytest.fixture
def searches(monkeypatch, graph):
    return Searches(monkeypatch)


def both_ways(store, text, monkeypatch, searches, *, via_graph=True):
    """The rows with the neuron graph and with the switch off; checks which search answered."""
    monkeypatch.setattr(neuronpaths, "USE_NEURON_GRAPH", True)
    before = searches.graph, searches.sql
    with_graph = execute(store, text).data
    used_graph = searches.graph > before[0] and searches.sql == before[1]
    assert used_graph == via_graph, text
    monkeypatch.setattr(neuronpaths, "USE_NEURON_GRAPH", False)
    graph_count = searches.graph
    without = execute(store, text).data
    assert searches.graph == graph_count
    monkeypatch.setattr(neuronpaths, "USE_NEURON_GRAPH", True)
    return with_graph, without


def random_pairs(bodies, count, seed):
    rng = np.random.default_rng(seed)
    neurons = np.sort(bodies.index[bodies.is_neuron].to_numpy())
    picked = rng.choice(neurons, size=(count, 2))
    picked[:2, 1] = picked[:2, 0]
    return [(int(a), int(b)) for a, b in picked]


_STRENGTHS: dict = {}


def _strengths(weights) -> dict:
    """(pre, post) -> weight of the release's connections (built once per table)."""
    if id(weights) not in _STRENGTHS:
        pairs = zip(weights.body_pre.tolist(), weights.body_post.tolist())
        _STRENGTHS[id(weights)] = dict(zip(pairs, weights.weight.tolist()))
    return _STRENGTHS[id(weights)]


def check_rows(rows, want, bodies, weights):
    """Rows hold exactly networkx's paths, each body's type and each connection's weight."""
    assert sorted([b for b, _ in path] for path, _ in rows) == want
    strength = _strengths(weights)
    types = {b: t if isinstance(t, str) else None for b, t in bodies.type.items()}
    for path, path_weights in rows:
        ids = [b for b, _ in path]
        assert [t for _, t in path] == [types[b] for b in ids]
        assert path_weights == [int(strength[(a, b)]) for a, b in zip(ids, ids[1:])]


@pytest.mark.parametrize("min_weight", [1, 3, 5, 8])
def test_graph_and_sql_agree_with_networkx(store, bodies, weights, min_weight, monkeypatch, searches):
    traced = set(bodies.index[bodies.status == "Traced"])
    lengths, ties = [], 0
    for src, dst in random_pairs(bodies, 30, seed=min_weight):
        with_graph, without = both_ways(store, cypher(src, dst, min_weight), monkeypatch, searches)
        assert with_graph == without, (src, dst)
        want = oracle_paths(weights, min_weight, traced, src, dst) if src != dst else []
        check_rows(with_graph, want, bodies, weights)
        lengths.append(len(want[0]) - 1 if want else 0)
        ties += len(want) > 1
    assert 0 in lengths and max(lengths) >= 2 and ties, (lengths, ties)


def tie_pairs(bodies, weights, min_weight, count):
    """Pairs of neurons with several shortest paths among Traced intermediates (networkx)."""
    traced = set(bodies.index[bodies.status == "Traced"])
    found = []
    for src, dst in random_pairs(bodies, 400, seed=99):
        if src != dst and len(oracle_paths(weights, min_weight, traced, src, dst)) > 2:
            found.append((src, dst))
            if len(found) == count:
                break
    assert found
    return found


def test_order_shortest_path_directions_and_hops(store, bodies, weights, monkeypatch, searches):
    """Ties in the SQL search's order; shortestPath its first; the pattern written right to left;
    an upper bound on the hops; each the same rows both ways."""
    for src, dst in tie_pairs(bodies, weights, 1, 6):
        texts = [
            cypher(src, dst, 1),
            cypher(src, dst, 1, shortest="shortestPath"),
            cypher(dst, src, 1, arrow="<-[:ConnectsTo*]-"),
            cypher(src, dst, None),
            cypher(src, dst, 1, arrow="-[:ConnectsTo*..2]->"),
            cypher(src, dst, 1, arrow="-[:ConnectsTo*..1]->"),
            # whole nodes and relationships (the nodes' maps loaded after the search)
            cypher(src, dst, 1).replace("[n in nodes(p) | [n.bodyId, n.type]] AS path", "p AS path"),
        ]
        for text in texts:
            with_graph, without = both_ways(store, text, monkeypatch, searches)
            assert with_graph == without, text
        ties = execute(store, texts[0]).data
        assert len(ties) > 2 and len(execute(store, texts[1]).data) == 1
        assert execute(store, texts[5]).data == []  # a tie of one hop is no tie


def test_paths_past_max_paths(store, bodies, weights, monkeypatch, searches):
    """Past MAX_PATHS both searches keep the same first paths."""
    monkeypatch.setattr(graph_module, "MAX_PATHS", 2)
    for src, dst in tie_pairs(bodies, weights, 1, 4):
        with_graph, without = both_ways(store, cypher(src, dst, 1), monkeypatch, searches)
        assert len(with_graph) == 2 and with_graph == without


def test_intermediate_criteria_shape(store, bodies, monkeypatch, searches):
    """neuprint-python's intermediate_criteria shape (status AND an ROI flag) and a status list."""
    shapes = [
        "n.status = 'Traced' AND (n.FB) OR n.bodyId in [{src}, {dst}]",
        "n.status IN ['Traced', 'Anchor'] OR n.bodyId = {src} OR n.bodyId = {dst}",
        "n:Neuron",
    ]
    answered = 0
    for shape in shapes:
        for src, dst in random_pairs(bodies, 15, seed=7):
            with_graph, without = both_ways(store, cypher(src, dst, 1, nodes=shape), monkeypatch, searches)
            assert with_graph == without, (shape, src, dst)
            answered += bool(with_graph)
    assert answered


def non_neuron_pairs(bodies, weights):
    """Pairs of neurons joined through a non-neuron with no direct connection (as test_path_search)."""
    neurons = set(bodies.index[bodies.is_neuron])
    into = weights[weights.body_pre.isin(neurons) & ~weights.body_post.isin(neurons)]
    out = weights[~weights.body_pre.isin(neurons) & weights.body_post.isin(neurons)]
    two = into.merge(out, left_on="body_post", right_on="body_pre", suffixes=("", "_next"))
    direct = set(zip(weights.body_pre, weights.body_post))
    found = sorted({(a, m, b) for a, m, b in zip(two.body_pre, two.body_post, two.body_post_next) if a != b})
    found = [(a, m, b) for a, m, b in found if (a, b) not in direct]
    assert found
    return found[:: max(1, len(found) // 5)][:5]


def test_filters_admitting_non_neurons_take_the_sql_search(store, bodies, weights, monkeypatch, searches):
    """No node filter, a status that is no neuron's, a listed non-neuron: the SQL search answers
    (the neuron graph would miss the paths through the non-neuron)."""
    everyone = set(bodies.index)
    traced = set(bodies.index[bodies.status == "Traced"])
    checked = 0
    for src, middle, dst in non_neuron_pairs(bodies, weights):
        status = bodies.status[middle]
        shapes = [
            (None, everyone),
            ("n.status = 'Traced' OR n.bodyId in [{src}, {dst}, " + str(middle) + "]", traced | {middle}),
        ]
        if isinstance(status, str):
            same_status = set(bodies.index[bodies.status == status])
            shapes.append(
                (
                    f"n.status = 'Traced' OR n.status = '{status}' OR n.bodyId in [{{src}}, {{dst}}]",
                    traced | same_status,
                )
            )
        for nodes, allowed in shapes:
            text = cypher(src, dst, 1, nodes=nodes)
            with_graph, without = both_ways(store, text, monkeypatch, searches, via_graph=False)
            assert with_graph == without
            want = oracle_paths(weights, 1, allowed, src, dst)
            check_rows(with_graph, want, bodies, weights)
            assert any(middle in p for p in want)  # the neuron graph could not have found these
            checked += 1
    assert checked >= 10


def test_non_neuron_end_takes_the_sql_search(store, bodies, weights, monkeypatch, searches):
    neurons = set(bodies.index[bodies.is_neuron])
    w = weights[weights.weight >= 1]
    edge = w[~w.body_pre.isin(neurons) & w.body_post.isin(neurons)].iloc[0]
    src, dst = int(edge.body_pre), int(edge.body_post)
    text = cypher(src, dst, 1, nodes="n.status = 'Traced' OR n.bodyId in [{src}, {dst}]").replace(":Neuron", "")
    with_graph, without = both_ways(store, text, monkeypatch, searches, via_graph=False)
    assert with_graph == without and [[b for b, _ in p] for p, _ in with_graph] == [[src, dst]]


def test_without_a_built_graph_the_sql_search_runs(store, bodies, monkeypatch, searches):
    monkeypatch.setattr(neuronpaths, "kept_neuron_graph", lambda s: None)
    src, dst = random_pairs(bodies, 3, seed=1)[2]
    with_graph, without = both_ways(store, cypher(src, dst, 1), monkeypatch, searches, via_graph=False)
    assert with_graph == without


def test_time_box_over_the_graph_search(store, bodies, weights, monkeypatch, searches):
    """A graph search past runTimeboxed's time box yields nothing, as Neo4j does."""
    src, dst = tie_pairs(bodies, weights, 1, 1)[0]
    assert execute(store, cypher(src, dst, 1)).data
    layers = neuronpaths.neuron_path_layers

    def slow(*args, **kwargs):
        time.sleep(1.1)  # past the box below: the search's first deadline check stops it
        return layers(*args, **kwargs)

    monkeypatch.setattr(neuronpaths, "neuron_path_layers", slow)
    assert execute(store, cypher(src, dst, 1, box=1000)).data == []


def test_comparisons_catch_wrong_answers(store, bodies, weights, monkeypatch, searches):
    """The checks above fail on a reordered tie list and on a path the filter should have kept out."""
    src, dst = tie_pairs(bodies, weights, 1, 1)[0]
    rows = execute(store, cypher(src, dst, 1)).data
    assert rows[::-1] != rows
    traced = set(bodies.index[bodies.status == "Traced"])
    with pytest.raises(AssertionError):
        check_rows(rows[1:], oracle_paths(weights, 1, traced, src, dst), bodies, weights)


# ------------------------------------------------------------------ the order of the paths, on small random graphs
def small_graph(rng, n, m) -> NeuronGraph:
    """A NeuronGraph of n neurons and m random pairs (no ROI rows)."""
    ids = np.sort(rng.choice(np.arange(1000, 1000 + 5 * n), n, replace=False)).astype(np.int64)
    pairs = set()
    while len(pairs) < m:
        a, b = (int(x) for x in rng.integers(0, n, 2))
        if a != b:
            pairs.add((a, b))
    pre, post = (np.array(side, dtype=np.int32) for side in zip(*sorted(pairs)))
    by_post = np.argsort(post, kind="stable").astype(np.int32)
    none = np.zeros(0, dtype=np.int32)
    return NeuronGraph(
        body_ids=ids,
        pre=pre,
        post=post,
        weight=rng.integers(1, 4, m).astype(np.int32),
        weight_hp=rng.integers(0, 6, m).astype(np.int32),
        pre_offsets=np.searchsorted(pre, np.arange(n + 1)).astype(np.int32),
        by_post=by_post,
        post_offsets=np.searchsorted(post[by_post], np.arange(n + 1)).astype(np.int32),
        roi_offsets=np.zeros(m + 1, dtype=np.int32),
        roi_code=none.astype(np.int16),
        roi_weight=none,
        roi_pre=none,
        roi_names=np.array([], dtype=object),
    )


def sql_search_over(graph: NeuronGraph, admitted: np.ndarray):
    """run_sql over the tables the SQL search reads, holding the graph's pairs and bodies."""
    con = duckdb.connect()
    ids = graph.body_ids
    edges = pa.table(
        {
            "body_pre": ids[graph.pre],
            "body_post": ids[graph.post],
            "weight": graph.weight.astype(np.int64),
            "weight_hp": graph.weight_hp.astype(np.int64),
        }
    )
    with registered_tables(con, {"edges": edges, "bodies": pa.table({"bodyId": ids, "ok": admitted})}):
        con.execute("CREATE TABLE connections AS SELECT * FROM edges ORDER BY body_pre, body_post")
        con.execute("CREATE TABLE connections_by_post AS SELECT * FROM edges ORDER BY body_post, body_pre")
        con.execute("CREATE TABLE segments AS SELECT * FROM bodies")

    def run_sql(sql, tables=None):
        with registered_tables(con, tables or {}):
            return con.execute(sql).fetchall()

    return run_sql


@pytest.mark.parametrize("max_paths", [2, 5, graph_module.MAX_PATHS])
def test_graph_paths_come_in_the_sql_search_order(max_paths, monkeypatch):
    """On small random graphs (many ties) the neuron graph's paths are the SQL search's, in its
    order (by the body where the two sides met, then back to the source, then on to the target),
    and past MAX_PATHS the same first ones."""
    monkeypatch.setattr(graph_module, "MAX_PATHS", max_paths)
    rng = np.random.default_rng(max_paths)
    compared, ties, cut = 0, 0, 0
    for _ in range(12):
        n = int(rng.integers(8, 30))
        graph = small_graph(rng, n, int(rng.integers(2 * n, 4 * n)))
        admitted = rng.random(n) < 0.8
        run_sql = sql_search_over(graph, admitted)
        for _ in range(10):
            source, target = (int(x) for x in rng.integers(0, n, 2))
            min_weight = int(rng.integers(1, 3))
            ends = f"{graph.body_ids[source]}, {graph.body_ids[target]}"
            search = ConnectionGraph(run_sql, f"c.weight >= {min_weight}", f"(n.ok OR n.bodyId IN ({ends}))")
            want = shortest_paths(search, int(graph.body_ids[source]), int(graph.body_ids[target]))
            want = [(nodes, [tuple(edge) for edge in edges]) for nodes, edges in want]
            layers = neuron_path_layers(graph, source, target, min_weight, admitted)
            got = [] if layers is None else neuronpaths._ordered_paths(graph, source, *layers, lambda: None)
            assert got == want, (source, target, min_weight)
            compared += 1
            ties += len(want) > 1
            cut += len(want) == max_paths
    assert compared == 120 and ties >= 5 and (cut or max_paths == graph_module.MAX_PATHS), (ties, cut)


def test_neuron_ends_are_found_in_ram(store, bodies, weights, monkeypatch, searches):
    """``(src:Neuron {bodyId: ...})`` ends come from the neuron graph's bodies (no fixed match in
    SQL); an end's other properties load when read; a :Neuron end that is no neuron matches nothing,
    a :Segment end that is no neuron takes SQL; each the same rows as with the switch off."""
    fixed = []
    original = matching.MatchExecution.match_fixed

    def spy(self, *args, **kwargs):
        fixed.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matching.MatchExecution, "match_fixed", spy)
    neurons = set(bodies.index[bodies.is_neuron])
    src, dst = random_pairs(bodies, 6, seed=5)[4]
    other = int(bodies.index[~bodies.is_neuron][0])
    ends_read = (
        cypher(src, dst, 1)
        .replace("RETURN [n in", "RETURN src.type AS src_type, dest.instance AS dest_instance, [n in")
        .replace("RETURN value.path", "RETURN value.src_type, value.dest_instance, value.path")
    )
    kinds = {b: None if isinstance(v, float) else v for b, v in bodies.type.items()}
    instances = {b: None if isinstance(v, float) else v for b, v in bodies.instance.items()}
    for text, in_ram, via_graph in [
        (cypher(src, dst, 1), True, True),
        (ends_read, True, True),
        (cypher(src, dst, 1).replace(":Neuron", ":Segment"), True, True),
        (cypher(src, other, 1), True, False),  # no such :Neuron: no rows, no search
        (cypher(src, other, 1).replace("(dest:Neuron", "(dest:Segment"), False, False),
        (cypher(src, dst, 1).replace("(src :Neuron", "(src"), False, True),  # no label: SQL
    ]:
        fixed.clear()
        with_graph, without = both_ways(store, text, monkeypatch, searches, via_graph=via_graph)
        assert with_graph == without, text
        assert fixed == ([] if in_ram else [1]) + [1], text  # the switch off: SQL once
        if text is ends_read:
            assert with_graph and all(row[:2] == [kinds[src], instances[dst]] for row in with_graph)
        if text == cypher(src, other, 1):
            assert with_graph == []
    assert src in neurons and dst in neurons


def test_neuron_label_of_path_nodes(store, bodies, monkeypatch, searches):
    """``n:Neuron`` on a path's nodes is the oracle's is_neuron with either search: it was false for
    every node (their property maps do not hold the flag), so ``ALL(n IN nodes(p) WHERE n:Neuron)``
    found no path at all."""
    labelled = filtered = 0
    for src, dst in random_pairs(bodies, 15, seed=7)[2:]:
        plain = cypher(src, dst, 1, nodes=None).replace("[n.bodyId, n.type]", "[n.bodyId, n:Neuron]")
        only_neurons = cypher(src, dst, 1, nodes="n:Neuron").replace("[n.bodyId, n.type]", "[n.bodyId, n:Neuron]")
        for use in (True, False):
            monkeypatch.setattr(neuronpaths, "USE_NEURON_GRAPH", use)
            for path, _ in execute(store, plain).data:
                assert [flag for _, flag in path] == [bool(bodies.is_neuron[body]) for body, _ in path]
                labelled += 1
            for path, _ in execute(store, only_neurons).data:
                assert all(flag and bodies.is_neuron[body] for body, flag in path)
                filtered += 1
    assert labelled and filtered


def test_ends_the_node_filter_refuses(store, bodies, monkeypatch, searches):
    """The neuron graph's search admits any ends; a node filter an end fails leaves no path (the
    filter is evaluated on the paths found unless both ends pass it)."""
    neurons = bodies[bodies.is_neuron]
    untraced = neurons.index[neurons.status != "Traced"]
    traced = neurons.index[neurons.status == "Traced"]
    assert len(untraced) and len(traced)
    checked = 0
    for src in untraced[:5]:
        for dst in traced[:20]:
            src, dst = int(src), int(dst)
            unfiltered = execute(store, cypher(src, dst, 1, nodes=None)).data
            if not unfiltered:
                continue
            text = cypher(src, dst, 1, nodes="n.status = 'Traced'")
            with_graph, without = both_ways(store, text, monkeypatch, searches)
            assert with_graph == without == []
            checked += 1
    assert checked


def test_path_ends_named_by_head_and_last(store, bodies):
    """``head(nodes(p))`` / ``last(nodes(p))`` in the WHERE are the pattern's ends (rewritten to them):
    an end given only so is constrained (the same paths as given in the pattern), and a condition
    the ends fail keeps no path."""
    checked = 0
    for src, dst in random_pairs(bodies, 15, seed=11)[2:]:
        paths = "p = allShortestPaths((src)-[:ConnectsTo*]->(dest))"
        found = "RETURN [n IN nodes(p) | n.bodyId] AS path"
        plain = execute(
            store, f"MATCH (src:Neuron {{bodyId: {src}}}), (dest:Neuron {{bodyId: {dst}}}), {paths} {found}"
        ).data
        if not plain:
            continue
        assert all(path[0] == src and path[-1] == dst for (path,) in plain)
        by_last = f"MATCH (src:Neuron {{bodyId: {src}}}), {paths} WHERE last(nodes(p)).bodyId = {dst} {found}"
        assert execute(store, by_last).data == plain
        by_head = f"MATCH (dest:Neuron {{bodyId: {dst}}}), {paths} WHERE head(nodes(p)).bodyId = {src} {found}"
        assert execute(store, by_head).data == plain
        fails = by_last.replace(f"WHERE last(nodes(p)).bodyId = {dst}", f"WHERE last(nodes(p)).bodyId = {src}")
        assert execute(store, fails).data == []
        checked += 1
    assert checked
