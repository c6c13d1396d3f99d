"""The synthetic release's ROI hierarchy and its 256 nm ROI label volumes.

The hierarchy mirrors the real one's shape: CNS -> major regions (CentralBrain, Optic(L/R), CV, VNC)
-> optional grouping ROIs (MB(R), CX, ...) -> primary neuropils named like the real ones, including
names with parentheses and apostrophes (``AL(R)``, ``a'L(R)``). It is fixed: the same at every scale
and seed, so tests and snippets can name ROIs.

Each primary ROI is a box in a grid of 256 nm voxels (= 32 voxels of 8 nm); gaps between boxes are
``<unspecified>``. A point's ROI in the synapse tables is the volume's label at that point.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from flatprint.release.rois import ROOT, VOXEL_NM, RoiHierarchy

ROI_VOXEL_NM = 256
ROI_SCALE = ROI_VOXEL_NM // VOXEL_NM  # 8 nm voxels per ROI voxel along each axis
# ROI volume shape in 256 nm voxels, axis order x, y, z.
ROI_SHAPE_XYZ = (160, 240, 80)

_CB_PAIRED = [
    "AL",
    "AOTU",
    "AVLP",
    "PVLP",
    "PLP",
    "WED",
    "LH",
    "SLP",
    "SIP",
    "SMP",
    "CRE",
    "LAL",
    "GOR",
    "SPS",
    "IPS",
    "VES",
    "EPA",
    "ICL",
    "SCL",
    "ATL",
    "IB",
    "BU",
    "AB",
    "FLA",
    "CAN",
    "SAD",
]
_MB_PARTS = ["CA", "PED", "a'L", "aL", "b'L", "bL", "gL"]
_CB_UNPAIRED = ["FB", "EB", "PB", "NO", "GNG", "PRW"]
_OPTIC_PARTS = ["ME", "LO", "LOP", "AME", "LA"]
_CV_PAIRED = ["CV"]  # neck connective halves: CV(R), CV(L)
_VNC_PAIRED = [
    "LegNp(T1)",
    "LegNp(T2)",
    "LegNp(T3)",
    "NTct(UTct-T1)",
    "WTct(UTct-T2)",
    "HTct(UTct-T3)",
    "Ov",
    "mVAC(T1)",
    "mVAC(T2)",
    "mVAC(T3)",
]
_VNC_UNPAIRED = ["ANm", "IntTct", "LTct"]


def _tile(box, names):
    """Split a box into a grid of cells, one per name, each shrunk by one voxel (gaps are unspecified)."""
    x0, x1, y0, y1, z0, z1 = box
    n = len(names)
    gz = 2 if n > 4 else 1
    per_layer = math.ceil(n / gz)
    wx, wy = x1 - x0, y1 - y0
    gx = max(1, math.ceil(math.sqrt(per_layer * wx / wy)))
    gy = math.ceil(per_layer / gx)
    out = {}
    for i, name in enumerate(names):
        iz, rest = divmod(i, gx * gy)
        iy, ix = divmod(rest, gx)
        cx0 = x0 + (wx * ix) // gx
        cx1 = x0 + (wx * (ix + 1)) // gx
        cy0 = y0 + (wy * iy) // gy
        cy1 = y0 + (wy * (iy + 1)) // gy
        cz0 = z0 + ((z1 - z0) * iz) // gz
        cz1 = z0 + ((z1 - z0) * (iz + 1)) // gz
        out[name] = (cx0 + 1, cx1 - 1, cy0 + 1, cy1 - 1, cz0 + 1, cz1 - 1)
    return out


def _mirror(box):
    x0, x1, y0, y1, z0, z1 = box
    width = ROI_SHAPE_XYZ[0]
    return (width - x1, width - x0, y0, y1, z0, z1)


@lru_cache(maxsize=1)
def hierarchy() -> RoiHierarchy:
    parent: dict[str, str] = {}
    boxes: dict[str, tuple] = {}
    major_boxes = {
        "Optic(R)": (0, 34, 10, 90, 0, 80),
        "CentralBrain": (34, 126, 0, 100, 0, 80),
        "Optic(L)": (126, 160, 10, 90, 0, 80),
        "CV": (66, 94, 100, 120, 10, 70),
        "VNC": (46, 114, 120, 240, 0, 80),
    }
    for major in major_boxes:
        parent[major] = ROOT

    def add_paired(names, right_box, major, group_of=None):
        right = _tile(right_box, [f"{n}(R)" for n in names])
        for name_r, box in right.items():
            name_l = name_r[:-3] + "(L)"
            for name, b in ((name_r, box), (name_l, _mirror(box))):
                boxes[name] = b
                group = group_of(name) if group_of else None
                parent[name] = group or major

    # Central brain: right half, a central strip of unpaired neuropils, mirrored left half.
    cb_right = (34, 76, 0, 100, 0, 80)
    for side in ("R", "L"):
        parent[f"MB({side})"] = "CentralBrain"
        parent[f"LX({side})"] = "CentralBrain"
    parent["CX"] = "CentralBrain"

    def cb_group(name):
        base, side = name[:-3], name[-2]
        if base in _MB_PARTS:
            return f"MB({side})"
        if base in ("LAL", "BU"):
            return f"LX({side})"
        if base == "AB":
            return "CX"
        return None

    add_paired(_CB_PAIRED + _MB_PARTS, cb_right, "CentralBrain", cb_group)
    for name, box in _tile((76, 84, 0, 100, 0, 80), _CB_UNPAIRED).items():
        boxes[name] = box
        parent[name] = "CX" if name in ("FB", "EB", "PB", "NO") else "CentralBrain"
    add_paired(_OPTIC_PARTS, (0, 34, 10, 90, 0, 80), None)
    for name in list(boxes):
        if name[:-3] in _OPTIC_PARTS:
            parent[name] = f"Optic({name[-2]})"
    add_paired(_CV_PAIRED, (66, 80, 100, 120, 10, 70), "CV")
    add_paired(_VNC_PAIRED, (46, 78, 120, 240, 0, 80), "VNC")
    for name, box in _tile((78, 82, 120, 240, 0, 80), _VNC_UNPAIRED).items():
        boxes[name] = box
        parent[name] = "VNC"

    children: dict[str, list[str]] = {}
    for roi, par in parent.items():
        children.setdefault(par, []).append(roi)
    for par in children:
        children[par].sort()
    primary = sorted(boxes)
    major = list(major_boxes)

    def major_of(roi):
        while parent[roi] != ROOT:
            roi = parent[roi]
        return roi

    return RoiHierarchy(
        parent=parent,
        children=children,
        primary=primary,
        major=major,
        major_of_primary={p: major_of(p) for p in primary},
        boxes=boxes,
        major_boxes=major_boxes,
    )


@lru_cache(maxsize=1)
def label_volumes() -> tuple[np.ndarray, np.ndarray]:
    """(primary, major) label volumes, uint16 and uint8, indexed [x, y, z] in 256 nm voxels."""
    h = hierarchy()
    primary = np.zeros(ROI_SHAPE_XYZ, dtype=np.uint16)
    major = np.zeros(ROI_SHAPE_XYZ, dtype=np.uint8)
    for label, name in enumerate(h.major, start=1):
        x0, x1, y0, y1, z0, z1 = h.major_boxes[name]
        major[x0:x1, y0:y1, z0:z1] = label
    for label, name in enumerate(h.primary, start=1):
        x0, x1, y0, y1, z0, z1 = h.boxes[name]
        primary[x0:x1, y0:y1, z0:z1] = label
        # A primary ROI always lies inside its major region.
        major[x0:x1, y0:y1, z0:z1] = h.major.index(h.major_of_primary[name]) + 1
    return primary, major


def labels_at(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Primary and major labels at points given in 8 nm voxel coordinates (vectorised)."""
    primary, major = label_volumes()
    ix = np.clip(np.asarray(x) // ROI_SCALE, 0, ROI_SHAPE_XYZ[0] - 1)
    iy = np.clip(np.asarray(y) // ROI_SCALE, 0, ROI_SHAPE_XYZ[1] - 1)
    iz = np.clip(np.asarray(z) // ROI_SCALE, 0, ROI_SHAPE_XYZ[2] - 1)
    return primary[ix, iy, iz], major[ix, iy, iz]
