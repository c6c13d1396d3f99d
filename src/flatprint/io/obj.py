"""Wavefront OBJ text meshes (what neuPrint's /api/roimeshes endpoint serves): a writer and a
geometry reader."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from flatprint.errors import FormatError
from flatprint.io.publish import atomic_write
from flatprint.io.text import format_error, format_numbers, read_text_source

__all__ = ["read_obj", "write_obj"]


def write_obj(
    vertices: Any,
    faces: Any,
    path: str | os.PathLike | None = None,
    *,
    comments: Iterable[str] = (),
) -> str:
    """Format a mesh as Wavefront OBJ text (``v x y z`` and ``f a b c`` lines); also write it
    atomically to ``path`` if given. ``faces`` are 0-based vertex indices (N, k >= 3); OBJ's
    are 1-based. Returns the text."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape (N, 3), not {vertices.shape}")
    if faces.size == 0:
        faces = faces.reshape(0, 3)
    if faces.ndim != 2 or faces.shape[1] < 3 or faces.dtype.kind not in "iu":
        raise ValueError(f"faces must be integer indices of shape (M, k>=3), not {faces.dtype} {faces.shape}")
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"face vertex indices must lie in [0, {len(vertices)})")
    lines = [f"# {c}".rstrip() for comment in comments for c in str(comment).splitlines()]
    xs, ys, zs = (format_numbers(vertices[:, i], "xyz"[i]) for i in range(3))
    lines += [f"v {x} {y} {z}" for x, y, z in zip(xs, ys, zs)]
    lines += ["f " + " ".join(str(v) for v in face) for face in (faces.astype(np.int64) + 1).tolist()]
    text = "".join(line + "\n" for line in lines)
    if path is not None:
        atomic_write(path, text)
    return text


def read_obj(source: Any) -> tuple[np.ndarray, np.ndarray]:
    """Read the geometry of an OBJ mesh: returns (vertices float64 (N, 3), faces int64 (M, 3)).

    ``source`` is a path, OBJ text, bytes or a file object. ``f`` entries may be ``i``,
    ``i/t``, ``i//n`` or ``i/t/n`` and negative (relative) indices; polygons are split into
    triangle fans. Normals, texture coordinates, groups, materials and other statements are
    ignored. Malformed ``v``/``f`` lines and out-of-range indices raise FormatError with the line.
    """
    text, name = read_text_source(source)

    def fail(line_number: int, message: str) -> FormatError:
        return format_error(name, message, line=line_number)

    vertices: list[tuple[float, float, float]] = []
    triangles: list[tuple[int, int, int]] = []
    triangle_lines: list[int] = []
    for line_number, raw_line in enumerate(text.split("\n"), start=1):
        tokens = raw_line.split("#", 1)[0].split()
        if not tokens:
            continue
        keyword = tokens[0]
        if keyword == "v":
            if len(tokens) < 4:
                raise fail(line_number, f"vertex needs x y z: {raw_line.strip()!r}")
            try:
                xyz = tuple(float(t) for t in tokens[1:4])
            except ValueError:
                raise fail(line_number, f"vertex coordinates are not numbers: {raw_line.strip()!r}") from None
            if not all(math.isfinite(v) for v in xyz):
                raise fail(line_number, f"vertex coordinates must be finite: {raw_line.strip()!r}")
            vertices.append(xyz)
        elif keyword == "f":
            if len(tokens) < 4:
                raise fail(line_number, f"face needs at least 3 vertices: {raw_line.strip()!r}")
            corners = []
            for token in tokens[1:]:
                try:
                    index = int(token.split("/", 1)[0])
                except ValueError:
                    raise fail(line_number, f"face vertex {token!r} is not an index") from None
                if index == 0:
                    raise fail(line_number, "face vertex index 0 (OBJ indices start at 1)")
                # Negative indices count back from the vertices defined so far.
                corners.append(index - 1 if index > 0 else len(vertices) + index)
            for second, third in zip(corners[1:-1], corners[2:]):
                triangles.append((corners[0], second, third))
                triangle_lines.append(line_number)

    vertex_array = np.array(vertices, dtype=np.float64).reshape(-1, 3)
    face_array = np.array(triangles, dtype=np.int64).reshape(-1, 3)
    if len(face_array):
        bad = np.flatnonzero((face_array < 0).any(axis=1) | (face_array >= len(vertex_array)).any(axis=1))
        if len(bad):
            raise fail(
                triangle_lines[int(bad[0])],
                f"face refers to a vertex that does not exist (the file has {len(vertex_array)} vertices)",
            )
    return vertex_array, face_array
