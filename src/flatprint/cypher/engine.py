"""Running Cypher against a store: ``execute(store, text) -> CypherResult``.

Pipeline (one module per stage, as in sqlglot)::

    text --parser--> ast.Query --check_query--> (refuses what cannot run, with line/column)
         --Execution: clause by clause over rows (dicts variable -> value)--
           MATCH   --planner--> SQL (sqlgen renders pushed-down predicates) --DuckDB--> rows
                   variable-length / shortest paths --paths--> BFS, one SQL query per level
           WITH / RETURN / UNWIND / CALL --evaluator--> projection, aggregation, ordering
         --values.to_output--> CypherResult(columns, data) as neuPrintHTTP returns it

A timeout (default 60 s) interrupts DuckDB (``connection.interrupt()`` from a timer) and the
Python loops, and raises :class:`CypherTimeoutError` ("... timeout ..."). The server answers it as a
400 ``{"error": ...}`` (as neuPrintHTTP does), which neuprint-python 0.6.4 raises as a plain
``requests.HTTPError``, not ``NeuprintTimeoutError`` (docs/server.md, "Errors and timeouts").
``apoc.cypher.runTimeboxed`` runs its inner query with its own time box and yields no rows when that
runs out, as Neo4j does.

Cancellation: ``execute(..., cancel=event)`` stops the query soon (within ~50 ms plus whatever DuckDB
needs to notice an interrupt) after another thread sets the ``threading.Event`` — the server sets it
when the HTTP client disconnects — and raises :class:`CypherCancelledError`. One watchdog thread
interrupts the DuckDB cursors of queries that ran past their deadline or were cancelled.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import threading
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from flatprint.cypher import ast, columnar
from flatprint.cypher.analyzer import analyze
from flatprint.cypher.errors import unsupported
from flatprint.cypher.evaluator import Evaluator, truthy
from flatprint.cypher.registry import PROCEDURES, contains_aggregate, is_aggregate
from flatprint.cypher.deadline import WATCHDOG, CypherCancelledError, CypherTimeoutError, Deadline
from flatprint.cypher.memory import MemoryBudgetError
from flatprint.cypher.parser import parse
from flatprint.cypher.paths import ConnectionGraph, all_shortest_paths, bounded_paths
from flatprint.cypher.planner import plan_match
from flatprint.cypher.schema import CONNECTS, META, SEGMENT, SYNAPSE, GraphView, model_of, quote
from flatprint.cypher.sqlgen import SqlScope, compile_predicate, compile_value, conjuncts, variables_in
from flatprint.cypher.values import Descending, NodeRef, Path, Point, RelRef, SortKey, hashable, output_rows
from flatprint.errors import QueryError

__all__ = ["execute", "CypherResult", "CypherTimeoutError", "CypherCancelledError", "MemoryBudgetError"]

DEFAULT_TIMEOUT = 60.0
_CHECK_EVERY = 512  # rows between deadline checks in Python loops
_FETCH_ROWS = 65536  # rows per fetch from DuckDB: the deadline and the memory budget are checked between


@dataclass
class CypherResult:
    """Columns and rows exactly as neuPrintHTTP's /api/custom/custom returns them."""

    columns: list[str]
    data: list[list] = field(default_factory=list)
    arrow: pa.Table | None = None  # the Arrow answer when the engine built it column-wise


    def to_dict(self) -> dict:
        return {"columns": self.columns, "data": self.data}

    def to_arrow(self) -> pa.Table:
        """An Arrow table; a column of nested values (maps, lists of mixed types) holds JSON text."""
        if self.arrow is not None:
            return self.arrow
        arrays = []
        for index, _ in enumerate(self.columns):
            values = [row[index] for row in self.data]
            try:
                array = pa.array(values)
                if pa.types.is_struct(array.type):  # maps (nodes, points) travel as JSON text
                    raise pa.ArrowInvalid("maps as JSON")
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                array = pa.array([None if v is None else json.dumps(v) for v in values], type=pa.string())
            arrays.append(array)
        names = list(self.columns)
        if len(set(names)) != len(names):  # Arrow allows duplicates, but keep them distinguishable
            names = [n if names.count(n) == 1 else f"{n}_{i}" for i, n in enumerate(names)]
        return pa.table(arrays, names=names) if arrays else pa.table({})


def execute(store, text: str, *, timeout: float | None = DEFAULT_TIMEOUT, params: dict | None = None,
            cancel: threading.Event | None = None) -> CypherResult:
    """Parse, check and run one read-only Cypher query against an open store.

    ``cancel``: when another thread sets this event the query stops and raises CypherCancelledError.
    """
    if cancel is not None and cancel.is_set():
        raise CypherCancelledError("query cancelled before it started")
    query = parse(text)
    analyze(query)
    deadline = Deadline(timeout, cancel=cancel)
    execution = Execution(store, store.cursor(), deadline, params or {}, needed_properties(query))
    execution.columnar_allowed = len(query.parts) == 1
    try:
        columns, rows = execution.run_query(query)
        if execution.columnar_arrow is not None:  # rows are parsed JSON already
            data = rows
        else:
            if not execution.entities_complete:
                execution.complete_entities(rows)
            data = output_rows(rows, deadline)
        if deadline.usage is not None:
            deadline.usage.ensure_room_for_answer()
        return CypherResult(columns, data, arrow=execution.columnar_arrow)
    except duckdb.InterruptException:
        raise deadline.error() from None
    except (TypeError, ValueError, ArithmeticError, IndexError, KeyError, AttributeError, RecursionError) as exc:
        # a value of the wrong type reached an operator ('a' - 1, keys(5), ...): the query's fault
        raise QueryError(f"cannot evaluate the query: {type(exc).__name__}: {exc}") from None
    finally:
        try:
            execution.cursor.close()
        except duckdb.Error:
            pass


# ---------------------------------------------------------------------------------------------
# static checks: refuse before running (the analyzer)

check_query = analyze


def needed_properties(query: ast.Node) -> set[str]:
    """Every property name the query reads (SQL fetches these with the match)."""
    names = set()
    for node in query.walk():
        if isinstance(node, ast.Property):
            names.add(node.name)
        elif isinstance(node, ast.Index) and isinstance(node.key, ast.Literal) and isinstance(node.key.value, str):
            names.add(node.key.value)
        elif isinstance(node, ast.Call) and node.inner_query is not None:
            names |= needed_properties(node.inner_query)
    return names


# ---------------------------------------------------------------------------------------------
# execution


