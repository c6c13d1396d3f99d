"""Answers of batched queries from one query over all their batches (issue 16).

neuprint-python splits fetch_synapse_connections and fetch_synapses into batches: the same query
once per body (``m.bodyId = 10188``) or per list of ten bodies (``n.bodyId IN [...]``), the other
conditions (``n.type = 'PS255'``) unchanged. Each batch alone pays a SQL plan and the scan of the
row groups its bodies' synapses lie in: ~800 batches of one type pair cost 100x what one query over
all of them costs. When a second batch of such a shape arrives, the engine runs the *general* query
(the shape without the body condition, every row tagged with its body) once, keeps its answer by
body, and answers this and every later batch of the shape by taking its bodies' rows: no SQL.

Only final, column-wise answers (plain values and synapse maps, no ORDER BY, SKIP, LIMIT, DISTINCT
or aggregation) of a MATCH whose WHERE fixes exactly one Segment's ``bodyId`` to constants are
served so. The general query runs only when its bodies are few (:data:`MAX_KEYS`, counted first)
and its answer is small (:data:`MAX_ROWS` rows, :data:`MAX_BYTES`, and at most a twentieth of the
memory budget); otherwise the shape is marked and its batches run alone, as before. Stores are
read-only, so a kept answer stays true for the life of its store object.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flatprint.cypher import ast
from flatprint.cypher.columnar import arrow_column, python_rows
from flatprint.cypher.jsonanswer import data_json_parts
from flatprint.cypher.memory import memory_budget
from flatprint.cypher.sqlgen import conjuncts
from flatprint.errors import QueryError

MAX_KEYS = 5000  # bodies the general query may cover
MAX_ROWS = 2_000_000  # rows of a kept answer
MAX_BYTES = 512 * 2**20  # bytes of a kept answer
BUDGET_SHARE = 0.05  # of the memory budget (when one is set), per kept answer
KEPT = 2  # answers kept per store (least recently used dropped)
SEEN = 256  # shapes remembered per store (to tell a second batch from a first)


@dataclass
class BodyCondition:
    """The WHERE term that makes a query one batch: ``variable.bodyId = v`` or ``IN [v, ...]``."""

    term: ast.Expression
    variable: str
    values: tuple[int, ...]


def body_condition(where: ast.Expression | None) -> BodyCondition | None:
    """The one top-level term of ``where`` that fixes a variable's bodyId to integer literals, or None
    when there is no such term or more than one."""
    found = []
    for term in conjuncts(where):
        target, values = None, None
        if isinstance(term, ast.Comparison) and term.operators == ("=",):
            left, right = term.operands
            if isinstance(right, ast.Property):
                left, right = right, left
            target, values = left, _ids((right.value,)) if isinstance(right, ast.Literal) else None
        elif isinstance(term, ast.In) and isinstance(term.collection, ast.ListLiteral):
            listed = term.collection.literal_values()  # no Literal node per id of a long list
            target, values = term.element, None if listed is None else _ids(listed)
        if (
            values
            and isinstance(target, ast.Property)
            and target.name == "bodyId"
            and isinstance(target.subject, ast.Variable)
        ):
            found.append(BodyCondition(term, target.subject.name, tuple(values)))
    return found[0] if len(found) == 1 else None


def _ids(values: tuple) -> list[int] | None:
    """The values when all are integers of 64 bits (Literal values: no bool passes)."""
    if all(type(v) is int for v in values) and all(abs(v) < 2**63 for v in values):
        return list(values)
    return None


class GeneralAnswer:
    """The general query's answer, rows grouped by body: plain columns as DuckDB answered them,
    synapse-map columns as ids with each id's map text (``maps``: column index -> (ids, texts))."""

    def __init__(
        self,
        table: pa.Table,
        keys: np.ndarray,
        maps: dict[int, tuple[pa.Array, pa.Array]],
        json_texts: dict[int, pa.Array] | None = None,
    ):
        """``json_texts``: per map column the maps as the JSON endpoint writes them (jsonanswer.py),
        aligned with ``maps``' ids; None when they are not written so."""
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        table = table.take(pa.array(order))
        self.texts = {}  # column index -> map texts; the column holds positions in them, not ids
        for index, (ids, texts) in maps.items():
            positions = pc.index_in(table.column(index), value_set=ids)
            table = table.set_column(index, table.field(index).name, positions)
            self.texts[index] = texts
        self.table = table
        self.json_texts = json_texts
        self.nbytes = self.table.nbytes + self.keys.nbytes + sum(t.nbytes for t in self.texts.values())
        self.nbytes += sum(t.nbytes for t in (json_texts or {}).values())

    def _taken(self, values) -> pa.Table:
        """The rows of the bodies ``values``."""
        parts = []
        for value in sorted(set(values)):
            start, stop = np.searchsorted(self.keys, [value, value + 1])
            if stop > start:
                parts.append(np.arange(start, stop))
        return self.table.take(pa.array(np.concatenate(parts) if parts else np.array([], dtype=np.int64)))

    def answer_json(self, values, check_rows) -> tuple[tuple, int]:
        """The batch ``values`` as the JSON endpoint's ``data`` bytes in parts (jsonanswer.data_json_parts)
        and its number of rows; only when ``json_texts`` are kept."""
        taken = self._taken(values)
        columns = []
        for index in range(taken.num_columns):
            column = taken.column(index).combine_chunks()
            if index in self.json_texts:
                column = pc.take(self.json_texts[index], column)
            else:
                column = arrow_column(column)
            columns.append(column)
        check_rows(taken.num_rows)
        return data_json_parts(columns, set(self.json_texts), taken.num_rows), taken.num_rows

    def answer(self, values, names: list[str], check_rows) -> tuple[list[list], pa.Table]:
        """Rows (as the column-wise path parses them) and the Arrow answer of the batch ``values``."""
        taken = self._taken(values)
        columns = []
        for index in range(taken.num_columns):
            column = taken.column(index)
            if index in self.texts:
                column = pc.take(self.texts[index], column)
            else:  # kept as DuckDB answered (narrower), widened as the Arrow answer has it
                column = arrow_column(column)
            columns.append(column)
        arrow_names = list(names)
        if len(set(arrow_names)) != len(arrow_names):  # as CypherResult.to_arrow names duplicates
            arrow_names = [n if arrow_names.count(n) == 1 else f"{n}_{i}" for i, n in enumerate(arrow_names)]
        arrow = pa.table(columns, names=arrow_names) if columns else pa.table({})
        return rows_of(arrow, set(self.texts), check_rows), arrow


