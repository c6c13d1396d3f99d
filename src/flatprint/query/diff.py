"""What changed between two releases: bodies added, removed, merged or split; property changes; type-pair
weight changes (``flatprint diff OLD NEW``, ``Client.diff``, the explorer's Diff page; docs/diff.md).

Everything heavy runs in DuckDB over the two store files ATTACHed read-only; only changed bodies and
aggregates come back to pandas. Work goes one range of body ids at a time (the stores are sorted by
body, so a range is a contiguous slice), which bounds memory at any scale:

1. per range, the two ``segments`` slices are joined by bodyId (ids only in one store, and changes of
   type, instance, class, status), and each body's synapse set is summarised as (count, sum of a hash
   of (x, y, z, kind)); bodies whose summary differs are *changed*;
2. the synapse points of changed bodies are matched by position and kind (synapse ids may differ
   between releases) into an overlap table (old body, new body, shared points);
3. an old body's *destination* is the new body holding more than ``min_share`` of its points, a new
   body's *source* the old body that gave more than ``min_share`` of its points. A new body that is the
   destination of two or more old bodies is a **merge**; an old body that is the source of two or more
   new bodies is a **split**; an id that exists on one side only and takes part in neither is
   **added** or **removed** (or **renumbered** when its points moved whole to a new id);
4. connection weights summed per (type of pre, type of post) over typed bodies in each store, old type
   names translated through the detected type renames, compared with absolute and relative thresholds.
"""

from __future__ import annotations

import io
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from flatprint.errors import QueryError, StoreError
from flatprint.store import Store

PROPERTIES = ("type", "instance", "class", "status")
CHANGE_KINDS = ("merged", "split", "added", "removed", "renumbered")
TABLE_NAMES = ("bodies", "property_changes", "type_renames", "weight_changes", "body_overlap")


