"""What a store's layout fixes, shared by the build steps and the Meta record: the format version
(a store of another version is rebuilt), neuPrint's thresholds and the property names."""

from __future__ import annotations

from flatprint.release import tables as T

# 2: ConnectsTo roiInfo `pre` counts distinct T-bars at grouping ROIs too; 3: synapses without point_id;
# 4: neuron-only summary tables (ingest/summaries.py); partners holds only both ends' ids and bodies
#    (locations, confidences and ROI labels are in synapses)
STORE_FORMAT = 4
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


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)
