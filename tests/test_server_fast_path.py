"""The server's fast path (issue 16): /api/version and the Cypher endpoints answered before FastAPI's
middleware stack, and small queries run on the event loop's thread instead of the worker pool; the
answers, errors and token checks stay those of the whole app."""

from __future__ import annotations

import json
import warnings

import pytest

warnings.filterwarnings("ignore", category=DeprecationWarning)
from fastapi.testclient import TestClient  # noqa: E402
from oracle import oracle_segments  # noqa: E402

from flatprint.server import http as server_http  # noqa: E402
from flatprint.server.app import create_app  # noqa: E402
from flatprint.server.auth import load_tokens  # noqa: E402
from flatprint.server.http import ServerState, query_kind  # noqa: E402
from flatprint.server.views import custom  # noqa: E402

DS = "male-cns:v0.9"


@pytest.fixture(scope="module")
def segments(release_dir):
    return oracle_segments(release_dir)


class PoolRuns:
    """Counts the queries handed to the worker pool (the others ran inline)."""

    def __init__(self, monkeypatch):
        self.count = 0
        run = ServerState.run

        async def counted(state, fn, *args):
            self.count += 1
            return await run(state, fn, *args)

        monkeypatch.setattr(ServerState, "run", counted)


def lookup(body: int) -> str:
    return f"MATCH (n:Neuron) WHERE n.bodyId = {body} RETURN n.bodyId AS bodyId, n.type AS type, n.post AS post"


def oracle_rows(segments, body: int) -> list:
    row = segments.loc[body]
    return [[body, row["type"] if isinstance(row["type"], str) else None, int(row["post"])]]


def test_small_queries_run_inline_after_their_first_run(stores, segments, monkeypatch):
    monkeypatch.setattr(server_http, "INLINE_SECONDS", 10.0)  # whatever this machine's load: cheap
    app = create_app(stores)
    api = TestClient(app, raise_server_exceptions=False)
    pool = PoolRuns(monkeypatch)
    neurons = segments.index[segments["is_neuron"]].tolist()[:6]
    answers = []
    for body in neurons:
        r = api.post("/api/custom/custom", json={"cypher": lookup(body), "dataset": DS})
        assert r.status_code == 200
        answers.append(r.json())
    # the first of the kind ran in the pool (its cost unknown), the others inline: same answers as the oracle
    assert pool.count == 1
    for body, answer in zip(neurons, answers):
        assert answer["columns"] == ["bodyId", "type", "post"]
        assert answer["data"] == oracle_rows(segments, body)
    state = app.state.flatprint
    assert list(state.costs) == [query_kind(lookup(neurons[0]))]


def test_an_inline_run_over_its_limit_runs_again_in_the_pool(stores, segments, monkeypatch):
    app = create_app(stores)
    api = TestClient(app, raise_server_exceptions=False)
    state = app.state.flatprint
    body = segments.index[segments["is_neuron"]].tolist()[3]
    state.record_cost(query_kind(lookup(body)), 0.0)  # predicted cheap ...
    monkeypatch.setattr(custom, "INLINE_LIMIT", 1e-9)  # ... but every inline run is over its limit
    pool = PoolRuns(monkeypatch)
    r = api.post("/api/custom/custom", json={"cypher": lookup(body), "dataset": DS})
    assert r.status_code == 200 and r.json()["data"] == oracle_rows(segments, body)
    assert pool.count == 1


def test_inline_runs_answer_errors_as_the_pool_does(stores, monkeypatch):
    app = create_app(stores)
    api = TestClient(app, raise_server_exceptions=False)
    bad = "MATCH (n:Neuron) RETURN n.bodyId + 'x' - 1 AS v LIMIT 1"
    first = api.post("/api/custom/custom", json={"cypher": bad, "dataset": DS})
    app.state.flatprint.record_cost(query_kind(bad), 0.0)
    pool = PoolRuns(monkeypatch)
    second = api.post("/api/custom/custom", json={"cypher": bad, "dataset": DS})
    assert pool.count == 0
    assert first.status_code == second.status_code == 400
    assert first.json() == second.json() and first.json()["error"]


def test_busy_pool_keeps_queries_off_the_loop(stores):
    state = ServerState(datasets=stores)
    state.record_cost("k", 0.001)
    assert state.runs_inline("k") and not state.runs_inline("unknown")
    state.record_cost("slow", server_http.INLINE_SECONDS * 2)
    assert not state.runs_inline("slow")
    state._waiting = 1  # another query runs: this one waits its turn in the pool
    assert not state.runs_inline("k")


