"""``segments``: one row per body (body-stats ∪ annotations) with its stats, annotations,
neurotransmitter prediction, roiInfo text and ``is_neuron``, sorted by bodyId.

Built one body range at a time (body-stats is not in body order: the release sorts it by size).
Each range's rows are put in body order in NumPy, on the narrow keys only: the range's body-stats
rows are sorted by body and every other table (annotations, neurotransmitters, roiInfo) is looked up
by a binary search of its sorted keys. DuckDB then computes the columns over an Arrow stream already
in order and appends it. The SQL form it replaces (a UNION of the ids, four hash joins, an ORDER BY
of the ~50-column, mostly-NULL rows, and a scan of all neurotransmitter rows per range) spent, per
range of 2.5 M bodies at scale 0.1, 1.9 s in the sort and 1.2 s in the joins of its ~4 s of
operators (EXPLAIN ANALYZE).
"""

from __future__ import annotations

import itertools
import shutil
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flatprint.errors import ReleaseError, StoreError
from flatprint.ingest.layout import (
    NEURON_PROPERTY_NULL_CHECK,
    NEURON_SYNWEIGHT_MIN,
    camel,
    create_table_like,
)
from flatprint.ingest.meta import column_types, whole_numbers
from flatprint.ingest.ranges import bucket_bounds, bucketed, partition
from flatprint.io.arrow_ipc import read_stream_file, stream_file_writer
from flatprint.io.duckdb_session import memory_limit_lowered
from flatprint.io.feather import iter_batches, open_feather
from flatprint.store.sql import quote_ident

STAT_COLUMNS = ("body", "pre", "post", "downstream", "synweight")
NT_SKIPPED = ("body", "cell_type", "ground_truth")  # neurotransmitter columns segments does not keep
LOCATION_COLUMNS = ("somaLocation", "tosomaLocation", "rootLocation")
# Batches made ahead of DuckDB's scan, and by how many threads. A batch is ~750 bytes a body (the
# roiInfo text ~300): 2 ahead and 2 per INSERT hold ~0.4 GB (3 ahead of 4 of twice the rows: 1.3 GB).
PREFETCH_THREADS, PREFETCH_BATCHES = 2, 2
BATCH_ROWS = 122_880  # rows per Arrow batch handed to DuckDB: a whole row group (DuckDB: 122,880 rows)
INSERT_BATCHES = 2  # batches per INSERT: each statement but a range's last fills whole row groups
# What the step holds in Python at most (batches in flight, a range's stats and lookups): DuckDB's
# memory limit is lowered by that much during the step (it does not cover memory outside its pool).
PYTHON_BYTES = 640 * 1024**2


