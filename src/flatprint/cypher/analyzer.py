"""Static analysis: every reason to refuse a parsed query, found before anything runs.

:func:`analyze` walks the syntax tree clause by clause with the variables in scope and their kinds
(node, relationship, path, value) and raises, naming the construct with its line and column:

- :class:`CypherSyntaxError` for queries Neo4j rejects too: an undefined variable, a variable used
  as another kind (``MATCH (a)-[a]->()``, ``type(n)`` of a node), a non-boolean literal under
  AND/OR/XOR/NOT, a non-list literal after IN, an aggregation where none may be (ORDER BY after a
  projection that does not aggregate, inside a list comprehension), an expression in WITH without
  an alias, ``RETURN *`` with nothing in scope;
- :class:`UnsupportedCypherError` for valid Cypher that flatprint does not run: a function or
  procedure not in :mod:`flatprint.cypher.registry` or with the wrong number of arguments, pattern
  expressions, the variable-length patterns the path search cannot answer, and so on.

Writing clauses never reach this stage: the parser refuses them (:class:`CypherWriteError`).
What passes here runs; the executor does not check again.
"""

from __future__ import annotations

from flatprint.cypher import ast, registry
from flatprint.cypher.errors import CypherSyntaxError, unsupported
from flatprint.cypher.registry import contains_aggregate

__all__ = ["analyze", "check_expression"]

NODE, REL, RELS, PATH, VALUE, ANY = "node", "relationship", "list of relationships", "path", "value", "any"

_LITERALS = (ast.Literal, ast.ListLiteral, ast.MapLiteral)

#: function -> kinds of variable its argument cannot be (Neo4j refuses these when compiling)
_REFUSED_ARGUMENT_KINDS = {
    "type": {NODE, PATH, VALUE},
    "length": {NODE, REL},
    "labels": {REL, PATH, VALUE},
    "startnode": {NODE, PATH, VALUE},
    "endnode": {NODE, PATH, VALUE},
    "nodes": {NODE, REL},
    "relationships": {NODE, REL},
    "rels": {NODE, REL},
}


def invalid(node: ast.Node, construct: str, detail: str) -> CypherSyntaxError:
    """A query Neo4j would reject too: ``invalid Cypher: <detail> at line L, column C``."""
    return CypherSyntaxError(detail, line=node.line, column=node.column, construct=construct)


def analyze(query: ast.Query) -> None:
    """Raise for anything in ``query`` (and its literal inner queries) that the engine will not run."""
    columns = None
    for part in query.parts:
        _analyze_part(part)
        last = part.clauses[-1]
        names = [i.column_name for i in last.items] if isinstance(last, ast.Return) and not last.star else None
        if columns is not None and names is not None and names != columns:
            raise unsupported(part, "UNION of queries with different columns")
        columns = names


def check_expression(expr: ast.Node, *, allow_aggregates: bool, scope: dict[str, str] | None = None) -> None:
    """Raise for anything the evaluator cannot do in ``expr``; with ``scope`` (variable -> kind),
    also for variables not in it."""
    _Expressions(scope, allow_aggregates).visit(expr, scope)


def _analyze_part(part: ast.SingleQuery) -> None:
    scope: dict[str, str] = {}
    for clause in part.clauses:
        if isinstance(clause, ast.Match):
            scope = _match(clause, scope)
        elif isinstance(clause, (ast.With, ast.Return)):
            scope = _projection(clause, scope)
        elif isinstance(clause, ast.Unwind):
            check_expression(clause.expression, allow_aggregates=False, scope=scope)
            scope = {**scope, clause.alias: ANY}
        elif isinstance(clause, ast.Call):
            scope = _call(clause, scope)
        else:
            raise unsupported(clause, type(clause).__name__.upper())


def _is_var_length(pattern: ast.PathPattern) -> bool:
    return bool(pattern.shortest) or any(isinstance(e, ast.RelPattern) and e.variable_length for e in pattern.elements)


def _bind(scope: dict[str, str], name: str, kind: str, node: ast.Node) -> None:
    known = scope.get(name)
    if known not in (None, ANY, kind):
        raise invalid(node, name, f"variable `{name}` is a {_base(known)}, used here as a {kind}")
    scope[name] = kind


