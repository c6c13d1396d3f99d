"""The independent oracle: plain pandas on the raw release feathers (no flatprint code).

Tests compare flatprint's results with what these helpers compute directly from the files, the way a
careful user would with pandas today. Nothing here imports flatprint.
"""

from __future__ import annotations

import json
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


def primary_roi_counts(release: Path) -> pd.DataFrame:
    """Per (bodyId, primary ROI): pre and post (the body's points there) and downstream (partners of
    its T-bars there), from the feathers; the ``<unspecified>`` ROI left out."""
    points = load(release, "syn-points")
    partners = load(release, "syn-partners")
    primary = points["primary"].astype(str)
    counts = pd.DataFrame(
        {
            "pre": (points.kind == "PreSyn").groupby([points.body, primary]).sum(),
            "post": (points.kind == "PostSyn").groupby([points.body, primary]).sum(),
        }
    )
    pre_roi = primary.reindex(point_id(partners.x_pre, partners.y_pre, partners.z_pre).to_numpy()).to_numpy()
    downstream = partners.groupby([partners.body_pre.to_numpy(), pre_roi]).size()
    counts["downstream"] = downstream.reindex(counts.index, fill_value=0).to_numpy()
    counts = counts[counts.index.get_level_values(1) != "<unspecified>"]
    counts.index.names = ["bodyId", "roi"]
    return counts


def roi_chains(release: Path) -> dict[str, list[str]]:
    """ROI -> the ROIs a point in it counts under: itself, then its ancestors below the root."""
    tree = json.loads((Path(release) / "roi-hierarchy.json").read_text())["roiHierarchy"]
    out: dict[str, list[str]] = {}

    def walk(node, chain):
        out[node["name"]] = chain
        for child in node.get("children", []):
            walk(child, [child["name"], *chain])

    for child in tree.get("children", []):
        walk(child, [child["name"]])
    return out


def oracle_segments(release: Path) -> pd.DataFrame:
    """Every body (body-stats + annotations) with its counts and the :Neuron flag (docs/decisions.md's rule).

    Indexed by body id (named bodyId).
    """
    stats = load(release, "stats").set_index("body")
    ann = load(release, "annotations").set_index("bodyId")
    bodies = stats.index.union(ann.index)
    df = ann.reindex(bodies)
    for col in ("pre", "post", "downstream", "synweight"):
        df[col] = stats[col].reindex(bodies).fillna(0).astype(int)
    named = df[["somaLocation", "class", "type", "instance", "group", "somaSide", "synonyms"]].notna().any(axis=1)
    status = df["status"].astype(object)
    df["is_neuron"] = (
        (df["synweight"] >= 100) | (df["pre"] >= 100) | (df["post"] >= 100) | named | status.isin(["Traced", "Anchor"])
    ) & ~status.isin(["Glia", "Unimportant"])
    df.index.name = "bodyId"
    return df
