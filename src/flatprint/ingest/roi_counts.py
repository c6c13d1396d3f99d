"""Per-body ROI counts at ingest (``segment_rois`` and each body's roiInfo text), summed up the ROI
hierarchy through ``roi_codes`` (label -> every ROI it counts under). ``segment_rois`` runs once per
body range inside the partners step (ingest/build.py), after ingest/partners.py left each T-bar's
partner count in ``tbar_down``; ``build_segment_rois`` then sorts the per-range counts by ROI into
the store's ``segment_rois``."""

from __future__ import annotations

import shutil
from pathlib import Path

from flatprint.ingest.layout import ROI_COUNTS_COLUMNS, ROI_COUNTS_STORED
from flatprint.ingest.ranges import range_count
from flatprint.ingest.roi_info import write_roi_info
from flatprint.store.sql import sql_literal

ROI_INFO_BATCH_ROWS = 1 << 20  # rows of per-ROI counts turned into roiInfo text at a time


def segment_rois(con, keys: list[str], first: int, last: int, counts_file: Path, roi_info_file: Path) -> None:
    """Per-body, per-ROI counts of the synapses [first, last) (the bodies of one range, whose T-bars'
    partner counts are in ``tbar_down``) to ``counts_file`` sorted by ROI then body, and those bodies'
    roiInfo text to ``roi_info_file`` in body order; downstream counts the PSDs each T-bar's partners
    have. Parquet in the build directory rather than TEMP tables: at full scale these are ~280 M
    rows and ~20 GB of text, which DuckDB keeps uncompressed in memory and spills."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE range_segment_rois AS
        WITH body_labels AS (
          SELECT s.body, s.primary_label AS pl, s.major_label AS ml,
                 count(*) FILTER (s.kind = 'pre') AS pre, count(*) FILTER (s.kind = 'post') AS post,
                 coalesce(sum(d.n), 0) AS downstream
          FROM synapses s LEFT JOIN tbar_down d ON d.pre_id = s.syn_id
          WHERE s.syn_id >= {first} AND s.syn_id < {last} GROUP BY ALL),
        expanded AS (
          SELECT body, m.roi, pre, post, downstream FROM body_labels
          JOIN roi_codes m ON m.roi_set = 'primary' AND m.label = pl
          UNION ALL
          SELECT body, m.roi, pre, post, downstream FROM body_labels
          JOIN roi_codes m ON m.roi_set = 'major' AND m.label = ml)
        SELECT body AS bodyId, roi, sum(pre)::BIGINT AS pre, sum(post)::BIGINT AS post,
               sum(downstream)::BIGINT AS downstream, sum(post)::BIGINT AS upstream,
               (sum(downstream) + sum(post))::BIGINT AS synweight
        FROM expanded GROUP BY ALL""")
    # Sorted by ROI, so each group of ROIs in build_segment_rois reads only its row groups.
    con.execute(f"""COPY (SELECT bodyId, CAST(roi AS VARCHAR) AS roi, pre, post, downstream
                          FROM range_segment_rois r ORDER BY r.roi, bodyId)
                    TO {sql_literal(str(counts_file))} (FORMAT parquet)""")
    # roiInfo JSON text, keys in the order of their text (see ingest/roi_info.py).
    rows = con.sql("""
        SELECT r.bodyId, k.key_rank, r.pre, r.post, r.downstream, r.upstream, r.synweight
        FROM range_segment_rois r JOIN roi_info_keys k USING (roi) ORDER BY r.bodyId, k.key_rank""")
    write_roi_info(rows.to_arrow_reader(ROI_INFO_BATCH_ROWS), keys, roi_info_file)


def build_segment_rois(con, stage, work: Path, roi_type: str, buckets: int | None) -> None:
    """``segment_rois`` sorted by ROI, then body, in groups of ROIs that fit in memory, from the
    per-range files ``segment_rois`` wrote under ``work``; ``roi_type``: the ROI names as an ENUM in
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
