"""Query benchmark: flatprint's library functions vs prepared expert baselines, side by side in one run.

    python benchmarks/queries.py --scale 0.1 [--repeat 5] [--seed 0] [--prepared-dir DIR]
        [--baseline-prepare auto|ram|stream]

For every workload item the same answer is computed by

* ``flatprint``: the library function on the DuckDB store (``Client(store)``);
* ``pandas`` / ``polars``: prepared tables in RAM (benchmarks/baselines.py): the :Neuron set, per-ROI
  counts, per-pair ROI weights, body-sorted synapse and weight tables, built once by a timed
  ``prepare()`` (reported beside flatprint's ingest), then binary search and group-bys per query.
  ``--baseline-prepare`` picks how they prepare: ``ram`` (every table, the synapse pairs included, from
  whole columns), ``stream`` (the neuron-level tables only, the big feathers read one record batch at a
  time; the synapse-level items are then "not run", with the number that bounds them) or ``auto`` (the
  default: ``ram`` when its projected peak fits in RSS_LIMIT_BYTES, else ``stream``; the result file
  records the mode and the projection under ``engines.<name>.load``);
* ``duckdb``: an in-memory DuckDB connection over the same tables written as Parquet sorted by body
  (and by post body) in small row groups, by its own timed ``prepare()``;
* ``graphdb``: the embedded graph database ladybug (a Kùzu fork) with a Neuron node table and
  neuron-to-neuron edges, answering in Cypher (its load is its prepare; see benchmarks/graphdb.py).

Each engine returns whole answer frames (ANSWER_COLUMNS); the cold run's frames of every baseline are
compared whole (sorted, dtype-normalised) with flatprint's: any difference is a failed cross-check (exit
status 1). A baseline that does not answer an item says why ("not run"), which is neither agreement
nor failure. Timing: per item the engines run round-robin; the first run of each is "cold" (fresh
client / connection / reopened database; the OS page cache is NOT dropped), then ``--repeat`` warm runs,
each on parameters drawn at random for that repetition (seeded, the same for every engine), whose
median is reported. Memory: every engine runs in its own worker process (driven over pipes), so each
one's peak RSS is its own; see RSS_METHOD. Prepared copies and answers go to ``--prepared-dir`` (a
temporary directory removed at the end unless given).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import baselines as B  # noqa: E402

UNSPEC = "<unspecified>"
NAMED = ["somaLocation", "class", "type", "instance", "group", "somaSide", "synonyms"]
ANN_COLS = ["bodyId", "status", *NAMED]
STATS_COLS = ["body", "pre", "post", "synweight"]
CONF = 0.5  # SynapseCriteria's default confidence (postHighAccuracyThreshold), strictly above
PATH_MIN_WEIGHT = 5
CELL_BUDGET_SECONDS = 90.0  # a baseline whose cold run exceeds this gets no warm repetitions

TARGETS_MS = {  # issue 17's full-scale ceilings, warm medians (indicative only at smaller scales)
    "neurons_by_type": 5,
    "adjacencies_100": 50,
    "synapse_connections_pair": 5,
    "shortest_paths_w5": 30,
    "matrix_type": 300,
    "matrix_roi": 50,
}


def table_files() -> dict[str, str]:
    from flatprint.release.tables import TABLES

    return {key: spec.filename for key, spec in TABLES.items()}


# =============================================================================== canonical answers
# Every engine returns, per item, a dict of whole frames with these columns (flatprint's result is cut
# down to them: extra neuPrint columns such as roiInfo have no counterpart in the baselines). The
# cross-check compares the FULL frames: sorted by every column, ints as int64, floats as float64, text as
# str with None for missing. A difference in any row or cell is a failure.
ANSWER_COLUMNS = {
    "neurons": B.NEURON_COLS,
    "rois": ["bodyId", "roi", "pre", "post"],
    "adjacency": ["bodyId_pre", "bodyId_post", "roi", "weight"],
    "synapses": B.SYN_COLS,
    "paths": ["path", "step", "bodyId"],
    "matrix": ["pre", "post", "weight", "connections"],
    "reach": ["bodyId", "hops"],
}


def normalise(key: str, df: pd.DataFrame) -> pd.DataFrame:
    """An answer frame in canonical form: its columns in order, dtypes unified, rows sorted."""
    cols = ANSWER_COLUMNS[key]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"answer {key!r} lacks columns {missing} (has {list(df.columns)})")
    out = {}
    for c in cols:
        s = df[c]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_integer_dtype(s):
            out[c] = s.to_numpy().astype(np.int64)
        elif pd.api.types.is_float_dtype(s) and c.startswith("confidence"):
            out[c] = s.to_numpy().astype(np.float64)
        elif pd.api.types.is_float_dtype(s) and s.notna().all() and (s == s.round()).all():
            out[c] = s.to_numpy().astype(np.int64)  # an integer column that went through a float (NULLs)
        else:
            v = s.astype(object).to_numpy()
            out[c] = np.array(
                [None if x is None or (isinstance(x, float) and np.isnan(x)) or x is pd.NA else str(x) for x in v],
                dtype=object,
            )
    df = pd.DataFrame(out, columns=cols)
    return df.sort_values(cols, na_position="first", kind="mergesort").reset_index(drop=True)


def compare_answers(a: dict, b: dict) -> str | None:
    """None when the two answers (dicts of canonical frames) are equal, else what differs."""
    if set(a) != set(b):
        return f"parts differ: {sorted(a)} vs {sorted(b)}"
    for key in a:
        x, y = a[key], b[key]
        if len(x) != len(y):
            return f"{key}: {len(x)} rows vs {len(y)}"
        if not x.equals(y):
            diff = ~((x == y) | (x.isna() & y.isna())).all(axis=1)
            i = int(np.flatnonzero(diff.to_numpy())[0])
            return f"{key}: row {i} differs: {x.iloc[i].to_dict()} vs {y.iloc[i].to_dict()}"
    return None


def summarize(answer: dict) -> dict:
    """Rows and a digest of every part of a canonical answer (what the result file records)."""
    out = {}
    for key, df in answer.items():
        rows = repr([tuple(r) for r in df.itertuples(index=False, name=None)])
        out[key] = {"rows": int(len(df)), "digest": hashlib.sha1(rows.encode()).hexdigest()[:16]}
    return out


def save_answer(answer: dict, folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, df in answer.items():
        paths[key] = str(folder / f"{key}.pkl")
        df.to_pickle(paths[key])
    return paths


def load_answer(paths: dict) -> dict:
    return {key: pd.read_pickle(p) for key, p in paths.items()}


# =============================================================================== flatprint
class FlatprintEngine:
    name = "flatprint"

    def __init__(self, store: Path):
        self.store = store
        self.client = None
        self.open_seconds = []
        self.reset()

    def reset(self):
        from flatprint import Client

        if self.client is not None:
            self.client.close()
        started = time.perf_counter()
        self.client = Client(self.store)
        self.open_seconds.append(time.perf_counter() - started)


def fp_neurons(nc_kwargs, roi_info=True, returned_columns="all"):
    def run(eng, p):
        from flatprint import NeuronCriteria as NC, fetch_neurons

        c = eng.client
        criteria = NC(client=c, **{k: p[v] for k, v in nc_kwargs.items()})
        return fetch_neurons(criteria, roi_info=roi_info, returned_columns=returned_columns, client=c)

    return run


def fp_neurons_answer(res, client):
    ndf, roi = res
    prim = roi[roi["roi"].isin(set(client.primary_rois))]
    return {"neurons": ndf, "rois": prim}


def fp_adjacencies(eng, p):
    from flatprint import NeuronCriteria as NC, fetch_adjacencies

    c = eng.client
    _, down = fetch_adjacencies(NC(bodyId=p["bodies"], client=c), None, client=c)
    _, up = fetch_adjacencies(None, NC(bodyId=p["bodies"], client=c), client=c)
    return [down, up]


def fp_adjacencies_segments(eng, p):
    from flatprint import NeuronCriteria as NC, fetch_adjacencies

    c = eng.client
    _, down = fetch_adjacencies(NC(bodyId=p["bodies"], client=c), NC(label="Segment", client=c), client=c)
    _, up = fetch_adjacencies(NC(label="Segment", client=c), NC(bodyId=p["bodies"], client=c), client=c)
    return [down, up]


def fp_synapse_pair(eng, p):
    from flatprint import NeuronCriteria as NC, fetch_synapse_connections

    c = eng.client
    return fetch_synapse_connections(
        NC(bodyId=bodies(p["pre"]), client=c), NC(bodyId=bodies(p["post"]), client=c), client=c
    )


def bodies(value) -> list[int]:
    """A body id or a list of them, as a list (the pair item passes one each, the types item lists)."""
    return [int(b) for b in value] if isinstance(value, (list, tuple)) else [int(value)]


def fp_shortest_paths(eng, p):
    from flatprint import fetch_shortest_paths

    return fetch_shortest_paths(p["src"], p["dst"], min_weight=PATH_MIN_WEIGHT, timeout=600, client=eng.client)


def paths_of(df):
    return [grp["bodyId"].tolist() for _, grp in df.groupby("path")] if len(df) else []


def fp_matrix(groupby):
    def run(eng, p):
        from flatprint import connection_matrix

        return connection_matrix(groupby, client=eng.client)

    return run


def fp_reach(eng, p):
    from flatprint import NeuronCriteria as NC, fetch_reach

    c = eng.client
    return fetch_reach(NC(bodyId=p["bodies"], client=c), "downstream", hops=p["hops"], client=c)


# =============================================================================== the workload
def workload():
    """(name, description, flatprint fn, flatprint result -> answer dict, baseline method)."""
    adj = lambda r, c: {"adjacency": pd.concat(r, ignore_index=True)}  # noqa: E731
    mat = lambda r, c: {"matrix": r}  # noqa: E731
    return [
        (
            "neurons_by_type",
            "fetch_neurons(NC(type=T)) with per-ROI counts",
            fp_neurons({"type": "type"}),
            fp_neurons_answer,
            "neurons_by_type",
        ),
        (
            "neurons_by_regex",
            "fetch_neurons(NC(type=regex))",
            fp_neurons({"type": "regex"}),
            fp_neurons_answer,
            "neurons_by_regex",
        ),
        (
            "neurons_by_regex_columns",
            "fetch_neurons(NC(type=regex), roi_info=False, returned_columns=the baselines' six): the neuron "
            "columns the baselines return, without the roiInfo maps (one Python dict per neuron and ROI)",
            fp_neurons({"type": "regex"}, roi_info=False, returned_columns=B.NEURON_COLS),
            fp_neurons_answer,
            "neurons_by_regex",
        ),
        (
            "neurons_by_roi",
            "fetch_neurons(NC(rois=[R])) (any synapse in R)",
            fp_neurons({"rois": "roi"}),
            fp_neurons_answer,
            "neurons_by_roi",
        ),
        (
            "neurons_by_roi_lean",
            "fetch_neurons(NC(rois=[R]), roi_info=False): the same frames without the roiInfo maps, "
            "which no baseline builds",
            fp_neurons({"rois": "roi"}, roi_info=False),
            fp_neurons_answer,
            "neurons_by_roi",
        ),
        (
            "neurons_by_roi_columns",
            "fetch_neurons(NC(rois=[R]), roi_info=False, returned_columns=the baselines' six): the neuron "
            "columns the baselines return; the ROI rows still cover every ROI (the baselines': primary only)",
            fp_neurons({"rois": "roi"}, roi_info=False, returned_columns=B.NEURON_COLS),
            fp_neurons_answer,
            "neurons_by_roi",
        ),
        (
            "adjacencies_1",
            "fetch_adjacencies of 1 neuron, both directions, per ROI",
            fp_adjacencies,
            adj,
            "adjacencies",
        ),
        (
            "adjacencies_100",
            "fetch_adjacencies of 100 neurons, both directions, per ROI",
            fp_adjacencies,
            adj,
            "adjacencies",
        ),
        (
            "adjacencies_1000",
            "fetch_adjacencies of 1000 neurons, both directions, per ROI",
            fp_adjacencies,
            adj,
            "adjacencies",
        ),
        (
            "adjacencies_segments_100",
            "fetch_adjacencies of 100 neurons with every Segment as partner "
            "(NC(label='Segment')), both directions, per ROI",
            fp_adjacencies_segments,
            adj,
            "adjacencies_segments",
        ),
        (
            "synapse_connections_pair",
            "fetch_synapse_connections of the strongest neuron pair",
            fp_synapse_pair,
            lambda r, c: {"synapses": r},
            "synapse_pair",
        ),
        (
            "synapse_connections_types",
            "fetch_synapse_connections between the neurons of two types (those of the strongest pair)",
            fp_synapse_pair,
            lambda r, c: {"synapses": r},
            "synapse_pair",
        ),
        (
            "shortest_paths_w5",
            "fetch_shortest_paths(a, b, min_weight=5), intermediates Traced",
            fp_shortest_paths,
            lambda r, c: {"paths": B.paths_frame(paths_of(r))},
            "shortest_paths",
        ),
        ("matrix_type", "connection_matrix('type'), neurons only", fp_matrix("type"), mat, "matrix_type"),
        (
            "matrix_roi",
            "connection_matrix('roi'): synapse pairs by primary ROI of pre and post point",
            fp_matrix("roi"),
            mat,
            "matrix_roi",
        ),
        (
            "reach_2hops_100",
            "fetch_reach of 100 neurons, 2 hops downstream, weight >= 1, neurons only",
            fp_reach,
            lambda r, c: {"reach": r},
            "reach",
        ),
    ]


def choose_parameters(client, seed: int, log=print) -> dict:
    """Query parameters picked from the store (not timed)."""
    from flatprint import fetch_shortest_paths

    rng = np.random.default_rng(seed)
    neurons = [r[0] for r in client.sql("SELECT bodyId FROM segments WHERE is_neuron ORDER BY bodyId")[1]]
    hundred = sorted(int(b) for b in rng.choice(neurons, size=min(100, len(neurons)), replace=False))
    # its own generator, so that adding this sample left the other parameters as they were
    thousand = sorted(
        int(b) for b in np.random.default_rng([seed, 1000]).choice(neurons, size=min(1000, len(neurons)), replace=False)
    )
    one = 12781 if 12781 in set(neurons) else neurons[0]
    primary = client.primary_rois
    roi = "GNG" if "GNG" in primary else primary[0]
    a, b, w = client.sql("""SELECT c.body_pre, c.body_post, c.weight FROM connections c
        JOIN segments a ON a.bodyId = c.body_pre AND a.is_neuron
        JOIN segments b ON b.bodyId = c.body_post AND b.is_neuron
        WHERE c.body_pre <> c.body_post ORDER BY c.weight DESC, 1, 2 LIMIT 1""")[1][0]
    # shortest paths: from the DNge104_R neuron to the first sampled typed, Traced neuron >= 3 hops away
    cands = [
        r[0]
        for r in client.sql(
            "SELECT bodyId FROM segments WHERE is_neuron AND type IS NOT NULL AND status = 'Traced' ORDER BY bodyId"
        )[1]
    ]
    cands = [int(x) for x in rng.permutation(cands)[:40] if int(x) != one]
    best = None
    for dst in cands:
        df = fetch_shortest_paths(one, dst, min_weight=PATH_MIN_WEIGHT, timeout=600, client=client)
        if len(df) == 0:
            continue
        length = int(df.groupby("path").size().iloc[0]) - 1
        key = (length, df["path"].nunique())
        if best is None or key > best[0]:
            best = (key, dst)
        if length >= 3:
            break
    if best is None:
        best = ((0, 0), cands[0])
    type_a, type_b = (client.sql(f"SELECT type FROM segments WHERE bodyId = {int(x)}")[1][0][0] for x in (a, b))

    def of_type(t):
        return (
            [
                int(r[0])
                for r in client.sql("SELECT bodyId FROM segments WHERE is_neuron AND type = ? ORDER BY bodyId", [t])[1]
            ]
            if t
            else []
        )

    types = {
        "pre": of_type(type_a) or [int(a)],
        "post": of_type(type_b) or [int(b)],
        "pre_type": type_a,
        "post_type": type_b,
    }
    params = {
        "type": "DNge104",
        "regex": "DNg.*",
        "roi": roi,
        "one": [one],
        "hundred": hundred,
        "thousand": thousand,
        "pair": {"pre": int(a), "post": int(b), "weight": int(w)},
        "types": types,
        "path": {"src": one, "dst": best[1], "length": best[0][0], "paths": best[0][1]},
    }
    # Per-repetition parameters (seeded): repetition r of an item uses draws[r] (r = 0 is the cold run).
    types = [
        r[0]
        for r in client.sql(
            "SELECT type FROM segments WHERE is_neuron AND type IS NOT NULL GROUP BY type ORDER BY type"
        )[1]
    ]
    strong = [
        [int(x), int(y)]
        for x, y in client.sql("""SELECT c.body_pre, c.body_post FROM connections c
        JOIN segments a ON a.bodyId = c.body_pre AND a.is_neuron
        JOIN segments b ON b.bodyId = c.body_post AND b.is_neuron
        WHERE c.body_pre <> c.body_post ORDER BY c.weight DESC, 1, 2 LIMIT 50""")[1]
    ]
    draw_rng = np.random.default_rng([seed, 17])
    params["draws"] = [
        {
            "type": params["type"] if r == 0 else str(types[draw_rng.integers(len(types))]),
            "roi": roi if r == 0 else str(primary[draw_rng.integers(len(primary))]),
            "one": [one] if r == 0 else [int(draw_rng.choice(neurons))],
            "hundred": hundred
            if r == 0
            else sorted(int(b) for b in draw_rng.choice(neurons, min(100, len(neurons)), replace=False)),
            "thousand": thousand
            if r == 0
            else sorted(int(b) for b in draw_rng.choice(neurons, min(1000, len(neurons)), replace=False)),
            "pair": params["pair"] if r == 0 else dict(zip(("pre", "post"), strong[draw_rng.integers(len(strong))])),
        }
        for r in range(DRAWS)
    ]
    log(
        f"parameters: type={params['type']} regex={params['regex']} roi={roi} one={one} "
        f"pair={params['pair']} path={params['path']}"
    )
    return params


DRAWS = 64  # parameter sets drawn per item; repetition r uses set r % DRAWS


def query_params(name: str, params: dict, rep: int = 0) -> dict:
    """The item's parameters at repetition ``rep`` (0: the cold run, the fixed, documented choice)."""
    d = params.get("draws", [{}])[rep % len(params.get("draws", [{}]))] if rep else {}
    params = {**params, **d}
    return {
        "neurons_by_type": {"type": params["type"]},
        "neurons_by_regex": {"regex": params["regex"]},
        "neurons_by_regex_columns": {"regex": params["regex"]},
        "neurons_by_roi": {"roi": params["roi"]},
        "neurons_by_roi_lean": {"roi": params["roi"]},
        "neurons_by_roi_columns": {"roi": params["roi"]},
        "adjacencies_1": {"bodies": params["one"]},
        "adjacencies_100": {"bodies": params["hundred"]},
        "adjacencies_1000": {"bodies": params["thousand"]},
        "adjacencies_segments_100": {"bodies": params["hundred"]},
        "synapse_connections_pair": {"pre": bodies(params["pair"]["pre"]), "post": bodies(params["pair"]["post"])},
        "synapse_connections_types": params["types"],
        "shortest_paths_w5": {"src": params["path"]["src"], "dst": params["path"]["dst"]},
        "matrix_type": {},
        "matrix_roi": {},
        "reach_2hops_100": {"bodies": params["hundred"], "hops": 2},
    }[name]


