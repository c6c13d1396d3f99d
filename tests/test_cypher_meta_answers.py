"""Answers of queries that read only the :Meta node are kept per store (cypher/metaanswers.py): the
kept answer is the store's own (counts from the release's syn-points), each caller gets objects of
its own, and queries that read anything else or vary between runs are never kept."""

from __future__ import annotations

import oracle
import pytest

from flatprint.cypher.engine import execute
from flatprint.cypher.metaanswers import META_ANSWERS
from flatprint.store import Store

# neuprint-python 0.6.4's fetch_all_rois / fetch_roi_hierarchy query (sent with fetch_adjacencies)
ALL_ROIS = """
    MATCH (m:Meta)
    WITH m as m,
         apoc.convert.fromJsonMap(m.roiInfo) as roiInfo,
         apoc.convert.fromJsonMap(m.roiHierarchy) as roiHierarchy,
         apoc.convert.fromJsonMap(m.neuroglancerInfo) as neuroglancerInfo,
         apoc.convert.fromJsonList(m.neuroglancerMeta) as neuroglancerMeta,
         apoc.convert.fromJsonMap(m.statusDefinitions) as statusDefinitions
    RETURN m as meta, roiInfo, roiHierarchy, neuroglancerInfo, neuroglancerMeta, statusDefinitions
"""
COUNTS = "MATCH (m:Meta) RETURN m.totalPreCount, m.totalPostCount"


def _synapse_counts(release) -> list[int]:
    points = oracle.load(release, "syn-points")
    return [int((points["kind"] == "PreSyn").sum()), int((points["kind"] == "PostSyn").sum())]


@pytest.fixture
def two_stores(store_factory, release_factory):
    META_ANSWERS.clear()
    stores = [Store.open(store_factory(0)), Store.open(store_factory(0, 0.001))]
    yield list(zip(stores, [release_factory(0), release_factory(0, 0.001)], strict=True))
    for store in stores:
        store.close()
    META_ANSWERS.clear()


def test_each_store_keeps_its_own_answer(two_stores):
    expected = [_synapse_counts(release) for _, release in two_stores]
    assert expected[0] != expected[1]
    for _ in range(3):  # the first run keeps the answer, the others hand it out
        for (store, _), counts in zip(two_stores, expected, strict=True):
            assert execute(store, COUNTS).data == [counts]
            assert META_ANSWERS.get(store, COUNTS) is not None


def test_callers_get_objects_of_their_own(two_stores):
    store, release = two_stores[0]
    first = execute(store, ALL_ROIS)
    assert META_ANSWERS.get(store, ALL_ROIS) is not None
    meta, roi_info = first.data[0][0], first.data[0][1]
    assert [meta["totalPreCount"], meta["totalPostCount"]] == _synapse_counts(release)
    assert set(oracle.roi_chains(release)) <= set(roi_info)  # every ROI of the hierarchy
    kept = execute(store, ALL_ROIS)
    assert kept.columns == first.columns and kept.data == first.data
    kept.data[0][1].clear()  # a caller changing what it got
    kept.columns.append("x")
    again = execute(store, ALL_ROIS)
    assert again.data == first.data and again.columns == first.columns


@pytest.mark.parametrize(
    "text",
    [
        "MATCH (m:Meta) RETURN m.totalPreCount, rand() AS r",
        "MATCH (m:Meta), (n:Segment) RETURN m.dataset, count(n)",
        "MATCH (m) RETURN count(m)",
        "MATCH (m:Meta) OPTIONAL MATCH (m)-[r]->(x) RETURN m.dataset, count(r)",
        "CALL apoc.cypher.run('MATCH (m:Meta) RETURN m.dataset AS d', {}) YIELD value RETURN value.d",
        "RETURN 'Meta' AS label",
        "MATCH (m:Meta) UNWIND range(1, 100) AS i RETURN m.dataset, i",  # more rows than kept
    ],
)
def test_other_queries_are_not_kept(two_stores, text):
    store, _ = two_stores[0]
    first = execute(store, text)
    assert first.data and META_ANSWERS.get(store, text) is None
    if "rand()" in text:
        assert execute(store, text).data[0][1] != first.data[0][1]


def test_parameters_are_never_kept(two_stores):
    store, _ = two_stores[0]
    text = "MATCH (m:Meta) WHERE m.dataset = $d RETURN m.dataset"
    assert execute(store, text, params={"d": "male-cns"}).data == [["male-cns"]]
    assert execute(store, text, params={"d": "other"}).data == []
    assert META_ANSWERS.get(store, text) is None
