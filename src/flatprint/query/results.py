"""Result helpers: provenance on every DataFrame, map cells that print as JSON, and conversion to
Arrow or polars."""

from __future__ import annotations

import json

import orjson
import pandas as pd
import pyarrow as pa


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
    return [JsonDict(orjson.loads(v) if isinstance(v, str) else (v or {})) for v in values]


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