def reported_params(p: dict) -> dict:
    """The item's parameters as the result file records them: long id lists as their length."""
    if len(str(p)) < 400:
        return p
    return {k: f"{len(v)} ids" if isinstance(v, list) else v for k, v in p.items()}


def _timed(fn):
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


# =============================================================================== memory measurement
RSS_LIMIT_BYTES = B.MEMORY_LIMIT_BYTES  # 20 GiB: a baseline that would need more is reported as OOM, not run
RSS_METHOD = (
    "each engine runs in its own worker process; peak RSS is the kernel's high-water mark of that "
    "process (VmHWM in /proc/<pid>/status), reset to the current RSS before each workload item "
    "(write '5' to /proc/self/clear_refs) so that every item gets its own peak; the engine's peak "
    "is the largest of them (load included). A watchdog samples every worker's RSS every 50 ms and "
    f"kills one that passes {RSS_LIMIT_BYTES / 2**30:g} GiB (reported as OOM, not run)"
)


def _status_kib(field: str, pid: str | int = "self") -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def peak_rss_bytes() -> int | None:
    """This process's own RSS high-water mark (VmHWM; falls back to ru_maxrss)."""
    kib = _status_kib("VmHWM")
    if kib is None:
        import resource

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib * 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


# =============================================================================== engine workers
ENGINES = ("flatprint", "pandas", "polars", "duckdb", "graphdb")
ENGINE_LABELS = {
    "flatprint": "flatprint (DuckDB store)",
    "pandas": "pandas in RAM (prepared)",
    "polars": "polars in RAM (prepared)",
    "duckdb": "DuckDB on sorted Parquet (prepared)",
    "graphdb": "graph DB (ladybug, Cypher)",
}
REQUEST_TIMEOUT_S = 1800.0
PREPARE_TIMEOUT_S = 4 * 3600.0  # a baseline's one-time prepare (the streamed one reads ~22 GB at scale 1.0)