def _base(kind: str | None) -> str | None:
    """A literal's kind (``value:integer``) as the variable kind it is (``value``)."""
    return VALUE if kind and kind.startswith(VALUE) else kind


def _element_kind(source) -> str:
    """The kind of every element of a list literal of literals of one type (``['a', 'b']``), else ANY."""
    if isinstance(source, ast.ListLiteral) and source.items:
        kinds = {_kind_of(item, {}) for item in source.items}
        if len(kinds) == 1 and kinds.pop() != ANY:
            return _kind_of(source.items[0], {})
    return ANY


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _literal_type(expr, scope) -> str | None:
    """``integer``, ``float``, ``string``, ``boolean``, ``list`` or ``map`` when ``expr`` is a literal
    of that type or a variable bound to one (``WITH 123 AS x``); else None."""
    kind = _kind_of(expr, scope or {})
    return kind.split(":", 1)[1] if kind.startswith(VALUE + ":") else None


def _match(clause: ast.Match, scope: dict[str, str]) -> dict[str, str]:
    var_length = [p for p in clause.patterns if _is_var_length(p)]
    if len(var_length) > 1:
        raise unsupported(var_length[1], "more than one variable-length pattern in a MATCH")
    inner = dict(scope)
    relationships: set[str] = set()
    for pattern in clause.patterns:
        if pattern.variable:
            _bind(inner, pattern.variable, PATH, pattern)
        for element in pattern.elements:
            if element.variable is None:
                continue
            if isinstance(element, ast.NodePattern):
                _bind(inner, element.variable, NODE, element)
                continue
            _bind(inner, element.variable, RELS if element.variable_length else REL, element)
            if not element.variable_length:  # a relationship is matched once per MATCH (and per query)
                if element.variable in relationships or element.variable in scope:
                    raise unsupported(element, f"relationship variable `{element.variable}` bound twice")
                relationships.add(element.variable)
    for pattern in clause.patterns:
        for element in pattern.elements:
            if element.properties is not None:
                if not isinstance(element.properties, ast.MapLiteral):
                    raise unsupported(element.properties, "properties given as a parameter map")
                check_expression(element.properties, allow_aggregates=False, scope=inner)
            if (
                isinstance(element, ast.RelPattern)
                and element.direction == ast.Direction.UNDIRECTED
                and element.types
                and element.types not in (("ConnectsTo",), ("SynapsesTo",))
                and not element.variable_length
            ):
                raise unsupported(element, f"undirected :{element.types[0]}")
            if isinstance(element, ast.RelPattern) and len(element.types) > 1:
                raise unsupported(element, "relationship type alternatives " + "|".join(element.types))
    for pattern in var_length:
        _check_path_search(clause, pattern)
    if clause.where is not None:
        check_expression(clause.where, allow_aggregates=False, scope=inner)
    return inner


def _check_path_search(clause: ast.Match, pattern: ast.PathPattern) -> None:
    rels = [e for e in pattern.elements if isinstance(e, ast.RelPattern)]
    if len(rels) != 1:
        raise unsupported(pattern, "variable-length pattern with more than one relationship")
    rel = rels[0]
    if rel.types and rel.types != ("ConnectsTo",):
        raise unsupported(rel, f"variable-length :{'|'.join(rel.types)}", "only ConnectsTo")
    if rel.direction == ast.Direction.UNDIRECTED:
        raise unsupported(rel, "undirected variable-length relationship")
    if rel.properties is not None:
        raise unsupported(rel, "properties on a variable-length relationship")
    if not pattern.shortest and rel.max_hops is None:
        raise unsupported(rel, "unbounded variable-length relationship", "give an upper bound, e.g. *1..3")
    if not pattern.shortest and rel.max_hops is not None and rel.max_hops > 6:
        raise unsupported(rel, f"variable-length relationship of up to {rel.max_hops} hops", "at most 6")
    if clause.optional:
        raise unsupported(clause, "OPTIONAL MATCH with a variable-length pattern")


