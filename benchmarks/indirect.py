"""Benchmark: indirect connectivity, 4 hops from one cell type to every neuron (fetch_indirect).

    python benchmarks/indirect.py --scale 0.1 [--repeat 5] [--hops 4] [--seed 0]

Two engines, each in its own worker process (its peak RSS is its own: VmHWM from /proc), prepared one
after the other, then asked the same queries round-robin (the order alternating per repetition):

* ``flatprint``: ``fetch_indirect(type, None, hops, groupby=("type", None))`` on the store. Its
  *prepare* is building the whole-graph input-fraction matrix once (``graph_matrix``).
* ``scipy``: what an expert writes today with pandas and scipy.sparse. *Prepare* (timed apart):
  read only the needed columns of body-annotations and body-stats to get the :Neuron set
  (decisions.md's rule), read ``body_pre, body_post, weight`` of connectome-weights, keep the
  neuron-neuron rows, build the CSC matrix and divide each column by its sum. *Query*: one indicator
  vector of the type's neurons, then ``v = A.T @ v`` per hop.

``--release-dir``/``--store-path`` use a release and store made elsewhere (the tests' smoke run).
Each repetition uses another cell type (the same list for both engines, drawn with the seed from the
types with at least two neurons that send output); one warm-up query first. Each side's answer (per hop,
the effective input fraction of every neuron from the type) is written to a scratch file and compared
in full with the other's (``np.allclose``, rtol 1e-9). Results: ``benchmarks/results/indirect.json``,
one entry per scale (a run replaces its scale's entry).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

NAMED = ["somaLocation", "class", "type", "instance", "group", "somaSide", "synonyms"]
ENGINES = ("flatprint", "scipy")
PARTNERS = ("neurons", "segments")


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_rss_bytes() -> int | None:
    kib = _status_kib("VmHWM")
    return kib * 1024 if kib is not None else None


def rss_bytes() -> int | None:
    kib = _status_kib("VmRSS")
    return kib * 1024 if kib is not None else None


# ------------------------------------------------------------------------------------------ engines
class Flatprint:
    def __init__(self, store: Path, neurons_only: bool):
        from flatprint import Client

        self.client = Client(store)
        self.neurons_only = neurons_only

    def prepare(self):
        from flatprint.query.indirect import graph_matrix

        graph = graph_matrix(self.client.store, "input", self.neurons_only)
        self.ids = np.asarray(
            [r[0] for r in self.client.sql("SELECT bodyId FROM segments WHERE is_neuron ORDER BY 1")[1]], dtype=np.int64
        )
        return {
            "matrix_nnz": int(graph.inputs.nnz),
            "bodies": len(graph.body_ids),
            "neurons": len(self.ids),
            "matrix_bytes": graph.nbytes,
        }

    def query(self, cell_type: str, hops: int) -> np.ndarray:
        from flatprint import NeuronCriteria as NC, fetch_indirect

        # targets: every neuron (NC() is the :Neuron set also when every segment is a partner)
        per_hop, _ = fetch_indirect(
            NC(type=cell_type, regex=False),
            None if self.neurons_only else NC(),
            hops=hops,
            groupby=("type", None),
            neurons_only=self.neurons_only,
            client=self.client,
        )
        return per_hop

    def dense(self, per_hop, hops: int) -> np.ndarray:
        out = np.zeros((hops, len(self.ids)))
        pos = np.searchsorted(self.ids, per_hop["bodyId_post"].to_numpy(np.int64))
        out[per_hop["hop"].to_numpy() - 1, pos] = per_hop["weight"].to_numpy()
        return out


class Scipy:
    """The expert baseline: pandas for the neuron set, scipy.sparse for the matrix and the hops."""

    def __init__(self, release: Path, neurons_only: bool):
        from flatprint.release.tables import TABLES

        self.files = {k: release / spec.filename for k, spec in TABLES.items()}
        self.neurons_only = neurons_only

    def prepare(self):
        import pandas as pd
        import pyarrow as pa
        import pyarrow.dataset as pa_dataset
        import scipy.sparse as sp

        ann = pd.read_feather(self.files["annotations"], columns=["bodyId", "status", *NAMED])
        stats = pd.read_feather(self.files["stats"], columns=["body", "pre", "post", "synweight"])
        # decisions.md's :Neuron rule, side by side (an outer join of every body with the annotation
        # columns would cost gigabytes at full scale)
        big = stats["body"].to_numpy(np.int64)[
            ((stats["synweight"] >= 100) | (stats["pre"] >= 100) | (stats["post"] >= 100)).to_numpy()
        ]
        status = ann["status"].astype(object)
        named = ann["bodyId"].to_numpy(np.int64)[
            (ann[NAMED].notna().any(axis=1) | status.isin(["Traced", "Anchor"])).to_numpy()
        ]
        excluded = ann["bodyId"].to_numpy(np.int64)[status.isin(["Glia", "Unimportant"]).to_numpy()]
        candidates = np.union1d(big, named)
        self.ids = candidates[~np.isin(candidates, excluded)]  # sorted: the answer's rows
        # the partners: neurons, or every body (then the :Neuron rows are picked out of each hop's vector)
        bodies = (
            self.ids
            if self.neurons_only
            else np.union1d(stats["body"].to_numpy(np.int64), ann["bodyId"].to_numpy(np.int64))
        )
        self.neuron_pos = np.searchsorted(bodies, self.ids)
        typed = ann[ann["bodyId"].isin(self.ids) & ann["type"].notna()]
        self.members = {t: np.searchsorted(bodies, g.to_numpy(np.int64)) for t, g in typed.groupby("type")["bodyId"]}
        n = len(bodies)
        del ann, stats, big, named, excluded, candidates, typed
        # connectome-weights batch by batch (only its three columns; no memory map, so that the peak
        # RSS is what the script holds), keeping the rows between partners as indices
        reader = pa.ipc.open_file(pa.OSFile(str(self.files["weights"])))
        names = reader.schema.names
        want = [names.index(c) for c in ("body_pre", "body_post", "weight")]
        every_row = not self.neurons_only  # then every row is kept: arrays allocated once at full size
        pieces, m = [], 0
        if every_row:
            total = pa_dataset.dataset(str(self.files["weights"]), format="ipc").count_rows()  # from metadata
            rows = np.empty(total, np.int32)
            cols = np.empty(total, np.int32)
            vals = np.empty(total, np.float64)
        for b in range(reader.num_record_batches):
            batch = reader.get_batch(b)
            pre = batch.column(want[0]).to_numpy()
            post = batch.column(want[1]).to_numpy()
            i = np.minimum(np.searchsorted(bodies, pre), n - 1)
            j = np.minimum(np.searchsorted(bodies, post), n - 1)
            keep = (bodies[i] == pre) & (bodies[j] == post)
            i, j, v = i[keep].astype(np.int32), j[keep].astype(np.int32), batch.column(want[2]).to_numpy()[keep]
            if every_row:
                rows[m : m + len(i)], cols[m : m + len(i)], vals[m : m + len(i)] = i, j, v
                m += len(i)
            else:
                pieces.append((i, j, v.astype(np.float64)))
        del reader
        if not every_row:
            rows, cols, vals = (np.concatenate([p[k] for p in pieces]) for k in range(3))
            m = len(rows)
            del pieces
        w = sp.csc_matrix((vals[:m], (rows[:m], cols[:m])), shape=(n, n))
        del rows, cols, vals
        colsum = np.asarray(w.sum(axis=0)).ravel()
        colsum[colsum == 0] = 1.0
        w.data /= np.repeat(colsum, np.diff(w.indptr))  # CSC: data runs column by column
        self.a = w
        return {"matrix_nnz": int(w.nnz), "bodies": n, "neurons": len(self.ids)}

    def query(self, cell_type: str, hops: int) -> np.ndarray:
        v = np.zeros(self.a.shape[0])
        v[self.members[cell_type]] = 1.0
        at = self.a.T  # CSR view of A^T: one row gather per neuron
        out = np.empty((hops, len(self.ids)))
        for k in range(hops):
            v = at @ v
            out[k] = v[self.neuron_pos]
        return out

    def dense(self, answer, hops: int) -> np.ndarray:
        return answer


def worker(args) -> None:
    """One engine, driven over stdin/stdout: prepare, then ``query <i> <type>`` lines (answers to --out),
    then ``quit``; each step answers one JSON line."""
    hops = args.hops
    # the libraries are imported before the clock starts, on both sides (imports are not the work)
    import pandas  # noqa: F401
    import pyarrow.feather  # noqa: F401
    import scipy.sparse  # noqa: F401

    import flatprint.query.indirect  # noqa: F401

    partners = args.partners[0]
    neurons_only = partners == "neurons"
    started = time.perf_counter()
    engine = (
        Flatprint(Path(args.store), neurons_only)
        if args.worker == "flatprint"
        else Scipy(Path(args.release), neurons_only)
    )
    facts = engine.prepare()
    prepare_s = time.perf_counter() - started
    np.save(Path(args.out) / f"{partners}-{args.worker}-ids.npy", engine.ids)
    print(json.dumps({"prepare_s": prepare_s, "prepare_peak_rss_bytes": peak_rss_bytes(), **facts}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        index, cell_type = words[1], " ".join(words[2:])
        t0 = time.perf_counter()
        answer = engine.query(cell_type, hops)
        seconds = time.perf_counter() - t0
        if index != "warmup":
            np.save(Path(args.out) / f"{partners}-{args.worker}-{index}.npy", engine.dense(answer, hops))
        print(json.dumps({"seconds": seconds}), flush=True)
    print(json.dumps({"peak_rss_bytes": peak_rss_bytes(), "rss_after_bytes": rss_bytes()}), flush=True)


class Worker:
    """A worker process of one engine (its memory is its own)."""

    def __init__(self, engine: str, argv: list[str]):
        self.engine = engine
        self.proc = subprocess.Popen(
            [C.PYTHON, str(Path(__file__).resolve()), "--worker", engine, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        self.ready = self._reply()

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"{self.engine} worker ended (exit status {self.proc.wait()})")
        return json.loads(line)

    def ask(self, line: str) -> dict:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def close(self) -> dict:
        bye = self.ask("quit")
        self.proc.wait(timeout=120)
        return bye


def _save(entry: dict, args) -> Path:
    """Put this scale's entry into results/indirect.json (replacing an earlier one of the scale)."""
    entry["loadavg_at_end"] = C.loadavg()
    out_dir = Path(args.results_dir) if args.results_dir else C.RESULTS
    path = out_dir / "indirect.json"
    doc = json.loads(path.read_text()) if path.exists() else {"name": "indirect", "kind": "indirect", "scales": []}
    doc["scales"] = [s for s in doc.get("scales", []) if s.get("scale") != args.scale] + [entry]
    doc["scales"].sort(key=lambda s: s["scale"])
    doc["date"] = entry["date"]
    C.write_result("indirect", doc, out_dir)
    return path


