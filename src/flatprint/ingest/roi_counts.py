"""Per-ROI counts at ingest: per body pair (``connection_rois``) and per body (``segment_rois`` and
each body's roiInfo text), summed up the ROI hierarchy through ``roi_codes`` (label -> every ROI it
counts under). ``connection_rois`` and ``segment_rois`` run once per body range inside the partners
step (ingest/build.py), over its ``tbar_labels``; ``build_segment_rois`` then sorts the per-range
counts by ROI into the store's ``segment_rois``."""

from __future__ import annotations

import shutil
from pathlib import Path

from flatprint.ingest.layout import ROI_COUNTS_COLUMNS, ROI_COUNTS_STORED
from flatprint.ingest.ranges import range_count
from flatprint.ingest.roi_info import write_roi_info
from flatprint.store.sql import sql_literal

ROI_INFO_BATCH_ROWS = 1 << 20  # rows of per-ROI counts turned into roiInfo text at a time


def connection_rois(con) -> None:
    """Append the per-ROI weights of one range's pairs (``tbar_labels``) to connection_rois."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE pair_labels AS
        SELECT body_pre, body_post, pl, ml, sum(n) AS post, count(pre_id) AS pre FROM tbar_labels GROUP BY ALL""")
    # `pre` counts distinct T-bars per ROI. Summing the per-label counts up the hierarchy counts a
    # T-bar twice when its PSDs on one partner lie in two ROIs of one grouping (LegNp(T1)(L) and
    # LegNp(T2)(L) under VNC): correct exactly for those few T-bars instead of expanding every row.
    con.execute("""
        CREATE OR REPLACE TEMP TABLE pre_overcount AS
        WITH split_tbars AS (
          SELECT pre_id, body_post FROM tbar_labels GROUP BY pre_id, body_post
          HAVING min(pl) <> max(pl) OR min(ml) <> max(ml)),
        combos AS (
          SELECT t.body_pre, t.body_post, t.pre_id, t.pl, t.ml
          FROM tbar_labels t SEMI JOIN split_tbars s ON s.pre_id = t.pre_id AND s.body_post = t.body_post),
        expanded AS (
          SELECT body_pre, body_post, pre_id, m.roi FROM combos
          JOIN roi_codes m ON m.roi_set = 'primary' AND m.label = pl
          UNION ALL
          SELECT body_pre, body_post, pre_id, m.roi FROM combos
          JOIN roi_codes m ON m.roi_set = 'major' AND m.label = ml)
        SELECT body_pre, body_post, roi, count(*) - count(DISTINCT pre_id) AS over
        FROM expanded GROUP BY ALL HAVING count(*) > count(DISTINCT pre_id)""")
    con.execute("""
        INSERT INTO connection_rois
        WITH expanded AS (
          SELECT body_pre, body_post, m.roi, post, pre FROM pair_labels
          JOIN roi_codes m ON m.roi_set = 'primary' AND m.label = pl
          UNION ALL
          SELECT body_pre, body_post, m.roi, post, pre FROM pair_labels
          JOIN roi_codes m ON m.roi_set = 'major' AND m.label = ml),
        summed AS (
          SELECT body_pre, body_post, roi, sum(post)::BIGINT AS weight, sum(pre)::BIGINT AS pre
          FROM expanded GROUP BY ALL)
        SELECT s.body_pre, s.body_post, CAST(s.roi AS VARCHAR), s.weight, (s.pre - coalesce(o.over, 0))::BIGINT
        FROM summed s LEFT JOIN pre_overcount o USING (body_pre, body_post, roi)
        ORDER BY s.body_pre, s.body_post, s.roi""")
    con.execute("DROP TABLE pair_labels; DROP TABLE pre_overcount")


def segment_rois(con, keys: list[str], first: int, last: int, counts_file: Path, roi_info_file: Path) -> None:
    """Per-body, per-ROI counts of the synapses [first, last) (the bodies of one range, whose T-bars'
    partners are in ``tbar_labels``) to ``counts_file`` sorted by ROI then body, and those bodies'
    roiInfo text to ``roi_info_file`` in body order; downstream counts the PSDs each T-bar's partners
    have. Parquet in the build directory rather than TEMP tables: at full scale these are ~280 M
    rows and ~20 GB of text, which DuckDB keeps uncompressed in memory and spills."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE range_segment_rois AS
        WITH tbar_down AS (SELECT pre_id, sum(n) AS n FROM tbar_labels GROUP BY pre_id),
        body_labels AS (
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
