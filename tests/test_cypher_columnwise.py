"""Answers the engine builds column-wise (synapse maps and rows as JSON in SQL, cypher/columnar.py).

Rows of fetch_synapse_connections' and fetch_synapses' Cypher and of custom queries returning maps
are compared with pandas on the raw feathers (tests/oracle.py), the JSON endpoint with the Arrow
endpoint of a real `flatprint serve`, and neuprint-python's frames through it with the library's.
"""

from __future__ import annotations

import gc
import io
import json
import math

import pandas as pd
import pyarrow as pa
import pytest
import requests
from oracle import load, oracle_segments, roi_chains
from server_fixture import running_server

import flatprint
from flatprint.cypher import batchcache, synapseanswers
from flatprint.cypher.engine import Execution, execute
from flatprint.cypher.memory import MemoryBudgetError, set_memory_budget
from flatprint.errors import QueryError
from flatprint.store import Store

DS = "male-cns:v0.9"
NT_NAMES = {
    "nt_acetylcholine_prob": "ntAcetylcholineProb",
    "nt_dopamine_prob": "ntDopamineProb",
    "nt_gaba_prob": "ntGabaProb",
    "nt_glutamate_prob": "ntGlutamateProb",
    "nt_histamine_prob": "ntHistamineProb",
    "nt_octopamine_prob": "ntOctopamineProb",
    "nt_serotonin_prob": "ntSerotoninProb",
}


def _synapse_connections_cypher(label: str, where: str) -> str:
    """fetch_synapse_connections' Cypher as neuprint-python 0.6.4 sends it (nt='max'), between
    endpoints of ``label`` chosen by ``where`` (its format placeholders are left for the test)."""
    return f"""
    MATCH (n:{label})-[e:ConnectsTo]->(m:{label}),
          (n)-[:Contains]->(nss:SynapseSet)-[:ConnectsTo]->(mss:SynapseSet)<-[:Contains]-(m),
          (nss)-[:Contains]->(ns:Synapse)-[:SynapsesTo]->(ms:Synapse)<-[:Contains]-(mss)
    WHERE {where}
    WITH DISTINCT n, m, ns, ms, e
    WHERE e.weight >= 1
    WITH n, m, ns, ms
    WHERE (ns.confidence > 0.5) AND (ns.type = 'pre')
    WITH n, m, ns, ms
    WHERE (ms.confidence > 0.5) AND (ms.type = 'post')
    RETURN n.bodyId as bodyId_pre, m.bodyId as bodyId_post,
           ns.location.x as ux, ns.location.y as uy, ns.location.z as uz,
           ms.location.x as dx, ms.location.y as dy, ms.location.z as dz,
           ns.confidence as confidence_pre, ms.confidence as confidence_post,
           apoc.map.removeKeys(ns, ['location', 'confidence', 'type']) as info_pre,
           apoc.map.removeKeys(ms, ['location', 'confidence', 'type']) as info_post,
           ns.ntAcetylcholineProb as ntAcetylcholineProb, ns.ntGabaProb as ntGabaProb
"""


# fetch_synapse_connections' Cypher for one body pair
PAIR_CYPHER = _synapse_connections_cypher("Segment", "n.bodyId = {pre} AND m.bodyId = {post}")

# fetch_synapses' Cypher shape: the whole synapse node
SYNAPSES_CYPHER = """
    MATCH (n:Neuron)-[:Contains]->(:SynapseSet)-[:Contains]->(s:Synapse)
    WHERE n.bodyId IN [{bodies}]
    RETURN n.bodyId AS bodyId, s
"""


@pytest.fixture(scope="module")
def server(store_path, tmp_path_factory):
    home = tmp_path_factory.mktemp("columnwise-home")
    with running_server([str(store_path)], home) as (url, cert):
        yield url, str(cert)


# ---- the oracle: pandas on the feathers


