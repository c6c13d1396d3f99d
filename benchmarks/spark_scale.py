"""The distributed path at scale: Spark SQL (local mode) on a Parquet export of the store, beside flatprint.

    python benchmarks/spark_scale.py --scale 1.0 [--repeat 2] [--min-free-gb 10] [--keep-export]

Steps, each timed (wall and CPU seconds, peak RSS) with the load average beside it:

1. ``flatprint export parquet --tables`` of only what the chosen queries (``--queries``) read, in two
   parts so that the big one can be refused or stopped on its own: ``segments, connections, rois,
   roi_map`` (type x type matrix and 2-hop reach), then ``partners`` and ``synapses`` (ROI x ROI matrix:
   store format 4 keeps the ends' ROI labels only in ``synapses``), moved into the first directory. A
   watchdog stops an export that would take the free disk below ``--min-free-gb`` (the part and its
   query are then reported as not run, with the free space and the sizes that bound it); a part is not
   started when the estimate from the store's table sizes already does not fit.
2. flatprint's answers on the store (``connection_matrix('type')``, ``connection_matrix('roi')``,
   ``fetch_reach`` of 100 neurons, 2 hops downstream): first call on a fresh client, then ``--repeat``
   warm calls (median); this process's own peak RSS (VmHWM).
3. Spark: ``get_spark`` (local[N]) session start, then per query the first call (view registration,
   planning, JIT) and ``--repeat`` warm calls; matrices through ``flatprint.export.spark.run_spark``
   (flatprint.query.heavy's SQL transpiled by sqlglot), the reach as the Spark SQL below. The JVM's
   peak RSS is sampled (psutil, 0.2 s). Every Spark answer is compared whole with flatprint's.
4. The export is deleted (unless ``--keep-export``); its sizes stay in the result.

Writes ``benchmarks/results/spark-<scale>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import queries as Q  # noqa: E402

from flatprint import Client, NeuronCriteria as NC, connection_matrix, fetch_reach  # noqa: E402

SMALL_TABLES = ["segments", "connections", "rois", "roi_map"]
BIG_TABLES = ["partners", "synapses"]
QUERIES = ("matrix_type", "matrix_roi", "reach_2hops_100")
# Parquet bytes a row of the big tables, measured on the 0.01 store of format 4 (partners 22.4 MB for
# 3.12 M rows, synapses 66.5 MB for 3.58 M); their ORDER BY spills to disk beside them on top of that
PARQUET_BYTES_PER_ROW = {"partners": 7.2, "synapses": 18.6}


def reach_sql(seeds, hops: int = 2, min_weight: int = 1) -> str:
    """Neurons reached downstream from ``seeds`` within ``hops`` (``bodyId, hops``; the seeds at 0), over
    neuron-to-neuron connections of weight >= min_weight: fetch_reach's answer, in SQL that DuckDB and
    Spark both run unchanged."""
    ids = ", ".join(str(int(b)) for b in sorted(set(seeds)))
    ctes = [
        "n AS (SELECT bodyId FROM segments WHERE is_neuron)",
        "e AS (SELECT c.body_pre, c.body_post FROM connections c JOIN n a ON a.bodyId = c.body_pre "
        f"JOIN n b ON b.bodyId = c.body_post WHERE c.weight >= {int(min_weight)})",
        f"h0 AS (SELECT bodyId FROM n WHERE bodyId IN ({ids}))",
    ]
    # h_k: every neuron at the end of a walk of exactly k steps; the least such k is its distance
    ctes += [
        f"h{k} AS (SELECT DISTINCT e.body_post AS bodyId FROM e JOIN h{k - 1} f ON e.body_pre = f.bodyId)"
        for k in range(1, hops + 1)
    ]
    union = " UNION ALL ".join(f"SELECT bodyId, {k} AS hops FROM h{k}" for k in range(hops + 1))
    return f"WITH {', '.join(ctes)} SELECT bodyId, CAST(min(hops) AS BIGINT) AS hops FROM ({union}) r GROUP BY bodyId"


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def dir_bytes(path: Path) -> int:
    total = 0
    for f in Path(path).rglob("*"):
        try:
            total += f.stat().st_size if f.is_file() else 0
        except OSError:
            pass
    return total


def store_table_bytes(store: Path, tables) -> dict:
    """Estimated bytes of each table in the store (DuckDB's block counts), to predict the export's size."""
    import duckdb  # only here: the rest of this script reads the store through flatprint

    con = duckdb.connect(str(store), read_only=True)
    try:
        rows = con.execute(
            "SELECT table_name, estimated_size, column_count FROM duckdb_tables() WHERE table_name IN "
            f"({', '.join(repr(t) for t in tables)})"
        ).fetchall()
        blocks = con.execute("SELECT block_size FROM pragma_database_size()").fetchone()[0]
        per_table = {}
        for t in tables:
            seg = con.execute(
                f"SELECT count(DISTINCT block_id) FROM pragma_storage_info('{t}') WHERE block_id >= 0"
            ).fetchone()[0]
            per_table[t] = int(seg) * int(blocks)
        return {"rows": {r[0]: int(r[1]) for r in rows}, "bytes": per_table}
    finally:
        con.close()


def run_export(store: Path, out: Path, tables: list[str], memory_limit: str, min_free: int, log) -> dict:
    """``flatprint export parquet --tables`` in a child, timed; stopped when free disk falls below min_free."""
    cmd = [
        C.PYTHON,
        "-m",
        "flatprint.cli",
        "export",
        "parquet",
        str(store),
        str(out),
        "--tables",
        ",".join(tables),
        "--memory-limit",
        memory_limit,
    ]
    log("$ " + " ".join(cmd[2:]))
    load0 = C.loadavg()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lowest, peak_dir, stopped = free_bytes(out.parent), 0, None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        free = free_bytes(out.parent)
        lowest = min(lowest, free)
        peak_dir = max(peak_dir, sum(dir_bytes(p) for p in out.parent.glob(f".{out.name}.parquet-*")))
        if free < min_free and stopped is None:
            stopped = f"stopped: free disk {free / 1e9:.1f} GB < {min_free / 1e9:.0f} GB"
            log(stopped)
            proc.terminate()
        time.sleep(1.0)
    output = proc.stdout.read()
    code = os.waitstatus_to_exitcode(status)
    res = {
        "tables": tables,
        "wall_seconds": time.perf_counter() - started,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_bytes": usage.ru_maxrss * 1024,
        "lowest_free_disk_bytes": lowest,
        "peak_work_dir_bytes": peak_dir,
        "loadavg_before": load0,
        "loadavg_after": C.loadavg(),
        "exit_code": code,
        "output": output.strip().splitlines()[-8:],
    }
    if stopped or code != 0:
        res["failed"] = stopped or f"exit {code}"
        for p in out.parent.glob(f".{out.name}.parquet-*"):
            shutil.rmtree(p, ignore_errors=True)
    else:
        schema = json.loads((out / "_schema.json").read_text())
        res["table_sizes"] = {t: {"rows": v["rows"], "bytes": v["bytes"]} for t, v in schema["tables"].items()}
        res["bytes"] = dir_bytes(out)
    log(json.dumps({k: v for k, v in res.items() if k != "output"}, default=str))
    return res


def timed(fn, repeat: int):
    """(first result, first seconds, warm seconds list, first cpu seconds)."""
    t0, c0 = time.perf_counter(), time.process_time()
    first = fn()
    cold, cold_cpu = time.perf_counter() - t0, time.process_time() - c0
    warm = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        warm.append(time.perf_counter() - t0)
    return first, cold, warm, cold_cpu


def canonical(key: str, df: pd.DataFrame) -> pd.DataFrame:
    if key == "matrix":
        df = df.rename(columns={"pre_group": "pre", "post_group": "post"})
    return Q.normalise(key, df)


class JvmSampler:
    """Peak summed RSS and the CPU seconds of this process's children (the Spark JVM), sampled every
    ``period`` s."""

    def __init__(self, period: float = 0.2):
        import psutil  # optional, as in benchmarks/ingest.py

        self.me, self.peak, self.period = psutil.Process(), 0, period
        self.cpu: dict[int, float] = {}
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_event.wait(self.period):
            total = 0
            for p in self.me.children(recursive=True):
                try:
                    total += p.memory_info().rss
                    t = p.cpu_times()
                    self.cpu[p.pid] = t.user + t.system
                except Exception:  # noqa: BLE001 - a child gone between listing and reading
                    pass
            self.peak = max(self.peak, total)

    def stop(self) -> int:
        self.stop_event.set()
        self.thread.join(timeout=5)
        return self.peak


def flatprint_side(store: Path, seeds: list[int], repeat: int, log) -> tuple[dict, dict]:
    calls = {
        "matrix_type": ("matrix", lambda c: connection_matrix("type", client=c)),
        "matrix_roi": ("matrix", lambda c: connection_matrix("roi", client=c)),
        "reach_2hops_100": ("reach", lambda c: fetch_reach(NC(bodyId=seeds, client=c), "downstream", hops=2, client=c)),
    }
    out, answers = {}, {}
    for name, (key, fn) in calls.items():
        Q.reset_peak_rss()
        client = Client(store)
        load0 = C.loadavg()
        first, cold, warm, cold_cpu = timed(lambda fn=fn, client=client: fn(client), repeat)
        client.close()
        answers[name] = canonical(key, first)
        out[name] = {
            "rows": len(first),
            "first_s": cold,
            "first_cpu_s": cold_cpu,
            "warm_s": warm,
            "warm_median_s": statistics.median(warm) if warm else None,
            "peak_rss_bytes": Q.peak_rss_bytes(),
            "loadavg_before": load0,
        }
        log(f"flatprint {name}: {len(first):,} rows, first {cold:.1f} s, warm {warm}")
    return out, answers


def spark_side(parquet: Path, seeds, repeat, driver_memory, cores, local_dir, only, log) -> tuple[dict, dict]:
    # pyspark is optional: imported only when this step runs
    from flatprint.export.spark import collect_pandas, get_spark, register_parquet, run_spark

    sampler = JvmSampler()
    load0 = C.loadavg()
    t0 = time.perf_counter()
    spark = get_spark(
        app_name="flatprint-scale",
        cores=cores,
        driver_memory=driver_memory,
        shuffle_partitions=64,
        extra_conf={"spark.local.dir": str(local_dir)},
    )
    out = {"session_start_s": time.perf_counter() - t0, "loadavg_before": load0, "queries": {}}
    log(f"spark session: {out['session_start_s']:.1f} s")

    def reach():
        register_parquet(spark, parquet, ["segments", "connections"])
        return collect_pandas(spark.sql(reach_sql(seeds, 2)))

    calls = {
        "matrix_type": ("matrix", lambda: run_spark(parquet, "connection_matrix", spark=spark, groupby="type")),
        "matrix_roi": ("matrix", lambda: run_spark(parquet, "connection_matrix", spark=spark, groupby="roi")),
        "reach_2hops_100": ("reach", reach),
    }
    answers = {}
    try:
        for name, (key, fn) in calls.items():
            if name not in only:
                continue
            load_q = C.loadavg()
            cpu0 = sum(sampler.cpu.values())
            try:
                first, cold, warm, _ = timed(fn, repeat)
            except Exception as exc:  # one query's failure is recorded; the others and the export's figures stay
                out["queries"][name] = {"failed": f"{type(exc).__name__}: {str(exc).splitlines()[0][:400]}"}
                log(f"spark {name}: failed: {out['queries'][name]['failed']}")
                continue
            time.sleep(2 * sampler.period)  # one more sample of the JVM's CPU after the last call
            answers[name] = canonical(key, first)
            out["queries"][name] = {
                "rows": len(first),
                "first_s": cold,
                "warm_s": warm,
                "warm_median_s": statistics.median(warm) if warm else None,
                "loadavg_before": load_q,
                # the JVM's CPU over the first and the warm calls (sampled, so +- one period's worth)
                "jvm_cpu_seconds": sum(sampler.cpu.values()) - cpu0,
            }
            log(f"spark {name}: {len(first):,} rows, first {cold:.1f} s, warm {warm}")
    finally:
        spark.stop()
        out["jvm_peak_rss_bytes"] = sampler.stop()
        out["jvm_cpu_seconds"] = sum(sampler.cpu.values())
    return out, answers


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--store", type=Path, help="default: the bench store of --scale")
    ap.add_argument("--out", type=Path, help="export directory (default: beside the store)")
    ap.add_argument("--repeat", type=int, default=2, help="warm calls per query and engine")
    ap.add_argument("--min-free-gb", type=float, default=10.0, help="stop an export below this free disk")
    ap.add_argument("--export-memory-limit", default="4GB")
    ap.add_argument("--driver-memory", default="4g", help="Spark local-mode driver (= executor) memory")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--keep-export", action="store_true")
    ap.add_argument("--results-dir", type=Path, default=None)
    ap.add_argument(
        "--queries", nargs="+", choices=QUERIES, default=list(QUERIES), help="default: all (matrix_roi: the big part)"
    )
    args = ap.parse_args(argv)
    log = lambda *a: print(*a, flush=True)  # noqa: E731

    store = args.store or C.store_path(args.scale, args.seed)
    out = args.out or store.parent / f"parquet-spark-{args.scale:g}-seed{args.seed}"
    min_free = int(args.min_free_gb * 1e9)
    doc = {
        "name": f"spark-{args.scale:g}",
        "date": C.now_iso(),
        "machine": C.machine_facts(),
        "scale": args.scale,
        "store": str(store),
        "store_bytes": store.stat().st_size,
        "repeat": args.repeat,
        "min_free_disk_bytes": min_free,
        "free_disk_at_start_bytes": free_bytes(store.parent),
        "spark_conf": {"master": f"local[{args.cores}]", "driver_memory": args.driver_memory},
        "export": {},
    }
    estimate = store_table_bytes(store, SMALL_TABLES + BIG_TABLES)
    doc["store_tables"] = estimate
    client = Client(store)
    neurons = [r[0] for r in client.sql("SELECT bodyId FROM segments WHERE is_neuron ORDER BY bodyId")[1]]
    client.close()
    rng = np.random.default_rng(args.seed)  # the same 100 neurons as queries.py's reach_2hops_100 (first rep)
    seeds = sorted(int(b) for b in rng.choice(neurons, size=min(100, len(neurons)), replace=False))
    doc["seeds"] = seeds
    only = set(args.queries)
    doc["queries_chosen"] = sorted(only)
    with tempfile.TemporaryDirectory(prefix="spark-scale-", dir=store.parent) as tmp:
        tmp = Path(tmp)
        try:
            if out.exists():
                shutil.rmtree(out)
            doc["export"]["small"] = run_export(store, out, SMALL_TABLES, args.export_memory_limit, min_free, log)
            if doc["export"]["small"].get("failed"):
                raise SystemExit(f"export of {SMALL_TABLES} failed: {doc['export']['small']['failed']}")
            big_out = tmp / "big"
            free = free_bytes(store.parent)
            # the watchdog guards the sorts' spill; the estimate refuses what cannot fit at all
            need = int(sum(estimate["rows"].get(t, 0) * PARQUET_BYTES_PER_ROW[t] for t in BIG_TABLES))
            doc["export"]["big_parquet_estimate_bytes"] = need
            if "matrix_roi" not in only:
                doc["export"]["big"] = {"tables": BIG_TABLES, "failed": "not chosen (--queries)"}
                log("big part not exported: matrix_roi not chosen")
            elif free - need < min_free:
                doc["export"]["big"] = {
                    "tables": BIG_TABLES,
                    "failed": f"not started: {free / 1e9:.1f} GB free, the Parquet of {' and '.join(BIG_TABLES)} "
                    f"alone is estimated at {need / 1e9:.1f} GB, floor {min_free / 1e9:.0f} GB",
                }
                log(doc["export"]["big"]["failed"])
            else:
                doc["export"]["big"] = run_export(store, big_out, BIG_TABLES, args.export_memory_limit, min_free, log)
            if doc["export"]["big"].get("failed"):
                only.discard("matrix_roi")
            else:
                for t in BIG_TABLES:
                    shutil.move(str(big_out / t), str(out / t))
            doc["export"]["total_bytes"] = dir_bytes(out)
            doc["export"]["wall_seconds"] = sum(
                p.get("wall_seconds", 0) for p in doc["export"].values() if isinstance(p, dict)
            )
            C.write_result(doc["name"], doc, args.results_dir)

            fp, fp_answers = flatprint_side(store, seeds, args.repeat, log)
            doc["flatprint"] = fp
            C.write_result(doc["name"], doc, args.results_dir)
            local = tmp / "spark-local"
            local.mkdir()
            sp, sp_answers = spark_side(out, seeds, args.repeat, args.driver_memory, args.cores, local, only, log)
            doc["spark"] = sp
            doc["agree"] = {
                name: Q.compare_answers({"a": fp_answers[name]}, {"a": a}) for name, a in sp_answers.items()
            }
            doc["all_agree"] = all(v is None for v in doc["agree"].values())
            doc["not_run_on_spark"] = sorted(set(QUERIES) - set(sp_answers))
        finally:
            if not args.keep_export and out.exists():
                shutil.rmtree(out)
                doc["export"]["deleted"] = True
    doc.pop("loadavg_at_end", None)  # set by the intermediate writes; the final one records the end's
    path = C.write_result(doc["name"], doc, args.results_dir)
    log(f"wrote {path}; agree: {doc.get('agree')}")
    return doc


if __name__ == "__main__":
    main()
