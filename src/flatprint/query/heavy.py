"""Heavy analytical queries, written ONCE as SQL (DuckDB dialect) and run on DuckDB or on Spark.

Each ``*_sql`` function returns SQL text over the store's *logical* table names (``segments``,
``connections``, ``connection_rois``, ``partners``, ``synapses``, ``rois``, ``roi_map``;
docs/store.md). The same text runs

* on a store with :func:`run_duckdb` (the tables are the store's own), or on DuckDB views over a
  Parquet export (:func:`flatprint.export.parquet.duckdb_over_parquet`), or
* on Spark over a Parquet export (``flatprint export parquet``) with
  :func:`flatprint.export.spark.run_spark`, which transpiles it with :func:`to_spark_sql` (sqlglot,
  ``read="duckdb", write="spark"``) and runs it on a SparkSession whose temp views carry the same
  names. The runners over exports live in flatprint.export: the library does not import the
  exporters.

Queries (``QUERIES`` maps the names used by ``run_*``):

``connection_matrix``  :func:`connection_matrix_sql` — group × group weights (type, class, superclass,
                       instance, or ROI × ROI), long form.
``synapse_connections`` :func:`synapse_connections_sql` — every synapse pair between two body sets.
``adjacencies``        :func:`adjacencies_sql` — the connections of many bodies, optionally per ROI.

Every query ends in an ORDER BY over its key columns, so results are deterministic on both engines.
Arguments are validated (bad ones raise :class:`flatprint.errors.QueryError` naming the argument) and
rendered as literals (body ids as integers, ROI names as quoted strings); nothing user-supplied is
pasted into SQL unchecked. Body sets are inlined as ``IN (...)`` lists: fine for thousands of ids; for
hundreds of thousands, join a table of ids in your own SQL instead.
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb
import pandas as pd

from flatprint.errors import QueryError
from flatprint.store import Store
from flatprint.store.sql import quote_ident, sql_literal

GROUP_COLUMNS = (
    "type",
    "class",
    "superclass",
    "subclass",
    "instance",
    "predictedNt",
    "consensusNt",
    "somaSide",
    "status",
)
GROUPBY_CHOICES = (*GROUP_COLUMNS, "roi")
ROI_SETS = ("primary", "major")
DIRECTIONS = ("out", "in", "both", "within")


# ----------------------------------------------------------------------------- argument rendering


def _bodies(bodies: Iterable[int] | int, what: str) -> list[int]:
    if isinstance(bodies, (int, str)) and not isinstance(bodies, bool):
        bodies = [bodies]
    out = []
    for b in bodies:
        try:
            out.append(int(b))
        except (TypeError, ValueError):
            raise QueryError(f"{what}: body ids must be integers, got {b!r}") from None
    return sorted(set(out))


def _number(value, what: str, kind=int):
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise QueryError(f"{what} must be a number, got {value!r}") from None


def _in_list(expr: str, values: list, render=str) -> str:
    """``expr IN (...)``, or FALSE for an empty list (``IN ()`` is not valid SQL)."""
    if not values:
        return "FALSE"
    return f"{expr} IN ({', '.join(render(v) for v in values)})"


def _rois(rois: Iterable[str] | str | None) -> list[str] | None:
    if rois is None:
        return None
    if isinstance(rois, str):
        rois = [rois]
    return sorted({str(r) for r in rois})


def _post_in_rois(alias: str, rois: list[str]) -> str:
    """The post-synaptic point (synapses row ``alias``) lies in one of ``rois`` (any hierarchy level)."""
    names = ", ".join(sql_literal(r) for r in rois) if rois else "NULL"
    return (
        f"({alias}.primary_label IN (SELECT label FROM roi_map WHERE roi_set = 'primary' AND roi IN ({names}))"
        f" OR {alias}.major_label IN (SELECT label FROM roi_map WHERE roi_set = 'major' AND roi IN ({names})))"
    )


# partners holds a pair's synapse ids and bodies; its ends' labels, locations and confidences are
# the synapses rows with those ids (docs/store.md).
_PRE_END = "JOIN synapses sa ON sa.syn_id = p.pre_id"
_POST_END = "JOIN synapses sb ON sb.syn_id = p.post_id"


# ----------------------------------------------------------------------------- the queries


def connection_matrix_sql(
    groupby: str = "type",
    min_weight: int = 1,
    neurons_only: bool = True,
    roi_set: str = "primary",
    *,
    pre_bodies: Iterable[int] | None = None,
    post_bodies: Iterable[int] | None = None,
    rois: Iterable[str] | None = None,
) -> str:
    """Group × group connection matrix in long form: ``pre_group, post_group, weight, connections``.

    groupby: ``'type' | 'class' | 'superclass' | 'instance'`` — bodies are grouped by that property;
        bodies where it is NULL are left out. ``weight`` = sum of the body-pair weights (synapse
        pairs) from group A to group B, ``connections`` = number of body pairs (A-body → B-body).
        ``'roi'`` — ROI × ROI: ``pre_group`` is the ROI (of ``roi_set``, default primary) of the
        T-bar, ``post_group`` the ROI of the PSD; ``weight`` = synapse pairs, ``connections`` =
        distinct body pairs with at least one such synapse pair. Points outside every ROI of the set
        are left out.
    min_weight: a body pair counts only if its total weight (all synapses, all ROIs) is ≥ min_weight.
    neurons_only: both bodies must be :Neuron (``segments.is_neuron``); else every :Segment counts.
    roi_set: ``'primary' | 'major'`` (only for ``groupby='roi'``).
    pre_bodies / post_bodies: restrict the pre / post side to these body ids (None = all).
    rois: count only synapse pairs whose PSD lies in one of these ROIs (any hierarchy level; each
        pair counted once however many listed ROIs contain it). With a property ``groupby`` the pair
        weight becomes the number of such synapse pairs, and pairs with none are left out.

    Rows are ordered by ``pre_group, post_group``; every row has ``weight ≥ 1``.
    """
    if groupby not in GROUPBY_CHOICES:
        raise QueryError(f"groupby must be one of {GROUPBY_CHOICES}, got {groupby!r}")
    if roi_set not in ROI_SETS:
        raise QueryError(f"roi_set must be one of {ROI_SETS}, got {roi_set!r}")
    min_weight = _number(min_weight, "min_weight")
    roi_list = _rois(rois)
    side = []
    if pre_bodies is not None:
        side.append(_in_list("c.body_pre", _bodies(pre_bodies, "pre_bodies")))
    if post_bodies is not None:
        side.append(_in_list("c.body_post", _bodies(post_bodies, "post_bodies")))
    side_sql = "".join(f" AND {cond}" for cond in side)
    if groupby != "roi":
        col = quote_ident(groupby)
        neuron = " AND a.is_neuron AND b.is_neuron" if neurons_only else ""
        weight, roi_join = "c.weight", ""
        if roi_list is not None:
            roi_join = f"""
