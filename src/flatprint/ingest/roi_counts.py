"""The store's ``segment_rois``: the per-range files of per-body ROI counts that ingest/body_rois.py
writes inside the partners step, sorted by ROI (then body) into one table.

Each file holds one body range sorted by ROI, then body, and the files' ranges ascend: the table's
order is every file's run of a ROI, in file order, ROI after ROI. A group of ROIs is gathered from
the files' row groups and put in that order by a stable sort of the ROI's rank alone (a radix sort),
instead of DuckDB's sort of every row by (ROI, body) (scale 0.1: ~28 M rows)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flatprint.ingest.layout import ROI_COUNTS_COLUMNS, ROI_COUNTS_STORED
from flatprint.ingest.ranges import range_count
from flatprint.io.duckdb_session import memory_limit_lowered
from flatprint.store.sql import sql_literal

# A group's rows are held twice in Python (gathered, then sorted) at ~36 bytes a row (the ROI as a
# dictionary index): ~300 bytes a row of a quarter of DuckDB's limit keeps that under PYTHON_BYTES.
BYTES_PER_ROW = 300
PYTHON_BYTES = 384 * 1024**2


def build_segment_rois(con, stage, work: Path, roi_type: str, buckets: int | None) -> None:
    """``segment_rois`` sorted by ROI, then body, in groups of ROIs that fit in memory, from the
    per-range files ingest/body_rois.py wrote under ``work``; ``roi_type``: the ROI names as an ENUM in
    name order (the order of the table); ``buckets``: the caller's number of groups (None: from the
    memory limit)."""
    paths = sorted((work / "segment-rois").glob("*.parquet"))
    unsorted = f"read_parquet({sql_literal(str(work / 'segment-rois' / '*.parquet'))})"
    # Name order as the ENUM sorts (DuckDB compares VARCHAR by bytes: UTF-8 bytes sort as code points).
    counts = con.execute(
        f"SELECT roi, count(*) FROM {unsorted} GROUP BY roi ORDER BY CAST(roi AS {roi_type})"
    ).fetchall()
    total = sum(n for _, n in counts)
    groups_wanted = buckets or range_count(con, total, BYTES_PER_ROW)
    per_group = max(1, -(-total // groups_wanted))
    groups: list[list[str]] = [[]]
    filled = 0
    for roi, n in counts:
        if groups[-1] and filled + n > per_group:
            groups.append([])
            filled = 0
        groups[-1].append(roi)
        filled += n
    con.execute(f"CREATE TABLE segment_rois {ROI_COUNTS_COLUMNS}")
    con.execute("SET preserve_insertion_order = true")  # the rows arrive in the table's order
    files = [pq.ParquetFile(p, read_dictionary=["roi"]) for p in paths]
    with stage.timed("segment ROIs", len(groups)) as advance, memory_limit_lowered(con, PYTHON_BYTES):
        for group in groups:
            if group:  # none when the release has no synapses in any ROI
                con.register("segment_rois_group", _group_rows(files, group))
                con.execute(f"INSERT INTO segment_rois SELECT {ROI_COUNTS_STORED} FROM segment_rois_group")
                con.unregister("segment_rois_group")
            advance()
    shutil.rmtree(work / "segment-rois", ignore_errors=True)
    con.execute("SET preserve_insertion_order = false")


def _group_rows(files: list[pq.ParquetFile], group: list[str]) -> pa.Table:
    """The rows of the ROIs ``group`` (names in table order) from every file, sorted by ROI, then
    body: each file's rows of a ROI are in body order and the files' body ranges ascend, so a
    stable sort by the ROI's place in ``group`` is that order."""
    names = pa.array(group, pa.string())
    lo, hi = group[0], group[-1]
    parts, ranks = [], []
    for f in files:
        roi_column = f.schema_arrow.get_field_index("roi")
        for i in range(f.metadata.num_row_groups):
            stats = f.metadata.row_group(i).column(roi_column).statistics
            if stats is not None and stats.has_min_max and (stats.max < lo or stats.min > hi):
                continue  # the row group's ROIs lie outside the group (the file is sorted by ROI)
            table = f.read_row_group(i).combine_chunks()
            if not table.num_rows:
                continue
            roi = table.column("roi").chunk(0)
            # Each dictionary entry's place in the group (-1: not in it), then each row's.
            place = pc.index_in(roi.dictionary, value_set=names).fill_null(-1).to_numpy(zero_copy_only=False)
            rank = place[roi.indices.to_numpy(zero_copy_only=False)]
            keep = np.flatnonzero(rank >= 0)
            if not len(keep):
                continue
            if len(keep) < len(rank):
                table, rank = table.take(pa.array(keep)), rank[keep]
            at = table.schema.get_field_index("roi")
            parts.append(table.set_column(at, "roi", table.column(at).cast(pa.string())))
            ranks.append(rank)
    order = np.argsort(np.concatenate(ranks).astype(np.uint16), kind="stable")  # a radix sort
    return pa.concat_tables(parts).take(pa.array(order)).combine_chunks()
