"""Synapse-level queries: fetch_synapses, fetch_mean_synapses, fetch_synapse_connections."""

from __future__ import annotations

import copy
import weakref

import numpy as np
import pandas as pd

from flatprint.errors import QueryError
from flatprint.query.client import inject_client
from flatprint.query.criteria import SynapseCriteria, check_rois, copy_as_neuroncriteria, warn_unmatched
from flatprint.query.results import with_provenance
from flatprint.store.columns import SYNAPSE_COLUMNS
from flatprint.store.partners import (
    PARTNER_COLUMNS,
    listed_bodies,
    pair_weights,
    partners_between,
    partners_of_pairs,
    synapses_by_id,
)
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


def _nt_items(nt, alias: str = "synapses") -> str:
    """SQL select items over ``synapses AS alias`` for nt=None/'max'/'all': the 7 probabilities, or
    the 1-based position of the largest (NULL for a synapse without them: PSDs) and its value."""
    if nt is None:
        return ""
    probs = [f"{alias}.{p}" for p in NT_PROPERTIES]
    if nt == "all":
        return ", " + ", ".join(f"{p} AS {name}" for p, name in zip(probs, NT_NAMES))
    if nt == "max":
        best = f"greatest({', '.join(probs)})"
        position = f"list_position([{', '.join(probs)}], {best})"
        return f", CASE WHEN {probs[0]} IS NULL THEN NULL ELSE {position} END AS nt_position, {best} AS ntProb"
    raise QueryError(f"nt must be None, 'max' or 'all', got {nt!r}")


def _nt_data(ends: dict, nt) -> dict:
    """The nt columns of the rows of ``ends`` (their pre ends' items of _nt_items): float32
    probabilities, or the categorical name of the largest and its float32 value (NaN and no name
    for a PSD)."""
    if nt == "all":
        return {name: _filled(ends[name], np.nan).astype(np.float32) for name in NT_NAMES}
    if nt == "max":
        codes = _filled(ends["nt_position"], 0).astype(np.int64) - 1
        return {
            "nt": pd.Categorical.from_codes(codes, NT_NAMES),
            "ntProb": _filled(ends["ntProb"], np.nan).astype(np.float32),
        }
    return {}


def _filled(values: np.ndarray, fill) -> np.ndarray:
    """A plain array from a column of fetchnumpy, its NULLs (masked entries) set to ``fill``."""
    return values.filled(fill) if isinstance(values, np.ma.MaskedArray) else values


class _RoiLabels:
    """ROI names of synapses' primary/major labels (``roi_map``), looked up in NumPy arrays indexed by
    label instead of a join or subquery per synapse row."""

    _by_store: dict[int, _RoiLabels] = {}  # a store is read-only: read its roi_map once

    @classmethod
    def of(cls, client) -> _RoiLabels:
        store = client.store
        labels = cls._by_store.get(id(store))
        if labels is None:
            labels = cls._by_store[id(store)] = cls(client.cursor())
            weakref.finalize(store, cls._by_store.pop, id(store), None)
        return labels

    def __init__(self, cursor):
        rows = cursor.sql(
            "SELECT rm.roi_set, rm.label, rm.roi, coalesce(r.is_primary, false) FROM roi_map rm "
            "LEFT JOIN rois r ON r.roi = rm.roi WHERE rm.roi_set IN ('primary', 'major') ORDER BY rm.roi"
        ).fetchall()
        self.rows = rows
        size = max([label for _, label, _, _ in rows], default=0) + 1
        self.primary = np.full(size + 1, None, dtype=object)  # the last slot: labels beyond the map
        for roi_set, label, roi, is_primary in reversed(rows):  # the first primary ROI of a label wins
            if roi_set == "primary" and is_primary:
                self.primary[label] = roi
        self.size = size

    def _index(self, labels: np.ndarray) -> np.ndarray:
        return np.where((labels >= 0) & (labels < self.size), labels, self.size)

    def names(self, primary: np.ndarray, major: np.ndarray, primary_only: bool) -> np.ndarray:
        """Per synapse its primary ROI (None outside all), or the sorted list of every ROI its labels
        count under ([None] for none); each row its own list."""
        if primary_only:
            return self.primary[self._index(primary)]
        if not len(primary):
            return np.empty(0, dtype=object)
        lists: dict[tuple[str, int], list[str]] = {}
        for roi_set, label, roi, _ in self.rows:
            lists.setdefault((roi_set, label), []).append(roi)
        combos, inverse = np.unique(np.stack([primary, major]), axis=1, return_inverse=True)
        per_combo = [
            sorted(lists.get(("primary", int(p)), []) + lists.get(("major", int(m)), [])) or [None] for p, m in combos.T
        ]
        out = np.empty(len(primary), dtype=object)
        out[:] = [list(per_combo[i]) for i in inverse.reshape(-1)]
        return out

    def within(self, rois, primary: np.ndarray, major: np.ndarray) -> np.ndarray:
        """Whether each synapse lies in any of ``rois`` (at any level)."""
        wanted = set(rois)
        inside = {"primary": np.zeros(self.size + 1, bool), "major": np.zeros(self.size + 1, bool)}
        for roi_set, label, roi, _ in self.rows:
            if roi in wanted:
                inside[roi_set][label] = True
        return inside["primary"][self._index(primary)] | inside["major"][self._index(major)]