class Execution:
    """Runs one query (and its runTimeboxed inner queries) on one cursor."""

    def __init__(self, store, cursor, deadline: Deadline, params: dict, needed_props: set[str]):
        self.store = store
        self.model = model_of(store)
        self.cursor = cursor
        self.deadline = deadline
        self.params = params
        self.needed_props = needed_props
        self.entities_complete = False  # run_query's rows need no complete_entities pass
        self.columnar_allowed = False  # the top-level query of one part may be answered column-wise
        self.columnar_arrow: pa.Table | None = None  # set when it was (its rows are then final)
        self.view = GraphView(self.model, cursor, self.run_sql, self.run_arrow, check_rows=deadline.check)

    # -- SQL with the deadline

    def run_sql(self, sql: str, tables: dict | None = None) -> list[tuple]:
        return self._run(sql, tables, lambda cursor: self._fetch_rows(cursor.execute(sql)))

    def _fetch_rows(self, result) -> list[tuple]:
        """All rows of a streaming result, fetched in parts with the deadline and budget checked
        between them (fetchall would build every row in Python before any check)."""
        rows = result.fetchmany(_FETCH_ROWS)
        if len(rows) < _FETCH_ROWS:
            return rows
        while True:
            self.deadline.check(_FETCH_ROWS)
            part = result.fetchmany(_FETCH_ROWS)
            if not part:
                return rows
            rows.extend(part)

    def run_arrow(self, sql: str, tables: dict | None = None) -> pa.Table:
        return self._run(sql, tables, lambda cursor: cursor.sql(sql).to_arrow_table())

    def run_arrow_checked(self, sql: str, tables: dict | None = None) -> pa.Table:
        """run_arrow for results of any size: record batches, with the deadline and the memory budget
        checked between them (an Arrow table grows outside DuckDB's memory limit)."""
        def fetch(cursor):
            reader = cursor.sql(sql).to_arrow_reader(_FETCH_ROWS)
            batches = []
            for batch in reader:
                batches.append(batch)
                self.deadline.check(batch.num_rows)
            return pa.Table.from_batches(batches, reader.schema)
        return self._run(sql, tables, fetch)

    def _run(self, sql: str, tables: dict | None, fetch):
        self.deadline.check()
        watch = WATCHDOG.watch(self.cursor, self.deadline)
        try:
            for name, table in (tables or {}).items():
                self.cursor.register(name, table)
            return fetch(self.cursor)
        except duckdb.InterruptException:
            raise self.deadline.error() from None
        except duckdb.OutOfMemoryException as exc:
            budget = self.deadline.budget
            if budget is None:
                raise QueryError(f"query failed in the store: {exc}") from None
            raise budget.error(f"the store ran out of its share ({exc})") from None
        except duckdb.Error as exc:
            if self.deadline.expired():
                raise self.deadline.error() from None
            raise QueryError(f"query failed in the store: {exc}") from None
        finally:
            if watch is not None:
                WATCHDOG.release(watch)
            for name in tables or {}:
                try:
                    self.cursor.unregister(name)
                except duckdb.Error:
                    pass

    # -- queries

    def run_query(self, query: ast.Query) -> tuple[list[str], list[list]]:
        columns: list[str] | None = None
        out: list[list] = []
        complete = True
        for part in query.parts:
            self.entities_complete = False
            part_columns, rows = self.run_single(part)
            complete = complete and self.entities_complete
            columns = columns or part_columns
            out.extend(rows)
        if len(query.parts) > 1 and not query.union_all:
            out = _distinct(out, lambda row: hashable(list(row)))
        self.entities_complete = complete
        return columns or [], out

    def run_single(self, part: ast.SingleQuery) -> tuple[list[str], list[list]]:
        rows: list[dict] = [{}]
        clauses = fold_pass_through_withs(inline_constant_withs(part.clauses))
        position = 0
        while position < len(clauses):
            clause = clauses[position]
            self.deadline.check()
            if isinstance(clause, ast.Match):
                following = clauses[position + 1] if position + 1 < len(clauses) else None
                pushed = self.match_and_aggregate(clause, following, rows)
                if pushed is not None:
                    names, rows = pushed
                    if isinstance(following, ast.Return):
                        # every node in these rows already holds its whole property map
                        self.entities_complete = True
                        if self.columnar_arrow is not None:
                            return names, rows
                        return names, [[r[n] for n in names] for r in rows]
                    rows = self._with_where(following, rows)
                    position += 2
                    continue
                rows = self.match(clause, rows, row_cap=_row_cap(clauses, position))
            elif isinstance(clause, ast.Unwind):
                rows = self.unwind(clause, rows)
            elif isinstance(clause, ast.With):
                names, rows = self.project(clause, rows)
                rows = self._with_where(clause, rows)
            elif isinstance(clause, ast.Return):
                names, projected = self.project(clause, rows)
                return names, [[r[n] for n in names] for r in projected]
            elif isinstance(clause, ast.Call):
                rows, names = self.call(clause, rows)
                if position == len(clauses) - 1:
                    return names, [[r[n] for n in names] for r in rows]
            position += 1
        return [], []

    def _with_where(self, clause: ast.With, rows):
        if clause.where is None:
            return rows
        evaluate = Evaluator(self.params)
        return [r for r in rows if truthy(evaluate(clause.where, r))]

    def match_and_aggregate(self, match: ast.Match, projection, rows):
        """MATCH + WITH/RETURN as one SQL query (GROUP BY for aggregations) when every item renders
        in SQL: counts over whole tables and long neuron lists never build Python rows. None
        otherwise (then the match runs alone and the evaluator projects)."""
        if not isinstance(projection, (ast.With, ast.Return)) or projection.star or match.optional or not rows:
            return None
        final = isinstance(projection, ast.Return) and self.columnar_allowed
        expressions = [item.expression for item in projection.items]
        aggregating = any(contains_aggregate(e) for e in expressions)
        if any(p.shortest or any(isinstance(e, ast.RelPattern) and e.variable_length for e in p.elements)
               for p in match.patterns):
            return None
        bound_kinds, bound_families = self._bound(rows)
        reads = set()
        for expr in expressions:
            reads |= variables_in(expr)
        reads = {name for name in reads if name in bound_families}
        plan = plan_match(match.patterns, match.where, self.model, bound_kinds=bound_kinds,
                          bound_values=bound_families, params=self.params, needed_props=set(),
                          pattern_groups=_groups(match), also_reads=reads)
        if plan.sql is None or plan.residual or plan.path_bindings or (not plan.uses_bound and len(rows) != 1):
            return None
        tables = {"bound": self._bound_table(rows, plan.bound_columns, bound_kinds)} if plan.uses_bound else {}
        names = [item.column_name for item in projection.items]
        select, keys, points = [], [], []
        wholes: dict[str, tuple[str, tuple[str, ...] | None]] = {}  # column -> (variable, keys removed)
        roi_infos: list[str] = []  # columns holding ConnectsTo.roiInfo
        for index, expr in enumerate(expressions):
            sql = self._aggregate_sql(expr, plan) if is_aggregate(expr) else None
            whole = _whole_node_item(expr, plan)
            if whole is not None and whole[1] is not None and (aggregating or projection.distinct):
                whole = None  # maps minus keys are not the node's identity: group in Python
            roi_info_of = _connection_roi_info_item(expr, plan)
            if whole is not None:  # the node's key now, its property map in one batch afterwards
                wholes[names[index]] = whole
                sql = plan.nodes[whole[0]].id_sql
                keys.append(str(index + 1))
            elif roi_info_of is not None and not aggregating:  # the body pair now, roiInfo in one batch
                alias = plan.rels[roi_info_of].alias
                roi_infos.append(names[index])
                sql = f"[{alias}.body_pre, {alias}.body_post]"
            elif sql is None and not contains_aggregate(expr):
                rendered = compile_value(expr, plan.scope)
                if rendered is None:
                    predicate = compile_predicate(expr, plan.scope)
                    rendered = None if predicate is None else (predicate, "bool")
                if rendered is not None and rendered[1] in ("number", "string", "bool", "null", "point"):
                    if rendered[1] == "point" and aggregating:
                        return None
                    sql = rendered[0]
                    keys.append(str(index + 1))
                    if rendered[1] == "point":
                        points.append(names[index])
            if sql is None:
                return None
            select.append(f"{sql} AS {quote(names[index])}")
        for sort in projection.order_by:  # ORDER BY must name projected columns
            if not (isinstance(sort.expression, ast.Variable) and sort.expression.name in names) and \
                    sort.expression not in expressions:
                return None
        sql = f"SELECT {'DISTINCT ' if projection.distinct else ''}{', '.join(select)}{plan.from_where}"
        if aggregating and keys:
            sql += " GROUP BY " + ", ".join(keys)
        order = []
        for sort in projection.order_by:  # Cypher: ascending puts nulls last, descending first
            expr = sort.expression
            position = names.index(expr.name) if isinstance(expr, ast.Variable) and expr.name in names else \
                expressions.index(expr)
            if names[position] in points:
                order = None
                break
            order.append(f"{position + 1} {'DESC NULLS FIRST' if sort.descending else 'ASC NULLS LAST'}")
        if order is not None:
            if order:
                sql += " ORDER BY " + ", ".join(order)
            skip, limit = self._count(projection.skip, "SKIP"), self._count(projection.limit, "LIMIT")
            if limit is not None:
                sql += f" LIMIT {limit}"
            if skip:
                sql += f" OFFSET {skip}"
            projection = ast.Return(projection.items)  # ordered and cut in SQL already
        if final and order is not None and not roi_infos and not points and \
                all(plan.nodes[variable].kind == SYNAPSE for variable, _ in wholes.values()):
            return names, self._columnar(sql, tables, names, wholes, plan)
        results = self.run_sql(sql, tables)
        self.deadline.check()
        # Column by column: one type test per column instead of per value (large results are
        # mostly plain numbers and strings).
        columns = [list(c) for c in zip(*results)] if results else [[] for _ in names]
        for index, name in enumerate(names):
            column = columns[index]
            if any(type(v) not in _PLAIN_SQL_TYPES for v in column):
                column = [_python_number(v) for v in column]
            if name in points:
                column = [Point(v) if v is not None and all(c is not None for c in v) else None for v in column]
            columns[index] = column
        for name, (variable, removed) in wholes.items():
            index = names.index(name)
            columns[index] = self._whole_nodes(plan.nodes[variable].kind, removed, columns[index])
        for name in roi_infos:
            index = names.index(name)
            pairs = {tuple(v) for v in columns[index] if v is not None}
            infos = self.view.roi_infos(pa.table({"a": pa.array([p[0] for p in pairs], type=pa.int64()),
                                                  "b": pa.array([p[1] for p in pairs], type=pa.int64())}))
            columns[index] = [None if v is None else infos.get(tuple(v), "{}") for v in columns[index]]
        self.deadline.check()
        projected = [dict(zip(names, values)) for values in zip(*columns)]
        return names, self._order_skip_limit(projection, names, expressions, projected)

    def _columnar(self, sql: str, tables: dict, names: list[str], wholes: dict, plan) -> list[list]:
        """The final RETURN's rows built as JSON in SQL (columnar.py); sets ``columnar_arrow``."""
        table = self.run_arrow_checked(sql, tables)
        maps = {}
        for name, (variable, removed) in wholes.items():
            index = names.index(name)
            ids = pc.unique(table.column(index).combine_chunks().drop_null())
            maps[index] = columnar.synapse_maps_json(self.model, self.run_arrow_checked, ids, removed)
        rows, self.columnar_arrow = columnar.build(table, names, maps, self.run_arrow_checked, self.deadline.check)
        return rows

    def _whole_nodes(self, kind: str, removed, keys: list) -> list:
        """Node keys -> nodes (RETURN n) or property maps (apoc.map.removeKeys(n, [...])).
        One value per distinct key, shared by its rows: a T-bar with ten PSDs is built once."""
        distinct = list({key for key in keys if key is not None})
        maps = self.view.property_maps(kind, distinct)
        if removed is None:
            values = {key: NodeRef(kind, key, props=maps.get(key, {}), view=self.view, complete=True)
                      for key in distinct}
        else:
            drop = set(removed)
            values = {key: {k: v for k, v in maps.get(key, {}).items() if k not in drop and v is not None}
                      for key in distinct}
        return [values.get(key) for key in keys]

    def _aggregate_sql(self, expr, plan) -> str | None:
        if isinstance(expr, ast.CountStar):
            return "count(*)"
        name = expr.lower_name
        if name not in ("count", "sum", "avg", "min", "max"):
            return None
        argument = expr.arguments[0]
        distinct = "DISTINCT " if expr.distinct else ""
        if isinstance(argument, ast.Variable) and argument.name in plan.nodes and name == "count":
            return f"count({distinct}{plan.nodes[argument.name].id_sql})"
        rendered = compile_value(argument, plan.scope)
        if rendered is None:
            return None
        allowed = ("number", "string", "bool", "null") if name in ("count", "min", "max") else ("number",)
        if rendered[1] not in allowed:
            return None
        if name == "sum":
            return f"coalesce(sum({distinct}{rendered[0]}), 0)"
        return f"{name}({distinct}{rendered[0]})"

    def _order_skip_limit(self, clause, names, expressions, projected):
        if clause.order_by:
            def key(row):
                out = []
                for sort in clause.order_by:
                    expr = sort.expression
                    name = expr.name if isinstance(expr, ast.Variable) and expr.name in names else \
                        names[expressions.index(expr)]
                    value = SortKey(row[name])
                    out.append(Descending(value) if sort.descending else value)
                return out
            projected = sorted(projected, key=key)
        return self._skip_limit(clause, projected)

    def _skip_limit(self, clause, rows: list) -> list:
        """The rows left after the clause's SKIP and LIMIT."""
        skip = self._count(clause.skip, "SKIP")
        limit = self._count(clause.limit, "LIMIT")
        if skip:
            rows = rows[skip:]
        if limit is not None:
            rows = rows[:limit]
        return rows

    # -- MATCH

    def match(self, clause: ast.Match, rows: list[dict], row_cap: int | None = None) -> list[dict]:
        if not rows:
            return []
        var_length = [p for p in clause.patterns
                      if p.shortest or any(isinstance(e, ast.RelPattern) and e.variable_length for e in p.elements)]
        if var_length:
            return self.match_paths(clause, var_length[0], rows)
        return self.match_fixed(clause.patterns, clause.where, rows, optional=clause.optional, row_cap=row_cap,
                                groups=_groups(clause))

    def _bound(self, rows: list[dict]) -> tuple[dict[str, str], dict[str, str | None]]:
        """Kinds of node variables and type families of scalar variables bound in ``rows``."""
        kinds: dict[str, str] = {}
        families: dict[str, str | None] = {}
        for name in rows[0]:
            sample = next((r[name] for r in rows if r.get(name) is not None), None)
            if isinstance(sample, NodeRef):
                kinds[name] = sample.kind
            else:
                families[name] = _family_of_column([r.get(name) for r in rows])
        return kinds, families

    def match_fixed(self, patterns, where, rows, *, optional: bool, extra=(), row_cap=None, groups=None) -> list[dict]:
        bound_kinds, bound_families = self._bound(rows)
        plan = plan_match(patterns, where, self.model, bound_kinds=bound_kinds, bound_values=bound_families,
                          params=self.params, needed_props=self.needed_props, extra_conditions=list(extra),
                          pattern_groups=groups)
        new_vars = [n for n in list(plan.nodes) + list(plan.rels) if n not in rows[0]]
        if plan.sql is None:
            results = []
        else:
            tables = {}
            if plan.uses_bound:
                tables["bound"] = self._bound_table(rows, plan.bound_columns, bound_kinds)
            sql = plan.sql
            if row_cap is not None and not plan.residual and not optional and (plan.uses_bound or len(rows) == 1):
                sql += f" LIMIT {int(row_cap)}"  # later clauses keep only the first rows
            results = self.run_sql(sql, tables)
        out: list[dict] = []
        column_names = ["__row"] if plan.uses_bound else []
        column_names += [c[0] for c in plan.columns]
        out_index: list[int] = []
        evaluate = Evaluator(self.params)
        base_rows = rows
        for count, result in enumerate(results):
            if count % _CHECK_EVERY == 0:
                self.deadline.check()
            values = dict(zip(column_names, result))
            entities = self._entities(plan, values)
            bases = [(values["__row"], base_rows[values["__row"]])] if plan.uses_bound else enumerate(base_rows)
            for index, base in bases:
                row = dict(base)
                for name in new_vars:
                    row[name] = entities.get(name)
                for path_name, names in plan.path_bindings:
                    elements = [row.get(n) for n in names]
                    row[path_name] = Path(elements[0::2], elements[1::2])
                if plan.residual and not all(truthy(evaluate(e, row)) for e in plan.residual):
                    continue
                out_index.append(index)
                out.append(row)
                if len(out) % _CHECK_EVERY == 0:  # a cross product makes many rows per result
                    self.deadline.check(_CHECK_EVERY)
        if "roiInfo" in self.needed_props:
            self.view.fill_roi_infos([r[n] for r in out for n in new_vars if isinstance(r.get(n), RelRef)])
        if optional:
            by_index: dict[int, list] = {}
            for index, row in zip(out_index, out):
                by_index.setdefault(index, []).append(row)
            extended = []
            for index, base in enumerate(base_rows):
                if index in by_index:
                    extended.extend(by_index[index])
                else:
                    row = dict(base)
                    for name in new_vars:
                        row[name] = None
                    for path_name, _ in plan.path_bindings:
                        row[path_name] = None
                    extended.append(row)
            return extended
        return out

    def _bound_table(self, rows, names, kinds) -> pa.Table:
        columns = {"__row": pa.array(range(len(rows)), type=pa.int64())}
        for name in names:
            values = [r.get(name) for r in rows]
            if name in kinds:
                columns[name] = pa.array([v.id if isinstance(v, NodeRef) else None for v in values], type=pa.int64())
            else:
                try:
                    columns[name] = pa.array(values)
                except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                    raise QueryError(f"cannot use the values of `{name}` in a match ({exc})") from None
        return pa.table(columns)

    def _entities(self, plan, values: dict) -> dict:
        entities: dict = {}
        props: dict[str, dict] = {}
        for out, var, what in plan.columns:
            if what == "id":
                continue
            props.setdefault(var, {})[what] = values[out]
        for name, var in plan.nodes.items():
            if var.kind == META:
                entities[name] = NodeRef(META, 0, dict(self.model.meta), view=self.view, complete=True)
                continue
            key = values.get(name)
            if key is None:
                entities[name] = None
                continue
            node_props = props.get(name, {})
            for prop in plan.null_props.get(name, ()):
                node_props[prop] = None
            if var.kind == SEGMENT:
                node_props = {k: self.model.segment_value(k, v) for k, v in node_props.items()}
            elif var.kind == SYNAPSE and node_props.get("location") is not None:
                node_props["location"] = Point(node_props["location"])
            entities[name] = NodeRef(var.kind, key, node_props, view=self.view)
        for name, rel in plan.rels.items():
            rel_props = props.get(name, {})
            start, end = rel_props.pop("__start", None), rel_props.pop("__end", None)
            complete = rel.kind != CONNECTS
            entities[name] = RelRef(rel.kind, start, end, rel_props, view=self.view, complete=complete)
        return entities

    # -- variable-length and shortest paths

    def match_paths(self, clause: ast.Match, pattern: ast.PathPattern, rows: list[dict]) -> list[dict]:
        source_pattern, rel, target_pattern = pattern.elements
        if rel.direction == ast.Direction.INCOMING:
            source_pattern, target_pattern = target_pattern, source_pattern
        source_name = source_pattern.variable or "__path_source"
        target_name = target_pattern.variable or "__path_target"
        source_pattern = _with_variable(source_pattern, source_name)
        target_pattern = _with_variable(target_pattern, target_name)
        path_name = pattern.variable
        # head(nodes(p)) / last(nodes(p)) are the end points
        where = _rewrite_path_ends(clause.where, path_name, source_name, target_name, rel.direction)
        endpoint_terms, path_terms = [], []
        path_vars = {v for v in (path_name, rel.variable) if v}
        for term in conjuncts(where):
            (path_terms if variables_in(term) & path_vars else endpoint_terms).append(term)
        edge_filter, node_filter = self._path_filters(path_terms, path_name)
        other = [p for p in clause.patterns if p is not pattern]
        target_free = (not target_pattern.labels and target_pattern.properties is None
                       and target_name not in rows[0]
                       and not any(target_name in variables_in(t) for t in endpoint_terms)
                       and not any(target_name in {e.variable for e in p.elements} for p in other))
        if pattern.shortest and target_free:
            raise unsupported(pattern, f"{pattern.shortest} without a constrained end node")
        endpoint_patterns = other + [ast.PathPattern((source_pattern,))]
        if not target_free:
            endpoint_patterns.append(ast.PathPattern((target_pattern,)))
        endpoint_where = _and_all(endpoint_terms)
        endpoint_rows = self.match_fixed(endpoint_patterns, endpoint_where, rows, optional=False)
        graph = ConnectionGraph(self.run_sql, edge_filter, node_filter, self.deadline.check)
        min_hops = 1 if rel.min_hops is None else rel.min_hops
        max_hops = rel.max_hops
        found: dict = {}
        by_source: dict[int, set] = {}
        for row in endpoint_rows:
            source = row.get(source_name)
            if source is None or source.kind != SEGMENT:
                continue
            target = row.get(target_name) if not target_free else None
            if not target_free and (target is None or target.kind != SEGMENT):
                continue
            by_source.setdefault(source.id, set())
            if target is not None:
                by_source[source.id].add(target.id)
        for source_id, targets in sorted(by_source.items()):
            if pattern.shortest:
                for target_id in sorted(targets):
                    paths = all_shortest_paths(graph, source_id, target_id, max_hops, self.view)
                    if pattern.shortest == "shortestPath":
                        paths = paths[:1]
                    found[(source_id, target_id)] = paths
            else:
                paths = bounded_paths(graph, {source_id}, None if target_free else targets, min_hops, max_hops,
                                      self.view)
                for nodes, rels in paths:
                    found.setdefault((source_id, nodes[-1] if target_free else nodes[-1]), []).append((nodes, rels))
        # one NodeRef per body, loaded in one batch
        node_refs: dict[int, NodeRef] = {}
        for paths in found.values():
            for nodes, _ in paths:
                for body in nodes:
                    if body not in node_refs:
                        node_refs[body] = NodeRef(SEGMENT, body, view=self.view)
        self.view.complete_nodes(list(node_refs.values()))
        if "roiInfo" in self.needed_props:
            self.view.complete_rels([r for paths in found.values() for _, rels in paths for r in rels])
        out = []
        evaluate = Evaluator(self.params)
        reverse = rel.direction == ast.Direction.INCOMING
        for row in endpoint_rows:
            source = row.get(source_name)
            if source is None:
                continue
            if target_free:
                keys = [k for k in found if k[0] == source.id]
            else:
                target = row.get(target_name)
                keys = [(source.id, target.id)] if target is not None else []
            for key in keys:
                for nodes, rels in found.get(key, []):
                    new = dict(row)
                    refs = [node_refs[b] for b in nodes]
                    if target_free:
                        new[target_name] = refs[-1]
                    path = Path(refs[::-1], rels[::-1]) if reverse else Path(refs, rels)
                    if path_name:
                        new[path_name] = path
                    if rel.variable:
                        new[rel.variable] = list(path.rels)
                    if path_terms and not all(truthy(evaluate(t, new)) for t in path_terms):
                        continue
                    out.append(new)
                    if len(out) % _CHECK_EVERY == 0:
                        self.deadline.check(_CHECK_EVERY)
        return out

    def _path_filters(self, terms, path_name) -> tuple[str | None, str | None]:
        """SQL for ALL(x IN relationships(p) WHERE ...) and ALL(n IN nodes(p) WHERE ...)."""
        edge_parts, node_parts = [], []
        for term in terms:
            if not (isinstance(term, ast.Quantifier) and term.kind == "ALL"
                    and isinstance(term.source, ast.FunctionCall) and len(term.source.arguments) == 1
                    and isinstance(term.source.arguments[0], ast.Variable)
                    and term.source.arguments[0].name == path_name):
                continue
            function = term.source.lower_name
            scope = SqlScope(self.model, params=self.params)
            if function in ("relationships", "rels"):
                scope.rels[term.variable] = (CONNECTS, "c")
                sql = compile_predicate(term.where, scope)
                if sql and variables_in(term.where) <= {term.variable}:
                    edge_parts.append(sql)
            elif function == "nodes":
                scope.nodes[term.variable] = (SEGMENT, "n", "n.bodyId")
                sql = compile_predicate(term.where, scope)
                if sql and variables_in(term.where) <= {term.variable}:
                    node_parts.append(sql)
        return (" AND ".join(edge_parts) or None), (" AND ".join(node_parts) or None)

    # -- UNWIND

    def unwind(self, clause: ast.Unwind, rows):
        evaluate = Evaluator(self.params)
        self._prefetch([clause.expression], rows)
        out = []
        for row in rows:
            self.deadline.check()
            value = evaluate(clause.expression, row)
            if value is None:
                continue
            for count, item in enumerate(value if isinstance(value, list) else [value]):
                if count % _CHECK_EVERY == 0:
                    self.deadline.check(_CHECK_EVERY)
                new = dict(row)
                new[clause.alias] = item
                out.append(new)
        return out

    # -- WITH / RETURN

    def project(self, clause, rows):
        if clause.star:
            items = [ast.ProjectionItem(ast.Variable(n), n) for n in rows[0] if not n.startswith("_")] if rows else []
            items += list(clause.items)
        else:
            items = list(clause.items)
        names = [item.column_name for item in items]
        expressions = [item.expression for item in items]
        self._prefetch(expressions + [s.expression for s in clause.order_by], rows)
        aggregating = any(contains_aggregate(e) for e in expressions)
        evaluate = Evaluator(self.params)
        projected: list[tuple[dict, dict]] = []  # (output row, row for ORDER BY)
        if not aggregating:
            for count, row in enumerate(rows):
                if count % _CHECK_EVERY == 0:
                    self.deadline.check(_CHECK_EVERY)
                out = {name: evaluate(e, row) for name, e in zip(names, expressions)}
                projected.append((out, {**row, **out}))
        else:
            projected = self._aggregate(names, expressions, clause.order_by, rows)
        if clause.distinct:
            seen, unique = set(), []
            for out, context in projected:
                key = hashable([_identity(out[n]) for n in names])
                if key not in seen:
                    seen.add(key)
                    unique.append((out, context))
            projected = unique
        if clause.order_by:
            keys = []
            for out, context in projected:
                evaluator = Evaluator(self.params, context.get("__aggregates"))
                key = []
                for sort in clause.order_by:
                    value = evaluator(sort.expression, context)
                    key.append(Descending(SortKey(value)) if sort.descending else SortKey(value))
                keys.append(key)
            order = sorted(range(len(projected)), key=lambda i: keys[i])
            projected = [projected[i] for i in order]
        return names, [out for out, _ in self._skip_limit(clause, projected)]

    def _count(self, expr, what):
        if expr is None:
            return None
        value = Evaluator(self.params)(expr, {})
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise QueryError(f"{what} expects a non-negative integer, got {value!r}")
        return value

    def _aggregate(self, names, expressions, order_by, rows):
        aggregate_nodes = []
        for expr in list(expressions) + [s.expression for s in order_by]:
            for node in expr.walk():
                if isinstance(node, ast.Expression) and is_aggregate(node):
                    aggregate_nodes.append(node)
        key_positions = [i for i, e in enumerate(expressions) if not contains_aggregate(e)]
        evaluate = Evaluator(self.params)
        groups: dict = {}
        for count, row in enumerate(rows):
            if count % _CHECK_EVERY == 0:
                self.deadline.check(_CHECK_EVERY)
            key_values = [evaluate(expressions[i], row) for i in key_positions]
            key = hashable([_identity(v) for v in key_values])
            group = groups.get(key)
            if group is None:
                group = groups[key] = (key_values, row, [])
            group[2].append(row)
        if not groups and not key_positions:
            groups[()] = ([], {}, [])  # aggregation over no rows still gives one row
        out = []
        for key_values, first, members in groups.values():
            aggregates = {id(node): self._aggregate_value(node, members) for node in aggregate_nodes}
            evaluator = Evaluator(self.params, aggregates)
            row = {}
            key_iter = iter(key_values)
            for i, (name, expr) in enumerate(zip(names, expressions)):
                row[name] = next(key_iter) if i in key_positions else evaluator(expr, first)
            context = {**first, **row, "__aggregates": aggregates}
            out.append((row, context))
        return out

    def _aggregate_value(self, node, rows):
        if isinstance(node, ast.CountStar):
            return len(rows)
        evaluate = Evaluator(self.params)
        values = [evaluate(node.arguments[0], r) for r in rows]
        values = [v for v in values if v is not None]
        if node.distinct:
            values = _distinct(values, lambda v: hashable(_identity(v)))
        name = node.lower_name
        if name == "count":
            return len(values)
        if name == "collect":
            return values
        if name == "sum":
            return sum(values) if values else 0
        if name == "avg":
            return sum(values) / len(values) if values else None
        if name in ("min", "max"):
            if not values:
                return None
            keys = [SortKey(v) for v in values]
            best = min(range(len(values)), key=lambda i: keys[i]) if name == "min" else \
                max(range(len(values)), key=lambda i: keys[i])
            return values[best]
        if name == "stdev":
            return statistics.stdev(values) if len(values) > 1 else 0.0
        if name == "stdevp":
            return statistics.pstdev(values) if values else 0.0
        raise unsupported(node, f"aggregation {node.name}()")

    def _prefetch(self, expressions, rows) -> None:
        """Load whole property maps in one batch where an expression needs them (keys(n), RETURN n...)."""
        variables = set()
        for expr in expressions:
            for node in expr.walk():
                if isinstance(node, ast.FunctionCall) and node.lower_name in (
                        "keys", "properties", "apoc.map.removekeys", "apoc.map.removekey") and node.arguments:
                    if isinstance(node.arguments[0], ast.Variable):
                        variables.add(node.arguments[0].name)
                elif isinstance(node, ast.MapProjection):
                    variables.add(node.subject.name)
        if variables:
            self.view.complete_nodes([r.get(v) for r in rows for v in variables if isinstance(r.get(v), NodeRef)])
            self.view.complete_rels([r.get(v) for r in rows for v in variables if isinstance(r.get(v), RelRef)])

    def complete_entities(self, rows) -> None:
        """Before output: whole nodes and relationships in the result get all their properties."""
        nodes, rels = [], []

        def visit(value):
            if isinstance(value, NodeRef):
                nodes.append(value)
            elif isinstance(value, RelRef):
                rels.append(value)
            elif isinstance(value, Path):
                nodes.extend(value.nodes)
                rels.extend(value.rels)
            elif isinstance(value, (list, tuple)):
                for v in value:
                    visit(v)
            elif isinstance(value, dict):
                for v in value.values():
                    visit(v)

        for row in rows:
            for value in row:
                visit(value)
        self.view.complete_nodes(nodes)
        self.view.complete_rels(rels)

    # -- CALL

    def call(self, clause: ast.Call, rows):
        name = clause.procedure.lower()
        yields = clause.yield_items or tuple(ast.YieldItem(n) for n in PROCEDURES[name].yields)
        out = []
        evaluate = Evaluator(self.params)
        for row in rows:
            for record in self._procedure(clause, name, row, evaluate):
                new = dict(row)
                for item in yields:
                    new[item.variable] = record.get(item.name)
                if clause.where is not None and not truthy(evaluate(clause.where, new)):
                    continue
                out.append(new)
        return out, [item.variable for item in yields]

    def _procedure(self, clause, name, row, evaluate):
        if name in ("apoc.cypher.runtimeboxed", "apoc.cypher.run"):
            text = evaluate(clause.arguments[0], row)
            if not isinstance(text, str):
                raise QueryError(f"{clause.procedure} expects the query as a string")
            inner = clause.inner_query
            if inner is None:
                inner = parse(text)
                analyze(inner)
            params = evaluate(clause.arguments[1], row) if len(clause.arguments) > 1 else {}
            if params is not None and not isinstance(params, dict):
                raise QueryError(f"{clause.procedure} expects the parameters as a map")
            box = None
            if name == "apoc.cypher.runtimeboxed":
                millis = evaluate(clause.arguments[2], row) if len(clause.arguments) > 2 else None
                box = None if millis is None else float(millis) / 1000.0
            deadline = Deadline(box, parent=self.deadline)
            inner_execution = Execution(self.store, self.cursor, deadline, params or {}, needed_properties(inner))
            try:
                columns, results = inner_execution.run_query(inner)
            except CypherTimeoutError:
                if self.deadline.expired():
                    raise self.deadline.error() from None
                return []  # Neo4j's runTimeboxed yields nothing when its time box runs out
            return [{"value": dict(zip(columns, r))} for r in results]
        if name == "db.labels":
            return [{"label": label} for label in ("Meta", "Neuron", "Segment", "Synapse", "SynapseSet")]
        if name == "db.relationshiptypes":
            return [{"relationshipType": t} for t in ("ConnectsTo", "Contains", "SynapsesTo")]
        if name == "db.propertykeys":
            keys = sorted(set(self.model.segment_properties) | set(self.model.rois) | set(self.model.nt_columns)
                          | {"type", "confidence", "location", "weight", "weightHP"} | set(self.model.meta))
            return [{"propertyKey": k} for k in keys]
        if name == "dbms.components":
            return [{"name": "Neo4j Kernel", "versions": ["4.4.0"], "edition": "community"}]
        raise unsupported(clause, f"procedure {clause.procedure}")


