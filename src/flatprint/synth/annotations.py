"""Annotations of a synthetic release: the body-annotations columns of its neurons and other annotated bodies.

Drawn after the neurons exist (:meth:`flatprint.synth.generator.Builder.make_neurons`); every value is a
function of the neuron's type, superclass, side and home ROIs, so a release's annotations agree with its
synapses the way the real release's do.
"""

from __future__ import annotations

import numpy as np

from flatprint.release import tables as T
from flatprint.store.sql import distinct_ids
from flatprint.synth import rois as roimod

REAL_ANNOTATED_BODIES = 211_577

# superclass -> (class, type-name prefixes, home region kinds, share of types)
SUPERCLASSES = {
    "ol_intrinsic": ("ol_intrinsic", ["Tm", "Mi", "Dm", "Pm", "TmY"], "optic", 0.30),
    "visual_projection": ("visual_projection", ["LC", "LT", "LPLC", "MeVP"], "optic+cb", 0.10),
    "cb_intrinsic": ("cb_intrinsic", ["CB", "SMP", "SLP", "AVLP", "PS", "LHPV"], "cb", 0.30),
    "descending_neuron": ("DN", ["DNge", "DNp", "DNa", "DNg"], "cb+vnc", 0.05),
    "ascending_neuron": ("AN", ["AN"], "vnc+cb", 0.05),
    "vnc_intrinsic": ("vnc_intrinsic", ["IN", "INXX"], "vnc", 0.15),
    "sensory": ("sensory", ["SNxx", "SNpp"], "vnc", 0.05),
}
STATUS_EXTRAS = {  # annotated bodies that are not typed neurons: status label -> share of annotations
    "Glia": 0.056,
    "Unimportant": 0.051,
    "Orphan": 0.075,
    "0.5assign": 0.009,
    None: 0.026,
}


def unique_ids(rng, n, low, high, exclude=()):
    """n distinct int64 ids in [low, high) avoiding ``exclude``."""
    exclude = np.asarray(list(exclude), dtype=np.int64)
    out = np.empty(0, dtype=np.int64)
    while len(out) < n:
        draw = rng.integers(low, high, size=int((n - len(out)) * 1.1) + 16, dtype=np.int64)
        out = distinct_ids(np.concatenate([out, draw]))
        out = out[~np.isin(out, exclude)]
    return rng.permutation(out)[:n]


