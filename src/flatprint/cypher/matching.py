"""Executing MATCH: fixed patterns through one planned SQL query, variable-length and shortest
paths through the path search (paths.py) over the end points that a fixed match found."""

from __future__ import annotations

import pyarrow as pa

from flatprint.cypher import ast
from flatprint.cypher.deadline import CHECK_EVERY
from flatprint.cypher.errors import unsupported
from flatprint.cypher.evaluator import Evaluator, truthy
from flatprint.cypher.kinds import CONNECTS, META, SEGMENT, SYNAPSE
from flatprint.cypher.neuronpaths import neuron_endpoint_rows, neuron_path_search, path_quantifier
from flatprint.cypher.paths import ConnectionGraph, all_shortest_paths, bounded_paths
from flatprint.cypher.planner import narrow_partner_bodies, narrow_to_neurons, plan_match
from flatprint.cypher.rewriter import and_all, pattern_groups, rewrite_path_ends, with_variable
from flatprint.cypher.sqlgen import all_of, conjuncts, path_filter_sql, variables_in, with_limit
from flatprint.cypher.values import NodeRef, Path, Point, RelRef
from flatprint.errors import QueryError


class MatchExecution:
    """The MATCH part of :class:`flatprint.cypher.engine.Execution`."""

    def match(self, clause: ast.Match, rows: list[dict], row_cap: int | None = None) -> list[dict]:
        if not rows:
            return []
        if self.bound_to_null(clause, rows):
            if not clause.optional:
                return []
            names = pattern_variables(clause)
            return [{**row, **{n: None for n in names if n not in row}} for row in rows]
        var_length = [
            p
            for p in clause.patterns
            if p.shortest or any(isinstance(e, ast.RelPattern) and e.variable_length for e in p.elements)
        ]
        if var_length:
            return self.match_paths(clause, var_length[0], rows)
        return self.match_fixed(
            clause.patterns,
            clause.where,
            rows,
            optional=clause.optional,
            row_cap=row_cap,
            groups=pattern_groups(clause),
        )

    @staticmethod
    def bound_to_null(clause: ast.Match, rows: list[dict]) -> bool:
        """A pattern variable is null in every row (an OPTIONAL MATCH found nothing): the pattern
        matches nothing, and the variable, of no known kind, must not be planned as a free node."""
        return any(name in rows[0] and all(r[name] is None for r in rows) for name in pattern_variables(clause))

    def _bound(self, rows: list[dict]) -> tuple[dict[str, str], dict[str, str | None]]:
        """Kinds of node variables and type families of scalar variables bound in ``rows``."""
        kinds: dict[str, str] = {}
        families: dict[str, str | None] = {}
        for name in rows[0]:
            sample = next((r[name] for r in rows if r.get(name) is not None), None)
            if isinstance(sample, NodeRef):
                kinds[name] = sample.kind
            else:
                families[name] = family_of_column([r.get(name) for r in rows])
        return kinds, families

    def match_fixed(self, patterns, where, rows, *, optional: bool, extra=(), row_cap=None, groups=None) -> list[dict]:
        bound_kinds, bound_families = self._bound(rows)
        plan = plan_match(
            patterns,
            where,
            self.model,
            bound_kinds=bound_kinds,
            bound_values=bound_families,
            params=self.params,
            needed_props=self.needed_props,
            extra_conditions=list(extra),
            pattern_groups=groups,
        )
        new_vars = [n for n in list(plan.nodes) + list(plan.rels) if n not in rows[0]]
        if not plan.matches_nothing:
            narrow_to_neurons(plan, self.run_sql)
            narrow_partner_bodies(plan, self.run_sql)
        if plan.matches_nothing:
            results = []
        else:
            tables = {}
            if plan.uses_bound:
                tables["bound"] = self._bound_table(rows, plan.bound_columns, bound_kinds)
            sql = plan.sql
            if row_cap is not None and not plan.residual and not optional and (plan.uses_bound or len(rows) == 1):
                sql = with_limit(sql, row_cap)  # later clauses keep only the first rows
            results = self.run_sql(sql, tables)
        out: list[dict] = []
        column_names = ["__row"] if plan.uses_bound else []
        column_names += [c[0] for c in plan.columns]
        out_index: list[int] = []
        evaluate = Evaluator(self.params)
        base_rows = rows
        for count, result in enumerate(results):
            if count % CHECK_EVERY == 0:
                self.deadline.check()
            values = dict(zip(column_names, result))
            entities = self._entities(plan, values)
            bases = [(values["__row"], base_rows[values["__row"]])] if plan.uses_bound else enumerate(base_rows)
            for index, base in bases:
                row = dict(base)
                for name in new_vars:
                    row[name] = entities.get(name)
                for path_name, names in plan.path_bindings:
                    elements = [row.get(n) for n in names]
                    row[path_name] = Path(elements[0::2], elements[1::2])
                if plan.residual and not all(truthy(evaluate(e, row)) for e in plan.residual):
                    continue
                out_index.append(index)
                out.append(row)
                if len(out) % CHECK_EVERY == 0:  # a cross product makes many rows per result
                    self.deadline.check(CHECK_EVERY)
        if "roiInfo" in self.needed_props:
            self.view.fill_roi_infos([r[n] for r in out for n in new_vars if isinstance(r.get(n), RelRef)])
        if optional:
            by_index: dict[int, list] = {}
            for index, row in zip(out_index, out):
                by_index.setdefault(index, []).append(row)
            extended = []
            for index, base in enumerate(base_rows):
                if index in by_index:
                    extended.extend(by_index[index])
                else:
                    row = dict(base)
                    for name in new_vars:
                        row[name] = None
                    for path_name, _ in plan.path_bindings:
                        row[path_name] = None
                    extended.append(row)
            return extended
        return out

    def _bound_table(self, rows, names, kinds) -> pa.Table:
        columns = {"__row": pa.array(range(len(rows)), type=pa.int64())}
        for name in names:
            values = [r.get(name) for r in rows]
            if name in kinds:
                columns[name] = pa.array([v.id if isinstance(v, NodeRef) else None for v in values], type=pa.int64())
            else:
                try:
                    columns[name] = pa.array(values)
                except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                    raise QueryError(f"cannot use the values of `{name}` in a match ({exc})") from None
        return pa.table(columns)

    def _entities(self, plan, values: dict) -> dict:
        entities: dict = {}
        props: dict[str, dict] = {}
        for out, var, what in plan.columns:
            if what == "id":
                continue
            props.setdefault(var, {})[what] = values[out]
        for name, var in plan.nodes.items():
            if var.kind == META:
                entities[name] = NodeRef(META, 0, dict(self.model.meta), view=self.view, complete=True)
                continue
            key = values.get(name)
            if key is None:
                entities[name] = None
                continue
            node_props = props.get(name, {})
            for prop in plan.null_props.get(name, ()):
                node_props[prop] = None
            if var.kind == SEGMENT:
                node_props = {k: self.model.segment_value(k, v) for k, v in node_props.items()}
            elif var.kind == SYNAPSE and node_props.get("location") is not None:
                node_props["location"] = Point(node_props["location"])
            entities[name] = NodeRef(var.kind, key, node_props, view=self.view)
        for name, rel in plan.rels.items():
            rel_props = props.get(name, {})
            start, end = rel_props.pop("__start", None), rel_props.pop("__end", None)
            complete = rel.kind != CONNECTS
            entities[name] = RelRef(rel.kind, start, end, rel_props, view=self.view, complete=complete)
        return entities

    # -- variable-length and shortest paths

    def match_paths(self, clause: ast.Match, pattern: ast.PathPattern, rows: list[dict]) -> list[dict]:
        source_pattern, rel, target_pattern = pattern.elements
        if rel.direction == ast.Direction.INCOMING:
            source_pattern, target_pattern = target_pattern, source_pattern
        source_name = source_pattern.variable or "__path_source"
        target_name = target_pattern.variable or "__path_target"
        source_pattern = with_variable(source_pattern, source_name)
        target_pattern = with_variable(target_pattern, target_name)
        path_name = pattern.variable
        # head(nodes(p)) / last(nodes(p)) are the end points
        where = rewrite_path_ends(clause.where, path_name, source_name, target_name, rel.direction)
        endpoint_terms, path_terms = [], []
        path_vars = {v for v in (path_name, rel.variable) if v}
        for term in conjuncts(where):
            (path_terms if variables_in(term) & path_vars else endpoint_terms).append(term)
        other = [p for p in clause.patterns if p is not pattern]
        target_free = (
            not target_pattern.labels
            and target_pattern.properties is None
            and target_name not in rows[0]
            and not any(target_name in variables_in(t) for t in endpoint_terms)
            and not any(target_name in {e.variable for e in p.elements} for p in other)
        )
        if pattern.shortest and target_free:
            raise unsupported(pattern, f"{pattern.shortest} without a constrained end node")
        endpoint_patterns = other + [ast.PathPattern((source_pattern,))]
        if not target_free:
            endpoint_patterns.append(ast.PathPattern((target_pattern,)))
        endpoint_where = and_all(endpoint_terms)
        endpoint_rows = (
            neuron_endpoint_rows(self, endpoint_patterns, endpoint_where, rows) if pattern.shortest else None
        )
        if endpoint_rows is None:
            endpoint_rows = self.match_fixed(endpoint_patterns, endpoint_where, rows, optional=False)
        graph = None  # the SQL search's, made when a pair needs it (the neuron graph's search needs none)

        def sql_graph() -> ConnectionGraph:
            nonlocal graph
            if graph is None:
                graph = ConnectionGraph(self.run_sql, *self._path_filters(path_terms, path_name), self.deadline.check)
            return graph

        # among neurons only: the neuron graph in RAM answers, no SQL per level (neuronpaths.py)
        among_neurons = neuron_path_search(self, pattern, path_terms) if pattern.shortest else None
        min_hops = 1 if rel.min_hops is None else rel.min_hops
        max_hops = rel.max_hops
        found: dict = {}
        by_source: dict[int, set] = {}
        for row in endpoint_rows:
            source = row.get(source_name)
            if source is None or source.kind != SEGMENT:
                continue
            target = row.get(target_name) if not target_free else None
            if not target_free and (target is None or target.kind != SEGMENT):
                continue
            by_source.setdefault(source.id, set())
            if target is not None:
                by_source[source.id].add(target.id)
        for source_id, targets in sorted(by_source.items()):
            if pattern.shortest:
                for target_id in sorted(targets):
                    paths = None
                    if among_neurons is not None:
                        paths = among_neurons.all_shortest_paths(source_id, target_id, max_hops, self.view)
                    if paths is None:
                        paths = all_shortest_paths(sql_graph(), source_id, target_id, max_hops, self.view)
                    if pattern.shortest == "shortestPath":
                        paths = paths[:1]
                    found[(source_id, target_id)] = paths
            else:
                paths = bounded_paths(
                    sql_graph(), {source_id}, None if target_free else targets, min_hops, max_hops, self.view
                )
                for nodes, rels in paths:
                    found.setdefault((source_id, nodes[-1] if target_free else nodes[-1]), []).append((nodes, rels))
        # one NodeRef per body, loaded in one batch
        node_refs: dict[int, NodeRef] = {}
        for paths in found.values():
            for nodes, _ in paths:
                for body in nodes:
                    if body not in node_refs:
                        node_refs[body] = NodeRef(SEGMENT, body, view=self.view)
        if among_neurons is None or not among_neurons.fill_nodes(node_refs, self.needed_props, self.model, self.cursor):
            self.view.complete_nodes(list(node_refs.values()))
        if "roiInfo" in self.needed_props:
            self.view.complete_rels([r for paths in found.values() for _, rels in paths for r in rels])
        out = []
        evaluate = Evaluator(self.params)
        reverse = rel.direction == ast.Direction.INCOMING
        # the terms the neuron graph's search applied exactly need no second look at its paths
        unsearched = path_terms
        if among_neurons is not None:
            unsearched = [t for t in path_terms if id(t) not in among_neurons.searched]
        for row in endpoint_rows:
            source = row.get(source_name)
            if source is None:
                continue
            if target_free:
                keys = [k for k in found if k[0] == source.id]
            else:
                target = row.get(target_name)
                keys = [(source.id, target.id)] if target is not None else []
            for key in keys:
                terms = unsearched if among_neurons is not None and key in among_neurons.ends_admitted else path_terms
                for nodes, rels in found.get(key, []):
                    new = dict(row)
                    refs = [node_refs[b] for b in nodes]
                    if target_free:
                        new[target_name] = refs[-1]
                    path = Path(refs[::-1], rels[::-1]) if reverse else Path(refs, rels)
                    if path_name:
                        new[path_name] = path
                    if rel.variable:
                        new[rel.variable] = list(path.rels)
                    if terms and not all(truthy(evaluate(t, new)) for t in terms):
                        continue
                    out.append(new)
                    if len(out) % CHECK_EVERY == 0:
                        self.deadline.check(CHECK_EVERY)
        return out

    def _path_filters(self, terms, path_name) -> tuple[str | None, str | None]:
        """SQL for ALL(x IN relationships(p) WHERE ...) and ALL(n IN nodes(p) WHERE ...)."""
        edge_parts, node_parts = [], []
        for term in terms:
            over = path_quantifier(term, path_name)
            if over is None:
                continue
            sql = path_filter_sql(self.model, self.params, term.variable, over, term.where)
            if sql and variables_in(term.where) <= {term.variable}:
                (edge_parts if over == "relationships" else node_parts).append(sql)
        return all_of(edge_parts), all_of(node_parts)


def pattern_variables(clause: ast.Match) -> set[str]:
    names = {e.variable for p in clause.patterns for e in p.elements if e.variable}
    return names | {p.variable for p in clause.patterns if p.variable}


def family_of_column(values) -> str | None:
    families = set()
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool):
            families.add("bool")
        elif isinstance(v, int):
            if abs(v) >= 2**63:
                return None
            families.add("number")
        elif isinstance(v, float):
            families.add("number")
        elif isinstance(v, str):
            families.add("string")
        elif isinstance(v, list):
            inner = family_of_column(v)
            if inner is None or inner.startswith("list"):
                return None
            families.add("list:" + inner)
        else:
            return None
    if len(families) > 1:
        return None
    return families.pop() if families else "null"