def _kind_of(expr: ast.Expression, scope: dict[str, str]) -> str:
    if isinstance(expr, ast.Variable):
        return scope.get(expr.name, ANY)
    if isinstance(expr, ast.Literal) and expr.kind == "null":
        return ANY  # null stands for a node as well as for a value
    if isinstance(expr, ast.Literal):
        return f"{VALUE}:{expr.kind}"
    if isinstance(expr, ast.ListLiteral):
        return f"{VALUE}:list"
    if isinstance(expr, ast.MapLiteral):
        return f"{VALUE}:map"
    return ANY


def _projection(clause, scope: dict[str, str]) -> dict[str, str]:
    keyword = "RETURN" if isinstance(clause, ast.Return) else "WITH"
    if clause.star and not scope:
        raise invalid(clause, f"{keyword} *", f"{keyword} * with no variables in scope")
    projected: dict[str, str] = dict(scope) if clause.star else {}
    for item in clause.items:
        check_expression(item.expression, allow_aggregates=True, scope=scope)
        projected[item.column_name] = _kind_of(item.expression, scope)
    aggregating = any(contains_aggregate(i.expression) for i in clause.items)
    for sort in clause.order_by:
        if not aggregating and contains_aggregate(sort.expression):
            aggregate = next(n for n in sort.expression.walk() if registry.is_aggregate(n))
            raise invalid(aggregate, "ORDER BY", f"aggregation in ORDER BY after a {keyword} that does not aggregate")
        check_expression(sort.expression, allow_aggregates=True, scope={**scope, **projected})
    if not clause.star:
        _grouping(clause, keyword, aggregating, projected)
    for what, expr in (("SKIP", clause.skip), ("LIMIT", clause.limit)):
        if expr is None:
            continue
        check_expression(expr, allow_aggregates=False, scope={})
        if isinstance(expr, ast.Literal) and not (expr.kind == "integer" and expr.value >= 0):
            raise invalid(expr, what, f"{what} expects a non-negative integer, got {expr.to_cypher()}")
    if isinstance(clause, ast.With) and clause.where is not None:
        # a WHERE after a WITH that neither aggregates nor orders or pages also sees the variables
        # before the WITH (rewriter.see_through_with_where runs it that way)
        visible = projected if aggregating or clause.order_by or clause.skip or clause.limit else {**scope, **projected}
        check_expression(clause.where, allow_aggregates=False, scope=visible)
    return projected


def _grouping(clause, keyword: str, aggregating: bool, projected: dict[str, str]) -> None:
    """What an aggregating (or DISTINCT) projection may refer to, as Neo4j checks it.

    In an item or ORDER BY term holding an aggregation, a variable outside the aggregation must be
    part of a grouping key projected as a variable or a property (``RETURN n.pre, n.pre + count(*)``;
    not ``RETURN n.pre + n.post, n.pre + n.post + count(*)``); an aggregation in ORDER BY must be
    one the projection computes; and after aggregating or DISTINCT, ORDER BY reads only the
    projected columns, or the projected expressions themselves (``RETURN DISTINCT n.type ORDER BY
    n.type``)."""
    if not (aggregating or clause.distinct):
        return
    keys = {i.expression.name for i in clause.items if isinstance(i.expression, ast.Variable)}
    # grouping keys a term next to an aggregation may use whole: projected variables and properties
    key_terms = {
        i.expression.to_cypher()
        for i in clause.items
        if isinstance(i.expression, ast.Property) and isinstance(i.expression.subject, ast.Variable)
    }

    def outside_aggregates(node) -> bool:
        return registry.is_aggregate(node) or (isinstance(node, ast.Property) and node.to_cypher() in key_terms)

    computed = {n.to_cypher() for i in clause.items for n in i.expression.walk() if registry.is_aggregate(n)}
    for item in clause.items:
        if contains_aggregate(item.expression):
            outside = ast.free_variables(item.expression, skip=outside_aggregates)
            _refuse_ambiguous(item.expression, outside - keys, keyword)
    expressions = {i.expression.to_cypher() for i in clause.items}
    for sort in clause.order_by:
        expr = sort.expression
        if contains_aggregate(expr):
            missing = next((n for n in expr.walk() if registry.is_aggregate(n) and n.to_cypher() not in computed), None)
            if missing is not None:
                raise invalid(
                    missing,
                    "ORDER BY",
                    f"aggregation {missing.to_cypher()} in ORDER BY that {keyword} does not project",
                )
            outside = ast.free_variables(expr, skip=outside_aggregates)
            _refuse_ambiguous(expr, outside - keys - set(projected), keyword)
        unknown = ast.free_variables(expr, skip=lambda n: n.to_cypher() in expressions or registry.is_aggregate(n))
        name = next((v for v in sorted(unknown) if v not in projected), None)
        if name is not None:
            after = f"{keyword} DISTINCT" if clause.distinct else f"an aggregating {keyword}"
            raise invalid(sort, name, f"variable `{name}` not defined (ORDER BY after {after} sees only its columns)")


