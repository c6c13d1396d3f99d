"""Unmodified neuprint-python (and navis) against a real `flatprint serve` process.

Each neuprint-python result must equal flatprint's library result for the same call; the library
itself is checked against pandas on the raw feathers (test_query_*.py).
"""

from __future__ import annotations

import pandas as pd
import pytest

neuprint = pytest.importorskip("neuprint")

from server_fixture import running_server  # noqa: E402

import flatprint  # noqa: E402


@pytest.fixture(scope="module")
def server(store_path, tmp_path_factory):
    home = tmp_path_factory.mktemp("server-home")
    with running_server([str(store_path)], home) as (url, cert):
        yield url, cert


@pytest.fixture(scope="module")
def np_client(server):
    url, cert = server
    neuprint.Client.DATASETS_CACHE.clear() if hasattr(neuprint.Client, "DATASETS_CACHE") else None
    return neuprint.Client(url, dataset="male-cns:v0.9", token="local", verify=str(cert))


@pytest.fixture(scope="module")
def fp_client(store_path):
    c = flatprint.Client(store_path)
    yield c
    c.close()


def normalise(df: pd.DataFrame, sort_by) -> pd.DataFrame:
    df = df.copy()
    for col in df.columns:
        if df[col].dtype == object or str(df[col].dtype) in ("str", "string"):
            df[col] = [
                tuple(v) if isinstance(v, list) else (repr(sorted(v.items())) if isinstance(v, dict) else v)
                for v in df[col]
            ]
    if sort_by:
        df = df.sort_values(sort_by, kind="stable").reset_index(drop=True)
    return df


def assert_same(got: pd.DataFrame, want: pd.DataFrame, sort_by=None, check_dtype=True):
    assert got.columns.tolist() == want.columns.tolist()
    assert len(got) == len(want)
    g, w = normalise(got, sort_by), normalise(want, sort_by)
    pd.testing.assert_frame_equal(g, w, check_dtype=check_dtype, check_categorical=False, check_exact=False, rtol=1e-5)


NEURON_CASES = [
    ("DNge104", {}),
    (flatprint.NeuronCriteria(type="KCa'b'.*"), {}),
    (flatprint.NeuronCriteria(rois=["GNG", "FB"], roi_req="any", min_pre=200), {"omit_rois": True}),
    ([12781, 556329], {"returned_columns": ["type", "instance", "bodyId", "predictedNt"]}),
    (flatprint.NeuronCriteria(inputRois=["GNG"], outputRois=["VNC"]), {}),
]


def _np_criteria(crit):
    if isinstance(crit, flatprint.NeuronCriteria):
        kwargs = {
            k: (sorted(v) if isinstance(v, set) else v)
            for k, v in vars(crit).items()
            if k not in ("matchvar", "client", "label", "regex") and v not in ([], set(), None)
        }
        kwargs = {k: v for k, v in kwargs.items() if not (k in ("roi_req",) and v == "all")}
        return neuprint.NeuronCriteria(
            **{
                k: v
                for k, v in kwargs.items()
                if k
                in ("type", "instance", "rois", "inputRois", "outputRois", "roi_req", "min_pre", "bodyId", "status")
            }
        )
    return crit


@pytest.mark.parametrize("crit, kwargs", NEURON_CASES)
def test_fetch_neurons(np_client, fp_client, crit, kwargs):
    want = flatprint.fetch_neurons(crit, client=fp_client, **kwargs)
    got = neuprint.fetch_neurons(_np_criteria(crit), client=np_client, **kwargs)
    if kwargs.get("omit_rois"):
        # neuprint-python orders extra columns by set iteration; compare by name
        assert_same(got[want.columns], want, sort_by=["bodyId"])
    else:
        assert_same(got[0][want[0].columns], want[0], sort_by=["bodyId"])
        assert_same(got[1], want[1], sort_by=["bodyId", "roi"])


