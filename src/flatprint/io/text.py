"""Helpers the text formats share (SWC, OBJ, the numbers in precomputed names): reading a source
given as a path, text, bytes or file; numbers in their shortest exact form; errors that name the
file and line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flatprint.errors import FormatError

__all__ = ["format_error", "format_numbers", "read_text_source"]


def format_error(source: Any, message: str, *, line: int | None = None) -> FormatError:
    """A FormatError whose text names the file (if known) and the 1-based line (if given); both are
    also attributes (``source``, ``line``)."""
    where = ", ".join(part for part in (str(source) if source else "", f"line {line}" if line else "") if part)
    error = FormatError(f"{where}: {message}" if where else message)
    error.source = str(source) if source else None
    error.line = line
    return error


def _looks_like_text(text: str) -> bool:
    tokens = text.split()
    return len(tokens) >= 2 or text.lstrip().startswith("#")


def read_text_source(source: Any) -> tuple[str, str | None]:
    """Return (text, display name) for a path, text, bytes or an open file (name None if unknown).

    A ``str`` counts as text when it contains a line break, is blank, or has several
    whitespace-separated tokens and is not an existing file; otherwise it is a path.
    """
    if hasattr(source, "read"):
        data = source.read()
        name = getattr(source, "name", None)
        name = str(name) if isinstance(name, (str, os.PathLike)) else None
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), None
    elif isinstance(source, os.PathLike):
        data, name = Path(source).read_bytes(), str(source)
    elif isinstance(source, str):
        # A str is text if it has a line break or several tokens (an SWC row, an OBJ line) and is not a file.
        if "\n" in source or "\r" in source or not source.strip():
            data, name = source, None
        elif os.path.isfile(source) or not _looks_like_text(source):
            data, name = Path(source).read_bytes(), source
        else:
            data, name = source, None
    else:
        raise TypeError(f"expected a path, text, bytes or a file object, not {type(source).__name__}")
    if isinstance(data, (bytes, bytearray)):
        # These formats are ASCII but for comments; a mangled data line fails its parser anyway.
        data = bytes(data).decode("utf-8", errors="replace")
    return data, name


def format_numbers(values: Any, column: str = "value") -> list[str]:
    """Format numbers compactly: integers without decimals, floats in shortest round-trip form.

    Integral floats lose their ``.0`` (``15784.0`` -> ``15784``), ``-0.0`` becomes ``0``, and
    float32 data keeps float32's shortest form (``18.2843``, not ``18.284299850463867``).
    Raises ValueError for NaN or infinity, naming ``column``.
    """
    array = np.asarray(values)
    if array.dtype.kind == "b":
        array = array.astype(np.int64)
    if array.dtype.kind in "iu":
        return [str(v) for v in array.tolist()]
    if array.dtype.kind != "f":
        try:
            array = np.asarray(pd.to_numeric(pd.Series(values, dtype=object)), dtype=np.float64)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"column {column!r} is not numeric: {exc}") from None
    if array.dtype == np.float16 or array.dtype.itemsize > 8:
        array = array.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(array))
    if len(bad):
        raise ValueError(f"column {column!r} has a non-finite value at row {int(bad[0])}: {array[bad[0]]}")
    # Adding 0.0 turns -0.0 into 0.0; astype(str) uses numpy's shortest repr for the dtype.
    texts = (array + array.dtype.type(0.0)).astype(str).tolist()
    return [t[:-2] if t.endswith(".0") else t for t in texts]
