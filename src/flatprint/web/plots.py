"""Plotly figures (plain dicts: data + layout) built from library results; plotly.js draws them."""

from __future__ import annotations

import math

import pandas as pd

from flatprint.web.tables import plain

HEATMAP_COLORS = "Viridis"
SCALES = ("log", "linear")  # colour scales of the heatmaps; log by default: weights span decades


def _layout(title: str, **kw) -> dict:
    base = {
        "title": {"text": title, "font": {"size": 14}},
        "margin": {"l": 60, "r": 20, "t": 40, "b": 60},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
    }
    base.update(kw)
    return base


def roi_bars(counts: pd.DataFrame, top: int = 40) -> dict:
    """Pre and post per ROI (grouped bars), heaviest ROIs first."""
    counts = counts.copy()
    counts["total"] = counts["pre"] + counts["post"]
    counts = counts[counts["total"] > 0].sort_values(["total", "roi"], ascending=[False, True])
    title = "Synapses per primary ROI"
    if len(counts) > top:
        title += f" (the {top} with most synapses of {len(counts)})"
        counts = counts.head(top)
    rois = counts["roi"].tolist()
    data = [
        {
            "type": "bar",
            "name": "pre (T-bars)",
            "x": rois,
            "y": [int(v) for v in counts["pre"]],
            "marker": {"color": "#d62728"},
        },
        {
            "type": "bar",
            "name": "post (PSDs)",
            "x": rois,
            "y": [int(v) for v in counts["post"]],
            "marker": {"color": "#1f77b4"},
        },
    ]
    return {
        "data": data,
        "layout": _layout(
            title,
            barmode="group",
            height=320,
            xaxis={"tickangle": -45, "automargin": True},
            yaxis={"title": {"text": "synapses"}},
            legend={"orientation": "h", "y": 1.1},
        ),
    }


def _square(rows: list, cols: list, values: dict) -> list:
    return [[values.get((r, c)) for c in cols] for r in rows]


def log_ticks(low: int, high: int) -> tuple[list[float], list[str]]:
    """Colour bar ticks for log10-coloured weights: positions (log10) and labels in weights —
    1, 10, 100, … and, over at most two decades, 2 and 5 times those."""
    low, high = max(1, int(low)), max(1, int(high))
    steps = (1, 2, 5) if math.log10(high) - math.log10(low) <= 2 else (1,)
    values = [
        m * 10**e for e in range(int(math.floor(math.log10(low))), int(math.ceil(math.log10(high))) + 1) for m in steps
    ]
    # the lowest and highest weights label the bar's ends; a round tick right next to one would overlap it
    span = math.log10(high) - math.log10(low)
    values = [
        v
        for v in values
        if low < v < high and min(math.log10(v) - math.log10(low), math.log10(high) - math.log10(v)) > 0.06 * span
    ]
    values = [low, *values, high] if high != low else [low]
    return [round(math.log10(v), 6) for v in values], [f"{v:,}" for v in values]


