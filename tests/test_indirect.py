"""fetch_indirect (effective connectivity over k hops) against answers known on paper and against an
independent dense NumPy oracle built from the raw feathers of the 0.01 synthetic release.

The oracle reads connectome-weights, body-annotations/body-stats (the :Neuron rule, tests/oracle.py)
and body-neurotransmitters with pandas, builds the dense input-fraction matrix and takes its powers
with numpy.linalg.matrix_power; nothing in it calls flatprint.
"""

from __future__ import annotations

import shutil

import duckdb
import numpy as np
import pandas as pd
import pytest
from oracle import load, oracle_segments

from flatprint import Client, NeuronCriteria as NC, fetch_indirect
from flatprint.errors import QueryError
from flatprint.query.indirect import clear_matrix_cache, graph_matrix

ORACLE_SCALE, ORACLE_SEED = 0.01, 1
SIGN = {"acetylcholine": 1.0, "gaba": -1.0, "glutamate": -1.0}


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def oracle_release(release_factory):
    return release_factory(ORACLE_SEED, ORACLE_SCALE)


@pytest.fixture(scope="module")
def oracle_store(store_factory):
    return store_factory(ORACLE_SEED, ORACLE_SCALE)


@pytest.fixture(scope="module")
def client(oracle_store):
    c = Client(oracle_store)
    yield c
    c.close()


def handmade(tmp_path, base, neurons: dict, edges: list[tuple[int, int, int]]) -> Client:
    """A copy of a real store whose segments and connections are replaced by a graph drawn on paper.

    ``neurons``: bodyId -> (type, predictedNt, is_neuron); ``edges``: (pre, post, weight)."""
    path = tmp_path / "handmade.duckdb"
    shutil.copy(base, path)
    con = duckdb.connect(str(path))
    for table in ("segments", "connections", "connections_by_post"):
        con.execute(f"DELETE FROM {table}")
    for body, (typ, nt, is_neuron) in sorted(neurons.items()):
        con.execute(
            "INSERT INTO segments (bodyId, type, instance, predictedNt, is_neuron) VALUES (?, ?, ?, ?, ?)",
            [body, typ, None if typ is None else f"{typ}_R", nt, is_neuron],
        )
    for pre, post, weight in sorted(edges):
        con.execute(
            "INSERT INTO connections (body_pre, body_post, weight, weight_hp) VALUES (?, ?, ?, ?)",
            [pre, post, weight, weight],
        )
    for pre, post, weight in sorted(edges, key=lambda e: (e[1], e[0])):
        con.execute(
            "INSERT INTO connections_by_post (body_pre, body_post, weight, weight_hp) VALUES (?, ?, ?, ?)",
            [pre, post, weight, weight],
        )
    con.close()
    return Client(path)


def as_dict(df: pd.DataFrame, hop: int | None = None) -> dict:
    if hop is not None:
        df = df[df["hop"] == hop]
    return {(a, b): w for a, b, w in zip(df.iloc[:, 0], df.iloc[:, 1], df["weight"])}


# ------------------------------------------------------------------------------------------ on paper
def test_chain(tmp_path, oracle_store):
    # A -> B (10) -> C (5); X -> C (5): C takes half its input from B, B all of its input from A.
    c = handmade(
        tmp_path,
        oracle_store,
        {
            1: ("A", "acetylcholine", True),
            2: ("B", "acetylcholine", True),
            3: ("C", "acetylcholine", True),
            4: ("X", "acetylcholine", True),
        },
        [(1, 2, 10), (2, 3, 5), (4, 3, 5)],
    )
    per_hop, summed = fetch_indirect(1, 3, hops=3, groupby=None, client=c)
    assert list(per_hop.columns) == ["bodyId_pre", "bodyId_post", "hop", "weight"]
    assert list(summed.columns) == ["bodyId_pre", "bodyId_post", "weight"]
    assert as_dict(per_hop, 1) == {} and as_dict(per_hop, 3) == {}
    assert as_dict(per_hop, 2) == {(1, 3): pytest.approx(0.5)}
    assert as_dict(summed) == {(1, 3): pytest.approx(0.5)}
    # every target: A reaches B at hop 1 (fraction 1) and C at hop 2
    per_hop, summed = fetch_indirect("A", None, hops=2, groupby="type", client=c)
    assert list(per_hop.columns) == ["type_pre", "type_post", "hop", "weight"]
    assert as_dict(per_hop, 1) == {("A", "B"): pytest.approx(1.0)}
    assert as_dict(per_hop, 2) == {("A", "C"): pytest.approx(0.5)}
    # output fractions: A sends all of its output to B, B all of its output to C
    per_hop, _ = fetch_indirect("A", "C", hops=2, groupby="type", normalize="output", client=c)
    assert as_dict(per_hop, 2) == {("A", "C"): pytest.approx(1.0)}


