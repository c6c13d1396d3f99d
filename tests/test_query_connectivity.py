"""Connectivity and synapse queries against pandas (and networkx) on the raw feathers."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from oracle import load, oracle_segments, point_id, roi_chains
from test_query_neurons import oracle_neurons

import flatprint
from flatprint import Client, NeuronCriteria as NC, SynapseCriteria as SC
from flatprint.errors import QueryError

MAJORS = {"CentralBrain", "Optic(L)", "Optic(R)", "CV", "VNC"}


def partners_with_rois(release) -> pd.DataFrame:
    """syn-partners plus the post point's major region and the pre point's primary ROI."""
    partners = load(release, "syn-partners").copy()
    points = load(release, "syn-points")
    post_ids = point_id(partners.x_post, partners.y_post, partners.z_post).to_numpy()
    pre_ids = point_id(partners.x_pre, partners.y_pre, partners.z_pre).to_numpy()
    partners["major_post"] = points["major"].astype(str).reindex(post_ids).to_numpy()
    partners["primary_pre"] = points["primary"].astype(str).reindex(pre_ids).to_numpy()
    partners["primary_post"] = partners["primary_post"].astype(str)
    return partners


def oracle_adjacencies(release, sources, targets, include_nonprimary=False):
    """Per pair and ROI (post point), weights; NotPrimary for synapses outside every primary ROI."""
    p = partners_with_rois(release)
    p = p[p.body_pre.isin(sources) & p.body_post.isin(targets)]
    primary = p[p.primary_post != "<unspecified>"].groupby(["body_pre", "body_post", "primary_post"]).size()
    rows = [(a, b, r, n) for (a, b, r), n in primary.items()]
    outside = p[p.primary_post == "<unspecified>"].groupby(["body_pre", "body_post"]).size()
    rows += [(a, b, "NotPrimary", n) for (a, b), n in outside.items()]
    if include_nonprimary:
        chains = roi_chains(release)
        extra = {}
        for a, b, prim, major in zip(p.body_pre, p.body_post, p.primary_post, p.major_post):
            for roi in [c for c in chains.get(prim, [])[1:] if c not in MAJORS] + (
                [major] if major != "<unspecified>" else []
            ):
                extra[(a, b, roi)] = extra.get((a, b, roi), 0) + 1
        rows += [(a, b, r, n) for (a, b, r), n in extra.items()]
    return pd.DataFrame(rows, columns=["bodyId_pre", "bodyId_post", "roi", "weight"])


def neuron_ids(release, types=None):
    o = oracle_neurons(release)
    o = o[o.is_neuron]
    if types is not None:
        o = o[o.type.isin(types) | o.instance.isin(types)]
    return o["bodyId"].tolist()


def compare_conn(got, want):
    key = ["bodyId_pre", "bodyId_post", "roi"]
    g = got.set_index(key)["weight"].sort_index()
    w = want.set_index(key)["weight"].sort_index()
    assert len(g) == len(w)
    assert (g.index == w.index).all() and (g.to_numpy() == w.to_numpy()).all()


def test_adjacencies_release_snippet(client, release_dir):
    dn = neuron_ids(release_dir, ["DNge104"])
    everyone = neuron_ids(release_dir)
    neurons, conn = flatprint.fetch_adjacencies("DNge104")
    compare_conn(conn, oracle_adjacencies(release_dir, dn, everyone))
    assert set(neurons.bodyId) == set(conn.bodyId_pre) | set(conn.bodyId_post)
    assert neurons.columns.tolist() == ["bodyId", "type", "instance"]
    # sorted by pair, heaviest ROI first
    assert conn[["bodyId_pre", "bodyId_post"]].apply(tuple, axis=1).is_monotonic_increasing
    neurons_up, conn_up = flatprint.fetch_adjacencies(None, "DNge104")
    compare_conn(conn_up, oracle_adjacencies(release_dir, everyone, dn))
    assert len(conn_up) > 0


@pytest.mark.parametrize("seed", [0, 1])
def test_adjacencies_filters(store_factory, release_factory, seed):
    release = release_factory(seed)
    c = Client(store_factory(seed))
    everyone = neuron_ids(release)
    types = sorted(pd.Series(load(release, "annotations")["type"]).dropna().unique())[:6]
    src = neuron_ids(release, types)
    want = oracle_adjacencies(release, src, everyone)
    # rois + min_roi_weight + min_total_weight (totals over the listed ROIs, as neuprint-python computes them)
    rois = ["GNG", "CentralBrain"][:1] + [r for r in want.roi.unique() if r not in ("NotPrimary", "GNG")][:2]
    _, got = flatprint.fetch_adjacencies(
        NC(type=types), None, rois=rois, min_roi_weight=2, min_total_weight=3, client=c
    )
    roi_src = set(src)
    w = want[want.roi.isin(rois)]
    pair_tot = w.groupby(["bodyId_pre", "bodyId_post"])["weight"].transform("sum")
    w = w[(pair_tot >= 3) & (w.weight >= 2)]
    # neurons must intersect one of the ROIs (neuprint-python adds them to the criteria)
    counts = load(release, "syn-points")
    in_rois = set(counts.loc[counts["primary"].astype(str).isin(rois), "body"])
    w = w[w.bodyId_pre.isin(roi_src & in_rois) & w.bodyId_post.isin(in_rois)]
    compare_conn(got, w)
    # omit_rois: totals per pair with weightHP
    _, flat = flatprint.fetch_adjacencies(NC(type=types), None, omit_rois=True, min_total_weight=4, client=c)
    weights = load(release, "weights")
    ww = weights[weights.body_pre.isin(src) & weights.body_post.isin(everyone) & (weights.weight >= 4)]
    assert flat.columns.tolist() == ["bodyId_pre", "bodyId_post", "weight", "weightHP"]
    assert sorted(zip(flat.bodyId_pre, flat.bodyId_post, flat.weight)) == sorted(
        zip(ww.body_pre, ww.body_post, ww.weight)
    )
    partners = load(release, "syn-partners")
    hp = partners[partners.conf_post >= 0.7].groupby(["body_pre", "body_post"]).size()
    assert all(hp.get((a, b), 0) == h for a, b, h in zip(flat.bodyId_pre, flat.bodyId_post, flat.weightHP))
    c.close()


def test_adjacencies_nonprimary(client, release_dir):
    dn = neuron_ids(release_dir, ["DNge104"])
    everyone = neuron_ids(release_dir)
    _, got = flatprint.fetch_adjacencies("DNge104", None, include_nonprimary=True, client=client)
    compare_conn(got, oracle_adjacencies(release_dir, dn, everyone, include_nonprimary=True))


def test_adjacency_errors(client):
    with pytest.raises(QueryError, match="whole connectome"):
        flatprint.fetch_adjacencies(None, None, client=client)
    with pytest.raises(QueryError, match="rois: unknown ROI 'GNX'.*'GNG'"):
        flatprint.fetch_adjacencies("DNge104", rois=["GNX"], client=client)
    with pytest.raises(QueryError, match="rois: can't filter"):
        flatprint.fetch_adjacencies("DNge104", rois=["GNG"], omit_rois=True, client=client)
    with pytest.raises(QueryError, match="not primary"):
        flatprint.fetch_adjacencies("DNge104", rois=["MB(R)"], client=client)
    with pytest.raises(QueryError, match="sources: no neurons"):
        flatprint.fetch_adjacencies("no-such-type", client=client)
    with pytest.raises(QueryError, match="weight_props"):
        flatprint.fetch_adjacencies("DNge104", weight_props=["weightX"], client=client)
    neurons, conn = flatprint.fetch_adjacencies("DNge104", "DNge104", min_total_weight=10**6, client=client)
    assert len(conn) == 0 and conn.columns.tolist() == ["bodyId_pre", "bodyId_post", "roi", "weight"]


def test_simple_and_common(client, release_dir):
    weights = load(release_dir, "weights")
    everyone = set(neuron_ids(release_dir))
    got = flatprint.fetch_simple_connections("DNge104", None, min_weight=3, client=client)
    w = weights[weights.body_pre.isin([12781, 556329]) & weights.body_post.isin(everyone) & (weights.weight >= 3)]
    w = w.sort_values(["weight", "body_pre", "body_post"], ascending=[False, True, True])
    assert got[["bodyId_pre", "bodyId_post", "weight"]].values.tolist() == w.values.tolist()
    assert got.columns.tolist() == [
        "bodyId_pre",
        "bodyId_post",
        "weight",
        "weightHP",
        "type_pre",
        "type_post",
        "instance_pre",
        "instance_post",
        "conn_roiInfo",
    ]
    assert sum(v["post"] for k, v in got.conn_roiInfo[0].items() if k in client.primary_rois) <= got.weight[0]
    common = flatprint.fetch_common_connectivity("DNge104", "upstream", client=client)
    ups = weights[weights.body_post.isin([12781, 556329]) & weights.body_pre.isin(everyone)]
    both = ups.groupby("body_pre")["body_post"].nunique()
    assert set(common.bodyId_pre) == set(both[both == 2].index)


def graph(release, min_weight):
    w = load(release, "weights")
    w = w[w.weight >= min_weight]
    g = nx.DiGraph()
    g.add_weighted_edges_from(zip(w.body_pre, w.body_post, w.weight))
    return g


@pytest.mark.parametrize("min_weight", [1, 5])
def test_shortest_paths(client, release_dir, min_weight):
    o = oracle_neurons(release_dir).set_index("bodyId")
    traced = set(o.index[o.status == "Traced"])
    g = graph(release_dir, min_weight)
    src = 12781
    targets = [b for b in o.index[o.is_neuron & (o.type.notna())] if b != src][::37][:6]
    for dst in targets:
        sub = g.subgraph(traced | {src, dst})
        try:
            want = sorted(list(p) for p in nx.all_shortest_paths(sub, src, dst))
        except (nx.NetworkXNoPath, nx.NodeNotFound):
            want = []
        got = flatprint.fetch_shortest_paths(src, dst, min_weight=min_weight, client=client)
        got_paths = sorted(grp.bodyId.tolist() for _, grp in got.groupby("path"))
        assert got_paths == want, dst
        for _, grp in got.groupby("path"):
            ids = grp.bodyId.tolist()
            assert grp.weight.tolist() == [0] + [g[a][b]["weight"] for a, b in zip(ids, ids[1:])]


def test_paths_with_length(client, release_dir):
    o = oracle_neurons(release_dir).set_index("bodyId")
    traced = set(o.index[o.status == "Traced"])
    g = graph(release_dir, 10)
    src, dst = 12781, 556329
    sub = g.subgraph(traced | {src, dst})
    # Cypher's variable-length patterns never reuse a relationship but may revisit a node.
    want = []

    def walk(path, used):
        if path[-1] == dst and len(path) > 1:
            want.append(list(path))
        if len(path) == 4:
            return
        for nxt in sub.successors(path[-1]):
            if (path[-1], nxt) not in used:
                walk(path + [nxt], used | {(path[-1], nxt)})

    walk([src], frozenset())
    want.sort()
    got = flatprint.fetch_paths(src, dst, min_weight=10, max_path_length=3, client=client)
    got_paths = sorted(grp.bodyId.tolist() for _, grp in got.groupby("path"))
    assert got_paths == want
    exact = flatprint.fetch_paths(src, dst, min_weight=10, path_length=2, client=client)
    assert sorted(grp.bodyId.tolist() for _, grp in exact.groupby("path")) == [p for p in want if len(p) == 3]
    with pytest.raises(QueryError, match="either path_length or max_path_length"):
        flatprint.fetch_paths(src, dst, path_length=2, max_path_length=3, client=client)


def test_connection_matrices(client, release_dir):
    o = oracle_neurons(release_dir)
    neurons = o[o.is_neuron].set_index("bodyId")
    w = load(release_dir, "weights")
    w = w[w.body_pre.isin(neurons.index) & w.body_post.isin(neurons.index) & (w.weight >= 2)].copy()
    w["pre"] = neurons.loc[w.body_pre, "type"].to_numpy()
    w["post"] = neurons.loc[w.body_post, "type"].to_numpy()
    w = w.dropna(subset=["pre", "post"])
    want = w.groupby(["pre", "post"]).agg(weight=("weight", "sum"), connections=("weight", "size"))
    got = flatprint.connection_matrix("type", min_weight=2, client=client).set_index(["pre", "post"])
    assert got.sort_index()[["weight", "connections"]].equals(want.sort_index().astype("int64"))
    # ROI x ROI: synapse pairs by the primary ROI of each end
    p = partners_with_rois(release_dir)
    strong = load(release_dir, "weights").query("weight >= 1")
    p = p[p.body_pre.isin(neurons.index) & p.body_post.isin(neurons.index)]
    p = p[(p.primary_pre != "<unspecified>") & (p.primary_post != "<unspecified>")]
    want = p.groupby(["primary_pre", "primary_post"]).size()
    got = flatprint.connection_matrix("roi", client=client).set_index(["pre", "post"])["weight"]
    assert dict(got) == {k: v for k, v in want.items()}
    assert len(strong) > 0


def test_reach(client, release_dir):
    neurons = oracle_neurons(release_dir)
    neuron_set = set(neurons.loc[neurons.is_neuron, "bodyId"])
    g = graph(release_dir, 5).subgraph(neuron_set)
    got = flatprint.fetch_reach("DNge104", "downstream", hops=2, min_weight=5, client=client)
    want = {}
    for src in (12781, 556329):
        for b, d in nx.single_source_shortest_path_length(g, src, cutoff=2).items():
            want[b] = min(d, want.get(b, 99))
    assert dict(zip(got.bodyId, got.hops)) == want


def test_output_completeness(client, release_dir):
    w = load(release_dir, "weights")
    ann = load(release_dir, "annotations").set_index("bodyId")
    got = flatprint.fetch_output_completeness("DNge104", client=client).set_index("bodyId")
    for body in (12781, 556329):
        out = w[w.body_pre == body]
        traced = out[out.body_post.map(ann["status"]).eq("Traced") | out.body_post.map(ann["statusLabel"]).eq("Traced")]
        assert got.loc[body, "total_weight"] == out.weight.sum()
        assert got.loc[body, "traced_weight"] == traced.weight.sum()
        assert got.loc[body, "completeness"] == pytest.approx(traced.weight.sum() / out.weight.sum())


def test_synapses(client, release_dir):
    points = load(release_dir, "syn-points").reset_index()
    mine = points[points.body.isin([12781, 556329]) & (points.conf > 0.5)]
    got = flatprint.fetch_synapses("DNge104", client=client)
    assert len(got) == len(mine)
    assert got.dtypes["x"] == np.int32 and str(got.dtypes["type"]) == "category"
    key = lambda df: sorted(zip(df.x, df.y, df.z, df["roi"].fillna("-")))  # noqa: E731
    mine_roi = mine.assign(roi=mine["primary"].astype(str).replace("<unspecified>", None))
    assert key(got) == key(mine_roi)
    pre_gng = flatprint.fetch_synapses("DNge104", SC(type="pre", rois=["GNG"], client=client), nt="max", client=client)
    want = mine[(mine.kind == "PreSyn") & (mine["primary"] == "GNG")]
    assert len(pre_gng) == len(want) > 0
    tbar = load(release_dir, "tbar-nt").set_index("point_id")
    nt_cols = [c for c in tbar.columns if c.startswith("nt_")]
    probs = tbar.loc[want.point_id, nt_cols]
    names = [c[3:-5] for c in nt_cols]
    expected = ["none" if np.isnan(row).any() else names[int(np.argmax(row))] for row in probs.to_numpy()]
    assert sorted(pre_gng.nt.astype(object).fillna("none")) == sorted(expected)
    mean = flatprint.fetch_mean_synapses("DNge104", SC(type="post", client=client), by_roi=False, client=client)
    post = mine[mine.kind == "PostSyn"].groupby("body")
    assert mean.set_index("bodyId")["count"].to_dict() == post.size().to_dict()
    assert np.allclose(mean.set_index("bodyId")["x"].sort_index(), post["x"].mean().sort_index(), rtol=1e-5)


def test_synapse_connections(client, release_dir):
    p = partners_with_rois(release_dir)
    everyone = set(neuron_ids(release_dir))
    want = p[(p.body_pre == 12781) & p.body_post.isin(everyone) & (p.conf_pre > 0.5) & (p.conf_post > 0.5)]
    got = flatprint.fetch_synapse_connections(12781, None, client=client)
    assert len(got) == len(want) > 0
    assert sorted(zip(got.x_pre, got.x_post, got.y_post, got.bodyId_post)) == sorted(
        zip(want.x_pre, want.x_post, want.y_post, want.body_post)
    )
    gng = flatprint.fetch_synapse_connections(
        12781, None, SC(rois=["GNG"], client=client), min_total_weight=2, client=client
    )
    pairs = want.groupby(["body_pre", "body_post"]).size()
    total = load(release_dir, "weights").set_index(["body_pre", "body_post"])["weight"]
    in_gng = p[(p.body_pre == 12781) & (p.primary_post == "GNG")].groupby(["body_pre", "body_post"]).size()
    keep = [k for k in pairs.index if total[k] >= 2 and in_gng.get(k, 0) >= 2]
    w2 = want[(want.primary_post == "GNG") & want.set_index(["body_pre", "body_post"]).index.isin(keep)]
    assert len(gng) == len(w2)
    assert set(gng.roi_post) == {"GNG"}
    with pytest.raises(QueryError, match="every synapse"):
        flatprint.fetch_synapse_connections(None, None, client=client)


def test_id_ranges_filter_covers_every_id_in_few_ranges():
    """The range filter that lets zone maps prune must keep every id (it is ANDed with exact joins)."""
    import re

    import duckdb

    from flatprint.store.sql import id_ranges_sql

    rng = np.random.default_rng(3)
    ids = np.concatenate([np.arange(100, 140), np.arange(10_000_000, 10_000_050), rng.integers(0, 2**40, 500)])
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT unnest(?) AS id", [sorted(set(int(i) for i in ids) | {99, 141, 2**41})])
    for gap, most in ((1 << 16, 256), (0, 8), (0, 1)):
        cond = id_ranges_sql("id", ids, gap=gap, most=most)
        assert len(re.findall("BETWEEN", cond)) <= most
        kept = {r[0] for r in con.execute(f"SELECT id FROM t WHERE {cond}").fetchall()}
        assert set(int(i) for i in ids) <= kept
        if most > 1:
            assert 2**41 not in kept
    assert id_ranges_sql("id", []) == "FALSE"
    # two clusters stay two ranges
    assert (
        id_ranges_sql("id", [1, 2, 3, 1_000_000, 1_000_001]) == "(id BETWEEN 1 AND 3 OR id BETWEEN 1000000 AND 1000001)"
    )


class _RecordingCursor:
    """A DuckDB cursor that keeps the SQL text it is given."""

    def __init__(self, cursor, texts):
        self._cursor, self._texts = cursor, texts

    def execute(self, sql, *args):
        self._texts.append(sql)
        return self._cursor.execute(sql, *args)

    def sql(self, sql, *args):
        self._texts.append(sql)
        return self._cursor.sql(sql, *args)

    def __getattr__(self, name):
        return getattr(self._cursor, name)


def test_adjacencies_to_every_segment(store_path, release_dir, monkeypatch):
    """NC(label='Segment') targets: every partner body, neurons or not (issue 17). The partners' properties
    are read with a table of their ids, not an IN list of them in the SQL text (4 s for ~10^5 partners
    at scale 0.01, where the semi join takes 0.2 s)."""
    client = Client(store_path)
    try:
        segments = oracle_segments(release_dir)
        neurons = segments.index[segments.is_neuron].to_numpy()
        sources = sorted(np.random.default_rng(7).choice(neurons, 100, replace=False).tolist())
        texts: list[str] = []
        cursor = _RecordingCursor(client.cursor(), texts)
        monkeypatch.setattr(client, "cursor", lambda: cursor)
        got_neurons, got = flatprint.fetch_adjacencies(NC(bodyId=sources), NC(label="Segment"), client=client)
    finally:
        client.close()
    compare_conn(got, oracle_adjacencies(release_dir, sources, segments.index))
    partners = set(got.bodyId_pre) | set(got.bodyId_post)
    assert len(partners) > 1000  # enough that an id list would show in the SQL text
    assert got_neurons.bodyId.tolist() == sorted(partners)
    want = segments.loc[sorted(partners), ["type", "instance"]]
    for column in ("type", "instance"):
        assert got_neurons[column].fillna("<none>").tolist() == want[column].astype(object).fillna("<none>").tolist()
    # every SQL statement stays short whatever the number of partners: ids travel as tables
    assert max(len(t) for t in texts) < 2 * len(partners), max(len(t) for t in texts)


def _props_oracle(segments, bodies, properties) -> dict:
    """``properties`` of ``bodies`` from the feathers (see _comparable)."""
    return _comparable(segments.loc[sorted(bodies), properties], properties)


def _comparable(frame, properties) -> dict:
    """Columns as lists: lists (somaLocation) as lists of ints, missing values as '<none>'."""
    return {p: [_plain(v) for v in frame[p]] for p in properties}


def _plain(value):
    if isinstance(value, (list, np.ndarray)):
        return [int(x) for x in value]
    return "<none>" if pd.isna(value) else value.item() if isinstance(value, np.generic) else value


def test_adjacencies_segment_partners_filters_and_properties(client, release_dir, monkeypatch):
    """Every :Segment as partner on either side with ROI, min_roi_weight and min_total_weight filters,
    and partner properties that non-neurons have (status) or that every segment has (pre): equal to
    pandas on the feathers. The partners' properties come without a scan of ``segments`` while few
    non-neurons have values (issue 17), and equal the scan's when too many do."""
    import flatprint.query.connectivity as connectivity

    segments = oracle_segments(release_dir)
    weights = load(release_dir, "weights")
    with_status = set(segments.index[~segments.is_neuron & segments.status.notna()])
    neurons = set(segments.index[segments.is_neuron])
    # neurons with a non-neuron partner that has a status (the properties then come from the kept rows)
    linked = weights[weights.body_pre.isin(neurons) & weights.body_post.isin(with_status)]
    sources = sorted(set(linked.body_pre.drop_duplicates().iloc[:20]))
    assert sources, "the synthetic release has no neuron -> annotated non-neuron connection"
    properties = ["type", "status", "somaLocation"]
    texts: list[str] = []
    cursor = _RecordingCursor(client.cursor(), texts)
    monkeypatch.setattr(client, "cursor", lambda: cursor)
    got_neurons, got = flatprint.fetch_adjacencies(
        NC(bodyId=sources), NC(label="Segment"), properties=properties, client=client
    )
    compare_conn(got, oracle_adjacencies(release_dir, sources, segments.index))
    partners = set(got.bodyId_pre) | set(got.bodyId_post)
    assert partners & with_status and partners - neurons
    assert got_neurons.bodyId.tolist() == sorted(partners)
    assert _comparable(got_neurons, properties) == _props_oracle(segments, partners, properties)
    assert not any("FROM segments n SEMI JOIN" in t for t in texts)  # no scan of segments for them

    # ROI filters (totals over the listed ROIs; both sides must intersect one of them)
    want_all = oracle_adjacencies(release_dir, segments.index, sources)
    rois = [r for r in want_all.roi.value_counts().index if r != "NotPrimary"][:2]
    _, got = flatprint.fetch_adjacencies(
        NC(label="Segment"), NC(bodyId=sources), rois=rois, min_roi_weight=2, min_total_weight=3, client=client
    )
    points = load(release_dir, "syn-points")
    in_rois = set(points.loc[points["primary"].astype(str).isin(rois), "body"])
    w = want_all[want_all.roi.isin(rois)]
    w = w[(w.groupby(["bodyId_pre", "bodyId_post"])["weight"].transform("sum") >= 3) & (w.weight >= 2)]
    w = w[w.bodyId_pre.isin(in_rois) & w.bodyId_post.isin(in_rois)]
    assert len(w) > 0
    compare_conn(got, w)

    # min_total_weight alone (Segment targets), and a property every segment has (pre): the scan answers
    want = oracle_adjacencies(release_dir, sources, segments.index)
    want = want[want.groupby(["bodyId_pre", "bodyId_post"])["weight"].transform("sum") >= 4]
    got_neurons, got = flatprint.fetch_adjacencies(
        NC(bodyId=sources), NC(label="Segment"), min_total_weight=4, properties=["pre", "type"], client=client
    )
    compare_conn(got, want)
    partners = set(got.bodyId_pre) | set(got.bodyId_post)
    assert got_neurons.bodyId.tolist() == sorted(partners)
    assert _comparable(got_neurons, ["pre", "type"]) == _props_oracle(segments, partners, ["pre", "type"])

    # more annotated non-neurons than kept: the scan of segments gives the same frame
    fast, _ = flatprint.fetch_adjacencies(NC(bodyId=sources), NC(label="Segment"), properties=properties, client=client)
    monkeypatch.setattr(connectivity, "ANNOTATED_ROWS", 10)
    connectivity._annotated.clear()
    texts.clear()
    slow, _ = flatprint.fetch_adjacencies(NC(bodyId=sources), NC(label="Segment"), properties=properties, client=client)
    assert any("FROM segments n SEMI JOIN" in t for t in texts)
    connectivity._annotated.clear()
    pd.testing.assert_frame_equal(fast, slow)


