"""Neuroglancer precomputed volumes (unsharded, ``raw`` chunk encoding): writing, adding scales, reading.

The format follows the neuroglancer specification (``src/datasource/precomputed/volume.md`` in
google/neuroglancer): an ``info`` file plus, per scale, chunk files
``<key>/<x0>-<x1>_<y0>-<y1>_<z0>-<z1>`` holding the chunk's voxels as little-endian values in
Fortran ``[x, y, z]`` order (x fastest), no header. Sharded or compressed volumes are read with
tensorstore (:mod:`flatprint.volumes`).
"""

from __future__ import annotations

import gzip
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flatprint.io.publish import atomic_write
from flatprint.io.text import format_error, format_numbers

__all__ = [
    "add_precomputed_volume_scale",
    "read_precomputed_volume",
    "read_precomputed_volume_info",
    "write_precomputed_volume",
]

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
                block = array_xyz[
                    local_begin[0] : local_end[0], local_begin[1] : local_end[1], local_begin[2] : local_end[2]
                ]
                name = _chunk_name(
                    [b + o for b, o in zip(local_begin, offset)], [e + o for e, o in zip(local_end, offset)]
                )
                if skip_empty_chunks and not block.any():
                    # A missing chunk reads as zeros; remove any stale file that would not.
                    (scale_dir / name).unlink(missing_ok=True)
                    continue
                atomic_write(scale_dir / name, block.astype(dtype, copy=False).tobytes(order="F"))


def _make_scale(
    resolution_nm: Sequence[float], size: Sequence[int], voxel_offset: Sequence[int], chunk_size: Sequence[int]
) -> dict:
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
    strided = array_xyz[starts[0] :: factor[0], starts[1] :: factor[1], starts[2] :: factor[2]]
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
        raise ValueError(
            f"data_type must be one of {sorted(_VOLUME_DTYPES)}, not {data_type!r} "
            f"(pass data_type= to cast, e.g. int64 labels to uint64)"
        )
    if volume_type == "segmentation" and data_type == "float32":
        raise ValueError("segmentation volumes hold unsigned integer labels, not float32")
    array_xyz = _cast_volume(array_xyz, data_type)
    resolution = _triplet("resolution_nm", resolution_nm, minimum=1e-300, integer=False)
    offset = _triplet("voxel_offset", voxel_offset, minimum=-(2**62), integer=True)
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
            raise ValueError(
                "scale resolutions must not decrease on any axis from finest to coarsest: "
                f"{finer['resolution']} then {coarser['resolution']}"
            )


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
    offset = _triplet("voxel_offset", voxel_offset, minimum=-(2**62), integer=True)
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
        raise format_error(info_path, f"line {exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(info, dict):
        raise format_error(info_path, "volume info must be a JSON object")
    if info.get("@type", "neuroglancer_multiscale_volume") != "neuroglancer_multiscale_volume":
        raise format_error(info_path, f'"@type" must be "neuroglancer_multiscale_volume", not {info["@type"]!r}')
    if info.get("type") not in ("image", "segmentation"):
        raise format_error(info_path, f'"type" must be "image" or "segmentation", not {info.get("type")!r}')
    data_type = str(info.get("data_type", "")).lower()
    if data_type not in _VOLUME_DTYPES:
        raise format_error(info_path, f'unsupported "data_type" {info.get("data_type")!r}')
    info["data_type"] = data_type
    scales = info.get("scales")
    if not isinstance(scales, list) or not scales:
        raise format_error(info_path, '"scales" must be a non-empty list')
    for index, scale in enumerate(scales):
        where = f"scale {index}"
        if not isinstance(scale, dict):
            raise format_error(info_path, f"{where} must be an object")
        for key in ("key", "size", "resolution", "chunk_sizes", "encoding"):
            if key not in scale:
                raise format_error(info_path, f"{where} has no {key!r}")
        scale.setdefault("voxel_offset", [0, 0, 0])
        try:
            _triplet("size", scale["size"], minimum=0, integer=True)
            _triplet("resolution", scale["resolution"], minimum=0, integer=False)
            _triplet("voxel_offset", scale["voxel_offset"], minimum=-(2**62), integer=True)
            if not scale["chunk_sizes"]:
                raise ValueError("chunk_sizes is empty")
            for chunk in scale["chunk_sizes"]:
                _triplet("chunk size", chunk, minimum=1, integer=True)
        except (TypeError, ValueError) as exc:
            raise format_error(info_path, f"{where}: {exc}") from None
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
        raise format_error(root / "info", f"scale {scale_info['key']!r} is sharded; read it with tensorstore")
    if scale_info["encoding"] != "raw":
        raise format_error(
            root / "info",
            f"scale {scale_info['key']!r} uses {scale_info['encoding']!r} encoding; "
            "only raw is supported here, read it with tensorstore",
        )
    if int(info.get("num_channels", 1)) != 1:
        raise format_error(root / "info", "only single-channel volumes are supported")

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
        if len(begin) != 3 or any(
            b < vb or e > ve or b > e for b, e, vb, ve in zip(begin, end, volume_begin, volume_end)
        ):
            raise ValueError(f"region {region!r} is not inside the volume {list(zip(volume_begin, volume_end))}")

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
                    raise format_error(
                        chunk_path,
                        f"chunk has {len(data)} bytes, expected {expected} ({shape} {info['data_type']} voxels)",
                    )
                block = np.frombuffer(data, dtype=dtype).reshape(shape, order="F")
                lo = [max(b, cb) for b, cb in zip(begin, cell_begin)]
                hi = [min(e, ce) for e, ce in zip(end, cell_end)]
                out[
                    lo[0] - begin[0] : hi[0] - begin[0],
                    lo[1] - begin[1] : hi[1] - begin[1],
                    lo[2] - begin[2] : hi[2] - begin[2],
                ] = block[
                    lo[0] - cell_begin[0] : hi[0] - cell_begin[0],
                    lo[1] - cell_begin[1] : hi[1] - cell_begin[1],
                    lo[2] - cell_begin[2] : hi[2] - cell_begin[2],
                ]
    return out if axis_order == "xyz" else out.transpose(2, 1, 0)
