"""A synthetic Male CNS v0.9 release in the real file names and schemas.

The real release cannot be downloaded here, so tests and benchmarks use releases made by this module.
They are internally consistent the way the real one is (see docs/schemas.md):

* connectome-weights = number of syn-partners rows per (body_pre, body_post);
* body-stats pre/post = counts of syn-points per body, downstream = partners of the body's T-bars;
* every syn-partners location is a syn-points row; primary_post is the ROI at the post point;
* one tbar-neurotransmitters row per PreSyn point; body-neurotransmitters aggregates them.

The generative model, in short: cell types come in bilateral L/R pairs, each type has home neuropils;
a neuron's T-bars cluster in its output neuropils, and each T-bar's PSDs go either to a random small
fragment or to one of the neuron's partners (neurons sharing that neuropil), picked with Zipf-like
preferences, which gives heavy-tailed weights (most 1-3, a few in the hundreds).

``scale`` multiplies bodies and synapses (1.0 ~ the real row counts); synapses per neuron stay the
same. The DNge104 pair (12781 ``DNge104_R``, 556329 ``DNge104_L``) exists at every scale and seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather

from flatprint.errors import ReleaseError
from flatprint.progress import progress_bar
from flatprint.release import rois as roimod
from flatprint.release import tables as T

# Real release figures (v1.0 audits, see docs/schemas.md) that scale 1.0 reproduces.
REAL_ANNOTATED_BODIES = 211_577
REAL_NEURONS = 166_700
REAL_BODIES_WITH_SYNAPSES = 88_384_522
REAL_TBARS = 45_656_140
REAL_PSDS = 311_833_243

DNGE104 = {"R": 12781, "L": 556329}
NEURON_TBAR_SHARE = 0.85  # share of T-bars on annotated neurons (the rest on small fragments)
PSD_TO_FRAGMENT = 0.5  # share of a neuron's PSDs that land on unannotated fragments
PSD_JITTER = 12.0  # 8 nm voxels between a T-bar and its PSDs (about 100 nm)
MAX_HOMES = 3

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
# Fixed types with awkward names (apostrophes, dots, regex metacharacters), for tests and users.
SPECIAL_TYPES = [
    ("KCa'b'-ap1", "cb_intrinsic", ["a'L", "b'L", "CA", "PED"]),
    ("KCa'b'-m", "cb_intrinsic", ["a'L", "b'L", "CA"]),
    ("MBON05(a'L)", "cb_intrinsic", ["a'L", "SMP"]),
    ("LHPV6q1+", "cb_intrinsic", ["LH", "SLP"]),
    ("PS.001", "cb_intrinsic", ["SPS", "IPS"]),
    ("hDeltaA", "cb_intrinsic", ["FB", "EB"]),
]
STATUS_EXTRAS = {  # annotated bodies that are not typed neurons: status label -> share of annotations
    "Glia": 0.056, "Unimportant": 0.051, "Orphan": 0.075, "0.5assign": 0.009, None: 0.026,
}
MONOAMINES = ("dopamine", "octopamine", "serotonin", "histamine")


@dataclass
class _Neurons:
    body: np.ndarray  # int64 body ids
    type_idx: np.ndarray
    side: np.ndarray  # 'L' / 'R' / 'M'
    homes: np.ndarray  # (n, MAX_HOMES) primary labels, 0 = none
    n_homes: np.ndarray
    tbars: np.ndarray  # T-bar count per neuron


def _scaled(real: int, scale: float, minimum: int = 1) -> int:
    return max(minimum, int(round(real * scale)))


def _unique_ids(rng, n, low, high, exclude=()):
    """n distinct int64 ids in [low, high) avoiding ``exclude``."""
    exclude = np.asarray(list(exclude), dtype=np.int64)
    out = np.empty(0, dtype=np.int64)
    while len(out) < n:
        draw = rng.integers(low, high, size=int((n - len(out)) * 1.1) + 16, dtype=np.int64)
        out = np.unique(np.concatenate([out, draw]))
        out = out[~np.isin(out, exclude)]
    return rng.permutation(out)[:n]


def _home_pool(h: roimod.RoiHierarchy, kind: str, side: str) -> list[str]:
    """Primary ROIs a neuron of this region kind and side may innervate."""
    def sided(rois):
        return [r for r in rois if r.endswith(f"({side})") or not r.endswith(("(L)", "(R)"))]

    optic = [r for r in h.primary if h.major_of_primary[r] == f"Optic({side})"]
    cb = sided([r for r in h.primary if h.major_of_primary[r] == "CentralBrain"])
    vnc = sided([r for r in h.primary if h.major_of_primary[r] == "VNC"])
    if kind == "optic":
        return optic
    if kind == "optic+cb":
        return optic + [r for r in cb if r.split("(")[0] in ("PLP", "PVLP", "AVLP", "AOTU", "LO", "SPS")]
    if kind == "cb":
        return cb
    if kind in ("cb+vnc", "vnc+cb"):
        return [r for r in cb if r.split("(")[0] in ("GNG", "VES", "SPS", "IPS", "SAD", "CAN", "FLA", "EPA")] \
            + vnc + [f"CV({side})"]
    return vnc


class _Builder:
    def __init__(self, scale: float, seed: int):
        if not (0 < scale <= 2.0):
            raise ReleaseError(f"--scale must be in (0, 2], got {scale}")
        self.scale = scale
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.h = roimod.hierarchy()
        self.label_of = {name: i + 1 for i, name in enumerate(self.h.primary)}

    # ---------------------------------------------------------------- cell types and neurons
    def make_types(self):
        rng = self.rng
        target = _scaled(REAL_NEURONS, self.scale, minimum=60)
        names, superclasses, home_sets, per_side, nts = [], [], [], [], []
        used = set()

        def add(name, superclass, homes_base, count):
            names.append(name)
            superclasses.append(superclass)
            home_sets.append(homes_base)
            per_side.append(count)
            used.add(name)
            # Type NT: mostly the fast transmitters, a few monoamines.
            nts.append(rng.choice(T.NT_NAMES, p=[0.5, 0.03, 0.2, 0.2, 0.02, 0.03, 0.02]))

        add("DNge104", "descending_neuron", None, 1)
        for name, superclass, homes in SPECIAL_TYPES:
            add(name, superclass, homes, int(rng.integers(1, 6)))
        scs = list(SUPERCLASSES)
        shares = np.array([SUPERCLASSES[s][3] for s in scs])
        total = sum(per_side) * 2
        while total < target:
            sc = scs[rng.choice(len(scs), p=shares / shares.sum())]
            prefix = rng.choice(SUPERCLASSES[sc][1])
            name = f"{prefix}{int(rng.integers(1, 1000)):03d}"
            if name in used:
                continue
            heavy = 0.6 if sc == "ol_intrinsic" else 1.3
            count = int(min(1 + np.floor(rng.pareto(heavy) * 1.2), 400))
            count = min(count, max(1, (target - total) // 2))
            add(name, sc, None, count)
            total += 2 * count
        self.type_names = np.array(names, dtype=object)
        self.type_superclass = np.array(superclasses, dtype=object)
        self.type_home_bases = home_sets
        self.type_per_side = np.array(per_side)
        self.type_nt = np.array(nts, dtype=object)
        # Ground truth for ~5 % of types (experimentally confirmed transmitters).
        self.type_ground_truth = np.where(rng.random(len(names)) < 0.05, self.type_nt, None)

    def make_neurons(self):
        rng, h = self.rng, self.h
        type_idx, sides = [], []
        for t, count in enumerate(self.type_per_side):
            for side in ("R", "L"):
                type_idx += [t] * count
                sides += [side] * count
        type_idx = np.array(type_idx)
        side = np.array(sides, dtype=object)
        n = len(type_idx)
        body = np.empty(n, dtype=np.int64)
        dn = np.flatnonzero(type_idx == 0)
        body[dn] = [DNGE104[s] for s in side[dn]]
        rest = np.flatnonzero(type_idx != 0)
        body[rest] = _unique_ids(rng, len(rest), 10_000, 1_000_000, exclude=DNGE104.values())

        # Home neuropils: chosen per type and mirrored per side, so L/R partners look alike.
        homes = np.zeros((n, MAX_HOMES), dtype=np.int64)
        n_homes = np.zeros(n, dtype=np.int64)
        for t in range(len(self.type_names)):
            members = np.flatnonzero(type_idx == t)
            kind = SUPERCLASSES[self.type_superclass[t]][2]
            pool_r = _home_pool(h, kind, "R")
            if self.type_home_bases[t] is not None:
                chosen = [f"{b}(R)" if f"{b}(R)" in self.label_of else b for b in self.type_home_bases[t]]
            elif t == 0:
                chosen = ["GNG", "LegNp(T1)(R)", "LegNp(T2)(R)"]
            else:
                k = int(rng.integers(1, MAX_HOMES + 1))
                chosen = list(rng.choice(pool_r, size=min(k, len(pool_r)), replace=False))
            chosen = chosen[:MAX_HOMES]
            for i in members:
                names = [c if side[i] == "R" else c.replace("(R)", "(L)") for c in chosen]
                labels = [self.label_of[c] for c in names]
                homes[i, : len(labels)] = labels
                n_homes[i] = len(labels)
        # Output size per neuron: lognormal (heavy tail), scaled to the release's T-bar share.
        raw = rng.lognormal(mean=0.0, sigma=1.1, size=n)
        want = _scaled(REAL_TBARS, self.scale) * NEURON_TBAR_SHARE
        tbars = np.maximum(1, np.round(raw / raw.sum() * want)).astype(np.int64)
        tbars[type_idx == 0] = np.maximum(tbars[type_idx == 0], 400)
        self.neurons = _Neurons(body, type_idx, side, homes, n_homes, tbars)

    # ---------------------------------------------------------------- synapses
    def make_synapses(self):
        rng, h, nr = self.rng, self.h, self.neurons
        n = len(nr.body)
        n_frag = max(_scaled(REAL_BODIES_WITH_SYNAPSES, self.scale) - n, 10)
        self.fragments = _unique_ids(
            rng, n_frag, 1_000_000_000, 200_000_000_000, exclude=nr.body)

        # Partner slots per (neuron, home k): members of that neuropil, with Zipf-like preference.
        roi_members = {}
        for k in range(MAX_HOMES):
            for i in np.flatnonzero(nr.n_homes > k):
                roi_members.setdefault(int(nr.homes[i, k]), []).append(i)
        n_groups = n * MAX_HOMES
        group_slots = np.zeros(n_groups, dtype=np.int64)
        for k in range(MAX_HOMES):
            has = nr.n_homes > k
            group_slots[np.arange(n)[has] * MAX_HOMES + k] = 3 + nr.tbars[has] // (25 * nr.n_homes[has])
        slot_offset = np.concatenate([[0], np.cumsum(group_slots)])
        slot_group = np.repeat(np.arange(n_groups), group_slots)
        slot_roi = nr.homes[slot_group // MAX_HOMES, slot_group % MAX_HOMES]
        slot_partner = np.empty(len(slot_group), dtype=np.int64)
        for roi, members in roi_members.items():
            sel = np.flatnonzero(slot_roi == roi)
            members = np.asarray(members)
            pick = rng.integers(0, len(members), size=len(sel))
            # Autapses are rare in the real data: move a slot that picked its own neuron along.
            own = members[pick] == slot_group[sel] // MAX_HOMES
            pick[own] = (pick[own] + 1) % len(members)
            slot_partner[sel] = members[pick]

        # Cluster centre (8 nm voxels) per group, inside the group's neuropil box.
        centre = np.zeros((n_groups, 3))
        spread = np.zeros(n_groups)
        for k in range(MAX_HOMES):
            for i in np.flatnonzero(nr.n_homes > k):
                box = h.boxes[h.primary[nr.homes[i, k] - 1]]
                lo = np.array(box[0::2]) * roimod.ROI_SCALE
                hi = np.array(box[1::2]) * roimod.ROI_SCALE
                g = i * MAX_HOMES + k
                centre[g] = lo + rng.random(3) * (hi - lo)
                spread[g] = (hi - lo).min() / 5

        # Neuron T-bars: group per T-bar, location around the group's centre.
        tb_neuron = np.repeat(np.arange(n), nr.tbars)
        tb_group = tb_neuron * MAX_HOMES + (rng.random(len(tb_neuron)) * nr.n_homes[tb_neuron]).astype(np.int64)
        tb_xyz = centre[tb_group] + rng.normal(size=(len(tb_group), 3)) * spread[tb_group, None]
        tb_body = nr.body[tb_neuron]

        # Fragment T-bars: anywhere inside some neuropil.
        n_frag_tb = max(1, int(round(_scaled(REAL_TBARS, self.scale) * (1 - NEURON_TBAR_SHARE))))
        boxes = np.array([h.boxes[r] for r in h.primary], dtype=float) * roimod.ROI_SCALE
        vol = np.prod(boxes[:, 1::2] - boxes[:, 0::2], axis=1)
        fb = rng.choice(len(boxes), size=n_frag_tb, p=vol / vol.sum())
        ftb_xyz = boxes[fb][:, 0::2] + rng.random((n_frag_tb, 3)) * (boxes[fb][:, 1::2] - boxes[fb][:, 0::2])
        ftb_body = self.fragments[rng.integers(0, n_frag, size=n_frag_tb)]

        tbar_xyz = np.concatenate([tb_xyz, ftb_xyz])
        tbar_body = np.concatenate([tb_body, ftb_body])
        tbar_group = np.concatenate([tb_group, np.full(n_frag_tb, -1)])
        n_tbar = len(tbar_body)

        # PSDs per T-bar so that the total matches the release's ratio.
        mean_psd = REAL_PSDS / REAL_TBARS
        psd_count = 1 + rng.poisson(mean_psd - 1, size=n_tbar)
        psd_tbar = np.repeat(np.arange(n_tbar), psd_count)
        n_psd = len(psd_tbar)
        psd_body = np.empty(n_psd, dtype=np.int64)
        grp = tbar_group[psd_tbar]
        to_partner = (grp >= 0) & (rng.random(n_psd) >= PSD_TO_FRAGMENT)
        # Zipf-like rank inside the group's slots: rank = floor(m * u^3) favours the first slots.
        gsel = grp[to_partner]
        m = group_slots[gsel]
        rank = np.minimum((m * rng.random(len(gsel)) ** 3).astype(np.int64), m - 1)
        psd_body[to_partner] = nr.body[slot_partner[slot_offset[gsel] + rank]]
        rest = ~to_partner
        # Fragment T-bars feed neurons half of the time; everything else lands on fragments.
        from_fragment = grp[rest] < 0
        to_neuron = from_fragment & (rng.random(rest.sum()) < 0.5)
        targets = self.fragments[rng.integers(0, n_frag, size=rest.sum())]
        targets[to_neuron] = nr.body[rng.integers(0, n, size=to_neuron.sum())]
        psd_body[rest] = targets
        psd_xyz = tbar_xyz[psd_tbar] + rng.normal(size=(n_psd, 3)) * PSD_JITTER

        # Integer locations, clipped to the volume, unique over all points (point_id is an index).
        limit = np.array(roimod.ROI_SHAPE_XYZ) * roimod.ROI_SCALE - 1
        xyz = np.clip(np.rint(np.concatenate([tbar_xyz, psd_xyz])), 0, limit).astype(np.int64)
        xyz = _make_unique(xyz, limit)
        self.tbar_xyz, self.psd_xyz = xyz[:n_tbar], xyz[n_tbar:]
        self.tbar_body, self.psd_body, self.psd_tbar = tbar_body, psd_body, psd_tbar
        self.tbar_conf = _confidence(rng, n_tbar)
        self.psd_conf = _confidence(rng, n_psd)

        # Neurotransmitter probabilities per T-bar: concentrated on the type's transmitter.
        nt_index = {nt: i for i, nt in enumerate(T.NT_NAMES)}
        true_nt = np.empty(n_tbar, dtype=np.int64)
        type_nt = np.array([nt_index[x] for x in self.type_nt], dtype=np.int64)
        true_nt[: len(tb_neuron)] = type_nt[nr.type_idx[tb_neuron]]
        true_nt[len(tb_neuron):] = rng.choice(len(T.NT_NAMES), size=n_frag_tb, p=[0.6, 0.02, 0.17, 0.17, 0.01, 0.02, 0.01])
        alpha = np.full((n_tbar, len(T.NT_NAMES)), 0.35)
        alpha[np.arange(n_tbar), true_nt] = 4.0
        g = rng.gamma(alpha)
        probs = (g / g.sum(axis=1, keepdims=True)).astype(np.float32)
        probs[rng.random(n_tbar) < 0.02] = np.nan  # T-bars without a prediction
        self.tbar_nt = probs

    # ---------------------------------------------------------------- annotations
    def make_annotations(self):
        rng, nr, h = self.rng, self.neurons, self.h
        n = len(nr.body)
        tnames = self.type_names[nr.type_idx]
        sc = self.type_superclass[nr.type_idx]
        cls = np.array([SUPERCLASSES[s][0] for s in sc], dtype=object)
        status_label = rng.choice(
            ["Traced", "Finalized", "Anchor", "Sensory Anchor", "Traced in ROI"], size=n,
            p=[0.80, 0.12, 0.04, 0.02, 0.02]).astype(object)
        status_label[nr.type_idx == 0] = "Traced"
        instance = np.array([f"{t}_{s}" for t, s in zip(tnames, nr.side)], dtype=object)
        # A few anchors without a type: still :Neuron by status, but exercise null properties.
        untyped = (rng.random(n) < 0.01) & (nr.type_idx != 0)
        tnames = np.where(untyped, None, tnames)
        instance = np.where(untyped, None, instance)
        status_label[untyped] = "Anchor"
        group_of_type = _unique_ids(rng, len(self.type_names), 10_000, 1_000_000).astype(float)
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
        cols["subclass"] = np.where(rng.random(n) < 0.4, None, np.char.add("sub", (nr.type_idx % 7).astype(str)).astype(object))
        cols["statusLabel"] = status_label
        cols["status"] = np.array([T.STATUS_OF_LABEL[s] for s in status_label], dtype=object)
        cols["group"] = group
        cols["flywireType"] = np.where(rng.random(n) < 0.8, tnames, None)
        cols["hemibrainType"] = np.where((sc == "cb_intrinsic") & (rng.random(n) < 0.6), tnames, None)
        cols["mancType"] = np.where(np.isin(sc, ["vnc_intrinsic", "ascending_neuron", "descending_neuron"]), tnames, None)
        cols["itoleeHl"] = np.where(sc == "cb_intrinsic", np.char.add("LHl", (nr.type_idx % 40).astype(str)).astype(object), None)
        cols["trumanHl"] = np.where(sc == "vnc_intrinsic", np.char.add(((nr.type_idx % 23) + 1).astype(str), "A").astype(object), None)
        cols["somaLocation"] = [list(map(int, s)) if has else None for s, has in zip(soma, has_soma)]
        cols["tosomaLocation"] = [None if has else list(map(int, s)) for s, has in zip(soma, has_soma)]
        cols["vfbId"] = np.array([f"VFB_jrm{b % 100000:05d}" for b in nr.body], dtype=object)
        cols["synonyms"] = np.where(rng.random(n) < 0.05, np.char.add("syn-", tnames.astype(str)).astype(object), None)
        cols["fruDsx"] = np.where(rng.random(n) < 0.1, rng.choice(["fru", "dsx", "fru+dsx"], size=n), None)
        cols["dimorphism"] = np.where(rng.random(n) < 0.03, "sexually dimorphic", None)
        cols["assignedOlHex1"] = np.where(sc == "ol_intrinsic", rng.integers(1, 40, size=n).astype(float), np.nan)
        cols["assignedOlHex2"] = np.where(sc == "ol_intrinsic", rng.integers(1, 40, size=n).astype(float), np.nan)
        cols["mancBodyid"] = np.where(cols["mancType"] != None, rng.integers(10_000, 99_999, size=n).astype(float), np.nan)  # noqa: E711
        cols["mancGroup"] = np.where(cols["mancType"] != None, group, np.nan)  # noqa: E711
        cols["mancSerial"] = np.full(n, np.nan)
        cols["mcnsSerial"] = np.full(n, np.nan)
        cols["birthtime"] = np.where(rng.random(n) < 0.3, rng.choice(["early", "primary", "secondary"], size=n), None)
        cols["somaNeuromere"] = np.where(np.isin(sc, ["vnc_intrinsic", "ascending_neuron"]), rng.choice(["T1", "T2", "T3", "A1"], size=n), None)
        cols["entryNerve"] = np.where(sc == "sensory", rng.choice(["ProLN", "MesoLN", "MetaLN"], size=n), None)
        neuron_cols = cols

        # Other annotated bodies (glia, orphans, ...): taken from the fragment pool, few synapses.
        n_extra = max(0, _scaled(REAL_ANNOTATED_BODIES, self.scale) - n)
        shares = np.array(list(STATUS_EXTRAS.values()))
        labels = rng.choice(np.array(list(STATUS_EXTRAS), dtype=object), size=n_extra, p=shares / shares.sum())
        extra_body = rng.choice(self.fragments, size=min(n_extra, len(self.fragments)), replace=False)
        labels = labels[: len(extra_body)]
        extra = {c: np.full(len(extra_body), None, dtype=object) for c in T.ANNOTATIONS.names}
        extra["bodyId"] = extra_body
        extra["statusLabel"] = labels
        extra["status"] = np.array([T.STATUS_OF_LABEL.get(s) if s else None for s in labels], dtype=object)
        for c in ("group", "assignedOlHex1", "assignedOlHex2", "mancBodyid", "mancGroup", "mancSerial", "mcnsSerial"):
            extra[c] = np.full(len(extra_body), np.nan)
        extra["somaLocation"] = [None] * len(extra_body)
        extra["tosomaLocation"] = [None] * len(extra_body)
        self.annotations = {c: np.concatenate([np.asarray(neuron_cols[c], dtype=object), np.asarray(extra[c], dtype=object)])
                            if c not in ("somaLocation", "tosomaLocation") else list(neuron_cols[c]) + list(extra[c])
                            for c in T.ANNOTATIONS.names}

    # ---------------------------------------------------------------- writing
    def write(self, out: Path, progress: bool):
        h = self.h
        tb_n, psd_n = len(self.tbar_body), len(self.psd_body)
        xyz = np.concatenate([self.tbar_xyz, self.psd_xyz])
        prim, major = roimod.labels_at(xyz[:, 0], xyz[:, 1], xyz[:, 2])
        point_id = (xyz[:, 2].astype(np.uint64) << np.uint64(42)) | (xyz[:, 1].astype(np.uint64) << np.uint64(21)) \
            | xyz[:, 0].astype(np.uint64)
        body = np.concatenate([self.tbar_body, self.psd_body])
        conf = np.concatenate([self.tbar_conf, self.psd_conf])
        kind = np.concatenate([np.zeros(tb_n, np.int8), np.ones(psd_n, np.int8)])
        rng = self.rng
        compartment = np.where(kind == 0, rng.choice([0, 2, 3, 4], size=len(kind), p=[0.85, 0.05, 0.03, 0.07]),
                               rng.choice([1, 2, 4], size=len(kind), p=[0.9, 0.03, 0.07])).astype(np.int8)
        sv = body * 100 + rng.integers(0, 4, size=len(body))
        prim_cats = h.categories("primary")
        major_cats = h.categories("major")

        def dict_col(indices, categories, index_type):
            return pa.DictionaryArray.from_arrays(pa.array(indices, type=index_type), pa.array(categories, pa.string()))

        files = {}
        with progress_bar(progress, "writing synthetic release", total=7) as advance:
            schema = T.syn_points_schema({"major": pa.uint8(), "primary": pa.uint16()})
            points = pa.table([
                pa.array(xyz[:, 0].astype(np.int32)), pa.array(xyz[:, 1].astype(np.int32)),
                pa.array(xyz[:, 2].astype(np.int32)),
                dict_col(kind, list(T.KIND_VALUES), pa.int8()), pa.array(conf),
                pa.array(sv), pa.array(body),
                dict_col(compartment, list(T.COMPARTMENTS), pa.int8()),
                dict_col(major.astype(np.int8), major_cats, pa.int8()), pa.array(major.astype(np.uint8)),
                dict_col(prim.astype(np.int16), prim_cats, pa.int16()), pa.array(prim.astype(np.uint16)),
                pa.array(point_id),
            ], schema=schema)
            # The release keeps point_id as the pandas index (written as the last column).
            points = points.replace_schema_metadata(_pandas_index_metadata(points.schema, "point_id"))
            files["syn-points"] = _write(out, "syn-points", points)
            advance()

            tbx, psx = self.tbar_xyz, self.psd_xyz
            pt = self.psd_tbar
            partners = pa.table([
                pa.array(tbx[pt, 0].astype(np.int32)), pa.array(tbx[pt, 1].astype(np.int32)),
                pa.array(tbx[pt, 2].astype(np.int32)), pa.array(self.tbar_body[pt]),
                pa.array(self.tbar_conf[pt]),
                pa.array(psx[:, 0].astype(np.int32)), pa.array(psx[:, 1].astype(np.int32)),
                pa.array(psx[:, 2].astype(np.int32)), pa.array(self.psd_body), pa.array(self.psd_conf),
                dict_col(prim[tb_n:].astype(np.int16), prim_cats, pa.int16()),
            ], schema=T.SYN_PARTNERS)
            files["syn-partners"] = _write(out, "syn-partners", partners)
            advance()

            # connectome-weights: value counts of (body_pre, body_post), weight-descending.
            pair_pre, pair_post, weight = _value_counts(self.tbar_body[pt], self.psd_body)
            files["weights"] = _write(out, "weights", pa.table(
                [pa.array(pair_pre), pa.array(pair_post), pa.array(weight)], schema=T.CONNECTOME_WEIGHTS))
            advance()

            # tbar-neurotransmitters: one row per PreSyn point.
            splits = np.full(tb_n, -1, dtype=np.int8)
            gt_types = np.flatnonzero(self.type_ground_truth != None)  # noqa: E711
            nr = self.neurons
            n_nt = len(np.repeat(np.arange(len(nr.body)), nr.tbars))
            in_gt = np.zeros(tb_n, bool)
            in_gt[:n_nt] = np.isin(np.repeat(nr.type_idx, nr.tbars), gt_types)
            splits[in_gt] = rng.choice([0, 1, 2], size=in_gt.sum(), p=[0.8, 0.1, 0.1])
            split_arr = pa.DictionaryArray.from_arrays(
                pa.array(np.where(splits < 0, None, splits), type=pa.int8()),
                pa.array(["train", "validation", "test"]))
            tb_cols = [
                pa.array(point_id[:tb_n]),
                pa.array(tbx[:, 0].astype(np.int32)), pa.array(tbx[:, 1].astype(np.int32)),
                pa.array(tbx[:, 2].astype(np.int32)), pa.array(self.tbar_conf), pa.array(sv[:tb_n]),
                pa.array(self.tbar_body),
                dict_col(major[:tb_n].astype(np.int8), major_cats, pa.int8()),
                dict_col(prim[:tb_n].astype(np.int16), prim_cats, pa.int16()),
            ] + [pa.array(self.tbar_nt[:, i], from_pandas=True) for i in range(len(T.NT_NAMES))] + [split_arr]
            files["tbar-nt"] = _write(out, "tbar-nt", pa.table(
                tb_cols, schema=T.tbar_neurotransmitters_schema(["major", "primary"])))
            advance()

            ann = self._annotation_table()
            files["annotations"] = _write(out, "annotations", ann)
            advance()
            files["stats"] = _write(out, "stats", self._body_stats_table(ann))
            advance()
            files["neurotransmitters"] = _write(out, "neurotransmitters", self._body_nt_table(ann))
            advance()
        return files

    def _annotation_table(self) -> pa.Table:
        a = self.annotations
        order = np.argsort(a["bodyId"].astype(np.int64), kind="stable")
        arrays = []
        for f in T.ANNOTATIONS:
            col = a[f.name]
            vals = [col[i] for i in order] if isinstance(col, list) else col[order]
            if f.name == "statusLabel":
                idx = np.array([T.STATUS_LABELS.index(v) if v else -1 for v in vals], dtype=np.int8)
                arrays.append(pa.DictionaryArray.from_arrays(
                    pa.array(np.where(idx < 0, None, idx), type=pa.int8()), pa.array(list(T.STATUS_LABELS)),
                    ordered=True))
            elif pa.types.is_floating(f.type):
                arrays.append(pa.array(np.asarray(vals, dtype=float), type=f.type, from_pandas=True))
            elif pa.types.is_integer(f.type):
                arrays.append(pa.array(np.asarray(vals, dtype=np.int64), type=f.type))
            else:
                arrays.append(pa.array(list(vals), type=f.type))
        return pa.table(arrays, schema=T.ANNOTATIONS)

    def _body_counts(self):
        pt = self.psd_tbar
        pre_b, pre_c = np.unique(self.tbar_body, return_counts=True)
        post_b, post_c = np.unique(self.psd_body, return_counts=True)
        down_b, down_c = np.unique(self.tbar_body[pt], return_counts=True)
        bodies = np.union1d(pre_b, post_b)
        pre = np.zeros(len(bodies), np.int64)
        post = np.zeros(len(bodies), np.int64)
        down = np.zeros(len(bodies), np.int64)
        pre[np.searchsorted(bodies, pre_b)] = pre_c
        post[np.searchsorted(bodies, post_b)] = post_c
        down[np.searchsorted(bodies, down_b)] = down_c
        return bodies, pre, post, down

    def _body_stats_table(self, ann: pa.Table) -> pa.Table:
        bodies, pre, post, down = self._body_counts()
        synweight = down + post
        order = np.lexsort((bodies, -synweight))
        bodies, pre, post, down, synweight = (v[order] for v in (bodies, pre, post, down, synweight))
        ann_ids = ann.column("bodyId").to_numpy()
        pos = np.searchsorted(ann_ids, bodies)
        pos = np.clip(pos, 0, len(ann_ids) - 1)
        found = ann_ids[pos] == bodies

        def take(col):
            values = ann.column(col).to_pylist()
            return [values[p] if f else None for p, f in zip(pos, found)]

        labels = take("statusLabel")
        cats = [""] + list(T.STATUS_LABELS)
        status_fine = pa.DictionaryArray.from_arrays(
            pa.array([cats.index(v) if v else 0 for v in labels], type=pa.int8()), pa.array(cats), ordered=True)
        return pa.table([
            pa.array(bodies), pa.array(pre.astype(np.int32)), pa.array(post.astype(np.int32)), status_fine,
            pa.array(take("superclass"), pa.string()), pa.array(take("class"), pa.string()),
            pa.array(take("type"), pa.string()), pa.array(take("instance"), pa.string()),
            pa.array(down), pa.array(synweight), pa.array(np.arange(1, len(bodies) + 1, dtype=np.int64)),
        ], schema=T.BODY_STATS)

    def _body_nt_table(self, ann: pa.Table) -> pa.Table:
        """Aggregate T-bar predictions per body and per type (rules in docs/schemas.md)."""
        import pandas as pd

        probs = self.tbar_nt
        valid = ~np.isnan(probs).any(axis=1)
        top = np.where(valid, np.nan_to_num(probs, nan=-1).argmax(axis=1), -1)
        top_prob = np.where(valid, np.nan_to_num(probs, nan=0).max(axis=1), np.nan)
        tb = pd.DataFrame({"body": self.tbar_body, "top": top, "p": top_prob})
        tb = tb[tb["top"] >= 0]
        ann_df = pd.DataFrame({"body": ann.column("bodyId").to_numpy(),
                               "cell_type": ann.column("type").to_pylist()})
        type_of = dict(zip(ann_df["body"], ann_df["cell_type"]))
        tb["cell_type"] = tb["body"].map(type_of)
        gt_of = {t: g for t, g in zip(self.type_names, self.type_ground_truth) if g is not None}
        body_pred = _majority(tb, "body", min_count=50)
        type_pred = _majority(tb.dropna(subset=["cell_type"]), "cell_type", min_count=100)
        bodies = np.union1d(np.unique(self.tbar_body), ann_df.loc[ann_df["cell_type"].notna(), "body"].to_numpy())
        out = pd.DataFrame({"body": bodies})
        out["cell_type"] = out["body"].map(type_of)
        out = out.merge(body_pred.rename(columns={"key": "body"}), on="body", how="left")
        out["total_nt_predictions"] = out["total"].fillna(0).astype(np.int32)
        out["predicted_nt_confidence"] = out["confidence"].astype(float)
        out["predicted_nt"] = out["nt"].fillna("unclear")
        out["ground_truth"] = out["cell_type"].map(gt_of)
        tp = type_pred.set_index("key")
        out["celltype_total_nt_predictions"] = out["cell_type"].map(tp["total"]).fillna(0).astype(np.int32)
        out["celltype_predicted_nt"] = out["cell_type"].map(tp["nt"])
        out.loc[out["cell_type"].notna() & out["celltype_predicted_nt"].isna(), "celltype_predicted_nt"] = "unclear"
        out["celltype_predicted_nt_confidence"] = out["cell_type"].map(tp["confidence"]).astype(float)
        base = out["celltype_predicted_nt"].where(out["cell_type"].notna(), out["predicted_nt"])
        consensus = base.where(~base.isin(MONOAMINES), "unclear")
        out["consensus_nt"] = out["ground_truth"].where(out["ground_truth"].notna(), consensus)
        cols = [f.name for f in T.BODY_NEUROTRANSMITTERS]
        return pa.Table.from_pandas(out[cols], schema=T.BODY_NEUROTRANSMITTERS, preserve_index=False)


def _majority(tb, key: str, min_count: int):
    """Per key: total predictions, most frequent top NT, mean probability of it; 'unclear' below thresholds."""
    import pandas as pd

    if tb.empty:
        return pd.DataFrame(columns=["key", "total", "nt", "confidence"])
    counts = tb.groupby([key, "top"]).size().rename("n").reset_index()
    # ties: the alphabetically first transmitter (NT_NAMES is alphabetical)
    counts = counts.sort_values([key, "n", "top"], ascending=[True, False, True])
    best = counts.drop_duplicates(key)
    total = tb.groupby(key).size().rename("total")
    conf = tb.merge(best[[key, "top"]], on=[key, "top"]).groupby(key)["p"].mean().rename("confidence")
    res = best.set_index(key).join(total).join(conf).reset_index().rename(columns={key: "key"})
    names = np.array(T.NT_NAMES, dtype=object)
    res["nt"] = names[res["top"].to_numpy()]
    unclear = (res["total"] < min_count) | (res["confidence"] < 0.5)
    res.loc[unclear, "nt"] = "unclear"
    return res[["key", "total", "nt", "confidence"]]


def _confidence(rng, n):
    return (0.5 + 0.5 * rng.beta(5.0, 1.5, size=n)).astype(np.float32)


def _make_unique(xyz: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """Nudge duplicate locations until every point is distinct (the point_id index is unique)."""
    for _ in range(100):
        key = (xyz[:, 2] << 42) | (xyz[:, 1] << 21) | xyz[:, 0]
        _, first = np.unique(key, return_index=True)
        dup = np.ones(len(key), bool)
        dup[first] = False
        if not dup.any():
            return xyz
        step = np.random.default_rng(len(key) + int(dup.sum())).integers(-2, 3, size=(int(dup.sum()), 3))
        xyz[dup] = np.clip(xyz[dup] + step, 0, limit)
    raise ReleaseError("could not make synapse locations unique")


def _value_counts(pre: np.ndarray, post: np.ndarray):
    pairs = np.stack([pre, post], axis=1)
    uniq, counts = np.unique(pairs, axis=0, return_counts=True)
    order = np.lexsort((uniq[:, 1], uniq[:, 0], -counts))
    return uniq[order, 0], uniq[order, 1], counts[order].astype(np.int64)


def _pandas_index_metadata(schema: pa.Schema, index_name: str) -> dict:
    """Pandas metadata marking ``index_name`` as the frame's index, as pyarrow writes it for a pandas frame."""
    columns = []
    for f in schema:
        if pa.types.is_dictionary(f.type):
            pandas_type, numpy_type = "categorical", str(f.type.index_type.to_pandas_dtype().__name__)
            meta = {"num_categories": None, "ordered": f.type.ordered}
        else:
            pandas_type = {"int32": "int32", "int64": "int64", "uint64": "uint64", "float": "float32",
                           "uint8": "uint8", "uint16": "uint16"}.get(str(f.type), str(f.type))
            numpy_type, meta = pandas_type, None
        columns.append({"name": f.name, "field_name": f.name, "pandas_type": pandas_type,
                        "numpy_type": numpy_type, "metadata": meta})
    doc = {"index_columns": [index_name], "column_indexes": [], "columns": columns,
           "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.3"}
    return {b"pandas": json.dumps(doc).encode()}


