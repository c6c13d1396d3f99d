"""Export a store as a directory of Parquet files for Spark / DuckDB / Polars / Arrow users.

Layout (docs/export.md)::

    OUT/
      segments.parquet  segment_rois.parquet  connections.parquet  connection_rois.parquet
      rois.parquet  roi_map.parquet  meta.parquet
      synapses/body_bucket=0/…parquet … body_bucket=63/…   (bucket = body % buckets)
      partners/body_bucket=0/…parquet …                      (bucket = body_pre % buckets)
      _schema.json   SCHEMA.md

The two synapse tables are hive-partitioned by a body hash bucket, so a query for a set of bodies
reads only their buckets (``WHERE body_bucket IN (...)`` prunes directories in Spark and DuckDB alike).
Unsigned integer columns are written as signed ones (Spark has no unsigned types); the store's
``connections_by_post`` (a second sort order of ``connections``) is not exported. Everything is
streamed by DuckDB ``COPY ... TO ... (FORMAT parquet)`` into a directory beside OUT, renamed at the end.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

import duckdb

from flatprint.errors import FlatprintError
from flatprint.export._common import column_types, store_session
from flatprint.io.publish import atomic_output
from flatprint.query.heavy import TABLES as HEAVY_TABLES
from flatprint.store.sql import quote_ident, sql_literal

DEFAULT_BUCKETS = 64
SINGLE_TABLES = ("segments", "segment_rois", "connections", "connection_rois", "rois", "roi_map", "meta")
PARTITIONED_TABLES = {"synapses": "body", "partners": "body_pre"}
_SIGNED = {
    "UBIGINT": "BIGINT",
    "UINTEGER": "BIGINT",
    "USMALLINT": "INTEGER",
    "UTINYINT": "SMALLINT",
    "HUGEINT": "BIGINT",
    "JSON": "VARCHAR",
}

#: The order each single table is written in (readers' row-group statistics skip by its first columns).
EXPORT_ORDER = {
    "segments": "bodyId",
    "segment_rois": "roi, bodyId",
    "connections": "body_pre, body_post",
    "connection_rois": "body_pre, body_post, roi",
    "rois": "depth, roi",
    "roi_map": "roi_set, label, roi",
    "meta": "key",
}
#: Per store format, the tables its ingest writes in exactly EXPORT_ORDER (docs/store.md): they are
#: copied as stored (DuckDB keeps insertion order) instead of sorted again. At scale 1.0 the sort of
#: segments (with its roiInfo texts) and connections spilled 12.5 GB beside a 2.3 GB export.
STORED_IN_EXPORT_ORDER = dict.fromkeys(
    (4, 5), frozenset({"segments", "segment_rois", "connections", "connection_rois"})
)

DESCRIPTIONS = {
    "segments": "One row per body (:Segment); is_neuron marks :Neuron. All neuPrint properties; roiInfo is JSON text.",
    "segment_rois": "Per body and ROI (every hierarchy level): pre, post, downstream, upstream, synweight.",
    "connections": "Per body pair: weight (synapse pairs) and weight_hp (pairs with conf_post >= postHPThreshold).",
    "connection_rois": (
        "Per body pair and ROI of the post-synaptic point (every level): weight (PSDs) and pre (distinct T-bars)."
    ),
    "synapses": (
        "Every synapse point: stable syn_id, body, kind pre/post, location (8 nm voxels), conf, ROI labels, "
        "T-bar NT probabilities."
    ),
    "partners": (
        "Every pre->post synapse pair: both synapse ids (pre_id, post_id = synapses.syn_id) and bodies; "
        "the ends' locations, confidences and ROI labels are their synapses rows."
    ),
    "rois": "The ROI hierarchy: roi, parent, depth, is_primary, roi_set, label (the label in that ROI set's column).",
    "roi_map": "(roi_set, label) -> every ROI a point with that label counts under.",
    "meta": "The neuPrint :Meta record as key / JSON value.",
}


def _select_signed(con, table: str) -> str:
    cols = []
    for col, dtype in column_types(con, table).items():
        target = _SIGNED.get(dtype.upper())
        cols.append(f"CAST({quote_ident(col)} AS {target}) AS {quote_ident(col)}" if target else quote_ident(col))
    return ", ".join(cols)


def _store_format(con) -> int | None:
    rows = con.execute("SELECT value FROM s.store_info WHERE key = 'storeFormat'").fetchall()
    return json.loads(rows[0][0]) if rows else None


def export_parquet(
    store_path: str | os.PathLike,
    out: str | os.PathLike,
    buckets: int = DEFAULT_BUCKETS,
    force: bool = False,
    memory_limit: str = "2GB",
    threads: int | None = None,
    compression: str = "zstd",
    tables: Iterable[str] | None = None,
) -> dict:
    """Write the store at ``store_path`` as Parquet into the directory ``out`` (atomic).

    ``buckets``: number of ``body_bucket`` partitions for ``synapses`` and ``partners``.
    ``tables``: export only these tables (names of SINGLE_TABLES / PARTITIONED_TABLES; default all),
    e.g. what a set of Spark queries reads, to save time and disk on a large store.
    Returns ``{"out", "seconds", "tables": {name: {"rows", "bytes", "path", "partitioned_by"}}}``.
    """
    if buckets < 1:
        raise FlatprintError(f"buckets must be >= 1, got {buckets}")
    wanted = select_tables(tables)
    started = time.perf_counter()
    out = Path(out)
    tables: dict[str, dict] = {}
    with (
        atomic_output(out, "parquet", force=force) as work,
        store_session(store_path, work / ".spill", memory_limit, threads) as (con, meta),
    ):
        in_order = STORED_IN_EXPORT_ORDER.get(_store_format(con), frozenset())
        for table in (t for t in SINGLE_TABLES if t in wanted):
            sort = "" if table in in_order else f" ORDER BY {EXPORT_ORDER[table]}"
            path = work / f"{table}.parquet"
            con.execute(
                f"COPY (SELECT {_select_signed(con, table)} FROM s.{table}{sort}) "
                f"TO {sql_literal(str(path))} (FORMAT parquet, COMPRESSION {compression}, ROW_GROUP_SIZE 122880)"
            )
            tables[table] = {"path": path.name, "partitioned_by": None}
        for table, body_col in ((t, c) for t, c in PARTITIONED_TABLES.items() if t in wanted):
            path = work / table
            order = "body, kind DESC, syn_id" if table == "synapses" else "body_pre, body_post, pre_id, post_id"
            con.execute(f"""COPY (SELECT {_select_signed(con, table)},
                                         CAST({quote_ident(body_col)} % {int(buckets)} AS INTEGER) AS body_bucket
                                  FROM s.{table} ORDER BY {order})
                            TO {sql_literal(str(path))} (FORMAT parquet, COMPRESSION {compression},
                                                 PARTITION_BY (body_bucket), ROW_GROUP_SIZE 122880)""")
            tables[table] = {"path": f"{table}/", "partitioned_by": f"body_bucket = {body_col} % {buckets}"}
        schema = describe(work, con=con)
        for table, info in schema["tables"].items():
            tables[table].update(rows=info["rows"], bytes=info["bytes"])
        schema["dataset"] = f"{meta.get('dataset')}:{meta.get('tag')}"
        schema["description"] = meta.get("description")
        schema["buckets"] = buckets
        (work / "_schema.json").write_text(json.dumps(schema, indent=1) + "\n")
        (work / "SCHEMA.md").write_text(schema_markdown(schema))
    return {"out": str(out), "seconds": time.perf_counter() - started, "tables": tables}


def select_tables(tables: Iterable[str] | None) -> set[str]:
    """The set of table names to export: all when ``tables`` is None; an unknown or empty selection
    is an error naming the valid tables."""
    known = (*SINGLE_TABLES, *PARTITIONED_TABLES)
    if tables is None:
        return set(known)
    wanted = [tables] if isinstance(tables, str) else list(tables)
    unknown = [t for t in wanted if t not in known]
    if unknown or not wanted:
        raise FlatprintError(
            f"tables: {'unknown ' + ', '.join(map(repr, unknown)) if unknown else 'none given'}; "
            f"choose from {', '.join(known)}"
        )
    return set(wanted)


def table_glob(parquet_dir: str | os.PathLike, table: str) -> str:
    """The path (glob) of a table in a Parquet export, for read_parquet / spark.read.parquet."""
    root = Path(parquet_dir)
    if (root / table).is_dir():
        return str(root / table / "**" / "*.parquet")
    return str(root / f"{table}.parquet")


def describe(parquet_dir: str | os.PathLike, con=None) -> dict:
    """The schema of a Parquet export, read back from the files: per table its columns (name, Parquet
    type as DuckDB reads it, nullable count), row count, bytes, files and partitioning."""
    root = Path(parquet_dir)
    own = con is None
    con = con or duckdb.connect()
    try:
        out = {"tables": {}}
        for table in (*SINGLE_TABLES, *PARTITIONED_TABLES):
            partitioned = (root / table).is_dir()
            files = sorted((root / table).rglob("*.parquet")) if partitioned else [root / f"{table}.parquet"]
            if not files or not files[0].exists():
                continue
            src = (
                f"read_parquet({sql_literal(table_glob(root, table))}, hive_partitioning = true)"
                if partitioned
                else f"read_parquet({sql_literal(str(files[0]))})"
            )
            cols = con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
            exprs = ", ".join(f"count(*) - count({quote_ident(c[0])})" for c in cols)
            stats = con.execute(f"SELECT count(*), {exprs} FROM {src}").fetchone()
            out["tables"][table] = {
                "description": DESCRIPTIONS.get(table, ""),
                "path": f"{table}/" if partitioned else f"{table}.parquet",
                "partitioning": "hive: body_bucket" if partitioned else None,
                "files": len(files),
                "rows": int(stats[0]),
                "bytes": sum(f.stat().st_size for f in files),
                "columns": [{"name": c[0], "type": c[1], "nulls": int(n)} for c, n in zip(cols, stats[1:])],
            }
        return out
    finally:
        if own:
            con.close()


def schema_markdown(schema: dict) -> str:
    """SCHEMA.md: one section per table, generated from the data."""
    lines = [f"# Parquet export of {schema.get('dataset', 'a flatprint store')}", ""]
    if schema.get("description"):
        lines += [f"_{schema['description']}_", ""]
    lines += [
        "Generated by `flatprint export parquet` from the files themselves (see `_schema.json`).",
        "Partitioned tables are hive-style directories (`body_bucket=N/`); read them with",
        "`read_parquet('synapses/**/*.parquet', hive_partitioning=true)` (DuckDB) or",
        "`spark.read.parquet('synapses')` (Spark).",
        "",
        "| table | rows | files | MB | partitioning |",
        "|---|---:|---:|---:|---|",
    ]
    for name, t in schema["tables"].items():
        lines.append(
            f"| `{name}` | {t['rows']:,} | {t['files']} | {t['bytes'] / 1e6:.1f} | {t['partitioning'] or '-'} |"
        )
    for name, t in schema["tables"].items():
        lines += [
            "",
            f"## `{name}` (`{t['path']}`)",
            "",
            t["description"],
            "",
            "| column | type | nulls |",
            "|---|---|---:|",
        ]
        for c in t["columns"]:
            lines.append(f"| `{c['name']}` | {c['type']} | {c['nulls']:,} |")
    return "\n".join(lines) + "\n"


def exported_tables(parquet_dir: str | os.PathLike, tables=(*SINGLE_TABLES, *PARTITIONED_TABLES)) -> list[str]:
    """Those of ``tables`` that the Parquet export in ``parquet_dir`` holds (a partial export has fewer)."""
    root = Path(parquet_dir)
    return [t for t in tables if (root / t).is_dir() or (root / f"{t}.parquet").is_file()]


def duckdb_over_parquet(parquet_dir: str | os.PathLike) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with views named like the store's tables over a Parquet export
    (the tables flatprint.query.heavy reads that the export holds: see ``export_parquet(tables=...)``),
    for :func:`flatprint.query.heavy.run_duckdb`."""
    present = exported_tables(parquet_dir, HEAVY_TABLES)
    if not present:
        raise FlatprintError(f"{parquet_dir}: none of the tables {', '.join(HEAVY_TABLES)} (not a Parquet export?)")
    con = duckdb.connect()
    for table in present:
        path = table_glob(parquet_dir, table)
        hive = ", hive_partitioning = true" if "**" in path else ""
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet({sql_literal(path)}{hive})")
    return con
