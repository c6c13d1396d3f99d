"""Point and box lookups in voxel volumes: ROI labels, body ids, EM subvolumes.

Volumes are neuroglancer precomputed (ROI volumes, segmentation, EM jpeg) or N5 (the raw EM),
read with tensorstore from a local directory or an ``http(s)://`` / ``gs://`` URL::

    from flatprint.volumes import roi_at, body_at, fetch_subvolume

    roi_at(xyz, "release/rois/fullbrain-roi-v4")            # labels (uint64), 0 = outside
    roi_at(xyz, "release", names=True)                       # ROI names, both ROI volumes
    body_at(xyz, "release/segmentation")                     # body ids (uint64), 0 = none
    body_at(xyz, "precomputed://gs://flyem-male-cns/v0.9/segmentation")
    fetch_subvolume([[x0, y0, z0], [x1, y1, z1]], "n5://gs://flyem_cns_z0720_07m_dvidcoords_n5/s0")

Points are ``(N, 3)`` x, y, z (a DataFrame with x, y, z columns works too) in 8 nm voxels, the
unit of the release's tables and SWC files; pass ``units="nm"`` or ``units="um"`` otherwise. A
point maps to the voxel ``floor(point_nm / resolution_nm)`` of the chosen scale (``scale`` is an
index into the precomputed ``info`` scales, finest first, or the N5 ``s<scale>`` dataset). Points
outside the volume get 0. Lookups are one batched tensorstore read (``vindex``), which reads each
chunk that holds a point once, so 10^6 points cost what their chunks cost.

``source`` may also be a list of volumes (the first non-zero label wins) or a release directory:
``roi_at`` then uses both ROI volumes (``rois/fullbrain-roi-v4`` and
``rois/malecns-vnc-neuropil-roi-v0``) and ``body_at`` the ``segmentation`` volume.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flatprint.errors import FormatError
from flatprint.io.units import MALE_CNS_VOXEL_NM, NM_PER_UM

__all__ = ["Volume", "body_at", "clear_cache", "fetch_subvolume", "open_volume", "roi_at", "roi_names"]

UNITS_NM = {
    "voxels": MALE_CNS_VOXEL_NM,
    "voxel": MALE_CNS_VOXEL_NM,
    "8nm": MALE_CNS_VOXEL_NM,
    "nm": 1.0,
    "um": NM_PER_UM,
    "µm": NM_PER_UM,
}
ROI_VOLUMES = ("rois/fullbrain-roi-v4", "rois/malecns-vnc-neuropil-roi-v0")
SEGMENTATION = "segmentation"
CACHE_BYTES = 256 << 20
DENSE_MAX_VOXELS = 1 << 25  # read the points' bounding box whole when it is at most this big ...
DENSE_PER_POINT = 8  # ... and at most this many voxels per point


@dataclass
class Volume:
    """An opened volume at one scale: ``store`` (tensorstore, dims x, y, z[, channel]),
    voxel ``resolution_nm`` and the index ``origin``/``shape`` of its domain."""

    source: str
    driver: str
    store: Any
    resolution_nm: np.ndarray
    origin: np.ndarray
    shape: np.ndarray
    has_channel: bool
    kvstore: dict
    info: dict = field(default_factory=dict)

    @property
    def dtype(self):
        return self.store.dtype.numpy_dtype


_lock = threading.Lock()
_opened: dict[tuple, Volume] = {}
_context = None


def _ts():
    try:
        import tensorstore as ts  # noqa: PLC0415 - tensorstore only when a volume is opened (start-up time)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("flatprint.volumes needs tensorstore: pip install tensorstore") from exc
    return ts


def _shared_context():
    global _context
    if _context is None:
        _context = _ts().Context({"cache_pool": {"total_bytes_limit": CACHE_BYTES}})
    return _context


def _split_source(source: str | os.PathLike) -> tuple[str | None, str]:
    """(driver prefix or None, location) from ``precomputed://...``, ``n5://...`` or plain."""
    text = os.fspath(source)
    for prefix, driver in (("precomputed://", "neuroglancer_precomputed"), ("n5://", "n5")):
        if text.startswith(prefix):
            return driver, text[len(prefix) :]
    return None, text


