"""One place that opens a DuckDB connection with its resource settings (memory limit, threads, spill
directory), so every heavy job (ingest, exports, benchmarks) configures DuckDB the same way and bad
settings fail with an error naming the parameter."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import duckdb

from flatprint.errors import FlatprintError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.IGNORECASE)
_UNIT_BYTES = {
    "b": 1,
    "kb": 1e3,
    "mb": 1e6,
    "gb": 1e9,
    "tb": 1e12,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_size(text: str, parameter: str = "memory_limit") -> int:
    """Bytes of a size such as ``6GB`` or ``512 MiB``; a clear error naming ``parameter`` otherwise."""
    found = _SIZE.match(str(text))
    if not found:
        raise FlatprintError(f"{parameter}: {text!r} is not a size such as '6GB' or '512MiB'")
    number, unit = found.groups()
    size = int(float(number) * _UNIT_BYTES[unit.lower()])
    if size <= 0:
        raise FlatprintError(f"{parameter}: {text!r} must be larger than zero")
    return size


@contextlib.contextmanager
def duckdb_session(
    path: str | Path = ":memory:",
    *,
    memory_limit: str | None = None,
    threads: int | None = None,
    temp_dir: str | Path | None = None,
    read_only: bool = False,
    preserve_insertion_order: bool = False,
):
    """A DuckDB connection to ``path`` with these settings, closed on exit.

    ``memory_limit``: DuckDB's buffer-pool cap (``'6GB'``); ``threads``: worker threads (DuckDB's
    default: every core); ``temp_dir``: where sorts and joins spill beyond the limit (created when
    missing); ``preserve_insertion_order``: False lets DuckDB reorder rows of statements without
    ORDER BY, which saves memory in large inserts."""
    if memory_limit is not None:
        parse_size(memory_limit)
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise FlatprintError(f"threads: {threads!r} must be a positive whole number")
    con = duckdb.connect(str(path), read_only=read_only)
    try:
        if memory_limit is not None:
            con.execute(f"SET memory_limit = '{memory_limit}'")
        if threads is not None:
            con.execute(f"SET threads = {threads}")
        if temp_dir is not None:
            Path(temp_dir).mkdir(parents=True, exist_ok=True)
            con.execute("SET temp_directory = '" + str(temp_dir).replace("'", "''") + "'")
        con.execute(f"SET preserve_insertion_order = {'true' if preserve_insertion_order else 'false'}")
        con.execute("SET enable_progress_bar = false")
        yield con
    finally:
        con.close()


def memory_limit_bytes(con) -> int:
    """The connection's current memory_limit in bytes."""
    return parse_size(_memory_limit_text(con))


def _memory_limit_text(con) -> str:
    return con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]


def lowered_limit(limit: int, nbytes: int) -> int:
    """``limit`` less ``nbytes``, but never below half of it."""
    return max(limit - nbytes, limit // 2)


@contextlib.contextmanager
def memory_limit_lowered(con, nbytes: int):
    """DuckDB's memory_limit lowered by ``nbytes`` (to no less than half of it) while a step holds
    about that much in Python (Arrow tables, NumPy arrays): the limit caps only DuckDB's buffer pool,
    the process's peak is the sum of both. Restored as ``current_setting`` spells it (to 0.1 GiB)."""
    before = _memory_limit_text(con)
    con.execute(f"SET memory_limit = '{lowered_limit(parse_size(before), nbytes)}B'")
    try:
        yield
    finally:
        con.execute(f"SET memory_limit = '{before}'")
