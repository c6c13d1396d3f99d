"""Neuroglancer precomputed skeletons (unsharded): info files, the binary encoding, SWC conversion.

The format follows the neuroglancer specification (``src/datasource/precomputed/skeletons.md`` in
google/neuroglancer). A skeleton directory holds an ``info`` JSON file and one binary file per
segment, named by the base-10 segment id. Each file holds, little-endian::

    uint32 num_vertices, uint32 num_edges,
    float32 vertices[num_vertices][3]      (x, y, z in "stored model" units),
    uint32  edges[num_edges][2]            (vertex indices),
    then each info vertex attribute in order: data[num_vertices][num_components].

``info["transform"]`` is a row-major 3x4 affine from stored units to nanometres (identity when
absent). The spec gives edges no direction. The Male CNS release writes edges child -> parent,
vertices in nm, and an info with only ``"@type"`` (no transform, no radius); navis writes
parent -> child. This writer always writes ``transform`` and a float32 ``radius`` attribute,
vertices in nm and edges child -> parent; the reader accepts all of the above
(``edge_direction="auto"``). SWC files are in 8 nm voxels (:mod:`flatprint.io.units`).
"""

from __future__ import annotations

import json
import math
import os
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flatprint.io.publish import atomic_write
from flatprint.io.swc import find_cycle_rows
from flatprint.io.text import format_error
from flatprint.io.units import MALE_CNS_VOXEL_NM

__all__ = [
    "IDENTITY_TRANSFORM",
    "PrecomputedSkeleton",
    "decode_skeleton",
    "encode_skeleton",
    "parse_skeleton_info",
    "read_precomputed_skeleton",
    "read_skeleton_info",
    "skeleton_info",
    "skeleton_to_swc",
    "swc_to_skeleton",
    "write_precomputed_skeleton",
    "write_skeleton_info",
]

IDENTITY_TRANSFORM = (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0)
RADIUS_ATTRIBUTE = {"id": "radius", "data_type": "float32", "num_components": 1}
_ATTRIBUTE_DTYPES = {
    "float32": np.dtype("<f4"),
    "int8": np.dtype("i1"),
    "uint8": np.dtype("u1"),
    "int16": np.dtype("<i2"),
    "uint16": np.dtype("<u2"),
    "int32": np.dtype("<i4"),
    "uint32": np.dtype("<u4"),
}
_HEADER_BYTES = 8


@dataclass
class PrecomputedSkeleton:
    """One skeleton as stored: vertices (N, 3) float32, edges (E, 2) uint32, and attributes
    by id, each (N,) or (N, num_components)."""

    vertices: np.ndarray
    edges: np.ndarray
    attributes: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def radius(self) -> np.ndarray | None:
        return self.attributes.get("radius")


def skeleton_info(
    *,
    transform: Sequence[float] = IDENTITY_TRANSFORM,
    radius: bool = True,
    extra_attributes: Iterable[Mapping[str, Any]] = (),
) -> dict:
    """The skeleton ``info`` dict flatprint writes: type, transform and vertex attributes."""
    attributes = [dict(RADIUS_ATTRIBUTE)] if radius else []
    attributes += [dict(a) for a in extra_attributes]
    info = {
        "@type": "neuroglancer_skeletons",
        "transform": [float(v) for v in transform],
        "vertex_attributes": attributes,
    }
    return parse_skeleton_info(info)


