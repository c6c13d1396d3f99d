"""``flatprint synth``: a whole synthetic release directory, written atomically with its manifest."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from flatprint.errors import ReleaseError
from flatprint.release.registry import DEFAULT_KEY, ReleaseDescription, describe
from flatprint.synth import levels, rois as roimod
from flatprint.synth.feather_out import sha256_of
from flatprint.synth.generator import BLOCK_PSDS, Builder


def write_roi_hierarchy(out: Path, rel: ReleaseDescription) -> None:
    """``out/roi-hierarchy.json``: the ROI tree and ROI sets of the synthetic release ``rel``."""
    h = roimod.hierarchy()
    extra = [s.name for s in rel.roi_sets if s.name not in ("primary", "major")]
    (out / "roi-hierarchy.json").write_text(
        json.dumps(
            {
                "roiHierarchy": levels.hierarchy_tree(extra),
                "roiSets": {"primary": h.primary, "major": h.major, **{s: levels.categories(s)[1:] for s in extra}},
                "roiVoxelSize": [roimod.ROI_VOXEL_NM] * 3,
                "note": "flatprint addition: the ROI tree the release's Meta would carry",
            },
            indent=1,
        )
    )


def synthesize(
    out_dir: str | os.PathLike,
    scale: float = 0.01,
    seed: int = 0,
    progress: bool = True,
    force: bool = False,
    morphology: bool = True,
    block_psds: int | None = None,
    release: str = DEFAULT_KEY,
) -> dict:
    """Write a synthetic release into ``out_dir`` atomically and return its manifest.

    ``release`` (``male-cns:v0.9``, ``male-cns:v1.0`` or a bare ``v1.0``) picks the registered release
    whose file names and schemas are written; the drawn connectome is the same for every release.

    With ``morphology`` (the default) the release also gets skeletons, ROI volumes and meshes and a
    segmentation volume, laid out like the real release (flatprint.synth.morphology).
    ``block_psds`` (default :data:`BLOCK_PSDS`) is the expected PSD count per generation block; it bounds
    memory. Changing it changes a multi-block release's content (still deterministic per value).
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise ReleaseError(f"{out} exists and is not empty (use --force to replace it)")
    rel = describe(release)
    started = time.perf_counter()
    b = Builder(scale, seed, rel)
    b.make_types()
    b.make_neurons()
    b.plan_synapses(block_psds or BLOCK_PSDS)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        files = b.write(tmp, progress)
        write_roi_hierarchy(tmp, rel)
        manifest = {
            "release": rel.key,
            "synthetic": {"seed": seed, "scale": scale, "generator": "flatprint synth"},
            "files": [],
        }
        for key, info in files.items():
            p = tmp / info["file"]
            manifest["files"].append(
                {
                    "table": key,
                    "file": info["file"],
                    "rows": info["rows"],
                    "bytes": p.stat().st_size,
                    "sha256": sha256_of(p),
                }
            )
        if morphology:
            from flatprint.synth.morphology import write_morphology  # noqa: PLC0415 - morphology pulls scipy/trimesh: only when asked for

            manifest["morphology"] = write_morphology(tmp, progress=progress)
        manifest["seconds"] = round(time.perf_counter() - started, 2)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
