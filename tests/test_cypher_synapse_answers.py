"""fetch_synapse_connections' and fetch_synapses' queries answered from the synapse layout
(cypher/synapseplan.py, cypher/synapseanswers.py): the rows pandas finds on the raw feathers, and
exactly the SQL step's answer (rows, column order, value types, the Arrow table with its map texts)
over varied criteria; the SQL step wherever the shape or a value is not one the step proves."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from oracle import load, oracle_segments
from test_cypher_columnwise import (  # noqa: F401  (fixtures used by name)
    PAIR_CYPHER,
    SYNAPSES_CYPHER,
    _pre_map,
    canonical,
    oracle_pair_rows,
    oracle_synapse_rows,
    strong_pair,
    synapse_points,
)

from flatprint.cypher import batchcache, columnar, sqlgen, synapseanswers
from flatprint.cypher.engine import execute, plan_tree


@pytest.fixture
def answered(monkeypatch):
    """A list that records, per query run with the step on, whether the synapse layout answered it
    (else SQL did)."""
    record = []
    original = synapseanswers.SynapseAnswerExecution.answer_synapses

    def spy(self, shape, rows, *clauses):
        result = original(self, shape, rows, *clauses)
        if synapseanswers.USE_SYNAPSE_ANSWERS:
            record.append(result is not None)
        return result

    monkeypatch.setattr(synapseanswers.SynapseAnswerExecution, "answer_synapses", spy)
    return record


def both_ways(store, text):
    """(SQL step's result, synapse layout's result) of ``text``."""
    try:
        synapseanswers.USE_SYNAPSE_ANSWERS = False
        through_sql = execute(store, text, plan_cache=False)
    finally:
        synapseanswers.USE_SYNAPSE_ANSWERS = True
    return through_sql, execute(store, text, plan_cache=False)


def assert_same(through_sql, layout):
    """Same columns, rows (order aside) with their JSON types, and the same Arrow table (schema and
    rows, map texts included)."""
    assert layout.columns == through_sql.columns
    assert sorted(json.dumps(r) for r in layout.data) == sorted(json.dumps(r) for r in through_sql.data)
    a, b = through_sql.to_arrow(), layout.to_arrow()
    assert b.schema.equals(a.schema), (a.schema, b.schema)
    assert sorted(map(repr, b.to_pylist())) == sorted(map(repr, a.to_pylist()))


# ---- facts of the test release, by pandas on the feathers


@pytest.fixture(scope="module")
def segments(release_dir):
    return oracle_segments(release_dir)


@pytest.fixture(scope="module")
def weights(release_dir):
    return load(release_dir, "weights")


@pytest.fixture(scope="module")
def common_type(segments):
    """The most common neuron type and its bodies."""
    neurons = segments[segments["is_neuron"] & segments["type"].notna()]
    kind = neurons["type"].value_counts().index[0]
    return kind, sorted(int(b) for b in neurons.index[neurons["type"] == kind])


@pytest.fixture(scope="module")
def non_neuron_pair(weights, segments):
    """A connected pair whose source is a Segment that is no Neuron."""
    others = set(segments.index[~segments["is_neuron"]])
    w = weights[weights.body_pre.isin(others)].sort_values("weight", ascending=False)
    return int(w.iloc[0].body_pre), int(w.iloc[0].body_post)


@pytest.fixture(scope="module")
def unconnected_pair(weights, segments):
    neurons = sorted(segments.index[segments["is_neuron"]])
    connected = set(zip(weights.body_pre, weights.body_post))
    return next((a, b) for a in neurons[:50] for b in neurons[:50] if a != b and (a, b) not in connected)


@pytest.fixture(scope="module")
def rois(release_dir):
    """Two primary ROIs with many synapse points."""
    points = load(release_dir, "syn-points")
    counts = points["primary"].astype(str).value_counts()
    return [r for r in counts.index if r != "<unspecified>"][:2]


def synapse_connections(n_label, m_label, where, ns="(ns.confidence > 0.5) AND (ns.type = 'pre')",
                        ms="(ms.confidence > 0.5) AND (ms.type = 'post')", weight=1):  # fmt: skip
    """fetch_synapse_connections' Cypher as neuprint-python 0.6.4 writes it."""
    return f"""
    MATCH (n:{n_label})-[e:ConnectsTo]->(m:{m_label}),
          (n)-[:Contains]->(nss:SynapseSet)-[:ConnectsTo]->(mss:SynapseSet)<-[:Contains]-(m),
          (nss)-[:Contains]->(ns:Synapse)-[:SynapsesTo]->(ms:Synapse)<-[:Contains]-(mss)
    WHERE {where}
    WITH DISTINCT n, m, ns, ms, e
    WHERE e.weight >= {weight}
    WITH n, m, ns, ms
    WHERE {ns}
    WITH n, m, ns, ms
    WHERE {ms}
    RETURN n.bodyId as bodyId_pre, m.bodyId as bodyId_post,
           ns.location.x as ux, ns.location.y as uy, ns.location.z as uz,
           ms.location.x as dx, ms.location.y as dy, ms.location.z as dz,
           ns.confidence as confidence_pre, ms.confidence as confidence_post,
           apoc.map.removeKeys(ns, ['location', 'confidence', 'type']) as info_pre,
           apoc.map.removeKeys(ms, ['location', 'confidence', 'type']) as info_post,
           ns.ntGabaProb as ntGabaProb
    """


