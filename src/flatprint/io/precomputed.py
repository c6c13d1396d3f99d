"""Neuroglancer precomputed skeletons and volumes, unit helpers, and OBJ text meshes.

Formats follow the neuroglancer specification (``src/datasource/precomputed/skeletons.md`` and
``volume.md`` in google/neuroglancer). Only the **unsharded** layouts are handled here; volumes
only with the ``raw`` chunk encoding (use tensorstore for anything else).

Skeletons
    A directory with an ``info`` JSON file and one binary file per segment, named by the base-10
    segment id. Each file holds, little-endian::

        uint32 num_vertices, uint32 num_edges,
        float32 vertices[num_vertices][3]      (x, y, z in "stored model" units),
        uint32  edges[num_edges][2]            (vertex indices),
        then each info vertex attribute in order: data[num_vertices][num_components].

    ``info["transform"]`` is a row-major 3x4 affine from stored units to nanometres (identity
    when absent). The spec gives edges no direction. The Male CNS release writes edges
    child -> parent, vertices in nm, and an info with only ``"@type"`` (no transform, no
    radius); navis writes parent -> child. This writer always writes ``transform`` and a float32
    ``radius`` attribute, vertices in nm and edges child -> parent; the reader accepts all of
    the above (``edge_direction="auto"``).

Volumes
    ``info`` plus, per scale, chunk files ``<key>/<x0>-<x1>_<y0>-<y1>_<z0>-<z1>`` holding the
    chunk's voxels as little-endian values in Fortran ``[x, y, z]`` order (x fastest), no header.

Units
    Male CNS SWC files use 8 nm voxels; precomputed skeletons use nm; navis/JRC2018U use µm.
"""

from __future__ import annotations

import gzip
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

from flatprint.errors import FormatError
from flatprint.io.swc import atomic_write, find_cycle_rows, format_numbers, read_text_source

__all__ = [
    "IDENTITY_TRANSFORM",
    "MALE_CNS_VOXEL_NM",
    "PrecomputedSkeleton",
    "add_precomputed_volume_scale",
    "decode_skeleton",
    "encode_skeleton",
    "nm_to_um",
    "nm_to_voxels",
    "parse_skeleton_info",
    "read_obj",
    "read_precomputed_skeleton",
    "read_precomputed_volume",
    "read_precomputed_volume_info",
    "read_skeleton_info",
    "skeleton_info",
    "skeleton_to_swc",
    "swc_to_skeleton",
    "um_to_nm",
    "um_to_voxels",
    "voxels_to_nm",
    "voxels_to_um",
    "write_obj",
    "write_precomputed_skeleton",
    "write_precomputed_volume",
    "write_skeleton_info",
]

# --------------------------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------------------------

MALE_CNS_VOXEL_NM = 8.0
NM_PER_UM = 1000.0


def voxels_to_nm(values: Any, voxel_size_nm: float = MALE_CNS_VOXEL_NM) -> np.ndarray:
    """Voxel coordinates (or lengths) to nanometres."""
    return np.asarray(values) * voxel_size_nm


def nm_to_voxels(values: Any, voxel_size_nm: float = MALE_CNS_VOXEL_NM) -> np.ndarray:
    """Nanometres to voxel units (not rounded)."""
    return np.asarray(values) / voxel_size_nm


def nm_to_um(values: Any) -> np.ndarray:
    """Nanometres to micrometres."""
    return np.asarray(values) / NM_PER_UM


def um_to_nm(values: Any) -> np.ndarray:
    """Micrometres to nanometres."""
    return np.asarray(values) * NM_PER_UM


def voxels_to_um(values: Any, voxel_size_nm: float = MALE_CNS_VOXEL_NM) -> np.ndarray:
    """Voxel units to micrometres."""
    return np.asarray(values) * (voxel_size_nm / NM_PER_UM)


