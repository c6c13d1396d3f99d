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
