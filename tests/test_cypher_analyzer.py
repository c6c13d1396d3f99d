"""The analyzer refuses before anything runs, and the registry it checks against is what runs.

Refusals: each kind is raised by ``execute`` on a store that fails the test if it is ever touched,
and once on the real store with a cross product that would otherwise run into its timeout. The
message names the construct with its line and column. Acceptance: every function, aggregation and
procedure of the registry is called by at least one query whose answer is known on paper, and
docs/cypher.md's list is the registry's.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import pytest

from flatprint.cypher import registry
from flatprint.cypher.engine import execute
from flatprint.cypher.errors import CypherError, CypherSyntaxError, CypherWriteError, UnsupportedCypherError
from flatprint.errors import QueryError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cypher.md"


class UntouchableStore:
    """A store whose use fails the test: a refused query must never reach it."""

    def cursor(self):
        raise AssertionError("the store was queried for a query the analyzer should have refused")

    def __getattr__(self, name):
        raise AssertionError(f"the store was used ({name}) for a query the analyzer should have refused")


REFUSED = [
    # (query, error type, text the message holds, line, column)
    ("MATCH (a)-[a]->(b) RETURN a", CypherSyntaxError, "variable `a` is a node, used here as a relationship", 1, 10),
    (
        "MATCH (n) WITH n AS r\nMATCH ()-[r]->() RETURN r",
        CypherSyntaxError,
        "variable `r` is a node, used here as a relationship",
        2,
        9,
    ),
    ("WITH 1 AS n MATCH (n) RETURN n", CypherSyntaxError, "variable `n` is a value, used here as a node", 1, 19),
    ("MATCH p = (a)-->(b) MATCH (p) RETURN p", CypherSyntaxError, "variable `p` is a path, used here as a node", 1, 27),
    # used to run until the memory budget stopped it (the TCK's cross product of paths)
    (
        "MATCH (x), r = (s)-[p]-(t)-[]-(b), (r), (a)-[q]-(b) RETURN r",
        CypherSyntaxError,
        "variable `r` is a path, used here as a node",
        1,
        36,
    ),
    ("RETURN 123 AND true", CypherSyntaxError, "AND expects booleans, got 123", 1, 8),
    ("MATCH (n) WHERE NOT 'x' RETURN n", CypherSyntaxError, "NOT expects booleans, got 'x'", 1, 21),
    ("RETURN true XOR [1]", CypherSyntaxError, "XOR expects booleans, got [1]", 1, 17),
    ("RETURN {a: 1} OR false", CypherSyntaxError, "OR expects booleans, got {a: 1}", 1, 8),
    (
        "MATCH (n:Segment) RETURN n.bodyId\nORDER BY max(n.pre)",
        CypherSyntaxError,
        "aggregation in ORDER BY after a RETURN that does not aggregate",
        2,
        10,
    ),
    (
        "MATCH (n:Segment) WITH n ORDER BY count(*) RETURN n",
        CypherSyntaxError,
        "aggregation in ORDER BY after a WITH that does not aggregate",
        1,
        35,
    ),
    ("MATCH (n) RETURN count(count(n))", UnsupportedCypherError, "nested aggregation", 1, 18),
    ("MATCH (n) WHERE count(n) > 1 RETURN n", UnsupportedCypherError, "aggregation count()", 1, 17),
    ("MATCH (n) RETURN m", CypherSyntaxError, "variable `m` not defined", 1, 18),
    ("MATCH (n) WITH n.bodyId AS b RETURN n", CypherSyntaxError, "variable `n` not defined", 1, 37),
    # a WHERE after an aggregating WITH sees only what the WITH projects (after a plain WITH it also
    # sees the variables before it, as openCypher says: test_cypher_conformance.py)
    ("MATCH (n) WITH count(*) AS c WHERE n.pre > 1 RETURN c", CypherSyntaxError, "variable `n` not defined", 1, 36),
    ("MATCH (n) RETURN n LIMIT n.pre", CypherSyntaxError, "variable `n` not defined", 1, 26),
    ("UNWIND [1] AS x RETURN [y IN [1] | z]", CypherSyntaxError, "variable `z` not defined", 1, 36),
    ("UNWIND [1] AS x RETURN reduce(s = 0, v IN [x] | s + w)", CypherSyntaxError, "variable `w` not defined", 1, 53),
    ("MATCH (n) RETURN n {.bodyId, k}", CypherSyntaxError, "variable `k` not defined", 1, 30),
    ("MATCH (a)-[r]->()-[r]->(a) RETURN r", UnsupportedCypherError, "relationship variable `r` bound twice", 1, 18),
    (
        "MATCH (n) RETURN [x IN [1, 2] | count(*)]",
        CypherSyntaxError,
        "aggregation inside a list comprehension, quantifier or reduce",
        1,
        33,
    ),
    ("RETURN 1 IN 'foo'", CypherSyntaxError, "IN expects a list, got 'foo'", 1, 13),
    ("RETURN 1 IN {x: []}", CypherSyntaxError, "IN expects a list, got {x: []}", 1, 13),
    ("MATCH (r) RETURN type(r)", CypherSyntaxError, "type() of a node", 1, 23),
    ("MATCH p = (a)-->(b) RETURN labels(p)", CypherSyntaxError, "labels() of a path", 1, 35),
    ("MATCH ()-[r]->() RETURN length(r)", CypherSyntaxError, "length() of a relationship", 1, 32),
    ("RETURN *", CypherSyntaxError, "RETURN * with no variables in scope", 1, 1),
    ("WITH * RETURN 1 AS one", CypherSyntaxError, "WITH * with no variables in scope", 1, 1),
    ("MATCH (n) RETURN n SKIP -1", CypherSyntaxError, "SKIP expects a non-negative integer, got -1", 1, 25),
    ("MATCH (n) RETURN n LIMIT 1.5", CypherSyntaxError, "LIMIT expects a non-negative integer, got 1.5", 1, 26),
    ("RETURN foo(1)", UnsupportedCypherError, "function foo()", 1, 8),
    ("RETURN apoc.text.join(['a'], ',')", UnsupportedCypherError, "function apoc.text.join()", 1, 8),
    ("RETURN substring('a')", UnsupportedCypherError, "substring() with 1 arguments", 1, 8),
    ("RETURN size([1], [2])", UnsupportedCypherError, "size() with 2 arguments", 1, 8),
    ("UNWIND [1] AS x RETURN sum(x, 2)", UnsupportedCypherError, "sum() with 2 arguments", 1, 24),
    ("CALL db.labels(1)", UnsupportedCypherError, "db.labels with 1 arguments", 1, 1),
    ("CALL db.schema.nodeTypeProperties()", UnsupportedCypherError, "procedure db.schema.nodeTypeProperties", 1, 6),
    ("CALL db.labels() YIELD foo RETURN foo", UnsupportedCypherError, "YIELD foo from db.labels", 1, 24),
    (
        'CALL apoc.cypher.run("MATCH (n) RETURN m", {}) YIELD value RETURN value',
        CypherSyntaxError,
        "variable `m` not defined",
        1,
        40,
    ),
    ("MATCH (n) DELETE n", CypherWriteError, "DELETE", 1, 11),
    ("CREATE (n:Neuron) RETURN n", CypherWriteError, "CREATE", 1, 1),
    ("MATCH (n) SET n.type = 'x'", CypherWriteError, "SET", 1, 11),
    ("MATCH (n) DETACH DELETE n", CypherWriteError, "DETACH DELETE", 1, 11),
    ("MERGE (n:Neuron {bodyId: 1})", CypherWriteError, "MERGE", 1, 1),
    ("MATCH (n) REMOVE n.type", CypherWriteError, "REMOVE", 1, 11),
]


@pytest.mark.parametrize("text, error, detail, line, column", REFUSED, ids=[r[0][:40] for r in REFUSED])
def test_refused_before_the_store_is_touched(text, error, detail, line, column):
    with pytest.raises(error) as info:
        execute(UntouchableStore(), text)
    exc = info.value
    assert detail in str(exc), str(exc)
    assert (exc.line, exc.column) == (line, column), str(exc)
    assert f"at line {line}, column {column}" in str(exc)
    assert exc.construct, "the error names no construct"


HUGE = "MATCH (a:Synapse), (b:Synapse), (c:Synapse) WHERE {condition} RETURN count(*) AS n"


@pytest.mark.parametrize(
    "condition, detail",
    [
        ("a.confidence > 0 AND 1", "AND expects booleans, got 1"),
        ("a.confidence > d.confidence", "variable `d` not defined"),
        ("a.confidence > 0 RETURN c ORDER BY max(c.confidence) //", "aggregation in ORDER BY"),
    ],
)
def test_refused_queries_do_not_run_into_the_timeout(store, condition, detail):
    """A cross product of all synapses three times would run until its timeout; refused, it returns at once."""
    started = time.perf_counter()
    with pytest.raises(CypherError, match=re.escape(detail)):
        execute(store, HUGE.format(condition=condition), timeout=30)
    assert time.perf_counter() - started < 0.5


def test_the_huge_query_really_is_huge(store):
    """The queries above with a valid condition cannot finish within the time limit."""
    with pytest.raises(QueryError, match="timeout"):
        execute(store, HUGE.format(condition="a.confidence > 0"), timeout=0.5)


# ---------------------------------------------------------------------------------------------
# every registry entry runs: one query each, its answer known on paper

ONE_CONNECTION = "MATCH p = (a:Segment)-[r:ConnectsTo]->(b:Segment) WITH p, a, r, b LIMIT 1 "
ONE_SYNAPSE = "MATCH (s:Synapse) WITH s LIMIT 1 "

CALLS = {
    # name: (query with one column and one row, expected value)
    "abs": ("RETURN abs(-3)", 3),
    "ceil": ("RETURN ceil(1.2)", 2.0),
    "coalesce": ("RETURN coalesce(null, 2, 3)", 2),
    "endnode": (ONE_CONNECTION + "RETURN endNode(r).bodyId = b.bodyId", True),
    "exp": ("RETURN exp(0)", 1.0),
    "floor": ("RETURN floor(1.7)", 1.0),
    "head": ("RETURN head([4, 5])", 4),
    "id": ("MATCH (n:Segment) WITH n LIMIT 1 RETURN id(n) = n.bodyId", True),  # a Segment's id is its body
    "keys": ("RETURN keys({a: 1, b: 2})", ["a", "b"]),
    "labels": (ONE_SYNAPSE + "RETURN labels(s)", ["Synapse"]),
    "last": ("RETURN last([4, 5])", 5),
    "left": ("RETURN left('abc', 2)", "ab"),
    "length": (ONE_CONNECTION + "RETURN length(p)", 1),
    "log": ("RETURN log(1)", 0.0),
    "lower": ("RETURN lower('AbC')", "abc"),
    "ltrim": ("RETURN lTrim('  a ')", "a "),
    "nodes": (ONE_CONNECTION + "RETURN [x IN nodes(p) | x.bodyId] = [a.bodyId, b.bodyId]", True),
    "properties": ("RETURN properties({a: 1})", {"a": 1}),
    "rand": (
        "UNWIND range(1, 100) AS i WITH rand() AS r RETURN min(r) >= 0.0 AND max(r) < 1.0 AND min(r) < max(r)",
        True,
    ),
    "range": ("RETURN range(1, 6, 2)", [1, 3, 5]),
    "relationships": (ONE_CONNECTION + "RETURN relationships(p)[0].weight = r.weight", True),
    "rels": (ONE_CONNECTION + "RETURN size(rels(p))", 1),
    "replace": ("RETURN replace('aXbX', 'X', '-')", "a-b-"),
    "reverse": ("RETURN reverse([1, 2, 3])", [3, 2, 1]),
    "right": ("RETURN right('abc', 2)", "bc"),
    "round": ("RETURN round(2.5)", 3.0),
    "rtrim": ("RETURN rTrim(' a  ')", " a"),
    "sign": ("RETURN sign(-2)", -1),
    "size": ("RETURN size([1, 2, 3])", 3),
    "split": ("RETURN split('a,b', ',')", ["a", "b"]),
    "sqrt": ("RETURN sqrt(16)", 4.0),
    "startnode": (ONE_CONNECTION + "RETURN startNode(r).bodyId = a.bodyId", True),
    "substring": ("RETURN substring('hello', 1, 3)", "ell"),
    "tail": ("RETURN tail([1, 2, 3])", [2, 3]),
    "toboolean": ("RETURN toBoolean('true')", True),
    "tofloat": ("RETURN toFloat('1.5')", 1.5),
    "tointeger": ("RETURN toInteger('42')", 42),
    "tolower": ("RETURN toLower('AbC')", "abc"),
    "tostring": ("RETURN toString(12)", "12"),
    "toupper": ("RETURN toUpper('aBc')", "ABC"),
    "trim": ("RETURN trim('  a  ')", "a"),
    "type": (ONE_CONNECTION + "RETURN type(r)", "ConnectsTo"),
    "upper": ("RETURN upper('a')", "A"),
    "apoc.coll.containsduplicates": ("RETURN apoc.coll.containsDuplicates([1, 2, 1])", True),
    "apoc.coll.flatten": ("RETURN apoc.coll.flatten([[1, 2], [3]])", [1, 2, 3]),
    "apoc.coll.max": ("RETURN apoc.coll.max([1, 5, 2])", 5),
    "apoc.coll.min": ("RETURN apoc.coll.min([4, 1, 2])", 1),
    "apoc.coll.sum": ("RETURN apoc.coll.sum([1, 2, 3])", 6),
    "apoc.coll.toset": ("RETURN apoc.coll.toSet([1, 1, 2])", [1, 2]),
    "apoc.convert.fromjsonlist": ("RETURN apoc.convert.fromJsonList('[1, 2]')", [1, 2]),
    "apoc.convert.fromjsonmap": ("RETURN apoc.convert.fromJsonMap('{\"a\": 1}')", {"a": 1}),
    "apoc.convert.tojson": ("RETURN apoc.convert.fromJsonList(apoc.convert.toJson([1, 'x']))", [1, "x"]),
    "apoc.map.removekey": ("RETURN apoc.map.removeKey({a: 1, b: 2}, 'a')", {"b": 2}),
    "apoc.map.removekeys": ("RETURN apoc.map.removeKeys({a: 1, b: 2, c: 3}, ['a', 'c'])", {"b": 2}),
    "apoc.meta.type": ("RETURN apoc.meta.type(1.5)", "FLOAT"),
    # aggregations over 1, 2, 3, 4
    "avg": ("UNWIND [1, 2, 3, 4] AS x RETURN avg(x)", 2.5),
    "collect": ("UNWIND [1, 2, 3, 4] AS x RETURN collect(x)", [1, 2, 3, 4]),
    "count": ("UNWIND [1, 2, null, 4] AS x RETURN count(x)", 3),
    "max": ("UNWIND [1, 2, 3, 4] AS x RETURN max(x)", 4),
    "min": ("UNWIND [1, 2, 3, 4] AS x RETURN min(x)", 1),
    "stdev": ("UNWIND [1, 2, 3, 4] AS x RETURN stdev(x)", math.sqrt(5 / 3)),
    "stdevp": ("UNWIND [1, 2, 3, 4] AS x RETURN stDevP(x)", math.sqrt(5 / 4)),
    # 1, 2, 3, 4 at 0.5: the second value (2 of 4 at or below it); interpolated halfway from 2 to 3
    "percentiledisc": ("UNWIND [4, 1, 3, 2] AS x RETURN percentileDisc(x, 0.5)", 2),
    "percentilecont": ("UNWIND [4, 1, 3, 2] AS x RETURN percentileCont(x, 0.5)", 2.5),
    "sum": ("UNWIND [1, 2, 3, 4] AS x RETURN sum(x)", 10),
    # procedures
    "apoc.cypher.run": ("CALL apoc.cypher.run('RETURN $a + 1 AS x', {a: 1}) YIELD value RETURN value.x", 2),
    "apoc.cypher.runtimeboxed": (
        "CALL apoc.cypher.runTimeboxed('RETURN $a * 3 AS x', {a: 2}, 10000) YIELD value RETURN value.x",
        6,
    ),
    "db.labels": (
        "CALL db.labels() YIELD label RETURN collect(label)",
        ["Meta", "Neuron", "Segment", "Synapse", "SynapseSet"],
    ),
    "db.propertykeys": (
        "CALL db.propertyKeys() YIELD propertyKey WITH propertyKey WHERE propertyKey IN "
        "['bodyId', 'weight', 'location', 'nope'] RETURN collect(propertyKey)",
        ["bodyId", "location", "weight"],
    ),
    "db.relationshiptypes": (
        "CALL db.relationshipTypes() YIELD relationshipType RETURN collect(relationshipType)",
        ["ConnectsTo", "Contains", "SynapsesTo"],
    ),
    "dbms.components": (
        "CALL dbms.components() YIELD name, edition RETURN name + '/' + edition",
        "Neo4j Kernel/community",
    ),
}


def test_every_registry_entry_has_a_query():
    names = set(registry.FUNCTIONS) | set(registry.AGGREGATES) | set(registry.PROCEDURES)
    assert set(CALLS) == names, f"untested: {sorted(names - set(CALLS))}; unknown: {sorted(set(CALLS) - names)}"


@pytest.mark.parametrize("name", sorted(CALLS))
def test_registry_entry_runs(store, name):
    text, expected = CALLS[name]
    result = execute(store, text)
    assert len(result.data) == 1 and len(result.data[0]) == 1, result.data
    value = result.data[0][0]
    if isinstance(expected, float):
        assert value == pytest.approx(expected)
    else:
        assert value == expected and type(value) is type(expected)


def test_docs_list_the_registry():
    text = DOCS.read_text()
    match = re.search(r"<!-- registry:begin -->\n(.*?)\n<!-- registry:end -->", text, re.S)
    assert match, "docs/cypher.md has no registry block"
    assert match.group(1) == registry.markdown(), (
        "docs/cypher.md's list differs from flatprint.cypher.registry; paste registry.markdown() between the "
        "registry markers"
    )


def test_parser_and_analyzer_accept_the_same_procedures():
    """The parser's CALL whitelist is the registry's: nothing parses that the analyzer then refuses."""
    from flatprint.cypher.parser import READ_ONLY_PROCEDURES

    assert READ_ONLY_PROCEDURES == {key: entry.name for key, entry in registry.PROCEDURES.items()}


@pytest.mark.parametrize(
    "text",
    [
        "UNWIND [1] AS x RETURN [y IN [x] | y + x] AS a, reduce(s = 0, v IN [1] | s + v) AS b, "
        "ALL(q IN [1] WHERE q >= x) AS c",
        "MATCH (n:Segment) WITH n LIMIT 3 RETURN n.bodyId AS b ORDER BY n.pre",
        "MATCH (n:Segment) WITH n LIMIT 3 WITH * RETURN n.bodyId AS b",
        "MATCH (n:Segment) WITH n LIMIT 3 WITH n, count(*) AS c ORDER BY c RETURN n {.bodyId, c}",
        "CALL db.labels() YIELD label AS l WHERE l STARTS WITH 'S' RETURN l",
        "UNWIND [1, 2] AS x RETURN count(*) AS c ORDER BY count(*)",
    ],
)
def test_scoping_accepts_valid_queries(store, text):
    """Variables of comprehensions, ORDER BY over the pre-projection scope, WITH *, YIELD aliases: all in scope."""
    execute(store, text)


def test_tojson_text(store):
    # the text itself, checked independently of fromJsonList
    assert json.loads(execute(store, "RETURN apoc.convert.toJson({a: [1, 2]})").data[0][0]) == {"a": [1, 2]}


def test_every_registry_procedure_has_code():
    from flatprint.cypher.procedures import CATALOGUE

    assert set(CATALOGUE) | registry.QUERY_PROCEDURES == set(registry.PROCEDURES)
