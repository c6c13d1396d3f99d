"""How the neuPrint graph maps onto the store's tables (docs/cypher.md has the full picture).

=================  =========================================================================
graph              store
=================  =========================================================================
``:Segment``       a row of ``segments`` (key ``bodyId``); ``:Neuron`` adds ``is_neuron`` and
                   reads ``neurons`` (the neuron rows) when the store has the neuron tables
``:SynapseSet``    virtual: one per body (key = the body); it Contains the body's synapses
``:Synapse``       a row of ``synapses`` (key ``syn_id`` = ``id(s)``)
``:Meta``          the ``meta`` table, one node (key 0)
``:ConnectsTo``    a row of ``connections`` / ``connections_by_post`` (body_pre -> body_post);
                   between SynapseSets too; between two :Neuron nodes ``neuron_connections``
                   / ``neuron_connections_by_post`` (and roiInfo ``neuron_connection_rois``)
``:SynapsesTo``    a row of ``partners`` (pre_id -> post_id)
``:Contains``      Segment -> SynapseSet -> Synapse, by body
mitochondria       ``:Element``/``:ElementSet``/``:CloseTo`` have no rows in this release
=================  =========================================================================

:class:`GraphModel` knows the columns and ROI names of one store (sqlgen renders a property of a
node or relationship as SQL over a table alias from them); :class:`GraphView` loads properties and whole
property maps for nodes that the SQL did not already fetch.
"""

from __future__ import annotations

import itertools
import threading

import orjson
import pyarrow as pa

from flatprint.cypher import sqlgen
from flatprint.cypher.kinds import CONNECTS, LABEL_KINDS, META, SEGMENT, SYNAPSE
from flatprint.cypher.values import NodeRef, Point, RelRef
from flatprint.store.columns import HIDDEN_SEGMENT_COLUMNS, POINT_COLUMNS

NEURON_TABLES = (
    "neurons",
    "neuron_connections",
    "neuron_connections_by_post",
    "neuron_connection_rois",
    "neuron_connection_rois_by_post",
)


class GraphModel:
    """The store's shape: segment and synapse columns, ROI names and ROI label sets."""

    def __init__(self, store):
        self.store = store
        cur = store.cursor()
        self.segment_types = self._types(cur, "segments")
        self.synapse_types = self._types(cur, "synapses")
        self.rois = sorted(r[0] for r in cur.execute(sqlgen.ROI_NAMES_SQL).fetchall())
        self.roi_set = set(self.rois)
        labels: dict[str, dict[str, list[int]]] = {}
        self.roi_names_of_label: dict[tuple[str, int], list[str]] = {}
        for roi_set, label, roi in cur.execute(sqlgen.ROI_MAP_SQL).fetchall():
            labels.setdefault(roi, {}).setdefault(roi_set, []).append(int(label))
            self.roi_names_of_label.setdefault((roi_set, int(label)), []).append(roi)
        self.roi_labels = labels
        self._roi_flags: dict[tuple[int, int], dict] = {}
        self.nt_columns = [c for c in self.synapse_types if c.startswith("nt") and c.endswith("Prob")]
        self.segment_properties = [c for c in self.segment_types if c not in HIDDEN_SEGMENT_COLUMNS]
        # the neuron-only copies of segments, connections and connection_rois (built at ingest): a
        # pattern between :Neuron nodes reads these (~1/30 of the rows) instead
        self.neuron_tables = all(store.has_table(t) for t in NEURON_TABLES)
        self.meta = dict(store.meta)
        prefix = f"{self.meta.get('dataset', '')}_"
        # neuPrint also labels nodes with the dataset name: `male-cns_Neuron`
        self.label_kinds = dict(LABEL_KINDS)
        for label, kind in LABEL_KINDS.items():
            self.label_kinds[prefix + label] = kind

    @staticmethod
    def _types(cur, table: str) -> dict[str, str]:
        return {name: dtype for name, dtype, *_ in cur.execute(sqlgen.describe_sql(table)).fetchall()}

    # ---- Python values from SQL results --------------------------------------------------------

    def segment_value(self, name: str, value):
        if name in POINT_COLUMNS and value is not None:
            return Point(value)
        return value

    def segment_map(self, row) -> dict:
        """A Segment's property map from its ``segments`` values in :attr:`segment_properties` order."""
        props = {}
        for name, value in zip(self.segment_properties, row):
            if value is not None:
                props[name] = self.segment_value(name, value)
        # The ROI flags (n.`AL(R)`) are the keys of roiInfo: the same set as segment_rois' rows
        # (ingest builds both from one aggregate), without a scan of that table.
        if isinstance(props.get("roiInfo"), str):
            for roi in orjson.loads(props["roiInfo"]):
                props[roi] = True
        return props

    def meta_value(self, name: str):
        return self.meta.get(name)

    def roi_flags(self, primary_label: int, major_label: int) -> dict:
        """``{roi: True}`` for every ROI containing a point with these labels (cached per label pair:
        a few hundred pairs cover every synapse)."""
        key = (primary_label, major_label)
        flags = self._roi_flags.get(key)
        if flags is None:
            flags = {
                roi: True
                for roi_set, label in (("primary", primary_label), ("major", major_label))
                for roi in self.roi_names_of_label.get((roi_set, label), [])
            }
            self._roi_flags[key] = flags
        return flags

    def synapse_maps(self, columns: dict) -> dict:
        """Property maps of many synapses from column lists of their ``synapses`` rows, keyed by syn_id.
        Column-wise because this is the hot path of fetch_synapses and fetch_synapse_connections."""
        nt_names = self.nt_columns
        nt_values = zip(*(columns[name] for name in nt_names)) if nt_names else itertools.repeat(())
        flags_of = self._roi_flags  # roi_flags' cache, read inline: this loop runs once per synapse
        maps = {}
        for syn_id, kind, conf, x, y, z, primary, major, nts in zip(
            columns["syn_id"],
            columns["kind"],
            columns["conf"],
            columns["x"],
            columns["y"],
            columns["z"],
            columns["primary_label"],
            columns["major_label"],
            nt_values,
        ):
            props = {"type": kind, "confidence": conf, "location": Point((x, y, z))}
            for name, value in zip(nt_names, nts):
                if value is not None:
                    props[name] = value
            flags = flags_of.get((primary, major))
            if flags is None:
                flags = self.roi_flags(primary or 0, major or 0)
            props.update(flags)
            maps[syn_id] = props
        return maps


