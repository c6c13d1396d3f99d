"""Skeletons, ROI meshes and volumes: /api/skeletons/..., /api/roimeshes/..., nglayers, /api/volumes/..."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, PlainTextResponse

from flatprint.io.swc import read_swc
from flatprint.server.http import dataset_for, error_response, json_response

router = APIRouter()


def skeleton_text(store, body: int) -> str | None:
    if not store.has_table("skeletons"):
        return None
    rows = store.cursor().execute("SELECT swc FROM skeletons WHERE bodyId = ?", [body]).fetchall()
    return rows[0][0] if rows else None


def skeleton_rows(store, body: int) -> list | None:
    """The skeleton as neuPrintHTTP's JSON rows: rowId, x, y, z, radius, link (-1 for the root)."""
    text = skeleton_text(store, body)
    if text is None:
        return None

    df = read_swc(text)
    return [
        [int(r.node_id), float(r.x), float(r.y), float(r.z), float(r.radius), int(r.parent_id)] for r in df.itertuples()
    ]


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
    if not store.has_table("roi_meshes"):
        return error_response(f"no ROI meshes in {dataset}", 400)
    rows = store.cursor().execute("SELECT obj FROM roi_meshes WHERE roi = ?", [roi]).fetchall()
    if not rows:
        return error_response(f"no mesh for ROI {roi!r} in {dataset}", 400)
    return PlainTextResponse(rows[0][0], media_type="text/plain")


def _volume_dirs(store) -> dict[str, str]:
    return {k: v for k, v in (store.info.get("volumes") or {}).items() if Path(v, "info").exists()}


@router.get("/api/npexplorer/nglayers/{name}")
def nglayers(request: Request, name: str):
    """neuroglancer layers: the segmentation and ROI volumes this server hands out (navis reads the first
    segmentation layer as the dataset's segmentation source)."""
    dataset = name[:-5] if name.endswith(".json") else name
    key, store = dataset_for(request, dataset)
    base = str(request.base_url).rstrip("/")
    layers = [
        {
            "type": "segmentation",
            "name": key if vol == "segmentation" else vol,
            "source": f"precomputed://{base}/api/volumes/{key}/{vol}",
        }
        for vol in _volume_dirs(store)
    ]
    return json_response({"layers": layers, "dataset": key})


@router.get("/api/volumes/{dataset}/{volume}/{path:path}")
def volume_file(request: Request, dataset: str, volume: str, path: str):
    """Files of a neuroglancer precomputed volume (info, chunks), read-only, confined to its folder."""
    _, store = dataset_for(request, dataset)
    root = _volume_dirs(store).get(volume)
    if root is None:
        return error_response(f"no volume {volume!r} in {dataset}", 404)
    target = Path(root, path).resolve()
    if not target.is_relative_to(Path(root).resolve()) or not target.is_file():
        return error_response(f"{volume}/{path}: not found", 404)
    media = "application/json" if target.name == "info" or target.suffix == ".json" else "application/octet-stream"
    return FileResponse(target, media_type=media)