def test_diamond(tmp_path, oracle_store):
    # A -> B (2), A -> C (6), B -> D (4), C -> D (4), E -> D (8): D gets 1/4 from B and 1/4 from C;
    # B and C get everything from A, so A reaches D with 1/4 + 1/4 at hop 2.
    c = handmade(
        tmp_path,
        oracle_store,
        {b: (t, "acetylcholine", True) for b, t in [(1, "A"), (2, "B"), (3, "C"), (4, "D"), (5, "E")]},
        [(1, 2, 2), (1, 3, 6), (2, 4, 4), (3, 4, 4), (5, 4, 8)],
    )
    per_hop, summed = fetch_indirect(1, 4, hops=2, groupby=None, client=c)
    assert as_dict(per_hop, 2) == {(1, 4): pytest.approx(0.5)}
    # output fractions: A sends 1/4 to B, 3/4 to C; each sends all to D: 1/4 + 3/4
    per_hop, _ = fetch_indirect(1, 4, hops=2, groupby=None, normalize="output", client=c)
    assert as_dict(per_hop, 2) == {(1, 4): pytest.approx(1.0)}


def test_sign_flip(tmp_path, oracle_store):
    # A (ACh) -> B (GABA) -> C (glutamate) -> D (ACh), one input each: |fraction| 1 everywhere.
    neurons = {
        1: ("A", "acetylcholine", True),
        2: ("B", "gaba", True),
        3: ("C", "glutamate", True),
        4: ("D", "acetylcholine", True),
        5: ("M", "dopamine", True),
        6: ("U", None, True),
    }
    c = handmade(tmp_path, oracle_store, neurons, [(1, 2, 3), (2, 3, 3), (3, 4, 3), (5, 6, 3), (6, 1, 3)])
    per_hop, _ = fetch_indirect([1, 2, 3, 5], None, hops=3, groupby=None, signed=True, client=c)
    assert as_dict(per_hop, 1) == {(1, 2): 1.0, (2, 3): -1.0, (3, 4): -1.0, (5, 6): 1.0}
    # ACh then GABA: inhibition; GABA then glutamate: two inversions, excitation
    assert as_dict(per_hop, 2) == {(1, 3): -1.0, (2, 4): 1.0, (5, 1): 1.0}
    assert as_dict(per_hop, 3) == {(1, 4): 1.0, (5, 2): 1.0}
    unsigned, _ = fetch_indirect(1, None, hops=3, groupby=None, client=c)
    assert set(unsigned["weight"]) == {1.0}
    # a mapping overrides: dopamine inhibitory, a missing prediction silences its paths
    for other_key in (None, "*"):
        per_hop, _ = fetch_indirect(5, None, hops=3, groupby=None, signed={"dopamine": -1, other_key: 0}, client=c)
        assert as_dict(per_hop, 1) == {(5, 6): -1.0}
        assert as_dict(per_hop, 2) == {} and as_dict(per_hop, 3) == {}


def test_normalisation_excludes_non_neurons(tmp_path, oracle_store):
    # F is a fragment (not a :Neuron) giving B as much as A does: B's input fraction from A is 1
    # among neurons, 1/2 among all segments.
    neurons = {
        1: ("A", "acetylcholine", True),
        2: ("B", "acetylcholine", True),
        3: ("C", "acetylcholine", True),
        9: (None, None, False),
    }
    c = handmade(tmp_path, oracle_store, neurons, [(1, 2, 10), (9, 2, 10), (2, 3, 4), (9, 3, 4)])
    per_hop, _ = fetch_indirect(1, None, hops=2, groupby=None, client=c)
    assert as_dict(per_hop, 1) == {(1, 2): 1.0} and as_dict(per_hop, 2) == {(1, 3): 1.0}
    per_hop, _ = fetch_indirect(1, None, hops=2, groupby=None, neurons_only=False, client=c)
    assert as_dict(per_hop, 1) == {(1, 2): 0.5} and as_dict(per_hop, 2) == {(1, 3): 0.25}
    with pytest.raises(QueryError, match="sources: no neurons"):
        fetch_indirect(9, None, hops=1, groupby=None, client=c)


