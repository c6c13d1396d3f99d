"""The store's Meta record (neuPrint's :Meta node: dataset, properties and their neo4j types, totals,
provenance) and the checksum of the release it was built from."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import uuid

from flatprint import __version__
from flatprint.errors import ReleaseError
from flatprint.ingest.layout import (
    NT_PROPERTY,
    POST_HP_THRESHOLD,
    PRE_HP_THRESHOLD,
    STORE_FORMAT,
    camel,
)
from flatprint.ingest.validate import ReleaseFiles
from flatprint.store.sql import quote_ident


def source_checksum(files: ReleaseFiles) -> str:
    """Hash of the release manifest if present, else of file names, sizes and mtimes."""
    manifest = files.root / "manifest.json"
    h = hashlib.sha256()
    if manifest.exists():
        h.update(manifest.read_bytes())
    else:
        for _key, path in sorted(files.paths.items()):
            st = path.stat()
            h.update(f"{path.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()


def whole_numbers(con, table: str, column: str) -> bool:
    """True when every non-null value of a float column is a whole number that fits in int64."""
    c = quote_ident(column)
    bad, present = con.execute(
        f"SELECT count(*) FILTER ({c} <> floor({c}) OR abs({c}) >= 9.0e15 OR isnan({c})), count({c}) FROM {table}"
    ).fetchall()[0]
    return bad == 0 and present > 0


def column_types(con, table: str) -> dict[str, str]:
    return dict(
        con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ?", [table]).fetchall()
    )


def _neo4j_type(duck_type: str) -> str:
    t = duck_type.upper()
    if t.endswith("[]"):
        return "point" if "BIGINT" in t else "string[]"
    if t in ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UBIGINT", "HUGEINT"):
        return "long"
    if t in ("DOUBLE", "FLOAT", "DECIMAL"):
        return "float"
    if t == "BOOLEAN":
        return "boolean"
    return "string"


def build_meta(con, files: ReleaseFiles, tree, dataset, tag, ann_cols, nt_cols) -> dict:
    manifest_path = files.root / "manifest.json"
    synthetic = None
    if manifest_path.exists():
        try:
            synthetic = json.loads(manifest_path.read_text()).get("synthetic")
        except ValueError:
            raise ReleaseError("manifest.json: not valid JSON") from None
    rois = con.execute("SELECT roi, parent, is_primary FROM rois ORDER BY depth, roi").fetchall()
    totals = dict(
        (
            (r, (pre, post))
            for r, pre, post in con.execute("SELECT roi, sum(pre), sum(post) FROM segment_rois GROUP BY roi").fetchall()
        )
    )
    roi_info = {}
    for name, parent, _ in rois:
        pre, post = totals.get(name, (0, 0))
        entry = {"pre": int(pre or 0), "post": int(post or 0)}
        if parent:
            entry["parent"] = parent
        roi_info[name] = entry
    primary = [r for r, _, is_primary in rois if is_primary]
    types = column_types(con, "segments")
    properties = {}
    # 'size' (voxels) is a neuPrint property clients read (navis sets n_voxels from it); the flat
    # release has no sizes, so it is present and null.
    for col in [
        "bodyId",
        "pre",
        "post",
        "upstream",
        "downstream",
        "synweight",
        "roiInfo",
        "size",
        *ann_cols,
        *[camel(c) for c in nt_cols],
    ]:
        if col in types:
            properties[col] = _neo4j_type(types[col])
    total_pre, total_post = con.execute(
        "SELECT count(*) FILTER (kind = 'pre'), count(*) FILTER (kind = 'post') FROM synapses"
    ).fetchall()[0]
    description = (
        f"{files.release.title}, ingested by flatprint"
        if files.release
        else "Male CNS connectome, ingested by flatprint"
    )
    if synthetic:
        description = (
            f"SYNTHETIC seed={synthetic.get('seed')} scale={synthetic.get('scale')} -- "
            "made by flatprint synth in the release schemas, not real data"
        )
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    status_defs = {
        "Traced": "Neuron fully traced and proofread",
        "Anchor": "Large neuron fragment awaiting tracing",
        "Orphan": "Fragment not attached to a neuron",
        "Assign": "Awaiting assignment",
        "Glia": "Glial cell",
        "Unimportant": "Too small to matter",
    }
    meta = {
        "dataset": dataset,
        "tag": tag,
        "uuid": uuid.uuid4().hex,
        "hideDataSet": False,
        "description": description,
        "info": "https://www.janelia.org/project-team/flyem/male-cns-connectome",
        "logo": "",
        "voxelSize": [8.0, 8.0, 8.0],
        "voxelUnits": "nanometers",
        "postHighAccuracyThreshold": 0.5,
        "preHPThreshold": PRE_HP_THRESHOLD,
        "postHPThreshold": POST_HP_THRESHOLD,
        "totalPreCount": int(total_pre),
        "totalPostCount": int(total_post),
        "primaryRois": primary,
        "superLevelRois": primary,
        "nonHierarchicalROIs": [],
        "overviewRois": primary,
        "overviewOrder": primary,
        "roiInfo": json.dumps(roi_info),
        "roiHierarchy": json.dumps(tree),
        "neuronProperties": json.dumps(properties),
        "ntSynapseProperties": json.dumps({v: "float" for v in NT_PROPERTY.values()}),
        "statusDefinitions": json.dumps(status_defs),
        "neuroglancerInfo": json.dumps({}),
        "neuroglancerMeta": json.dumps([]),
        "meshHost": "",
        "lastDatabaseEdit": now,
        "latestMutationId": 0,
        "neuronColumns": json.dumps([{"id": c, "name": c} for c in ("bodyId", "type", "instance", "status")]),
        "neuronColumnsVisible": json.dumps([]),
    }
    # Volumes are too large to copy into the store (the real segmentation is terabytes): record where
    # the release keeps them, so the server can serve them as neuroglancer precomputed sources.
    volumes = {}
    for name, rel in (
        ("segmentation", "segmentation"),
        ("brain-rois", "rois/fullbrain-roi-v4"),
        ("vnc-rois", "rois/malecns-vnc-neuropil-roi-v0"),
    ):
        if (files.root / rel / "info").exists():
            volumes[name] = str((files.root / rel).resolve())
    internal = {
        "storeFormat": STORE_FORMAT,
        "flatprintVersion": __version__,
        "ingestedAt": now,
        "volumes": volumes,
        "sourceChecksum": source_checksum(files),
        "sourceRows": files.rows,
        "roiSets": files.roi_sets,
        "synthetic": synthetic,
    }
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value JSON)")
    con.executemany("INSERT INTO meta VALUES (?, ?)", [[k, json.dumps(v)] for k, v in meta.items()])
    con.execute("CREATE TABLE store_info (key VARCHAR PRIMARY KEY, value JSON)")
    con.executemany("INSERT INTO store_info VALUES (?, ?)", [[k, json.dumps(v)] for k, v in internal.items()])
    return {"meta": meta, "internal": internal}
