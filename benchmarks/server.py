"""neuprint-python through `flatprint serve` against the flatprint library directly, same calls, same run.

Target (issue 4): through the server <= 2x the library at scale 0.1. Also the JSON endpoint against
the Arrow endpoint for one large result. Writes benchmarks/results/server.json.

    python benchmarks/server.py --scale 0.1 --repeat 5 [--store store.duckdb]

``--store`` measures that store (read only) instead of the bench store of ``--scale``; results go to
``--results-dir`` (default benchmarks/results/).

``--cpu`` (issue 16) measures instead the server's CPU time per request: ``flatprint serve`` (HTTPS) in
its own process, 32 keep-alive clients looking up one neuron each through /api/custom/custom, the
server process's CPU seconds (psutil, all threads) over the measured window divided by the requests
answered in it; q/s and p99 for information. ``--stub`` answers every query with a canned one-row
result instead of running the engine: what the HTTP stack alone costs (TLS, HTTP, routing, the worker
pool, JSON). Writes benchmarks/results/server_cpu.json.

    python benchmarks/server.py --cpu --store store.duckdb --clients 32 --duration 20 [--stub]

``--type-pair`` (issue 16) measures the synapse-level calls of the store's most common neuron type T:
fetch_synapse_connections(T, T) (neuprint-python sends one query per body of T) and fetch_synapses(T),
library vs server in the same run, with the client's floor from the replay server. Writes
benchmarks/results/server_type_pair.json.

    python benchmarks/server.py --type-pair --store store.duckdb --repeat 3
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

SIDES = ("library", "server", "floor", "library_cpu", "server_cpu", "floor_cpu")


def seconds(fn) -> float:
    """Wall seconds of one run of ``fn``."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds of every live thread of process ``pid``, to the nanosecond (Linux schedstat): a
    server answers one neuprint-python call in a few ms, below psutil's 10 ms clock ticks."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as handle:
                total += int(handle.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def child_pid(marker: str) -> int:
    """The pid of this process's child whose command line contains ``marker``."""
    import psutil

    return next(p.pid for p in psutil.Process().children() if marker in " ".join(p.cmdline()))


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
        recordings[(request.method, path, cypher)] = (
            response.status_code,
            response.headers.get("content-type", "application/json"),
            response.content,
        )
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
        proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("replay_server.py")),
                str(path),
                str(port),
                str(cert),
                str(key),
            ]
        )
        url = f"https://localhost:{port}"
        try:
            wait_until_answering(proc, url, cert, 600, name="replay server")  # a loaded machine starts slowly
            wait_until_idle(proc.pid)
            yield url
        finally:
            proc.terminate()  # uvicorn waits for open keep-alive connections: do not wait long
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _serve_for_cpu(store: str, port: int, stub: bool, workers: int) -> None:
    """The server process of --cpu: ``flatprint.server.serve`` as ``flatprint serve`` runs it; with
    ``stub`` the engine is replaced by a canned one-row answer (the HTTP stack alone)."""
    from flatprint.cypher.engine import CypherResult
    from flatprint.server import serve
    from flatprint.server.views import custom

    if stub:

        def canned(store, text, **_):
            body = int(text.rsplit("=", 1)[1].split()[0])
            return CypherResult(
                ["bodyId", "type", "instance", "status", "pre", "post"],
                [[body, "PS255", "PS255_L", "Traced", 273, 1551]],
            )

        custom.execute = canned
    serve([store], port=port, workers=workers, echo=lambda *_: None)