def _refuse_ambiguous(expr, names: set[str], keyword: str) -> None:
    if names:
        name = sorted(names)[0]
        raise invalid(
            expr,
            "aggregation",
            f"`{name}` is used next to an aggregation in {keyword} but is not a grouping key (project `{name}` itself)",
        )


def _call(clause: ast.Call, scope: dict[str, str]) -> dict[str, str]:
    procedure = registry.lookup_procedure(clause.procedure)
    if procedure is None:
        raise unsupported(clause, f"procedure {clause.procedure}")
    if not procedure.min_args <= len(clause.arguments) <= procedure.max_args:
        raise unsupported(
            clause, f"{clause.procedure} with {len(clause.arguments)} arguments", f"it takes {procedure.arity_text()}"
        )
    if clause.inner_query is not None:
        analyze(clause.inner_query)
    for argument in clause.arguments:
        check_expression(argument, allow_aggregates=False, scope=scope)
    inner = dict(scope)
    for item in clause.yield_items:
        if item.name not in procedure.yields:
            raise unsupported(item, f"YIELD {item.name} from {clause.procedure}")
    for name in [i.variable for i in clause.yield_items] or list(procedure.yields):
        inner[name] = ANY
    if clause.where is not None:
        check_expression(clause.where, allow_aggregates=False, scope=inner)
    return inner


