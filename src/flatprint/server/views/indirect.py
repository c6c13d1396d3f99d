"""flatprint-specific endpoint: POST /api/flatprint/indirect (effective connectivity over k hops).

neuPrintHTTP has no such endpoint; the body mirrors fetch_indirect's arguments (docs/server.md) and
the answer is both of its tables as ``{"columns", "data"}`` (JSON) or one of them as an Arrow IPC
stream (``"format": "arrow"``, ``"table": "per_hop" | "summed"``).
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import Response

from flatprint.errors import QueryError
from flatprint.io.arrow_ipc import ARROW_STREAM_MEDIA_TYPE, encode_arrow_stream
from flatprint.query.client import Client
from flatprint.query.criteria import NeuronCriteria
from flatprint.query.indirect import fetch_indirect
from flatprint.query.results import to_arrow
from flatprint.server.http import dataset_for, encode_json, encoded_json_response, read_json, state_of

router = APIRouter()

OPTIONS = {
    "hops": 2,
    "groupby": "type",
    "normalize": "input",
    "signed": False,
    "nt_property": "predictedNt",
    "neurons_only": True,
    "min_fraction": 0.0,
    "min_weight": 0.0,
}
TABLES = ("per_hop", "summed")


def neurons_arg(value, name: str):
    """A JSON sources/targets value: null, a body id, a type/instance string, a list of either, or an
    object of NeuronCriteria keyword arguments."""
    if value is None or isinstance(value, (str, int)) and not isinstance(value, bool):
        return value
    if isinstance(value, list) and value and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        return value
    if isinstance(value, dict):
        try:
            return NeuronCriteria(**value)
        except TypeError as exc:
            raise QueryError(f"{name}: not a NeuronCriteria argument ({exc})") from None
    raise QueryError(
        f"{name}: expected null, a body id, a type or instance name, a list of them, or an object "
        f"of NeuronCriteria arguments; got {value!r}"
    )


def parse(body: dict) -> dict:
    unknown = set(body) - set(OPTIONS) - {"sources", "targets", "dataset", "format", "table"}
    if unknown:
        raise QueryError(
            f"unknown field(s) {sorted(unknown)}; allowed: sources, targets, dataset, format, table, "
            f"{', '.join(OPTIONS)}"
        )
    kwargs = {k: body.get(k, default) for k, default in OPTIONS.items()}
    if isinstance(kwargs["groupby"], list):
        kwargs["groupby"] = tuple(kwargs["groupby"])
    return kwargs


def frame_json(df) -> dict:
    # column by column: a whole-frame to_numpy() would turn body ids and hops into floats
    return {"columns": list(df.columns), "data": [list(row) for row in zip(*(df[c].tolist() for c in df.columns))]}


def arrow_stream(df) -> bytes:
    return encode_arrow_stream(to_arrow(df))


@router.post("/api/flatprint/indirect")
async def indirect(request: Request):
    body = await read_json(request)
    kwargs = parse(body)
    fmt = body.get("format", "json")
    table = body.get("table", "per_hop")
    if fmt not in ("json", "arrow"):
        raise QueryError(f"format must be 'json' or 'arrow', got {fmt!r}")
    if table not in TABLES:
        raise QueryError(f"table must be one of {TABLES}, got {table!r}")
    _, store = dataset_for(request, body.get("dataset") or request.query_params.get("dataset"))
    sources, targets = neurons_arg(body.get("sources"), "sources"), neurons_arg(body.get("targets"), "targets")

    def work():
        started = time.perf_counter()
        client = Client.from_store(store)
        per_hop, summed = fetch_indirect(sources, targets, client=client, **kwargs)
        if fmt == "arrow":
            return arrow_stream(per_hop if table == "per_hop" else summed)
        return encode_json(
            {
                "per_hop": frame_json(per_hop),
                "summed": frame_json(summed),
                "debug": f"flatprint: {len(per_hop)} + {len(summed)} rows in "
                f"{(time.perf_counter() - started) * 1000:.1f} ms",
            }
        )

    result = await state_of(request).run(work)
    if fmt == "arrow":
        return Response(result, media_type=ARROW_STREAM_MEDIA_TYPE)
    return encoded_json_response(result)
