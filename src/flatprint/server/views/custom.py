"""Cypher endpoints: /api/custom/custom (JSON) and /api/custom/arrow (Arrow IPC stream)."""

from __future__ import annotations

import asyncio
import threading
import time

from fastapi import APIRouter, Request
from fastapi.responses import Response

from flatprint.cypher.engine import CypherTimeoutError, execute
from flatprint.errors import QueryError
from flatprint.io.arrow_ipc import ARROW_STREAM_MEDIA_TYPE, encode_arrow_stream
from flatprint.server.http import (
    INLINE_LIMIT,
    dataset_for,
    encode_json,
    encoded_json_response,
    error_response,
    query_kind,
    read_json,
    state_of,
)

router = APIRouter()

# Appended to the engine's "query exceeded the timeout of N s" so the user learns what to do. The
# status stays 400 with {"error": ...}, as neuPrintHTTP answers; neuprint-python 0.6.4 raises a plain
# requests.HTTPError for it (docs/server.md, "Errors and timeouts").
TIMEOUT_GUIDANCE = (
    "this server stops every query after {seconds:g} s. Narrow the query (fewer bodies, a LIMIT, "
    "split it into batches), or start the server with a larger `flatprint serve --timeout`"
)


async def _run(request: Request, encode, json_bytes: bool = False):
    """Run the request's Cypher in the worker pool; ``encode`` (result, seconds) -> response body
    also runs there, so serializing a large answer never blocks the event loop. A query of a kind that
    last cost little runs on the loop's thread instead (ServerState.runs_inline). ``json_bytes``: the
    engine may write a column-wise answer's rows as JSON bytes (for the JSON endpoint)."""
    body = await read_json(request)
    cypher = body.get("cypher")
    if not isinstance(cypher, str) or not cypher.strip():
        raise QueryError("request body needs a non-empty 'cypher' string")
    state = state_of(request)
    name, store = dataset_for(request, body.get("dataset") or request.query_params.get("dataset"))

    started = time.perf_counter()
    cancel = threading.Event()
    kind = query_kind(cypher)

    def work(timeout=state.timeout, cancel=cancel):
        cpu = time.thread_time()
        try:
            result = execute(store, cypher, timeout=timeout, cancel=cancel, json_bytes=json_bytes)
        except CypherTimeoutError as exc:
            if timeout < state.timeout:
                raise
            raise CypherTimeoutError(f"{exc}: {TIMEOUT_GUIDANCE.format(seconds=state.timeout)}") from None
        answer = encode(result, time.perf_counter() - started)
        state.record_cost(kind, time.thread_time() - cpu)
        return answer

    if state.timeout > INLINE_LIMIT and state.runs_inline(kind):
        try:
            return work(INLINE_LIMIT, None)
        except CypherTimeoutError:
            state.record_cost(kind, INLINE_LIMIT)  # not cheap this time: the pool, and the pool next time
    return await run_cancellable(request, state.run(work), cancel)


async def run_cancellable(request: Request, work, cancel: threading.Event):
    """Await ``work`` (a query in the worker pool) while watching the client: when it disconnects,
    set ``cancel`` so the engine interrupts the query and the worker is free for others.

    The body has been read, so the next ASGI message is ``http.disconnect``: a watcher task waits
    for it (no polling; ``Request.is_disconnected`` only peeks). A bare asyncio task, not an anyio
    task group: the group's cancel scopes cost more CPU than a simple query's HTTP handling."""
    watcher = asyncio.ensure_future(_cancel_on_disconnect(request, cancel))
    try:
        return await work
    finally:
        watcher.cancel()


async def _cancel_on_disconnect(request: Request, cancel: threading.Event) -> None:
    while True:
        message = await request.receive()
        if message.get("type") == "http.disconnect":
            cancel.set()
            return
        await asyncio.sleep(0.05)  # not expected once the body is read; never spin


def answer_json(result, seconds: float) -> bytes:
    """The JSON endpoint's answer ``{"columns", "data", "debug"}`` (keys in encode_json's sorted
    order): rows the engine wrote as JSON bytes already (``data_json``) spliced in as they are."""
    debug = f"flatprint: {result.row_count} rows in {seconds * 1000:.1f} ms"
    if result.data_json_parts is None:
        return encode_json({"columns": result.columns, "data": result.data, "debug": debug})
    return b"".join(
        (
            b'{"columns":',
            encode_json(result.columns),
            b',"data":',
            *result.data_json_parts,  # joined here once (CypherResult.data_json would join them first)
            b',"debug":',
            encode_json(debug),
            b"}",
        )
    )


async def custom(request: Request):
    return encoded_json_response(await _run(request, answer_json, json_bytes=True))


async def custom_arrow(request: Request):
    def encode(result, _seconds):
        return encode_arrow_stream(result.to_arrow())

    return Response(await _run(request, encode), media_type=ARROW_STREAM_MEDIA_TYPE)


# The two hot endpoints, answered before the app's middleware stack and router (app.FlatprintApp):
# they take the Request and answer bytes, so FastAPI's dependency solving, exit stacks and telemetry
# per request buy nothing. The FastAPI routes below, the same functions, stay for the OpenAPI document.
FAST_ENDPOINTS = {("POST", "/api/custom/custom"): custom, ("POST", "/api/custom/arrow"): custom_arrow}
router.add_api_route("/api/custom/custom", custom, methods=["POST"])
router.add_api_route("/api/custom/arrow", custom_arrow, methods=["POST"])


@router.api_route("/api/raw/{rest:path}", methods=["GET", "POST", "PUT", "DELETE"], include_in_schema=False)
def raw_refused(rest: str):
    return error_response("flatprint is read-only: raw key-value and transaction endpoints are disabled", 403)
