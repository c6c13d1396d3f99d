"""Planning a MATCH: pattern variables -> table aliases and join conditions (sqlgen writes the SQL).

:func:`plan_match` takes the patterns of one MATCH (fixed-length parts only; variable-length
relationships are split off for :mod:`flatprint.cypher.paths`), the kinds of the variables bound
by earlier clauses and the WHERE predicate. It returns a :class:`MatchPlan` whose ``sql`` selects
one row per match: the key of every node and relationship variable plus the properties the
query reads, and which ``residual`` predicates are left to the Python evaluator.

Joins follow the store's layout: a ConnectsTo reads ``connections`` (sorted by body_pre) unless
only its target side is constrained, then ``connections_by_post``; a SynapseSet is not a table
but the body its Contains edges point at; equalities on ``bodyId`` are copied to every column
joined to it, so that DuckDB's zone maps prune each table. When a ConnectsTo or SynapsesTo has one
end's body fixed that way and the other not (fetch_synapse_connections' batches: ``m.bodyId = X``,
``n.type = 'T'``), the other end's bodies are the fixed body's partners in ``connections``:
:func:`narrow_partner_bodies` reads them first and filters every column joined to that end by their
id ranges, so the synapses and partners of the other side are read by range, not scanned.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from flatprint.cypher import ast
from flatprint.cypher.errors import unsupported
from flatprint.cypher.kinds import (
    CONNECTS,
    CONTAINS,
    EMPTY,
    META,
    SEGMENT,
    SYNAPSE,
    SYNAPSES_TO,
    SYNSET,
    infer_kinds,
    rel_kind,
)
from flatprint.cypher.schema import GraphModel
from flatprint.cypher.sqlgen import (
    FromItem,
    PartnerBodies,
    SqlScope,
    all_neurons_check_sql,
    body_ranges,
    bound_column,
    column,
    compile_predicate,
    compile_value,
    conjuncts,
    equals,
    from_where_sql,
    in_sql,
    is_bound_column,
    match_statement,
    node_property_sql,
    partner_bodies_sql,
    rows_differ,
    variables_in,
)

_anon = itertools.count()


@dataclass
class NodeVar:
    name: str
    kind: str | None
    neuron: bool = False
    bound: bool = False  # bound by an earlier clause (a column of the bound table)
    alias: str | None = None  # table alias in the SQL
    id_sql: str | None = None  # SQL of the key
    pattern: ast.NodePattern | None = None


@dataclass
class RelVar:
    name: str
    kind: str
    start: str
    end: str
    undirected: bool = False
    alias: str | None = None
    pattern: ast.RelPattern | None = None
    neurons: bool = False  # a ConnectsTo between two :Neuron nodes, read from the neuron-only tables


@dataclass
class MatchPlan:
    """A planned MATCH; sqlgen renders :attr:`sql` from its FROM items, conditions and columns."""

    matches_nothing: bool = True  # until planned to the end: the pattern cannot match anything
    nodes: dict[str, NodeVar] = field(default_factory=dict)
    rels: dict[str, RelVar] = field(default_factory=dict)
    columns: list[tuple[str, str, str]] = field(default_factory=list)  # (output name, variable, what)
    residual: list[ast.Expression] = field(default_factory=list)
    uses_bound: bool = False
    bound_columns: list[str] = field(default_factory=list)
    path_bindings: list[tuple[str, list[str]]] = field(default_factory=list)  # path var -> element vars
    null_props: dict[str, list[str]] = field(default_factory=dict)  # variable -> properties known null
    scope: SqlScope | None = None  # for compiling projections onto the match
    from_items: list[FromItem] = field(default_factory=list)
    conditions: list[str] = field(default_factory=list)  # SQL, all true for a match
    select: list[tuple[str, str]] = field(default_factory=list)  # (SQL, column name) besides __row
    # (candidate bodies, columns they filter): see :func:`narrow_partner_bodies`
    partner_bodies: list[tuple[PartnerBodies, list[str]]] = field(default_factory=list)
    # (SQL true when every fixed body is a neuron, ConnectsTo variable): see :func:`narrow_to_neurons`
    neuron_checks: list[tuple[str, str]] = field(default_factory=list)
    partner_query_of: dict[str, PartnerBodies] = field(default_factory=dict)  # relationship -> its query

    @property
    def from_where(self) -> str:
        """The SQL after ``SELECT ...``: FROM and WHERE."""
        return from_where_sql(self.from_items, self.conditions)

    @property
    def sql(self) -> str | None:
        """The statement selecting one row per match; None when nothing can match."""
        if self.matches_nothing:
            return None
        return match_statement(self.select, self.from_where, self.uses_bound)


def plan_match(
    match_patterns,
    where: ast.Expression | None,
    model: GraphModel,
    *,
    bound_kinds: dict[str, str],
    bound_values: dict[str, str | None],
    params: dict,
    needed_props: set[str],
    extra_conditions: list[ast.Expression] = (),
    pattern_groups: tuple[int, ...] | None = None,
    also_reads: set[str] = frozenset(),
) -> MatchPlan:
    """Plan fixed-length patterns (see module docstring). ``bound_kinds``: node variables bound
    earlier -> kind; ``bound_values``: other earlier variables -> type family if scalar, else None;
    ``pattern_groups``: for patterns merged from several MATCH clauses, the clause of each pattern
    (relationship uniqueness holds only within one clause)."""
    kinds = infer_kinds(match_patterns, bound_kinds, model)
    nodes: dict[str, NodeVar] = {}
    rels: dict[str, RelVar] = {}
    edges: list[RelVar] = []
    conditions: list[str] = []
    inline_predicates: list[ast.Expression] = list(extra_conditions)
    plan = MatchPlan()

    def node_var(element: ast.NodePattern) -> NodeVar:
        name = element.variable or f"_n{next(_anon)}"
        kind = kinds.get(element.variable or id(element)) or SEGMENT
        var = nodes.get(name)
        if var is None:
            var = nodes[name] = NodeVar(name, kind, bound=name in bound_kinds, pattern=element)
        elif var.kind != kind:
            var.kind = EMPTY
        if any(label.endswith("Neuron") for label in element.labels):
            var.neuron = True
        inline_equalities(element, name, "node")
        return var

    def inline_equalities(element, name: str, what: str) -> None:
        """``(n {k: v})`` / ``[r {k: v}]`` as the predicates ``n.k = v``."""
        if element.properties is None:
            return
        if not isinstance(element.properties, ast.MapLiteral):
            raise unsupported(element.properties, f"{what} properties given as a parameter map")
        for key, value in element.properties.entries:
            inline_predicates.append(
                ast.Comparison(
                    (ast.Property(ast.Variable(name), key), value), ("=",), line=element.line, column=element.column
                )
            )

    group_of_rel: dict[str, int] = {}
    for pattern_index, pattern in enumerate(match_patterns):
        names = []
        previous = node_var(pattern.elements[0])
        names.append(previous.name)
        for i in range(1, len(pattern.elements), 2):
            rel_pattern, node_pattern = pattern.elements[i], pattern.elements[i + 1]
            if rel_pattern.variable_length:
                raise unsupported(rel_pattern, "variable-length relationship in this position")
            following = node_var(node_pattern)
            start, end = previous, following
            if rel_pattern.direction == ast.Direction.INCOMING:
                start, end = end, start
            kind = rel_kind(rel_pattern, start.kind, end.kind)
            name = rel_pattern.variable or f"_r{next(_anon)}"
            if name in rels or name in bound_kinds or name in bound_values:
                raise unsupported(rel_pattern, f"relationship variable `{name}` bound twice")
            rel = RelVar(
                name,
                kind,
                start.name,
                end.name,
                undirected=rel_pattern.direction == ast.Direction.UNDIRECTED,
                pattern=rel_pattern,
            )
            if rel.undirected and kind not in (CONNECTS, SYNAPSES_TO):
                raise unsupported(rel_pattern, f"undirected :{kind}")
            rels[name] = rel
            edges.append(rel)
            group_of_rel[name] = pattern_groups[pattern_index] if pattern_groups else 0
            inline_equalities(rel_pattern, name, "relationship")
            names += [name, following.name]
            previous = following
        if pattern.variable:
            plan.path_bindings.append((pattern.variable, names))

    plan.nodes, plan.rels = nodes, rels
    if any(v.kind == EMPTY for v in nodes.values()) or any(r.kind in (EMPTY, "CloseTo") for r in rels.values()):
        return plan  # mitochondria and unknown labels/types: nothing matches

    # ---- validate edge endpoints
    for rel in edges:
        ks, ke = nodes[rel.start].kind, nodes[rel.end].kind
        ok = {
            CONNECTS: (ks, ke) in ((SEGMENT, SEGMENT), (SYNSET, SYNSET)),
            SYNAPSES_TO: (ks, ke) == (SYNAPSE, SYNAPSE),
            CONTAINS: (ks, ke) in ((SEGMENT, SYNSET), (SYNSET, SYNAPSE), (SEGMENT, SYNAPSE)),
        }[rel.kind]
        if not ok:
            return plan  # e.g. (:Synapse)-[:ConnectsTo]->(): no such relationships

    # ---- FROM items: one alias per node variable with a table, bound table for earlier rows
    from_items: list[FromItem] = plan.from_items
    uses_bound = any(v.bound for v in nodes.values())
    referenced = set(also_reads)  # variables of earlier clauses the SQL may need as columns
    for expr in conjuncts(where) + inline_predicates:
        referenced |= variables_in(expr)
    bound_used = sorted(n for n in referenced if n in bound_values and n not in nodes)
    uses_bound = uses_bound or bool(bound_used)
    if uses_bound:
        from_items.append(FromItem("bound", "b", "bound"))
    alias_counter = itertools.count()

    def new_alias(prefix: str) -> str:
        return f"{prefix}{next(alias_counter)}"

    for var in nodes.values():
        if var.bound:
            var.id_sql = bound_column(var.name)
        if var.kind == SEGMENT:
            var.alias = new_alias("n")
            from_items.append(FromItem("neurons" if var.neuron and model.neuron_tables else "segments", var.alias))
            if var.id_sql:
                conditions.append(equals(column(var.alias, "bodyId"), var.id_sql))
            var.id_sql = column(var.alias, "bodyId")
            if var.neuron:
                conditions.append(column(var.alias, "is_neuron"))
        elif var.kind == SYNAPSE:
            var.alias = new_alias("s")
            from_items.append(FromItem("synapses", var.alias))
            if var.id_sql:
                conditions.append(equals(column(var.alias, "syn_id"), var.id_sql))
            var.id_sql = column(var.alias, "syn_id")
        elif var.kind == META:
            var.alias = None
            var.id_sql = "0"
    # SynapseSets take the body of a node they are tied to (no table of their own)
    equal_pairs: list[tuple[str, str]] = []

    def body_of(var: NodeVar) -> str | None:
        if var.kind == SEGMENT:
            return var.id_sql
        if var.kind == SYNAPSE:
            return column(var.alias, "body")
        return var.id_sql

    for _ in range(3):
        for rel in edges:
            if rel.kind != CONTAINS:
                continue
            start, end = nodes[rel.start], nodes[rel.end]
            if end.kind == SYNSET and end.id_sql is None and body_of(start):
                end.id_sql = body_of(start)
            if start.kind == SYNSET and start.id_sql is None and body_of(end):
                start.id_sql = body_of(end)
    for var in nodes.values():
        if var.kind == SYNSET and var.id_sql is None:
            var.alias = new_alias("ss")
            from_items.append(FromItem("segments", var.alias, "body_ids"))
            var.id_sql = column(var.alias, "bodyId")

    # ---- edges
    constrained = {name for name in referenced if name in nodes} | {v.name for v in nodes.values() if v.bound}
    for rel in edges:
        start, end = nodes[rel.start], nodes[rel.end]
        if rel.kind == CONNECTS:
            # between two :Neuron nodes only neuron rows can join: their copy is ~1/30 of the rows
            rel.neurons = start.neuron and end.neuron and model.neuron_tables
            prefix = "neuron_" if rel.neurons else ""
            table = f"{prefix}connections"
            if end.name in constrained and start.name not in constrained:
                table = f"{prefix}connections_by_post"
            rel.alias = new_alias("c")
            if rel.undirected:  # both directions, each through the copy sorted its way
                from_items.append(FromItem(f"{prefix}connections", rel.alias, "both_directions"))
                ends = ("near", "far")
            else:
                from_items.append(FromItem(table, rel.alias))
                ends = ("body_pre", "body_post")
            equal_pairs += [(column(rel.alias, ends[0]), start.id_sql), (column(rel.alias, ends[1]), end.id_sql)]
        elif rel.kind == SYNAPSES_TO:
            rel.alias = new_alias("p")
            if rel.undirected:  # each synapse pair once per direction
                from_items.append(FromItem("partners", rel.alias, "both_directions"))
                ends = ("near", "far", "near_body", "far_body")
            else:
                from_items.append(FromItem("partners", rel.alias))
                ends = ("pre_id", "post_id", "body_pre", "body_post")
            equal_pairs += [
                (column(rel.alias, ends[0]), start.id_sql),
                (column(rel.alias, ends[1]), end.id_sql),
                (column(rel.alias, ends[2]), column(start.alias, "body")),
                (column(rel.alias, ends[3]), column(end.alias, "body")),
            ]
        elif rel.kind == CONTAINS:
            a, b = body_of(start), body_of(end)
            if a != b:
                equal_pairs.append((a, b))
    # relationship uniqueness within one MATCH
    for r1, r2 in itertools.combinations([r for r in edges if r.kind in (CONNECTS, SYNAPSES_TO)], 2):
        if (
            r1.kind == r2.kind
            and nodes[r1.start].kind == nodes[r2.start].kind
            and group_of_rel[r1.name] == group_of_rel[r2.name]
        ):
            cols = ("body_pre", "body_post") if r1.kind == CONNECTS else ("pre_id", "post_id")
            conditions.append(rows_differ(r1.alias, r2.alias, cols))
    for left, right in equal_pairs:
        conditions.append(equals(left, right))

    # ---- WHERE: push what SQL can say, keep the rest for Python
    scope = SqlScope(model, params=params)
    for var in nodes.values():
        scope.nodes[var.name] = (var.kind, var.alias, var.id_sql)
    for rel in rels.values():
        scope.rels[rel.name] = (rel.kind, rel.alias)
    for name in bound_used:
        family = bound_values.get(name)
        if name in also_reads and not family:
            continue
        if family:
            scope.bound_values[name] = (bound_column(name), family)
    pushed: list[str] = []
    node_filters: dict[str, list[str]] = {}  # variable -> pushed predicates on it alone
    fixed_bodies: list[tuple[set[str], Callable]] = []  # (joined columns, column -> SQL filter) of key filters
    for expr in conjuncts(where) + inline_predicates:
        names = variables_in(expr)
        sql = None
        if names <= set(nodes) | set(rels) | set(scope.bound_values):
            sql = compile_predicate(expr, scope)
        if sql is None:
            plan.residual.append(expr)
        else:
            pushed.append(sql)
            if len(names) == 1:
                node_filters.setdefault(next(iter(names)), []).append(sql)
            propagated, fixed = _propagate_key_filter(expr, scope, nodes, equal_pairs)
            conditions.extend(propagated)
            if fixed is not None:
                fixed_bodies.append(fixed)
    conditions += pushed
    plan.partner_bodies = _partner_body_queries(
        edges, nodes, fixed_bodies, equal_pairs, node_filters, plan.partner_query_of
    )
    if model.neuron_tables:
        plan.neuron_checks = _neuron_checks(edges, nodes, fixed_bodies)
    for rel in edges:  # a ConnectsTo whose target body alone is fixed reads the copy sorted by target
        table = f"{'neuron_' if rel.neurons else ''}connections"
        item = _table_item(from_items, rel.alias)
        if rel.kind == CONNECTS and not rel.undirected and item is not None and item.table == table:
            fixed = {
                end: any(column(rel.alias, f"body_{end}") in columns for columns, _ in fixed_bodies)
                for end in ("pre", "post")
            }
            if fixed["post"] and not fixed["pre"]:
                item.table = f"{table}_by_post"
    plan.bound_columns = sorted({v.name for v in nodes.values() if v.bound} | set(scope.bound_values))
    plan.uses_bound = uses_bound

    # ---- SELECT: keys and the properties the query reads
    select = plan.select
    for var in nodes.values():
        if var.kind == META:
            continue
        select.append((var.id_sql, var.name))
        plan.columns.append((var.name, var.name, "id"))
        if var.kind in (SEGMENT, SYNAPSE):
            for prop in sorted(needed_props):
                rendered = node_property_sql(model, var.kind, var.alias, prop)
                if rendered and rendered[0] != "NULL":
                    out = f"{var.name}.{prop}"
                    select.append((rendered[0], out))
                    plan.columns.append((out, var.name, prop))
                elif rendered:
                    plan.null_props.setdefault(var.name, []).append(prop)
            if var.kind == SEGMENT:
                select.append((column(var.alias, "is_neuron"), var.name + ".__is_neuron"))
                plan.columns.append((var.name + ".__is_neuron", var.name, "__is_neuron"))
    for rel in rels.values():
        if rel.kind == CONNECTS:
            for col, prop in (
                ("body_pre", "__start"),
                ("body_post", "__end"),
                ("weight", "weight"),
                ("weight_hp", "weightHP"),
            ):
                out = f"{rel.name}.{prop}"
                select.append((column(rel.alias, col), out))
                plan.columns.append((out, rel.name, prop))
        elif rel.kind == SYNAPSES_TO:
            for col, prop in (("pre_id", "__start"), ("post_id", "__end")):
                out = f"{rel.name}.{prop}"
                select.append((column(rel.alias, col), out))
                plan.columns.append((out, rel.name, prop))
        else:  # Contains: identified by its ends
            for end, prop in ((rel.start, "__start"), (rel.end, "__end")):
                out = f"{rel.name}.{prop}"
                select.append((nodes[end].id_sql, out))
                plan.columns.append((out, rel.name, prop))
    plan.conditions = conditions
    plan.scope = scope
    plan.matches_nothing = False
    return plan


def _table_item(items: list[FromItem], alias: str) -> FromItem | None:
    """The plain table FROM item of ``alias``, if it is one."""
    return next((item for item in items if item.alias == alias and item.form == "table"), None)


def _partner_body_queries(
    edges, nodes, fixed_bodies, equal_pairs, node_filters, query_of: dict[str, PartnerBodies]
) -> list[tuple[PartnerBodies, list[str]]]:
    """For each directed ConnectsTo/SynapsesTo with one end's body fixed by constants and the other
    not: (SQL of the other end's candidate bodies, columns joined to the other end's body). The
    candidates are the fixed bodies' partners in the connections table that pass the filters on the
    other end's own Segment (``node_filters``: variable -> SQL on its alias); every match's body is
    one of them. ``query_of`` gets each relationship's query."""
    out = []
    for rel in edges:
        if rel.undirected or rel.kind not in (CONNECTS, SYNAPSES_TO):
            continue
        pre, post = column(rel.alias, "body_pre"), column(rel.alias, "body_post")
        pre_fixed = next((f for columns, f in fixed_bodies if pre in columns), None)
        post_fixed = next((f for columns, f in fixed_bodies if post in columns), None)
        if (pre_fixed is None) == (post_fixed is None):
            continue
        prefix = "neuron_" if rel.neurons else ""  # both ends neurons: so are both ends' partners
        if post_fixed is not None:
            table, free, free_column = f"{prefix}connections_by_post", pre, "body_pre"
            fixed_sql = post_fixed(column("q", "body_post"))
        else:
            table, free, free_column = f"{prefix}connections", post, "body_post"
            fixed_sql = pre_fixed(column("q", "body_pre"))
        joined = _equal_class(free, equal_pairs)
        segment = next((v for v in nodes.values() if v.kind == SEGMENT and not v.bound and v.id_sql in joined), None)
        if segment is None:
            query = PartnerBodies(table, free_column, fixed_sql)
        else:
            filters = [column(segment.alias, "is_neuron")] if segment.neuron else []
            filters += node_filters.get(segment.name, [])
            query = PartnerBodies(table, free_column, fixed_sql, segment.id_sql, segment.alias, tuple(filters))
        columns = sorted(c for c in joined if not is_bound_column(c))
        query_of[rel.name] = query
        if not any(query == known for known, _ in out):
            out.append((query, columns))
    return out