_MODELS: dict[int, GraphModel] = {}
_MODELS_LOCK = threading.Lock()


def model_of(store) -> GraphModel:
    """The (cached) GraphModel of an open store."""
    with _MODELS_LOCK:
        model = _MODELS.get(id(store))
        if model is None or model.store is not store:
            model = _MODELS[id(store)] = GraphModel(store)
        return model


class GraphView:
    """Loads node and relationship properties on demand, in batches, through one cursor."""

    MAPS_PER_BATCH = 16384  # property maps built between two checks of the memory budget

    def __init__(self, model: GraphModel, cursor, run_sql, run_arrow, check_rows=None):
        self.model = model
        self.cursor = cursor
        self.run_sql = run_sql  # engine's SQL runner (applies the timeout)
        self.run_arrow = run_arrow  # the same, answering an Arrow table
        self.check_rows = check_rows  # check_rows(n): n more rows built (deadline and memory budget)
        self._neuron_flags: dict[int, bool] = {}  # bodyId -> is a :Neuron, for this query's nodes

    # -- single properties (fallback when the match did not fetch them)

    def is_neuron(self, node: NodeRef) -> bool:
        """Whether a Segment node is a :Neuron when its match did not fetch the flag (a path's nodes,
        whole property maps: neither holds it)."""
        flag = self._neuron_flags.get(node.id)
        if flag is None:
            rows = self.run_sql(sqlgen.is_neuron_sql(node.id))
            flag = self._neuron_flags[node.id] = bool(rows and rows[0][0])
        return flag

    def load_property(self, node: NodeRef, name: str):
        if node.kind == META:
            return self.model.meta_value(name)
        if node.kind in (SEGMENT, SYNAPSE):
            self.complete_nodes([node])
            return node.props.get(name)
        return None

    def load_rel_property(self, rel: RelRef, name: str):
        if rel.kind == CONNECTS:
            self.complete_rels([rel])
            return rel.props.get(name)
        return None

    # -- whole property maps, in batches

    def complete_nodes(self, nodes) -> None:
        todo: dict[str, dict] = {}
        for node in nodes:
            if isinstance(node, NodeRef) and not node.complete:
                todo.setdefault(node.kind, {}).setdefault(node.id, []).append(node)
        for kind, by_id in todo.items():
            if kind == META:
                for group in by_id.values():
                    for node in group:
                        node.props = dict(self.model.meta)
                        node.complete = True
                continue
            maps = self.property_maps(kind, list(by_id))
            for key, group in by_id.items():
                for node in group:
                    node.props = dict(maps.get(key, {}))
                    node.complete = True

    def property_maps(self, kind: str, ids) -> dict:
        """Whole property maps of Segment or Synapse nodes, keyed by bodyId / synapse id."""
        if not ids:
            return {}
        build = {SEGMENT: self._segment_maps, SYNAPSE: self._synapse_maps}.get(kind)
        if build is None:
            return {}
        if len(ids) <= self.MAPS_PER_BATCH or self.check_rows is None:
            return build(ids)
        maps: dict = {}  # many maps: in batches, so that the memory budget is checked as they grow
        for start in range(0, len(ids), self.MAPS_PER_BATCH):
            batch = ids[start : start + self.MAPS_PER_BATCH]
            maps.update(build(batch))
            self.check_rows(len(batch))
        return maps

    def _id_table(self, ids):
        return pa.table({"id": pa.array(list(ids), type=pa.int64())})

    def _segment_maps(self, ids) -> dict:
        model = self.model
        rows = self.run_sql(sqlgen.segment_maps_sql(model.segment_properties, ids), {"ids_table": self._id_table(ids)})
        maps = {}
        for row in rows:
            props = model.segment_map(row)
            maps[props["bodyId"]] = props
        return maps

    def _synapse_maps(self, ids) -> dict:
        cols = ["syn_id", "kind", "conf", "x", "y", "z", "primary_label", "major_label", *self.model.nt_columns]
        table = self.run_arrow(sqlgen.synapse_rows_sql(cols, ids), {"ids_table": self._id_table(ids)})
        return self.model.synapse_maps({name: table.column(name).to_pylist() for name in cols})

    def complete_rels(self, rels) -> None:
        todo = {}
        for rel in rels:
            if isinstance(rel, RelRef) and not rel.complete:
                if rel.kind == CONNECTS:
                    todo.setdefault((rel.start, rel.end), []).append(rel)
                else:
                    rel.complete = True
        if not todo:
            return
        pairs = pa.table(
            {"a": pa.array([k[0] for k in todo], type=pa.int64()), "b": pa.array([k[1] for k in todo], type=pa.int64())}
        )
        found = {}
        for a, b, weight, weight_hp in self.run_sql(sqlgen.CONNECTION_WEIGHTS_SQL, {"pairs": pairs}):
            found[(a, b)] = {"weight": weight, "weightHP": weight_hp}
        infos = self.roi_infos(pairs)
        for key, group in todo.items():
            props = dict(found.get(key, {}))
            if key in found:
                props["roiInfo"] = infos.get(key, "{}")
            for rel in group:
                rel.props.update(props)
                rel.complete = True

    def roi_infos(self, pairs: pa.Table, neurons: bool = False) -> dict:
        """ConnectsTo.roiInfo (JSON text ``{roi: {"pre": n, "post": n}}``) per (body_pre, body_post);
        ``neurons``: every pair is between two neurons (their rows are all in the neuron-only copy)."""
        out: dict = {}
        starts, ends = set(pairs.column("a").to_pylist()), set(pairs.column("b").to_pylist())
        prefix = "neuron_" if neurons and self.model.neuron_tables else ""
        # Scan the copy sorted by the side with fewer distinct bodies: a literal list of them lets
        # DuckDB skip row groups (100 neurons' upstream partners are thousands of body_pre values).
        if len(ends) < len(starts) and self.model.store.has_table("connection_rois_by_post"):
            table, side, ids = f"{prefix}connection_rois_by_post", "body_post", ends
        else:
            table, side, ids = f"{prefix}connection_rois", "body_pre", starts
        sql = sqlgen.connection_rois_sql(table, side, ids if len(ids) <= 2000 else None)
        for a, b, roi, pre, post in self.run_sql(sql, {"pairs": pairs}):
            out.setdefault((a, b), {})[roi] = {"pre": pre, "post": post}
        return {k: orjson.dumps(v).decode() for k, v in out.items()}

    def fill_roi_infos(self, rels) -> None:
        """Set roiInfo on ConnectsTo relationships that lack it (one query for all of them)."""
        need = {
            (r.start, r.end) for r in rels if isinstance(r, RelRef) and r.kind == CONNECTS and "roiInfo" not in r.props
        }
        if not need:
            return
        pairs = pa.table(
            {"a": pa.array([k[0] for k in need], type=pa.int64()), "b": pa.array([k[1] for k in need], type=pa.int64())}
        )
        infos = self.roi_infos(pairs)
        for rel in rels:
            if isinstance(rel, RelRef) and rel.kind == CONNECTS and "roiInfo" not in rel.props:
                rel.props["roiInfo"] = infos.get((rel.start, rel.end), "{}")
