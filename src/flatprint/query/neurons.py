"""Neuron tables: fetch_neurons and fetch_custom_neurons."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa

from flatprint.errors import QueryError
from flatprint.query.client import inject_client
from flatprint.query.criteria import copy_as_neuroncriteria, warn_unmatched
from flatprint.query.results import json_dicts, with_provenance
from flatprint.store.sql import id_ranges_sql, quote_ident

CORE_NEURON_COLS = [
    "bodyId",
    "instance",
    "type",
    "pre",
    "post",
    "downstream",
    "upstream",
    "mito",
    "size",
    "status",
    "cropped",
    "statusLabel",
    "cellBodyFiber",
    "somaRadius",
    "somaLocation",
    "inputRois",
    "outputRois",
    "roiInfo",
]
_COUNT_COLS = ["pre", "post", "downstream", "upstream", "mito", "soma"]
ROI_INFO_PARSE_LIMIT = 1000  # up to this many neurons, per-ROI counts come from their roiInfo JSON


def compile_columns(client, user_columns=(), core_columns=CORE_NEURON_COLS, core_only=False) -> list[str]:
    """Columns to return: the user's (existing ones, in their order), or core first then the rest sorted."""
    rois = set(client.all_rois)
    keys = [k for k in client.neuron_keys if k not in rois]
    if user_columns:
        return [k for k in user_columns if k in keys]
    columns = [k for k in core_columns if k in keys]
    if not core_only:
        columns += [k for k in sorted(keys) if k not in columns]
    return columns


def neuron_rows(client, criteria, columns: list[str]) -> pd.DataFrame:
    """The raw property rows of the matching segments, ordered by bodyId."""
    select = ", ".join(f"n.{quote_ident(c)} AS {quote_ident(c)}" for c in columns)
    sql = f"SELECT {select} FROM {criteria.table(client)} n WHERE {criteria.where(client, 'n')} ORDER BY n.bodyId"
    return client.frame(sql)


@inject_client
def fetch_neurons(criteria=None, *, omit_rois=False, returned_columns="all", client=None):
    """Properties and per-ROI synapse counts of the neurons matching ``criteria``.

    Returns ``(neuron_df, roi_counts_df)`` (only ``neuron_df`` with ``omit_rois=True``), shaped as
    neuprint-python 0.6.4 returns them: roiInfo parsed, inputRois/outputRois lists, and per-ROI
    counts with a ``NotPrimary`` row for synapses outside every primary ROI.
    """
    criteria = copy_as_neuroncriteria(criteria, client)
    if returned_columns == "all":
        columns = compile_columns(client)
    elif returned_columns == "core":
        columns = compile_columns(client, core_only=True)
    elif isinstance(returned_columns, Iterable) and not isinstance(returned_columns, str):
        columns = compile_columns(client, user_columns=list(returned_columns))
    else:
        raise QueryError(f"returned_columns must be 'all', 'core' or a list, got {returned_columns!r}")
    if not columns:
        raise QueryError("returned_columns: none of the requested columns exist")
    if omit_rois:
        columns = [c for c in columns if c != "roiInfo"]
    elif "roiInfo" not in columns:
        columns.append("roiInfo")
    neuron_df = neuron_rows(client, criteria, columns)
    if neuron_df.empty:
        warn_unmatched(criteria, client)
    # Few neurons: unpack their roiInfo (already fetched); many: read segment_rois in one vectorised pass
    # (a scan of that table costs ~10 ms at scale 0.1 however few bodies it returns).
    neuron_df, roi_counts_df = process_neuron_df(
        neuron_df,
        client,
        omit_rois,
        from_store=len(neuron_df) > ROI_INFO_PARSE_LIMIT,
        neurons_only=criteria.label == "Neuron",
    )
    query = f"fetch_neurons({criteria!r}, omit_rois={omit_rois}, returned_columns={returned_columns!r})"
    if omit_rois:
        return with_provenance(neuron_df, client, query)
    return with_provenance(neuron_df, client, query), with_provenance(roi_counts_df, client, query)


@inject_client
def fetch_custom_neurons(q, *, client=None):
    """Like fetch_neurons, but the neurons come from your own Cypher query (which must ``RETURN n``)."""
    results = client.fetch_custom(q)
    if len(results) == 0:
        neuron_df = pd.DataFrame([], columns=compile_columns(client), dtype=object)
        return neuron_df, pd.DataFrame([], columns=["bodyId", "roi", "pre", "post"])
    if "n" not in results.columns:
        raise QueryError("fetch_custom_neurons: the query must RETURN n (a whole :Neuron node)")
    neuron_df = pd.DataFrame(results["n"].tolist())
    rois = set(client.all_rois)
    neuron_df = neuron_df[[c for c in neuron_df.columns if c not in rois]]
    for col in neuron_df.columns:  # Points come back as maps; neuprint-python keeps their coordinates
        if neuron_df[col].dtype == object and any(isinstance(x, dict) for x in neuron_df[col]):
            neuron_df[col] = [x.get("coordinates", x) if isinstance(x, dict) else x for x in neuron_df[col]]
    core = [c for c in CORE_NEURON_COLS if c in neuron_df.columns]
    neuron_df = neuron_df[core + sorted(set(neuron_df.columns) - set(core))]
    return process_neuron_df(neuron_df, client, omit_rois=False)


