"""Query benchmark: flatprint's library functions vs what users do today, side by side in one run.

    python benchmarks/queries.py --scale 0.1 [--repeat 5] [--seed 0]

For every workload query the same answer is computed by

* ``flatprint``: the library function on the DuckDB store (``Client(store)``);
* ``pandas``: ``pd.read_feather(columns=...)`` of only the columns the query needs ("load"), then
  plain pandas/numpy ("compute"); reported as load, compute (frames already in RAM) and load+compute;
* ``polars``: lazy ``pl.scan_ipc`` plans over the feathers, collected;
* ``duckdb``: an in-memory DuckDB connection querying Parquet copies of the feathers (converted once
  under $FLATPRINT_HOME/bench/, not timed);
* ``graphdb``: the embedded graph database ladybug (a Kùzu fork) answering in Cypher, after loading the
  graph from the feathers (timed apart as its load; see benchmarks/graphdb.py).

Every baseline's answer is reduced to row counts, sums and a digest of the sorted rows, and compared
with flatprint's: a disagreement is a failed correctness cross-check (exit status 1).
A baseline that does not answer an item says why ("not run"), which is neither agreement nor failure.
Timing: per query the engines run round-robin; the first run of each is "cold" (fresh client /
connection / reopened database; the OS page cache is NOT dropped), then ``--repeat`` warm runs whose
median is reported. Memory: every engine runs in its own worker process (driven over pipes), so each
one's peak RSS is its own; see RSS_METHOD.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

UNSPEC = "<unspecified>"
NAMED = ["somaLocation", "class", "type", "instance", "group", "somaSide", "synonyms"]
ANN_COLS = ["bodyId", "status", *NAMED]
STATS_COLS = ["body", "pre", "post", "synweight"]
CONF = 0.5            # SynapseCriteria's default confidence (postHighAccuracyThreshold), strictly above
PATH_MIN_WEIGHT = 5
CELL_BUDGET_SECONDS = 90.0   # a baseline whose cold run exceeds this gets no warm repetitions

TARGETS_MS = {  # the full-scale ceilings (indicative only at smaller scales)
    "neurons_by_type": 20, "adjacencies_100": 100, "synapse_connections_pair": 100,
    "shortest_paths_w5": 200, "matrix_type": 5000,
}


def table_files() -> dict[str, str]:
    from flatprint.release.tables import TABLES

    return {key: spec.filename for key, spec in TABLES.items()}


# =============================================================================== canonical answers
def summarize(df: pd.DataFrame, sum_cols=()) -> dict:
    """Rows, column sums and a digest of the sorted rows of a canonical answer frame."""
    df = df.reset_index(drop=True)
    out = {"rows": int(len(df))}
    for c in sum_cols:
        out[f"sum_{c}"] = int(pd.to_numeric(df[c]).sum()) if len(df) else 0
    if len(df):
        canon = df.astype(object).where(df.notna(), None)
        rows = sorted(tuple(str(v) for v in r) for r in canon.itertuples(index=False, name=None))
    else:
        rows = []
    out["digest"] = hashlib.sha1(repr(rows).encode()).hexdigest()[:16]
    return out


def neurons_answer(bodies, pre, post, roi_rows) -> dict:
    """fetch_neurons' checkable content: bodies, pre/post totals and per-primary-ROI counts."""
    nd = pd.DataFrame({"bodyId": np.asarray(bodies, dtype=np.int64), "pre": np.asarray(pre, dtype=np.int64),
                       "post": np.asarray(post, dtype=np.int64)})
    rr = roi_rows[["bodyId", "roi", "pre", "post"]].copy()
    rr["bodyId"] = rr["bodyId"].astype(np.int64)
    rr["roi"] = rr["roi"].astype(str)
    a, b = summarize(nd, ["pre", "post"]), summarize(rr, ["pre", "post"])
    return {"neurons": a, "roi_counts": b}


def canon_conn(frames) -> dict:
    df = pd.concat([f[["bodyId_pre", "bodyId_post", "roi", "weight"]].astype(
        {"bodyId_pre": np.int64, "bodyId_post": np.int64, "roi": str, "weight": np.int64}) for f in frames],
        ignore_index=True)
    return summarize(df, ["weight"])


def canon_syn(df) -> dict:
    cols = ["x_pre", "y_pre", "z_pre", "x_post", "y_post", "z_post", "roi_pre", "roi_post"]
    df = df[cols].copy()
    for c in cols[:6]:
        df[c] = df[c].astype(np.int64)
    for c in cols[6:]:
        df[c] = [None if (v is None or (isinstance(v, float) and np.isnan(v)) or v == UNSPEC) else str(v)
                 for v in df[c]]
    return summarize(df, ["x_pre", "x_post"])


def canon_paths(paths) -> dict:
    paths = sorted(tuple(int(b) for b in p) for p in paths)
    return {"paths": len(paths), "length": (len(paths[0]) - 1) if paths else None,
            "digest": hashlib.sha1(repr(paths).encode()).hexdigest()[:16]}


def canon_matrix(df) -> dict:
    df = df[["pre", "post", "weight", "connections"]].astype(
        {"pre": str, "post": str, "weight": np.int64, "connections": np.int64})
    return summarize(df, ["weight", "connections"])


def canon_reach(bodies, hops) -> dict:
    df = pd.DataFrame({"bodyId": np.asarray(bodies, dtype=np.int64), "hops": np.asarray(hops, dtype=np.int64)})
    out = summarize(df, ["hops"])
    out["per_hop"] = {int(k): int(v) for k, v in df["hops"].value_counts().sort_index().items()}
    return out


# =============================================================================== shared algorithm
def isin(values, candidates) -> np.ndarray:
    """Boolean mask ``values in candidates`` by hashing (pandas), which is ~10x faster than the
    sort-based np.isin on tens of millions of int64 ids: what a careful pandas user reaches for."""
    return pd.Series(np.asarray(values)).isin(np.asarray(candidates)).to_numpy()


def shortest_paths_levels(expand, src: int, dst: int, max_levels: int = 50):
    """All shortest src->dst paths by a level-synchronous forward BFS.

    ``expand(frontier: np.ndarray) -> (near, far) numpy arrays`` of admissible edges leaving the
    frontier. Every engine's baseline uses this same algorithm; only ``expand`` differs.
    """
    visited = np.array([src], dtype=np.int64)
    frontier = visited
    levels = []
    for _ in range(max_levels):
        near, far = expand(frontier)
        near, far = np.asarray(near, dtype=np.int64), np.asarray(far, dtype=np.int64)
        keep = ~isin(far, visited)
        near, far = near[keep], far[keep]
        levels.append((near, far))
        if (far == dst).any():
            break
        frontier = np.unique(far)
        if len(frontier) == 0:
            return []
        visited = np.union1d(visited, frontier)
    else:
        return []
    # walk back from dst keeping only edges on shortest paths, then enumerate them
    wanted = {dst}
    kept = []
    for near, far in reversed(levels):
        m = isin(far, list(wanted))
        pairs = list(zip(near[m].tolist(), far[m].tolist()))
        kept.append(pairs)
        wanted = {a for a, _ in pairs}
    kept.reverse()
    paths = [[src]]
    for pairs in kept:
        nxt = defaultdict(list)
        for a, b in pairs:
            nxt[a].append(b)
        paths = [p + [b] for p in paths for b in nxt.get(p[-1], [])]
    return [p for p in paths if p[-1] == dst]


