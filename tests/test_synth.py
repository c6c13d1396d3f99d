"""The synthetic release: exact schemas, internal consistency (checked with pandas), realism, determinism."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pytest
from oracle import FILES, load, point_id

# The release's columns and Arrow types, written out here independently of flatprint.release.tables.
EXPECTED = {
    "syn-partners": [
        ("x_pre", "int32"),
        ("y_pre", "int32"),
        ("z_pre", "int32"),
        ("body_pre", "int64"),
        ("conf_pre", "float"),
        ("x_post", "int32"),
        ("y_post", "int32"),
        ("z_post", "int32"),
        ("body_post", "int64"),
        ("conf_post", "float"),
        ("primary_post", "dictionary<values=string, indices=int16, ordered=0>"),
    ],
    "weights": [("body_pre", "int64"), ("body_post", "int64"), ("weight", "int64")],
    "stats": [
        ("body", "int64"),
        ("pre", "int32"),
        ("post", "int32"),
        ("status_fine", "dictionary<values=string, indices=int8, ordered=1>"),
        ("superclass", "string"),
        ("class", "string"),
        ("type", "string"),
        ("instance", "string"),
        ("downstream", "int64"),
        ("synweight", "int64"),
        ("rank", "int64"),
    ],
    "neurotransmitters": [
        ("body", "int64"),
        ("cell_type", "string"),
        ("total_nt_predictions", "int32"),
        ("predicted_nt_confidence", "double"),
        ("predicted_nt", "string"),
        ("ground_truth", "string"),
        ("celltype_total_nt_predictions", "int32"),
        ("celltype_predicted_nt", "string"),
        ("celltype_predicted_nt_confidence", "double"),
        ("consensus_nt", "string"),
    ],
    "tbar-nt": [
        ("point_id", "uint64"),
        ("x", "int32"),
        ("y", "int32"),
        ("z", "int32"),
        ("conf", "float"),
        ("sv", "int64"),
        ("body", "int64"),
        ("major", "dictionary<values=string, indices=int8, ordered=0>"),
        ("primary", "dictionary<values=string, indices=int16, ordered=0>"),
        ("nt_acetylcholine_prob", "float"),
        ("nt_dopamine_prob", "float"),
        ("nt_gaba_prob", "float"),
        ("nt_glutamate_prob", "float"),
        ("nt_histamine_prob", "float"),
        ("nt_octopamine_prob", "float"),
        ("nt_serotonin_prob", "float"),
        ("split", "dictionary<values=string, indices=int8, ordered=0>"),
    ],
    "syn-points": [
        ("x", "int32"),
        ("y", "int32"),
        ("z", "int32"),
        ("kind", "dictionary<values=string, indices=int8, ordered=0>"),
        ("conf", "float"),
        ("sv", "int64"),
        ("body", "int64"),
        ("compartment", "dictionary<values=string, indices=int8, ordered=0>"),
        ("major", "dictionary<values=string, indices=int8, ordered=0>"),
        ("major_label", "uint8"),
        ("primary", "dictionary<values=string, indices=int16, ordered=0>"),
        ("primary_label", "uint16"),
        ("point_id", "uint64"),
    ],
}
ANNOTATION_COLUMNS = (
    "assignedOlHex1 assignedOlHex2 bodyId flywireType group instance somaSide statusLabel superclass type vfbId "
    "hemibrainType itoleeHl supertype birthtime mancBodyid mancGroup mancType subclass synonyms class rootSide "
    "somaNeuromere trumanHl dimorphism matchingNotes entryNerve mancSerial mcnsSerial serialMotif fruDsx "
    "exitNerve receptorType somaLocation tosomaLocation status"
).split()


def test_file_names(release_dir):
    names = {p.name for p in release_dir.iterdir()}
    assert set(FILES.values()) <= names
    assert "manifest.json" in names


@pytest.mark.parametrize("table", sorted(EXPECTED))
def test_schema_exact(release_dir, table):
    schema = feather.read_table(release_dir / FILES[table]).schema
    assert [(f.name, str(f.type)) for f in schema] == EXPECTED[table]


def test_annotation_schema(release_dir):
    schema = feather.read_table(release_dir / FILES["annotations"]).schema
    assert schema.names == ANNOTATION_COLUMNS
    assert str(schema.field("statusLabel").type) == "dictionary<values=string, indices=int8, ordered=1>"
    assert schema.field("somaLocation").type == pa.list_(pa.int64())
    assert schema.field("bodyId").type == pa.int64()
    assert schema.field("group").type == pa.float64()


def test_syn_points_index_is_point_id(release_dir):
    points = load(release_dir, "syn-points")
    assert points.index.name == "point_id"
    assert points.index.is_unique
    np.testing.assert_array_equal(points.index.to_numpy(), point_id(points.x, points.y, points.z).to_numpy())
    assert list(points["kind"].cat.categories) == ["PreSyn", "PostSyn"]
    assert points["primary"].cat.categories[0] == "<unspecified>"
    assert (points["conf"] >= 0.5).all()


def test_weights_are_partner_counts(release_dir):
    partners = load(release_dir, "syn-partners")
    weights = load(release_dir, "weights")
    counts = partners.groupby(["body_pre", "body_post"]).size().rename("n").reset_index()
    merged = weights.merge(counts, on=["body_pre", "body_post"], how="outer")
    assert merged["weight"].notna().all() and merged["n"].notna().all()
    assert (merged["weight"] == merged["n"]).all()
    assert weights["weight"].is_monotonic_decreasing


def _assert_body_stats_are_point_counts(points, partners, stats):
    """body-stats: pre/post = point counts, downstream = partner rows, sorted by synweight then body."""
    pre = points[points.kind == "PreSyn"].groupby("body").size()
    post = points[points.kind == "PostSyn"].groupby("body").size()
    down = partners.groupby("body_pre").size()
    assert stats.index.is_unique
    assert set(stats.index) == set(pre.index.union(post.index))
    assert (stats["pre"] == pre.reindex(stats.index, fill_value=0)).all()
    assert (stats["post"] == post.reindex(stats.index, fill_value=0)).all()
    assert (stats["downstream"] == down.reindex(stats.index, fill_value=0)).all()
    assert (stats["synweight"] == stats["downstream"] + stats["post"]).all()
    order = stats.reset_index().sort_values(["synweight", "body"], ascending=[False, True])["body"]
    assert (order.to_numpy() == stats.index.to_numpy()).all()
    assert (stats["rank"].to_numpy() == np.arange(1, len(stats) + 1)).all()


def test_body_stats_are_point_counts(release_dir):
    _assert_body_stats_are_point_counts(
        load(release_dir, "syn-points"), load(release_dir, "syn-partners"), load(release_dir, "stats").set_index("body")
    )


def _assert_partner_ends_are_points(points, partners):
    """Every partner's pre location is a PreSyn point and its post location a PostSyn point."""
    pre_ids = point_id(partners.x_pre, partners.y_pre, partners.z_pre)
    post_ids = point_id(partners.x_post, partners.y_post, partners.z_post)
    kinds = points["kind"]
    assert pre_ids.isin(points.index[kinds == "PreSyn"]).all()
    assert post_ids.isin(points.index[kinds == "PostSyn"]).all()
    return pre_ids, post_ids, kinds