def _temporary_views(client) -> list[str]:
    return [
        r[0]
        for r in client.cursor()
        .execute("SELECT view_name FROM duckdb_views() WHERE temporary AND NOT internal")
        .fetchall()
    ]


def test_temporary_tables_are_gone_after_calls(client, release_dir, monkeypatch):
    """The library registers its temporary tables under unique names and unregisters them after a call,
    also after a failing one (issue 19: fixed names, never unregistered, collided between calls)."""
    dn = neuron_ids(release_dir, ["DNge104"])
    assert _temporary_views(client) == []
    flatprint.fetch_adjacencies(NC(bodyId=dn), None, client=client)
    flatprint.fetch_simple_connections(NC(bodyId=dn), None, client=client)
    flatprint.fetch_synapse_connections(NC(bodyId=dn), None, client=client)
    flatprint.fetch_neurons(NC(bodyId=dn), client=client)
    assert _temporary_views(client) == []

    def broken_frame(sql, params=None):
        # the edges are registered by now: the failure happens while they are in use
        assert len(_temporary_views(client)) >= 1
        raise RuntimeError("query failed")

    monkeypatch.setattr(client, "frame", broken_frame)
    # the SQL path (between neurons the in-RAM neuron graph answers without temporary tables)
    monkeypatch.setattr(flatprint.query.connectivity, "USE_NEURON_GRAPH", False)
    with pytest.raises(RuntimeError, match="query failed"):
        flatprint.fetch_adjacencies(NC(bodyId=dn), None, client=client)
    with pytest.raises(RuntimeError, match="query failed"):
        flatprint.fetch_simple_connections(NC(bodyId=dn), None, client=client)
    monkeypatch.undo()
    assert _temporary_views(client) == []