def fetch_synapses(label, where, synapse="(s.confidence > 0.5)"):
    """fetch_synapses' Cypher as neuprint-python 0.6.4 writes it (nt='all' style items)."""
    return f"""
    MATCH (n:{label})
    WHERE {where}
    MATCH (n)-[:Contains]->(ss:SynapseSet),
          (ss)-[:Contains]->(s:Synapse)
    WITH n, s
    WHERE {synapse}
    WITH DISTINCT n, s
    RETURN n.bodyId as bodyId, s.type as type, s.confidence as confidence,
           s.location.x as x, s.location.y as y, s.location.z as z,
           apoc.map.removeKeys(s, ['location', 'confidence', 'type']) as syn_info,
           s.ntAcetylcholineProb as ntAcetylcholineProb
    """


# ---- against the oracle


def test_pair_equals_the_feathers(store, release_dir, synapse_points, strong_pair, answered):  # noqa: F811
    result = execute(store, PAIR_CYPHER.format(pre=strong_pair[0], post=strong_pair[1]))
    want = canonical(oracle_pair_rows(release_dir, synapse_points, *strong_pair))
    assert answered == [True] and len(want) > 20
    assert canonical(result.data) == want
    first = result.data[0]  # ints stay ints, floats floats
    assert all(type(v) is int for v in first[:8]) and all(type(v) is float for v in first[8:10])


def test_whole_synapses_equal_the_feathers(store, release_dir, synapse_points, strong_pair, answered):  # noqa: F811
    bodies = list(strong_pair)
    result = execute(store, SYNAPSES_CYPHER.format(bodies=", ".join(map(str, bodies))))
    assert answered == [True]
    assert canonical(result.data) == canonical(oracle_synapse_rows(release_dir, synapse_points, bodies))


def test_plan_shows_the_step():
    assert plan_tree(PAIR_CYPHER.format(pre=1, post=2)).startswith("SynapseMatchProject")
    assert plan_tree(fetch_synapses("Neuron", "n.bodyId IN [1, 2]")).startswith("SynapseMatchProject")


# ---- the same answer as the SQL step