def _kvstore(location: str) -> dict:
    if location.startswith(("http://", "https://")):
        return {"driver": "http", "base_url": location.rstrip("/") + "/"}
    if location.startswith("gs://"):
        bucket, _, path = location[len("gs://") :].partition("/")
        return {"driver": "gcs", "bucket": bucket, "path": path.rstrip("/") + "/" if path else ""}
    if location.startswith("file://"):
        location = location[len("file://") :]
    return {"driver": "file", "path": str(Path(location).resolve()) + "/"}


def _child_kvstore(kv: dict, name: str) -> dict:
    kv = dict(kv)
    if kv["driver"] == "http":
        kv["base_url"] = kv["base_url"] + name.strip("/") + "/"
    else:
        kv["path"] = kv.get("path", "") + name.strip("/") + "/"
    return kv


def _read_json(kv: dict, key: str) -> dict | None:
    ts = _ts()
    try:
        store = ts.KvStore.open(kv, context=_shared_context()).result()
        result = store.read(key).result()
    except Exception:  # noqa: BLE001 - a missing or unreachable file is "no metadata"
        return None
    if result.state != "value":
        return None
    try:
        return json.loads(bytes(result.value))
    except ValueError:
        return None


def _detect_driver(kv: dict) -> str:
    if _read_json(kv, "info") is not None:
        return "neuroglancer_precomputed"
    if _read_json(kv, "attributes.json") is not None:
        return "n5"
    raise FileNotFoundError(f"no precomputed 'info' or N5 'attributes.json' at {kv}")


def _open_precomputed(location: str, kv: dict, scale: int) -> Volume:
    ts = _ts()
    info = _read_json(kv, "info") or {}
    store = ts.open(
        {"driver": "neuroglancer_precomputed", "kvstore": kv, "scale_index": int(scale)},
        read=True,
        context=_shared_context(),
    ).result()
    resolution = (
        np.array(info["scales"][scale]["resolution"], dtype=np.float64)
        if info.get("scales")
        else np.array([u.multiplier for u in store.schema.dimension_units[:3]], dtype=np.float64)
    )
    domain = store.domain
    return Volume(
        location,
        "neuroglancer_precomputed",
        store,
        resolution,
        np.array(domain.inclusive_min[:3], dtype=np.int64),
        np.array(domain.shape[:3], dtype=np.int64),
        has_channel=store.rank == 4,
        kvstore=kv,
        info=info,
    )


def _n5_resolution(attrs: Mapping[str, Any], fallback: np.ndarray) -> np.ndarray:
    for key in ("resolution", "pixelResolution"):
        value = attrs.get(key)
        if isinstance(value, Mapping):
            value = value.get("dimensions")
        if isinstance(value, Sequence) and len(value) >= 3:
            return np.array(value[:3], dtype=np.float64)
    return fallback


def _open_n5(location: str, kv: dict, scale: int) -> Volume:
    ts = _ts()
    attrs = _read_json(kv, "attributes.json") or {}
    base_resolution = _n5_resolution(attrs, np.full(3, MALE_CNS_VOXEL_NM))
    if "dimensions" not in attrs:  # a multiscale group: open s<scale>
        kv = _child_kvstore(kv, f"s{int(scale)}")
        scale_attrs = _read_json(kv, "attributes.json") or {}
        factors = scale_attrs.get("downsamplingFactors") or [2 ** int(scale)] * 3
        resolution = _n5_resolution(scale_attrs, base_resolution * np.asarray(factors[:3], dtype=np.float64))
    elif scale != 0:
        raise ValueError(f"{location} is a single N5 dataset; scale must be 0")
    else:
        resolution = base_resolution
    store = ts.open({"driver": "n5", "kvstore": kv}, read=True, context=_shared_context()).result()
    domain = store.domain
    return Volume(
        location,
        "n5",
        store,
        resolution,
        np.array(domain.inclusive_min[:3], dtype=np.int64),
        np.array(domain.shape[:3], dtype=np.int64),
        has_channel=store.rank == 4,
        kvstore=kv,
        info=attrs,
    )


