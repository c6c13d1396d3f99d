"""Result helpers: provenance on every DataFrame, map cells that print as JSON, and conversion to
Arrow or polars."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.types as pat


class JsonDict(dict):
    """A plain ``dict`` (``isinstance(x, dict)``, equal to dicts, as neuprint-python's roiInfo cells are)
    whose text is JSON, so ``df.to_csv()`` writes ``{"GNG": {"pre": 3}}`` that any tool can parse,
    not Python's ``{'GNG': {'pre': 3}}``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return json.dumps(self, ensure_ascii=False)

    __str__ = __repr__

    def __reduce__(self):  # pickles (and deep-copies) as a JsonDict of the same items
        return (JsonDict, (dict(self),))


def json_dicts(values) -> list[JsonDict]:
    """Cells of JSON text (or dicts, or None for an empty map) as JsonDicts."""
    if isinstance(values, pd.Series):
        values = values.tolist()  # one conversion: iterating an Arrow-backed column costs ~5 us a cell
    return [JsonDict(orjson.loads(v) if isinstance(v, str) else (v or {})) for v in values]


# DuckDB result types whose values frame_from_arrow converts column-wise, exactly as pandas infers them
# from Python rows (UBIGINT and HUGEINT may not fit int64; structs, maps and dates keep the rows path).
PLAIN_TYPES = frozenset(
    {
        "BIGINT",
        "INTEGER",
        "SMALLINT",
        "TINYINT",
        "UINTEGER",
        "USMALLINT",
        "UTINYINT",
        "DOUBLE",
        "FLOAT",
        "BOOLEAN",
        "VARCHAR",
        '"NULL"',
    }
)


def arrow_convertible(duckdb_type) -> bool:
    """A DuckDB result column that frame_from_arrow converts: PLAIN_TYPES and lists of them."""
    name = str(duckdb_type)
    return name in PLAIN_TYPES or name.endswith("[]") and name[:-2] in PLAIN_TYPES


# Arrow converts columns on its thread pool only from this many rows: handing a small table's columns to
# the pool and waiting for them cost more than converting them (medians of 1-3 ms instead of 0.3 ms
# for a few hundred rows on a busy machine).
THREADED_ROWS = 100_000


def frame_from_arrow(table: pa.Table) -> pd.DataFrame:
    """The DataFrame that ``pd.DataFrame(rows, columns=...)`` builds from the same result's Python
    rows (what neuprint-python does with JSON rows), built column-wise from an Arrow table of
    PLAIN_TYPES columns: ints become int64 (float64 with NaN where NULLs are), floats float64,
    booleans bool (object with NULLs), text pandas' ``str``, lists Python lists, all-NULL columns
    object None. Python rows cost ~1 s a million cells; this ~1/50 of that.

    The columns are cast in Arrow and converted by one ``Table.to_pandas`` (a frame per column cost
    ~0.1 ms each: 5 ms for the 50 columns of a neuron row); lists are set afterwards."""
    columns, lists = [], {}
    for index in range(table.num_columns):
        col = table.column(index)
        kind = col.type
        if col.null_count == len(col):
            col = pa.nulls(len(col))  # object None
        elif pat.is_list(kind) or pat.is_large_list(kind):
            lists[index] = col
            col = pa.nulls(len(col))
        elif pat.is_string(kind) or pat.is_large_string(kind) or pat.is_boolean(kind):
            pass  # str; bool, or object True/False/None with NULLs
        elif pat.is_floating(kind) or col.null_count:
            if kind != pa.float64():
                col = col.cast(pa.float64())  # NULLs -> NaN, as pandas infers for [1, None]
        elif kind != pa.int64():
            col = col.cast(pa.int64())
        columns.append(col)
    names = list(table.column_names)
    unique = len(set(names)) == len(names)  # else positional names, set afterwards
    keys = names if unique else [str(i) for i in range(len(columns))]
    threads = table.num_rows >= THREADED_ROWS
    df = pa.table(columns, names=keys).to_pandas(split_blocks=bool(lists), use_threads=threads)
    for index, col in lists.items():
        values = np.empty(len(col), dtype=object)
        values[:] = col.to_pylist()
        df[keys[index]] = values
    if not unique:
        df.columns = names
    return df


def with_provenance(df: pd.DataFrame | None, client, query: str):
    """Attach where a result came from (dataset, version, store checksum, the query) to ``df.attrs``."""
    if df is not None:
        df.attrs.update(client.provenance(query))
    return df


def to_arrow(df: pd.DataFrame):
    """The DataFrame as a pyarrow Table; provenance goes into the schema metadata."""

    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"flatprint"] = json.dumps({k: str(v) for k, v in df.attrs.items()}).encode()
    return table.replace_schema_metadata(meta)


def to_polars(df: pd.DataFrame):
    """The DataFrame as a polars DataFrame (via Arrow)."""
    import polars as pl  # noqa: PLC0415 - optional dependency (the test extra)

    return pl.from_arrow(to_arrow(df))