def test_partner_locations_are_points_and_primary_post_matches(release_dir):
    points = load(release_dir, "syn-points")
    partners = load(release_dir, "syn-partners")
    pre_ids, post_ids, kinds = _assert_partner_ends_are_points(points, partners)
    primary_at_post = points["primary"].astype(str).reindex(post_ids.to_numpy()).to_numpy()
    assert (partners["primary_post"].astype(str).to_numpy() == primary_at_post).all()
    body_at_post = points["body"].reindex(post_ids.to_numpy()).to_numpy()
    assert (partners["body_post"].to_numpy() == body_at_post).all()


def test_tbar_nt_one_row_per_presyn(release_dir):
    points = load(release_dir, "syn-points")
    tbar = load(release_dir, "tbar-nt")
    pre = points[points.kind == "PreSyn"]
    assert tbar["point_id"].is_unique
    assert set(tbar["point_id"]) == set(pre.index)
    joined = tbar.set_index("point_id").join(pre[["body", "primary"]].add_suffix("_pt"))
    assert (joined["body"] == joined["body_pt"]).all()
    assert (joined["primary"].astype(str) == joined["primary_pt"].astype(str)).all()
    probs = tbar[[c for c in tbar.columns if c.startswith("nt_")]]
    ok = probs.notna().all(axis=1)
    assert np.allclose(probs[ok].sum(axis=1), 1.0, atol=1e-4)