def test_type_grouping_on_paper(tmp_path, oracle_store):
    # Sources type S = {1, 2}, target type T = {3, 4}. 3 gets 1 -> 3 (1) and 2 -> 3 (3): all from S.
    # 4 gets 1 -> 4 (1) and 5 -> 4 (3): a quarter from S. Sum over S, mean over T: (1 + 1/4) / 2.
    neurons = {
        1: ("S", "acetylcholine", True),
        2: ("S", "acetylcholine", True),
        3: ("T", "gaba", True),
        4: ("T", "gaba", True),
        5: ("O", "acetylcholine", True),
    }
    c = handmade(tmp_path, oracle_store, neurons, [(1, 3, 1), (2, 3, 3), (1, 4, 1), (5, 4, 3)])
    per_hop, summed = fetch_indirect("S", "T", hops=1, groupby="type", client=c)
    assert as_dict(per_hop, 1) == {("S", "T"): pytest.approx(0.625)}
    # by instance (S_R / T_R here) the same; per source type to per target neuron
    assert as_dict(fetch_indirect("S", "T", hops=1, groupby="instance", client=c)[0]) == {
        ("S_R", "T_R"): pytest.approx(0.625)
    }
    per_hop, _ = fetch_indirect("S", "T", hops=1, groupby=("type", None), client=c)
    assert list(per_hop.columns[:2]) == ["type_pre", "bodyId_post"]
    assert as_dict(per_hop, 1) == {("S", 3): pytest.approx(1.0), ("S", 4): pytest.approx(0.25)}
    # output: 1 sends half to 3, half to 4; 2 sends all to 3: mean over S of the sum over T = 1
    per_hop, _ = fetch_indirect("S", "T", hops=1, groupby="type", normalize="output", client=c)
    assert as_dict(per_hop, 1) == {("S", "T"): pytest.approx(1.0)}


def test_thresholds_prune(tmp_path, oracle_store):
    # A -> B strong (9 of B's 10), E -> B weak (1 of 10); B -> C (all). min_fraction 0.2 cuts E -> B
    # and so E's path to C; A's path keeps its full fraction (normalisation is before pruning).
    neurons = {b: (t, "acetylcholine", True) for b, t in [(1, "A"), (2, "B"), (3, "C"), (5, "E")]}
    c = handmade(tmp_path, oracle_store, neurons, [(1, 2, 9), (5, 2, 1), (2, 3, 5)])
    per_hop, summed = fetch_indirect([1, 5], 3, hops=2, groupby=None, client=c)
    assert as_dict(per_hop, 2) == {(1, 3): pytest.approx(0.9), (5, 3): pytest.approx(0.1)}
    per_hop, summed = fetch_indirect([1, 5], 3, hops=2, groupby=None, min_fraction=0.2, client=c)
    assert as_dict(per_hop, 2) == {(1, 3): pytest.approx(0.9)}
    # min_weight drops result rows only
    per_hop, summed = fetch_indirect([1, 5], None, hops=2, groupby=None, min_weight=0.5, client=c)
    assert as_dict(per_hop, 1) == {(1, 2): pytest.approx(0.9)}
    assert as_dict(per_hop, 2) == {(1, 3): pytest.approx(0.9)}
    assert as_dict(summed) == {(1, 2): pytest.approx(0.9), (1, 3): pytest.approx(0.9)}


def test_bad_arguments(client, monkeypatch):
    for kwargs, message in [
        ({"hops": 0}, "hops"),
        ({"hops": "x"}, "hops"),
        ({"groupby": "class"}, "groupby"),
        ({"normalize": "both"}, "normalize"),
        ({"min_weight": -1}, "min_weight"),
        ({"signed": "yes"}, "signed"),
        ({"signed": True, "nt_property": "type"}, "nt_property"),
        ({"groupby": ("type",)}, "groupby"),
    ]:
        with pytest.raises(QueryError, match=message):
            fetch_indirect("DNge104", None, **{"hops": 2, **kwargs}, client=client)
    with pytest.raises(QueryError, match="targets: no neurons"):
        fetch_indirect("DNge104", "no-such-type", hops=1, client=client)
    monkeypatch.setattr("flatprint.query.indirect.MAX_RESULT_CELLS", 1000)
    with pytest.raises(QueryError, match="limit 1,000"):
        fetch_indirect(None, None, hops=1, groupby=None, client=client)