def build_segments(b) -> tuple[list[str], list[str]]:
    """Create and fill ``segments`` for the build ``b`` (ingest/build.py's ``_Build``). Returns the
    annotation and neurotransmitter columns (for the Meta record)."""
    con, files, rows = b.con, b.files, b.files.rows
    # ~1.9 M bodies a range under a 6 GB limit: a range's stats and row lookups (~90 bytes a body
    # in Python) are half of what 3.7 M held, and more ranges cost nothing measurable.
    seg_bounds = bucket_bounds(files.paths["stats"], "body", b.passes(rows["stats"], 800))
    with b.stage.timed("read body tables", 3):
        reader = b.stage.stream(files.paths["stats"], list(STAT_COLUMNS), rows["stats"])
        stats_dir = partition(
            con,
            b.work / "stats",
            bucketed(reader, {"bucket": "body"}, seg_bounds),
            "SELECT " + ", ".join(f"CAST({c} AS BIGINT) AS {c}" for c in STAT_COLUMNS) + ", bucket",
        )
        ann = _read_table(files.paths["annotations"], "bodyId", None)
        nt_names = open_feather(files.paths["neurotransmitters"]).schema.names
        # Split by range, not held whole: 6.8 M rows (~0.4 GB, twice that while combined) at full scale.
        nt = _RangeFiles(
            files.paths["neurotransmitters"],
            "body",
            [c for c in nt_names if c not in NT_SKIPPED[1:]],
            seg_bounds,
            b.work / "nt-ranges",
        )
        # The annotation columns' DuckDB types (as a scan of the feather gives them) decide the casts.
        con.register("ann_arrow", ann.table)
        con.execute("CREATE TEMP TABLE raw_ann AS SELECT * FROM ann_arrow")
        con.unregister("ann_arrow")
    ann_cols = [c for c in ann.table.column_names if c != "bodyId"]
    nt_cols = [c for c in nt.schema.names if c not in NT_SKIPPED]
    query = _segments_sql(con, ann_cols, nt_cols)
    roi_info = _RoiInfo(sorted((b.work / "roi-info").glob("*.parquet")))
    stream_schema = _stream_schema(ann, nt, ann_cols, nt_cols)
    con.execute("SET preserve_insertion_order = true")  # the stream is in body order: keep it
    with b.stage.timed("segments", len(seg_bounds) + 1) as advance, memory_limit_lowered(con, PYTHON_BYTES):
        con.register("segment_stream", stream_schema.empty_table())
        create_table_like(con, "segments", query.format(stream="segment_stream"))
        con.unregister("segment_stream")
        for k in range(len(seg_bounds) + 1):
            ids, parts = _range_rows(stats_dir, files.paths["stats"].name, k, seg_bounds, ann, nt.keyed(k))
            if len(ids):
                first = con.execute("SELECT count(*) FROM segments").fetchall()[0][0]
                # DuckDB scans a stream in one thread but an Arrow table in all, in order: the
                # batches are gathered into a table of whole row groups at a time.
                batches = _batches(ids, parts, roi_info, ann_cols, nt_cols, stream_schema)
                while chunk := list(itertools.islice(batches, INSERT_BATCHES)):
                    con.register("segment_stream", pa.Table.from_batches(chunk, stream_schema))
                    con.execute("INSERT INTO segments " + query.format(stream="segment_stream"))
                    con.unregister("segment_stream")
                _check_order(con, first, ids)
            advance()
    con.execute("SET preserve_insertion_order = false")
    shutil.rmtree(stats_dir, ignore_errors=True)
    shutil.rmtree(b.work / "roi-info", ignore_errors=True)
    shutil.rmtree(b.work / "nt-ranges", ignore_errors=True)
    con.execute("DROP TABLE raw_ann")
    return ann_cols, nt_cols


class _Keyed:
    """A body table in memory with its keys sorted: ``keys`` ascending, ``order`` the rows in that order."""

    def __init__(self, table: pa.Table, keys: np.ndarray, name: str):
        self.table = table
        self.order = np.argsort(keys, kind="stable")
        self.keys = keys[self.order]
        if len(self.keys) > 1 and not (np.diff(self.keys) > 0).all():
            dup = int(self.keys[1:][np.diff(self.keys) == 0][0])
            raise ReleaseError(f"{name}: body {dup} has more than one row")

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """Row index of each id (ascending) in ``table``, -1 where absent."""
        pos = _positions(self.keys, ids)
        return np.where(pos >= 0, self.order[pos], -1)


def _read_table(path, key: str, columns: list[str] | None) -> _Keyed:
    schema = open_feather(path).schema
    schema = pa.schema([schema.field(c) for c in columns]) if columns else schema
    # One chunk with one dictionary per column: the per-batch takes then neither concatenate nor unify.
    table = pa.Table.from_batches(list(iter_batches(path, columns)), schema=schema).unify_dictionaries()
    table = table.combine_chunks()
    column = table.column(key)
    if column.null_count:
        raise ReleaseError(f"{path.name}: column '{key}' has {column.null_count} empty values")
    return _Keyed(table, column.to_numpy().astype(np.int64, copy=False), path.name)


