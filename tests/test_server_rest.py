"""The server's REST surface in-process (no Cypher needed): shapes, auth, limits, errors."""

from __future__ import annotations

import datetime as dt
import json
import warnings

import pytest

warnings.filterwarnings("ignore", category=DeprecationWarning)
from fastapi.testclient import TestClient  # noqa: E402
from oracle import load  # noqa: E402

from flatprint.errors import FlatprintError  # noqa: E402
from flatprint.server import serve  # noqa: E402
from flatprint.server.app import create_app  # noqa: E402
from flatprint.server.auth import load_tokens  # noqa: E402

DS = "male-cns:v0.9"


def test_discovery_endpoints(api, release_dir):
    assert api.get("/").status_code == 200
    ds = api.get("/api/dbmeta/datasets").json()
    points = load(release_dir, "syn-points")
    primary = set(points["primary"].cat.categories) - {"<unspecified>"}
    assert set(ds) == {DS} and primary <= set(ds[DS]["ROIs"]) and ds[DS]["description"].startswith("SYNTHETIC")
    version = api.get("/api/version").json()["Version"]
    assert tuple(map(int, version.split("."))) >= (1, 7, 3)  # enables neuprint-python's Arrow path
    for path in (
        "/api/dbmeta/version",
        "/api/serverinfo",
        "/api/dbmeta/database",
        "/api/dbmeta/instances",
        "/profile",
        "/token",
    ):
        r = api.get(path)
        assert r.status_code == 200 and isinstance(r.json(), dict), path
    available = api.get("/api/available").json()
    assert "/api/custom/custom" in available and "/api/cached/roiconnectivity" in available
    spec = api.get("/api/help/swagger.yaml")
    assert spec.status_code == 200 and json.loads(spec.text)["openapi"].startswith("3.")


def test_create_app_mounts_the_explorer(api):
    """The app tests build is the one `flatprint serve` runs: the explorer is part of create_app."""
    home = api.get("/explorer/")
    assert home.status_code == 200 and "text/html" in home.headers["content-type"]
    assert DS in home.text


def test_cached(api, release_dir):
    rc = api.get(f"/api/cached/roicompleteness?dataset={DS}").json()
    assert rc["columns"] == ["roi", "roipre", "roipost", "totalpre", "totalpost"]
    points = load(release_dir, "syn-points")
    gng = [row for row in rc["data"] if row[0] == "GNG"][0]
    assert gng[3] == int(((points["primary"] == "GNG") & (points.kind == "PreSyn")).sum())
    conn = api.get(f"/api/cached/roiconnectivity?dataset={DS}").json()
    assert conn["roi_names"][0] and all("=>" in k and {"count", "weight"} <= set(v) for k, v in conn["weights"].items())
    daily = api.get(f"/api/cached/dailytype?dataset={DS}").json()
    assert set(daily) == {"info", "connectivity", "skeleton"} and daily["info"]["type"]


def test_npexplorer(api, release_dir):
    r = api.post(
        "/api/npexplorer/commonconnectivity", json={"dataset": DS, "neuron_ids": [12781, 556329], "find_inputs": True}
    )
    assert r.status_code == 200
    maps = r.json()["data"][0][0]
    weights = load(release_dir, "weights")
    assert maps  # one map per connection (tests/test_neuprintr.py checks them all)
    for m in maps:
        (key,) = [k for k in m if k.endswith("_weight")]
        body = int(key.removesuffix("_weight"))
        w = weights[(weights.body_pre == int(m["input"])) & (weights.body_post == body)].weight
        assert m[key] == int(w.iloc[0])
    found = api.post("/api/npexplorer/findneurons", json={"dataset": DS, "input_ROIs": ["GNG"], "output_ROIs": []})
    assert found.json()["columns"][:3] == ["bodyid", "bodyname", "bodytype"] and found.json()["data"]
    bad = api.post("/api/npexplorer/findneurons", json={"dataset": DS, "input_ROIs": ["GNX"]})
    assert bad.status_code == 400 and "GNG" in bad.json()["error"]
    rois = api.post("/api/npexplorer/roiconnectivity", json={"dataset": DS, "rois": ["FB"]}).json()
    assert rois["columns"] == ["bodyid", "roiInfo"] and all("FB" in json.loads(r[1]) for r in rois["data"])


