"""flatprint.query.heavy: the heavy queries on DuckDB equal a pandas oracle on the raw release
feathers, and the same SQL transpiled by sqlglot gives the same rows on Spark over the Parquet export.

Spark tests share ONE session-scoped local SparkSession and are few (startup is slow)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from oracle import load, oracle_segments, point_id, roi_chains

from flatprint.export.parquet import duckdb_over_parquet
from flatprint.query import heavy

# ----------------------------------------------------------------------------- oracle (pandas only)


def oracle_partners(release) -> pd.DataFrame:
    """syn-partners with the pre point's primary ROI and the post point's major ROI looked up."""
    partners = load(release, "syn-partners").copy()
    points = load(release, "syn-points")
    pre = point_id(partners.x_pre, partners.y_pre, partners.z_pre).to_numpy()
    post = point_id(partners.x_post, partners.y_post, partners.z_post).to_numpy()
    partners["roi_pre"] = points["primary"].astype(str).reindex(pre).to_numpy()
    partners["roi_post"] = partners["primary_post"].astype(str)
    partners["major_pre"] = points["major"].astype(str).reindex(pre).to_numpy()
    partners["major_post"] = points["major"].astype(str).reindex(post).to_numpy()
    return partners


def post_roi_sets(partners: pd.DataFrame, release) -> list[set]:
    chains = roi_chains(release)
    out = []
    for prim, major in zip(partners["roi_post"], partners["major_post"]):
        rois = set(chains.get(prim, [])) if prim != "<unspecified>" else set()
        if major != "<unspecified>":
            rois.add(major)
        out.append(rois)
    return out


def oracle_group_matrix(release, col, min_weight=1, neurons_only=True) -> pd.DataFrame:
    seg = oracle_segments(release)
    w = load(release, "weights")
    w = w[w["weight"] >= min_weight]
    a, b = seg.reindex(w["body_pre"]), seg.reindex(w["body_post"])
    keep = a[col].notna().to_numpy() & b[col].notna().to_numpy()
    if neurons_only:
        keep &= a["is_neuron"].to_numpy() & b["is_neuron"].to_numpy()
    df = pd.DataFrame(
        {
            "pre_group": a[col].astype(object).to_numpy()[keep],
            "post_group": b[col].astype(object).to_numpy()[keep],
            "weight": w["weight"].to_numpy()[keep],
        }
    )
    return (
        df.groupby(["pre_group", "post_group"])
        .agg(weight=("weight", "sum"), connections=("weight", "size"))
        .reset_index()
    )


def oracle_roi_matrix(release, min_weight=1, neurons_only=True, level="primary") -> pd.DataFrame:
    p = oracle_partners(release)
    seg = oracle_segments(release)
    w = load(release, "weights").set_index(["body_pre", "body_post"])["weight"]
    total = w.reindex(pd.MultiIndex.from_arrays([p.body_pre, p.body_post])).to_numpy()
    pre_col, post_col = ("roi_pre", "roi_post") if level == "primary" else ("major_pre", "major_post")
    keep = (
        (total >= min_weight) & (p[pre_col] != "<unspecified>").to_numpy() & (p[post_col] != "<unspecified>").to_numpy()
    )
    if neurons_only:
        keep &= seg["is_neuron"].reindex(p.body_pre).to_numpy() & seg["is_neuron"].reindex(p.body_post).to_numpy()
    p = p[keep]
    pairs = p.groupby([pre_col, post_col, "body_pre", "body_post"]).size().rename("n").reset_index()
    out = pairs.groupby([pre_col, post_col]).agg(weight=("n", "sum"), connections=("n", "size")).reset_index()
    return out.rename(columns={pre_col: "pre_group", post_col: "post_group"})


def sort_frame(df: pd.DataFrame, keys) -> pd.DataFrame:
    return df.sort_values(list(keys), ignore_index=True) if keys else df.reset_index(drop=True)


def assert_same(got: pd.DataFrame, exp: pd.DataFrame, keys) -> None:
    assert list(got.columns) == list(exp.columns), (list(got.columns), list(exp.columns))
    assert len(got) == len(exp), (len(got), len(exp))
    g, e = sort_frame(got, keys), sort_frame(exp, keys)
    for col in g.columns:
        gv, ev = g[col].to_numpy(), e[col].to_numpy()
        if pd.api.types.is_float_dtype(g[col]) or pd.api.types.is_float_dtype(e[col]):
            assert np.allclose(gv.astype(float), ev.astype(float), atol=1e-6, equal_nan=True), col
        elif pd.api.types.is_integer_dtype(g[col]) or pd.api.types.is_integer_dtype(e[col]):
            assert (gv.astype(np.int64) == ev.astype(np.int64)).all(), col
        else:
            assert (
                pd.Series(gv).fillna("<na>").astype(str).to_numpy()
                == pd.Series(ev).fillna("<na>").astype(str).to_numpy()
            ).all(), col


@pytest.fixture(scope="module")
def store(store_path):
    from flatprint.store import Store

    st = Store.open(store_path)
    yield st
    st.close()


@pytest.fixture(scope="module")
def some_bodies(release_dir):
    """A few dozen neurons plus the DNge104 pair, and some fragments."""
    seg = oracle_segments(release_dir)
    neurons = seg.index[seg["is_neuron"]]
    frags = seg.index[~seg["is_neuron"] & (seg["synweight"] > 20)]
    return sorted(set(neurons[::15].tolist()) | {12781, 556329} | set(frags[:20].tolist()))


# ----------------------------------------------------------------------------- DuckDB vs oracle


@pytest.mark.parametrize(
    "col,min_weight,neurons_only",
    [("type", 1, True), ("type", 5, False), ("class", 3, True), ("superclass", 1, True), ("instance", 1, False)],
)
def test_group_matrix_matches_oracle(store, release_dir, col, min_weight, neurons_only):
    got = heavy.run_duckdb(store, "connection_matrix", groupby=col, min_weight=min_weight, neurons_only=neurons_only)
    exp = oracle_group_matrix(release_dir, col, min_weight, neurons_only)
    assert len(got) > 0
    assert_same(got, exp, ["pre_group", "post_group"])
    assert list(got[["pre_group", "post_group"]].itertuples(index=False)) == sorted(
        got[["pre_group", "post_group"]].itertuples(index=False)
    )


@pytest.mark.parametrize(
    "min_weight,neurons_only,level", [(1, True, "primary"), (3, False, "primary"), (1, False, "major")]
)
def test_roi_matrix_matches_oracle(store, release_dir, min_weight, neurons_only, level):
    got = heavy.run_duckdb(
        store, "connection_matrix", groupby="roi", min_weight=min_weight, neurons_only=neurons_only, roi_set=level
    )
    exp = oracle_roi_matrix(release_dir, min_weight, neurons_only, level)
    assert len(got) > 0
    assert_same(got, exp, ["pre_group", "post_group"])


@pytest.mark.parametrize("groupby", ["type", "roi"])
def test_matrix_restricted_to_bodies_and_rois_matches_oracle(store, release_dir, some_bodies, groupby):
    """pre_bodies / post_bodies restrict the two sides; rois keeps synapse pairs whose PSD is in a listed
    ROI (any level, counted once even when several listed ROIs contain it)."""
    seg = oracle_segments(release_dir)
    pre = seg.index[seg["is_neuron"]][::2].tolist()
    post = seg.index[seg["is_neuron"]][::3].tolist()
    rois = ["CentralBrain", "SMP(R)", "GNG"]  # SMP(R) lies inside CentralBrain: no double counting
    got = heavy.run_duckdb(
        store, "connection_matrix", groupby=groupby, min_weight=2, pre_bodies=pre, post_bodies=post, rois=rois
    )
    p = oracle_partners(release_dir)
    w = load(release_dir, "weights").set_index(["body_pre", "body_post"])["weight"]
    p = p[(p.body_pre.isin(pre) & p.body_post.isin(post)).to_numpy()]
    p = p[[bool(r & set(rois)) for r in post_roi_sets(p, release_dir)]]
    total = w.reindex(pd.MultiIndex.from_arrays([p.body_pre, p.body_post])).to_numpy()
    p = p[total >= 2]
    if groupby == "roi":
        p = p[((p.roi_pre != "<unspecified>") & (p.roi_post != "<unspecified>")).to_numpy()]
        p = p.assign(pre_group=p.roi_pre, post_group=p.roi_post)
    else:
        p = p.assign(
            pre_group=seg["type"].reindex(p.body_pre).to_numpy(), post_group=seg["type"].reindex(p.body_post).to_numpy()
        ).dropna(subset=["pre_group", "post_group"])
    pairs = p.groupby(["pre_group", "post_group", "body_pre", "body_post"]).size().rename("n").reset_index()
    exp = pairs.groupby(["pre_group", "post_group"]).agg(weight=("n", "sum"), connections=("n", "size")).reset_index()
    assert len(got) > 0
    assert_same(got, exp, ["pre_group", "post_group"])


@pytest.mark.parametrize("rois,min_conf", [(None, 0.0), (["CentralBrain", "GNG", "VNC"], 0.0), (None, 0.8)])
def test_synapse_connections_match_oracle(store, release_dir, some_bodies, rois, min_conf):
    pre, post = some_bodies[: len(some_bodies) // 2 + 5], some_bodies[len(some_bodies) // 3 :]
    got = heavy.run_duckdb(store, "synapse_connections", pre_bodies=pre, post_bodies=post, rois=rois, min_conf=min_conf)
    p = oracle_partners(release_dir)
    keep = p.body_pre.isin(pre) & p.body_post.isin(post) & (p.conf_pre >= min_conf) & (p.conf_post >= min_conf)
    p = p[keep.to_numpy()]
    if rois is not None:
        p = p[[bool(s & set(rois)) for s in post_roi_sets(p, release_dir)]]
    cols = [
        "body_pre",
        "body_post",
        "x_pre",
        "y_pre",
        "z_pre",
        "x_post",
        "y_post",
        "z_post",
        "conf_pre",
        "conf_post",
        "roi_pre",
        "roi_post",
    ]
    exp = p[cols].replace({"roi_pre": {"<unspecified>": None}, "roi_post": {"<unspecified>": None}})
    assert len(got) > 0
    assert got["pre_id"].is_monotonic_increasing
    assert_same(got[cols], exp.reset_index(drop=True), ["x_pre", "y_pre", "z_pre", "x_post", "y_post", "z_post"])


@pytest.mark.parametrize("direction", ["out", "in", "both", "within"])
def test_adjacencies_match_oracle(store, release_dir, some_bodies, direction):
    w = load(release_dir, "weights")
    got = heavy.run_duckdb(store, "adjacencies", bodies=some_bodies, direction=direction, min_weight=2)
    pre_in, post_in = w.body_pre.isin(some_bodies), w.body_post.isin(some_bodies)
    sel = {"out": pre_in, "in": post_in, "both": pre_in | post_in, "within": pre_in & post_in}[direction]
    exp = w[sel & (w.weight >= 2)]
    assert len(got) == len(exp) > 0
    assert_same(
        got[["body_pre", "body_post", "weight"]],
        exp[["body_pre", "body_post", "weight"]].reset_index(drop=True),
        ["body_pre", "body_post"],
    )


def test_adjacencies_per_roi_match_oracle(store, release_dir, some_bodies):
    rois = ["CentralBrain", "GNG", "SMP(R)", "VNC"]
    got = heavy.run_duckdb(store, "adjacencies", bodies=some_bodies, direction="out", rois=rois, min_weight=3)
    p = oracle_partners(release_dir)
    w = load(release_dir, "weights").set_index(["body_pre", "body_post"])["weight"]
    p = p[p.body_pre.isin(some_bodies).to_numpy()]
    rows = [
        (a, b, r) for a, b, s in zip(p.body_pre, p.body_post, post_roi_sets(p, release_dir)) for r in s if r in rois
    ]
    exp = pd.DataFrame(rows, columns=["body_pre", "body_post", "roi"]).value_counts().rename("weight").reset_index()
    total = w.reindex(pd.MultiIndex.from_frame(exp[["body_pre", "body_post"]])).to_numpy()
    exp = exp[total >= 3].reset_index(drop=True)
    assert len(got) > 0
    assert_same(got, exp, ["body_pre", "body_post", "roi"])


def test_arguments_are_validated():
    from flatprint.errors import QueryError

    with pytest.raises(QueryError, match="groupby"):
        heavy.connection_matrix_sql("type; DROP TABLE segments")
    with pytest.raises(QueryError, match="integers"):
        heavy.synapse_connections_sql(["1 OR 1=1"], [2])
    with pytest.raises(QueryError, match="direction"):
        heavy.adjacencies_sql([1], direction="sideways")
    sql = heavy.adjacencies_sql([1], rois=["it's"])
    assert "'it''s'" in sql
    assert "FALSE" in heavy.synapse_connections_sql([], [1])  # empty set: valid SQL, no rows
    with pytest.raises(QueryError, match="unknown heavy query"):
        heavy.query_sql("pagerank")
    assert set(heavy.QUERIES) == {"connection_matrix", "synapse_connections", "adjacencies"}


def test_duckdb_over_parquet_equals_store(store, store_path, tmp_path_factory, some_bodies):
    """The Parquet export carries the same data the heavy queries read (cheap check without Spark)."""
    pq_dir = _parquet(store_path, tmp_path_factory)
    con = duckdb_over_parquet(pq_dir)
    for name, args in [
        ("connection_matrix", {"groupby": "roi"}),
        ("synapse_connections", {"pre_bodies": some_bodies, "post_bodies": some_bodies}),
    ]:
        a = heavy.run_duckdb(store, name, **args)
        b = heavy.run_duckdb(con, name, **args)
        assert_same(b, a, list(a.columns[:4]))


# ----------------------------------------------------------------------------- Spark

_PARQUET: dict = {}


def _parquet(store_path, tmp_path_factory):
    if store_path not in _PARQUET:
        from flatprint.export.parquet import export_parquet

        out = tmp_path_factory.mktemp("spark-parquet") / "pq"
        export_parquet(store_path, out)
        _PARQUET[store_path] = out
    return _PARQUET[store_path]


@pytest.fixture(scope="session")
def spark():
    pytest.importorskip("pyspark", reason="pyspark is an optional dependency (pip install pyspark; Java 17)")
    from flatprint.export.spark import get_spark

    session = get_spark(app_name="flatprint-tests", cores=2, driver_memory="1g")
    yield session
    session.stop()


def test_spark_equals_duckdb(spark, store, store_path, tmp_path_factory, some_bodies):
    """Every heavy query, transpiled by sqlglot, gives DuckDB's rows on Spark over the Parquet export."""
    from flatprint.export.spark import run_spark

    pq_dir = _parquet(store_path, tmp_path_factory)
    cases = [
        ("connection_matrix", {"groupby": "type", "min_weight": 2, "neurons_only": False}),
        ("connection_matrix", {"groupby": "roi", "rois": ["CentralBrain", "SMP(R)"], "post_bodies": some_bodies}),
        (
            "synapse_connections",
            {"pre_bodies": some_bodies, "post_bodies": some_bodies, "rois": ["CentralBrain", "VNC"], "min_conf": 0.6},
        ),
        ("adjacencies", {"bodies": some_bodies, "direction": "within", "rois": ["CentralBrain", "GNG"]}),
    ]
    for name, args in cases:
        a = heavy.run_duckdb(store, name, **args)
        b = run_spark(pq_dir, name, spark=spark, **args)
        assert len(a) > 0, (name, args)
        assert list(b.columns) == list(a.columns), (name, args)
        # both engines return rows already in the query's ORDER BY
        assert_same(b.reset_index(drop=True), a.reset_index(drop=True), [])
        keys = list(a.columns[:2])
        assert b[keys].astype(str).equals(a[keys].astype(str)), (name, args, "row order")


