"""fetch_neurons / NeuronCriteria / ROI and meta functions against pandas on the raw feathers."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from oracle import load, oracle_segments, roi_chains

import flatprint
from flatprint import Client, IsNull, NeuronCriteria as NC, NotNull
from flatprint.errors import NoMatchWarning, QueryError
from flatprint.query.neurons import ROI_INFO_PARSE_LIMIT
from flatprint.query.results import JsonDict


def oracle_neurons(release) -> pd.DataFrame:
    return oracle_segments(release).reset_index()


def oracle_roi_counts(release, bodies) -> pd.DataFrame:
    """bodyId, roi, pre, post per ROI at every level (by each point's primary ROI and major region)."""
    points = load(release, "syn-points")
    pts = points[points["body"].isin(bodies)]
    chains = roi_chains(release)
    rows = []
    for (body, kind, prim, major), n in (
        pts.groupby(["body", "kind", pts["primary"].astype(str), pts["major"].astype(str)], observed=True)
        .size()
        .items()
    ):
        rois = set(c for c in chains.get(prim, []) if c not in ("CentralBrain", "Optic(L)", "Optic(R)", "CV", "VNC"))
        if major != "<unspecified>":
            rois.add(major)
        for roi in rois:
            rows.append((body, roi, n if kind == "PreSyn" else 0, n if kind == "PostSyn" else 0))
    df = pd.DataFrame(rows, columns=["bodyId", "roi", "pre", "post"])
    return df.groupby(["bodyId", "roi"], as_index=False).sum()


def test_dnge104_snippet(client, release_dir):
    neurons, roi_counts = flatprint.fetch_neurons("DNge104")
    assert neurons["bodyId"].tolist() == [12781, 556329]
    assert neurons["instance"].tolist() == ["DNge104_R", "DNge104_L"]
    stats = load(release_dir, "stats").set_index("body")
    assert neurons["pre"].tolist() == stats.loc[[12781, 556329], "pre"].tolist()
    assert neurons["post"].tolist() == stats.loc[[12781, 556329], "post"].tolist()
    assert list(neurons.columns[:3]) == ["bodyId", "instance", "type"]
    assert neurons.columns[-2:].tolist() == ["inputRois", "outputRois"]
    assert neurons.attrs["dataset"] == "male-cns" and neurons.attrs["version"] == "v0.9"
    assert "DNge104" in neurons.attrs["query"]
    # per-ROI counts equal pandas on syn-points (primary and grouping ROIs), plus NotPrimary rows
    expected = oracle_roi_counts(release_dir, [12781, 556329]).set_index(["bodyId", "roi"])
    got = roi_counts[roi_counts.roi != "NotPrimary"].set_index(["bodyId", "roi"])[["pre", "post"]]
    pd.testing.assert_frame_equal(got.sort_index(), expected.sort_index(), check_dtype=False)
    primary = set(client.primary_rois)
    in_primary = expected[expected.index.get_level_values("roi").isin(primary)].groupby("bodyId").sum()
    np_rows = roi_counts[roi_counts.roi == "NotPrimary"].set_index("bodyId")
    for body in (12781, 556329):
        want_post = stats.loc[body, "post"] - in_primary.loc[body, "post"]
        assert np_rows.loc[body, "post"] == want_post


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    "case",
    [
        "type_exact",
        "type_list",
        "regex",
        "instance",
        "status",
        "nulls",
        "notnull",
        "min_pre",
        "segment_ids",
        "class",
        "apostrophe",
        "metachar_literal",
        "metachar_regex",
        "empty",
        "somaSide_list",
        "predictedNt",
    ],
)
def test_fetch_neurons_matches_oracle(store_factory, release_factory, seed, case):
    release = release_factory(seed)
    c = Client(store_factory(seed))
    o = oracle_neurons(release)
    neurons = o[o.is_neuron]
    types = sorted(neurons["type"].dropna().unique())
    t0, t1 = types[3], types[7]
    if case == "type_exact":
        crit, want = NC(type=t0), neurons[neurons.type == t0]
    elif case == "type_list":
        crit, want = NC(type=[t0, t1]), neurons[neurons.type.isin([t0, t1])]
    elif case == "regex":
        prefix = t0[:3]
        crit = NC(type=f"{re.escape(prefix)}.*")
        want = neurons[neurons.type.fillna("").str.fullmatch(f"{re.escape(prefix)}.*")]
    elif case == "instance":
        inst = neurons["instance"].dropna().iloc[5]
        crit, want = NC(instance=inst), neurons[neurons.instance == inst]
    elif case == "status":
        crit, want = NC(status="Anchor"), neurons[neurons.status == "Anchor"]
    elif case == "nulls":
        crit, want = NC(type=IsNull), neurons[neurons.type.isna()]
    elif case == "notnull":
        crit, want = NC(somaLocation=NotNull, type=t0), neurons[neurons.somaLocation.notna() & (neurons.type == t0)]
    elif case == "min_pre":
        crit, want = NC(min_pre=500, min_post=100), neurons[(neurons.pre >= 500) & (neurons.post >= 100)]
    elif case == "segment_ids":
        ids = o.loc[~o.is_neuron, "bodyId"].iloc[:5].tolist() + [12781]
        crit, want = NC(bodyId=ids), o[o.bodyId.isin(ids)]
    elif case == "class":
        crit, want = NC(class_="DN"), neurons[neurons["class"] == "DN"]
    elif case == "apostrophe":
        crit, want = NC(type="KCa'b'-m"), neurons[neurons.type == "KCa'b'-m"]
    elif case == "metachar_literal":
        crit, want = NC(type="LHPV6q1+", regex=False), neurons[neurons.type == "LHPV6q1+"]
    elif case == "metachar_regex":  # regex='guess' treats '+' as a regex: matches LHPV6q1, LHPV6q11, ...
        crit, want = NC(type="LHPV6q1+"), neurons[neurons.type.fillna("").str.fullmatch("LHPV6q1+")]
    elif case == "empty":
        crit, want = NC(type="no-such-type"), neurons.iloc[:0]
    elif case == "somaSide_list":
        crit, want = NC(somaSide=["L", None], type=t1), neurons[neurons.somaSide.isin(["L"]) | neurons.somaSide.isna()]
        want = want[want.type == t1]
    else:
        crit, want = (
            NC(predictedNt="gaba"),
            neurons[neurons.bodyId.isin(load(release, "neurotransmitters").query("predicted_nt == 'gaba'")["body"])],
        )
    got = flatprint.fetch_neurons(crit, omit_rois=True, client=c)
    assert got["bodyId"].tolist() == sorted(want["bodyId"].tolist())
    if len(got):
        w = want.set_index("bodyId").loc[got["bodyId"]]
        assert got["pre"].tolist() == w["pre"].tolist()
        assert got["type"].fillna("<na>").tolist() == w["type"].astype(object).fillna("<na>").tolist()
    c.close()


