"""Reading release feather files (Arrow IPC, Feather V2) in bounded memory, with errors naming the file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from flatprint.errors import ReleaseError


def open_feather(path: Path) -> pa.ipc.RecordBatchFileReader:
    """Open a feather file memory-mapped; a truncated or corrupt file gives one clear error."""
    if not path.exists():
        raise ReleaseError(f"missing file: {path}")
    try:
        return pa.ipc.open_file(pa.memory_map(str(path), "r"))
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise ReleaseError(f"{path.name}: not a readable feather file (truncated or corrupt?): {exc}") from None


def iter_batches(path: Path, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Yield the file's record batches one at a time (optionally a subset of columns)."""
    reader = open_feather(path)
    names = reader.schema.names
    indices = [names.index(c) for c in columns] if columns else None
    for i in range(reader.num_record_batches):
        try:
            batch = reader.get_batch(i)
            if indices is not None:
                batch = batch.select(indices)
            batch.validate()
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
            raise ReleaseError(f"{path.name}: record batch {i} is unreadable (corrupt file?): {exc}") from None
        yield batch


def batch_reader(path: Path, columns: list[str] | None = None, on_batch=None) -> pa.RecordBatchReader:
    """A streaming reader over the file for DuckDB to scan; ``on_batch(rows)`` reports progress."""
    reader = open_feather(path)
    schema = reader.schema
    if columns:
        schema = pa.schema([schema.field(c) for c in columns])

    def gen():
        for batch in iter_batches(path, columns):
            yield batch
            if on_batch:
                on_batch(batch.num_rows)

    return pa.RecordBatchReader.from_batches(schema, gen())
