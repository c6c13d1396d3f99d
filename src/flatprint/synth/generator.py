"""A synthetic Male CNS release (tables) in the real file names and the schemas of a registered release.

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

Memory is bounded (docs/scaling.md, "Synthesizing at full scale"): T-bars and their PSDs are drawn and
written in blocks of about :data:`BLOCK_PSDS` PSDs, each body's T-bars in one block, so per-block
(pre, post) counts are final; syn-points, syn-partners and tbar-nt are streamed to disk, per-body counts
live in arrays over a dense body index, and weights are one global sort of compact keys. A release
that fits one block (scale <= ~0.05) is drawn and written exactly as before blocks existed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from flatprint.errors import ReleaseError
from flatprint.progress import progress_bar
from flatprint.release import tables as T
from flatprint.release.registry import DEFAULT_KEY, ReleaseDescription, describe
from flatprint.synth import levels, rois as roimod
from flatprint.synth.annotations import (
    REAL_ANNOTATED_BODIES,
    SUPERCLASSES,
    draw_annotations,
    unique_ids,
)
from flatprint.synth.feather_out import WRITE_ROWS, FeatherWriter, pandas_index_metadata, write_table
from flatprint.synth.neurotransmitters import body_nt_table
from flatprint.synth.placement import Occupancy, make_unique, point_key, relocate

# Real release figures (v1.0 audits, see docs/schemas.md) that scale 1.0 reproduces.
REAL_NEURONS = 166_700
REAL_BODIES_WITH_SYNAPSES = 88_384_522
REAL_TBARS = 45_656_140
REAL_PSDS = 311_833_243

DNGE104 = {"R": 12781, "L": 556329}
NEURON_TBAR_SHARE = 0.85  # share of T-bars on annotated neurons (the rest on small fragments)
PSD_TO_FRAGMENT = 0.5  # share of a neuron's PSDs that land on unannotated fragments
PSD_JITTER = 12.0  # 8 nm voxels between a T-bar and its PSDs (about 100 nm)
MAX_HOMES = 3
MEAN_PSDS = REAL_PSDS / REAL_TBARS  # PSDs per T-bar

# Block-wise generation (bounded memory): T-bars are drawn and written in blocks of about BLOCK_PSDS
# expected PSDs (a few GB of working memory each). Releases up to scale ~0.05 are one block.
BLOCK_PSDS = 16_000_000
WRITE_CHUNK = 64 * WRITE_ROWS  # rows per piece when writing weights and body-stats from sorted keys

# Fixed types with awkward names (apostrophes, dots, regex metacharacters), for tests and users.
SPECIAL_TYPES = [
    ("KCa'b'-ap1", "cb_intrinsic", ["a'L", "b'L", "CA", "PED"]),
    ("KCa'b'-m", "cb_intrinsic", ["a'L", "b'L", "CA"]),
    ("MBON05(a'L)", "cb_intrinsic", ["a'L", "SMP"]),
    ("LHPV6q1+", "cb_intrinsic", ["LH", "SLP"]),
    ("PS.001", "cb_intrinsic", ["SPS", "IPS"]),
    ("hDeltaA", "cb_intrinsic", ["FB", "EB"]),
]


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
        return (
            [r for r in cb if r.split("(")[0] in ("GNG", "VES", "SPS", "IPS", "SAD", "CAN", "FLA", "EPA")]
            + vnc
            + [f"CV({side})"]
        )
    return vnc


class Builder:
    """Draws a synthetic release (types, neurons, synapses) and writes it in ``release``'s schemas."""

    def __init__(self, scale: float, seed: int, release: ReleaseDescription | None = None):
        if not (0 < scale <= 2.0):
            raise ReleaseError(f"--scale must be in (0, 2], got {scale}")
        self.rel = release or describe(DEFAULT_KEY)
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
        body[rest] = unique_ids(rng, len(rest), 10_000, 1_000_000, exclude=DNGE104.values())

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

    # ---------------------------------------------------------------- synapses: the global part
    def plan_synapses(self, block_psds: int = BLOCK_PSDS):
        """Fragments, partner slots and cluster centres (all small), a dense body index, and the blocks.

        The T-bars and PSDs themselves are drawn block by block (:meth:`_block_synapses`)."""
        rng, h, nr = self.rng, self.h, self.neurons
        n = len(nr.body)
        n_frag = max(_scaled(REAL_BODIES_WITH_SYNAPSES, self.scale) - n, 10)
        self.fragments = unique_ids(rng, n_frag, 1_000_000_000, 200_000_000_000, exclude=nr.body)

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
        self.group_slots, self.slot_offset, self.slot_partner = group_slots, slot_offset, slot_partner

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
        self.centre, self.spread = centre, spread

        # Fragment T-bars: anywhere inside some neuropil (box chosen by volume).
        self.n_frag_tb = max(1, int(round(_scaled(REAL_TBARS, self.scale) * (1 - NEURON_TBAR_SHARE))))
        boxes = np.array([h.boxes[r] for r in h.primary], dtype=float) * roimod.ROI_SCALE
        vol = np.prod(boxes[:, 1::2] - boxes[:, 0::2], axis=1)
        self.frag_boxes, self.frag_box_p = boxes, vol / vol.sum()

        # Dense body index = rank of the body id among all bodies (neuron ids < 1e6 <= fragment ids),
        # so sorting by index sorts by body id. Counts per body accumulate in arrays over this index.
        assert nr.body.max() < self.fragments.min()
        neu_order = np.argsort(nr.body, kind="stable")
        self.rank_neu = np.empty(n, np.int64)
        self.rank_neu[neu_order] = np.arange(n)
        frag_order = np.argsort(self.fragments)
        self.rank_frag = np.empty(n_frag, np.int32 if n + n_frag < 2**31 else np.int64)
        self.rank_frag[frag_order] = np.arange(n, n + n_frag)
        self.all_bodies = np.concatenate([nr.body[neu_order], self.fragments[frag_order]])
        del frag_order
        self.blocks = self._plan_blocks(block_psds)
        # Point uniqueness across blocks: the locations of earlier blocks' points, as a bit filter.
        expected_points = (int(nr.tbars.sum()) + self.n_frag_tb) * (1 + MEAN_PSDS)
        self.occupied = Occupancy(expected_points) if len(self.blocks) > 1 else None

    def _plan_blocks(self, block_psds: int) -> list[tuple[int, int, int, int, int]]:
        """T-bar blocks (first neuron, end neuron, fragment T-bars, first fragment, end fragment).

        All T-bars of a body fall in one block, so per-block value counts of (pre, post) are final.
        Neuron blocks are runs of neurons (their T-bars are grouped by neuron); fragment blocks draw
        their T-bars' bodies from their own range of the fragment list. A release whose expected PSD
        count fits ``block_psds`` is one block holding everything, drawn exactly as before blocks."""
        nr = self.neurons
        n, n_frag = len(nr.body), len(self.fragments)
        neuron_tb = int(nr.tbars.sum())
        if (neuron_tb + self.n_frag_tb) * MEAN_PSDS <= block_psds:
            return [(0, n, self.n_frag_tb, 0, n_frag)]
        k = max(1, int(np.ceil(neuron_tb * MEAN_PSDS / block_psds)))
        ends = np.searchsorted(np.cumsum(nr.tbars), neuron_tb * np.arange(1, k) / k) + 1
        bounds = np.unique(np.clip(np.concatenate([[0], ends, [n]]), 0, n))
        blocks = [(int(a), int(b), 0, 0, 0) for a, b in itertools.pairwise(bounds)]
        kf = min(n_frag, max(1, int(np.ceil(self.n_frag_tb * MEAN_PSDS / block_psds))))
        for j in range(kf):
            count = self.n_frag_tb * (j + 1) // kf - self.n_frag_tb * j // kf
            blocks.append((n, n, count, n_frag * j // kf, n_frag * (j + 1) // kf))
        return blocks

    def _block_rng(self, k: int) -> np.random.Generator:
        """Block 0 continues the release's generator (so a one-block release is drawn exactly as before);
        block k >= 1 has its own stream, derived from (seed, k)."""
        if k == 0:
            return self.rng
        return np.random.default_rng(np.random.SeedSequence([self.seed, 0x5B10C, k]))

    # ---------------------------------------------------------------- synapses: one block
    def _block_synapses(self, k: int, rng: np.random.Generator) -> dict:
        """T-bars and PSDs of block k: locations, bodies (dense index), confidences, NT probabilities."""
        nr = self.neurons
        n, n_frag = len(nr.body), len(self.rank_frag)
        first, end, n_frag_tb, frag_lo, frag_hi = self.blocks[k]

        # Neuron T-bars: group per T-bar, location around the group's centre.
        tb_neuron = np.repeat(np.arange(first, end), nr.tbars[first:end])
        tb_group = tb_neuron * MAX_HOMES + (rng.random(len(tb_neuron)) * nr.n_homes[tb_neuron]).astype(np.int64)
        tb_xyz = self.centre[tb_group] + rng.normal(size=(len(tb_group), 3)) * self.spread[tb_group, None]

        # Fragment T-bars: anywhere inside some neuropil, on a fragment of this block's range.
        if n_frag_tb:
            boxes = self.frag_boxes
            fb = rng.choice(len(boxes), size=n_frag_tb, p=self.frag_box_p)
            ftb_xyz = boxes[fb][:, 0::2] + rng.random((n_frag_tb, 3)) * (boxes[fb][:, 1::2] - boxes[fb][:, 0::2])
            ftb_rank = self.rank_frag[rng.integers(frag_lo, frag_hi, size=n_frag_tb)].astype(np.int64)
            del fb
        else:
            ftb_xyz, ftb_rank = np.empty((0, 3)), np.empty(0, np.int64)

        tbar_xyz = np.concatenate([tb_xyz, ftb_xyz])
        tbar_rank = np.concatenate([self.rank_neu[tb_neuron], ftb_rank])
        tbar_group = np.concatenate([tb_group, np.full(n_frag_tb, -1)])
        n_tbar = len(tbar_rank)
        del tb_xyz, ftb_xyz, ftb_rank, tb_group

        # PSDs per T-bar so that the total matches the release's ratio.
        psd_count = 1 + rng.poisson(MEAN_PSDS - 1, size=n_tbar)
        psd_tbar = np.repeat(np.arange(n_tbar), psd_count)
        del psd_count
        n_psd = len(psd_tbar)
        psd_rank = np.empty(n_psd, dtype=np.int64)
        grp = tbar_group[psd_tbar]
        to_partner = (grp >= 0) & (rng.random(n_psd) >= PSD_TO_FRAGMENT)
        # Zipf-like rank inside the group's slots: rank = floor(m * u^3) favours the first slots.
        gsel = grp[to_partner]
        m = self.group_slots[gsel]
        rank = np.minimum((m * rng.random(len(gsel)) ** 3).astype(np.int64), m - 1)
        psd_rank[to_partner] = self.rank_neu[self.slot_partner[self.slot_offset[gsel] + rank]]
        del gsel, m, rank
        rest = ~to_partner
        # Fragment T-bars feed neurons half of the time; everything else lands on fragments (any block's).
        from_fragment = grp[rest] < 0
        del grp, to_partner
        n_rest = int(rest.sum())
        to_neuron = from_fragment & (rng.random(n_rest) < 0.5)
        targets = self.rank_frag[rng.integers(0, n_frag, size=n_rest)].astype(np.int64)
        targets[to_neuron] = self.rank_neu[rng.integers(0, n, size=to_neuron.sum())]
        psd_rank[rest] = targets
        del rest, from_fragment, to_neuron, targets
        psd_xyz = tbar_xyz[psd_tbar] + rng.normal(size=(n_psd, 3)) * PSD_JITTER

        # Integer locations, clipped to the volume, unique over all points (point_id is an index).
        limit = np.array(roimod.ROI_SHAPE_XYZ) * roimod.ROI_SCALE - 1
        xyz = np.clip(np.rint(np.concatenate([tbar_xyz, psd_xyz])), 0, limit).astype(np.int64)
        del tbar_xyz, psd_xyz
        if self.occupied is None:
            xyz = make_unique(xyz, limit)  # one block: exactly as before blocks existed
        else:
            # Several blocks: a point that repeats a location of this block or (per the filter) of an
            # earlier block moves to a nearby free voxel; then this block's locations join the filter.
            key = point_key(xyz)
            taken, first = np.unique(key, return_index=True)
            move = np.ones(len(key), bool)
            move[first] = False
            move |= self.occupied.test(key)
            del key, first
            xyz = relocate(xyz, np.flatnonzero(move), taken, limit, self.occupied, (self.seed, k))
            del taken, move
            self.occupied.add(point_key(xyz))
        tbar_conf = _confidence(rng, n_tbar)
        psd_conf = _confidence(rng, n_psd)

        # Neurotransmitter probabilities per T-bar: concentrated on the type's transmitter.
        nt_index = {nt: i for i, nt in enumerate(T.NT_NAMES)}
        true_nt = np.empty(n_tbar, dtype=np.int64)
        type_nt = np.array([nt_index[x] for x in self.type_nt], dtype=np.int64)
        true_nt[: len(tb_neuron)] = type_nt[nr.type_idx[tb_neuron]]
        true_nt[len(tb_neuron) :] = rng.choice(
            len(T.NT_NAMES), size=n_frag_tb, p=[0.6, 0.02, 0.17, 0.17, 0.01, 0.02, 0.01]
        )
        alpha = np.full((n_tbar, len(T.NT_NAMES)), 0.35)
        alpha[np.arange(n_tbar), true_nt] = 4.0
        del true_nt
        g = rng.gamma(alpha)
        del alpha
        probs = (g / g.sum(axis=1, keepdims=True)).astype(np.float32)
        del g
        probs[rng.random(n_tbar) < 0.02] = np.nan  # T-bars without a prediction
        return {
            "xyz": xyz,
            "tbar_rank": tbar_rank,
            "psd_rank": psd_rank,
            "psd_tbar": psd_tbar,
            "tbar_conf": tbar_conf,
            "psd_conf": psd_conf,
            "tbar_nt": probs,
            "tbar_type": nr.type_idx[tb_neuron],
        }

    def make_annotations(self):
        self.annotations = draw_annotations(self, _scaled(REAL_ANNOTATED_BODIES, self.scale))

    # ---------------------------------------------------------------- writing
    def write(self, out: Path, progress: bool) -> dict:
        """Draw and write the release block by block; return {table key: {file, rows}}."""
        nb = len(self.all_bodies)
        self.pre_n = np.zeros(nb, np.int32)  # PreSyn points per body (dense index)
        self.post_n = np.zeros(nb, np.int32)  # PostSyn points per body
        self.down_n = np.zeros(nb, np.int32)  # syn-partners rows per body_pre
        self.pair_bits = max(1, int(nb - 1).bit_length())
        self.weight_keys, self.weight_big = [], []  # see _count_pairs; the keys wait on disk
        self.spill = out / ".weight-keys.tmp"
        self.nt_parts = []  # (body, top NT, its probability) of T-bars with a prediction, per block
        rel = self.rel
        points_schema = rel.syn_points_schema()
        # The release keeps point_id as the pandas index (written as the last column).
        points_schema = points_schema.with_metadata(pandas_index_metadata(points_schema, "point_id"))
        sinks = {
            "syn-points": FeatherWriter(out / rel.files["syn-points"], points_schema),
            "syn-partners": FeatherWriter(out / rel.files["syn-partners"], T.SYN_PARTNERS),
            "tbar-nt": FeatherWriter(out / rel.files["tbar-nt"], rel.tbar_nt_schema()),
        }
        # syn-points lists all PreSyn rows, then all PostSyn rows: with several blocks the PostSyn rows
        # go to a temporary file first and are appended at the end.
        n_blocks = len(self.blocks)
        psd_sink = (
            sinks["syn-points"]
            if n_blocks == 1
            else FeatherWriter(out / ".postsyn-points.tmp.feather", points_schema, rechunk=False)
        )
        files = {}
        desc = f"synthesizing ({n_blocks} block{'s' if n_blocks > 1 else ''})"
        with progress_bar(progress, desc, total=n_blocks + 5) as advance:
            for k in range(n_blocks):
                rng = self._block_rng(k)
                blk = self._block_synapses(k, rng)
                if k == 0:
                    # Annotations come from the release's generator between block 0's synapses and its
                    # write draws: with one block, exactly the order of the unblocked generator.
                    self.make_annotations()
                    del self.fragments
                self._write_block(blk, rng, sinks, psd_sink)
                del blk
                if k < n_blocks - 1:
                    for s in sinks.values():
                        s.release()
                advance()
            self.occupied = self.rank_frag = self.rank_neu = None  # only the blocks need these
            if psd_sink is not sinks["syn-points"]:
                psd_sink.close()
                sinks["syn-points"].append_file(psd_sink.path)
                psd_sink.path.unlink()
            for key in ("syn-points", "syn-partners"):
                files[key] = sinks[key].close()
            advance()
            files["weights"] = self._write_weights(out)
            advance()
            files["tbar-nt"] = sinks["tbar-nt"].close()
            ann = self._annotation_table()
            files["annotations"] = write_table(out / rel.files["annotations"], ann)
            advance()
            tbar_bodies = self.all_bodies[self.pre_n > 0]
            files["stats"] = self._write_body_stats(out, ann)
            del self.pre_n, self.post_n, self.down_n, self.all_bodies
            advance()
            parts, self.nt_parts = self.nt_parts, None
            files["neurotransmitters"] = write_table(
                out / rel.files["neurotransmitters"],
                body_nt_table(parts, ann, tbar_bodies, self.type_names, self.type_ground_truth),
            )
            advance()
        return files

    def _write_block(self, blk: dict, rng: np.random.Generator, sinks: dict, psd_sink: FeatherWriter):
        h = self.h
        xyz, psd_tbar = blk["xyz"], blk["psd_tbar"]
        tbar_rank, psd_rank = blk["tbar_rank"], blk["psd_rank"]
        tb_n, psd_n = len(tbar_rank), len(psd_rank)
        prim, major = roimod.labels_at(xyz[:, 0], xyz[:, 1], xyz[:, 2])
        point_id = (
            (xyz[:, 2].astype(np.uint64) << np.uint64(42))
            | (xyz[:, 1].astype(np.uint64) << np.uint64(21))
            | xyz[:, 0].astype(np.uint64)
        )
        tbar_body = self.all_bodies[tbar_rank]
        body = np.concatenate([tbar_body, self.all_bodies[psd_rank]])
        conf = np.concatenate([blk["tbar_conf"], blk["psd_conf"]])
        kind = np.concatenate([np.zeros(tb_n, np.int8), np.ones(psd_n, np.int8)])
        compartment = np.where(
            kind == 0,
            rng.choice([0, 2, 3, 4], size=len(kind), p=[0.85, 0.05, 0.03, 0.07]),
            rng.choice([1, 2, 4], size=len(kind), p=[0.9, 0.03, 0.07]),
        ).astype(np.int8)
        sv = body * 100 + rng.integers(0, 4, size=len(body))
        prim_cats = h.categories("primary")
        # Each ROI set of the release: (labels, categories); the levels below primary from the location.
        roi_labels = {"major": (major, h.categories("major")), "primary": (prim, prim_cats)}
        for s in self.rel.roi_sets:
            if s.name not in roi_labels:
                roi_labels[s.name] = (
                    levels.labels_at(s.name, xyz[:, 0], xyz[:, 1], xyz[:, 2], prim),
                    levels.categories(s.name),
                )

        def dict_col(indices, categories, index_type):
            return pa.DictionaryArray.from_arrays(pa.array(indices, type=index_type), pa.array(categories, pa.string()))

        def roi_col(name, index_type, part):
            labels, cats = roi_labels[name]
            return dict_col(labels[part].astype(index_type.to_pandas_dtype()), cats, index_type)

        # syn-points: this block's PreSyn rows, then its PostSyn rows.
        points_schema = sinks["syn-points"].schema
        for part, sink in ((slice(0, tb_n), sinks["syn-points"]), (slice(tb_n, None), psd_sink)):
            p_xyz = xyz[part]
            rois = []
            for s in self.rel.roi_sets:
                rois += [
                    roi_col(s.name, s.index_type, part),
                    pa.array(roi_labels[s.name][0][part].astype(s.label_type.to_pandas_dtype())),
                ]
            sink.write(
                pa.table(
                    [
                        pa.array(p_xyz[:, 0].astype(np.int32)),
                        pa.array(p_xyz[:, 1].astype(np.int32)),
                        pa.array(p_xyz[:, 2].astype(np.int32)),
                        dict_col(kind[part], list(T.KIND_VALUES), pa.int8()),
                        pa.array(conf[part]),
                        pa.array(sv[part]),
                        pa.array(body[part]),
                        dict_col(compartment[part], list(T.COMPARTMENTS), pa.int8()),
                        *rois,
                        pa.array(point_id[part]),
                    ],
                    schema=points_schema,
                )
            )
            del p_xyz, rois
        del kind, compartment, conf

        tbx, psx = xyz[:tb_n], xyz[tb_n:]
        pt = psd_tbar
        sinks["syn-partners"].write(
            pa.table(
                [
                    pa.array(tbx[pt, 0].astype(np.int32)),
                    pa.array(tbx[pt, 1].astype(np.int32)),
                    pa.array(tbx[pt, 2].astype(np.int32)),
                    pa.array(tbar_body[pt]),
                    pa.array(blk["tbar_conf"][pt]),
                    pa.array(psx[:, 0].astype(np.int32)),
                    pa.array(psx[:, 1].astype(np.int32)),
                    pa.array(psx[:, 2].astype(np.int32)),
                    pa.array(body[tb_n:]),
                    pa.array(blk["psd_conf"]),
                    dict_col(prim[tb_n:].astype(np.int16), prim_cats, pa.int16()),
                ],
                schema=T.SYN_PARTNERS,
            )
        )

        # Counts per body and per (body_pre, body_post); every pair of this block is complete here.
        nb = len(self.all_bodies)
        pre_rank = tbar_rank[pt]
        for acc, ranks in ((self.pre_n, tbar_rank), (self.post_n, psd_rank), (self.down_n, pre_rank)):
            np.add(acc, np.bincount(ranks, minlength=nb), out=acc, casting="unsafe")
        self._count_pairs(pre_rank, psd_rank)
        del pre_rank

        # tbar-neurotransmitters: one row per PreSyn point.
        probs = blk["tbar_nt"]
        splits = np.full(tb_n, -1, dtype=np.int8)
        gt_types = np.flatnonzero(self.type_ground_truth != None)  # noqa: E711
        n_nt = len(blk["tbar_type"])
        in_gt = np.zeros(tb_n, bool)
        in_gt[:n_nt] = np.isin(blk["tbar_type"], gt_types)
        splits[in_gt] = rng.choice([0, 1, 2], size=in_gt.sum(), p=[0.8, 0.1, 0.1])
        split_arr = pa.DictionaryArray.from_arrays(
            pa.array(np.where(splits < 0, None, splits), type=pa.int8()), pa.array(["train", "validation", "test"])
        )
        tb_cols = (
            [
                pa.array(point_id[:tb_n]),
                pa.array(tbx[:, 0].astype(np.int32)),
                pa.array(tbx[:, 1].astype(np.int32)),
                pa.array(tbx[:, 2].astype(np.int32)),
                pa.array(blk["tbar_conf"]),
                pa.array(sv[:tb_n]),
                pa.array(tbar_body),
            ]
            + [
                roi_col(f.name, f.type.index_type, slice(0, tb_n))
                for f in sinks["tbar-nt"].schema
                if f.name in self.rel.tbar_roi_sets
            ]
            + [pa.array(probs[:, i], from_pandas=True) for i in range(len(T.NT_NAMES))]
            + [split_arr]
        )
        sinks["tbar-nt"].write(pa.table(tb_cols, schema=sinks["tbar-nt"].schema))
        del tb_cols, split_arr

        # Per-T-bar top prediction, for body-neurotransmitters (aggregated at the end).
        valid = ~np.isnan(probs).any(axis=1)
        top = np.nan_to_num(probs, nan=-1).argmax(axis=1)
        top_prob = np.where(valid, np.nan_to_num(probs, nan=0).max(axis=1), np.nan)
        self.nt_parts.append((tbar_body[valid], top[valid].astype(np.int8), top_prob[valid]))

    def _count_pairs(self, pre_rank: np.ndarray, post_rank: np.ndarray):
        """Value counts of (pre, post) body pairs of one block, appended to a spill file as uint64 keys.

        key = (W - weight) << 2b | pre index << b | post index (b bits per dense body index, W = the
        largest weight the remaining bits hold), so sorting the keys orders rows by weight descending,
        then body_pre, then body_post. Rarer heavier pairs are kept apart (weight_big)."""
        b = self.pair_bits
        pair = (pre_rank.astype(np.uint64) << np.uint64(b)) | post_rank.astype(np.uint64)
        pair, weight = np.unique(pair, return_counts=True)
        w_max = (1 << (64 - 2 * b)) - 1
        big = weight > w_max
        if big.any():
            self.weight_big.append((pair[big], weight[big]))
            pair, weight = pair[~big], weight[~big]
        keys = ((np.uint64(w_max) - weight.astype(np.uint64)) << np.uint64(2 * b)) | pair
        with open(self.spill, "ab") as fh:
            keys.tofile(fh)
        self.weight_keys.append(len(keys))

    def _write_weights(self, out: Path) -> dict:
        """connectome-weights: value counts of (body_pre, body_post), weight-descending, one global sort."""
        b = self.pair_bits
        mask = np.uint64((1 << b) - 1)
        w_max = (1 << (64 - 2 * b)) - 1
        sink = FeatherWriter(out / self.rel.files["weights"], T.CONNECTOME_WEIGHTS)

        def emit(pair, weight):
            pre = self.all_bodies[(pair >> np.uint64(b)).astype(np.int64)]
            post = self.all_bodies[(pair & mask).astype(np.int64)]
            sink.write(
                pa.table(
                    [pa.array(pre), pa.array(post), pa.array(weight.astype(np.int64))], schema=T.CONNECTOME_WEIGHTS
                )
            )

        if self.weight_big:
            pair = np.concatenate([p for p, _ in self.weight_big])
            weight = np.concatenate([w for _, w in self.weight_big])
            order = np.lexsort((pair, -weight))
            emit(pair[order], weight[order])
        keys = np.fromfile(self.spill, dtype=np.uint64) if self.weight_keys else np.empty(0, np.uint64)
        assert len(keys) == sum(self.weight_keys)
        self.spill.unlink(missing_ok=True)
        self.weight_keys = None
        keys.sort()
        pair_mask = np.uint64((1 << (2 * b)) - 1)
        for start in range(0, len(keys), WRITE_CHUNK):
            chunk = keys[start : start + WRITE_CHUNK]
            emit(chunk & pair_mask, np.uint64(w_max) - (chunk >> np.uint64(2 * b)))
        del keys
        return sink.close()

    def _annotation_table(self) -> pa.Table:
        a = self.annotations
        order = np.argsort(a["bodyId"].astype(np.int64), kind="stable")
        arrays = []
        for f in T.ANNOTATIONS:
            col = a[f.name]
            vals = [col[i] for i in order] if isinstance(col, list) else col[order]
            if f.name == "statusLabel":
                idx = np.array([T.STATUS_LABELS.index(v) if v else -1 for v in vals], dtype=np.int8)
                arrays.append(
                    pa.DictionaryArray.from_arrays(
                        pa.array(np.where(idx < 0, None, idx), type=pa.int8()),
                        pa.array(list(T.STATUS_LABELS)),
                        ordered=True,
                    )
                )
            elif pa.types.is_floating(f.type):
                arrays.append(pa.array(np.asarray(vals, dtype=float), type=f.type, from_pandas=True))
            elif pa.types.is_integer(f.type):
                arrays.append(pa.array(np.asarray(vals, dtype=np.int64), type=f.type))
            else:
                arrays.append(pa.array(list(vals), type=f.type))
        return pa.table(arrays, schema=T.ANNOTATIONS)

    def _write_body_stats(self, out: Path, ann: pa.Table) -> dict:
        """body-stats from the per-body counts: bodies with a synapse, by synweight descending then body."""
        pre, post, down = self.pre_n, self.post_n, self.down_n
        ranks = np.flatnonzero((pre > 0) | (post > 0))
        synweight = down[ranks].astype(np.int64) + post[ranks]
        b = self.pair_bits
        sw_max = int(synweight.max()) if len(synweight) else 0
        if sw_max.bit_length() + b <= 64:
            key = (np.uint64(sw_max) - synweight.astype(np.uint64)) << np.uint64(b) | ranks.astype(np.uint64)
            del ranks, synweight
            key.sort()
            ranks = (key & np.uint64((1 << b) - 1)).astype(np.int64)
            del key
        else:
            ranks = ranks[np.lexsort((ranks, -synweight))]
            del synweight

        ann_ids = ann.column("bodyId").to_numpy()
        cats = [""] + list(T.STATUS_LABELS)
        status_idx = np.array([cats.index(v) if v else 0 for v in ann.column("statusLabel").to_pylist()], dtype=np.int8)
        sink = FeatherWriter(out / self.rel.files["stats"], T.BODY_STATS)
        for start in range(0, len(ranks), WRITE_CHUNK):
            r = ranks[start : start + WRITE_CHUNK]
            bodies = self.all_bodies[r]
            pos = np.clip(np.searchsorted(ann_ids, bodies), 0, len(ann_ids) - 1)
            found = ann_ids[pos] == bodies
            at = pa.array(pos, mask=~found)  # null where the body has no annotation

            status_fine = pa.DictionaryArray.from_arrays(
                pa.array(np.where(found, status_idx[pos], 0).astype(np.int8), type=pa.int8()),
                pa.array(cats),
                ordered=True,
            )
            d = down[r].astype(np.int64)
            p = post[r]
            sink.write(
                pa.table(
                    [
                        pa.array(bodies),
                        pa.array(pre[r].astype(np.int32)),
                        pa.array(p.astype(np.int32)),
                        status_fine,
                        ann.column("superclass").take(at),
                        ann.column("class").take(at),
                        ann.column("type").take(at),
                        ann.column("instance").take(at),
                        pa.array(d),
                        pa.array(d + p),
                        pa.array(np.arange(start + 1, start + len(r) + 1, dtype=np.int64)),
                    ],
                    schema=T.BODY_STATS,
                )
            )
        return sink.close()


def _confidence(rng, n):
    return (0.5 + 0.5 * rng.beta(5.0, 1.5, size=n)).astype(np.float32)


# Names from before the generator was split up (tests and scripts import them from here).
_Builder = Builder
_make_unique, _Occupancy, _point_key, _relocate = make_unique, Occupancy, point_key, relocate
