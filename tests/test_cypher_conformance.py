"""Cypher semantics the openCypher TCK checks, with answers worked out on paper; and the pieces of
scripts/tck.py that read the kit and build a store from a scenario's setup (no kit needed).

Each query needs no graph (or a graph whose answer does not depend on the store), so the expected
values are the language's rules, not the engine's output.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from flatprint.cypher.engine import execute
from flatprint.cypher.errors import CypherSyntaxError
from flatprint.cypher.parser import parse
from flatprint.cypher.rewriter import expand_stars
from flatprint.errors import QueryError
from flatprint.store import Store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store(store_factory):
    opened = Store.open(store_factory(0))
    yield opened
    opened.close()


def one(store, text):
    result = execute(store, text, timeout=30)
    assert len(result.data) == 1, result.data
    return result.data[0]


# ---- list ordering, map equality, slices with null, single() ---------------------------------

COMPARISONS = [
    # lists compare element by element; a prefix sorts first; a null pair decides only when reached
    ("[1, 0] >= [1]", True),
    ("[1, null] >= [1]", True),
    ("[1, 2] >= [1, null]", None),
    ("[1, 'a'] >= [1, null]", None),
    ("[1, 2] >= [3, null]", False),
    ("[1, 2] < [3, 4]", True),
    ("[1, 2] < [1, 2, 0]", True),
    ("[[1], [2]] > [[1], [1, 5]]", True),
    ("[1] < ['a']", None),
    ("[] < [1]", True),
    # NaN is unordered but comparable against numbers, not against strings
    ("0.0 / 0.0 > 1", False),
    ("0.0 / 0.0 <= 0.0 / 0.0", False),
    ("0.0 / 0.0 < 'a'", None),
    # maps: different keys -> false; same keys -> the values' equality, null when a null is compared
    ("{} = {k: null}", False),
    ("{k: null} = {k: null}", None),
    ("{k: 1} = {k: null}", None),
    ("{k: 1, l: null} = {k: 1, l: 1}", None),
    ("{k: 1, l: null} = {k: 2, l: null}", False),
    ("{k: 'a', l: 2} = {l: 2, k: 'a'}", True),
    ("{k: 1} = {k: 1.0}", True),
    # slices: a null bound makes the slice null; an omitted bound is the end
    ("[1, 2, 3][null..null]", None),
    ("[1, 2, 3][1..null]", None),
    ("[1, 2, 3][..null]", None),
    ("[1, 2, 3][1..]", [2, 3]),
    ("[1, 2, 3][..-1]", [1, 2]),
    # single(): two matches decide false whatever the nulls; one match and a null is unknown
    ("single(x IN [34, 0, null, 5, 900] WHERE x < 10)", False),
    ("single(x IN [4, null] WHERE x < 10)", None),
    ("single(x IN [4, 20] WHERE x < 10)", True),
]


@pytest.mark.parametrize(("expression", "expected"), COMPARISONS)
def test_expression_on_paper(store, expression, expected):
    assert one(store, f"RETURN {expression} AS v") == [expected]


def test_list_element_containment_binds_tighter_than_comparison(store):
    # [1, 2] < ([3, 4] IN [[3, 4], false]) is [1, 2] < true: null; ([1, 2] < [3, 4]) IN [...] is false
    assert one(store, "RETURN [1, 2] < [3, 4] IN [[3, 4], false] AS a, ([1, 2] < [3, 4]) IN [[3, 4], false] AS c") == [
        None,
        False,
    ]


def test_order_by_lists_agrees_with_list_comparison(store):
    values = "[[2, 2], [2, -2], [1, 2], [], [1], [300, 0], [1, -20], [2, -2, 100]]"
    text = (
        f"WITH {values} AS values UNWIND values AS value "
        "WITH size([x IN values WHERE x < value]) AS smaller, value ORDER BY value "
        "RETURN collect(smaller) AS ranks, collect(value) AS sorted"
    )
    ranks, ordered = one(store, text)
    assert ranks == list(range(8))
    assert ordered == [[], [1], [1, -20], [1, 2], [2, -2], [2, -2, 100], [2, 2], [300, 0]]


# ---- rand() --------------------------------------------------------------------------------


def test_rand_is_uniform_in_the_unit_interval(store):
    low, high, mean = one(
        store, "UNWIND range(1, 2000) AS i WITH rand() AS r RETURN min(r) AS low, max(r) AS high, avg(r) AS mean"
    )
    assert 0.0 <= low < 0.01 and 0.99 < high < 1.0  # 2000 draws: both ends reached within 1 %
    assert abs(mean - 0.5) < 0.05


def test_rand_is_drawn_per_row(store):
    assert one(store, "UNWIND range(1, 50) AS i WITH rand() AS r RETURN count(DISTINCT r) AS n") == [50]


@pytest.mark.parametrize("text", ["RETURN count(rand())", "UNWIND [1, 2] AS x RETURN sum(x + rand())"])
def test_rand_inside_an_aggregation_is_refused(text):
    from flatprint.cypher.analyzer import analyze

    with pytest.raises(CypherSyntaxError, match=r"rand\(\) inside the aggregation"):
        analyze(parse(text))


# ---- RETURN * / WITH * ----------------------------------------------------------------------


def test_return_star_after_unwind_keeps_the_with_variables(store):
    result = execute(store, "WITH [1, 2, 3] AS list UNWIND list AS x RETURN *")
    assert result.columns == ["list", "x"]
    assert result.data == [[[1, 2, 3], 1], [[1, 2, 3], 2], [[1, 2, 3], 3]]


def test_return_star_columns_sorted_by_name(store):
    text = "WITH [1, 2] AS xs, [3] AS ys UNWIND xs AS x UNWIND ys AS y RETURN *"
    result = execute(store, text)
    assert result.columns == ["x", "xs", "y", "ys"]
    assert result.data == [[1, [1, 2], 3, [3]], [2, [1, 2], 3, [3]]]


def test_return_star_names_its_columns_when_no_row_arrives(store):
    result = execute(store, "UNWIND [] AS a WITH a, 1 AS b RETURN *")
    assert result.columns == ["a", "b"] and result.data == []


def test_expand_stars_lists_the_scope():
    clauses = expand_stars(parse("MATCH (n)-[r]->(m) WITH n, m UNWIND [1] AS k RETURN *, 2 AS two").parts[0].clauses)
    assert [item.column_name for item in clauses[-1].items] == ["k", "m", "n", "two"]
    assert not clauses[-1].star


# ---- DISTINCT, OPTIONAL MATCH from null ------------------------------------------------------


def test_distinct_keeps_every_distinct_row(store):
    # a regression: row-wise DISTINCT kept only the first row
    assert execute(store, "UNWIND [0, 2, 1, 2, 0, 1] AS x RETURN DISTINCT x ORDER BY x DESC").data == [[2], [1], [0]]
    assert execute(store, "UNWIND [0, 2, 1, 2, 0, 1] AS x WITH DISTINCT x ORDER BY x LIMIT 1 RETURN x").data == [[0]]


def test_match_from_a_node_bound_to_null_matches_nothing(store):
    # :Start labels no node, so a is null; before the fix the second MATCH ran as if a were free
    text = "OPTIONAL MATCH (a:Start) WITH a MATCH (a)-[:ConnectsTo]->(b) RETURN a, b"
    assert execute(store, text, timeout=10).data == []
    text = "OPTIONAL MATCH (a:Start) WITH a OPTIONAL MATCH p = (a)-[r]->(b) RETURN a, b, r, nodes(p)"
    assert execute(store, text, timeout=10).data == [[None, None, None, None]]


def test_null_literal_may_stand_for_a_node(store):
    text = "WITH null AS a OPTIONAL MATCH p = (a)-[r]->() RETURN nodes(p), relationships(p)"
    assert execute(store, text, timeout=10).data == [[None, None]]


# ---- scripts/tck.py: reading the kit, building a scenario's store ----------------------------


@pytest.fixture(scope="module")
def tck():
    spec = importlib.util.spec_from_file_location("tck_script", ROOT / "scripts" / "tck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_cells_unescape_bars_and_backslashes(tck):
    assert tck._cells(r"| 'a\\b' | 'x\|y' | 3 |") == ["'a\\b'", "'x|y'", "3"]


def test_setup_nodes_reads_creates_and_unwind(tck):
    nodes = tck.setup_nodes(
        ["CREATE ({num: 1, name: 'a}'}), (n {list: [1, 2]})\nCREATE ()", "UNWIND [5, 6] AS i CREATE ({v: i})"]
    )
    assert nodes == [{"num": 1, "name": "a}"}, {"list": [1, 2]}, {}, {"v": 5}, {"v": 6}]


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("CREATE (:A {num: 1})", "labels"),
        ("CREATE ()-[:T]->()", "relationships"),
        ("MATCH (n) CREATE ()", "setup clause 'MATCH'"),
    ],
)
def test_setup_outside_the_graph_model_says_why(tck, setup, reason):
    with pytest.raises(tck.OutOfReach, match=reason):
        tck.setup_nodes([setup])


def test_built_store_answers_from_the_setup_nodes(tck, store, tmp_path):
    nodes = tck.setup_nodes(["CREATE ({num: 3, name: 'c'}), ({num: 1}), ({name: 'b', tags: ['x']})"])
    built = Store.open(tck.build_store(store, tmp_path / "graph.duckdb", nodes))
    try:
        assert execute(built, "MATCH (n) RETURN n.num AS num ORDER BY num").data == [[1], [3], [None]]
        assert execute(built, "MATCH (n) WHERE n.name = 'b' RETURN n.tags AS t").data == [[["x"]]]
        assert execute(built, "MATCH (n) RETURN count(*) AS c").data == [[3]]
        assert execute(built, "MATCH (n:Synapse) RETURN count(*) AS c").data == [[0]]
    finally:
        built.close()


def test_a_property_of_two_types_cannot_be_a_column(tck, store, tmp_path):
    with pytest.raises(tck.OutOfReach, match="several types"):
        tck.build_store(store, tmp_path / "g.duckdb", [{"v": 1}, {"v": "one"}])


def test_expected_node_cells_compare_by_properties(tck):
    node = tck.expected_value("({num: 1})")
    assert tck.same({"bodyId": 7, "num": 1}, node, False)
    assert not tck.same({"bodyId": 7, "num": 2}, node, False)
    path = tck.expected_value("<({num: 1})>")  # length 0: flatprint returns [node]
    assert tck.same([{"bodyId": 7, "num": 1}], path, False)
    assert tck.same([{"bodyId": 1}, {"bodyId": 2, "a": 1}], tck.expected_value("[(), ({a: 1})]"), False)
    for cell in ("[:T {num: 1}]", "<()-[:T]->()>", "(:A {num: 1})"):
        with pytest.raises(tck.NotComparable):
            tck.expected_value(cell)


# ---- functions refusing arguments of the wrong type, percentiles, WHERE after WITH -----------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("RETURN range(true, 1, 1)", r"range\(\) of a boolean \(it takes integers\)"),
        ("RETURN range(0, 1.5)", r"range\(\) of a float"),
        ("RETURN toFloat(true)", r"toFloat\(\) of a boolean"),
        ("RETURN toBoolean(1.0)", r"toBoolean\(\) of a float"),
        ("RETURN toInteger([])", r"toInteger\(\) of a list"),
        ("RETURN toString({})", r"toString\(\) of a map"),
        ("RETURN type(1)", r"type\(\) of an integer"),
        ("UNWIND [1, 2] AS x RETURN percentileCont(x, 1.5)", r"percentile between 0.0 and 1.0"),
        # Python would answer 'aa' and 2: Cypher has no string repetition and no boolean arithmetic
        ("RETURN [x IN ['a', 1] | x * 2]", "cannot compute string \\* integer"),
        ("RETURN [x IN [true, 1] | x + 1]", "cannot compute boolean \\+ integer"),
    ],
)
def test_function_of_the_wrong_type_raises(store, text, message):
    with pytest.raises(QueryError, match=message):
        execute(store, text)


def test_conversions_of_the_right_types(store):
    text = "RETURN toBoolean(0), toBoolean('TRUE'), toInteger('12'), toInteger(true), toFloat('1.5'), toString(true)"
    assert one(store, text) == [False, True, 12, 1, 1.5, "true"]


def test_percentiles(store):
    # 10, 20, 30, 40: disc at p is the ceil(4p)-th value (0.5 -> 20, 0.51 -> 30); cont at p sits at
    # position 3p between them (0.5 -> 1.5: halfway 20..30; 0.25 -> 0.75: three quarters of 10..20)
    text = (
        "UNWIND [40, 10, 30, 20] AS x RETURN percentileDisc(x, 0.5), percentileDisc(x, 0.51), "
        "percentileCont(x, 0.5), percentileCont(x, 0.25), percentileDisc(x, 0.0), percentileCont(x, 1.0)"
    )
    assert one(store, text) == [20, 30, 25.0, 17.5, 10, 40.0]


def test_where_after_with_sees_the_variables_before_it(store):
    text = (
        "UNWIND [{k: 'a', v: 1}, {k: 'a', v: 2}, {k: 'b', v: 3}] AS m "
        "WITH DISTINCT m.k AS k WHERE m.v > 1 RETURN k ORDER BY k"
    )
    assert execute(store, text).data == [["a"], ["b"]]
    text = "UNWIND [{k: 'a', v: 1}, {k: 'b', v: 3}] AS m WITH m.k AS k WHERE k = 'a' OR m.v = 3 RETURN *"
    result = execute(store, text)
    assert result.columns == ["k"] and sorted(result.data) == [["a"], ["b"]]


@pytest.mark.parametrize(
    "text",
    [
        "UNWIND [1] AS x WITH count(*) AS c WHERE x = 1 RETURN c",  # aggregating: x is gone
        "UNWIND [1] AS x WITH 1 AS c ORDER BY c LIMIT 1 WHERE x = 1 RETURN c",  # paging: x is gone
    ],
)
def test_where_after_an_aggregating_or_paging_with_does_not(text):
    from flatprint.cypher.analyzer import analyze

    with pytest.raises(CypherSyntaxError, match="variable `x` not defined"):
        analyze(parse(text))


# ---- refusals by the analyzer: literal types, grouping keys next to aggregations --------------

REFUSED = [
    ("WITH 123 AS x RETURN x.num", "property access on an integer"),
    ("WITH [1, true] AS x RETURN x.num", "property access on a list"),
    ("RETURN properties('a')", r"properties\(\) of a string"),
    ("WITH true AS list, 0 AS idx RETURN list[idx]", "indexing a boolean"),
    ("WITH '1' AS list RETURN list[0]", "indexing a string"),
    ("WITH [1, 2] AS list, 4.7 AS idx RETURN list[idx]", "a list indexed by a float"),
    ("WITH {a: 1} AS m RETURN m[0]", "a map indexed by an integer"),
    ("MATCH (me)--(you) RETURN me.age + count(you.age)", "`me` is used next to an aggregation"),
    ("MATCH (me)--(you) RETURN me.age + you.age, me.age + you.age + count(*)", "`me` is used next to an aggregation"),
    ("MATCH (a) RETURN DISTINCT a.name ORDER BY a.age", r"variable `a` not defined \(ORDER BY after RETURN DISTINCT"),
    ("MATCH (a) WITH a.x AS k, min(a.y) AS m ORDER BY sum(a.y) RETURN k", r"aggregation sum\(a.y\) in ORDER BY"),
    ("MATCH (me)--(you) RETURN count(you.age) AS c ORDER BY me.age + count(you.age)", "`me` is used next to"),
    ("RETURN none(x IN ['Clara', 'Bob'] WHERE x % 2 = 0)", "% of a string"),
    ("RETURN any(x IN [false, true] WHERE x * 2 = 0)", r"\* of a boolean"),
    ("RETURN [1] - 1", "- of a list"),
]


@pytest.mark.parametrize(("text", "message"), REFUSED)
def test_refused_by_the_analyzer(text, message):
    from flatprint.cypher.analyzer import analyze

    with pytest.raises(CypherSyntaxError, match=message):
        analyze(parse(text))


ACCEPTED = [
    "WITH {a: 1} AS x RETURN x.a, x['a'], properties(x)",
    "WITH [1, 2] AS list, 1 AS idx RETURN list[idx]",
    "WITH null AS x RETURN x.a, x[0]",
    "RETURN none(x IN [1, 2] WHERE x % 2 = 0), [x IN ['a', 1] | x * 2], [x IN ['a'] | x + 'b']",
    "MATCH (n) RETURN n, n.pre + count(*)",
    "MATCH (me)--(you) RETURN me.age, me.age + count(you.age)",
    "MATCH (me)--(you) WITH me.age AS age, count(you.age) AS c ORDER BY me.age + count(you.age) RETURN age",
    "MATCH (n) RETURN n.type AS t, count(*) AS c ORDER BY c DESC, t",
    "MATCH (n) RETURN n.type, count(*) ORDER BY n.type, count(*)",
    "MATCH (n) RETURN DISTINCT n.type AS t ORDER BY n.type",
    "MATCH (n) WITH n, count(*) AS c ORDER BY n.bodyId RETURN n",
    "MATCH (a)<--(c) RETURN a.name, {foo: a.name = 'x', kids: collect(c.name)}",
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_accepted_by_the_analyzer(text):
    from flatprint.cypher.analyzer import analyze

    analyze(parse(text))
