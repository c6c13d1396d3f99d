"""fetch_adjacencies, fetch_reach and connection_matrix between neurons answered from the store's
neuron graph in RAM (flatprint.store.neurongraph): NumPy gathers, bincounts and sorts over its pair
arrays instead of SQL. Each function returns what the SQL path of flatprint.query.connectivity
returns, in the same order and types (tests/test_neurongraph.py compares both paths)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from flatprint.query.results import arrow_convertible, frame_from_columns
from flatprint.store.columns import CONNECTS_TO_COLUMNS
from flatprint.store.neurongraph import sorted_pair_rows


def graph_pairs(client, graph, scan) -> np.ndarray:
    """The graph's pair indices ``scan`` (a connectivity.EdgeScan) selects, in (pre, post) order (the
    pairs' own order)."""
    positions, inside = graph.positions(scan.driver_ids)
    positions = positions[inside]  # driver_ids are sorted and unique, so the positions are too
    pairs = graph.outgoing(positions) if scan.downstream else graph.incoming(positions)
    if scan.other_sql:
        ids = scan.other_ids
        if ids is None:
            ids = client.cursor().execute(scan.other_sql).fetchnumpy()["bodyId"]
        others, found = graph.positions(ids)
        wanted = np.zeros(len(graph.body_ids), dtype=bool)
        wanted[others[found]] = True
        pairs = pairs[wanted[(graph.post if scan.downstream else graph.pre)[pairs]]]
    pairs = pairs[graph.weight[pairs] >= scan.min_weight]
    return pairs if scan.downstream else np.sort(pairs)


def graph_frame(columns: dict) -> pd.DataFrame:
    """A DataFrame of NumPy / Arrow columns, converted as client.frame converts SQL results."""
    return frame_from_columns(columns)


def graph_adjacencies(
    client, graph, scan, rois, min_roi_weight, min_total_weight, include_nonprimary
) -> tuple[pd.DataFrame, np.ndarray]:
    """fetch_adjacencies' per-ROI rows from the neuron graph, as its SQL computes them: the ROI rows
    of the selected pairs (primary ROIs, or every ROI with ``include_nonprimary``), plus NotPrimary =
    the pair's weight minus its primary ROIs' weights where positive; then the ``rois`` filter,
    pairs whose kept rows sum to >= ``min_total_weight``, rows >= ``min_roi_weight``; sorted by pair,
    heaviest first, NotPrimary after a ROI of equal weight, then by ROI name. Also the graph
    positions of the bodies in those rows, ascending (for :func:`graph_neuron_props_at`)."""
    pairs = graph_pairs(client, graph, scan)
    if include_nonprimary or graph.answer_offsets is None:
        local, codes, weights = _sorted_roi_rows(client, graph, pairs, include_nonprimary)
    else:  # the graph keeps these rows in answer order: filters below keep it
        rows, local = graph.answer_rows(pairs)
        codes, weights = graph.answer_code[rows], graph.answer_weight[rows]
    if rois:
        listed = np.append(graph.roi_mask(rois), "NotPrimary" in rois)[codes] & (weights > 0)
        local, codes, weights = local[listed], codes[listed], weights[listed]
    good = weights >= min_roi_weight
    if min_total_weight > 1:
        good &= np.bincount(local, weights=weights, minlength=len(pairs))[local] >= min_total_weight
    if not good.all():
        local, codes, weights = local[good], codes[good], weights[good]
    kept = pairs[local]
    pre, post = graph.pre[kept], graph.post[kept]
    frame = graph_frame(
        {
            "bodyId_pre": graph.body_ids[pre],
            "bodyId_post": graph.body_ids[post],
            "roi": graph.roi_labels().take(pa.array(codes)),
            "weight": weights.astype(np.int64),
        }
    )
    return frame, _distinct_positions(graph, pre, post)