# ------------------------------------------------------------------------------------------ dense oracle
class Dense:
    """The release's neurons, weights and transmitters as dense NumPy arrays (no flatprint code)."""

    def __init__(self, release):
        segs = oracle_segments(release)
        neurons = segs[segs["is_neuron"]]
        self.ids = np.sort(neurons.index.to_numpy(np.int64))
        self.type = neurons["type"].reindex(self.ids)
        self.instance = neurons["instance"].reindex(self.ids)
        nt = load(release, "neurotransmitters").set_index("body")["predicted_nt"]
        self.nt = nt.reindex(self.ids)
        w = load(release, "weights")[["body_pre", "body_post", "weight"]]
        w = w[w.body_pre.isin(self.ids) & w.body_post.isin(self.ids)]
        pos = pd.Series(np.arange(len(self.ids)), index=self.ids)
        n = len(self.ids)
        self.w = np.zeros((n, n))
        np.add.at(self.w, (pos[w.body_pre].to_numpy(), pos[w.body_post].to_numpy()), w.weight.to_numpy(float))
        self.pos = pos

    def fractions(self, normalize="input", signed=False) -> np.ndarray:
        if normalize == "input":
            total = self.w.sum(axis=0)
            a = np.divide(self.w, total[None, :], out=np.zeros_like(self.w), where=total[None, :] > 0)
        else:
            total = self.w.sum(axis=1)
            a = np.divide(self.w, total[:, None], out=np.zeros_like(self.w), where=total[:, None] > 0)
        if signed:
            s = np.array([SIGN.get(v, 1.0) if isinstance(v, str) else 1.0 for v in self.nt])
            a = s[:, None] * a
        return a

    def powers(self, hops, **kw) -> list[np.ndarray]:
        a = self.fractions(**kw)
        return [np.linalg.matrix_power(a, k) for k in range(1, hops + 1)]


@pytest.fixture(scope="module")
def dense(oracle_release):
    return Dense(oracle_release)


def _busiest_type(dense) -> str:
    types = dense.type.dropna()
    out_weight = pd.Series(dense.w.sum(axis=1), index=dense.ids)
    by_type = out_weight.groupby(dense.type).sum()
    counts = types.value_counts()
    multi = counts[counts >= 2].index
    return str(by_type[by_type.index.isin(multi)].sort_values(ascending=False).index[0])


def _to_dense(df, dense, hop, rows) -> np.ndarray:
    got = np.zeros((len(rows), len(dense.ids)))
    part = df[df["hop"] == hop]
    r = pd.Series(np.arange(len(rows)), index=rows)
    got[r[part["bodyId_pre"]].to_numpy(), dense.pos[part["bodyId_post"]].to_numpy()] = part["weight"].to_numpy()
    return got


@pytest.mark.parametrize("normalize,signed", [("input", False), ("input", True), ("output", False)])
def test_neurons_against_matrix_powers(client, dense, normalize, signed):
    source_type = _busiest_type(dense)
    rows = dense.ids[(dense.type == source_type).to_numpy()]
    want = dense.powers(4, normalize=normalize, signed=signed)
    per_hop, summed = fetch_indirect(
        source_type, None, hops=4, groupby=None, normalize=normalize, signed=signed, client=client
    )
    idx = dense.pos[rows].to_numpy()
    for hop in range(1, 5):
        expected = want[hop - 1][idx]
        assert np.count_nonzero(expected) > 0
        np.testing.assert_allclose(_to_dense(per_hop, dense, hop, rows), expected, rtol=1e-9, atol=1e-13)
    total = sum(want)[idx]
    got = np.zeros_like(total)
    r = pd.Series(np.arange(len(rows)), index=rows)
    got[r[summed["bodyId_pre"]].to_numpy(), dense.pos[summed["bodyId_post"]].to_numpy()] = summed["weight"]
    np.testing.assert_allclose(got, total, rtol=1e-9, atol=1e-13)
    # heaviest first within each hop
    for _, part in per_hop.groupby("hop"):
        assert part["weight"].abs().is_monotonic_decreasing


