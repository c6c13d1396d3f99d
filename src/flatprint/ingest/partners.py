"""One pre-body range of the partners step in NumPy: ``partners``, ``connections``,
``connection_rois`` and each T-bar's partner count (``down``, which ingest/body_rois.py reads).

DuckDB resolves the range's pre ends (a hash join) and sorts the pairs once, by (body_pre,
body_post, pre_id, post_id), the order ``partners`` stores; every aggregate is then a run-length sum
over the sorted rows or a stable sort of nearly sorted small integer keys, instead of DuckDB's
high-cardinality hash aggregates (about nine passes over the rows, 0.3-1.2 µs CPU a row each;
benchmarks/analysis.md). A binary search of the T-bars in NumPy for the pre ends took twice the
join's CPU. Results go to DuckDB as Arrow tables of ~1 M rows (an Arrow table is scanned by every
thread, a stream by one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flatprint.ingest.layout import POST_HP_THRESHOLD, PRE_HP_THRESHOLD
from flatprint.ingest.post_parts import PostPartitions
from flatprint.ingest.ranges import POINT_ID_SQL

INSERT_ROWS = 1 << 20  # rows per Arrow table handed to one INSERT, and per piece of a range
FETCH_ROWS = 1 << 16  # rows per batch of the range's sorted stream
# What the step holds in Python at most: DuckDB's memory limit is lowered by that much while it runs
# (it does not cover memory outside its buffer pool). A piece here is ~150 bytes a row with the
# aggregates' arrays; ingest/body_rois.py then holds a range's points and its (body, ROI) rows
# (~400 MB of NumPy and ~220 MB of Arrow at most for a range of 5.1 M points at scale 0.1).
PYTHON_BYTES = 640 * 1024**2
NO_LABEL = -1  # a NULL ROI label: a group of its own, under no ROI


@dataclass
class RoiMap:
    """The ROI names (in name order: the code of a ROI is its index) and, per ROI set, label -> the
    codes of every ROI a point with that label counts under (``roi_codes``)."""

    names: pa.Array
    primary: dict[int, list[int]]
    major: dict[int, list[int]]

    @classmethod
    def load(cls, con) -> RoiMap:
        names = [r[0] for r in con.execute("SELECT DISTINCT roi FROM roi_map ORDER BY roi").fetchall()]
        code = {n: i for i, n in enumerate(names)}
        sets: dict[str, dict[int, list[int]]] = {"primary": {}, "major": {}}
        for roi_set, label, roi in con.execute(
            "SELECT roi_set, label, roi FROM roi_map ORDER BY roi_set, label, roi"
        ).fetchall():
            if roi_set in sets and label is not None:
                sets[roi_set].setdefault(int(label), []).append(code[roi])
        return cls(pa.array(names, pa.string()), sets["primary"], sets["major"])


def build_range(
    con, pairs: pa.Table, first: int, last: int, rois: RoiMap, by_post: PostPartitions
) -> tuple[tuple[int, int, int], np.ndarray]:
    """Append range [first, last)'s rows of partners, connections and connection_rois (``pairs``:
    the range's pairs, post ends resolved), the rows of the last two also to ``by_post``.
    Returns the counts of pairs whose pre end, post end is not a point of its body and of pairs
    whose confidences differ from their points' (the caller raises on any), and each T-bar's
    partner count (``down[syn_id - first]``).

    The sorted pairs are fetched as a stream, ~``INSERT_ROWS`` at a time cut where body_pre changes
    (every aggregate lies within one pre body), so Python holds a piece of the range, not all of it
    (~6 M rows, ~1 GB with the aggregates' arrays; outside DuckDB's memory limit)."""
    cursor = con.cursor()  # the stream's own connection: a statement on ``con`` would end it
    cursor.register("range_pairs", pairs)
    try:
        # The pre ends (a hash join: a binary search in NumPy took twice its CPU) and the one sort.
        reader = cursor.sql(f"""
            SELECT r.body_pre, r.body_post, s.syn_id AS pre_id, r.post_id,
                   coalesce(r.conf_post >= {POST_HP_THRESHOLD} AND r.conf_pre >= {PRE_HP_THRESHOLD}, false) AS hp,
                   (r.conf_pre IS DISTINCT FROM s.conf OR r.conf_post IS DISTINCT FROM r.point_conf_post) AS differs,
                   r.primary_label_post AS pl, r.major_label_post AS ml
            FROM range_pairs r
            LEFT JOIN (SELECT syn_id, {POINT_ID_SQL.format(x="x", y="y", z="z")} AS point_id, body, conf
                       FROM synapses WHERE syn_id >= {first} AND syn_id < {last} AND kind = 'pre') s
              ON s.point_id = r.pre_point AND s.body = r.body_pre
            ORDER BY r.body_pre, r.body_post, pre_id, r.post_id""").to_arrow_reader(FETCH_ROWS)
        down = np.zeros(last - first, np.int64)
        counts = np.zeros(3, np.int64)
        for rows in _by_pre_body(reader):
            counts += _build_piece(con, rows, first, down, rois, by_post)
    finally:
        cursor.close()
    return tuple(int(c) for c in counts), down


def _by_pre_body(reader):
    """The stream's rows as tables of at least ``INSERT_ROWS`` rows (but the last), each ending where
    body_pre changes."""
    pending, size = [], 0
    for batch in reader:
        pending.append(batch)
        size += batch.num_rows
        if size < INSERT_ROWS:
            continue
        table = pa.Table.from_batches(pending)
        body_pre = table.column("body_pre")
        last = body_pre[-1]
        # The rows of the last pre body may go on in the next batch: they wait for it.
        cut = len(body_pre) - int(pc.sum(pc.equal(body_pre, last)).as_py())
        if cut == 0:
            continue
        yield table.slice(0, cut)
        pending, size = table.slice(cut).to_batches(), len(body_pre) - cut
    if size:
        yield pa.Table.from_batches(pending)


def _build_piece(con, rows: pa.Table, first: int, down: np.ndarray, rois: RoiMap, by_post: PostPartitions) -> list[int]:
    """Rows of whole pre bodies: their partners, connections and connection_rois appended, their
    T-bars' partner counts added to ``down``; returns the counts ``build_range`` returns."""
    whole = pc.and_(rows.column("pre_id").is_valid(), rows.column("post_id").is_valid())
    counts = [
        rows.column("pre_id").null_count,
        rows.column("post_id").null_count,
        int(pc.sum(pc.and_(rows.column("differs"), whole)).as_py() or 0),
    ]
    if counts[0] or counts[1]:  # the build fails after this step: only whole pairs go on
        rows = rows.filter(whole)
    _insert(con, "partners", rows.select(["body_pre", "body_post", "pre_id", "post_id"]))
    body_pre, body_post, pre_id = (_ints(rows, c) for c in ("body_pre", "body_post", "pre_id"))
    hp = rows.column("hp").to_numpy().astype(np.int64)
    pl, ml = label_array(rows.column("pl")), label_array(rows.column("ml"))
    del rows

    n = len(pre_id)
    pair_start = run_starts(body_pre, body_post)
    tbar_start = run_starts(pre_id, body_post)  # a T-bar's rows on one partner body (pre_id fixes body_pre)
    weight = np.diff(np.r_[pair_start, n])
    weight_hp = np.add.reduceat(hp, pair_start) if n else weight
    del hp
    connections = {"body_pre": body_pre[pair_start], "body_post": body_post[pair_start]}
    table = pa.table({**connections, "weight": weight, "weight_hp": weight_hp})
    _insert(con, "connections", table)
    by_post.write("connections", table)
    del weight, weight_hp, table
    by_post.write("connection_rois", _connection_rois(con, rois, connections, pair_start, tbar_start, pl, ml))
    del connections, pl, ml, body_pre, body_post
    if n:  # a piece's T-bars are a run of syn_ids (its pre bodies'): counted over that run only
        lo = int(pre_id.min())
        counted = np.bincount(pre_id - lo)
        down[lo - first : lo - first + len(counted)] += counted
    return counts


