"""Skeletons, ROI volumes, ROI meshes and a body segmentation for a synthetic release.

:func:`write_morphology` runs after the synthetic tables are written (``synthesize`` writes the
feathers, then calls it). It reads ``body-annotations`` and ``syn-points`` with pyarrow and adds::

    skeletons/
        index.json                          {"bodyIds": [...], ...} (listing; flatprint addition)
        skeletons-swc/<bodyId>.swc          SWC, 8 nm voxel units, 7 single-space fields
        skeletons-precomputed/info          {"@type": "neuroglancer_skeletons"} (as the release)
        skeletons-precomputed/<bodyId>      binary skeleton: vertices in nm, edges child -> parent,
                                            no radius attribute (as the release)
    rois/
        fullbrain-roi-v4/                   precomputed uint64 segmentation, 256 nm: primary ROIs
                                            of CentralBrain, Optic(L), Optic(R) and CV
        malecns-vnc-neuropil-roi-v0/        the same for the VNC's primary ROIs
        <volume>/properties/info            segment properties: label -> ROI name
        meshes/<quoted name>.obj            one OBJ mesh (nm) per ROI of the hierarchy
        meshes/index.json                   ROI name -> file name
    segmentation/                           precomputed uint64 segmentation of neuron body ids,
                                            scales 128 nm and 256 nm ("skeletons" points at
                                            ../skeletons/skeletons-precomputed)

ROI labels in both ROI volumes are the ``primary_label`` values of syn-points (index in
``rois.hierarchy().primary`` + 1), so a synapse's ``primary`` ROI equals the volume label at its
location. Volumes are written with tensorstore (``compressed_segmentation`` encoding, as the real
release) when it is installed, else with flatprint's own raw-encoded writer.

Skeleton model (synthetic, not a reconstruction): a neuron's synapse points are grouped into
cells of :data:`CLUSTER_VX` 8 nm voxels (2 µm); the cells' centroids and the soma (``somaLocation``
when annotated, else the centroid of the neuron's largest cell) are joined by a Euclidean minimum
spanning tree rooted at the soma, and edges longer than :data:`MAX_EDGE_VX` are split by
intermediate nodes. Every synapse therefore lies within ``sqrt(3) * CLUSTER_VX`` voxels (3.5 µm)
of a node. Radii shrink with distance from the soma.

The body segmentation (128 nm) rasterises each skeleton (nodes and points sampled along edges,
one per voxel length) and a soma ball (:data:`SOMA_BALL_NM`); where neurons overlap a voxel, a
soma wins over neurites (overlapping somas: the smaller body id), then the neuron with most
samples in the voxel (ties: the smaller body id). The 256 nm scale takes, per voxel, the first
non-zero of its 2x2x2 children (x fastest). Only neurons with skeletons are painted; small
fragments are not, so ``body_at`` at a fragment's synapse is 0 or a neuron.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.feather as feather

from flatprint.io.obj import write_obj
from flatprint.io.precomputed_skeletons import PrecomputedSkeleton, encode_skeleton
from flatprint.io.precomputed_volumes import add_precomputed_volume_scale, write_precomputed_volume
from flatprint.io.publish import atomic_write
from flatprint.io.swc import write_swc
from flatprint.progress import progress_bar
from flatprint.release.registry import detect
from flatprint.synth import rois as roimod

__all__ = [
    "BRAIN_ROI_VOLUME",
    "VNC_ROI_VOLUME",
    "box_surface_mesh",
    "build_skeletons",
    "mesh_file_name",
    "write_morphology",
    "write_segmentation_volume",
]

VOXEL_NM = roimod.VOXEL_NM
CLUSTER_VX = 250  # synapse cluster cell, 8 nm voxels (2 µm)
MAX_EDGE_VX = 250  # longest skeleton edge after subdivision, 8 nm voxels (2 µm)
SOMA_RADIUS_VX = 250.0  # 2 µm
NEURITE_RADIUS_VX = (12.0, 60.0)  # far / near the soma (~0.1 µm / 0.5 µm)
RADIUS_DECAY_VX = 1250.0  # 10 µm
SEGMENTATION_NM = (128, 256)
SOMA_BALL_NM = 1000.0  # soma radius painted into the segmentation
BRAIN_ROI_VOLUME = "fullbrain-roi-v4"
VNC_ROI_VOLUME = "malecns-vnc-neuropil-roi-v0"
BRAIN_MAJORS = ("CentralBrain", "Optic(L)", "Optic(R)", "CV")
VNC_MAJORS = ("VNC",)
NEURON_STATUSES = ("Traced", "Anchor")
NON_NEURON_STATUSES = ("Glia", "Unimportant")
SWC_HEADER = "flatprint synthetic skeleton (8 nm voxel units)"
BATCH_NEURONS = 500  # neurons per batch: bounds memory, overlaps file writes with building


# --------------------------------------------------------------------------------------------
# Reading the release
# --------------------------------------------------------------------------------------------


def _neurons(release: Path) -> pd.DataFrame:
    """bodyId, has_soma, soma x/y/z of every annotated neuron (Traced/Anchor or typed)."""
    table = feather.read_table(
        release / detect(release).files["annotations"], columns=["bodyId", "status", "type", "somaLocation"]
    )
    status = table.column("status").to_pandas()
    typed = table.column("type").to_pandas().notna()
    keep = (status.isin(NEURON_STATUSES) | typed) & ~status.isin(NON_NEURON_STATUSES)
    body = table.column("bodyId").to_numpy()
    soma = table.column("somaLocation").to_pylist()
    out = pd.DataFrame({"bodyId": body})
    has = np.array([s is not None and len(s) == 3 for s in soma])
    xyz = np.array([s if h else (0, 0, 0) for s, h in zip(soma, has)], dtype=np.float64).reshape(-1, 3)
    out["has_soma"] = has
    out[["sx", "sy", "sz"]] = xyz
    out = out[keep.to_numpy()].sort_values("bodyId", kind="stable").reset_index(drop=True)
    return out


def _synapses(release: Path, bodies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(neuron index into sorted ``bodies``, xyz float64) of the neurons' synapse points."""
    table = feather.read_table(release / detect(release).files["syn-points"], columns=["x", "y", "z", "body"])
    body = table.column("body").to_numpy()
    pos = np.clip(np.searchsorted(bodies, body), 0, max(len(bodies) - 1, 0))
    mine = (bodies[pos] == body) if len(bodies) else np.zeros(len(body), bool)
    xyz = np.column_stack([table.column(c).to_numpy()[mine] for c in "xyz"]).astype(np.float64)
    return pos[mine].astype(np.int64), xyz


