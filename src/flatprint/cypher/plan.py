"""The plan of a whole query: a small tree of the steps the executor (engine.py) walks.

:func:`plan_query` turns each part of a (rewritten) query into steps: :class:`SqlMatch` (a MATCH
as one SQL statement: planner.py, sqlgen), :class:`PathSearch` (variable-length and shortest
paths), :class:`SqlMatchProject` (a MATCH and the WITH/RETURN after it tried as one statement),
:class:`Projection`, :class:`Unwind` and :class:`ProcedureCall`; :class:`NeuronMatchProject`
(neuron lookups and their ConnectsTo relationships from RAM, the SqlMatchProject as fallback) and
:class:`SynapseMatchProject` (fetch_synapse_connections' and fetch_synapses' queries from the synapse
layout, the SqlMatchProject as fallback).
:func:`explain` renders the tree (``flatprint.cypher.engine.plan_tree(text)``). Also
:func:`needed_properties`, the properties a match's SQL fetches with it, and :func:`row_cap`, how
many rows of a MATCH the rest of the query can use (a LIMIT pushed into its SQL).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flatprint.cypher import ast
from flatprint.cypher.neuronplan import NeuronShape, neuron_shape
from flatprint.cypher.registry import contains_aggregate
from flatprint.cypher.rewriter import fold_pass_through_withs, inline_constant_withs, normalize_projections
from flatprint.cypher.synapseplan import SynapseShape, synapse_shape


def needed_properties(query: ast.Node) -> frozenset[str]:
    """Every property name the query reads (SQL fetches these with the match). Kept on the tree, as
    plan_query keeps plans: the plan cache hands the same tree back for a text sent again, and the
    walk (~0.2 ms for neuprint-python's shortest-path query) was a fifth of that query's engine time."""
    names = query.__dict__.get("_needed_properties")
    if names is None:
        names = query.__dict__["_needed_properties"] = frozenset(_needed_properties(query))
    return names


def _needed_properties(query: ast.Node) -> set[str]:
    names = set()
    for node in _walk_but_literal_lists(query):
        if isinstance(node, ast.Property):
            names.add(node.name)
        elif isinstance(node, ast.Index) and isinstance(node.key, ast.Literal) and isinstance(node.key.value, str):
            names.add(node.key.value)
        elif isinstance(node, ast.Call) and node.inner_query is not None:
            names |= needed_properties(node.inner_query)
    return names


def _walk_but_literal_lists(root: ast.Node):
    """``root.walk()`` without the items of lists of literals only (no property is read there; a
    plan cache hit's id list has no Literal nodes until they are read: ast.ListLiteral.of_values)."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        if type(node) is ast.ListLiteral and node.literal_values() is not None:
            continue
        stack.extend(reversed(list(node.children())))


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


# ---- the plan tree ------------------------------------------------------------------------------


@dataclass
class SqlMatch:
    """A MATCH of fixed-length patterns: one planned SQL statement (planner.plan_match, sqlgen)."""

    clause: ast.Match
    row_cap: int | None = None  # rows the rest of the query can use (a LIMIT for its SQL)


@dataclass
class PathSearch:
    """A MATCH with a variable-length or shortest-path pattern: its end points by SQL, then the
    connection graph's search (paths.py)."""

    clause: ast.Match


@dataclass
class Projection:
    """WITH or RETURN (projection, grouping, DISTINCT, ORDER BY, SKIP, LIMIT) over the rows."""

    clause: ast.With | ast.Return


@dataclass
class Unwind:
    clause: ast.Unwind


@dataclass
class ProcedureCall:
    """CALL of a registry procedure; its rows are the answer when it ends the query."""

    clause: ast.Call
    last: bool = False


@dataclass
class SqlMatchProject:
    """MATCH + WITH/RETURN tried as one SQL statement (GROUP BY, ORDER BY, LIMIT in SQL: pushdown.py);
    when an item does not render in SQL, ``match`` then ``projection`` run instead."""

    match: SqlMatch
    projection: Projection


@dataclass
class NeuronMatchProject:
    """MATCH + RETURN of :Neuron nodes or the ConnectsTo relationships between them answered from the
    neuron table / graph in RAM when they are built (neuronplan.py, neuronanswers.py); else ``sql``."""

    shape: NeuronShape
    sql: SqlMatchProject


@dataclass
class SynapseMatchProject:
    """MATCH + RETURN of fetch_synapse_connections' or fetch_synapses' shape answered from ``partners``
    and ``synapses`` read by body and id (synapseplan.py, synapseanswers.py); else ``sql``."""

    shape: SynapseShape
    sql: SqlMatchProject


Step = (
    SqlMatch
    | PathSearch
    | Projection
    | Unwind
    | ProcedureCall
    | SqlMatchProject
    | NeuronMatchProject
    | SynapseMatchProject
)


@dataclass
class PartPlan:
    """The steps of one part of a UNION (or of the whole query), in order."""

    steps: list[Step] = field(default_factory=list)


@dataclass
class QueryPlan:
    parts: list[PartPlan]
    union_all: bool = False


def plan_part(part: ast.SingleQuery) -> PartPlan:
    """The steps of one query part, after the rewrites that keep its answer (rewriter.py)."""
    clauses = fold_pass_through_withs(inline_constant_withs(normalize_projections(part.clauses)))
    steps: list[Step] = []
    position = 0
    while position < len(clauses):
        clause = clauses[position]
        if isinstance(clause, ast.Match):
            following = clauses[position + 1] if position + 1 < len(clauses) else None
            if _has_path_search(clause):
                steps.append(PathSearch(clause))
            else:
                match = SqlMatch(clause, row_cap(clauses, position))
                if isinstance(following, (ast.With, ast.Return)) and not (following.star or clause.optional):
                    fused = SqlMatchProject(match, Projection(following))
                    shape = neuron_shape(clause, following)
                    if shape is not None:
                        steps.append(NeuronMatchProject(shape, fused))
                    else:
                        synapses = synapse_shape(clause, following)
                        steps.append(fused if synapses is None else SynapseMatchProject(synapses, fused))
                    position += 2
                    continue
                steps.append(match)
        elif isinstance(clause, ast.Unwind):
            steps.append(Unwind(clause))
        elif isinstance(clause, (ast.With, ast.Return)):
            steps.append(Projection(clause))
        elif isinstance(clause, ast.Call):
            steps.append(ProcedureCall(clause, last=position == len(clauses) - 1))
        position += 1
    return PartPlan(steps)


def plan_query(query: ast.Query) -> QueryPlan:
    """The plan of ``query``, kept on the tree: a tree is never changed and a plan never changes
    while it runs, and the plan cache hands out the same tree again for the same text (its exact-text
    level), so a repeated query (neuprint-python's count checks, its lookups) is not planned anew
    (~0.1-0.4 ms each; the rewrites walk the tree)."""
    plan = query.__dict__.get("_plan")
    if plan is None:
        plan = QueryPlan([plan_part(part) for part in query.parts], query.union_all)
        query.__dict__["_plan"] = plan
    return plan


def _has_path_search(clause: ast.Match) -> bool:
    return any(
        p.shortest or any(isinstance(e, ast.RelPattern) and e.variable_length for e in p.elements)
        for p in clause.patterns
    )


def explain(plan: QueryPlan) -> str:
    """The plan tree as indented lines: one step a line, with the Cypher it runs after a colon."""
    union = len(plan.parts) > 1
    lines = [f"Union{' all' if plan.union_all else ''}"] if union else []
    for part in plan.parts:
        if union:
            lines.append("  Part")
        for step in part.steps:
            lines += _step_lines(step, "    " if union else "")
    return "\n".join(lines)


def _step_lines(step: Step, indent: str) -> list[str]:
    if isinstance(step, NeuronMatchProject):
        return [f"{indent}NeuronMatchProject (in RAM when built; else)", *_step_lines(step.sql, indent + "  ")]
    if isinstance(step, SynapseMatchProject):
        return [f"{indent}SynapseMatchProject (synapse layout; else)", *_step_lines(step.sql, indent + "  ")]
    if isinstance(step, SqlMatchProject):
        inner = indent + "  "
        return [f"{indent}SqlMatchProject", *_step_lines(step.match, inner), *_step_lines(step.projection, inner)]
    detail = f" (first {step.row_cap} rows)" if isinstance(step, SqlMatch) and step.row_cap is not None else ""
    return [f"{indent}{type(step).__name__}{detail}: {step.clause}"]