def _connection_rois(con, rois: RoiMap, pairs: dict, pair_start, tbar_start, pl, ml) -> pa.Table:
    """Per pair and ROI (every ROI a post label counts under): ``weight``, the PSDs, and ``pre``,
    the distinct T-bars. A T-bar whose PSDs on one partner body carry several labels (split) counts
    once under each ROI any of them counts under; any other T-bar counts once per distinct label pair
    and per time the labels name the ROI (what summing the per-label counts up the hierarchy gives).
    Returns the rows appended, with the ROI as its code (``roi_code``, the index in ``rois.names``)."""
    n = len(pl)
    if not n:
        return pa.table({"body_post": pa.array([], pa.int64())})
    combos, combo = combinations(pl, ml)
    # Each combination's ROI codes (CSR), the primary label's and the major label's, in code order.
    members = [
        sorted(rois.primary.get(int(k >> 17) + NO_LABEL, []) + rois.major.get(int(k & ((1 << 17) - 1)) + NO_LABEL, []))
        for k in combos
    ]
    sizes = np.array([len(m) for m in members], np.int64)
    offsets = np.r_[0, np.cumsum(sizes)]
    flat = np.array([c for m in members for c in m], np.int64)
    n_rois = max(len(rois.names), 1)
    n_combos = len(combos)

    pair = np.repeat(np.arange(len(pair_start), dtype=np.int64), np.diff(np.r_[pair_start, n]))
    tbar = np.repeat(np.arange(len(tbar_start), dtype=np.int64), np.diff(np.r_[tbar_start, n]))
    # Split T-bars: more than one distinct non-NULL primary or major label among their rows.
    split = _varies(pl, tbar_start) | _varies(ml, tbar_start)
    row_split = split[tbar]
    # PSDs per (pair, combination), and the distinct (T-bar, combination) of unsplit T-bars.
    # (The keys come nearly sorted: rows are in pair order. A stable sort, timsort, uses the runs.)
    psd_keys, psd_counts = _counted(pair * n_combos + combo)
    unsplit = ~row_split
    tbar_keys, _ = _counted(tbar[unsplit] * n_combos + combo[unsplit])
    tbar_pair = pair[tbar_start[tbar_keys // n_combos]]
    tbar_pair_keys, tbar_counts = _counted(tbar_pair * n_combos + tbar_keys % n_combos)
    del tbar_keys, tbar_pair, unsplit
    pre_per_key = np.zeros(len(psd_keys), np.int64)
    pre_per_key[np.searchsorted(psd_keys, tbar_pair_keys)] = tbar_counts
    del tbar_pair_keys, tbar_counts
    # Up the hierarchy: each (pair, combination) once per ROI its combination counts under.
    key_combo = psd_keys % n_combos
    reps = sizes[key_combo]
    roi_pair = np.repeat(psd_keys // n_combos, reps)
    roi = flat[np.repeat(offsets[key_combo], reps) + ranks(reps)]
    roi_keys = roi_pair * n_rois + roi
    roi_weight = np.repeat(psd_counts, reps)
    roi_pre = np.repeat(pre_per_key, reps)
    del key_combo, reps, roi_pair, roi, psd_keys, psd_counts, pre_per_key
    # Split T-bars: once under each ROI any of their rows counts under.
    rows = np.flatnonzero(row_split)
    if len(rows):
        reps = sizes[combo[rows]]
        split_tbar = np.repeat(tbar[rows], reps)
        split_roi = flat[np.repeat(offsets[combo[rows]], reps) + ranks(reps)]
        split_keys, _ = _counted(split_tbar * n_rois + split_roi)
        split_tbar = split_keys // n_rois
        roi_keys = np.r_[roi_keys, pair[tbar_start[split_tbar]] * n_rois + split_keys % n_rois]
        roi_weight = np.r_[roi_weight, np.zeros(len(split_keys), np.int64)]
        roi_pre = np.r_[roi_pre, np.ones(len(split_keys), np.int64)]
    order = np.argsort(roi_keys, kind="stable")
    roi_keys = roi_keys[order]
    starts = run_starts(roi_keys, roi_keys)
    keys = roi_keys[starts]
    weight = np.add.reduceat(roi_weight[order], starts)
    pre = np.add.reduceat(roi_pre[order], starts)
    del order, roi_keys, roi_weight, roi_pre
    out_pair = keys // n_rois
    code = pa.array((keys % n_rois).astype(np.uint16))
    columns = {"body_pre": pairs["body_pre"][out_pair], "body_post": pairs["body_post"][out_pair]}
    rest = {"weight": weight, "pre": pre}
    _insert(con, "connection_rois", pa.table({**columns, "roi": pc.take(rois.names, code), **rest}))
    return pa.table({**columns, "roi_code": code, **rest})


def combinations(pl, ml) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (primary, major) label pairs as keys ``(pl + 1) << 17 | (ml + 1)``, and each
    row's index among them; a table indexed by the pair when it is small, else a sort."""
    span = int(ml.max()) - NO_LABEL + 1
    dense = (pl.astype(np.int64) - NO_LABEL) * span + (ml.astype(np.int64) - NO_LABEL)
    size = (int(pl.max()) - NO_LABEL + 1) * span
    if size <= 1 << 24:
        present = np.flatnonzero(np.bincount(dense, minlength=size))
        index = np.zeros(size, np.int64)
        index[present] = np.arange(len(present))
        combo = index[dense]
    else:
        present, combo = np.unique(dense, return_inverse=True)
    return (present // span) << 17 | (present % span), combo


def _insert(con, table: str, data: pa.Table) -> None:
    for start in range(0, max(data.num_rows, 1), INSERT_ROWS):
        if not data.num_rows:
            break
        con.register("partners_chunk", data.slice(start, INSERT_ROWS))
        con.execute(f"INSERT INTO {table} SELECT * FROM partners_chunk")
        con.unregister("partners_chunk")


def _counted(keys) -> tuple[np.ndarray, np.ndarray]:
    """The distinct keys, sorted, and how often each occurs."""
    keys = np.sort(keys, kind="stable")
    starts = run_starts(keys, keys)
    return keys[starts], np.diff(np.r_[starts, len(keys)])


def run_starts(a, b) -> np.ndarray:
    """Where a run of equal (a, b) begins."""
    n = len(a)
    if not n:
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.r_[True, (a[1:] != a[:-1]) | (b[1:] != b[:-1])])


def _varies(labels, starts) -> np.ndarray:
    """Per run: whether its non-NULL labels differ (SQL's min() <> max(), which ignores NULL)."""
    highest = np.maximum.reduceat(labels, starts)  # NO_LABEL only when every label is NULL
    lowest = np.minimum.reduceat(np.where(labels == NO_LABEL, np.iinfo(np.int32).max, labels), starts)
    return (lowest < highest) & (highest != NO_LABEL)


def ranks(reps) -> np.ndarray:
    """0, 1, ..., r-1 for each r of ``reps``, concatenated."""
    total = int(reps.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(reps) - reps, reps)


def _ints(table: pa.Table, column: str, dtype=np.int64) -> np.ndarray:
    return table.column(column).to_numpy().astype(dtype, copy=False)


def label_array(col) -> np.ndarray:
    """A label column as int32, NULL as NO_LABEL."""
    labels = col.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int32)
    if col.null_count:
        labels[col.is_null().to_numpy(zero_copy_only=False)] = NO_LABEL
    return labels
