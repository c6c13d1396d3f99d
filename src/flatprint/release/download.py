"""Download a published release: resumable, parallel, verified, optionally followed by ingest.

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
4. **Ingest** (optional): ``flatprint.ingest.ingest_release(dest, store)``.

Errors are ``flatprint.errors.ReleaseError`` naming the URL or file. One failing item does not
stop the others; the run reports every failure at the end, one line per file.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import math
import os
import random
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import lru_cache
from http.client import RemoteDisconnected
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlsplit

import click
import numpy as np
import requests
import urllib3
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from flatprint.errors import ReleaseError
from flatprint.release.manifest import (
    DEFAULT_RELEASE,
    GCS_HTTPS_BASE,
    Release,
    ReleaseItem,
    get_release,
)

__all__ = [
    "Checksums",
    "DownloadOptions",
    "DownloadReport",
    "ItemOutcome",
    "RemoteObject",
    "crc32c",
    "download_command",
    "download_release",
    "list_bucket_prefix",
    "parse_goog_hash",
    "probe_object",
    "select_items",
]

MiB = 1 << 20


# ---------------------------------------------------------------------------------------------
# CRC32C (Castagnoli), as Cloud Storage publishes it. Neither google-crc32c nor crc32c is a
# dependency, so this is a table-driven implementation vectorised with numpy: the buffer is cut
# into many equal "lanes" whose CRCs advance together one byte per numpy step, then the lane CRCs
# are joined pairwise with the linear "append n zero bytes" operator. About 350 MB/s on one core.
# ---------------------------------------------------------------------------------------------

_CASTAGNOLI_REFLECTED = 0x82F63B78


def _byte_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for byte in range(256):
        value = byte
        for _ in range(8):
            value = (value >> 1) ^ (_CASTAGNOLI_REFLECTED if value & 1 else 0)
        table[byte] = value
    return table


_CRC_TABLE = _byte_table()
_CRC_TABLE_LIST: list[int] = _CRC_TABLE.tolist()
_CRC_MAX_LANES = 1 << 14
_CRC_MIN_LANE_BYTES = 64  # below 16 lanes of this length the plain loop is as fast
_CRC_WINDOW = 4 * MiB


def _crc_register_loop(register: int, data: Iterable[int]) -> int:
    """Advance a raw (unconditioned) CRC register over ``data`` one byte at a time."""
    table = _CRC_TABLE_LIST
    for byte in data:
        register = table[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register


def _gf2_apply(columns: tuple[int, ...], value: int) -> int:
    """Multiply the 32x32 GF(2) matrix given by its ``columns`` with the bit vector ``value``."""
    result, bit = 0, 0
    while value:
        if value & 1:
            result ^= columns[bit]
        value >>= 1
        bit += 1
    return result


_IDENTITY = tuple(1 << bit for bit in range(32))
_ONE_ZERO_BYTE = tuple(_crc_register_loop(1 << bit, b"\0") for bit in range(32))


@lru_cache(maxsize=128)
def _zeros_operator(count: int) -> tuple[int, ...]:
    """Columns of the linear map "advance the raw register over ``count`` zero bytes"."""
    result, power = _IDENTITY, _ONE_ZERO_BYTE
    while count:
        if count & 1:
            result = tuple(_gf2_apply(power, column) for column in result)
        count >>= 1
        if count:
            power = tuple(_gf2_apply(power, column) for column in power)
    return result


@lru_cache(maxsize=128)
def _zeros_byte_tables(count: int) -> np.ndarray:
    """The same map as four 256-entry tables (one per register byte), for applying it to arrays."""
    columns = np.array(_zeros_operator(count), dtype=np.uint32)
    bit_set = ((np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1).astype(bool)
    tables = np.empty((4, 256), dtype=np.uint32)
    for byte_index in range(4):
        byte_columns = columns[8 * byte_index: 8 * byte_index + 8]
        tables[byte_index] = np.bitwise_xor.reduce(np.where(bit_set, byte_columns[None, :], 0), axis=1)
    return tables


def _crc_lanes(data: memoryview, lanes: int) -> tuple[int, int]:
    """Raw CRC (register starting at 0) of the first ``lanes * m`` bytes; returns (crc, bytes used)."""
    lane_length = len(data) // lanes
    used = lanes * lane_length
    # Row j of the transposed array holds byte j of every lane.
    rows = np.frombuffer(data, dtype=np.uint8, count=used).reshape(lanes, lane_length).T.copy()
    registers = np.zeros(lanes, dtype=np.uint32)
    for row in rows:
        registers = _CRC_TABLE[(registers ^ row) & 0xFF] ^ (registers >> 8)
    span = lane_length
    while registers.size > 1:  # join neighbours: crc(A+B) = zeros_len(B)(crc(A)) ^ crc(B)
        tables = _zeros_byte_tables(span)
        left = registers[0::2]
        registers = (
            tables[0][left & 0xFF] ^ tables[1][(left >> 8) & 0xFF]
            ^ tables[2][(left >> 16) & 0xFF] ^ tables[3][left >> 24]
        ) ^ registers[1::2]
        span *= 2
    return int(registers[0]), used


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC32C of ``data``; pass a previous result as ``value`` to continue over a following chunk."""
    view = memoryview(data).cast("B")
    register = value ^ 0xFFFFFFFF
    position = 0
    while len(view) - position >= 16 * _CRC_MIN_LANE_BYTES:
        # Windows of at most 4 MiB keep the transposed copy in cache.
        window = view[position:position + _CRC_WINDOW]
        lanes = min(_CRC_MAX_LANES, 1 << ((len(window) // _CRC_MIN_LANE_BYTES).bit_length() - 1))
        chunk_crc, used = _crc_lanes(window, lanes)
        register = _gf2_apply(_zeros_operator(used), register) ^ chunk_crc
        position += used
    return _crc_register_loop(register, view[position:]) ^ 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
# What the server says about an object
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checksums:
    """Whole-object checksums published by the server (raw digests); either may be missing."""

    md5: bytes | None = None
    crc32c: int | None = None

    def __bool__(self) -> bool:
        return self.md5 is not None or self.crc32c is not None


def _decode_crc32c(text: str) -> int:
    return int.from_bytes(base64.b64decode(text), "big")  # base64 of the big-endian 4 bytes


def parse_goog_hash(header_value: str | None) -> Checksums:
    """Parse ``x-goog-hash`` (``crc32c=<b64>,md5=<b64>``; repeated headers arrive comma-joined)."""
    md5_digest, crc_value = None, None
    for part in (header_value or "").split(","):
        algorithm, _, encoded = part.strip().partition("=")
        try:
            if algorithm == "md5":
                md5_digest = base64.b64decode(encoded, validate=True)
            elif algorithm == "crc32c":
                crc_value = _decode_crc32c(encoded)
        except (ValueError, TypeError):
            raise ReleaseError(f"malformed x-goog-hash header {header_value!r}") from None
    return Checksums(md5_digest, crc_value)


@dataclass(frozen=True)
class RemoteObject:
    """One object to fetch: where it is, where it goes, and how to check it.

    ``stored_gzip`` marks objects stored with ``Content-Encoding: gzip``; they are fetched as
    stored (so sizes and checksums match the server's), verified, then decompressed on finalize.
    """

    url: str
    destination: Path
    size: int
    checksums: Checksums = Checksums()
    generation: str | None = None
    etag: str | None = None
    accepts_ranges: bool = True
    stored_gzip: bool = False

    @property
    def partial_path(self) -> Path:
        return self.destination.with_name(self.destination.name + ".part")

    @property
    def sidecar_path(self) -> Path:
        return self.destination.with_name(self.destination.name + ".part.json")

    def identity(self) -> dict:
        """What identifies the object's content, stored beside a partial download."""
        return {
            "size": self.size,
            "md5": self.checksums.md5.hex() if self.checksums.md5 is not None else None,
            "crc32c": self.checksums.crc32c,
            "generation": self.generation,
            "etag": self.etag,
        }


def _same_content(recorded: dict, current: dict) -> bool:
    """Whether a partial download recorded as ``recorded`` can be continued for ``current``.

    Compares what both sides know; the URL is not compared, so a download may be continued
    from another mirror of the same object. ETags are mirror-specific, so they only count
    when no checksum is known.
    """
    if recorded.get("size") != current["size"]:
        return False
    known = [key for key in ("md5", "crc32c", "generation")
             if recorded.get(key) is not None and current[key] is not None]
    if not any(key in known for key in ("md5", "crc32c")) and recorded.get("etag") and current["etag"]:
        known.append("etag")
    return all(recorded[key] == current[key] for key in known)


# ---------------------------------------------------------------------------------------------
# Options, HTTP with bounded retries
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadOptions:
    """Tuning knobs; the defaults suit the public bucket over an ordinary connection."""

    workers: int = 4                 # parallel ranged requests for large files
    directory_workers: int = 16      # parallel small-file requests for directories
    segment_size: int = 64 * MiB     # a large file is fetched in segments of this size
    small_file_limit: int = 8 * MiB  # directory objects up to this size are fetched in memory
    chunk_size: int = 1 * MiB        # read/write unit while streaming
    max_retries: int = 6             # consecutive failed attempts (without progress) before giving up
    max_attempts: int = 100          # total attempts per segment or object, progress or not
    backoff_base: float = 0.5        # seconds before the first retry; doubles each time
    backoff_max: float = 30.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    # Until the server has answered once, a silent or unreachable server most likely means no
    # network or a wrong --mirror: requests wait at most first_answer_timeout, and network errors
    # are retried only while the run is younger than unreachable_after.
    first_answer_timeout: float = 10.0
    unreachable_after: float = 10.0
    listing_page_size: int = 1000
    max_listing_pages: int = 10_000  # 10 million objects per directory at the default page size
    progress_save_interval: float = 1.0  # seconds between sidecar updates while streaming
    max_failed_files: int = 100      # a directory with this many failed files is given up (re-run resumes)

    def backoff_delay(self, failures: int) -> float:
        """Exponential backoff with jitter (so parallel workers do not retry in lockstep)."""
        delay = min(self.backoff_max, self.backoff_base * (2 ** max(0, failures - 1)))
        return delay * random.uniform(0.5, 1.0)

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)

    @property
    def first_timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, min(self.read_timeout, self.first_answer_timeout))


class _TransientError(Exception):
    """A failure worth retrying (dropped connection, timeout, 408/429/5xx)."""


class _Stopped(Exception):
    """The run was interrupted, or this file already failed elsewhere: stop quietly."""


_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
_NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                   urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)


