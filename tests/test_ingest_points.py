"""The syn-points stream's scan (ingest/points.py): each ROI set's (label, name) pairs and the bad
kinds, against pandas; and the ingest's errors and ROI tree that rest on them."""

from __future__ import annotations

import shutil

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pytest
from oracle import FILES

from flatprint.errors import ReleaseError
from flatprint.ingest import ingest_release
from flatprint.ingest.points import PointScan, range_batch, range_schema
from flatprint.ingest.ranges import point_ids


def _batch(labels, names, kinds, dictionary=True):
    name_array = pa.array(names, pa.string())
    kind_array = pa.array(kinds, pa.string())
    if dictionary:
        name_array, kind_array = name_array.dictionary_encode(), kind_array.dictionary_encode()
    return pa.RecordBatch.from_arrays(
        [pa.array(labels, pa.uint16()), name_array, kind_array, pa.array(range(len(labels)), pa.int64())],
        names=["primary_label", "primary", "kind", "body"],
    )


@pytest.mark.parametrize("dictionary", [True, False])
def test_label_pairs_and_bad_kinds_match_pandas(dictionary):
    """Every distinct (label, name) pair with a non-zero label, across batches whose dictionaries
    differ, with null names and labels and a label given two names; kinds other than PreSyn/PostSyn
    counted as SQL's NOT IN counts them (a null kind is not counted)."""
    rng = np.random.default_rng(0)
    roi_names = [f"R{i}" for i in range(40)] + ["<unspecified>"]
    batches = []
    for _ in range(12):
        n = 500
        labels = rng.integers(0, 45, n).tolist()
        names = [roi_names[lab % len(roi_names)] if lab else "<unspecified>" for lab in labels]
        for i in rng.integers(0, n, 3):
            labels[i] = None
        for i in rng.integers(0, n, 3):
            names[i] = None
        names[int(rng.integers(0, n))] = "other"  # one label with a second name
        kinds = rng.choice(["PreSyn", "PostSyn"], n).tolist()
        if len(batches) == 5:
            kinds[:4] = ["Foo", None, "Bar", None]
        batches.append(_batch(labels, names, kinds, dictionary))
    reader = pa.RecordBatchReader.from_batches(batches[0].schema, iter(batches))
    scan = PointScan(["primary"])
    out = scan.stream(reader, ["body", "kind"]).read_all()
    assert out.column_names == ["body", "kind"] and out.num_rows == 12 * 500

    frame = pa.Table.from_batches(batches).to_pandas()
    frame["primary"] = frame["primary"].astype(object)
    want = frame[frame.primary_label.fillna(0) != 0][["primary_label", "primary"]].drop_duplicates()
    want = {(int(lab), None if pd.isna(name) else name) for lab, name in want.itertuples(index=False)}
    assert set(scan.label_pairs("primary")) == want
    assert len(scan.label_pairs("primary")) == len(want)
    kinds = frame.kind.astype(object)
    assert scan.bad_kinds == int((kinds.notna() & ~kinds.isin(["PreSyn", "PostSyn"])).sum()) == 2


def _copy(release, tmp_path):
    out = tmp_path / "release"
    shutil.copytree(release, out)
    (out / "manifest.json").unlink()
    return out


def test_a_kind_other_than_presyn_or_postsyn_is_an_error(release_dir, tmp_path):
    rel = _copy(release_dir, tmp_path)
    path = rel / FILES["syn-points"]
    t = feather.read_table(path)
    kinds = t.column("kind").to_pylist()
    kinds[3] = kinds[10] = "Synapse"
    kinds[11] = None  # a null kind is not counted (as SQL's NOT IN does not)
    t = t.set_column(t.schema.get_field_index("kind"), "kind", pa.array(kinds).dictionary_encode())
    feather.write_feather(t, path)
    with pytest.raises(ReleaseError, match="column 'kind' has 2 values other than PreSyn/PostSyn"):
        ingest_release(rel, tmp_path / "s.duckdb", progress=False)
    assert not (tmp_path / "s.duckdb").exists()


def test_without_a_roi_tree_each_primary_lies_under_its_major_region(release_dir, tmp_path):
    """No roi-hierarchy.json: each primary ROI is put under the major region most of its points lie
    in (pandas on the raw points), and its label is the points' label."""
    rel = _copy(release_dir, tmp_path)
    (rel / "roi-hierarchy.json").unlink()
    ingest_release(rel, tmp_path / "s.duckdb", progress=False, buckets=3)
    points = pd.read_feather(rel / FILES["syn-points"], columns=["primary", "primary_label", "major"])
    points = points.astype({"primary": str, "major": str})
    points = points[points.primary != "<unspecified>"]
    counts = points.groupby(["primary", "major"]).size().reset_index(name="n")
    top = counts.sort_values("n").groupby("primary").tail(1)
    want = {p: (None if m == "<unspecified>" else m) for p, m in zip(top.primary, top.major)}
    labels = points.drop_duplicates("primary").set_index("primary").primary_label.astype(int).to_dict()
    with duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True) as con:
        got = con.execute("SELECT roi, parent, label FROM rois WHERE roi_set = 'primary'").fetchall()
    assert {roi: parent for roi, parent, _ in got} == want
    assert {roi: label for roi, _, label in got} == labels


def test_a_tbar_given_twice_is_an_error(release_dir, tmp_path):
    """A T-bar row repeated in tbar-nt would give its point two NT rows: counted as a duplicate."""
    rel = _copy(release_dir, tmp_path)
    path = rel / FILES["tbar-nt"]
    t = feather.read_table(path)
    feather.write_feather(pa.concat_tables([t, t.take([5])]).combine_chunks(), path)
    with pytest.raises(ReleaseError, match="syn-points.*: 1 duplicate point locations"):
        ingest_release(rel, tmp_path / "s.duckdb", progress=False, buckets=2)


