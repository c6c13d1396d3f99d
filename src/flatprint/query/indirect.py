"""Indirect connectivity: effective input (or output) fractions over k hops, per neuron or per group.

The whole graph is one sparse matrix A over the partner set (the :Neuron bodies by default, or every
:Segment), ``A[i, j] = weight(i -> j) / sum_i' weight(i' -> j)`` for ``normalize='input'`` (the
fraction of j's input from i among the partners included) or ``/ sum_j' weight(i -> j')`` for
``'output'``. Hop k is ``(A^k)[sources, targets]``: the sum over every walk of k connections of the
product of its fractions (walks may revisit neurons, as matrix powers do). With ``signed=True``
each step is multiplied by the sign of its presynaptic neuron's transmitter. Groups (cell types,
instances) aggregate the neuron-level result linearly; the exact rules are in docs/semantics.md.

A is built once per store and process (:func:`graph_matrix`) from the store's ``connections_by_post``
table and kept; a query then multiplies blocks of dense vectors by it (scipy.sparse), from the
sources forward or from the targets backward, whichever side has fewer groups. No paths are
enumerated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from flatprint.errors import QueryError
from flatprint.query.client import inject_client
from flatprint.query.criteria import copy_as_neuroncriteria
from flatprint.query.results import with_provenance
from flatprint.store.cache import BuildOnceCache, store_key
from flatprint.store.sql import quote_ident

# acetylcholine excites, GABA and glutamate (through GluCl in flies) inhibit; everything else,
# 'unclear' and a missing prediction count as +1 unless the caller's ``signed`` mapping says otherwise.
DEFAULT_SIGNS = {"acetylcholine": 1.0, "gaba": -1.0, "glutamate": -1.0}
OTHER_SIGN = 1.0
NORMALIZATIONS = ("input", "output")
GROUP_PROPERTIES = ("type", "instance")
NT_PROPERTIES = ("predictedNt", "consensusNt", "celltypePredictedNt")
BLOCK_BYTES = 256 * 2**20  # one dense block of propagated vectors (n bodies x block columns, float64)
MAX_RESULT_CELLS = 50_000_000  # source groups x target groups x hops held densely during a query
ROWS_PER_BATCH = 1 << 20


@dataclass
class GraphMatrix:
    """The whole-graph matrix of one store over ``body_ids`` (sorted), normalised as ``normalize``
    says, stored transposed: ``inputs`` is A^T in CSR, row j = body j's inputs (columns = its
    presynaptic partners). Propagating from sources is then a row gather per body. Built once."""

    body_ids: np.ndarray
    inputs: sp.csr_matrix
    normalize: str
    neurons_only: bool
    build_seconds: float
    nbytes: int
    _labels: dict = field(default_factory=dict, repr=False)  # property -> values aligned with body_ids

    def labels(self, client, prop: str) -> np.ndarray:
        """``prop`` of every body in the matrix (None where missing), read once per property."""
        if prop not in self._labels:
            frame = (
                client.cursor()
                .execute(
                    f"SELECT bodyId, {quote_ident(prop)} AS v FROM segments "
                    f"{'WHERE is_neuron' if self.neurons_only else ''} ORDER BY bodyId"
                )
                .df()
            )
            if len(frame) != len(self.body_ids) or not np.array_equal(
                frame["bodyId"].to_numpy(np.int64), self.body_ids
            ):
                raise QueryError("the store changed since its matrix was built; restart the process")
            self._labels[prop] = frame["v"].to_numpy(dtype=object)
        return self._labels[prop]


KEEP_MATRICES = 2  # at full scale one matrix is ~1.5 GiB: keep the two most recently used
_matrices: BuildOnceCache[GraphMatrix] = BuildOnceCache(max_entries=lambda: KEEP_MATRICES)


def graph_matrix(store, normalize: str = "input", neurons_only: bool = True) -> GraphMatrix:
    """The store's whole-graph matrix, built on first use and kept (stores are read-only)."""
    if normalize not in NORMALIZATIONS:
        raise QueryError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    key = (*store_key(store), normalize, bool(neurons_only))
    return _matrices.get(key, lambda: build_matrix(store, normalize, neurons_only))


def clear_matrix_cache() -> None:
    _matrices.clear()


