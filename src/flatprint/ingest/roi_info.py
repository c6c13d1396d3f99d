"""Each body's roiInfo text (neuPrint's JSON map ROI -> {pre, post, downstream, upstream, synweight})
from its per-ROI counts, with Arrow compute: one vectorised concatenation per column and a join of
each body's run of pieces, instead of SQL's per-body list() and list_sort of strings (the ingest's
largest single cost at scale 0.1: 11 % of its CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROI_INFO_SCHEMA = pa.schema([("bodyId", pa.int64()), ("roiInfo", pa.string())])
COUNT_COLUMNS = ("pre", "post", "downstream", "upstream", "synweight")
PARQUET_ROW_GROUP_ROWS = 122_880  # DuckDB's own row group size: a body range reads few of them
# The texts' files: segments reads the row groups overlapping each batch of its bodies, so every
# group at a batch's edge is decoded twice; groups of 16 K rows make that ~1/8 of a batch, not
# all of it. The texts are distinct (a dictionary is tried, then dropped) and LZ4 decodes faster
# than Snappy (scale 0.1: write 1.35 -> 1.0 s, read 1.1 -> 0.6 s CPU, files 17 % smaller).
ROI_INFO_ROW_GROUP_ROWS = 16_384
ROI_INFO_PARQUET = {"use_dictionary": False, "compression": "lz4"}
_RANK_BITS, _COUNT_BITS = 11, 10  # a row's key: rank, five counts and two flags in 63 bits


def write_roi_info(rows: pa.RecordBatchReader, keys: list[str], path: Path) -> None:
    """Write (bodyId, roiInfo) in body order to the Parquet file ``path``.

    ``rows``: (bodyId, key_rank, pre, post, downstream, upstream, synweight) sorted by bodyId, then
    key_rank; ``keys[key_rank]`` is the ROI's piece prefix (``"name":{"pre":``), and the ranks order
    the keys as strings. A JSON key's closing quote cannot occur inside another key, so ordering the
    pieces by their text is ordering them by their keys: the text is the same as sorting the pieces."""
    prefixes = pa.array(keys, pa.string())
    with pq.ParquetWriter(str(path), ROI_INFO_SCHEMA, **ROI_INFO_PARQUET) as writer:
        carry: pa.Table | None = None
        for batch in rows:
            table = pa.Table.from_batches([batch])
            if carry is not None:
                table = pa.concat_tables([carry, table])
            body = table.column("bodyId").to_numpy()
            if not len(body):
                continue
            # The last body may go on in the next batch: keep its rows for then.
            last_start = int(np.searchsorted(body, body[-1], side="left"))
            carry = table.slice(last_start)
            if last_start:
                writer.write_table(_texts(table.slice(0, last_start), prefixes), ROI_INFO_ROW_GROUP_ROWS)
        if carry is not None and carry.num_rows:
            writer.write_table(_texts(carry, prefixes), ROI_INFO_ROW_GROUP_ROWS)


def _texts(table: pa.Table, prefixes: pa.Array) -> pa.Table:
    """One row per body of ``table`` (whole bodies, sorted as write_roi_info's rows).

    Each row's piece carries the text around it: ``{`` or ``,`` before, ``}`` after a body's last,
    so the pieces in row order are the bodies' texts end to end and a body's text is a slice of
    their bytes (no join per body). Most (ROI, counts, place) recur across bodies: each distinct one
    is formatted once and the rows take their piece (a third of the CPU of formatting every row)."""
    column = {name: table.column(name).combine_chunks() for name in table.column_names}
    body = column["bodyId"].to_numpy()
    n = len(body)
    first = np.r_[True, body[1:] != body[:-1]]
    last = np.r_[first[1:], True]
    rank = column["key_rank"].to_numpy().astype(np.int64)
    counts = [column[c].to_numpy().astype(np.int64, copy=False) for c in COUNT_COLUMNS]
    # Rows whose fields fit one 63-bit key are grouped by it; the rest are formatted one by one.
    small = rank < (1 << _RANK_BITS)
    for values in counts:
        small &= (values >= 0) & (values < (1 << _COUNT_BITS))
    key = rank[small]
    for values in counts:
        key = (key << _COUNT_BITS) | values[small]
    key = (key << 2) | (first[small].astype(np.int64) << 1) | last[small]
    codes, distinct = pd.factorize(key, sort=False)
    index = np.empty(n, np.int64)
    index[small] = codes
    large = np.flatnonzero(~small)
    index[large] = len(distinct) + np.arange(len(large))
    fields = []
    for shift in range(2 + _COUNT_BITS * len(counts), 0, -_COUNT_BITS):
        fields.append((distinct >> shift) & ((1 << (_RANK_BITS if not fields else _COUNT_BITS)) - 1))
    fields = [np.r_[f, v[large]] for f, v in zip(fields, [rank, *counts])]
    piece_first = np.r_[(distinct >> 1) & 1, first[large]].astype(bool)
    piece_last = np.r_[distinct & 1, last[large]].astype(bool)
    pieces = pc.take(_pieces(prefixes, fields, piece_first, piece_last), pa.array(index))
    offsets = np.frombuffer(pieces.buffers()[1], np.int32, n + 1, pieces.offset * 4)
    starts = np.flatnonzero(first)
    text = pa.Array.from_buffers(
        pa.string(), len(starts), [None, pa.py_buffer(offsets[np.r_[starts, n]].copy()), pieces.buffers()[2]]
    )
    return pa.table({"bodyId": pa.array(body[starts], pa.int64()), "roiInfo": text}, schema=ROI_INFO_SCHEMA)


def _pieces(prefixes: pa.Array, fields: list[np.ndarray], first: np.ndarray, last: np.ndarray) -> pa.Array:
    """The pieces ``{"roi":{"pre":..,...}`` of key ranks and counts (``fields``), with ``{`` (a
    body's first) or ``,`` before and ``}`` after a body's last."""
    rank, *counts = fields
    text = [pc.cast(pa.array(values), pa.string()) for values in counts]
    return pc.binary_join_element_wise(
        pc.if_else(pa.array(first), "{", ","),
        pc.take(prefixes, pa.array(rank)),
        text[0],
        ',"post":',
        text[1],
        ',"downstream":',
        text[2],
        ',"upstream":',
        text[3],
        ',"synweight":',
        text[4],
        "}",
        pc.if_else(pa.array(last), "}", ""),
        "",  # the separator between the parts
    )