def cpu_per_request(
    store: Path, clients: int, duration: float, stub: bool, workers: int = 4, warmup: float = 3.0
) -> dict:
    """Server CPU seconds per request under ``clients`` concurrent keep-alive clients (see the docstring)."""
    import asyncio
    import json
    import random
    import ssl
    import subprocess
    import tempfile

    import psutil
    from load import QUERY, _raw_post
    from server_fixture import free_port, wait_until_answering, wait_until_idle

    import flatprint

    ids = flatprint.Client(store).frame("SELECT bodyId FROM segments WHERE is_neuron")["bodyId"].tolist()
    with tempfile.TemporaryDirectory(prefix="flatprint-cpu-") as home:
        port = free_port()
        env = {**os.environ, "FLATPRINT_HOME": home}
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-for-cpu", str(store), str(port), "--workers", str(workers)]
            + (["--stub"] if stub else []),
            env=env,
        )
        try:
            cert = Path(home) / "tls" / "cert.pem"
            wait_until_answering(proc, f"https://localhost:{port}", cert, 120)
            wait_until_idle(proc.pid)
            server = psutil.Process(proc.pid)
            context = ssl.create_default_context(cafile=str(cert))
            latencies: list[float] = []
            window: dict = {}

            async def one_client(rng, stop_at):
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=context, server_hostname="localhost"
                )
                try:
                    while time.perf_counter() < stop_at:
                        body = rng.choice(ids)
                        sent = time.perf_counter()
                        status, answer = await _raw_post(
                            reader,
                            writer,
                            f"localhost:{port}",
                            json.dumps({"cypher": QUERY.format(body=body)}).encode(),
                        )
                        if status != 200 or [row[0] for row in json.loads(answer)["data"]] != [body]:
                            raise RuntimeError(f"wrong answer for {body}: {status} {answer[:200]!r}")
                        if window.get("measuring"):
                            latencies.append(time.perf_counter() - sent)
                finally:
                    writer.close()

            async def run():
                start = time.perf_counter()
                tasks = [
                    asyncio.create_task(one_client(random.Random(i), start + warmup + duration)) for i in range(clients)
                ]
                await asyncio.sleep(warmup)
                window.update(measuring=True, cpu=sum(server.cpu_times()[:2]), wall=time.perf_counter())
                await asyncio.sleep(duration)
                cpu = sum(server.cpu_times()[:2]) - window["cpu"]
                wall = time.perf_counter() - window["wall"]
                window["measuring"] = False
                served = len(latencies)
                await asyncio.gather(*tasks)
                return cpu, wall, served

            cpu, wall, served = asyncio.run(run())
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    latencies.sort()
    return {
        "engine": "canned answer (HTTP stack only)" if stub else "flatprint engine",
        "clients": clients,
        "workers": workers,
        "duration_s": round(wall, 1),
        "requests": served,
        "server_cpu_ms_per_request": round(cpu * 1000 / served, 3) if served else None,
        "requests_per_s": round(served / wall, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1) if latencies else None,
        "p99_ms": round(latencies[min(served - 1, int(0.99 * served))] * 1000, 1) if latencies else None,
        "load_average": os.getloadavg()[0],
    }


