"""Connectivity: adjacencies, simple and common connections, paths, matrices and k-hop reach."""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from flatprint.errors import QueryError
from flatprint.query.client import inject_client
from flatprint.query.criteria import (
    NeuronCriteria,
    check_rois,
    copy_as_neuroncriteria,
    unmatched_values,
    warn_unmatched,
)
from flatprint.query.graphanswers import (
    graph_adjacencies,
    graph_group_matrix,
    graph_neuron_props,
    graph_neuron_props_at,
    graph_reach,
    graph_totals,
)
from flatprint.query.heavy import GROUP_COLUMNS, connection_matrix_sql
from flatprint.query.paths import PathNodes, admits_only_neurons, all_shortest_paths, paths_up_to
from flatprint.query.results import arrow_convertible, frame_from_arrow, json_dicts, with_provenance
from flatprint.store.cache import BuildOnceCache, store_key
from flatprint.store.columns import CONNECTS_TO_COLUMNS, EDGE_COLUMNS
from flatprint.store.neurongraph import has_neuron_graph, kept_neuron_graph, neuron_graph
from flatprint.store.sql import distinct_ids, id_ranges_sql, quote_ident, sql_literal

WEIGHT_PROPERTIES = [
    "weight",
    "weightHP",
    "weightAxonAxon",
    "weightAxonDendrite",
    "weightDendriteDendrite",
    "weightDendriteAxon",
]
_POLARITY = set(WEIGHT_PROPERTIES[2:])


def _weight_props(weight_props, client) -> list[str]:
    """The extra (non-'weight') connection properties to return, in canonical order."""
    if weight_props is None:
        wanted, everything = ["weight"], False
    elif weight_props == "all":
        wanted, everything = list(WEIGHT_PROPERTIES), True
    elif isinstance(weight_props, str):
        wanted, everything = [weight_props], False
    else:
        wanted, everything = list(weight_props), False
    unknown = set(wanted) - set(WEIGHT_PROPERTIES)
    if unknown:
        raise QueryError(f"weight_props: unknown {sorted(unknown)}; choose from {WEIGHT_PROPERTIES}")
    missing = (_POLARITY & set(wanted)) - set(CONNECTS_TO_COLUMNS)
    if missing:
        wanted = [p for p in wanted if p not in missing]
        if not everything:
            warnings.warn(
                "This dataset doesn't have axon/dendrite polarity information, so these "
                f"weight_props are omitted: {sorted(missing)}",
                stacklevel=3,
            )
    return [p for p in WEIGHT_PROPERTIES if p != "weight" and p in wanted]


def _body_set_sql(client, criteria: NeuronCriteria, alias: str) -> str:
    return f"SELECT {alias}.bodyId FROM {criteria.table(client)} {alias} WHERE {criteria.where(client, alias)}"


def _count(client, criteria) -> int:
    return client.sql(f"SELECT count(*) FROM {criteria.table(client)} n WHERE {criteria.where(client, 'n')}")[1][0][0]


def _bodies(client, criteria) -> list[int]:
    return [r[0] for r in client.sql(f"{_body_set_sql(client, criteria, 'n')} ORDER BY 1")[1]]


def _no_match(client, argument: str, criteria) -> QueryError:
    """'no neurons match', with the criteria values that match nothing and what they may have meant."""
    hints = unmatched_values(criteria, client)
    return QueryError(f"{argument}: no neurons match {criteria!r}" + "".join(f"\n  {h}" for h in hints))


# Neuron-only copies of the connection tables (flatprint.ingest.summaries): ~1/30 of the rows at full
# scale, read instead of the full tables when both body sets hold only :Neuron bodies.
NEURON_EDGE_TABLES = (
    "neuron_connections",
    "neuron_connections_by_post",
    "neuron_connection_rois",
    "neuron_connection_rois_by_post",
)


@dataclass(frozen=True)
class EdgeScan:
    """The connections between two body sets, read from the copy of the connection table sorted by
    the smaller (driving) side: ``connections`` when the sources drive (``downstream``), else
    ``connections_by_post`` (their neuron-only copies when ``neurons``: both sets hold only
    :Neuron bodies). ``other_filter`` is a condition on the other side's body (``c.<other>``)."""

    downstream: bool
    driver_ids: tuple[int, ...]
    other_filter: str
    min_weight: int
    neurons: bool = False
    other_sql: str = ""  # the other side's body set (SELECT bodyId ...); "" for every partner
    other_ids: tuple[int, ...] | None = None  # that set's ids when they were read already

    @property
    def driver(self) -> str:
        return "body_pre" if self.downstream else "body_post"

    @property
    def table(self) -> str:
        table = "connections" if self.downstream else "connections_by_post"
        return f"neuron_{table}" if self.neurons else table

    def roi_table(self, client) -> str:
        """The per-ROI table sorted by the same side (stores from before connection_rois_by_post
        existed fall back to the main copy)."""
        if self.neurons:
            return "neuron_connection_rois" if self.downstream else "neuron_connection_rois_by_post"
        if self.downstream or not client.store.has_table("connection_rois_by_post"):
            return "connection_rois"
        return "connection_rois_by_post"

    def roi_rows_filter(self, ids) -> str:
        """A filter of the per-ROI table (alias ``r``, :meth:`roi_table`) to the driving side's ``ids``.

        Over the small neuron-only tables an IN list costs less per row than hundreds of ranges;
        over the full ones the ranges skip row groups and the IN list tests the rest's rows: 75
        instead of 130 ms for 100 bodies' 185 k rows of connection_rois at full scale."""
        ids = distinct_ids(ids)
        if not len(ids):
            return "FALSE"
        in_list = f"r.{self.driver} IN ({', '.join(map(str, ids.tolist()))})"
        return in_list if self.neurons else f"{in_list} AND {id_ranges_sql(f'r.{self.driver}', ids, gap=0)}"

    def sql(self) -> str:
        # On the full tables the id ranges let DuckDB prune row groups by the sort order (zone maps);
        # the IN list then tests the rows of the row groups read faster than the ranges do (60 vs
        # 120 ms for 100 bodies' 10^5 rows of connections at full scale).
        columns = ", ".join(f"c.{column}" for column in EDGE_COLUMNS)
        other = f" AND {self.other_filter}" if self.other_filter else ""
        ranges = "" if self.neurons else f" AND {id_ranges_sql(f'c.{self.driver}', self.driver_ids, gap=0)}"
        return (
            f"SELECT {columns} FROM {self.table} c "
            f"WHERE c.{self.driver} IN ({', '.join(map(str, self.driver_ids))}){ranges}{other} "
            f"AND c.weight >= {int(self.min_weight)}"
        )