def build_matrix(store, normalize: str = "input", neurons_only: bool = True) -> GraphMatrix:
    """The CSR arrays of A^T (one row per postsynaptic body, sorted) from ``connections_by_post``,
    then normalised in place. Neurons only: DuckDB picks and sorts the few neuron-neuron rows; every
    segment: the whole table is streamed in its (body_post, body_pre) order."""
    started = time.perf_counter()
    cur = store.cursor()
    label = "WHERE is_neuron" if neurons_only else ""
    # segments is stored sorted by bodyId; a plain scan keeps that order (checked, sorted otherwise)
    body_ids = np.asarray(cur.execute(f"SELECT bodyId FROM segments {label}").fetchnumpy()["bodyId"], dtype=np.int64)
    if len(body_ids) > 1 and not np.all(body_ids[1:] > body_ids[:-1]):
        body_ids = np.unique(body_ids)
    n = len(body_ids)
    if neurons_only:
        rows, indices, data = _neuron_entries(cur)
        nnz = len(rows)
        index_type = np.int32 if max(n, nnz) < 2**31 else np.int64
        counts = np.bincount(rows, minlength=n).astype(index_type)
        indices = indices.astype(index_type, copy=False)
        del rows
    else:
        counts, indices, data, index_type = _segment_entries(store, cur, body_ids)
    indptr = np.zeros(n + 1, dtype=index_type)
    np.cumsum(counts, out=indptr[1:])
    del counts
    matrix = sp.csr_matrix((data, indices, indptr), shape=(n, n))
    matrix.has_sorted_indices = True
    _normalise(matrix, normalize)
    nbytes = matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes + body_ids.nbytes
    return GraphMatrix(body_ids, matrix, normalize, bool(neurons_only), time.perf_counter() - started, nbytes)


def _neuron_entries(cur) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The neuron-neuron connections as (row = post position, column = pre position, weight), sorted.

    Few of the table's rows (at full scale a few million of ~150 million): DuckDB joins them to the
    neurons' positions and sorts them, rather than streaming every row through NumPy."""
    got = cur.execute("""
        WITH idx AS (SELECT bodyId, (row_number() OVER (ORDER BY bodyId) - 1)::INTEGER AS i
                     FROM segments WHERE is_neuron)
        SELECT p.i AS row, q.i AS col, c.weight::DOUBLE AS weight
        FROM connections_by_post c JOIN idx p ON p.bodyId = c.body_post JOIN idx q ON q.bodyId = c.body_pre
        ORDER BY 1, 2""").fetchnumpy()
    return (np.asarray(got["row"], dtype=np.int64), np.asarray(got["col"]), np.asarray(got["weight"], dtype=np.float64))


def _segment_entries(store, cur, body_ids: np.ndarray):
    """Every connection: ``connections_by_post`` streamed in its order (body_post, body_pre) into arrays
    allocated once at their final size, counting each row's entries on the way (no COO copy, no sort)."""
    n = len(body_ids)
    nnz = int(cur.execute("SELECT count(*) FROM connections_by_post").fetchall()[0][0])
    index_type = np.int32 if max(n, nnz) < 2**31 else np.int64
    counts = np.zeros(n, dtype=index_type)
    indices = np.empty(nnz, dtype=index_type)
    data = np.empty(nnz, dtype=np.float64)
    reader = cur.sql("SELECT body_post, body_pre, weight FROM connections_by_post").to_arrow_reader(ROWS_PER_BATCH)
    filled, last_row, ordered = 0, -1, True
    for batch in reader:
        post = batch.column(0).to_numpy().astype(np.int64, copy=False)
        pre = batch.column(1).to_numpy().astype(np.int64, copy=False)
        if not len(post):
            continue
        row, row_ok = _positions(body_ids, post)
        col, col_ok = _positions(body_ids, pre)
        keep = row_ok & col_ok
        row, col = row[keep], col[keep]
        m = len(row)
        if not m:
            continue
        # The table is sorted by (body_post, body_pre); check it anyway: a reordered stream would
        # put weights in the wrong rows.
        if row[0] < last_row or (m > 1 and np.any(row[1:] < row[:-1])) or filled + m > nnz:
            ordered = False
            break
        last_row = int(row[-1])
        starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])  # runs of one row (sorted)
        counts[row[starts]] += np.diff(np.r_[starts, m]).astype(index_type)
        indices[filled : filled + m] = col
        data[filled : filled + m] = batch.column(2).to_numpy()[keep]
        filled += m
    if not ordered or filled != nnz:
        raise QueryError(
            f"{store.path}: connections_by_post is not sorted by body_post as the store layout "
            "promises (docs/store.md); re-ingest the store"
        )
    return counts, indices, data, index_type


