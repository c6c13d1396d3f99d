"""What synth adds to io.feather's writer: pandas index metadata as the real release carries it, checksums."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa

from flatprint.io.feather import FEATHER_BATCH_ROWS as WRITE_ROWS, FeatherWriter, write_feather

__all__ = ["WRITE_ROWS", "FeatherWriter", "pandas_index_metadata", "sha256_of", "write_table"]


def pandas_index_metadata(schema: pa.Schema, index_name: str) -> dict:
    """Pandas metadata marking ``index_name`` as the frame's index, as pyarrow writes it for a pandas frame."""
    columns = []
    for f in schema:
        if pa.types.is_dictionary(f.type):
            pandas_type, numpy_type = "categorical", str(f.type.index_type.to_pandas_dtype().__name__)
            meta = {"num_categories": None, "ordered": f.type.ordered}
        else:
            pandas_type = {
                "int32": "int32",
                "int64": "int64",
                "uint64": "uint64",
                "float": "float32",
                "uint8": "uint8",
                "uint16": "uint16",
            }.get(str(f.type), str(f.type))
            numpy_type, meta = pandas_type, None
        columns.append(
            {
                "name": f.name,
                "field_name": f.name,
                "pandas_type": pandas_type,
                "numpy_type": numpy_type,
                "metadata": meta,
            }
        )
    doc = {
        "index_columns": [index_name],
        "column_indexes": [],
        "columns": columns,
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    return {b"pandas": json.dumps(doc).encode()}


def write_table(path: Path, table: pa.Table) -> dict:
    """A whole table at once, with the same layout as FeatherWriter; returns {file, rows}."""
    return write_feather(table, path)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
