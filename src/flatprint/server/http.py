"""The server's HTTP base: what the API views and the web explorer share.

The server state (datasets, bounded query pool, token grants) kept on the app, neuPrint's JSON
answers and ``{"error": ...}`` responses, the lenient JSON body reader, and the token checks
(:func:`dataset_for`, :func:`require_admin`). Views (``views/``) and ``flatprint.web`` import only
this module; :mod:`flatprint.server.app` wires them into one app.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
from fastapi import Request
from fastapi.responses import Response

from flatprint.errors import FlatprintError, QueryError
from flatprint.server.auth import Forbidden
from flatprint.store import Store

NEUPRINT_HTTP_VERSION = "1.7.4"  # neuprint-python checks >= 1.7.3 to enable the Arrow endpoint


class ServerBusy(FlatprintError):
    """Too many queries are waiting; the client should retry later (503)."""


class NotFound(FlatprintError):
    """A dataset, skeleton, mesh or route that does not exist (404, or 400 where neuPrint uses it)."""


class BodyTooLarge(FlatprintError):
    """A request body over the server's limit (413)."""


#: A query whose kind last cost at most this much CPU (engine and JSON) runs on the event loop's
#: thread instead of the worker pool (:meth:`ServerState.runs_inline`).
INLINE_SECONDS = 0.004
#: An inline run stops after this long and the query runs again in the pool with the full timeout.
INLINE_LIMIT = 0.1
#: Kinds of queries whose costs are kept (all forgotten when more arrive: cheap kinds return).
KEPT_COSTS = 4096

# A query's kind for its cost: its text with each number and single-quoted string as 0, and each
# list of integers as the bit length of its size (neuprint-python writes its Cypher with single
# quotes; inner queries of CALL, in double quotes, stay part of the kind).
_INTEGER_LIST = re.compile(r"\[[0-9,\s]*\]")
_LITERAL = re.compile(r"[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|'(?:[^'\\]|\\.)*'")


def _list_size(match: re.Match) -> str:
    return "[" + "#" * match.group().count(",").bit_length() + "]"  # no digits: the literals' pass keeps it


def query_kind(cypher: str) -> str:
    """What :class:`ServerState` keeps a query's cost under: texts that differ only in their numbers,
    strings and list lengths within a power of two are one kind (a guess at the cost, never at the
    answer)."""
    return _LITERAL.sub("0", _INTEGER_LIST.sub(_list_size, cypher))


@dataclass
class ServerState:
    datasets: dict[str, Store]
    timeout: float = 60.0
    workers: int = 4
    queue_limit: int = 64
    started: float = 0.0
    _waiting: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    pool: ThreadPoolExecutor | None = None  # ``workers`` threads, made on first use
    grants: dict | None = None  # token -> Grant with --auth; None = open local mode
    max_body: int = 16 * 1024 * 1024
    served: int = 0
    costs: dict[str, float] = field(default_factory=dict)  # query kind -> CPU seconds of its last run

    def runs_inline(self, kind: str) -> bool:
        """Whether a query of this kind runs on the event loop's thread: its last run cost at most
        INLINE_SECONDS of CPU and no other query is running or waiting. Handing a query to a worker
        and its answer back wakes two threads, which on a busy machine waits for CPUs each time (a
        neuprint-python call of five small queries lost tens of ms that way); an inline query holds
        the loop no longer than its cost (at most INLINE_LIMIT, then it runs again in the pool)."""
        cost = self.costs.get(kind)
        return cost is not None and cost <= INLINE_SECONDS and self._waiting == 0

    def record_cost(self, kind: str, seconds: float) -> None:
        if len(self.costs) >= KEPT_COSTS and kind not in self.costs:
            self.costs.clear()
        self.costs[kind] = seconds

    def dataset(self, name: str | None) -> tuple[str, Store]:
        if not name:
            if len(self.datasets) == 1:
                return next(iter(self.datasets.items()))
            raise QueryError(f"dataset is required (one of {sorted(self.datasets)})")
        if name not in self.datasets:
            raise NotFound(f"dataset {name!r} not found (available: {', '.join(sorted(self.datasets))})")
        return name, self.datasets[name]

    async def run(self, fn, *args):
        """Run blocking work in the bounded pool; refuse with 503 when the queue is full.

        A plain thread pool rather than anyio's ``to_thread`` with a capacity limiter: the hand-off
        costs a fraction of the CPU (a measurable share of a simple query's time under load). The
        work counts as waiting until its thread finishes, also when the caller stopped awaiting it
        (a client that hung up), so the queue limit holds."""
        with self._lock:
            if self._waiting >= self.queue_limit:
                raise ServerBusy("server busy: too many queries waiting, retry later")
            self._waiting += 1
            if self.pool is None:
                self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="flatprint-query")
        try:
            future = self.pool.submit(fn, *args)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def _release(self, _future=None) -> None:
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


async def read_body(request: Request) -> bytes:
    """The request's body, refused (413) once it passes the server's limit. A body with a
    Content-Length over the limit is refused before any view runs (app.admit); this bounds one sent
    without it (chunked), which would otherwise be read into memory whole."""
    limit = state_of(request).max_body
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body too large (limit {limit} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request) -> dict:
    """Lenient JSON body: neuprintr sends raw newlines inside strings (strict=False accepts them;
    orjson, which reads the rest faster, refuses them)."""
    raw = await read_body(request)
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            body = json.loads(raw.decode("utf-8", errors="replace"), strict=False)
        except ValueError as exc:
            raise QueryError(
                f"request body is not valid JSON ({exc}); escape double quotes in the Cypher text"
            ) from None
    if not isinstance(body, dict):
        raise QueryError("request body must be a JSON object")
    return body


def docs_assets() -> Path:
    """Swagger UI's files as the fastapi-offline package ships them: /api/docs loads nothing from the
    network (FastAPI's default page takes them from a CDN, so it is blank offline)."""
    import fastapi_offline  # noqa: PLC0415 - only when the API docs are mounted

    return Path(fastapi_offline.__file__).resolve().parent / "static"


TOKEN_COOKIE = "flatprint_token"
#: Paths where the token cookie stands in for the Authorization header (pages a browser opens).
COOKIE_PATHS = ("/explorer/", "/api/docs", "/api/openapi.json")
#: Paths anyone may fetch: static files and the explorer's login form.
PUBLIC_PATHS = ("/explorer/static/", "/api/docs/static/", "/explorer/login")


def state_of(request: Request) -> ServerState:
    return request.app.state.flatprint


def visible_datasets(request: Request) -> list[str]:
    """The dataset keys the caller's token may read (every one in open mode), sorted."""
    state = state_of(request)
    grant = getattr(request.state, "grant", None)
    if state.grants is not None and grant is None:
        return []
    return sorted(k for k in state.datasets if grant is None or grant.allows(k))


def dataset_for(request: Request, name: str | None) -> tuple[str, Store]:
    """Resolve the dataset a request names and check the caller's token may read it."""
    state = state_of(request)
    grant = getattr(request.state, "grant", None)
    if grant is not None and name and name not in state.datasets:  # name only the datasets this token may read
        raise NotFound(f"dataset {name!r} not found (available: {', '.join(visible_datasets(request))})")
    key, store = state.dataset(name)
    if grant is not None and not grant.allows(key):
        raise Forbidden(f"this token may not read dataset {key!r}")
    return key, store


def require_admin(request: Request) -> None:
    grant = getattr(request.state, "grant", None)
    if state_of(request).grants is not None and (grant is None or grant.role != "admin"):
        raise Forbidden("admin token required")
