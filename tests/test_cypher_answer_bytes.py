"""The JSON endpoint's rows written as bytes column-wise (cypher/jsonanswer.py) and spliced into its
answer: parsed, they are the rows pandas finds on the raw feathers (exact values and JSON types, the
point's crs included); they are byte for byte what encoding the Python rows writes; and the cell
and map writers hold at the edges (empty answers, nulls, NaN, 0.5 and 1e-05, large int64 ids,
ROI names that sort among the property keys)."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import numpy as np
import orjson
import pyarrow as pa
import pytest
from oracle import load, oracle_segments
from test_cypher_columnwise import (  # noqa: F401  (fixtures used by name)
    NT_NAMES,
    PAIR_CYPHER,
    SYNAPSES_CYPHER,
    oracle_pair_rows,
    oracle_synapse_rows,
    strong_pair,
    synapse_points,
)

from flatprint.cypher import batchcache, jsonanswer
from flatprint.cypher.engine import CypherResult, execute
from flatprint.server import open_stores
from flatprint.server.http import _ORJSON_OPTIONS, encode_json

warnings.filterwarnings("ignore", category=DeprecationWarning)
from fastapi.testclient import TestClient  # noqa: E402

from flatprint.server.app import create_app  # noqa: E402
from flatprint.server.views.custom import answer_json  # noqa: E402

DS = "male-cns:v0.9"
#: a Point's crs as neuPrint writes it (values.POINT_CRS, known on paper)
CRS = {
    "srid": 9157,
    "name": "cartesian-3d",
    "type": "link",
    "properties": {"href": "http://spatialreference.org/ref/sr-org/9157/ogcwkt/", "type": "ogcwkt"},
}


@pytest.fixture(scope="module")
def api(store_path):
    return TestClient(create_app(open_stores([str(store_path)])))


def exact(value):
    """A value with every JSON type kept (1 and 1.0 differ, True and 1 differ), floats exact."""
    if isinstance(value, dict):
        return ("map", tuple(sorted((k, exact(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("list", tuple(exact(v) for v in value))
    return (type(value).__name__, value)


def same_rows(got, want) -> bool:
    return sorted(map(repr, map(exact, got))) == sorted(map(repr, map(exact, want)))


def spliced(api, cypher) -> dict:
    """The JSON endpoint's answer (its bytes parsed)."""
    r = api.post("/api/custom/custom", json={"cypher": cypher, "dataset": DS})
    assert r.status_code == 200, r.text
    return json.loads(r.content)


def test_pair_bytes_parse_to_the_oracle(store, api, release_dir, synapse_points, strong_pair):  # noqa: F811
    cypher = PAIR_CYPHER.format(pre=strong_pair[0], post=strong_pair[1])
    want = oracle_pair_rows(release_dir, synapse_points, *strong_pair)
    assert len(want) > 20
    result = execute(store, cypher, json_bytes=True)
    assert result.data_json is not None and result.arrow is None, "the pair's rows should be written as bytes"
    assert result.row_count == len(want)
    assert same_rows(json.loads(result.data_json), want)
    answer = spliced(api, cypher)
    assert same_rows(answer["data"], want)
    assert answer["columns"] == result.columns and answer["debug"].startswith(f"flatprint: {len(want)} rows")
    # the rows parsed on demand, and the bytes those rows encode to
    assert same_rows(result.data, want)
    rows = execute(store, cypher).data
    assert result.data_json == encode_json(rows)


def test_whole_synapse_node_bytes_parse_to_the_oracle(store, api, release_dir, synapse_points, strong_pair):  # noqa: F811
    bodies = list(strong_pair)
    cypher = SYNAPSES_CYPHER.format(bodies=", ".join(map(str, bodies)))
    want = oracle_synapse_rows(release_dir, synapse_points, bodies)
    for _, props in want:
        props["location"]["crs"] = CRS
    result = execute(store, cypher, json_bytes=True)
    assert result.data_json is not None
    got = json.loads(result.data_json)
    assert same_rows(got, want)
    assert same_rows(spliced(api, cypher)["data"], want)
    # keys sorted in every map, as neuPrintHTTP's encoder writes them
    for _, props in got[:50]:
        assert list(props) == sorted(props) and list(props["location"]) == ["coordinates", "crs", "type"]
    assert result.data_json == encode_json(execute(store, cypher).data)