def test_roi_criteria(client, release_dir):
    o = oracle_neurons(release_dir)
    neurons = o[o.is_neuron]
    counts = oracle_roi_counts(release_dir, neurons["bodyId"])
    has = lambda roi: set(counts.loc[counts.roi == roi, "bodyId"])  # noqa: E731
    got = flatprint.fetch_neurons(NC(rois=["GNG", "FB"]), omit_rois=True, client=client)
    assert set(got.bodyId) == has("GNG") & has("FB")
    got = flatprint.fetch_neurons(NC(rois=["GNG", "FB"], roi_req="any"), omit_rois=True, client=client)
    assert set(got.bodyId) == has("GNG") | has("FB")
    got = flatprint.fetch_neurons(NC(rois=["a'L(R)"]), omit_rois=True, client=client)
    assert set(got.bodyId) == has("a'L(R)") and len(got) > 0
    c = counts.set_index(["bodyId", "roi"])
    inputs = {b for (b, r), row in c.iterrows() if r == "GNG" and row["post"] >= 10}
    outputs = {b for (b, r), row in c.iterrows() if r == "VNC" and row["pre"] >= 1}
    got = flatprint.fetch_neurons(
        NC(inputRois=["GNG"], outputRois=["VNC"], min_roi_inputs=10), omit_rois=True, client=client
    )
    assert set(got.bodyId) == inputs & outputs and len(got) > 0


def test_returned_columns(client):
    core, _ = flatprint.fetch_neurons("DNge104", returned_columns="core", client=client)
    assert core.columns.tolist() == [
        "bodyId",
        "instance",
        "type",
        "pre",
        "post",
        "downstream",
        "upstream",
        "size",
        "status",
        "statusLabel",
        "somaLocation",
        "roiInfo",
        "inputRois",
        "outputRois",
    ]
    few = flatprint.fetch_neurons("DNge104", returned_columns=["type", "nope", "bodyId"], omit_rois=True, client=client)
    assert few.columns.tolist() == ["type", "bodyId"]


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda c: flatprint.fetch_neurons(NC(rois=["AL(X)"]), client=c), r"rois: unknown ROI 'AL\(X\)'.*AL\("),
        (lambda c: flatprint.fetch_neurons(NC(inputRois=["GNGG"]), client=c), r"inputRois: unknown ROI 'GNGG'.*'GNG'"),
        (lambda c: flatprint.fetch_neurons(NC(cellBodyFiber="x"), client=c), r"cellBodyFiber: this dataset has no"),
        (lambda c: flatprint.fetch_neurons(NC(type="[unclosed"), client=c), r"type: invalid regular expression"),
        (lambda c: flatprint.fetch_neurons(NC(min_pre=-1), client=c), r"min_pre"),
        (lambda c: flatprint.fetch_neurons("DNge104", returned_columns=5, client=c), r"returned_columns"),
        (lambda c: NC("DNge104"), r"matchvar"),
        (lambda c: NC(roi_req="some"), r"roi_req"),
    ],
)
def test_errors_name_the_argument(client, bad, message):
    with pytest.raises(QueryError, match=message):
        bad(client)


