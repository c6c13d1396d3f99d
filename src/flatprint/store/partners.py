"""Synapse pairs with their ends: ``partners`` holds each pair's two synapse ids and bodies only.

The ends' locations, confidences, ROI labels and T-bar NT probabilities are the ``synapses`` rows
with those ids (docs/store.md): keeping them once, there, instead of again per pair took 62 % of
``partners`` (store format 4). ``syn_id`` is a synapse's position in the body-sorted ``synapses``
table, so the ends of a set of pairs are read by syn_id ranges (zone maps skip every other row
group), not by a join that scans the table.
"""

from __future__ import annotations

import numpy as np

from flatprint.store.sql import id_ranges_sql


def partner_ends_sql(pairs: str, pre_ids, post_ids, alias: str = "p", pre: str = "a", post: str = "b") -> str:
    """A FROM clause: the table or subquery ``pairs`` (columns ``pre_id``, ``post_id``; alias
    ``alias``) joined to the ``synapses`` rows of both ends (aliases ``pre`` and ``post``).

    ``pre_ids`` / ``post_ids``: the ids ``pairs`` holds (or a superset); only the synapses row groups
    holding them are read."""
    return (
        f"{pairs} {alias} "
        f"JOIN (SELECT * FROM synapses WHERE {id_ranges_sql('syn_id', _ids(pre_ids))}) {pre} "
        f"ON {pre}.syn_id = {alias}.pre_id "
        f"JOIN (SELECT * FROM synapses WHERE {id_ranges_sql('syn_id', _ids(post_ids))}) {post} "
        f"ON {post}.syn_id = {alias}.post_id"
    )


def _ids(values) -> np.ndarray:
    """Ids as an int64 array (an Arrow column, NumPy array or sequence)."""
    if hasattr(values, "to_numpy"):
        values = values.to_numpy()
    return np.asarray(values, dtype=np.int64)
