"""Whole SQL statements of the Cypher engine: the only place (with expressions.py) that writes SQL.

The planner describes a match as FROM items, conditions and selected columns; the executor, the
graph model (schema.py) and the column-wise answers (columnar.py) ask here for the statements they
run. Every statement reads the store's tables as docs/store.md describes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from flatprint.cypher.values import POINT_CRS
from flatprint.store.sql import id_ranges_sql, quote_ident

# ---- SELECT and its clauses ---------------------------------------------------------------------


def select_statement(
    columns: list[tuple[str, str]],
    from_where: str,
    *,
    distinct: bool = False,
    group_by: list[int] = (),
    order_by: list[tuple[int, bool]] | None = None,
    limit: int | None = None,
    offset: int | None = None,
) -> str:
    """``SELECT [DISTINCT] sql AS name, ... <from_where> [GROUP BY] [ORDER BY] [LIMIT] [OFFSET]``.

    ``group_by`` and ``order_by`` refer to columns by 1-based position; ``order_by`` is (position,
    descending) with Cypher's null order (last ascending, first descending).
    """
    select_list = ", ".join(f"{c} AS {quote_ident(n)}" for c, n in columns)
    sql = f"SELECT {'DISTINCT ' if distinct else ''}{select_list}{from_where}"
    if group_by:
        sql += " GROUP BY " + ", ".join(str(p) for p in group_by)
    if order_by:
        sql += " ORDER BY " + ", ".join(f"{p} {'DESC NULLS FIRST' if d else 'ASC NULLS LAST'}" for p, d in order_by)
    return with_limit(sql, limit, offset)


def with_limit(sql: str, limit: int | None, offset: int | None = None) -> str:
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    if offset:
        sql += f" OFFSET {int(offset)}"
    return sql


def aggregate_call(name: str, argument_sql: str | None, distinct: bool) -> str:
    """An aggregation in SQL with Cypher's meaning (``count(*)`` for argument None; sum of nothing is 0)."""
    if argument_sql is None:
        return "count(*)"
    inner = f"{'DISTINCT ' if distinct else ''}{argument_sql}"
    return f"coalesce(sum({inner}), 0)" if name == "sum" else f"{name}({inner})"


def body_pair(alias: str) -> str:
    """A ConnectsTo row's (pre, post) bodies as one list value."""
    return f"[{alias}.body_pre, {alias}.body_post]"


def all_of(terms: list[str]) -> str | None:
    return " AND ".join(terms) or None


# ---- a planned match ----------------------------------------------------------------------------


@dataclass
class FromItem:
    """One FROM item of a match: ``form`` 'table' (``table alias``), 'body_ids' (every body of
    ``table``: a SynapseSet tied to no node), 'both_directions' (``table`` read both ways: an
    undirected ConnectsTo or SynapsesTo) or 'bound' (the rows of earlier clauses)."""

    table: str
    alias: str
    form: str = "table"


def from_item_sql(item: FromItem) -> str:
    if item.form == "table":
        return f"{item.table} {item.alias}"
    if item.form == "bound":
        return f"bound {item.alias}"
    if item.form == "body_ids":
        return f"(SELECT bodyId FROM {item.table}) {item.alias}"
    if item.table.endswith("partners"):
        # each synapse pair once per direction: the pattern's start is either end of the
        # relationship, whose own direction (pre_id -> post_id) stays as stored
        return (
            "(SELECT pre_id AS near, post_id AS far, body_pre AS near_body, body_post AS far_body, * "
            f"FROM {item.table} UNION ALL "
            "SELECT post_id AS near, pre_id AS far, body_post AS near_body, body_pre AS far_body, * "
            f"FROM {item.table}) {item.alias}"
        )
    # both directions as one derived table: each branch keeps its sorted access path; an autapse
    # matches an undirected pattern once (Cypher), so the second branch skips it
    return (
        f"(SELECT body_pre AS near, body_post AS far, * FROM {item.table} UNION ALL "
        f"SELECT body_post AS near, body_pre AS far, * FROM {item.table}_by_post "
        f"WHERE body_pre <> body_post) {item.alias}"
    )