def um_to_voxels(values: Any, voxel_size_nm: float = MALE_CNS_VOXEL_NM) -> np.ndarray:
    """Micrometres to voxel units (not rounded)."""
    return np.asarray(values) * (NM_PER_UM / voxel_size_nm)


# --------------------------------------------------------------------------------------------
# Skeletons: info and binary encoding
# --------------------------------------------------------------------------------------------

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


def _error(source: Any, message: str) -> FormatError:
    error = FormatError(f"{source}: {message}" if source else message)
    error.source = str(source) if source else None
    return error


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
            raise _error(source, f"line {exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(info, Mapping):
        raise _error(source, "skeleton info must be a JSON object")
    if info.get("@type") != "neuroglancer_skeletons":
        raise _error(source, f'"@type" must be "neuroglancer_skeletons", not {info.get("@type")!r}')
    if "sharding" in info and info["sharding"] is not None:
        raise _error(source, "sharded skeletons are not supported (only the unsharded layout)")

    transform = info.get("transform", IDENTITY_TRANSFORM)
    try:
        transform = [float(v) for v in transform]
    except (TypeError, ValueError):
        raise _error(source, f'"transform" must be 12 numbers, not {transform!r}') from None
    if len(transform) != 12 or not all(math.isfinite(v) for v in transform):
        raise _error(source, f'"transform" must be 12 finite numbers, not {transform!r}')

    attributes = []
    seen: set[str] = set()
    for attribute in info.get("vertex_attributes") or []:
        if not isinstance(attribute, Mapping):
            raise _error(source, f"vertex attribute must be an object: {attribute!r}")
        attribute_id = attribute.get("id")
        data_type = attribute.get("data_type")
        components = attribute.get("num_components")
        if not isinstance(attribute_id, str) or not attribute_id or attribute_id in seen:
            raise _error(source, f"vertex attribute id must be a unique non-empty string: {attribute_id!r}")
        if data_type not in _ATTRIBUTE_DTYPES:
            raise _error(source, f"vertex attribute {attribute_id!r} has unsupported data_type {data_type!r}")
        if not isinstance(components, int) or isinstance(components, bool) or components < 1:
            raise _error(source, f"vertex attribute {attribute_id!r} needs a positive integer num_components")
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
        raise _error(source, f"skeleton file has {len(data)} bytes, fewer than the 8-byte header")
    n_vertices, n_edges = (int(v) for v in np.frombuffer(data, dtype="<u4", count=2))
    attribute_sizes = [
        n_vertices * a["num_components"] * _ATTRIBUTE_DTYPES[a["data_type"]].itemsize
        for a in vertex_attributes
    ]
    expected = _HEADER_BYTES + 12 * n_vertices + 8 * n_edges + sum(attribute_sizes)
    if len(data) != expected:
        names = ", ".join(a["id"] for a in vertex_attributes) or "none"
        raise _error(source, (f"skeleton file has {len(data)} bytes but its header ({n_vertices} vertices, "
                              f"{n_edges} edges) and the info's vertex attributes ({names}) need {expected}"))
    offset = _HEADER_BYTES
    vertices = np.frombuffer(data, dtype="<f4", count=3 * n_vertices, offset=offset).reshape(n_vertices, 3)
    offset += 12 * n_vertices
    edges = np.frombuffer(data, dtype="<u4", count=2 * n_edges, offset=offset).reshape(n_edges, 2)
    offset += 8 * n_edges
    if n_edges and int(edges.max()) >= n_vertices:
        raise _error(source, f"edge refers to vertex {int(edges.max())} but there are only {n_vertices} vertices")
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
            for neighbour in neighbours[starts[vertex]:starts[vertex + 1]].tolist():
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
    raise _error(source, (f"edges do not form a tree or forest when read as {direction} "
                          f"(a vertex has two parents, or there is a cycle)"))


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
    return pd.DataFrame({
        "node_id": node_ids,
        "label": np.zeros(n_vertices, dtype=np.int64),
        "x": xyz[:, 0],
        "y": xyz[:, 1],
        "z": xyz[:, 2],
        "radius": radius,
        "parent_id": np.where(parent_of >= 0, parent_of + 1, -1).astype(np.int64),
    })


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
    df = skeleton_to_swc(in_nm, swc_unit_nm=swc_unit_nm, edge_direction=edge_direction,
                         missing_radius=missing_radius, source=path)
    df.attrs["source"] = str(path)
    return df


# --------------------------------------------------------------------------------------------
# Volumes
# --------------------------------------------------------------------------------------------

_VOLUME_DTYPES = {
    "uint8": np.dtype("<u1"),
    "uint16": np.dtype("<u2"),
    "uint32": np.dtype("<u4"),
    "uint64": np.dtype("<u8"),
    "float32": np.dtype("<f4"),
}
_AXIS_ORDERS = ("xyz", "zyx")


def _triplet(name: str, values: Any, *, minimum: float, integer: bool) -> list:
    values = list(values)
    if len(values) != 3:
        raise ValueError(f"{name} must have three values (x, y, z), not {values!r}")
    converted = []
    for value in values:
        number = float(value)
        if not math.isfinite(number) or number < minimum or (integer and number != int(number)):
            kind = "integers" if integer else "numbers"
            raise ValueError(f"{name} must be finite {kind} >= {minimum}, not {values!r}")
        converted.append(int(number) if integer else number)
    return converted


def _as_xyz(array: np.ndarray, axis_order: str) -> np.ndarray:
    if axis_order not in _AXIS_ORDERS:
        raise ValueError(f"axis_order must be 'xyz' or 'zyx', not {axis_order!r}")
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"volume must be 3-dimensional (one channel), not shape {array.shape}")
    return array if axis_order == "xyz" else array.transpose(2, 1, 0)


