"""The vocabulary of the neuPrint graph: node kinds, labels and relationship types, and the kinds
of a MATCH's variables inferred from them.

Shared by the graph model (schema.py), the planner and the SQL generator; it knows no tables.
"""

from __future__ import annotations

from flatprint.cypher import ast
from flatprint.cypher.errors import unsupported

SEGMENT, SYNSET, SYNAPSE, META, EMPTY = "segment", "synset", "synapse", "meta", "empty"
CONNECTS, SYNAPSES_TO, CONTAINS = "ConnectsTo", "SynapsesTo", "Contains"

#: label -> node kind (labels are case-sensitive in Cypher)
LABEL_KINDS = {
    "Segment": SEGMENT,
    "Neuron": SEGMENT,
    "Cell": SEGMENT,
    "SynapseSet": SYNSET,
    "Synapse": SYNAPSE,
    "PreSyn": SYNAPSE,
    "PostSyn": SYNAPSE,
    "Meta": META,
    "Element": EMPTY,
    "ElementSet": EMPTY,
    "Mitochondrion": EMPTY,
    "DataModel": EMPTY,
}
#: relationship type names the engine knows; anything else matches nothing
REL_TYPES = {CONNECTS, SYNAPSES_TO, CONTAINS, "CloseTo"}


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


def infer_kinds(patterns, known: dict[str, str], model) -> dict[str, str]:
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