def test_body_neurotransmitters_aggregate_tbars(release_dir):
    tbar = load(release_dir, "tbar-nt")
    body_nt = load(release_dir, "neurotransmitters").set_index("body")
    nt_cols = [c for c in tbar.columns if c.startswith("nt_")]
    valid = tbar[tbar[nt_cols].notna().all(axis=1)]
    top = valid[nt_cols].to_numpy().argmax(axis=1)
    names = np.array([c[3:-5] for c in nt_cols])
    df = pd.DataFrame({"body": valid["body"].to_numpy(), "nt": names[top]})
    total = df.groupby("body").size()
    assert (body_nt["total_nt_predictions"] == total.reindex(body_nt.index, fill_value=0)).all()
    big = total[total >= 50].index
    majority = df[df.body.isin(big)].groupby("body")["nt"].agg(lambda s: s.value_counts().sort_index().idxmax())
    predicted = body_nt.loc[big, "predicted_nt"]
    confident = body_nt.loc[big, "predicted_nt_confidence"] >= 0.5
    assert (predicted[confident] == majority[confident]).all()
    assert (body_nt.loc[total[total < 50].index, "predicted_nt"] == "unclear").all()
    assert set(body_nt["predicted_nt"]) <= set(names) | {"unclear"}


def test_realism(release_dir):
    ann = load(release_dir, "annotations")
    weights = load(release_dir, "weights")
    points = load(release_dir, "syn-points")
    dn = ann[ann["type"] == "DNge104"].set_index("bodyId")["instance"].to_dict()
    assert dn == {12781: "DNge104_R", 556329: "DNge104_L"}
    rois = set(points["primary"].cat.categories)
    assert {"AL(R)", "AL(L)", "a'L(R)", "FB", "EB", "ME(R)", "LegNp(T1)(L)"} <= rois
    typed = ann.dropna(subset=["type"])
    neurons = typed[typed["status"] == "Traced"]
    assert (neurons["instance"] == neurons["type"] + "_" + neurons["rootSide"]).all()
    sides = neurons.groupby("type")["rootSide"].agg(set)
    assert (sides.apply(lambda s: s == {"L", "R"})).mean() > 0.9
    assert weights["weight"].median() == 1
    assert (weights["weight"] <= 3).mean() > 0.8
    assert weights["weight"].max() >= 100
    assert set(ann["status"].dropna()) >= {"Traced", "Anchor", "Orphan", "Glia", "Unimportant"}
    stats = load(release_dir, "stats")
    assert (~stats["body"].isin(ann["bodyId"])).sum() > 10 * len(ann)  # many unannotated fragments
    # synapses cluster inside neuropils: most points have a primary ROI
    assert (points["primary"] != "<unspecified>").mean() > 0.7


