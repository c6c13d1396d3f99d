"""The ROI hierarchy a store is built with: the release's tree, flattened, and v1.0's extra ROI levels
folded into combined labels so that every level stays queryable."""

from __future__ import annotations

import json

from flatprint.errors import ReleaseError
from flatprint.ingest.validate import ReleaseFiles
from flatprint.release import tables as T
from flatprint.store.sql import quote_ident, sql_literal


def roi_hierarchy(files: ReleaseFiles, con) -> dict:
    """The ROI tree: roi-hierarchy.json when the release has it, else major -> primary from the data."""
    path = files.root / "roi-hierarchy.json"
    if path.exists():
        try:
            doc = json.loads(path.read_text())
            return doc["roiHierarchy"]
        except (ValueError, KeyError) as exc:
            raise ReleaseError(f"roi-hierarchy.json: unreadable ({exc})") from None
    # Without a published tree, group each primary ROI under the major region most of its points lie in.
    children: dict[str, list[str]] = {}
    if "major" in files.roi_sets:
        rows = con.execute(f"""
            SELECT p, arg_max(m, n) FROM (
              SELECT primary_roi AS p, major_roi AS m, count(*) AS n FROM raw_points
              WHERE primary_roi <> {sql_literal(T.UNSPECIFIED)} GROUP BY ALL) GROUP BY p""").fetchall()
        for p, m in rows:
            children.setdefault(m if m != T.UNSPECIFIED else "CNS", []).append(p)
    else:
        rows = con.execute(
            f"SELECT DISTINCT primary_roi FROM raw_points WHERE primary_roi <> {sql_literal(T.UNSPECIFIED)}"
        ).fetchall()
        children["CNS"] = [r[0] for r in rows]
    tree = {"name": "CNS", "children": []}
    for major, prims in sorted(children.items()):
        leaves = [{"name": p} for p in sorted(prims)]
        if major == "CNS":
            tree["children"] += leaves
        else:
            tree["children"].append({"name": major, "children": leaves})
    return tree


def flatten_tree(tree: dict, parent: str | None = None, depth: int = 0, out=None) -> list[tuple[str, str | None, int]]:
    out = [] if out is None else out
    out.append((tree["name"], parent, depth))
    for child in tree.get("children", []):
        flatten_tree(child, tree["name"], depth + 1, out)
    return out


def extra_roi_sets(roi_sets: list[str]) -> list[str]:
    return [s for s in roi_sets if s not in ("primary", "major")]


def combine_extra_roi_sets(con, roi_sets, label_names, parent_of, root, primary_names, major_names) -> dict | None:
    """Fold ROI sets beyond primary and major into the major label: each distinct combination of
    (major, extra labels) gets one label whose roi_map rows are its major region plus every extra ROI
    (and that ROI's ancestors below the nearest primary or major ROI), so queries that resolve labels
    through roi_map count a point under every level. None when there are no extra sets."""
    # ROIs the primary set already counts a point under: each primary and its ancestors below major.
    counted = primary_names | major_names | {root}
    for name in primary_names:
        while (name := parent_of.get(name)) and name not in counted:
            counted.add(name)
    extra = [s for s in extra_roi_sets(roi_sets) if set(label_names.get(s, {}).values()) - counted]
    if not extra:
        return None
    keys = (["major"] if "major" in roi_sets else []) + extra
    label_cols = [quote_ident(f"{s}_label") for s in keys]
    cols = ", ".join(f"coalesce({c}, 0)" for c in label_cols)
    combos = con.execute(f"SELECT DISTINCT {cols} FROM raw_points ORDER BY ALL").fetchall()
    if len(combos) >= 1 << 16:
        raise ReleaseError(
            f"syn-points: {len(combos):,} combinations of the ROI sets {', '.join(keys)}; "
            "flatprint stores at most 65,535"
        )
    roi_map, rows = [], []
    for label, combo in enumerate(combos, start=1):
        names: list[str] = []
        for s, value in zip(keys, combo):
            name = label_names[s].get(int(value or 0))
            while name and name not in names and (name not in counted or (s == "major" and name in major_names)):
                names.append(name)
                name = parent_of.get(name) if s != "major" else None
        roi_map += [[label, n] for n in names]
        rows.append([label, *[int(v or 0) for v in combo]])
    column_defs = ", ".join(f"{c} INTEGER" for c in label_cols)
    con.execute(f"CREATE TEMP TABLE roi_combos (combo USMALLINT, {column_defs})")
    con.executemany(f"INSERT INTO roi_combos VALUES ({', '.join('?' * (len(keys) + 1))})", rows)
    match = " AND ".join(f"c.{c} = coalesce(p.{c}, 0)" for c in label_cols)
    return {"roi_map": roi_map, "label_expr": f"(SELECT c.combo FROM roi_combos c WHERE {match})"}
