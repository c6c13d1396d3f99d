"""Writing release tables as the real release's writer does: Feather V2 (Arrow IPC), lz4, 64K-row batches."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather

WRITE_ROWS = 65536  # rows per record batch in the big feathers (pyarrow's write_feather default)


def pandas_index_metadata(schema: pa.Schema, index_name: str) -> dict:
    """Pandas metadata marking ``index_name`` as the frame's index, as pyarrow writes it for a pandas frame."""
    columns = []
    for f in schema:
        if pa.types.is_dictionary(f.type):
            pandas_type, numpy_type = "categorical", str(f.type.index_type.to_pandas_dtype().__name__)
            meta = {"num_categories": None, "ordered": f.type.ordered}
        else:
            pandas_type = {"int32": "int32", "int64": "int64", "uint64": "uint64", "float": "float32",
                           "uint8": "uint8", "uint16": "uint16"}.get(str(f.type), str(f.type))
            numpy_type, meta = pandas_type, None
        columns.append({"name": f.name, "field_name": f.name, "pandas_type": pandas_type,
                        "numpy_type": numpy_type, "metadata": meta})
    doc = {"index_columns": [index_name], "column_indexes": [], "columns": columns,
           "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.3"}
    return {b"pandas": json.dumps(doc).encode()}


class FeatherWriter:
    """A Feather V2 file (Arrow IPC file format, lz4) written piece by piece, never whole in memory.

    Rows go out in record batches of exactly WRITE_ROWS rows across pieces (the last batch shorter), so a
    file written as one piece has the same bytes as ``feather.write_feather(table, compression="lz4",
    chunksize=WRITE_ROWS)``. A piece's tail waits as a zero-copy slice for the next piece or close();
    release() copies it, so the rest of the piece can be freed."""

    def __init__(self, path: Path, schema: pa.Schema, rechunk: bool = True):
        self.path = Path(path)
        self.schema = schema
        self.rows = 0
        self._rechunk = rechunk
        self._carry: pa.Table | None = None
        self._sink = pa.OSFile(str(self.path), "wb")
        options = pa.ipc.IpcWriteOptions(compression="lz4", allow_64bit=True, unify_dictionaries=True)
        self._writer = pa.ipc.new_file(self._sink, schema, options=options)

    def write(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        if not self._rechunk:
            self._writer.write_table(table, max_chunksize=WRITE_ROWS)
            return
        if self._carry is not None:
            need = WRITE_ROWS - self._carry.num_rows
            head = pa.concat_tables([self._carry, table.slice(0, need)]).combine_chunks()
            self._carry = None
            table = table.slice(min(need, table.num_rows))
            if head.num_rows < WRITE_ROWS:
                self._carry = head
                return
            self._writer.write_table(head)
        full = table.num_rows // WRITE_ROWS * WRITE_ROWS
        if full:
            self._writer.write_table(table.slice(0, full), max_chunksize=WRITE_ROWS)
        if table.num_rows > full:
            self._carry = table.slice(full)

    def release(self) -> None:
        """Copy the waiting tail so that it no longer holds on to the piece it came from."""
        if self._carry is not None:
            self._carry = self._carry.take(np.arange(self._carry.num_rows))

    def append_file(self, path: Path) -> None:
        """Append the rows of another Arrow IPC file (same schema), batch by batch."""
        with pa.OSFile(str(path), "rb") as src:  # not a memory map: its pages would count as RSS
            reader = pa.ipc.open_file(src)
            for i in range(reader.num_record_batches):
                self.write(pa.Table.from_batches([reader.get_batch(i)]))
            self.release()

    def close(self) -> dict:
        if self._carry is not None:
            self._writer.write_table(self._carry)
            self._carry = None
        self._writer.close()
        self._sink.close()
        return {"file": self.path.name, "rows": self.rows}


def write_table(path: Path, table: pa.Table) -> dict:
    """A whole table at once, with the same layout as FeatherWriter; returns {file, rows}."""
    # Feather V2 with lz4 and 64K-row record batches, like pyarrow's write_feather defaults.
    feather.write_feather(table, str(path), compression="lz4", chunksize=65536)
    return {"file": path.name, "rows": table.num_rows}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