# ---------------------------------------------------------------------------------------------
# helpers


def _identity(value):
    """What DISTINCT and grouping compare: entities by identity, other values by value."""
    if isinstance(value, NodeRef):
        return ("node", value.kind, value.id)
    if isinstance(value, RelRef):
        return ("rel", value.kind, value.start, value.end)
    if isinstance(value, Path):
        return ("path", tuple(_identity(n) for n in value.nodes), tuple(_identity(r) for r in value.rels))
    if isinstance(value, list):
        return [_identity(v) for v in value]
    if isinstance(value, dict):
        return {k: _identity(v) for k, v in value.items()}
    return value


def _distinct(items, key) -> list:
    """The items with duplicate keys dropped, first occurrence kept, order preserved."""
    seen, unique = set(), []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            unique.append(item)
    return unique


def _is_constant(expr) -> bool:
    if isinstance(expr, ast.Literal):
        return True
    if isinstance(expr, ast.ListLiteral):
        return all(_is_constant(item) for item in expr.items)
    return False


def _names_bound(node) -> set[str]:
    """Every variable name a (sub)tree binds: pattern variables, aliases, comprehension variables."""
    names = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, (tuple, list)):
            stack.extend(item)
            continue
        if not isinstance(item, ast.Node):
            continue
        if isinstance(item, ast.ProjectionItem) and isinstance(item.expression, ast.Variable) \
                and item.alias in (None, item.expression.name):
            continue  # ``WITH x`` passes x on; it does not bind a new x
        for attr in ("variable", "alias", "accumulator"):
            value = getattr(item, attr, None)
            if isinstance(value, str):
                names.add(value)
        stack.extend(item.children())
    return names