def test_errors(api):
    r = api.post("/api/custom/custom", content=b'{"cypher": "MATCH (n) RETURN "n"", "dataset": "x"}')
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    r = api.post("/api/custom/custom", json={"dataset": DS})
    assert r.status_code == 400 and "cypher" in r.json()["error"]
    r = api.post("/api/custom/custom", json={"cypher": "MATCH (n) RETURN n", "dataset": "nope:v1"})
    assert r.status_code == 404 and "nope:v1" in r.json()["error"]
    assert api.get("/api/nope").status_code == 404
    assert api.post("/api/raw/cypher/transaction", json={}).status_code == 403
    r = api.get(f"/api/skeletons/skeleton/{DS}/999?format=swc")
    assert r.status_code == 400 and "error" in r.json()
    r = api.post("/api/custom/custom", content=b"x" * 100, headers={"content-length": str(64 * 1024 * 1024)})
    assert r.status_code == 413


def test_busy_queue_answers_503(stores):
    app = create_app(stores, queue_limit=0)
    r = TestClient(app, raise_server_exceptions=False).post(
        "/api/npexplorer/roisinneuron", json={"dataset": DS, "neuron_id": 12781}
    )
    assert r.status_code == 503 and r.headers["Retry-After"]


def test_tokens(stores, tmp_path):
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()
    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        json.dumps(
            {
                "reader": {"datasets": [DS], "role": "readonly"},
                "other": {"datasets": ["other:v1"], "role": "readonly"},
                "boss": {"datasets": ["*"], "role": "admin"},
                "old": {"datasets": [DS], "role": "readonly", "expires": past},
            }
        )
    )
    api = TestClient(create_app(stores, grants=load_tokens(tokens)), raise_server_exceptions=False)
    h = lambda t: {"Authorization": f"Bearer {t}"}  # noqa: E731
    assert api.get("/api/dbmeta/datasets").status_code == 401
    r = api.get("/api/dbmeta/datasets", headers=h("guess"))
    assert r.status_code == 401 and "unknown token" in r.json()["error"]
    r = api.get("/api/dbmeta/datasets", headers=h("old"))
    assert r.status_code == 401 and "expired" in r.json()["error"]
    assert DS in api.get("/api/dbmeta/datasets", headers=h("reader")).json()
    assert api.get("/api/dbmeta/datasets", headers=h("other")).json() == {}
    r = api.get(f"/api/cached/roicompleteness?dataset={DS}", headers=h("other"))
    assert r.status_code == 403
    assert api.get("/api/admin/stats", headers=h("reader")).status_code == 403
    assert api.get("/api/admin/stats", headers=h("boss")).json()["requests"] > 0
    assert api.get("/", headers={}).status_code == 200  # neuprintr's login page stays reachable
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"t": {"datasets": [DS], "role": "root"}}))
    with pytest.raises(FlatprintError, match="bad.json, entry 1: 'role'"):
        load_tokens(bad)


def test_non_loopback_needs_auth(store_path):
    with pytest.raises(FlatprintError, match="--auth"):
        serve([str(store_path)], host="0.0.0.0", echo=lambda *_: None)


