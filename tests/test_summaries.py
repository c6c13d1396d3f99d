"""The neuron-only summary tables (flatprint.ingest.summaries) and the query paths that read them,
against pandas on the raw feathers."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from oracle import load, oracle_segments, point_id, roi_chains
from test_query_connectivity import compare_conn, oracle_adjacencies, partners_with_rois
from test_query_neurons import oracle_roi_counts

import flatprint
from flatprint import NeuronCriteria as NC
from flatprint.ingest.summaries import SUMMARY_TABLES
from flatprint.query import connectivity, neurons as neurons_module
from flatprint.query.results import frame_from_arrow

MAJORS = {"CentralBrain", "Optic(L)", "Optic(R)", "CV", "VNC"}
UNSPEC = "<unspecified>"


@pytest.fixture(scope="module")
def con(store_path):
    c = duckdb.connect(str(store_path), read_only=True)
    yield c
    c.close()


def _table(con, name: str) -> pd.DataFrame:
    return con.execute(f"SELECT * FROM {name}").df()


def _rois_of(chains, primary: str, major: str) -> list[str]:
    """Every ROI a point counts under: its primary ROI's chain below the major level, and its major region."""
    rois = [c for c in chains.get(primary, []) if c not in MAJORS]
    return rois + ([major] if major != UNSPEC else [])


def test_neurons_table(con, release_dir, neurons, client, monkeypatch):
    """``neurons``: the :Neuron bodies' rows of segments, every column; :Neuron criteria read it."""
    got = _table(con, "neurons")
    assert got["bodyId"].tolist() == neurons.tolist()
    assert got.columns.tolist() == _table(con, "segments LIMIT 0").columns.tolist()
    stats = load(release_dir, "stats").set_index("body")
    assert (got["pre"].to_numpy() == stats["pre"].reindex(neurons, fill_value=0).to_numpy()).all()
    monkeypatch.setattr(neurons_module, "USE_NEURON_TABLE", False)  # the SQL path (the RAM one: test_query_neurons)
    texts = _recording(client, monkeypatch)
    df, _ = flatprint.fetch_neurons(NC(type="DNge104"), client=client)
    assert df["bodyId"].tolist() == [12781, 556329]
    assert any("FROM neurons n WHERE" in t for t in texts)
    texts.clear()
    segments, _ = flatprint.fetch_neurons(NC(type="DNge104", label="Segment"), client=client)
    assert any("FROM segments n WHERE" in t for t in texts) and not any("FROM neurons" in t for t in texts)
    pd.testing.assert_frame_equal(df, segments)


def test_neuron_connections(con, release_dir, neurons):
    w = load(release_dir, "weights")
    w = w[w.body_pre.isin(neurons) & w.body_post.isin(neurons)]
    partners = load(release_dir, "syn-partners")
    hp = partners[partners.conf_post >= 0.7].groupby(["body_pre", "body_post"]).size()
    for name, order in (
        ("neuron_connections", ["body_pre", "body_post"]),
        ("neuron_connections_by_post", ["body_post", "body_pre"]),
    ):
        got = _table(con, name)
        assert len(got) == len(w) > 100
        assert got[order].apply(tuple, axis=1).is_monotonic_increasing, name
        want = w.set_index(["body_pre", "body_post"])["weight"].sort_index()
        g = got.set_index(["body_pre", "body_post"]).sort_index()
        assert (g.index == want.index).all() and (g["weight"].to_numpy() == want.to_numpy()).all()
        assert (g["weight_hp"].to_numpy() == hp.reindex(g.index, fill_value=0).to_numpy()).all()


def test_neuron_connection_rois(con, release_dir, neurons):
    """Per neuron pair and ROI (of the PSD, every level): PSDs (weight) and distinct T-bars (pre)."""
    p = partners_with_rois(release_dir)
    p = p[p.body_pre.isin(neurons) & p.body_post.isin(neurons)]
    p["pre_point"] = point_id(p.x_pre, p.y_pre, p.z_pre).to_numpy()
    chains = roi_chains(release_dir)
    rows = [
        (a, b, roi, t)
        for a, b, t, prim, major in zip(p.body_pre, p.body_post, p.pre_point, p.primary_post, p.major_post)
        for roi in _rois_of(chains, prim, major)
    ]
    long = pd.DataFrame(rows, columns=["body_pre", "body_post", "roi", "tbar"])
    want = long.groupby(["body_pre", "body_post", "roi"]).agg(weight=("tbar", "size"), pre=("tbar", "nunique"))
    for name, order in (
        ("neuron_connection_rois", ["body_pre", "body_post", "roi"]),
        ("neuron_connection_rois_by_post", ["body_post", "body_pre", "roi"]),
    ):
        got = _table(con, name)
        assert got[order].apply(tuple, axis=1).is_monotonic_increasing, name
        g = got.set_index(["body_pre", "body_post", "roi"]).sort_index()
        assert len(g) == len(want) > 100
        assert (g.index == want.index).all()
        assert (g["weight"].to_numpy() == want["weight"].to_numpy()).all()
        assert (g["pre"].to_numpy() == want["pre"].to_numpy()).all()