def test_pairs_equal_the_sql_step(
    store,
    segments,
    strong_pair,  # noqa: F811
    common_type,
    non_neuron_pair,
    unconnected_pair,
    rois,
    answered,
):
    pre, post = strong_pair
    kind = segments.loc[pre, "type"]  # the sources of a batch: the strong pair's source among them
    assert isinstance(kind, str)
    members = common_type[1]
    other, other_post = non_neuron_pair
    listed = ", ".join(map(str, members[:12]))
    queries = [
        synapse_connections("Segment", "Segment", f"n.bodyId = {pre} AND m.bodyId = {post}"),
        synapse_connections("Neuron", "Neuron", f"n.bodyId = {pre} AND m.bodyId = {post}"),
        # neuprint-python's batch of a type pair: one target body, the sources by type
        synapse_connections("Neuron", "Neuron", f"n.type = '{kind}' AND m.bodyId = {post}"),
        synapse_connections(
            "Neuron", "Segment", f"(n.type = '{kind}' OR n.instance = '{kind}') AND m.bodyId IN [{post}, {pre}]"
        ),
        # many listed bodies on both sides: connected pairs first
        synapse_connections("Segment", "Segment", f"n.bodyId IN [{listed}, {pre}] AND m.bodyId IN [{listed}, {post}]"),
        synapse_connections("Neuron", "Neuron", f"n.bodyId = {pre} AND m.bodyId = {post} AND (m.`{rois[0]}`)",
                            ms=f"(ms.`{rois[0]}` OR ms.`{rois[1]}`) AND (ms.confidence > 0.6) AND (ms.type = 'post')"),
        synapse_connections("Segment", "Segment", f"n.bodyId = {pre} AND m.bodyId = {post}",
                            ns="(ns.confidence >= 0.9)", ms="(ms.confidence < 0.8)"),
        synapse_connections("Segment", "Segment", f"n.bodyId = {pre} AND m.bodyId = {post}", weight=10**6),
        synapse_connections("Segment", "Segment", f"n.bodyId = {pre} AND m.bodyId = {post}", ns="(ns.type = 'post')"),
        # no synapse pairs; a non-neuron source (kept by :Segment, dropped by :Neuron); no such body
        synapse_connections("Neuron", "Neuron", "n.bodyId = {} AND m.bodyId = {}".format(*unconnected_pair)),
        synapse_connections("Segment", "Segment", f"n.bodyId = {other} AND m.bodyId = {other_post}"),
        synapse_connections("Neuron", "Segment", f"n.bodyId = {other} AND m.bodyId = {other_post}"),
        synapse_connections("Segment", "Segment", f"n.bodyId = 1 AND m.bodyId = {post}"),
    ]  # fmt: skip
    rows = []
    for text in queries:
        through_sql, layout = both_ways(store, text)
        assert_same(through_sql, layout)
        rows.append(len(layout.data))
    assert answered == [True] * len(queries)
    assert rows[0] > 20 and rows[2] > 0 and rows[4] > rows[0] and rows[10] > 0
    assert rows[7] == rows[9] == rows[11] == rows[12] == 0


def test_synapses_equal_the_sql_step(store, strong_pair, common_type, non_neuron_pair, rois, answered):  # noqa: F811
    kind, members = common_type
    listed = ", ".join(map(str, members[:3] + [strong_pair[0]]))
    other = non_neuron_pair[0]
    queries = [
        fetch_synapses("Neuron", f"n.bodyId IN [{listed}] AND (n.type = '{kind}' OR n.instance = '{kind}')"),
        fetch_synapses("Neuron", f"n.type = '{kind}'"),
        fetch_synapses("Segment", f"n.bodyId IN [{listed}, {other}]", synapse="(s.type = 'pre')"),
        fetch_synapses("Segment", f"n.bodyId = {other}"),
        fetch_synapses("Neuron", f"n.bodyId = {other}"),
        fetch_synapses("Neuron", f"n.bodyId IN [{listed}] AND (n.`{rois[0]}` OR n.`{rois[1]}`)",
                       synapse=f"(s.`{rois[1]}` OR s.`{rois[0]}`) AND (s.confidence > 0.7) AND (s.type = 'pre')"),
        fetch_synapses("Neuron", "n.bodyId IN [1, 2]"),
        SYNAPSES_CYPHER.format(bodies=listed),
    ]  # fmt: skip
    rows = []
    for text in queries:
        through_sql, layout = both_ways(store, text)
        assert_same(through_sql, layout)
        rows.append(len(layout.data))
    assert answered == [True] * len(queries)
    assert rows[0] > 0 and rows[1] > 0 and rows[3] > 0
    assert rows[4] == rows[6] == 0