def _scale_key(resolution: Sequence[float]) -> str:
    return "_".join(format_numbers(np.asarray(resolution, dtype=np.float64)))


def _chunk_name(begin: Sequence[int], end: Sequence[int]) -> str:
    return "_".join(f"{b}-{e}" for b, e in zip(begin, end))


def _cast_volume(array: np.ndarray, data_type: str) -> np.ndarray:
    target = _VOLUME_DTYPES[data_type]
    if array.dtype == target.newbyteorder("="):
        return array
    if np.can_cast(array.dtype, target, casting="safe"):
        return array.astype(target)
    if array.dtype.kind in "iu" and target.kind == "u" and array.size:
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > np.iinfo(target).max:
            raise ValueError(f"values {low}..{high} do not fit in {data_type}")
        return array.astype(target)
    raise ValueError(f"cannot store {array.dtype} data as {data_type} without loss; cast it first")


def _write_scale_chunks(root: Path, scale: Mapping[str, Any], array_xyz: np.ndarray, skip_empty_chunks: bool) -> None:
    dtype = np.dtype(array_xyz.dtype).newbyteorder("<")
    size = scale["size"]
    offset = scale["voxel_offset"]
    chunk = scale["chunk_sizes"][0]
    scale_dir = root / scale["key"]
    scale_dir.mkdir(parents=True, exist_ok=True)
    grid = [math.ceil(s / c) for s, c in zip(size, chunk)]
    for gx in range(grid[0]):
        for gy in range(grid[1]):
            for gz in range(grid[2]):
                local_begin = [g * c for g, c in zip((gx, gy, gz), chunk)]
                local_end = [min(b + c, s) for b, c, s in zip(local_begin, chunk, size)]
                block = array_xyz[local_begin[0]:local_end[0], local_begin[1]:local_end[1], local_begin[2]:local_end[2]]
                name = _chunk_name([b + o for b, o in zip(local_begin, offset)],
                                   [e + o for e, o in zip(local_end, offset)])
                if skip_empty_chunks and not block.any():
                    # A missing chunk reads as zeros; remove any stale file that would not.
                    (scale_dir / name).unlink(missing_ok=True)
                    continue
                atomic_write(scale_dir / name, block.astype(dtype, copy=False).tobytes(order="F"))


