"""The partners step (ingest/partners.py) against pandas on the raw feathers, in several body ranges:
per pair weight and weightHP, and per pair and ROI the PSDs and the distinct T-bars."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from oracle import load, point_id, primary_roi_counts, roi_chains

from flatprint.ingest import body_rois, ingest_release, partners as partners_step
from flatprint.ingest.post_parts import PostPartitions, partition_file
from flatprint.io.arrow_ipc import read_stream_file


@pytest.fixture(scope="module", params=["ranges", "pieces"])
def ranged_store(request, release_dir, tmp_path_factory):
    """Five body ranges; "pieces": besides, each range's sorted pairs are fetched and aggregated a
    few hundred rows at a time, cut where body_pre changes (a full-scale range is ~6 pieces), and
    its per-body ROI counts are taken ~300 points of whole bodies at a time."""
    path = tmp_path_factory.mktemp("partners") / "store.duckdb"
    with pytest.MonkeyPatch.context() as patch:
        pieces = []
        if request.param == "pieces":
            patch.setattr(partners_step, "INSERT_ROWS", 700)
            patch.setattr(partners_step, "FETCH_ROWS", 128)
            patch.setattr(body_rois, "CHUNK_POINTS", 300)  # a range's bodies in chunks, some larger than one
            build_piece = partners_step._build_piece
            patch.setattr(
                partners_step, "_build_piece", lambda con, rows, *a: pieces.append(rows) or build_piece(con, rows, *a)
            )
        ingest_release(release_dir, path, progress=False, memory_limit="2GB", buckets=5)
    if request.param == "pieces":
        assert len(pieces) > 20
        for rows in pieces:  # no pre body is cut in two
            body_pre = rows.column("body_pre").to_numpy()
            assert (body_pre[1:] >= body_pre[:-1]).all()
        ends = [(a.column("body_pre")[-1].as_py(), b.column("body_pre")[0].as_py()) for a, b in zip(pieces, pieces[1:])]
        assert all(a != b for a, b in ends)
    return path


def _table(store, sql) -> pd.DataFrame:
    with duckdb.connect(str(store), read_only=True) as con:
        return con.execute(sql).df()


def _partner_rois(release) -> pd.DataFrame:
    """One row per partner row and ROI its post point counts under (its primary ROI and the
    ancestors, and its major ROI), with the T-bar's location."""
    partners = load(release, "syn-partners")
    points = load(release, "syn-points")
    chains = roi_chains(release)
    post = point_id(partners.x_post, partners.y_post, partners.z_post).to_numpy()
    rows = pd.DataFrame(
        {
            "body_pre": partners.body_pre.to_numpy(),
            "body_post": partners.body_post.to_numpy(),
            "tbar": point_id(partners.x_pre, partners.y_pre, partners.z_pre).to_numpy(),
            "row": range(len(partners)),
            "primary": partners.primary_post.astype(str).to_numpy(),
            "major": points["major"].astype(str).reindex(post).to_numpy(),
        }
    )
    rows["rois"] = [
        set(chains.get(p, []) if p != "<unspecified>" else []) | ({m} if m != "<unspecified>" else set())
        for p, m in zip(rows.primary, rows.major)
    ]
    return rows.explode("rois").dropna(subset=["rois"]).rename(columns={"rois": "roi"})


