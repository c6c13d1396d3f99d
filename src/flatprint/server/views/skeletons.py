"""Skeletons and ROI meshes: /api/skeletons/skeleton/{ds}/{id}, /api/roimeshes/mesh/{ds}/{roi}, nglayers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from flatprint.server.app import dataset_for, error_response, json_response, state_of

router = APIRouter()


def _has_table(store, name: str) -> bool:
    return bool(store.cursor().execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [name]).fetchall()[0][0])


def skeleton_text(store, body: int) -> str | None:
    if not _has_table(store, "skeletons"):
        return None
    rows = store.cursor().execute("SELECT swc FROM skeletons WHERE bodyId = ?", [body]).fetchall()
    return rows[0][0] if rows else None


def skeleton_rows(store, body: int) -> list | None:
    """The skeleton as neuPrintHTTP's JSON rows: rowId, x, y, z, radius, link (-1 for the root)."""
    text = skeleton_text(store, body)
    if text is None:
        return None
    from flatprint.io.swc import read_swc

    df = read_swc(text)
    return [[int(r.node_id), float(r.x), float(r.y), float(r.z), float(r.radius), int(r.parent_id)]
            for r in df.itertuples()]


@router.get("/api/skeletons/skeleton/{dataset}/{body}")
def skeleton(request: Request, dataset: str, body: str, format: str | None = None):
    _, store = dataset_for(request, dataset)
    try:
        body_id = int(body)
    except ValueError:
        return error_response(f"bodyId must be an integer, got {body!r}", 400)
    # neuPrintHTTP answers 400 for a missing skeleton; navis counts that as "missing".
    if format == "swc":
        text = skeleton_text(store, body_id)
        if text is None:
            return error_response(f"no skeleton for body {body_id} in {dataset}", 400)
        return PlainTextResponse(text)
    rows = skeleton_rows(store, body_id)
    if rows is None:
        return error_response(f"no skeleton for body {body_id} in {dataset}", 400)
    return json_response({"columns": ["rowId", "x", "y", "z", "radius", "link"], "data": rows})


@router.get("/api/roimeshes/mesh/{dataset}/{roi:path}")
def roi_mesh(request: Request, dataset: str, roi: str):
    _, store = dataset_for(request, dataset)
    if not _has_table(store, "roi_meshes"):
        return error_response(f"no ROI meshes in {dataset}", 400)
    rows = store.cursor().execute("SELECT obj FROM roi_meshes WHERE roi = ?", [roi]).fetchall()
    if not rows:
        return error_response(f"no mesh for ROI {roi!r} in {dataset}", 400)
    return PlainTextResponse(rows[0][0], media_type="text/plain")


@router.get("/api/npexplorer/nglayers/{name}")
def nglayers(request: Request, name: str):
    dataset = name[:-5] if name.endswith(".json") else name
    _, store = dataset_for(request, dataset)
    layers = store.meta.get("neuroglancerLayers") or []
    return json_response({"layers": layers, "dataset": dataset})