def test_neuron_rois(con, release_dir, neurons):
    got = _table(con, "neuron_rois")
    assert got[["bodyId", "roi"]].apply(tuple, axis=1).is_monotonic_increasing
    assert set(got.bodyId) <= set(neurons)
    want = oracle_roi_counts(release_dir, neurons).set_index(["bodyId", "roi"]).sort_index()
    g = got.set_index(["bodyId", "roi"]).sort_index()
    assert len(g) == len(want) > 1000
    assert (g.index == want.index).all()
    assert (g["pre"].to_numpy() == want["pre"].to_numpy()).all()
    assert (g["post"].to_numpy() == want["post"].to_numpy()).all()
    assert (g["upstream"] == g["post"]).all() and (g["synweight"] == g["downstream"] + g["upstream"]).all()


def _oracle_roi_pairs(release, neurons) -> pd.DataFrame:
    """Synapse pairs between neurons per (ROI set, ROI of the T-bar, ROI of the PSD, body pair)."""
    p = partners_with_rois(release)
    p = p[p.body_pre.isin(neurons) & p.body_post.isin(neurons)]
    points = load(release, "syn-points")
    pre_ids = point_id(p.x_pre, p.y_pre, p.z_pre).to_numpy()
    p["major_pre"] = points["major"].astype(str).reindex(pre_ids).to_numpy()
    frames = []
    for roi_set in ("primary", "major"):
        s = p[(p[f"{roi_set}_pre"] != UNSPEC) & (p[f"{roi_set}_post"] != UNSPEC)]
        g = s.groupby([f"{roi_set}_pre", f"{roi_set}_post", "body_pre", "body_post"]).size().reset_index(name="weight")
        g.columns = ["pre_roi", "post_roi", "body_pre", "body_post", "weight"]
        g.insert(0, "roi_set", roi_set)
        frames.append(g)
    return pd.concat(frames, ignore_index=True)


def test_roi_pairs_and_matrix(con, release_dir, neurons):
    want = _oracle_roi_pairs(release_dir, neurons)
    key = ["roi_set", "pre_roi", "post_roi", "body_pre", "body_post"]
    got = _table(con, "neuron_roi_pairs")
    assert got[["body_pre", "body_post"]].apply(tuple, axis=1).is_monotonic_increasing
    g = got.set_index(key)["weight"].sort_index()
    w = want.set_index(key)["weight"].sort_index()
    assert len(g) == len(w) > 100 and (g.index == w.index).all() and (g.to_numpy() == w.to_numpy()).all()
    matrix = want.groupby(["roi_set", "pre_roi", "post_roi"]).agg(
        weight=("weight", "sum"), connections=("weight", "size")
    )
    got = _table(con, "roi_matrix").set_index(["roi_set", "pre_roi", "post_roi"]).sort_index()
    assert got.index.equals(matrix.index)
    assert (got.to_numpy() == matrix.to_numpy()).all()
    assert {"primary", "major"} == set(got.index.get_level_values(0))


def test_store_format_and_tables(con):
    from flatprint.ingest.layout import STORE_FORMAT

    assert STORE_FORMAT >= 4
    assert con.execute("SELECT value FROM store_info WHERE key = 'storeFormat'").fetchall()[0][0] == str(STORE_FORMAT)
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert set(SUMMARY_TABLES) <= tables
    # the build's temporary tables are gone
    assert not tables & {"neuron_ids", "neuron_label_pairs"}


# ------------------------------------------------------------------------------------------ query paths
class _Recorder:
    """A DuckDB cursor that keeps the SQL text it runs."""

    def __init__(self, cursor, texts):
        self._cursor, self._texts = cursor, texts

    def execute(self, sql, *args, **kwargs):
        self._texts.append(sql)
        return self._cursor.execute(sql, *args, **kwargs)

    def sql(self, sql, *args, **kwargs):
        self._texts.append(sql)
        return self._cursor.sql(sql, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._cursor, name)


