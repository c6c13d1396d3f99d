"""One body range's per-body ROI counts in NumPy, inside the partners step: ``pre``, ``post`` and
``downstream`` (the PSDs its T-bars' partners have) per body and ROI, summed up the ROI hierarchy,
to Parquet sorted by ROI then body (``build_segment_rois`` sorts the ranges' files into
``segment_rois``), and each body's roiInfo text (``ingest/roi_info.py``) in body order.

The range's points are read once from ``synapses`` in syn_id order, which is body order; each
T-bar's partner count is the partners step's ``down`` array, indexed by syn_id. Counts are summed
per (body, label pair) over runs of a sort that is nearly done already (a body's rows are
adjacent), then once per ROI each label pair counts under. DuckDB's two hash aggregates, joins
with the label map and two sorts of the same rows took ~3x the CPU (scale 0.1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flatprint.ingest.layout import ROI_COUNTS_STORED
from flatprint.ingest.partners import NO_LABEL, RoiMap, combinations, label_array, run_starts
from flatprint.ingest.roi_info import COUNT_COLUMNS, PARQUET_ROW_GROUP_ROWS, write_roi_info

ROI_INFO_BATCH_ROWS = 1 << 20  # rows of per-ROI counts turned into roiInfo text at a time
CHUNK_POINTS = 1 << 19  # points of whole bodies aggregated at a time
WRITE_ROWS = 8 * PARQUET_ROW_GROUP_ROWS  # rows of the ROI-sorted file gathered at a time
COUNTS = pa.schema([(name, pa.string() if name == "roi" else pa.int64()) for name in ROI_COUNTS_STORED.split(", ")])
ROI_INFO_ROWS = pa.schema([("bodyId", pa.int64()), ("key_rank", pa.int32())] + [(c, pa.int64()) for c in COUNT_COLUMNS])


def key_ranks(con, rois: RoiMap) -> np.ndarray:
    """Per ROI code: the rank of its roiInfo key text among every ROI's (``roi_info_keys``)."""
    code = {name: i for i, name in enumerate(rois.names.to_pylist())}
    rank = np.zeros(max(len(code), 1), np.int32)
    for name, key_rank in con.execute("SELECT CAST(roi AS VARCHAR), key_rank FROM roi_info_keys").fetchall():
        rank[code[name]] = key_rank
    return rank


def body_rois(
    con,
    rois: RoiMap,
    rank: np.ndarray,
    keys: list[str],
    first: int,
    last: int,
    down: np.ndarray,
    counts_file: Path,
    roi_info_file: Path,
) -> None:
    """Per-body, per-ROI counts of the synapses [first, last) (the bodies of one range) to
    ``counts_file`` sorted by ROI then body, and those bodies' roiInfo text to ``roi_info_file`` in
    body order. ``down[i]``: the partners of T-bar ``first + i``; ``rank``: per ROI code, the rank of
    its key text (``keys[rank]``)."""
    points = con.sql(f"""
        SELECT syn_id, body, kind = 'pre' AS is_pre, primary_label AS pl, major_label AS ml
        FROM synapses WHERE syn_id >= {first} AND syn_id < {last}""").to_arrow_table()
    syn = points.column("syn_id").to_numpy()
    order = None if (syn[1:] > syn[:-1]).all() else np.argsort(syn)  # syn_id order is body order
    body, is_pre = points.column("body").to_numpy(), points.column("is_pre").to_numpy(zero_copy_only=False)
    pl, ml = label_array(points.column("pl")), label_array(points.column("ml"))
    del points
    if order is not None:
        syn, body, is_pre, pl, ml = syn[order], body[order], is_pre[order], pl[order], ml[order]
    downstream = down[syn - first]
    del syn
    # Bodies in chunks of ~CHUNK_POINTS points: what a chunk's aggregates hold stays small, the
    # roiInfo text is written as the chunks come, and only the ROI-sorted file waits for them all.
    cuts = [0]
    while cuts[-1] < len(body):
        cut = min(cuts[-1] + CHUNK_POINTS, len(body))
        if cut < len(body):
            cut = int(np.searchsorted(body, body[cut], side="left"))
            if cut == cuts[-1]:  # one body of more points than a chunk
                cut = int(np.searchsorted(body, body[cut], side="right"))
        cuts.append(cut)
    points = {"body": body, "is_pre": is_pre, "pl": pl, "ml": ml, "downstream": downstream}
    del body, is_pre, pl, ml, downstream
    parts: list[dict] = []
    batches = _roi_info_batches(rois, rank, points, cuts, parts)
    write_roi_info(pa.RecordBatchReader.from_batches(ROI_INFO_ROWS, batches), keys, roi_info_file)
    points.clear()
    _write_counts(rois, parts, counts_file)


def _roi_info_batches(rois: RoiMap, rank, points: dict, cuts: list[int], parts: list[dict]):
    """Per chunk of bodies (``cuts``): its (body, ROI) rows as roiInfo's input batches; the rows
    are also appended to ``parts`` (compact) for the ROI-sorted file."""
    for a, b in zip(cuts, cuts[1:]):
        columns = _counts(rois, rank, *(points[c][a:b] for c in ("body", "is_pre", "pl", "ml", "downstream")))
        yield from _roi_info_rows(columns).to_batches(ROI_INFO_BATCH_ROWS)
        parts.append(_compact(columns))


