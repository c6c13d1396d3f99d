"""Arrow IPC streams: the one encoder for every Arrow answer flatprint serves (the server's
``/api/custom/arrow`` and ``/api/flatprint/indirect``, the explorer's table downloads).

A stream rather than the random-access file format: a client reads it in one pass as it arrives
(``pyarrow.ipc.open_stream``). Release tables on disk are Feather V2 files (:mod:`flatprint.io.feather`).
Also the stream files an ingest step writes and reads back (:func:`stream_file_writer`,
:func:`read_stream_file`): the stream format keeps each batch's dictionaries as they are, where the
file format allows one per column.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

__all__ = ["ARROW_STREAM_MEDIA_TYPE", "encode_arrow_stream", "read_stream_file", "stream_file_writer"]

ARROW_STREAM_MEDIA_TYPE = "application/vnd.apache.arrow.stream"


def encode_arrow_stream(table: pa.Table) -> bytes:
    """The table (schema metadata included) as the bytes of one Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def stream_file_writer(path: Path, schema: pa.Schema) -> pa.ipc.RecordBatchStreamWriter:
    """A writer of an Arrow IPC stream file at ``path`` (close it, or use it as a context manager)."""
    return pa.ipc.new_stream(str(path), schema)


def read_stream_file(path: Path) -> pa.Table:
    """The whole Arrow IPC stream file at ``path`` as a table."""
    with pa.ipc.open_stream(str(path)) as reader:
        return reader.read_all()