class _RangeFiles:
    """A body table split by body range (``bounds``, as ``bucketed`` splits) into one Arrow IPC stream
    file per range, in one pass over the feather; ``keyed(k)`` reads range ``k`` back. The stream
    format keeps each piece's dictionaries as they are (the file format allows one per column)."""

    def __init__(self, path, key: str, columns: list[str], bounds: list[int], folder):
        schema = open_feather(path).schema
        self.schema = pa.schema([schema.field(c) for c in columns])
        self.path, self.key, self.folder = path, key, folder
        folder.mkdir(exist_ok=True)
        edges, writers, nulls = np.asarray(bounds, np.int64), {}, 0
        try:
            for batch in iter_batches(path, columns):
                column = batch.column(key)
                nulls += column.null_count
                if nulls:
                    continue
                bucket = np.searchsorted(edges, column.to_numpy().astype(np.int64, copy=False), side="right")
                order = np.argsort(bucket, kind="stable")
                cuts = np.searchsorted(bucket[order], np.arange(len(edges) + 2))
                ordered = batch.take(pa.array(order))
                for k in np.flatnonzero(np.diff(cuts)):
                    if k not in writers:
                        writers[k] = stream_file_writer(folder / f"{k}.arrows", self.schema)
                    writers[k].write_batch(ordered.slice(cuts[k], cuts[k + 1] - cuts[k]))
        finally:
            for writer in writers.values():
                writer.close()
        if nulls:
            raise ReleaseError(f"{path.name}: column '{key}' has {nulls} empty values")

    def keyed(self, k: int) -> _Keyed:
        """Range ``k``'s rows, keyed by body (one chunk, one dictionary per column)."""
        file = self.folder / f"{k}.arrows"
        if file.exists():
            table = read_stream_file(file).unify_dictionaries().combine_chunks()
        else:
            table = self.schema.empty_table()
        return _Keyed(table, table.column(self.key).to_numpy().astype(np.int64, copy=False), self.path.name)


def _segments_sql(con, ann_cols: list[str], nt_cols: list[str]) -> str:
    """The SELECT of segments' columns over ``{stream}``, a relation of: bodyId, the stats (``s_``
    prefix; NULL for a body without stats), the annotation columns ``a_0``..., the neurotransmitter
    columns ``n_0``... and roiInfo."""
    ann_types = column_types(con, "raw_ann")
    ann_select = []
    for i, c in enumerate(ann_cols):
        ref, ctype = quote_ident(f"a_{i}"), ann_types[c]
        if c in LOCATION_COLUMNS:
            ann_select.append(f"CAST({ref} AS BIGINT[]) AS {quote_ident(c)}")
        elif ctype.startswith("ENUM") or c == "statusLabel":
            ann_select.append(f"CAST({ref} AS VARCHAR) AS {quote_ident(c)}")
        elif ctype in ("DOUBLE", "FLOAT") and whole_numbers(con, "raw_ann", c):
            # Ids and counts (group, mancBodyid, ...) are floats in the feather only because of nulls;
            # neuPrint stores them as integers.
            ann_select.append(f"CAST({ref} AS BIGINT) AS {quote_ident(c)}")
        else:
            ann_select.append(f"{ref} AS {quote_ident(c)}")
    nt_select = [f"{quote_ident(f'n_{i}')} AS {quote_ident(camel(c))}" for i, c in enumerate(nt_cols)]
    present = {
        "bodyId",
        "pre",
        "post",
        "upstream",
        "downstream",
        "synweight",
        "roiInfo",
        *ann_cols,
        *(camel(c) for c in nt_cols),
    }
    null_checks = " OR ".join(f"{quote_ident(c)} IS NOT NULL" for c in NEURON_PROPERTY_NULL_CHECK if c in present)
    status_check = "status IN ('Traced', 'Anchor')" if "status" in present else "FALSE"
    excluded = "coalesce(status, '') NOT IN ('Unimportant', 'Glia')" if "status" in present else "TRUE"
    is_neuron = f"""coalesce(
          (synweight >= {NEURON_SYNWEIGHT_MIN} OR pre >= {NEURON_SYNWEIGHT_MIN} OR post >= {NEURON_SYNWEIGHT_MIN}
           {"OR " + null_checks if null_checks else ""} OR coalesce({status_check}, FALSE)) AND {excluded}, FALSE)"""
    columns = ", ".join([*ann_select, *nt_select])
    size = ", NULL::BIGINT AS size" if "size" not in ann_cols else ""
    # Doubled braces: the text is a format string with one field, {stream}.
    return f"""
        WITH segment AS (
          SELECT bodyId,
                 coalesce(s_pre, 0)::BIGINT AS pre, coalesce(s_post, 0)::BIGINT AS post,
                 coalesce(s_post, 0)::BIGINT AS upstream, coalesce(s_downstream, 0)::BIGINT AS downstream,
                 coalesce(s_synweight, 0)::BIGINT AS synweight,
                 {columns}{"," if columns else ""}
                 coalesce(roiInfo, '{{{{}}}}') AS roiInfo
                 {size}
          FROM {{stream}})
        SELECT *, {is_neuron} AS is_neuron FROM segment"""