def _group_oracle(dense, power, src_labels, tgt_labels, normalize):
    """Sum over source neurons, mean over target neurons (input); mean over sources, sum over targets (output)."""
    out = {}
    for g in pd.unique(src_labels.dropna()):
        si = np.flatnonzero((src_labels == g).to_numpy())
        for h in pd.unique(tgt_labels.dropna()):
            ti = np.flatnonzero((tgt_labels == h).to_numpy())
            block = power[np.ix_(si, ti)]
            value = block.sum(axis=0).mean() if normalize == "input" else block.sum(axis=1).mean()
            if value != 0:
                out[(g, h)] = value
    return out


@pytest.mark.parametrize("normalize", ["input", "output"])
def test_types_against_oracle_aggregation(client, dense, normalize):
    types = dense.type.dropna().value_counts()
    chosen = sorted(types.index[:6])  # the six most numerous types, each side
    want = dense.powers(3, normalize=normalize, signed=True)
    per_hop, summed = fetch_indirect(
        chosen, chosen, hops=3, groupby="type", normalize=normalize, signed=True, client=client
    )
    labels = dense.type.where(dense.type.isin(chosen))
    for hop in (1, 2, 3):
        expected = _group_oracle(
            dense, want[hop - 1], labels.reset_index(drop=True), labels.reset_index(drop=True), normalize
        )
        got = as_dict(per_hop, hop)
        assert set(got) == set(expected) and expected
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-13)


def test_every_source_type_to_neurons(client, dense):
    """sources=None by type, targets per neuron: the typed sources' shares plus the untyped ones' add
    up to the target's whole column of A^k (1 at hop 1: all of a neuron's input is from neurons)."""
    per_hop, _ = fetch_indirect(None, "DNge104", hops=3, groupby=("type", None), client=client)
    a = dense.fractions()
    for hop in (1, 2, 3):
        sums = per_hop[per_hop["hop"] == hop].groupby("bodyId_post")["weight"].sum()
        assert len(sums) == 2
        for body, value in sums.items():
            col = np.linalg.matrix_power(a, hop)[:, dense.pos[body]]
            untyped = col[dense.type.isna().to_numpy()].sum()  # untyped neurons have no type group
            assert value + untyped == pytest.approx(col.sum(), rel=1e-9)
            if hop == 1:
                assert col.sum() == pytest.approx(1.0)


def test_matrix_cached_per_store(client, oracle_store):
    clear_matrix_cache()
    first = graph_matrix(client.store)
    assert graph_matrix(client.store) is first
    assert graph_matrix(client.store, "output") is not first
    assert first.nbytes > 0 and first.build_seconds >= 0
    neurons = client.sql("SELECT count(*) FROM segments WHERE is_neuron")[1][0][0]
    assert first.inputs.shape == (neurons, neurons)


def test_all_segments_against_pandas(client, oracle_release):
    """neurons_only=False: two hops from DNge104 over every segment, by pandas merges of the raw weights."""
    w = load(oracle_release, "weights")[["body_pre", "body_post", "weight"]]
    total_in = w.groupby("body_post")["weight"].sum()
    f = w.assign(frac=w["weight"] / w["body_post"].map(total_in))
    segs = oracle_segments(oracle_release)
    start = segs.index[(segs["type"] == "DNge104") & segs["is_neuron"]]
    hop1 = f[f.body_pre.isin(start)][["body_pre", "body_post", "frac"]]
    hop2 = hop1.merge(f, left_on="body_post", right_on="body_pre", suffixes=("", "_2"))
    hop2 = hop2.assign(v=hop2["frac"] * hop2["frac_2"]).groupby(["body_pre", "body_post_2"])["v"].sum()
    per_hop, _ = fetch_indirect("DNge104", None, hops=2, groupby=None, neurons_only=False, client=client)
    got1 = as_dict(per_hop, 1)
    assert got1.keys() == set(zip(hop1.body_pre, hop1.body_post))
    for a, b, v in zip(hop1.body_pre, hop1.body_post, hop1.frac):
        assert got1[(a, b)] == pytest.approx(v, rel=1e-12)
    got2 = as_dict(per_hop, 2)
    assert got2.keys() == set(hop2.index)
    for key, v in hop2.items():
        assert got2[key] == pytest.approx(v, rel=1e-9)


def test_criteria_and_client_method(client, dense):
    source_type = _busiest_type(dense)
    by_string = fetch_indirect(source_type, "DNge104", hops=2, client=client)[0]
    by_criteria = client.fetch_indirect(NC(type=source_type), NC(type="DNge104"), hops=2)[0]
    pd.testing.assert_frame_equal(by_string, by_criteria)
    assert by_string.attrs["query"].startswith("fetch_indirect(")