def test_interleaved_temporary_tables_do_not_see_each_other(client):
    """Two calls whose temporary tables overlap in time on one cursor each read their own table."""
    import pyarrow as pa

    from flatprint.store.sql import temporary_tables

    cur = client.cursor()
    with temporary_tables(cur, ids=pa.table({"id": [1, 2, 3]})) as first:
        with temporary_tables(cur, ids=pa.table({"id": [10, 20]})) as second:
            assert first["ids"] != second["ids"]
            assert cur.execute(f"SELECT sum(id) FROM {first['ids']}").fetchall()[0][0] == 6
            assert cur.execute(f"SELECT sum(id) FROM {second['ids']}").fetchall()[0][0] == 30
        assert cur.execute(f"SELECT sum(id) FROM {first['ids']}").fetchall()[0][0] == 6
        with pytest.raises(ZeroDivisionError):
            with temporary_tables(cur, ids=pa.table({"id": [5]})) as third:
                assert cur.execute(f"SELECT sum(id) FROM {third['ids']}").fetchall()[0][0] == 5
                raise ZeroDivisionError
        assert third["ids"] not in _temporary_views(client)
    assert _temporary_views(client) == []


def test_sql_literals_and_identifiers_round_trip(client):
    """store.sql's quoting reads back as the same value in DuckDB, awkward characters included."""
    from flatprint.store.sql import quote_ident, sql_literal

    values = ["plain", "it's", 'say "hi"', "back\\slash", "", "ünï", 0, -7, 2**62, 1.5, -0.25, True, False, None]
    got = client.cursor().execute("SELECT " + ", ".join(sql_literal(v) for v in values)).fetchall()[0]
    assert list(got) == values
    nan, inf, ninf = (
        client.cursor()
        .execute(f"SELECT {sql_literal(float('nan'))}, {sql_literal(float('inf'))}, {sql_literal(float('-inf'))}")
        .fetchall()[0]
    )
    assert nan != nan and inf == float("inf") and ninf == float("-inf")
    assert (
        sql_literal(np.int64(5)) == "5"
        and sql_literal(np.float32(0.5)) == "0.5"
        and sql_literal(np.bool_(True)) == "TRUE"
    )
    with pytest.raises(QueryError, match="unsupported value"):
        sql_literal({"a": 1})
    name = 'odd "name" with spaces'
    result = client.cursor().execute(f"SELECT 1 AS {quote_ident(name)}")
    assert result.description[0][0] == name and result.fetchall() == [(1,)]