def _stream_schema(ann: _Keyed, nt: _RangeFiles, ann_cols: list[str], nt_cols: list[str]) -> pa.Schema:
    fields = [pa.field("bodyId", pa.int64())]
    fields += [pa.field(f"s_{c}", pa.int64()) for c in STAT_COLUMNS[1:]]
    fields += [pa.field(f"a_{i}", ann.table.schema.field(c).type) for i, c in enumerate(ann_cols)]
    fields += [pa.field(f"n_{i}", nt.schema.field(c).type) for i, c in enumerate(nt_cols)]
    fields.append(pa.field("roiInfo", pa.string()))
    return pa.schema(fields)


def _range_rows(stats_dir, stats_name: str, k: int, seg_bounds, ann: _Keyed, nt: _Keyed):
    """Range ``k``'s body ids in order, and per source (stats, annotations, neurotransmitters) its
    table and the row of each id in it (-1: none)."""
    folder = stats_dir / f"bucket={k}"
    paths = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if paths:
        stats = pa.concat_tables(pq.read_table(p) for p in paths).combine_chunks()
    else:  # a range of annotated bodies only
        stats = pa.table({c: pa.array([], pa.int64()) for c in STAT_COLUMNS})
    if stats.column("body").null_count:
        raise ReleaseError(f"{stats_name}: column 'body' has {stats.column('body').null_count} empty values")
    by_stats = _Keyed(stats, stats.column("body").to_numpy(), stats_name)
    lo, hi = (
        np.searchsorted(ann.keys, seg_bounds[k - 1]) if k > 0 else 0,
        np.searchsorted(ann.keys, seg_bounds[k]) if k < len(seg_bounds) else len(ann.keys),
    )
    ann_ids = ann.keys[lo:hi]
    ids = by_stats.keys
    if len(ann_ids):
        extra = ann_ids[_positions(ids, ann_ids) < 0]
        if len(extra):  # annotated bodies without stats (few): merged in
            ids = np.insert(ids, np.searchsorted(ids, extra), extra)
    if not len(ids):
        return ids, []
    return ids, [
        (stats, by_stats.lookup(ids)),
        (ann.table, ann.lookup(ids)),
        (nt.table, nt.lookup(ids)),
    ]


class _RoiInfo:
    """The per-range roiInfo files (bodyId, roiInfo), each in body order and the files in range order:
    the rows of a run of bodies are read from the row groups whose bodyId statistics overlap it."""

    def __init__(self, paths):
        self.lock = threading.Lock()  # the batch threads share the open files
        self.groups = []  # (file, row group, first body, last body), in body order
        for path in paths:
            f = pq.ParquetFile(path)
            for i in range(f.num_row_groups):
                stats = f.metadata.row_group(i).column(0).statistics
                if f.metadata.row_group(i).num_rows:
                    self.groups.append((f, i, stats.min, stats.max))
        if any(a[3] >= b[2] for a, b in zip(self.groups, self.groups[1:])):
            raise StoreError("roiInfo: the per-range files are not in body order")
        # Both ascend (the groups do not overlap): a run's groups are found by binary search
        # (~4,500 groups of 16 K rows at full scale, ~600 runs).
        self.firsts = np.array([g[2] for g in self.groups], np.int64)
        self.lasts = np.array([g[3] for g in self.groups], np.int64)

    def between(self, lo: int, hi: int) -> tuple[np.ndarray, pa.ChunkedArray]:
        """Bodies in [lo, hi] that have a roiInfo, ascending, and their texts."""
        start = int(np.searchsorted(self.lasts, lo, side="left"))  # the first group whose last >= lo
        end = int(np.searchsorted(self.firsts, hi, side="right"))  # past the last group whose first <= hi
        with self.lock:
            parts = [f.read_row_group(i) for f, i, _, _ in self.groups[start:end]]
        if not parts:
            return np.zeros(0, np.int64), pa.chunked_array([], pa.string())
        table = pa.concat_tables(parts)
        bodies = table.column("bodyId").to_numpy()
        if not (np.diff(bodies) > 0).all():
            raise StoreError("roiInfo: a row group is not in body order")
        a, b = np.searchsorted(bodies, [lo, hi + 1])
        return bodies[a:b], table.column("roiInfo").slice(a, b - a)


