"""Synapse locations: the point_id encoding and making a release's point locations unique.

A release's syn-points index (point_id) is unique, so the generator moves colliding points to free
voxels nearby, within a block (make_unique, relocate) and across blocks (Occupancy).
"""

from __future__ import annotations

import numpy as np

from flatprint.errors import ReleaseError


def point_key(xyz: np.ndarray) -> np.ndarray:
    """The point_id encoding (z << 42 | y << 21 | x) as int64."""
    return (xyz[:, 2] << 42) | (xyz[:, 1] << 21) | xyz[:, 0]


def make_unique(xyz: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """Nudge duplicate locations until every point is distinct (the point_id index is unique)."""
    for _ in range(100):
        key = point_key(xyz)
        _, first = np.unique(key, return_index=True)
        dup = np.ones(len(key), bool)
        dup[first] = False
        if not dup.any():
            return xyz
        step = np.random.default_rng(len(key) + int(dup.sum())).integers(-2, 3, size=(int(dup.sum()), 3))
        xyz[dup] = np.clip(xyz[dup] + step, 0, limit)
    # The walk above repeats its steps while the duplicate count repeats and can get stuck; finish the
    # remaining duplicates by relocation (only releases the walk alone could not make unique get here).
    key = point_key(xyz)
    taken, first = np.unique(key, return_index=True)
    dup = np.ones(len(key), bool)
    dup[first] = False
    return relocate(xyz, np.flatnonzero(dup), taken, limit, None, (len(key),))


def relocate(xyz, move, taken, limit, occupied, seed) -> np.ndarray:
    """Move the points ``move`` to free voxels near where they are, in place; return ``xyz``.

    Free = not in ``taken`` (sorted keys of the block's locations), not taken by another moved point,
    and not in ``occupied`` (if given). Candidates are random offsets in a cube that grows with the
    round (half-width 1, 1, 1, 1, 2, ...), drawn from a generator seeded with ``seed`` and the round."""
    accepted = np.empty(0, np.int64)
    base = xyz[move]
    for round_ in range(400):
        if len(move) == 0:
            return xyz
        r = 1 + round_ // 4
        step = np.random.default_rng([*seed, round_]).integers(-r, r + 1, size=(len(move), 3))
        cand = np.clip(base + step, 0, limit)
        ck = point_key(cand)
        ok = ~in_sorted(taken, ck) & ~in_sorted(accepted, ck)
        if occupied is not None:
            ok &= ~occupied.test(ck)
        _, first = np.unique(ck, return_index=True)
        is_first = np.zeros(len(ck), bool)
        is_first[first] = True
        ok &= is_first
        xyz[move[ok]] = cand[ok]
        accepted = np.sort(np.concatenate([accepted, ck[ok]]))
        move, base = move[~ok], base[~ok]
    raise ReleaseError("could not make synapse locations unique")


def in_sorted(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(sorted_keys, keys)
    return (
        (pos < len(sorted_keys)) & (sorted_keys[np.minimum(pos, len(sorted_keys) - 1)] == keys)
        if len(sorted_keys)
        else np.zeros(len(keys), bool)
    )


class Occupancy:
    """Locations used by earlier blocks, as one bit per hash slot (16+ slots per expected point).

    No false negatives, so a point that passes test() is new; a false positive (a few % of points by
    the last block) only moves a point by a voxel or two. Memory: ~1 GiB at scale 1.0."""

    def __init__(self, expected_points: float):
        bits = max(20, int(np.ceil(np.log2(16 * max(expected_points, 1)))))
        self._shift = np.uint64(64 - bits)
        self._bytes = np.zeros(1 << (bits - 3), np.uint8)

    def _slot(self, key: np.ndarray):
        h = (key.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> self._shift  # Fibonacci hashing
        return (h >> np.uint64(3)).astype(np.intp), (h & np.uint64(7)).astype(np.uint8)

    def test(self, key: np.ndarray) -> np.ndarray:
        byte, bit = self._slot(key)
        return ((self._bytes[byte] >> bit) & 1).astype(bool)

    def add(self, key: np.ndarray) -> None:
        byte, bit = self._slot(key)
        np.bitwise_or.at(self._bytes, byte, np.left_shift(np.uint8(1), bit))
