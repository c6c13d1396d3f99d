"""A server that answers recorded responses and does nothing else: the floor of a neuPrint client.

    python benchmarks/replay_server.py RECORDINGS.pickle PORT CERT KEY

``RECORDINGS`` maps (method, path, cypher or "") to (status, content type, body bytes), as recorded
from `flatprint serve` by benchmarks/server.py. Same HTTP stack as `flatprint serve` (uvicorn, HTTPS,
the same certificate), no query engine: the time neuprint-python spends against it is what the client
itself costs (requests, TLS, JSON parsing, pandas), which no server can remove.
"""

from __future__ import annotations

import json
import pickle
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def make_app(recordings: dict) -> Starlette:
    async def answer(request: Request):
        cypher = ""
        if request.method == "POST":
            body = await request.body()
            try:
                cypher = json.loads(body).get("cypher", "")
            except ValueError:
                cypher = ""
        found = recordings.get((request.method, request.url.path, cypher))
        if found is None:
            return Response(b'{"error": "not recorded"}', status_code=404, media_type="application/json")
        status, media_type, content = found
        return Response(content, status_code=status, media_type=media_type)

    return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])


def main(argv=None) -> None:
    recordings_path, port, cert, key = (argv or sys.argv[1:])[:4]
    with open(recordings_path, "rb") as handle:
        recordings = pickle.load(handle)
    uvicorn.run(
        make_app(recordings), host="127.0.0.1", port=int(port), log_level="warning", ssl_certfile=cert, ssl_keyfile=key
    )


if __name__ == "__main__":
    main()
