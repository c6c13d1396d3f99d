"""Shared fixtures: small synthetic releases and stores, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from flatprint.ingest import ingest_release
from flatprint.synth import synthesize

TEST_SCALE = 0.004


@pytest.fixture(scope="session")
def release_factory(tmp_path_factory):
    """release_factory(seed, scale) -> path of a synthetic release (cached per session)."""
    cache: dict[tuple[int, float], Path] = {}

    def make(seed: int = 0, scale: float = TEST_SCALE) -> Path:
        key = (seed, scale)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"release-s{seed}") / "release"
            # Skeletons, ROI volumes and meshes only for the seed the server and volume tests use.
            synthesize(out, scale=scale, seed=seed, progress=False, morphology=(seed == 0))
            cache[key] = out
        return cache[key]

    return make


@pytest.fixture(scope="session")
def store_factory(release_factory, tmp_path_factory):
    """store_factory(seed, scale) -> path of a store ingested from that release (cached)."""
    cache: dict[tuple[int, float], Path] = {}

    def make(seed: int = 0, scale: float = TEST_SCALE) -> Path:
        key = (seed, scale)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"store-s{seed}") / "store.duckdb"
            ingest_release(release_factory(seed, scale), out, progress=False, memory_limit="2GB")
            cache[key] = out
        return cache[key]

    return make


@pytest.fixture(scope="session")
def release_dir(release_factory) -> Path:
    return release_factory(0)


@pytest.fixture(scope="session")
def store_path(store_factory) -> Path:
    return store_factory(0)
