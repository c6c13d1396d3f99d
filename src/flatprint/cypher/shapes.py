"""A query text's *shape*, what the plan cache keys on: the token stream with every string and number
literal replaced by a marker of its token type, and every list of integer literals or of string
literals folded into one marker of any length (flatprint.cypher.plancache says why that is exact).

:func:`shape_of` derives it from the tokenizer's tokens (a miss, which parses them next); :func:`scan`
reads the same shape, values and spans straight from the text without Token objects (a hit needs
only the literals), and gives up (None) wherever the tokenizer would refuse the text or decode a
literal specially.
"""

from __future__ import annotations

import re

from flatprint.cypher.registry import QUERY_PROCEDURES
from flatprint.cypher.tokens import _MAX_DIGITS, _TOKEN_PATTERN, KEYWORDS, Token, TokenType, _unescape

# a literal's place in the shape: no other token's text starts with a quote (strings are literals)
MARKERS = {TokenType.STRING: "'s", TokenType.INTEGER: "'i", TokenType.FLOAT: "'f"}
# a list of integer literals or of string literals: one shape element (item marker -> list marker)
LIST_MARKERS = {"'i": "'I", "'s": "'S"}
LIST_KINDS = frozenset(LIST_MARKERS.values())
# shape elements after which '[' opens a subscript (x[0], m['post']), not a list: not folded
_VALUE_ENDS = frozenset((")", "]", "}", *MARKERS.values(), *LIST_KINDS))
_VALUE_KEYWORDS = frozenset(("NULL", "TRUE", "FALSE", "END"))
# Whole lists at once in the scan (a 1,400-id list is 4,200 tokens), when they are exactly what the
# tokenizer makes of them: digits, commas and ASCII whitespace between brackets that int() reads as
# one decimal integer between each two commas (it takes surrounding whitespace and refuses an empty
# or split item, so '[1 2]', '[1,,2]' and '[]' are left alone), or strings without a backslash. A
# list with anything else (a comment, an escape, 0x1F) goes token by token and is folded the same.
_INTEGER_LIST = re.compile(r"\[[0-9, \t\r\n]*\]")
_PLAIN_STRING = r"""(?:'[^'\\]*'|"[^"\\]*")"""
_STRING_LIST = re.compile(rf"\[\s*{_PLAIN_STRING}(?:\s*,\s*{_PLAIN_STRING})*\s*\]")
_STRING_BODY = re.compile(r"""'([^'\\]*)'|"([^"\\]*)\"""")


def _opens_list(previous: str | None) -> bool:
    """Can a ``[`` after the shape element ``previous`` start a list literal (rather than a
    subscript)? Only decides which brackets are folded; the template checks what they parsed to."""
    if previous is None:
        return True
    if previous in _VALUE_ENDS or previous[:1] in ("`", "$"):
        return False
    if previous[:1].isalpha() or previous[:1] == "_":  # a name, unless a keyword that is no value
        upper = previous.upper()
        return upper in KEYWORDS and upper not in _VALUE_KEYWORDS
    return True


def _fold_list(shape: list, values: list, spans: list, opening: int, first_value: int) -> bool:
    """Fold ``shape[opening:]``, a bracketed run from ``[`` to the ``]`` just added, into one list
    element (its values into one tuple, its spans into one) when it holds literals of one list kind
    between commas, at least one; say whether it did."""
    inner = shape[opening + 1 : -1]
    marker = inner[0] if inner else None
    list_marker = LIST_MARKERS.get(marker)  # type: ignore[arg-type]
    if list_marker is None or len(inner) % 2 == 0:
        return False
    items, commas = inner[0::2], inner[1::2]
    if items.count(marker) != len(items) or commas.count(",") != len(commas):
        return False
    run = tuple(values[first_value:])
    start, end = spans[opening][0], spans[-1][1]
    del shape[opening:], values[first_value:], spans[opening:]
    shape.append(list_marker)
    values.append(run)
    spans.append((start, end))
    return True


def shape_of(
    tokens: list[Token],
) -> tuple[tuple[str, ...], list, list[tuple[int, int]], list[int], list[tuple[int, int]]]:
    """The shape of ``tokens`` (each token's text, a literal's replaced by a marker, a list of integer
    or string literals folded into one marker), the literal values (a folded list's as one tuple),
    each shape element's (start, end) offsets, the shape element of each token, and the (first,
    last) token of each value."""
    shape: list[str] = []
    values: list = []
    spans: list[tuple[int, int]] = []
    element_of: list[int] = []
    value_tokens: list[tuple[int, int]] = []
    opening = None  # (shape element, first value, token) of the last '[' not yet closed or folded
    string, integer, double = TokenType.STRING, TokenType.INTEGER, TokenType.FLOAT
    left, right = TokenType.LBRACKET, TokenType.RBRACKET
    for index, token in enumerate(tokens):
        kind = token.type  # compared by identity: hashing an enum member runs Python code
        if kind is string or kind is integer or kind is double:
            value_tokens.append((index, index))
            values.append(token.value)
            shape.append(MARKERS[kind])
        else:
            shape.append(token.text)
        spans.append((token.offset, token.end))
        element_of.append(len(shape) - 1)
        if kind is left:
            opening = (len(shape) - 1, len(values), index) if _opens_list(shape[-2] if index else None) else None
        elif kind is right and opening is not None:
            at, first_value, first_token = opening
            opening = None
            if _fold_list(shape, values, spans, at, first_value):
                del value_tokens[first_value:]
                value_tokens.append((first_token, index))
                element_of[first_token:] = [at] * (index + 1 - first_token)
    return tuple(shape), values, spans, element_of, value_tokens