def _positions(keys: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Index of each of ``ids`` in the ascending ``keys``, -1 where absent."""
    if not len(keys):
        return np.full(len(ids), -1, np.int64)
    pos = np.searchsorted(keys, ids)
    pos[pos == len(keys)] = 0
    return np.where(keys[pos] == ids, pos, -1)


def _take(table: pa.Table, columns: list[str], rows: np.ndarray) -> list[pa.Array]:
    """``columns`` of ``table`` at ``rows``, NULL where the row is -1."""
    taken = table.select(columns).take(pa.array(rows, mask=rows < 0))
    return [c.combine_chunks() for c in taken.columns]


def _texts_at(texts: pa.ChunkedArray, rows: np.ndarray) -> pa.Array:
    """``texts`` at ``rows`` (ascending where present), NULL where the row is -1. When the rows present
    are a run (every text of the slice used: the usual case), the run's bytes are copied once and the
    offsets made in NumPy; otherwise a take."""
    present = rows >= 0
    used = rows[present]
    if not len(used):
        return pa.nulls(len(rows), pa.string())
    lo, hi = int(used[0]), int(used[-1]) + 1
    if hi - lo != len(used):
        return texts.take(pa.array(rows, mask=~present)).combine_chunks()
    run = texts.slice(lo, hi - lo).combine_chunks()
    _, offsets, data = run.buffers()
    offsets = np.frombuffer(offsets, np.int32, len(run) + 1, run.offset * 4)
    # A row's end offset is its text's end, or (NULL: empty) the end of the row before it.
    ends = np.maximum.accumulate(np.where(present, offsets[np.maximum(rows - lo, 0) + 1], offsets[0]))
    validity = pa.py_buffer(np.packbits(present, bitorder="little"))
    offsets = pa.py_buffer(np.concatenate([offsets[:1], ends]))
    return pa.Array.from_buffers(pa.string(), len(rows), [validity, offsets, data])


def _batches(ids, parts, roi_info: _RoiInfo, ann_cols, nt_cols, schema: pa.Schema):
    """The range's rows as Arrow batches in body order, made ahead in threads (the takes release
    the GIL). Each batch reads only its bodies' roiInfo (a range's texts are ~300 bytes a body: ~1 GB
    at full scale)."""
    (stats, stats_rows), (ann_table, ann_rows), (nt_table, nt_rows) = parts

    def batch(start: int) -> pa.RecordBatch:
        cut = slice(start, start + BATCH_ROWS)
        bodies, texts = roi_info.between(int(ids[cut][0]), int(ids[cut][-1]))
        arrays = [pa.array(ids[cut], pa.int64())]
        arrays += _take(stats, list(STAT_COLUMNS[1:]), stats_rows[cut])
        arrays += _take(ann_table, ann_cols, ann_rows[cut])
        arrays += _take(nt_table, nt_cols, nt_rows[cut])
        arrays.append(_texts_at(texts, _positions(bodies, ids[cut])))
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    def batches():
        starts = iter(range(0, len(ids), BATCH_ROWS))
        with ThreadPoolExecutor(PREFETCH_THREADS) as pool:
            ahead = deque(pool.submit(batch, s) for s in itertools.islice(starts, PREFETCH_BATCHES))
            while ahead:
                done = ahead.popleft().result()
                for s in itertools.islice(starts, 1):
                    ahead.append(pool.submit(batch, s))
                yield done

    return batches()


def _check_order(con, first: int, ids: np.ndarray) -> None:
    """The rows just appended are the range's ids in order (DuckDB keeps a stream's order under
    preserve_insertion_order; this guards the store's documented order against a change of that)."""
    stored = con.execute(f"SELECT bodyId FROM segments WHERE rowid >= {first}").fetchnumpy()["bodyId"]
    if len(stored) != len(ids) or not np.array_equal(np.asarray(stored), ids):
        raise StoreError("segments: a body range was not appended in body order")
