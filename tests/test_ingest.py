"""Ingest: the store equals pandas on the feathers; every error path writes nothing; kills leave nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pytest
from oracle import FILES, load, point_id, primary_roi_counts, roi_chains

from flatprint.errors import FlatprintError, ReleaseError, StoreError
from flatprint.ingest import ingest_release
from flatprint.store import Store

# The store keeps locations, not their packed key: the key from x, y, z as oracle.point_id packs it.
POINT_ID = "((z::UBIGINT << 42) | (y::UBIGINT << 21) | x::UBIGINT) AS point_id"


def q(store_path, sql, params=None):
    with duckdb.connect(str(store_path), read_only=True) as con:
        return con.execute(sql, params or []).df()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_connections_round_trip(release_factory, store_factory, seed):
    release, store = release_factory(seed), store_factory(seed)
    weights = load(release, "weights")
    partners = load(release, "syn-partners")
    conns = q(store, "SELECT body_pre, body_post, weight, weight_hp FROM connections")
    merged = weights.merge(conns, on=["body_pre", "body_post"], how="outer")
    assert len(merged) == len(weights) == len(conns)
    assert (merged["weight_x"] == merged["weight_y"]).all()
    hp = partners[partners.conf_post >= 0.7].groupby(["body_pre", "body_post"]).size()
    got_hp = conns.set_index(["body_pre", "body_post"])["weight_hp"]
    assert (got_hp == hp.reindex(got_hp.index, fill_value=0)).all()
    by_post = q(store, "SELECT body_post, body_pre, weight FROM connections_by_post")
    assert by_post["body_post"].is_monotonic_increasing
    assert by_post["weight"].sum() == weights["weight"].sum()


@pytest.mark.parametrize("seed", [0, 1])
def test_segments_round_trip(release_factory, store_factory, seed):
    release, store = release_factory(seed), store_factory(seed)
    stats = load(release, "stats").set_index("body")
    ann = load(release, "annotations").set_index("bodyId")
    nt = load(release, "neurotransmitters").set_index("body")
    seg = q(store, "SELECT * FROM segments").set_index("bodyId")
    assert set(seg.index) == set(stats.index) | set(ann.index)
    s = seg.loc[stats.index]
    for col in ("pre", "post", "downstream", "synweight"):
        assert (s[col].to_numpy() == stats[col].to_numpy()).all(), col
    assert (s["upstream"].to_numpy() == stats["post"].to_numpy()).all()
    a = seg.loc[ann.index]
    for col in ("type", "instance", "status", "class", "superclass", "somaSide"):
        assert (a[col].fillna("<na>").to_numpy() == ann[col].astype(object).fillna("<na>").to_numpy()).all(), col
    assert (
        a["statusLabel"].fillna("<na>").to_numpy() == ann["statusLabel"].astype(object).fillna("<na>").to_numpy()
    ).all()
    n = seg.loc[nt.index]
    assert (n["predictedNt"].to_numpy() == nt["predicted_nt"].to_numpy()).all()
    assert (n["consensusNt"].fillna("<na>").to_numpy() == nt["consensus_nt"].fillna("<na>").to_numpy()).all()
    assert (n["totalNtPredictions"].to_numpy() == nt["total_nt_predictions"].to_numpy()).all()
    soma = ann["somaLocation"].dropna()
    assert [list(v) for v in seg.loc[soma.index, "somaLocation"]] == [list(v) for v in soma]


def test_neuron_rule(release_dir, store_path):
    """docs/decisions.md: synweight/pre/post >= 100 or a naming property or Traced/Anchor, and not Glia/Unimportant."""
    stats = load(release_dir, "stats").set_index("body")
    ann = load(release_dir, "annotations").set_index("bodyId")
    bodies = stats.index.union(ann.index)
    s = stats.reindex(bodies)
    a = ann.reindex(bodies)
    named = a[["somaLocation", "class", "type", "instance", "group", "somaSide", "synonyms"]].notna().any(axis=1)
    big = (s["synweight"].fillna(0) >= 100) | (s["pre"].fillna(0) >= 100) | (s["post"].fillna(0) >= 100)
    status = a["status"].astype(object)
    expected = (big | named | status.isin(["Traced", "Anchor"])) & ~status.isin(["Glia", "Unimportant"])
    got = q(store_path, "SELECT bodyId, is_neuron FROM segments").set_index("bodyId")["is_neuron"]
    assert (got.reindex(bodies).to_numpy() == expected.to_numpy()).all()
    assert got.loc[12781] and got.loc[556329]


def test_roi_weights_by_post_point(release_dir, store_path):
    """connection_rois: each partner counted under the post point's primary ROI and its ancestors."""
    partners = load(release_dir, "syn-partners")
    points = load(release_dir, "syn-points")
    chains = roi_chains(release_dir)
    post_ids = point_id(partners.x_post, partners.y_post, partners.z_post).to_numpy()
    primary = partners["primary_post"].astype(str).to_numpy()
    major = points["major"].astype(str).reindex(post_ids).to_numpy()
    rows = []
    for p_roi, m_roi, pre, post in zip(primary, major, partners.body_pre, partners.body_post):
        rois = set(chains.get(p_roi, [])) if p_roi != "<unspecified>" else set()
        if m_roi != "<unspecified>":
            rois.add(m_roi)
        rows += [(pre, post, r) for r in rois]
    expected = pd.DataFrame(rows, columns=["body_pre", "body_post", "roi"]).value_counts().rename("n")
    got = q(store_path, "SELECT body_pre, body_post, roi, weight FROM connection_rois").set_index(
        ["body_pre", "body_post", "roi"]
    )["weight"]
    assert len(got) == len(expected)
    assert (got.sort_index() == expected.sort_index().reindex(got.sort_index().index)).all()