def _sorted_roi_rows(client, graph, pairs, include_nonprimary) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row's position in ``pairs``, ROI code, weight) of the pairs' ROI rows (primary ones, or
    all) and NotPrimary rows (code ``len(roi_names)``), in answer order."""
    rows, local = graph.roi_rows(pairs)
    primary = graph.roi_mask(client.primary_rois)
    return sorted_pair_rows(
        local, graph.roi_code[rows], graph.roi_weight[rows], graph.weight[pairs], primary, include_nonprimary
    )


def _distinct_positions(graph, *positions: np.ndarray) -> np.ndarray:
    """The distinct graph positions among ``positions``, ascending: a mark per neuron (a sort of the
    ends of 10^5 rows cost ~3 ms at full scale)."""
    marked = np.zeros(len(graph.body_ids), dtype=bool)
    for some in positions:
        marked[some] = True
    return np.flatnonzero(marked)


def graph_totals(client, graph, scan, extra) -> tuple[pd.DataFrame, np.ndarray]:
    """fetch_adjacencies' rows with ``omit_rois``: one per selected pair with its weights; and the
    graph positions of the bodies in them, ascending."""
    pairs = graph_pairs(client, graph, scan)
    pre, post = graph.pre[pairs], graph.post[pairs]
    columns = {
        "bodyId_pre": graph.body_ids[pre],
        "bodyId_post": graph.body_ids[post],
        "weight": graph.weight[pairs],
    }
    for prop in extra:
        values = getattr(graph, CONNECTS_TO_COLUMNS[prop])[pairs]
        if values.dtype.kind == "f":  # a column with NULLs: NaN marks them
            missing = np.isnan(values)
            values = pa.array(np.where(missing, 0, values).astype(np.int64), mask=missing)
        columns[prop] = values
    return graph_frame(columns), _distinct_positions(graph, pre, post)


def graph_neuron_props(client, graph, bodies, properties) -> pd.DataFrame | None:
    """_neuron_props of neurons from the graph's kept columns of ``neurons``; None when a body is no
    neuron of the graph or a property no plain column there (the SQL then answers, or names the
    problem)."""
    positions, inside = graph.positions(bodies)
    if not inside.all():
        return None
    return graph_neuron_props_at(client, graph, _distinct_positions(graph, positions), properties)


def graph_neuron_props_at(client, graph, positions: np.ndarray, properties) -> pd.DataFrame | None:
    """_neuron_props of the neurons at graph ``positions`` (distinct, ascending); None when a
    property is no plain column of ``neurons`` (the SQL then answers, or names the problem)."""
    columns = {}
    for prop in properties:
        kept = graph.column(client.cursor(), prop)
        if kept is None or not arrow_convertible(kept[1]):
            return None
        columns[prop] = kept[0]
    taken = pa.array(positions)
    return graph_frame({prop: column.take(taken) for prop, column in columns.items()})


def graph_reach(graph, seen: dict, frontier, hop: int, hops: int, min_weight: int, downstream: bool):
    """fetch_reach's walk from ``frontier`` (the bodies first found at ``hop - 1``; ``seen`` every body
    found so far, with its hops) on through the neuron graph up to ``hops``: bodyId, hops."""
    earlier = [(b, h) for b, h in seen.items() if h < hop - 1]
    seen_at, seen_inside = graph.positions(list(seen))
    at, inside = graph.positions(frontier)
    found, levels = graph.reach(at[inside], hops - hop + 1, min_weight, downstream, visited=seen_at[seen_inside])
    outside = np.asarray(frontier, dtype=np.int64)[~inside]  # starting non-neurons (no neuron partners walked)
    return pd.DataFrame(
        {
            "bodyId": np.concatenate(
                [np.array([b for b, _ in earlier], dtype=np.int64), outside, graph.body_ids[found]]
            ),
            "hops": np.concatenate(
                [
                    np.array([h for _, h in earlier], dtype=np.int64),
                    np.full(len(outside), hop - 1, dtype=np.int64),
                    levels + hop - 1,
                ]
            ),
        }
    )


def graph_group_matrix(client, graph, prop: str, min_weight: int, pre_bodies=None, post_bodies=None):
    """connection_matrix(``prop``) between neurons from the neuron graph, as its SQL over
    ``neuron_connections`` answers it: each pair of weight >= ``min_weight`` counts its weight and
    one connection under (pre's ``prop``, post's ``prop``); neurons whose ``prop`` is NULL are left
    out; ``pre_bodies`` / ``post_bodies`` (None: all) restrict the ends. Columns ``pre, post, weight,
    connections``, heaviest first, then by pre and post. None when ``prop`` is no text column of
    ``neurons`` the graph keeps (the SQL then answers)."""
    grouping = graph.derived.get(("pairs grouped by", prop), lambda: _pair_grouping(client, graph, prop))
    if grouping is None:
        return None
    if min_weight <= 1 and pre_bodies is None and post_bodies is None:  # every pair: summed already
        found, weight, connections = np.arange(len(grouping.cells)), grouping.weight, grouping.connections
    else:
        keep = grouping.cell_of_pair >= 0
        if min_weight > 1:
            keep &= graph.weight >= min_weight
        for bodies, ends in ((pre_bodies, graph.pre), (post_bodies, graph.post)):
            if bodies is not None:
                keep &= _body_mask(graph, bodies)[ends]
        found, weight, connections = _cell_sums(grouping.cell_of_pair[keep], graph.weight[keep], len(grouping.cells))
    # heaviest first, then by cell (pre, post): one key per cell, unique, so any sort orders alike
    # (half the time of a stable or lexicographic sort)
    order = np.argsort((weight.max(initial=0) - weight) * len(found) + np.arange(len(found)))
    found, weight, connections = found[order], weight[order], connections[order]
    if not len(found):  # as SQL's empty answer converts: text columns of dtype object
        empty = np.zeros(0, dtype=np.int64)
        return pd.DataFrame(
            {"pre": empty.astype(object), "post": empty.astype(object), "weight": empty, "connections": empty}
        )
    labels = pa.array(grouping.names, type=pa.string())
    cells_found = grouping.cells[found]
    return graph_frame(
        {
            "pre": labels.take(pa.array(cells_found // len(grouping.names))),
            "post": labels.take(pa.array(cells_found % len(grouping.names))),
            "weight": weight,
            "connections": connections,
        }
    )


@dataclass(frozen=True)
class PairGrouping:
    """The graph's pairs grouped by a neuron property: ``names`` its distinct values, sorted;
    ``cells`` the (pre value, post value) cells that pairs fall in, as ``pre rank * len(names) +
    post rank``, sorted; ``cell_of_pair`` per pair its index in ``cells``, -1 when an end's value is
    NULL; the cells' sums over every pair. Built once per graph and property (~4 bytes a pair)."""

    names: np.ndarray
    cells: np.ndarray
    cell_of_pair: np.ndarray
    weight: np.ndarray  # per cell: the sum of its pairs' weights (int64)
    connections: np.ndarray  # per cell: how many pairs fall in it (int64)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.cells, self.cell_of_pair, self.weight, self.connections))