def test_skeletons_and_meshes(api, release_dir):
    swc = api.get(f"/api/skeletons/skeleton/{DS}/12781?format=swc")
    assert swc.status_code == 200
    expected = (release_dir / "skeletons" / "skeletons-swc" / "12781.swc").read_text()
    assert swc.text == expected
    lines = [line for line in swc.text.splitlines() if not line.startswith("#")]
    assert lines and all(len(line.split(" ")) == 7 for line in lines)
    rows = api.get(f"/api/skeletons/skeleton/{DS}/12781").json()
    assert rows["columns"] == ["rowId", "x", "y", "z", "radius", "link"] and len(rows["data"]) == len(lines)
    assert rows["data"][0][5] == -1
    mesh = api.get(f"/api/roimeshes/mesh/{DS}/a'L(R)")
    assert mesh.status_code == 200 and mesh.text.lstrip().startswith(("v ", "#"))
    assert api.get(f"/api/roimeshes/mesh/{DS}/NOPE").status_code == 400


def test_json_encoding_matches_neuprint_http():
    """Sorted keys (neuprintr needs "children" before "name"), NaN/inf as null, numpy scalars as
    numbers, and integers beyond 64 bits still encoded (through the slower fallback)."""
    import numpy as np

    from flatprint.server.http import encode_json

    payload = {
        "name": "x",
        "children": [{"b": float("nan"), "a": np.float32(1.5)}],
        "data": [[np.int64(7), float("inf"), -float("inf"), None, True]],
    }
    assert encode_json(payload) == (b'{"children":[{"a":1.5,"b":null}],"data":[[7,null,null,null,true]],"name":"x"}')
    assert json.loads(encode_json({"big": 2**70, "nan": float("nan")})) == {"big": 2**70, "nan": None}


def test_custom_endpoint_shares_maps_correctly(api):
    """A map shared by several rows (one T-bar, several PSDs) is written out in full in every row."""
    cypher = (
        "MATCH (n:Neuron {bodyId: 12781})-[:Contains]->(:SynapseSet)-[:Contains]->(s:Synapse) "
        "RETURN s.type AS t, apoc.map.removeKeys(s, ['location']) AS m, s AS whole LIMIT 50"
    )
    body = api.post("/api/custom/custom", json={"cypher": cypher, "dataset": DS}).json()
    assert body["columns"] == ["t", "m", "whole"] and len(body["data"]) > 1
    for t, m, whole in body["data"]:
        assert m["type"] == t and "location" not in m
        assert whole["location"]["type"] == "Point" and {k: v for k, v in whole.items() if k != "location"} == m


def test_hot_cypher_routes_keep_errors_and_schema(api):
    # /api/custom/custom and /arrow are plain Starlette routes placed before FastAPI's: a wrong method
    # still answers neuPrint's {"error": ...}, bad bodies still 400, and the OpenAPI document lists them.
    r = api.get("/api/custom/custom")
    assert r.status_code == 405 and r.json() == {"error": "Method Not Allowed"}
    r = api.post("/api/custom/arrow", json={"dataset": DS})
    assert r.status_code == 400 and "cypher" in r.json()["error"]
    paths = json.loads(api.get("/api/help/swagger.yaml").text)["paths"]
    assert "post" in paths["/api/custom/custom"] and "post" in paths["/api/custom/arrow"]


def test_pool_counts_work_until_its_thread_finishes(stores):
    """A query whose caller stopped waiting (a client that hung up) still holds its worker: it counts
    against the queue limit until its thread returns, so abandoned work cannot pile up unbounded."""
    import asyncio
    import threading

    from flatprint.server.http import ServerBusy, ServerState

    state = ServerState(datasets=stores, workers=1, queue_limit=2)
    release = threading.Event()

    async def scenario():
        abandoned = asyncio.ensure_future(state.run(release.wait, 10))
        await asyncio.sleep(0.05)
        abandoned.cancel()
        await asyncio.sleep(0.05)
        held_after_cancel = state._waiting
        queued = asyncio.ensure_future(state.run(lambda: 7))
        await asyncio.sleep(0.05)
        with pytest.raises(ServerBusy):
            await state.run(lambda: 8)
        release.set()
        return held_after_cancel, await queued

    held, answer = asyncio.run(scenario())
    assert held == 1 and answer == 7
    state.pool.shutdown(wait=True)
    assert state._waiting == 0
