"""ROI levels of the synthetic release beyond ``major`` and ``primary`` (the v1.0 syn-points has more).

They are fixed subdivisions of the synthetic ROI boxes (flatprint.synth.rois), so a point's label in
each level follows from its location, as in the real release's ROI volumes:

* ``mid``: the grouping ROI between the major region and the primary neuropil (``MB(R)``, ``LX(L)``,
  ``CX``), ``<unspecified>`` for primaries without one;
* ``subprimary``: slabs of a few primaries along y (``FBl1``..``FBl8`` in FB, ``EBr1``..``EBr4`` in EB);
* ``ol_layer``: layers of the optic neuropils along z (``ME_R_layer_01``.., ME 10, LO 7, LOP 4);
* ``ol_column``: a grid of columns of the optic neuropils in x and y (``ME_R_col_01_03``).

Names follow the real ones' style; which sets a release has is data (flatprint.release.registry).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from flatprint.release.rois import ROOT
from flatprint.release.tables import UNSPECIFIED
from flatprint.synth.rois import ROI_SCALE, ROI_SHAPE_XYZ, RoiHierarchy, hierarchy

SUBPRIMARY = {"FB": [f"FBl{i}" for i in range(1, 9)], "EB": [f"EBr{i}" for i in range(1, 5)]}
OL_LAYERS = {"ME": 10, "LO": 7, "LOP": 4}
OL_COLUMNS_PER_AXIS = 4
LEVELS = ("mid", "subprimary", "ol_layer", "ol_column")


def _ol_parts(h: RoiHierarchy):
    """(primary label, primary name, base, side) of each optic neuropil with layers and columns."""
    for label, name in enumerate(h.primary, start=1):
        base, side = name[:-3], name[-2]
        if name.endswith(("(R)", "(L)")) and base in OL_LAYERS:
            yield label, name, base, side


@lru_cache(maxsize=1)
def _subdivisions() -> dict[str, list[tuple[int, str, list[str], int]]]:
    """Per level: (primary label, primary, ROI names in label order, axis) of each subdivided primary."""
    h = hierarchy()
    out: dict[str, list] = {"subprimary": [], "ol_layer": [], "ol_column": []}
    for label, name in enumerate(h.primary, start=1):
        if name in SUBPRIMARY:
            out["subprimary"].append((label, name, SUBPRIMARY[name], 1))
    for label, name, base, side in _ol_parts(h):
        out["ol_layer"].append(
            (label, name, [f"{base}_{side}_layer_{i:02d}" for i in range(1, OL_LAYERS[base] + 1)], 2)
        )
        n = OL_COLUMNS_PER_AXIS
        out["ol_column"].append(
            (label, name, [f"{base}_{side}_col_{i:02d}_{j:02d}" for i in range(1, n + 1) for j in range(1, n + 1)], -1)
        )
    return out


@lru_cache(maxsize=8)
def categories(level: str) -> list[str]:
    """Dictionary values of a level's column: ``<unspecified>`` first, then labels 1..n."""
    h = hierarchy()
    if level == "mid":
        return [UNSPECIFIED] + sorted({p for r in h.primary if (p := h.parent[r]) not in h.major and p != ROOT})
    if level not in LEVELS:
        raise ValueError(f"unknown synthetic ROI level {level!r}; known: {', '.join(LEVELS)}")
    return [UNSPECIFIED] + [roi for _, _, names, _ in _subdivisions()[level] for roi in names]


def labels_at(level: str, x: np.ndarray, y: np.ndarray, z: np.ndarray, primary: np.ndarray) -> np.ndarray:
    """The level's labels (0 = ``<unspecified>``) at points in 8 nm voxels with primary labels ``primary``."""
    h = hierarchy()
    cats = categories(level)
    out = np.zeros(len(primary), np.int32)
    if level == "mid":
        of_primary = np.zeros(len(h.primary) + 1, np.int32)
        index = {name: i for i, name in enumerate(cats)}
        for label, name in enumerate(h.primary, start=1):
            of_primary[label] = index.get(h.parent[name], 0)
        return of_primary[primary]
    ixyz = [np.clip(np.asarray(c) // ROI_SCALE, 0, ROI_SHAPE_XYZ[a] - 1) for a, c in enumerate((x, y, z))]
    first = 1
    for label, name, names, axis in _subdivisions()[level]:
        inside = np.flatnonzero(primary == label)
        box = h.boxes[name]
        if axis >= 0:
            lo, hi = box[2 * axis], box[2 * axis + 1]
            part = (ixyz[axis][inside] - lo) * len(names) // max(hi - lo, 1)
        else:  # a grid of columns in x and y
            n = OL_COLUMNS_PER_AXIS
            cx = (ixyz[0][inside] - box[0]) * n // max(box[1] - box[0], 1)
            cy = (ixyz[1][inside] - box[2]) * n // max(box[3] - box[2], 1)
            part = np.clip(cx, 0, n - 1) * n + np.clip(cy, 0, n - 1)
        out[inside] = first + np.clip(part, 0, len(names) - 1)
        first += len(names)
    assert first == len(cats)
    return out


def hierarchy_tree(levels: list[str]) -> dict:
    """neuPrint's roiHierarchy with the ``subprimary`` ROIs as children of their primary. ``mid`` ROIs
    are already in the tree; optic-lobe layers and columns are not hierarchical (as in neuPrint)."""
    tree = hierarchy().as_tree()
    if "subprimary" not in levels:
        return tree
    subs = {name: names for _, name, names, _ in _subdivisions()["subprimary"]}

    def walk(node):
        for child in node.get("children", []):
            walk(child)
        if node["name"] in subs:
            node["children"] = [{"name": n} for n in subs[node["name"]]]

    walk(tree)
    return tree
