"""Neuron tables: fetch_neurons and fetch_custom_neurons."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

import numpy as np
import pandas as pd
import pyarrow as pa

from flatprint.errors import QueryError
from flatprint.query.client import inject_client
from flatprint.query.criteria import IsNull, NeuronCriteria, NotNull, copy_as_neuroncriteria, warn_unmatched
from flatprint.query.results import (
    JsonDict,
    arrow_convertible,
    frame_of_block,
    frame_of_columns,
    json_dicts,
    object_array,
    pandas_values,
    paused_gc,
    text_values,
    with_provenance,
)
from flatprint.store.neurontable import ROI_COUNTS, NeuronTable, has_neuron_table, neuron_table
from flatprint.store.sql import id_ranges_sql, quote_ident

CORE_NEURON_COLS = [
    "bodyId",
    "instance",
    "type",
    "pre",
    "post",
    "downstream",
    "upstream",
    "mito",
    "size",
    "status",
    "cropped",
    "statusLabel",
    "cellBodyFiber",
    "somaRadius",
    "somaLocation",
    "inputRois",
    "outputRois",
    "roiInfo",
]
_COUNT_COLS = ["pre", "post", "downstream", "upstream", "mito", "soma"]
# The count columns of segment_rois / neuron_rois (the others are 0 per ROI, as in roiInfo).
ROI_COUNT_COLS = frozenset({"pre", "post", "downstream", "upstream", "synweight"})
ROI_INFO_PARSE_LIMIT = 1000  # up to this many neurons, per-ROI counts come from their roiInfo JSON
# :Neuron criteria answer from the store's neurons in RAM (flatprint.store.neurontable) when it has them;
# False: always through SQL (the path old stores and :Segment criteria take).
USE_NEURON_TABLE = True


def compile_columns(client, user_columns=(), core_columns=CORE_NEURON_COLS, core_only=False) -> list[str]:
    """Columns to return: the user's (existing ones, in their order), or core first then the rest sorted."""
    rois = set(client.all_rois)
    keys = [k for k in client.neuron_keys if k not in rois]
    if user_columns:
        return [k for k in user_columns if k in keys]
    columns = [k for k in core_columns if k in keys]
    if not core_only:
        columns += [k for k in sorted(keys) if k not in columns]
    return columns


def neuron_rows(client, criteria, columns: list[str]) -> pd.DataFrame:
    """The raw property rows of the matching segments, ordered by bodyId."""
    select = ", ".join(f"n.{quote_ident(c)} AS {quote_ident(c)}" for c in columns)
    sql = f"SELECT {select} FROM {criteria.table(client)} n WHERE {criteria.where(client, 'n')} ORDER BY n.bodyId"
    return client.frame(sql)


