"""Which MATCH + RETURN pairs read the synapse layout directly (a plan step).

neuprint-python's ``fetch_synapse_connections`` and ``fetch_synapses`` send one query shape each
(once per batch of bodies):

    MATCH (n:Segment)-[e:ConnectsTo]->(m:Segment),
          (n)-[:Contains]->(nss:SynapseSet)-[:ConnectsTo]->(mss:SynapseSet)<-[:Contains]-(m),
          (nss)-[:Contains]->(ns:Synapse)-[:SynapsesTo]->(ms:Synapse)<-[:Contains]-(mss)
    WHERE <n's conditions> AND <m's> AND e.weight >= 1 AND ns.confidence > 0.5 AND ns.type = 'pre' ...
    RETURN n.bodyId, m.bodyId, ns.location.x, ..., apoc.map.removeKeys(ns, [...]), ...

    MATCH (n:Neuron), (n)-[:Contains]->(ss:SynapseSet), (ss)-[:Contains]->(s:Synapse)
    WHERE <n's conditions> AND s.confidence > 0.5
    RETURN n.bodyId, s.type, s.confidence, s.location.x, ..., apoc.map.removeKeys(s, [...])

(the WITH clauses between them are folded into the MATCH by the rewriter). Through SQL each is a
join of several large tables planned afresh; :func:`synapse_shape` recognises them statically (this
module) and flatprint.cypher.synapseanswers answers them from ``partners`` and ``synapses`` read by
body and by id (flatprint.store.partners, as the library does), or leaves them to the SQL step.

The shapes: exactly the patterns above (any order, any variable names, either arrow direction
written, SynapseSets named or not), ends labelled ``Segment`` and/or ``Neuron``, no property maps;
a WHERE that is a conjunction of terms each on one variable: anything on an end (its bodies are
found by one SQL query of the end alone, or by id when only ``bodyId`` is listed), ``e.weight``
compared with a constant, and on a synapse ``confidence`` compared with a constant, ``type`` equal
to one, or ROI flags (``s.FB``, ORs of them); a RETURN (no DISTINCT, ORDER BY, SKIP or LIMIT) of
``end.bodyId``, ``syn.type``, ``syn.confidence``, ``syn.ntXProb``, ``syn.location.x|y|z``, ``syn``
and ``apoc.map.removeKeys(syn, [constant strings])``.
"""

from __future__ import annotations

from dataclasses import dataclass

from flatprint.cypher import ast
from flatprint.cypher.neuronplan import Test, property_comparison, property_of
from flatprint.cypher.sqlgen import conjuncts, variables_in

END_LABELS = ("Segment", "Neuron")
#: synapse properties an item or a test may read (ntXProb columns are checked against the store)
SYNAPSE_VALUES = ("type", "confidence")
#: ``variable.prop <op> value`` with a constant ``value``: the neuron plan's test
Compare = Test


@dataclass(frozen=True)
class End:
    """A Segment end: its variable, whether it is labelled ``Neuron`` and its WHERE terms."""

    variable: str
    neuron: bool
    terms: tuple[ast.Expression, ...] = ()


@dataclass(frozen=True)
class SynapseEnd:
    """A synapse variable and its tests: comparisons, and ROI flag terms (each an OR of ROI names)."""

    variable: str
    compares: tuple[Compare, ...] = ()
    roi_terms: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class Item:
    """A RETURN item: ``kind`` 'body' (of end ``variable``), 'value' (``prop`` of a synapse: a column or
    'x'/'y'/'z' of its location) or 'map' (the synapse's property map, ``removed`` keys left out;
    None for the whole node)."""

    name: str
    kind: str
    variable: str
    prop: str | None = None
    removed: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SynapseShape:
    """fetch_synapse_connections' (``post`` set: ``pre`` -> ``post`` through ``pre_syn`` -> ``post_syn``)
    or fetch_synapses' (``post`` None: the synapses ``pre_syn`` of ``pre``) query."""

    pre: End
    pre_syn: SynapseEnd
    items: tuple[Item, ...]
    post: End | None = None
    post_syn: SynapseEnd | None = None
    weight_tests: tuple[Compare, ...] = ()


