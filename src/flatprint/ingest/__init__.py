"""flatprint.ingest: release directory -> store (validated, streaming, atomic)."""

from flatprint.ingest.build import ingest_release
from flatprint.ingest.validate import validate_release

__all__ = ["ingest_release", "validate_release"]
