"""The independent oracle: plain pandas on the raw release feathers (no flatprint code).

Tests compare flatprint's results with what these helpers compute directly from the files, the way a
careful user would with pandas today. Nothing here imports flatprint.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

FILES = {
    "annotations": "body-annotations-male-cns-v0.9-minconf-0.5.feather",
    "neurotransmitters": "body-neurotransmitters-male-cns-v0.9.feather",
    "stats": "body-stats-male-cns-v0.9-minconf-0.5.feather",
    "weights": "connectome-weights-male-cns-v0.9-minconf-0.5.feather",
    "syn-points": "syn-points-male-cns-v0.9-minconf-0.5.feather",
    "syn-partners": "syn-partners-male-cns-v0.9-minconf-0.5.feather",
    "tbar-nt": "tbar-neurotransmitters-male-cns-v0.9.feather",
}


@lru_cache(maxsize=32)
def load(release: Path, table: str) -> pd.DataFrame:
    """The table as pandas reads it (syn-points keeps its point_id index as pandas metadata says)."""
    return pd.read_feather(Path(release) / FILES[table])


def point_id(x, y, z) -> pd.Series:
    """The release's point encoding: (z << 42) | (y << 21) | x, as uint64."""
    x, y, z = (pd.Series(v).to_numpy().astype("uint64") for v in (x, y, z))
    return pd.Series((z << 42) | (y << 21) | x)