def _substitute(node, name: str, value):
    """A copy of ``node`` with every ``Variable(name)`` replaced by the expression ``value``.

    A projection item that passes the variable on (``WITH n, ids``) keeps its name as an alias.
    """
    if isinstance(node, ast.Variable):
        return value if node.name == name else node
    if isinstance(node, ast.ProjectionItem) and isinstance(node.expression, ast.Variable) \
            and node.expression.name == name:
        return dataclasses.replace(node, expression=value, alias=node.alias or name)
    if isinstance(node, tuple):
        return tuple(_substitute(item, name, value) for item in node)
    if not isinstance(node, ast.Node) or not dataclasses.is_dataclass(node):
        return node
    changes = {}
    for f in dataclasses.fields(node):
        if f.name in ("line", "column") or not f.init:
            continue
        current = getattr(node, f.name)
        replaced = _substitute(current, name, value)
        if replaced is not current:
            changes[f.name] = replaced
    return dataclasses.replace(node, **changes) if changes else node


def inline_constant_withs(clauses) -> tuple:
    """``WITH [1, 2] AS ids MATCH ... WHERE n.bodyId IN ids`` -> the list written where it is used.

    neuprint-python passes long body-id lists this way; as a variable the filter is evaluated row by
    row, as a literal it becomes SQL that the sorted tables can answer with a range scan. Only a
    leading WITH of constants is inlined, and only when no later clause binds the names anew.
    """
    clauses = tuple(clauses)
    if len(clauses) < 2 or not isinstance(clauses[0], ast.With):
        return clauses
    first = clauses[0]
    if first.distinct or first.star or first.order_by or first.skip or first.limit or first.where:
        return clauses
    if not all(item.alias and _is_constant(item.expression) for item in first.items):
        return clauses
    rest = clauses[1:]
    # Names a later clause binds anew (its own alias, UNWIND, a pattern) are not constants there.
    bound = _names_bound(rest)
    if any(item.alias in bound for item in first.items):
        return clauses
    for item in first.items:
        rest = _substitute(rest, item.alias, item.expression)
    return rest


