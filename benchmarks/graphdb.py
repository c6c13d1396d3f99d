"""Graph-database baseline for the query benchmark: the embedded graph DB ladybug (a Kùzu fork), in Cypher.

The engine loads one on-disk property graph from the release's feather files (timed as its "load"):

* ``Neuron`` nodes, one per body of the ``:Neuron`` rule of docs/semantics.md (evaluated once at load,
  as neuPrint sets its label at load): ``bodyId`` (primary key), ``type``, ``instance``, ``status``
  (annotations), ``pre``/``post`` (body-stats, 0 when absent);
* ``ConnectsTo`` edges ``Neuron -> Neuron`` with ``weight``, one per connectome-weights row between neurons;
* ``Roi`` nodes (the primary ROIs) and ``InRoi`` edges ``Neuron -> Roi`` with ``pre``/``post`` point
  counts: the per-ROI synapse counts of neuPrint's ``roiInfo``, aggregated from syn-points for
  ``:Neuron`` bodies only (the workload asks for neurons only; every body would be 28 M edges at 0.1);
* ``ConnectsToRoi`` edges ``Neuron -> Neuron`` with ``roi_pre``, ``roi_post`` and ``weight``: syn-partners
  rows between two neurons, counted per (pre body, post body, primary ROI of the pre point (from
  tbar-neurotransmitters; NULL when the point is not there), primary ROI of the post point). neuPrint keeps
  the same information as ``ConnectsTo.roiInfo``; one edge per ROI pair is the graph-native form.

Synapse-level data (one edge or node per synapse) is not loaded: between neurons alone it is 43 % of
syn-partners (13 M edges at scale 0.1, ~134 M at full scale, about the size of the whole ConnectsTo
graph), so ``synapse_connections_pair`` is reported as "not run".
The load's preprocessing (the :Neuron rule, the per-ROI aggregations) uses pyarrow and pandas and is
part of the timed load; where reading syn-points' and syn-partners' columns whole would pass the 20 GiB
limit (scale 1.0), the load copies the neuron-level tables that baselines.stream_neuron_tables builds
from the feathers one record batch at a time instead (``mode``; see ``GraphDBEngine.load``).
Queries are Cypher through one connection (id lists through ``UNWIND``, so that each id is a
primary-key lookup); "cold" reopens the database. Shortest paths use the database's own
``ALL SHORTEST`` recursive pattern. Segment targets (non-neuron partners) are not loaded: "not run".

This module is self-contained (no import of queries.py) so that queries.py can import it; the few
constants it shares with queries.py are checked to be equal by tests/test_benchmarks_smoke.py.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

UNSPEC = "<unspecified>"
NAMED = ["somaLocation", "class", "type", "instance", "group", "somaSide", "synonyms"]
PATH_MIN_WEIGHT = 5
MAX_PATH_HOPS = 30  # ladybug's upper bound for variable-length patterns
LOAD_MODES = ("auto", "ram", "stream")
# the whole-column load's peak RSS per syn-partners row, measured at scale 0.1 on 2026-12-06 (3.69 GB for
# 31,187,030 rows; benchmarks/results/systems-0.1.json): the auto mode projects with it
LOAD_PEAK_BYTES_PER_SYNAPSE = 118


class NotRun(Exception):
    """A workload item this engine does not answer; the message says why."""


def import_graphdb():
    """(module, name, version): ladybug when it imports, else kuzu (the project it forks)."""
    errors = []
    for name in ("ladybug", "real_ladybug", "kuzu"):
        try:
            mod = __import__(name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
            continue
        return mod, name, getattr(mod, "__version__", "?")
    raise ImportError("no graph database package: " + "; ".join(errors))


def _files() -> dict[str, str]:
    from flatprint.release.tables import TABLES

    return {key: spec.filename for key, spec in TABLES.items()}


def _read(path: Path, columns: list[str]):
    import pyarrow.feather as feather

    return feather.read_table(path, columns=columns)


def _text(values: pd.Series):
    """A text column as an Arrow string array, missing values (NaN or None) as nulls."""
    import pyarrow as pa

    return pa.array([v if isinstance(v, str) else None for v in values.tolist()], pa.string())


def _decode(arr):
    """A (possibly dictionary-encoded, possibly chunked) arrow column as a plain string/number array."""
    import pyarrow as pa

    if pa.types.is_dictionary(arr.type):
        return arr.cast(arr.type.value_type)
    return arr


class GraphDBEngine:
    """ladybug (Kùzu fork) embedded graph database, loaded from the feathers, queried in Cypher."""

    name = "graphdb"

    def __init__(self, release: Path, db_dir: Path, buffer_pool_bytes: int | None = None, mode: str = "auto"):
        if mode not in LOAD_MODES:
            raise ValueError(f"graph DB load mode {mode!r}: expected one of {', '.join(LOAD_MODES)}")
        self.release = Path(release)
        self.db_dir = Path(db_dir)
        self.mode_requested = mode
        self.mod, self.package, self.version = import_graphdb()
        if buffer_pool_bytes is None:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            buffer_pool_bytes = int(min(16 * 2**30, 0.6 * total))
        self.buffer_pool_bytes = buffer_pool_bytes
        self.db = None
        self.con = None
        self.load_info: dict = {}

    # ------------------------------------------------------------------------------ loading
    def _open(self):
        self.db = self.mod.Database(str(self.db_dir / "graph"), buffer_pool_size=self.buffer_pool_bytes)
        self.con = self.mod.Connection(self.db)

    def close(self):
        if self.con is not None:
            self.con.close()
        if self.db is not None:
            self.db.close()
        self.con = self.db = None

    def reset(self):
        """Close and reopen the on-disk database (the analogue of flatprint's fresh Client)."""
        self.close()
        self._open()

    def _create_schema(self):
        c = self.con
        c.execute(
            "CREATE NODE TABLE Neuron(bodyId INT64, type STRING, instance STRING, status STRING, "
            "pre INT64, post INT64, PRIMARY KEY (bodyId))"
        )
        c.execute("CREATE NODE TABLE Roi(name STRING, PRIMARY KEY (name))")
        c.execute("CREATE REL TABLE ConnectsTo(FROM Neuron TO Neuron, weight INT64)")
        c.execute("CREATE REL TABLE InRoi(FROM Neuron TO Roi, pre INT64, post INT64)")
        c.execute(
            "CREATE REL TABLE ConnectsToRoi(FROM Neuron TO Neuron, roi_pre STRING, roi_post STRING, weight INT64)"
        )

    def load(self) -> dict:
        """Build the graph from the release (replacing any previous one). Returns steps' seconds and counts.

        ``ram`` reads syn-points' and syn-partners' columns whole and groups them with pyarrow; ``stream``
        copies the neuron-level tables of baselines.stream_neuron_tables (the feathers read one record
        batch at a time: bounded memory); ``auto`` streams when the whole-column load's projected peak
        (syn-partners' rows x LOAD_PEAK_BYTES_PER_SYNAPSE) passes baselines.MEMORY_LIMIT_BYTES."""
        import baselines  # here, not at the top: baselines imports this module

        rows = baselines.feather_rows(self.release / _files()["syn-partners"])
        projected = rows * LOAD_PEAK_BYTES_PER_SYNAPSE
        mode = self.mode_requested
        if mode == "auto":
            mode = "ram" if projected <= baselines.MEMORY_LIMIT_BYTES else "stream"
        info = self._load_streamed(baselines) if mode == "stream" else self._load_whole()
        info.update(
            mode=mode,
            mode_requested=self.mode_requested,
            synapse_rows=rows,
            projected_in_ram_peak_bytes=projected,
            memory_limit_bytes=baselines.MEMORY_LIMIT_BYTES,
        )
        return info

    def _load_streamed(self, baselines) -> dict:
        import pyarrow as pa

        started = time.perf_counter()
        self.close()
        if self.db_dir.exists():
            shutil.rmtree(self.db_dir)
        self.db_dir.mkdir(parents=True)
        t = baselines.stream_neuron_tables(self.release, _files())
        steps = {f"stream: {k}": v for k, v in t["steps"].items()}
        mark = time.perf_counter()
        eng = baselines.PandasEngine(self.release, mode="stream")  # its neuron table, from the same rows
        eng._set_neurons(t["ann"], t["stats"])
        nd = eng.neurons
        seg_table = pa.table(
            {
                "bodyId": pa.array(nd["bodyId"].to_numpy(), pa.int64()),
                "type": _text(nd["type"]),
                "instance": _text(nd["instance"]),
                "status": _text(nd["status"]),
                "pre": pa.array(nd["pre"].to_numpy(), pa.int64()),
                "post": pa.array(nd["post"].to_numpy(), pa.int64()),
            }
        )
        neurons = eng.neuron_ids
        pre, post, w = t["weights"]
        nn = baselines.member(neurons, pre) & baselines.member(neurons, post)
        w = pa.table({"body_pre": pre[nn], "body_post": post[nn], "weight": w[nn]})
        rc = t["roi_counts"]
        in_roi = pa.table(
            {
                "from": pa.array(rc["bodyId"].to_numpy(), pa.int64()),
                "to": pa.array(rc["roi"].astype(str).tolist(), pa.string()),
                "pre": pa.array(rc["pre"].to_numpy(), pa.int64()),
                "post": pa.array(rc["post"].to_numpy(), pa.int64()),
            }
        )
        rois = t["rois"]  # sorted primary ROI names, then <unspecified>; code -1: no t-bar / no ROI
        names = sorted((set(rois[:-1]) | set(in_roi["to"].to_pylist())) - {UNSPEC})
        roi_table = pa.table({"name": pa.array(names, pa.string())})
        c4 = t["conn4"]
        named = np.append(rois, None)  # code -1 -> None; <unspecified> kept as text, as the whole-column load
        edges = pa.table(
            {
                "from": pa.array(c4["body_pre"].to_numpy(), pa.int64()),
                "to": pa.array(c4["body_post"].to_numpy(), pa.int64()),
                "roi_pre": pa.array(named[c4["roi_pre"].to_numpy()].tolist(), pa.string()),
                "roi_post": pa.array(named[c4["roi_post"].to_numpy()].tolist(), pa.string()),
                "weight": pa.array(c4["weight"].to_numpy(), pa.int64()),
            }
        )
        del t, eng, nd, c4, rc
        steps["tables for the graph"] = round(time.perf_counter() - mark, 3)
        mark = time.perf_counter()
        self._open()
        self._create_schema()
        # COPY ... FROM <name> scans the Arrow table bound to that local name
        self.con.execute("COPY Neuron FROM seg_table")
        self.con.execute("COPY ConnectsTo FROM w")
        self.con.execute("COPY Roi FROM roi_table")
        self.con.execute("COPY InRoi FROM in_roi")
        self.con.execute("COPY ConnectsToRoi FROM edges")
        self.con.execute("CHECKPOINT")
        steps["copy into the graph"] = round(time.perf_counter() - mark, 3)
        counts = {
            "Neuron": seg_table.num_rows,
            "ConnectsTo": w.num_rows,
            "Roi": roi_table.num_rows,
            "InRoi": in_roi.num_rows,
            "ConnectsToRoi": edges.num_rows,
        }
        return self._loaded(started, steps, counts)

    def _loaded(self, started: float, steps: dict, counts: dict) -> dict:
        """Record and return what a load did: time, steps, row counts and the database's size on disk."""
        size = sum(p.stat().st_size for p in self.db_dir.rglob("*") if p.is_file())
        self.load_info = {
            "seconds": time.perf_counter() - started,
            "steps": steps,
            "counts": counts,
            "disk_bytes": size,
            "package": self.package,
            "version": self.version,
            "buffer_pool_bytes": self.buffer_pool_bytes,
        }
        return self.load_info

    def _load_whole(self) -> dict:
        import pyarrow as pa
        import pyarrow.compute as pc

        started = time.perf_counter()
        steps, counts = {}, {}
        t = time.perf_counter()

        def step(name):
            nonlocal t
            now = time.perf_counter()
            steps[name] = round(now - t, 3)
            t = now

        self.close()
        if self.db_dir.exists():
            shutil.rmtree(self.db_dir)
        self.db_dir.mkdir(parents=True)
        files = _files()
        rel = self.release

        # ---- Segment nodes and the :Neuron rule
        ann = _read(
            rel / files["annotations"], ["bodyId", "status", "instance", *[c for c in NAMED if c != "instance"]]
        )
        ann = pa.table({c: _decode(ann[c]) for c in ann.column_names}).to_pandas()
        st = _read(rel / files["stats"], ["body", "pre", "post", "synweight"]).to_pandas()
        status = ann["status"].astype(object)
        flag = ann[NAMED].notna().any(axis=1) | status.isin(["Traced", "Anchor"])
        big = (st["synweight"] >= 100) | (st["pre"] >= 100) | (st["post"] >= 100)
        neurons = np.union1d(ann["bodyId"].to_numpy()[flag.to_numpy()], st["body"].to_numpy()[big.to_numpy()])
        excluded = ann["bodyId"].to_numpy()[status.isin(["Glia", "Unimportant"]).to_numpy()]
        neurons = neurons[~pd.Series(neurons).isin(excluded).to_numpy()]
        bodies = neurons  # a Neuron node table: the :Neuron rule applied once, here
        seg = pd.DataFrame({"bodyId": bodies})
        a = ann.drop_duplicates("bodyId").set_index("bodyId").reindex(bodies)
        s = st.drop_duplicates("body").set_index("body").reindex(bodies)
        seg["type"] = a["type"].to_numpy()
        seg["instance"] = a["instance"].to_numpy()
        seg["status"] = a["status"].to_numpy()
        seg["pre"] = s["pre"].fillna(0).astype(np.int64).to_numpy()
        seg["post"] = s["post"].fillna(0).astype(np.int64).to_numpy()
        seg_table = pa.Table.from_pandas(seg, preserve_index=False).cast(
            pa.schema(
                [
                    ("bodyId", pa.int64()),
                    ("type", pa.string()),
                    ("instance", pa.string()),
                    ("status", pa.string()),
                    ("pre", pa.int64()),
                    ("post", pa.int64()),
                ]
            )
        )
        del ann, st, seg, a, s
        counts["Neuron"] = len(neurons)
        step("prepare neurons")

        self._open()
        c = self.con
        self._create_schema()
        c.execute("COPY Neuron FROM seg_table")
        del seg_table
        step("copy Neuron")

        # ---- ConnectsTo: connectome-weights rows between two neurons
        neuron_arr = pa.array(neurons, pa.int64())
        w = _read(rel / files["weights"], ["body_pre", "body_post", "weight"])
        w = w.filter(
            pc.and_(pc.is_in(w["body_pre"], value_set=neuron_arr), pc.is_in(w["body_post"], value_set=neuron_arr))
        )
        counts["ConnectsTo"] = w.num_rows
        c.execute("COPY ConnectsTo FROM w")
        del w
        step("copy ConnectsTo")

        # ---- Roi nodes + InRoi (per-neuron, per-primary-ROI point counts) from syn-points
        pts = _read(rel / files["syn-points"], ["body", "kind", "primary"])
        pts = pts.filter(pc.is_in(pts["body"], value_set=neuron_arr))
        pts = pa.table({"body": pts["body"], "kind": _decode(pts["kind"]), "roi": _decode(pts["primary"])})
        pts = pts.filter(pc.not_equal(pts["roi"], UNSPEC))
        g = pts.group_by(["body", "roi", "kind"]).aggregate([([], "count_all")]).to_pandas()
        del pts
        g = g.pivot_table(index=["body", "roi"], columns="kind", values="count_all", fill_value=0).reset_index()
        for k in ("PreSyn", "PostSyn"):
            if k not in g:
                g[k] = 0
        in_roi = pa.table(
            {
                "from": pa.array(g["body"].to_numpy(), pa.int64()),
                "to": pa.array(g["roi"].astype(str).to_numpy(), pa.string()),
                "pre": pa.array(g["PreSyn"].to_numpy(), pa.int64()),
                "post": pa.array(g["PostSyn"].to_numpy(), pa.int64()),
            }
        )
        del g
        step("prepare InRoi")
        tb = _read(rel / files["tbar-nt"], ["point_id", "primary"])
        part = _read(rel / files["syn-partners"], ["x_pre", "y_pre", "z_pre", "body_pre", "body_post", "primary_post"])
        rois = set(in_roi["to"].to_pylist())
        for col in (tb["primary"], part["primary_post"]):
            for chunk in col.chunks:
                rois.update(
                    v
                    for v in (chunk.dictionary if hasattr(chunk, "dictionary") else pc.unique(chunk)).to_pylist()
                    if v is not None
                )
        rois.discard(UNSPEC)
        roi_table = pa.table({"name": pa.array(sorted(rois), pa.string())})
        counts["Roi"] = roi_table.num_rows
        c.execute("COPY Roi FROM roi_table")
        c.execute("COPY InRoi FROM in_roi")
        counts["InRoi"] = in_roi.num_rows
        del in_roi
        step("copy Roi, InRoi")

        # ---- ConnectsToRoi: syn-partners between neurons, counted per (pre, post, ROI of pre point, ROI of post point)
        keep = pc.and_(
            pc.is_in(part["body_pre"], value_set=neuron_arr), pc.is_in(part["body_post"], value_set=neuron_arr)
        )
        part = part.filter(keep)
        u64 = pa.uint64()
        pid = pc.bit_wise_or(
            pc.bit_wise_or(
                pc.shift_left(part["z_pre"].cast(u64), pa.scalar(42, u64)),
                pc.shift_left(part["y_pre"].cast(u64), pa.scalar(21, u64)),
            ),
            part["x_pre"].cast(u64),
        )
        part = pa.table(
            {
                "point_id": pid,
                "body_pre": part["body_pre"],
                "body_post": part["body_post"],
                "roi_post": _decode(part["primary_post"]),
            }
        )
        tb = pa.table({"point_id": tb["point_id"].cast(u64), "roi_pre": _decode(tb["primary"])})
        tb = tb.filter(pc.is_in(tb["point_id"], value_set=pc.unique(part["point_id"])))
        joined = part.join(tb, "point_id", join_type="left outer")
        del part, tb
        g = joined.group_by(["body_pre", "body_post", "roi_pre", "roi_post"]).aggregate([([], "count_all")])
        del joined
        edges = pa.table(
            {
                "from": g["body_pre"],
                "to": g["body_post"],
                "roi_pre": g["roi_pre"],
                "roi_post": g["roi_post"],
                "weight": g["count_all"].cast(pa.int64()),
            }
        )
        del g
        step("prepare ConnectsToRoi")
        c.execute("COPY ConnectsToRoi FROM edges")
        counts["ConnectsToRoi"] = edges.num_rows
        del edges
        step("copy ConnectsToRoi")
        c.execute("CHECKPOINT")
        step("checkpoint")
        return self._loaded(started, steps, counts)

    # ------------------------------------------------------------------------------ helpers
    def q(self, cypher: str, params: dict | None = None) -> pd.DataFrame:
        res = self.con.execute(cypher, params or {})
        df = res.get_as_df()
        res.close()
        return df

    # ------------------------------------------------------------------------------ fetch_neurons
    def _neuron_table(self, match: str, params: dict):
        nd = self.q(
            f"""{match}
            RETURN n.bodyId AS bodyId, n.type AS type, n.instance AS instance, n.status AS status, n.pre AS pre,
                   n.post AS post""",
            params,
        )
        roi = self.q(
            """UNWIND $ids AS id MATCH (n:Neuron {bodyId: id})-[r:InRoi]->(x:Roi)
            RETURN n.bodyId AS bodyId, x.name AS roi, r.pre AS pre, r.post AS post""",
            {"ids": [int(b) for b in nd["bodyId"]]},
        )
        return {"neurons": nd, "rois": roi}

    def neurons_by_type(self, p):
        return self._neuron_table("MATCH (n:Neuron) WHERE n.type = $type", {"type": p["type"]})

    def neurons_by_regex(self, p):
        return self._neuron_table("MATCH (n:Neuron) WHERE n.type =~ $regex", {"regex": p["regex"]})

    def neurons_by_roi(self, p):
        return self._neuron_table("MATCH (n:Neuron)-[:InRoi]->(:Roi {name: $roi}) WITH DISTINCT n", {"roi": p["roi"]})

    # ------------------------------------------------------------------------------ fetch_adjacencies
    def adjacencies(self, p):
        ids = [int(b) for b in p["bodies"]]
        roi = f"CASE WHEN r.roi_post = '{UNSPEC}' THEN 'NotPrimary' ELSE r.roi_post END"
        frames = [
            self.q(
                f"""UNWIND $ids AS id MATCH (a:Neuron {{bodyId: id}})-[r:ConnectsToRoi]->(b:Neuron)
                RETURN a.bodyId AS bodyId_pre, b.bodyId AS bodyId_post, {roi} AS roi, sum(r.weight) AS weight""",
                {"ids": ids},
            ),
            self.q(
                f"""UNWIND $ids AS id MATCH (a:Neuron)-[r:ConnectsToRoi]->(b:Neuron {{bodyId: id}})
                RETURN a.bodyId AS bodyId_pre, b.bodyId AS bodyId_post, {roi} AS roi, sum(r.weight) AS weight""",
                {"ids": ids},
            ),
        ]
        return {"adjacency": pd.concat(frames, ignore_index=True)}

    def adjacencies_segments(self, p):
        raise NotRun(
            "the graph holds Neuron nodes and neuron-to-neuron edges only (every segment's per-ROI "
            "edges would be all of syn-partners grouped: ~18 M edges at scale 0.1)"
        )

    def synapse_pair(self, p):
        raise NotRun(
            "synapse-level data is not loaded into the graph (between neurons alone 13 M synapse "
            "edges at scale 0.1, ~134 M at full scale); the graph holds neuron-to-neuron edges "
            "and per-ROI aggregates"
        )

    # ------------------------------------------------------------------------------ fetch_shortest_paths
    def shortest_paths(self, p):
        from baselines import paths_frame

        df = self.q(
            f"""MATCH (a:Neuron)-[e:ConnectsTo* ALL SHORTEST 1..{MAX_PATH_HOPS}
                (r, n | WHERE r.weight >= {PATH_MIN_WEIGHT} AND n.status = 'Traced')]->(b:Neuron)
            WHERE a.bodyId = $src AND b.bodyId = $dst
            RETURN properties(nodes(e), 'bodyId') AS mid""",
            {"src": int(p["src"]), "dst": int(p["dst"])},
        )
        return {"paths": paths_frame([[int(p["src"]), *[int(x) for x in mid], int(p["dst"])] for mid in df["mid"]])}

    # ------------------------------------------------------------------------------ connection_matrix
    def matrix_type(self, p):
        return {
            "matrix": self.q("""MATCH (a:Neuron)-[r:ConnectsTo]->(b:Neuron)
            WHERE a.type IS NOT NULL AND b.type IS NOT NULL
            RETURN a.type AS pre, b.type AS post, sum(r.weight) AS weight, count(*) AS connections""")
        }

    def matrix_roi(self, p):
        # one ConnectsToRoi edge per (pre, post, roi_pre, roi_post): count(*) is the number of neuron pairs
        return {
            "matrix": self.q(f"""MATCH (a:Neuron)-[r:ConnectsToRoi]->(b:Neuron)
            WHERE r.roi_pre IS NOT NULL AND r.roi_pre <> '{UNSPEC}' AND r.roi_post <> '{UNSPEC}'
            RETURN r.roi_pre AS pre, r.roi_post AS post, sum(r.weight) AS weight, count(*) AS connections""")
        }

    # ------------------------------------------------------------------------------ fetch_reach
    def reach(self, p):
        seeds = [int(b) for b in p["bodies"]]
        df = self.q(
            f"""UNWIND $ids AS id MATCH (a:Neuron {{bodyId: id}})-[e:ConnectsTo* SHORTEST 1..{int(p["hops"])}
                (r, n | WHERE r.weight >= 1)]->(b:Neuron)
            RETURN b.bodyId AS bodyId, min(length(e)) AS hops""",
            {"ids": seeds},
        )
        df = df[~df["bodyId"].isin(set(seeds))]
        return {
            "reach": pd.DataFrame(
                {
                    "bodyId": seeds + df["bodyId"].astype(np.int64).tolist(),
                    "hops": [0] * len(seeds) + df["hops"].astype(np.int64).tolist(),
                }
            )
        }