def test_segment_rois(release_dir, store_path):
    points = load(release_dir, "syn-points")
    chains = roi_chains(release_dir)
    pre = points[points.kind == "PreSyn"]
    by_primary = pre.groupby([pre.body, pre["primary"].astype(str)]).size()
    got = q(store_path, "SELECT bodyId, roi, pre, post FROM segment_rois").set_index(["bodyId", "roi"])
    # primary ROIs: direct counts
    prim = by_primary[by_primary.index.get_level_values(1) != "<unspecified>"]
    assert (got["pre"].reindex(prim.index).to_numpy() == prim.to_numpy()).all()
    # a grouping ROI (MB(R)) sums its children
    kids = [r for r, chain in chains.items() if "MB(R)" in chain and r != "MB(R)"]
    post = points[(points.kind == "PostSyn") & points["primary"].astype(str).isin(kids)].groupby("body").size()
    mb = got.xs("MB(R)", level="roi")["post"]
    assert (mb.reindex(post.index).to_numpy() == post.to_numpy()).all()
    # roiInfo JSON agrees with the table
    seg = q(store_path, "SELECT roiInfo FROM segments WHERE bodyId = 12781")["roiInfo"][0]
    info = json.loads(seg)
    direct = got.xs(12781, level="bodyId")
    assert {k: v["post"] for k, v in info.items()} == direct["post"].to_dict()


def test_synapses_and_partners(release_dir, store_path):
    points = load(release_dir, "syn-points")
    tbar = load(release_dir, "tbar-nt").set_index("point_id")
    syn = q(store_path, f"SELECT syn_id, {POINT_ID}, body, kind, conf, ntGabaProb FROM synapses")
    assert len(syn) == len(points)
    assert sorted(syn["syn_id"]) == list(range(len(syn)))  # dense ids
    assert syn["syn_id"].max() < 2**53
    s = syn.set_index("point_id")
    assert (s.loc[points.index, "body"].to_numpy() == points["body"].to_numpy()).all()
    pre = s[s.kind == "pre"]
    np.testing.assert_allclose(
        pre.loc[tbar.index, "ntGabaProb"].to_numpy(), tbar["nt_gaba_prob"].to_numpy(), equal_nan=True, rtol=1e-6
    )


