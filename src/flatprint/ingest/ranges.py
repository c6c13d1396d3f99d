"""Body ranges: the large tables are partitioned, sorted and joined one range of body ids at a time,
so each step fits in memory (a single sort of every point spilled ~160 bytes a point to disk)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flatprint.io.duckdb_session import memory_limit_bytes
from flatprint.io.feather import iter_batches
from flatprint.store.sql import sql_literal


def range_count(con, n_rows: int, bytes_per_row: int = 60) -> int:
    """How many passes keep one pass's hash table or sort (``bytes_per_row`` each) within a quarter of
    the memory limit."""
    budget = max(memory_limit_bytes(con) / 4, 64 * 1024**2)
    return max(1, int(-(-n_rows * bytes_per_row // budget)))


# A synapse's location packed into one key (neuPrint keys synapses by location; 21 bits an axis).
POINT_ID_SQL = "((CAST({z} AS UBIGINT) << 42) | (CAST({y} AS UBIGINT) << 21) | CAST({x} AS UBIGINT))"
_BOUNDS_SAMPLE_STRIDE = 16


def point_ids(x: pa.Array, y: pa.Array, z: pa.Array) -> pa.Array:
    """POINT_ID_SQL in Arrow (null where a coordinate is; a negative one raises, as DuckDB's cast)."""
    x, y, z = (pc.cast(a, pa.uint64()) for a in (x, y, z))
    return pc.bit_wise_or(pc.bit_wise_or(pc.shift_left(z, 42), pc.shift_left(y, 21)), x)


def bucket_bounds(path: Path, column: str, buckets: int) -> list[int]:
    """Values of ``column`` that split the file's rows into about ``buckets`` ranges of equal size,
    from every 16th row (an uneven split costs only memory, never correctness)."""
    if buckets <= 1:
        return []
    sample = np.concatenate(
        [
            batch.column(0).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)[::_BOUNDS_SAMPLE_STRIDE]
            for batch in iter_batches(path, [column])
        ]
        or [np.zeros(0, np.int64)]
    )
    if not len(sample):
        return []
    cuts = np.quantile(sample, np.arange(1, buckets) / buckets, method="lower")
    return sorted({int(c) for c in cuts})


def bucketed(reader, columns: dict[str, str], bounds: list[int]):
    """``reader`` with an int32 column per ``{name: body column}``: the index of the body's range in
    ``bounds`` (range k holds bounds[k-1] <= body < bounds[k])."""
    edges = np.asarray(bounds, dtype=np.int64)
    schema = reader.schema
    for name in columns:
        schema = schema.append(pa.field(name, pa.int32()))

    def gen():
        for batch in reader:
            arrays = list(batch.columns)
            for source in columns.values():
                body = batch.column(source).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
                arrays.append(pa.array(np.searchsorted(edges, body, side="right").astype(np.int32)))
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    return pa.RecordBatchReader.from_batches(schema, gen())


def partition(con, out: Path, reader, select: str) -> Path:
    """Write ``select`` over the stream ``reader`` to Parquet files under ``out``, one folder per bucket."""
    con.register("partition_stream", reader)
    try:
        con.execute(
            f"COPY ({select} FROM partition_stream) TO {sql_literal(str(out))} (FORMAT parquet, PARTITION_BY (bucket))"
        )
    finally:
        con.unregister("partition_stream")
    return out


def in_range_sql(column: str, bounds: list[int], k: int) -> str:
    """SQL condition: ``column`` lies in range ``k`` of ``bounds`` (see bucketed)."""
    parts = ([f"{column} >= {bounds[k - 1]}"] if k > 0 else []) + (
        [f"{column} < {bounds[k]}"] if k < len(bounds) else []
    )
    return " AND ".join(parts) or "TRUE"


def range_index_sql(column: str, bounds: list[int]) -> str:
    """SQL for the index of ``column``'s range in ``bounds`` (as bucketed computes it: the number of
    bounds <= the value), branch-free: one comparison per bound."""
    return "(" + " + ".join(f"({column} >= {b})::INTEGER" for b in bounds) + ")" if bounds else "0"