def rows_of(answer: pa.Table, texts: set[int], check_rows) -> list[list]:
    """The rows of a final Arrow answer (plain columns 64-bit, NaN as null; JSON text in ``texts``),
    equal to what parsing the JSON rows of ``columnar.build`` gives (no Python code per row)."""
    columns = [answer.column(index).combine_chunks() for index in range(answer.num_columns)]
    return python_rows(columns, texts, check_rows, answer.num_rows)


_TOO_BIG = object()  # a shape whose general query is not run (too many bodies or rows)


class BatchCache:
    """Kept general answers of one store, by the general query's SQL."""

    def __init__(self):
        self.lock = threading.Lock()
        self.kept: OrderedDict = OrderedDict()  # SQL -> GeneralAnswer or _TOO_BIG
        self.seen: OrderedDict = OrderedDict()  # SQL -> the values of the batch seen first

    def first_again(self, key: str, values: tuple[int, ...]) -> bool:
        """Whether ``values`` are those of ``key``'s first batch, seen again with nothing kept
        (answer_for then answers None and builds nothing); marks the shape seen last, as it does."""
        with self.lock:
            if key in self.kept or self.seen.get(key) != values:
                return False
            self.seen.move_to_end(key)
            return True

    def answer_for(self, key: str, values: tuple[int, ...], build) -> GeneralAnswer | None:
        """The kept answer for ``key``; built with ``build() -> GeneralAnswer | None`` (None: too big)
        when a batch of other values was seen before; None when this is the shape's first batch, or
        when building failed (a QueryError: the shape is then marked, its batches run alone)."""
        with self.lock:
            kept = self.kept.get(key)
            if kept is not None:
                self.kept.move_to_end(key)
                return None if kept is _TOO_BIG else kept
            first = self.seen.get(key)
            if first is None or first == values:
                self.seen[key] = values
                self.seen.move_to_end(key)
                while len(self.seen) > SEEN:
                    self.seen.popitem(last=False)
                return None
            # a second batch: build while holding the lock, so that concurrent batches wait for it
            try:
                built = build()
            except QueryError:
                # timed out, cancelled or over the memory budget: the shape's batches run alone from
                # now on, and this one too (it raises the same error if its own time is up)
                built = None
            self.kept[key] = _TOO_BIG if built is None else built
            self.seen.pop(key, None)
            answers = [k for k, v in self.kept.items() if v is not _TOO_BIG]
            for old in answers[: max(0, len(answers) - KEPT)]:
                del self.kept[old]
            while len(self.kept) > SEEN:
                self.kept.popitem(last=False)
            return built


def byte_limit() -> int:
    """Bytes one kept answer may take."""
    budget = memory_budget()
    limit = MAX_BYTES
    if budget is not None:
        limit = min(limit, int(budget.total * BUDGET_SHARE))
    return limit


_CACHES: dict[int, tuple[weakref.ref, BatchCache]] = {}  # id(store) -> (the store, its cache)
_CACHES_LOCK = threading.Lock()


def cache_of(store) -> BatchCache:
    """The batch cache of an open store (dropped with the store object)."""
    with _CACHES_LOCK:
        found = _CACHES.get(id(store))
        if found is not None and found[0]() is store:
            return found[1]
        cache = BatchCache()
        key = id(store)
        _CACHES[key] = (weakref.ref(store, lambda ref: _forget(key, ref)), cache)
        return cache


def _forget(key: int, ref: weakref.ref) -> None:
    with _CACHES_LOCK:
        if key in _CACHES and _CACHES[key][0] is ref:
            del _CACHES[key]
