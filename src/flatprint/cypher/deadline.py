"""Deadlines, cancellation and the watchdog that interrupts DuckDB when either strikes.

A :class:`Deadline` is a point in time (None: never) plus an optional cancel event; the executor
checks it between fetches and in its Python loops. One :class:`_Watchdog` thread interrupts the
DuckDB cursor of every SQL statement whose deadline passed or whose query was cancelled.
"""

from __future__ import annotations

import threading
import time

import duckdb

from flatprint.cypher.memory import QueryUsage, memory_budget
from flatprint.errors import QueryError

__all__ = ["Deadline", "CypherTimeoutError", "CypherCancelledError", "WATCHDOG", "CHECK_EVERY"]

CHECK_EVERY = 512  # rows between deadline checks in Python loops


class CypherTimeoutError(QueryError):
    """The query ran longer than its timeout (the message contains "timeout")."""


class CypherCancelledError(QueryError):
    """The query was cancelled by its caller (``cancel`` event set), e.g. the client went away."""


class Deadline:
    """A point in time after which the query stops (None: never), and an optional cancel event."""

    def __init__(self, seconds: float | None, parent: Deadline | None = None, cancel: threading.Event | None = None):
        self.seconds = seconds
        if parent is None:
            self.budget = memory_budget()
            self.usage = None if self.budget is None else QueryUsage(self.budget)
        else:  # a runTimeboxed inner query counts against its outer query
            self.budget, self.usage = parent.budget, parent.usage
        at = None if seconds is None else time.monotonic() + max(seconds, 0.0)
        if parent is not None and parent.at is not None and (at is None or parent.at < at):
            at = parent.at
        self.at = at
        self.parent = parent
        self.cancel = cancel if cancel is not None else (parent.cancel if parent is not None else None)

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - time.monotonic()

    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def expired(self) -> bool:
        """True once the time is up or the query was cancelled: either way it must stop."""
        return (self.at is not None and time.monotonic() >= self.at) or self.cancelled()

    def error(self) -> QueryError:
        if self.cancelled():
            return CypherCancelledError("query cancelled (the client went away)")
        limit = self.seconds if self.seconds is not None else (self.parent.seconds if self.parent else None)
        return CypherTimeoutError(
            f"query exceeded the timeout of {limit:g} s and was stopped" if limit is not None else "query timeout"
        )

    def check(self, rows: int = 0) -> None:
        """Raise when the time is up or the query was cancelled; with a memory budget, also when the
        query has handled another CHECK_EVERY_ROWS ``rows`` and the process is over the budget."""
        if self.expired():
            raise self.error()
        if rows and self.usage is not None:
            self.usage.add(rows)


class _Watchdog:
    """One daemon thread that interrupts the DuckDB cursor of each running SQL statement whose
    deadline passed or whose query was cancelled (polled every POLL seconds while any can be)."""

    POLL = 0.05

    def __init__(self):
        self._cond = threading.Condition()
        self._active: dict[int, tuple] = {}
        self._counter = 0
        self._thread: threading.Thread | None = None
        self._wake_at: float | None = None  # when the thread wakes next (None: when notified)

    def watch(self, cursor, deadline: Deadline) -> int | None:
        if deadline.at is None and deadline.cancel is None:
            return None
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="flatprint-query-watchdog", daemon=True)
                self._thread.start()
            self._counter += 1
            self._active[self._counter] = (cursor, deadline)
            # wake the thread only when it would otherwise look too late (saves a thread switch per query)
            due = deadline.at if deadline.cancel is None else time.monotonic() + self.POLL
            if deadline.at is not None:
                due = min(due, deadline.at)
            if self._wake_at is None or due < self._wake_at:
                self._cond.notify()
            return self._counter

    def release(self, token: int) -> None:
        with self._cond:
            self._active.pop(token, None)

    def _loop(self) -> None:
        with self._cond:
            while True:
                wait = None
                for token, (cursor, deadline) in list(self._active.items()):
                    if deadline.expired():
                        del self._active[token]
                        try:
                            cursor.interrupt()
                        except duckdb.Error:
                            pass
                        continue
                    if deadline.cancel is not None:
                        wait = self.POLL if wait is None else min(wait, self.POLL)
                    remaining = deadline.remaining()
                    if remaining is not None:
                        wait = remaining if wait is None else min(wait, remaining)
                wait = None if wait is None else max(wait, 0.001)
                self._wake_at = None if wait is None else time.monotonic() + wait
                self._cond.wait(wait)
                self._wake_at = None


WATCHDOG = _Watchdog()
