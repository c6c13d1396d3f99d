"""The ASGI app: neuPrintHTTP's REST surface over one or more stores.

One app, views per neuPrint API area (``views/``), one place that turns errors into neuPrint's
``{"error": ...}`` answers. Queries run in a bounded thread pool so one heavy query cannot starve the
others; each thread uses its own DuckDB cursor on the read-only store.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from flatprint import __version__
from flatprint.errors import FlatprintError, QueryError
from flatprint.store import Store

NEUPRINT_HTTP_VERSION = "1.7.4"  # neuprint-python checks >= 1.7.3 to enable the Arrow endpoint


class ServerBusy(FlatprintError):
    """Too many queries are waiting; the client should retry later (503)."""


class NotFound(FlatprintError):
    """A dataset, skeleton, mesh or route that does not exist (404, or 400 where neuPrint uses it)."""


@dataclass
class ServerState:
    datasets: dict[str, Store]
    timeout: float = 60.0
    workers: int = 4
    queue_limit: int = 64
    started: float = 0.0
    _waiting: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    limiter: Any = None
    grants: dict | None = None  # token -> Grant with --auth; None = open local mode
    max_body: int = 16 * 1024 * 1024
    served: int = 0

    def dataset(self, name: str | None) -> tuple[str, Store]:
        if not name:
            if len(self.datasets) == 1:
                return next(iter(self.datasets.items()))
            raise QueryError(f"dataset is required (one of {sorted(self.datasets)})")
        if name not in self.datasets:
            raise NotFound(f"dataset {name!r} not found (available: {', '.join(sorted(self.datasets))})")
        return name, self.datasets[name]

    async def run(self, fn, *args):
        """Run blocking work in the bounded pool; refuse with 503 when the queue is full."""
        with self._lock:
            if self._waiting >= self.queue_limit:
                raise ServerBusy("server busy: too many queries waiting, retry later")
            self._waiting += 1
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)
        finally:
            with self._lock:
                self._waiting -= 1


def _default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (bytes, bytearray)):
        return value.decode()
    return str(value)


def _clean(value):
    """NaN/inf are not JSON: neuPrint answers null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def encode_json(payload) -> bytes:
    """JSON bytes as neuPrintHTTP answers: keys sorted (neuprintr's roiHierarchy walker needs
    "children" before "name", neuprintr-protocol.md), NaN and infinity as null."""
    try:
        # orjson writes NaN/inf as null itself and is ~10x faster than json on large results
        return orjson.dumps(payload, default=_default, option=_ORJSON_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):  # e.g. an integer beyond 64 bits
        return json.dumps(_clean(payload), sort_keys=True, default=_default, allow_nan=False).encode()


def json_response(payload, status_code: int = 200) -> Response:
    return Response(encode_json(payload), status_code=status_code, media_type="application/json")


def encoded_json_response(body: bytes, status_code: int = 200) -> Response:
    return Response(body, status_code=status_code, media_type="application/json")


def error_response(message: str, status_code: int = 400, headers: dict | None = None) -> Response:
    resp = json_response({"error": message}, status_code)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


async def read_json(request: Request) -> dict:
    """Lenient JSON body: neuprintr sends raw newlines inside strings (strict=False accepts them)."""
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw.decode("utf-8", errors="replace"), strict=False)
    except ValueError as exc:
        raise QueryError(f"request body is not valid JSON ({exc}); escape double quotes in the Cypher text") from None
    if not isinstance(body, dict):
        raise QueryError("request body must be a JSON object")
    return body


def create_app(datasets: dict[str, Store], *, timeout: float = 60.0, workers: int = 4,
               queue_limit: int = 64, grants: dict | None = None, max_body: int = 16 * 1024 * 1024) -> FastAPI:
    import time

    from flatprint.server.auth import AuthError, Forbidden, check

    from flatprint.server.views import cached, custom, dbmeta, indirect, npexplorer, skeletons, web_root

    app = FastAPI(title="flatprint", version=__version__,
                  description="A local, read-only, neuPrint-compatible connectome server.",
                  docs_url="/api/docs", openapi_url="/api/openapi.json", redoc_url=None)
    state = ServerState(datasets=datasets, timeout=timeout, workers=workers, queue_limit=queue_limit,
                        started=time.time(), limiter=anyio.CapacityLimiter(workers), grants=grants,
                        max_body=max_body)
    app.state.flatprint = state

    app.add_middleware(Guard, state=state, check=check, auth_error=AuthError)

    @app.exception_handler(FlatprintError)
    async def flatprint_error(request: Request, exc: FlatprintError):
        if isinstance(exc, ServerBusy):
            return error_response(str(exc), 503, {"Retry-After": "2"})
        if isinstance(exc, NotFound):
            return error_response(str(exc), 404)
        if isinstance(exc, AuthError):
            return error_response(str(exc), 401)
        if isinstance(exc, Forbidden):
            return error_response(str(exc), 403)
        return error_response(str(exc), 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error_response(str(exc.detail), exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        return error_response(f"internal error: {type(exc).__name__}: {exc}", 500)

    for module in (dbmeta, custom, cached, npexplorer, skeletons, web_root, indirect):
        app.include_router(module.router)
    return app


class Guard:
    """Body size limit and bearer-token check (with --auth) before any view runs.

    A plain ASGI middleware rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware
    adds a task group and memory streams to every request (a measurable share of a simple query's
    time under load) and hides the client's disconnect from the views."""

    def __init__(self, app, state: ServerState, check, auth_error):
        self.app = app
        self.state = state
        self.check = check
        self.auth_error = auth_error

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.state
        length = authorization = None
        for key, value in scope["headers"]:
            if key == b"content-length" and length is None:
                length = value.decode("latin-1")
            elif key == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
        if length and length.isdigit() and int(length) > state.max_body:
            await error_response(f"request body too large (limit {state.max_body} bytes)", 413)(scope, receive, send)
            return
        path = scope["path"]
        grant = None
        if path != "/" and not path.startswith("/explorer/static"):
            try:
                grant = self.check(state.grants, authorization)
            except self.auth_error as exc:
                await error_response(str(exc), 401)(scope, receive, send)
                return
        scope.setdefault("state", {})["grant"] = grant
        state.served += 1
        await self.app(scope, receive, send)


def state_of(request: Request) -> ServerState:
    return request.app.state.flatprint


def dataset_for(request: Request, name: str | None) -> tuple[str, Store]:
    """Resolve the dataset a request names and check the caller's token may read it."""
    from flatprint.server.auth import Forbidden

    key, store = state_of(request).dataset(name)
    grant = getattr(request.state, "grant", None)
    if grant is not None and not grant.allows(key):
        raise Forbidden(f"this token may not read dataset {key!r}")
    return key, store


def require_admin(request: Request) -> None:
    from flatprint.server.auth import Forbidden

    grant = getattr(request.state, "grant", None)
    if state_of(request).grants is not None and (grant is None or grant.role != "admin"):
        raise Forbidden("admin token required")