def narrow_partner_bodies(plan: MatchPlan, run_sql) -> None:
    """Run the plan's partner-body queries (``run_sql(sql) -> rows``) and add their bodies' id ranges
    as conditions of the plan (a superset filter: the joins still decide).
    Tables sorted by a body column (synapses, partners, connections) then read only the row groups of
    those bodies, and joins build on their rows only."""
    extra = []
    for query, columns in plan.partner_bodies:
        bodies = [row[0] for row in run_sql(partner_bodies_sql(query)) if row[0] is not None]
        # many scattered ranges cost more to test row by row than they save: merge the closest
        extra += [body_ranges(joined, bodies, MAX_BODY_RANGES) for joined in columns]
    if not plan.matches_nothing:
        plan.conditions += extra
    plan.partner_bodies = []


MAX_BODY_RANGES = 32


def _neuron_checks(edges, nodes, fixed_bodies) -> list[tuple[str, str]]:
    """For each directed ConnectsTo read from the full tables with one end :Neuron and the other end's
    body fixed by constants (fetch_adjacencies' ``(n:Segment)-[e:ConnectsTo]->(m:Neuron)`` with a
    bodyId list): (SQL that is true when every fixed body that exists is a neuron, the variable)."""
    out = []
    for rel in edges:
        if rel.kind != CONNECTS or rel.undirected or rel.neurons:
            continue
        start, end = nodes[rel.start], nodes[rel.end]
        if start.neuron == end.neuron:
            continue
        other = end if start.neuron else start
        if other.kind != SEGMENT or other.bound:
            continue
        fixed_column = column(rel.alias, f"body_{'post' if other is end else 'pre'}")
        fixed = next((f for columns, f in fixed_bodies if fixed_column in columns), None)
        if fixed is None:
            continue
        out.append((all_neurons_check_sql(fixed), rel.name))
    return out