def _check_status(response: requests.Response, url: str) -> None:
    status = response.status_code
    if status in (200, 206):
        return
    if status in _TRANSIENT_STATUS:
        raise _TransientError(f"HTTP {status}")
    reason = {404: "not found", 410: "gone", 401: "authentication required", 403: "access denied",
              416: "requested range not satisfiable (the object is shorter than expected)"}.get(
        status, response.reason or "unexpected status")
    raise ReleaseError(f"{url}: HTTP {status} {reason}")


class _Http:
    """One ``requests.Session`` per thread (sessions are not guaranteed thread-safe).

    Also remembers whether the server has answered at all during this run (``answered``): before
    it has, network errors are given up after ``unreachable_after`` seconds instead of being
    retried with the full backoff.
    """

    def __init__(self, options: DownloadOptions):
        self.options = options
        self._local = threading.local()
        self.started = time.monotonic()
        self.answered = False

    @property
    def timeout(self) -> tuple[float, float]:
        return self.options.timeout if self.answered else self.options.first_timeout

    def _mark_answered(self, response: requests.Response, *_args, **_kwargs) -> None:
        self.answered = True

    @property
    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=4, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            # identity: a mirror must not compress on the fly, or sizes and checksums won't match.
            session.headers.update({"User-Agent": "flatprint-download", "Accept-Encoding": "identity"})
            session.hooks["response"].append(self._mark_answered)
            self._local.session = session
        return session

    def with_retries(self, url: str, attempt: Callable[[], object], cancel: threading.Event | None = None):
        """Run ``attempt`` until it succeeds, retrying transient failures with backoff (bounded)."""
        failures = 0
        while True:
            try:
                return attempt()
            except (_TransientError, *_NETWORK_ERRORS) as exc:
                failures += 1
                delay = self.options.backoff_delay(failures)
                if not self.answered and not isinstance(exc, _TransientError):
                    waited = time.monotonic() - self.started
                    if failures > self.options.max_retries or waited + delay > self.options.unreachable_after:
                        raise ReleaseError(f"{url}: {_network_reason(exc, self.options, first=True)} "
                                           f"({_attempts(failures)} in {waited:.0f} s)") from exc
                elif failures > self.options.max_retries:
                    raise ReleaseError(f"{url}: giving up after {_attempts(failures)} "
                                       f"({_network_reason(exc, self.options)})") from exc
                _sleep(delay, cancel)


def _attempts(count: int) -> str:
    return f"{count} attempt{'s' if count != 1 else ''}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: requests and urllib3 nest the socket error several levels deep."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        stack += [arg for arg in current.args if isinstance(arg, BaseException)]


def _network_reason(exc: BaseException, options: DownloadOptions, first: bool = False) -> str:
    """A short, readable reason for a failed request (the raw exception text is a screenful)."""
    if isinstance(exc, _TransientError):
        return str(exc)
    connect, read = options.first_timeout if first else options.timeout
    causes = list(_causes(exc))
    for cause in causes:  # the socket-level error, when there is one, says it best
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror) or type(cause).__name__ == "NameResolutionError":
            return "host name not found"
        if isinstance(cause, RemoteDisconnected):
            return "the server closed the connection without answering"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
    for cause in causes:
        # urllib3's NewConnectionError is a ConnectTimeoutError subclass; only real timeouts count.
        if isinstance(cause, urllib3.exceptions.NewConnectionError):
            continue
        if isinstance(cause, (requests.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError)):
            return f"no connection within {connect:g} s"
        if isinstance(cause, (requests.ReadTimeout, urllib3.exceptions.ReadTimeoutError)):
            return f"no answer within {read:g} s"
    for cause in causes:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror[0].lower() + cause.strerror[1:]
    return _describe(exc)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."


