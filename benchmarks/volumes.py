"""Benchmark: point lookups in the ROI and body volumes, and write_morphology itself.

    python benchmarks/volumes.py [--release DIR] [--scale 0.01] [--points 1000000] [--repeat 5]

Without ``--release`` a synthetic release of ``--scale`` is made in a temporary directory and
``write_morphology`` is timed on it (once; ``write_morphology_seconds``, single run). Then ``roi_at``
(both ROI volumes, 256 nm) and
``body_at`` (segmentation, 128 nm and 256 nm) are timed for ``--points`` uniformly random points
in the ROI volume's extent (8 nm voxel units): the median of ``--repeat`` runs after one warm-up
run (tensorstore's chunk cache is warm, which is the serving case). Writes
``benchmarks/results/volumes.json`` (or ``--results-dir``/volumes.json).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from flatprint import volumes  # noqa: E402
from flatprint.synth import (
    rois as roimod,  # noqa: E402
    synthesize,  # noqa: E402
)
from flatprint.synth.morphology import write_morphology  # noqa: E402


def _median_time(fn, repeat: int) -> tuple[float, list[float]]:
    fn()  # warm-up (opens the volume, fills the chunk cache)
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs), runs


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--release", type=Path, help="a release with morphology (default: synthesize one)")
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--points", type=int, default=10**6)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--results-dir", type=Path, default=None, help="default benchmarks/results")
    args = parser.parse_args(argv)
    machine = C.machine_facts()

    results = []
    morphology = {}
    temp = None
    release = args.release
    try:
        if release is None:
            temp = Path(tempfile.mkdtemp(prefix="flatprint-bench-volumes-"))
            release = temp / "release"
            synthesize(release, scale=args.scale, seed=args.seed, progress=False)
            started, cpu_started = time.perf_counter(), time.process_time()
            summary = write_morphology(release, progress=False)
            morphology = {
                "write_morphology_seconds": round(time.perf_counter() - started, 3),
                "write_morphology_cpu_seconds": round(time.process_time() - cpu_started, 3),
                "skeletons": summary["skeletons"],
                "skeleton_nodes": summary["skeleton_nodes"],
            }
        rng = np.random.default_rng(args.seed)
        extent = np.array(roimod.ROI_SHAPE_XYZ) * roimod.ROI_SCALE
        points = rng.random((args.points, 3)) * extent
        cases = [
            ("roi_at", "both ROI volumes, 256 nm", lambda: volumes.roi_at(points, release)),
            (
                "roi_at names=True",
                "both ROI volumes, 256 nm, names",
                lambda: volumes.roi_at(points, release, names=True),
            ),
            ("body_at", "segmentation scale 0 (128 nm)", lambda: volumes.body_at(points, release)),
            ("body_at scale=1", "segmentation scale 1 (256 nm)", lambda: volumes.body_at(points, release, scale=1)),
        ]
        for name, what, fn in cases:
            median, runs = _median_time(fn, args.repeat)
            results.append(
                {
                    "name": name,
                    "what": what,
                    "points": args.points,
                    "median_seconds": round(median, 4),
                    "min_seconds": round(min(runs), 4),
                    "max_seconds": round(max(runs), 4),
                    "repeat": args.repeat,
                    "points_per_second": round(args.points / median),
                }
            )
            print(f"{name:20s} {args.points:>9,d} points  median {median:.3f} s")
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)

    doc = {
        "name": "volumes",
        "date": C.now_iso(),
        "scale": None if args.release else args.scale,
        "release": str(args.release) if args.release else f"synthetic scale={args.scale} seed={args.seed}",
        "points": args.points,
        **morphology,
        "machine": machine,
        "loadavg_at_end": C.machine_facts().get("loadavg_at_start"),
        "results": results,
    }
    C.write_result("volumes", doc, args.results_dir)
    return doc


if __name__ == "__main__":
    main()
