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
