"""Arrow IPC streams: the one encoder for every Arrow answer flatprint serves (the server's
``/api/custom/arrow`` and ``/api/flatprint/indirect``, the explorer's table downloads).

A stream rather than the random-access file format: a client reads it in one pass as it arrives
(``pyarrow.ipc.open_stream``). Release tables on disk are Feather V2 files (:mod:`flatprint.io.feather`).
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["ARROW_STREAM_MEDIA_TYPE", "encode_arrow_stream"]

ARROW_STREAM_MEDIA_TYPE = "application/vnd.apache.arrow.stream"


def encode_arrow_stream(table: pa.Table) -> bytes:
    """The table (schema metadata included) as the bytes of one Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