# listed sources and body pairs up to which partners is read between the listed bodies directly
_FEW_SOURCES, _FEW_PAIRS = 4, 64


def _few_pairs(src, tgt) -> bool:
    """Whether both criteria list body ids, few enough that reading every partners row between them
    costs less than finding the connected pairs first (every listed source's rows are scanned)."""
    return 0 < len(src.bodyId) <= _FEW_SOURCES and bool(tgt.bodyId) and len(src.bodyId) * len(tgt.bodyId) <= _FEW_PAIRS


def _pairs(client, cur, src, tgt, sc, min_total: int) -> tuple[np.ndarray, np.ndarray]:
    """The connected body pairs (pre, post) between the criteria, weighing at least ``min_total``
    (over the ROIs of ``sc`` when it lists some)."""
    # neuron-only copies of the edges when both sides are :Neuron criteria; the copy sorted by the side
    # whose body ids are given, with those ids as a literal list, so zone maps skip the rest
    by_post = bool(tgt.bodyId) and not src.bodyId
    edges = "connections_by_post" if by_post else "connections"
    edge_rois = "connection_rois"
    if src.label == tgt.label == "Neuron" and client.store.has_table(f"neuron_{edges}"):
        edges, edge_rois = f"neuron_{edges}", "neuron_connection_rois"
    prefilter = ""
    side, ids = ("body_post", tgt.bodyId) if by_post else ("body_pre", src.bodyId)
    if 0 < len(ids) <= 64:  # a longer literal list costs more per row than the zone maps save
        prefilter = f"c.{side} IN ({', '.join(str(int(b)) for b in ids)}) AND"
    roi_weight = ""
    if sc.rois:
        roi_list = ", ".join(sql_literal(r) for r in sc.rois)
        roi_weight = (
            f"AND (SELECT coalesce(sum(r.weight), 0) FROM {edge_rois} r WHERE r.body_pre = c.body_pre "
            f"AND r.body_post = c.body_post AND r.roi IN ({roi_list})) >= {min_total}"
        )
    pairs = cur.execute(f"""
        SELECT c.body_pre, c.body_post FROM {edges} c
        WHERE {prefilter} c.body_pre IN (SELECT n.bodyId FROM {src.table(client)} n WHERE {src.where(client, "n")})
          AND c.body_post IN (SELECT m.bodyId FROM {tgt.table(client)} m WHERE {tgt.where(client, "m")})
          AND c.weight >= {min_total} {roi_weight}""").fetchnumpy()
    return pairs["body_pre"], pairs["body_post"]


# each end's columns: synapses column -> name of its column in the ends' rows (suffixed _pre/_post)
_END_COLUMNS = {"x": "x", "y": "y", "z": "z", "conf": "conf", "primary_label": "primary", "major_label": "major"}


def _only_body_ids(criteria) -> bool:
    """True when ``criteria`` select by body id and nothing else (the label aside)."""
    rest = copy.copy(criteria)
    rest.bodyId = []
    return rest.is_empty()


def _listed_members(client, cur, criteria) -> np.ndarray | None:
    """The bodies ``criteria`` match, sorted, when they select by body id only (the label aside),
    without SQL for listed neurons (store.partners.listed_bodies); else None."""
    if not criteria.bodyId or not _only_body_ids(criteria):
        return None
    return listed_bodies(client.store, cur, criteria.bodyId, criteria.label == "Neuron")


