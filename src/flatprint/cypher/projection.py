"""Executing UNWIND, WITH and RETURN in Python: projection, grouping, DISTINCT, ORDER BY, SKIP, LIMIT."""

from __future__ import annotations

import math
import statistics

from flatprint.cypher import ast
from flatprint.cypher.deadline import CHECK_EVERY
from flatprint.cypher.errors import unsupported
from flatprint.cypher.evaluator import Evaluator
from flatprint.cypher.registry import contains_aggregate, is_aggregate
from flatprint.cypher.values import Descending, NodeRef, Path, RelRef, SortKey, hashable
from flatprint.errors import QueryError


class ProjectionExecution:
    """The row-wise WITH / RETURN / UNWIND part of :class:`flatprint.cypher.engine.Execution`."""

    def _order_skip_limit(self, clause, names, expressions, projected):
        if clause.order_by:

            def key(row):
                out = []
                for sort in clause.order_by:
                    expr = sort.expression
                    name = (
                        expr.name
                        if isinstance(expr, ast.Variable) and expr.name in names
                        else names[expressions.index(expr)]
                    )
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
                if count % CHECK_EVERY == 0:
                    self.deadline.check(CHECK_EVERY)
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
                if count % CHECK_EVERY == 0:
                    self.deadline.check(CHECK_EVERY)
                out = {name: evaluate(e, row) for name, e in zip(names, expressions)}
                projected.append((out, {**row, **out}))
        else:
            projected = self._aggregate(names, expressions, clause.order_by, rows)
        if clause.distinct:
            seen, unique = set(), []
            for row_out, context in projected:
                key = hashable([identity(row_out[n]) for n in names])
                if key not in seen:
                    seen.add(key)
                    unique.append((row_out, context))
            projected = unique
        if clause.order_by:
            keys = []
            for _out, context in projected:
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
            if count % CHECK_EVERY == 0:
                self.deadline.check(CHECK_EVERY)
            key_values = [evaluate(expressions[i], row) for i in key_positions]
            key = hashable([identity(v) for v in key_values])
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
            values = distinct(values, lambda v: hashable(identity(v)))
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
            best = (
                min(range(len(values)), key=lambda i: keys[i])
                if name == "min"
                else max(range(len(values)), key=lambda i: keys[i])
            )
            return values[best]
        if name == "stdev":
            return statistics.stdev(values) if len(values) > 1 else 0.0
        if name == "stdevp":
            return statistics.pstdev(values) if values else 0.0
        if name in ("percentiledisc", "percentilecont"):
            return percentile(name, values, evaluate(node.arguments[1], rows[0] if rows else {}), node)
        raise unsupported(node, f"aggregation {node.name}()")

    def _prefetch(self, expressions, rows) -> None:
        """Load whole property maps in one batch where an expression needs them (keys(n), RETURN n...)."""
        variables = set()
        for expr in expressions:
            for node in expr.walk():
                if (
                    isinstance(node, ast.FunctionCall)
                    and node.lower_name in ("keys", "properties", "apoc.map.removekeys", "apoc.map.removekey")
                    and node.arguments
                ):
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


def percentile(name: str, values: list, fraction, node):
    """percentileDisc: the smallest value with at least ``fraction`` of the values at or below it;
    percentileCont: linear interpolation between the two values around ``fraction``."""
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0.0 <= fraction <= 1.0:
        raise QueryError(f"{node.name}() expects a percentile between 0.0 and 1.0, got {fraction!r}")
    if not values:
        return None
    if any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in values):
        raise QueryError(f"{node.name}() expects numbers")
    ordered = sorted(values)
    if name == "percentiledisc":
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def identity(value):
    """What DISTINCT and grouping compare: entities by identity, other values by value."""
    if isinstance(value, NodeRef):
        return ("node", value.kind, value.id)
    if isinstance(value, RelRef):
        return ("rel", value.kind, value.start, value.end)
    if isinstance(value, Path):
        return ("path", tuple(identity(n) for n in value.nodes), tuple(identity(r) for r in value.rels))
    if isinstance(value, list):
        return [identity(v) for v in value]
    if isinstance(value, dict):
        return {k: identity(v) for k, v in value.items()}
    return value


def distinct(items, key) -> list:
    """The items with duplicate keys dropped, first occurrence kept, order preserved."""
    seen, unique = set(), []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            unique.append(item)
    return unique
