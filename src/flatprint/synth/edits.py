"""A second synthetic release with known edits, to test `flatprint diff` against a manifest of truth.

:func:`plant_edits` reads a release directory (the v0.9 feathers ``flatprint synth`` writes), applies
edits a proofreading round makes, and writes a new release directory plus ``edits.json`` listing every
edit. The feathers stay consistent the way the generator's are (src/flatprint/synth/generator.py):
connectome-weights = syn-partners rows per body pair, body-stats = counts of syn-points and
partners per body, every partner end a point of its own body, one tbar-nt row per T-bar.

Edits (each on its own bodies, so that each one shows in the diff unmixed with the others):

* ``rename_type``: every body of a type gets a new type name (instance follows);
* ``merge``: two neurons become one id (the first keeps its id and annotation);
* ``split``: a neuron's points on the far side of its median x become a new body id;
* ``property``: a body's ``status`` (and ``statusLabel``) or ``class`` changes;
* ``remove``: a neuron disappears with its points, its partner rows and its T-bars;
* ``add``: a new neuron (a donor's annotation, new id) whose PSDs are copies of the donor's, moved to
  free locations, fed by the same T-bars;
* ``weight``: a third of the partner rows of a type pair get their PSD (point and partner end) moved
  to a neuron of a third type: that pair loses the weight and the new pair gains it.

With ``target`` (``"v1.0"``, ``"male-cns:v1.0"``) the edited release is written as that registered release:
its file names, and its schemas (syn-points and tbar-nt columns: the ROI sets), the ROI levels the source
lacks filled from each point's location and primary ROI by flatprint.synth.levels, as ``flatprint synth``
fills them; ingest then detects it as the target release. So a v0.9 -> v1.0 pair can be diffed.

Working on whole tables in memory (pyarrow + NumPy) is fine up to scale ~0.1.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather

from flatprint.errors import ReleaseError
from flatprint.io.feather import write_feather
from flatprint.release import tables as T
from flatprint.release.registry import ReleaseDescription, describe, detect
from flatprint.synth import levels
from flatprint.synth.release import write_roi_hierarchy
from flatprint.synth.rois import hierarchy

EDITS_FILE = "edits.json"
RENAME_SUFFIX = "_r2"
NEW_CLASS = "reclassified"


def _read(root: Path, desc: ReleaseDescription, key: str, columns: list[str] | None = None) -> pa.Table:
    path = root / desc.files[key]
    if not path.exists():
        raise ReleaseError(f"{path}: missing (plant_edits needs a complete release directory)")
    return feather.read_table(path, columns=columns, memory_map=True)


def _schema(root: Path, desc: ReleaseDescription, key: str) -> pa.Schema:
    with pa.memory_map(str(root / desc.files[key])) as source:
        return pa.ipc.open_file(source).schema


def _primary_labels(table: pa.Table, what: str) -> np.ndarray:
    """Each row's primary ROI label: ``primary_label`` if the table has it, else the ``primary`` names'
    positions among the synthetic primary ROIs (0 = ``<unspecified>``)."""
    if "primary_label" in table.column_names:
        return table.column("primary_label").to_numpy().astype(np.int64)
    if "primary" not in table.column_names:
        raise ReleaseError(f"{what}: needs a 'primary' or 'primary_label' column to derive ROI levels")
    names = table.column("primary").cast(pa.string())
    labels = pc.index_in(names, value_set=pa.array(hierarchy().categories("primary")))
    return labels.to_numpy(zero_copy_only=False)


def _roi_level_column(table: pa.Table, field: pa.Field, what: str) -> pa.Array:
    """A column of a ROI level the source table lacks (``mid``, ``mid_label``, ...), from the locations."""
    level = field.name.removesuffix("_label")
    if level not in levels.LEVELS:
        raise ReleaseError(
            f"{what}: column {field.name!r} of the target release is not in the source and is not "
            f"a derivable ROI level (known: {', '.join(levels.LEVELS)})"
        )
    xyz = [table.column(c).to_numpy() for c in ("x", "y", "z")]
    labels = levels.labels_at(level, *xyz, _primary_labels(table, what))
    if pa.types.is_dictionary(field.type):
        return pa.DictionaryArray.from_arrays(
            pa.array(labels, field.type.index_type), pa.array(levels.categories(level), pa.string())
        )
    return pa.array(labels, field.type)


def _conform(table: pa.Table, schema: pa.Schema, what: str) -> pa.Table:
    """``table`` in ``schema``: its columns cast, missing ROI levels derived, columns ``schema`` lacks dropped."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            col = table.column(field.name)
            columns.append(col if col.type == field.type else col.cast(field.type))
        else:
            columns.append(_roi_level_column(table, field, what))
    return pa.table(columns, schema=schema)


