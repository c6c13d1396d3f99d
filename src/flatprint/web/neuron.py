"""The explorer's neuron page: properties, ROI bars, partners, skeleton download and the 3D view's data.

Its handlers follow the pattern of :mod:`flatprint.web.views` (``_page``: form, bounded pool, cache, render).
"""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from flatprint.errors import QueryError
from flatprint.io.obj import read_obj
from flatprint.io.swc import read_swc
from flatprint.io.units import MALE_CNS_VOXEL_NM
from flatprint.query import (
    NeuronCriteria,
    fetch_neurons,
    fetch_simple_connections,
    fetch_synapses,
)
from flatprint.web import plots
from flatprint.web.snippets import call_code, criteria_code
from flatprint.web.tables import (
    Table,
    cell_text,
)
from flatprint.web.views import PARTNER_PROPS, _dataset, _nc, _page, _snippet, _state, client_of

router = APIRouter(prefix="/explorer", include_in_schema=False)


def _neuron(client, params, body: int):
    criteria = {"bodyId": body}
    nc = _nc(client, criteria)
    neurons, roi_counts = fetch_neurons(nc, client=client)
    if len(neurons) == 0:
        raise QueryError(f"body {body} is not in this dataset")
    row = neurons.iloc[0]
    props = [
        (k, row[k])
        for k in neurons.columns
        if k not in ("roiInfo", "inputRois", "outputRois") and cell_text(row[k]) != ""
    ]
    primary = set(client.primary_rois) | {"NotPrimary"}
    counts = roi_counts[roi_counts["roi"].isin(primary)].sort_values(["post", "pre"], ascending=False)
    up_call = call_code("fetch_simple_connections", ["None", criteria_code(criteria)], {"properties": PARTNER_PROPS})
    down_call = call_code("fetch_simple_connections", [criteria_code(criteria), "None"], {"properties": PARTNER_PROPS})
    up = fetch_simple_connections(None, nc, properties=PARTNER_PROPS, client=client)
    down = fetch_simple_connections(nc, None, properties=PARTNER_PROPS, client=client)
    by_type = params.get("partners") == "type"
    tables = []
    for key, df, call, side in (("upstream", up, up_call, "pre"), ("downstream", down, down_call, "post")):
        title = f"{key.capitalize()} partners ({len(df)})"
        shown = [
            f"bodyId_{side}",
            f"type_{side}",
            f"instance_{side}",
            f"predictedNt_{side}",
            "weight",
            "weightHP",
            "conn_roiInfo",
        ]
        after = ""
        if by_type:  # collapse partners by type (neuPrintExplorerPlugins #36): pandas on the library's result
            after = (
                f"df = df.groupby('type_{side}', dropna=False).agg(neurons=('bodyId_{side}', 'nunique'), "
                f"weight=('weight', 'sum'), weightHP=('weightHP', 'sum'), "
                f"predictedNt=('predictedNt_{side}', lambda s: ', '.join(sorted(set(s.dropna()))))"
                f").reset_index().sort_values(['weight', 'type_{side}'], ascending=[False, True], "
                f"ignore_index=True)"
            )
            df = eval(after[len("df = ") :], {"df": df})  # noqa: S307 - our own expression, shown in the snippet
            title = f"{key.capitalize()} partner types ({len(df)})"
            shown = None
        tables.append(
            Table(
                key,
                title,
                df,
                _snippet(client, "fetch_simple_connections", call, after=after),
                shown,
                name=f"{body}-{key}{'-types' if by_type else ''}",
            )
        )
    roi_code = _snippet(
        client, "fetch_neurons", call_code("fetch_neurons", [criteria_code(criteria)]), assign="neuron_df, df"
    )
    tables.append(Table("rois", "Synapses per ROI", roi_counts, roi_code, name=f"{body}-rois"))
    has_skeleton = client.store.has_table("skeletons") and bool(
        client.sql("SELECT count(*) FROM skeletons WHERE bodyId = ?", [body])[1][0][0]
    )
    return {
        "body": body,
        "neuron": {k: v for k, v in row.items()},
        "props": props,
        "tables": tables,
        "roi_chart": plots.roi_bars(counts),
        "has_skeleton": has_skeleton,
        "title": f"{row.get('instance') or row.get('type') or body} ({body})",
    }


@router.get("/neuron/{body}", response_class=HTMLResponse)
async def neuron(request: Request, body: str):
    def compute(client, params):
        try:
            body_id = int(body)
        except ValueError:
            raise QueryError(f"a body id is an integer, got {body!r}") from None
        return _neuron(client, params, body_id)

    return await _page(request, "neuron.html", compute)