def test_meta_and_rois(client, release_dir):
    points = load(release_dir, "syn-points")
    meta = flatprint.fetch_meta(client=client)
    assert meta["dataset"] == "male-cns" and isinstance(meta["roiInfo"], dict)
    primary = sorted(set(points["primary"].cat.categories) - {"<unspecified>"})
    assert flatprint.fetch_primary_rois(client=client) == primary
    all_rois = flatprint.fetch_all_rois(client=client)
    assert set(primary) < set(all_rois) and {"MB(R)", "CX", "CentralBrain"} <= set(all_rois)
    tree = flatprint.fetch_roi_hierarchy(client=client)
    assert "a'L(R)*" in tree["CNS"]["CentralBrain"]["MB(R)"]
    text = flatprint.fetch_roi_hierarchy(format="text", client=client)
    assert text.startswith("CNS") and "+-- FB*" in text


def test_results_convert(client):
    neurons = flatprint.fetch_neurons("DNge104", omit_rois=True, client=client)
    table = flatprint.to_arrow(neurons)
    assert table.num_rows == 2 and b"flatprint" in table.schema.metadata
    pl_df = flatprint.to_polars(neurons)
    assert pl_df["bodyId"].to_list() == [12781, 556329]


def test_client_errors(tmp_path):
    with pytest.raises(QueryError, match="neuprint-python"):
        Client("https://neuprint.janelia.org")
    from flatprint.errors import StoreError

    with pytest.raises(StoreError):
        Client(tmp_path / "missing.duckdb")


def test_roi_counts_from_roi_info_and_from_store_agree(client, release_dir, monkeypatch):
    """fetch_neurons unpacks roiInfo for few neurons and reads segment_rois for many: both paths give
    the same frames, and both equal pandas on syn-points."""
    from flatprint.query import neurons as neurons_module

    results = {}
    for name, limit in (("roi_info", 10**9), ("store", 0)):
        monkeypatch.setattr(neurons_module, "ROI_INFO_PARSE_LIMIT", limit)
        results[name] = flatprint.fetch_neurons(NC(rois=["GNG"]), client=client)
    (n1, r1), (n2, r2) = results["roi_info"], results["store"]
    assert len(n1) > 5
    pd.testing.assert_frame_equal(n1, n2)
    pd.testing.assert_frame_equal(r1.reset_index(drop=True), r2.reset_index(drop=True))
    expected = oracle_roi_counts(release_dir, n1["bodyId"]).set_index(["bodyId", "roi"])
    got = r1[r1.roi != "NotPrimary"].set_index(["bodyId", "roi"])[["pre", "post"]]
    pd.testing.assert_frame_equal(got.sort_index(), expected.sort_index(), check_dtype=False)
    inputs = expected[expected.post > 0].reset_index().groupby("bodyId")["roi"].apply(sorted)
    assert [sorted(v) for v in n1["inputRois"]] == [inputs.get(b, []) for b in n1["bodyId"]]


# ------------------------------------------------------------------------------------------ every cell
# The ways fetch_neurons reads per-ROI rows: (USE_NEURON_TABLE, ROI_INFO_PARSE_LIMIT). Through SQL: the roiInfo
# text (few neurons) or the store's ROI tables (many); "table": the neurons in RAM (store/neurontable.py).
PATHS = {"roi_info": (False, 10**9), "store": (False, 0), "table": (True, 0)}


def use_path(monkeypatch, path: str) -> None:
    from flatprint.query import neurons as neurons_module

    use_table, limit = PATHS[path]
    monkeypatch.setattr(neurons_module, "USE_NEURON_TABLE", use_table)
    monkeypatch.setattr(neurons_module, "ROI_INFO_PARSE_LIMIT", limit)


