"""Things built once per store and kept in RAM, the least recently used dropped first.

Stores are read-only, so what a query derives from a whole store (the neuron graph of
flatprint.store.neurongraph, the matrices of flatprint.query.indirect) can be built once per process
and reused. :class:`BuildOnceCache` holds such values by key (usually :func:`store_key` plus what
else the value depends on): a value is built at most once however many threads ask for it at the
same time (one lock per key, so building one key does not hold up the others), and the cache keeps
at most ``max_entries`` values and, when ``max_bytes`` is set, at most that many bytes of them
(their ``nbytes``; the newest value always stays, however large).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Value = TypeVar("Value")


def store_key(store) -> tuple[str, object]:
    """A store's identity: its path and the uuid its ingest wrote (a re-ingested store differs)."""
    return str(store.path), store.meta.get("uuid")


class BuildOnceCache(Generic[Value]):
    """Values built on first request and kept, bounded (module docstring).

    ``max_entries`` and ``max_bytes`` may be numbers or functions returning one (read at every
    insertion, so a module constant can bound the cache and still be changed at run time)."""

    def __init__(
        self,
        max_entries: int | Callable[[], int],
        max_bytes: int | Callable[[], int | None] | None = None,
    ):
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._values: OrderedDict[Hashable, Value] = OrderedDict()
        self._lock = threading.Lock()  # guards _values and _building; never held while building
        self._building: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, build: Callable[[], Value]) -> Value:
        """The value kept for ``key``, else ``build()``'s, kept (one build per key at a time)."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
            key_lock = self._building.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:  # another thread may have built it while this one waited
                if key in self._values:
                    self._values.move_to_end(key)
                    return self._values[key]
            try:
                value = build()
                with self._lock:
                    self._values[key] = value
                    self._evict()
                return value
            finally:
                with self._lock:
                    if self._building.get(key) is key_lock:
                        del self._building[key]

    def peek(self, key: Hashable) -> Value | None:
        """The value kept for ``key``, or None; builds nothing and leaves the order as it is."""
        with self._lock:
            return self._values.get(key)

    def clear(self) -> None:
        """Drop every kept value (the next request builds its own again)."""
        with self._lock:
            self._values.clear()

    @property
    def nbytes(self) -> int:
        """Bytes of the kept values (their ``nbytes``; 0 for values without one)."""
        with self._lock:
            return sum(_nbytes(v) for v in self._values.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._values

    def _evict(self) -> None:
        """Drop the least recently used values beyond the bounds (the caller holds ``_lock``)."""
        max_entries = _read(self._max_entries)
        while len(self._values) > max(1, max_entries):
            self._values.popitem(last=False)
        max_bytes = _read(self._max_bytes)
        if max_bytes is None:
            return
        total = sum(_nbytes(v) for v in self._values.values())
        while total > max_bytes and len(self._values) > 1:
            _, dropped = self._values.popitem(last=False)
            total -= _nbytes(dropped)


def _read(bound):
    return bound() if callable(bound) else bound


def _nbytes(value) -> int:
    return int(getattr(value, "nbytes", 0))