def _pair_grouping(client, graph, prop: str) -> PairGrouping | None:
    groups = _group_codes(client, graph, prop)
    if groups is None:
        return None
    codes, names = groups
    pre_code, post_code = codes[graph.pre], codes[graph.post]
    # (every query asks for weight >= 1: a pair of weight 0, which no store holds, would count nowhere)
    named = np.flatnonzero((pre_code >= 0) & (post_code >= 0) & (graph.weight >= 1))
    cells, at = np.unique(pre_code[named].astype(np.int64) * len(names) + post_code[named], return_inverse=True)
    cell_of_pair = np.full(len(graph.pre), -1, dtype=np.int32 if len(cells) < 2**31 else np.int64)
    cell_of_pair[named] = at
    _, weight, connections = _cell_sums(at, graph.weight[named], len(cells))
    return PairGrouping(names, cells, cell_of_pair, weight, connections)


def _cell_sums(cell, weight, cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the cells that pairs fall in, ascending; their weight sums; their pair counts) of the pairs
    in ``cell`` (each pair's cell index) with weights ``weight``."""
    connections = np.bincount(cell, minlength=cells)
    found = np.flatnonzero(connections)
    weight = np.bincount(cell, weights=weight, minlength=cells)  # float64: exact below 2**53
    return found, weight[found].astype(np.int64), connections[found].astype(np.int64)


def _group_codes(client, graph, prop: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(per neuron position the rank of its ``prop`` among the sorted distinct values, -1 for NULL;
    those values), from the graph's kept column; None when it is no text column kept."""
    kept = graph.column(client.cursor(), prop)
    if kept is None or not (pa.types.is_string(kept[0].type) or pa.types.is_large_string(kept[0].type)):
        return None
    encoded = pc.dictionary_encode(kept[0].combine_chunks())
    names = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    by_name = np.argsort(names.astype(str), kind="stable")  # SQL orders text by code point, as str does
    rank = np.empty(len(names) + 1, dtype=np.int32)
    rank[by_name] = np.arange(len(names), dtype=np.int32)
    rank[-1] = -1  # NULL: its index is filled with -1 below, which picks this slot
    indices = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return rank[indices], names[by_name]


def _body_mask(graph, bodies) -> np.ndarray:
    """Per neuron position: whether it is one of ``bodies`` (bodies outside the graph ignored)."""
    positions, inside = graph.positions(np.asarray(list(bodies), dtype=np.int64))
    mask = np.zeros(len(graph.body_ids), dtype=bool)
    mask[positions[inside]] = True
    return mask