@pytest.fixture(scope="module")
def synapse_points(release_dir):
    """Every synapse point with its ROI flags (the point's primary and major ROI with their ancestors)
    and, for T-bars, its neurotransmitter probabilities; indexed by (x, y, z, kind)."""
    points = load(release_dir, "syn-points").reset_index()
    chains = roi_chains(release_dir)
    flags = []
    for primary, major in zip(points["primary"].astype(str), points["major"].astype(str)):
        rois = set()
        for roi in (primary, major):
            if roi != "<unspecified>":
                rois |= set(chains.get(roi, [roi]))
        flags.append({r: True for r in rois})
    points["flags"] = flags
    nt = load(release_dir, "tbar-nt")[["x", "y", "z", *NT_NAMES]].rename(columns=NT_NAMES)
    pre = points[points["kind"] == "PreSyn"].merge(nt, on=["x", "y", "z"], how="left")
    post = points[points["kind"] == "PostSyn"]
    return pre.set_index(["x", "y", "z"]), post.set_index(["x", "y", "z"])


def _pre_map(row) -> dict:
    out = dict(row["flags"])
    for name in NT_NAMES.values():
        value = row[name]
        if not pd.isna(value):
            out[name] = float(value)
    return out


def oracle_pair_rows(release_dir, synapse_points, pre_body, post_body) -> list:
    pre_points, post_points = synapse_points
    partners = load(release_dir, "syn-partners")
    p = partners[
        (partners.body_pre == pre_body)
        & (partners.body_post == post_body)
        & (partners.conf_pre > 0.5)
        & (partners.conf_post > 0.5)
    ]
    rows = []
    for r in p.itertuples():
        pre = pre_points.loc[(r.x_pre, r.y_pre, r.z_pre)]
        post = post_points.loc[(r.x_post, r.y_post, r.z_post)]
        pre = pre.iloc[0] if isinstance(pre, pd.DataFrame) else pre
        post = post.iloc[0] if isinstance(post, pd.DataFrame) else post
        info_pre = _pre_map(pre)
        rows.append(
            [
                int(r.body_pre),
                int(r.body_post),
                int(r.x_pre),
                int(r.y_pre),
                int(r.z_pre),
                int(r.x_post),
                int(r.y_post),
                int(r.z_post),
                float(r.conf_pre),
                float(r.conf_post),
                info_pre,
                dict(post["flags"]),
                info_pre.get("ntAcetylcholineProb"),
                info_pre.get("ntGabaProb"),
            ]
        )
    return rows


def oracle_synapse_rows(release_dir, synapse_points, bodies) -> list:
    pre_points, post_points = synapse_points
    rows = []
    for kind, frame in (("pre", pre_points), ("post", post_points)):
        frame = frame.reset_index()
        for _, r in frame[frame["body"].isin(bodies)].iterrows():
            props = _pre_map(r) if kind == "pre" else dict(r["flags"])
            props.update(
                {
                    "type": kind,
                    "confidence": float(r["conf"]),
                    "location": {"type": "Point", "coordinates": [int(r["x"]), int(r["y"]), int(r["z"])]},
                }
            )
            rows.append([int(r["body"]), props])
    return rows


def canonical(rows) -> list:
    """Rows comparable regardless of order; floats to 6 significant digits, point crs dropped, and
    the value types (int / float / bool / str / None) kept so that 1 and 1.0 differ."""

    def value(v):
        if isinstance(v, dict):
            v = {k: x for k, x in v.items() if k != "crs"}
            return tuple(sorted((k, value(x)) for k, x in v.items()))
        if isinstance(v, list):
            return tuple(value(x) for x in v)
        if isinstance(v, float):
            return ("float", float(f"{v:.6g}"))
        return (type(v).__name__, v)

    return sorted((tuple(value(v) for v in row) for row in rows), key=repr)


# ---- the endpoints