_SKIPPED = frozenset(("space", "line_comment", "block_comment"))
_LITERAL_KINDS = {"string": "'s", "integer": "'i", "hex": "'i", "octal": "'i", "float": "'f"}


def scan(text: str) -> tuple[tuple[str, ...], list, list[tuple[int, int]]] | None:
    """The shape, values and spans that :func:`shape_of` of ``tokenize(text)`` gives, without
    building Token objects or line/column positions (~4x faster than the tokenizer, which a hit does
    not need; a plain list of integers or strings is read whole). None for any text the tokenizer
    would refuse or that holds a literal it decodes specially (an invalid escape, an infinite float):
    those take the tokenizer's path and its errors."""
    shape: list[str] = []
    values: list = []
    spans: list[tuple[int, int]] = []
    position = 0
    opening = None  # (shape element, first value) of the last '[' not yet closed or folded
    finished = False
    while not finished:
        finished = True
        for match in _TOKEN_PATTERN.finditer(text, position):
            start, end = match.span()
            if start != position:
                return None  # a character no token starts with: the tokenizer reports it
            position = end
            kind = match.lastgroup
            if kind in _SKIPPED:
                continue
            raw = match.group()
            marker = _LITERAL_KINDS.get(kind)
            if marker is None:
                if kind == "unterminated_comment" or raw in ("``", "$``"):
                    return None  # the tokenizer's errors
                if raw == "[":
                    opening = None
                    if _opens_list(shape[-1] if shape else None):
                        whole = _read_list(text, start)
                        if whole is not None:
                            list_marker, run, position = whole
                            shape.append(list_marker)
                            values.append(run)
                            spans.append((start, position))
                            finished = False
                            break  # go on after the list
                        opening = (len(shape), len(values))
                shape.append(raw)
                spans.append((start, end))
                if raw == "]" and opening is not None:
                    _fold_list(shape, values, spans, *opening)
                    opening = None
                continue
            shape.append(marker)
            spans.append((start, end))
            if kind == "string":
                try:
                    values.append(_unescape(raw, start, _refuse))
                except _Refused:
                    return None
            elif kind == "integer":
                if len(raw) > _MAX_DIGITS:
                    return None  # too long to read: the tokenizer refuses it
                values.append(int(raw))
            elif kind == "float":
                number = float(raw)
                if number in (float("inf"), float("-inf")):
                    return None
                values.append(number)
            else:
                values.append(int(raw[2:], 16 if kind == "hex" else 8))
    if position != len(text):
        return None
    shape.append("")  # the EOF token's text
    spans.append((len(text), len(text)))
    return tuple(shape), values, spans


def _read_list(text: str, start: int) -> tuple[str, tuple, int] | None:
    """The list at ``text[start]`` (a ``[``) when it is plain integers or plain strings: its marker,
    its values and its end."""
    match = _INTEGER_LIST.match(text, start)
    if match is not None:
        end = match.end()
        try:
            return "'I", tuple(map(int, text[start + 1 : end - 1].split(","))), end
        except ValueError:
            return None
    match = _STRING_LIST.match(text, start)
    if match is not None:  # one group is empty, the other is the string without its quotes
        strings = _STRING_BODY.findall(text, start, match.end())
        return "'S", tuple(single + double for single, double in strings), match.end()
    return None


class _Refused(Exception):
    """A literal the tokenizer refuses (its error comes from :func:`tokenize`)."""


def _refuse(*_args) -> _Refused:
    return _Refused()


def outside_lists(text: str, shape: tuple[str, ...], spans: list[tuple[int, int]]) -> int:
    """How many characters of ``text`` are not in a list of integers or strings."""
    inside = sum(end - start for marker, (start, end) in zip(shape, spans) if marker in LIST_KINDS)
    return len(text) - inside


def _value_index(shape: tuple[str, ...], element: int) -> int:
    """The index in the values of the literal at shape element ``element``."""
    return sum(1 for marker in shape[:element] if marker in _VALUE_MARKERS)


_VALUE_MARKERS = frozenset((*MARKERS.values(), *LIST_KINDS))


def inner_query_strings(shape: tuple[str, ...]) -> list[int]:
    """The value indexes of the strings that are the query of ``CALL apoc.cypher.run(...)`` or
    ``runTimeboxed(...)`` (their first argument, written as a string literal; the parser parses
    that text with the outer query), in text order."""
    found = []
    string = MARKERS[TokenType.STRING]  # once: hashing an enum member runs Python code
    for element, marker in enumerate(shape):
        if marker != string or element < 7 or shape[element - 1] != "(":
            continue
        name = "".join(shape[element - 6 : element - 1]).lower()
        if shape[element - 7].upper() == "CALL" and name in QUERY_PROCEDURES:
            found.append(_value_index(shape, element))
    return found
