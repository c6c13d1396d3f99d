"""Neuron lookups and ConnectsTo between neurons answered from the neuron table and graph in RAM
(cypher/neuronplan.py, cypher/neuronanswers.py): the same answer as SQL, and as pandas on the
raw feathers; no SQL statement when RAM answers; SQL when RAM cannot prove the answer."""

from __future__ import annotations

import json
import math

import numpy as np
import orjson
import pandas as pd
import pytest
from oracle import load, oracle_segments

from flatprint.cypher import ast, engine, neuronanswers, plan
from flatprint.cypher.engine import execute
from flatprint.cypher.plancache import PlanCache
from flatprint.server.http import encode_json
from flatprint.store.neurongraph import neuron_graph
from flatprint.store.neurontable import clear_neuron_table_cache, kept_neuron_table, neuron_table


@pytest.fixture(scope="module")
def segments(release_dir):
    return oracle_segments(release_dir)


@pytest.fixture(scope="module")
def weights(release_dir, segments) -> pd.DataFrame:
    """Neuron-to-neuron weights from connectome-weights (both ends :Neuron)."""
    frame = load(release_dir, "weights")
    neurons = set(segments.index[segments["is_neuron"]])
    frame = frame[frame["body_pre"].isin(neurons) & frame["body_post"].isin(neurons)]
    return frame.set_index(["body_pre", "body_post"]).sort_index()


@pytest.fixture(scope="module")
def built(store):
    neuron_table(store)
    neuron_graph(store)
    return store


def both_ways(store, text, params=None):
    """(answer through SQL, answer from RAM) as the JSON endpoint sends them."""
    try:
        neuronanswers.USE_NEURON_ANSWERS = False
        through_sql = execute(store, text, params=params, plan_cache=False).to_dict()
    finally:
        neuronanswers.USE_NEURON_ANSWERS = True
    return through_sql, execute(store, text, params=params, plan_cache=False).to_dict()


