"""The explorer's pages under /explorer/: each one calls the query library and renders its tables.

Page handlers follow one pattern (:func:`_page`): read the form, build the library call's arguments,
run the call in the server's bounded pool (``state.run``), keep the result in a small LRU cache,
then either render HTML (a sorted page of each table) or, with ``?download=<table>&format=csv|arrow``,
send the whole table as a file.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from urllib.parse import urlencode

import pandas as pd
import plotly
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from flatprint import __version__
from flatprint.cypher.engine import execute
from flatprint.errors import NoMatchWarning, QueryError
from flatprint.io.arrow_ipc import ARROW_STREAM_MEDIA_TYPE
from flatprint.query import (
    Client,
    NeuronCriteria,
    connection_matrix,
    fetch_neurons,
    fetch_shortest_paths,
    fetch_simple_connections,
)
from flatprint.query.heavy import GROUPBY_CHOICES
from flatprint.server.http import dataset_for, state_of, visible_datasets
from flatprint.web import plots
from flatprint.web.forms import group_criteria, parse_ints, search_criteria, searchable_properties
from flatprint.web.snippets import call_code, criteria_code, snippet
from flatprint.web.tables import (
    BODY_COLUMNS,
    PAGE_SIZES,
    ROI_INFO_COLUMNS,
    Table,
    cache,
    cell_text,
    roi_info_table,
    to_arrow_stream,
    to_csv,
    view_of,
)
from flatprint.web.values import close_matches, suggest, text_properties, value_index

PACKAGE = Path(__file__).resolve().parent
STATIC = PACKAGE / "static"
STATIC_TYPES = {".css": "text/css", ".js": "application/javascript", ".svg": "image/svg+xml", ".png": "image/png"}
UI_PARAMS = ("download", "format")
PARTNER_PROPS = ["type", "instance", "predictedNt"]
# every groupby connection_matrix accepts, type and roi first (the menu's order)
MATRIX_GROUPS = ("type", "roi", *(g for g in GROUPBY_CHOICES if g not in ("type", "roi")))

router = APIRouter(prefix="/explorer", include_in_schema=False)
# The pages show their own "did you mean" links for an empty result; the library's NoMatchWarning
# for calls made here would only reach the server's log. (A filter, not catch_warnings: requests run
# in threads, and catch_warnings swaps process-wide state.)
warnings.filterwarnings("ignore", category=NoMatchWarning, module=r"flatprint\.web\.")
_clients: dict[int, Client] = {}
_templates = None


def templates():
    global _templates
    if _templates is None:
        env = Environment(
            loader=FileSystemLoader(str(PACKAGE / "templates")),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["cell"] = cell_text
        env.filters["tojson_attr"] = lambda v: json.dumps(v)
        env.globals.update(
            page_sizes=PAGE_SIZES,
            body_columns=BODY_COLUMNS,
            version=__version__,
            roi_info_columns=ROI_INFO_COLUMNS,
            roi_info_table=roi_info_table,
        )
        _templates = env
    return _templates


def _state(request: Request):
    return state_of(request)


def client_of(store) -> Client:
    client = _clients.get(id(store))
    if client is None or client.store is not store:
        client = _clients[id(store)] = Client.from_store(store)
    return client


def _dataset(request: Request):
    """The page's dataset (default: the first one the caller's token may read), grant checked: a
    token limited to other datasets gets 403 (Forbidden), as on the API."""
    name = request.query_params.get("dataset") or None
    if name is None:
        shown = visible_datasets(request)
        name = shown[0] if shown else sorted(_state(request).datasets)[0]
    return dataset_for(request, name)


# ------------------------------------------------------------------------------------------ URLs
class Links:
    """URL helpers for templates: every link keeps the dataset."""

    def __init__(self, request: Request, dataset: str):
        self.request = request
        self.dataset = dataset

    def to(self, path: str, **params) -> str:
        query = {"dataset": self.dataset, **{k: v for k, v in params.items() if v not in (None, "")}}
        return f"/explorer{path}?{urlencode(query, doseq=True)}"

    def neuron(self, body) -> str:
        return self.to(f"/neuron/{int(body)}")

    def here(self, **updates) -> str:
        items = [(k, v) for k, v in self.request.query_params.multi_items() if k not in updates and k not in UI_PARAMS]
        if not any(k == "dataset" for k, _ in items):
            items.insert(0, ("dataset", self.dataset))
        items += [(k, v) for k, v in updates.items() if v not in (None, "")]
        return f"{self.request.url.path}?{urlencode(items)}"

    def sort(self, view, column: str) -> str:
        key = view.table.key
        desc = "0" if view.sort == column and view.desc else "1"
        return self.here(**{f"{key}.sort": column, f"{key}.desc": desc, f"{key}.page": None})

    def page(self, view, page: int) -> str:
        return self.here(**{f"{view.table.key}.page": page})

    def size(self, view) -> str:
        return self.here(**{f"{view.table.key}.size": None, f"{view.table.key}.page": None})

    def download(self, table, fmt: str) -> str:
        return self.here(download=table.key, format=fmt)


# ------------------------------------------------------------------------------------------ rendering
def render(request: Request, template: str, context: dict, status: int = 200) -> HTMLResponse:
    name, store = context["dataset"], context["store"]
    links = Links(request, name)
    tables = context.get("tables") or []
    views = {t.key: view_of(t, request.query_params) for t in tables}
    html = (
        templates()
        .get_template(template)
        .render(
            request=request,
            links=links,
            views=views,
            datasets=visible_datasets(request),
            synthetic=str(store.meta.get("description", "")).startswith("SYNTHETIC"),
            meta=store.meta,
            signed_in=_state(request).grants is not None,
            **context,
        )
    )
    return HTMLResponse(html, status_code=status)


def download(table: Table, fmt: str, client) -> Response:
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in table.name)
    if fmt == "csv":
        return Response(
            to_csv(table),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{stem}.csv"'},
        )
    if fmt == "arrow":
        return Response(
            to_arrow_stream(table, client.provenance(table.python)),
            media_type=ARROW_STREAM_MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{stem}.arrow"'},
        )
    raise QueryError(f"format must be csv or arrow, got {fmt!r}")


def _cache_key(store, request: Request) -> tuple:
    """Store (path and uuid: two stores may serve the same dataset key), page and its query inputs."""
    skip = set(UI_PARAMS)
    items = tuple(
        (k, v) for k, v in request.query_params.multi_items() if k not in skip and "." not in k and k != "dataset"
    )
    return (str(store.path), store.meta.get("uuid"), store.dataset, request.url.path, items)


async def _page(
    request: Request, template: str, compute, *, needs_input=lambda p: True, cache_it=True, extra: dict | None = None
):
    """Run ``compute(client, params) -> context`` (cached), then render or send a download."""
    name, store = _dataset(request)
    client = client_of(store)
    params = request.query_params
    context = {
        "dataset": name,
        "store": store,
        "client": client,
        "tables": [],
        "error": None,
        "params": params,
        "elapsed": None,
        **(extra or {}),
    }
    if needs_input(params):
        key = _cache_key(store, request)
        result = cache.get(key) if cache_it else None
        if result is None:
            started = time.perf_counter()
            try:
                result = await _state(request).run(compute, client, params)
                result["elapsed"] = time.perf_counter() - started
                if cache_it:
                    cache.put(key, result)
            except QueryError as exc:
                result = {"error": str(exc), "error_obj": exc}
        context.update(result)
    state = _state(request)
    wanted = params.get("download")
    if wanted:
        for table in context.get("tables") or []:
            if table.key == wanted:
                try:  # serialising a big table is CPU work: do it in the pool, not on the event loop
                    return await state.run(download, table, params.get("format", "csv"), client)
                except QueryError as exc:
                    return PlainTextResponse(str(exc), status_code=400)
        if context.get("error"):
            return PlainTextResponse(context["error"], status_code=400)
        return PlainTextResponse(f"no table {wanted!r} on this page", status_code=404)
    status = 400 if context.get("error") else 200
    if any(len(t.df) > 5000 for t in context.get("tables") or []):  # sorting a big table: off the event loop
        return await state.run(render, request, template, context, status)
    return render(request, template, context, status=status)


def _nc(client, kwargs: dict | None) -> NeuronCriteria | None:
    return None if kwargs is None else NeuronCriteria(**kwargs, client=client)


def _snippet(client, function: str, call: str, **kw) -> str:
    return snippet(client.dataset, str(Path(client.store.path).resolve()), function, call, **kw)


# ------------------------------------------------------------------------------------------ home
_summaries: dict[str, dict] = {}


@router.get("/", response_class=HTMLResponse)
async def home(request: Request):
    def compute(client, params):
        key = f"{client.store.path}:{client.store.meta.get('uuid')}"
        if key not in _summaries:
            _summaries[key] = client.store.summary()
        return {"summary": _summaries[key]}

    return await _page(request, "home.html", compute, cache_it=False)


# ------------------------------------------------------------------------------------------ search
def _search(client, params):
    kwargs = search_criteria(client, params)
    if not kwargs:
        raise QueryError("give at least one condition (a property value, a body id, a ROI or a minimum)")
    criteria = _nc(client, kwargs)
    if params.get("with_rois"):  # per-neuron ROI lists and roiInfo: parsing them costs time on big results
        neurons, _ = fetch_neurons(criteria, client=client)
        code = _snippet(
            client, "fetch_neurons", call_code("fetch_neurons", [criteria_code(kwargs)]), assign="df, roi_counts_df"
        )
    else:
        neurons = fetch_neurons(criteria, omit_rois=True, client=client)
        code = _snippet(
            client, "fetch_neurons", call_code("fetch_neurons", [criteria_code(kwargs)], {"omit_rois": True})
        )
    shown = [
        "bodyId",
        "type",
        "instance",
        "class",
        "superclass",
        "predictedNt",
        "status",
        "somaSide",
        "pre",
        "post",
        "inputRois",
        "outputRois",
    ]
    table = Table(
        "neurons",
        f"{len(neurons)} {'segments' if kwargs.get('label') == 'Segment' else 'neurons'}",
        neurons,
        code,
        shown,
        name="neurons",
    )
    return {
        "tables": [table],
        "kwargs": kwargs,
        "did_you_mean": did_you_mean(client, params) if len(neurons) == 0 else [],
    }


def did_you_mean(client, params, limit: int = 8) -> list[dict]:
    """For an empty search: close matches (values-index) of each exact value typed, each with the
    query string of the same search with that value (and its property) replaced."""
    props, vals, modes = params.getlist("p"), params.getlist("v"), params.getlist("m")
    out = []
    for i, value in enumerate(vals):
        prop = props[i] if i < len(props) else ""
        if not value.strip() or (modes[i] if i < len(modes) else "exact") != "exact":
            continue
        searched = (prop,) if prop else ("type", "instance")  # the header's box searches type and instance
        hits = close_matches(client, value, [prop] if prop else None, limit, searched)
        if prop:  # the value (in any case) may be one of another property: those first
            elsewhere = close_matches(client, value, None, limit, searched)
            same = [h for h in elsewhere if h["prop"] != prop and h["value"].lower() == value.strip().lower()]
            hits = same + (hits or elsewhere)
        for hit in hits:
            items, row = [], -1
            for k, v in params.multi_items():
                if k == "p":
                    row += 1
                if k in UI_PARAMS or "." in k:
                    continue
                if row == i and k in ("p", "v", "m"):
                    v = {"p": hit["prop"], "v": hit["value"], "m": "exact"}[k]
                items.append((k, v))
            if not any(k == "dataset" for k, _ in items):
                items.insert(0, ("dataset", client.dataset))
            out.append({**hit, "typed": value.strip(), "query": urlencode(items)})
    return out[:limit]


@router.get("/search", response_class=HTMLResponse)
async def search(request: Request):
    def has_input(params):
        return any(
            k in params for k in ("p", "bodyId", "rois", "inputRois", "outputRois", "min_pre", "min_post", "with_rois")
        )

    name, store = _dataset(request)
    client = client_of(store)
    extra = {
        "properties": searchable_properties(client),
        "text_properties": text_properties(client),
        "rois": client.all_rois,
        "primary_rois": client.primary_rois,
    }
    return await _page(request, "search.html", _search, needs_input=has_input, extra=extra)


# ------------------------------------------------------------------------------------------ connectivity
def _connectivity(client, params):
    up = group_criteria(client, params.get("up", ""), "up")
    down = group_criteria(client, params.get("down", ""), "down")
    if up is None and down is None:
        raise QueryError("give an upstream group, a downstream group, or both")
    min_weight = _int(params, "min_weight", 1, 1)
    kwargs = {"min_weight": min_weight} if min_weight != 1 else {}
    kwargs["properties"] = PARTNER_PROPS
    df = fetch_simple_connections(
        _nc(client, up), _nc(client, down), min_weight=min_weight, properties=PARTNER_PROPS, client=client
    )
    call = call_code("fetch_simple_connections", [criteria_code(up), criteria_code(down)], kwargs)
    table = Table(
        "connections",
        f"{len(df)} connections",
        df,
        _snippet(client, "fetch_simple_connections", call),
        [
            "bodyId_pre",
            "type_pre",
            "instance_pre",
            "predictedNt_pre",
            "bodyId_post",
            "type_post",
            "instance_post",
            "weight",
            "weightHP",
            "conn_roiInfo",
        ],
        name="connections",
    )
    by = params.get("by", "body")
    return {"tables": [table], "heatmap": plots.connection_heatmap(df, by=by, scale=_scale(params)), "by": by}


def _scale(params) -> str:
    scale = params.get("scale") or "log"
    if scale not in plots.SCALES:
        raise QueryError(f"scale must be one of {', '.join(plots.SCALES)}, got {scale!r}")
    return scale


def _int(params, name, default, minimum):
    raw = (params.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(f"{name}: {raw!r} is not an integer") from None
    if value < minimum:
        raise QueryError(f"{name} must be >= {minimum}")
    return value


@router.get("/connectivity", response_class=HTMLResponse)
async def connectivity(request: Request):
    return await _page(request, "connectivity.html", _connectivity, needs_input=lambda p: "up" in p or "down" in p)


# ------------------------------------------------------------------------------------------ matrix
_whole: dict[tuple, pd.DataFrame] = {}


def whole_matrix(client, groupby: str) -> pd.DataFrame:
    """connection_matrix(groupby) over every neuron: fixed for a read-only store, so kept once made."""
    key = (str(client.store.path), client.store.meta.get("uuid"), client.store.dataset, groupby)
    df = _whole.get(key)
    if df is None:
        df = _whole[key] = connection_matrix(groupby, client=client)
    return df


def _matrix(client, params):
    groupby = params.get("groupby", "type")
    if groupby not in MATRIX_GROUPS:
        raise QueryError(f"groupby must be one of {', '.join(MATRIX_GROUPS)}")
    src = group_criteria(client, params.get("sources", ""), "sources")
    tgt = group_criteria(client, params.get("targets", ""), "targets")
    min_weight = _int(params, "min_weight", 1, 1)
    top = _int(params, "top", 40, 2)
    if src is None and tgt is None and min_weight == 1:
        df = whole_matrix(client, groupby)  # the whole connectome: computed once per store, kept
    else:
        df = connection_matrix(groupby, _nc(client, src), _nc(client, tgt), min_weight=min_weight, client=client)
    args = [repr(groupby)]
    call = (
        "connection_matrix("
        + ", ".join(
            args
            + ([f"sources={criteria_code(src)}"] if src else [])
            + ([f"targets={criteria_code(tgt)}"] if tgt else [])
            + ([f"min_weight={min_weight}"] if min_weight != 1 else [])
        )
        + ")"
    )
    table = Table(
        "matrix",
        f"{groupby} × {groupby}: {len(df)} pairs",
        df,
        _snippet(
            client,
            "connection_matrix",
            call,
            uses_nc=bool(src or tgt),
            after="square = df.pivot(index='pre', columns='post', values='weight')",
        ),
        name=f"matrix-{groupby}",
    )
    heatmap = plots.matrix_heatmap(df, top=top, title=f"{groupby} → {groupby}", square=True, scale=_scale(params))
    return {"tables": [table], "heatmap": heatmap, "groupby": groupby, "top": top}


@router.get("/matrix", response_class=HTMLResponse)
async def matrix(request: Request):
    return await _page(
        request, "matrix.html", _matrix, needs_input=lambda p: "groupby" in p, extra={"groupings": MATRIX_GROUPS}
    )


# ------------------------------------------------------------------------------------------ paths
def _paths(client, params):

    a = parse_ints(params.get("from", ""), "from")
    b = parse_ints(params.get("to", ""), "to")
    if len(a) != 1 or len(b) != 1:
        raise QueryError("give one body id in 'from' and one in 'to'")
    min_weight = _int(params, "min_weight", 1, 1)
    timeout = float(_int(params, "timeout", 5, 1))
    any_segment = params.get("intermediate") == "any"
    kwargs = {}
    if min_weight != 1:
        kwargs["min_weight"] = min_weight
    inter = NeuronCriteria(client=client) if any_segment else None
    args = [str(a[0]), str(b[0])]
    call = call_code("fetch_shortest_paths", args, kwargs)
    if any_segment:
        call = call[:-1] + ", intermediate_criteria=NC())"
    if timeout != 5:
        call = call[:-1] + f", timeout={timeout})"
    started = time.perf_counter()
    df = fetch_shortest_paths(
        a[0], b[0], min_weight=min_weight, intermediate_criteria=inter, timeout=timeout, client=client
    )
    took = time.perf_counter() - started
    note = ""
    if len(df) == 0:
        note = (
            "no path found"
            + (f" (the search may have hit its {timeout:g} s limit)" if took >= timeout * 0.9 else "")
            + ("" if any_segment else "; intermediate neurons must be Traced unless you allow any segment")
        )
    n_paths = int(df["path"].nunique()) if len(df) else 0
    table = Table(
        "paths",
        f"{n_paths} shortest path{'s' if n_paths != 1 else ''}",
        df,
        _snippet(client, "fetch_shortest_paths", call, uses_nc=any_segment),
        note=note,
        name=f"paths-{a[0]}-{b[0]}",
    )
    return {"tables": [table], "graph": plots.path_graph(df)}


@router.get("/paths", response_class=HTMLResponse)
async def paths(request: Request):
    return await _page(request, "paths.html", _paths, needs_input=lambda p: "from" in p or "to" in p)


# ------------------------------------------------------------------------------------------ cypher
def _cypher(client, params, timeout: float):
    text = params.get("q", "")
    result = execute(client.store, text, timeout=timeout)
    columns = list(result.columns)
    if len(set(columns)) != len(columns):
        columns = [c if columns.count(c) == 1 else f"{c}_{i}" for i, c in enumerate(columns)]
    df = pd.DataFrame(result.data, columns=columns)
    call = f"fetch_custom({text!r})"
    table = Table(
        "result", f"{len(df)} rows", df, _snippet(client, "fetch_custom", call, uses_nc=False), name="cypher-result"
    )
    return {"tables": [table]}


@router.get("/cypher", response_class=HTMLResponse)
async def cypher(request: Request):
    state = _state(request)
    timeout = min(float(getattr(state, "timeout", 60.0) or 60.0), 60.0)
    response = await _page(
        request,
        "cypher.html",
        lambda c, p: _cypher(c, p, timeout),
        needs_input=lambda p: bool((p.get("q") or "").strip()),
    )
    return response


# ------------------------------------------------------------------------------------------ JSON helpers
@router.get("/api/suggest")
async def api_suggest(request: Request, q: str = "", prop: str | None = None, limit: int = 30):
    name, store = _dataset(request)
    try:
        hits = await _state(request).run(suggest, client_of(store), q, prop or None, max(1, min(limit, 200)))
    except QueryError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse({"q": q, "prop": prop, "results": hits})


_roi_figures: dict[tuple, dict] = {}


def roi_figure(client) -> dict:
    """The home page heatmap (primary ROI x ROI synapse pairs), computed once per store and kept."""
    key = (str(client.store.path), client.store.meta.get("uuid"), client.store.dataset)
    fig = _roi_figures.get(key)
    if fig is None:
        df = whole_matrix(client, "roi")
        fig = _roi_figures[key] = plots.matrix_heatmap(
            df, top=len(client.primary_rois), title="synapses, pre ROI → post ROI", order=sorted(client.primary_rois)
        )
    return fig


@router.get("/api/roi-matrix")
async def api_roi_matrix(request: Request):
    name, store = _dataset(request)
    return JSONResponse(await _state(request).run(roi_figure, client_of(store)))


def warm(stores) -> None:
    """Compute what the first visitor would otherwise wait for: the autocomplete index, the home
    heatmap and the dataset summary of every store."""

    for store in stores:
        client = client_of(store)
        value_index(client)
        roi_figure(client)
        whole_matrix(client, "type")
        key = f"{client.store.path}:{client.store.meta.get('uuid')}"
        if key not in _summaries:
            _summaries[key] = client.store.summary()


# ------------------------------------------------------------------------------------------ static
@router.get("/static/{name}")
async def static(name: str):
    if name == "plotly.min.js":
        path = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
    else:
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            return PlainTextResponse("not found", status_code=404)
    media = STATIC_TYPES.get(path.suffix, "application/javascript" if path.suffix == ".js" else "text/plain")
    return FileResponse(path, media_type=media, headers={"Cache-Control": "public, max-age=86400"})


__all__ = ["router"]
