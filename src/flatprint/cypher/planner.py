"""Planning a MATCH: pattern variables -> table aliases and join conditions -> one SQL query.

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
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from flatprint.cypher import ast
from flatprint.cypher.errors import unsupported
from flatprint.cypher.registry import contains_aggregate
from flatprint.cypher.schema import (
    CONNECTS,
    CONTAINS,
    EMPTY,
    META,
    REL_TYPES,
    SEGMENT,
    SYNAPSE,
    SYNAPSES_TO,
    SYNSET,
    GraphModel,
)
from flatprint.cypher.sqlgen import SqlScope, compile_predicate, compile_value, conjuncts, in_sql, variables_in
from flatprint.store.sql import id_ranges_sql, quote_ident

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
    sql: str | None  # None: the pattern cannot match anything
    nodes: dict[str, NodeVar] = field(default_factory=dict)
    rels: dict[str, RelVar] = field(default_factory=dict)
    columns: list[tuple[str, str, str]] = field(default_factory=list)  # (output name, variable, what)
    residual: list[ast.Expression] = field(default_factory=list)
    uses_bound: bool = False
    bound_columns: list[str] = field(default_factory=list)
    path_bindings: list[tuple[str, list[str]]] = field(default_factory=list)  # path var -> element vars
    null_props: dict[str, list[str]] = field(default_factory=dict)  # variable -> properties known null
    scope: SqlScope | None = None  # for compiling projections onto the match
    from_where: str = ""  # the SQL after SELECT ... (FROM and WHERE)
    # (SQL listing candidate bodies, columns they filter): see :func:`narrow_partner_bodies`
    partner_bodies: list[tuple[str, list[str]]] = field(default_factory=list)
    # (SQL true when every fixed body is a neuron, ConnectsTo variable): see :func:`narrow_to_neurons`
    neuron_checks: list[tuple[str, str]] = field(default_factory=list)
    partner_sql_of: dict[str, str] = field(default_factory=dict)  # relationship -> its partner-body SQL


def pattern_variables(patterns) -> list[str]:
    names = []
    for pattern in patterns:
        for element in pattern.elements:
            if element.variable and element.variable not in names:
                names.append(element.variable)
    return names


def rel_kind(rel: ast.RelPattern, start_kind, end_kind) -> str:
    """The relationship type of a pattern edge (inferred from its ends when not given)."""
    if len(rel.types) > 1:
        raise unsupported(rel, "relationship type alternatives " + "|".join(rel.types))
    if rel.types:
        name = rel.types[0]
        return name if name in REL_TYPES else EMPTY
    kinds = {start_kind, end_kind}
    if SYNAPSE in kinds and (kinds <= {SYNAPSE, None}):
        return SYNAPSES_TO
    if SYNSET in kinds and (SEGMENT in kinds or SYNAPSE in kinds):
        return CONTAINS
    return CONNECTS


def infer_kinds(patterns, known: dict[str, str], model: GraphModel) -> dict[str, str]:
    """Kind of every node variable: from labels, earlier clauses, then from the edges."""
    kinds: dict[str, str] = {}
    for pattern in patterns:
        for element in pattern.elements:
            if isinstance(element, ast.NodePattern):
                for label in element.labels:
                    kind = model.label_kinds.get(label, EMPTY)
                    previous = kinds.get(element.variable or id(element))
                    kinds[element.variable or id(element)] = kind if previous in (None, kind) else EMPTY
                if element.variable in known and element.variable not in kinds:
                    kinds[element.variable] = known[element.variable]
    for _ in range(3):  # propagate along edges until stable
        for pattern in patterns:
            elements = pattern.elements
            for i in range(1, len(elements), 2):
                rel, a, b = elements[i], elements[i - 1], elements[i + 1]
                if rel.direction == ast.Direction.INCOMING:
                    a, b = b, a
                ka, kb = kinds.get(a.variable or id(a)), kinds.get(b.variable or id(b))
                rtype = rel.types[0] if len(rel.types) == 1 else None
                guess_a = guess_b = None
                if rtype in (CONNECTS, None) and not rel.variable_length:
                    if rtype is None and SYNAPSE in (ka, kb):
                        guess_a = guess_b = SYNAPSE
                    else:
                        guess_a = guess_b = ka or kb
                elif rtype == SYNAPSES_TO:
                    guess_a = guess_b = SYNAPSE
                elif rtype == CONTAINS:
                    guess_a = SYNSET if kb == SYNAPSE else (SEGMENT if kb == SYNSET else None)
                    guess_b = SYNSET if ka == SEGMENT else (SYNAPSE if ka == SYNSET else None)
                if ka is None and guess_a:
                    kinds[a.variable or id(a)] = guess_a
                if kb is None and guess_b:
                    kinds[b.variable or id(b)] = guess_b
    return kinds


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
    plan = MatchPlan(sql=None)

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
    from_items: list[str] = []
    uses_bound = any(v.bound for v in nodes.values())
    referenced = set(also_reads)  # variables of earlier clauses the SQL may need as columns
    for expr in conjuncts(where) + inline_predicates:
        referenced |= variables_in(expr)
    bound_used = sorted(n for n in referenced if n in bound_values and n not in nodes)
    uses_bound = uses_bound or bool(bound_used)
    if uses_bound:
        from_items.append("bound b")
    alias_counter = itertools.count()

    def new_alias(prefix: str) -> str:
        return f"{prefix}{next(alias_counter)}"

    for var in nodes.values():
        if var.bound:
            var.id_sql = f"b.{quote_ident(var.name)}"
        if var.kind == SEGMENT:
            var.alias = new_alias("n")
            from_items.append(f"{'neurons' if var.neuron and model.neuron_tables else 'segments'} {var.alias}")
            if var.id_sql:
                conditions.append(f"{var.alias}.bodyId = {var.id_sql}")
            var.id_sql = f"{var.alias}.bodyId"
            if var.neuron:
                conditions.append(f"{var.alias}.is_neuron")
        elif var.kind == SYNAPSE:
            var.alias = new_alias("s")
            from_items.append(f"synapses {var.alias}")
            if var.id_sql:
                conditions.append(f"{var.alias}.syn_id = {var.id_sql}")
            var.id_sql = f"{var.alias}.syn_id"
        elif var.kind == META:
            var.alias = None
            var.id_sql = "0"
    # SynapseSets take the body of a node they are tied to (no table of their own)
    equal_pairs: list[tuple[str, str]] = []

    def body_of(var: NodeVar) -> str | None:
        if var.kind == SEGMENT:
            return var.id_sql
        if var.kind == SYNAPSE:
            return f"{var.alias}.body"
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
            from_items.append(f"(SELECT bodyId FROM segments) {var.alias}")
            var.id_sql = f"{var.alias}.bodyId"

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
            from_items.append(f"{table} {rel.alias}")
            if rel.undirected:
                # both directions as one derived table: each branch keeps its sorted access path; an
                # autapse matches an undirected pattern once (Cypher), so the second branch skips it
                from_items[-1] = (
                    f"(SELECT body_pre AS near, body_post AS far, * FROM {prefix}connections UNION ALL "
                    f"SELECT body_post AS near, body_pre AS far, * FROM {prefix}connections_by_post "
                    f"WHERE body_pre <> body_post) {rel.alias}"
                )
                equal_pairs += [(f"{rel.alias}.near", start.id_sql), (f"{rel.alias}.far", end.id_sql)]
            else:
                equal_pairs += [(f"{rel.alias}.body_pre", start.id_sql), (f"{rel.alias}.body_post", end.id_sql)]
        elif rel.kind == SYNAPSES_TO:
            rel.alias = new_alias("p")
            if rel.undirected:
                # each synapse pair once per direction: the pattern's start is either end of the
                # relationship, whose own direction (pre_id -> post_id) stays as stored
                from_items.append(
                    "(SELECT pre_id AS near, post_id AS far, body_pre AS near_body, body_post AS far_body, * "
                    "FROM partners UNION ALL "
                    "SELECT post_id AS near, pre_id AS far, body_post AS near_body, body_pre AS far_body, * "
                    f"FROM partners) {rel.alias}"
                )
                ends = ("near", "far", "near_body", "far_body")
            else:
                from_items.append(f"partners {rel.alias}")
                ends = ("pre_id", "post_id", "body_pre", "body_post")
            equal_pairs += [
                (f"{rel.alias}.{ends[0]}", start.id_sql),
                (f"{rel.alias}.{ends[1]}", end.id_sql),
                (f"{rel.alias}.{ends[2]}", f"{start.alias}.body"),
                (f"{rel.alias}.{ends[3]}", f"{end.alias}.body"),
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
            conditions.append(
                f"(({r1.alias}.{cols[0]}, {r1.alias}.{cols[1]}) <> ({r2.alias}.{cols[0]}, {r2.alias}.{cols[1]}))"
            )
    for left, right in equal_pairs:
        conditions.append(f"{left} = {right}")

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
            scope.bound_values[name] = (f"b.{quote_ident(name)}", family)
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
        edges, nodes, fixed_bodies, equal_pairs, node_filters, plan.partner_sql_of
    )
    if model.neuron_tables:
        plan.neuron_checks = _neuron_checks(edges, nodes, fixed_bodies)
    for rel in edges:  # a ConnectsTo whose target body alone is fixed reads the copy sorted by target
        table = f"{'neuron_' if rel.neurons else ''}connections"
        if rel.kind == CONNECTS and not rel.undirected and f"{table} {rel.alias}" in from_items:
            fixed = {
                end: any(f"{rel.alias}.body_{end}" in columns for columns, _ in fixed_bodies) for end in ("pre", "post")
            }
            if fixed["post"] and not fixed["pre"]:
                from_items[from_items.index(f"{table} {rel.alias}")] = f"{table}_by_post {rel.alias}"
    plan.bound_columns = sorted({v.name for v in nodes.values() if v.bound} | set(scope.bound_values))
    plan.uses_bound = uses_bound

    # ---- SELECT: keys and the properties the query reads
    select = ["b.__row AS __row"] if uses_bound else []
    for var in nodes.values():
        if var.kind == META:
            continue
        select.append(f"{var.id_sql} AS {quote_ident(var.name)}")
        plan.columns.append((var.name, var.name, "id"))
        if var.kind in (SEGMENT, SYNAPSE):
            for prop in sorted(needed_props):
                rendered = model.node_property_sql(var.kind, var.alias, prop)
                if rendered and rendered[0] != "NULL":
                    out = f"{var.name}.{prop}"
                    select.append(f"{rendered[0]} AS {quote_ident(out)}")
                    plan.columns.append((out, var.name, prop))
                elif rendered:
                    plan.null_props.setdefault(var.name, []).append(prop)
            if var.kind == SEGMENT:
                select.append(f"{var.alias}.is_neuron AS {quote_ident(var.name + '.__is_neuron')}")
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
                select.append(f"{rel.alias}.{col} AS {quote_ident(out)}")
                plan.columns.append((out, rel.name, prop))
        elif rel.kind == SYNAPSES_TO:
            for col, prop in (("pre_id", "__start"), ("post_id", "__end")):
                out = f"{rel.name}.{prop}"
                select.append(f"{rel.alias}.{col} AS {quote_ident(out)}")
                plan.columns.append((out, rel.name, prop))
        else:  # Contains: identified by its ends
            for end, prop in ((rel.start, "__start"), (rel.end, "__end")):
                out = f"{rel.name}.{prop}"
                select.append(f"{nodes[end].id_sql} AS {quote_ident(out)}")
                plan.columns.append((out, rel.name, prop))
    if not select:
        select = ["1 AS __one"]
    from_where = ""
    if from_items:
        from_where += " FROM " + ", ".join(from_items)
    if conditions:
        from_where += " WHERE " + " AND ".join(conditions)
    plan.sql = f"SELECT {', '.join(select)}{from_where}"
    plan.from_where = from_where
    plan.scope = scope
    return plan


def _partner_body_queries(
    edges, nodes, fixed_bodies, equal_pairs, node_filters, sql_of: dict[str, str]
) -> list[tuple[str, list[str]]]:
    """For each directed ConnectsTo/SynapsesTo with one end's body fixed by constants and the other
    not: (SQL of the other end's candidate bodies, columns joined to the other end's body). The
    candidates are the fixed bodies' partners in the connections table that pass the filters on the
    other end's own Segment (``node_filters``: variable -> SQL on its alias); every match's body is
    one of them. ``sql_of`` gets each relationship's query."""
    out = []
    for rel in edges:
        if rel.undirected or rel.kind not in (CONNECTS, SYNAPSES_TO):
            continue
        pre, post = f"{rel.alias}.body_pre", f"{rel.alias}.body_post"
        pre_fixed = next((f for columns, f in fixed_bodies if pre in columns), None)
        post_fixed = next((f for columns, f in fixed_bodies if post in columns), None)
        if (pre_fixed is None) == (post_fixed is None):
            continue
        prefix = "neuron_" if rel.neurons else ""  # both ends neurons: so are both ends' partners
        if post_fixed is not None:
            table, free, free_column = f"{prefix}connections_by_post", pre, "body_pre"
            fixed_sql = post_fixed("q.body_post")
        else:
            table, free, free_column, fixed_sql = f"{prefix}connections", post, "body_post", pre_fixed("q.body_pre")
        joined = _equal_class(free, equal_pairs)
        segment = next((v for v in nodes.values() if v.kind == SEGMENT and not v.bound and v.id_sql in joined), None)
        if segment is None:
            sql = f"SELECT DISTINCT q.{free_column} FROM {table} q WHERE {fixed_sql}"
        else:
            where = " AND ".join(
                [f"q.{free_column} = {segment.id_sql}", fixed_sql]
                + ([f"{segment.alias}.is_neuron"] if segment.neuron else [])
                + node_filters.get(segment.name, [])
            )
            sql = f"SELECT DISTINCT {segment.id_sql} FROM {table} q, segments {segment.alias} WHERE {where}"
        columns = sorted(c for c in joined if not c.startswith("b."))
        sql_of[rel.name] = sql
        if not any(sql == known for known, _ in out):
            out.append((sql, columns))
    return out