def _sleep(seconds: float, cancel: threading.Event | None) -> None:
    if cancel is None:
        time.sleep(seconds)
    elif cancel.wait(seconds):
        raise _Stopped()


def _join_url(base: str, bucket: str, object_name: str) -> str:
    return f"{base.rstrip('/')}/{bucket}/{quote(object_name, safe='/')}"


def probe_object(url: str, destination: Path, options: DownloadOptions | None = None) -> RemoteObject:
    """HEAD ``url`` and describe the object (size, checksums, generation, Range support)."""
    return _probe_object(url, destination, _Http(options or DownloadOptions()))


def _probe_object(url: str, destination: Path, http: _Http) -> RemoteObject:

    def attempt() -> RemoteObject:
        response = http.session.head(url, timeout=http.timeout, allow_redirects=True)
        _check_status(response, url)
        headers = response.headers
        stored_gzip = headers.get("x-goog-stored-content-encoding", "").lower() == "gzip" or \
            headers.get("Content-Encoding", "").lower() == "gzip"
        length = headers.get("x-goog-stored-content-length") if stored_gzip else None
        length = length or headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise ReleaseError(f"{url}: the server did not report the object's size (no Content-Length)")
        size = int(length)
        announced = headers.get("Accept-Ranges", "").lower()
        # Ranges matter up front only for parallel segments; resuming always tries a Range request.
        accepts_ranges = announced == "bytes" or (
            announced != "none" and size > http.options.segment_size and _answers_ranges(url, http))
        return RemoteObject(
            url=url,
            destination=destination,
            size=size,
            checksums=parse_goog_hash(headers.get("x-goog-hash")),
            generation=headers.get("x-goog-generation"),
            etag=headers.get("ETag"),
            accepts_ranges=accepts_ranges,
            stored_gzip=stored_gzip,
        )

    return http.with_retries(url, attempt)


def _answers_ranges(url: str, http: _Http) -> bool:
    """Ask for one byte: servers that do not announce ``Accept-Ranges`` may still honour Range."""
    with http.session.get(url, headers={"Range": "bytes=0-0"}, stream=True, timeout=http.timeout) as response:
        _check_status(response, url)
        return response.status_code == 206


def _safe_relative(relative: str, url: str) -> PurePosixPath:
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ReleaseError(f"{url}: refusing to write object {relative!r} outside the download directory")
    return path


def list_bucket_prefix(base: str, bucket: str, prefix: str, destination_dir: Path,
                       options: DownloadOptions | None = None) -> list[RemoteObject]:
    """Every object under ``gs://bucket/prefix``, via the JSON API listing, paged with ``pageToken``.

    ``base`` is ``https://storage.googleapis.com`` or a mirror implementing the same listing.
    Objects land under ``destination_dir`` by their name relative to ``prefix``.
    """
    return _list_bucket_prefix(base, bucket, prefix, destination_dir, _Http(options or DownloadOptions()))


def _list_bucket_prefix(base: str, bucket: str, prefix: str, destination_dir: Path,
                        http: _Http) -> list[RemoteObject]:
    listing_url = f"{base.rstrip('/')}/storage/v1/b/{quote(bucket, safe='')}/o"
    objects: list[RemoteObject] = []
    page_token: str | None = None
    for _page in range(http.options.max_listing_pages):
        params = {
            "prefix": prefix,
            "maxResults": str(http.options.listing_page_size),
            "fields": "items(name,size,md5Hash,crc32c,generation,etag,contentEncoding),nextPageToken",
        }
        if page_token:
            params["pageToken"] = page_token

        def fetch_page(params=params) -> dict:
            response = http.session.get(listing_url, params=params, timeout=http.timeout)
            _check_status(response, f"{listing_url}?prefix={prefix}")
            try:
                return response.json()
            except ValueError:
                raise ReleaseError(f"{listing_url}: the listing is not JSON (does this mirror implement "
                                   f"the Cloud Storage JSON API listing?)") from None

        page = http.with_retries(listing_url, fetch_page)
        for entry in page.get("items", []):
            name = entry.get("name", "")
            if name.endswith("/"):  # zero-byte "folder" placeholders
                continue
            objects.append(_listed_object(entry, base, bucket, prefix, destination_dir, listing_url))
        next_token = page.get("nextPageToken")
        if not next_token:
            return objects
        if next_token == page_token:
            raise ReleaseError(f"{listing_url}: the listing repeats page token {next_token!r}")
        page_token = next_token
    raise ReleaseError(f"{listing_url}: more than {http.options.max_listing_pages} listing pages under {prefix!r}")


