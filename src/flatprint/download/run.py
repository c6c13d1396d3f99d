"""The run: fetch, verify and finalize every planned file on bounded pools; :func:`download_release`."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from urllib.parse import urlsplit

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

from flatprint.download.partial import _fetch_small_object, _PartialFile
from flatprint.download.plan import (
    DownloadReport,
    ItemOutcome,
    _check_disk_space,
    _format_bytes,
    _plan_item,
    _PlannedItem,
    _print_plan,
    select_items,
)
from flatprint.download.remote import DownloadOptions, RemoteObject, _describe, _Http, _Stopped
from flatprint.errors import ReleaseError
from flatprint.release.manifest import (
    DEFAULT_RELEASE,
    GCS_HTTPS_BASE,
    Release,
    ReleaseItem,
    get_release,
)


class _Run:
    """Schedules segment, verify and small-object tasks on two bounded pools; main thread waits."""

    POLL_SECONDS = 0.1  # the main thread wakes this often, so Ctrl-C is handled promptly
    ERRORS_SHOWN = 20  # per item, in the final report

    def __init__(
        self,
        planned: list[_PlannedItem],
        partials: dict[str, list[_PartialFile]],
        outcomes: dict[str, ItemOutcome],
        http: _Http,
        options: DownloadOptions,
        progress: Progress,
    ):
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
            (entry.item.name, remote) for entry in planned if entry.error is None for remote in entry.small
        )

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
                outcome.errors.append(f"stopped after {self.options.max_failed_files} failed files; re-run to continue")
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
                partial.error = (
                    error
                    if isinstance(error, ReleaseError)
                    else ReleaseError(f"{partial.remote.url}: {_describe(error)}")
                )
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
    options: DownloadOptions | None = None,
    console: Console | None = None,
    dry_run: bool = False,
) -> DownloadReport:
    """Download the selected parts of ``release`` into ``dest``, resuming any earlier attempt.

    ``tables=None`` means all seven flat-connectome tables; ``skeletons`` names skeleton variants
    (``swc``, ``precomputed``, ...); ``rois`` adds the ROI volumes. ``mirror`` replaces
    ``https://storage.googleapis.com`` in every URL. Raises ReleaseError listing every item that failed (the
    others are complete); the report is attached to it as ``.report``.
    """
    options = options or DownloadOptions()
    console = console or Console(stderr=True)
    release = get_release(release) if isinstance(release, str) else release
    base = _normalize_mirror(mirror)
    dest = Path(dest)
    items = select_items(release, tables, skeletons, rois)
    if dry_run:  # writes nothing, not even DEST
        return _download(dest, release, items, base, options, console, dry_run=True)
    dest.mkdir(parents=True, exist_ok=True)
    with _DirectoryLock(dest):
        return _download(dest, release, items, base, options, console, dry_run=False)


def _download(
    dest: Path,
    release: Release,
    items: list[ReleaseItem],
    base: str,
    options: DownloadOptions,
    console: Console,
    dry_run: bool,
) -> DownloadReport:
    http = _Http(options)
    for item in items:
        if item.kind == "directory":  # large directories take a while to list: say what is going on
            console.print(f"Listing {item.url_for(base)} ...")
    # All items are resolved at once, so an unreachable server costs one timeout, not one per item.
    with ThreadPoolExecutor(min(len(items), 16), thread_name_prefix="flatprint-plan") as pool:
        planned = list(pool.map(lambda item: _plan_item(item, dest, base, http, options), items))
    if all(entry.error is not None for entry in planned):  # nothing to plan: no table, no "Selected 0 B"
        raise _failure_error(
            DownloadReport(
                release.key,
                dest,
                {
                    entry.item.name: ItemOutcome(entry.item.name, status="failed", errors=[str(entry.error)])
                    for entry in planned
                },
            ),
            http,
            base,
        )
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
                console.print(
                    f"[yellow]{partial.remote.partial_path}: starting over ({partial.restart_reason})[/yellow]"
                )
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
                run.tasks[name] = progress.add_task(name, total=entry.remote_bytes, completed=resumed.get(name, 0))
                run.unfinished[name] = len(entry.large) + len(entry.small)
            try:
                run.run()
            finally:  # also after Ctrl-C: what was finalized stays recorded
                _record_in_release_manifest(dest, release, run.finalized)

    if report.failed:
        raise _failure_error(report, http, base)
    console.print(
        f"[green]Release {release.key} complete in {dest}[/green] ({_format_bytes(report.fetched_bytes)} downloaded)"
    )
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
        lines.append(
            f"Nothing answered at {base}: check the network connection"
            f"{' and --mirror' if base != GCS_HTTPS_BASE else ''}, then run the same command again."
        )
    error = ReleaseError("\n".join(lines))
    error.report = report
    return error


def _record_in_release_manifest(dest: Path, release: Release, finalized: list[tuple[RemoteObject, str]]) -> None:
    """Add the verified files directly under ``DEST`` (the tables) to ``DEST/manifest.json``.

    Ingest re-checks ``bytes`` and ``sha256`` from it, which catches files damaged on disk later.
    """
    entries = [
        (remote, sha256) for remote, sha256 in finalized if remote.destination.parent == dest and not remote.stored_gzip
    ]
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
            import fcntl  # noqa: PLC0415 - POSIX-only module; the lock is skipped where it is missing
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
