"""Answers built column-wise: SQL renders every row as JSON text, Python never touches a row.

Used for a MATCH whose RETURN renders entirely in SQL (plain values, and whole Synapse nodes or
``apoc.map.removeKeys(s, [...])`` of them: the shape of fetch_synapses and
fetch_synapse_connections). DuckDB writes each synapse's property map as JSON text (ROI flags from
two small label tables), pyarrow puts the map texts in their rows, DuckDB joins each row's cells
into one JSON array, and orjson parses the rows in blocks (the memory budget is checked between
blocks). The same table, with maps as JSON text, is the Arrow endpoint's answer.

Numbers keep their JSON types: DuckDB writes a DOUBLE in its shortest round-trip form ("1.0" stays
a float, 0.87175071239471435 as Python's repr has it); NaN and infinity become null, as in
``values.to_output``.
"""

from __future__ import annotations

import gc

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from flatprint.cypher import sqlgen
from flatprint.cypher.values import POINT_CRS

BLOCK_ROWS = 16384  # rows parsed between two checks of the deadline and the memory budget


def _flag_table(model, roi_set: str, removed: set[str]) -> pa.Table:
    """label -> ``"ROI":true,...`` for one ROI set (what GraphModel.roi_flags adds to a synapse)."""
    labels, fragments = [], []
    for (kind, label), names in model.roi_names_of_label.items():
        names = [n for n in names if n not in removed]
        if kind == roi_set and names:
            labels.append(int(label))
            fragments.append(",".join(orjson.dumps(n).decode() + ":true" for n in names))
    return pa.table({"label": pa.array(labels, type=pa.int64()), "frag": pa.array(fragments, type=pa.string())})


def map_columns(model, removed: tuple[str, ...] | None) -> list[str]:
    """The synapses columns a synapse's map (or ``apoc.map.removeKeys(s, removed)``) is made of."""
    drop = set(removed or ())
    columns = [c for key, c in (("type", "kind"), ("confidence", "conf")) if key not in drop]
    columns += ["x", "y", "z"] if "location" not in drop else []
    return columns + [n for n in model.nt_columns if n not in drop] + ["primary_label", "major_label"]


def synapse_maps_json(
    model, run_arrow, ids: pa.Array, removed: tuple[str, ...] | None, rows: pa.Table | None = None
) -> pa.Table:
    """(id, j): each synapse's property map as JSON text, as ``values.to_output`` of the node (or of
    ``apoc.map.removeKeys(node, removed)``) writes it; nulls left out. ``rows``: the synapses' columns
    (``id`` and :func:`map_columns`) fetched already, else they are read from the synapses table."""
    drop = set(removed or ())
    tables = {"primary_flags": _flag_table(model, "primary", drop), "major_flags": _flag_table(model, "major", drop)}
    if rows is not None:  # the answer's own columns: no second scan of synapses
        tables["map_rows"] = rows
        sql = sqlgen.synapse_maps_json_sql(model.nt_columns, drop)
    else:
        ids = ids.cast(pa.int64())
        tables["ids_table"] = pa.table({"id": ids})
        sql = sqlgen.synapse_maps_json_sql(model.nt_columns, drop, ids.to_numpy())
    return run_arrow(sql, tables)


class TextUnsure(ValueError):
    """A value whose JSON text :func:`synapse_map_texts` does not write as DuckDB does (then DuckDB writes it)."""


#: doubles written by Arrow's cast below this magnitude only (checked against DuckDB); beyond, DuckDB
BIGGEST_TEXT = 1e6


#: magnitudes orjson writes with an exponent where DuckDB writes decimals ("0.000002874877736758208")
DECIMAL_ONLY = (1e-6, 1e-5)


