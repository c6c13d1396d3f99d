"""GET / : neuprintr logs in by fetching the root, which must answer 2xx."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from flatprint import __version__
from flatprint.server.app import state_of

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def root(request: Request):
    state = state_of(request)
    items = "".join(f"<li><b>{k}</b>: {s.meta.get('description', '')}</li>" for k, s in state.datasets.items())
    return HTMLResponse(
        f"<!doctype html><html><head><title>flatprint</title></head><body><h1>flatprint {__version__}</h1>"
        f"<p>A local, read-only, neuPrint-compatible server.</p><ul>{items}</ul>"
        f"<p><a href='/explorer/'>Open the explorer</a> &middot; API: <a href='/api/docs'>/api/docs</a></p>"
        f"</body></html>")
