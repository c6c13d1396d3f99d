"""flatprint.store: opening a store (one DuckDB file) and reading its Meta and summary."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from flatprint.errors import StoreError

REQUIRED_TABLES = (
    "segments",
    "segment_rois",
    "connections",
    "connections_by_post",
    "connection_rois",
    "synapses",
    "partners",
    "rois",
    "roi_map",
    "meta",
    "store_info",
)


def flatprint_home() -> Path:
    """$FLATPRINT_HOME, default ~/.local/share/flatprint (demo data, TLS material, benchmark releases)."""
    return Path(os.environ.get("FLATPRINT_HOME", Path.home() / ".local" / "share" / "flatprint"))


@dataclass
class Store:
    """A read-only handle on a store file. ``con`` is a DuckDB connection; use ``cursor()`` per thread."""

    path: Path
    con: duckdb.DuckDBPyConnection
    meta: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    tables: frozenset = frozenset()  # table names, read once at open (a store is read-only)

    @classmethod
    def open(cls, path: str | os.PathLike, read_only: bool = True) -> Store:
        path = Path(path)
        if not path.exists():
            raise StoreError(f"store not found: {path}")
        try:
            con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            raise StoreError(f"{path}: not a readable flatprint store ({exc})") from None
        try:
            tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
            missing = [t for t in REQUIRED_TABLES if t not in tables]
            if missing:
                raise StoreError(f"{path}: not a flatprint store (missing tables: {', '.join(missing)})")
            meta = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta").fetchall()}
            info = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM store_info").fetchall()}
        except duckdb.Error as exc:
            con.close()
            raise StoreError(f"{path}: store is corrupt ({exc})") from None
        except StoreError:
            con.close()
            raise
        con.execute("SET enable_progress_bar = false")
        return cls(path, con, meta, info, frozenset(tables))

    @property
    def dataset(self) -> str:
        return f"{self.meta['dataset']}:{self.meta['tag']}"

    def has_table(self, name: str) -> bool:
        """Optional tables (skeletons, roi_meshes) and ones newer layouts add (connection_rois_by_post)."""
        return name in self.tables

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.con.cursor()

    def limit_memory(self, nbytes: int, spill_bytes: int | None = None) -> None:
        """DuckDB's memory_limit for this store (its buffer pool and operators) and, with
        ``spill_bytes``, how much it may write to its temp directory; past them a query fails with
        duckdb.OutOfMemoryException."""
        self.con.execute(f"SET memory_limit = '{max(int(nbytes) // 2**20, 1)}MiB'")
        if spill_bytes is not None:
            self.con.execute(f"SET max_temp_directory_size = '{max(int(spill_bytes) // 2**20, 1)}MiB'")

    def close(self) -> None:
        self.con.close()

    def summary(self) -> dict:
        """What ``flatprint info`` prints: dataset, provenance, row counts, ROIs, size on disk."""
        cur = self.cursor()
        counts = {}
        for table in ("segments", "connections", "connection_rois", "segment_rois", "synapses", "partners"):
            counts[table] = cur.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        counts["neurons"] = cur.execute("SELECT count(*) FROM segments WHERE is_neuron").fetchall()[0][0]
        counts["types"] = cur.execute(
            "SELECT count(DISTINCT type) FROM segments WHERE is_neuron AND type IS NOT NULL"
        ).fetchall()[0][0]
        return {
            "dataset": self.dataset,
            "description": self.meta.get("description"),
            "path": str(self.path),
            "bytes": self.path.stat().st_size,
            "counts": counts,
            "primary_rois": len(self.meta.get("primaryRois", [])),
            "rois": len(json.loads(self.meta.get("roiInfo", "{}"))),
            "totalPreCount": self.meta.get("totalPreCount"),
            "totalPostCount": self.meta.get("totalPostCount"),
            "ingested_at": self.info.get("ingestedAt"),
            "source_checksum": self.info.get("sourceChecksum"),
            "synthetic": self.info.get("synthetic"),
        }
