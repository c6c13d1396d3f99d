"""fetch_synapse_connections' query for one body pair, exactly as neuprint-python 0.6.4 sends it,
through the engine's synapse-layout step (cypher/synapseanswers.py, maps by cypher/jsonanswer.py):
for pairs of every size (none, a few, the strongest) and for ends whose T-bars lack NT
probabilities or whose points lie in no ROI, the JSON bytes parse to the rows pandas finds on the
raw feathers (tests/test_cypher_columnwise.oracle_pair_rows; exact values and JSON types) and are
the bytes the Arrow answer's rows encode to; the Arrow answer holds the same rows."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
from oracle import load, oracle_segments
from test_cypher_answer_bytes import masked, model_with_rois, same_rows
from test_cypher_columnwise import (  # noqa: F401  (fixtures used by name)
    NT_NAMES,
    canonical,
    oracle_pair_rows,
    strong_pair,
    synapse_points,
)

from flatprint.cypher import jsonanswer, synapseanswers
from flatprint.cypher.engine import execute
from flatprint.server.http import encode_json

#: neuprint-python 0.6.4's text for fetch_synapse_connections(pre, post) (nt=None), as captured
NEUPRINT_PAIR_CYPHER = """
    MATCH (n:Segment)-[e:ConnectsTo]->(m:Segment),
          (n)-[:Contains]->(nss:SynapseSet)-[:ConnectsTo]->(mss:SynapseSet)<-[:Contains]-(m),
          (nss)-[:Contains]->(ns:Synapse)-[:SynapsesTo]->(ms:Synapse)<-[:Contains]-(mss)

    WHERE 
      // -- Basic conditions for segment 'n' --
      n.bodyId = {pre}
      AND
      // -- Basic conditions for segment 'm' --
      m.bodyId = {post}

    // Note: Semantically, the word 'DISTINCT' is unnecessary here,
    // but its presence makes this query run faster.
    WITH DISTINCT n, m, ns, ms, e
    WHERE e.weight >= 1

    // -- Filter synapse 'ns' --
    WITH n, m, ns, ms
    WHERE (ns.confidence > 0.5) AND (ns.type = 'pre')

    // -- Filter synapse 'ms' --
    WITH n, m, ns, ms
    WHERE (ms.confidence > 0.5) AND (ms.type = 'post')


    RETURN n.bodyId as bodyId_pre,
           m.bodyId as bodyId_post,
           ns.location.x as ux,
           ns.location.y as uy,
           ns.location.z as uz,
           ms.location.x as dx,
           ms.location.y as dy,
           ms.location.z as dz,
           ns.confidence as confidence_pre,
           ms.confidence as confidence_post,
           apoc.map.removeKeys(ns, ['location', 'confidence', 'type']) as info_pre,
           apoc.map.removeKeys(ms, ['location', 'confidence', 'type']) as info_post