def test_empty_answer(store, api, release_dir):
    weights = load(release_dir, "weights")
    connected = set(zip(weights.body_pre, weights.body_post))
    bodies = sorted(set(weights.body_pre))[:40]
    pre, post = next((a, b) for a in bodies for b in bodies if a != b and (a, b) not in connected)
    cypher = PAIR_CYPHER.format(pre=pre, post=post)
    result = execute(store, cypher, json_bytes=True)
    assert result.data_json == b"[]" and result.row_count == 0 and result.data == []
    answer = spliced(api, cypher)
    assert answer["data"] == [] and len(answer["columns"]) == 14


def test_type_selections_and_other_filters_match_the_row_path(store, strong_pair):  # noqa: F811
    """Other shapes of the step (type conditions, ROI and confidence filters, whole nodes with some
    keys removed): the bytes parse to the row path's rows (compared with pandas in
    test_cypher_synapse_answers) and are the bytes those rows encode to."""
    pre, post = strong_pair
    shapes = [
        PAIR_CYPHER.format(pre=pre, post=post).replace("ns.confidence > 0.5", "ns.confidence > 0.9"),
        f"MATCH (n:Neuron)-[:Contains]->(:SynapseSet)-[:Contains]->(s:Synapse) WHERE n.bodyId = {pre} "
        "RETURN n.bodyId AS b, s.type AS t, s.confidence AS c, s.location.x AS x, "
        "apoc.map.removeKeys(s, ['location']) AS m, s.ntGabaProb AS gaba",
        f"MATCH (n:Neuron)-[:Contains]->(:SynapseSet)-[:Contains]->(s:Synapse) WHERE n.bodyId IN [{pre}, {post}] "
        "AND s.type = 'post' RETURN s, n.bodyId AS b",
    ]
    for cypher in shapes:
        result = execute(store, cypher, json_bytes=True)
        rows = execute(store, cypher).data
        assert result.data_json is not None and rows
        assert same_rows(json.loads(result.data_json), rows)
        assert result.data_json == encode_json(rows)


def test_batches_from_the_batch_cache_are_written_as_bytes(
    store,
    release_dir,
    synapse_points,  # noqa: F811
    strong_pair,  # noqa: F811
    monkeypatch,
):
    """neuprint-python's batches of one type pair (one target body each): from the second batch on
    the batch cache's kept general answer writes each batch's bytes; they parse to pandas' rows of
    each pair and are the bytes of the row path's rows."""
    segments = oracle_segments(release_dir)
    pre, post = strong_pair
    kind, post_kind = segments.loc[pre, "type"], segments.loc[post, "type"]
    same_type = segments.index[segments["is_neuron"] & (segments["type"] == post_kind)]
    targets = [post, *sorted(int(b) for b in same_type if b != post)[:3]]
    sources = sorted(int(b) for b in segments.index[segments["is_neuron"] & (segments["type"] == kind)])
    assert len(targets) > 2
    monkeypatch.setattr(batchcache, "_CACHES", {})  # a fresh batch cache for the store
    kept = []
    original = batchcache.GeneralAnswer.answer_json
    monkeypatch.setattr(batchcache.GeneralAnswer, "answer_json", lambda *a: kept.append(1) or original(*a))
    for target in targets:
        cypher = PAIR_CYPHER.replace(
            "n.bodyId = {pre} AND m.bodyId = {post}",
            f"n.type = '{kind}' AND m.bodyId = {target} AND m.type = '{post_kind}'",
        )
        result = execute(store, cypher, json_bytes=True)
        assert result.data_json is not None
        want = [row for source in sources for row in oracle_pair_rows(release_dir, synapse_points, source, target)]
        assert same_rows(json.loads(result.data_json), want)
        assert result.data_json == encode_json(execute(store, cypher).data)
    assert len(kept) == len(targets) - 1  # the first batch read alone


