"""flatprint.server: a neuPrintHTTP-compatible HTTPS server over local stores."""

from __future__ import annotations

import errno
import ipaddress
import socket
from pathlib import Path

from flatprint.cypher.memory import budget_from, set_memory_budget
from flatprint.errors import FlatprintError, StoreError
from flatprint.store import Store

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_stores(specs: list[str]) -> dict[str, Store]:
    """``PATH`` or ``PATH=NAME:TAG`` (serve a store under another dataset key)."""
    stores: dict[str, Store] = {}
    for spec in specs:
        path, _, key = spec.partition("=")
        store = Store.open(Path(path).expanduser())
        if key:
            if ":" not in key:
                raise StoreError(f"{spec}: the dataset key must be NAME:TAG")
            name, tag = key.split(":", 1)
            store.meta = {**store.meta, "dataset": name, "tag": tag}
        if store.dataset in stores:
            raise StoreError(f"{spec}: dataset {store.dataset} is already served; use PATH=NAME:TAG")
        stores[store.dataset] = store
    return stores


def bind_socket(host: str, port: int) -> socket.socket:
    """Claim ``host:port`` before anything else happens, so a busy port is one clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # A restart right after Ctrl-C need not wait for old connections in TIME_WAIT; a port that
    # another process listens on is still refused.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            reason = "is already in use (another server?)"
        elif exc.errno == errno.EACCES:
            reason = "needs more privileges (ports below 1024 do)"
        else:
            reason = f"cannot be opened ({exc.strerror or exc})"
        raise FlatprintError(
            f"port {port} on {host} {reason}: pick another with --port, "
            f"e.g. --port {port + 1 if port < 65535 else 8443}"
        ) from None
    sock.listen(2048)  # from here on connections queue until the server takes them
    return sock


def serve(
    specs: list[str],
    host: str = "127.0.0.1",
    port: int = 8443,
    http: bool = False,
    timeout: float = 60.0,
    workers: int = 4,
    auth: str | None = None,
    echo=print,
    memory_budget: str | None = None,
) -> None:
    """Run the server until interrupted; prints how to connect (and the certificate to trust).

    The port is bound before the app is built or anything is printed: a busy port raises
    FlatprintError naming it, and nothing claims to be serving.
    """
    import uvicorn  # noqa: PLC0415 - serve() only: importing flatprint.server stays light

    from flatprint.server.app import create_app  # noqa: PLC0415 - serve() only: importing flatprint.server stays light
    from flatprint.server.tls import ensure_certificate  # noqa: PLC0415 - serve() only: importing flatprint.server stays light

    if not is_loopback(host) and not auth:
        raise FlatprintError(
            f"--host {host} is reachable from other machines: pass --auth tokens.json "
            "(without it the server accepts any token and so binds loopback only)"
        )
    from flatprint.server.auth import load_tokens  # noqa: PLC0415 - serve() only: importing flatprint.server stays light

    grants = load_tokens(auth) if auth else None
    stores = open_stores(specs)
    budget = set_memory_budget(budget_from(memory_budget))  # DuckDB's share and the engine's rows
    share = budget.duckdb_limit(len(stores))
    for store in stores.values():
        store.limit_memory(share, spill_bytes=share)
    sock = bind_socket(host, port)
    try:
        # the explorer's autocomplete index and summaries are computed in the background
        app = create_app(stores, timeout=timeout, workers=workers, grants=grants, warm=True)
        scheme = "http" if http else "https"
        ssl = {}
        if not http:
            cert, key = ensure_certificate(extra_hosts=() if is_loopback(host) else (host,))
            ssl = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
            echo(f"export REQUESTS_CA_BUNDLE={cert}")
        shown = "localhost" if is_loopback(host) else host
        for key in stores:
            echo(f"serving {key} at {scheme}://{shown}:{port}  (explorer: {scheme}://{shown}:{port}/explorer/)")
        first = next(iter(stores))
        echo(
            f"python: from neuprint import Client; c = Client('{scheme}://{shown}:{port}', dataset='{first}', "
            f"token='local')"
        )
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", **ssl))
        server.run(sockets=[sock])
    finally:
        sock.close()
