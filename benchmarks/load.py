"""Load test: concurrent clients looking up one neuron by bodyId via /api/custom/custom.

    python benchmarks/load.py [--scale 0.1] [--clients 32 64] [--duration 60] [--workers 4]

Starts a real ``flatprint serve`` process on 127.0.0.1 (HTTPS, its own self-signed certificate in a
temporary FLATPRINT_HOME) and runs, for each client count, that many concurrent clients for
``--duration`` seconds (after a short warm-up that is not counted). Client: ``httpx.AsyncClient`` in
one asyncio process, one keep-alive HTTP/1.1 connection per client (``--client raw``: asyncio TLS
streams with hand-written HTTP/1.1 instead, which costs far less client CPU on a machine the client
shares with the server); each client sends its next request as soon as the previous answer arrived. Request: the Cypher

    MATCH (n:Neuron) WHERE n.bodyId = <random neuron> RETURN n.bodyId, n.type, n.instance, ...

Every answer must be a 200 with exactly one row for that bodyId; anything else counts as an error.
Writes ``benchmarks/results/load.json`` (requests/s, p50/p90/p99/max latency, errors, CPU seconds
used by the server and by the client process). Nothing but 127.0.0.1 is contacted.

By default the store is the scale-0.1 bench store when it exists (``$FLATPRINT_HOME/bench``), else
the scale-0.01 one (built if missing). The targets (>= 500 simple queries/s with p99 < 50 ms) are
for scale 1.0; note that client and server share this machine's CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # server_fixture
import _common as C  # noqa: E402

QUERY = (
    "MATCH (n:Neuron) WHERE n.bodyId = {body} RETURN n.bodyId AS bodyId, n.type AS type, "
    "n.instance AS instance, n.status AS status, n.pre AS pre, n.post AS post"
)
TARGET = {"requests_per_s": 500, "p99_ms": 50, "scale": 1.0}
WARMUP = 3.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a process (from /proc) including its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def pick_store(scale: float | None, store: Path | None, log=print) -> tuple[Path, float | None]:
    if store is not None:
        return store, scale
    if scale is None:
        scale = 0.1 if C.store_path(0.1).exists() else 0.01
    return C.ensure_store(scale, log=log), scale


class Server:
    """``flatprint serve STORE`` on a free loopback port, HTTPS with a fresh certificate."""

    def __init__(self, store: Path, workers: int, timeout: float, home: Path):
        self.port = _free_port()
        self.url = f"https://localhost:{self.port}"
        self.cert = home / "tls" / "cert.pem"
        env = {**os.environ, "FLATPRINT_HOME": str(home)}
        self.proc = subprocess.Popen(
            [
                C.PYTHON,
                "-m",
                "flatprint.cli",
                "serve",
                str(store),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                "--timeout",
                str(timeout),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self, limit: float = 120.0) -> None:
        from server_fixture import wait_until_answering, wait_until_idle

        wait_until_answering(self.proc, self.url, self.cert, limit)
        waited = wait_until_idle(self.proc.pid)  # the explorer's cache warm-up must not be measured
        print(f"server idle after start-up work ({waited:.1f} s)")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def _neuron_ids(url: str, cert: Path) -> list[int]:
    import httpx

    async with httpx.AsyncClient(verify=str(cert), timeout=60) as client:
        r = await client.post(f"{url}/api/custom/custom", json={"cypher": "MATCH (n:Neuron) RETURN n.bodyId"})
        r.raise_for_status()
        return [row[0] for row in r.json()["data"]]


async def _raw_post(reader, writer, host: str, body: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 POST on a kept-alive connection; (status, body). uvicorn sends Content-Length."""
    writer.write(
        b"POST /api/custom/custom HTTP/1.1\r\nHost: " + host.encode() + b"\r\nAuthorization: Bearer load"
        b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    status = int((await reader.readline()).split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def run_clients(
    url: str, cert: Path, ids: list[int], clients: int, duration: float, seed: int = 0, kind: str = "httpx"
) -> dict:
    """``clients`` concurrent request loops; latencies of requests that started after the warm-up.

    kind "httpx": httpx.AsyncClient; "raw": asyncio TLS streams with hand-written HTTP/1.1 (much less
    client CPU per request, so more of the machine is left to the server)."""
    import ssl
    from urllib.parse import urlparse

    import httpx

    rng = random.Random(seed)
    latencies: list[float] = []
    errors: list[str] = []
    start = time.perf_counter()
    measure_from = start + WARMUP
    stop_at = measure_from + duration
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    parsed = urlparse(url)
    context = ssl.create_default_context(cafile=str(cert))

    def record(sent: float, problem: str | None) -> None:
        if sent >= measure_from:
            if problem is None:
                latencies.append(time.perf_counter() - sent)
            else:
                errors.append(problem)

    async def httpx_client(client) -> None:
        while True:
            sent = time.perf_counter()
            if sent >= stop_at:
                return
            body = rng.choice(ids)
            try:
                r = await client.post("/api/custom/custom", json={"cypher": QUERY.format(body=body)})
                ok = r.status_code == 200 and [row[0] for row in r.json()["data"]] == [body]
                problem = None if ok else f"{r.status_code}: {r.text[:200]}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            record(sent, problem)

    async def raw_client() -> None:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", parsed.port, ssl=context, server_hostname=parsed.hostname
        )
        host = f"{parsed.hostname}:{parsed.port}"
        try:
            while True:
                sent = time.perf_counter()
                if sent >= stop_at:
                    return
                body = rng.choice(ids)
                try:
                    status, answer = await _raw_post(
                        reader, writer, host, json.dumps({"cypher": QUERY.format(body=body)}).encode()
                    )
                    ok = status == 200 and [row[0] for row in json.loads(answer)["data"]] == [body]
                    problem = None if ok else f"{status}: {answer[:200]!r}"
                except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
                    record(sent, f"{type(exc).__name__}: {exc}")
                    return
                record(sent, problem)
        finally:
            writer.close()

    if kind == "raw":
        await asyncio.gather(*(raw_client() for _ in range(clients)))
    else:
        async with httpx.AsyncClient(base_url=url, verify=str(cert), timeout=60, limits=limits) as client:
            await asyncio.gather(*(httpx_client(client) for _ in range(clients)))
    elapsed = time.perf_counter() - measure_from
    latencies.sort()

    def pct(p: float) -> float | None:
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000, 2)

    return {
        "requests": len(latencies) + len(errors),
        "errors": len(errors),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": round(latencies[-1] * 1000, 2) if latencies else None,
        "mean_ms": round(sum(latencies) / len(latencies) * 1000, 2) if latencies else None,
        "first_errors": errors[:5],
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=None, help="bench store scale (default: 0.1 if built, else 0.01)")
    ap.add_argument("--store", type=Path, default=None, help="a store to serve instead of the bench store")
    ap.add_argument("--clients", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--duration", type=float, default=60.0, help="measured seconds per client count")
    ap.add_argument("--workers", type=int, default=4, help="flatprint serve --workers")
    ap.add_argument("--timeout", type=float, default=60.0, help="flatprint serve --timeout")
    ap.add_argument(
        "--client",
        choices=["httpx", "raw", "both"],
        default="both",
        help="httpx.AsyncClient, a minimal asyncio HTTP/1.1 client, or both in turn",
    )
    ap.add_argument("--results-dir", type=Path, default=None)
    args = ap.parse_args(argv)

    store, scale = pick_store(args.scale, args.store)
    facts = C.machine_facts()
    results = []
    with tempfile.TemporaryDirectory(prefix="flatprint-load-") as home:
        server = Server(store, args.workers, args.timeout, Path(home))
        try:
            server.wait_ready()
            ids = asyncio.run(_neuron_ids(server.url, server.cert))
            print(f"serving {store.name} (scale {scale}) at {server.url}; {len(ids)} neurons")
            kinds = ["httpx", "raw"] if args.client == "both" else [args.client]
            for kind, clients in [(k, c) for k in kinds for c in args.clients]:
                server_cpu = _cpu_seconds(server.proc.pid)
                client_cpu = resource.getrusage(resource.RUSAGE_SELF)
                wall = time.perf_counter()
                row = asyncio.run(run_clients(server.url, server.cert, ids, clients, args.duration, kind=kind))
                wall = time.perf_counter() - wall
                after = resource.getrusage(resource.RUSAGE_SELF)
                row = {
                    "name": "neuron_by_bodyId",
                    "client": kind,
                    "clients": clients,
                    "duration_s": args.duration,
                    **row,
                    "server_cpu_s": round(_cpu_seconds(server.proc.pid) - server_cpu, 1),
                    "client_cpu_s": round(
                        after.ru_utime + after.ru_stime - client_cpu.ru_utime - client_cpu.ru_stime, 1
                    ),
                    "wall_s": round(wall, 1),
                }
                served = row["requests_per_s"] * wall  # approximately, warm-up included like the CPU times
                row["server_cpu_ms_per_request"] = round(row["server_cpu_s"] * 1000 / served, 2) if served else None
                row["client_cpu_ms_per_request"] = round(row["client_cpu_s"] * 1000 / served, 2) if served else None
                row["meets_target_shape"] = bool(
                    row["errors"] == 0
                    and row["p99_ms"] is not None
                    and row["requests_per_s"] >= TARGET["requests_per_s"]
                    and row["p99_ms"] < TARGET["p99_ms"]
                )
                print(
                    f"{kind}, {clients} clients: {row['requests_per_s']} req/s, p50 {row['p50_ms']} ms, "
                    f"p99 {row['p99_ms']} ms, errors {row['errors']}, server CPU {row['server_cpu_s']} s, "
                    f"client CPU {row['client_cpu_s']} s"
                )
                if not row["first_errors"]:
                    row.pop("first_errors")
                results.append(row)
        finally:
            server.stop()
    doc = {
        "name": "load",
        "date": C.now_iso(),
        "scale": scale,
        "store": store.name,
        "client": (
            "one asyncio process, one keep-alive HTTPS connection per client; 'httpx' = "
            "httpx.AsyncClient (HTTP/1.1), 'raw' = asyncio TLS streams with hand-written HTTP/1.1 "
            "(less client CPU, so more of the shared CPUs left to the server)"
        ),
        "request": "POST /api/custom/custom: " + QUERY.format(body="<random neuron bodyId>"),
        "server": f"flatprint serve --workers {args.workers} (uvicorn, HTTPS, 127.0.0.1)",
        "warmup_s": WARMUP,
        "target": f">= {TARGET['requests_per_s']} req/s with p99 < {TARGET['p99_ms']} ms at scale 1.0",
        "note": "client and server share the machine's CPUs (see server_cpu_s/client_cpu_s)",
        "machine": facts,
        "results": results,
    }
    path = C.write_result("load", doc, args.results_dir)
    print(f"wrote {path}")
    return doc


if __name__ == "__main__":
    main()
