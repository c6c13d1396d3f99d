"""Map cells (roiInfo, conn_roiInfo) are dicts for Python and JSON in CSV files: ``df.to_csv()``
writes text that json.loads reads back to the numbers pandas computes from the raw feathers."""

from __future__ import annotations

import copy
import io
import json
import pickle

import pandas as pd
from oracle import load

import flatprint

PAIR_COUNT = 5


def test_conn_roiinfo_csv_is_json_with_the_release_counts(client, release_dir):
    df = flatprint.fetch_simple_connections("DNge104", None, properties=["type", "roiInfo"], client=client)
    assert len(df) >= PAIR_COUNT
    for col in ("conn_roiInfo", "roiInfo_pre", "roiInfo_post"):
        # still plain dicts for Python users, as neuprint-python's frames hold
        assert all(isinstance(v, dict) for v in df[col])
        assert df[col][0] == dict(df[col][0]) and dict(df[col][0]) == df[col][0]

    back = pd.read_csv(io.StringIO(df.to_csv(index=False)))
    partners = load(release_dir, "syn-partners")
    primary = set(client.primary_rois)
    for row in back.head(PAIR_COUNT).itertuples():
        got = json.loads(row.conn_roiInfo)
        pair = partners[(partners.body_pre == row.bodyId_pre) & (partners.body_post == row.bodyId_post)]
        want = pair["primary_post"].astype(str).value_counts()
        want = {roi: int(n) for roi, n in want.items() if roi != "<unspecified>"}
        assert {roi: v["post"] for roi, v in got.items() if roi in primary} == want
        assert got == df.set_index(["bodyId_pre", "bodyId_post"]).loc[(row.bodyId_pre, row.bodyId_post), "conn_roiInfo"]
        assert json.loads(row.roiInfo_pre) and json.loads(row.roiInfo_post)


def test_neuron_roiinfo_csv_is_json_with_the_release_counts(client, release_dir):
    neurons, _ = flatprint.fetch_neurons("DNge104", client=client)
    back = pd.read_csv(io.StringIO(neurons.to_csv(index=False)))
    points = load(release_dir, "syn-points")
    primary = set(client.primary_rois)
    for body, text in zip(back["bodyId"], back["roiInfo"]):
        got = json.loads(text)
        pts = points[points["body"] == body]
        for kind, key in (("PreSyn", "pre"), ("PostSyn", "post")):
            want = pts.loc[pts["kind"] == kind, "primary"].astype(str).value_counts()
            want = {roi: int(n) for roi, n in want.items() if roi in primary}
            assert {roi: v[key] for roi, v in got.items() if roi in primary and v.get(key)} == want


def test_json_cells_survive_copies(client):
    neurons, _ = flatprint.fetch_neurons("DNge104", client=client)
    cell = neurons["roiInfo"][0]
    for other in (pickle.loads(pickle.dumps(cell)), copy.deepcopy(cell), copy.copy(cell)):
        assert other == cell and str(other) == str(cell)
    assert json.loads(str(cell)) == cell and json.loads(repr(cell)) == cell


def test_missing_map_cells_are_empty_dicts():
    """A NULL map cell reaches json_dicts as None or, from a frame column, as NaN (truthy): both are the
    empty map. A connection with no synapse in any ROI (its conn_roiInfo NULL) had raised TypeError."""
    from flatprint.query.results import json_dicts

    cells = pd.Series(['{"FB": {"pre": 1, "post": 2}}', None, float("nan"), {"EB": {"pre": 0, "post": 1}}])
    got = json_dicts(cells)
    assert got == [{"FB": {"pre": 1, "post": 2}}, {}, {}, {"EB": {"pre": 0, "post": 1}}]
    assert [type(v).__name__ for v in got] == ["JsonDict"] * 4
