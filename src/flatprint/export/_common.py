"""Shared pieces of the exporters: a DuckDB session over a store (SQL quoting is flatprint.store.sql; the
atomic output directory is flatprint.io.publish.atomic_output)."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import duckdb

from flatprint.store import Store
from flatprint.store.sql import sql_literal


@contextlib.contextmanager
def store_session(
    store_path: str | os.PathLike, spill_dir: Path, memory_limit: str = "2GB", threads: int | None = None
):
    """An in-memory DuckDB connection with the store attached read-only as ``s``, plus its Meta.

    Temporary tables live in the in-memory database and spill to ``spill_dir``; the store is never
    written.
    """
    store = Store.open(store_path)  # validates the store and reads its Meta
    meta = dict(store.meta)
    store.close()
    con = duckdb.connect()
    try:
        spill_dir.mkdir(parents=True, exist_ok=True)
        con.execute(f"SET memory_limit = {sql_literal(memory_limit)}")
        con.execute(f"SET temp_directory = {sql_literal(str(spill_dir))}")
        con.execute("SET enable_progress_bar = false")
        con.execute("SET preserve_insertion_order = true")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        con.execute(f"ATTACH {sql_literal(str(Path(store_path)))} AS s (READ_ONLY)")
        yield con, meta
    finally:
        con.close()
        shutil.rmtree(spill_dir, ignore_errors=True)


def column_types(con, table: str, database: str = "s") -> dict[str, str]:
    """{column: DuckDB type} of ``database.table``, in table order."""
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = ? AND table_name = ? "
        "ORDER BY column_index",
        [database, table],
    ).fetchall()
    return dict(rows)
