"""neuPrintHTTP's canned explorer queries (used by neuprintr): /api/npexplorer/*."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request

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
    kwargs = {"inputRois": inputs, "outputRois": outputs, "roi_req": "all",
              "label": "Segment" if body.get("all_segments") else "Neuron"}
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
            data.append([r.bodyId, r.instance, r.type, r.status, r.roiInfo, None, r.pre, r.post,
                         sorted(info), r.synonyms])
        return data

    data = await state.run(work)
    return json_response({"columns": ["bodyid", "bodyname", "bodytype", "neuronStatus", "roiInfo", "size",
                                      "npre", "npost", "rois", "synonyms"], "data": data})


@router.post("/api/npexplorer/commonconnectivity")
async def common_connectivity(request: Request):
    """Partners connected to every listed neuron: one map per partner with '<id>_weight' keys."""
    body, state, client = await _context(request)
    ids = _ids(body, "neuron_ids")
    if not ids:
        raise QueryError("neuron_ids: give at least one body id")
    inputs = bool(body.get("find_inputs", True))
    label = "Segment" if body.get("all_segments") else "Neuron"
    statuses = list(body.get("statuses") or [])

    def work():
        targets = NeuronCriteria(bodyId=ids)
        partners = NeuronCriteria(label=label, status=statuses or None)
        if inputs:
            df = fetch_simple_connections(partners, targets, properties=["type", "instance"], client=client)
            partner_col, mine_col, key = "bodyId_pre", "bodyId_post", "input"
            suffix = "_pre"
        else:
            df = fetch_simple_connections(targets, partners, properties=["type", "instance"], client=client)
            partner_col, mine_col, key = "bodyId_post", "bodyId_pre", "output"
            suffix = "_post"
        maps = {}
        for r in df.to_dict("records"):
            entry = maps.setdefault(r[partner_col], {key: r[partner_col], "name": r["instance" + suffix],
                                                     "type": r["type" + suffix]})
            entry[f"{r[mine_col]}_weight"] = r["weight"]
        return [m for m in maps.values() if all(f"{i}_weight" in m for i in ids)]

    maps = await state.run(work)
    return json_response({"columns": ["map"], "data": [[maps]]})


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
        df = (fetch_simple_connections(mine, None, properties=["type", "instance", "status"], client=client)
              if downstream else
              fetch_simple_connections(None, mine, properties=["type", "instance", "status"], client=client))
        side = "_post" if downstream else "_pre"
        other = "bodyId_post" if downstream else "bodyId_pre"
        return [[r[other], r["instance" + side], r["type" + side], r["status" + side], r["weight"], r["weightHP"]]
                for r in df.to_dict("records")]

    return json_response({"columns": ["bodyid", "name", "type", "status", "weight", "weightHP"],
                          "data": await state.run(work)})


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