def _only_neurons(client, criteria) -> bool:
    """True when every body ``criteria`` matches is a :Neuron (it matches at least one)."""
    if criteria.label == "Neuron":
        return True
    if criteria.is_empty():
        return False  # every :Segment
    found = client.sql(f"SELECT bool_and(n.is_neuron) FROM segments n WHERE {criteria.where(client, 'n')}")
    return found[1][0][0] is True


def _side(client, criteria, graph=None) -> tuple[int, list[tuple[int, bool]] | None]:
    """How many bodies ``criteria`` matches and, when it lists body ids (few bodies, typically the
    driving side), their (bodyId, is_neuron) rows in id order, read by the same query. With the
    neuron ``graph`` at hand, criteria that are only body ids, all of them neurons, and the empty
    :Neuron criteria are answered from it without SQL."""
    if graph is not None and criteria.bodyId and _only_body_ids(criteria):
        ids = np.unique(np.asarray(criteria.bodyId, dtype=np.int64))
        if graph.positions(ids)[1].all():
            return len(ids), [(b, True) for b in ids.tolist()]
    if not criteria.bodyId:
        if graph is not None and criteria.label == "Neuron" and criteria.is_empty():
            return len(graph.body_ids), None
        return _count(client, criteria), None
    rows = client.sql(
        f"SELECT n.bodyId, n.is_neuron FROM {criteria.table(client)} n WHERE {criteria.where(client, 'n')} ORDER BY 1"
    )[1]
    return len(rows), rows


def _only_body_ids(criteria) -> bool:
    """True when ``criteria`` select by body id and nothing else (the label aside)."""
    rest = copy.copy(criteria)
    rest.bodyId = []
    return rest.is_empty()


def _edge_scan(client, sources, targets, min_weight: int, graph=None) -> EdgeScan:
    """Connections between two body sets. The smaller side drives the scan of the table sorted by it.
    ``graph``: the store's neuron graph, which may answer which bodies are neurons."""
    (n_src, src_rows), (n_tgt, tgt_rows) = _side(client, sources, graph), _side(client, targets, graph)
    if n_src == 0:
        raise _no_match(client, "sources", sources)
    if n_tgt == 0:
        raise _no_match(client, "targets", targets)
    downstream = n_src <= n_tgt
    driver_crit, driver, other, other_crit, other_rows = (
        (sources, src_rows, "body_post", targets, tgt_rows)
        if downstream
        else (targets, tgt_rows, "body_pre", sources, src_rows)
    )
    if driver is None:
        driver = client.sql(
            f"SELECT n.bodyId, n.is_neuron FROM {driver_crit.table(client)} n "
            f"WHERE {driver_crit.where(client, 'n')} ORDER BY 1"
        )[1]
    neurons = (
        all(client.store.has_table(t) for t in NEURON_EDGE_TABLES)
        and all(is_neuron for _, is_neuron in driver)
        and (all(n for _, n in other_rows) if other_rows is not None else _only_neurons(client, other_crit))
    )
    # The neuron-only tables hold neuron partners only: an empty :Neuron criteria needs no filter there.
    everyone = other_crit.is_empty() and (other_crit.label == "Segment" or neurons)
    other_sql = "" if everyone else _body_set_sql(client, other_crit, "m")
    other_filter = f"c.{other} IN ({other_sql})" if other_sql else ""
    other_ids = tuple(b for b, _ in other_rows) if other_sql and other_rows is not None else None
    return EdgeScan(
        downstream, tuple(b for b, _ in driver), other_filter, int(min_weight), neurons, other_sql, other_ids
    )


def _neuron_props(client, bodies, properties, neurons: bool = False) -> pd.DataFrame:
    """``properties`` of ``bodies`` (sorted by bodyId): a semi join with a table of the ids, bounded by
    a few id ranges so that DuckDB skips the row groups of ``segments`` (sorted by bodyId) outside
    them. An IN list of ~10^5 partners took 4 s (0.2 s this way, scale 0.01); hundreds of ranges cost
    more per row than they save, and over scattered ids even 16 do (scale 0.1). ``neurons``: every
    body is a :Neuron, so the (much smaller) ``neurons`` table holds them; else the few non-neurons
    with a value may answer for the rest (:func:`_segment_props`)."""
    if not neurons:
        found = _segment_props(client, bodies, properties)
        if found is not None:
            return found
    table = "neurons" if neurons and client.store.has_table("neurons") else "segments"
    cols = ", ".join(f"n.{quote_ident(p)} AS {quote_ident(p)}" for p in properties)
    ids = distinct_ids(bodies)
    with client.temporary_tables(bodies=pa.table({"bodyId": ids})) as t:
        return client.frame(
            f"SELECT {cols} FROM {table} n SEMI JOIN {t['bodies']} b ON b.bodyId = n.bodyId "
            f"WHERE {id_ranges_sql('n.bodyId', ids, most=4)} ORDER BY n.bodyId"
        )


