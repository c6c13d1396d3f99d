"""Dataset metadata and server information: /api/dbmeta/*, /api/version, /api/serverinfo, /profile, /token."""

from __future__ import annotations

import json
import time

import duckdb
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from flatprint import __version__
from flatprint.server.http import (
    NEUPRINT_HTTP_VERSION,
    encode_json,
    encoded_json_response,
    json_response,
    require_admin,
    state_of,
)

router = APIRouter()


def dataset_entry(store) -> dict:
    meta = store.meta
    return {
        "last-mod": meta.get("lastDatabaseEdit"),
        "uuid": meta.get("uuid"),
        "ROIs": sorted(json.loads(meta.get("roiInfo", "{}"))),
        "superLevelROIs": meta.get("superLevelRois", []),
        "info": meta.get("info"),
        "hidden": bool(meta.get("hideDataSet", False)),
        "logo": meta.get("logo", ""),
        "description": meta.get("description", ""),
    }


@router.get("/api/dbmeta/datasets")
def datasets(request: Request):
    grant = getattr(request.state, "grant", None)
    return json_response(
        {
            key: dataset_entry(store)
            for key, store in state_of(request).datasets.items()
            if grant is None or grant.allows(key)
        }
    )


VERSION_ANSWER = {"Version": NEUPRINT_HTTP_VERSION, "flatprint": __version__}
_VERSION_BODY = encode_json(VERSION_ANSWER)


@router.get("/api/version")
def version():
    return json_response(VERSION_ANSWER)


async def version_endpoint(request: Request):
    """/api/version without FastAPI (app.FlatprintApp's fast routes): neuprint-python asks it before
    every query; the answer is fixed, and a coroutine needs no thread."""
    return encoded_json_response(_VERSION_BODY)


@router.get("/api/dbmeta/version")
def db_version():
    return json_response({"Version": f"flatprint {__version__} on DuckDB {duckdb.__version__}"})


@router.get("/api/serverinfo")
def server_info():
    return json_response(
        {"IsPublic": False, "Version": NEUPRINT_HTTP_VERSION, "flatprint": __version__, "ReadOnly": True}
    )


@router.get("/api/dbmeta/database")
def database(request: Request):
    state = state_of(request)
    return json_response(
        {
            "Location": "local (flatprint)",
            "Description": "DuckDB stores served read-only",
            "Datasets": {k: str(s.path) for k, s in state.datasets.items()},
        }
    )


@router.get("/api/dbmeta/instances")
def instances(request: Request):
    return json_response({k: {"type": "neuprint", "dataset": k} for k in state_of(request).datasets})


@router.get("/api/available")
def available(request: Request):
    return json_response(sorted(request.app.openapi()["paths"]))


@router.get("/api/help/swagger.yaml")
def swagger(request: Request):
    # JSON is a subset of YAML 1.2, so the OpenAPI document is served as is.
    return PlainTextResponse(json.dumps(request.app.openapi(), indent=1), media_type="text/yaml")


@router.get("/profile")
def profile(request: Request):
    grant = getattr(request.state, "grant", None)
    return json_response(
        {
            "Email": "local@flatprint",
            "AuthLevel": grant.role if grant else "readonly",
            "ImageURL": "",
            "Name": "local user",
            "Datasets": list(grant.datasets) if grant else sorted(state_of(request).datasets),
        }
    )


@router.get("/token")
def token(request: Request):
    grant = getattr(request.state, "grant", None)
    return json_response({"token": grant.token if grant else "local"})


@router.get("/api/admin/stats")
def admin_stats(request: Request):
    require_admin(request)

    state = state_of(request)
    return json_response(
        {
            "uptime_seconds": round(time.time() - state.started, 1),
            "requests": state.served,
            "waiting": state._waiting,
            "workers": state.workers,
            "queue_limit": state.queue_limit,
            "datasets": sorted(state.datasets),
        }
    )
