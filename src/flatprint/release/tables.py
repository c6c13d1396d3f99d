"""The Male CNS flat-connectome tables: Arrow schemas and the types ingest accepts.

The building blocks of every release's schemas; which file names and ROI sets a release has is data in
:mod:`flatprint.release.registry`. The synthetic release writes exactly these schemas and ingest
validates against them. Decisions on what the public sources leave open are in docs/schemas.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

NT_NAMES = ("acetylcholine", "dopamine", "gaba", "glutamate", "histamine", "octopamine", "serotonin")
NT_PROB_COLUMNS = tuple(f"nt_{nt}_prob" for nt in NT_NAMES)
UNSPECIFIED = "<unspecified>"

# DVID fine statuses, in their (ordered) category order, and the simplified neuPrint status of each.
STATUS_LABELS = (
    "Unimportant",
    "Glia",
    "Hard to trace",
    "Orphan-artifact",
    "Orphan",
    "Orphan hotknife",
    "0.5assign",
    "Leaves",
    "Prelim Roughly traced",
    "Anchor",
    "Cleaved Anchor",
    "Sensory Anchor",
    "Cervical Anchor",
    "Soma Anchor",
    "Primary Anchor",
    "Partially traced",
    "Traced in ROI",
    "Traced",
    "Finalized",
)
STATUS_OF_LABEL = {
    "Unimportant": "Unimportant",
    "Glia": "Glia",
    "Hard to trace": "Orphan",
    "Orphan-artifact": "Orphan",
    "Orphan": "Orphan",
    "Orphan hotknife": "Orphan",
    "0.5assign": "Assign",
    "Leaves": "Orphan",
    "Prelim Roughly traced": "Traced",
    "Anchor": "Anchor",
    "Cleaved Anchor": "Anchor",
    "Sensory Anchor": "Anchor",
    "Cervical Anchor": "Anchor",
    "Soma Anchor": "Anchor",
    "Primary Anchor": "Anchor",
    "Partially traced": "Traced",
    "Traced in ROI": "Traced",
    "Traced": "Traced",
    "Finalized": "Traced",
}

KIND_VALUES = ("PreSyn", "PostSyn")
COMPARTMENTS = ("axon", "dendrite", "linker", "cell-body-fiber", "unknown")


def dictionary(index: pa.DataType | None = None, ordered: bool = False) -> pa.DataType:
    return pa.dictionary(index or pa.int8(), pa.string(), ordered=ordered)


# body-annotations: 36 columns in the release's order (schemas.md section 7).
ANNOTATION_STRING_COLUMNS = (
    "flywireType",
    "instance",
    "somaSide",
    "superclass",
    "type",
    "vfbId",
    "hemibrainType",
    "itoleeHl",
    "supertype",
    "birthtime",
    "mancType",
    "subclass",
    "synonyms",
    "class",
    "rootSide",
    "somaNeuromere",
    "trumanHl",
    "dimorphism",
    "matchingNotes",
    "entryNerve",
    "serialMotif",
    "fruDsx",
    "exitNerve",
    "receptorType",
    "status",
)
ANNOTATIONS = pa.schema(
    [
        ("assignedOlHex1", pa.float64()),
        ("assignedOlHex2", pa.float64()),
        ("bodyId", pa.int64()),
        ("flywireType", pa.string()),
        ("group", pa.float64()),
        ("instance", pa.string()),
        ("somaSide", pa.string()),
        ("statusLabel", dictionary(pa.int8(), ordered=True)),
        ("superclass", pa.string()),
        ("type", pa.string()),
        ("vfbId", pa.string()),
        ("hemibrainType", pa.string()),
        ("itoleeHl", pa.string()),
        ("supertype", pa.string()),
        ("birthtime", pa.string()),
        ("mancBodyid", pa.float64()),
        ("mancGroup", pa.float64()),
        ("mancType", pa.string()),
        ("subclass", pa.string()),
        ("synonyms", pa.string()),
        ("class", pa.string()),
        ("rootSide", pa.string()),
        ("somaNeuromere", pa.string()),
        ("trumanHl", pa.string()),
        ("dimorphism", pa.string()),
        ("matchingNotes", pa.string()),
        ("entryNerve", pa.string()),
        ("mancSerial", pa.float64()),
        ("mcnsSerial", pa.float64()),
        ("serialMotif", pa.string()),
        ("fruDsx", pa.string()),
        ("exitNerve", pa.string()),
        ("receptorType", pa.string()),
        ("somaLocation", pa.list_(pa.int64())),
        ("tosomaLocation", pa.list_(pa.int64())),
        ("status", pa.string()),
    ]
)

BODY_NEUROTRANSMITTERS = pa.schema(
    [
        ("body", pa.int64()),
        ("cell_type", pa.string()),
        ("total_nt_predictions", pa.int32()),
        ("predicted_nt_confidence", pa.float64()),
        ("predicted_nt", pa.string()),
        ("ground_truth", pa.string()),
        ("celltype_total_nt_predictions", pa.int32()),
        ("celltype_predicted_nt", pa.string()),
        ("celltype_predicted_nt_confidence", pa.float64()),
        ("consensus_nt", pa.string()),
    ]
)

BODY_STATS = pa.schema(
    [
        ("body", pa.int64()),
        ("pre", pa.int32()),
        ("post", pa.int32()),
        ("status_fine", dictionary(pa.int8(), ordered=True)),
        ("superclass", pa.string()),
        ("class", pa.string()),
        ("type", pa.string()),
        ("instance", pa.string()),
        ("downstream", pa.int64()),
        ("synweight", pa.int64()),
        ("rank", pa.int64()),
    ]
)

CONNECTOME_WEIGHTS = pa.schema(
    [
        ("body_pre", pa.int64()),
        ("body_post", pa.int64()),
        ("weight", pa.int64()),
    ]
)

SYN_PARTNERS = pa.schema(
    [
        ("x_pre", pa.int32()),
        ("y_pre", pa.int32()),
        ("z_pre", pa.int32()),
        ("body_pre", pa.int64()),
        ("conf_pre", pa.float32()),
        ("x_post", pa.int32()),
        ("y_post", pa.int32()),
        ("z_post", pa.int32()),
        ("body_post", pa.int64()),
        ("conf_post", pa.float32()),
        ("primary_post", dictionary(pa.int16())),
    ]
)


def _index_type(name: str, index_types: dict[str, pa.DataType] | None) -> pa.DataType:
    if index_types and name in index_types:
        return index_types[name]
    return pa.int16() if name == "primary" else pa.int8()


def syn_points_schema(roi_sets: dict[str, pa.DataType], index_types: dict[str, pa.DataType] | None = None) -> pa.Schema:
    """syn-points: base columns, one (name, label) pair per ROI set, then the point_id index column.

    ``roi_sets``: set name -> type of its ``_label`` column; ``index_types``: set name -> dictionary
    index type (default int16 for ``primary``, int8 otherwise)."""
    fields = [
        ("x", pa.int32()),
        ("y", pa.int32()),
        ("z", pa.int32()),
        ("kind", dictionary(pa.int8())),
        ("conf", pa.float32()),
        ("sv", pa.int64()),
        ("body", pa.int64()),
        ("compartment", dictionary(pa.int8())),
    ]
    for name, label_type in roi_sets.items():
        fields += [(name, dictionary(_index_type(name, index_types))), (f"{name}_label", label_type)]
    fields.append(("point_id", pa.uint64()))
    return pa.schema(fields)


def tbar_neurotransmitters_schema(roi_sets: list[str], index_types: dict[str, pa.DataType] | None = None) -> pa.Schema:
    fields = [
        ("point_id", pa.uint64()),
        ("x", pa.int32()),
        ("y", pa.int32()),
        ("z", pa.int32()),
        ("conf", pa.float32()),
        ("sv", pa.int64()),
        ("body", pa.int64()),
    ]
    fields += [(name, dictionary(_index_type(name, index_types))) for name in roi_sets]
    fields += [(col, pa.float32()) for col in NT_PROB_COLUMNS]
    fields.append(("split", dictionary(pa.int8())))
    return pa.schema(fields)


@dataclass(frozen=True)
class TableSpec:
    """One flat-connectome file: its short key (used on the CLI), file name and required columns."""

    key: str
    filename: str
    # column -> accepted Arrow types (the first is what the synthetic release writes)
    columns: dict[str, tuple[pa.DataType, ...]] = field(default_factory=dict)


def accepted_types(schema: pa.Schema, extra: dict[str, tuple[pa.DataType, ...]] | None = None):
    """Required columns of a schema, each accepting its own type plus plausible alternatives."""
    extra = extra or {}
    accepted = {}
    for f in schema:
        alts = [f.type]
        if pa.types.is_string(f.type):
            alts += [
                pa.large_string(),
                pa.string_view(),
                dictionary(pa.int8()),
                dictionary(pa.int16()),
                dictionary(pa.int32()),
            ]
        if pa.types.is_dictionary(f.type):
            alts += [pa.string(), pa.large_string()] + [
                pa.dictionary(i, v, ordered=o)
                for i in (pa.int8(), pa.int16(), pa.int32())
                for v in (pa.string(), pa.large_string())
                for o in (False, True)
            ]
        if pa.types.is_integer(f.type):
            alts += [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()]
        if pa.types.is_floating(f.type):
            alts += [pa.float32(), pa.float64()]
        if pa.types.is_list(f.type):
            alts += [pa.large_list(pa.int64()), pa.list_(pa.int32()), pa.list_(pa.float64())]
        accepted[f.name] = tuple(dict.fromkeys(alts + list(extra.get(f.name, ()))))
    return accepted


# Columns that the real files may lack without harm (data-driven annotation fields, optional ROI sets).
OPTIONAL_COLUMNS: dict[str, set[str]] = {
    "annotations": {f.name for f in ANNOTATIONS} - {"bodyId", "type", "instance", "status"},
    "syn-points": {"sv", "compartment"},
    "tbar-nt": {"sv", "split"},
    "neurotransmitters": {"ground_truth"},
}


def __getattr__(name: str):
    # TABLES: the default release's table specs, for callers that predate the registry (benchmarks).
    if name == "TABLES":
        from flatprint.release.registry import DEFAULT_KEY, describe  # noqa: PLC0415 - release.registry imports this module

        return describe(DEFAULT_KEY).table_specs()
    raise AttributeError(name)
