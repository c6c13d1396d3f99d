"""Result tables of the explorer: sorting, paging, CSV/Arrow downloads and a small result cache.

Every table on every page is a :class:`Table`: the DataFrame a library call returned (unchanged, so a
download equals what the "Python" snippet gives), the snippet itself, and which columns to show.
Sorting and paging happen on the server from query parameters named after the table
(``<key>.sort``, ``<key>.desc``, ``<key>.page``, ``<key>.size``), so they work on the whole result,
not just the rows a browser holds, and links to a sorted page can be shared.
"""

from __future__ import annotations

import io
import json
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from flatprint.io.arrow_ipc import encode_arrow_stream
from flatprint.query import to_arrow

PAGE_SIZES = (25, 50, 100, 500)
DEFAULT_PAGE_SIZE = 50
BODY_COLUMNS = ("bodyId", "bodyId_pre", "bodyId_post", "partner")


@dataclass
class Table:
    key: str
    title: str
    df: pd.DataFrame
    python: str = ""
    columns: list[str] | None = None  # shown columns; downloads always hold every column
    note: str = ""
    name: str = "table"  # file name stem of downloads

    @property
    def shown(self) -> list[str]:
        if self.columns is None:
            return list(self.df.columns)
        return [c for c in self.columns if c in self.df.columns]

    @property
    def hidden(self) -> list[str]:
        shown = set(self.shown)
        return [c for c in self.df.columns if c not in shown]


# ------------------------------------------------------------------------------------------ values
def plain(value: Any) -> Any:
    """A JSON-friendly Python value (numpy scalars and arrays unwrapped, NaN as None)."""
    if value is None:
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray)):
        return value.decode(errors="replace")
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def nested(value: Any) -> bool:
    return isinstance(value, (dict, list, tuple, np.ndarray))


def cell_text(value: Any) -> str:
    """How a value reads in a table cell (and in a CSV): nested values as compact JSON."""
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if isinstance(value, float):
        return f"{value:.6g}" if not value.is_integer() or abs(value) >= 1e15 else str(int(value))
    return str(value)


ROI_INFO_COLUMNS = ("roiInfo", "conn_roiInfo")
ROI_COUNT_ORDER = ("pre", "post", "upstream", "downstream", "synweight")


def roi_info_table(value: Any) -> tuple[list[str], list[list]] | None:
    """A roiInfo map ({roi: {"pre": n, "post": n, ...}}) as a small table: the counts present (pre and
    post first) and one row per ROI, most synapses first. None when the value is not such a map."""
    value = plain(value)
    if not isinstance(value, dict) or not value or not all(isinstance(v, dict) for v in value.values()):
        return None
    keys = {k for counts in value.values() for k in counts}
    columns = [k for k in ROI_COUNT_ORDER if k in keys] + sorted(keys - set(ROI_COUNT_ORDER))
    rows = [[roi, *[counts.get(k) for k in columns]] for roi, counts in value.items()]
    rows.sort(key=lambda r: (-sum(v for v in r[1:3] if isinstance(v, (int, float))), str(r[0])))
    return columns, rows


def jsonable_frame(df: pd.DataFrame, maps_only: bool = False) -> pd.DataFrame:
    """A copy whose nested cells (dicts and lists, or only dicts) are JSON text, for CSV and Arrow."""
    out = df.copy()
    test = (lambda v: isinstance(v, dict)) if maps_only else nested
    for col in out.columns:
        if out[col].dtype == object and any(test(v) for v in out[col]):
            out[col] = [
                None if plain(v) is None else json.dumps(plain(v), separators=(",", ":"), sort_keys=True)
                for v in out[col]
            ]
    return out


# ------------------------------------------------------------------------------------------ sort/page
def sort_frame(df: pd.DataFrame, column: str | None, descending: bool) -> pd.DataFrame:
    if not column or column not in df.columns or len(df) == 0:
        return df
    series = df[column]
    if series.dtype == object:
        if any(nested(v) for v in series):
            key = series.map(cell_text)
        else:
            nums = pd.to_numeric(series, errors="coerce")
            key = (
                nums
                if nums.notna().sum() == series.notna().sum()
                else series.map(
                    lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).lower()
                )
            )
    else:
        key = series
    order = key.reset_index(drop=True).sort_values(ascending=not descending, kind="stable", na_position="last").index
    return df.iloc[order.to_numpy()]


@dataclass
class View:
    """What one table shows now: its sorted page of rows and the links to move around."""

    table: Table
    rows: list[list[Any]]
    sort: str | None
    desc: bool
    page: int
    pages: int
    size: int
    total: int
    first: int
    extra: dict = field(default_factory=dict)


def view_of(table: Table, params) -> View:
    key = table.key
    sort = params.get(f"{key}.sort") or None
    desc = params.get(f"{key}.desc", "0") in ("1", "true", "yes")
    try:
        size = int(params.get(f"{key}.size", DEFAULT_PAGE_SIZE))
    except ValueError:
        size = DEFAULT_PAGE_SIZE
    size = size if size in PAGE_SIZES else DEFAULT_PAGE_SIZE
    chosen = [c for c in params.getlist(f"{key}.cols") if c in table.df.columns] if hasattr(params, "getlist") else []
    if chosen:
        table = Table(table.key, table.title, table.df, table.python, chosen, table.note, table.name)
    df = sort_frame(table.df, sort, desc)
    total = len(df)
    pages = max(1, math.ceil(total / size))
    try:
        page = int(params.get(f"{key}.page", 1))
    except ValueError:
        page = 1
    page = min(max(page, 1), pages)
    start = (page - 1) * size
    shown = table.shown
    part = df.iloc[start : start + size]
    rows = [[plain(v) for v in row] for row in part[shown].itertuples(index=False, name=None)] if shown else []
    return View(table, rows, sort if sort in df.columns else None, desc, page, pages, size, total, start)


# ------------------------------------------------------------------------------------------ downloads
def to_csv(table: Table) -> bytes:
    buf = io.StringIO()
    jsonable_frame(table.df).to_csv(buf, index=False)
    return buf.getvalue().encode()


def to_arrow_stream(table: Table, provenance: dict | None = None) -> bytes:
    """An Arrow IPC stream (what pyarrow.ipc.open_stream / pandas read); provenance in the metadata."""

    df = table.df
    try:  # maps (roiInfo) as JSON text, as in the CSV; lists stay Arrow lists
        maps = jsonable_frame(df, maps_only=True)
        maps.attrs = dict(df.attrs)
        arrow = to_arrow(maps)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        safe = jsonable_frame(df)
        safe.attrs = dict(df.attrs)
        try:
            arrow = to_arrow(safe)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
            safe = safe.astype({c: str for c in safe.columns if safe[c].dtype == object})
            safe.attrs = dict(df.attrs)
            arrow = to_arrow(safe)
    if provenance:
        meta = dict(arrow.schema.metadata or {})
        meta[b"flatprint.python"] = table.python.encode()
        arrow = arrow.replace_schema_metadata(meta)
    return encode_arrow_stream(arrow)


# ------------------------------------------------------------------------------------------ cache
class ResultCache:
    """A small LRU of computed page results (the stores are read-only, so nothing goes stale)."""

    def __init__(self, size: int = 64):
        self.size = size
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        return None

    def put(self, key, value):
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)
        return value

    def clear(self):
        with self._lock:
            self._data.clear()


cache = ResultCache()