def from_where_sql(items: list[FromItem], conditions: list[str]) -> str:
    """`` FROM item, ... WHERE c AND ...`` (each part only when there is one)."""
    sql = ""
    if items:
        sql += " FROM " + ", ".join(from_item_sql(item) for item in items)
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    return sql


def match_statement(select: list[tuple[str, str]], from_where: str, uses_bound: bool) -> str:
    """The statement of a match: the bound table's row number first when it reads earlier rows."""
    items = ["b.__row AS __row"] if uses_bound else []
    items += [f"{sql} AS {quote_ident(name)}" for sql, name in select]
    return f"SELECT {', '.join(items or ['1 AS __one'])}{from_where}"


def rows_differ(alias1: str, alias2: str, columns: tuple[str, str]) -> str:
    """Two relationship rows are not the same one (relationship uniqueness within a MATCH)."""
    a, b = columns
    return f"(({alias1}.{a}, {alias1}.{b}) <> ({alias2}.{a}, {alias2}.{b}))"


@dataclass(frozen=True)
class PartnerBodies:
    """The bodies at the free end of a ConnectsTo/SynapsesTo whose other end is fixed: the free
    column of ``table`` (alias q) where ``fixed_sql`` holds, joined to the free end's Segment
    (``segment_alias``, key ``segment_key``) and its ``filters`` when it has one."""

    table: str
    free_column: str
    fixed_sql: str
    segment_key: str | None = None
    segment_alias: str | None = None
    filters: tuple[str, ...] = ()


def partner_bodies_sql(query: PartnerBodies) -> str:
    if query.segment_key is None:
        return f"SELECT DISTINCT q.{query.free_column} FROM {query.table} q WHERE {query.fixed_sql}"
    where = " AND ".join([f"q.{query.free_column} = {query.segment_key}", query.fixed_sql, *query.filters])
    return f"SELECT DISTINCT {query.segment_key} FROM {query.table} q, segments {query.segment_alias} WHERE {where}"


def all_neurons_check_sql(body_filter) -> str:
    """True when every body that ``body_filter(column)`` lets through and exists is a neuron."""
    body = body_filter("x.bodyId")
    return f"SELECT (SELECT count(*) FROM segments x WHERE {body}) = (SELECT count(*) FROM neurons x WHERE {body})"


def is_neuron_sql(body: int) -> str:
    """The :Neuron flag of the segment ``body`` (no row: no such segment)."""
    return f"SELECT is_neuron FROM segments WHERE bodyId = {int(body)}"


def admitted_neurons_sql(criteria: str) -> str:
    """The bodyIds of the neurons (alias ``n``) for which ``criteria`` is true."""
    return f"SELECT n.bodyId FROM neurons n WHERE ({criteria}) IS TRUE"


def count_segments_sql(alias: str, tests: list[str]) -> str:
    where = f" WHERE {' AND '.join(tests)}" if tests else ""
    return f"SELECT count(*) FROM segments {alias}{where}"


def body_ranges(column: str, bodies, most: int) -> str:
    """A filter on ``column`` to exactly ``bodies`` as at most ``most`` ranges (a superset beyond)."""
    return id_ranges_sql(column, bodies, gap=0, most=most)


# ---- the graph model and whole property maps ----------------------------------------------------

ROI_NAMES_SQL = "SELECT roi FROM rois"
ROI_MAP_SQL = "SELECT roi_set, label, roi FROM roi_map ORDER BY roi"


def describe_sql(table: str) -> str:
    return f"DESCRIBE {table}"


def segment_maps_sql(columns: list[str], ids) -> str:
    """The ``columns`` of the segments whose bodyIds are in ``ids`` (also in the table ``ids_table``)."""
    listed = ", ".join(f"s.{quote_ident(c)}" for c in columns)
    return (
        f"SELECT {listed} FROM segments s SEMI JOIN ids_table i ON s.bodyId = i.id "
        f"WHERE {id_ranges_sql('s.bodyId', ids, gap=0)}"
    )


def synapse_rows_sql(columns: list[str], ids) -> str:
    """The ``columns`` of the synapses whose ids are in ``ids`` (also in the table ``ids_table``)."""
    return (
        f"SELECT {', '.join('s.' + quote_ident(c) for c in columns)} FROM synapses s "
        f"SEMI JOIN ids_table i ON s.syn_id = i.id WHERE {id_ranges_sql('s.syn_id', ids)}"
    )


