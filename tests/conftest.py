"""Shared fixtures: small synthetic releases and stores, built once per test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from neuprint_state import release_neuprint_clients
from oracle import oracle_segments

from flatprint import Client
from flatprint.ingest import ingest_release
from flatprint.store import Store
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


@pytest.fixture(autouse=True, scope="module")
def _neuprint_clients_released():
    """Each module starts without neuprint-python Clients left by the modules before it (see
    tests/neuprint_state.py), whatever order the modules run in."""
    yield
    release_neuprint_clients()


# ------------------------------------------------------------------------------------------ the test store opened
# Module scope, as the modules had them: each module opens its own (a module defining a fixture of
# the same name keeps its own).
@pytest.fixture(scope="module")
def client(store_path):
    """The library's Client on the test store."""
    c = Client(store_path)
    yield c
    c.close()


@pytest.fixture(scope="module")
def store(store_path):
    """The test store opened read-only (what the Cypher engine runs on)."""
    opened = Store.open(store_path)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def neurons(release_dir) -> np.ndarray:
    """The :Neuron body ids of the test release by the oracle (tests/oracle.py), sorted."""
    segments = oracle_segments(release_dir)
    return np.sort(segments.index[segments.is_neuron].to_numpy())


# ------------------------------------------------------------------------------------------ apps over the store
# Shared by the server and explorer test modules (a module defining a fixture of the same name keeps its own).
@pytest.fixture(scope="module")
def stores(store_path):
    """The test store opened as the server opens it (one dataset)."""
    from flatprint.server import open_stores

    opened = open_stores([str(store_path)])
    yield opened
    for store in opened.values():
        store.close()


@pytest.fixture(scope="module")
def api(stores):
    """The server app over ``stores``, answering errors as responses rather than raising them."""
    from fastapi.testclient import TestClient

    from flatprint.server.app import create_app

    return TestClient(create_app(stores), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def app(store_path):
    """The app the web tests drive (explorer included), over the test store."""
    from web_helpers import build_app

    return build_app([store_path])


@pytest.fixture(scope="module")
def http(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="module")
def lib(store_path):
    """The library's Client on the test store."""
    from flatprint.query import Client
    from flatprint.store import Store

    store = Store.open(store_path)
    yield Client.from_store(store)
    store.close()


@pytest.fixture
def statements(monkeypatch):
    """Every SQL statement the Cypher engine runs while the test does."""
    from flatprint.cypher import engine

    seen: list[str] = []
    run = engine.Execution._run

    def spy(self, sql, tables, fetch):
        seen.append(sql)
        return run(self, sql, tables, fetch)

    monkeypatch.setattr(engine.Execution, "_run", spy)
    return seen
