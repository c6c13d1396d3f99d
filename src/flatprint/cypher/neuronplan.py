"""Which MATCH + RETURN pairs the neuron table and the neuron graph in RAM can answer (a plan step).

neuprint-python's most frequent queries look up :Neuron nodes by bodyId, type or instance and the
``ConnectsTo`` relationships between neurons, returning properties: ``fetch_neurons``, the lookups
behind ``fetch_adjacencies``, ``fetch_simple_connections``. Through SQL each pays for planning a
statement and scanning row groups (at full scale tens to hundreds of ms; a neuron's roiInfo text is
~5.7 kB); the same answer from the in-RAM neuron table (flatprint.store.neurontable) and neuron graph
(flatprint.store.neurongraph) is a few array gathers. :func:`neuron_shape` recognises such a query
statically (this module); flatprint.cypher.neuronanswers answers it at run time when the tables are
built and every value involved is of the expected type, and otherwise the SQL step runs.

The shapes: one pattern, either ``(n:Neuron)`` or ``(a)-[e:ConnectsTo]->(b)`` with ends labelled
``Neuron`` or ``Segment``; WHERE (and inline property maps) a conjunction of tests on one variable
each — ``bodyId`` / ``type`` / ``instance`` equal to a constant or IN a constant list, ORs of those
on one variable, ``e.weight`` compared with a constant; RETURN of ``v.property`` and
``coalesce(v.property, constant)`` items, ORDER BY items, constant SKIP and LIMIT; or of counts
only (``count(v)``, ``count(*)``: neuprint-python's ``RETURN count(n) as c`` checks).
"""

from __future__ import annotations

from dataclasses import dataclass

from flatprint.cypher import ast
from flatprint.cypher.sqlgen import conjuncts

#: node properties with an exact-value lookup in the neuron table (bodyId by position)
NODE_LOOKUPS = ("bodyId", "type", "instance")
#: comparisons a plan step evaluates on arrays, and each one with its sides swapped (``1 < x``: ``x > 1``)
COMPARISONS = ("=", "<>", "<", "<=", ">", ">=")
FLIPPED = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
NODE_LABELS = ("Neuron", "Segment")


@dataclass(frozen=True)
class Test:
    """``variable.prop <op> value`` with a constant ``value`` (op ``IN`` for a list)."""

    prop: str
    op: str
    value: ast.Expression


@dataclass(frozen=True)
class NodeSpec:
    """One end: its variable (None when anonymous), whether only ``:Segment`` labels it (then only
    listed neurons can be answered), and its conditions: each term an OR of tests."""

    variable: str | None
    segment_only: bool
    terms: tuple[tuple[Test, ...], ...] = ()


@dataclass(frozen=True)
class Item:
    """A RETURN item: ``variable.prop``, ``coalesce(variable.prop, default)``, or the number of
    matches (``count(variable)``, ``count(*)``: ``prop`` None; then every item is a count)."""

    name: str
    variable: str | None
    prop: str | None
    default: ast.Expression | None = None


@dataclass(frozen=True)
class NeuronShape:
    """A MATCH + RETURN the neuron table (``pre`` alone) or graph (``pre -[rel]-> post``) can answer."""

    pre: NodeSpec
    items: tuple[Item, ...]
    order: tuple[tuple[int, bool], ...] = ()  # (item index, descending)
    skip: ast.Expression | None = None
    limit: ast.Expression | None = None
    post: NodeSpec | None = None
    rel: str | None = None
    rel_tests: tuple[Test, ...] = ()


def neuron_shape(match: ast.Match, projection) -> NeuronShape | None:
    """The shape of ``match`` + ``projection`` (a RETURN), or None when it is not one of the module's."""
    if match.optional or len(match.patterns) != 1 or not isinstance(projection, ast.Return):
        return None
    if projection.distinct or projection.star:
        return None
    pattern = match.patterns[0]
    if pattern.variable is not None or pattern.shortest:
        return None
    elements = pattern.elements
    if len(elements) == 1:
        nodes, rel = [elements[0]], None
    elif len(elements) == 3:
        rel = elements[1]
        if rel.types != ("ConnectsTo",) or rel.variable_length or rel.properties is not None:
            return None
        if rel.direction == ast.Direction.OUTGOING:
            nodes = [elements[0], elements[2]]
        elif rel.direction == ast.Direction.INCOMING:
            nodes = [elements[2], elements[0]]
        else:
            return None
    else:
        return None
    names = [n.variable for n in nodes] + ([rel.variable] if rel is not None else [])
    named = [n for n in names if n is not None]
    if len(set(named)) != len(named):
        return None
    node_tests: dict[str | None, list[tuple[Test, ...]]] = {n.variable: [] for n in nodes}
    for node in nodes:
        if not node.labels or any(label not in NODE_LABELS for label in node.labels):
            return None
        for key, value in _map_entries(node.properties):
            if key not in NODE_LOOKUPS or not _constant(value):
                return None
            node_tests[node.variable].append((Test(key, "=", value),))
    rel_tests: list[Test] = []
    for term in conjuncts(match.where):
        found = _term(term)
        if found is None:
            return None
        variable, tests = found
        if rel is not None and variable == rel.variable and variable is not None:
            if len(tests) != 1 or tests[0].prop != "weight" or tests[0].op not in COMPARISONS:
                return None
            rel_tests.append(tests[0])
        elif variable in node_tests and variable is not None:
            if any(t.prop not in NODE_LOOKUPS or t.op not in ("=", "IN") for t in tests):
                return None
            node_tests[variable].append(tests)
        else:
            return None
    items = []
    for item in projection.items:
        found = _item(item.expression)
        if found is None or (found[0] is not None and found[0] not in named):
            return None
        items.append(Item(item.column_name, *found))
    counts = sum(item.prop is None for item in items)
    if counts and (counts < len(items) or projection.order_by or projection.skip or projection.limit):
        return None  # counts beside other items group by them: SQL
    order = []
    for sort in projection.order_by:
        index = _sort_index(sort.expression, projection.items)
        if index is None:
            return None
        order.append((index, sort.descending))
    for count in (projection.skip, projection.limit):
        if count is not None and not _constant(count):
            return None
    specs = [NodeSpec(n.variable, "Neuron" not in n.labels, tuple(node_tests[n.variable])) for n in nodes]
    # what RAM would always leave to SQL is no shape: a Segment not listed by bodyId (it may be no
    # neuron), every neuron's properties (the column-wise SQL answer), every relationship
    if any(spec.segment_only and not any(len(t) == 1 and t[0].prop == "bodyId" for t in spec.terms) for spec in specs):
        return None
    if not any(spec.terms for spec in specs) and (rel is not None or not counts):
        return None
    return NeuronShape(
        pre=specs[0],
        items=tuple(items),
        order=tuple(order),
        skip=projection.skip,
        limit=projection.limit,
        post=specs[1] if rel is not None else None,
        rel=rel.variable if rel is not None else None,
        rel_tests=tuple(rel_tests),
    )