@dataclass
class StoreDiff:
    """The result of :func:`diff_stores`: a summary and full tables (pandas DataFrames)."""

    old: str
    new: str
    old_dataset: str
    new_dataset: str
    parameters: dict
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step (docs/diff.md's measurements)

    @property
    def bodies(self) -> pd.DataFrame:
        return self.tables["bodies"]

    @property
    def property_changes(self) -> pd.DataFrame:
        return self.tables["property_changes"]

    @property
    def type_renames(self) -> pd.DataFrame:
        return self.tables["type_renames"]

    @property
    def weight_changes(self) -> pd.DataFrame:
        return self.tables["weight_changes"]

    @property
    def body_overlap(self) -> pd.DataFrame:
        return self.tables["body_overlap"]

    @property
    def unchanged(self) -> bool:
        return not any(len(self.tables[name]) for name in TABLE_NAMES if name != "body_overlap")

    def summary(self, top: int = 5) -> str:
        """A few lines a scientist reads in a minute: counts, then the largest changes."""
        c = self.counts
        lines = [f"{self.old_dataset} ({self.old}) -> {self.new_dataset} ({self.new})"]
        if self.unchanged:
            lines.append("no changes")
            return "\n".join(lines)
        lines.append("bodies: " + ", ".join(f"{c.get(k, 0):,} {k}" for k in CHANGE_KINDS))
        lines.append(
            "properties: "
            + ", ".join(f"{c.get('property:' + p, 0):,} {p}" for p in PROPERTIES)
            + f"; {c.get('type_renames', 0):,} types renamed"
        )
        p = self.parameters
        lines.append(
            f"type-pair weights: {c.get('weight_up', 0):,} up, {c.get('weight_down', 0):,} down "
            f"(|change| >= {p['min_weight_change']:g} and >= {p['min_relative_change']:.0%})"
        )
        b = self.bodies
        for kind in ("merged", "split"):
            rows = b[b["change"] == kind].nlargest(top, "synapses")
            for r in rows.itertuples(index=False):
                lines.append(
                    f"  {kind}: {_ids(r.old_bodyIds)} -> {_ids(r.new_bodyIds)} "
                    f"({r.synapses:,} synapses; types {_names(r.old_types)} -> {_names(r.new_types)})"
                )
        for r in self.type_renames.head(top).itertuples(index=False):
            lines.append(f"  type renamed: {r.old_type} -> {r.new_type} ({r.bodies} bodies)")
        w = self.weight_changes
        for r in w.reindex(w["change"].abs().sort_values(ascending=False).index).head(top).itertuples(index=False):
            lines.append(
                f"  weight {r.type_pre} -> {r.type_post}: {r.weight_old:,} -> {r.weight_new:,} ({r.change:+,})"
            )
        return "\n".join(lines)

    def write(self, out_dir: str | Path, formats=("csv", "parquet")) -> list[Path]:
        """Every table as ``<name>.csv`` / ``<name>.parquet`` in ``out_dir`` (lists as ';'-joined text in CSV)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, df in self.tables.items():
            if "parquet" in formats:
                df.to_parquet(out / f"{name}.parquet", index=False)
                written.append(out / f"{name}.parquet")
            if "csv" in formats:
                flat = df.copy()
                for col in flat.columns:
                    if flat[col].map(lambda v: isinstance(v, list)).any():
                        flat[col] = flat[col].map(lambda v: ";".join(map(str, v)) if isinstance(v, list) else v)
                flat.to_csv(out / f"{name}.csv", index=False)
                written.append(out / f"{name}.csv")
        return written

    def figure(self, path: str | Path | None = None, top: int = 15):
        """A matplotlib figure: changes by kind, and the largest type-pair weight changes. Saved as PNG
        when ``path`` is given; returns the figure."""
        import matplotlib  # noqa: PLC0415 - matplotlib only for the figure (start-up time)

        matplotlib.use("Agg")  # no display: the figure goes to a file or bytes
        import matplotlib.pyplot as plt  # noqa: PLC0415 - matplotlib only for the figure (start-up time)

        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1, 1.6]})
        labels = [*CHANGE_KINDS, *(f"{p} changed" for p in PROPERTIES), "types renamed"]
        values = (
            [self.counts.get(k, 0) for k in CHANGE_KINDS]
            + [self.counts.get("property:" + p, 0) for p in PROPERTIES]
            + [self.counts.get("type_renames", 0)]
        )
        left.barh(labels[::-1], values[::-1], color="#4c72b0")
        for y, v in enumerate(values[::-1]):
            left.text(v, y, f" {v:,}", va="center", fontsize=8)
        left.set_title("bodies and properties")
        left.set_xlabel("count")
        w = self.weight_changes
        w = w.reindex(w["change"].abs().sort_values(ascending=False).index).head(top).iloc[::-1]
        if len(w):
            names = [f"{a} → {b}" for a, b in zip(w["type_pre"], w["type_post"])]
            right.barh(names, w["change"], color=["#c44e52" if v < 0 else "#55a868" for v in w["change"]])
            right.axvline(0, color="black", linewidth=0.6)
            right.tick_params(axis="y", labelsize=7)
        else:
            right.text(
                0.5,
                0.5,
                "no type-pair weight change\nabove the thresholds",
                ha="center",
                va="center",
                transform=right.transAxes,
            )
        right.set_title("largest type-pair weight changes (new − old)")
        right.set_xlabel("synapses")
        fig.suptitle(f"{self.old_dataset} → {self.new_dataset}", fontsize=11)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
            plt.close(fig)
        return fig

    def png(self) -> bytes:

        import matplotlib.pyplot as plt  # noqa: PLC0415 - matplotlib only for the figure (start-up time)

        fig = self.figure()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
        return buf.getvalue()


def _ids(values) -> str:
    return "+".join(str(v) for v in values)


def _names(values) -> str:
    names = [str(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return "/".join(names) if names else "-"


def _store_info(path) -> tuple[Path, str]:
    """Check that ``path`` is a readable store (clear StoreError otherwise); its resolved path and dataset."""
    if isinstance(path, Store):
        return Path(path.path).resolve(), path.dataset
    store = Store.open(Path(path).expanduser())
    try:
        return Path(store.path).resolve(), store.dataset
    finally:
        store.close()


def _check(name: str, value: float, low: float, high: float = math.inf, high_open: bool = False) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise QueryError(f"{name} must be a number, got {value!r}") from None
    if not (low <= value and (value < high if high_open else value <= high)):
        raise QueryError(f"{name} must be in [{low}, {high}{')' if high_open else ']'}, got {value}")
    return value


def diff_stores(
    old,
    new,
    *,
    min_weight_change: float = 10,
    min_relative_change: float = 0.2,
    min_share: float = 0.5,
    memory_limit: str = "4GB",
    rows_per_range: int = 50_000_000,
    temp_directory: str | Path | None = None,
) -> StoreDiff:
    """Compare two stores (paths or open Stores; the same store twice gives no changes).

    ``min_weight_change``/``min_relative_change``: a type pair's weight change is reported when
    |new - old| >= min_weight_change and |new - old| >= min_relative_change * old (pairs new in NEW
    pass the relative test). ``min_share``: the fraction of a body's points (> min_share, in [0.5, 1))
    that makes another body its destination or source (see the module's docstring).
    ``rows_per_range``: synapse rows per body range (memory per step); ``memory_limit``: DuckDB's.
    """
    started = time.perf_counter()
    min_weight_change = _check("min_weight_change", min_weight_change, 0)
    min_relative_change = _check("min_relative_change", min_relative_change, 0)
    min_share = _check("min_share", min_share, 0.5, 1.0, high_open=True)
    if int(rows_per_range) < 1:
        raise QueryError(f"rows_per_range must be a positive integer, got {rows_per_range!r}")
    old_path, old_dataset = _store_info(old)
    new_path, new_dataset = _store_info(new)
    params = {
        "min_weight_change": min_weight_change,
        "min_relative_change": min_relative_change,
        "min_share": min_share,
    }
    scratch = Path(tempfile.mkdtemp(prefix="flatprint-diff-", dir=temp_directory))
    con = duckdb.connect()
    try:
        con.execute(f"SET memory_limit = '{memory_limit}'")
        con.execute(f"SET temp_directory = '{scratch}'")
        con.execute("SET preserve_insertion_order = false")
        con.execute("SET enable_progress_bar = false")
        con.execute(f"ATTACH '{_quote(old_path)}' AS o (READ_ONLY)")
        new_alias = "o"
        if new_path != old_path:  # DuckDB attaches a file once; the same store twice = no changes
            con.execute(f"ATTACH '{_quote(new_path)}' AS n (READ_ONLY)")
            new_alias = "n"
        timings: dict[str, float] = {}
        tables, counts = _diff(con, "o", new_alias, params, int(rows_per_range), timings)
    except duckdb.Error as exc:
        raise StoreError(f"diff of {old_path} and {new_path} failed: {exc}") from None
    finally:
        con.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return StoreDiff(
        str(old_path),
        str(new_path),
        old_dataset,
        new_dataset,
        params,
        tables,
        counts,
        time.perf_counter() - started,
        timings,
    )


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")


def _ranges(con, o: str, n: str, rows_per_range: int) -> list[tuple[int | None, int | None]]:
    """Body-id ranges [lo, hi) holding about ``rows_per_range`` synapse rows each (None = unbounded)."""
    total = max(con.execute(f"SELECT count(*) FROM {a}.synapses").fetchone()[0] for a in {o, n})
    k = max(1, math.ceil(total / rows_per_range))
    if k == 1:
        return [(None, None)]
    cuts = con.execute(
        f"SELECT quantile_disc(bodyId, [{', '.join(str(i / k) for i in range(1, k))}]) FROM {o}.segments"
    ).fetchone()[0]
    bounds = [None, *sorted(set(cuts)), None]
    return list(zip(bounds[:-1], bounds[1:]))


def _where(column: str, lo, hi) -> str:
    parts = ([f"{column} >= {int(lo)}"] if lo is not None else []) + (
        [f"{column} < {int(hi)}"] if hi is not None else []
    )
    return " AND ".join(parts) or "true"


def _diff(con, o: str, n: str, params: dict, rows_per_range: int, timings: dict) -> tuple[dict, dict]:
    clock = time.perf_counter()
    props = ", ".join(f'"{p}"' for p in PROPERTIES)
    con.execute(f"""CREATE TEMP TABLE seg_diff (bodyId BIGINT, in_old BOOLEAN, in_new BOOLEAN,
                    {", ".join(f'"old_{p}" VARCHAR, "new_{p}" VARCHAR' for p in PROPERTIES)})""")
    con.execute("CREATE TEMP TABLE changed (body BIGINT, points_old BIGINT, points_new BIGINT)")
    differs = " OR ".join(f'a."{p}" IS DISTINCT FROM b."{p}"' for p in PROPERTIES)
    for lo, hi in _ranges(con, o, n, rows_per_range):
        seg = _where("bodyId", lo, hi)
        con.execute(f"""
            INSERT INTO seg_diff
            SELECT coalesce(a.bodyId, b.bodyId), a.bodyId IS NOT NULL, b.bodyId IS NOT NULL,
                   {", ".join(f'a."{p}", b."{p}"' for p in PROPERTIES)}
            FROM (SELECT bodyId, {props} FROM {o}.segments WHERE {seg}) a
            FULL JOIN (SELECT bodyId, {props} FROM {n}.segments WHERE {seg}) b ON a.bodyId = b.bodyId
            WHERE a.bodyId IS NULL OR b.bodyId IS NULL OR {differs}""")
        syn = _where("body", lo, hi)
        summary = "SELECT body, count(*) AS c, sum(hash(x, y, z, kind)) AS h FROM {}.synapses WHERE {} GROUP BY body"
        con.execute(f"""
            INSERT INTO changed
            SELECT coalesce(a.body, b.body), coalesce(a.c, 0), coalesce(b.c, 0)
            FROM ({summary.format(o, syn)}) a FULL JOIN ({summary.format(n, syn)}) b ON a.body = b.body
            WHERE a.c IS DISTINCT FROM b.c OR a.h IS DISTINCT FROM b.h""")

    timings["ranges"] = time.perf_counter() - clock
    clock = time.perf_counter()
    # -------- overlap of changed bodies' points, matched by position and kind
    overlap = con.execute(f"""
        WITH a AS (SELECT x, y, z, kind, body FROM {o}.synapses
                   WHERE body IN (SELECT body FROM changed WHERE points_old > 0)),
             b AS (SELECT x, y, z, kind, body FROM {n}.synapses
                   WHERE body IN (SELECT body FROM changed WHERE points_new > 0))
        SELECT a.body AS body_old, b.body AS body_new, count(*) AS shared
        FROM a JOIN b ON a.x = b.x AND a.y = b.y AND a.z = b.z AND a.kind = b.kind
        GROUP BY ALL""").df()
    changed = con.execute("SELECT * FROM changed").df()
    seg = con.execute("SELECT * FROM seg_diff").df()
    bodies, overlap = _body_events(con, o, n, overlap, changed, seg, params["min_share"])
    timings["overlap"] = time.perf_counter() - clock
    clock = time.perf_counter()

    # -------- property changes of ids on both sides, and type renames
    both = seg[seg["in_old"] & seg["in_new"]]
    rows = []
    for p in PROPERTIES:
        d = both[both[f"old_{p}"].fillna("\0") != both[f"new_{p}"].fillna("\0")]
        rows.append(pd.DataFrame({"bodyId": d["bodyId"], "property": p, "old": d[f"old_{p}"], "new": d[f"new_{p}"]}))
    props = pd.concat(rows, ignore_index=True).sort_values(["property", "bodyId"], ignore_index=True)
    props = props.astype({"old": object, "new": object}).where(props.notna(), None)
    renames = _type_renames(con, o, n, props)

    # -------- type-pair weights, old names translated through the renames
    weights = _weight_changes(con, o, n, renames, params)
    timings["weights"] = time.perf_counter() - clock

    tables = {
        "bodies": bodies,
        "property_changes": props,
        "type_renames": renames,
        "weight_changes": weights,
        "body_overlap": overlap,
    }
    counts = {k: int((bodies["change"] == k).sum()) for k in CHANGE_KINDS}
    counts.update({f"property:{p}": int((props["property"] == p).sum()) for p in PROPERTIES})
    counts["type_renames"] = len(renames)
    counts["weight_up"] = int((weights["change"] > 0).sum())
    counts["weight_down"] = int((weights["change"] < 0).sum())
    return tables, counts


def _body_events(
    con, o, n, overlap: pd.DataFrame, changed: pd.DataFrame, seg: pd.DataFrame, min_share: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    points_old = changed.set_index("body")["points_old"]
    points_new = changed.set_index("body")["points_new"]
    overlap["share_of_old"] = overlap["shared"] / overlap["body_old"].map(points_old)
    overlap["share_of_new"] = overlap["shared"] / overlap["body_new"].map(points_new)
    overlap = overlap.sort_values(["body_old", "body_new"], ignore_index=True)
    dest = overlap[overlap["share_of_old"] > min_share]  # old body -> where most of it went
    src = overlap[overlap["share_of_new"] > min_share]  # new body -> where most of it came from
    events = []
    merged_new = dest.groupby("body_new")["body_old"].agg(list)
    for new_id, olds in merged_new[merged_new.map(len) >= 2].items():
        shared = int(dest.loc[dest["body_new"] == new_id, "shared"].sum())
        events.append(("merged", sorted(olds), [int(new_id)], shared))
    split_old = src.groupby("body_old")["body_new"].agg(list)
    for old_id, news in split_old[split_old.map(len) >= 2].items():
        shared = int(src.loc[src["body_old"] == old_id, "shared"].sum())
        events.append(("split", [int(old_id)], sorted(news), shared))
    in_event_old = {b for e in events for b in e[1]}
    in_event_new = {b for e in events for b in e[2]}
    only_old = set(seg.loc[~seg["in_new"], "bodyId"].astype(int))
    only_new = set(seg.loc[~seg["in_old"], "bodyId"].astype(int))
    # an id that vanished and whose points moved whole to an id that appeared
    mutual = dest.merge(src, on=["body_old", "body_new"])
    for r in mutual.itertuples(index=False):
        if (
            r.body_old in only_old
            and r.body_new in only_new
            and r.body_old not in in_event_old
            and r.body_new not in in_event_new
        ):
            events.append(("renumbered", [int(r.body_old)], [int(r.body_new)], int(r.shared)))
            in_event_old.add(r.body_old)
            in_event_new.add(r.body_new)
    events += [("removed", [b], [], int(points_old.get(b, 0))) for b in sorted(only_old - in_event_old)]
    events += [("added", [], [b], int(points_new.get(b, 0))) for b in sorted(only_new - in_event_new)]
    bodies = pd.DataFrame(events, columns=["change", "old_bodyIds", "new_bodyIds", "synapses"])
    # types on each side, for reading the table without a lookup
    ids_old = sorted({b for e in events for b in e[1]})
    ids_new = sorted({b for e in events for b in e[2]})
    type_old = _types(con, o, ids_old)
    type_new = _types(con, n, ids_new)
    bodies["old_types"] = bodies["old_bodyIds"].map(lambda ids: [type_old.get(b) for b in ids])
    bodies["new_types"] = bodies["new_bodyIds"].map(lambda ids: [type_new.get(b) for b in ids])
    order = {k: i for i, k in enumerate(CHANGE_KINDS)}
    bodies = bodies.sort_values(
        ["change", "synapses"], key=lambda s: s.map(order) if s.name == "change" else -s, ignore_index=True
    )
    return bodies, overlap


def _types(con, alias: str, ids: list[int]) -> dict[int, str | None]:
    if not ids:
        return {}
    df = con.execute(f"SELECT bodyId, type FROM {alias}.segments WHERE bodyId IN (SELECT unnest(?))", [ids]).df()
    return {int(b): (t if isinstance(t, str) else None) for b, t in zip(df["bodyId"], df["type"])}


def _type_renames(con, o, n, props: pd.DataFrame) -> pd.DataFrame:
    """old type -> new type when every body of the old type that is still there got the new name, the old
    name is gone from NEW and the new name was not in OLD."""
    t = props[(props["property"] == "type") & props["old"].notna() & props["new"].notna()]
    if t.empty:
        return pd.DataFrame(
            {
                "old_type": pd.Series(dtype=object),
                "new_type": pd.Series(dtype=object),
                "bodies": pd.Series(dtype="int64"),
            }
        )
    pairs = t.groupby(["old", "new"]).size().rename("bodies").reset_index()
    old_types = list(pairs["old"].unique())
    new_types = list(pairs["new"].unique())
    in_new = {
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT type FROM {n}.segments WHERE type IN (SELECT unnest(?))", [old_types]
        ).fetchall()
    }
    in_old = {
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT type FROM {o}.segments WHERE type IN (SELECT unnest(?))", [new_types]
        ).fetchall()
    }
    targets = pairs.groupby("old")["new"].nunique()
    keep = pairs["old"].map(targets).eq(1) & ~pairs["old"].isin(in_new) & ~pairs["new"].isin(in_old)
    out = pairs[keep].rename(columns={"old": "old_type", "new": "new_type"})
    return out.sort_values("old_type", ignore_index=True).astype({"bodies": "int64"})


def _weight_changes(con, o, n, renames: pd.DataFrame, params: dict) -> pd.DataFrame:
    con.execute("CREATE OR REPLACE TEMP TABLE renames (old_type VARCHAR, new_type VARCHAR)")
    if len(renames):
        con.executemany("INSERT INTO renames VALUES (?, ?)", renames[["old_type", "new_type"]].values.tolist())
    pair_sql = """
        WITH typed AS (SELECT s.bodyId, {name} AS type FROM {a}.segments s {join} WHERE s.type IS NOT NULL)
        SELECT p.type AS type_pre, q.type AS type_post, sum(c.weight) AS weight
        FROM {a}.connections c JOIN typed p ON c.body_pre = p.bodyId JOIN typed q ON c.body_post = q.bodyId
        GROUP BY ALL"""
    old_sql = pair_sql.format(
        a=o, name="coalesce(r.new_type, s.type)", join="LEFT JOIN renames r ON r.old_type = s.type"
    )
    new_sql = pair_sql.format(a=n, name="s.type", join="")
    df = con.execute(
        f"""
        WITH a AS ({old_sql}), b AS ({new_sql})
        SELECT coalesce(a.type_pre, b.type_pre) AS type_pre, coalesce(a.type_post, b.type_post) AS type_post,
               coalesce(a.weight, 0)::BIGINT AS weight_old, coalesce(b.weight, 0)::BIGINT AS weight_new
        FROM a FULL JOIN b ON a.type_pre = b.type_pre AND a.type_post = b.type_post
        WHERE abs(coalesce(b.weight, 0) - coalesce(a.weight, 0)) >= ?
          AND abs(coalesce(b.weight, 0) - coalesce(a.weight, 0)) >= ? * coalesce(a.weight, 0)""",
        [params["min_weight_change"], params["min_relative_change"]],
    ).df()
    df["change"] = df["weight_new"] - df["weight_old"]
    df["relative_change"] = df["change"] / df["weight_old"].where(df["weight_old"] > 0)
    return df.sort_values(
        ["change", "type_pre", "type_post"], key=lambda s: -s.abs() if s.name == "change" else s, ignore_index=True
    )


__all__ = ["StoreDiff", "diff_stores", "PROPERTIES", "CHANGE_KINDS", "TABLE_NAMES"]