# Non-neuron segments with a value in any of a property set: kept per store and property set when at
# most ANNOTATED_ROWS of them (None: more, the scan of ``segments`` answers).
ANNOTATED_ROWS = 1 << 18
KEEP_ANNOTATED = 8
# (the neurons' ids are kept there too)
_annotated: BuildOnceCache[pa.Table | np.ndarray | None] = BuildOnceCache(max_entries=lambda: KEEP_ANNOTATED)


def _annotated_non_neurons(client, properties: tuple[str, ...]) -> pa.Table | None:
    """bodyId and ``properties`` (bodyId among them) of the non-neuron segments with any of them
    non-NULL, in bodyId order; None when there are more than ANNOTATED_ROWS (a count property is never
    NULL)."""

    def build():
        others = [p for p in properties if p != "bodyId"]
        if not others:
            return pa.table({"bodyId": pa.array([], pa.int64())})
        cols = ", ".join(quote_ident(p) for p in properties)
        # One SELECT per property: a lone IS NOT NULL filter reaches the scan, whose zone maps skip the
        # row groups where it is all NULL (6 ms at full scale; an OR of them scanned all 74 M rows, 2.5
        # s). No ORDER BY: the LIMIT stops the scan early when a property is dense.
        rows = (
            client.cursor()
            .sql(
                " UNION ALL ".join(
                    f"SELECT {cols} FROM segments WHERE {quote_ident(p)} IS NOT NULL AND NOT is_neuron" for p in others
                )
                + f" LIMIT {ANNOTATED_ROWS + 1}"
            )
            .to_arrow_table()
        )
        if len(rows) > ANNOTATED_ROWS:
            return None
        rows = rows.take(pc.sort_indices(rows, [("bodyId", "ascending")]))
        ids = rows.column("bodyId").to_numpy()
        first = np.ones(len(ids), dtype=bool)  # a body with values in two properties came twice
        first[1:] = ids[1:] != ids[:-1]
        return rows.filter(pa.array(first))

    return _annotated.get((*store_key(client.store), properties), build)


def _neuron_ids(client) -> np.ndarray:
    """The body ids of ``neurons``, ascending (1.3 MB at full scale), read once per store and kept:
    the partners' neurons then join with ``neurons`` alone (a few thousand of ~10^5 partners)."""
    return _annotated.get(
        (*store_key(client.store), "neuron ids"),
        lambda: client.cursor().sql("SELECT bodyId FROM neurons ORDER BY bodyId").fetchnumpy()["bodyId"],
    )


def _segment_props(client, bodies, properties) -> pd.DataFrame | None:
    """_neuron_props of any bodies without a scan of ``segments`` (74 M rows at full scale, a few
    thousand row groups, every one holding some of ~10^5 scattered partners): the neurons' rows from
    ``neurons``, the others' from :func:`_annotated_non_neurons`, NULL where that has none. Every body
    of ``connections`` is a segment (ingest takes both from the same synapses). None when the store has
    no ``neurons`` table, a property is not a plain column or too many non-neurons have values."""
    properties = tuple(properties)
    if "bodyId" not in properties or not client.store.has_table("neurons"):
        return None
    annotated = _annotated_non_neurons(client, properties)
    if annotated is None:
        return None
    ids = distinct_ids(bodies)
    neuron_ids = _neuron_ids(client)
    at = np.minimum(np.searchsorted(neuron_ids, ids), max(len(neuron_ids) - 1, 0))
    is_neuron = neuron_ids[at] == ids if len(neuron_ids) else np.zeros(len(ids), dtype=bool)
    cols = ", ".join(f"n.{quote_ident(p)} AS {quote_ident(p)}" for p in properties)
    with client.temporary_tables(bodies=pa.table({"bodyId": ids[is_neuron]})) as t:
        relation = client.cursor().sql(
            f"SELECT {cols} FROM neurons n SEMI JOIN {t['bodies']} b ON b.bodyId = n.bodyId "
            f"WHERE {id_ranges_sql('n.bodyId', ids[is_neuron], most=4)}"
        )
        if not all(arrow_convertible(kind) for kind in relation.types):
            return None
        found = relation.to_arrow_table()
    rest = ids[~is_neuron]
    known = annotated.column("bodyId").to_numpy()
    at = np.minimum(np.searchsorted(known, rest), max(len(known) - 1, 0))
    hit = known[at] == rest if len(known) else np.zeros(len(rest), dtype=bool)
    picks = pa.array(at, mask=~hit)
    others = pa.table(
        {
            p: pa.array(rest) if p == "bodyId" else annotated.column(p).take(picks).cast(found.schema.field(p).type)
            for p in properties
        }
    )
    both = pa.concat_tables([found, others])
    return frame_from_arrow(both.take(pc.sort_indices(both, [("bodyId", "ascending")])))


# Between neurons, fetch_adjacencies, fetch_reach and connection_matrix by a property answer from
# the store's neuron graph in RAM (flatprint.store.neurongraph; built once per store and process),
# through flatprint.query.graphanswers. False: always through SQL.
USE_NEURON_GRAPH = True


def _graph_for(client, neurons: bool, build: bool = True):
    """The store's neuron graph when the answer lies inside it (``neurons``) and it may be used;
    ``build=False``: only if it is built already."""
    if neurons and USE_NEURON_GRAPH and has_neuron_graph(client.store):
        return neuron_graph(client.store) if build else kept_neuron_graph(client.store)
    return None


def _prepare(obj, client, rois):
    crit = copy_as_neuroncriteria(obj, client)
    if rois and not crit.rois:
        crit.rois, crit.roi_req = set(rois), "any"
    return crit


