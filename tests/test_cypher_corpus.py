"""Every query that neuprint-python, navis and neuprintr were seen sending runs on a synthetic store.

The corpora (neuprint-queries, neuprintr-queries in the reference directory tests/reference.py
finds; without it these tests skip, saying why) were captured against a
fake server with made-up body ids; here 10001/10002 become the DNge104 pair (12781 DNge104_R,
556329 DNge104_L, present in every synthetic release) and 20003 a strong partner of 12781, so that
the queries about real neurons must return rows.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from reference import REFERENCE, corpus_files, corpus_params, needs_reference

from flatprint.cypher import ast
from flatprint.cypher.engine import CypherResult, execute
from flatprint.cypher.errors import CypherWriteError
from flatprint.cypher.parser import parse

CORPUS = sorted(corpus_files())
DNGE104_R, DNGE104_L = 12781, 556329

# Queries that must be empty on this store, and why.
EXPECTED_EMPTY = {
    # mitochondria: the release has none (docs/decisions.md)
    "fetch_connection_mitochondria__09",
    "fetch_connection_mitochondria__10",
    "fetch_connection_mitochondria__12",
    "fetch_connection_mitochondria__13",
    "fetch_mitochondria__body__02",
    "fetch_mitochondria__criteria__02",
    "fetch_synapses_and_closest_mitochondria__02",
    # properties the Male CNS does not have (neuprintr probes them with exists(n.`x`))
    "get_meta__bit64_large_id__03",
    "get_meta__bit64_large_id__04",
    "get_meta__bit64_large_id__05",
    "get_meta__bit64_large_id__06",
    "get_meta__bit64_large_id__07",
    "neuprint_get_meta__02",
    "neuprint_get_meta__03",
    "neuprint_get_meta__04",
    "neuprint_get_meta__05",
    "neuprint_get_meta__06",
    "neuprint_connection_table__02",
    "neuprint_connection_table__05",
    "neuprint_connection_table__06",
    "fetch_neurons__cropped_true__01",
    "fetch_neurons__max_landmark__01",
    # a body id that does not exist in the synthetic release
    "get_meta__bit64_large_id__02",
    # criteria that DNge104 does not meet (no FB synapses on DNge104_L, has a soma, ...)
    "fetch_adjacencies__bodies_rois_minweights__04",
    "fetch_synapse_connections__types_rois__04",
    "fetch_synapse_connections__types_rois__06",
    "fetch_synapse_connections__types_rois__07",
    "fetch_synapses__type_sc_rois_pre_conf__02",
    "neuprint_get_synapses__04",
    "fetch_neurons__soma_isnull__01",
    "NeuronModel__11",
    # made-up values in the capture (types 'A'..'E', instance with a quote, flywireType regex, groups)
    "fetch_neurons__bodyId_list5__01",
    "fetch_neurons__type_list5_nonregex__01",
    "fetch_neurons__instance_with_quote__01",
    "fetch_neurons__flywireType_regex__01",
    "fetch_neurons__mcns_fields__01",
}


def corpus_text(path: Path) -> str:
    text = path.read_text()
    ids = {"10001": str(DNGE104_R), "10002": str(DNGE104_L), "20003": "900539"}
    return re.sub(r"\b(10001|10002|20003)\b", lambda m: ids[m.group(1)], text)


def expected_columns(text: str) -> list[str]:
    """The client's column names: the aliases (else source text) of the final RETURN."""
    query = parse(text)
    last = query.parts[0].clauses[-1]
    assert isinstance(last, ast.Return)
    return [item.column_name for item in last.items]


@pytest.fixture(scope="module")
def partner_of_dnge104(store) -> int:
    """The strongest downstream partner of DNge104_R (stands in for the capture's 20003)."""
    result = execute(
        store,
        f"MATCH (a:Segment {{bodyId: {DNGE104_R}}})-[c:ConnectsTo]->(b:Neuron) "
        "RETURN b.bodyId AS b ORDER BY c.weight DESC, b LIMIT 1",
    )
    return result.data[0][0]


@needs_reference
def test_corpus_is_present():
    assert len(CORPUS) > 200


@pytest.mark.parametrize("path", corpus_params(CORPUS, id_of=lambda p: p.stem))
def test_corpus_query(store, partner_of_dnge104, path):
    text = corpus_text(path).replace("900539", str(partner_of_dnge104))
    if path.stem.startswith("admin.Transaction"):
        with pytest.raises(CypherWriteError, match=r"unsupported Cypher: SET at line \d+, column \d+"):
            execute(store, text)
        return
    result = execute(store, text, timeout=30)
    assert isinstance(result, CypherResult)
    assert result.columns == expected_columns(text)
    assert all(len(row) == len(result.columns) for row in result.data)
    about_real_neurons = "DNge104" in text or str(DNGE104_R) in text or str(DNGE104_L) in text
    if path.stem in EXPECTED_EMPTY:
        assert result.data == [], f"{path.stem} should be empty on this store"
    elif about_real_neurons or "Meta" in text or "MATCH (n:Neuron)" in text or "MATCH (m:Neuron)" in text:
        assert result.data, f"{path.stem} returned no rows"
    result.to_arrow()  # every result converts


@needs_reference
def test_dnge104_answers(store):
    """Spot checks of shapes the clients parse (values are checked against pandas elsewhere)."""
    text = corpus_text(REFERENCE / "neuprint-queries" / "fetch_custom_neurons__01.cypher")
    result = execute(store, text)
    assert result.columns == ["n"]
    nodes = sorted(result.data, key=lambda r: r[0]["bodyId"])
    assert [n[0]["bodyId"] for n in nodes] == [DNGE104_R, DNGE104_L]
    node = nodes[0][0]
    assert node["instance"] == "DNge104_R" and isinstance(node["roiInfo"], str)
    assert node["somaLocation"]["type"] == "Point" and len(node["somaLocation"]["coordinates"]) == 3
    assert "is_neuron" not in node and all(v is not None for v in node.values())
    paths = execute(store, corpus_text(REFERENCE / "neuprint-queries" / "fetch_shortest_paths__default__01.cypher"))
    assert paths.columns == ["path", "weights"]
    for path, weights in paths.data:
        assert path[0] == [DNGE104_R, "DNge104"] and path[-1] == [DNGE104_L, "DNge104"]
        assert len(weights) == len(path) - 1 and all(w >= 5 for w in weights)
    meta = execute(store, corpus_text(REFERENCE / "neuprint-queries" / "fetch_all_rois__01.cypher"))
    row = dict(zip(meta.columns, meta.data[0]))
    assert isinstance(row["meta"]["roiInfo"], str) and isinstance(row["roiInfo"], dict)
    assert row["roiHierarchy"]["name"] and isinstance(row["neuroglancerMeta"], list)