@inject_client
def fetch_neurons(criteria=None, *, omit_rois=False, returned_columns="all", roi_info=True, client=None):
    """Properties and per-ROI synapse counts of the neurons matching ``criteria``.

    Returns ``(neuron_df, roi_counts_df)`` (only ``neuron_df`` with ``omit_rois=True``), shaped as
    neuprint-python 0.6.4 returns them: roiInfo parsed, inputRois/outputRois lists, and per-ROI
    counts with a ``NotPrimary`` row for synapses outside every primary ROI.

    ``roi_info=False`` (flatprint's own option) leaves the ``roiInfo`` column out of ``neuron_df``
    and keeps everything else: its maps hold the numbers ``roi_counts_df`` has, as one Python dict
    per neuron and ROI, and for many neurons building them is most of the call.
    """
    if not isinstance(roi_info, bool):
        raise QueryError(f"roi_info must be True or False, got {roi_info!r}")
    criteria = copy_as_neuroncriteria(criteria, client)
    if returned_columns == "all":
        columns = compile_columns(client)
    elif returned_columns == "core":
        columns = compile_columns(client, core_only=True)
    elif isinstance(returned_columns, Iterable) and not isinstance(returned_columns, str):
        columns = compile_columns(client, user_columns=list(returned_columns))
    else:
        raise QueryError(f"returned_columns must be 'all', 'core' or a list, got {returned_columns!r}")
    if not columns:
        raise QueryError("returned_columns: none of the requested columns exist")
    if omit_rois:
        columns = [c for c in columns if c != "roiInfo"]
    elif "roiInfo" not in columns:
        columns.append("roiInfo")
    table = in_ram_table(client, criteria, columns)
    if table is not None:
        neuron_df, roi_counts_df = neurons_from_table(table, client, criteria, columns, omit_rois, roi_info)
    else:
        neuron_df = neuron_rows(client, criteria, columns)
        if neuron_df.empty:
            warn_unmatched(criteria, client)
        # Few neurons: unpack their roiInfo (already fetched); many: read segment_rois in one vectorised
        # pass (a scan of that table costs ~10 ms at scale 0.1 however few bodies it returns).
        neuron_df, roi_counts_df = process_neuron_df(
            neuron_df,
            client,
            omit_rois,
            from_store=len(neuron_df) > ROI_INFO_PARSE_LIMIT,
            neurons_only=criteria.label == "Neuron",
            roi_info=roi_info,
        )
    query = f"fetch_neurons({criteria!r}, omit_rois={omit_rois}, returned_columns={returned_columns!r}"
    query += ")" if roi_info else ", roi_info=False)"
    if omit_rois:
        return with_provenance(neuron_df, client, query)
    return with_provenance(neuron_df, client, query), with_provenance(roi_counts_df, client, query)


def in_ram_table(client, criteria, columns: list[str]) -> NeuronTable | None:
    """The store's neuron table when it can answer: :Neuron criteria, a store that has it, and
    columns that frame_from_arrow converts (else None: the SQL path)."""
    if not (USE_NEURON_TABLE and criteria.label == "Neuron" and has_neuron_table(client.store)):
        return None
    table = neuron_table(client.store)
    kinds = table.column_types
    if not all(c == "roiInfo" or (c in kinds and arrow_convertible(kinds[c])) for c in columns):
        return None
    return table


# every NeuronCriteria argument at its default (a :Neuron criteria that selects every neuron)
_DEFAULT_CRITERIA_STATE = NeuronCriteria()._state()
# the arguments matching_positions answers from the table in RAM (the rest go through SQL)
_IN_RAM_ARGUMENTS = {
    "type": [],
    "instance": [],
    "regex": False,
    "rois": set(),
    "inputRois": set(),
    "outputRois": set(),
    "roi_req": "all",
    "min_roi_inputs": 1,
    "min_roi_outputs": 1,
}


def matching_positions(table: NeuronTable, client, criteria) -> np.ndarray:
    """Sorted positions in ``table`` of the neurons matching ``criteria``: type/instance values (exact,
    regex, NULL) and ROI requirements from the table in RAM, anything else from SQL (only bodyIds)."""
    rest = copy.copy(criteria)
    for name, default in _IN_RAM_ARGUMENTS.items():
        setattr(rest, name, copy.copy(default))
    if rest._state() == _DEFAULT_CRITERIA_STATE:
        found = positions_in_ram(table, client, criteria)
        if found is not None:
            return found
    sql = f"SELECT n.bodyId FROM {criteria.table(client)} n WHERE {criteria.where(client, 'n')} ORDER BY n.bodyId"
    ids = np.asarray(client.cursor().sql(sql).fetchnumpy()["bodyId"], dtype=np.int64)
    positions = table.positions(ids)
    if len(ids) and (positions.max() >= len(table.body_ids) or not np.array_equal(table.body_ids[positions], ids)):
        raise QueryError("the store's neurons changed since they were read into RAM; restart the process")
    return positions