def _write(out: Path, key: str, table: pa.Table) -> dict:
    path = out / T.TABLES[key].filename
    # Feather V2 with lz4 and 64K-row record batches, like pyarrow's write_feather defaults.
    feather.write_feather(table, str(path), compression="lz4", chunksize=65536)
    return {"file": path.name, "rows": table.num_rows}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def synthesize(out_dir: str | os.PathLike, scale: float = 0.01, seed: int = 0, progress: bool = True,
               force: bool = False, morphology: bool = True) -> dict:
    """Write a synthetic release into ``out_dir`` atomically and return its manifest.

    With ``morphology`` (the default) the release also gets skeletons, ROI volumes and meshes and a
    segmentation volume, laid out like the real release (flatprint.release.morphology).
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise ReleaseError(f"{out} exists and is not empty (use --force to replace it)")
    started = time.perf_counter()
    b = _Builder(scale, seed)
    b.make_types()
    b.make_neurons()
    b.make_synapses()
    b.make_annotations()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        files = b.write(tmp, progress)
        h = b.h
        (tmp / "roi-hierarchy.json").write_text(json.dumps({
            "roiHierarchy": h.as_tree(),
            "roiSets": {"primary": h.primary, "major": h.major},
            "roiVoxelSize": [roimod.ROI_VOXEL_NM] * 3,
            "note": "flatprint addition: the ROI tree the release's Meta would carry",
        }, indent=1))
        manifest = {
            "release": "male-cns:v0.9",
            "synthetic": {"seed": seed, "scale": scale, "generator": "flatprint synth"},
            "files": [],
        }
        for key, info in files.items():
            p = tmp / info["file"]
            manifest["files"].append({"table": key, "file": info["file"], "rows": info["rows"],
                                      "bytes": p.stat().st_size, "sha256": _sha256(p)})
        if morphology:
            from flatprint.release.morphology import write_morphology

            manifest["morphology"] = write_morphology(tmp, progress=progress)
        manifest["seconds"] = round(time.perf_counter() - started, 2)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