@inject_client
def fetch_adjacencies(
    sources=None,
    targets=None,
    rois=None,
    min_roi_weight=1,
    min_total_weight=1,
    include_nonprimary=False,
    export_dir=None,
    batch_size=200,
    properties=["type", "instance"],
    *,
    weight_props="all",
    omit_rois=False,
    threads=4,
    allow_all=False,
    client=None,
):
    """Connections between two neuron sets, per ROI (by the post-synaptic point), as neuprint-python returns them.

    Returns ``(neurons_df, roi_conn_df)``; with ``omit_rois=True`` one row per body pair with total
    weights. ``batch_size`` and ``threads`` are accepted for compatibility (the store needs no batching).
    ``allow_all=True`` is required when neither side has any criteria (the whole connectome).
    """
    rois = [rois] if isinstance(rois, str) else list(rois or [])
    if omit_rois:
        if rois:
            raise QueryError("rois: can't filter by ROI when omit_rois=True (per-ROI weights are needed)")
        if min_roi_weight > 1:
            raise QueryError("min_roi_weight: not usable with omit_rois=True; use min_total_weight")
        if include_nonprimary:
            raise QueryError("include_nonprimary has no meaning when omit_rois=True")
    check_rois("rois", rois, client.all_rois)
    nonprimary = set(rois) - set(client.primary_rois)
    if nonprimary and not include_nonprimary:
        raise QueryError(f"rois: {sorted(nonprimary)} are not primary ROIs; pass include_nonprimary=True")
    if min_roi_weight is None or min_total_weight is None or min_roi_weight < 0 or min_total_weight < 0:
        raise QueryError("min_roi_weight and min_total_weight must be non-negative integers")
    min_roi_weight = max(min_roi_weight, 1)
    min_total_weight = max(min_total_weight, min_roi_weight)
    properties = list(properties)
    if "bodyId" not in properties:
        properties = ["bodyId", *properties]
    extra = _weight_props(weight_props, client)
    src, tgt = _prepare(sources, client, rois), _prepare(targets, client, rois)
    if src.is_empty() and tgt.is_empty() and not allow_all:
        raise QueryError(
            "sources and targets: both are empty criteria, which selects the whole connectome; "
            "narrow one of them or pass allow_all=True"
        )
    query = (
        f"fetch_adjacencies({src!r}, {tgt!r}, rois={rois}, min_roi_weight={min_roi_weight}, "
        f"min_total_weight={min_total_weight}, include_nonprimary={include_nonprimary}, omit_rois={omit_rois})"
    )
    edge_min = min_total_weight if omit_rois else 1
    # a graph built already tells which listed bodies are neurons without SQL
    scan = _edge_scan(client, src, tgt, edge_min, _graph_for(client, True, build=False))
    extra_sql = "".join(f", e.{CONNECTS_TO_COLUMNS[p]} AS {quote_ident(p)}" for p in extra)
    graph = _graph_for(client, scan.neurons)

    ends = None  # with the graph: the positions of the bodies in conn_df's rows
    if graph is not None:
        conn_df, ends = (
            graph_totals(client, graph, scan, extra)
            if omit_rois
            else graph_adjacencies(client, graph, scan, rois, min_roi_weight, min_total_weight, include_nonprimary)
        )
    elif omit_rois:
        conn_df = client.frame(
            f"SELECT e.body_pre AS bodyId_pre, e.body_post AS bodyId_post, e.weight{extra_sql} "
            f"FROM ({scan.sql()}) e ORDER BY 1, 2"
        )
    else:
        primary = ", ".join(sql_literal(r) for r in client.primary_rois)
        roi_filter = "" if include_nonprimary else f"AND r.roi IN ({primary})"
        user_rois = f"AND roi IN ({', '.join(sql_literal(r) for r in rois)}) AND weight > 0" if rois else ""
        # Materialize the (few) edges first: their distinct pre bodies then bound the scan of
        # connection_rois (sorted by body_pre) in both directions.
        edges = client.cursor().sql(scan.sql()).to_arrow_table()
        roi_scan = scan.roi_rows_filter(edges.column(scan.driver).to_numpy())
        # Every partner: each per-ROI row of the driving bodies belongs to one of the edges.
        edge_join = (
            ""
            if not scan.other_filter and scan.min_weight <= 1
            else "JOIN e ON r.body_pre = e.body_pre AND r.body_post = e.body_post"
        )
        # Every kept pair weighs at least 1 (NotPrimary rows and ROI filters keep weights > 0 only;
        # with neither, its primary rows and NotPrimary sum to its weight): no totals to check then.
        totals = (
            ""
            if min_total_weight <= 1
            else f"""SEMI JOIN (SELECT body_pre, body_post FROM kept GROUP BY ALL
                                HAVING sum(weight) >= {int(min_total_weight)}) t
                 ON t.body_pre = k.body_pre AND t.body_post = k.body_post"""
        )
        with client.temporary_tables(edges=edges) as t:
            # One scan of the per-ROI table, materialized: both the per-ROI rows and the primary sums read it.
            conn_df = client.frame(f"""
            WITH e AS (SELECT * FROM {t["edges"]}),
            joined AS MATERIALIZED (
              SELECT r.body_pre, r.body_post, r.roi, r.weight
              FROM {scan.roi_table(client)} r {edge_join}
              WHERE {roi_scan}),
            per_roi AS (
              SELECT * FROM joined r WHERE TRUE {roi_filter}),
            primary_sum AS (
              SELECT r.body_pre, r.body_post, sum(r.weight) AS w
              FROM joined r WHERE r.roi IN ({primary}) GROUP BY ALL),
            not_primary AS (
              SELECT e.body_pre, e.body_post, 'NotPrimary' AS roi, (e.weight - coalesce(p.w, 0))::BIGINT AS weight
              FROM e LEFT JOIN primary_sum p ON p.body_pre = e.body_pre AND p.body_post = e.body_post
              WHERE e.weight - coalesce(p.w, 0) > 0),
            rows AS (
              SELECT * FROM per_roi UNION ALL SELECT * FROM not_primary),
            kept AS (
              SELECT * FROM rows WHERE TRUE {user_rois})
            SELECT k.body_pre AS bodyId_pre, k.body_post AS bodyId_post, k.roi, k.weight
            FROM kept k {totals}
            WHERE k.weight >= {int(min_roi_weight)}
            ORDER BY 1, 2, k.weight DESC, k.roi = 'NotPrimary', k.roi""")

    if len(conn_df) == 0:
        neurons_df = pd.DataFrame([], columns=["bodyId", "instance", "type"]).astype(
            {"bodyId": int, "instance": str, "type": str}
        )
        cols = (
            ["bodyId_pre", "bodyId_post"] + ([] if omit_rois else ["roi"]) + ["weight"] + (extra if omit_rois else [])
        )
        conn_df = pd.DataFrame([], columns=cols).astype({c: (str if c == "roi" else int) for c in cols})
        return with_provenance(neurons_df, client, query), with_provenance(conn_df, client, query)
    neurons_df = None if ends is None else graph_neuron_props_at(client, graph, ends, properties)
    if neurons_df is None:
        # (two column reads: selecting both columns as a frame costs ~0.5 ms)
        bodies = distinct_ids(np.concatenate([conn_df["bodyId_pre"].to_numpy(), conn_df["bodyId_post"].to_numpy()]))
        neurons_df = _neuron_props(client, bodies, properties, neurons=scan.neurons)
    if export_dir:
        os.makedirs(export_dir, exist_ok=True)
        neurons_df.to_csv(f"{export_dir}/neurons.csv", index=False, header=True)
        if not omit_rois:
            conn_df.to_csv(f"{export_dir}/roi-connections.csv", index=False, header=True)
        totals = client.frame(
            f"SELECT e.body_pre AS bodyId_pre, e.body_post AS bodyId_post, e.weight{extra_sql} "
            f"FROM ({scan.sql()}) e ORDER BY 1, 2"
        )
        totals.to_csv(f"{export_dir}/total-connections.csv", index=False, header=True)
    return with_provenance(neurons_df, client, query), with_provenance(conn_df, client, query)


