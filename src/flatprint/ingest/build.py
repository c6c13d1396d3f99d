"""Build a store (one DuckDB file) from a validated release, streaming, atomically.

Tables are laid out for the queries neuprint-python sends (docs/store.md):

* ``segments``: one row per body (body-stats ∪ annotations) with every neuPrint property, roiInfo
  (JSON text) and ``is_neuron`` (decisions.md's :Neuron rule); sorted by bodyId.
* ``segment_rois``: per body and ROI (every level of the hierarchy): pre, post, downstream, upstream,
  synweight; sorted by roi then bodyId, so a ROI filter reads a contiguous range.
* ``connections`` (sorted by body_pre, body_post) and ``connections_by_post`` (sorted by body_post,
  body_pre): weight and weightHP per body pair. Two sorted copies make zone maps the access path for
  both directions (performance-anchors.md).
* ``connection_rois``: weight per body pair and ROI of the post-synaptic point, every level.
* ``synapses``: every synapse point with a dense stable id, body, kind, location, confidence, ROI
  labels and T-bar neurotransmitter probabilities; sorted by body, kind.
* ``partners``: every pre->post synapse pair with both ids, bodies, locations, confidences and ROIs;
  sorted by body_pre, body_post.
* ``rois``, ``roi_map`` and ``meta``: the hierarchy, label -> ROI expansion, and the Meta record.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import signal
import time
import uuid
from pathlib import Path

import duckdb

from flatprint import __version__
from flatprint.errors import ReleaseError, StoreError
from flatprint.ingest.validate import ReleaseFiles, validate_release
from flatprint.io.feather import batch_reader
from flatprint.progress import make_progress
from flatprint.release import tables as T

STORE_FORMAT = 2  # 2: ConnectsTo roiInfo `pre` counts distinct T-bars at grouping ROIs too
POST_HP_THRESHOLD = 0.7  # neuPrint's postHPThreshold for male-cns (weightHP)
PRE_HP_THRESHOLD = 0.0
NEURON_SYNWEIGHT_MIN = 100
NEURON_PROPERTY_NULL_CHECK = ("rootLocation", "somaLocation", "class", "type", "instance", "group",
                              "somaSide", "synonyms")
NT_PROPERTY = {c: "nt" + c[3:-5].capitalize() + "Prob" for c in T.NT_PROB_COLUMNS}  # nt_gaba_prob -> ntGabaProb


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class _Stage:
    """Progress per table plus timing for the summary."""

    def __init__(self, progress):
        self.progress = progress
        self.timings: dict[str, float] = {}

    def stream(self, con, name: str, path: Path, columns: list[str], rows: int):
        task = self.progress.add_task(f"reading {path.name}", total=rows)
        reader = batch_reader(path, columns, on_batch=lambda n: self.progress.advance(task, n))
        return reader

    def step(self, label: str, con, sql: str):
        task = self.progress.add_task(label, total=1)
        started = time.perf_counter()
        con.execute(sql)
        self.timings[label] = time.perf_counter() - started
        self.progress.advance(task)


def _roi_hierarchy(files: ReleaseFiles, con) -> dict:
    """The ROI tree: roi-hierarchy.json when the release has it, else major -> primary from the data."""
    path = files.root / "roi-hierarchy.json"
    if path.exists():
        try:
            doc = json.loads(path.read_text())
            return doc["roiHierarchy"]
        except (ValueError, KeyError) as exc:
            raise ReleaseError(f"roi-hierarchy.json: unreadable ({exc})") from None
    # Without a published tree, group each primary ROI under the major region most of its points lie in.
    children: dict[str, list[str]] = {}
    if "major" in files.roi_sets:
        rows = con.execute(f"""
            SELECT p, arg_max(m, n) FROM (
              SELECT primary_roi AS p, major_roi AS m, count(*) AS n FROM raw_points
              WHERE primary_roi <> {_lit(T.UNSPECIFIED)} GROUP BY ALL) GROUP BY p""").fetchall()
        for p, m in rows:
            children.setdefault(m if m != T.UNSPECIFIED else "CNS", []).append(p)
    else:
        rows = con.execute(f"SELECT DISTINCT primary_roi FROM raw_points WHERE primary_roi <> {_lit(T.UNSPECIFIED)}").fetchall()
        children["CNS"] = [r[0] for r in rows]
    tree = {"name": "CNS", "children": []}
    for major, prims in sorted(children.items()):
        leaves = [{"name": p} for p in sorted(prims)]
        if major == "CNS":
            tree["children"] += leaves
        else:
            tree["children"].append({"name": major, "children": leaves})
    return tree


def _flatten(tree: dict, parent: str | None = None, depth: int = 0, out=None) -> list[tuple[str, str | None, int]]:
    out = [] if out is None else out
    out.append((tree["name"], parent, depth))
    for child in tree.get("children", []):
        _flatten(child, tree["name"], depth + 1, out)
    return out


def _source_checksum(files: ReleaseFiles) -> str:
    """Hash of the release manifest if present, else of file names, sizes and mtimes."""
    manifest = files.root / "manifest.json"
    h = hashlib.sha256()
    if manifest.exists():
        h.update(manifest.read_bytes())
    else:
        for key, path in sorted(files.paths.items()):
            st = path.stat()
            h.update(f"{path.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()


def _build(con, files: ReleaseFiles, stage: _Stage, dataset: str, tag: str) -> dict:
    rows = files.rows
    roi_sets = files.roi_sets
    pts_schema = files.schemas["syn-points"]

    # ---- raw points: ROI names and labels per set
    point_cols = ["x", "y", "z", "kind", "conf", "body"] + [c for s in roi_sets for c in (s, f"{s}_label")]
    has_compartment = "compartment" in pts_schema.names
    if has_compartment:
        point_cols.append("compartment")
    reader = stage.stream(con, "points", files.paths["syn-points"], point_cols, rows["syn-points"])
    roi_select = ", ".join(f"CAST({_q(s)} AS VARCHAR) AS {_q(s + '_roi')}, CAST({_q(s + '_label')} AS INTEGER) AS {_q(s + '_label')}"
                           for s in roi_sets)
    con.register("points_stream", reader)
    con.execute(f"""
        CREATE TEMP TABLE raw_points AS
        SELECT CAST(x AS INTEGER) AS x, CAST(y AS INTEGER) AS y, CAST(z AS INTEGER) AS z,
               CAST(kind AS VARCHAR) AS kind, CAST(conf AS FLOAT) AS conf, CAST(body AS BIGINT) AS body,
               {roi_select}
               {", CAST(compartment AS VARCHAR) AS compartment" if has_compartment else ", NULL::VARCHAR AS compartment"}
        FROM points_stream""")
    con.unregister("points_stream")
    bad = con.execute("SELECT count(*) FROM raw_points WHERE kind NOT IN ('PreSyn', 'PostSyn')").fetchall()[0][0]
    if bad:
        raise ReleaseError(f"{files.paths['syn-points'].name}: column 'kind' has {bad} values other than PreSyn/PostSyn")

    # ---- ROI hierarchy and label -> ROI expansion (a point counts in its ROI and every ancestor)
    tree = _roi_hierarchy(files, con)
    flat = _flatten(tree)
    parent_of = {name: parent for name, parent, _ in flat}
    root = flat[0][0]
    label_names: dict[str, dict[int, str]] = {}
    for s in roi_sets:
        pairs = con.execute(f"SELECT DISTINCT {_q(s + '_label')}, {_q(s + '_roi')} FROM raw_points").fetchall()
        label_names[s] = {int(label): name for label, name in pairs if name != T.UNSPECIFIED and label}
    primary_names = set(label_names["primary"].values())
    major_names = set(label_names.get("major", {}).values())
    con.execute("CREATE TABLE rois (roi VARCHAR, parent VARCHAR, depth INTEGER, is_primary BOOLEAN, roi_set VARCHAR, label INTEGER)")
    for name, parent, depth in flat:
        if name == root:
            continue
        rset = "primary" if name in primary_names else ("major" if name in major_names else None)
        label = next((lab for lab, n in label_names.get(rset, {}).items() if n == name), None) if rset else None
        con.execute("INSERT INTO rois VALUES (?, ?, ?, ?, ?, ?)",
                    [name, None if parent == root else parent, depth, name in primary_names, rset, label])
    # A data ROI missing from the tree still counts (under the root).
    for s in ("primary", "major"):
        for label, name in label_names.get(s, {}).items():
            if name not in parent_of:
                con.execute("INSERT INTO rois VALUES (?, NULL, 1, ?, ?, ?)", [name, s == "primary", s, label])
                parent_of[name] = root
    # roi_map: (set, label) -> every ROI it counts under. The major set contributes only its major
    # region; the primary set contributes itself and its ancestors below the major level, so no
    # synapse is counted twice under one ROI.
    con.execute("CREATE TABLE roi_map (roi_set VARCHAR, label INTEGER, roi VARCHAR)")
    for s in ("primary", "major"):
        for label, name in label_names.get(s, {}).items():
            names = [name]
            if s == "primary":
                p = parent_of.get(name)
                while p and p != root and p not in major_names:
                    names.append(p)
                    p = parent_of.get(p)
                if "major" not in roi_sets:  # no major column: the primary's ancestors carry it
                    while p and p != root:
                        names.append(p)
                        p = parent_of.get(p)
            con.executemany("INSERT INTO roi_map VALUES (?, ?, ?)", [[s, label, n] for n in names])
    major_label_expr = '"major_label"' if "major" in roi_sets else "0"

    # ---- synapses with dense stable ids and T-bar NT probabilities
    tb_cols = ["point_id", "body"] + [c for c in T.NT_PROB_COLUMNS]
    reader = stage.stream(con, "tbar-nt", files.paths["tbar-nt"], tb_cols, rows["tbar-nt"])
    con.register("tbar_stream", reader)
    nt_select = ", ".join(f"CAST({c} AS FLOAT) AS {_q(NT_PROPERTY[c])}" for c in T.NT_PROB_COLUMNS)
    con.execute(f"CREATE TEMP TABLE tbar_nt AS SELECT CAST(point_id AS UBIGINT) AS point_id, {nt_select} FROM tbar_stream")
    con.unregister("tbar_stream")
    nt_cols = ", ".join(f"t.{_q(v)}" for v in NT_PROPERTY.values())
    stage.step("synapses", con, f"""
        CREATE TABLE synapses AS
        WITH p AS (
          SELECT *, (CAST(z AS UBIGINT) << 42) | (CAST(y AS UBIGINT) << 21) | CAST(x AS UBIGINT) AS point_id
          FROM raw_points)
        SELECT CAST(row_number() OVER (ORDER BY p.body, p.kind DESC, p.point_id) - 1 AS BIGINT) AS syn_id,
               p.point_id, p.body, CASE p.kind WHEN 'PreSyn' THEN 'pre' ELSE 'post' END AS kind,
               p.x, p.y, p.z, p.conf,
               CAST(p.primary_label AS USMALLINT) AS primary_label,
               CAST({major_label_expr} AS USMALLINT) AS major_label,
               p.compartment, {nt_cols}
        FROM p LEFT JOIN tbar_nt t ON p.kind = 'PreSyn' AND t.point_id = p.point_id
        ORDER BY p.body, p.kind DESC, p.point_id""")
    con.execute("DROP TABLE tbar_nt")
    con.execute("DROP TABLE raw_points")
    n_syn = con.execute("SELECT count(*), count(DISTINCT point_id) FROM synapses").fetchall()[0]
    if n_syn[0] != n_syn[1]:
        raise ReleaseError(f"{files.paths['syn-points'].name}: {n_syn[0] - n_syn[1]} duplicate point locations")

    # ---- partners: both ends resolved to synapse ids (every partner location must be a point)
    part_cols = [f.name for f in T.SYN_PARTNERS]
    reader = stage.stream(con, "partners", files.paths["syn-partners"], part_cols, rows["syn-partners"])
    con.register("partners_stream", reader)
    con.execute("""
        CREATE TEMP TABLE raw_partners AS
        SELECT (CAST(z_pre AS UBIGINT) << 42) | (CAST(y_pre AS UBIGINT) << 21) | CAST(x_pre AS UBIGINT) AS pre_point,
               (CAST(z_post AS UBIGINT) << 42) | (CAST(y_post AS UBIGINT) << 21) | CAST(x_post AS UBIGINT) AS post_point,
               CAST(body_pre AS BIGINT) AS body_pre, CAST(body_post AS BIGINT) AS body_post,
               CAST(conf_pre AS FLOAT) AS conf_pre, CAST(conf_post AS FLOAT) AS conf_post
        FROM partners_stream""")
    con.unregister("partners_stream")
    # Resolving both ends joins against every synapse point. One hash join over all points does not fit
    # a bounded memory_limit at full scale (it ran out of memory at scale 0.1 with 3 GB), so the join
    # runs in passes over point_id buckets; each pass builds a hash table over 1/K of the points.
    passes = _join_passes(con, rows["syn-points"])
    _resolve_end(con, "raw_partners", "pre_resolved", "pre", passes)
    _resolve_end(con, "pre_resolved", "resolved", "post", passes)
    stage.step("partners", con, """
        CREATE TABLE partners AS
        SELECT body_pre, body_post, pre_id, post_id, x_pre, y_pre, z_pre, x_post, y_post, z_post,
               conf_pre, conf_post, primary_label_pre, major_label_pre, primary_label_post, major_label_post
        FROM resolved ORDER BY body_pre, body_post, pre_id, post_id""")
    con.execute("DROP TABLE resolved")
    missing = con.execute("SELECT count(*) FILTER (pre_id IS NULL), count(*) FILTER (post_id IS NULL) FROM partners").fetchall()[0]
    if missing[0] or missing[1]:
        raise ReleaseError(
            f"{files.paths['syn-partners'].name}: {missing[0]} pre and {missing[1]} post locations are not in "
            f"{files.paths['syn-points'].name}")

    # ---- connections and their per-ROI weights (ROI of the post-synaptic point)
    stage.step("connections", con, f"""
        CREATE TABLE connections AS
        SELECT body_pre, body_post, count(*)::BIGINT AS weight,
               count(*) FILTER (conf_post >= {POST_HP_THRESHOLD} AND conf_pre >= {PRE_HP_THRESHOLD})::BIGINT AS weight_hp
        FROM partners GROUP BY body_pre, body_post ORDER BY body_pre, body_post""")
    con.execute("CREATE TABLE connections_by_post AS SELECT * FROM connections ORDER BY body_post, body_pre")
    con.execute("""
        CREATE TEMP TABLE pair_labels AS
        SELECT body_pre, body_post, primary_label_post AS pl, major_label_post AS ml,
               count(*) AS post, count(DISTINCT pre_id) AS pre
        FROM partners GROUP BY ALL""")
    # `pre` counts distinct T-bars per ROI. Summing the per-label counts up the hierarchy counts a
    # T-bar twice when its PSDs on one partner lie in two ROIs of one grouping (LegNp(T1)(L) and
    # LegNp(T2)(L) under VNC): correct exactly for those few T-bars instead of expanding every row.
    con.execute("""
        CREATE TEMP TABLE split_tbars AS
        SELECT pre_id, body_post FROM partners GROUP BY pre_id, body_post
        HAVING min(primary_label_post) <> max(primary_label_post) OR min(major_label_post) <> max(major_label_post)""")
    con.execute("""
        CREATE TEMP TABLE pre_overcount AS
        WITH combos AS (
          SELECT DISTINCT p.body_pre, p.body_post, p.pre_id, p.primary_label_post AS pl, p.major_label_post AS ml
          FROM partners p SEMI JOIN split_tbars s ON s.pre_id = p.pre_id AND s.body_post = p.body_post),
        expanded AS (
          SELECT body_pre, body_post, pre_id, m.roi FROM combos JOIN roi_map m ON m.roi_set = 'primary' AND m.label = pl
          UNION ALL
          SELECT body_pre, body_post, pre_id, m.roi FROM combos JOIN roi_map m ON m.roi_set = 'major' AND m.label = ml)
        SELECT body_pre, body_post, roi, count(*) - count(DISTINCT pre_id) AS over
        FROM expanded GROUP BY ALL HAVING count(*) > count(DISTINCT pre_id)""")
    stage.step("connection ROIs", con, """
        CREATE TABLE connection_rois AS
        WITH expanded AS (
          SELECT body_pre, body_post, m.roi, post, pre FROM pair_labels JOIN roi_map m ON m.roi_set = 'primary' AND m.label = pl
          UNION ALL
          SELECT body_pre, body_post, m.roi, post, pre FROM pair_labels JOIN roi_map m ON m.roi_set = 'major' AND m.label = ml),
        summed AS (
          SELECT body_pre, body_post, roi, sum(post)::BIGINT AS weight, sum(pre)::BIGINT AS pre
          FROM expanded GROUP BY ALL)
        SELECT s.body_pre, s.body_post, s.roi, s.weight, (s.pre - coalesce(o.over, 0))::BIGINT AS pre
        FROM summed s LEFT JOIN pre_overcount o USING (body_pre, body_post, roi)
        ORDER BY body_pre, body_post, roi""")
    con.execute("DROP TABLE pair_labels")
    con.execute("DROP TABLE split_tbars")
    con.execute("DROP TABLE pre_overcount")
    # A second copy sorted by the post side, so upstream per-ROI lookups read a range too.
    con.execute("CREATE TABLE connection_rois_by_post AS SELECT * FROM connection_rois ORDER BY body_post, body_pre, roi")

    # ---- per-body, per-ROI counts
    # Materialized one step at a time: each statement stays within the memory limit (as one
    # statement it ran out of memory at scale 0.1 with 3 GB).
    con.execute("CREATE TEMP TABLE tbar_down AS SELECT pre_id, count(*) AS n FROM partners GROUP BY pre_id")
    con.execute("""
        CREATE TEMP TABLE body_labels AS
        SELECT s.body, s.primary_label AS pl, s.major_label AS ml,
               count(*) FILTER (s.kind = 'pre') AS pre, count(*) FILTER (s.kind = 'post') AS post,
               coalesce(sum(d.n), 0) AS downstream
        FROM synapses s LEFT JOIN tbar_down d ON d.pre_id = s.syn_id GROUP BY ALL""")
    con.execute("DROP TABLE tbar_down")
    stage.step("segment ROIs", con, """
        CREATE TABLE segment_rois AS
        WITH expanded AS (
          SELECT body, m.roi, pre, post, downstream FROM body_labels JOIN roi_map m ON m.roi_set = 'primary' AND m.label = pl
          UNION ALL
          SELECT body, m.roi, pre, post, downstream FROM body_labels JOIN roi_map m ON m.roi_set = 'major' AND m.label = ml)
        SELECT body AS bodyId, roi, sum(pre)::BIGINT AS pre, sum(post)::BIGINT AS post,
               sum(downstream)::BIGINT AS downstream, sum(post)::BIGINT AS upstream,
               (sum(downstream) + sum(post))::BIGINT AS synweight
        FROM expanded GROUP BY ALL ORDER BY roi, bodyId""")
    con.execute("DROP TABLE body_labels")

    # ---- segments: stats + annotations + neurotransmitters + roiInfo
    for key, name in (("stats", "raw_stats"), ("annotations", "raw_ann"), ("neurotransmitters", "raw_nt")):
        reader = stage.stream(con, key, files.paths[key], None, rows[key])
        con.register("s", reader)
        con.execute(f"CREATE TEMP TABLE {name} AS SELECT * FROM s")
        con.unregister("s")
    ann_cols = [c for c in con.execute("SELECT * FROM raw_ann LIMIT 0").fetchdf().columns if c != "bodyId"]
    ann_types = _column_types(con, "raw_ann")
    ann_select = []
    for c in ann_cols:
        ctype = ann_types[c]
        if c in ("somaLocation", "tosomaLocation", "rootLocation"):
            ann_select.append(f"CAST(a.{_q(c)} AS BIGINT[]) AS {_q(c)}")
        elif ctype.startswith("ENUM") or c == "statusLabel":
            ann_select.append(f"CAST(a.{_q(c)} AS VARCHAR) AS {_q(c)}")
        elif ctype in ("DOUBLE", "FLOAT") and _whole_numbers(con, "raw_ann", c):
            # Ids and counts (group, mancBodyid, ...) are floats in the feather only because of nulls;
            # neuPrint stores them as integers.
            ann_select.append(f"CAST(a.{_q(c)} AS BIGINT) AS {_q(c)}")
        else:
            ann_select.append(f"a.{_q(c)}")
    nt_cols = [c for c in con.execute("SELECT * FROM raw_nt LIMIT 0").fetchdf().columns
               if c not in ("body", "cell_type", "ground_truth")]
    nt_select = ", ".join(f"nt.{_q(c)} AS {_q(camel(c))}" for c in nt_cols)
    # roiInfo JSON per body, in passes over bodyId buckets: one aggregate over every body keeps all
    # the JSON text in memory at once (it ran out of memory at scale 0.1 with 3 GB).
    con.execute("CREATE TEMP TABLE body_info (bodyId BIGINT, roiInfo VARCHAR)")
    n_rows = con.execute("SELECT count(*) FROM segment_rois").fetchall()[0][0]
    passes = _join_passes(con, n_rows * 4)
    for k in range(passes):
        # JSON text built by string aggregation: ~35 % faster than nested structs -> to_json
        con.execute(f"""
            INSERT INTO body_info
            SELECT bodyId, '{{' || string_agg(to_json(roi)::VARCHAR || ':{{"pre":' || pre || ',"post":' || post
                     || ',"downstream":' || downstream || ',"upstream":' || upstream || ',"synweight":' || synweight
                     || '}}', ',' ORDER BY roi) || '}}'
            FROM segment_rois WHERE bodyId % {passes} = {k} GROUP BY bodyId""")
    stage.step("segments", con, f"""
        CREATE TABLE segments AS
        WITH ids AS (SELECT body AS bodyId FROM raw_stats UNION SELECT bodyId FROM raw_ann),
        info AS (SELECT bodyId, roiInfo FROM body_info)
        SELECT ids.bodyId,
               coalesce(s.pre, 0)::BIGINT AS pre, coalesce(s.post, 0)::BIGINT AS post,
               coalesce(s.post, 0)::BIGINT AS upstream, coalesce(s.downstream, 0)::BIGINT AS downstream,
               coalesce(s.synweight, 0)::BIGINT AS synweight,
               {", ".join(ann_select)},
               {nt_select},
               coalesce(info.roiInfo, '{{}}') AS roiInfo
               {", NULL::BIGINT AS size" if "size" not in ann_cols else ""}
        FROM ids LEFT JOIN raw_stats s ON s.body = ids.bodyId
                 LEFT JOIN raw_ann a ON a.bodyId = ids.bodyId
                 LEFT JOIN raw_nt nt ON nt.body = ids.bodyId
                 LEFT JOIN info ON info.bodyId = ids.bodyId
        ORDER BY ids.bodyId""")
    present = set(con.execute("SELECT * FROM segments LIMIT 0").fetchdf().columns)
    null_checks = " OR ".join(f"{_q(c)} IS NOT NULL" for c in NEURON_PROPERTY_NULL_CHECK if c in present)
    status_check = "status IN ('Traced', 'Anchor')" if "status" in present else "FALSE"
    excluded = "coalesce(status, '') NOT IN ('Unimportant', 'Glia')" if "status" in present else "TRUE"
    con.execute(f"""
        ALTER TABLE segments ADD COLUMN is_neuron BOOLEAN;
        UPDATE segments SET is_neuron = coalesce(
          (synweight >= {NEURON_SYNWEIGHT_MIN} OR pre >= {NEURON_SYNWEIGHT_MIN} OR post >= {NEURON_SYNWEIGHT_MIN}
           {"OR " + null_checks if null_checks else ""} OR coalesce({status_check}, FALSE)) AND {excluded}, FALSE);""")
    for name in ("raw_stats", "raw_ann", "raw_nt", "body_info"):
        con.execute(f"DROP TABLE {name}")

    _load_morphology(con, files.root, stage)

    # ---- Meta
    return _meta(con, files, tree, dataset, tag, ann_cols, nt_cols)


def _load_morphology(con, root: Path, stage: _Stage) -> None:
    """Optional: SWC skeletons and ROI meshes, kept in the store so it stays one self-contained file."""
    import pandas as pd

    swc_dir = root / "skeletons" / "skeletons-swc"
    if swc_dir.is_dir():
        paths = sorted(swc_dir.glob("*.swc"))
        task = stage.progress.add_task("reading skeletons", total=len(paths))
        con.execute("CREATE TABLE skeletons (bodyId BIGINT, swc VARCHAR)")
        for start in range(0, len(paths), 2000):
            chunk = paths[start:start + 2000]
            rows = []
            for path in chunk:
                try:
                    rows.append((int(path.stem), path.read_text()))
                except ValueError:
                    raise ReleaseError(f"skeletons-swc/{path.name}: file name is not a body id") from None
            frame = pd.DataFrame(rows, columns=["bodyId", "swc"])
            con.register("skeleton_chunk", frame)
            con.execute("INSERT INTO skeletons SELECT * FROM skeleton_chunk")
            con.unregister("skeleton_chunk")
            stage.progress.advance(task, len(chunk))
        con.execute("CREATE TABLE skeletons_sorted AS SELECT * FROM skeletons ORDER BY bodyId")
        con.execute("DROP TABLE skeletons")
        con.execute("ALTER TABLE skeletons_sorted RENAME TO skeletons")
    index = root / "rois" / "meshes" / "index.json"
    if index.exists():
        try:
            names = json.loads(index.read_text())
        except ValueError:
            raise ReleaseError("rois/meshes/index.json: not valid JSON") from None
        con.execute("CREATE TABLE roi_meshes (roi VARCHAR, obj VARCHAR)")
        for roi, fname in sorted(names.items()):
            mesh = index.parent / fname
            if not mesh.exists():
                raise ReleaseError(f"rois/meshes/{fname}: listed in index.json for {roi!r} but missing")
            con.execute("INSERT INTO roi_meshes VALUES (?, ?)", [roi, mesh.read_text()])


def _resolve_end(con, source: str, target: str, end: str, passes: int) -> None:
    """Copy ``source`` into ``target`` adding one partner end's ('pre'/'post') synapse id, location
    and ROI labels, joining point_id bucket by bucket; ``source`` is dropped afterwards."""
    con.execute(f"""
        CREATE TEMP TABLE {target} AS SELECT *, NULL::BIGINT AS {end}_id, NULL::INTEGER AS x_{end},
          NULL::INTEGER AS y_{end}, NULL::INTEGER AS z_{end}, NULL::USMALLINT AS primary_label_{end},
          NULL::USMALLINT AS major_label_{end} FROM {source} LIMIT 0""")
    for k in range(passes):
        con.execute(f"""
            INSERT INTO {target}
            SELECT r.*, s.syn_id, s.x, s.y, s.z, s.primary_label, s.major_label
            FROM (SELECT * FROM {source} WHERE {end}_point % {passes} = {k}) r
            LEFT JOIN (SELECT point_id, syn_id, x, y, z, primary_label, major_label FROM synapses
                       WHERE point_id % {passes} = {k}) s ON s.point_id = r.{end}_point""")
    con.execute(f"DROP TABLE {source}")


def _join_passes(con, n_points: int) -> int:
    """How many point_id buckets keep one join's hash table (~60 bytes a point) within a quarter of the
    memory limit."""
    limit = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    found = re.match(r"([\d.]+)\s*([KMGT]?i?B)", limit)
    number, unit = found.groups() if found else ("4", "GiB")
    scale = {"B": 1, "KB": 1e3, "KiB": 1024, "MB": 1e6, "MiB": 1024 ** 2, "GB": 1e9, "GiB": 1024 ** 3,
             "TB": 1e12, "TiB": 1024 ** 4}.get(unit, 1024 ** 3)
    budget = max(float(number) * scale / 4, 64 * 1024 ** 2)
    return max(1, int(-(-n_points * 60 // budget)))


def _whole_numbers(con, table: str, column: str) -> bool:
    """True when every non-null value of a float column is a whole number that fits in int64."""
    bad, present = con.execute(
        f"SELECT count(*) FILTER ({_q(column)} <> floor({_q(column)}) OR abs({_q(column)}) >= 9.0e15 "
        f"OR isnan({_q(column)})), count({_q(column)}) FROM {table}").fetchall()[0]
    return bad == 0 and present > 0


def _column_types(con, table: str) -> dict[str, str]:
    return dict(con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ?", [table]).fetchall())


def _neo4j_type(duck_type: str) -> str:
    t = duck_type.upper()
    if t.endswith("[]"):
        return "point" if "BIGINT" in t else "string[]"
    if t in ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UBIGINT", "HUGEINT"):
        return "long"
    if t in ("DOUBLE", "FLOAT", "DECIMAL"):
        return "float"
    if t == "BOOLEAN":
        return "boolean"
    return "string"


def _meta(con, files: ReleaseFiles, tree, dataset, tag, ann_cols, nt_cols) -> dict:
    manifest_path = files.root / "manifest.json"
    synthetic = None
    if manifest_path.exists():
        try:
            synthetic = json.loads(manifest_path.read_text()).get("synthetic")
        except ValueError:
            raise ReleaseError("manifest.json: not valid JSON") from None
    rois = con.execute("SELECT roi, parent, is_primary FROM rois ORDER BY depth, roi").fetchall()
    totals = dict(((r, (pre, post)) for r, pre, post in con.execute(
        "SELECT roi, sum(pre), sum(post) FROM segment_rois GROUP BY roi").fetchall()))
    roi_info = {}
    for name, parent, _ in rois:
        pre, post = totals.get(name, (0, 0))
        entry = {"pre": int(pre or 0), "post": int(post or 0)}
        if parent:
            entry["parent"] = parent
        roi_info[name] = entry
    primary = [r for r, _, is_primary in rois if is_primary]
    types = _column_types(con, "segments")
    properties = {}
    # 'size' (voxels) is a neuPrint property clients read (navis sets n_voxels from it); the flat
    # release has no sizes, so it is present and null.
    for col in ["bodyId", "pre", "post", "upstream", "downstream", "synweight", "roiInfo", "size", *ann_cols,
                *[camel(c) for c in nt_cols]]:
        if col in types:
            properties[col] = _neo4j_type(types[col])
    total_pre, total_post = con.execute(
        "SELECT count(*) FILTER (kind = 'pre'), count(*) FILTER (kind = 'post') FROM synapses").fetchall()[0]
    description = "Male CNS connectome, FlyEM release v0.9, ingested by flatprint"
    if synthetic:
        description = (f"SYNTHETIC seed={synthetic.get('seed')} scale={synthetic.get('scale')} -- "
                       "made by flatprint synth in the release schemas, not real data")
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    status_defs = {
        "Traced": "Neuron fully traced and proofread", "Anchor": "Large neuron fragment awaiting tracing",
        "Orphan": "Fragment not attached to a neuron", "Assign": "Awaiting assignment",
        "Glia": "Glial cell", "Unimportant": "Too small to matter",
    }
    meta = {
        "dataset": dataset, "tag": tag, "uuid": uuid.uuid4().hex, "hideDataSet": False,
        "description": description, "info": "https://www.janelia.org/project-team/flyem/male-cns-connectome",
        "logo": "", "voxelSize": [8.0, 8.0, 8.0], "voxelUnits": "nanometers",
        "postHighAccuracyThreshold": 0.5, "preHPThreshold": PRE_HP_THRESHOLD,
        "postHPThreshold": POST_HP_THRESHOLD, "totalPreCount": int(total_pre), "totalPostCount": int(total_post),
        "primaryRois": primary, "superLevelRois": primary, "nonHierarchicalROIs": [],
        "overviewRois": primary, "overviewOrder": primary,
        "roiInfo": json.dumps(roi_info), "roiHierarchy": json.dumps(tree),
        "neuronProperties": json.dumps(properties),
        "ntSynapseProperties": json.dumps({v: "float" for v in NT_PROPERTY.values()}),
        "statusDefinitions": json.dumps(status_defs),
        "neuroglancerInfo": json.dumps({}), "neuroglancerMeta": json.dumps([]), "meshHost": "",
        "lastDatabaseEdit": now, "latestMutationId": 0,
        "neuronColumns": json.dumps([{"id": c, "name": c} for c in ("bodyId", "type", "instance", "status")]),
        "neuronColumnsVisible": json.dumps([]),
    }
    # Volumes are too large to copy into the store (the real segmentation is terabytes): record where
    # the release keeps them, so the server can serve them as neuroglancer precomputed sources.
    volumes = {}
    for name, rel in (("segmentation", "segmentation"), ("brain-rois", "rois/fullbrain-roi-v4"),
                      ("vnc-rois", "rois/malecns-vnc-neuropil-roi-v0")):
        if (files.root / rel / "info").exists():
            volumes[name] = str((files.root / rel).resolve())
    internal = {
        "storeFormat": STORE_FORMAT, "flatprintVersion": __version__, "ingestedAt": now, "volumes": volumes,
        "sourceChecksum": _source_checksum(files), "sourceRows": files.rows, "roiSets": files.roi_sets,
        "synthetic": synthetic,
    }
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value JSON)")
    con.executemany("INSERT INTO meta VALUES (?, ?)", [[k, json.dumps(v)] for k, v in meta.items()])
    con.execute("CREATE TABLE store_info (key VARCHAR PRIMARY KEY, value JSON)")
    con.executemany("INSERT INTO store_info VALUES (?, ?)", [[k, json.dumps(v)] for k, v in internal.items()])
    return {"meta": meta, "internal": internal}


_PARTIAL = re.compile(r"^\.(?P<name>.+)\.ingest-(?P<pid>\d+)$")


def _clean_stale_partials(target: Path) -> None:
    """Remove build directories left by ingests that were killed (their process is gone)."""
    for entry in target.parent.glob(f".{target.name}.ingest-*"):
        m = _PARTIAL.match(entry.name)
        if not m:
            continue
        pid = int(m["pid"])
        try:
            os.kill(pid, 0)
            alive = pid != os.getpid()
        except OSError:
            alive = False
        if not alive:
            shutil.rmtree(entry, ignore_errors=True)


def ingest_release(release_dir, store_path, force: bool = False, dataset: str = "male-cns:v0.9",
                   progress: bool = True, memory_limit: str = "6GB", threads: int | None = None) -> dict:
    """Validate ``release_dir`` and build the store at ``store_path`` (atomic; --force to replace)."""
    target = Path(store_path)
    if target.exists() and not force:
        raise StoreError(f"{target} already exists (use --force to replace it)")
    if ":" not in dataset:
        raise ReleaseError(f"dataset must be NAME:TAG, got {dataset!r}")
    name, tag = dataset.split(":", 1)
    files = validate_release(release_dir)  # before anything is written
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_partials(target)
    work = target.parent / f".{target.name}.ingest-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    db_path = work / "store.duckdb"
    started = time.perf_counter()

    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):  # turn SIGTERM into an exception so the build directory is removed
        raise KeyboardInterrupt("ingest terminated")

    in_main = _in_main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, on_term)
    try:
        built: dict = {}
        try:
            _run_build(db_path, work, files, name, tag, memory_limit, threads, progress, built)
        except (duckdb.IOException, duckdb.OutOfMemoryException, OSError) as exc:
            if "No space left" in str(exc) or getattr(exc, "errno", None) == 28:
                raise StoreError(f"{target.parent}: disk full while building the store ({exc}); "
                                 "nothing was written") from None
            raise
        result, stage = built["result"], built["stage"]
        if target.exists():
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink()
        os.replace(db_path, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    seconds = time.perf_counter() - started
    source_bytes = sum(p.stat().st_size for p in files.paths.values())
    return {
        "store": str(target), "seconds": seconds, "rows": files.rows,
        "rows_per_second": sum(files.rows.values()) / seconds if seconds else None,
        "source_bytes": source_bytes, "store_bytes": target.stat().st_size,
        "timings": stage.timings, "dataset": dataset, **result["internal"],
    }


def _run_build(db_path, work, files, name, tag, memory_limit, threads, progress, out: dict) -> None:
    con = duckdb.connect(str(db_path))
    try:
        spill = work / "spill"
        spill.mkdir()
        con.execute(f"SET memory_limit = '{memory_limit}'")
        con.execute(f"SET temp_directory = '{spill}'")
        con.execute("SET preserve_insertion_order = false")
        con.execute("SET enable_progress_bar = false")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        with make_progress(progress) as prog:
            out["stage"] = _Stage(prog)
            out["result"] = _build(con, files, out["stage"], name, tag)
        con.execute("CHECKPOINT")
    finally:
        con.close()


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def store_is_current(path) -> bool:
    """True when the store at ``path`` was built by this version's ingest layout (STORE_FORMAT)."""
    import duckdb

    try:
        with duckdb.connect(str(path), read_only=True) as con:
            found = con.execute("SELECT value FROM store_info WHERE key = 'storeFormat'").fetchall()
    except duckdb.Error:
        return False
    return bool(found) and json.loads(found[0][0]) == STORE_FORMAT