def pick_types(store: Path, count: int, seed: int) -> list[str]:
    import duckdb

    con = duckdb.connect(str(store), read_only=True)
    rows = con.execute("""
        SELECT n.type FROM segments n
        WHERE n.is_neuron AND n.type IS NOT NULL
          AND EXISTS (SELECT 1 FROM connections c WHERE c.body_pre = n.bodyId)
        GROUP BY n.type HAVING count(*) >= 2 ORDER BY n.type""").fetchall()
    con.close()
    names = [r[0] for r in rows]
    rng = np.random.default_rng(seed)
    return [str(t) for t in rng.choice(names, size=min(count, len(names)), replace=False)]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--hops", type=int, default=4)
    ap.add_argument("--results-dir", type=Path, default=None)
    ap.add_argument(
        "--sequential",
        nargs="*",
        choices=PARTNERS,
        default=[],
        help="partner sets whose engines run one after the other (not round-robin), so that "
        "their memory never adds up (the full-scale 'segments' run)",
    )
    ap.add_argument("--release-dir", type=Path, help="use this release (with --store-path) instead of the bench one")
    ap.add_argument("--store-path", type=Path, help="its store")
    ap.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    ap.add_argument("--release", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument(
        "--partners",
        choices=PARTNERS,
        nargs="+",
        default=list(PARTNERS),
        help="neurons: :Neuron partners only (the default of fetch_indirect); segments: every segment",
    )
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return {}
    machine = C.machine_facts()
    if args.release_dir and args.store_path:  # the tests' smoke run: a release and store made elsewhere
        store, release = args.store_path, args.release_dir
    else:
        store = C.ensure_store(args.scale, args.seed)
        release = C.release_dir(args.scale, args.seed)
    chosen = pick_types(store, args.repeat + 1, args.seed)
    types = {"warmup": chosen[0], "timed": chosen[1:]}
    entry = {
        "scale": args.scale,
        "seed": args.seed,
        "hops": args.hops,
        "date": C.now_iso(),
        "machine": machine,
        "types": types,
        "variants": {},
        "query": f"fetch_indirect(NC(type=T), targets, hops={args.hops}, groupby=('type', None), neurons_only=...)",
    }
    all_agree = True
    with tempfile.TemporaryDirectory(prefix="flatprint-indirect-") as scratch:
        for partners in args.partners:
            argv = [
                "--store",
                str(store),
                "--release",
                str(release),
                "--out",
                scratch,
                "--hops",
                str(args.hops),
                "--partners",
                partners,
            ]
            times = {e: [] for e in ENGINES}
            runs = {}

            def finish(engine, process):
                bye = process.close()
                runs[engine] = {
                    **process.ready,
                    **bye,
                    "query_s": times[engine],
                    "query_median_s": statistics.median(times[engine]),
                }
                print(
                    f"   {engine}: query median {runs[engine]['query_median_s'] * 1000:.1f} ms, peak RSS "
                    f"{runs[engine]['peak_rss_bytes'] / 2**30:.2f} GiB",
                    flush=True,
                )

            def start(engine):
                print(f"[indirect] scale {args.scale:g}, {partners} as partners: preparing {engine} ...", flush=True)
                process = Worker(engine, argv)
                print(f"   prepare {process.ready['prepare_s']:.2f} s", flush=True)
                process.ask(f"query warmup {types['warmup']}")
                return process

            if partners in args.sequential:  # one worker alive at a time: their memory never adds up
                for engine in ENGINES:
                    alone = start(engine)
                    for i, cell_type in enumerate(types["timed"]):
                        times[engine].append(alone.ask(f"query {i} {cell_type}")["seconds"])
                    finish(engine, alone)
            else:  # prepared one after the other, then asked round-robin, the order alternating
                workers = {engine: start(engine) for engine in ENGINES}
                for i, cell_type in enumerate(types["timed"]):
                    for engine in ENGINES if i % 2 == 0 else ENGINES[::-1]:
                        times[engine].append(workers[engine].ask(f"query {i} {cell_type}")["seconds"])
                for engine in ENGINES:
                    finish(engine, workers[engine])
            entry.setdefault("sequential", []).extend([partners] if partners in args.sequential else [])
            ids = {e: np.load(Path(scratch) / f"{partners}-{e}-ids.npy") for e in ENGINES}
            same_ids = bool(np.array_equal(ids["flatprint"], ids["scipy"]))
            agree, max_diff, reached = same_ids, 0.0, []
            for i in range(len(types["timed"])):
                a = np.load(Path(scratch) / f"{partners}-flatprint-{i}.npy")
                b = np.load(Path(scratch) / f"{partners}-scipy-{i}.npy")
                if a.shape != b.shape:
                    agree = False
                    continue
                agree &= bool(np.allclose(a, b, rtol=1e-9, atol=1e-15))
                max_diff = max(max_diff, float(np.abs(a - b).max()))
                reached.append(int(np.count_nonzero(a[-1])))
            entry["variants"][partners] = {
                "engines": runs,
                "answers_agree": agree,
                "neuron_sets_equal": same_ids,
                "max_abs_diff": max_diff,
                "neurons_reached_last_hop": reached,
            }
            print(f"[indirect] {partners}: answers agree: {agree} (max |diff| {max_diff:.2e})", flush=True)
            all_agree &= agree
            path = _save(entry, args)  # after each partner set: a long run keeps what it measured
    print(f"[indirect] wrote {path}")
    if not all_agree:
        raise SystemExit(1)
    return entry


if __name__ == "__main__":
    main()
