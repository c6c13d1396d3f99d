"""Evaluating Cypher expressions in Python, row by row, with Cypher's null semantics.

The SQL generator pushes whatever it can (pattern predicates) into DuckDB; everything else —
projections, residual predicates, list comprehensions, aggregation inputs — is evaluated here on
the rows the SQL returned. Unsupported functions and expressions are refused *before* execution by
:mod:`flatprint.cypher.analyzer` (against :mod:`flatprint.cypher.registry`, whose every entry is
implemented here or in the executor), so a query never fails half-way with a surprise.
"""

from __future__ import annotations

import json
import math
import random
import re
from functools import lru_cache

from flatprint.cypher import ast
from flatprint.cypher.errors import unsupported
from flatprint.cypher.registry import AGGREGATES, contains_aggregate, is_aggregate  # noqa: F401 - re-exported
from flatprint.cypher.values import NodeRef, Path, Point, RelRef, hashable, to_output
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
            return [self.eval(i, row) for i in e.items]
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


def call_function(e, name: str, args: list):  # noqa: C901 - a table of small functions
    x = args[0] if args else None
    if name == "size":
        return None if x is None else len(x)
    if name == "rand":
        return random.random()
    if name == "keys":
        if x is None:
            return None
        if isinstance(x, (NodeRef, RelRef)):
            return list(x.all_properties())
        if isinstance(x, dict):
            return list(x)
        raise QueryError(f"keys() expects a node, relationship or map (line {e.line}, column {e.column})")
    if name == "properties":
        return None if x is None else properties_of(x)
    if name == "id":
        if isinstance(x, NodeRef):
            return x.id if isinstance(x.id, int) else 0
        if isinstance(x, RelRef):
            return hash((x.kind, x.start, x.end)) & ((1 << 53) - 1)
        return None
    if name == "nodes":
        return None if x is None else list(x.nodes)
    if name in ("relationships", "rels"):
        return None if x is None else list(x.rels)
    if name == "length":
        if x is None:
            return None
        return len(x.rels) if isinstance(x, Path) else len(x)
    if name == "startnode":
        return None if x is None else NodeRef("segment", x.start, view=getattr(x, "view", None))
    if name == "endnode":
        return None if x is None else NodeRef("segment", x.end, view=getattr(x, "view", None))
    if name == "type":
        if x is not None and not isinstance(x, RelRef):
            raise invalid_argument(e, x)
        return None if x is None else x.kind
    if name == "labels":
        if x is None:
            return None
        return labels_of(x)
    if name == "tostring":
        if isinstance(x, (list, dict, NodeRef, RelRef, Path)):
            raise invalid_argument(e, x)
        return None if x is None else format_value(x)
    if name == "tointeger":
        if x is None:
            return None
        if not isinstance(x, (str, int, float)):
            raise invalid_argument(e, x)
        try:
            return int(float(x)) if isinstance(x, str) else int(x)
        except (TypeError, ValueError):
            return None
    if name == "tofloat":
        if x is not None and (isinstance(x, bool) or not isinstance(x, (str, int, float))):
            raise invalid_argument(e, x)
        try:
            return None if x is None else float(x)
        except (TypeError, ValueError):
            return None
    if name == "toboolean":
        if isinstance(x, str):
            return {"true": True, "false": False}.get(x.lower())
        if x is not None and not isinstance(x, int):  # booleans and integers convert
            raise invalid_argument(e, x)
        return None if x is None else bool(x)
    if name in ("tolower", "lower"):
        return None if x is None else str(x).lower()
    if name in ("toupper", "upper"):
        return None if x is None else str(x).upper()
    if name in ("trim", "ltrim", "rtrim"):
        return None if x is None else getattr(str(x), {"trim": "strip", "ltrim": "lstrip", "rtrim": "rstrip"}[name])()
    if name == "last":
        return x[-1] if x else None
    if name == "head":
        return x[0] if x else None
    if name == "tail":
        return None if x is None else list(x[1:])
    if name == "reverse":
        return None if x is None else (x[::-1] if isinstance(x, str) else list(reversed(x)))
    if name in ("abs", "floor", "ceil", "sqrt", "log", "exp", "sign", "round"):
        if x is None:
            return None
        fn = {
            "abs": abs,
            "floor": lambda v: float(math.floor(v)),
            "ceil": lambda v: float(math.ceil(v)),
            "sqrt": math.sqrt,
            "log": math.log,
            "exp": math.exp,
            "sign": lambda v: (v > 0) - (v < 0),
            "round": lambda v: float(math.floor(v + 0.5)),
        }[name]
        return fn(x)
    if name == "range":
        if any(a is None for a in args):
            return None
        wrong = next((a for a in args if not isinstance(a, int) or isinstance(a, bool)), None)
        if wrong is not None:
            raise invalid_argument(e, wrong, "integers")
        step = args[2] if len(args) > 2 else 1
        if step == 0:
            raise QueryError("range() step must not be zero")
        values = range(args[0], args[1] + (1 if step > 0 else -1), step)
        if len(values) > 10_000_000:
            raise QueryError(f"range() of {len(values)} values is too large (at most 10,000,000)")
        return list(values)
    if name == "split":
        return None if x is None or args[1] is None else x.split(args[1])
    if name == "replace":
        return None if None in args else args[0].replace(args[1], args[2])
    if name == "substring":
        if x is None:
            return None
        return x[args[1] :] if len(args) == 2 else x[args[1] : args[1] + args[2]]
    if name == "left":
        return None if x is None else x[: args[1]]
    if name == "right":
        return None if x is None else (x[-args[1] :] if args[1] else "")
    if name == "apoc.convert.fromjsonmap":
        if x is None:
            return None
        value = json.loads(x) if isinstance(x, str) else x
        if not isinstance(value, dict):
            raise QueryError("apoc.convert.fromJsonMap: not a JSON object")
        return value
    if name == "apoc.convert.fromjsonlist":
        if x is None:
            return None
        value = json.loads(x) if isinstance(x, str) else x
        if not isinstance(value, list):
            raise QueryError("apoc.convert.fromJsonList: not a JSON array")
        return value
    if name == "apoc.convert.tojson":
        return json.dumps(to_output(x))
    if name in ("apoc.map.removekeys", "apoc.map.removekey"):
        if x is None:
            return None
        drop = set(args[1] if isinstance(args[1], list) else [args[1]])
        return {k: v for k, v in properties_of(x).items() if k not in drop}
    if name == "apoc.coll.containsduplicates":
        if x is None:
            return None
        seen = set()
        for item in x:
            key = hashable(item)
            if key in seen:
                return True
            seen.add(key)
        return False
    if name == "apoc.coll.toset":
        if x is None:
            return None
        out, seen = [], set()
        for item in x:
            if hashable(item) not in seen:
                seen.add(hashable(item))
                out.append(item)
        return out
    if name == "apoc.coll.flatten":
        return None if x is None else [v for item in x for v in (item if isinstance(item, list) else [item])]
    if name in ("apoc.coll.sum", "apoc.coll.max", "apoc.coll.min"):
        values = [v for v in (x or []) if v is not None]
        if not values:
            return None if name != "apoc.coll.sum" else 0
        return {"apoc.coll.sum": sum, "apoc.coll.max": max, "apoc.coll.min": min}[name](values)
    if name == "apoc.meta.type":
        return meta_type(x)
    raise unsupported(e, f"function {e.name}()")


