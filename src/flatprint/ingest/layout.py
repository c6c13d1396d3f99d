"""What a store's layout fixes, shared by the build steps and the Meta record: the format version
(a store of another version is rebuilt), neuPrint's thresholds and the property names."""

from __future__ import annotations

from flatprint.release import tables as T
from flatprint.store.sql import quote_ident

# 2: ConnectsTo roiInfo `pre` counts distinct T-bars at grouping ROIs too; 3: synapses without point_id;
# 4: neuron-only summary tables (ingest/summaries.py); partners holds only both ends' ids and bodies
#    (locations, confidences and ROI labels are in synapses); 5: roiInfo stored with ZSTD, segment_rois'
#    and neuron_rois' upstream and synweight computed on read (virtual columns)
STORE_FORMAT = 5
POST_HP_THRESHOLD = 0.7  # neuPrint's postHPThreshold for male-cns (weightHP)
PRE_HP_THRESHOLD = 0.0
NEURON_SYNWEIGHT_MIN = 100
NEURON_PROPERTY_NULL_CHECK = (
    "rootLocation",
    "somaLocation",
    "class",
    "type",
    "instance",
    "group",
    "somaSide",
    "synonyms",
)
NT_PROPERTY = {c: "nt" + c[3:-5].capitalize() + "Prob" for c in T.NT_PROB_COLUMNS}  # nt_gaba_prob -> ntGabaProb


# Per-body per-ROI counts (segment_rois, neuron_rois): upstream and synweight are virtual columns,
# computed from the row on read and not stored (ingest writes upstream = post, synweight =
# downstream + post; 3.3 of segment_rois' 16.8 MB at scale 0.01). Inserts list the first five.
ROI_COUNTS_COLUMNS = """(bodyId BIGINT, roi VARCHAR, pre BIGINT, post BIGINT, downstream BIGINT,
    upstream BIGINT GENERATED ALWAYS AS (post) VIRTUAL,
    synweight BIGINT GENERATED ALWAYS AS (downstream + post) VIRTUAL)"""
ROI_COUNTS_STORED = "bodyId, roi, pre, post, downstream"
# Columns stored with ZSTD instead of DuckDB's default choice: roiInfo's JSON text repeats its keys
# in every body, which ZSTD's window shares and FSST's per-string symbols do not (scale 0.01:
# 26.1 -> 13 MB; a full scan ~1.7x the CPU). Short strings (ROI names, kind) are smaller as
# dictionaries, so this is per column.
ZSTD_COLUMNS = frozenset({"roiInfo"})


def create_table_like(con, name: str, query: str) -> None:
    """Create the empty table ``name`` with the columns and types of ``query``'s result, the
    ZSTD_COLUMNS among them stored with ZSTD (CREATE TABLE AS cannot name a compression)."""
    columns = con.execute(f"DESCRIBE {query}").fetchall()
    ddl = ", ".join(
        f"{quote_ident(c)} {t}" + (" USING COMPRESSION zstd" if c in ZSTD_COLUMNS else "") for c, t, *_ in columns
    )
    con.execute(f"CREATE TABLE {name} ({ddl})")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)