def oracle_roi_table(release, bodies) -> pd.DataFrame:
    """bodyId, roi, pre, post, downstream, upstream, synweight per ROI at every level, from syn-points
    (pre, post) and syn-partners (downstream: the PSDs partnered with the body's T-bars in the ROI)."""
    points = load(release, "syn-points")
    pts = points[points["body"].isin(bodies)].reset_index(drop=True)
    partners = load(release, "syn-partners")
    partners = partners[partners["body_pre"].isin(bodies)]
    key = ["body", "x", "y", "z"]
    tbars = pts.loc[pts["kind"] == "PreSyn", key]
    down = partners.groupby(["body_pre", "x_pre", "y_pre", "z_pre"]).size()
    down.index.names = key
    pts["downstream"] = 0
    pts.loc[tbars.index, "downstream"] = down.reindex(pd.MultiIndex.from_frame(tbars), fill_value=0).to_numpy()
    chains = roi_chains(release)
    top = ("CentralBrain", "Optic(L)", "Optic(R)", "CV", "VNC")
    rows = []
    for (body, kind, prim, major), group in pts.groupby(
        ["body", "kind", pts["primary"].astype(str), pts["major"].astype(str)], observed=True
    ):
        rois = {c for c in chains.get(prim, []) if c not in top}
        if major != "<unspecified>":
            rois.add(major)
        n, d = len(group), int(group["downstream"].sum())
        for roi in rois:
            pre = n if kind == "PreSyn" else 0
            post = n if kind == "PostSyn" else 0
            rows.append((body, roi, pre, post, d, post, d + post))
    columns = ["bodyId", "roi", "pre", "post", "downstream", "upstream", "synweight"]
    df = pd.DataFrame(rows, columns=columns)
    return df.groupby(["bodyId", "roi"], as_index=False).sum()


def expected_roi_counts(release, neuron_df, primary, count_cols) -> pd.DataFrame:
    """neuprint-python's roi_counts_df on the oracle: the ROI rows plus NotPrimary (the body's totals
    from body-stats minus its counts in primary ROIs), sorted, rows without any count dropped."""
    bodies = neuron_df["bodyId"].tolist()
    table = oracle_roi_table(release, bodies)
    stats = load(release, "stats").set_index("body")[["pre", "post", "downstream"]].reindex(bodies).fillna(0)
    totals = pd.DataFrame(
        {
            "bodyId": bodies,
            "pre": stats["pre"].astype(int).to_numpy(),
            "post": stats["post"].astype(int).to_numpy(),
            "downstream": stats["downstream"].astype(int).to_numpy(),
            "upstream": stats["post"].astype(int).to_numpy(),
        }
    ).set_index("bodyId")
    in_primary = table[table["roi"].isin(primary)].groupby("bodyId")[["pre", "post", "downstream", "upstream"]].sum()
    not_primary = (totals - in_primary.reindex(totals.index, fill_value=0)).reset_index()
    not_primary["roi"] = "NotPrimary"
    rows = pd.concat([table, not_primary], ignore_index=True)[["bodyId", "roi", *count_cols]]
    rows = rows.sort_values(["bodyId", "roi"], ignore_index=True)
    return rows[(rows[count_cols] != 0).any(axis=1)].reset_index(drop=True)


