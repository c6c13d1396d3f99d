"""fetch_adjacencies and fetch_reach between neurons answered from the store's neuron graph in RAM
(flatprint.store.neurongraph): NumPy gathers over its sorted pair arrays instead of SQL. Each
function returns what the SQL path of flatprint.query.connectivity returns, in the same order and
types (tests/test_neurongraph.py compares both paths)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from flatprint.query.results import arrow_convertible, frame_from_arrow
from flatprint.store.columns import CONNECTS_TO_COLUMNS


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
    return frame_from_arrow(pa.table(columns))


def graph_adjacencies(client, graph, scan, rois, min_roi_weight, min_total_weight, include_nonprimary):
    """fetch_adjacencies' per-ROI rows from the neuron graph, as its SQL computes them: the ROI rows
    of the selected pairs (primary ROIs, or every ROI with ``include_nonprimary``), plus NotPrimary =
    the pair's weight minus its primary ROIs' weights where positive; then the ``rois`` filter,
    pairs whose kept rows sum to >= ``min_total_weight``, rows >= ``min_roi_weight``; sorted by pair,
    heaviest first, NotPrimary after a ROI of equal weight, then by ROI name."""
    pairs = graph_pairs(client, graph, scan)
    rows, local = graph.roi_rows(pairs)
    codes = graph.roi_code[rows].astype(np.int64)
    weights = graph.roi_weight[rows].astype(np.int64)
    primary_code = np.isin(graph.roi_names, list(client.primary_rois))
    primary = primary_code[codes]
    primary_sum = np.bincount(local[primary], weights=weights[primary], minlength=len(pairs))
    rest = graph.weight[pairs].astype(np.int64) - primary_sum.astype(np.int64)
    outside = np.flatnonzero(rest > 0)
    kept = slice(None) if include_nonprimary else primary
    not_primary = len(graph.roi_names)  # after every ROI name in the sort
    local = np.concatenate([local[kept], outside])
    codes = np.concatenate([codes[kept], np.full(len(outside), not_primary, dtype=np.int64)])
    weights = np.concatenate([weights[kept], rest[outside]])
    if rois:
        listed = np.append(np.isin(graph.roi_names, rois), "NotPrimary" in rois)[codes] & (weights > 0)
        local, codes, weights = local[listed], codes[listed], weights[listed]
    totals = np.bincount(local, weights=weights, minlength=len(pairs))
    good = (totals[local] >= min_total_weight) & (weights >= min_roi_weight)
    local, codes, weights = local[good], codes[good], weights[good]
    order = np.lexsort((codes, -weights, local))  # pairs are in (pre, post) order already
    local, codes, weights = local[order], codes[order], weights[order]
    names = pa.array([*graph.roi_names.tolist(), "NotPrimary"], type=pa.string())
    return graph_frame(
        {
            "bodyId_pre": graph.body_ids[graph.pre[pairs[local]]],
            "bodyId_post": graph.body_ids[graph.post[pairs[local]]],
            "roi": names.take(pa.array(codes)),
            "weight": weights,
        }
    )


def graph_totals(client, graph, scan, extra) -> pd.DataFrame:
    """fetch_adjacencies' rows with ``omit_rois``: one per selected pair with its weights."""
    pairs = graph_pairs(client, graph, scan)
    columns = {
        "bodyId_pre": graph.body_ids[graph.pre[pairs]],
        "bodyId_post": graph.body_ids[graph.post[pairs]],
        "weight": graph.weight[pairs],
    }
    for prop in extra:
        values = getattr(graph, CONNECTS_TO_COLUMNS[prop])[pairs]
        if values.dtype.kind == "f":  # a column with NULLs: NaN marks them
            missing = np.isnan(values)
            values = pa.array(np.where(missing, 0, values).astype(np.int64), mask=missing)
        columns[prop] = values
    return graph_frame(columns)


def graph_neuron_props(client, graph, bodies, properties) -> pd.DataFrame | None:
    """_neuron_props of neurons from the graph's kept columns of ``neurons``; None when a property is
    no plain column there (the SQL then answers, or names the problem)."""
    columns = {}
    for prop in properties:
        kept = graph.column(client.cursor(), prop)
        if kept is None or not arrow_convertible(kept[1]):
            return None
        columns[prop] = kept[0]
    positions, inside = graph.positions(bodies)
    if not inside.all():
        return None
    positions = np.unique(positions)
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