def open_volume(source: str | os.PathLike | Volume, scale: int = 0) -> Volume:
    """Open (and cache) a precomputed or N5 volume at ``scale``. ``source`` is a local path,
    ``file://``, ``http(s)://`` or ``gs://`` URL, optionally prefixed ``precomputed://`` or
    ``n5://``; without a prefix the format is detected from ``info`` / ``attributes.json``."""
    if isinstance(source, Volume):
        return source
    driver, location = _split_source(source)
    kv = _kvstore(location)
    key = (driver, json.dumps(kv, sort_keys=True), int(scale))
    with _lock:
        if key in _opened:
            return _opened[key]
    if driver is None:
        driver = _detect_driver(kv)
    opener = _open_precomputed if driver == "neuroglancer_precomputed" else _open_n5
    volume = opener(location, kv, int(scale))
    with _lock:
        _opened[key] = volume
    return volume


def clear_cache() -> None:
    """Forget opened volumes (and their cached chunks), e.g. after a volume was rewritten."""
    global _context
    with _lock:
        _opened.clear()
        _context = None


def _as_points(points: Any, units: str) -> tuple[np.ndarray, bool]:
    """(N, 3) float64 points in nm, and whether a single point was given."""
    if units not in UNITS_NM:
        raise ValueError(f"units must be one of {sorted(UNITS_NM)}, not {units!r}")
    if hasattr(points, "columns") and all(c in points.columns for c in ("x", "y", "z")):
        array = np.column_stack([np.asarray(points[c], dtype=np.float64) for c in ("x", "y", "z")])
    else:
        array = np.asarray(points, dtype=np.float64)
    single = array.ndim == 1
    array = array.reshape(-1, 3) if array.size or single else array.reshape(0, 3)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3) (x, y, z), not {np.shape(points)}")
    return array * UNITS_NM[units], single