def body_without_rois(release) -> int:
    """A body in body-annotations with no synapse point (so an empty roiInfo)."""
    points = load(release, "syn-points")
    ann = load(release, "annotations")
    return int(ann.loc[~ann["bodyId"].isin(points["body"]), "bodyId"].iloc[0])


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize(
    "case",
    [
        "type",
        "types",
        "instance",
        "type_or_instance",
        "regex",
        "roi",
        "roi_any",
        "roi_min",
        "status",
        "several",
        "no_match",
        "without_rois",
        "core",
        "some_columns",
        "no_counts",
        "segments",
    ],
)
def test_fetch_neurons_every_cell_matches_oracle(client, release_dir, monkeypatch, path, case):
    """Every way of reading per-ROI rows (roiInfo for few neurons, the store for many, the neurons in
    RAM) gives, cell by cell, neuprint-python's frames computed by pandas on the raw feathers: the
    annotation and count columns, roiInfo maps, input/output ROI lists, roi_counts_df with NotPrimary
    rows, its dtypes and order."""
    use_path(monkeypatch, path)
    o = oracle_neurons(release_dir)
    neurons = o[o.is_neuron]
    types = sorted(neurons["type"].dropna().unique())
    columns = "all"
    if case in ("type", "core", "some_columns", "no_counts"):
        crit, want = NC(type=types[3]), neurons[neurons.type == types[3]]
        columns = {
            "type": "all",
            "core": "core",
            "some_columns": ["post", "type", "bodyId", "downstream"],
            "no_counts": ["bodyId", "type"],
        }[case]
    elif case == "types":
        crit, want = NC(type=types[3:9]), neurons[neurons.type.isin(types[3:9])]
    elif case == "instance":
        inst = neurons["instance"].dropna().iloc[5]
        crit, want = NC(instance=inst), neurons[neurons.instance == inst]
    elif case == "type_or_instance":  # the string shorthand: type OR instance
        inst = neurons["instance"].dropna().iloc[9]
        crit = NC(type=types[3], instance=inst)
        want = neurons[(neurons.type == types[3]) | (neurons.instance == inst)]
    elif case == "regex":
        crit, want = NC(type="DN.*"), neurons[neurons.type.fillna("").str.fullmatch("DN.*")]
    elif case in ("roi", "roi_any", "roi_min"):
        has = oracle_roi_table(release_dir, neurons["bodyId"])

        def having(roi, column="pre", minimum=0):
            rows = has[(has.roi == roi) & (has[column] >= minimum)]
            return neurons.bodyId.isin(rows["bodyId"])

        if case == "roi":
            crit, want = NC(rois=["FB"]), neurons[having("FB")]
        elif case == "roi_any":
            crit, want = NC(rois=["FB", "GNG"], roi_req="any"), neurons[having("FB") | having("GNG")]
        else:
            crit = NC(inputRois=["GNG"], outputRois=["VNC"], min_roi_inputs=10, min_roi_outputs=2)
            want = neurons[having("GNG", "post", 10) & having("VNC", "pre", 2)]
    elif case == "status":
        crit, want = NC(status="Anchor"), neurons[neurons.status == "Anchor"]
    elif case == "several":
        crit = NC(type=types[3:40], status=["Traced", "Anchor"], min_pre=50)
        want = neurons[neurons.type.isin(types[3:40]) & neurons.status.isin(["Traced", "Anchor"]) & (neurons.pre >= 50)]
    elif case == "no_match":
        crit, want = NC(type="no-such-type"), neurons.iloc[:0]
    elif case == "without_rois":
        ids = [body_without_rois(release_dir), 12781]
        crit, want = NC(bodyId=ids), o[o.bodyId.isin(ids)]
    else:
        ids = o.loc[~o.is_neuron, "bodyId"].iloc[:20].tolist() + [12781]
        crit, want = NC(bodyId=ids), o[o.bodyId.isin(ids)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoMatchWarning)
        neuron_df, roi_counts = flatprint.fetch_neurons(crit, returned_columns=columns, client=client)
    assert neuron_df["bodyId"].tolist() == sorted(want["bodyId"].tolist())
    assert len(neuron_df) > 0 or case == "no_match"
    if case in ("roi_any", "status", "several"):
        assert len(neuron_df) > 5
    if case == "roi":
        assert len(neuron_df) > 20  # enough neurons that the store path is the natural one
    # the annotation and count columns, cell by cell (missing values as None)
    w = o.set_index("bodyId").loc[neuron_df["bodyId"]]
    for column in ("type", "instance", "status", "class", "group", "somaSide", "pre", "post", "downstream"):
        if column in neuron_df.columns:
            got = neuron_df[column].astype(object).where(neuron_df[column].notna(), None).tolist()
            assert got == w[column].astype(object).where(w[column].notna(), None).tolist(), column
    for column in ("pre", "post", "downstream", "upstream"):
        if column in neuron_df.columns and len(neuron_df):
            assert neuron_df[column].dtype == "int64", column
    for column in ("type", "instance", "status"):
        if column in neuron_df.columns and neuron_df[column].notna().any():
            assert neuron_df[column].dtype == "str", column
    count_cols = [c for c in ("pre", "post", "downstream", "upstream") if c in neuron_df.columns]
    expected = expected_roi_counts(release_dir, neuron_df, set(client.primary_rois), count_cols)
    assert roi_counts.columns.tolist() == ["bodyId", "roi", *count_cols]
    # no rows at all: object columns, as pandas builds them from an empty list (and neuprint-python does)
    assert roi_counts["bodyId"].dtype == ("object" if case == "no_match" else "int64")
    assert all(roi_counts[c].dtype == "int64" for c in count_cols)
    assert roi_counts.index.equals(pd.RangeIndex(len(roi_counts)))
    if case == "no_counts":
        assert roi_counts.empty
    else:
        assert len(roi_counts) > 0 or case == "no_match"
        assert roi_counts["bodyId"].tolist() == expected["bodyId"].tolist()
        assert roi_counts["roi"].tolist() == expected["roi"].tolist()
        for c in count_cols:
            assert roi_counts[c].tolist() == expected[c].tolist(), c
        if case not in ("no_match", "segments"):  # (segments without synapses have no NotPrimary row)
            assert (roi_counts["roi"] == "NotPrimary").sum() == len(neuron_df) - (case == "without_rois")
    # roiInfo maps and the ROI lists, neuron by neuron
    table = oracle_roi_table(release_dir, neuron_df["bodyId"].tolist())
    by_body = {b: g.set_index("roi") for b, g in table.groupby("bodyId")}
    for body, info, inputs, outputs in zip(
        neuron_df["bodyId"], neuron_df["roiInfo"], neuron_df["inputRois"], neuron_df["outputRois"]
    ):
        g = by_body.get(body, table.iloc[:0].set_index("roi"))
        want_info = {roi: {k: int(v) for k, v in row.items() if k != "bodyId"} for roi, row in g.iterrows()}
        assert type(info) is JsonDict and info == want_info
        assert list(info) == sorted(want_info)
        assert all(list(v) == ["pre", "post", "downstream", "upstream", "synweight"] for v in info.values())
        assert inputs == sorted(g.index[g["post"] > 0]) and outputs == sorted(g.index[g["pre"] > 0])
    if case == "without_rois":
        row = neuron_df.set_index("bodyId").loc[body_without_rois(release_dir)]
        assert row["roiInfo"] == {} and row["inputRois"] == [] and row["outputRois"] == []


