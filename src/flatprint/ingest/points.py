"""What the ingest learns from the syn-points stream as it passes to DuckDB: each ROI set's distinct
(label, name) pairs and how many points have a kind other than PreSyn/PostSyn.

The partitioned points then carry only the integer labels and a boolean ``is_pre``: writing the ROI
names and the kind as text to the range files, only to map labels to names and check the kinds
later, cost ~40% of the partition's CPU. Here each batch costs a few vectorised gathers: a label
whose name is already known is checked, not collected again."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

KINDS = ("PreSyn", "PostSyn")
_LUT_MAX = 1 << 24  # labels above this (never seen in a release) take the slower np.unique path


class _Names:
    """One ROI set: label -> the id of the first name seen with it, plus every distinct pair."""

    def __init__(self, ids: dict):
        self.ids = ids  # name (None for a null name) -> id, shared by the sets
        self.lut = np.full(0, -1, np.int64)
        self.pairs: set[tuple[int, int]] = set()  # (label, name id)

    def add(self, labels: pa.Array, names: pa.Array) -> None:
        label = labels.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        if not pa.types.is_dictionary(names.type):
            names = pc.dictionary_encode(names)
        values = names.dictionary.to_pylist()
        remap = np.array(
            [self.ids.setdefault(v, len(self.ids)) for v in values] + [self.ids.setdefault(None, len(self.ids))]
        )
        index = names.indices.fill_null(len(values)).to_numpy(zero_copy_only=False)
        name = remap[index]
        top = int(label.max(initial=0))
        if top >= len(self.lut) and top < _LUT_MAX:
            grown = np.full(max(top + 1, 2 * len(self.lut)), -1, np.int64)
            grown[: len(self.lut)] = self.lut
            self.lut = grown
        if top < len(self.lut):
            new = self.lut[label] != name
        else:
            new = np.ones(len(label), bool)
        # Label 0 and null labels name no ROI: never collected.
        new &= label != 0
        if not new.any():
            return
        pairs = np.unique(np.stack([label[new], name[new]], axis=1), axis=0)
        for lab, nid in pairs.tolist():
            self.pairs.add((lab, nid))
            if lab < len(self.lut) and self.lut[lab] < 0:
                self.lut[lab] = nid


class PointScan:
    """Wrap the syn-points batches: ``stream(reader, keep)`` yields them with only the columns
    ``keep`` after noting each set's (label, name) pairs and the bad kinds."""

    def __init__(self, roi_sets: list[str]):
        self._ids: dict = {}
        self._sets = {s: _Names(self._ids) for s in roi_sets}
        self.bad_kinds = 0

    def stream(self, reader: pa.RecordBatchReader, keep: list[str]) -> pa.RecordBatchReader:
        schema = pa.schema([reader.schema.field(c) for c in keep])

        def gen():
            for batch in reader:
                for s, names in self._sets.items():
                    names.add(batch.column(f"{s}_label"), batch.column(s))
                self.bad_kinds += _bad_kinds(batch.column("kind"))
                yield batch.select(keep)

        return pa.RecordBatchReader.from_batches(schema, gen())

    def label_pairs(self, roi_set: str) -> list[tuple[int, str | None]]:
        """The set's distinct (label, name) pairs with a non-zero label."""
        name_of = {i: n for n, i in self._ids.items()}
        return [(lab, name_of[nid]) for lab, nid in self._sets[roi_set].pairs]


def _bad_kinds(kind: pa.Array) -> int:
    """Non-null kinds other than PreSyn/PostSyn (checked on the dictionary when there is one)."""
    if pa.types.is_dictionary(kind.type):
        bad = pc.invert(pc.is_in(kind.dictionary, pa.array(KINDS)))
        if not pc.any(bad).as_py():
            return 0
        kind = kind.dictionary_decode()
    # is_in gives false for a null, which SQL's NOT IN does not count
    return int(pc.sum(pc.invert(pc.is_in(kind, pa.array(KINDS)))).as_py() or 0) - kind.null_count


def range_schema(roi_sets: list[str], with_names: bool, has_compartment: bool) -> pa.Schema:
    """The columns of the syn-points range files (see range_batch), then the int32 ``bucket``."""
    fields = [(c, pa.int32()) for c in "xyz"] + [("is_pre", pa.bool_()), ("conf", pa.float32()), ("body", pa.int64())]
    for s in roi_sets:
        fields += ([(f"{s}_roi", pa.string())] if with_names else []) + [(f"{s}_label", pa.int32())]
    if has_compartment:
        fields.append(("compartment", pa.string()))
    return pa.schema(fields + [("bucket", pa.int32())])


def range_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """One bucketed syn-points batch as the range files hold it (``schema``, from range_schema): the
    casts DuckDB made before (safe: an overflow raises), ``is_pre`` from the kind (null where it is
    null) and the ROI names and compartment as plain text (one dictionary per batch would not fit
    the IPC file format)."""
    arrays = []
    for field in schema:
        name = field.name
        if name == "is_pre":
            arrays.append(_is_pre(batch.column("kind")))
        else:
            source = name[: -len("_roi")] if name.endswith("_roi") else name
            arrays.append(batch.column(source).cast(field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _is_pre(kind: pa.Array) -> pa.Array:
    """kind = 'PreSyn', computed on the dictionary when there is one."""
    if pa.types.is_dictionary(kind.type):
        return pc.take(pc.equal(kind.dictionary, "PreSyn"), kind.indices)
    return pc.equal(kind, "PreSyn")
