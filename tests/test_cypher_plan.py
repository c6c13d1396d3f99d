"""The plan tree the executor walks (flatprint.cypher.plan): one step per way a clause runs, written
out by ``plan_tree(text)``; the trees below are read off the queries by hand."""

from __future__ import annotations

import dataclasses

import pytest

from flatprint.cypher import ast, engine, plan as plan_module
from flatprint.cypher.engine import execute, plan_tree
from flatprint.cypher.parser import parse
from flatprint.cypher.plan import SqlMatchProject, needed_properties, plan_query
from flatprint.cypher.plancache import prepare
from flatprint.cypher.rewriter import inline_constant_withs
from flatprint.store import Store

TREES = {
    # a lookup: the MATCH and its RETURN tried as one statement
    "MATCH (n:Neuron) WHERE n.bodyId = 1 RETURN n.type AS t ORDER BY t": (
        "NeuronMatchProject (in RAM when built; else)\n  SqlMatchProject\n"
        "    SqlMatch: MATCH (n:Neuron) WHERE n.bodyId = 1\n    Projection: RETURN n.type AS t ORDER BY t"
    ),
    "MATCH (n:Neuron) WHERE n.pre > 1 RETURN n.type AS t ORDER BY t": (
        "SqlMatchProject\n  SqlMatch: MATCH (n:Neuron) WHERE n.pre > 1\n  Projection: RETURN n.type AS t ORDER BY t"
    ),
    # a neuron lookup: from the neuron table in RAM when built, else its SqlMatchProject
    "MATCH (n:Neuron) WHERE n.type = 'A' RETURN n.bodyId AS b ORDER BY b": (
        "NeuronMatchProject (in RAM when built; else)\n  SqlMatchProject\n"
        "    SqlMatch: MATCH (n:Neuron) WHERE n.type = 'A'\n    Projection: RETURN n.bodyId AS b ORDER BY b"
    ),
    # the LIMIT is the match's row cap too
    "MATCH (n:Neuron) RETURN n.bodyId LIMIT 5": (
        "SqlMatchProject\n  SqlMatch (first 5 rows): MATCH (n:Neuron)\n  Projection: RETURN n.bodyId LIMIT 5"
    ),
    # the rewriter merged the MATCHes and folded the pass-through WITH before planning
    "MATCH (a:Neuron) WHERE a.bodyId = 1 MATCH (a)-[c:ConnectsTo]->(b) WITH b, c WHERE c.weight > 3 "
    "RETURN b.type, count(*)": (
        "SqlMatchProject\n"
        "  SqlMatch: MATCH (a:Neuron), (a)-[c:ConnectsTo]->(b) WHERE a.bodyId = 1 AND c.weight > 3\n"
        "  Projection: RETURN b.type, count(*)"
    ),
    "MATCH p = shortestPath((a:Neuron)-[:ConnectsTo*]->(b:Neuron)) WHERE a.bodyId = 1 AND b.bodyId = 2 "
    "RETURN length(p)": (
        "PathSearch: MATCH p = shortestPath((a:Neuron)-[:ConnectsTo*]->(b:Neuron)) "
        "WHERE a.bodyId = 1 AND b.bodyId = 2\n"
        "Projection: RETURN length(p)"
    ),
    # OPTIONAL MATCH keeps its rows in Python: never one statement with the projection
    "OPTIONAL MATCH (n:Neuron) WHERE n.bodyId = 3 RETURN n": (
        "SqlMatch: OPTIONAL MATCH (n:Neuron) WHERE n.bodyId = 3\nProjection: RETURN n"
    ),
    "UNWIND [1, 2] AS x MATCH (n:Neuron) WHERE n.bodyId = x RETURN n.type": (
        "Unwind: UNWIND [1, 2] AS x\n"
        "SqlMatchProject\n  SqlMatch: MATCH (n:Neuron) WHERE n.bodyId = x\n  Projection: RETURN n.type"
    ),
    "CALL db.labels() YIELD label RETURN label": (
        "ProcedureCall: CALL db.labels() YIELD label\nProjection: RETURN label"
    ),
    "MATCH (n:Meta) RETURN n.dataset UNION ALL MATCH (n:Neuron) RETURN n.type AS `n.dataset`": (
        "Union all\n"
        "  Part\n    SqlMatchProject\n      SqlMatch: MATCH (n:Meta)\n      Projection: RETURN n.dataset\n"
        "  Part\n    SqlMatchProject\n      SqlMatch: MATCH (n:Neuron)\n"
        "      Projection: RETURN n.type AS `n.dataset`"
    ),
}


@pytest.mark.parametrize("text", list(TREES))
def test_plan_tree(text):
    assert plan_tree(text) == TREES[text]


