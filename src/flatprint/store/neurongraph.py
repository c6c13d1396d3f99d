"""The neuron-to-neuron graph in RAM: the store's neuron-only connection tables as NumPy arrays.

``fetch_adjacencies`` between neurons and ``fetch_reach`` over neurons look up a few bodies'
connections many times over the same read-only tables. Each lookup through SQL pays for planning,
scanning row groups and building Arrow results (hundreds of ms at full scale); the same lookup over
sorted arrays is a few ``np.searchsorted`` gathers. :func:`neuron_graph` builds the arrays once per
store and process, from ``neurons``, ``neuron_connections`` and ``neuron_connection_rois``
(flatprint.ingest.summaries), and keeps them (bounded, least recently used first out, in a
flatprint.store.cache.BuildOnceCache, as flatprint.query.indirect keeps its matrices).

Layout (``n`` neurons, ``m`` neuron pairs, ``r`` pair x ROI rows; bodies are positions in the sorted
``body_ids``):

* pairs sorted by (pre, post): ``pre``, ``post`` (int32 positions), ``weight``, ``weight_hp``;
  ``pre_offsets`` (n + 1): neuron i's outgoing pairs are ``pre_offsets[i]:pre_offsets[i + 1]``;
* ``by_post`` (m): the pair indices sorted by (post, pre); ``post_offsets`` (n + 1) the same
  offsets into it, for incoming pairs;
* per-ROI weights in pair order (then ROI name): ``roi_offsets`` (m + 1), ``roi_code`` (int16 into
  ``roi_names``, sorted by name as SQL sorts text), ``roi_weight`` (the pair's postsynaptic sites in
  the ROI) and ``roi_pre`` (its T-bars there; ConnectsTo.roiInfo's "pre");
* fetch_adjacencies' rows of every pair over the store's primary ROIs, in its answer order, built
  once (per query, sorting the selected pairs' rows cost 5 of 12 ms for 1,000 neurons at full
  scale): ``answer_offsets`` (m + 1), ``answer_code`` (a primary ROI's code, or ``len(roi_names)``
  for NotPrimary: the pair's weight outside primary ROIs, where positive) and ``answer_weight``;
  rows of weight 0 left out; each pair's heaviest first, then by ROI name.

At full scale (~4 M neuron pairs, ~7 M pair x ROI rows) that is ~16 + 4 bytes a pair and ~6 + 8
bytes a pair x ROI row plus offsets: ~200 MB; :attr:`NeuronGraph.nbytes` says exactly.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flatprint.errors import StoreError
from flatprint.store.cache import BuildOnceCache, store_key

#: The tables the graph is read from (a store without one of them has no graph).
GRAPH_TABLES = ("neurons", "neuron_connections", "neuron_connection_rois")
KEEP_GRAPHS = 2  # graphs of the two most recently used stores stay in RAM
KEEP_DERIVED = 4  # of each graph, the four most recently used things derived from it stay
COLUMN_BYTES = 64 * 2**20  # a neuron property column is kept only if its Arrow form is at most this


@dataclass
class NeuronGraph:
    """The neuron-only connection tables of one store as arrays (module docstring). Built once."""

    body_ids: np.ndarray
    pre: np.ndarray
    post: np.ndarray
    weight: np.ndarray
    weight_hp: np.ndarray
    pre_offsets: np.ndarray
    by_post: np.ndarray
    post_offsets: np.ndarray
    roi_offsets: np.ndarray
    roi_code: np.ndarray
    roi_weight: np.ndarray
    roi_pre: np.ndarray
    roi_names: np.ndarray
    answer_offsets: np.ndarray | None = None  # None: a graph built without them (tests' small graphs)
    answer_code: np.ndarray | None = None
    answer_weight: np.ndarray | None = None
    build_seconds: float = 0.0
    _columns: dict = field(default_factory=dict, repr=False)  # neuron property -> Arrow column
    _columns_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # what queries derive from the arrays and reuse (connection_matrix's pairs grouped by a property)
    derived: BuildOnceCache = field(default_factory=lambda: BuildOnceCache(max_entries=KEEP_DERIVED), repr=False)
    _roi_masks: dict = field(default_factory=dict, repr=False)  # ROI name set -> mask over roi_names
    _roi_labels: pa.Array | None = field(default=None, repr=False)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (the neuron property columns and derived arrays kept so far included)."""
        arrays = (
            self.body_ids,
            self.pre,
            self.post,
            self.weight,
            self.weight_hp,
            self.pre_offsets,
            self.by_post,
            self.post_offsets,
            self.roi_offsets,
            self.roi_code,
            self.roi_weight,
            self.roi_pre,
            *(a for a in (self.answer_offsets, self.answer_code, self.answer_weight) if a is not None),
        )
        columns = sum(c[0].nbytes for c in self._columns.values() if c is not None)
        return sum(a.nbytes for a in arrays) + columns + self.derived.nbytes

    def positions(self, bodies) -> tuple[np.ndarray, np.ndarray]:
        """(position in ``body_ids`` of each body, whether it is a neuron of the graph)."""
        values = np.asarray(bodies, dtype=np.int64)
        found = np.searchsorted(self.body_ids, values)
        inside = found < len(self.body_ids)
        inside[inside] = self.body_ids[found[inside]] == values[inside]
        return found, inside

    def outgoing(self, positions) -> np.ndarray:
        """Indices of the pairs whose pre is one of ``positions`` (in that order; each one's pairs by post)."""
        return _ranges(self.pre_offsets, positions)[0]

    def incoming(self, positions) -> np.ndarray:
        """Indices of the pairs whose post is one of ``positions`` (in that order; each one's pairs by pre)."""
        return self.by_post[_ranges(self.post_offsets, positions)[0]]

    def roi_rows(self, pairs) -> tuple[np.ndarray, np.ndarray]:
        """(indices into the ROI arrays of ``pairs``' rows, each row's position in ``pairs``)."""
        rows, counts = _ranges(self.roi_offsets, pairs)
        return rows, np.repeat(np.arange(len(counts)), counts)

    def answer_rows(self, pairs) -> tuple[np.ndarray, np.ndarray]:
        """(indices into the answer arrays of ``pairs``' rows, each row's position in ``pairs``)."""
        rows, counts = _ranges(self.answer_offsets, pairs)
        return rows, np.repeat(np.arange(len(counts)), counts)

    def roi_mask(self, rois) -> np.ndarray:
        """Per ROI code: whether its name is one of ``rois`` (kept per name set: a test of ~200 names
        against a list costs more than a small query's arithmetic)."""
        key = frozenset(rois)
        mask = self._roi_masks.get(key)
        if mask is None:
            if len(self._roi_masks) >= KEEP_DERIVED:
                self._roi_masks.clear()
            mask = self._roi_masks[key] = np.array([name in key for name in self.roi_names], dtype=bool)
        return mask

    def roi_labels(self) -> pa.Array:
        """The ROI names by code, then "NotPrimary" (code len(roi_names)), as an Arrow string array."""
        if self._roi_labels is None:
            self._roi_labels = pa.array([*self.roi_names.tolist(), "NotPrimary"], type=pa.string())
        return self._roi_labels

    def reach(self, start, hops: int, min_weight: int, downstream: bool, visited=()) -> tuple[np.ndarray, np.ndarray]:
        """Breadth-first from the neurons at ``start`` (positions) along pairs of weight >= ``min_weight``
        for ``hops`` steps, never entering ``visited`` (positions): (positions found, the fewest steps
        to each; ``start`` at 0), level by level, each level sorted."""
        seen = np.zeros(len(self.body_ids), dtype=bool)
        seen[np.asarray(visited, dtype=np.int64)] = True
        frontier = np.unique(np.asarray(start, dtype=np.int64))
        seen[frontier] = True
        found, levels = [frontier], [np.zeros(len(frontier), dtype=np.int64)]
        for hop in range(1, int(hops) + 1):
            if not len(frontier):
                break
            pairs = self.outgoing(frontier) if downstream else self.incoming(frontier)
            pairs = pairs[self.weight[pairs] >= min_weight]
            far = np.unique((self.post if downstream else self.pre)[pairs])
            frontier = far[~seen[far]]
            seen[frontier] = True
            found.append(frontier)
            levels.append(np.full(len(frontier), hop, dtype=np.int64))
        return np.concatenate(found), np.concatenate(levels)

    def column(self, cursor, prop: str) -> tuple[pa.ChunkedArray, str] | None:
        """``prop`` of every neuron (aligned with ``body_ids``) as DuckDB returns it from ``neurons``,
        with its DuckDB type name; read once. None when it is no column of ``neurons`` or takes more
        than COLUMN_BYTES."""
        with self._columns_lock:
            if prop not in self._columns:
                self._columns[prop] = self._read_column(cursor, prop)
            return self._columns[prop]

    def _read_column(self, cursor, prop: str) -> tuple[pa.ChunkedArray, str] | None:
        types = dict(cursor.execute("SELECT column_name, column_type FROM (DESCRIBE neurons)").fetchall())
        if prop not in types:
            return None
        quoted = '"' + prop.replace('"', '""') + '"'
        got = cursor.sql(f"SELECT bodyId, {quoted} AS v FROM neurons ORDER BY bodyId").to_arrow_table()
        ids = got.column("bodyId").to_numpy()
        if len(ids) != len(self.body_ids) or not np.array_equal(ids, self.body_ids):
            raise StoreError("the store's neurons changed since its neuron graph was built; restart the process")
        values = got.column("v")
        if values.nbytes > COLUMN_BYTES:
            return None
        # One chunk: Arrow's take on a column of several chunks concatenates them first, every call
        # (~0.1-0.2 ms for 166,700 neurons, against ~5 us).
        return pa.chunked_array([values.combine_chunks()], type=values.type), str(types[prop])