def arithmetic_error(e, left, right) -> QueryError:
    return QueryError(
        f"cannot compute {meta_type(left).lower()} {e.operator} {meta_type(right).lower()} "
        f"(line {e.line}, column {e.column})"
    )


def invalid_argument(e, value, expected: str = "") -> QueryError:
    """A function called with a value of a type it does not take (Neo4j raises a TypeError)."""
    wants = f" (it takes {expected})" if expected else ""
    kind = meta_type(value).lower()
    article = "an" if kind[0] in "aeiou" else "a"
    return QueryError(f"{e.name}() of {article} {kind}{wants} (line {e.line}, column {e.column})")


# ---- helpers shared with the engine --------------------------------------------------------------


def truthy(value) -> bool:
    return value is True or (value is not None and value is not False and value != 0 and value != "")


def get_property(subject, name: str):
    if subject is None:
        return None
    if isinstance(subject, (NodeRef, RelRef)):
        return subject.get(name)
    if isinstance(subject, dict):
        return subject.get(name)
    if isinstance(subject, Point):
        return subject.component(name)
    raise QueryError(f"cannot read property `{name}` of {meta_type(subject).lower()}")


def index(subject, key):
    if subject is None or key is None:
        return None
    if isinstance(subject, (dict, NodeRef, RelRef)):
        if not isinstance(key, str):
            raise QueryError("a map is indexed by a string")
        return get_property(subject, key)
    if isinstance(subject, (list, str)):
        if not isinstance(key, int):
            raise QueryError("a list is indexed by an integer")
        return subject[key] if -len(subject) <= key < len(subject) else None
    raise QueryError(f"cannot index {meta_type(subject).lower()}")


