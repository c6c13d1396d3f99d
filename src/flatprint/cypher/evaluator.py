"""Evaluating Cypher expressions in Python, row by row, with Cypher's null semantics.

The SQL generator pushes whatever it can (pattern predicates) into DuckDB; everything else —
projections, residual predicates, list comprehensions, aggregation inputs — is evaluated here on
the rows the SQL returned. This module walks the expression tree (operators, CASE, comprehensions,
quantifiers, map projections); the scalar functions are in :mod:`flatprint.cypher.functions` and
the value semantics both share (null, equality, ordering, properties) in
:mod:`flatprint.cypher.semantics`. Unsupported functions and expressions are refused *before*
execution by :mod:`flatprint.cypher.analyzer` (against :mod:`flatprint.cypher.registry`, whose every
entry is implemented in the functions module or in the executor), so a query never fails half-way
with a surprise.
"""

from __future__ import annotations

import math

from flatprint.cypher import ast
from flatprint.cypher.errors import unsupported
from flatprint.cypher.functions import call_function
from flatprint.cypher.registry import AGGREGATES
from flatprint.cypher.semantics import (
    compare,
    compiled_regex,
    format_value,
    get_property,
    has_label,
    in_list,
    index,
    meta_type,
    number,
    properties_of,
    truthy,
)
from flatprint.errors import QueryError