def double_texts(values: np.ndarray, mask: np.ndarray | None = None, as_duckdb: bool = True) -> pa.Array:
    """JSON texts of doubles exactly as DuckDB's ``to_json(v::DOUBLE)`` writes them (what
    :func:`synapse_maps_json` puts in a map), null where ``mask`` is set: the shortest round-trip
    digits, "0.000002874877736758208", "6.811773687331879e-7", "1.0"; non-finite values are 'null'.

    orjson writes the same texts for every magnitude below BIGGEST_TEXT but DECIMAL_ONLY (tested
    against DuckDB over every distinct value of the test store), ~4x faster than Arrow's cast: one
    ``orjson.dumps`` of the array, its separators dropped and the texts' offsets taken from their
    positions, with no Python object per value. Values in DECIMAL_ONLY are written by Arrow's cast
    (:func:`_cast_double_texts`). Raises TextUnsure for magnitudes from BIGGEST_TEXT up (where the
    notations were not compared).

    ``as_duckdb`` False: orjson's own texts throughout, as the JSON endpoint writes a Python float
    (``orjson.dumps`` of a NumPy array writes each double as of the Python float; no magnitude
    is unsure)."""
    values = np.asarray(values, dtype=np.float64)
    masked = mask is not None and bool(mask.any())
    if not as_duckdb and not masked and len(values):  # orjson writes NaN and infinities null itself
        return _orjson_texts(values)
    finite = np.isfinite(values)
    if masked:
        finite &= ~mask
    magnitude = np.abs(np.where(finite, values, 0.0))
    if as_duckdb and magnitude.max(initial=0.0) >= BIGGEST_TEXT:
        raise TextUnsure(float(magnitude.max()))
    if not len(values):
        return pa.array([], type=pa.string())
    texts = _orjson_texts(np.where(finite, values, 0.0))
    decimal = finite & (magnitude >= DECIMAL_ONLY[0]) & (magnitude < DECIMAL_ONLY[1]) & as_duckdb
    odd = ~finite & ~mask if masked else ~finite
    if decimal.any() or odd.any() or masked:
        # one take puts the other texts in place: decimals by Arrow's cast, 'null', and null
        at = np.flatnonzero(decimal)
        order = np.arange(len(values))
        order[at] = len(values) + np.arange(len(at))
        order[odd] = len(values) + len(at)
        if masked:
            order[mask] = len(values) + len(at) + 1
        others = [_cast_double_texts(values[at]), pa.array(["null", None], type=pa.string())]
        texts = pa.concat_arrays([texts, *others]).take(pa.array(order))
    return texts


def _orjson_texts(values: np.ndarray) -> pa.Array:
    """The texts of doubles by one ``orjson.dumps`` of the array, its separators dropped and the
    texts' offsets taken from their positions (no Python object per value)."""
    written = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]  # the array's brackets off
    if len(written) >= 2**31:  # past 32-bit string offsets: DuckDB writes them
        raise TextUnsure(f"{len(values)} numbers")
    separators = np.flatnonzero(np.frombuffer(written, np.uint8) == ord(","))
    offsets = np.concatenate([[0], separators - np.arange(len(separators)), [len(written) - len(separators)]])
    texts = written.replace(b",", b"")  # bytes.replace: a fraction of NumPy's boolean indexing
    return pa.StringArray.from_buffers(len(values), pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(texts))


def _cast_double_texts(values: np.ndarray) -> pa.Array:
    """JSON texts of finite doubles below BIGGEST_TEXT by Arrow's cast to string, which writes them as
    DuckDB does except for whole numbers ("1" for "1.0"): those are written as integers plus ".0"."""
    texts = pc.cast(pa.array(values), pa.string())
    whole = values == np.trunc(values)
    if whole.any():
        integers = np.where(whole, values, 0.0).astype(np.int64)
        written = pc.binary_join_element_wise(pc.cast(pa.array(integers), pa.string()), ".0", "")
        written = pc.if_else(pa.array(whole & np.signbit(values) & (values == 0)), "-0.0", written)
        texts = pc.if_else(pa.array(whole), written, texts)
    return texts