def test_manifest(release_dir):
    import hashlib

    manifest = json.loads((release_dir / "manifest.json").read_text())
    assert manifest["synthetic"]["seed"] == 0
    for entry in manifest["files"]:
        path = release_dir / entry["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        assert path.stat().st_size == entry["bytes"]
        assert feather.read_table(path).num_rows == entry["rows"]


def test_deterministic_per_seed(release_factory, tmp_path):
    from flatprint.synth import synthesize

    again = synthesize(tmp_path / "again", scale=0.004, seed=0, progress=False)
    first = json.loads((release_factory(0) / "manifest.json").read_text())
    assert [f["sha256"] for f in again["files"]] == [f["sha256"] for f in first["files"]]
    other = json.loads((release_factory(1) / "manifest.json").read_text())
    assert [f["sha256"] for f in other["files"]] != [f["sha256"] for f in first["files"]]


def test_refuses_to_overwrite(release_dir):
    from flatprint.errors import ReleaseError
    from flatprint.synth import synthesize

    with pytest.raises(ReleaseError, match="not empty"):
        synthesize(release_dir, scale=0.004, seed=0, progress=False)


def test_bad_scale(tmp_path):
    from flatprint.errors import ReleaseError
    from flatprint.synth import synthesize

    with pytest.raises(ReleaseError, match="--scale"):
        synthesize(tmp_path / "x", scale=0, seed=0, progress=False)


# ---------------------------------------------------------------- block-wise generation
# A tiny release forced into many blocks (BLOCK_SCALE's ~0.6M PSDs in blocks of BLOCK_PSDS), checked with
# plain pandas/pyarrow on the written files, independently of the generator's own arrays.
BLOCK_SCALE, BLOCK_SEED, BLOCK_PSDS = 0.002, 3, 60_000


@pytest.fixture(scope="module")
def blocked_release(tmp_path_factory):
    from flatprint.synth import synthesize

    out = tmp_path_factory.mktemp("blocked") / "release"
    synthesize(out, scale=BLOCK_SCALE, seed=BLOCK_SEED, progress=False, morphology=False, block_psds=BLOCK_PSDS)
    return out


def _read(release, table) -> pd.DataFrame:
    return pd.read_feather(release / FILES[table])


def test_blocked_release_has_many_blocks():
    from flatprint.synth.generator import BLOCK_PSDS as DEFAULT_BLOCK_PSDS, _Builder

    b = _Builder(BLOCK_SCALE, BLOCK_SEED)
    b.make_types()
    b.make_neurons()
    b.plan_synapses(BLOCK_PSDS)
    assert len(b.blocks) >= 8 and b.occupied is not None
    assert sum(blk[2] for blk in b.blocks) == b.n_frag_tb  # every fragment T-bar in exactly one block
    # the default block size keeps the test releases (and up to scale 0.02) in one block
    for scale in (0.004, 0.02):
        b = _Builder(scale, 0)
        b.make_types()
        b.make_neurons()
        b.plan_synapses(DEFAULT_BLOCK_PSDS)
        assert len(b.blocks) == 1 and b.occupied is None


def test_blocked_point_ids_unique(blocked_release):
    points = _read(blocked_release, "syn-points")
    assert points.index.name == "point_id" and points.index.is_unique
    np.testing.assert_array_equal(points.index.to_numpy(), point_id(points.x, points.y, points.z).to_numpy())
    # all PreSyn rows first, then all PostSyn rows, as in a one-block release
    kinds = points["kind"].astype(str).to_numpy()
    n_pre = int((kinds == "PreSyn").sum())
    assert (kinds[:n_pre] == "PreSyn").all() and (kinds[n_pre:] == "PostSyn").all()


def test_blocked_weights_are_partner_counts(blocked_release):
    partners = _read(blocked_release, "syn-partners")
    weights = _read(blocked_release, "weights")
    counts = partners.value_counts(["body_pre", "body_post"]).rename("weight").reset_index()
    expected = counts.sort_values(["weight", "body_pre", "body_post"], ascending=[False, True, True], ignore_index=True)
    pd.testing.assert_frame_equal(weights, expected, check_dtype=False)
    assert weights["weight"].is_monotonic_decreasing
    assert weights["weight"].sum() == len(partners)


def test_blocked_body_stats_are_point_counts(blocked_release):
    _assert_body_stats_are_point_counts(
        _read(blocked_release, "syn-points"),
        _read(blocked_release, "syn-partners"),
        _read(blocked_release, "stats").set_index("body"),
    )


def test_blocked_tbar_nt_rows_are_tbar_points(blocked_release):
    points = _read(blocked_release, "syn-points")
    tbar = _read(blocked_release, "tbar-nt")
    pre = points[points.kind == "PreSyn"]
    assert tbar["point_id"].is_unique and len(tbar) == len(pre)
    # same rows in the same order, with the same body and ROIs
    assert (tbar["point_id"].to_numpy() == pre.index.to_numpy()).all()
    assert (tbar["body"].to_numpy() == pre["body"].to_numpy()).all()
    assert (tbar["primary"].astype(str).to_numpy() == pre["primary"].astype(str).to_numpy()).all()
    # body-neurotransmitters counts the T-bars with a prediction
    body_nt = _read(blocked_release, "neurotransmitters").set_index("body")
    nt_cols = [c for c in tbar.columns if c.startswith("nt_")]
    total = tbar[tbar[nt_cols].notna().all(axis=1)].groupby("body").size()
    assert (body_nt["total_nt_predictions"] == total.reindex(body_nt.index, fill_value=0)).all()
    assert set(pre["body"]) <= set(body_nt.index)


def test_blocked_partners_are_points(blocked_release):
    points = _read(blocked_release, "syn-points")
    partners = _read(blocked_release, "syn-partners")
    pre_ids, post_ids, kinds = _assert_partner_ends_are_points(points, partners)
    assert post_ids.is_unique and len(partners) == int((kinds == "PostSyn").sum())
    at_post = points.reindex(post_ids.to_numpy())
    assert (partners["body_post"].to_numpy() == at_post["body"].to_numpy()).all()
    assert (partners["primary_post"].astype(str).to_numpy() == at_post["primary"].astype(str).to_numpy()).all()
    at_pre = points.reindex(pre_ids.to_numpy())
    assert (partners["body_pre"].to_numpy() == at_pre["body"].to_numpy()).all()


def test_blocked_files_format(blocked_release):
    """Same schemas and 64K-row record batches as a one-block release; the temporary file is gone."""
    from pyarrow import ipc

    for table, columns in EXPECTED.items():
        path = blocked_release / FILES[table]
        reader = ipc.open_file(pa.memory_map(str(path)))
        assert [(f.name, str(f.type)) for f in reader.schema] == columns
        sizes = [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)]
        assert all(s == 65536 for s in sizes[:-1]) and 0 < sizes[-1] <= 65536
    assert sorted(p.name for p in blocked_release.iterdir()) == sorted(
        [*FILES.values(), "manifest.json", "roi-hierarchy.json"]
    )
    ann = _read(blocked_release, "annotations")
    dn = ann[ann["type"] == "DNge104"].set_index("bodyId")["instance"].to_dict()
    assert dn == {12781: "DNge104_R", 556329: "DNge104_L"}