class Evaluator:
    """Evaluates expressions against a row (dict variable -> value)."""

    def __init__(self, params: dict | None = None, aggregates: dict | None = None):
        self.params = params or {}
        self.aggregates = aggregates  # id(expr) -> value, while projecting an aggregation

    def __call__(self, expr: ast.Expression, row: dict):
        return self.eval(expr, row)

    def eval(self, e, row):  # noqa: C901 - one dispatch over the expression kinds
        if self.aggregates is not None and id(e) in self.aggregates:
            return self.aggregates[id(e)]
        t = type(e)
        if t is ast.Literal:
            return e.value
        if t is ast.Variable:
            if e.name not in row:
                raise QueryError(f"variable `{e.name}` not defined (line {e.line}, column {e.column})")
            return row[e.name]
        if t is ast.Property:
            return get_property(self.eval(e.subject, row), e.name)
        if t is ast.Parameter:
            if e.name not in self.params:
                raise QueryError(f"expected parameter ${e.name} (line {e.line}, column {e.column})")
            return self.params[e.name]
        if t is ast.Comparison:
            result = True
            for left, op, right in e.pairs():
                value = compare(op, self.eval(left, row), self.eval(right, row))
                if value is False:
                    return False
                if value is None:
                    result = None
            return result
        if t is ast.BinaryOp:
            return self.binary(e, row)
        if t is ast.UnaryOp:
            value = self.eval(e.operand, row)
            if e.operator == "NOT":
                return None if value is None else not truthy(value)
            if value is None:
                return None
            return -value if e.operator == "-" else value
        if t is ast.In:
            return in_list(self.eval(e.element, row), self.eval(e.collection, row))
        if t is ast.StringOp:
            subject, search = self.eval(e.subject, row), self.eval(e.search, row)
            if not isinstance(subject, str) or not isinstance(search, str):
                return None
            if e.operator == "STARTS WITH":
                return subject.startswith(search)
            if e.operator == "ENDS WITH":
                return subject.endswith(search)
            return search in subject
        if t is ast.RegexMatch:
            subject, pattern = self.eval(e.subject, row), self.eval(e.pattern, row)
            if not isinstance(subject, str) or not isinstance(pattern, str):
                return None
            return compiled_regex(pattern).fullmatch(subject) is not None
        if t is ast.IsNull:
            value = self.eval(e.subject, row)
            return (value is not None) if e.negated else (value is None)
        if t is ast.Exists:
            return self.eval(e.argument, row) is not None
        if t is ast.ListLiteral:
            values = e.literal_values()  # a Literal evaluates to its value
            return list(values) if values is not None else [self.eval(i, row) for i in e.items]
        if t is ast.MapLiteral:
            return {k: self.eval(v, row) for k, v in e.entries}
        if t is ast.FunctionCall:
            return self.function(e, row)
        if t is ast.Index:
            return index(self.eval(e.subject, row), self.eval(e.key, row))
        if t is ast.Slice:
            subject = self.eval(e.subject, row)
            if subject is None:
                return None
            start = self.eval(e.start, row) if e.start is not None else 0
            end = self.eval(e.end, row) if e.end is not None else len(subject)
            if start is None or end is None:  # a bound that is null makes the slice null
                return None
            return subject[start:end]
        if t is ast.ListComprehension:
            source = self.eval(e.source, row)
            if source is None:
                return None
            out = []
            inner = dict(row)
            for item in source:
                inner[e.variable] = item
                if e.where is not None and not truthy(self.eval(e.where, inner)):
                    continue
                out.append(self.eval(e.projection, inner) if e.projection is not None else item)
            return out
        if t is ast.Quantifier:
            return self.quantifier(e, row)
        if t is ast.Reduce:
            source = self.eval(e.source, row)
            if source is None:
                return None
            inner = dict(row)
            inner[e.accumulator] = self.eval(e.initial, row)
            for item in source:
                inner[e.variable] = item
                inner[e.accumulator] = self.eval(e.expression, inner)
            return inner[e.accumulator]
        if t is ast.Case:
            subject = self.eval(e.subject, row) if e.subject is not None else None
            for alt in e.alternatives:
                if e.subject is not None:
                    if compare("=", subject, self.eval(alt.when, row)):
                        return self.eval(alt.then, row)
                elif truthy(self.eval(alt.when, row)):
                    return self.eval(alt.then, row)
            return self.eval(e.default, row) if e.default is not None else None
        if t is ast.MapProjection:
            subject = self.eval(e.subject, row)
            out = {}
            for item in e.items:
                if item.kind == "all_properties":
                    out.update(properties_of(subject))
                elif item.kind == "property":
                    out[item.name] = get_property(subject, item.name)
                elif item.kind == "variable":
                    out[item.name] = row.get(item.name)
                else:
                    out[item.name] = self.eval(item.value, row)
            return out
        if t is ast.LabelPredicate:
            subject = self.eval(e.subject, row)
            if subject is None:
                return None
            return all(has_label(subject, label) for label in e.labels)
        raise unsupported(e, type(e).__name__)

    def binary(self, e: ast.BinaryOp, row):
        op = e.operator
        if op in ("AND", "OR", "XOR"):
            left = self.eval(e.left, row)
            left = None if left is None else truthy(left)
            if op == "AND" and left is False:
                return False
            if op == "OR" and left is True:
                return True
            right = self.eval(e.right, row)
            right = None if right is None else truthy(right)
            if op == "AND":
                return False if right is False else (None if left is None or right is None else True)
            if op == "OR":
                return True if right is True else (None if left is None or right is None else False)
            return None if left is None or right is None else left != right
        left, right = self.eval(e.left, row), self.eval(e.right, row)
        if left is None or right is None:
            return None
        if op == "+":
            if isinstance(left, list):
                return left + (right if isinstance(right, list) else [right])
            if isinstance(right, list):
                return [left] + right
            if isinstance(left, str) or isinstance(right, str):
                return f"{format_value(left)}{format_value(right)}"
            if not (number(left) and number(right)):
                raise arithmetic_error(e, left, right)
            return left + right
        if not (number(left) and number(right)):  # Python would repeat strings and add booleans
            raise arithmetic_error(e, left, right)
        if op == "-":
            return left - right
        if op == "*":
            return left * right
        if op == "/":
            if isinstance(left, int) and isinstance(right, int):
                if right == 0:
                    raise QueryError("/ by zero")
                return int(left / right)
            return left / right if right else (math.nan if left == 0 else math.copysign(math.inf, left))
        if op == "%":
            if isinstance(left, int) and isinstance(right, int):
                return int(math.fmod(left, right))
            return math.fmod(left, right)
        if op == "^":
            return float(left) ** float(right)
        raise unsupported(e, op)

    def quantifier(self, e: ast.Quantifier, row):
        source = self.eval(e.source, row)
        if source is None:
            return None
        inner = dict(row)
        trues = unknown = 0
        for item in source:
            inner[e.variable] = item
            value = self.eval(e.where, inner)
            if value is None:
                unknown += 1
            elif truthy(value):
                trues += 1
                if e.kind == "ANY":
                    return True
                if e.kind == "NONE":
                    return False
            elif e.kind == "ALL":
                return False
        if e.kind == "ALL":
            return None if unknown else True
        if e.kind == "ANY":
            return None if unknown else False
        if e.kind == "NONE":
            return None if unknown else True
        if trues > 1:  # SINGLE: two matches decide, whatever the unknown elements are
            return False
        return None if unknown else trues == 1

    def function(self, e: ast.FunctionCall, row):
        name = e.lower_name
        if name in AGGREGATES:
            raise unsupported(e, f"aggregation {e.name}()", "not allowed here")
        if name == "coalesce":
            for arg in e.arguments:
                value = self.eval(arg, row)
                if value is not None:
                    return value
            return None
        args = [self.eval(a, row) for a in e.arguments]
        return call_function(e, name, args)


def arithmetic_error(e, left, right) -> QueryError:
    return QueryError(
        f"cannot compute {meta_type(left).lower()} {e.operator} {meta_type(right).lower()} "
        f"(line {e.line}, column {e.column})"
    )
