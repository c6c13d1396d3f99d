"""flatprint.download: fetch a published release into a directory: resumable, parallel, verified.

How a download goes (see docs/download.md for the user's view):

1. **Plan.** Each selected manifest item is resolved against the server: a single file by a HEAD
   request (exact size, ``x-goog-hash`` checksums, generation/ETag, Range support), a directory
   by the Cloud Storage JSON API listing (``/storage/v1/b/<bucket>/o?prefix=...``, paged with
   ``pageToken``); all items at once. The plan (items, sizes, what is already present) and the free disk space are
   printed before anything is fetched; too little space is an error.
2. **Fetch.** Large objects are split into segments fetched in parallel with HTTP ``Range``
   requests into a preallocated ``<name>.part`` file; a small JSON sidecar (``<name>.part.json``)
   records how many bytes of each segment are on disk, so an interrupted run (network error,
   Ctrl-C, crash) continues where it stopped. Small objects (skeletons, ROI chunks) are fetched
   whole, in memory, by a bounded pool. Transient failures (connection drops, timeouts, 408/429/5xx)
   are retried with exponential backoff; every retry count, timeout and pool is bounded. Until
   the server has answered once, network errors are retried only for a few seconds: nothing
   answering means no network or a wrong mirror, and the run says so instead of waiting.
3. **Verify and finalize.** A file gets its final name (``os.replace``, atomic) only after its
   size and every checksum the server published (MD5 and/or CRC32C) match. A mismatch is an error;
   the data stays in ``.part`` for inspection and the next run downloads it again.
Ingest is not this package's job: ``flatprint download --ingest STORE`` (flatprint.cli) calls
``flatprint.ingest.ingest_release`` once a download is complete; :func:`missing_tables` lets it refuse
early when the download would leave a table out.

Errors are ``flatprint.errors.ReleaseError`` naming the URL or file. One failing item does not
stop the others; the run reports every failure at the end, one line per file.

Modules, in the order a download uses them: ``checksums`` (CRC32C, ``x-goog-hash``), ``remote`` (options,
HTTP with bounded retries, probes and bucket listings), ``partial`` (``.part`` files and their sidecars,
small objects, the atomic finalize), ``plan`` (selection, sizes, disk space) and ``run``.
"""

from __future__ import annotations

from flatprint.download.checksums import Checksums, crc32c, parse_goog_hash
from flatprint.download.plan import DownloadReport, ItemOutcome, missing_tables, select_items
from flatprint.download.remote import DownloadOptions, RemoteObject, list_bucket_prefix, probe_object
from flatprint.download.run import download_release

__all__ = [
    "Checksums",
    "DownloadOptions",
    "DownloadReport",
    "ItemOutcome",
    "RemoteObject",
    "crc32c",
    "download_release",
    "list_bucket_prefix",
    "missing_tables",
    "parse_goog_hash",
    "probe_object",
    "select_items",
]