def fold_pass_through_withs(clauses) -> tuple:
    """Merge ``WITH n, m [WHERE ...]`` clauses that only pass variables on into the MATCH before.

    neuprint-python writes ``MATCH ... WITH n, m, e, true AS _ WHERE ... WITH n, s WHERE ...``;
    folded, the WHERE terms reach the SQL and the MATCH can run together with its RETURN. A
    ``WITH DISTINCT`` folds only when every dropped variable is determined by the kept ones (a
    SynapseSet by its body, a relationship by its ends), so that no duplicates can arise.
    """
    clauses = list(clauses)
    position = 0
    while position + 1 < len(clauses):
        match, following = clauses[position], clauses[position + 1]
        folded = _fold_with(match, following, clauses[position + 2:])  # or merge two MATCHes
        if folded is None:
            position += 1
        else:
            clauses[position:position + 2] = [folded]
    return tuple(clauses)


@dataclass(frozen=True)
class MergedMatch(ast.Match):
    """Consecutive MATCH clauses as one; ``groups`` gives each pattern's original clause."""

    groups: tuple[int, ...] = ()


def _groups(match: ast.Match) -> tuple[int, ...]:
    return match.groups if isinstance(match, MergedMatch) else (0,) * len(match.patterns)


def _is_var_length(match: ast.Match) -> bool:
    return any(p.shortest or any(isinstance(e, ast.RelPattern) and e.variable_length for e in p.elements)
               for p in match.patterns)