def test_the_executor_walks_the_plan(store_path, monkeypatch):
    """Each SqlMatchProject step is tried as one statement once; a RETURN that does not render in
    SQL (a list comprehension) falls back to its SqlMatch and Projection and still answers."""
    store = Store.open(store_path)
    tried = []
    original = engine.Execution.match_and_aggregate

    def spy(self, match, projection, rows):
        answer = original(self, match, projection, rows)
        tried.append(answer is not None)
        return answer

    monkeypatch.setattr(engine.Execution, "match_and_aggregate", spy)
    try:
        body = execute(store, "MATCH (n:Neuron) RETURN n.bodyId ORDER BY n.bodyId LIMIT 1").data[0][0]
        text = f"MATCH (n:Neuron) WHERE n.bodyId = {body} RETURN [x IN [n.bodyId] | x + 1] AS next"
        assert isinstance(plan_query(engine.prepare(text, False)).parts[0].steps[0], SqlMatchProject)
        assert execute(store, text, plan_cache=False).data == [[[body + 1]]]
    finally:
        store.close()
    assert tried == [True, False]


def test_inlined_constants_are_the_lists_written_in_place():
    """``WITH [ids] AS x`` inlined: the same tree as the query with the list written where x is read
    (known on paper), the clauses without x kept as they are (not copied), the id list unread."""
    text = (
        "WITH [7, 8, 9] AS x, 'A' AS t MATCH (n:Neuron)-[e:ConnectsTo]->(m) WHERE n.bodyId IN x AND m.type = t "
        "WITH n, m, e, x, true AS _ WHERE [y IN x WHERE y > 7 | y * 2] <> [] AND m.bodyId IN [1, 2] "
        "RETURN n.bodyId AS a, size(x) AS k, e.weight AS w ORDER BY a"
    )
    written = (
        "MATCH (n:Neuron)-[e:ConnectsTo]->(m) WHERE n.bodyId IN [7, 8, 9] AND m.type = 'A' "
        "WITH n, m, e, [7, 8, 9] AS x, true AS _ WHERE [y IN [7, 8, 9] WHERE y > 7 | y * 2] <> [] "
        "AND m.bodyId IN [1, 2] RETURN n.bodyId AS a, size([7, 8, 9]) AS k, e.weight AS w ORDER BY a"
    )
    clauses = parse(text).parts[0].clauses
    inlined = inline_constant_withs(clauses)
    assert inlined == parse(written).parts[0].clauses
    plain = parse("WITH [1] AS x MATCH (n:Neuron) WHERE n.bodyId IN x RETURN n.type AS t ORDER BY t").parts[0]
    done = inline_constant_withs(plain.clauses)
    assert done[1] is plain.clauses[2]  # the RETURN does not read x: the same node
    lazy = ast.ListLiteral.of_values((4, 5))  # as a plan cache hit binds it
    first = plain.clauses[0]
    bound = dataclasses.replace(first, items=(dataclasses.replace(first.items[0], expression=lazy),))
    substituted = inline_constant_withs((bound, *plain.clauses[1:]))
    assert substituted[0].where.collection is lazy and "items" not in vars(lazy)


def test_needed_properties_kept_by_tree():
    """needed_properties keeps its answer on the tree (the same tree answers from it, another tree of
    other properties its own)."""
    first = prepare("MATCH (n:Neuron) WHERE n.status = 'Traced' RETURN n.type", False)
    assert needed_properties(first) == {"status", "type"}
    assert needed_properties(first) is needed_properties(first)
    assert needed_properties(prepare("MATCH (n:Neuron) RETURN n.instance", False)) == {"instance"}
    assert needed_properties(prepare("MATCH (n:Neuron) WHERE n.pre > 3 RETURN n.bodyId", False)) == {"pre", "bodyId"}


def test_plans_kept_by_tree():
    """plan_query keeps its plans per tree: the same tree (the plan cache's for a text sent again)
    gets the same plan back, a tree of another text its own plan (its tree written out by hand)."""
    text = "MATCH (n:Neuron) WHERE n.pre > 1 RETURN n.type AS t ORDER BY t"
    first = prepare(text, False)
    assert plan_query(first) is plan_query(first)
    other = prepare(text.replace("n.pre > 1", "n.pre > 2"), False)
    assert plan_query(other) is not plan_query(first)
    assert plan_module.explain(plan_query(other)) == (
        "SqlMatchProject\n  SqlMatch: MATCH (n:Neuron) WHERE n.pre > 2\n  Projection: RETURN n.type AS t ORDER BY t"
    )


def test_a_repeated_text_is_planned_once(monkeypatch):
    """The plan is kept on the tree: the plan cache's exact-text level hands out the same tree for the
    same text, which is then not planned again; another text of the same shape (a new tree) is."""
    planned = []
    original = plan_module.plan_part

    def counting(part):
        planned.append(part)
        return original(part)

    monkeypatch.setattr(plan_module, "plan_part", counting)
    cache = engine.PlanCache()
    text = "WITH [1, 2] AS ids MATCH (n:Neuron) WHERE n.bodyId IN ids RETURN n.type AS t"
    first = plan_query(cache.prepare(text))
    assert plan_query(cache.prepare(text)) is first and len(planned) == 1
    other = plan_query(cache.prepare(text.replace("[1, 2]", "[3]")))
    assert other is not first and len(planned) == 2
    assert "3" in plan_module.explain(other) and "1, 2" not in plan_module.explain(other)
