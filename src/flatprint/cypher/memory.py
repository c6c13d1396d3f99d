"""The process's memory budget: one number that bounds DuckDB and the engine's Python rows together.

``flatprint serve`` sets it (``--memory-budget``, else ``$FLATPRINT_MEMORY_BUDGET``, else 8 GiB):
what the process holds at start (interpreter and libraries) is taken off, DuckDB gets
:data:`DUCKDB_SHARE` of the rest as ``memory_limit`` (split between the stores; it may spill as much
again to its temp directory, no more), and a query whose Python side grows the process past
:data:`STOP_AT` of the budget is stopped with :class:`MemoryBudgetError`, which names the budget.
The engine checks the process's resident size only after every :data:`CHECK_EVERY_ROWS` rows a
query has fetched or built, so a query that handles few rows never pays for a check and is never the
one stopped. Without a budget (the library in-process), nothing is checked.
"""

from __future__ import annotations

import ctypes
import os
import re

import psutil

from flatprint.errors import QueryError

DEFAULT_BUDGET = 8 * 2**30
ENV_VAR = "FLATPRINT_MEMORY_BUDGET"
DUCKDB_SHARE = 0.5  # of the budget left after start-up, for all DuckDB buffer pools together
STOP_AT = 0.85  # of the budget: resident size at which a row-heavy query is stopped
CHECK_EVERY_ROWS = 16384  # rows a query handles between two looks at the resident size
_MIN_BUDGET = 64 * 2**20

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "kib": 2**10,
    "m": 10**6,
    "mb": 10**6,
    "mib": 2**20,
    "g": 10**9,
    "gb": 10**9,
    "gib": 2**30,
    "t": 10**12,
    "tb": 10**12,
    "tib": 2**40,
}


class MemoryBudgetError(QueryError):
    """The query would take the process past its memory budget; it was stopped, the server goes on."""


def parse_size(text, what: str = "--memory-budget") -> int:
    """'8GiB', '512MB', '500M', '2g', '1073741824' -> bytes (binary units: KiB, MiB, GiB, TiB)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise QueryError(f"{what}: {text!r} is not a size (examples: 8GiB, 512MiB, 500MB)")
    value = int(float(match.group(1)) * _UNITS[unit])
    if value < _MIN_BUDGET:
        raise QueryError(f"{what}: {text!r} is below the minimum of {format_size(_MIN_BUDGET)}")
    return value


def format_size(nbytes: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20)):
        if nbytes >= size:
            value = nbytes / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{nbytes} bytes"


def budget_from(option: str | None) -> int:
    """The budget in bytes: the option if given, else $FLATPRINT_MEMORY_BUDGET, else 8 GiB."""
    if option:
        return parse_size(option)
    if os.environ.get(ENV_VAR):
        return parse_size(os.environ[ENV_VAR], ENV_VAR)
    return DEFAULT_BUDGET


class MemoryBudget:
    """The budget of this process (bytes) and the check the engine runs every CHECK_EVERY_ROWS rows."""

    def __init__(self, total: int):
        self.total = int(total)
        self.stop_at = int(self.total * STOP_AT)
        self._process = psutil.Process()

    def duckdb_limit(self, stores: int = 1) -> int:
        """DuckDB's memory_limit for each of ``stores`` databases: a share of what the budget leaves
        beside what the process holds now (call it at start-up)."""
        free = max(self.total - self.resident(), 0)
        return max(int(free * DUCKDB_SHARE) // max(stores, 1), 16 * 2**20)

    def resident(self) -> int:
        return self._process.memory_info().rss

    def exceeded(self) -> bool:
        return self.resident() > self.stop_at

    def error(self, detail: str = "") -> MemoryBudgetError:
        return MemoryBudgetError(
            f"query stopped: it would take the server past its memory budget of {format_size(self.total)} "
            f"(--memory-budget / {ENV_VAR}){': ' + detail if detail else ''}; narrow it (WHERE, LIMIT) or "
            "raise the budget"
        )


class QueryUsage:
    """One query's side of the budget: rows handled since the last look at the process's size, and
    that size when the query first became row-heavy (its growth since then estimates its answer)."""

    __slots__ = ("budget", "pending", "baseline")

    def __init__(self, budget: MemoryBudget):
        self.budget = budget
        self.pending = 0
        self.baseline: int | None = None

    def add(self, rows: int) -> None:
        self.pending += rows
        if self.pending < CHECK_EVERY_ROWS:
            return
        self.pending = 0
        resident = self.budget.resident()
        if self.baseline is None:
            self.baseline = resident
        if resident > self.budget.stop_at:
            raise self.budget.error()

    def ensure_room_for_answer(self) -> None:
        """Before the answer is encoded (JSON takes about half the size of the rows it encodes): a
        row-heavy query whose answer would not fit stops here rather than in the encoder."""
        if self.baseline is None:
            return
        resident = self.budget.resident()
        if resident + max(resident - self.baseline, 0) // 2 > self.budget.stop_at:
            raise self.budget.error("its answer would not fit")


_BUDGET: MemoryBudget | None = None


def set_memory_budget(total: int | None) -> MemoryBudget | None:
    """Set (or with None clear) the process's budget; returns it."""
    global _BUDGET
    _BUDGET = None if total is None else MemoryBudget(total)
    return _BUDGET


def memory_budget() -> MemoryBudget | None:
    return _BUDGET


def release_free_memory() -> None:
    """Hand memory the stopped query freed back to the system (glibc keeps freed heap otherwise)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
