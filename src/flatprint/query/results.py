"""Result helpers: provenance on every DataFrame, map cells that print as JSON, and conversion to
Arrow or polars."""

from __future__ import annotations

import contextlib
import gc
import json

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.types as pat

try:  # pandas >= 3: a frame assembled from its blocks as they are
    from pandas.api.internals import create_dataframe_from_blocks
except ImportError:  # older pandas: its constructor (inference and consolidation included)
    create_dataframe_from_blocks = None
try:  # the flag pandas itself reads (get_option("future.infer_string") warns from pandas 3 on)
    from pandas._config import using_string_dtype
except ImportError:

    def using_string_dtype() -> bool:
        return bool(pd.get_option("future.infer_string"))


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
    """Cells of JSON text (or dicts, or None / NaN for an empty map) as JsonDicts. A NULL map cell of
    a frame arrives as NaN, which is truthy: a connection with no synapse in any ROI had crashed
    fetch_simple_connections."""
    if isinstance(values, pd.Series):
        values = values.tolist()  # one conversion: iterating an Arrow-backed column costs ~5 us a cell
    return [JsonDict(orjson.loads(v) if isinstance(v, str) else {} if _missing(v) else v) for v in values]


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


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


def frame_from_arrow(table: pa.Table) -> pd.DataFrame:
    """The DataFrame that ``pd.DataFrame(rows, columns=...)`` builds from the same result's Python
    rows (what neuprint-python does with JSON rows), built column-wise from an Arrow table of
    PLAIN_TYPES columns: ints become int64 (float64 with NaN where NULLs are), floats float64,
    booleans bool (object with NULLs), text pandas' ``str``, lists Python lists, all-NULL columns
    object None. Python rows cost ~1 s a million cells; this ~1/50 of that.

    Each column is converted on its own (:func:`pandas_values`) and the frame assembled from them
    as blocks (:func:`frame_of_columns`): ``Table.to_pandas`` and pandas' constructors spend ~0.1 ms a
    column inferring, checking and consolidating what is known here (5 ms for a neuron row's 50).
    A column of another type takes ``to_pandas`` for the whole table."""
    values = []
    for column in table.columns:
        converted = pandas_values(column)
        if converted is None:
            return _frame_via_pandas(table)
        values.append(converted)
    return frame_of_columns(table.column_names, values, table.num_rows)


def pandas_values(column: pa.ChunkedArray | pa.Array):
    """One Arrow column as frame_from_arrow converts it: a writable 1-D NumPy array (int64, float64,
    bool or object) or pandas' ``str`` array (what ``to_pandas`` makes of text); None for a type
    outside PLAIN_TYPES and their lists."""
    if isinstance(column, pa.Array):
        column = pa.chunked_array([column], type=column.type)
    kind = column.type
    if column.null_count == len(column):
        return np.full(len(column), None, dtype=object)
    if pat.is_list(kind) or pat.is_large_list(kind):
        with paused_gc(len(column) > GC_PAUSE_LISTS):  # 86 k somaLocations at 1.0: 55 -> 9 ms
            return object_array(column.to_pylist())
    if pat.is_string(kind) or pat.is_large_string(kind):
        return text_values(column)
    if pat.is_boolean(kind):
        return object_array(column.to_pylist()) if column.null_count else _writable(column.to_numpy())
    if pat.is_floating(kind) or (pat.is_integer(kind) and column.null_count):
        if kind != pa.float64():
            column = column.cast(pa.float64())  # NULLs -> NaN, as pandas infers for [1, None]
        return _writable(column.to_numpy())
    if pat.is_integer(kind):
        if kind != pa.int64():
            column = column.cast(pa.int64())
        return _writable(column.to_numpy())
    return None


GC_PAUSE_LISTS = 10_000  # from this many cells, a list column is made with the GC paused


@contextlib.contextmanager
def paused_gc(pause: bool):
    """Pause Python's cyclic garbage collector for the block: millions of new dicts and lists (none in
    a cycle) would otherwise trigger collections that walk every tracked object, over and over (at
    scale 1.0 by ROI: 7.8 M maps)."""
    if not (pause and gc.isenabled()):
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def text_values(column: pa.ChunkedArray | pa.Array):
    """Text as the column ``to_pandas`` makes of it: pandas' ``str`` (Arrow-backed) array, or an
    object array where pandas does not infer ``str``."""
    dtype = _text_dtype()
    if isinstance(dtype, pd.StringDtype):
        return dtype.__from_arrow__(column)
    return object_array(column.to_pylist())


def _text_dtype():
    """The dtype ``to_pandas`` gives text under pandas' current options (looked up once per setting)."""
    key = using_string_dtype()
    dtype = _TEXT_DTYPES.get(key)
    if dtype is None:
        dtype = _TEXT_DTYPES[key] = pa.table({"t": pa.array(["x"])}).to_pandas()["t"].dtype
    return dtype


_TEXT_DTYPES: dict = {}


