"""The one list of what a query may call: scalar functions, aggregations and procedures.

The analyzer refuses a call that is not here or has the wrong number of arguments; the evaluator,
the SQL generator and the executor implement exactly these names (a test runs every entry), and
docs/cypher.md's list is checked against this module. Names are matched case-insensitively, as in
Neo4j; ``name`` is the canonical spelling.
"""

from __future__ import annotations

from dataclasses import dataclass

from flatprint.cypher import ast

__all__ = [
    "Callable",
    "FUNCTIONS",
    "AGGREGATES",
    "PROCEDURES",
    "QUERY_PROCEDURES",
    "lookup_function",
    "lookup_procedure",
    "is_aggregate",
    "contains_aggregate",
]

SCALAR = "scalar"
AGGREGATE = "aggregate"
PROCEDURE = "procedure"


@dataclass(frozen=True)
class Callable:
    """A function, aggregation or procedure: ``min_args <= len(arguments) <= max_args``."""

    name: str
    kind: str
    min_args: int
    max_args: int
    yields: tuple[str, ...] = ()  # a procedure's output columns, in order

    @property
    def key(self) -> str:
        return self.name.lower()

    def arity_text(self) -> str:
        if self.min_args == self.max_args:
            return str(self.min_args)
        return f"{self.min_args}..{self.max_args}" if self.max_args < 99 else f"{self.min_args} or more"


def _scalar(name: str, low: int = 1, high: int | None = None) -> Callable:
    return Callable(name, SCALAR, low, low if high is None else high)


_SCALARS = (
    _scalar("abs"),
    _scalar("ceil"),
    _scalar("coalesce", 1, 99),
    _scalar("endNode"),
    _scalar("exp"),
    _scalar("floor"),
    _scalar("head"),
    _scalar("id"),
    _scalar("keys"),
    _scalar("labels"),
    _scalar("last"),
    _scalar("left", 2),
    _scalar("length"),
    _scalar("log"),
    _scalar("lower"),
    _scalar("lTrim"),
    _scalar("nodes"),
    _scalar("properties"),
    _scalar("rand", 0),
    _scalar("range", 2, 3),
    _scalar("relationships"),
    _scalar("rels"),
    _scalar("replace", 3),
    _scalar("reverse"),
    _scalar("right", 2),
    _scalar("round"),
    _scalar("rTrim"),
    _scalar("sign"),
    _scalar("size"),
    _scalar("split", 2),
    _scalar("sqrt"),
    _scalar("startNode"),
    _scalar("substring", 2, 3),
    _scalar("tail"),
    _scalar("toBoolean"),
    _scalar("toFloat"),
    _scalar("toInteger"),
    _scalar("toLower"),
    _scalar("toString"),
    _scalar("toUpper"),
    _scalar("trim"),
    _scalar("type"),
    _scalar("upper"),
    _scalar("apoc.coll.containsDuplicates"),
    _scalar("apoc.coll.flatten"),
    _scalar("apoc.coll.max"),
    _scalar("apoc.coll.min"),
    _scalar("apoc.coll.sum"),
    _scalar("apoc.coll.toSet"),
    _scalar("apoc.convert.fromJsonList"),
    _scalar("apoc.convert.fromJsonMap"),
    _scalar("apoc.convert.toJson"),
    _scalar("apoc.map.removeKey", 2),
    _scalar("apoc.map.removeKeys", 2),
    _scalar("apoc.meta.type"),
)

_AGGREGATES = tuple(
    Callable(name, AGGREGATE, 1, 1) for name in ("avg", "collect", "count", "max", "min", "stdev", "stDevP", "sum")
) + tuple(Callable(name, AGGREGATE, 2, 2) for name in ("percentileCont", "percentileDisc"))

_PROCEDURES = (
    Callable("apoc.cypher.run", PROCEDURE, 1, 3, ("value",)),
    Callable("apoc.cypher.runTimeboxed", PROCEDURE, 1, 3, ("value",)),
    Callable("db.labels", PROCEDURE, 0, 0, ("label",)),
    Callable("db.propertyKeys", PROCEDURE, 0, 0, ("propertyKey",)),
    Callable("db.relationshipTypes", PROCEDURE, 0, 0, ("relationshipType",)),
    Callable("dbms.components", PROCEDURE, 0, 0, ("name", "versions", "edition")),
)

#: lower-case name -> entry
FUNCTIONS: dict[str, Callable] = {c.key: c for c in _SCALARS}
AGGREGATES: dict[str, Callable] = {c.key: c for c in _AGGREGATES}
PROCEDURES: dict[str, Callable] = {c.key: c for c in _PROCEDURES}

#: procedures whose first argument is a Cypher query (parsed with the outer query when a literal)
QUERY_PROCEDURES: frozenset[str] = frozenset({"apoc.cypher.runtimeboxed", "apoc.cypher.run"})


def lookup_function(name: str) -> Callable | None:
    """The scalar function or aggregation called ``name`` (any case), else None."""
    key = name.lower()
    return FUNCTIONS.get(key) or AGGREGATES.get(key)


def lookup_procedure(name: str) -> Callable | None:
    return PROCEDURES.get(name.lower())


def is_aggregate(expr: ast.Node) -> bool:
    """True for ``count(*)`` and a call of an aggregation."""
    return isinstance(expr, ast.CountStar) or (isinstance(expr, ast.FunctionCall) and expr.lower_name in AGGREGATES)


def contains_aggregate(expr: ast.Node) -> bool:
    return any(is_aggregate(n) for n in expr.walk() if isinstance(n, ast.Expression))


def markdown() -> str:
    """docs/cypher.md's list of what a query may call (a test keeps the page equal to this)."""

    def names(entries) -> str:
        return ", ".join(f"`{e.name}`" for e in sorted(entries, key=lambda e: e.key))

    def with_arity(entries) -> str:
        return ", ".join(f"`{e.name}` ({e.arity_text()})" for e in sorted(entries, key=lambda e: e.key))

    plain = [e for e in FUNCTIONS.values() if "." not in e.name]
    apoc = [e for e in FUNCTIONS.values() if "." in e.name]
    procedures = "; ".join(
        f"`{e.name}` ({e.arity_text()} arguments) yields {', '.join(e.yields)}"
        for e in sorted(PROCEDURES.values(), key=lambda e: e.key)
    )
    return "\n".join(
        [
            f"- Aggregations (`DISTINCT` allowed; also `count(*)`): {with_arity(AGGREGATES.values())}; "
            "the percentile of `percentileCont`/`percentileDisc` is their second argument, in [0, 1].",
            f"- Functions (number of arguments): {with_arity(plain)}.",
            f"- APOC functions: {with_arity(apoc)}.",
            f"- Procedures: {procedures}.",
        ]
    )