def test_what_the_step_does_not_prove_goes_to_sql(store, strong_pair, answered):  # noqa: F811
    pre, post = strong_pair
    base = synapse_connections("Segment", "Segment", f"n.bodyId = {pre} AND m.bodyId = {post}")
    # statically other shapes: no step
    for text in (
        base.replace("ns.ntGabaProb as ntGabaProb", "ns.ntGabaProb as ntGabaProb ORDER BY ux"),
        base.replace("WHERE e.weight >= 1", "WHERE e.weight >= 1 AND ns.confidence > ms.confidence"),
        base.replace("ns.ntGabaProb as ntGabaProb", "ns.compartment as compartment"),
    ):
        assert not plan_tree(text).startswith("SynapseMatchProject")
    # at run time: a property of no column, a confidence that is no number, an end's term the
    # evaluator decides; the SQL step answers, with the same answer as without the step
    for text in (
        base.replace("ns.ntGabaProb as ntGabaProb", "ns.ntNothingProb as x"),
        base.replace("(ns.confidence > 0.5)", "(ns.confidence > '0.5')"),
        base.replace(f"n.bodyId = {pre} AND", f"n.bodyId = {pre} AND size(toString(n.bodyId)) > 0 AND"),
    ):
        assert plan_tree(text).startswith("SynapseMatchProject")
        through_sql, layout = both_ways(store, text)
        assert_same(through_sql, layout)
    assert answered == [False, False, False]


def test_map_numbers_are_written_as_duckdb_writes_them(store):
    """double_texts against DuckDB's to_json over every distinct NT probability and confidence of
    the test store, and values at the notations' edges (whole numbers, 1e-5 to 1e-7)."""
    con = duckdb.connect()
    values = (
        store.cursor()
        .execute(
            "SELECT DISTINCT v FROM (SELECT unnest([conf, ntAcetylcholineProb, ntGabaProb, ntSerotoninProb]) AS v "
            "FROM synapses) WHERE v IS NOT NULL"
        )
        .fetchnumpy()["v"]
        .astype(np.float64)
    )
    edges = np.array([1e-5, 1e-6, 9.99e-6, 1.5e-6, 1e-7, 2.5e-7, 0.0, -0.0, 1.0, 2.0, 0.1, 1 / 3, 123.5, 5e-324])
    # orjson writes exponents below 1e-5 where DuckDB writes decimals down to 1e-6: both sides of each bound
    bounds = [np.nextafter(b, d) for b in columnar.DECIMAL_ONLY for d in (0.0, 1.0)]
    edges = np.concatenate([edges, bounds, [2.2250738585072014e-308, 1e5 + 0.5, 3e-6]])
    edges = np.concatenate([edges, -edges, [999999.0, 999999.5, 12345.678]])
    values = np.concatenate([values, edges])

    def duckdb_texts(numbers):
        return [r[0] for r in con.execute("SELECT to_json(unnest(?::DOUBLE[]))::VARCHAR", [numbers]).fetchall()]

    assert len(values) > 1000
    assert columnar.double_texts(values).to_pylist() == duckdb_texts(values.tolist())
    masked = columnar.double_texts(np.array([np.nan, np.inf, 0.5, 2e-6, 1.0]), np.array([0, 0, 1, 0, 0], bool))
    assert masked.to_pylist() == ["null", "null", None, *duckdb_texts([2e-6, 1.0])]
    assert columnar.double_texts(np.array([])).to_pylist() == []
    with pytest.raises(columnar.TextUnsure):
        columnar.double_texts(np.array([1e16]))


