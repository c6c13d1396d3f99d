"""The store's ``segment_rois``: the per-range files of per-body ROI counts that ingest/body_rois.py
writes inside the partners step, sorted by ROI (then body) into one table."""

from __future__ import annotations

import shutil
from pathlib import Path

from flatprint.ingest.layout import ROI_COUNTS_COLUMNS, ROI_COUNTS_STORED
from flatprint.ingest.ranges import range_count
from flatprint.store.sql import sql_literal


def build_segment_rois(con, stage, work: Path, roi_type: str, buckets: int | None) -> None:
    """``segment_rois`` sorted by ROI, then body, in groups of ROIs that fit in memory, from the
    per-range files ingest/body_rois.py wrote under ``work``; ``roi_type``: the ROI names as an ENUM in
    name order; ``buckets``: the caller's number of groups (None: from the memory limit)."""
    unsorted = f"read_parquet({sql_literal(str(work / 'segment-rois' / '*.parquet'))})"
    counts = con.execute(f"SELECT roi, count(*) FROM {unsorted} GROUP BY roi ORDER BY roi").fetchall()
    total = sum(n for _, n in counts)
    groups_wanted = buckets or range_count(con, total, 120)
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
    with stage.timed("segment ROIs", len(groups)) as advance:
        for group in groups:
            if group:  # none when the release has no synapses in any ROI
                # A group is a run of ROIs in name order (the files' row groups are too: most are skipped);
                # the sort key is the ROI's ENUM, which sorts as the name does.
                lo, hi = (sql_literal(r) for r in (group[0], group[-1]))
                con.execute(f"""INSERT INTO segment_rois
                                SELECT {ROI_COUNTS_STORED}
                                FROM {unsorted} WHERE roi BETWEEN {lo} AND {hi}
                                ORDER BY CAST(roi AS {roi_type}), bodyId""")
            advance()
    shutil.rmtree(work / "segment-rois", ignore_errors=True)
    con.execute("SET preserve_insertion_order = false")
