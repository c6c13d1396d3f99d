"""flatprint.ingest: release directory -> store (validated, streaming, atomic)."""

from flatprint.ingest.build import ingest_release, store_is_current
from flatprint.ingest.validate import validate_release

__all__ = ["ingest_release", "store_is_current", "validate_release"]