def positions_in_ram(table: NeuronTable, client, criteria) -> np.ndarray | None:
    """matching_positions for criteria of type, instance and ROIs only, as NeuronCriteria.where's SQL
    selects: type OR instance (each: any of its exact values, one regex over them, or NULL), AND the
    ROI requirements over the neurons' neuron_rois rows (the rows of segment_rois that ``where``
    reads). None when SQL must answer: a property the table lacks or a value SQL rejects (it names
    the problem)."""
    available = set(client.neuron_keys)
    given = [name for name in ("type", "instance") if getattr(criteria, name)]
    if not all(name in table.indexes and name in available for name in given):
        return None
    if given and not criteria.regex and not criteria.rois:
        if all(isinstance(v, str) for name in given for v in getattr(criteria, name)):
            found = [table.indexes[name].lookup(getattr(criteria, name)) for name in given]
            return found[0] if len(found) == 1 else np.union1d(*found)
    selected = None
    for name in given:
        mask = value_mask(table, client, name, getattr(criteria, name), criteria.regex)
        if mask is None:
            return None
        selected = mask if selected is None else selected | mask
    if criteria.rois:
        criteria.check_roi_names(client)
        rois = roi_mask(table, criteria)
        selected = rois if selected is None else selected & rois
    if selected is None:
        return np.arange(len(table.body_ids), dtype=np.int64)
    return np.flatnonzero(selected)


def value_mask(table: NeuronTable, client, name: str, values: list, regex: bool) -> np.ndarray | None:
    """Per position: whether its ``name`` matches ``values`` as criteria._values_expr's SQL does;
    None for values SQL rejects (NotNull with others, a regex that is no string or does not compile)."""
    index = table.indexes[name]
    column = table.columns.column(name)
    if any(v is NotNull for v in values):
        return np.asarray(column.is_valid()) if len(values) == 1 else None
    mask = np.zeros(len(table.body_ids), dtype=bool)
    concrete = [v for v in values if v is not None and v is not IsNull]
    if concrete and regex:
        if index.values is None or not all(isinstance(v, str) and compiles(v) for v in concrete):
            return None
        pattern = concrete[0] if len(concrete) == 1 else "|".join(f"({v})" for v in concrete)
        mask[index.regex_lookup(client.cursor(), pattern)] = True
    elif concrete:
        mask[index.lookup(concrete)] = True
    if len(concrete) < len(values):  # None or IsNull: the missing values match
        mask |= np.asarray(column.is_null())
    return mask


def compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def roi_mask(table: NeuronTable, criteria) -> np.ndarray:
    """Per position: whether the neuron meets the criteria's ROI requirements (_roi_expr's SQL): a
    neuron_rois row in every ROI of ``rois`` (any one with roi_req='any'), and rows of at least
    min_roi_inputs post (min_roi_outputs pre) sites in all (any) of inputRois (outputRois)."""
    n = len(table.body_ids)
    every = criteria.roi_req == "all"
    plain = []
    for roi in sorted(criteria.rois):
        mask = np.zeros(n, dtype=bool)
        mask[table.neurons_of_rows(table.roi_rows_of(roi))] = True
        plain.append(mask)
    selected = np.logical_and.reduce(plain) if every else np.logical_or.reduce(plain)
    for rois, column, minimum in (
        (criteria.inputRois, "post", criteria.min_roi_inputs),
        (criteria.outputRois, "pre", criteria.min_roi_outputs),
    ):
        if not rois:
            continue
        rows = np.concatenate([table.roi_rows_of(roi) for roi in sorted(rois)])
        rows = rows[table.counts(column, rows) >= max(minimum, 1)]
        found = np.bincount(table.neurons_of_rows(rows), minlength=n)
        selected &= found >= (len(rois) if every else 1)
    return selected


