"""Shared helpers for the benchmark scripts: where releases live, machine facts, timing, JSON output.

Benchmarks are plain scripts (``python benchmarks/ingest.py``); each writes
``benchmarks/results/<name>.json`` and ``benchmarks/render.py`` turns every result file into
``docs/benchmarks.md``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
PYTHON = sys.executable


def flatprint_home() -> Path:
    return Path(os.environ.get("FLATPRINT_HOME", Path.home() / ".local" / "share" / "flatprint"))


def bench_home() -> Path:
    path = flatprint_home() / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def release_dir(scale: float, seed: int = 0) -> Path:
    return bench_home() / f"release-{scale:g}-seed{seed}"


def store_path(scale: float, seed: int = 0) -> Path:
    return bench_home() / f"store-{scale:g}-seed{seed}.duckdb"


def ensure_release(scale: float, seed: int = 0, log=print) -> tuple[Path, dict, float | None]:
    """The synthetic release for (scale, seed), made once and reused; returns (dir, manifest, seconds made)."""
    out = release_dir(scale, seed)
    manifest_path = out / "manifest.json"
    # Another process may be synthesizing the same release (synthesize() writes into a hidden
    # sibling directory, then renames it): wait for it rather than doing the work twice.
    deadline = time.monotonic() + 1800
    while (
        not manifest_path.exists()
        and (list(out.parent.glob(f".{out.name}.*")) or _synth_running(out))
        and time.monotonic() < deadline
    ):
        log(f"waiting for another process that is synthesizing {out.name} ...")
        time.sleep(15)
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        syn = manifest.get("synthetic") or {}
        if syn.get("scale") == scale and syn.get("seed") == seed:
            return out, manifest, None
    from flatprint.synth import synthesize

    log(f"synthesizing a scale-{scale:g} release (seed {seed}) in {out} ...")
    started = time.perf_counter()
    # The tables only: no benchmark here reads skeletons or volumes, and morphology is not block-wise yet.
    manifest = synthesize(out, scale=scale, seed=seed, progress=False, force=True, morphology=False)
    return out, manifest, time.perf_counter() - started


def _synth_running(out: Path, verb: str = "synth") -> bool:
    """True when another process's command line is ``flatprint <verb> ... out ...`` (read from /proc)."""
    me = os.getpid()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == me:
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if verb.encode() in args and str(out).encode() in args:
            return True
    return False


def wait_for_other_ingest(store: Path, log=print, limit: float = 1800) -> float:
    """Wait while another process runs ``flatprint ingest ... store`` (it would share our CPUs)."""
    started = time.monotonic()
    while _synth_running(store, "ingest") and time.monotonic() - started < limit:
        log(f"waiting for another process that is ingesting into {store.name} ...")
        time.sleep(15)
    return time.monotonic() - started


def ensure_store(scale: float, seed: int = 0, log=print) -> Path:
    """The bench store for (scale, seed): ingested (again) unless it is newer than its release and of
    the current layout; waits for another process already ingesting it."""
    release, _, _ = ensure_release(scale, seed, log=log)
    store = store_path(scale, seed)
    wait_for_other_ingest(store, log=log)
    if not store_is_fresh(store, release):
        log(f"ingesting {release} into {store} ...")
        # in a child process, so that a benchmark's own memory does not carry the ingest's
        subprocess.run(
            [PYTHON, "-m", "flatprint.cli", "ingest", str(release), str(store), "--force", "--quiet"], check=True
        )
    return store


def store_is_fresh(store: Path, release: Path) -> bool:
    """True when ``store`` exists, was built after the release's manifest and has the current layout."""
    from flatprint.ingest import store_is_current

    manifest = release / "manifest.json"
    return (
        store.exists()
        and manifest.exists()
        and store.stat().st_mtime > manifest.stat().st_mtime
        and store_is_current(store)
    )


def machine_facts() -> dict:
    """nproc, memory, CPU model and load, for the report."""
    facts = {"nproc": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                facts["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                facts["mem_total_gib"] = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        facts["loadavg_at_start"] = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        pass
    versions = {}
    for mod in ("duckdb", "pandas", "polars", "pyarrow", "numpy"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing optional engine is reported, not fatal
            versions[mod] = None
    try:
        import flatprint

        versions["flatprint"] = flatprint.__version__
    except Exception:  # noqa: BLE001
        versions["flatprint"] = None
    facts["versions"] = versions
    try:
        facts["git_commit"] = (
            subprocess.run(
                ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        facts["git_commit"] = None
    return facts


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where /proc is missing)."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def write_result(name: str, doc: dict, results_dir: Path | None = None) -> Path:
    """Write ``doc`` atomically as ``<results>/<name>.json``, with the load average at its end."""
    if "loadavg_at_end" not in doc and loadavg() is not None:
        doc["loadavg_at_end"] = loadavg()
    out_dir = Path(results_dir) if results_dir else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=_jsonable) + "\n")
    os.replace(tmp, path)
    return path


def _jsonable(obj):
    try:
        import numpy as np

        if isinstance(obj, np.integer):
            return int(obj)
        if isinstance(obj, np.floating):
            return float(obj)
    except ImportError:
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
