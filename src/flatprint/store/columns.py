"""The one map between neuPrint's property names and the store's columns (docs/store.md).

A :Segment / :Neuron property is the ``segments`` column of the same name (ingest camel-cases them),
apart from the store's own :data:`HIDDEN_SEGMENT_COLUMNS`. Relationships and synapses use shorter
column names; the Cypher engine, the library, the exporters and the explorer translate through the
maps here rather than spelling the pairs out again.
"""

from __future__ import annotations

#: :ConnectsTo property -> column of ``connections`` / ``connections_by_post``.
CONNECTS_TO_COLUMNS = {"weight": "weight", "weightHP": "weight_hp"}

#: :Synapse property -> column of ``synapses`` (``location`` is the point of :data:`SYNAPSE_LOCATION`).
SYNAPSE_COLUMNS = {"type": "kind", "confidence": "conf"}
SYNAPSE_LOCATION = ("x", "y", "z")

#: ``segments`` columns that are not neuPrint properties (``is_neuron`` is the :Neuron label).
HIDDEN_SEGMENT_COLUMNS = ("is_neuron",)

#: ``segments`` columns holding a neuPrint Point (an [x, y, z] list in the store).
POINT_COLUMNS = ("somaLocation", "tosomaLocation", "rootLocation")

#: The columns of one edge of the connection graph, in the order path searches return them.
EDGE_COLUMNS = ("body_pre", "body_post", CONNECTS_TO_COLUMNS["weight"], CONNECTS_TO_COLUMNS["weightHP"])