def test_a_first_batch_sent_again_then_others(
    store,
    release_dir,
    synapse_points,  # noqa: F811
    strong_pair,  # noqa: F811
    monkeypatch,
):
    """A batch sent again while it is its shape's first (a single-batch call repeated: its general
    query known without planning it) is still read alone; the next other batch builds the kept
    answer, and every batch after, the first too, comes from it. Rows against pandas' pair rows."""
    segments = oracle_segments(release_dir)
    pre, post = strong_pair
    kind, post_kind = segments.loc[pre, "type"], segments.loc[post, "type"]
    same_type = segments.index[segments["is_neuron"] & (segments["type"] == post_kind)]
    others = sorted(int(b) for b in same_type if b != post)[:1]
    sources = sorted(int(b) for b in segments.index[segments["is_neuron"] & (segments["type"] == kind)])
    assert others
    monkeypatch.setattr(batchcache, "_CACHES", {})
    kept = []
    original = batchcache.GeneralAnswer.answer_json
    monkeypatch.setattr(batchcache.GeneralAnswer, "answer_json", lambda *a: kept.append(1) or original(*a))
    again = []
    first_again = batchcache.BatchCache.first_again
    monkeypatch.setattr(batchcache.BatchCache, "first_again", lambda *a: again.append(first_again(*a)) or again[-1])
    sent = [post, post, post, others[0], others[0], post]
    from_kept = [0, 0, 0, 1, 1, 1]
    for target, was_kept in zip(sent, from_kept):
        cypher = PAIR_CYPHER.replace(
            "n.bodyId = {pre} AND m.bodyId = {post}",
            f"n.type = '{kind}' AND m.bodyId = {target} AND m.type = '{post_kind}'",
        )
        before = len(kept)
        result = execute(store, cypher, json_bytes=True)
        assert len(kept) - before == was_kept
        want = [row for source in sources for row in oracle_pair_rows(release_dir, synapse_points, source, target)]
        assert same_rows(json.loads(result.data_json), want)
    assert again.count(True) == 2  # the first batch sent again (2nd, 3rd): known without planning


# ---- the writers at their edges, against answers written on paper


def test_cells_at_their_edges():
    big = 2**62 + 12345  # int64 ids past 2**53 (a double would round them)
    columns = [
        pa.array([big, -(2**63), 2**63 - 1, 0], type=pa.int64()),
        pa.array([0.5, 1e-05, None, float("nan")], type=pa.float64()),
        pa.array([1.0, -0.0, float("inf"), 1e-7], type=pa.float64()),
        pa.array([1, None, 3, 4], type=pa.int32()),
        pa.array(['a "quoted" \\ name', None, "naïve ✓", "line\nbreak"], type=pa.string()),
        pa.array([True, False, None, True]),
        pa.array(['{"FB":true}', None, "{}", '{"x":0.5}'], type=pa.string()),
        pa.array([7, 8, 9, 10], type=pa.int64()),
    ]
    want = [
        [big, 0.5, 1.0, 1, 'a "quoted" \\ name', True, {"FB": True}, 7],
        [-(2**63), 1e-05, -0.0, None, None, False, None, 8],
        [2**63 - 1, None, None, 3, "naïve ✓", None, {}, 9],
        [0, None, 1e-07, 4, "line\nbreak", True, {"x": 0.5}, 10],
    ]
    written = jsonanswer.data_json(columns, {6}, 4)
    assert same_rows(orjson.loads(written), want) and orjson.loads(written)[0][0] == big
    assert written == orjson.dumps(want)
    assert jsonanswer.data_json(columns, {6}, 0) == b"[]"
    one = [c.slice(1, 1) for c in columns]
    assert orjson.loads(jsonanswer.data_json(one, {6}, 1)) == [want[1]]
    assert jsonanswer.data_json([pa.array([0.5, 2.0])], set(), 2) == b"[[0.5],[2.0]]"
    with pytest.raises(jsonanswer.NotWritten):
        jsonanswer.cell_texts(pa.array([[1]]))