def narrow_partner_bodies(plan: MatchPlan, run_sql) -> None:
    """Run the plan's partner-body queries (``run_sql(sql) -> rows``) and add their bodies' id ranges
    as filters to ``plan.sql`` and ``plan.from_where`` (a superset filter: the joins still decide).
    Tables sorted by a body column (synapses, partners, connections) then read only the row groups of
    those bodies, and joins build on their rows only."""
    extra = []
    for sql, columns in plan.partner_bodies:
        bodies = [row[0] for row in run_sql(sql) if row[0] is not None]
        # many scattered ranges cost more to test row by row than they save: merge the closest
        extra += [id_ranges_sql(column, bodies, gap=0, most=MAX_BODY_RANGES) for column in columns]
    if extra and plan.sql is not None:
        condition = " AND ".join(extra)
        joiner = " AND " if " WHERE " in plan.from_where else " WHERE "
        plan.sql += joiner + condition
        plan.from_where += joiner + condition
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
        column = f"{rel.alias}.body_{'post' if other is end else 'pre'}"
        fixed = next((f for columns, f in fixed_bodies if column in columns), None)
        if fixed is None:
            continue
        body = fixed("x.bodyId")
        check = f"SELECT (SELECT count(*) FROM segments x WHERE {body}) = (SELECT count(*) FROM neurons x WHERE {body})"
        out.append((check, rel.name))
    return out