def type_pair(store: Path, repeat: int, results_dir: Path | None) -> None:
    """Library vs neuprint-python through ``flatprint serve`` for the synapse-level calls of the most
    common neuron type; medians of ``repeat`` runs each, the client's floor from the replay server."""
    import neuprint
    from server_fixture import running_server

    import flatprint

    fp = flatprint.Client(store)
    kind = fp.frame(
        "SELECT type FROM segments WHERE is_neuron AND type IS NOT NULL "
        "GROUP BY type ORDER BY count(*) DESC, type LIMIT 1"
    )["type"].iloc[0]
    calls = {
        f"fetch_synapse_connections {kind} -> {kind}": lambda m, c: m.fetch_synapse_connections(kind, kind, client=c),
        f"fetch_synapses {kind}": lambda m, c: m.fetch_synapses(kind, client=c),
    }

    def cpu_seconds(fn, process=None) -> float:
        """CPU seconds (all threads) of ``process`` (psutil; else this process) while ``fn`` runs: on a
        loaded machine, wall time of 800 sequential requests is mostly waiting for a CPU."""
        if process is None:
            t = time.process_time()
            fn()
            return time.process_time() - t
        before = sum(process.cpu_times()[:2])
        fn()
        return sum(process.cpu_times()[:2]) - before

    home = Path(os.environ.get("FLATPRINT_HOME", Path.home() / ".local" / "share" / "flatprint"))
    results = []
    with (
        running_server([str(store)], home, wait_idle=True, timeout=600) as (url, cert),
        recording_responses() as recordings,
    ):
        import psutil

        server_process = next(p for p in psutil.Process().children() if "serve" in " ".join(p.cmdline()))
        npc = neuprint.Client(url, dataset="male-cns:v0.9", token="local", verify=str(cert), progress=False)
        for name, call in calls.items():
            library_cpu = cpu_seconds(lambda: call(flatprint, fp))
            server_cpu = cpu_seconds(lambda: call(neuprint, npc), server_process)
            # the first call of each (a fresh server: batches of a new shape, DuckDB's caches cold)
            library_first = seconds(lambda: call(flatprint, fp))
            server_first = seconds(lambda: call(neuprint, npc))
            rows = len(call(flatprint, fp))
            library, server = [], []
            for _ in range(repeat):  # interleaved: the machine's load hits both alike
                library.append(seconds(lambda: call(flatprint, fp)))
                server.append(seconds(lambda: call(neuprint, npc)))
            results.append(
                {
                    "query": name,
                    "rows": rows,
                    "library_first_s": library_first,
                    "server_first_s": server_first,
                    "library_runs_s": library,
                    "server_runs_s": server,
                    "library_cpu_s": library_cpu,
                    "server_process_cpu_s": server_cpu,
                    "server_cpu_ratio": server_cpu / library_cpu,
                }
            )
            print(f"{name}: CPU library {library_cpu:.2f} s, server process {server_cpu:.2f} s", flush=True)
    with replay_server(recordings, home) as replay_url:
        floor_client = neuprint.Client(
            replay_url, dataset="male-cns:v0.9", token="local", verify=str(cert), progress=False
        )
        for result, call in zip(results, calls.values()):
            result["client_floor_runs_s"] = [seconds(lambda: call(neuprint, floor_client)) for _ in range(repeat)]
    for result in results:
        lib, srv, floor = (median(result[k]) for k in ("library_runs_s", "server_runs_s", "client_floor_runs_s"))
        result.update(library_s=lib, server_s=srv, client_floor_s=floor, ratio=srv / lib)
        result["server_work_ratio"] = max(srv - floor, 0.0) / lib
        print(
            f"{result['query']:45s} {result['rows']:>8} rows  library {lib:7.2f} s  server {srv:7.2f} s "
            f"x{srv / lib:.1f}  client floor {floor:6.2f} s  server work x{result['server_work_ratio']:.1f}  "
            f"(first calls: library {result['library_first_s']:.2f} s, server {result['server_first_s']:.2f} s)"
        )
    doc = {
        "name": "server_type_pair",
        "date": now_iso(),
        "store": str(Path(store).name),
        "repeat": repeat,
        "machine": machine_facts(),
        "results": results,
        "targets": "all-in server <= 10x library; server work (server - client floor) <= 1x library",
    }
    print(write_result("server_type_pair", doc, results_dir))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--results-dir", type=Path, default=None)
    ap.add_argument("--cpu", action="store_true", help="server CPU time per request under load (issue 16)")
    ap.add_argument(
        "--store", type=Path, default=None, help="the store to serve and query (default: the bench store of --scale)"
    )
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--stub", action="store_true", help="--cpu: canned answers instead of the engine")
    ap.add_argument("--workers", type=int, default=4, help="--cpu: flatprint serve --workers")
    ap.add_argument("--type-pair", action="store_true", help="synapse-level calls of the largest type (issue 16)")
    ap.add_argument("--serve-for-cpu", nargs=2, metavar=("STORE", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_for_cpu:
        _serve_for_cpu(args.serve_for_cpu[0], int(args.serve_for_cpu[1]), args.stub, args.workers)
        return
    if args.cpu:
        store = args.store or ensure_store(args.scale)
        row = cpu_per_request(store, args.clients, args.duration, args.stub, args.workers)
        print(row)
        doc = {
            "name": "server_cpu",
            "date": now_iso(),
            "store": str(store.name),
            "machine": machine_facts(),
            "results": [row],
        }
        print(write_result("server_cpu", doc, args.results_dir))
        return

    if args.type_pair:
        type_pair(args.store or ensure_store(args.scale), args.repeat, args.results_dir)
        return

    import neuprint
    import requests
    from server_fixture import running_server

    import flatprint

    store = args.store or ensure_store(args.scale)
    fp = flatprint.Client(store)
    types = fp.frame(
        "SELECT type FROM segments WHERE is_neuron AND type IS NOT NULL "
        "GROUP BY type ORDER BY count(*) DESC, type LIMIT 50"
    )["type"].tolist()
    hundred = fp.frame("SELECT bodyId FROM segments WHERE is_neuron ORDER BY bodyId LIMIT 100")["bodyId"].tolist()
    strong = (
        fp.frame(
            "SELECT c.body_pre, c.body_post FROM connections c JOIN segments a ON a.bodyId = c.body_pre "
            "AND a.is_neuron JOIN segments b ON b.bodyId = c.body_post AND b.is_neuron "
            "ORDER BY c.weight DESC LIMIT 1"
        )
        .iloc[0]
        .tolist()
    )
    calls = {
        "fetch_neurons by type": lambda m, c: m.fetch_neurons(types[10], client=c),
        "fetch_adjacencies of 1 neuron": lambda m, c: m.fetch_adjacencies(12781, None, client=c),
        "fetch_adjacencies of 100 neurons": lambda m, c: m.fetch_adjacencies(hundred, None, client=c),
        "fetch_simple_connections": lambda m, c: m.fetch_simple_connections("DNge104", None, client=c),
        "fetch_synapse_connections of a pair": lambda m, c: m.fetch_synapse_connections(
            int(strong[0]), int(strong[1]), client=c
        ),
        "fetch_shortest_paths (weight >= 5)": lambda m, c: m.fetch_shortest_paths(
            12781, 556329, min_weight=5, client=c
        ),
        "fetch_synapses of a type": lambda m, c: m.fetch_synapses("DNge104", client=c),
    }
    home = Path(os.environ.get("FLATPRINT_HOME", Path.home() / ".local" / "share" / "flatprint"))
    # Library, server and replay (the client's floor) are timed in turn within every repetition, the
    # order rotating, so a change of the machine's load meanwhile hits all three alike: timed one
    # phase after another, a busier phase once made "server work" 16x the library for a call whose
    # requests took a quarter of the client's time.
    # CPU too: the server's and the replay server's process CPU per call (all threads), the library's
    # process CPU. Wall differences of a few ms under a 35 ms client floor are mostly the machine's
    # noise; CPU is not.
    samples = {name: {side: [] for side in SIDES} for name in calls}
    cold = {}
    with running_server([str(store)], home, wait_idle=True, timeout=600) as (url, cert):
        # Every request the client makes, for the replay server: its start-up requests (cached per
        # server, so recording starts with the client), then the first (cold) call of each.
        with recording_responses() as recordings:
            npc = neuprint.Client(url, dataset="male-cns:v0.9", token="local", verify=str(cert), progress=False)
            for name, call in calls.items():
                cold[name] = (seconds(lambda: call(flatprint, fp)), seconds(lambda: call(neuprint, npc)))
        with replay_server(recordings, home) as replay_url:
            floor_client = neuprint.Client(
                replay_url, dataset="male-cns:v0.9", token="local", verify=str(cert), progress=False
            )
            server_pid, replay_pid = child_pid(" serve "), child_pid("replay_server.py")
            sides = [
                ("library", flatprint, fp, None),
                ("server", neuprint, npc, server_pid),
                ("floor", neuprint, floor_client, replay_pid),
            ]
            for rep in range(args.repeat + 1):  # the first round warms the replay side; not kept
                for name, call in calls.items():
                    for side, module, client, pid in sides[rep % 3 :] + sides[: rep % 3]:
                        cpu = time.process_time() if pid is None else process_cpu_seconds(pid)
                        took = seconds(lambda: call(module, client))
                        cpu = (time.process_time() if pid is None else process_cpu_seconds(pid)) - cpu
                        if rep:
                            samples[name][side].append(took)
                            samples[name][f"{side}_cpu"].append(cpu)
        results = []
        for name in calls:
            lib, srv, floor, lib_cpu, srv_cpu, floor_cpu = (median(samples[name][side]) for side in SIDES)
            cpu_work = max(srv_cpu - floor_cpu, 0.0) / lib_cpu if lib_cpu > 0 else None
            results.append(
                {
                    "query": name,
                    "library_s": lib,
                    "server_s": srv,
                    "ratio": srv / lib,
                    "library_cold_s": cold[name][0],
                    "server_cold_s": cold[name][1],
                    "client_floor_s": floor,
                    "floor_ratio": floor / lib,
                    "server_work_ratio": max(srv - floor, 0.0) / lib,
                    "library_cpu_s": lib_cpu,
                    "server_process_cpu_s": srv_cpu,
                    "replay_process_cpu_s": floor_cpu,
                    "server_cpu_work_ratio": cpu_work,
                    "runs_s": samples[name],
                    "target": "server <= 2x library",
                }
            )
            print(
                f"{name:40s} library {lib * 1000:8.1f} ms  server {srv * 1000:8.1f} ms  x{srv / lib:.2f}  "
                f"client floor {floor * 1000:8.1f} ms  server work x{max(srv - floor, 0.0) / lib:.2f}  CPU: library "
                f"{lib_cpu * 1000:.2f} ms, server {srv_cpu * 1000:.2f} ms, replay {floor_cpu * 1000:.2f} ms"
            )
        big = (
            "MATCH (n:Neuron) RETURN n.bodyId AS bodyId, n.type AS type, n.instance AS instance, "
            "n.pre AS pre, n.post AS post ORDER BY bodyId"
        )
        _, json_s = timed(lambda: npc.fetch_custom(big), args.repeat)
        _, arrow_s = timed(lambda: npc.fetch_custom(big, use_arrow=True), args.repeat)
        rows = len(npc.fetch_custom(big))
        # The endpoints alone (answer bytes received, no client-side parsing): the server's share.
        session = requests.Session()
        session.verify, session.headers["Authorization"] = str(cert), "Bearer local"

        def endpoint(name):
            # verify per request: a REQUESTS_CA_BUNDLE in the environment overrides session.verify
            session.post(f"{url}/api/custom/{name}", json={"cypher": big}, verify=str(cert)).raise_for_status()

        _, json_endpoint_s = timed(lambda: endpoint("custom"), args.repeat)
        _, arrow_endpoint_s = timed(lambda: endpoint("arrow"), args.repeat)
        json_vs_arrow = {
            "query": f"custom Cypher, {rows} rows",
            "json_s": json_s,
            "arrow_s": arrow_s,
            "ratio": json_s / arrow_s,
            "json_endpoint_s": json_endpoint_s,
            "arrow_endpoint_s": arrow_endpoint_s,
            "endpoint_ratio": json_endpoint_s / arrow_endpoint_s,
        }
        print(
            f"JSON {json_s * 1000:.1f} ms, Arrow {arrow_s * 1000:.1f} ms for {rows} rows (neuprint-python); "
            f"endpoints alone {json_endpoint_s * 1000:.1f} ms vs {arrow_endpoint_s * 1000:.1f} ms"
        )

    results.append(json_vs_arrow)
    doc = {
        "name": "server",
        "date": now_iso(),
        "scale": args.scale,
        "store": str(Path(store).name),
        "repeat": args.repeat,
        "machine": machine_facts(),
        "results": results,
        "note": "neuprint-python 0.6.4 through flatprint serve (HTTPS, JSON) vs the flatprint library in-process "
        "and vs the replay server (the client's floor); medians of warm runs, the three sides timed in turn "
        "within every repetition (rotating order)",
    }
    print(write_result("server", doc, args.results_dir))


if __name__ == "__main__":
    main()
