"""`flatprint diff` against a release pair with planted edits: the diff must find every edit in the
edit manifest and nothing else. Expected type-pair weights come from plain pandas on the two releases'
feathers (tests/oracle.py's files), never from the diff's own output."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from oracle import FILES

from flatprint.cli import main
from flatprint.errors import QueryError, StoreError
from flatprint.ingest import ingest_release
from flatprint.query import Client
from flatprint.query.diff import diff_stores
from flatprint.synth.edits import EDITS_FILE, plant_edits

SCALE, SEED = 0.01, 1  # the oracle release of test_indirect.py (built once per session)
NEW_DATASET = "male-cns:v1.0"
V10_FILES = {table: name.replace("male-cns-v0.9", "male-cns-v1.0") for table, name in FILES.items()}
V10_EXTRA_SETS = ["mid", "subprimary", "ol_column", "ol_layer"]


@pytest.fixture(scope="module")
def old_release(release_factory) -> Path:
    return release_factory(SEED, SCALE)


@pytest.fixture(scope="module")
def old_store(store_factory) -> Path:
    return store_factory(SEED, SCALE)


@pytest.fixture(scope="module")
def edited(old_release, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("edited") / "release"
    manifest = plant_edits(old_release, out, seed=3)
    return out, manifest


@pytest.fixture(scope="module")
def new_release(edited) -> Path:
    return edited[0]


@pytest.fixture(scope="module")
def manifest(edited) -> dict:
    return edited[1]


@pytest.fixture(scope="module")
def new_store(new_release, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("edited-store") / "store.duckdb"
    ingest_release(new_release, out, progress=False, memory_limit="2GB", dataset=NEW_DATASET)
    return out


@pytest.fixture(scope="module")
def result(old_store, new_store):
    return diff_stores(old_store, new_store)


def edits_of(manifest: dict, kind: str) -> list[dict]:
    return [e for e in manifest["edits"] if e["kind"] == kind]


def read(release: Path, table: str, columns: list[str] | None = None) -> pd.DataFrame:
    """A table of a v0.9 release, or of a v1.0 one (its file names carry v1.0 where v0.9's carry v0.9)."""
    path = release / FILES[table]
    if not path.exists():
        path = release / V10_FILES[table]
    return pd.read_feather(path, columns=columns)


# ------------------------------------------------------------------------------------------ the edited release
def test_manifest_lists_every_kind_of_edit(manifest, new_release):
    kinds = {e["kind"] for e in manifest["edits"]}
    assert kinds == {"rename_type", "merge", "split", "property", "remove", "add", "weight"}
    assert json.loads((new_release / EDITS_FILE).read_text()) == manifest


def test_edited_release_is_consistent(new_release):
    """Plain pandas on the written feathers: weights = partner rows per pair, body-stats = point counts."""
    partners = read(new_release, "syn-partners")
    weights = read(new_release, "weights").set_index(["body_pre", "body_post"])["weight"].sort_index()
    counted = partners.groupby(["body_pre", "body_post"]).size().sort_index()
    assert weights.to_dict() == counted.to_dict()
    points = read(new_release, "syn-points")
    stats = read(new_release, "stats").set_index("body")
    kinds = points.groupby(["body", points["kind"].astype(str)]).size().unstack(fill_value=0)
    assert stats["pre"].sort_index().tolist() == kinds["PreSyn"].sort_index().tolist()
    assert stats["post"].sort_index().tolist() == kinds["PostSyn"].sort_index().tolist()
    assert (stats["downstream"] == partners.groupby("body_pre").size().reindex(stats.index).fillna(0)).all()
    tbar = read(new_release, "tbar-nt")
    pre_points = points[points["kind"].astype(str) == "PreSyn"]
    assert len(tbar) == len(pre_points)


# ------------------------------------------------------------------------------------------ bodies
def test_bodies_recover_every_planted_event_and_nothing_else(result, manifest):
    check_body_events(result, manifest)


def check_body_events(result, manifest):
    want = set()
    for e in edits_of(manifest, "merge"):
        want.add(("merged", tuple(e["old"]), (e["new"],)))
    for e in edits_of(manifest, "split"):
        want.add(("split", (e["old"],), tuple(e["new"])))
    for e in edits_of(manifest, "remove"):
        want.add(("removed", (e["old"],), ()))
    for e in edits_of(manifest, "add"):
        want.add(("added", (), (e["new"],)))
    got = {(r.change, tuple(r.old_bodyIds), tuple(r.new_bodyIds)) for r in result.bodies.itertuples(index=False)}
    assert got == want
    assert result.counts["merged"] == len(edits_of(manifest, "merge")) > 0
    assert result.counts["renumbered"] == 0


def test_merge_and_split_synapse_counts(result, manifest, old_release, new_release):
    """Merged: every point of both old bodies is in the new one; split: the old body's points divided."""
    old_points = read(old_release, "syn-points")["body"].value_counts()
    new_points = read(new_release, "syn-points")["body"].value_counts()
    bodies = result.bodies
    for e in edits_of(manifest, "merge"):
        row = bodies[bodies["new_bodyIds"].map(lambda ids, b=e["new"]: ids == [b])].iloc[0]
        assert row["synapses"] == sum(old_points[b] for b in e["old"]) == new_points[e["new"]]
    overlap = result.body_overlap
    for e in edits_of(manifest, "split"):
        parts = overlap[overlap["body_old"] == e["old"]].set_index("body_new")["shared"]
        assert sorted(parts.index) == e["new"]
        assert parts.to_dict() == {b: new_points[b] for b in e["new"]}
        assert parts.sum() == old_points[e["old"]]


def test_property_changes_match_manifest(result, manifest):
    check_property_changes(result, manifest)


def check_property_changes(result, manifest):
    want = {(e["body"], e["property"], e["old"], e["new"]) for e in edits_of(manifest, "property")}
    got = set(result.property_changes[["bodyId", "property", "old", "new"]].itertuples(index=False, name=None))
    assert got == want


def test_type_renames_match_manifest(result, manifest):
    check_type_renames(result, manifest)


def check_type_renames(result, manifest):
    want = {(e["old"], e["new"], len(e["bodies"])) for e in edits_of(manifest, "rename_type")}
    got = set(result.type_renames[["old_type", "new_type", "bodies"]].itertuples(index=False, name=None))
    assert got == want


# ------------------------------------------------------------------------------------------ weights
def type_pair_weights(release: Path, renames: dict[str, str]) -> pd.Series:
    ann = read(release, "annotations")
    type_of = ann.dropna(subset=["type"]).set_index("bodyId")["type"].replace(renames)
    w = read(release, "weights")
    w = w.assign(type_pre=w["body_pre"].map(type_of), type_post=w["body_post"].map(type_of)).dropna()
    return w.groupby(["type_pre", "type_post"])["weight"].sum()


def test_weight_changes_match_the_feathers(result, manifest, old_release, new_release):
    check_weight_changes(result, manifest, old_release, new_release)


def check_weight_changes(result, manifest, old_release, new_release):
    renames = {e["old"]: e["new"] for e in edits_of(manifest, "rename_type")}
    both = (
        pd.concat({"old": type_pair_weights(old_release, renames), "new": type_pair_weights(new_release, {})}, axis=1)
        .fillna(0)
        .astype(int)
    )
    change = both["new"] - both["old"]
    p = result.parameters
    keep = (change.abs() >= p["min_weight_change"]) & (change.abs() >= p["min_relative_change"] * both["old"])
    want = {(a, b, int(o), int(n)) for (a, b), o, n in zip(both.index[keep], both["old"][keep], both["new"][keep])}
    got = set(
        result.weight_changes[["type_pre", "type_post", "weight_old", "weight_new"]].itertuples(index=False, name=None)
    )
    assert got == want
    # every planted weight change is there with its exact size ...
    w = result.weight_changes.set_index(["type_pre", "type_post"])["change"]
    for e in edits_of(manifest, "weight"):
        assert w[(e["pre_type"], e["post_type"])] == e["delta"]
    # ... and every other change involves a type the manifest's body edits touched (nothing stray)
    touched = {e["pre_type"] for e in edits_of(manifest, "weight")} | {
        e["post_type"] for e in edits_of(manifest, "weight")
    }
    ann = read(old_release, "annotations").set_index("bodyId")["type"]
    for e in manifest["edits"]:
        for key in ("old", "new", "donor"):
            ids = e.get(key) if e["kind"] in ("merge", "split", "remove", "add") else None
            for b in [ids] if isinstance(ids, int) else ids or []:
                if b in ann.index and isinstance(ann[b], str):
                    touched.add(renames.get(ann[b], ann[b]))
    for a, b in w.index:
        assert a in touched or b in touched, (a, b)


def test_thresholds_are_parameters(old_store, new_store, result):
    loose = diff_stores(old_store, new_store, min_weight_change=1, min_relative_change=0)
    assert len(loose.weight_changes) > len(result.weight_changes)
    assert (loose.weight_changes["change"] != 0).all()
    with pytest.raises(QueryError, match="min_share"):
        diff_stores(old_store, new_store, min_share=0.3)
    with pytest.raises(QueryError, match="min_weight_change"):
        diff_stores(old_store, new_store, min_weight_change=-1)


def test_body_ranges_give_the_same_diff(old_store, new_store, result):
    """Many small body ranges (as at full scale) find the same changes as one range."""
    ranged = diff_stores(old_store, new_store, rows_per_range=300_000)
    for name, df in result.tables.items():
        pd.testing.assert_frame_equal(
            ranged.tables[name].reset_index(drop=True), df.reset_index(drop=True), check_dtype=False, obj=name
        )


def test_same_store_twice_is_no_change(old_store):
    same = diff_stores(old_store, old_store)
    assert same.unchanged and "no changes" in same.summary()
    assert all(len(df) == 0 for df in same.tables.values())


def test_client_diff(old_store, new_store, result):
    client = Client(old_store)
    try:
        via_client = client.diff(new_store)
    finally:
        client.close()
    assert via_client.counts == result.counts


# ------------------------------------------------------------------------------------------ CLI
def test_cli_summary_tables_and_plot(old_store, new_store, manifest, tmp_path):
    out, png = tmp_path / "tables", tmp_path / "diff.png"
    r = CliRunner().invoke(main, ["diff", str(old_store), str(new_store), "--out", str(out), "--plot", str(png)])
    assert r.exit_code == 0, r.output
    assert f"{len(edits_of(manifest, 'merge'))} merged" in r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bodies = pd.read_csv(out / "bodies.csv")
    assert len(bodies) == sum(len(edits_of(manifest, k)) for k in ("merge", "split", "remove", "add"))
    parquet = pd.read_parquet(out / "weight_changes.parquet")
    for e in edits_of(manifest, "weight"):
        row = parquet[(parquet["type_pre"] == e["pre_type"]) & (parquet["type_post"] == e["post_type"])]
        assert row["change"].tolist() == [e["delta"]]


def test_cli_errors(old_store, tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["diff", str(old_store), str(tmp_path / "missing.duckdb")])
    assert r.exit_code == 1 and "store not found" in r.output and "missing.duckdb" in r.output
    text = tmp_path / "notes.txt"
    text.write_text("not a store")
    r = runner.invoke(main, ["diff", str(text), str(old_store)])
    assert r.exit_code == 1 and "notes.txt" in r.output and "store" in r.output
    r = runner.invoke(main, ["diff", str(old_store), str(old_store), "--min-share", "2"])
    assert r.exit_code == 1 and "min_share" in r.output
    r = runner.invoke(main, ["diff", str(old_store), str(old_store)])
    assert r.exit_code == 0 and "no changes" in r.output


# ------------------------------------------------------------------------------------------ explorer
def test_explorer_page(old_store, new_store, manifest):
    import io

    from fastapi.testclient import TestClient
    from web_helpers import build_app

    with TestClient(build_app([old_store, new_store])) as http:
        r = http.get("/explorer/diff")
        assert r.status_code == 200 and 'href="/explorer/diff?dataset=' in r.text and "Compare" in r.text
        params = {"old": "male-cns:v0.9", "new": NEW_DATASET}
        r = http.get("/explorer/diff", params=params)
        assert r.status_code == 200
        assert 'data-testid="diff-figure"' in r.text and "data:image/png;base64," in r.text
        assert f"{len(edits_of(manifest, 'split'))} split" in r.text
        for e in edits_of(manifest, "rename_type"):
            assert e["new"] in r.text
        r = http.get("/explorer/diff", params={**params, "download": "property_changes", "format": "csv"})
        assert r.status_code == 200
        got = pd.read_csv(io.StringIO(r.text))
        assert sorted(got["bodyId"]) == sorted(e["body"] for e in edits_of(manifest, "property"))
        r = http.get("/explorer/diff", params={**params, "min_weight_change": "x"})
        assert r.status_code == 400 and "min_weight_change" in r.text
        r = http.get("/explorer/diff", params={"old": "male-cns:v0.9", "new": "nothing:here"})
        assert r.status_code == 404


def test_missing_store_error(tmp_path, old_store):
    with pytest.raises(StoreError, match="store not found"):
        diff_stores(tmp_path / "nope.duckdb", old_store)


# ------------------------------------------------------------------------------------------ v0.9 -> v1.0
# The pair a lab diffs: the edited release written as v1.0 (its file names and ROI sets), so the diff is
# shown to match bodies, types and weights across release versions.
@pytest.fixture(scope="module")
def v10_edited(old_release, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("edited-v10") / "release"
    return out, plant_edits(old_release, out, seed=5, target="v1.0")


@pytest.fixture(scope="module")
def v10_store(v10_edited, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("edited-v10-store") / "store.duckdb"
    ingest_release(v10_edited[0], out, progress=False, memory_limit="2GB")  # dataset detected, not given
    return out


@pytest.fixture(scope="module")
def v10_result(old_store, v10_store):
    return diff_stores(old_store, v10_store)


def test_v10_pair_is_written_as_v10(v10_edited):
    release, manifest = v10_edited
    names = {p.name for p in release.iterdir()}
    assert set(V10_FILES.values()) <= names and not set(FILES.values()) & names
    assert manifest["release"] == NEW_DATASET and manifest["source_release"] == "male-cns:v0.9"
    assert json.loads((release / "manifest.json").read_text())["release"] == NEW_DATASET
    points = read(release, "syn-points")
    for level in V10_EXTRA_SETS:
        assert level in points.columns and f"{level}_label" in points.columns
    # the extra levels were filled from the locations: FB layers only inside FB, ME layers only inside ME
    fb = points[points["subprimary"].astype(str).str.startswith("FBl")]
    assert len(fb) > 0 and (fb["primary"].astype(str) == "FB").all()
    me = points[points["ol_layer"].astype(str).str.startswith("ME_R_layer")]
    assert len(me) > 0 and (me["primary"].astype(str) == "ME(R)").all()
    tree = json.loads((release / "roi-hierarchy.json").read_text())
    assert set(V10_EXTRA_SETS) <= set(tree["roiSets"])


def test_v10_pair_diff_recovers_every_planted_edit_and_nothing_else(v10_result, v10_edited, old_release):
    release, manifest = v10_edited
    kinds = {e["kind"] for e in manifest["edits"]}
    assert kinds == {"rename_type", "merge", "split", "property", "remove", "add", "weight"}
    check_body_events(v10_result, manifest)
    check_property_changes(v10_result, manifest)
    check_type_renames(v10_result, manifest)
    check_weight_changes(v10_result, manifest, old_release, release)
    assert v10_result.counts["renumbered"] == 0


def test_v10_store_is_v10_with_queryable_extra_levels(v10_store, v10_edited):
    from flatprint import NeuronCriteria as NC, fetch_neurons
    from flatprint.store import Store

    store = Store.open(v10_store)
    try:
        assert store.dataset == NEW_DATASET
    finally:
        store.close()
    client = Client(v10_store)
    try:
        neurons, counts = fetch_neurons(NC(rois=["FBl2"]), client=client)
    finally:
        client.close()
    # per-body counts in FBl2 by pandas on the written syn-points
    pts = read(v10_edited[0], "syn-points", ["body", "kind", "subprimary"])
    sub = pts[pts["subprimary"].astype(str) == "FBl2"]
    expected = sub.groupby(["body", sub["kind"].astype(str)]).size().unstack(fill_value=0)
    expected = expected.reindex(columns=["PreSyn", "PostSyn"], fill_value=0)
    assert len(neurons) > 0 and set(neurons["bodyId"]) <= set(expected.index)
    got = counts[counts["roi"] == "FBl2"].set_index("bodyId")[["pre", "post"]].sort_index()
    want = expected.loc[got.index]
    assert got["pre"].tolist() == want["PreSyn"].tolist() and got["post"].tolist() == want["PostSyn"].tolist()


def test_plant_edits_target_errors(old_release, tmp_path):
    import pyarrow as pa

    from flatprint.errors import ReleaseError
    from flatprint.synth.edits import _conform

    with pytest.raises(ReleaseError, match="unknown release 'male-cns:v7.0'"):
        plant_edits(old_release, tmp_path / "out", target="v7.0")
    table = pa.table({"x": pa.array([1], pa.int32()), "y": pa.array([1], pa.int32()), "z": pa.array([1], pa.int32())})
    schema = pa.schema([("x", pa.int32()), ("lamina", pa.int8())])
    with pytest.raises(ReleaseError, match=r"points.feather.*'lamina'"):
        _conform(table, schema, "points.feather")