"""


@pytest.fixture(scope="module")
def pairs(release_dir, strong_pair):  # noqa: F811
    """Named body pairs found with pandas on the feathers: none, the lightest, ends whose T-bars
    partly lack NT probabilities, ends with points in no ROI, the strongest."""
    partners = load(release_dir, "syn-partners")
    kept = partners[(partners.conf_pre > 0.5) & (partners.conf_post > 0.5)]
    neurons = set(oracle_segments(release_dir).query("is_neuron").index)
    counts = kept.groupby(["body_pre", "body_post"]).size()
    found = {"strongest": strong_pair}
    light = counts[counts.index.get_level_values(0).isin(neurons)].sort_values(kind="stable")
    found["lightest"] = tuple(int(b) for b in light.index[0])
    nt = load(release_dir, "tbar-nt")[["x", "y", "z"]].assign(has_nt=True)
    with_nt = kept.merge(nt, left_on=["x_pre", "y_pre", "z_pre"], right_on=["x", "y", "z"], how="left")
    lacking = with_nt[with_nt.has_nt.isna()]
    if len(lacking):  # (every T-bar of the test release may have them: the unit tests cover NULLs)
        found["T-bars without NT"] = (int(lacking.body_pre.iloc[0]), int(lacking.body_post.iloc[0]))
    points = load(release_dir, "syn-points").reset_index()
    outside = (points["primary"].astype(str) == "<unspecified>") & (points["major"].astype(str) == "<unspecified>")
    unplaced = points[outside & (points["kind"] == "PostSyn")]
    at = kept.merge(unplaced[["x", "y", "z"]], left_on=["x_post", "y_post", "z_post"], right_on=["x", "y", "z"])
    if len(at):
        found["PSDs in no ROI"] = (int(at.body_pre.iloc[0]), int(at.body_post.iloc[0]))
    connected = set(zip(partners.body_pre, partners.body_post))
    bodies = sorted(set(partners.body_pre))[:40]
    found["none"] = next((a, b) for a in bodies for b in bodies if a != b and (a, b) not in connected)
    return found


@pytest.mark.parametrize("name", ["none", "lightest", "T-bars without NT", "PSDs in no ROI", "strongest"])
def test_neuprint_pair_query_equals_the_oracle(store, release_dir, synapse_points, pairs, name):  # noqa: F811
    if name not in pairs:
        pytest.skip(f"the test release has no pair with {name}")
    pre, post = pairs[name]
    cypher = NEUPRINT_PAIR_CYPHER.format(pre=pre, post=post)
    want = [row[:12] for row in oracle_pair_rows(release_dir, synapse_points, pre, post)]
    if name == "none":
        assert want == []
    elif name == "T-bars without NT":
        assert any(not any(k in row[10] for k in NT_NAMES.values()) for row in want)
    elif name == "PSDs in no ROI":
        assert any(row[11] == {} for row in want)
    result = execute(store, cypher, json_bytes=True)
    assert result.data_json is not None, "the pair's rows should be written as bytes"
    got = json.loads(result.data_json)
    assert result.row_count == len(want) and same_rows(got, want)
    rows = execute(store, cypher)  # the Arrow endpoint's answer
    assert result.data_json == encode_json(rows.data)
    assert canonical(rows.data) == canonical(want)
    if want:
        assert rows.arrow is not None and canonical(rows.arrow.to_pylist()) == canonical(
            [dict(zip(rows.columns, r)) for r in rows.data]
        )


def test_empty_pair_keeps_the_arrow_columns_types(store, pairs):
    pre, post = pairs["none"]
    result = execute(store, NEUPRINT_PAIR_CYPHER.format(pre=pre, post=post))
    assert result.data == [] and result.columns[10:] == ["info_pre", "info_post"]
    if result.arrow is not None:
        kinds = {f.name: str(f.type) for f in result.arrow.schema}
        assert kinds["bodyId_pre"] == "int64" and kinds["confidence_pre"] == "double"


def test_maps_by_label_pair_only_where_every_other_property_is_null():
    """A map item's synapses are written by label pair only when their other columns are NULL at
    the answer's positions (a T-bar's NT probabilities elsewhere in the rows read do not count)."""
    got = {
        "ntGabaProb": np.ma.masked_array([0.5, 0.0, 0.0, 0.25], mask=[False, True, True, False]),
        "primary_label": np.array([1, 2, 3, 4]),
        "major_label": np.array([0, 0, 0, 0]),
    }
    names = ["ntGabaProb", "primary_label", "major_label"]
    assert synapseanswers._labels_only(got, names, np.array([1, 2, 2]))
    assert not synapseanswers._labels_only(got, names, np.array([1, 3]))
    assert not synapseanswers._labels_only({**got, "ntGabaProb": np.array([0.5, 0.1, 0.2, 0.3])}, names, np.array([1]))
    assert synapseanswers._labels_only(got, ["primary_label", "major_label"], np.array([0]))


@pytest.mark.parametrize("few_rows", [0, 10**9])
def test_few_rows_and_column_wise_writers_agree(store, release_dir, synapse_points, pairs, few_rows, monkeypatch):  # noqa: F811
    """Either writer of the JSON bytes (Python values for a few rows, column-wise kernels for more)
    for the strongest and the lightest pair: the oracle's rows, the Arrow answer's bytes."""
    monkeypatch.setattr(synapseanswers, "FEW_ROWS", few_rows)
    for name in ("strongest", "lightest"):
        pre, post = pairs[name]
        cypher = NEUPRINT_PAIR_CYPHER.format(pre=pre, post=post)
        want = [row[:12] for row in oracle_pair_rows(release_dir, synapse_points, pre, post)]
        result = execute(store, cypher, json_bytes=True)
        assert same_rows(json.loads(result.data_json), want)
        assert result.data_json == encode_json(execute(store, cypher).data)


def test_map_dicts_for_a_few_rows_hold_what_is_known_on_paper():
    """NULL NT probabilities left out, flags of both ROI sets merged and sorted among the keys,
    flag-only and empty maps; their sorted-key text is the column-wise writer's."""
    model = model_with_rois({("primary", 1): ["FB", "CX", "gL(R)"], ("major", 2): ["CX", "zeta"]})
    columns = {
        "ntAcetylcholineProb": masked([0.125, None, None, 1.0], np.float32),
        "ntGabaProb": masked([1e-7, None, None, None], np.float64),
        "primary_label": masked([1, 0, None, 0], np.int64),
        "major_label": masked([2, None, 2, 0], np.int64),
    }
    removed = ("location", "confidence", "type")
    maps = jsonanswer.number_map_dicts(model, removed, columns)
    assert maps == [
        {"CX": True, "FB": True, "gL(R)": True, "ntAcetylcholineProb": 0.125, "ntGabaProb": 1e-7, "zeta": True},
        {},
        {"CX": True, "zeta": True},
        {"ntAcetylcholineProb": 1.0},
    ]
    texts = jsonanswer.synapse_map_json(model, removed, columns).to_pylist()
    assert [orjson.dumps(m, option=orjson.OPT_SORT_KEYS).decode() for m in maps] == texts
    assert jsonanswer.number_map_dicts(model, ("location",), {**columns, "kind": None, "conf": None}) is None


