"""Synapse-level queries: fetch_synapses, fetch_mean_synapses, fetch_synapse_connections."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from flatprint.errors import QueryError
from flatprint.query.client import inject_client
from flatprint.query.criteria import SynapseCriteria, check_rois, copy_as_neuroncriteria, warn_unmatched
from flatprint.query.results import with_provenance
from flatprint.store.columns import SYNAPSE_COLUMNS
from flatprint.store.partners import partner_ends_sql
from flatprint.store.sql import sql_literal

NT_PROPERTIES = [
    "ntAcetylcholineProb",
    "ntDopamineProb",
    "ntGabaProb",
    "ntGlutamateProb",
    "ntHistamineProb",
    "ntOctopamineProb",
    "ntSerotoninProb",
]
NT_NAMES = [p[2:-4].lower() for p in NT_PROPERTIES]
_TYPE = pd.CategoricalDtype(["pre", "post"])
_KIND, _CONF = SYNAPSE_COLUMNS["type"], SYNAPSE_COLUMNS["confidence"]  # synapse type and confidence columns


def _nt_columns(nt, alias: str) -> tuple[str, list[str]]:
    """SQL select items and output columns for nt=None/'max'/'all' (pre synapses carry the probabilities)."""
    if nt is None:
        return "", []
    probs = [f"{alias}.{p}" for p in NT_PROPERTIES]
    if nt == "all":
        return ", " + ", ".join(f"{p} AS {name}" for p, name in zip(probs, NT_NAMES)), list(NT_NAMES)
    if nt == "max":
        names = "[" + ", ".join(sql_literal(n) for n in NT_NAMES) + "]"
        best = f"greatest({', '.join(probs)})"
        pick = f"{names}[list_position([{', '.join(probs)}], {best})]"
        return f", CASE WHEN {probs[0]} IS NULL THEN NULL ELSE {pick} END AS nt, {best} AS ntProb", ["nt", "ntProb"]
    raise QueryError(f"nt must be None, 'max' or 'all', got {nt!r}")


def _finish_nt(df: pd.DataFrame, nt) -> pd.DataFrame:
    if nt == "all":
        for col in NT_NAMES:
            df[col] = df[col].astype(np.float32)
    elif nt == "max":
        df["nt"] = pd.Categorical(df["nt"], NT_NAMES)
        df["ntProb"] = df["ntProb"].astype(np.float32)
    return df


def _roi_names_sql(primary_only: bool, rois: list[str], alias: str) -> tuple[str, str]:
    """A join giving each synapse its ROI name(s): the primary ROI, or every ROI at every level."""
    restrict = f" AND rm.roi IN ({', '.join(sql_literal(r) for r in rois)})" if rois else ""
    if primary_only:
        join = (
            f"LEFT JOIN (SELECT rm.label, rm.roi FROM roi_map rm JOIN rois r ON r.roi = rm.roi AND r.is_primary "
            f"WHERE rm.roi_set = 'primary'{restrict}) rn ON rn.label = {alias}.primary_label"
        )
    else:
        join = (
            f"LEFT JOIN (SELECT roi_set, label, roi FROM roi_map rm WHERE TRUE{restrict}) rn "
            f"ON (rn.roi_set = 'primary' AND rn.label = {alias}.primary_label) "
            f"OR (rn.roi_set = 'major' AND rn.label = {alias}.major_label)"
        )
    return join, "rn.roi"


def _prepare(neuron_criteria, synapse_criteria, client):
    nc = copy_as_neuroncriteria(neuron_criteria, client)
    sc = synapse_criteria if synapse_criteria is not None else SynapseCriteria(client=client)
    if sc.rois and not nc.rois:
        nc.rois, nc.roi_req = set(sc.rois), "any"
    return nc, sc


@inject_client
def fetch_synapses(neuron_criteria, synapse_criteria=None, batch_size=10, *, nt=None, client=None):
    """Every synapse of the matching neurons: bodyId, type, roi, x, y, z, confidence (+ nt columns).

    With ``primary_only=True`` (the default) each synapse appears once with its primary ROI (None
    outside all primary ROIs); with ``primary_only=False`` once per ROI it lies in, every level.
    """
    nc, sc = _prepare(neuron_criteria, synapse_criteria, client)
    if nc.is_empty():
        raise QueryError("neuron_criteria: empty criteria would return every synapse of the dataset")
    roi_join, roi_col = _roi_names_sql(sc.primary_only, list(sc.rois), "s")
    nt_sql, nt_cols = _nt_columns(nt, "s")
    sql = f"""
        SELECT s.body AS bodyId, s.{_KIND} AS type, {roi_col} AS roi, s.x, s.y, s.z, s.{_CONF} AS confidence{nt_sql}
        FROM synapses s {roi_join}
        WHERE s.body IN (SELECT n.bodyId FROM segments n WHERE {nc.where(client, "n")}) AND {sc.where("s")}
        ORDER BY s.body, s.syn_id, roi"""
    df = client.store.cursor().execute(sql).df()
    df = df.astype({"bodyId": np.int64, "x": np.int32, "y": np.int32, "z": np.int32, "confidence": np.float32})
    df["type"] = df["type"].astype(_TYPE)
    df["roi"] = df["roi"].astype(object).where(df["roi"].notna(), None)
    df = _finish_nt(df, nt)
    if df.empty:
        warn_unmatched(nc, client)
    return with_provenance(df, client, f"fetch_synapses({nc!r}, {sc!r}, nt={nt!r})")


@inject_client
def fetch_mean_synapses(neuron_criteria, synapse_criteria=None, batch_size=100, *, by_roi=True, client=None):
    """Per body (and ROI) and synapse type: count, mean x/y/z and mean confidence."""
    if by_roi not in (True, False):
        raise QueryError("by_roi must be True or False")
    nc, sc = _prepare(neuron_criteria, synapse_criteria, client)
    if by_roi:
        rois = list(sc.rois) or (client.primary_rois if sc.primary_only else client.all_rois)
        roi_list = ", ".join(sql_literal(r) for r in rois)
        sql = f"""
            SELECT s.body AS bodyId, rm.roi AS roi, s.{_KIND} AS type, count(*) AS count,
                   avg(s.x) AS x, avg(s.y) AS y, avg(s.z) AS z, avg(s.{_CONF}) AS confidence
            FROM synapses s JOIN roi_map rm
              ON ((rm.roi_set = 'primary' AND rm.label = s.primary_label)
                  OR (rm.roi_set = 'major' AND rm.label = s.major_label))
            WHERE s.body IN (SELECT n.bodyId FROM segments n WHERE {nc.where(client, "n")}) AND {sc.where("s")}
              AND rm.roi IN ({roi_list})
            GROUP BY ALL ORDER BY bodyId, roi, type DESC"""
    else:
        sql = f"""
            SELECT s.body AS bodyId, s.{_KIND} AS type, count(*) AS count,
                   avg(s.x) AS x, avg(s.y) AS y, avg(s.z) AS z, avg(s.{_CONF}) AS confidence
            FROM synapses s
            WHERE s.body IN (SELECT n.bodyId FROM segments n WHERE {nc.where(client, "n")}) AND {sc.where("s")}
            GROUP BY ALL ORDER BY bodyId, type DESC"""
    df = client.frame(sql)
    df["type"] = pd.Categorical(df["type"], ["pre", "post"])
    df = df.astype({"count": np.int32, "x": np.float32, "y": np.float32, "z": np.float32, "confidence": np.float32})
    if len(df) == 0:
        df = df.astype({"bodyId": np.int64})
        warn_unmatched(nc, client)
    return with_provenance(df, client, f"fetch_mean_synapses({nc!r}, {sc!r}, by_roi={by_roi})")


@inject_client
def fetch_synapse_connections(
    source_criteria=None,
    target_criteria=None,
    synapse_criteria=None,
    min_total_weight=1,
    batch_size=10_000,
    *,
    nt=None,
    client=None,
):
    """Every synapse pair from the source neurons to the target neurons, with both locations and ROIs.

    ROI filtering applies to the post-synaptic side (as ConnectsTo weights do); confidence applies to
    both sides; connections lighter than ``min_total_weight`` are skipped.
    """
    sc = synapse_criteria if synapse_criteria is not None else SynapseCriteria(client=client)
    src, _ = _prepare(source_criteria, sc, client)
    tgt, _ = _prepare(target_criteria, sc, client)
    if src.is_empty() and tgt.is_empty():
        raise QueryError("source_criteria and target_criteria: both empty selects every synapse of the dataset")
    if min_total_weight is None or min_total_weight < 0:
        raise QueryError(f"min_total_weight must be non-negative, got {min_total_weight!r}")
    check_rois("synapse_criteria.rois", sc.rois, client.all_rois)
    min_total = max(int(min_total_weight), 1)
    roi_weight = ""
    if sc.rois:
        roi_list = ", ".join(sql_literal(r) for r in sc.rois)
        roi_weight = (
            f"AND (SELECT coalesce(sum(r.weight), 0) FROM connection_rois r WHERE r.body_pre = c.body_pre "
            f"AND r.body_post = c.body_post AND r.roi IN ({roi_list})) >= {min_total}"
        )
    nt_sql, nt_cols = _nt_columns(nt, "a")

    def roi_list_expr(primary_label, major_label):
        """The synapse's ROI names as neuprint-python reports them (one primary ROI, or a sorted list)."""
        if sc.primary_only:
            return (
                f"(SELECT rm.roi FROM roi_map rm JOIN rois r ON r.roi = rm.roi AND r.is_primary "
                f"WHERE rm.roi_set = 'primary' AND rm.label = {primary_label} LIMIT 1)"
            )
        return (
            f"(SELECT list(rm.roi ORDER BY rm.roi) FROM roi_map rm WHERE (rm.roi_set = 'primary' AND rm.label = "
            f"{primary_label}) OR (rm.roi_set = 'major' AND rm.label = {major_label}))"
        )

    # partners holds the pairs' ids and bodies; their ends are synapses rows, read by id range.
    conf = f"a.{_CONF} > {float(sc.confidence)} AND b.{_CONF} > {float(sc.confidence)}" if sc.confidence else "TRUE"
    roi_filter = "TRUE"
    if sc.rois:
        roi_list = ", ".join(sql_literal(r) for r in sc.rois)
        roi_filter = (
            f"EXISTS (SELECT 1 FROM roi_map m WHERE m.roi IN ({roi_list}) AND "
            "((m.roi_set = 'primary' AND m.label = b.primary_label) OR "
            "(m.roi_set = 'major' AND m.label = b.major_label)))"
        )
    pairs = client.sql(f"""
        SELECT c.body_pre, c.body_post FROM connections c
        WHERE c.body_pre IN (SELECT n.bodyId FROM segments n WHERE {src.where(client, "n")})
          AND c.body_post IN (SELECT m.bodyId FROM segments m WHERE {tgt.where(client, "m")})
          AND c.weight >= {min_total} {roi_weight}""")[1]
    # An explicit list of pre bodies lets the scan of partners (sorted by body_pre) skip row groups.
    pre_list = ", ".join(str(b) for b in sorted({a for a, _ in pairs})) or "NULL"
    pairs_table = pa.table(
        {
            "body_pre": pa.array([a for a, _ in pairs], pa.int64()),
            "body_post": pa.array([b for _, b in pairs], pa.int64()),
        }
    )
    cur = client.cursor()
    with client.temporary_tables(pairs=pairs_table) as t:
        rows = cur.sql(f"""
            SELECT p.body_pre, p.body_post, p.pre_id, p.post_id
            FROM partners p SEMI JOIN {t["pairs"]} q ON q.body_pre = p.body_pre AND q.body_post = p.body_post
            WHERE p.body_pre IN ({pre_list})""").to_arrow_table()
    with client.temporary_tables(rows=rows) as t:
        sql = f"""
            SELECT p.body_pre AS bodyId_pre, p.body_post AS bodyId_post,
                   {roi_list_expr("a.primary_label", "a.major_label")} AS roi_pre,
                   {roi_list_expr("b.primary_label", "b.major_label")} AS roi_post,
                   a.x AS x_pre, a.y AS y_pre, a.z AS z_pre, b.x AS x_post, b.y AS y_post, b.z AS z_post,
                   a.{_CONF} AS confidence_pre, b.{_CONF} AS confidence_post{nt_sql}
            FROM {partner_ends_sql(t["rows"], rows.column("pre_id"), rows.column("post_id"))}
            WHERE {conf} AND {roi_filter}
            ORDER BY p.body_pre, p.body_post, p.pre_id, p.post_id"""
        df = cur.execute(sql).df()
    df = df.astype(
        {
            "bodyId_pre": np.int64,
            "bodyId_post": np.int64,
            "x_pre": np.int32,
            "y_pre": np.int32,
            "z_pre": np.int32,
            "x_post": np.int32,
            "y_post": np.int32,
            "z_post": np.int32,
            "confidence_pre": np.float32,
            "confidence_post": np.float32,
        }
    )
    for col in ("roi_pre", "roi_post"):
        if sc.primary_only:
            df[col] = df[col].astype(object).where(df[col].notna(), None)
        else:
            df[col] = [list(v) if v is not None and len(v) else [None] for v in df[col]]
    df = _finish_nt(df, nt)
    if df.empty:
        warn_unmatched(src, client, argument="source_criteria.")
        warn_unmatched(tgt, client, argument="target_criteria.")
    query = f"fetch_synapse_connections({src!r}, {tgt!r}, {sc!r}, min_total_weight={min_total_weight}, nt={nt!r})"
    return with_provenance(df, client, query)