def neurons_from_table(
    table: NeuronTable, client, criteria, columns: list[str], omit_rois: bool, roi_info: bool = True
):
    """fetch_neurons' frames from the neuron table in RAM: the rows SQL would return (columns as
    frame_from_arrow converts them), roiInfo maps rebuilt from the neurons' neuron_rois rows (the
    rows ingest wrote the roiInfo text from), and the per-ROI counts from the same rows. The frames
    are assembled once from their columns (inserting three columns into a built frame cost ~1 ms)."""
    positions = matching_positions(table, client, criteria)
    if not len(positions):
        warn_unmatched(criteria, client, stacklevel=5)
    plain = [c for c in columns if c != "roiInfo"]
    arrow = table.rows(plain, positions)
    values = dict(zip(plain, (pandas_values(column) for column in arrow.columns)))
    if omit_rois:
        return frame_of_columns(plain, list(values.values()), len(positions)), None
    rows, units = table.roi_rows(positions)
    count_cols = [c for c in _COUNT_COLS if c in values]
    # (in their stored narrow types: widened only where written into the frame)
    needed = [c for c in dict.fromkeys(["pre", "post", *count_cols]) if c in ROI_COUNTS]
    roi_rows = RoiRows(
        units,
        table.roi_code[rows],
        table.roi_names,
        table.narrow_counts(needed, rows),
        np.diff(table.roi_offsets)[positions],
        table.rows_up_to("NotPrimary")[positions],
    )
    ids = table.body_ids[positions]
    with paused_gc(len(rows) > GC_PAUSE_ROWS):  # millions of new dicts, lists and their items
        if roi_info:
            values["roiInfo"] = roi_info_maps(roi_rows, len(positions), table, rows)
        for name, column in (("inputRois", "post"), ("outputRois", "pre")):  # (each call its own lists)
            values[name] = object_array(list(map(list, table.roi_name_tuples(column)[positions].tolist())))
    if not len(positions):  # as pandas types an empty list set as a column (the SQL path's frame)
        for name in ("roiInfo", "inputRois", "outputRois"):
            values[name] = np.zeros(0, dtype=np.float64)
    names = list(dict.fromkeys([*columns, "inputRois", "outputRois"]))
    if not roi_info:
        names.remove("roiInfo")
    neuron_df = frame_of_columns(names, [values[name] for name in names], len(positions))
    totals = {c: count_totals(arrow.column(c), values[c]) for c in count_cols}
    # NotPrimary: the totals minus the neurons' sums over primary ROIs (kept per neuron; mito and
    # soma have no per-ROI counts)
    sums = table.primary_sums(client.primary_rois)
    not_primary = {c: totals[c] - sums[c][positions] if c in sums else totals[c] for c in count_cols}
    return neuron_df, roi_counts_frame(roi_rows, ids, totals, count_cols, client.primary_rois, not_primary)


def count_totals(column: pa.ChunkedArray, converted: np.ndarray) -> np.ndarray:
    """A count column's values as int64, NULL as 0: from Arrow when numeric, else from its
    converted values (frame_from_arrow's)."""
    if pa.types.is_integer(column.type):
        return np.asarray(column.fill_null(0).to_numpy()).astype(np.int64)
    if pa.types.is_floating(column.type):  # NULL and NaN become 0, as fillna makes them
        values = np.asarray(column.to_numpy())  # (NULLs arrive as NaN)
        return np.where(np.isnan(values), 0, values).astype(np.int64)
    return pd.Series(converted).fillna(0).to_numpy().astype(np.int64)


def roi_info_maps(rows: RoiRows, units: int, table: NeuronTable, store_rows: np.ndarray) -> np.ndarray:
    """Each unit's roiInfo as a JsonDict (ROI -> pre, post, downstream, upstream, synweight), equal
    key by key and in order to the stored JSON text parsed, as an object array."""
    order = None
    if table.roi_json_rank is not None and len(rows.units):
        order = np.lexsort((table.roi_json_rank[rows.codes], rows.units))
    pick = (lambda a: a) if order is None else (lambda a: a[order])
    names = np.asarray(rows.names, dtype=object)[pick(rows.codes)].tolist()
    if "upstream" in table.roi_counts:  # stored apart: they differ from post and downstream + post
        counts = [pick(table.counts(c, store_rows)).tolist() for c in ROI_COUNTS]
        inner = [
            {"pre": a, "post": b, "downstream": c, "upstream": d, "synweight": e} for a, b, c, d, e in zip(*counts)
        ]
    else:  # upstream is post (the same int objects), synweight downstream + post: two fewer conversions
        pre, post, down = (pick(table.roi_counts[c][store_rows]) for c in ("pre", "post", "downstream"))
        synweight = (down.astype(np.int64) + post).tolist()
        pre, post, down = pre.tolist(), post.tolist(), down.tolist()
        inner = [
            {"pre": a, "post": b, "downstream": c, "upstream": b, "synweight": e}
            for a, b, c, e in zip(pre, post, down, synweight)
        ]
    lengths = np.diff(np.searchsorted(rows.units, np.arange(units + 1))).tolist()
    items = zip(names, inner)  # consumed unit by unit: no slices copied
    out = np.empty(units, dtype=object)
    out[:] = [JsonDict(islice(items, k)) for k in lengths]
    return out