@pytest.mark.parametrize(
    "sources, targets, kwargs",
    [
        ("DNge104", None, {}),
        (None, "DNge104", {}),
        ("DNge104", None, {"rois": ["GNG"], "min_roi_weight": 2}),
        ("DNge104", None, {"include_nonprimary": True}),
        ("DNge104", None, {"omit_rois": True, "min_total_weight": 5}),
        ([12781, 556329], [12781, 556329], {}),
    ],
)
def test_fetch_adjacencies(np_client, fp_client, sources, targets, kwargs):
    n_want, c_want = flatprint.fetch_adjacencies(sources, targets, client=fp_client, **kwargs)
    n_got, c_got = neuprint.fetch_adjacencies(sources, targets, client=np_client, **kwargs)
    assert_same(n_got, n_want, sort_by=["bodyId"])
    key = ["bodyId_pre", "bodyId_post"] + (["roi"] if "roi" in c_want.columns else [])
    assert_same(c_got, c_want, sort_by=key)


def test_simple_and_common(np_client, fp_client):
    want = flatprint.fetch_simple_connections("DNge104", None, min_weight=2, client=fp_client)
    got = neuprint.fetch_simple_connections("DNge104", None, min_weight=2, client=np_client)
    assert_same(got, want, sort_by=["bodyId_pre", "bodyId_post"])
    want = flatprint.fetch_common_connectivity("DNge104", "upstream", client=fp_client)
    got = neuprint.fetch_common_connectivity("DNge104", "upstream", client=np_client)
    assert_same(got, want, sort_by=["bodyId_pre", "bodyId_post"])


def test_paths(np_client, fp_client):
    want = flatprint.fetch_shortest_paths(12781, 556329, min_weight=5, client=fp_client)
    got = neuprint.fetch_shortest_paths(12781, 556329, min_weight=5, client=np_client)
    paths = lambda df: sorted(tuple(g.bodyId) for _, g in df.groupby("path"))  # noqa: E731
    assert paths(got) == paths(want) and len(want) > 0
    want = flatprint.fetch_paths(12781, 556329, min_weight=10, max_path_length=2, client=fp_client)
    got = neuprint.fetch_paths(12781, 556329, min_weight=10, max_path_length=2, client=np_client)
    assert paths(got) == paths(want)


def test_synapses(np_client, fp_client):
    sc_fp = flatprint.SynapseCriteria(rois=["GNG"], client=fp_client)
    sc_np = neuprint.SynapseCriteria(rois=["GNG"], client=np_client)
    for nt in (None, "max"):
        want = flatprint.fetch_synapses("DNge104", sc_fp, nt=nt, client=fp_client)
        got = neuprint.fetch_synapses("DNge104", sc_np, nt=nt, client=np_client)
        assert_same(got, want, sort_by=["bodyId", "x", "y", "z", "type"])
    want = flatprint.fetch_mean_synapses("DNge104", client=fp_client)
    got = neuprint.fetch_mean_synapses("DNge104", client=np_client)
    assert_same(got, want, sort_by=["bodyId", "roi", "type"])
    want = flatprint.fetch_synapse_connections(12781, None, sc_fp, client=fp_client)
    got = neuprint.fetch_synapse_connections(12781, None, sc_np, client=np_client)
    assert_same(got, want, sort_by=["bodyId_post", "x_pre", "y_pre", "z_pre", "x_post", "y_post", "z_post"])


def test_meta_rois_completeness(np_client, fp_client):
    assert neuprint.fetch_primary_rois(client=np_client) == flatprint.fetch_primary_rois(client=fp_client)
    assert neuprint.fetch_all_rois(client=np_client) == flatprint.fetch_all_rois(client=fp_client)
    assert neuprint.fetch_roi_hierarchy(client=np_client) == flatprint.fetch_roi_hierarchy(client=fp_client)
    meta = neuprint.fetch_meta(client=np_client)
    assert meta["dataset"] == "male-cns" and meta["roiInfo"] == flatprint.fetch_meta(client=fp_client)["roiInfo"]
    want = flatprint.fetch_output_completeness("DNge104", client=fp_client)
    # neuprint-python's fetch_output_completeness calls fetch_custom without passing its client on,
    # so it needs a default: with another module's Client still alive there is none.
    neuprint.set_default_client(np_client)
    got = neuprint.fetch_output_completeness(neuprint.NeuronCriteria(type="DNge104"), client=np_client)
    assert_same(got, want, sort_by=["bodyId"])


