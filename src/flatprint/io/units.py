"""Length units of the Male CNS data: 8 nm voxels (SWC files, tables), nanometres (precomputed
skeletons, volumes) and micrometres (navis, JRC2018U)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "MALE_CNS_VOXEL_NM",
    "NM_PER_UM",
    "nm_to_um",
    "nm_to_voxels",
    "um_to_nm",
    "um_to_voxels",
    "voxels_to_nm",
    "voxels_to_um",
]

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
