"""A column-wise answer's ``data`` written as the JSON endpoint's bytes, with no Python object per row.

The JSON endpoint answers ``{"columns", "data", "debug"}`` as ``orjson.dumps`` with sorted keys
writes the rows (flatprint.server.http.encode_json; neuPrintHTTP's Go encoder sorts map keys too).
For an answer the engine builds column-wise (plain values and synapse property maps:
fetch_synapse_connections' and fetch_synapses' queries) those bytes are written here from Arrow and
NumPy columns instead: the cells' JSON texts in bulk (each run of adjacent number columns by one
``orjson.dumps`` of their NumPy values, each distinct string once by orjson), each synapse map with
its keys in sorted order, the rows joined by one Arrow kernel. The bytes are those ``encode_json`` writes
for the parsed rows (tests/test_cypher_answer_bytes.py), so the endpoint splices them into its
answer without parsing or encoding the rows.

:class:`NotWritten` marks what is not written here (a column type without a bulk text, a ROI named
as a property): the answer is then built as Python rows, as before.
"""

from __future__ import annotations

from bisect import bisect_left
from functools import lru_cache

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from flatprint.cypher.columnar import TextUnsure, double_texts, string_texts, unique_inverse
from flatprint.cypher.values import POINT_CRS


class NotWritten(ValueError):
    """An answer whose JSON bytes this module does not write (its rows are built instead)."""


#: the options of the JSON endpoint's encoder (flatprint.server.http.encode_json; tested equal)
ROW_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def rows_json(columns: list[list]) -> bytes | None:
    """The ``data`` of an answer whose cells are output values (``values.to_output``'s), given
    column by column, as the JSON endpoint writes its rows: orjson writes the rows as tuples (arrays
    in JSON, as lists are), so no list is made per row. None without columns, or when orjson cannot
    write a value (the endpoint's encoder then falls back, as for any rows)."""
    if not columns:
        return None
    try:
        return orjson.dumps(list(zip(*columns)), option=ROW_OPTIONS)
    except orjson.JSONEncodeError:
        return None


@lru_cache(maxsize=4096)  # ROI and property names: a few hundred per store, one orjson call each
def _key(name: str) -> str:
    return orjson.dumps(name).decode() + ":"


#: a Point's map after its coordinates, keys sorted as encode_json writes them
_POINT_TAIL = '],"crs":' + orjson.dumps(POINT_CRS, option=orjson.OPT_SORT_KEYS).decode() + ',"type":"Point"}'


def synapse_map_json(model, removed: tuple[str, ...] | None, columns: dict[str, np.ndarray]) -> pa.Array:
    """Each synapse's property map (or ``apoc.map.removeKeys(node, removed)``) as the JSON endpoint
    writes it: keys sorted, numbers as orjson writes the Python values, NULL properties left out;
    from NumPy columns of the synapses' rows (columnar.map_columns; masked arrays where NULL).

    Maps are written by the properties they hold (a T-bar's NT probabilities, a PSD's none): per
    such pattern one element-wise join of the keys (constants) and the values' texts. A synapse's
    ROI flags depend on its (primary, major) label pair only: per distinct pair its ROI names are
    sorted among the pattern's keys once, as ``"ROI":true`` fragments in the slots between them."""
    drop = set(removed or ())
    count = len(columns["primary_label"])
    if not count:
        return pa.array([], type=pa.string())
    keys = _property_keys(model, drop)
    if len(keys) > 62:  # a pattern is a bit per key of an int64
        raise NotWritten(f"{len(keys)} synapse properties")
    pair_keys, where = _label_pairs(columns)
    names = [_roi_names(model, drop, pair, keys) for pair in pair_keys.tolist()]
    if not {"type", "confidence", "location"} & set(keys):
        return _number_maps(keys, columns, names, where)
    code = np.zeros(count, np.int64)
    for bit, key in enumerate(keys):
        code |= _present(key, columns).astype(np.int64) << bit
    patterns, pattern_of = unique_inverse(code)
    if len(patterns) == 1:
        present = [k for bit, k in enumerate(keys) if int(patterns[0]) >> bit & 1]
        return _maps_of_pattern(present, columns, names, where)
    pieces, order, done = [], np.empty(count, np.int64), 0
    for index, pattern in enumerate(patterns.tolist()):
        rows = np.flatnonzero(pattern_of == index)
        present = [k for bit, k in enumerate(keys) if pattern >> bit & 1]
        pieces.append(_maps_of_pattern(present, {c: v[rows] for c, v in columns.items()}, names, where[rows]))
        order[rows] = done + np.arange(len(rows))
        done += len(rows)
    return pa.concat_arrays(pieces).take(pa.array(order))


