"""Tests of the Cypher front end: tokenizer, parser, syntax tree and printer.

The acceptance corpus is every query captured from neuprint-python/navis and neuprintr
(``<reference>/*-queries/*.cypher``, found by tests/reference.py; the first line of each file is a
comment added by the capture, the rest is the exact query text). Without that data the corpus tests
skip, saying why; test_client_corpus.py still records and parses neuprint-python's queries at test time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from reference import MISSING, corpus_files, corpus_params, needs_reference

from flatprint.cypher import ast
from flatprint.cypher.ast import Direction
from flatprint.cypher.errors import (
    CypherError,
    CypherSyntaxError,
    CypherWriteError,
    UnsupportedCypherError,
)
from flatprint.cypher.parser import parse, parse_expression
from flatprint.cypher.tokens import TokenType, tokenize
from flatprint.errors import QueryError

CORPUS_FILES = corpus_files()
WRITE_QUERIES = {"admin.Transaction__01.cypher"}


def corpus_query(name: str) -> str:
    """The exact query text of a corpus file (without the capture's first comment line); skips the
    calling test when the corpus is not available."""
    if not CORPUS_FILES:
        pytest.skip(MISSING)
    for path in CORPUS_FILES:
        if path.name == name:
            return path.read_text().split("\n", 1)[1]
    raise KeyError(name)


def clauses_of(text: str) -> tuple[ast.Clause, ...]:
    return parse(text).clauses


def shape(expression: ast.Expression) -> str:
    """A fully parenthesised rendering of an expression tree, to check grouping."""
    if isinstance(expression, ast.BinaryOp):
        return f"({shape(expression.left)} {expression.operator} {shape(expression.right)})"
    if isinstance(expression, ast.UnaryOp):
        return f"({expression.operator} {shape(expression.operand)})"
    if isinstance(expression, ast.Comparison):
        parts = [shape(expression.operands[0])]
        for operator, operand in zip(expression.operators, expression.operands[1:]):
            parts += [operator, shape(operand)]
        return "(" + " ".join(parts) + ")"
    if isinstance(expression, ast.In):
        return f"({shape(expression.element)} IN {shape(expression.collection)})"
    if isinstance(expression, ast.RegexMatch):
        return f"({shape(expression.subject)} =~ {shape(expression.pattern)})"
    if isinstance(expression, ast.StringOp):
        return f"({shape(expression.subject)} {expression.operator} {shape(expression.search)})"
    if isinstance(expression, ast.IsNull):
        return f"({shape(expression.subject)} IS {'NOT ' if expression.negated else ''}NULL)"
    if isinstance(expression, ast.Property):
        return f"{shape(expression.subject)}.{expression.name}"
    return expression.to_cypher()


# ------------------------------------------------------------------------------------------
# The corpora
# ------------------------------------------------------------------------------------------


@needs_reference
def test_corpora_are_present():
    assert len(CORPUS_FILES) >= 186 + 58


@pytest.mark.parametrize("path", corpus_params(CORPUS_FILES))
def test_corpus_query_parses_and_round_trips(path: Path):
    text = path.read_text().split("\n", 1)[1]
    if path.name in WRITE_QUERIES:
        with pytest.raises(CypherWriteError):
            parse(text)
        return
    query = parse(text)
    printed = query.to_cypher()
    assert parse(printed) == query, printed
    assert parse(printed).to_cypher() == printed
    for clause in query.clauses:
        if isinstance(clause, ast.Call):
            assert clause.inner_query is not None
            assert parse(clause.inner_query.to_cypher()) == clause.inner_query


def test_write_query_in_corpus_is_refused_with_position():
    with pytest.raises(CypherWriteError) as caught:
        parse(corpus_query("admin.Transaction__01.cypher"))
    error = caught.value
    assert (error.construct, error.line, error.column) == ("SET", 1, 41)
    assert str(error) == "unsupported Cypher: SET at line 1, column 41 (the database is read-only)"


def test_corpus_backticked_rois_and_quote_in_string():
    (match, _return) = clauses_of(corpus_query("fetch_neurons__rois_any_quoted__01.cypher"))
    assert match.where == ast.BinaryOp(
        "OR",
        ast.Property(ast.Variable("n"), "AB(R)"),
        ast.Property(ast.Variable("n"), "a'L(R)"),
    )
    (match, _return) = clauses_of(corpus_query("fetch_neurons__instance_with_quote__01.cypher"))
    assert match.where.operands[1] == ast.Literal("a'L neuron")


def test_corpus_regex_with_backslash():
    (match, _return) = clauses_of(corpus_query("fetch_neurons__regex_backslash__01.cypher"))
    assert match.where == ast.RegexMatch(ast.Property(ast.Variable("n"), "type"), ast.Literal("DNge1\\d+"))


def test_corpus_with_order_by_then_where_and_dynamic_map_access():
    clauses = clauses_of(corpus_query("fetch_neurons__input_output_rois__01.cypher"))
    with_clause = clauses[3]
    assert isinstance(with_clause, ast.With)
    assert [item.column_name for item in with_clause.items][-1] == "roi_post"
    assert with_clause.items[-1].expression == ast.Index(
        ast.Index(ast.Variable("roiInfo"), ast.Variable("roi")), ast.Literal("post")
    )
    assert with_clause.order_by == (ast.SortItem(ast.Variable("roi")),)
    assert shape(with_clause.where) == "((size(inputRois) = 0) OR ((roi IN inputRois) AND (roi_post >= 5)))"


def test_corpus_run_timeboxed_keeps_string_and_parses_inner_query():
    call, return_clause = clauses_of(corpus_query("fetch_paths__max_len__01.cypher"))
    assert isinstance(call, ast.Call)
    assert call.procedure == "apoc.cypher.runTimeboxed"
    assert call.arguments[0].kind == "string" and "MATCH (src :Neuron" in call.arguments[0].value
    assert call.arguments[1:] == (ast.MapLiteral(), ast.Literal(5000))
    assert call.yield_items == (ast.YieldItem("value"),)
    assert [i.column_name for i in return_clause.items] == ["path", "weights", "path_length"]
    inner_match = call.inner_query.clauses[0]
    path = inner_match.patterns[2]
    assert path.variable == "p"
    assert path.relationships[0] == ast.RelPattern(None, ("ConnectsTo",), Direction.OUTGOING, True, 1, 3)
    # positions inside the string refer to the outer text
    assert (inner_match.line, inner_match.column) == (3, 13)


def test_corpus_all_shortest_paths_and_quantifiers():
    call, _ = clauses_of(corpus_query("fetch_shortest_paths__default__01.cypher"))
    match = call.inner_query.clauses[0]
    path = match.patterns[2]
    assert path.shortest == "allShortestPaths"
    assert path.relationships[0].variable_length
    assert (path.relationships[0].min_hops, path.relationships[0].max_hops) == (None, None)
    first = match.where.left
    assert first == ast.Quantifier(
        "ALL",
        "x",
        ast.FunctionCall("relationships", (ast.Variable("p"),)),
        ast.Comparison((ast.Property(ast.Variable("x"), "weight"), ast.Literal(5)), (">=",)),
    )


def test_corpus_neuprintr_paths_binds_a_variable_named_like_a_type():
    (match, _return) = clauses_of(corpus_query("neuprint_get_paths__01.cypher"))
    source, relationship, end = match.patterns[0].elements
    assert source == ast.NodePattern("src", ("Neuron",))
    assert relationship == ast.RelPattern("ConnectsTo", (), Direction.OUTGOING, True, 1, 2)
    assert end == ast.NodePattern("Neuron")
    assert _return.items[0].alias == "length(path)"


def test_corpus_neuprintr_spaces_after_colons_and_label_spacing():
    (match, _return) = clauses_of(corpus_query("neuprint_get_shortest_paths__01.cypher"))
    source, relationship, dest = match.patterns[0].elements
    assert source.labels == ("Neuron",) and relationship.variable == "c"
    assert relationship.types == ("ConnectsTo",)
    (match, _return) = clauses_of(corpus_query("neuprint_search__04.cypher"))
    assert match.patterns[0].elements[0] == ast.NodePattern("n", ("Neuron",))
    assert _return.items[0].expression == ast.FunctionCall("count", (ast.Variable("n"),))
    assert _return.items[0].column_name == "count(n)"


def test_corpus_unaliased_columns_are_named_by_their_text():
    (_match, return_clause) = clauses_of(corpus_query("fetch_custom__simple__01.cypher"))
    assert [item.column_name for item in return_clause.items] == ["n.type", "n.instance"]
    (_match, return_clause) = clauses_of(corpus_query("neuprint_search__01.cypher"))
    assert return_clause.items[0].column_name == "apoc.meta.type(n.`type`)"
    assert return_clause.limit == ast.Literal(1)


def test_corpus_leading_with_unwind_and_keys_in_upper_case():
    clauses = clauses_of(corpus_query("fetch_mean_synapses__by_roi__02.cypher"))
    assert isinstance(clauses[0], ast.With)
    assert clauses[0].items[0].expression.items[-1] == ast.Literal("a'L(R)")
    unwind = next(c for c in clauses if isinstance(c, ast.Unwind))
    assert unwind.expression == ast.FunctionCall("KEYS", (ast.Variable("s"),))
    assert unwind.expression.lower_name == "keys"
    distinct_with = [c for c in clauses if isinstance(c, ast.With) and c.distinct]
    assert len(distinct_with) == 1


def test_corpus_map_dot_access_and_return_distinct():
    (_match, _with, return_clause) = clauses_of(corpus_query("neuprint_bodies_in_ROI__01.cypher"))
    assert return_clause.items[4].expression == ast.Property(ast.Property(ast.Variable("roiInfo"), "FB"), "pre")
    clauses = clauses_of(corpus_query("neuprint_get_synapses__01.cypher"))
    assert clauses[-1].distinct
    assert clauses[-1].items[0].expression == ast.FunctionCall("id", (ast.Variable("s"),))
    directions = [r.direction for r in clauses[2].patterns[0].relationships]
    assert directions == [Direction.OUTGOING] * 2 + [Direction.INCOMING] * 3


# ------------------------------------------------------------------------------------------
# Tokenizer
# ------------------------------------------------------------------------------------------


def kinds(text: str) -> list[TokenType]:
    return [token.type for token in tokenize(text)][:-1]


def test_keywords_are_case_insensitive_and_identifiers_keep_their_case():
    tokens = tokenize("match Match MATCH bodyId")
    assert [t.value for t in tokens[:3]] == ["MATCH"] * 3
    assert all(t.type is TokenType.KEYWORD for t in tokens[:3])
    assert (tokens[3].type, tokens[3].value) == (TokenType.IDENTIFIER, "bodyId")


def test_backticked_identifiers():
    tokens = tokenize("`a'L(R)` `AB(R)` `x``y` `MATCH`")
    assert [t.value for t in tokens[:-1]] == ["a'L(R)", "AB(R)", "x`y", "MATCH"]
    assert all(t.type is TokenType.QUOTED_IDENTIFIER for t in tokens[:-1])


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ('"a\'L(R)"', "a'L(R)"),
        ("'DNge1\\\\d+'", "DNge1\\d+"),
        ("'it\\'s'", "it's"),
        ('"say \\"hi\\""', 'say "hi"'),
        ("'tab\\there\\nnew'", "tab\there\nnew"),
        ("'\\u00e9\\U0001F600'", "é\U0001f600"),
        ("'multi\nline'", "multi\nline"),
        ("''", ""),
    ],
)
def test_string_literals_and_escapes(source: str, value: str):
    (token, _eof) = tokenize(source)
    assert (token.type, token.value) == (TokenType.STRING, value)


def test_numbers_parameters_and_ranges():
    tokens = tokenize("42 0x1F 0o17 1.5 .5 1e9 1.5E-3 $x $0 $`a b` 1..3 *..3")
    values = [(t.type, t.value) for t in tokens[:-1]]
    assert values == [
        (TokenType.INTEGER, 42),
        (TokenType.INTEGER, 31),
        (TokenType.INTEGER, 15),
        (TokenType.FLOAT, 1.5),
        (TokenType.FLOAT, 0.5),
        (TokenType.FLOAT, 1e9),
        (TokenType.FLOAT, 1.5e-3),
        (TokenType.PARAMETER, "x"),
        (TokenType.PARAMETER, "0"),
        (TokenType.PARAMETER, "a b"),
        (TokenType.INTEGER, 1),
        (TokenType.DOTDOT, ".."),
        (TokenType.INTEGER, 3),
        (TokenType.STAR, "*"),
        (TokenType.DOTDOT, ".."),
        (TokenType.INTEGER, 3),
    ]


def test_operators_longest_match_first():
    assert kinds("=~ <> <= >= -> <- .. | = < > - + * / % ^ != . : ;") == [
        TokenType.REGEX_MATCH,
        TokenType.NEQ,
        TokenType.LTE,
        TokenType.GTE,
        TokenType.ARROW_RIGHT,
        TokenType.ARROW_LEFT,
        TokenType.DOTDOT,
        TokenType.PIPE,
        TokenType.EQ,
        TokenType.LT,
        TokenType.GT,
        TokenType.MINUS,
        TokenType.PLUS,
        TokenType.STAR,
        TokenType.SLASH,
        TokenType.PERCENT,
        TokenType.CARET,
        TokenType.NEQ,
        TokenType.DOT,
        TokenType.COLON,
        TokenType.SEMICOLON,
    ]
    assert kinds("(a)-->(b)<--(c)") == [
        TokenType.LPAREN, TokenType.IDENTIFIER, TokenType.RPAREN, TokenType.MINUS,
        TokenType.ARROW_RIGHT, TokenType.LPAREN, TokenType.IDENTIFIER, TokenType.RPAREN,
        TokenType.ARROW_LEFT, TokenType.MINUS, TokenType.LPAREN, TokenType.IDENTIFIER,
        TokenType.RPAREN,
    ]  # fmt: skip


def test_comments_are_skipped_and_positions_kept():
    text = "// first line\nMATCH /* a\nblock */ (n)\n  RETURN n // end"
    tokens = tokenize(text)
    assert [(t.text, t.line, t.column) for t in tokens[:-1]] == [
        ("MATCH", 2, 1),
        ("(", 3, 10),
        ("n", 3, 11),
        (")", 3, 12),
        ("RETURN", 4, 3),
        ("n", 4, 10),
    ]
    assert text[tokens[4].offset : tokens[4].end] == "RETURN"


def test_comment_markers_inside_strings_are_text():
    (token, _eof) = tokenize("'// not a comment /* either */'")
    assert token.value == "// not a comment /* either */"


# ------------------------------------------------------------------------------------------
# Expressions and precedence
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "grouping"),
    [
        ("a OR b AND c", "(a OR (b AND c))"),
        ("a AND b OR c", "((a AND b) OR c)"),
        ("a OR b XOR c", "(a OR (b XOR c))"),
        ("a XOR b AND c", "(a XOR (b AND c))"),
        ("NOT a AND b", "((NOT a) AND b)"),
        ("NOT a = b", "(NOT (a = b))"),
        ("NOT NOT a", "(NOT (NOT a))"),
        ("a = b + c", "(a = (b + c))"),
        ("a + b * c", "(a + (b * c))"),
        ("a * b ^ c", "(a * (b ^ c))"),
        ("a - b - c", "((a - b) - c)"),
        ("a / b * c", "((a / b) * c)"),
        ("2 ^ 3 ^ 2", "((2 ^ 3) ^ 2)"),
        ("-a ^ 2", "((- a) ^ 2)"),
        ("-a.b", "(- a.b)"),
        ("a + b IN c", "((a + b) IN c)"),
        ("a = b IN c", "(a = (b IN c))"),
        ("a IN b = c", "((a IN b) = c)"),
        ("x =~ 'a' OR y", "((x =~ 'a') OR y)"),
        ("k STARTS WITH 'nt' AND k ENDS WITH 'x'", "((k STARTS WITH 'nt') AND (k ENDS WITH 'x'))"),
        ("a CONTAINS b + c", "(a CONTAINS (b + c))"),
        ("a IS NULL OR b IS NOT NULL", "((a IS NULL) OR (b IS NOT NULL))"),
        ("NOT a IS NULL", "(NOT (a IS NULL))"),
        ("1 < x <= 5", "(1 < x <= 5)"),
        ("(a OR b) AND c", "((a OR b) AND c)"),
        ("x<-1", "(x < -1)"),
        ("n.status = 'Traced' AND (n.FB) OR n.bodyId in [1, 2]",
         "(((n.status = 'Traced') AND n.FB) OR (n.bodyId IN [1, 2]))"),
    ],
)  # fmt: skip
def test_operator_precedence(source: str, grouping: str):
    expression = parse_expression(source)
    assert shape(expression) == grouping
    assert parse_expression(expression.to_cypher()) == expression


def test_negative_numbers_are_literals():
    assert parse_expression("-5") == ast.Literal(-5)
    assert parse_expression("- 1.5") == ast.Literal(-1.5)
    assert parse_expression("-(-5)") == ast.Literal(5)
    assert parse_expression("2 * -3") == ast.BinaryOp("*", ast.Literal(2), ast.Literal(-3))
    assert parse_expression("-9223372036854775808") == ast.Literal(-(2**63))
    assert parse_expression("-x") == ast.UnaryOp("-", ast.Variable("x"))
    assert parse_expression("(-2).x").to_cypher() == "(-2).x"


def test_literal_kinds_make_equality_strict():
    assert ast.Literal(1) != ast.Literal(1.0)
    assert ast.Literal(1) != ast.Literal(True)
    assert ast.Literal(None).kind == "null"
    assert parse_expression("TRUE") == ast.Literal(True)
    assert parse_expression("Null") == ast.Literal(None)


def test_keyword_named_properties_and_case_insensitive_functions():
    for key in ("size", "group", "type", "count", "class", "order", "end", "status"):
        assert parse_expression(f"n.{key}") == ast.Property(ast.Variable("n"), key)
    assert parse_expression("KEYS(n)").lower_name == parse_expression("keys(n)").lower_name
    assert parse_expression("COUNT(*)") == ast.CountStar()
    assert parse_expression("count(DISTINCT x)") == ast.FunctionCall("count", (ast.Variable("x"),), distinct=True)
    assert parse_expression("count") == ast.Variable("count")


def test_dotted_function_names_and_postfix_chains():
    assert parse_expression("apoc.convert.fromJsonMap(c.roiInfo)[k].post") == ast.Property(
        ast.Index(
            ast.FunctionCall("apoc.convert.fromJsonMap", (ast.Property(ast.Variable("c"), "roiInfo"),)),
            ast.Variable("k"),
        ),
        "post",
    )
    assert parse_expression("s.location.x") == ast.Property(ast.Property(ast.Variable("s"), "location"), "x")
    assert parse_expression("l[1..3]") == ast.Slice(ast.Variable("l"), ast.Literal(1), ast.Literal(3))
    assert parse_expression("l[..3]") == ast.Slice(ast.Variable("l"), None, ast.Literal(3))
    assert parse_expression("n:Neuron:Segment") == ast.LabelPredicate(ast.Variable("n"), ("Neuron", "Segment"))


def test_exists_forms_and_pattern_predicates():
    assert parse_expression("exists(n.somaLocation)") == ast.Exists(ast.Property(ast.Variable("n"), "somaLocation"))
    pattern = ast.PathPattern((ast.NodePattern("a"), ast.RelPattern(types=("ConnectsTo",)), ast.NodePattern("b")))
    assert parse_expression("EXISTS((a)-[:ConnectsTo]->(b))") == ast.Exists(ast.PatternPredicate(pattern))
    assert parse_expression("NOT (a)-[:ConnectsTo]->(b)") == ast.UnaryOp("NOT", ast.PatternPredicate(pattern))
    assert parse_expression("(a)") == ast.Variable("a")  # one node is a parenthesised variable
    assert parse_expression("(a) - (b)") == ast.BinaryOp("-", ast.Variable("a"), ast.Variable("b"))


def test_comprehensions_quantifiers_case_reduce_and_maps():
    assert parse_expression("[k IN keys(s) WHERE k STARTS WITH 'nt']") == ast.ListComprehension(
        "k",
        ast.FunctionCall("keys", (ast.Variable("s"),)),
        ast.StringOp("STARTS WITH", ast.Variable("k"), ast.Literal("nt")),
    )
    assert parse_expression("[x in relationships(p) | x.weight]").projection == ast.Property(
        ast.Variable("x"), "weight"
    )
    for kind in ("all", "ANY", "None", "single"):
        quantifier = parse_expression(f"{kind}(x IN l WHERE x > 1)")
        assert isinstance(quantifier, ast.Quantifier) and quantifier.kind == kind.upper()
    case = parse_expression("CASE WHEN a THEN 1 ELSE 2 END")
    assert case == ast.Case(None, (ast.CaseAlternative(ast.Variable("a"), ast.Literal(1)),), ast.Literal(2))
    simple_case = parse_expression("case n.x when 1 then 'one' end")
    assert simple_case.subject == ast.Property(ast.Variable("n"), "x")
    assert isinstance(parse_expression("reduce(t = 0, x IN l | t + x)"), ast.Reduce)
    assert parse_expression("{bodyId: 10001, `a b`: [1, 'x']}").as_dict()["a b"] == ast.ListLiteral(
        (ast.Literal(1), ast.Literal("x"))
    )
    projection = parse_expression("n {.bodyId, .*, total: 1, m}")
    assert [item.kind for item in projection.items] == ["property", "all_properties", "literal", "variable"]
    comprehension = parse_expression("[(a)-->(b) WHERE b.x | b.y]")
    assert isinstance(comprehension, ast.PatternComprehension)
    assert parse_expression("[(x IN l)]") == ast.ListLiteral((ast.In(ast.Variable("x"), ast.Variable("l")),))


# ------------------------------------------------------------------------------------------
# Clauses and patterns
# ------------------------------------------------------------------------------------------


def test_patterns_directions_types_and_hops():
    (match, _r) = clauses_of("MATCH (a)-[r:A|B]-(b)<-[:C|:D]-(c)-[*]->(d)-[*2]->(e)-[*..3 {w: 1}]->(f)<-->(g) RETURN a")
    rels = match.patterns[0].relationships
    assert rels[0] == ast.RelPattern("r", ("A", "B"), Direction.UNDIRECTED)
    assert rels[1].types == ("C", "D") and rels[1].direction is Direction.INCOMING
    assert (rels[2].variable_length, rels[2].min_hops, rels[2].max_hops) == (True, None, None)
    assert (rels[3].min_hops, rels[3].max_hops) == (2, 2)
    assert (rels[4].min_hops, rels[4].max_hops) == (None, 3)
    assert rels[4].properties == ast.MapLiteral((("w", ast.Literal(1)),))
    assert rels[5].direction is Direction.UNDIRECTED


def test_match_clauses_optional_multiple_and_named_paths():
    clauses = clauses_of(
        "MATCH (n :Neuron:Segment {bodyId: $id}), p = shortestPath((n)-[*]-(m)) "
        "OPTIONAL MATCH (n)-->(x) WHERE x.a RETURN n"
    )
    first, second, _ = clauses
    assert first.patterns[0].nodes[0] == ast.NodePattern(
        "n", ("Neuron", "Segment"), ast.MapLiteral((("bodyId", ast.Parameter("id")),))
    )
    assert (first.patterns[1].variable, first.patterns[1].shortest) == ("p", "shortestPath")
    assert second.optional and not first.optional
    assert second.where == ast.Property(ast.Variable("x"), "a")


def test_with_return_order_skip_limit_distinct_and_star():
    with_clause, unwind, return_clause = clauses_of(
        "WITH DISTINCT *, 1 AS one ORDER BY one DESC, x ASC SKIP 2 LIMIT $n WHERE one > 0 "
        "UNWIND [1, 2] AS x RETURN DISTINCT x AS y ORDER BY y DESCENDING SKIP 1 LIMIT 10"
    )
    assert with_clause.distinct and with_clause.star
    assert [s.descending for s in with_clause.order_by] == [True, False]
    assert (with_clause.skip, with_clause.limit) == (ast.Literal(2), ast.Parameter("n"))
    assert with_clause.where is not None
    assert unwind == ast.Unwind(ast.ListLiteral((ast.Literal(1), ast.Literal(2))), "x")
    assert return_clause.distinct and return_clause.order_by[0].descending


def test_union_and_union_all():
    query = parse("MATCH (n) RETURN n.x AS x UNION MATCH (m) RETURN m.x AS x")
    assert len(query.parts) == 2 and not query.union_all
    query = parse("RETURN 1 AS x UNION ALL RETURN 2 AS x UNION ALL RETURN 3 AS x;")
    assert len(query.parts) == 3 and query.union_all
    assert parse(query.to_cypher()) == query


def test_standalone_and_whitelisted_calls():
    (call,) = clauses_of("CALL db.labels()")
    assert call == ast.Call("db.labels")
    (call, _r) = clauses_of("CALL db.labels() YIELD label AS l WHERE l <> 'Meta' RETURN l")
    assert call.yield_items == (ast.YieldItem("label", "l"),)
    assert call.inner_query is None


def test_nodes_carry_positions():
    query = parse("MATCH (n:Neuron)\nWHERE n.bodyId = 1\nRETURN n.bodyId AS id")
    match, return_clause = query.clauses
    assert (match.line, match.column) == (1, 1)
    assert (match.patterns[0].nodes[0].line, match.patterns[0].nodes[0].column) == (1, 7)
    comparison = match.where
    assert (comparison.line, comparison.column) == (2, 16)  # the operator
    assert (comparison.operands[0].line, comparison.operands[0].column) == (2, 9)  # 'bodyId'
    assert (return_clause.line, return_clause.column) == (3, 1)
    assert all(node.line > 0 for node in query.walk())


def test_walk_visits_every_node():
    query = parse("MATCH (n)-[e]->(m) WHERE n.x IN [1, 2] RETURN count(*) AS c")
    names = [type(node).__name__ for node in query.walk()]
    assert names[:3] == ["Query", "SingleQuery", "Match"]
    assert {"NodePattern", "RelPattern", "In", "ListLiteral", "CountStar", "ProjectionItem"} <= set(names)


def test_trees_are_immutable():
    variable = ast.Variable("n")
    with pytest.raises(AttributeError):
        variable.name = "m"  # type: ignore[misc]


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------


def test_error_classes():
    for error_class in (CypherSyntaxError, UnsupportedCypherError, CypherWriteError):
        assert issubclass(error_class, QueryError) and issubclass(error_class, CypherError)
    assert issubclass(CypherWriteError, UnsupportedCypherError)


def test_syntax_error_position_on_line_three():
    text = "MATCH (n:Neuron)\nWHERE n.bodyId = 10001\nRETURN n.bodyId AS id, n.type AS )"
    with pytest.raises(CypherSyntaxError) as caught:
        parse(text)
    error = caught.value
    assert (error.line, error.column, error.construct) == (3, 34, ")")
    assert str(error) == ("invalid Cypher: expected an alias after AS but found ')' at line 3, column 34")


@pytest.mark.parametrize(
    ("text", "line", "column", "construct"),
    [
        ("MATCH (n)\nWHERE n.x = 1\n  RETURN n #", 3, 12, "#"),
        ("MATCH (n)\nWHERE n.x = 'abc\nRETURN n", 2, 13, "'"),
        ("MATCH (n)\n\nRETURN n.type =~ 'a\\d'", 3, 20, "\\d"),
        ("MATCH (n) RETURN n LIMIT", 1, 25, "end of input"),
        ("MATCH (n RETURN n", 1, 10, "RETURN"),
        ("MATCH (n)-[:T*1.5]->(m) RETURN n", 1, 15, "1.5"),
        ("MATCH (n) RETURN n WHERE n.x", 1, 20, "WHERE"),
        ("RETURN 9223372036854775808", 1, 8, "9223372036854775808"),
        ("RETURN `unterminated", 1, 8, "`"),
        ("MATCH (n)", 1, 1, "MATCH"),
        ("", 1, 1, "end of input"),
        ("MATCH (n) WITH n.x RETURN 1", 1, 16, "n.x"),
        ("RETURN 1 AS a, 2 AS a", 1, 16, "a"),
        ("RETURN 1 AS x UNION RETURN 2 AS x UNION ALL RETURN 3 AS x", 1, 35, "UNION ALL"),
        ("MATCH (n) RETURN n SKIP 1 MATCH (m) RETURN m", 1, 27, "MATCH"),
        ("RETURN ALL(x IN l)", 1, 18, ")"),
        ("RETURN a = NOT b", 1, 12, "NOT"),
    ],
)
def test_syntax_errors_name_construct_and_position(text, line, column, construct):
    with pytest.raises(CypherSyntaxError) as caught:
        parse(text)
    assert (caught.value.line, caught.value.column, caught.value.construct) == (line, column, construct)
    assert str(caught.value).startswith("invalid Cypher: ")
    assert str(caught.value).endswith(f"at line {line}, column {column}")


@pytest.mark.parametrize(
    ("text", "construct", "column"),
    [
        ("CREATE (n:Neuron {bodyId: 1}) RETURN n", "CREATE", 1),
        ("MERGE (n:Neuron {bodyId: 1}) RETURN n", "MERGE", 1),
        ("MATCH (n) SET n.type = 'X' RETURN n", "SET", 11),
        ("MATCH (n) DELETE n", "DELETE", 11),
        ("MATCH (n) detach delete n", "DETACH DELETE", 11),
        ("MATCH (n) REMOVE n.type RETURN n", "REMOVE", 11),
        ("MATCH (n) FOREACH (x IN [1] | SET n.a = x)", "FOREACH", 11),
        ("DROP INDEX foo", "DROP", 1),
        ("MATCH (n) RETURN n.bodyId AS id SET n.x = 1", "SET", 33),
    ],
)
def test_write_clauses_are_refused(text, construct, column):
    with pytest.raises(CypherWriteError) as caught:
        parse(text)
    assert (caught.value.construct, caught.value.line, caught.value.column) == (construct, 1, column)
    assert str(caught.value) == (
        f"unsupported Cypher: {construct} at line 1, column {column} (the database is read-only)"
    )


def test_write_inside_run_timeboxed_is_refused_at_outer_position():
    text = 'CALL apoc.cypher.runTimeboxed("MATCH (n)\n  CREATE (m)\n RETURN 1", {}, 5000)\nYIELD value RETURN value'
    with pytest.raises(CypherWriteError) as caught:
        parse(text)
    assert (caught.value.construct, caught.value.line, caught.value.column) == ("CREATE", 2, 3)


@pytest.mark.parametrize(
    ("text", "construct", "column"),
    [
        ("LOAD CSV FROM 'file:///x.csv' AS row RETURN row", "LOAD CSV", 1),
        ("CALL apoc.create.node(['X'], {}) YIELD node RETURN node", "procedure apoc.create.node", 6),
        ("CALL dbms.security.createUser('a', 'b', false)", "procedure dbms.security.createUser", 6),
        ("CALL { MATCH (n) RETURN n } RETURN n", "CALL subquery", 1),
        ("MATCH (n) WHERE EXISTS { MATCH (n)-->() } RETURN n", "EXISTS subquery", 17),
        ("MATCH (n) RETURN COUNT { (n)-->() } AS c", "COUNT subquery", 18),
        ("USE neo4j MATCH (n) RETURN n", "USE", 1),
        ("EXPLAIN MATCH (n) RETURN n", "EXPLAIN", 1),
        ("PROFILE MATCH (n) RETURN n", "PROFILE", 1),
        ("SHOW DATABASES", "SHOW", 1),
        ("GRANT ROLE admin TO bob", "GRANT", 1),
        ("USING PERIODIC COMMIT LOAD CSV FROM 'x' AS r RETURN r", "USING PERIODIC COMMIT", 1),
        ("MATCH (n:Neuron) USING INDEX n:Neuron(bodyId) RETURN n", "USING hint", 18),
        ("CALL db.labels() YIELD * RETURN 1", "YIELD *", 24),
        ("MATCH (n) RETURN n; MATCH (m) RETURN m", "several statements", 21),
        ("MATCH (a), (b) RETURN shortestPath((a)-[*]-(b)) AS p", "shortestPath outside MATCH", 23),
    ],
)
def test_unsupported_constructs_are_named(text, construct, column):
    with pytest.raises(UnsupportedCypherError) as caught:
        parse(text)
    assert not isinstance(caught.value, CypherWriteError)
    assert (caught.value.construct, caught.value.line, caught.value.column) == (construct, 1, column)
    assert str(caught.value).startswith(f"unsupported Cypher: {construct} at line 1, column {column}")


def test_deep_nesting_is_a_syntax_error_not_a_crash():
    depth = 3000
    with pytest.raises(CypherSyntaxError, match="nested too deeply"):
        parse("RETURN " + "(" * depth + "1" + ")" * depth)


# ------------------------------------------------------------------------------------------
# Random round trips
# ------------------------------------------------------------------------------------------

NAMES = st.sampled_from(["n", "m", "x", "bodyId", "count", "type", "end", "AB(R)", "a'L(R)", "a`b", "é"])
FUNCTION_NAMES = st.sampled_from(["f", "coalesce", "size", "count", "toLower", "apoc.map.removeKeys"])


def _literals() -> st.SearchStrategy[ast.Literal]:
    return st.one_of(
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
        st.booleans(),
        st.none(),
    ).map(ast.Literal)


def _is_number(expression: ast.Expression) -> bool:
    return isinstance(expression, ast.Literal) and expression.kind in ("integer", "float")


def _compound(children: st.SearchStrategy[ast.Expression]) -> st.SearchStrategy[ast.Expression]:
    pairs_of_operands = st.integers(min_value=1, max_value=3).flatmap(
        lambda n: st.tuples(
            st.lists(children, min_size=n + 1, max_size=n + 1).map(tuple),
            st.lists(st.sampled_from(["=", "<>", "<", ">", "<=", ">="]), min_size=n, max_size=n).map(tuple),
        )
    )
    return st.one_of(
        st.builds(ast.Property, children, NAMES),
        st.builds(ast.Index, children, children),
        st.builds(ast.Slice, children, st.none() | children, st.none() | children),
        st.builds(
            ast.LabelPredicate,
            children.filter(lambda e: not isinstance(e, ast.LabelPredicate)),
            st.lists(NAMES, min_size=1, max_size=2).map(tuple),
        ),
        st.builds(
            ast.BinaryOp, st.sampled_from(["OR", "XOR", "AND", "+", "-", "*", "/", "%", "^"]), children, children
        ),
        st.builds(ast.UnaryOp, st.just("NOT"), children),
        st.builds(ast.UnaryOp, st.sampled_from(["-", "+"]), children.filter(lambda e: not _is_number(e))),
        pairs_of_operands.map(lambda p: ast.Comparison(*p)),
        st.builds(ast.In, children, children),
        st.builds(ast.RegexMatch, children, children),
        st.builds(ast.StringOp, st.sampled_from(["STARTS WITH", "ENDS WITH", "CONTAINS"]), children, children),
        st.builds(ast.IsNull, children, st.booleans()),
        st.builds(ast.ListLiteral, st.lists(children, max_size=3).map(tuple)),
        st.builds(ast.MapLiteral, st.lists(st.tuples(NAMES, children), max_size=2).map(tuple)),
        st.builds(ast.FunctionCall, FUNCTION_NAMES, st.lists(children, max_size=3).map(tuple), st.booleans()),
        st.builds(ast.Exists, children),
        st.builds(ast.ListComprehension, NAMES, children, st.none() | children, st.none() | children),
        st.builds(ast.Quantifier, st.sampled_from(["ALL", "ANY", "NONE", "SINGLE"]), NAMES, children, children),
        st.builds(
            ast.Case,
            st.none() | children,
            st.lists(st.builds(ast.CaseAlternative, children, children), min_size=1, max_size=2).map(tuple),
            st.none() | children,
        ),
    )


_PATTERN = ast.PatternPredicate(
    ast.PathPattern((ast.NodePattern("a"), ast.RelPattern(types=("T",)), ast.NodePattern()))
)
EXPRESSIONS = st.recursive(
    st.one_of(
        _literals(),
        st.builds(ast.Variable, NAMES),
        st.builds(ast.Parameter, st.sampled_from(["p", "0", "a b"])),
        st.just(ast.CountStar()),
        st.just(_PATTERN),
    ),
    _compound,
    max_leaves=10,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EXPRESSIONS)
def test_random_expressions_round_trip(expression: ast.Expression):
    printed = expression.to_cypher()
    assert parse_expression(printed) == expression, printed
    query = ast.Query((ast.SingleQuery((ast.Return((ast.ProjectionItem(expression, "r"),)),)),))
    assert parse(query.to_cypher()) == query


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="MATCHRETURNWHEREnm()[]{}-<>:=.,'\"`$*|+ 0123456789\n/", max_size=40))
def test_arbitrary_text_gives_a_result_or_a_cypher_error(text: str):
    try:
        parse(text)
    except CypherError:
        pass


@pytest.mark.parametrize(
    "text",
    [
        "MATCH (n) WHERE n.bodyId IN [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] RETURN n",
        "WITH [10,20,30,40,50,60,70,80] AS ids RETURN ids",
        "RETURN [1 ,\t2 , 3, 4, 5, 6, 7, 8, 9]",  # tabs and spaces around commas
        "RETURN [1, 2, 3, 4, 5, 6, 7, 8.5, 9, 10, 11, 12, 13, 14, 15, 16]",  # a float cuts the run
        "RETURN [1, 2, 3, 4, 5, 6, 7, 8e3, 9, 10, 11, 12, 13, 14, 15, 16, 17]",
        "RETURN [1, 2, 3, 4, 5, 6, 7, 0x1F, 9, 10]",  # hex
        "RETURN [1, 2, 3, 4, 5, 6, 7, 8a, 9]",  # a number glued to a name
        "RETURN [1, 2, 3,\n 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]",  # a newline: positions by line
        "RETURN [-1, -2, -3, -4, -5, -6, -7, -8, -9]",
        "RETURN [1, 2, 3, 4, /* a comment */ 5, 6, 7, 8, 9, 10]",
        "RETURN [99999999999999999999999, 2, 3, 4, 5, 6, 7, 8, 9]",  # beyond 64 bits, as the loop reads it
        "RETURN 1,2,3,4,5,6,7,8 , 9",
    ],
)
def test_integer_runs_tokenize_as_the_general_loop(text, monkeypatch):
    """Long comma-separated integer lists are tokenized in bulk: the same tokens, values and
    positions as one token at a time (nested texts' shifted positions included)."""
    from flatprint.cypher import tokens

    bulk = tokens.tokenize(text, start_line=3, start_column=7)
    monkeypatch.setattr(tokens, "BULK_INTEGER_RUNS", False)
    assert bulk == tokens.tokenize(text, start_line=3, start_column=7)


def test_integer_list_items_parse_as_expressions_do():
    """List items that are one integer each take a short path: the same literals, positions and
    errors as the general one, and an item that continues past its integer still parses whole."""
    items = parse("RETURN [1, 22,\n  333, 1 + 2, 4][0] AS x").parts[0].clauses[0].items[0].expression.subject.items
    assert [type(i).__name__ for i in items] == ["Literal", "Literal", "Literal", "BinaryOp", "Literal"]
    assert [(i.line, i.column) for i in items[:3]] == [(1, 9), (1, 12), (2, 3)]
    assert items[:3] == (ast.Literal(1), ast.Literal(22), ast.Literal(333))
    assert parse_expression("[7, 8]") == ast.ListLiteral((ast.Literal(7), ast.Literal(8)))
    with pytest.raises(CypherSyntaxError, match="too large"):
        parse("RETURN [1, 9223372036854775808]")


def test_parse_with_the_callers_tokens_gives_the_same_tree_and_leaves_them_alone():
    """The plan cache hands the parser the tokens it made; the parser splits '<-' (``x<-1``) in its
    own copy."""
    text = "MATCH (n:Neuron) WHERE n.pre<-1 OR n.post < -2 RETURN n.bodyId AS id, [1, 2] AS l"
    tokens = tokenize(text)
    before = list(tokens)
    tree = parse(text, tokens=tokens)
    assert tree == parse(text)
    assert tokens == before and any(t.type is TokenType.ARROW_LEFT for t in tokens)
    assert "n.pre < -1" in tree.to_cypher()


@pytest.mark.parametrize("text", [f"RETURN {'9' * 5000}", f"RETURN [{', '.join(['1'] * 9)}, {'9' * 5000}]"])
def test_integer_literal_too_long_to_read_is_a_syntax_error(text):
    """Python reads at most 4,300 digits (it raised a bare ValueError); such a literal is beyond 64
    bits, refused as the parser refuses any."""
    with pytest.raises(CypherSyntaxError, match="integer literal is too large"):
        parse(text)
