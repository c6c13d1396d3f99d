"""Check a release directory before anything is written: files, columns, dtypes, readability."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from flatprint.errors import ReleaseError
from flatprint.io.feather import open_feather
from flatprint.release.registry import ReleaseDescription, describe, detect
from flatprint.release.tables import OPTIONAL_COLUMNS


@dataclass
class ReleaseFiles:
    """Validated release: the path of each table, its schema and row count, and the ROI sets found."""

    root: Path
    paths: dict[str, Path]
    schemas: dict[str, pa.Schema]
    rows: dict[str, int]
    roi_sets: list[str]  # ROI sets of syn-points (X with X_label), 'primary' first
    release: ReleaseDescription | None = None  # which registered release the files are


def _type_ok(actual: pa.DataType, accepted: tuple[pa.DataType, ...]) -> bool:
    return any(actual.equals(t) for t in accepted)


def validate_release(root: str | Path, release: str | None = None) -> ReleaseFiles:
    """Raise ReleaseError naming every missing file, else the file (and column) of the first problem.

    ``release`` (e.g. ``male-cns:v1.0``) names the registered release to expect; by default it is the
    one whose file names the directory holds."""
    root = Path(root)
    if not root.is_dir():
        raise ReleaseError(f"release directory not found: {root}")
    described = describe(release) if release else detect(root)
    specs = described.table_specs()
    missing = [f"{spec.filename} (table '{key}')" for key, spec in specs.items() if not (root / spec.filename).exists()]
    if missing:  # all of them at once, so a partial download is fixed in one go
        raise ReleaseError(
            f"{len(missing)} missing file{'s' if len(missing) > 1 else ''} of {described.key} in {root}: "
            + "; ".join(missing)
        )
    paths, schemas, rows = {}, {}, {}
    for key, spec in specs.items():
        path = root / spec.filename
        reader = open_feather(path)
        schema = reader.schema
        optional = OPTIONAL_COLUMNS.get(key, set())
        for column, accepted in spec.columns.items():
            if column not in schema.names:
                if column in optional:
                    continue
                raise ReleaseError(f"{spec.filename}: missing column '{column}'")
            actual = schema.field(column).type
            if not _type_ok(actual, accepted):
                raise ReleaseError(f"{spec.filename}: column '{column}' has type {actual}, expected {accepted[0]}")
        paths[key], schemas[key] = path, schema
        rows[key] = _count_rows(reader)
    _verify_manifest(root, paths)
    points = schemas["syn-points"]
    roi_sets = [
        name
        for name in points.names
        if f"{name}_label" in points.names and pa.types.is_integer(points.field(f"{name}_label").type)
    ]
    if "primary" not in roi_sets:
        raise ReleaseError(f"{specs['syn-points'].filename}: missing ROI columns 'primary' / 'primary_label'")
    roi_sets.sort(key=lambda s: s != "primary")
    return ReleaseFiles(root, paths, schemas, rows, roi_sets, described)


def _verify_manifest(root: Path, paths: dict[str, Path]) -> None:
    """When the release carries manifest.json (synth and download write one), check sizes and sha256.

    Feather's lz4 frames carry no checksum, so bytes damaged in the middle of a file would otherwise
    decode into wrong numbers without any error.
    """
    manifest_path = root / "manifest.json"
    if not manifest_path.exists():
        return
    try:
        entries = {e["file"]: e for e in json.loads(manifest_path.read_text()).get("files", [])}
    except (ValueError, AttributeError, KeyError, TypeError):
        raise ReleaseError(f"{manifest_path}: not a valid release manifest") from None
    for path in paths.values():
        entry = entries.get(path.name)
        if not entry:
            continue
        if "bytes" in entry and path.stat().st_size != entry["bytes"]:
            raise ReleaseError(f"{path.name}: size {path.stat().st_size} differs from manifest.json ({entry['bytes']})")
        if "sha256" in entry:
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    digest.update(block)
            if digest.hexdigest() != entry["sha256"]:
                raise ReleaseError(f"{path.name}: sha256 differs from manifest.json (corrupt file?)")


def _count_rows(reader: pa.ipc.RecordBatchFileReader) -> int:
    # count_rows reads the batch metadata only, not the (compressed) column data.
    return reader.count_rows()
