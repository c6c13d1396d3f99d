"""Publishing output atomically: one file (:func:`atomic_write`) or a whole store or export
(:func:`atomic_output`: build in a work directory beside the target, rename on success).

:func:`atomic_output` is the one helper for every job that writes a store or an export: the
target either keeps its old content or gets the complete new one, never something half-written.
The work directory is named ``.<target name>.<kind>-<pid>``, so a later run removes what a killed
run (SIGKILL, power loss) left behind once that process is gone; SIGTERM becomes an exception, so
the work directory of a terminated run is removed like on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from flatprint.errors import StoreError

__all__ = ["atomic_output", "atomic_write", "clean_stale_work"]


def _current_umask() -> int:
    # os.umask can only be read by setting it; done once at import, before any threads write.
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` so readers see either the old file or the complete new one.

    The bytes go to a temporary file in the same directory (so the rename stays on one file
    system), which then replaces ``path`` with :func:`os.replace`. Parent directories are
    created. ``str`` data is encoded as UTF-8. Returns the path.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp_name, path)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def clean_stale_work(target: str | os.PathLike, kind: str) -> list[Path]:
    """Remove the work directories (and set-aside old outputs) of runs into ``target`` whose process
    is gone; returns what was removed."""
    target = Path(target)
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(?:{re.escape(kind)}|old)-(?P<pid>\d+)$")
    removed = []
    for entry in target.parent.glob(f".{target.name}.*-*"):
        m = pattern.match(entry.name)
        if not m or int(m["pid"]) == os.getpid() or _alive(int(m["pid"])):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output(
    target: str | os.PathLike, kind: str, *, force: bool = False, publish: str | None = None
) -> Iterator[Path]:
    """Yield a fresh work directory beside ``target``; on success move the result to ``target``.

    The result is the work directory itself, or with ``publish`` the file or directory of that name
    inside it (e.g. the one database file of a store). An existing ``target`` raises StoreError
    unless ``force``; then it is replaced only once the new output is complete. On any error,
    Ctrl-C or SIGTERM (in the main thread) the work directory is removed and ``target`` is untouched.
    """
    target = Path(target)
    if target.exists() and not force:
        raise StoreError(f"{target} already exists (use --force to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_work(target, kind)
    work = target.parent / f".{target.name}.{kind}-{os.getpid()}"
    _remove(work)
    work.mkdir()
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if in_main else None

    def on_term(signum, frame):  # an exception unwinds through the finally below; the default kills
        raise KeyboardInterrupt(f"{kind} terminated")

    if in_main:
        signal.signal(signal.SIGTERM, on_term)
    try:
        yield work
        result = work / publish if publish else work
        if not result.exists():
            raise StoreError(f"{result}: the {kind} finished without writing its output")
        if target.exists() and (target.is_dir() or result.is_dir()):
            # a directory cannot be renamed over another: set the old one aside, then remove it
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            _remove(old)
            os.replace(target, old)
            os.replace(result, target)
            _remove(old)
        else:
            os.replace(result, target)  # atomic, over an existing file too
    finally:
        _remove(work)
        if in_main:
            signal.signal(signal.SIGTERM, previous)