def _ranges(offsets: np.ndarray, keys) -> tuple[np.ndarray, np.ndarray]:
    """(the concatenated index ranges ``offsets[k]:offsets[k + 1]`` of ``keys`` in order, their lengths)."""
    keys = np.asarray(keys, dtype=np.int64)
    starts = offsets[keys].astype(np.int64)
    counts = offsets[keys + 1] - starts
    total = int(counts.sum())
    if not total:
        return np.zeros(0, dtype=np.int64), counts
    # output i of the range beginning at output b is starts + (i - b)
    shift = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    return shift + np.arange(total, dtype=np.int64), counts


def _index_type(count: int):
    return np.int32 if count < 2**31 else np.int64


def _sorted_positions(body_ids: np.ndarray, values: np.ndarray, what: str) -> np.ndarray:
    found = np.searchsorted(body_ids, values)
    if len(values) and (found.max() >= len(body_ids) or not np.array_equal(body_ids[found], values)):
        raise StoreError(f"{what} holds a body that is not in the store's neurons table; re-ingest the store")
    return found.astype(_index_type(len(body_ids)))


def build_neuron_graph(store) -> NeuronGraph:
    """Read the neuron-only tables into a :class:`NeuronGraph` (tables stored sorted; checked)."""
    missing = [t for t in GRAPH_TABLES if not store.has_table(t)]
    if missing:
        raise StoreError(f"{store.path}: no neuron graph without the tables {missing} (re-ingest the store)")
    started = time.perf_counter()
    cur = store.cursor()
    body_ids = np.asarray(cur.execute("SELECT bodyId FROM neurons").fetchnumpy()["bodyId"], dtype=np.int64)
    if len(body_ids) > 1 and not np.all(body_ids[1:] > body_ids[:-1]):
        body_ids = np.unique(body_ids)
    n = len(body_ids)

    pairs = cur.sql("SELECT body_pre, body_post, weight, weight_hp FROM neuron_connections").to_arrow_table()
    pre_ids = pairs.column("body_pre").to_numpy().astype(np.int64, copy=False)
    post_ids = pairs.column("body_post").to_numpy().astype(np.int64, copy=False)
    pre = _sorted_positions(body_ids, pre_ids, "neuron_connections.body_pre")
    post = _sorted_positions(body_ids, post_ids, "neuron_connections.body_post")
    del pre_ids, post_ids
    keys = pre.astype(np.int64) * n + post
    order = None
    if len(keys) > 1 and not np.all(keys[1:] > keys[:-1]):  # a scan normally keeps the stored order
        order = np.argsort(keys, kind="stable")
        keys, pre, post = keys[order], pre[order], post[order]
    weight, weight_hp = (_small_ints(pairs.column(c), order) for c in ("weight", "weight_hp"))
    del pairs
    m = len(keys)
    pair_index = _index_type(m)
    pre_offsets = np.searchsorted(pre, np.arange(n + 1)).astype(pair_index)
    by_post = np.argsort(post, kind="stable").astype(pair_index)  # stable: (post, pre) order
    post_offsets = np.searchsorted(post[by_post], np.arange(n + 1)).astype(pair_index)

    rois = cur.sql("SELECT body_pre, body_post, roi, weight, pre FROM neuron_connection_rois").to_arrow_table()
    roi_keys = _sorted_positions(
        body_ids, rois.column("body_pre").to_numpy().astype(np.int64, copy=False), "neuron_connection_rois.body_pre"
    ).astype(np.int64) * n + _sorted_positions(
        body_ids, rois.column("body_post").to_numpy().astype(np.int64, copy=False), "neuron_connection_rois.body_post"
    )
    roi_pair = np.searchsorted(keys, roi_keys)
    if len(roi_keys) and (roi_pair.max() >= m or not np.array_equal(keys[roi_pair], roi_keys)):
        raise StoreError(f"{store.path}: neuron_connection_rois holds a pair that neuron_connections lacks")
    del roi_keys
    encoded = pc.dictionary_encode(rois.column("roi").combine_chunks())
    names = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    by_name = np.argsort(names.astype(str), kind="stable")  # SQL orders text by code point, as str does
    rank = np.empty(len(names), dtype=np.int16)
    rank[by_name] = np.arange(len(names), dtype=np.int16)
    roi_code = rank[encoded.indices.to_numpy(zero_copy_only=False)]
    roi_weight = _small_ints(rois.column("weight"), None)
    roi_pre = _small_ints(rois.column("pre"), None)
    del rois, encoded
    # rows in pair order, then ROI name: the table's own order, unless a scan reordered it
    step = roi_pair[1:] - roi_pair[:-1]
    if not np.all((step > 0) | ((step == 0) & (roi_code[1:] > roi_code[:-1]))):
        roi_order = np.lexsort((roi_code, roi_pair))
        roi_pair, roi_code = roi_pair[roi_order], roi_code[roi_order]
        roi_weight, roi_pre = roi_weight[roi_order], roi_pre[roi_order]
    roi_offsets = np.searchsorted(roi_pair, np.arange(m + 1)).astype(_index_type(len(roi_pair)))
    del roi_pair
    primary = np.isin(names[by_name].astype(str), [str(r) for r in store.meta.get("primaryRois", [])])
    answer = adjacency_rows(weight, roi_offsets, roi_code, roi_weight, primary)
    return NeuronGraph(
        body_ids=body_ids,
        pre=pre,
        post=post,
        weight=weight,
        weight_hp=weight_hp,
        pre_offsets=pre_offsets,
        by_post=by_post,
        post_offsets=post_offsets,
        roi_offsets=roi_offsets,
        roi_code=roi_code,
        roi_weight=roi_weight,
        roi_pre=roi_pre,
        roi_names=names[by_name],
        answer_offsets=answer[0],
        answer_code=answer[1],
        answer_weight=answer[2],
        build_seconds=time.perf_counter() - started,
    )