def test_spark_sql_is_transpiled(spark, store_path, tmp_path_factory):
    from flatprint.export.spark import register_parquet

    register_parquet(spark, _parquet(store_path, tmp_path_factory))
    sql = heavy.connection_matrix_sql("type")
    spark_sql = heavy.to_spark_sql(sql)
    assert '"type"' in sql and "`type`" in spark_sql
    # the temp views are named like the store's tables
    assert {t.name for t in spark.catalog.listTables()} >= set(heavy.TABLES)


def test_spark_on_a_partial_export(spark, store, store_path, tmp_path_factory):
    """run_spark on an export of some tables (export_parquet(tables=...)): the queries those tables
    answer give DuckDB's rows; one reading a table left out fails naming it, even when the session
    registered that table from another export before."""
    from flatprint.export.parquet import export_parquet
    from flatprint.export.spark import run_spark

    full = _parquet(store_path, tmp_path_factory)
    run_spark(full, "connection_matrix", spark=spark, groupby="roi")  # registers partners of the full export
    part = tmp_path_factory.mktemp("spark-partial") / "pq"
    export_parquet(store_path, part, tables=["segments", "connections"])
    a = heavy.run_duckdb(store, "connection_matrix", groupby="type")
    b = run_spark(part, "connection_matrix", spark=spark, groupby="type")
    assert len(a) > 0
    assert_same(b.reset_index(drop=True), a.reset_index(drop=True), [])
    with pytest.raises(Exception, match="partners"):
        run_spark(part, "connection_matrix", spark=spark, groupby="roi")
