"""The ASGI app: neuPrintHTTP's REST surface and the web explorer over one or more stores.

One app, views per neuPrint API area (``views/``), the explorer at ``/explorer/`` (``flatprint.web``),
one place that turns errors into neuPrint's ``{"error": ...}`` answers. Queries run in a bounded
thread pool so one heavy query cannot starve the others; each thread uses its own DuckDB cursor on
the read-only store. What the views share (state, responses, token checks) is in
:mod:`flatprint.server.http`; this module only wires them together.
"""

from __future__ import annotations

import logging
import threading
import time

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import cookie_parser

from flatprint import __version__
from flatprint.cypher.neuronanswers import warm as warm_neuron_answers
from flatprint.errors import FlatprintError
from flatprint.server.auth import AuthError, Forbidden, check, login_page

# Names that lived here before the HTTP base moved to server.http stay importable from app.py.
from flatprint.server.http import (  # noqa: F401
    COOKIE_PATHS,
    NEUPRINT_HTTP_VERSION,
    PUBLIC_PATHS,
    TOKEN_COOKIE,
    BodyTooLarge,
    NotFound,
    ServerBusy,
    ServerState,
    dataset_for,
    docs_assets,
    encode_json,
    encoded_json_response,
    error_response,
    json_response,
    read_json,
    require_admin,
    state_of,
    visible_datasets,
)
from flatprint.server.views import cached, custom, dbmeta, indirect, npexplorer, skeletons, web_root
from flatprint.store import Store
from flatprint.web import register as register_explorer, warm as warm_explorer


def create_app(
    datasets: dict[str, Store],
    *,
    timeout: float = 60.0,
    workers: int = 4,
    queue_limit: int = 64,
    grants: dict | None = None,
    max_body: int = 16 * 1024 * 1024,
    warm: bool = False,
) -> FastAPI:
    """The app serving ``datasets``: the API, the explorer and the docs page. ``warm``: precompute the
    explorer's autocomplete index and summaries, and build each store's neuron table and graph in RAM
    (neuron lookups and their connections answer from them once built), in background threads
    (``flatprint serve`` does)."""
    app = FlatprintApp(
        title="flatprint",
        version=__version__,
        description="A local, read-only, neuPrint-compatible connectome server.",
        docs_url=None,
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    state = ServerState(
        datasets=datasets,
        timeout=timeout,
        workers=workers,
        queue_limit=queue_limit,
        started=time.time(),
        grants=grants,
        max_body=max_body,
    )
    app.state.flatprint = state
    app.fast_routes = {**custom.FAST_ENDPOINTS, ("GET", "/api/version"): dbmeta.version_endpoint}

    app.add_middleware(Guard, state=state, check=check, auth_error=AuthError)

    @app.exception_handler(FlatprintError)
    async def flatprint_error(request: Request, exc: FlatprintError):
        return flatprint_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error_response(str(exc.detail), exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        return unexpected_error_response(exc)

    for module in (dbmeta, custom, cached, npexplorer, skeletons, web_root, indirect):
        app.include_router(module.router)
    register_explorer(app)  # the web explorer at /explorer/
    if warm:
        warm_explorer(app)
        threading.Thread(
            target=_warm_engine, args=(list(datasets.values()),), name="flatprint-neuron-warm", daemon=True
        ).start()
    return app


def flatprint_error_response(exc: FlatprintError):
    """neuPrint's ``{"error": ...}`` answer with the status of the error's kind."""
    if isinstance(exc, ServerBusy):
        return error_response(str(exc), 503, {"Retry-After": "2"})
    if isinstance(exc, NotFound):
        return error_response(str(exc), 404)
    if isinstance(exc, BodyTooLarge):
        return error_response(str(exc), 413)
    if isinstance(exc, AuthError):
        return error_response(str(exc), 401)
    if isinstance(exc, Forbidden):
        return error_response(str(exc), 403)
    return error_response(str(exc), 400)


def unexpected_error_response(exc: Exception):
    return error_response(f"internal error: {type(exc).__name__}: {exc}", 500)


class FlatprintApp(FastAPI):
    """The FastAPI app, whose hottest endpoints skip FastAPI's and Starlette's middleware stack.

    neuprint-python sends ``GET /api/version`` before every query and the query itself to
    ``/api/custom/custom``; through the stack (telemetry, exception and exit-stack middlewares, the
    router, FastAPI's thread pool for the version's plain function) each request cost about as much
    CPU as a neuron lookup in the engine. ``fast_routes`` ((method, path) -> async endpoint taking the
    Request) answer directly after the same checks as every request (:func:`admit`: body size,
    token), with the same error answers as the app's exception handlers; every other request goes
    through the whole app."""

    fast_routes: dict = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            endpoint = self.fast_routes.get((scope["method"], scope["path"]))
            if endpoint is not None:
                await self._answer_fast(endpoint, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _answer_fast(self, endpoint, scope, receive, send):
        state = self.state.flatprint
        refused = admit(state, scope, check, AuthError)
        if refused is not None:
            await refused(scope, receive, send)
            return
        scope["app"] = self  # what Starlette sets: request.app
        try:
            response = await endpoint(Request(scope, receive))
        except FlatprintError as exc:
            response = flatprint_error_response(exc)
        except Exception as exc:  # noqa: BLE001 - answered as the app's handler answers it, and logged
            logging.getLogger("flatprint.server").exception("internal error on %s", scope["path"])
            response = unexpected_error_response(exc)
        await response(scope, receive, send)


def admit(state: ServerState, scope, check, auth_error):
    """Guard's checks of one HTTP request: an error response (body too large, token refused), or None
    after recording the token's grant in ``scope["state"]`` and counting the request."""
    length = authorization = cookie = None
    for key, value in scope["headers"]:
        if key == b"content-length" and length is None:
            length = value.decode("latin-1")
        elif key == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
        elif key == b"cookie" and cookie is None:
            cookie = value.decode("latin-1")
    if length and length.isdigit() and int(length) > state.max_body:
        return error_response(f"request body too large (limit {state.max_body} bytes)", 413)
    path = scope["path"]
    if authorization is None and cookie and path.startswith(COOKIE_PATHS):
        # a browser cannot send a bearer header: the explorer's login page keeps the token in a cookie
        token = cookie_parser(cookie).get(TOKEN_COOKIE)
        authorization = f"Bearer {token}" if token else None
    grant = None
    if path == "/":  # answers without a token (neuprintr's login); lists what a token grants
        try:
            grant = check(state.grants, authorization)
        except auth_error:
            grant = None
    elif not path.startswith(PUBLIC_PATHS):
        try:
            grant = check(state.grants, authorization)
        except auth_error as exc:
            if path.startswith("/explorer/") and not path.startswith("/explorer/api/"):
                return login_page(scope, str(exc))
            return error_response(str(exc), 401)
    scope.setdefault("state", {})["grant"] = grant
    state.served += 1
    return None


def _warm_engine(stores) -> None:
    for store in stores:
        try:
            warm_neuron_answers(store)
        except Exception as exc:  # noqa: BLE001 - queries still answer through SQL; say why
            logging.getLogger("flatprint.server").warning("neuron tables of %s not built: %s", store.path, exc)


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
        refused = admit(self.state, scope, self.check, self.auth_error)
        if refused is not None:
            await refused(scope, receive, send)
            return
        await self.app(scope, receive, send)