def _counts(rois: RoiMap, rank, body, is_pre, pl, ml, downstream) -> dict:
    """The (body, ROI) rows sorted by body, then key rank: body, code (the ROI's), rank, pre, post,
    downstream."""
    n = len(body)
    n_rois = max(len(rois.names), 1)
    if not n:
        empty = np.zeros(0, np.int64)
        return {"body": empty, "code": empty, "rank": empty.astype(np.int32), "pre": empty, "post": empty} | {
            "downstream": empty
        }
    new_body = np.r_[False, body[1:] != body[:-1]]
    combos, combo = combinations(pl, ml)
    del pl, ml
    combo_bits, rank_bits = (len(combos) - 1).bit_length(), (n_rois - 1).bit_length()
    # Per (body, label pair): runs of a stable sort of keys that are sorted by body already.
    keys = (np.cumsum(new_body) << combo_bits) | combo
    del combo
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    group = run_starts(keys, keys)
    pre = np.add.reduceat(is_pre[order], group, dtype=np.int64)
    total = np.diff(np.r_[group, n])
    down = np.add.reduceat(downstream[order], group)
    keys = keys[group]
    del order, group
    group_body, group_combo = keys >> combo_bits, keys & ((1 << combo_bits) - 1)
    del keys
    # Each label pair's ROIs: the primary label's and the major label's (a ROI named by both counts
    # twice, as the per-label sums up the hierarchy do), as key ranks.
    members = [
        rois.primary.get(int(k >> 17) + NO_LABEL, []) + rois.major.get(int(k & ((1 << 17) - 1)) + NO_LABEL, [])
        for k in combos
    ]
    sizes = np.array([len(m) for m in members], np.int64)
    member_ranks = rank[np.array([c for m in members for c in m], np.int64)].astype(np.int64)
    reps = sizes[group_combo]
    ends = np.cumsum(reps)
    source = np.repeat(np.arange(len(reps)), reps)  # each (body, ROI) row's (body, label pair) row
    at = np.arange(len(source)) + (np.r_[0, np.cumsum(sizes)[:-1]][group_combo] - (ends - reps))[source]
    # Per (body, ROI), keyed by the ROI's key rank: the roiInfo order.
    roi_keys = (group_body[source] << rank_bits) | member_ranks[at]
    del at, ends, reps, group_body, group_combo
    order = np.argsort(roi_keys, kind="stable")
    roi_keys = roi_keys[order]
    source = source[order]
    out = run_starts(roi_keys, roi_keys)
    sums = {name: np.add.reduceat(v[source], out) for name, v in (("pre", pre), ("total", total), ("down", down))}
    out_body, out_rank = roi_keys[out] >> rank_bits, roi_keys[out] & ((1 << rank_bits) - 1)
    code_of_rank = np.argsort(rank)
    return {
        "body": body[np.flatnonzero(np.r_[True, new_body[1:]])[out_body]],
        "code": code_of_rank[out_rank],
        "rank": out_rank.astype(np.int32),
        "pre": sums["pre"],
        "post": sums["total"] - sums["pre"],
        "downstream": sums["down"],
    }


def _compact(columns: dict) -> dict:
    """A chunk's rows as the ROI-sorted file needs them, in fewer bytes (counts as int32 when they fit)."""
    out = {"bodyId": columns["body"], "code": columns["code"].astype(np.uint16)}
    for name in ("pre", "post", "downstream"):
        values = columns[name]
        out[name] = values.astype(np.int32) if not len(values) or values.max() < 2**31 else values
    return out


def _write_counts(rois: RoiMap, parts: list[dict], path: Path) -> None:
    """The rows sorted by ROI (name order is code order), then body, to Parquet."""
    if not parts:
        pq.write_table(COUNTS.empty_table(), str(path))
        return
    columns = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    del parts[:]
    code = columns.pop("code")
    order = np.argsort(code, kind="stable")  # a radix sort (uint16): bodies stay in order
    with pq.ParquetWriter(str(path), COUNTS) as writer:
        for start in range(0, len(order), WRITE_ROWS):
            rows = order[start : start + WRITE_ROWS]
            table = {name: pa.array(values[rows]).cast(pa.int64()) for name, values in columns.items()}
            table["roi"] = rois.names.take(pa.array(code[rows]))
            writer.write_table(pa.table(table).select(COUNTS.names), PARQUET_ROW_GROUP_ROWS)


def _roi_info_rows(columns: dict) -> pa.Table:
    post = columns["post"]
    return pa.table(
        {
            "bodyId": columns["body"],
            "key_rank": columns["rank"],
            "pre": columns["pre"],
            "post": post,
            "downstream": columns["downstream"],
            "upstream": post,
            "synweight": columns["downstream"] + post,
        },
        schema=ROI_INFO_ROWS,
    )
