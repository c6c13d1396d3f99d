"""A client query corpus captured at test time, needing no files outside the repository: the real
neuprint-python runs its query functions against `flatprint serve` while a recorder keeps every
Cypher text it posts. Each call must succeed, and each recorded query must parse, print and parse
back to the same tree (as the captured corpora in test_cypher_parser.py do)."""

from __future__ import annotations

import gc

import pytest

neuprint = pytest.importorskip("neuprint")

from neuprint import NeuronCriteria as NC, SynapseCriteria as SC  # noqa: E402
from server_fixture import running_server  # noqa: E402

from flatprint.cypher.parser import parse  # noqa: E402

DNGE104 = [12781, 556329]

# (name, call) pairs: the query functions a typical analysis uses, in several variants each.
CALLS = [
    ("fetch_meta", lambda: neuprint.fetch_meta()),
    ("fetch_all_rois", lambda: neuprint.fetch_all_rois()),
    ("fetch_primary_rois", lambda: neuprint.fetch_primary_rois()),
    ("fetch_roi_hierarchy", lambda: neuprint.fetch_roi_hierarchy()),
    ("fetch_neurons type", lambda: neuprint.fetch_neurons("DNge104")),
    ("fetch_neurons bodies", lambda: neuprint.fetch_neurons(DNGE104)),
    ("fetch_neurons regex rois", lambda: neuprint.fetch_neurons(NC(type="DNge.*", rois=["GNG"], roi_req="any"))),
    (
        "fetch_neurons in/out rois",
        lambda: neuprint.fetch_neurons(NC(inputRois=["GNG"], outputRois=["VNC"], min_roi_inputs=2, min_pre=10)),
    ),
    ("fetch_neurons status", lambda: neuprint.fetch_neurons(NC(status="Traced", type="DNge104"), omit_rois=True)),
    (
        "fetch_custom_neurons",
        lambda: neuprint.fetch_custom_neurons("MATCH (n:Neuron) WHERE n.type = 'DNge104' RETURN n"),
    ),
    ("fetch_adjacencies down", lambda: neuprint.fetch_adjacencies(DNGE104, None)),
    (
        "fetch_adjacencies up rois",
        lambda: neuprint.fetch_adjacencies(None, NC(type="DNge104"), rois=["GNG"], min_roi_weight=2),
    ),
    ("fetch_adjacencies both", lambda: neuprint.fetch_adjacencies(DNGE104, DNGE104)),
    ("fetch_simple_connections", lambda: neuprint.fetch_simple_connections(NC(type="DNge104"), None, min_weight=5)),
    ("fetch_common_connectivity", lambda: neuprint.fetch_common_connectivity(DNGE104, search_direction="upstream")),
    ("fetch_shortest_paths", lambda: neuprint.fetch_shortest_paths(DNGE104[0], DNGE104[1], min_weight=1)),
    ("fetch_paths", lambda: neuprint.fetch_paths(DNGE104[0], DNGE104[1], path_length=2)),
    ("fetch_synapses", lambda: neuprint.fetch_synapses(NC(bodyId=DNGE104[0]), SC(rois=["GNG"]))),
    ("fetch_synapses all rois", lambda: neuprint.fetch_synapses(DNGE104[0], SC(type="pre", primary_only=False))),
    ("fetch_mean_synapses", lambda: neuprint.fetch_mean_synapses(DNGE104[0])),
    ("fetch_synapse_connections", lambda: neuprint.fetch_synapse_connections(DNGE104[0], None, SC(rois=["GNG"]))),
    ("fetch_output_completeness", lambda: neuprint.fetch_output_completeness(DNGE104)),
    (
        "fetch_custom",
        lambda: neuprint.fetch_custom("MATCH (n:Neuron) RETURN n.type AS t, count(*) AS c ORDER BY c DESC LIMIT 5"),
    ),
]


@pytest.fixture(scope="module")
def recorded(store_path, tmp_path_factory):
    """name -> the Cypher texts neuprint-python posted for that call (in order)."""
    home = tmp_path_factory.mktemp("corpus-home")
    with running_server([str(store_path)], home) as (url, cert):
        neuprint.Client.DATASETS_CACHE.clear() if hasattr(neuprint.Client, "DATASETS_CACHE") else None
        # neuprint-python refuses to pick a default while another module's Client is still alive
        # ("more than one Client exists"); unreferenced ones only go with a collection.
        gc.collect()
        client = neuprint.Client(url, dataset="male-cns:v0.9", token="local", verify=str(cert))
        neuprint.set_default_client(client)
        sent: list[str] = []
        # On the class: the query functions use per-thread copies of the default client.
        fetch = neuprint.Client._fetch

        def recording_fetch(self, url, json=None, ispost=False):
            if isinstance(json, dict) and isinstance(json.get("cypher"), str):
                sent.append(json["cypher"])
            return fetch(self, url, json=json, ispost=ispost)

        neuprint.Client._fetch = recording_fetch
        corpus: dict[str, list[str]] = {}
        failures = []
        try:
            for name, call in CALLS:
                before = len(sent)
                try:
                    call()
                except Exception as exc:  # noqa: BLE001 - collected and reported together below
                    failures.append(f"{name}: {type(exc).__name__}: {str(exc)[:300]}")
                corpus[name] = sent[before:]
        finally:
            neuprint.Client._fetch = fetch
            neuprint.client.clear_default_client()
    assert not failures, "\n".join(failures)
    return corpus


def test_every_call_sent_cypher(recorded):
    silent = [name for name, queries in recorded.items() if not queries]
    assert not silent, f"calls that sent no Cypher (the recorder missed them): {silent}"
    distinct = {q for queries in recorded.values() for q in queries}
    assert len(distinct) >= len(CALLS)
    print(f"\n{len(distinct)} distinct Cypher queries recorded from {len(CALLS)} neuprint-python calls")


@pytest.mark.parametrize("name", [name for name, _ in CALLS])
def test_recorded_queries_parse_and_round_trip(recorded, name):
    for text in recorded[name]:
        query = parse(text)
        printed = query.to_cypher()
        assert parse(printed) == query, printed
        assert parse(printed).to_cypher() == printed
