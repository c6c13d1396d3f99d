"""Neuron-only summaries, prepared once at ingest for the queries that only ever look at :Neuron bodies.

Most analyses (fetch_adjacencies with its default criteria, connection_matrix with ``neurons_only``,
fetch_neurons) read neurons only, yet ``connections``, ``connection_rois`` and ``segment_rois`` hold
every body: at full scale 2 % of ``connection_rois``' 343 M rows are between neurons. These tables are
those rows (or sums of them), built after ``segments`` (which decides ``is_neuron``):

* ``neurons``: the rows of ``segments`` that are :Neuron, sorted by bodyId (every column): criteria
  with the :Neuron label scan ~1/400 of the rows.
* ``neuron_connections`` / ``neuron_connections_by_post``: ``connections`` between two neurons,
  sorted by either side.
* ``neuron_connection_rois`` / ``neuron_connection_rois_by_post``: ``connection_rois`` between two
  neurons, sorted by either side.
* ``neuron_rois``: ``segment_rois`` of neurons, sorted by bodyId then ROI (``segment_rois`` is
  sorted by ROI, so a set of bodies would scan all of it).
* ``neuron_roi_pairs``: synapse pairs between two neurons per (ROI set, ROI of the T-bar, ROI of
  the PSD, body pair), the ROI x ROI matrix before summing; ``roi_matrix``: its sums (weight,
  connections) per (ROI set, pre ROI, post ROI), the whole-brain matrix as one small table.
"""

from __future__ import annotations

from flatprint.ingest.layout import ROI_COUNTS_COLUMNS, ROI_COUNTS_STORED, create_table_like
from flatprint.ingest.ranges import in_range_sql, range_count
from flatprint.store.sql import sql_literal

ROI_SETS = ("primary", "major")
LABEL_COLUMN = {"primary": "pl", "major": "ml"}  # neuron_label_pairs' label columns per ROI set
SUMMARY_TABLES = (
    "neurons",
    "neuron_connections",
    "neuron_connections_by_post",
    "neuron_connection_rois",
    "neuron_connection_rois_by_post",
    "neuron_rois",
    "neuron_roi_pairs",
    "roi_matrix",
)


def roi_labels_sql(roi_set: str) -> str:
    """(label, roi) of ``roi_set``: a point label -> the ROI of that set it lies in (as
    flatprint.query.heavy's ROI x ROI matrix resolves it: a store with levels beyond primary and
    major keeps combined labels in major_label, which only roi_map resolves)."""
    s = sql_literal(roi_set)
    return (
        f"(SELECT m.label, m.roi FROM roi_map m JOIN rois r ON r.roi = m.roi AND r.roi_set = {s} WHERE m.roi_set = {s})"
    )