def parse_skeleton_info(info: Mapping[str, Any] | str | bytes, source: Any = None) -> dict:
    """Validate a skeleton ``info`` and fill defaults (identity transform, no attributes).

    Accepts the release's minimal ``{"@type": "neuroglancer_skeletons"}``. Raises FormatError
    for a wrong ``@type``, a transform that is not 12 finite numbers, malformed or duplicate
    vertex attributes, and sharded layouts (not supported here).
    """
    if isinstance(info, (str, bytes)):
        try:
            info = json.loads(info)
        except json.JSONDecodeError as exc:
            raise format_error(source, f"line {exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(info, Mapping):
        raise format_error(source, "skeleton info must be a JSON object")
    if info.get("@type") != "neuroglancer_skeletons":
        raise format_error(source, f'"@type" must be "neuroglancer_skeletons", not {info.get("@type")!r}')
    if "sharding" in info and info["sharding"] is not None:
        raise format_error(source, "sharded skeletons are not supported (only the unsharded layout)")

    transform = info.get("transform", IDENTITY_TRANSFORM)
    try:
        transform = [float(v) for v in transform]
    except (TypeError, ValueError):
        raise format_error(source, f'"transform" must be 12 numbers, not {transform!r}') from None
    if len(transform) != 12 or not all(math.isfinite(v) for v in transform):
        raise format_error(source, f'"transform" must be 12 finite numbers, not {transform!r}')

    attributes = []
    seen: set[str] = set()
    for attribute in info.get("vertex_attributes") or []:
        if not isinstance(attribute, Mapping):
            raise format_error(source, f"vertex attribute must be an object: {attribute!r}")
        attribute_id = attribute.get("id")
        data_type = attribute.get("data_type")
        components = attribute.get("num_components")
        if not isinstance(attribute_id, str) or not attribute_id or attribute_id in seen:
            raise format_error(source, f"vertex attribute id must be a unique non-empty string: {attribute_id!r}")
        if data_type not in _ATTRIBUTE_DTYPES:
            raise format_error(source, f"vertex attribute {attribute_id!r} has unsupported data_type {data_type!r}")
        if not isinstance(components, int) or isinstance(components, bool) or components < 1:
            raise format_error(source, f"vertex attribute {attribute_id!r} needs a positive integer num_components")
        seen.add(attribute_id)
        attributes.append({"id": attribute_id, "data_type": data_type, "num_components": components})

    parsed = {key: value for key, value in info.items() if key not in ("transform", "vertex_attributes")}
    parsed["transform"] = transform
    parsed["vertex_attributes"] = attributes
    return parsed


def encode_skeleton(skeleton: PrecomputedSkeleton, vertex_attributes: Sequence[Mapping[str, Any]] = ()) -> bytes:
    """Encode one skeleton in the binary layout; ``vertex_attributes`` is the info's list and
    fixes which attributes are written, in which order and type."""
    vertices = np.asarray(skeleton.vertices, dtype=np.float64)
    edges = np.asarray(skeleton.edges)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape (N, 3), not {vertices.shape}")
    if edges.size == 0:
        edges = edges.reshape(0, 2)
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise ValueError(f"edges must have shape (E, 2), not {edges.shape}")
    n_vertices = len(vertices)
    if len(edges) and (edges.min() < 0 or edges.max() >= n_vertices):
        raise ValueError(f"edge vertex indices must lie in [0, {n_vertices})")
    if not np.all(np.isfinite(vertices)):
        raise ValueError("vertices must be finite")

    parts = [
        np.array([n_vertices, len(edges)], dtype="<u4").tobytes(),
        vertices.astype("<f4").tobytes(order="C"),
        edges.astype("<u4").tobytes(order="C"),
    ]
    for attribute in vertex_attributes:
        attribute_id = attribute["id"]
        if attribute_id not in skeleton.attributes:
            raise ValueError(f"skeleton has no values for vertex attribute {attribute_id!r}")
        values = np.asarray(skeleton.attributes[attribute_id])
        expected = n_vertices * attribute["num_components"]
        if values.size != expected:
            raise ValueError(f"vertex attribute {attribute_id!r} needs {expected} values, got {values.size}")
        parts.append(values.reshape(-1).astype(_ATTRIBUTE_DTYPES[attribute["data_type"]]).tobytes())
    return b"".join(parts)


def decode_skeleton(
    data: bytes,
    vertex_attributes: Sequence[Mapping[str, Any]] = (),
    source: Any = None,
) -> PrecomputedSkeleton:
    """Decode one binary skeleton. The byte count must match the header and the attributes
    exactly and edge indices must be in range; otherwise FormatError naming ``source``."""
    data = bytes(data)
    if len(data) < _HEADER_BYTES:
        raise format_error(source, f"skeleton file has {len(data)} bytes, fewer than the 8-byte header")
    n_vertices, n_edges = (int(v) for v in np.frombuffer(data, dtype="<u4", count=2))
    attribute_sizes = [
        n_vertices * a["num_components"] * _ATTRIBUTE_DTYPES[a["data_type"]].itemsize for a in vertex_attributes
    ]
    expected = _HEADER_BYTES + 12 * n_vertices + 8 * n_edges + sum(attribute_sizes)
    if len(data) != expected:
        names = ", ".join(a["id"] for a in vertex_attributes) or "none"
        raise format_error(
            source,
            (
                f"skeleton file has {len(data)} bytes but its header ({n_vertices} vertices, "
                f"{n_edges} edges) and the info's vertex attributes ({names}) need {expected}"
            ),
        )
    offset = _HEADER_BYTES
    vertices = np.frombuffer(data, dtype="<f4", count=3 * n_vertices, offset=offset).reshape(n_vertices, 3)
    offset += 12 * n_vertices
    edges = np.frombuffer(data, dtype="<u4", count=2 * n_edges, offset=offset).reshape(n_edges, 2)
    offset += 8 * n_edges
    if n_edges and int(edges.max()) >= n_vertices:
        raise format_error(source, f"edge refers to vertex {int(edges.max())} but there are only {n_vertices} vertices")
    attributes = {}
    for attribute, size in zip(vertex_attributes, attribute_sizes):
        dtype = _ATTRIBUTE_DTYPES[attribute["data_type"]]
        values = np.frombuffer(data, dtype=dtype, count=size // dtype.itemsize, offset=offset)
        if attribute["num_components"] > 1:
            values = values.reshape(n_vertices, attribute["num_components"])
        attributes[attribute["id"]] = values.astype(dtype.newbyteorder("="))
        offset += size
    return PrecomputedSkeleton(
        vertices=vertices.astype(np.float32),
        edges=edges.astype(np.uint32),
        attributes=attributes,
    )


# --------------------------------------------------------------------------------------------
# Skeletons: transform and edge direction
# --------------------------------------------------------------------------------------------


def _affine(transform: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    matrix = np.asarray(transform, dtype=np.float64).reshape(3, 4)
    return matrix[:, :3], matrix[:, 3]


def _is_diagonal(linear: np.ndarray) -> bool:
    return bool(np.all(linear == np.diag(np.diag(linear))))


def _uniform_scale(linear: np.ndarray) -> float:
    """The length scale of a linear map (the spec asks for uniform scaling when radii are used).

    Diagonal maps use their mean diagonal so that e.g. diag(8, 8, 8) gives exactly 8;
    others use the cube root of |det|.
    """
    if _is_diagonal(linear):
        diagonal = np.abs(np.diag(linear))
        return float(diagonal[0]) if np.all(diagonal == diagonal[0]) else float(np.cbrt(np.prod(diagonal)))
    return float(np.cbrt(abs(np.linalg.det(linear))))


def _stored_to_nm(vertices: np.ndarray, transform: Sequence[float]) -> np.ndarray:
    linear, offset = _affine(transform)
    vertices = np.asarray(vertices, dtype=np.float64)
    if _is_diagonal(linear):  # exact for the common pure-scale case
        return vertices * np.diag(linear) + offset
    return vertices @ linear.T + offset


def _nm_to_stored(vertices_nm: np.ndarray, transform: Sequence[float]) -> np.ndarray:
    linear, offset = _affine(transform)
    shifted = np.asarray(vertices_nm, dtype=np.float64) - offset
    if _is_diagonal(linear):
        if np.any(np.diag(linear) == 0):
            raise ValueError("skeleton transform is singular")
        return shifted / np.diag(linear)
    return np.linalg.solve(linear, shifted.T).T


def _directed_parents(children: np.ndarray, parents: np.ndarray, n_vertices: int) -> np.ndarray | None:
    """Parent index per vertex if each vertex has at most one parent and there is no cycle."""
    if len(np.unique(children)) != len(children):
        return None
    parent_of = np.full(n_vertices, -1, dtype=np.int64)
    parent_of[children] = parents
    if len(find_cycle_rows(parent_of)):
        return None
    return parent_of


def _undirected_parents(edges: np.ndarray, n_vertices: int) -> np.ndarray | None:
    """Orient a forest by breadth-first search from the lowest vertex of each component.
    None if the edges contain a cycle (a forest has exactly n_vertices - components edges)."""
    ends = np.concatenate([edges[:, 0], edges[:, 1]]).astype(np.int64)
    others = np.concatenate([edges[:, 1], edges[:, 0]]).astype(np.int64)
    order = np.argsort(ends, kind="stable")
    neighbours = others[order]
    starts = np.searchsorted(ends[order], np.arange(n_vertices + 1))
    parent_of = np.full(n_vertices, -2, dtype=np.int64)  # -2 = not visited yet
    components = 0
    for root in range(n_vertices):
        if parent_of[root] != -2:
            continue
        components += 1
        parent_of[root] = -1
        queue = deque([root])
        while queue:
            vertex = queue.popleft()
            for neighbour in neighbours[starts[vertex] : starts[vertex + 1]].tolist():
                if parent_of[neighbour] == -2:
                    parent_of[neighbour] = vertex
                    queue.append(neighbour)
    if len(edges) != n_vertices - components:
        return None
    return parent_of


def _parents_from_edges(edges: np.ndarray, n_vertices: int, direction: str, source: Any) -> np.ndarray:
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if direction not in ("auto", "child_parent", "parent_child", "undirected"):
        raise ValueError(f"edge_direction must be auto, child_parent, parent_child or undirected, not {direction!r}")
    attempts = {
        "child_parent": lambda: _directed_parents(edges[:, 0], edges[:, 1], n_vertices),
        "parent_child": lambda: _directed_parents(edges[:, 1], edges[:, 0], n_vertices),
        "undirected": lambda: _undirected_parents(edges, n_vertices),
    }
    # auto: the FlyEM (and flatprint) convention first, then navis's, then no convention at all.
    order = ["child_parent", "parent_child", "undirected"] if direction == "auto" else [direction]
    for name in order:
        parent_of = attempts[name]()
        if parent_of is not None:
            return parent_of
    raise format_error(
        source,
        (
            f"edges do not form a tree or forest when read as {direction} "
            f"(a vertex has two parents, or there is a cycle)"
        ),
    )


# --------------------------------------------------------------------------------------------
# Skeletons: SWC table <-> precomputed
# --------------------------------------------------------------------------------------------


def swc_to_skeleton(df: pd.DataFrame, *, swc_unit_nm: float = MALE_CNS_VOXEL_NM) -> PrecomputedSkeleton:
    """Convert an SWC table to a precomputed skeleton in nanometres.

    Vertex i is table row i; edges are ``[child, parent]`` row indices (the FlyEM convention);
    the ``radius`` attribute is the radius in nm. ``swc_unit_nm`` is the length of one SWC unit
    (8 for Male CNS voxels, 1 for nm, 1000 for µm). Labels are not stored (the format has no
    place for them unless an extra attribute is declared).
    """
    node_ids = df["node_id"].to_numpy(dtype=np.int64)
    parent_ids = df["parent_id"].to_numpy(dtype=np.int64)
    parent_rows = pd.Index(node_ids).get_indexer(parent_ids)
    is_child = parent_ids != -1
    if np.any(parent_rows[is_child] < 0):
        missing = parent_ids[is_child][parent_rows[is_child] < 0][0]
        raise ValueError(f"parent {missing} is not a node of the skeleton")
    children = np.flatnonzero(is_child)
    xyz = df[["x", "y", "z"]].to_numpy(dtype=np.float64)
    radius = df["radius"].to_numpy(dtype=np.float64) if "radius" in df.columns else np.zeros(len(df))
    return PrecomputedSkeleton(
        vertices=(xyz * swc_unit_nm).astype(np.float32),
        edges=np.column_stack([children, parent_rows[children]]).astype(np.uint32).reshape(-1, 2),
        attributes={"radius": (radius * swc_unit_nm).astype(np.float32)},
    )


def skeleton_to_swc(
    skeleton: PrecomputedSkeleton,
    *,
    swc_unit_nm: float = MALE_CNS_VOXEL_NM,
    edge_direction: str = "auto",
    missing_radius: float = 0.0,
    source: Any = None,
) -> pd.DataFrame:
    """Convert a precomputed skeleton whose vertices (and radius) are in nm to an SWC table.

    Node ids are vertex index + 1 in vertex order (as the release's exporter numbers them);
    labels are 0. ``edge_direction`` says how to read edges: ``"child_parent"`` (FlyEM,
    flatprint), ``"parent_child"`` (navis), ``"undirected"`` (root each component at its lowest
    vertex) or ``"auto"``: the first of these three that yields a tree/forest. A chain fits both
    directed readings; ``auto`` then takes child -> parent. Coordinates stay float32 so values
    written by :func:`swc_to_skeleton` come back with the same shortest decimal form.
    """
    n_vertices = len(skeleton.vertices)
    parent_of = _parents_from_edges(skeleton.edges, n_vertices, edge_direction, source)
    scale = np.float32(swc_unit_nm)
    xyz = np.asarray(skeleton.vertices, dtype=np.float32) / scale
    radius = skeleton.radius
    if radius is None:
        radius = np.full(n_vertices, missing_radius, dtype=np.float32)
    else:
        radius = np.asarray(radius, dtype=np.float32).reshape(n_vertices) / scale
    node_ids = np.arange(1, n_vertices + 1, dtype=np.int64)
    return pd.DataFrame(
        {
            "node_id": node_ids,
            "label": np.zeros(n_vertices, dtype=np.int64),
            "x": xyz[:, 0],
            "y": xyz[:, 1],
            "z": xyz[:, 2],
            "radius": radius,
            "parent_id": np.where(parent_of >= 0, parent_of + 1, -1).astype(np.int64),
        }
    )


# --------------------------------------------------------------------------------------------
# Skeletons: directories
# --------------------------------------------------------------------------------------------


def write_skeleton_info(
    directory: str | os.PathLike,
    *,
    transform: Sequence[float] = IDENTITY_TRANSFORM,
    radius: bool = True,
) -> Path:
    """Write ``<directory>/info`` for a flatprint skeleton directory; returns its path."""
    info = skeleton_info(transform=transform, radius=radius)
    return atomic_write(Path(directory) / "info", json.dumps(info, indent=1) + "\n")


def read_skeleton_info(directory: str | os.PathLike) -> dict:
    """Read and validate ``<directory>/info`` (see :func:`parse_skeleton_info`)."""
    path = Path(directory) / "info"
    return parse_skeleton_info(path.read_bytes(), source=path)


def write_precomputed_skeleton(
    directory: str | os.PathLike,
    segment_id: int,
    df: pd.DataFrame,
    *,
    swc_unit_nm: float = MALE_CNS_VOXEL_NM,
) -> Path:
    """Write one skeleton (an SWC table) as ``<directory>/<segment_id>``.

    If the directory has no ``info`` yet, flatprint's own is written first (identity
    transform, so vertices are stored in nm, plus a float32 radius). An existing ``info`` is
    respected: vertices are mapped through the inverse of its transform and its attributes are
    written; only ``radius`` can be filled, anything else raises ValueError.
    """
    directory = Path(directory)
    segment_id = int(segment_id)
    if segment_id < 0:
        raise ValueError("segment ids are non-negative")
    info_path = directory / "info"
    info = read_skeleton_info(directory) if info_path.exists() else None
    if info is None:
        write_skeleton_info(directory)
        info = skeleton_info()

    skeleton = swc_to_skeleton(df, swc_unit_nm=swc_unit_nm)
    linear, _ = _affine(info["transform"])
    stored = PrecomputedSkeleton(
        vertices=_nm_to_stored(skeleton.vertices, info["transform"]),
        edges=skeleton.edges,
        attributes={},
    )
    for attribute in info["vertex_attributes"]:
        if attribute["id"] != "radius":
            raise ValueError(f"{info_path} declares vertex attribute {attribute['id']!r}, which flatprint cannot fill")
        stored.attributes["radius"] = skeleton.attributes["radius"] / np.float32(_uniform_scale(linear))
    return atomic_write(directory / str(segment_id), encode_skeleton(stored, info["vertex_attributes"]))


def read_precomputed_skeleton(
    directory: str | os.PathLike,
    segment_id: int,
    *,
    swc_unit_nm: float = MALE_CNS_VOXEL_NM,
    edge_direction: str = "auto",
    missing_radius: float = 0.0,
    info: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Read ``<directory>/<segment_id>`` as an SWC table in units of ``swc_unit_nm`` nm.

    The info's transform is applied (stored units -> nm) and radii are scaled by its uniform
    scale. Without a radius attribute (the release's files) radii are ``missing_radius``. Pass
    ``info`` (from :func:`read_skeleton_info`) to avoid re-reading it for many skeletons.
    """
    directory = Path(directory)
    info = parse_skeleton_info(info) if info is not None else read_skeleton_info(directory)
    path = directory / str(int(segment_id))
    skeleton = decode_skeleton(path.read_bytes(), info["vertex_attributes"], source=path)
    linear, _ = _affine(info["transform"])
    in_nm = PrecomputedSkeleton(
        vertices=_stored_to_nm(skeleton.vertices, info["transform"]).astype(np.float32),
        edges=skeleton.edges,
        attributes={},
    )
    if skeleton.radius is not None:
        in_nm.attributes["radius"] = (skeleton.radius.astype(np.float64) * _uniform_scale(linear)).astype(np.float32)
    df = skeleton_to_swc(
        in_nm, swc_unit_nm=swc_unit_nm, edge_direction=edge_direction, missing_radius=missing_radius, source=path
    )
    df.attrs["source"] = str(path)
    return df
