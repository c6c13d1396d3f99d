"""Errors raised while reading a Cypher query.

Every error names the offending *construct* and its position (1-based line and column in the
query text), so the server can hand the message to the user unchanged:

- :class:`CypherSyntaxError`      the text is not valid Cypher (bad token, missing bracket, ...);
- :class:`UnsupportedCypherError` valid Cypher that flatprint does not run (``LOAD CSV``,
  procedures outside the whitelist, subqueries, ...);
- :class:`CypherWriteError`       a clause that would change the database (``CREATE``, ``SET``, ...);
  flatprint is read-only. It is a kind of :class:`UnsupportedCypherError`.

All of them are :class:`flatprint.errors.QueryError`, through the common base :class:`CypherError`.
"""

from __future__ import annotations

from flatprint.errors import QueryError

__all__ = ["CypherError", "CypherSyntaxError", "UnsupportedCypherError", "CypherWriteError", "unsupported"]


class CypherError(QueryError):
    """Base class of the Cypher front end's errors.

    Attributes:
        line: 1-based line of the offending construct in the query text.
        column: 1-based column (in characters) of the offending construct.
        construct: short name or text of the offending construct (``"SET"``, ``"'#'"``, ...).
    """

    def __init__(self, message: str, *, line: int, column: int, construct: str) -> None:
        super().__init__(message)
        self.line = line
        self.column = column
        self.construct = construct


class CypherSyntaxError(CypherError):
    """The query text is not valid Cypher.

    Message: ``invalid Cypher: <detail> at line L, column C``; ``construct`` is the text of the
    token found where the parser could not go on (``"end of input"`` at the end).
    """

    def __init__(self, detail: str, *, line: int, column: int, construct: str) -> None:
        super().__init__(
            f"invalid Cypher: {detail} at line {line}, column {column}",
            line=line,
            column=column,
            construct=construct,
        )
        self.detail = detail


class UnsupportedCypherError(CypherError):
    """Valid Cypher that flatprint refuses to run.

    Message: ``unsupported Cypher: <construct> at line L, column C`` (subclasses may append a reason).
    """

    def __init__(self, construct: str, *, line: int, column: int, reason: str = "") -> None:
        message = f"unsupported Cypher: {construct} at line {line}, column {column}"
        if reason:
            message += f" ({reason})"
        super().__init__(message, line=line, column=column, construct=construct)


class CypherWriteError(UnsupportedCypherError):
    """A clause that writes (``CREATE``, ``MERGE``, ``SET``, ``DELETE``, ``DETACH DELETE``,
    ``REMOVE``, ``FOREACH``, ``DROP``): flatprint serves a read-only database.

    Message: ``unsupported Cypher: SET at line L, column C (the database is read-only)``.
    """

    def __init__(self, construct: str, *, line: int, column: int) -> None:
        super().__init__(construct, line=line, column=column, reason="the database is read-only")


def unsupported(node, construct: str, reason: str = "") -> UnsupportedCypherError:
    """The error refusing ``construct`` at the position of the syntax tree ``node``."""
    return UnsupportedCypherError(construct, line=node.line, column=node.column, reason=reason)