def synapse_map_texts(model, removed: tuple[str, ...] | None, columns: dict[str, np.ndarray]) -> pa.Array:
    """Each synapse's property map as JSON text, exactly as :func:`synapse_maps_json` has DuckDB write
    it, from NumPy columns of the synapses' rows (:func:`map_columns`; masked arrays where NULL).

    Built in a fixed number of Arrow calls whatever the number of properties: every numeric
    property's texts in one cast (:func:`double_texts`) over the columns stacked, each after its key;
    the parts of all maps (null where a value is NULL or a ROI set has no flag: left out, as the
    SQL's ``concat_ws`` does) laid out map by map, the nulls dropped, and each map's parts joined
    by one ``binary_join`` over list offsets. Each ROI fragment is written once per label. Raises
    TextUnsure where DuckDB's text is not known to be reproduced."""
    drop = set(removed or ())
    count = len(columns["primary_label"])
    if not count:
        return pa.array([], type=pa.string())
    bare = _only_flags(model, drop, columns)
    if bare is not None and 2 * bare.sum() > count:  # mostly PSDs: their maps by label pair
        return _with_bare_maps(model, removed, columns, bare)
    parts: list[pa.Array] = []  # per part a string array over the maps, null where the part is left out
    if "type" not in drop:
        parts.append(_keyed_strings("type", columns["kind"]))
    numeric = [(key, column) for key, column in (("confidence", "conf"),) if key not in drop]
    location = "location" not in drop
    numeric += [(name, name) for name in model.nt_columns if name not in drop]
    if location:
        coords = []
        for axis in ("x", "y", "z"):
            values = columns[axis]
            mask = np.ma.getmaskarray(values)
            text = pc.cast(pa.array(np.ma.getdata(values).astype(np.int64), mask=mask), pa.string())
            coords.append(pc.fill_null(text, "null"))
        crs = orjson.dumps(POINT_CRS).decode()
        xyz = pc.binary_join_element_wise(*coords, ",")
        point = pc.binary_join_element_wise('"location":{"type":"Point","coordinates":[', xyz, f'],"crs":{crs}}}', "")
    if numeric:
        values = np.concatenate([np.asarray(np.ma.getdata(columns[c]), dtype=np.float64) for _, c in numeric])
        mask = np.concatenate([np.ma.getmaskarray(columns[c]) for _, c in numeric])
        keys = pa.array([orjson.dumps(key).decode() + ":" for key, _ in numeric], type=pa.string())
        keyed = pc.binary_join_element_wise(
            keys.take(pa.array(np.repeat(np.arange(len(numeric)), count))), double_texts(values, mask), ""
        )
        blocks = [keyed.slice(k * count, count) for k in range(len(numeric))]
        if "confidence" not in drop:
            parts.append(blocks.pop(0))
        if location:
            parts.append(point)
        parts += blocks
    elif location:
        parts.append(point)
    parts.append(_fragments(model, "primary", drop, columns["primary_label"]))
    parts.append(_fragments(model, "major", drop, columns["major_label"]))
    return pc.binary_join_element_wise("{", join_parts(parts), "}", "")


def _only_flags(model, drop: set[str], columns: dict[str, np.ndarray]) -> np.ndarray | None:
    """Per map whether it holds ROI flags only (every other property left out or NULL: a PSD's map
    in fetch_synapse_connections' ``apoc.map.removeKeys(s, ['location', 'confidence', 'type'])``);
    None when some property is never NULL."""
    if not {"type", "location", "confidence"} <= drop:
        return None
    bare = np.ones(len(columns["primary_label"]), bool)
    for name in model.nt_columns:
        if name not in drop:
            bare &= np.ma.getmaskarray(columns[name])
    return bare


SORT_UNIQUE_ROWS = 16_384  # from here on np.unique is as fast or faster (~8 % at 200 k values)


def unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` of integers (inverse flat, int64) by one stable
    sort: NumPy 2's took 0.42-0.48 ms for 4-5 k label pairs of a pair's synapses, this 0.06-0.08."""
    values = np.asarray(values).reshape(-1)
    if len(values) > SORT_UNIQUE_ROWS:
        unique, inverse = np.unique(values, return_inverse=True)
        return unique, inverse.reshape(-1).astype(np.int64, copy=False)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    first = np.empty(len(values), bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    inverse = np.empty(len(values), np.int64)
    inverse[order] = np.cumsum(first) - 1
    return ordered[first], inverse


def _with_bare_maps(model, removed, columns: dict[str, np.ndarray], bare: np.ndarray) -> pa.Array:
    """synapse_map_texts where the maps ``bare`` hold ROI flags only: those written once per label
    pair, the others in full."""
    labels = {}
    for name in ("primary_label", "major_label"):
        plain = np.ma.getdata(columns[name]).astype(np.int64)
        labels[name] = np.where(np.ma.getmaskarray(columns[name]), 0, plain)[bare]
    # one key per label pair (labels are USMALLINT): np.unique over pairs (axis=1) sorts far slower
    keys, where = unique_inverse((labels["primary_label"] << 16) | labels["major_label"])
    drop = set(removed or ())
    flags = [
        _fragments(model, roi_set, drop, part) for roi_set, part in (("primary", keys >> 16), ("major", keys & 0xFFFF))
    ]
    written = pc.binary_join_element_wise("{", join_parts(flags), "}", "")
    full = np.flatnonzero(~bare)
    others = synapse_map_texts(model, removed, {c: v[full] for c, v in columns.items()})
    # the maps in their order: positions in [bare label pairs' texts, the others' texts]
    order = np.empty(len(bare), np.int64)
    order[bare] = where.reshape(-1)
    order[full] = len(written) + np.arange(len(full))
    return pa.concat_arrays([written, others]).take(pa.array(order))


def join_parts(parts: list[pa.Array]) -> pa.Array:
    """Per position the non-null values of ``parts`` (string arrays of one length, each value
    starting with a '"': keys and flags) joined by ","; "" where all are null. One
    ``binary_join_element_wise`` skipping nulls after a first part "" that is never null (pyarrow 26
    drops the rows whose parts are all null under null_handling="skip"), then that part's "," trimmed."""
    return pc.ascii_ltrim(pc.binary_join_element_wise("", *parts, ",", null_handling="skip"), characters=",")


def _keyed_strings(key: str, values) -> pa.Array:
    """``"key":"value"`` per string of ``values`` (a NumPy column, masked where NULL), null where NULL."""
    mask = np.ma.getmaskarray(values)
    strings = pa.array(np.ma.getdata(values), type=pa.string(), mask=mask if mask.any() else None)
    return pc.binary_join_element_wise(orjson.dumps(key).decode() + ":", string_texts(strings), "")


def string_texts(values: pa.Array) -> pa.Array:
    """The JSON text of each string of ``values`` (null where null): each distinct one written once."""
    encoded = values.dictionary_encode() if not pa.types.is_dictionary(values.type) else values
    texts = pa.array([orjson.dumps(v).decode() for v in encoded.dictionary.to_pylist()], type=pa.string())
    return texts.take(encoded.indices)


def _fragments(model, roi_set: str, drop: set[str], labels) -> pa.Array:
    """Per synapse the ``"ROI":true,...`` text of its ``roi_set`` label (null for none), as
    :func:`_flag_table` has it (a NULL label reads as label 0, as the SQL's coalesce)."""
    plain = np.ma.getdata(labels).astype(np.int64)
    plain = np.where(np.ma.getmaskarray(labels), 0, plain)
    unique, inverse = unique_inverse(plain)
    texts = []
    for label in unique.tolist():
        names = [n for n in model.roi_names_of_label.get((roi_set, label), []) if n not in drop]
        texts.append(",".join(orjson.dumps(n).decode() + ":true" for n in names) or None)
    return pa.array(texts, type=pa.string()).take(pa.array(inverse.reshape(-1), type=pa.int64()))


def arrow_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A plain column as the Arrow endpoint answers it: 64-bit integers and doubles, NaN as null."""
    kind = column.type
    if pa.types.is_integer(kind):
        return column.cast(pa.int64())
    if pa.types.is_decimal(kind):
        try:
            return column.cast(pa.int64()) if kind.scale == 0 else column.cast(pa.float64())
        except pa.ArrowInvalid:
            return column.cast(pa.float64())
    if pa.types.is_floating(kind):
        column = column.cast(pa.float64())
        return pc.if_else(pc.is_finite(column), column, pa.scalar(None, pa.float64()))
    return column


# Answers of at most this many cells skip the JSON statement: their values straight from Arrow cost
# less than the statement up to ~10^5 cells (fetch_synapses of a type: 4,584 rows x 7, 20 % less CPU);
# beyond, one orjson parse of DuckDB's row texts beats building the rows from Arrow's lists.
DIRECT_CELLS = 65536


def _plain_python(kind: pa.DataType) -> bool:
    """Arrow types whose ``to_pylist`` values equal what ``to_json`` + ``orjson.loads`` give."""
    return (
        pa.types.is_int64(kind)
        or pa.types.is_float64(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_null(kind)
    )


def build(table: pa.Table, names: list[str], maps: dict[int, pa.Table], run_arrow, check_rows):
    """Rows (lists, as JSON parses them) and the Arrow answer of a query result ``table`` whose
    column i is a plain value, or (i in ``maps``) a synapse id to be replaced by its map's JSON
    (``maps[i]``: an (id, j) table)."""
    columns = []
    for index in range(table.num_columns):
        column = table.column(index)
        if index in maps:
            found = maps[index]
            positions = pc.index_in(column.cast(pa.int64()), value_set=found.column("id"))
            column = found.column("j").take(positions)
        else:
            column = arrow_column(column)  # doubles: to_json writes the shortest round-trip form
        columns.append(column)
    answer = pa.table(columns, names=[f"c{i}" for i in range(len(columns))])
    arrow_names = list(names)
    if len(set(arrow_names)) != len(arrow_names):  # as CypherResult.to_arrow names duplicates
        arrow_names = [n if arrow_names.count(n) == 1 else f"{n}_{i}" for i, n in enumerate(arrow_names)]
    arrow = answer.rename_columns(arrow_names) if columns else pa.table({})
    if not columns or answer.num_rows == 0:
        return [[] for _ in range(answer.num_rows)], arrow
    if answer.num_rows * len(columns) <= DIRECT_CELLS and all(
        index in maps or _plain_python(column.type) for index, column in enumerate(columns)
    ):
        # a small answer (a lookup of a few neurons, a type's synapses): the values straight from
        # Arrow, as parsing their JSON would give them, without a second statement (its fixed cost
        # is ~2 ms of CPU); each map column's texts in one parse
        values = [
            orjson.loads("[" + ",".join("null" if text is None else text for text in column.to_pylist()) + "]")
            if index in maps
            else column.to_pylist()
            for index, column in enumerate(columns)
        ]
        check_rows(answer.num_rows)
        return [list(row) for row in zip(*values)], arrow
    sql = sqlgen.json_rows_sql([index in maps for index in range(len(columns))])
    texts = run_arrow(sql, {"answer": answer}).column("row")
    rows: list[list] = []
    # Parsing creates millions of containers, each of which would count towards a run of Python's
    # cyclic garbage collector (which then walks every row so far): off while parsing, it is 10x faster.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for start in range(0, len(texts), BLOCK_ROWS):
            block = texts.slice(start, BLOCK_ROWS).to_pylist()
            rows.extend(orjson.loads("[" + ",".join(block) + "]"))
            check_rows(len(block))
    finally:
        if collecting:
            gc.enable()
    return rows, arrow


def build_aligned(columns: list, names: list[str], maps: set[int], check_rows):
    """Rows (lists, as parsing the JSON answer gives them: :func:`python_rows`) and the Arrow answer
    of final columns: plain values (made :func:`arrow_column`'s types here) and, at the indices in
    ``maps``, each row's map as JSON text."""
    columns = [column if index in maps else arrow_column(column) for index, column in enumerate(columns)]
    columns = [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in columns]
    answer = pa.table(columns, names=[f"c{i}" for i in range(len(columns))])
    arrow = answer.rename_columns(_arrow_names(names)) if columns else pa.table({})
    return python_rows(columns, maps, check_rows, answer.num_rows), arrow


def python_rows(columns: list[pa.Array], maps: set[int], check_rows, count: int) -> list[list]:
    """The ``count`` rows of final columns (plain values; JSON texts at the indices in ``maps``) as
    lists, equal to what parsing the answer's JSON gives, with no Python code per row: per block of
    BLOCK_ROWS rows each plain column's values from NumPy's ``tolist``, each text column joined by
    Arrow and parsed by one orjson call, and ``zip`` laying them out in rows (the deadline and the
    memory budget checked between blocks)."""
    if not columns:
        return [[] for _ in range(count)]
    rows: list[list] = []
    # rows and maps are containers the cyclic garbage collector, off meanwhile, would walk on each run
    collecting = gc.isenabled()
    gc.disable()
    try:
        for start in range(0, count, BLOCK_ROWS):
            block = [column.slice(start, BLOCK_ROWS) for column in columns]
            values = [parse_texts(c) if index in maps else python_values(c) for index, c in enumerate(block)]
            rows.extend(map(list, zip(*values)))
            check_rows(len(block[0]))
    finally:
        if collecting:
            gc.enable()
    return rows


def parse_texts(texts: pa.Array) -> list:
    """The values of JSON texts (null: None) by one orjson parse of their joined text (Arrow joins them)."""
    joined = pa.LargeListArray.from_arrays(
        pa.array([0, len(texts)], type=pa.int64()), texts.fill_null("null").cast(pa.large_string())
    )
    text = [pa.scalar(t, pa.large_string()) for t in ("[", ",", "]", "")]
    whole = pc.binary_join_element_wise(text[0], pc.binary_join(joined, text[1]), text[2], text[3])
    return orjson.loads(memoryview(whole[0].as_buffer()))


def python_values(column: pa.Array) -> list:
    """A final plain column's values as ``to_pylist`` gives them, by NumPy (integers, doubles,
    booleans) or once per distinct string."""
    kind = column.type
    if pa.types.is_int64(kind) or pa.types.is_float64(kind) or pa.types.is_boolean(kind):
        if not column.null_count:
            return column.to_numpy(zero_copy_only=False).tolist()
        values = column.fill_null(False if pa.types.is_boolean(kind) else 0).to_numpy(zero_copy_only=False)
        values = values.astype(object)
        values[np.asarray(column.is_null())] = None
        return values.tolist()
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        encoded = column.dictionary_encode()
        strings = np.array(encoded.dictionary.to_pylist() + [None], dtype=object)
        return strings[np.asarray(encoded.indices.fill_null(len(encoded.dictionary)))].tolist()
    return column.to_pylist()


def _arrow_names(names: list[str]) -> list[str]:
    """The Arrow answer's column names: duplicates told apart as CypherResult.to_arrow does."""
    arrow_names = list(names)
    if len(set(arrow_names)) != len(arrow_names):
        arrow_names = [n if arrow_names.count(n) == 1 else f"{n}_{i}" for i, n in enumerate(arrow_names)]
    return arrow_names