def object_array(values: list) -> np.ndarray:
    """``values`` (lists and dicts too) as a 1-D object array."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _writable(values: np.ndarray) -> np.ndarray:
    # (Arrow's zero-copy arrays are read-only: a frame over one fails on assignment)
    return values if values.flags.writeable else values.copy()


def frame_of_columns(names: list[str], values: list, rows: int) -> pd.DataFrame:
    """A DataFrame (RangeIndex, ``str`` column labels) of ``values``: 1-D NumPy arrays or pandas
    extension arrays, each ``rows`` long, taken as they are (no inference). NumPy columns of one
    dtype share a block (as pandas consolidates them; a block each costs ~15 us to make)."""
    blocks, by_dtype = [], {}
    for index, array in enumerate(values):
        if len(array) != rows:
            raise ValueError(f"frame_of_columns: column {names[index]!r} has {len(array)} rows, not {rows}")
        if isinstance(array, np.ndarray):
            by_dtype.setdefault(array.dtype, []).append(index)
        else:
            blocks.append((array, np.array([index], dtype=np.intp)))
    for indexes in by_dtype.values():
        stacked = values[indexes[0]].reshape(1, rows) if len(indexes) == 1 else np.stack([values[i] for i in indexes])
        blocks.append((stacked, np.array(indexes, dtype=np.intp)))
    if create_dataframe_from_blocks is None:
        df = pd.DataFrame(dict(enumerate(values)), index=pd.RangeIndex(rows), copy=False)
        df.columns = column_labels(names)
        return df
    return create_dataframe_from_blocks(blocks, pd.RangeIndex(rows), column_labels(names))


def frame_of_block(names: list[str], block: np.ndarray, at: list[int], others: dict, rows: int) -> pd.DataFrame:
    """frame_of_columns for columns already stacked: the rows of the 2-D NumPy ``block`` are the
    columns at positions ``at`` (kept as one pandas block, not copied), ``others`` maps each other
    position to its column (1-D NumPy array or pandas extension array)."""
    if block.shape[1] != rows or any(len(a) != rows for a in others.values()):
        raise ValueError(f"frame_of_block: a column does not have {rows} rows")
    if create_dataframe_from_blocks is None:
        values = [None] * len(names)
        for index, position in enumerate(at):
            values[position] = block[index]
        for position, array in others.items():
            values[position] = array
        return frame_of_columns(names, values, rows)
    blocks = [(block, np.array(at, dtype=np.intp))]
    for position, array in others.items():
        array = array.reshape(1, rows) if isinstance(array, np.ndarray) else array
        blocks.append((array, np.array([position], dtype=np.intp)))
    return create_dataframe_from_blocks(blocks, pd.RangeIndex(rows), column_labels(names))


def frame_from_columns(columns: dict) -> pd.DataFrame:
    """frame_from_arrow(pa.table(columns)) without the round trip through Arrow for NumPy columns
    of numbers or booleans (ints become int64, floats float64, each copied; an empty column object,
    as Arrow's all-NULL rule makes it); other columns (Arrow arrays, NumPy objects, uint64, which
    Arrow checks when it casts) go through Arrow."""
    values, rows = [], None
    for name, column in columns.items():
        kind = column.dtype.kind if isinstance(column, np.ndarray) else None
        if kind in ("i", "u", "b", "f") and column.dtype != np.uint64:
            if not len(column):
                converted = np.full(0, None, dtype=object)
            else:
                converted = np.array(column, dtype={"f": np.float64, "b": bool}.get(kind, np.int64))
        else:
            converted = pandas_values(column if isinstance(column, (pa.Array, pa.ChunkedArray)) else pa.array(column))
            if converted is None:
                return frame_from_arrow(pa.table(columns))
        if rows is not None and len(converted) != rows:
            raise ValueError(f"frame_from_columns: column {name!r} has {len(converted)} rows, not {rows}")
        rows = len(converted)
        values.append(converted)
    return frame_of_columns(list(columns), values, rows or 0)


def column_labels(names) -> pd.Index:
    """The column Index ``to_pandas`` builds for ``names`` (a shallow copy of one kept per name list
    and pandas option: building one costs ~0.1 ms)."""
    key = (using_string_dtype(), tuple(names))
    labels = _LABELS.get(key)
    if labels is None:
        if len(_LABELS) >= KEEP_LABELS:
            _LABELS.clear()
        labels = _LABELS[key] = pd.Index(list(names)) if names else pa.table({}).to_pandas().columns
    return labels.view()  # (a frame's own object: setting its name must not rename another's)


KEEP_LABELS = 256
_LABELS: dict = {}


# Arrow converts columns on its thread pool only from this many rows: handing a small table's columns to
# the pool and waiting for them cost more than converting them (medians of 1-3 ms instead of 0.3 ms
# for a few hundred rows on a busy machine).
THREADED_ROWS = 100_000


def _frame_via_pandas(table: pa.Table) -> pd.DataFrame:
    """frame_from_arrow through ``Table.to_pandas`` (columns cast first, lists set afterwards)."""
    columns, lists = [], {}
    for index in range(table.num_columns):
        col = table.column(index)
        kind = col.type
        if col.null_count == len(col):
            col = pa.nulls(len(col))  # object None
        elif pat.is_list(kind) or pat.is_large_list(kind):
            lists[index] = col
            col = pa.nulls(len(col))
        elif pat.is_floating(kind) or (pat.is_integer(kind) and col.null_count):
            if kind != pa.float64():
                col = col.cast(pa.float64())
        elif pat.is_integer(kind) and kind != pa.int64():
            col = col.cast(pa.int64())
        columns.append(col)
    names = list(table.column_names)
    keys = [str(i) for i in range(len(columns))]
    df = pa.table(columns, names=keys).to_pandas(split_blocks=True, use_threads=table.num_rows >= THREADED_ROWS)
    for index, col in lists.items():
        df[keys[index]] = object_array(col.to_pylist())
    df.columns = column_labels(names)
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
