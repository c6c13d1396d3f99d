"""neuPrintHTTP's canned explorer queries (used by neuprintr): /api/npexplorer/*."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request

from flatprint.cypher.engine import execute
from flatprint.errors import QueryError
from flatprint.query import Client, NeuronCriteria
from flatprint.query.connectivity import fetch_simple_connections
from flatprint.query.criteria import check_rois
from flatprint.query.neurons import neuron_rows
from flatprint.server.http import dataset_for, json_response, read_json, state_of

router = APIRouter()


async def _context(request: Request):
    body = await read_json(request)
    state = state_of(request)
    name, store = dataset_for(request, body.get("dataset") or request.query_params.get("dataset"))
    return body, state, Client.from_store(store)


def _ids(body, key) -> list[int]:
    values = body.get(key) or []
    try:
        return [int(v) for v in values]
    except (TypeError, ValueError):
        raise QueryError(f"{key} must be a list of body ids") from None


@router.post("/api/npexplorer/findneurons")
async def find_neurons(request: Request):
    body, state, client = await _context(request)
    inputs, outputs = list(body.get("input_ROIs") or []), list(body.get("output_ROIs") or [])
    check_rois("input_ROIs", inputs, client.all_rois)
    check_rois("output_ROIs", outputs, client.all_rois)
    kwargs = {
        "inputRois": inputs,
        "outputRois": outputs,
        "roi_req": "all",
        "label": "Segment" if body.get("all_segments") else "Neuron",
    }
    if body.get("neuron_id"):
        kwargs["bodyId"] = [int(body["neuron_id"])]
    if body.get("neuron_name"):
        name = str(body["neuron_name"])
        kwargs.update(type=name, instance=name, regex=bool(body.get("enable_contains")))
        if body.get("enable_contains"):
            kwargs.update(type=f".*{name}.*", instance=f".*{name}.*")
    if body.get("statuses"):
        kwargs["status"] = list(body["statuses"])
    crit = NeuronCriteria(**kwargs)

    def work():
        df = neuron_rows(client, crit, ["bodyId", "instance", "type", "status", "roiInfo", "pre", "post", "synonyms"])
        data = []
        for r in df.itertuples(index=False):
            info = json.loads(r.roiInfo or "{}")
            data.append(
                [r.bodyId, r.instance, r.type, r.status, r.roiInfo, None, r.pre, r.post, sorted(info), r.synonyms]
            )
        return data

    data = await state.run(work)
    return json_response(
        {
            "columns": [
                "bodyid",
                "bodyname",
                "bodytype",
                "neuronStatus",
                "roiInfo",
                "size",
                "npre",
                "npost",
                "rois",
                "synonyms",
            ],
            "data": data,
        }
    )


@router.post("/api/npexplorer/commonconnectivity")
async def common_connectivity(request: Request):
    """neuPrintHTTP's CommonConnectivityQuery: one map per (queried neuron k, partner c) connection,
    ``{"input"|"output": toString(c.bodyId), "name": c.instance, "type": c.type, "<k>_weight": weight}``,
    all in one row's list. The queried neurons are :Neuron (:Segment with all_segments) matched by
    ``neuron_ids`` (or by type with ``neuron_names``); the partners are any segment, filtered by
    ``statuses``, ``pre_threshold`` and ``post_threshold``. Clients (neuprintr) intersect the
    partners themselves."""
    body, state, client = await _context(request)
    ids = _ids(body, "neuron_ids")
    names = [str(n) for n in body.get("neuron_names") or []]
    if not ids and not names:
        raise QueryError("neuron_ids or neuron_names: give at least one body id or type")
    inputs = bool(body.get("find_inputs", False))  # neuPrintHTTP's default: outputs
    label = "Segment" if body.get("all_segments") else "Neuron"
    statuses = [str(s) for s in body.get("statuses") or []]
    params = {"queried": ids or names, "statuses": statuses}
    conditions = [f"k.{'bodyId' if ids else 'type'} IN $queried"]
    for key, prop in (("pre_threshold", "pre"), ("post_threshold", "post")):
        threshold = _threshold(body, key)
        if threshold > 0:
            params[key] = threshold
            conditions.append(f"c.{prop} >= ${key}")
    if statuses:
        conditions.append("c.status IN $statuses")
    arrow = "<-[r:ConnectsTo]-" if inputs else "-[r:ConnectsTo]->"
    cypher = (
        f"MATCH (k:{label}){arrow}(c) WHERE {' AND '.join(conditions)} "
        f"RETURN k.{'bodyId' if ids else 'type'} AS queried, c.bodyId AS partner, c.instance AS name, "
        "c.type AS type, r.weight AS weight ORDER BY weight DESC, partner, queried"
    )
    direction = "input" if inputs else "output"

    def work():
        result = execute(client.store, cypher, timeout=state.timeout, params=params)
        return [
            {direction: str(partner), "name": name, "type": type_, f"{queried}_weight": weight}
            for queried, partner, name, type_, weight in result.data
        ]

    maps = await state.run(work)
    return json_response({"columns": ["map"], "data": [[maps]]})


def _threshold(body, key) -> int:
    value = body.get(key) or 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise QueryError(f"{key} must be an integer, got {value!r}")
    return int(value)


@router.post("/api/npexplorer/roiconnectivity")
async def roi_connectivity(request: Request):
    body, state, client = await _context(request)
    rois = list(body.get("rois") or [])
    check_rois("rois", rois, client.all_rois)
    crit = NeuronCriteria(rois=rois or None, roi_req="any")

    def work():
        df = neuron_rows(client, crit, ["bodyId", "roiInfo"])
        return [[int(b), info] for b, info in zip(df["bodyId"], df["roiInfo"])]

    return json_response({"columns": ["bodyid", "roiInfo"], "data": await state.run(work)})


@router.post("/api/npexplorer/simpleconnections")
async def simple_connections(request: Request):
    body, state, client = await _context(request)
    ids = _ids(body, "neuron_ids") or ([int(body["neuron_id"])] if body.get("neuron_id") else [])
    if not ids:
        raise QueryError("neuron_ids: give at least one body id")
    downstream = not bool(body.get("find_inputs", False))

    def work():
        mine = NeuronCriteria(bodyId=ids)
        df = (
            fetch_simple_connections(mine, None, properties=["type", "instance", "status"], client=client)
            if downstream
            else fetch_simple_connections(None, mine, properties=["type", "instance", "status"], client=client)
        )
        side = "_post" if downstream else "_pre"
        other = "bodyId_post" if downstream else "bodyId_pre"
        return [
            [r[other], r["instance" + side], r["type" + side], r["status" + side], r["weight"], r["weightHP"]]
            for r in df.to_dict("records")
        ]

    return json_response(
        {"columns": ["bodyid", "name", "type", "status", "weight", "weightHP"], "data": await state.run(work)}
    )


@router.post("/api/npexplorer/roisinneuron")
async def rois_in_neuron(request: Request):
    body, state, client = await _context(request)
    ids = _ids(body, "neuron_ids") or ([int(body["neuron_id"])] if body.get("neuron_id") else [])
    if not ids:
        raise QueryError("neuron_id: give a body id")

    def work():
        df = neuron_rows(client, NeuronCriteria(bodyId=ids), ["bodyId", "roiInfo"])
        return [[int(b), info] for b, info in zip(df["bodyId"], df["roiInfo"])]

    return json_response({"columns": ["bodyid", "roiInfo"], "data": await state.run(work)})