JOIN (SELECT p.body_pre, p.body_post, count(*) AS weight FROM partners p {_POST_END}
      WHERE {_post_in_rois("sb", roi_list)} GROUP BY p.body_pre, p.body_post) w
  ON w.body_pre = c.body_pre AND w.body_post = c.body_post"""
            weight = "w.weight"
        return f"""SELECT a.{col} AS pre_group, b.{col} AS post_group,
       CAST(sum({weight}) AS BIGINT) AS weight, CAST(count(*) AS BIGINT) AS connections
FROM connections c{roi_join}
JOIN segments a ON a.bodyId = c.body_pre
JOIN segments b ON b.bodyId = c.body_post
WHERE c.weight >= {min_weight} AND a.{col} IS NOT NULL AND b.{col} IS NOT NULL{neuron}{side_sql}
GROUP BY a.{col}, b.{col}
ORDER BY pre_group, post_group"""
    neuron_join = (
        (
            "\n  JOIN segments a ON a.bodyId = p.body_pre AND a.is_neuron"
            "\n  JOIN segments b ON b.bodyId = p.body_post AND b.is_neuron"
        )
        if neurons_only
        else ""
    )
    roi_where = f"\n  WHERE {_post_in_rois('sb', roi_list)}" if roi_list is not None else ""
    # label -> the set's ROI through roi_map: a store with ROI levels beyond primary and major keeps
    # combined labels in major_label (flatprint.ingest), which only roi_map resolves.
    labels = (
        f"(SELECT m.label, m.roi FROM roi_map m JOIN rois r ON r.roi = m.roi AND r.roi_set = {sql_literal(roi_set)} "
        f"WHERE m.roi_set = {sql_literal(roi_set)})"
    )
    return f"""WITH pairs AS (
  SELECT rp.roi AS pre_group, rq.roi AS post_group, p.body_pre, p.body_post, count(*) AS n
  FROM partners p
  {_PRE_END}
  {_POST_END}
  JOIN connections c
    ON c.body_pre = p.body_pre AND c.body_post = p.body_post AND c.weight >= {min_weight}{side_sql}{neuron_join}
  JOIN {labels} rp ON rp.label = sa.{roi_set}_label
  JOIN {labels} rq ON rq.label = sb.{roi_set}_label{roi_where}
  GROUP BY rp.roi, rq.roi, p.body_pre, p.body_post)