@inject_client
def fetch_traced_adjacencies(
    export_dir=None, batch_size=200, *, weight_props="all", omit_rois=False, threads=4, client=None
):
    """fetch_adjacencies between all Traced, non-cropped neurons."""
    criteria = NeuronCriteria(status="Traced", cropped=False, client=client)
    return fetch_adjacencies(
        criteria,
        criteria,
        export_dir=export_dir,
        batch_size=batch_size,
        weight_props=weight_props,
        omit_rois=omit_rois,
        threads=threads,
        client=client,
    )


@inject_client
def fetch_simple_connections(
    upstream_criteria=None,
    downstream_criteria=None,
    rois=None,
    min_weight=1,
    properties=["type", "instance"],
    *,
    weight_props="all",
    client=None,
):
    """One row per connection between the two neuron sets, heaviest first, with both sides' properties."""
    rois = [rois] if isinstance(rois, str) else list(rois or [])
    check_rois("rois", rois, client.all_rois)
    if min_weight is None or min_weight < 0:
        raise QueryError(f"min_weight must be a non-negative integer, got {min_weight!r}")
    up = copy_as_neuroncriteria(upstream_criteria, client)
    down = copy_as_neuroncriteria(downstream_criteria, client)
    if up.is_empty() and down.is_empty():
        raise QueryError("upstream_criteria and downstream_criteria: both empty selects the whole connectome")
    extra = _weight_props(weight_props, client)
    # a graph built already tells which listed bodies are neurons without SQL
    scan = _edge_scan(client, up, down, max(int(min_weight), 1), _graph_for(client, True, build=False))
    select = ["e.body_pre AS bodyId_pre", "e.body_post AS bodyId_post", "e.weight AS weight"]
    select += [f"coalesce(e.{CONNECTS_TO_COLUMNS[p]}, 0) AS {quote_ident(p)}" for p in extra]
    json_props = []
    for p in properties:
        if p == "roiInfo":
            select += ["n.roiInfo AS roiInfo_pre", "m.roiInfo AS roiInfo_post"]
            json_props += ["roiInfo_pre", "roiInfo_post"]
        elif p in client.neuron_keys:
            select += [
                f"n.{quote_ident(p)} AS {quote_ident(p + '_pre')}",
                f"m.{quote_ident(p)} AS {quote_ident(p + '_post')}",
            ]
        else:
            select += [f"NULL AS {quote_ident(p + '_pre')}", f"NULL AS {quote_ident(p + '_post')}"]
    # The edges are materialized once: their ends bound every read below. The ends' rows: a semi join
    # with their ids bounded by a few id ranges (as _neuron_props), from ``neurons`` when both sides
    # are neurons; an OR of one range per end is tested row by row (34 ms for DNge104's 48 edges at
    # scale 0.1, 8 ms this way). Each pair's per-ROI weights: one grouped read of the per-ROI table
    # sorted by the driving side, bounded by the driving ids (a subquery per edge cost 11 ms there).
    edges = client.cursor().sql(scan.sql()).to_arrow_table()
    ends = distinct_ids(np.concatenate([edges.column("body_pre").to_numpy(), edges.column("body_post").to_numpy()]))
    ends_table = "neurons" if scan.neurons and client.store.has_table("neurons") else "segments"
    roi_scan = scan.roi_rows_filter(edges.column(scan.driver).to_numpy())
    with client.temporary_tables(edges=edges, ends=pa.table({"bodyId": ends})) as t:
        df = client.frame(f"""
            WITH ends AS (
              SELECT * FROM {ends_table} s SEMI JOIN {t["ends"]} i ON i.bodyId = s.bodyId
              WHERE {id_ranges_sql("s.bodyId", ends, most=4)}),
            rois AS (
              SELECT r.body_pre, r.body_post,
                     to_json(map_from_entries(list(
                       struct_pack(k := r.roi, v := struct_pack(pre := r.pre, post := r.weight)) ORDER BY r.roi
                     )))::VARCHAR AS conn_roiInfo
              FROM {scan.roi_table(client)} r
                SEMI JOIN {t["edges"]} e ON e.body_pre = r.body_pre AND e.body_post = r.body_post
              WHERE {roi_scan}
              GROUP BY r.body_pre, r.body_post)
            SELECT {", ".join(select)}, c.conn_roiInfo
            FROM {t["edges"]} e JOIN ends n ON n.bodyId = e.body_pre JOIN ends m ON m.bodyId = e.body_post
              LEFT JOIN rois c ON c.body_pre = e.body_pre AND c.body_post = e.body_post
            ORDER BY e.weight DESC, e.body_pre, e.body_post""")
    for col in json_props + ["conn_roiInfo"]:
        df[col] = json_dicts(df[col])
    if rois:
        wanted = set(rois)
        df = df.loc[[bool(wanted & set(info)) for info in df["conn_roiInfo"]]].reset_index(drop=True)
    query = f"fetch_simple_connections({up!r}, {down!r}, rois={rois}, min_weight={min_weight})"
    return with_provenance(df, client, query)


