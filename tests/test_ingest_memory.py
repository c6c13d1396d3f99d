"""What the ingest holds outside DuckDB: a body table split by body range to files and read back one
range at a time (segments' neurotransmitters), and DuckDB's memory limit lowered while Python holds
data. Oracles: pandas on the written table, and sizes known on paper."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from flatprint.errors import ReleaseError
from flatprint.ingest.segments import _RangeFiles
from flatprint.io.duckdb_session import memory_limit_lowered, parse_size


def _write(path, table: pa.Table, batch_rows: int) -> None:
    with pa.ipc.new_file(str(path), table.schema) as writer:
        writer.write_table(table, max_chunksize=batch_rows)


def _body_table(n: int) -> pa.Table:
    rng = np.random.default_rng(3)
    body = rng.permutation(np.arange(1, 3 * n, 3, dtype=np.int64))
    labels = np.array(["gaba", "acetylcholine", "glutamate", None], dtype=object)
    return pa.table(
        {
            "kind": pa.array(labels[rng.integers(0, 4, n)]).dictionary_encode(),
            "body": body,
            "score": rng.random(n),
            "count": pa.array(rng.integers(0, 9, n), pa.int32()),
            "skipped": pa.array(["x"] * n),
        }
    )


def test_ranges_read_back_are_the_rows_of_each_body_range(tmp_path):
    table = _body_table(5000)
    _write(tmp_path / "nt.feather", table, 700)
    bounds = [1000, 1003, 9000, 14000]  # range k: bounds[k-1] <= body < bounds[k]; 1000..1002 holds one body
    ranges = _RangeFiles(tmp_path / "nt.feather", "body", ["body", "kind", "score", "count"], bounds, tmp_path / "r")
    want = table.to_pandas()
    edges = [-np.inf, *bounds, np.inf]
    seen = 0
    for k in range(len(bounds) + 1):
        keyed = ranges.keyed(k)
        assert keyed.table.schema == table.select(["body", "kind", "score", "count"]).schema
        got = keyed.table.to_pandas().iloc[keyed.order].reset_index(drop=True)
        part = want[(want.body >= edges[k]) & (want.body < edges[k + 1])].sort_values("body")
        part = part[["body", "kind", "score", "count"]].reset_index(drop=True)
        pd.testing.assert_frame_equal(got.astype({"kind": object}), part.astype({"kind": object}))
        assert (keyed.keys == part.body.to_numpy()).all()
        seen += len(part)
    assert seen == len(want)
    assert ranges.keyed(1).table.num_rows == 1


def test_a_range_without_rows_is_empty(tmp_path):
    _write(tmp_path / "nt.feather", _body_table(100), 64)
    ranges = _RangeFiles(tmp_path / "nt.feather", "body", ["body", "score"], [10**9], tmp_path / "r")
    assert ranges.keyed(1).table.num_rows == 0 and len(ranges.keyed(1).keys) == 0
    assert ranges.keyed(0).table.num_rows == 100


def test_empty_bodies_are_counted_over_every_batch(tmp_path):
    table = _body_table(300)
    body = pa.array([None if i % 100 == 7 else b for i, b in enumerate(table.column("body").to_pylist())], pa.int64())
    _write(tmp_path / "nt.feather", table.set_column(1, "body", body), 64)
    with pytest.raises(ReleaseError, match=r"nt.feather: column 'body' has 3 empty values"):
        _RangeFiles(tmp_path / "nt.feather", "body", ["body", "score"], [500], tmp_path / "r")


def test_a_body_twice_in_a_range_is_an_error(tmp_path):
    table = _body_table(300)
    _write(tmp_path / "nt.feather", pa.concat_tables([table, table.slice(5, 1)]), 64)
    body = table.column("body")[5].as_py()
    ranges = _RangeFiles(tmp_path / "nt.feather", "body", ["body", "score"], [body], tmp_path / "r")
    ranges.keyed(0)  # the bodies below it are each once
    with pytest.raises(ReleaseError, match=rf"nt.feather: body {body} has more than one row"):
        ranges.keyed(1)


def test_memory_limit_lowered_while_python_holds_data():
    with duckdb.connect() as con:
        con.execute("SET memory_limit = '4GiB'")

        def limit():
            return parse_size(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])

        with memory_limit_lowered(con, 512 * 1024**2):
            assert limit() == int(3.5 * 1024**3)
        assert limit() == 4 * 1024**3
        with memory_limit_lowered(con, 3 * 1024**3):  # never below half
            assert limit() == 2 * 1024**3
        assert limit() == 4 * 1024**3
