"""The explorer's 'Indirect' page: effective connectivity over k hops (flatprint.query.fetch_indirect).

One group × group heatmap per hop on a log colour scale (log10 of |weight|, colour bar ticks in the
original units), and the ranked tables (summed over hops, and per hop) with downloads and the Python
call. The page follows the other pages' pattern (web.views._page); only its route lives here.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from flatprint.errors import QueryError
from flatprint.query.indirect import fetch_indirect
from flatprint.web.forms import group_criteria
from flatprint.web.snippets import call_code, criteria_code
from flatprint.web.tables import Table
from flatprint.web.views import _int, _nc, _page, _snippet

router = APIRouter(prefix="/explorer", include_in_schema=False)
GROUPS = ("type", "instance")
LOG_COLORS = "Viridis"


def _float(params, name: str, default: float) -> float:
    raw = (params.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise QueryError(f"{name}: {raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise QueryError(f"{name} must be a non-negative number")
    return value


def _ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Colour bar ticks at whole powers of ten between lo and hi (log10 units), labelled in weights."""
    first, last = math.floor(lo), math.ceil(hi)
    step = max(1, (last - first) // 6)
    vals = list(range(first, last + 1, step))
    return [float(v) for v in vals], [f"{10.0**v:g}" for v in vals]


def log_heatmap(df: pd.DataFrame, pre: str, post: str, title: str, top: int = 30, order=None) -> dict:
    """A heatmap of log10(|weight|) for a long-form table; hover shows the signed weight itself."""
    if len(df) == 0:
        return {"data": [], "layout": {"title": {"text": title + " (nothing reached)"}, "height": 200}}
    rows_all = df.groupby(pre)["weight"].apply(lambda s: s.abs().sum()).sort_values(ascending=False)
    cols_all = df.groupby(post)["weight"].apply(lambda s: s.abs().sum()).sort_values(ascending=False)
    rows = order[0] if order else rows_all.index[:top].tolist()
    cols = order[1] if order else cols_all.index[:top].tolist()
    cell = {(a, b): w for a, b, w in zip(df[pre], df[post], df["weight"])}
    weights = [[cell.get((r, c)) for c in cols] for r in rows]
    z = [[None if w is None or w == 0 else math.log10(abs(w)) for w in line] for line in weights]
    text = [["" if w is None else f"{w:.4g}" for w in line] for line in weights]
    finite = [v for line in z for v in line if v is not None]
    lo, hi = (min(finite), max(finite)) if finite else (-3.0, 0.0)
    if hi - lo < 1:
        lo = hi - 1
    tickvals, ticktext = _ticks(lo, hi)
    data = [
        {
            "type": "heatmap",
            "x": [str(c) for c in cols],
            "y": [str(r) for r in rows],
            "z": z,
            "text": text,
            "zmin": lo,
            "zmax": hi,
            "colorscale": LOG_COLORS,
            "hoverongaps": False,
            "hovertemplate": "%{y} → %{x}<br>weight %{text}<extra></extra>",
            "colorbar": {"title": {"text": "|weight| (log)"}, "tickvals": tickvals, "ticktext": ticktext},
        }
    ]
    size = max(260, min(900, 22 * len(rows) + 200))  # one source type: a strip, not a square
    return {
        "data": data,
        "layout": {
            "title": {"text": title, "font": {"size": 14}},
            "height": size,
            "margin": {"l": 60, "r": 20, "t": 40, "b": 60},
            "paper_bgcolor": "rgba(0,0,0,0)",
            "plot_bgcolor": "rgba(0,0,0,0)",
            "xaxis": {"title": {"text": "target"}, "automargin": True, "tickangle": -45},
            "yaxis": {"title": {"text": "source"}, "automargin": True, "autorange": "reversed"},
        },
        "rows": [str(r) for r in rows],
        "cols": [str(c) for c in cols],
    }


def _indirect(client, params):
    src = group_criteria(client, params.get("sources", ""), "sources")
    tgt = group_criteria(client, params.get("targets", ""), "targets")
    if src is None and tgt is None:
        raise QueryError("give sources, targets or both (empty = every neuron on that side)")
    hops = _int(params, "hops", 3, 1)
    if hops > 6:
        raise QueryError("hops must be <= 6 here (use the library for more)")
    groupby = params.get("groupby", "type")
    if groupby not in GROUPS:
        raise QueryError(f"groupby must be one of {', '.join(GROUPS)}")
    normalize = params.get("normalize", "input")
    signed = params.get("signed") in ("1", "on", "true")
    min_weight = _float(params, "min_weight", 0.0)
    top = _int(params, "top", 30, 2)
    per_hop, summed = fetch_indirect(
        _nc(client, src),
        _nc(client, tgt),
        hops=hops,
        groupby=groupby,
        normalize=normalize,
        signed=signed,
        min_weight=min_weight,
        client=client,
    )
    pre, post = f"{groupby}_pre", f"{groupby}_post"
    kwargs = {"hops": hops, "groupby": groupby}
    if normalize != "input":
        kwargs["normalize"] = normalize
    if signed:
        kwargs["signed"] = True
    if min_weight:
        kwargs["min_weight"] = min_weight
    call = call_code("fetch_indirect", [criteria_code(src), criteria_code(tgt)], kwargs)
    uses_nc = bool(src or tgt)
    summed_table = Table(
        "summed",
        f"{len(summed)} {groupby} pairs, summed over hops 1–{hops}",
        summed,
        _snippet(client, "fetch_indirect", call, assign="per_hop, df", uses_nc=uses_nc),
        name=f"indirect-{groupby}-summed",
    )
    per_hop_table = Table(
        "per_hop",
        f"{len(per_hop)} rows, one per {groupby} pair and hop",
        per_hop,
        _snippet(client, "fetch_indirect", call, assign="df, summed", uses_nc=uses_nc),
        name=f"indirect-{groupby}-per-hop",
    )
    # the same groups on every hop's heatmap, chosen by the summed result, so the hops compare
    rows_all = summed.groupby(pre)["weight"].apply(lambda s: s.abs().sum()).sort_values(ascending=False)
    cols_all = summed.groupby(post)["weight"].apply(lambda s: s.abs().sum()).sort_values(ascending=False)
    order = (rows_all.index[:top].tolist(), cols_all.index[:top].tolist()) if len(summed) else None
    kind = "input" if normalize == "input" else "output"
    heatmaps = [
        log_heatmap(
            per_hop[per_hop["hop"] == k],
            pre,
            post,
            f"hop {k}: effective {kind} fraction{' (signed)' if signed else ''}",
            top,
            order,
        )
        for k in range(1, hops + 1)
    ]
    shown = int(np.count_nonzero([len(h["data"]) for h in heatmaps]))
    return {
        "tables": [summed_table, per_hop_table],
        "heatmaps": heatmaps,
        "hops": hops,
        "shown": shown,
        "groupby": groupby,
    }


@router.get("/indirect", response_class=HTMLResponse)
async def indirect(request: Request):
    return await _page(request, "indirect.html", _indirect, needs_input=lambda p: "sources" in p or "targets" in p)


__all__ = ["router", "log_heatmap"]