def _colour(z: list, scale: str) -> dict:
    """The heatmap trace's z, colour bar and hover for a colour scale: with ``log`` z is log10(weight)
    and the weights themselves go in customdata (hover) and in the colour bar's labels."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if scale == "linear":
        return {
            "z": z,
            "hovertemplate": "%{y} → %{x}<br>weight %{z}<extra></extra>",
            "colorbar": {"title": {"text": "weight"}},
        }
    weights = [w for row in z for w in row if w is not None]
    vals, text = log_ticks(min(weights), max(weights)) if weights else ([0], ["1"])
    return {
        "z": [[None if w is None else round(math.log10(w), 6) for w in row] for row in z],
        "customdata": z,
        "hovertemplate": "%{y} → %{x}<br>weight %{customdata}<extra></extra>",
        "colorbar": {"title": {"text": "weight (log)"}, "tickvals": vals, "ticktext": text},
    }


def matrix_heatmap(
    df: pd.DataFrame,
    top: int = 40,
    title: str = "",
    order: list | None = None,
    square: bool = False,
    scale: str = "log",
) -> dict:
    """A heatmap of a long-form pre/post/weight table, limited to the ``top`` heaviest groups per axis;
    coloured by log10(weight) by default (one heavy cell would make a linear scale flat elsewhere)."""
    if len(df) == 0:
        return {"data": [], "layout": _layout(title + " (no connections)")}
    out_tot = df.groupby("pre")["weight"].sum().sort_values(ascending=False)
    in_tot = df.groupby("post")["weight"].sum().sort_values(ascending=False)
    if order is None and square:  # same groups on both axes, heaviest (in + out) first: the diagonal lines up
        both = out_tot.add(in_tot, fill_value=0).sort_values(ascending=False)
        order = both.index[:top].tolist()
        rows, cols = order, order
    elif order is not None:
        rows = [r for r in order if r in out_tot.index][:top]
        cols = [c for c in order if c in in_tot.index][:top]
    else:
        rows = out_tot.index[:top].tolist()
        cols = in_tot.index[:top].tolist()
    keep = df[df["pre"].isin(rows) & df["post"].isin(cols)]
    values = {(p, q): int(w) for p, q, w in zip(keep["pre"], keep["post"], keep["weight"])}
    z = _square(rows, cols, values)
    note = ""
    if square and len(set(out_tot.index) | set(in_tot.index)) > len(rows):
        note = f" (the {len(rows)} heaviest of {len(set(out_tot.index) | set(in_tot.index))} groups)"
    elif len(out_tot) > len(rows) or len(in_tot) > len(cols):
        note = f" (top {len(rows)} of {len(out_tot)} × {len(cols)} of {len(in_tot)} by weight)"
    data = [
        {
            "type": "heatmap",
            "x": [str(c) for c in cols],
            "y": [str(r) for r in rows],
            "colorscale": HEATMAP_COLORS,
            "hoverongaps": False,
            **_colour(z, scale),
        }
    ]
    size = max(360, min(900, 14 * max(len(rows), len(cols)) + 160))
    return {
        "data": data,
        "layout": _layout(
            title + note,
            height=size,
            xaxis={"title": {"text": "post (downstream)"}, "automargin": True, "tickangle": -45},
            yaxis={"title": {"text": "pre (upstream)"}, "automargin": True, "autorange": "reversed"},
        ),
    }


def _label(body, kind) -> str:
    kind = plain(kind)
    return f"{kind or '?'} {int(body)}"


def connection_heatmap(df: pd.DataFrame, by: str = "body", top: int = 60, scale: str = "log") -> dict:
    """Group A → group B weights: per body (labelled 'type bodyId') or summed per type."""
    if len(df) == 0:
        return {"data": [], "layout": _layout("no connections")}
    if by == "type":
        pre = df["type_pre"].map(lambda v: plain(v) or "(no type)")
        post = df["type_post"].map(lambda v: plain(v) or "(no type)")
    else:
        pre = [_label(b, t) for b, t in zip(df["bodyId_pre"], df["type_pre"])]
        post = [_label(b, t) for b, t in zip(df["bodyId_post"], df["type_post"])]
    long = pd.DataFrame({"pre": list(pre), "post": list(post), "weight": df["weight"].to_numpy()})
    long = long.groupby(["pre", "post"], as_index=False)["weight"].sum()
    return matrix_heatmap(long, top=top, title=f"weights per {by}", scale=scale)


def path_graph(df: pd.DataFrame) -> dict:
    """Shortest paths as a layered graph: x = step along the path, bodies spread vertically."""
    if len(df) == 0:
        return {"data": [], "layout": _layout("no path")}
    steps: dict[int, list] = {}
    nodes: dict[int, tuple] = {}
    edges: dict[tuple, int] = {}
    for _, path in df.groupby("path", sort=True):
        bodies = [int(b) for b in path["bodyId"]]
        weights = [int(w) for w in path["weight"]]
        types = list(path["type"])
        for i, (b, t) in enumerate(zip(bodies, types)):
            if b not in nodes:
                steps.setdefault(i, []).append(b)
                nodes[b] = (i, plain(t))
            if i:
                edges[(bodies[i - 1], b)] = weights[i]
    pos = {}
    for step, bodies in steps.items():
        n = len(bodies)
        for j, b in enumerate(bodies):
            pos[b] = (step, (j - (n - 1) / 2))
    ex, ey, lx, ly, lt = [], [], [], [], []
    for (a, b), w in edges.items():
        (x0, y0), (x1, y1) = pos[a], pos[b]
        ex += [x0, x1, None]
        ey += [y0, y1, None]
        lx.append((x0 + x1) / 2)
        ly.append((y0 + y1) / 2)
        lt.append(str(w))
    bodies = list(pos)
    max_w = max(edges.values()) if edges else 1
    data = [
        {
            "type": "scatter",
            "mode": "lines",
            "x": ex,
            "y": ey,
            "hoverinfo": "skip",
            "showlegend": False,
            "line": {"color": "#999", "width": 2},
        },
        {
            "type": "scatter",
            "mode": "text",
            "x": lx,
            "y": ly,
            "text": lt,
            "textposition": "top center",
            "hoverinfo": "skip",
            "showlegend": False,
            "textfont": {"color": "#555"},
        },
        {
            "type": "scatter",
            "mode": "markers+text",
            "x": [pos[b][0] for b in bodies],
            "y": [pos[b][1] for b in bodies],
            "text": [f"{nodes[b][1] or '?'}<br>{b}" for b in bodies],
            "textposition": "bottom center",
            "customdata": bodies,
            "hovertemplate": "%{text}<extra></extra>",
            "showlegend": False,
            "marker": {
                "size": 18,
                "color": [
                    "#2ca02c" if pos[b][0] == 0 else "#d62728" if pos[b][0] == max(steps) else "#1f77b4" for b in bodies
                ],
            },
        },
    ]
    width = max(steps) + 1
    height = max(len(v) for v in steps.values())
    return {
        "data": data,
        "layout": _layout(
            f"{df['path'].nunique()} shortest path(s), edge labels = weight (max {max_w})",
            height=max(300, 90 * height + 120),
            hovermode="closest",
            xaxis={"visible": False, "range": [-0.5, width - 0.5]},
            yaxis={"visible": False, "range": [-(height + 1) / 2, (height + 1) / 2]},
        ),
        "bodies": bodies,
    }


__all__ = ["roi_bars", "matrix_heatmap", "connection_heatmap", "path_graph"]