def test_partners_ends_are_synapses_rows(release_dir, store_path):
    """partners keeps each pair's two syn_ids and bodies; its ends, looked up as synapses rows, are the
    feather's pairs exactly (locations, bodies, confidences), as a multiset, in (body_pre, body_post) order."""
    partners = load(release_dir, "syn-partners")
    got = q(
        store_path,
        """SELECT p.body_pre, p.body_post, p.pre_id, p.post_id, a.body AS a_body, b.body AS b_body,
                  a.kind AS a_kind, b.kind AS b_kind, a.x AS x_pre, a.y AS y_pre, a.z AS z_pre,
                  b.x AS x_post, b.y AS y_post, b.z AS z_post, a.conf AS conf_pre, b.conf AS conf_post
           FROM partners p JOIN synapses a ON a.syn_id = p.pre_id JOIN synapses b ON b.syn_id = p.post_id""",
    )
    assert q(store_path, "SELECT count(*) AS n FROM partners")["n"][0] == len(got) == len(partners)
    assert list(q(store_path, "SELECT * FROM partners LIMIT 0").columns) == [
        "body_pre",
        "body_post",
        "pre_id",
        "post_id",
    ]
    assert (got["a_kind"] == "pre").all() and (got["b_kind"] == "post").all()
    assert (got["a_body"] == got["body_pre"]).all() and (got["b_body"] == got["body_post"]).all()
    order = q(store_path, "SELECT body_pre, body_post FROM partners")
    assert order.equals(order.sort_values(["body_pre", "body_post"], ignore_index=True))
    key = ["body_pre", "body_post", "x_pre", "y_pre", "z_pre", "x_post", "y_post", "z_post", "conf_pre", "conf_post"]
    a = got[key].astype({c: np.int64 for c in key[:8]}).sort_values(key, ignore_index=True)
    b = partners[key].astype({c: np.int64 for c in key[:8]}).sort_values(key, ignore_index=True)
    assert a.astype({"conf_pre": np.float32, "conf_post": np.float32}).equals(
        b.astype({"conf_pre": np.float32, "conf_post": np.float32})
    )


def test_meta(release_dir, store_path):
    points = load(release_dir, "syn-points")
    store = Store.open(store_path)
    try:
        meta = store.meta
        assert store.dataset == "male-cns:v0.9"
        assert meta["description"].startswith("SYNTHETIC seed=0 scale=0.004")
        assert meta["totalPreCount"] == int((points.kind == "PreSyn").sum())
        assert meta["totalPostCount"] == int((points.kind == "PostSyn").sum())
        assert set(meta["primaryRois"]) == set(points["primary"].cat.categories) - {"<unspecified>"}
        props = json.loads(meta["neuronProperties"])
        assert {"bodyId", "type", "instance", "status", "statusLabel", "predictedNt", "roiInfo"} <= set(props)
        tree = json.loads(meta["roiHierarchy"])
        assert {c["name"] for c in tree["children"]} == {"CentralBrain", "Optic(L)", "Optic(R)", "CV", "VNC"}
        roi_info = json.loads(meta["roiInfo"])
        assert roi_info["AL(R)"]["post"] == int(((points["primary"] == "AL(R)") & (points.kind == "PostSyn")).sum())
        summary = store.summary()
        assert summary["counts"]["synapses"] == len(points)
    finally:
        store.close()


# ------------------------------------------------------------------------- error paths


def broken_copy(release, tmp_path, name="broken"):
    out = tmp_path / name
    shutil.copytree(release, out)
    return out


def assert_nothing_written(store_path):
    assert not store_path.exists()
    assert not list(store_path.parent.glob(f".{store_path.name}.ingest-*"))


def test_missing_file(release_dir, tmp_path):
    rel = broken_copy(release_dir, tmp_path)
    (rel / FILES["weights"]).unlink()
    with pytest.raises(ReleaseError, match="connectome-weights-male-cns-v0.9-minconf-0.5.feather"):
        ingest_release(rel, tmp_path / "s.duckdb", progress=False)
    assert_nothing_written(tmp_path / "s.duckdb")