def _listed_object(entry: dict, base: str, bucket: str, prefix: str, destination_dir: Path,
                   listing_url: str) -> RemoteObject:
    """One JSON API object resource (``size`` is a string; hashes are base64) as a RemoteObject."""
    name = entry["name"]
    relative = _safe_relative(name[len(prefix):], listing_url)
    try:
        return RemoteObject(
            url=_join_url(base, bucket, name),
            destination=destination_dir.joinpath(*relative.parts),
            size=int(entry["size"]),
            checksums=Checksums(
                md5=base64.b64decode(entry["md5Hash"], validate=True) if entry.get("md5Hash") else None,
                crc32c=_decode_crc32c(entry["crc32c"]) if entry.get("crc32c") else None,
            ),
            generation=str(entry["generation"]) if entry.get("generation") else None,
            etag=entry.get("etag"),
            stored_gzip=(entry.get("contentEncoding") or "").lower() == "gzip",
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise ReleaseError(f"{listing_url}: malformed listing entry for {name!r} ({_describe(exc)})") from None


# ---------------------------------------------------------------------------------------------
# Verification and atomic finalize
# ---------------------------------------------------------------------------------------------


def _verify_bytes_source(blocks: Iterable[bytes | memoryview], expected: Checksums, where: str) -> str:
    """Check the published checksums; return the SHA-256 (hex) for ``manifest.json``, computed in the same pass."""
    md5 = hashlib.md5(usedforsecurity=False) if expected.md5 is not None else None
    sha256 = hashlib.sha256()
    crc = 0
    for block in blocks:
        sha256.update(block)
        if md5 is not None:
            md5.update(block)
        if expected.crc32c is not None:
            crc = crc32c(block, crc)
    if md5 is not None and md5.digest() != expected.md5:
        raise ReleaseError(f"{where}: MD5 checksum mismatch (server {expected.md5.hex()}, "
                           f"downloaded {md5.hexdigest()})")
    if expected.crc32c is not None and crc != expected.crc32c:
        raise ReleaseError(f"{where}: CRC32C checksum mismatch (server {expected.crc32c:08x}, "
                           f"downloaded {crc:08x})")
    return sha256.hexdigest()


def _file_blocks(path: Path, block_size: int = 4 * MiB) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while block := handle.read(block_size):
            yield block


def _finalize(partial: Path, destination: Path, gunzip: bool) -> None:
    """Give verified data its final name; the rename is atomic, so a final name means verified."""
    if gunzip:
        unpacked = destination.with_name(destination.name + ".unpacking")
        try:
            with gzip.open(partial, "rb") as source, open(unpacked, "wb") as target:
                shutil.copyfileobj(source, target, 4 * MiB)
        except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
            unpacked.unlink(missing_ok=True)
            raise ReleaseError(f"{partial}: stored as gzip but does not decompress ({exc})") from exc
        os.replace(unpacked, destination)
        partial.unlink()
    else:
        os.replace(partial, destination)


# ---------------------------------------------------------------------------------------------
# Large files: segments, sidecar, resume
# ---------------------------------------------------------------------------------------------


@dataclass
class _Segment:
    start: int
    end: int  # exclusive
    done: int = 0

    @property
    def complete(self) -> bool:
        return self.start + self.done >= self.end


def _segments_cover(segments: list[_Segment], size: int) -> bool:
    """Whether recorded segments tile ``[0, size)`` with plausible progress."""
    position = 0
    for segment in segments:
        if segment.start != position or segment.end <= segment.start or \
                not 0 <= segment.done <= segment.end - segment.start:
            return False
        position = segment.end
    return position == size


class _PartialFile:
    """A large object being fetched into ``.part``, with per-segment progress in ``.part.json``."""

    def __init__(self, remote: RemoteObject, options: DownloadOptions):
        self.remote = remote
        self.options = options
        self.lock = threading.Lock()
        self.error: ReleaseError | None = None
        self.verify_failed = False
        self.segments: list[_Segment] = []
        self.resumed_bytes = 0
        self.restart_reason: str | None = None
        self._fresh = True
        self._last_save = 0.0
        self._read_progress()

    # -- state on disk -------------------------------------------------------------------------
    def _plan_segments(self) -> list[_Segment]:
        size = self.remote.size
        if not self.remote.accepts_ranges or size <= self.options.segment_size:
            return [_Segment(0, size)] if size else []
        count = math.ceil(size / self.options.segment_size)
        return [_Segment(i * self.options.segment_size, min(size, (i + 1) * self.options.segment_size))
                for i in range(count)]

    def _read_progress(self) -> None:
        """Take over an earlier attempt's progress if it is for the same content (reads only)."""
        partial, sidecar = self.remote.partial_path, self.remote.sidecar_path
        self.segments = self._plan_segments()
        if not (partial.exists() and sidecar.exists()):
            return
        try:
            recorded = json.loads(sidecar.read_text())
            segments = [_Segment(int(start), int(end), int(done)) for start, end, done in recorded["segments"]]
        except (OSError, ValueError, KeyError, TypeError):
            self.restart_reason = "its progress record is unreadable"
            return
        if recorded.get("verify_failed"):
            self.restart_reason = "the previous copy failed verification"
        elif not _segments_cover(segments, self.remote.size):
            self.restart_reason = "its progress record is inconsistent"
        elif not _same_content(recorded.get("object", {}), self.remote.identity()):
            self.restart_reason = "the object on the server changed"
        elif partial.stat().st_size != self.remote.size:
            self.restart_reason = "the partial file has the wrong size"
        else:
            self.segments = segments
            self.resumed_bytes = sum(segment.done for segment in segments)
            self._fresh = False

    def prepare(self) -> None:
        """Create the sparse ``.part`` file and its progress record, unless resuming."""
        if not self._fresh:
            return
        self.remote.destination.parent.mkdir(parents=True, exist_ok=True)
        with open(self.remote.partial_path, "wb") as handle:
            handle.truncate(self.remote.size)  # sparse: takes disk space only as it is written
        self._fresh = False
        self.save(force=True)

    def save(self, force: bool = False) -> None:
        """Record progress; throttled unless ``force``. Written atomically, so never half a file."""
        with self.lock:
            now = time.monotonic()
            if not force and now - self._last_save < self.options.progress_save_interval:
                return
            self._last_save = now
            record = {
                "format": "flatprint-partial-1",
                "url": self.remote.url,
                "object": self.remote.identity(),
                "segments": [[s.start, s.end, s.done] for s in self.segments],
                "verify_failed": self.verify_failed,
            }
            temporary = self.remote.sidecar_path.with_suffix(".tmp")
            temporary.write_text(json.dumps(record))
            os.replace(temporary, self.remote.sidecar_path)

    @property
    def remaining_bytes(self) -> int:
        return sum(segment.end - segment.start - segment.done for segment in self.segments)

    @property
    def all_segments_complete(self) -> bool:
        return all(segment.complete for segment in self.segments)

    # -- fetching ------------------------------------------------------------------------------
    def fetch_segment(self, segment: _Segment, http: _Http, cancel: threading.Event,
                      on_bytes: Callable[[int], None]) -> None:
        """Fetch the rest of ``segment``, resuming with Range after each failure (bounded)."""
        url, options = self.remote.url, self.options
        failures_in_a_row = attempts = 0
        while not segment.complete:
            if cancel.is_set() or self.error is not None:
                raise _Stopped()
            attempts += 1
            before = segment.done
            try:
                self._stream_once(segment, http, cancel, on_bytes)
            except (_TransientError, *_NETWORK_ERRORS) as exc:
                failures_in_a_row = 0 if segment.done > before else failures_in_a_row + 1
                if failures_in_a_row > options.max_retries or attempts >= options.max_attempts:
                    self.save(force=True)
                    raise ReleaseError(
                        f"{url}: giving up after {attempts} attempts, {self.remote.size - self.remaining_bytes} "
                        f"of {self.remote.size} bytes kept in {self.remote.partial_path} for the next run "
                        f"({_network_reason(exc, options)})") from exc
                self.save(force=True)
                _sleep(options.backoff_delay(max(1, failures_in_a_row)), cancel)
        self.save(force=True)

    def _stream_once(self, segment: _Segment, http: _Http, cancel: threading.Event,
                     on_bytes: Callable[[int], None]) -> None:
        url, size = self.remote.url, self.remote.size
        first = segment.start + segment.done
        last = segment.end - 1
        headers = {"Accept-Encoding": "gzip"} if self.remote.stored_gzip else {}
        whole_object = first == 0 and segment.end == size
        if not whole_object:
            headers["Range"] = f"bytes={first}-{last}"
        with http.session.get(url, headers=headers, stream=True, timeout=http.timeout) as response:
            _check_status(response, url)
            wanted = last - first + 1
            skip = 0  # bytes to drop from the front of the body
            if response.status_code == 206:
                _check_content_range(response.headers.get("Content-Range"), first, last, size, url)
                expected_body = wanted
            elif len(self.segments) == 1:
                skip, expected_body = first, size  # no Range support: the whole object comes again
            else:
                raise ReleaseError(f"{url}: the server ignored the Range request (HTTP 200 instead of 206)")
            announced = response.headers.get("Content-Length")
            if announced is not None and int(announced) != expected_body:
                raise ReleaseError(f"{url}: wrong length: the server sends {announced} bytes, "
                                   f"expected {expected_body}")
            received = 0
            with open(self.remote.partial_path, "r+b", buffering=0) as handle:
                handle.seek(first)
                for chunk in response.raw.stream(self.options.chunk_size, decode_content=False):
                    if skip:
                        dropped = min(skip, len(chunk))
                        chunk, skip = chunk[dropped:], skip - dropped
                        if not chunk:
                            continue
                    if received + len(chunk) > wanted:
                        raise ReleaseError(f"{url}: wrong length: the server sent more than the "
                                           f"{wanted} bytes requested at offset {first}")
                    try:
                        handle.write(chunk)  # unbuffered: on disk (page cache) before it is counted
                    except OSError as exc:
                        raise ReleaseError(f"{self.remote.partial_path}: cannot write ({exc})") from exc
                    received += len(chunk)
                    segment.done += len(chunk)
                    on_bytes(len(chunk))
                    self.save()
                    if cancel.is_set() or self.error is not None:
                        raise _Stopped()
            if received < wanted:
                raise _TransientError(f"connection closed after {received} of {wanted} bytes")

    def verify_and_finalize(self) -> str:
        """Check size and checksums; only then give the file its final name. Returns its SHA-256."""
        partial, remote = self.remote.partial_path, self.remote
        actual = partial.stat().st_size
        if actual != remote.size or not self.all_segments_complete:
            raise ReleaseError(f"{remote.url}: wrong length: {partial} holds {actual} bytes, "
                               f"the server says {remote.size}")
        try:
            sha256 = _verify_bytes_source(_file_blocks(partial), remote.checksums, remote.url)
        except ReleaseError as exc:
            self.verify_failed = True
            self.save(force=True)
            raise ReleaseError(f"{exc}; the data is kept in {partial} but not used, and the next run "
                               f"downloads it again") from None
        _finalize(partial, remote.destination, remote.stored_gzip)
        remote.sidecar_path.unlink(missing_ok=True)
        return sha256


def _check_content_range(value: str | None, first: int, last: int, size: int, url: str) -> None:
    """``Content-Range: bytes first-last/size`` must match what was asked and the known size."""
    try:
        unit, _, spec = (value or "").partition(" ")
        span, _, total = spec.partition("/")
        start_text, _, end_text = span.partition("-")
        start, end = int(start_text), int(end_text)
    except ValueError:
        raise ReleaseError(f"{url}: malformed Content-Range {value!r}") from None
    if unit != "bytes" or start != first:
        raise ReleaseError(f"{url}: the server answered range {value!r} to a request for bytes {first}-{last}")
    if total != "*" and int(total) != size:
        raise ReleaseError(f"{url}: wrong length: the object now has {total} bytes, expected {size} "
                           f"(it changed on the server?)")
    if end != last:
        raise ReleaseError(f"{url}: wrong length: the server answered range {value!r} to a request "
                           f"for bytes {first}-{last}")


# ---------------------------------------------------------------------------------------------
# Small objects (directory members): whole, in memory, verified before they touch the disk
# ---------------------------------------------------------------------------------------------


def _fetch_small_object(remote: RemoteObject, http: _Http, cancel: threading.Event) -> int:
    options = http.options
    headers = {"Accept-Encoding": "gzip"} if remote.stored_gzip else {}

    def attempt() -> tuple[bytes, bool]:
        if cancel.is_set():
            raise _Stopped()
        with http.session.get(remote.url, headers=headers, stream=True, timeout=http.timeout) as response:
            _check_status(response, remote.url)
            announced = response.headers.get("Content-Length")
            if announced is not None and int(announced) != remote.size:
                raise ReleaseError(f"{remote.url}: wrong length: the server sends {announced} bytes, "
                                   f"the listing says {remote.size}")
            body = bytearray()
            for chunk in response.raw.stream(options.chunk_size, decode_content=False):
                body += chunk
                if len(body) > remote.size:
                    raise ReleaseError(f"{remote.url}: wrong length: more than the {remote.size} bytes listed")
            if len(body) < remote.size:
                raise _TransientError(f"connection closed after {len(body)} of {remote.size} bytes")
            gzip_encoded = remote.stored_gzip or response.headers.get("Content-Encoding", "").lower() == "gzip"
            return bytes(body), gzip_encoded

    body, gzip_encoded = http.with_retries(remote.url, attempt, cancel)
    _verify_bytes_source([body], remote.checksums, remote.url)  # checksums cover the stored bytes
    content = body
    if gzip_encoded:
        try:
            content = gzip.decompress(body)
        except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
            raise ReleaseError(f"{remote.url}: stored as gzip but does not decompress ({exc})") from exc
    partial = remote.partial_path
    try:
        remote.destination.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(content)
        os.replace(partial, remote.destination)
    except OSError as exc:
        raise ReleaseError(f"{partial}: cannot write ({exc})") from exc
    return len(body)


# ---------------------------------------------------------------------------------------------
# Plan
# ---------------------------------------------------------------------------------------------


@dataclass
class ItemOutcome:
    """What happened to one manifest item. ``status``: planned, present, downloaded or failed."""

    name: str
    status: str = "planned"
    total_bytes: int | None = None
    fetched_bytes: int = 0
    files: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class DownloadReport:
    release: str
    destination: Path
    outcomes: dict[str, ItemOutcome]
    ingested_store: Path | None = None

    @property
    def failed(self) -> list[ItemOutcome]:
        return [outcome for outcome in self.outcomes.values() if outcome.status == "failed"]

    @property
    def fetched_bytes(self) -> int:
        return sum(outcome.fetched_bytes for outcome in self.outcomes.values())


@dataclass
class _PlannedItem:
    item: ReleaseItem
    large: list[RemoteObject] = field(default_factory=list)   # fetched in segments with a sidecar
    small: list[RemoteObject] = field(default_factory=list)   # fetched whole, in memory
    present_bytes: int = 0
    present_files: int = 0
    error: ReleaseError | None = None

    @property
    def remote_bytes(self) -> int:
        return sum(remote.size for remote in self.large) + sum(remote.size for remote in self.small)


def select_items(release: Release, tables: Iterable[str] | None = None, skeletons: Iterable[str] = (),
                 rois: bool = False) -> list[ReleaseItem]:
    """The manifest items for the chosen tables, skeleton variants and ROI volumes, validated."""
    chosen: list[ReleaseItem] = []
    table_names = release.names("tables") if tables is None else tuple(tables)
    for group, names in (("tables", table_names), ("skeletons", tuple(skeletons))):
        known = release.names(group)
        for name in names:
            if name not in known:
                raise ReleaseError(f"unknown {group[:-1]} {name!r} in release {release.key}; "
                                   f"choose from {', '.join(known)}")
            if release.item(name) not in chosen:
                chosen.append(release.item(name))
    if rois:
        chosen.extend(release.group("rois"))
    if not chosen:
        raise ReleaseError("nothing selected to download (give --tables, --skeletons or --rois)")
    return chosen


def _plan_item(item: ReleaseItem, dest: Path, base: str, http: _Http, options: DownloadOptions) -> _PlannedItem:
    planned = _PlannedItem(item)
    try:
        if item.kind == "file":
            destination = dest / item.local_path
            if destination.exists():  # a final name is only ever given to verified data
                planned.present_bytes, planned.present_files = destination.stat().st_size, 1
            else:
                planned.large.append(_probe_object(item.url_for(base), destination, http))
        else:
            remotes = _list_bucket_prefix(base, item.bucket, item.object_path, dest / item.local_path, http)
            for remote in remotes:
                if remote.destination.exists():
                    planned.present_files += 1
                    planned.present_bytes += remote.destination.stat().st_size
                elif remote.size > options.small_file_limit:
                    planned.large.append(remote)
                else:
                    planned.small.append(remote)
            if not remotes:
                raise ReleaseError(f"{item.url_for(base)}: the listing is empty")
    except ReleaseError as exc:
        planned.error = exc
    return planned


def _format_bytes(count: int | None) -> str:
    if count is None:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def _print_plan(console: Console, release: Release, dest: Path, planned: list[_PlannedItem],
                resumed_bytes: dict[str, int], base: str) -> tuple[int, int]:
    """Print what will be fetched; return (bytes selected in all, bytes still to fetch)."""
    table = Table(title=f"flatprint download {release.key} -> {dest}")
    for column in ("item", "size", "published", "status", "source"):
        table.add_column(column, overflow="fold")
    selected = to_fetch = 0
    for entry in planned:
        item = entry.item
        published = "~" + _format_bytes(item.published_size) if item.published_size else "-"
        source = item.url_for(base) + (f" [yellow]({item.note})[/yellow]" if item.note else "")
        if not item.verified:
            source += " [yellow](location unverified)[/yellow]"
        if entry.error is not None:  # the reason is printed below the table, one line per file
            table.add_row(item.name, "?", published, "[red]failed[/red] (see below)", source)
            continue
        resumed = resumed_bytes.get(item.name, 0)
        selected += entry.remote_bytes + entry.present_bytes
        to_fetch += entry.remote_bytes - resumed
        if item.kind == "directory":
            files = len(entry.large) + len(entry.small) + entry.present_files
            status = f"{files} files, {entry.present_files} present"
        elif entry.present_files:
            status = "present"
        elif resumed:
            status = f"resume at {100 * resumed / max(1, entry.remote_bytes):.0f}%"
        else:
            status = "new"
        table.add_row(item.name, _format_bytes(entry.remote_bytes + entry.present_bytes), published,
                      status, source)
    console.print(table)
    return selected, to_fetch


def _check_disk_space(dest: Path, selected: int, needed: int, console: Console) -> None:
    existing = next(path for path in (dest, *dest.parents) if path.exists())  # DEST may not exist yet
    free = shutil.disk_usage(existing).free
    console.print(f"Selected {_format_bytes(selected)}; to download [bold]{_format_bytes(needed)}[/bold]; "
                  f"free space in {dest}: {_format_bytes(free)}")
    if needed > free:
        raise ReleaseError(f"not enough free disk space in {dest}: {_format_bytes(needed)} to download, "
                           f"{_format_bytes(free)} free")


# ---------------------------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------------------------


class _Run:
    """Schedules segment, verify and small-object tasks on two bounded pools; main thread waits."""

    POLL_SECONDS = 0.1  # the main thread wakes this often, so Ctrl-C is handled promptly
    ERRORS_SHOWN = 20   # per item, in the final report

    def __init__(self, planned: list[_PlannedItem], partials: dict[str, list[_PartialFile]],
                 outcomes: dict[str, ItemOutcome], http: _Http, options: DownloadOptions,
                 progress: Progress):
        self.planned = planned
        self.partials = partials
        self.outcomes = outcomes
        self.http = http
        self.options = options
        self.progress = progress
        self.cancel = threading.Event()
        self.pending: dict[Future, Callable[[Future], None]] = {}
        self.unfinished: dict[str, int] = {}  # item name -> objects not yet finalized or failed
        self.counter_lock = threading.Lock()
        self.tasks: dict[str, TaskID] = {}
        self.total_task: TaskID | None = None
        self.failures: dict[str, int] = {}  # item name -> objects that failed
        self.finalized: list[tuple[RemoteObject, str]] = []  # large objects verified this run, with SHA-256
        self.small_queue: Iterator[tuple[str, RemoteObject]] = (
            (entry.item.name, remote) for entry in planned if entry.error is None for remote in entry.small)

    def _count_bytes(self, item_name: str) -> Callable[[int], None]:
        task = self.tasks[item_name]

        def on_bytes(count: int) -> None:
            with self.counter_lock:
                self.outcomes[item_name].fetched_bytes += count
            self.progress.advance(task, count)
            self.progress.advance(self.total_task, count)
        return on_bytes

    def _object_finished(self, item_name: str, error: BaseException | None) -> None:
        outcome = self.outcomes[item_name]
        if error is not None:
            outcome.status = "failed"
            self.failures[item_name] = self.failures.get(item_name, 0) + 1
            if len(outcome.errors) < self.ERRORS_SHOWN:
                outcome.errors.append(str(error))
            if self.failures[item_name] == self.options.max_failed_files:
                outcome.errors.append(f"stopped after {self.options.max_failed_files} failed files; "
                                      f"re-run to continue")
        else:
            outcome.files += 1
        self.unfinished[item_name] -= 1
        if self.unfinished[item_name] == 0 and outcome.status != "failed":
            outcome.status = "downloaded"

    def _next_small(self) -> tuple[str, RemoteObject] | None:
        """The next directory member to fetch, skipping those of a directory that failed too often."""
        for item_name, remote in self.small_queue:
            if self.failures.get(item_name, 0) < self.options.max_failed_files:
                return item_name, remote
            self.unfinished[item_name] -= 1  # given up: the item is already reported as failed
        return None

    def run(self) -> None:
        large_pool = ThreadPoolExecutor(self.options.workers, thread_name_prefix="flatprint-segment")
        small_pool = ThreadPoolExecutor(self.options.directory_workers, thread_name_prefix="flatprint-object")
        # At most this many directory members are queued at once, so 10^5 skeletons do not become
        # 10^5 futures up front.
        small_limit = 4 * self.options.directory_workers
        small_futures: set[Future] = set()
        try:
            self._submit_large(large_pool)
            while True:
                while len(small_futures) < small_limit and (next_small := self._next_small()) is not None:
                    small_futures.add(self._submit_small(small_pool, *next_small))
                if not self.pending:
                    break
                done, _ = wait(list(self.pending), timeout=self.POLL_SECONDS, return_when=FIRST_COMPLETED)
                for future in done:
                    small_futures.discard(future)
                    self.pending.pop(future)(future)
        except BaseException:
            # Ctrl-C (or a bug): stop the workers at their next chunk, keep every partial's progress.
            self.cancel.set()
            wait(list(self.pending))
            raise
        finally:
            large_pool.shutdown(wait=True)
            small_pool.shutdown(wait=True)
            for files in self.partials.values():
                for partial in files:
                    if partial.remote.sidecar_path.exists():
                        partial.save(force=True)

    def _submit_large(self, pool: ThreadPoolExecutor) -> None:
        for item_name, files in self.partials.items():
            on_bytes = self._count_bytes(item_name)
            for partial in files:
                open_segments = [segment for segment in partial.segments if not segment.complete]
                if not open_segments:
                    self._submit_verify(pool, item_name, partial)
                    continue
                remaining = [len(open_segments)]
                for segment in open_segments:
                    future = pool.submit(partial.fetch_segment, segment, self.http, self.cancel, on_bytes)
                    self.pending[future] = self._segment_callback(pool, item_name, partial, remaining)

    def _segment_callback(self, pool, item_name: str, partial: _PartialFile, remaining: list[int]):
        def on_done(future: Future) -> None:
            remaining[0] -= 1
            error = future.exception()
            if isinstance(error, _Stopped):
                error = None
            if error is not None and partial.error is None:
                partial.error = error if isinstance(error, ReleaseError) else ReleaseError(
                    f"{partial.remote.url}: {_describe(error)}")
                partial.save(force=True)
            if remaining[0] == 0:
                if partial.error is not None:
                    self._object_finished(item_name, partial.error)
                elif partial.all_segments_complete and not self.cancel.is_set():
                    self._submit_verify(pool, item_name, partial)
        return on_done

    def _submit_verify(self, pool, item_name: str, partial: _PartialFile) -> None:
        def on_done(future: Future) -> None:
            error = future.exception()
            if error is not None and not isinstance(error, ReleaseError):
                error = ReleaseError(f"{partial.remote.partial_path}: verification failed ({_describe(error)})")
            self._object_finished(item_name, error)

        def task() -> None:
            # Recorded by the worker, not the callback: after Ctrl-C callbacks no longer run.
            self.finalized.append((partial.remote, partial.verify_and_finalize()))
        self.pending[pool.submit(task)] = on_done

    def _submit_small(self, pool, item_name: str, remote: RemoteObject) -> Future:
        on_bytes = self._count_bytes(item_name)

        def task() -> None:
            on_bytes(_fetch_small_object(remote, self.http, self.cancel))

        def on_done(future: Future) -> None:
            error = future.exception()
            if isinstance(error, _Stopped):
                return
            if error is not None and not isinstance(error, ReleaseError):
                error = ReleaseError(f"{remote.url}: {_describe(error)}")
            self._object_finished(item_name, error)
        future = pool.submit(task)
        self.pending[future] = on_done
        return future


def _make_progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def download_release(
    dest: str | os.PathLike,
    release: str | Release = DEFAULT_RELEASE,
    tables: Iterable[str] | None = None,
    skeletons: Iterable[str] = (),
    rois: bool = False,
    mirror: str | None = None,
    ingest: str | os.PathLike | None = None,
    options: DownloadOptions | None = None,
    console: Console | None = None,
    dry_run: bool = False,
) -> DownloadReport:
    """Download the selected parts of ``release`` into ``dest``, resuming any earlier attempt.

    ``tables=None`` means all seven flat-connectome tables; ``skeletons`` names skeleton variants
    (``swc``, ``precomputed``, ...); ``rois`` adds the ROI volumes. ``mirror`` replaces
    ``https://storage.googleapis.com`` in every URL. With ``ingest``, a store is built at that
    path once everything is present. Raises ReleaseError listing every item that failed (the
    others are complete); the report is attached to it as ``.report``.
    """
    options = options or DownloadOptions()
    console = console or Console(stderr=True)
    release = get_release(release) if isinstance(release, str) else release
    base = _normalize_mirror(mirror)
    dest = Path(dest)
    items = select_items(release, tables, skeletons, rois)
    if ingest is not None:  # fail now rather than after hours of downloading
        missing = [item.name for item in release.group("tables")
                   if item not in items and not (dest / item.local_path).exists()]
        if missing:
            raise ReleaseError(f"--ingest needs every table, but these are neither selected nor in {dest}: "
                               f"{', '.join(missing)}")
    if dry_run:  # writes nothing, not even DEST
        return _download(dest, release, items, base, None, options, console, dry_run=True)
    dest.mkdir(parents=True, exist_ok=True)
    with _DirectoryLock(dest):
        return _download(dest, release, items, base, ingest, options, console, dry_run=False)


def _download(dest: Path, release: Release, items: list[ReleaseItem], base: str,
              ingest: str | os.PathLike | None, options: DownloadOptions, console: Console,
              dry_run: bool) -> DownloadReport:
    http = _Http(options)
    for item in items:
        if item.kind == "directory":  # large directories take a while to list: say what is going on
            console.print(f"Listing {item.url_for(base)} ...")
    # All items are resolved at once, so an unreachable server costs one timeout, not one per item.
    with ThreadPoolExecutor(min(len(items), 16), thread_name_prefix="flatprint-plan") as pool:
        planned = list(pool.map(lambda item: _plan_item(item, dest, base, http, options), items))
    if all(entry.error is not None for entry in planned):  # nothing to plan: no table, no "Selected 0 B"
        raise _failure_error(DownloadReport(release.key, dest, {
            entry.item.name: ItemOutcome(entry.item.name, status="failed", errors=[str(entry.error)])
            for entry in planned}), http, base)
    partials: dict[str, list[_PartialFile]] = {}
    outcomes: dict[str, ItemOutcome] = {}
    for entry in planned:
        name = entry.item.name
        outcome = outcomes[name] = ItemOutcome(name, files=entry.present_files)
        if entry.error is not None:
            outcome.status, outcome.errors = "failed", [str(entry.error)]
            continue
        outcome.total_bytes = entry.remote_bytes + entry.present_bytes
        if not entry.large and not entry.small:
            outcome.status = "present"
        partials[name] = [_PartialFile(remote, options) for remote in entry.large]
    resumed = {name: sum(p.resumed_bytes for p in files) for name, files in partials.items()}
    selected, to_fetch = _print_plan(console, release, dest, planned, resumed, base)
    for files in partials.values():
        for partial in files:
            if partial.restart_reason:
                console.print(f"[yellow]{partial.remote.partial_path}: starting over "
                              f"({partial.restart_reason})[/yellow]")
    report = DownloadReport(release.key, dest, outcomes)
    _check_disk_space(dest, selected, to_fetch, console)
    if dry_run:
        return report
    for files in partials.values():
        for partial in files:
            partial.prepare()

    work = [entry for entry in planned if entry.error is None and (entry.large or entry.small)]
    if work:
        progress = _make_progress(console)
        run = _Run(work, {e.item.name: partials[e.item.name] for e in work}, outcomes, http, options, progress)
        with progress:
            run.total_task = progress.add_task("total", total=to_fetch)
            for entry in work:
                name = entry.item.name
                run.tasks[name] = progress.add_task(
                    name, total=entry.remote_bytes, completed=resumed.get(name, 0))
                run.unfinished[name] = len(entry.large) + len(entry.small)
            try:
                run.run()
            finally:  # also after Ctrl-C: what was finalized stays recorded
                _record_in_release_manifest(dest, release, run.finalized)

    if report.failed:
        raise _failure_error(report, http, base)
    console.print(f"[green]Release {release.key} complete in {dest}[/green] "
                  f"({_format_bytes(report.fetched_bytes)} downloaded)")
    if ingest is not None:
        from flatprint.ingest import ingest_release  # imported late: ingest pulls in heavy modules

        ingest_release(dest, Path(ingest), force=False)
        report.ingested_store = Path(ingest)
    return report


def _failure_error(report: DownloadReport, http: _Http, base: str) -> ReleaseError:
    """One line per failed file (item name, URL, reason), the report attached as ``.report``."""
    failed = report.failed
    total = len(report.outcomes)
    if len(failed) == total:
        lines = [f"{'the item' if total == 1 else f'all {total} items'} failed:"]
    else:
        lines = [f"{len(failed)} of {total} items failed (the others are complete):"]
    lines += [f"  {outcome.name}: {error}" for outcome in failed for error in outcome.errors]
    if not http.answered:
        lines.append(f"Nothing answered at {base}: check the network connection"
                     f"{' and --mirror' if base != GCS_HTTPS_BASE else ''}, then run the same command again.")
    error = ReleaseError("\n".join(lines))
    error.report = report
    return error


def _record_in_release_manifest(dest: Path, release: Release, finalized: list[tuple[RemoteObject, str]]) -> None:
    """Add the verified files directly under ``DEST`` (the tables) to ``DEST/manifest.json``.

    Ingest re-checks ``bytes`` and ``sha256`` from it, which catches files damaged on disk later.
    """
    entries = [(remote, sha256) for remote, sha256 in finalized
               if remote.destination.parent == dest and not remote.stored_gzip]
    if not entries:
        return
    path = dest / "manifest.json"
    try:
        manifest = json.loads(path.read_text()) if path.exists() else {}
        files = {entry["file"]: entry for entry in manifest.get("files", [])}
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        raise ReleaseError(f"{path}: not a valid release manifest; move it away and re-run") from None
    for remote, sha256 in entries:
        files[remote.destination.name] = {
            "file": remote.destination.name,
            "bytes": remote.size,
            "sha256": sha256,
            "md5": remote.checksums.md5.hex() if remote.checksums.md5 is not None else None,
            "crc32c": f"{remote.checksums.crc32c:08x}" if remote.checksums.crc32c is not None else None,
            "url": remote.url,
        }
    manifest.setdefault("release", release.key)
    manifest["files"] = sorted(files.values(), key=lambda entry: entry["file"])
    temporary = path.with_name(".manifest.json.tmp")
    temporary.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(temporary, path)


class _DirectoryLock:
    """An exclusive lock on ``DEST``, so two runs never write the same partial files."""

    def __init__(self, dest: Path):
        self.path = dest / ".flatprint-download.lock"
        self.handle = None

    def __enter__(self) -> _DirectoryLock:
        try:
            import fcntl
        except ImportError:  # not POSIX: run unlocked
            return self
        self.handle = open(self.path, "a")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.close()
            raise ReleaseError(f"{self.path}: another flatprint download is writing to {self.path.parent}") from None
        return self

    def __exit__(self, *exc_info) -> None:
        if self.handle is not None:
            self.handle.close()  # closing releases the lock


def _normalize_mirror(mirror: str | None) -> str:
    if not mirror:
        return GCS_HTTPS_BASE
    parts = urlsplit(mirror)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ReleaseError(f"--mirror must be an http(s) URL such as http://host:port/path, not {mirror!r}")
    return mirror.rstrip("/")


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _split_names(_ctx, _param, values) -> tuple[str, ...] | None:
    if values is None:
        return None
    names: list[str] = []
    for value in (values if isinstance(values, tuple) else (values,)):
        names += [name.strip() for name in value.split(",") if name.strip() and name.strip() != "none"]
    return tuple(names)


@click.command("download")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--release", "release_key", default=DEFAULT_RELEASE, show_default=True,
              help="Release to download (dataset:tag).")
