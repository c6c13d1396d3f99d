"""Cypher tokenizer: query text -> list of :class:`Token`.

The tokenizer knows the lexical rules of Neo4j 4 Cypher:

- whitespace and comments (``// ...`` to the end of the line, ``/* ... */``) are skipped;
- words are :attr:`TokenType.KEYWORD` when they are one of :data:`KEYWORDS` (any case; the token's
  ``value`` is then the upper-case keyword), otherwise :attr:`TokenType.IDENTIFIER`;
- ```backticked names``` (e.g. ```a'L(R)```, ```AB(R)```; a doubled backtick stands for one) are
  :attr:`TokenType.QUOTED_IDENTIFIER` and never keywords;
- ``'single'`` and ``"double"`` quoted strings may span lines and take the escapes ``\\\\ \\' \\"
  \\t \\b \\n \\r \\f \\uXXXX \\UXXXXXXXX``; any other escape is an error, as in Neo4j
  (so ``'DNge1\\\\d+'`` is the regex ``DNge1\\d+``);
- integers (decimal, ``0x`` hexadecimal, ``0o`` octal) and floats (``1.5``, ``.5``, ``1e9``,
  ``1.5E-3``); ``1..3`` is ``1``, ``..``, ``3``;
- parameters ``$name``, ``$0``, ``$`odd name```;
- the operators and punctuation of :class:`TokenType`, longest match first (``=~``, ``<>``, ``<=``,
  ``>=``, ``->``, ``<-``, ``..``). ``!=`` is accepted as a synonym of ``<>``.

Every token keeps its 1-based line and column and its character offsets in the text, so that the
parser can report errors precisely and recover the exact source text of an expression.
Whether ``<-`` is an arrow or "less than, minus" (``x<-1``) depends on the context; the tokenizer
always produces the arrow and the parser splits it when it expects an operator
(see :func:`split_left_arrow`).
"""

from __future__ import annotations

import bisect
import enum
import re
from dataclasses import dataclass

from flatprint.cypher.errors import CypherSyntaxError

__all__ = [
    "KEYWORDS",
    "SOFT_KEYWORDS",
    "Token",
    "TokenType",
    "split_left_arrow",
    "tokenize",
]


class TokenType(enum.Enum):
    """Kinds of tokens. The value of each member is how it is described in error messages."""

    IDENTIFIER = "identifier"
    QUOTED_IDENTIFIER = "quoted identifier"
    KEYWORD = "keyword"
    STRING = "string"
    INTEGER = "integer"
    FLOAT = "float"
    PARAMETER = "parameter"

    LPAREN = "'('"
    RPAREN = "')'"
    LBRACKET = "'['"
    RBRACKET = "']'"
    LBRACE = "'{'"
    RBRACE = "'}'"
    COMMA = "','"
    COLON = "':'"
    SEMICOLON = "';'"
    DOT = "'.'"
    DOTDOT = "'..'"
    PIPE = "'|'"
    PLUS = "'+'"
    MINUS = "'-'"
    STAR = "'*'"
    SLASH = "'/'"
    PERCENT = "'%'"
    CARET = "'^'"
    EQ = "'='"
    NEQ = "'<>'"
    LT = "'<'"
    GT = "'>'"
    LTE = "'<='"
    GTE = "'>='"
    REGEX_MATCH = "'=~'"
    ARROW_RIGHT = "'->'"
    ARROW_LEFT = "'<-'"

    EOF = "end of input"


#: Reserved words: clause starters, operator words and literals. They are matched
#: case-insensitively; they can still name properties, labels, relationship types, map keys and
#: aliases, but a variable with such a name must be backticked.
KEYWORDS: frozenset[str] = frozenset(
    {
        # reading clauses and their parts
        "MATCH", "OPTIONAL", "WHERE", "WITH", "RETURN", "DISTINCT", "ORDER", "BY", "ASC",
        "ASCENDING", "DESC", "DESCENDING", "SKIP", "LIMIT", "UNWIND", "AS", "CALL", "YIELD",
        "UNION", "ALL",
        # operators and literals
        "AND", "OR", "XOR", "NOT", "IN", "STARTS", "ENDS", "CONTAINS", "IS", "NULL", "TRUE",
        "FALSE", "CASE", "WHEN", "THEN", "ELSE", "END",
        # writing and other refused clauses (recognised so that they can be named in errors)
        "CREATE", "MERGE", "SET", "DELETE", "DETACH", "REMOVE", "FOREACH", "LOAD", "DROP",
        "USING", "USE", "EXPLAIN", "PROFILE", "SHOW", "ON",
    }
)  # fmt: skip