def _map_entries(properties) -> list[tuple[str, ast.Expression]]:
    if properties is None:
        return []
    if isinstance(properties, ast.MapLiteral):
        return list(properties.entries)
    return [("", properties)]  # a parameter map: not a shape of this module


_CONSTANT_ITEMS = frozenset({ast.Literal, ast.Parameter})


def _constant(e: ast.Expression) -> bool:
    """A literal, a parameter or a list of those: a value known before the query runs."""
    if isinstance(e, (ast.Literal, ast.Parameter)):
        return True
    # the items' types in one pass (a looked-up id list has thousands of items)
    return isinstance(e, ast.ListLiteral) and (
        e.literal_values() is not None or set(map(type, e.items)) <= _CONSTANT_ITEMS
    )


def property_of(e: ast.Expression) -> tuple[str, str] | None:
    """(variable, property) of ``v.prop``, else None."""
    if isinstance(e, ast.Property) and isinstance(e.subject, ast.Variable):
        return e.subject.name, e.name
    return None


def property_comparison(e: ast.Expression, constant=_constant) -> tuple[str, Test] | None:
    """(variable, test) of one comparison ``v.prop <op> value`` with ``constant(value)`` on either
    side (the operator flipped when the property is on the right), else None."""
    if not (isinstance(e, ast.Comparison) and len(e.operators) == 1):
        return None
    (a, b), op = e.operands, e.operators[0]
    if property_of(a) is not None and constant(b):
        (variable, prop), value = property_of(a), b
    elif property_of(b) is not None and constant(a):
        (variable, prop), value, op = property_of(b), a, FLIPPED[op]
    else:
        return None
    return variable, Test(prop, op, value)


def _term(e: ast.Expression) -> tuple[str, tuple[Test, ...]] | None:
    """(variable, its tests ORed) of one WHERE term, or None."""
    if isinstance(e, ast.BinaryOp) and e.operator == "OR":
        left, right = _term(e.left), _term(e.right)
        if left is None or right is None or left[0] != right[0]:
            return None
        return left[0], left[1] + right[1]
    if isinstance(e, ast.Comparison):
        found = property_comparison(e)
        return None if found is None else (found[0], (found[1],))
    if isinstance(e, ast.In) and property_of(e.element) is not None and _constant(e.collection):
        variable, prop = property_of(e.element)
        return variable, (Test(prop, "IN", e.collection),)
    return None


def _item(e: ast.Expression) -> tuple[str | None, str | None, ast.Expression | None] | None:
    if isinstance(e, ast.CountStar):
        return None, None, None
    if (
        isinstance(e, ast.FunctionCall)
        and e.name.lower() == "count"
        and not e.distinct
        and len(e.arguments) == 1
        and isinstance(e.arguments[0], ast.Variable)
    ):
        return e.arguments[0].name, None, None  # a pattern variable is never null: count(v) = count(*)
    found = property_of(e)
    if found is not None:
        return found[0], found[1], None
    if (
        isinstance(e, ast.FunctionCall)
        and e.name.lower() == "coalesce"
        and not e.distinct
        and len(e.arguments) == 2
        and property_of(e.arguments[0]) is not None
        and isinstance(e.arguments[1], (ast.Literal, ast.Parameter))
    ):
        variable, prop = property_of(e.arguments[0])
        return variable, prop, e.arguments[1]
    return None


def _sort_index(e: ast.Expression, items) -> int | None:
    for index, item in enumerate(items):
        if isinstance(e, ast.Variable) and e.name == item.column_name:
            return index
    for index, item in enumerate(items):
        if e == item.expression:
            return index
    return None
