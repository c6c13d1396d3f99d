"""Shared pieces of the exporters: the atomic output directory and a DuckDB session over a store."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import threading
from pathlib import Path

import duckdb

from flatprint.errors import StoreError
from flatprint.store import Store


def q(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: str) -> str:
    """A quoted SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def _clean_stale(out: Path, kind: str) -> None:
    """Remove temporary directories of exports into ``out`` whose process is gone (e.g. SIGKILLed)."""
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.(?:{re.escape(kind)}|old)-(?P<pid>\d+)$")
    for entry in out.parent.glob(f".{out.name}.*-*"):
        m = pattern.match(entry.name)
        if not m or int(m["pid"]) == os.getpid():
            continue
        try:
            os.kill(int(m["pid"]), 0)
        except OSError:
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, force: bool = False, kind: str = "export"):
    """Yield a fresh temporary directory beside ``out``; rename it to ``out`` only on success.

    An existing ``out`` is an error unless ``force``; then it is replaced only after the new export is
    complete. On any error, Ctrl-C or SIGTERM the temporary directory is removed and ``out`` is
    untouched; directories left by killed exports are removed by the next export into ``out``.
    """
    out = Path(out)
    if out.exists() and not force:
        raise StoreError(f"{out} already exists (use --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(out, kind)
    work = out.parent / f".{out.name}.{kind}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if in_main else None

    def on_term(signum, frame):  # turn SIGTERM into an exception so the temporary directory goes
        raise KeyboardInterrupt(f"{kind} export terminated")

    if in_main:
        signal.signal(signal.SIGTERM, on_term)
    try:
        yield work
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(work, out)
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
        else:
            os.replace(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if in_main:
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def store_session(store_path: str | os.PathLike, spill_dir: Path, memory_limit: str = "2GB",
                  threads: int | None = None):
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
        con.execute(f"SET memory_limit = {lit(memory_limit)}")
        con.execute(f"SET temp_directory = {lit(str(spill_dir))}")
        con.execute("SET enable_progress_bar = false")
        con.execute("SET preserve_insertion_order = true")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        con.execute(f"ATTACH {lit(str(Path(store_path)))} AS s (READ_ONLY)")
        yield con, meta
    finally:
        con.close()
        shutil.rmtree(spill_dir, ignore_errors=True)


def column_types(con, table: str, database: str = "s") -> dict[str, str]:
    """{column: DuckDB type} of ``database.table``, in table order."""
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = ? AND table_name = ? "
        "ORDER BY column_index", [database, table]).fetchall()
    return dict(rows)
