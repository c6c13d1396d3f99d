"""Writing what is fetched: large files in resumable ``.part`` segments with a JSON sidecar, small
objects whole in memory, and the atomic rename that gives verified data its final name."""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flatprint.download.checksums import MiB, _file_blocks, _verify_bytes_source
from flatprint.download.remote import (
    _NETWORK_ERRORS,
    DownloadOptions,
    RemoteObject,
    _check_status,
    _Http,
    _network_reason,
    _same_content,
    _sleep,
    _Stopped,
    _TransientError,
)
from flatprint.errors import ReleaseError


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
        if (
            segment.start != position
            or segment.end <= segment.start
            or not 0 <= segment.done <= segment.end - segment.start
        ):
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
        return [
            _Segment(i * self.options.segment_size, min(size, (i + 1) * self.options.segment_size))
            for i in range(count)
        ]

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
    def fetch_segment(
        self, segment: _Segment, http: _Http, cancel: threading.Event, on_bytes: Callable[[int], None]
    ) -> None:
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
                        f"({_network_reason(exc, options)})"
                    ) from exc
                self.save(force=True)
                _sleep(options.backoff_delay(max(1, failures_in_a_row)), cancel)
        self.save(force=True)

    def _stream_once(
        self, segment: _Segment, http: _Http, cancel: threading.Event, on_bytes: Callable[[int], None]
    ) -> None:
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
                raise ReleaseError(f"{url}: wrong length: the server sends {announced} bytes, expected {expected_body}")
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
                        raise ReleaseError(
                            f"{url}: wrong length: the server sent more than the "
                            f"{wanted} bytes requested at offset {first}"
                        )
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
            raise ReleaseError(
                f"{remote.url}: wrong length: {partial} holds {actual} bytes, the server says {remote.size}"
            )
        try:
            sha256 = _verify_bytes_source(_file_blocks(partial), remote.checksums, remote.url)
        except ReleaseError as exc:
            self.verify_failed = True
            self.save(force=True)
            raise ReleaseError(
                f"{exc}; the data is kept in {partial} but not used, and the next run downloads it again"
            ) from None
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
        raise ReleaseError(
            f"{url}: wrong length: the object now has {total} bytes, expected {size} (it changed on the server?)"
        )
    if end != last:
        raise ReleaseError(
            f"{url}: wrong length: the server answered range {value!r} to a request for bytes {first}-{last}"
        )


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
                raise ReleaseError(
                    f"{remote.url}: wrong length: the server sends {announced} bytes, the listing says {remote.size}"
                )
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