def post_json(server, cypher) -> dict:
    url, cert = server
    r = requests.post(f"{url}/api/custom/custom", json={"cypher": cypher, "dataset": DS}, verify=cert, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def post_arrow_rows(server, cypher, columns) -> list:
    """The Arrow endpoint's answer as JSON rows: map columns travel as JSON text."""
    url, cert = server
    r = requests.post(f"{url}/api/custom/arrow", json={"cypher": cypher, "dataset": DS}, verify=cert, timeout=120)
    assert r.status_code == 200, r.text
    table = pa.ipc.open_stream(io.BytesIO(r.content)).read_all()
    assert table.num_columns == len(columns)
    out = []
    for row in table.to_pylist():
        cells = []
        for value in row.values():
            if isinstance(value, str) and value[:1] in "{[":
                value = json.loads(value)
            if isinstance(value, float) and math.isnan(value):
                value = None
            cells.append(value)
        out.append(cells)
    return out


@pytest.fixture(scope="module")
def strong_pair(release_dir):
    """The pair of neurons with the most synapses between them."""
    weights = load(release_dir, "weights")
    neurons = set(oracle_segments(release_dir).query("is_neuron").index)
    w = weights[weights.body_pre.isin(neurons) & weights.body_post.isin(neurons)]
    top = w.sort_values("weight", ascending=False).iloc[0]
    return int(top.body_pre), int(top.body_post)


def test_pair_rows_equal_the_oracle_on_every_path(store, server, release_dir, synapse_points, strong_pair):
    cypher = PAIR_CYPHER.format(pre=strong_pair[0], post=strong_pair[1])
    want = canonical(oracle_pair_rows(release_dir, synapse_points, *strong_pair))
    assert len(want) > 20
    result = execute(store, cypher)
    assert result.arrow is not None, "the pair query should be built column-wise"
    assert canonical(result.data) == want
    answer = post_json(server, cypher)
    assert canonical(answer["data"]) == want
    assert canonical(post_arrow_rows(server, cypher, answer["columns"])) == want
    # ints stay ints, floats floats: coordinates and bodies are JSON integers, confidences floats
    first = answer["data"][0]
    assert all(type(v) is int for v in first[:8]) and all(type(v) is float for v in first[8:10])


def test_whole_synapse_nodes_equal_the_oracle(store, server, release_dir, synapse_points, strong_pair):
    bodies = list(strong_pair)
    cypher = SYNAPSES_CYPHER.format(bodies=", ".join(map(str, bodies)))
    want = canonical(oracle_synapse_rows(release_dir, synapse_points, bodies))
    result = execute(store, cypher)
    assert result.arrow is not None
    assert canonical(result.data) == want
    answer = post_json(server, cypher)
    assert canonical(answer["data"]) == want
    assert canonical(post_arrow_rows(server, cypher, answer["columns"])) == want
    crs = answer["data"][0][1]["location"]["crs"]
    assert crs["srid"] == 9157 and crs["name"] == "cartesian-3d"


def test_ordered_limited_and_plain_values(store, server, release_dir):
    """ORDER BY / LIMIT done in SQL keep their order; plain columns (string, float, bool, null)."""
    cypher = (
        "MATCH (n:Neuron) WHERE n.pre > 0 RETURN n.bodyId AS bodyId, n.type AS type, n.pre AS pre, "
        "n.pre > 100 AS big, null AS nothing, n.pre * 0.5 AS half ORDER BY n.pre DESC, bodyId LIMIT 50"
    )
    segs = oracle_segments(release_dir).query("is_neuron and pre > 0").reset_index()
    segs = segs.sort_values(["pre", "bodyId"], ascending=[False, True]).head(50)
    want = [
        [int(b), None if pd.isna(t) else t, int(p), bool(p > 100), None, p * 0.5]
        for b, t, p in zip(segs.bodyId, segs.type, segs.pre)
    ]
    result = execute(store, cypher)
    assert result.arrow is not None
    assert result.data == want
    assert [type(v) for v in result.data[0]] == [int, str if want[0][1] else type(None), int, bool, type(None), float]
    assert post_json(server, cypher)["data"] == want
    assert post_arrow_rows(server, cypher, result.columns) == want


def test_maps_lists_and_collect_agree_between_endpoints(server, release_dir, strong_pair):
    """Shapes that still take the row-wise path (collect, map and list literals) answer the same on
    both endpoints and as the oracle says."""
    pre = strong_pair[0]
    cypher = (
        f"MATCH (n:Neuron)-[:Contains]->(:SynapseSet)-[:Contains]->(s:Synapse) WHERE n.bodyId = {pre} "
        "RETURN n.bodyId AS bodyId, s.type AS kind, count(*) AS n, collect(s.location.x) AS xs, "
        "{body: n.bodyId, kind: s.type} AS m, [n.bodyId, s.type] AS l"
    )
    points = load(release_dir, "syn-points")
    mine = points[points.body == pre]
    want = []
    for kind, name in (("PreSyn", "pre"), ("PostSyn", "post")):
        xs = mine[mine.kind == kind].x
        want.append([pre, name, len(xs), sorted(int(x) for x in xs), {"body": pre, "kind": name}, [pre, name]])
    answer = post_json(server, cypher)
    arrow = post_arrow_rows(server, cypher, answer["columns"])
    for rows in (answer["data"], arrow):
        got = sorted(([r[0], r[1], r[2], sorted(r[3]), r[4], r[5]] for r in rows), key=lambda r: r[1])
        assert got == sorted(want, key=lambda r: r[1])


def same_frames(got: pd.DataFrame, want: pd.DataFrame, keys: list[str]) -> None:
    """Equal rows (any order); a missing ROI is None in one frame and NaN in the other."""

    def tidy(df):
        df = df.sort_values(keys).reset_index(drop=True)
        for col in df.columns:
            if not pd.api.types.is_numeric_dtype(df[col]):
                df[col] = df[col].astype(object).where(df[col].notna(), None)
        return df

    assert got.columns.tolist() == want.columns.tolist()
    pd.testing.assert_frame_equal(tidy(got), tidy(want), check_dtype=False)


def test_neuprint_python_frames_equal_the_library(server, store_path):
    neuprint = pytest.importorskip("neuprint")
    url, cert = server
    npc = neuprint.Client(url, dataset=DS, token="local", verify=cert, progress=False)
    fpc = flatprint.Client(store_path)
    try:
        types = fpc.frame(
            "SELECT a.type FROM connections c JOIN segments a ON a.bodyId = c.body_pre "
            "JOIN segments b ON b.bodyId = c.body_post WHERE a.type = b.type AND a.is_neuron "
            "AND b.is_neuron GROUP BY 1 ORDER BY sum(c.weight) DESC LIMIT 1"
        )["type"].tolist()
        kind = types[0]
        want = flatprint.fetch_synapse_connections(
            flatprint.NeuronCriteria(type=kind), flatprint.NeuronCriteria(type=kind), client=fpc
        )
        got = neuprint.fetch_synapse_connections(
            neuprint.NeuronCriteria(type=kind), neuprint.NeuronCriteria(type=kind), client=npc
        )
        assert len(want) > 100
        keys = ["bodyId_pre", "bodyId_post", "x_pre", "y_pre", "z_pre", "x_post", "y_post", "z_post"]
        same_frames(got, want, keys)
        for nt in (None, "max"):
            want = flatprint.fetch_synapses(flatprint.NeuronCriteria(type=kind), nt=nt, client=fpc)
            got = neuprint.fetch_synapses(neuprint.NeuronCriteria(type=kind), nt=nt, client=npc)
            keys = ["bodyId", "type", "x", "y", "z"]
            same_frames(got, want, keys)
    finally:
        fpc.close()
        del npc  # a neuprint Client left alive makes later modules' default client ambiguous
        gc.collect()


def test_memory_budget_stops_a_large_columnwise_answer(store):
    cypher = "MATCH (n:Neuron)-[:Contains]->(:SynapseSet)-[:Contains]->(s:Synapse) RETURN n.bodyId AS bodyId, s"
    assert execute(store, cypher + " LIMIT 10").arrow is not None
    set_memory_budget(64 * 2**20)  # far below what the process holds already
    try:
        with pytest.raises(MemoryBudgetError, match="memory budget of 64 MiB"):
            execute(store, cypher)
    finally:
        set_memory_budget(None)


# fetch_synapse_connections' per-batch Cypher for a type pair: neuprint-python groups the connections
# by one side's body and leaves the other side to the type filter (issue #16)
TYPE_BATCH_CYPHER = _synapse_connections_cypher(
    "Neuron", "n.type = '{pre_type}' AND m.bodyId = {post} AND m.type = '{post_type}'"
)


def _table_scans(node, table: str) -> list[int]:
    """Rows each scan of ``table`` passed on, from DuckDB's JSON profile of EXPLAIN ANALYZE."""
    out = []
    if node.get("type") == "TABLE_SCAN" and str(node.get("extra_info", {}).get("Table", "")).endswith(table):
        out.append(int(node["intermediate_rows"]))
    for child in node.get("children", []):
        out += _table_scans(child, table)
    return out


def test_type_batch_reads_only_the_partners_synapses(store, release_dir, synapse_points, strong_pair, monkeypatch):
    """A batch 'type T -> body X' returns the oracle's rows, and its SQL reads the type side's synapses
    only for X's partners of that type (it used to scan every T-bar of the table on that side)."""
    segments = oracle_segments(release_dir)
    pre_type, post_type = segments.loc[strong_pair[0], "type"], segments.loc[strong_pair[1], "type"]
    assert isinstance(pre_type, str) and isinstance(post_type, str)
    post = strong_pair[1]
    weights = load(release_dir, "weights")
    neurons_of_type = set(segments[segments.is_neuron & (segments.type == pre_type)].index)
    pres = sorted(set(weights[(weights.body_post == post) & weights.body_pre.isin(neurons_of_type)].body_pre))
    want = canonical([row for pre in pres for row in oracle_pair_rows(release_dir, synapse_points, pre, post)])
    assert len(want) > 20

    ran = []
    original = Execution.run_arrow_checked

    def recording(self, sql, tables=None):
        ran.append((sql, dict(tables or {})))
        return original(self, sql, tables)

    monkeypatch.setattr(Execution, "run_arrow_checked", recording)
    # the SQL step's statement is under test: the synapse-layout step (synapseanswers.py) off
    monkeypatch.setattr(synapseanswers, "USE_SYNAPSE_ANSWERS", False)
    result = execute(store, TYPE_BATCH_CYPHER.format(pre_type=pre_type, post=post, post_type=post_type))
    assert result.arrow is not None, "the batch query should be built column-wise"
    assert canonical(result.data) == want

    # the synapses the match may read: those of X and of X's upstream partners (any type)
    partners = load(release_dir, "syn-partners")
    upstream = set(partners[partners.body_post == post].body_pre) | {post}
    points = load(release_dir, "syn-points")
    allowed = int(points["body"].isin(upstream).sum())
    main_sql, tables = next((sql, t) for sql, t in ran if "partners" in sql)
    cursor = store.cursor()
    try:
        for name, table in tables.items():
            cursor.register(name, table)
        cursor.execute("PRAGMA enable_profiling='json'")
        profile = json.loads(cursor.execute("EXPLAIN ANALYZE " + main_sql).fetchall()[0][1])
    finally:
        cursor.close()
    scans = _table_scans(
        {"children": profile["operator"]} if isinstance(profile["operator"], list) else profile["operator"], "synapses"
    )
    assert len(scans) == 2, scans
    assert max(scans) <= allowed < len(points) // 10, (scans, allowed)


def _recording_statements(monkeypatch) -> list:
    """Every SQL statement the engine runs from now on (all go through Execution._run)."""
    ran = []
    original = Execution._run

    def recording(self, sql, tables, fetch):
        ran.append(sql)
        return original(self, sql, tables, fetch)

    monkeypatch.setattr(Execution, "_run", recording)
    return ran


def _arrow_rows(table) -> list:
    """An Arrow answer as JSON rows (map columns hold JSON text)."""
    return [
        [json.loads(v) if isinstance(v, str) and v[:1] == "{" else v for v in row.values()] for row in table.to_pylist()
    ]


def _type_batches(release_dir, strong_pair, count: int = 6):
    """(pre type, post type, [(post body, its upstream partners of the pre type)]) for the batches
    neuprint-python sends for fetch_synapse_connections(pre type, post type)."""
    segments = oracle_segments(release_dir)
    pre_type, post_type = segments.loc[strong_pair[0], "type"], segments.loc[strong_pair[1], "type"]
    neurons = segments[segments.is_neuron]
    pre_bodies = set(neurons[neurons.type == pre_type].index)
    weights = load(release_dir, "weights")
    batches = []
    for post in sorted(neurons[neurons.type == post_type].index):
        pres = sorted(set(weights[(weights.body_post == post) & weights.body_pre.isin(pre_bodies)].body_pre))
        if pres:
            batches.append((int(post), pres))
    assert len(batches) >= 3, "the test release should have several bodies of the strongest pair's type"
    return pre_type, post_type, batches[:count]


def test_type_batches_after_the_second_run_no_sql(store_path, release_dir, synapse_points, strong_pair, monkeypatch):
    """Batches 'type T -> body X' of one shape: the second runs the general query once (batchcache.py),
    every later one is answered from it without a SQL statement; every batch's rows and Arrow answer
    equal the oracle's (the old engine ran 5 statements per batch)."""
    pre_type, post_type, batches = _type_batches(release_dir, strong_pair)
    store = Store.open(store_path)  # a store object of its own: its kept answers start empty
    try:
        ran = _recording_statements(monkeypatch)
        statements, schemas = [], []
        for post, pres in batches:
            before = len(ran)
            result = execute(store, TYPE_BATCH_CYPHER.format(pre_type=pre_type, post=post, post_type=post_type))
            statements.append(len(ran) - before)
            want = canonical([row for pre in pres for row in oracle_pair_rows(release_dir, synapse_points, pre, post)])
            assert canonical(result.data) == want, post
            assert result.arrow is not None
            assert canonical(_arrow_rows(result.arrow)) == want, post
            schemas.append(result.arrow.schema)
    finally:
        store.close()
    assert statements[0] > 0 and statements[1] > 0, statements
    assert statements[2:] == [0] * (len(batches) - 2), statements
    assert all(schema == schemas[0] for schema in schemas), "the kept answer's Arrow types differ from a batch's own"


def test_type_batches_with_too_many_bodies_run_alone(store_path, release_dir, synapse_points, strong_pair, monkeypatch):
    """When the general query would cover more bodies than batchcache.MAX_KEYS, every batch runs its
    own SQL (nothing is kept) and its rows still equal the oracle's."""
    monkeypatch.setattr(batchcache, "MAX_KEYS", 1)
    # each batch's own SQL statement is under test: the synapse-layout step (synapseanswers.py) off
    monkeypatch.setattr(synapseanswers, "USE_SYNAPSE_ANSWERS", False)
    pre_type, post_type, batches = _type_batches(release_dir, strong_pair, count=4)
    store = Store.open(store_path)
    try:
        ran = _recording_statements(monkeypatch)
        for post, pres in batches:
            before = len(ran)
            result = execute(store, TYPE_BATCH_CYPHER.format(pre_type=pre_type, post=post, post_type=post_type))
            assert any("partners" in sql for sql in ran[before:]), "the batch should run its own query"
            want = canonical([row for pre in pres for row in oracle_pair_rows(release_dir, synapse_points, pre, post)])
            assert canonical(result.data) == want, post
    finally:
        store.close()


def test_body_list_batches_of_a_type_equal_the_oracle(
    store_path, release_dir, synapse_points, strong_pair, monkeypatch
):
    """fetch_synapses' batches (``n.bodyId IN [...]`` and a type): kept after the second, each equal
    to the oracle's synapses of its bodies, and a batch naming no body of the type is empty."""
    segments = oracle_segments(release_dir)
    kind = segments.loc[strong_pair[0], "type"]
    bodies = sorted(int(b) for b in segments[segments.is_neuron & (segments.type == kind)].index)
    assert len(bodies) >= 4
    cypher = """
        MATCH (n:Neuron)-[:Contains]->(:SynapseSet)-[:Contains]->(s:Synapse)
        WHERE n.bodyId IN [{bodies}] AND n.type = '{kind}'
        RETURN n.bodyId AS bodyId, s
    """
    other = int(segments[segments.is_neuron & (segments.type != kind)].index[0])
    batches = [bodies[0:2], bodies[2:4], bodies[1:3] + [other], [other]]
    store = Store.open(store_path)
    try:
        ran = _recording_statements(monkeypatch)
        for number, batch in enumerate(batches):
            before = len(ran)
            result = execute(store, cypher.format(bodies=", ".join(map(str, batch)), kind=kind))
            want = canonical(oracle_synapse_rows(release_dir, synapse_points, [b for b in batch if b != other]))
            assert canonical(result.data) == want, batch
            if number >= 2:
                assert len(ran) == before, f"batch {batch} ran SQL: {ran[before:]}"
    finally:
        store.close()


def test_a_failed_general_query_lets_the_shape_run_alone():
    """A general query that fails (timeout, memory budget) is not retried on every later batch: the
    shape is marked and its batches run alone (answer_for returns None without building)."""
    cache = batchcache.BatchCache()
    calls = []

    def failing():
        calls.append(1)
        raise QueryError("query timed out")

    assert cache.answer_for("shape", (1,), failing) is None  # first batch: only remembered
    assert cache.answer_for("shape", (1,), failing) is None  # the same batch again: still the first
    assert calls == []
    assert cache.answer_for("shape", (2,), failing) is None  # second batch: the build fails
    assert cache.answer_for("shape", (3,), failing) is None  # later batches: not built again
    assert calls == [1]