@pytest.mark.parametrize("path", sorted(PATHS))
def test_fetch_neurons_omit_rois_matches_oracle(client, release_dir, monkeypatch, path):
    use_path(monkeypatch, path)
    o = oracle_neurons(release_dir)
    neurons = o[o.is_neuron]
    got = flatprint.fetch_neurons(NC(rois=["FB"]), omit_rois=True, client=client)
    table = oracle_roi_table(release_dir, neurons["bodyId"])
    assert got["bodyId"].tolist() == sorted(set(table.loc[table.roi == "FB", "bodyId"]))
    assert "roiInfo" not in got.columns and "inputRois" not in got.columns
    w = neurons.set_index("bodyId").loc[got["bodyId"]]
    assert got["post"].tolist() == w["post"].tolist()


def test_fetch_custom_neurons_in_query_order_matches_oracle(client, release_dir):
    """fetch_custom_neurons keeps the query's row order (here descending bodyId) while its per-ROI
    rows come sorted by bodyId: every ROI list and roiInfo map belongs to its own row."""
    o = oracle_neurons(release_dir)
    neurons = o[o.is_neuron]
    want = sorted(neurons.loc[neurons.type.fillna("").str.startswith("DN"), "bodyId"], reverse=True)
    neuron_df, roi_counts = flatprint.fetch_custom_neurons(
        "MATCH (n :Neuron) WHERE n.type STARTS WITH 'DN' RETURN n ORDER BY n.bodyId DESC", client=client
    )
    assert neuron_df["bodyId"].tolist() == want and len(want) > 3
    count_cols = [c for c in ("pre", "post", "downstream", "upstream") if c in neuron_df.columns]
    expected = expected_roi_counts(release_dir, neuron_df, set(client.primary_rois), count_cols)
    assert roi_counts["bodyId"].tolist() == expected["bodyId"].tolist()
    assert roi_counts["roi"].tolist() == expected["roi"].tolist()
    for c in count_cols:
        assert roi_counts[c].tolist() == expected[c].tolist(), c
    table = oracle_roi_table(release_dir, want)
    for body, info, inputs in zip(neuron_df["bodyId"], neuron_df["roiInfo"], neuron_df["inputRois"]):
        g = table[table.bodyId == body].set_index("roi")
        assert set(info) == set(g.index) and inputs == sorted(g.index[g["post"] > 0])