def oracle_simple_connections(release, sources, targets, min_weight, properties) -> pd.DataFrame:
    """fetch_simple_connections from the feathers: per pair the weight (synapse pairs), weightHP (both
    confidences past neuPrint's thresholds), each end's properties and the ConnectsTo roiInfo: per ROI
    of the post point (the primary ROI, its ancestors, the major region) the PSDs and distinct T-bars."""
    p = partners_with_rois(release)
    p = p[p.body_pre.isin(sources) & p.body_post.isin(targets)].copy()
    p["tbar"] = point_id(p.x_pre, p.y_pre, p.z_pre).to_numpy()
    p["hp"] = (p.conf_post >= 0.7) & (p.conf_pre >= 0.0)
    pairs = p.groupby(["body_pre", "body_post"]).agg(weight=("tbar", "size"), weightHP=("hp", "sum")).reset_index()
    pairs = pairs[pairs.weight >= min_weight]
    chains = roi_chains(release)
    info: dict = {}
    for a, b, primary, major, tbar in zip(p.body_pre, p.body_post, p.primary_post, p.major_post, p.tbar):
        rois = [] if primary == "<unspecified>" else [c for c in chains.get(primary, []) if c not in MAJORS]
        rois += [] if major == "<unspecified>" else [major]
        for roi in rois:
            info.setdefault((a, b), {}).setdefault(roi, []).append(tbar)
    segments = oracle_segments(release)
    rows = []
    for a, b, weight, hp in pairs.itertuples(index=False):
        row = {"bodyId_pre": a, "bodyId_post": b, "weight": weight, "weightHP": hp}
        for prop in properties:
            row[f"{prop}_pre"], row[f"{prop}_post"] = (_plain(segments.at[a, prop]), _plain(segments.at[b, prop]))
        per_roi = info.get((a, b), {})
        row["conn_roiInfo"] = {r: {"pre": len(set(t)), "post": len(t)} for r, t in sorted(per_roi.items())}
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.sort_values(["weight", "bodyId_pre", "bodyId_post"], ascending=[False, True, True])