def draw_annotations(builder, annotated_bodies: int) -> dict:
    """{column: values} for body-annotations: the builder's neurons first, then ``annotated_bodies``
    minus that many other annotated bodies (glia, orphans, ...) taken from its fragment pool."""
    rng, nr, h = builder.rng, builder.neurons, builder.h
    n = len(nr.body)
    tnames = builder.type_names[nr.type_idx]
    sc = builder.type_superclass[nr.type_idx]
    cls = np.array([SUPERCLASSES[s][0] for s in sc], dtype=object)
    status_label = rng.choice(
        ["Traced", "Finalized", "Anchor", "Sensory Anchor", "Traced in ROI"],
        size=n,
        p=[0.80, 0.12, 0.04, 0.02, 0.02],
    ).astype(object)
    status_label[nr.type_idx == 0] = "Traced"
    instance = np.array([f"{t}_{s}" for t, s in zip(tnames, nr.side)], dtype=object)
    # A few anchors without a type: still :Neuron by status, but exercise null properties.
    untyped = (rng.random(n) < 0.01) & (nr.type_idx != 0)
    tnames = np.where(untyped, None, tnames)
    instance = np.where(untyped, None, instance)
    status_label[untyped] = "Anchor"
    group_of_type = unique_ids(rng, len(builder.type_names), 10_000, 1_000_000).astype(float)
    group = group_of_type[nr.type_idx]
    group[untyped] = np.nan
    soma = np.zeros((n, 3), dtype=np.int64)
    first_box = np.array([h.boxes[h.primary[i - 1]] for i in nr.homes[:, 0]]) * roimod.ROI_SCALE
    soma[:] = first_box[:, 0::2] + rng.random((n, 3)) * (first_box[:, 1::2] - first_box[:, 0::2])
    has_soma = rng.random(n) < 0.92
    has_soma[nr.type_idx == 0] = True
    cols = {c: np.full(n, None, dtype=object) for c in T.ANNOTATIONS.names}
    cols["bodyId"] = nr.body
    cols["type"] = tnames
    cols["instance"] = instance
    cols["somaSide"] = np.where(has_soma, nr.side, None)
    cols["rootSide"] = nr.side
    cols["superclass"] = sc
    cols["class"] = cls
    cols["subclass"] = np.where(
        rng.random(n) < 0.4, None, np.char.add("sub", (nr.type_idx % 7).astype(str)).astype(object)
    )
    cols["statusLabel"] = status_label
    cols["status"] = np.array([T.STATUS_OF_LABEL[s] for s in status_label], dtype=object)
    cols["group"] = group
    cols["flywireType"] = np.where(rng.random(n) < 0.8, tnames, None)
    cols["hemibrainType"] = np.where((sc == "cb_intrinsic") & (rng.random(n) < 0.6), tnames, None)
    cols["mancType"] = np.where(np.isin(sc, ["vnc_intrinsic", "ascending_neuron", "descending_neuron"]), tnames, None)
    cols["itoleeHl"] = np.where(
        sc == "cb_intrinsic", np.char.add("LHl", (nr.type_idx % 40).astype(str)).astype(object), None
    )
    cols["trumanHl"] = np.where(
        sc == "vnc_intrinsic", np.char.add(((nr.type_idx % 23) + 1).astype(str), "A").astype(object), None
    )
    cols["somaLocation"] = [list(map(int, s)) if has else None for s, has in zip(soma, has_soma)]
    cols["tosomaLocation"] = [None if has else list(map(int, s)) for s, has in zip(soma, has_soma)]
    cols["vfbId"] = np.array([f"VFB_jrm{b % 100000:05d}" for b in nr.body], dtype=object)
    cols["synonyms"] = np.where(rng.random(n) < 0.05, np.char.add("syn-", tnames.astype(str)).astype(object), None)
    cols["fruDsx"] = np.where(rng.random(n) < 0.1, rng.choice(["fru", "dsx", "fru+dsx"], size=n), None)
    cols["dimorphism"] = np.where(rng.random(n) < 0.03, "sexually dimorphic", None)
    cols["assignedOlHex1"] = np.where(sc == "ol_intrinsic", rng.integers(1, 40, size=n).astype(float), np.nan)
    cols["assignedOlHex2"] = np.where(sc == "ol_intrinsic", rng.integers(1, 40, size=n).astype(float), np.nan)
    has_manc_type = np.array([t is not None for t in cols["mancType"]], dtype=bool)
    cols["mancBodyid"] = np.where(has_manc_type, rng.integers(10_000, 99_999, size=n).astype(float), np.nan)
    cols["mancGroup"] = np.where(has_manc_type, group, np.nan)
    cols["mancSerial"] = np.full(n, np.nan)
    cols["mcnsSerial"] = np.full(n, np.nan)
    cols["birthtime"] = np.where(rng.random(n) < 0.3, rng.choice(["early", "primary", "secondary"], size=n), None)
    cols["somaNeuromere"] = np.where(
        np.isin(sc, ["vnc_intrinsic", "ascending_neuron"]), rng.choice(["T1", "T2", "T3", "A1"], size=n), None
    )
    cols["entryNerve"] = np.where(sc == "sensory", rng.choice(["ProLN", "MesoLN", "MetaLN"], size=n), None)
    neuron_cols = cols

    # Other annotated bodies (glia, orphans, ...): taken from the fragment pool, few synapses.
    n_extra = max(0, annotated_bodies - n)
    shares = np.array(list(STATUS_EXTRAS.values()))
    labels = rng.choice(np.array(list(STATUS_EXTRAS), dtype=object), size=n_extra, p=shares / shares.sum())
    extra_body = rng.choice(builder.fragments, size=min(n_extra, len(builder.fragments)), replace=False)
    labels = labels[: len(extra_body)]
    extra = {c: np.full(len(extra_body), None, dtype=object) for c in T.ANNOTATIONS.names}
    extra["bodyId"] = extra_body
    extra["statusLabel"] = labels
    extra["status"] = np.array([T.STATUS_OF_LABEL.get(s) if s else None for s in labels], dtype=object)
    for c in ("group", "assignedOlHex1", "assignedOlHex2", "mancBodyid", "mancGroup", "mancSerial", "mcnsSerial"):
        extra[c] = np.full(len(extra_body), np.nan)
    extra["somaLocation"] = [None] * len(extra_body)
    extra["tosomaLocation"] = [None] * len(extra_body)
    return {
        c: np.concatenate([np.asarray(neuron_cols[c], dtype=object), np.asarray(extra[c], dtype=object)])
        if c not in ("somaLocation", "tosomaLocation")
        else list(neuron_cols[c]) + list(extra[c])
        for c in T.ANNOTATIONS.names
    }
