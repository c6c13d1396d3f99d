"""Recursive-descent parser for read-only Cypher (Neo4j 4 dialect): text -> :class:`ast.Query`.

Entry points: :func:`parse` (a whole query) and :func:`parse_expression` (one expression).

Grammar (informal; keywords are case-insensitive)::

    query        = single_query { UNION [ALL] single_query } [";"]
    single_query = clause { clause }           -- ends with RETURN, or is a lone CALL
    clause       = [OPTIONAL] MATCH pattern {"," pattern} [WHERE expr]
                 | WITH [DISTINCT] items [ORDER BY sort {"," sort}] [SKIP expr] [LIMIT expr] [WHERE expr]
                 | UNWIND expr AS name
                 | RETURN [DISTINCT] items [ORDER BY ...] [SKIP expr] [LIMIT expr]
                 | CALL proc.name ["(" [expr {"," expr}] ")"] [YIELD name [AS name] {...} [WHERE expr]]
    pattern      = [name "="] ( chain | (shortestPath|allShortestPaths) "(" chain ")" )
    chain        = node { rel node }
    node         = "(" [name] {":" label} [map | $param] ")"
    rel          = ("-" | "<-") ["[" [name] [":" type {"|" [":"] type}] ["*" [int] [".." [int]]] [map | $param] "]"]
                   ("-" | "->")

Expressions use precedence climbing over the levels of :class:`ast.Precedence`
(``OR < XOR < AND < NOT < comparison < IN/STARTS WITH/=~/IS NULL < + - < * / % < ^ < unary - <
postfix``), with comparison chains (``a < b < c``) as one :class:`ast.Comparison`.

Writing clauses (``CREATE``, ``MERGE``, ``SET``, ``DELETE``, ``DETACH DELETE``, ``REMOVE``,
``FOREACH``, ``DROP``) raise :class:`CypherWriteError`; other valid but refused constructs
(``LOAD CSV``, procedures outside :data:`READ_ONLY_PROCEDURES`, subqueries, ``USE``, ``EXPLAIN``,
hints, several statements) raise :class:`UnsupportedCypherError`; anything else that does not
follow the grammar raises :class:`CypherSyntaxError`. All carry line and column.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flatprint.cypher import ast
from flatprint.cypher.ast import Direction, Precedence
from flatprint.cypher.errors import CypherSyntaxError, CypherWriteError, UnsupportedCypherError
from flatprint.cypher.registry import PROCEDURES, QUERY_PROCEDURES
from flatprint.cypher.tokens import Token, TokenType, split_left_arrow, tokenize

__all__ = ["parse", "parse_expression", "READ_ONLY_PROCEDURES", "QUERY_PROCEDURES"]

T = TypeVar("T")

#: Procedures that ``CALL`` accepts (matched case-insensitively), by lower-case name: the registry's.
READ_ONLY_PROCEDURES: dict[str, str] = {key: entry.name for key, entry in PROCEDURES.items()}

_WRITE_CLAUSES = frozenset({"CREATE", "MERGE", "SET", "DELETE", "REMOVE", "FOREACH", "DROP"})
_ADMIN_COMMANDS = frozenset({"GRANT", "REVOKE", "DENY", "ALTER", "START", "STOP", "TERMINATE", "RENAME"})  # fmt: skip

_COMPARISON_OPERATORS = {
    TokenType.EQ: "=",
    TokenType.NEQ: "<>",
    TokenType.LT: "<",
    TokenType.GT: ">",
    TokenType.LTE: "<=",
    TokenType.GTE: ">=",
}
_ARITHMETIC_LEVELS = {
    TokenType.PLUS: Precedence.ADDITIVE,
    TokenType.MINUS: Precedence.ADDITIVE,
    TokenType.STAR: Precedence.MULTIPLICATIVE,
    TokenType.SLASH: Precedence.MULTIPLICATIVE,
    TokenType.PERCENT: Precedence.MULTIPLICATIVE,
    TokenType.CARET: Precedence.POWER,
}
_BOOLEAN_LEVELS = {"OR": Precedence.OR, "XOR": Precedence.XOR, "AND": Precedence.AND}
_PREDICATE_KEYWORDS = frozenset({"IN", "STARTS", "ENDS", "CONTAINS", "IS"})
_SHORTEST_PATH_FUNCTIONS = {"shortestpath": "shortestPath", "allshortestpaths": "allShortestPaths"}
_NAME_TOKENS = (TokenType.IDENTIFIER, TokenType.QUOTED_IDENTIFIER, TokenType.KEYWORD)
_VARIABLE_TOKENS = (TokenType.IDENTIFIER, TokenType.QUOTED_IDENTIFIER)
_INT64_MAX = 2**63 - 1


def parse(text: str, *, start_line: int = 1, start_column: int = 1, tokens: list[Token] | None = None) -> ast.Query:
    """Parse a whole Cypher query.

    ``start_line``/``start_column`` give the position of ``text`` inside a larger text (for
    queries nested in strings); positions in the tree and in errors are then relative to it.
    ``tokens``: ``tokenize(text, ...)`` when the caller has it already (the plan cache), so that
    the text is not tokenized twice; the list is left as it is.

    Raises:
        CypherSyntaxError: the text is not valid Cypher.
        CypherWriteError: the query contains a writing clause (the database is read-only).
        UnsupportedCypherError: valid Cypher that flatprint does not run.
    """
    parser = _Parser(text, start_line=start_line, start_column=start_column, tokens=tokens)
    return parser.run(parser.parse_query)


def parse_expression(text: str) -> ast.Expression:
    """Parse a single Cypher expression (such as ``n.bodyId IN [1, 2]``); the whole text must be
    consumed. Raises the same errors as :func:`parse`."""
    parser = _Parser(text)

    def whole_expression() -> ast.Expression:
        expression = parser.parse_expression()
        parser.expect(TokenType.EOF, "end of expression")
        return expression

    return parser.run(whole_expression)


def _position(token: Token) -> dict[str, int]:
    return {"line": token.line, "column": token.column}


class _Parser:
    """Parser state: the token list, the current index and the source text."""

    def __init__(
        self, text: str, *, start_line: int = 1, start_column: int = 1, tokens: list[Token] | None = None
    ) -> None:
        self.text = text
        if tokens is None:
            tokens = tokenize(text, start_line=start_line, start_column=start_column)
        else:
            tokens = list(tokens)  # a copy: splitting '<-' (split_left_arrow) edits the list in place
        self.tokens = tokens
        self.index = 0

    # ---------------------------------------------------------------- token helpers

    def run(self, parse_function: Callable[[], T]) -> T:
        """Call ``parse_function``, turning a Python stack overflow into a syntax error."""
        try:
            return parse_function()
        except RecursionError:
            token = self.current
            raise CypherSyntaxError(
                "query is nested too deeply",
                line=token.line,
                column=token.column,
                construct=token.text,
            ) from None

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    @property
    def previous(self) -> Token:
        return self.tokens[self.index - 1]

    def peek(self, ahead: int = 1) -> Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.type is not TokenType.EOF:
            self.index += 1
        return token

    def at(self, *types: TokenType) -> bool:
        return self.current.type in types

    def at_keyword(self, *words: str, token: Token | None = None) -> bool:
        token = token or self.current
        return token.type is TokenType.KEYWORD and token.value in words

    def accept(self, token_type: TokenType) -> Token | None:
        return self.advance() if self.current.type is token_type else None

    def accept_keyword(self, word: str) -> Token | None:
        return self.advance() if self.at_keyword(word) else None

    def expect(self, token_type: TokenType, what: str | None = None) -> Token:
        if self.current.type is not token_type:
            raise self.error(what or token_type.value)
        return self.advance()

    def expect_keyword(self, word: str) -> Token:
        if not self.at_keyword(word):
            raise self.error(word)
        return self.advance()

    def error(self, expected: str, token: Token | None = None) -> CypherSyntaxError:
        """A syntax error saying what was expected where ``token`` (default: current) is."""
        token = token or self.current
        return CypherSyntaxError(
            f"expected {expected} but found {token.describe()}",
            line=token.line,
            column=token.column,
            construct=token.text or "end of input",
        )

    def speculate(self, parse_function: Callable[[], T]) -> T | None:
        """Try ``parse_function``; on a syntax error rewind and return None."""
        saved = self.index
        try:
            return parse_function()
        except CypherSyntaxError:
            self.index = saved
            return None

    def parse_name(self, what: str) -> str:
        """A symbolic name where keywords are allowed too (property keys, labels, aliases...)."""
        token = self.current
        if token.type not in _NAME_TOKENS:
            raise self.error(what)
        self.advance()
        return token.text if token.type is TokenType.KEYWORD else token.value  # type: ignore[return-value]

    def parse_variable_name(self) -> str:
        """A variable name: an identifier or a backticked name (not a reserved word)."""
        token = self.current
        if token.type not in _VARIABLE_TOKENS:
            raise self.error("a variable name")
        self.advance()
        return token.value  # type: ignore[return-value]

    # ---------------------------------------------------------------- queries and clauses

    def parse_query(self) -> ast.Query:
        first = self.current
        parts = [self.parse_single_query()]
        union_all: bool | None = None
        while union := self.accept_keyword("UNION"):
            is_all = self.accept_keyword("ALL") is not None
            if union_all is not None and union_all != is_all:
                raise CypherSyntaxError(
                    "UNION and UNION ALL cannot be mixed in one query",
                    line=union.line,
                    column=union.column,
                    construct="UNION ALL" if is_all else "UNION",
                )
            union_all = is_all
            parts.append(self.parse_single_query())
        if len(parts) > 1:
            for part in parts:
                if not isinstance(part.clauses[-1], ast.Return):
                    clause = part.clauses[-1]
                    raise CypherSyntaxError(
                        "each part of a UNION must end with RETURN",
                        line=clause.line,
                        column=clause.column,
                        construct=type(clause).__name__.upper(),
                    )
        semicolon = self.accept(TokenType.SEMICOLON)
        if not self.at(TokenType.EOF):
            token = self.current
            if semicolon is not None:
                raise UnsupportedCypherError(
                    "several statements", line=token.line, column=token.column,
                    reason="send one query per request",
                )  # fmt: skip
            raise self.error("a clause, UNION or end of input")
        return ast.Query(tuple(parts), union_all=bool(union_all), **_position(first))

    def parse_single_query(self) -> ast.SingleQuery:
        first = self.current
        clauses: list[ast.Clause] = []
        while (clause := self.parse_clause()) is not None:
            if clauses and isinstance(clauses[-1], ast.Return):
                raise CypherSyntaxError(
                    "RETURN must be the last clause of a query",
                    line=clause.line,
                    column=clause.column,
                    construct=type(clause).__name__.upper(),
                )
            clauses.append(clause)
        if not clauses:
            if self.at(TokenType.EOF) and self.index == 0:
                raise CypherSyntaxError("empty query", line=first.line, column=first.column, construct="end of input")
            raise self.error("a clause (MATCH, OPTIONAL MATCH, WITH, UNWIND, CALL or RETURN)")
        last = clauses[-1]
        standalone_call = len(clauses) == 1 and isinstance(last, ast.Call)
        if not isinstance(last, ast.Return) and not standalone_call:
            if not self.at(TokenType.EOF, TokenType.SEMICOLON) and not self.at_keyword("UNION"):
                raise self.error("a clause (MATCH, OPTIONAL MATCH, WITH, UNWIND, CALL or RETURN)")
            name = "OPTIONAL MATCH" if getattr(last, "optional", False) else type(last).__name__.upper()
            raise CypherSyntaxError(
                f"a query cannot end with {name}; it must end with RETURN",
                line=last.line,
                column=last.column,
                construct=name,
            )
        return ast.SingleQuery(tuple(clauses), **_position(first))

    def parse_clause(self) -> ast.Clause | None:
        """Parse one clause, or return None if the current token does not start one."""
        token = self.current
        if token.type is TokenType.IDENTIFIER and token.value.upper() in _ADMIN_COMMANDS:
            raise UnsupportedCypherError(
                token.value.upper(), line=token.line, column=token.column,
                reason="administration commands are not available",
            )  # fmt: skip
        if token.type is not TokenType.KEYWORD:
            return None
        word = token.value
        if word == "MATCH":
            return self.parse_match(optional=False)
        if word == "OPTIONAL":
            self.advance()
            if not self.at_keyword("MATCH"):
                raise self.error("MATCH after OPTIONAL")
            return self.parse_match(optional=True, first=token)
        if word == "WITH":
            return self.parse_with()
        if word == "UNWIND":
            return self.parse_unwind()
        if word == "RETURN":
            return self.parse_return()
        if word == "CALL":
            return self.parse_call()
        self.refuse_clause(token)
        return None

    def refuse_clause(self, token: Token) -> None:
        """Raise the right error if ``token`` starts a write or otherwise refused clause."""
        word = token.value
        where = {"line": token.line, "column": token.column}
        if word in _WRITE_CLAUSES:
            raise CypherWriteError(word, **where)
        if word == "DETACH":
            raise CypherWriteError("DETACH DELETE", **where)
        if word == "LOAD":
            raise UnsupportedCypherError("LOAD CSV", **where, reason="reading files is not supported")
        if word == "USING":
            construct = "USING PERIODIC COMMIT" if self.peek().text.upper() == "PERIODIC" else "USING"
            raise UnsupportedCypherError(construct, **where)
        if word == "USE":
            raise UnsupportedCypherError("USE", **where, reason="the dataset is chosen by the request")
        if word in ("EXPLAIN", "PROFILE", "SHOW"):
            raise UnsupportedCypherError(word, **where)

    def parse_match(self, *, optional: bool, first: Token | None = None) -> ast.Match:
        keyword = self.expect_keyword("MATCH")
        patterns = [self.parse_pattern()]
        while self.accept(TokenType.COMMA):
            patterns.append(self.parse_pattern())
        if self.at_keyword("USING"):
            token = self.current
            raise UnsupportedCypherError("USING hint", line=token.line, column=token.column)
        where = self.parse_expression() if self.accept_keyword("WHERE") else None
        return ast.Match(tuple(patterns), where, optional, **_position(first or keyword))

    def parse_with(self) -> ast.With:
        keyword = self.expect_keyword("WITH")
        distinct = self.accept_keyword("DISTINCT") is not None
        star, items = self.parse_projection_items("WITH")
        order_by, skip, limit = self.parse_order_skip_limit()
        where = self.parse_expression() if self.accept_keyword("WHERE") else None
        return ast.With(items, distinct, star, order_by, skip, limit, where, **_position(keyword))

    def parse_return(self) -> ast.Return:
        keyword = self.expect_keyword("RETURN")
        distinct = self.accept_keyword("DISTINCT") is not None
        star, items = self.parse_projection_items("RETURN")
        order_by, skip, limit = self.parse_order_skip_limit()
        return ast.Return(items, distinct, star, order_by, skip, limit, **_position(keyword))

    def parse_projection_items(self, clause: str) -> tuple[bool, tuple[ast.ProjectionItem, ...]]:
        """``[*,] expr [AS name] {, expr [AS name]}``; returns (star, items)."""
        star = False
        items: list[ast.ProjectionItem] = []
        if self.accept(TokenType.STAR):
            star = True
            if not self.accept(TokenType.COMMA):
                return star, ()
        seen: set[str] = set()
        while True:
            start = self.current
            expression = self.parse_expression()
            source_text = self.text[start.offset : self.previous.end]
            alias = self.parse_name("an alias after AS") if self.accept_keyword("AS") else None
            if clause == "WITH" and alias is None and not isinstance(expression, ast.Variable):
                raise CypherSyntaxError(
                    "an expression in WITH must be aliased (use AS)",
                    line=start.line,
                    column=start.column,
                    construct=source_text,
                )
            item = ast.ProjectionItem(expression, alias, source_text, **_position(start))
            if item.column_name in seen:
                raise CypherSyntaxError(
                    f"column name {item.column_name!r} is used more than once in {clause}",
                    line=start.line,
                    column=start.column,
                    construct=item.column_name,
                )
            seen.add(item.column_name)
            items.append(item)
            if not self.accept(TokenType.COMMA):
                return star, tuple(items)

    def parse_order_skip_limit(
        self,
    ) -> tuple[tuple[ast.SortItem, ...], ast.Expression | None, ast.Expression | None]:
        order_by: list[ast.SortItem] = []
        if self.accept_keyword("ORDER"):
            self.expect_keyword("BY")
            while True:
                start = self.current
                expression = self.parse_expression()
                descending = False
                if self.at_keyword("DESC", "DESCENDING"):
                    self.advance()
                    descending = True
                elif self.at_keyword("ASC", "ASCENDING"):
                    self.advance()
                order_by.append(ast.SortItem(expression, descending, **_position(start)))
                if not self.accept(TokenType.COMMA):
                    break
        skip = self.parse_expression() if self.accept_keyword("SKIP") else None
        limit = self.parse_expression() if self.accept_keyword("LIMIT") else None
        return tuple(order_by), skip, limit

    def parse_unwind(self) -> ast.Unwind:
        keyword = self.expect_keyword("UNWIND")
        expression = self.parse_expression()
        self.expect_keyword("AS")
        alias = self.parse_name("a variable name after AS")
        return ast.Unwind(expression, alias, **_position(keyword))

    def parse_call(self) -> ast.Call:
        keyword = self.expect_keyword("CALL")
        if self.at(TokenType.LBRACE):
            raise UnsupportedCypherError("CALL subquery", line=keyword.line, column=keyword.column)
        name_token = self.current
        procedure = self.parse_dotted_name("a procedure name")
        if procedure.lower() not in READ_ONLY_PROCEDURES:
            raise UnsupportedCypherError(
                f"procedure {procedure}",
                line=name_token.line,
                column=name_token.column,
                reason="only these read-only procedures can be called: "
                + ", ".join(sorted(READ_ONLY_PROCEDURES.values(), key=str.lower)),
            )
        arguments: tuple[ast.Expression, ...] = ()
        if self.accept(TokenType.LPAREN):
            arguments = self.parse_arguments()
        yield_items: list[ast.YieldItem] = []
        where = None
        if self.accept_keyword("YIELD"):
            if self.at(TokenType.STAR):
                token = self.current
                raise UnsupportedCypherError("YIELD *", line=token.line, column=token.column)
            while True:
                start = self.current
                name = self.parse_name("a procedure output name")
                alias = self.parse_name("a variable name after AS") if self.accept_keyword("AS") else None
                yield_items.append(ast.YieldItem(name, alias, **_position(start)))
                if not self.accept(TokenType.COMMA):
                    break
            where = self.parse_expression() if self.accept_keyword("WHERE") else None
        inner_query = None
        if procedure.lower() in QUERY_PROCEDURES and arguments:
            statement = arguments[0]
            if isinstance(statement, ast.Literal) and statement.kind == "string":
                inner_query = parse(statement.value, start_line=statement.line, start_column=statement.column + 1)
        return ast.Call(procedure, arguments, tuple(yield_items), where, inner_query, **_position(keyword))

    def parse_dotted_name(self, what: str) -> str:
        """``name {. name}`` (function and procedure names such as ``apoc.map.removeKeys``)."""
        parts = [self.parse_name(what)]
        while self.at(TokenType.DOT) and self.peek().type in _NAME_TOKENS:
            self.advance()
            parts.append(self.parse_name(what))
        return ".".join(parts)

    def parse_arguments(self) -> tuple[ast.Expression, ...]:
        """Comma-separated expressions up to the closing ``)`` (the ``(`` is already read)."""
        arguments: list[ast.Expression] = []
        if not self.at(TokenType.RPAREN):
            arguments.append(self.parse_expression())
            while self.accept(TokenType.COMMA):
                arguments.append(self.parse_expression())
        self.expect(TokenType.RPAREN, "',' or ')'")
        return tuple(arguments)

    # ---------------------------------------------------------------- patterns

    def parse_pattern(self) -> ast.PathPattern:
        """One comma-separated part of a MATCH: ``[p =] chain`` or ``[p =] shortestPath(chain)``."""
        first = self.current
        variable = None
        if first.type in _VARIABLE_TOKENS and self.peek().type is TokenType.EQ:
            variable = self.parse_variable_name()
            self.advance()
        token = self.current
        function = _SHORTEST_PATH_FUNCTIONS.get(str(token.value).lower())
        if token.type is TokenType.IDENTIFIER and function and self.peek().type is TokenType.LPAREN:
            self.advance()
            self.advance()
            elements = self.parse_pattern_chain()
            self.expect(TokenType.RPAREN, "')' closing " + function)
            if len(elements) != 3:
                raise CypherSyntaxError(
                    f"{function}(...) needs a pattern with exactly one relationship",
                    line=token.line,
                    column=token.column,
                    construct=function,
                )
            return ast.PathPattern(elements, variable, function, **_position(first))
        if not self.at(TokenType.LPAREN):
            raise self.error("a pattern such as (n:Label)")
        return ast.PathPattern(self.parse_pattern_chain(), variable, None, **_position(first))

    def parse_pattern_chain(self, *, in_expression: bool = False) -> tuple[ast.NodePattern | ast.RelPattern, ...]:
        """``node {rel node}``.

        In an expression (``in_expression``) the chain stops before a ``-`` that does not start
        a relationship, so ``(a)-->(b) - 1`` is the pattern minus one.
        """
        elements: list[ast.NodePattern | ast.RelPattern] = [self.parse_node_pattern()]
        while self.at(TokenType.MINUS, TokenType.ARROW_LEFT):
            if in_expression:
                step = self.speculate(lambda: (self.parse_rel_pattern(), self.parse_node_pattern()))
                if step is None:
                    break
                elements.extend(step)
            else:
                elements.append(self.parse_rel_pattern())
                elements.append(self.parse_node_pattern())
        return tuple(elements)

    def parse_node_pattern(self) -> ast.NodePattern:
        opening = self.expect(TokenType.LPAREN, "'(' starting a node pattern")
        variable = self.parse_variable_name() if self.at(*_VARIABLE_TOKENS) else None
        labels = self.parse_labels()
        properties = self.parse_pattern_properties()
        self.expect(TokenType.RPAREN, "')' closing the node pattern")
        return ast.NodePattern(variable, labels, properties, **_position(opening))

    def parse_labels(self) -> tuple[str, ...]:
        labels = []
        while self.accept(TokenType.COLON):
            labels.append(self.parse_name("a label"))
        return tuple(labels)

    def parse_pattern_properties(self) -> ast.Expression | None:
        if self.at(TokenType.LBRACE):
            return self.parse_map_literal()
        if self.at(TokenType.PARAMETER):
            token = self.advance()
            return ast.Parameter(token.value, **_position(token))  # type: ignore[arg-type]
        return None

    def parse_rel_pattern(self) -> ast.RelPattern:
        first = self.current
        points_left = self.accept(TokenType.ARROW_LEFT) is not None
        if not points_left:
            self.expect(TokenType.MINUS, "'-' or '<-' starting a relationship")
        variable = None
        types: list[str] = []
        variable_length = False
        min_hops = max_hops = None
        properties = None
        if self.accept(TokenType.LBRACKET):
            if self.at(*_VARIABLE_TOKENS):
                variable = self.parse_variable_name()
            if self.accept(TokenType.COLON):
                types.append(self.parse_name("a relationship type"))
                while self.accept(TokenType.PIPE):
                    self.accept(TokenType.COLON)
                    types.append(self.parse_name("a relationship type"))
            if self.accept(TokenType.STAR):
                variable_length = True
                min_hops, max_hops = self.parse_hop_range()
            properties = self.parse_pattern_properties()
            self.expect(TokenType.RBRACKET, "']' closing the relationship pattern")
        points_right = self.accept(TokenType.ARROW_RIGHT) is not None
        if not points_right:
            self.expect(TokenType.MINUS, "'-' or '->' ending a relationship")
        if points_left and not points_right:
            direction = Direction.INCOMING
        elif points_right and not points_left:
            direction = Direction.OUTGOING
        else:
            direction = Direction.UNDIRECTED
        return ast.RelPattern(
            variable,
            tuple(types),
            direction,
            variable_length,
            min_hops,
            max_hops,
            properties,
            **_position(first),
        )

    def parse_hop_range(self) -> tuple[int | None, int | None]:
        """After ``*``: nothing, ``N``, ``N..``, ``N..M`` or ``..M``."""
        low = high = None
        if self.at(TokenType.INTEGER):
            low = self.advance().value
            if not self.accept(TokenType.DOTDOT):
                return low, low  # type: ignore[return-value]
            if self.at(TokenType.INTEGER):
                high = self.advance().value
        elif self.accept(TokenType.DOTDOT):
            if self.at(TokenType.INTEGER):
                high = self.advance().value
        return low, high  # type: ignore[return-value]

    def parse_relationship_chain_in_expression(self) -> ast.PathPattern:
        """A pattern inside an expression (``(a)-->(b)``); it needs at least one relationship.
        Raises a syntax error (caught by :meth:`speculate`) if the text is not such a pattern."""
        first = self.current
        elements = self.parse_pattern_chain(in_expression=True)
        if len(elements) < 3:
            raise self.error("a relationship pattern")
        return ast.PathPattern(elements, None, None, **_position(first))

    # ---------------------------------------------------------------- expressions

    def parse_expression(self) -> ast.Expression:
        """A full expression (lowest precedence: OR)."""
        return self.parse_level(Precedence.OR)

    def parse_level(self, minimum: Precedence) -> ast.Expression:
        """Precedence climbing: an expression whose operators all bind at least as ``minimum``."""
        left = self.parse_prefix(minimum)
        while True:
            token = self.current
            if token.type is TokenType.ARROW_LEFT and minimum <= Precedence.COMPARISON:
                self.split_arrow()  # "x<-1" is "x < -1"
                token = self.current
            level = self.infix_level(token)
            if level is None or level < minimum:
                return left
            if level is Precedence.COMPARISON:
                left = self.parse_comparison_chain(left)
            elif level is Precedence.PREDICATE:
                left = self.parse_predicate(left)
            else:
                self.advance()
                right = self.parse_level(Precedence(level + 1))
                operator = token.value if token.type is TokenType.KEYWORD else token.text
                left = ast.BinaryOp(operator, left, right, **_position(token))  # type: ignore[arg-type]

    def split_arrow(self) -> None:
        less, minus = split_left_arrow(self.current)
        self.tokens[self.index : self.index + 1] = [less, minus]

    @staticmethod
    def infix_level(token: Token) -> Precedence | None:
        if token.type is TokenType.KEYWORD:
            if token.value in _BOOLEAN_LEVELS:
                return _BOOLEAN_LEVELS[token.value]  # type: ignore[index]
            if token.value in _PREDICATE_KEYWORDS:
                return Precedence.PREDICATE
            return None
        if token.type in _COMPARISON_OPERATORS:
            return Precedence.COMPARISON
        if token.type is TokenType.REGEX_MATCH:
            return Precedence.PREDICATE
        return _ARITHMETIC_LEVELS.get(token.type)

    def parse_comparison_chain(self, left: ast.Expression) -> ast.Comparison:
        first_operator = self.current
        operands = [left]
        operators = []
        while True:
            if self.at(TokenType.ARROW_LEFT):
                self.split_arrow()
            if self.current.type not in _COMPARISON_OPERATORS:
                break
            operators.append(_COMPARISON_OPERATORS[self.advance().type])
            operands.append(self.parse_level(Precedence.PREDICATE))
        return ast.Comparison(tuple(operands), tuple(operators), **_position(first_operator))

    def parse_predicate(self, left: ast.Expression) -> ast.Expression:
        """``IN``, ``STARTS WITH``, ``ENDS WITH``, ``CONTAINS``, ``=~``, ``IS [NOT] NULL``."""
        token = self.advance()
        where = _position(token)
        if token.type is TokenType.REGEX_MATCH:
            return ast.RegexMatch(left, self.parse_level(Precedence.ADDITIVE), **where)
        word = token.value
        if word == "IS":
            negated = self.accept_keyword("NOT") is not None
            self.expect_keyword("NULL")
            return ast.IsNull(left, negated, **where)
        if word == "IN":
            return ast.In(left, self.parse_level(Precedence.ADDITIVE), **where)
        if word in ("STARTS", "ENDS"):
            self.expect_keyword("WITH")
            operator = f"{word} WITH"
        else:
            operator = "CONTAINS"
        return ast.StringOp(operator, left, self.parse_level(Precedence.ADDITIVE), **where)

    def parse_prefix(self, minimum: Precedence) -> ast.Expression:
        """Prefix operators ``NOT``, ``-`` and ``+``, then a postfix expression."""
        token = self.current
        if self.at_keyword("NOT"):
            if minimum > Precedence.NOT:
                raise self.error("an expression (put a NOT expression here in parentheses)")
            self.advance()
            operand = self.parse_level(Precedence.NOT)
            return ast.UnaryOp("NOT", operand, **_position(token))
        if token.type in (TokenType.MINUS, TokenType.PLUS):
            self.advance()
            operand = self.parse_level(Precedence.UNARY)
            if (
                token.type is TokenType.MINUS
                and isinstance(operand, ast.Literal)
                and operand.kind in ("integer", "float")
            ):
                return ast.Literal(-operand.value, **_position(token))  # type: ignore[operator]
            return ast.UnaryOp(token.text, operand, **_position(token))
        return self.parse_postfix()

    def parse_postfix(self) -> ast.Expression:
        """An atom followed by ``.name``, ``[index]``, ``[start..end]`` or ``:Label`` suffixes."""
        expression = self.parse_atom()
        while True:
            token = self.current
            if token.type is TokenType.DOT:
                self.advance()
                name_token = self.current
                name = self.parse_name("a property name after '.'")
                expression = ast.Property(expression, name, **_position(name_token))
            elif token.type is TokenType.LBRACKET:
                self.advance()
                expression = self.parse_subscript(expression, token)
            elif token.type is TokenType.COLON:
                labels = self.parse_labels()
                expression = ast.LabelPredicate(expression, labels, **_position(token))
            else:
                return expression

    def parse_subscript(self, subject: ast.Expression, opening: Token) -> ast.Expression:
        """After ``[``: ``key]``, ``start..end]``, ``..end]`` or ``start..]``."""
        start = None
        if not self.at(TokenType.DOTDOT):
            start = self.parse_expression()
            if self.accept(TokenType.RBRACKET):
                return ast.Index(subject, start, **_position(opening))
        self.expect(TokenType.DOTDOT, "']' or '..'")
        end = None if self.at(TokenType.RBRACKET) else self.parse_expression()
        self.expect(TokenType.RBRACKET, "']' closing the slice")
        return ast.Slice(subject, start, end, **_position(opening))

    def parse_atom(self) -> ast.Expression:
        token = self.current
        where = _position(token)
        kind = token.type
        if kind in (TokenType.INTEGER, TokenType.FLOAT, TokenType.STRING):
            self.advance()
            if kind is TokenType.INTEGER and token.value > _INT64_MAX:  # type: ignore[operator]
                # -9223372036854775808 is written as minus and 9223372036854775808
                after_minus = self.tokens[self.index - 2].type is TokenType.MINUS
                if not (token.value == _INT64_MAX + 1 and after_minus):
                    raise CypherSyntaxError(
                        "integer literal is too large (64-bit integers only)",
                        line=token.line, column=token.column, construct=token.text,
                    )  # fmt: skip
            return ast.Literal(token.value, **where)  # type: ignore[arg-type]
        if kind is TokenType.PARAMETER:
            self.advance()
            return ast.Parameter(token.value, **where)  # type: ignore[arg-type]
        if kind is TokenType.KEYWORD:
            return self.parse_keyword_atom(token)
        if kind is TokenType.LBRACKET:
            return self.parse_bracket_atom()
        if kind is TokenType.LBRACE:
            return self.parse_map_literal()
        if kind is TokenType.LPAREN:
            pattern = self.speculate(self.parse_relationship_chain_in_expression)
            if pattern is not None:
                return ast.PatternPredicate(pattern, **where)
            self.advance()
            expression = self.parse_expression()
            self.expect(TokenType.RPAREN, "')'")
            return expression
        if kind in _VARIABLE_TOKENS:
            return self.parse_name_atom(token)
        raise self.error("an expression")

    def parse_keyword_atom(self, token: Token) -> ast.Expression:
        where = _position(token)
        word = token.value
        if word in ("TRUE", "FALSE", "NULL"):
            self.advance()
            value = {"TRUE": True, "FALSE": False, "NULL": None}[word]  # type: ignore[index]
            return ast.Literal(value, **where)
        if word == "CASE":
            return self.parse_case()
        if word == "ALL" and self.peek().type is TokenType.LPAREN:
            return self.parse_quantifier("ALL")
        raise self.error("an expression")

    def parse_name_atom(self, token: Token) -> ast.Expression:
        """An identifier: a variable, or the start of a function call or special form."""
        where = _position(token)
        following = self.peek()
        if token.type is TokenType.IDENTIFIER:
            word = str(token.value).lower()
            if following.type is TokenType.LPAREN:
                if word == "count" and self.peek(2).type is TokenType.STAR and self.peek(3).type is TokenType.RPAREN:
                    for _ in range(4):
                        self.advance()
                    return ast.CountStar(**where)
                if word == "exists":
                    return self.parse_exists()
                if word in ("any", "none", "single") and self.looks_like_quantifier():
                    return self.parse_quantifier(word.upper())
                if word == "reduce":
                    return self.parse_reduce()
                if word in _SHORTEST_PATH_FUNCTIONS:
                    raise UnsupportedCypherError(f"{_SHORTEST_PATH_FUNCTIONS[word]} outside MATCH", **where)
            elif following.type is TokenType.LBRACE and word in ("exists", "count"):
                raise UnsupportedCypherError(f"{word.upper()} subquery", **where)
        if following.type is TokenType.LPAREN or self.looks_like_dotted_call():
            return self.parse_function_call()
        self.advance()
        variable = ast.Variable(token.value, **where)  # type: ignore[arg-type]
        if self.at(TokenType.LBRACE):
            return self.parse_map_projection(variable)
        return variable

    def looks_like_dotted_call(self) -> bool:
        """Is the current name followed by ``.name.name(`` (a namespaced function call)?"""
        index = self.index + 1
        tokens = self.tokens
        while tokens[index].type is TokenType.DOT and tokens[index + 1].type in _NAME_TOKENS:
            index += 2
        return index > self.index + 1 and tokens[index].type is TokenType.LPAREN

    def looks_like_quantifier(self) -> bool:
        """Is the current word followed by ``( name IN``?"""
        return self.peek(2).type in _VARIABLE_TOKENS and self.at_keyword("IN", token=self.peek(3))

    def parse_function_call(self) -> ast.FunctionCall:
        first = self.current
        name = self.parse_dotted_name("a function name")
        self.expect(TokenType.LPAREN, "'('")
        distinct = self.accept_keyword("DISTINCT") is not None
        arguments = self.parse_arguments()
        return ast.FunctionCall(name, arguments, distinct, **_position(first))

    def parse_exists(self) -> ast.Exists:
        first = self.advance()
        self.expect(TokenType.LPAREN, "'(' after exists")
        if self.at(TokenType.LPAREN):
            start, saved = self.current, self.index
            pattern = self.speculate(self.parse_relationship_chain_in_expression)
            if pattern is not None and self.at(TokenType.RPAREN):
                self.advance()
                predicate = ast.PatternPredicate(pattern, **_position(start))
                return ast.Exists(predicate, **_position(first))
            self.index = saved
        argument = self.parse_expression()
        self.expect(TokenType.RPAREN, "')' closing exists(")
        return ast.Exists(argument, **_position(first))

    def parse_quantifier(self, kind: str) -> ast.Quantifier:
        first = self.advance()
        self.expect(TokenType.LPAREN, f"'(' after {kind}")
        variable = self.parse_variable_name()
        self.expect_keyword("IN")
        source = self.parse_expression()
        if not self.at_keyword("WHERE"):
            raise self.error(f"WHERE (a predicate is required in {kind}(...))")
        self.advance()
        condition = self.parse_expression()
        self.expect(TokenType.RPAREN, f"')' closing {kind}(")
        return ast.Quantifier(kind, variable, source, condition, **_position(first))

    def parse_reduce(self) -> ast.Reduce:
        first = self.advance()
        self.expect(TokenType.LPAREN, "'(' after reduce")
        accumulator = self.parse_variable_name()
        self.expect(TokenType.EQ, "'=' after the accumulator of reduce")
        initial = self.parse_expression()
        self.expect(TokenType.COMMA, "','")
        variable = self.parse_variable_name()
        self.expect_keyword("IN")
        source = self.parse_expression()
        self.expect(TokenType.PIPE, "'|'")
        expression = self.parse_expression()
        self.expect(TokenType.RPAREN, "')' closing reduce(")
        return ast.Reduce(accumulator, initial, variable, source, expression, **_position(first))

    def parse_case(self) -> ast.Case:
        first = self.expect_keyword("CASE")
        subject = None if self.at_keyword("WHEN") else self.parse_expression()
        alternatives = []
        while when_token := self.accept_keyword("WHEN"):
            condition = self.parse_expression()
            self.expect_keyword("THEN")
            result = self.parse_expression()
            alternatives.append(ast.CaseAlternative(condition, result, **_position(when_token)))
        if not alternatives:
            raise self.error("WHEN")
        default = self.parse_expression() if self.accept_keyword("ELSE") else None
        self.expect_keyword("END")
        return ast.Case(subject, tuple(alternatives), default, **_position(first))

    def parse_bracket_atom(self) -> ast.Expression:
        """``[``: a list comprehension, a pattern comprehension or a list literal."""
        opening = self.current
        where = _position(opening)
        following = self.peek()
        if following.type in _VARIABLE_TOKENS and self.at_keyword("IN", token=self.peek(2)):
            self.advance()
            variable = self.parse_variable_name()
            self.advance()  # IN
            source = self.parse_expression()
            condition = self.parse_expression() if self.accept_keyword("WHERE") else None
            projection = self.parse_expression() if self.accept(TokenType.PIPE) else None
            self.expect(TokenType.RBRACKET, "']' closing the list comprehension")
            return ast.ListComprehension(variable, source, condition, projection, **where)
        if following.type is TokenType.LPAREN or (
            following.type in _VARIABLE_TOKENS and self.peek(2).type is TokenType.EQ
        ):
            pattern = self.speculate(self.parse_comprehension_pattern)
            if pattern is not None:
                condition = self.parse_expression() if self.accept_keyword("WHERE") else None
                self.expect(TokenType.PIPE, "'|' in the pattern comprehension")
                projection = self.parse_expression()
                self.expect(TokenType.RBRACKET, "']' closing the pattern comprehension")
                return ast.PatternComprehension(pattern, projection, condition, **where)
        self.advance()
        items: list[ast.Expression] = []
        if not self.at(TokenType.RBRACKET):
            items.append(self.parse_list_item())
            while self.accept(TokenType.COMMA):
                items.append(self.parse_list_item())
        self.expect(TokenType.RBRACKET, "',' or ']'")
        return ast.ListLiteral(tuple(items), **where)

    def parse_list_item(self) -> ast.Expression:
        """One item of a list literal. An integer that the item is made of alone (the next token a
        ',' or ']': body id lists) becomes its literal at once, not through the ~15 precedence levels
        of parse_expression (a 1,400-id list: 4 ms less)."""
        token = self.current
        if (
            token.type is TokenType.INTEGER
            and token.value <= _INT64_MAX  # type: ignore[operator]
            and self.peek().type in (TokenType.COMMA, TokenType.RBRACKET)
        ):
            self.advance()
            return ast.Literal(token.value, **_position(token))  # type: ignore[arg-type]
        return self.parse_expression()

    def parse_comprehension_pattern(self) -> ast.PathPattern:
        """``[ [p =] (a)-->(b)`` up to ``WHERE`` or ``|`` (which are not consumed)."""
        self.advance()  # [
        first = self.current
        variable = None
        if self.at(*_VARIABLE_TOKENS):
            variable = self.parse_variable_name()
            self.expect(TokenType.EQ)
        pattern = self.parse_relationship_chain_in_expression()
        if not (self.at(TokenType.PIPE) or self.at_keyword("WHERE")):
            raise self.error("'|' or WHERE")
        return ast.PathPattern(pattern.elements, variable, None, **_position(first))

    def parse_map_literal(self) -> ast.MapLiteral:
        opening = self.expect(TokenType.LBRACE, "'{'")
        entries: list[tuple[str, ast.Expression]] = []
        if not self.at(TokenType.RBRACE):
            while True:
                key = self.parse_name("a map key")
                self.expect(TokenType.COLON, "':' after the map key")
                entries.append((key, self.parse_expression()))
                if not self.accept(TokenType.COMMA):
                    break
        self.expect(TokenType.RBRACE, "',' or '}'")
        return ast.MapLiteral(tuple(entries), **_position(opening))

    def parse_map_projection(self, subject: ast.Variable) -> ast.MapProjection:
        self.expect(TokenType.LBRACE)
        items: list[ast.MapProjectionItem] = []
        if not self.at(TokenType.RBRACE):
            while True:
                token = self.current
                where = _position(token)
                if self.accept(TokenType.DOT):
                    if self.accept(TokenType.STAR):
                        items.append(ast.MapProjectionItem("all_properties", **where))
                    else:
                        name = self.parse_name("a property name")
                        items.append(ast.MapProjectionItem("property", name, **where))
                elif self.peek().type is TokenType.COLON:
                    name = self.parse_name("a map key")
                    self.advance()
                    value = self.parse_expression()
                    items.append(ast.MapProjectionItem("literal", name, value, **where))
                else:
                    name = self.parse_variable_name()
                    items.append(ast.MapProjectionItem("variable", name, **where))
                if not self.accept(TokenType.COMMA):
                    break
        self.expect(TokenType.RBRACE, "',' or '}'")
        return ast.MapProjection(subject, tuple(items), line=subject.line, column=subject.column)