def test_rows_framed_whatever_ends_them():
    """Each row's cells and brackets whether a run of numbers or a text cell starts or ends the rows,
    runs of both kinds side by side, one row or several, sliced columns (answers known on paper)."""
    ints = pa.array([1, -2, 3], type=pa.int64())
    doubles = pa.array([0.5, None, 2.0], type=pa.float64())
    texts = pa.array(["x", "y", None, "z"]).slice(1)
    maps = pa.array(['{"a":1}', None, "{}"])
    cases = [
        ([ints], set(), [[1], [-2], [3]]),
        ([doubles, ints], set(), [[0.5, 1], [None, -2], [2.0, 3]]),
        ([texts, ints, doubles], set(), [["y", 1, 0.5], [None, -2, None], ["z", 3, 2.0]]),
        ([ints, doubles, texts], set(), [[1, 0.5, "y"], [-2, None, None], [3, 2.0, "z"]]),
        ([ints, maps, doubles, maps], {1, 3}, [[1, {"a": 1}, 0.5, {"a": 1}], [-2, None, None, None], [3, {}, 2.0, {}]]),
        ([texts], set(), [["y"], [None], ["z"]]),
    ]
    for columns, map_indices, want in cases:
        assert jsonanswer.data_json(columns, map_indices, 3) == orjson.dumps(want)
        one = [c.slice(2, 1) for c in columns]
        assert jsonanswer.data_json(one, map_indices, 1) == orjson.dumps(want[2:])


def test_rows_in_parts_spliced_into_the_answer():
    """Rows written in parts (jsonanswer.data_json_parts: bytes and a view of the joined rows) are the
    bytes data_json writes, read as rows, and spliced into the endpoint's answer as encode_json writes
    it whole (answers known on paper)."""
    columns = [pa.array([1, 3], type=pa.int64()), pa.array(['{"a":1}', "{}"])]
    parts = jsonanswer.data_json_parts(columns, {1}, 2)
    assert len(parts) > 1 and b"".join(parts) == b'[[1,{"a":1}],[3,{}]]' == jsonanswer.data_json(columns, {1}, 2)
    result = CypherResult(["n", "m"], data_json=parts, row_count=2)
    answer = answer_json(result, 0.0015)
    want = {"columns": ["n", "m"], "data": [[1, {"a": 1}], [3, {}]], "debug": "flatprint: 2 rows in 1.5 ms"}
    assert answer == encode_json(want)
    assert result.data_json == b'[[1,{"a":1}],[3,{}]]' and result.data == want["data"]
    assert answer_json(result, 0.0015) == answer  # once joined, the same answer
    assert answer_json(CypherResult(["n"], data_json=b"[]", row_count=0), 0.0) == encode_json(
        {"columns": ["n"], "data": [], "debug": "flatprint: 0 rows in 0.0 ms"}
    )


def test_rows_are_written_with_the_endpoints_options():
    """jsonanswer.rows_json writes what the JSON endpoint's encoder writes for the same rows."""
    assert jsonanswer.ROW_OPTIONS == _ORJSON_OPTIONS
    columns = [[3, 2**62, None], [{"b": 1, "a": [0.5, None]}, {}, 'naïve "q"'], [True, 1e-05, -0.0]]
    assert jsonanswer.rows_json(columns) == encode_json([list(row) for row in zip(*columns)])
    assert jsonanswer.rows_json([[2**64]]) is None and jsonanswer.rows_json([]) is None


def model_with_rois(names_of_label):
    return SimpleNamespace(roi_names_of_label=names_of_label, nt_columns=["ntAcetylcholineProb", "ntGabaProb"])


def masked(values, kind):
    mask = [v is None for v in values]
    return np.ma.masked_array([0 if v is None else v for v in values], mask=mask, dtype=kind)