def _recording(client, monkeypatch) -> list[str]:
    """The SQL texts the client runs from now on (through its own or fresh store cursors)."""
    texts: list[str] = []
    cursor = _Recorder(client.cursor(), texts)
    store_cursor = client.store.cursor
    monkeypatch.setattr(client, "cursor", lambda: cursor)
    monkeypatch.setattr(client.store, "cursor", lambda: _Recorder(store_cursor(), texts))
    return texts


def _without_summaries(client, monkeypatch):
    """The client's store as if built before the summary tables existed (the general path)."""
    monkeypatch.setattr(client.store, "tables", client.store.tables - set(SUMMARY_TABLES))


def _non_neuron_with_neuron_partners(release, neurons) -> int:
    """The non-neuron body with the most synapses onto neurons."""
    w = load(release, "weights")
    w = w[~w.body_pre.isin(neurons) & w.body_post.isin(neurons)]
    return int(w.groupby("body_pre")["weight"].sum().idxmax())


def _sample(neurons, n, seed=3) -> list[int]:
    return sorted(np.random.default_rng(seed).choice(neurons, n, replace=False).tolist())


@pytest.mark.parametrize("direction", ["downstream", "upstream"])
def test_adjacencies_read_neuron_tables(client, release_dir, neurons, monkeypatch, direction):
    """Both sides neurons (the default): the neuron-only tables answer, equal to pandas and to the
    general path, in both directions, with ROI filters and minimum weights."""
    ids = _sample(neurons, 40)
    src, tgt = (NC(bodyId=ids), None) if direction == "downstream" else (None, NC(bodyId=ids))
    s_ids, t_ids = (ids, neurons) if direction == "downstream" else (neurons, ids)
    monkeypatch.setattr(connectivity, "USE_NEURON_GRAPH", False)  # SQL (the graph in RAM: test_neurongraph.py)
    texts = _recording(client, monkeypatch)
    got_neurons, got = flatprint.fetch_adjacencies(src, tgt, client=client)
    assert any("neuron_connection_rois" in t for t in texts)
    assert not any(" connection_rois" in t or "FROM connections " in t for t in texts)
    want = oracle_adjacencies(release_dir, s_ids, t_ids)
    assert len(want) > 50
    compare_conn(got, want)
    assert got_neurons.bodyId.tolist() == sorted(set(got.bodyId_pre) | set(got.bodyId_post))
    # ROI filter, min_roi_weight, min_total_weight: identical frames from the general path
    kwargs = dict(rois=sorted(set(want.roi) - {"NotPrimary"})[:3], min_roi_weight=2, min_total_weight=3)
    fast = flatprint.fetch_adjacencies(src, tgt, client=client, **kwargs)
    fast_flat = flatprint.fetch_adjacencies(src, tgt, omit_rois=True, min_total_weight=2, client=client)
    fast_np = flatprint.fetch_adjacencies(src, tgt, include_nonprimary=True, client=client)
    _without_summaries(client, monkeypatch)
    texts.clear()
    slow = flatprint.fetch_adjacencies(src, tgt, client=client, **kwargs)
    assert not any("neuron_connection" in t for t in texts)
    assert len(slow[1]) > 0
    for a, b in zip(fast, slow):
        pd.testing.assert_frame_equal(a, b)
    for a, b in zip(
        fast_flat, flatprint.fetch_adjacencies(src, tgt, omit_rois=True, min_total_weight=2, client=client)
    ):
        pd.testing.assert_frame_equal(a, b)
    for a, b in zip(fast_np, flatprint.fetch_adjacencies(src, tgt, include_nonprimary=True, client=client)):
        pd.testing.assert_frame_equal(a, b)


def test_adjacencies_with_a_segment_take_the_general_path(client, release_dir, neurons, monkeypatch):
    """A body set with one non-neuron, or NC(label='Segment') partners: the full tables, so that
    non-neuron partners are kept."""
    segments = oracle_segments(release_dir)
    other = _non_neuron_with_neuron_partners(release_dir, neurons)
    ids = _sample(neurons, 20) + [other]
    texts = _recording(client, monkeypatch)
    _, got = flatprint.fetch_adjacencies(NC(bodyId=ids), None, client=client)
    assert not any("neuron_connection" in t for t in texts)
    compare_conn(got, oracle_adjacencies(release_dir, ids, neurons))
    assert other in set(got.bodyId_pre)
    texts.clear()
    _, got = flatprint.fetch_adjacencies(NC(label="Segment"), NC(bodyId=ids[:5]), client=client)
    assert not any("neuron_connection" in t for t in texts)
    want = oracle_adjacencies(release_dir, segments.index, ids[:5])
    compare_conn(got, want)
    assert not set(got.bodyId_pre) <= set(neurons)  # non-neuron partners are there


