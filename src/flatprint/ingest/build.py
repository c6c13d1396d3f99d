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
* ``synapses``: every synapse point with a dense stable id (its position), body, kind, location,
  confidence, ROI labels and T-bar neurotransmitter probabilities; sorted by body, kind, location.
* ``partners``: every pre->post synapse pair with both ids, bodies, locations, confidences and ROIs;
  sorted by body_pre, body_post.
* ``rois``, ``roi_map`` and ``meta``: the hierarchy, label -> ROI expansion, and the Meta record.

``_build`` runs one function per table (``_build_synapses``, ``_build_partners``, ...) over a
``_Build`` context: the connection, the release, the body ranges and the build directory.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from flatprint.errors import ReleaseError, StoreError
from flatprint.ingest.body_rois import body_rois, key_ranks
from flatprint.ingest.layout import (
    NT_PROPERTY,
    STORE_FORMAT,
)
from flatprint.ingest.meta import build_meta
from flatprint.ingest.partners import PYTHON_BYTES, RoiMap, build_range
from flatprint.ingest.points import PointScan, range_batch, range_schema
from flatprint.ingest.post_parts import PostPartitions, partition_file
from flatprint.ingest.ranges import (
    POINT_ID_SQL,
    bucket_bounds,
    bucketed,
    point_ids,
    range_count,
)
from flatprint.ingest.roi_counts import build_segment_rois
from flatprint.ingest.rois import (
    combine_extra_roi_sets,
    extra_roi_sets,
    flatten_tree,
    roi_hierarchy,
)
from flatprint.ingest.segments import build_segments
from flatprint.ingest.summaries import build_summaries
from flatprint.ingest.validate import ReleaseFiles, validate_release
from flatprint.io.arrow_ipc import (
    ipc_dataset,
    open_stream_file,
    partition_files,
    partition_ipc_files,
    partition_stream_files,
    read_stream_file,
)
from flatprint.io.duckdb_session import (
    duckdb_session,
    lowered_limit,
    memory_limit_bytes,
    memory_limit_lowered,
    parse_size,
)
from flatprint.io.feather import batch_reader
from flatprint.io.publish import atomic_output
from flatprint.progress import make_progress
from flatprint.release import tables as T
from flatprint.store.sql import quote_ident, sql_literal