@pytest.mark.parametrize("targets", ["neurons", "segments"])
def test_simple_connections_whole_frame(client, release_dir, targets):
    """Every column of fetch_simple_connections equals pandas on the feathers, for neuron partners (the
    neuron-only tables) and for every segment (``segments`` and ``connection_rois``): the ends' rows and
    each pair's roiInfo are read by id ranges and one grouped scan, not one range or subquery per end."""
    segments = oracle_segments(release_dir)
    sources = neuron_ids(release_dir, ["DNge104"])
    target_criteria, target_ids = (
        (None, segments.index[segments.is_neuron]) if targets == "neurons" else (NC(label="Segment"), segments.index)
    )
    properties = ["type", "instance", "status"]
    got = flatprint.fetch_simple_connections(
        NC(bodyId=sources), target_criteria, min_weight=2, properties=properties, client=client
    )
    want = oracle_simple_connections(release_dir, sources, target_ids, 2, properties)
    assert len(want) > 10
    if targets == "segments":
        assert not set(want.bodyId_post) <= set(segments.index[segments.is_neuron]), "no non-neuron partner"
    columns = ["bodyId_pre", "bodyId_post", "weight", "weightHP"]
    assert got[columns].values.tolist() == want[columns].values.tolist()
    for prop in properties:
        for side in ("pre", "post"):
            assert [_plain(v) for v in got[f"{prop}_{side}"]] == want[f"{prop}_{side}"].tolist(), (prop, side)
    assert got.conn_roiInfo.tolist() == want.conn_roiInfo.tolist()
