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
from flatprint.store.sql import id_ranges_sql, temporary_tables

PARTNER_COLUMNS = ("body_pre", "body_post", "pre_id", "post_id")
_MOST_RANGES = 64  # more literal id ranges than this are evaluated row by row (module docstring)


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

    The scan's filter is literal ranges of the pre bodies (zone maps skip the other row groups; an IN
    list or a semi join with a pairs table is applied row by row after the scan, 4x the CPU for the
    neurons of two types at scale 0.01) and the post bodies' span; the exact pairs are then picked
    in NumPy."""
    body_pre, body_post = np.asarray(body_pre, dtype=np.int64), np.asarray(body_post, dtype=np.int64)
    if not len(body_pre):
        return {c: np.empty(0, np.int64) for c in PARTNER_COLUMNS}
    got = cursor.sql(f"""
        SELECT {", ".join(PARTNER_COLUMNS)} FROM partners
        WHERE {id_ranges_sql("body_pre", body_pre, gap=0, most=64)}
          AND body_post BETWEEN {int(body_post.min())} AND {int(body_post.max())}""").to_arrow_table()
    rows = {c: got.column(c).to_numpy() for c in PARTNER_COLUMNS}
    pres, posts = np.unique(body_pre), np.unique(body_post)
    pre_at, pre_hit = _positions(pres, rows["body_pre"])
    post_at, post_hit = _positions(posts, rows["body_post"])
    wanted = np.unique(np.searchsorted(pres, body_pre) * len(posts) + np.searchsorted(posts, body_post))
    keep = pre_hit & post_hit & np.isin(pre_at * len(posts) + post_at, wanted)
    rows = {c: v[keep] for c, v in rows.items()}
    return _in_order(rows)


def partners_of_pair_query(cursor, pairs_sql: str, pre_bodies) -> dict[str, np.ndarray]:
    """As partners_of_pairs for the body pairs that the query ``pairs_sql`` returns (columns
    ``body_pre``, ``body_post``), in one statement: ``pre_bodies`` (a superset of its pre bodies)
    gives the literal ranges that let zone maps skip the other row groups."""
    got = cursor.sql(f"""
        SELECT {", ".join(f"p.{c}" for c in PARTNER_COLUMNS)} FROM partners p
        SEMI JOIN ({pairs_sql}) q ON q.body_pre = p.body_pre AND q.body_post = p.body_post
        WHERE {id_ranges_sql("p.body_pre", np.asarray(pre_bodies, dtype=np.int64), gap=0, most=64)}""").to_arrow_table()
    return _in_order({c: got.column(c).to_numpy() for c in PARTNER_COLUMNS})


def _in_order(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Partners rows in the table's order (a parallel scan or a join may interleave row groups)."""
    if _lexsorted([rows[c] for c in PARTNER_COLUMNS]):
        return rows
    order = np.lexsort([rows[c] for c in reversed(PARTNER_COLUMNS)])
    return {c: v[order] for c, v in rows.items()}


def synapses_by_id(cursor, ids, select: str, gap: int = 2048) -> tuple[pa.Table, np.ndarray]:
    """The ``synapses`` rows whose ``syn_id`` is in ``ids``, with the SQL select items ``select``
    (over ``synapses`` columns; ``syn_id`` comes first): the rows read, sorted by syn_id, and per
    element of ``ids`` the position of its row there.

    Ids are read in ranges (ids closer than ``gap`` share one, so rows between them are read too):
    the ends of one body's pairs lie in that body's rows, so a few ranges cover them and zone maps
    skip every other row group. When the ids need more ranges than that (many bodies' ends), a semi
    join with the ids within their span reads only their rows. Raises StoreError for an id that
    has no row."""
    ids = np.asarray(ids, dtype=np.int64)
    if not len(ids):
        table = cursor.sql(f"SELECT syn_id, {select} FROM synapses WHERE FALSE").to_arrow_table()
        return table, np.empty(0, np.intp)
    unique = np.unique(ids)
    if np.count_nonzero(np.diff(unique) > gap) < _MOST_RANGES:
        table = cursor.sql(
            f"SELECT syn_id, {select} FROM synapses WHERE {id_ranges_sql('syn_id', unique, gap=gap, most=_MOST_RANGES)}"
        ).to_arrow_table()
    else:  # merged ranges would read most rows between the ids (12 M rows for 0.5 M ids of two types' neurons)
        with temporary_tables(cursor, ids=pa.table({"syn_id": unique})) as t:
            table = cursor.sql(
                f"SELECT syn_id, {select} FROM synapses SEMI JOIN {t['ids']} USING (syn_id) "
                f"WHERE syn_id BETWEEN {int(unique[0])} AND {int(unique[-1])}"
            ).to_arrow_table()
    found = table.column(0).to_numpy()
    if len(found) > 1 and (np.diff(found) < 0).any():
        order = np.argsort(found, kind="stable")
        table, found = table.take(order), found[order]
    at, hit = _positions(found, ids)
    if not hit.all():
        raise StoreError(f"synapses: no row for syn_id {int(ids[~hit][0])} that partners refers to")
    return table, at


def _positions(sorted_values: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each of ``values``' position in ``sorted_values`` (unique, ascending) and whether it is there."""
    if not len(sorted_values):
        return np.zeros(len(values), np.intp), np.zeros(len(values), bool)
    at = np.minimum(np.searchsorted(sorted_values, values), len(sorted_values) - 1)
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