def test_batches_of_a_call_are_taken_from_the_batch_cache(store, segments, strong_pair, answered, monkeypatch):  # noqa: F811
    """neuprint-python's batches (the same query, one target body each): the first read from the
    synapse layout, later ones from the batch cache's kept general answer (no statement of the
    layout's reads), each the SQL step's answer."""
    pre, post = strong_pair
    kind = segments.loc[pre, "type"]
    post_kind = segments.loc[post, "type"]
    same_type = segments.index[segments["is_neuron"] & (segments["type"] == post_kind)]
    targets = [post, *sorted(int(b) for b in same_type if b != post)[:3]]
    assert len(targets) > 2
    read = []
    original = synapseanswers._Answer.run
    monkeypatch.setattr(synapseanswers._Answer, "run", lambda self: read.append(1) or original(self))
    monkeypatch.setattr(batchcache, "_CACHES", {})  # a fresh batch cache for the store
    for target in targets:
        text = synapse_connections(
            "Neuron", "Neuron", f"n.type = '{kind}' AND m.bodyId = {target} AND m.type = '{post_kind}'"
        )
        through_sql, layout = both_ways(store, text)
        assert_same(through_sql, layout)
    assert answered == [True] * len(targets)
    assert len(read) == 1  # the first batch; the second built the general answer, the rest took it


# ---- several pairs and confidence thresholds against the feathers (and the SQL step)


def oracle_pairs_with_confidence(release_dir, synapse_points, pre_body, post_body, pre_min, post_min) -> list:  # noqa: F811
    """fetch_synapse_connections' rows of one body pair by pandas on the feathers: the syn-partners
    rows with conf_pre > pre_min and conf_post > post_min, each end's map from its syn-points row
    (ROI flags with their ancestors, a T-bar's NT probabilities), ntGabaProb of the T-bar."""
    pre_points, post_points = synapse_points
    partners = load(release_dir, "syn-partners")
    p = partners[
        (partners.body_pre == pre_body)
        & (partners.body_post == post_body)
        & (partners.conf_pre.astype(np.float64) > pre_min)
        & (partners.conf_post.astype(np.float64) > post_min)
    ]
    rows = []
    for r in p.itertuples():
        pre = pre_points.loc[(r.x_pre, r.y_pre, r.z_pre)]
        post = post_points.loc[(r.x_post, r.y_post, r.z_post)]
        pre = pre.iloc[0] if isinstance(pre, pd.DataFrame) else pre
        post = post.iloc[0] if isinstance(post, pd.DataFrame) else post
        info_pre = _pre_map(pre)
        ends = [int(v) for v in (r.body_pre, r.body_post, r.x_pre, r.y_pre, r.z_pre, r.x_post, r.y_post, r.z_post)]
        rows.append(
            [*ends, float(r.conf_pre), float(r.conf_post), info_pre, dict(post["flags"]), info_pre.get("ntGabaProb")]
        )
    return rows


@pytest.fixture(scope="module")
def pairs_to_check(weights, segments, non_neuron_pair, unconnected_pair):
    """(pre, post, label): neuron pairs of the 1st, 2nd, 10th and 50th weight, the strongest pair from
    a Segment that is no Neuron, and two neurons without synapses between them."""
    neurons = set(segments.index[segments["is_neuron"]])
    between = weights[weights.body_pre.isin(neurons) & weights.body_post.isin(neurons)]
    ranked = between.sort_values(["weight", "body_pre", "body_post"], ascending=[False, True, True])
    pairs = [(int(ranked.iloc[k].body_pre), int(ranked.iloc[k].body_post), "Neuron") for k in (0, 1, 9, 49)]
    return [*pairs, (*non_neuron_pair, "Segment"), (*unconnected_pair, "Neuron")]