def synapse_shape(match: ast.Match, projection) -> SynapseShape | None:
    """The shape of ``match`` + ``projection`` (a RETURN), or None when it is not one of the module's."""
    if match.optional or not isinstance(projection, ast.Return):
        return None
    if projection.distinct or projection.star or projection.order_by or projection.skip or projection.limit:
        return None
    found = _edges(match)
    if found is None:
        return None
    labels, edges, rel_names = found
    structure = _structure(labels, edges)
    if structure is None:
        return None
    ends, synapses, connects = structure
    if any(v.startswith("#") for v in [*ends, *synapses]):
        return None  # an anonymous end or synapse: nothing can name it
    rel_variable = rel_names.get(connects) if connects is not None else None
    end_terms: dict[str, list] = {v: [] for v in ends}
    syn_compares: dict[str, list] = {v: [] for v in synapses}
    syn_rois: dict[str, list] = {v: [] for v in synapses}
    weight_tests = []
    for term in conjuncts(match.where):
        names = variables_in(term)
        if len(names) != 1:
            return None
        (variable,) = names
        if variable in end_terms:
            end_terms[variable].append(term)
        elif variable in syn_compares:
            test = _synapse_test(term)
            if test is None:
                return None
            (syn_rois if isinstance(test, tuple) else syn_compares)[variable].append(test)
        elif variable == rel_variable:
            test = _compare(term)
            if test is None or test[0] != variable or test[1].prop != "weight":
                return None
            weight_tests.append(test[1])
        else:
            return None  # a SynapseSet or an unnamed relationship variable in the WHERE
    items = []
    for item in projection.items:
        found_item = _item(item.column_name, item.expression, ends, synapses)
        if found_item is None:
            return None
        items.append(found_item)

    def end(variable):
        return End(variable, "Neuron" in labels[variable], tuple(end_terms[variable]))

    def syn(variable):
        return SynapseEnd(variable, tuple(syn_compares[variable]), tuple(syn_rois[variable]))

    if len(ends) == 1:
        return SynapseShape(end(ends[0]), syn(synapses[0]), tuple(items))
    return SynapseShape(
        end(ends[0]), syn(synapses[0]), tuple(items), end(ends[1]), syn(synapses[1]), tuple(weight_tests)
    )


def _edges(match: ast.Match):
    """(labels per node variable, directed edges (from, type, to), relationship variable per edge),
    anonymous nodes named ``#k``; None for anything but plain fixed single-type relationships."""
    labels: dict[str, set[str]] = {}
    edges: list[tuple[str, str, str]] = []
    rel_names: dict[tuple[str, str, str], str] = {}
    anonymous = 0
    for pattern in match.patterns:
        if pattern.variable is not None or pattern.shortest:
            return None
        names = []
        for element in pattern.elements[::2]:
            if not isinstance(element, ast.NodePattern) or element.properties is not None:
                return None
            name = element.variable
            if name is None:
                name, anonymous = f"#{anonymous}", anonymous + 1
            labels.setdefault(name, set()).update(element.labels)
            names.append(name)
        for k, rel in enumerate(pattern.elements[1::2]):
            if (
                not isinstance(rel, ast.RelPattern)
                or rel.variable_length
                or rel.properties is not None
                or len(rel.types) != 1
            ):
                return None
            if rel.direction == ast.Direction.OUTGOING:
                edge = (names[k], rel.types[0], names[k + 1])
            elif rel.direction == ast.Direction.INCOMING:
                edge = (names[k + 1], rel.types[0], names[k])
            else:
                return None
            if edge in edges:
                return None
            edges.append(edge)
            if rel.variable is not None:
                if rel.variable in rel_names.values() or rel.variable in labels:
                    return None
                rel_names[edge] = rel.variable
    if set(rel_names.values()) & set(labels):
        return None
    return labels, edges, rel_names


