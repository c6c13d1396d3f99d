"""GET / (neuprintr logs in by fetching the root, which must answer 2xx) and the API docs page.

Neither page loads anything from another host: /api/docs is Swagger UI with its files served from
/api/docs/static/ (shipped by the fastapi-offline package).
"""

from __future__ import annotations

from html import escape
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse

from flatprint import __version__
from flatprint.server.auth import AuthError, check, login_page, safe_next
from flatprint.server.http import TOKEN_COOKIE, docs_assets, read_body, state_of, visible_datasets

router = APIRouter()
DOCS_STATIC = "/api/docs/static"
DOCS_FILES = {
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui.css": "text/css",
    "favicon.png": "image/png",
}


@router.get("/", response_class=HTMLResponse)
def root(request: Request):
    state = state_of(request)
    shown = visible_datasets(request)
    items = "".join(
        f"<li><b>{escape(k)}</b>: {escape(str(state.datasets[k].meta.get('description', '')))}</li>" for k in shown
    )
    if state.grants is not None and not shown:
        items = "<li>datasets are listed for a valid token (the explorer asks for one)</li>"
    return HTMLResponse(
        f"<!doctype html><html><head><title>flatprint</title><link rel='icon' href='data:,'></head><body>"
        f"<h1>flatprint {__version__}</h1>"
        f"<p>A local, read-only, neuPrint-compatible server.</p><ul>{items}</ul>"
        f"<p><a href='/explorer/'>Open the explorer</a> &middot; API: <a href='/api/docs'>/api/docs</a></p>"
        f"</body></html>"
    )


@router.get("/api/docs", include_in_schema=False)
def api_docs(request: Request):
    # validatorUrl None: Swagger UI would otherwise send the schema to an online validator
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} API",
        swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_STATIC}/favicon.png",
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get(DOCS_STATIC + "/{name}", include_in_schema=False)
def api_docs_static(name: str):
    if name not in DOCS_FILES:
        return PlainTextResponse("not found", status_code=404)
    return FileResponse(
        docs_assets() / name, media_type=DOCS_FILES[name], headers={"Cache-Control": "public, max-age=86400"}
    )


@router.get("/explorer/login", include_in_schema=False)
def explorer_login_form(request: Request):
    if state_of(request).grants is None:  # open local mode: no token needed
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return login_page(safe_next(request.query_params.get("next")), status=200)


@router.post("/explorer/login", include_in_schema=False)
async def explorer_login(request: Request):
    """Check the token from the form, keep it in an HttpOnly cookie, go back to the page asked for."""
    form = parse_qs((await read_body(request)).decode("utf-8", errors="replace"))
    token = (form.get("token") or [""])[0].strip()
    target = safe_next((form.get("next") or [""])[0])
    try:
        check(state_of(request).grants, f"Bearer {token}")
    except AuthError as exc:
        return login_page(target, str(exc))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/", secure=request.url.scheme == "https"
    )
    return response


@router.get("/explorer/logout", include_in_schema=False)
def explorer_logout():
    response = RedirectResponse("/explorer/login", status_code=303)
    response.delete_cookie(TOKEN_COOKIE, path="/")
    return response