def test_maps_with_keys_sorted_among_roi_names():
    """ROI names below, between and above the property keys (lowercase names sort after
    'location'), flags of both ROI sets merged, NULL properties left out, flag-only maps."""
    model = model_with_rois(
        {
            ("primary", 1): ["FB", "CX", "gL(R)"],
            ("major", 2): ["CX", "zeta"],
            ("primary", 3): ["a'L(R)"],
        }
    )
    columns = {
        "kind": np.ma.masked_array(np.array(["pre", "post", "post", None], dtype=object), mask=[0, 0, 0, 1]),
        "conf": masked([0.5, 1e-05, None, 0.25], np.float64),
        "x": masked([1, 2, 3, 4], np.int64),
        "y": masked([5, 6, 7, 8], np.int64),
        "z": masked([9, 10, 11, 2**40], np.int64),
        "ntAcetylcholineProb": masked([0.125, None, None, 1.0], np.float64),
        "ntGabaProb": masked([1e-7, None, None, None], np.float64),
        "primary_label": masked([1, 3, None, 0], np.int64),
        "major_label": masked([2, None, 2, 0], np.int64),
    }
    point = {"coordinates": [1, 5, 9], "crs": CRS, "type": "Point"}
    want = [
        {
            "CX": True,
            "FB": True,
            "confidence": 0.5,
            "gL(R)": True,
            "location": point,
            "ntAcetylcholineProb": 0.125,
            "ntGabaProb": 1e-7,
            "type": "pre",
            "zeta": True,
        },
        {"a'L(R)": True, "confidence": 1e-05, "location": {**point, "coordinates": [2, 6, 10]}, "type": "post"},
        {"CX": True, "location": {**point, "coordinates": [3, 7, 11]}, "type": "post", "zeta": True},
        {"confidence": 0.25, "location": {**point, "coordinates": [4, 8, 2**40]}, "ntAcetylcholineProb": 1.0},
    ]
    texts = jsonanswer.synapse_map_json(model, None, columns).to_pylist()
    assert [json.loads(t) for t in texts] == want
    assert all(list(json.loads(t)) == sorted(json.loads(t)) for t in texts)
    assert texts == [orjson.dumps(m, option=orjson.OPT_SORT_KEYS).decode() for m in want]
    # fetch_synapse_connections' maps: type, confidence and location removed; flags alone where no NT
    removed = ("location", "confidence", "type")
    texts = jsonanswer.synapse_map_json(model, removed, columns).to_pylist()
    assert [json.loads(t) for t in texts] == [
        {"CX": True, "FB": True, "gL(R)": True, "ntAcetylcholineProb": 0.125, "ntGabaProb": 1e-7, "zeta": True},
        {"a'L(R)": True},
        {"CX": True, "zeta": True},
        {"ntAcetylcholineProb": 1.0},
    ]
    assert texts[2] == '{"CX":true,"zeta":true}'
    assert jsonanswer.synapse_map_json(model, removed, {c: v[:0] for c, v in columns.items()}).to_pylist() == []


def test_flag_only_maps_from_the_labels():
    """PSDs' maps from their labels alone: both ROI sets' names merged and sorted, a NULL label read
    as label 0, a synapse in no ROI ``{}``, a removed ROI name left out (texts known on paper)."""
    model = model_with_rois({("primary", 1): ["FB", "gL(R)"], ("major", 2): ["CX", "FB"], ("primary", 0): ["VNC"]})
    labels = {"primary_label": masked([1, None, 4, 1], np.int64), "major_label": masked([2, 2, 0, 0], np.int64)}
    removed = ("location", "confidence", "type")
    want = ['{"CX":true,"FB":true,"gL(R)":true}', '{"CX":true,"FB":true,"VNC":true}', "{}", '{"FB":true,"gL(R)":true}']
    assert jsonanswer.flag_maps(model, removed, labels).to_pylist() == want
    assert jsonanswer.flag_maps(model, (*removed, "FB"), labels).to_pylist()[0] == '{"CX":true,"gL(R)":true}'
    assert jsonanswer.flag_maps(model, removed, {c: v[:0] for c, v in labels.items()}).to_pylist() == []
    with pytest.raises(jsonanswer.NotWritten):  # a ROI named as a property still in the maps
        jsonanswer.flag_maps(model_with_rois({("primary", 1): ["ntGabaProb"]}), removed, labels)


def test_a_roi_named_as_a_property_is_not_written():
    model = model_with_rois({("primary", 1): ["confidence"]})
    columns = {
        "conf": masked([0.5], np.float64),
        "primary_label": masked([1], np.int64),
        "major_label": masked([0], np.int64),
    }
    columns.update({c: masked([None], np.float64) for c in NT_NAMES.values() if c in model.nt_columns})
    with pytest.raises(jsonanswer.NotWritten):
        jsonanswer.synapse_map_json(model, ("location", "type"), columns)