def _few_pairs_rows(client, cur, src, tgt) -> dict[str, np.ndarray]:
    """Few listed bodies on both sides (_few_pairs): the partners rows between those that match the
    criteria, read directly; criteria beyond body ids as subqueries. A pair's connections.weight is
    its number of partners rows (ingest sums them), so min_total_weight needs no other table.

    One statement joining partners to both ends' synapses rows instead cost more at scale 1.0
    (8-9 ms against 1.5 + 2.7 ms for the strongest pair): each scan of a big table costs ~1 ms
    however few rows it returns (~2,500-2,900 row groups), and the joins add to that."""
    bodies, conditions = [], []
    for crit, column, alias in ((src, "body_pre", "n"), (tgt, "body_post", "m")):
        members = _listed_members(client, cur, crit)
        if members is None:
            members = crit.bodyId
            conditions.append(
                f"p.{column} IN (SELECT {alias}.bodyId FROM {crit.table(client)} {alias} "
                f"WHERE {crit.where(client, alias)})"
            )
        bodies.append(members)
    if not (len(bodies[0]) and len(bodies[1])):
        return {c: np.empty(0, np.int64) for c in PARTNER_COLUMNS}
    return partners_between(cur, bodies[0], bodies[1], " AND ".join(conditions))


def _pairs_with_ends(cur, rows: dict[str, np.ndarray], sc, nt) -> dict[str, np.ndarray]:
    """Partners ``rows`` with both ends' columns (_END_COLUMNS and ``ok``, suffixed _pre/_post; the
    pre ends' nt items), the ends read by id in one statement (synapses_by_id) and aligned to the rows."""
    n = len(rows["pre_id"])
    ok = f"conf > {float(sc.confidence)}" if sc.confidence else "TRUE"
    got, at = synapses_by_id(
        cur,
        np.concatenate([rows["pre_id"], rows["post_id"]]),
        f"{', '.join(_END_COLUMNS)}, {ok} AS ok{_nt_items(nt)}",
    )
    ends = dict(rows)
    for side, where in (("pre", at[:n]), ("post", at[n:])):
        for col, name in (*_END_COLUMNS.items(), ("ok", "ok")):
            ends[f"{name}_{side}"] = got[col][where]
    for col in got:
        if col not in _END_COLUMNS and col not in ("syn_id", "ok"):  # nt items: the pre end's
            ends[col] = got[col][at[:n]]
    return ends


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
    cur = client.cursor()
    if not sc.rois and _few_pairs(src, tgt):
        rows = _few_pairs_rows(client, cur, src, tgt)
        if min_total > 1:
            heavy = pair_weights(rows) >= min_total
            rows = {c: v[heavy] for c, v in rows.items()}
    else:
        rows = partners_of_pairs(cur, *_pairs(client, cur, src, tgt, sc, min_total))
    ends = _pairs_with_ends(cur, rows, sc, nt)
    # everything per row (filters, ROI names) is NumPy over the ends' columns
    keep = _filled(ends["ok_pre"], False) & _filled(ends["ok_post"], False)
    rois = _RoiLabels.of(client)
    labels = {name: ends[name].astype(np.int64) for name in ("primary_pre", "major_pre", "primary_post", "major_post")}
    if sc.rois:
        keep &= rois.within(sc.rois, labels["primary_post"], labels["major_post"])
    if not keep.all():
        ends = {c: v[keep] for c, v in ends.items()}
        labels = {c: v[keep] for c, v in labels.items()}
    data = {
        "bodyId_pre": ends["body_pre"],
        "bodyId_post": ends["body_post"],
        "roi_pre": rois.names(labels["primary_pre"], labels["major_pre"], sc.primary_only),
        "roi_post": rois.names(labels["primary_post"], labels["major_post"], sc.primary_only),
    }
    for side in ("pre", "post"):
        for axis in "xyz":
            data[f"{axis}_{side}"] = np.asarray(ends[f"{axis}_{side}"]).astype(np.int32, copy=False)
    for side in ("pre", "post"):
        data[f"confidence_{side}"] = np.asarray(ends[f"conf_{side}"]).astype(np.float32, copy=False)
    data.update(_nt_data(ends, nt))
    index = pd.RangeIndex(len(data["bodyId_pre"]))
    for side in ("roi_pre", "roi_post"):  # object, None for no ROI (pandas would infer its str dtype)
        data[side] = pd.Series(data[side], index=index, dtype=object, copy=False)
    df = pd.DataFrame(data, index=index, copy=False)
    if df.empty:
        warn_unmatched(src, client, argument="source_criteria.")
        warn_unmatched(tgt, client, argument="target_criteria.")
    query = f"fetch_synapse_connections({src!r}, {tgt!r}, {sc!r}, min_total_weight={min_total_weight}, nt={nt!r})"
    return with_provenance(df, client, query)
