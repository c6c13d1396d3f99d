"""neuprint-python through `flatprint serve` against the flatprint library directly, same calls, same run.

Target (issue 4): through the server <= 2x the library at scale 0.1. Also the JSON endpoint against
the Arrow endpoint for one large result. Writes benchmarks/results/server.json.

    python benchmarks/server.py --scale 0.1 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _common import ensure_store, machine_facts, median, now_iso, write_result  # noqa: E402


def timed(fn, repeat: int):
    first = time.perf_counter()
    fn()
    cold = time.perf_counter() - first
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return cold, median(runs)


@contextmanager
def recording_responses():
    """Yield a dict that fills with (method, path, cypher) -> (status, content type, body) of every
    request made meanwhile, from requests' transport (neuprint-python's session included)."""
    import json

    import requests

    recordings: dict = {}
    original = requests.Session.send

    def send(session, request, **kwargs):
        response = original(session, request, **kwargs)
        cypher = ""
        if request.body:
            try:
                cypher = json.loads(request.body).get("cypher", "")
            except (ValueError, AttributeError):
                cypher = ""
        path = request.path_url.split("?")[0]
        recordings[(request.method, path, cypher)] = (response.status_code, response.headers.get(
            "content-type", "application/json"), response.content)
        return response

    requests.Session.send = send
    try:
        yield recordings
    finally:
        requests.Session.send = original


@contextmanager
def replay_server(recordings: dict, home: Path):
    """benchmarks/replay_server.py on a free port with flatprint's certificate; yields its URL."""
    import pickle
    import subprocess
    import tempfile

    from server_fixture import free_port, wait_until_answering, wait_until_idle

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recordings.pickle"
        path.write_bytes(pickle.dumps(recordings))
        cert, key = home / "tls" / "cert.pem", home / "tls" / "key.pem"
        proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("replay_server.py")), str(path),
                                 str(port), str(cert), str(key)])
        url = f"https://localhost:{port}"
        try:
            wait_until_answering(proc, url, cert, 60, name="replay server")
            wait_until_idle(proc.pid)
            yield url
        finally:
            proc.terminate()  # uvicorn waits for open keep-alive connections: do not wait long
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--results-dir", type=Path, default=None)
    args = ap.parse_args(argv)

    import neuprint

    import flatprint
    from server_fixture import running_server

    store = ensure_store(args.scale)
    fp = flatprint.Client(store)
    types = fp.frame("SELECT type FROM segments WHERE is_neuron AND type IS NOT NULL "
                     "GROUP BY type ORDER BY count(*) DESC, type LIMIT 50")["type"].tolist()
    hundred = fp.frame("SELECT bodyId FROM segments WHERE is_neuron ORDER BY bodyId LIMIT 100")["bodyId"].tolist()
    strong = fp.frame("SELECT c.body_pre, c.body_post FROM connections c JOIN segments a ON a.bodyId = c.body_pre "
                      "AND a.is_neuron JOIN segments b ON b.bodyId = c.body_post AND b.is_neuron "
                      "ORDER BY c.weight DESC LIMIT 1").iloc[0].tolist()
    calls = {
        "fetch_neurons by type": lambda m, c: m.fetch_neurons(types[10], client=c),
        "fetch_adjacencies of 1 neuron": lambda m, c: m.fetch_adjacencies(12781, None, client=c),
        "fetch_adjacencies of 100 neurons": lambda m, c: m.fetch_adjacencies(hundred, None, client=c),
        "fetch_simple_connections": lambda m, c: m.fetch_simple_connections("DNge104", None, client=c),
        "fetch_synapse_connections of a pair": lambda m, c: m.fetch_synapse_connections(
            int(strong[0]), int(strong[1]), client=c),
        "fetch_shortest_paths (weight >= 5)": lambda m, c: m.fetch_shortest_paths(12781, 556329, min_weight=5, client=c),
        "fetch_synapses of a type": lambda m, c: m.fetch_synapses("DNge104", client=c),
    }
    home = Path(os.environ.get("FLATPRINT_HOME", Path.home() / ".local" / "share" / "flatprint"))
    results = []
    # Everything the client asks (its start-up requests are cached per server, so record from the start).
    with running_server([str(store)], home, wait_idle=True) as (url, cert), recording_responses() as recordings:
        npc = neuprint.Client(url, dataset="male-cns:v0.9", token="local", verify=str(cert), progress=False)
        for name, call in calls.items():
            lib_cold, lib = timed(lambda: call(flatprint, fp), args.repeat)
            srv_cold, srv = timed(lambda: call(neuprint, npc), args.repeat)
            results.append({"query": name, "library_s": lib, "server_s": srv, "ratio": srv / lib,
                            "library_cold_s": lib_cold, "server_cold_s": srv_cold, "target": "server <= 2x library"})
            print(f"{name:40s} library {lib * 1000:8.1f} ms  server {srv * 1000:8.1f} ms  x{srv / lib:.2f}")
        big = ("MATCH (n:Neuron) RETURN n.bodyId AS bodyId, n.type AS type, n.instance AS instance, "
               "n.pre AS pre, n.post AS post ORDER BY bodyId")
        _, json_s = timed(lambda: npc.fetch_custom(big), args.repeat)
        _, arrow_s = timed(lambda: npc.fetch_custom(big, use_arrow=True), args.repeat)
        rows = len(npc.fetch_custom(big))
        json_vs_arrow = {"query": f"custom Cypher, {rows} rows: JSON vs Arrow endpoint", "json_s": json_s,
                         "arrow_s": arrow_s, "ratio": json_s / arrow_s}
        print(f"JSON {json_s * 1000:.1f} ms, Arrow {arrow_s * 1000:.1f} ms for {rows} rows")

    # The client's own floor: the same calls against a server that replays the recorded answers.
    with replay_server(recordings, home) as replay_url:
        floor_client = neuprint.Client(replay_url, dataset="male-cns:v0.9", token="local", verify=str(cert),
                                       progress=False)
        for result, call in zip(results, calls.values()):
            _, floor = timed(lambda: call(neuprint, floor_client), args.repeat)
            result["client_floor_s"] = floor
            result["floor_ratio"] = floor / result["library_s"]
            result["server_work_ratio"] = max(result["server_s"] - floor, 0.0) / result["library_s"]
            print(f"{result['query']:40s} client floor {floor * 1000:8.1f} ms (x{result['floor_ratio']:.2f} of the "
                  f"library); server work x{result['server_work_ratio']:.2f}")
    results.append(json_vs_arrow)
    doc = {"name": "server", "date": now_iso(), "scale": args.scale, "repeat": args.repeat,
           "machine": machine_facts(), "results": results,
           "note": "neuprint-python 0.6.4 through flatprint serve (HTTPS, JSON) vs the flatprint library in-process; "
                   "medians of warm runs"}
    print(write_result("server", doc, args.results_dir))


if __name__ == "__main__":
    main()
