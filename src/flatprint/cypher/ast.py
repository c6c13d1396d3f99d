"""Typed syntax tree of a (read-only) Cypher query, as produced by :func:`flatprint.cypher.parser.parse`.

Overview (every class is a frozen dataclass; sequences are tuples)::

    Query(parts: (SingleQuery, ...), union_all)            q1 UNION [ALL] q2 ...
    SingleQuery(clauses: (Clause, ...))
    Clause = Match | With | Unwind | Return | Call
      Match(patterns, where, optional)                     [OPTIONAL] MATCH p1, p2 WHERE e
      With(items, distinct, star, order_by, skip, limit, where)
      Unwind(expression, alias)                            UNWIND e AS x
      Return(items, distinct, star, order_by, skip, limit)
      Call(procedure, arguments, yield_items, where, inner_query)
      ProjectionItem(expression, alias, source_text), SortItem(expression, descending),
      YieldItem(name, alias)
    Patterns
      PathPattern(variable, elements, shortest)            p = shortestPath((a)-[*]->(b))
      NodePattern(variable, labels, properties)            (n:Neuron {bodyId: 1})
      RelPattern(variable, types, direction, variable_length, min_hops, max_hops, properties)
      Direction.OUTGOING ("out", -->) | INCOMING ("in", <--) | UNDIRECTED ("both", --)
    Expressions (Expression subclasses)
      Literal, Variable, Parameter, Property, Index, Slice, LabelPredicate, FunctionCall,
      CountStar, Exists, BinaryOp, UnaryOp, Comparison, In, RegexMatch, StringOp, IsNull,
      ListLiteral, MapLiteral, MapProjection, ListComprehension, PatternComprehension,
      Quantifier, Reduce, Case, PatternPredicate

Conventions:

- Every node has ``line`` and ``column`` (1-based, keyword-only, default 0 for nodes built by
  hand). They are excluded from ``==`` and ``repr``, so trees compare by meaning. The position is
  that of the node's first token, except for operators (``BinaryOp``, ``Comparison``, ``In``, ...),
  which carry the position of their operator, and ``Property``, which carries that of the name.
- Names (variables, labels, property keys, aliases) are stored unescaped: ```AB(R)``` is ``"AB(R)"``.
- Keyword-like words keep the spelling of the query where it matters for output (function names,
  aliases); compare function names with :attr:`FunctionCall.lower_name`.
- ``to_cypher()`` prints any node back as Cypher; ``parse(node.to_cypher())`` gives back an equal
  tree (operators are parenthesised only where the precedence requires it).
- ``walk()`` iterates over a node and all its descendants (depth first, in source order).
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from flatprint.cypher.tokens import KEYWORDS, SOFT_KEYWORDS

__all__ = [
    "Precedence",
    "Node",
    "init_fields",
    "Expression",
    "Clause",
    "Literal",
    "Variable",
    "Parameter",
    "Property",
    "Index",
    "Slice",
    "LabelPredicate",
    "FunctionCall",
    "CountStar",
    "Exists",
    "BinaryOp",
    "UnaryOp",
    "Comparison",
    "In",
    "RegexMatch",
    "StringOp",
    "IsNull",
    "ListLiteral",
    "MapLiteral",
    "MapProjectionItem",
    "MapProjection",
    "ListComprehension",
    "PatternComprehension",
    "Quantifier",
    "Reduce",
    "CaseAlternative",
    "Case",
    "PatternPredicate",
    "NodePattern",
    "Direction",
    "RelPattern",
    "PathPattern",
    "ProjectionItem",
    "SortItem",
    "YieldItem",
    "Match",
    "With",
    "Unwind",
    "Return",
    "Call",
    "SingleQuery",
    "Query",
    "quote_name",
    "quote_key",
    "format_string",
]


# --------------------------------------------------------------------------------------------
# Precedence and printing helpers
# --------------------------------------------------------------------------------------------


class Precedence(enum.IntEnum):
    """Binding strength of expression forms, loosest first (Neo4j / openCypher order).

    ``a OR b XOR c AND NOT d = e IN f + g * h ^ -i.j`` groups as
    ``a OR (b XOR (c AND (NOT (d = (e IN (f + (g * (h ^ (-(i.j))))))))))``.
    """

    OR = 1
    XOR = 2
    AND = 3
    NOT = 4
    COMPARISON = 5  # = <> < > <= >= (chains: a < b < c)
    PREDICATE = 6  # IN, STARTS WITH, ENDS WITH, CONTAINS, =~, IS [NOT] NULL
    ADDITIVE = 7  # + -
    MULTIPLICATIVE = 8  # * / %
    POWER = 9  # ^ (left-associative, as in Neo4j)
    UNARY = 10  # unary + and -, negative number literals
    POSTFIX = 11  # .property, [index], [slice], :Label
    ATOM = 12


_SIMPLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def quote_name(name: str) -> str:
    """Return ``name`` as a Cypher symbolic name, backticked when it would not read back as-is.

    Plain ASCII identifiers print bare; names with other characters, reserved words
    (``MATCH``, ``end``, ...) and words such as ``count``/``exists`` are backticked (a backtick
    inside is doubled): ``quote_name("AB(R)") == "`AB(R)`"``.
    """
    if _SIMPLE_NAME.match(name) and name.upper() not in KEYWORDS and name.lower() not in SOFT_KEYWORDS:
        return name
    return "`" + name.replace("`", "``") + "`"


def quote_key(name: str) -> str:
    """Return ``name`` for a position where reserved words are allowed (property keys, labels,
    relationship types, map keys, aliases): backticked only if it is not a plain identifier
    (``n.count``, ``n.`AB(R)```)."""
    return name if _SIMPLE_NAME.match(name) else "`" + name.replace("`", "``") + "`"


_STRING_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def format_string(value: str) -> str:
    """Return ``value`` as a single-quoted Cypher string literal (``a'b`` -> ``'a\\'b'``)."""
    parts = []
    for char in value:
        if char in _STRING_ESCAPES:
            parts.append(_STRING_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            parts.append(f"\\u{ord(char):04x}")
        else:
            parts.append(char)
    return "'" + "".join(parts) + "'"


def _function_name_text(name: str) -> str:
    """A (dotted) function or procedure name. The first part is backticked if it is a reserved
    word or a special form's name (``any``, ``exists``, ...; not ``count``), so that it reads back
    as an ordinary function call."""
    first, *rest = name.split(".")
    lowered = first.lower()
    special = lowered in SOFT_KEYWORDS and lowered != "count"
    first_text = quote_name(first) if first.upper() in KEYWORDS or special else quote_key(first)
    return ".".join([first_text, *(quote_key(part) for part in rest)])


def _parameter_text(name: str) -> str:
    if _SIMPLE_NAME.match(name) or name.isdigit() and name.isascii():
        return "$" + name
    return "$`" + name.replace("`", "``") + "`"


def _operand(expression: Expression, minimum: Precedence) -> str:
    """Print ``expression``, parenthesised if it binds more loosely than ``minimum``."""
    text = expression.to_cypher()
    return f"({text})" if expression.precedence() < minimum else text


def _labels_text(labels: tuple[str, ...]) -> str:
    return "".join(":" + quote_key(label) for label in labels)


# --------------------------------------------------------------------------------------------
# Base classes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """Base of all syntax tree nodes; carries the source position (not part of equality)."""

    line: int = field(default=0, compare=False, repr=False, kw_only=True)
    column: int = field(default=0, compare=False, repr=False, kw_only=True)

    def to_cypher(self) -> str:
        """Return Cypher text that parses back to an equal node."""
        raise NotImplementedError

    def children(self) -> Iterator[Node]:
        """Iterate over the direct child nodes, in source order."""
        return iter(self._child_list())

    def _child_list(self) -> list[Node]:
        names = _CHILD_FIELDS.get(type(self))
        if names is None:  # dataclasses.fields() per call would cost more than the walk itself
            names = _CHILD_FIELDS[type(self)] = tuple(
                f.name for f in dataclasses.fields(self) if f.name not in ("line", "column")
            )
        out: list[Node] = []
        for name in names:
            value = getattr(self, name)
            if isinstance(value, Node):
                out.append(value)
            elif isinstance(value, tuple):
                _collect_nodes(value, out)
        return out

    def walk(self) -> Iterator[Node]:
        """Iterate over this node and all its descendants, depth first, in source order."""
        stack: list[Node] = [self]
        while stack:
            node = stack.pop()
            yield node
            children = node._child_list()
            children.reverse()
            stack.extend(children)

    def __str__(self) -> str:
        return self.to_cypher()


_CHILD_FIELDS: dict[type, tuple[str, ...]] = {}  # node class -> names of the fields that may hold child nodes
_INIT_FIELDS: dict[type, tuple[str, ...]] = {}  # node class -> its fields set by __init__ but the position


def init_fields(cls: type) -> tuple[str, ...]:
    """The names of a node class's fields that ``dataclasses.replace`` takes, but line and column
    (the rewrites and the plan cache copy nodes per query: dataclasses.fields per node costs more)."""
    names = _INIT_FIELDS.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("line", "column"))
        _INIT_FIELDS[cls] = names
    return names


def _collect_nodes(values: tuple, out: list) -> None:
    for item in values:
        if isinstance(item, Node):
            out.append(item)
        elif isinstance(item, tuple):
            _collect_nodes(item, out)


@dataclass(frozen=True)
class Expression(Node):
    """Base of all expressions."""

    def precedence(self) -> Precedence:
        """How tightly this expression binds (decides parentheses when printing)."""
        return Precedence.ATOM


@dataclass(frozen=True)
class Clause(Node):
    """Base of the clauses of a :class:`SingleQuery`."""


# --------------------------------------------------------------------------------------------
# Expressions: atoms
# --------------------------------------------------------------------------------------------

LiteralValue = int | float | str | bool | None


@dataclass(frozen=True)
class Literal(Expression):
    """A constant: ``42``, ``-7``, ``0x1F``, ``1.5``, ``'text'``, ``"text"``, ``true``, ``null``.

    ``kind`` is derived from the value (``"integer"``, ``"float"``, ``"string"``, ``"boolean"``,
    ``"null"``) and takes part in equality, so ``Literal(1) != Literal(1.0) != Literal(True)``.
    A minus sign directly before a number is folded into it: ``-5`` is ``Literal(-5)``.
    """

    value: LiteralValue
    kind: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        value = self.value
        if value is None:
            kind = "null"
        elif isinstance(value, bool):
            kind = "boolean"
        elif isinstance(value, int):
            kind = "integer"
        elif isinstance(value, float):
            kind = "float"
        elif isinstance(value, str):
            kind = "string"
        else:
            raise TypeError(f"not a Cypher literal value: {value!r}")
        object.__setattr__(self, "kind", kind)

    def precedence(self) -> Precedence:
        if self.kind in ("integer", "float") and (self.value < 0 or str(self.value).startswith("-")):
            return Precedence.UNARY
        return Precedence.ATOM

    def to_cypher(self) -> str:
        if self.kind == "null":
            return "null"
        if self.kind == "boolean":
            return "true" if self.value else "false"
        if self.kind == "string":
            return format_string(self.value)
        return repr(self.value)


# Literal is a frozen dataclass: its __init__ sets each field through object.__setattr__ and works
# out ``kind``, ~2.5x the time of filling the instance's dict directly. Done directly only while
# Literal keeps its fields in a plain instance dict (else through the constructor); tests compare both.
_LITERAL_KINDS = {int: "integer", str: "string", float: "float", bool: "boolean", type(None): "null"}
_DIRECT_LITERALS = set(getattr(Literal(0), "__dict__", {})) == {"value", "kind", "line", "column"}


def _literals(values: tuple, line: int, column: int) -> tuple[Literal, ...]:
    """``Literal(value, line=line, column=column)`` for every value of ``values``."""
    if not _DIRECT_LITERALS or any(type(v) not in _LITERAL_KINDS for v in values):
        return tuple(Literal(value, line=line, column=column) for value in values)
    make, cls, kinds, items = object.__new__, Literal, _LITERAL_KINDS, []
    for value in values:
        item = make(cls)
        item.__dict__.update(value=value, kind=kinds[type(value)], line=line, column=column)
        items.append(item)
    return tuple(items)


@dataclass(frozen=True)
class Variable(Expression):
    """A reference to a variable: ``n``, ```Neuron```."""

    name: str

    def to_cypher(self) -> str:
        return quote_name(self.name)


@dataclass(frozen=True)
class Parameter(Expression):
    """A query parameter: ``$bodyIds``, ``$0``."""

    name: str

    def to_cypher(self) -> str:
        return _parameter_text(self.name)


@dataclass(frozen=True)
class FunctionCall(Expression):
    """A function call: ``coalesce(e.weightHP, 0)``, ``KEYS(n)``, ``count(DISTINCT x)``,
    ``apoc.convert.fromJsonMap(n.roiInfo)`` (``name`` keeps the dots).

    ``name`` is spelled as in the query; use :attr:`lower_name` to recognise built-in functions,
    whose names are case-insensitive. ``count(*)`` is :class:`CountStar` and ``exists(...)`` is
    :class:`Exists`.
    """

    name: str
    arguments: tuple[Expression, ...] = ()
    distinct: bool = False

    @property
    def lower_name(self) -> str:
        """The function name in lower case (``"apoc.convert.fromjsonmap"``)."""
        return self.name.lower()

    def to_cypher(self) -> str:
        name = _function_name_text(self.name)
        distinct = "DISTINCT " if self.distinct else ""
        return f"{name}({distinct}{', '.join(a.to_cypher() for a in self.arguments)})"


@dataclass(frozen=True)
class CountStar(Expression):
    """``count(*)``: the number of rows."""

    def to_cypher(self) -> str:
        return "count(*)"


@dataclass(frozen=True)
class Exists(Expression):
    """``exists(n.prop)`` (the property is not null) or ``exists((a)-[:T]->(b))`` (the pattern
    has a match; then ``argument`` is a :class:`PatternPredicate`)."""

    argument: Expression

    def to_cypher(self) -> str:
        return f"exists({self.argument.to_cypher()})"


@dataclass(frozen=True)
class ListLiteral(Expression):
    """A list: ``[10001, 10002]``, ``['EB', 'FB']``, ``[]``.

    :meth:`of_values` makes a list of literals whose Literal nodes are made only when ``items`` is
    first read: the plan cache binds neuprint-python's id lists (1,400 ids and more) so, and the
    stages that need only the values read :meth:`literal_values` (~0.5 us a Literal saved)."""

    # a factory, not a default: no class attribute ``items``, so a list of :meth:`of_values` reaches
    # __getattr__ until its items are made
    items: tuple[Expression, ...] = field(default_factory=tuple)

    @classmethod
    def of_values(cls, values: tuple, *, line: int = 0, column: int = 0) -> ListLiteral:
        """``ListLiteral(tuple(Literal(v, line=line, column=column) for v in values))``, the items
        made when first read. ``values``: plain Literal values (int, float, str, bool, None)."""
        node = object.__new__(cls)
        node.__dict__.update(line=line, column=column, _values=tuple(values))
        return node

    def __getattr__(self, name: str):
        # only reached for an attribute the instance lacks: ``items`` of an of_values list not read yet
        values = self.__dict__.get("_values") if name == "items" else None
        if values is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        items = _literals(values, self.line, self.column)
        self.__dict__["items"] = items
        return items

    def literal_values(self) -> tuple | None:
        """The items' values when every item is a :class:`Literal` (else None), without making the
        Literal nodes of an :meth:`of_values` list."""
        values = self.__dict__.get("_values")
        if values is None:
            literal, items = Literal, self.items
            if not all(type(item) is literal for item in items):
                return None
            values = self.__dict__["_values"] = tuple(item.value for item in items)  # kept: asked again
        return values

    def to_cypher(self) -> str:
        texts = [item.to_cypher() for item in self.items]
        first = self.items[0] if self.items else None
        if isinstance(first, In) and isinstance(first.element, Variable):
            texts[0] = f"({texts[0]})"  # [x IN list] would read as a list comprehension
        return "[" + ", ".join(texts) + "]"


@dataclass(frozen=True)
class MapLiteral(Expression):
    """A map: ``{bodyId: 10001, type: 'pre'}``, ``{}``; ``entries`` are (key, value) pairs in
    source order."""

    entries: tuple[tuple[str, Expression], ...] = ()

    def as_dict(self) -> dict[str, Expression]:
        """The entries as a dict (a later duplicate key wins, as in Neo4j)."""
        return dict(self.entries)

    def to_cypher(self) -> str:
        return "{" + ", ".join(f"{quote_key(k)}: {v.to_cypher()}" for k, v in self.entries) + "}"


@dataclass(frozen=True)
class MapProjectionItem(Node):
    """One entry of a :class:`MapProjection`.

    ``kind`` is ``"property"`` (``.name``), ``"all_properties"`` (``.*``), ``"variable"``
    (``name``, a variable copied under its own name) or ``"literal"`` (``name: value``).
    ``value`` is set only for ``"literal"``; ``name`` is empty only for ``"all_properties"``.
    """

    kind: str
    name: str = ""
    value: Expression | None = None

    def to_cypher(self) -> str:
        if self.kind == "property":
            return "." + quote_key(self.name)
        if self.kind == "all_properties":
            return ".*"
        if self.kind == "variable":
            return quote_name(self.name)
        return f"{quote_key(self.name)}: {self.value.to_cypher()}"


@dataclass(frozen=True)
class MapProjection(Expression):
    """A map projection: ``n {.bodyId, .type, total: count(*)}``."""

    subject: Variable
    items: tuple[MapProjectionItem, ...] = ()

    def to_cypher(self) -> str:
        inner = ", ".join(item.to_cypher() for item in self.items)
        return f"{self.subject.to_cypher()} {{{inner}}}"


@dataclass(frozen=True)
class ListComprehension(Expression):
    """``[x IN source WHERE where | projection]``; ``where`` and ``projection`` are optional:
    ``[n in nodes(p) | [n.bodyId, n.type]]``, ``[k IN keys(s) WHERE k STARTS WITH 'nt']``."""

    variable: str
    source: Expression
    where: Expression | None = None
    projection: Expression | None = None

    def to_cypher(self) -> str:
        text = f"[{quote_name(self.variable)} IN {self.source.to_cypher()}"
        if self.where is not None:
            text += f" WHERE {self.where.to_cypher()}"
        if self.projection is not None:
            text += f" | {self.projection.to_cypher()}"
        return text + "]"


@dataclass(frozen=True)
class PatternComprehension(Expression):
    """``[p = (a)-[:ConnectsTo]->(b) WHERE where | projection]``: one list element per match of
    the pattern. ``pattern.variable`` is the optional path variable."""

    pattern: PathPattern
    projection: Expression
    where: Expression | None = None

    def to_cypher(self) -> str:
        text = "[" + self.pattern.to_cypher()
        if self.where is not None:
            text += f" WHERE {self.where.to_cypher()}"
        return text + f" | {self.projection.to_cypher()}]"


@dataclass(frozen=True)
class Quantifier(Expression):
    """A list predicate: ``ALL(x IN relationships(p) WHERE x.weight >= 5)``; ``kind`` is one of
    ``"ALL"``, ``"ANY"``, ``"NONE"``, ``"SINGLE"``."""

    kind: str
    variable: str
    source: Expression
    where: Expression

    def to_cypher(self) -> str:
        return f"{self.kind}({quote_name(self.variable)} IN {self.source.to_cypher()} WHERE {self.where.to_cypher()})"


@dataclass(frozen=True)
class Reduce(Expression):
    """``reduce(accumulator = initial, variable IN source | expression)``."""

    accumulator: str
    initial: Expression
    variable: str
    source: Expression
    expression: Expression

    def to_cypher(self) -> str:
        return (
            f"reduce({quote_name(self.accumulator)} = {self.initial.to_cypher()}, "
            f"{quote_name(self.variable)} IN {self.source.to_cypher()} | "
            f"{self.expression.to_cypher()})"
        )


@dataclass(frozen=True)
class CaseAlternative(Node):
    """One ``WHEN when THEN then`` branch of a :class:`Case`."""

    when: Expression
    then: Expression

    def to_cypher(self) -> str:
        return f"WHEN {self.when.to_cypher()} THEN {self.then.to_cypher()}"


@dataclass(frozen=True)
class Case(Expression):
    """``CASE [subject] WHEN .. THEN .. [ELSE default] END``.

    Without ``subject`` each ``when`` is a condition (generic form); with it, each ``when`` is a
    value compared to ``subject`` (simple form).
    """

    subject: Expression | None
    alternatives: tuple[CaseAlternative, ...]
    default: Expression | None = None

    def to_cypher(self) -> str:
        parts = ["CASE"]
        if self.subject is not None:
            parts.append(self.subject.to_cypher())
        parts.extend(alternative.to_cypher() for alternative in self.alternatives)
        if self.default is not None:
            parts.append(f"ELSE {self.default.to_cypher()}")
        parts.append("END")
        return " ".join(parts)


@dataclass(frozen=True)
class PatternPredicate(Expression):
    """A pattern used as a boolean, true if it has a match: ``WHERE (a)-[:ConnectsTo]->(b)``,
    ``NOT (n)-->()``. It always contains at least one relationship."""

    pattern: PathPattern

    def to_cypher(self) -> str:
        return self.pattern.to_cypher()


# --------------------------------------------------------------------------------------------
# Expressions: postfix forms
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Property(Expression):
    """Property or map-key access: ``n.bodyId``, ``s.location.x``, ``roiInfo.`AB(R)`.pre``,
    ``value.c``. Keyword-like keys (``n.type``, ``n.size``, ``n.count``) are ordinary names."""

    subject: Expression
    name: str

    def precedence(self) -> Precedence:
        return Precedence.POSTFIX

    def to_cypher(self) -> str:
        return f"{_operand(self.subject, Precedence.POSTFIX)}.{quote_key(self.name)}"


@dataclass(frozen=True)
class Index(Expression):
    """Subscript: ``list[0]``, dynamic map access ``roiInfo[roi]['post']``."""

    subject: Expression
    key: Expression

    def precedence(self) -> Precedence:
        return Precedence.POSTFIX

    def to_cypher(self) -> str:
        return f"{_operand(self.subject, Precedence.POSTFIX)}[{self.key.to_cypher()}]"


@dataclass(frozen=True)
class Slice(Expression):
    """List slice ``list[start..end]``; either bound may be omitted (``list[..3]``)."""

    subject: Expression
    start: Expression | None = None
    end: Expression | None = None

    def precedence(self) -> Precedence:
        return Precedence.POSTFIX

    def to_cypher(self) -> str:
        start = self.start.to_cypher() if self.start is not None else ""
        end = self.end.to_cypher() if self.end is not None else ""
        return f"{_operand(self.subject, Precedence.POSTFIX)}[{start}..{end}]"


@dataclass(frozen=True)
class LabelPredicate(Expression):
    """Label test on a node: ``n:Neuron`` (true if ``n`` has every label listed)."""

    subject: Expression
    labels: tuple[str, ...]

    def precedence(self) -> Precedence:
        return Precedence.POSTFIX

    def to_cypher(self) -> str:
        return _operand(self.subject, Precedence.POSTFIX) + _labels_text(self.labels)


# --------------------------------------------------------------------------------------------
# Expressions: operators
# --------------------------------------------------------------------------------------------

_BINARY_PRECEDENCE = {
    "OR": Precedence.OR,
    "XOR": Precedence.XOR,
    "AND": Precedence.AND,
    "+": Precedence.ADDITIVE,
    "-": Precedence.ADDITIVE,
    "*": Precedence.MULTIPLICATIVE,
    "/": Precedence.MULTIPLICATIVE,
    "%": Precedence.MULTIPLICATIVE,
    "^": Precedence.POWER,
}


@dataclass(frozen=True)
class BinaryOp(Expression):
    """A left-associative binary operator: boolean ``OR``, ``XOR``, ``AND`` and arithmetic ``+``
    (also string and list concatenation), ``-``, ``*``, ``/``, ``%``, ``^``.

    ``a AND b AND c`` is ``BinaryOp('AND', BinaryOp('AND', a, b), c)``.
    """

    operator: str
    left: Expression
    right: Expression

    def precedence(self) -> Precedence:
        return _BINARY_PRECEDENCE[self.operator]

    def to_cypher(self) -> str:
        level = self.precedence()
        left = _operand(self.left, level)
        right = _operand(self.right, Precedence(level + 1))
        return f"{left} {self.operator} {right}"


@dataclass(frozen=True)
class UnaryOp(Expression):
    """A prefix operator: ``NOT e``, ``-e``, ``+e``. (``-5`` is a :class:`Literal`.)"""

    operator: str
    operand: Expression

    def precedence(self) -> Precedence:
        return Precedence.NOT if self.operator == "NOT" else Precedence.UNARY

    def to_cypher(self) -> str:
        if self.operator == "NOT":
            return f"NOT {_operand(self.operand, Precedence.NOT)}"
        operand = _operand(self.operand, Precedence.UNARY)
        # keep "- -x" apart, so it never reads as one token
        separator = " " if operand.startswith(("-", "+")) else ""
        return f"{self.operator}{separator}{operand}"


@dataclass(frozen=True)
class Comparison(Expression):
    """A comparison or a chain of them: ``a = b``, ``a <> b``, ``1 <= x < 5``.

    ``operands`` has one more element than ``operators`` (each one of ``=``, ``<>``, ``<``, ``>``,
    ``<=``, ``>=``); a chain means the conjunction of its :meth:`pairs`.
    """

    operands: tuple[Expression, ...]
    operators: tuple[str, ...]

    def pairs(self) -> Iterator[tuple[Expression, str, Expression]]:
        """The single comparisons of the chain, as (left, operator, right)."""
        for index, operator in enumerate(self.operators):
            yield self.operands[index], operator, self.operands[index + 1]

    def precedence(self) -> Precedence:
        return Precedence.COMPARISON

    def to_cypher(self) -> str:
        parts = [_operand(self.operands[0], Precedence.PREDICATE)]
        for operator, operand in zip(self.operators, self.operands[1:]):
            parts.append(operator)
            parts.append(_operand(operand, Precedence.PREDICATE))
        return " ".join(parts)


@dataclass(frozen=True)
class In(Expression):
    """List membership: ``n.bodyId IN [10001, 10002]``, ``roi in rois``."""

    element: Expression
    collection: Expression

    def precedence(self) -> Precedence:
        return Precedence.PREDICATE

    def to_cypher(self) -> str:
        element = _operand(self.element, Precedence.PREDICATE)
        return f"{element} IN {_operand(self.collection, Precedence.ADDITIVE)}"


@dataclass(frozen=True)
class RegexMatch(Expression):
    """Regular expression match of the whole string: ``n.type =~ 'DNge.*'``."""

    subject: Expression
    pattern: Expression

    def precedence(self) -> Precedence:
        return Precedence.PREDICATE

    def to_cypher(self) -> str:
        subject = _operand(self.subject, Precedence.PREDICATE)
        return f"{subject} =~ {_operand(self.pattern, Precedence.ADDITIVE)}"


@dataclass(frozen=True)
class StringOp(Expression):
    """A string predicate: ``k STARTS WITH 'nt'``, ``x ENDS WITH 'R'``, ``n.type CONTAINS "DN"``;
    ``operator`` is ``"STARTS WITH"``, ``"ENDS WITH"`` or ``"CONTAINS"``."""

    operator: str
    subject: Expression
    search: Expression

    def precedence(self) -> Precedence:
        return Precedence.PREDICATE

    def to_cypher(self) -> str:
        subject = _operand(self.subject, Precedence.PREDICATE)
        return f"{subject} {self.operator} {_operand(self.search, Precedence.ADDITIVE)}"


@dataclass(frozen=True)
class IsNull(Expression):
    """``e IS NULL`` (or ``e IS NOT NULL`` when ``negated``)."""

    subject: Expression
    negated: bool = False

    def precedence(self) -> Precedence:
        return Precedence.PREDICATE

    def to_cypher(self) -> str:
        subject = _operand(self.subject, Precedence.PREDICATE)
        return f"{subject} IS NOT NULL" if self.negated else f"{subject} IS NULL"


# --------------------------------------------------------------------------------------------
# Patterns
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodePattern(Node):
    """A node in a pattern: ``()``, ``(n)``, ``(:SynapseSet)``, ``(n :Neuron:Segment)``,
    ``(src :Neuron {bodyId: 10001})``.

    ``properties`` is a :class:`MapLiteral` or a :class:`Parameter` (``(n $props)``), or None.
    """

    variable: str | None = None
    labels: tuple[str, ...] = ()
    properties: Expression | None = None

    def to_cypher(self) -> str:
        text = quote_name(self.variable) if self.variable is not None else ""
        text += _labels_text(self.labels)
        if self.properties is not None:
            text += (" " if text else "") + self.properties.to_cypher()
        return f"({text})"


class Direction(str, enum.Enum):  # noqa: UP042 - str(member) stays "Direction.X"
    """Direction of a relationship pattern, as written left to right."""

    OUTGOING = "out"  # (a)-[]->(b)
    INCOMING = "in"  # (a)<-[]-(b)
    UNDIRECTED = "both"  # (a)-[]-(b), also (a)<-[]->(b)


@dataclass(frozen=True)
class RelPattern(Node):
    """A relationship in a pattern: ``-->``, ``<-[:Contains]-``, ``-[e:ConnectsTo]->``,
    ``-[:A|B]-``, ``-[:ConnectsTo*1..3]->``, ``-[c: ConnectsTo*]->``.

    ``types`` are alternatives (any of them matches). ``direction`` is :class:`Direction`:
    ``OUTGOING`` points from the node before it to the node after it in ``PathPattern.elements``.
    ``variable_length`` is set for ``*``; then ``min_hops``/``max_hops`` are the bounds written
    (``*`` -> None, None; ``*2`` -> 2, 2; ``*1..3`` -> 1, 3; ``*..3`` -> None, 3; ``*2..`` -> 2,
    None); an unwritten lower bound means 1 and an unwritten upper bound means unbounded.
    Note ``[ConnectsTo*1..2]`` (no colon) binds a *variable* called ConnectsTo.
    """

    variable: str | None = None
    types: tuple[str, ...] = ()
    direction: Direction = Direction.OUTGOING
    variable_length: bool = False
    min_hops: int | None = None
    max_hops: int | None = None
    properties: Expression | None = None

    def to_cypher(self) -> str:
        detail = quote_name(self.variable) if self.variable is not None else ""
        if self.types:
            detail += ":" + "|".join(quote_key(t) for t in self.types)
        if self.variable_length:
            detail += "*"
            if self.min_hops is not None and self.min_hops == self.max_hops:
                detail += str(self.min_hops)
            elif self.min_hops is not None or self.max_hops is not None:
                low = "" if self.min_hops is None else str(self.min_hops)
                high = "" if self.max_hops is None else str(self.max_hops)
                detail += f"{low}..{high}"
        if self.properties is not None:
            detail += (" " if detail else "") + self.properties.to_cypher()
        body = f"-[{detail}]-" if detail else "--"
        if self.direction is Direction.OUTGOING:
            return body + ">"
        if self.direction is Direction.INCOMING:
            return "<" + body
        return body


@dataclass(frozen=True)
class PathPattern(Node):
    """One comma-separated part of a MATCH pattern: a chain of nodes and relationships,
    optionally named (``p = ...``) and optionally inside ``shortestPath(...)`` /
    ``allShortestPaths(...)`` (``shortest`` is then that function name, canonically spelled).

    ``elements`` alternates :class:`NodePattern` and :class:`RelPattern`, starting and ending
    with a node: ``(a)-[:Contains]->(b)<-[:Contains]-(c)`` has five elements.
    """

    elements: tuple[NodePattern | RelPattern, ...]
    variable: str | None = None
    shortest: str | None = None

    @property
    def nodes(self) -> tuple[NodePattern, ...]:
        """The node patterns, in order."""
        return self.elements[0::2]  # type: ignore[return-value]

    @property
    def relationships(self) -> tuple[RelPattern, ...]:
        """The relationship patterns, in order."""
        return self.elements[1::2]  # type: ignore[return-value]

    def to_cypher(self) -> str:
        chain = "".join(element.to_cypher() for element in self.elements)
        if self.shortest is not None:
            chain = f"{self.shortest}({chain})"
        if self.variable is not None:
            chain = f"{quote_name(self.variable)} = {chain}"
        return chain


# --------------------------------------------------------------------------------------------
# Clauses
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectionItem(Node):
    """One item of ``WITH`` / ``RETURN``: ``n.bodyId AS bodyId``, ``count(n)``.

    ``source_text`` is the expression exactly as written in the query (not part of equality);
    Neo4j names an un-aliased column by it, see :attr:`column_name`.
    """

    expression: Expression
    alias: str | None = None
    source_text: str = field(default="", compare=False, repr=False)

    @property
    def column_name(self) -> str:
        """The result column name: the alias, else the expression's text as written
        (``RETURN n.type`` -> ``"n.type"``, ``count(n)`` -> ``"count(n)"``)."""
        if self.alias is not None:
            return self.alias
        return self.source_text or self.expression.to_cypher()

    def to_cypher(self) -> str:
        text = self.expression.to_cypher()
        return f"{text} AS {quote_key(self.alias)}" if self.alias is not None else text


@dataclass(frozen=True)
class SortItem(Node):
    """One ``ORDER BY`` key: ``e.weight DESC``; ``ASC`` is the default."""

    expression: Expression
    descending: bool = False

    def to_cypher(self) -> str:
        return self.expression.to_cypher() + (" DESC" if self.descending else "")


@dataclass(frozen=True)
class YieldItem(Node):
    """One ``YIELD`` column of a procedure call: ``value`` or ``label AS l``."""

    name: str
    alias: str | None = None

    @property
    def variable(self) -> str:
        """The variable the column is bound to."""
        return self.alias if self.alias is not None else self.name

    def to_cypher(self) -> str:
        text = quote_key(self.name)
        return f"{text} AS {quote_key(self.alias)}" if self.alias is not None else text


def _projection_text(
    keyword: str,
    distinct: bool,
    star: bool,
    items: tuple[ProjectionItem, ...],
    order_by: tuple[SortItem, ...],
    skip: Expression | None,
    limit: Expression | None,
) -> str:
    parts = [keyword + (" DISTINCT" if distinct else "")]
    columns = (["*"] if star else []) + [item.to_cypher() for item in items]
    parts.append(", ".join(columns))
    if order_by:
        parts.append("ORDER BY " + ", ".join(item.to_cypher() for item in order_by))
    if skip is not None:
        parts.append(f"SKIP {skip.to_cypher()}")
    if limit is not None:
        parts.append(f"LIMIT {limit.to_cypher()}")
    return " ".join(parts)


@dataclass(frozen=True)
class Match(Clause):
    """``[OPTIONAL] MATCH pattern, pattern, ... [WHERE where]``."""

    patterns: tuple[PathPattern, ...]
    where: Expression | None = None
    optional: bool = False

    def to_cypher(self) -> str:
        text = ("OPTIONAL MATCH " if self.optional else "MATCH ") + ", ".join(
            pattern.to_cypher() for pattern in self.patterns
        )
        if self.where is not None:
            text += f" WHERE {self.where.to_cypher()}"
        return text


@dataclass(frozen=True)
class With(Clause):
    """``WITH [DISTINCT] [*,] items [ORDER BY ..] [SKIP n] [LIMIT n] [WHERE where]``.

    ``where`` filters the rows after the projection, ordering, skip and limit (so it is written
    last, as in ``WITH ... ORDER BY roi WHERE ...``). ``star`` is set for ``WITH *``.
    """

    items: tuple[ProjectionItem, ...]
    distinct: bool = False
    star: bool = False
    order_by: tuple[SortItem, ...] = ()
    skip: Expression | None = None
    limit: Expression | None = None
    where: Expression | None = None

    def to_cypher(self) -> str:
        text = _projection_text("WITH", self.distinct, self.star, self.items, self.order_by, self.skip, self.limit)
        if self.where is not None:
            text += f" WHERE {self.where.to_cypher()}"
        return text


@dataclass(frozen=True)
class Unwind(Clause):
    """``UNWIND expression AS alias``: one row per list element."""

    expression: Expression
    alias: str

    def to_cypher(self) -> str:
        return f"UNWIND {self.expression.to_cypher()} AS {quote_key(self.alias)}"


@dataclass(frozen=True)
class Return(Clause):
    """``RETURN [DISTINCT] [*,] items [ORDER BY ..] [SKIP n] [LIMIT n]``: the last clause."""

    items: tuple[ProjectionItem, ...]
    distinct: bool = False
    star: bool = False
    order_by: tuple[SortItem, ...] = ()
    skip: Expression | None = None
    limit: Expression | None = None

    def to_cypher(self) -> str:
        return _projection_text("RETURN", self.distinct, self.star, self.items, self.order_by, self.skip, self.limit)


@dataclass(frozen=True)
class Call(Clause):
    """``CALL procedure(arguments) [YIELD items [WHERE where]]``, for whitelisted read-only
    procedures only (see ``parser.READ_ONLY_PROCEDURES``).

    ``procedure`` keeps the dots and spelling (``apoc.cypher.runTimeboxed``). For procedures that
    run a query given as a string (``apoc.cypher.runTimeboxed``, ``apoc.cypher.run``) whose first
    argument is a string literal, that literal stays in ``arguments`` and its parsed form is
    ``inner_query`` (positions in it refer to the outer text; exact unless the string contains
    escape sequences). Otherwise ``inner_query`` is None.
    """

    procedure: str
    arguments: tuple[Expression, ...] = ()
    yield_items: tuple[YieldItem, ...] = ()
    where: Expression | None = None
    inner_query: Query | None = None

    def to_cypher(self) -> str:
        name = _function_name_text(self.procedure)
        text = f"CALL {name}({', '.join(a.to_cypher() for a in self.arguments)})"
        if self.yield_items:
            text += " YIELD " + ", ".join(item.to_cypher() for item in self.yield_items)
        if self.where is not None:
            text += f" WHERE {self.where.to_cypher()}"
        return text


@dataclass(frozen=True)
class SingleQuery(Node):
    """A sequence of clauses without UNION, ending with ``RETURN`` (or a lone ``CALL``)."""

    clauses: tuple[Clause, ...]

    def to_cypher(self) -> str:
        return "\n".join(clause.to_cypher() for clause in self.clauses)


@dataclass(frozen=True)
class Query(Node):
    """A whole query: one :class:`SingleQuery`, or several joined by ``UNION`` (duplicates
    removed) or ``UNION ALL`` (``union_all``; Cypher does not allow mixing the two)."""

    parts: tuple[SingleQuery, ...]
    union_all: bool = False

    @property
    def clauses(self) -> tuple[Clause, ...]:
        """The clauses of the first (for a query without UNION: the only) part."""
        return self.parts[0].clauses

    def to_cypher(self) -> str:
        separator = "\nUNION ALL\n" if self.union_all else "\nUNION\n"
        return separator.join(part.to_cypher() for part in self.parts)


def free_variables(expr: Node, skip=None) -> set[str]:
    """Variables ``expr`` reads: not the ones comprehensions, quantifiers and reduce bind, and not
    inside subtrees for which ``skip(node)`` is true (the analyzer skips aggregations)."""
    out: set[str] = set()

    def visit(node, bound: frozenset) -> None:
        if skip is not None and isinstance(node, Expression) and skip(node):
            return
        if isinstance(node, Variable):
            if node.name not in bound:
                out.add(node.name)
            return
        if isinstance(node, (ListComprehension, Quantifier)):
            visit(node.source, bound)
            for part in (getattr(node, "where", None), getattr(node, "projection", None)):
                if part is not None:
                    visit(part, bound | {node.variable})
            return
        if isinstance(node, Reduce):
            visit(node.initial, bound)
            visit(node.source, bound)
            visit(node.expression, bound | {node.accumulator, node.variable})
            return
        if isinstance(node, ListLiteral):  # long id lists (fetch_adjacencies'): no walk per literal
            if node.literal_values() is not None:
                return
            for item in node.items:
                if not isinstance(item, Literal):
                    visit(item, bound)
            return
        for child in node.children():
            visit(child, bound)

    visit(expr, frozenset())
    return out


# Names used in annotations, for readers of the field types.
PatternElement = NodePattern | RelPattern