def process_neuron_df(
    neuron_df: pd.DataFrame, client, omit_rois: bool, from_store: bool = False, neurons_only: bool = False
):
    """Parse roiInfo into inputRois/outputRois and a per-ROI counts table (with NotPrimary rows).

    ``from_store``: read the per-ROI rows and ROI lists from ``segment_rois`` (vectorised) instead of
    unpacking every roiInfo in Python (both hold the same numbers; the store's is much faster);
    ``neurons_only`` (every row is a :Neuron): from its body-sorted neuron copy, ``neuron_rois``.
    """
    if omit_rois:
        return neuron_df, None
    neuron_df = neuron_df.copy()
    neuron_df["roiInfo"] = json_dicts(neuron_df["roiInfo"])
    count_cols = [c for c in _COUNT_COLS if c in neuron_df.columns]
    full_cols = ["bodyId", "roi", *count_cols]
    if from_store:
        ids = neuron_df["bodyId"].to_numpy()
        wanted = pa.table({"bodyId": pa.array(ids, pa.int64())})
        select = ", ".join(["r.bodyId", "r.roi", *(f"r.{c}" for c in {*count_cols, "pre", "post"})])
        table = "neuron_rois" if neurons_only and client.store.has_table("neuron_rois") else "segment_rois"
        # neuron_rois is sorted by bodyId: a few id ranges let a small set skip most row groups.
        bound = f" WHERE {id_ranges_sql('r.bodyId', ids, most=4)}" if table == "neuron_rois" else ""
        with client.temporary_tables(wanted=wanted) as t:
            rows = (
                client.cursor()
                .execute(
                    f"SELECT {select} FROM {table} r SEMI JOIN {t['wanted']} w "
                    f"ON w.bodyId = r.bodyId{bound} ORDER BY r.bodyId, r.roi"
                )
                .df()
            )
        bodies = rows["bodyId"].to_numpy()
        names = rows["roi"].to_numpy(dtype=object)
        for name, column in (("inputRois", "post"), ("outputRois", "pre")):
            # rows are sorted by (bodyId, roi): cut the ROI names at each new body
            keep = rows[column].to_numpy() > 0
            kept_bodies, kept_names = bodies[keep], names[keep].tolist()
            firsts, starts = np.unique(kept_bodies, return_index=True)
            ends = [*starts[1:].tolist(), len(kept_names)]
            per_body = {b: kept_names[a:e] for b, a, e in zip(firsts.tolist(), starts.tolist(), ends)}
            neuron_df[name] = [per_body.get(b, []) for b in ids.tolist()]
        roi_counts = rows[full_cols]
    else:
        neuron_df["inputRois"] = [sorted(k for k, v in d.items() if v.get("post")) for d in neuron_df["roiInfo"]]
        neuron_df["outputRois"] = [sorted(k for k, v in d.items() if v.get("pre")) for d in neuron_df["roiInfo"]]
        # Column lists, not a dict per row: this loop runs once per neuron and ROI.
        bodies, rois = [], []
        counts = {c: [] for c in count_cols}
        for body, info in zip(neuron_df["bodyId"], neuron_df["roiInfo"]):
            bodies.extend([body] * len(info))
            rois.extend(info)
            for c in count_cols:
                counts[c].extend(v.get(c, 0) for v in info.values())
        roi_counts = pd.DataFrame(
            {"bodyId": pd.Series(bodies, dtype="int64"), "roi": rois, **counts}, columns=full_cols
        )
    roi_counts = roi_counts.fillna(0).astype({c: int for c in count_cols})
    primary = set(client.primary_rois)
    in_primary = roi_counts[roi_counts["roi"].isin(primary)].groupby("bodyId")[count_cols].sum()
    totals = neuron_df[["bodyId", *count_cols]].set_index("bodyId").fillna(0)
    not_primary = (totals - in_primary.reindex(totals.index).fillna(0)).astype(int)
    not_primary["roi"] = "NotPrimary"
    not_primary = not_primary.reset_index()[full_cols]
    roi_counts = pd.concat([roi_counts, not_primary], ignore_index=True)
    roi_counts = roi_counts.sort_values(["bodyId", "roi"], ignore_index=True)
    # Rows without any count are dropped (with no count columns requested that is every row, as in
    # neuprint-python).
    roi_counts = roi_counts.loc[roi_counts[count_cols].any(axis=1)].reset_index(drop=True)
    return neuron_df, roi_counts