def flag_maps(model, removed: tuple[str, ...] | None, columns: dict[str, np.ndarray]) -> pa.Array:
    """:func:`synapse_map_json` of maps that hold ROI flags only (every other property NULL or
    removed: fetch_synapse_connections' PSD maps), from the label columns alone: each label pair's
    map written once (the ROI names sorted), then put in place by one take."""
    drop = set(removed or ())
    keys = _property_keys(model, drop)
    pairs, where = _label_pairs(columns)
    texts = [
        "{" + ",".join(_key(name) + "true" for name in _roi_names(model, drop, pair, keys)) + "}"
        for pair in pairs.tolist()
    ]
    return pa.array(texts, type=pa.string()).take(pa.array(where, type=pa.int64()))


def number_map_dicts(model, removed: tuple[str, ...] | None, columns: dict[str, np.ndarray]) -> list[dict] | None:
    """:func:`synapse_map_json`'s maps as Python dicts (their ``orjson.dumps`` with sorted keys is
    that text) when every property key left is a number (fetch_synapse_connections' maps: NT
    probabilities and ROI flags), else None: for a few maps a dict each costs less than the fixed
    cost of the column-wise kernels (~1 ms for a pair with 3 synapse pairs at scale 0.1)."""
    drop = set(removed or ())
    keys = _property_keys(model, drop)
    if {"type", "confidence", "location"} & set(keys):
        return None
    pairs, where = _label_pairs(columns)
    flags = [dict.fromkeys(_roi_names(model, drop, pair, keys), True) for pair in pairs.tolist()]
    values = []
    for key in keys:
        column = columns[key]
        mask = np.ma.getmaskarray(column).tolist()
        numbers = np.asarray(np.ma.getdata(column), dtype=np.float64).tolist()
        values.append((key, numbers, mask))
    maps = []
    for i, pair in enumerate(where.tolist()):
        one = dict(flags[pair])
        for key, numbers, mask in values:
            if not mask[i]:
                one[key] = numbers[i]
        maps.append(one)
    return maps


def synapse_map_json_of_rows(model, removed, rows: pa.Table, ids: pa.Array) -> pa.Array | None:
    """:func:`synapse_map_json` of the synapses ``ids`` from an Arrow table of their rows (column
    ``id`` and columnar.map_columns), aligned with ``ids``; None when they are not written here."""
    taken = rows.take(pc.index_in(ids, value_set=rows.column("id")))
    columns = {}
    for name in taken.column_names[1:]:
        column = taken.column(name).combine_chunks()
        mask = np.asarray(column.is_null()) if column.null_count else np.zeros(len(column), bool)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            values = column.to_numpy(zero_copy_only=False)
        else:
            values = column.fill_null(0).to_numpy(zero_copy_only=False)
        columns[name] = np.ma.masked_array(values, mask=mask)
    try:
        return synapse_map_json(model, removed, columns)
    except NotWritten:
        return None


def _property_keys(model, drop: set[str]) -> list[str]:
    """The map's property keys (not ROI flags) that ``drop`` leaves, sorted."""
    keys = ["type", "confidence", "location", *model.nt_columns]
    return sorted(k for k in keys if k not in drop)


def _present(key: str, columns: dict[str, np.ndarray]) -> np.ndarray:
    """Per map whether it holds ``key`` (a Point is written whatever its coordinates)."""
    if key == "location":
        return np.ones(len(columns["primary_label"]), bool)
    return ~np.ma.getmaskarray(columns[{"type": "kind", "confidence": "conf"}.get(key, key)])


