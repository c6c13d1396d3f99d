"""Start a real `flatprint serve` process on a free loopback port for integration tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_idle(pid: int, busy_percent: float = 10.0, settle: int = 3, limit: float = 600.0) -> float:
    """Wait until process ``pid`` (with its threads) uses < busy_percent of one core for ``settle``
    consecutive half-second samples: the server warms the web explorer's caches in the background
    after it starts, and a benchmark timed meanwhile measures that work too. Returns seconds waited."""
    import psutil

    proc = psutil.Process(pid)
    started = time.monotonic()
    quiet = 0
    while quiet < settle and time.monotonic() - started < limit:
        quiet = quiet + 1 if proc.cpu_percent(interval=0.5) < busy_percent else 0
    return time.monotonic() - started


def wait_until_answering(proc, url: str, cert: Path | None, limit: float, name: str = "server") -> None:
    """Poll ``GET url/api/version`` until the server started as ``proc`` answers (any status); raise
    with its output when it exits first, or when ``limit`` seconds pass."""
    deadline = time.time() + limit
    while True:
        if proc.poll() is not None:
            stream = proc.stdout or proc.stderr
            raise RuntimeError(f"{name} exited: {stream.read() if stream else ''}")
        try:
            if cert is not None and not cert.exists():
                raise requests.exceptions.ConnectionError("certificate not written yet")
            requests.get(f"{url}/api/version", verify=str(cert) if cert else True, timeout=2)
            return
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):  # a loaded machine: ask again
            if time.time() > deadline:
                raise RuntimeError(f"{name} did not start") from None
            time.sleep(0.2)


@contextmanager
def running_server(
    stores: list[str], home: Path, *extra: str, http: bool = False, timeout: float = 60.0, wait_idle: bool = False
):
    """Yield (base_url, cert_path or None); the server is stopped afterwards. ``wait_idle``: return
    only once the server has finished its start-up work (for benchmarks)."""
    port = free_port()
    env = {**os.environ, "FLATPRINT_HOME": str(home)}
    args = [sys.executable, "-m", "flatprint.cli", "serve", *stores, "--port", str(port), *extra]
    if http:
        args.append("--http")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    scheme = "http" if http else "https"
    url = f"{scheme}://localhost:{port}"
    cert = None if http else home / "tls" / "cert.pem"
    try:
        wait_until_answering(proc, url, cert, timeout)
        if wait_idle:
            wait_until_idle(proc.pid)
        yield url, cert
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
