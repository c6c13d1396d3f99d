"""The plan of a whole query: what each clause runs as, and what the query needs from every match.

:func:`needed_properties` lists the properties a match's SQL fetches with it; :func:`row_cap` how
many rows of a MATCH the rest of the query can use (a LIMIT pushed into its SQL).
"""

from __future__ import annotations

from flatprint.cypher import ast
from flatprint.cypher.registry import contains_aggregate


def needed_properties(query: ast.Node) -> set[str]:
    """Every property name the query reads (SQL fetches these with the match)."""
    names = set()
    for node in query.walk():
        if isinstance(node, ast.Property):
            names.add(node.name)
        elif isinstance(node, ast.Index) and isinstance(node.key, ast.Literal) and isinstance(node.key.value, str):
            names.add(node.key.value)
        elif isinstance(node, ast.Call) and node.inner_query is not None:
            names |= needed_properties(node.inner_query)
    return names


def row_cap(clauses, position: int) -> int | None:
    """How many rows of the MATCH at ``position`` the rest of the query can use (None: all)."""
    for clause in clauses[position + 1 :]:
        if not isinstance(clause, (ast.With, ast.Return)):
            return None
        if clause.distinct or clause.order_by or any(contains_aggregate(i.expression) for i in clause.items):
            return None
        if isinstance(clause, ast.With) and clause.where is not None:
            return None
        if clause.limit is not None:
            if not isinstance(clause.limit, ast.Literal) or (
                clause.skip is not None and not isinstance(clause.skip, ast.Literal)
            ):
                return None
            return int(clause.limit.value) + (int(clause.skip.value) if clause.skip is not None else 0)
    return None
