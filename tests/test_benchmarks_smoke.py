"""Smoke test of the query benchmark: every workload query, 1 repetition, on the session's small store.

It checks that benchmarks/queries.py runs end to end, writes its JSON, and that the pandas, polars and
DuckDB-on-Parquet baselines compute the same answers as flatprint (a correctness cross-check).
The release and store come from the session fixtures, so they are shared with the other tests.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench_doc(release_factory, store_factory, tmp_path_factory):
    release, store = release_factory(0), store_factory(0)
    out = tmp_path_factory.mktemp("bench-results")
    mp = pytest.MonkeyPatch()
    mp.setenv("FLATPRINT_HOME", str(tmp_path_factory.mktemp("flatprint-home")))
    try:
        queries = _load("queries")
        started = time.perf_counter()
        doc = queries.main(["--scale", "0.004", "--repeat", "1", "--release", str(release), "--store", str(store),
                            "--results-dir", str(out)])
        seconds = time.perf_counter() - started
    finally:
        mp.undo()
    return doc, out, seconds


def test_query_benchmark_writes_json(bench_doc):
    doc, out, seconds = bench_doc
    written = json.loads((out / "queries.json").read_text())
    assert written["name"] == "queries" and written["scale"] == 0.004
    names = [r["name"] for r in written["results"]]
    assert names == ["neurons_by_type", "neurons_by_regex", "neurons_by_roi", "adjacencies_1", "adjacencies_100",
                     "synapse_connections_pair", "shortest_paths_w5", "matrix_type", "matrix_roi",
                     "reach_2hops_100"]
    for r in written["results"]:
        fp = r["engines"]["flatprint"]
        assert fp["cold_s"] > 0 and fp["n_warm"] == 1 and fp["warm_median_s"] > 0
        assert r["engines"]["pandas"]["load_warm_median_s"] > 0
    print(f"query benchmark at scale 0.004 took {seconds:.1f} s")


def test_baselines_agree_with_flatprint(bench_doc):
    doc, _, _ = bench_doc
    bad = [(r["name"], e, c.get("error") or c.get("answer"), r["answer"])
           for r in doc["results"] for e, c in r["engines"].items()
           if e != "flatprint" and not c.get("agrees_with_flatprint")]
    assert not bad, bad
    assert doc["all_baselines_agree"]
    # the answers are not trivially empty
    by_name = {r["name"]: r["answer"] for r in doc["results"]}
    assert by_name["neurons_by_type"]["neurons"]["rows"] == 2          # the DNge104 pair
    assert by_name["adjacencies_100"]["rows"] > 0 and by_name["matrix_type"]["rows"] > 0
    assert by_name["shortest_paths_w5"]["paths"] >= 1


def test_render_reads_every_result(bench_doc, tmp_path):
    _, out, _ = bench_doc
    (out / "other.json").write_text(json.dumps({"name": "other", "date": "2026-01-01",
                                                "results": [{"name": "x", "seconds": 1.5}]}))
    render = _load("render")
    md = render.render(out, tmp_path / "benchmarks.md")
    text = md.read_text()
    assert "## Queries" in text and "## other" in text and "indicative only" in text
    assert (tmp_path / "benchmarks-queries.png").stat().st_size > 1000
