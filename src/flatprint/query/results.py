"""Result helpers: provenance on every DataFrame, and conversion to Arrow or polars."""

from __future__ import annotations

import pandas as pd


def with_provenance(df: pd.DataFrame | None, client, query: str):
    """Attach where a result came from (dataset, version, store checksum, the query) to ``df.attrs``."""
    if df is not None:
        df.attrs.update(client.provenance(query))
    return df


def to_arrow(df: pd.DataFrame):
    """The DataFrame as a pyarrow Table; provenance goes into the schema metadata."""
    import json

    import pyarrow as pa

    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"flatprint"] = json.dumps({k: str(v) for k, v in df.attrs.items()}).encode()
    return table.replace_schema_metadata(meta)


def to_polars(df: pd.DataFrame):
    """The DataFrame as a polars DataFrame (via Arrow)."""
    import polars as pl

    return pl.from_arrow(to_arrow(df))