def _skeleton_text(client, body: int) -> str | None:
    if not client.store.has_table("skeletons"):
        return None
    rows = client.sql("SELECT swc FROM skeletons WHERE bodyId = ?", [body])[1]
    return rows[0][0] if rows else None


@router.get("/neuron/{body}/skeleton.swc")
async def neuron_swc(request: Request, body: int):
    name, store = _dataset(request)
    client = client_of(store)
    text = await _state(request).run(_skeleton_text, client, body)
    if text is None:
        return PlainTextResponse(f"no skeleton for body {body} in {name}", status_code=404)
    return Response(
        text,
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{body}.swc"'},
    )


def _neuron_3d(client, body: int) -> dict:
    """Skeleton (when the store has one), synapses, and meshes of the ROIs the neuron innervates."""

    to_um = MALE_CNS_VOXEL_NM / 1000.0  # synapse and SWC coordinates are 8 nm voxels
    syn = fetch_synapses(NeuronCriteria(bodyId=body, client=client), client=client)
    out = {"body": body, "units": "µm", "skeleton": None, "synapses": {}, "meshes": [], "notes": []}
    limit = 20000
    for kind in ("pre", "post"):
        part = syn[syn["type"] == kind]
        if len(part) > limit:
            out["notes"].append(f"{len(part)} {kind} synapses; showing a sample of {limit}")
            part = part.sample(limit, random_state=0)
        out["synapses"][kind] = {axis: (part[axis].to_numpy() * to_um).round(3).tolist() for axis in "xyz"}
    text = _skeleton_text(client, body)
    if text:
        swc = read_swc(text, allow_forest=True)
        pos = {int(n): (x, y, z) for n, x, y, z in zip(swc["node_id"], swc["x"], swc["y"], swc["z"])}
        xs, ys, zs = [], [], []
        for n, parent in zip(swc["node_id"], swc["parent_id"]):
            if int(parent) in pos:
                for a, b, c in (pos[int(n)], pos[int(parent)]):
                    xs.append(round(a * to_um, 3)), ys.append(round(b * to_um, 3)), zs.append(round(c * to_um, 3))
                xs.append(None), ys.append(None), zs.append(None)
        out["skeleton"] = {"x": xs, "y": ys, "z": zs, "nodes": len(swc)}
    else:
        out["notes"].append("this store has no skeleton for the body: synapses only")
    if client.store.has_table("roi_meshes"):
        _, counts = fetch_neurons(NeuronCriteria(bodyId=body, client=client), client=client)
        primary = set(client.primary_rois)
        rois = [r for r in counts.sort_values("post", ascending=False)["roi"] if r in primary][:8]
        for roi in rois:
            rows = client.sql("SELECT obj FROM roi_meshes WHERE roi = ?", [roi])[1]
            if not rows:
                continue
            vertices, faces = read_obj(rows[0][0])
            # ROI meshes come in nm (the synthetic release) or in 8 nm voxels: take the reading
            # that puts the neuron's own synapses in that ROI inside (or nearest to) the mesh.
            inside = syn.loc[syn["roi"] == roi, ["x", "y", "z"]].to_numpy(dtype=float)
            center = np.median(inside, axis=0) if len(inside) else None

            def miss(voxels, center=center):
                if center is None:
                    return 0.0
                lo, hi = voxels.min(axis=0), voxels.max(axis=0)
                return float(np.linalg.norm(np.maximum(lo - center, 0) + np.maximum(center - hi, 0)))

            as_nm = vertices / MALE_CNS_VOXEL_NM
            voxels = as_nm if miss(as_nm) <= miss(vertices) else vertices
            v = (voxels * to_um).round(3)
            out["meshes"].append(
                {
                    "roi": roi,
                    "x": v[:, 0].tolist(),
                    "y": v[:, 1].tolist(),
                    "z": v[:, 2].tolist(),
                    "i": faces[:, 0].tolist(),
                    "j": faces[:, 1].tolist(),
                    "k": faces[:, 2].tolist(),
                }
            )
    else:
        out["notes"].append("this store has no ROI meshes")
    return out


@router.get("/api/neuron/{body}/3d")
async def neuron_3d(request: Request, body: int):
    name, store = _dataset(request)
    try:
        data = await _state(request).run(_neuron_3d, client_of(store), body)
    except QueryError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse(data)