def properties_of(value) -> dict:
    if value is None:
        return {}
    if isinstance(value, (NodeRef, RelRef)):
        return value.all_properties()
    if isinstance(value, dict):
        return dict(value)
    raise QueryError(f"expected a node, relationship or map, got {meta_type(value).lower()}")


def labels_of(node) -> list[str]:
    if not isinstance(node, NodeRef):
        return []
    if node.kind == "segment":
        return ["Segment", "Neuron"] if node.get("__is_neuron") else ["Segment"]
    return {"synapse": ["Synapse"], "synset": ["SynapseSet"], "meta": ["Meta"]}.get(node.kind, [])


def has_label(node, label: str) -> bool:
    if not isinstance(node, NodeRef):
        return False
    if label == "Neuron" and node.kind == "segment":
        return bool(node.get("__is_neuron"))
    return label in labels_of(node)


def number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compare(op: str, left, right):
    """Cypher comparison: null if either side is null or the types are not comparable."""
    if left is None or right is None:
        return None
    if op in ("=", "<>"):
        equal = equals(left, right)
        if equal is None:
            return None
        return equal if op == "=" else not equal
    if number(left) and number(right) and (math.isnan(left) or math.isnan(right)):
        return False  # NaN is unordered against every number, but comparable
    sign = order(left, right)
    if sign is None:
        return None
    if op == "<":
        return sign < 0
    if op == ">":
        return sign > 0
    if op == "<=":
        return sign <= 0
    return sign >= 0


def order(left, right) -> int | None:
    """-1, 0 or 1 as ``left`` sorts before, with or after ``right`` in a comparison; None when the
    comparison is null (a null, NaN, values of different types). Lists compare element by element
    (a null pair makes the answer null only when it is reached); a prefix sorts first."""
    if left is None or right is None:
        return None
    if (
        number(left)
        and number(right)
        or (isinstance(left, str) and isinstance(right, str))
        or (isinstance(left, bool) and isinstance(right, bool))
    ):
        if left < right:
            return -1
        if left > right:
            return 1
        return 0 if left == right else None  # NaN
    if isinstance(left, list) and isinstance(right, list):
        for a, b in zip(left, right):
            sign = order(a, b)
            if sign != 0:
                return sign
        return (len(left) > len(right)) - (len(left) < len(right))
    return None


def equals(left, right):
    if left is None or right is None:
        return None
    if number(left) and number(right):
        return left == right
    if isinstance(left, list) and isinstance(right, list):
        if len(left) != len(right):
            return False
        result = True
        for a, b in zip(left, right):
            value = equals(a, b)
            if value is False:
                return False
            if value is None:
                result = None
        return result
    if isinstance(left, dict) and isinstance(right, dict):
        if left.keys() != right.keys():
            return False
        return equals(list(left.values()), [right[k] for k in left])
    if type(left) is not type(right):
        return False
    return left == right


def in_list(element, collection):
    if collection is None:
        return None
    if not isinstance(collection, list):
        raise QueryError("IN expects a list")
    if element is None:
        return None if collection else False
    unknown = False
    for item in collection:
        value = equals(element, item)
        if value:
            return True
        if value is None:
            unknown = True
    return None if unknown else False


@lru_cache(maxsize=256)
def compiled_regex(pattern: str):
    """Java regex (full match, as Neo4j's =~) in Python's dialect; (?i) etc. carry over."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise QueryError(f"invalid regular expression {pattern!r}: {exc}") from None


def format_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return str(value)


def meta_type(value) -> str:
    """apoc.meta.type's names."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int):
        return "INTEGER"
    if isinstance(value, float):
        return "FLOAT"
    if isinstance(value, str):
        return "STRING"
    if isinstance(value, Point):
        return "POINT"
    if isinstance(value, list):
        return "LIST"
    if isinstance(value, dict):
        return "MAP"
    if isinstance(value, NodeRef):
        return "NODE"
    if isinstance(value, RelRef):
        return "RELATIONSHIP"
    if isinstance(value, Path):
        return "PATH"
    return "UNKNOWN"
