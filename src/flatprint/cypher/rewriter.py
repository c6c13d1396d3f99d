"""AST rewrites between the analyzer and the executor: same answers, cheaper plans.

- :func:`inline_constant_withs`: a leading ``WITH [ids] AS x`` is written where ``x`` is used, so
  that the list reaches SQL as a literal;
- :func:`fold_pass_through_withs`: consecutive MATCH clauses merge, and a WITH that only passes
  variables on folds its WHERE into the MATCH before it (:class:`MergedMatch`);
- :func:`rewrite_path_ends`: ``head(nodes(p))`` / ``last(nodes(p))`` become the path's end variables;
- :func:`expand_stars`: ``WITH *`` / ``RETURN *`` list the variables in scope, sorted by name as
  Neo4j names the columns (also when no row arrives).
- :func:`see_through_with_where`: ``WITH a.x AS x WHERE a.y = 1`` (a WHERE reading a variable the
  WITH drops) becomes ``WITH a.x AS x, a WHERE a.y = 1 WITH x``;
- :func:`normalize_projections`: both, in that order.

Every function returns new nodes; the parsed tree is never changed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from flatprint.cypher import ast
from flatprint.cypher.sqlgen import variables_in

__all__ = [
    "expand_stars",
    "normalize_projections",
    "see_through_with_where",
    "inline_constant_withs",
    "fold_pass_through_withs",
    "MergedMatch",
    "pattern_groups",
    "rewrite_path_ends",
    "with_variable",
    "and_all",
]


def _is_constant(expr) -> bool:
    if isinstance(expr, ast.Literal):
        return True
    if isinstance(expr, ast.ListLiteral):
        if expr.literal_values() is not None:  # neuprint-python's id lists: thousands of literals
            return True
        literal = ast.Literal
        return all(type(item) is literal or _is_constant(item) for item in expr.items)
    return False


def _names_bound(node) -> set[str]:
    """Every variable name a (sub)tree binds: pattern variables, aliases, comprehension variables."""
    names = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, (tuple, list)):
            stack.extend(item)
            continue
        if not isinstance(item, ast.Node) or type(item) is ast.Literal:
            continue
        if type(item) is ast.ListLiteral and item.literal_values() is not None:
            continue  # literals bind nothing (an id list: no walk over its items)
        if (
            isinstance(item, ast.ProjectionItem)
            and isinstance(item.expression, ast.Variable)
            and item.alias in (None, item.expression.name)
        ):
            continue  # ``WITH x`` passes x on; it does not bind a new x
        for attr in ("variable", "alias", "accumulator"):
            value = getattr(item, attr, None)
            if isinstance(value, str):
                names.add(value)
        stack.extend(item.children())
    return names


def _substitute(node, name: str, value):
    """A copy of ``node`` with every ``Variable(name)`` replaced by the expression ``value`` (the
    parts without one are kept as they are).

    A projection item that passes the variable on (``WITH n, ids``) keeps its name as an alias.
    """
    if isinstance(node, ast.Variable):
        return value if node.name == name else node
    if (
        isinstance(node, ast.ProjectionItem)
        and isinstance(node.expression, ast.Variable)
        and node.expression.name == name
    ):
        return dataclasses.replace(node, expression=value, alias=node.alias or name)
    if isinstance(node, tuple):
        replaced = tuple(_substitute(item, name, value) for item in node)
        return node if all(new is old for new, old in zip(replaced, node)) else replaced
    if not isinstance(node, ast.Node):
        return node
    if type(node) is ast.Literal or (type(node) is ast.ListLiteral and node.literal_values() is not None):
        return node  # no variable inside (an id list: no walk over its items)
    changes = {}
    for field_name in ast.init_fields(type(node)):
        current = getattr(node, field_name)
        replaced = _substitute(current, name, value)
        if replaced is not current:
            changes[field_name] = replaced
    return dataclasses.replace(node, **changes) if changes else node


def normalize_projections(clauses) -> tuple:
    return expand_stars(see_through_with_where(clauses))


def see_through_with_where(clauses) -> tuple:
    """A WITH whose WHERE reads variables the WITH drops keeps them for the WHERE; a second WITH
    then drops them (and applies DISTINCT). The analyzer allows this only without aggregation,
    ORDER BY, SKIP and LIMIT, as openCypher does."""
    out = []
    for clause in clauses:
        if not (isinstance(clause, ast.With) and clause.where is not None and not clause.star):
            out.append(clause)
            continue
        names = [item.column_name for item in clause.items]
        dropped = sorted(variables_in(clause.where) - set(names))
        if not dropped or clause.order_by or clause.skip or clause.limit:
            out.append(clause)
            continue
        at = {"line": clause.line, "column": clause.column}
        kept = tuple(ast.ProjectionItem(ast.Variable(n, **at), n, **at) for n in dropped)
        out.append(dataclasses.replace(clause, items=tuple(clause.items) + kept, distinct=False))
        narrowed = tuple(ast.ProjectionItem(ast.Variable(n, **at), n, **at) for n in names)
        out.append(ast.With(narrowed, clause.distinct, **at))
    return tuple(out)


def expand_stars(clauses) -> tuple:
    """``RETURN *`` -> ``RETURN a, b`` (and the same for ``WITH *``): the variables the clauses
    before bound, sorted by name. Run first: later rewrites then see ordinary items."""
    scope: set[str] = set()
    out = []
    for clause in clauses:
        if isinstance(clause, (ast.With, ast.Return)) and clause.star:
            named = {item.column_name for item in clause.items}
            items = tuple(
                ast.ProjectionItem(ast.Variable(name, line=clause.line, column=clause.column), name)
                for name in sorted(scope - named)
            )
            clause = dataclasses.replace(clause, star=False, items=items + tuple(clause.items))
        out.append(clause)
        if isinstance(clause, ast.Match):
            for pattern in clause.patterns:
                scope |= {e.variable for e in pattern.elements if e.variable}
                scope |= {pattern.variable} if pattern.variable else set()
        elif isinstance(clause, ast.Unwind):
            scope.add(clause.alias)
        elif isinstance(clause, ast.With):
            scope = {item.column_name for item in clause.items}
        elif isinstance(clause, ast.Call):
            yields = [item.variable for item in clause.yield_items]
            if not yields:
                return tuple(clauses)  # a CALL without YIELD: its columns are the procedure's, leave * alone
            scope |= set(yields)
    return tuple(out)


def inline_constant_withs(clauses) -> tuple:
    """``WITH [1, 2] AS ids MATCH ... WHERE n.bodyId IN ids`` -> the list written where it is used.

    neuprint-python passes long body-id lists this way; as a variable the filter is evaluated row by
    row, as a literal it becomes SQL that the sorted tables can answer with a range scan. Only a
    leading WITH of constants is inlined, and only when no later clause binds the names anew.
    """
    clauses = tuple(clauses)
    if len(clauses) < 2 or not isinstance(clauses[0], ast.With):
        return clauses
    first = clauses[0]
    if first.distinct or first.star or first.order_by or first.skip or first.limit or first.where:
        return clauses
    if not all(item.alias and _is_constant(item.expression) for item in first.items):
        return clauses
    rest = clauses[1:]
    if any(getattr(clause, "star", False) for clause in rest):
        return clauses  # ``WITH *`` or ``RETURN *`` passes the constants as columns: keep them variables
    # Names a later clause binds anew (its own alias, UNWIND, a pattern) are not constants there.
    bound = _names_bound(rest)
    if any(item.alias in bound for item in first.items):
        return clauses
    for item in first.items:
        rest = _substitute(rest, item.alias, item.expression)
    return rest


def fold_pass_through_withs(clauses) -> tuple:
    """Merge ``WITH n, m [WHERE ...]`` clauses that only pass variables on into the MATCH before.

    neuprint-python writes ``MATCH ... WITH n, m, e, true AS _ WHERE ... WITH n, s WHERE ...``;
    folded, the WHERE terms reach the SQL and the MATCH can run together with its RETURN. A
    ``WITH DISTINCT`` folds only when every dropped variable is determined by the kept ones (a
    SynapseSet by its body, a relationship by its ends), so that no duplicates can arise.
    """
    clauses = list(clauses)
    position = 0
    while position + 1 < len(clauses):
        match, following = clauses[position], clauses[position + 1]
        folded = _fold_with(match, following, clauses[position + 2 :])  # or merge two MATCHes
        if folded is None:
            position += 1
        else:
            clauses[position : position + 2] = [folded]
    return tuple(clauses)


@dataclass(frozen=True)
class MergedMatch(ast.Match):
    """Consecutive MATCH clauses as one; ``groups`` gives each pattern's original clause."""

    groups: tuple[int, ...] = ()


