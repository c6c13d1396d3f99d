"""Exceptions shared by every layer; the server maps them to neuPrint's {"error": ...} answers."""


class FlatprintError(Exception):
    """Base class for errors meant to be shown to users as they are."""


class ReleaseError(FlatprintError):
    """A release directory or file is missing, malformed or inconsistent (names the file/column)."""


class StoreError(FlatprintError):
    """A store is missing, corrupt, or would be overwritten."""


class QueryError(FlatprintError):
    """A query argument is invalid (names the argument)."""


class FormatError(FlatprintError):
    """A file in an edge format (SWC, precomputed, ...) is malformed (names file and line)."""


class NoMatchWarning(UserWarning):
    """A query came back empty and one of its criteria values matches nothing in the store by itself
    (a likely misspelling); the message names the argument and suggests the closest stored values."""
