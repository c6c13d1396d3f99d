"""Export a store as neuprint-inputs: CSV files in neo4j-admin import's format, plus ``import.sh``.

The layout follows what flyem-snapshot writes for neuPrint (docs/export.md has the full list):

* nodes: ``Neuprint_Meta_<ds>.csv`` (:Meta), ``Neuprint_Neurons_<ds>.csv`` (:Segment, and :Neuron where
  the store's ``is_neuron`` says so, with every neuPrint property and one ``<roi>:boolean`` flag column
  per ROI), ``Neuprint_SynapseSet_<ds>.csv`` (one set per body pair and side, ids
  ``<pre>_<post>_pre`` / ``<pre>_<post>_post``), ``Neuprint_Synapses_<ds>_NNNN.csv`` (:Synapse, one file
  per ROI combination so each file's ROI flag columns are all ``true``);
* relationships: ``Neuprint_Neuron_Connections_<ds>.csv`` (:ConnectsTo with weight, weightHP,
  roiInfo), ``Neuprint_SynapseSet_to_SynapseSet_<ds>.csv`` (:ConnectsTo),
  ``Neuprint_Neuron_to_SynapseSet_<ds>.csv`` and ``Neuprint_SynapseSet_to_Synapses_<ds>.csv``
  (:Contains), ``Neuprint_Synapse_Connections_<ds>.csv`` (:SynapsesTo).

ID spaces: ``Body-ID`` (bodyId), ``SynSet-ID`` (set names), ``Syn-ID`` (the store's stable synapse id).
Every large file is written by DuckDB ``COPY (SELECT ...) TO ... (FORMAT csv)``, streaming from the
store; nothing is loaded into pandas. The whole directory is written beside OUT and renamed at the end.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from pathlib import Path

from flatprint.errors import StoreError
from flatprint.export._common import column_types, store_session
from flatprint.io.publish import atomic_output
from flatprint.store.columns import CONNECTS_TO_COLUMNS, POINT_COLUMNS, SYNAPSE_COLUMNS
from flatprint.store.sql import quote_ident, sql_literal

ID_BODY = "Body-ID"
ID_SYNSET = "SynSet-ID"
ID_SYN = "Syn-ID"
POINT_TYPE = "point{crs:cartesian-3D}"
ARRAY_DELIMITER = ";"
_INT_TYPES = {"INTEGER", "SMALLINT", "TINYINT", "USMALLINT", "UTINYINT"}
_LONG_TYPES = {"BIGINT", "HUGEINT", "UBIGINT", "UINTEGER"}


def _point_sql(expr: str) -> str:
    """A neo4j CSV cartesian-3D point literal, ``{x:1, y:2, z:3}``, or NULL."""
    return (
        f"CASE WHEN {expr} IS NULL OR len({expr}) < 3 THEN NULL ELSE "
        f"'{{x:' || {expr}[1] || ', y:' || {expr}[2] || ', z:' || {expr}[3] || '}}' END"
    )


def _check_name(name: str, what: str) -> str:
    # neo4j-admin splits a header field at ':' (name:type); a ':' or a newline in a name breaks that.
    if ":" in name or "\n" in name or '"' in name:
        raise StoreError(f"{what} {name!r} cannot be a neo4j-admin header name (contains ':', '\"' or a newline)")
    return name


def _segment_columns(con) -> list[tuple[str, str]]:
    """(SELECT expression, header field) for each neuPrint property of a Segment node."""
    types = column_types(con, "segments")
    out: list[tuple[str, str]] = [(f"seg.{quote_ident('bodyId')}", f":ID({ID_BODY})")]
    integral = {}
    doubles = [c for c, t in types.items() if t == "DOUBLE"]
    if doubles:  # DOUBLE columns holding only whole numbers (group, mancBodyid, ...) are neuPrint ints
        row = con.execute(
            "SELECT "
            + ", ".join(f"coalesce(bool_and({quote_ident(c)} = round({quote_ident(c)})), TRUE)" for c in doubles)
            + " FROM s.segments"
        ).fetchone()
        integral = dict(zip(doubles, row))
    for col, dtype in types.items():
        if col == "is_neuron":
            continue
        _check_name(col, "property")
        ref = f"seg.{quote_ident(col)}"
        t = dtype.upper()
        if col in POINT_COLUMNS or (t.endswith("[]") and t[:-2] in _LONG_TYPES | _INT_TYPES):
            out.append((_point_sql(ref), f"{col}:{POINT_TYPE}"))
        elif t.endswith("[]"):
            out.append((f"array_to_string({ref}, {sql_literal(ARRAY_DELIMITER)})", f"{col}:string[]"))
        elif col == "bodyId" or t in _LONG_TYPES:
            out.append((ref, f"{col}:long"))
        elif t in _INT_TYPES:
            out.append((ref, f"{col}:int"))
        elif t == "DOUBLE":
            out.append((f"CAST({ref} AS BIGINT)", f"{col}:long") if integral.get(col) else (ref, f"{col}:double"))
        elif t == "FLOAT":
            out.append((ref, f"{col}:float"))
        elif t == "BOOLEAN":
            out.append((ref, f"{col}:boolean"))
        else:
            out.append((f"CAST({ref} AS VARCHAR)", f"{col}:string"))
    return out


def _meta_row(meta: dict, neuron_properties: dict) -> tuple[list[str], list[str]]:
    """Header fields and values of the single Meta node (list properties joined with ';')."""
    header, values = [], []
    meta = dict(meta)
    meta["neuronProperties"] = json.dumps(neuron_properties)
    for key, value in meta.items():
        _check_name(key, "Meta property")
        if isinstance(value, bool):
            header.append(f"{key}:boolean")
            values.append("true" if value else "false")
        elif isinstance(value, int):
            header.append(f"{key}:long")
            values.append(str(value))
        elif isinstance(value, float):
            header.append(f"{key}:double")
            values.append(repr(value))
        elif isinstance(value, list):
            if value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                header.append(f"{key}:float[]")
                values.append(ARRAY_DELIMITER.join(repr(float(v)) for v in value))
            else:
                header.append(f"{key}:string[]")
                values.append(ARRAY_DELIMITER.join(str(v) for v in value))
        elif isinstance(value, dict):
            header.append(f"{key}:string")
            values.append(json.dumps(value))
        elif value is None:
            header.append(f"{key}:string")
            values.append("")
        else:
            header.append(f"{key}:string")
            values.append(str(value))
    header.append(":LABEL")
    values.append("Meta")
    return header, values


def _write_csv_row(path: Path, header: list[str], values: list[str]) -> None:

    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerow(values)


def _copy(con, pairs: list[tuple[str, str]], rest_sql: str, path: Path, with_sql: str = "") -> int:
    """Stream ``[WITH ...] SELECT <pairs> <rest_sql>`` into the CSV file ``path``.

    The header row is written here, not by DuckDB: DuckDB treats column names case-insensitively and
    would rename one of two ROIs that differ only in case (male CNS has both ``AL(L)`` and ``aL(L)``).
    Format: ',' delimiter, '"' quotes doubled inside values, NULL written as an empty field (= no
    property for neo4j-admin).
    """

    body = path.with_name(path.name + ".body")
    select = ", ".join(f"{expr} AS c{i}" for i, (expr, _) in enumerate(pairs))
    row = con.execute(
        f"COPY ({with_sql} SELECT {select} {rest_sql}) TO {sql_literal(str(body))} "
        f"(FORMAT csv, HEADER false, DELIMITER ',', QUOTE '\"', ESCAPE '\"', NULLSTR '')"
    ).fetchone()
    with open(path, "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerow([field for _, field in pairs])
    with open(path, "ab") as dst, open(body, "rb") as src:
        shutil.copyfileobj(src, dst, 16 << 20)
    body.unlink()
    return int(row[0]) if row else 0


def export_neo4j(
    store_path: str | os.PathLike,
    out: str | os.PathLike,
    force: bool = False,
    memory_limit: str = "2GB",
    threads: int | None = None,
    on_file=None,
) -> dict:
    """Write the neuprint-inputs CSV set of the store at ``store_path`` into the directory ``out``.

    Returns a summary: ``{"out", "seconds", "files": [{"file", "kind", "label", "rows", "bytes"}],
    "counts": {...}}``. ``on_file(name, rows)`` is called after each file (for progress output).
    Atomic: ``out`` appears only when complete; ``force`` replaces an existing ``out``.
    """
    started = time.perf_counter()
    out = Path(out)
    files: list[dict] = []
    with (
        atomic_output(out, "neo4j", force=force) as work,
        store_session(store_path, work / ".spill", memory_limit, threads) as (con, meta),
    ):
        ds = str(meta.get("dataset", "dataset"))
        _check_name(ds, "dataset")

        def record(name: str, kind: str, label: str, rows: int) -> None:
            files.append(
                {"file": name, "kind": kind, "label": label, "rows": rows, "bytes": (work / name).stat().st_size}
            )
            if on_file:
                on_file(name, rows)

        # ---- Segment / Neuron nodes with ROI flags
        rois = [r[0] for r in con.execute("SELECT roi FROM s.rois ORDER BY roi").fetchall()]
        for r in rois:
            _check_name(r, "ROI")
        seg_cols = _segment_columns(con)
        flags = [(f"CASE WHEN list_contains(br.rois, {sql_literal(r)}) THEN TRUE END", f"{r}:boolean") for r in rois]
        label = (
            f"CASE WHEN seg.is_neuron THEN {sql_literal(f'Segment;{ds}_Segment;Neuron;{ds}_Neuron')} "
            f"ELSE {sql_literal(f'Segment;{ds}_Segment')} END"
        )
        name = f"Neuprint_Neurons_{ds}.csv"
        n = _copy(
            con,
            seg_cols + flags + [(label, ":LABEL")],
            "FROM s.segments seg LEFT JOIN br ON br.bodyId = seg.bodyId ORDER BY seg.bodyId",
            work / name,
            with_sql="WITH br AS (SELECT bodyId, list(roi) AS rois FROM s.segment_rois GROUP BY bodyId)",
        )
        record(name, "nodes", "Segment/Neuron", n)
        neuron_properties = {
            f.split(":")[0]: f.split(":", 1)[1].split("{")[0] for _, f in seg_cols if not f.startswith(":")
        }

        # ---- Meta node
        name = f"Neuprint_Meta_{ds}.csv"
        header, values = _meta_row(meta, neuron_properties)
        _write_csv_row(work / name, header, values)
        record(name, "nodes", "Meta", 1)

        # ---- Neuron -[:ConnectsTo]-> Neuron with weight, weightHP, roiInfo
        name = f"Neuprint_Neuron_Connections_{ds}.csv"
        n = _copy(
            con,
            [
                ("c.body_pre", f":START_ID({ID_BODY})"),
                *((f"CAST(c.{column} AS INTEGER)", f"{prop}:int") for prop, column in CONNECTS_TO_COLUMNS.items()),
                ("coalesce(ri.roiInfo, '{}')", "roiInfo:string"),
                ("c.body_post", f":END_ID({ID_BODY})"),
                ("'ConnectsTo'", ":TYPE"),
            ],
            """FROM s.connections c LEFT JOIN ri ON ri.body_pre = c.body_pre AND ri.body_post = c.body_post
                     ORDER BY c.body_pre, c.body_post""",
            work / name,
            with_sql="""WITH ri AS (
                      SELECT body_pre, body_post,
                             CAST(to_json(map_from_entries(list(
                                 struct_pack(k := roi, v := struct_pack(pre := pre, post := weight))
                                 ORDER BY roi))) AS VARCHAR) AS roiInfo
                      FROM s.connection_rois GROUP BY body_pre, body_post)""",
        )
        record(name, "relationships", "ConnectsTo", n)

        # ---- SynapseSets: one per (body pair, side)
        set_id = "CAST(body_pre AS VARCHAR) || '_' || CAST(body_post AS VARCHAR) || '_{side}'"
        sides = f"""FROM (
              SELECT body_pre AS body, {set_id.format(side="pre")} AS id, 'pre' AS side, body_pre, body_post, 0 AS o
              FROM s.connections
              UNION ALL
              SELECT body_post, {set_id.format(side="post")}, 'post', body_pre, body_post, 1 FROM s.connections)
            ORDER BY body_pre, body_post, o"""
        name = f"Neuprint_SynapseSet_{ds}.csv"
        n = _copy(
            con,
            [
                ("id", f":ID({ID_SYNSET})"),
                ("side", "type:string"),
                (sql_literal(f"SynapseSet;{ds}_SynapseSet"), ":LABEL"),
            ],
            sides,
            work / name,
        )
        record(name, "nodes", "SynapseSet", n)

        name = f"Neuprint_Neuron_to_SynapseSet_{ds}.csv"
        n = _copy(
            con,
            [("body", f":START_ID({ID_BODY})"), ("id", f":END_ID({ID_SYNSET})"), ("'Contains'", ":TYPE")],
            sides,
            work / name,
        )
        record(name, "relationships", "Contains", n)

        name = f"Neuprint_SynapseSet_to_SynapseSet_{ds}.csv"
        n = _copy(
            con,
            [
                (set_id.format(side="pre"), f":START_ID({ID_SYNSET})"),
                (set_id.format(side="post"), f":END_ID({ID_SYNSET})"),
                ("'ConnectsTo'", ":TYPE"),
            ],
            "FROM s.connections ORDER BY body_pre, body_post",
            work / name,
        )
        record(name, "relationships", "ConnectsTo", n)

        name = f"Neuprint_SynapseSet_to_Synapses_{ds}.csv"
        n = _copy(
            con,
            [("id", f":START_ID({ID_SYNSET})"), ("syn", f":END_ID({ID_SYN})"), ("'Contains'", ":TYPE")],
            f"""FROM (
                      SELECT DISTINCT {set_id.format(side="pre")} AS id, pre_id AS syn FROM s.partners
                      UNION ALL
                      SELECT DISTINCT {set_id.format(side="post")}, post_id FROM s.partners)
                    ORDER BY id, syn""",
            work / name,
        )
        record(name, "relationships", "Contains", n)

        # ---- Synapse nodes: one file per ROI combination (primary label, major label), so each file's
        # ROI flag columns are constant ``true`` (as flyem-snapshot writes them)
        syn_types = column_types(con, "synapses")
        nt_cols = [c for c in syn_types if c.startswith("nt") and c.endswith("Prob")]
        roi_of: dict[tuple[str, int], list[str]] = {}
        for rset, lab, roi in con.execute("SELECT roi_set, label, roi FROM s.roi_map ORDER BY roi").fetchall():
            roi_of.setdefault((rset, int(lab)), []).append(roi)
        combos = con.execute(
            "SELECT primary_label, major_label, count(*) FROM s.synapses "
            "GROUP BY primary_label, major_label ORDER BY primary_label, major_label"
        ).fetchall()
        syn_label = sql_literal(f"Synapse;{ds}_Synapse")
        base = [
            ("syn_id", f":ID({ID_SYN})"),
            (SYNAPSE_COLUMNS["type"], "type:string"),
            (SYNAPSE_COLUMNS["confidence"], "confidence:float"),
            (_point_sql("[x, y, z]"), f"location:{POINT_TYPE}"),
        ]
        base += [(quote_ident(c), f"{c}:float") for c in nt_cols]
        if "compartment" in syn_types:
            base.append(("compartment", "compartment:string"))
        for i, (pl, ml, _) in enumerate(combos):
            names = sorted(set(roi_of.get(("primary", int(pl)), []) + roi_of.get(("major", int(ml)), [])))
            cols = base + [("TRUE", f"{r}:boolean") for r in names] + [(syn_label, ":LABEL")]
            name = f"Neuprint_Synapses_{ds}_{i:04d}.csv"
            n = _copy(
                con,
                cols,
                f"""FROM s.synapses WHERE primary_label = {int(pl)} AND major_label = {int(ml)}
                                     ORDER BY syn_id""",
                work / name,
            )
            record(name, "nodes", "Synapse", n)

        name = f"Neuprint_Synapse_Connections_{ds}.csv"
        n = _copy(
            con,
            [("pre_id", f":START_ID({ID_SYN})"), ("post_id", f":END_ID({ID_SYN})"), ("'SynapsesTo'", ":TYPE")],
            "FROM s.partners ORDER BY pre_id, post_id",
            work / name,
        )
        record(name, "relationships", "SynapsesTo", n)

        # ---- import script, index script, manifest
        (work / "import.sh").write_text(_import_script(files))
        os.chmod(work / "import.sh", 0o755)
        (work / "create-indexes.cypher").write_text(_index_script(ds))
        counts = {
            "segments": files[0]["rows"],
            "neurons": con.execute("SELECT count(*) FROM s.segments WHERE is_neuron").fetchone()[0],
            "connections": next(f["rows"] for f in files if f["file"].startswith("Neuprint_Neuron_Connections")),
            "synapses": sum(f["rows"] for f in files if f["label"] == "Synapse"),
            "synapse_connections": files[-1]["rows"],
        }
        manifest = {
            "format": "neo4j-admin import CSV (neuprint-inputs)",
            "dataset": f"{ds}:{meta.get('tag')}",
            "arrayDelimiter": ARRAY_DELIMITER,
            "idSpaces": [ID_BODY, ID_SYNSET, ID_SYN],
            "files": files,
            "counts": counts,
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return {"out": str(out), "seconds": time.perf_counter() - started, "files": files, "counts": counts}


def _import_script(files: list[dict]) -> str:
    args = []
    for f in files:
        flag = "--nodes" if f["kind"] == "nodes" else "--relationships"
        args.append(f"  {flag}={f['file']}")
    lines = "\n".join(args)
    return f"""#!/usr/bin/env bash