def test_every_missing_file_is_named_at_once(release_dir, tmp_path):
    from click.testing import CliRunner

    from flatprint.cli import main

    rel = broken_copy(release_dir, tmp_path)
    gone = ["weights", "syn-points", "tbar-nt"]
    for key in gone:
        (rel / FILES[key]).unlink()
    result = CliRunner().invoke(main, ["ingest", str(rel), str(tmp_path / "s.duckdb"), "--quiet"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    for key in gone:
        assert FILES[key] in result.output, (key, result.output)
    for key in set(FILES) - set(gone):
        assert FILES[key] not in result.output
    assert_nothing_written(tmp_path / "s.duckdb")


def test_missing_column(release_dir, tmp_path):
    rel = broken_copy(release_dir, tmp_path)
    path = rel / FILES["syn-partners"]
    feather.write_feather(feather.read_table(path).drop_columns(["conf_post"]), path)
    with pytest.raises(ReleaseError, match=r"syn-partners.*'conf_post'"):
        ingest_release(rel, tmp_path / "s.duckdb", progress=False)
    assert_nothing_written(tmp_path / "s.duckdb")


def test_wrong_dtype(release_dir, tmp_path):
    rel = broken_copy(release_dir, tmp_path)
    path = rel / FILES["weights"]
    t = feather.read_table(path)
    t = t.set_column(2, "weight", pa.array([str(v) for v in t.column("weight").to_pylist()]))
    feather.write_feather(t, path)
    with pytest.raises(ReleaseError, match=r"connectome-weights.*'weight'.*string"):
        ingest_release(rel, tmp_path / "s.duckdb", progress=False)
    assert_nothing_written(tmp_path / "s.duckdb")


def test_truncated_file(release_dir, tmp_path):
    rel = broken_copy(release_dir, tmp_path)
    path = rel / FILES["syn-points"]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReleaseError, match="syn-points-male-cns-v0.9-minconf-0.5.feather.*truncated or corrupt"):
        ingest_release(rel, tmp_path / "s.duckdb", progress=False)
    assert_nothing_written(tmp_path / "s.duckdb")


def test_corrupt_body(release_dir, tmp_path):
    """Garbage in the middle of a file (footer intact): the error names the file, nothing is written."""
    rel = broken_copy(release_dir, tmp_path)
    path = rel / FILES["syn-partners"]
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = os.urandom(4096)
    path.write_bytes(bytes(data))
    with pytest.raises(ReleaseError, match="syn-partners-male-cns-v0.9-minconf-0.5.feather: sha256 differs"):
        ingest_release(rel, tmp_path / "s.duckdb", progress=False)
    assert_nothing_written(tmp_path / "s.duckdb")


def test_inconsistent_partners(release_dir, tmp_path):
    """A partner whose location is not a synapse point is an error naming both files."""
    rel = broken_copy(release_dir, tmp_path)
    (rel / "manifest.json").unlink()  # as a real release, which carries no manifest
    path = rel / FILES["syn-partners"]
    t = feather.read_table(path)
    x = t.column("x_post").to_numpy().copy()
    x[0] += 1_000_000
    feather.write_feather(t.set_column(5, "x_post", pa.array(x)), path)
    with pytest.raises(ReleaseError, match="0 pre and 1 post locations are not points of their body .* in syn-points"):
        ingest_release(rel, tmp_path / "s.duckdb", progress=False)
    assert_nothing_written(tmp_path / "s.duckdb")


def test_partner_confidence_differs_from_its_point(release_dir, tmp_path):
    """partners keeps no confidences (synapses has the points'): a syn-partners conf_post that is not
    its point's conf is an error naming both files, not a silently different weightHP."""
    rel = broken_copy(release_dir, tmp_path)
    (rel / "manifest.json").unlink()
    path = rel / FILES["syn-partners"]
    t = feather.read_table(path)
    conf = t.column("conf_post").to_numpy().copy()
    conf[0] = 0.5 if conf[0] > 0.75 else 0.99
    feather.write_feather(t.set_column(t.schema.get_field_index("conf_post"), "conf_post", pa.array(conf)), path)
    with pytest.raises(ReleaseError, match=r"syn-partners.*: 1 rows whose conf_pre/conf_post differ .* in syn-points"):
        ingest_release(rel, tmp_path / "s.duckdb", progress=False)
    assert_nothing_written(tmp_path / "s.duckdb")


def test_partner_on_another_body(release_dir, tmp_path):
    """A partner's pre location that is a point of a different body than its body_pre is an error too
    (whatever body ranges the build sorts in, so the store never depends on them)."""
    rel = broken_copy(release_dir, tmp_path)
    (rel / "manifest.json").unlink()
    path = rel / FILES["syn-partners"]
    t = feather.read_table(path)
    body = t.column("body_pre").to_numpy().copy()
    other = body[body != body[0]][0]
    body[0] = other
    feather.write_feather(t.set_column(t.schema.get_field_index("body_pre"), "body_pre", pa.array(body)), path)
    with pytest.raises(ReleaseError, match="1 pre and 0 post locations are not points of their body"):
        ingest_release(rel, tmp_path / "s.duckdb", progress=False, buckets=3)
    assert_nothing_written(tmp_path / "s.duckdb")


@pytest.mark.parametrize("buckets", [1, 3])
def test_a_point_twice_in_its_body_is_an_error(release_dir, tmp_path, buckets):
    """A (body, kind, location) given twice in syn-points would match its T-bar or partners twice: an
    error counting the repeats (as pandas counts them), whatever body ranges the build sorts in."""
    rel = broken_copy(release_dir, tmp_path)
    (rel / "manifest.json").unlink()
    path = rel / FILES["syn-points"]
    t = feather.read_table(path)
    kinds = t.column("kind").to_pandas().astype(str).to_numpy()
    pre, post = int(np.flatnonzero(kinds == "PreSyn")[0]), int(np.flatnonzero(kinds == "PostSyn")[-1])
    t = pa.concat_tables([t, t.take([pre, post, post])]).combine_chunks()
    feather.write_feather(t, path)
    points = pd.read_feather(path, columns=["x", "y", "z", "kind", "body"])
    repeats = int(points.astype({"kind": str}).duplicated().sum())
    assert repeats == 3
    with pytest.raises(ReleaseError, match=f"syn-points.*: {repeats} duplicate point locations"):
        ingest_release(rel, tmp_path / "s.duckdb", progress=False, buckets=buckets)
    assert_nothing_written(tmp_path / "s.duckdb")


def test_body_ranges_do_not_change_the_store(release_dir, store_path, tmp_path, monkeypatch):
    """Sorting synapses and partners in several body ranges gives the same store, row for row and in
    the same order, as one range (the size the other tests' stores are built with); the neuron
    summaries group the synapse pairs in 3 runs of those 7 ranges."""
    assert json.loads(q(store_path, "SELECT value FROM store_info WHERE key = 'sourceRows'").iloc[0, 0])
    monkeypatch.setattr("flatprint.ingest.summaries.range_count", lambda con, n_rows, bytes_per_row: 3)
    ranged = tmp_path / "ranged.duckdb"
    result = ingest_release(release_dir, ranged, progress=False, memory_limit="2GB", buckets=7)
    assert result["timings"]["synapses"] > 0
    # each step's RSS high-water mark (Linux): present for every step timed, never falling step to step
    peaks = result["peak_rss_after_step"]
    assert set(peaks) == set(result["timings"]) - {"validate"}
    if os.path.exists("/proc/self/status"):
        assert min(peaks.values()) > 0 and list(peaks.values()) == sorted(peaks.values())
    tables = q(store_path, "SELECT table_name FROM duckdb_tables() WHERE table_name NOT IN ('meta', 'store_info')")
    assert {"synapses", "partners", "connection_rois", "segments"} <= set(tables.table_name)
    for table in tables.table_name:
        want = q(store_path, f"SELECT * FROM {table} ORDER BY rowid")
        got = q(ranged, f"SELECT * FROM {table} ORDER BY rowid")
        pd.testing.assert_frame_equal(got, want, obj=table)
    syn = q(ranged, "SELECT syn_id, body FROM synapses ORDER BY rowid")
    assert (syn.syn_id.to_numpy() == np.arange(len(syn))).all()
    # Each table is stored in its documented order (docs/store.md): zone maps are its index.
    sort_keys = {
        "segments": ["bodyId"],
        "segment_rois": ["roi", "bodyId"],
        "synapses": ["body", "kind"],
        "connections": ["body_pre", "body_post"],
        "connections_by_post": ["body_post", "body_pre"],
        "connection_rois": ["body_pre", "body_post", "roi"],
        "connection_rois_by_post": ["body_post", "body_pre", "roi"],
        "partners": ["body_pre", "body_post"],
    }
    for table, keys in sort_keys.items():
        stored = q(ranged, f"SELECT {', '.join(keys)} FROM {table} ORDER BY rowid")
        if table == "synapses":  # kind descending: 'pre' before 'post'
            stored["kind"] = stored["kind"].map({"pre": 0, "post": 1})
        assert len(stored) > 0
        assert stored.equals(stored.sort_values(keys, kind="stable").reset_index(drop=True)), table


def test_refuses_overwrite(release_dir, tmp_path):
    target = tmp_path / "s.duckdb"
    target.write_text("precious")
    with pytest.raises(StoreError, match="--force"):
        ingest_release(release_dir, target, progress=False)
    assert target.read_text() == "precious"


def test_not_a_store(tmp_path):
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"\0" * 4096)
    with pytest.raises(StoreError, match="bad.duckdb"):
        Store.open(bad)
    with pytest.raises(StoreError, match="not found"):
        Store.open(tmp_path / "missing.duckdb")