# ------------------------------------------------------------------------------------------ RAM vs SQL
def assert_same_frames(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal frames: columns, dtypes, index, every cell, and each roiInfo map's type and key order
    (pandas compares dict cells with ==, which ignores order)."""
    pd.testing.assert_frame_equal(a, b)
    if "roiInfo" in a.columns:
        for x, y in zip(a["roiInfo"], b["roiInfo"]):
            assert type(x) is type(y) is JsonDict
            assert list(x) == list(y) and [list(v) for v in x.values()] == [list(v) for v in y.values()]
    for column in ("inputRois", "outputRois"):
        if column in a.columns:
            assert a[column].tolist() == b[column].tolist()


def table_and_sql_frames(client, monkeypatch, crit, **kwargs):
    from flatprint.query import neurons as neurons_module

    results = []
    for use_table in (True, False):
        monkeypatch.setattr(neurons_module, "USE_NEURON_TABLE", use_table)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoMatchWarning)
            got = flatprint.fetch_neurons(crit, client=client, **kwargs)
        results.append(got if isinstance(got, tuple) else (got, None))
    return results


@pytest.mark.parametrize(
    "kind",
    [
        "type",
        "types",
        "instance",
        "string",
        "type_soma_false",
        "type_cropped",
        "regex",
        "null_type",
        "roi_all",
        "roi_any",
        "inputs_outputs",
        "status",
        "several",
        "no_match",
        "core",
        "columns",
        "omit_rois",
    ],
)
def test_neurons_in_ram_equal_sql_path(client, monkeypatch, kind):
    """The neurons in RAM (store/neurontable.py) give fetch_neurons' SQL-path frames cell by cell:
    whole frames (columns, dtypes, order, every value), roiInfo key order, ROI lists, roi_counts_df."""
    neurons = client.frame("SELECT type, instance FROM neurons WHERE type IS NOT NULL ORDER BY bodyId")
    types = sorted(neurons["type"].unique())
    kwargs = {}
    crit = {
        "type": lambda: NC(type=types[3]),
        "types": lambda: NC(type=types[3:12]),
        "instance": lambda: NC(instance=neurons["instance"].iloc[4]),
        "string": lambda: "DNge104",
        "type_soma_false": lambda: NC(type=types[3:30], soma=False),  # soma=False filters: not the index
        "type_cropped": lambda: NC(type=types[3:30], cropped=False),
        "regex": lambda: NC(type="DN.*"),
        "null_type": lambda: NC(type=[None, types[3]]),
        "roi_all": lambda: NC(rois=["GNG", "FB"]),
        "roi_any": lambda: NC(rois=["GNG", "FB"], roi_req="any"),
        "inputs_outputs": lambda: NC(inputRois=["GNG"], outputRois=["VNC"], min_roi_inputs=5),
        "status": lambda: NC(status="Traced"),
        "several": lambda: NC(type=types[:60], status="Traced", min_post=20, somaLocation=NotNull),
        "no_match": lambda: NC(type="no-such-type"),
        "core": lambda: NC(type=types[3:12]),
        "columns": lambda: NC(type=types[3:12]),
        "omit_rois": lambda: NC(rois=["GNG"]),
    }[kind]()
    if kind == "core":
        kwargs["returned_columns"] = "core"
    elif kind == "columns":
        kwargs["returned_columns"] = ["post", "roiInfo", "type", "bodyId", "status"]
    elif kind == "omit_rois":
        kwargs["omit_rois"] = True
    (n1, r1), (n2, r2) = table_and_sql_frames(client, monkeypatch, crit, **kwargs)
    assert len(n1) > 0 or kind == "no_match"
    assert_same_frames(n1, n2)
    if kind == "omit_rois":
        assert r1 is None and r2 is None
    else:
        assert len(r1) > 0 or kind == "no_match"
        assert_same_frames(r1, r2)
    if kind == "type_soma_false":  # the filter took effect
        assert n1["somaLocation"].isna().all()


def test_same_frames_catches_a_changed_value(client, monkeypatch):
    """The comparison above fails on one changed count inside roiInfo, a reordered map, or a count."""
    (n1, r1), (n2, r2) = table_and_sql_frames(client, monkeypatch, NC(rois=["GNG"]))
    assert_same_frames(n1, n2)
    changed = n1.copy()
    changed["roiInfo"] = [JsonDict({k: dict(v) for k, v in info.items()}) for info in n1["roiInfo"]]
    first = next(iter(changed["roiInfo"].iloc[3]))
    changed["roiInfo"].iloc[3][first]["post"] += 1
    with pytest.raises(AssertionError):
        assert_same_frames(changed, n2)
    reordered = n1.copy()
    reordered["roiInfo"] = [JsonDict(reversed(list(info.items()))) for info in n1["roiInfo"]]
    with pytest.raises(AssertionError):
        assert_same_frames(reordered, n2)
    counts = r1.copy()
    counts.loc[7, "pre"] += 1
    with pytest.raises(AssertionError):
        assert_same_frames(counts, r2)


def test_neuron_table_build(client):
    """The table in RAM holds every neuron and every neuron_rois row, in order (checked against SQL)."""
    from flatprint.store.neurontable import clear_neuron_table_cache, neuron_table

    clear_neuron_table_cache()
    table = neuron_table(client.store)
    assert neuron_table(client.store) is table  # kept
    ids = client.sql("SELECT bodyId FROM segments WHERE is_neuron ORDER BY bodyId")[1]
    assert table.body_ids.tolist() == [r[0] for r in ids]
    rows = client.frame(
        "SELECT bodyId, roi, pre, post, downstream, upstream, synweight FROM segment_rois "
        "WHERE bodyId IN (SELECT bodyId FROM segments WHERE is_neuron) ORDER BY bodyId, roi"
    )
    every, units = table.roi_rows(np.arange(len(table.body_ids)))
    assert table.body_ids[units].tolist() == rows["bodyId"].tolist()
    assert [table.roi_names[c] for c in table.roi_code[every]] == rows["roi"].tolist()
    for column in ("pre", "post", "downstream", "upstream", "synweight"):
        assert table.counts(column, every).tolist() == rows[column].tolist(), column
    assert 0 < table.nbytes and table.build_seconds > 0


def test_gc_paused_path_gives_the_same_frames(client, monkeypatch):
    """With the cyclic GC paused while many roiInfo maps are built (here from the first row), the
    frames are the SQL path's, and the GC runs again afterwards."""
    import gc

    from flatprint.query import neurons as neurons_module

    monkeypatch.setattr(neurons_module, "GC_PAUSE_ROWS", 0)
    assert gc.isenabled()
    (n1, r1), (n2, r2) = table_and_sql_frames(client, monkeypatch, NC(rois=["FB"]))
    assert gc.isenabled() and len(n1) > 5
    assert_same_frames(n1, n2)
    assert_same_frames(r1, r2)


@pytest.mark.parametrize("criteria", ["DNge104", "roi", "segments", "segments_roi"])
def test_roi_info_false_leaves_only_roi_info_out(client, release_dir, criteria):
    """``roi_info=False``: no roiInfo column; inputRois/outputRois and the per-ROI counts equal pandas
    on syn-points, on the neuron table's path (Neuron criteria, few and many neurons) and on SQL's
    (Segment criteria)."""
    o = oracle_neurons(release_dir)
    if criteria == "DNge104":
        crit = NC(type="DNge104", client=client)
    elif criteria == "roi":
        crit = NC(rois=["GNG"], client=client)
    elif criteria == "segments":
        ids = o.loc[~o.is_neuron, "bodyId"].iloc[:5].tolist() + [12781]
        crit = NC(bodyId=ids, label="Segment", client=client)
    else:  # over ROI_INFO_PARSE_LIMIT segments: the per-ROI rows come from the store, not from roiInfo
        crit = NC(rois=["GNG"], label="Segment", client=client)
    neurons, roi_counts = flatprint.fetch_neurons(crit, roi_info=False, client=client)
    if criteria == "segments_roi":
        assert len(neurons) > ROI_INFO_PARSE_LIMIT
    assert "roiInfo" not in neurons.columns and neurons.columns[-2:].tolist() == ["inputRois", "outputRois"]
    assert "roi_info=False" in neurons.attrs["query"]
    bodies = neurons["bodyId"].tolist()
    assert len(bodies) > 0
    expected = oracle_roi_counts(release_dir, bodies)
    got = roi_counts[roi_counts.roi != "NotPrimary"].set_index(["bodyId", "roi"])[["pre", "post"]]
    pd.testing.assert_frame_equal(
        got.sort_index(), expected.set_index(["bodyId", "roi"]).sort_index(), check_dtype=False
    )
    for column, count in (("inputRois", "post"), ("outputRois", "pre")):
        per_body = expected[expected[count] > 0].groupby("bodyId")["roi"].agg(sorted).to_dict()
        assert [list(v) for v in neurons[column]] == [per_body.get(b, []) for b in bodies], column
    with_info, _ = flatprint.fetch_neurons(crit, client=client)
    assert with_info.drop(columns="roiInfo").columns.tolist() == neurons.columns.tolist()


def test_roi_info_must_be_a_bool(client):
    with pytest.raises(QueryError, match="roi_info"):
        flatprint.fetch_neurons("DNge104", roi_info="no", client=client)


def test_criteria_repr_and_emptiness(client):
    """What provenance shows of criteria (only what was given) and which criteria select everything."""
    assert repr(NC(client=client)) == "NeuronCriteria()"
    assert repr(NC(bodyId=[3, 1], client=client)) == "NeuronCriteria(bodyId=[3, 1])"
    assert repr(NC(bodyId=[1], label="Neuron", client=client)) == "NeuronCriteria(bodyId=[1], label='Neuron')"
    assert repr(NC(type="DNge104", min_pre=5, client=client)) == "NeuronCriteria(type=['DNge104'], min_pre=5)"
    assert repr(NC(rois=["GNG"], roi_req="any", client=client)) == "NeuronCriteria(roi_req='any', rois=['GNG'])"
    assert NC(client=client).is_empty() and NC(regex=True, label="Segment", client=client).is_empty()
    assert NC(min_pre=0, client=client).is_empty()
    for given in ({"bodyId": [1]}, {"type": "x"}, {"min_pre": 1}, {"rois": ["GNG"]}, {"status": "Traced"}):
        assert not NC(client=client, **given).is_empty(), given
