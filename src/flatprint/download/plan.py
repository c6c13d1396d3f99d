"""The plan: which items, what each one costs, what is already present, and whether it fits on disk."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from flatprint.download.remote import DownloadOptions, RemoteObject, _Http, _list_bucket_prefix, _probe_object
from flatprint.errors import ReleaseError
from flatprint.release.manifest import (
    DEFAULT_RELEASE,
    Release,
    ReleaseItem,
    get_release,
)


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

    @property
    def failed(self) -> list[ItemOutcome]:
        return [outcome for outcome in self.outcomes.values() if outcome.status == "failed"]

    @property
    def fetched_bytes(self) -> int:
        return sum(outcome.fetched_bytes for outcome in self.outcomes.values())


@dataclass
class _PlannedItem:
    item: ReleaseItem
    large: list[RemoteObject] = field(default_factory=list)  # fetched in segments with a sidecar
    small: list[RemoteObject] = field(default_factory=list)  # fetched whole, in memory
    present_bytes: int = 0
    present_files: int = 0
    error: ReleaseError | None = None

    @property
    def remote_bytes(self) -> int:
        return sum(remote.size for remote in self.large) + sum(remote.size for remote in self.small)


def select_items(
    release: Release, tables: Iterable[str] | None = None, skeletons: Iterable[str] = (), rois: bool = False
) -> list[ReleaseItem]:
    """The manifest items for the chosen tables, skeleton variants and ROI volumes, validated."""
    chosen: list[ReleaseItem] = []
    table_names = release.names("tables") if tables is None else tuple(tables)
    for group, names in (("tables", table_names), ("skeletons", tuple(skeletons))):
        known = release.names(group)
        for name in names:
            if name not in known:
                raise ReleaseError(
                    f"unknown {group[:-1]} {name!r} in release {release.key}; choose from {', '.join(known)}"
                )
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


def _print_plan(
    console: Console,
    release: Release,
    dest: Path,
    planned: list[_PlannedItem],
    resumed_bytes: dict[str, int],
    base: str,
) -> tuple[int, int]:
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
        table.add_row(item.name, _format_bytes(entry.remote_bytes + entry.present_bytes), published, status, source)
    console.print(table)
    return selected, to_fetch


def _check_disk_space(dest: Path, selected: int, needed: int, console: Console) -> None:
    existing = next(path for path in (dest, *dest.parents) if path.exists())  # DEST may not exist yet
    free = shutil.disk_usage(existing).free
    console.print(
        f"Selected {_format_bytes(selected)}; to download [bold]{_format_bytes(needed)}[/bold]; "
        f"free space in {dest}: {_format_bytes(free)}"
    )
    if needed > free:
        raise ReleaseError(
            f"not enough free disk space in {dest}: {_format_bytes(needed)} to download, {_format_bytes(free)} free"
        )


def missing_tables(
    dest: str | os.PathLike, release: str | Release = DEFAULT_RELEASE, tables: Iterable[str] | None = None
) -> list[str]:
    """The release's tables that will be neither downloaded (``tables``, as :func:`select_items`
    takes it) nor already in ``dest``: a download that ingest follows needs none missing, and this
    says so before hours of downloading."""
    release = get_release(release) if isinstance(release, str) else release
    chosen = release.names("tables") if tables is None else tuple(tables)
    return [
        item.name
        for item in release.group("tables")
        if item.name not in chosen and not (Path(dest) / item.local_path).exists()
    ]