GC_PAUSE_ROWS = 100_000  # from this many ROI rows, roiInfo maps and ROI lists are built with the GC paused


@inject_client
def fetch_custom_neurons(q, *, client=None):
    """Like fetch_neurons, but the neurons come from your own Cypher query (which must ``RETURN n``)."""
    results = client.fetch_custom(q)
    if len(results) == 0:
        neuron_df = pd.DataFrame([], columns=compile_columns(client), dtype=object)
        return neuron_df, pd.DataFrame([], columns=["bodyId", "roi", "pre", "post"])
    if "n" not in results.columns:
        raise QueryError("fetch_custom_neurons: the query must RETURN n (a whole :Neuron node)")
    neuron_df = pd.DataFrame(results["n"].tolist())
    rois = set(client.all_rois)
    neuron_df = neuron_df[[c for c in neuron_df.columns if c not in rois]]
    for col in neuron_df.columns:  # Points come back as maps; neuprint-python keeps their coordinates
        if neuron_df[col].dtype == object and any(isinstance(x, dict) for x in neuron_df[col]):
            neuron_df[col] = [x.get("coordinates", x) if isinstance(x, dict) else x for x in neuron_df[col]]
    core = [c for c in CORE_NEURON_COLS if c in neuron_df.columns]
    neuron_df = neuron_df[core + sorted(set(neuron_df.columns) - set(core))]
    return process_neuron_df(neuron_df, client, omit_rois=False)


def process_neuron_df(
    neuron_df: pd.DataFrame,
    client,
    omit_rois: bool,
    from_store: bool = False,
    neurons_only: bool = False,
    roi_info: bool = True,
):
    """Parse roiInfo into inputRois/outputRois and a per-ROI counts table (with NotPrimary rows).

    ``from_store``: read the per-ROI rows from ``segment_rois`` (``neurons_only``, every row a :Neuron:
    from its body-sorted copy ``neuron_rois``) as columns instead of unpacking every roiInfo in Python
    (both hold the same numbers; the store's are much faster for many neurons). Either way the rows go
    through NumPy, not pandas: on a few neurons pandas' groupby/concat/sort cost milliseconds.
    ``roi_info=False``: the frame leaves the roiInfo column out (parsed only when the per-ROI rows
    come from its maps).
    """
    if omit_rois:
        return neuron_df, None
    maps = json_dicts(neuron_df["roiInfo"]) if roi_info or not from_store else None
    if roi_info:
        neuron_df["roiInfo"] = maps
    else:
        neuron_df = neuron_df.drop(columns="roiInfo")
    count_cols = [c for c in _COUNT_COLS if c in neuron_df.columns]
    ids = neuron_df["bodyId"].to_numpy(dtype=np.int64)
    totals = {c: neuron_df[c].fillna(0).to_numpy().astype(np.int64) for c in count_cols}
    # The per-ROI rows are cut per neuron row ("unit") in bodyId order; fetch_neurons' rows come sorted,
    # fetch_custom_neurons' in the query's order.
    order = None
    if len(ids) > 1 and not (ids[1:] >= ids[:-1]).all():
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        maps = None if maps is None else [maps[i] for i in order]
        totals = {c: v[order] for c, v in totals.items()}
    needed = list(dict.fromkeys(["pre", "post", *count_cols]))
    if from_store:
        rows = store_roi_rows(client, ids, needed, neurons_only)
    else:
        rows = roi_info_rows(maps, needed)
    for name, column in (("inputRois", "post"), ("outputRois", "pre")):
        lists = roi_lists(rows, len(ids), column)
        if order is not None:
            lists = [lists[i] for i in np.argsort(order)]
        neuron_df[name] = lists
    return neuron_df, roi_counts_frame(rows, ids, totals, count_cols, client.primary_rois)


