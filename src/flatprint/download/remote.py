"""The server side: one object to fetch, download options, HTTP with bounded retries, HEAD probes and
bucket listings."""

from __future__ import annotations

import base64
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.client import RemoteDisconnected
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import requests
import urllib3

from flatprint.download.checksums import Checksums, MiB, _decode_crc32c, parse_goog_hash
from flatprint.errors import ReleaseError


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
    known = [
        key for key in ("md5", "crc32c", "generation") if recorded.get(key) is not None and current[key] is not None
    ]
    if not any(key in known for key in ("md5", "crc32c")) and recorded.get("etag") and current["etag"]:
        known.append("etag")
    return all(recorded[key] == current[key] for key in known)


# ---------------------------------------------------------------------------------------------
# Options, HTTP with bounded retries
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadOptions:
    """Tuning knobs; the defaults suit the public bucket over an ordinary connection."""

    workers: int = 4  # parallel ranged requests for large files
    directory_workers: int = 16  # parallel small-file requests for directories
    segment_size: int = 64 * MiB  # a large file is fetched in segments of this size
    small_file_limit: int = 8 * MiB  # directory objects up to this size are fetched in memory
    chunk_size: int = 1 * MiB  # read/write unit while streaming
    max_retries: int = 6  # consecutive failed attempts (without progress) before giving up
    max_attempts: int = 100  # total attempts per segment or object, progress or not
    backoff_base: float = 0.5  # seconds before the first retry; doubles each time
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
    max_failed_files: int = 100  # a directory with this many failed files is given up (re-run resumes)

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
_NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
    ConnectionError,
    TimeoutError,
)


def _check_status(response: requests.Response, url: str) -> None:
    status = response.status_code
    if status in (200, 206):
        return
    if status in _TRANSIENT_STATUS:
        raise _TransientError(f"HTTP {status}")
    reason = {
        404: "not found",
        410: "gone",
        401: "authentication required",
        403: "access denied",
        416: "requested range not satisfiable (the object is shorter than expected)",
    }.get(status, response.reason or "unexpected status")
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
                        raise ReleaseError(
                            f"{url}: {_network_reason(exc, self.options, first=True)} "
                            f"({_attempts(failures)} in {waited:.0f} s)"
                        ) from exc
                elif failures > self.options.max_retries:
                    raise ReleaseError(
                        f"{url}: giving up after {_attempts(failures)} ({_network_reason(exc, self.options)})"
                    ) from exc
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
        stored_gzip = (
            headers.get("x-goog-stored-content-encoding", "").lower() == "gzip"
            or headers.get("Content-Encoding", "").lower() == "gzip"
        )
        length = headers.get("x-goog-stored-content-length") if stored_gzip else None
        length = length or headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise ReleaseError(f"{url}: the server did not report the object's size (no Content-Length)")
        size = int(length)
        announced = headers.get("Accept-Ranges", "").lower()
        # Ranges matter up front only for parallel segments; resuming always tries a Range request.
        accepts_ranges = announced == "bytes" or (
            announced != "none" and size > http.options.segment_size and _answers_ranges(url, http)
        )
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


def list_bucket_prefix(
    base: str, bucket: str, prefix: str, destination_dir: Path, options: DownloadOptions | None = None
) -> list[RemoteObject]:
    """Every object under ``gs://bucket/prefix``, via the JSON API listing, paged with ``pageToken``.

    ``base`` is ``https://storage.googleapis.com`` or a mirror implementing the same listing.
    Objects land under ``destination_dir`` by their name relative to ``prefix``.
    """
    return _list_bucket_prefix(base, bucket, prefix, destination_dir, _Http(options or DownloadOptions()))


def _list_bucket_prefix(base: str, bucket: str, prefix: str, destination_dir: Path, http: _Http) -> list[RemoteObject]:
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
                raise ReleaseError(
                    f"{listing_url}: the listing is not JSON (does this mirror implement "
                    f"the Cloud Storage JSON API listing?)"
                ) from None

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


def _listed_object(
    entry: dict, base: str, bucket: str, prefix: str, destination_dir: Path, listing_url: str
) -> RemoteObject:
    """One JSON API object resource (``size`` is a string; hashes are base64) as a RemoteObject."""
    name = entry["name"]
    relative = _safe_relative(name[len(prefix) :], listing_url)
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
