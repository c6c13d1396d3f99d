"""Tests for flatprint.io.feather's writers: bytes compared with pyarrow's own Feather V2 writer (what
the release's files are written with), batch layout and rows read back with pyarrow."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from pyarrow import feather

from flatprint.errors import ReleaseError
from flatprint.io.feather import FEATHER_BATCH_ROWS, FeatherWriter, iter_batches, write_feather


def sample_table(rows: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "body": pa.array(rng.integers(0, 2**62, rows), pa.int64()),
            "x": pa.array(rng.normal(size=rows).astype(np.float32)),
            "roi": pa.array(rng.choice(["AL(R)", "FB", "NO", None], rows)),
        }
    )


def test_write_feather_has_pyarrows_bytes(tmp_path):
    table = sample_table(2 * FEATHER_BATCH_ROWS + 1234)
    ours, theirs = tmp_path / "ours.feather", tmp_path / "theirs.feather"
    assert write_feather(table, ours) == {"file": "ours.feather", "rows": table.num_rows}
    feather.write_feather(table, str(theirs), compression="lz4", chunksize=FEATHER_BATCH_ROWS)
    assert ours.read_bytes() == theirs.read_bytes()


def test_pieces_do_not_change_the_batches(tmp_path):
    table = sample_table(3 * FEATHER_BATCH_ROWS + 77, seed=1)
    whole = tmp_path / "whole.feather"
    write_feather(table, whole)
    cuts = [0, 5, 40000, 40001, 131072, 150000, table.num_rows]
    pieces = tmp_path / "pieces.feather"
    with FeatherWriter(pieces, table.schema) as writer:
        for start, stop in zip(cuts, cuts[1:]):
            writer.write(table.slice(start, stop - start))
            writer.release()
    # the same batches; not always the same bytes (string columns cut into pieces are encoded differently)
    reader, oracle = pa.ipc.open_file(str(pieces)), pa.ipc.open_file(str(whole))
    assert [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)] == [FEATHER_BATCH_ROWS] * 3 + [77]
    assert all(reader.get_batch(i).equals(oracle.get_batch(i)) for i in range(4))
    assert feather.read_table(str(pieces)).equals(table)


def test_append_file_and_unrechunked_pieces(tmp_path):
    first, second = sample_table(1000, seed=2), sample_table(70000, seed=3)
    write_feather(second, tmp_path / "second.feather")
    out = tmp_path / "out.feather"
    with FeatherWriter(out, first.schema, rechunk=False) as writer:
        writer.write(first)
        writer.append_file(tmp_path / "second.feather")
    assert writer.rows == 71000
    assert feather.read_table(str(out)).equals(pa.concat_tables([first, second]))
    assert [b.num_rows for b in iter_batches(out)] == [1000, FEATHER_BATCH_ROWS, 70000 - FEATHER_BATCH_ROWS]


def test_bad_writes_name_the_file_and_leave_nothing(tmp_path):
    table = sample_table(10)
    path = tmp_path / "t.feather"
    with pytest.raises(ReleaseError, match="t.feather.*do not match"):
        with FeatherWriter(path, table.schema) as writer:
            writer.write(table.drop_columns(["x"]))
    assert not path.exists()
    with pytest.raises(ReleaseError, match="missing-dir"):
        FeatherWriter(tmp_path / "missing-dir" / "t.feather", table.schema)
