"""Engine CPU per neuprint-python synapse call (issue 16): what ``flatprint serve`` spends in the
Cypher engine and in writing the JSON answer, per query the client sends, against the library call.

    python benchmarks/synapse_engine.py STORE.duckdb [--repeat 20] [--pairs 3] [--profile OUT.prof]

neuprint-python 0.6.4 runs in-process against the server app (requests' transport routed to a
Starlette TestClient, no HTTP), once per call, to capture every Cypher text it posts. Each captured
text is then run ``--repeat`` times through ``execute`` as the server runs it (shared plan cache,
the neuron table and graph built), timing this process's CPU (DuckDB's threads included) for
``execute`` (with ``json_bytes``, as the JSON endpoint runs it) and for the server's JSON answer
(``answer_json``: spliced rows the engine wrote as bytes, else encoded); medians. The library's call
(flatprint.fetch_synapse_connections / fetch_synapses) is timed the same way. Calls:
fetch_synapse_connections of the ``--pairs`` strongest neuron pairs, and fetch_synapses of the most
common neuron type with at most 12 members and of DNge104 when the store has it. ``--profile``
writes a cProfile of the synapse queries' runs.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

import requests
from requests.structures import CaseInsensitiveDict


@contextmanager
def in_process_transport(app):
    """Route every requests.Session.send to ``app`` through Starlette's TestClient (no sockets);
    yields the list of Cypher texts posted to /api/custom/custom meanwhile."""
    from fastapi.testclient import TestClient

    client = TestClient(app)
    posted: list[str] = []
    original = requests.Session.send

    def send(session, request, **kwargs):
        body = request.body or b""
        if request.path_url.startswith("/api/custom/custom") and body:
            posted.append(json.loads(body)["cypher"])
        answer = client.request(request.method, request.path_url, content=body, headers=dict(request.headers))
        response = requests.Response()
        response.status_code = answer.status_code
        response._content = answer.content
        response.headers = CaseInsensitiveDict(answer.headers)
        response.url, response.request, response.encoding = request.url, request, "utf-8"
        return response

    requests.Session.send = send
    try:
        yield posted
    finally:
        requests.Session.send = original


def cpu_ms(function, repeat: int) -> float:
    """Median CPU milliseconds of this thread over ``repeat`` runs of ``function`` (after one untimed)."""
    function()
    times = []
    for _ in range(repeat):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return statistics.median(times) * 1000


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("store", type=Path)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--profile", type=Path, default=None)
    args = ap.parse_args(argv)

    import neuprint

    import flatprint
    from flatprint.cypher import neuronanswers
    from flatprint.cypher.engine import execute
    from flatprint.server import open_stores
    from flatprint.server.app import create_app
    from flatprint.server.views.custom import answer_json

    stores = open_stores([str(args.store)])
    (store,) = stores.values()
    neuronanswers.warm(store)  # as the server does at start
    fp = flatprint.Client.from_store(store)
    pairs = fp.frame(
        "SELECT c.body_pre, c.body_post, c.weight FROM neuron_connections c "
        f"ORDER BY c.weight DESC, c.body_pre, c.body_post LIMIT {args.pairs}"
    )
    kind = fp.frame(
        "SELECT type FROM neurons WHERE type IS NOT NULL GROUP BY type HAVING count(*) <= 12 "
        "ORDER BY count(*) DESC, type LIMIT 1"
    )["type"].iloc[0]
    calls = {}
    for pre, post, weight in pairs.itertuples(index=False):
        calls[f"fetch_synapse_connections {pre} -> {post} (weight {weight})"] = (
            lambda m, c, pre=int(pre), post=int(post): m.fetch_synapse_connections(pre, post, client=c)
        )
    for name in dict.fromkeys([kind, "DNge104"]):
        if len(fp.frame(f"SELECT 1 FROM neurons WHERE type = '{name}'")):
            calls[f"fetch_synapses {name}"] = lambda m, c, name=name: m.fetch_synapses(name, client=c)

    app = create_app(stores)
    profile = cProfile.Profile() if args.profile else None
    with in_process_transport(app) as posted:
        npc = neuprint.Client("https://flatprint.local", dataset=store.dataset, token="local", progress=False)
        for name, call in calls.items():
            library = cpu_ms(lambda call=call: call(flatprint, fp), args.repeat)
            posted.clear()
            call(neuprint, npc)
            queries = list(posted)
            total_engine = total_json = 0.0
            print(f"{name}: library {library:.2f} ms CPU")
            for text in queries:
                result = execute(store, text, json_bytes=True)
                engine = cpu_ms(lambda text=text: execute(store, text, json_bytes=True), args.repeat)
                encoding = cpu_ms(lambda result=result: answer_json(result, 0.0), args.repeat)
                total_engine, total_json = total_engine + engine, total_json + encoding
                synapses = "SynapseSet" in text
                if synapses and profile is not None:
                    profile.enable()
                    for _ in range(args.repeat):
                        answer_json(execute(store, text, json_bytes=True), 0.0)
                    profile.disable()
                first = " ".join(text.split())[:70]
                print(
                    f"    {result.row_count:7d} rows  engine {engine:7.2f} ms  json {encoding:6.2f} ms  "
                    f"{'*' if synapses else ' '} {first}"
                )
            print(
                f"    all {len(queries)} queries: engine {total_engine:.2f} ms + json {total_json:.2f} ms "
                f"= {(total_engine + total_json) / library:.1f}x the library"
            )
    if profile is not None:
        profile.dump_stats(args.profile)
        pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(45)


if __name__ == "__main__":
    main()
