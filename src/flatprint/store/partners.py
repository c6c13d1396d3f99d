"""Synapse pairs with their ends: ``partners`` holds each pair's two synapse ids and bodies only.

The ends' locations, confidences, ROI labels and T-bar NT probabilities are the ``synapses`` rows
with those ids (docs/store.md): keeping them once, there, instead of again per pair took two thirds
of ``partners`` (store format 4). ``syn_id`` is a synapse's position in the body-sorted ``synapses``
table, so the ends of a set of pairs lie between their smallest and largest id: that range filter
lets zone maps skip the other row groups (a pair's ends are one body's rows each). An OR of many
id ranges is no index here: DuckDB evaluated it row by row (17 s for one body's 57,710 partners at
scale 0.1, against 0.1 s for a hash join with the range filter).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from flatprint.errors import StoreError
from flatprint.store.cache import BuildOnceCache, store_key
from flatprint.store.neurongraph import kept_neuron_graph
from flatprint.store.neurontable import kept_neuron_table
from flatprint.store.sql import distinct_ids, temporary_tables

PARTNER_COLUMNS = ("body_pre", "body_post", "pre_id", "post_id")
_OR_RANGES = 4  # synapses_by_id: up to this many id ranges in one filter, more as a union of scans
_BODY_SCANS = 64  # synapses_of_bodies: up to this many bodies one scan each
_MOST_RANGES = 1024  # synapses_by_id: at most this many scans (statement text and planning grow with it)


def partner_ends_sql(pairs: str, pre_ids, post_ids, alias: str = "p", pre: str = "a", post: str = "b") -> str:
    """A FROM clause: the table or subquery ``pairs`` (columns ``pre_id``, ``post_id``; alias
    ``alias``) joined to the ``synapses`` rows of both ends (aliases ``pre`` and ``post``).

    ``pre_ids`` / ``post_ids``: the ids ``pairs`` holds (or a superset); only the synapses row groups
    between the smallest and the largest are read."""
    return (
        f"{pairs} {alias} "
        f"JOIN (SELECT * FROM synapses WHERE {_between(pre_ids)}) {pre} ON {pre}.syn_id = {alias}.pre_id "
        f"JOIN (SELECT * FROM synapses WHERE {_between(post_ids)}) {post} ON {post}.syn_id = {alias}.post_id"
    )


def _between(ids) -> str:
    """``syn_id BETWEEN smallest AND largest`` of ``ids`` (an Arrow column, NumPy array or sequence)."""
    if hasattr(ids, "to_numpy"):
        ids = ids.to_numpy()
    values = np.asarray(ids, dtype=np.int64)
    if not len(values):
        return "FALSE"
    return f"syn_id BETWEEN {int(values.min())} AND {int(values.max())}"


def partners_of_pairs(cursor, body_pre, body_post) -> dict[str, np.ndarray]:
    """The ``partners`` rows of the body pairs ``(body_pre[i], body_post[i])`` as NumPy columns
    (PARTNER_COLUMNS), in the table's order (body_pre, body_post, pre_id, post_id).

    The scan's filter is the pre bodies as a literal ``IN`` list (zone maps skip the row groups of
    other pre bodies; at scale 1.0, 0.1-0.3 s for the 88 pairs of two types' neurons, where 64 merged
    body ranges read 187 M rows in 5 s), the pairs a semi join with them."""
    body_pre, body_post = np.asarray(body_pre, dtype=np.int64), np.asarray(body_post, dtype=np.int64)
    if not len(body_pre):
        return {c: np.empty(0, np.int64) for c in PARTNER_COLUMNS}
    pairs = pa.table({"body_pre": body_pre, "body_post": body_post})
    with temporary_tables(cursor, pairs=pairs) as t:
        return partners_between(
            cursor,
            body_pre,
            None,
            f"EXISTS (SELECT 1 FROM {t['pairs']} q WHERE q.body_pre = p.body_pre AND q.body_post = p.body_post)",
        )


def partners_between(cursor, pre_bodies, post_bodies, condition: str = "") -> dict[str, np.ndarray]:
    """The ``partners`` rows from any of ``pre_bodies`` to any of ``post_bodies`` (None: any body;
    literal ``IN`` lists, so zone maps skip the other pre bodies' row groups) for which the SQL
    ``condition`` over ``partners AS p`` holds, as NumPy columns (PARTNER_COLUMNS) in the table's
    order."""
    where = [f"p.body_pre IN ({_id_list(pre_bodies)})"]
    if post_bodies is not None:
        where.append(f"p.body_post IN ({_id_list(post_bodies)})")
    if condition:
        where.append(condition)
    got = cursor.execute(
        f"SELECT {', '.join(f'p.{c}' for c in PARTNER_COLUMNS)} FROM partners p WHERE {' AND '.join(where)}"
    ).fetchnumpy()
    return _in_order({c: np.asarray(got[c], dtype=np.int64) for c in PARTNER_COLUMNS})


def _id_list(ids) -> str:
    """Body ids as the text of a SQL ``IN`` list (sorted, once each; NULL for none)."""
    return ", ".join(str(b) for b in distinct_ids(ids).tolist()) or "NULL"


def pair_weights(rows: dict[str, np.ndarray]) -> np.ndarray:
    """Per row of ``rows`` (partners rows in the table's order) the number of rows of its body pair:
    the pair's ``connections.weight``, which ingest sums from the same rows."""
    n = len(rows["body_pre"])
    if not n:
        return np.empty(0, np.int64)
    new_pair = np.flatnonzero((np.diff(rows["body_pre"]) != 0) | (np.diff(rows["body_post"]) != 0)) + 1
    starts = np.concatenate([[0], new_pair])
    counts = np.diff(np.concatenate([starts, [n]]))
    return np.repeat(counts, counts)


def _in_order(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Partners rows in the table's order (a parallel scan or a join may interleave row groups)."""
    if _lexsorted([rows[c] for c in PARTNER_COLUMNS]):
        return rows
    order = np.lexsort([rows[c] for c in reversed(PARTNER_COLUMNS)])
    return {c: v[order] for c, v in rows.items()}


def synapses_by_id(cursor, ids, select: str, gap: int = 2048) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The ``synapses`` rows whose ``syn_id`` is in ``ids``, with the SQL select items ``select``
    (over ``synapses`` columns): the rows read as NumPy columns (``syn_id`` and one per select item;
    masked arrays where a column has NULLs), sorted by syn_id, and per element of ``ids`` the
    position of its row there. The rows read include others: those between close ids.

    Ids are read in ranges (ids closer than ``gap`` share one, so rows between them are read too):
    the ends of one body's pairs lie in that body's rows, so each range reads a row group or two.
    A ``syn_id`` is its row's position (ingest appends the rows in that order), so the ranges filter
    DuckDB's ``rowid``, which finds the row groups without checking every one's zone map (at scale
    1.0, 3.7 ms instead of 5.5 ms for one pair's ends); every id is looked up among the syn_ids read,
    and a store whose row positions differ is read by ``syn_id`` instead. Up to _OR_RANGES ranges
    are one filter; more are one ``SELECT`` each under ``UNION ALL`` (an OR of many ranges is
    evaluated row by row and, past a few dozen, in every row group: 4 s at scale 1.0 for the 151
    ranges of two types' pairs' ends, 0.45 s as a union), at most _MOST_RANGES of them (the narrowest
    gaps merged). Raises StoreError for an id that has no row.

    The post ends' ranges read the NT columns too, though only T-bars hold values there (ingest
    joins tbar-nt to PreSyn points only): reading them in the pre ends' ranges alone takes a second
    scan, and at scale 1.0 each scan of ``synapses`` costs ~1.5-2.5 ms however few rows it reads
    (2,940 row groups), more than the 7 columns over the post ends' rows (~1 ms) saves: 12.6 ms
    instead of 10.1 ms for the strongest pair's ends."""
    ids = np.asarray(ids, dtype=np.int64)
    unique = distinct_ids(ids, "stable")  # pre ids in sorted runs: 0.15 ms, not 0.29, for a pair's 10 k
    rows, found = _read_ranges(cursor, unique, select, gap, "rowid")
    at, hit = _positions(found, ids)
    if not hit.all():  # rowid is not syn_id here
        rows, found = _read_ranges(cursor, unique, select, gap, "syn_id")
        at, hit = _positions(found, ids)
    if not hit.all():
        raise StoreError(f"synapses: no row for syn_id {int(ids[~hit][0])} that partners refers to")
    return rows, at


def _read_ranges(cursor, unique: np.ndarray, select: str, gap: int, key: str) -> tuple[dict, np.ndarray]:
    """synapses_by_id's statement for the sorted ids ``unique``, filtering ``key`` (rowid or syn_id)
    by ranges: every row read (the ids' and those between them), sorted by syn_id, and its syn_ids."""
    if not len(unique):
        sql = f"SELECT syn_id, {select} FROM synapses WHERE FALSE"
    else:
        steps = np.diff(unique)
        cuts = np.flatnonzero(steps > gap)
        if len(cuts) >= _MOST_RANGES:  # keep the widest gaps
            cuts = np.sort(np.argsort(steps, kind="stable")[len(steps) - (_MOST_RANGES - 1) :])
        lows, highs = unique[np.concatenate([[0], cuts + 1])], unique[np.concatenate([cuts, [len(unique) - 1]])]
        ranges = [f"{key} BETWEEN {int(a)} AND {int(b)}" for a, b in zip(lows, highs)]
        if len(ranges) <= _OR_RANGES:
            sql = f"SELECT syn_id, {select} FROM synapses WHERE {' OR '.join(ranges)}"
        else:
            sql = " UNION ALL ".join(f"SELECT syn_id, {select} FROM synapses WHERE {r}" for r in ranges)
    rows = cursor.execute(sql).fetchnumpy()
    found = np.asarray(rows["syn_id"], dtype=np.int64)
    if len(found) > 1 and (found[1:] < found[:-1]).any():
        order = np.argsort(found, kind="stable")
        rows, found = {c: v[order] for c, v in rows.items()}, found[order]
    return rows, found


def _positions(sorted_values: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each of ``values``' position in ``sorted_values`` (unique, ascending) and whether it is there.

    Rows read by id ranges hold few runs of consecutive ids: a value's run is a binary search over
    the runs' first ids (a few, in cache) and its position the offset in that run, instead of a
    binary search over every id read."""
    n = len(sorted_values)
    if not n:
        return np.zeros(len(values), np.intp), np.zeros(len(values), bool)
    starts = np.flatnonzero(sorted_values[1:] - sorted_values[:-1] != 1) + 1
    starts = np.concatenate([[0], starts]) if len(starts) else np.zeros(1, np.intp)
    first = sorted_values[starts]
    run = np.maximum(np.searchsorted(first, values, side="right") - 1, 0)
    at = np.clip(starts[run] + (values - first[run]), 0, n - 1)
    return at, sorted_values[at] == values


def _lexsorted(columns: list[np.ndarray]) -> bool:
    """Whether the rows of ``columns`` are in ascending order, the first column first."""
    if len(columns[0]) < 2:
        return True
    tied = np.ones(len(columns[0]) - 1, bool)
    for col in columns:
        before, after = col[:-1], col[1:]
        if (tied & (after < before)).any():
            return False
        tied &= after == before
    return True


def synapses_of_bodies(cursor, bodies, select: str) -> dict[str, np.ndarray]:
    """The ``synapses`` rows of ``bodies`` with ``body``, ``syn_id`` and the SQL select items
    ``select`` (over ``synapses`` columns), as NumPy columns (masked arrays where a column has NULLs)
    in the table's order (body, syn_id). The table is sorted by body, so zone maps skip the other
    bodies' row groups: up to _BODY_SCANS bodies one equality scan each under ``UNION ALL`` (an
    ``IN`` list is a hash join over every row's body: at scale 0.01 20 ms for 10 bodies' 15,000
    synapses, against 12 ms), more as one ``IN`` list."""
    ids = distinct_ids(bodies).tolist()
    if 0 < len(ids) <= _BODY_SCANS:
        sql = " UNION ALL ".join(f"SELECT body, syn_id, {select} FROM synapses WHERE body = {b}" for b in ids)
    else:
        sql = f"SELECT body, syn_id, {select} FROM synapses WHERE body IN ({_id_list(ids)})"
    got = cursor.execute(sql).fetchnumpy()
    body, syn_id = np.asarray(got["body"], dtype=np.int64), np.asarray(got["syn_id"], dtype=np.int64)
    if not _lexsorted([body, syn_id]):  # a parallel scan may interleave row groups
        order = np.lexsort([syn_id, body])
        got = {c: v[order] for c, v in got.items()}
        body, syn_id = body[order], syn_id[order]
    return {**got, "body": body, "syn_id": syn_id}


_neuron_id_arrays: BuildOnceCache[np.ndarray] = BuildOnceCache(max_entries=2)


def neuron_body_ids(store, cursor) -> np.ndarray:
    """The store's :Neuron body ids, sorted: those of its neuron table or graph when one is built
    already, else read once (166,700 ids at scale 1.0: 1.3 MB, one small scan) and kept. Never waits
    for a neuron table or graph to be built (seconds at scale 1.0) for a call that needs only this."""
    for kept in (kept_neuron_table(store), kept_neuron_graph(store)):
        if kept is not None:
            return kept.body_ids
    sql = "SELECT bodyId FROM neurons" if store.has_table("neurons") else "SELECT bodyId FROM segments WHERE is_neuron"
    return _neuron_id_arrays.get(store_key(store), lambda: _read_ids(cursor, sql))


def forget_neuron_body_ids() -> None:
    """Drop the kept neuron id arrays (tests switch between the sources of :func:`neuron_body_ids`)."""
    _neuron_id_arrays.clear()


def _read_ids(cursor, sql: str) -> np.ndarray:
    """The ``bodyId`` column of ``sql``'s rows as sorted int64 (tables are stored sorted: checked)."""
    ids = np.asarray(cursor.execute(sql).fetchnumpy()["bodyId"], dtype=np.int64)
    return ids if np.all(ids[1:] > ids[:-1]) else np.unique(ids)


def listed_bodies(store, cursor, ids, neurons_only: bool) -> np.ndarray:
    """Which of the body ids ``ids`` are :Neuron bodies (``neurons_only``) or :Segment bodies, sorted
    and once each: neurons without SQL (:func:`neuron_body_ids`; every :Neuron is a :Segment), the
    other listed ids of a :Segment question by one look-up in ``segments``."""
    ids = distinct_ids(ids)
    neurons = neuron_body_ids(store, cursor)
    at = np.minimum(np.searchsorted(neurons, ids), max(len(neurons) - 1, 0))
    is_neuron = neurons[at] == ids if len(neurons) else np.zeros(len(ids), bool)
    if neurons_only or is_neuron.all():
        return ids[is_neuron]
    others = ", ".join(str(b) for b in ids[~is_neuron].tolist())
    found = cursor.execute(f"SELECT bodyId FROM segments WHERE bodyId IN ({others})").fetchnumpy()["bodyId"]
    return np.union1d(ids[is_neuron], np.asarray(found, dtype=np.int64))


def connected_pairs(cursor, pre_bodies, post_bodies) -> tuple[np.ndarray, np.ndarray]:
    """The body pairs ``(pre, post)`` of ``connections`` from any of ``pre_bodies`` to any of
    ``post_bodies``, sorted: the side with fewer bodies is read by a literal ``IN`` list from the
    copy sorted by it (zone maps skip the rest), the other side filtered in NumPy."""
    pre_bodies = distinct_ids(pre_bodies)
    post_bodies = distinct_ids(post_bodies)
    if len(post_bodies) < len(pre_bodies):
        table, side, ids = "connections_by_post", "body_post", post_bodies
    else:
        table, side, ids = "connections", "body_pre", pre_bodies
    got = cursor.execute(f"SELECT body_pre, body_post FROM {table} WHERE {side} IN ({_id_list(ids)})").fetchnumpy()
    body_pre, body_post = (np.asarray(got[c], dtype=np.int64) for c in ("body_pre", "body_post"))
    keep = np.isin(body_post, post_bodies) if side == "body_pre" else np.isin(body_pre, pre_bodies)
    body_pre, body_post = body_pre[keep], body_post[keep]
    order = np.lexsort([body_post, body_pre])
    return body_pre[order], body_post[order]