def build_summaries(con, stage, bounds: list[int]) -> None:
    """Create the neuron-only tables from ``segments``, ``connections``, ``connection_rois``,
    ``segment_rois``, ``partners`` and its ends' ``synapses`` rows (their ROI labels); ``bounds``
    are the body ranges partners was built in. The synapse pairs between neurons are joined to both
    ends' labels and grouped one run of those ranges at a time: as many runs as keep a run's pairs
    within a quarter of the memory limit, because every run reads the post ends from all of
    ``synapses`` (one run per range read it ~48 times at full scale). The tables are the same for
    any number of runs."""
    con.execute("SET preserve_insertion_order = true")  # the ORDER BYs below are the tables' order
    ranges = len(bounds) + 1
    with stage.timed("neuron summaries", 7) as advance:
        create_table_like(con, "neurons", "SELECT * FROM segments")
        con.execute("INSERT INTO neurons SELECT * FROM segments WHERE is_neuron ORDER BY bodyId")
        con.execute("CREATE OR REPLACE TEMP TABLE neuron_ids AS SELECT bodyId FROM neurons")
        both = "SEMI JOIN neuron_ids a ON a.bodyId = c.body_pre SEMI JOIN neuron_ids b ON b.bodyId = c.body_post"
        con.execute(f"""
            CREATE TABLE neuron_connections AS
            SELECT c.* FROM connections c {both} ORDER BY c.body_pre, c.body_post""")
        con.execute("""
            CREATE TABLE neuron_connections_by_post AS
            SELECT * FROM neuron_connections ORDER BY body_post, body_pre""")
        advance()
        con.execute(f"""
            CREATE TABLE neuron_connection_rois AS
            SELECT c.* FROM connection_rois c {both} ORDER BY c.body_pre, c.body_post, c.roi""")
        advance()
        con.execute("""
            CREATE TABLE neuron_connection_rois_by_post AS
            SELECT * FROM neuron_connection_rois ORDER BY body_post, body_pre, roi""")
        advance()
        con.execute(f"CREATE TABLE neuron_rois {ROI_COUNTS_COLUMNS}")
        con.execute(f"""
            INSERT INTO neuron_rois SELECT {ROI_COUNTS_STORED}
            FROM segment_rois r SEMI JOIN neuron_ids n ON n.bodyId = r.bodyId ORDER BY r.bodyId, r.roi""")
        advance()
        con.execute("""
            CREATE TEMP TABLE neuron_label_pairs (body_pre BIGINT, body_post BIGINT, pl_pre USMALLINT,
              pl_post USMALLINT, ml_pre USMALLINT, ml_post USMALLINT, n BIGINT)""")
        # neuron_connections' weights sum to the synapse pairs between neurons, exactly.
        pairs = con.execute("SELECT coalesce(sum(weight), 0) FROM neuron_connections").fetchall()[0][0]
        step = -(-ranges // range_count(con, int(pairs), 100))
        runs = bounds[step - 1 :: step]
        for k in range(len(runs) + 1):
            con.execute(f"""
                INSERT INTO neuron_label_pairs
                SELECT p.body_pre, p.body_post, a.primary_label, b.primary_label, a.major_label, b.major_label,
                       count(*)
                FROM partners p
                JOIN (SELECT syn_id, primary_label, major_label FROM synapses
                      WHERE {in_range_sql("body", runs, k)}) a ON a.syn_id = p.pre_id
                JOIN synapses b ON b.syn_id = p.post_id
                SEMI JOIN neuron_ids na ON na.bodyId = p.body_pre SEMI JOIN neuron_ids nb ON nb.bodyId = p.body_post
                WHERE {in_range_sql("p.body_pre", runs, k)}
                GROUP BY ALL""")
        advance()
        per_set = " UNION ALL ".join(
            f"""
            SELECT {sql_literal(s)} AS roi_set, rp.roi AS pre_roi, rq.roi AS post_roi, p.body_pre, p.body_post,
                   sum(p.n)::BIGINT AS weight
            FROM neuron_label_pairs p
            JOIN {roi_labels_sql(s)} rp ON rp.label = p.{LABEL_COLUMN[s]}_pre
            JOIN {roi_labels_sql(s)} rq ON rq.label = p.{LABEL_COLUMN[s]}_post
            GROUP BY ALL"""
            for s in ROI_SETS
        )
        con.execute(f"""
            CREATE TABLE neuron_roi_pairs AS
            SELECT * FROM ({per_set}) ORDER BY body_pre, body_post, roi_set, pre_roi, post_roi""")
        advance()
        con.execute("""
            CREATE TABLE roi_matrix AS
            SELECT roi_set, pre_roi, post_roi, sum(weight)::BIGINT AS weight, count(*)::BIGINT AS connections
            FROM neuron_roi_pairs GROUP BY ALL ORDER BY roi_set, pre_roi, post_roi""")
        advance()
        con.execute("DROP TABLE neuron_label_pairs; DROP TABLE neuron_ids")
    con.execute("SET preserve_insertion_order = false")