#: neuprint-python's fetch_synapses query (as it sends it, its comments left out)
NEUPRINT_SYNAPSES = """
    MATCH (n:Neuron)
    WHERE n.bodyId in [{bodies}]
    MATCH (n)-[:Contains]->(ss:SynapseSet),
          (ss)-[:Contains]->(s:Synapse)
    WITH n, s
    WHERE (s.confidence > {confidence})
    WITH DISTINCT n, s
    RETURN n.bodyId as bodyId,
           s.type as type,
           s.confidence as confidence,
           s.location.x as x,
           s.location.y as y,
           s.location.z as z,
           apoc.map.removeKeys(s, ['location', 'confidence', 'type']) as syn_info
"""


def test_neuprint_synapses_bytes_parse_to_the_oracle(store, release_dir, synapse_points, strong_pair):  # noqa: F811
    """fetch_synapses' rows (each synapse once, its map without location, confidence and type) for
    bodies with synapses and one without, at two confidence thresholds."""
    for bodies, confidence in ((list(strong_pair), 0.5), (list(strong_pair), 0.9), ([strong_pair[0], 1], 0.5)):
        want = []
        for body, props in oracle_synapse_rows(release_dir, synapse_points, bodies):
            if props["confidence"] > confidence:
                kind, conf, (x, y, z) = props.pop("type"), props.pop("confidence"), props.pop("location")["coordinates"]
                want.append([body, kind, conf, x, y, z, props])
        assert want
        cypher = NEUPRINT_SYNAPSES.format(bodies=", ".join(map(str, bodies)), confidence=confidence)
        result = execute(store, cypher, json_bytes=True)
        assert result.data_json is not None and result.row_count == len(want)
        assert same_rows(json.loads(result.data_json), want)
        assert result.data_json == encode_json(execute(store, cypher).data)


def test_keyed_numbers_with_nulls_anywhere():
    """``,"key":value`` per number written from the values held only: nulls first, between, last,
    all and none (texts known on paper)."""
    cases = [
        ([0.5, 2.0, 1.0, 0.25, 7.0], [True, False, True, False, True], [None, '"k":2.0', None, '"k":0.25', None]),
        ([0.5, 2.0], [False, False], ['"k":0.5', '"k":2.0']),
        ([0.5, 2.0], [True, True], [None, None]),
        ([3.0], [False], ['"k":3.0']),
    ]
    for values, mask, want in cases:
        got = jsonanswer._keyed_numbers("k", np.ma.masked_array(values, mask=mask)).to_pylist()
        assert got == [None if w is None else "," + w for w in want]


def test_maps_opened_in_place_or_by_the_kernel():
    """Maps written ``,...}`` get their first comma made ``{`` (texts known on paper), also in a
    slice of a larger array; with a map holding nothing (``}``) it is written ``{}``."""
    maps = pa.array([',"a":1}', ',"b":true,"c":2.5}', ',"d":3}'])
    assert jsonanswer._opened(maps).to_pylist() == ['{"a":1}', '{"b":true,"c":2.5}', '{"d":3}']
    assert jsonanswer._opened(maps.slice(1)).to_pylist() == ['{"b":true,"c":2.5}', '{"d":3}']
    assert jsonanswer._opened(pa.array([',"a":1}', "}"])).to_pylist() == ['{"a":1}', "{}"]
    assert jsonanswer._opened(pa.array([], type=pa.string())).to_pylist() == []


def test_maps_holding_nothing_opened_among_others():
    """Maps holding nothing (``}``: a PSD in no ROI) first, last, adjacent, alone and in a slice
    are written ``{}``, the others opened (texts known on paper); null maps take the kernel."""
    texts = ["}", ',"a":1}', "}", "}", ',"b":true,"c":2.5}', "}"]
    want = ["{}", '{"a":1}', "{}", "{}", '{"b":true,"c":2.5}', "{}"]
    assert jsonanswer._opened(pa.array(texts)).to_pylist() == want
    assert jsonanswer._opened(pa.array(["x", *texts]).slice(1)).to_pylist() == want
    assert jsonanswer._opened(pa.array(texts).slice(2, 3)).to_pylist() == want[2:5]
    assert jsonanswer._opened(pa.array(["}"])).to_pylist() == ["{}"]
    assert jsonanswer._opened(pa.array([',"a":1}', None])).to_pylist() == ['{"a":1}', None]