@dataclass
class RoiRows:
    """Per-ROI count rows sorted by unit (a neuron row's position in bodyId order), then ROI name."""

    units: np.ndarray  # int64
    codes: np.ndarray  # integers, index into names
    names: list[str]
    counts: dict[str, np.ndarray]  # column -> integers (a count column missing here is 0 on every row)
    # when known (the neuron table keeps them): per unit its number of rows, and of rows whose names
    # sort up to "NotPrimary" (else roi_counts_frame counts them from the rows)
    lengths: np.ndarray | None = None
    before_not_primary: np.ndarray | None = None


def roi_info_rows(roi_info: list[dict], columns: list[str]) -> RoiRows:
    """The rows of parsed roiInfo maps (a missing or null count is 0, as neuprint-python's fillna)."""
    units, rois = [], []
    counts = {c: [] for c in columns}
    for unit, info in enumerate(roi_info):
        keys = sorted(info)
        values = [info[k] for k in keys]
        units.extend([unit] * len(keys))
        rois.extend(keys)
        for c in columns:
            counts[c].extend([v.get(c) or 0 for v in values])
    names = sorted(set(rois))
    index = {name: i for i, name in enumerate(names)}
    return RoiRows(
        np.array(units, dtype=np.int64),
        np.array([index[r] for r in rois], dtype=np.int64),
        names,
        {c: np.array(v, dtype=np.int64) for c, v in counts.items()},
    )


def store_roi_rows(client, ids: np.ndarray, columns: list[str], neurons_only: bool) -> RoiRows:
    """The rows of the bodies ``ids`` (sorted, unique) read from the store in one statement."""
    table = "neuron_rois" if neurons_only and client.store.has_table("neuron_rois") else "segment_rois"
    wanted = pa.table({"bodyId": pa.array(ids, pa.int64())})
    select = ", ".join(["r.bodyId", "r.roi", *(f"r.{quote_ident(c)}" for c in columns if c in ROI_COUNT_COLS)])
    # neuron_rois is sorted by bodyId: a few id ranges let a small set skip most row groups.
    bound = f" WHERE {id_ranges_sql('r.bodyId', ids, most=4)}" if table == "neuron_rois" else ""
    with client.temporary_tables(wanted=wanted) as t:
        rows = (
            client.cursor()
            .sql(
                f"SELECT {select} FROM {table} r SEMI JOIN {t['wanted']} w "
                f"ON w.bodyId = r.bodyId{bound} ORDER BY r.bodyId, r.roi"
            )
            .to_arrow_table()
        )
    encoded = rows.column("roi").combine_chunks().dictionary_encode()
    return RoiRows(
        np.searchsorted(ids, rows.column("bodyId").to_numpy()),
        encoded.indices.to_numpy().astype(np.int64),
        encoded.dictionary.to_pylist(),
        {c: rows.column(c).fill_null(0).to_numpy().astype(np.int64) for c in columns if c in ROI_COUNT_COLS},
    )


def roi_lists(rows: RoiRows, units: int, column: str) -> list[list[str]]:
    """Per unit, the sorted names of its ROIs with a nonzero ``column`` count."""
    keep = rows.counts[column] > 0
    names = np.array(rows.names, dtype=object)[rows.codes[keep]].tolist()  # one list, sliced per unit
    cuts = np.searchsorted(rows.units[keep], np.arange(units + 1)).tolist()
    return [names[a:b] for a, b in zip(cuts[:-1], cuts[1:])]