@inject_client
def fetch_common_connectivity(
    criteria,
    search_direction="upstream",
    min_weight=1,
    properties=["type", "instance"],
    *,
    weight_props="all",
    client=None,
):
    """Partners connected to ALL of the matched neurons (upstream or downstream of them)."""
    if search_direction not in ("upstream", "downstream"):
        raise QueryError(f"search_direction must be 'upstream' or 'downstream', got {search_direction!r}")
    if search_direction == "upstream":
        df = fetch_simple_connections(
            None, criteria, min_weight=min_weight, properties=properties, weight_props=weight_props, client=client
        )
        matched, partner = "bodyId_post", "bodyId_pre"
    else:
        df = fetch_simple_connections(
            criteria, None, min_weight=min_weight, properties=properties, weight_props=weight_props, client=client
        )
        matched, partner = "bodyId_pre", "bodyId_post"
    n_matched = df[matched].nunique()
    counts = df[partner].value_counts()
    keep = counts[counts == n_matched].index
    return df[df[partner].isin(keep)]


def _path_node_filter(client, intermediate_criteria, ends) -> PathNodes:
    """Which bodies the paths may pass through: the intermediate criteria's SQL, and the ends."""
    if intermediate_criteria is None:
        crit = NeuronCriteria(status="Traced", client=client)
    else:
        crit = copy_as_neuroncriteria(intermediate_criteria, client)
    if crit.inputRois or crit.outputRois:
        raise QueryError("intermediate_criteria: inputRois/outputRois are not supported here; use rois")
    # Path nodes need not be :Neuron (neuPrint's pattern has no label on them): drop the label test.
    crit.label = "Segment"
    return PathNodes(crit.where(client, "n"), tuple(int(b) for b in ends), admits_only_neurons(crit))


def _paths_frame(client, paths, with_length: bool, neurons: bool) -> pd.DataFrame:
    bodies = sorted({b for p, _ in paths for b in p})
    graph = _graph_for(client, neurons, build=False)  # the path search over neurons has built it
    found = graph_neuron_props(client, graph, bodies, ["bodyId", "type"]) if graph is not None and bodies else None
    if found is not None:
        types = dict(zip(found["bodyId"].tolist(), found["type"].tolist()))
    elif neurons and client.store.has_table("neurons"):  # a few bodies of the small neurons table
        ids = ", ".join(map(str, bodies or [0]))
        types = dict(client.cursor().execute(f"SELECT bodyId, type FROM neurons WHERE bodyId IN ({ids})").fetchall())
    else:
        found = _neuron_props(client, bodies, ["bodyId", "type"])
        types = dict(zip(found["bodyId"], found["type"]))
    rows = {"path": [], "bodyId": [], "type": [], "weight": []}
    lengths = []
    for index, (nodes, weights) in enumerate(paths):
        for body, weight in zip(nodes, [0, *weights]):
            rows["path"].append(index)
            rows["bodyId"].append(body)
            rows["type"].append(types.get(body))
            rows["weight"].append(weight)
            lengths.append(len(nodes) - 1)
    if with_length:
        rows["path_length"] = lengths
    return pd.DataFrame(rows)


@inject_client
def fetch_paths(
    upstream_bodyId,
    downstream_bodyId,
    min_weight=1,
    intermediate_criteria=None,
    timeout=5.0,
    *,
    path_length=None,
    max_path_length=None,
    client=None,
):
    """Paths between two bodies along connections of at least ``min_weight`` (shortest, exact or max length).

    Intermediate bodies must satisfy ``intermediate_criteria`` (default: status Traced). Like neuPrint,
    a search that exceeds ``timeout`` seconds returns an empty table.
    """
    if path_length is not None and max_path_length is not None:
        raise QueryError("specify either path_length or max_path_length, not both")
    for name, value in (("path_length", path_length), ("max_path_length", max_path_length)):
        if value is not None and (not float(value).is_integer() or int(value) < 1):
            raise QueryError(f"{name} must be a positive integer, got {value!r}")
    if min_weight is None or min_weight < 1:
        raise QueryError(f"min_weight must be >= 1, got {min_weight!r}")
    ends = (int(upstream_bodyId), int(downstream_bodyId))
    nodes = _path_node_filter(client, intermediate_criteria, ends)
    if path_length is None and max_path_length is None:
        paths = all_shortest_paths(client, ends[0], ends[1], min_weight, nodes, timeout)
        return _paths_frame(client, paths, with_length=False, neurons=nodes.neurons_only)
    exact = path_length is not None
    length = int(path_length if exact else max_path_length)
    paths = paths_up_to(client, ends[0], ends[1], min_weight, nodes, length, exact, timeout)
    return _paths_frame(client, paths, with_length=True, neurons=nodes.neurons_only)


