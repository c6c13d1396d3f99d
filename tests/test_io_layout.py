"""flatprint.io holds every file format, one module each: no io module grows past 800 lines, and no
module outside io/ encodes Arrow IPC or feather itself (they call flatprint.io.arrow_ipc / .feather)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from flatprint.io import arrow_ipc
from flatprint.io.arrow_ipc import (
    encode_arrow_stream,
    ipc_dataset,
    open_stream_file,
    partition_files,
    partition_ipc_files,
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


def test_partition_ipc_files_split_rows_and_read_back_as_a_dataset(tmp_path):
    """As the stream files, but IPC files a dataset reads, every time it is scanned (pandas groups
    the same rows; the dataset of every file holds each row once)."""
    rng = np.random.default_rng(2)
    table = pa.table({"key": rng.integers(0, 4, 2000).astype(np.int32), "v": np.arange(2000)})
    out = partition_ipc_files(table.to_batches(300), table.schema, tmp_path / "p", "key")
    want = table.to_pandas()
    schema = pa.schema([table.schema.field("v")])
    for k, rows in want.groupby("key"):
        assert partition_files(out, "key", k) == [out / f"key={k}" / "part.arrow"]
        got = ipc_dataset(partition_files(out, "key", k), schema).to_table().to_pandas()
        pd.testing.assert_frame_equal(got, rows.drop(columns="key").reset_index(drop=True))
    assert partition_files(out, "key", 99) == []
    assert partition_files(out, "key") == sorted(out.glob("*/part.arrow"))
    everything = ipc_dataset(partition_files(out, "key"), schema)
    for _ in range(2):
        assert sorted(everything.to_table().column("v").to_pylist()) == list(range(2000))
    assert ipc_dataset([], schema).to_table().num_rows == 0


@pytest.mark.parametrize("keys", [[-2, 3, -2, 0], [40000, 7, 40000, 70000]])
def test_partition_keys_outside_int16_keep_their_rows(tmp_path, keys):
    """Negative keys and keys past int16 (not radix-sorted) land in their own files, in order."""
    table = pa.table({"key": pa.array(keys * 50, pa.int64()), "v": np.arange(200)})
    out = partition_stream_files(table.to_batches(30), table.schema, tmp_path / "p", "key")
    for k in set(keys):
        with open_stream_file(out / f"key={k}" / "part.arrows") as reader:
            got = reader.read_all().column("v").to_pylist()
        assert got == [i for i in range(200) if keys[i % 4] == k]


def test_partition_gathers_rows_into_batches_in_their_order(tmp_path, monkeypatch):
    """With a small gathering size, each key's rows are written in batches of at least that many
    (but the last), still in their order (pandas groups the same rows)."""
    monkeypatch.setattr(arrow_ipc, "PARTITION_BATCH_ROWS", 50)
    rng = np.random.default_rng(3)
    table = pa.table({"key": rng.integers(0, 3, 1000).astype(np.int32), "v": np.arange(1000)})
    out = partition_ipc_files(table.to_batches(64), table.schema, tmp_path / "p", "key")
    for k, rows in table.to_pandas().groupby("key"):
        reader = pa.ipc.open_file(str(out / f"key={k}" / "part.arrow"))
        sizes = [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)]
        assert all(n >= 50 for n in sizes[:-1]) and sum(sizes) == len(rows)
        assert reader.read_all().column("v").to_pylist() == rows.v.tolist()