@pytest.mark.parametrize("pre_min,post_min", [(0.5, 0.5), (0.8, 0.3), (0.0, 0.95)])
def test_several_pairs_equal_the_feathers_and_the_sql_step(
    store,
    release_dir,
    synapse_points,  # noqa: F811
    pairs_to_check,
    pre_min,
    post_min,
    answered,  # noqa: F811
):
    counts = []
    for pre, post, label in pairs_to_check:
        text = synapse_connections(
            label,
            label,
            f"n.bodyId = {pre} AND m.bodyId = {post}",
            ns=f"(ns.confidence > {pre_min}) AND (ns.type = 'pre')",
            ms=f"(ms.confidence > {post_min}) AND (ms.type = 'post')",
        )
        through_sql, layout = both_ways(store, text)
        assert_same(through_sql, layout)
        want = oracle_pairs_with_confidence(release_dir, synapse_points, pre, post, pre_min, post_min)
        assert canonical(layout.data) == canonical(want), (pre, post, label)
        counts.append(len(want))
    assert answered == [True] * len(pairs_to_check)
    assert counts[5] == 0 and sum(counts[:5]) > 0
    if pre_min == post_min == 0.5:  # neuprint-python's thresholds: every connected pair has rows
        assert all(c > 0 for c in counts[:5])


# ---- the row builder against DuckDB's JSON


def test_python_rows_are_what_duckdb_json_parses_to(monkeypatch):
    """columnar.python_rows (NumPy values, map texts parsed per column) gives the rows json.loads
    finds in DuckDB's to_json of each row: integers, doubles (whole, -0.0, tiny, null), strings with
    escapes and non-ASCII letters, booleans, map texts and nulls everywhere; over several blocks."""
    monkeypatch.setattr(columnar, "BLOCK_ROWS", 3)
    table = pa.table(
        {
            "c0": pa.array([1, None, -(2**62), 0, 7, 2**53 + 1, 5], type=pa.int64()),
            "c1": pa.array([1.0, -0.0, None, 0.1, 1e-7, 123456.75, 2.5e-300], type=pa.float64()),
            "c2": pa.array(["pre", None, 'a"b\\c', "ünï", "", "pre", "post"], type=pa.string()),
            "c3": pa.array([True, None, False, True, False, None, True]),
            "c4": pa.array(['{"a":true,"x":0.5}', None, "{}", '{"ME(R)":true}', '{"k":[1,2]}', "{}", None]),
            "c5": pa.nulls(7, pa.null()),
        }
    )
    maps = {4}
    con = duckdb.connect()
    con.register("answer", table)
    want = [json.loads(r[0]) for r in con.execute(sqlgen.json_rows_sql([i in maps for i in range(6)])).fetchall()]
    got = columnar.python_rows([table.column(i).combine_chunks() for i in range(6)], maps, lambda n: None, 7)
    assert json.dumps(got) == json.dumps(want)
    assert [type(v) for v in got[0][:2]] == [int, float] and got[1][1] == 0.0 and str(got[1][1]) == "-0.0"
    assert columnar.python_rows([], set(), lambda n: None, 2) == [[], []]


def test_a_type_no_text_can_hold_matches_nothing(store, strong_pair, answered):  # noqa: F811
    """A synapse type with a lone surrogate (which SQL text cannot hold; found by the fuzzer) matches
    no synapse, on the synapse layout's step as the strings compare, instead of crashing in DuckDB."""
    pre, post = strong_pair
    where = f"n.bodyId = {pre} AND m.bodyId = {post}"
    text = synapse_connections("Neuron", "Neuron", where, ms="(ms.confidence > 0.5) AND (ms.type = '\ud800ost')")
    assert execute(store, text).data == []
    assert answered == [True]
    assert len(execute(store, synapse_connections("Neuron", "Neuron", where)).data) > 20
