"""SWC skeleton files: a strict reader, a neuprint-python-safe writer, and navis conversion.

An SWC file is a text table with one node per line::

    node_id label x y z radius parent_id

``parent_id`` is ``-1`` for a root. Lines starting with ``#`` are comments and blank lines are
ignored. The Male CNS release writes coordinates and radii in 8 nm voxels (see
``flatprint.io.units`` for unit helpers).

In memory a skeleton is a :class:`pandas.DataFrame` with the columns of :data:`SWC_COLUMNS`:
``node_id``, ``label`` and ``parent_id`` as int64, ``x``, ``y``, ``z`` and ``radius`` as floats.
:func:`read_swc` also stores the comment lines in ``df.attrs["header"]`` and the file name (if
known) in ``df.attrs["source"]``.

Why the writer is fussy: neuprint-python parses ``/api/skeletons/skeleton/...?format=swc`` with
``pd.read_csv(delimiter=' ')``, which breaks on double spaces, tabs and trailing spaces, and
drops every line containing ``#``; neuPrintHTTP drops a last line that has no newline. So
:func:`write_swc` writes exactly seven fields separated by one space, ends every line with a
newline, writes integers without decimals and floats in their shortest round-tripping form.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from flatprint.errors import FormatError
from flatprint.io.publish import atomic_write
from flatprint.io.text import format_error, format_numbers, read_text_source

__all__ = [
    "SWC_COLUMNS",
    "find_cycle_rows",
    "from_navis",
    "read_swc",
    "to_navis",
    "write_swc",
]

SWC_COLUMNS = ("node_id", "label", "x", "y", "z", "radius", "parent_id")
_FIELD_NAMES = ("node id", "label", "x", "y", "z", "radius", "parent id")
_INTEGER_FIELDS = {0, 1, 6}
ROOT_PARENT = -1

# At most 18 digits so every accepted integer fits in int64.
_INT = r"[+-]?\d{1,18}"
# Plain decimal or scientific notation; deliberately rejects nan, inf, hex and "1_000".
_FLOAT = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_INT_RE = re.compile(_INT)
_FLOAT_RE = re.compile(_FLOAT)
_ROW_RE = re.compile(rf"\s*({_INT})\s+({_INT})\s+({_FLOAT})\s+({_FLOAT})\s+({_FLOAT})\s+({_FLOAT})\s+({_INT})\s*")


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _fail(source: str | None, line: int, message: str) -> FormatError:
    return format_error(source, message, line=line)


def _explain_bad_row(line: str) -> str:
    """Say what is wrong with a data line that did not match the row pattern."""
    tokens = line.split()
    if len(tokens) != 7:
        return f"expected 7 fields (node_id label x y z radius parent_id), found {len(tokens)}: {line.strip()!r}"
    for position, token in enumerate(tokens):
        if position in _INTEGER_FIELDS:
            if not _INT_RE.fullmatch(token):
                return (
                    f"field {position + 1} ({_FIELD_NAMES[position]}) is not an integer "
                    f"(or has more than 18 digits): {token!r}"
                )
        elif not _FLOAT_RE.fullmatch(token):
            return f"field {position + 1} ({_FIELD_NAMES[position]}) is not a number: {token!r}"
    return f"cannot parse {line.strip()!r}"  # pragma: no cover - the regexes agree


def find_cycle_rows(parent_rows: np.ndarray) -> np.ndarray:
    """Rows that never reach a root by following parents (they are on, or lead into, a cycle).

    ``parent_rows[i]`` is the row of node i's parent, or -1 for a root. Uses pointer doubling:
    after k rounds ``jump[i]`` is the ancestor 2**k levels up, so log2(n) rounds settle every
    node of finite depth to -1 while nodes in a cycle keep a valid ancestor forever.
    """
    jump = np.asarray(parent_rows, dtype=np.int64).copy()
    for _ in range(max(1, len(jump).bit_length())):
        has_ancestor = jump >= 0
        if not has_ancestor.any():
            break
        next_jump = np.full_like(jump, -1)
        next_jump[has_ancestor] = jump[jump[has_ancestor]]
        jump = next_jump
    return np.flatnonzero(jump >= 0)


def _cycle_members(parent_rows: np.ndarray, start_row: int) -> list[int]:
    """The rows of the cycle reached from ``start_row`` by following parents."""
    row = start_row
    for _ in range(len(parent_rows)):  # after n steps we are certainly inside the cycle
        row = int(parent_rows[row])
    members = [row]
    next_row = int(parent_rows[row])
    while next_row != members[0]:
        members.append(next_row)
        next_row = int(parent_rows[next_row])
    return members


def _check_tree(
    node_ids: np.ndarray,
    parent_ids: np.ndarray,
    *,
    allow_forest: bool,
) -> tuple[int, str] | None:
    """Check that (node_ids, parent_ids) form a tree (or a forest if allowed).

    Returns None when valid, otherwise ``(row, message)`` for the first problem: duplicate node
    ids, parents that are not nodes, cycles, more than one root. Rows are 0-based positions.
    Other rows a message mentions appear as ``{row:N}`` placeholders, which the caller turns
    into file line numbers (reader) or table rows (writer).
    """
    node_ids = np.asarray(node_ids, dtype=np.int64)
    parent_ids = np.asarray(parent_ids, dtype=np.int64)
    index = pd.Index(node_ids)

    duplicated = np.flatnonzero(index.duplicated(keep="first"))
    if len(duplicated):
        row = int(duplicated[0])
        first = int(np.flatnonzero(node_ids == node_ids[row])[0])
        return row, f"node id {node_ids[row]} is defined twice (first at {{row:{first}}})"

    is_root = parent_ids == ROOT_PARENT
    parent_rows = index.get_indexer(parent_ids)
    parent_rows[is_root] = -1
    missing = np.flatnonzero((parent_rows < 0) & ~is_root)
    if len(missing):
        row = int(missing[0])
        return row, (
            f"parent {parent_ids[row]} of node {node_ids[row]} is not a node in the file "
            f"(a root's parent must be {ROOT_PARENT})"
        )

    cyclic = find_cycle_rows(parent_rows)
    if len(cyclic):
        members = _cycle_members(parent_rows, int(cyclic[0]))
        row = min(members)
        if len(members) == 1:
            return row, f"node {node_ids[row]} is its own parent"
        # List the cycle starting at its earliest row, in parent order.
        start = members.index(row)
        ordered = members[start:] + members[:start]
        path = " -> ".join(str(node_ids[r]) for r in ordered[:10])
        more = " -> ..." if len(ordered) > 10 else ""
        return row, f"cycle in parent links: {path}{more} -> {node_ids[row]}"

    roots = np.flatnonzero(is_root)
    if len(roots) == 0:  # only possible for an empty table
        return 0, "no root node (a root has parent -1)"
    if len(roots) > 1 and not allow_forest:
        shown = ", ".join(f"{node_ids[r]} at {{row:{int(r)}}}" for r in roots[:5])
        more = ", ..." if len(roots) > 5 else ""
        return int(roots[1]), (
            f"{len(roots)} roots ({shown}{more}); the file is a forest, pass allow_forest=True to accept it"
        )
    return None


def read_swc(source: Any, *, allow_forest: bool = False) -> pd.DataFrame:
    """Parse an SWC file strictly.

    ``source`` is a path (``str`` or ``os.PathLike``), SWC text (a ``str`` containing a line
    break, or a single row), ``bytes``, or an open file object (text or binary).

    Returns a DataFrame with columns ``node_id, label, x, y, z, radius, parent_id`` in file
    order; ``attrs["header"]`` holds the comment lines (with their ``#``) and
    ``attrs["source"]`` the file name or None.

    Raises :class:`flatprint.errors.FormatError` naming the file (when known) and the 1-based
    line for: a wrong number of fields, a non-numeric or non-finite field, a non-integer id or
    label, a negative node id, a duplicate node id, a parent that is not in the file, a cycle,
    several roots (unless ``allow_forest``), and a file without nodes. The error also carries
    ``.source`` and ``.line`` attributes.
    """
    text, name = read_text_source(source)
    lines = text.split("\n")

    header: list[str] = []
    rows: list[tuple[str, ...]] = []
    line_numbers: list[int] = []
    for line_number, raw_line in enumerate(lines, start=1):
        line = raw_line.rstrip("\r")
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            if not rows:
                header.append(stripped)
            continue
        match = _ROW_RE.fullmatch(line)
        if match is None:
            raise _fail(name, line_number, _explain_bad_row(line))
        rows.append(match.groups())
        line_numbers.append(line_number)

    if not rows:
        last_line = max(1, len(lines) - (1 if lines and lines[-1] == "" else 0))
        raise _fail(name, last_line, "no nodes: the file is empty or has only comments")

    columns = list(zip(*rows))
    node_ids = np.array([int(v) for v in columns[0]], dtype=np.int64)
    labels = np.array([int(v) for v in columns[1]], dtype=np.int64)
    parent_ids = np.array([int(v) for v in columns[6]], dtype=np.int64)
    floats = {
        name_: np.array([float(v) for v in columns[i]], dtype=np.float64)
        for i, name_ in ((2, "x"), (3, "y"), (4, "z"), (5, "radius"))
    }

    for column, values in floats.items():
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            row = int(bad[0])
            value = columns[SWC_COLUMNS.index(column)][row]
            raise _fail(name, line_numbers[row], f"{column} is out of range: {value!r}")
    negative = np.flatnonzero(node_ids < 0)
    if len(negative):
        row = int(negative[0])
        raise _fail(name, line_numbers[row], f"node id {node_ids[row]} is negative")

    problem = _check_tree(node_ids, parent_ids, allow_forest=allow_forest)
    if problem is not None:
        row, message = problem
        message = re.sub(r"\{row:(\d+)\}", lambda m: f"line {line_numbers[int(m.group(1))]}", message)
        raise _fail(name, line_numbers[row], message)

    df = pd.DataFrame(
        {
            "node_id": node_ids,
            "label": labels,
            "x": floats["x"],
            "y": floats["y"],
            "z": floats["z"],
            "radius": floats["radius"],
            "parent_id": parent_ids,
        }
    )
    df.attrs["header"] = header
    df.attrs["source"] = name
    return df


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _integer_column(df: pd.DataFrame, column: str, default: int | None = None) -> np.ndarray:
    if column not in df.columns:
        if default is None:
            raise ValueError(f"SWC table has no {column!r} column")
        return np.full(len(df), default, dtype=np.int64)
    series = df[column]
    if isinstance(series.dtype, pd.CategoricalDtype):  # navis stores labels as categories
        series = series.astype(object)
    try:
        values = np.asarray(pd.to_numeric(series))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"column {column!r} is not numeric: {exc}") from None
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise ValueError(f"column {column!r} must hold integers")
    elif values.dtype.kind == "u" and len(values) and values.max() > np.iinfo(np.int64).max:
        raise ValueError(f"column {column!r} has values above the int64 range")
    elif values.dtype.kind not in "iub":
        raise ValueError(f"column {column!r} must hold integers, not {values.dtype}")
    return values.astype(np.int64)


def _header_lines(header: Iterable[str] | str | None) -> list[str]:
    if header is None:
        return []
    if isinstance(header, str):
        header = header.splitlines()
    lines = []
    for entry in header:
        for line in str(entry).splitlines() or [""]:
            line = line.rstrip()
            lines.append(line if line.startswith("#") else f"# {line}".rstrip())
    return lines


def write_swc(
    df: pd.DataFrame,
    path: str | os.PathLike | None = None,
    *,
    header: Iterable[str] | str | None = None,
    validate: bool = True,
) -> str:
    """Format a skeleton table as SWC text; also write it atomically to ``path`` if given.

    ``df`` needs ``node_id``, ``x``, ``y``, ``z``, ``radius`` and ``parent_id``; ``label``
    defaults to 0 (navis categorical labels are fine). Other columns are ignored and rows are
    written in table order. Every line has exactly seven single-space-separated fields and ends
    in a newline; integers have no decimals and floats use their shortest form.

    ``header`` lines are written first as comments (``# `` is prepended where missing); pass
    ``header=df.attrs.get("header")`` to keep the header read by :func:`read_swc`.

    With ``validate`` (default) the table must be a tree or forest: unique ids, parents present,
    no cycles; otherwise ValueError. Returns the text.
    """
    node_ids = _integer_column(df, "node_id")
    labels = _integer_column(df, "label", default=0)
    parent_ids = _integer_column(df, "parent_id")
    for column in ("x", "y", "z", "radius"):
        if column not in df.columns:
            raise ValueError(f"SWC table has no {column!r} column")
    if validate:
        if np.any(node_ids < 0):
            raise ValueError("node ids must be non-negative")
        problem = _check_tree(node_ids, parent_ids, allow_forest=True)
        if problem is not None:
            row, message = problem
            message = re.sub(r"\{row:(\d+)\}", lambda m: f"row {m.group(1)}", message)
            raise ValueError(f"not a valid skeleton (row {row}): {message}")

    fields = [
        format_numbers(node_ids),
        format_numbers(labels),
        format_numbers(df["x"].to_numpy(), "x"),
        format_numbers(df["y"].to_numpy(), "y"),
        format_numbers(df["z"].to_numpy(), "z"),
        format_numbers(df["radius"].to_numpy(), "radius"),
        format_numbers(parent_ids),
    ]
    body = [" ".join(row) for row in zip(*fields)]
    text = "".join(line + "\n" for line in _header_lines(header) + body)
    if path is not None:
        atomic_write(path, text)
    return text


# --------------------------------------------------------------------------------------------
# navis
# --------------------------------------------------------------------------------------------


def to_navis(df: pd.DataFrame, units: str | None = "8 nm", **metadata: Any):
    """Make a ``navis.TreeNeuron`` from a skeleton table.

    ``units`` is what one coordinate unit means (``"8 nm"`` for Male CNS voxels, ``"nm"``,
    ``"um"``). ``metadata`` goes to ``TreeNeuron`` (e.g. ``id=12781, name="DNge104_R",
    soma=1``). navis is imported lazily because it is an optional dependency.
    """
    import navis  # noqa: PLC0415 - optional dependency

    nodes = pd.DataFrame(
        {
            "node_id": _integer_column(df, "node_id"),
            "label": _integer_column(df, "label", default=0),
            "x": df["x"].to_numpy(),
            "y": df["y"].to_numpy(),
            "z": df["z"].to_numpy(),
            "radius": df["radius"].to_numpy() if "radius" in df.columns else np.zeros(len(df)),
            "parent_id": _integer_column(df, "parent_id"),
        }
    )
    return navis.TreeNeuron(nodes, units=units, **metadata)


def from_navis(neuron: Any) -> pd.DataFrame:
    """Make a skeleton table from a ``navis.TreeNeuron``.

    Node ids, parents, coordinates and radii are kept as they are (same units as the neuron);
    labels become integers (0 where navis has none). ``attrs["units"]`` records the neuron's
    units, ``attrs["id"]``/``attrs["name"]`` its id and name.
    """
    nodes = neuron.nodes
    radius = nodes["radius"].to_numpy() if "radius" in nodes.columns else np.zeros(len(nodes))
    df = pd.DataFrame(
        {
            "node_id": _integer_column(nodes, "node_id"),
            "label": _integer_column(nodes, "label", default=0),
            "x": nodes["x"].to_numpy(),
            "y": nodes["y"].to_numpy(),
            "z": nodes["z"].to_numpy(),
            "radius": radius,
            "parent_id": _integer_column(nodes, "parent_id"),
        }
    )
    df.attrs["units"] = str(getattr(neuron, "units", "")) or None
    df.attrs["id"] = getattr(neuron, "id", None)
    df.attrs["name"] = getattr(neuron, "name", None)
    return df
