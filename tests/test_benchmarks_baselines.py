"""The prepared baselines' two prepare modes (benchmarks/baselines.py): in RAM and streamed batch by batch.

The streamed prepare builds the neuron-level tables from the feathers one record batch at a time; it must
give the very tables the in-RAM prepare builds from whole columns (an independent route: pandas/polars
group-bys on whole frames against numpy key counting over batches), hence the same answers on every
neuron-level workload item, and report the synapse-level items as not run, with the bound.
The cross-check of both against flatprint's answers is test_streamed_baselines_agree_with_flatprint.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


B = _load("baselines")
NEURON_LEVEL = ["neurons_by_type", "neurons_by_regex", "neurons_by_roi", "adjacencies", "shortest_paths"]
NEURON_LEVEL += ["matrix_type", "matrix_roi", "reach"]
ARRAYS = ["neuron_ids", "traced", "roi_counts_key", "nn_pre", "nn_post", "w5_pre", "w5_post"]
ARRAYS += ["w5_post_sorted", "w5_pre_by_post", "conn_roi_pre", "conn_roi_by_post", "conn_roi_post_sorted"]


@pytest.fixture(scope="module", params=["pandas", "polars"])
def prepared(request, release_dir):
    cls = {"pandas": B.PandasEngine, "polars": B.PolarsEngine}[request.param]
    ram, stream = cls(release_dir, mode="ram"), cls(release_dir, mode="stream")
    return request.param, ram, ram.prepare(), stream, stream.prepare()


def _params(eng) -> dict:
    """Parameters for every neuron-level item, taken from the prepared tables (the same for both modes)."""
    ids = eng.neuron_ids
    polars = hasattr(eng, "pneurons")
    types = pd.Series(eng.pneurons["type"].to_list() if polars else eng.neurons["type"].astype(object)).dropna()
    roi = eng.proi["roi"][0] if polars else eng.roi_counts["roi"].iloc[0]
    common = types.value_counts().index[0]
    step = max(len(ids) // 100, 1)
    return {
        "neurons_by_type": {"type": common},
        "neurons_by_regex": {"regex": f"{common[:2]}.*"},
        "neurons_by_roi": {"roi": str(roi)},
        "adjacencies": {"bodies": [int(b) for b in ids[::step][:100]]},
        "shortest_paths": {"src": int(eng.w5_pre[0]), "dst": int(eng.traced[len(eng.traced) // 2])},
        "matrix_type": {},
        "matrix_roi": {},
        "reach": {"bodies": [int(b) for b in ids[::step][:100]], "hops": 2},
    }


def test_modes_are_what_was_asked_and_auto_fits_small_scales(prepared):
    name, _ram, ram_info, _stream, stream_info = prepared
    assert ram_info["mode"] == "ram" and stream_info["mode"] == "stream"
    assert "synapses" in ram_info["counts"] and "synapses" not in stream_info["counts"]
    rows = stream_info["streamed_rows"]
    assert rows["syn-partners"] == ram_info["counts"]["synapses"] == stream_info["synapse_rows"]
    assert rows["syn-points"] > 0 and rows["tbar-nt"] > 0 and rows["weights"] > 0
    assert stream_info["projected_in_ram_peak_bytes"] == rows["syn-partners"] * B.IN_RAM_PEAK_BYTES_PER_SYNAPSE[name]
    assert ram_info["counts"] | {"synapses": 0} == stream_info["counts"] | {"synapses": 0}


def test_streamed_tables_equal_the_in_ram_ones(prepared):
    name, ram, _, stream, _ = prepared
    for attr in ARRAYS:
        a, b = getattr(ram, attr), getattr(stream, attr)
        assert a.dtype == b.dtype and np.array_equal(a, b), attr
    if name == "pandas":
        assert list(ram.rois) == list(stream.rois)
        for attr in ("neurons", "roi_counts", "conn4", "conn_roi"):
            pd.testing.assert_frame_equal(getattr(ram, attr), getattr(stream, attr), obj=attr)
        assert np.array_equal(ram.nn_w, stream.nn_w)
    else:
        for attr in ("pneurons", "proi", "pconn_roi", "pnn"):
            a, b = getattr(ram, attr), getattr(stream, attr)
            assert a.schema == b.schema and a.equals(b), attr
        # the group-by's row order is arbitrary: compared sorted, categoricals as text
        a, b = (e.pconn4.with_columns(e.pl.col("roi_pre", "roi_post").cast(e.pl.String)) for e in (ram, stream))
        assert a.schema == b.schema and a.sort(a.columns).equals(b.sort(b.columns))
        assert ram.pconn4.schema == stream.pconn4.schema


def test_streamed_answers_equal_the_in_ram_ones(prepared):
    queries = _load("queries")
    name, ram, _, stream, _ = prepared
    params = _params(ram)
    for method in NEURON_LEVEL:
        a, b = getattr(ram, method)(params[method]), getattr(stream, method)(params[method])
        a = {k: queries.normalise(k, v) for k, v in a.items()}
        b = {k: queries.normalise(k, v) for k, v in b.items()}
        assert queries.compare_answers(a, b) is None, method
    assert sum(len(v) for v in ram.adjacencies(params["adjacencies"]).values()) > 0


def test_streamed_mode_says_what_bounds_the_synapse_level_items(prepared):
    from graphdb import NotRun

    _, ram, _, stream, info = prepared
    pair = {"pre": [int(ram.nn_pre[0])], "post": [int(ram.nn_post[0])]}
    assert len(ram.synapse_pair(pair)["synapses"]) >= 0  # in RAM: answered
    rows = f"{info['synapse_rows']:,} syn-partners rows"
    for method, p in (("synapse_pair", pair), ("adjacencies_segments", {"bodies": pair["pre"]})):
        with pytest.raises(NotRun, match=rows):
            getattr(stream, method)(p)


def test_auto_mode_follows_the_projection(release_dir, monkeypatch):
    partners = release_dir / B.table_files()["syn-partners"]
    rows = B.feather_rows(partners)
    assert B.choose_prepare_mode("polars", partners)[0] == "ram"  # a small release fits
    monkeypatch.setattr(B, "MEMORY_LIMIT_BYTES", rows * B.IN_RAM_PEAK_BYTES_PER_SYNAPSE["polars"] - 1)
    mode, projection = B.choose_prepare_mode("polars", partners)
    assert mode == "stream" and projection["synapse_rows"] == rows
    assert B.choose_prepare_mode("polars", partners, "ram")[0] == "ram"  # an explicit mode wins
    with pytest.raises(ValueError, match="prepare mode 'disk'"):
        B.PolarsEngine(release_dir, mode="disk")


def test_key_counter_matches_a_whole_count():
    rng = np.random.default_rng(3)
    batches = [rng.integers(0, 5000, size=n) for n in (0, 700, 3000, 1, 2500)]
    counter = B.KeyCounter(flush=1000)  # several reductions and merges
    for b in batches:
        counter.add(b)
    counter.add(np.array([7, 4999]), np.array([5, 2]))  # keys already reduced, with their counts
    keys, counts = counter.result()
    expect_keys, expect_counts = np.unique(np.concatenate([*batches, [7] * 5, [4999] * 2]), return_counts=True)
    assert np.array_equal(keys, expect_keys) and np.array_equal(counts, expect_counts)
    assert B.KeyCounter().result()[0].size == 0


def test_feather_batches_name_a_missing_column(release_dir):
    path = release_dir / B.table_files()["weights"]
    with pytest.raises(ValueError, match=r"connectome-weights.*no column\(s\) \['wieght'\]"):
        next(B.feather_batches(path, ["body_pre", "wieght"]))
    batches = list(B.feather_batches(path, ["weight"]))
    assert sum(b.num_rows for b in batches) == B.feather_rows(path) and batches[0].schema.names == ["weight"]


def test_streamed_baselines_agree_with_flatprint(release_dir, store_path, tmp_path):
    """The harness end to end with the streamed prepare: every neuron-level item agrees with flatprint."""
    queries = _load("queries")
    doc = queries.main(
        ["--scale", "0.004", "--repeat", "1", "--release", str(release_dir), "--store", str(store_path)]
        + ["--engines", "pandas", "polars", "--baseline-prepare", "stream", "--results-dir", str(tmp_path)]
    )
    assert doc["all_baselines_agree"]
    for e in ("pandas", "polars"):
        assert doc["engines"][e]["load"]["mode"] == "stream"
    synapse_level = {"synapse_connections_pair", "synapse_connections_types", "adjacencies_segments_100"}
    for r in doc["results"]:
        for e in ("pandas", "polars"):
            c = r["engines"][e]
            if r["name"] in synapse_level:
                assert "syn-partners rows" in c["not_run"] and c["agrees_with_flatprint"] is None
            else:
                assert c["agrees_with_flatprint"] is True, (r["name"], e, c)


def test_graph_db_streamed_load_answers_as_the_whole_column_load(release_dir, tmp_path):
    graphdb, queries = _load("graphdb"), _load("queries")
    whole = graphdb.GraphDBEngine(release_dir, tmp_path / "whole", mode="ram")
    streamed = graphdb.GraphDBEngine(release_dir, tmp_path / "streamed", mode="stream")
    try:
        a_info, b_info = whole.load(), streamed.load()
        assert a_info["mode"] == "ram" and b_info["mode"] == "stream"
        assert a_info["counts"] == b_info["counts"] and b_info["counts"]["ConnectsToRoi"] > 0
        ref = B.PandasEngine(release_dir, mode="ram")
        ref.prepare()
        params = _params(ref)
        for method in NEURON_LEVEL:
            a, b = getattr(whole, method)(params[method]), getattr(streamed, method)(params[method])
            a = {k: queries.normalise(k, v) for k, v in a.items()}
            b = {k: queries.normalise(k, v) for k, v in b.items()}
            assert queries.compare_answers(a, b) is None, method
    finally:
        whole.close()
        streamed.close()