def roi_counts_frame(
    rows: RoiRows, ids: np.ndarray, totals: dict, count_cols: list[str], primary_rois, not_primary=None
):
    """bodyId, roi and the count columns per neuron and ROI, plus a NotPrimary row per neuron (its
    totals minus its counts in primary ROIs; ``not_primary`` when known already); sorted by bodyId
    then ROI; rows without any count dropped (with no count columns requested that is every row, as
    in neuprint-python). A count column missing from ``rows.counts`` is 0 on every ROI row (mito,
    soma). Built column-wise: each row's place computed once, each column written once into the
    frame's int64 block (merging and filtering column by column cost ~3x), ROI names taken from
    Arrow by code, no pandas inference."""
    units = len(ids)
    present = [c for c in count_cols if c in rows.counts]
    if not_primary is None:
        primary = set(primary_rois)
        in_primary = np.array([n in primary for n in rows.names], dtype=bool)[rows.codes]
        primary_units = rows.units[in_primary]
        not_primary = {
            c: totals[c]
            - np.bincount(primary_units, weights=rows.counts[c][in_primary], minlength=units).astype(np.int64)
            if c in rows.counts
            else totals[c]
            for c in count_cols
        }
    if not units:  # as pandas builds it from no rows at all
        empty = np.array([], dtype=object)
        return frame_of_columns(
            ["bodyId", "roi", *count_cols], [empty, empty, *(np.zeros(0, np.int64) for _ in count_cols)], 0
        )
    roi_units, codes, counts = rows.units, rows.codes, {c: rows.counts[c] for c in present}
    lengths, before = rows.lengths, rows.before_not_primary
    nonzero = np.zeros(len(roi_units), dtype=bool)
    for c in present:
        nonzero |= counts[c] != 0
    if not nonzero.all():  # (rare with pre and post requested: an ROI row has a synapse)
        roi_units, codes = roi_units[nonzero], codes[nonzero]
        counts = {c: v[nonzero] for c, v in counts.items()}
        lengths = before = None
    if lengths is None or before is None:
        # rows are sorted by unit, then name: key = 2 * unit + (name after "NotPrimary") never
        # decreases, and a unit's rows before its NotPrimary row are those with keys 2 * unit
        after = np.array([n > "NotPrimary" for n in rows.names], dtype=np.int8)
        key = roi_units * 2
        key += after[codes]
        starts = np.searchsorted(key, np.arange(units + 1) * 2)
        lengths = np.diff(starts)
        before = np.searchsorted(key, np.arange(units) * 2 + 1) - starts[:-1]
    np_kept = np.zeros(units, dtype=bool)
    for c in count_cols:
        np_kept |= not_primary[c] != 0
    np_units = np.flatnonzero(np_kept)
    # A unit's NotPrimary row goes after its ROI rows whose names do not sort after "NotPrimary" (and
    # after the ROI and kept NotPrimary rows of the units before); every other row is an ROI row, in order:
    # columns are filled through a mask (a streaming write; a scatter by row number cost 2-4x).
    np_at = (np.cumsum(lengths) - lengths + before)[np_units] + np.arange(len(np_units))
    total = len(roi_units) + len(np_units)
    is_roi = np.ones(total, dtype=bool)
    is_roi[np_at] = False
    block = np.empty((1 + len(count_cols), total), dtype=np.int64)
    block[0] = np.repeat(ids, lengths + np_kept)  # (every unit's rows lie together, in unit order)
    for index, c in enumerate(count_cols, 1):
        column = block[index]
        column[is_roi] = counts.get(c, 0)
        column[np_at] = not_primary[c][np_units]
    all_codes = np.empty(total, dtype=np.int32)
    all_codes[is_roi] = codes
    all_codes[np_at] = len(rows.names)
    names = pa.array([*rows.names, "NotPrimary"], pa.large_string())  # (pandas' str holds large strings)
    roi = text_values(names.take(pa.array(all_codes)))
    at = [0, *range(2, 2 + len(count_cols))]
    return frame_of_block(["bodyId", "roi", *count_cols], block, at, {1: roi}, total)