def narrow_to_neurons(plan: MatchPlan, run_sql) -> None:
    """Run the plan's neuron checks (see :func:`_neuron_checks`); where every fixed body is a neuron,
    that ConnectsTo joins neurons at both ends, so it reads the neuron-only copies (~1/30 of the
    rows), its partner-body query too, and its roiInfo comes from ``neuron_connection_rois``."""
    for check, name in plan.neuron_checks:
        if plan.matches_nothing or not run_sql(check)[0][0]:
            continue
        rel = plan.rels[name]
        rel.neurons = True
        item = _table_item(plan.from_items, rel.alias)
        if item is not None and item.table in ("connections", "connections_by_post"):
            item.table = "neuron_" + item.table
        # its partner-body query (the same query from another ConnectsTo means the same bodies)
        own = plan.partner_query_of.get(name)
        plan.partner_bodies = [
            (_on_neuron_table(query) if query == own else query, columns) for query, columns in plan.partner_bodies
        ]
    plan.neuron_checks = []


def _on_neuron_table(query: PartnerBodies) -> PartnerBodies:
    if query.table in ("connections", "connections_by_post"):
        return replace(query, table="neuron_" + query.table)
    return query


def _propagate_key_filter(expr, scope: SqlScope, nodes, equal_pairs) -> tuple[list[str], tuple | None]:
    """``n.bodyId = 1`` / ``n.bodyId IN [..]`` also filters every column joined to n's key. Returns
    those filters and, for a constant value, (the joined columns, column -> the same filter on it)
    for :func:`_partner_body_queries`."""
    target = None
    if isinstance(expr, ast.Comparison) and expr.operators == ("=",):
        left, right = expr.operands
        if isinstance(right, ast.Property) and not isinstance(left, ast.Property):
            left, right = right, left
        target, value = left, right
        kind = "="
    elif isinstance(expr, ast.In):
        target, value, kind = expr.element, expr.collection, "in"
    else:
        return [], None
    if not (isinstance(target, ast.Property) and isinstance(target.subject, ast.Variable)):
        return [], None
    var = nodes.get(target.subject.name)
    if var is None or not (var.kind == SEGMENT and target.name == "bodyId"):
        return [], None
    rendered = compile_value(value, scope)
    if rendered is None or rendered[1] not in ("number", "list:number"):
        return [], None
    classes = _equal_class(var.id_sql, equal_pairs)
    out = []
    for joined in classes - {var.id_sql}:
        out.append(equals(joined, rendered[0]) if kind == "=" else in_sql(joined, rendered[0]))
    fixed = None
    if not variables_in(value):  # a constant: the partner-body query can run on its own
        fixed = (classes, lambda joined: equals(joined, rendered[0]) if kind == "=" else in_sql(joined, rendered[0]))
    return out, fixed


def _equal_class(start: str, pairs) -> set[str]:
    members = {start}
    changed = True
    while changed:
        changed = False
        for a, b in pairs:
            if (a in members) != (b in members):
                members |= {a, b}
                changed = True
    return members