@inject_client
def fetch_shortest_paths(
    upstream_bodyId, downstream_bodyId, min_weight=1, intermediate_criteria=None, timeout=5.0, *, client=None
):
    """All shortest paths between two bodies (see fetch_paths)."""
    return fetch_paths(
        upstream_bodyId,
        downstream_bodyId,
        min_weight=min_weight,
        intermediate_criteria=intermediate_criteria,
        timeout=timeout,
        client=client,
    )


NEURON_MATRIX_TABLES = ("neurons", "neuron_connections", "neuron_roi_pairs", "roi_matrix")


def _neuron_matrix_sql(groupby: str, min_weight: int, pre_bodies=None, post_bodies=None) -> str:
    """connection_matrix_sql's answer for neurons only and no ROI filter, from the neuron-only
    tables (flatprint.ingest.summaries): ``roi_matrix`` is the whole-brain ROI x ROI matrix,
    ``neuron_roi_pairs`` its terms per neuron pair, ``neuron_connections`` the pairs' weights."""
    side = ""
    if pre_bodies is not None:
        side += " AND " + (f"c.body_pre IN ({', '.join(map(str, pre_bodies))})" if pre_bodies else "FALSE")
    if post_bodies is not None:
        side += " AND " + (f"c.body_post IN ({', '.join(map(str, post_bodies))})" if post_bodies else "FALSE")
    if groupby != "roi":
        if groupby not in GROUP_COLUMNS:
            return connection_matrix_sql(groupby)  # raises naming the choices
        col = quote_ident(groupby)
        groups = f"(SELECT bodyId, {col} AS g FROM neurons WHERE {col} IS NOT NULL)"
        return f"""SELECT a.g AS pre_group, b.g AS post_group,
       CAST(sum(c.weight) AS BIGINT) AS weight, CAST(count(*) AS BIGINT) AS connections
FROM neuron_connections c JOIN {groups} a ON a.bodyId = c.body_pre JOIN {groups} b ON b.bodyId = c.body_post
WHERE c.weight >= {min_weight}{side}
GROUP BY a.g, b.g
ORDER BY pre_group, post_group"""
    if not side and min_weight <= 1:  # every body pair has weight >= 1: the pre-summed matrix
        return """SELECT pre_roi AS pre_group, post_roi AS post_group, weight, connections
FROM roi_matrix WHERE roi_set = 'primary' ORDER BY pre_group, post_group"""
    weights = ""
    if min_weight > 1:
        weights = (
            " JOIN neuron_connections w ON w.body_pre = c.body_pre AND w.body_post = c.body_post"
            f" AND w.weight >= {min_weight}"
        )
    return f"""SELECT c.pre_roi AS pre_group, c.post_roi AS post_group,
       CAST(sum(c.weight) AS BIGINT) AS weight, CAST(count(*) AS BIGINT) AS connections
FROM neuron_roi_pairs c{weights}
WHERE c.roi_set = 'primary'{side}
GROUP BY c.pre_roi, c.post_roi
ORDER BY pre_group, post_group"""


@inject_client
def connection_matrix(
    groupby="type", sources=None, targets=None, min_weight=1, *, neurons_only=True, rois=None, client=None
) -> pd.DataFrame:
    """Connectivity aggregated by a neuron property (type×type, class×class, ...) or by ROI (ROI×ROI).

    Long form, heaviest first: ``pre``, ``post``, ``weight`` (synapses) and ``connections`` (neuron
    pairs). For a property, each neuron pair's total weight counts under (property of pre, property of
    post), pairs with weight < ``min_weight`` left out, neurons without the property left out. For
    ``groupby='roi'`` each synapse pair counts under (primary ROI of its pre point, primary ROI of its
    post point). ``sources``/``targets`` restrict the neurons, ``rois`` the synapses (by post point,
    each synapse pair once). ``df.pivot(index='pre', columns='post', values='weight')`` gives the
    square matrix. The SQL is shared with the Spark engine (flatprint.query.heavy).
    """
    if min_weight is None or min_weight < 1:
        raise QueryError(f"min_weight must be >= 1, got {min_weight!r}")
    rois = [rois] if isinstance(rois, str) else list(rois or [])
    check_rois("rois", rois, client.all_rois)
    label = "Neuron" if neurons_only else "Segment"
    sides = {}
    for name, crit in (("pre_bodies", sources), ("post_bodies", targets)):
        if crit is not None:
            c = copy_as_neuroncriteria(crit, client)
            if not neurons_only:
                c.label = label
            sides[name] = _bodies(client, c)
            if not sides[name]:
                warn_unmatched(c, client, argument=("sources." if name == "pre_bodies" else "targets."))
    df = None
    if neurons_only and not rois and groupby in GROUP_COLUMNS:
        # between neurons by a property: NumPy over the neuron graph in RAM (sorted already)
        graph = _graph_for(client, True)
        if graph is not None:
            df = graph_group_matrix(client, graph, groupby, int(min_weight), **sides)
    if df is None:
        if neurons_only and not rois and all(client.store.has_table(t) for t in NEURON_MATRIX_TABLES):
            sql = _neuron_matrix_sql(groupby, int(min_weight), **sides)
        else:
            sql = connection_matrix_sql(
                groupby, min_weight=int(min_weight), neurons_only=neurons_only, rois=rois or None, **sides
            )
        df = client.store.cursor().execute(sql).df().rename(columns={"pre_group": "pre", "post_group": "post"})
        df = df.sort_values(["weight", "pre", "post"], ascending=[False, True, True], ignore_index=True)
    query = (
        f"connection_matrix(groupby={groupby!r}, sources={sources!r}, targets={targets!r}, "
        f"min_weight={min_weight}, rois={rois})"
    )
    return with_provenance(df, client, query)


