"""roiInfo texts written column-wise (cypher/neuronanswers.py: roi_info_texts and
connection_roi_info_texts over one Arrow take of text pieces): byte-identical to the JSON the
dicts give (json.dumps, compact, non-ASCII kept, keys in the order ingest sorts its pieces) and to
the texts ingest stored, for neurons with no, one and many ROIs, names that need escaping, NULL
counts and counts beyond the kept number texts."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest

from flatprint.cypher import neuronanswers
from flatprint.store.neurongraph import neuron_graph
from flatprint.store.neurontable import NeuronTable, neuron_table

NAMES = ["AL(R)", 'say "hi"', "back\\slash", "tab\there", "línea", "ctl\x01", "zz/top", "ĀB", "a b"]


def dumps(value) -> str:
    """JSON as neuPrint's texts have it: compact, non-ASCII characters written as they are."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def ingest_key_order(names) -> list[str]:
    """Ingest joins a neuron's '"name":{...' pieces in text order: the escaped names' order."""
    return sorted(names, key=lambda name: dumps(name)[1:])


def made_table(per_neuron: list[dict[str, tuple[int, int, int]]]) -> NeuronTable:
    """A neuron table holding ``per_neuron``: {roi: (pre, post, downstream)} (upstream and
    synweight derived, as ingest derives them); rows sorted by ROI code as the build sorts them."""
    names = sorted(NAMES)
    codes, counts, offsets = [], {c: [] for c in ("pre", "post", "downstream")}, [0]
    for rois in per_neuron:
        for name in sorted(rois, key=names.index):
            codes.append(names.index(name))
            for column, value in zip(("pre", "post", "downstream"), rois[name]):
                counts[column].append(value)
        offsets.append(len(codes))
    escaped = [dumps(n)[1:] for n in names]
    rank = np.empty(len(names), dtype=np.int64)
    rank[sorted(range(len(names)), key=escaped.__getitem__)] = np.arange(len(names))
    return NeuronTable(
        body_ids=np.arange(len(per_neuron), dtype=np.int64) + 100,
        columns=pa.table({"bodyId": np.arange(len(per_neuron)) + 100}),
        float_columns={},
        column_types={},
        indexes={},
        roi_offsets=np.asarray(offsets, dtype=np.int64),
        roi_code=np.asarray(codes, dtype=np.int16),
        roi_names=names,
        roi_counts={c: np.asarray(v, dtype=np.uint32) for c, v in counts.items()},
        roi_json_rank=rank,
    )


def expected_text(rois: dict[str, tuple[int, int, int]]) -> str:
    info = {}
    for name in ingest_key_order(rois):
        pre, post, downstream = rois[name]
        info[name] = {
            "pre": pre,
            "post": post,
            "downstream": downstream,
            "upstream": post,
            "synweight": downstream + post,
        }
    assert list(info) == ingest_key_order(rois)
    return dumps(info)


