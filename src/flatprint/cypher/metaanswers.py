"""Answers of queries that read only the :Meta node, kept per store by their exact text.

neuprint-python asks for the dataset's metadata with every call that needs the ROI list
(fetch_adjacencies, fetch_neurons with ROIs, ...): ``MATCH (m:Meta) WITH m, apoc.convert.fromJsonMap
(m.roiInfo) ...`` parses and converts the whole ROI table each time (a few ms, a large share of a
small call). The :Meta node never changes while a store is open (stores are read-only), so such an
answer is kept and handed out again.

What is kept is the answer encoded as JSON (orjson), decoded afresh for each hit: every caller gets
objects of its own, so one caller changing a map it got cannot change what the next one gets. An
answer is kept only when it decodes back equal to itself (no NaN, no tuples, no non-string keys) and
is small; a query is eligible only when every node it matches is a :Meta node and it calls nothing
that differs between runs (``rand()``) and no procedure.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import orjson

from flatprint.cypher import ast

MAX_TEXTS = 32  # kept answers per store (least recently used first out)
MAX_BYTES = 8 * 2**20  # an answer larger than this is not kept
MAX_ROWS = 64
_VARYING_FUNCTIONS = frozenset({"rand", "randomuuid", "timestamp"})


def reads_only_meta(query: ast.Query) -> bool:
    """Whether ``query`` matches :Meta nodes only (at least one), with no relationship, procedure,
    parameter or varying function."""
    matched = False
    for node in query.walk():
        if isinstance(node, ast.NodePattern):
            if node.labels != ("Meta",):
                return False
            matched = True
        elif isinstance(node, (ast.RelPattern, ast.Call, ast.Parameter)):
            return False
        elif isinstance(node, ast.FunctionCall) and node.lower_name in _VARYING_FUNCTIONS:
            return False
    return matched


class MetaAnswers:
    """Per store: exact query text -> (columns, the rows as JSON). Safe to share between threads."""

    def __init__(self):
        self._lock = threading.Lock()
        # id(store) -> (a weak reference to it, its answers): stores are not hashable, and an id
        # may be reused once a store is gone, which the reference tells
        self._by_store: dict[int, tuple[weakref.ref, OrderedDict]] = {}

    def _answers(self, store, create: bool) -> OrderedDict | None:
        entry = self._by_store.get(id(store))
        if entry is not None and entry[0]() is store:
            return entry[1]
        if not create:
            return None
        for key in [k for k, (ref, _) in self._by_store.items() if ref() is None]:
            del self._by_store[key]
        answers: OrderedDict = OrderedDict()
        self._by_store[id(store)] = (weakref.ref(store), answers)
        return answers

    def get(self, store, text: str):
        """(columns, fresh rows) of a kept answer, or None."""
        with self._lock:
            kept = self._answers(store, create=False)
            entry = kept.get(text) if kept is not None else None
            if entry is None:
                return None
            kept.move_to_end(text)
        columns, encoded = entry
        return list(columns), orjson.loads(encoded)

    def keep(self, store, text: str, columns: list[str], data: list) -> bool:
        """Keep an answer when it is small and survives JSON unchanged; whether it was kept."""
        if len(data) > MAX_ROWS:
            return False
        try:
            encoded = orjson.dumps(data)
        except (TypeError, orjson.JSONEncodeError):
            return False
        if len(encoded) > MAX_BYTES or orjson.loads(encoded) != data:
            return False
        with self._lock:
            kept = self._answers(store, create=True)
            kept[text] = (tuple(columns), encoded)
            kept.move_to_end(text)
            while len(kept) > MAX_TEXTS:
                kept.popitem(last=False)
        return True

    def clear(self) -> None:
        with self._lock:
            self._by_store.clear()


META_ANSWERS = MetaAnswers()