#: Words with a special meaning only when followed by ``(`` (or ``{``): ``count(*)``,
#: ``exists(...)``, quantifiers, ``reduce``, shortest paths. They stay identifiers, so a variable
#: may be called ``count``; the printer backticks them when they name a variable. Lower case.
SOFT_KEYWORDS: frozenset[str] = frozenset(
    {"count", "exists", "any", "none", "single", "reduce", "shortestpath", "allshortestpaths"}
)


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical token.

    Attributes:
        type: the kind of token.
        text: the exact source text of the token (with quotes, backticks, ``$``).
        value: the decoded value: the unescaped name for identifiers and parameters, the
            upper-case word for keywords, the unescaped text for strings, an ``int`` or ``float``
            for numbers, the text itself for punctuation.
        line: 1-based line of the first character.
        column: 1-based column of the first character (counted in characters).
        offset: index of the first character in the tokenized text.
        end: index one past the last character in the tokenized text.
    """

    type: TokenType
    text: str
    value: object
    line: int
    column: int
    offset: int
    end: int

    def describe(self) -> str:
        """How the token is named in error messages: ``'MATCH'``, ``end of input``, ..."""
        if self.type is TokenType.EOF:
            return "end of input"
        text = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        return repr(text) if "'" not in text else f'"{text}"'


_PUNCTUATION: dict[str, TokenType] = {
    "..": TokenType.DOTDOT,
    "=~": TokenType.REGEX_MATCH,
    "<>": TokenType.NEQ,
    "!=": TokenType.NEQ,
    "<=": TokenType.LTE,
    ">=": TokenType.GTE,
    "->": TokenType.ARROW_RIGHT,
    "<-": TokenType.ARROW_LEFT,
    "(": TokenType.LPAREN,
    ")": TokenType.RPAREN,
    "[": TokenType.LBRACKET,
    "]": TokenType.RBRACKET,
    "{": TokenType.LBRACE,
    "}": TokenType.RBRACE,
    ",": TokenType.COMMA,
    ":": TokenType.COLON,
    ";": TokenType.SEMICOLON,
    ".": TokenType.DOT,
    "|": TokenType.PIPE,
    "+": TokenType.PLUS,
    "-": TokenType.MINUS,
    "*": TokenType.STAR,
    "/": TokenType.SLASH,
    "%": TokenType.PERCENT,
    "^": TokenType.CARET,
    "=": TokenType.EQ,
    "<": TokenType.LT,
    ">": TokenType.GT,
}

_EXPONENT = r"(?:[eE][+-]?[0-9]+)"
_TOKEN_PATTERN = re.compile(
    "|".join(
        [
            r"(?P<space>\s+)",
            r"(?P<line_comment>//[^\n]*)",
            r"(?P<block_comment>/\*.*?\*/)",
            r"(?P<unterminated_comment>/\*)",
            r"(?P<hex>0[xX][0-9a-fA-F]+)",
            r"(?P<octal>0o[0-7]+)",
            rf"(?P<float>[0-9]+\.[0-9]+{_EXPONENT}?|\.[0-9]+{_EXPONENT}?|[0-9]+{_EXPONENT})",
            r"(?P<integer>[0-9]+)",
            r"(?P<word>[^\W\d]\w*)",
            r"(?P<quoted>`(?:[^`]|``)*`)",
            r"(?P<parameter>\$(?:[^\W\d]\w*|[0-9]+|`(?:[^`]|``)*`))",
            r"(?P<string>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")",
            "(?P<punctuation>" + "|".join(re.escape(p) for p in sorted(_PUNCTUATION, key=len, reverse=True)) + ")",
        ]
    ),
    re.DOTALL,
)

#: A run of at least 8 integers separated by commas on one line (neuprint-python's body id lists):
#: tokenized in bulk, as the general loop would, ~3x faster (a 1,400-id list took 12 ms).
_INTEGER_RUN = re.compile(r"[0-9]+(?![\w.])(?:[ \t]*,[ \t]*[0-9]+(?![\w.])){7,}")
_INTEGER_OR_COMMA = re.compile(r"[0-9]+|,")
#: False: every token through the general loop (tests compare both).
BULK_INTEGER_RUNS = True

_SIMPLE_ESCAPES = {
    "\\": "\\",
    "'": "'",
    '"': '"',
    "t": "\t",
    "T": "\t",
    "b": "\b",
    "B": "\b",
    "n": "\n",
    "N": "\n",
    "r": "\r",
    "R": "\r",
    "f": "\f",
    "F": "\f",
}
_ESCAPE_PATTERN = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.DOTALL)


class _Positions:
    """Maps character offsets of a text to (line, column), optionally shifted.

    ``start_line``/``start_column`` give the position of the text's first character in an
    enclosing text (used for queries nested in a string, e.g. in ``apoc.cypher.runTimeboxed``).
    """

    def __init__(self, text: str, start_line: int, start_column: int) -> None:
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self._start_line = start_line
        self._start_column = start_column

    def at(self, offset: int) -> tuple[int, int]:
        index = bisect.bisect_right(self._line_starts, offset) - 1
        column = offset - self._line_starts[index] + 1
        if index == 0:
            column += self._start_column - 1
        return self._start_line + index, column


def tokenize(text: str, *, start_line: int = 1, start_column: int = 1) -> list[Token]:
    """Split ``text`` into tokens, ending with one :attr:`TokenType.EOF` token.

    ``start_line`` and ``start_column`` are the position of ``text``'s first character, for texts
    cut out of a larger one (positions in tokens and errors then refer to the larger text).

    Raises:
        CypherSyntaxError: on an unknown character, an unterminated string, backticked name or
            block comment, an invalid escape sequence or an empty backticked name.
    """
    positions = _Positions(text, start_line, start_column)
    tokens: list[Token] = []
    offset = 0
    length = len(text)

    def fail(detail: str, at: int, construct: str) -> CypherSyntaxError:
        line, column = positions.at(at)
        return CypherSyntaxError(detail, line=line, column=column, construct=construct)

    while offset < length:
        if BULK_INTEGER_RUNS and "0" <= text[offset] <= "9":
            run = _INTEGER_RUN.match(text, offset)
            if run is not None:
                line, column = positions.at(offset)
                for part in _INTEGER_OR_COMMA.finditer(text, offset, run.end()):
                    raw, start = part.group(), part.start()
                    if raw == ",":
                        token = Token(TokenType.COMMA, raw, raw, line, column + start - offset, start, start + 1)
                    else:
                        value = _decimal(raw, start, fail)
                        token = Token(TokenType.INTEGER, raw, value, line, column + start - offset, start, part.end())
                    tokens.append(token)
                offset = run.end()
                continue
        match = _TOKEN_PATTERN.match(text, offset)
        if match is None:
            char = text[offset]
            if char in "'\"":
                raise fail("unterminated string literal", offset, char)
            if char == "`":
                raise fail("unterminated backticked name", offset, char)
            if char == "$":
                raise fail("'$' must be followed by a parameter name", offset, char)
            raise fail(f"unexpected character {char!r}", offset, char)
        kind = match.lastgroup
        raw = match.group()
        end = match.end()
        if kind in ("space", "line_comment", "block_comment"):
            offset = end
            continue
        if kind == "unterminated_comment":
            raise fail("unterminated comment '/*'", offset, "/*")
        line, column = positions.at(offset)
        if kind == "word":
            upper = raw.upper()
            if upper in KEYWORDS:
                token_type, value = TokenType.KEYWORD, upper
            else:
                token_type, value = TokenType.IDENTIFIER, raw
        elif kind == "quoted":
            token_type, value = TokenType.QUOTED_IDENTIFIER, raw[1:-1].replace("``", "`")
            if not value:
                raise fail("empty backticked name", offset, raw)
        elif kind == "parameter":
            name = raw[1:]
            if name.startswith("`"):
                name = name[1:-1].replace("``", "`")
                if not name:
                    raise fail("empty parameter name", offset, raw)
            token_type, value = TokenType.PARAMETER, name
        elif kind == "string":
            token_type, value = TokenType.STRING, _unescape(raw, offset, fail)
        elif kind == "integer":
            token_type, value = TokenType.INTEGER, _decimal(raw, offset, fail)
        elif kind == "hex":
            token_type, value = TokenType.INTEGER, int(raw[2:], 16)
        elif kind == "octal":
            token_type, value = TokenType.INTEGER, int(raw[2:], 8)
        elif kind == "float":
            number = float(raw)
            if number in (float("inf"), float("-inf")):
                raise fail("floating point number is too large", offset, raw)
            token_type, value = TokenType.FLOAT, number
        else:  # punctuation
            token_type, value = _PUNCTUATION[raw], raw
        tokens.append(Token(token_type, raw, value, line, column, offset, end))
        offset = end

    line, column = positions.at(length)
    tokens.append(Token(TokenType.EOF, "", None, line, column, length, length))
    return tokens


#: Python refuses to read longer decimal strings (sys.get_int_max_str_digits()); any integer
#: literal this long is beyond 64 bits, which the parser refuses with this message.
_MAX_DIGITS = 4300


def _decimal(raw: str, offset: int, fail) -> int:
    """The value of a decimal integer token."""
    if len(raw) > _MAX_DIGITS:
        raise fail("integer literal is too large (64-bit integers only)", offset, raw[:20] + "...")
    return int(raw)


def _unescape(raw: str, offset: int, fail) -> str:
    """Decode a quoted string token (quotes included) into its value."""
    body = raw[1:-1]

    def replace(match: re.Match[str]) -> str:
        escape = match.group(1)
        if escape in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[escape]
        if len(escape) > 1:  # \uXXXX or \UXXXXXXXX
            code = int(escape[1:], 16)
            if code > 0x10FFFF:
                raise fail("invalid unicode escape", offset + 1 + match.start(), "\\" + escape)
            return chr(code)
        raise fail(
            f"invalid escape sequence '\\{escape}' in string literal "
            "(write '\\\\' for a backslash, e.g. '\\\\d' in a regular expression)",
            offset + 1 + match.start(),
            "\\" + escape,
        )

    return _ESCAPE_PATTERN.sub(replace, body) if "\\" in body else body


def split_left_arrow(token: Token) -> tuple[Token, Token]:
    """Split an ``<-`` token into ``<`` and ``-`` (for ``x<-1``, meaning ``x < -1``)."""
    less = Token(TokenType.LT, "<", "<", token.line, token.column, token.offset, token.offset + 1)
    minus = Token(TokenType.MINUS, "-", "-", token.line, token.column + 1, token.offset + 1, token.end)
    return less, minus
