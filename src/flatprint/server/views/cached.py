"""Precomputed summaries: /api/cached/{roiconnectivity,roicompleteness,dailytype}.

They are computed on first request per dataset and kept in memory (the stores are read-only).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading

from fastapi import APIRouter, Request

from flatprint.server.http import dataset_for, json_response
from flatprint.server.views.skeletons import skeleton_rows

router = APIRouter()
_cache: dict[tuple[str, str], object] = {}
_cache_lock = threading.Lock()


def _cached(store, name, compute):
    key = (str(store.path), name)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    value = compute(store)
    with _cache_lock:
        _cache[key] = value
    return value


def roi_connectivity(store) -> dict:
    """Per pair of primary ROIs A=>B: neurons with inputs in A and outputs in B (count), and
    weight = sum over those neurons of post(A) * pre(B) / pre(all primary ROIs)."""
    rows = (
        store.cursor()
        .execute("""
        WITH r AS (
          SELECT s.bodyId, s.roi, s.pre, s.post FROM segment_rois s
          JOIN rois ON rois.roi = s.roi AND rois.is_primary
          JOIN segments n ON n.bodyId = s.bodyId AND n.is_neuron),
        tot AS (SELECT bodyId, sum(pre) AS pre FROM r GROUP BY bodyId HAVING sum(pre) > 0)
        SELECT a.roi, b.roi, count(*), sum(a.post * b.pre / tot.pre)
        FROM r a JOIN r b ON a.bodyId = b.bodyId JOIN tot ON tot.bodyId = a.bodyId
        WHERE a.post > 0 AND b.pre > 0 GROUP BY ALL""")
        .fetchall()
    )
    names = sorted(store.meta.get("primaryRois", []))
    return {
        "roi_names": [names],
        "weights": {f"{a}=>{b}": {"count": int(c), "weight": float(w)} for a, b, c, w in rows},
    }


def roi_completeness(store) -> dict:
    rows = (
        store.cursor()
        .execute("""
        SELECT s.roi, sum(s.pre) FILTER (n.status = 'Traced'), sum(s.post) FILTER (n.status = 'Traced'),
               sum(s.pre), sum(s.post)
        FROM segment_rois s JOIN segments n ON n.bodyId = s.bodyId GROUP BY s.roi ORDER BY s.roi""")
        .fetchall()
    )
    return {
        "columns": ["roi", "roipre", "roipost", "totalpre", "totalpost"],
        "data": [[r, int(a or 0), int(b or 0), int(c or 0), int(d or 0)] for r, a, b, c, d in rows],
    }


def daily_type(store, day: dt.date) -> dict:
    cur = store.cursor()
    types = [
        r[0]
        for r in cur.execute(
            "SELECT DISTINCT type FROM segments WHERE is_neuron AND status = 'Traced' AND type IS NOT NULL ORDER BY 1"
        ).fetchall()
    ]
    if not types:
        return {"info": {}, "connectivity": {"columns": [], "data": []}, "skeleton": {"columns": [], "data": []}}
    pick = types[int(hashlib.sha256(day.isoformat().encode()).hexdigest(), 16) % len(types)]
    body, instance, pre, post = cur.execute(
        "SELECT bodyId, instance, pre, post FROM segments WHERE type = ? AND is_neuron ORDER BY synweight DESC LIMIT 1",
        [pick],
    ).fetchall()[0]
    partners = cur.execute(
        """
        SELECT 'output' AS direction, c.body_post, n.type, c.weight
        FROM connections c JOIN segments n ON n.bodyId = c.body_post
        WHERE c.body_pre = ? UNION ALL
        SELECT 'input', c.body_pre, n.type, c.weight FROM connections_by_post c JOIN segments n ON n.bodyId = c.body_pre
        WHERE c.body_post = ? ORDER BY 4 DESC LIMIT 20""",
        [body, body],
    ).fetchall()
    return {
        "info": {"type": pick, "bodyid": body, "instance": instance, "pre": pre, "post": post, "date": day.isoformat()},
        "connectivity": {"columns": ["direction", "partner", "type", "weight"], "data": [list(r) for r in partners]},
        "skeleton": {"columns": ["rowId", "x", "y", "z", "radius", "link"], "data": skeleton_rows(store, body) or []},
    }


@router.get("/api/cached/roiconnectivity")
def cached_roi_connectivity(request: Request, dataset: str | None = None):
    _, store = dataset_for(request, dataset)
    return json_response(_cached(store, "roiconnectivity", roi_connectivity))


@router.get("/api/cached/roicompleteness")
def cached_roi_completeness(request: Request, dataset: str | None = None):
    _, store = dataset_for(request, dataset)
    return json_response(_cached(store, "roicompleteness", roi_completeness))


@router.get("/api/cached/dailytype")
def cached_daily_type(request: Request, dataset: str | None = None):
    _, store = dataset_for(request, dataset)
    today = dt.date.today()
    return json_response(_cached(store, f"dailytype-{today}", lambda s: daily_type(s, today)))