def _make_scale(resolution_nm: Sequence[float], size: Sequence[int], voxel_offset: Sequence[int],
                chunk_size: Sequence[int]) -> dict:
    return {
        "key": _scale_key(resolution_nm),
        "size": [int(v) for v in size],
        "resolution": [float(v) for v in resolution_nm],
        "voxel_offset": [int(v) for v in voxel_offset],
        "chunk_sizes": [[int(v) for v in chunk_size]],
        "encoding": "raw",
    }


def _downsample_by_striding(array_xyz: np.ndarray, voxel_offset: Sequence[int], factor: Sequence[int]):
    """Keep the voxels whose global coordinate is a multiple of ``factor`` (segmentation-safe:
    no new labels are invented). Returns (array, coarse voxel offset)."""
    starts = [(-o) % f for o, f in zip(voxel_offset, factor)]
    coarse_offset = [-((-o) // f) for o, f in zip(voxel_offset, factor)]  # ceil(o / f)
    strided = array_xyz[starts[0]::factor[0], starts[1]::factor[1], starts[2]::factor[2]]
    return strided, coarse_offset


def write_precomputed_volume(
    path: str | os.PathLike,
    array: np.ndarray,
    resolution_nm: Sequence[float],
    voxel_offset: Sequence[int] = (0, 0, 0),
    chunk_size: Sequence[int] = (64, 64, 64),
    volume_type: str = "segmentation",
    *,
    axis_order: str = "xyz",
    data_type: str | None = None,
    downsample_factors: Iterable[Sequence[int]] = (),
    skip_empty_chunks: bool = False,
    overwrite: bool = False,
) -> dict:
    """Write a single-channel volume as an unsharded, ``raw``-encoded precomputed volume.

    Axis order: ``array`` is indexed ``[x, y, z]`` by default, the order of every triple in the
    precomputed ``info`` and of tensorstore's ``neuroglancer_precomputed`` domain. A C-ordered
    ``[z, y, x]`` image stack can be passed with ``axis_order="zyx"``. ``resolution_nm``,
    ``voxel_offset`` and ``chunk_size`` are always ``(x, y, z)``; ``voxel_offset`` is the
    global voxel coordinate of ``array[0, 0, 0]``.

    ``volume_type`` is ``"segmentation"`` (unsigned integer labels, usually uint64) or
    ``"image"`` (also float32). ``data_type`` (``uint8|uint16|uint32|uint64|float32``) casts the
    array when it fits without loss; by default the array's own dtype is used.

    ``downsample_factors`` adds coarser scales, e.g. ``[(2, 2, 2), (4, 4, 4)]`` relative to
    the first, made by striding (each coarse voxel takes the fine voxel at its lower corner).
    Use :func:`add_precomputed_volume_scale` to add a scale computed elsewhere.

    With ``skip_empty_chunks`` all-zero chunks are not written (neuroglancer and tensorstore
    read a missing chunk as zeros). Chunk files are written first, the ``info`` last, each
    atomically. An existing ``info`` raises FileExistsError unless ``overwrite``. Returns the
    info dict.
    """
    root = Path(path)
    if (root / "info").exists() and not overwrite:
        raise FileExistsError(f"{root / 'info'} exists; pass overwrite=True to replace the volume")
    if volume_type not in ("segmentation", "image"):
        raise ValueError(f"volume_type must be 'segmentation' or 'image', not {volume_type!r}")
    array_xyz = _as_xyz(array, axis_order)
    if data_type is None:
        data_type = np.dtype(array_xyz.dtype).name
    if data_type not in _VOLUME_DTYPES:
        raise ValueError(f"data_type must be one of {sorted(_VOLUME_DTYPES)}, not {data_type!r} "
                         f"(pass data_type= to cast, e.g. int64 labels to uint64)")
    if volume_type == "segmentation" and data_type == "float32":
        raise ValueError("segmentation volumes hold unsigned integer labels, not float32")
    array_xyz = _cast_volume(array_xyz, data_type)
    resolution = _triplet("resolution_nm", resolution_nm, minimum=1e-300, integer=False)
    offset = _triplet("voxel_offset", voxel_offset, minimum=-(2 ** 62), integer=True)
    chunk = _triplet("chunk_size", chunk_size, minimum=1, integer=True)
    if min(array_xyz.shape) == 0:
        raise ValueError(f"volume is empty: shape {array_xyz.shape}")

    scales_with_data = [(_make_scale(resolution, array_xyz.shape, offset, chunk), array_xyz)]
    for factor in downsample_factors:
        factor = _triplet("downsample factor", factor, minimum=1, integer=True)
        coarse, coarse_offset = _downsample_by_striding(array_xyz, offset, factor)
        if min(coarse.shape) == 0:
            raise ValueError(f"downsampling by {factor} leaves no voxels")
        coarse_resolution = [r * f for r, f in zip(resolution, factor)]
        scales_with_data.append((_make_scale(coarse_resolution, coarse.shape, coarse_offset, chunk), coarse))
    scales_with_data.sort(key=lambda pair: pair[0]["resolution"])
    scales = [scale for scale, _ in scales_with_data]
    _check_scales(scales)

    for scale, data in scales_with_data:
        _write_scale_chunks(root, scale, data, skip_empty_chunks)
    info = {
        "@type": "neuroglancer_multiscale_volume",
        "type": volume_type,
        "data_type": data_type,
        "num_channels": 1,
        "scales": scales,
    }
    atomic_write(root / "info", json.dumps(info, indent=1) + "\n")
    return info


def _check_scales(scales: Sequence[Mapping[str, Any]]) -> None:
    keys = [scale["key"] for scale in scales]
    if len(set(keys)) != len(keys):
        raise ValueError(f"two scales share a key (same resolution): {keys}")
    for finer, coarser in zip(scales, scales[1:]):
        if any(c < f for f, c in zip(finer["resolution"], coarser["resolution"])):
            raise ValueError(("scale resolutions must not decrease on any axis from finest to coarsest: "
                              f"{finer['resolution']} then {coarser['resolution']}"))


def add_precomputed_volume_scale(
    path: str | os.PathLike,
    array: np.ndarray,
    resolution_nm: Sequence[float],
    voxel_offset: Sequence[int] = (0, 0, 0),
    chunk_size: Sequence[int] = (64, 64, 64),
    *,
    axis_order: str = "xyz",
    skip_empty_chunks: bool = False,
) -> dict:
    """Add one scale (e.g. a mode-downsampled segmentation) to an existing volume written by
    :func:`write_precomputed_volume`. Same axis conventions; the array is cast to the volume's
    data type when that is lossless. Scales stay sorted finest to coarsest."""
    root = Path(path)
    info = read_precomputed_volume_info(root)
    array_xyz = _cast_volume(_as_xyz(array, axis_order), info["data_type"])
    resolution = _triplet("resolution_nm", resolution_nm, minimum=1e-300, integer=False)
    offset = _triplet("voxel_offset", voxel_offset, minimum=-(2 ** 62), integer=True)
    chunk = _triplet("chunk_size", chunk_size, minimum=1, integer=True)
    scale = _make_scale(resolution, array_xyz.shape, offset, chunk)
    scales = sorted([*info["scales"], scale], key=lambda s: [float(v) for v in s["resolution"]])
    _check_scales(scales)
    _write_scale_chunks(root, scale, array_xyz, skip_empty_chunks)
    info["scales"] = scales
    atomic_write(root / "info", json.dumps(info, indent=1) + "\n")
    return info


def read_precomputed_volume_info(path: str | os.PathLike) -> dict:
    """Read and check a volume ``info``: type, data_type, num_channels and per-scale key, size,
    resolution, voxel_offset (default 0), chunk_sizes and encoding. FormatError otherwise."""
    info_path = Path(path) / "info"
    try:
        info = json.loads(info_path.read_bytes())
    except json.JSONDecodeError as exc:
        raise _error(info_path, f"line {exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(info, dict):
        raise _error(info_path, "volume info must be a JSON object")
    if info.get("@type", "neuroglancer_multiscale_volume") != "neuroglancer_multiscale_volume":
        raise _error(info_path, f'"@type" must be "neuroglancer_multiscale_volume", not {info["@type"]!r}')
    if info.get("type") not in ("image", "segmentation"):
        raise _error(info_path, f'"type" must be "image" or "segmentation", not {info.get("type")!r}')
    data_type = str(info.get("data_type", "")).lower()
    if data_type not in _VOLUME_DTYPES:
        raise _error(info_path, f'unsupported "data_type" {info.get("data_type")!r}')
    info["data_type"] = data_type
    scales = info.get("scales")
    if not isinstance(scales, list) or not scales:
        raise _error(info_path, '"scales" must be a non-empty list')
    for index, scale in enumerate(scales):
        where = f"scale {index}"
        if not isinstance(scale, dict):
            raise _error(info_path, f"{where} must be an object")
        for key in ("key", "size", "resolution", "chunk_sizes", "encoding"):
            if key not in scale:
                raise _error(info_path, f"{where} has no {key!r}")
        scale.setdefault("voxel_offset", [0, 0, 0])
        try:
            _triplet("size", scale["size"], minimum=0, integer=True)
            _triplet("resolution", scale["resolution"], minimum=0, integer=False)
            _triplet("voxel_offset", scale["voxel_offset"], minimum=-(2 ** 62), integer=True)
            if not scale["chunk_sizes"]:
                raise ValueError("chunk_sizes is empty")
            for chunk in scale["chunk_sizes"]:
                _triplet("chunk size", chunk, minimum=1, integer=True)
        except (TypeError, ValueError) as exc:
            raise _error(info_path, f"{where}: {exc}") from None
    return info


def _resolve_scale(info: Mapping[str, Any], scale: int | str) -> dict:
    scales = info["scales"]
    if isinstance(scale, str):
        for candidate in scales:
            if candidate["key"] == scale:
                return candidate
        raise KeyError(f"no scale with key {scale!r}; keys are {[s['key'] for s in scales]}")
    return scales[scale]


def _read_chunk_bytes(path: Path) -> bytes | None:
    """A chunk's bytes, or None if it is absent (absent chunks are zeros). cloud-volume's
    gzip-compressed ``<name>.gz`` files are read too."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    try:
        return gzip.decompress(path.with_name(path.name + ".gz").read_bytes())
    except FileNotFoundError:
        return None


def read_precomputed_volume(
    path: str | os.PathLike,
    scale: int | str = 0,
    *,
    region: Sequence[Sequence[int]] | None = None,
    axis_order: str = "xyz",
) -> np.ndarray:
    """Read one scale (index or key) of an unsharded, raw-encoded, single-channel volume.

    Returns the array indexed ``[x, y, z]`` (or ``[z, y, x]`` with ``axis_order="zyx"``).
    ``region`` is ``((x0, x1), (y0, y1), (z0, z1))`` in global voxel coordinates of that scale
    (voxel_offset included), half-open; default the whole volume. Missing chunks read as 0.
    Other encodings, sharding and several channels raise FormatError.
    """
    if axis_order not in _AXIS_ORDERS:
        raise ValueError(f"axis_order must be 'xyz' or 'zyx', not {axis_order!r}")
    root = Path(path)
    info = read_precomputed_volume_info(root)
    scale_info = _resolve_scale(info, scale)
    if scale_info.get("sharding"):
        raise _error(root / "info", f"scale {scale_info['key']!r} is sharded; read it with tensorstore")
    if scale_info["encoding"] != "raw":
        raise _error(root / "info", f"scale {scale_info['key']!r} uses {scale_info['encoding']!r} encoding; "
                                    "only raw is supported here, read it with tensorstore")
    if int(info.get("num_channels", 1)) != 1:
        raise _error(root / "info", "only single-channel volumes are supported")

    dtype = _VOLUME_DTYPES[info["data_type"]]
    size = [int(v) for v in scale_info["size"]]
    offset = [int(v) for v in scale_info["voxel_offset"]]
    chunk = [int(v) for v in scale_info["chunk_sizes"][0]]
    volume_begin = offset
    volume_end = [o + s for o, s in zip(offset, size)]
    if region is None:
        begin, end = volume_begin, volume_end
    else:
        begin = [int(r[0]) for r in region]
        end = [int(r[1]) for r in region]
        if len(begin) != 3 or any(b < vb or e > ve or b > e for b, e, vb, ve in
                                  zip(begin, end, volume_begin, volume_end)):
            raise ValueError(f"region {region!r} is not inside the volume "
                             f"{list(zip(volume_begin, volume_end))}")

    out = np.zeros([e - b for b, e in zip(begin, end)], dtype=dtype.newbyteorder("="))
    if out.size == 0:
        return out if axis_order == "xyz" else out.transpose(2, 1, 0)
    scale_dir = root / scale_info["key"]
    first_cell = [(b - o) // c for b, o, c in zip(begin, offset, chunk)]
    last_cell = [(e - 1 - o) // c for e, o, c in zip(end, offset, chunk)]
    for gx in range(first_cell[0], last_cell[0] + 1):
        for gy in range(first_cell[1], last_cell[1] + 1):
            for gz in range(first_cell[2], last_cell[2] + 1):
                cell_begin = [o + g * c for o, g, c in zip(offset, (gx, gy, gz), chunk)]
                cell_end = [min(b + c, ve) for b, c, ve in zip(cell_begin, chunk, volume_end)]
                chunk_path = scale_dir / _chunk_name(cell_begin, cell_end)
                data = _read_chunk_bytes(chunk_path)
                if data is None:
                    continue
                shape = [e - b for b, e in zip(cell_begin, cell_end)]
                expected = int(np.prod(shape)) * dtype.itemsize
                if len(data) != expected:
                    raise _error(chunk_path, f"chunk has {len(data)} bytes, expected {expected} "
                                             f"({shape} {info['data_type']} voxels)")
                block = np.frombuffer(data, dtype=dtype).reshape(shape, order="F")
                lo = [max(b, cb) for b, cb in zip(begin, cell_begin)]
                hi = [min(e, ce) for e, ce in zip(end, cell_end)]
                out[lo[0] - begin[0]:hi[0] - begin[0], lo[1] - begin[1]:hi[1] - begin[1],
                    lo[2] - begin[2]:hi[2] - begin[2]] = block[
                    lo[0] - cell_begin[0]:hi[0] - cell_begin[0], lo[1] - cell_begin[1]:hi[1] - cell_begin[1],
                    lo[2] - cell_begin[2]:hi[2] - cell_begin[2]]
    return out if axis_order == "xyz" else out.transpose(2, 1, 0)


# --------------------------------------------------------------------------------------------
# ROI meshes as OBJ text (what neuPrint's /api/roimeshes endpoint serves)
# --------------------------------------------------------------------------------------------

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
        where = f"{name}, line {line_number}" if name else f"line {line_number}"
        error = FormatError(f"{where}: {message}")
        error.source, error.line = name, line_number
        return error

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
            raise fail(triangle_lines[int(bad[0])], f"face refers to a vertex that does not exist "
                                                    f"(the file has {len(vertex_array)} vertices)")
    return vertex_array, face_array
