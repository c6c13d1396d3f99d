"""Test modules that use neuprint-python do not depend on the order they run in.

A Client one module leaves alive (neuprint-python's method caches hold it; see
tests/neuprint_state.py) made the next module's calls fail with "Currently more than one Client
exists" (test_client_corpus.py after test_server_clients.py or test_cypher_columnwise.py).
conftest.py releases them after every module; these tests run that sequence without a server.
"""

from __future__ import annotations

import copy
import gc

import pandas as pd
import pytest
from neuprint_state import release_neuprint_clients

neuprint = pytest.importorskip("neuprint")

DATASET = "male-cns:v0.9"


def offline_client(server: str):
    """A neuprint Client that never reaches a server: its dataset list is known in advance and the
    one query fetch_neuron_keys sends is answered in memory."""
    neuprint.Client.DATASETS_CACHE[server] = {DATASET: {}}
    client = neuprint.Client(server, dataset=DATASET, token="local")
    client.fetch_custom = lambda cypher, **options: pd.DataFrame([['{"bodyId": {}, "type": {}}']])
    return client


def next_module_default(previous_module) -> object:
    """What the next module sees: its own Client made the default, then copied the way
    fetch_simple_connections copies its NeuronCriteria (with the client), then a query function
    asks for the default."""
    previous_module()
    later = offline_client("https://later.invalid")
    neuprint.set_default_client(later)
    copy.deepcopy(later)
    return neuprint.default_client(), later


def earlier_module():
    earlier = offline_client("https://earlier.invalid")
    assert earlier.fetch_neuron_keys() == ["bodyId", "type"]  # now held by neuprint's method cache
    del earlier
    gc.collect()


def test_a_client_left_in_neuprints_caches_breaks_the_next_module():
    """The bug: collecting garbage does not free the earlier Client, and neuprint drops the default."""
    release_neuprint_clients()
    try:
        with pytest.raises(RuntimeError, match="more than one Client exists"):
            next_module_default(earlier_module)
    finally:
        release_neuprint_clients()


def test_released_between_modules_the_next_module_has_its_default():
    release_neuprint_clients()
    try:

        def earlier_module_then_conftest_teardown():
            earlier_module()
            release_neuprint_clients()
            assert neuprint.list_all_clients() == set()

        default, later = next_module_default(earlier_module_then_conftest_teardown)
        assert default == later and default.server == "https://later.invalid"
    finally:
        release_neuprint_clients()