def test_connections_in_several_ranges(release_dir, ranged_store):
    partners = load(release_dir, "syn-partners")
    hp = (partners.conf_post >= 0.7) & (partners.conf_pre >= 0.0)
    want = (
        partners.assign(hp=hp)
        .groupby(["body_pre", "body_post"])
        .agg(weight=("hp", "size"), weight_hp=("hp", "sum"))
        .reset_index()
    )
    got = _table(ranged_store, "SELECT body_pre, body_post, weight, weight_hp FROM connections ORDER BY rowid")
    assert got.body_pre.nunique() > 5
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_connection_rois_psds_and_distinct_tbars(release_dir, ranged_store):
    """weight: the PSDs whose point counts under the ROI; pre: the distinct T-bars among them, so a
    T-bar whose PSDs on one partner lie in two ROIs of one grouping counts once under it."""
    rows = _partner_rois(release_dir)
    want = (
        rows.groupby(["body_pre", "body_post", "roi"])
        .agg(weight=("row", "size"), pre=("tbar", "nunique"))
        .reset_index()
    )
    split = (
        rows.groupby(["body_pre", "body_post", "roi"]).tbar.size()
        > want.set_index(["body_pre", "body_post", "roi"]).pre
    )
    assert split.any(), "the synthetic release should have a T-bar with several PSDs under one ROI"
    got = _table(ranged_store, "SELECT body_pre, body_post, roi, weight, pre FROM connection_rois ORDER BY rowid")
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_tbar_partner_counts_are_downstream(release_dir, ranged_store):
    """segment_rois' downstream: each T-bar's partner count, summed per body and the T-bar's primary
    ROI (ROIs no other primary ROI counts under, so the sum has no other source)."""
    partners = load(release_dir, "syn-partners")
    points = load(release_dir, "syn-points")
    chains = roi_chains(release_dir)
    pre = point_id(partners.x_pre, partners.y_pre, partners.z_pre).to_numpy()
    down = pd.DataFrame({"body": partners.body_pre.to_numpy(), "roi": points["primary"].astype(str).reindex(pre)})
    leaves = set(down.roi) - {"<unspecified>"} - {a for chain in chains.values() for a in chain[1:]}
    assert len(leaves) > 3
    want = down[down.roi.isin(leaves)].value_counts()
    got = _table(ranged_store, "SELECT bodyId AS body, roi, downstream FROM segment_rois WHERE downstream > 0")
    got = got[got.roi.isin(leaves)].set_index(["body", "roi"]).downstream
    assert got.to_dict() == want.to_dict()


def test_roi_counts_and_roi_info_in_several_ranges(release_dir, ranged_store):
    """segment_rois at primary ROIs equal pandas' per body and ROI counts of the feathers' points
    (pre, post) and partners (downstream, by the T-bar's ROI), and each body's roiInfo holds exactly
    its segment_rois rows, whatever the ranges and chunks."""
    want = primary_roi_counts(release_dir)
    got = _table(ranged_store, "SELECT bodyId, roi, pre, post, downstream FROM segment_rois").set_index(
        ["bodyId", "roi"]
    )
    assert (got.reindex(want.index).to_numpy() == want.to_numpy()).all()
    info = _table(ranged_store, "SELECT bodyId, roiInfo FROM segments").set_index("bodyId")["roiInfo"]
    texts = {
        (b, roi, k): v for b, t in info.items() for roi, counts in json.loads(t).items() for k, v in counts.items()
    }
    got = got.assign(upstream=got.post, synweight=got.downstream + got.post)
    assert texts == {key: int(v) for key, v in got.stack().items()}


def test_post_partitions_keep_each_rows_range_and_order(tmp_path):
    """Each row lands in the file of its body_post range (bounds[k-1] <= body_post < bounds[k]), in
    the order written, over several writes."""
    rng = np.random.default_rng(3)
    bounds = [100, 250, 251, 900]
    pieces = [
        pa.table(
            {"body_pre": rng.integers(0, 50, n), "body_post": rng.integers(0, 1000, n), "w": rng.integers(0, 9, n)}
        )
        for n in (40, 0, 1, 300)
    ]
    parts = PostPartitions(tmp_path, bounds)
    for piece in pieces:
        parts.write("t", piece)
    parts.close()
    rows = pd.concat([p.to_pandas() for p in pieces], ignore_index=True)
    edges = [-np.inf, *bounds, np.inf]
    for k in range(len(bounds) + 1):
        want = rows[(rows.body_post >= edges[k]) & (rows.body_post < edges[k + 1])].reset_index(drop=True)
        file = partition_file(tmp_path, "t", k)
        got = read_stream_file(file).to_pandas() if file else want.iloc[:0]
        pd.testing.assert_frame_equal(got, want)