def pattern_groups(match: ast.Match) -> tuple[int, ...]:
    return match.groups if isinstance(match, MergedMatch) else (0,) * len(match.patterns)


def _is_var_length(match: ast.Match) -> bool:
    return any(
        p.shortest or any(isinstance(e, ast.RelPattern) and e.variable_length for e in p.elements)
        for p in match.patterns
    )


def _merge_matches(first, second):
    """MATCH a WHERE x MATCH b WHERE y -> MATCH a, b WHERE x AND y (both plain, not OPTIONAL)."""
    if not (isinstance(first, ast.Match) and isinstance(second, ast.Match)) or first.optional or second.optional:
        return None
    if _is_var_length(first) or _is_var_length(second):
        return None
    where = first.where
    if second.where is not None:
        where = (
            second.where
            if where is None
            else ast.BinaryOp("AND", where, second.where, line=second.where.line, column=second.where.column)
        )
    offset = max(pattern_groups(first)) + 1
    return MergedMatch(
        first.patterns + second.patterns,
        where,
        False,
        line=first.line,
        column=first.column,
        groups=pattern_groups(first) + tuple(g + offset for g in pattern_groups(second)),
    )


def _fold_with(match, with_clause, rest):
    merged = _merge_matches(match, with_clause)
    if merged is not None:
        return merged
    if not isinstance(match, ast.Match) or not isinstance(with_clause, ast.With) or match.optional:
        return None
    if with_clause.star or with_clause.order_by or with_clause.skip is not None or with_clause.limit is not None:
        return None
    if any(
        p.shortest or any(isinstance(e, ast.RelPattern) and e.variable_length for e in p.elements)
        for p in match.patterns
    ):
        return None
    pattern_vars = {e.variable for p in match.patterns for e in p.elements if e.variable}
    pattern_vars |= {p.variable for p in match.patterns if p.variable}
    kept, constants = set(), set()
    for item in with_clause.items:
        expr = item.expression
        if isinstance(expr, ast.Variable) and item.alias in (None, expr.name) and expr.name in pattern_vars:
            kept.add(expr.name)
        elif _is_constant(expr) and item.alias is not None:
            constants.add(item.alias)
        else:
            return None
    later = set()
    for clause in rest:
        for node in clause.walk():
            if isinstance(node, ast.Variable):
                later.add(node.name)
    if constants & later or (with_clause.where is not None and variables_in(with_clause.where) & constants):
        return None  # a constant alias is used later: keep the WITH
    if with_clause.distinct and not _determined_by(match.patterns, kept):
        return None
    where = match.where
    if with_clause.where is not None:
        where = (
            with_clause.where
            if where is None
            else ast.BinaryOp(
                "AND", where, with_clause.where, line=with_clause.where.line, column=with_clause.where.column
            )
        )
    # variables the WITH dropped must not be used later (Cypher would reject that query)
    if (pattern_vars - kept) & later:
        return None
    return MergedMatch(
        match.patterns, where, match.optional, line=match.line, column=match.column, groups=pattern_groups(match)
    )