# =============================================================================== pandas baseline
class PandasEngine:
    """Loads only the needed columns with pd.read_feather, then computes with pandas/numpy."""

    name = "pandas"

    def __init__(self, release: Path):
        self.release = release
        self.files = table_files()

    def load(self, needs: dict[str, list[str]]) -> dict[str, pd.DataFrame]:
        return {key: pd.read_feather(self.release / self.files[key], columns=cols) for key, cols in needs.items()}

    @staticmethod
    def neuron_ids(f) -> np.ndarray:
        ann, st = f["annotations"], f["stats"]
        status = ann["status"].astype(object)
        flag = ann[NAMED].notna().any(axis=1) | status.isin(["Traced", "Anchor"])
        big = (st["synweight"] >= 100) | (st["pre"] >= 100) | (st["post"] >= 100)
        ids = np.union1d(ann["bodyId"].to_numpy()[flag.to_numpy()], st["body"].to_numpy()[big.to_numpy()])
        excluded = ann["bodyId"].to_numpy()[status.isin(["Glia", "Unimportant"]).to_numpy()]
        return ids[~isin(ids, excluded)]

    # -- fetch_neurons -----------------------------------------------------------------
    NEURON_NEEDS = {"annotations": ANN_COLS, "stats": STATS_COLS, "syn-points": ["body", "kind", "primary"]}

    def _neuron_table(self, f, bodies):
        st = f["stats"]
        s = st[st["body"].isin(bodies)].set_index("body").reindex(bodies)
        pts = f["syn-points"]
        pts = pts[pts["body"].isin(bodies)]
        pts = pts[pts["primary"] != UNSPEC]
        g = pts.groupby(["body", "primary", "kind"], observed=True).size().unstack("kind", fill_value=0)
        g = g.reindex(columns=["PreSyn", "PostSyn"], fill_value=0).reset_index()
        roi = pd.DataFrame({"bodyId": g["body"], "roi": g["primary"].astype(str), "pre": g["PreSyn"],
                            "post": g["PostSyn"]})
        return bodies, s["pre"].fillna(0).to_numpy(), s["post"].fillna(0).to_numpy(), roi

    def neurons_by_type(self, f, p):
        ids = self.neuron_ids(f)
        ann = f["annotations"]
        bodies = np.sort(ann.loc[(ann["type"] == p["type"]).to_numpy() & ann["bodyId"].isin(ids).to_numpy(), "bodyId"].to_numpy())
        return self._neuron_table(f, bodies)

    def neurons_by_regex(self, f, p):
        ids = self.neuron_ids(f)
        ann = f["annotations"]
        m = ann["type"].astype(object).fillna("").str.fullmatch(p["regex"]).to_numpy() & ann["bodyId"].isin(ids).to_numpy()
        return self._neuron_table(f, np.sort(ann.loc[m, "bodyId"].to_numpy()))

    def neurons_by_roi(self, f, p):
        ids = self.neuron_ids(f)
        pts = f["syn-points"]
        in_roi = pts.loc[(pts["primary"] == p["roi"]).to_numpy(), "body"].unique()
        return self._neuron_table(f, np.sort(np.intersect1d(in_roi, ids)))

    # -- fetch_adjacencies (both directions, per ROI of the post point) -----------------
    ADJ_NEEDS = {"annotations": ANN_COLS, "stats": STATS_COLS, "syn-partners": ["body_pre", "body_post", "primary_post"]}

    def adjacencies(self, f, p):
        ids = self.neuron_ids(f)
        part = f["syn-partners"]
        bodies = np.asarray(p["bodies"], dtype=np.int64)
        pre, post = part["body_pre"].to_numpy(), part["body_post"].to_numpy()
        down = part[isin(pre, bodies)]
        down = down[isin(down["body_post"].to_numpy(), ids)]
        up = part[isin(post, bodies)]
        up = up[isin(up["body_pre"].to_numpy(), ids)]
        frames = []
        for sub in (down, up):
            g = sub.groupby(["body_pre", "body_post", "primary_post"], observed=True).size().reset_index(name="weight")
            roi = g["primary_post"].astype(str)
            frames.append(pd.DataFrame({"bodyId_pre": g["body_pre"], "bodyId_post": g["body_post"],
                                        "roi": roi.where(roi != UNSPEC, "NotPrimary"), "weight": g["weight"]}))
        return frames

    # -- fetch_synapse_connections of one pair -------------------------------------------
    SYN_NEEDS = {"syn-partners": ["x_pre", "y_pre", "z_pre", "body_pre", "conf_pre", "x_post", "y_post",
                                  "z_post", "body_post", "conf_post", "primary_post"],
                 "tbar-nt": ["point_id", "primary"]}

    def synapse_pair(self, f, p):
        part = f["syn-partners"]
        m = np.isin(part["body_pre"].to_numpy(), bodies(p["pre"])) & np.isin(part["body_post"].to_numpy(), bodies(p["post"]))
        sub = part[m]
        sub = sub[(sub["conf_pre"] > CONF) & (sub["conf_post"] > CONF)]
        pid = (sub["z_pre"].to_numpy().astype(np.uint64) << np.uint64(42)) | \
              (sub["y_pre"].to_numpy().astype(np.uint64) << np.uint64(21)) | sub["x_pre"].to_numpy().astype(np.uint64)
        tb = f["tbar-nt"]
        hit = tb[tb["point_id"].isin(pid)]
        roi_pre = pd.Series(hit["primary"].astype(str).to_numpy(), index=hit["point_id"].to_numpy()).reindex(pid)
        out = sub[["x_pre", "y_pre", "z_pre", "x_post", "y_post", "z_post"]].copy()
        out["roi_pre"] = roi_pre.to_numpy()
        out["roi_post"] = sub["primary_post"].astype(str).to_numpy()
        return out

    # -- fetch_shortest_paths (weight >= 5, intermediates Traced) ------------------------
    PATH_NEEDS = {"annotations": ["bodyId", "status"], "weights": ["body_pre", "body_post", "weight"]}

    def shortest_paths(self, f, p):
        w = f["weights"]
        w = w[w["weight"].to_numpy() >= PATH_MIN_WEIGHT]
        ann = f["annotations"]
        allowed = np.union1d(ann.loc[(ann["status"] == "Traced").to_numpy(), "bodyId"].to_numpy(), [p["src"], p["dst"]])
        w = w[isin(w["body_post"].to_numpy(), allowed)]
        pre, post = w["body_pre"].to_numpy(), w["body_post"].to_numpy()

        def expand(frontier):
            m = isin(pre, frontier)
            return pre[m], post[m]

        return shortest_paths_levels(expand, p["src"], p["dst"])

    # -- connection_matrix('type') -------------------------------------------------------
    MTYPE_NEEDS = {"annotations": ANN_COLS, "stats": STATS_COLS, "weights": ["body_pre", "body_post", "weight"]}

    def matrix_type(self, f, p):
        ids = self.neuron_ids(f)
        ann = f["annotations"]
        typed = ann[ann["type"].notna().to_numpy() & ann["bodyId"].isin(ids).to_numpy()]
        codes, names = pd.factorize(typed["type"])
        index = pd.Index(typed["bodyId"].to_numpy())
        w = f["weights"]
        a = index.get_indexer(w["body_pre"].to_numpy())
        b = index.get_indexer(w["body_post"].to_numpy())
        keep = (a >= 0) & (b >= 0)
        key = codes[a[keep]].astype(np.int64) * len(names) + codes[b[keep]]
        df = pd.DataFrame({"key": key, "weight": w["weight"].to_numpy()[keep]})
        g = df.groupby("key")["weight"].agg(["sum", "size"])
        k = g.index.to_numpy()
        return pd.DataFrame({"pre": np.asarray(names)[k // len(names)], "post": np.asarray(names)[k % len(names)],
                             "weight": g["sum"].to_numpy(), "connections": g["size"].to_numpy()})

    # -- connection_matrix('roi') --------------------------------------------------------
    MROI_NEEDS = {"annotations": ANN_COLS, "stats": STATS_COLS,
                  "syn-partners": ["x_pre", "y_pre", "z_pre", "body_pre", "body_post", "primary_post"],
                  "tbar-nt": ["point_id", "primary"]}

    def matrix_roi(self, f, p):
        ids = self.neuron_ids(f)
        part = f["syn-partners"]
        part = part[isin(part["body_pre"].to_numpy(), ids) & isin(part["body_post"].to_numpy(), ids)]
        pid = (part["z_pre"].to_numpy().astype(np.uint64) << np.uint64(42)) | \
              (part["y_pre"].to_numpy().astype(np.uint64) << np.uint64(21)) | part["x_pre"].to_numpy().astype(np.uint64)
        tb = f["tbar-nt"]
        pos = pd.Index(tb["point_id"].to_numpy()).get_indexer(pid)
        # work on the categorical codes (ROI names only at the end), as a careful pandas user would
        pre_cat, post_cat = tb["primary"].cat, part["primary_post"].cat
        pre_codes = np.where(pos >= 0, pre_cat.codes.to_numpy()[np.maximum(pos, 0)], -1)
        post_codes = post_cat.codes.to_numpy()
        pre_names, post_names = np.asarray(pre_cat.categories, dtype=object), np.asarray(post_cat.categories, dtype=object)
        bad_pre = list(pre_cat.categories).index(UNSPEC) if UNSPEC in pre_cat.categories else -2
        bad_post = list(post_cat.categories).index(UNSPEC) if UNSPEC in post_cat.categories else -2
        keep = (pre_codes >= 0) & (pre_codes != bad_pre) & (post_codes >= 0) & (post_codes != bad_post)
        n_post = len(post_names)
        df = pd.DataFrame({"k": pre_codes[keep].astype(np.int64) * n_post + post_codes[keep],
                           "a": part["body_pre"].to_numpy()[keep], "b": part["body_post"].to_numpy()[keep]})
        weight = df.groupby("k").size()
        conns = df.drop_duplicates().groupby("k").size().reindex(weight.index)
        k = weight.index.to_numpy()
        return pd.DataFrame({"pre": pre_names[k // n_post], "post": post_names[k % n_post],
                             "weight": weight.to_numpy(), "connections": conns.to_numpy()})

    # -- fetch_reach (2 hops downstream, weight >= 1, neurons only) ----------------------
    REACH_NEEDS = {"annotations": ANN_COLS, "stats": STATS_COLS, "weights": ["body_pre", "body_post", "weight"]}

    def reach(self, f, p):
        ids = self.neuron_ids(f)
        w = f["weights"]
        pre, post, wt = w["body_pre"].to_numpy(), w["body_post"].to_numpy(), w["weight"].to_numpy()
        seen = {int(b): 0 for b in p["bodies"]}
        frontier = np.asarray(p["bodies"], dtype=np.int64)
        for hop in range(1, p["hops"] + 1):
            found = np.unique(post[isin(pre, frontier) & (wt >= 1)])
            found = found[isin(found, ids)]
            new = [b for b in found.tolist() if b not in seen]
            for b in new:
                seen[b] = hop
            frontier = np.asarray(new, dtype=np.int64)
        return list(seen), list(seen.values())


# =============================================================================== polars baseline
class PolarsEngine:
    """Lazy ``pl.scan_ipc`` plans over the feathers, collected per query."""

    name = "polars"

    def __init__(self, release: Path):
        import polars as pl

        self.pl = pl
        self.release = release
        self.files = table_files()

    def scan(self, key):
        return self.pl.scan_ipc(self.release / self.files[key])

    def neuron_ids(self):
        pl = self.pl
        ann, st = self.scan("annotations"), self.scan("stats")
        big = st.filter((pl.col("synweight") >= 100) | (pl.col("pre") >= 100) | (pl.col("post") >= 100)) \
            .select(pl.col("body").cast(pl.Int64).alias("bodyId"))
        named = pl.any_horizontal([pl.col(c).is_not_null() for c in NAMED])
        status = pl.col("status").cast(pl.String)
        flag = ann.filter(named | status.is_in(["Traced", "Anchor"])).select(pl.col("bodyId").cast(pl.Int64))
        excl = ann.filter(status.is_in(["Glia", "Unimportant"])).select(pl.col("bodyId").cast(pl.Int64))
        return pl.concat([big, flag]).unique().join(excl, on="bodyId", how="anti")

    def _neuron_table(self, bodies_lf):
        pl = self.pl
        bodies = bodies_lf.sort("bodyId")
        st = self.scan("stats").select(pl.col("body").cast(pl.Int64).alias("bodyId"), "pre", "post")
        nd = bodies.join(st, on="bodyId", how="left").with_columns(pl.col("pre").fill_null(0), pl.col("post").fill_null(0))
        pts = self.scan("syn-points").select("body", "kind", "primary") \
            .join(bodies, left_on="body", right_on="bodyId", how="semi") \
            .filter(pl.col("primary") != UNSPEC) \
            .group_by("body", "primary").agg(pre=(pl.col("kind") == "PreSyn").sum(),
                                             post=(pl.col("kind") == "PostSyn").sum()) \
            .with_columns(pl.col("primary").cast(pl.String))
        nd, roi = pl.collect_all([nd, pts])
        roi = roi.rename({"body": "bodyId", "primary": "roi"})
        return nd["bodyId"].to_numpy(), nd["pre"].to_numpy(), nd["post"].to_numpy(), roi.to_pandas()

    def neurons_by_type(self, f, p):
        pl = self.pl
        b = self.scan("annotations").filter(pl.col("type") == p["type"]).select(pl.col("bodyId").cast(pl.Int64)) \
            .join(self.neuron_ids(), on="bodyId", how="semi")
        return self._neuron_table(b)

    def neurons_by_regex(self, f, p):
        pl = self.pl
        b = self.scan("annotations").filter(pl.col("type").str.contains(f"^(?:{p['regex']})$")) \
            .select(pl.col("bodyId").cast(pl.Int64)).join(self.neuron_ids(), on="bodyId", how="semi")
        return self._neuron_table(b)

    def neurons_by_roi(self, f, p):
        pl = self.pl
        b = self.scan("syn-points").filter(pl.col("primary") == p["roi"]) \
            .select(pl.col("body").cast(pl.Int64).alias("bodyId")).unique() \
            .join(self.neuron_ids(), on="bodyId", how="semi")
        return self._neuron_table(b)

    def adjacencies(self, f, p):
        pl = self.pl
        ids = self.neuron_ids()
        part = self.scan("syn-partners").select("body_pre", "body_post", "primary_post")
        bodies = [int(b) for b in p["bodies"]]
        down = part.filter(pl.col("body_pre").is_in(bodies)).join(ids, left_on="body_post", right_on="bodyId", how="semi")
        up = part.filter(pl.col("body_post").is_in(bodies)).join(ids, left_on="body_pre", right_on="bodyId", how="semi")
        plans = [x.group_by("body_pre", "body_post", "primary_post").agg(weight=pl.len()).select(
            pl.col("body_pre").alias("bodyId_pre"), pl.col("body_post").alias("bodyId_post"),
            pl.when(pl.col("primary_post") == UNSPEC).then(pl.lit("NotPrimary"))
            .otherwise(pl.col("primary_post").cast(pl.String)).alias("roi"),
            "weight") for x in (down, up)]
        return [d.to_pandas() for d in pl.collect_all(plans)]

    @staticmethod
    def _pid(pl, prefix):
        return (pl.col(f"z_{prefix}").cast(pl.UInt64) * (1 << 42) + pl.col(f"y_{prefix}").cast(pl.UInt64) * (1 << 21)
                + pl.col(f"x_{prefix}").cast(pl.UInt64)).alias("point_id")

    def synapse_pair(self, f, p):
        pl = self.pl
        sub = self.scan("syn-partners").filter(pl.col("body_pre").is_in(bodies(p["pre"]))
                                               & pl.col("body_post").is_in(bodies(p["post"]))
                                               & (pl.col("conf_pre") > CONF) & (pl.col("conf_post") > CONF)) \
            .with_columns(self._pid(pl, "pre"))
        tb = self.scan("tbar-nt").select(pl.col("point_id").cast(pl.UInt64), pl.col("primary").alias("roi_pre"))
        df = sub.join(tb, on="point_id", how="left").select(
            "x_pre", "y_pre", "z_pre", "x_post", "y_post", "z_post", pl.col("roi_pre").cast(pl.String),
            pl.col("primary_post").cast(pl.String).alias("roi_post")).collect()
        return df.to_pandas()

    def shortest_paths(self, f, p):
        pl = self.pl
        allowed = self.scan("annotations").filter(pl.col("status").cast(pl.String) == "Traced") \
            .select(pl.col("bodyId").cast(pl.Int64)) \
            .pipe(lambda lf: pl.concat([lf, pl.LazyFrame({"bodyId": [int(p["src"]), int(p["dst"])]})]))
        edges = self.scan("weights").filter(pl.col("weight") >= PATH_MIN_WEIGHT).select("body_pre", "body_post") \
            .join(allowed, left_on="body_post", right_on="bodyId", how="semi").collect()

        def expand(frontier):
            e = edges.filter(pl.col("body_pre").is_in(frontier.tolist()))
            return e["body_pre"].to_numpy(), e["body_post"].to_numpy()

        return shortest_paths_levels(expand, p["src"], p["dst"])

    def matrix_type(self, f, p):
        pl = self.pl
        typed = self.scan("annotations").filter(pl.col("type").is_not_null()) \
            .select(pl.col("bodyId").cast(pl.Int64), pl.col("type").cast(pl.String)) \
            .join(self.neuron_ids(), on="bodyId", how="semi")
        w = self.scan("weights").select("body_pre", "body_post", "weight")
        df = w.join(typed.rename({"bodyId": "body_pre", "type": "pre"}), on="body_pre") \
            .join(typed.rename({"bodyId": "body_post", "type": "post"}), on="body_post") \
            .group_by("pre", "post").agg(weight=pl.col("weight").sum(), connections=pl.len()).collect()
        return df.to_pandas()

    def matrix_roi(self, f, p):
        pl = self.pl
        ids = self.neuron_ids()
        part = self.scan("syn-partners").select("x_pre", "y_pre", "z_pre", "body_pre", "body_post",
                                                pl.col("primary_post").alias("post")) \
            .join(ids, left_on="body_pre", right_on="bodyId", how="semi") \
            .join(ids, left_on="body_post", right_on="bodyId", how="semi") \
            .with_columns(self._pid(pl, "pre"))
        tb = self.scan("tbar-nt").select(pl.col("point_id").cast(pl.UInt64), pl.col("primary").alias("pre"))
        df = part.join(tb, on="point_id").filter((pl.col("pre") != UNSPEC) & (pl.col("post") != UNSPEC)) \
            .group_by("pre", "post").agg(weight=pl.len(), connections=pl.struct("body_pre", "body_post").n_unique()) \
            .with_columns(pl.col("pre").cast(pl.String), pl.col("post").cast(pl.String)).collect()
        return df.to_pandas()

    def reach(self, f, p):
        pl = self.pl
        ids = self.neuron_ids().collect()["bodyId"].to_numpy()
        seen = {int(b): 0 for b in p["bodies"]}
        frontier = [int(b) for b in p["bodies"]]
        for hop in range(1, p["hops"] + 1):
            found = self.scan("weights").filter(pl.col("body_pre").is_in(frontier) & (pl.col("weight") >= 1)) \
                .select(pl.col("body_post").unique()).collect()["body_post"].to_numpy()
            found = found[isin(found, ids)]
            new = [b for b in found.tolist() if b not in seen]
            for b in new:
                seen[b] = hop
            frontier = new
        return list(seen), list(seen.values())


# =============================================================================== DuckDB on Parquet
def convert_to_parquet(release: Path, out_dir: Path, log=print) -> dict:
    """One Parquet copy per feather (streamed batch by batch); reused when present. Not timed."""
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    out_dir.mkdir(parents=True, exist_ok=True)
    made = {}
    for key, fname in table_files().items():
        dest = out_dir / f"{key}.parquet"
        src = release / fname
        if dest.exists() and dest.stat().st_mtime > src.stat().st_mtime:
            continue
        started = time.perf_counter()
        reader = ipc.open_file(src)
        tmp = dest.with_suffix(".parquet.tmp")
        with pq.ParquetWriter(tmp, reader.schema) as writer:
            for i in range(reader.num_record_batches):
                writer.write_batch(reader.get_batch(i))
        tmp.replace(dest)
        made[key] = time.perf_counter() - started
        log(f"  parquet copy of {fname}: {made[key]:.1f} s")
    return made


class DuckDBEngine:
    """An in-memory DuckDB connection with one view per Parquet copy."""

    name = "duckdb"

    def __init__(self, parquet_dir: Path):
        self.dir = parquet_dir
        self.con = None
        self.reset()

    def reset(self):
        import duckdb

        if self.con is not None:
            self.con.close()
        self.con = duckdb.connect()
        for key in table_files():
            view = key.replace("-", "_")
            self.con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet('{self.dir / (key + '.parquet')}')")

    NEURON_IDS = """neuron_ids AS (
        (SELECT body AS bodyId FROM stats WHERE synweight >= 100 OR pre >= 100 OR post >= 100
         UNION
         SELECT bodyId FROM annotations WHERE {named} OR status IN ('Traced', 'Anchor'))
        EXCEPT SELECT bodyId FROM annotations WHERE status IN ('Glia', 'Unimportant'))""".format(
        named=" OR ".join(f'"{c}" IS NOT NULL' for c in NAMED))

    def q(self, sql, params=None):
        return self.con.execute(sql, params or []).df()

    def _neuron_table(self, bodies_sql):
        nd = self.q(f"""WITH {self.NEURON_IDS}, b AS ({bodies_sql})
            SELECT b.bodyId, coalesce(s.pre, 0) AS pre, coalesce(s.post, 0) AS post
            FROM b LEFT JOIN stats s ON s.body = b.bodyId ORDER BY b.bodyId""")
        ids = ", ".join(map(str, nd["bodyId"].tolist())) or "NULL"
        roi = self.q(f"""SELECT body AS bodyId, "primary"::VARCHAR AS roi,
                count(*) FILTER (kind = 'PreSyn') AS pre, count(*) FILTER (kind = 'PostSyn') AS post
            FROM syn_points WHERE body IN ({ids}) AND "primary" <> '{UNSPEC}' GROUP BY ALL""")
        return nd["bodyId"].to_numpy(), nd["pre"].to_numpy(), nd["post"].to_numpy(), roi

    def neurons_by_type(self, f, p):
        return self._neuron_table(f"SELECT bodyId FROM annotations WHERE type = '{p['type']}' "
                                  "AND bodyId IN (SELECT bodyId FROM neuron_ids)")

    def neurons_by_regex(self, f, p):
        return self._neuron_table(f"SELECT bodyId FROM annotations WHERE regexp_full_match(type, '{p['regex']}') "
                                  "AND bodyId IN (SELECT bodyId FROM neuron_ids)")

    def neurons_by_roi(self, f, p):
        return self._neuron_table(f"SELECT DISTINCT body AS bodyId FROM syn_points WHERE \"primary\" = '{p['roi']}' "
                                  "AND body IN (SELECT bodyId FROM neuron_ids)")

    def adjacencies(self, f, p):
        ids = ", ".join(map(str, p["bodies"]))
        frames = []
        for near, far in (("body_pre", "body_post"), ("body_post", "body_pre")):
            frames.append(self.q(f"""WITH {self.NEURON_IDS}
                SELECT body_pre AS bodyId_pre, body_post AS bodyId_post,
                       CASE WHEN primary_post = '{UNSPEC}' THEN 'NotPrimary' ELSE primary_post::VARCHAR END AS roi,
                       count(*) AS weight
                FROM syn_partners WHERE {near} IN ({ids}) AND {far} IN (SELECT bodyId FROM neuron_ids)
                GROUP BY ALL"""))
        return frames

    PID = "((CAST(z_pre AS UBIGINT) << 42) | (CAST(y_pre AS UBIGINT) << 21) | CAST(x_pre AS UBIGINT))"

    def synapse_pair(self, f, p):
        return self.q(f"""WITH sub AS (
                SELECT *, {self.PID} AS pid FROM syn_partners
                WHERE body_pre IN ({", ".join(map(str, bodies(p["pre"])))}) AND body_post IN ({", ".join(map(str, bodies(p["post"])))})
                  AND conf_pre > {CONF} AND conf_post > {CONF})
            SELECT x_pre, y_pre, z_pre, x_post, y_post, z_post, t."primary"::VARCHAR AS roi_pre,
                   primary_post::VARCHAR AS roi_post
            FROM sub LEFT JOIN (SELECT point_id, "primary" FROM tbar_nt
                                WHERE point_id IN (SELECT pid FROM sub)) t ON t.point_id = sub.pid""")

    def shortest_paths(self, f, p):
        con = self.con
        ends = f"{int(p['src'])}, {int(p['dst'])}"

        def expand(frontier):
            con.register("frontier", pd.DataFrame({"b": frontier}))
            d = con.execute(f"""SELECT body_pre, body_post FROM weights
                WHERE weight >= {PATH_MIN_WEIGHT} AND body_pre IN (SELECT b FROM frontier)
                  AND (body_post IN (SELECT bodyId FROM annotations WHERE status = 'Traced') OR body_post IN ({ends}))""").fetchnumpy()
            con.unregister("frontier")
            return d["body_pre"], d["body_post"]

        return shortest_paths_levels(expand, p["src"], p["dst"])

    def matrix_type(self, f, p):
        return self.q(f"""WITH {self.NEURON_IDS},
              typed AS (SELECT bodyId, type FROM annotations WHERE type IS NOT NULL AND bodyId IN (SELECT bodyId FROM neuron_ids))
            SELECT a.type AS pre, b.type AS post, sum(w.weight) AS weight, count(*) AS connections
            FROM weights w JOIN typed a ON a.bodyId = w.body_pre JOIN typed b ON b.bodyId = w.body_post
            GROUP BY ALL""")

    def matrix_roi(self, f, p):
        return self.q(f"""WITH {self.NEURON_IDS},
              part AS (SELECT body_pre, body_post, primary_post::VARCHAR AS post, {self.PID} AS pid FROM syn_partners
                       WHERE body_pre IN (SELECT bodyId FROM neuron_ids) AND body_post IN (SELECT bodyId FROM neuron_ids))
            SELECT t."primary"::VARCHAR AS pre, part.post, count(*) AS weight,
                   count(DISTINCT (body_pre, body_post)) AS connections
            FROM part JOIN tbar_nt t ON t.point_id = part.pid
            WHERE t."primary" <> '{UNSPEC}' AND part.post <> '{UNSPEC}'
            GROUP BY ALL""")

    def reach(self, f, p):
        con = self.con
        ids = con.execute(f"WITH {self.NEURON_IDS} SELECT bodyId FROM neuron_ids").fetchnumpy()["bodyId"]
        seen = {int(b): 0 for b in p["bodies"]}
        frontier = [int(b) for b in p["bodies"]]
        for hop in range(1, p["hops"] + 1):
            lst = ", ".join(map(str, frontier)) or "NULL"
            found = con.execute(f"SELECT DISTINCT body_post FROM weights WHERE body_pre IN ({lst}) AND weight >= 1") \
                .fetchnumpy()["body_post"]
            found = found[isin(found, ids)]
            new = [b for b in found.tolist() if b not in seen]
            for b in new:
                seen[b] = hop
            frontier = new
        return list(seen), list(seen.values())


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


def fp_neurons(nc_kwargs):
    def run(eng, p):
        from flatprint import NeuronCriteria as NC, fetch_neurons

        c = eng.client
        return fetch_neurons(NC(client=c, **{k: p[v] for k, v in nc_kwargs.items()}), client=c)
    return run


def fp_neurons_answer(res, client):
    ndf, roi = res
    prim = roi[roi["roi"].isin(set(client.primary_rois))]
    return neurons_answer(ndf["bodyId"], ndf["pre"], ndf["post"], prim)


def fp_adjacencies(eng, p):
    from flatprint import NeuronCriteria as NC, fetch_adjacencies

    c = eng.client
    _, down = fetch_adjacencies(NC(bodyId=p["bodies"], client=c), None, client=c)
    _, up = fetch_adjacencies(None, NC(bodyId=p["bodies"], client=c), client=c)
    return [down, up]


def fp_synapse_pair(eng, p):
    from flatprint import NeuronCriteria as NC, fetch_synapse_connections

    c = eng.client
    return fetch_synapse_connections(NC(bodyId=bodies(p["pre"]), client=c), NC(bodyId=bodies(p["post"]), client=c),
                                     client=c)


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
    """(name, description, flatprint fn, flatprint -> answer, baseline method, baseline -> answer, pandas needs)."""
    nb = lambda r, c: neurons_answer(*r)  # noqa: E731
    P = PandasEngine
    return [
        ("neurons_by_type", "fetch_neurons(NC(type=T)) with per-ROI counts", fp_neurons({"type": "type"}),
         fp_neurons_answer, "neurons_by_type", nb, P.NEURON_NEEDS),
        ("neurons_by_regex", "fetch_neurons(NC(type=regex))", fp_neurons({"type": "regex"}),
         fp_neurons_answer, "neurons_by_regex", nb, P.NEURON_NEEDS),
        ("neurons_by_roi", "fetch_neurons(NC(rois=[R])) (any synapse in R)", fp_neurons({"rois": "roi"}),
         fp_neurons_answer, "neurons_by_roi", nb, P.NEURON_NEEDS),
        ("adjacencies_1", "fetch_adjacencies of 1 neuron, both directions, per ROI", fp_adjacencies,
         lambda r, c: canon_conn(r), "adjacencies", lambda r, c: canon_conn(r), P.ADJ_NEEDS),
        ("adjacencies_100", "fetch_adjacencies of 100 neurons, both directions, per ROI", fp_adjacencies,
         lambda r, c: canon_conn(r), "adjacencies", lambda r, c: canon_conn(r), P.ADJ_NEEDS),
        ("adjacencies_1000", "fetch_adjacencies of 1000 neurons, both directions, per ROI", fp_adjacencies,
         lambda r, c: canon_conn(r), "adjacencies", lambda r, c: canon_conn(r), P.ADJ_NEEDS),
        ("synapse_connections_pair", "fetch_synapse_connections of the strongest neuron pair", fp_synapse_pair,
         lambda r, c: canon_syn(r), "synapse_pair", lambda r, c: canon_syn(r), P.SYN_NEEDS),
        ("synapse_connections_types", "fetch_synapse_connections between the neurons of two types (those of the "
         "strongest pair)", fp_synapse_pair, lambda r, c: canon_syn(r), "synapse_pair", lambda r, c: canon_syn(r),
         P.SYN_NEEDS),
        ("shortest_paths_w5", "fetch_shortest_paths(a, b, min_weight=5), intermediates Traced", fp_shortest_paths,
         lambda r, c: canon_paths(paths_of(r)), "shortest_paths", lambda r, c: canon_paths(r),
         P.PATH_NEEDS),
        ("matrix_type", "connection_matrix('type'), neurons only", fp_matrix("type"),
         lambda r, c: canon_matrix(r), "matrix_type", lambda r, c: canon_matrix(r), P.MTYPE_NEEDS),
        ("matrix_roi", "connection_matrix('roi'): synapse pairs by primary ROI of pre and post point",
         fp_matrix("roi"), lambda r, c: canon_matrix(r), "matrix_roi", lambda r, c: canon_matrix(r), P.MROI_NEEDS),
        ("reach_2hops_100", "fetch_reach of 100 neurons, 2 hops downstream, weight >= 1, neurons only", fp_reach,
         lambda r, c: canon_reach(r["bodyId"], r["hops"]), "reach", lambda r, c: canon_reach(*r), P.REACH_NEEDS),
    ]


def choose_parameters(client, seed: int, log=print) -> dict:
    """Query parameters picked from the store (not timed)."""
    from flatprint import fetch_shortest_paths

    rng = np.random.default_rng(seed)
    neurons = [r[0] for r in client.sql("SELECT bodyId FROM segments WHERE is_neuron ORDER BY bodyId")[1]]
    hundred = sorted(int(b) for b in rng.choice(neurons, size=min(100, len(neurons)), replace=False))
    # its own generator, so that adding this sample left the other parameters as they were
    thousand = sorted(int(b) for b in np.random.default_rng([seed, 1000]).choice(
        neurons, size=min(1000, len(neurons)), replace=False))
    one = 12781 if 12781 in set(neurons) else neurons[0]
    primary = client.primary_rois
    roi = "GNG" if "GNG" in primary else primary[0]
    a, b, w = client.sql("""SELECT c.body_pre, c.body_post, c.weight FROM connections c
        JOIN segments a ON a.bodyId = c.body_pre AND a.is_neuron JOIN segments b ON b.bodyId = c.body_post AND b.is_neuron
        WHERE c.body_pre <> c.body_post ORDER BY c.weight DESC, 1, 2 LIMIT 1""")[1][0]
    # shortest paths: from the DNge104_R neuron to the first sampled typed, Traced neuron >= 3 hops away
    cands = [r[0] for r in client.sql("SELECT bodyId FROM segments WHERE is_neuron AND type IS NOT NULL "
                                      "AND status = 'Traced' ORDER BY bodyId")[1]]
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
    of_type = lambda t: [int(r[0]) for r in client.sql(  # noqa: E731
        "SELECT bodyId FROM segments WHERE is_neuron AND type = ? ORDER BY bodyId", [t])[1]] if t else []
    types = {"pre": of_type(type_a) or [int(a)], "post": of_type(type_b) or [int(b)],
             "pre_type": type_a, "post_type": type_b}
    params = {
        "type": "DNge104", "regex": "DNg.*", "roi": roi, "one": [one], "hundred": hundred, "thousand": thousand,
        "pair": {"pre": int(a), "post": int(b), "weight": int(w)},
        "types": types,
        "path": {"src": one, "dst": best[1], "length": best[0][0], "paths": best[0][1]},
    }
    log(f"parameters: type={params['type']} regex={params['regex']} roi={roi} one={one} "
        f"pair={params['pair']} path={params['path']}")
    return params


def query_params(name: str, params: dict) -> dict:
    return {
        "neurons_by_type": {"type": params["type"]}, "neurons_by_regex": {"regex": params["regex"]},
        "neurons_by_roi": {"roi": params["roi"]}, "adjacencies_1": {"bodies": params["one"]},
        "adjacencies_100": {"bodies": params["hundred"]}, "adjacencies_1000": {"bodies": params["thousand"]},
        "synapse_connections_pair": params["pair"], "synapse_connections_types": params["types"],
        "shortest_paths_w5": {"src": params["path"]["src"], "dst": params["path"]["dst"]},
        "matrix_type": {}, "matrix_roi": {}, "reach_2hops_100": {"bodies": params["hundred"], "hops": 2},
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
RSS_LIMIT_BYTES = 20 * 2**30     # a baseline that would need more is reported as OOM, not run
RSS_METHOD = ("each engine runs in its own worker process; peak RSS is the kernel's high-water mark of that "
              "process (VmHWM in /proc/<pid>/status), reset to the current RSS before each workload item "
              "(write '5' to /proc/self/clear_refs) so that every item gets its own peak; the engine's peak "
              "is the largest of them (load included). A watchdog samples every worker's RSS every 50 ms and "
              f"kills one that passes {RSS_LIMIT_BYTES / 2**30:g} GiB (reported as OOM, not run)")


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
ENGINE_LABELS = {"flatprint": "flatprint (DuckDB store)", "pandas": "pandas on feathers",
                 "polars": "polars lazy scan_ipc", "duckdb": "DuckDB on Parquet",
                 "graphdb": "graph DB (ladybug, Cypher)"}
REQUEST_TIMEOUT_S = 1800.0


def make_engine(name: str, ctx: dict):
    if name == "flatprint":
        return FlatprintEngine(Path(ctx["store"]))
    if name == "pandas":
        return PandasEngine(Path(ctx["release"]))
    if name == "polars":
        return PolarsEngine(Path(ctx["release"]))
    if name == "duckdb":
        return DuckDBEngine(Path(ctx["parquet_dir"]))
    if name == "graphdb":
        from graphdb import GraphDBEngine

        return GraphDBEngine(Path(ctx["release"]), Path(ctx["graph_dir"]))
    raise ValueError(f"unknown engine {name!r}")


def run_item(name: str, eng, item, p: dict, cold: bool) -> dict:
    """One timed run of one workload item by one engine (inside its worker); the answer when cold."""
    from graphdb import NotRun

    qname, _, fp_fn, fp_ans, method, base_ans, needs = item
    if cold and name in ("flatprint", "duckdb", "graphdb"):
        eng.reset()                        # fresh client / connection / database for the cold run
    gc.collect()
    out = {}
    try:
        if name == "flatprint":
            t, res = _timed(lambda: fp_fn(eng, p))
            if cold:
                out["answer"] = fp_ans(res, eng.client)
        elif name == "pandas":
            lt, frames = _timed(lambda: eng.load(needs))
            t, res = _timed(lambda: getattr(eng, method)(frames, p))
            out["load_t"] = lt
            del frames
            if cold:
                out["answer"] = base_ans(res, None)
        else:
            t, res = _timed(lambda: getattr(eng, method)(None, p))
            if cold:
                out["answer"] = base_ans(res, None)
        del res
        out["t"] = t
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
    os.dup2(2, 1)                          # anything else printed goes to stderr
    sys.stdout = sys.stderr

    def send(obj):
        proto.write(json.dumps(obj, default=C._jsonable) + "\n")
        proto.flush()

    try:
        reset_peak_rss()
        started = time.perf_counter()
        eng = make_engine(name, ctx)
        hello = {"ready": True, "init_s": time.perf_counter() - started, **_versions(name, eng)}
        if name == "graphdb":
            info = eng.load()
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
        reply = run_item(name, eng, items[msg["name"]], msg["params"], msg["cold"])
        reply["peak_rss_bytes"] = peak_rss_bytes()
        overall = max(overall, reply["peak_rss_bytes"])
        send(reply)
    if name == "graphdb":
        eng.close()
    elif name == "flatprint":
        eng.client.close()
    elif name == "duckdb":
        eng.con.close()


class Worker:
    """One engine in its own process (so that its memory is its own), driven over pipes."""

    def __init__(self, name: str, ctx: dict, log=print):
        import json
        import subprocess

        self.name, self.log, self.json = name, log, json
        self.killed_for = None
        self.peak_sampled = 0
        self.proc = subprocess.Popen([C.PYTHON, str(Path(__file__).resolve()), "--worker", name,
                                      "--ctx", json.dumps(ctx)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.hello = self._reply(REQUEST_TIMEOUT_S) or {"ready": False, "error": self._death()}
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
                    w.killed_for = (f"OOM: RSS passed {self.limit / 2**30:g} GiB "
                                    f"({rss / 2**30:.1f} GiB), killed; not run")
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
    ap.add_argument("--engines", nargs="*", default=["pandas", "polars", "duckdb", "graphdb"],
                    help="baselines to run (flatprint always runs)")
    ap.add_argument("--release", type=Path, help="use this release instead of $FLATPRINT_HOME/bench's")
    ap.add_argument("--store", type=Path, help="use this store (must be ingested from --release)")
    ap.add_argument("--graph-dir", type=Path, help="where the graph DB is built (default: next to the release)")
    ap.add_argument("--results-dir", type=Path, default=None)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--ctx", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        import json

        worker_main(args.worker, json.loads(args.ctx))
        return {}
    log = lambda *a: print(*a, flush=True)  # noqa: E731

    doc = {"name": "queries", "date": C.now_iso(), "machine": C.machine_facts(), "scale": args.scale,
           "seed": args.seed, "repeat": args.repeat, "targets_ms": TARGETS_MS, "rss_method": RSS_METHOD,
           "rss_limit_bytes": RSS_LIMIT_BYTES}
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
    parquet_dir = release.parent / f"parquet-{release.name}"
    graph_dir = args.graph_dir or release.parent / f"graphdb-{release.name}"
    engine_names = ["flatprint"] + [e for e in ENGINES if e in args.engines and e != "flatprint"]
    converted = convert_to_parquet(release, parquet_dir, log) if "duckdb" in engine_names else None
    doc.update({"release": str(release), "store": str(store), "parquet_dir": str(parquet_dir),
                "parquet_convert_seconds": converted or "reused", "graph_dir": str(graph_dir)})

    from flatprint import Client

    client = Client(store)
    try:
        params = choose_parameters(client, args.seed, log)
    finally:
        client.close()
    doc["parameters"] = params
    ctx = {"release": str(release), "store": str(store), "parquet_dir": str(parquet_dir),
           "graph_dir": str(graph_dir)}
    workers: dict[str, Worker] = {}
    dog = Watchdog(workers)
    info = {}
    try:
        for ename in engine_names:       # one at a time, so that the graph DB's load has the machine
            log(f"starting the {ename} worker" + (" (loads the graph; timed)" if ename == "graphdb" else ""))
            w = Worker(ename, ctx, log)
            workers[ename] = w
            h = dict(w.hello)
            info[ename] = {k: h[k] for k in ("package", "version", "init_s", "load_s", "load", "init_peak_rss_bytes",
                                             "rss_after_init_bytes", "error") if k in h}
            info[ename]["label"] = ENGINE_LABELS[ename]
            if ename == "graphdb" and "load_s" in h:
                log(f"   graph DB loaded in {h['load_s']:.1f} s, peak RSS {h['init_peak_rss_bytes'] / 2**30:.2f} GiB: "
                    f"{h['load']['counts']}")
            elif not w.alive:
                log(f"   {ename} worker failed: {h.get('error')}")
        results, all_agree = run_workload(workers, params, args, log)
    finally:
        dog.stop()
        for ename, w in workers.items():
            bye = w.close()
            info[ename]["peak_rss_bytes"] = bye.get("peak_rss_bytes")
            info[ename]["peak_rss_sampled_bytes"] = w.peak_sampled
            if w.killed_for:
                info[ename]["killed"] = w.killed_for
    doc["engines"] = info
    doc["flatprint_open_seconds"] = info["flatprint"].get("init_s")
    doc["results"] = results
    doc["all_baselines_agree"] = all_agree
    path = C.write_result("queries", doc, args.results_dir)
    log(f"wrote {path}; all baselines agree with flatprint: {all_agree}")
    if not all_agree and __name__ == "__main__":
        raise SystemExit(1)
    return doc


def run_workload(workers: dict, params: dict, args, log) -> tuple[list, bool]:
    """Round-robin over the engines within each repetition; the first repetition is the cold run."""
    results = []
    all_agree = True
    for name, desc, fp_fn, fp_ans, method, base_ans, needs in workload():
        if args.only and name not in args.only:
            continue
        p = query_params(name, params)
        log(f"== {name}: {desc}")
        times = {e: [] for e in workers}
        load_times = []
        answers, errors, not_run, rss = {}, {}, {}, {e: [] for e in workers}
        for rep in range(args.repeat + 1):          # rep 0 = cold
            for ename, w in workers.items():
                if ename in errors or ename in not_run or (rep > 0 and times[ename]
                                                           and times[ename][0] > CELL_BUDGET_SECONDS):
                    continue
                reply = w.request({"op": "run", "name": name, "params": p, "cold": rep == 0})
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
                times[ename].append(reply["t"])
                if "load_t" in reply:
                    load_times.append(reply["load_t"])
        row = {"name": name, "description": desc,
               "params": reported_params(p),
               "answer": answers.get("flatprint"), "engines": {}}
        fp_warm = C.median(times["flatprint"][1:]) if len(times["flatprint"]) > 1 else None
        for ename in workers:
            ts = times[ename]
            cell = {"cold_s": ts[0] if ts else None, "warm_median_s": C.median(ts[1:]) if len(ts) > 1 else None,
                    "warm_runs_s": ts[1:], "n_warm": max(len(ts) - 1, 0),
                    "peak_rss_bytes": max(rss[ename]) if rss[ename] else None}
            if ename in errors:
                cell["error"] = errors[ename]
            if ename in not_run:
                cell["not_run"] = not_run[ename]
            if ename == "pandas" and load_times:
                cell["compute_cold_s"] = cell.pop("cold_s")
                cell["compute_warm_median_s"] = cell.pop("warm_median_s")
                cell["compute_warm_runs_s"] = cell.pop("warm_runs_s")
                cell["load_cold_s"] = load_times[0]
                cell["load_warm_median_s"] = C.median(load_times[1:]) if len(load_times) > 1 else load_times[0]
                cell["total_warm_median_s"] = C.median([a + b for a, b in zip(load_times[1:], ts[1:])]) \
                    if len(ts) > 1 else None
                cell["total_cold_s"] = load_times[0] + ts[0] if ts else None
                cell["loaded_columns"] = needs
            if ename != "flatprint":
                if ename in not_run:
                    cell["agrees_with_flatprint"] = None      # not run: neither agreement nor failure
                else:
                    agree = ename in answers and answers[ename] == answers.get("flatprint")
                    cell["agrees_with_flatprint"] = agree
                    if not agree:
                        all_agree = False
                        cell["answer"] = answers.get(ename)
                        log(f"   !! {ename} disagrees with flatprint: {answers.get(ename)} vs {answers.get('flatprint')}")
                if fp_warm:
                    if ename == "pandas":
                        if cell.get("compute_warm_median_s") is not None:
                            cell["ratio_in_ram"] = cell["compute_warm_median_s"] / fp_warm
                            cell["ratio_with_load"] = cell["total_warm_median_s"] / fp_warm
                    elif cell.get("warm_median_s") is not None:
                        cell["ratio"] = cell["warm_median_s"] / fp_warm
            row["engines"][ename] = cell
        results.append(row)

        def fmt(e, c):
            if "not_run" in c:
                return f"{e}=not run"
            v = c.get("warm_median_s") or c.get("compute_warm_median_s")
            return (f"{e}={1000 * v:.1f}ms" if v is not None else f"{e}=–") \
                + (f"(+load {1000 * c['load_warm_median_s']:.0f}ms)" if "load_warm_median_s" in c else "") \
                + ("" if c.get("agrees_with_flatprint", True) in (True, None) else " DISAGREES")
        log("   " + "  ".join(fmt(e, c) for e, c in row["engines"].items()))
    return results, all_agree


if __name__ == "__main__":
    main()