SELECT pre_group, post_group, CAST(sum(n) AS BIGINT) AS weight, CAST(count(*) AS BIGINT) AS connections
FROM pairs
GROUP BY pre_group, post_group
ORDER BY pre_group, post_group"""


def synapse_connections_sql(
    pre_bodies: Iterable[int], post_bodies: Iterable[int], rois: Iterable[str] | None = None, min_conf: float = 0.0
) -> str:
    """Every synapse pair from a body in ``pre_bodies`` to a body in ``post_bodies``.

    Columns: ``body_pre, body_post, pre_id, post_id, x_pre, y_pre, z_pre, x_post, y_post, z_post,
    conf_pre, conf_post, roi_pre, roi_post`` (``roi_*`` = primary ROI of that point, NULL outside).
    rois: keep pairs whose PSD lies in any of these ROIs (at any hierarchy level, as neuPrint counts).
    min_conf: keep pairs with both ``conf_pre`` and ``conf_post`` ≥ min_conf.
    Ordered by ``pre_id, post_id``.
    """
    pre = _bodies(pre_bodies, "pre_bodies")
    post = _bodies(post_bodies, "post_bodies")
    roi_list = _rois(rois)
    min_conf = _number(min_conf, "min_conf", float)
    # the ends' body filters are implied by the pairs'; they let a sorted synapses table skip row groups
    where = [
        _in_list("p.body_pre", pre),
        _in_list("p.body_post", post),
        _in_list("sa.body", pre),
        _in_list("sb.body", post),
    ]
    if min_conf > 0:
        where.append(f"sa.conf >= {min_conf!r} AND sb.conf >= {min_conf!r}")
    if roi_list is not None:
        where.append(_post_in_rois("sb", roi_list))
    return f"""SELECT p.body_pre, p.body_post, p.pre_id, p.post_id,
       sa.x AS x_pre, sa.y AS y_pre, sa.z AS z_pre, sb.x AS x_post, sb.y AS y_post, sb.z AS z_post,
       sa.conf AS conf_pre, sb.conf AS conf_post, rp.roi AS roi_pre, rq.roi AS roi_post
