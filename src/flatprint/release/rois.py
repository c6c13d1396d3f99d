"""ROI hierarchies as releases have them: a tree under ``CNS`` (major regions, optional grouping
ROIs, primary neuropils) and the label numbering of the ``primary`` and ``major`` ROI sets.

The synthetic release's fixed hierarchy and its label volumes are in :mod:`flatprint.synth.rois`.
"""

from __future__ import annotations

from dataclasses import dataclass

from flatprint.release.tables import UNSPECIFIED

ROOT = "CNS"
VOXEL_NM = 8  # the release's voxel size (synapse coordinates are in 8 nm voxels)


@dataclass(frozen=True)
class RoiHierarchy:
    """The fixed ROI tree and the label numbering of the ``primary`` and ``major`` ROI sets."""

    parent: dict[str, str]  # roi -> parent roi (major regions have ROOT as parent)
    children: dict[str, list[str]]
    primary: list[str]  # primary ROIs in label order (label = index + 1)
    major: list[str]  # major ROIs in label order (label = index + 1)
    major_of_primary: dict[str, str]
    boxes: dict[str, tuple[int, int, int, int, int, int]]  # primary -> x0,x1,y0,y1,z0,z1 (ROI voxels)
    major_boxes: dict[str, tuple[int, int, int, int, int, int]]

    def categories(self, roi_set: str) -> list[str]:
        """Dictionary values of an ROI-set column: ``<unspecified>`` first, then labels 1..n."""
        return [UNSPECIFIED] + (self.primary if roi_set == "primary" else self.major)

    def ancestors(self, roi: str) -> list[str]:
        """ROIs above ``roi`` (nearest first), excluding the root."""
        out = []
        while (roi := self.parent.get(roi)) not in (None, ROOT):
            out.append(roi)
        return out

    def all_rois(self) -> list[str]:
        return [r for r in self.parent if r != ROOT]

    def as_tree(self, name: str = ROOT) -> dict:
        """neuPrint's roiHierarchy: {"name": ..., "children": [...]} (leaves have no children key)."""
        node: dict = {"name": name}
        if self.children.get(name):
            node["children"] = [self.as_tree(c) for c in self.children[name]]
        return node