def _positions(sorted_ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position of each value in ``sorted_ids``, whether it is there)."""
    if not len(sorted_ids):
        return np.zeros(len(values), np.int64), np.zeros(len(values), bool)
    pos = np.minimum(np.searchsorted(sorted_ids, values), len(sorted_ids) - 1)
    return pos, sorted_ids[pos] == values


def _normalise(matrix: sp.csr_matrix, normalize: str, chunk: int = 1 << 24) -> None:
    """A^T in CSR: divide each row (input: a body's total input) or each column (output: a body's total
    output) by its sum, in place and in chunks (bounded memory)."""
    n = matrix.shape[0]
    data, indices, indptr = matrix.data, matrix.indices, matrix.indptr
    if normalize == "output":
        totals = np.bincount(indices, weights=data, minlength=n)
        for start in range(0, len(data), chunk):
            data[start : start + chunk] /= totals[indices[start : start + chunk]]
        return
    counts = np.diff(indptr)
    nonempty = counts > 0
    totals = np.ones(n)
    if nonempty.any():  # segments between consecutive non-empty rows' starts are exactly those rows
        totals[nonempty] = np.add.reduceat(data, indptr[:-1][nonempty])
    rows_per_chunk = max(1, int(chunk // max(1, len(data) / max(n, 1))))
    for r0 in range(0, n, rows_per_chunk):
        r1 = min(n, r0 + rows_per_chunk)
        data[indptr[r0] : indptr[r1]] /= np.repeat(totals[r0:r1], counts[r0:r1])


# ---------------------------------------------------------------------------------------------- query
def _sides(groupby) -> tuple[str | None, str | None]:
    if isinstance(groupby, (tuple, list)):
        if len(groupby) != 2:
            raise QueryError(f"groupby: a pair (source side, target side) has two items, got {groupby!r}")
        sides = tuple(groupby)
    else:
        sides = (groupby, groupby)
    for side in sides:
        if side is not None and side not in GROUP_PROPERTIES:
            raise QueryError(f"groupby must be 'type', 'instance', None or a pair of them, got {groupby!r}")
    return sides


def _signs_vector(client, graph: GraphMatrix, signed, nt_property: str) -> np.ndarray | None:
    if signed is False or signed is None:
        return None
    if nt_property not in NT_PROPERTIES:
        raise QueryError(f"nt_property must be one of {NT_PROPERTIES}, got {nt_property!r}")
    if nt_property not in client.neuron_keys:
        raise QueryError(f"nt_property: this dataset has no neuron property {nt_property!r}")
    signs = dict(DEFAULT_SIGNS)
    other = OTHER_SIGN
    if isinstance(signed, dict):
        for nt, sign in signed.items():
            try:
                value = float(sign)
            except (TypeError, ValueError):
                raise QueryError(f"signed: the sign of {nt!r} must be a number, got {sign!r}") from None
            if nt is None or nt == "*":  # "*" for JSON callers, whose keys are strings
                other = value
            else:
                signs[str(nt)] = value
    elif signed is not True:
        raise QueryError(f"signed must be True, False or a dict transmitter -> sign, got {signed!r}")
    key = ("signs", nt_property, tuple(sorted(signs.items())), other)
    if key not in graph._labels:
        nts = pd.Series(graph.labels(client, nt_property))
        graph._labels[key] = nts.map(lambda nt: signs.get(nt, other) if isinstance(nt, str) else other).to_numpy(
            np.float64
        )
    return graph._labels[key]


def _side(client, graph: GraphMatrix, spec, prop: str | None, role: str, mean: bool):
    """(group labels, groups x n aggregation matrix in CSR: row g weighs group g's bodies)."""
    crit = copy_as_neuroncriteria(spec, client)
    if spec is None:  # every body of the matrix: no query needed
        frame = pd.DataFrame({"bodyId": graph.body_ids})
        if prop:
            frame["grp"] = graph.labels(client, prop)
        pos = np.arange(len(graph.body_ids))
    else:
        cols = "n.bodyId" + (f", n.{quote_ident(prop)} AS grp" if prop else "")
        frame = (
            client.cursor()
            .execute(f"SELECT {cols} FROM segments n WHERE {crit.where(client, 'n')} ORDER BY n.bodyId")
            .df()
        )
        pos, inside = _positions(graph.body_ids, frame["bodyId"].to_numpy(np.int64))
        frame, pos = frame[inside], pos[inside]
    if prop:
        named = frame["grp"].notna().to_numpy()
        frame, pos = frame[named], pos[named]
    if len(frame) == 0:
        what = "neurons" if graph.neurons_only else "segments"
        extra = f" with a {prop}" if prop else ""
        raise QueryError(f"{role}: no {what}{extra} match {crit!r}")
    if prop:
        labels, codes = np.unique(frame["grp"].astype(str).to_numpy(), return_inverse=True)
    else:
        labels, codes = frame["bodyId"].to_numpy(np.int64), np.arange(len(frame))
    sizes = np.bincount(codes, minlength=len(labels)).astype(np.float64)
    values = 1.0 / sizes[codes] if mean else np.ones(len(codes))
    # groups x n, not n x groups: a CSR row pointer per body would cost 4 bytes x every segment
    agg = sp.csr_matrix((values, (codes, pos)), shape=(len(labels), len(graph.body_ids)))
    return labels, agg


def indirect_arrays(
    graph: GraphMatrix,
    src_agg: sp.csr_matrix,
    tgt_agg: sp.csr_matrix,
    hops: int,
    signs: np.ndarray | None = None,
    matrix: sp.csr_matrix | None = None,
) -> np.ndarray:
    """``out[k-1] = src_agg @ (diag(signs) @ A)^k @ tgt_agg.T`` for k = 1..hops, shape (hops, gs, gt);
    the aggregation matrices are groups x bodies.

    Propagates dense blocks of vectors from whichever side has fewer groups."""
    a_t = graph.inputs if matrix is None else matrix
    n = a_t.shape[0]
    gs, gt = src_agg.shape[0], tgt_agg.shape[0]
    out = np.zeros((hops, gs, gt), dtype=np.float64)
    block = max(1, BLOCK_BYTES // max(1, n * 8))
    s = signs[:, None] if signs is not None else None
    if gs <= gt:  # forward: x_k^T = A^T (s * x_{k-1}^T), starting from the source groups (row gathers)
        for lo in range(0, gs, block):
            x = src_agg[lo : lo + block].toarray().T
            for k in range(hops):
                x = a_t @ (x * s if s is not None else x)
                out[k, lo : lo + block, :] = (tgt_agg @ x).T
    else:  # backward: u_k = s * (A u_{k-1}), starting from the target groups (A = CSC view of A^T)
        a = a_t.T
        for lo in range(0, gt, block):
            u = tgt_agg[lo : lo + block].toarray().T
            for k in range(hops):
                u = a @ u
                if s is not None:
                    u *= s
                out[k, :, lo : lo + block] = src_agg @ u
    return out


def _pruned(matrix: sp.csr_matrix, min_fraction: float) -> sp.csr_matrix:
    pruned = matrix.copy()
    pruned.data[pruned.data < min_fraction] = 0.0
    pruned.eliminate_zeros()
    return pruned


def _long(
    values: np.ndarray, pre_labels, post_labels, pre_col: str, post_col: str, min_weight: float, with_hop: bool
) -> pd.DataFrame:
    """Long form of ``values`` (hops x sources x targets, or sources x targets), heaviest |weight| first
    (within each hop). Labels are sorted, so their positions order ties like the labels themselves."""
    if not with_hop:
        values = values[None]
    keep = (np.abs(values) >= min_weight) & (values != 0)
    k, i, j = np.nonzero(keep)
    weight = values[k, i, j]
    order = np.lexsort((j, i, -np.abs(weight), k))
    k, i, j, weight = k[order], i[order], j[order], weight[order]
    frame = {pre_col: np.asarray(pre_labels)[i], post_col: np.asarray(post_labels)[j]}
    if with_hop:
        frame["hop"] = (k + 1).astype(np.int64)
    frame["weight"] = weight
    return pd.DataFrame(frame)


@inject_client
def fetch_indirect(
    sources=None,
    targets=None,
    hops=2,
    groupby="type",
    normalize="input",
    *,
    signed=False,
    nt_property="predictedNt",
    neurons_only=True,
    min_fraction=0.0,
    min_weight=0.0,
    client=None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Effective (indirect) connectivity from ``sources`` to ``targets`` through 1..``hops`` connections.

    ``sources``/``targets`` take what the other queries take (body ids, type/instance strings,
    NeuronCriteria, a DataFrame with bodyId); None means every neuron. ``groupby`` is 'type',
    'instance', None (per body) or a pair (source side, target side). ``normalize='input'``: each
    target's incoming weights are divided by its total input from the partners included (:Neuron
    bodies, or every segment with ``neurons_only=False``); hop k is the k-th power of that matrix.
    Groups: summed over source neurons, averaged over target neurons (input); averaged over source
    neurons, summed over targets (output). ``signed=True`` multiplies each step by the sign of the
    presynaptic neuron's ``nt_property`` (acetylcholine +1, gaba and glutamate -1, anything else +1;
    a dict transmitter -> sign overrides, key None or "*" for every other value, missing included).
    ``min_fraction`` drops matrix entries below it before the powers (prunes paths through weak
    connections); ``min_weight`` drops result rows whose |weight| is below it.

    Returns ``(per_hop, summed)``: long form ``<prop>_pre, <prop>_post, hop, weight`` (prop = type,
    instance or bodyId) for each hop, and ``<prop>_pre, <prop>_post, weight`` summed over hops 1..k
    (summed before ``min_weight`` applies); both sorted by |weight|, heaviest first.
    """
    try:
        hops = int(hops)
    except (TypeError, ValueError):
        raise QueryError(f"hops must be a positive integer, got {hops!r}") from None
    if hops < 1 or hops > 10:
        raise QueryError(f"hops must be between 1 and 10, got {hops}")
    if normalize not in NORMALIZATIONS:
        raise QueryError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    for name, value in (("min_fraction", min_fraction), ("min_weight", min_weight)):
        if value is None or not np.isfinite(float(value)) or float(value) < 0:
            raise QueryError(f"{name} must be a non-negative number, got {value!r}")
    src_prop, tgt_prop = _sides(groupby)
    graph = graph_matrix(client.store, normalize, neurons_only)
    by_input = normalize == "input"
    src_labels, src_agg = _side(client, graph, sources, src_prop, "sources", mean=not by_input)
    tgt_labels, tgt_agg = _side(client, graph, targets, tgt_prop, "targets", mean=by_input)
    cells = len(src_labels) * len(tgt_labels) * hops
    if cells > MAX_RESULT_CELLS:
        raise QueryError(
            f"sources x targets: {len(src_labels)} x {len(tgt_labels)} groups over {hops} hops is "
            f"{cells:,} values (limit {MAX_RESULT_CELLS:,}); narrow sources or targets, or group by type"
        )
    signs = _signs_vector(client, graph, signed, nt_property)
    matrix = _pruned(graph.inputs, float(min_fraction)) if min_fraction else None
    values = indirect_arrays(graph, src_agg, tgt_agg, hops, signs, matrix)
    pre_col, post_col = f"{src_prop or 'bodyId'}_pre", f"{tgt_prop or 'bodyId'}_post"
    min_weight = float(min_weight)
    per_hop = _long(values, src_labels, tgt_labels, pre_col, post_col, min_weight, True)
    summed = _long(values.sum(axis=0), src_labels, tgt_labels, pre_col, post_col, min_weight, False)
    query = (
        f"fetch_indirect({sources!r}, {targets!r}, hops={hops}, groupby={groupby!r}, normalize={normalize!r}, "
        f"signed={signed!r}, nt_property={nt_property!r}, neurons_only={neurons_only}, "
        f"min_fraction={min_fraction}, min_weight={min_weight})"
    )
    return with_provenance(per_hop, client, query), with_provenance(summed, client, query)


__all__ = [
    "fetch_indirect",
    "graph_matrix",
    "build_matrix",
    "clear_matrix_cache",
    "indirect_arrays",
    "GraphMatrix",
    "DEFAULT_SIGNS",
    "OTHER_SIGN",
]