def test_adjacencies_neuron_criteria_on_both_sides(client, release_dir, neurons):
    """Typed neuron sets on both sides, and results that come out empty."""
    segments = oracle_segments(release_dir)
    types = sorted(segments.loc[segments.is_neuron, "type"].dropna().unique())[:8]
    typed = segments.index[segments.is_neuron & segments.type.isin(types)].to_numpy()
    _, got = flatprint.fetch_adjacencies(NC(type=types[:4]), NC(type=types), client=client)
    first = segments.index[segments.is_neuron & segments.type.isin(types[:4])].to_numpy()
    compare_conn(got, oracle_adjacencies(release_dir, first, typed))
    neurons_df, empty = flatprint.fetch_adjacencies(NC(type=types[:4]), None, min_total_weight=10**9, client=client)
    assert len(empty) == 0 and len(neurons_df) == 0
    assert empty.columns.tolist() == ["bodyId_pre", "bodyId_post", "roi", "weight"]


def test_connection_matrix_from_summaries(client, release_dir, neurons, monkeypatch):
    """ROI x ROI and type x type from the neuron-only tables equal pandas, with min_weight and
    sources/targets too, and equal the general path's frames."""
    want = _oracle_roi_pairs(release_dir, neurons)
    want = want[want.roi_set == "primary"]
    weights = load(release_dir, "weights").set_index(["body_pre", "body_post"])["weight"]
    texts = _recording(client, monkeypatch)
    cases = [dict(), dict(min_weight=3), dict(sources=NC(bodyId=_sample(neurons, 60)), targets=None)]
    fast = {}
    for i, kwargs in enumerate(cases):
        got = flatprint.connection_matrix("roi", client=client, **kwargs)
        w = want
        if "min_weight" in kwargs:
            pair_w = weights.reindex(pd.MultiIndex.from_frame(w[["body_pre", "body_post"]])).to_numpy()
            w = w[pair_w >= kwargs["min_weight"]]
        if "sources" in kwargs:
            w = w[w.body_pre.isin(kwargs["sources"].bodyId)]
        m = w.groupby(["pre_roi", "post_roi"]).agg(weight=("weight", "sum"), connections=("weight", "size"))
        g = got.set_index(["pre", "post"])[["weight", "connections"]].sort_index()
        assert g.index.tolist() == m.index.tolist() and (g.to_numpy() == m.to_numpy()).all(), kwargs
        fast[i] = got
    fast["type"] = flatprint.connection_matrix("type", min_weight=2, client=client)
    assert sum("roi_matrix" in t for t in texts) == 1 and sum("neuron_roi_pairs" in t for t in texts) == 2
    assert not any("partners" in t for t in texts)
    _without_summaries(client, monkeypatch)
    for i, kwargs in enumerate(cases):
        pd.testing.assert_frame_equal(fast[i], flatprint.connection_matrix("roi", client=client, **kwargs))
    pd.testing.assert_frame_equal(fast["type"], flatprint.connection_matrix("type", min_weight=2, client=client))


@pytest.mark.parametrize("label", ["Neuron", "Segment"])
def test_neurons_by_roi_from_neuron_rois(client, release_dir, monkeypatch, label):
    """fetch_neurons by ROI with many neurons reads the per-ROI counts from neuron_rois (neurons) or
    segment_rois (segments): equal frames either way, and equal to pandas on syn-points."""
    monkeypatch.setattr(neurons_module, "USE_NEURON_TABLE", False)  # the SQL path (the RAM one: test_query_neurons)
    monkeypatch.setattr(neurons_module, "ROI_INFO_PARSE_LIMIT", 0)
    texts = _recording(client, monkeypatch)
    n1, r1 = flatprint.fetch_neurons(NC(rois=["GNG"], label=label), client=client)
    table = "neuron_rois" if label == "Neuron" else "segment_rois"
    assert any(f"FROM {table} r SEMI JOIN" in t for t in texts)
    monkeypatch.setattr(neurons_module, "ROI_INFO_PARSE_LIMIT", 10**9)
    n2, r2 = flatprint.fetch_neurons(NC(rois=["GNG"], label=label), client=client)
    pd.testing.assert_frame_equal(n1, n2)
    pd.testing.assert_frame_equal(r1, r2)
    expected = oracle_roi_counts(release_dir, n1["bodyId"]).set_index(["bodyId", "roi"])
    got = r1[r1.roi != "NotPrimary"].set_index(["bodyId", "roi"])[["pre", "post"]]
    pd.testing.assert_frame_equal(got.sort_index(), expected.sort_index(), check_dtype=False)
    outputs = expected[expected.pre > 0].reset_index().groupby("bodyId")["roi"].apply(sorted)
    assert [sorted(v) for v in n1["outputRois"]] == [outputs.get(b, []) for b in n1["bodyId"]]