FROM partners p
{_PRE_END}
{_POST_END}
LEFT JOIN rois rp ON rp.roi_set = 'primary' AND rp.label = sa.primary_label
LEFT JOIN rois rq ON rq.roi_set = 'primary' AND rq.label = sb.primary_label
WHERE {" AND ".join(where)}
ORDER BY p.pre_id, p.post_id"""


def adjacencies_sql(
    bodies: Iterable[int],
    direction: str = "both",
    min_weight: int = 1,
    rois: Iterable[str] | None = None,
    min_roi_weight: int = 1,
) -> str:
    """The connections (body-pair weights) of many bodies at once.

    direction: ``'out'`` — body_pre in ``bodies``; ``'in'`` — body_post in ``bodies``;
        ``'both'`` — either end in ``bodies``; ``'within'`` — both ends in ``bodies``.
    min_weight: keep body pairs whose total weight ≥ min_weight.
    rois: None → columns ``body_pre, body_post, weight, weight_hp`` (one row per pair);
        a list → ``body_pre, body_post, roi, weight`` (one row per pair and listed ROI, weight = PSDs
        of the pair in that ROI, rows with weight < ``min_roi_weight`` left out).
    Ordered by ``body_pre, body_post`` (then ``roi``).
    """
    if direction not in DIRECTIONS:
        raise QueryError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    ids = _bodies(bodies, "bodies")
    pre_in, post_in = _in_list("c.body_pre", ids), _in_list("c.body_post", ids)
    cond = {"out": pre_in, "in": post_in, "both": f"({pre_in} OR {post_in})", "within": f"{pre_in} AND {post_in}"}[
        direction
    ]
    min_weight = _number(min_weight, "min_weight")
    min_roi_weight = _number(min_roi_weight, "min_roi_weight")
    roi_list = _rois(rois)
    if roi_list is None:
        return f"""SELECT c.body_pre, c.body_post, c.weight, c.weight_hp
FROM connections c
WHERE {cond} AND c.weight >= {min_weight}
ORDER BY c.body_pre, c.body_post"""
    return f"""SELECT c.body_pre, c.body_post, r.roi, r.weight
FROM connections c
JOIN connection_rois r ON r.body_pre = c.body_pre AND r.body_post = c.body_post
WHERE {cond} AND c.weight >= {min_weight} AND {_in_list("r.roi", roi_list, sql_literal)}
  AND r.weight >= {min_roi_weight}
ORDER BY c.body_pre, c.body_post, r.roi"""


QUERIES = {
    "connection_matrix": connection_matrix_sql,
    "synapse_connections": synapse_connections_sql,
    "adjacencies": adjacencies_sql,
}
TABLES = ("segments", "connections", "connection_rois", "partners", "synapses", "rois", "roi_map")


def query_sql(name: str, **args) -> str:
    """The DuckDB-dialect SQL of query ``name`` with ``args``."""
    try:
        fn = QUERIES[name]
    except KeyError:
        raise QueryError(f"unknown heavy query {name!r}; choose from {sorted(QUERIES)}") from None
    return fn(**args)


def to_spark_sql(sql: str) -> str:
    """Transpile DuckDB-dialect SQL to Spark SQL with sqlglot."""
    import sqlglot  # noqa: PLC0415 - optional dependency (the test extra): SQL dialect translation

    return sqlglot.transpile(sql, read="duckdb", write="spark")[0]


# ----------------------------------------------------------------------------- engines


def run_duckdb(store, name: str, **args) -> pd.DataFrame:
    """Run query ``name`` on a store: ``store`` is a :class:`flatprint.store.Store`, a store path, or a
    DuckDB connection whose catalog has the logical tables (e.g.
    :func:`flatprint.export.parquet.duckdb_over_parquet`)."""

    sql = query_sql(name, **args)
    if isinstance(store, duckdb.DuckDBPyConnection):
        return store.execute(sql).df()
    if isinstance(store, Store):
        return store.cursor().execute(sql).df()
    st = Store.open(store)
    try:
        return st.cursor().execute(sql).df()
    finally:
        st.close()
