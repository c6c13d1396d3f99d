"""`flatprint export parquet`: layout, hive partitions, schema documents, atomicity, and contents
checked against the raw release feathers (tests/oracle.py) with pyarrow (no flatprint code reads)."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from oracle import load, point_id

SINGLE = ("segments", "segment_rois", "connections", "connection_rois", "rois", "roi_map", "meta")
PARTITIONED = {"synapses": "body", "partners": "body_pre"}


@pytest.fixture(scope="module")
def exported(store_path, tmp_path_factory):
    from flatprint.export.parquet import export_parquet

    out = tmp_path_factory.mktemp("parquet") / "pq"
    result = export_parquet(store_path, out, buckets=64)
    return out, result


def read_table(out, name) -> pa.Table:
    if (out / name).is_dir():
        return ds.dataset(out / name, format="parquet", partitioning="hive").to_table()
    return pq.read_table(out / f"{name}.parquet")


def test_layout_and_partitions(exported):
    out, result = exported
    for name in SINGLE:
        assert (out / f"{name}.parquet").is_file(), name
    assert not (out / "connections_by_post.parquet").exists()
    for name, body_col in PARTITIONED.items():
        dirs = sorted(p.name for p in (out / name).iterdir())
        assert dirs and all(d.startswith("body_bucket=") for d in dirs), dirs
        assert {int(d.split("=")[1]) for d in dirs} <= set(range(64))
        for d in dirs[:8]:
            bucket = int(d.split("=")[1])
            t = pq.read_table(out / name / d)  # a partition directory alone: no body_bucket column
            assert "body_bucket" not in t.column_names
            assert (np.asarray(t[body_col]) % 64 == bucket).all()
    assert (out / "SCHEMA.md").is_file() and (out / "_schema.json").is_file()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]
    assert set(result["tables"]) == set(SINGLE) | set(PARTITIONED)


def test_schema_documents_match_the_files(exported):
    out, _ = exported
    schema = json.loads((out / "_schema.json").read_text())
    md = (out / "SCHEMA.md").read_text()
    assert set(schema["tables"]) == set(SINGLE) | set(PARTITIONED)
    for name, doc in schema["tables"].items():
        t = read_table(out, name)
        assert doc["rows"] == t.num_rows, name
        assert [c["name"] for c in doc["columns"]] == t.column_names, name
        for c in doc["columns"]:
            assert c["nulls"] == t[c["name"]].null_count, (name, c["name"])
        for field in t.schema:
            # Spark has no unsigned integers: the export must not write any
            assert not pa.types.is_unsigned_integer(field.type), (name, field)
        assert f"## `{name}`" in md and all(f"`{c['name']}`" in md for c in doc["columns"])
    assert schema["buckets"] == 64 and schema["dataset"] == "male-cns:v0.9"


def test_contents_round_trip(release_dir, exported):
    out, _ = exported
    stats, ann = load(release_dir, "stats"), load(release_dir, "annotations")
    weights, points, partners = (load(release_dir, t) for t in ("weights", "syn-points", "syn-partners"))

    seg = read_table(out, "segments").to_pandas()
    assert set(seg["bodyId"]) == set(stats["body"]) | set(ann["bodyId"])
    conn = read_table(out, "connections").to_pandas()
    assert len(conn) == len(weights) and conn["weight"].sum() == weights["weight"].sum() == len(partners)
    got = conn.set_index(["body_pre", "body_post"])["weight"].sort_index()
    exp = weights.set_index(["body_pre", "body_post"])["weight"].sort_index()
    assert (got.index == exp.index).all() and (got.to_numpy() == exp.to_numpy()).all()

    syn = read_table(out, "synapses").select(["body", "kind", "x", "y", "z", "conf", "body_bucket"])
    syn = syn.to_pandas()
    assert len(syn) == len(points)
    assert (syn["body_bucket"].astype(np.int64) == syn["body"] % 64).all()
    pid = point_id(syn["x"], syn["y"], syn["z"]).to_numpy()  # the store keeps locations, not the packed key
    pts = points.loc[pid]
    assert (syn["body"].to_numpy() == pts["body"].to_numpy()).all()
    assert (
        syn["kind"].to_numpy() == pts["kind"].astype(str).map({"PreSyn": "pre", "PostSyn": "post"}).to_numpy()
    ).all()

    # partners holds the pairs' synapse ids; the ends' locations are those synapses rows
    par = read_table(out, "partners").to_pandas()
    assert list(par.columns) == ["body_pre", "body_post", "pre_id", "post_id", "body_bucket"]
    assert len(par) == len(partners)
    syn_at = (
        read_table(out, "synapses").select(["syn_id", "body", "kind", "x", "y", "z"]).to_pandas().set_index("syn_id")
    )
    for side in ("pre", "post"):
        end = syn_at.loc[par[f"{side}_id"]]
        assert (end["kind"].to_numpy() == side).all() and (end["body"].to_numpy() == par[f"body_{side}"]).all()
        for axis in "xyz":
            par[f"{axis}_{side}"] = end[axis].to_numpy()
    key = ["body_pre", "body_post", "x_pre", "y_pre", "z_pre", "x_post", "y_post", "z_post"]
    a = par[key].astype(np.int64).sort_values(key, ignore_index=True)
    b = partners[key].astype(np.int64).sort_values(key, ignore_index=True)
    assert a.equals(b)


def test_duckdb_reads_hive_partitions(exported):
    """The export reads back in DuckDB with hive partitioning and prunes by body_bucket."""
    import duckdb

    out, _ = exported
    con = duckdb.connect()
    glob = str(out / "synapses" / "**" / "*.parquet")
    body = con.execute(f"SELECT body FROM read_parquet('{glob}', hive_partitioning=true) LIMIT 1").fetchone()[0]
    n = con.execute(
        f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning=true) "
        f"WHERE body_bucket = {body % 64} AND body = {body}"
    ).fetchone()[0]
    assert n > 0


def test_cli_atomic_and_force(store_factory, exported, tmp_path, monkeypatch):
    from flatprint.export import parquet as mod
    from flatprint.export.cli import export_group

    small = store_factory(0, 0.001)
    runner = CliRunner()
    out = tmp_path / "pq"
    res = runner.invoke(export_group, ["parquet", "--buckets", "8", str(small), str(out)])
    assert res.exit_code == 0, res.output
    assert "synapses/" in res.output and "SCHEMA.md" in res.output
    assert len(list((out / "synapses").iterdir())) <= 8
    existing, _ = exported
    again = runner.invoke(export_group, ["parquet", str(small), str(existing)])
    assert again.exit_code == 1 and "exists" in again.output
    assert json.loads((existing / "_schema.json").read_text())["buckets"] == 64  # untouched

    # a failure half way leaves neither OUT nor the temporary directory, and --force keeps the old OUT
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(mod, "describe", boom)
    failed = runner.invoke(export_group, ["parquet", str(small), str(tmp_path / "new")])
    assert failed.exit_code != 0 and not (tmp_path / "new").exists()
    failed = runner.invoke(export_group, ["parquet", "--force", "--buckets", "4", str(small), str(out)])
    assert failed.exit_code != 0 and len(list((out / "synapses").iterdir())) > 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], os.listdir(tmp_path)


def test_tables_option_exports_only_those(store_factory, release_factory, tmp_path):
    """--tables writes only the named tables (their contents as in the release), documents only
    them, and heavy queries run on such a partial export; an unknown name is refused before any output."""
    from flatprint.export.cli import export_group
    from flatprint.export.parquet import duckdb_over_parquet
    from flatprint.query import heavy

    small = store_factory(0, 0.001)
    runner = CliRunner()
    out = tmp_path / "pq"
    res = runner.invoke(
        export_group, ["parquet", "--buckets", "4", "--tables", "segments,connections", str(small), str(out)]
    )
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == [
        "SCHEMA.md",
        "_schema.json",
        "connections.parquet",
        "segments.parquet",
    ]
    schema = json.loads((out / "_schema.json").read_text())
    assert set(schema["tables"]) == {"segments", "connections"}
    assert "partners" not in (out / "SCHEMA.md").read_text()

    weights = load(release_factory(0, 0.001), "weights")
    conn = read_table(out, "connections").to_pandas().sort_values(["body_pre", "body_post"], ignore_index=True)
    exp = weights.sort_values(["body_pre", "body_post"], ignore_index=True)
    assert (conn["body_pre"].to_numpy() == exp["body_pre"].to_numpy()).all()
    assert (conn["weight"].to_numpy() == exp["weight"].to_numpy()).all()

    # the type matrix reads only segments and connections: same rows on the partial export as on the store
    got = heavy.run_duckdb(duckdb_over_parquet(out), "connection_matrix", groupby="type")
    want = heavy.run_duckdb(small, "connection_matrix", groupby="type")
    assert len(want) > 0 and got.astype(str).equals(want.astype(str))

    bad = runner.invoke(export_group, ["parquet", "--tables", "segments,neurons", str(small), str(tmp_path / "bad")])
    assert bad.exit_code == 1 and "'neurons'" in bad.output and "connection_rois" in bad.output
    assert not (tmp_path / "bad").exists()


def _lexsorted(frame, columns) -> bool:
    """True when the rows are in ascending order of ``columns`` (an ROI column compares as text)."""
    keys = [frame[c].astype(str).to_numpy() if frame[c].dtype == object else frame[c].to_numpy() for c in columns]
    order = np.lexsort(keys[::-1])
    return bool((order == np.arange(len(frame))).all())


def test_single_tables_are_written_in_their_order(exported, store_factory, tmp_path, monkeypatch):
    """segments, segment_rois, connections and connection_rois are copied in the store's own order
    (no second sort: it spilled 12.5 GB at scale 1.0); the files must still be sorted by their
    export order, and hold the same rows, in the same order, as a sorted copy."""
    from flatprint.export import parquet as mod

    out, _ = exported
    for table, columns in {
        "segments": ["bodyId"],
        "segment_rois": ["roi", "bodyId"],
        "connections": ["body_pre", "body_post"],
        "connection_rois": ["body_pre", "body_post", "roi"],
    }.items():
        frame = read_table(out, table).to_pandas()
        assert len(frame) > 0 and _lexsorted(frame, columns), table

    small = store_factory(0, 0.001)
    stored = tmp_path / "stored"
    mod.export_parquet(small, stored, buckets=2, tables=["segments", "connection_rois"])
    monkeypatch.setattr(mod, "STORED_IN_EXPORT_ORDER", {})
    sorted_copy = tmp_path / "sorted"
    mod.export_parquet(small, sorted_copy, buckets=2, tables=["segments", "connection_rois"])
    for table in ("segments", "connection_rois"):
        assert read_table(stored, table).equals(read_table(sorted_copy, table)), table
