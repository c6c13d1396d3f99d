"""MATCH + WITH/RETURN as one SQL query (GROUP BY, ORDER BY, LIMIT in SQL) when every item renders
in SQL; whole nodes and ``roiInfo`` are fetched as keys and filled in one batch afterwards."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from flatprint.cypher import ast, batchcache, columnar, jsonanswer, sqlgen
from flatprint.cypher.kinds import CONNECTS, SEGMENT, SYNAPSE
from flatprint.cypher.planner import narrow_partner_bodies, narrow_to_neurons, plan_match
from flatprint.cypher.registry import contains_aggregate, is_aggregate
from flatprint.cypher.rewriter import and_all, pattern_groups
from flatprint.cypher.sqlgen import (
    aggregate_call,
    body_pair,
    compile_predicate,
    compile_value,
    conjuncts,
    select_statement,
    variables_in,
)
from flatprint.cypher.values import NodeRef, Point


class PushdownExecution:
    """The fused MATCH + projection part of :class:`flatprint.cypher.engine.Execution`."""

    def match_and_aggregate(self, match: ast.Match, projection, rows):
        """MATCH + WITH/RETURN as one SQL query (GROUP BY for aggregations) when every item renders
        in SQL: counts over whole tables and long neuron lists never build Python rows. None
        otherwise (then the match runs alone and the evaluator projects)."""
        if not isinstance(projection, (ast.With, ast.Return)) or projection.star or match.optional or not rows:
            return None
        if self.bound_to_null(match, rows):
            return None  # the match alone answers: no rows
        final = isinstance(projection, ast.Return) and self.columnar_allowed
        expressions = [item.expression for item in projection.items]
        with_aggregate = [contains_aggregate(e) for e in expressions]  # each tree walked once
        aggregating = any(with_aggregate)
        if any(
            p.shortest or any(isinstance(e, ast.RelPattern) and e.variable_length for e in p.elements)
            for p in match.patterns
        ):
            return None
        names = [item.column_name for item in projection.items]
        if (
            final
            and not (aggregating or projection.distinct or projection.order_by)
            and projection.skip is None
            and projection.limit is None
            and rows == [{}]
            and _returns_a_synapse(expressions, match)
        ):
            answered = self._answer_from_general_query(match, expressions, names)
            if answered is not None:
                return names, answered
        bound_kinds, bound_families = self._bound(rows)
        reads = set()
        for expr in expressions:
            reads |= variables_in(expr)
        reads = {name for name in reads if name in bound_families}
        plan = plan_match(
            match.patterns,
            match.where,
            self.model,
            bound_kinds=bound_kinds,
            bound_values=bound_families,
            params=self.params,
            needed_props=set(),
            pattern_groups=pattern_groups(match),
            also_reads=reads,
        )
        if plan.matches_nothing or plan.residual or plan.path_bindings or (not plan.uses_bound and len(rows) != 1):
            return None
        tables = {"bound": self._bound_table(rows, plan.bound_columns, bound_kinds)} if plan.uses_bound else {}
        rendered = self._render_items(expressions, names, plan, aggregating, projection.distinct)
        if rendered is None:
            return None
        select, keys, points, wholes, roi_infos = rendered
        for sort in projection.order_by:  # ORDER BY must name projected columns
            if (
                not (isinstance(sort.expression, ast.Variable) and sort.expression.name in names)
                and sort.expression not in expressions
            ):
                return None
        order: list[tuple[int, bool]] | None = []
        for sort in projection.order_by:
            expr = sort.expression
            position = (
                names.index(expr.name)
                if isinstance(expr, ast.Variable) and expr.name in names
                else expressions.index(expr)
            )
            if names[position] in points:
                order = None
                break
            order.append((position + 1, sort.descending))
        # Whole Segments come with their columns: one statement, no second read of segments by id
        segment_wholes = {} if aggregating or projection.distinct else _segment_wholes(wholes, plan)
        whole_columns = len(select)
        for variable in segment_wholes:
            alias = plan.nodes[variable].alias
            segment_wholes[variable] = len(select) - whole_columns
            select += [sqlgen.quoted_column(alias, c) for c in self.model.segment_properties]
        names_sql = names + [f"__whole{k}" for k in range(len(select) - whole_columns)]
        distinct, skip, limit = projection.distinct, None, None
        if order is not None:
            skip, limit = self._count(projection.skip, "SKIP"), self._count(projection.limit, "LIMIT")
            projection = ast.Return(projection.items)  # ordered and cut in SQL already
        sort_after = _sort_by_node_key(order, expressions, plan) if limit is None and not skip else None
        order_sql = None if sort_after is not None else order
        columnwise = (
            final
            and order is not None
            and not roi_infos
            and not points
            and all(plan.nodes[variable].kind == SYNAPSE for variable, _ in wholes.values())
        )
        narrow_to_neurons(plan, self.run_sql)
        narrow_partner_bodies(plan, self.run_sql)
        sql = select_statement(
            list(zip(select, names_sql)),
            plan.from_where,
            distinct=distinct,
            group_by=keys if aggregating else [],
            order_by=order_sql,
            limit=limit,
            offset=skip,
        )
        if columnwise:
            if wholes and not aggregating:
                # the columns of each synapse's map come with the answer: no second scan of synapses
                columns, sources = self._with_map_columns(list(zip(select, names)), wholes, plan)
                sql = select_statement(
                    columns, plan.from_where, distinct=distinct, order_by=order_sql, limit=limit, offset=skip
                )
                return names, self._columnar(sql, tables, names, wholes, plan, sources, sort_after)
            return names, self._columnar(sql, tables, names, wholes, plan, sort=sort_after)
        results = self.run_sql(sql, tables)
        if sort_after is not None:
            position, descending = sort_after
            results.sort(key=lambda row: row[position], reverse=descending)
        self.deadline.check()
        # Column by column: one type test per column instead of per value (large results are
        # mostly plain numbers and strings).
        columns = [list(c) for c in zip(*results)] if results else [[] for _ in names_sql]
        extra, columns = columns[whole_columns:], columns[:whole_columns]
        for index, name in enumerate(names):
            column = columns[index]
            if any(type(v) not in _PLAIN_SQL_TYPES for v in column):
                column = [_python_number(v) for v in column]
            if name in points:
                column = [Point(v) if v is not None and all(c is not None for c in v) else None for v in column]
            columns[index] = column
        for name, (variable, removed) in wholes.items():
            index = names.index(name)
            maps = None
            if variable in segment_wholes:
                start = segment_wholes[variable]
                width = len(self.model.segment_properties)
                maps = {}
                for key, *row in zip(columns[index], *extra[start : start + width]):
                    if key is not None and key not in maps:
                        maps[key] = self.model.segment_map(row)
            columns[index] = self._whole_nodes(plan.nodes[variable].kind, removed, columns[index], maps)
        for name in roi_infos:
            index = names.index(name)
            pairs = {tuple(v) for v in columns[index] if v is not None}
            rel = plan.rels[_connection_roi_info_item(expressions[index], plan)]
            infos = self.view.roi_infos(
                pa.table(
                    {
                        "a": pa.array([p[0] for p in pairs], type=pa.int64()),
                        "b": pa.array([p[1] for p in pairs], type=pa.int64()),
                    }
                ),
                neurons=rel.neurons,
            )
            columns[index] = [None if v is None else infos.get(tuple(v), "{}") for v in columns[index]]
        self.deadline.check()
        projected = [dict(zip(names, values)) for values in zip(*columns)]
        return names, self._order_skip_limit(projection, names, expressions, projected)

    def _with_map_columns(self, columns: list, wholes: dict, plan) -> tuple[list, dict]:
        """``columns`` plus, for each whole synapse, its id and the synapses columns of its map; and
        column name -> positions of those (see :meth:`_columnar`)."""
        columns, sources = list(columns), {}
        for number, (name, (variable, removed)) in enumerate(wholes.items()):
            alias = plan.nodes[variable].alias
            wanted = columnar.map_columns(self.model, removed)
            sources[name] = [len(columns)] + [len(columns) + 1 + k for k in range(len(wanted))]
            columns += [(sqlgen.column(alias, "syn_id"), f"__map{number}_id")]
            columns += [(sqlgen.quoted_column(alias, c), f"__map{number}_{k}") for k, c in enumerate(wanted)]
        return columns, sources

    def _answer_from_general_query(self, match: ast.Match, expressions, names) -> list[list] | None:
        """A batch of a batched query (batchcache.py) answered from the kept answer of its general
        query (run now if this is the shape's second batch); sets ``columnar_arrow``. None when the
        query is no such batch, or its shape is seen for the first time, or its general query is
        too large to keep."""
        condition = batchcache.body_condition(match.where)
        if condition is None:
            return None
        # The general query's SQL (None: no batch answer) is kept on the MATCH tree, as plan.py keeps
        # plans: a single-batch call sent again (fetch_synapses of a small type) is its shape's first
        # batch again, known without planning the general query (0.27 ms at scale 1.0).
        exprs = tuple(expressions)
        known = None if self.params else match.__dict__.get("_general_shape")
        if known is not None and known[0] is self.model and known[1] == exprs:
            if known[2] is None or batchcache.cache_of(self.store).first_again(known[2], condition.values):
                return None
        shape, rows = self._general_answer(match, condition, expressions, names)
        if not self.params:
            match.__dict__["_general_shape"] = (self.model, exprs, shape)
        return rows

    def _general_answer(self, match, condition, expressions, names) -> tuple[str | None, list[list] | None]:
        """_answer_from_general_query's work: (the general query's SQL, None when batches are not
        answered from it; the batch's rows from its kept answer, or None)."""
        where = and_all([term for term in conjuncts(match.where) if term is not condition.term])
        general = plan_match(
            match.patterns,
            where,
            self.model,
            bound_kinds={},
            bound_values={},
            params=self.params,
            needed_props=set(),
            pattern_groups=pattern_groups(match),
        )
        if general.matches_nothing or general.residual or general.path_bindings or general.uses_bound:
            return None, None
        if general.nodes.get(condition.variable) is None or general.nodes[condition.variable].kind != SEGMENT:
            return None, None
        rendered = self._render_items(expressions, names, general, False, False)
        if rendered is None:
            return None, None
        select, _, points, wholes, roi_infos = rendered
        if points or roi_infos or not all(general.nodes[v].kind == SYNAPSE for v, _ in wholes.values()):
            return None, None
        key_sql = general.nodes[condition.variable].id_sql
        columns = list(zip(select, names))
        shape = select_statement(columns + [(key_sql, "__key")], general.from_where)

        def build():
            own = [t for t in conjuncts(where) if variables_in(t) == {condition.variable}]
            if self._count_bodies(general, condition.variable, own) > batchcache.MAX_KEYS:
                return None
            narrow_to_neurons(general, self.run_sql)
            narrow_partner_bodies(general, self.run_sql)
            listed, sources = self._with_map_columns(columns, wholes, general)
            sql = select_statement(listed + [(key_sql, "__key")], general.from_where, limit=batchcache.MAX_ROWS + 1)
            table = self.run_arrow_checked(sql)
            if table.num_rows > batchcache.MAX_ROWS:
                return None
            answer, maps, json_texts = [], {}, {}
            for index, name in enumerate(names):
                column = table.column(index)
                if name in wholes:
                    removed = wholes[name][1]
                    rows = table.select(sources[name]).rename_columns(
                        ["id"] + columnar.map_columns(self.model, removed)
                    )
                    found = columnar.synapse_maps_json(self.model, self.run_arrow_checked, None, removed, rows)
                    maps[index] = (found.column("id").combine_chunks(), found.column("j").combine_chunks())
                    json_texts[index] = jsonanswer.synapse_map_json_of_rows(self.model, removed, rows, maps[index][0])
                    column = column.cast(pa.int64())
                answer.append(column)
            keys = table.column("__key").to_numpy()
            written = None if any(t is None for t in json_texts.values()) else json_texts
            table = pa.table(answer, names=[f"c{i}" for i in range(len(answer))])
            kept = batchcache.GeneralAnswer(table, keys, maps, written)
            return kept if kept.nbytes <= batchcache.byte_limit() else None

        kept = batchcache.cache_of(self.store).answer_for(shape, condition.values, build)
        if kept is None:
            return shape, None
        if self.json_bytes and kept.json_texts is not None:
            try:
                self.columnar_json, self.columnar_rows = kept.answer_json(condition.values, self.deadline.check)
                return shape, []
            except jsonanswer.NotWritten:
                pass  # the rows, as for any caller
        rows, self.columnar_arrow = kept.answer(condition.values, names, self.deadline.check)
        return shape, rows

    def _count_bodies(self, plan, variable: str, terms) -> int:
        """How many bodies the Segment ``variable`` of ``plan`` may take given ``terms`` (predicates
        on it alone; those that do not render in SQL are left out: an upper bound)."""
        var = plan.nodes[variable]
        tests = [sqlgen.column(var.alias, "is_neuron")] if var.neuron else []
        for term in terms:
            sql = compile_predicate(term, plan.scope)
            if sql is not None:
                tests.append(sql)
        return int(self.run_sql(sqlgen.count_segments_sql(var.alias, tests))[0][0])

    def _render_items(self, expressions, names, plan, aggregating: bool, distinct: bool):
        """SQL of each RETURN/WITH item over ``plan``: (select, group keys, point columns, whole
        nodes: column -> (variable, keys removed), roiInfo columns), or None when an item does not
        render in SQL."""
        select, keys, points = [], [], []
        wholes: dict[str, tuple[str, tuple[str, ...] | None]] = {}  # column -> (variable, keys removed)
        roi_infos: list[str] = []  # columns holding ConnectsTo.roiInfo
        for index, expr in enumerate(expressions):
            sql = self._aggregate_sql(expr, plan) if is_aggregate(expr) else None
            whole = _whole_node_item(expr, plan)
            if whole is not None and whole[1] is not None and (aggregating or distinct):
                whole = None  # maps minus keys are not the node's identity: group in Python
            roi_info_of = _connection_roi_info_item(expr, plan)
            if whole is not None:  # the node's key now, its property map in one batch afterwards
                wholes[names[index]] = whole
                sql = plan.nodes[whole[0]].id_sql
                keys.append(index + 1)
            elif roi_info_of is not None and not aggregating:  # the body pair now, roiInfo in one batch
                alias = plan.rels[roi_info_of].alias
                roi_infos.append(names[index])
                sql = body_pair(alias)
            elif sql is None and not contains_aggregate(expr):
                rendered = compile_value(expr, plan.scope)
                if rendered is None:
                    predicate = compile_predicate(expr, plan.scope)
                    rendered = None if predicate is None else (predicate, "bool")
                if rendered is not None and rendered[1] in ("number", "string", "bool", "null", "point"):
                    if rendered[1] == "point" and aggregating:
                        return None
                    sql = rendered[0]
                    keys.append(index + 1)
                    if rendered[1] == "point":
                        points.append(names[index])
            if sql is None:
                return None
            select.append(sql)
        return select, keys, points, wholes, roi_infos

    def _columnar(
        self, sql: str, tables: dict, names: list[str], wholes: dict, plan, sources=None, sort=None
    ) -> list[list]:
        """The final RETURN's rows built as JSON in SQL (columnar.py); sets ``columnar_arrow``.
        ``sources``: column name -> positions of the synapse id and its map's columns in the answer
        (else the maps read the synapses table). ``sort``: (column index, descending) to order the
        answer by (see :func:`_sort_by_node_key`)."""
        table = self.run_arrow_checked(sql, tables)
        if sort is not None:
            position, descending = sort
            keys = table.column(position).combine_chunks()
            table = table.take(pc.array_sort_indices(keys, order="descending" if descending else "ascending"))
        maps = {}
        for name, (_variable, removed) in wholes.items():
            index = names.index(name)
            rows = None
            if sources:
                positions = sources[name]
                rows = table.select(positions).rename_columns(["id"] + columnar.map_columns(self.model, removed))
            ids = pc.unique(table.column(index).combine_chunks().drop_null())
            maps[index] = columnar.synapse_maps_json(self.model, self.run_arrow_checked, ids, removed, rows)
        table = table.select(list(range(len(names))))
        rows, self.columnar_arrow = columnar.build(table, names, maps, self.run_arrow_checked, self.deadline.check)
        return rows

    def _whole_nodes(self, kind: str, removed, keys: list, maps: dict | None = None) -> list:
        """Node keys -> nodes (RETURN n) or property maps (apoc.map.removeKeys(n, [...])).
        One value per distinct key, shared by its rows: a T-bar with ten PSDs is built once.
        ``maps``: the nodes' property maps when the query fetched them already."""
        distinct = list({key for key in keys if key is not None})
        if maps is None:
            maps = self.view.property_maps(kind, distinct)
        if removed is None:
            values = {
                key: NodeRef(kind, key, props=maps.get(key, {}), view=self.view, complete=True) for key in distinct
            }
        else:
            drop = set(removed)
            values = {
                key: {k: v for k, v in maps.get(key, {}).items() if k not in drop and v is not None} for key in distinct
            }
        return [values.get(key) for key in keys]

    def _aggregate_sql(self, expr, plan) -> str | None:
        if isinstance(expr, ast.CountStar):
            return aggregate_call("count", None, False)
        name = expr.lower_name
        if name not in ("count", "sum", "avg", "min", "max"):
            return None
        argument = expr.arguments[0]
        if isinstance(argument, ast.Variable) and argument.name in plan.nodes and name == "count":
            return aggregate_call("count", plan.nodes[argument.name].id_sql, expr.distinct)
        rendered = compile_value(argument, plan.scope)
        if rendered is None:
            return None
        allowed = ("number", "string", "bool", "null") if name in ("count", "min", "max") else ("number",)
        if rendered[1] not in allowed:
            return None
        return aggregate_call(name, rendered[0], expr.distinct)


def _segment_wholes(wholes: dict, plan) -> dict[str, int]:
    """The Segment variables whose whole nodes (or maps minus keys) the answer holds, each once."""
    return {variable: 0 for variable, _ in wholes.values() if plan.nodes[variable].kind == SEGMENT}


def _sort_by_node_key(order, expressions, plan) -> tuple[int, bool] | None:
    """(0-based column, descending) when the first ORDER BY key is ``n.bodyId`` of the one Segment
    the match has: a key unique per row and never null, so sorting the answer by it after the query
    gives exactly SQL's order, without DuckDB's sort (about half the CPU of a lookup by body id,
    fetch_neurons' ``ORDER BY n.bodyId``). None otherwise."""
    if not order or plan.rels or plan.uses_bound or len(plan.nodes) != 1:
        return None
    position, descending = order[0]
    expr = expressions[position - 1]
    (name, var), *_ = plan.nodes.items()
    if (
        var.kind == SEGMENT
        and isinstance(expr, ast.Property)
        and expr.name == "bodyId"
        and isinstance(expr.subject, ast.Variable)
        and expr.subject.name == name
    ):
        return position - 1, descending
    return None


def _returns_a_synapse(expressions, match: ast.Match) -> bool:
    """Whether an item is ``s`` or ``apoc.map.removeKeys(s, ...)`` of a node labelled :Synapse in the
    match (a cheap test before planning a batch's general query)."""
    synapses = {
        element.variable
        for pattern in match.patterns
        for element in pattern.elements
        if isinstance(element, ast.NodePattern) and "Synapse" in element.labels
    }
    for expr in expressions:
        if isinstance(expr, ast.FunctionCall) and expr.lower_name == "apoc.map.removekeys" and expr.arguments:
            expr = expr.arguments[0]
        if isinstance(expr, ast.Variable) and expr.name in synapses:
            return True
    return False


def _whole_node_item(expr, plan):
    """(variable, removed keys) for ``n`` / ``apoc.map.removeKeys(n, ['a', ...])`` over a Segment or
    Synapse of the match; None for any other expression."""
    removed = None
    if isinstance(expr, ast.FunctionCall) and expr.lower_name == "apoc.map.removekeys" and len(expr.arguments) == 2:
        keys = expr.arguments[1]
        if not (
            isinstance(keys, ast.ListLiteral)
            and all(isinstance(k, ast.Literal) and isinstance(k.value, str) for k in keys.items)
        ):
            return None
        removed = tuple(k.value for k in keys.items)
        expr = expr.arguments[0]
    if isinstance(expr, ast.Variable) and expr.name in plan.nodes and plan.nodes[expr.name].kind in (SEGMENT, SYNAPSE):
        return expr.name, removed
    return None


def _connection_roi_info_item(expr, plan) -> str | None:
    """The relationship variable of ``e.roiInfo`` for a ConnectsTo of the match, else None."""
    if isinstance(expr, ast.Property) and expr.name == "roiInfo" and isinstance(expr.subject, ast.Variable):
        rel = plan.rels.get(expr.subject.name)
        if rel is not None and rel.kind == CONNECTS and rel.alias is not None:
            return rel.name
    return None


_PLAIN_SQL_TYPES = frozenset((int, float, str, bool, type(None)))


def _python_number(value):
    """DuckDB HUGEINT sums and DECIMALs as plain Python numbers."""
    if isinstance(value, int) or value is None or isinstance(value, (float, str, bool)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value