def _structure(labels: dict[str, set[str]], edges: list):
    """(ends, synapses, the ends' ConnectsTo edge) of fetch_synapse_connections' or fetch_synapses'
    pattern, pre first; None for any other graph."""

    def only(name, allowed):
        return bool(labels[name]) and labels[name] <= set(allowed)

    contains = {(a, b) for a, t, b in edges if t == "Contains"}
    if len(edges) == 2:  # (n)-[:Contains]->(ss)-[:Contains]->(s)
        if len(contains) != 2 or len(labels) != 3:
            return None
        for n, ss in contains:
            for ss2, s in contains:
                if ss2 == ss and n != ss and s not in (n, ss):
                    if only(n, END_LABELS) and only(ss, ("SynapseSet",)) and only(s, ("Synapse",)):
                        return [n], [s], None
        return None
    if len(edges) != 7 or len(labels) != 6 or len(contains) != 4:
        return None
    connects = [(a, b) for a, t, b in edges if t == "ConnectsTo"]
    synapses_to = [(a, b) for a, t, b in edges if t == "SynapsesTo"]
    if len(connects) != 2 or len(synapses_to) != 1:
        return None
    ns, ms = synapses_to[0]
    sets = {ss for ss, s in contains if s in (ns, ms)}
    owner = {s: ss for ss, s in contains if s in (ns, ms)}
    if len(sets) != 2 or set(owner) != {ns, ms}:
        return None
    nss, mss = owner[ns], owner[ms]
    set_owner = {ss: n for n, ss in contains if ss in sets}
    if set(set_owner) != {nss, mss}:
        return None
    n, m = set_owner[nss], set_owner[mss]
    if len({n, m, nss, mss, ns, ms}) != 6:
        return None
    if sorted(connects) != sorted([(n, m), (nss, mss)]):
        return None
    if not (only(n, END_LABELS) and only(m, END_LABELS)):
        return None
    if not (only(nss, ("SynapseSet",)) and only(mss, ("SynapseSet",))):
        return None
    if not (only(ns, ("Synapse",)) and only(ms, ("Synapse",))):
        return None
    edge = next(e for e in edges if e == (n, "ConnectsTo", m))
    return [n, m], [ns, ms], edge


def _constant(e: ast.Expression) -> bool:
    return isinstance(e, (ast.Literal, ast.Parameter))


def _compare(e: ast.Expression) -> tuple[str, Compare] | None:
    """(variable, comparison) of ``v.prop <op> constant`` (either side), or None."""
    return property_comparison(e, _constant)


def _synapse_test(e: ast.Expression):
    """A Compare on ``confidence`` or ``type``, or a tuple of ROI names (an OR of ROI flags); None
    otherwise (whether each name is a ROI is checked when the query runs)."""
    found = _compare(e)
    if found is not None:
        test = found[1]
        if test.prop == "confidence" or (test.prop == "type" and test.op == "="):
            return test
        return None
    rois = _roi_flags(e)
    return tuple(rois) if rois else None


def _roi_flags(e: ast.Expression) -> list[str] | None:
    if isinstance(e, ast.BinaryOp) and e.operator == "OR":
        left, right = _roi_flags(e.left), _roi_flags(e.right)
        return None if left is None or right is None else left + right
    found = property_of(e)
    if found is None or found[1] in (*SYNAPSE_VALUES, "location") or found[1].startswith("nt"):
        return None
    return [found[1]]


def _item(name: str, e: ast.Expression, ends: list[str], synapses: list[str]) -> Item | None:
    found = property_of(e)
    if found is not None:
        variable, prop = found
        if variable in ends and prop == "bodyId":
            return Item(name, "body", variable)
        if variable in synapses and (prop in SYNAPSE_VALUES or prop.startswith("nt")):
            return Item(name, "value", variable, prop)
        return None
    if isinstance(e, ast.Property) and e.name in ("x", "y", "z"):
        inner = property_of(e.subject)
        if inner is not None and inner[0] in synapses and inner[1] == "location":
            return Item(name, "value", inner[0], e.name)
        return None
    if isinstance(e, ast.Variable) and e.name in synapses:
        return Item(name, "map", e.name)
    if isinstance(e, ast.FunctionCall) and e.lower_name == "apoc.map.removekeys" and len(e.arguments) == 2:
        node, keys = e.arguments
        if (
            isinstance(node, ast.Variable)
            and node.name in synapses
            and isinstance(keys, ast.ListLiteral)
            and all(isinstance(k, ast.Literal) and isinstance(k.value, str) for k in keys.items)
        ):
            return Item(name, "map", node.name, removed=tuple(k.value for k in keys.items))
    return None
