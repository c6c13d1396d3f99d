"""flatprint.io holds every file format, one module each: no io module grows past 800 lines, and no
module outside io/ encodes Arrow IPC or feather itself (they call flatprint.io.arrow_ipc / .feather)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from flatprint.io.arrow_ipc import (
    encode_arrow_stream,
    open_stream_file,
    partition_stream_files,
    read_stream_file,
    stream_file_writer,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "flatprint"
ARROW_WRITERS = re.compile(r"ipc\.new_stream|ipc\.new_file|RecordBatch(?:Stream|File)Writer|feather\.write_feather\(")


def test_io_modules_stay_small():
    sizes = {p.name: len(p.read_text().splitlines()) for p in (SRC / "io").glob("*.py")}
    assert {"units.py", "precomputed_skeletons.py", "precomputed_volumes.py", "obj.py", "arrow_ipc.py"} <= set(sizes)
    assert {name: n for name, n in sizes.items() if n > 800} == {}


def test_only_io_writes_arrow():
    writers = {
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.parent.name != "io" and ARROW_WRITERS.search(p.read_text())
    }
    assert writers == set()


def test_arrow_stream_round_trip_keeps_metadata():
    table = pa.table(
        {"bodyId": pa.array([1, 2**62], pa.int64()), "type": ["a", None]},
        metadata={b"flatprint.python": b"c.fetch_neurons()"},
    )
    back = pa.ipc.open_stream(encode_arrow_stream(table)).read_all()
    assert back.equals(table) and back.schema.metadata == table.schema.metadata


def test_stream_file_keeps_each_batchs_dictionaries(tmp_path):
    """Two batches whose dictionaries differ read back as written (the file format would refuse
    the second dictionary)."""
    schema = pa.schema([("t", pa.dictionary(pa.int8(), pa.string()))])
    first = pa.record_batch([pa.array(["a", "b", "a"]).dictionary_encode()], schema=schema)
    second = pa.record_batch([pa.array(["c", "a"]).dictionary_encode()], schema=schema)
    with stream_file_writer(tmp_path / "x.arrows", schema) as writer:
        writer.write_batch(first)
        writer.write_batch(second)
    back = read_stream_file(tmp_path / "x.arrows")
    assert back.column("t").cast(pa.string()).to_pylist() == ["a", "b", "a", "c", "a"]


def test_partition_stream_files_split_rows_by_the_column(tmp_path):
    """Each row lands in the file of its column's value, in its order within that value, across
    batches; the column itself is left out (pandas groups the same rows)."""
    rng = np.random.default_rng(1)
    table = pa.table(
        {"key": rng.integers(0, 5, 3000).astype(np.int32), "v": np.arange(3000), "s": ["a", "b", "c"] * 1000}
    )
    out = partition_stream_files(table.to_batches(700), table.schema, tmp_path / "p", "key")
    want = table.to_pandas()
    folders = sorted(p.name for p in out.iterdir())
    assert folders == [f"key={k}" for k in sorted(want.key.unique())]
    for k, rows in want.groupby("key"):
        with open_stream_file(out / f"key={k}" / "part.arrows") as reader:
            got = reader.read_all().to_pandas()
        pd.testing.assert_frame_equal(got, rows.drop(columns="key").reset_index(drop=True))