def _write(out: Path, desc: ReleaseDescription, key: str, table: pa.Table) -> dict:
    path = out / desc.files[key]
    if key in ("syn-points", "tbar-nt"):  # where releases' schemas differ (their ROI sets)
        table = _conform(table, desc.schemas()[key], f"{path.name} ({desc.key})")
    write_feather(table, path)  # as the release writes them: lz4, 64K-row batches
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return {
        "table": key,
        "file": path.name,
        "rows": table.num_rows,
        "bytes": path.stat().st_size,
        "sha256": digest.hexdigest(),
    }


def _set(table: pa.Table, name: str, values) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, table.schema.field(i), pa.array(values, type=table.schema.field(i).type))


def _point_ids(x, y, z) -> np.ndarray:
    return (
        (np.asarray(z, np.uint64) << np.uint64(42))
        | (np.asarray(y, np.uint64) << np.uint64(21))
        | np.asarray(x, np.uint64)
    )


def _keys_of(table: pa.Table, rows: np.ndarray, suffix: str) -> np.ndarray:
    sub = table.select([f"x{suffix}", f"y{suffix}", f"z{suffix}"]).take(pa.array(rows, pa.int64()))
    return _point_ids(*(sub.column(i).to_numpy() for i in range(3)))


def _is_presyn(kind: pa.ChunkedArray) -> np.ndarray:
    """kind == 'PreSyn' from the dictionary indices (no string copy of a column of every point)."""
    parts = []
    for chunk in kind.chunks:
        if pa.types.is_dictionary(chunk.type):
            words = chunk.dictionary.to_pylist()
            code = words.index("PreSyn") if "PreSyn" in words else -1
            parts.append(chunk.indices.to_numpy(zero_copy_only=False) == code)
        else:
            parts.append(pc.equal(chunk, "PreSyn").to_numpy(zero_copy_only=False))
    return np.concatenate(parts) if parts else np.zeros(0, bool)


class _Release:
    """The columns the edits change (bodies) and keep-masks; whole tables are read again only to write
    them, one at a time (holding syn-points and syn-partners at once would need ~4 GB at scale 0.1)."""

    def __init__(self, root: Path):
        self.root = root
        self.desc = detect(root)
        self.ann = self.table("annotations").to_pandas()
        self.ann_schema = _schema(root, self.desc, "annotations")
        self.nt = self.table("neurotransmitters")
        self.stats_schema = _schema(root, self.desc, "stats")
        p = self.table("syn-points", ["body", "point_id", "kind", "x"])
        self.p_body = p.column("body").to_numpy().copy()
        self.p_key = p.column("point_id").to_numpy().astype(np.uint64)
        self.p_pre = _is_presyn(p.column("kind"))
        self.p_x = p.column("x").to_numpy()
        q = self.table("syn-partners", ["body_pre", "body_post"])
        self.q_pre = q.column("body_pre").to_numpy().copy()
        self.q_post = q.column("body_post").to_numpy().copy()
        self.t_body = self.table("tbar-nt", ["body"]).column("body").to_numpy().copy()
        self.p_keep = np.ones(len(self.p_body), bool)
        self.q_keep = np.ones(len(self.q_pre), bool)
        self.t_keep = np.ones(len(self.t_body), bool)
        self.nt_drop: set[int] = set()
        self.nt_renames: dict[str, str] = {}
        self.new_points: list[pa.Table] = []
        self.new_partners: list[pa.Table] = []

        self._next_id = max(int(self.p_body.max()), int(self.ann["bodyId"].max())) + 1

    def partner_keys(self, rows: np.ndarray, end: str) -> np.ndarray:
        """point_id of the pre or post end of some syn-partners rows (computed for few rows at a time:
        keys of every row would cost 8 bytes a row for each end)."""
        return _keys_of(self.table("syn-partners", [f"{c}_{end}" for c in "xyz"]), rows, f"_{end}")

    def table(self, key: str, columns: list[str] | None = None) -> pa.Table:
        return _read(self.root, self.desc, key, columns)

    def next_body_id(self) -> int:
        """An id no body has had (new ids count up from the largest one)."""
        self._next_id += 1
        return self._next_id - 1