def test_blocked_deterministic(blocked_release, tmp_path):
    from flatprint.synth import synthesize

    again = synthesize(
        tmp_path / "again", scale=BLOCK_SCALE, seed=BLOCK_SEED, progress=False, morphology=False, block_psds=BLOCK_PSDS
    )
    first = json.loads((blocked_release / "manifest.json").read_text())
    assert [f["sha256"] for f in again["files"]] == [f["sha256"] for f in first["files"]]


def test_relocation_and_occupancy_filter():
    """Cross-block uniqueness helpers: the filter has no false negatives; relocation yields free voxels."""
    from flatprint.synth.generator import _make_unique, _Occupancy, _point_key, _relocate

    rng = np.random.default_rng(0)
    limit = np.array([5119, 7679, 2559])
    earlier = rng.integers(0, 60, size=(20_000, 3))
    occupied = _Occupancy(len(earlier))
    occupied.add(_point_key(earlier))
    assert occupied.test(_point_key(earlier)).all()
    # a dense block overlapping the earlier points, with many repeats of its own
    xyz = rng.integers(0, 60, size=(50_000, 3))
    key = _point_key(xyz)
    taken, first = np.unique(key, return_index=True)
    move = np.ones(len(key), bool)
    move[first] = False
    move |= occupied.test(key)
    out = _relocate(xyz.copy(), np.flatnonzero(move), taken, limit, occupied, (0, 1))
    new = _point_key(out)
    assert pd.Series(new).is_unique
    assert not np.isin(new, _point_key(earlier)).any()
    assert (out >= 0).all() and (out <= limit).all()
    assert (np.abs(out - xyz)[~move] == 0).all()  # points that were free stay put
    # the unblocked de-duplication finishes even when its random walk gets stuck (all points in one voxel)
    same = np.zeros((3_000, 3), np.int64)
    assert pd.Series(_point_key(_make_unique(same, limit))).is_unique
