"""Cypher expressions -> DuckDB SQL, for the predicates the planner pushes into a match.

:class:`SqlScope` knows, for one MATCH, which SQL alias stands for each pattern variable and
which values come from earlier rows (columns of the ``bound`` table). :func:`compile_predicate`
renders an expression as SQL or returns None when it cannot be rendered *with the same meaning*;
the planner then leaves that predicate to the Python evaluator. Rendering is deliberately
conservative: comparisons are pushed only between values of the same type family, because
Cypher compares ``1 = '1'`` as false while SQL would cast.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flatprint.cypher import ast
from flatprint.cypher.schema import SEGMENT, SYNAPSE, GraphModel
from flatprint.store.sql import quote_ident, sql_literal

_SQL_COMPARISON = {"=": "=", "<>": "<>", "<": "<", ">": ">", "<=": "<=", ">=": ">="}


@dataclass
class SqlScope:
    """Variables visible to the SQL of one match."""

    model: GraphModel
    nodes: dict = field(default_factory=dict)  # variable -> (kind, alias or None, id SQL)
    rels: dict = field(default_factory=dict)  # variable -> (kind, alias)
    bound_values: dict = field(default_factory=dict)  # variable -> (SQL, family) from earlier rows
    params: dict = field(default_factory=dict)


def _value_family(value) -> str | None:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def python_literal(value) -> tuple[str, str] | None:
    """(SQL, family) of a constant from a parameter or earlier row; lists as SQL lists."""
    family = _value_family(value)
    if family is not None:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
            return None
        return sql_literal(value), family
    if isinstance(value, list):
        families = {_value_family(v) for v in value} - {"null"}
        if len(families) > 1 or None in families:
            return None
        inner = [sql_literal(v) for v in value if v is not None]
        return "[" + ", ".join(inner) + "]", "list:" + (families.pop() if families else "null")
    return None


def compile_value(e: ast.Expression, scope: SqlScope) -> tuple[str, str] | None:
    """(SQL, type family) of a value expression, or None."""
    if isinstance(e, ast.Literal):
        return python_literal(e.value)
    if isinstance(e, ast.Parameter):
        if e.name not in scope.params:
            return None
        return python_literal(scope.params[e.name])
    if isinstance(e, ast.ListLiteral):
        values = []
        for item in e.items:
            if not isinstance(item, ast.Literal):
                return None
            values.append(item.value)
        return python_literal(values)
    if isinstance(e, ast.Variable):
        return scope.bound_values.get(e.name)
    if isinstance(e, ast.Property):
        subject = e.subject
        if isinstance(subject, ast.Variable):
            if subject.name in scope.nodes:
                kind, alias, _ = scope.nodes[subject.name]
                if alias is None:
                    return None
                return scope.model.node_property_sql(kind, alias, e.name)
            if subject.name in scope.rels:
                kind, alias = scope.rels[subject.name]
                return scope.model.rel_property_sql(kind, alias, e.name)
            return None
        if isinstance(subject, ast.Property) and isinstance(subject.subject, ast.Variable):
            node = scope.nodes.get(subject.subject.name)
            if node and node[1] is not None:
                sql = scope.model.point_component_sql(node[0], node[1], subject.name, e.name)
                return (sql, "number") if sql else None
        return None
    if isinstance(e, ast.FunctionCall):
        name = e.lower_name
        if name == "id" and len(e.arguments) == 1 and isinstance(e.arguments[0], ast.Variable):
            node = scope.nodes.get(e.arguments[0].name)
            if node and node[0] in (SEGMENT, SYNAPSE):
                return node[2], "number"
            return None
        if name == "coalesce" and e.arguments:
            parts = [compile_value(a, scope) for a in e.arguments]
            if any(p is None for p in parts):
                return None
            families = {p[1] for p in parts} - {"null"}
            if len(families) > 1 or families & {"point", "list"} or any(f.startswith("list:") for f in families):
                return None
            return f"coalesce({', '.join(p[0] for p in parts)})", (families.pop() if families else "null")
        if name in ("tolower", "toupper", "lower", "upper") and len(e.arguments) == 1:
            inner = compile_value(e.arguments[0], scope)
            if inner and inner[1] in ("string", "null"):
                return f"{'lower' if 'lower' in name else 'upper'}({inner[0]})", "string"
        return None
    if isinstance(e, ast.BinaryOp) and e.operator in ("+", "-", "*"):
        left, right = compile_value(e.left, scope), compile_value(e.right, scope)
        if left and right and left[1] == right[1] == "number":
            return f"({left[0]} {e.operator} {right[0]})", "number"
        return None
    return None


def compile_predicate(e: ast.Expression, scope: SqlScope) -> str | None:
    """SQL for a boolean expression with Cypher's meaning, or None."""
    if isinstance(e, ast.BinaryOp) and e.operator in ("AND", "OR", "XOR"):
        left, right = compile_predicate(e.left, scope), compile_predicate(e.right, scope)
        if left is None or right is None:
            return None
        if e.operator == "XOR":
            return f"(({left}) <> ({right}))"
        return f"({left} {e.operator} {right})"
    if isinstance(e, ast.UnaryOp) and e.operator == "NOT":
        inner = compile_predicate(e.operand, scope)
        return None if inner is None else f"(NOT {inner})"
    if isinstance(e, ast.Literal) and e.kind in ("boolean", "null"):
        return sql_literal(e.value)
    if isinstance(e, ast.Comparison):
        parts = []
        for left, op, right in e.pairs():
            lsql, rsql = compile_value(left, scope), compile_value(right, scope)
            if lsql is None or rsql is None:
                return None
            if "null" not in (lsql[1], rsql[1]) and lsql[1] != rsql[1]:
                return None
            if lsql[1] in ("point", "list") or lsql[1].startswith("list:"):
                return None
            parts.append(f"({lsql[0]} {_SQL_COMPARISON[op]} {rsql[0]})")
        return "(" + " AND ".join(parts) + ")"
    if isinstance(e, ast.In):
        element = compile_value(e.element, scope)
        collection = compile_value(e.collection, scope)
        if element is None or collection is None or not collection[1].startswith("list:"):
            return None
        item_family = collection[1][5:]
        if element[1] == "null":
            return "NULL"
        if item_family != "null" and item_family != element[1]:
            return "FALSE"
        if element[1] not in ("number", "string", "bool"):
            return None
        return in_sql(element[0], collection[0])
    if isinstance(e, ast.RegexMatch):
        subject, pattern = compile_value(e.subject, scope), compile_value(e.pattern, scope)
        if subject is None or pattern is None or subject[1] != "string" or pattern[1] != "string":
            return None
        if not _re2_compatible(pattern[0]):
            return None
        return f"regexp_full_match({subject[0]}, {pattern[0]})"
    if isinstance(e, ast.StringOp):
        subject, search = compile_value(e.subject, scope), compile_value(e.search, scope)
        if subject is None or search is None or subject[1] != "string" or search[1] != "string":
            return None
        fn = {"STARTS WITH": "starts_with", "ENDS WITH": "suffix", "CONTAINS": "contains"}[e.operator]
        return f"{fn}({subject[0]}, {search[0]})"
    if isinstance(e, (ast.IsNull, ast.Exists)):
        subject = e.subject if isinstance(e, ast.IsNull) else e.argument
        value = compile_value(subject, scope)
        if value is None:
            return None
        negated = e.negated if isinstance(e, ast.IsNull) else True
        return f"({value[0]} IS {'NOT ' if negated else ''}NULL)"
    if isinstance(e, ast.LabelPredicate) and isinstance(e.subject, ast.Variable):
        node = scope.nodes.get(e.subject.name)
        if not node or node[1] is None:
            return None
        kind, alias, _ = node
        tests = []
        for label in e.labels:
            label_kind = scope.model.label_kinds.get(label)
            if label_kind != kind:
                return "FALSE"
            if label.endswith("Neuron"):
                tests.append(f"{alias}.is_neuron")
        return "(" + " AND ".join(tests) + ")" if tests else "TRUE"
    if isinstance(e, (ast.Property, ast.Variable, ast.Parameter)):
        value = compile_value(e, scope)
        if value is not None and value[1] in ("bool", "null"):
            return value[0]
    return None


def in_sql(element_sql: str, list_sql: str) -> str:
    """``x IN list``: a literal list becomes SQL ``IN (...)``, which DuckDB prunes with zone maps."""
    if list_sql.startswith("[") and list_sql.endswith("]"):
        inner = list_sql[1:-1].strip()
        return f"({element_sql} IN ({inner}))" if inner else "FALSE"
    return f"list_contains({list_sql}, {element_sql})"


def _re2_compatible(pattern_sql: str) -> bool:
    """RE2 (DuckDB) lacks look-around and back-references; leave those to Python's re."""
    return not any(token in pattern_sql for token in ("(?=", "(?!", "(?<", "\\1", "\\2"))


def conjuncts(e: ast.Expression | None) -> list[ast.Expression]:
    """The top-level AND terms of a predicate."""
    if e is None:
        return []
    if isinstance(e, ast.BinaryOp) and e.operator == "AND":
        return conjuncts(e.left) + conjuncts(e.right)
    return [e]


def variables_in(e: ast.Node) -> set[str]:
    """Free variables of an expression (those bound by comprehensions/quantifiers excluded)."""
    return ast.free_variables(e)


# ---- whole statements: the executor composes these, it writes no SQL text itself ------------------


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