def _lookup(volume: Volume, nm: np.ndarray) -> np.ndarray:
    """Values at points (nm) in one batched read; 0 outside the volume or at non-finite points."""
    out = np.zeros(len(nm), dtype=volume.dtype)
    finite = np.all(np.isfinite(nm), axis=1)
    idx = np.zeros((len(nm), 3), dtype=np.int64)
    idx[finite] = np.floor(nm[finite] / volume.resolution_nm).astype(np.int64)
    inside = finite & np.all((idx >= volume.origin) & (idx < volume.origin + volume.shape), axis=1)
    if not inside.any():
        return out
    sel = idx[inside]
    store = volume.store
    lo, hi = sel.min(axis=0), sel.max(axis=0) + 1
    box_voxels = int(np.prod(hi - lo))
    if box_voxels <= min(DENSE_MAX_VOXELS, DENSE_PER_POINT * len(sel)):
        # The points' bounding box is small: one box read (whole chunks), then numpy indexing.
        box = store[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        data = np.asarray(box.read().result())
        if volume.has_channel:
            data = data[..., 0]
        rel = sel - lo
        out[inside] = data[rel[:, 0], rel[:, 1], rel[:, 2]]
        return out
    # Otherwise one batched point read; tensorstore groups the points by chunk.
    if volume.has_channel:
        view = store.vindex[sel[:, 0], sel[:, 1], sel[:, 2], 0]
    else:
        view = store.vindex[sel[:, 0], sel[:, 1], sel[:, 2]]
    out[inside] = view.read().result()
    return out


def _release_sources(source: Any, relative: Sequence[str]) -> list | None:
    """The volumes of a local release directory (one without an ``info`` of its own)."""
    if isinstance(source, (str, os.PathLike)) and "://" not in os.fspath(source):
        root = Path(source)
        if root.is_dir() and not (root / "info").exists() and not (root / "attributes.json").exists():
            found = [root / r for r in relative if (root / r / "info").exists()]
            if found:
                return found
    return None


def _combined(points: Any, sources: Any, scale: int, units: str) -> tuple[np.ndarray, bool, list[Volume]]:
    nm, single = _as_points(points, units)
    if isinstance(sources, (str, os.PathLike, Volume)):
        sources = [sources]
    volumes = [open_volume(s, scale) for s in sources]
    result = None
    for volume in volumes:
        values = _lookup(volume, nm)
        if result is None:
            result = values.astype(np.uint64) if values.dtype.kind in "iu" else values
        else:
            empty = result == 0
            result[empty] = values[empty]
    return result, single, volumes


def roi_names(volume: Volume | str | os.PathLike) -> dict[int, str]:
    """Label -> ROI name for an ROI volume, from its segment properties (the ``label`` property of
    the ``segment_properties`` directory its ``info`` names). A volume without them raises
    FormatError naming what is missing: its labels are numbers only that release can name (pass
    ``names={label: name}`` to :func:`roi_at` instead)."""
    volume = open_volume(volume)
    directory = volume.info.get("segment_properties") if volume.driver == "neuroglancer_precomputed" else None
    if not directory:
        raise FormatError(
            f'{volume.source}: the ROI volume names no segment properties (no "segment_properties" '
            "in its info file), so its labels have no ROI names; pass names={label: name}"
        )
    where = f"{volume.source.rstrip('/')}/{directory.strip('/')}/info"
    props = _read_json(_child_kvstore(volume.kvstore, directory), "info")
    if props is None:
        raise FormatError(
            f"{where}: the ROI volume's segment properties file is missing or not JSON, "
            "so its labels have no ROI names; pass names={label: name}"
        )
    inline = props.get("inline") or {}
    for prop in inline.get("properties") or []:
        if prop.get("type") == "label":
            return {int(i): str(v) for i, v in zip(inline.get("ids", []), prop.get("values", []))}
    raise FormatError(
        f'{where}: the segment properties have no property of type "label", so the ROI '
        "volume's labels have no names; pass names={label: name}"
    )


def roi_at(
    points: Any,
    source: Any,
    scale: int = 0,
    *,
    units: str = "voxels",
    names: bool | Mapping[int, str] = False,
    unspecified: str | None = "<unspecified>",
):
    """ROI label (uint64 array, 0 = no ROI) at each point of an ROI volume, or ROI names with
    ``names=True`` (or a label -> name mapping); ``unspecified`` names label 0 and unknown
    labels. ``source``: one volume, a list (first non-zero label wins) or a release directory
    (both ROI volumes). A single point (shape (3,)) gives a scalar."""
    sources = _release_sources(source, ROI_VOLUMES) or source
    labels, single, volumes = _combined(points, sources, scale, units)
    if names is not False and names is not None:
        if isinstance(names, Mapping):
            mapping = {int(k): v for k, v in names.items()}
        else:
            mapping = {}
            for volume in reversed(volumes):
                mapping.update(roi_names(volume))
        present = np.unique(labels)
        lookup = np.array([mapping.get(int(v), unspecified) if v else unspecified for v in present], dtype=object)
        result = lookup[np.searchsorted(present, labels)] if len(labels) else np.empty(0, dtype=object)
        return result[0] if single else result
    return labels[0] if single else labels


def body_at(points: Any, source: Any, scale: int = 0, *, units: str = "voxels"):
    """Body id (uint64 array, 0 = background) at each point of a segmentation volume.
    ``source``: one volume, a list (first non-zero wins) or a release directory (its
    ``segmentation``). A single point (shape (3,)) gives a scalar."""
    sources = _release_sources(source, (SEGMENTATION,)) or source
    bodies, single, _ = _combined(points, sources, scale, units)
    return bodies[0] if single else bodies


def fetch_subvolume(box: Any, source: Any, scale: int = 0, *, units: str = "voxels") -> np.ndarray:
    """The voxels of ``box`` = ``[[x0, y0, z0], [x1, y1, z1]]`` (half-open, in ``units``) at
    ``scale`` as a numpy array indexed ``[x, y, z]`` (``[x, y, z, c]`` for multi-channel
    images). The box is converted to the scale's voxels (floor of the start, ceiling of the
    end) and must lie inside the volume (ValueError otherwise)."""
    volume = open_volume(source, scale)
    box_nm = np.asarray(box, dtype=np.float64).reshape(2, 3) * UNITS_NM[units]
    begin = np.floor(box_nm[0] / volume.resolution_nm).astype(np.int64)
    end = np.ceil(box_nm[1] / volume.resolution_nm).astype(np.int64)
    lo, hi = volume.origin, volume.origin + volume.shape
    if np.any(begin < lo) or np.any(end > hi) or np.any(end < begin):
        raise ValueError(
            f"box {begin.tolist()}..{end.tolist()} (voxels at {volume.resolution_nm.tolist()} nm) "
            f"is not inside the volume {lo.tolist()}..{hi.tolist()}"
        )
    view = volume.store[begin[0] : end[0], begin[1] : end[1], begin[2] : end[2]]
    data = np.asarray(view.read().result())
    if volume.has_channel and data.shape[3] == 1:
        data = data[..., 0]
    return data
