"""Releases as data: Male CNS v1.0 beside v0.9 (registry, synth, ingest, serve).

The v1.0 test release is drawn with another seed than the v0.9 one, so a server that mixed the two up
would answer with the other release's numbers. Expected answers come from pandas and pyarrow on the
raw feathers, or are written out here on paper.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from conftest import TEST_SCALE

from flatprint.errors import ReleaseError
from flatprint.ingest import ingest_release
from flatprint.release.registry import describe, releases
from flatprint.synth import synthesize

SRC = Path(__file__).resolve().parents[1] / "src" / "flatprint"
V10_SEED = 1
V10_FILES = {  # as the public v1.0 bucket names them (docs/schemas.md: confirmed by third-party downloaders)
    "annotations": "body-annotations-male-cns-v1.0-minconf-0.5.feather",
    "neurotransmitters": "body-neurotransmitters-male-cns-v1.0.feather",
    "stats": "body-stats-male-cns-v1.0-minconf-0.5.feather",
    "weights": "connectome-weights-male-cns-v1.0-minconf-0.5.feather",
    "syn-points": "syn-points-male-cns-v1.0-minconf-0.5.feather",
    "syn-partners": "syn-partners-male-cns-v1.0-minconf-0.5.feather",
    "tbar-nt": "tbar-neurotransmitters-male-cns-v1.0.feather",
}
V10_ROI_SETS = ["major", "primary", "mid", "subprimary", "ol_column", "ol_layer"]
# One ROI of each level below primary, with the syn-points column that carries it.
EXTRA_ROIS = {"ME_R_layer_03": "ol_layer", "LO_L_col_02_03": "ol_column", "FBl2": "subprimary"}


@pytest.fixture(scope="module")
def v10_release(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("release-v10") / "release"
    synthesize(out, scale=TEST_SCALE, seed=V10_SEED, progress=False, morphology=False, release="v1.0")
    return out


@pytest.fixture(scope="module")
def v10_store(v10_release, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("store-v10") / "store.duckdb"
    ingest_release(v10_release, out, progress=False, memory_limit="2GB")
    return out


def _schema(path: Path) -> pa.Schema:
    with ipc.open_file(str(path)) as reader:
        return reader.schema


def _points(release: Path, columns: list[str]) -> pd.DataFrame:
    return pd.read_feather(release / V10_FILES["syn-points"], columns=columns)


# ------------------------------------------------------------------------------------------------ registry
def test_registry_knows_both_releases():
    assert list(releases()) == ["male-cns:v0.9", "male-cns:v1.0"]  # oldest first
    v10 = describe("v1.0")
    assert v10 is describe("male-cns:v1.0") and v10.dataset == "male-cns" and v10.released == "2026-06-08"
    assert v10.files == V10_FILES
    assert v10.filename("weights", "traced-only") == "connectome-weights-male-cns-v1.0-minconf-0.5-traced-only.feather"
    assert v10.rows["weights"] == 151_856_684 and v10.rows["annotations"] == 211_577
    assert [s.name for s in v10.roi_sets] == V10_ROI_SETS
    assert [s.name for s in describe("v0.9").roi_sets] == ["major", "primary"]
    # Set names nobody has confirmed say so, with where the guess comes from.
    assert {s.name for s in v10.roi_sets if not s.confirmed} == {"mid", "subprimary", "ol_column", "ol_layer"}
    with pytest.raises(ReleaseError, match=r"unknown release 'male-cns:v9.9'; known: male-cns:v0.9, male-cns:v1.0"):
        describe("v9.9")
    with pytest.raises(ReleaseError, match="has no variant 'bogus'"):
        v10.filename("weights", "bogus")


def test_download_manifest_of_v10():
    release = describe("v1.0").download_manifest()
    weights = release.item("weights")
    assert weights.gs_url == (
        "gs://flyem-male-cns/v1.0/connectome-data/flat-connectome/connectome-weights-male-cns-v1.0-minconf-0.5.feather"
    )
    assert release.item("swc").gs_url == "gs://flyem-male-cns/v1.0/segmentation/skeletons-malecns/skeletons-swc/"
    assert release.item("fullbrain-roi-v4").gs_url == "gs://flyem-male-cns/rois/fullbrain-roi-v4/"
    assert release.names("tables") == tuple(V10_FILES)


def test_no_module_of_synth_or_release_is_over_800_lines():
    for package in ("synth", "release"):
        for path in (SRC / package).glob("*.py"):
            assert len(path.read_text().splitlines()) <= 800, path


# ------------------------------------------------------------------------------------------------ synth
def test_v10_synth_writes_the_registry_schemas(v10_release):
    """Checked on the written files with pyarrow, against the description and against the column list on paper."""
    described = describe("v1.0").schemas()
    assert sorted(p.name for p in v10_release.glob("*.feather")) == sorted(V10_FILES.values())
    for key, name in V10_FILES.items():
        written = _schema(v10_release / name)
        assert written.remove_metadata().equals(described[key]), (key, written)
    points = _schema(v10_release / V10_FILES["syn-points"])
    roi_columns = [c for s in V10_ROI_SETS for c in (s, f"{s}_label")]
    assert points.names == ["x", "y", "z", "kind", "conf", "sv", "body", "compartment", *roi_columns, "point_id"]
    assert points.field("ol_column").type == pa.dictionary(pa.int16(), pa.string())
    assert points.field("ol_layer_label").type == pa.uint8()
    assert json.loads(points.metadata[b"pandas"])["index_columns"] == ["point_id"]
    tbar = _schema(v10_release / V10_FILES["tbar-nt"])
    assert tbar.names[7:9] == ["major", "primary"]
    assert len(_schema(v10_release / V10_FILES["annotations"]).names) == 36
    manifest = json.loads((v10_release / "manifest.json").read_text())
    assert manifest["release"] == "male-cns:v1.0"


def test_v10_extra_levels_lie_inside_their_primary(v10_release):
    pts = _points(v10_release, ["primary", "subprimary", "ol_layer", "ol_column"])
    layer = pts[pts["ol_layer"] == "ME_R_layer_03"]
    column = pts[pts["ol_column"] == "LO_L_col_02_03"]
    fb = pts[pts["subprimary"] == "FBl2"]
    assert len(layer) and len(column) and len(fb)
    assert set(layer["primary"]) == {"ME(R)"} and set(column["primary"]) == {"LO(L)"} and set(fb["primary"]) == {"FB"}
    # Outside the optic neuropils there are no layers; the label column agrees with the name column.
    outside = pts[~pts["primary"].isin(["ME(R)", "LO(R)", "LOP(R)", "ME(L)", "LO(L)", "LOP(L)"])]
    assert (outside["ol_layer"] == "<unspecified>").all()


# ------------------------------------------------------------------------------------------------ ingest
def test_v10_ingests_as_its_own_dataset(v10_store, v10_release):
    from flatprint.store import Store

    store = Store.open(v10_store)
    try:
        assert store.dataset == "male-cns:v1.0"
        assert store.meta["tag"] == "v1.0"
        roi_info = json.loads(store.meta["roiInfo"])
    finally:
        store.close()
    pts = _points(v10_release, ["kind", "ol_layer"])
    layer = pts[pts["ol_layer"] == "ME_R_layer_03"]
    assert roi_info["ME_R_layer_03"] == {
        "pre": int((layer["kind"] == "PreSyn").sum()),
        "post": int((layer["kind"] == "PostSyn").sum()),
    }


def test_v10_synapses_keep_each_points_compartment(v10_store, v10_release):
    """v1.0's syn-points has a compartment column: every synapses row carries its point's, matched by
    body, kind and location with pandas on the feather."""
    key = ["body", "kind", "x", "y", "z"]
    pts = _points(v10_release, [*key, "compartment"]).astype({"kind": str})
    want = pts.assign(kind=pts["kind"].map({"PreSyn": "pre", "PostSyn": "post"}))
    with duckdb.connect(str(v10_store), read_only=True) as con:
        got = con.execute(f"SELECT {', '.join(key)}, compartment FROM synapses").df()
    assert want["compartment"].notna().any()
    want, got = (f.sort_values(key).reset_index(drop=True) for f in (want, got))
    pd.testing.assert_frame_equal(got[key], want[key], check_dtype=False)
    got_c, want_c = (f["compartment"].astype(object).fillna("-").astype(str) for f in (got, want))
    assert (got_c == want_c).all()


def test_missing_v10_file_is_named(v10_release, tmp_path):
    from flatprint.ingest.validate import validate_release

    partial = tmp_path / "partial"
    partial.mkdir()
    for name in list(V10_FILES.values())[:-1]:
        (partial / name).symlink_to(v10_release / name)
    with pytest.raises(ReleaseError, match=r"1 missing file of male-cns:v1.0 .*tbar-neurotransmitters-male-cns-v1.0"):
        validate_release(partial)


def _oracle_roi_counts(release: Path, roi: str, column: str) -> pd.DataFrame:
    pts = _points(release, ["body", "kind", column])
    sub = pts[pts[column] == roi]
    counts = sub.groupby(["body", "kind"], observed=True).size().unstack(fill_value=0)
    counts = counts.reindex(columns=["PreSyn", "PostSyn"], fill_value=0)
    return counts.rename(columns={"PreSyn": "pre", "PostSyn": "post"}).rename_axis("bodyId")


@pytest.mark.parametrize("roi", list(EXTRA_ROIS))
def test_extra_roi_levels_are_queryable(v10_store, v10_release, roi):
    from flatprint import Client, NeuronCriteria as NC, fetch_neurons

    client = Client(v10_store)
    try:
        neurons, counts = fetch_neurons(NC(rois=[roi]), client=client)
    finally:
        client.close()
    expected = _oracle_roi_counts(v10_release, roi, EXTRA_ROIS[roi])
    assert len(neurons) > 0
    assert set(neurons["bodyId"]) <= set(expected.index)
    got = counts[counts["roi"] == roi].set_index("bodyId")[["pre", "post"]].sort_index()
    pd.testing.assert_frame_equal(
        got, expected.loc[sorted(neurons["bodyId"])].astype(got.dtypes.to_dict()), check_names=False
    )


def test_grouping_roi_is_counted_once(v10_store, v10_release):
    """MB(R) is both an ancestor of the MB primaries and the v1.0 'mid' level: a point counts once."""
    from flatprint import Client, NeuronCriteria as NC, fetch_neurons

    client = Client(v10_store)
    try:
        neurons, counts = fetch_neurons(NC(rois=["MB(R)"]), client=client)
    finally:
        client.close()
    expected = _oracle_roi_counts(v10_release, "MB(R)", "mid")
    got = counts[counts["roi"] == "MB(R)"].set_index("bodyId")[["pre", "post"]].sort_index()
    assert (got.values == expected.loc[got.index].values).all()


# ------------------------------------------------------------------------------------------------ serve
@pytest.fixture(scope="module")
def two_release_server(store_path, v10_store, tmp_path_factory):
    from server_fixture import running_server

    home = tmp_path_factory.mktemp("server-home-releases")
    with running_server([str(store_path), str(v10_store)], home) as (url, cert):
        yield url, cert


def test_server_lists_both_datasets(two_release_server):
    import requests

    url, cert = two_release_server
    datasets = requests.get(f"{url}/api/dbmeta/datasets", verify=str(cert), timeout=30).json()
    assert set(datasets) == {"male-cns:v0.9", "male-cns:v1.0"}
    # Each entry describes its own store: only v1.0 has the extra ROI levels.
    assert set(EXTRA_ROIS) <= set(datasets["male-cns:v1.0"]["ROIs"])
    assert not set(EXTRA_ROIS) & set(datasets["male-cns:v0.9"]["ROIs"])


def _oracle_neurons(release: Path, files: dict[str, str], type_: str) -> pd.DataFrame:
    ann = pd.read_feather(release / files["annotations"], columns=["bodyId", "type", "instance"])
    stats = pd.read_feather(release / files["stats"], columns=["body", "pre", "post"])
    typed = ann[ann["type"] == type_].merge(stats, left_on="bodyId", right_on="body", how="left")
    return typed.set_index("bodyId")[["instance", "pre", "post"]].fillna({"pre": 0, "post": 0}).sort_index()


def test_neuprint_python_picks_either_release_by_name(two_release_server, release_dir, v10_release):
    neuprint = pytest.importorskip("neuprint")
    url, cert = two_release_server
    sources = {"male-cns:v0.9": (release_dir, describe("v0.9").files), "male-cns:v1.0": (v10_release, V10_FILES)}
    seen = {}
    for key, (release, files) in sources.items():
        client = neuprint.Client(url, dataset=key, token="local", verify=str(cert))
        for type_ in ("DNge104", "hDeltaA"):
            neurons, _ = neuprint.fetch_neurons(neuprint.NeuronCriteria(type=type_), client=client)
            got = neurons.set_index("bodyId")[["instance", "pre", "post"]].sort_index()
            expected = _oracle_neurons(release, files, type_)
            assert list(got.index) == list(expected.index), (key, type_)
            assert (got[["pre", "post"]].to_numpy() == expected[["pre", "post"]].to_numpy()).all(), (key, type_)
            seen[key, type_] = got
    # The two releases were drawn with other seeds: answers differ, so neither was served for the other.
    assert not seen["male-cns:v0.9", "hDeltaA"].equals(seen["male-cns:v1.0", "hDeltaA"])
    # An extra ROI level of v1.0 through neuprint-python: per-ROI counts as the raw feather has them.
    client = neuprint.Client(url, dataset="male-cns:v1.0", token="local", verify=str(cert))
    neurons, roi_counts = neuprint.fetch_neurons(neuprint.NeuronCriteria(rois=["ME_R_layer_03"]), client=client)
    expected = _oracle_roi_counts(v10_release, "ME_R_layer_03", "ol_layer")
    got = roi_counts[roi_counts["roi"] == "ME_R_layer_03"].set_index("bodyId")[["pre", "post"]].sort_index()
    assert len(got) == len(neurons) > 0
    assert (got.to_numpy() == expected.loc[got.index].to_numpy()).all()


def test_roi_matrix_by_major_region_of_a_v10_store(v10_store, v10_release):
    """ROI x ROI by the major set: each synapse pair under (major region of its T-bar, of its PSD)."""
    import duckdb

    from flatprint.query.heavy import connection_matrix_sql

    with duckdb.connect(str(v10_store), read_only=True) as con:
        got = con.execute(connection_matrix_sql("roi", neurons_only=False, roi_set="major")).df()
    pts = _points(v10_release, ["x", "y", "z", "body", "major"])
    pts["major"] = pts["major"].astype(str)
    partners = pd.read_feather(v10_release / V10_FILES["syn-partners"])
    for end in ("pre", "post"):
        side = pts.rename(columns={c: f"{c}_{end}" for c in ("x", "y", "z", "body", "major")})
        partners = partners.merge(side, on=[f"x_{end}", f"y_{end}", f"z_{end}", f"body_{end}"], how="left")
    inside = partners[(partners["major_pre"] != "<unspecified>") & (partners["major_post"] != "<unspecified>")]
    expected = (
        inside.groupby(["major_pre", "major_post"])
        .agg(
            weight=("body_pre", "size"),
            connections=("body_pre", lambda s: len(set(zip(s, inside.loc[s.index, "body_post"])))),
        )
        .reset_index()
    )
    expected.columns = ["pre_group", "post_group", "weight", "connections"]
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.astype(got.dtypes.to_dict()))
