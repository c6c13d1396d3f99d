"""Cypher expressions -> DuckDB SQL, for the predicates the planner pushes into a match.

Also the SQL of a node's or relationship's property over a table alias (:func:`node_property_sql`),
which the planner selects and the predicates compare.

:class:`SqlScope` knows, for one MATCH, which SQL alias stands for each pattern variable and
which values come from earlier rows (columns of the ``bound`` table). :func:`compile_predicate`
renders an expression as SQL or returns None when it cannot be rendered *with the same meaning*;
the planner then leaves that predicate to the Python evaluator. Rendering is deliberately
conservative: comparisons are pushed only between values of the same type family, because
Cypher compares ``1 = '1'`` as false while SQL would cast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flatprint.cypher import ast
from flatprint.cypher.kinds import CONNECTS, EMPTY, SEGMENT, SYNAPSE
from flatprint.store.columns import CONNECTS_TO_COLUMNS, HIDDEN_SEGMENT_COLUMNS, POINT_COLUMNS, SYNAPSE_COLUMNS
from flatprint.store.sql import quote_ident, sql_literal

if TYPE_CHECKING:  # the graph model imports the statements of this package
    from flatprint.cypher.schema import GraphModel

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
        values = e.literal_values()
        return None if values is None else python_literal(list(values))
    if isinstance(e, ast.Variable):
        return scope.bound_values.get(e.name)
    if isinstance(e, ast.Property):
        subject = e.subject
        if isinstance(subject, ast.Variable):
            if subject.name in scope.nodes:
                kind, alias, _ = scope.nodes[subject.name]
                if alias is None:
                    return None
                return node_property_sql(scope.model, kind, alias, e.name)
            if subject.name in scope.rels:
                kind, alias = scope.rels[subject.name]
                return rel_property_sql(kind, alias, e.name)
            return None
        if isinstance(subject, ast.Property) and isinstance(subject.subject, ast.Variable):
            node = scope.nodes.get(subject.subject.name)
            if node and node[1] is not None:
                sql = point_component_sql(scope.model, node[0], node[1], subject.name, e.name)
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


# ---- properties over a table alias -----------------------------------------------------------


def column(alias: str, name: str) -> str:
    """``alias.name`` for a store column whose name needs no quoting (``bodyId``, ``body_pre``, ...)."""
    return f"{alias}.{name}"


def quoted_column(alias: str, name: str) -> str:
    """``alias."name"`` for a column named by the data (a property, an NT column)."""
    return f"{alias}.{quote_ident(name)}"


def equals_item(name: str, value: str, alias: str) -> str:
    """A select item: whether the column ``name`` equals the string ``value`` (NULL where the column
    is NULL), named ``alias``."""
    return f"({quote_ident(name)} = {sql_literal(value)}) AS {quote_ident(alias)}"


def bound_column(name: str) -> str:
    """The column of the ``bound`` table (rows of earlier clauses) holding variable ``name``."""
    return f"b.{quote_ident(name)}"


def is_bound_column(sql: str) -> bool:
    """Whether ``sql`` is a column of the ``bound`` table (see :func:`bound_column`)."""
    return sql.startswith("b.")


def equals(left_sql: str, right_sql: str) -> str:
    return f"{left_sql} = {right_sql}"


def node_property_sql(model: GraphModel, kind: str, alias: str, name: str) -> tuple[str, str] | None:
    """(SQL, type family) of ``alias.name`` for a node of ``kind``; type family is 'number',
    'string', 'bool', 'point' or 'null'. None when the property cannot be rendered in SQL."""
    if kind == SEGMENT:
        if name in model.segment_types and name not in HIDDEN_SEGMENT_COLUMNS:
            return quoted_column(alias, name), segment_family(model.segment_types[name], name)
        if name in model.roi_set:
            return (
                f"(CASE WHEN EXISTS (SELECT 1 FROM segment_rois sr WHERE sr.roi = {sql_literal(name)} "
                f"AND sr.bodyId = {alias}.bodyId) THEN TRUE END)"
            ), "bool"
        return "NULL", "null"
    if kind == SYNAPSE:
        if name in SYNAPSE_COLUMNS:
            return f"{alias}.{SYNAPSE_COLUMNS[name]}", "string" if name == "type" else "number"
        if name == "location":
            return f"[{alias}.x, {alias}.y, {alias}.z]", "point"
        if name in model.nt_columns:
            return quoted_column(alias, name), "number"
        if name in model.roi_set:
            return synapse_roi_sql(model, alias, name), "bool"
        return "NULL", "null"
    if kind == EMPTY:
        return "NULL", "null"
    return None


def synapse_roi_sql(model: GraphModel, alias: str, roi: str, prefix: str = "", suffix: str = "") -> str:
    """TRUE (else NULL) when the synapse at ``alias`` counts under ``roi``."""
    sets = model.roi_labels.get(roi, {})
    tests = [
        f"{alias}.{prefix}{roi_set}_label{suffix} IN ({', '.join(map(str, labels))})"
        for roi_set, labels in sorted(sets.items())
    ]
    return f"(CASE WHEN {' OR '.join(tests)} THEN TRUE END)" if tests else "NULL"


def point_component_sql(model: GraphModel, kind: str, alias: str, name: str, component: str) -> str | None:
    axis = {"x": 0, "y": 1, "z": 2}.get(component)
    if axis is None:
        return None
    if kind == SYNAPSE and name == "location":
        return f"{alias}.{'xyz'[axis]}"
    if kind == SEGMENT and name in POINT_COLUMNS and name in model.segment_types:
        return f"{quoted_column(alias, name)}[{axis + 1}]"
    return None


def rel_property_sql(kind: str, alias: str, name: str) -> tuple[str, str] | None:
    if kind == CONNECTS:
        if name in CONNECTS_TO_COLUMNS:
            return f"{alias}.{CONNECTS_TO_COLUMNS[name]}", "number"
        if name == "roiInfo":
            return None  # built from connection_rois after the match
        return "NULL", "null"
    return "NULL", "null"


NUMERIC_TYPES = (
    "BIGINT",
    "INTEGER",
    "SMALLINT",
    "TINYINT",
    "UBIGINT",
    "UINTEGER",
    "USMALLINT",
    "UTINYINT",
    "HUGEINT",
    "DOUBLE",
    "FLOAT",
    "DECIMAL",
)


def segment_family(dtype: str, name: str) -> str:
    """The type family of a ``segments`` column of DuckDB type ``dtype``."""
    dtype = dtype.upper()
    if name in POINT_COLUMNS:
        return "point"
    if dtype.endswith("[]"):
        return "list"
    if dtype.split("(")[0] in NUMERIC_TYPES:
        return "number"
    if dtype == "BOOLEAN":
        return "bool"
    return "string"


def path_filter_sql(model: GraphModel, params: dict, variable: str, over: str, where: ast.Expression) -> str | None:
    """SQL for ``ALL(variable IN relationships(p) WHERE where)`` (``over`` 'relationships') or
    ``... IN nodes(p) ...`` over flatprint.store.graph's searches (connection alias ``c``, Segment
    alias ``n``), or None when ``where`` does not render."""
    scope = SqlScope(model, params=params)
    if over == "relationships":
        scope.rels[variable] = (CONNECTS, "c")
    else:
        scope.nodes[variable] = (SEGMENT, "n", "n.bodyId")
    return compile_predicate(where, scope)