class _Expressions:
    """One expression's checks; ``scope`` None skips the variable checks."""

    def __init__(self, scope, allow_aggregates: bool):
        self.check_variables = scope is not None
        self.allow_aggregates = allow_aggregates

    def visit(self, node: ast.Node, scope) -> None:  # noqa: C901 - one dispatch over the node kinds
        if isinstance(node, ast.Variable):
            if self.check_variables and node.name not in scope:
                raise invalid(node, node.name, f"variable `{node.name}` not defined")
            return
        if isinstance(node, ast.FunctionCall):
            self.call(node, scope)
            return
        if isinstance(node, ast.CountStar):
            if not self.allow_aggregates:
                raise unsupported(node, "count(*)", "not allowed here")
            return
        if isinstance(node, (ast.PatternComprehension, ast.PatternPredicate)):
            raise unsupported(node, "pattern expression")
        if isinstance(node, ast.Exists) and not isinstance(node.argument, (ast.Property, ast.Index)):
            raise unsupported(node, "exists() on a pattern")
        if isinstance(node, ast.BinaryOp) and node.operator in ("AND", "OR", "XOR"):
            for operand in (node.left, node.right):
                self.boolean_operand(node.operator, operand)
        elif isinstance(node, ast.UnaryOp) and node.operator == "NOT":
            self.boolean_operand("NOT", node.operand)
        if isinstance(node, ast.In) and (
            isinstance(node.collection, ast.MapLiteral)
            or (isinstance(node.collection, ast.Literal) and node.collection.kind != "null")
        ):
            raise invalid(node.collection, "IN", f"IN expects a list, got {node.collection.to_cypher()}")
        if isinstance(node, (ast.Quantifier, ast.ListComprehension, ast.Reduce)):
            self.scoped(node, scope)
            return
        if isinstance(node, (ast.Property, ast.Index)):
            self.access(node, scope)
        if isinstance(node, ast.BinaryOp) and node.operator in ("-", "*", "/", "%", "^"):
            for operand in (node.left, node.right):
                kind = _literal_type(operand, scope)
                if kind in ("string", "boolean", "list", "map"):
                    raise invalid(operand, node.operator, f"{node.operator} of {_a(kind)} (it takes numbers)")
        if isinstance(node, ast.MapProjection):
            self.visit(node.subject, scope)
            for item in node.items:
                if item.kind == "variable":
                    self.visit(ast.Variable(item.name, line=item.line, column=item.column), scope)
                elif item.value is not None:
                    self.visit(item.value, scope)
            return
        for child in node.children():
            self.visit(child, scope)

    def scoped(self, node, scope) -> None:
        """List comprehensions, quantifiers and reduce: their own variables, and no aggregation inside
        (it would aggregate per element)."""
        if isinstance(node, ast.Quantifier) and node.kind not in ("ALL", "ANY", "NONE", "SINGLE"):
            raise unsupported(node, node.kind)
        if isinstance(node, ast.Reduce):
            self.visit(node.initial, scope)
            bodies, inner = [node.expression], self.bind(self.bind(scope, node.accumulator), node.variable)
        else:
            bodies = [part for part in (node.where, getattr(node, "projection", None)) if part is not None]
            inner = self.bind(scope, node.variable, _element_kind(node.source))
        self.visit(node.source, scope)
        for body in bodies:
            aggregate = next((n for n in body.walk() if registry.is_aggregate(n)), None)
            if aggregate is not None:
                raise invalid(aggregate, "aggregation", "aggregation inside a list comprehension, quantifier or reduce")
            self.visit(body, inner)

    @staticmethod
    def access(node, scope) -> None:
        """``x.key`` and ``x[i]`` on literals (or variables bound to them) of a type that has none."""
        subject = _literal_type(node.subject, scope)
        if isinstance(node, ast.Property):
            if subject not in (None, "map"):
                raise invalid(node, "property access", f"property access on {_a(subject)}")
            return
        if subject not in (None, "list", "map"):
            raise invalid(node, "index", f"indexing {_a(subject)}")
        key = _literal_type(node.key, scope)
        if subject == "list" and key not in (None, "integer"):
            raise invalid(node.key, "index", f"a list indexed by {_a(key)}")
        if subject == "map" and key not in (None, "string"):
            raise invalid(node.key, "index", f"a map indexed by {_a(key)}")

    @staticmethod
    def bind(scope, name: str, kind: str = ANY):
        return None if scope is None else {**scope, name: kind}

    @staticmethod
    def boolean_operand(operator: str, operand: ast.Expression) -> None:
        if isinstance(operand, ast.Literal) and operand.kind in ("boolean", "null"):
            return
        if isinstance(operand, _LITERALS):
            raise invalid(operand, operator, f"{operator} expects booleans, got {operand.to_cypher()}")

    def call(self, node: ast.FunctionCall, scope) -> None:
        function = registry.lookup_function(node.name)
        if function is None:
            raise unsupported(node, f"function {node.name}()")
        if function.kind == registry.AGGREGATE:
            if not self.allow_aggregates:
                raise unsupported(node, f"aggregation {node.name}()", "not allowed here")
            if not function.min_args <= len(node.arguments) <= function.max_args:
                raise unsupported(
                    node, f"{node.name}() with {len(node.arguments)} arguments", f"it takes {function.arity_text()}"
                )
            if any(contains_aggregate(a) for a in node.arguments):
                raise unsupported(node, "nested aggregation")
            random = next((n for a in node.arguments for n in a.walk() if _is_rand(n)), None)
            if random is not None:  # as in Neo4j: an aggregation's input must not be random
                raise invalid(random, "rand()", f"rand() inside the aggregation {node.name}()")
        elif not function.min_args <= len(node.arguments) <= function.max_args:
            raise unsupported(
                node, f"{node.name}() with {len(node.arguments)} arguments", f"it takes {function.arity_text()}"
            )
        refused = _REFUSED_ARGUMENT_KINDS.get(function.key)
        argument = node.arguments[0] if node.arguments else None
        if (
            refused
            and scope is not None
            and isinstance(argument, ast.Variable)
            and _base(scope.get(argument.name)) in refused
        ):
            raise invalid(argument, f"{node.name}()", f"{node.name}() of a {_base(scope[argument.name])}")
        if function.key == "properties" and _literal_type(argument, scope) not in (None, "map"):
            raise invalid(argument, "properties()", f"properties() of {_a(_literal_type(argument, scope))}")
        for argument in node.arguments:
            self.visit(argument, scope)


def _is_rand(node) -> bool:
    return isinstance(node, ast.FunctionCall) and node.lower_name == "rand"