def _candidates(rel: _Release, rng: np.random.Generator, n_points: np.ndarray, bodies: np.ndarray) -> pd.DataFrame:
    """Typed, traced neurons with at least 40 T-bars+PSDs, in random order."""
    ann = rel.ann
    ok = ann["type"].notna() & ann["status"].eq("Traced") & ann["class"].notna()
    df = ann.loc[ok, ["bodyId", "type", "instance", "class", "status", "statusLabel"]].copy()
    counts = pd.Series(n_points, index=bodies)
    df["points"] = df["bodyId"].map(counts).fillna(0).astype(int)
    df = df[df["points"] >= 40]
    return df.sample(frac=1.0, random_state=int(rng.integers(2**31))).reset_index(drop=True)


def plant_edits(
    release: str | Path,
    out: str | Path,
    *,
    seed: int = 0,
    renames: int = 2,
    merges: int = 2,
    splits: int = 2,
    status_changes: int = 2,
    class_changes: int = 2,
    removals: int = 2,
    additions: int = 2,
    weight_changes: int = 2,
    force: bool = False,
    target: str | None = None,
) -> dict:
    """Write ``out``: ``release`` with the edits planted; return the edit manifest (also ``out/edits.json``).

    ``target`` (a registered release key, e.g. ``v1.0``) writes ``out`` as that release (its file names and
    ROI sets); by default ``out`` is the same release as ``release``."""
    release, out = Path(release), Path(out)
    if not release.is_dir():
        raise ReleaseError(f"release directory not found: {release}")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise ReleaseError(f"{out} is not empty (use force=True to replace it)")
        shutil.rmtree(out)
    target_desc = describe(target) if target is not None else None  # an unknown key fails before any work
    rng = np.random.default_rng(seed)
    rel = _Release(release)
    written_as = target_desc or rel.desc
    bodies, n_points = np.unique(rel.p_body, return_counts=True)
    cand = _candidates(rel, rng, n_points, bodies)
    used_types: set[str] = set()
    used_bodies: set[int] = set()
    edits: list[dict] = []

    def take(n: int, same_type_ok: bool = False) -> list[dict]:
        """n candidate neurons whose types no earlier edit touched (each type used by one edit)."""
        picked = []
        for row in cand.to_dict("records"):
            if len(picked) == n:
                break
            if row["type"] in used_types or row["bodyId"] in used_bodies:
                continue
            if any(p["type"] == row["type"] for p in picked) and not same_type_ok:
                continue
            picked.append(row)
        if len(picked) < n:
            raise ReleaseError(f"{release}: too few typed neurons for the requested edits")
        for p in picked:
            used_types.add(p["type"])
            used_bodies.add(int(p["bodyId"]))
        return picked

    ann = rel.ann
    # ---- renamed types: every body of the type, instance follows
    type_counts = ann["type"].value_counts()
    multi = cand[cand["type"].map(type_counts).ge(2)]
    done = 0
    for t in multi["type"].drop_duplicates():
        if done == renames:
            break
        if t in used_types:
            continue
        used_types.add(t)
        rows = ann.index[ann["type"] == t]
        new = f"{t}{RENAME_SUFFIX}"
        body_ids = [int(b) for b in ann.loc[rows, "bodyId"]]
        used_bodies.update(body_ids)
        old_inst = ann.loc[rows, "instance"].tolist()
        ann.loc[rows, "type"] = new
        ann.loc[rows, "instance"] = [
            None if i is None else new + i[len(t) :] if i.startswith(t) else i for i in old_inst
        ]
        rel.nt_renames[t] = new
        edits.append({"kind": "rename_type", "old": t, "new": new, "bodies": sorted(body_ids)})
        for b, i_old, i_new in zip(body_ids, old_inst, ann.loc[rows, "instance"]):
            edits.append(
                {"kind": "property", "body": b, "property": "type", "old": t, "new": new, "cause": "rename_type"}
            )
            if i_old != i_new:
                edits.append(
                    {
                        "kind": "property",
                        "body": b,
                        "property": "instance",
                        "old": i_old,
                        "new": i_new,
                        "cause": "rename_type",
                    }
                )
        done += 1
    if done < renames:
        raise ReleaseError(f"{release}: too few types with two or more neurons to rename {renames}")

    # ---- merges: B's points, partner ends and T-bars become A's; B's annotation goes
    for _ in range(merges):
        a, b = take(2)
        keep, gone = int(a["bodyId"]), int(b["bodyId"])
        rel.p_body[rel.p_body == gone] = keep
        rel.q_pre[rel.q_pre == gone] = keep
        rel.q_post[rel.q_post == gone] = keep
        rel.t_body[rel.t_body == gone] = keep
        rel.ann = ann = ann[ann["bodyId"] != gone].copy()
        rel.nt_drop.add(gone)
        edits.append({"kind": "merge", "new": keep, "old": sorted([keep, gone])})

    # ---- splits: points beyond the median x go to a new id (with their partner ends and T-bars)
    for _ in range(splits):
        (a,) = take(1)
        body = int(a["bodyId"])
        new_id = rel.next_body_id()
        mine = np.flatnonzero(rel.p_body == body)
        moved = mine[rel.p_x[mine] > np.median(rel.p_x[mine])]
        moved_keys = rel.p_key[moved]
        rel.p_body[moved] = new_id
        for end, bodies in (("pre", rel.q_pre), ("post", rel.q_post)):
            rows = np.flatnonzero(bodies == body)
            bodies[rows[np.isin(rel.partner_keys(rows, end), moved_keys)]] = new_id
        rows = np.flatnonzero(rel.t_body == body)
        rel.t_body[rows[np.isin(_keys_of(rel.table("tbar-nt", ["x", "y", "z"]), rows, ""), moved_keys)]] = new_id
        edits.append({"kind": "split", "old": body, "new": sorted([body, new_id])})

    # ---- status and class changes
    for _ in range(status_changes):
        (a,) = take(1)
        i = ann.index[ann["bodyId"] == a["bodyId"]]
        ann.loc[i, "statusLabel"] = "Anchor"
        ann.loc[i, "status"] = T.STATUS_OF_LABEL["Anchor"]
        edits.append(
            {"kind": "property", "body": int(a["bodyId"]), "property": "status", "old": a["status"], "new": "Anchor"}
        )
    for _ in range(class_changes):
        (a,) = take(1)
        ann.loc[ann["bodyId"] == a["bodyId"], "class"] = NEW_CLASS
        edits.append(
            {"kind": "property", "body": int(a["bodyId"]), "property": "class", "old": a["class"], "new": NEW_CLASS}
        )

    # ---- removals: the body's points, partner rows and T-bars (the PSDs opposite its T-bars stay, without
    # a partner, as the release has PSDs whose T-bar fell below the confidence cut: removing them would
    # empty, and so remove, small fragments too)
    for _ in range(removals):
        (a,) = take(1)
        body = int(a["bodyId"])
        rel.q_keep &= (rel.q_pre != body) & (rel.q_post != body)
        rel.p_keep &= rel.p_body != body
        rel.t_keep &= rel.t_body != body
        rel.ann = ann = ann[ann["bodyId"] != body].copy()
        rel.nt_drop.add(body)
        edits.append({"kind": "remove", "old": body})

    # ---- additions: copies of a donor's PSDs (that have partners) at free locations, new id
    taken = np.sort(rel.p_key)
    for _ in range(additions):
        (a,) = take(1)
        donor, new_id = int(a["bodyId"]), rel.next_body_id()
        rows = np.flatnonzero(rel.q_keep & (rel.q_post == donor))
        post_keys = np.unique(rel.partner_keys(rows, "post"))
        pts = np.flatnonzero(rel.p_keep & (rel.p_body == donor) & ~rel.p_pre & np.isin(rel.p_key, post_keys))
        for dx in range(1, 1000):
            shifted = rel.p_key[pts] + np.uint64(dx)
            hit = np.searchsorted(taken, shifted)
            hit = np.minimum(hit, len(taken) - 1)
            x_ok = (rel.p_x[pts] + dx) < (1 << 21)
            if not (taken[hit] == shifted).any() and x_ok.all():
                break
        else:
            raise ReleaseError(f"no free location near the points of body {donor}")
        new_pts = rel.table("syn-points").take(pa.array(pts))
        new_pts = _set(new_pts, "x", new_pts.column("x").to_numpy() + dx)
        new_pts = _set(new_pts, "point_id", shifted)
        new_pts = _set(new_pts, "body", np.full(len(pts), new_id, np.int64))
        new_q = rel.table("syn-partners").take(pa.array(rows))
        new_q = _set(new_q, "x_post", new_q.column("x_post").to_numpy() + dx)
        new_q = _set(new_q, "body_post", np.full(len(rows), new_id, np.int64))
        rel.new_points.append(new_pts)
        rel.new_partners.append(new_q)
        taken = np.sort(np.concatenate([taken, shifted]))
        row = ann[ann["bodyId"] == donor].copy()
        row["bodyId"] = new_id
        rel.ann = ann = pd.concat([ann, row], ignore_index=True)
        edits.append({"kind": "add", "new": new_id, "donor": donor})

    # ---- weight changes: move PSDs of (T1 -> T2) partner rows to a neuron of type T3
    type_of = dict(zip(ann["bodyId"], ann["type"]))
    pre_t = pd.Series(rel.q_pre).map(type_of).to_numpy()
    post_t = pd.Series(rel.q_post).map(type_of).to_numpy()
    live = rel.q_keep & pd.notna(pre_t) & pd.notna(post_t)
    live &= ~pd.Series(pre_t).isin(used_types).to_numpy() & ~pd.Series(post_t).isin(used_types).to_numpy()
    pairs = pd.DataFrame({"pre": pre_t[live], "post": post_t[live]}).value_counts()
    for _ in range(weight_changes):
        # the biggest free neuron receives a third of the heaviest free type pair no bigger than its own
        # points: no body's points go mostly elsewhere, so no merge or split appears
        free = [r for r in cand.to_dict("records") if r["type"] not in used_types and r["bodyId"] not in used_bodies]
        if not free:
            raise ReleaseError(f"{release}: no neuron left to receive a weight change")
        target = max(free, key=lambda r: r["points"])
        used_types.add(target["type"])
        used_bodies.add(int(target["bodyId"]))
        t3, to_body = target["type"], int(target["bodyId"])
        pairs = pairs[[p not in used_types and q not in used_types for p, q in pairs.index]]
        fitting = pairs[(pairs <= target["points"]) & (pairs >= 60)]
        if fitting.empty:
            raise ReleaseError(f"{release}: no type pair left for a weight change")
        t1, t2 = fitting.index[0]
        used_types.update((t1, t2))
        rows = np.flatnonzero(rel.q_keep & (pre_t == t1) & (post_t == t2))
        rows = rng.permutation(rows)[: len(rows) // 3]
        moved_keys = rel.partner_keys(rows, "post")
        at = np.flatnonzero(~rel.p_pre & np.isin(rel.p_key, moved_keys))
        rel.p_body[at] = to_body
        rel.q_post[rows] = to_body
        post_t[rows] = t3
        edits.append({"kind": "weight", "pre_type": t1, "post_type": t2, "delta": -len(rows)})
        edits.append({"kind": "weight", "pre_type": t1, "post_type": t3, "delta": len(rows)})

    files = _write_release(rel, release, out, written_as)
    manifest = {
        "source": str(release),
        "source_release": rel.desc.key,
        "release": written_as.key,
        "seed": seed,
        "edits": edits,
    }
    (out / EDITS_FILE).write_text(json.dumps(manifest, indent=1))
    src = json.loads((release / "manifest.json").read_text()) if (release / "manifest.json").exists() else {}
    src["files"] = files
    src["edited_from"] = str(release)
    src["release"] = written_as.key
    (out / "manifest.json").write_text(json.dumps(src, indent=1))
    return manifest


def _write_release(rel: _Release, release: Path, out: Path, desc: ReleaseDescription) -> list[dict]:
    """Write the edited tables as release ``desc``, one at a time, dropping each (and the arrays it came
    from) once written."""
    out.mkdir(parents=True, exist_ok=True)
    for path in release.iterdir():  # ROI hierarchy, skeletons, ... (not the tables or the manifest)
        if path.suffix != ".feather" and path.name not in ("manifest.json", EDITS_FILE):
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, out / path.name)
    if desc.key != rel.desc.key and (release / "roi-hierarchy.json").exists():
        write_roi_hierarchy(out, desc)  # the target's ROI sets (v1.0's extra levels in the tree)
    files = []
    # DuckDB over the Arrow tables for the per-body and per-pair counts: a pandas groupby of every
    # partner row needs several times the table's memory
    con = duckdb.connect()
    con.execute("SET threads = 2")

    points = _set(rel.table("syn-points"), "body", rel.p_body).filter(pa.array(rel.p_keep))
    rel.p_body = rel.p_key = rel.p_x = None
    points = pa.concat_tables([points, *rel.new_points]) if rel.new_points else points
    files.append(_write(out, desc, "syn-points", points))
    con.register("points_t", points.select(["body", "kind"]))
    counts = con.execute("""SELECT body, count(*) FILTER (WHERE kind::VARCHAR = 'PreSyn')::INTEGER AS pre,
                                   count(*) FILTER (WHERE kind::VARCHAR = 'PostSyn')::INTEGER AS post
                            FROM points_t GROUP BY body""").df()
    con.unregister("points_t")
    del points

    partners = _set(_set(rel.table("syn-partners"), "body_pre", rel.q_pre), "body_post", rel.q_post)
    partners = partners.filter(pa.array(rel.q_keep))
    rel.q_pre = rel.q_post = None
    partners = pa.concat_tables([partners, *rel.new_partners]) if rel.new_partners else partners
    files.append(_write(out, desc, "syn-partners", partners))
    con.register("partners_t", partners.select(["body_pre", "body_post"]))
    weights = con.sql("""SELECT body_pre, body_post, count(*) AS weight FROM partners_t
                         GROUP BY ALL ORDER BY ALL""").to_arrow_table()
    down = con.execute("SELECT body_pre AS body, count(*) AS downstream FROM partners_t GROUP BY 1").df()
    con.unregister("partners_t")
    con.close()
    del partners
    files.append(_write(out, desc, "weights", weights.cast(T.CONNECTOME_WEIGHTS)))
    del weights

    files.append(
        _write(out, desc, "tbar-nt", _set(rel.table("tbar-nt"), "body", rel.t_body).filter(pa.array(rel.t_keep)))
    )

    ann = rel.ann.sort_values("bodyId").reset_index(drop=True)
    files.append(
        _write(out, desc, "annotations", pa.Table.from_pandas(ann, schema=rel.ann_schema, preserve_index=False))
    )

    stats = counts.merge(down, on="body", how="left")
    stats["downstream"] = stats["downstream"].fillna(0).astype(np.int64)
    stats["synweight"] = stats["downstream"] + stats["post"]
    stats = stats.sort_values(["synweight", "body"], ascending=[False, True]).reset_index(drop=True)
    stats["rank"] = np.arange(1, len(stats) + 1, dtype=np.int64)
    a = ann.set_index("bodyId")
    for col in ("superclass", "class", "type", "instance"):
        stats[col] = stats["body"].map(a[col])
    cats = [""] + list(T.STATUS_LABELS)
    label = stats["body"].map(a["statusLabel"].astype(object)).fillna("")
    stats["status_fine"] = pd.Categorical(label, categories=cats, ordered=True)
    files.append(
        _write(
            out,
            desc,
            "stats",
            pa.Table.from_pandas(
                stats[[f.name for f in rel.stats_schema]], schema=rel.stats_schema, preserve_index=False
            ),
        )
    )

    nt = rel.nt.filter(pc.invert(pc.is_in(rel.nt.column("body"), pa.array(sorted(rel.nt_drop), pa.int64()))))
    cell_type = [rel.nt_renames.get(t, t) for t in nt.column("cell_type").to_pylist()]
    files.append(_write(out, desc, "neurotransmitters", _set(nt, "cell_type", cell_type)))
    return files


__all__ = ["plant_edits", "EDITS_FILE"]