def sample_neurons(seed: int, count: int, largest: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    neurons = [{}, {NAMES[1]: (1, 0, 0)}, {NAMES[0]: (0, 0, 0)}, {name: (3, 4, 5) for name in NAMES}]
    for _ in range(count):
        chosen = rng.choice(NAMES, size=int(rng.integers(0, len(NAMES) + 1)), replace=False)
        neurons.append({str(n): tuple(int(v) for v in rng.integers(0, largest, 3)) for n in chosen})
    return neurons


@pytest.mark.parametrize("largest", [10, 5000, 3_000_000])
def test_neuron_roi_info_texts_equal_json_of_their_counts(largest, monkeypatch):
    monkeypatch.setattr(neuronanswers, "NUMBER_TEXTS", 4096)  # larger counts: their texts made in the call
    neurons = sample_neurons(largest, 60, largest)
    table = made_table(neurons)
    positions = np.array([3, 0, 1, 2, *range(len(neurons)), 0, 3], dtype=np.int64)  # any order, repeats
    texts = neuronanswers.roi_info_texts(table, positions)
    assert texts == [expected_text(neurons[p]) for p in positions.tolist()]
    assert texts[1] == "{}" and json.loads(texts[2]) == {
        'say "hi"': {"pre": 1, "post": 0, "downstream": 0, "upstream": 0, "synweight": 0}
    }


def test_roi_info_texts_of_no_neurons_and_a_count_beyond_the_kept_texts():
    neurons = [*sample_neurons(1, 10, 50), {name: (1, 2, 3) for name in NAMES}]
    table = made_table(neurons)
    assert neuronanswers.roi_info_texts(table, np.zeros(0, dtype=np.int64)) == []
    assert neuronanswers.roi_info_texts(table, np.array([0, 0])) == ["{}", "{}"]  # no ROI rows at all
    first = neuronanswers.roi_info_texts(table, np.arange(len(neurons)))
    table.roi_counts["pre"][-1] = 70_000  # a later, larger count: its text made in the call
    neurons[-1][sorted(NAMES)[-1]] = (70_000, 2, 3)  # the last row: the last neuron's last ROI by name
    second = neuronanswers.roi_info_texts(table, np.arange(len(neurons)))
    assert first[:-1] == second[:-1] == [expected_text(n) for n in neurons[:-1]]
    assert second[-1] == expected_text(neurons[-1]) and "70000" in second[-1]


def test_connection_roi_info_texts_write_null_counts_as_null():
    names = np.array(sorted(NAMES), dtype=object)
    # pair 0: two ROIs (one count NULL), pair 1: none, pair 2: one
    graph = SimpleNamespace(
        roi_names=names,
        roi_offsets=np.array([0, 2, 2, 3], dtype=np.int64),
        roi_code=np.array([0, 4, 8], dtype=np.int16),
        roi_pre=np.array([2.0, np.nan, 7.0]),
        roi_weight=np.array([5.0, 1.0, 12.0]),
    )
    graph.roi_rows = lambda pairs: (
        np.concatenate([np.arange(graph.roi_offsets[p], graph.roi_offsets[p + 1]) for p in pairs]).astype(np.int64),
        np.repeat(np.arange(len(pairs)), [graph.roi_offsets[p + 1] - graph.roi_offsets[p] for p in pairs]),
    )
    texts = neuronanswers.connection_roi_info_texts(graph, np.array([0, 1, 2, 0]))
    want = [
        {names[0]: {"pre": 2, "post": 5}, names[4]: {"pre": None, "post": 1}},
        {},
        {names[8]: {"pre": 7, "post": 12}},
    ]
    assert texts == [dumps(w) for w in [*want, want[0]]]


def test_store_texts_for_neurons_with_no_one_and_many_rois(store):
    """Against what ingest stored, in a shuffled order with repeats (the unit tests above build the
    table by hand; this one reads the store's)."""
    table = neuron_table(store)
    sizes = np.diff(table.roi_offsets)
    # a ROI implies its parents (synthetic neurons have dozens): the fewest and the most here, none
    # and one in the hand-built tables above
    picks = [
        np.flatnonzero(sizes == sizes.min())[:5],
        np.flatnonzero(sizes == sizes.max())[:5],
        np.arange(0, len(sizes), 7),
    ]
    positions = np.random.default_rng(0).permutation(np.concatenate([*picks, picks[1][:3]]))
    stored = dict(store.cursor().execute("SELECT bodyId, roiInfo FROM neurons").fetchall())
    texts = neuronanswers.roi_info_texts(table, positions)
    assert texts == [stored[int(table.body_ids[p])] for p in positions.tolist()]
    graph = neuron_graph(store)
    pairs = np.random.default_rng(1).permutation(len(graph.pre))[:200]
    want = dict(
        ((a, b), t)
        for a, b, t in store.cursor()
        .execute(
            "SELECT body_pre, body_post, '{' || string_agg(to_json(roi)::VARCHAR || ':{\"pre\":'"
            " || coalesce(pre::VARCHAR, 'null') || ',\"post\":' || coalesce(weight::VARCHAR, 'null') || '}',"
            " ',' ORDER BY roi) || '}'"
            " FROM neuron_connection_rois GROUP BY ALL"
        )
        .fetchall()
    )
    got = neuronanswers.connection_roi_info_texts(graph, pairs)
    for pair, text in zip(pairs.tolist(), got):
        key = (int(graph.body_ids[graph.pre[pair]]), int(graph.body_ids[graph.post[pair]]))
        assert text == want.get(key, "{}")