def test_rest_endpoints(np_client):
    assert np_client.fetch_version()
    assert isinstance(np_client.fetch_available(), list)
    assert "male-cns:v0.9" in np_client.fetch_datasets()
    conn = np_client.fetch_roi_connectivity()
    assert len(conn) > 0
    assert np_client.fetch_profile()["AuthLevel"]
    arrow = np_client.fetch_custom(
        "MATCH (n:Neuron) WHERE n.type = 'DNge104' RETURN n.bodyId AS b ORDER BY b", use_arrow=True
    )
    assert arrow["b"].tolist() == [12781, 556329]


def test_write_query_is_refused(server, np_client):
    """A write clause is refused with an HTTP error naming the construct, not run or timed out."""
    from requests import HTTPError

    with pytest.raises(HTTPError, match="CREATE"):
        np_client.fetch_custom("MATCH (n) CREATE (m)")


def test_release_page_snippets(server, release_dir, monkeypatch, tmp_path):
    """The release page's snippets, verbatim but for the server URL and token (REQUESTS_CA_BUNDLE set)."""
    import matplotlib

    matplotlib.use("Agg")
    url, cert = server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    from neuprint import Client, NeuronCriteria, fetch_adjacencies, fetch_neurons

    c = Client(url, dataset="male-cns:v0.9", token="local")
    neurons, roi_counts = fetch_neurons("DNge104", client=c)
    assert dict(zip(neurons.bodyId, neurons.instance)) == {12781: "DNge104_R", 556329: "DNge104_L"}
    _, down = fetch_adjacencies("DNge104", client=c)
    _, up = fetch_adjacencies(None, "DNge104", client=c)
    assert len(down) and len(up)

    import navis
    import navis.interfaces.neuprint as neu

    skels = neu.fetch_skeletons(NeuronCriteria(type="DNge104"), client=c)
    assert sorted(int(n.id) for n in skels) == [12781, 556329]
    swc = (release_dir / "skeletons" / "skeletons-swc" / "12781.swc").read_text()
    n_nodes = sum(1 for line in swc.splitlines() if line and not line.startswith("#"))
    assert len(skels.idx[12781].nodes) == n_nodes
    fig, ax = navis.plot2d(skels, view=("z", "x"), radius=True)
    fig.savefig(tmp_path / "dnge104.png")
    assert (tmp_path / "dnge104.png").stat().st_size > 1000
    mesh = neu.fetch_roi("a'L(R)", client=c)
    assert len(mesh.vertices) > 0


def test_segmentation_source_for_navis(server, np_client, store_path, release_dir, tmp_path, monkeypatch):
    """navis finds the segmentation through nglayers; the served precomputed volume reads back equal."""
    import navis.interfaces.neuprint as neu

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server[1]))  # navis' lookup ignores verify=
    from server_fixture import running_server

    from flatprint.store import Store
    from flatprint.volumes import body_at

    url, _ = server
    source = neu.get_seg_source(client=np_client)
    assert source == f"precomputed://{url}/api/volumes/male-cns:v0.9/segmentation"
    store = Store.open(store_path)
    seg_dir = store.info["volumes"]["segmentation"]
    store.close()
    points = [[2489, 1470, 1338], [100, 100, 100]]
    # tensorstore verifies TLS with the system CAs, so read the same files through a plain-HTTP server.
    with running_server([str(store_path)], tmp_path / "home", http=True) as (http_url, _):
        served = body_at(points, f"{http_url}/api/volumes/male-cns:v0.9/segmentation")
    assert list(served) == list(body_at(points, seg_dir))
    r = np_client.session.get(f"{url}/api/volumes/male-cns:v0.9/segmentation/../../etc/passwd")
    assert r.status_code == 404