def plain(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def neurons_of(segments, count: int, seed: int = 0) -> list[int]:
    neurons = np.array(sorted(segments.index[segments["is_neuron"]]))
    return sorted(np.random.default_rng(seed).choice(neurons, size=count, replace=False).tolist())


def common_type(segments, rank: int = 0) -> str:
    typed = segments[segments["is_neuron"] & segments["type"].notna()]
    return typed["type"].value_counts().index[rank]


# ---- same answer as SQL, no statement ----------------------------------------------------------


def lookup_queries(segments):
    bodies = neurons_of(segments, 7)
    kind, other = common_type(segments), common_type(segments, 3)
    instance = segments.loc[segments["type"] == kind, "instance"].dropna().iloc[0]
    props = "n.bodyId AS bodyId, n.type AS type, n.instance AS instance, n.pre AS pre, n.somaLocation AS soma"
    mixed = bodies + [int(x) for x in segments.index[segments["type"] == kind][:3]]
    return [
        f"MATCH (n:Neuron) WHERE n.bodyId = {bodies[0]} RETURN {props}",
        f"MATCH (n:Neuron {{bodyId: {bodies[1]}}}) RETURN {props}, n.roiInfo AS roiInfo",
        f"MATCH (n:Neuron) WHERE n.bodyId IN {bodies} RETURN {props} ORDER BY n.bodyId DESC",
        f"MATCH (n:Segment) WHERE n.bodyId IN {bodies} RETURN {props} ORDER BY bodyId SKIP 2 LIMIT 3",
        f"MATCH (n:Neuron) WHERE n.type = '{kind}' OR n.instance = '{kind}' RETURN {props}, n.roiInfo AS r "
        "ORDER BY n.bodyId",
        f"MATCH (n:Neuron) WHERE n.type IN ['{kind}', '{other}'] AND n.bodyId IN {mixed} "
        f"RETURN {props} ORDER BY type, pre DESC",
        f"MATCH (n:Neuron) WHERE n.instance = '{instance}' RETURN n.bodyId, n.status, n.statusLabel, "
        "coalesce(n.class, 'none') AS class ORDER BY n.bodyId",
        "MATCH (n:Neuron) WHERE n.type = 'no such type' RETURN n.bodyId",
        "MATCH (n:Neuron) WHERE n.bodyId IN [] RETURN n.bodyId",
        "MATCH (n:Neuron) WHERE n.bodyId = null RETURN n.bodyId",
        f"MATCH (n:Segment) WHERE n.bodyId IN {bodies} RETURN count(n) AS c",  # fetch_adjacencies' checks
        "MATCH (m:Neuron) RETURN count(m) AS c, count(*) AS d",
    ]


def edge_queries(segments):
    bodies = neurons_of(segments, 30, seed=1)
    kind = common_type(segments, 1)
    back = "e.weight AS weight, coalesce(e.weightHP, 0) AS weightHP, e.roiInfo AS roiInfo"
    return [
        "MATCH (n:Segment)-[e:ConnectsTo]->(m:Neuron) WHERE n.bodyId = 12781 "
        f"RETURN n.bodyId AS a, m.bodyId AS b, {back}",
        f"MATCH (n:Neuron)-[e:ConnectsTo]->(m:Neuron) WHERE n.bodyId IN {bodies} AND e.weight >= 3 "
        f"RETURN n.bodyId AS a, m.bodyId AS b, {back} ORDER BY weight DESC, a, b",
        f"MATCH (n:Neuron)<-[e:ConnectsTo]-(m:Neuron) WHERE n.bodyId IN {bodies} "
        f"RETURN n.bodyId AS a, m.bodyId AS b, m.type AS t, {back} ORDER BY a, b",
        f"MATCH (n:Neuron)-[e:ConnectsTo]->(m:Segment) WHERE m.bodyId IN {bodies} AND 5 < e.weight "
        "RETURN n.bodyId AS a, m.bodyId AS b, e.weight ORDER BY a, b",
        f"MATCH (n:Neuron)-[e:ConnectsTo]->(m:Neuron) WHERE (n.type = '{kind}' OR n.instance = '{kind}') "
        f"AND e.weight >= 1 RETURN n.bodyId AS a, m.bodyId AS b, n.type, m.instance, {back} "
        "ORDER BY e.weight DESC, n.bodyId, m.bodyId",
        f"MATCH (n:Neuron)-[e:ConnectsTo]->(m:Neuron) WHERE n.bodyId IN {bodies} AND m.bodyId IN {bodies} "
        "RETURN n.bodyId, m.bodyId, e.weight ORDER BY e.weight, n.bodyId, m.bodyId LIMIT 5",
        f"MATCH (n:Neuron)-[e:ConnectsTo]->(m:Neuron) WHERE n.bodyId IN {bodies} AND e.weight = -1 RETURN m.bodyId",
        f"MATCH (n:Neuron)-[e:ConnectsTo]->(m:Neuron) WHERE n.bodyId IN {bodies} AND e.weight > 2 RETURN count(e)",
    ]


@pytest.mark.parametrize("number", range(12))
def test_lookup_same_as_sql_without_a_statement(built, segments, statements, number):
    text = lookup_queries(segments)[number]
    through_sql, from_ram = both_ways(built, text)
    seen = len(statements)
    assert from_ram == through_sql
    statements.clear()
    execute(built, text)
    assert statements == [], f"RAM should answer, SQL ran: {statements}"
    assert seen > 0  # and the SQL way did run SQL


@pytest.mark.parametrize("number", range(8))
def test_connections_same_as_sql_without_a_statement(built, segments, statements, number):
    text = edge_queries(segments)[number]
    through_sql, from_ram = both_ways(built, text)
    if "ORDER BY" not in text:
        through_sql["data"].sort(key=json.dumps)
        from_ram["data"].sort(key=json.dumps)
    assert from_ram == through_sql
    statements.clear()
    execute(built, text)
    assert statements == []


def test_parameters_and_plan_cache(built, segments, statements):
    bodies = neurons_of(segments, 4, seed=3)
    text = "MATCH (n:Neuron) WHERE n.bodyId IN $ids RETURN n.bodyId AS b, n.type AS t ORDER BY b"
    for cache in (None, False):
        result = execute(built, text, params={"ids": bodies}, plan_cache=cache)
        assert result.data == [[b, plain(segments.at[b, "type"])] for b in bodies]
    # literals of one shape become parameters of the cached plan: each answer is its own
    for body in bodies:
        result = execute(built, f"MATCH (n:Neuron) WHERE n.bodyId = {body} RETURN n.bodyId, n.pre")
        assert result.data == [[body, int(segments.at[body, "pre"])]]
    assert statements == []


# ---- against pandas on the feathers -----------------------------------------------------------


def test_neurons_of_a_type_match_the_feathers(built, segments):
    kind = common_type(segments)
    result = execute(
        built,
        f"MATCH (n:Neuron) WHERE n.type = '{kind}' OR n.instance = '{kind}' "
        "RETURN n.bodyId AS bodyId, n.instance AS instance, n.post AS post, n.somaSide AS side ORDER BY n.bodyId",
    )
    members = segments[segments["is_neuron"] & ((segments["type"] == kind) | (segments["instance"] == kind))]
    want = [
        [int(b), plain(r["instance"]), int(r["post"]), plain(r["somaSide"])] for b, r in members.sort_index().iterrows()
    ]
    assert result.data == want


def test_adjacencies_match_the_feathers(built, segments, weights):
    bodies = neurons_of(segments, 20, seed=5)
    result = execute(
        built,
        f"MATCH (n:Neuron)-[e:ConnectsTo]->(m:Neuron) WHERE n.bodyId IN {bodies} AND e.weight >= 2 "
        "RETURN n.bodyId, m.bodyId, e.weight ORDER BY n.bodyId, m.bodyId",
    )
    frame = weights.reset_index()
    frame = frame[frame["body_pre"].isin(bodies) & (frame["weight"] >= 2)].sort_values(["body_pre", "body_post"])
    want = [[int(a), int(b), int(w)] for a, b, w in frame[["body_pre", "body_post", "weight"]].itertuples(index=False)]
    assert want, "the sample should have connections"
    assert result.data == want


def test_roi_info_texts_are_the_stored_texts(built):
    table = neuron_table(built)
    stored = dict(built.cursor().execute("SELECT bodyId, roiInfo FROM neurons").fetchall())
    texts = neuronanswers.roi_info_texts(table, np.arange(len(table.body_ids)))
    assert dict(zip(table.body_ids.tolist(), texts)) == stored


def test_connection_roi_info_matches_the_per_roi_rows(built):
    graph = neuron_graph(built)
    pairs = np.arange(0, len(graph.pre), max(len(graph.pre) // 300, 1))
    texts = neuronanswers.connection_roi_info_texts(graph, pairs)
    rows = built.cursor().execute("SELECT body_pre, body_post, roi, pre, weight FROM neuron_connection_rois").fetchall()
    want: dict = {}
    for a, b, roi, pre, post in rows:
        want.setdefault((a, b), {})[roi] = {"pre": pre, "post": post}
    for pair, text in zip(pairs.tolist(), texts):
        key = (int(graph.body_ids[graph.pre[pair]]), int(graph.body_ids[graph.post[pair]]))
        assert json.loads(text) == want.get(key, {})
        assert list(json.loads(text)) == sorted(want.get(key, {}))  # ROIs in name order, as SQL sorts


# ---- SQL answers what RAM cannot prove ----------------------------------------------------------


def test_a_listed_segment_that_is_no_neuron_goes_to_sql(built, segments, statements):
    other = int(segments.index[~segments["is_neuron"] & (segments["post"] > 0)][0])
    text = f"MATCH (n:Segment)-[e:ConnectsTo]->(m:Neuron) WHERE n.bodyId = {other} RETURN m.bodyId, e.weight"
    through_sql, from_ram = both_ways(built, text)
    assert sorted(map(json.dumps, from_ram["data"])) == sorted(map(json.dumps, through_sql["data"]))
    statements.clear()
    execute(built, f"MATCH (n:Segment) WHERE n.bodyId = {other} RETURN n.bodyId, n.pre")
    assert statements, "a body that is no neuron is not in the neuron table: SQL must answer"


@pytest.mark.parametrize(
    "where",
    [
        "n.bodyId = 12781.0",  # 12781.0 = 12781 in Cypher
        "n.bodyId = '12781'",
        "n.pre > 10 AND n.bodyId = 12781",  # a test the table has no lookup for
        "n.bodyId = 12781 OR n.pre > 100",
    ],
)
def test_constructs_outside_the_shape_go_to_sql(built, statements, where):
    text = f"MATCH (n:Neuron) WHERE {where} RETURN n.bodyId AS b"
    through_sql, from_ram = both_ways(built, text)
    assert from_ram == through_sql
    statements.clear()
    execute(built, text)
    assert statements


def test_unbuilt_tables_leave_it_to_sql(built, statements):
    """A store whose table nobody built yet: SQL answers, and nothing is built meanwhile."""
    clear_neuron_table_cache()
    try:
        assert kept_neuron_table(built) is None
        result = execute(built, "MATCH (n:Neuron) WHERE n.bodyId = 12781 RETURN n.type")
        assert result.data == [["DNge104"]] and statements
        assert kept_neuron_table(built) is None
    finally:
        neuron_table(built)  # built again for the tests after this one


def test_plan_tree_shows_the_step():
    tree = engine.plan_tree("MATCH (n:Neuron) WHERE n.bodyId = 1 RETURN n.type")
    assert tree.splitlines()[0].startswith("NeuronMatchProject")
    assert "SqlMatchProject" in tree  # the fallback
    assert not engine.plan_tree("MATCH (n:Neuron) WHERE n.pre > 1 RETURN n.type").startswith("NeuronMatchProject")
    # a count beside other items groups by them: SQL
    assert not engine.plan_tree("MATCH (n:Neuron) RETURN n.type, count(n)").startswith("NeuronMatchProject")


def test_answers_inside_larger_queries_are_values_not_output(built, segments, statements):
    """A neuron answer that is the whole query leaves as output values (points as Neo4j's maps, no
    engine pass over them); one inside a UNION or a runTimeboxed call stays values (a point's
    ``.x`` works): the same as SQL, and the soma coordinates the feathers hold."""
    with_soma = segments[segments["is_neuron"] & segments["somaLocation"].notna()]
    bodies = sorted(int(b) for b in with_soma.index[:4])
    soma = {int(b): [int(c) for c in v] for b, v in with_soma["somaLocation"].items()}
    inner = f"MATCH (n:Neuron) WHERE n.bodyId IN {bodies} RETURN n.bodyId AS b, n.somaLocation AS s ORDER BY b"
    texts = [
        inner,
        f"{inner.replace(' ORDER BY b', '')} UNION MATCH (n:Neuron) WHERE n.bodyId IN {bodies[2:]} "
        "RETURN n.bodyId AS b, n.somaLocation AS s",
        f'CALL apoc.cypher.runTimeboxed("{inner}", {{}}, 5000) YIELD value '
        "RETURN value.b AS b, value.s.x AS x, value.s AS s",
    ]
    for text in texts:
        through_sql, from_ram = both_ways(built, text)
        assert from_ram == through_sql, text
        statements.clear()
        rows = execute(built, text).data
        assert statements == [], f"RAM should answer, SQL ran: {statements}"
        assert sorted(row[0] for row in rows) == bodies, text
        for row in rows:
            assert row[-1]["type"] == "Point" and row[-1]["coordinates"] == soma[row[0]]
            if len(row) == 3:
                assert row[1] == soma[row[0]][0]


def test_sorted_rows_are_pythons_stable_sort():
    """The column sort of the RAM answer (NumPy's stable sort for 64-bit integers) orders rows as
    Python's stable sort with nulls last (first descending) does: ties keep their order both ways."""
    rng = np.random.default_rng(5)
    columns = [
        rng.integers(0, 6, 300).tolist(),  # many ties
        rng.integers(-(2**62), 2**62, 200).tolist(),
        [2**63 - 1, -(2**63), 0, 5, -(2**63), 2**63 - 1],  # the int64 ends (descending: Python's sort)
        [2**64, 1, 3, 1],  # beyond 64 bits
        [3, None, 1, None, 3, 2],
        [1.5, 1, 0.5, 2],
        [],
        [7],
        sorted(rng.integers(0, 9, 60).tolist()),  # in order already (a look-up by bodyId), ties
        sorted(rng.integers(0, 9, 60).tolist(), reverse=True),
        [4, 4, 4],
    ]
    for column in columns:
        for descending in (False, True):
            for order in (range(len(column)), rng.permutation(len(column)).tolist()):
                want = sorted(order, key=lambda row: (column[row] is None, column[row]), reverse=descending)
                assert list(neuronanswers._sorted_rows(order, column, descending)) == want
                assert neuronanswers._taken(column, order) == [column[row] for row in order]


def test_long_id_lists_and_sorts_same_as_sql(built, segments, statements):
    """fetch_adjacencies' look-up of ~1,400 partners (a long list literal, ORDER BY bodyId): RAM and
    SQL agree, in both directions and through the plan cache, and match the feathers."""
    bodies = neurons_of(segments, min(1400, int(segments["is_neuron"].sum()) - 1), seed=3)
    listed = list(reversed(bodies)) + [1, 2]  # not neurons: dropped
    for direction in ("", " DESC"):
        text = (
            f"WITH {listed} AS ids MATCH (n:Neuron) WHERE n.bodyId IN ids WITH n "
            f"RETURN n.bodyId AS bodyId, n.type AS type, n.instance AS instance ORDER BY bodyId{direction}"
        )
        through_sql, from_ram = both_ways(built, text)
        assert from_ram == through_sql
        statements.clear()
        assert execute(built, text).to_dict() == from_ram and statements == []
        want = segments.loc[bodies, ["type", "instance"]].sort_index(ascending=not direction)
        assert [row[0] for row in from_ram["data"]] == want.index.tolist()
        assert [row[1] for row in from_ram["data"]] == [plain(v) for v in want["type"]]


# ---- the JSON endpoint's bytes, written without a list per row ---------------------------------


def bytes_and_rows(store, text):
    """(the answer with json_bytes as the JSON endpoint runs it, the same answer as Python rows)."""
    return execute(store, text, json_bytes=True, plan_cache=False), execute(store, text, plan_cache=False)


@pytest.mark.parametrize("number", range(12))
def test_lookup_bytes_are_what_encoding_the_rows_writes(built, segments, statements, number):
    text = lookup_queries(segments)[number]
    written, rows = bytes_and_rows(built, text)
    assert statements == []
    counts = "count(" in text
    assert (written.data_json is None) == counts  # a count's one row: built as before
    if not counts:
        assert written.data_json == encode_json(rows.data) and written.row_count == len(rows.data)
    assert written.columns == rows.columns and written.data == rows.data


@pytest.mark.parametrize("number", range(8))
def test_connection_bytes_are_what_encoding_the_rows_writes(built, segments, statements, number):
    text = edge_queries(segments)[number]
    written, rows = bytes_and_rows(built, text)
    assert statements == []
    if "count(" not in text:
        assert written.data_json == encode_json(rows.data) and written.row_count == len(rows.data)
    assert written.data == rows.data


def test_fetch_adjacencies_queries_are_written_as_bytes_and_match_the_feathers(built, segments, weights):
    """neuprint-python's connection query and partner look-up (a long id list) for 60 neurons: rows
    written as bytes, parsed back they are the feathers' weights, types and instances."""
    sources = neurons_of(segments, 60, seed=7)
    connections = (
        "MATCH (n:Neuron)-[e:ConnectsTo]->(m:Neuron) WHERE n.bodyId in {} WITH n,m,e, true as _ "
        "RETURN n.bodyId as bodyId_pre, m.bodyId as bodyId_post, e.weight as weight, "
        "coalesce(e.weightHP, 0) as weightHP, e.roiInfo as roiInfo"
    )
    result = execute(built, connections.format(sources), json_bytes=True)
    assert result.data_json is not None
    frame = weights.reset_index()
    frame = frame[frame["body_pre"].isin(sources)]
    got = sorted((a, b, w) for a, b, w, _, _ in orjson.loads(result.data_json))
    pairs = frame[["body_pre", "body_post", "weight"]].itertuples(index=False)
    assert got == sorted((int(a), int(b), int(w)) for a, b, w in pairs) and got
    assert result.data_json == encode_json(execute(built, connections.format(sources)).data)  # weightHP, roiInfo
    partners = sorted({b for _, b, *_ in result.data} - set(sources))
    lookup = (
        "MATCH (n:Segment) WHERE n.bodyId in {} WITH n "
        "RETURN n.bodyId as bodyId, n.type as type, n.instance as instance ORDER BY bodyId"
    )
    for listed in (partners, partners[::-1]):  # once parsed, once through the plan cache
        result = execute(built, lookup.format(listed), json_bytes=True)
        assert result.data_json is not None
        want = [[b, plain(segments.at[b, "type"]), plain(segments.at[b, "instance"])] for b in partners]
        assert orjson.loads(result.data_json) == want


@pytest.mark.parametrize(
    "items",
    [
        "coalesce(n.type, 'none') AS t, coalesce(n.pre, 0) AS p",
        "coalesce(n.type, 0) AS t",  # a default of another type than the column's
        "coalesce(n.type, 0.5) AS t",
        "coalesce(n.type, true) AS t",
        "n.somaLocation AS s, n.roiInfo AS r",  # points as maps, keys sorted
        "n.roiInfo AS r, n.status AS s, n.statusLabel AS l, n.pre AS p",
        "n.predictedNtConfidence AS c, coalesce(n.mancSerial, 0.5) AS m, n.group AS g",
    ],
)
@pytest.mark.parametrize("order", ["", " ORDER BY type DESC, b SKIP 1 LIMIT 40", " ORDER BY type, b DESC"])
def test_written_columns_and_orders_at_the_edges(built, segments, statements, items, order):
    untyped = segments.index[segments["is_neuron"] & segments["type"].isna()]
    assert len(untyped) >= 5, "the sample needs neurons without a type"
    bodies = sorted(set(neurons_of(segments, 50, seed=9)) | {int(b) for b in untyped[:5]})
    text = f"MATCH (n:Segment) WHERE n.bodyId IN {bodies} RETURN n.bodyId AS b, n.type AS type, {items}{order}"
    written, rows = bytes_and_rows(built, text)
    assert statements == []
    assert written.data_json == encode_json(rows.data)
    through_sql, _ = both_ways(built, text)
    key = None if order else json.dumps
    assert sorted(written.data, key=key) == sorted(rows.data, key=key) == sorted(through_sql["data"], key=key)
    for row in written.data:  # against the feathers
        want = segments.loc[row[0]]
        assert row[1] == plain(want["type"])
        if "'none'" in items:
            assert row[2] == (plain(want["type"]) or "none") and row[3] == int(want["pre"])


def test_fetch_adjacencies_id_lists_are_read_as_values(built, segments, statements):
    """neuprint-python's queries with ``WITH [ids] AS ...`` through a plan cache: a hit binds the id
    list without a Literal node per id, and answering from RAM (the count in runTimeboxed, the
    look-up, the connections) reads the values only; the answers are those parsed afresh."""
    count = (
        'CALL apoc.cypher.runTimeboxed(" WITH {} as n_search_bodyId MATCH (n:Segment) '
        'WHERE n.bodyId in n_search_bodyId RETURN count(n) as c ", {{}}, 5000) YIELD value RETURN value.c as count'
    )
    lookup = (
        "WITH {} as n_search_bodyId MATCH (n:Segment) WHERE n.bodyId in n_search_bodyId WITH n "
        "RETURN n.bodyId as bodyId, n.type as type, n.instance as instance ORDER BY bodyId"
    )
    connections = (
        "WITH {} as n_search_bodyId MATCH (n:Segment)-[e:ConnectsTo]->(m:Neuron) WHERE n.bodyId in n_search_bodyId "
        "WITH n,m,e,n_search_bodyId, true as _ RETURN n.bodyId as bodyId_pre, m.bodyId as bodyId_post, "
        "e.weight as weight, coalesce(e.weightHP, 0) as weightHP, e.roiInfo as roiInfo"
    )
    cache = PlanCache()
    for seed in (11, 12):
        bodies = neurons_of(segments, 40, seed=seed)
        for text in (count.format(bodies), lookup.format(bodies), connections.format(bodies)):
            fresh = execute(built, text, plan_cache=False)
            assert execute(built, text, plan_cache=cache, json_bytes=True).data == fresh.data
            assert execute(built, text, plan_cache=cache).data == fresh.data
            lists = [n for n in plan._walk_but_literal_lists(cache.prepare(text)) if isinstance(n, ast.ListLiteral)]
            assert lists and all(n.literal_values() == tuple(bodies) for n in lists)
            if seed == 12:  # a hit: no Literal node made for the ids
                assert all("items" not in vars(n) for n in lists)
    assert cache.hits and statements == []


def test_types_and_instances_of_many_neurons_match_the_feathers(built, segments, statements):
    """type and instance read by value number (ValueIndex.values_at): a long list in no order, with
    neurons whose type or instance is NULL and a body listed twice, as bytes and as rows, against the
    feathers."""
    neurons = segments[segments["is_neuron"]]
    untyped = neurons.index[neurons["type"].isna() | neurons["instance"].isna()][:5].tolist()
    assert untyped, "the sample should hold a neuron without a type or instance"
    bodies = neurons_of(segments, 300, seed=11) + [int(b) for b in untyped]
    listed = [*reversed(bodies), bodies[0]]
    text = f"MATCH (n:Neuron) WHERE n.bodyId IN {listed} RETURN n.bodyId AS b, n.type AS t, n.instance AS i ORDER BY b"
    written, rows = bytes_and_rows(built, text)
    assert statements == []
    want = [[int(b), plain(neurons.at[b, "type"]), plain(neurons.at[b, "instance"])] for b in sorted(set(bodies))]
    assert rows.data == want
    assert orjson.loads(written.data_json) == want
    one = execute(built, f"MATCH (n:Neuron) WHERE n.bodyId = {untyped[0]} RETURN n.type AS t, n.instance AS i")
    assert one.data == [[plain(neurons.at[untyped[0], "type"]), plain(neurons.at[untyped[0], "instance"])]]


def test_bucketed_search_is_numpys_searchsorted(built):
    """NeuronTable.search (buckets, then a few binary-search steps) against np.searchsorted: every
    neuron, its neighbours, ids beyond both ends and the int64 limits, in random order."""
    table = neuron_table(built)
    ids = table.body_ids
    assert len(ids) >= 256, "the demo store should have enough neurons for the buckets"
    limits = np.iinfo(np.int64)
    bodies = np.concatenate([ids, ids - 1, ids + 1, [limits.min, limits.max, ids[0] - 10**6, ids[-1] + 10**6, 0]])
    bodies = np.random.default_rng(3).permutation(bodies).astype(np.int64)
    assert np.array_equal(table.search(bodies), np.searchsorted(ids, bodies))
    assert np.array_equal(table.search(bodies[:300]), np.searchsorted(ids, bodies[:300]))
    assert np.array_equal(table.search(bodies[:10]), np.searchsorted(ids, bodies[:10]))
    assert table._buckets, "the buckets should be in use"