def _determined_by(patterns, kept: set[str]) -> bool:
    """True when every pattern element not in ``kept`` is fixed by the kept ones in the store's model."""
    known = set(kept)
    elements = []
    for pattern in patterns:
        if pattern.variable and pattern.variable not in kept:
            return False
        parts = pattern.elements
        for i in range(1, len(parts), 2):
            elements.append((parts[i - 1], parts[i], parts[i + 1]))
    nodes = {id(e): e for p in patterns for e in p.elements if isinstance(e, ast.NodePattern)}

    def key(element):
        return element.variable or id(element)

    changed = True
    while changed:
        changed = False
        for left, rel, right in elements:
            for a, b in ((left, right), (right, left)):
                # a SynapseSet is fixed by the body it is Contained in or Contains
                if (
                    key(b) not in known
                    and "SynapseSet" in b.labels
                    and key(a) in known
                    and rel.types in (("Contains",), ())
                ):
                    known.add(key(b))
                    changed = True
            if key(rel) not in known and key(left) in known and key(right) in known:
                known.add(key(rel))
                changed = True
    everything = {key(e) for _, e in nodes.items()} | {key(r) for _, r, _ in elements}
    return everything <= known


def with_variable(node: ast.NodePattern, name: str) -> ast.NodePattern:
    if node.variable == name:
        return node
    return ast.NodePattern(name, node.labels, node.properties, line=node.line, column=node.column)


def and_all(terms):
    if not terms:
        return None
    result = terms[0]
    for term in terms[1:]:
        result = ast.BinaryOp("AND", result, term, line=term.line, column=term.column)
    return result


def rewrite_path_ends(where, path_name, source_name, target_name, direction):
    """head(nodes(p)) -> source, last(nodes(p)) -> target (the end points of the pattern)."""
    if where is None or path_name is None:
        return where
    if not any(isinstance(n, ast.FunctionCall) and n.lower_name in ("head", "last") for n in where.walk()):
        return where  # nothing to rewrite: no copy of the tree (a walk costs a fraction of one)
    first, last = (source_name, target_name) if direction != ast.Direction.INCOMING else (target_name, source_name)

    def rewrite(node):
        if isinstance(node, ast.FunctionCall) and node.lower_name in ("head", "last") and len(node.arguments) == 1:
            arg = node.arguments[0]
            if (
                isinstance(arg, ast.FunctionCall)
                and arg.lower_name == "nodes"
                and len(arg.arguments) == 1
                and isinstance(arg.arguments[0], ast.Variable)
                and arg.arguments[0].name == path_name
            ):
                name = first if node.lower_name == "head" else last
                return ast.Variable(name, line=node.line, column=node.column)
        if isinstance(node, ast.Node):
            changes = {}
            for f in node.__dataclass_fields__:
                if f in ("line", "column"):
                    continue
                value = getattr(node, f)
                new = _rewrite_value(value, rewrite)
                if new is not value:
                    changes[f] = new
            if changes:
                return dataclasses.replace(node, **changes)
        return node

    return rewrite(where)


def _rewrite_value(value, rewrite):
    if isinstance(value, ast.Node):
        return rewrite(value)
    if isinstance(value, tuple):
        new = tuple(_rewrite_value(v, rewrite) for v in value)
        return value if all(a is b for a, b in zip(new, value)) else new
    return value
