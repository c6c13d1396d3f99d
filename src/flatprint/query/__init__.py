"""flatprint.query: neuprint-python's query API over a local store."""

from flatprint.errors import NoMatchWarning
from flatprint.query.client import Client, clear_default_client, default_client, set_default_client
from flatprint.query.connectivity import (
    connection_matrix,
    fetch_adjacencies,
    fetch_common_connectivity,
    fetch_paths,
    fetch_reach,
    fetch_shortest_paths,
    fetch_simple_connections,
    fetch_traced_adjacencies,
)
from flatprint.query.criteria import IsNull, NeuronCriteria, NotNull, SynapseCriteria
from flatprint.query.general import fetch_custom, fetch_meta
from flatprint.query.indirect import fetch_indirect
from flatprint.query.neurons import fetch_custom_neurons, fetch_neurons
from flatprint.query.recon import fetch_output_completeness
from flatprint.query.results import to_arrow, to_polars
from flatprint.query.rois import fetch_all_rois, fetch_primary_rois, fetch_roi_hierarchy
from flatprint.query.synapses import fetch_mean_synapses, fetch_synapse_connections, fetch_synapses

NC = NeuronCriteria
SC = SynapseCriteria

__all__ = [
    "Client",
    "NoMatchWarning",
    "NeuronCriteria",
    "SynapseCriteria",
    "NC",
    "SC",
    "IsNull",
    "NotNull",
    "default_client",
    "set_default_client",
    "clear_default_client",
    "fetch_custom",
    "fetch_meta",
    "fetch_neurons",
    "fetch_custom_neurons",
    "fetch_all_rois",
    "fetch_primary_rois",
    "fetch_roi_hierarchy",
    "to_arrow",
    "to_polars",
    "fetch_adjacencies",
    "fetch_traced_adjacencies",
    "fetch_simple_connections",
    "fetch_common_connectivity",
    "fetch_shortest_paths",
    "fetch_paths",
    "connection_matrix",
    "fetch_reach",
    "fetch_indirect",
    "fetch_synapses",
    "fetch_mean_synapses",
    "fetch_synapse_connections",
    "fetch_output_completeness",
]