# --------------------------------------------------------------------------------------------
# Skeletons
# --------------------------------------------------------------------------------------------


def _clusters(neuron: np.ndarray, xyz: np.ndarray, cell: float):
    """Centroids of the synapse points per (neuron, cell); returns (neuron, centroid, count),
    sorted by neuron."""
    if len(neuron) == 0:
        return np.empty(0, np.int64), np.empty((0, 3)), np.empty(0, np.int64)
    c = np.floor(xyz / cell).astype(np.int64)
    c -= c.min(axis=0)
    bits = max(int(c.max()).bit_length(), 1)
    key = (neuron << (3 * bits)) | (c[:, 0] << (2 * bits)) | (c[:, 1] << bits) | c[:, 2]
    uniq, inverse, count = np.unique(key, return_inverse=True, return_counts=True)
    centroid = np.column_stack([np.bincount(inverse, weights=xyz[:, i], minlength=len(uniq)) for i in range(3)])
    centroid /= count[:, None]
    return (uniq >> (3 * bits)).astype(np.int64), centroid, count


def _batched_mst(points: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Prim's algorithm on B point sets at once. ``points`` (B, K, 3) padded, ``counts`` (B,)
    real points per set (row 0 is the root). Returns (B, K): the order in which each set's
    points join the tree (parents always join before children) followed by the parent of each
    point (-1 for the root and padding), as ``(order, parent)``."""
    b, k, _ = points.shape
    dist = np.zeros((b, k, k), np.float32)
    for axis in range(3):
        c = points[:, :, axis].astype(np.float32)
        dist += (c[:, :, None] - c[:, None, :]) ** 2
    np.sqrt(dist, out=dist)
    valid = np.arange(k)[None, :] < counts[:, None]
    dist[~valid[:, :, None] | ~valid[:, None, :]] = np.inf
    rows = np.arange(b)
    best = dist[:, 0, :].copy()
    source = np.zeros((b, k), np.int64)
    done = np.zeros((b, k), bool)
    done[:, 0] = True
    best[:, 0] = np.inf
    parent = np.full((b, k), -1, np.int64)
    order = np.zeros((b, k), np.int64)
    for step in range(1, k):
        masked = np.where(done, np.inf, best)
        j = masked.argmin(axis=1)
        active = step < counts
        order[:, step] = np.where(active, j, 0)
        parent[rows[active], j[active]] = source[rows[active], j[active]]
        done[rows, j] = True
        new = dist[rows, j, :]
        closer = new < best
        best = np.where(closer, new, best)
        source = np.where(closer, j[:, None], source)
    return order, parent


def _mst_trees(roots: np.ndarray, cents: list[np.ndarray], budget: int = 1 << 24):
    """Euclidean MSTs of [root] + centroids for every neuron, rooted at the root, batched by
    size. Yields (neuron, points in join order, parent row in that order or -1)."""
    sizes = np.array([len(c) + 1 for c in cents])
    by_size = np.argsort(sizes, kind="stable")
    start = 0
    while start < len(by_size):
        k = int(sizes[by_size[start]])
        stop = start + 1
        while stop < len(by_size):
            k_next = int(sizes[by_size[stop]])
            if (stop - start + 1) * k_next * k_next > budget:
                break
            k = k_next
            stop += 1
        batch = by_size[start:stop]
        pts = np.zeros((len(batch), k, 3))
        for row, i in enumerate(batch):
            pts[row, 0] = roots[i]
            pts[row, 1 : sizes[i]] = cents[i]
        order, parent = _batched_mst(pts, sizes[batch])
        for row, i in enumerate(batch):
            n = int(sizes[i])
            o = order[row, :n]
            rank = np.empty(n, np.int64)
            rank[o] = np.arange(n)
            par = parent[row, o]
            yield int(i), pts[row, o], np.where(par >= 0, rank[np.maximum(par, 0)], -1)
        start = stop


def build_skeletons(
    neurons: pd.DataFrame,
    syn_neuron: np.ndarray,
    syn_xyz: np.ndarray,
    *,
    cluster_vx: float = CLUSTER_VX,
    max_edge_vx: float = MAX_EDGE_VX,
) -> pd.DataFrame:
    """All skeletons as one table: ``neuron`` (row of ``neurons``), ``node_id`` (1-based per
    neuron, parents before children), ``label`` (1 = soma), x, y, z, radius (8 nm voxels) and
    ``parent_id`` (-1 for the root)."""
    n_neurons = len(neurons)
    c_neuron, c_xyz, c_count = _clusters(syn_neuron, syn_xyz, cluster_vx)
    starts = np.searchsorted(c_neuron, np.arange(n_neurons + 1))
    has_soma = neurons["has_soma"].to_numpy()
    soma_xyz = neurons[["sx", "sy", "sz"]].to_numpy(dtype=np.float64)

    drawn = [i for i in range(n_neurons) if starts[i + 1] > starts[i] or has_soma[i]]
    roots = np.zeros((n_neurons, 3))
    cents = []
    for i in drawn:
        lo, hi = starts[i], starts[i + 1]
        roots[i] = soma_xyz[i] if has_soma[i] else c_xyz[lo + int(np.argmax(c_count[lo:hi]))]
        cents.append(c_xyz[lo:hi])
    trees = sorted(_mst_trees(roots[drawn], cents), key=lambda tree: tree[0])
    node_xyz, node_parent, node_neuron = [], [], []
    offset = 0
    for index, points, parent in trees:
        node_xyz.append(points)
        node_parent.append(np.where(parent >= 0, parent + offset, -1))
        node_neuron.append(np.full(len(points), drawn[index], np.int64))
        offset += len(points)
    if not node_xyz:
        return pd.DataFrame({c: [] for c in ("neuron", "node_id", "label", "x", "y", "z", "radius", "parent_id")})
    xyz = np.concatenate(node_xyz)
    parent = np.concatenate(node_parent)
    neuron = np.concatenate(node_neuron)

    # Split long edges: original node c gets n_c intermediate nodes on the segment parent -> c,
    # emitted just before c (so parents still precede children).
    is_child = parent >= 0
    length = np.zeros(len(xyz))
    length[is_child] = np.linalg.norm(xyz[is_child] - xyz[parent[is_child]], axis=1)
    n_mid = np.where(is_child, np.maximum(np.ceil(length / max_edge_vx).astype(np.int64) - 1, 0), 0)
    size = n_mid + 1
    new_index = np.cumsum(size) - 1  # new position of each original node
    total = int(size.sum())
    owner = np.repeat(np.arange(len(xyz)), size)  # original node each new row belongs to
    step = np.arange(total) - np.repeat(new_index - n_mid, size)  # 0..n_mid (n_mid = the node itself)
    frac = (step + 1) / np.repeat(n_mid + 1, size)
    p_xyz = np.where(is_child[:, None], xyz[np.maximum(parent, 0)], xyz)
    out_xyz = p_xyz[owner] + (xyz[owner] - p_xyz[owner]) * frac[:, None]
    out_parent = np.arange(total) - 1
    first = step == 0
    out_parent[first] = np.where(is_child[owner[first]], new_index[np.maximum(parent[owner[first]], 0)], -1)
    out_neuron = neuron[owner]

    # Per-neuron numbering and radii.
    neuron_start = np.searchsorted(out_neuron, out_neuron, side="left")
    node_id = np.arange(total) - neuron_start + 1
    parent_id = np.where(out_parent >= 0, out_parent - neuron_start + 1, -1)
    is_root = out_parent < 0
    root_rows = np.flatnonzero(is_root)
    root_of = root_rows[np.searchsorted(root_rows, np.arange(total), side="right") - 1]
    dist = np.linalg.norm(out_xyz - out_xyz[root_of], axis=1)
    far, near = NEURITE_RADIUS_VX
    radius = far + (near - far) * np.exp(-dist / RADIUS_DECAY_VX)
    soma_root = is_root & has_soma[out_neuron]
    radius[soma_root] = SOMA_RADIUS_VX
    label = np.where(soma_root, 1, 0)
    rounded = np.round(out_xyz, 1)
    return pd.DataFrame(
        {
            "neuron": out_neuron,
            "node_id": node_id.astype(np.int64),
            "label": label.astype(np.int64),
            "x": rounded[:, 0],
            "y": rounded[:, 1],
            "z": rounded[:, 2],
            "radius": np.round(radius, 1),
            "parent_id": parent_id.astype(np.int64),
        }
    )


def _write_skeleton_files(out: Path, bodies: np.ndarray, nodes: pd.DataFrame, advance) -> list[int]:
    swc_dir = out / "skeletons" / "skeletons-swc"
    pre_dir = out / "skeletons" / "skeletons-precomputed"
    neuron = nodes["neuron"].to_numpy()
    bounds = np.flatnonzero(np.diff(neuron)) + 1
    starts = np.concatenate([[0], bounds]).astype(np.int64) if len(neuron) else np.empty(0, np.int64)
    ends = np.concatenate([bounds, [len(neuron)]]).astype(np.int64) if len(neuron) else np.empty(0, np.int64)
    # One write_swc call formats every row (7 single-space fields); files are slices of its lines.
    rows = write_swc(nodes[["node_id", "label", "x", "y", "z", "radius", "parent_id"]], validate=False).split("\n")
    vertices_nm = (nodes[["x", "y", "z"]].to_numpy(np.float64) * VOXEL_NM).astype(np.float32)
    parent_id = nodes["parent_id"].to_numpy()
    written = []
    for lo, hi in zip(starts.tolist(), ends.tolist()):
        body = int(bodies[neuron[lo]])
        header = f"# {SWC_HEADER}\n# bodyId {body}\n"
        # Plain writes: the release directory is built in a temporary place and renamed as a whole.
        (swc_dir / f"{body}.swc").write_text(header + "\n".join(rows[lo:hi]) + "\n")
        children = np.flatnonzero(parent_id[lo:hi] > 0)
        edges = np.column_stack([children, parent_id[lo:hi][children] - 1]).astype(np.uint32)
        skeleton = PrecomputedSkeleton(vertices=vertices_nm[lo:hi], edges=edges)  # edges child -> parent
        (pre_dir / str(body)).write_bytes(encode_skeleton(skeleton, ()))
        written.append(body)
        advance(1)
    return written


# --------------------------------------------------------------------------------------------
# Volumes
# --------------------------------------------------------------------------------------------


def _tensorstore():
    try:
        import tensorstore  # noqa: PLC0415 - tensorstore only for the volumes (start-up time)
    except ImportError:  # optional: fall back to flatprint's raw writer
        return None
    return tensorstore


def write_segmentation_volume(
    path: str | Path,
    scales: list[tuple[np.ndarray, float]],
    *,
    encoding: str | None = None,
    chunk_size=(64, 64, 64),
    extra_info: dict | None = None,
) -> dict:
    """Write a uint64 segmentation volume with one or more scales (finest first), each
    ``(array [x, y, z], resolution_nm)`` with voxel offset 0. ``encoding`` is
    ``"compressed_segmentation"`` (tensorstore, the default when installed) or ``"raw"``
    (flatprint's writer). ``extra_info`` keys are merged into the top-level ``info``."""
    path = Path(path)
    ts = _tensorstore()
    if encoding is None:
        encoding = "compressed_segmentation" if ts is not None else "raw"
    if encoding == "compressed_segmentation":
        if ts is None:
            raise RuntimeError("compressed_segmentation needs tensorstore; pass encoding='raw'")
        for index, (array, res) in enumerate(scales):
            spec = {
                "driver": "neuroglancer_precomputed",
                "kvstore": {"driver": "file", "path": str(path.resolve())},
                "create": True,
                "open": index > 0,
                "delete_existing": index == 0,
                "multiscale_metadata": {"type": "segmentation", "data_type": "uint64", "num_channels": 1},
                "scale_metadata": {
                    "resolution": [float(res)] * 3,
                    "size": [int(s) for s in array.shape],
                    "voxel_offset": [0, 0, 0],
                    "chunk_size": list(chunk_size),
                    "encoding": "compressed_segmentation",
                    "compressed_segmentation_block_size": [8, 8, 8],
                },
            }
            store = ts.open(spec).result()
            store[..., 0].write(np.asarray(array, dtype=np.uint64)).result()
    elif encoding == "raw":
        first, res0 = scales[0]
        write_precomputed_volume(
            path, first, [res0] * 3, chunk_size=chunk_size, data_type="uint64", skip_empty_chunks=True, overwrite=True
        )
        for array, res in scales[1:]:
            add_precomputed_volume_scale(
                path, np.asarray(array, dtype=np.uint64), [res] * 3, chunk_size=chunk_size, skip_empty_chunks=True
            )
    else:
        raise ValueError(f"encoding must be 'compressed_segmentation' or 'raw', not {encoding!r}")
    info = json.loads((path / "info").read_text())
    if extra_info:
        info.update(extra_info)
        atomic_write(path / "info", json.dumps(info, indent=1) + "\n")
    return info


def _write_segment_properties(path: Path, labels: dict[int, str]) -> None:
    ids = sorted(labels)
    atomic_write(
        path / "info",
        json.dumps(
            {
                "@type": "neuroglancer_segment_properties",
                "inline": {
                    "ids": [str(i) for i in ids],
                    "properties": [{"id": "label", "type": "label", "values": [labels[i] for i in ids]}],
                },
            },
            indent=1,
        )
        + "\n",
    )


def _write_roi_volumes(out: Path, encoding: str | None) -> dict[str, dict[int, str]]:
    h = roimod.hierarchy()
    primary, _ = roimod.label_volumes()
    written = {}
    for name, majors in ((BRAIN_ROI_VOLUME, BRAIN_MAJORS), (VNC_ROI_VOLUME, VNC_MAJORS)):
        labels = {i + 1: roi for i, roi in enumerate(h.primary) if h.major_of_primary[roi] in majors}
        keep = np.zeros(len(h.primary) + 1, dtype=np.uint64)
        keep[list(labels)] = list(labels)
        volume = keep[primary]
        root = out / "rois" / name
        write_segmentation_volume(
            root,
            [(volume, float(roimod.ROI_VOXEL_NM))],
            encoding=encoding,
            extra_info={"segment_properties": "properties"},
        )
        _write_segment_properties(root / "properties", labels)
        written[name] = labels
    return written


def _segment_samples(nodes: pd.DataFrame, step_vx: float):
    """Points along every skeleton edge (at most ``step_vx`` apart, both ends included) with
    their neuron index."""
    xyz = nodes[["x", "y", "z"]].to_numpy(dtype=np.float64)
    neuron = nodes["neuron"].to_numpy()
    node_id = nodes["node_id"].to_numpy()
    parent_id = nodes["parent_id"].to_numpy()
    start = np.arange(len(nodes)) - node_id + 1  # row of node 1 of the neuron
    child = np.flatnonzero(parent_id > 0)
    par = start[child] + parent_id[child] - 1
    a, b = xyz[par], xyz[child]
    n = np.maximum(np.ceil(np.linalg.norm(b - a, axis=1) / step_vx).astype(np.int64), 1)
    edge = np.repeat(np.arange(len(child)), n)
    t = (np.arange(len(edge)) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n, n)
    pts = a[edge] + (b[edge] - a[edge]) * t[:, None]
    return np.vstack([pts, xyz]), np.concatenate([neuron[child][edge], neuron])


def _ball_offsets(radius_vox: float) -> np.ndarray:
    r = int(math.ceil(radius_vox))
    g = np.mgrid[-r : r + 1, -r : r + 1, -r : r + 1].reshape(3, -1).T
    return g[(g**2).sum(axis=1) <= radius_vox**2 + 1e-9]


def _unique_counts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique values and their counts. (numpy 2.4's np.unique takes a hash-table path
    that is pathologically slow for keys like ``voxel * n + neuron``; a sort is not.)"""
    ordered = np.sort(keys)
    starts = (
        np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]])) if len(ordered) else np.empty(0, np.int64)
    )
    return ordered[starts], np.diff(np.append(starts, len(ordered)))


def _first_per_voxel(vox: np.ndarray, owner: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, ...]:
    """For (voxel, owner, score) rows sorted by voxel then owner: per voxel, the owner with the
    highest score, ties to the first (smallest) owner. Returns (voxel, owner, score)."""
    vstart = np.flatnonzero(np.concatenate([[True], vox[1:] != vox[:-1]]))
    vmax = np.maximum.reduceat(score, vstart)
    take = np.flatnonzero(score == np.repeat(vmax, np.diff(np.append(vstart, len(vox)))))
    keep = np.concatenate([[True], vox[take][1:] != vox[take][:-1]])
    take = take[keep]
    return vox[take], owner[take], score[take]


def _downsample_first_nonzero(vol: np.ndarray) -> np.ndarray:
    """Halve a label volume: each coarse voxel takes the first non-zero of its 2x2x2 fine
    voxels (x fastest), so thin neurites survive and no label is invented."""
    shape = tuple(-(-d // 2) for d in vol.shape)
    out = np.zeros(shape, vol.dtype)
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                part = vol[dx::2, dy::2, dz::2]
                target = out[: part.shape[0], : part.shape[1], : part.shape[2]]
                empty = target == 0
                target[empty] = part[empty]
    return out


class _BodyPainter:
    """Builds the body segmentation batch by batch (batches hold disjoint neurons, in increasing
    neuron order), keeping per voxel the best neurite count so far; somas are painted last."""

    def __init__(self, bodies: np.ndarray, resolutions_nm=SEGMENTATION_NM):
        self.bodies = bodies
        self.resolutions = tuple(resolutions_nm)
        self.per = self.resolutions[0] / VOXEL_NM
        self.shape = tuple(int(s * roimod.ROI_VOXEL_NM // self.resolutions[0]) for s in roimod.ROI_SHAPE_XYZ)
        self.owner = np.zeros(int(np.prod(self.shape)), dtype=np.uint64)
        self.best = np.zeros(int(np.prod(self.shape)), dtype=np.uint32)
        self.somas: list[pd.DataFrame] = []

    def add(self, nodes: pd.DataFrame) -> None:
        if len(nodes) == 0:
            return
        n_bodies = len(self.bodies)  # neuron index order = body id order (bodies are sorted)
        pts, neuron = _segment_samples(nodes, self.per)
        idx = np.floor(pts / self.per).astype(np.int64)
        del pts
        inside = np.all((idx >= 0) & (idx < np.array(self.shape)), axis=1)
        key = np.ravel_multi_index(idx[inside].T, self.shape) * n_bodies + neuron[inside]
        del idx, neuron
        uniq, count = _unique_counts(key)
        vox, owner, score = _first_per_voxel(uniq // n_bodies, uniq % n_bodies, count)
        # Earlier batches hold smaller body ids, so they keep a voxel on a tie.
        better = score > self.best[vox]
        self.best[vox[better]] = score[better]
        self.owner[vox[better]] = self.bodies[owner[better]].astype(np.uint64)
        self.somas.append(nodes.loc[(nodes["label"] == 1) & (nodes["parent_id"] == -1), ["neuron", "x", "y", "z"]])

    def volumes(self) -> list[np.ndarray]:
        """Dense [x, y, z] uint64 volumes, finest first (each coarser scale twice the previous)."""
        somas = pd.concat(self.somas, ignore_index=True) if self.somas else pd.DataFrame()
        vol = self.owner.reshape(self.shape)
        if len(somas):
            # Somas (balls) override neurites; overlapping somas: the smaller body id.
            n_bodies = len(self.bodies)
            ball = _ball_offsets(SOMA_BALL_NM / self.resolutions[0])
            centre = np.floor(somas[["x", "y", "z"]].to_numpy() / self.per).astype(np.int64)
            idx = (centre[:, None, :] + ball[None, :, :]).reshape(-1, 3)
            neuron = np.repeat(somas["neuron"].to_numpy(), len(ball))
            inside = np.all((idx >= 0) & (idx < np.array(self.shape)), axis=1)
            key, _ = _unique_counts(np.ravel_multi_index(idx[inside].T, self.shape) * n_bodies + neuron[inside])
            vox, owner, _ = _first_per_voxel(key // n_bodies, key % n_bodies, np.ones(len(key), np.int64))
            self.owner[vox] = self.bodies[owner].astype(np.uint64)
        vols = [vol]
        for coarse, fine in zip(self.resolutions[1:], self.resolutions[:-1]):
            if coarse != 2 * fine:
                raise ValueError(f"segmentation scales must double: {self.resolutions}")
            vols.append(_downsample_first_nonzero(vols[-1]))
        return vols


# --------------------------------------------------------------------------------------------
# Meshes
# --------------------------------------------------------------------------------------------


def mesh_file_name(roi: str) -> str:
    """File name of an ROI's mesh: the name percent-encoded (reversible; ``a'L(R)`` ->
    ``a%27L%28R%29.obj``)."""
    return urllib.parse.quote(roi, safe="") + ".obj"


def box_surface_mesh(
    mask: np.ndarray, voxel_nm: float = roimod.ROI_VOXEL_NM, offset=(0, 0, 0)
) -> tuple[np.ndarray, np.ndarray]:
    """The boundary surface of a boolean voxel mask ``[x, y, z]`` as a triangle mesh in nm.

    Exposed voxel faces are merged into rectangles (runs along one axis, then identical runs on
    consecutive rows), so a box gives 12 triangles; triangles face outwards. The surface follows
    voxel faces exactly (a box's mesh bounds are its voxel bounds). For shapes other than unions
    of separated boxes, merged rectangles may meet in T-junctions (not watertight then).
    Returns (vertices float64 (N, 3), faces int64 (M, 3)).
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.empty((0, 3)), np.empty((0, 3), np.int64)
    nz = np.nonzero(mask)
    lo = np.array([a.min() for a in nz])
    hi = np.array([a.max() + 1 for a in nz])
    crop = np.pad(mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]], 1)
    base = lo - 1 + np.asarray(offset)
    corners, tris = [], []
    n_vertices = 0
    for axis in range(3):
        u_axis, v_axis = [a for a in range(3) if a != axis]
        m = np.moveaxis(crop, (axis, u_axis, v_axis), (0, 1, 2))
        for sign in (1, -1):
            if sign > 0:
                exposed = m[:-1] & ~m[1:]
                plane_of = 1  # face of voxel i lies at coordinate i + 1
            else:
                exposed = m[1:] & ~m[:-1]
                plane_of = 1  # face of voxel i + 1 lies at coordinate i + 1
            if not exposed.any():
                continue
            p_n, u_n, v_n = exposed.shape
            padded = np.zeros((p_n, u_n, v_n + 2), np.int8)
            padded[:, :, 1:-1] = exposed
            d = np.diff(padded, axis=2)
            sp, su, sv = np.nonzero(d == 1)  # run starts (v index)
            _, _, ev = np.nonzero(d == -1)  # run ends, same order
            order = np.lexsort((su, ev, sv, sp))
            sp, su, sv, ev = sp[order], su[order], sv[order], ev[order]
            new = np.ones(len(sp), bool)
            new[1:] = (sp[1:] != sp[:-1]) | (sv[1:] != sv[:-1]) | (ev[1:] != ev[:-1]) | (su[1:] != su[:-1] + 1)
            group = np.cumsum(new) - 1
            g_first = np.flatnonzero(new)
            g_last = np.concatenate([g_first[1:], [len(sp)]]) - 1
            p = sp[g_first] + plane_of
            u0, u1 = su[g_first], su[g_last] + 1
            v0, v1 = sv[g_first], ev[g_first]
            del group
            quad = np.stack(
                [
                    np.stack([p, u0, v0], 1),
                    np.stack([p, u1, v0], 1),
                    np.stack([p, u1, v1], 1),
                    np.stack([p, u0, v1], 1),
                ],
                axis=1,
            )  # (R, 4, 3) in (axis, u, v) order
            xyz = np.empty_like(quad)
            xyz[..., axis], xyz[..., u_axis], xyz[..., v_axis] = quad[..., 0], quad[..., 1], quad[..., 2]
            # (u, v, axis) is right-handed iff the axes are cyclic; flip to face along +-axis.
            right_handed = (u_axis - axis) % 3 == 1
            outward = sign > 0 if right_handed else sign < 0
            local = np.array([[0, 1, 2], [0, 2, 3]]) if outward else np.array([[0, 2, 1], [0, 3, 2]])
            r_idx = np.arange(len(quad))[:, None, None] * 4 + n_vertices
            tris.append((r_idx + local[None]).reshape(-1, 3))
            corners.append(xyz.reshape(-1, 3))
            n_vertices += 4 * len(quad)
    vertices = np.concatenate(corners)
    faces = np.concatenate(tris)
    uniq, inverse = np.unique(vertices, axis=0, return_inverse=True)
    faces = inverse.reshape(-1)[faces]
    return (uniq + base) * float(voxel_nm), faces.astype(np.int64)


