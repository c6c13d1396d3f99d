"""Prepared ("expert") baselines for the query benchmark: pandas and polars in RAM, DuckDB on sorted Parquet.

Each engine has a timed ``prepare()`` (reported beside flatprint's ingest: time, peak RSS, disk) that
does, once, the work flatprint's ingest does once:

* the ``:Neuron`` set (docs/semantics.md's rule) and a neuron table sorted by bodyId (type, instance,
  status, pre, post);
* per-neuron, per-primary-ROI pre/post counts (from syn-points), sorted by body;
* neuron-to-neuron weights per (pre body, post body, ROI of the pre point, ROI of the post point) and,
  summed from it, per (pre, post, ROI of the post point), sorted by pre body with an order by post body;
* syn-partners with the ROI of the pre point (looked up in tbar-neurotransmitters) attached, sorted by
  (pre body, post body), with an order by post body;
* connectome-weights between neurons and those of weight >= 5 (shortest paths), sorted by pre body with
  an order by post body.

Queries then find a body's rows by binary search on the sorted keys (``numpy.searchsorted``), not by
scanning; shortest paths are a bidirectional level-synchronous BFS (``shortest_paths_bidirectional``).
pandas and polars keep everything in RAM; DuckDB writes the same tables as Parquet files sorted by the
key it filters on, in small row groups (so that min/max statistics skip the rest), and reads them per
query. Every method returns the item's canonical answer frames (``answers.py`` of the docs: see
queries.ANSWER_DOC).

Prepare modes of pandas and polars (``mode=``; queries.py's ``--baseline-prepare``):

* ``ram``: the tables above, the synapse pairs included, built from whole columns in RAM;
* ``stream``: the neuron-level tables only (the :Neuron set, per-ROI counts, neuron-pair ROI weights,
  neuron weights, weights >= 5), built by reading syn-points, syn-partners, tbar-nt, body-stats and
  connectome-weights one record batch at a time (``stream_neuron_tables``) and counting as it goes, so
  the peak is set by the neuron-level tables and the t-bar lookup, not by the synapse rows. The
  synapse-level items (synapse connections, adjacencies with every Segment) are then "not run", with
  the number that bounds them. Both modes give the same tables (tests/test_benchmarks_baselines.py);
* ``auto`` (the default): ``ram`` when the in-RAM prepare's projected peak (syn-partners' rows times
  the bytes a row measured at scale 0.1, IN_RAM_PEAK_BYTES_PER_SYNAPSE) fits in MEMORY_LIMIT_BYTES (the
  harness's RSS limit), else ``stream``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from graphdb import NotRun

UNSPEC = "<unspecified>"
NAMED = ["somaLocation", "class", "type", "instance", "group", "somaSide", "synonyms"]
ANN_COLS = ["bodyId", "status", *NAMED]
CONF = 0.5  # SynapseCriteria's default confidence, strictly above
PATH_MIN_WEIGHT = 5
ROW_GROUP = 16_384  # DuckDB's Parquet copies: small row groups, so that a body filter skips most of them
BUILD_MEMORY = "3GB"  # DuckDB's memory_limit while it writes them
MEMORY_LIMIT_BYTES = 20 * 2**30  # the harness kills a worker whose RSS passes this (queries.RSS_LIMIT_BYTES)
# the in-RAM prepare's peak RSS per syn-partners row, measured at scale 0.1 on 2026-12-06 (31,187,030 rows:
# pandas 7.34 GB, polars 4.34 GB; benchmarks/results/systems-0.1.json); the auto mode projects with it
IN_RAM_PEAK_BYTES_PER_SYNAPSE = {"pandas": 236, "polars": 140}
PREPARE_MODES = ("auto", "ram", "stream")
STREAM_FLUSH_KEYS = 1 << 24  # keys buffered before a streamed count is reduced (128 MiB of int64)
NEURON_COLS = ["bodyId", "type", "instance", "status", "pre", "post"]
SYN_COLS = [
    "bodyId_pre",
    "bodyId_post",
    "roi_pre",
    "roi_post",
    "x_pre",
    "y_pre",
    "z_pre",
    "x_post",
    "y_post",
    "z_post",
    "confidence_pre",
    "confidence_post",
]


def table_files() -> dict[str, str]:
    from flatprint.release.tables import TABLES

    return {key: spec.filename for key, spec in TABLES.items()}


# =============================================================================== shared algorithms
def ranges(sorted_keys: np.ndarray, ids) -> np.ndarray:
    """Row positions of every key in ``ids`` within ``sorted_keys`` (binary search, no scan)."""
    ids = np.unique(np.asarray(ids, dtype=sorted_keys.dtype))
    lo = np.searchsorted(sorted_keys, ids, "left")
    hi = np.searchsorted(sorted_keys, ids, "right")
    n = hi - lo
    if n.sum() == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.repeat(lo - np.concatenate([[0], np.cumsum(n)[:-1]]), n)
    return starts + np.arange(n.sum())


def member(sorted_set: np.ndarray, values) -> np.ndarray:
    """``values in sorted_set`` by binary search."""
    values = np.asarray(values)
    if len(sorted_set) == 0:
        return np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[pos] == values


def shortest_paths_bidirectional(out_edges, in_edges, src: int, dst: int, max_levels: int = 60):
    """All shortest src->dst paths by a level-synchronous BFS from both ends (the smaller frontier grows).

    ``out_edges(frontier) -> (u, v)`` admissible edges u->v with u in frontier (v may be entered);
    ``in_edges(frontier) -> (u, v)`` admissible edges u->v with v in frontier (u may be entered).
    The first level at which the two searches meet fixes the length: every node of the new level that the
    other side reached at its current depth lies on a shortest path (and every shortest path crosses one).
    """
    src, dst = int(src), int(dst)
    if src == dst:
        return [[src]]
    fwd_depth, bwd_depth = {src: 0}, {dst: 0}
    fwd_par, bwd_par = defaultdict(list), defaultdict(list)  # node -> neighbours one step nearer its end
    fwd_front, bwd_front = np.array([src], np.int64), np.array([dst], np.int64)
    kf = kb = 0
    for _ in range(max_levels):
        if len(fwd_front) == 0 or len(bwd_front) == 0:
            return []
        forward = len(fwd_front) <= len(bwd_front)
        if forward:
            u, v = out_edges(fwd_front)
            near, far, depth, par, other, k_other = u, v, fwd_depth, fwd_par, bwd_depth, kb
            kf += 1
            k = kf
        else:
            u, v = in_edges(bwd_front)
            near, far, depth, par, other, k_other = v, u, bwd_depth, bwd_par, fwd_depth, kf
            kb += 1
            k = kb
        new = set()
        for a, b in zip(np.asarray(near).tolist(), np.asarray(far).tolist()):
            d = depth.get(b)
            if d is None:
                depth[b] = k
                new.add(b)
                par[b].append(a)
            elif d == k:
                par[b].append(a)
        meet = sorted(b for b in new if other.get(b) == k_other)
        if meet:
            return _join_paths(meet, fwd_par, bwd_par, src, dst)
        front = np.fromiter(new, np.int64, len(new))
        if forward:
            fwd_front = front
        else:
            bwd_front = front
    return []


def _join_paths(meet, fwd_par, bwd_par, src, dst):
    def back(node, par, end):
        if node == end:
            return [[node]]
        return [p + [node] for q in par[node] for p in back(q, par, end)]

    out = []
    for m in meet:
        heads = back(m, fwd_par, src)
        tails = [list(reversed(t)) for t in back(m, bwd_par, dst)]
        out.extend(h + t[1:] for h in heads for t in tails)
    return out


def paths_frame(paths) -> pd.DataFrame:
    """Paths as (path, step, bodyId), paths numbered in lexicographic order (engine-independent)."""
    rows = [(i, j, b) for i, p in enumerate(sorted(tuple(int(x) for x in p) for p in paths)) for j, b in enumerate(p)]
    return pd.DataFrame(rows, columns=["path", "step", "bodyId"]).astype(np.int64)


def neuron_rule(ann: pd.DataFrame, st: pd.DataFrame) -> np.ndarray:
    """The sorted :Neuron body ids (docs/semantics.md): named or Traced/Anchor, or >= 100 synapses; not Glia."""
    status = ann["status"].astype(object)
    flag = ann[NAMED].notna().any(axis=1) | status.isin(["Traced", "Anchor"])
    big = (st["synweight"] >= 100) | (st["pre"] >= 100) | (st["post"] >= 100)
    ids = np.union1d(ann["bodyId"].to_numpy()[flag.to_numpy()], st["body"].to_numpy()[big.to_numpy()])
    excluded = np.unique(ann["bodyId"].to_numpy()[status.isin(["Glia", "Unimportant"]).to_numpy()])
    return ids[~member(excluded, ids)].astype(np.int64)


def _decoded_feather(path: Path, columns: list[str]) -> pd.DataFrame:
    """pd.read_feather with dictionary columns as categoricals (pandas' default)."""
    return pd.read_feather(path, columns=columns)


def _recode(cat: pd.Series, names: np.ndarray) -> np.ndarray:
    """A categorical column's codes re-expressed as positions in ``names`` (-1: missing), without
    materialising its strings."""
    pos = {n: i for i, n in enumerate(names)}
    mapping = np.array([pos.get(c, -1) for c in cat.cat.categories] + [-1], dtype=np.int16)
    return mapping[cat.cat.codes.to_numpy()]  # code -1 (missing) picks the trailing -1


# =============================================================================== bounded-memory prepare
def feather_rows(path: Path) -> int:
    """Rows of a feather (IPC file) from its batches' headers, without reading its columns."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    with pa.OSFile(str(path)) as source:
        return ipc.open_file(source).count_rows()


def choose_prepare_mode(engine: str, partners: Path, mode: str = "auto") -> tuple[str, dict]:
    """(mode, projection): ``ram`` or ``stream``; ``auto`` streams when the in-RAM prepare's projected
    peak (syn-partners' rows x IN_RAM_PEAK_BYTES_PER_SYNAPSE[engine]) passes MEMORY_LIMIT_BYTES."""
    if mode not in PREPARE_MODES:
        raise ValueError(f"prepare mode {mode!r}: expected one of {', '.join(PREPARE_MODES)}")
    rows = feather_rows(partners)
    projected = rows * IN_RAM_PEAK_BYTES_PER_SYNAPSE[engine]
    chosen = mode if mode != "auto" else ("ram" if projected <= MEMORY_LIMIT_BYTES else "stream")
    return chosen, {
        "mode": chosen,
        "mode_requested": mode,
        "synapse_rows": rows,
        "projected_in_ram_peak_bytes": projected,
        "memory_limit_bytes": MEMORY_LIMIT_BYTES,
    }


def feather_batches(path: Path, columns: list[str]):
    """The feather's record batches one at a time, only ``columns`` read and decoded.

    Plain file reads, not a memory map: the pages of a mapped 10 GB file would count in this process's RSS.
    """
    import pyarrow as pa
    import pyarrow.ipc as ipc

    with pa.OSFile(str(path)) as source:
        schema = ipc.open_file(source).schema
        missing = [c for c in columns if schema.get_field_index(c) < 0]
        if missing:
            raise ValueError(f"{path}: no column(s) {missing} (has {schema.names})")
        fields = sorted(schema.get_field_index(c) for c in columns)
        reader = ipc.open_file(source, options=ipc.IpcReadOptions(included_fields=fields))
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


def first_dictionary(path: Path, column: str) -> list:
    """The values of a dictionary column's dictionary (an IPC file has one per column)."""
    for batch in feather_batches(path, [column]):
        return batch.column(column).dictionary.to_pylist()
    return []


def dictionary_codes(col, names: dict, where: str) -> np.ndarray:
    """A dictionary column's codes as positions in ``names`` (name -> position; -1: null).

    A value not in ``names`` is an error naming ``where`` (an IPC file's later batches may only reuse or
    extend the dictionary; the prepare fixed its names from the first batch)."""
    values = col.dictionary.to_pylist()
    unknown = [v for v in values if v is not None and v not in names]
    if unknown:
        raise ValueError(f"{where}: values {unknown[:5]} not in the file's first dictionary")
    mapping = np.array([names.get(v, -1) if v is not None else -1 for v in values] + [-1], dtype=np.int16)
    return mapping[col.indices.fill_null(-1).to_numpy()]  # index -1 (null) picks the trailing -1


def neuron_positions(ids: np.ndarray, bodies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position in the sorted ``ids``, whether the body is there) for every body."""
    pos = np.minimum(np.searchsorted(ids, bodies), max(len(ids) - 1, 0))
    return pos, (ids[pos] == bodies) if len(ids) else np.zeros(len(bodies), dtype=bool)


class KeyCounter:
    """Counts of int64 keys fed batch by batch, at bounded memory: buffered keys are reduced to sorted
    (unique key, count) pairs and merged into the running ones whenever the buffer passes ``flush``."""

    def __init__(self, flush: int = STREAM_FLUSH_KEYS):
        self.flush = flush
        self.keys = np.zeros(0, np.int64)
        self.counts = np.zeros(0, np.int64)
        self.buffer, self.buffered = [], 0

    def add(self, keys: np.ndarray, counts: np.ndarray | None = None):
        """Count ``keys`` (each ``counts`` times when given: keys already reduced)."""
        self.buffer.append((keys, np.ones(len(keys), np.int64) if counts is None else counts.astype(np.int64)))
        self.buffered += len(keys)
        if self.buffered >= self.flush:
            self._reduce()

    def _reduce(self):
        if not self.buffer:
            return
        k = np.concatenate([keys for keys, _ in self.buffer])
        c = np.concatenate([counts for _, counts in self.buffer])
        self.buffer, self.buffered = [], 0
        keys, counts = np.concatenate([self.keys, k]), np.concatenate([self.counts, c])
        del k, c
        order = np.argsort(keys, kind="stable")
        keys, counts = keys[order], counts[order]
        starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]])) if len(keys) else []
        self.keys, self.counts = keys[starts], np.add.reduceat(counts, starts) if len(keys) else counts

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted unique keys, their counts)."""
        self._reduce()
        return self.keys, self.counts


def with_pre_rois(pending: list, tb_ids: np.ndarray, tb_codes: np.ndarray, bits_r: int) -> np.ndarray:
    """The buffered synapse rows' keys with the ROI code of their pre point (+1; 0: not a t-bar) put in.

    ``pending`` holds (pre point ids, keys) pairs; ``tb_ids`` are the sorted t-bar point ids, ``tb_codes``
    their ROI codes. The point ids are sorted first, so that the binary search walks the t-bar ids
    nearly in order instead of jumping at random for every row (4x faster over 45 M t-bars)."""
    pid = np.concatenate([q for q, _ in pending])
    key = np.concatenate([k for _, k in pending])
    order = np.argsort(pid)
    pid, key = pid[order], key[order]
    del order
    if len(tb_ids) == 0:
        return key
    tpos = np.minimum(np.searchsorted(tb_ids, pid), len(tb_ids) - 1)
    roi_pre = np.where(tb_ids[tpos] == pid, tb_codes[tpos], -1)
    return key | ((roi_pre.astype(np.int64) + 1) << bits_r)


def stream_neuron_tables(release: Path, files: dict, log=None) -> dict:
    """The neuron-level prepared tables from the release, each big feather read one batch at a time.

    Returns annotations (whole: 0.2 M rows at scale 1.0), the body-stats rows that can make a neuron
    (>= 100 synapses or annotated), the sorted :Neuron ids, per-neuron per-primary-ROI point counts,
    ``rois`` (the primary ROI names of tbar-nt and syn-partners, sorted, then <unspecified>) and
    ``conn4``: neuron-pair weights per (pre, post, ROI code of the pre point (-1: no t-bar), ROI code of
    the post point), sorted, as PandasEngine keeps them; connectome-weights rows between neurons or of
    weight >= 5, sorted by (pre, post); and the rows streamed per file."""
    release = Path(release)
    say = log or (lambda *a: None)
    path = {k: release / v for k, v in files.items()}
    streamed, steps = {}, {}
    clock = [time.perf_counter()]

    def step(name):
        now = time.perf_counter()
        steps[name] = round(now - clock[0], 3)
        clock[0] = now

    ann = _decoded_feather(path["annotations"], ANN_COLS)
    may_be = np.unique(ann["bodyId"].to_numpy())  # the :Neuron rule's annotated bodies are among these
    parts, n = [], 0
    for b in feather_batches(path["stats"], ["body", "pre", "post", "synweight"]):
        body, pre, post, sw = (b.column(c).to_numpy() for c in ("body", "pre", "post", "synweight"))
        keep = (sw >= 100) | (pre >= 100) | (post >= 100) | member(may_be, body)
        parts.append(pd.DataFrame({"body": body[keep], "pre": pre[keep], "post": post[keep], "synweight": sw[keep]}))
        n += b.num_rows
    st = pd.concat(parts, ignore_index=True)
    streamed["stats"] = n
    ids = neuron_rule(ann, st)
    step("neurons (annotations, body-stats)")
    say(f"   stream: {len(ids):,} neurons from {n:,} body-stats rows")

    # per-neuron, per-primary-ROI point counts: key (neuron position, ROI code, kind)
    pt_names = sorted(v for v in first_dictionary(path["syn-points"], "primary") if v is not None)
    pt_code = {v: i for i, v in enumerate(pt_names)}
    unspec_pt = pt_code.get(UNSPEC, -2)
    n_roi = len(pt_names)
    kinds = {"PreSyn": 0, "PostSyn": 1}
    counter, n = KeyCounter(), 0
    for b in feather_batches(path["syn-points"], ["body", "kind", "primary"]):
        pos, ok = neuron_positions(ids, b.column("body").to_numpy())
        roi = dictionary_codes(b.column("primary"), pt_code, "syn-points.primary")
        kind_col = b.column("kind")
        kind_map = np.array([kinds.get(v, 2) for v in kind_col.dictionary.to_pylist()] + [2], dtype=np.int64)
        kind = kind_map[kind_col.indices.fill_null(-1).to_numpy()]
        keep = ok & (roi >= 0) & (roi != unspec_pt)
        # a batch holds few bodies (syn-points comes grouped by body): reduced here, the buffer stays small
        counter.add(*np.unique((pos[keep].astype(np.int64) * n_roi + roi[keep]) * 3 + kind[keep], return_counts=True))
        n += b.num_rows
    keys, counts = counter.result()
    del counter
    streamed["syn-points"] = n
    pair, kind = keys // 3, keys % 3
    first = np.concatenate([[True], pair[1:] != pair[:-1]]) if len(pair) else np.zeros(0, dtype=bool)
    group, uniq = np.cumsum(first) - 1, pair[first]
    roi_counts = pd.DataFrame(
        {
            "bodyId": ids[uniq // n_roi].astype(np.int64),
            "roi": np.asarray(pt_names, dtype=object)[uniq % n_roi] if len(uniq) else np.zeros(0, object),
            "pre": np.bincount(group, weights=counts * (kind == 0), minlength=len(uniq)).astype(np.int64),
            "post": np.bincount(group, weights=counts * (kind == 1), minlength=len(uniq)).astype(np.int64),
        }
    )
    del keys, counts, pair, kind, group
    step("ROI counts (syn-points)")
    say(f"   stream: {len(roi_counts):,} neuron ROI rows from {n:,} syn-points rows")

    # the ROI of every t-bar point, looked up by point id (sorted once)
    names = sorted(
        (
            set(first_dictionary(path["tbar-nt"], "primary"))
            | set(first_dictionary(path["syn-partners"], "primary_post"))
        )
        - {UNSPEC, None}
    )
    rois = np.array(names + [UNSPEC], dtype=object)  # code len(names) = <unspecified>, -1 = none
    roi_code = {v: i for i, v in enumerate(rois)}
    tb_ids, tb_codes, n = [], [], 0
    for b in feather_batches(path["tbar-nt"], ["point_id", "primary"]):
        tb_ids.append(b.column("point_id").to_numpy().astype(np.uint64))
        tb_codes.append(dictionary_codes(b.column("primary"), roi_code, "tbar-nt.primary"))
        n += b.num_rows
    tb_ids, tb_codes = np.concatenate(tb_ids), np.concatenate(tb_codes)
    order = np.argsort(tb_ids)
    tb_ids, tb_codes = tb_ids[order], tb_codes[order]
    del order
    streamed["tbar-nt"] = n
    step("t-bar ROI lookup (tbar-nt)")

    # neuron-pair weights per (pre, post, ROI of the pre point, ROI of the post point)
    bits_n = max(int(len(ids)).bit_length(), 1)
    bits_r = int(len(rois)).bit_length()  # codes -1 .. len(rois) - 1, stored + 1
    if 2 * bits_n + 2 * bits_r > 63:
        raise ValueError(f"{len(ids):,} neurons x {len(rois)} ROIs do not fit one 63-bit key")
    counter, n = KeyCounter(), 0
    u64 = np.uint64
    pending, pending_rows = [], 0  # (point id of the pre point, key without its ROI) of buffered rows

    cols = ["x_pre", "y_pre", "z_pre", "body_pre", "body_post", "primary_post"]
    for b in feather_batches(path["syn-partners"], cols):
        pi, pok = neuron_positions(ids, b.column("body_pre").to_numpy())
        qi, qok = neuron_positions(ids, b.column("body_post").to_numpy())
        keep = pok & qok
        n += b.num_rows
        if not keep.any():
            continue
        x, y, z = (b.column(c).to_numpy()[keep].astype(u64) for c in ("x_pre", "y_pre", "z_pre"))
        roi_post = dictionary_codes(b.column("primary_post"), roi_code, "syn-partners.primary_post")[keep]
        key = (pi[keep].astype(np.int64) << bits_n) | qi[keep].astype(np.int64)
        pending.append(((z << u64(42)) | (y << u64(21)) | x, (key << (2 * bits_r)) | (roi_post.astype(np.int64) + 1)))
        pending_rows += len(key)
        if pending_rows >= STREAM_FLUSH_KEYS:
            counter.add(with_pre_rois(pending, tb_ids, tb_codes, bits_r))
            pending, pending_rows = [], 0
    if pending:
        counter.add(with_pre_rois(pending, tb_ids, tb_codes, bits_r))
    del pending
    del tb_ids, tb_codes
    keys, counts = counter.result()
    del counter
    streamed["syn-partners"] = n
    mask_r, mask_n = (1 << bits_r) - 1, (1 << bits_n) - 1
    conn4 = pd.DataFrame(
        {
            "body_pre": ids[(keys >> (bits_n + 2 * bits_r)) & mask_n].astype(np.int64),
            "body_post": ids[(keys >> (2 * bits_r)) & mask_n].astype(np.int64),
            "roi_pre": (((keys >> bits_r) & mask_r) - 1).astype(np.int16),
            "roi_post": ((keys & mask_r) - 1).astype(np.int16),
            "weight": counts.astype(np.int64),
        }
    )
    del keys, counts
    step("neuron-pair ROI weights (syn-partners)")
    say(f"   stream: {len(conn4):,} neuron-pair ROI rows from {n:,} syn-partners rows")

    # connectome-weights: rows between neurons or of weight >= 5
    pre_parts, post_parts, w_parts, n = [], [], [], 0
    for b in feather_batches(path["weights"], ["body_pre", "body_post", "weight"]):
        pre, post, w = (b.column(c).to_numpy() for c in ("body_pre", "body_post", "weight"))
        keep = (w >= PATH_MIN_WEIGHT) | (member(ids, pre) & member(ids, post))
        pre_parts.append(pre[keep])
        post_parts.append(post[keep])
        w_parts.append(w[keep].astype(np.int64))
        n += b.num_rows
    pre, post, w = (np.concatenate(x) for x in (pre_parts, post_parts, w_parts))
    order = np.lexsort((post, pre))
    streamed["weights"] = n
    step("weights (connectome-weights)")
    return {
        "ann": ann,
        "stats": st,
        "neuron_ids": ids,
        "roi_counts": roi_counts,
        "rois": rois,
        "conn4": conn4,
        "weights": (pre[order], post[order], w[order]),
        "streamed_rows": streamed,
        "steps": steps,
    }


# =============================================================================== pandas, in RAM
class PandasEngine:
    """pandas/numpy with every prepared table in RAM; lookups by binary search on sorted keys."""

    name = "pandas"

    def __init__(self, release: Path, workdir: Path | None = None, mode: str = "auto"):
        if mode not in PREPARE_MODES:
            raise ValueError(f"prepare mode {mode!r}: expected one of {', '.join(PREPARE_MODES)}")
        self.release = Path(release)
        self.files = table_files()
        self.mode_requested = mode
        self.mode = None  # "ram" or "stream", fixed by prepare()
        self.projection: dict = {}
        self.log = None  # a print-like function for the streamed prepare's progress (the worker's stderr)

    def _read(self, key, cols):
        return _decoded_feather(self.release / self.files[key], cols)

    # ---------------------------------------------------------------- prepare (timed, once)
    def prepare(self) -> dict:
        """Build the prepared tables in the mode chosen by choose_prepare_mode (see the module docstring)."""
        self.mode, self.projection = choose_prepare_mode(
            self.name, self.release / self.files["syn-partners"], self.mode_requested
        )
        info = self._prepare_stream() if self.mode == "stream" else self._prepare_ram()
        info.update(self.projection)
        return info

    def _prepare_stream(self) -> dict:
        t = stream_neuron_tables(self.release, self.files, log=self.log)
        self._set_neurons(t["ann"], t["stats"])
        self._set_roi_counts(t["roi_counts"])
        self.rois = t["rois"]
        self.syn = None
        self._set_conn4(t["conn4"])
        self._set_weights(*t["weights"])
        return {"counts": self._counts(), "disk_bytes": 0, "streamed_rows": t["streamed_rows"], "steps": t["steps"]}

    def _counts(self) -> dict:
        counts = {"neurons": len(self.neuron_ids), "roi_counts": len(self.roi_counts_key)}
        if self.mode == "ram":
            counts["synapses"] = len(self.syn_pre)
        counts["neuron_pair_rois"] = len(self.conn_roi_pre)
        counts["neuron_weights"], counts["weights_ge5"] = len(self.nn_pre), len(self.w5_pre)
        return counts

    def _set_neurons(self, ann: pd.DataFrame, st: pd.DataFrame):
        """The :Neuron ids, the neuron table (sorted by bodyId) and the sorted Traced ids."""
        ids = neuron_rule(ann, st)
        self.neuron_ids = ids
        a = ann.drop_duplicates("bodyId").set_index("bodyId").reindex(ids)
        s = st.drop_duplicates("body").set_index("body").reindex(ids)
        self.neurons = pd.DataFrame(
            {
                "bodyId": ids,
                "type": a["type"].astype(object).to_numpy(),
                "instance": a["instance"].astype(object).to_numpy(),
                "status": a["status"].astype(object).to_numpy(),
                "pre": s["pre"].fillna(0).astype(np.int64).to_numpy(),
                "post": s["post"].fillna(0).astype(np.int64).to_numpy(),
            }
        )
        self.traced = np.sort(ann["bodyId"].to_numpy()[(ann["status"].astype(object) == "Traced").to_numpy()])

    def _set_roi_counts(self, roi_counts: pd.DataFrame):
        self.roi_counts = roi_counts
        self.roi_counts_key = roi_counts["bodyId"].to_numpy()

    def _set_conn4(self, c4: pd.DataFrame):
        """Neuron-pair weights per (pre, post, roi_pre, roi_post) codes, sorted; summed per (pre, post, roi_post)."""
        self.conn4 = c4
        c3 = c4.groupby(["body_pre", "body_post", "roi_post"], sort=True)["weight"].sum().reset_index()
        unspec = len(self.rois) - 1
        roi_name = np.where(
            c3["roi_post"].to_numpy() == unspec, "NotPrimary", self.rois[np.maximum(c3["roi_post"].to_numpy(), 0)]
        )
        self.conn_roi = pd.DataFrame(
            {
                "bodyId_pre": c3["body_pre"].to_numpy(),
                "bodyId_post": c3["body_post"].to_numpy(),
                "roi": roi_name.astype(object),
                "weight": c3["weight"].to_numpy(np.int64),
            }
        )
        self.conn_roi_pre = self.conn_roi["bodyId_pre"].to_numpy()
        self.conn_roi_by_post = np.argsort(self.conn_roi["bodyId_post"].to_numpy(), kind="stable")
        self.conn_roi_post_sorted = self.conn_roi["bodyId_post"].to_numpy()[self.conn_roi_by_post]

    def _set_weights(self, pre: np.ndarray, post: np.ndarray, weight: np.ndarray):
        """connectome-weights rows sorted by (pre, post): those between neurons and those of weight >= 5."""
        ids = self.neuron_ids
        nnm = member(ids, pre) & member(ids, post)
        self.nn_pre, self.nn_post, self.nn_w = pre[nnm], post[nnm], weight[nnm].astype(np.int64)
        strong = weight >= PATH_MIN_WEIGHT
        self.w5_pre, self.w5_post = pre[strong], post[strong]
        o = np.argsort(self.w5_post, kind="stable")
        self.w5_post_sorted, self.w5_pre_by_post = self.w5_post[o], self.w5_pre[o]

    def _prepare_ram(self) -> dict:
        ann = self._read("annotations", ANN_COLS)
        st = self._read("stats", ["body", "pre", "post", "synweight"])
        self._set_neurons(ann, st)
        ids = self.neuron_ids
        del ann, st

        # per-neuron, per-primary-ROI point counts
        pts = self._read("syn-points", ["body", "kind", "primary"])
        pts = pts[member(ids, pts["body"].to_numpy()) & (pts["primary"] != UNSPEC).to_numpy()]
        g = pts.groupby(["body", "primary", "kind"], observed=True).size().unstack("kind", fill_value=0)
        g = g.reindex(columns=["PreSyn", "PostSyn"], fill_value=0).reset_index().sort_values(["body", "primary"])
        self._set_roi_counts(
            pd.DataFrame(
                {
                    "bodyId": g["body"].to_numpy(np.int64),
                    "roi": g["primary"].astype(str).to_numpy(),
                    "pre": g["PreSyn"].to_numpy(np.int64),
                    "post": g["PostSyn"].to_numpy(np.int64),
                }
            )
        )
        del pts, g

        # syn-partners with the pre point's ROI, sorted by (pre, post); an order by post
        part = self._read(
            "syn-partners",
            [
                "x_pre",
                "y_pre",
                "z_pre",
                "body_pre",
                "conf_pre",
                "x_post",
                "y_post",
                "z_post",
                "body_post",
                "conf_post",
                "primary_post",
            ],
        )
        tb = self._read("tbar-nt", ["point_id", "primary"])
        rois = sorted((set(tb["primary"].cat.categories) | set(part["primary_post"].cat.categories)) - {UNSPEC})
        self.rois = np.array(rois + [UNSPEC], dtype=object)  # code len(rois) = <unspecified>, -1 = none
        tb_codes = _recode(tb["primary"], self.rois)
        pid = (
            (part["z_pre"].to_numpy().astype(np.uint64) << np.uint64(42))
            | (part["y_pre"].to_numpy().astype(np.uint64) << np.uint64(21))
            | part["x_pre"].to_numpy().astype(np.uint64)
        )
        pos = pd.Index(tb["point_id"].to_numpy().astype(np.uint64)).get_indexer(pid)
        roi_pre = np.where(pos >= 0, tb_codes[np.maximum(pos, 0)], -1).astype(np.int16)
        roi_post = _recode(part["primary_post"], self.rois)
        del tb, pid, pos, tb_codes
        order = np.lexsort((part["body_post"].to_numpy(), part["body_pre"].to_numpy()))
        syn = {c: part[c].to_numpy()[order] for c in part.columns if c != "primary_post"}
        syn["roi_pre"], syn["roi_post"] = roi_pre[order], roi_post[order]
        del part, order, roi_pre, roi_post
        self.syn = pd.DataFrame(syn)
        del syn
        self.syn_pre = self.syn["body_pre"].to_numpy()
        self.syn_by_post = np.argsort(self.syn["body_post"].to_numpy(), kind="stable")
        self.syn_post_sorted = self.syn["body_post"].to_numpy()[self.syn_by_post]

        # neuron-to-neuron weights per (pre, post, roi_pre, roi_post) and per (pre, post, roi_post)
        nn = self.syn[member(ids, self.syn_pre) & member(ids, self.syn["body_post"].to_numpy())]
        c4 = nn.groupby(["body_pre", "body_post", "roi_pre", "roi_post"], sort=True).size().reset_index(name="weight")
        del nn
        self._set_conn4(c4)

        # connectome-weights: between neurons (matrix, reach) and weight >= 5 (paths), sorted by pre
        w = self._read("weights", ["body_pre", "body_post", "weight"])
        w = w.iloc[np.lexsort((w["body_post"].to_numpy(), w["body_pre"].to_numpy()))]
        self._set_weights(w["body_pre"].to_numpy(), w["body_post"].to_numpy(), w["weight"].to_numpy())
        del w
        return {"counts": self._counts(), "disk_bytes": 0}

    def _synapse_rows_not_held(self, what: str):
        """Raise NotRun in the streamed mode: the synapse rows were not kept (the numbers that bound it)."""
        if self.mode == "stream":
            p = self.projection
            raise NotRun(
                f"{what} needs the synapse rows, which the streamed prepare does not hold: all "
                f"{p['synapse_rows']:,} syn-partners rows in RAM project to "
                f"{p['projected_in_ram_peak_bytes'] / 2**30:.1f} GiB peak "
                f"({IN_RAM_PEAK_BYTES_PER_SYNAPSE[self.name]} bytes a row, measured at scale 0.1), over the "
                f"{p['memory_limit_bytes'] / 2**30:g} GiB limit"
            )

    # ---------------------------------------------------------------- fetch_neurons
    def _neuron_answer(self, bodies):
        bodies = np.unique(np.asarray(bodies, dtype=np.int64))
        nd = (
            self.neurons.iloc[np.searchsorted(self.neurons["bodyId"].to_numpy(), bodies)]
            if len(bodies)
            else self.neurons.iloc[:0]
        )
        return {
            "neurons": nd.reset_index(drop=True),
            "rois": self.roi_counts.iloc[ranges(self.roi_counts_key, bodies)].reset_index(drop=True),
        }

    def neurons_by_type(self, p):
        return self._neuron_answer(self.neurons["bodyId"].to_numpy()[(self.neurons["type"] == p["type"]).to_numpy()])

    def neurons_by_regex(self, p):
        m = self.neurons["type"].fillna("").str.fullmatch(p["regex"]).to_numpy(bool)
        return self._neuron_answer(self.neurons["bodyId"].to_numpy()[m])

    def neurons_by_roi(self, p):
        rc = self.roi_counts
        return self._neuron_answer(rc["bodyId"].to_numpy()[(rc["roi"] == p["roi"]).to_numpy()])

    # ---------------------------------------------------------------- fetch_adjacencies
    def adjacencies(self, p):
        down = self.conn_roi.iloc[ranges(self.conn_roi_pre, p["bodies"])]
        up = self.conn_roi.iloc[self.conn_roi_by_post[ranges(self.conn_roi_post_sorted, p["bodies"])]]
        return {"adjacency": pd.concat([down, up], ignore_index=True)}

    def adjacencies_segments(self, p):
        """Targets (and sources) every Segment: grouped from the synapse rows of the given bodies."""
        self._synapse_rows_not_held("adjacencies with every Segment as partner")
        frames = []
        for idx in (ranges(self.syn_pre, p["bodies"]), self.syn_by_post[ranges(self.syn_post_sorted, p["bodies"])]):
            sub = pd.DataFrame(
                {
                    "bodyId_pre": self.syn["body_pre"].to_numpy()[idx],
                    "bodyId_post": self.syn["body_post"].to_numpy()[idx],
                    "r": self.syn["roi_post"].to_numpy()[idx],
                }
            )
            g = sub.groupby(["bodyId_pre", "bodyId_post", "r"]).size().reset_index(name="weight")
            g["roi"] = np.where(
                g["r"].to_numpy() == len(self.rois) - 1, "NotPrimary", self.rois[np.maximum(g["r"].to_numpy(), 0)]
            )
            frames.append(g[["bodyId_pre", "bodyId_post", "roi", "weight"]])
        return {"adjacency": pd.concat(frames, ignore_index=True)}

    # ---------------------------------------------------------------- fetch_synapse_connections
    def synapse_pair(self, p):
        self._synapse_rows_not_held("synapse connections")
        sub = self.syn.iloc[ranges(self.syn_pre, p["pre"])]
        post = np.sort(np.asarray(p["post"], dtype=np.int64))
        sub = sub[
            member(post, sub["body_post"].to_numpy())
            & (sub["conf_pre"].to_numpy() > CONF)
            & (sub["conf_post"].to_numpy() > CONF)
        ]
        names = np.append(self.rois, None)  # code -1 -> None
        rp, rq = sub["roi_pre"].to_numpy(), sub["roi_post"].to_numpy()
        unspec = len(self.rois) - 1
        return {
            "synapses": pd.DataFrame(
                {
                    "bodyId_pre": sub["body_pre"].to_numpy(),
                    "bodyId_post": sub["body_post"].to_numpy(),
                    "roi_pre": names[np.where(rp == unspec, -1, rp)],
                    "roi_post": names[np.where(rq == unspec, -1, rq)],
                    "x_pre": sub["x_pre"].to_numpy(),
                    "y_pre": sub["y_pre"].to_numpy(),
                    "z_pre": sub["z_pre"].to_numpy(),
                    "x_post": sub["x_post"].to_numpy(),
                    "y_post": sub["y_post"].to_numpy(),
                    "z_post": sub["z_post"].to_numpy(),
                    "confidence_pre": sub["conf_pre"].to_numpy(),
                    "confidence_post": sub["conf_post"].to_numpy(),
                }
            )
        }

    # ---------------------------------------------------------------- fetch_shortest_paths
    def shortest_paths(self, p):
        src, dst = int(p["src"]), int(p["dst"])

        def out_edges(front):
            idx = ranges(self.w5_pre, front)
            u, v = self.w5_pre[idx], self.w5_post[idx]
            keep = member(self.traced, v) | (v == dst)
            return u[keep], v[keep]

        def in_edges(front):
            idx = ranges(self.w5_post_sorted, front)
            u, v = self.w5_pre_by_post[idx], self.w5_post_sorted[idx]
            keep = member(self.traced, u) | (u == src)
            return u[keep], v[keep]

        return {"paths": paths_frame(shortest_paths_bidirectional(out_edges, in_edges, src, dst))}

    # ---------------------------------------------------------------- connection_matrix
    def matrix_type(self, p):
        types = self.neurons["type"]
        codes, names = pd.factorize(types)
        ids = self.neurons["bodyId"].to_numpy()
        a = codes[np.searchsorted(ids, self.nn_pre)]
        b = codes[np.searchsorted(ids, self.nn_post)]
        keep = (a >= 0) & (b >= 0)
        df = pd.DataFrame({"a": a[keep], "b": b[keep], "w": self.nn_w[keep]})
        g = df.groupby(["a", "b"])["w"].agg(["sum", "size"]).reset_index()
        names = np.asarray(names, dtype=object)
        return {
            "matrix": pd.DataFrame(
                {
                    "pre": names[g["a"].to_numpy()],
                    "post": names[g["b"].to_numpy()],
                    "weight": g["sum"].to_numpy(),
                    "connections": g["size"].to_numpy(),
                }
            )
        }

    def matrix_roi(self, p):
        c = self.conn4
        unspec = len(self.rois) - 1
        ok = c[
            (c["roi_pre"] >= 0).to_numpy() & (c["roi_pre"] != unspec).to_numpy() & (c["roi_post"] != unspec).to_numpy()
        ]
        g = ok.groupby(["roi_pre", "roi_post"])["weight"].agg(["sum", "size"]).reset_index()
        return {
            "matrix": pd.DataFrame(
                {
                    "pre": self.rois[g["roi_pre"].to_numpy()],
                    "post": self.rois[g["roi_post"].to_numpy()],
                    "weight": g["sum"].to_numpy(),
                    "connections": g["size"].to_numpy(),
                }
            )
        }

    # ---------------------------------------------------------------- fetch_reach
    def reach(self, p):
        seen = {int(b): 0 for b in p["bodies"]}
        frontier = np.asarray(sorted(seen), dtype=np.int64)
        for hop in range(1, p["hops"] + 1):
            found = np.unique(self.nn_post[ranges(self.nn_pre, frontier)])
            new = [b for b in found.tolist() if b not in seen]
            for b in new:
                seen[b] = hop
            frontier = np.asarray(new, dtype=np.int64)
        return {"reach": pd.DataFrame({"bodyId": list(seen), "hops": list(seen.values())}, dtype=np.int64)}


# =============================================================================== polars, in RAM
class PolarsEngine(PandasEngine):
    """polars in RAM: the same prepared tables, built and grouped with polars (lazy plans at prepare)."""

    name = "polars"

    def _prepare_stream(self) -> dict:
        """The streamed tables (stream_neuron_tables), held as the same polars frames as _prepare_ram's."""
        import polars as pl

        self.pl = pl
        t = stream_neuron_tables(self.release, self.files, log=self.log)
        self._set_neurons(t["ann"], t["stats"])
        nd = self.neurons
        text = lambda col: pl.Series(  # noqa: E731 - missing (NaN/None) -> null
            col, [v if isinstance(v, str) else None for v in nd[col].tolist()], dtype=pl.String
        )
        self.pneurons = pl.DataFrame(
            [
                pl.Series("bodyId", nd["bodyId"].to_numpy(), dtype=pl.Int64),
                text("type"),
                text("instance"),
                text("status"),
                pl.Series("pre", nd["pre"].to_numpy(), dtype=pl.Int64),
                pl.Series("post", nd["post"].to_numpy(), dtype=pl.Int64),
            ]
        )
        rc = t["roi_counts"]
        self.proi = pl.DataFrame(
            [
                pl.Series("bodyId", rc["bodyId"].to_numpy(), dtype=pl.Int64),
                pl.Series("roi", rc["roi"].tolist(), dtype=pl.String),
                pl.Series("pre", rc["pre"].to_numpy(), dtype=pl.Int64),
                pl.Series("post", rc["post"].to_numpy(), dtype=pl.Int64),
            ]
        )
        self.roi_counts_key = self.proi["bodyId"].to_numpy()
        self.rois = t["rois"]
        self.psyn = None
        c4 = t["conn4"]
        unspec = len(self.rois) - 1
        named = np.array(list(self.rois[:-1]) + [None], dtype=object)  # <unspecified> and code -1 -> None
        rp, rq = c4["roi_pre"].to_numpy(), c4["roi_post"].to_numpy()
        self._set_pconn4(
            pl.DataFrame(
                [
                    pl.Series("body_pre", c4["body_pre"].to_numpy(), dtype=pl.Int64),
                    pl.Series("body_post", c4["body_post"].to_numpy(), dtype=pl.Int64),
                    pl.Series("roi_pre", named[rp].tolist(), dtype=pl.String).cast(pl.Categorical),
                    pl.Series("pre_unspec", [None if c < 0 else bool(c == unspec) for c in rp.tolist()], pl.Boolean),
                    pl.Series("roi_post", named[rq].tolist(), dtype=pl.String).cast(pl.Categorical),
                    pl.Series("weight", c4["weight"].to_numpy(), dtype=pl.Int64),
                ]
            )
        )
        pre, post, w = t["weights"]
        nnm = member(self.neuron_ids, pre) & member(self.neuron_ids, post)
        strong = w >= PATH_MIN_WEIGHT
        self._set_pweights(
            pl.DataFrame({"body_pre": pre[nnm], "body_post": post[nnm], "weight": w[nnm]}).cast(pl.Int64),
            pl.DataFrame({"body_pre": pre[strong], "body_post": post[strong]}).cast(pl.Int64),
        )
        return {"counts": self._counts(), "disk_bytes": 0, "streamed_rows": t["streamed_rows"], "steps": t["steps"]}

    def _set_pconn4(self, pconn4):
        """pconn4 and, summed from it, the per-(pre, post, roi_post) weights sorted by pre, an order by post."""
        pl = self.pl
        self.pconn4 = pconn4
        self.pconn_roi = (
            self.pconn4.lazy()
            .group_by("body_pre", "body_post", "roi_post")
            .agg(pl.col("weight").sum())
            .select(
                pl.col("body_pre").alias("bodyId_pre"),
                pl.col("body_post").alias("bodyId_post"),
                pl.col("roi_post").cast(pl.String).fill_null("NotPrimary").alias("roi"),
                "weight",
            )
            .sort("bodyId_pre", "bodyId_post", "roi")  # roi too: one order, whatever the group-by's
            .collect()
        )
        self.conn_roi_pre = self.pconn_roi["bodyId_pre"].to_numpy()
        cpost = self.pconn_roi["bodyId_post"].to_numpy()
        self.conn_roi_by_post = np.argsort(cpost, kind="stable")
        self.conn_roi_post_sorted = cpost[self.conn_roi_by_post]

    def _set_pweights(self, pnn, w5):
        """Weights between neurons (pnn) and the (pre, post) of weight >= 5, both sorted by (pre, post)."""
        self.pnn = pnn
        self.nn_pre, self.nn_post = self.pnn["body_pre"].to_numpy(), self.pnn["body_post"].to_numpy()
        self.w5_pre, self.w5_post = w5["body_pre"].to_numpy(), w5["body_post"].to_numpy()
        o = np.argsort(self.w5_post, kind="stable")
        self.w5_post_sorted, self.w5_pre_by_post = self.w5_post[o], self.w5_pre[o]

    def _prepare_ram(self) -> dict:
        import polars as pl

        self.pl = pl
        scan = lambda key: pl.scan_ipc(self.release / self.files[key])  # noqa: E731
        ann = scan("annotations").select(
            pl.col("bodyId").cast(pl.Int64),
            pl.col("status").cast(pl.String),
            pl.col("type").cast(pl.String),
            pl.col("instance").cast(pl.String),
            pl.any_horizontal([pl.col(c).is_not_null() for c in NAMED]).alias("named"),
        )
        st = scan("stats").select(pl.col("body").cast(pl.Int64).alias("bodyId"), "pre", "post", "synweight")
        big = st.filter((pl.col("synweight") >= 100) | (pl.col("pre") >= 100) | (pl.col("post") >= 100)).select(
            "bodyId"
        )
        flag = ann.filter(pl.col("named") | pl.col("status").is_in(["Traced", "Anchor"])).select("bodyId")
        excl = ann.filter(pl.col("status").is_in(["Glia", "Unimportant"])).select("bodyId")
        ids_lf = pl.concat([big, flag]).unique().join(excl, on="bodyId", how="anti").sort("bodyId")
        neurons = (
            ids_lf.join(ann.unique("bodyId", keep="first"), on="bodyId", how="left")
            .join(st.unique("bodyId", keep="first").select("bodyId", "pre", "post"), on="bodyId", how="left")
            .select(
                "bodyId",
                "type",
                "instance",
                "status",
                pl.col("pre").fill_null(0).cast(pl.Int64),
                pl.col("post").fill_null(0).cast(pl.Int64),
            )
            .sort("bodyId")
        )
        traced = ann.filter(pl.col("status") == "Traced").select("bodyId").sort("bodyId")
        self.pneurons, traced = pl.collect_all([neurons, traced])
        ids = self.pneurons["bodyId"].to_numpy()
        self.neuron_ids, self.traced = ids, traced["bodyId"].to_numpy()
        idf = pl.DataFrame({"body": ids})

        self.proi = (
            scan("syn-points")
            .select("body", "kind", pl.col("primary").cast(pl.String).alias("roi"))
            .join(idf.lazy(), on="body", how="semi")
            .filter(pl.col("roi") != UNSPEC)
            .group_by("body", "roi")
            .agg(
                pre=(pl.col("kind") == "PreSyn").sum().cast(pl.Int64),
                post=(pl.col("kind") == "PostSyn").sum().cast(pl.Int64),
            )
            .sort("body", "roi")
            .rename({"body": "bodyId"})
            .collect()
        )
        self.roi_counts_key = self.proi["bodyId"].to_numpy()

        pid = (
            pl.col("z_pre").cast(pl.UInt64) * (1 << 42)
            + pl.col("y_pre").cast(pl.UInt64) * (1 << 21)
            + pl.col("x_pre").cast(pl.UInt64)
        ).alias("point_id")
        tb = scan("tbar-nt").select(
            pl.col("point_id").cast(pl.UInt64), pl.col("primary").cast(pl.String).alias("roi_pre")
        )
        self.psyn = (
            scan("syn-partners")
            .with_columns(pid, pl.col("primary_post").cast(pl.String).alias("roi_post"))
            .join(tb, on="point_id", how="left")
            .select(
                "body_pre",
                "body_post",
                pl.when(pl.col("roi_pre") == UNSPEC).then(None).otherwise(pl.col("roi_pre")).alias("roi_pre"),
                pl.when(pl.col("roi_post") == UNSPEC).then(None).otherwise(pl.col("roi_post")).alias("roi_post"),
                "x_pre",
                "y_pre",
                "z_pre",
                "x_post",
                "y_post",
                "z_post",
                "conf_pre",
                "conf_post",
                (pl.col("roi_pre") == UNSPEC).alias("pre_unspec"),
            )
            .with_columns(pl.col("roi_pre").cast(pl.Categorical), pl.col("roi_post").cast(pl.Categorical))
            .sort("body_pre", "body_post")
            .collect()
        )
        self.syn_pre = self.psyn["body_pre"].to_numpy()
        post = self.psyn["body_post"].to_numpy()
        self.syn_by_post = np.argsort(post, kind="stable")
        self.syn_post_sorted = post[self.syn_by_post]

        nn = (
            self.psyn.lazy()
            .join(idf.lazy(), left_on="body_pre", right_on="body", how="semi")
            .join(idf.lazy(), left_on="body_post", right_on="body", how="semi")
        )
        # roi_pre null: no t-bar point (excluded from the ROI matrix); pre_unspec: <unspecified>
        self._set_pconn4(
            nn.group_by("body_pre", "body_post", "roi_pre", "pre_unspec", "roi_post")
            .agg(weight=pl.len().cast(pl.Int64))
            .collect()
        )

        w = (
            scan("weights")
            .select("body_pre", "body_post", pl.col("weight").cast(pl.Int64))
            .sort("body_pre", "body_post")
        )
        nnw = w.join(idf.lazy(), left_on="body_pre", right_on="body", how="semi").join(
            idf.lazy(), left_on="body_post", right_on="body", how="semi"
        )
        w5 = w.filter(pl.col("weight") >= PATH_MIN_WEIGHT).select("body_pre", "body_post")
        self._set_pweights(*pl.collect_all([nnw, w5]))
        return {"counts": self._counts(), "disk_bytes": 0}

    def _neuron_answer(self, bodies):
        bodies = np.unique(np.asarray(bodies, dtype=np.int64))
        nd = self.pneurons[np.searchsorted(self.neuron_ids, bodies)] if len(bodies) else self.pneurons.head(0)
        return {"neurons": nd.to_pandas(), "rois": self.proi[ranges(self.roi_counts_key, bodies)].to_pandas()}

    def neurons_by_type(self, p):
        pl = self.pl
        return self._neuron_answer(self.pneurons.filter(pl.col("type") == p["type"])["bodyId"].to_numpy())

    def neurons_by_regex(self, p):
        pl = self.pl
        m = self.pneurons.filter(pl.col("type").str.contains(f"^(?:{p['regex']})$"))
        return self._neuron_answer(m["bodyId"].to_numpy())

    def neurons_by_roi(self, p):
        pl = self.pl
        return self._neuron_answer(self.proi.filter(pl.col("roi") == p["roi"])["bodyId"].to_numpy())

    def adjacencies(self, p):
        down = self.pconn_roi[ranges(self.conn_roi_pre, p["bodies"])]
        up = self.pconn_roi[self.conn_roi_by_post[ranges(self.conn_roi_post_sorted, p["bodies"])]]
        return {"adjacency": self.pl.concat([down, up]).to_pandas()}

    def adjacencies_segments(self, p):
        self._synapse_rows_not_held("adjacencies with every Segment as partner")
        pl = self.pl
        frames = []
        for idx in (ranges(self.syn_pre, p["bodies"]), self.syn_by_post[ranges(self.syn_post_sorted, p["bodies"])]):
            sub = self.psyn.select("body_pre", "body_post", "roi_post")[idx]
            frames.append(
                sub.group_by("body_pre", "body_post", "roi_post")
                .agg(weight=pl.len().cast(pl.Int64))
                .select(
                    pl.col("body_pre").alias("bodyId_pre"),
                    pl.col("body_post").alias("bodyId_post"),
                    pl.col("roi_post").cast(pl.String).fill_null("NotPrimary").alias("roi"),
                    "weight",
                )
            )
        return {"adjacency": pl.concat(frames).to_pandas()}

    def synapse_pair(self, p):
        self._synapse_rows_not_held("synapse connections")
        pl = self.pl
        sub = self.psyn[ranges(self.syn_pre, p["pre"])]
        sub = sub.filter(
            pl.col("body_post").is_in([int(b) for b in p["post"]])
            & (pl.col("conf_pre") > CONF)
            & (pl.col("conf_post") > CONF)
        )
        return {
            "synapses": sub.select(
                pl.col("body_pre").alias("bodyId_pre"),
                pl.col("body_post").alias("bodyId_post"),
                pl.col("roi_pre").cast(pl.String),
                pl.col("roi_post").cast(pl.String),
                "x_pre",
                "y_pre",
                "z_pre",
                "x_post",
                "y_post",
                "z_post",
                pl.col("conf_pre").alias("confidence_pre"),
                pl.col("conf_post").alias("confidence_post"),
            ).to_pandas()
        }

    def matrix_type(self, p):
        pl = self.pl
        typed = self.pneurons.filter(pl.col("type").is_not_null()).select("bodyId", "type")
        g = (
            self.pnn.lazy()
            .join(typed.lazy().rename({"bodyId": "body_pre", "type": "pre"}), on="body_pre")
            .join(typed.lazy().rename({"bodyId": "body_post", "type": "post"}), on="body_post")
            .group_by("pre", "post")
            .agg(weight=pl.col("weight").sum(), connections=pl.len())
            .collect()
        )
        return {"matrix": g.to_pandas()}

    def matrix_roi(self, p):
        pl = self.pl
        g = (
            self.pconn4.lazy()
            .filter(pl.col("roi_pre").is_not_null() & pl.col("roi_post").is_not_null())
            .group_by("roi_pre", "roi_post")
            .agg(weight=pl.col("weight").sum(), connections=pl.len())
            .select(
                pl.col("roi_pre").cast(pl.String).alias("pre"),
                pl.col("roi_post").cast(pl.String).alias("post"),
                "weight",
                "connections",
            )
            .collect()
        )
        return {"matrix": g.to_pandas()}


# =============================================================================== DuckDB on sorted Parquet
class DuckDBEngine:
    """An in-memory DuckDB connection over Parquet copies sorted by the body they are filtered on."""

    name = "duckdb"

    def __init__(self, release: Path, workdir: Path):
        self.release = Path(release)
        self.dir = Path(workdir)
        self.files = table_files()
        self.con = None

    def _connect(self):
        import duckdb

        if self.con is not None:
            self.con.close()
        self.con = duckdb.connect()
        for f in sorted(self.dir.glob("*.parquet")):
            self.con.execute(f"CREATE VIEW {f.stem} AS SELECT * FROM read_parquet('{f}')")

    reset = _connect

    def prepare(self) -> dict:
        """Write the prepared tables as Parquet (sorted, small row groups) with DuckDB from the feathers."""
        import shutil

        import duckdb
        import pyarrow.feather as feather

        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        # a file-backed build database with a memory limit, so that the 31 M-row intermediate spills to
        # disk instead of pushing a shared machine out of memory
        build = self.dir / "build.duckdb"
        con = duckdb.connect(str(build))
        con.execute(f"SET memory_limit = '{BUILD_MEMORY}'")
        con.execute(f"SET temp_directory = '{self.dir / 'spill'}'")
        con.execute("SET preserve_insertion_order = false")
        rel = self.release

        def read(name, key, cols):
            con.register(name, feather.read_table(rel / self.files[key], columns=cols))

        read("ann", "annotations", ANN_COLS)
        read("st", "stats", ["body", "pre", "post", "synweight"])
        named = " OR ".join(f'"{c}" IS NOT NULL' for c in NAMED)

        def copy(sql, name, order):
            con.execute(
                f"COPY ({sql} ORDER BY {order}) TO '{self.dir / (name + '.parquet')}' "
                f"(FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP})"
            )

        con.execute(f"""CREATE TABLE ids AS
            (SELECT body AS bodyId FROM st WHERE synweight >= 100 OR pre >= 100 OR post >= 100
             UNION SELECT bodyId FROM ann WHERE {named} OR status::VARCHAR IN ('Traced', 'Anchor'))
            EXCEPT SELECT bodyId FROM ann WHERE status::VARCHAR IN ('Glia', 'Unimportant')""")
        copy(
            """SELECT i.bodyId, a.type::VARCHAR AS type, a.instance::VARCHAR AS instance, a.status::VARCHAR AS status,
                   coalesce(s.pre, 0)::BIGINT AS pre, coalesce(s.post, 0)::BIGINT AS post
            FROM ids i LEFT JOIN (SELECT DISTINCT ON (bodyId) * FROM ann) a USING (bodyId)
            LEFT JOIN (SELECT DISTINCT ON (body) * FROM st) s ON s.body = i.bodyId""",
            "neurons",
            "bodyId",
        )
        copy("SELECT bodyId FROM ann WHERE status::VARCHAR = 'Traced'", "traced", "bodyId")
        con.unregister("ann")
        con.unregister("st")
        read("pts", "syn-points", ["body", "kind", "primary"])
        copy(
            f"""SELECT body AS bodyId, "primary"::VARCHAR AS roi, count(*) FILTER (kind::VARCHAR = 'PreSyn') AS pre,
                   count(*) FILTER (kind::VARCHAR = 'PostSyn') AS post
            FROM pts SEMI JOIN ids ON pts.body = ids.bodyId WHERE "primary"::VARCHAR <> '{UNSPEC}' GROUP BY ALL""",
            "roi_counts",
            "bodyId, roi",
        )
        con.unregister("pts")
        read(
            "part",
            "syn-partners",
            [
                "x_pre",
                "y_pre",
                "z_pre",
                "body_pre",
                "conf_pre",
                "x_post",
                "y_post",
                "z_post",
                "body_post",
                "conf_post",
                "primary_post",
            ],
        )
        read("tb", "tbar-nt", ["point_id", "primary"])
        con.execute(f"""CREATE TABLE syn AS SELECT body_pre AS bodyId_pre, body_post AS bodyId_post,
                   nullif(t."primary"::VARCHAR, '{UNSPEC}') AS roi_pre,
                   nullif(primary_post::VARCHAR, '{UNSPEC}') AS roi_post,
                   t.point_id IS NULL AS no_tbar, x_pre, y_pre, z_pre, x_post, y_post, z_post,
                   conf_pre AS confidence_pre, conf_post AS confidence_post
            FROM part LEFT JOIN tb t ON t.point_id = ((CAST(z_pre AS UBIGINT) << 42) | (CAST(y_pre AS UBIGINT) << 21)
                                                      | CAST(x_pre AS UBIGINT))""")
        con.unregister("part")
        con.unregister("tb")
        copy("SELECT * EXCLUDE (no_tbar) FROM syn", "syn_by_pre", "bodyId_pre, bodyId_post")
        copy("SELECT * EXCLUDE (no_tbar) FROM syn", "syn_by_post", "bodyId_post, bodyId_pre")
        con.execute("""CREATE TABLE conn4 AS SELECT bodyId_pre, bodyId_post, roi_pre, no_tbar, roi_post,
                   count(*) AS weight FROM syn SEMI JOIN ids a ON a.bodyId = syn.bodyId_pre
                   SEMI JOIN ids b ON b.bodyId = syn.bodyId_post GROUP BY ALL""")
        con.execute("DROP TABLE syn")
        copy("SELECT * FROM conn4", "conn4", "bodyId_pre")
        conn_roi = """SELECT bodyId_pre, bodyId_post, coalesce(roi_post, 'NotPrimary') AS roi,
                   sum(weight)::BIGINT AS weight
            FROM conn4 GROUP BY ALL"""
        copy(conn_roi, "conn_roi_by_pre", "bodyId_pre, bodyId_post")
        copy(conn_roi, "conn_roi_by_post", "bodyId_post, bodyId_pre")
        read("w", "weights", ["body_pre", "body_post", "weight"])
        copy(
            "SELECT body_pre, body_post, weight::BIGINT AS weight FROM w SEMI JOIN ids a ON a.bodyId = w.body_pre "
            "SEMI JOIN ids b ON b.bodyId = w.body_post",
            "nn_weights",
            "body_pre, body_post",
        )
        copy(f"SELECT body_pre, body_post FROM w WHERE weight >= {PATH_MIN_WEIGHT}", "w5_by_pre", "body_pre")
        copy(f"SELECT body_pre, body_post FROM w WHERE weight >= {PATH_MIN_WEIGHT}", "w5_by_post", "body_post")
        con.close()
        build.unlink()
        shutil.rmtree(self.dir / "spill", ignore_errors=True)
        self._connect()
        counts = {
            name: self.con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            for name in ("neurons", "roi_counts", "syn_by_pre", "conn_roi_by_pre", "nn_weights", "w5_by_pre")
        }
        return {"counts": counts, "disk_bytes": sum(f.stat().st_size for f in self.dir.glob("*.parquet"))}

    def q(self, sql, params=None):
        return self.con.execute(sql, params or []).df()

    @staticmethod
    def _list(ids) -> str:
        return ", ".join(str(int(b)) for b in ids) or "NULL"

    def _neuron_answer(self, where, value):
        nd = self.q(f"SELECT * FROM neurons WHERE {where}", [value])
        ids = self._list(nd["bodyId"])
        return {"neurons": nd, "rois": self.q(f"SELECT * FROM roi_counts WHERE bodyId IN ({ids})")}

    def neurons_by_type(self, p):
        return self._neuron_answer("type = ?", p["type"])

    def neurons_by_regex(self, p):
        return self._neuron_answer("regexp_full_match(type, ?)", p["regex"])

    def neurons_by_roi(self, p):
        return self._neuron_answer("bodyId IN (SELECT bodyId FROM roi_counts WHERE roi = ?)", p["roi"])

    def adjacencies(self, p):
        ids = self._list(p["bodies"])
        return {
            "adjacency": self.q(f"""SELECT * FROM conn_roi_by_pre WHERE bodyId_pre IN ({ids})
            UNION ALL SELECT * FROM conn_roi_by_post WHERE bodyId_post IN ({ids})""")
        }

    def adjacencies_segments(self, p):
        ids = self._list(p["bodies"])
        return {
            "adjacency": self.q(f"""
            SELECT bodyId_pre, bodyId_post, coalesce(roi_post, 'NotPrimary') AS roi, count(*) AS weight
            FROM syn_by_pre WHERE bodyId_pre IN ({ids}) GROUP BY ALL
            UNION ALL
            SELECT bodyId_pre, bodyId_post, coalesce(roi_post, 'NotPrimary') AS roi, count(*) AS weight
            FROM syn_by_post WHERE bodyId_post IN ({ids}) GROUP BY ALL""")
        }

    def synapse_pair(self, p):
        return {
            "synapses": self.q(f"""SELECT {", ".join(SYN_COLS)} FROM syn_by_pre
            WHERE bodyId_pre IN ({self._list(p["pre"])}) AND bodyId_post IN ({self._list(p["post"])})
              AND confidence_pre > {CONF} AND confidence_post > {CONF}""")
        }

    def shortest_paths(self, p):
        src, dst = int(p["src"]), int(p["dst"])
        con = self.con

        def out_edges(front):
            d = con.execute(f"""SELECT body_pre, body_post FROM w5_by_pre WHERE body_pre IN ({self._list(front)})
                AND (body_post = {dst} OR body_post IN (SELECT bodyId FROM traced))""").fetchnumpy()
            return d["body_pre"], d["body_post"]

        def in_edges(front):
            d = con.execute(f"""SELECT body_pre, body_post FROM w5_by_post WHERE body_post IN ({self._list(front)})
                AND (body_pre = {src} OR body_pre IN (SELECT bodyId FROM traced))""").fetchnumpy()
            return d["body_pre"], d["body_post"]

        return {"paths": paths_frame(shortest_paths_bidirectional(out_edges, in_edges, src, dst))}

    def matrix_type(self, p):
        return {
            "matrix": self.q("""SELECT a.type AS pre, b.type AS post, sum(w.weight) AS weight, count(*) AS connections
            FROM nn_weights w JOIN neurons a ON a.bodyId = w.body_pre JOIN neurons b ON b.bodyId = w.body_post
            WHERE a.type IS NOT NULL AND b.type IS NOT NULL GROUP BY ALL""")
        }

    def matrix_roi(self, p):
        return {
            "matrix": self.q("""SELECT roi_pre AS pre, roi_post AS post, sum(weight) AS weight, count(*) AS connections
            FROM conn4 WHERE roi_pre IS NOT NULL AND roi_post IS NOT NULL GROUP BY ALL""")
        }

    def reach(self, p):
        seen = {int(b): 0 for b in p["bodies"]}
        frontier = list(seen)
        for hop in range(1, p["hops"] + 1):
            found = self.con.execute(
                f"SELECT DISTINCT body_post FROM nn_weights WHERE body_pre IN ({self._list(frontier)})"
            ).fetchnumpy()["body_post"]
            new = [b for b in sorted(found.tolist()) if b not in seen]
            for b in new:
                seen[b] = hop
            frontier = new
        return {"reach": pd.DataFrame({"bodyId": list(seen), "hops": list(seen.values())}, dtype=np.int64)}


def timed_prepare(engine) -> dict:
    started = time.perf_counter()
    info = engine.prepare()
    info["seconds"] = time.perf_counter() - started
    return info