def _merge_matches(first, second):
    """MATCH a WHERE x MATCH b WHERE y -> MATCH a, b WHERE x AND y (both plain, not OPTIONAL)."""
    if not (isinstance(first, ast.Match) and isinstance(second, ast.Match)) or first.optional or second.optional:
        return None
    if _is_var_length(first) or _is_var_length(second):
        return None
    where = first.where
    if second.where is not None:
        where = second.where if where is None else ast.BinaryOp(
            "AND", where, second.where, line=second.where.line, column=second.where.column)
    offset = max(_groups(first)) + 1
    return MergedMatch(first.patterns + second.patterns, where, False, line=first.line, column=first.column,
                       groups=_groups(first) + tuple(g + offset for g in _groups(second)))


def _fold_with(match, with_clause, rest):
    merged = _merge_matches(match, with_clause)
    if merged is not None:
        return merged
    if not isinstance(match, ast.Match) or not isinstance(with_clause, ast.With) or match.optional:
        return None
    if with_clause.star or with_clause.order_by or with_clause.skip is not None or with_clause.limit is not None:
        return None
    if any(p.shortest or any(isinstance(e, ast.RelPattern) and e.variable_length for e in p.elements)
           for p in match.patterns):
        return None
    pattern_vars = {e.variable for p in match.patterns for e in p.elements if e.variable}
    pattern_vars |= {p.variable for p in match.patterns if p.variable}
    kept, constants = set(), set()
    for item in with_clause.items:
        expr = item.expression
        if isinstance(expr, ast.Variable) and item.alias in (None, expr.name) and expr.name in pattern_vars:
            kept.add(expr.name)
        elif _is_constant(expr) and item.alias is not None:
            constants.add(item.alias)
        else:
            return None
    later = set()
    for clause in rest:
        for node in clause.walk():
            if isinstance(node, ast.Variable):
                later.add(node.name)
    if constants & later or (with_clause.where is not None and variables_in(with_clause.where) & constants):
        return None  # a constant alias is used later: keep the WITH
    if with_clause.distinct and not _determined_by(match.patterns, kept):
        return None
    where = match.where
    if with_clause.where is not None:
        where = with_clause.where if where is None else ast.BinaryOp(
            "AND", where, with_clause.where, line=with_clause.where.line, column=with_clause.where.column)
    # variables the WITH dropped must not be used later (Cypher would reject that query)
    if (pattern_vars - kept) & later:
        return None
    return MergedMatch(match.patterns, where, match.optional, line=match.line, column=match.column,
                       groups=_groups(match))