def test_null_and_nan_nt_probabilities_are_kept(release_dir, tmp_path):
    """A T-bar's null probability stays NULL and a NaN stays NaN; points without a T-bar row have
    NULL (pandas on the raw tbar-nt)."""
    rel = _copy(release_dir, tmp_path)
    path = rel / FILES["tbar-nt"]
    t = feather.read_table(path)
    gaba = t.column("nt_gaba_prob").to_pylist()
    gaba[0], gaba[1] = None, float("nan")
    t = t.set_column(t.schema.get_field_index("nt_gaba_prob"), "nt_gaba_prob", pa.array(gaba, pa.float32()))
    feather.write_feather(t, path)
    ingest_release(rel, tmp_path / "s.duckdb", progress=False, buckets=3)
    tbars = t.select(["x", "y", "z", "body", "nt_gaba_prob"]).to_pandas()
    with duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True) as con:
        got = con.execute("SELECT x, y, z, body, ntGabaProb, kind FROM synapses").df()
    pre = got[got.kind == "pre"].merge(tbars, on=["x", "y", "z", "body"], how="left")
    assert len(pre) == (got.kind == "pre").sum()
    want, have = pre.nt_gaba_prob.to_numpy(), pre.ntGabaProb.to_numpy()
    assert np.array_equal(np.isnan(want), np.isnan(have))
    assert np.array_equal(want[~np.isnan(want)], have[~np.isnan(have)])
    first = got.merge(tbars.iloc[[0, 1]], on=["x", "y", "z", "body"])
    assert first.ntGabaProb.isna().sum() == 2
    with duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True) as con:
        x, y, z, body = (int(v) for v in tbars.iloc[0][["x", "y", "z", "body"]])
        assert con.execute(
            "SELECT ntGabaProb IS NULL FROM synapses WHERE kind = 'pre' AND x = ? AND y = ? AND z = ? AND body = ?",
            [x, y, z, body],
        ).fetchall() == [(True,)]
        x, y, z, body = (int(v) for v in tbars.iloc[1][["x", "y", "z", "body"]])
        assert con.execute(
            "SELECT isnan(ntGabaProb) FROM synapses WHERE kind = 'pre' AND x = ? AND y = ? AND z = ? AND body = ?",
            [x, y, z, body],
        ).fetchall() == [(True,)]
    assert got[got.kind == "post"].ntGabaProb.isna().all()


@pytest.mark.parametrize("dictionary", [True, False])
def test_range_batch_casts_as_sql_and_keeps_null_kinds_null(dictionary):
    """The range files' columns against answers known on paper: is_pre is kind = 'PreSyn' (null for
    a null kind, as in SQL), labels widen to int32, names and compartment become plain text, and a
    coordinate beyond int32 raises instead of wrapping."""
    kind = pa.array(["PreSyn", None, "PostSyn", "PreSyn"])
    names = pa.array(["AL(R)", "AL(R)", None, "LO(L)"])
    comp = pa.array(["axon", None, "dendrite", "axon"])
    if dictionary:
        kind, names, comp = (a.dictionary_encode() for a in (kind, names, comp))
    batch = pa.RecordBatch.from_pydict(
        {
            "x": pa.array([1, 2, 3, 4], pa.int64()),
            "y": pa.array([5, 6, 7, 8], pa.int32()),
            "z": pa.array([9, 10, 11, 12], pa.uint16()),
            "kind": kind,
            "conf": pa.array([0.5, 0.25, 1.0, 0.0], pa.float64()),
            "body": pa.array([7, 7, 8, 9], pa.uint32()),
            "primary": names,
            "primary_label": pa.array([3, 3, 0, 65535], pa.uint16()),
            "compartment": comp,
            "bucket": pa.array([0, 0, 1, 1], pa.int32()),
        }
    )
    schema = range_schema(["primary"], True, True)
    got = range_batch(batch, schema)
    assert got.schema == schema
    assert got.column("is_pre").to_pylist() == [True, None, False, True]
    assert got.column("x").to_pylist() == [1, 2, 3, 4] and got.column("z").type == pa.int32()
    assert got.column("conf").to_pylist() == [0.5, 0.25, 1.0, 0.0] and got.column("conf").type == pa.float32()
    assert got.column("primary_roi").to_pylist() == ["AL(R)", "AL(R)", None, "LO(L)"]
    assert got.column("primary_label").to_pylist() == [3, 3, 0, 65535]
    assert got.column("compartment").to_pylist() == ["axon", None, "dendrite", "axon"]
    assert range_schema(["primary"], False, False).names == [
        "x",
        "y",
        "z",
        "is_pre",
        "conf",
        "body",
        "primary_label",
        "bucket",
    ]
    wide = batch.set_column(0, "x", pa.array([1, 2, 3, 1 << 40], pa.int64()))
    with pytest.raises(pa.ArrowInvalid):
        range_batch(wide, schema)


def test_point_ids_pack_21_bits_an_axis():
    """Answers known on paper: z << 42 | y << 21 | x, null where a coordinate is null, and a
    negative coordinate raises rather than wrapping."""
    x, y, z = pa.array([1, 0, 5], pa.int32()), pa.array([2, 0, None], pa.int32()), pa.array([3, 1, 7], pa.int32())
    assert point_ids(x, y, z).to_pylist() == [3 * 2**42 + 2 * 2**21 + 1, 2**42, None]
    with pytest.raises(pa.ArrowInvalid):
        point_ids(pa.array([-1], pa.int32()), pa.array([0], pa.int32()), pa.array([0], pa.int32()))