def narrow_to_neurons(plan: MatchPlan, run_sql) -> None:
    """Run the plan's neuron checks (see :func:`_neuron_checks`); where every fixed body is a neuron,
    that ConnectsTo joins neurons at both ends, so it reads the neuron-only copies (~1/30 of the
    rows), its partner-body query too, and its roiInfo comes from ``neuron_connection_rois``."""
    for check, name in plan.neuron_checks:
        if plan.sql is None or not run_sql(check)[0][0]:
            continue
        rel = plan.rels[name]
        rel.neurons = True
        table = re.compile(rf"(?<![\w.])(connections(?:_by_post)?) {re.escape(rel.alias)}\b")
        plan.sql = table.sub(r"neuron_\1 " + rel.alias, plan.sql)
        plan.from_where = table.sub(r"neuron_\1 " + rel.alias, plan.from_where)
        # its partner-body query (the same text from another ConnectsTo means the same bodies)
        own = plan.partner_sql_of.get(name)
        plan.partner_bodies = [
            (_PARTNER_TABLE.sub(r"FROM neuron_\1 q", sql) if sql == own else sql, columns)
            for sql, columns in plan.partner_bodies
        ]
    plan.neuron_checks = []


_PARTNER_TABLE = re.compile(r"FROM (connections(?:_by_post)?) q\b")


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
    for column in classes - {var.id_sql}:
        if kind == "=":
            out.append(f"{column} = {rendered[0]}")
        else:
            out.append(in_sql(column, rendered[0]))
    fixed = None
    if not variables_in(value):  # a constant: the partner-body query can run on its own
        fixed = (classes, lambda column: f"{column} = {rendered[0]}" if kind == "=" else in_sql(column, rendered[0]))
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
