"""Simple neuron lookups (the queries fetch_neurons and custom lookups send for a few bodies or a
type) answer from one DuckDB statement, and exactly what pandas on the raw feathers says.

The statement count is part of the contract here: each extra statement costs a lookup about 1-2 ms
of CPU (issue 16's throughput target), so a change that adds one fails these tests.
"""

from __future__ import annotations

import json
import math

import pytest
from oracle import oracle_segments

from flatprint.cypher import neuronanswers
from flatprint.cypher.engine import execute


@pytest.fixture(scope="module")
def segments(release_dir):
    return oracle_segments(release_dir)


@pytest.fixture
def statements(statements, monkeypatch):
    """Every SQL statement the engine runs while the test does (through SQL: these tests are about
    its statements; the neuron table in RAM answers some lookups once built, tests in
    test_cypher_neuron_answers.py)."""
    monkeypatch.setattr(neuronanswers, "USE_NEURON_ANSWERS", False)
    return statements


def plain(value):
    """pandas' value as the JSON answer has it (missing -> None, whole floats of int columns -> int)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def scattered_neurons(segments, count: int) -> list[int]:
    neurons = sorted(segments.index[segments["is_neuron"]])
    step = max(len(neurons) // count, 1)
    return neurons[::step][:count]


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("cache", [None, False])
def test_bodies_by_id_sorted_after_one_statement(store, segments, statements, descending, cache):
    bodies = scattered_neurons(segments, 5)
    order = "DESC" if descending else ""
    text = (
        f"MATCH (n :Segment) WHERE n.bodyId in {list(reversed(bodies))} "
        f"RETURN n.bodyId as bodyId, n.type as type, n.instance as instance, n.pre as pre, "
        f"n.somaLocation as somaLocation ORDER BY n.bodyId {order}"
    )
    result = execute(store, text, plan_cache=cache)
    want = [
        [body, plain(segments.at[body, "type"]), plain(segments.at[body, "instance"]), int(segments.at[body, "pre"])]
        for body in sorted(bodies, reverse=descending)
    ]
    assert [row[:4] for row in result.data] == want
    assert len(statements) == 1 and "ORDER BY" not in statements[0]  # sorted by the unique key afterwards


def test_order_by_another_key_stays_in_sql(store, segments, statements):
    bodies = scattered_neurons(segments, 5)
    result = execute(store, f"MATCH (n:Segment) WHERE n.bodyId IN {bodies} RETURN n.bodyId, n.pre ORDER BY n.pre DESC")
    want = sorted((-int(segments.at[b, "pre"]), b) for b in bodies)
    assert [row[1] for row in result.data] == [-pre for pre, _ in want]
    assert "ORDER BY" in statements[0]  # a key with ties: DuckDB sorts


def test_whole_neurons_of_a_type_from_one_statement(store, segments, statements):
    typed = segments[segments["is_neuron"] & segments["type"].notna()]
    kind = typed["type"].value_counts().index[0]  # the most common type: several neurons
    result = execute(store, f"MATCH (n :Neuron) WHERE n.type = {json.dumps(kind)} RETURN n")  # fetch_custom_neurons
    members = sorted(typed.index[typed["type"] == kind])
    assert len(statements) == 1
    assert sorted(row[0]["bodyId"] for row in result.data) == members
    for (node,) in result.data:
        body = node["bodyId"]
        assert node["type"] == kind and node["pre"] == segments.at[body, "pre"]
        assert node.get("instance") == plain(segments.at[body, "instance"])
        rois = json.loads(node["roiInfo"])
        flags = {key for key, value in node.items() if value is True}
        assert flags == set(rois)  # every ROI of roiInfo is a flag, and nothing else is


def test_map_minus_keys_of_neurons_by_id(store, segments, statements):
    bodies = scattered_neurons(segments, 3)
    result = execute(
        store,
        f"MATCH (n:Neuron) WHERE n.bodyId IN {bodies} "
        "RETURN apoc.map.removeKeys(n, ['roiInfo', 'type']) AS m, n.bodyId AS id ORDER BY id",
    )
    assert [row[1] for row in result.data] == sorted(bodies)
    for m, body in result.data:
        assert "roiInfo" not in m and "type" not in m and m["bodyId"] == body
        assert m["post"] == segments.at[body, "post"]
    assert len(statements) == 1


def test_small_plain_answer_from_one_statement(store, segments, statements):
    """The throughput benchmark's query: a handful of plain values straight from Arrow."""
    body = scattered_neurons(segments, 1)[0]
    result = execute(
        store,
        f"MATCH (n:Neuron) WHERE n.bodyId = {body} RETURN n.bodyId AS bodyId, n.type AS type, "
        "n.instance AS instance, n.status AS status, n.pre AS pre, n.post AS post",
    )
    row = segments.loc[body]
    assert result.data == [
        [body, plain(row["type"]), plain(row["instance"]), plain(row["status"]), int(row["pre"]), int(row["post"])]
    ]
    assert len(statements) == 1
    assert result.to_arrow().column("pre").type == "int64"