CONNECTION_WEIGHTS_SQL = (
    "SELECT c.body_pre, c.body_post, c.weight, c.weight_hp FROM connections c "
    "SEMI JOIN pairs p ON c.body_pre = p.a AND c.body_post = p.b"
)


def connection_rois_sql(table: str, side: str, ids) -> str:
    """(body_pre, body_post, roi, pre, post) of the pairs in the table ``pairs`` (a, b), from the
    connection_rois copy ``table``; ``ids`` (when given) are the bodies on ``side``, listed so that
    DuckDB skips row groups."""
    sql = (
        f"SELECT r.body_pre, r.body_post, r.roi, r.pre, r.weight FROM {table} r "
        "SEMI JOIN pairs p ON r.body_pre = p.a AND r.body_post = p.b"
    )
    if ids is not None:
        sql += f" WHERE r.{side} IN ({', '.join(str(int(v)) for v in sorted(ids))})"
    return sql + " ORDER BY 1, 2, 3"


# ---- answers written as JSON by DuckDB (columnar.py) --------------------------------------------

_CRS_JSON = orjson.dumps(POINT_CRS).decode()


def _key(name: str) -> str:
    """``"name":`` as a SQL string literal."""
    return "'" + orjson.dumps(name).decode().replace("'", "''") + ":'"


def _number_json(sql: str) -> str:
    """JSON text of a numeric SQL value: null for NaN/infinity, NULL (key left out) for NULL."""
    return (
        f"CASE WHEN isfinite(({sql})::DOUBLE) THEN to_json(({sql})::DOUBLE)::VARCHAR "
        f"WHEN ({sql}) IS NOT NULL THEN 'null' END"
    )


def synapse_maps_json_sql(nt_columns: list[str], drop: set[str], ids=None) -> str:
    """(id, j): each synapse's property map as JSON text (``drop``: keys left out), ROI flags from
    the tables ``primary_flags`` and ``major_flags`` (label, frag). The synapses are the table
    ``map_rows`` (column ``id`` and the map's columns) or, given ``ids``, those of ``synapses``
    whose syn_id is in ``ids`` (also the table ``ids_table``)."""
    parts = []
    if "type" not in drop:
        parts.append(f"{_key('type')} || to_json(s.kind)::VARCHAR")
    if "confidence" not in drop:
        parts.append(f"{_key('confidence')} || ({_number_json('s.conf')})")
    if "location" not in drop:
        coords = " || ',' || ".join(f"coalesce(s.{c}::VARCHAR, 'null')" for c in ("x", "y", "z"))
        parts.append(f"""'"location":{{"type":"Point","coordinates":[' || {coords} || '],"crs":{_CRS_JSON}}}'""")
    for name in nt_columns:
        if name not in drop:
            parts.append(f"{_key(name)} || ({_number_json('s.' + quote_ident(name))})")
    parts += ["pf.frag", "mf.frag"]
    if ids is None:  # the answer's own columns: no second scan of synapses
        source, id_column = "(SELECT DISTINCT * FROM map_rows) s", "id"
    else:
        source = (
            f"(SELECT * FROM synapses s SEMI JOIN ids_table i ON s.syn_id = i.id "
            f"WHERE {id_ranges_sql('s.syn_id', ids)}) s"
        )
        id_column = "syn_id"
    return (
        f"SELECT s.{id_column} AS id, '{{' || concat_ws(',', {', '.join(parts)}) || '}}' AS j "
        f"FROM {source} "
        "LEFT JOIN primary_flags pf ON pf.label = coalesce(s.primary_label, 0) "
        "LEFT JOIN major_flags mf ON mf.label = coalesce(s.major_label, 0)"
    )


def json_rows_sql(map_columns: list[bool]) -> str:
    """Each row of the table ``answer`` (columns c0, c1, ...) as one JSON array text ``row``; a
    column flagged in ``map_columns`` holds JSON texts already."""
    cells = [
        f"coalesce(c{index}, 'null')" if is_map else f"coalesce(to_json(c{index})::VARCHAR, 'null')"
        for index, is_map in enumerate(map_columns)
    ]
    row_sql = " || ',' || ".join(cells)
    return f"SELECT '[' || {row_sql} || ']' AS row FROM answer"
