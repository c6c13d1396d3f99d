"""roi_counts_frame (query/neurons.py) on per-ROI rows worked out on paper: NotPrimary rows placed among
the ROI names (before names that sort after "NotPrimary", after the others), rows without any requested
count dropped (ROI rows and NotPrimary rows), neurons without ROI rows, a count column without per-ROI
counts (mito), narrow integer inputs (what the neuron table in RAM passes) and int64 ones (SQL's)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flatprint.query.neurons import RoiRows, roi_counts_frame

NAMES = ["AL(R)", "GNG", "SMP(R)", "VNC"]  # AL(R) < GNG < NotPrimary < SMP(R) < VNC
PRIMARY = ["GNG", "SMP(R)", "VNC"]
IDS = np.array([10, 20, 30, 40], dtype=np.int64)
# (unit, ROI, pre, post): body 20's only row has no synapse, body 30 has no row at all
ROWS = [
    (0, "AL(R)", 1, 0),
    (0, "GNG", 2, 3),
    (0, "VNC", 0, 4),
    (1, "SMP(R)", 0, 0),
    (3, "GNG", 1, 1),
    (3, "SMP(R)", 2, 0),
]
TOTALS = {
    "pre": np.array([5, 0, 1, 3], dtype=np.int64),
    "post": np.array([9, 0, 0, 1], dtype=np.int64),
    "mito": np.array([4, 0, 0, 0], dtype=np.int64),
}
# NotPrimary = totals - counts in primary ROIs: body 10 (3, 2, mito 4), 20 (0, 0), 30 (1, 0), 40 (0, 0)
EXPECTED = {
    ("pre", "post", "mito"): [
        (10, "AL(R)", 1, 0, 0),
        (10, "GNG", 2, 3, 0),
        (10, "NotPrimary", 3, 2, 4),
        (10, "VNC", 0, 4, 0),
        (30, "NotPrimary", 1, 0, 0),
        (40, "GNG", 1, 1, 0),
        (40, "SMP(R)", 2, 0, 0),
    ],
    ("post",): [(10, "GNG", 3), (10, "NotPrimary", 2), (10, "VNC", 4), (40, "GNG", 1)],
    ("mito",): [(10, "NotPrimary", 4)],
    (): [],
}


def roi_rows(dtype, given: bool) -> RoiRows:
    units, rois, pre, post = zip(*ROWS)
    rows = RoiRows(
        np.array(units, dtype=np.int64),
        np.array([NAMES.index(r) for r in rois], dtype=dtype),
        NAMES,
        {"pre": np.array(pre, dtype=dtype), "post": np.array(post, dtype=dtype)},
    )
    if given:  # as the neuron table passes them: per neuron its rows, and those up to "NotPrimary"
        rows.lengths, rows.before_not_primary = np.array([3, 1, 0, 2]), np.array([2, 0, 0, 1])
    return rows


@pytest.mark.parametrize("dtype", [np.uint8, np.int64])
@pytest.mark.parametrize("given", [False, True])
@pytest.mark.parametrize("columns", sorted(EXPECTED))
def test_roi_counts_frame_on_paper(dtype, given, columns):
    count_cols = list(columns)
    not_primary = None
    if given:  # as the neuron table passes them (totals minus its per-neuron primary sums)
        sums = {"pre": np.array([2, 0, 0, 3]), "post": np.array([7, 0, 0, 1])}
        not_primary = {c: TOTALS[c] - sums[c] if c in sums else TOTALS[c] for c in count_cols}
    totals = {c: TOTALS[c] for c in count_cols}
    got = roi_counts_frame(roi_rows(dtype, given), IDS, totals, count_cols, PRIMARY, not_primary)
    want = pd.DataFrame(EXPECTED[columns], columns=["bodyId", "roi", *count_cols])
    assert got.columns.tolist() == ["bodyId", "roi", *count_cols]
    assert list(got.itertuples(index=False, name=None)) == list(want.itertuples(index=False, name=None))
    assert got.index.equals(pd.RangeIndex(len(want)))
    assert all(got[c].dtype == np.int64 for c in ["bodyId", *count_cols])
    assert got["roi"].dtype == pd.DataFrame({"r": ["x"]})["r"].dtype  # pandas' text dtype
    got.loc[0:0, "bodyId"] = 1  # a writable frame of its own
    assert IDS.tolist() == [10, 20, 30, 40]


def test_roi_counts_frame_without_neurons():
    """No neurons: object columns for bodyId and roi, as pandas builds a frame from no rows."""
    empty = RoiRows(np.zeros(0, np.int64), np.zeros(0, np.int64), [], {"pre": np.zeros(0, np.int64)})
    got = roi_counts_frame(empty, np.zeros(0, np.int64), {"pre": np.zeros(0, np.int64)}, ["pre"], PRIMARY)
    assert got.columns.tolist() == ["bodyId", "roi", "pre"] and len(got) == 0
    assert got["bodyId"].dtype == object and got["roi"].dtype == object and got["pre"].dtype == np.int64