def make_engine(name: str, ctx: dict):
    if name == "flatprint":
        return FlatprintEngine(Path(ctx["store"]))
    if name == "pandas":
        return B.PandasEngine(Path(ctx["release"]), mode=ctx.get("baseline_prepare", "auto"))
    if name == "polars":
        return B.PolarsEngine(Path(ctx["release"]), mode=ctx.get("baseline_prepare", "auto"))
    if name == "duckdb":
        return B.DuckDBEngine(Path(ctx["release"]), Path(ctx["prepared_dir"]) / "duckdb-parquet")
    if name == "graphdb":
        from graphdb import GraphDBEngine

        return GraphDBEngine(Path(ctx["release"]), Path(ctx["graph_dir"]), mode=ctx.get("baseline_prepare", "auto"))
    raise ValueError(f"unknown engine {name!r}")


def run_item(name: str, eng, item, p: dict, cold: bool, answer_dir: Path | None) -> dict:
    """One timed run of one workload item by one engine (inside its worker); the answer saved when cold."""
    from graphdb import NotRun

    qname, _, fp_fn, fp_ans, method = item
    if cold and name in ("flatprint", "duckdb", "graphdb"):
        eng.reset()  # fresh client / connection / database for the cold run
    gc.collect()
    out = {}
    try:
        if name == "flatprint":
            t, res = _timed(lambda: fp_fn(eng, p))
            answer = fp_ans(res, eng.client) if cold else None
        else:
            t, res = _timed(lambda: getattr(eng, method)(p))
            answer = res if cold else None
        del res
        out["t"] = t
        if answer is not None:
            answer = {k: normalise(k, df) for k, df in answer.items()}
            out["answer"] = summarize(answer)
            if answer_dir is not None:
                out["answer_files"] = save_answer(answer, answer_dir / name / qname)
    except NotRun as exc:
        out["not_run"] = str(exc)
    except MemoryError as exc:
        out["not_run"] = f"OOM: {exc}"
    except Exception as exc:  # noqa: BLE001 - reported, the other engines go on
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def _versions(name: str, eng) -> dict:
    if name == "graphdb":
        return {"package": eng.package, "version": eng.version}
    mod = {"flatprint": "flatprint", "pandas": "pandas", "polars": "polars", "duckdb": "duckdb"}[name]
    return {"package": mod, "version": getattr(__import__(mod), "__version__", "?")}