@click.option("--tables", default=None, callback=_split_names, metavar="NAMES",
              help="Comma-separated tables: annotations, neurotransmitters, stats, weights, syn-points, "
                   "syn-partners, tbar-nt (default: all seven; 'none' for none).")
@click.option("--skeletons", multiple=True, callback=_split_names, metavar="VARIANT",
              help="Skeleton directories: swc, precomputed, mirrored-swc, mirrored-precomputed, "
                   "unisex-template (repeat or comma-separate).")
@click.option("--rois", is_flag=True, help="Also download the ROI volumes (neuroglancer precomputed).")
@click.option("--mirror", metavar="URL",
              help="Replace https://storage.googleapis.com in every URL (a local copy of the bucket, a cache).")
@click.option("--ingest", "ingest_store", type=click.Path(path_type=Path), metavar="STORE",
              help="Build a flatprint store at STORE once the download is complete.")
@click.option("--workers", default=DownloadOptions.workers, show_default=True, type=click.IntRange(1, 64),
              help="Parallel ranged requests for large files.")
@click.option("--directory-workers", default=DownloadOptions.directory_workers, show_default=True,
              type=click.IntRange(1, 128), help="Parallel requests for files of a directory.")
@click.option("--dry-run", is_flag=True, help="Print the plan and the space needed, download nothing.")
def download_command(dest: Path, release_key: str, tables, skeletons, rois: bool, mirror: str | None,
                     ingest_store: Path | None, workers: int, directory_workers: int, dry_run: bool) -> None:
    """Download a release (tables, skeletons, ROI volumes) into DEST; re-run to resume."""
    options = DownloadOptions(workers=workers, directory_workers=directory_workers)
    try:
        download_release(dest, release_key, tables=tables, skeletons=skeletons or (), rois=rois,
                         mirror=mirror, ingest=ingest_store, options=options, dry_run=dry_run)
    except ReleaseError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        click.echo("\nInterrupted; partial files are kept. Run the same command again to resume.", err=True)
        raise SystemExit(130) from None