# ------------------------------------------------------------------------------------------ frames from Arrow
def test_frames_from_arrow_equal_frames_from_rows(client):
    """Client.frame builds from Arrow columns what pandas infers from the Python rows (the way
    neuprint-python builds frames from JSON rows): every segments column, NULL patterns included."""
    cur = client.store.cursor()
    columns = [
        r[0] for r in cur.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = 'segments'").fetchall()
    ]
    queries = [
        f'SELECT "{c}" FROM segments WHERE {w} ORDER BY bodyId LIMIT 3000'
        for c in columns
        for w in ("is_neuron", "NOT is_neuron")
    ]
    queries += [
        "SELECT * FROM segments ORDER BY bodyId LIMIT 2000",
        "SELECT * FROM connection_rois LIMIT 2000",
        "SELECT NULL AS a, 1::UTINYINT AS b, 2.5::FLOAT AS c, [1, NULL] AS d, 'x' AS e",
        "SELECT CASE WHEN bodyId % 2 = 0 THEN TRUE END AS flag, bodyId % 3 = 0 AS plain FROM segments LIMIT 100",
        "SELECT CASE WHEN bodyId % 2 = 0 THEN bodyId END AS some_ints FROM segments LIMIT 100",
        "SELECT 1 AS a, 2 AS a",
        "SELECT * FROM segments LIMIT 0",
        "SELECT sum(weight) AS total, {'x': 1} AS s FROM connections",
    ]
    for sql in queries:
        result = cur.execute(sql)
        names = [d[0] for d in result.description]
        want = pd.DataFrame([list(r) for r in result.fetchall()], columns=names)
        pd.testing.assert_frame_equal(client.frame(sql), want, check_exact=True, obj=sql)
    # the converter itself, on a table whose types it does not take, is not reached: frame falls back
    table = cur.sql("SELECT 1::BIGINT AS a, 'x' AS b").to_arrow_table()
    assert frame_from_arrow(table).dtypes.astype(str).tolist() == ["int64", "str"]


def test_summary_module_keeps_connectivity_tables_listed():
    assert set(connectivity.NEURON_EDGE_TABLES) <= set(SUMMARY_TABLES)
    assert set(connectivity.NEURON_MATRIX_TABLES) <= set(SUMMARY_TABLES)


def _oracle_reach(release, start, neurons, hops, min_weight) -> dict[int, int]:
    """Breadth-first over connectome-weights: bodies reached through neurons, fewest hops."""
    w = load(release, "weights")
    w = w[(w.weight >= min_weight) & w.body_post.isin(neurons)]
    seen = {int(b): 0 for b in start}
    frontier = set(seen)
    for hop in range(1, hops + 1):
        found = set(w.loc[w.body_pre.isin(frontier), "body_post"].astype(int)) - set(seen)
        seen.update({b: hop for b in found})
        frontier = found
    return seen


def test_reach_from_neurons_and_from_a_segment(client, release_dir, neurons, monkeypatch):
    """fetch_reach between neurons walks neuron_connections; a starting non-neuron's own edges come
    from connections (the neuron copy lacks them)."""
    other = _non_neuron_with_neuron_partners(release_dir, neurons)
    monkeypatch.setattr(connectivity, "USE_NEURON_GRAPH", False)  # SQL (the graph in RAM: test_neurongraph.py)
    texts = _recording(client, monkeypatch)
    for start in (_sample(neurons, 5), _sample(neurons, 3) + [other]):
        texts.clear()
        got = flatprint.fetch_reach(NC(bodyId=start), "downstream", hops=2, min_weight=2, client=client)
        want = _oracle_reach(release_dir, start, neurons, 2, 2)
        assert dict(zip(got.bodyId.tolist(), got.hops.tolist())) == want
        assert len(want) > len(start)
        assert any("FROM neuron_connections c" in t for t in texts)
        assert any("FROM connections c" in t for t in texts) == (other in start)