def test_type_tests_on_a_pairs_ends_are_known_without_reading_types(
    store,
    release_dir,
    synapse_points,  # noqa: F811
    pairs,
    monkeypatch,
):
    """A pair's pre ends are T-bars and its post ends PSDs (the release's partners join PreSyn to
    PostSyn points): ``type`` tests on them hold or fail without reading the synapses' types, and
    the oracle's rows come back whichever of them the query states; a test no end passes (a T-bar
    asked to be 'post') leaves no row."""
    selects = []
    real = synapseanswers.synapses_by_id

    def reading(cursor, ids, select):
        selects.append(select)
        return real(cursor, ids, select)

    monkeypatch.setattr(synapseanswers, "synapses_by_id", reading)
    pre, post = pairs["strongest"]
    cypher = NEUPRINT_PAIR_CYPHER.format(pre=pre, post=post)
    want = [row[:12] for row in oracle_pair_rows(release_dir, synapse_points, pre, post)]
    assert want
    untyped = cypher.replace(" AND (ns.type = 'pre')", "").replace(" AND (ms.type = 'post')", "")
    for text in (cypher, untyped):
        result = execute(store, text, json_bytes=True)
        assert same_rows(json.loads(result.data_json), want)
    assert selects and not any("kind" in s for s in selects)
    for wrong in (cypher.replace("(ns.type = 'pre')", "(ns.type = 'post')"), cypher.replace("'post')", "'pre')")):
        assert execute(store, wrong, json_bytes=True).row_count == 0
        assert execute(store, wrong).data == []
    typed = cypher.replace("as bodyId_post,", "as bodyId_post, ns.type as tpre, ms.type as tpost,")
    rows = execute(store, typed).data
    assert len(rows) == len(want) and {(r[2], r[3]) for r in rows} == {("pre", "post")}
