"""Every system side by side at one scale: ingest/load, the query workload, the server and its throughput.

    python benchmarks/run.py --scale {0.01,0.1,1.0} [--repeat 5] [--ingest auto|always|never] [--dry-run]

Steps (each sub-benchmark runs in its own process; this process stays small, see below):

1. the synthetic release at that scale, made once under $FLATPRINT_HOME/bench/ and reused
   (``_common.ensure_release``, in a subprocess);
2. flatprint's ingest into the bench store (``benchmarks/ingest.py``'s ``run_ingest``: wall, CPU, peak
   RSS) — with ``--ingest auto`` only when the store is missing or older than the release
   (``_common.store_is_fresh``); a reused store cites the latest ``results/ingest.json`` figures;
3. ``benchmarks/queries.py``: flatprint's library against prepared baselines (benchmarks/baselines.py:
   pandas and polars in RAM, DuckDB on body-sorted Parquet; the graph DB ladybug in Cypher), each
   prepare timed beside the ingest — every engine in its own worker process, round-robin, ``--repeat``
   warm runs on parameters drawn per repetition, full answers cross-checked against flatprint's;
4. ``benchmarks/server.py``: neuprint-python through ``flatprint serve`` against the library;
5. ``benchmarks/load.py``: ``--load-clients`` (32) concurrent clients, ``--load-repeat`` (5) runs of
   ``--load-duration`` seconds on one server; medians.

Writes ``benchmarks/results/systems-<scale>.json`` (the sub-benchmarks' documents nested in it; with
``--skip``, the skipped steps keep that file's previous results, marked ``carried_over_from``) and
renders ``docs/benchmarks.md`` unless ``--no-render``.

Peak RSS: each engine of the query benchmark is measured inside its own worker process (VmHWM, reset
per item; see queries.RSS_METHOD). The ingest's peak is ``run_ingest``'s (psutil sampling and the
ingest process's own VmHWM; wait4's ru_maxrss would start from its parent's RSS at spawn, which is why
this orchestrator imports no data libraries). For server.py and load.py, every process of the
subprocess tree is sampled every 100 ms from /proc (VmRSS summed per role at each sample, and each
process's own VmHWM); roles: the ``flatprint serve`` process tree ("server") and the benchmark process
itself ("client": neuprint-python, and in server.py also the flatprint library it is compared with).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

STEPS = ("release", "ingest", "queries", "server", "load")


# =============================================================================== process-tree memory
def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _read(f"/proc/{entry}/stat")
        if not stat:
            continue
        try:
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _tree(pid: int) -> list[int]:
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _status_kib(pid: int, field: str) -> int:
    text = _read(f"/proc/{pid}/status") or ""
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class TreeSampler:
    """Samples RSS of every process under ``pid`` every ``period`` s, grouped by role (cmdline)."""

    def __init__(self, pid: int, period: float = 0.1):
        self.pid, self.period = pid, period
        self.role_of: dict[int, str] = {}
        self.peak_sum: dict[str, int] = {}
        self.hwm: dict[int, int] = {}
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _role(self, pid: int) -> str:
        if pid not in self.role_of:
            cmd = (_read(f"/proc/{pid}/cmdline") or "").split("\0")
            self.role_of[pid] = "server" if "serve" in cmd else "client"
        return self.role_of[pid]

    def _run(self):
        while True:
            sums: dict[str, int] = {}
            for p in _tree(self.pid):
                rss = _status_kib(p, "VmRSS") * 1024
                if not rss:
                    continue
                role = self._role(p)
                if role == "client" and p != self.pid and self.role_of.get(self._parent(p)) == "server":
                    role = self.role_of[p] = "server"  # uvicorn's worker processes
                sums[role] = sums.get(role, 0) + rss
                self.hwm[p] = max(self.hwm.get(p, 0), _status_kib(p, "VmHWM") * 1024)
            for role, v in sums.items():
                self.peak_sum[role] = max(self.peak_sum.get(role, 0), v)
            if self.stop_event.wait(self.period):
                return

    @staticmethod
    def _parent(pid: int) -> int:
        stat = _read(f"/proc/{pid}/stat") or ") 0 0"
        return int(stat.rsplit(")", 1)[1].split()[1])

    def stop(self) -> dict:
        self.stop_event.set()
        self.thread.join(timeout=5)
        per_role_hwm: dict[str, int] = {}
        for p, v in self.hwm.items():
            role = self.role_of.get(p, "client")
            per_role_hwm[role] = max(per_role_hwm.get(role, 0), v)
        return {
            "peak_rss_sum_bytes": self.peak_sum,
            "largest_process_hwm_bytes": per_role_hwm,
            "processes": {r: sum(1 for p in self.hwm if self.role_of.get(p) == r) for r in set(self.role_of.values())},
        }


def run_sub(cmd: list[str], log, env=None, sample: bool = False) -> tuple[int, float, dict | None]:
    """Run one sub-benchmark (output passes through); (exit code, wall seconds, memory samples)."""
    log("$ " + " ".join(str(c) for c in cmd))
    started = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], env=env)
    sampler = TreeSampler(proc.pid) if sample else None
    code = proc.wait()
    mem = sampler.stop() if sampler else None
    return code, time.perf_counter() - started, mem


# =============================================================================== steps
def plan(args) -> dict:
    scale = args.scale
    out = {"scale": scale, "repeat": args.repeat, "seed": args.seed}
    release = args.release or C.release_dir(scale, args.seed)
    store = args.store or C.store_path(scale, args.seed)
    out["release"], out["store"] = str(release), str(store)
    fresh = args.store is not None or C.store_is_fresh(Path(store), Path(release))
    out["ingest"] = {"always": "ingest", "never": "reuse"}.get(args.ingest, "reuse" if fresh else "ingest")
    if args.ingest == "never" and not Path(store).exists():
        out["ingest"] = "missing"
    bench = Path(__file__).resolve().parent
    q = [
        C.PYTHON,
        bench / "queries.py",
        "--scale",
        f"{scale:g}",
        "--repeat",
        str(args.repeat),
        "--seed",
        str(args.seed),
        "--release",
        release,
        "--store",
        store,
    ]
    if args.graph_dir:
        q += ["--graph-dir", args.graph_dir]
    if args.engines:
        q += ["--engines", *args.engines]
    out["commands"] = {
        "queries": q,
        "server": [
            C.PYTHON,
            bench / "server.py",
            "--scale",
            f"{scale:g}",
            "--repeat",
            str(args.server_repeat or args.repeat),
        ],
        "load": [
            C.PYTHON,
            bench / "load.py",
            "--store",
            store,
            "--scale",
            f"{scale:g}",
            "--client",
            "raw",
            "--duration",
            f"{args.load_duration:g}",
            "--clients",
            *[str(args.load_clients)] * args.load_repeat,
        ],
    }
    out["steps"] = [s for s in STEPS if s not in (args.skip or [])]
    out["results"] = str(Path(args.results_dir or C.RESULTS) / f"systems-{scale:g}.json")
    return out


def ensure_release_subprocess(scale: float, seed: int, log) -> dict:
    """ensure_release in a child, so that this process does not grow (see the module docstring)."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import _common as C; "
        "d, m, s = C.ensure_release(float(sys.argv[2]), int(sys.argv[3])); "
        "print('RESULT ' + json.dumps({'release': str(d), 'synth_seconds': s}))"
    )
    out = subprocess.run(
        [C.PYTHON, "-c", code, str(Path(__file__).resolve().parent), str(scale), str(seed)],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def latest_ingest(scale: float, results_dir: Path) -> dict | None:
    path = results_dir / "ingest.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    for s in doc.get("scales", []):
        if s.get("scale") == scale and s.get("runs"):
            r = s["runs"][-1]
            return {
                "source": f"results/ingest.json of {doc.get('date')}",
                "wall_seconds": s["median_wall_seconds"],
                "cpu_seconds": s.get("median_cpu_seconds"),
                "peak_rss_bytes": int(s["median_peak_rss_gib"] * 2**30),
                "store_bytes": s.get("store_bytes"),
                "rss_method": r.get("rss_method"),
                "memory_limit": doc.get("memory_limit"),
                "runs": len(s["runs"]),
            }
    return None


def server_home_for(store: Path, scale: float, seed: int, tmp: Path) -> Path:
    """A FLATPRINT_HOME whose bench store of this scale is ``store`` (server.py finds its store there)."""
    home = tmp / "home"
    (home / "bench").mkdir(parents=True, exist_ok=True)
    link = home / "bench" / C.store_path(scale, seed).name
    if not link.exists():
        link.symlink_to(Path(store).resolve())
    return home


def summarize_load(doc: dict) -> dict:
    rows = [r for r in doc.get("results", []) if r.get("requests")]
    med = lambda k: statistics.median([r[k] for r in rows if r.get(k) is not None]) if rows else None  # noqa: E731
    return {
        "runs": len(rows),
        "clients": rows[0]["clients"] if rows else None,
        "client": rows[0]["client"] if rows else None,
        "duration_s": rows[0]["duration_s"] if rows else None,
        "requests_per_s_median": med("requests_per_s"),
        "p50_ms_median": med("p50_ms"),
        "p99_ms_median": med("p99_ms"),
        "errors": sum(r.get("errors", 0) for r in rows),
        "requests_per_s_runs": [r["requests_per_s"] for r in rows],
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, required=True, help="0.01, 0.1 or 1.0 (any synth scale works)")
    ap.add_argument("--repeat", type=int, default=5, help="warm repetitions (queries, server); >= 5 for reports")
    ap.add_argument(
        "--server-repeat",
        type=int,
        default=None,
        help="warm repetitions of server.py (default --repeat); its calls take milliseconds, so more are cheap",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ingest", choices=["auto", "always", "never"], default="auto")
    ap.add_argument("--memory-limit", default="6GB", help="DuckDB memory_limit of the ingest")
    ap.add_argument("--engines", nargs="*", help="query baselines (default: all)")
    ap.add_argument("--load-clients", type=int, default=32)
    ap.add_argument("--load-repeat", type=int, default=5)
    ap.add_argument("--load-duration", type=float, default=20.0, help="measured seconds per load-test run")
    ap.add_argument("--skip", nargs="*", choices=STEPS[1:], help="steps to leave out")
    ap.add_argument("--release", type=Path, help="use this release (tests); default $FLATPRINT_HOME/bench's")
    ap.add_argument("--store", type=Path, help="use this store (ingested from --release)")
    ap.add_argument("--graph-dir", type=Path)
    ap.add_argument("--results-dir", type=Path, default=None)
    ap.add_argument("--no-render", action="store_true")
    ap.add_argument("--docs", type=Path, default=C.REPO / "docs" / "benchmarks.md")
    ap.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")
    args = ap.parse_args(argv)
    log = lambda *a: print(*a, flush=True)  # noqa: E731
    results_dir = Path(args.results_dir or C.RESULTS)

    p = plan(args)
    if args.dry_run:
        log(json.dumps(p, indent=1, default=str))
        return {"dry_run": True, "plan": p}
    doc = {
        "name": f"systems-{args.scale:g}",
        "kind": "systems",
        "date": C.now_iso(),
        "scale": args.scale,
        "seed": args.seed,
        "repeat": args.repeat,
        "machine": C.machine_facts(),
        "steps": {},
    }
    failed = []
    with tempfile.TemporaryDirectory(prefix="flatprint-run-") as tmp:
        tmp = Path(tmp)
        # 1. release
        if args.release is None:
            made = ensure_release_subprocess(args.scale, args.seed, log)
            doc["steps"]["release"] = made
        release = Path(p["release"])
        store = Path(p["store"])
        # 2. flatprint's ingest
        if "ingest" in p["steps"]:
            if p["ingest"] == "ingest":
                import ingest as I

                C.wait_for_other_ingest(store, log)
                log(f"ingesting {release.name} into {store} (memory_limit {args.memory_limit}) ...")
                r = I.run_ingest(release, store, args.memory_limit)
                r["source"] = "measured in this run"
                r["memory_limit"] = args.memory_limit
                doc["steps"]["ingest"] = r
                if r.get("failed"):
                    failed.append("ingest")
                    log(f"ingest FAILED: {r.get('error')}")
                else:
                    log(f"ingest: {r['wall_seconds']:.1f} s wall, {r['peak_rss_bytes'] / 2**30:.2f} GiB peak RSS")
            else:
                doc["steps"]["ingest"] = latest_ingest(args.scale, results_dir) or {
                    "source": f"store reused ({p['ingest']}); no ingest figures recorded for this scale"
                }
                log(f"store reused: {store}")
        # 3. queries
        if "queries" in p["steps"] and "ingest" not in failed:
            qdir = tmp / "queries"
            code, wall, _ = run_sub(p["commands"]["queries"] + ["--results-dir", qdir], log)
            try:
                doc["steps"]["queries"] = json.loads((qdir / "queries.json").read_text())
            except (OSError, ValueError):
                doc["steps"]["queries"] = {"error": f"queries.py exited {code} without a result"}
            doc["steps"]["queries"]["wall_seconds"] = wall
            if code != 0:
                failed.append("queries")
        # 4. neuprint-python through flatprint serve
        if "server" in p["steps"] and "ingest" not in failed:
            sdir = tmp / "server"
            env = {**os.environ}
            if args.store is not None:
                env["FLATPRINT_HOME"] = str(server_home_for(store, args.scale, args.seed, tmp))
            code, wall, mem = run_sub(p["commands"]["server"] + ["--results-dir", sdir], log, env=env, sample=True)
            try:
                doc["steps"]["server"] = json.loads((sdir / "server.json").read_text())
            except (OSError, ValueError):
                doc["steps"]["server"] = {"error": f"server.py exited {code} without a result"}
            doc["steps"]["server"].update({"memory": mem, "wall_seconds": wall})
            if code != 0:
                failed.append("server")
        # 5. throughput
        if "load" in p["steps"] and "ingest" not in failed:
            ldir = tmp / "load"
            code, wall, mem = run_sub(p["commands"]["load"] + ["--results-dir", ldir], log, sample=True)
            try:
                doc["steps"]["load"] = json.loads((ldir / "load.json").read_text())
                doc["steps"]["load"]["summary"] = summarize_load(doc["steps"]["load"])
            except (OSError, ValueError):
                doc["steps"]["load"] = {"error": f"load.py exited {code} without a result"}
            doc["steps"]["load"].update({"memory": mem, "wall_seconds": wall})
            if code != 0:
                failed.append("load")
    doc["failed_steps"] = failed
    previous = results_dir / f"{doc['name']}.json"
    if args.skip and previous.exists():  # steps left out keep the previous run's results, dated
        try:
            prev = json.loads(previous.read_text())
        except ValueError:
            prev = {}
        for step, res in (prev.get("steps") or {}).items():
            if step not in doc["steps"] and isinstance(res, dict):
                res.setdefault("carried_over_from", prev.get("date"))
                doc["steps"][step] = res
        doc["failed_steps"] += [f for f in prev.get("failed_steps", []) if f in args.skip]
    q = doc["steps"].get("queries") or {}
    doc["all_baselines_agree"] = q.get("all_baselines_agree")
    path = C.write_result(doc["name"], doc, results_dir)
    log(f"wrote {path}" + (f"; FAILED steps: {failed}" if failed else ""))
    if not args.no_render:
        import render

        render.render(results_dir, args.docs)
        log(f"rendered {args.docs}")
    if (failed or q.get("all_baselines_agree") is False) and __name__ == "__main__":
        raise SystemExit(1)
    return doc


if __name__ == "__main__":
    main()
