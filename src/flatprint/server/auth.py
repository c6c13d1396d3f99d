"""Bearer tokens for `flatprint serve --auth tokens.json`.

The file maps each token to ``{"datasets": [...], "role": "readonly" | "admin", "expires": ISO-8601}``
(``expires`` optional; ``"datasets": ["*"]`` means all). Without ``--auth`` any token (even an empty
one, as neuprintr sends) is accepted and the server binds loopback only.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from html import escape
from pathlib import Path

from fastapi.responses import HTMLResponse

from flatprint.errors import FlatprintError

ROLES = ("readonly", "admin")


class AuthError(FlatprintError):
    """Missing, unknown or expired token (401)."""


class Forbidden(FlatprintError):
    """A valid token without the right to this dataset or endpoint (403)."""


@dataclass(frozen=True)
class Grant:
    token: str
    datasets: tuple[str, ...]
    role: str
    expires: dt.datetime | None

    def allows(self, dataset: str) -> bool:
        return "*" in self.datasets or dataset in self.datasets


def load_tokens(path: str | Path) -> dict[str, Grant]:
    """Parse and validate tokens.json; errors name the file and the token entry."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise FlatprintError(f"--auth: {path} not found") from None
    except ValueError as exc:
        raise FlatprintError(f"--auth: {path} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not doc:
        raise FlatprintError(f"--auth: {path} must be a non-empty JSON object mapping tokens to grants")
    grants = {}
    for i, (token, spec) in enumerate(doc.items()):
        where = f"--auth: {path}, entry {i + 1}"
        if not token or not isinstance(spec, dict):
            raise FlatprintError(f"{where}: each token needs an object with 'datasets' and 'role'")
        datasets = spec.get("datasets")
        if not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets):
            raise FlatprintError(f"{where}: 'datasets' must be a list of NAME:TAG strings")
        role = spec.get("role", "readonly")
        if role not in ROLES:
            raise FlatprintError(f"{where}: 'role' must be one of {ROLES}, got {role!r}")
        expires = spec.get("expires")
        if expires is not None:
            try:
                expires = dt.datetime.fromisoformat(str(expires).replace("Z", "+00:00"))
            except ValueError:
                raise FlatprintError(f"{where}: 'expires' is not an ISO-8601 time: {expires!r}") from None
            if expires.tzinfo is None:
                expires = expires.replace(tzinfo=dt.UTC)
        grants[token] = Grant(token, tuple(datasets), role, expires)
    return grants


def bearer(header: str | None) -> str:
    if not header:
        return ""
    scheme, _, value = header.partition(" ")
    return value.strip().strip('"') if scheme.lower() == "bearer" else ""


def check(grants: dict[str, Grant] | None, header: str | None, now: dt.datetime | None = None) -> Grant | None:
    """The caller's grant; raises AuthError for a missing/unknown/expired token. None in open mode."""
    if grants is None:
        return None
    token = bearer(header)
    if not token:
        raise AuthError("missing token: send 'Authorization: Bearer <token>'")
    grant = grants.get(token)
    if grant is None:
        raise AuthError("unknown token")
    now = now or dt.datetime.now(dt.UTC)
    if grant.expires and grant.expires <= now:
        raise AuthError(f"token expired at {grant.expires.isoformat()}")
    return grant


def safe_next(url: str | None) -> str:
    """Where to go after logging in: a path on this server only (never another host)."""
    url = url or ""
    return url if url.startswith("/") and not url.startswith("//") and "\\" not in url else "/explorer/"


def login_page(scope_or_next, message: str = "", status: int = 401):
    """The explorer's token form (HTML): a browser cannot send a bearer header, so the token given
    here is kept in an HttpOnly cookie that the explorer's pages send back."""

    if isinstance(scope_or_next, dict):
        query = scope_or_next.get("query_string", b"").decode("latin-1")
        target = scope_or_next["path"] + (f"?{query}" if query else "")
    else:
        target = scope_or_next
    note = f"<p class='error' role='alert' data-testid='error'>{escape(message)}</p>" if message else ""
    return HTMLResponse(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>flatprint explorer: token</title>"
        "<link rel='icon' href='data:,'><link rel='stylesheet' href='/explorer/static/explorer.css'></head>"
        "<body><main><h1>flatprint explorer</h1>"
        "<p>This server checks tokens (<code>--auth</code>). Enter yours; it is kept in a cookie for this "
        "server only until you <a href='/explorer/logout'>log out</a>.</p>"
        f"{note}<form method='post' action='/explorer/login' id='login-form'>"
        f"<input type='hidden' name='next' value='{escape(safe_next(target))}'>"
        "<label>token <input type='password' name='token' autocomplete='current-password' required></label> "
        "<button type='submit' class='primary'>Open</button></form></main></body></html>",
        status_code=status,
    )