def _label_pairs(columns: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (primary, major) label pairs as ``primary << 16 | major`` (labels are USMALLINT;
    NULL reads as 0, as the SQL's coalesce) and each map's position among them."""
    pair = np.zeros(len(columns["primary_label"]), np.int64)
    for name, shift in (("primary_label", 16), ("major_label", 0)):
        labels = columns[name]
        plain = np.where(np.ma.getmaskarray(labels), 0, np.ma.getdata(labels).astype(np.int64))
        pair |= plain << shift
    return unique_inverse(pair)


def _roi_names(model, drop: set[str], pair: int, keys: list[str]) -> list[str]:
    """The ROI names flagged in the maps of label pair ``pair`` (both ROI sets), sorted."""
    names = set(model.roi_names_of_label.get(("primary", pair >> 16), []))
    names |= set(model.roi_names_of_label.get(("major", pair & 0xFFFF), []))
    names -= drop
    if names & set(keys):
        raise NotWritten("a ROI named as a synapse property")
    return sorted(names)


def _number_maps(keys: list[str], columns: dict[str, np.ndarray], names: list[list[str]], pairs) -> pa.Array:
    """The maps when every property key left is a number (fetch_synapse_connections' maps: NT
    probabilities and ROI flags), whatever properties each holds, in one join: per key its
    ``,"key":value`` texts (null where NULL; :func:`_keyed_numbers`) and per slot between keys the
    ROI flags of the map's label pair, nulls skipped, the first comma then the opening brace. A key NULL in
    every map is left out; with none left the maps are their label pairs' (written once each)."""
    held = [k for k in keys if not np.ma.getmaskarray(columns[k]).all()]
    slots: list[list[str | None]] = [[] for _ in range(len(held) + 1)]  # per slot, per pair: its flags
    for flagged in names:
        split: list[list[str]] = [[] for _ in slots]
        for name in flagged:
            split[bisect_left(held, name)].append("," + _key(name) + "true")
        for slot, found in zip(slots, split):
            slot.append("".join(found) or None)
    if not held:
        once = pa.array(["{" + "".join(t for t in (s[k] for s in slots) if t)[1:] + "}" for k in range(len(names))])
        return once.take(pa.array(pairs, type=pa.int64()))
    at = pa.array(pairs, type=pa.int64())
    parts: list = []
    for k, key in enumerate(held):
        if any(t is not None for t in slots[k]):
            parts.append(pa.array(slots[k], type=pa.string()).take(at))
        parts.append(_keyed_numbers(key, columns[key]))
    if any(t is not None for t in slots[-1]):
        parts.append(pa.array(slots[-1], type=pa.string()).take(at))
    parts.append("}")
    return _opened(pc.binary_join_element_wise(*parts, "", null_handling="skip"))


def _opened(maps: pa.Array) -> pa.Array:
    """Maps written as ``,...}`` (every part led by a comma) with that first comma made the opening
    brace, in a copy of their bytes (a kernel's search and replace cost ~0.3 ms for a pair's 4 k
    T-bars' maps at scale 1.0); a map holding nothing (``}``) is written ``{}``, its brace inserted
    in that copy (a type's PSDs in no ROI, 68 of DNge104's 3,895 maps at scale 1.0, had sent every
    map through the kernels: 0.6 ms)."""
    offsets = np.frombuffer(maps.buffers()[1], np.int32, len(maps) + 1, maps.offset * 4)
    data = np.frombuffer(maps.buffers()[2], np.uint8)
    starts = offsets[:-1]
    empty = data[starts] != ord(",") if len(maps) and not maps.null_count else None
    if empty is None or (data[starts[empty]] != ord("}")).any() or (offsets[1:][empty] - starts[empty] != 1).any():
        return pc.replace_substring(pc.binary_join_element_wise("{", maps, ""), "{,", "{", max_replacements=1)
    if empty.any():  # a copy joined at those maps by "{" (np.insert took 0.4 ms), each "}" now "{}"
        cuts = [0, *starts[empty].tolist(), len(data)]
        whole = memoryview(maps.buffers()[2])
        data = np.frombuffer(bytearray(b"{".join([whole[a:b] for a, b in zip(cuts, cuts[1:])])), np.uint8)
        offsets = offsets + np.concatenate(([0], np.cumsum(empty))).astype(np.int32)
        data[offsets[:-1][~empty]] = ord("{")
    else:
        data = data.copy()
        data[starts] = ord("{")
    return pa.StringArray.from_buffers(len(maps), pa.py_buffer(offsets), pa.py_buffer(data))


def _keyed_numbers(key: str, values: np.ndarray) -> pa.Array:
    """``,"key":value`` per number of ``values`` (masked where NULL: null there), as orjson writes
    the Python float: one ``orjson.dumps`` of the array, each comma between values replaced by the
    comma and the key (no Python object per value); the texts' offsets follow from the commas'."""
    mask = np.ma.getmaskarray(values)
    numbers = np.asarray(np.ma.getdata(values), dtype=np.float64)
    nulls = bool(mask.any())
    held = numbers[~mask] if nulls else numbers  # only the values held (a PSD holds no NT value)
    if not len(held):
        return pa.nulls(len(numbers), pa.string())
    written = orjson.dumps(held, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]  # the brackets off
    lead = ("," + _key(key)).encode()
    data = lead + written.replace(b",", lead)
    if len(data) >= 2**31:
        raise NotWritten("maps past 2 GiB")
    commas = np.flatnonzero(np.frombuffer(written, np.uint8) == ord(","))
    offsets = np.empty(len(held) + 1, np.int64)
    offsets[0], offsets[-1] = 0, len(data)
    offsets[1:-1] = commas + 1 + np.arange(1, len(commas) + 1) * (len(lead) - 1)
    validity = None
    if nulls:  # a null's text is empty: each row starts where the values held before it end
        offsets = offsets[np.concatenate(([0], np.cumsum(~mask)))]
        validity = pa.py_buffer(np.packbits(~mask, bitorder="little"))
    return pa.StringArray.from_buffers(
        len(numbers), pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data), validity, int(mask.sum())
    )


def _maps_of_pattern(present: list[str], columns: dict[str, np.ndarray], names: list[list[str]], pairs) -> pa.Array:
    """The maps of synapses that hold exactly the property keys ``present`` (sorted), from their
    columns; ``names``: the ROI names of each label pair, ``pairs``: each map's label pair."""
    slots: list[list[str]] = [[] for _ in range(len(present) + 1)]  # per slot, per pair: its text
    for flagged in names:
        split: list[list[str]] = [[] for _ in slots]
        for name in flagged:
            split[bisect_left(present, name)].append(_key(name) + "true")
        for slot, (k, found) in zip(slots, enumerate(split)):
            text = ",".join(found)
            if text and present:  # each text brings the comma between it and the keys around
                text = text + "," if k == 0 else "," + text
            slot.append(text)
    at = pa.array(pairs, type=pa.int64())
    parts: list = ["{"]
    values = _value_texts(present, columns)
    for k, slot in enumerate(slots):
        if any(slot):  # most ROI names sort before every key: the other slots stay empty
            parts.append(pa.array(slot, type=pa.string()).take(at))
        if k < len(present):
            parts += values[k]
    parts.append("}")
    return pc.binary_join_element_wise(*parts, "")


def _value_texts(present: list[str], columns: dict[str, np.ndarray]) -> list[list]:
    """Per key of ``present`` the parts that write it in the maps (each after a comma but the
    first): its key and the value's text per map (constants as strings, texts as Arrow arrays)."""
    count = len(columns["primary_label"])
    lead = [("," if k else "") + _key(key) for k, key in enumerate(present)]
    numeric = [k for k, key in enumerate(present) if key not in ("type", "location")]
    texts: dict[int, list] = {}
    if numeric:
        stacked = [columns[{"confidence": "conf"}.get(present[k], present[k])] for k in numeric]
        values = np.concatenate([np.asarray(np.ma.getdata(c), dtype=np.float64) for c in stacked])
        try:
            written = double_texts(values, None, as_duckdb=False)
        except TextUnsure as exc:  # past 32-bit string offsets
            raise NotWritten(str(exc)) from None
        for n, k in enumerate(numeric):
            texts[k] = [lead[k], written.slice(n * count, count)]
    for k, key in enumerate(present):
        if key == "type":
            strings = pa.array(np.ma.getdata(columns["kind"]), type=pa.string())
            texts[k] = [lead[k], string_texts(strings)]
        elif key == "location":
            axes = [columns[axis] for axis in ("x", "y", "z")]
            if any(np.ma.getmaskarray(a).any() for a in axes):  # a NULL coordinate is written null
                coords = [
                    pc.cast(pa.array(np.ma.getdata(a).astype(np.int64), mask=np.ma.getmaskarray(a)), pa.string())
                    for a in axes
                ]
                xyz = pc.binary_join_element_wise(*[pc.fill_null(c, "null") for c in coords], ",")
            else:
                xyz = number_run_texts([pa.array(np.asarray(a, dtype=np.int64)) for a in axes])
            texts[k] = [lead[k] + '{"coordinates":[', xyz, _POINT_TAIL]
    return [texts[k] for k in range(len(present))]


def cell_texts(column: pa.Array) -> pa.Array:
    """The JSON text of each value of a final plain column (columnar.arrow_column's types), 'null'
    for null, as orjson writes the Python value; NotWritten for other types."""
    kind = column.type
    if pa.types.is_integer(kind):
        texts = pc.cast(column, pa.string())
    elif pa.types.is_floating(kind):
        mask = np.asarray(column.is_null()) if column.null_count else None
        values = column.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        texts = double_texts(values, mask, as_duckdb=False)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        texts = string_texts(column.cast(pa.string()))
    elif pa.types.is_boolean(kind):
        texts = pc.if_else(column, "true", "false")
    elif pa.types.is_null(kind):
        return pa.array(["null"] * len(column), type=pa.string())
    else:
        raise NotWritten(f"a column of {kind}")
    return pc.fill_null(texts, "null")


def data_json(columns: list[pa.Array], maps: set[int], count: int) -> bytes:
    """The ``data`` of an answer (``count`` rows) as JSON bytes: :func:`data_json_parts` joined."""
    return b"".join(data_json_parts(columns, maps, count))


def data_json_parts(columns: list[pa.Array], maps: set[int], count: int) -> tuple:
    """The ``data`` of an answer (``count`` rows) as JSON bytes ``[[cell, ...], ...]`` in parts (bytes
    and a memoryview of the joined rows) for the endpoint to join into its answer: one copy of the
    rows instead of two (a pair's rows are ~2 MB: each fresh copy's pages faulted cost ~1 ms of CPU).
    The cells of plain ``columns`` are written here, those at the indices in ``maps`` are JSON texts
    already (null: null).

    Each run of adjacent number columns is one text per row (:func:`_run_texts`), other columns'
    cells by :func:`cell_texts`. The rows are then one element-wise join with no separator: each
    run's texts bring the separator after them (slices of one ``orjson.dumps``, no copy), other
    texts are followed by a constant ``,``, the row's last by ``],[`` (the next row's opening
    bracket). The joined rows' characters, back to back, are the answer but its first ``[[`` and,
    unless a run ends the rows (its dump's own ``]]`` ends the last), the last ``],[`` to close."""
    if not count:
        return (b"[]",)
    if not columns:
        return (b"[" + b",".join([b"[]"] * count) + b"]",)
    groups: list[tuple[bool, object]] = []  # (a number run, its columns | a text column)
    for index, column in enumerate(columns):
        kind = _number_kind(column) if index not in maps else None
        if kind is not None and groups and groups[-1][0] and _number_kind(groups[-1][1][0]) == kind:
            groups[-1][1].append(column)
        elif kind is not None:
            groups.append((True, [column]))
        elif index in maps:
            groups.append((False, pc.fill_null(column, "null") if column.null_count else column))
        else:
            groups.append((False, cell_texts(column)))
    parts: list = []
    for number, (is_run, group) in enumerate(groups):
        last = number == len(groups) - 1
        if is_run:
            parts.append(_run_texts(group, last))
        else:
            parts += [group, "],[" if last else ","]
    try:
        rows = pc.binary_join_element_wise(*parts, "") if len(parts) > 1 else parts[0]
    except (pa.ArrowInvalid, pa.ArrowCapacityError) as exc:  # past 32-bit string offsets
        raise NotWritten(str(exc)) from None
    if len(rows) != count or rows.null_count:
        raise NotWritten("rows not joined")  # never expected: every text is set
    offsets = np.frombuffer(rows.buffers()[1], np.int32, count + 1, rows.offset * 4)
    whole = memoryview(rows.buffers()[2])
    if groups[-1][0]:
        return (b"[[", whole[offsets[0] : offsets[-1]])
    return (b"[[", whole[offsets[0] : offsets[-1] - 3], b"]]")


def _number_kind(column: pa.Array) -> str | None:
    """'integer' or 'double' for a column a run of numbers holds (:func:`_run_texts`), else None."""
    if pa.types.is_integer(column.type) and not column.null_count:
        return "integer"
    if pa.types.is_floating(column.type):
        return "double"
    return None


def _run_matrix(columns: list[pa.Array]) -> np.ndarray:
    """The values of number columns of one kind row by row (int64, or float64 with nulls as NaN)."""
    if pa.types.is_integer(columns[0].type):
        matrix = np.column_stack([c.to_numpy(zero_copy_only=False).astype(np.int64, copy=False) for c in columns])
    else:
        matrix = np.column_stack([c.fill_null(np.nan).to_numpy(zero_copy_only=False) for c in columns])
        matrix = matrix.astype(np.float64, copy=False)
    return matrix


def _run_texts(columns: list[pa.Array], last: bool) -> pa.Array:
    """Per row the cells of number columns of one kind (:func:`number_run_texts`' values) followed
    by the separator after them in data_json's rows: ``1,2,3,`` or, ``last``, ``1,2,3],[`` (the
    last row ``1,2,3]]``), as slices of one ``orjson.dumps`` (no copy of the texts).

    Not last: the values dumped flat, every ``width``-th comma ending a row (the dump's closing
    bracket made a comma for the last row). Last: the values dumped as rows, each row's text from
    after its opening bracket to the next row's (``],[`` included), the last one to the dump's end."""
    count, width = len(columns[0]), len(columns)
    matrix = _run_matrix(columns)
    if last:
        written = orjson.dumps(matrix, option=orjson.OPT_SERIALIZE_NUMPY)
        opens = np.flatnonzero(np.frombuffer(written, np.uint8) == ord("["))[2:]  # the rows' but the first
        offsets = np.concatenate([[2], opens + 1, [len(written)]])
    else:
        written = orjson.dumps(matrix.reshape(-1), option=orjson.OPT_SERIALIZE_NUMPY)[:-1] + b","
        ends = np.flatnonzero(np.frombuffer(written, np.uint8) == ord(","))[width - 1 :: width]
        offsets = np.concatenate([[1], ends + 1])
    if len(written) >= 2**31:
        raise NotWritten("an answer past 2 GiB")
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(written))


def number_run_texts(columns: list[pa.Array]) -> pa.Array:
    """Per row the cells of number columns of one kind (integers without nulls, or doubles: NaN,
    infinities and nulls written null, as encode_json writes them) as one text ``"1,2,3"``.

    One ``orjson.dumps`` of the values row by row writes them all; the commas that end a row are
    dropped and the rows' texts are slices of what is left (no Python object per value)."""
    count, width = len(columns[0]), len(columns)
    matrix = _run_matrix(columns)
    written = np.frombuffer(orjson.dumps(matrix.reshape(-1), option=orjson.OPT_SERIALIZE_NUMPY), np.uint8)
    inner = written[1:-1]
    ends = np.flatnonzero(inner == ord(","))[width - 1 :: width]  # the commas between rows
    keep = np.ones(len(inner), bool)
    keep[ends] = False
    offsets = np.concatenate([[0], ends + 1 - np.arange(1, len(ends) + 1), [len(inner) - len(ends)]])
    if offsets[-1] >= 2**31:
        raise NotWritten("an answer past 2 GiB")
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(inner[keep]))