def rss_high_water_mark() -> int:
    """This process's peak resident set size so far, in bytes (0 where the OS does not say)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class _Stage:
    """Progress per table plus wall and CPU seconds per step (CPU: every thread of the process)."""

    def __init__(self, progress):
        self.progress = progress
        self.timings: dict[str, float] = {}
        self.cpu_timings: dict[str, float] = {}
        # The process's RSS high-water mark (bytes) when each step ended: the first step whose figure
        # reaches the final one set the ingest's peak (Python's memory lies outside DuckDB's limit).
        self.peak_rss: dict[str, int] = {}
        self.buckets = 1

    def stream(self, path: Path, columns: list[str] | None, rows: int):
        task = self.progress.add_task(f"reading {path.name}", total=rows)
        return batch_reader(path, columns, on_batch=lambda n: self.progress.advance(task, n))

    @contextlib.contextmanager
    def timed(self, label: str, total: int):
        """Time a multi-statement step; yields ``advance()`` for its progress bar."""
        task = self.progress.add_task(label, total=total)
        started, cpu = time.perf_counter(), time.process_time()
        yield lambda: self.progress.advance(task)
        self.timings[label] = self.timings.get(label, 0.0) + time.perf_counter() - started
        self.cpu_timings[label] = self.cpu_timings.get(label, 0.0) + time.process_time() - cpu
        self.peak_rss[label] = max(self.peak_rss.get(label, 0), rss_high_water_mark())


@dataclass
class _Build:
    """What the steps of one build share: the connection, the release, progress and timings, the
    build directory, and the body ranges every large table is built in."""

    con: duckdb.DuckDBPyConnection
    files: ReleaseFiles
    stage: _Stage
    work: Path
    buckets: int | None  # the caller's number of body ranges (None: from the memory limit)
    bounds: list[int] = field(default_factory=list)  # body ranges of syn-points (see bucketed)
    syn_ranges: list[tuple[int, int]] = field(default_factory=list)  # per range: [first, last) syn_id
    tree: dict = field(default_factory=dict)
    point_scan: PointScan | None = None  # the syn-points' (label, name) pairs (see _partition_inputs)
    points_dir: Path | None = None
    points_schema: pa.Schema | None = None  # the columns of the points' range files (points.range_schema)
    tbar_schema: pa.Schema | None = None  # and of the T-bars' (point_id, body, NT probabilities)
    tbar_dir: Path | None = None
    partners_by_post: Path | None = None
    partners_by_pre: Path | None = None
    post_bounds: list[int] = field(default_factory=list)  # body_post ranges of the post-sorted copies
    major_label_expr: str = "0"  # SQL for a point's major label (a combined label when v1.0's extra levels exist)
    roi_type: str = "VARCHAR"  # the ROI names as an ENUM in name order (see _build_rois)
    roi_info_keys: list[str] = field(default_factory=list)  # roiInfo key prefixes by key_rank (see _build_rois)

    @property
    def ranges(self) -> int:
        return len(self.bounds) + 1

    def passes(self, n_rows: int, bytes_per_row: int) -> int:
        return self.buckets or range_count(self.con, n_rows, bytes_per_row)

    def sql(self, statement: str):
        return self.con.execute(statement)

    def one(self, statement: str):
        return self.con.execute(statement).fetchall()[0]


def _build(con, files: ReleaseFiles, stage: _Stage, dataset: str, tag: str, work: Path, buckets: int | None) -> dict:
    b = _Build(con, files, stage, work, buckets)
    _partition_inputs(b)
    _build_rois(b)
    _build_synapses(b)
    _build_partners(b)
    _build_post_copies(b)
    build_segment_rois(con, stage, work, b.roi_type, buckets)
    ann_cols, nt_cols = _build_segments(b)
    build_summaries(con, stage, b.bounds)  # neuron-only tables (ingest/summaries.py)
    with stage.timed("morphology", 1):
        _load_morphology(con, files.root, stage)
    return build_meta(con, files, b.tree, dataset, tag, ann_cols, nt_cols)


def _partition_inputs(b: _Build) -> None:
    """syn-points, tbar-nt and syn-partners streamed into Parquet files under the build directory,
    one folder per body range (partners: by the post body's range). Every later step on synapses and
    partners then sorts and joins one body range at a time, in memory: one sort over every point
    spilled ~160 bytes a point to disk (57 GB at full scale)."""
    files, rows = b.files, b.files.rows
    with b.stage.timed("body ranges", 1):
        b.bounds = bucket_bounds(files.paths["syn-points"], "body", b.passes(rows["syn-points"], 200))
    b.stage.buckets = b.ranges
    roi_sets = files.roi_sets
    point_cols = ["x", "y", "z", "kind", "conf", "body"] + [c for s in roi_sets for c in (s, f"{s}_label")]
    has_compartment = "compartment" in files.schemas["syn-points"].names
    if has_compartment:
        point_cols.append("compartment")
    # The range files carry the integer labels; the ROI names are taken from the stream as it passes
    # (b.point_scan), except where the ROI tree must be found from the data (roi_hierarchy).
    with_names = not (files.root / "roi-hierarchy.json").exists()
    b.point_scan = scan = PointScan(roi_sets)
    kept = [c for c in point_cols if with_names or c not in roi_sets]
    schema = range_schema(roi_sets, with_names, has_compartment)
    with b.stage.timed("read syn-points", 1):
        reader = scan.stream(b.stage.stream(files.paths["syn-points"], point_cols, rows["syn-points"]), kept)
        # LZ4 Arrow IPC files, cast in Arrow, not Parquet written by DuckDB: the Parquet encoding was
        # ~85% of this step's CPU, and the files are read once (the ROI steps may read raw_points too).
        b.points_dir = partition_ipc_files(
            (range_batch(batch, schema) for batch in bucketed(reader, {"bucket": "body"}, b.bounds)),
            schema,
            b.work / "points",
            "bucket",
        )
    b.points_schema = schema.remove(schema.get_field_index("bucket"))
    b.con.register("raw_points", ipc_dataset(partition_files(b.points_dir, "bucket"), b.points_schema))
    if scan.bad_kinds:
        raise ReleaseError(
            f"{files.paths['syn-points'].name}: column 'kind' has {scan.bad_kinds} values other than PreSyn/PostSyn"
        )

    tb_cols = ["point_id", "body"] + list(T.NT_PROB_COLUMNS)
    tb_schema = pa.schema(
        [("point_id", pa.uint64()), ("body", pa.int64())]
        + [(NT_PROPERTY[c], pa.float32()) for c in T.NT_PROB_COLUMNS]
        + [("bucket", pa.int32())]
    )
    with b.stage.timed("read tbar-nt", 1):
        reader = b.stage.stream(files.paths["tbar-nt"], tb_cols, rows["tbar-nt"])
        # Cast in Arrow into LZ4 IPC files, as the points (safe casts: an overflow raises).
        b.tbar_dir = partition_ipc_files(
            (
                pa.RecordBatch.from_arrays([c.cast(f.type) for c, f in zip(batch.columns, tb_schema)], schema=tb_schema)
                for batch in bucketed(reader, {"bucket": "body"}, b.bounds)
            ),
            tb_schema,
            b.work / "tbar",
            "bucket",
        )
    b.tbar_schema = tb_schema.remove(tb_schema.get_field_index("bucket"))

    part_cols = [f.name for f in T.SYN_PARTNERS]
    with b.stage.timed("read syn-partners", 1):
        reader = b.stage.stream(files.paths["syn-partners"], part_cols, rows["syn-partners"])
        # LZ4 Arrow stream files, not Parquet: only _resolve_post_ends reads them, once, and the
        # Parquet encoding (and decoding) was most of this step's CPU. Computed in Arrow, not DuckDB.
        b.partners_by_post = partition_stream_files(
            (
                _partner_batch(batch)
                for batch in bucketed(reader, {"bucket": "body_post", "pre_bucket": "body_pre"}, b.bounds)
            ),
            PARTNER_SCHEMA,
            b.work / "partners-by-post",
            "bucket",
        )


#: The partners-by-post stream files' columns (then the body_post range ``bucket``).
PARTNER_SCHEMA = pa.schema(
    [("pre_point", pa.uint64()), ("post_point", pa.uint64()), ("body_pre", pa.int64()), ("body_post", pa.int64())]
    + [("conf_pre", pa.float32()), ("conf_post", pa.float32()), ("pre_bucket", pa.int32()), ("bucket", pa.int32())]
)


def _partner_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """One bucketed syn-partners batch as PARTNER_SCHEMA (safe casts: an overflow raises)."""
    column = batch.column
    ends = [point_ids(column(f"x_{e}"), column(f"y_{e}"), column(f"z_{e}")) for e in ("pre", "post")]
    rest = [column(f.name).cast(f.type) for f in list(PARTNER_SCHEMA)[2:]]
    return pa.RecordBatch.from_arrays(ends + rest, schema=PARTNER_SCHEMA)


def _build_rois(b: _Build) -> None:
    """``rois`` (the hierarchy) and ``roi_map``: (set, label) -> every ROI a point with that label
    counts under (its ROI and ancestors)."""
    con, roi_sets = b.con, b.files.roi_sets
    b.tree = tree = roi_hierarchy(b.files, con)
    flat = flatten_tree(tree)
    parent_of = {name: parent for name, parent, _ in flat}
    root = flat[0][0]
    label_names: dict[str, dict[int, str]] = {}
    for s in roi_sets:
        pairs = b.point_scan.label_pairs(s)
        label_names[s] = {
            int(label): name
            for label, name in sorted(pairs, key=lambda p: (p[0] or 0, str(p[1])))
            if name != T.UNSPECIFIED and label
        }
    primary_names = set(label_names["primary"].values())
    major_names = set(label_names.get("major", {}).values())
    con.execute(
        "CREATE TABLE rois (roi VARCHAR, parent VARCHAR, depth INTEGER, is_primary BOOLEAN, roi_set VARCHAR, "
        "label INTEGER)"
    )
    for name, parent, depth in flat:
        if name == root:
            continue
        rset = next((s for s in ("primary", "major", *roi_sets) if name in label_names.get(s, {}).values()), None)
        label = next((lab for lab, n in label_names.get(rset, {}).items() if n == name), None) if rset else None
        con.execute(
            "INSERT INTO rois VALUES (?, ?, ?, ?, ?, ?)",
            [name, None if parent == root else parent, depth, name in primary_names, rset, label],
        )
    # A data ROI missing from the tree still counts (under the root).
    for s in ("primary", "major", *extra_roi_sets(roi_sets)):
        for label, name in label_names.get(s, {}).items():
            if name not in parent_of:
                con.execute("INSERT INTO rois VALUES (?, NULL, 1, ?, ?, ?)", [name, s == "primary", s, label])
                parent_of[name] = root
    # Later ROI levels (sub-primary, optic-lobe columns and layers, ...) are kept, not dropped.
    major_combos = combine_extra_roi_sets(con, roi_sets, label_names, parent_of, root, primary_names, major_names)
    # roi_map: (set, label) -> every ROI it counts under. The major set contributes only its major
    # region; the primary set contributes itself and its ancestors below the major level, so no
    # synapse is counted twice under one ROI.
    con.execute("CREATE TABLE roi_map (roi_set VARCHAR, label INTEGER, roi VARCHAR)")
    for s in ("primary", "major"):
        for label, name in label_names.get(s, {}).items() if not (s == "major" and major_combos) else ():
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
    b.major_label_expr = '"major_label"' if "major" in roi_sets else "0"
    if major_combos:
        con.executemany("INSERT INTO roi_map VALUES ('major', ?, ?)", major_combos["roi_map"])
        b.major_label_expr = major_combos["label_expr"]
    # The per-ROI aggregates group, join and sort on the ROI as an ENUM whose values are the names in
    # VARCHAR order: a 1-2 byte key that sorts as the name does (the tables store the name).
    names = [r[0] for r in con.execute("SELECT DISTINCT roi FROM roi_map ORDER BY roi").fetchall()]
    b.roi_type = f"ENUM({', '.join(sql_literal(n) for n in names)})" if names else "VARCHAR"
    con.execute(f"CREATE TEMP TABLE roi_codes AS SELECT roi_set, label, CAST(roi AS {b.roi_type}) AS roi FROM roi_map")
    # Each ROI's roiInfo key text, made once per ROI rather than once per body and ROI.
    # key_rank: the keys' order as text, which is the order of the roiInfo pieces they begin.
    con.execute(f"""CREATE TEMP TABLE roi_info_keys AS
                    SELECT roi, key, (row_number() OVER (ORDER BY key) - 1)::INTEGER AS key_rank FROM (
                      SELECT CAST(roi AS {b.roi_type}) AS roi, to_json(roi)::VARCHAR || ':{{"pre":' AS key
                      FROM (SELECT DISTINCT roi FROM roi_map))""")
    b.roi_info_keys = [r[0] for r in con.execute("SELECT key FROM roi_info_keys ORDER BY key_rank").fetchall()]


def _build_synapses(b: _Build) -> None:
    """``synapses``, one body range at a time: the range's points sorted once (body, kind, location)
    into an Arrow table whose position is the dense ``syn_id`` (numbered on from the previous range),
    given their T-bar NT probabilities (_nt_columns) and appended to ``synapses`` from there. The same pass
    resolves the post ends of the partners whose post body lies in the range, while the range's
    location keys are at hand. A sorted temporary table read back by rowid cost ~20% more CPU (the
    range written twice, and a hash aggregate over it for the duplicate check)."""
    con = b.con
    major_label = b.major_label_expr
    nt_columns = ", ".join(f"{quote_ident(v)} FLOAT" for v in NT_PROPERTY.values())
    con.execute(f"""
        CREATE TABLE synapses (syn_id BIGINT, body BIGINT, kind VARCHAR, x INTEGER, y INTEGER, z INTEGER,
          conf FLOAT, primary_label USMALLINT, major_label USMALLINT, compartment VARCHAR, {nt_columns})""")
    nt_names = ", ".join(quote_ident(v) for v in NT_PROPERTY.values())
    b.partners_by_pre = b.work / "partners-by-pre"
    # Without a compartment column the points' compartment is NULL: a constant in the INSERT, not a
    # column carried through the sort and Arrow (~5% of the step's CPU).
    carried = "compartment" in b.files.schemas["syn-points"].names
    compartment, inserted = ("p.compartment, ", "compartment") if carried else ("", "NULL::VARCHAR")
    duplicates = 0
    # Rows go in in their ORDER BY, and syn_id is the row's position: keep insertion order.
    con.execute("SET preserve_insertion_order = true")
    with b.stage.timed("synapses", b.ranges) as advance:
        for k in range(b.ranges):
            first = b.syn_ranges[-1][1] if b.syn_ranges else 0
            points = partition_files(b.points_dir, "bucket", k)
            n = 0
            if points:
                con.register("range_points", ipc_dataset(points, b.points_schema))
                sorted_points = f"""
                    WITH p AS (
                      SELECT *, {POINT_ID_SQL.format(x="x", y="y", z="z")} AS point_id FROM range_points)
                    SELECT p.point_id, p.body, p.is_pre,
                           p.x, p.y, p.z, p.conf, CAST(p.primary_label AS USMALLINT) AS primary_label,
                           CAST({major_label} AS USMALLINT) AS major_label, {compartment}
                    FROM p ORDER BY p.body, p.is_pre DESC, p.point_id  -- T-bars first, as kind DESC"""
                rows = con.sql(sorted_points).to_arrow_table()
                con.unregister("range_points")
                n = rows.num_rows
                duplicates += _repeated_points(rows)
                rows = rows.append_column("syn_id", pa.array(np.arange(first, first + n, dtype=np.int64)))
                con.register("range_synapses", rows)
                nt, repeats = _nt_columns(b, k, first, n)
                duplicates += repeats
                for name, column in nt.items():
                    rows = rows.append_column(name, column)
                con.register("range_synapses", rows)
                con.execute(f"""
                    INSERT INTO synapses
                    SELECT syn_id, body, CASE WHEN is_pre THEN 'pre' ELSE 'post' END AS kind, x, y, z, conf,
                           primary_label, major_label, {inserted}, {nt_names}
                    FROM range_synapses""")
                _resolve_post_ends(b, k)
                con.unregister("range_synapses")
                del rows
            b.syn_ranges.append((first, first + n))
            advance()
    con.unregister("raw_points")
    for folder in (b.points_dir, b.tbar_dir, b.partners_by_post):
        shutil.rmtree(folder, ignore_errors=True)
    if duplicates:
        raise ReleaseError(f"{b.files.paths['syn-points'].name}: {duplicates} duplicate point locations")


def _nt_columns(b: _Build, k: int, first: int, n: int) -> tuple[dict[str, pa.Array], int]:
    """The range's NT probability columns in syn_id order (null but at T-bars), from the T-bars
    joined to the sorted points (``range_synapses``) by (body, location), as partners match; and how
    many T-bar rows name a point another one already named (duplicates). Joined after the sort, not
    before it: the sort then carries no NT payload (~25% of its CPU)."""
    names = list(NT_PROPERTY.values())
    tbars = partition_files(b.tbar_dir, "bucket", k)
    found = None
    if tbars:
        b.con.register("range_tbars", ipc_dataset(tbars, b.tbar_schema))
        found = b.con.sql(f"""
            SELECT s.syn_id, {", ".join(f"t.{quote_ident(v)}" for v in names)}
            FROM range_tbars t JOIN (SELECT syn_id, point_id, body FROM range_synapses WHERE is_pre) s
              ON t.point_id = s.point_id AND t.body = s.body""").to_arrow_table()
        b.con.unregister("range_tbars")
    if found is None or not found.num_rows:
        return {v: pa.nulls(n, pa.float32()) for v in names}, 0
    at = found.column("syn_id").to_numpy() - first
    repeats = len(at) - np.count_nonzero(np.bincount(at, minlength=n))  # np.unique: ~0.4 s a range
    columns = {}
    for v in names:
        values = np.zeros(n, np.float32)
        valid = np.zeros(n, bool)
        column = found.column(v)
        values[at] = column.to_numpy(zero_copy_only=False)
        valid[at] = column.is_valid().to_numpy(zero_copy_only=False)
        bitmap = np.packbits(valid, bitorder="little")  # Arrow's validity bitmap
        columns[v] = pa.Array.from_buffers(pa.float32(), n, [pa.py_buffer(bitmap), pa.py_buffer(values)])
    return columns, int(repeats)


def _repeated_points(rows: pa.Table) -> int:
    """How many rows repeat the (body, kind, location) of the row before them in the sorted range:
    the key the T-bar and partner joins match on, which must name one point (a body's points are all
    in one range, so the count does not depend on the ranges)."""
    body, point, is_pre = (rows.column(c).to_numpy() for c in ("body", "point_id", "is_pre"))
    return int(np.count_nonzero((body[1:] == body[:-1]) & (point[1:] == point[:-1]) & (is_pre[1:] == is_pre[:-1])))


def _resolve_post_ends(b: _Build, k: int) -> None:
    """Partners whose post body lies in range ``k``: the post end's syn_id, confidence and ROI labels
    from the range's points (the Arrow table ``range_synapses``), written to Parquet partitioned by
    the pre body's range."""
    source = b.partners_by_post / f"bucket={k}" / "part.arrows"
    if not source.exists():
        return
    with open_stream_file(source) as pairs:
        b.con.register("range_partners", pairs)
        try:
            _copy_post_ends(b, k)
        finally:
            b.con.unregister("range_partners")


#: Rows per Arrow batch of the post-end join's answer (a few MB each).
POST_END_BATCH_ROWS = 1 << 18


def _copy_post_ends(b: _Build, k: int) -> None:
    """Post range ``k``'s pairs (``range_partners``) with their post ends resolved, to LZ4 Arrow stream
    files ``pre_bucket=j/<k>.arrows``: Parquet's encoding (and decoding in build_range) was
    most of this copy's CPU, and only build_range reads the files, once."""
    rows = b.con.sql("""
        SELECT r.pre_point, r.body_pre, r.body_post, r.conf_pre, r.conf_post, s.syn_id AS post_id,
               s.conf AS point_conf_post, s.primary_label AS primary_label_post,
               s.major_label AS major_label_post, r.pre_bucket
        FROM range_partners r
        LEFT JOIN (SELECT syn_id, point_id, body, conf, primary_label, major_label FROM range_synapses
                   WHERE NOT is_pre) s
          ON s.point_id = r.post_point AND s.body = r.body_post""").to_arrow_reader(POST_END_BATCH_ROWS)
    partition_stream_files(rows, rows.schema, b.partners_by_pre, "pre_bucket", f"{k:05d}.arrows")


def _build_partners(b: _Build) -> None:
    """``partners``, ``connections``, ``connection_rois``, per-body ROI counts and each body's roiInfo
    text, one pre-body range at a time. The range's pairs resolve their pre ends against that range of
    ``synapses`` (a contiguous syn_id range) into a temporary table that still holds both ends'
    confidences and post ROI labels; ``partners`` keeps only the ids and bodies (``synapses`` has the
    rest), sorted (body_pre, body_post, pre_id, post_id), and the range's aggregates are taken from
    the temporary table, so partners is never read back. The range's bodies are complete in it, so
    their roiInfo is built here, in body order (no second pass over the ROI-sorted segment_rois)."""
    con = b.con
    con.execute("""
        CREATE TABLE partners (body_pre BIGINT, body_post BIGINT, pre_id BIGINT, post_id BIGINT);
        CREATE TABLE connections (body_pre BIGINT, body_post BIGINT, weight BIGINT, weight_hp BIGINT);
        CREATE TABLE connection_rois (body_pre BIGINT, body_post BIGINT, roi VARCHAR, weight BIGINT, pre BIGINT)""")
    rows = b.files.rows["weights"]
    b.post_bounds = bucket_bounds(b.files.paths["weights"], "body_post", b.passes(rows * 3, 100))
    for folder in ("segment-rois", "roi-info"):
        (b.work / folder).mkdir()
    missing_pre = missing_post = conf_differs = 0
    rois = RoiMap.load(con)
    rank = key_ranks(con, rois)
    by_post = PostPartitions(b.work, b.post_bounds)
    with (
        b.stage.timed("partners and connections", b.ranges) as advance,
        memory_limit_lowered(con, PYTHON_BYTES),
        contextlib.closing(by_post),
    ):
        for k, (first, last) in enumerate(b.syn_ranges):
            files = partition_files(b.partners_by_pre, "pre_bucket", k)
            down = np.zeros(last - first, np.int64)
            if files:
                # One table, not a stream of the files: DuckDB scans an Arrow table with every thread.
                pairs = pa.concat_tables([read_stream_file(f) for f in files])
                # ~48 bytes a pair (~1 GB a range at full scale), held beside DuckDB's pool: its limit
                # makes room (peak RSS at scale 1.0 was 6.21 GiB without, over the 6 GiB budget)
                with memory_limit_lowered(con, pairs.nbytes):
                    counts, down = build_range(con, pairs, first, last, rois, by_post)
                del pairs
                missing_pre, missing_post, conf_differs = (
                    a + n for a, n in zip((missing_pre, missing_post, conf_differs), counts)
                )
            segment_files = (b.work / "segment-rois" / f"{k:05d}.parquet", b.work / "roi-info" / f"{k:05d}.parquet")
            body_rois(con, rois, rank, b.roi_info_keys, first, last, down, *segment_files)
            del down
            advance()
    shutil.rmtree(b.partners_by_pre, ignore_errors=True)
    partners_file, points_file = b.files.paths["syn-partners"].name, b.files.paths["syn-points"].name
    if missing_pre or missing_post:
        raise ReleaseError(
            f"{partners_file}: {missing_pre} pre and {missing_post} post locations are not points "
            f"of their body (body_pre, body_post) in {points_file}"
        )
    if conf_differs:
        # partners keeps no confidences of its own (synapses has them): they must be the points'
        raise ReleaseError(
            f"{partners_file}: {conf_differs} rows whose conf_pre/conf_post differ from the conf of their points "
            f"in {points_file}"
        )


def _build_post_copies(b: _Build) -> None:
    """Second copies sorted by the post side, so upstream lookups read a range too."""
    _sorted_copy(b, "connections", "connections_by_post", "body_post, body_pre")
    # The partitions hold the ROI as its code (names in name order): it sorts as the name does, and
    # is turned into the name after the sort (sorting on the name cast to an ENUM cost ~8% more).
    names = "[" + ", ".join(sql_literal(n) for n in RoiMap.load(b.con).names.to_pylist()) + "]"
    _sorted_copy(
        b,
        "connection_rois",
        "connection_rois_by_post",
        "body_post, body_pre, roi_code",
        f"body_pre, body_post, {names}[roi_code + 1] AS roi, weight, pre",
    )


def _build_segments(b: _Build) -> tuple[list[str], list[str]]:
    """``segments`` (ingest/segments.py). Returns the annotation and neurotransmitter columns."""
    return build_segments(b)


def _sorted_copy(b: _Build, source: str, target: str, order_by: str, select: str | None = None) -> None:
    """``target``: ``source`` sorted by ``order_by``, written range by range of body_post from the
    stream files the partners step wrote (ingest/post_parts.py); ``select``: the rows' columns made
    from the file's after the sort (default: the file's columns)."""
    con = b.con
    con.execute(f"CREATE TABLE {target} AS SELECT * FROM {source} LIMIT 0")
    columns = ", ".join(quote_ident(c) for c in con.execute(f"SELECT * FROM {source} LIMIT 0").fetchdf().columns)
    with b.stage.timed(target, len(b.post_bounds) + 1) as advance:
        for k in range(len(b.post_bounds) + 1):
            path = partition_file(b.work, source, k)
            if path:
                # A table, not the stream: DuckDB scans an Arrow table with every thread.
                con.register("post_range", read_stream_file(path))
                try:
                    con.execute(f"""INSERT INTO {target}
                                    SELECT {select or columns} FROM (SELECT * FROM post_range ORDER BY {order_by})""")
                finally:
                    con.unregister("post_range")
            advance()
    shutil.rmtree(b.work / (source + "-by-post"), ignore_errors=True)


def _load_morphology(con, root: Path, stage: _Stage) -> None:
    """Optional: SWC skeletons and ROI meshes, kept in the store so it stays one self-contained file."""

    swc_dir = root / "skeletons" / "skeletons-swc"
    if swc_dir.is_dir():
        paths = sorted(swc_dir.glob("*.swc"))
        task = stage.progress.add_task("reading skeletons", total=len(paths))
        con.execute("CREATE TABLE skeletons (bodyId BIGINT, swc VARCHAR)")
        for start in range(0, len(paths), 2000):
            chunk = paths[start : start + 2000]
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


#: What the ingest holds outside DuckDB's buffer pool at most (the interpreter and libraries, a
#: range's Arrow table in the synapses step, stream batches): taken from the memory budget.
PYTHON_RESERVE = 1280 * 1024**2


def ingest_release(
    release_dir,
    store_path,
    force: bool = False,
    dataset: str | None = None,
    progress: bool = True,
    memory_limit: str = "6GB",
    threads: int | None = None,
    buckets: int | None = None,
    release: str | None = None,
) -> dict:
    """Validate ``release_dir`` and build the store at ``store_path`` (atomic; --force to replace).

    ``release``: the registered release the directory holds (default: found from its file names);
    ``dataset``: the store's NAME:TAG (default: the release's key, e.g. ``male-cns:v1.0``).

    ``memory_limit``: the ingest's memory budget. DuckDB's own limit is PYTHON_RESERVE less (at
    least half of it): that limit caps only DuckDB's buffer pool, and the process also holds Arrow
    batches and NumPy arrays (at scale 1.0, DuckDB given all of 6GB, the ingest peaked at 7.96 GiB).

    ``buckets``: how many body ranges synapses and partners are sorted in (default: enough for each
    range's sort to fit in a quarter of DuckDB's limit); the store is the same for any number."""
    target = Path(store_path)
    if target.exists() and not force:
        raise StoreError(f"{target} already exists (use --force to replace it)")
    if dataset is not None and ":" not in dataset:
        raise ReleaseError(f"dataset must be NAME:TAG, got {dataset!r}")
    budget = parse_size(memory_limit)  # a bad limit fails before the release is read
    duckdb_limit = f"{lowered_limit(budget, PYTHON_RESERVE)}B"
    started, cpu = time.perf_counter(), time.process_time()
    files = validate_release(release_dir, release)  # before anything is written
    validated, validated_cpu = time.perf_counter() - started, time.process_time() - cpu
    dataset = dataset or files.release.key
    name, tag = dataset.split(":", 1)
    with atomic_output(target, "ingest", force=force, publish="store.duckdb") as work:
        built: dict = {}
        try:
            _run_build(work / "store.duckdb", work, files, name, tag, duckdb_limit, threads, progress, buckets, built)
        except (duckdb.IOException, duckdb.OutOfMemoryException, OSError) as exc:
            if "No space left" in str(exc) or getattr(exc, "errno", None) == 28:
                raise StoreError(
                    f"{target.parent}: disk full while building the store ({exc}); nothing was written"
                ) from None
            raise
        result, stage = built["result"], built["stage"]
        stage.timings = {"validate": validated, **stage.timings}
        stage.cpu_timings = {"validate": validated_cpu, **stage.cpu_timings}
    seconds = time.perf_counter() - started
    source_bytes = sum(p.stat().st_size for p in files.paths.values())
    return {
        "store": str(target),
        "seconds": seconds,
        "rows": files.rows,
        "rows_per_second": sum(files.rows.values()) / seconds if seconds else None,
        "source_bytes": source_bytes,
        "store_bytes": target.stat().st_size,
        "timings": stage.timings,
        "cpu_timings": stage.cpu_timings,
        "peak_rss_after_step": stage.peak_rss,
        "duckdb_memory_limit": built["duckdb_memory_limit"],
        "dataset": dataset,
        **result["internal"],
    }


def _run_build(db_path, work, files, name, tag, memory_limit, threads, progress, buckets, out: dict) -> None:
    with duckdb_session(db_path, memory_limit=memory_limit, threads=threads, temp_dir=work / "spill") as con:
        out["duckdb_memory_limit"] = memory_limit_bytes(con)
        with make_progress(progress) as prog:
            out["stage"] = _Stage(prog)
            out["result"] = _build(con, files, out["stage"], name, tag, work, buckets)
        with out["stage"].timed("checkpoint", 1):
            con.execute("CHECKPOINT")


def store_is_current(path) -> bool:
    """True when the store at ``path`` was built by this version's ingest layout (STORE_FORMAT)."""

    try:
        with duckdb.connect(str(path), read_only=True) as con:
            found = con.execute("SELECT value FROM store_info WHERE key = 'storeFormat'").fetchall()
    except duckdb.Error:
        return False
    return bool(found) and json.loads(found[0][0]) == STORE_FORMAT