# Build a Neo4j database for neuPrint from the CSV files in this directory (written by
# `flatprint export neo4j`). neo4j-admin builds the store offline: the server must be stopped and the
# target database must not exist (or use the overwrite flag below). Labels and relationship types are
# in each file's :LABEL / :TYPE column; list properties use '{ARRAY_DELIMITER}'.
#
#   ./import.sh [DATABASE]          # Neo4j 5.x: neo4j-admin database import full
#   NEO4J_VERSION=4 ./import.sh     # Neo4j 4.4: neo4j-admin import
#
# Afterwards start Neo4j and run create-indexes.cypher with cypher-shell.
set -euo pipefail
cd "$(dirname "$0")"
DB="${{1:-neo4j}}"
NEO4J_ADMIN="${{NEO4J_ADMIN:-neo4j-admin}}"
FILES=(
{lines}
)
COMMON=(--delimiter=, --array-delimiter='{ARRAY_DELIMITER}' --quote='"' --multiline-fields=true --id-type=STRING)
if [ "${{NEO4J_VERSION:-5}}" = "4" ]; then
  "$NEO4J_ADMIN" import --database="$DB" --force=true "${{COMMON[@]}}" "${{FILES[@]}}"
else
  "$NEO4J_ADMIN" database import full --overwrite-destination=true "${{COMMON[@]}}" "${{FILES[@]}}" "$DB"
fi
"""


def _index_script(ds: str) -> str:
    stmts = [
        "CREATE INDEX meta_dataset IF NOT EXISTS FOR (n:Meta) ON (n.dataset);",
        "CREATE INDEX segment_bodyid IF NOT EXISTS FOR (n:Segment) ON (n.bodyId);",
        "CREATE INDEX neuron_bodyid IF NOT EXISTS FOR (n:Neuron) ON (n.bodyId);",
        "CREATE INDEX neuron_type IF NOT EXISTS FOR (n:Neuron) ON (n.type);",
        "CREATE INDEX neuron_instance IF NOT EXISTS FOR (n:Neuron) ON (n.instance);",
        f"CREATE INDEX ds_segment_bodyid IF NOT EXISTS FOR (n:`{ds}_Segment`) ON (n.bodyId);",
        f"CREATE INDEX ds_neuron_bodyid IF NOT EXISTS FOR (n:`{ds}_Neuron`) ON (n.bodyId);",
        "CREATE POINT INDEX synapse_location IF NOT EXISTS FOR (n:Synapse) ON (n.location);",
    ]
    return "// Indexes neuPrint's queries rely on (Neo4j 5 syntax). Run after import.sh.\n" + "\n".join(stmts) + "\n"
