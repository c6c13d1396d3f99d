"""Autocomplete over every text property of the neurons (not just the few a fulltext index covers).

neuPrintExplorer's autocomplete used a fulltext index over 3 of 11 properties and silently missed
results (docs/peers.md, pain point 9). Here the index is every distinct value of every string property,
built once per store with one UNPIVOT query and kept in memory; matching is case-insensitive
substring, ranked exact > prefix > contains, then by how many neurons carry the value.
"""

from __future__ import annotations

import difflib
import json
import re
import threading

from flatprint.errors import QueryError
from flatprint.store.sql import quote_ident

_indexes: dict[str, dict] = {}
_lock = threading.Lock()
SKIP = {"roiInfo"}
NEAR_MAX_VALUES = 25_000  # properties with more distinct values get no near-spelling (difflib) matches


def text_properties(client) -> list[str]:
    props = json.loads(client.store.meta.get("neuronProperties", "{}"))
    return sorted(k for k, t in props.items() if str(t).lower() in ("string", "str", "text") and k not in SKIP)


def property_types(client) -> dict[str, str]:
    return {k: str(v).lower() for k, v in json.loads(client.store.meta.get("neuronProperties", "{}")).items()}


def value_index(client) -> dict[str, list[tuple[str, int, int]]]:
    """{property: [(value, neurons, segments), ...]} most common first; built once per store."""
    key = f"{client.store.path}:{client.store.meta.get('uuid')}"
    with _lock:
        if key in _indexes:
            return _indexes[key]
    props = text_properties(client)
    index: dict[str, list] = {p: [] for p in props}
    if props:
        cols = ", ".join(f"{quote_ident(p)}::VARCHAR AS {quote_ident(p)}" for p in props)
        on = ", ".join(quote_ident(p) for p in props)
        _, rows = client.sql(f"""
            SELECT prop, value, count(*) FILTER (WHERE is_neuron) AS neurons, count(*) AS segments
            FROM (UNPIVOT (SELECT is_neuron, {cols} FROM segments) ON {on} INTO NAME prop VALUE value)
            WHERE value IS NOT NULL AND value <> ''
            GROUP BY ALL ORDER BY prop, neurons DESC, segments DESC, value""")
        for prop, value, neurons, segments in rows:
            index[prop].append((value, int(neurons), int(segments)))
    with _lock:
        _indexes[key] = index
    return index


def suggest(client, q: str, prop: str | None = None, limit: int = 30) -> list[dict]:
    """Values containing ``q`` (any case) in ``prop`` or in every text property."""
    index = value_index(client)
    if prop and prop not in index:
        raise QueryError(f"prop: {prop!r} is not a text property of this dataset")
    needle = (q or "").strip().lower()
    hits = []
    for p in [prop] if prop else sorted(index):
        for value, neurons, segments in index[p]:
            low = value.lower()
            if needle and needle not in low:
                continue
            rank = 0 if low == needle else 1 if low.startswith(needle) else 2
            hits.append((rank, -neurons, -segments, p, value, neurons, segments))
    hits.sort()
    return [{"prop": p, "value": v, "neurons": n, "segments": s} for _, _, _, p, v, n, s in hits[:limit]]


def close_matches(
    client, q: str, props: list[str] | None = None, limit: int = 8, searched: tuple[str, ...] = ()
) -> list[dict]:
    """Values near ``q`` for "did you mean" links on an empty result: ``q`` itself in a property not
    ``searched``, the same value in another case, values containing it (or contained in it), then near
    spellings (difflib; only in properties with at most NEAR_MAX_VALUES values), in ``props``
    (default: every text property). Most neurons first within each kind."""
    index = value_index(client)
    needle = (q or "").strip()
    low = needle.lower()
    if not low:
        return []
    props = [p for p in (props or sorted(index)) if p in index]
    hits: dict[tuple[str, str], tuple] = {}
    for p in props:
        for value, neurons, segments in index[p]:
            if value == needle and p in searched:
                continue
            v = value.lower()
            rank = (
                0 if v == low else 1 if v.startswith(low) else 2 if low in v else 3 if v in low and len(v) > 2 else None
            )
            if rank is not None:
                hits[(p, value)] = (rank, -neurons, -segments, p, value, neurons, segments)
    if len(hits) < limit:  # misspellings: near matches by difflib's ratio, over the lower-cased values
        for p in props:
            if len(index[p]) > NEAR_MAX_VALUES:  # ids and the like: ~30 µs a value, so seconds at full scale
                continue
            by_low: dict[str, list] = {}
            for value, neurons, segments in index[p]:
                by_low.setdefault(value.lower(), []).append((value, neurons, segments))
            for near in difflib.get_close_matches(low, list(by_low), n=limit, cutoff=0.75):
                for value, neurons, segments in by_low[near]:
                    if (p, value) not in hits and not (value == needle and p in searched):
                        hits[(p, value)] = (4, -neurons, -segments, p, value, neurons, segments)
    ranked = sorted(hits.values())[:limit]
    return [{"prop": p, "value": v, "neurons": n, "segments": s} for _, _, _, p, v, n, s in ranked]


def regex_values(client, prop: str, pattern: str) -> list[str]:
    """The values of ``prop`` that ``pattern`` matches whole (the way Cypher's =~ does)."""
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise QueryError(f"{prop}: invalid regular expression {pattern!r}: {exc}") from None
    index = value_index(client)
    if prop not in index:
        raise QueryError(f"{prop}: regex search needs a text property")
    return sorted(v for v, _, _ in index[prop] if rx.fullmatch(v))