# ------------------------------------------------------------------------------------------ server
def test_server_endpoint_equals_library(client, oracle_store, dense):
    import io

    import pyarrow as pa
    from fastapi.testclient import TestClient

    from flatprint.server import open_stores
    from flatprint.server.app import create_app

    source_type = _busiest_type(dense)
    with TestClient(create_app(open_stores([str(oracle_store)]))) as http:
        body = {"sources": {"type": source_type}, "targets": None, "hops": 3, "groupby": [None, "type"], "signed": True}
        r = http.post("/api/flatprint/indirect", json=body)
        assert r.status_code == 200, r.text
        per_hop, summed = fetch_indirect(
            NC(type=source_type), None, hops=3, groupby=(None, "type"), signed=True, client=client
        )
        for name, want in (("per_hop", per_hop), ("summed", summed)):
            got = pd.DataFrame(r.json()[name]["data"], columns=r.json()[name]["columns"])
            pd.testing.assert_frame_equal(got, want.reset_index(drop=True), check_dtype=False)
        assert isinstance(r.json()["per_hop"]["data"][0][0], int)  # body ids stay integers
        r = http.post("/api/flatprint/indirect", json={**body, "format": "arrow", "table": "summed"})
        assert r.headers["content-type"] == "application/vnd.apache.arrow.stream"
        got = pa.ipc.open_stream(io.BytesIO(r.content)).read_all().to_pandas()
        pd.testing.assert_frame_equal(got, summed.reset_index(drop=True))
        for bad, message in (
            ({"hops": 0}, "hops"),
            ({"sources": {"tpye": "x"}}, "tpye"),
            ({"colour": 1}, "colour"),
            ({"sources": [True]}, "sources"),
            ({"format": "xml"}, "format"),
        ):
            r = http.post("/api/flatprint/indirect", json={**body, **bad})
            assert r.status_code == 400 and message in r.json()["error"], r.text
        r = http.post("/api/flatprint/indirect", json={**body, "dataset": "nope:v1"})
        assert r.status_code == 404


def test_cli_ranked_table(client, oracle_store, dense, tmp_path):
    from click.testing import CliRunner

    from flatprint.cli import main

    source_type = _busiest_type(dense)
    out = tmp_path / "summed.csv"
    result = CliRunner().invoke(
        main, ["indirect", str(oracle_store), "--sources", source_type, "--hops", "3", "--top", "5", "--csv", str(out)]
    )
    assert result.exit_code == 0, result.output
    _, want = fetch_indirect(source_type, None, hops=3, client=client)
    assert want.iloc[0]["type_post"] in result.output and f"{want.iloc[0]['weight']:.4g}" in result.output
    got = pd.read_csv(out)
    assert got["weight"].to_numpy() == pytest.approx(want["weight"].to_numpy(), rel=1e-12)
    bad = CliRunner().invoke(main, ["indirect", str(oracle_store), "--sources", "no-such-type"])
    assert bad.exit_code == 1 and "sources: no neurons" in bad.output


def test_benchmark_smoke(oracle_release, oracle_store, tmp_path):
    """benchmarks/indirect.py end to end on the 0.01 store: both engines in worker processes, answers
    compared in full, JSON written and rendered."""
    import importlib.util
    import json
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parent.parent / "benchmarks"
    sys.path.insert(0, str(bench))
    modules = {}
    for name in ("indirect", "render"):
        spec = importlib.util.spec_from_file_location(f"bench_{name}", bench / f"{name}.py")
        modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules[name])
    entry = modules["indirect"].main(
        [
            "--scale",
            "0.01",
            "--repeat",
            "2",
            "--hops",
            "3",
            "--release-dir",
            str(oracle_release),
            "--store-path",
            str(oracle_store),
            "--results-dir",
            str(tmp_path),
        ]
    )
    for partners in ("neurons", "segments"):
        variant = entry["variants"][partners]
        assert variant["answers_agree"] and variant["neuron_sets_equal"]
        assert sum(variant["neurons_reached_last_hop"]) > 0
        for run in variant["engines"].values():
            assert len(run["query_s"]) == 2 and run["peak_rss_bytes"] > 0 and run["prepare_s"] > 0
    doc = json.loads((tmp_path / "indirect.json").read_text())
    lines = modules["render"].indirect_section(doc)
    assert any(line.startswith("| 0.01 |") and "flatprint" in line for line in lines)