def _determined_by(patterns, kept: set[str]) -> bool:
    """True when every pattern element not in ``kept`` is fixed by the kept ones in the store's model."""
    known = set(kept)
    elements = []
    for pattern in patterns:
        if pattern.variable and pattern.variable not in kept:
            return False
        parts = pattern.elements
        for i in range(1, len(parts), 2):
            elements.append((parts[i - 1], parts[i], parts[i + 1]))
    nodes = {id(e): e for p in patterns for e in p.elements if isinstance(e, ast.NodePattern)}

    def key(element):
        return element.variable or id(element)

    changed = True
    while changed:
        changed = False
        for left, rel, right in elements:
            for a, b in ((left, right), (right, left)):
                # a SynapseSet is fixed by the body it is Contained in or Contains
                if key(b) not in known and "SynapseSet" in b.labels and key(a) in known and \
                        rel.types in (("Contains",), ()):
                    known.add(key(b))
                    changed = True
            if key(rel) not in known and key(left) in known and key(right) in known:
                known.add(key(rel))
                changed = True
    everything = {key(e) for _, e in nodes.items()} | {key(r) for _, r, _ in elements}
    return everything <= known


def _whole_node_item(expr, plan):
    """(variable, removed keys) for ``n`` / ``apoc.map.removeKeys(n, ['a', ...])`` over a Segment or
    Synapse of the match; None for any other expression."""
    removed = None
    if isinstance(expr, ast.FunctionCall) and expr.lower_name == "apoc.map.removekeys" and len(expr.arguments) == 2:
        keys = expr.arguments[1]
        if not (isinstance(keys, ast.ListLiteral) and all(isinstance(k, ast.Literal) and isinstance(k.value, str)
                                                           for k in keys.items)):
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