def _write_roi_meshes(out: Path) -> dict[str, str]:
    h = roimod.hierarchy()
    primary, major = roimod.label_volumes()
    mesh_dir = out / "rois" / "meshes"
    mesh_dir.mkdir(parents=True, exist_ok=True)
    index = {}
    primary_labels = {roi: i + 1 for i, roi in enumerate(h.primary)}

    def leaves(roi):
        kids = h.children.get(roi)
        return [roi] if not kids else [leaf for k in kids for leaf in leaves(k)]

    for roi in h.all_rois():
        if roi in h.major:
            mask = major == h.major.index(roi) + 1
        else:
            mask = np.isin(primary, [primary_labels[leaf] for leaf in leaves(roi) if leaf in primary_labels])
        vertices, faces = box_surface_mesh(mask)
        if len(faces) == 0:
            continue
        name = mesh_file_name(roi)
        write_obj(vertices, faces, mesh_dir / name, comments=[f"ROI {roi} (nm)"])
        index[roi] = name
    atomic_write(mesh_dir / "index.json", json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    return index


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def write_morphology(release_dir: str | Path, progress: bool = True, *, encoding: str | None = None) -> dict:
    """Add skeletons, ROI volumes and meshes and a body segmentation to a written synthetic
    release (layout in the module docstring). ``encoding`` of the volumes: None (tensorstore's
    ``compressed_segmentation`` if installed, else ``raw``), ``"compressed_segmentation"`` or
    ``"raw"``. Returns a summary dict (counts and paths)."""
    out = Path(release_dir)
    # Two threads (numpy, tensorstore and file I/O release the GIL): the ROI volumes and meshes
    # need no skeletons, so they start first; skeleton files of one batch of neurons are written
    # while the next batch is built and painted into the segmentation.
    with ThreadPoolExecutor(max_workers=2) as pool:

        def rois_job():
            labels = _write_roi_volumes(out, encoding)
            return labels, _write_roi_meshes(out)

        roi_job = pool.submit(rois_job)
        neurons = _neurons(out)
        bodies = neurons["bodyId"].to_numpy()
        syn_neuron, syn_xyz = _synapses(out, bodies)
        order = np.argsort(syn_neuron, kind="stable")
        syn_neuron, syn_xyz = syn_neuron[order], syn_xyz[order]
        del order
        syn_start = np.searchsorted(syn_neuron, np.arange(len(neurons) + 1))
        for directory in ("skeletons-swc", "skeletons-precomputed"):
            (out / "skeletons" / directory).mkdir(parents=True, exist_ok=True)
        atomic_write(
            out / "skeletons" / "skeletons-precomputed" / "info", json.dumps({"@type": "neuroglancer_skeletons"}) + "\n"
        )
        painter = _BodyPainter(bodies)
        written: list[int] = []
        n_nodes = 0
        pending = None
        with progress_bar(progress, "writing skeletons and volumes", total=len(neurons) + 2) as advance:
            for lo in range(0, len(neurons), BATCH_NEURONS):
                hi = min(lo + BATCH_NEURONS, len(neurons))
                a, b = syn_start[lo], syn_start[hi]
                nodes = build_skeletons(neurons.iloc[lo:hi], syn_neuron[a:b] - lo, syn_xyz[a:b])
                nodes["neuron"] += lo
                n_nodes += len(nodes)
                if pending is not None:
                    written += pending.result()
                pending = pool.submit(_write_skeleton_files, out, bodies, nodes, advance)
                painter.add(nodes)
                advance(hi - lo - (int(nodes["neuron"].nunique()) if len(nodes) else 0))  # neurons without one
            del syn_neuron, syn_xyz
            volumes = painter.volumes()
            del painter
            write_segmentation_volume(
                out / "segmentation",
                [(v, float(r)) for v, r in zip(volumes, SEGMENTATION_NM)],
                encoding=encoding,
                extra_info={"skeletons": "../skeletons/skeletons-precomputed"},
            )
            del volumes
            advance(1)
            roi_labels, meshes = roi_job.result()
            advance(1)
            if pending is not None:
                written += pending.result()
    atomic_write(
        out / "skeletons" / "index.json",
        json.dumps(
            {
                "bodyIds": written,
                "count": len(written),
                "swc": "skeletons-swc/<bodyId>.swc (8 nm voxel units)",
                "precomputed": "skeletons-precomputed/<bodyId> (nm, edges child -> parent, no radius)",
                "note": "flatprint addition: synthetic skeletons, listing of the bodies that have one",
            },
            indent=1,
        )
        + "\n",
    )
    return {
        "skeletons": len(written),
        "skeleton_nodes": n_nodes,
        "roi_volumes": {name: len(labels) for name, labels in roi_labels.items()},
        "segmentation_scales_nm": list(SEGMENTATION_NM),
        "roi_meshes": len(meshes),
    }