def test_query_kinds():
    assert query_kind("MATCH (n) WHERE n.bodyId = 12 AND n.type = 'a\\'b' RETURN n") == query_kind(
        "MATCH (n) WHERE n.bodyId = 345 AND n.type = 'LC4' RETURN n"
    )
    five, six, twenty = (f"WITH {list(range(1, k + 1))} AS ids RETURN ids" for k in (5, 6, 20))
    assert query_kind(five) == query_kind(six) != query_kind(twenty)
    assert query_kind("RETURN 1.5e3") == query_kind("RETURN 2")
    assert query_kind('CALL apoc.cypher.runTimeboxed("MATCH (n) RETURN n", {}, 5) YIELD value RETURN value') != (
        query_kind('CALL apoc.cypher.runTimeboxed("MATCH (m) RETURN m", {}, 5) YIELD value RETURN value')
    )


def test_fast_routes_answer_as_the_app(stores, tmp_path):
    api = TestClient(create_app(stores), raise_server_exceptions=False)
    r = api.get("/api/version")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == {"Version": server_http.NEUPRINT_HTTP_VERSION, "flatprint": r.json()["flatprint"]}
    r = api.post("/api/custom/custom", content=b'{"cypher": "RETURN 1 AS one\n", "dataset": "' + DS.encode() + b'"}')
    assert r.status_code == 200 and r.json()["data"] == [[1]]  # a raw newline in a string (neuprintr)
    r = api.post("/api/custom/custom", json={"cypher": "MATCH (n:Neuron) RETURN", "dataset": DS})
    assert r.status_code == 400 and "invalid Cypher" in r.json()["error"]
    r = api.post("/api/custom/custom", json={"cypher": "RETURN 1", "dataset": "nope:v1"})
    assert r.status_code == 404
    r = api.post("/api/custom/custom", content=b"x" * 10, headers={"content-length": str(64 * 1024 * 1024)})
    assert r.status_code == 413
    busy = TestClient(create_app(stores, queue_limit=0), raise_server_exceptions=False)
    r = busy.post("/api/custom/custom", json={"cypher": "RETURN 1", "dataset": DS})
    assert r.status_code == 503 and r.headers["Retry-After"] == "2"

    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"reader": {"datasets": [DS], "role": "readonly"}, "other": {"datasets": ["o:v1"]}}))
    guarded = TestClient(create_app(stores, grants=load_tokens(tokens)), raise_server_exceptions=False)
    assert guarded.get("/api/version").status_code == 401
    assert guarded.post("/api/custom/custom", json={"cypher": "RETURN 1", "dataset": DS}).status_code == 401
    reader, other = ({"Authorization": f"Bearer {t}"} for t in ("reader", "other"))
    assert guarded.get("/api/version", headers=reader).status_code == 200
    r = guarded.post("/api/custom/custom", json={"cypher": "RETURN 1", "dataset": DS}, headers=reader)
    assert r.status_code == 200 and r.json()["data"] == [[1]]
    r = guarded.post("/api/custom/custom", json={"cypher": "RETURN 1", "dataset": DS}, headers=other)
    assert r.status_code == 403 and DS in r.json()["error"]
    assert guarded.get("/api/admin/stats", headers=reader).status_code == 403


def test_unexpected_errors_on_fast_routes_answer_500(stores, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(custom, "execute", broken)
    api = TestClient(create_app(stores), raise_server_exceptions=False)
    r = api.post("/api/custom/custom", json={"cypher": "RETURN 1", "dataset": DS})
    assert r.status_code == 500 and r.json() == {"error": "internal error: RuntimeError: boom"}


def test_a_chunked_body_over_the_limit_is_refused(stores, tmp_path):
    """A body sent without Content-Length (chunked) is bounded too: refused with 413 once it passes
    the limit, on the fast path, on the whole app's routes and on the explorer's login form."""
    api = TestClient(create_app(stores, max_body=1024), raise_server_exceptions=False)

    def chunked(payload: bytes):
        yield from (payload[i : i + 100] for i in range(0, len(payload), 100))

    small = json.dumps({"cypher": "RETURN 1 AS one", "dataset": DS}).encode()
    r = api.post("/api/custom/custom", content=chunked(small))
    assert "content-length" not in r.request.headers and r.status_code == 200 and r.json()["data"] == [[1]]
    padded = json.dumps({"cypher": "RETURN 1 AS one" + " " * 2000, "dataset": DS}).encode()
    for path in ("/api/custom/custom", "/api/custom/arrow", "/api/npexplorer/roisinneuron"):
        r = api.post(path, content=chunked(padded))
        assert r.status_code == 413 and "limit 1024 bytes" in r.json()["error"], (path, r.text)
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"reader": {"datasets": [DS], "role": "readonly"}}))
    guarded = TestClient(create_app(stores, grants=load_tokens(tokens), max_body=1024), raise_server_exceptions=False)
    r = guarded.post("/explorer/login", content=chunked(b"token=reader&next=" + b"x" * 2000), follow_redirects=False)
    assert r.status_code == 413
    r = guarded.post("/explorer/login", content=chunked(b"token=reader&next=/explorer/"), follow_redirects=False)
    assert r.status_code == 303
