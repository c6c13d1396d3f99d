"""`flatprint diff` against a release pair with planted edits: the diff must find every edit in the
edit manifest and nothing else. Expected type-pair weights come from plain pandas on the two releases'
feathers (tests/oracle.py's files), never from the diff's own output."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from flatprint.cli import main
from flatprint.errors import QueryError, StoreError
from flatprint.ingest import ingest_release
from flatprint.query import Client
from flatprint.query.diff import diff_stores
from flatprint.synth.edits import EDITS_FILE, plant_edits
from oracle import FILES

SCALE, SEED = 0.01, 1  # the oracle release of test_indirect.py (built once per session)
NEW_DATASET = "male-cns:v1.0"


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


def read(release: Path, table: str) -> pd.DataFrame:
    return pd.read_feather(release / FILES[table])


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
    want = {(e["body"], e["property"], e["old"], e["new"]) for e in edits_of(manifest, "property")}
    got = set(result.property_changes[["bodyId", "property", "old", "new"]].itertuples(index=False, name=None))
    assert got == want


def test_type_renames_match_manifest(result, manifest):
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
    renames = {e["old"]: e["new"] for e in edits_of(manifest, "rename_type")}
    both = pd.concat({"old": type_pair_weights(old_release, renames), "new": type_pair_weights(new_release, {})},
                     axis=1).fillna(0).astype(int)
    change = both["new"] - both["old"]
    p = result.parameters
    keep = (change.abs() >= p["min_weight_change"]) & (change.abs() >= p["min_relative_change"] * both["old"])
    want = {(a, b, int(o), int(n)) for (a, b), o, n in zip(both.index[keep], both["old"][keep], both["new"][keep])}
    got = set(result.weight_changes[["type_pre", "type_post", "weight_old", "weight_new"]]
              .itertuples(index=False, name=None))
    assert got == want
    # every planted weight change is there with its exact size ...
    w = result.weight_changes.set_index(["type_pre", "type_post"])["change"]
    for e in edits_of(manifest, "weight"):
        assert w[(e["pre_type"], e["post_type"])] == e["delta"]
    # ... and every other change involves a type the manifest's body edits touched (nothing stray)
    touched = {e["pre_type"] for e in edits_of(manifest, "weight")} | {e["post_type"] for e in edits_of(manifest, "weight")}
    ann = read(old_release, "annotations").set_index("bodyId")["type"]
    for e in manifest["edits"]:
        for key in ("old", "new", "donor"):
            ids = e.get(key) if e["kind"] in ("merge", "split", "remove", "add") else None
            for b in ([ids] if isinstance(ids, int) else ids or []):
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
        pd.testing.assert_frame_equal(ranged.tables[name].reset_index(drop=True), df.reset_index(drop=True),
                                      check_dtype=False, obj=name)


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
