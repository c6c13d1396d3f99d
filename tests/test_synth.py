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
        ("x_pre", "int32"), ("y_pre", "int32"), ("z_pre", "int32"), ("body_pre", "int64"), ("conf_pre", "float"),
        ("x_post", "int32"), ("y_post", "int32"), ("z_post", "int32"), ("body_post", "int64"),
        ("conf_post", "float"), ("primary_post", "dictionary<values=string, indices=int16, ordered=0>"),
    ],
    "weights": [("body_pre", "int64"), ("body_post", "int64"), ("weight", "int64")],
    "stats": [
        ("body", "int64"), ("pre", "int32"), ("post", "int32"),
        ("status_fine", "dictionary<values=string, indices=int8, ordered=1>"), ("superclass", "string"),
        ("class", "string"), ("type", "string"), ("instance", "string"), ("downstream", "int64"),
        ("synweight", "int64"), ("rank", "int64"),
    ],
    "neurotransmitters": [
        ("body", "int64"), ("cell_type", "string"), ("total_nt_predictions", "int32"),
        ("predicted_nt_confidence", "double"), ("predicted_nt", "string"), ("ground_truth", "string"),
        ("celltype_total_nt_predictions", "int32"), ("celltype_predicted_nt", "string"),
        ("celltype_predicted_nt_confidence", "double"), ("consensus_nt", "string"),
    ],
    "tbar-nt": [
        ("point_id", "uint64"), ("x", "int32"), ("y", "int32"), ("z", "int32"), ("conf", "float"),
        ("sv", "int64"), ("body", "int64"), ("major", "dictionary<values=string, indices=int8, ordered=0>"),
        ("primary", "dictionary<values=string, indices=int16, ordered=0>"),
        ("nt_acetylcholine_prob", "float"), ("nt_dopamine_prob", "float"), ("nt_gaba_prob", "float"),
        ("nt_glutamate_prob", "float"), ("nt_histamine_prob", "float"), ("nt_octopamine_prob", "float"),
        ("nt_serotonin_prob", "float"), ("split", "dictionary<values=string, indices=int8, ordered=0>"),
    ],
    "syn-points": [
        ("x", "int32"), ("y", "int32"), ("z", "int32"), ("kind", "dictionary<values=string, indices=int8, ordered=0>"),
        ("conf", "float"), ("sv", "int64"), ("body", "int64"),
        ("compartment", "dictionary<values=string, indices=int8, ordered=0>"),
        ("major", "dictionary<values=string, indices=int8, ordered=0>"), ("major_label", "uint8"),
        ("primary", "dictionary<values=string, indices=int16, ordered=0>"), ("primary_label", "uint16"),
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


def test_body_stats_are_point_counts(release_dir):
    points = load(release_dir, "syn-points")
    partners = load(release_dir, "syn-partners")
    stats = load(release_dir, "stats").set_index("body")
    pre = points[points.kind == "PreSyn"].groupby("body").size()
    post = points[points.kind == "PostSyn"].groupby("body").size()
    down = partners.groupby("body_pre").size()
    bodies = pre.index.union(post.index)
    assert set(stats.index) == set(bodies)
    assert (stats["pre"] == pre.reindex(stats.index, fill_value=0)).all()
    assert (stats["post"] == post.reindex(stats.index, fill_value=0)).all()
    assert (stats["downstream"] == down.reindex(stats.index, fill_value=0)).all()
    assert (stats["synweight"] == stats["downstream"] + stats["post"]).all()
    assert (stats["rank"].to_numpy() == np.arange(1, len(stats) + 1)).all()
    assert stats["synweight"].is_monotonic_decreasing


def test_partner_locations_are_points_and_primary_post_matches(release_dir):
    points = load(release_dir, "syn-points")
    partners = load(release_dir, "syn-partners")
    pre_ids = point_id(partners.x_pre, partners.y_pre, partners.z_pre)
    post_ids = point_id(partners.x_post, partners.y_post, partners.z_post)
    kinds = points["kind"]
    assert pre_ids.isin(points.index[kinds == "PreSyn"]).all()
    assert post_ids.isin(points.index[kinds == "PostSyn"]).all()
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
    from flatprint.release.synth import synthesize

    again = synthesize(tmp_path / "again", scale=0.004, seed=0, progress=False)
    first = json.loads((release_factory(0) / "manifest.json").read_text())
    assert [f["sha256"] for f in again["files"]] == [f["sha256"] for f in first["files"]]
    other = json.loads((release_factory(1) / "manifest.json").read_text())
    assert [f["sha256"] for f in other["files"]] != [f["sha256"] for f in first["files"]]


def test_refuses_to_overwrite(release_dir):
    from flatprint.errors import ReleaseError
    from flatprint.release.synth import synthesize

    with pytest.raises(ReleaseError, match="not empty"):
        synthesize(release_dir, scale=0.004, seed=0, progress=False)


def test_bad_scale(tmp_path):
    from flatprint.errors import ReleaseError
    from flatprint.release.synth import synthesize

    with pytest.raises(ReleaseError, match="--scale"):
        synthesize(tmp_path / "x", scale=0, seed=0, progress=False)
