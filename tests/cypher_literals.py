"""Changing a Cypher text's literals while keeping its shape: what the plan cache test and its benchmark
feed the engine to see a cached shape answer with the new values."""

from __future__ import annotations

from flatprint.cypher.ast import format_string
from flatprint.cypher.tokens import TokenType, tokenize


def other_literals(text: str) -> str:
    """``text`` with every string and number literal changed to another value of the same type."""
    pieces, last = [], 0
    for token in tokenize(text):
        if token.type is TokenType.INTEGER:
            new = str(token.value + 7)
        elif token.type is TokenType.FLOAT:
            new = repr(token.value + 0.25)
        elif token.type is TokenType.STRING:
            new = format_string(token.value + "q")
        else:
            continue
        pieces += [text[last : token.offset], new]
        last = token.end
    return "".join(pieces) + text[last:]


_VALUE_ENDS = {
    TokenType.IDENTIFIER, TokenType.QUOTED_IDENTIFIER, TokenType.PARAMETER, TokenType.STRING,
    TokenType.INTEGER, TokenType.FLOAT, TokenType.RPAREN, TokenType.RBRACKET, TokenType.RBRACE,
}  # fmt: skip
_VALUE_WORDS = {"NULL", "TRUE", "FALSE", "END"}


def longer_lists(text: str) -> str:
    """``text`` with one more item in every list of integer literals only or string literals only
    (``[1, 2]`` -> ``[1, 2, 9]``; ``['a']`` -> ``['a', 'aq']``; not a subscript ``m['post']``):
    the plan cache's list slots."""
    tokens = tokenize(text)
    pieces, last, opening = [], 0, None
    for index, token in enumerate(tokens):
        if token.type is TokenType.LBRACKET:
            before = tokens[index - 1] if index else None
            subscript = before is not None and (
                before.type in _VALUE_ENDS or (before.type is TokenType.KEYWORD and before.value in _VALUE_WORDS)
            )
            opening = None if subscript else index
        elif token.type is TokenType.RBRACKET and opening is not None:
            items, commas = tokens[opening + 1 : index : 2], tokens[opening + 2 : index : 2]
            kinds = {item.type for item in items}
            if items and len(kinds) == 1 and kinds <= {TokenType.INTEGER, TokenType.STRING}:
                if all(comma.type is TokenType.COMMA for comma in commas) and len(commas) == len(items) - 1:
                    extra = items[-1].value + 7 if items[-1].type is TokenType.INTEGER else items[-1].value + "q"
                    new = str(extra) if isinstance(extra, int) else format_string(extra)
                    pieces += [text[last : token.offset], ", " + new]
                    last = token.offset
            opening = None
    return "".join(pieces) + text[last:]