def adjacency_rows(weight, roi_offsets, roi_code, roi_weight, primary: np.ndarray):
    """(answer_offsets, answer_code, answer_weight) of every pair (module docstring): its rows in
    the ROIs ``primary`` marks (by code) and NotPrimary, the pair's weight minus theirs where
    positive; rows of weight 0 dropped; by pair, heaviest first, then code (NotPrimary's is last)."""
    m = len(weight)
    local = np.repeat(np.arange(m, dtype=np.int64), np.diff(roi_offsets))
    local, codes, weights = sorted_pair_rows(
        local,
        roi_code,
        roi_weight,
        weight,
        primary,
        include_nonprimary=False,
        kind="stable",  # (runs sorted already)
    )
    kept = weights > 0
    local, codes, weights = local[kept], codes[kept], weights[kept]
    offsets = np.searchsorted(local, np.arange(m + 1)).astype(_index_type(len(local)))
    fits = not len(weights) or int(weights.max()) < 2**31
    return offsets, codes.astype(np.int16), weights.astype(np.int32 if fits else np.int64)


def sorted_pair_rows(
    local, roi_code, roi_weight, pair_weight, primary: np.ndarray, include_nonprimary: bool, kind: str = "quicksort"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """fetch_adjacencies' rows of some pairs, in answer order: (row's pair ``local`` (an index into
    ``pair_weight``), ROI code, weight) of the ROI rows given (those in ROIs ``primary`` marks, or
    all with ``include_nonprimary``) and a NotPrimary row (code ``len(primary)``) per pair whose
    weight outside primary ROIs is positive."""
    n_codes = len(primary)
    codes = roi_code.astype(np.int64)
    weights = roi_weight.astype(np.int64)
    in_primary = primary[codes]
    primary_sum = np.bincount(local[in_primary], weights=weights[in_primary], minlength=len(pair_weight))
    rest = pair_weight.astype(np.int64) - primary_sum.astype(np.int64)
    outside = np.flatnonzero(rest > 0)
    kept = slice(None) if include_nonprimary else in_primary
    local = np.concatenate([local[kept], outside])
    codes = np.concatenate([codes[kept], np.full(len(outside), n_codes, dtype=np.int64)])
    weights = np.concatenate([weights[kept], rest[outside]])
    order = pair_weight_roi_order(local, weights, codes, n_codes + 1, kind=kind)
    return local[order], codes[order], weights[order]


def pair_weight_roi_order(
    local: np.ndarray, weights: np.ndarray, codes: np.ndarray, n_codes: int, kind: str = "quicksort"
) -> np.ndarray:
    """The order of rows by pair (``local``; pairs are in (pre, post) order already), heaviest first,
    then ROI code: one int64 key per row when it fits (each (pair, ROI) row is unique, so any sort
    orders alike; a third of a three-key lexsort's time), else the lexsort."""
    if not len(local):
        return np.zeros(0, dtype=np.int64)
    top = int(weights.max())
    span = (top - int(weights.min()) + 1) * n_codes
    if (int(local.max()) + 1) * span < 2**62:
        return np.argsort((local * span) + (top - weights) * n_codes + codes, kind=kind)
    return np.lexsort((codes, -weights, local))


def _small_ints(column, order) -> np.ndarray:
    """An integer column as int32 when its values fit (weights do), else int64, or float64 with NaN
    for NULLs when it has any; reordered by ``order``."""
    if column.null_count:
        values = column.cast(pa.float64()).to_numpy()
        return values if order is None else values[order]
    values = column.to_numpy().astype(np.int64, copy=False)
    if order is not None:
        values = values[order]
    if not len(values) or (values.min() >= -(2**31) and values.max() < 2**31):
        return values.astype(np.int32)
    return values


_graphs: BuildOnceCache[NeuronGraph] = BuildOnceCache(max_entries=lambda: KEEP_GRAPHS)


def neuron_graph(store) -> NeuronGraph:
    """The store's neuron graph, built on first use and kept (stores are read-only)."""
    return _graphs.get(store_key(store), lambda: build_neuron_graph(store))


def kept_neuron_graph(store) -> NeuronGraph | None:
    """The store's neuron graph if it is built already, else None (nothing is built)."""
    return _graphs.peek(store_key(store))


def clear_neuron_graph_cache() -> None:
    """Drop every kept graph (the next query rebuilds its store's)."""
    _graphs.clear()


def has_neuron_graph(store) -> bool:
    """Whether the store has the tables the graph is read from (stores ingested before them do not)."""
    return all(store.has_table(t) for t in GRAPH_TABLES)
