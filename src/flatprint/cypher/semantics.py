"""Cypher's value semantics, shared by the evaluator and the functions: truthiness, property
access and indexing, labels, three-valued equality and comparison (``null`` from a null or from
values of different types, ``1 = 1.0``), list ordering, ``IN``, Java-style regular expressions
(full match), how values print in string concatenation, and apoc.meta.type's type names.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

from flatprint.cypher.values import NodeRef, Path, Point, RelRef
from flatprint.errors import QueryError


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
        return ["Segment", "Neuron"] if _is_neuron(node) else ["Segment"]
    return {"synapse": ["Synapse"], "synset": ["SynapseSet"], "meta": ["Meta"]}.get(node.kind, [])


def _is_neuron(node: NodeRef) -> bool:
    """The flag a match fetched with the node, else the view's (whole property maps do not hold it:
    ``n:Neuron`` was false for every node of a path)."""
    flag = node.props.get("__is_neuron")
    if flag is None and node.view is not None:
        return node.view.is_neuron(node)
    return bool(flag)


def has_label(node, label: str) -> bool:
    if not isinstance(node, NodeRef):
        return False
    if label == "Neuron" and node.kind == "segment":
        return _is_neuron(node)
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