def _start_ingest(release, target):
    code = (
        "import sys; from flatprint.ingest import ingest_release; "
        "ingest_release(sys.argv[1], sys.argv[2], progress=False, memory_limit='1GB')"
    )
    return subprocess.Popen([sys.executable, "-c", code, str(release), str(target)])


def _wait_for_build_dir(target, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        work = list(target.parent.glob(f".{target.name}.ingest-*"))
        if work and list(work[0].glob("store.duckdb*")):
            return
        if proc.poll() is not None:
            pytest.fail("ingest finished before it could be interrupted")
        time.sleep(0.05)
    pytest.fail("ingest did not start")


def test_sigterm_leaves_nothing(release_factory, tmp_path):
    release = release_factory(0)
    target = tmp_path / "killed.duckdb"
    proc = _start_ingest(release, target)
    _wait_for_build_dir(target, proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert_nothing_written(target)


def test_sigkill_leaves_no_store_and_next_run_cleans(release_factory, tmp_path):
    release = release_factory(0)
    target = tmp_path / "killed.duckdb"
    proc = _start_ingest(release, target)
    _wait_for_build_dir(target, proc)
    time.sleep(0.5)
    proc.kill()
    proc.wait(timeout=60)
    assert not target.exists()
    # The next ingest removes the dead run's build directory and succeeds.
    ingest_release(release, target, progress=False, memory_limit="1GB")
    assert target.exists()
    assert not list(tmp_path.glob(f".{target.name}.ingest-*"))


def test_cli_info_and_errors(store_path, tmp_path):
    from click.testing import CliRunner

    from flatprint.cli import main

    result = CliRunner().invoke(main, ["info", str(store_path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["dataset"] == "male-cns:v0.9" and summary["counts"]["neurons"] > 0
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "nope"), str(tmp_path / "s.duckdb")])
    assert result.exit_code == 1
    assert "release directory not found" in result.output


def test_tbar_nt_of_another_body_is_not_attached(release_dir, store_path, tmp_path):
    """T-bar NT probabilities attach to the point at that location in the same body only, so the result
    never depends on how the ingest splits bodies into ranges."""
    rel = broken_copy(release_dir, tmp_path)
    (rel / "manifest.json").unlink()
    path = rel / FILES["tbar-nt"]
    t = feather.read_table(path)
    body = t.column("body").to_numpy().copy()
    moved = int(t.column("point_id")[0].as_py())
    body[0] = body[body != body[0]][0]
    feather.write_feather(t.set_column(t.schema.get_field_index("body"), "body", pa.array(body)), path)
    for buckets in (1, 3):
        store = tmp_path / f"s{buckets}.duckdb"
        ingest_release(rel, store, progress=False, memory_limit="2GB", buckets=buckets)
        got = q(store, f"SELECT {POINT_ID}, ntGabaProb FROM synapses WHERE kind = 'pre'").set_index("point_id")
        want = q(store_path, f"SELECT {POINT_ID}, ntGabaProb FROM synapses WHERE kind = 'pre'").set_index("point_id")
        assert not pd.isna(want.loc[moved, "ntGabaProb"]) and pd.isna(got.loc[moved, "ntGabaProb"])
        others = want.index != moved
        pd.testing.assert_series_equal(got.loc[want.index[others], "ntGabaProb"], want.loc[others, "ntGabaProb"])


@pytest.mark.parametrize(("budget", "duckdb_bytes"), [("3GB", 3_000_000_000 - 1280 * 2**20), ("1GB", 500_000_000)])
def test_memory_limit_is_the_budget_less_what_python_holds(release_dir, tmp_path, budget, duckdb_bytes):
    """DuckDB's limit during the build is the budget less 1.25 GiB (Python's Arrow and NumPy data),
    never below half the budget (numbers worked out by hand)."""
    result = ingest_release(release_dir, tmp_path / "s.duckdb", progress=False, memory_limit=budget)
    # (read back as DuckDB shows its setting: GiB to one decimal)
    assert result["duckdb_memory_limit"] == pytest.approx(duckdb_bytes, abs=0.06 * 2**30)


def test_bad_memory_limit_is_named_and_writes_nothing(release_dir, tmp_path):
    target = tmp_path / "s.duckdb"
    with pytest.raises(FlatprintError, match="memory_limit: 'lots'"):
        ingest_release(release_dir, target, progress=False, memory_limit="lots")
    assert list(tmp_path.iterdir()) == []


def test_duckdb_session_settings(tmp_path):
    """The session helper applies its settings and names a bad one."""
    from flatprint.io.duckdb_session import duckdb_session, parse_size

    assert parse_size("512MiB") == 512 * 1024**2 and parse_size("6GB") == 6 * 10**9
    with duckdb_session(tmp_path / "x.duckdb", memory_limit="1GB", threads=1, temp_dir=tmp_path / "spill") as con:
        limit, threads, temp = con.execute(
            "SELECT current_setting('memory_limit'), current_setting('threads'), current_setting('temp_directory')"
        ).fetchall()[0]
        assert parse_size(limit) <= 10**9 and parse_size(limit) > 0.9 * 10**9  # DuckDB reports GiB
        assert threads == 1 and temp == str(tmp_path / "spill") and (tmp_path / "spill").is_dir()
    with pytest.raises(FlatprintError, match="threads"):
        with duckdb_session(threads=0):
            pass


def test_syn_ids_follow_the_sorted_position(store_path):
    """syn_id is the row's position in (body, kind, location) order, numbered on across body ranges:
    checked against a sort of the stored rows done here."""
    syn = q(store_path, f"SELECT syn_id, body, kind, {POINT_ID} FROM synapses")
    syn["kind_rank"] = (syn["kind"] == "post").astype(int)
    ordered = syn.sort_values(["body", "kind_rank", "point_id"], kind="stable").reset_index(drop=True)
    assert (ordered["syn_id"].to_numpy() == np.arange(len(ordered))).all()


def test_roi_counts_of_every_body_and_roi_info_text(release_dir, store_path):
    """segment_rois and neuron_rois at primary ROIs equal pandas' counts on the feathers, upstream and
    synweight included (store format 5 computes them on read from post and downstream), and every
    body's roiInfo text (stored with ZSTD) holds exactly its segment_rois rows."""
    counts = primary_roi_counts(release_dir)
    expected = counts.assign(upstream=counts["post"], synweight=counts["downstream"] + counts["post"])
    columns = ["pre", "post", "downstream", "upstream", "synweight"]
    got = q(store_path, "SELECT * FROM segment_rois").set_index(["bodyId", "roi"])
    assert list(got.columns) == columns
    assert (got.reindex(expected.index)[columns].to_numpy() == expected[columns].to_numpy()).all()
    neurons = q(store_path, "SELECT bodyId FROM neurons")["bodyId"]
    neuron_rows = q(store_path, "SELECT * FROM neuron_rois").set_index(["bodyId", "roi"])
    assert neuron_rows.equals(got[got.index.get_level_values(0).isin(neurons)].sort_index())
    # roiInfo: every body's map is its segment_rois rows, in segments and neurons alike
    info = q(store_path, "SELECT bodyId, roiInfo FROM segments").set_index("bodyId")["roiInfo"]
    rows = {
        (body, roi, key): value
        for body, text in info.items()
        for roi, per_roi in json.loads(text).items()
        for key, value in per_roi.items()
    }
    table = got[columns].stack()
    assert rows == {(body, roi, key): int(v) for (body, roi, key), v in table.items()}
    neuron_info = q(store_path, "SELECT bodyId, roiInfo FROM neurons").set_index("bodyId")["roiInfo"]
    assert neuron_info.equals(info.loc[neuron_info.index])


def test_roi_info_zstd_and_virtual_roi_counts(store_path):
    """The storage choices of store format 5 that keep the store under the feathers' size: roiInfo
    compressed with ZSTD, upstream and synweight of the per-ROI counts not stored at all."""
    with duckdb.connect(str(store_path), read_only=True) as con:
        for table in ("segments", "neurons"):
            methods = con.execute(
                f"SELECT DISTINCT compression FROM pragma_storage_info('{table}') "
                "WHERE column_name = 'roiInfo' AND segment_type = 'VARCHAR'"
            ).fetchall()
            assert methods == [("ZSTD",)], table
        for table in ("segment_rois", "neuron_rois"):
            stored = {
                r[0] for r in con.execute(f"SELECT DISTINCT column_name FROM pragma_storage_info('{table}')").fetchall()
            }
            assert stored == {"bodyId", "roi", "pre", "post", "downstream"}, table
            types = dict(
                con.execute(
                    f"SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = '{table}'"
                ).fetchall()
            )
            assert types["upstream"] == types["synweight"] == "BIGINT"


def test_segments_are_in_body_order_from_shuffled_stats(release_dir, tmp_path):
    """body-stats comes in any order (the release sorts it by size): segments is still one row per
    body of stats ∪ annotations in ascending bodyId, in several body ranges, each row's stats,
    annotation and neurotransmitter values its own body's (pandas on the feathers)."""
    rel = broken_copy(release_dir, tmp_path, "shuffled")
    (rel / "manifest.json").unlink()
    path = rel / FILES["stats"]
    stats = feather.read_table(path)
    feather.write_feather(stats.take(np.random.default_rng(7).permutation(stats.num_rows)), path)
    ann_path = rel / FILES["annotations"]
    ann = feather.read_table(ann_path)
    # Two annotated bodies without stats: rows of their own, in their place among the others.
    known = np.union1d(stats.column("body").to_numpy(), ann.column("bodyId").to_numpy())
    gap = int(np.flatnonzero(np.diff(known) > 1)[len(known) // 2 :][0])
    lone = [int(known[-1]) + 5, int(known[gap]) + 1]
    extra = pa.table({"bodyId": pa.array(lone, pa.int64()), "type": pa.array(["LoneA", "LoneB"])})
    feather.write_feather(pa.concat_tables([ann, extra], promote_options="default"), ann_path)
    store = tmp_path / "s.duckdb"
    ingest_release(rel, store, progress=False, memory_limit="1GB", buckets=3)
    seg = q(store, "SELECT bodyId, pre, post, downstream, synweight, type, predictedNt, roiInfo FROM segments")
    stats_df, ann_df, nt_df = load(rel, "stats"), load(rel, "annotations"), load(rel, "neurotransmitters")
    bodies = np.union1d(stats_df["body"].to_numpy(), ann_df["bodyId"].to_numpy())
    assert (seg["bodyId"].to_numpy() == bodies).all()
    s = stats_df.set_index("body").reindex(bodies)
    for col in ("pre", "post", "downstream", "synweight"):
        assert (seg[col].to_numpy() == s[col].fillna(0).to_numpy()).all(), col
    a = ann_df.set_index("bodyId").reindex(bodies)
    assert (seg["type"].fillna("<na>").to_numpy() == a["type"].astype(object).fillna("<na>").to_numpy()).all()
    n = nt_df.set_index("body").reindex(bodies)
    assert (seg["predictedNt"].fillna("<na>").to_numpy() == n["predicted_nt"].fillna("<na>").to_numpy()).all()
    got = seg.set_index("bodyId")
    assert got.loc[lone[1], "type"] == "LoneB" and got.loc[lone[1], "pre"] == 0
    assert got.loc[lone[1], "roiInfo"] == "{}"
    # Each body's roiInfo is its own: its ROIs and their pre counts are its segment_rois rows.
    rois = q(store, "SELECT bodyId, roi, pre FROM segment_rois")
    sample = got[got["pre"] > 0].index[::97]
    for body in sample:
        info = json.loads(got.loc[body, "roiInfo"])
        mine = rois[rois.bodyId == body]
        assert {k: v.get("pre", 0) for k, v in info.items()} == dict(zip(mine.roi, mine.pre)), body


@pytest.mark.parametrize(
    ("key", "column"), [("annotations", "bodyId"), ("neurotransmitters", "body"), ("stats", "body")]
)
def test_a_body_twice_in_a_body_table_is_an_error(release_dir, tmp_path, key, column):
    """A body table with two rows for one body would make two segments of it: an error naming the
    file and the body, nothing written."""
    rel = broken_copy(release_dir, tmp_path)
    (rel / "manifest.json").unlink()
    path = rel / FILES[key]
    t = feather.read_table(path)
    feather.write_feather(pa.concat_tables([t, t.slice(3, 1)]), path)
    body = t.column(column)[3].as_py()
    with pytest.raises(ReleaseError, match=rf"{FILES[key]}: body {body} has more than one row"):
        ingest_release(rel, tmp_path / "s.duckdb", progress=False)
    assert_nothing_written(tmp_path / "s.duckdb")
