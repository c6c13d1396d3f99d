"""The explorer's 'Diff' page: what changed between two served datasets (flatprint.query.diff).

``/explorer/diff?old=NAME:TAG&new=NAME:TAG`` (both served by this server; the caller's token must
read both) shows the summary, the figure (PNG, as ``flatprint diff --plot`` draws it) and the full
tables with downloads. The page follows the other pages' pattern (web.views._page).
"""

from __future__ import annotations

import base64

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from flatprint.errors import QueryError
from flatprint.query.diff import diff_stores
from flatprint.server.http import dataset_for, visible_datasets
from flatprint.web.indirect import _float
from flatprint.web.snippets import call_code
from flatprint.web.tables import Table
from flatprint.web.views import _page

router = APIRouter(prefix="/explorer", include_in_schema=False)

TITLES = {
    "bodies": "bodies merged, split, added, removed or renumbered",
    "property_changes": "type, instance, class and status changes (ids in both)",
    "type_renames": "types renamed (every body of the old name got the new one)",
    "weight_changes": "type-pair connection weight changes above the thresholds",
    "body_overlap": "synapse points shared by changed bodies (old body, new body)",
}


def _diff(old_store, new_store, old: str, new: str, params) -> dict:
    kwargs = {
        "min_weight_change": _float(params, "min_weight_change", 10.0),
        "min_relative_change": _float(params, "min_relative_change", 0.2),
    }
    result = diff_stores(old_store, new_store, **kwargs)
    call = call_code("diff_stores", [repr(str(old_store.path)), repr(str(new_store.path))], kwargs)
    python = f"from flatprint.query.diff import diff_stores\n\nresult = {call}\ndf = result.tables[{{key!r}}]"
    tables = [
        Table(key, f"{len(df):,} {TITLES[key]}", df, python.replace("{key!r}", repr(key)), name=f"diff-{key}")
        for key, df in result.tables.items()
    ]
    png = base64.b64encode(result.png()).decode()
    return {"tables": tables, "summary": result.summary(), "figure": png, "old": old, "new": new}


@router.get("/diff", response_class=HTMLResponse)
async def diff(request: Request):
    params = request.query_params
    old, new = params.get("old"), params.get("new")
    stores = {}
    if old and new:  # the caller's token must read both (403/404 as on the API otherwise)
        old, stores["old"] = dataset_for(request, old)
        new, stores["new"] = dataset_for(request, new)

    def compute(client, params):
        if not stores:
            raise QueryError("choose an old and a new dataset")
        return _diff(stores["old"], stores["new"], old, new, params)

    return await _page(
        request,
        "diff.html",
        compute,
        needs_input=lambda p: "old" in p or "new" in p,
        extra={"choices": visible_datasets(request)},
    )


__all__ = ["router"]