@inject_client
def fetch_reach(
    criteria, direction="downstream", hops=2, min_weight=1, *, neurons_only=True, client=None
) -> pd.DataFrame:
    """Bodies reachable from (or reaching) the matched neurons within ``hops`` connections of >= min_weight.

    Returns ``bodyId``, ``hops`` (the fewest steps needed) and ``type``, sorted by hops then bodyId;
    the starting neurons themselves are hop 0.
    """
    if direction not in ("upstream", "downstream"):
        raise QueryError(f"direction must be 'upstream' or 'downstream', got {direction!r}")
    if hops is None or int(hops) < 1:
        raise QueryError(f"hops must be >= 1, got {hops!r}")
    if min_weight is None or min_weight < 1:
        raise QueryError(f"min_weight must be >= 1, got {min_weight!r}")
    crit = copy_as_neuroncriteria(criteria, client)
    neuron_table_ok = neurons_only and all(client.store.has_table(t) for t in NEURON_EDGE_TABLES)
    _, rows = _side(client, crit, _graph_for(client, neuron_table_ok, build=False)) if crit.bodyId else (0, None)
    start = [b for b, _ in rows] if rows is not None else _bodies(client, crit)
    if not start:
        raise _no_match(client, "criteria", crit)
    table, near, far = (
        ("connections", "body_pre", "body_post")
        if direction == "downstream"
        else ("connections_by_post", "body_post", "body_pre")
    )
    neuron_join = f"JOIN segments s ON s.bodyId = c.{far} AND s.is_neuron" if neurons_only else ""
    # Between neurons the neuron-only copy answers (it lacks the edges of a starting non-neuron).
    neuron_table = f"neuron_{table}" if neuron_table_ok else None
    start_neurons = neuron_table is not None and (
        all(n for _, n in rows) if rows is not None else _only_neurons(client, crit)
    )
    graph = _graph_for(client, neuron_table is not None)
    seen = {b: 0 for b in start}
    frontier = np.array(start, dtype=np.int64)
    cur = client.cursor()
    df = None
    for hop in range(1, int(hops) + 1):
        if len(frontier) == 0:
            break
        if graph is not None and (hop > 1 or start_neurons):
            # the rest of the walk stays among neurons: breadth-first over the graph in RAM
            df = graph_reach(graph, seen, frontier, hop, int(hops), int(min_weight), direction == "downstream")
            df = _reach_frame(client, graph, df, start_neurons)
            break
        ids = ", ".join(map(str, frontier.tolist()))
        from_sql = f"{neuron_table} c" if neuron_table and (hop > 1 or start_neurons) else f"{table} c {neuron_join}"
        found = cur.execute(
            f"SELECT DISTINCT c.{far} FROM {from_sql} WHERE c.{near} IN ({ids}) AND c.weight >= {int(min_weight)}"
        ).fetchnumpy()[far]
        new = [b for b in found.tolist() if b not in seen]
        for b in new:
            seen[b] = hop
        frontier = np.array(new, dtype=np.int64)
    if df is None:
        df = pd.DataFrame({"bodyId": list(seen), "hops": list(seen.values())})
        types = _neuron_props(client, list(seen), ["bodyId", "type"], neurons=start_neurons)
        df["type"] = df["bodyId"].map(dict(zip(types["bodyId"], types["type"])))
    bodies, levels = df["bodyId"].to_numpy(), df["hops"].to_numpy()
    if not _sorted_by(levels, bodies):  # (the walk over the graph returns them sorted)
        df = df.sort_values(["hops", "bodyId"], ignore_index=True)
    return with_provenance(df, client, f"fetch_reach({crit!r}, {direction!r}, hops={hops}, min_weight={min_weight})")


def _sorted_by(first: np.ndarray, second: np.ndarray) -> bool:
    """Whether the rows are in (first, second) order, ascending."""
    if len(first) < 2:
        return True
    step = first[1:] - first[:-1]
    return bool(np.all((step > 0) | ((step == 0) & (second[1:] >= second[:-1]))))


def _reach_frame(client, graph, reached: pd.DataFrame, start_neurons: bool) -> pd.DataFrame:
    """fetch_reach's bodyId, hops and type columns (sorted by hops, then bodyId) of the bodies the
    walk over the neuron graph ``reached``: types taken from the graph's kept column in one pass when
    every body is one of its neurons, else read as _neuron_props reads them."""
    bodies, levels = reached["bodyId"].to_numpy(), reached["hops"].to_numpy()
    if not _sorted_by(levels, bodies):
        order = np.lexsort((bodies, levels))
        bodies, levels = bodies[order], levels[order]
    kept = graph.column(client.cursor(), "type") if start_neurons else None
    positions, inside = graph.positions(bodies)
    if kept is not None and arrow_convertible(kept[1]) and inside.all():
        types = kept[0].take(pa.array(positions))
    else:
        found = _neuron_props(client, bodies, ["bodyId", "type"], neurons=start_neurons)
        # every body reached is in ``found`` (sorted by bodyId): aligned by position
        at = np.searchsorted(found["bodyId"].to_numpy(), bodies)
        return pd.DataFrame({"bodyId": bodies, "hops": levels, "type": found["type"].take(at).reset_index(drop=True)})
    return frame_from_arrow(pa.table({"bodyId": bodies, "hops": levels, "type": types}))