def _row_cap(clauses, position: int) -> int | None:
    """How many rows of the MATCH at ``position`` the rest of the query can use (None: all)."""
    for clause in clauses[position + 1:]:
        if not isinstance(clause, (ast.With, ast.Return)):
            return None
        if clause.distinct or clause.order_by or any(contains_aggregate(i.expression) for i in clause.items):
            return None
        if isinstance(clause, ast.With) and clause.where is not None:
            return None
        if clause.limit is not None:
            if not isinstance(clause.limit, ast.Literal) or (clause.skip is not None and not isinstance(clause.skip, ast.Literal)):
                return None
            return int(clause.limit.value) + (int(clause.skip.value) if clause.skip is not None else 0)
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


def _family_of_column(values) -> str | None:
    families = set()
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool):
            families.add("bool")
        elif isinstance(v, int):
            if abs(v) >= 2**63:
                return None
            families.add("number")
        elif isinstance(v, float):
            families.add("number")
        elif isinstance(v, str):
            families.add("string")
        elif isinstance(v, list):
            inner = _family_of_column(v)
            if inner is None or inner.startswith("list"):
                return None
            families.add("list:" + inner)
        else:
            return None
    if len(families) > 1:
        return None
    return families.pop() if families else "null"


def _with_variable(node: ast.NodePattern, name: str) -> ast.NodePattern:
    if node.variable == name:
        return node
    return ast.NodePattern(name, node.labels, node.properties, line=node.line, column=node.column)


def _and_all(terms):
    if not terms:
        return None
    result = terms[0]
    for term in terms[1:]:
        result = ast.BinaryOp("AND", result, term, line=term.line, column=term.column)
    return result


def _rewrite_path_ends(where, path_name, source_name, target_name, direction):
    """head(nodes(p)) -> source, last(nodes(p)) -> target (the end points of the pattern)."""
    if where is None or path_name is None:
        return where
    first, last = (source_name, target_name) if direction != ast.Direction.INCOMING else (target_name, source_name)

    def rewrite(node):
        if isinstance(node, ast.FunctionCall) and node.lower_name in ("head", "last") and len(node.arguments) == 1:
            arg = node.arguments[0]
            if (isinstance(arg, ast.FunctionCall) and arg.lower_name == "nodes" and len(arg.arguments) == 1
                    and isinstance(arg.arguments[0], ast.Variable) and arg.arguments[0].name == path_name):
                name = first if node.lower_name == "head" else last
                return ast.Variable(name, line=node.line, column=node.column)
        if isinstance(node, ast.Node):
            changes = {}
            for f in node.__dataclass_fields__:
                if f in ("line", "column"):
                    continue
                value = getattr(node, f)
                new = _rewrite_value(value, rewrite)
                if new is not value:
                    changes[f] = new
            if changes:
                return dataclasses.replace(node, **changes)
        return node

    return rewrite(where)


def _rewrite_value(value, rewrite):
    if isinstance(value, ast.Node):
        return rewrite(value)
    if isinstance(value, tuple):
        new = tuple(_rewrite_value(v, rewrite) for v in value)
        return value if all(a is b for a, b in zip(new, value)) else new
    return value