def worker_main(name: str, ctx: dict) -> None:
    """Serve run requests for one engine: JSON lines on stdin, one JSON reply line each on stdout."""
    import json

    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else printed goes to stderr
    sys.stdout = sys.stderr

    def send(obj):
        proto.write(json.dumps(obj, default=C._jsonable) + "\n")
        proto.flush()

    try:
        reset_peak_rss()
        started = time.perf_counter()
        eng = make_engine(name, ctx)
        hello = {"ready": True, "init_s": time.perf_counter() - started, **_versions(name, eng)}
        if name in ("pandas", "polars"):  # the streamed prepare's progress, on the harness's terminal
            eng.log = lambda *a: print(*a, file=sys.stderr, flush=True)
        if name != "flatprint":  # the baseline's one-time preparation, timed
            info = eng.load() if name == "graphdb" else B.timed_prepare(eng)
            hello["load"] = info
            hello["load_s"] = info["seconds"]
        hello["init_peak_rss_bytes"] = peak_rss_bytes()
        hello["rss_after_init_bytes"] = (_status_kib("VmRSS") or 0) * 1024
        send(hello)
    except Exception as exc:  # noqa: BLE001
        send({"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return
    items = {w[0]: w for w in workload()}
    overall = hello["init_peak_rss_bytes"]
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["op"] == "exit":
            send({"peak_rss_bytes": max(overall, peak_rss_bytes())})
            break
        reset_peak_rss()
        reply = run_item(
            name,
            eng,
            items[msg["name"]],
            msg["params"],
            msg["cold"],
            Path(ctx["answer_dir"]) if ctx.get("answer_dir") else None,
        )
        reply["peak_rss_bytes"] = peak_rss_bytes()
        overall = max(overall, reply["peak_rss_bytes"])
        send(reply)
    if name == "graphdb":
        eng.close()
    elif name == "flatprint":
        eng.client.close()
    elif name == "duckdb" and eng.con is not None:
        eng.con.close()


class Worker:
    """One engine in its own process (so that its memory is its own), driven over pipes."""

    def __init__(self, name: str, ctx: dict, log=print):
        import json
        import subprocess

        self.name, self.log, self.json = name, log, json
        self.killed_for = None
        self.peak_sampled = 0
        self.proc = subprocess.Popen(
            [C.PYTHON, str(Path(__file__).resolve()), "--worker", name, "--ctx", json.dumps(ctx)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.hello = self._reply(PREPARE_TIMEOUT_S) or {"ready": False, "error": self._death()}
        self.alive = bool(self.hello.get("ready"))

    def _death(self) -> str:
        if self.killed_for:
            return self.killed_for
        code = self.proc.poll()
        if code is not None and code < 0:
            return f"worker died by signal {-code}" + (" (likely the kernel's OOM killer)" if code == -9 else "")
        return f"worker exited (code {code})"

    def _reply(self, timeout: float) -> dict | None:
        import select

        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.killed_for = f"no answer within {timeout:.0f} s: killed"
            self.kill()
            return None
        line = self.proc.stdout.readline()
        return self.json.loads(line) if line else None

    def request(self, msg: dict, timeout: float = REQUEST_TIMEOUT_S) -> dict:
        if not self.alive:
            return {"dead": self._death()}
        try:
            self.proc.stdin.write(self.json.dumps(msg, default=C._jsonable) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        reply = self._reply(timeout)
        if reply is None:
            self.alive = False
            try:
                self.proc.wait(timeout=30)
            except Exception:  # noqa: BLE001
                pass
            return {"dead": self._death()}
        return reply

    def rss(self) -> int:
        kib = _status_kib("VmRSS", self.proc.pid)
        return (kib or 0) * 1024

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()

    def close(self) -> dict:
        out = self.request({"op": "exit"}, timeout=120) if self.alive else {}
        self.alive = False
        try:
            self.proc.wait(timeout=60)
        except Exception:  # noqa: BLE001
            self.kill()
        return out


class Watchdog:
    """Samples every worker's RSS every 50 ms; kills one that passes the limit (reported as OOM)."""

    def __init__(self, workers: dict, limit: int = RSS_LIMIT_BYTES, period: float = 0.05):
        import threading

        self.workers, self.limit, self.period = workers, limit, period
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_event.wait(self.period):
            for w in list(self.workers.values()):
                if w.proc.poll() is not None:
                    continue
                rss = w.rss()
                w.peak_sampled = max(w.peak_sampled, rss)
                if rss > self.limit:
                    w.killed_for = (
                        f"OOM: RSS passed {self.limit / 2**30:g} GiB ({rss / 2**30:.1f} GiB), killed; not run"
                    )
                    w.kill()

    def stop(self):
        self.stop_event.set()
        self.thread.join(timeout=5)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--repeat", type=int, default=5, help="warm repetitions per engine (default 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", help="run only these query names")
    ap.add_argument(
        "--engines",
        nargs="*",
        default=["pandas", "polars", "duckdb", "graphdb"],
        help="baselines to run (flatprint always runs)",
    )
    ap.add_argument("--release", type=Path, help="use this release instead of $FLATPRINT_HOME/bench's")
    ap.add_argument("--store", type=Path, help="use this store (must be ingested from --release)")
    ap.add_argument("--graph-dir", type=Path, help="where the graph DB is built (default: in --prepared-dir)")
    ap.add_argument(
        "--baseline-prepare",
        choices=B.PREPARE_MODES,
        default="auto",
        help="how pandas, polars and the graph DB prepare: ram (from whole columns; pandas and polars keep "
        "the synapse rows), stream (neuron-level tables from the feathers batch by batch; synapse-level items "
        "not run) or auto (ram when its projected peak fits in the RSS limit; default)",
    )
    ap.add_argument(
        "--prepared-dir",
        type=Path,
        help="where the baselines write their prepared copies and the answers compared "
        "(default: a new temporary directory, removed at the end)",
    )
    ap.add_argument("--results-dir", type=Path, default=None)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--ctx", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        import json

        worker_main(args.worker, json.loads(args.ctx))
        return {}
    log = lambda *a: print(*a, flush=True)  # noqa: E731

    doc = {
        "name": "queries",
        "date": C.now_iso(),
        "machine": C.machine_facts(),
        "scale": args.scale,
        "seed": args.seed,
        "repeat": args.repeat,
        "targets_ms": TARGETS_MS,
        "rss_method": RSS_METHOD,
        "rss_limit_bytes": RSS_LIMIT_BYTES,
    }
    if args.release:
        release = args.release
    else:
        release, _, _ = C.ensure_release(args.scale, args.seed, log)
    store = args.store or C.store_path(args.scale, args.seed)
    if not args.store:
        C.wait_for_other_ingest(store, log)
    if not args.store and not C.store_is_fresh(store, release):
        from flatprint.ingest import ingest_release

        log(f"ingesting {release} into {store} (not timed) ...")
        ingest_release(release, store, force=True, progress=False)
    import shutil
    import tempfile

    own_prepared = args.prepared_dir is None
    prepared = Path(tempfile.mkdtemp(prefix="flatprint-bench-prepared-")) if own_prepared else args.prepared_dir
    try:
        return _main(args, doc, release, store, prepared, log)
    finally:
        if own_prepared:
            shutil.rmtree(prepared, ignore_errors=True)


def _main(args, doc, release, store, prepared: Path, log) -> dict:
    graph_dir = args.graph_dir or prepared / "graphdb"
    engine_names = ["flatprint"] + [e for e in ENGINES if e in args.engines and e != "flatprint"]
    doc.update({"release": str(release), "store": str(store), "graph_dir": str(graph_dir)})

    from flatprint import Client

    client = Client(store)
    try:
        params = choose_parameters(client, args.seed, log)
    finally:
        client.close()
    doc["parameters"] = {k: v for k, v in params.items() if k != "draws"}
    doc["parameters"]["per_repetition"] = (
        f"repetition r >= 1 draws its own parameters (seed [{args.seed}, 17]): "
        "a random type, primary ROI, 1/100/1000 neurons, one of the 50 "
        "strongest neuron pairs; the cold run (r = 0) uses the ones above"
    )
    ctx = {
        "release": str(release),
        "store": str(store),
        "prepared_dir": str(prepared),
        "graph_dir": str(graph_dir),
        "answer_dir": str(prepared / "answers"),
        "baseline_prepare": args.baseline_prepare,
    }
    # One baseline at a time beside flatprint (a pass each): the prepared baselines hold their tables in
    # RAM, and several of them at once would not fit beside the other jobs of a shared machine.
    info, results, all_agree = {}, None, True
    for base in [e for e in engine_names if e != "flatprint"] or [None]:
        pass_results, agree = _run_pass(["flatprint"] + ([base] if base else []), ctx, params, args, info, log)
        all_agree = all_agree and agree
        results = pass_results if results is None else _merge_pass(results, pass_results, base)
    doc["engines"] = info
    doc["flatprint_open_seconds"] = info["flatprint"].get("init_s")
    doc["results"] = results
    doc["all_baselines_agree"] = all_agree
    path = C.write_result("queries", doc, args.results_dir)
    log(f"wrote {path}; all baselines agree with flatprint: {all_agree}")
    if not all_agree and __name__ == "__main__":
        raise SystemExit(1)
    return doc


def _run_pass(names: list, ctx: dict, params: dict, args, info: dict, log) -> tuple[list, bool]:
    """Start the workers of ``names`` (each one's prepare timed), run the workload, close them."""
    workers: dict[str, Worker] = {}
    dog = Watchdog(workers)
    try:
        for ename in names:
            log(f"starting the {ename} worker" + (" (prepares; timed)" if ename != "flatprint" else ""))
            w = Worker(ename, ctx, log)
            workers[ename] = w
            h = dict(w.hello)
            if ename not in info:
                info[ename] = {
                    k: h[k]
                    for k in (
                        "package",
                        "version",
                        "init_s",
                        "load_s",
                        "load",
                        "init_peak_rss_bytes",
                        "rss_after_init_bytes",
                        "error",
                    )
                    if k in h
                }
                info[ename]["label"] = ENGINE_LABELS[ename]
            if "load_s" in h:
                log(
                    f"   {ename} prepared in {h['load_s']:.1f} s, peak RSS {h['init_peak_rss_bytes'] / 2**30:.2f} GiB, "
                    f"resident {h['rss_after_init_bytes'] / 2**30:.2f} GiB, "
                    f"disk {h['load'].get('disk_bytes', 0) / 2**20:.0f} MiB: {h['load']['counts']}"
                    + (f" (prepare mode {h['load']['mode']})" if "mode" in h["load"] else "")
                )
            elif not w.alive:
                log(f"   {ename} worker failed: {h.get('error') or w._death()}")
                info[ename]["error"] = h.get("error") or w._death()
        return run_workload(workers, params, args, log)
    finally:
        dog.stop()
        for ename, w in workers.items():
            bye = w.close()
            peak = bye.get("peak_rss_bytes") or 0
            info[ename]["peak_rss_bytes"] = max(info[ename].get("peak_rss_bytes") or 0, peak) or None
            info[ename]["peak_rss_sampled_bytes"] = max(info[ename].get("peak_rss_sampled_bytes") or 0, w.peak_sampled)
            if w.killed_for:
                info[ename]["killed"] = w.killed_for


def _merge_pass(results: list, more: list, base: str) -> list:
    """Add one pass's baseline cells to the rows; flatprint's warm runs of every pass are pooled (its
    median over all passes is reported; each ratio uses the flatprint runs of the baseline's own pass)."""
    by_name = {r["name"]: r for r in more}
    for r in results:
        m = by_name.get(r["name"])
        if m is None:
            continue
        r["engines"][base] = m["engines"][base]
        fp, fp2 = r["engines"]["flatprint"], m["engines"]["flatprint"]
        fp["warm_runs_s"] = fp["warm_runs_s"] + fp2["warm_runs_s"]
        fp["warm_median_s"] = C.median(fp["warm_runs_s"])
        fp["n_warm"] = len(fp["warm_runs_s"])
        fp["cold_runs_s"] = fp.get("cold_runs_s", [fp["cold_s"]]) + [fp2["cold_s"]]
        fp["peak_rss_bytes"] = max(fp.get("peak_rss_bytes") or 0, fp2.get("peak_rss_bytes") or 0) or None
    return results


def run_workload(workers: dict, params: dict, args, log) -> tuple[list, bool]:
    """Round-robin over the engines within each repetition; the first repetition is the cold run.

    Repetition r runs every engine on the same parameters (drawn per repetition). The cold run's full
    answers are compared, frame by frame, with flatprint's (``compare_answers``)."""
    results = []
    all_agree = True
    for name, desc, _fp_fn, _fp_ans, _method in workload():
        if args.only and name not in args.only:
            continue
        p = query_params(name, params)
        log(f"== {name}: {desc}")
        times = {e: [] for e in workers}
        answers, files, errors, not_run, rss = {}, {}, {}, {}, {e: [] for e in workers}
        for rep in range(args.repeat + 1):  # rep 0 = cold
            p_rep = query_params(name, params, rep)
            for ename, w in workers.items():
                if (
                    ename in errors
                    or ename in not_run
                    or (rep > 0 and times[ename] and times[ename][0] > CELL_BUDGET_SECONDS)
                ):
                    continue
                reply = w.request({"op": "run", "name": name, "params": p_rep, "cold": rep == 0})
                if "dead" in reply:
                    if reply["dead"].startswith("OOM"):
                        not_run[ename] = reply["dead"]
                    else:
                        errors[ename] = reply["dead"]
                    log(f"   {ename}: {reply['dead']}")
                    continue
                if reply.get("peak_rss_bytes"):
                    rss[ename].append(reply["peak_rss_bytes"])
                if "not_run" in reply:
                    not_run[ename] = reply["not_run"]
                    continue
                if "error" in reply:
                    errors[ename] = reply["error"]
                    log(f"   {ename} failed: {errors[ename]}")
                    continue
                if rep == 0:
                    answers[ename] = reply.get("answer")
                    files[ename] = reply.get("answer_files")
                times[ename].append(reply["t"])
        row = {
            "name": name,
            "description": desc,
            "params": reported_params(p),
            "answer": answers.get("flatprint"),
            "engines": {},
        }
        fp_warm = C.median(times["flatprint"][1:]) if len(times["flatprint"]) > 1 else None
        fp_answer = load_answer(files["flatprint"]) if files.get("flatprint") else None
        for ename in workers:
            ts = times[ename]
            cell = {
                "cold_s": ts[0] if ts else None,
                "warm_median_s": C.median(ts[1:]) if len(ts) > 1 else None,
                "warm_runs_s": ts[1:],
                "n_warm": max(len(ts) - 1, 0),
                "peak_rss_bytes": max(rss[ename]) if rss[ename] else None,
            }
            if ename in errors:
                cell["error"] = errors[ename]
            if ename in not_run:
                cell["not_run"] = not_run[ename]
            if ename != "flatprint":
                if ename in not_run:
                    cell["agrees_with_flatprint"] = None  # not run: neither agreement nor failure
                else:
                    if ename in errors or not files.get(ename) or fp_answer is None:
                        diff = errors.get(ename) or "no answer to compare"
                    else:
                        diff = compare_answers(fp_answer, load_answer(files[ename]))
                    cell["agrees_with_flatprint"] = diff is None
                    if diff is not None:
                        all_agree = False
                        cell["answer"] = answers.get(ename)
                        cell["difference"] = diff
                        log(f"   !! {ename} disagrees with flatprint: {diff}")
                if fp_warm and cell.get("warm_median_s") is not None:
                    cell["ratio"] = cell["warm_median_s"] / fp_warm
            row["engines"][ename] = cell
        results.append(row)

        def fmt(e, c):
            if "not_run" in c:
                return f"{e}=not run"
            v = c.get("warm_median_s")
            return (f"{e}={1000 * v:.1f}ms" if v is not None else f"{e}=–") + (
                "" if c.get("agrees_with_flatprint", True) in (True, None) else " DISAGREES"
            )

        log("   " + "  ".join(fmt(e, c) for e, c in row["engines"].items()))
    return results, all_agree


if __name__ == "__main__":
    main()
