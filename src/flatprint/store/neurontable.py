"""The store's :Neuron rows in RAM: ``neurons`` (without roiInfo) and ``neuron_rois`` as arrays.

``fetch_neurons`` by type reads a few rows of ``neurons`` and their per-ROI rows; through SQL each
call pays for planning and for scanning row groups (~50-90 ms at full scale), and many neurons pay
for the roiInfo JSON text (~5.7 kB a neuron). :func:`neuron_table` reads the two tables once per
store and process and keeps them (bounded, least recently used first out, as
flatprint.store.neurongraph keeps its graph):

* ``columns``: every column of ``neurons`` but roiInfo, as one Arrow table in bodyId order (what a
  ``SELECT`` of those columns returns; text as large_string), ``body_ids`` its bodyId column;
* an exact-value index of ``type`` and ``instance``: value -> the positions holding it (sorted), and
  the distinct values as an Arrow array (a regex is matched against them, not against every row);
* ``neuron_rois`` per neuron: ``roi_offsets`` (n + 1), ``roi_code`` (into ``roi_names``, which are
  sorted as SQL sorts text, so a neuron's rows are in ROI name order), and the counts ``pre``,
  ``post``, ``downstream`` in the narrowest integer type that holds them. ``upstream`` and
  ``synweight`` are kept only when they differ from ``post`` and ``downstream + post`` (ingest
  writes them so; checked while reading).

Full scale (166,700 neurons, 13.3 M neuron x ROI rows): ~63 MB of columns and ~9 bytes an ROI row
(~120 MB); :attr:`NeuronTable.nbytes` says exactly. Once fetch_neurons has asked for ROI lists, each
neuron's inputRois and outputRois names are kept as tuples too (8 bytes a name: up to ~210 MB more
at full scale, ~20 MB at scale 0.1).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from operator import itemgetter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flatprint.errors import StoreError
from flatprint.store.cache import BuildOnceCache, store_key
from flatprint.store.sql import sql_literal

#: The tables the neuron table is read from.
NEURON_TABLES = ("neurons", "neuron_rois")
#: Store formats whose roiInfo text is exactly the body's neuron_rois rows (keys pre, post,
#: downstream, upstream, synweight; flatprint.ingest.roi_counts.segment_rois writes both in one pass).
ROI_INFO_FORMATS = frozenset({4, 5})
ROI_COUNTS = ("pre", "post", "downstream", "upstream", "synweight")
INDEXED = ("type", "instance")  # columns with an exact-value index
KEEP_TABLES = 2
KEEP_ROI_SUMS = 4  # ROI sets whose per-neuron sums a table keeps
BATCH_ROWS = 1 << 20  # neuron_rois is read in batches of this many rows (bounded transient memory)


@dataclass
class ValueIndex:
    """Positions of each distinct value of a column: ``positions[offsets[k]:offsets[k + 1]]`` hold
    ``values[k]`` (NULLs are not indexed)."""

    codes: dict
    offsets: np.ndarray
    positions: np.ndarray
    values: pa.Array | None = None  # the distinct values, value k at index k
    line_breaks: bool = True  # whether a value holds a newline (unknown: assumed)
    row_codes: np.ndarray | None = None  # per row the number of its value (-1: NULL)
    python_values: list | None = None  # the distinct values as Python objects, then None (code -1)

    def lookup(self, values) -> np.ndarray:
        """Sorted positions holding any of ``values``."""
        return self.lookup_codes([self.codes[v] for v in values if v in self.codes])

    def lookup_codes(self, found) -> np.ndarray:
        """Sorted positions holding any of the values numbered ``found``."""
        if not len(found):
            return np.zeros(0, dtype=np.int64)
        parts = [self.positions[self.offsets[k] : self.offsets[k + 1]] for k in found]
        out = np.concatenate(parts).astype(np.int64, copy=False)
        return np.unique(out) if len(found) > 1 else out

    def regex_lookup(self, cursor, pattern: str) -> np.ndarray:
        """Sorted positions whose value DuckDB's ``regexp_full_match`` matches with ``pattern``: the
        same function the SQL path applies to every row, here applied once per distinct value.
        Without newlines in the values, Arrow's RE2 (the library DuckDB uses) anchored at both ends
        answers alike (RE2's newline options then change nothing) in ~1/10 of DuckDB's call; a
        pattern RE2 rejects goes to DuckDB, which names it."""
        if not self.line_breaks:
            try:
                hits = pc.match_substring_regex(self.values, pattern=f"^(?:{pattern})$")
            except pa.ArrowInvalid:
                pass
            else:
                return self.lookup_codes(np.flatnonzero(np.asarray(hits.fill_null(False))).tolist())
        numbered = pa.table({"v": self.values, "k": pa.array(np.arange(len(self.values), dtype=np.int64))})
        hits = cursor.from_arrow(numbered).filter(f"regexp_full_match(v, {sql_literal(pattern)})").project("k")
        return self.lookup_codes(hits.fetchnumpy()["k"].tolist())

    def values_at(self, positions: np.ndarray) -> list:
        """The column's values at ``positions`` (None: NULL), as ``take(positions).to_pylist()`` gives
        them: a row's value picked by its number from the distinct values, made Python objects once
        (a take of a text column and its ``to_pylist`` cost ~0.25 us a row; this ~0.05)."""
        codes = self.row_codes[positions].tolist()
        if len(codes) < 2:
            return [self.python_values[code] for code in codes]
        return list(itemgetter(*codes)(self.python_values))

    @property
    def nbytes(self) -> int:
        codes = self.row_codes.nbytes if self.row_codes is not None else 0
        return self.offsets.nbytes + self.positions.nbytes + codes


@dataclass
class NeuronTable:
    """``neurons`` and ``neuron_rois`` of one store in RAM (module docstring). Built once."""

    body_ids: np.ndarray
    columns: pa.Table  # integer columns as int64
    float_columns: dict  # integer columns holding NULLs -> as float64
    column_types: dict  # column -> DuckDB type name (as stored)
    indexes: dict  # column -> ValueIndex
    roi_offsets: np.ndarray
    roi_code: np.ndarray
    roi_names: list
    roi_counts: dict  # pre, post, downstream (and upstream, synweight when not derived) -> array
    roi_json_rank: np.ndarray | None  # per code, its rank in roiInfo's key order (None: name order)
    build_seconds: float = 0.0
    # ROI name set -> per neuron its counts summed over those ROIs (see primary_sums)
    _roi_sums: dict = field(default_factory=dict, init=False, repr=False)
    # count column -> (per neuron its ROI names as a tuple, their bytes) (see roi_name_tuples)
    _roi_tuples: dict = field(default_factory=dict, init=False, repr=False)
    # name -> per neuron its number of neuron_rois rows whose names sort up to it (see rows_up_to)
    _rows_up_to: dict = field(default_factory=dict, init=False, repr=False)
    # (first bodyId, shift, bucket starts, binary-search steps) of :meth:`search`, made on first use
    _buckets: tuple | None = field(default=None, init=False, repr=False)

    @property
    def nbytes(self) -> int:
        arrays = [self.body_ids, self.roi_offsets, self.roi_code, *self.roi_counts.values()]
        arrays += [a for sums in list(self._roi_sums.values()) for a in sums.values()]
        arrays += list(self._rows_up_to.values()) + ([self._buckets[2]] if self._buckets else [])
        tuples = sum(size for _, size in list(self._roi_tuples.values()))
        return (
            sum(a.nbytes for a in arrays) + tuples + self.columns.nbytes + sum(i.nbytes for i in self.indexes.values())
        )

    def rows(self, names: list[str], positions: np.ndarray) -> pa.Table:
        """The ``names`` columns at ``positions``, integers already as frame_from_arrow casts them
        (int64; float64 where the selection holds a NULL)."""
        taken = self.columns.select(names).take(pa.array(positions, pa.int64()))
        for index, name in enumerate(names):
            if name in self.float_columns and taken.column(index).null_count:
                taken = taken.set_column(index, name, self.float_columns[name].take(pa.array(positions, pa.int64())))
        return taken

    def positions(self, bodies) -> np.ndarray:
        """Positions of ``bodies`` (sorted, all neurons of this table)."""
        return np.searchsorted(self.body_ids, np.asarray(bodies, dtype=np.int64))

    def search(self, bodies: np.ndarray) -> np.ndarray:
        """``np.searchsorted(self.body_ids, bodies)`` for int64 ``bodies`` in any order. The bodyIds
        are cut into buckets of 2**shift consecutive ids (about one neuron each); a body's bucket gives
        the few candidates, which a vectorized binary search of a few steps narrows. A plain binary
        search over 166,700 neurons misses the CPU cache at each of its last ~8 steps: ~0.4 ms for
        neuprint-python's 1,433 partner ids at scale 1.0, ~0.2 ms this way."""
        if self._buckets is None:
            self._buckets = _buckets(self.body_ids)
        if not self._buckets or len(bodies) < 256:  # fewer: the plain search costs less
            return np.searchsorted(self.body_ids, bodies)
        first, shift, starts, steps = self._buckets
        ids = self.body_ids
        bucket = (np.minimum(np.maximum(bodies, first), ids[-1]) - first) >> shift  # np.clip: ~100 us more
        low, high = starts[bucket], starts[bucket + 1]
        for _ in range(steps):
            middle = (low + high) >> 1
            right = ids[np.minimum(middle, len(ids) - 1)] < bodies
            right &= middle < high
            low = np.where(right, middle + 1, low)
            high = np.where(right, high, middle)
        return low

    def roi_rows(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the neuron_rois row indices of ``positions`` in order, each row's index into ``positions``)."""
        starts = self.roi_offsets[positions]
        counts = self.roi_offsets[positions + 1] - starts
        total = int(counts.sum())
        units = np.repeat(np.arange(len(positions), dtype=np.int64), counts)
        if not total:
            return np.zeros(0, dtype=np.int64), units
        shift = np.repeat(starts - (np.cumsum(counts) - counts), counts)
        return shift + np.arange(total, dtype=np.int64), units

    def neurons_of_rows(self, rows: np.ndarray) -> np.ndarray:
        """The position of the neuron each of the neuron_rois ``rows`` belongs to."""
        return np.searchsorted(self.roi_offsets, rows, side="right") - 1

    def roi_rows_of(self, roi: str) -> np.ndarray:
        """The neuron_rois rows of the ROI named ``roi`` (none for a name it lacks), ascending."""
        try:
            code = self.roi_names.index(roi)
        except ValueError:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.roi_code == code)

    def primary_sums(self, rois) -> dict[str, np.ndarray]:
        """Per neuron, each of ROI_COUNTS summed over its neuron_rois rows in ``rois`` (int64): what
        fetch_neurons subtracts from a neuron's totals for its NotPrimary row. Kept per ROI set (the
        primary ROIs, in practice: ~7 MB at full scale)."""
        key = frozenset(rois)
        sums = self._roi_sums.get(key)
        if sums is None:
            inside = np.array([name in key for name in self.roi_names], dtype=bool)[self.roi_code]
            sums = {c: self._sums_per_neuron(values, inside) for c, values in self.roi_counts.items()}
            if "upstream" not in sums:  # derived (see counts)
                sums["upstream"] = sums["post"]
                sums["synweight"] = sums["downstream"] + sums["post"]
            if len(self._roi_sums) >= KEEP_ROI_SUMS:
                self._roi_sums.clear()
            self._roi_sums[key] = sums
        return sums

    def rows_up_to(self, name: str) -> np.ndarray:
        """Per neuron, how many of its neuron_rois rows have ROI names that sort up to ``name`` (in
        Python's order): where fetch_neurons places its NotPrimary row. Kept per name."""
        counted = self._rows_up_to.get(name)
        if counted is None:
            up_to = np.array([roi <= name for roi in self.roi_names], dtype=bool)[self.roi_code]
            counted = self._sums_per_neuron(up_to, np.ones(len(up_to), dtype=bool))
            if len(self._rows_up_to) >= KEEP_ROI_SUMS:
                self._rows_up_to.clear()
            self._rows_up_to[name] = counted
        return counted

    def roi_name_tuples(self, column: str) -> np.ndarray:
        """Per neuron, the names of its ROIs with a nonzero ``column`` count (one of ROI_COUNTS), in
        name order, as a tuple in an object array: fetch_neurons' inputRois (post) and outputRois
        (pre). Built on first use and kept (8 bytes a name and ~56 a neuron; at scale 0.1 copying
        9,351 neurons' tuples into lists cost 3.5 ms, cutting their names from their rows 10.8)."""
        entry = self._roi_tuples.get(column)
        if entry is None:
            if column in self.roi_counts:
                values = self.roi_counts[column]
            else:
                values = self.counts(column, np.arange(len(self.roi_code)))
            keep = values > 0
            names = np.array(self.roi_names, dtype=object)[self.roi_code[keep]].tolist()
            before = np.zeros(len(keep) + 1, dtype=np.int64)  # per row, the kept rows before it
            np.cumsum(keep, out=before[1:])
            cuts = before[self.roi_offsets].tolist()
            tuples = (tuple(names[a:b]) for a, b in zip(cuts[:-1], cuts[1:]))
            kept = np.fromiter(tuples, dtype=object, count=len(self.body_ids))
            entry = self._roi_tuples[column] = kept, 8 * (len(names) + len(kept)) + 56 * len(kept)
        return entry[0]

    def _sums_per_neuron(self, values: np.ndarray, inside: np.ndarray) -> np.ndarray:
        """Per neuron, the sum of ``values`` (one per neuron_rois row) over its rows where ``inside``."""
        if not len(values):
            return np.zeros(len(self.body_ids), dtype=np.int64)
        starts = self.roi_offsets[:-1]
        sums = np.add.reduceat(np.where(inside, values, 0), np.minimum(starts, len(values) - 1), dtype=np.int64)
        sums[self.roi_offsets[1:] == starts] = 0  # (reduceat gives a neuron without rows its next row)
        return sums

    def narrow_counts(self, names: list[str], rows: np.ndarray) -> dict[str, np.ndarray]:
        """The ``names`` counts (of ROI_COUNTS) of the neuron_rois ``rows`` in their stored integer
        types (a derived upstream is post's array itself, a derived synweight int64)."""
        taken = {name: self.roi_counts[name][rows] for name in names if name in self.roi_counts}
        if "upstream" in names and "upstream" not in taken:
            taken["upstream"] = taken["post"] if "post" in taken else self.roi_counts["post"][rows]
        return {name: taken[name] if name in taken else self.counts(name, rows) for name in names}

    def counts(self, name: str, rows: np.ndarray) -> np.ndarray:
        """The ``name`` count (one of ROI_COUNTS) of the neuron_rois ``rows``, as int64."""
        if name in self.roi_counts:
            return self.roi_counts[name][rows].astype(np.int64)
        post = self.roi_counts["post"][rows].astype(np.int64)
        if name == "upstream":
            return post
        return self.roi_counts["downstream"][rows].astype(np.int64) + post


def _narrow(values: np.ndarray) -> np.ndarray:
    if not len(values):
        return values.astype(np.uint8)
    low, high = int(values.min()), int(values.max())
    for dtype in (np.uint8, np.uint16, np.uint32) if low >= 0 else (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return values.astype(dtype)
    return values.astype(np.int64)


def _buckets(body_ids: np.ndarray) -> tuple:
    """NeuronTable.search's buckets; () where they would not pay (few ids, ids near the int64 limits,
    a bucket of more than 64 ids)."""
    if len(body_ids) < 256 or body_ids[0] < -(2**61) or body_ids[-1] >= 2**61:
        return ()
    first = int(body_ids[0])
    shift = (int(body_ids[-1] - first) // len(body_ids)).bit_length()
    count = (int(body_ids[-1] - first) >> shift) + 2
    starts = np.searchsorted(body_ids, first + (np.arange(count, dtype=np.int64) << shift))
    largest = int(np.diff(starts).max())
    return (first, shift, starts, largest.bit_length()) if largest <= 64 else ()


def _value_index(column: pa.ChunkedArray) -> ValueIndex:
    encoded = pc.dictionary_encode(column.combine_chunks())
    indices = encoded.indices
    valid = np.asarray(indices.is_valid())
    codes = indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    positions = np.flatnonzero(valid)
    order = np.argsort(codes[positions], kind="stable")
    positions = positions[order].astype(np.int32 if len(codes) < 2**31 else np.int64)
    offsets = np.zeros(len(encoded.dictionary) + 1, dtype=np.int64)
    np.cumsum(np.bincount(codes[valid], minlength=len(encoded.dictionary)), out=offsets[1:])
    values = encoded.dictionary
    text = pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
    line_breaks = not text or pc.any(pc.match_substring(values, "\n")).as_py() is True
    row_codes = np.where(valid, codes, -1).astype(np.int32 if len(values) < 2**31 else np.int64)
    python_values = values.to_pylist()
    return ValueIndex(
        {v: k for k, v in enumerate(python_values)},
        offsets,
        positions,
        values,
        line_breaks,
        row_codes,
        [*python_values, None],
    )


def _cast_once(columns: pa.Table) -> tuple[pa.Table, dict]:
    """The integer columns as int64, and the ones holding NULLs also as float64 (the two types
    flatprint.query.results.frame_from_arrow casts a selection's integers to, by whether it holds a
    NULL), text as large_string (what pandas' ``str`` arrays hold): done once here, not per query."""
    as_float = {}
    for index, name in enumerate(columns.column_names):
        column = columns.column(index)
        if pa.types.is_string(column.type):
            columns = columns.set_column(index, name, column.cast(pa.large_string()))
        if not pa.types.is_integer(column.type):
            continue
        if column.null_count:
            as_float[name] = column.cast(pa.float64())
        if column.type != pa.int64():
            columns = columns.set_column(index, name, column.cast(pa.int64()))
    return columns, as_float


def build_neuron_table(store) -> NeuronTable:
    """Read ``neurons`` (but roiInfo) and ``neuron_rois`` into a :class:`NeuronTable`."""
    missing = [t for t in NEURON_TABLES if not store.has_table(t)]
    if missing:
        raise StoreError(f"{store.path}: no neuron table without the tables {missing} (re-ingest the store)")
    started = time.perf_counter()
    cur = store.cursor()
    types = {
        name: str(kind)
        for name, kind in cur.execute("SELECT column_name, column_type FROM (DESCRIBE neurons)").fetchall()
        if name != "roiInfo"
    }
    select = ", ".join('"' + name.replace('"', '""') + '"' for name in types)
    columns = cur.sql(f"SELECT {select} FROM neurons").to_arrow_table()  # stored in bodyId order
    body_ids = columns.column("bodyId").to_numpy().astype(np.int64)
    if len(body_ids) > 1 and not np.all(body_ids[1:] > body_ids[:-1]):
        order = np.argsort(body_ids, kind="stable")
        columns, body_ids = columns.take(pa.array(order)), body_ids[order]
        if not np.all(body_ids[1:] > body_ids[:-1]):
            raise StoreError(f"{store.path}: neurons holds a bodyId twice; re-ingest the store")
    columns = columns.combine_chunks()  # one chunk a column: a take from many chunks pays per chunk
    columns, as_float = _cast_once(columns)
    indexes = {name: _value_index(columns.column(name)) for name in INDEXED if name in types}

    names = [r[0] for r in cur.execute("SELECT DISTINCT roi FROM roi_map ORDER BY roi").fetchall()]
    enum = "ENUM(" + ", ".join("'" + n.replace("'", "''") + "'" for n in names) + ")"
    code_type = np.uint8 if len(names) <= 256 else np.uint16
    total = cur.execute("SELECT count(*) FROM neuron_rois").fetchall()[0][0]
    reader = cur.sql(
        f"SELECT bodyId, CAST(roi AS {enum}) AS roi, {', '.join(ROI_COUNTS)} FROM neuron_rois"
    ).to_arrow_reader(BATCH_ROWS)  # stored in (bodyId, roi) order; checked below
    found = np.empty(total, dtype=np.int32 if len(body_ids) < 2**31 else np.int64)  # each row's neuron
    roi_code = np.empty(total, dtype=code_type)
    parts: dict[str, list] = {c: [] for c in ROI_COUNTS}
    derived = True
    at = 0
    for batch in reader:
        n = batch.num_rows
        bodies = batch.column("bodyId").to_numpy()
        # rows come in runs of one body: look up each run's body once
        starts = np.flatnonzero(np.concatenate(([True], bodies[1:] != bodies[:-1]))) if n else np.zeros(0, np.int64)
        where = np.searchsorted(body_ids, bodies[starts])
        if n and (where.max() >= len(body_ids) or not np.array_equal(body_ids[where], bodies[starts])):
            raise StoreError(f"{store.path}: neuron_rois holds a body that is not in neurons; re-ingest the store")
        found[at : at + n] = np.repeat(where, np.diff(np.append(starts, n)))
        roi = batch.column("roi")
        # ENUM values arrive as a dictionary over the ENUM's names (normally all of them, in that order)
        dictionary = roi.dictionary.to_pylist()
        indices = roi.indices.to_numpy(zero_copy_only=False)
        if dictionary != names:
            indices = np.array([names.index(v) for v in dictionary], dtype=code_type)[indices]
        roi_code[at : at + n] = indices
        for c in ROI_COUNTS:
            if batch.column(c).null_count:
                raise StoreError(f"{store.path}: neuron_rois.{c} holds NULLs; re-ingest the store")
        values = {c: batch.column(c).to_numpy() for c in ROI_COUNTS}
        derived = derived and bool(
            np.array_equal(values["upstream"], values["post"])
            and np.array_equal(values["synweight"], values["downstream"] + values["post"])
        )
        for c in ROI_COUNTS:
            parts[c].append(_narrow(values[c]))
        at += n
    if at != total:
        raise StoreError(f"{store.path}: neuron_rois changed while it was read; restart the process")
    kept = ("pre", "post", "downstream") if derived else ROI_COUNTS
    roi_counts = {}
    for c in kept:
        dtype = np.result_type(*parts[c]) if parts[c] else np.uint8
        roi_counts[c] = np.concatenate(parts[c]).astype(dtype, copy=False) if parts[c] else np.zeros(0, dtype)
        parts[c] = None
    del parts
    step = found[1:].astype(np.int64) - found[:-1]
    if not np.all((step > 0) | ((step == 0) & (roi_code[1:] > roi_code[:-1]))):
        order = np.lexsort((roi_code, found))
        found, roi_code = found[order], roi_code[order]
        roi_counts = {c: v[order] for c, v in roi_counts.items()}
    del step
    roi_offsets = np.zeros(len(body_ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(found, minlength=len(body_ids)), out=roi_offsets[1:])
    # roiInfo lists a body's ROIs in the order ingest sorted its JSON pieces ('"name":{...'), which is
    # the names' order unless an escaped name sorts differently
    escaped = [json.dumps(n, ensure_ascii=False)[1:] for n in names]
    json_rank = np.empty(len(names), dtype=np.int64)
    json_rank[sorted(range(len(names)), key=escaped.__getitem__)] = np.arange(len(names))
    return NeuronTable(
        body_ids=body_ids,
        columns=columns,
        float_columns=as_float,
        column_types=types,
        indexes=indexes,
        roi_offsets=roi_offsets,
        roi_code=roi_code,
        roi_names=names,
        roi_counts=roi_counts,
        roi_json_rank=None if np.array_equal(json_rank, np.arange(len(names))) else json_rank,
        build_seconds=time.perf_counter() - started,
    )


_tables: BuildOnceCache[NeuronTable] = BuildOnceCache(max_entries=lambda: KEEP_TABLES)


def neuron_table(store) -> NeuronTable:
    """The store's neuron table, built on first use and kept (stores are read-only)."""
    return _tables.get(store_key(store), lambda: build_neuron_table(store))


def kept_neuron_table(store) -> NeuronTable | None:
    """The store's neuron table if it is built already, else None (nothing is built)."""
    return _tables.peek(store_key(store))


def clear_neuron_table_cache() -> None:
    """Drop every kept neuron table (the next query rebuilds its store's)."""
    _tables.clear()


def has_neuron_table(store) -> bool:
    """Whether the store has the tables, in a format whose roiInfo the table can rebuild."""
    return all(store.has_table(t) for t in NEURON_TABLES) and store.info.get("storeFormat") in ROI_INFO_FORMATS
