"""Frames assembled from their columns (query/results.py frame_of_columns, frame_from_columns) equal
what pandas builds from the same values as Python rows, and the neuron table's per-neuron sums over
primary ROIs (store/neurontable.py primary_sums) equal pandas' sums over the store's neuron_rois."""

from __future__ import annotations

import gc

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from flatprint.query.results import frame_from_arrow, frame_from_columns
from flatprint.store.neurontable import neuron_table

QUERIES = [
    "SELECT NULL AS a, 1::UTINYINT AS b, 2.5::FLOAT AS c, [1, NULL] AS d, 'x' AS e",
    "SELECT CASE WHEN i % 2 = 0 THEN TRUE END AS flag, i % 3 = 0 AS plain, CASE WHEN i % 2 = 0 THEN i END AS some,"
    " CASE WHEN i % 2 = 0 THEN 'a' END AS s, i::DOUBLE AS d, i::INTEGER AS n FROM range(50) t(i)",
    "SELECT 1 AS a, 'x' AS b LIMIT 0",
    "SELECT [1, 2] AS l, ['a', NULL] AS ls, NULL::VARCHAR AS nv, NULL::BIGINT AS nb FROM range(3)",
    # list columns: NULL rows, empty lists, NULL items, floats, unsigned, several items per row
    "SELECT CASE WHEN i % 3 = 0 THEN NULL WHEN i % 3 = 1 THEN [] ELSE [i, i * 10, -i] END AS l,"
    " [i / 4, i::DOUBLE] AS d, CASE WHEN i % 2 = 0 THEN [i, NULL] END AS holes, [i::UBIGINT] AS u,"
    " [i::UTINYINT, 200::UTINYINT] AS small FROM range(40) t(i)",
]


@pytest.mark.parametrize("sql", QUERIES)
def test_frame_from_arrow_equals_pandas_from_rows(sql):
    con = duckdb.connect()
    result = con.execute(sql)
    names = [d[0] for d in result.description]
    want = pd.DataFrame([list(r) for r in result.fetchall()], columns=names)
    got = frame_from_arrow(con.sql(sql).to_arrow_table())
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got.columns.dtype == want.columns.dtype


def test_a_long_list_column_equals_pandas_and_leaves_the_collector_on():
    """Past GC_PAUSE_LISTS cells a list column is made with the cyclic GC paused (somaLocation of
    every neuron of an ROI): the same cells, and the collector is on again afterwards."""
    sql = (
        "SELECT CASE WHEN i % 7 = 0 THEN NULL ELSE [i, i * 10, -i] END AS location, [i / 4] AS d FROM range(12000) t(i)"
    )
    con = duckdb.connect()
    want = pd.DataFrame([list(r) for r in con.execute(sql).fetchall()], columns=["location", "d"])
    assert gc.isenabled()
    got = frame_from_arrow(con.sql(sql).to_arrow_table())
    assert gc.isenabled()
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_frames_are_writable_and_own_their_labels():
    """Numbers from Arrow's read-only buffers are copied (a frame over them fails on assignment),
    and each frame has its own column Index (setting its name leaves the next frame's alone)."""
    table = pa.table({"a": np.arange(3), "b": pa.array(["x", "y", None])})
    first = frame_from_arrow(table)
    first.loc[0, "a"] = 7
    first.columns.name = "renamed"
    second = frame_from_arrow(table)
    assert second["a"].tolist() == [0, 1, 2] and second.columns.name is None


@pytest.mark.parametrize(
    "columns",
    [
        {"i": np.array([3, 1], dtype=np.int32), "u": np.array([1, 2], dtype=np.uint16), "f": np.array([0.5, np.nan])},
        {"b": np.array([True, False]), "s": pa.array(["a", None]), "o": np.array(["x", "y"], dtype=object)},
        {"big": np.array([2**63], dtype=np.uint64)[:0], "s": pa.array([], pa.string())},
        {"n": pa.array([1, None], pa.int64()), "i": np.arange(2, dtype=np.int64)},
    ],
)
def test_frame_from_columns_equals_the_arrow_round_trip(columns):
    pd.testing.assert_frame_equal(frame_from_columns(columns), frame_from_arrow(pa.table(columns)), check_exact=True)


def test_frame_from_columns_copies_numpy_columns():
    ids = np.arange(4, dtype=np.int64)
    frame = frame_from_columns({"bodyId": ids})
    frame.loc[0, "bodyId"] = 99
    assert ids[0] == 0


def test_primary_sums_match_pandas_over_neuron_rois(client):
    table = neuron_table(client.store)
    primary = client.primary_rois
    rows = client.store.cursor().sql("SELECT bodyId, roi, pre, post, downstream FROM neuron_rois").df()
    inside = rows[rows["roi"].isin(primary)].groupby("bodyId")[["pre", "post", "downstream"]].sum()
    want = inside.reindex(table.body_ids, fill_value=0)
    sums = table.primary_sums(primary)
    for column in ("pre", "post", "downstream"):
        assert sums[column].tolist() == want[column].tolist()
    assert sums["upstream"].tolist() == want["post"].tolist()
    assert sums["synweight"].tolist() == (want["downstream"] + want["post"]).tolist()
    assert table.primary_sums(list(reversed(primary))) is sums  # kept per ROI set


def test_roi_name_tuples_match_pandas_over_neuron_rois(client):
    """Per neuron, the names of its neuron_rois rows with pre (post) > 0, sorted: outputRois (inputRois)."""
    table = neuron_table(client.store)
    rows = client.store.cursor().sql("SELECT bodyId, roi, pre, post FROM neuron_rois").df()
    for column in ("pre", "post"):
        named = rows[rows[column] > 0].groupby("bodyId")["roi"].agg(lambda r: tuple(sorted(r))).to_dict()
        got = table.roi_name_tuples(column)
        assert got.dtype == object and len(got) == len(table.body_ids)
        assert got.tolist() == [named.get(b, ()) for b in table.body_ids.tolist()], column
        assert table.roi_name_tuples(column) is got  # kept


def test_rows_up_to_match_pandas_over_neuron_rois(client):
    """Per neuron, its neuron_rois rows whose ROI names sort up to "NotPrimary" (where its NotPrimary
    row goes), and every row for a name after all of them."""
    table = neuron_table(client.store)
    rows = client.store.cursor().sql("SELECT bodyId, roi FROM neuron_rois").df()
    for name in ("NotPrimary", "\U0010ffff"):
        counted = rows[rows["roi"].map(lambda r, name=name: r <= name)].groupby("bodyId").size()
        got = table.rows_up_to(name)
        assert got.tolist() == counted.reindex(table.body_ids, fill_value=0).tolist(), name
        assert table.rows_up_to(name) is got  # kept
    assert 0 < table.rows_up_to("NotPrimary").sum() < len(rows)
